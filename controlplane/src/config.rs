//! `ferrogate-ike` configuration in YAML: tunnels written the way a strongSwan user thinks of
//! them (swanctl.conf / ipsec.conf), with proposals in strongSwan notation.
//!
//! ```yaml
//! tunnels:
//!   - name: site-to-site
//!     local: 203.0.113.1            # our outer address
//!     remote: 203.0.113.2           # the peer's outer address
//!     local_id: 203.0.113.1         # default: the local address, or the certificate's
//!                                   #   subject (IP, FQDN, user@fqdn, DN)
//!     remote_id: 203.0.113.2        # default: the remote address (%any with certificates)
//!     psk: "a long random secret"   # or psk_file: /etc/ferrogate/site.psk
//!     # or certificates (RFC 7427 signatures; RSA, ECDSA P-256/P-384, Ed25519):
//!     # auth: pubkey
//!     # cert: gw-a.pem              # ours, PEM (intermediates may follow) or DER
//!     # key: gw-a.key               # PKCS#8, SEC1 or PKCS#1; PEM or DER; unencrypted
//!     # cacerts: [ca.pem]           # trust anchors for the peer's certificate
//!     # crls: [ca.crl]              # CRLs (PEM or DER): a certificate of the peer's chain that
//!     #                             #   its issuer's CRL lists is refused (RFC 5280 §6.3)
//!     # revocation: relaxed         # relaxed | ifuri | strict (strict: no current CRL of an
//!     #                             #   issuer in the chain, no tunnel; ifuri: the same for a
//!     #                             #   certificate that names a CRL distribution point), as
//!     #                             #   strongSwan's `revocation`
//!     # crl_fetch: yes              # fetch CRLs from the http:// distribution points that
//!     #                             #   certificates name when no configured CRL is current,
//!     #                             #   and the delta CRLs complete CRLs point to
//!     # ocsp: yes                   # ask the http:// OCSP responders certificates name first
//!     # rsa_pss: no                 # an RSA key signs with RSASSA-PSS (charon.rsa_pss); PSS
//!     #                             #   signatures and certificates are verified either way
//!     ike_proposals: [aes256-sha256-modp1024]
//!     ike_lifetime: 1h              # rekey the IKE SA after this (swanctl's rekey_time;
//!     #                             #   default 1h, or 0 = never when reauth_time is set)
//!     # reauth_time: 0s             # make the IKE SA anew after this, authenticating again
//!     #                             #   (strongSwan's reauth_time; ipsec.conf reauth=yes):
//!     #                             #   make-before-break; 0 = never, rekeys only
//!     # over_time: 6m               # hard limit: an IKE SA not rekeyed or reauthenticated
//!     #                             #   this long after it should have been is deleted (and
//!     #                             #   made anew with `start: start`); default 10% of the
//!     #                             #   larger of the two times, 0 = never
//!     # rand_time: 6m               # rekey / reauthenticate up to this much early (at
//!     #                             #   random), so that both ends rarely start at once;
//!     #                             #   default over_time, at most half the shorter time
//!     dpd: { delay: 30s, timeout: 120s, action: restart }   # restart | clear | hold (trap)
//!     fragmentation: yes            # IKE fragmentation (RFC 7383) when the peer supports it
//!     fragment_size: 1280           # largest IP datagram of a fragment (charon.fragment_size)
//!     start: start                  # start (auto=start) | trap (on demand) | none (wait)
//!     keyingtries: 0                # 0 = forever
//!     children:
//!       - name: net
//!         local_ts: [192.168.10.0/24]
//!         remote_ts: [192.168.20.0/24]
//!         esp_proposals: [aes256-sha256]    # add a DH group for PFS: aes256-sha256-modp2048
//!         lifetime: 8h              # rekey the CHILD_SA after this (swanctl's rekey_time),
//!                                   #   up to 10% early at random, never before
//!                                   #   2 x lifetime - life_time
//!         # life_time: 8h48m        # hard limit (default 110% of lifetime; alone, it sets
//!                                   #   lifetime to life_time / 1.1)
//!         rekey_bytes: 0            # and after this many bytes / packets (0 = no limit);
//!         rekey_packets: 0          #   the data plane stops at 110% (hard limit)
//!         life_bytes: 0             # that hard limit instead (strongSwan's life_bytes /
//!         life_packets: 0           #   life_packets): leave room to rekey at line rate;
//!                                   #   alone, it sets the rekey limit to life / 1.1
//!         mode: tunnel              # tunnel | transport
//!         per_cpu_sas: no           # RFC 9611: a CHILD_SA per data-plane worker besides
//!                                   #   the first (strongSwan's per_cpu_sas)
//! ha:                               # SA-state sync with the other gateway of a VRRP pair
//!   local: 10.99.0.1:4510           # our end of a link of their own (a kernel UDP socket)
//!   remote: 10.99.0.2:4510
//!   secret: "long random secret"    # or secret_file: (16 bytes or more; keys the sync)
//! ```
//!
//! Unknown keys are errors. Errors name the file, and the line and column (YAML errors) or the
//! tunnel (errors in the values).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dataplane::net::IpPrefix;
use zeroize::Zeroizing;

use std::sync::Arc;

use crate::ike::pki;
use crate::ike::proposal::AlgSet;

/// A configuration error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Malformed YAML or schema mismatch.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Line (1-based, 0 if unknown).
        line: usize,
        /// Column.
        column: usize,
        /// What was expected.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}: tunnel `{tunnel}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The tunnel.
        tunnel: String,
        /// What is wrong.
        message: String,
    },
}

/// What to do when DPD declares the peer dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DpdAction {
    /// Re-initiate the tunnel.
    Restart,
    /// Remove the tunnel.
    Clear,
    /// Remove it and wait for traffic to bring it up again.
    Hold,
}

/// When a tunnel comes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartAction {
    /// Initiate at start-up (and keep trying).
    Start,
    /// Initiate when traffic needs it (acquire from the data plane).
    Trap,
    /// Only respond.
    None,
}

/// Dead peer detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dpd {
    /// Idle time before a liveness check.
    pub delay: Duration,
    /// Give up after this long without an answer.
    pub timeout: Duration,
    /// What then.
    pub action: DpdAction,
}

/// One CHILD_SA's configuration.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// Name.
    pub name: String,
    /// Our protected subnets.
    pub local_ts: Vec<IpPrefix>,
    /// The peer's protected subnets.
    pub remote_ts: Vec<IpPrefix>,
    /// ESP proposals.
    pub esp_proposals: Vec<AlgSet>,
    /// Rekey after this long.
    pub lifetime: Duration,
    /// A CHILD_SA not rekeyed by this age is deleted (and made anew): strongSwan's
    /// `life_time`, by default 110% of `lifetime`. Without it, a CHILD_SA whose rekeys the
    /// peer keeps refusing would carry traffic under the same keys for ever.
    pub life_time: Duration,
    /// Rekey after this many bytes in either direction (0: no limit; strongSwan's
    /// `rekey_bytes`). The data plane refuses traffic at 110% of it (hard limit).
    pub rekey_bytes: u64,
    /// Rekey after this many packets (0: no limit; `rekey_packets`).
    pub rekey_packets: u64,
    /// The data plane refuses traffic on the CHILD_SA after this many bytes (0: no limit;
    /// `life_bytes`, by default 110% of `rekey_bytes`).
    pub life_bytes: u64,
    /// The same for packets (`life_packets`, by default 110% of `rekey_packets`).
    pub life_packets: u64,
    /// Tunnel or transport.
    pub mode: dataplane::sa::Mode,
    /// Per-resource CHILD_SAs (RFC 9611, strongSwan's `per_cpu_sas`): the first CHILD_SA
    /// (the fallback) says SA_RESOURCE_INFO, and if the peer says it too, one more CHILD_SA
    /// with the same selectors is made for each data-plane worker, which seals its share of
    /// the child's traffic with it (its own sequence numbers: no hand-off to one worker).
    /// The peer's per-resource CHILD_SAs are answered with SA_RESOURCE_INFO and given to a
    /// worker that has none yet. Without it a peer's SA_RESOURCE_INFO goes unanswered, and
    /// its CHILD_SAs are ordinary ones (RFC 9611 §4).
    pub per_cpu_sas: bool,
}

/// One tunnel (an IKE SA's configuration).
#[derive(Clone)]
pub struct TunnelConfig {
    /// Name.
    pub name: String,
    /// Our address.
    pub local: IpAddr,
    /// The peer's address.
    pub remote: IpAddr,
    /// Our identity.
    pub local_id: Identity,
    /// The identity we expect from the peer.
    pub remote_id: Identity,
    /// How both sides authenticate.
    pub auth: Auth,
    /// IKE proposals.
    pub ike_proposals: Vec<AlgSet>,
    /// IKE SA rekey time (swanctl's `rekey_time`). Zero: never (reauthentication only, or
    /// neither).
    pub ike_lifetime: Duration,
    /// Reauthentication time (strongSwan's `reauth_time`): an IKE SA this old is replaced by
    /// a new one, set up and authenticated from scratch, with its CHILD_SAs, before the old
    /// one is deleted (RFC 7296 §2.8.3, make-before-break). Zero: never (rekeys only).
    pub reauth_time: Duration,
    /// Hard IKE SA lifetime beyond its rekey or its reauthentication, whichever is missed first (swanctl's
    /// `over_time`); None: [`TunnelConfig::ike_over_time`]'s default.
    pub over_time: Option<Duration>,
    /// How much earlier than `ike_lifetime` / `reauth_time` they may come, at random
    /// (swanctl's `rand_time`); None: [`TunnelConfig::ike_rand_time`]'s default.
    pub rand_time: Option<Duration>,
    /// DPD.
    pub dpd: Dpd,
    /// IKE fragmentation (RFC 7383): announce support and fragment large messages when the
    /// peer supports it too (strongSwan's `fragmentation = yes`).
    pub fragmentation: bool,
    /// Largest IP datagram (IP and UDP headers included) an IKE fragment may make
    /// (strongSwan's `charon.fragment_size`). A request that goes unanswered, or a response
    /// whose request keeps coming back, is cut smaller (RFC 7383 §2.5.2; see
    /// `ike::frag::smaller_datagram`).
    pub fragment_size: usize,
    /// Start action.
    pub start: StartAction,
    /// Initiation attempts (0 = forever).
    pub keyingtries: u32,
    /// CHILD_SAs.
    pub children: Vec<ChildConfig>,
}

impl TunnelConfig {
    /// An IKE SA not rekeyed, or not reauthenticated, this long after that was
    /// due is deleted (swanctl's `over_time`; by default 10% of the larger time, but at least
    /// [`OVER_TIME_MIN`]; zero: never). Without it, a peer that refused every rekey kept an
    /// IKE SA, and its keys, for ever.
    pub fn ike_over_time(&self) -> Duration {
        self.over_time.unwrap_or_else(|| {
            let tenth = self.ike_lifetime.max(self.reauth_time) / 10;
            if tenth.is_zero() {
                tenth
            } else {
                tenth.max(OVER_TIME_MIN)
            }
        })
    }

    /// The IKE SA's rekey and reauthentication come up to this much early, at random
    /// (swanctl's `rand_time`; by default `over_time` (as given, or 10% of the larger time),
    /// at most half of the shorter of the two times that are set).
    pub fn ike_rand_time(&self) -> Duration {
        self.rand_time.unwrap_or_else(|| {
            let times = [self.ike_lifetime, self.reauth_time];
            let shortest = times.into_iter().filter(|t| !t.is_zero()).min();
            let over = self
                .over_time
                .unwrap_or_else(|| self.ike_lifetime.max(self.reauth_time) / 10);
            over.min(shortest.unwrap_or_default() / 2)
        })
    }
}

impl ChildConfig {
    /// A CHILD_SA is rekeyed up to this much before `lifetime`, at random: 10% of it, or
    /// less when `life_time` is closer (swanctl's default `rand_time` is the gap between the
    /// two): ipsec.conf's lifetime=8h with margintime=9m and rekeyfuzz=100% is lifetime
    /// 7h51m, life_time 8h.
    pub fn rand_time(&self) -> Duration {
        (self.lifetime / 10).min(self.life_time.saturating_sub(self.lifetime))
    }
}

impl std::fmt::Debug for TunnelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelConfig")
            .field("name", &self.name)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

/// Authentication (the same method both ways).
#[derive(Clone)]
pub enum Auth {
    /// Pre-shared key.
    Psk(Zeroizing<Vec<u8>>),
    /// X.509 certificates and signatures.
    Pubkey(Arc<PubkeyAuth>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Psk(_) => f.write_str("Psk(..)"),
            Auth::Pubkey(p) => f.debug_tuple("Pubkey").field(p).finish(),
        }
    }
}

/// Certificate authentication: our credential and the CAs we trust for the peer's.
#[derive(Debug)]
pub struct PubkeyAuth {
    /// Our certificate and key.
    pub cred: pki::Credential,
    /// Trust anchors.
    pub cas: pki::TrustAnchors,
}

impl Auth {
    /// A digest that changes when the credentials do (for `reload`).
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        match self {
            Auth::Psk(p) => {
                h.update(b"psk");
                h.update(&**p);
            }
            Auth::Pubkey(p) => {
                h.update(b"pubkey");
                h.update(&p.cred.cert);
                for c in p.cred.chain.iter().chain(p.cas.ders()) {
                    h.update(c);
                }
                // A new CRL re-authenticates the tunnel's peer on reload.
                let (crls, mode, fetch, ocsp) = p.cas.crls();
                h.update(format!("crls {} {mode:?} {fetch} {ocsp}", crls.len()));
                for c in crls {
                    h.update(c);
                }
                h.update(p.cred.key_fingerprint());
                h.update([u8::from(p.cred.rsa_pss())]);
            }
        }
        format!("{:x}", h.finalize())
    }
}

impl TunnelConfig {
    /// Our ID payload's type and data.
    pub fn local_id_payload(&self) -> (u8, Vec<u8>) {
        match (&self.local_id, &self.auth) {
            (Identity::Dn(_), Auth::Pubkey(p)) => (9, p.cred.subject_der.clone()),
            (id, _) => id.encode().unwrap_or((9, Vec::new())),
        }
    }
}

/// An IKE identity (RFC 7296 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// ID_IPV4_ADDR / ID_IPV6_ADDR.
    Addr(IpAddr),
    /// ID_FQDN.
    Fqdn(String),
    /// ID_RFC822_ADDR.
    Email(String),
    /// ID_DER_ASN1_DN, written `C=CH, O=..., CN=...` (a `*` value matches any).
    Dn(String),
    /// Any identity (`%any`) the peer's certificate confirms.
    Any,
}

impl Identity {
    /// Parses `1.2.3.4`, `fqdn` (`@fqdn` too, like strongSwan), `user@fqdn`, a DN
    /// (`C=CH, O=Example, CN=gw`) or `%any`.
    pub fn parse(s: &str) -> Identity {
        if let Ok(a) = s.parse() {
            return Identity::Addr(a);
        }
        if s == "%any" {
            return Identity::Any;
        }
        if s.contains('=') && pki::parse_dn(s).is_some() {
            return Identity::Dn(s.to_string());
        }
        if let Some(f) = s.strip_prefix('@') {
            return Identity::Fqdn(f.to_string());
        }
        if s.contains('@') {
            return Identity::Email(s.to_string());
        }
        Identity::Fqdn(s.to_string())
    }
    /// Why this identity, as written, names nothing a peer could send or match: an empty FQDN
    /// (`""`, `"@"`), an email address without a user or a domain, or something with a `=`
    /// that is no DN (strongSwan would take it for an FQDN, which no certificate holds).
    fn check(&self, written: &str) -> Result<(), String> {
        match self {
            Identity::Fqdn(f) if f.is_empty() => Err(format!("`{written}` is an empty FQDN")),
            Identity::Fqdn(f) if f.contains('=') => Err(format!(
                "`{written}` is no DN (write `C=CH, O=Example, CN=gw`, each part type=value)"
            )),
            Identity::Email(e)
                if e.split_once('@')
                    .is_some_and(|(u, d)| u.is_empty() || d.is_empty()) =>
            {
                Err(format!(
                    "`{written}` is an email address without a user or a domain"
                ))
            }
            _ => Ok(()),
        }
    }

    /// ID type and data (None for a DN pattern or `%any`, which we do not send as IDr).
    pub fn encode(&self) -> Option<(u8, Vec<u8>)> {
        Some(match self {
            Identity::Addr(IpAddr::V4(a)) => (1, a.octets().to_vec()),
            Identity::Addr(IpAddr::V6(a)) => (5, a.octets().to_vec()),
            Identity::Fqdn(s) => (2, s.as_bytes().to_vec()),
            Identity::Email(s) => (3, s.as_bytes().to_vec()),
            Identity::Dn(_) | Identity::Any => return None,
        })
    }
    /// Does a received ID payload name this identity?
    pub fn matches(&self, id_type: u8, data: &[u8]) -> bool {
        match self {
            Identity::Any => true,
            Identity::Dn(p) => id_type == 9 && pki::dn_matches(p, data),
            id => id.encode().is_some_and(|(t, d)| t == id_type && d == data),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Addr(a) => write!(f, "{a}"),
            Identity::Fqdn(s) | Identity::Email(s) | Identity::Dn(s) => f.write_str(s),
            Identity::Any => f.write_str("%any"),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tunnels.
    pub tunnels: Vec<TunnelConfig>,
    /// State sync with the other gateway of a VRRP pair.
    pub ha: Option<HaConfig>,
    /// Warnings to log (weak groups and the like).
    pub warnings: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tunnels: Vec<RawTunnel>,
    #[serde(default)]
    ha: Option<RawHa>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHa {
    local: SocketAddr,
    remote: SocketAddr,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
}

/// SA-state sync between the two gateways of a VRRP pair (`ha:`): the master sends its
/// CHILD_SAs and their sequence numbers over UDP on a link of their own, sealed with a key
/// derived from the shared secret; a backup that takes over installs them at once.
#[derive(Clone)]
pub struct HaConfig {
    /// Our end of the sync link (a kernel UDP socket).
    pub local: SocketAddr,
    /// The other gateway's end.
    pub remote: SocketAddr,
    /// The AES-256-GCM key of the sync messages (HMAC-SHA-256 of the secret).
    pub key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for HaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaConfig")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDpd {
    #[serde(default = "d30s")]
    delay: String,
    #[serde(default = "d120s")]
    timeout: String,
    #[serde(default = "restart")]
    action: DpdAction,
}

fn d30s() -> String {
    "30s".into()
}
fn d120s() -> String {
    "120s".into()
}
fn restart() -> DpdAction {
    DpdAction::Restart
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    name: String,
    local: IpAddr,
    remote: IpAddr,
    #[serde(default)]
    local_id: Option<String>,
    #[serde(default)]
    remote_id: Option<String>,
    #[serde(default)]
    psk: Option<String>,
    #[serde(default)]
    psk_file: Option<PathBuf>,
    #[serde(default)]
    auth: Option<AuthKind>,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
    #[serde(default)]
    cacerts: Vec<PathBuf>,
    #[serde(default)]
    crls: Vec<PathBuf>,
    #[serde(default)]
    revocation: Option<RevocationMode>,
    #[serde(default)]
    crl_fetch: Option<YesNo>,
    #[serde(default)]
    ocsp: Option<YesNo>,
    #[serde(default)]
    rsa_pss: Option<YesNo>,
    #[serde(default)]
    ike_proposals: Vec<String>,
    #[serde(default)]
    ike_lifetime: Option<String>,
    #[serde(default)]
    reauth_time: Option<String>,
    #[serde(default)]
    over_time: Option<String>,
    #[serde(default)]
    rand_time: Option<String>,
    #[serde(default)]
    dpd: Option<RawDpd>,
    #[serde(default)]
    fragmentation: Option<YesNo>,
    #[serde(default)]
    fragment_size: Option<usize>,
    #[serde(default = "start_none")]
    start: StartAction,
    #[serde(default)]
    keyingtries: u32,
    children: Vec<RawChild>,
}

/// strongSwan's `revocation`.
#[derive(serde::Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RevocationMode {
    Relaxed,
    Ifuri,
    Strict,
}

#[derive(serde::Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum AuthKind {
    Psk,
    Pubkey,
}

/// `yes`/`no` as strongSwan writes them (YAML 1.2 reads them as strings), or a YAML boolean;
/// anything else is an error at its line and column (as the gateway's file has it).
struct YesNo(bool);

impl<'de> serde::Deserialize<'de> for YesNo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        dataplane::config::yes_no(d).map(YesNo)
    }
}

/// The smallest `fragment_size`: IPv6 and UDP headers, the non-ESP marker, the IKE and SKF
/// headers, the largest IV, ICV and padding still leave room for about 100 bytes of payload.
pub const MIN_FRAGMENT_SIZE: usize = 256;

/// The shortest default `over_time`: a refused IKE SA rekey is tried again after 10 s, and an
/// unanswered one sent again for ~45 s, before the IKE SA should be given up.
pub const OVER_TIME_MIN: Duration = Duration::from_secs(60);

/// The shortest `dpd.timeout`: the first retransmission timeout of a request (before the
/// round trip is measured).
pub const DPD_TIMEOUT_MIN: Duration = Duration::from_secs(2);

fn start_none() -> StartAction {
    StartAction::None
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChild {
    name: String,
    local_ts: Vec<IpPrefix>,
    remote_ts: Vec<IpPrefix>,
    #[serde(default)]
    esp_proposals: Vec<String>,
    #[serde(default)]
    lifetime: Option<String>,
    #[serde(default)]
    life_time: Option<String>,
    #[serde(default)]
    rekey_bytes: Option<u64>,
    #[serde(default)]
    rekey_packets: Option<u64>,
    #[serde(default)]
    life_bytes: Option<u64>,
    #[serde(default)]
    life_packets: Option<u64>,
    #[serde(default = "tunnel")]
    mode: dataplane::sa::Mode,
    #[serde(default)]
    per_cpu_sas: Option<YesNo>,
}

fn tunnel() -> dataplane::sa::Mode {
    dataplane::sa::Mode::Tunnel
}

pub use dataplane::config::parse_duration;

/// A secret given inline (`NAME: ...`) or in a file (`NAME_file:`, resolved by the caller;
/// one line ending is dropped): exactly one of the two.
fn secret(
    inline: &Option<String>,
    file: &Option<PathBuf>,
    name: &str,
) -> Result<Zeroizing<Vec<u8>>, String> {
    match (inline, file) {
        (Some(s), None) => Ok(Zeroizing::new(s.as_bytes().to_vec())),
        (None, Some(f)) => {
            let s = Zeroizing::new(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("{name}_file {}: {e}", f.display()))?,
            );
            Ok(Zeroizing::new(
                s.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
            ))
        }
        _ => Err(format!("give exactly one of {name} or {name}_file")),
    }
}

impl Config {
    /// Loads a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.into(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses YAML text; `path` names it in errors and anchors relative `psk_file`s.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawFile = serde_yaml::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            ConfigError::Syntax {
                path: path.into(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        let mut warnings = Vec::new();
        let mut tunnels = Vec::new();
        for t in raw.tunnels {
            let inv = |m: String| ConfigError::Invalid {
                path: path.into(),
                tunnel: t.name.clone(),
                message: m,
            };
            let rel = |f: &Path| path.parent().unwrap_or(Path::new(".")).join(f);
            let kind = t.auth.unwrap_or(if t.cert.is_some() {
                AuthKind::Pubkey
            } else {
                AuthKind::Psk
            });
            let auth = match kind {
                AuthKind::Psk => {
                    if t.cert.is_some()
                        || t.key.is_some()
                        || !t.cacerts.is_empty()
                        || !t.crls.is_empty()
                        || t.revocation.is_some()
                        || t.crl_fetch.is_some()
                        || t.ocsp.is_some()
                        || t.rsa_pss.is_some()
                    {
                        return Err(inv(
                            "cert, key, cacerts, crls, revocation, crl_fetch, ocsp and rsa_pss belong to `auth: pubkey`"
                                .into(),
                        ));
                    }
                    let psk =
                        secret(&t.psk, &t.psk_file.as_deref().map(rel), "psk").map_err(inv)?;
                    if psk.is_empty() {
                        return Err(inv(
                            "the PSK is empty (an empty psk_file, or psk: \"\")".into()
                        ));
                    }
                    if psk.len() < 8 {
                        warnings.push(format!(
                            "tunnel `{}`: the PSK is shorter than 8 bytes",
                            t.name
                        ));
                    }
                    Auth::Psk(psk)
                }
                AuthKind::Pubkey => {
                    if t.psk.is_some() || t.psk_file.is_some() {
                        return Err(inv("psk and psk_file belong to `auth: psk`".into()));
                    }
                    let (Some(c), Some(k)) = (&t.cert, &t.key) else {
                        return Err(inv("`auth: pubkey` needs cert and key".into()));
                    };
                    if t.cacerts.is_empty() {
                        return Err(inv(
                            "`auth: pubkey` needs cacerts (the CAs that issue the peer's certificate)"
                                .into(),
                        ));
                    }
                    let pss = t.rsa_pss.as_ref().is_some_and(|v| v.0);
                    let cred = pki::Credential::load(&rel(c), &rel(k))
                        .map_err(|e| inv(format!("cert/key: {e}")))?
                        .with_rsa_pss(pss);
                    let paths: Vec<PathBuf> = t.cacerts.iter().map(|p| rel(p)).collect();
                    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
                    let cas =
                        pki::TrustAnchors::load(&refs).map_err(|e| inv(format!("cacerts: {e}")))?;
                    let mut crls = Vec::new();
                    for p in &t.crls {
                        crls.extend(
                            pki::load_crls(&rel(p)).map_err(|e| inv(format!("crls: {e}")))?,
                        );
                    }
                    let mode = match t.revocation {
                        Some(RevocationMode::Strict) => pki::Revocation::Strict,
                        Some(RevocationMode::Ifuri) => pki::Revocation::IfUri,
                        Some(RevocationMode::Relaxed) | None => pki::Revocation::Relaxed,
                    };
                    let fetch = t.crl_fetch.as_ref().is_none_or(|v| v.0);
                    let ocsp = t.ocsp.as_ref().is_none_or(|v| v.0);
                    let cas = cas
                        .with_crls(crls, mode)
                        .map_err(|e| inv(format!("crls: {e}")))?
                        .with_crl_fetch(fetch)
                        .with_ocsp(ocsp);
                    Auth::Pubkey(Arc::new(PubkeyAuth { cred, cas }))
                }
            };
            let ike_src = if t.ike_proposals.is_empty() {
                vec![
                    "aes256gcm16-prfsha256-curve25519".to_string(),
                    "aes256-sha256-modp2048".to_string(),
                ]
            } else {
                t.ike_proposals.clone()
            };
            let mut ike_proposals = Vec::new();
            for p in &ike_src {
                let a = AlgSet::parse(p, true).map_err(|e| inv(e.to_string()))?;
                if a.dh.iter().any(|g| g.is_weak()) {
                    warnings.push(format!(
                        "tunnel `{}`: IKE proposal `{p}` uses modp1024, a weak group (RFC 8247 says SHOULD NOT); \
                         accepted for compatibility",
                        t.name
                    ));
                }
                ike_proposals.push(a);
            }
            let dur =
                |s: &Option<String>, default: u64, what: &str| -> Result<Duration, ConfigError> {
                    match s {
                        None => Ok(Duration::from_secs(default)),
                        Some(s) => match parse_duration(s) {
                            Some(d)
                                if d.is_zero()
                                    && !matches!(
                                        what,
                                        "dpd.delay"
                                            | "reauth_time"
                                            | "ike_lifetime"
                                            | "over_time"
                                            | "rand_time"
                                    ) =>
                            {
                                Err(inv(format!("{what}: must be above 0")))
                            }
                            Some(d) => Ok(d),
                            None => Err(inv(format!(
                                "{what}: `{s}` is not a duration (e.g. 30s, 1h; at most 3650d)"
                            ))),
                        },
                    }
                };
            let reauth_time = dur(&t.reauth_time, 0, "reauth_time")?;
            // swanctl: with a reauthentication time and no rekey time, no rekeys.
            let ike_default = if reauth_time.is_zero() { 3600 } else { 0 };
            let ike_lifetime = dur(&t.ike_lifetime, ike_default, "ike_lifetime")?;
            let opt_dur = |s: &Option<String>, what: &str| match s {
                None => Ok(None),
                Some(_) => dur(s, 0, what).map(Some),
            };
            let over_time = opt_dur(&t.over_time, "over_time")?;
            let rand_time = opt_dur(&t.rand_time, "rand_time")?;
            if let Some(r) = rand_time {
                for (time, what) in [(ike_lifetime, "ike_lifetime"), (reauth_time, "reauth_time")] {
                    if !time.is_zero() && r >= time {
                        return Err(inv(format!(
                            "rand_time ({r:?}) must be below {what} ({time:?})"
                        )));
                    }
                }
            }
            if ike_lifetime.is_zero() && reauth_time.is_zero() {
                warnings.push(format!(
                    "tunnel `{}`: ike_lifetime and reauth_time are 0: the IKE SA is never \
                     rekeyed, its keys never change",
                    t.name
                ));
            }
            let dpd = match &t.dpd {
                None => Dpd {
                    delay: Duration::ZERO,
                    timeout: Duration::from_secs(120),
                    action: DpdAction::Clear,
                },
                Some(d) => Dpd {
                    delay: dur(&Some(d.delay.clone()), 30, "dpd.delay")?,
                    timeout: dur(&Some(d.timeout.clone()), 120, "dpd.timeout")?,
                    action: d.action,
                },
            };
            // Below the first retransmission timeout, one lost datagram declares a live peer
            // dead.
            if dpd.timeout < DPD_TIMEOUT_MIN {
                return Err(inv(format!(
                    "dpd.timeout ({:?}) must be at least {DPD_TIMEOUT_MIN:?}: a shorter one \
                     gives up on a live peer after one lost datagram",
                    dpd.timeout
                )));
            }
            let fragmentation = t.fragmentation.as_ref().is_none_or(|v| v.0);
            let fragment_size = t
                .fragment_size
                .unwrap_or(crate::ike::frag::DEFAULT_FRAGMENT_SIZE);
            if !(MIN_FRAGMENT_SIZE..=65_535).contains(&fragment_size) {
                return Err(inv(format!(
                    "fragment_size: {fragment_size} is outside {MIN_FRAGMENT_SIZE}..=65535 (bytes of IP datagram)"
                )));
            }
            let mut children = Vec::new();
            for c in &t.children {
                let src = if c.esp_proposals.is_empty() {
                    vec!["aes256gcm16".to_string(), "aes256-sha256".to_string()]
                } else {
                    c.esp_proposals.clone()
                };
                let mut esp = Vec::new();
                for p in &src {
                    let a = AlgSet::parse(p, false)
                        .map_err(|e| inv(format!("child `{}`: {e}", c.name)))?;
                    if a.dh.iter().any(|g| g.is_weak()) {
                        warnings.push(format!(
                            "tunnel `{}`, child `{}`: ESP proposal `{p}` uses modp1024 for PFS, a weak group (RFC 8247 says SHOULD NOT); \
                             accepted for compatibility",
                            t.name, c.name
                        ));
                    }
                    esp.push(a);
                }
                if t.children[..children.len()]
                    .iter()
                    .any(|o| o.name == c.name)
                {
                    return Err(inv(format!(
                        "child `{}`: another child of the tunnel has this name",
                        c.name
                    )));
                }
                if c.local_ts.is_empty() || c.remote_ts.is_empty() {
                    return Err(inv(format!(
                        "child `{}`: local_ts and remote_ts must not be empty",
                        c.name
                    )));
                }
                if !c
                    .local_ts
                    .iter()
                    .any(|l| c.remote_ts.iter().any(|r| l.is_ipv4() == r.is_ipv4()))
                {
                    return Err(inv(format!(
                        "child `{}`: local_ts and remote_ts share no address family, so the \
                         CHILD_SA could carry nothing",
                        c.name
                    )));
                }
                // Transport mode protects the gateways' own traffic: selectors without their
                // addresses would let the CHILD_SA carry nothing.
                if c.mode == dataplane::sa::Mode::Transport
                    && !(c.local_ts.iter().any(|p| p.contains(t.local))
                        && c.remote_ts.iter().any(|p| p.contains(t.remote)))
                {
                    return Err(inv(format!(
                        "child `{}`: in transport mode local_ts must hold local ({}) and \
                         remote_ts remote ({})",
                        c.name, t.local, t.remote
                    )));
                }
                // Hard limits: as configured, else 10% past the rekey limit (strongSwan's
                // default relation); a hard limit at or below the rekey limit could never let
                // the rekey happen first.
                // swanctl: a hard limit alone puts the rekey limit at 1/1.1 of it, so that the
                // CHILD_SA is rekeyed before its traffic stops.
                let soft = |rekey: Option<u64>, life: Option<u64>| {
                    rekey.unwrap_or_else(|| life.map_or(0, |l| l / 11 * 10 + l % 11 * 10 / 11))
                };
                let rekey_bytes = soft(c.rekey_bytes, c.life_bytes);
                let rekey_packets = soft(c.rekey_packets, c.life_packets);
                let hard = |life: Option<u64>, rekey: u64, what: &str| match life {
                    None => Ok(if rekey == 0 {
                        0
                    } else {
                        rekey.saturating_add((rekey / 10).max(1))
                    }),
                    Some(l) if l != 0 && rekey != 0 && l <= rekey => Err(inv(format!(
                        "child `{}`: life_{what} ({l}) must be above rekey_{what} ({rekey})",
                        c.name
                    ))),
                    Some(l) => Ok(l),
                };
                let life_time = match &c.life_time {
                    None => None,
                    Some(_) => Some(dur(&c.life_time, 0, "life_time")?),
                };
                // swanctl: life_time alone puts the rekey time at 1/1.1 of it.
                let lifetime = match (&c.lifetime, life_time) {
                    (None, Some(l)) => l.div_f64(1.1),
                    _ => dur(&c.lifetime, 8 * 3600, "lifetime")?,
                };
                let life_time = match life_time {
                    None => lifetime + lifetime / 10,
                    Some(l) if l <= lifetime => {
                        return Err(inv(format!(
                            "child `{}`: life_time ({l:?}) must be above lifetime ({lifetime:?}, \
                             the rekey time)",
                            c.name
                        )));
                    }
                    Some(l) => l,
                };
                children.push(ChildConfig {
                    name: c.name.clone(),
                    local_ts: c.local_ts.clone(),
                    remote_ts: c.remote_ts.clone(),
                    esp_proposals: esp,
                    lifetime,
                    life_time,
                    rekey_bytes,
                    rekey_packets,
                    life_bytes: hard(c.life_bytes, rekey_bytes, "bytes")?,
                    life_packets: hard(c.life_packets, rekey_packets, "packets")?,
                    mode: c.mode,
                    per_cpu_sas: c.per_cpu_sas.as_ref().is_some_and(|v| v.0),
                });
            }
            if children.is_empty() {
                return Err(inv("a tunnel needs at least one child".into()));
            }
            if t.local.is_ipv4() != t.remote.is_ipv4() {
                return Err(inv("local and remote must be the same IP version".into()));
            }
            if let Some(o) = tunnels.iter().find(|o: &&TunnelConfig| o.name == t.name) {
                return Err(inv(format!(
                    "another tunnel is named `{}`: names must be unique",
                    o.name
                )));
            }
            if let Some(o) = tunnels
                .iter()
                .find(|o: &&TunnelConfig| o.local == t.local && o.remote == t.remote)
            {
                // An IKE_SA_INIT from the peer is matched to a tunnel by these addresses alone.
                return Err(inv(format!(
                    "tunnel `{}` already runs between {} and {}: give it this tunnel's \
                     children instead (one IKE SA carries them all)",
                    o.name, t.local, t.remote
                )));
            }
            let pubkey = matches!(auth, Auth::Pubkey(_));
            let local_id = match (&t.local_id, &auth) {
                (None, Auth::Pubkey(p)) => Identity::Dn(p.cred.subject.clone()),
                (None, Auth::Psk(_)) => Identity::Addr(t.local),
                (Some(s), _) => Identity::parse(s),
            };
            let remote_id = match &t.remote_id {
                None if pubkey => Identity::Any,
                None => Identity::Addr(t.remote),
                Some(s) => Identity::parse(s),
            };
            for (id, written, what) in [
                (&local_id, &t.local_id, "local_id"),
                (&remote_id, &t.remote_id, "remote_id"),
            ] {
                if let Some(w) = written {
                    id.check(w).map_err(|e| inv(format!("{what}: {e}")))?;
                }
            }
            if t.local == t.remote {
                return Err(inv(format!(
                    "local and remote are the same address ({})",
                    t.local
                )));
            }
            match (&local_id, &auth) {
                (Identity::Any, _) => return Err(inv("local_id cannot be %any".into())),
                (Identity::Dn(_), Auth::Psk(_)) => {
                    return Err(inv("a DN local_id needs `auth: pubkey`".into()))
                }
                (Identity::Dn(d), Auth::Pubkey(p)) if !pki::dn_matches(d, &p.cred.subject_der) => {
                    return Err(inv(format!(
                        "local_id `{d}` is not the certificate's subject `{}`",
                        p.cred.subject
                    )))
                }
                (id, Auth::Pubkey(p)) => {
                    let (ty, data) = match id.encode() {
                        Some(e) => e,
                        None => (9, p.cred.subject_der.clone()),
                    };
                    if !pki::id_confirmed_by_cert(&p.cred.cert, ty, &data) {
                        return Err(inv(format!(
                            "local_id `{id}` is not in the certificate (it holds: {})",
                            pki::cert_identities(&p.cred.cert).join("; ")
                        )));
                    }
                }
                _ => {}
            }
            if matches!(remote_id, Identity::Any | Identity::Dn(_)) && !pubkey {
                return Err(inv(
                    "remote_id %any or a DN needs `auth: pubkey` (a PSK names its peer)".into(),
                ));
            }
            tunnels.push(TunnelConfig {
                name: t.name.clone(),
                local: t.local,
                remote: t.remote,
                local_id,
                remote_id,
                auth,
                ike_proposals,
                ike_lifetime,
                reauth_time,
                over_time,
                rand_time,
                dpd,
                fragmentation,
                fragment_size,
                start: t.start,
                keyingtries: t.keyingtries,
                children,
            });
        }
        let ha = match raw.ha {
            None => None,
            Some(h) => {
                let inv = |m: String| ConfigError::Invalid {
                    path: path.into(),
                    tunnel: "ha".into(),
                    message: m,
                };
                let file = h
                    .secret_file
                    .as_deref()
                    .map(|f| path.parent().unwrap_or(Path::new(".")).join(f));
                let secret = secret(&h.secret, &file, "secret").map_err(inv)?;
                if secret.len() < 16 {
                    return Err(inv("the sync secret must be 16 bytes or more".into()));
                }
                if h.local == h.remote || h.local.port() == 0 || h.remote.port() == 0 {
                    return Err(inv(format!(
                        "local ({}) and remote ({}) must be two endpoints, each with a port",
                        h.local, h.remote
                    )));
                }
                if h.local.is_ipv4() != h.remote.is_ipv4() {
                    return Err(inv(
                        "local and remote are of different address families".into()
                    ));
                }
                use hmac::Mac;
                let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&secret)
                    .map_err(|e| inv(e.to_string()))?;
                m.update(b"ferrogate HA sync v1");
                let mut key = Zeroizing::new([0u8; 32]);
                key.copy_from_slice(&m.finalize().into_bytes());
                Some(HaConfig {
                    local: h.local,
                    remote: h.remote,
                    key,
                })
            }
        };
        Ok(Config {
            tunnels,
            warnings,
            ha,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = "
tunnels:
  - name: site-to-site
    local: 203.0.113.1
    remote: 203.0.113.2
    psk: \"a long random secret\"
    ike_proposals: [aes256-sha256-modp1024]
    ike_lifetime: 1h
    dpd: { delay: 30s, timeout: 120s, action: restart }
    start: start
    keyingtries: 0
    children:
      - name: net
        local_ts: [192.168.10.0/24]
        remote_ts: [192.168.20.0/24]
        esp_proposals: [aes256-sha256]
        lifetime: 8h
";

    #[test]
    fn reference_scenario_parses_with_a_modp1024_warning() {
        let c = Config::parse(REFERENCE, Path::new("t.yaml")).unwrap();
        let t = &c.tunnels[0];
        assert_eq!(t.ike_lifetime, Duration::from_secs(3600));
        assert_eq!(t.children[0].lifetime, Duration::from_secs(8 * 3600));
        assert_eq!(t.dpd.delay, Duration::from_secs(30));
        assert_eq!(t.dpd.action, DpdAction::Restart);
        assert_eq!(t.start, StartAction::Start);
        assert_eq!(t.local_id, Identity::Addr("203.0.113.1".parse().unwrap()));
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("modp1024"));
    }

    /// The IKE SA's times as swanctl derives them (vici_config.c): over_time 10% of the
    /// larger of rekey and reauthentication time, rand_time that but at most half the shorter;
    /// a reauthentication time alone means no rekeys. The reference scenario's ipsec.conf
    /// (ikelifetime=1h, reauth=yes, margintime=9m, rekeyfuzz=100%: reauthenticate at 42-51
    /// min, gone at 60) is reauth_time 51m, over_time 9m, rand_time 9m; its lifetime=8h is
    /// lifetime 471m, life_time 8h (rekeyed at 7h42-7h51).
    #[test]
    fn ike_sa_times_are_derived_as_swanctl_does() {
        let ike = |repl: &str| {
            let y = REFERENCE.replace("ike_lifetime: 1h", repl);
            let t = Config::parse(&y, Path::new("t.yaml"))
                .unwrap()
                .tunnels
                .remove(0);
            let m = |d: Duration| d.as_secs() / 60;
            (
                m(t.ike_lifetime),
                m(t.reauth_time),
                m(t.ike_over_time()),
                m(t.ike_rand_time()),
            )
        };
        assert_eq!(ike("ike_lifetime: 1h"), (60, 0, 6, 6));
        assert_eq!(ike("reauth_time: 1h"), (0, 60, 6, 6), "no rekeys");
        assert_eq!(
            ike("ike_lifetime: 1h\n    reauth_time: 4h"),
            (60, 240, 24, 24)
        );
        assert_eq!(
            ike("ike_lifetime: 4h\n    reauth_time: 20m"),
            (240, 20, 24, 10)
        );
        assert_eq!(
            ike("reauth_time: 51m\n    over_time: 9m\n    rand_time: 9m"),
            (0, 51, 9, 9)
        );
        assert_eq!(ike("ike_lifetime: 0s"), (0, 0, 0, 0), "never");
        let y = REFERENCE.replace("ike_lifetime: 1h", "ike_lifetime: 0s");
        let w = Config::parse(&y, Path::new("t.yaml")).unwrap().warnings;
        assert!(w.iter().any(|w| w.contains("never rekeyed")), "{w:?}");
        assert_eq!(ike("ike_lifetime: 1h\n    over_time: 0s"), (60, 0, 0, 0));
        // Short times keep a minute to retry in (a refused rekey is tried again 10 s later).
        let y = REFERENCE.replace("ike_lifetime: 1h", "ike_lifetime: 5m");
        let t = Config::parse(&y, Path::new("t.yaml"))
            .unwrap()
            .tunnels
            .remove(0);
        assert_eq!(t.ike_over_time(), OVER_TIME_MIN);
        assert_eq!(t.ike_rand_time(), Duration::from_secs(30));
        let err = |repl: &str| {
            let y = REFERENCE.replace("ike_lifetime: 1h", repl);
            Config::parse(&y, Path::new("t.yaml"))
                .unwrap_err()
                .to_string()
        };
        let e = err("ike_lifetime: 1h\n    rand_time: 1h");
        assert!(
            e.contains("rand_time (3600s) must be below ike_lifetime (3600s)"),
            "{e}"
        );
        let e = err("reauth_time: 10m\n    rand_time: 20m");
        assert!(e.contains("must be below reauth_time"), "{e}");
        let e = err("ike_lifetime: 1h\n    over_time: later");
        assert!(
            e.contains("over_time") && e.contains("not a duration"),
            "{e}"
        );
        // Children: life_time alone sets the rekey time (swanctl: life / 1.1); rekeys come
        // up to 10% early, or as much as life_time leaves.
        let child = |repl: &str| {
            let y = REFERENCE.replace("lifetime: 8h", repl);
            Config::parse(&y, Path::new("t.yaml")).unwrap().tunnels[0].children[0].clone()
        };
        let ch = child("lifetime: 471m\n        life_time: 8h");
        assert_eq!(ch.rand_time(), Duration::from_secs(9 * 60));
        let ch = child("lifetime: 8h");
        assert_eq!(ch.rand_time(), Duration::from_secs(48 * 60));
        assert_eq!(ch.life_time, Duration::from_secs(8 * 3600 + 48 * 60));
        let ch = child("life_time: 11h");
        assert_eq!(ch.lifetime, Duration::from_secs(10 * 3600));
        let y = REFERENCE.replace("lifetime: 8h", "lifetime: 8h\n        life_time: 1h");
        let e = Config::parse(&y, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("life_time (3600s) must be above lifetime (28800s"),
            "{e}"
        );
        // DPD: a timeout below the first retransmission's gives up on a live peer.
        let y = REFERENCE.replace("timeout: 120s", "timeout: 1s");
        let e = Config::parse(&y, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dpd.timeout (1s) must be at least 2s"), "{e}");
    }

    #[test]
    fn reauth_time_is_off_unless_set_and_may_be_zero() {
        let c = Config::parse(REFERENCE, Path::new("t.yaml")).unwrap();
        assert_eq!(c.tunnels[0].reauth_time, Duration::ZERO);
        for (v, want) in [("30m", 1800), ("0s", 0)] {
            let y = REFERENCE.replace(
                "ike_lifetime: 1h",
                &format!("ike_lifetime: 1h\n    reauth_time: {v}"),
            );
            let c = Config::parse(&y, Path::new("t.yaml")).unwrap();
            assert_eq!(c.tunnels[0].reauth_time, Duration::from_secs(want), "{v}");
        }
        let y = REFERENCE.replace(
            "ike_lifetime: 1h",
            "ike_lifetime: 1h\n    reauth_time: soon",
        );
        let e = Config::parse(&y, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("reauth_time"), "{e}");
    }

    #[test]
    fn errors_name_the_place() {
        let bad = REFERENCE.replace("keyingtries: 0", "keyingtries: 0\n    colour: blue");
        let e = Config::parse(&bad, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.yaml:"), "{e}");
        assert!(e.contains("colour"), "{e}");
        let bad = REFERENCE.replace("aes256-sha256-modp1024", "aes256-md5-modp1024");
        let e = Config::parse(&bad, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown algorithm `md5`"), "{e}");
        let bad = REFERENCE.replace("lifetime: 8h", "lifetime: 8 weeks");
        assert!(Config::parse(&bad, Path::new("t.yaml")).is_err());
    }

    /// Values a review found accepted that would misbehave are refused, each error naming
    /// the tunnel and what is wrong: a duration so large it panicked the clock arithmetic
    /// (before: a panic, also on `fgctl reload`), zero lifetimes (a rekey storm), an empty
    /// PSK, duplicate tunnel or child names, a second tunnel between the same two addresses
    /// (the peer's IKE_SA_INIT would only ever find the first), children whose selectors
    /// share no family. A small `rekey_packets` gets a hard limit above it, and modp1024 for
    /// PFS is warned about as it is for IKE.
    #[test]
    fn values_that_would_misbehave_are_refused() {
        let err = |y: String| {
            Config::parse(&y, Path::new("t.yaml"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(parse_duration("100000000000000000000"), None);
        assert_eq!(
            parse_duration("3650d"),
            Some(Duration::from_secs(3650 * 86_400))
        );
        assert_eq!(parse_duration("3651d"), None);
        assert_eq!(parse_duration("-1s"), None);
        let e = err(REFERENCE.replace("lifetime: 8h", "lifetime: 100000000000000000000"));
        assert!(e.contains("site-to-site") && e.contains("lifetime"), "{e}");
        let e = err(REFERENCE.replace("lifetime: 8h", "lifetime: 0"));
        assert!(e.contains("lifetime: must be above 0"), "{e}");
        let e = err(REFERENCE.replace("psk: \"a long random secret\"", "psk: \"\""));
        assert!(
            e.contains("site-to-site") && e.contains("PSK is empty"),
            "{e}"
        );
        let (head, tunnel) = REFERENCE.split_at(REFERENCE.find("  - name: site-to-site").unwrap());
        let e = err(format!("{head}{tunnel}{tunnel}"));
        assert!(e.contains("another tunnel is named `site-to-site`"), "{e}");
        let other = tunnel.replace("name: site-to-site", "name: second");
        let e = err(format!("{head}{tunnel}{other}"));
        assert!(
            e.contains("tunnel `site-to-site` already runs between"),
            "{e}"
        );
        let elsewhere = other.replace("remote: 203.0.113.2", "remote: 203.0.113.3");
        Config::parse(&format!("{head}{tunnel}{elsewhere}"), Path::new("t.yaml")).unwrap();
        let child = &tunnel[tunnel.find("      - name: net").unwrap()..];
        let e = err(format!("{head}{tunnel}{child}"));
        assert!(e.contains("child `net`: another child"), "{e}");
        let e = err(REFERENCE.replace(
            "remote_ts: [192.168.20.0/24]",
            "remote_ts: [\"2001:db8::/64\"]",
        ));
        assert!(
            e.contains("child `net`: local_ts and remote_ts share no"),
            "{e}"
        );
        let transport = REFERENCE.replace("lifetime: 8h", "lifetime: 8h\n        mode: transport");
        let e = err(transport.clone());
        assert!(
            e.contains("child `net`: in transport mode local_ts must hold local"),
            "{e}"
        );
        let hosts = transport
            .replace("local_ts: [192.168.10.0/24]", "local_ts: [203.0.113.1/32]")
            .replace(
                "remote_ts: [192.168.20.0/24]",
                "remote_ts: [203.0.113.2/32]",
            );
        Config::parse(&hosts, Path::new("t.yaml")).unwrap();
        let y = REFERENCE.replace("lifetime: 8h", "lifetime: 8h\n        rekey_packets: 5");
        let c = Config::parse(&y, Path::new("t.yaml")).unwrap();
        assert_eq!(c.tunnels[0].children[0].life_packets, 6);
        let y = REFERENCE.replace(
            "esp_proposals: [aes256-sha256]",
            "esp_proposals: [aes256-sha256-modp1024]",
        );
        let c = Config::parse(&y, Path::new("t.yaml")).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("child `net`") && w.contains("modp1024")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn the_deployed_example_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/ike-site-a.yaml");
        let c = Config::load(&p).unwrap();
        let t = &c.tunnels[0];
        assert_eq!(t.name, "site-to-site");
        assert!(matches!(&t.auth, Auth::Psk(p) if !p.is_empty()));
        // ipsec.conf's ikelifetime=1h (reauth=yes) and lifetime=8h, margintime 9m, rekeyfuzz
        // 100%: reauthenticated at 42-51 min, gone at 60; rekeyed at 7h42-7h51, gone at 8h.
        let m = |d: Duration| d.as_secs() / 60;
        let ike = (m(t.ike_lifetime), m(t.reauth_time), m(t.ike_rand_time()));
        assert_eq!(
            (ike, m(t.reauth_time + t.ike_over_time())),
            ((0, 51, 9), 60)
        );
        let ch = &t.children[0];
        assert_eq!(
            (m(ch.lifetime), m(ch.rand_time()), m(ch.life_time)),
            (471, 9, 480)
        );
    }

    /// The reference scenario's VRRP pair as shipped (`deploy/examples/ha/`): both of site
    /// A's gateways run the same tunnel from the shared address, each syncing to the other;
    /// site B's is its mirror image.
    #[test]
    fn the_ha_examples_are_a_pair_and_its_peer() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/ha");
        let load = |f: &str| Config::load(&dir.join(f)).unwrap();
        let (a1, a2, b) = (
            load("ike-site-a-gw1.yaml"),
            load("ike-site-a-gw2.yaml"),
            load("ike-site-b.yaml"),
        );
        let (h1, h2) = (a1.ha.as_ref().unwrap(), a2.ha.as_ref().unwrap());
        assert_eq!((h1.local, h1.remote), (h2.remote, h2.local));
        assert_eq!(*h1.key, *h2.key, "one sync secret");
        let (t1, t2, tb) = (&a1.tunnels[0], &a2.tunnels[0], &b.tunnels[0]);
        assert_eq!(format!("{t1:?}"), format!("{t2:?}"));
        assert_eq!((t1.local, t1.remote), (tb.remote, tb.local));
        assert_eq!(t1.local.to_string(), "203.0.113.1");
        let (c1, cb) = (&t1.children[0], &tb.children[0]);
        assert_eq!((&c1.local_ts, &c1.remote_ts), (&cb.remote_ts, &cb.local_ts));
        assert!(b.ha.is_none());
        for t in [t1, tb] {
            assert_eq!(
                (t.reauth_time, t.ike_over_time()),
                (t1.reauth_time, t1.ike_over_time())
            );
        }
    }

    #[test]
    fn hard_lifetimes_default_to_110_percent_or_take_life_keys() {
        let c = Config::parse(REFERENCE, Path::new("t.yaml")).unwrap();
        let ch = &c.tunnels[0].children[0];
        assert_eq!(
            (ch.rekey_bytes, ch.life_bytes),
            (0, 0),
            "no limits unless asked"
        );
        let set = |extra: &str| {
            let text = REFERENCE.replace("lifetime: 8h", &format!("lifetime: 8h\n        {extra}"));
            Config::parse(&text, Path::new("t.yaml")).map(|c| {
                let ch = &c.tunnels[0].children[0];
                (ch.life_bytes, ch.life_packets)
            })
        };
        assert_eq!(set("rekey_bytes: 1000000").unwrap(), (1_100_000, 0));
        assert_eq!(
            set("rekey_bytes: 1000000\n        life_bytes: 3000000").unwrap(),
            (3_000_000, 0)
        );
        assert_eq!(
            set("rekey_packets: 100\n        life_packets: 500").unwrap(),
            (0, 500)
        );
        assert_eq!(
            set("life_bytes: 5000").unwrap(),
            (5000, 0),
            "a hard limit alone"
        );
        // ... puts the rekey limit at 1/1.1 of it (swanctl), not at none: the CHILD_SA is
        // rekeyed before its traffic stops.
        let c = |extra: &str| {
            let text = REFERENCE.replace("lifetime: 8h", &format!("lifetime: 8h\n        {extra}"));
            Config::parse(&text, Path::new("t.yaml")).unwrap().tunnels[0].children[0].clone()
        };
        let ch = c("life_bytes: 5000\n        life_packets: 1100");
        assert_eq!((ch.rekey_bytes, ch.rekey_packets), (4545, 1000));
        let ch = c("life_bytes: 18446744073709551615");
        assert_eq!(ch.rekey_bytes, u64::MAX / 11 * 10 + u64::MAX % 11 * 10 / 11);
        let e = set("rekey_bytes: 1000000\n        life_bytes: 1000000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("life_bytes (1000000) must be above rekey_bytes"),
            "{e}"
        );
    }

    #[test]
    fn per_cpu_sas_takes_yes_or_no() {
        let c = Config::parse(REFERENCE, Path::new("t.yaml")).unwrap();
        assert!(!c.tunnels[0].children[0].per_cpu_sas, "off by default");
        for (text, on) in [("yes", true), ("no", false), ("true", true)] {
            let y = REFERENCE.replace(
                "        lifetime: 8h",
                &format!("        lifetime: 8h\n        per_cpu_sas: {text}"),
            );
            let t = &Config::parse(&y, Path::new("t.yaml")).unwrap().tunnels[0];
            assert_eq!(t.children[0].per_cpu_sas, on, "{text}");
        }
        let y = REFERENCE.replace(
            "        lifetime: 8h",
            "        lifetime: 8h\n        per_cpu_sas: maybe",
        );
        let e = Config::parse(&y, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.yaml:18:22: tunnels[0].children[0].per_cpu_sas: invalid value: string \"maybe\", expected yes, no, true or false"),
            "{e}"
        );
        // A number too, at its own line (before: the tunnel's first line, "did not match any
        // variant of untagged enum YesNo").
        let y = REFERENCE.replace("keyingtries: 0", "keyingtries: 0\n    fragmentation: 5");
        let e = Config::parse(&y, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fragmentation: invalid type: integer `5`, expected yes, no, true or false at line 12"),
            "{e}"
        );
    }

    #[test]
    fn fragmentation_keys() {
        let c = Config::parse(REFERENCE, Path::new("t.yaml")).unwrap();
        assert!(c.tunnels[0].fragmentation);
        assert_eq!(c.tunnels[0].fragment_size, 1280);
        for (text, on, size) in [
            ("fragmentation: no\n    fragment_size: 400", false, 400),
            ("fragmentation: yes", true, 1280),
            ("fragmentation: false", false, 1280),
        ] {
            let y = REFERENCE.replace("keyingtries: 0", &format!("keyingtries: 0\n    {text}"));
            let t = &Config::parse(&y, Path::new("t.yaml")).unwrap().tunnels[0];
            assert_eq!((t.fragmentation, t.fragment_size), (on, size), "{text}");
        }
        for bad in [
            "fragmentation: maybe",
            "fragment_size: 100",
            "fragment_size: 70000",
        ] {
            let y = REFERENCE.replace("keyingtries: 0", &format!("keyingtries: 0\n    {bad}"));
            let e = Config::parse(&y, Path::new("t.yaml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad.split(':').next().unwrap()), "{e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn identities() {
        assert_eq!(
            Identity::parse("@gw.example"),
            Identity::Fqdn("gw.example".into())
        );
        assert_eq!(
            Identity::parse("vpn@example.com"),
            Identity::Email("vpn@example.com".into())
        );
        assert_eq!(Identity::parse("::1").encode().unwrap().0, 5);
    }

    /// Identities that name nothing, a tunnel to itself and an HA link to itself are refused,
    /// each error naming the key and what was written (a review found them accepted: `""`
    /// sent an empty ID_FQDN).
    #[test]
    fn identities_and_endpoints_that_name_nothing_are_refused() {
        let err = |from: &str, to: &str| {
            let y = REFERENCE.replace(from, to);
            Config::parse(&y, Path::new("t.yaml"))
                .unwrap_err()
                .to_string()
        };
        let psk = "psk: \"a long random secret\"";
        for (id, want) in [
            ("\"\"", "local_id: `` is an empty FQDN"),
            ("\"@\"", "local_id: `@` is an empty FQDN"),
            (
                "user@",
                "local_id: `user@` is an email address without a user or a domain",
            ),
            ("\"CN=a, =b\"", "local_id: `CN=a, =b` is no DN"),
        ] {
            let e = err(psk, &format!("{psk}\n    local_id: {id}"));
            assert!(e.contains(want) && e.contains("site-to-site"), "{id}: {e}");
        }
        let e = err(psk, &format!("{psk}\n    remote_id: \"\""));
        assert!(e.contains("remote_id: `` is an empty FQDN"), "{e}");
        for id in ["gw.example", "\"@gw.example\"", "vpn@example.com"] {
            let y = REFERENCE.replace(psk, &format!("{psk}\n    remote_id: {id}"));
            Config::parse(&y, Path::new("t.yaml")).unwrap();
        }
        let e = err("remote: 203.0.113.2", "remote: 203.0.113.1");
        assert!(
            e.contains("local and remote are the same address (203.0.113.1)"),
            "{e}"
        );
        let ha = |local: &str, remote: &str| {
            format!(
                "{REFERENCE}ha:\n  local: {local}\n  remote: {remote}\n  secret: \"0123456789abcdef\"\n"
            )
        };
        Config::parse(&ha("10.99.0.1:4510", "10.99.0.2:4510"), Path::new("t.yaml")).unwrap();
        for (l, r) in [
            ("10.99.0.1:4510", "10.99.0.1:4510"),
            ("10.99.0.1:0", "10.99.0.2:4510"),
        ] {
            let e = Config::parse(&ha(l, r), Path::new("t.yaml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("must be two endpoints, each with a port"),
                "{l} {r}: {e}"
            );
        }
    }
}
