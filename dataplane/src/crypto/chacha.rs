//! ChaCha20-Poly1305 for ESP (RFC 7634) through the `chacha20poly1305` crate, framed as
//! RFC 4106 frames GCM ([`super::aead`]).

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Tag};

use super::aead::{split_salt, Aead96, EspAead};
use super::{Cipher, CryptoError};

/// The keyed AEAD.
pub struct ChaCha(ChaCha20Poly1305);

impl std::fmt::Debug for ChaCha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChaCha { .. }")
    }
}

impl Aead96 for ChaCha {
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        // The crate fails only for messages beyond ChaCha20's 256 GiB counter space.
        self.0
            .encrypt_in_place_detached(nonce.into(), aad, data)
            .map(Into::into)
            .unwrap_or([0; 16])
    }
    fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        if tag.len() != 16 {
            return false;
        }
        // The crate verifies the tag before it decrypts, so a failure leaves the data as it was.
        self.0
            .decrypt_in_place_detached(nonce.into(), aad, data, Tag::from_slice(tag))
            .is_ok()
    }
}

/// The RFC 7634 transform: `key` is 32 bytes of key and 4 of salt.
pub fn esp_chacha(key: &[u8]) -> Result<EspAead<ChaCha>, CryptoError> {
    let (k, salt) = split_salt(key, 32)?;
    let aead = ChaCha20Poly1305::new_from_slice(k).map_err(|_| CryptoError::BadKeyLength)?;
    Ok(EspAead::new(Cipher::Chacha20Poly1305, ChaCha(aead), salt))
}
