//! AES-GCM (RFC 4106) and AES-GMAC (RFC 4543) composed from the `aes` and `ghash` crates.
//!
//! The expanded AES key and the GHASH key H are computed once per SA. Sealing is one pass over
//! the data in segments of 32 blocks: the segment's counter blocks go through AES-NI (the `aes`
//! crate pipelines them eight at a time), are XORed into it, and its ciphertext is fed to GHASH
//! while it is still in L1. GHASH (`ghash` 0.6 over `polyval` 0.7) multiplies four blocks by
//! H^4..H^1 and reduces once per four. Opening does the same in the other order and, if the tag
//! does not verify, runs the keystream once more to put the ciphertext back as it was received
//! (attack traffic pays for that, valid traffic never does).

use aes::cipher::consts::U16;
use aes::cipher::{generic_array::GenericArray, BlockEncrypt, BlockSizeUser, KeyInit};
use aes::{Aes128, Aes256};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;

use super::aead::{nonce, split_salt};
use super::{Cipher, CryptoError, EspTransform, Integrity, ESP_HEADER_LEN};

type Block = GenericArray<u8, U16>;

/// Blocks per segment of the keystream loop (the `aes` crate pipelines them 8 at a time).
const SEG: usize = 32;

/// The GCM machinery for one key.
#[derive(Clone)]
pub struct GcmCore<C> {
    cipher: C,
    ghash: GHash,
}

impl<C> std::fmt::Debug for GcmCore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcmCore { .. }") // no key material in logs
    }
}

/// AES with 128- or 256-bit keys.
pub trait AesCipher:
    BlockEncrypt + KeyInit + BlockSizeUser<BlockSize = U16> + Clone + Send + Sync + 'static
{
}
impl AesCipher for Aes128 {}
impl AesCipher for Aes256 {}

impl<C: AesCipher> GcmCore<C> {
    /// Expands `key` and derives H = E_K(0^128).
    pub fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let cipher = C::new_from_slice(key).map_err(|_| CryptoError::BadKeyLength)?;
        let mut h = Block::default();
        cipher.encrypt_block(&mut h);
        let h: [u8; 16] = h.into();
        Ok(Self {
            cipher,
            ghash: GHash::new(&ghash::Key::from(h)),
        })
    }

    /// XORs the keystream starting at counter block `ctr` (big-endian 32-bit counter in the
    /// last four bytes) into `data`, and feeds the ciphertext to `gh` (before XOR when
    /// decrypting, after when encrypting).
    ///
    /// The data goes in segments of [`SEG`] blocks. The counter blocks of the next segment are
    /// written before the current one is encrypted, so that AES reads counter blocks stored a
    /// whole segment earlier: read right after their 12- and 4-byte stores, every 16-byte load
    /// waited for the stores to reach L1 (store forwarding fails for it), and those loads were
    /// the hottest instructions of the loop.
    #[inline]
    fn ctr_ghash(&self, j0: &[u8; 16], data: &mut [u8], gh: &mut GHash, encrypt: bool) {
        let base = u32::from_be_bytes([j0[12], j0[13], j0[14], j0[15]]);
        let mut counter = base.wrapping_add(1);
        let mut ctrs = [[Block::default(); SEG]; 2];
        // A counter block as two 8-byte words (built byte by byte, it took 16 one-byte stores).
        let head = u64::from_le_bytes([j0[0], j0[1], j0[2], j0[3], j0[4], j0[5], j0[6], j0[7]]);
        let mid = u64::from(u32::from_le_bytes([j0[8], j0[9], j0[10], j0[11]]));
        let fill = |blocks: &mut [Block], counter: &mut u32| {
            for b in blocks.iter_mut() {
                let tail = mid | u64::from(u32::from_le_bytes(counter.to_be_bytes())) << 32;
                b[..8].copy_from_slice(&head.to_le_bytes());
                b[8..].copy_from_slice(&tail.to_le_bytes());
                *counter = counter.wrapping_add(1);
            }
        };
        let blocks = data.len().div_ceil(16);
        fill(&mut ctrs[0][..blocks.min(SEG)], &mut counter);
        for (i, seg) in data.chunks_mut(16 * SEG).enumerate() {
            let [a, b] = &mut ctrs;
            let (cur, next) = if i % 2 == 0 { (a, b) } else { (b, a) };
            let later = blocks.saturating_sub((i + 1) * SEG);
            if later > 0 {
                fill(&mut next[..later.min(SEG)], &mut counter);
            }
            let n = seg.len().div_ceil(16);
            if !encrypt {
                gh.update_padded(seg);
            }
            self.cipher.encrypt_blocks(&mut cur[..n]);
            xor_blocks(seg, &cur[..n]);
            if encrypt {
                gh.update_padded(seg);
            }
        }
    }

    /// The keystream alone (to undo a decryption whose tag failed).
    fn ctr(&self, j0: &[u8; 16], data: &mut [u8]) {
        let mut gh = self.ghash.clone();
        self.ctr_ghash(j0, data, &mut gh, true);
    }

    fn finish(&self, j0: &[u8; 16], gh: GHash, aad_len: usize, ct_len: usize) -> [u8; 16] {
        let mut gh = gh;
        let mut lens = [0u8; 16];
        lens[..8].copy_from_slice(&((aad_len as u64) * 8).to_be_bytes());
        lens[8..].copy_from_slice(&((ct_len as u64) * 8).to_be_bytes());
        gh.update(&[ghash::Block::from(lens)]);
        let mut s = gh.finalize();
        let mut ek = Block::clone_from_slice(j0);
        self.cipher.encrypt_block(&mut ek);
        let mut tag = [0u8; 16];
        for i in 0..16 {
            tag[i] = s[i] ^ ek[i];
        }
        s.iter_mut().for_each(|b| *b = 0);
        tag
    }

    /// GCM encryption with a 96-bit nonce: encrypts `data` in place and returns the tag.
    pub fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        let j0 = j0(nonce);
        let mut gh = self.ghash.clone();
        gh.update_padded(aad);
        self.ctr_ghash(&j0, data, &mut gh, true);
        self.finish(&j0, gh, aad.len(), data.len())
    }

    /// GCM decryption with a 96-bit nonce. On a tag mismatch `data` is left as it was and
    /// false is returned.
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        let j0 = j0(nonce);
        let mut gh = self.ghash.clone();
        gh.update_padded(aad);
        self.ctr_ghash(&j0, data, &mut gh, false);
        let t = self.finish(&j0, gh, aad.len(), data.len());
        if super::ct_eq(&t, tag) {
            true
        } else {
            self.ctr(&j0, data);
            false
        }
    }

    /// GMAC: the GCM tag of `aad_parts` (concatenated) with no plaintext.
    pub fn gmac(&self, nonce: &[u8; 12], aad_parts: &[&[u8]]) -> [u8; 16] {
        let j0 = j0(nonce);
        let mut gh = self.ghash.clone();
        let mut stream = Stream::default();
        let mut total = 0;
        for p in aad_parts {
            total += p.len();
            stream.feed(&mut gh, p);
        }
        stream.flush(&mut gh);
        self.finish(&j0, gh, total, 0)
    }
}

/// Buffers bytes into whole 16-byte blocks for GHASH (GMAC's AAD arrives in pieces).
#[derive(Default)]
struct Stream {
    buf: [u8; 16],
    n: usize,
}

impl Stream {
    fn feed(&mut self, gh: &mut GHash, mut data: &[u8]) {
        if self.n > 0 {
            let take = (16 - self.n).min(data.len());
            self.buf[self.n..self.n + take].copy_from_slice(&data[..take]);
            self.n += take;
            data = &data[take..];
            if self.n < 16 {
                return;
            }
            gh.update(&[ghash::Block::from(self.buf)]);
            self.n = 0;
        }
        let whole = data.len() / 16 * 16;
        if whole > 0 {
            gh.update_padded(&data[..whole]);
        }
        let rest = &data[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.n = rest.len();
    }
    fn flush(&mut self, gh: &mut GHash) {
        if self.n > 0 {
            gh.update_padded(&self.buf[..self.n]);
            self.n = 0;
        }
    }
}

/// `data ^= keystream`, 16 bytes at a time (a byte loop over the blocks does not vectorise);
/// a short last block uses the keystream's first bytes.
#[inline(always)]
fn xor_blocks(data: &mut [u8], ks: &[Block]) {
    let full = data.len() / 16;
    let mut chunks = data.chunks_exact_mut(16);
    for (d, k) in (&mut chunks).zip(ks) {
        let mut a = [0u8; 16];
        a.copy_from_slice(d);
        let mut b = [0u8; 16];
        b.copy_from_slice(k);
        let x = u128::from_ne_bytes(a) ^ u128::from_ne_bytes(b);
        d.copy_from_slice(&x.to_ne_bytes());
    }
    let rest = chunks.into_remainder();
    if let Some(k) = ks.get(full) {
        for (d, k) in rest.iter_mut().zip(k.iter()) {
            *d ^= k;
        }
    }
}

#[inline]
fn j0(nonce: &[u8; 12]) -> [u8; 16] {
    let mut j = [0u8; 16];
    j[..12].copy_from_slice(nonce);
    j[15] = 1;
    j
}

const GCM_IV: usize = 8;
const GCM_ICV: usize = 16;

impl<C: AesCipher> super::aead::Aead96 for GcmCore<C> {
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        GcmCore::seal(self, nonce, aad, data)
    }
    fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        GcmCore::open(self, nonce, aad, data, tag)
    }
}

/// RFC 4106 AES-GCM-16 transform on the composed `aes` + `ghash` core.
pub fn esp_gcm<C: AesCipher>(
    cipher: Cipher,
    key: &[u8],
    aes_len: usize,
) -> Result<super::aead::EspAead<GcmCore<C>>, CryptoError> {
    let (k, salt) = split_salt(key, aes_len)?;
    Ok(super::aead::EspAead::new(cipher, GcmCore::new(k)?, salt))
}

/// RFC 4543 ENCR_NULL_AUTH_AES_GMAC: authentication only.
pub struct EspGmac<C> {
    core: GcmCore<C>,
    salt: [u8; 4],
    cipher: Cipher,
}

impl<C: AesCipher> EspGmac<C> {
    /// `key` is the AES key followed by the 4-byte salt.
    pub fn new(cipher: Cipher, key: &[u8], aes_len: usize) -> Result<Self, CryptoError> {
        let (k, salt) = split_salt(key, aes_len)?;
        Ok(Self {
            core: GcmCore::new(k)?,
            salt,
            cipher,
        })
    }

    /// RFC 4543 §3.2: AAD = SPI, [ESN high], sequence, IV, payload (everything but the ICV).
    fn tag(&self, esp: &[u8], seq_hi: Option<u32>) -> [u8; 16] {
        let n = nonce(&self.salt, &esp[ESP_HEADER_LEN..]);
        let body = &esp[..esp.len() - GCM_ICV];
        match seq_hi {
            Some(hi) => {
                let hi = hi.to_be_bytes();
                self.core.gmac(&n, &[&body[..4], &hi, &body[4..]])
            }
            None => self.core.gmac(&n, &[body]),
        }
    }
}

impl<C: AesCipher> EspTransform for EspGmac<C> {
    fn cipher(&self) -> Cipher {
        self.cipher
    }
    fn integrity(&self) -> Integrity {
        Integrity::None
    }
    fn iv_len(&self) -> usize {
        GCM_IV
    }
    fn block_align(&self) -> usize {
        4
    }
    fn icv_len(&self) -> usize {
        GCM_ICV
    }
    fn write_iv(&self, seq: u64, iv: &mut [u8]) {
        iv[..8].copy_from_slice(&seq.to_be_bytes());
    }
    fn seal(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        if esp.len() < ESP_HEADER_LEN + GCM_IV + GCM_ICV {
            return Err(CryptoError::BadLength);
        }
        let t = self.tag(esp, seq_hi);
        let end = esp.len() - GCM_ICV;
        esp[end..].copy_from_slice(&t);
        Ok(())
    }
    fn open(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        if esp.len() < ESP_HEADER_LEN + GCM_IV + GCM_ICV {
            return Err(CryptoError::BadLength);
        }
        let t = self.tag(esp, seq_hi);
        if super::ct_eq(&t, &esp[esp.len() - GCM_ICV..]) {
            Ok(())
        } else {
            Err(CryptoError::IcvMismatch)
        }
    }
}

/// Raw AES-GCM with a 96-bit nonce and 16-byte tag, for published-vector tests and benches.
#[doc(hidden)]
pub fn aes_gcm_seal(
    key: &[u8],
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
) -> Result<[u8; 16], CryptoError> {
    Ok(match key.len() {
        16 => GcmCore::<Aes128>::new(key)?.seal(nonce, aad, data),
        32 => GcmCore::<Aes256>::new(key)?.seal(nonce, aad, data),
        _ => return Err(CryptoError::BadKeyLength),
    })
}

/// Raw AES-GCM open; see [`aes_gcm_seal`].
#[doc(hidden)]
pub fn aes_gcm_open(
    key: &[u8],
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8],
) -> Result<bool, CryptoError> {
    Ok(match key.len() {
        16 => GcmCore::<Aes128>::new(key)?.open(nonce, aad, data, tag),
        32 => GcmCore::<Aes256>::new(key)?.open(nonce, aad, data, tag),
        _ => return Err(CryptoError::BadKeyLength),
    })
}

impl<C> std::fmt::Debug for EspGmac<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EspGmac({:?})", self.cipher)
    }
}
