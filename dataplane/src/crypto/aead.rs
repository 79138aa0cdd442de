//! The RFC 4106 framing of an AEAD in ESP, shared by AES-GCM (both backends, RFC 4106) and
//! ChaCha20-Poly1305 (RFC 7634): key material = key || 4-byte salt, an 8-byte explicit IV,
//! nonce = salt || IV, AAD = SPI || [ESN high] || sequence, a 16-byte ICV.

use super::{Cipher, CryptoError, EspTransform, Integrity, ESP_HEADER_LEN};

/// Explicit IV length.
const IV: usize = 8;
/// ICV length.
const ICV: usize = 16;

/// An AEAD with a 96-bit nonce and a 16-byte tag.
pub trait Aead96: Send + Sync + 'static {
    /// Encrypts `data` in place and returns the tag.
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16];
    /// Decrypts `data` in place if `tag` verifies; otherwise leaves it as received and returns
    /// false.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool;
}

/// RFC 4106 AAD: SPI and sequence number, with the ESN high half between them (§5).
#[inline]
pub(crate) fn esp_aad(esp: &[u8], seq_hi: Option<u32>, out: &mut [u8; 12]) -> usize {
    out[..4].copy_from_slice(&esp[..4]);
    match seq_hi {
        Some(hi) => {
            out[4..8].copy_from_slice(&hi.to_be_bytes());
            out[8..12].copy_from_slice(&esp[4..8]);
            12
        }
        None => {
            out[4..8].copy_from_slice(&esp[4..8]);
            8
        }
    }
}

/// The key proper and the 4-byte salt that follows it (RFC 4106 §8.1, RFC 7634 §4).
pub(crate) fn split_salt(key: &[u8], key_len: usize) -> Result<(&[u8], [u8; 4]), CryptoError> {
    if key.len() != key_len + 4 {
        return Err(CryptoError::BadKeyLength);
    }
    let mut salt = [0u8; 4];
    salt.copy_from_slice(&key[key_len..]);
    Ok((&key[..key_len], salt))
}

/// salt || the 8-byte IV at the start of `iv`.
#[inline]
pub(crate) fn nonce(salt: &[u8; 4], iv: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(&iv[..IV]);
    n
}

/// One packet's pieces as the AEAD sees them.
struct Parts<'a> {
    nonce: [u8; 12],
    aad: [u8; 12],
    aad_len: usize,
    data: &'a mut [u8],
    icv: &'a mut [u8],
}

/// An AEAD framed for ESP.
pub struct EspAead<A> {
    aead: A,
    salt: [u8; 4],
    cipher: Cipher,
}

impl<A> std::fmt::Debug for EspAead<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EspAead({:?})", self.cipher) // no key material in logs
    }
}

impl<A: Aead96> EspAead<A> {
    /// Frames a keyed AEAD with its salt.
    pub fn new(cipher: Cipher, aead: A, salt: [u8; 4]) -> Self {
        Self { aead, salt, cipher }
    }

    /// Splits an ESP region into nonce, AAD, data and ICV.
    #[inline]
    fn parts<'a>(&self, esp: &'a mut [u8], seq_hi: Option<u32>) -> Result<Parts<'a>, CryptoError> {
        if esp.len() < ESP_HEADER_LEN + IV + ICV {
            return Err(CryptoError::BadLength);
        }
        let mut aad = [0u8; 12];
        let aad_len = esp_aad(esp, seq_hi, &mut aad);
        let nonce = nonce(&self.salt, &esp[ESP_HEADER_LEN..]);
        let end = esp.len() - ICV;
        let (body, icv) = esp.split_at_mut(end);
        Ok(Parts {
            nonce,
            aad,
            aad_len,
            data: &mut body[ESP_HEADER_LEN + IV..],
            icv,
        })
    }
}

impl<A: Aead96> EspTransform for EspAead<A> {
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
        // RFC 4106 §3.1 / RFC 7634 §2: the IV must never repeat for a key; the 64-bit
        // sequence number never does.
        iv[..IV].copy_from_slice(&seq.to_be_bytes());
    }
    fn seal(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        let p = self.parts(esp, seq_hi)?;
        p.icv
            .copy_from_slice(&self.aead.seal(&p.nonce, &p.aad[..p.aad_len], p.data));
        Ok(())
    }
    fn open(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        let p = self.parts(esp, seq_hi)?;
        if self.aead.open(&p.nonce, &p.aad[..p.aad_len], p.data, p.icv) {
            Ok(())
        } else {
            Err(CryptoError::IcvMismatch)
        }
    }
}
