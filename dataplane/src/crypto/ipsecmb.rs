//! AES-GCM on Intel ipsec-mb (feature `ipsec-mb`), the fast x86 backend.
//!
//! Same RFC 4106 layout as [`super::gcm::EspGcm`]. ipsec-mb decrypts and computes the tag in
//! one pass, so `open` compares the tag afterwards and, on a mismatch, encrypts the buffer
//! again with the same counter to restore the ciphertext as received (attack traffic pays a
//! second pass; valid traffic never does).

use ipsec_mb::GcmKey;

use super::gcm::esp_aad;
use super::{Cipher, CryptoError, EspTransform, Integrity, ESP_HEADER_LEN};

const IV: usize = 8;
const ICV: usize = 16;

#[derive(Debug)]
struct EspGcmMb {
    key: GcmKey,
    salt: [u8; 4],
    cipher: Cipher,
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
    if enc_key.len() != aes_len + 4 {
        return Err(CryptoError::BadKeyLength);
    }
    let key = GcmKey::new(&enc_key[..aes_len]).ok_or(CryptoError::BackendUnavailable)?;
    let mut salt = [0u8; 4];
    salt.copy_from_slice(&enc_key[aes_len..]);
    Ok(Box::new(EspGcmMb { key, salt, cipher }))
}

impl EspGcmMb {
    fn nonce(&self, esp: &[u8]) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(&esp[ESP_HEADER_LEN..ESP_HEADER_LEN + IV]);
        n
    }
}

impl EspTransform for EspGcmMb {
    fn cipher(&self) -> Cipher {
        self.cipher
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
        iv[..8].copy_from_slice(&seq.to_be_bytes());
    }
    fn seal(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        if esp.len() < ESP_HEADER_LEN + IV + ICV {
            return Err(CryptoError::BadLength);
        }
        let mut aad = [0u8; 12];
        let alen = esp_aad(esp, seq_hi, &mut aad);
        let n = self.nonce(esp);
        let end = esp.len() - ICV;
        let (body, icv) = esp.split_at_mut(end);
        let tag = self
            .key
            .seal(&n, &aad[..alen], &mut body[ESP_HEADER_LEN + IV..]);
        icv.copy_from_slice(&tag);
        Ok(())
    }
    fn open(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        if esp.len() < ESP_HEADER_LEN + IV + ICV {
            return Err(CryptoError::BadLength);
        }
        let mut aad = [0u8; 12];
        let alen = esp_aad(esp, seq_hi, &mut aad);
        let n = self.nonce(esp);
        let end = esp.len() - ICV;
        let (body, icv) = esp.split_at_mut(end);
        let data = &mut body[ESP_HEADER_LEN + IV..];
        let tag = self.key.decrypt(&n, &aad[..alen], data);
        if super::ct_eq(&tag, icv) {
            Ok(())
        } else {
            self.key.seal(&n, &aad[..alen], data);
            Err(CryptoError::IcvMismatch)
        }
    }
}
