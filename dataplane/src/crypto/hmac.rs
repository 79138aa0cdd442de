//! HMAC-SHA-256-128, HMAC-SHA-384-192 and HMAC-SHA-512-256 (RFC 4868), with the keyed inner
//! and outer states computed once per SA and cloned per packet.

use hmac::{Hmac, Mac as _};
use sha2::{Sha256, Sha384, Sha512};

use super::{CryptoError, Integrity, Mac};

/// A keyed HMAC truncated as RFC 4868 §2.3 says.
#[derive(Clone)]
pub enum HmacSha2 {
    /// HMAC-SHA-256-128.
    Sha256(Hmac<Sha256>),
    /// HMAC-SHA-384-192.
    Sha384(Hmac<Sha384>),
    /// HMAC-SHA-512-256.
    Sha512(Hmac<Sha512>),
}

impl std::fmt::Debug for HmacSha2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacSha2({:?})", self.integrity())
    }
}

impl HmacSha2 {
    /// Keys the MAC; RFC 4868 §2.1.1 fixes the key length to the hash output size.
    pub fn new(integrity: Integrity, key: &[u8]) -> Result<Self, CryptoError> {
        if key.len() != integrity.key_len() {
            return Err(CryptoError::BadKeyLength);
        }
        let bad = |_| CryptoError::BadKeyLength;
        Ok(match integrity {
            Integrity::HmacSha256 => HmacSha2::Sha256(Hmac::new_from_slice(key).map_err(bad)?),
            Integrity::HmacSha384 => HmacSha2::Sha384(Hmac::new_from_slice(key).map_err(bad)?),
            Integrity::HmacSha512 => HmacSha2::Sha512(Hmac::new_from_slice(key).map_err(bad)?),
            Integrity::None => return Err(CryptoError::Unsupported),
        })
    }

    /// The full (untruncated) MAC of the concatenated chunks into `out`; returns its length.
    fn full(&self, chunks: &[&[u8]], out: &mut [u8; 64]) -> usize {
        macro_rules! run {
            ($m:expr) => {{
                let mut m = $m.clone();
                for c in chunks {
                    m.update(c);
                }
                let r = m.finalize().into_bytes();
                out[..r.len()].copy_from_slice(&r);
                r.len()
            }};
        }
        match self {
            HmacSha2::Sha256(m) => run!(m),
            HmacSha2::Sha384(m) => run!(m),
            HmacSha2::Sha512(m) => run!(m),
        }
    }
}

impl Mac for HmacSha2 {
    fn integrity(&self) -> Integrity {
        match self {
            HmacSha2::Sha256(_) => Integrity::HmacSha256,
            HmacSha2::Sha384(_) => Integrity::HmacSha384,
            HmacSha2::Sha512(_) => Integrity::HmacSha512,
        }
    }
    fn icv_len(&self) -> usize {
        self.integrity().icv_len()
    }
    fn compute(&self, chunks: &[&[u8]], out: &mut [u8]) {
        let mut full = [0u8; 64];
        self.full(chunks, &mut full);
        let n = self.icv_len();
        out[..n].copy_from_slice(&full[..n]);
    }
    fn verify(&self, chunks: &[&[u8]], icv: &[u8]) -> bool {
        let mut full = [0u8; 64];
        self.full(chunks, &mut full);
        let n = self.icv_len();
        super::ct_eq(&full[..n], icv)
    }
}
