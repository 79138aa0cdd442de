//! AES-GCM on Intel ipsec-mb (feature `ipsec-mb`), the fast x86 backend, framed for ESP as
//! RFC 4106 says ([`super::aead`]).
//!
//! ipsec-mb decrypts and computes the tag in one pass, so `open` compares the tag afterwards
//! and, on a mismatch, encrypts the buffer again with the same counter to restore the
//! ciphertext as received (attack traffic pays a second pass; valid traffic never does).

use ipsec_mb::GcmKey;

use super::aead::{split_salt, Aead96, EspAead};
use super::{Cipher, CryptoError, EspTransform, Integrity};

struct MbGcm(GcmKey);

impl Aead96 for MbGcm {
    const NONCE_AHEAD: bool = true;
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        self.0.seal(nonce, aad, data)
    }
    fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        let t = self.0.decrypt(nonce, aad, data);
        if super::ct_eq(&t, tag) {
            true
        } else {
            self.0.seal(nonce, aad, data);
            false
        }
    }
}

/// The ipsec-mb transform for `cipher`, or `Unsupported` for what it does not do here.
pub(crate) fn new_transform(
    cipher: Cipher,
    integrity: Integrity,
    enc_key: &[u8],
    _auth_key: &[u8],
) -> Result<Box<dyn EspTransform>, CryptoError> {
    let aes_len = match (cipher, integrity) {
        (Cipher::AesGcm128, Integrity::None) => 16,
        (Cipher::AesGcm256, Integrity::None) => 32,
        _ => return Err(CryptoError::Unsupported),
    };
    let (k, salt) = split_salt(enc_key, aes_len)?;
    let key = GcmKey::new(k).ok_or(CryptoError::BackendUnavailable)?;
    Ok(Box::new(EspAead::new(cipher, MbGcm(key), salt)))
}
