//! IKEv2 key schedule and message protection (RFC 7296 §2.13-2.15, §3.14; RFC 5282 for AEADs).

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use super::proposal::{Encr, Group, Integ, Prf};

/// Why a protected message could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The integrity check failed.
    #[error("integrity check failed")]
    Integrity,
    /// The encrypted payload is too short or not block aligned.
    #[error("bad encrypted payload length")]
    Length,
    /// The padding length exceeds the plaintext.
    #[error("bad padding")]
    Padding,
    /// The peer's public value is invalid for the group.
    #[error("invalid key exchange value")]
    BadPublic,
}

/// Secret bytes, wiped on drop.
pub type Secret = Zeroizing<Vec<u8>>;

/// prf(key, data).
pub fn prf(alg: Prf, key: &[u8], chunks: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($h:ty) => {{
            let mut m = <Hmac<$h> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            for c in chunks {
                m.update(c);
            }
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        Prf::HmacSha256 => run!(Sha256),
        Prf::HmacSha384 => run!(Sha384),
        Prf::HmacSha512 => run!(Sha512),
    }
}

/// prf+(K, S) truncated to `len` bytes (RFC 7296 §2.13).
pub fn prf_plus(alg: Prf, key: &[u8], seed: &[u8], len: usize) -> Secret {
    let mut out = Zeroizing::new(Vec::with_capacity(len + 64));
    let mut t: Vec<u8> = Vec::new();
    let mut i = 1u8;
    while out.len() < len {
        t = prf(alg, key, &[&t, seed, &[i]]);
        out.extend_from_slice(&t);
        i = i.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// A Diffie-Hellman private key for one exchange.
pub enum DhPrivate {
    /// MODP group: exponent and the group.
    Modp(num_bigint::BigUint, Group),
    /// Curve25519.
    X25519(x25519_dalek::StaticSecret),
    /// NIST P-256.
    P256(p256::NonZeroScalar),
    /// NIST P-384.
    P384(p384::NonZeroScalar),
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhPrivate(..)")
    }
}

/// RFC 3526 / RFC 2409 MODP primes.
fn modp_prime(g: Group) -> num_bigint::BigUint {
    const MODP1024: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF";
    const MODP2048: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";
    const MODP3072_TAIL: &str = "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF";
    const MODP4096_TAIL: &str = "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D788719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA993B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF";
    // RFC 3526: the 3072- and 4096-bit primes share the 2048-bit prime's leading digits
    // up to the point where they diverge; written out in full below for clarity.
    const MODP3072_HEAD: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7";
    let hex = match g {
        Group::Modp1024 => MODP1024.to_string(),
        Group::Modp2048 => MODP2048.to_string(),
        Group::Modp3072 => format!("{MODP3072_HEAD}{MODP3072_TAIL}"),
        Group::Modp4096 => format!("{MODP3072_HEAD}{MODP4096_TAIL}"),
        _ => String::new(),
    };
    num_bigint::BigUint::parse_bytes(hex.as_bytes(), 16).unwrap_or_default()
}

fn fixed_be(n: &num_bigint::BigUint, len: usize) -> Vec<u8> {
    let b = n.to_bytes_be();
    let mut out = vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(&b);
    out
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::getrandom(&mut v).expect("the OS random source works");
    v
}

/// Random bytes from the OS (nonces, SPIs).
pub fn random_bytes(n: usize) -> Vec<u8> {
    random(n)
}

impl DhPrivate {
    /// A fresh private key for `group`, and our public value in IKE encoding.
    pub fn generate(group: Group) -> (DhPrivate, Vec<u8>) {
        match group {
            Group::Curve25519 => {
                let s = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
                let p = x25519_dalek::PublicKey::from(&s);
                (DhPrivate::X25519(s), p.as_bytes().to_vec())
            }
            Group::Ecp256 => {
                let s = p256::NonZeroScalar::random(&mut rand_core::OsRng);
                let p = p256::PublicKey::from_secret_scalar(&s);
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                // RFC 5903 §7: x | y without the SEC1 point-format byte.
                let enc = p.to_encoded_point(false);
                (DhPrivate::P256(s), enc.as_bytes()[1..].to_vec())
            }
            Group::Ecp384 => {
                let s = p384::NonZeroScalar::random(&mut rand_core::OsRng);
                let p = p384::PublicKey::from_secret_scalar(&s);
                use p384::elliptic_curve::sec1::ToEncodedPoint;
                let enc = p.to_encoded_point(false);
                (DhPrivate::P384(s), enc.as_bytes()[1..].to_vec())
            }
            modp => {
                let p = modp_prime(modp);
                let len = modp.public_len();
                // Exponent of twice the group's security strength (RFC 3526 §8 suggests ≥ 2×).
                let x = num_bigint::BigUint::from_bytes_be(&random(64));
                let y = num_bigint::BigUint::from(2u32).modpow(&x, &p);
                (DhPrivate::Modp(x, modp), fixed_be(&y, len))
            }
        }
    }

    /// The group this private value belongs to.
    pub fn group(&self) -> Group {
        match self {
            DhPrivate::Modp(_, g) => *g,
            DhPrivate::X25519(_) => Group::Curve25519,
            DhPrivate::P256(_) => Group::Ecp256,
            DhPrivate::P384(_) => Group::Ecp384,
        }
    }

    /// The group and the private value's bytes, for the other gateway of a VRRP pair to finish
    /// an exchange in flight (`ha:`; the sync is sealed).
    pub fn export(&self) -> (Group, Secret) {
        match self {
            DhPrivate::Modp(x, g) => (*g, Zeroizing::new(x.to_bytes_be())),
            DhPrivate::X25519(s) => (Group::Curve25519, Zeroizing::new(s.to_bytes().to_vec())),
            DhPrivate::P256(s) => (Group::Ecp256, Zeroizing::new(s.to_bytes().to_vec())),
            DhPrivate::P384(s) => (Group::Ecp384, Zeroizing::new(s.to_bytes().to_vec())),
        }
    }

    /// A private value from [`DhPrivate::export`]; None if the bytes do not fit the group.
    pub fn import(group: Group, b: &[u8]) -> Option<DhPrivate> {
        Some(match group {
            Group::Curve25519 => DhPrivate::X25519(x25519_dalek::StaticSecret::from(
                <[u8; 32]>::try_from(b).ok()?,
            )),
            Group::Ecp256 => DhPrivate::P256(Option::from(p256::NonZeroScalar::from_repr(
                *p256::FieldBytes::from_slice(b.get(..32).filter(|_| b.len() == 32)?),
            ))?),
            Group::Ecp384 => DhPrivate::P384(Option::from(p384::NonZeroScalar::from_repr(
                *p384::FieldBytes::from_slice(b.get(..48).filter(|_| b.len() == 48)?),
            ))?),
            modp => {
                if b.is_empty() || b.len() > 512 || modp_prime(modp).bits() == 0 {
                    return None;
                }
                DhPrivate::Modp(num_bigint::BigUint::from_bytes_be(b), modp)
            }
        })
    }

    /// The shared secret g^ir with the peer's public value.
    pub fn shared(&self, peer: &[u8]) -> Result<Secret, CryptoError> {
        match self {
            DhPrivate::Modp(x, g) => {
                let p = modp_prime(*g);
                if peer.len() != g.public_len() {
                    return Err(CryptoError::BadPublic);
                }
                let y = num_bigint::BigUint::from_bytes_be(peer);
                let one = num_bigint::BigUint::from(1u32);
                // RFC 6989 §2.1: 1 < y < p-1.
                if y <= one || y >= &p - &one {
                    return Err(CryptoError::BadPublic);
                }
                Ok(Zeroizing::new(fixed_be(&y.modpow(x, &p), g.public_len())))
            }
            DhPrivate::X25519(s) => {
                let b: [u8; 32] = peer.try_into().map_err(|_| CryptoError::BadPublic)?;
                let sh = s.diffie_hellman(&x25519_dalek::PublicKey::from(b));
                if !sh.was_contributory() {
                    return Err(CryptoError::BadPublic);
                }
                Ok(Zeroizing::new(sh.as_bytes().to_vec()))
            }
            DhPrivate::P256(s) => {
                let mut sec1 = vec![4u8];
                sec1.extend_from_slice(peer);
                let pk =
                    p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| CryptoError::BadPublic)?;
                let sh = p256::ecdh::diffie_hellman(s, pk.as_affine());
                Ok(Zeroizing::new(sh.raw_secret_bytes().to_vec()))
            }
            DhPrivate::P384(s) => {
                let mut sec1 = vec![4u8];
                sec1.extend_from_slice(peer);
                let pk =
                    p384::PublicKey::from_sec1_bytes(&sec1).map_err(|_| CryptoError::BadPublic)?;
                let sh = p384::ecdh::diffie_hellman(s, pk.as_affine());
                Ok(Zeroizing::new(sh.raw_secret_bytes().to_vec()))
            }
        }
    }
}

/// The keys of one IKE SA (RFC 7296 §2.14).
#[derive(Clone)]
pub struct IkeKeys {
    /// PRF.
    pub prf: Prf,
    /// Encryption algorithm.
    pub encr: Encr,
    /// Integrity (None for AEADs).
    pub integ: Option<Integ>,
    /// SK_d: seeds child keys.
    pub sk_d: Secret,
    /// SK_ai / SK_ar.
    pub sk_ai: Secret,
    /// SK_ar.
    pub sk_ar: Secret,
    /// SK_ei (with salt for AEADs).
    pub sk_ei: Secret,
    /// SK_er.
    pub sk_er: Secret,
    /// SK_pi (AUTH of the initiator).
    pub sk_pi: Secret,
    /// SK_pr.
    pub sk_pr: Secret,
}

impl std::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeKeys")
            .field("prf", &self.prf)
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .finish_non_exhaustive()
    }
}

impl IkeKeys {
    /// Derives the IKE SA keys from SKEYSEED (§2.14).
    #[allow(clippy::too_many_arguments)]
    pub fn derive(
        prf_alg: Prf,
        encr: Encr,
        integ: Option<Integ>,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> IkeKeys {
        let pl = prf_alg.key_len();
        let al = integ.map_or(0, Integ::key_len);
        let el = encr.key_material_len();
        let mut seed = Vec::with_capacity(ni.len() + nr.len() + 16);
        seed.extend_from_slice(ni);
        seed.extend_from_slice(nr);
        seed.extend_from_slice(&spi_i.to_be_bytes());
        seed.extend_from_slice(&spi_r.to_be_bytes());
        let km = prf_plus(prf_alg, skeyseed, &seed, 3 * pl + 2 * al + 2 * el);
        let mut at = 0;
        let mut take = |n: usize| {
            let s = Zeroizing::new(km[at..at + n].to_vec());
            at += n;
            s
        };
        IkeKeys {
            prf: prf_alg,
            encr,
            integ,
            sk_d: take(pl),
            sk_ai: take(al),
            sk_ar: take(al),
            sk_ei: take(el),
            sk_er: take(el),
            sk_pi: take(pl),
            sk_pr: take(pl),
        }
    }

    /// Derives keys for a new IKE SA from this one's SK_d (§2.18).
    pub fn rekey_skeyseed(&self, prf_new: Prf, g_ir: &[u8], ni: &[u8], nr: &[u8]) -> Vec<u8> {
        prf(prf_new, &self.sk_d, &[g_ir, ni, nr])
    }
}

/// SKEYSEED = prf(Ni | Nr, g^ir). With HMAC the key is the nonces' concatenation (§2.14).
pub fn skeyseed(prf_alg: Prf, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(ni.len() + nr.len());
    k.extend_from_slice(ni);
    k.extend_from_slice(nr);
    prf(prf_alg, &k, &[g_ir])
}

/// Protects and unprotects SK payload bodies for one direction.
#[derive(Debug)]
pub struct SkCodec<'a> {
    /// Algorithms and keys.
    pub keys: &'a IkeKeys,
    /// True when we are the original initiator (we send with SK_ei/SK_ai).
    pub initiator: bool,
}

impl SkCodec<'_> {
    fn send_keys(&self) -> (&[u8], &[u8]) {
        if self.initiator {
            (&self.keys.sk_ei, &self.keys.sk_ai)
        } else {
            (&self.keys.sk_er, &self.keys.sk_ar)
        }
    }
    fn recv_keys(&self) -> (&[u8], &[u8]) {
        if self.initiator {
            (&self.keys.sk_er, &self.keys.sk_ar)
        } else {
            (&self.keys.sk_ei, &self.keys.sk_ai)
        }
    }

    /// Overhead of an SK payload body beyond the plaintext (IV + ICV + up to a block of pad).
    pub fn overhead(&self) -> usize {
        self.keys.encr.iv_len() + self.icv_len() + self.keys.encr.block_len()
    }

    fn icv_len(&self) -> usize {
        if self.keys.encr.is_aead() {
            16
        } else {
            self.keys.integ.map_or(0, Integ::icv_len)
        }
    }

    /// Builds a whole protected message: `header` (next/length filled in here), an SK payload
    /// whose first inner type is `inner`, and the plaintext inner chain `plain`.
    pub fn seal_message(
        &self,
        mut header: super::wire::Header,
        inner: u8,
        plain: &[u8],
    ) -> Vec<u8> {
        self.seal_with_prefix(&mut header, super::wire::ptype::SK, inner, &[], plain)
    }

    /// Builds a protected message where the encrypted payload is `sk_type` (SK or SKF) and
    /// `prefix` are extra bytes at the start of the SK body before the IV (SKF's fragment
    /// numbers).
    pub fn seal_with_prefix(
        &self,
        header: &mut super::wire::Header,
        sk_type: u8,
        inner: u8,
        prefix: &[u8],
        plain: &[u8],
    ) -> Vec<u8> {
        let enc = self.keys.encr;
        let bl = enc.block_len();
        let icv = self.icv_len();
        // Plaintext | padding | pad length, a multiple of the block length.
        let pad = (bl - (plain.len() + 1) % bl) % bl;
        let mut body = Vec::with_capacity(plain.len() + pad + 1);
        body.extend_from_slice(plain);
        body.resize(plain.len() + pad, 0);
        body.push(pad as u8);
        let iv = random(enc.iv_len());
        let sk_len = super::wire::GENERIC_LEN + prefix.len() + iv.len() + body.len() + icv;
        header.next = sk_type;
        header.length = (super::wire::HEADER_LEN + sk_len) as u32;
        let mut msg = Vec::with_capacity(header.length as usize);
        header.emit(&mut msg);
        msg.push(inner);
        msg.push(0);
        msg.extend_from_slice(&(sk_len as u16).to_be_bytes());
        msg.extend_from_slice(prefix);
        msg.extend_from_slice(&iv);
        let ct_start = msg.len();
        let (ek, ak) = self.send_keys();
        if enc.is_aead() {
            // RFC 5282 §5.1: AAD is the IKE header through the SK payload header (and the
            // fragment fields), i.e. everything before the IV.
            let aad = msg[..ct_start - iv.len()].to_vec();
            let tag = aead_seal(enc, ek, &iv, &aad, &mut body);
            msg.extend_from_slice(&body);
            msg.extend_from_slice(&tag);
        } else {
            cbc_encrypt(enc, ek, &iv, &mut body);
            msg.extend_from_slice(&body);
            let integ = self.keys.integ.unwrap_or(Integ::HmacSha256);
            let mac = integ.mac(ak, &msg);
            msg.extend_from_slice(&mac);
        }
        msg
    }

    /// Verifies and decrypts the SK payload of `msg` (a whole datagram whose last payload, at
    /// `sk_off`, is SK or SKF). `prefix_len` is 4 for SKF. Returns the inner plaintext chain.
    pub fn open_message(
        &self,
        msg: &[u8],
        sk_off: usize,
        prefix_len: usize,
    ) -> Result<Vec<u8>, CryptoError> {
        let enc = self.keys.encr;
        let icv = self.icv_len();
        let ivl = enc.iv_len();
        let body_start = sk_off + super::wire::GENERIC_LEN + prefix_len;
        if msg.len() < body_start + ivl + icv {
            return Err(CryptoError::Length);
        }
        let ct_start = body_start + ivl;
        let ct_end = msg.len() - icv;
        let (ek, ak) = self.recv_keys();
        let iv = &msg[body_start..ct_start];
        let mut ct = msg[ct_start..ct_end].to_vec();
        if ct.is_empty() || !ct.len().is_multiple_of(enc.block_len()) {
            return Err(CryptoError::Length);
        }
        if enc.is_aead() {
            aead_open(enc, ek, iv, &msg[..body_start], &mut ct, &msg[ct_end..])?;
        } else {
            let integ = self.keys.integ.ok_or(CryptoError::Integrity)?;
            let mac = integ.mac(ak, &msg[..ct_end]);
            if !ct_eq(&mac, &msg[ct_end..]) {
                return Err(CryptoError::Integrity);
            }
            cbc_decrypt(enc, ek, iv, &mut ct);
        }
        let pad = *ct.last().ok_or(CryptoError::Padding)? as usize;
        if pad + 1 > ct.len() {
            return Err(CryptoError::Padding);
        }
        ct.truncate(ct.len() - pad - 1);
        Ok(ct)
    }
}

/// Constant-time comparison of MACs, AUTH values and cookies (public lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn cbc_encrypt(enc: Encr, key: &[u8], iv: &[u8], data: &mut [u8]) {
    let n = data.len();
    match enc {
        Encr::AesCbc128 => {
            let _ = cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
                .expect("key and IV lengths come from the algorithm")
                .encrypt_padded_mut::<NoPadding>(data, n);
        }
        _ => {
            let _ = cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
                .expect("key and IV lengths come from the algorithm")
                .encrypt_padded_mut::<NoPadding>(data, n);
        }
    }
}

fn cbc_decrypt(enc: Encr, key: &[u8], iv: &[u8], data: &mut [u8]) {
    match enc {
        Encr::AesCbc128 => {
            let _ = cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
                .expect("key and IV lengths come from the algorithm")
                .decrypt_padded_mut::<NoPadding>(data);
        }
        _ => {
            let _ = cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                .expect("key and IV lengths come from the algorithm")
                .decrypt_padded_mut::<NoPadding>(data);
        }
    }
}

/// The AEAD nonce: 4-byte salt from the key material, then the 8-byte explicit IV.
fn aead_nonce(key: &[u8], iv: &[u8]) -> ([u8; 12], usize) {
    let kl = key.len() - 4;
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&key[kl..]);
    n[4..].copy_from_slice(iv);
    (n, kl)
}

fn aead_seal(enc: Encr, key: &[u8], iv: &[u8], aad: &[u8], data: &mut [u8]) -> Vec<u8> {
    let (nonce, kl) = aead_nonce(key, iv);
    let k = &key[..kl];
    let tag = match enc {
        Encr::AesGcm128 => aes_gcm::Aes128Gcm::new_from_slice(k)
            .expect("key length")
            .encrypt_in_place_detached(&nonce.into(), aad, data)
            .map(|t| t.to_vec()),
        Encr::AesGcm256 => aes_gcm::Aes256Gcm::new_from_slice(k)
            .expect("key length")
            .encrypt_in_place_detached(&nonce.into(), aad, data)
            .map(|t| t.to_vec()),
        _ => chacha20poly1305::ChaCha20Poly1305::new_from_slice(k)
            .expect("key length")
            .encrypt_in_place_detached(&nonce.into(), aad, data)
            .map(|t| t.to_vec()),
    };
    tag.unwrap_or_default()
}

fn aead_open(
    enc: Encr,
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    let (nonce, kl) = aead_nonce(key, iv);
    let k = &key[..kl];
    let tag = aes_gcm::Tag::from_slice(tag);
    let r = match enc {
        Encr::AesGcm128 => aes_gcm::Aes128Gcm::new_from_slice(k)
            .expect("key length")
            .decrypt_in_place_detached(&nonce.into(), aad, data, tag),
        Encr::AesGcm256 => aes_gcm::Aes256Gcm::new_from_slice(k)
            .expect("key length")
            .decrypt_in_place_detached(&nonce.into(), aad, data, tag),
        _ => chacha20poly1305::ChaCha20Poly1305::new_from_slice(k)
            .expect("key length")
            .decrypt_in_place_detached(&nonce.into(), aad, data, tag),
    };
    r.map_err(|_| CryptoError::Integrity)
}

/// NAT detection hash: SHA-1(SPIi | SPIr | IP | port) (RFC 7296 §2.23).
pub fn nat_hash(spi_i: u64, spi_r: u64, addr: std::net::SocketAddr) -> Vec<u8> {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr.ip() {
        std::net::IpAddr::V4(a) => h.update(a.octets()),
        std::net::IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().to_vec()
}

/// The octets an AUTH payload covers (RFC 7296 §2.15): `message | nonce | prf(SK_p, IDbody)`.
pub fn signed_octets(
    prf_alg: Prf,
    message: &[u8],
    nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Vec<u8> {
    let maced_id = prf(prf_alg, sk_p, &[id_body]);
    let mut v = Vec::with_capacity(message.len() + nonce.len() + maced_id.len());
    v.extend_from_slice(message);
    v.extend_from_slice(nonce);
    v.extend_from_slice(&maced_id);
    v
}

/// The PSK AUTH value (RFC 7296 §2.15):
/// prf(prf(PSK, "Key Pad for IKEv2"), <message> | <peer nonce> | prf(SK_p, <ID payload body>)).
/// `octets` from [`signed_octets`].
pub fn psk_auth(prf_alg: Prf, psk: &[u8], octets: &[u8]) -> Vec<u8> {
    let key = prf(prf_alg, psk, &[b"Key Pad for IKEv2"]);
    prf(prf_alg, &key, &[octets])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dh_private_values_survive_export_and_import() {
        for g in [
            Group::Modp1024,
            Group::Modp2048,
            Group::Curve25519,
            Group::Ecp256,
            Group::Ecp384,
        ] {
            let (a, a_pub) = DhPrivate::generate(g);
            let (b, b_pub) = DhPrivate::generate(g);
            let (eg, bytes) = a.export();
            assert_eq!(eg, g);
            let a2 = DhPrivate::import(g, &bytes).unwrap();
            assert_eq!(
                *a2.shared(&b_pub).unwrap(),
                *a.shared(&b_pub).unwrap(),
                "{g:?}"
            );
            assert_eq!(*b.shared(&a_pub).unwrap(), *a2.shared(&b_pub).unwrap());
        }
        assert!(DhPrivate::import(Group::Curve25519, &[1; 31]).is_none());
        assert!(DhPrivate::import(Group::Ecp256, &[0; 32]).is_none());
        assert!(DhPrivate::import(Group::Ecp384, &[1; 47]).is_none());
        assert!(DhPrivate::import(Group::Modp2048, &[]).is_none());
    }

    #[test]
    fn prf_plus_expands_per_rfc() {
        // T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02).
        let k = b"key";
        let s = b"seed";
        let out = prf_plus(Prf::HmacSha256, k, s, 40);
        let t1 = prf(Prf::HmacSha256, k, &[s, &[1]]);
        let t2 = prf(Prf::HmacSha256, k, &[&t1, s, &[2]]);
        assert_eq!(&out[..32], &t1[..]);
        assert_eq!(&out[32..], &t2[..8]);
    }

    #[test]
    fn dh_agrees_for_every_group() {
        for g in [
            Group::Modp1024,
            Group::Modp2048,
            Group::Modp3072,
            Group::Modp4096,
            Group::Ecp256,
            Group::Ecp384,
            Group::Curve25519,
        ] {
            let (a, pa) = DhPrivate::generate(g);
            let (b, pb) = DhPrivate::generate(g);
            assert_eq!(pa.len(), g.public_len(), "{g:?}");
            assert_eq!(*a.shared(&pb).unwrap(), *b.shared(&pa).unwrap(), "{g:?}");
            assert_eq!(
                a.shared(&pb[1..]).err(),
                Some(CryptoError::BadPublic),
                "{g:?}"
            );
        }
    }

    #[test]
    fn modp_primes_have_the_rfc_sizes() {
        for (g, bits) in [
            (Group::Modp1024, 1024),
            (Group::Modp2048, 2048),
            (Group::Modp3072, 3072),
            (Group::Modp4096, 4096),
        ] {
            let p = modp_prime(g);
            assert_eq!(p.bits(), bits, "{g:?}");
            // RFC 3526: every MODP prime ends in 64 one bits.
            assert_eq!(p.iter_u64_digits().next(), Some(u64::MAX), "{g:?}");
        }
    }

    #[test]
    fn modp_rejects_degenerate_publics() {
        let (a, _) = DhPrivate::generate(Group::Modp1024);
        let mut one = vec![0u8; 128];
        one[127] = 1;
        assert_eq!(a.shared(&one).err(), Some(CryptoError::BadPublic));
        assert_eq!(a.shared(&[0xff; 128]).err(), Some(CryptoError::BadPublic));
    }
}
