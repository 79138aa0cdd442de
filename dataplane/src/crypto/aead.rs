//! The RFC 4106 framing of an AEAD in ESP, shared by AES-GCM (both backends, RFC 4106) and
//! ChaCha20-Poly1305 (RFC 7634): key material = key || 4-byte salt, an 8-byte explicit IV,
//! nonce = salt || IV, AAD = SPI || [ESN high] || sequence, a 16-byte ICV.

use super::{Cipher, CryptoError, EspTransform, Integrity, OpenPrep, SealPrep, ESP_HEADER_LEN};

/// Explicit IV length.
const IV: usize = 8;
/// ICV length.
const ICV: usize = 16;

/// An AEAD with a 96-bit nonce and a 16-byte tag.
pub trait Aead96: Send + Sync + 'static {
    /// Whether inbound bursts should build this AEAD's nonces ahead
    /// ([`EspTransform::prepare_open`]): for a library whose load of a nonce stored just
    /// before the call waits for the stores (ipsec-mb: ~12 ns a packet). The RustCrypto
    /// cores showed no such wait (their burst rows did not move with nonces built ahead), so
    /// they keep the plain `open`.
    const NONCE_AHEAD: bool = false;
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

/// An ESP region split into its ESP header and IV, ciphertext, and ICV.
type EspParts<'a> = (
    &'a mut [u8; ESP_HEADER_LEN + IV],
    &'a mut [u8],
    &'a mut [u8; ICV],
);

/// Splits an ESP region (see [`EspParts`]).
#[inline]
fn split_esp(esp: &mut [u8]) -> Result<EspParts<'_>, CryptoError> {
    let (head, rest) = esp
        .split_first_chunk_mut::<{ ESP_HEADER_LEN + IV }>()
        .ok_or(CryptoError::BadLength)?;
    let (data, icv) = rest
        .split_last_chunk_mut::<ICV>()
        .ok_or(CryptoError::BadLength)?;
    Ok((head, data, icv))
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

    /// Splits an ESP region into nonce, AAD, data and ICV and hands them to `f`. Without
    /// ESN the AAD (SPI || sequence) is read where it lies in the packet, not copied. The
    /// nonce is `prepared` when given (made from the same region's IV), else built here.
    #[inline]
    fn with_parts<R>(
        &self,
        esp: &mut [u8],
        seq_hi: Option<u32>,
        prepared: Option<&[u8; 12]>,
        f: impl FnOnce(&[u8; 12], &[u8], &mut [u8], &mut [u8; ICV]) -> R,
    ) -> Result<R, CryptoError> {
        let (head, data, icv) = split_esp(esp)?;
        let (hdr, iv) = head
            .split_first_chunk::<ESP_HEADER_LEN>()
            .ok_or(CryptoError::BadLength)?;
        let mut esn_aad = [0u8; 12];
        let aad: &[u8] = match seq_hi {
            Some(hi) => {
                esp_aad(hdr, Some(hi), &mut esn_aad);
                &esn_aad
            }
            None => hdr,
        };
        let built;
        let n = match prepared {
            Some(n) => n,
            None => {
                built = nonce(&self.salt, iv);
                &built
            }
        };
        Ok(f(n, aad, data, icv))
    }

    /// Verifies and decrypts (see [`EspTransform::open`]), with the nonce `prepared` or built.
    #[inline(always)]
    fn open_with(
        &self,
        esp: &mut [u8],
        seq_hi: Option<u32>,
        prepared: Option<&[u8; 12]>,
    ) -> Result<(), CryptoError> {
        let ok = self.with_parts(esp, seq_hi, prepared, |nonce, aad, data, icv| {
            self.aead.open(nonce, aad, data, icv)
        })?;
        if ok {
            Ok(())
        } else {
            Err(CryptoError::IcvMismatch)
        }
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
        self.with_parts(esp, seq_hi, None, |nonce, aad, data, icv| {
            *icv = self.aead.seal(nonce, aad, data);
        })
    }
    fn prepare(&self, spi: u32, first: u64, esn: bool, preps: &mut [SealPrep]) {
        let spi_be = spi.to_be_bytes();
        for (k, prep) in preps.iter_mut().enumerate() {
            // Sequence numbers end at 2^64 - 1 (reserve_seqs); no range that could overflow.
            let seq = first.wrapping_add(k as u64);
            let seq_be = seq.to_be_bytes();
            prep.spi = spi;
            prep.seq = seq;
            prep.esn = esn;
            // RFC 4106 §3.1: the IV is the 64-bit sequence number, which never repeats.
            prep.nonce = nonce(&self.salt, &seq_be);
            prep.aad[..4].copy_from_slice(&spi_be);
            if esn {
                prep.aad[4..].copy_from_slice(&seq_be);
                prep.aad_len = 12;
            } else {
                prep.aad[4..8].copy_from_slice(&seq_be[4..]);
                prep.aad_len = 8;
            }
        }
    }
    fn seal_prepared(&self, esp: &mut [u8], prep: &SealPrep) -> Result<(), CryptoError> {
        // Header and IV from the sequence number: nothing is read back from the packet.
        let (head, data, icv) = split_esp(esp)?;
        let aad = prep.aad.get(..usize::from(prep.aad_len)).unwrap_or(&[]);
        head[..4].copy_from_slice(&prep.spi.to_be_bytes());
        head[4..8].copy_from_slice(&(prep.seq as u32).to_be_bytes());
        head[8..].copy_from_slice(&prep.seq.to_be_bytes());
        *icv = self.aead.seal(&prep.nonce, aad, data);
        Ok(())
    }
    // Out of line, so that the AEAD's own open is inlined here rather than called (it has a
    // second caller in `open_prepared`, through `open_with`): called, the RustCrypto core
    // read a nonce just stored (~8 ns a packet at 64 B).
    #[inline(never)]
    fn open(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        self.open_with(esp, seq_hi, None)
    }
    fn opens_prepared(&self) -> bool {
        A::NONCE_AHEAD
    }
    fn prepare_open(&self, esp: &[u8], prep: &mut OpenPrep) {
        if let Some(iv) = esp.get(ESP_HEADER_LEN..ESP_HEADER_LEN + IV) {
            prep.nonce = nonce(&self.salt, iv);
            prep.ready = true;
        }
    }
    fn open_prepared(
        &self,
        esp: &mut [u8],
        seq_hi: Option<u32>,
        prep: &OpenPrep,
    ) -> Result<(), CryptoError> {
        // For the others `open` is the faster: the nonce it builds stays in registers.
        if !A::NONCE_AHEAD || !prep.ready {
            return self.open(esp, seq_hi);
        }
        self.open_with(esp, seq_hi, Some(&prep.nonce))
    }
}
