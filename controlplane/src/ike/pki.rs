//! X.509 certificates and signature authentication for IKEv2 (RFC 7296 §2.15 and §3.6–3.8,
//! RFC 7427 digital signatures, RFC 4754 ECDSA, RFC 8420 Ed25519).
//!
//! Certificates are parsed with `x509-parser`; every signature (certificate chains and IKE AUTH
//! payloads) is made and checked with `ring`, whose RSA and ECDSA code is constant time. What a
//! peer sends is untrusted: every failure is a typed [`PkiError`], never a panic.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo, X509Name};
use zeroize::Zeroizing;

use super::fetch;
use super::ocsp;

/// AUTH methods (RFC 7296 §3.8, RFC 4754, RFC 7427).
pub mod method {
    /// RSA Digital Signature (PKCS#1 v1.5 over SHA-1).
    pub const RSA_SIG: u8 = 1;
    /// Shared Key Message Integrity Code.
    pub const PSK: u8 = 2;
    /// ECDSA with SHA-256 on P-256 (RFC 4754).
    pub const ECDSA_256: u8 = 9;
    /// ECDSA with SHA-384 on P-384 (RFC 4754).
    pub const ECDSA_384: u8 = 10;
    /// ECDSA with SHA-512 on P-521 (RFC 4754; not supported).
    pub const ECDSA_521: u8 = 11;
    /// Digital Signature (RFC 7427).
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// Hash algorithm numbers of SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4, RFC 8420).
pub mod hash {
    /// SHA2-256.
    pub const SHA2_256: u16 = 2;
    /// SHA2-384.
    pub const SHA2_384: u16 = 3;
    /// SHA2-512.
    pub const SHA2_512: u16 = 4;
    /// "Identity": the signature algorithm hashes itself (Ed25519, RFC 8420).
    pub const IDENTITY: u16 = 5;
}

/// The SIGNATURE_HASH_ALGORITHMS notify data we send: what we can verify.
pub fn supported_hashes() -> Vec<u8> {
    [
        hash::SHA2_256,
        hash::SHA2_384,
        hash::SHA2_512,
        hash::IDENTITY,
    ]
    .iter()
    .flat_map(|h| h.to_be_bytes())
    .collect()
}

/// Parses SIGNATURE_HASH_ALGORITHMS notify data (a list of 16-bit numbers).
pub fn parse_hashes(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// CERT / CERTREQ encoding "X.509 Certificate - Signature" (RFC 7296 §3.6).
pub const CERT_X509_SIGNATURE: u8 = 4;

// ASN.1 AlgorithmIdentifiers as RFC 7427 Appendix A writes them.
const ALG_SHA256_RSA: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
/// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 7427 Appendix A.4.3).
const ALG_RSA_PSS_SHA256: &[u8] = &[
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x20,
];
const ALG_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const ALG_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
const ALG_ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

// Dotted OIDs.
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_SHA1_RSA: &str = "1.2.840.113549.1.1.5";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";
const OID_SHA256_RSA: &str = "1.2.840.113549.1.1.11";
const OID_SHA384_RSA: &str = "1.2.840.113549.1.1.12";
const OID_SHA512_RSA: &str = "1.2.840.113549.1.1.13";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
const OID_ED25519: &str = "1.3.101.112";

/// What went wrong with a certificate, key or signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PkiError {
    /// A file could not be read.
    #[error("{0}")]
    Io(String),
    /// Not a certificate we can parse.
    #[error("malformed certificate: {0}")]
    BadCert(String),
    /// Not a private key we can use.
    #[error("unusable private key: {0}")]
    BadKey(String),
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    /// A key or signature algorithm we do not implement.
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A certificate is outside its validity period.
    #[error("certificate `{0}` is not valid now (expired or not yet valid)")]
    Expired(String),
    /// No path from the certificate to a configured CA.
    #[error("no trusted CA issued `{0}`")]
    Untrusted(String),
    /// An issuer in the chain is not a CA.
    #[error("`{0}` is not a CA certificate (basicConstraints)")]
    NotCa(String),
    /// A certificate of the chain fails an RFC 5280 path check other than the signature and
    /// the dates (an unknown critical extension, key usage, path length, name constraints).
    #[error("`{0}`: {1}")]
    Path(String, &'static str),
    /// The chain is longer than we follow.
    #[error("certificate chain longer than {0}")]
    ChainTooLong(usize),
    /// The peer's AUTH payload is malformed.
    #[error("malformed AUTH payload: {0}")]
    BadAuth(&'static str),
    /// The peer did not announce RFC 7427, and our key needs it.
    #[error("the peer does not support RFC 7427 signatures, which an {0} key needs")]
    NeedsRfc7427(&'static str),
    /// Not a CRL we can parse.
    #[error("malformed CRL: {0}")]
    BadCrl(String),
    /// A CRL its issuer signed lists the certificate (RFC 5280 §5).
    #[error("certificate `{0}` (serial {1}) is revoked (CRL of `{2}`)")]
    Revoked(String, String, String),
    /// An OCSP responder answered `revoked` (RFC 6960).
    #[error("certificate `{0}` (serial {1}) is revoked (OCSP answer from {2})")]
    RevokedOcsp(String, String, String),
    /// `revocation: strict` (or `ifuri`, and the certificate names a CRL distribution point),
    /// and no current CRL of the certificate's issuer vouches for it.
    #[error("revocation status of `{0}` unknown: no current CRL of `{1}` (revocation: {2})")]
    RevocationUnknown(String, String, &'static str),
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok(([], c)) => Ok(c),
        Ok(_) => Err(PkiError::BadCert("trailing data".into())),
        Err(e) => Err(PkiError::BadCert(e.to_string())),
    }
}

/// Reads certificates from a file: one or more PEM `CERTIFICATE` blocks, or one DER
/// certificate. Each is parsed once to fail early.
pub fn load_certs(path: &Path) -> Result<Vec<Vec<u8>>, PkiError> {
    let ders = read_pem_or_der(path, "CERTIFICATE").map_err(PkiError::BadCert)?;
    for d in &ders {
        parse_cert(d).map_err(|e| PkiError::BadCert(format!("{}: {e}", path.display())))?;
    }
    Ok(ders)
}

/// The DER blocks labelled `label` in a PEM file, or the whole file as one DER block.
fn read_pem_or_der(path: &Path, label: &str) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    pem_or_der(bytes, label).map_err(|e| format!("{}: {e}", path.display()))
}

/// The DER blocks labelled `label` of PEM text, or `bytes` itself if it is not PEM.
fn pem_or_der(bytes: Vec<u8>, label: &str) -> Result<Vec<Vec<u8>>, String> {
    let ders = if bytes.starts_with(b"-----BEGIN") || bytes.windows(10).any(|w| w == b"-----BEGIN")
    {
        let mut v = Vec::new();
        for p in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
            let p = p.map_err(|e| e.to_string())?;
            if p.label == label {
                v.push(p.contents);
            }
        }
        v
    } else {
        vec![bytes]
    };
    if ders.is_empty() {
        return Err(format!("no {label} in it"));
    }
    Ok(ders)
}

fn parse_crl(der: &[u8]) -> Result<CertificateRevocationList<'_>, PkiError> {
    match CertificateRevocationList::from_der(der) {
        Ok(([], c)) => Ok(c),
        Ok(_) => Err(PkiError::BadCrl("trailing data".into())),
        Err(e) => Err(PkiError::BadCrl(e.to_string())),
    }
}

/// One CRL as revocation checks use it, read from its DER once: when configured or when
/// fetched. Parsing a large CRL (fetches take up to 8 MiB) takes milliseconds, and each check
/// of each IKE_AUTH used to parse it again and verify its signature again, holding the fetch
/// cache's lock meanwhile; now a check looks its serial up in a sorted list, and the
/// signature is verified once for each issuer key that asks.
pub(crate) struct Crl {
    der: Vec<u8>,
    /// Its issuer's name (DER).
    issuer: Vec<u8>,
    /// Why it counts for nothing, whatever its signature: a malformed delta CRL indicator,
    /// a critical extension not processed here (in the CRL or an entry), or signed and
    /// outer signature algorithms that differ.
    unusable: Option<&'static str>,
    /// A delta CRL's base CRL number (§5.2.4); None for a complete CRL.
    base: Option<num_bigint::BigUint>,
    /// Its cRLNumber (§5.2.3).
    number: Option<num_bigint::BigUint>,
    /// The serials it lists, as integers (no sign-padding zeros), sorted. A delta CRL's
    /// entries with reason removeFromCRL are no revocation (§5.3.1) and are left out.
    revoked: Vec<Box<[u8]>>,
    /// Entries in the CRL.
    entries: usize,
    this_update: i64,
    next_update: Option<i64>,
    /// The `http://` points it names for its delta CRLs (freshest CRL, §5.2.6).
    freshest: Vec<String>,
    /// Issuer keys (SubjectPublicKeyInfo DER) its signature was checked with, and how that
    /// went; at most [`CRL_KEYS_REMEMBERED`].
    verified: Mutex<Vec<KeyVerdict>>,
}

/// An issuer key (SubjectPublicKeyInfo DER) and whether it verified a [`Crl`]'s signature.
type KeyVerdict = (Vec<u8>, Result<(), String>);

/// Issuer keys a [`Crl`] remembers its verdict for (in a chain that verified, a name has one
/// key, or two across a CA's key rollover).
const CRL_KEYS_REMEMBERED: usize = 4;

impl Crl {
    pub(crate) fn parse(der: Vec<u8>) -> Result<Crl, PkiError> {
        use x509_parser::x509::ReasonCode;
        let crl = parse_crl(&der)?;
        let int = ocsp::int_bytes;
        let (unusable, base) = match delta_crl(&crl) {
            Ok(base) => (None, base),
            Err(why) => (Some(why), None),
        };
        let unusable = unusable.or_else(|| {
            (crl.tbs_cert_list.signature != crl.signature_algorithm)
                .then_some("its signed and outer signature algorithms differ")
        });
        let removed = |r: &x509_parser::revocation_list::RevokedCertificate<'_>| {
            base.is_some()
                && r.reason_code()
                    .is_some_and(|(_, c)| c == ReasonCode::RemoveFromCRL)
        };
        let mut revoked: Vec<Box<[u8]>> = crl
            .iter_revoked_certificates()
            .filter(|r| !removed(r))
            .map(|r| int(r.raw_serial()).into_boxed_slice())
            .collect();
        revoked.sort_unstable();
        let mut freshest = Vec::new();
        freshest_points(&crl, &mut freshest);
        Ok(Crl {
            issuer: crl.issuer().as_raw().to_vec(),
            unusable,
            number: crl.crl_number().cloned(),
            base,
            entries: crl.tbs_cert_list.revoked_certificates.len(),
            revoked,
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|n| n.timestamp()),
            freshest,
            verified: Mutex::new(Vec::new()),
            // Last: `crl` borrows it until the fields above are read.
            der,
        })
    }

    /// Whether it lists `serial` (an integer without sign-padding zeros).
    fn lists(&self, serial: &[u8]) -> bool {
        self.revoked.binary_search_by(|s| (**s).cmp(serial)).is_ok()
    }

    /// This update ≤ `now` ≤ next update (a CRL without a next update is never current).
    fn current(&self, now: i64) -> bool {
        self.this_update <= now && self.next_update.is_some_and(|n| now <= n)
    }

    /// Whether `key` verifies its signature (checked once a key).
    fn verified_by(&self, key: &SubjectPublicKeyInfo<'_>) -> Result<(), String> {
        let mut memo = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, r)) = memo.iter().find(|(k, _)| k == key.raw) {
            return r.clone();
        }
        #[cfg(test)]
        CRL_SIGNATURE_CHECKS.with(|n| n.set(n.get() + 1));
        let r = match parse_crl(&self.der) {
            Ok(crl) => verify_alg(
                key,
                &crl.signature_algorithm,
                crl.tbs_cert_list.as_ref(),
                &crl.signature_value.data,
            )
            .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if memo.len() >= CRL_KEYS_REMEMBERED {
            drop(memo.remove(0));
        }
        memo.push((key.raw.to_vec(), r.clone()));
        r
    }

    /// What keeping it costs, roughly (the DER and the sorted serials).
    fn bytes(&self) -> usize {
        self.der.len() + self.revoked.iter().map(|s| s.len() + 32).sum::<usize>()
    }
}

#[cfg(test)]
thread_local! {
    /// CRL signatures verified on this thread (tests: that each is verified once a key).
    pub(crate) static CRL_SIGNATURE_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Reads certificate revocation lists (RFC 5280 §5) from a file: PEM `X509 CRL` blocks (what
/// `openssl ca -gencrl` writes) or one DER CRL (what strongSwan's `pki --signcrl` writes by
/// default). Each is parsed once to fail early.
pub fn load_crls(path: &Path) -> Result<Vec<Vec<u8>>, PkiError> {
    let ders = read_pem_or_der(path, "X509 CRL").map_err(PkiError::BadCrl)?;
    for d in &ders {
        parse_crl(d).map_err(|e| PkiError::BadCrl(format!("{}: {e}", path.display())))?;
    }
    Ok(ders)
}

/// How a missing revocation status is taken (strongSwan's `revocation` setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Revocation {
    /// Refuse only a certificate a CRL of its issuer lists.
    #[default]
    Relaxed,
    /// Also refuse a certificate that names a CRL distribution point when no current CRL of
    /// its issuer was configured or could be fetched.
    IfUri,
    /// Also refuse a certificate whose issuer has no current CRL, configured or fetched.
    Strict,
}

/// How long a fetch of one CRL may take, name lookup included (the daemon waits for it).
pub const CRL_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the fetches for one chain may take in all.
pub const CRL_FETCH_BUDGET: Duration = Duration::from_secs(5);
/// A distribution point is asked again no sooner than this after a fetch that failed or gave
/// nothing current (a dead point would otherwise cost every IKE_AUTH the timeout).
pub const CRL_FETCH_RETRY: Duration = Duration::from_secs(60);
/// A fetched CRL is asked for again after this, even if its next update is later.
const CRL_FETCHED_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Distribution points tried for one certificate.
const CRL_FETCH_MAX_URIS: usize = 3;
/// Entries each fetch cache (CRLs, OCSP answers) holds at most.
const CRL_CACHE_MAX: usize = 256;
/// Bytes the fetched CRLs may take together ([`Crl::bytes`]): 256 CRLs of up to 8 MiB each
/// would be 2 GiB.
const CRL_CACHE_BYTES: usize = 64 << 20;

/// A fetched CRL that its issuer's key verified (None: the fetch failed or gave no usable
/// CRL), and when it was fetched.
struct Fetched {
    crl: Option<Arc<Crl>>,
    at: Instant,
}

/// Fetched CRLs of every tunnel, by (distribution point, the issuer's public key): a CRL is
/// stored only once its issuer's key verified it, so a forged one neither stays nor stands in
/// for another issuer's.
type CrlCache = HashMap<(String, Vec<u8>), Fetched>;

/// A fetch cache entry: when it was had, and what keeping it costs.
trait Had {
    fn at(&self) -> Instant;
    fn bytes(&self) -> usize;
}

impl Had for Fetched {
    fn at(&self) -> Instant {
        self.at
    }
    fn bytes(&self) -> usize {
        self.crl.as_ref().map_or(0, |c| c.bytes())
    }
}

fn crl_cache() -> &'static Mutex<CrlCache> {
    static CACHE: std::sync::OnceLock<Mutex<CrlCache>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The CRL fetches under way (by the fetch cache's key), and the signal that one ended: a
/// check that needs a CRL another thread is fetching waits for that fetch instead of asking
/// the point again (IKE SAs whose peers share a CA, coming up together, fetch its CRL once).
type InFlight = (
    Mutex<std::collections::HashSet<(String, Vec<u8>)>>,
    std::sync::Condvar,
);

fn crl_in_flight() -> &'static InFlight {
    static F: std::sync::OnceLock<InFlight> = std::sync::OnceLock::new();
    F.get_or_init(|| (Mutex::new(Default::default()), std::sync::Condvar::new()))
}

/// A claimed CRL fetch ([`fetch_crl_once`]): released, and its waiters woken, when dropped,
/// which the holder does once what it fetched is in the cache.
struct FetchClaim((String, Vec<u8>));

impl Drop for FetchClaim {
    fn drop(&mut self) {
        let (set, ended) = crl_in_flight();
        set.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
        ended.notify_all();
    }
}

/// What [`fetch_crl_once`] got.
enum Got {
    /// Fetched here (parsed, not yet verified): store it, then drop the claim.
    Fetched(Arc<Crl>, FetchClaim),
    /// Another thread fetched it meanwhile, verified and cached.
    Cached(Arc<Crl>),
    /// Nothing to use: the fetch failed (remembered), another thread's did, or the wait ran
    /// out of time.
    Nothing,
}

/// Fetches the CRL for `key` (its point, the issuer's key) within `timeout`, unless another
/// thread is fetching it already: then waits for that fetch, at most `timeout`, and takes
/// what it left in the cache.
fn fetch_crl_once(key: &(String, Vec<u8>), now: i64, timeout: Duration) -> Got {
    let until = Instant::now() + timeout;
    let (set, ended) = crl_in_flight();
    let mut busy = set.lock().unwrap_or_else(|p| p.into_inner());
    if busy.contains(key) {
        tracing::info!(uri = %key.0, "waiting for this CRL: another check is fetching it");
    }
    while busy.contains(key) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Got::Nothing;
        }
        busy = ended
            .wait_timeout(busy, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    // What a fetch that ended meanwhile (the one waited for, or one that ended between the
    // caller's look at the cache and this lock) left in the cache is used, not asked again.
    if let Some(got) = TrustAnchors::cached_crl(key, now) {
        return got.map_or(Got::Nothing, Got::Cached);
    }
    busy.insert(key.clone());
    drop(busy);
    let claim = FetchClaim(key.clone());
    match fetch_crl(&key.0, timeout) {
        Some(d) => Got::Fetched(d, claim),
        None => {
            TrustAnchors::remember(key.clone(), None);
            Got::Nothing
        }
    }
}

/// What is left of `deadline` for one request to `uri`, at most [`CRL_FETCH_TIMEOUT`]; None,
/// with a warning naming `what` was to be asked, when nothing is.
fn time_for(deadline: Instant, uri: &str, what: &str) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        tracing::warn!(uri, "no time left to ask {what}");
        return None;
    }
    Some(left.min(CRL_FETCH_TIMEOUT))
}

/// Checks who signed an OCSP answer (RFC 6960 §4.2.2.2): the issuer itself, or a responder
/// whose certificate the issuer signed, valid at `now`, with extendedKeyUsage OCSPSigning,
/// named by the answer's responder ID.
fn verify_ocsp_signature<'r>(
    r: &ocsp::Response<'r>,
    issuer: &X509Certificate<'_>,
    now: i64,
) -> Result<Option<&'r [u8]>, String> {
    use sha1::Digest;
    let (_, alg) = AlgorithmIdentifier::from_der(r.sig_alg).map_err(|e| e.to_string())?;
    let key_hash = |c: &X509Certificate<'_>| -> Vec<u8> {
        sha1::Sha1::digest(&c.public_key().subject_public_key.data).to_vec()
    };
    let names = |c: &X509Certificate<'_>| match &r.responder {
        ocsp::ResponderId::Name(n) => n[..] == *c.subject().as_raw(),
        ocsp::ResponderId::KeyHash(h) => *h == key_hash(c),
    };
    if names(issuer) {
        return verify_alg(issuer.public_key(), &alg, r.tbs, r.signature)
            .map(|()| None)
            .map_err(|e| format!("the issuer's signature on the answer: {e}"));
    }
    let mut last =
        "the answer is signed by neither the issuer nor a responder it certified".to_string();
    for d in &r.certs {
        let Ok(rc) = parse_cert(d) else { continue };
        if !names(&rc) || rc.issuer().as_raw() != issuer.subject().as_raw() {
            continue;
        }
        let check = || -> Result<(), String> {
            if rc.tbs_certificate.signature != rc.signature_algorithm {
                return Err(
                    "the responder's certificate: signed and outer algorithms differ".into(),
                );
            }
            verify_alg(
                issuer.public_key(),
                &rc.signature_algorithm,
                rc.tbs_certificate.as_ref(),
                &rc.signature_value.data,
            )
            .map_err(|e| format!("the responder's certificate: {e}"))?;
            if !valid_at(&rc, now) {
                return Err("the responder's certificate is not valid now".into());
            }
            let ocsp_signing =
                matches!(rc.extended_key_usage(), Ok(Some(e)) if e.value.ocsp_signing);
            if !ocsp_signing {
                return Err(format!(
                    "`{}` signed the answer without OCSPSigning in its extendedKeyUsage",
                    dn_string(rc.subject())
                ));
            }
            verify_alg(rc.public_key(), &alg, r.tbs, r.signature)
                .map_err(|e| format!("the responder's signature on the answer: {e}"))
        };
        // A responder certificate that fails (an old one after a key rollover, say) does
        // not stop the next from being tried.
        match check() {
            Ok(()) => return Ok(Some(d)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// GETs the CRL at `uri` (PEM or DER, the first if several), parsed but not yet verified.
fn fetch_crl(uri: &str, timeout: Duration) -> Option<Arc<Crl>> {
    let t = Instant::now();
    let got = fetch::http_get(uri, timeout).and_then(|body| {
        let mut ders = pem_or_der(body, "X509 CRL")?;
        let d = ders.swap_remove(0);
        Crl::parse(d).map_err(|e| e.to_string())
    });
    let ms = t.elapsed().as_millis() as u64;
    match got {
        Ok(d) => {
            tracing::info!(
                uri,
                bytes = d.der.len(),
                entries = d.entries,
                ms,
                "fetched a CRL"
            );
            Some(Arc::new(d))
        }
        Err(e) => {
            tracing::warn!(uri, ms, "CRL fetch failed: {e}");
            None
        }
    }
}

/// The `http://` OCSP responders a certificate names in its authority information access
/// extension (RFC 5280 §4.2.2.1, id-ad-ocsp).
pub fn ocsp_responders(c: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::ParsedExtension;
    let mut uris = Vec::new();
    for e in c.extensions() {
        let ParsedExtension::AuthorityInfoAccess(aia) = e.parsed_extension() else {
            continue;
        };
        for d in &aia.accessdescs {
            if d.access_method.to_id_string() != "1.3.6.1.5.5.7.48.1" {
                continue;
            }
            if let GeneralName::URI(u) = d.access_location {
                if u.starts_with("http://") {
                    uris.push(u.to_string());
                }
            }
        }
    }
    uris
}

/// How far a revocation check may go for a status it does not have.
#[derive(Clone, Copy, Debug)]
enum Fetching {
    /// The configured CRLs and those already fetched, nothing else.
    Never,
    /// Also OCSP answers already had; no network.
    Cached,
    /// Ask OCSP responders and fetch CRLs until then.
    Until(Instant),
}

/// Where a certificate's revocation status can be had: CRL distribution points and OCSP
/// responders (`http://` ones), and whether it names any point or responder at all
/// (`revocation: ifuri` asks a status of such a certificate, fetchable or not).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// CRL distribution points.
    pub crl: Vec<String>,
    /// OCSP responders.
    pub ocsp: Vec<String>,
    /// Any distribution point or OCSP responder named.
    pub named: bool,
}

impl Sources {
    /// What `c` names.
    pub fn of(c: &X509Certificate<'_>) -> Sources {
        let ocsp = ocsp_responders(c);
        let named = names_distribution_point(c) || !ocsp.is_empty();
        Sources {
            crl: crl_distribution_points(c),
            ocsp,
            named,
        }
    }
}

/// An OCSP answer kept (None: the responder failed or gave no usable answer), until when it
/// holds (seconds since 1970), and when it was had.
struct OcspEntry {
    status: Option<ocsp::Status>,
    until: i64,
    at: Instant,
}

/// OCSP answers of every tunnel, by (responder, CertID).
type OcspCache = HashMap<(String, ocsp::CertId), OcspEntry>;

impl Had for OcspEntry {
    fn at(&self) -> Instant {
        self.at
    }
    fn bytes(&self) -> usize {
        0
    }
}

/// Inserts into a fetch cache. When it would hold more than [`CRL_CACHE_MAX`] entries or
/// [`CRL_CACHE_BYTES`], those older than [`CRL_FETCHED_MAX_AGE`] (used by nothing) go first,
/// then the oldest ones until it fits: a check that another thread is making must not find
/// the status it just fetched gone.
fn bounded_insert<K: Eq + std::hash::Hash + Clone, V: Had>(
    cache: &Mutex<HashMap<K, V>>,
    key: K,
    value: V,
) {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache.remove(&key);
    let bytes = |c: &HashMap<K, V>| c.values().map(Had::bytes).sum::<usize>();
    let fits = |c: &HashMap<K, V>| {
        c.len() < CRL_CACHE_MAX && bytes(c).saturating_add(value.bytes()) <= CRL_CACHE_BYTES
    };
    if !fits(&cache) {
        cache.retain(|_, v| v.at().elapsed() < CRL_FETCHED_MAX_AGE);
    }
    while !fits(&cache) {
        let Some(oldest) = cache
            .iter()
            .min_by_key(|(_, v)| v.at())
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        cache.remove(&oldest);
    }
    cache.insert(key, value);
}

fn ocsp_cache() -> &'static Mutex<OcspCache> {
    static CACHE: std::sync::OnceLock<Mutex<OcspCache>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// An answer without a next update holds this long after its this update.
const OCSP_NO_NEXT_UPDATE: i64 = 3600;
/// Clock skew allowed on an answer's this update.
const OCSP_SKEW: i64 = 300;
/// Responders asked for one certificate.
const OCSP_MAX_URIS: usize = 2;

/// Whether a certificate has a CRL distribution points extension at all (`revocation: ifuri`
/// asks a current CRL of any such certificate, whether or not we can fetch from its points).
fn names_distribution_point(c: &X509Certificate<'_>) -> bool {
    use x509_parser::extensions::ParsedExtension;
    c.extensions().iter().any(|e| {
        matches!(
            e.parsed_extension(),
            ParsedExtension::CRLDistributionPoints(_)
        )
    })
}

/// The `http://` URIs of a certificate's CRL distribution points (RFC 5280 §4.2.1.13): full
/// names only, and only points without reasons or a CRL issuer of their own (a partitioned or
/// indirect CRL, which we do not take).
pub fn crl_distribution_points(c: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::ParsedExtension;
    let mut uris = Vec::new();
    for e in c.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = e.parsed_extension() {
            http_points(points, &mut uris);
        }
    }
    uris
}

/// The `http://` full-name URIs of distribution points without reasons or a CRL issuer of
/// their own, appended to `uris`.
fn http_points(
    points: &x509_parser::extensions::CRLDistributionPoints<'_>,
    uris: &mut Vec<String>,
) {
    use x509_parser::extensions::DistributionPointName;
    for p in points.iter() {
        if p.reasons.is_some() || p.crl_issuer.is_some() {
            continue;
        }
        let Some(DistributionPointName::FullName(names)) = &p.distribution_point else {
            continue;
        };
        for n in names {
            if let GeneralName::URI(u) = n {
                if u.starts_with("http://") && !uris.iter().any(|x| x == u) {
                    uris.push(u.to_string());
                }
            }
        }
    }
}

/// Checks one CRL for a certificate (see `TrustAnchors::current_status`): whether it counts,
/// and is current; Err if it lists the certificate.
type CrlCheck<'a> = dyn Fn(&Crl) -> Result<Option<bool>, PkiError> + 'a;

/// The base CRL number of `crl` if it is a delta CRL (RFC 5280 §5.2.4: a critical delta CRL
/// indicator holding it): Err for an indicator that is not critical or holds no non-negative
/// integer, or for any other critical extension (a partitioned or indirect CRL: §5.2 and
/// §5.3 forbid using a CRL with a critical extension we do not process).
fn delta_crl(
    crl: &CertificateRevocationList<'_>,
) -> Result<Option<num_bigint::BigUint>, &'static str> {
    use x509_parser::oid_registry::OID_X509_EXT_DELTA_CRL_INDICATOR;
    let mut delta = None;
    for e in crl.extensions() {
        if e.oid == OID_X509_EXT_DELTA_CRL_INDICATOR {
            let base = match x509_parser::der_parser::der::parse_der_integer(e.value) {
                Ok(([], n)) if e.critical => n.as_biguint().ok(),
                _ => None,
            };
            let Some(base) = base else {
                return Err("a malformed delta CRL indicator");
            };
            delta = Some(base);
        } else if e.critical {
            return Err("a critical extension (partitioned or indirect CRL)");
        }
    }
    if crl
        .iter_revoked_certificates()
        .any(|r| r.extensions().iter().any(|e| e.critical))
    {
        return Err("a critical entry extension");
    }
    Ok(delta)
}

/// The `http://` points a complete CRL names for its delta CRLs (freshest CRL, RFC 5280
/// §5.2.6), appended to `uris`.
fn freshest_points(crl: &CertificateRevocationList<'_>, uris: &mut Vec<String>) {
    use x509_parser::extensions::CRLDistributionPoints;
    use x509_parser::oid_registry::OID_X509_EXT_FRESHEST_CRL;
    for e in crl.extensions() {
        if e.oid == OID_X509_EXT_FRESHEST_CRL {
            if let Ok((_, points)) = CRLDistributionPoints::from_der(e.value) {
                http_points(&points, uris);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// A private key: the DER we were given, normalised to what `ring` loads (PKCS#8, or
/// PKCS#1 for RSA), and its kind.
struct PrivateKey {
    der: Zeroizing<Vec<u8>>,
    pkcs1: bool,
    kind: KeyKind,
}

impl PrivateKey {
    fn from_der(der: &[u8], label: &str) -> Result<PrivateKey, PkiError> {
        let rng = SystemRandom::new();
        let key = |kind, pkcs1, der: &[u8]| PrivateKey {
            der: Zeroizing::new(der.to_vec()),
            pkcs1,
            kind,
        };
        match label {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(der)
                .map(|_| key(KeyKind::Rsa, true, der))
                .map_err(|e| PkiError::BadKey(e.to_string())),
            "EC PRIVATE KEY" => {
                // SEC1 (RFC 5915): re-wrap as PKCS#8 for ring.
                use p256::pkcs8::EncodePrivateKey;
                if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
                    let p8 = k
                        .to_pkcs8_der()
                        .map_err(|e| PkiError::BadKey(e.to_string()))?;
                    return Ok(key(KeyKind::P256, false, p8.as_bytes()));
                }
                if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
                    let p8 = k
                        .to_pkcs8_der()
                        .map_err(|e| PkiError::BadKey(e.to_string()))?;
                    return Ok(key(KeyKind::P384, false, p8.as_bytes()));
                }
                Err(PkiError::Unsupported(
                    "EC private key on a curve other than P-256/P-384".into(),
                ))
            }
            _ => {
                if RsaKeyPair::from_pkcs8(der).is_ok() {
                    Ok(key(KeyKind::Rsa, false, der))
                } else if EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    der,
                    &rng,
                )
                .is_ok()
                {
                    Ok(key(KeyKind::P256, false, der))
                } else if EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                    der,
                    &rng,
                )
                .is_ok()
                {
                    Ok(key(KeyKind::P384, false, der))
                } else if Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok() {
                    Ok(key(KeyKind::Ed25519, false, der))
                } else if RsaKeyPair::from_der(der).is_ok() {
                    Ok(key(KeyKind::Rsa, true, der))
                } else {
                    Err(PkiError::BadKey(
                        "neither an RSA (2048 bits or more), P-256, P-384 nor Ed25519 key".into(),
                    ))
                }
            }
        }
    }

    /// Reads a PEM (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`) or DER key file.
    fn load(path: &Path) -> Result<PrivateKey, PkiError> {
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(|e| PkiError::Io(format!("{}: {e}", path.display())))?,
        );
        let ctx = |e: PkiError| match e {
            PkiError::BadKey(m) => PkiError::BadKey(format!("{}: {m}", path.display())),
            e => e,
        };
        if bytes.windows(10).any(|w| w == b"-----BEGIN") {
            for p in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
                let p = p.map_err(|e| PkiError::BadKey(format!("{}: {e}", path.display())))?;
                let contents = Zeroizing::new(p.contents);
                if p.label.ends_with("PRIVATE KEY") {
                    if p.label.contains("ENCRYPTED") {
                        return Err(PkiError::BadKey(format!(
                            "{}: encrypted keys are not supported; store it unencrypted with mode 0600",
                            path.display()
                        )));
                    }
                    return PrivateKey::from_der(&contents, &p.label).map_err(ctx);
                }
            }
            Err(PkiError::BadKey(format!(
                "{}: no PRIVATE KEY block",
                path.display()
            )))
        } else {
            PrivateKey::from_der(&bytes, "").map_err(ctx)
        }
    }

    fn rsa(&self) -> Result<RsaKeyPair, PkiError> {
        if self.pkcs1 {
            RsaKeyPair::from_der(&self.der)
        } else {
            RsaKeyPair::from_pkcs8(&self.der)
        }
        .map_err(|e| PkiError::BadKey(e.to_string()))
    }

    fn ecdsa(
        &self,
        alg: &'static signature::EcdsaSigningAlgorithm,
    ) -> Result<EcdsaKeyPair, PkiError> {
        EcdsaKeyPair::from_pkcs8(alg, &self.der, &SystemRandom::new())
            .map_err(|e| PkiError::BadKey(e.to_string()))
    }

    fn public_key(&self) -> Result<Vec<u8>, PkiError> {
        Ok(match self.kind {
            KeyKind::Rsa => self.rsa()?.public().as_ref().to_vec(),
            KeyKind::P256 => self
                .ecdsa(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)?
                .public_key()
                .as_ref()
                .to_vec(),
            KeyKind::P384 => self
                .ecdsa(&signature::ECDSA_P384_SHA384_ASN1_SIGNING)?
                .public_key()
                .as_ref()
                .to_vec(),
            KeyKind::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.der)
                .map_err(|e| PkiError::BadKey(e.to_string()))?
                .public_key()
                .as_ref()
                .to_vec(),
        })
    }
}

/// Our own certificate (plus intermediates to send along) and its private key.
pub struct Credential {
    /// The end-entity certificate (DER).
    pub cert: Vec<u8>,
    /// Intermediate CA certificates sent after it.
    pub chain: Vec<Vec<u8>>,
    /// The certificate's subject DN (DER): our ID_DER_ASN1_DN.
    pub subject_der: Vec<u8>,
    /// The subject in strongSwan's notation (`C=CH, O=..., CN=...`).
    pub subject: String,
    key: PrivateKey,
    /// An RSA key signs with RSASSA-PSS instead of PKCS#1 v1.5 (strongSwan's
    /// `charon.rsa_pss`).
    pss: bool,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("subject", &self.subject)
            .field("key", &self.key.kind)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Loads a certificate file (PEM: the first certificate is ours, the rest intermediates)
    /// and its private key, and checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Credential, PkiError> {
        let mut certs = load_certs(cert)?;
        let leaf = certs.remove(0);
        let key = PrivateKey::load(key)?;
        Credential::new(leaf, certs, key)
    }

    fn new(cert: Vec<u8>, chain: Vec<Vec<u8>>, key: PrivateKey) -> Result<Credential, PkiError> {
        let c = parse_cert(&cert)?;
        if c.public_key().subject_public_key.data.as_ref() != key.public_key()?.as_slice() {
            return Err(PkiError::KeyMismatch);
        }
        let subject_der = c.subject().as_raw().to_vec();
        let subject = dn_string(c.subject());
        drop(c);
        Ok(Credential {
            cert,
            chain,
            subject_der,
            subject,
            key,
            pss: false,
        })
    }

    /// This credential, an RSA key signing with RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte
    /// salt) when `pss`. Other keys are not affected.
    pub fn with_rsa_pss(mut self, pss: bool) -> Credential {
        self.pss = pss;
        self
    }

    /// Whether an RSA key signs with RSASSA-PSS.
    pub fn rsa_pss(&self) -> bool {
        self.pss && self.key.kind == KeyKind::Rsa
    }

    /// SHA-256 of the private key's DER (notices a changed key on reload; not secret).
    pub fn key_fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(&*self.key.der).into()
    }

    /// The key's algorithm, for logs and `fgctl`.
    pub fn key_type(&self) -> &'static str {
        match self.key.kind {
            KeyKind::Rsa => "RSA",
            KeyKind::P256 => "ECDSA P-256",
            KeyKind::P384 => "ECDSA P-384",
            KeyKind::Ed25519 => "Ed25519",
        }
    }

    /// Signs IKE's signed octets (RFC 7296 §2.15). With RFC 7427 (the peer sent
    /// SIGNATURE_HASH_ALGORITHMS, `peer_hashes`) the AUTH method is Digital Signature;
    /// otherwise ECDSA keys use RFC 4754's methods and RSA keys fail (SHA-1 is not signed).
    /// Returns the AUTH method and data.
    pub fn sign(&self, octets: &[u8], peer_hashes: &[u16]) -> Result<(u8, Vec<u8>), PkiError> {
        let rng = SystemRandom::new();
        let rfc7427 = |alg: &[u8], sig: &[u8]| {
            let mut v = Vec::with_capacity(1 + alg.len() + sig.len());
            v.push(alg.len() as u8);
            v.extend_from_slice(alg);
            v.extend_from_slice(sig);
            (method::DIGITAL_SIGNATURE, v)
        };
        let fail = |_| PkiError::BadKey("signing failed".into());
        match self.key.kind {
            KeyKind::Rsa => {
                if !peer_hashes.contains(&hash::SHA2_256) {
                    return Err(PkiError::NeedsRfc7427("RSA"));
                }
                let kp = self.key.rsa()?;
                let mut sig = vec![0; kp.public().modulus_len()];
                let (padding, alg): (&dyn signature::RsaEncoding, _) = if self.pss {
                    (&signature::RSA_PSS_SHA256, ALG_RSA_PSS_SHA256)
                } else {
                    (&signature::RSA_PKCS1_SHA256, ALG_SHA256_RSA)
                };
                kp.sign(padding, &rng, octets, &mut sig).map_err(fail)?;
                Ok(rfc7427(alg, &sig))
            }
            KeyKind::P256 | KeyKind::P384 => {
                let p256 = self.key.kind == KeyKind::P256;
                let (h, alg_id) = if p256 {
                    (hash::SHA2_256, ALG_ECDSA_SHA256)
                } else {
                    (hash::SHA2_384, ALG_ECDSA_SHA384)
                };
                if peer_hashes.contains(&h) {
                    let alg = if p256 {
                        &signature::ECDSA_P256_SHA256_ASN1_SIGNING
                    } else {
                        &signature::ECDSA_P384_SHA384_ASN1_SIGNING
                    };
                    let sig = self.key.ecdsa(alg)?.sign(&rng, octets).map_err(fail)?;
                    Ok(rfc7427(alg_id, sig.as_ref()))
                } else {
                    let (alg, m) = if p256 {
                        (
                            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                            method::ECDSA_256,
                        )
                    } else {
                        (
                            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                            method::ECDSA_384,
                        )
                    };
                    let sig = self.key.ecdsa(alg)?.sign(&rng, octets).map_err(fail)?;
                    Ok((m, sig.as_ref().to_vec()))
                }
            }
            KeyKind::Ed25519 => {
                if !peer_hashes.contains(&hash::IDENTITY) {
                    return Err(PkiError::NeedsRfc7427("Ed25519"));
                }
                let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.key.der)
                    .map_err(|e| PkiError::BadKey(e.to_string()))?;
                Ok(rfc7427(ALG_ED25519, kp.sign(octets).as_ref()))
            }
        }
    }
}

fn curve_of(spki: &SubjectPublicKeyInfo<'_>) -> Option<String> {
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string())
}

/// Verifies `sig` over `msg` with a certificate's public key, for the signature algorithm
/// `alg` (an X.509 / RFC 7427 AlgorithmIdentifier): [`verify_with`], and RSASSA-PSS (RFC 8017
/// §8.1, RFC 4055 parameters) with SHA-256/384/512, MGF1 over the same hash and a salt as
/// long as the hash, the parameters strongSwan (`charon.rsa_pss = yes`, `pki --rsa-padding
/// pss`) and OpenSSL's defaults for `-sigopt rsa_padding_mode:pss` with a digest-length salt
/// use.
fn verify_alg(
    spki: &SubjectPublicKeyInfo<'_>,
    alg: &AlgorithmIdentifier<'_>,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), PkiError> {
    use x509_parser::signature_algorithm::SignatureAlgorithm;
    let oid = alg.algorithm.to_id_string();
    if oid != OID_RSA_PSS {
        return verify_with(spki, &oid, msg, sig);
    }
    if spki.algorithm.algorithm.to_id_string() != OID_RSA {
        return Err(PkiError::Unsupported(
            "an RSASSA-PSS signature with a non-RSA key".into(),
        ));
    }
    let bad = |what: &str| PkiError::Unsupported(format!("RSASSA-PSS {what}"));
    let Ok(SignatureAlgorithm::RSASSA_PSS(p)) = SignatureAlgorithm::try_from(alg) else {
        return Err(bad("parameters that do not parse"));
    };
    let hash = p.hash_algorithm_oid().to_id_string();
    let (v, len): (&'static dyn signature::VerificationAlgorithm, u32) = match hash.as_str() {
        OID_SHA256 => (&signature::RSA_PSS_2048_8192_SHA256, 32),
        OID_SHA384 => (&signature::RSA_PSS_2048_8192_SHA384, 48),
        OID_SHA512 => (&signature::RSA_PSS_2048_8192_SHA512, 64),
        h => return Err(bad(&format!("with hash {h}"))),
    };
    let mgf = p
        .mask_gen_algorithm()
        .map_err(|_| bad("mask generation that does not parse"))?;
    if mgf.mgf.to_id_string() != OID_MGF1 || mgf.hash.to_id_string() != hash {
        return Err(bad(
            "with a mask generation other than MGF1 over the same hash",
        ));
    }
    if p.salt_length() != len || p.trailer_field() != 1 {
        return Err(bad(&format!(
            "with a {}-byte salt (only the hash's length, {len}, is supported)",
            p.salt_length()
        )));
    }
    signature::UnparsedPublicKey::new(v, spki.subject_public_key.data.as_ref())
        .verify(msg, sig)
        .map_err(|_| PkiError::BadSignature)
}

/// Verifies `sig` over `msg` with a certificate's public key, for the signature algorithm
/// `sig_oid` (an X.509 / RFC 7427 AlgorithmIdentifier OID; RSASSA-PSS is [`verify_alg`]'s).
fn verify_with(
    spki: &SubjectPublicKeyInfo<'_>,
    sig_oid: &str,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), PkiError> {
    use signature::VerificationAlgorithm as V;
    let key_oid = spki.algorithm.algorithm.to_id_string();
    let alg: &'static dyn V = match (key_oid.as_str(), sig_oid) {
        (OID_RSA, OID_SHA256_RSA) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (OID_RSA, OID_SHA384_RSA) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (OID_RSA, OID_SHA512_RSA) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (OID_EC, OID_ECDSA_SHA256 | OID_ECDSA_SHA384) => {
            let curve = curve_of(spki).unwrap_or_default();
            match (curve.as_str(), sig_oid) {
                (OID_P256, OID_ECDSA_SHA256) => &signature::ECDSA_P256_SHA256_ASN1,
                (OID_P256, _) => &signature::ECDSA_P256_SHA384_ASN1,
                (OID_P384, OID_ECDSA_SHA256) => &signature::ECDSA_P384_SHA256_ASN1,
                (OID_P384, _) => &signature::ECDSA_P384_SHA384_ASN1,
                _ => return Err(PkiError::Unsupported(format!("EC curve {curve}"))),
            }
        }
        (OID_ED25519, OID_ED25519) => &signature::ED25519,
        (k, s) => {
            let name = |o: &str| match o {
                OID_SHA1_RSA => "sha1WithRSAEncryption".to_string(),
                OID_ECDSA_SHA512 => "ecdsa-with-SHA512".to_string(),
                OID_RSA => "rsaEncryption".to_string(),
                OID_EC => "ecPublicKey".to_string(),
                o => o.to_string(),
            };
            return Err(PkiError::Unsupported(format!(
                "signature {} with a {} key",
                name(s),
                name(k)
            )));
        }
    };
    signature::UnparsedPublicKey::new(alg, spki.subject_public_key.data.as_ref())
        .verify(msg, sig)
        .map_err(|_| PkiError::BadSignature)
}

/// The signature algorithm of an AUTH payload, for logs: RFC 7427's AlgorithmIdentifier OID
/// by name where we know it, else the AUTH method.
pub fn auth_algorithm(auth_method: u8, data: &[u8]) -> String {
    let named = |oid: &str| match oid {
        OID_SHA256_RSA => "sha256WithRSAEncryption".to_string(),
        OID_SHA384_RSA => "sha384WithRSAEncryption".to_string(),
        OID_SHA512_RSA => "sha512WithRSAEncryption".to_string(),
        OID_RSA_PSS => "RSASSA-PSS".to_string(),
        OID_ECDSA_SHA256 => "ecdsa-with-SHA256".to_string(),
        OID_ECDSA_SHA384 => "ecdsa-with-SHA384".to_string(),
        OID_ED25519 => "Ed25519".to_string(),
        o => o.to_string(),
    };
    match auth_method {
        method::DIGITAL_SIGNATURE => data
            .split_first()
            .and_then(|(&n, rest)| rest.get(..usize::from(n)))
            .and_then(|a| AlgorithmIdentifier::from_der(a).ok())
            .map_or_else(
                || "malformed".to_string(),
                |(_, a)| named(&a.algorithm.to_id_string()),
            ),
        m => format!("AUTH method {m}"),
    }
}

/// Verifies a peer's AUTH payload (`method`, `data`) over the signed octets with the public
/// key of its certificate `cert` (DER).
pub fn verify_auth(
    cert: &[u8],
    auth_method: u8,
    data: &[u8],
    octets: &[u8],
) -> Result<(), PkiError> {
    let c = parse_cert(cert)?;
    let spki = c.public_key();
    match auth_method {
        method::DIGITAL_SIGNATURE => {
            let (&len, rest) = data.split_first().ok_or(PkiError::BadAuth("empty"))?;
            let len = usize::from(len);
            if rest.len() < len {
                return Err(PkiError::BadAuth(
                    "AlgorithmIdentifier longer than the payload",
                ));
            }
            let (alg, sig) = rest.split_at(len);
            let parsed = AlgorithmIdentifier::from_der(alg)
                .map_err(|_| PkiError::BadAuth("AlgorithmIdentifier is not DER"))?;
            if !parsed.0.is_empty() {
                return Err(PkiError::BadAuth(
                    "trailing bytes after the AlgorithmIdentifier",
                ));
            }
            verify_alg(spki, &parsed.1, octets, sig)
        }
        method::ECDSA_256 | method::ECDSA_384 => {
            let curve = curve_of(spki).unwrap_or_default();
            let alg: &'static dyn signature::VerificationAlgorithm =
                match (auth_method, curve.as_str()) {
                    (method::ECDSA_256, OID_P256) => &signature::ECDSA_P256_SHA256_FIXED,
                    (method::ECDSA_384, OID_P384) => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => {
                        return Err(PkiError::Unsupported(format!(
                            "AUTH method {auth_method} with this certificate's key"
                        )))
                    }
                };
            signature::UnparsedPublicKey::new(alg, spki.subject_public_key.data.as_ref())
                .verify(octets, data)
                .map_err(|_| PkiError::BadSignature)
        }
        method::RSA_SIG => {
            if spki.algorithm.algorithm.to_id_string() != OID_RSA {
                return Err(PkiError::Unsupported(
                    "AUTH method 1 (RSA) with a non-RSA certificate".into(),
                ));
            }
            signature::UnparsedPublicKey::new(
                &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                spki.subject_public_key.data.as_ref(),
            )
            .verify(octets, data)
            .map_err(|_| PkiError::BadSignature)
        }
        m => Err(PkiError::Unsupported(format!("AUTH method {m}"))),
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn valid_at(c: &X509Certificate<'_>, t: i64) -> bool {
    let v = c.validity();
    v.not_before.timestamp() <= t && t <= v.not_after.timestamp()
}

/// Trust anchors: the CA certificates that may issue peers' certificates, and the CRLs the
/// certificates of a chain are checked against.
pub struct TrustAnchors {
    cas: Vec<Vec<u8>>,
    crls: Vec<Arc<Crl>>,
    revocation: Revocation,
    /// Fetch CRLs from the distribution points certificates name.
    fetch: bool,
    /// Ask the OCSP responders certificates name.
    ocsp: bool,
}

impl std::fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .cas
            .iter()
            .filter_map(|d| parse_cert(d).ok().map(|c| dn_string(c.subject())))
            .collect();
        f.debug_struct("TrustAnchors")
            .field("cas", &names)
            .field("crls", &self.crls.len())
            .field("revocation", &self.revocation)
            .field("fetch", &self.fetch)
            .finish()
    }
}

#[cfg(test)]
thread_local! {
    /// Chain checks made on this thread (tests: what a check costs, and in which order).
    pub(crate) static CHAIN_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The longest chain we follow (end entity + intermediates).
pub const MAX_CHAIN: usize = 6;

impl TrustAnchors {
    /// Loads CA certificates from files (each may hold several PEM certificates).
    pub fn load(paths: &[&Path]) -> Result<TrustAnchors, PkiError> {
        let mut cas = Vec::new();
        for p in paths {
            cas.extend(load_certs(p)?);
        }
        TrustAnchors::new(cas)
    }

    /// From DER certificates.
    pub fn new(cas: Vec<Vec<u8>>) -> Result<TrustAnchors, PkiError> {
        for d in &cas {
            let c = parse_cert(d)?;
            if !c.is_ca() && c.subject() != c.issuer() {
                return Err(PkiError::NotCa(dn_string(c.subject())));
            }
        }
        Ok(TrustAnchors {
            cas,
            crls: Vec::new(),
            revocation: Revocation::Relaxed,
            fetch: false,
            ocsp: false,
        })
    }

    /// These anchors, fetching (with `fetch`) the CRLs that the certificates of a chain name
    /// in their distribution points when no configured CRL of the issuer is current, once the
    /// whole chain has verified up to an anchor: HTTP only, at most [`CRL_FETCH_TIMEOUT`] each
    /// and [`CRL_FETCH_BUDGET`] a chain, kept (once verified) until their next update or a day;
    /// a point whose fetch failed or gave nothing current is not asked again for
    /// [`CRL_FETCH_RETRY`]. [`Self::verify`] waits for the fetches; the daemon checks with
    /// [`Self::verify_cached`] first and fetches on another thread.
    pub fn with_crl_fetch(mut self, fetch: bool) -> TrustAnchors {
        self.fetch = fetch;
        self
    }

    /// These anchors, asking (with `ocsp`) the OCSP responders (RFC 6960) that the
    /// certificates of a chain name before their CRLs, under the same rules as fetching CRLs
    /// (after the chain verified, within the same time budget). A `good` answer signed by the
    /// issuer or a responder it delegated (OCSPSigning) counts as a current CRL; `revoked`
    /// refuses the certificate; `unknown`, failures and forged answers count for nothing.
    pub fn with_ocsp(mut self, ocsp: bool) -> TrustAnchors {
        self.ocsp = ocsp;
        self
    }

    /// These anchors, with every certificate of a chain (below the anchor) checked against
    /// the CRLs (DER) its issuer signed: listed means refused. `revocation` says what a
    /// certificate without a current CRL of its issuer gets.
    pub fn with_crls(
        mut self,
        crls: Vec<Vec<u8>>,
        revocation: Revocation,
    ) -> Result<TrustAnchors, PkiError> {
        self.crls = crls
            .into_iter()
            .map(|d| Crl::parse(d).map(Arc::new))
            .collect::<Result<_, _>>()?;
        self.revocation = revocation;
        Ok(self)
    }

    /// [`Self::check_revocation`], fetching until `deadline`.
    #[cfg(test)]
    fn check_revocation_with(
        &self,
        c: &X509Certificate<'_>,
        issuer: &X509Certificate<'_>,
        now: i64,
        src: &Sources,
        deadline: Instant,
    ) -> Result<(), PkiError> {
        self.check_revocation(c, issuer, now, src, Fetching::Until(deadline), &mut false)
    }

    /// RFC 5280 §6.3, for the CRLs we were given or fetched: a CRL counts for `c` when its
    /// issuer name is `c`'s issuer, `issuer`'s key verifies its signature (the issuer may sign
    /// CRLs: keyUsage cRLSign when it has a keyUsage; the signed and the outer algorithm
    /// agree), and it has no critical extension but a delta CRL indicator, in the CRL or an
    /// entry: a partitioned CRL (issuing distribution point) or an indirect one is not a
    /// complete list for its issuer, and §5.2 / §5.3 forbid using a CRL with a critical
    /// extension we do not process. A certificate such a CRL lists (serials compared as
    /// integers) is refused, even when the CRL is past its next update (it was revoked; that
    /// is known); a delta CRL's entry with reason removeFromCRL is no revocation. Otherwise it
    /// passes if a complete CRL is current (this update ≤ now ≤ next update; a CRL without a
    /// next update is never current), or if none is and the mode is relaxed (or `ifuri` and
    /// the certificate names no distribution point). A delta CRL (§5.2.4) lists what was
    /// revoked since its base: it refuses what it lists but never vouches by itself, as
    /// strongSwan's. With fetching on, the distribution points' CRLs are asked for when no
    /// configured CRL is current, and the delta CRLs that the complete CRLs counted name
    /// (freshest CRL, §5.2.6) are fetched as well: a certificate revoked since its complete
    /// CRL was issued is refused. A delta point that fails leaves the complete CRL standing
    /// alone (asked again after [`CRL_FETCH_RETRY`]).
    /// Fetching as `fetching` allows; `wants` is set when a status is missing that a fetch
    /// (not in back-off) could give.
    fn check_revocation(
        &self,
        c: &X509Certificate<'_>,
        issuer: &X509Certificate<'_>,
        now: i64,
        src: &Sources,
        fetching: Fetching,
        wants: &mut bool,
    ) -> Result<(), PkiError> {
        let current = self.current_status(c, issuer, now, src, fetching, wants)?;
        let mode = match self.revocation {
            Revocation::Strict => "strict",
            Revocation::IfUri if src.named => "ifuri",
            _ => return Ok(()),
        };
        if !current {
            return Err(PkiError::RevocationUnknown(
                dn_string(c.subject()),
                dn_string(c.issuer()),
                mode,
            ));
        }
        Ok(())
    }

    /// Whether a current status vouches for `c` (Err: something that counts says it is
    /// revoked): the configured CRLs, the CRLs already fetched from `src`'s points, then, as
    /// `fetching` allows, OCSP answers (cached, or asked for) and fetching.
    fn current_status(
        &self,
        c: &X509Certificate<'_>,
        issuer: &X509Certificate<'_>,
        now: i64,
        src: &Sources,
        fetching: Fetching,
        wants: &mut bool,
    ) -> Result<bool, PkiError> {
        let uris = &src.crl;
        // Serials compared as numbers: without sign-padding zeros.
        let int = ocsp::int_bytes;
        let serial = int(c.raw_serial());
        let may_sign_crls = match issuer.key_usage() {
            Ok(Some(ku)) => ku.value.crl_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        let mut current = false;
        // The delta CRL points of the complete CRLs that count.
        let freshest = std::cell::RefCell::new(Vec::new());
        // The numbers of the current complete CRLs that count, and the base numbers of the
        // delta CRLs that count (None: a complete CRL without a number).
        let complete = std::cell::RefCell::new(Vec::new());
        let bases = std::cell::RefCell::new(Vec::new());
        // Whether the CRL `crl` counts for `c`, and is current (a delta CRL never is); Err if
        // it lists `c`.
        let check = |crl: &Crl| -> Result<Option<bool>, PkiError> {
            if crl.issuer != c.issuer().as_raw() {
                return Ok(None);
            }
            let ignore = |why: &str| {
                tracing::warn!(issuer = %dn_string(c.issuer()), why, "ignoring a CRL");
            };
            if !may_sign_crls {
                ignore("its issuer's keyUsage has no cRLSign");
                return Ok(None);
            }
            if let Some(why) = crl.unusable {
                ignore(why);
                return Ok(None);
            }
            if let Err(e) = crl.verified_by(issuer.public_key()) {
                ignore(&format!("its issuer's key does not verify it: {e}"));
                return Ok(None);
            }
            if crl.lists(&serial) {
                return Err(PkiError::Revoked(
                    dn_string(c.subject()),
                    c.raw_serial_as_string(),
                    dn_string(c.issuer()),
                ));
            }
            let fresh = crl.current(now);
            let delta = crl.base.is_some();
            tracing::info!(subject = %dn_string(c.subject()), serial = %c.raw_serial_as_string(),
                crl_issuer = %dn_string(c.issuer()), revoked = crl.entries,
                current = fresh, delta, "certificate not in its issuer's CRL");
            if let Some(base) = &crl.base {
                bases.borrow_mut().push(base.clone());
                return Ok(Some(false));
            }
            if fresh {
                complete.borrow_mut().push(crl.number.clone());
            }
            freshest.borrow_mut().extend(crl.freshest.iter().cloned());
            Ok(Some(fresh))
        };
        for crl in &self.crls {
            current |= check(crl)? == Some(true);
        }
        // CRLs already fetched and verified (no network): one that lists the certificate
        // beats any OCSP answer, which over plain HTTP could be an old one replayed.
        if !current && self.fetch {
            let spki = issuer.public_key().raw;
            for u in uris.iter().take(CRL_FETCH_MAX_URIS) {
                if let Some(Some(crl)) = Self::cached_crl(&(u.clone(), spki.to_vec()), now) {
                    current |= check(&crl)? == Some(true);
                }
            }
        }
        let (network, deadline) = match fetching {
            Fetching::Never => (false, None),
            Fetching::Cached => (true, None),
            Fetching::Until(d) => (true, Some(d)),
        };
        // OCSP gets half of what is left, so that a dead responder leaves time for the CRL
        // distribution points.
        let ocsp_until =
            || deadline.map(|d| Instant::now() + d.saturating_duration_since(Instant::now()) / 2);
        // A current status from OCSP, which no delta CRL bears on.
        let mut by_ocsp = false;
        if network && !current && self.ocsp && !src.ocsp.is_empty() {
            current = self.ocsp_status(c, issuer, now, &src.ocsp, ocsp_until(), wants)?;
            by_ocsp = current;
        }
        let mut unfetched = false;
        if network && !current && self.fetch {
            let spki = issuer.public_key().raw.to_vec();
            for u in uris.iter().take(CRL_FETCH_MAX_URIS) {
                let key = (u.clone(), spki.clone());
                // Cached CRLs were checked above; re-storing one would restart its age.
                if Self::cached_crl(&key, now).is_some() {
                    continue;
                }
                let Some(deadline) = deadline else {
                    unfetched = true;
                    continue;
                };
                let Some(left) = time_for(deadline, u, "this CRL distribution point") else {
                    break;
                };
                let (crl, _claim) = match fetch_crl_once(&key, now, left) {
                    Got::Fetched(crl, claim) => (crl, claim),
                    // Another check fetched and stored it meanwhile.
                    Got::Cached(crl) => {
                        if check(&crl)? == Some(true) {
                            current = true;
                            break;
                        }
                        continue;
                    }
                    Got::Nothing => continue,
                };
                // Stored only if its issuer's key verified it (Revoked: it did), before the
                // claim goes and checks waiting for this fetch look.
                match check(&crl) {
                    Ok(Some(fresh)) => {
                        Self::remember(key, Some(crl));
                        if fresh {
                            current = true;
                            break;
                        }
                    }
                    Ok(None) => Self::remember(key, None),
                    Err(e) => {
                        Self::remember(key, Some(crl));
                        return Err(e);
                    }
                }
            }
        }
        // No status: fetching from the points not fetched could give one.
        *wants |= unfetched && !current;
        if self.fetch {
            let points = freshest.take();
            *wants |= self.check_deltas(&points, issuer, now, fetching, &check)?;
        }
        // RFC 5280 §5.2.4 (c): a delta CRL goes with a complete CRL whose number is at least
        // its base. One based on a newer complete CRL than any current one here says that
        // one was superseded: what was revoked between the two is in neither, so the complete
        // CRL vouches for nothing. What the delta lists stays refused. The newer complete CRL
        // is looked for (a CA publishes a new base and its delta together): OCSP, then the
        // distribution points afresh, passing over their cached copy (the superseded one)
        // unless it was fetched within CRL_FETCH_RETRY. Without it there is no current
        // status (strict and ifuri refuse the certificate, relaxed lets it pass).
        let superseded = || {
            let newest = complete.borrow().iter().max().cloned().flatten();
            let base = bases
                .borrow()
                .iter()
                .find(|b| newest.as_ref().is_none_or(|n| n < *b))
                .cloned();
            base.map(|b| (b, newest))
        };
        if current && !by_ocsp {
            if let Some((base, newest)) = superseded() {
                tracing::warn!(issuer = %dn_string(c.issuer()), %base,
                    complete = %newest.map_or("none".into(), |n| n.to_string()),
                    "a delta CRL is based on a newer complete CRL than the one here: looking for that one");
                current = false;
                if network && self.ocsp && !src.ocsp.is_empty() {
                    current = self.ocsp_status(c, issuer, now, &src.ocsp, ocsp_until(), wants)?;
                }
                let spki = issuer.public_key().raw.to_vec();
                for u in uris.iter().take(CRL_FETCH_MAX_URIS) {
                    if current || !self.fetch {
                        break;
                    }
                    let key = (u.clone(), spki.clone());
                    // A copy fetched since may be the newer one.
                    if let Some(Some(crl)) = Self::cached_crl(&key, now) {
                        if check(&crl)? == Some(true) && superseded().is_none() {
                            current = true;
                            break;
                        }
                    }
                    if !network || Self::fetched_lately(&key) {
                        continue;
                    }
                    let Some(deadline) = deadline else {
                        *wants = true;
                        continue;
                    };
                    let Some(left) = time_for(deadline, u, "this CRL distribution point") else {
                        break;
                    };
                    let Some(crl) = fetch_crl(u, left) else {
                        Self::remember(key, None);
                        continue;
                    };
                    match check(&crl) {
                        Ok(Some(_)) => {
                            Self::remember(key, Some(crl));
                            current = superseded().is_none();
                        }
                        Ok(None) => Self::remember(key, None),
                        Err(e) => {
                            Self::remember(key, Some(crl));
                            return Err(e);
                        }
                    }
                }
                if !current {
                    tracing::warn!(issuer = %dn_string(c.issuer()),
                        "no complete CRL as new as its delta CRL's base: no current status");
                }
            }
        }
        Ok(current)
    }

    /// Whether the CRL for `key` was fetched (or tried) within [`CRL_FETCH_RETRY`].
    fn fetched_lately(key: &(String, Vec<u8>)) -> bool {
        let cache = crl_cache().lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .is_some_and(|f| f.at.elapsed() < CRL_FETCH_RETRY)
    }

    /// Checks `c` against the delta CRLs at `points` (the freshest-CRL points of its complete
    /// CRLs) with `check`: those fetched before, and (as `fetching` allows) those not yet.
    /// Err if one lists `c`; Ok(true) when a point not fetched lately could still tell.
    fn check_deltas(
        &self,
        points: &[String],
        issuer: &X509Certificate<'_>,
        now: i64,
        fetching: Fetching,
        check: &CrlCheck<'_>,
    ) -> Result<bool, PkiError> {
        let spki = issuer.public_key().raw.to_vec();
        let mut unfetched = false;
        for u in points.iter().take(CRL_FETCH_MAX_URIS) {
            let key = (u.clone(), spki.clone());
            let (crl, claim) = match Self::cached_crl(&key, now) {
                Some(Some(crl)) => (crl, None),
                // Failed a moment ago: the complete CRL stands alone until the retry.
                Some(None) => continue,
                None => {
                    let deadline = match fetching {
                        Fetching::Never => continue,
                        Fetching::Cached => {
                            unfetched = true;
                            continue;
                        }
                        Fetching::Until(d) => d,
                    };
                    let Some(left) = time_for(deadline, u, "this delta CRL point") else {
                        break;
                    };
                    match fetch_crl_once(&key, now, left) {
                        Got::Fetched(crl, claim) => (crl, Some(claim)),
                        Got::Cached(crl) => (crl, None),
                        Got::Nothing => {
                            tracing::warn!(uri = %u, "no delta CRL: the complete CRL stands alone");
                            continue;
                        }
                    }
                }
            };
            let r = check(&crl);
            // Only what this check fetched is stored, before the claim goes, and only if its
            // issuer's key verified it (Revoked: it did). A cached one is not stored again,
            // which would restart its age, nor replaced by this issuer certificate's view of
            // it (another name, no cRLSign).
            if claim.is_some() {
                let verified = !matches!(r, Ok(None));
                Self::remember(key, verified.then_some(crl));
            }
            drop(claim);
            match r {
                Ok(_) | Err(PkiError::BadCrl(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(unfetched)
    }

    /// Asks `uris` (OCSP responders) about `c`: Ok(true) for a current `good` answer, Err for
    /// `revoked`, Ok(false) for anything else.
    #[cfg(test)]
    fn ocsp_good(
        &self,
        c: &X509Certificate<'_>,
        issuer: &X509Certificate<'_>,
        now: i64,
        uris: &[String],
        deadline: Instant,
    ) -> Result<bool, PkiError> {
        self.ocsp_status(c, issuer, now, uris, Some(deadline), &mut false)
    }

    /// [`Self::ocsp_good`] from the cache, and asking responders until `deadline` (None: the
    /// cache only; `wants` is set when a responder not in back-off was not asked).
    fn ocsp_status(
        &self,
        c: &X509Certificate<'_>,
        issuer: &X509Certificate<'_>,
        now: i64,
        uris: &[String],
        deadline: Option<Instant>,
        wants: &mut bool,
    ) -> Result<bool, PkiError> {
        let id = ocsp::CertId::new(
            issuer.subject().as_raw(),
            &issuer.public_key().subject_public_key.data,
            c.raw_serial(),
        );
        let revoked = |uri: &str| {
            PkiError::RevokedOcsp(
                dn_string(c.subject()),
                c.raw_serial_as_string(),
                uri.to_string(),
            )
        };
        let mut unasked = false;
        for u in uris.iter().take(OCSP_MAX_URIS) {
            let key = (u.clone(), id.clone());
            let cached = {
                let cache = ocsp_cache().lock().unwrap_or_else(|p| p.into_inner());
                cache.get(&key).and_then(|e| {
                    let age = e.at.elapsed();
                    match e.status {
                        // Revoked stays revoked, whatever the answer's dates.
                        Some(ocsp::Status::Revoked(_)) if age < CRL_FETCHED_MAX_AGE => {
                            Some(e.status)
                        }
                        Some(ocsp::Status::Good) if now <= e.until && age < CRL_FETCHED_MAX_AGE => {
                            Some(e.status)
                        }
                        // Unknown, failures and stale answers: asked again after the back-off.
                        _ => (age < CRL_FETCH_RETRY).then_some(None),
                    }
                })
            };
            let status = match cached {
                Some(st) => st,
                None => {
                    let Some(deadline) = deadline else {
                        unasked = true;
                        continue;
                    };
                    let Some(left) = time_for(deadline, u, "this OCSP responder") else {
                        break;
                    };
                    let t = Instant::now();
                    let answer = self.ocsp_ask(u, &id, issuer, now, left);
                    let ms = t.elapsed().as_millis() as u64;
                    let (status, until) = match answer {
                        Ok((st, until)) => {
                            tracing::info!(uri = %u, subject = %dn_string(c.subject()), status = ?st, ms, "OCSP answer");
                            let keep = !matches!(st, ocsp::Status::Unknown);
                            (keep.then_some(st), until)
                        }
                        Err(e) => {
                            tracing::warn!(uri = %u, subject = %dn_string(c.subject()), ms, "OCSP failed: {e}");
                            (None, 0)
                        }
                    };
                    bounded_insert(
                        ocsp_cache(),
                        key,
                        OcspEntry {
                            status,
                            until,
                            at: Instant::now(),
                        },
                    );
                    status
                }
            };
            match status {
                Some(ocsp::Status::Good) => return Ok(true),
                Some(ocsp::Status::Revoked(_)) => return Err(revoked(u)),
                Some(ocsp::Status::Unknown) | None => {}
            }
        }
        // No status: asking the responders not asked could give one.
        *wants |= unasked;
        Ok(false)
    }

    /// One OCSP exchange with `uri` about `id`: the answer's status and until when it holds,
    /// once its signature (by the issuer, or a responder the issuer certified for OCSP
    /// signing), its CertID, its times and its nonce (if echoed) are checked.
    fn ocsp_ask(
        &self,
        uri: &str,
        id: &ocsp::CertId,
        issuer: &X509Certificate<'_>,
        now: i64,
        timeout: Duration,
    ) -> Result<(ocsp::Status, i64), String> {
        let nonce = super::crypto::random_bytes(16);
        let req = ocsp::request(id, &nonce);
        let body = fetch::http_post(uri, "application/ocsp-request", &req, timeout)?;
        let r = ocsp::parse_response(&body)?;
        if let Some(responder) = verify_ocsp_signature(&r, issuer, now)? {
            // A delegated responder's own certificate: with id-pkix-ocsp-nocheck the client may
            // trust it for its lifetime (RFC 6960 §4.2.2.2.1); without, the configured CRLs
            // and those already fetched must not list it (no fetch, no OCSP: no loop).
            let rc = parse_cert(responder).map_err(|e| e.to_string())?;
            let nocheck = rc
                .extensions()
                .iter()
                .any(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5");
            if !nocheck {
                self.listed_in_known_crls(&rc, issuer, now, &crl_distribution_points(&rc))
                    .map_err(|e| format!("the responder's certificate: {e}"))?;
            }
        }
        if r.nonce.as_ref().is_some_and(|n| n[..] != nonce[..]) {
            return Err("the answer's nonce is not ours".into());
        }
        // A revoked answer first, if the responder gave several about it.
        let one = r
            .singles
            .iter()
            .filter(|s| s.id == *id)
            .min_by_key(|s| !matches!(s.status, ocsp::Status::Revoked(_)))
            .ok_or("no answer about this certificate")?;
        if one.this_update > now + OCSP_SKEW {
            return Err("the answer's thisUpdate is in the future".into());
        }
        let until = one
            .next_update
            .unwrap_or(one.this_update + OCSP_NO_NEXT_UPDATE);
        if now > until && !matches!(one.status, ocsp::Status::Revoked(_)) {
            return Err("the answer is out of date".into());
        }
        Ok((one.status, until))
    }

    /// Err(Revoked) if a configured CRL, or one already fetched from `uris`, of `issuer` lists
    /// `c` (no fetching, no OCSP).
    fn listed_in_known_crls(
        &self,
        c: &X509Certificate<'_>,
        issuer: &X509Certificate<'_>,
        now: i64,
        uris: &[String],
    ) -> Result<(), PkiError> {
        let src = Sources {
            crl: uris.to_vec(),
            ocsp: Vec::new(),
            named: false,
        };
        self.current_status(c, issuer, now, &src, Fetching::Never, &mut false)
            .map(|_| ())
    }

    /// A fetched CRL to use for `key` without asking again: Some(Some(der)) while it is
    /// current (and under a day old), Some(None) within [`CRL_FETCH_RETRY`] of a fetch that
    /// failed or gave nothing current (an expired CRL is still used then: what it lists stays
    /// revoked); None: fetch.
    fn cached_crl(key: &(String, Vec<u8>), now: i64) -> Option<Option<Arc<Crl>>> {
        let cache = crl_cache().lock().unwrap_or_else(|p| p.into_inner());
        let f = cache.get(key)?;
        let age = f.at.elapsed();
        let current = f.crl.as_ref().is_some_and(|c| c.current(now));
        if current && age < CRL_FETCHED_MAX_AGE {
            return Some(f.crl.clone());
        }
        (age < CRL_FETCH_RETRY).then(|| f.crl.clone())
    }

    fn remember(key: (String, Vec<u8>), crl: Option<Arc<Crl>>) {
        bounded_insert(
            crl_cache(),
            key,
            Fetched {
                crl,
                at: Instant::now(),
            },
        );
    }

    /// The DER of each anchor (for the fingerprint of a configuration).
    pub fn ders(&self) -> &[Vec<u8>] {
        &self.cas
    }

    /// The DER of each CRL, the revocation mode and whether CRLs are fetched (for the
    /// fingerprint of a configuration).
    pub fn crls(&self) -> (Vec<&[u8]>, Revocation, bool, bool) {
        let ders = self.crls.iter().map(|c| &c.der[..]).collect();
        (ders, self.revocation, self.fetch, self.ocsp)
    }

    /// CERTREQ data: the SHA-1 of each CA's SubjectPublicKeyInfo, concatenated (§3.7).
    pub fn certreq(&self) -> Vec<u8> {
        use sha1::Digest;
        let mut v = Vec::new();
        for d in &self.cas {
            if let Ok(c) = parse_cert(d) {
                v.extend_from_slice(&sha1::Sha1::digest(c.public_key().raw));
            }
        }
        v
    }

    /// Checks that `leaf` chains to one of the anchors through `intermediates` (any order),
    /// every certificate valid now, every issuer a CA. Returns the subject of the anchor.
    pub fn verify(&self, leaf: &[u8], intermediates: &[Vec<u8>]) -> Result<String, PkiError> {
        self.verify_at(leaf, intermediates, now_secs())
    }

    /// Whether checking a chain may fetch anything (CRL distribution points, OCSP).
    pub fn fetches(&self) -> bool {
        self.fetch || self.ocsp
    }

    /// [`TrustAnchors::verify`] without any network: revocation from the configured CRLs and
    /// what was fetched and asked before (within its back-off). Also says whether fetching
    /// could tell more: a certificate lacks a current status that a distribution point or
    /// OCSP responder not asked lately might give. The caller can then fetch off its own
    /// thread (a `verify` there fills the caches) and ask again.
    pub fn verify_cached(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
    ) -> (Result<String, PkiError>, bool) {
        let mut wants = false;
        let r = self.verify_in(leaf, intermediates, now_secs(), true, &mut wants);
        (r, wants)
    }

    /// [`TrustAnchors::verify`] at a given time (seconds since the epoch).
    pub fn verify_at(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        now: i64,
    ) -> Result<String, PkiError> {
        self.verify_in(leaf, intermediates, now, false, &mut false)
    }

    /// RFC 5280 §4.2: an extension marked critical that path validation does not process
    /// makes the certificate unusable. These are those processed here (name constraints are
    /// refused where they appear: [`Self::issuer_ok`]).
    fn critical_ok(c: &X509Certificate<'_>) -> Result<(), PkiError> {
        use x509_parser::oid_registry::{
            OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE,
            OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS, OID_X509_EXT_SUBJECT_ALT_NAME,
        };
        let known = [
            OID_X509_EXT_BASIC_CONSTRAINTS,
            OID_X509_EXT_KEY_USAGE,
            OID_X509_EXT_EXTENDED_KEY_USAGE,
            OID_X509_EXT_SUBJECT_ALT_NAME,
            OID_X509_EXT_NAME_CONSTRAINTS,
        ];
        if c.extensions()
            .iter()
            .any(|e| e.critical && !known.contains(&e.oid))
        {
            return Err(PkiError::Path(
                dn_string(c.subject()),
                "a critical extension that is not processed (RFC 5280 §4.2)",
            ));
        }
        Ok(())
    }

    /// The peer's own certificate: no unknown critical extension, and if it says what its key
    /// is for, signing (RFC 4945 §5.1.3.2: digitalSignature or nonRepudiation).
    fn leaf_ok(c: &X509Certificate<'_>) -> Result<(), PkiError> {
        Self::critical_ok(c)?;
        match c.key_usage() {
            Ok(None) => Ok(()),
            Ok(Some(ku)) if ku.value.digital_signature() || ku.value.non_repudiation() => Ok(()),
            _ => Err(PkiError::Path(
                dn_string(c.subject()),
                "its keyUsage does not allow signing (digitalSignature)",
            )),
        }
    }

    /// A certificate that issued the one `below` CA certificates above the peer's: a CA
    /// (basicConstraints), allowed to sign certificates if it says what its key is for
    /// (keyCertSign), with a pathLenConstraint of at least `below`, no unknown critical
    /// extension, and no name constraints (not enforced here: refused rather than ignored,
    /// RFC 5280 §4.2.1.10).
    fn issuer_ok(c: &X509Certificate<'_>, below: usize) -> Result<(), PkiError> {
        let name = || dn_string(c.subject());
        Self::critical_ok(c)?;
        let Ok(Some(bc)) = c.basic_constraints() else {
            return Err(PkiError::NotCa(name()));
        };
        if !bc.value.ca {
            return Err(PkiError::NotCa(name()));
        }
        if bc
            .value
            .path_len_constraint
            .is_some_and(|n| (n as usize) < below)
        {
            return Err(PkiError::Path(
                name(),
                "more CA certificates below it than its pathLenConstraint allows",
            ));
        }
        match c.key_usage() {
            Ok(None) => {}
            Ok(Some(ku)) if ku.value.key_cert_sign() => {}
            _ => {
                return Err(PkiError::Path(
                    name(),
                    "its keyUsage does not allow signing certificates (keyCertSign)",
                ))
            }
        }
        if !matches!(c.name_constraints(), Ok(None)) {
            return Err(PkiError::Path(
                name(),
                "name constraints, which ferrogate does not enforce (refused, not ignored)",
            ));
        }
        Ok(())
    }

    /// [`TrustAnchors::verify_at`]; `cached`: no network (see [`Self::verify_cached`]).
    fn verify_in(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        now: i64,
        cached: bool,
        wants: &mut bool,
    ) -> Result<String, PkiError> {
        #[cfg(test)]
        CHAIN_CHECKS.with(|n| n.set(n.get() + 1));
        // A peer certificate configured as an anchor itself is trusted as it is.
        if self.cas.iter().any(|a| a == leaf) {
            let c = parse_cert(leaf)?;
            if !valid_at(&c, now) {
                return Err(PkiError::Expired(dn_string(c.subject())));
            }
            return Ok(dn_string(c.subject()));
        }
        // Each certificate with the issuer that verified it. Revocation is checked (and CRLs
        // fetched) only once the chain has reached an anchor: an untrusted chain must not make
        // us fetch anything.
        let mut links: Vec<(&[u8], &[u8])> = Vec::new();
        let mut cur: &[u8] = leaf;
        for below in 0..MAX_CHAIN {
            let c = parse_cert(cur)?;
            if !valid_at(&c, now) {
                return Err(PkiError::Expired(dn_string(c.subject())));
            }
            // The signature algorithm the certificate names inside its signed part must be
            // the one it is signed with (RFC 5280 §4.1.1.2).
            if c.tbs_certificate.signature != c.signature_algorithm {
                return Err(PkiError::Path(
                    dn_string(c.subject()),
                    "its two signature algorithm fields differ (RFC 5280 §4.1.1.2)",
                ));
            }
            if below == 0 {
                Self::leaf_ok(&c)?;
            }
            let tbs = c.tbs_certificate.as_ref();
            let sig_alg = &c.signature_algorithm;
            let sig = c.signature_value.data.as_ref();
            let mut last_err = None;
            for a in &self.cas {
                let ac = parse_cert(a)?;
                if ac.subject().as_raw() != c.issuer().as_raw() {
                    continue;
                }
                match verify_alg(ac.public_key(), sig_alg, tbs, sig) {
                    Ok(()) if valid_at(&ac, now) => {
                        // An anchor issues only as a CA (a pinned peer certificate is trusted
                        // as itself, above, and issues nothing).
                        Self::issuer_ok(&ac, below)?;
                        links.push((cur, a));
                        let fetching = if cached {
                            Fetching::Cached
                        } else {
                            Fetching::Until(Instant::now() + CRL_FETCH_BUDGET)
                        };
                        // From the anchor down.
                        for (cd, id) in links.iter().rev() {
                            let (c, i) = (parse_cert(cd)?, parse_cert(id)?);
                            let src = Sources::of(&c);
                            self.check_revocation(&c, &i, now, &src, fetching, wants)?;
                        }
                        return Ok(dn_string(ac.subject()));
                    }
                    Ok(()) => last_err = Some(PkiError::Expired(dn_string(ac.subject()))),
                    Err(e) => last_err = Some(e),
                }
            }
            let mut next = None;
            for i in intermediates {
                if i.as_slice() == cur {
                    continue;
                }
                let Ok(ic) = parse_cert(i) else { continue };
                if ic.subject().as_raw() != c.issuer().as_raw() {
                    continue;
                }
                if let Err(e) = Self::issuer_ok(&ic, below) {
                    last_err = Some(e);
                    continue;
                }
                match verify_alg(ic.public_key(), sig_alg, tbs, sig) {
                    Ok(()) => {
                        links.push((cur, i.as_slice()));
                        next = Some(i.as_slice());
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            match next {
                Some(n) => cur = n,
                None => {
                    return Err(
                        last_err.unwrap_or_else(|| PkiError::Untrusted(dn_string(c.subject())))
                    )
                }
            }
        }
        Err(PkiError::ChainTooLong(MAX_CHAIN))
    }
}

/// A certificate's subject in strongSwan's notation.
pub fn cert_subject(cert: &[u8]) -> Result<String, PkiError> {
    Ok(dn_string(parse_cert(cert)?.subject()))
}

fn attr_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "T",
        "2.5.4.42" => "G",
        "2.5.4.46" => "dnQualifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "E",
        o => o,
    }
    .to_string()
}

fn dn_pairs(n: &X509Name<'_>) -> Vec<(String, String)> {
    n.iter_attributes()
        .map(|a| {
            let v = match a.as_str() {
                Ok(s) => s.to_string(),
                Err(_) => String::from_utf8_lossy(a.as_slice()).into_owned(),
            };
            (attr_name(&a.attr_type().to_id_string()), v)
        })
        .collect()
}

fn dn_string(n: &X509Name<'_>) -> String {
    dn_pairs(n)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders a DER distinguished name (an ID_DER_ASN1_DN) as `C=CH, O=..., CN=...`.
pub fn dn_der_to_string(der: &[u8]) -> Option<String> {
    match X509Name::from_der(der) {
        Ok(([], n)) => Some(dn_string(&n)),
        _ => None,
    }
}

fn canonical_attr(k: &str) -> String {
    match k.trim().to_ascii_lowercase().as_str() {
        "emailaddress" | "email" | "e" => "E".into(),
        "s" | "st" => "ST".into(),
        "surname" | "sn" => "SN".into(),
        k => attr_name_upper(k),
    }
}

fn attr_name_upper(k: &str) -> String {
    match k {
        "serialnumber" => "serialNumber".into(),
        "dnqualifier" => "dnQualifier".into(),
        k => k.to_ascii_uppercase(),
    }
}

/// Parses a DN written like strongSwan's (`C=CH, O=strongSwan, CN=moon`; `/` also separates).
/// Returns None unless every part is `type=value`.
pub fn parse_dn(s: &str) -> Option<Vec<(String, String)>> {
    let sep = if s.starts_with('/') { '/' } else { ',' };
    let mut v = Vec::new();
    for part in s.split(sep).map(str::trim).filter(|p| !p.is_empty()) {
        let (k, val) = part.split_once('=')?;
        if k.trim().is_empty() {
            return None;
        }
        v.push((canonical_attr(k), val.trim().to_string()));
    }
    (!v.is_empty()).then_some(v)
}

/// Does the DER distinguished name `der` match the pattern `pattern` (same attributes in the
/// same order; values compare case-insensitively; a value `*` matches any value)?
pub fn dn_matches(pattern: &str, der: &[u8]) -> bool {
    let Some(want) = parse_dn(pattern) else {
        return false;
    };
    let Ok((rest, n)) = X509Name::from_der(der) else {
        return false;
    };
    if !rest.is_empty() {
        return false;
    }
    let have = dn_pairs(&n);
    have.len() == want.len()
        && have.iter().zip(&want).all(|((hk, hv), (wk, wv))| {
            canonical_attr(hk) == *wk && (wv == "*" || hv.eq_ignore_ascii_case(wv))
        })
}

/// Whether the DER distinguished name `der` names `n`: the same attributes in the same order,
/// values equal but for ASCII case (RFC 5280 §7.1 compares after case folding). No value is
/// a pattern here: a peer whose ID is `CN=*` is not the certificate's `CN=moon`.
fn same_dn(der: &[u8], n: &X509Name<'_>) -> bool {
    let Ok(([], d)) = X509Name::from_der(der) else {
        return false;
    };
    let (a, b) = (dn_pairs(&d), dn_pairs(n));
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|((ak, av), (bk, bv))| ak == bk && av.eq_ignore_ascii_case(bv))
}

/// Is the IKE identity (`id_type`, `data`) one the certificate vouches for: its subject DN,
/// or a subjectAltName of the same kind (IP address, DNS name, email)?
pub fn id_confirmed_by_cert(cert: &[u8], id_type: u8, data: &[u8]) -> bool {
    let Ok(c) = parse_cert(cert) else {
        return false;
    };
    if id_type == 9 {
        return c.subject().as_raw() == data || same_dn(data, c.subject());
    }
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|g| match (id_type, g) {
        (1, GeneralName::IPAddress(a)) | (5, GeneralName::IPAddress(a)) => *a == data,
        (2, GeneralName::DNSName(n)) => n.as_bytes().eq_ignore_ascii_case(data),
        (3, GeneralName::RFC822Name(n)) => n.as_bytes().eq_ignore_ascii_case(data),
        _ => false,
    })
}

/// The identities a certificate holds, for messages (`subject` and subjectAltNames).
pub fn cert_identities(cert: &[u8]) -> Vec<String> {
    let Ok(c) = parse_cert(cert) else {
        return Vec::new();
    };
    let mut v = vec![dn_string(c.subject())];
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for g in &san.value.general_names {
            match g {
                GeneralName::DNSName(n) | GeneralName::RFC822Name(n) => v.push(n.to_string()),
                GeneralName::IPAddress(a) => {
                    if let Ok(b) = <[u8; 4]>::try_from(*a) {
                        v.push(IpAddr::from(b).to_string());
                    } else if let Ok(b) = <[u8; 16]>::try_from(*a) {
                        v.push(IpAddr::from(b).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/pki")
            .join(name)
    }
    fn cert(name: &str) -> Vec<u8> {
        load_certs(&data(name)).unwrap().remove(0)
    }
    fn cred(name: &str) -> Credential {
        Credential::load(&data(&format!("{name}.pem")), &data(&format!("{name}.key"))).unwrap()
    }
    fn anchors(names: &[&str]) -> TrustAnchors {
        TrustAnchors::new(names.iter().map(|n| cert(n)).collect()).unwrap()
    }
    const ALL: &[u16] = &[
        hash::SHA2_256,
        hash::SHA2_384,
        hash::SHA2_512,
        hash::IDENTITY,
    ];

    /// RFC 5280 path checks beyond signatures and dates, on chains OpenSSL made
    /// (tests/data/pki/path/make.sh): each refused chain fails for its own reason, and the two
    /// good ones pass.
    #[test]
    fn path_checks_refuse_what_rfc_5280_forbids() {
        let p = |n: &str| cert(&format!("path/{n}.pem"));
        let root = TrustAnchors::new(vec![p("root")]).unwrap();
        let path_err = |r: Result<String, PkiError>, who: &str, why: &str| match r {
            Err(PkiError::Path(w, m)) => {
                assert!(w.contains(who) && m.contains(why), "{w}: {m}");
            }
            other => panic!("{who}: {other:?}"),
        };
        // Pass.
        root.verify(&p("ok-leaf"), &[]).unwrap();
        root.verify(&p("pl0-leaf"), &[p("pl0-int")]).unwrap();
        // A CA below a pathlen:0 intermediate.
        path_err(
            root.verify(&p("pl0-deep"), &[p("pl0-sub"), p("pl0-int")]),
            "pl0-int",
            "pathLenConstraint",
        );
        // An intermediate whose key may sign CRLs but not certificates.
        path_err(
            root.verify(&p("crl-leaf"), &[p("crl-int")]),
            "crl-int",
            "keyCertSign",
        );
        // Name constraints: refused, not ignored.
        path_err(
            root.verify(&p("nc-leaf"), &[p("nc-int")]),
            "nc-int",
            "name constraints",
        );
        // The peer's certificate: an unknown critical extension; a key that may not sign.
        path_err(root.verify(&p("crit-leaf"), &[]), "crit-leaf", "critical");
        path_err(
            root.verify(&p("enc-leaf"), &[]),
            "enc-leaf",
            "digitalSignature",
        );
        // A self-signed peer certificate (no CA) pinned as an anchor is trusted as itself, but
        // issues nothing.
        let pinned = TrustAnchors::new(vec![p("pinned")]).unwrap();
        pinned.verify(&p("pinned"), &[]).unwrap();
        let r = pinned.verify(&p("by-pinned"), &[]);
        assert!(matches!(r, Err(PkiError::NotCa(_))), "{r:?}");
    }

    #[test]
    fn loads_pkcs8_sec1_and_pkcs1_keys() {
        assert_eq!(cred("gw-a").key_type(), "RSA"); // PKCS#8
        assert_eq!(cred("gw-b").key_type(), "ECDSA P-256"); // SEC1
        assert_eq!(cred("gw-d").key_type(), "RSA"); // PKCS#1
        assert_eq!(
            cred("gw-a").subject,
            "C=CH, O=ferrogate test, CN=gw-a.example"
        );
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let e = Credential::load(&data("gw-a.pem"), &data("rogue.key")).unwrap_err();
        assert_eq!(e, PkiError::KeyMismatch);
        let e = Credential::load(&data("gw-a.pem"), &data("gw-b.key")).unwrap_err();
        assert_eq!(e, PkiError::KeyMismatch);
        assert!(matches!(
            Credential::load(&data("gw-a.pem"), &data("msg.bin")),
            Err(PkiError::BadKey(_))
        ));
        assert!(matches!(
            load_certs(&data("msg.bin")),
            Err(PkiError::BadCert(_))
        ));
    }

    #[test]
    fn verifies_signatures_openssl_made() {
        // RFC 7427 AUTH data: length, AlgorithmIdentifier, then the signature OpenSSL made.
        let msg = std::fs::read(data("msg.bin")).unwrap();
        for (c, file, alg) in [
            ("gw-a", "msg.gw-a.sig", ALG_SHA256_RSA),
            ("gw-b", "msg.gw-b.sig", ALG_ECDSA_SHA256),
            // RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt (openssl dgst -sigopt
            // rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest).
            ("gw-a", "msg.gw-a.pss.sig", ALG_RSA_PSS_SHA256),
        ] {
            let sig = std::fs::read(data(file)).unwrap();
            let mut auth = vec![alg.len() as u8];
            auth.extend_from_slice(alg);
            auth.extend_from_slice(&sig);
            let leaf = cert(&format!("{c}.pem"));
            verify_auth(&leaf, method::DIGITAL_SIGNATURE, &auth, &msg).unwrap();
            let mut bad = msg.clone();
            bad[0] ^= 1;
            assert_eq!(
                verify_auth(&leaf, method::DIGITAL_SIGNATURE, &auth, &bad),
                Err(PkiError::BadSignature)
            );
            // The other certificate's key does not verify it.
            let other = cert(if c == "gw-a" { "rogue.pem" } else { "gw-c.pem" });
            assert_eq!(
                verify_auth(&other, method::DIGITAL_SIGNATURE, &auth, &msg),
                Err(PkiError::BadSignature)
            );
        }
    }

    #[test]
    fn rfc7427_algorithm_identifiers_parse_to_their_oids() {
        // The DER blobs are RFC 7427 Appendix A's; x509-parser reads them back.
        for (der, oid) in [
            (ALG_SHA256_RSA, OID_SHA256_RSA),
            (ALG_ECDSA_SHA256, OID_ECDSA_SHA256),
            (ALG_ECDSA_SHA384, OID_ECDSA_SHA384),
            (ALG_ED25519, OID_ED25519),
            (ALG_RSA_PSS_SHA256, OID_RSA_PSS),
        ] {
            let (rest, a) = AlgorithmIdentifier::from_der(der).unwrap();
            assert!(rest.is_empty());
            assert_eq!(a.algorithm.to_id_string(), oid);
        }
        // The PSS parameters: SHA-256, MGF1 over SHA-256, a 32-byte salt.
        let (_, a) = AlgorithmIdentifier::from_der(ALG_RSA_PSS_SHA256).unwrap();
        let Ok(x509_parser::signature_algorithm::SignatureAlgorithm::RSASSA_PSS(p)) =
            x509_parser::signature_algorithm::SignatureAlgorithm::try_from(&a)
        else {
            panic!("not PSS parameters");
        };
        let mgf = p.mask_gen_algorithm().unwrap();
        assert_eq!(p.hash_algorithm_oid().to_id_string(), OID_SHA256);
        assert_eq!(
            (mgf.mgf.to_id_string(), mgf.hash.to_id_string()),
            (OID_MGF1.to_string(), OID_SHA256.to_string())
        );
        assert_eq!((p.salt_length(), p.trailer_field()), (32, 1));
    }

    #[test]
    fn sign_then_verify_every_key_and_method() {
        let octets = b"IKE signed octets";
        for (name, pss) in [
            ("gw-a", false),
            ("gw-a", true),
            ("gw-b", false),
            ("gw-c", false),
            ("gw-d", false),
            ("gw-d", true),
        ] {
            let c = cred(name).with_rsa_pss(pss);
            let (m, auth) = c.sign(octets, ALL).unwrap();
            assert_eq!(m, method::DIGITAL_SIGNATURE);
            verify_auth(&c.cert, m, &auth, octets).unwrap();
            let mut t = auth.clone();
            let last = t.len() - 1;
            t[last] ^= 0x40;
            assert!(verify_auth(&c.cert, m, &t, octets).is_err(), "{name}");
        }
        // Without RFC 7427: ECDSA falls back to RFC 4754, RSA refuses (no SHA-1 signing).
        let (m, auth) = cred("gw-b").sign(octets, &[]).unwrap();
        assert_eq!((m, auth.len()), (method::ECDSA_256, 64));
        verify_auth(&cert("gw-b.pem"), m, &auth, octets).unwrap();
        assert_eq!(
            cred("gw-a").sign(octets, &[]).unwrap_err(),
            PkiError::NeedsRfc7427("RSA")
        );
    }

    #[test]
    fn malformed_auth_payloads_are_errors() {
        let leaf = cert("gw-a.pem");
        for bad in [
            &[][..],
            &[0x20, 0x30][..],
            &[0x02, 0x30, 0x00, 1, 2, 3][..],
            &[0x03, 0x05, 0x00, 0x00][..],
        ] {
            assert!(
                matches!(
                    verify_auth(&leaf, method::DIGITAL_SIGNATURE, bad, b"x"),
                    Err(PkiError::BadAuth(_) | PkiError::Unsupported(_) | PkiError::BadSignature)
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            verify_auth(&leaf, 200, b"", b"x"),
            Err(PkiError::Unsupported(_))
        ));
    }

    #[test]
    fn chains_to_configured_cas_only() {
        let rsa = anchors(&["ca-rsa.pem"]);
        let ec = anchors(&["ca-ec.pem"]);
        let both = anchors(&["ca-rsa.pem", "ca-ec.pem"]);
        assert_eq!(
            rsa.verify(&cert("gw-a.pem"), &[]).unwrap(),
            "C=CH, O=ferrogate test, CN=ferrogate RSA CA"
        );
        rsa.verify(&cert("gw-c.pem"), &[]).unwrap(); // ECDSA leaf, RSA CA
        ec.verify(&cert("gw-b.pem"), &[]).unwrap(); // P-256 leaf, P-384 CA (SHA-256)
        assert!(matches!(
            ec.verify(&cert("gw-a.pem"), &[]),
            Err(PkiError::Untrusted(_))
        ));
        // The impostor's subject and names are gw-a's; no CA signed it.
        assert!(both.verify(&cert("rogue.pem"), &[]).is_err());
        // Through an intermediate sent along, in any order among other certificates.
        let d = cert("gw-d.pem");
        assert!(ec.verify(&d, &[]).is_err());
        ec.verify(&d, &[cert("gw-a.pem"), cert("int-ec.pem")])
            .unwrap();
        // A non-CA certificate cannot act as an intermediate.
        assert!(rsa.verify(&d, &[cert("gw-c.pem")]).is_err());
        // Expiry: before the validity period and after it (the test PKI lasts 100 years).
        let t1990 = 631_152_000;
        let t2200 = 7_258_118_400;
        assert!(matches!(
            rsa.verify_at(&cert("gw-a.pem"), &[], t1990),
            Err(PkiError::Expired(_))
        ));
        assert!(matches!(
            rsa.verify_at(&cert("gw-a.pem"), &[], t2200),
            Err(PkiError::Expired(_))
        ));
        // A leaf may not be a trust anchor unless it is a CA or self-signed.
        assert!(matches!(
            TrustAnchors::new(vec![cert("gw-a.pem")]),
            Err(PkiError::NotCa(_))
        ));
        // A self-signed peer certificate configured as an anchor is trusted as it is.
        anchors(&["rogue.pem"])
            .verify(&cert("rogue.pem"), &[])
            .unwrap();
    }

    /// Serves tests/data/pki over HTTP on 127.0.0.1 (404 for what is not there), counting
    /// requests.
    fn crl_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        crl_server_on(0)
    }

    /// [`crl_server`] on a given port (0: any free one).
    fn crl_server_on(port: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        crl_server_with(port, Duration::ZERO)
    }

    /// [`crl_server_on`], each answer held back for `delay` (one request at a time).
    fn crl_server_with(
        port: u16,
        delay: Duration,
    ) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                // A POST's body (an OCSP request), read before answering.
                let head_len = req
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(req.len(), |p| p + 4);
                let want = String::from_utf8_lossy(&req[..head_len])
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Content-Length: ")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    })
                    .unwrap_or(0);
                while req.len() < head_len + want {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(delay);
                let req = String::from_utf8_lossy(&req);
                let path = req.split(' ').nth(1).unwrap_or("/");
                let _ = match std::fs::read(data(path.trim_start_matches('/'))) {
                    Ok(body) => s
                        .write_all(b"HTTP/1.0 200 OK\r\n\r\n")
                        .and_then(|()| s.write_all(&body)),
                    Err(_) => s.write_all(b"HTTP/1.0 404 Not Found\r\n\r\n"),
                };
            }
        });
        (port, hits)
    }

    #[test]
    fn crls_fetched_from_distribution_points_revoke_and_vouch() {
        use std::sync::atomic::Ordering;
        let (port, hits) = crl_server();
        let url = |name: &str| vec![format!("http://127.0.0.1:{port}/{name}")];
        let hits = || hits.load(Ordering::SeqCst);
        let (ok_der, bad_der, ca_der) =
            (cert("crl-ok.pem"), cert("crl-bad.pem"), cert("crl-ca.pem"));
        let (ok, bad, ca) = (
            parse_cert(&ok_der).unwrap(),
            parse_cert(&bad_der).unwrap(),
            parse_cert(&ca_der).unwrap(),
        );
        // The points a certificate names (OpenSSL's, make-cdp.sh): http:// only.
        let cdp = cert("cdp.pem");
        assert_eq!(
            crl_distribution_points(&parse_cert(&cdp).unwrap()),
            ["http://crl.example.net/ca.crl"]
        );
        assert!(crl_distribution_points(&ok).is_empty());
        // 2026-12-15 and 2027-06-01: crl.pem is current at the first, past its next update at
        // the second.
        let (during, after) = (1_797_292_800, 1_811_808_000);
        let fetching = |mode| {
            anchors(&["crl-ca.pem"])
                .with_crls(Vec::new(), mode)
                .unwrap()
                .with_crl_fetch(true)
        };
        let soon = || Instant::now() + CRL_FETCH_BUDGET;
        // The fetch cache is the process's: every URL here names this test's server.
        let t = fetching(Revocation::Strict);
        let src = |uris: &[String], named| Sources {
            crl: uris.to_vec(),
            ocsp: Vec::new(),
            named,
        };
        let check = |t: &TrustAnchors, c, at, uris: &[String]| {
            t.check_revocation_with(c, &ca, at, &src(uris, !uris.is_empty()), soon())
        };
        check(&t, &ok, during, &url("crl.pem")).unwrap();
        assert_eq!(hits(), 1);
        let key = (url("crl.pem").remove(0), ca.public_key().raw.to_vec());
        let fetched_at = || crl_cache().lock().unwrap().get(&key).map(|f| f.at);
        let first = fetched_at();
        assert!(first.is_some());
        // Kept while current, for every tunnel: no second request, and it revokes what it
        // lists.
        assert!(matches!(
            check(&fetching(Revocation::Strict), &bad, during, &url("crl.pem")),
            Err(PkiError::Revoked(..))
        ));
        assert_eq!(hits(), 1);
        // Past its next update it is not current; fetched a moment ago, it is not asked for
        // again yet (and what it lists would still be revoked).
        assert!(matches!(
            check(&t, &ok, after, &url("crl.pem")),
            Err(PkiError::RevocationUnknown(_, _, "strict"))
        ));
        assert!(matches!(
            check(&t, &bad, after, &url("crl.pem")),
            Err(PkiError::Revoked(..))
        ));
        assert_eq!(hits(), 1);
        // Using it does not make it younger: its back-off (and its day) run from the fetch,
        // so an expired CRL in use is still asked for again after 60 s.
        assert_eq!(fetched_at(), first);
        // Points fetched before are used before any is asked: crl.pem vouches, missing.crl
        // is not asked.
        let two = [url("missing.crl"), url("crl.pem")].concat();
        check(&t, &ok, during, &two).unwrap();
        assert_eq!(hits(), 1);
        // A distribution point that fails is not asked again for a while.
        for _ in 0..2 {
            assert!(matches!(
                check(&t, &ok, during, &url("missing.crl")),
                Err(PkiError::RevocationUnknown(..))
            ));
        }
        assert_eq!(hits(), 2, "the failure is remembered");
        // Not a CRL (a certificate), or another issuer's CRL: neither vouches, neither is kept
        // (asked once each, then backed off).
        for other in ["gw-a.pem", "crl-nosign.pem"] {
            for _ in 0..2 {
                assert!(matches!(
                    check(&t, &ok, during, &url(other)),
                    Err(PkiError::RevocationUnknown(..))
                ));
            }
            let key = (url(other).remove(0), ca.public_key().raw.to_vec());
            assert!(
                matches!(TrustAnchors::cached_crl(&key, during), Some(None)),
                "{other}"
            );
        }
        assert_eq!(hits(), 4);
        // No time left: nothing is fetched.
        assert!(matches!(
            t.check_revocation_with(
                &ok,
                &ca,
                during,
                &src(&url("crl-none.der"), true),
                Instant::now()
            ),
            Err(PkiError::RevocationUnknown(..))
        ));
        assert_eq!(hits(), 4);
        // ifuri: only a certificate that names a distribution point (fetchable or not) needs a
        // current CRL.
        let t = fetching(Revocation::IfUri);
        check(&t, &ok, during, &[]).unwrap();
        assert!(matches!(
            t.check_revocation_with(&ok, &ca, during, &src(&[], true), soon()),
            Err(PkiError::RevocationUnknown(_, _, "ifuri"))
        ));
        assert!(matches!(
            check(&t, &ok, during, &url("missing.crl")),
            Err(PkiError::RevocationUnknown(_, _, "ifuri"))
        ));
        check(&t, &ok, during, &url("crl.pem")).unwrap();
        // relaxed: a failed fetch passes, a fetched CRL that lists the certificate does not.
        let t = fetching(Revocation::Relaxed);
        check(&t, &ok, during, &url("missing.crl")).unwrap();
        assert!(matches!(
            check(&t, &bad, during, &url("crl.pem")),
            Err(PkiError::Revoked(..))
        ));
        // Fetching off: nothing is asked.
        let before = hits();
        let off = anchors(&["crl-ca.pem"])
            .with_crls(Vec::new(), Revocation::Strict)
            .unwrap();
        assert!(matches!(
            check(&off, &bad, during, &url("crl-ok.pem")),
            Err(PkiError::RevocationUnknown(..))
        ));
        assert_eq!(hits(), before);
    }

    /// Delta CRLs (RFC 5280 §5.2.4) that strongSwan's `pki` made (tests/data/pki/delta/make.sh,
    /// which also checks that strongSwan's own `pki --verify` gives the verdicts asserted
    /// here): base.crl (complete, current on 2026-12-15) lists d-base and names delta.crl as
    /// its freshest CRL; delta.crl lists d-delta, revoked since; release.crl (OpenSSL) lists
    /// d-delta and d-ok, the latter as removed from the CRL. The certificates name
    /// http://127.0.0.1:29914/delta/base.crl, served here.
    #[test]
    fn delta_crls_refuse_what_was_revoked_since_the_complete_crl() {
        use std::sync::atomic::Ordering;
        let during = 1_797_292_800;
        let der = |name: &str| std::fs::read(data(&format!("delta/{name}"))).unwrap();
        let leaf = |name: &str| cert(&format!("delta/{name}.pem"));
        let with = |crls: &[&str], mode| {
            anchors(&["delta/ca.pem"])
                .with_crls(crls.iter().map(|c| der(c)).collect(), mode)
                .unwrap()
        };
        let revoked = |r: Result<String, PkiError>| matches!(r, Err(PkiError::Revoked(..)));
        let unknown =
            |r: &Result<String, PkiError>| matches!(r, Err(PkiError::RevocationUnknown(..)));
        // Both CRLs configured: the delta adds d-delta to what the complete CRL lists.
        let t = with(&["base.crl", "delta.crl"], Revocation::Strict);
        t.verify_at(&leaf("d-ok"), &[], during).unwrap();
        assert!(revoked(t.verify_at(&leaf("d-base"), &[], during)));
        assert!(revoked(t.verify_at(&leaf("d-delta"), &[], during)));
        // An OpenSSL-signed delta (release.crl) counts too: it refuses d-delta. Its entry for
        // d-ok has reason removeFromCRL, which RFC 5280 §5.3.1 makes no revocation (the
        // certificate expired or was released from hold); strongSwan 5.9.8 refuses it anyway.
        let t = with(&["base.crl", "release.crl"], Revocation::Strict);
        assert!(revoked(t.verify_at(&leaf("d-delta"), &[], during)));
        t.verify_at(&leaf("d-ok"), &[], during).unwrap();
        assert!(revoked(t.verify_at(&leaf("d-base"), &[], during)));
        // The complete CRL alone does not know of d-delta's revocation (strongSwan agrees).
        let t = with(&["base.crl"], Revocation::Strict);
        t.verify_at(&leaf("d-delta"), &[], during).unwrap();
        // A delta alone is no complete list: it refuses what it lists, vouches for nothing
        // (strongSwan gives no status), also when its issuer's complete CRL has expired.
        for mode in [Revocation::Strict, Revocation::Relaxed] {
            let t = with(&["delta.crl"], mode);
            assert!(revoked(t.verify_at(&leaf("d-delta"), &[], during)));
            let r = t.verify_at(&leaf("d-ok"), &[], during);
            if matches!(mode, Revocation::Strict) {
                assert!(unknown(&r), "{r:?}");
            } else {
                r.unwrap();
            }
        }
        // RFC 5280 §5.2.4: a delta goes with a complete CRL numbered at least its base.
        // ahead.crl is based on newer.crl (number 2): with it, it adds d-delta as delta.crl
        // does to base.crl. With base.crl (number 1) it says base.crl was superseded, so
        // base.crl vouches for nothing (strongSwan gives no status either); what the delta
        // lists stays refused.
        let t = with(&["newer.crl", "ahead.crl"], Revocation::Strict);
        t.verify_at(&leaf("d-ok"), &[], during).unwrap();
        assert!(revoked(t.verify_at(&leaf("d-base"), &[], during)));
        assert!(revoked(t.verify_at(&leaf("d-delta"), &[], during)));
        for order in [["base.crl", "ahead.crl"], ["ahead.crl", "base.crl"]] {
            let t = with(&order, Revocation::Strict);
            let r = t.verify_at(&leaf("d-ok"), &[], during);
            assert!(unknown(&r), "{r:?}");
            assert!(revoked(t.verify_at(&leaf("d-delta"), &[], during)));
            assert!(revoked(t.verify_at(&leaf("d-base"), &[], during)));
        }
        with(&["base.crl", "ahead.crl"], Revocation::Relaxed)
            .verify_at(&leaf("d-ok"), &[], during)
            .unwrap();
        // Both complete CRLs: the newer one covers the delta's base.
        with(&["base.crl", "newer.crl", "ahead.crl"], Revocation::Strict)
            .verify_at(&leaf("d-ok"), &[], during)
            .unwrap();
        let after = 1_799_971_200; // 2027-01-15: both past their next update
        let t = with(&["base.crl", "delta.crl"], Revocation::Strict);
        assert!(unknown(&t.verify_at(&leaf("d-ok"), &[], after)));
        assert!(revoked(t.verify_at(&leaf("d-delta"), &[], after)));

        // Fetching: the complete CRL configured, its delta point not asked yet. Without
        // network the complete CRL vouches, and a fetch is wanted (the daemon parks the
        // IKE_AUTH and fetches on another thread). The server holds each answer 200 ms.
        let (_, hits) = crl_server_with(29914, Duration::from_millis(200));
        let hits = || hits.load(Ordering::SeqCst);
        let fetching = |crls: &[&str]| with(crls, Revocation::Strict).with_crl_fetch(true);
        let t = fetching(&["base.crl"]);
        let cached = |t: &TrustAnchors, name: &str| {
            let mut wants = false;
            let r = t.verify_in(&leaf(name), &[], during, true, &mut wants);
            (r, wants)
        };
        let (r, wants) = cached(&t, "d-delta");
        assert!(r.is_ok() && wants, "{r:?} {wants}");
        assert_eq!(hits(), 0);
        // The fetch, by three checks at once (three IKE_AUTHs, each on its own thread): the
        // delta is fetched once and refuses d-delta for all three; then the cached check
        // knows without network.
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let r = t.verify_at(&leaf("d-delta"), &[], during);
                    assert!(matches!(r, Err(PkiError::Revoked(..))), "{r:?}");
                });
            }
        });
        assert_eq!(hits(), 1, "only the delta was fetched, once");
        let (r, wants) = cached(&t, "d-delta");
        assert!(!wants);
        assert!(revoked(r));
        let (r, wants) = cached(&t, "d-ok");
        assert!(r.is_ok() && !wants, "{r:?} {wants}");
        // Nothing configured: the complete CRL comes from the certificate's distribution
        // point, then its delta from the point the complete CRL names (cached already).
        let t = fetching(&[]);
        assert!(revoked(t.verify_at(&leaf("d-delta"), &[], during)));
        assert!(revoked(t.verify_at(&leaf("d-base"), &[], during)));
        t.verify_at(&leaf("d-ok"), &[], during).unwrap();
        assert_eq!(hits(), 2, "base.crl fetched once, delta.crl not again");
        // Fetching off: the delta point is not asked, the complete CRL stands alone.
        let before = hits();
        with(&["base.crl"], Revocation::Strict)
            .verify_at(&leaf("d-delta"), &[], during)
            .unwrap();
        assert_eq!(hits(), before);

        // A delta based on a newer complete CRL than the one configured (a CA published a
        // new base and its delta together; helper-52): the check without network asks for a
        // fetch; the fetch takes the newer complete CRL from the distribution point, and the
        // certificate passes; later checks find it in the cache without asking again.
        let t = fetching(&["base.crl", "ahead.crl"]);
        let (ok_der, base_der, ca_der) = (leaf("d-ok"), leaf("d-base"), cert("delta/ca.pem"));
        let (ok, revoked, ca) = (
            parse_cert(&ok_der).unwrap(),
            parse_cert(&base_der).unwrap(),
            parse_cert(&ca_der).unwrap(),
        );
        let src = Sources {
            crl: vec!["http://127.0.0.1:29914/delta/newer.crl".into()],
            ocsp: Vec::new(),
            named: true,
        };
        let check = |c: &X509Certificate<'_>, fetching: Fetching| {
            let mut wants = false;
            let r = t.check_revocation(c, &ca, during, &src, fetching, &mut wants);
            (r, wants)
        };
        let before = hits();
        let (r, wants) = check(&ok, Fetching::Cached);
        assert!(
            matches!(r, Err(PkiError::RevocationUnknown(..))) && wants,
            "{r:?} {wants}"
        );
        assert_eq!(hits(), before);
        let (r, _) = check(&ok, Fetching::Until(Instant::now() + CRL_FETCH_BUDGET));
        r.unwrap();
        assert_eq!(hits(), before + 1, "newer.crl fetched");
        let (r, wants) = check(&ok, Fetching::Cached);
        assert!(r.is_ok() && !wants, "{r:?} {wants}");
        let (r, _) = check(&revoked, Fetching::Cached);
        assert!(matches!(r, Err(PkiError::Revoked(..))), "{r:?}");
        assert_eq!(hits(), before + 1);
    }

    /// crl-ca.pem as the only anchor, strict, fetching CRLs, none configured.
    fn fetching_crl_ca() -> TrustAnchors {
        anchors(&["crl-ca.pem"])
            .with_crls(Vec::new(), Revocation::Strict)
            .unwrap()
            .with_crl_fetch(true)
    }

    /// Checks on several threads that need the same CRL at once (peers of one CA coming up
    /// together, each IKE_AUTH's fetch on a thread of its own) fetch it once: the others wait
    /// for that fetch and take what it stored.
    #[test]
    fn checks_that_need_the_same_crl_at_once_fetch_it_once() {
        use std::sync::atomic::Ordering;
        let (port, hits) = crl_server_with(0, Duration::from_millis(300));
        let ders = ["crl-ok.pem", "crl-bad.pem", "crl-ca.pem"].map(cert);
        let (ok, bad, ca) = (
            parse_cert(&ders[0]).unwrap(),
            parse_cert(&ders[1]).unwrap(),
            parse_cert(&ders[2]).unwrap(),
        );
        let during = 1_797_292_800;
        let t = fetching_crl_ca();
        let src = Sources {
            crl: vec![format!("http://127.0.0.1:{port}/crl.pem")],
            ocsp: Vec::new(),
            named: true,
        };
        let results: Vec<Result<(), PkiError>> = std::thread::scope(|s| {
            let checks: Vec<_> = [&ok, &bad, &ok, &bad]
                .into_iter()
                .map(|c| {
                    let (t, ca, src) = (&t, &ca, &src);
                    s.spawn(move || {
                        t.check_revocation_with(
                            c,
                            ca,
                            during,
                            src,
                            Instant::now() + CRL_FETCH_BUDGET,
                        )
                    })
                })
                .collect();
            checks.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{results:?}");
        for (i, r) in results.iter().enumerate() {
            if i % 2 == 0 {
                assert!(r.is_ok(), "{r:?}");
            } else {
                assert!(matches!(r, Err(PkiError::Revoked(..))), "{r:?}");
            }
        }
        // A fetch that fails leaves its waiters nothing, and is remembered once.
        let src = Sources {
            crl: vec![format!("http://127.0.0.1:{port}/missing.crl")],
            ..src
        };
        let before = hits.load(Ordering::SeqCst);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let r = t.check_revocation_with(
                        &ok,
                        &ca,
                        during,
                        &src,
                        Instant::now() + CRL_FETCH_BUDGET,
                    );
                    assert!(matches!(r, Err(PkiError::RevocationUnknown(..))), "{r:?}");
                });
            }
        });
        assert_eq!(hits.load(Ordering::SeqCst), before + 1);
    }

    /// A configured CRL's signature is verified once for each issuer key, not at every check
    /// (each IKE_AUTH's); one its issuer's key does not verify stays ignored, without being
    /// verified again.
    #[test]
    fn a_crl_is_verified_once_for_each_issuer_key() {
        let checks = || CRL_SIGNATURE_CHECKS.with(|n| n.get());
        let now = 1_796_515_200; // 2026-12-06
        let crls = |names: &[&str]| -> Vec<Vec<u8>> {
            names
                .iter()
                .flat_map(|n| load_crls(&data(n)).unwrap())
                .collect()
        };
        let t = anchors(&["crl-ca.pem"])
            .with_crls(crls(&["crl.pem"]), Revocation::Strict)
            .unwrap();
        let before = checks();
        for _ in 0..5 {
            t.verify_at(&cert("crl-ok.pem"), &[], now).unwrap();
            assert!(matches!(
                t.verify_at(&cert("crl-bad.pem"), &[], now),
                Err(PkiError::Revoked(..))
            ));
        }
        assert_eq!(checks() - before, 1);
        let t = anchors(&["crl-ca.pem"])
            .with_crls(crls(&["crl-forged.pem"]), Revocation::Strict)
            .unwrap();
        let before = checks();
        for _ in 0..5 {
            let r = t.verify_at(&cert("crl-ok.pem"), &[], now);
            assert!(matches!(r, Err(PkiError::RevocationUnknown(..))), "{r:?}");
        }
        assert_eq!(checks() - before, 1);
    }

    /// The fetch caches are bounded in bytes as well as entries: the oldest entries go until
    /// a new one fits.
    #[test]
    fn a_fetch_cache_is_bounded_in_bytes() {
        struct Sized(Instant, usize);
        impl Had for Sized {
            fn at(&self) -> Instant {
                self.0
            }
            fn bytes(&self) -> usize {
                self.1
            }
        }
        let cache: Mutex<HashMap<usize, Sized>> = Mutex::new(HashMap::new());
        let t0 = Instant::now();
        let at = |i: u64| t0 + Duration::from_millis(i);
        let mib = 1 << 20;
        for i in 0..8 {
            bounded_insert(&cache, i, Sized(at(i as u64), 8 * mib));
        }
        let total = |c: &HashMap<usize, Sized>| c.values().map(|v| v.1).sum::<usize>();
        assert_eq!(total(&cache.lock().unwrap()), CRL_CACHE_BYTES);
        // 20 MiB more: the three oldest go.
        bounded_insert(&cache, 100, Sized(at(100), 20 * mib));
        let c = cache.lock().unwrap();
        assert!(total(&c) <= CRL_CACHE_BYTES);
        assert_eq!(c.len(), 6);
        assert!((0..3).all(|i| !c.contains_key(&i)));
        assert!(c.contains_key(&3) && c.contains_key(&100));
        drop(c);
        // Replacing an entry counts it once.
        bounded_insert(&cache, 100, Sized(at(101), 20 * mib));
        assert_eq!(cache.lock().unwrap().len(), 6);
    }

    /// A full fetch cache drops what is older than a day, then its oldest entry, never
    /// everything (a check on another thread must find what it just fetched).
    #[test]
    fn a_full_fetch_cache_evicts_its_oldest_entry() {
        let cache: Mutex<HashMap<usize, Fetched>> = Mutex::new(HashMap::new());
        let t0 = Instant::now();
        for i in 0..CRL_CACHE_MAX {
            let at = t0 + Duration::from_millis(i as u64);
            bounded_insert(&cache, i, Fetched { crl: None, at });
        }
        let at = t0 + Duration::from_secs(1);
        bounded_insert(&cache, 9999, Fetched { crl: None, at });
        let c = cache.lock().unwrap();
        assert_eq!(c.len(), CRL_CACHE_MAX);
        assert!(!c.contains_key(&0), "the oldest went");
        assert!(c.contains_key(&1) && c.contains_key(&(CRL_CACHE_MAX - 1)));
        assert!(c.contains_key(&9999));
    }

    /// The check the daemon runs first (no network): it never fetches or asks, and says when
    /// a fetch could help; after a fetch (on another thread, in the daemon) it decides from
    /// what was fetched, and a point that failed is not wanted again during its back-off.
    #[test]
    fn cached_checks_never_fetch_and_say_when_a_fetch_could_help() {
        use std::sync::atomic::Ordering;
        let (port, hits) = crl_server();
        let hits = || hits.load(Ordering::SeqCst);
        let ders = ["crl-ok.pem", "crl-bad.pem", "crl-ca.pem"].map(cert);
        let (ok, bad, ca) = (
            parse_cert(&ders[0]).unwrap(),
            parse_cert(&ders[1]).unwrap(),
            parse_cert(&ders[2]).unwrap(),
        );
        let during = 1_797_292_800;
        let t = fetching_crl_ca();
        let src = |name: &str| Sources {
            crl: vec![format!("http://127.0.0.1:{port}/{name}")],
            ocsp: Vec::new(),
            named: true,
        };
        let cached = |c: &X509Certificate<'_>, name: &str| {
            let mut wants = false;
            let r = t.check_revocation(c, &ca, during, &src(name), Fetching::Cached, &mut wants);
            (r, wants)
        };
        let (r, wants) = cached(&ok, "crl.pem");
        assert!(matches!(r, Err(PkiError::RevocationUnknown(..))), "{r:?}");
        assert!(wants);
        assert_eq!(hits(), 0, "nothing fetched");
        // The fetch (what the daemon's thread does), then the same check decides.
        t.check_revocation_with(
            &ok,
            &ca,
            during,
            &src("crl.pem"),
            Instant::now() + CRL_FETCH_BUDGET,
        )
        .unwrap();
        assert_eq!(hits(), 1);
        assert!(matches!(cached(&ok, "crl.pem"), (Ok(()), false)));
        assert!(matches!(
            cached(&bad, "crl.pem"),
            (Err(PkiError::Revoked(..)), false)
        ));
        // A point that failed: wanted before, not during its back-off.
        assert!(matches!(cached(&ok, "missing.crl"), (Err(_), true)));
        let _ = t.check_revocation_with(
            &ok,
            &ca,
            during,
            &src("missing.crl"),
            Instant::now() + CRL_FETCH_BUDGET,
        );
        assert_eq!(hits(), 2);
        assert!(matches!(
            cached(&ok, "missing.crl"),
            (Err(PkiError::RevocationUnknown(..)), false)
        ));
        assert_eq!(hits(), 2);
        // The same through verify_cached on a whole chain: the anchor-signed leaf names no
        // point here, so with OCSP and fetching on there is nothing to want.
        let (r, wants) = t.verify_cached(&cert("crl-ok.pem"), &[]);
        assert!(matches!(r, Err(PkiError::RevocationUnknown(..))), "{r:?}");
        assert!(!wants);
        assert!(t.fetches());
        assert!(!anchors(&["crl-ca.pem"]).fetches());
    }

    /// OCSP answers OpenSSL's responder signed (tests/data/pki/ocsp/make.sh), served by a
    /// local HTTP server whatever the request (each answer is about one certificate).
    #[test]
    fn ocsp_answers_revoke_and_vouch_when_their_issuer_or_its_responder_signed() {
        use std::sync::atomic::Ordering;
        let (port, hits) = crl_server();
        let url = |name: &str| format!("http://127.0.0.1:{port}/ocsp/{name}");
        let hits = || hits.load(Ordering::SeqCst);
        let ders = ["ocsp/good.pem", "ocsp/revoked.pem", "ocsp/ca.pem"].map(cert);
        let (good, revoked, ca) = (
            parse_cert(&ders[0]).unwrap(),
            parse_cert(&ders[1]).unwrap(),
            parse_cert(&ders[2]).unwrap(),
        );
        // What the certificates name (OpenSSL's extensions).
        let of = Sources::of(&good);
        assert_eq!(of.ocsp, ["http://127.0.0.1:9/ocsp"]);
        assert_eq!(of.crl, ["http://127.0.0.1:9/ca.crl"]);
        assert!(of.named);
        // 2027-01-15: the answers are from 2026-12-04 with a next update a century on.
        let now = 1_800_000_000;
        let anchors_with = |mode| {
            anchors(&["ocsp/ca.pem"])
                .with_crls(Vec::new(), mode)
                .unwrap()
                .with_ocsp(true)
        };
        let src = |answer: &str| Sources {
            crl: Vec::new(),
            ocsp: vec![url(answer)],
            named: true,
        };
        let soon = || Instant::now() + CRL_FETCH_BUDGET;
        let strict = anchors_with(Revocation::Strict);
        // Without network, nothing asked yet: no status, and asking could give one.
        let mut wants = false;
        assert!(matches!(
            strict.check_revocation(
                &good,
                &ca,
                now,
                &src("resp-good.der"),
                Fetching::Cached,
                &mut wants
            ),
            Err(PkiError::RevocationUnknown(..))
        ));
        assert!(wants);
        assert_eq!(hits(), 0);
        strict
            .check_revocation_with(&good, &ca, now, &src("resp-good.der"), soon())
            .unwrap();
        assert_eq!(hits(), 1);
        // Now the answer had vouches without network.
        let mut wants = false;
        strict
            .check_revocation(
                &good,
                &ca,
                now,
                &src("resp-good.der"),
                Fetching::Cached,
                &mut wants,
            )
            .unwrap();
        assert!(!wants);
        assert_eq!(hits(), 1);
        // A responder not asked yet does not make a fetch wanted when another's cached
        // answer already vouches.
        let two = Sources {
            crl: Vec::new(),
            ocsp: vec![url("not-asked.der"), url("resp-good.der")],
            named: true,
        };
        let mut wants = false;
        strict
            .check_revocation(&good, &ca, now, &two, Fetching::Cached, &mut wants)
            .unwrap();
        assert!(!wants);
        assert_eq!(hits(), 1);
        // Kept until its next update: not asked again.
        strict
            .check_revocation_with(&good, &ca, now, &src("resp-good.der"), soon())
            .unwrap();
        assert_eq!(hits(), 1);
        // Revoked.
        match strict.check_revocation_with(&revoked, &ca, now, &src("resp-revoked.der"), soon()) {
            Err(PkiError::RevokedOcsp(subject, _, from)) => {
                assert_eq!(subject, "CN=ocsp-revoked.example");
                assert!(from.ends_with("resp-revoked.der"));
            }
            other => panic!("{other:?}"),
        }
        // A delegated responder (OCSPSigning, certified by the CA) is believed.
        strict
            .check_revocation_with(&good, &ca, now, &src("resp-good-delegated.der"), soon())
            .unwrap();
        // None of these vouches: an answer about another certificate, one signed by a key the
        // CA never certified for OCSP, one with another request's nonce. Each is asked once.
        let before = hits();
        for (cert, answer) in [
            (&good, "resp-revoked.der"),
            (&good, "resp-good-unauthorized.der"),
            (&good, "resp-good-nonce.der"),
        ] {
            for _ in 0..2 {
                assert!(
                    matches!(
                        strict.check_revocation_with(cert, &ca, now, &src(answer), soon()),
                        Err(PkiError::RevocationUnknown(..))
                    ),
                    "{answer}"
                );
            }
        }
        assert_eq!(hits(), before + 3);
        // Past the answer's next update it no longer counts (a URL not asked yet, so that
        // the answer itself is judged, not the cache).
        let body = std::fs::read(data("ocsp/resp-good.der")).unwrap();
        let next = ocsp::parse_response(&body).unwrap().singles[0]
            .next_update
            .unwrap();
        assert!(matches!(
            strict.check_revocation_with(&good, &ca, next + 1, &src("./resp-good.der"), soon()),
            Err(PkiError::RevocationUnknown(..))
        ));
        strict
            .check_revocation_with(&good, &ca, next, &src("././resp-good.der"), soon())
            .unwrap();
        // A revoked answer stays revoked when asked again, even past its dates.
        for at in [now, next + 1] {
            assert!(matches!(
                anchors_with(Revocation::Relaxed).check_revocation_with(
                    &revoked,
                    &ca,
                    at,
                    &src("resp-revoked.der"),
                    soon()
                ),
                Err(PkiError::RevokedOcsp(..))
            ));
        }
        // A delegated responder whose certificate a known CRL of the CA lists is not believed
        // (it has no id-pkix-ocsp-nocheck); nor is the same answer once that CRL is known.
        let with_crl = anchors(&["ocsp/ca.pem"])
            .with_crls(
                load_crls(&data("ocsp/crl-resp-revoked.pem")).unwrap(),
                Revocation::Relaxed,
            )
            .unwrap()
            .with_ocsp(true);
        assert!(!with_crl
            .ocsp_good(&good, &ca, now, &[url("./resp-good-delegated.der")], soon())
            .unwrap());
        assert!(with_crl
            .ocsp_good(&good, &ca, now, &[url("./././resp-good.der")], soon())
            .unwrap());
        // relaxed: a forged answer passes as no answer; ifuri: a certificate naming a
        // responder needs a good answer.
        anchors_with(Revocation::Relaxed)
            .check_revocation_with(&good, &ca, now, &src("resp-good-unauthorized.der"), soon())
            .unwrap();
        assert!(matches!(
            anchors_with(Revocation::IfUri).check_revocation_with(
                &good,
                &ca,
                now,
                &src("resp-good-unauthorized.der"),
                soon()
            ),
            Err(PkiError::RevocationUnknown(_, _, "ifuri"))
        ));
        // OCSP off: not asked.
        let before = hits();
        assert!(matches!(
            anchors(&["ocsp/ca.pem"])
                .with_crls(Vec::new(), Revocation::Strict)
                .unwrap()
                .check_revocation_with(&good, &ca, now, &src("resp-good.der"), soon()),
            Err(PkiError::RevocationUnknown(..))
        ));
        assert_eq!(hits(), before);
    }

    /// CRLs OpenSSL signed (tests/data/pki/make-crl.sh): crl.pem revokes crl-bad and is
    /// current from 2026-12-01 to 2027-01-01; crl-none.der (DER) revokes nothing; crl-forged.pem
    /// revokes crl-ok under the CA's name with another key; crl-idp.pem is partitioned;
    /// crl-nosign.pem comes from a CA without cRLSign.
    #[test]
    fn crls_revoke_what_their_issuer_signed() {
        let crl = |names: &[&str]| -> Vec<Vec<u8>> {
            names
                .iter()
                .flat_map(|n| load_crls(&data(n)).unwrap())
                .collect()
        };
        let with = |names: &[&str], mode| {
            anchors(&["crl-ca.pem"])
                .with_crls(crl(names), mode)
                .unwrap()
        };
        let (ok, bad) = (cert("crl-ok.pem"), cert("crl-bad.pem"));
        // 2026-12-15 and 2027-06-01.
        let (during, after) = (1_797_292_800, 1_811_808_000);
        let issuer = "C=CH, O=ferrogate test, CN=ferrogate CRL CA";
        for mode in [Revocation::Relaxed, Revocation::Strict] {
            let t = with(&["crl.pem"], mode);
            assert_eq!(t.verify_at(&ok, &[], during).unwrap(), issuer);
            match t.verify_at(&bad, &[], during) {
                Err(PkiError::Revoked(subject, serial, by)) => {
                    assert_eq!(subject, "C=CH, O=ferrogate test, CN=crl-bad.example");
                    assert_eq!(by, issuer);
                    assert!(!serial.is_empty());
                }
                other => panic!("{other:?}"),
            }
            // Once revoked, always: a CRL past its next update still refuses it.
            assert!(matches!(
                t.verify_at(&bad, &[], after),
                Err(PkiError::Revoked(..))
            ));
            // DER CRLs load too.
            let none = with(&["crl-none.der"], mode);
            none.verify_at(&bad, &[], during).unwrap();
        }
        // Without a current CRL: relaxed accepts, strict refuses.
        let relaxed = with(&["crl.pem"], Revocation::Relaxed);
        let strict = with(&["crl.pem"], Revocation::Strict);
        relaxed.verify_at(&ok, &[], after).unwrap();
        assert!(matches!(
            strict.verify_at(&ok, &[], after),
            Err(PkiError::RevocationUnknown(..))
        ));
        assert!(matches!(
            anchors(&["crl-ca.pem"])
                .with_crls(Vec::new(), Revocation::Strict)
                .unwrap()
                .verify_at(&ok, &[], during),
            Err(PkiError::RevocationUnknown(..))
        ));
        // A CRL the issuer did not sign neither revokes nor vouches.
        let forged = with(&["crl-forged.pem"], Revocation::Relaxed);
        forged.verify_at(&ok, &[], during).unwrap();
        assert!(matches!(
            with(&["crl-forged.pem"], Revocation::Strict).verify_at(&ok, &[], during),
            Err(PkiError::RevocationUnknown(..))
        ));
        // ...nor hides a real one.
        assert!(matches!(
            with(&["crl-forged.pem", "crl.pem"], Revocation::Strict).verify_at(&bad, &[], during),
            Err(PkiError::Revoked(..))
        ));
        // CRLs of other issuers are not looked at: gw-a (RSA CA) with crl.pem in strict mode.
        assert!(matches!(
            anchors(&["ca-rsa.pem"])
                .with_crls(crl(&["crl.pem"]), Revocation::Strict)
                .unwrap()
                .verify_at(&cert("gw-a.pem"), &[], during),
            Err(PkiError::RevocationUnknown(..))
        ));
        // A partitioned CRL (critical issuing distribution point) is not a complete list: it
        // does not vouch for a certificate.
        with(&["crl-idp.pem"], Revocation::Relaxed)
            .verify_at(&ok, &[], during)
            .unwrap();
        assert!(matches!(
            with(&["crl-idp.pem"], Revocation::Strict).verify_at(&ok, &[], during),
            Err(PkiError::RevocationUnknown(..))
        ));
        // A CA whose keyUsage lacks cRLSign cannot revoke (nor vouch), even with its own key.
        let nosign = |mode| {
            anchors(&["crl-nosign-ca.pem"])
                .with_crls(crl(&["crl-nosign.pem"]), mode)
                .unwrap()
                .verify_at(&cert("crl-nosign-leaf.pem"), &[], during)
        };
        nosign(Revocation::Relaxed).unwrap();
        assert!(matches!(
            nosign(Revocation::Strict),
            Err(PkiError::RevocationUnknown(..))
        ));
        // Not a CRL: a clear error.
        assert!(matches!(
            load_crls(&data("gw-a.pem")),
            Err(PkiError::BadCrl(_))
        ));
        assert!(matches!(
            load_crls(&data("msg.bin")),
            Err(PkiError::BadCrl(_))
        ));
    }

    /// RSASSA-PSS parameters other than the hash-length salt with MGF1 over the same hash are
    /// refused with a clear error, not misread.
    #[test]
    fn rsa_pss_parameters_are_checked() {
        let msg = std::fs::read(data("msg.bin")).unwrap();
        let sig = std::fs::read(data("msg.gw-a.pss.sig")).unwrap();
        let leaf = cert("gw-a.pem");
        let with = |alg: &[u8]| {
            let mut auth = vec![alg.len() as u8];
            auth.extend_from_slice(alg);
            auth.extend_from_slice(&sig);
            verify_auth(&leaf, method::DIGITAL_SIGNATURE, &auth, &msg)
        };
        with(ALG_RSA_PSS_SHA256).unwrap();
        // Salt 20 instead of 32 (the last byte), and MGF1 over SHA-1 (its hash OID's last
        // arc, 2.16.840.1.101.3.4.2.1, cannot become SHA-1: take the default parameters).
        let mut salt20 = ALG_RSA_PSS_SHA256.to_vec();
        *salt20.last_mut().unwrap() = 20;
        assert!(matches!(with(&salt20), Err(PkiError::Unsupported(e)) if e.contains("salt")));
        // Parameters absent: RFC 4055's defaults (SHA-1), which we do not take.
        let defaults = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30,
            0x00,
        ];
        assert!(matches!(with(&defaults), Err(PkiError::Unsupported(_))));
        // The log names the algorithm.
        let mut auth = vec![ALG_RSA_PSS_SHA256.len() as u8];
        auth.extend_from_slice(ALG_RSA_PSS_SHA256);
        assert_eq!(
            auth_algorithm(method::DIGITAL_SIGNATURE, &auth),
            "RSASSA-PSS"
        );
        assert_eq!(
            auth_algorithm(method::DIGITAL_SIGNATURE, &[200, 1]),
            "malformed"
        );
        assert_eq!(auth_algorithm(method::ECDSA_256, &[]), "AUTH method 9");
        // A PSS signature is not a PKCS#1 v1.5 one.
        assert_eq!(with(ALG_SHA256_RSA), Err(PkiError::BadSignature));
        // Nor valid for an ECDSA key.
        let mut auth = vec![ALG_RSA_PSS_SHA256.len() as u8];
        auth.extend_from_slice(ALG_RSA_PSS_SHA256);
        auth.extend_from_slice(&sig);
        assert!(verify_auth(&cert("gw-b.pem"), method::DIGITAL_SIGNATURE, &auth, &msg).is_err());
    }

    #[test]
    fn certreq_is_sha1_of_each_spki() {
        use sha1::Digest;
        let both = anchors(&["ca-rsa.pem", "ca-ec.pem"]);
        let r = both.certreq();
        assert_eq!(r.len(), 40);
        let c = cert("ca-ec.pem");
        let parsed = parse_cert(&c).unwrap();
        assert_eq!(&r[20..], &sha1::Sha1::digest(parsed.public_key().raw)[..]);
    }

    #[test]
    fn identities_confirmed_by_certificates() {
        let a = cert("gw-a.pem");
        let c = cred("gw-a");
        assert!(id_confirmed_by_cert(&a, 9, &c.subject_der));
        assert!(id_confirmed_by_cert(&a, 2, b"GW-A.example"));
        assert!(id_confirmed_by_cert(&a, 1, &[192, 0, 2, 1]));
        assert!(id_confirmed_by_cert(&a, 3, b"vpn@gw-a.example"));
        assert!(!id_confirmed_by_cert(&a, 2, b"gw-b.example"));
        assert!(!id_confirmed_by_cert(&a, 1, &[192, 0, 2, 2]));
        assert!(!id_confirmed_by_cert(&a, 9, &cred("gw-b").subject_der));
        assert!(!id_confirmed_by_cert(&a, 9, b"\x30\x03garbage"));
        // An ID DN is compared for equality, not as a pattern: `CN=*`, or a value holding the
        // separator, names nothing but itself.
        let dn = |attrs: &[(&[u8], &str)]| -> Vec<u8> {
            let tlv = |t: u8, v: &[u8]| [&[t, v.len() as u8][..], v].concat();
            let sets: Vec<u8> = attrs
                .iter()
                .flat_map(|(oid, v)| {
                    tlv(
                        0x31,
                        &tlv(0x30, &[tlv(0x06, oid), tlv(0x0c, v.as_bytes())].concat()),
                    )
                })
                .collect();
            tlv(0x30, &sets)
        };
        let (cc, o, cn): (&[u8], &[u8], &[u8]) = (&[85, 4, 6], &[85, 4, 10], &[85, 4, 3]);
        let same = dn(&[(cc, "CH"), (o, "Ferrogate TEST"), (cn, "gw-a.example")]);
        assert!(id_confirmed_by_cert(&a, 9, &same));
        let star = dn(&[(cc, "CH"), (o, "ferrogate test"), (cn, "*")]);
        assert!(!id_confirmed_by_cert(&a, 9, &star));
        let comma = dn(&[(cc, "CH"), (o, "ferrogate test, CN=gw-a.example")]);
        assert!(!id_confirmed_by_cert(&a, 9, &comma));
        assert_eq!(
            cert_identities(&a),
            [
                "C=CH, O=ferrogate test, CN=gw-a.example",
                "gw-a.example",
                "192.0.2.1",
                "vpn@gw-a.example"
            ]
        );
    }

    #[test]
    fn dn_patterns_like_strongswan() {
        let der = cred("gw-a").subject_der;
        assert!(dn_matches("C=CH, O=ferrogate test, CN=gw-a.example", &der));
        assert!(dn_matches("c=ch,o=Ferrogate Test,cn=GW-A.example", &der));
        assert!(dn_matches("/C=CH/O=ferrogate test/CN=gw-a.example", &der));
        assert!(dn_matches("C=CH, O=ferrogate test, CN=*", &der));
        assert!(!dn_matches("C=CH, O=ferrogate test, CN=gw-b.example", &der));
        assert!(!dn_matches("C=CH, O=ferrogate test", &der));
        assert!(!dn_matches("CN=gw-a.example, O=ferrogate test, C=CH", &der));
        assert!(!dn_matches("not a dn", &der));
        assert_eq!(
            dn_der_to_string(&der).as_deref(),
            Some("C=CH, O=ferrogate test, CN=gw-a.example")
        );
        assert_eq!(dn_der_to_string(b"\x30\x01"), None);
    }

    #[test]
    fn hash_notify_round_trip() {
        assert_eq!(parse_hashes(&supported_hashes()), ALL);
        assert_eq!(parse_hashes(&[0, 2, 0]), [2]);
    }
}
