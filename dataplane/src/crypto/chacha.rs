//! ChaCha20-Poly1305 for ESP (RFC 7634): 256-bit key plus 4-byte salt, 8-byte IV, nonce =
//! salt || IV, AAD as RFC 4106 (SPI, [ESN high], sequence).

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};

use super::gcm::esp_aad;
use super::{Cipher, CryptoError, EspTransform, Integrity, ESP_HEADER_LEN};

const IV: usize = 8;
const ICV: usize = 16;

/// The RFC 7634 ESP transform.
pub struct EspChaCha {
    aead: ChaCha20Poly1305,
    salt: [u8; 4],
}

impl std::fmt::Debug for EspChaCha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EspChaCha { .. }")
    }
}

impl EspChaCha {
    /// `key` is 32 bytes of key and 4 of salt (RFC 7634 §4).
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        if key.len() != 36 {
            return Err(CryptoError::BadKeyLength);
        }
        let aead =
            ChaCha20Poly1305::new_from_slice(&key[..32]).map_err(|_| CryptoError::BadKeyLength)?;
        let mut salt = [0u8; 4];
        salt.copy_from_slice(&key[32..]);
        Ok(Self { aead, salt })
    }

    fn nonce(&self, esp: &[u8]) -> Nonce {
        let mut n = Nonce::default();
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(&esp[ESP_HEADER_LEN..ESP_HEADER_LEN + IV]);
        n
    }
}

impl EspTransform for EspChaCha {
    fn cipher(&self) -> Cipher {
        Cipher::Chacha20Poly1305
    }
    fn integrity(&self) -> Integrity {
        Integrity::None
    }
    fn iv_len(&self) -> usize {
        IV
    }
    fn block_align(&self) -> usize {
        4
    }
    fn icv_len(&self) -> usize {
        ICV
    }
    fn write_iv(&self, seq: u64, iv: &mut [u8]) {
        // RFC 7634 §2: the IV must be unique per key; the sequence number is (§4 suggests it).
        iv[..8].copy_from_slice(&seq.to_be_bytes());
    }
    fn seal(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        if esp.len() < ESP_HEADER_LEN + IV + ICV {
            return Err(CryptoError::BadLength);
        }
        let mut aad = [0u8; 12];
        let alen = esp_aad(esp, seq_hi, &mut aad);
        let nonce = self.nonce(esp);
        let end = esp.len() - ICV;
        let (body, icv) = esp.split_at_mut(end);
        let tag = self
            .aead
            .encrypt_in_place_detached(&nonce, &aad[..alen], &mut body[ESP_HEADER_LEN + IV..])
            .map_err(|_| CryptoError::BadLength)?;
        icv.copy_from_slice(&tag);
        Ok(())
    }
    fn open(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        if esp.len() < ESP_HEADER_LEN + IV + ICV {
            return Err(CryptoError::BadLength);
        }
        let mut aad = [0u8; 12];
        let alen = esp_aad(esp, seq_hi, &mut aad);
        let nonce = self.nonce(esp);
        let end = esp.len() - ICV;
        let (body, icv) = esp.split_at_mut(end);
        let tag = Tag::clone_from_slice(icv);
        // The crate verifies the tag before it decrypts, so a failure leaves the data as it was.
        self.aead
            .decrypt_in_place_detached(&nonce, &aad[..alen], &mut body[ESP_HEADER_LEN + IV..], &tag)
            .map_err(|_| CryptoError::IcvMismatch)
    }
}
