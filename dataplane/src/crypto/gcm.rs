//! AES-GCM (RFC 4106) and AES-GMAC (RFC 4543) composed from the `aes` and `ghash` crates.
//!
//! The expanded AES key and the GHASH key H are computed once per SA. Sealing is two passes
//! over the data (a packet stays in L1 between them): the keystream, then GHASH over the
//! ciphertext. The keystream runs inside the `aes` crate's backend closure, a batch of counter
//! blocks at a time (eight with AES-NI): each counter block is the nonce ORed with a constant
//! from [`CTR_TAIL`], goes through AES in a stack array and is XORed straight into the data,
//! with no counter or keystream buffer the size of the packet. GHASH (`ghash` 0.6 over
//! `polyval` 0.7) multiplies four blocks by H^4..H^1 and reduces once per four. Opening hashes
//! the ciphertext and checks the tag first, and decrypts only a packet whose tag verified, so a
//! refused packet is left exactly as it arrived.

use aes::cipher::consts::U16;
use aes::cipher::typenum::Unsigned;
use aes::cipher::{
    generic_array::GenericArray, BlockBackend, BlockClosure, BlockEncrypt, BlockSizeUser, KeyInit,
    ParBlocks,
};
use aes::{Aes128, Aes256};
use ghash::universal_hash::UniversalHash;
use ghash::GHash;

use super::aead::{nonce, split_salt};
use super::{Cipher, CryptoError, EspTransform, Integrity, ESP_HEADER_LEN};

type Block = GenericArray<u8, U16>;

/// Counter values with a precomputed tail: ESP's largest jumbo frames (9216 bytes) need
/// counters 2..=578; beyond this the counter block is built byte by byte.
const CTR_TABLE: usize = 640;

/// `CTR_TAIL[i]` is 12 zero bytes and then `i` as a big-endian `u32`: the counter block for
/// counter `i` is the 96-bit nonce (with four zero bytes) ORed with it, one vector OR with a
/// memory operand and one 16-byte store, which AES's 16-byte load can forward from.
static CTR_TAIL: [[u8; 16]; CTR_TABLE] = {
    let mut t = [[0u8; 16]; CTR_TABLE];
    let mut i = 0;
    while i < CTR_TABLE {
        let b = (i as u32).to_be_bytes();
        t[i][12] = b[0];
        t[i][13] = b[1];
        t[i][14] = b[2];
        t[i][15] = b[3];
        i += 1;
    }
    t
};

/// CTR mode run inside the `aes` crate's backend: XORs the keystream from counter `first` on
/// into `data`.
struct Keystream<'a> {
    /// The nonce's 12 bytes, then four zero bytes.
    nonce: [u8; 16],
    first: u32,
    data: &'a mut [u8],
}

impl BlockSizeUser for Keystream<'_> {
    type BlockSize = U16;
}

impl BlockClosure for Keystream<'_> {
    #[inline(always)]
    fn call<B: BlockBackend<BlockSize = U16>>(self, backend: &mut B) {
        let n = B::ParBlocksSize::USIZE;
        let nonce = self.nonce;
        let mut ctr = self.first;
        let mut par: ParBlocks<B> = Default::default();
        let mut fill = |par: &mut ParBlocks<B>| {
            let base = ctr as usize;
            if base <= CTR_TABLE - n {
                for (b, t) in par.iter_mut().zip(&CTR_TAIL[base..base + n]) {
                    let mut x = [0u8; 16];
                    for j in 0..16 {
                        x[j] = nonce[j] | t[j];
                    }
                    *b = Block::from(x);
                }
                ctr = ctr.wrapping_add(n as u32);
            } else {
                // Past the table (IKE messages, or an inc32 wrap): by hand.
                for b in par.iter_mut() {
                    *b = counter_block(&nonce, ctr);
                    ctr = ctr.wrapping_add(1);
                }
            }
        };
        let mut chunks = self.data.chunks_exact_mut(16 * n);
        for c in &mut chunks {
            fill(&mut par);
            backend.proc_par_blocks((&mut par).into());
            xor_into(c, &par);
        }
        // The last few blocks one at a time (independent, so they still overlap).
        for d in chunks.into_remainder().chunks_mut(16) {
            let mut b = counter_block(&nonce, ctr);
            backend.proc_block((&mut b).into());
            ctr = ctr.wrapping_add(1);
            xor_into(d, core::slice::from_ref(&b));
        }
    }
}

/// The counter block for `ctr`: the nonce's 12 bytes, then `ctr` big-endian.
#[inline(always)]
fn counter_block(nonce: &[u8; 16], ctr: u32) -> Block {
    let mut b = Block::from(*nonce);
    b[12..].copy_from_slice(&ctr.to_be_bytes());
    b
}

/// `data ^= keystream` for up to `ks.len()` blocks, 16 bytes at a time (one vector XOR each);
/// a short last block uses its keystream block's first bytes.
#[inline(always)]
fn xor_into(data: &mut [u8], ks: &[Block]) {
    let mut chunks = data.chunks_exact_mut(16);
    let mut ks = ks.iter();
    for (d, k) in (&mut chunks).zip(&mut ks) {
        let mut x = [0u8; 16];
        for j in 0..16 {
            x[j] = d[j] ^ k[j];
        }
        d.copy_from_slice(&x);
    }
    let rest = chunks.into_remainder();
    if let Some(k) = ks.next() {
        for (d, k) in rest.iter_mut().zip(k.iter()) {
            *d ^= k;
        }
    }
}

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

    /// XORs the keystream that follows `j0` (counters j0+1, j0+2, ...) into `data`.
    #[inline]
    fn ctr(&self, j0: &[u8; 16], data: &mut [u8]) {
        let mut nonce = *j0;
        nonce[12..].fill(0);
        let first = u32::from_be_bytes([j0[12], j0[13], j0[14], j0[15]]).wrapping_add(1);
        self.cipher
            .encrypt_with_backend(Keystream { nonce, first, data });
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
        self.ctr(&j0, data);
        gh.update_padded(data);
        self.finish(&j0, gh, aad.len(), data.len())
    }

    /// GCM decryption with a 96-bit nonce. On a tag mismatch `data` is left as it was and
    /// false is returned.
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        let j0 = j0(nonce);
        let mut gh = self.ghash.clone();
        gh.update_padded(aad);
        gh.update_padded(data);
        let t = self.finish(&j0, gh, aad.len(), data.len());
        if super::ct_eq(&t, tag) {
            self.ctr(&j0, data);
            true
        } else {
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
