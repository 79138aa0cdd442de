//! ESP and AH cryptography behind one trait, with the backend chosen when an SA is installed.
//!
//! An [`EspTransform`] works on the ESP region of a packet, laid out as on the wire
//! (RFC 4303 §2):
//!
//! ```text
//! | SPI (4) | Sequence (4) | IV (iv_len) | payload | padding | pad len | next hdr | ICV (icv_len) |
//! ```
//!
//! Each transform builds its own authenticated data from that region: AEADs use SPI and
//! sequence number (with the ESN high half inserted, RFC 4106 §5 / RFC 7634 §2.2); CBC+HMAC
//! authenticates SPI..ciphertext and appends the ESN high half to the MAC input only
//! (RFC 4303 §2.2.1); GMAC authenticates everything (RFC 4543 §3.2).
//!
//! Every backend must agree byte for byte with the others and with the published vectors.

use std::fmt;

/// Length of the ESP header (SPI + sequence number).
pub const ESP_HEADER_LEN: usize = 8;

/// The ESP encryption algorithm of an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cipher {
    /// ENCR_NULL (RFC 2410): for tests and benchmarks only.
    Null,
    /// AES-CBC with a 128-bit key (RFC 3602).
    #[serde(rename = "aes-cbc-128")]
    AesCbc128,
    /// AES-CBC with a 256-bit key (RFC 3602).
    #[serde(rename = "aes-cbc-256")]
    AesCbc256,
    /// AES-GCM with a 128-bit key and 16-byte ICV (RFC 4106).
    #[serde(rename = "aes-gcm-128")]
    AesGcm128,
    /// AES-GCM with a 256-bit key and 16-byte ICV (RFC 4106).
    #[serde(rename = "aes-gcm-256")]
    AesGcm256,
    /// ChaCha20-Poly1305 (RFC 7634).
    Chacha20Poly1305,
    /// AES-GMAC with a 128-bit key: authentication only (RFC 4543).
    #[serde(rename = "aes-gmac-128")]
    AesGmac128,
    /// AES-GMAC with a 256-bit key: authentication only (RFC 4543).
    #[serde(rename = "aes-gmac-256")]
    AesGmac256,
}

impl Cipher {
    /// True for combined-mode algorithms that carry their own ICV (no separate integrity).
    pub const fn is_aead(self) -> bool {
        matches!(
            self,
            Cipher::AesGcm128
                | Cipher::AesGcm256
                | Cipher::Chacha20Poly1305
                | Cipher::AesGmac128
                | Cipher::AesGmac256
        )
    }

    /// Key material length in bytes, including the 4-byte salt of the AEADs (RFC 4106 §8.1).
    pub const fn key_len(self) -> usize {
        match self {
            Cipher::Null => 0,
            Cipher::AesCbc128 => 16,
            Cipher::AesCbc256 => 32,
            Cipher::AesGcm128 | Cipher::AesGmac128 => 16 + 4,
            Cipher::AesGcm256 | Cipher::AesGmac256 | Cipher::Chacha20Poly1305 => 32 + 4,
        }
    }
}

/// The ESP/AH integrity algorithm of an SA (none for AEADs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Integrity {
    /// No separate integrity: only for AEAD ciphers ([`new_esp_transform`] refuses it for CBC
    /// and NULL).
    None,
    /// HMAC-SHA-256-128 (RFC 4868).
    HmacSha256,
    /// HMAC-SHA-384-192 (RFC 4868).
    HmacSha384,
    /// HMAC-SHA-512-256 (RFC 4868).
    HmacSha512,
}

impl Integrity {
    /// Key length in bytes (RFC 4868 §2.1: the hash output size).
    pub const fn key_len(self) -> usize {
        match self {
            Integrity::None => 0,
            Integrity::HmacSha256 => 32,
            Integrity::HmacSha384 => 48,
            Integrity::HmacSha512 => 64,
        }
    }
    /// Truncated ICV length in bytes.
    pub const fn icv_len(self) -> usize {
        match self {
            Integrity::None => 0,
            Integrity::HmacSha256 => 16,
            Integrity::HmacSha384 => 24,
            Integrity::HmacSha512 => 32,
        }
    }
}

/// Which implementation runs an SA's crypto.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The fastest backend available for the algorithm.
    #[default]
    Auto,
    /// Pure Rust: RustCrypto `aes` + `ghash` composed here, `hmac`/`sha2`, `chacha20poly1305`.
    RustCrypto,
    /// Intel ipsec-mb through FFI (feature `ipsec-mb`).
    IpsecMb,
}

/// Why a crypto operation or set-up failed. Copy and string-free: it is used on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The ICV did not verify. The payload is left as it was received.
    IcvMismatch,
    /// The ESP region is too short, or the ciphertext is not a multiple of the block size.
    BadLength,
    /// A key of the wrong length was given at set-up.
    BadKeyLength,
    /// The algorithm combination is not valid (e.g. an AEAD with a separate integrity).
    Unsupported,
    /// The requested backend is not compiled in or not available on this CPU.
    BackendUnavailable,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CryptoError::IcvMismatch => "integrity check failed",
            CryptoError::BadLength => "bad ESP length for the algorithm",
            CryptoError::BadKeyLength => "key has the wrong length for the algorithm",
            CryptoError::Unsupported => "unsupported algorithm combination",
            CryptoError::BackendUnavailable => "crypto backend not available",
        })
    }
}

impl std::error::Error for CryptoError {}

/// One SA's ESP transform (one direction's keys). Chosen once, at SA install time.
///
/// `seq_hi` is `Some(high 32 bits)` when the SA uses extended sequence numbers.
pub trait EspTransform: Send + Sync + fmt::Debug {
    /// Which cipher this is.
    fn cipher(&self) -> Cipher;
    /// Which separate integrity algorithm this is ([`Integrity::None`] for AEADs).
    fn integrity(&self) -> Integrity;
    /// Explicit IV bytes carried after the ESP header.
    fn iv_len(&self) -> usize;
    /// Payload + padding + pad length + next header must be a multiple of this
    /// (16 for CBC, 4 otherwise: RFC 4303 §2.4).
    fn block_align(&self) -> usize;
    /// ICV length in bytes.
    fn icv_len(&self) -> usize;
    /// Writes the IV for the packet with sequence number `seq` (64-bit). AEADs use a unique
    /// counter-derived value (RFC 4106 §3.1); CBC uses an unpredictable one (RFC 3602 §2.3).
    fn write_iv(&self, seq: u64, iv: &mut [u8]);
    /// Encrypts the plaintext part of `esp` in place and writes the ICV at its end.
    /// The SPI, sequence number and IV must already be in place.
    fn seal(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError>;
    /// Verifies the ICV and, if it matches, decrypts the ciphertext in place.
    fn open(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError>;
    /// Makes what [`EspTransform::seal_prepared`] needs for a run of packets of the SA `spi`
    /// with consecutive sequence numbers from `first` (`preps[k]` for `first + k`; `esn`: the SA
    /// uses extended sequence numbers). AEADs build their nonce and authenticated data here: a
    /// burst prepares all its packets before sealing the first, so the crypto library reads
    /// bytes written long before rather than just now (which stalls the load until the stores
    /// land).
    fn prepare(&self, spi: u32, first: u64, esn: bool, preps: &mut [SealPrep]) {
        for (k, prep) in preps.iter_mut().enumerate() {
            // Sequence numbers end at 2^64 - 1 (reserve_seqs); no range that could overflow.
            let seq = first.wrapping_add(k as u64);
            prep.spi = spi;
            prep.seq = seq;
            prep.esn = esn;
        }
    }
    /// Whether [`EspTransform::open_prepared`] gains from [`EspTransform::prepare_open`] made a
    /// burst ahead (inbound bursts skip it for transforms that do not).
    fn opens_prepared(&self) -> bool {
        false
    }
    /// Makes what [`EspTransform::open_prepared`] needs for the arriving ESP region `esp`
    /// (the same bytes it will be given). AEADs build their nonce (salt || IV) here: an
    /// inbound burst prepares all its packets before opening the first, for the reason given
    /// at [`EspTransform::prepare`] (a nonce built just before the call cost ~12 ns a packet
    /// at 1420 B with ipsec-mb, `perf/RESULTS.md`). Others do nothing.
    fn prepare_open(&self, esp: &[u8], prep: &mut OpenPrep) {
        let _ = (esp, prep);
    }
    /// [`EspTransform::open`] with what [`EspTransform::prepare_open`] made from the same
    /// `esp`.
    fn open_prepared(
        &self,
        esp: &mut [u8],
        seq_hi: Option<u32>,
        prep: &OpenPrep,
    ) -> Result<(), CryptoError> {
        let _ = prep;
        self.open(esp, seq_hi)
    }
    /// Protects one outbound packet in one call: writes the ESP header (SPI, the low half of
    /// the sequence number) and the IV at the front of `esp`, then seals as
    /// [`EspTransform::seal`] does.
    fn seal_prepared(&self, esp: &mut [u8], prep: &SealPrep) -> Result<(), CryptoError> {
        let iv = esp
            .get_mut(ESP_HEADER_LEN..ESP_HEADER_LEN + self.iv_len())
            .ok_or(CryptoError::BadLength)?;
        self.write_iv(prep.seq, iv);
        esp[..4].copy_from_slice(&prep.spi.to_be_bytes());
        esp[4..8].copy_from_slice(&(prep.seq as u32).to_be_bytes());
        self.seal(esp, prep.esn.then_some((prep.seq >> 32) as u32))
    }
}

/// One outbound packet's sequence number and what its transform derives from it ahead of
/// sealing ([`EspTransform::prepare`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SealPrep {
    pub(crate) spi: u32,
    pub(crate) seq: u64,
    pub(crate) esn: bool,
    /// AEADs (RFC 4106 framing): salt || IV, and SPI || [ESN high] || sequence.
    pub(crate) nonce: [u8; 12],
    pub(crate) aad: [u8; 12],
    pub(crate) aad_len: u8,
}

/// What an arriving packet's transform derives from its ESP header and IV ahead of opening
/// ([`EspTransform::prepare_open`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenPrep {
    /// AEADs: salt || IV, once made (`ready`).
    pub(crate) nonce: [u8; 12],
    pub(crate) ready: bool,
}

impl SealPrep {
    /// The SA's SPI.
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// The packet's 64-bit sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Whether the SA uses extended sequence numbers.
    pub fn esn(&self) -> bool {
        self.esn
    }
}

/// A keyed MAC for AH (RFC 4302) and for building HMAC-based ESP transforms.
pub trait Mac: Send + Sync + fmt::Debug {
    /// Which algorithm this is.
    fn integrity(&self) -> Integrity;
    /// Truncated ICV length.
    fn icv_len(&self) -> usize;
    /// Computes the truncated MAC over the concatenation of `chunks` into `out[..icv_len]`.
    fn compute(&self, chunks: &[&[u8]], out: &mut [u8]);
    /// Constant-time verification of `icv` over the concatenation of `chunks`.
    fn verify(&self, chunks: &[&[u8]], icv: &[u8]) -> bool;
}

pub mod aead;
pub mod cbc;
pub mod chacha;
pub mod gcm;
pub mod hmac;
#[cfg(feature = "ipsec-mb")]
mod ipsecmb;

/// Compares two ICVs without a data-dependent early exit (the lengths are public). Cheaper
/// than `subtle`'s byte-wise compare, whose per-byte optimisation barriers cost ~100
/// instructions per 16-byte tag on the hot path.
#[inline]
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u64;
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let mut xa = [0u8; 8];
        let mut ya = [0u8; 8];
        xa.copy_from_slice(x);
        ya.copy_from_slice(y);
        diff |= u64::from_ne_bytes(xa) ^ u64::from_ne_bytes(ya);
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Builds the ESP transform of an SA: the algorithm pair, its keys and the backend are
/// decided here, once, when the SA is installed.
pub fn new_esp_transform(
    cipher: Cipher,
    integrity: Integrity,
    enc_key: &[u8],
    auth_key: &[u8],
    backend: Backend,
) -> Result<Box<dyn EspTransform>, CryptoError> {
    if cipher.is_aead() && integrity != Integrity::None {
        return Err(CryptoError::Unsupported);
    }
    // RFC 4303 §1 lets ESP offer confidentiality alone but warns that it is open to active
    // attacks; CBC without an ICV is (bit flipping, padding and cut-and-paste oracles). So no
    // configuration can ask for it (strongSwan refuses it by default too); RFC 3602's test
    // vectors, which have no ICV, build [`cbc::EspCbc`] without a MAC directly.
    if matches!(cipher, Cipher::AesCbc128 | Cipher::AesCbc256) && integrity == Integrity::None {
        return Err(CryptoError::Unsupported);
    }
    if enc_key.len() != cipher.key_len() || auth_key.len() != integrity.key_len() {
        return Err(CryptoError::BadKeyLength);
    }
    match backend {
        Backend::IpsecMb => {
            #[cfg(feature = "ipsec-mb")]
            return ipsecmb::new_transform(cipher, integrity, enc_key, auth_key);
            #[cfg(not(feature = "ipsec-mb"))]
            return Err(CryptoError::BackendUnavailable);
        }
        Backend::Auto => {
            #[cfg(feature = "ipsec-mb")]
            if let Ok(t) = ipsecmb::new_transform(cipher, integrity, enc_key, auth_key) {
                return Ok(t);
            }
        }
        Backend::RustCrypto => {}
    }
    let mac = match integrity {
        Integrity::None => None,
        i => Some(hmac::HmacSha2::new(i, auth_key)?),
    };
    use aes::{Aes128, Aes256};
    Ok(match cipher {
        Cipher::Null => Box::new(cbc::EspNull::new(mac.ok_or(CryptoError::Unsupported)?)),
        Cipher::AesCbc128 => Box::new(cbc::EspCbc::<Aes128>::new(cipher, enc_key, mac)?),
        Cipher::AesCbc256 => Box::new(cbc::EspCbc::<Aes256>::new(cipher, enc_key, mac)?),
        Cipher::AesGcm128 => Box::new(gcm::esp_gcm::<Aes128>(cipher, enc_key, 16)?),
        Cipher::AesGcm256 => Box::new(gcm::esp_gcm::<Aes256>(cipher, enc_key, 32)?),
        Cipher::AesGmac128 => Box::new(gcm::EspGmac::<Aes128>::new(cipher, enc_key, 16)?),
        Cipher::AesGmac256 => Box::new(gcm::EspGmac::<Aes256>::new(cipher, enc_key, 32)?),
        Cipher::Chacha20Poly1305 => Box::new(chacha::esp_chacha(enc_key)?),
    })
}

/// Builds a keyed MAC (AH, or tests).
pub fn new_mac(integrity: Integrity, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
    Ok(Box::new(hmac::HmacSha2::new(integrity, key)?))
}
