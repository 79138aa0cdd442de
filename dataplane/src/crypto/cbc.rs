//! AES-CBC (RFC 3602) with an HMAC-SHA-2 ICV (RFC 4868), encrypt-then-MAC as ESP does it:
//! the ICV covers SPI, sequence number, IV and ciphertext, plus the ESN high half appended to
//! the MAC input only (RFC 4303 §2.2.1). Also ENCR_NULL (RFC 2410) with an HMAC.

use aes::cipher::consts::U16;
use aes::cipher::{
    generic_array::GenericArray, BlockDecrypt, BlockEncrypt, BlockSizeUser, KeyInit,
};
use aes::Aes128;

use super::hmac::HmacSha2;
use super::{Cipher, CryptoError, EspTransform, Integrity, Mac, ESP_HEADER_LEN};

type Block = GenericArray<u8, U16>;

const IV: usize = 16;
const PAR: usize = 8;

/// AES in CBC mode, with or without an HMAC. Without one it is confidentiality only, which
/// [`super::new_esp_transform`] (and so every configuration) refuses: only code that builds this
/// directly, such as the RFC 3602 test vectors, gets it.
pub struct EspCbc<C> {
    aes: C,
    /// Derives unpredictable IVs from sequence numbers: IV = AES_k'(seq) with a random k'
    /// (NIST SP 800-38A App. C), so IVs never repeat and cannot be predicted.
    iv_key: Aes128,
    mac: Option<HmacSha2>,
    cipher: Cipher,
}

impl<C> std::fmt::Debug for EspCbc<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EspCbc({:?}, {:?})", self.cipher, self.mac)
    }
}

/// AES with encryption and decryption key schedules.
pub trait AesCbcCipher:
    BlockEncrypt + BlockDecrypt + KeyInit + BlockSizeUser<BlockSize = U16> + Send + Sync + 'static
{
}
impl AesCbcCipher for aes::Aes128 {}
impl AesCbcCipher for aes::Aes256 {}

impl<C: AesCbcCipher> EspCbc<C> {
    /// Keys the transform.
    pub fn new(cipher: Cipher, key: &[u8], mac: Option<HmacSha2>) -> Result<Self, CryptoError> {
        let aes = C::new_from_slice(key).map_err(|_| CryptoError::BadKeyLength)?;
        let mut k = [0u8; 16];
        getrandom::getrandom(&mut k).map_err(|_| CryptoError::BackendUnavailable)?;
        let iv_key = Aes128::new(&k.into());
        k.fill(0);
        Ok(Self {
            aes,
            iv_key,
            mac,
            cipher,
        })
    }

    fn icv(&self) -> usize {
        self.mac.as_ref().map_or(0, |m| m.icv_len())
    }
}

/// The MAC input of an ESP packet: everything before the ICV, then the ESN high half.
fn mac_chunks<'a>(body: &'a [u8], hi: &'a [u8; 4], esn: bool) -> [&'a [u8]; 2] {
    [body, if esn { &hi[..] } else { &[] }]
}

impl<C: AesCbcCipher> EspTransform for EspCbc<C> {
    fn cipher(&self) -> Cipher {
        self.cipher
    }
    fn integrity(&self) -> Integrity {
        self.mac.as_ref().map_or(Integrity::None, |m| m.integrity())
    }
    fn iv_len(&self) -> usize {
        IV
    }
    fn block_align(&self) -> usize {
        16
    }
    fn icv_len(&self) -> usize {
        self.icv()
    }
    fn write_iv(&self, seq: u64, iv: &mut [u8]) {
        let mut b = Block::default();
        b[8..].copy_from_slice(&seq.to_be_bytes());
        self.iv_key.encrypt_block(&mut b);
        iv[..IV].copy_from_slice(&b);
    }
    fn seal(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        let icv = self.icv();
        if esp.len() < ESP_HEADER_LEN + IV + icv
            || !(esp.len() - ESP_HEADER_LEN - IV - icv).is_multiple_of(16)
        {
            return Err(CryptoError::BadLength);
        }
        let end = esp.len() - icv;
        let (head, rest) = esp[..end].split_at_mut(ESP_HEADER_LEN + IV);
        let mut prev = Block::clone_from_slice(&head[ESP_HEADER_LEN..]);
        for chunk in rest.chunks_exact_mut(16) {
            for (p, c) in prev.iter_mut().zip(chunk.iter()) {
                *p ^= c;
            }
            self.aes.encrypt_block(&mut prev);
            chunk.copy_from_slice(&prev);
        }
        if let Some(m) = &self.mac {
            let hi = seq_hi.unwrap_or(0).to_be_bytes();
            let (body, out) = esp.split_at_mut(end);
            m.compute(&mac_chunks(body, &hi, seq_hi.is_some()), out);
        }
        Ok(())
    }
    fn open(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        let icv = self.icv();
        if esp.len() < ESP_HEADER_LEN + IV + icv
            || !(esp.len() - ESP_HEADER_LEN - IV - icv).is_multiple_of(16)
        {
            return Err(CryptoError::BadLength);
        }
        let end = esp.len() - icv;
        if let Some(m) = &self.mac {
            let hi = seq_hi.unwrap_or(0).to_be_bytes();
            let (body, got) = esp.split_at(end);
            if !m.verify(&mac_chunks(body, &hi, seq_hi.is_some()), got) {
                return Err(CryptoError::IcvMismatch);
            }
        }
        let (head, rest) = esp[..end].split_at_mut(ESP_HEADER_LEN + IV);
        let mut prev = Block::clone_from_slice(&head[ESP_HEADER_LEN..]);
        // CBC decryption is parallel: decrypt eight blocks at once, then XOR with the
        // ciphertext block before each.
        let mut ct = [Block::default(); PAR];
        let mut pt = [Block::default(); PAR];
        for chunk in rest.chunks_mut(16 * PAR) {
            let n = chunk.len() / 16;
            for (i, b) in chunk.chunks_exact(16).enumerate() {
                ct[i].copy_from_slice(b);
            }
            pt[..n].copy_from_slice(&ct[..n]);
            self.aes.decrypt_blocks(&mut pt[..n]);
            for (i, out) in chunk.chunks_exact_mut(16).enumerate() {
                let chain = if i == 0 { &prev } else { &ct[i - 1] };
                for ((o, p), c) in out.iter_mut().zip(pt[i].iter()).zip(chain.iter()) {
                    *o = p ^ c;
                }
            }
            prev = ct[n - 1];
        }
        Ok(())
    }
}

/// ENCR_NULL (RFC 2410) with an HMAC: integrity only, no IV, 4-byte alignment.
#[derive(Debug)]
pub struct EspNull {
    mac: HmacSha2,
}

impl EspNull {
    /// NULL encryption needs an integrity algorithm (RFC 4303 §3.2: not both NULL).
    pub fn new(mac: HmacSha2) -> Self {
        Self { mac }
    }
}

impl EspTransform for EspNull {
    fn cipher(&self) -> Cipher {
        Cipher::Null
    }
    fn integrity(&self) -> Integrity {
        self.mac.integrity()
    }
    fn iv_len(&self) -> usize {
        0
    }
    fn block_align(&self) -> usize {
        4
    }
    fn icv_len(&self) -> usize {
        self.mac.icv_len()
    }
    fn write_iv(&self, _seq: u64, _iv: &mut [u8]) {}
    fn seal(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        let icv = self.mac.icv_len();
        if esp.len() < ESP_HEADER_LEN + icv {
            return Err(CryptoError::BadLength);
        }
        let end = esp.len() - icv;
        let hi = seq_hi.unwrap_or(0).to_be_bytes();
        let (body, out) = esp.split_at_mut(end);
        self.mac
            .compute(&mac_chunks(body, &hi, seq_hi.is_some()), out);
        Ok(())
    }
    fn open(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        let icv = self.mac.icv_len();
        if esp.len() < ESP_HEADER_LEN + icv {
            return Err(CryptoError::BadLength);
        }
        let end = esp.len() - icv;
        let hi = seq_hi.unwrap_or(0).to_be_bytes();
        let (body, got) = esp.split_at(end);
        if self
            .mac
            .verify(&mac_chunks(body, &hi, seq_hi.is_some()), got)
        {
            Ok(())
        } else {
            Err(CryptoError::IcvMismatch)
        }
    }
}
