//! One IKE SA's protocol state machine, free of I/O: datagrams and clock ticks in, [`Action`]s
//! out (RFC 7296 §1.2-1.4, §2.1-2.25).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::crypto::{self, DhPrivate, IkeKeys, Secret, SkCodec};
use super::frag::{self, Frag};
use super::pki;
use super::proposal::{self, AlgSet, Chosen, Encr, Group, Integ};
use super::wire::{
    self, exchange, flags, notify, proto, Header, Message, Notify, Payload, TrafficSelector,
};
use crate::config::{Auth, ChildConfig, DpdAction, TunnelConfig};

/// IKE's NAT-T port.
pub const NATT_PORT: u16 = 4500;
/// IKE's normal port.
pub const IKE_PORT: u16 = 500;

/// First retransmission timeout and back-off base (strongSwan's defaults are 4 s and 1.8). The
/// first timeout holds until an exchange of the IKE SA has been timed; after that it is the
/// measured round trip's ([`RttEstimate`]).
const RETX_FIRST: Duration = Duration::from_secs(2);
const RETX_BASE: f64 = 1.8;
/// Tries of the default schedule: a request goes unanswered for the sum of its first
/// `RETX_TRIES` timeouts from `RETX_FIRST` (about 45 s) before the IKE SA is given up, however
/// short the measured timeout makes the first ones.
const RETX_TRIES: u32 = 5;
/// The shortest first retransmission timeout (RFC 6298 §2.4 asks 1 s of TCP; an IKE
/// retransmission costs the peer only a cached response, and a CHILD_SA rekeyed at a byte
/// limit has until the hard limit, a fraction of a second at line rate).
const RTO_MIN: Duration = Duration::from_millis(100);
/// Clock granularity term of the timeout (RFC 6298's G): the daemon's timer tick.
const RTO_GRANULARITY: Duration = Duration::from_millis(20);
/// NAT keepalive interval (strongSwan's default).
const NAT_KEEPALIVE: Duration = Duration::from_secs(20);

/// Keys and parameters of one CHILD_SA, both directions, ready for the data plane.
#[derive(Clone)]
pub struct ChildSaInstall {
    /// Tunnel name.
    pub tunnel: String,
    /// Child name.
    pub child: String,
    /// Inbound SPI (ours).
    pub spi_in: u32,
    /// Outbound SPI (the peer's).
    pub spi_out: u32,
    /// Cipher.
    pub encr: Encr,
    /// Integrity, None for AEADs.
    pub integ: Option<Integ>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Inbound encryption key (with salt for AEADs).
    pub enc_in: Secret,
    /// Inbound integrity key.
    pub auth_in: Secret,
    /// Outbound encryption key.
    pub enc_out: Secret,
    /// Outbound integrity key.
    pub auth_out: Secret,
    /// Our protected traffic.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's protected traffic.
    pub remote_ts: Vec<TrafficSelector>,
    /// Our outer address and IKE port.
    pub local: SocketAddr,
    /// The peer's outer address and IKE port.
    pub remote: SocketAddr,
    /// ESP in UDP (a NAT was detected): ports are those of `local`/`remote`.
    pub udp_encap: bool,
    /// Tunnel or transport.
    pub mode: dataplane::sa::Mode,
    /// The SA this one replaces (its inbound SPI), for make-before-break installs.
    pub replaces: Option<u32>,
    /// Byte and packet lifetimes for the data plane (soft: rekey; hard: stop).
    pub lifetime: dataplane::sa::Lifetime,
    /// Use the outbound SA at once. False for the responder of a rekey: it keeps sending on
    /// the old SA until the initiator deletes it ([`Action::Activate`]), so that no packet
    /// reaches the initiator before its new inbound SA is in.
    pub outbound_now: bool,
    /// We initiated the exchange that made it. A pair the peer made that is no rekey, while
    /// another of the same child still carries traffic (the peer's make-before-break
    /// reauthentication: a second IKE SA), may reach the data plane before the peer has our
    /// answer; the daemon then keeps sending on the other pair for a moment.
    pub we_initiated: bool,
    /// Inbound half only (spi_out 0, no outbound keys): installed before IKE_AUTH is sent, so
    /// that ESP the peer sends as soon as it has answered is not dropped; the full install
    /// with the same `spi_in` follows.
    pub larval: bool,
    /// A per-resource CHILD_SA (RFC 9611) of this data-plane worker: its outbound half
    /// carries that worker's traffic of the child. None: an ordinary pair, or the fallback.
    pub worker: Option<u16>,
}

impl std::fmt::Debug for ChildSaInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSaInstall")
            .field("tunnel", &self.tunnel)
            .field("child", &self.child)
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .field("udp_encap", &self.udp_encap)
            .finish_non_exhaustive()
    }
}

/// What the state machine asks its environment to do.
#[derive(Debug)]
pub enum Action {
    /// Send an IKE datagram (the I/O layer adds the non-ESP marker on port 4500).
    Send {
        /// Our address and port.
        local: SocketAddr,
        /// The peer's.
        remote: SocketAddr,
        /// The IKE message.
        data: Vec<u8>,
    },
    /// Install (or replace) a CHILD_SA.
    Install(Box<ChildSaInstall>),
    /// The peer is now at `remote` (its NAT mapping changed): these CHILD_SAs' ESP goes there.
    PeerMoved {
        /// Tunnel.
        tunnel: String,
        /// Inbound SPIs of the CHILD_SAs.
        spis_in: Vec<u32>,
        /// Our endpoint.
        local: SocketAddr,
        /// The peer's new endpoint.
        remote: SocketAddr,
    },
    /// Start using the outbound half of an installed CHILD_SA (the old one is going away).
    Activate {
        /// Tunnel.
        tunnel: String,
        /// Inbound SPI of the SA to use.
        spi_in: u32,
        /// Its outbound SPI.
        spi_out: u32,
    },
    /// Remove a CHILD_SA.
    Remove {
        /// Tunnel.
        tunnel: String,
        /// Child.
        child: String,
        /// Inbound SPI.
        spi_in: u32,
        /// Outbound SPI.
        spi_out: u32,
    },
    /// The IKE SA is established.
    Established {
        /// Tunnel.
        tunnel: String,
        /// Chosen IKE algorithms.
        algorithms: String,
        /// Whether a NAT was detected.
        nat: bool,
        /// The peer's authenticated identity.
        peer_id: String,
        /// The peer's IKE_AUTH said INITIAL_CONTACT (RFC 7296 §2.4): it holds no other IKE
        /// SA with us, so those we hold with the same identity are stale. Our SPI of this one.
        initial_contact: Option<u64>,
    },
    /// A new IKE SA that replaces this one (IKE SA rekey); the daemon adopts it.
    Spawn(Box<IkeSa>),
    /// IKE SA `spi` (our SPI) is due for reauthentication: the daemon initiates a new IKE SA
    /// of its tunnel beside it (without INITIAL_CONTACT) and deletes this one once the new
    /// one and its CHILD_SAs are up.
    Reauthenticate {
        /// Our SPI of the IKE SA to replace.
        spi: u64,
    },
    /// The IKE_AUTH of IKE SA `spi` waits for its peer certificate's revocation status: the
    /// daemon runs `job` on another thread, then calls [`IkeSa::resume_after_fetch`].
    FetchRevocation {
        /// Our SPI of the IKE SA.
        spi: u64,
        /// The fetch.
        job: RevocationFetch,
    },
    /// CHILD_SAs that belong to another IKE SA of ours (the winner of a rekey collision).
    MoveChildren {
        /// Our SPI of the IKE SA that takes them.
        to: u64,
        /// The children.
        children: Vec<Child>,
        /// What new CHILD_SAs are still to be made, and the peer's refusals
        /// ([`IkeSa::merge_creation`]).
        creation: Box<Creation>,
    },
    /// The IKE SA is gone; `restart` asks the daemon to initiate the tunnel again.
    Closed {
        /// Tunnel.
        tunnel: String,
        /// Why.
        reason: String,
        /// Re-initiate.
        restart: bool,
    },
}

/// Fetching (CRLs from distribution points, OCSP answers) for a peer certificate chain, run
/// off the daemon's thread: it fills the process's revocation caches, from which the IKE
/// SA's check then decides.
pub struct RevocationFetch {
    cfg: Arc<TunnelConfig>,
    leaf: Vec<u8>,
    rest: Vec<Vec<u8>>,
}

/// What a [`RevocationFetch`] found: the chain's verdict with the fetches made.
pub type FetchVerdict = Result<String, pki::PkiError>;

impl RevocationFetch {
    /// Checks the chain as before there were threads (blocking: fetches within the check's
    /// time budget), filling the caches on the way.
    pub fn run(&self) -> FetchVerdict {
        match &self.cfg.auth {
            Auth::Pubkey(pk) => {
                let r = pk.cas.verify(&self.leaf, &self.rest);
                tracing::debug!(tunnel = %self.cfg.name, ok = r.is_ok(), "revocation fetch done");
                r
            }
            Auth::Psk(_) => Err(pki::PkiError::Untrusted(
                "no certificates configured".into(),
            )),
        }
    }
}

impl std::fmt::Debug for RevocationFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RevocationFetch({})", self.cfg.name)
    }
}

/// Why a peer's certificate authentication did not pass (yet): [`check_cert_auth`].
enum CertAuth {
    Fail(String),
    /// Its certificate's revocation status has to be fetched first.
    Fetch,
}

/// The certificate half of checking a peer's IKE_AUTH: that its certificate `leaf` holds the
/// identity (`id_type`, `id_data`) and that its key verifies the AUTH payload (`method`,
/// `data`) over `octets` come first, then the chain through `rest` to `pk`'s anchors and the
/// revocation of each certificate. The first two cost one signature check; the chain costs
/// one a certificate, and revocation may cost parsing and verifying CRLs (or fetching), so a
/// peer that sends someone's public certificate with an AUTH it could not sign is refused
/// before any of that. `verdict`: the chain's verdict from the daemon's fetch thread, if
/// this is the second look after a fetch. Returns the anchor's subject.
#[allow(clippy::too_many_arguments)]
fn check_cert_auth(
    pk: &crate::config::PubkeyAuth,
    leaf: &[u8],
    rest: &[Vec<u8>],
    id_type: u8,
    id_data: &[u8],
    method: u8,
    data: &[u8],
    octets: &[u8],
    verdict: Option<FetchVerdict>,
) -> Result<String, CertAuth> {
    if !pki::id_confirmed_by_cert(leaf, id_type, id_data) {
        return Err(CertAuth::Fail(format!(
            "peer identity `{}` is not in its certificate (which holds: {})",
            id_display(id_type, id_data),
            pki::cert_identities(leaf).join("; ")
        )));
    }
    pki::verify_auth(leaf, method, data, octets)
        .map_err(|e| CertAuth::Fail(format!("the peer's AUTH signature: {e}")))?;
    // With fetching on, the chain is checked without network first: fetching would stall
    // every IKE SA of the daemon (up to the budget), so it runs on another thread, and only
    // for a peer whose AUTH verified.
    let (checked, wants) = if let Some(v) = verdict {
        // The verdict of the check made with the fetches (on the daemon's fetch thread), not
        // a second look at caches that may have moved on.
        (v, false)
    } else if pk.cas.fetches() {
        pk.cas.verify_cached(leaf, rest)
    } else {
        (pk.cas.verify(leaf, rest), false)
    };
    match checked {
        Err(pki::PkiError::RevocationUnknown(..)) if wants => Err(CertAuth::Fetch),
        Err(e) => Err(CertAuth::Fail(format!("peer certificate: {e}"))),
        Ok(_) if wants => Err(CertAuth::Fetch),
        Ok(ca) => Ok(ca),
    }
}

/// Why a peer's authentication did not pass (yet).
enum AuthErr {
    Fail(String),
    /// Its certificate's revocation status has to be fetched first.
    Fetch(RevocationFetch),
}

impl From<String> for AuthErr {
    fn from(e: String) -> Self {
        AuthErr::Fail(e)
    }
}

impl From<&str> for AuthErr {
    fn from(e: &str) -> Self {
        AuthErr::Fail(e.to_string())
    }
}

/// An IKE_AUTH message set aside while the peer certificate's revocation status is fetched.
#[derive(Debug)]
enum Parked {
    /// The peer's request (we answer once the status is known).
    Request { h: Header, payloads: Vec<Payload> },
    /// The peer's response to our request.
    Response {
        child: usize,
        spi_in: u32,
        payloads: Vec<Payload>,
    },
}

/// Where an IKE SA stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    InitDone,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Up.
    Established,
    /// Gone (the daemon drops it).
    Dead,
}

#[derive(Debug)]
enum Req {
    Init,
    Auth {
        child: usize,
        spi_in: u32,
    },
    Dpd,
    DeleteChild {
        spi_in: u32,
    },
    DeleteIke,
    RekeyIke {
        spi: u64,
        ni: Vec<u8>,
        dh: DhPrivate,
        public: Vec<u8>,
        group: Group,
    },
    RekeyChild {
        old: u32,
        spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
        public: Vec<u8>,
    },
    /// A new CHILD_SA of configured child `cfg` (not a rekey): a child after the first, or a
    /// per-resource one (RFC 9611) for `worker`.
    CreateChild {
        cfg: usize,
        worker: Option<u16>,
        spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
        public: Vec<u8>,
    },
}

#[derive(Debug)]
struct Pending {
    id: u32,
    /// The request's datagrams (several when fragmented, RFC 7383): all go out again on a
    /// retransmission.
    data: Vec<Vec<u8>>,
    tries: u32,
    next: Instant,
    first: Instant,
    /// The first retransmission timeout (the back-off starts from it).
    rto: Duration,
    /// Sent again early once, because the data plane reported the hard limit of the CHILD_SA
    /// this request rekeys.
    hurried: bool,
    req: Req,
    /// What the request can be cut again from, when fragmentation was negotiated and a
    /// smaller datagram size is left to try.
    recut: Option<Recut>,
}

/// Sends of one size before a request is cut into smaller datagrams: the first and two
/// retransmissions (RFC 7383 §2.5.2 leaves the number open; a lost datagram should not halve
/// the fragments of a working path)...
const SENDS_BEFORE_RECUT: u32 = 3;
/// ...over at least this long (with retransmission timeouts from 100 ms, three sends can go
/// out within half a second, inside one burst of loss).
const RECUT_AFTER: Duration = Duration::from_secs(2);

/// An unanswered request's header and plaintext, kept so that a retransmission can cut it
/// into smaller fragments (RFC 7383 §2.5.2, path MTU discovery): a path that drops large
/// datagrams (a tunnel with a smaller MTU, a firewall that drops IP fragments) drops every
/// copy of a large one.
#[derive(Debug)]
struct Recut {
    header: Header,
    inner: u8,
    plain: zeroize::Zeroizing<Vec<u8>>,
    /// The largest datagram (IP header included) of the request as last cut.
    largest: usize,
    /// Times it went out cut that way.
    sends: u32,
    /// When it first went out cut that way (None: when the request was first sent).
    since: Option<Instant>,
    /// Whether it was cut smaller than it was first.
    cut: bool,
}

/// One installed CHILD_SA.
#[derive(Debug, Clone)]
pub struct Child {
    /// Index into the tunnel's children.
    pub cfg: usize,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Algorithms.
    pub chosen: Chosen,
    /// Our selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// Peer selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// When it was installed.
    pub installed: Instant,
    /// When we rekey it.
    pub rekey_at: Instant,
    /// Rekeyed: waiting for deletion.
    pub rekeyed: bool,
    /// The SA this one replaced.
    pub replaces: Option<u32>,
    /// The peer rekeyed this SA while our own rekey of it was in flight (§2.8.1): the
    /// nonces of its exchange and the inbound SPI of the SA it created.
    collision: Option<(Vec<u8>, Vec<u8>, u32)>,
    /// Negotiated with SA_RESOURCE_INFO both ways (RFC 9611): one of the child's group of
    /// per-resource CHILD_SAs (rekeys keep it).
    pub per_resource: bool,
    /// The data-plane worker whose traffic this per-resource CHILD_SA carries. None: the
    /// fallback (the first of the group), or one more the peer made for its resources.
    pub worker: Option<u16>,
}

/// Why [`IkeSa::decrypt`] gives no payloads.
#[derive(Debug)]
enum Unusable {
    /// Not authentic, unprotected, or not for now: dropped without a word.
    Drop(String),
    /// Authentic, but its payloads do not parse: a request is answered with this error notify
    /// and its data.
    Refuse(u16, Vec<u8>, String),
}

impl Unusable {
    fn drop(e: impl std::fmt::Display) -> Unusable {
        Unusable::Drop(e.to_string())
    }
    fn refuse(e: wire::WireError) -> Unusable {
        match e {
            wire::WireError::UnsupportedCritical(t) => {
                Unusable::Refuse(notify::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t], e.to_string())
            }
            _ => Unusable::Refuse(notify::INVALID_SYNTAX, Vec::new(), e.to_string()),
        }
    }
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Drop(e) | Unusable::Refuse(_, _, e) => f.write_str(e),
        }
    }
}

/// How long a rekeyed IKE SA waits for the peer that rekeyed it to delete it.
pub const SUPERSEDED_WAIT: Duration = Duration::from_secs(30);

/// How long a delete of the IKE SA (a terminate) waits behind a request of ours still out
/// (the window is one, RFC 7296 §2.3: it goes once that one is answered). A peer that does not
/// answer that long is not waited for: the IKE SA ends without a word.
pub const DELETE_BEHIND: Duration = Duration::from_secs(5);

/// How long a responder keeps an IKE SA whose IKE_SA_INIT it answered waiting for IKE_AUTH
/// (strongSwan's `half_open_timeout` is 30 s too).
pub const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an initiator whose IKE_SA_INIT was answered with an error (unauthenticated, so
/// anyone on the path could have sent it) keeps waiting for another answer before it gives
/// the attempt up (RFC 7296 §2.21.1: "the recipient should continue trying for some time
/// before giving up"). The request is retransmitted meanwhile as usual.
pub const INIT_ERROR_WAIT: Duration = Duration::from_secs(5);

/// Most message IDs a synced IKE SA's first request from the peer may be ahead of what the
/// snapshot said (requests answered by the other gateway after its last snapshot): accepted
/// once, if it authenticates.
const MID_SLACK: u32 = 16;
/// How long a synced IKE SA's first exchange on the new master may go unanswered before the
/// tunnel is given up (as `dpd.action` says): a peer that forgot the IKE SA (it restarted, or
/// the snapshot was behind a rekey) has forgotten its CHILD_SAs too, so waiting out the DPD
/// timeout would only prolong the outage.
pub const RESUME_BUDGET: Duration = Duration::from_secs(10);
/// Largest cached response synced (its datagrams): a retransmitted request answered by the
/// other gateway gets it again from this one. An IKE_AUTH answer with a certificate chain
/// fits (before, at 1 KiB, it did not, and a lost one made the peer give the IKE SA up after
/// a takeover). Larger ones are left out, such a retransmission then going unanswered. With
/// [`SYNC_PENDING_MAX`], an IKE SA's part stays under `ha::MAX_DATAGRAM` (in hex, twice).
pub(crate) const SYNC_RESPONSE_MAX: usize = 4_096;

/// An established IKE SA as the other gateway of a VRRP pair needs it to carry on with the
/// same peer (`ha:`): SPIs, keys, message IDs, the CHILD_SAs, and how far its timers ran.
/// Times are relative (seconds ago, or seconds from now) at [`IkeSa::export`].
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct IkeSaState {
    /// Tunnel name (its configuration must match on both gateways).
    pub tunnel: String,
    /// We are the original initiator.
    pub initiator: bool,
    /// SPIs.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// Endpoints.
    pub local: SocketAddr,
    /// The peer's.
    pub remote: SocketAddr,
    /// A NAT was detected.
    pub nat: bool,
    /// We are behind the NAT.
    pub behind_nat: bool,
    /// The IKE algorithms.
    pub chosen: Chosen,
    /// SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr (hex).
    pub keys: [zeroize::Zeroizing<String>; 7],
    /// Our next request's message ID (that of a request in flight that `pending` lacks: its
    /// fate is unknown).
    pub next_req_id: u32,
    /// The peer's next request's message ID.
    pub peer_next_id: u32,
    /// The last response sent, for a retransmitted request: (message ID, datagrams, hex).
    #[serde(default)]
    pub last_resp: Option<(u32, Vec<String>)>,
    /// IKE fragmentation negotiated.
    pub frag: bool,
    /// The datagram size a message cut smaller got through at (RFC 7383 §2.5.2).
    #[serde(default)]
    pub frag_path_size: Option<usize>,
    /// The peer's RFC 7427 hash algorithms.
    #[serde(default)]
    pub peer_hashes: Vec<u16>,
    /// The peer's authenticated identity.
    #[serde(default)]
    pub peer_id: Option<String>,
    /// Seconds since it was established.
    pub age_s: u64,
    /// Seconds until its rekey.
    pub rekey_in_s: Option<u64>,
    /// Seconds until its reauthentication (a rekey does not reset it; none from a version
    /// before it).
    #[serde(default)]
    pub reauth_in_s: Option<u64>,
    /// Its CHILD_SAs.
    pub children: Vec<ChildState>,
    /// The request it had in flight (none from a version before it).
    #[serde(default)]
    pub pending: Option<PendingState>,
    /// Configured children (names) still to be made in CREATE_CHILD_SAs of their own.
    #[serde(default)]
    pub to_create: Vec<String>,
    /// Children (names) whose peer wants no more per-resource CHILD_SAs (RFC 9611).
    #[serde(default)]
    pub no_more: Vec<String>,
}

impl std::fmt::Debug for IkeSaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSaState")
            .field("tunnel", &self.tunnel)
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .field("next_req_id", &self.next_req_id)
            .field("peer_next_id", &self.peer_next_id)
            .field("children", &self.children.len())
            .field("pending", &self.pending.as_ref().map(|p| p.id))
            .finish_non_exhaustive()
    }
}

/// Largest request in flight synced (its datagrams): larger ones are left out, and the other
/// gateway starts with a liveness check instead.
pub(crate) const SYNC_PENDING_MAX: usize = 2_048;

/// The request an [`IkeSaState`] had in flight, as the other gateway needs it to finish the
/// exchange: the same datagrams go out again (the peer answers a retransmission with its
/// cached response), and the state to take the answer (nonces, DH private values, SPIs).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingState {
    /// Its message ID.
    pub id: u32,
    /// Its datagrams (hex), as sent.
    pub datagrams: Vec<String>,
    /// What it asks.
    pub req: ReqState,
}

/// A DH private value in a [`ReqState`]: the group and the value (hex).
pub type DhState = (Group, zeroize::Zeroizing<String>);

/// What a synced request in flight asks (`Req`, less the exchanges of an IKE SA not yet up).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub enum ReqState {
    /// Liveness check.
    Dpd,
    /// Delete a CHILD_SA.
    DeleteChild {
        /// Its inbound SPI.
        spi_in: u32,
    },
    /// Delete the IKE SA.
    DeleteIke,
    /// Rekey a CHILD_SA.
    RekeyChild {
        /// The old one's inbound SPI.
        old: u32,
        /// The new one's.
        spi_in: u32,
        /// Our nonce (hex).
        ni: String,
        /// PFS.
        dh: Option<DhState>,
        /// Our KE value (hex).
        public: String,
    },
    /// A new CHILD_SA.
    CreateChild {
        /// The child's name.
        child: String,
        /// The worker of a per-resource CHILD_SA.
        worker: Option<u16>,
        /// Our inbound SPI.
        spi_in: u32,
        /// Our nonce (hex).
        ni: String,
        /// PFS.
        dh: Option<DhState>,
        /// Our KE value (hex).
        public: String,
    },
    /// Rekey the IKE SA.
    RekeyIke {
        /// Our SPI of the new IKE SA.
        spi: u64,
        /// Our nonce (hex).
        ni: String,
        /// Our DH private value.
        dh: DhState,
        /// Our KE value (hex).
        public: String,
    },
}

impl std::fmt::Debug for PendingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingState")
            .field("id", &self.id)
            .field("req", &self.req)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ReqState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Nonces and DH values stay out of logs.
        f.write_str(match self {
            ReqState::Dpd => "Dpd",
            ReqState::DeleteChild { .. } => "DeleteChild",
            ReqState::DeleteIke => "DeleteIke",
            ReqState::RekeyChild { .. } => "RekeyChild",
            ReqState::CreateChild { .. } => "CreateChild",
            ReqState::RekeyIke { .. } => "RekeyIke",
        })
    }
}

/// A CHILD_SA of an [`IkeSaState`] (its keys travel in the synced pair of the same SPIs).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChildState {
    /// The child's name in the tunnel's configuration.
    pub child: String,
    /// SPIs.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Algorithms.
    pub chosen: Chosen,
    /// Selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's.
    pub remote_ts: Vec<TrafficSelector>,
    /// Seconds since it was installed.
    pub age_s: u64,
    /// Rekeyed, waiting for its delete.
    pub rekeyed: bool,
    /// The SA it replaced.
    pub replaces: Option<u32>,
    /// One of a group of per-resource CHILD_SAs (RFC 9611).
    #[serde(default)]
    pub per_resource: bool,
    /// The worker of a per-resource CHILD_SA.
    #[serde(default)]
    pub worker: Option<u16>,
}

/// One IKE SA.
pub struct IkeSa {
    /// The tunnel.
    pub cfg: Arc<TunnelConfig>,
    /// We are the original initiator.
    pub initiator: bool,
    /// State.
    pub state: State,
    /// Initiator SPI.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// Our address and port.
    pub local: SocketAddr,
    /// The peer's.
    pub remote: SocketAddr,
    /// A NAT was detected (either side).
    pub nat: bool,
    chosen: Option<Chosen>,
    keys: Option<IkeKeys>,
    dh: Option<DhPrivate>,
    group: Option<Group>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    cookie: Option<Vec<u8>>,
    /// The error our IKE_SA_INIT was first answered with, and when ([`INIT_ERROR_WAIT`]).
    init_refused: Option<(u16, Instant)>,
    next_req_id: u32,
    peer_next_id: u32,
    last_resp: Option<(u32, Vec<Vec<u8>>)>,
    /// What the last response can be cut again from, when fragmentation was negotiated and a
    /// smaller datagram size is left to try: the peer's retransmissions of its request are
    /// the only sign we get that the response was lost on the way.
    resp_recut: Option<Recut>,
    /// IKE_AUTH waiting for the peer certificate's revocation status.
    parked: Option<Parked>,
    /// That status was fetched: the check takes the fetch's verdict (no second fetch).
    fetch_verdict: Option<FetchVerdict>,
    pending: Option<Pending>,
    queue: std::collections::VecDeque<Req>,
    /// Round trips of our requests, for their retransmission timeouts.
    rtt: RttEstimate,
    /// CHILD_SAs.
    pub children: Vec<Child>,
    last_heard: Instant,
    /// When the IKE SA was established.
    pub established_at: Option<Instant>,
    /// Messages sent and received (for `fgctl`).
    pub stats: (u64, u64),
    /// Send INITIAL_CONTACT in IKE_AUTH (not when the data plane still holds SAs of an
    /// earlier incarnation that the peer should keep until the new ones are up).
    pub initial_contact: bool,
    /// The inbound SPI of a larval CHILD_SA installed before IKE_AUTH completed.
    larval: Option<u32>,
    /// When we rekey the IKE SA (RFC 7296 §2.18).
    ike_rekey_at: Option<Instant>,
    /// When we reauthenticate (the tunnel's `reauth_time`; RFC 7296 §2.8.3): the daemon sets
    /// up a new IKE SA beside this one ([`Action::Reauthenticate`]). Rekeys keep it: they do
    /// not authenticate the peer again.
    reauth_at: Option<Instant>,
    /// When this IKE SA was due for its rekey (fixed: `ike_rekey_at` moves on with retries),
    /// and when its first rekey attempt was made. Both plus `over_time` past, it is deleted.
    rekey_due: Option<Instant>,
    rekey_tried: Option<Instant>,
    /// The same for the reauthentication, which rekeys do not reset: the new IKE SA of a
    /// rekey inherits both (as strongSwan's `inherit_post` keeps its reauthentication time and
    /// hard lifetime), so a peer that answers rekeys but fails every reauthentication (its
    /// certificate revoked, say) still loses the IKE SA `over_time` after it was due.
    reauth_due: Option<Instant>,
    reauth_tried: Option<Instant>,
    /// It reached its hard lifetime: its delete is out, and the tunnel starts again once it is
    /// gone (`start: start`).
    expired: bool,
    /// The same for an IKE SA and those that rekeyed it (random for a new one): a
    /// reauthentication deletes its old IKE SA's whole line once the new one is up, also
    /// when the old one was rekeyed meanwhile.
    pub(crate) lineage: u64,
    /// Rekeyed: the new IKE SA has the children; this one only waits for its delete.
    superseded: bool,
    /// Since when this SA has waited for the peer to delete it (it rekeyed it, or won the
    /// collision with our rekey): past [`SUPERSEDED_WAIT`] we delete it ourselves.
    superseded_at: Option<Instant>,
    /// A delete of the IKE SA waits behind the request out: it ends the SA by then anyway
    /// ([`DELETE_BEHIND`]).
    delete_by: Option<Instant>,
    /// While a request is handled: where it arrived and where it came from, which is where
    /// its response goes (RFC 7296 §2.11), whether or not the SA follows that address.
    reply_to: Option<(SocketAddr, SocketAddr)>,
    /// The peer's IKE SA rekey crossed ours (§2.8.2): its nonces and our SPI of the SA it made.
    collision: Option<(Vec<u8>, Vec<u8>, u64)>,
    /// Redundant from birth (lost a rekey collision): delete it at once.
    pub delete_now: bool,
    /// We are behind a NAT: keep its mapping alive (RFC 3948 §2.3).
    behind_nat: bool,
    /// The peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427); empty if it sent none.
    peer_hashes: Vec<u16>,
    /// The peer's authenticated identity (for `fgctl`).
    pub peer_id: Option<String>,
    last_keepalive: Instant,
    /// When this IKE SA began (its IKE_SA_INIT, a rekey, or a restore from the HA sync).
    pub created: Instant,
    /// Our KE public value and its group in IKE_SA_INIT.
    ke_public: Vec<u8>,
    ke_group: Option<Group>,
    /// IKE fragmentation (RFC 7383): whether both ends support it, partial messages, counters.
    frag: Frag,
    /// Restored from the other gateway's sync: how far ahead of `peer_next_id` the peer's
    /// next request may be (0 once one was taken).
    mid_slack: u32,
    /// Restored from the other gateway's sync and not yet answered by the peer: the first
    /// exchange gets [`RESUME_BUDGET`].
    resumed: bool,
    /// The data plane's workers (the daemon says): per-resource CHILD_SAs are made for each
    /// when there are two or more.
    resources: u16,
    /// Configured children after the first, still to be created (we initiated the IKE SA).
    to_create: std::collections::VecDeque<usize>,
    /// New CHILD_SAs that failed (or per-resource ones the peer deleted): (child, worker,
    /// not before, failures so far). Forgotten once one is made.
    create_after: Vec<(usize, Option<u16>, Instant, u32)>,
    /// The PFS group a peer asked for (INVALID_KE_PAYLOAD) in a new CHILD_SA of a child.
    ke_groups: Vec<(usize, Group)>,
    /// Children for which the peer wants no more per-resource CHILD_SAs (TS_MAX_QUEUE, or
    /// it answered one without SA_RESOURCE_INFO).
    no_more: Vec<usize>,
}

/// What an IKE SA still has to do about new CHILD_SAs, handed on with its children to the
/// IKE SA that takes them over: configured children still to be made, children whose peer
/// wants no more per-resource CHILD_SAs, back-offs and PFS groups the peer asked for.
#[derive(Debug, Default)]
pub struct Creation {
    to_create: std::collections::VecDeque<usize>,
    no_more: Vec<usize>,
    create_after: Vec<(usize, Option<u16>, Instant, u32)>,
    ke_groups: Vec<(usize, Group)>,
}

/// Per-resource CHILD_SAs of one child the peer may make with us (RFC 9611 §4: beyond it,
/// TS_MAX_QUEUE): enough for one per CPU of a large peer.
const PER_RESOURCE_MAX: usize = 256;
/// How long a new CHILD_SA that failed (or a per-resource one the peer deleted) waits
/// before it is tried again; each further failure doubles it, up to [`CREATE_RETRY_MAX`].
const CREATE_RETRY: Duration = Duration::from_secs(30);
/// How long after a reauthentication whose new IKE SA did not come up the next is tried.
const REAUTH_RETRY: Duration = Duration::from_secs(60);
/// The longest wait between two tries of a new CHILD_SA.
const CREATE_RETRY_MAX: Duration = Duration::from_secs(3600);

impl std::fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeSa")
            .field("tunnel", &self.cfg.name)
            .field("initiator", &self.initiator)
            .field("state", &self.state)
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .finish_non_exhaustive()
    }
}

fn rand_u64() -> u64 {
    let b = crypto::random_bytes(8);
    u64::from_be_bytes(b.try_into().unwrap_or([1; 8])).max(1)
}

/// A fresh inbound SPI (never 0 or the reserved 1-255 range, RFC 4303 §2.1).
pub fn rand_spi() -> u32 {
    loop {
        let b = crypto::random_bytes(4);
        let s = u32::from_be_bytes(b.try_into().unwrap_or([0; 4]));
        if s > 255 {
            return s;
        }
    }
}

fn ts_from_prefix(p: &dataplane::net::IpPrefix) -> TrafficSelector {
    let (start, end) = prefix_range(p);
    TrafficSelector {
        ip_proto: 0,
        start_port: 0,
        end_port: 65535,
        start,
        end,
    }
}

fn prefix_range(p: &dataplane::net::IpPrefix) -> (IpAddr, IpAddr) {
    match p.addr() {
        IpAddr::V4(a) => {
            let base = u32::from(a);
            let host = if p.len() == 0 {
                u32::MAX
            } else {
                (1u32 << (32 - p.len())).wrapping_sub(1)
            };
            (IpAddr::V4(a), IpAddr::V4((base | host).into()))
        }
        IpAddr::V6(a) => {
            let base = u128::from(a);
            let host = if p.len() == 0 {
                u128::MAX
            } else {
                (1u128 << (128 - p.len())).wrapping_sub(1)
            };
            (IpAddr::V6(a), IpAddr::V6((base | host).into()))
        }
    }
}

fn addr_key(a: IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

/// Intersection of two selectors (RFC 7296 §2.9 narrowing), if any.
pub fn ts_intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    if a.start.is_ipv4() != b.start.is_ipv4() {
        return None;
    }
    let proto = match (a.ip_proto, b.ip_proto) {
        (0, p) | (p, 0) => p,
        (x, y) if x == y => x,
        _ => return None,
    };
    let start = if addr_key(a.start) >= addr_key(b.start) {
        a.start
    } else {
        b.start
    };
    let end = if addr_key(a.end) <= addr_key(b.end) {
        a.end
    } else {
        b.end
    };
    if addr_key(start) > addr_key(end) {
        return None;
    }
    let sp = a.start_port.max(b.start_port);
    let ep = a.end_port.min(b.end_port);
    if sp > ep {
        return None;
    }
    Some(TrafficSelector {
        ip_proto: proto,
        start_port: sp,
        end_port: ep,
        start,
        end,
    })
}

/// Narrows the peer's proposed selectors to our configured ones; empty if nothing overlaps.
fn narrow(proposed: &[TrafficSelector], ours: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for p in proposed {
        for o in ours {
            if let Some(x) = ts_intersect(p, o) {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// Retransmission delay before try `n` (0-based) of a request whose first timeout is `first`.
fn retx_delay(first: Duration, n: u32) -> Duration {
    first.mul_f64(RETX_BASE.powi(n as i32))
}

/// How long a request may go unanswered before the IKE SA is given up: the default schedule's
/// `RETX_TRIES` timeouts.
fn retx_budget() -> Duration {
    (0..RETX_TRIES).map(|n| retx_delay(RETX_FIRST, n)).sum()
}

/// The round-trip time of an IKE SA's exchanges, estimated as RFC 6298 §2 does for TCP, with
/// Karn's rule (only requests answered without a retransmission are timed). A lost request is
/// sent again after about the measured round trip instead of a fixed 2 s; this matters most to
/// a CHILD_SA rekeyed at a byte limit, which must be done before the hard limit.
#[derive(Debug, Clone, Copy, Default)]
struct RttEstimate {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimate {
    /// Takes one measured round trip.
    fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                self.rttvar = (self.rttvar * 3 + s.abs_diff(r)) / 4;
                self.srtt = Some((s * 7 + r) / 8);
            }
        }
    }

    /// The first retransmission timeout of the next request: `RETX_FIRST` until a round trip
    /// has been measured, then SRTT + max(G, 4 RTTVAR), within [`RTO_MIN`, `RETX_FIRST`].
    fn rto(&self) -> Duration {
        match self.srtt {
            None => RETX_FIRST,
            Some(s) => (s + (self.rttvar * 4).max(RTO_GRANULARITY)).clamp(RTO_MIN, RETX_FIRST),
        }
    }
}

/// Bytes of a synced field (hex), or why not.
fn unhex(h: &str, what: &str) -> Result<Vec<u8>, String> {
    dataplane::config::parse_hex_key(h)
        .map(|b| b.to_vec())
        .map_err(|e| format!("synced {what}: {e}"))
}

/// A synced request in flight, ready to go out again at once.
fn restore_pending(
    p: &PendingState,
    now: Instant,
    children: &[ChildConfig],
) -> Result<Pending, String> {
    let bytes = |h: &str| unhex(h, "request");
    let dh = |(g, h): &DhState| {
        DhPrivate::import(*g, &bytes(h)?).ok_or_else(|| "synced request: bad DH value".to_string())
    };
    let req = match &p.req {
        ReqState::Dpd => Req::Dpd,
        ReqState::DeleteChild { spi_in } => Req::DeleteChild { spi_in: *spi_in },
        ReqState::DeleteIke => Req::DeleteIke,
        ReqState::RekeyChild {
            old,
            spi_in,
            ni,
            dh: d,
            public,
        } => Req::RekeyChild {
            old: *old,
            spi_in: *spi_in,
            ni: bytes(ni)?,
            dh: d.as_ref().map(dh).transpose()?,
            public: bytes(public)?,
        },
        ReqState::CreateChild {
            child,
            worker,
            spi_in,
            ni,
            dh: d,
            public,
        } => Req::CreateChild {
            cfg: children
                .iter()
                .position(|c| &c.name == child)
                .ok_or_else(|| format!("synced request for child {child}: not configured here"))?,
            worker: *worker,
            spi_in: *spi_in,
            ni: bytes(ni)?,
            dh: d.as_ref().map(dh).transpose()?,
            public: bytes(public)?,
        },
        ReqState::RekeyIke {
            spi,
            ni,
            dh: d,
            public,
        } => Req::RekeyIke {
            spi: *spi,
            ni: bytes(ni)?,
            dh: dh(d)?,
            public: bytes(public)?,
            group: d.0,
        },
    };
    let data = p
        .datagrams
        .iter()
        .map(|h| bytes(h))
        .collect::<Result<Vec<_>, _>>()?;
    if data.is_empty() {
        return Err("synced request without datagrams".into());
    }
    Ok(Pending {
        id: p.id,
        data,
        tries: 0,
        next: now,
        first: now,
        rto: RETX_FIRST,
        hurried: false,
        req,
        // Synced as datagrams: carried on, it goes out as it was cut.
        recut: None,
    })
}

/// `time` less up to `rand` at random, so that both ends rarely rekey at once.
fn jittered(time: Duration, rand: Duration) -> Duration {
    let r = crypto::random_bytes(1)[0] as f64 / 255.0;
    time.saturating_sub(rand.min(time).mul_f64(r))
}

impl IkeSa {
    /// Whether the IKE SA reached its hard lifetime (swanctl's `over_time`, as strongSwan
    /// counts it: from the earlier of the rekey and the reauthentication): one of them was
    /// due, and first tried, `over_time` ago or more, and has not happened. Requiring an
    /// attempt gives a rekey its chance after a clock that jumped past its time.
    fn past_hard_lifetime(&self, now: Instant) -> bool {
        let over = self.cfg.ike_over_time();
        let past = |due: Option<Instant>, tried: Option<Instant>| {
            due.is_some_and(|d| now >= d + over) && tried.is_some_and(|t| now >= t + over)
        };
        !over.is_zero()
            && (past(self.rekey_due, self.rekey_tried) || past(self.reauth_due, self.reauth_tried))
    }

    /// Times for this IKE SA, which rekeyed `old` at `now`: its own rekey; the
    /// reauthentication's, which a rekey does not reset (it authenticates nothing).
    fn rekeyed_from(&mut self, old: &IkeSa, now: Instant) {
        let cfg = &self.cfg;
        self.ike_rekey_at = (!cfg.ike_lifetime.is_zero())
            .then(|| now + jittered(cfg.ike_lifetime, cfg.ike_rand_time()));
        self.rekey_due = self.ike_rekey_at;
        self.reauth_at = old.reauth_at;
        self.reauth_due = old.reauth_due;
        self.reauth_tried = old.reauth_tried;
    }

    fn new(
        cfg: Arc<TunnelConfig>,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> IkeSa {
        IkeSa {
            cfg,
            initiator,
            state: State::InitSent,
            spi_i: 0,
            spi_r: 0,
            local,
            remote,
            nat: false,
            chosen: None,
            keys: None,
            dh: None,
            group: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_req: Vec::new(),
            init_resp: Vec::new(),
            peer_hashes: Vec::new(),
            peer_id: None,
            cookie: None,
            init_refused: None,
            next_req_id: 0,
            peer_next_id: 0,
            last_resp: None,
            resp_recut: None,
            parked: None,
            fetch_verdict: None,
            pending: None,
            queue: Default::default(),
            rtt: RttEstimate::default(),
            children: Vec::new(),
            last_heard: now,
            established_at: None,
            stats: (0, 0),
            initial_contact: true,
            larval: None,
            ike_rekey_at: None,
            reauth_at: None,
            rekey_due: None,
            rekey_tried: None,
            reauth_due: None,
            reauth_tried: None,
            expired: false,
            lineage: rand_u64(),
            superseded: false,
            superseded_at: None,
            delete_by: None,
            reply_to: None,
            collision: None,
            delete_now: false,
            behind_nat: false,
            last_keepalive: now,
            created: now,
            ke_public: Vec::new(),
            ke_group: None,
            frag: Frag::new(),
            mid_slack: 0,
            resumed: false,
            resources: 0,
            to_create: Default::default(),
            create_after: Vec::new(),
            ke_groups: Vec::new(),
            no_more: Vec::new(),
        }
    }

    /// The data plane's worker count, for per-resource CHILD_SAs (RFC 9611).
    pub fn set_resources(&mut self, n: u16) {
        self.resources = n;
    }

    /// An authenticated message came from (or to) another address: with a NAT in between the
    /// peer's mapping changed (RFC 7296 §2.23: follow it); the CHILD_SAs' UDP-encapsulated ESP
    /// goes there too. Only the side that is not behind the NAT follows: for a host behind one,
    /// §2.23 says SHOULD NOT (one packet from elsewhere would break its tunnel); it keeps its own
    /// mapping alive with keepalives instead.
    fn follow(&mut self, local: SocketAddr, remote: SocketAddr, out: &mut Vec<Action>) {
        if local == self.local && remote == self.remote {
            return;
        }
        if self.state == State::Established && self.behind_nat {
            tracing::debug!(tunnel = %self.cfg.name, %remote, "a message from another address: not followed, we are behind a NAT");
            return;
        }
        if self.state == State::Established && !self.nat {
            // Without a NAT between us the peer's address is the configured one: IKE moving
            // elsewhere while ESP stays would split the two (moving both is MOBIKE's job,
            // RFC 4555). The response still goes where the request came from (§2.11).
            tracing::debug!(tunnel = %self.cfg.name, %remote, "a message from another address: not followed, no NAT was detected");
            return;
        }
        let moved = self.state == State::Established && self.nat && remote != self.remote;
        self.local = local;
        self.remote = remote;
        if moved && !self.children.is_empty() {
            tracing::info!(tunnel = %self.cfg.name, %remote, "the peer's NAT mapping changed: following it");
            out.push(Action::PeerMoved {
                tunnel: self.cfg.name.clone(),
                spis_in: self.children.iter().map(|c| c.spi_in).collect(),
                local,
                remote,
            });
        }
    }

    /// The last response we sent (for retransmitted requests), if it was one datagram (an
    /// IKE_SA_INIT response always is).
    pub fn cached_response(&self) -> Option<Vec<u8>> {
        match self.last_resp.as_ref().map(|(_, d)| d.as_slice()) {
            Some([one]) => Some(one.clone()),
            _ => None,
        }
    }

    /// IKE fragmentation counters, and whether it was negotiated (RFC 7383).
    pub fn fragmentation(&self) -> (bool, frag::Stats) {
        (self.frag.negotiated, self.frag.stats)
    }

    /// The datagram size IKE messages are cut to since a message cut smaller got through
    /// (RFC 7383 §2.5.2), if one did.
    pub fn fragment_path_size(&self) -> Option<usize> {
        self.frag.path_size
    }

    /// [`Self::fragment_path_size`] and when it was learnt.
    pub fn fragment_path_learnt(&self) -> Option<(usize, Instant)> {
        self.frag.path_size.zip(self.frag.path_learnt)
    }

    /// Uses a datagram size another IKE SA between the same addresses got through at (kept by
    /// the daemon): a new IKE SA starts there instead of probing down from `fragment_size`
    /// again, and a live one without a size (or with one learnt earlier) takes it.
    pub fn start_from_path_size(&mut self, size: usize, learnt: Instant) {
        self.frag.path_size = Some(size);
        self.frag.path_learnt = Some(learnt);
        tracing::info!(tunnel = %self.cfg.name, size, "IKE messages cut to the datagram size another IKE SA learnt for this path");
    }

    /// Established, with every configured CHILD_SA it was to make made (or refused and
    /// waiting for another try) and no request out: what a reauthentication waits for before
    /// the IKE SA it replaces goes.
    pub fn children_settled(&self) -> bool {
        self.state == State::Established
            && self.pending.is_none()
            && self
                .to_create
                .iter()
                .all(|c| self.create_after.iter().any(|x| (x.0, x.1) == (*c, None)))
    }

    /// Our SPI: the one the daemon indexes this SA by.
    pub fn our_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    /// The negotiated IKE algorithms, strongSwan style.
    pub fn algorithms(&self) -> String {
        self.chosen.map(|c| c.as_set().name()).unwrap_or_default()
    }

    /// Starts a tunnel as initiator: builds and sends IKE_SA_INIT.
    pub fn initiate(
        cfg: Arc<TunnelConfig>,
        now: Instant,
        initial_contact: bool,
    ) -> (IkeSa, Vec<Action>) {
        let local = SocketAddr::new(cfg.local, IKE_PORT);
        let remote = SocketAddr::new(cfg.remote, IKE_PORT);
        Self::initiate_between(cfg, now, initial_contact, local, remote)
    }

    /// [`IkeSa::initiate`] from `local` to `remote` (a reauthentication goes where the IKE SA
    /// it replaces talks: the peer may have moved behind a NAT, and with a NAT both sides are
    /// on port 4500 already, RFC 7296 §2.23).
    pub fn initiate_between(
        cfg: Arc<TunnelConfig>,
        now: Instant,
        initial_contact: bool,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> (IkeSa, Vec<Action>) {
        let mut sa = IkeSa::new(cfg, true, local, remote, now);
        sa.initial_contact = initial_contact;
        sa.spi_i = rand_u64();
        sa.group = sa
            .cfg
            .ike_proposals
            .first()
            .and_then(|p| p.dh.first().copied());
        let mut out = Vec::new();
        sa.send_init(now, &mut out);
        (sa, out)
    }

    fn send_init(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.init_refused = None;
        let group = self.group.unwrap_or(Group::Modp2048);
        // A retry with a cookie repeats the same nonce and KE (§2.6); a new group needs a
        // new KE.
        if self.dh.is_none() || self.ke_group != Some(group) {
            let (dh, public) = DhPrivate::generate(group);
            self.dh = Some(dh);
            self.ke_public = public;
            self.ke_group = Some(group);
        }
        if self.ni.is_empty() {
            self.ni = crypto::random_bytes(32);
        }
        let public = self.ke_public.clone();
        let mut payloads = Vec::new();
        if let Some(c) = &self.cookie {
            payloads.push(Payload::notify(notify::COOKIE, c.clone()));
        }
        // Proposals whose group is not the KE's group still go out: the responder may ask
        // for another group with INVALID_KE_PAYLOAD (§1.2).
        let props = self
            .cfg
            .ike_proposals
            .iter()
            .enumerate()
            .map(|(i, a)| a.to_proposal(i as u8 + 1, proto::IKE, Vec::new()))
            .collect();
        payloads.push(Payload::Sa(props));
        payloads.push(Payload::Ke {
            group: group.id(),
            data: public,
        });
        payloads.push(Payload::Nonce(self.ni.clone()));
        payloads.push(Payload::notify(
            notify::NAT_DETECTION_SOURCE_IP,
            crypto::nat_hash(self.spi_i, 0, self.local),
        ));
        payloads.push(Payload::notify(
            notify::NAT_DETECTION_DESTINATION_IP,
            crypto::nat_hash(self.spi_i, 0, self.remote),
        ));
        if matches!(self.cfg.auth, Auth::Pubkey(_)) {
            payloads.push(Payload::notify(
                notify::SIGNATURE_HASH_ALGORITHMS,
                pki::supported_hashes(),
            ));
        }
        if self.cfg.fragmentation {
            payloads.push(Payload::notify(
                notify::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
        }
        let h = self.header(exchange::IKE_SA_INIT, false, 0);
        let data = Message::emit(h, &payloads);
        self.init_req = data.clone();
        self.state = State::InitSent;
        self.send_request(now, 0, (vec![data], None), Req::Init, out);
    }

    fn header(&self, exch: u8, response: bool, msg_id: u32) -> Header {
        let mut f = 0;
        if self.initiator {
            f |= flags::INITIATOR;
        }
        if response {
            f |= flags::RESPONSE;
        }
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next: 0,
            version: 0x20,
            exchange: exch,
            flags: f,
            msg_id,
            length: 0,
        }
    }

    fn send_request(
        &mut self,
        now: Instant,
        id: u32,
        (data, recut): (Vec<Vec<u8>>, Option<Recut>),
        req: Req,
        out: &mut Vec<Action>,
    ) {
        self.send_all(&data, out);
        self.stats.0 += 1;
        let rto = self.rtt.rto();
        tracing::debug!(tunnel = %self.cfg.name, message_id = id, timeout_ms = rto.as_millis() as u64, "request sent");
        self.pending = Some(Pending {
            id,
            data,
            tries: 0,
            next: now + rto,
            first: now,
            rto,
            hurried: false,
            req,
            recut,
        });
    }

    fn codec(&self) -> Option<SkCodec<'_>> {
        self.keys.as_ref().map(|keys| SkCodec {
            keys,
            initiator: self.initiator,
        })
    }

    /// Sends an encrypted request if the window (size 1) is free, else queues it.
    fn request(&mut self, now: Instant, req: Req, out: &mut Vec<Action>) {
        if self.pending.is_some() {
            self.queue.push_back(req);
            return;
        }
        let (exch, payloads) = match &req {
            Req::Dpd => (exchange::INFORMATIONAL, Vec::new()),
            Req::DeleteChild { spi_in } => (
                exchange::INFORMATIONAL,
                vec![Payload::Delete {
                    protocol: proto::ESP,
                    spis: vec![spi_in.to_be_bytes().to_vec()],
                }],
            ),
            Req::DeleteIke => (
                exchange::INFORMATIONAL,
                vec![Payload::Delete {
                    protocol: proto::IKE,
                    spis: Vec::new(),
                }],
            ),
            Req::RekeyChild {
                old,
                spi_in,
                ni,
                dh,
                public,
            } => {
                let Some(c) = self.children.iter().find(|c| c.spi_in == *old) else {
                    return;
                };
                let ccfg = &self.cfg.children[c.cfg];
                let rekey = Payload::Notify(Notify {
                    protocol: proto::ESP,
                    spi: c.spi_in.to_be_bytes().to_vec(),
                    ntype: notify::REKEY_SA,
                    data: Vec::new(),
                });
                let p = child_request(
                    ccfg,
                    vec![rekey],
                    *spi_in,
                    ni,
                    dh.as_ref().map(|d| (d.group(), public.as_slice())),
                    (c.local_ts.clone(), c.remote_ts.clone()),
                );
                (exchange::CREATE_CHILD_SA, p)
            }
            Req::CreateChild {
                cfg,
                worker,
                spi_in,
                ni,
                dh,
                public,
            } => {
                let ccfg = &self.cfg.children[*cfg];
                let mut lead = Vec::new();
                // RFC 9611 §4: the fallback says it without data, a per-resource CHILD_SA
                // with its resource's number (for the peer's logs only).
                if ccfg.per_cpu_sas {
                    let id = worker.map_or_else(Vec::new, |w| u32::from(w).to_be_bytes().to_vec());
                    lead.push(Payload::notify(notify::SA_RESOURCE_INFO, id));
                }
                // RFC 9611 §4: a per-resource CHILD_SA has its group's selectors.
                let group = self
                    .children
                    .iter()
                    .find(|c| c.cfg == *cfg && c.per_resource && worker.is_some());
                let ts = match group {
                    Some(c) => (c.local_ts.clone(), c.remote_ts.clone()),
                    None => (
                        ccfg.local_ts.iter().map(ts_from_prefix).collect(),
                        ccfg.remote_ts.iter().map(ts_from_prefix).collect(),
                    ),
                };
                let ke = dh.as_ref().map(|d| (d.group(), public.as_slice()));
                let p = child_request(ccfg, lead, *spi_in, ni, ke, ts);
                (exchange::CREATE_CHILD_SA, p)
            }
            Req::RekeyIke {
                spi,
                ni,
                public,
                group,
                ..
            } => {
                let props = self
                    .cfg
                    .ike_proposals
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        a.to_proposal(i as u8 + 1, proto::IKE, spi.to_be_bytes().to_vec())
                    })
                    .collect();
                (
                    exchange::CREATE_CHILD_SA,
                    vec![
                        Payload::Sa(props),
                        Payload::Nonce(ni.clone()),
                        Payload::Ke {
                            group: group.id(),
                            data: public.clone(),
                        },
                    ],
                )
            }
            Req::Init | Req::Auth { .. } => return,
        };
        let id = self.next_req_id;
        self.next_req_id += 1;
        let sealed = self.seal_with_recut(self.header(exch, false, id), &payloads);
        self.send_request(now, id, sealed, req, out);
    }

    /// A message's datagrams: one SK message, or SKF fragments when fragmentation was
    /// negotiated and the message would make a datagram above `fragment_size` (or the smaller
    /// size a cut request was last answered at) (RFC 7383 §2.5).
    fn seal(&self, h: Header, payloads: &[Payload]) -> Vec<Vec<u8>> {
        self.seal_with_recut(h, payloads).0
    }

    /// [`Self::seal`], and for a message that a smaller datagram size is left to try, what a
    /// retransmission (of a request, or of a response to a retransmitted request) needs to cut
    /// it again.
    fn seal_with_recut(&self, h: Header, payloads: &[Payload]) -> (Vec<Vec<u8>>, Option<Recut>) {
        let Some(c) = self.codec() else {
            return (vec![Message::emit(h, payloads)], None);
        };
        let plain = zeroize::Zeroizing::new(wire::emit_chain(payloads));
        let inner = wire::first_type(payloads);
        if !self.frag.negotiated {
            return (frag::seal(&c, h, inner, &plain, None), None);
        }
        let below = frag::transport_overhead(self.local, self.remote);
        let size = self
            .frag
            .path_size
            .map_or(self.cfg.fragment_size, |s| s.min(self.cfg.fragment_size));
        let data = frag::seal(&c, h, inner, &plain, Some(size.saturating_sub(below)));
        let largest = data.iter().map(Vec::len).max().unwrap_or(0) + below;
        let recut = frag::smaller_datagram(largest, self.remote.is_ipv6()).map(|_| Recut {
            header: h,
            inner,
            plain,
            largest,
            sends: 1,
            since: None,
            cut: false,
        });
        (data, recut)
    }

    /// A retransmission's datagrams: `data` again, or, after [`SENDS_BEFORE_RECUT`] sends of
    /// the same datagrams over [`RECUT_AFTER`] went unanswered, the message cut to the next
    /// smaller size. `first`: when the message was first sent (a response's [`Recut`] carries
    /// its own).
    fn recut(
        &mut self,
        now: Instant,
        first: Instant,
        data: Vec<Vec<u8>>,
        recut: &mut Option<Recut>,
    ) -> Vec<Vec<u8>> {
        let Some(r) = recut else { return data };
        r.sends += 1;
        let since = r.since.unwrap_or(first);
        if r.sends <= SENDS_BEFORE_RECUT || now.saturating_duration_since(since) < RECUT_AFTER {
            return data;
        }
        let Some(size) = frag::smaller_datagram(r.largest, self.remote.is_ipv6()) else {
            return data;
        };
        let Some(c) = self.codec() else { return data };
        let below = frag::transport_overhead(self.local, self.remote);
        // More fragments than the last cut (of a whole message: two), of even size.
        let cut = frag::seal_min(
            &c,
            r.header,
            r.inner,
            &r.plain,
            Some(size - below),
            data.len() + 1,
        );
        tracing::info!(
            tunnel = %self.cfg.name,
            message_id = r.header.msg_id,
            sends = r.sends - 1,
            largest = r.largest,
            size,
            fragments = cut.len(),
            "no answer to datagrams this large: cutting the {} smaller (RFC 7383 §2.5.2)",
            if r.header.is_response() { "response" } else { "request" }
        );
        r.largest = cut.iter().map(Vec::len).max().unwrap_or(0) + below;
        r.sends = 1;
        r.since = Some(now);
        r.cut = true;
        self.frag.stats.recut += 1;
        cut
    }

    /// Sends the datagrams of one message.
    fn send_all(&mut self, data: &[Vec<u8>], out: &mut Vec<Action>) {
        self.send_all_to(data, (self.local, self.remote), out);
    }

    /// Sends a response: to where the request being handled came from, else to the peer.
    fn send_response(&mut self, data: &[Vec<u8>], out: &mut Vec<Action>) {
        let to = self.reply_to.unwrap_or((self.local, self.remote));
        self.send_all_to(data, to, out);
    }

    fn send_all_to(
        &mut self,
        data: &[Vec<u8>],
        (local, remote): (SocketAddr, SocketAddr),
        out: &mut Vec<Action>,
    ) {
        if data.len() > 1 {
            self.frag.stats.sent += data.len() as u64;
        }
        for d in data {
            out.push(Action::Send {
                local,
                remote,
                data: d.clone(),
            });
        }
    }

    fn respond(&mut self, exch: u8, id: u32, payloads: &[Payload], out: &mut Vec<Action>) {
        let (data, recut) = self.seal_with_recut(self.header(exch, true, id), payloads);
        self.send_response(&data, out);
        tracing::debug!(tunnel = %self.cfg.name, exchange = exch, message_id = id, "response sent");
        self.last_resp = Some((id, data));
        // `since` is stamped by `handle`, which knows the time.
        self.resp_recut = recut;
        self.peer_next_id = id.wrapping_add(1);
        self.stats.0 += 1;
    }

    /// Handles a datagram for this SA. `local` is where it arrived, `remote` where it came from.
    pub fn handle(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        out: &mut Vec<Action>,
    ) {
        self.reply_to = Some((local, remote));
        self.handle_datagram(now, local, remote, data, out);
        self.reply_to = None;
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        out: &mut Vec<Action>,
    ) {
        let Ok(msg) = Message::parse(data) else {
            tracing::debug!(tunnel = %self.cfg.name, "malformed IKE message dropped");
            return;
        };
        let h = msg.header;
        // A message's "Initiator" flag must say the other side's role.
        if h.is_initiator() == self.initiator {
            return;
        }
        if h.is_response() {
            let Some(p) = &self.pending else { return };
            if p.id != h.msg_id {
                return;
            }
            let payloads = match self.decrypt(&msg, data) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(tunnel = %self.cfg.name, "response dropped: {e}");
                    return;
                }
            };
            if h.exchange == exchange::IKE_SA_INIT && self.keys.is_none() {
                // An error answer is not acted on at once (§2.21.1): the request stays out,
                // and a real answer that follows a forged one still completes the exchange.
                if let Some(code) = self.init_refusal(&payloads) {
                    if self.init_refused.is_none() {
                        tracing::info!(tunnel = %self.cfg.name, notify = code,
                            "IKE_SA_INIT answered with an error (unauthenticated): waiting {}s for another answer",
                            INIT_ERROR_WAIT.as_secs());
                        self.init_refused = Some((code, now));
                    }
                    return;
                }
            }
            self.stats.1 += 1;
            self.last_heard = now;
            self.resumed = false;
            tracing::debug!(tunnel = %self.cfg.name, exchange = h.exchange, message_id = h.msg_id, "response received");
            let pending = self.pending.take().map(|p| {
                // Karn: a retransmitted request's answer may be to any of its copies.
                if p.tries == 0 && !p.hurried {
                    self.rtt.sample(now.saturating_duration_since(p.first));
                }
                // A request cut smaller got through: later messages use that size (§2.5.2).
                if let Some(r) = p.recut.as_ref().filter(|r| r.cut) {
                    self.learn_path_size(r.largest, now);
                }
                p.req
            });
            if h.exchange == exchange::IKE_SA_INIT {
                self.spi_r = h.spi_r;
                self.init_resp = data.to_vec();
            }
            // Follow the peer's address (NAT mapping change) once it is authenticated.
            if self.state == State::Established || h.exchange != exchange::IKE_SA_INIT {
                self.follow(local, remote, out);
            }
            if let Some(req) = pending {
                self.on_response(now, h, &msg, payloads, req, local, remote, out);
            }
            if self.pending.is_none() {
                if let Some(req) = self.queue.pop_front() {
                    self.request(now, req, out);
                }
            }
        } else {
            if self
                .last_resp
                .as_ref()
                .is_some_and(|(id, _)| *id == h.msg_id)
            {
                // A retransmitted request: send the same response again (§2.1); of a
                // fragmented one, only fragment 1 asks for it (RFC 7383 §2.6.1).
                if !Frag::retransmit_trigger(self.codec().as_ref(), &msg, data) {
                    return;
                }
                // (Fragment 1 of an SKF message was verified just above.) A retransmission is
                // bitwise the request (§2.1), so one that does not verify is forged: anyone
                // who saw the SPIs and message ID could otherwise have the whole response,
                // every fragment, sent again, and to any address (it goes where the request
                // came from). Only our IKE_SA_INIT answer, while it is the last one we sent,
                // answers an unprotected request (the header says what it likes: our state
                // decides).
                let skf = matches!(msg.payloads.last(), Some(Payload::Skf { .. }));
                let init = self.state == State::InitDone
                    && h.exchange == exchange::IKE_SA_INIT
                    && h.msg_id == 0;
                if !init && !skf && !self.sk_verifies(&msg, data) {
                    tracing::debug!(tunnel = %self.cfg.name, message_id = h.msg_id,
                        "a retransmission that does not verify: dropped");
                    return;
                }
                if let Some((_, d)) = self.last_resp.take() {
                    // A response the path keeps dropping is cut smaller, as a request is (only
                    // retransmissions that verify reach here).
                    let mut recut = self.resp_recut.take();
                    let d = if !init {
                        self.recut(now, now, d, &mut recut)
                    } else {
                        d
                    };
                    self.resp_recut = recut;
                    self.send_response(&d, out);
                    self.last_resp = Some((h.msg_id, d));
                }
                return;
            }
            if self.parked.is_some() {
                // Its IKE_AUTH waits for a revocation fetch: the peer retransmits.
                tracing::debug!(tunnel = %self.cfg.name, message_id = h.msg_id,
                    "request while the peer certificate's status is fetched: dropped");
                return;
            }
            let ahead = h.msg_id.wrapping_sub(self.peer_next_id);
            if ahead != 0 && (ahead > self.mid_slack || self.keys.is_none()) {
                return;
            }
            let payloads = match self.decrypt(&msg, data) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(Unusable::Refuse(n, d, e)) => {
                    // Authentic, so answered (the peer would otherwise retransmit until it
                    // gives the IKE SA up): §2.5 (UNSUPPORTED_CRITICAL_PAYLOAD), §3.10.1.
                    tracing::info!(tunnel = %self.cfg.name, "request refused: {e}");
                    self.last_heard = now;
                    self.mid_slack = 0;
                    self.respond(h.exchange, h.msg_id, &[Payload::notify(n, d)], out);
                    return;
                }
                Err(e) => {
                    tracing::info!(tunnel = %self.cfg.name, "request dropped: {e}");
                    return;
                }
            };
            // The first request an IKE SA carried on from the other gateway takes may be one
            // that gateway already took after its last snapshot, replayed by anyone who saw
            // it: answered, but not followed to its source (RFC 7296 §2.23: only a new packet
            // may move the peer's address).
            let maybe_replayed = self.mid_slack != 0;
            if self.mid_slack != 0 {
                if ahead != 0 {
                    tracing::info!(tunnel = %self.cfg.name, expected = self.peer_next_id, got = h.msg_id,
                        "synced IKE SA: the peer's message IDs ran ahead of the last snapshot; following them");
                }
                self.mid_slack = 0;
            }
            self.stats.1 += 1;
            self.last_heard = now;
            tracing::debug!(tunnel = %self.cfg.name, exchange = h.exchange, message_id = h.msg_id, "request received");
            if self.keys.is_some() && !maybe_replayed {
                self.follow(local, remote, out);
            }
            // A new request: the peer has our last response. If that was cut smaller to get
            // through, later messages use that size (§2.5.2).
            if let Some(r) = self.resp_recut.take().filter(|r| r.cut) {
                self.learn_path_size(r.largest, now);
            }
            self.on_request(now, h, payloads, out);
            if let Some(r) = self.resp_recut.as_mut() {
                r.since.get_or_insert(now);
            }
        }
    }

    /// A message cut to datagrams of at most `size` bytes got through.
    fn learn_path_size(&mut self, size: usize, now: Instant) {
        self.frag.path_size = Some(size);
        self.frag.path_learnt = Some(now);
        tracing::info!(tunnel = %self.cfg.name, size, "IKE messages now cut to datagrams of at most this size");
    }

    /// Whether a message ending in an SK payload verifies under our keys.
    fn sk_verifies(&self, msg: &Message, data: &[u8]) -> bool {
        match (self.codec(), msg.payloads.last()) {
            (Some(codec), Some(Payload::Sk { body, .. })) => {
                codec.open_message(data, sk_offset(data, body), 0).is_ok()
            }
            _ => false,
        }
    }

    /// The message's payloads, the SK payload's decrypted; None while an SKF message waits
    /// for the rest of its fragments.
    fn decrypt(&mut self, msg: &Message, data: &[u8]) -> Result<Option<Vec<Payload>>, Unusable> {
        match msg.payloads.last() {
            Some(Payload::Sk { inner, body }) => {
                let codec = self
                    .codec()
                    .ok_or(Unusable::drop("encrypted payload before keys"))?;
                let plain = codec
                    .open_message(data, sk_offset(data, body), 0)
                    .map_err(Unusable::drop)?;
                let mut v: Vec<Payload> = msg.payloads[..msg.payloads.len() - 1].to_vec();
                v.extend(wire::parse_chain(*inner, &plain).map_err(Unusable::refuse)?);
                Ok(Some(v))
            }
            Some(Payload::Skf { .. }) => {
                let keys = self
                    .keys
                    .as_ref()
                    .ok_or(Unusable::drop("encrypted fragment before keys"))?;
                let codec = SkCodec {
                    keys,
                    initiator: self.initiator,
                };
                let Some((inner, plain)) = self
                    .frag
                    .accept(&codec, msg, data)
                    .map_err(Unusable::drop)?
                else {
                    return Ok(None);
                };
                // RFC 7383 §2.5.3: unprotected payloads travel in fragment 1 only; there are
                // none in the exchanges we speak, so the reassembled chain is the message.
                let v = wire::parse_chain(inner, &plain).map_err(Unusable::refuse)?;
                Ok(Some(v))
            }
            _ => {
                // Everything after IKE_SA_INIT must be protected (§3.14): the only message an
                // SA takes unprotected is the answer to its own IKE_SA_INIT (message ID 0,
                // no keys yet). Anyone who has seen the SPIs and message IDs could otherwise
                // answer a later request (a DPD check, a rekey, IKE_AUTH) or send one, and
                // move the peer's address with it.
                let h = msg.header;
                if h.exchange != exchange::IKE_SA_INIT
                    || !h.is_response()
                    || h.msg_id != 0
                    || self.keys.is_some()
                {
                    return Err(Unusable::drop("unprotected message"));
                }
                Ok(Some(msg.payloads.clone()))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_response(
        &mut self,
        now: Instant,
        h: Header,
        msg: &Message,
        payloads: Vec<Payload>,
        req: Req,
        local: SocketAddr,
        remote: SocketAddr,
        out: &mut Vec<Action>,
    ) {
        let errors: Vec<&Notify> = notifies(&payloads)
            .filter(|n| n.ntype < notify::FIRST_STATUS)
            .collect();
        match req {
            Req::Init => {
                if let Some(c) = notifies(&payloads).find(|n| n.ntype == notify::COOKIE) {
                    self.cookie = Some(c.data.clone());
                    self.send_init(now, out);
                    return;
                }
                if let Some(n) = errors
                    .iter()
                    .find(|n| n.ntype == notify::INVALID_KE_PAYLOAD)
                {
                    if let Some(g) = self.ike_group_asked(&n.data) {
                        tracing::info!(tunnel = %self.cfg.name, group = g.name(), "peer asks for another DH group");
                        self.group = Some(g);
                        self.spi_r = 0;
                        self.send_init(now, out);
                        return;
                    }
                }
                if !errors.is_empty() {
                    self.fail(
                        format!("IKE_SA_INIT refused: notify {}", errors[0].ntype),
                        out,
                    );
                    return;
                }
                let _ = msg;
                if let Err(e) = self.complete_init_as_initiator(h, &payloads, local, remote) {
                    self.fail(format!("IKE_SA_INIT response: {e}"), out);
                    return;
                }
                self.send_auth(now, out);
            }
            Req::Auth { child, spi_in } => {
                self.auth_response(now, payloads, child, spi_in, out);
            }
            Req::Dpd => {}
            Req::DeleteChild { spi_in } => {
                if let Some(pos) = self.children.iter().position(|c| c.spi_in == spi_in) {
                    let c = self.children.remove(pos);
                    out.push(self.removal(&c));
                }
            }
            Req::DeleteIke => {
                let why = if self.superseded {
                    "rekeyed"
                } else if self.expired {
                    "expired (over_time)"
                } else {
                    "deleted"
                };
                let restart = self.restarts_when_expired();
                self.close(why.into(), restart, out);
            }
            Req::RekeyIke {
                spi, ni, dh, group, ..
            } => {
                if let Err(e) = self.complete_rekey_ike(now, &payloads, spi, &ni, dh, group, out) {
                    if let Some((_, _, theirs)) = self.collision.take() {
                        // Ours failed but the peer's went through: its SA takes over.
                        out.push(Action::MoveChildren {
                            to: theirs,
                            children: std::mem::take(&mut self.children),
                            creation: Box::new(self.take_creation()),
                        });
                        self.superseded = true;
                        self.superseded_at = Some(now);
                    } else {
                        tracing::warn!(tunnel = %self.cfg.name, "IKE SA rekey failed: {e}");
                        self.ike_rekey_at = Some(now + Duration::from_secs(10));
                    }
                }
            }
            Req::RekeyChild {
                old,
                spi_in,
                ni,
                dh,
                ..
            } => {
                let sent = dh.as_ref().map(|d| d.group());
                if let Err(e) = self.complete_rekey_child(now, &payloads, old, spi_in, &ni, dh, out)
                {
                    tracing::warn!(tunnel = %self.cfg.name, "CHILD_SA rekey failed: {e}");
                    self.rekey_child_failed(now, &payloads, old, sent, out);
                }
            }
            Req::CreateChild {
                cfg,
                worker,
                spi_in,
                ni,
                dh,
                ..
            } => {
                let r =
                    self.complete_create_child(now, &payloads, cfg, worker, spi_in, &ni, dh, out);
                match r {
                    // A per-resource CHILD_SA keeps its count: one the peer deletes as idle
                    // again and again is asked for less and less often.
                    Ok(()) if worker.is_none() => {
                        self.create_after.retain(|x| (x.0, x.1) != (cfg, worker))
                    }
                    Ok(()) => {}
                    Err((e, true)) => {
                        tracing::info!(tunnel = %self.cfg.name, child = %self.cfg.children[cfg].name,
                            worker = ?worker, "CHILD_SA not created: {e}; asking again");
                        if worker.is_none() && !self.to_create.contains(&cfg) {
                            self.to_create.push_front(cfg);
                        }
                    }
                    Err((e, false)) => {
                        let wait = self.create_failed(now, cfg, worker);
                        tracing::warn!(tunnel = %self.cfg.name, child = %self.cfg.children[cfg].name,
                            worker = ?worker, retry_in_s = wait.as_secs(), "CHILD_SA not created: {e}");
                        // A configured child is asked for again (a per-resource one comes
                        // back by itself while its worker has none).
                        if worker.is_none() && !self.to_create.contains(&cfg) {
                            self.to_create.push_back(cfg);
                        }
                    }
                }
            }
        }
    }

    /// The group an INVALID_KE_PAYLOAD to our IKE_SA_INIT asks for, if one of our proposals has it.
    fn ike_group_asked(&self, data: &[u8]) -> Option<Group> {
        let id: [u8; 2] = data.try_into().ok()?;
        Group::from_id(u16::from_be_bytes(id))
            .filter(|g| self.cfg.ike_proposals.iter().any(|p| p.dh.contains(g)))
    }

    /// The error an IKE_SA_INIT answer refuses our request with: None for a normal answer, a
    /// COOKIE request, or an INVALID_KE_PAYLOAD that names a group we can offer (§2.21.1: the
    /// corrective actions RFC 7296 defines are taken at once).
    fn init_refusal(&self, payloads: &[Payload]) -> Option<u16> {
        if notifies(payloads).any(|n| {
            n.ntype == notify::COOKIE
                || (n.ntype == notify::INVALID_KE_PAYLOAD
                    && self.ike_group_asked(&n.data).is_some())
        }) {
            return None;
        }
        notifies(payloads)
            .find(|n| n.ntype < notify::FIRST_STATUS)
            .map(|n| n.ntype)
    }

    fn fail(&mut self, reason: String, out: &mut Vec<Action>) {
        tracing::warn!(tunnel = %self.cfg.name, "{reason}");
        let restart = self.initiator && self.state != State::Established;
        self.close(reason, restart, out);
    }

    /// Drops this IKE SA and its CHILD_SAs without a word to the peer: its local address now
    /// belongs to the other gateway of a VRRP pair, which takes the peer over.
    pub fn abandon(&mut self, reason: String, out: &mut Vec<Action>) {
        if self.state != State::Dead {
            self.close(reason, false, out);
        }
    }

    /// Established and current (not rekeyed away, not being deleted): what the other gateway
    /// of a VRRP pair may carry on.
    fn exportable(&self) -> bool {
        self.state == State::Established && !self.superseded && !self.delete_now
    }

    /// What of [`IkeSa::export`] the other gateway must hear of at once when it changes: the
    /// SPIs and message IDs (None when it would not be exported). Cheap: no keys encoded.
    pub fn sync_marks(&self) -> Option<(u64, u64, u32, u32, bool)> {
        self.exportable().then(|| {
            (
                self.spi_i,
                self.spi_r,
                self.next_req_id,
                self.peer_next_id,
                self.pending.is_some(),
            )
        })
    }

    /// The request in flight as [`PendingState`]; None if there is none, or it is too large.
    fn export_pending(&self) -> Option<PendingState> {
        let p = self.pending.as_ref()?;
        if p.data.iter().map(Vec::len).sum::<usize>() > SYNC_PENDING_MAX {
            return None;
        }
        let hex = |b: &[u8]| dataplane::ctl::hex(b).to_string();
        let dh = |d: &DhPrivate| {
            let (g, b) = d.export();
            (g, dataplane::ctl::hex(&b))
        };
        let req = match &p.req {
            Req::Dpd => ReqState::Dpd,
            Req::DeleteChild { spi_in } => ReqState::DeleteChild { spi_in: *spi_in },
            Req::DeleteIke => ReqState::DeleteIke,
            Req::RekeyChild {
                old,
                spi_in,
                ni,
                dh: d,
                public,
            } => ReqState::RekeyChild {
                old: *old,
                spi_in: *spi_in,
                ni: hex(ni),
                dh: d.as_ref().map(dh),
                public: hex(public),
            },
            Req::RekeyIke {
                spi,
                ni,
                dh: d,
                public,
                ..
            } => ReqState::RekeyIke {
                spi: *spi,
                ni: hex(ni),
                dh: dh(d),
                public: hex(public),
            },
            Req::CreateChild {
                cfg,
                worker,
                spi_in,
                ni,
                dh: d,
                public,
            } => ReqState::CreateChild {
                child: self.cfg.children.get(*cfg)?.name.clone(),
                worker: *worker,
                spi_in: *spi_in,
                ni: hex(ni),
                dh: d.as_ref().map(dh),
                public: hex(public),
            },
            Req::Init | Req::Auth { .. } => return None,
        };
        Some(PendingState {
            id: p.id,
            datagrams: p.data.iter().map(|d| hex(d)).collect(),
            req,
        })
    }

    /// This IKE SA as the other gateway of a VRRP pair needs it to carry on (`ha:`): None
    /// unless it is established and current (not rekeyed away, not being deleted).
    pub fn export(&self, now: Instant) -> Option<IkeSaState> {
        if !self.exportable() {
            return None;
        }
        let keys = self.keys.as_ref()?;
        let chosen = self.chosen?;
        let hex = dataplane::ctl::hex;
        // A request in flight goes along, for the other gateway to send again; one that cannot
        // may never have reached the peer: its ID is then the next one to use (if the peer did
        // answer it, a request with that ID gets the same answer again).
        let pending = self.export_pending();
        // A new child's request in flight that does not travel is asked for anew.
        let mut to_create: Vec<usize> = self.to_create.iter().copied().collect();
        if let (
            None,
            Some(Req::CreateChild {
                cfg, worker: None, ..
            }),
        ) = (&pending, self.pending.as_ref().map(|p| &p.req))
        {
            to_create.push(*cfg);
        }
        let names = |v: &[usize]| -> Vec<String> {
            v.iter()
                .filter_map(|c| self.cfg.children.get(*c))
                .map(|c| c.name.clone())
                .collect()
        };
        let next_req_id = match (&pending, &self.pending) {
            (None, Some(p)) => p.id,
            _ => self.next_req_id,
        };
        let last_resp = self.last_resp.as_ref().and_then(|(id, d)| {
            (d.iter().map(Vec::len).sum::<usize>() <= SYNC_RESPONSE_MAX)
                .then(|| (*id, d.iter().map(|b| hex(b).to_string()).collect()))
        });
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs();
        let mut st = IkeSaState {
            tunnel: self.cfg.name.clone(),
            initiator: self.initiator,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            local: self.local,
            remote: self.remote,
            nat: self.nat,
            behind_nat: self.behind_nat,
            chosen,
            keys: [
                hex(&keys.sk_d),
                hex(&keys.sk_ai),
                hex(&keys.sk_ar),
                hex(&keys.sk_ei),
                hex(&keys.sk_er),
                hex(&keys.sk_pi),
                hex(&keys.sk_pr),
            ],
            next_req_id,
            peer_next_id: self.peer_next_id,
            last_resp,
            frag: self.frag.negotiated,
            frag_path_size: self.frag.path_size,
            peer_hashes: self.peer_hashes.clone(),
            peer_id: self.peer_id.clone(),
            age_s: self.established_at.map_or(0, secs),
            rekey_in_s: self
                .ike_rekey_at
                .map(|t| t.saturating_duration_since(now).as_secs()),
            reauth_in_s: self
                .reauth_at
                .map(|t| t.saturating_duration_since(now).as_secs()),
            children: self
                .children
                .iter()
                .filter_map(|c| {
                    Some(ChildState {
                        child: self.cfg.children.get(c.cfg)?.name.clone(),
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                        chosen: c.chosen,
                        local_ts: c.local_ts.clone(),
                        remote_ts: c.remote_ts.clone(),
                        age_s: secs(c.installed),
                        rekeyed: c.rekeyed,
                        replaces: c.replaces,
                        per_resource: c.per_resource,
                        worker: c.worker,
                    })
                })
                .collect(),
            pending,
            to_create: names(&to_create),
            no_more: names(&self.no_more),
        };
        // An IKE SA's state travels in one datagram of the sync, which the other gateway takes
        // up to `ha::MAX_DATAGRAM`: past it the whole snapshot would be refused there. The
        // cached response goes first; an IKE SA still too large (its CHILD_SAs' selectors)
        // is not synced: the other gateway negotiates a new one after a takeover.
        let fits = |st: &IkeSaState| {
            serde_json::to_vec(st).is_ok_and(|v| v.len() <= crate::ha::IKE_STATE_MAX)
        };
        if !fits(&st) {
            st.last_resp = None;
        }
        if !fits(&st) {
            tracing::warn!(tunnel = %self.cfg.name, children = self.children.len(),
                "HA: this IKE SA's state is too large for the sync: not synced");
            return None;
        }
        Some(st)
    }

    /// The IKE SA the other gateway of a VRRP pair had with this peer (`ha:`), carried on
    /// here after a takeover. `elapsed` is how long ago the state was taken. Only the children
    /// whose SA pairs are installed here (`installed`: inbound SPIs) are kept. The first
    /// exchange is the other gateway's request in flight, sent again, or else a liveness check
    /// (an empty INFORMATIONAL): it shows at once whether the peer still speaks this IKE SA (if
    /// it does not within [`RESUME_BUDGET`], the tunnel restarts as `dpd.action` says) and puts
    /// the message IDs in step. Then the children are rekeyed: their outbound numbers jumped
    /// past what the other gateway may have used. Those the other gateway had rekeyed already
    /// are deleted.
    pub fn restore(
        cfg: Arc<TunnelConfig>,
        s: &IkeSaState,
        elapsed: Duration,
        installed: &dyn Fn(u32) -> bool,
        now: Instant,
    ) -> Result<IkeSa, String> {
        if s.tunnel != cfg.name || s.local.ip() != cfg.local {
            return Err(format!(
                "IKE SA of tunnel {} from {}: not this gateway's tunnel {} from {}",
                s.tunnel,
                s.local.ip(),
                cfg.name,
                cfg.local
            ));
        }
        let prf = s.chosen.prf.ok_or("no PRF")?;
        // Each key as long as its algorithm takes: the ciphers' constructors would otherwise
        // refuse it at the first message (a panic the fuzzer found).
        let (pl, al, el) = (
            prf.key_len(),
            s.chosen.integ.map_or(0, proposal::Integ::key_len),
            s.chosen.encr.key_material_len(),
        );
        let key = |i: usize| {
            let k = dataplane::config::parse_hex_key(&s.keys[i])
                .map_err(|e| format!("IKE SA key: {e}"))?;
            let want = [pl, al, al, el, el, pl, pl][i];
            if k.len() != want {
                return Err(format!(
                    "IKE SA key {i} has {} bytes, its algorithm takes {want}",
                    k.len()
                ));
            }
            Ok(k)
        };
        let mut sa = IkeSa::new(cfg.clone(), s.initiator, s.local, s.remote, now);
        sa.keys = Some(IkeKeys {
            prf,
            encr: s.chosen.encr,
            integ: s.chosen.integ,
            sk_d: key(0)?,
            sk_ai: key(1)?,
            sk_ar: key(2)?,
            sk_ei: key(3)?,
            sk_er: key(4)?,
            sk_pi: key(5)?,
            sk_pr: key(6)?,
        });
        sa.chosen = Some(s.chosen);
        sa.state = State::Established;
        sa.spi_i = s.spi_i;
        sa.spi_r = s.spi_r;
        sa.nat = s.nat;
        sa.behind_nat = s.behind_nat;
        sa.next_req_id = s.next_req_id;
        sa.peer_next_id = s.peer_next_id;
        sa.mid_slack = MID_SLACK;
        sa.resumed = true;
        if let Some((id, d)) = &s.last_resp {
            let d = d
                .iter()
                .map(|h| unhex(h, "response"))
                .collect::<Result<Vec<_>, _>>()?;
            sa.last_resp = Some((*id, d));
        }
        sa.frag.negotiated = s.frag && cfg.fragmentation;
        sa.frag.path_size = s.frag_path_size;
        // When the other gateway learnt it is not synced: from now.
        sa.frag.path_learnt = s.frag_path_size.map(|_| now);
        sa.peer_hashes = s.peer_hashes.clone();
        sa.peer_id = s.peer_id.clone();
        let index = |n: &String| cfg.children.iter().position(|c| &c.name == n);
        sa.to_create = s.to_create.iter().filter_map(index).collect();
        sa.no_more = s.no_more.iter().filter_map(index).collect();
        sa.initial_contact = false;
        // Absurd ages (from a peer with the secret) must not overflow the clock.
        let ago = |secs: u64| {
            elapsed
                .checked_add(Duration::from_secs(secs))
                .and_then(|d| now.checked_sub(d))
                .unwrap_or(now)
        };
        sa.established_at = Some(ago(s.age_s));
        // Reauthentication when the other gateway would have done it (a rekey does not reset
        // it); from the IKE SA's age if the snapshot does not say. At most reauth_time away.
        sa.reauth_at = (!cfg.reauth_time.is_zero()).then(|| {
            let due = match s.reauth_in_s {
                Some(r) => now + Duration::from_secs(r).saturating_sub(elapsed),
                None => ago(s.age_s) + cfg.reauth_time,
            };
            due.min(now + cfg.reauth_time)
                .max(now + Duration::from_secs(10))
        });
        // A rekey that fell due on the way waits a few seconds more (the children go first);
        // none is later than the configured lifetime.
        sa.ike_rekey_at = s
            .rekey_in_s
            .filter(|_| !cfg.ike_lifetime.is_zero())
            .map(|r| {
                now + Duration::from_secs(r)
                    .min(cfg.ike_lifetime)
                    .saturating_sub(elapsed)
                    .max(Duration::from_secs(10))
            });
        sa.rekey_due = sa.ike_rekey_at;
        sa.reauth_due = sa.reauth_at;
        match &s.pending {
            // The request in flight goes out again, as it was: the peer answers it (or, if it
            // had, sends its answer again), and the exchange completes here. It is the liveness
            // check too.
            // A new child's request for a child not configured here: as if it had not
            // travelled (its ID is the next; the liveness check below).
            Some(p)
                if matches!(&p.req, ReqState::CreateChild { child, .. }
                    if !cfg.children.iter().any(|c| &c.name == child)) =>
            {
                tracing::warn!(tunnel = %cfg.name, "synced request for a child not configured here: left out");
                sa.next_req_id = p.id;
                sa.queue.push_back(Req::Dpd);
            }
            Some(p) => {
                sa.pending = Some(restore_pending(p, now, &cfg.children)?);
            }
            // Else a liveness check first: if the other gateway died with a request in flight
            // that the peer answered, the peer takes this one (same message ID) for its
            // retransmission and sends that answer again, which an empty INFORMATIONAL can
            // take whatever it says (a CREATE_CHILD_SA would take it for its own and derive
            // the wrong keys). Either way the message IDs are in step after it.
            None => sa.queue.push_back(Req::Dpd),
        }
        for c in &s.children {
            let Some(idx) = cfg.children.iter().position(|k| k.name == c.child) else {
                tracing::warn!(tunnel = %cfg.name, child = %c.child, "synced CHILD_SA of a child not configured here: left out");
                continue;
            };
            if !installed(c.spi_in) {
                tracing::warn!(tunnel = %cfg.name, child = %c.child, spi_in = %format_args!("{:08x}", c.spi_in),
                    "synced CHILD_SA without its SA pair here: left out");
                continue;
            }
            sa.children.push(Child {
                cfg: idx,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                chosen: c.chosen,
                local_ts: c.local_ts.clone(),
                remote_ts: c.remote_ts.clone(),
                installed: ago(c.age_s),
                rekey_at: now,
                rekeyed: c.rekeyed,
                replaces: c.replaces,
                collision: None,
                per_resource: c.per_resource,
                worker: c.worker,
            });
            if c.rekeyed {
                sa.queue.push_back(Req::DeleteChild { spi_in: c.spi_in });
            }
        }
        tracing::info!(tunnel = %cfg.name, spi_i = %format_args!("{:016x}", s.spi_i), spi_r = %format_args!("{:016x}", s.spi_r),
            next_req_id = s.next_req_id, peer_next_id = s.peer_next_id, children = sa.children.len(),
            "HA: carrying on the other gateway's IKE SA (synced)");
        Ok(sa)
    }

    fn close(&mut self, reason: String, restart: bool, out: &mut Vec<Action>) {
        for c in std::mem::take(&mut self.children) {
            out.push(self.removal(&c));
        }
        if let Some(spi_in) = self.larval.take() {
            out.push(Action::Remove {
                tunnel: self.cfg.name.clone(),
                child: String::new(),
                spi_in,
                spi_out: 0,
            });
        }
        self.state = State::Dead;
        self.pending = None;
        self.queue.clear();
        self.frag.clear();
        out.push(Action::Closed {
            tunnel: self.cfg.name.clone(),
            reason,
            restart,
        });
    }

    fn derive_keys(&mut self, chosen: Chosen, g_ir: &[u8]) {
        let prf = chosen.prf.unwrap_or(proposal::Prf::HmacSha256);
        let seed = crypto::skeyseed(prf, &self.ni, &self.nr, g_ir);
        self.keys = Some(IkeKeys::derive(
            prf,
            chosen.encr,
            chosen.integ,
            &seed,
            &self.ni,
            &self.nr,
            self.spi_i,
            self.spi_r,
        ));
        self.chosen = Some(chosen);
    }

    /// NAT detection from the peer's notifies (§2.23). Returns true if either side is NATed;
    /// remembers whether we are the one behind it (then we send keepalives).
    fn detect_nat(
        &mut self,
        payloads: &[Payload],
        h: &Header,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let src: Vec<&Notify> = notifies(payloads)
            .filter(|n| n.ntype == notify::NAT_DETECTION_SOURCE_IP)
            .collect();
        let dst: Vec<&Notify> = notifies(payloads)
            .filter(|n| n.ntype == notify::NAT_DETECTION_DESTINATION_IP)
            .collect();
        if src.is_empty() || dst.is_empty() {
            return false;
        }
        let their = crypto::nat_hash(h.spi_i, h.spi_r, remote);
        let ours = crypto::nat_hash(h.spi_i, h.spi_r, local);
        let peer_natted = !src.iter().any(|n| n.data == their);
        let we_natted = !dst.iter().any(|n| n.data == ours);
        self.behind_nat = we_natted;
        peer_natted || we_natted
    }

    fn complete_init_as_initiator(
        &mut self,
        h: Header,
        payloads: &[Payload],
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(), String> {
        let sa = payloads
            .iter()
            .find_map(|p| {
                if let Payload::Sa(s) = p {
                    Some(s)
                } else {
                    None
                }
            })
            .ok_or("no SA payload")?;
        let chosen = proposal::check_answer(&self.cfg.ike_proposals, sa, proto::IKE)
            .ok_or("the responder chose a proposal we did not offer")?;
        self.peer_hashes = sig_hashes(payloads);
        let (group, kex) = payloads
            .iter()
            .find_map(|p| {
                if let Payload::Ke { group, data } = p {
                    Some((*group, data))
                } else {
                    None
                }
            })
            .ok_or("no KE payload")?;
        if Some(group) != chosen.dh.map(Group::id) || Some(group) != self.group.map(Group::id) {
            return Err("KE group does not match".into());
        }
        self.nr = payloads
            .iter()
            .find_map(|p| {
                if let Payload::Nonce(n) = p {
                    Some(n.clone())
                } else {
                    None
                }
            })
            .ok_or("no nonce")?;
        let dh = self.dh.take().ok_or("no DH state")?;
        let g_ir = dh.shared(kex).map_err(|e| e.to_string())?;
        self.nat = self.detect_nat(payloads, &h, local, remote);
        self.frag.negotiated = self.cfg.fragmentation && announces_fragmentation(payloads);
        self.derive_keys(chosen, &g_ir);
        if self.nat {
            // Float to 4500 (RFC 7296 §2.23).
            self.local.set_port(NATT_PORT);
            self.remote.set_port(NATT_PORT);
        }
        Ok(())
    }

    /// Our AUTH payload over `message | nonce | prf(SK_p, IDbody)` (RFC 7296 §2.15).
    fn make_auth(
        &self,
        message: &[u8],
        nonce: &[u8],
        sk_p: &[u8],
        id_body: &[u8],
    ) -> Result<(u8, Vec<u8>), pki::PkiError> {
        let prf = self.keys.as_ref().expect("keys after IKE_SA_INIT").prf;
        let octets = crypto::signed_octets(prf, message, nonce, sk_p, id_body);
        match &self.cfg.auth {
            Auth::Psk(psk) => Ok((pki::method::PSK, crypto::psk_auth(prf, psk, &octets))),
            Auth::Pubkey(pk) => pk.cred.sign(&octets, &self.peer_hashes),
        }
    }

    /// Checks the peer's identity and AUTH payload; with certificates, also its chain to our
    /// CAs and that the certificate vouches for the identity.
    fn check_peer_auth(
        &mut self,
        payloads: &[Payload],
        id_type: u8,
        id_data: &[u8],
        message: &[u8],
        nonce: &[u8],
        sk_p: &[u8],
    ) -> Result<(), AuthErr> {
        let shown = id_display(id_type, id_data);
        if !self.cfg.remote_id.matches(id_type, id_data) {
            return Err(format!(
                "peer identity `{shown}` does not match `{}`",
                self.cfg.remote_id
            )
            .into());
        }
        let (method, data) = auth_payload(payloads).ok_or("no AUTH")?;
        let prf = self.keys.as_ref().ok_or("no keys")?.prf;
        let octets = crypto::signed_octets(prf, message, nonce, sk_p, &id_body(id_type, id_data));
        match &self.cfg.auth {
            Auth::Psk(psk) => {
                let expect = crypto::psk_auth(prf, psk, &octets);
                if method != pki::method::PSK || !crypto::ct_eq(data, &expect) {
                    return Err("the peer's AUTH does not verify (wrong PSK?)".into());
                }
            }
            Auth::Pubkey(pk) => {
                if method == pki::method::PSK {
                    return Err("the peer used a PSK; this tunnel needs a certificate".into());
                }
                let certs: Vec<Vec<u8>> = payloads
                    .iter()
                    .filter_map(|x| match x {
                        Payload::Cert { encoding, data }
                            if *encoding == pki::CERT_X509_SIGNATURE =>
                        {
                            Some(data.clone())
                        }
                        _ => None,
                    })
                    .collect();
                let (leaf, rest) = certs
                    .split_first()
                    .ok_or("the peer sent no certificate (no CERT payload)")?;
                let verdict = self.fetch_verdict.take();
                let ca = match check_cert_auth(
                    pk, leaf, rest, id_type, id_data, method, data, &octets, verdict,
                ) {
                    Ok(ca) => ca,
                    Err(CertAuth::Fail(e)) => return Err(e.into()),
                    Err(CertAuth::Fetch) => {
                        return Err(AuthErr::Fetch(RevocationFetch {
                            cfg: self.cfg.clone(),
                            leaf: leaf.clone(),
                            rest: rest.to_vec(),
                        }))
                    }
                };
                tracing::info!(tunnel = %self.cfg.name, peer_id = %shown, ca = %ca, method,
                    signature = %pki::auth_algorithm(method, data), "peer certificate and signature verified");
            }
        }
        self.peer_id = Some(shown);
        Ok(())
    }

    fn send_auth(&mut self, now: Instant, out: &mut Vec<Action>) {
        let cfg = self.cfg.clone();
        let child = 0;
        let ccfg = &cfg.children[child];
        let spi_in = rand_spi();
        let (id_type, id_data) = cfg.local_id_payload();
        let id_body = id_body(id_type, &id_data);
        let keys = self.keys.as_ref().expect("keys after IKE_SA_INIT");
        let sk_pi = keys.sk_pi.clone();
        let (method, auth) = match self.make_auth(&self.init_req, &self.nr, &sk_pi, &id_body) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(tunnel = %cfg.name, error = %e, "cannot sign IKE_AUTH");
                self.close(format!("cannot authenticate: {e}"), false, out);
                return;
            }
        };
        let mut p = vec![Payload::Id {
            responder: false,
            id_type,
            data: id_data,
        }];
        if let Auth::Pubkey(pk) = &cfg.auth {
            push_certs(&mut p, &pk.cred);
            p.push(Payload::CertReq {
                encoding: pki::CERT_X509_SIGNATURE,
                data: pk.cas.certreq(),
            });
        }
        if self.initial_contact {
            p.push(Payload::notify(notify::INITIAL_CONTACT, Vec::new()));
        }
        if let Some((rt, rd)) = cfg.remote_id.encode() {
            p.push(Payload::Id {
                responder: true,
                id_type: rt,
                data: rd,
            });
        }
        p.push(Payload::Auth { method, data: auth });
        if ccfg.mode == dataplane::sa::Mode::Transport {
            p.push(Payload::notify(notify::USE_TRANSPORT_MODE, Vec::new()));
        }
        // The first CHILD_SA of a per-resource group: the fallback (RFC 9611 §4).
        if ccfg.per_cpu_sas {
            p.push(Payload::notify(notify::SA_RESOURCE_INFO, Vec::new()));
        }
        // Children of IKE_AUTH never do PFS: the IKE SA's DH covers them (§1.2).
        p.push(Payload::Sa(esp_proposals(
            &ccfg.esp_proposals,
            spi_in,
            true,
        )));
        p.push(Payload::Ts {
            responder: false,
            selectors: ccfg.local_ts.iter().map(ts_from_prefix).collect(),
        });
        p.push(Payload::Ts {
            responder: true,
            selectors: ccfg.remote_ts.iter().map(ts_from_prefix).collect(),
        });
        // The likeliest choice (our first proposal's first algorithms): its inbound half goes
        // in now, so ESP the responder sends right after answering finds its SA.
        if let Some(first) = ccfg.esp_proposals.first() {
            let guess = Chosen {
                num: 1,
                encr: first.encr[0],
                prf: None,
                integ: first.integ.first().copied(),
                dh: None,
                esn: first.esn.first().copied().unwrap_or(false),
            };
            if let Some((_, _, enc_in, auth_in)) =
                self.child_keys(guess, &self.ni, &self.nr, None, true)
            {
                self.larval = Some(spi_in);
                out.push(Action::Install(Box::new(ChildSaInstall {
                    tunnel: cfg.name.clone(),
                    child: ccfg.name.clone(),
                    spi_in,
                    spi_out: 0,
                    encr: guess.encr,
                    integ: guess.integ,
                    esn: guess.esn,
                    enc_in,
                    auth_in,
                    enc_out: zeroize::Zeroizing::new(Vec::new()),
                    auth_out: zeroize::Zeroizing::new(Vec::new()),
                    local_ts: ccfg.local_ts.iter().map(ts_from_prefix).collect(),
                    remote_ts: ccfg.remote_ts.iter().map(ts_from_prefix).collect(),
                    local: self.local,
                    remote: self.remote,
                    udp_encap: self.nat,
                    mode: ccfg.mode,
                    replaces: None,
                    outbound_now: false,
                    we_initiated: true,
                    larval: true,
                    lifetime: child_lifetime(ccfg),
                    worker: None,
                })));
            }
        }
        self.state = State::AuthSent;
        let id = 1;
        self.next_req_id = 2;
        let sealed = self.seal_with_recut(self.header(exchange::IKE_AUTH, false, id), &p);
        self.send_request(now, id, sealed, Req::Auth { child, spi_in }, out);
    }

    /// The responder's answer to our IKE_AUTH (now, or after its certificate's revocation
    /// status was fetched).
    fn auth_response(
        &mut self,
        now: Instant,
        payloads: Vec<Payload>,
        child: usize,
        spi_in: u32,
        out: &mut Vec<Action>,
    ) {
        let e = match self.complete_auth_as_initiator(now, &payloads, child, spi_in, out) {
            Ok(()) => return,
            Err(AuthErr::Fetch(job)) => {
                let p = Parked::Response {
                    child,
                    spi_in,
                    payloads,
                };
                self.park(p, job, out);
                return;
            }
            Err(AuthErr::Fail(e)) => e,
        };
        // The responder thinks the SA is up: tell it (RFC 7296 §2.21.2).
        if !notifies(&payloads).any(|n| n.ntype == notify::AUTHENTICATION_FAILED) {
            let id = self.next_req_id;
            self.next_req_id += 1;
            let datagrams = self.seal(
                self.header(exchange::INFORMATIONAL, false, id),
                &[
                    Payload::notify(notify::AUTHENTICATION_FAILED, Vec::new()),
                    Payload::Delete {
                        protocol: proto::IKE,
                        spis: Vec::new(),
                    },
                ],
            );
            for data in datagrams {
                out.push(Action::Send {
                    local: self.local,
                    remote: self.remote,
                    data,
                });
            }
        }
        self.fail(format!("IKE_AUTH: {e}"), out);
    }

    /// Sets an IKE_AUTH aside until the daemon has fetched its peer certificate's status.
    fn park(&mut self, p: Parked, job: RevocationFetch, out: &mut Vec<Action>) {
        tracing::info!(tunnel = %self.cfg.name, peer = %self.remote,
            "peer certificate and AUTH verified; fetching its revocation status (CRL, OCSP) off the daemon's thread");
        self.parked = Some(p);
        out.push(Action::FetchRevocation {
            spi: self.our_spi(),
            job,
        });
    }

    /// The revocation fetch for a parked IKE_AUTH is done with `verdict` (the chain checked
    /// with the fetches): the IKE_AUTH is decided with it, and answered or completed.
    pub fn resume_after_fetch(
        &mut self,
        now: Instant,
        verdict: FetchVerdict,
        out: &mut Vec<Action>,
    ) {
        let Some(p) = self.parked.take() else { return };
        self.fetch_verdict = Some(verdict);
        if self.state == State::Dead {
            return;
        }
        match p {
            Parked::Request { h, payloads } => {
                self.responder_auth(now, h, &payloads, out);
                if let Some(r) = self.resp_recut.as_mut() {
                    r.since.get_or_insert(now);
                }
            }
            Parked::Response {
                child,
                spi_in,
                payloads,
            } => {
                self.auth_response(now, payloads, child, spi_in, out);
                if self.pending.is_none() {
                    if let Some(req) = self.queue.pop_front() {
                        self.request(now, req, out);
                    }
                }
            }
        }
    }

    fn complete_auth_as_initiator(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        child: usize,
        spi_in: u32,
        out: &mut Vec<Action>,
    ) -> Result<(), AuthErr> {
        if let Some(n) = notifies(payloads).find(|n| n.ntype == notify::AUTHENTICATION_FAILED) {
            return Err(format!("the peer says authentication failed (notify {})", n.ntype).into());
        }
        let (id_type, id_data) = payloads
            .iter()
            .find_map(|p| match p {
                Payload::Id {
                    responder: true,
                    id_type,
                    data,
                } => Some((*id_type, data.clone())),
                _ => None,
            })
            .ok_or("no IDr")?;
        let sk_pr = self.keys.as_ref().ok_or("no keys")?.sk_pr.clone();
        let init_resp = self.init_resp.clone();
        let ni = self.ni.clone();
        self.check_peer_auth(payloads, id_type, &id_data, &init_resp, &ni, &sk_pr)?;
        self.established(now, initial_contact(payloads), out);
        // The other configured children follow, each in a CREATE_CHILD_SA of its own.
        self.to_create = (0..self.cfg.children.len())
            .filter(|c| *c != child)
            .collect();
        // The child may still have failed (§1.2: errors here do not tear down the IKE SA).
        if let Some(n) = notifies(payloads).find(|n| n.ntype < notify::FIRST_STATUS) {
            // Asked for again in a CREATE_CHILD_SA of its own, after a wait.
            let wait = self.create_failed(now, child, None);
            self.to_create.push_front(child);
            tracing::warn!(tunnel = %self.cfg.name, notify = n.ntype, retry_in_s = wait.as_secs(),
                "CHILD_SA not created");
            return Ok(());
        }
        let res = self.cfg.children[child].per_cpu_sas
            && notifies(payloads).any(|n| n.ntype == notify::SA_RESOURCE_INFO);
        self.adopt_child(now, payloads, child, spi_in, None, None, (res, None), out)
            .map_err(AuthErr::Fail)
    }

    #[allow(clippy::too_many_arguments)]
    fn adopt_child(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        cfg_idx: usize,
        spi_in: u32,
        rekey: Option<(Vec<u8>, Vec<u8>, Option<Secret>)>,
        replaces: Option<u32>,
        res: (bool, Option<u16>),
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let ccfg = self.cfg.children[cfg_idx].clone();
        let sa = payloads
            .iter()
            .find_map(|p| {
                if let Payload::Sa(s) = p {
                    Some(s)
                } else {
                    None
                }
            })
            .ok_or("no SA payload for the child")?;
        let mine: Vec<AlgSet> = if rekey.is_some() {
            ccfg.esp_proposals.clone()
        } else {
            ccfg.esp_proposals
                .iter()
                .map(|a| AlgSet {
                    dh: Vec::new(),
                    ..a.clone()
                })
                .collect()
        };
        let chosen = proposal::check_answer(&mine, sa, proto::ESP)
            .ok_or("the responder chose an ESP proposal we did not offer")?;
        let spi_out = sa[0]
            .spi
            .as_slice()
            .try_into()
            .map(u32::from_be_bytes)
            .map_err(|_| "ESP SPI is not 4 bytes")?;
        let tsi = ts_payload(payloads, false).ok_or("no TSi")?;
        let tsr = ts_payload(payloads, true).ok_or("no TSr")?;
        let ours_l: Vec<_> = ccfg.local_ts.iter().map(ts_from_prefix).collect();
        let ours_r: Vec<_> = ccfg.remote_ts.iter().map(ts_from_prefix).collect();
        // The responder may only narrow what we proposed.
        if narrow(&tsi, &ours_l) != tsi
            || narrow(&tsr, &ours_r) != tsr
            || tsi.is_empty()
            || tsr.is_empty()
        {
            return Err("the responder's traffic selectors are not within ours".into());
        }
        let (ni, nr, g) = match rekey {
            Some((ni, nr, g)) => (ni, nr, g),
            None => (self.ni.clone(), self.nr.clone(), None),
        };
        self.install_child(
            now,
            cfg_idx,
            chosen,
            spi_in,
            spi_out,
            tsi,
            tsr,
            true,
            &ni,
            &nr,
            g.as_ref().map(|v| v.as_slice()),
            replaces,
            res,
            out,
        );
        Ok(())
    }

    /// A CHILD_SA's keys (§2.17): KEYMAT = prf+(SK_d, [g^ir] | Ni | Nr), split as
    /// (outbound enc, outbound auth, inbound enc, inbound auth) from our side.
    fn child_keys(
        &self,
        chosen: Chosen,
        ni: &[u8],
        nr: &[u8],
        g_ir: Option<&[u8]>,
        we_initiated: bool,
    ) -> Option<(Secret, Secret, Secret, Secret)> {
        let keys = self.keys.as_ref()?;
        let el = chosen.encr.key_material_len();
        let al = chosen.integ.map_or(0, Integ::key_len);
        let mut seed = Vec::new();
        if let Some(g) = g_ir {
            seed.extend_from_slice(g);
        }
        seed.extend_from_slice(ni);
        seed.extend_from_slice(nr);
        let km = crypto::prf_plus(keys.prf, &keys.sk_d, &seed, 2 * (el + al));
        let part =
            |a: usize, n: usize| -> Secret { zeroize::Zeroizing::new(km[a..a + n].to_vec()) };
        let (ei, ai, er, ar) = (
            part(0, el),
            part(el, al),
            part(el + al, el),
            part(2 * el + al, al),
        );
        Some(if we_initiated {
            (ei, ai, er, ar)
        } else {
            (er, ar, ei, ai)
        })
    }

    /// Derives the child's keys (§2.17) and emits the install. `we_initiated` says whether we
    /// were the initiator of the exchange that created it (key order).
    #[allow(clippy::too_many_arguments)]
    fn install_child(
        &mut self,
        now: Instant,
        cfg_idx: usize,
        chosen: Chosen,
        spi_in: u32,
        spi_out: u32,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
        we_initiated: bool,
        ni: &[u8],
        nr: &[u8],
        g_ir: Option<&[u8]>,
        replaces: Option<u32>,
        (per_resource, worker): (bool, Option<u16>),
        out: &mut Vec<Action>,
    ) {
        let Some((enc_out, auth_out, enc_in, auth_in)) =
            self.child_keys(chosen, ni, nr, g_ir, we_initiated)
        else {
            return;
        };
        let ccfg = &self.cfg.children[cfg_idx];
        let inst = ChildSaInstall {
            tunnel: self.cfg.name.clone(),
            child: ccfg.name.clone(),
            spi_in,
            spi_out,
            encr: chosen.encr,
            integ: chosen.integ,
            esn: chosen.esn,
            enc_in,
            auth_in,
            enc_out,
            auth_out,
            local_ts: local_ts.clone(),
            remote_ts: remote_ts.clone(),
            local: self.local,
            remote: self.remote,
            udp_encap: self.nat,
            mode: ccfg.mode,
            replaces,
            outbound_now: we_initiated || replaces.is_none(),
            we_initiated,
            larval: false,
            lifetime: child_lifetime(ccfg),
            worker,
        };
        tracing::info!(
            tunnel = %self.cfg.name, child = %ccfg.name,
            spi_in = %format_args!("{spi_in:08x}"), spi_out = %format_args!("{spi_out:08x}"),
            algorithms = %chosen.as_set().name(), per_resource, worker = ?worker, "CHILD_SA installed"
        );
        if self.larval == Some(spi_in) {
            self.larval = None;
        }
        out.push(Action::Install(Box::new(inst)));
        self.children.push(Child {
            cfg: cfg_idx,
            spi_in,
            spi_out,
            chosen,
            local_ts,
            remote_ts,
            installed: now,
            rekey_at: now + jittered(ccfg.lifetime, ccfg.rand_time()),
            rekeyed: false,
            replaces,
            collision: None,
            per_resource,
            worker,
        });
    }

    fn established(&mut self, now: Instant, initial_contact: bool, out: &mut Vec<Action>) {
        self.state = State::Established;
        self.established_at = Some(now);
        let cfg = &self.cfg;
        let rand = cfg.ike_rand_time();
        self.ike_rekey_at =
            (!cfg.ike_lifetime.is_zero()).then(|| now + jittered(cfg.ike_lifetime, rand));
        self.reauth_at =
            (!cfg.reauth_time.is_zero()).then(|| now + jittered(cfg.reauth_time, rand));
        self.rekey_due = self.ike_rekey_at;
        self.reauth_due = self.reauth_at;
        tracing::info!(tunnel = %self.cfg.name, algorithms = %self.algorithms(), nat = self.nat, "IKE SA established");
        out.push(Action::Established {
            tunnel: self.cfg.name.clone(),
            algorithms: self.algorithms(),
            nat: self.nat,
            peer_id: self.peer_id.clone().unwrap_or_default(),
            initial_contact: initial_contact.then(|| self.our_spi()),
        });
    }

    fn on_request(
        &mut self,
        now: Instant,
        h: Header,
        payloads: Vec<Payload>,
        out: &mut Vec<Action>,
    ) {
        match (h.exchange, self.state) {
            (exchange::IKE_AUTH, State::InitDone) => self.responder_auth(now, h, &payloads, out),
            (exchange::INFORMATIONAL, State::Established) => {
                self.responder_info(now, h, &payloads, out)
            }
            (exchange::CREATE_CHILD_SA, State::Established)
                if self.superseded || self.deleting_ike() =>
            {
                // Rekeyed (its children are the new IKE SA's) or being deleted: §2.25.2
                // (a rekey of an IKE SA being closed) and §2.25.1 (of a child being closed).
                tracing::info!(tunnel = %self.cfg.name, "CREATE_CHILD_SA on an IKE SA being closed: TEMPORARY_FAILURE");
                self.refuse_child(h.msg_id, notify::TEMPORARY_FAILURE, Vec::new(), out);
            }
            (exchange::CREATE_CHILD_SA, State::Established) => {
                self.responder_create_child(now, h, &payloads, out)
            }
            _ => {
                tracing::debug!(tunnel = %self.cfg.name, exchange = h.exchange, "request ignored in state {:?}", self.state);
            }
        }
    }

    /// Responder: the first IKE_SA_INIT request. Returns None if the request is answered
    /// without creating state (errors, INVALID_KE_PAYLOAD).
    pub fn respond_init(
        cfg: Arc<TunnelConfig>,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        out: &mut Vec<Action>,
    ) -> Option<IkeSa> {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(super::wire::WireError::UnsupportedCritical(t)) => {
                // §2.5: a payload type we do not know, marked critical: refused, naming it.
                let h = Header::parse(data).ok()?;
                let mut sa = IkeSa::new(cfg, false, local, remote, now);
                sa.spi_i = h.spi_i;
                let mut h2 = sa.header(exchange::IKE_SA_INIT, true, 0);
                h2.spi_r = 0;
                out.push(Action::Send {
                    local,
                    remote,
                    data: Message::emit(
                        h2,
                        &[Payload::notify(
                            notify::UNSUPPORTED_CRITICAL_PAYLOAD,
                            vec![t],
                        )],
                    ),
                });
                return None;
            }
            Err(_) => return None,
        };
        let h = msg.header;
        let mut sa = IkeSa::new(cfg.clone(), false, local, remote, now);
        sa.spi_i = h.spi_i;
        let reply_err = |sa: &IkeSa, n: Payload, out: &mut Vec<Action>| {
            let mut h2 = sa.header(exchange::IKE_SA_INIT, true, 0);
            h2.spi_r = 0;
            out.push(Action::Send {
                local,
                remote,
                data: Message::emit(h2, &[n]),
            });
        };
        let p = &msg.payloads;
        let Some(props) = sa_of(p) else {
            reply_err(
                &sa,
                Payload::notify(notify::INVALID_SYNTAX, Vec::new()),
                out,
            );
            return None;
        };
        let Some(chosen) = proposal::select(&cfg.ike_proposals, props, proto::IKE) else {
            tracing::warn!(tunnel = %cfg.name, peer = %remote, "no acceptable IKE proposal");
            reply_err(
                &sa,
                Payload::notify(notify::NO_PROPOSAL_CHOSEN, Vec::new()),
                out,
            );
            return None;
        };
        let group = chosen.dh?;
        let ke = ke_of(p);
        let Some((kg, kex)) = ke.filter(|(g, _)| *g == group.id()) else {
            reply_err(
                &sa,
                Payload::notify(
                    notify::INVALID_KE_PAYLOAD,
                    group.id().to_be_bytes().to_vec(),
                ),
                out,
            );
            return None;
        };
        let _ = kg;
        let Some(ni) = nonce_of(p) else {
            reply_err(
                &sa,
                Payload::notify(notify::INVALID_SYNTAX, Vec::new()),
                out,
            );
            return None;
        };
        let (dh, public) = DhPrivate::generate(group);
        let Ok(g_ir) = dh.shared(kex) else {
            reply_err(
                &sa,
                Payload::notify(notify::INVALID_SYNTAX, Vec::new()),
                out,
            );
            return None;
        };
        sa.spi_r = rand_u64();
        sa.ni = ni;
        sa.nr = crypto::random_bytes(32);
        sa.group = Some(group);
        sa.nat = sa.detect_nat(p, &h, local, remote);
        sa.derive_keys(chosen, &g_ir);
        let mut resp = vec![
            Payload::Sa(vec![chosen.as_set().to_proposal(
                chosen.num,
                proto::IKE,
                Vec::new(),
            )]),
            Payload::Ke {
                group: group.id(),
                data: public,
            },
            Payload::Nonce(sa.nr.clone()),
        ];
        if notifies(p).any(|n| n.ntype == notify::NAT_DETECTION_SOURCE_IP) {
            resp.push(Payload::notify(
                notify::NAT_DETECTION_SOURCE_IP,
                crypto::nat_hash(sa.spi_i, sa.spi_r, local),
            ));
            resp.push(Payload::notify(
                notify::NAT_DETECTION_DESTINATION_IP,
                crypto::nat_hash(sa.spi_i, sa.spi_r, remote),
            ));
        }
        sa.peer_hashes = sig_hashes(p);
        if let Auth::Pubkey(pk) = &cfg.auth {
            resp.push(Payload::CertReq {
                encoding: pki::CERT_X509_SIGNATURE,
                data: pk.cas.certreq(),
            });
            resp.push(Payload::notify(
                notify::SIGNATURE_HASH_ALGORITHMS,
                pki::supported_hashes(),
            ));
        }
        if cfg.fragmentation && announces_fragmentation(p) {
            // RFC 7383 §2.3: announced in the response only when the request did.
            resp.push(Payload::notify(
                notify::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            ));
            sa.frag.negotiated = true;
        }
        sa.init_req = data.to_vec();
        let d = Message::emit(sa.header(exchange::IKE_SA_INIT, true, 0), &resp);
        sa.init_resp = d.clone();
        sa.last_resp = Some((0, vec![d.clone()]));
        sa.peer_next_id = 1;
        sa.state = State::InitDone;
        sa.stats = (1, 1);
        out.push(Action::Send {
            local,
            remote,
            data: d,
        });
        tracing::info!(tunnel = %cfg.name, peer = %remote, algorithms = %sa.algorithms(), nat = sa.nat, "IKE_SA_INIT answered");
        Some(sa)
    }

    fn responder_auth(&mut self, now: Instant, h: Header, p: &[Payload], out: &mut Vec<Action>) {
        let cfg = self.cfg.clone();
        let idi = p.iter().find_map(|x| match x {
            Payload::Id {
                responder: false,
                id_type,
                data,
            } => Some((*id_type, data.clone())),
            _ => None,
        });
        let keys = self.keys.as_ref().expect("keys after IKE_SA_INIT");
        let (sk_pi, sk_pr) = (keys.sk_pi.clone(), keys.sk_pr.clone());
        let (init_req, init_resp, nr, ni) = (
            self.init_req.clone(),
            self.init_resp.clone(),
            self.nr.clone(),
            self.ni.clone(),
        );
        let checked = match &idi {
            Some((t, d)) => self.check_peer_auth(p, *t, d, &init_req, &nr, &sk_pi),
            None => Err("no IDi".into()),
        };
        let checked = match checked {
            Ok(()) => Ok(()),
            Err(AuthErr::Fail(e)) => Err(e),
            Err(AuthErr::Fetch(job)) => {
                let parked = Parked::Request {
                    h,
                    payloads: p.to_vec(),
                };
                self.park(parked, job, out);
                return;
            }
        };
        let (id_type, id_data) = cfg.local_id_payload();
        let signed = checked.and_then(|()| {
            self.make_auth(&init_resp, &ni, &sk_pr, &id_body(id_type, &id_data))
                .map_err(|e| format!("cannot sign our AUTH: {e}"))
        });
        let (method, auth) = match signed {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(tunnel = %cfg.name, peer = %self.remote, error = %e, "IKE_AUTH failed");
                self.respond(
                    exchange::IKE_AUTH,
                    h.msg_id,
                    &[Payload::notify(notify::AUTHENTICATION_FAILED, Vec::new())],
                    out,
                );
                self.close(format!("authentication failed: {e}"), false, out);
                return;
            }
        };
        let mut resp = vec![Payload::Id {
            responder: true,
            id_type,
            data: id_data,
        }];
        if let Auth::Pubkey(pk) = &cfg.auth {
            push_certs(&mut resp, &pk.cred);
        }
        resp.push(Payload::Auth { method, data: auth });
        let child = self.choose_child(p, None, true);
        let mut install = None;
        match child {
            Ok((idx, chosen, spi_out, tsi, tsr)) => {
                let spi_in = rand_spi();
                if self.cfg.children[idx].mode == dataplane::sa::Mode::Transport {
                    resp.push(Payload::notify(notify::USE_TRANSPORT_MODE, Vec::new()));
                }
                // The fallback of a per-resource group (RFC 9611 §4).
                let res = self.cfg.children[idx].per_cpu_sas
                    && notifies(p).any(|n| n.ntype == notify::SA_RESOURCE_INFO);
                if res {
                    resp.push(Payload::notify(notify::SA_RESOURCE_INFO, Vec::new()));
                }
                resp.push(Payload::Sa(vec![chosen.as_set().to_proposal(
                    chosen.num,
                    proto::ESP,
                    spi_in.to_be_bytes().to_vec(),
                )]));
                resp.push(Payload::Ts {
                    responder: false,
                    selectors: tsi.clone(),
                });
                resp.push(Payload::Ts {
                    responder: true,
                    selectors: tsr.clone(),
                });
                install = Some((idx, chosen, spi_in, spi_out, tsr, tsi, res));
            }
            Err(n) => resp.push(Payload::notify(n, Vec::new())),
        }
        self.respond(exchange::IKE_AUTH, h.msg_id, &resp, out);
        self.established(now, initial_contact(p), out);
        if let Some((idx, chosen, spi_in, spi_out, local_ts, remote_ts, res)) = install {
            let (ni, nr) = (self.ni.clone(), self.nr.clone());
            self.install_child(
                now,
                idx,
                chosen,
                spi_in,
                spi_out,
                local_ts,
                remote_ts,
                false,
                &ni,
                &nr,
                None,
                None,
                (res, None),
                out,
            );
        }
    }

    /// Picks the configured child for a peer's SA + TS proposal (responder side). Returns the
    /// child index, algorithms, the peer's SPI and the narrowed TSi/TSr.
    #[allow(clippy::type_complexity)]
    fn choose_child(
        &self,
        p: &[Payload],
        only: Option<usize>,
        ike_auth: bool,
    ) -> Result<
        (
            usize,
            Chosen,
            u32,
            Vec<TrafficSelector>,
            Vec<TrafficSelector>,
        ),
        u16,
    > {
        let props = sa_of(p).ok_or(notify::INVALID_SYNTAX)?;
        let tsi = ts_payload(p, false).ok_or(notify::INVALID_SYNTAX)?;
        let tsr = ts_payload(p, true).ok_or(notify::INVALID_SYNTAX)?;
        let transport = notifies(p).any(|n| n.ntype == notify::USE_TRANSPORT_MODE);
        let mut ts_ok = false;
        for (idx, c) in self.cfg.children.iter().enumerate() {
            if only.is_some_and(|o| o != idx) {
                continue;
            }
            if transport != (c.mode == dataplane::sa::Mode::Transport) {
                continue;
            }
            // The initiator's TSi is its side: our remote.
            let ours_r: Vec<_> = c.remote_ts.iter().map(ts_from_prefix).collect();
            let ours_l: Vec<_> = c.local_ts.iter().map(ts_from_prefix).collect();
            let ni = narrow(&tsi, &ours_r);
            let nr = narrow(&tsr, &ours_l);
            if ni.is_empty() || nr.is_empty() {
                continue;
            }
            ts_ok = true;
            // Children of IKE_AUTH take their keys from the IKE SA's DH: PFS groups on either
            // side are ignored there (RFC 7296 §1.2).
            let chosen = if ike_auth {
                let mine: Vec<AlgSet> = c
                    .esp_proposals
                    .iter()
                    .map(|a| AlgSet {
                        dh: Vec::new(),
                        ..a.clone()
                    })
                    .collect();
                let theirs: Vec<wire::Proposal> = props
                    .iter()
                    .map(|pr| wire::Proposal {
                        transforms: pr
                            .transforms
                            .iter()
                            .filter(|t| t.ttype != proposal::ttype::DH)
                            .copied()
                            .collect(),
                        ..pr.clone()
                    })
                    .collect();
                proposal::select(&mine, &theirs, proto::ESP)
            } else {
                proposal::select(&c.esp_proposals, props, proto::ESP)
            };
            let Some(chosen) = chosen else { continue };
            let spi = props
                .iter()
                .find(|x| x.num == chosen.num && x.protocol == proto::ESP)
                .and_then(|x| x.spi.as_slice().try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or(notify::INVALID_SYNTAX)?;
            return Ok((idx, chosen, spi, ni, nr));
        }
        Err(if ts_ok {
            notify::NO_PROPOSAL_CHOSEN
        } else {
            notify::TS_UNACCEPTABLE
        })
    }

    fn responder_info(&mut self, now: Instant, h: Header, p: &[Payload], out: &mut Vec<Action>) {
        let mut resp = Vec::new();
        let mut close = false;
        for d in p {
            let Payload::Delete { protocol, spis } = d else {
                continue;
            };
            match *protocol {
                proto::IKE => close = true,
                proto::ESP => {
                    let mut ours = Vec::new();
                    for s in spis {
                        let Ok(b) = <[u8; 4]>::try_from(s.as_slice()) else {
                            continue;
                        };
                        let spi_out = u32::from_be_bytes(b);
                        if let Some(pos) = self.children.iter().position(|c| c.spi_out == spi_out) {
                            // Deletes that crossed ours (§1.4.1): not listed in the answer.
                            // (Only a delete already sent has crossed this one; one still
                            // queued need not go at all.)
                            let crossed = self.deleting_child(self.children[pos].spi_in, false);
                            let c = self.children.remove(pos);
                            self.queue.retain(|r| {
                                !matches!(r, Req::DeleteChild { spi_in } if *spi_in == c.spi_in)
                            });
                            // A per-resource CHILD_SA the peer deleted (idle, RFC 9611 §4)
                            // is not asked for again at once.
                            if c.worker.is_some() && !c.rekeyed {
                                self.create_failed(now, c.cfg, c.worker);
                            }
                            if let Some(n) =
                                self.children.iter().find(|n| n.replaces == Some(c.spi_in))
                            {
                                out.push(Action::Activate {
                                    tunnel: self.cfg.name.clone(),
                                    spi_in: n.spi_in,
                                    spi_out: n.spi_out,
                                });
                            }
                            if !crossed {
                                ours.push(c.spi_in.to_be_bytes().to_vec());
                            }
                            out.push(self.removal(&c));
                        }
                    }
                    if !ours.is_empty() {
                        resp.push(Payload::Delete {
                            protocol: proto::ESP,
                            spis: ours,
                        });
                    }
                }
                _ => {}
            }
        }
        if close {
            self.respond(exchange::INFORMATIONAL, h.msg_id, &[], out);
            if let Some((_, _, theirs)) = self.collision.take() {
                // Our IKE SA rekey crossed the peer's, which we answered; the peer never saw
                // ours (it was lost, or it came after the peer's rekey was done) and now
                // deletes this SA: its new SA, the one we made answering, keeps the
                // children, and our own request is forgotten (§2.25.2). Before, closing
                // this SA removed every CHILD_SA the peer still used.
                tracing::info!(tunnel = %self.cfg.name, "IKE SA deleted while our rekey of it crossed the peer's: the peer's new IKE SA keeps the children");
                self.pending = None;
                self.superseded = true;
                out.push(Action::MoveChildren {
                    to: theirs,
                    children: std::mem::take(&mut self.children),
                    creation: Box::new(self.take_creation()),
                });
            }
            let why = if self.superseded {
                "rekeyed"
            } else {
                "deleted by the peer"
            };
            // Ours may have crossed it, both ends' hard lifetimes ending together.
            let restart = self.restarts_when_expired();
            self.close(why.into(), restart, out);
            return;
        }
        self.respond(exchange::INFORMATIONAL, h.msg_id, &resp, out);
    }

    /// The data plane's removal of CHILD_SA `c`.
    fn removal(&self, c: &Child) -> Action {
        Action::Remove {
            tunnel: self.cfg.name.clone(),
            child: self.cfg.children[c.cfg].name.clone(),
            spi_in: c.spi_in,
            spi_out: c.spi_out,
        }
    }

    /// Whether our delete of the CHILD_SA with inbound SPI `spi_in` is out (or, with
    /// `queued`, still waiting to go).
    fn deleting_child(&self, spi_in: u32, queued: bool) -> bool {
        let deletes = |r: &Req| matches!(r, Req::DeleteChild { spi_in: d } if *d == spi_in);
        self.pending.as_ref().is_some_and(|p| deletes(&p.req))
            || (queued && self.queue.iter().any(deletes))
    }

    /// Answers a CREATE_CHILD_SA request with one notify (an error).
    fn refuse_child(&mut self, msg_id: u32, ntype: u16, data: Vec<u8>, out: &mut Vec<Action>) {
        self.respond(
            exchange::CREATE_CHILD_SA,
            msg_id,
            &[Payload::notify(ntype, data)],
            out,
        );
    }

    fn responder_create_child(
        &mut self,
        now: Instant,
        h: Header,
        p: &[Payload],
        out: &mut Vec<Action>,
    ) {
        let rekey = notifies(p)
            .find(|n| n.ntype == notify::REKEY_SA && n.protocol == proto::ESP)
            .and_then(|n| <[u8; 4]>::try_from(n.spi.as_slice()).ok())
            .map(u32::from_be_bytes);
        let is_ike = p
            .iter()
            .any(|x| matches!(x, Payload::Sa(s) if s.iter().any(|pr| pr.protocol == proto::IKE)));
        if is_ike {
            self.responder_rekey_ike(now, h, p, out);
            return;
        }
        let old = rekey.and_then(|spi_out| self.children.iter().position(|c| c.spi_out == spi_out));
        if let (Some(spi), None) = (rekey, old) {
            // §2.25: with the SPI of the REKEY_SA notify, so the peer knows which.
            let n = Payload::Notify(Notify {
                protocol: proto::ESP,
                spi: spi.to_be_bytes().to_vec(),
                ntype: notify::CHILD_SA_NOT_FOUND,
                data: Vec::new(),
            });
            self.respond(exchange::CREATE_CHILD_SA, h.msg_id, &[n], out);
            return;
        }
        if old.is_some_and(|i| self.deleting_child(self.children[i].spi_in, true)) {
            // Our delete of it is on the way (our own rekey replaced it): §2.25.1 (a rekey
            // of a CHILD_SA being closed). Accepting would leave a pair the peer drops when
            // our delete reaches it first. (One the peer rekeyed before and has not deleted,
            // say after an HA takeover lost the answer, is rekeyed again.)
            tracing::info!(tunnel = %self.cfg.name, "rekey of a CHILD_SA we have rekeyed: TEMPORARY_FAILURE");
            self.refuse_child(h.msg_id, notify::TEMPORARY_FAILURE, Vec::new(), out);
            return;
        }
        let only = old.map(|i| self.children[i].cfg);
        let (idx, chosen, spi_out, tsi, tsr) = match self.choose_child(p, only, false) {
            Ok(x) => x,
            Err(n) => {
                self.refuse_child(h.msg_id, n, Vec::new(), out);
                return;
            }
        };
        // RFC 9611: a rekey keeps the old SA's place in its group (no SA_RESOURCE_INFO);
        // a new per-resource CHILD_SA goes to a worker that has none (or is one more of the
        // peer's), the first of a group is the fallback.
        let res = match old {
            Some(i) => Ok((self.children[i].per_resource, self.children[i].worker)),
            None if self.cfg.children[idx].per_cpu_sas
                && notifies(p).any(|n| n.ntype == notify::SA_RESOURCE_INFO) =>
            {
                self.resource_for_peer(idx).map(|w| (true, w))
            }
            None => Ok((false, None)),
        };
        let res = match res {
            Ok(r) => r,
            Err(n) => {
                self.refuse_child(h.msg_id, n, Vec::new(), out);
                return;
            }
        };
        let Some(ni) = nonce_of(p) else {
            self.refuse_child(h.msg_id, notify::INVALID_SYNTAX, Vec::new(), out);
            return;
        };
        let nr = crypto::random_bytes(32);
        let mut resp = Vec::new();
        let mut g_ir = None;
        let mut ke_out = None;
        if let Some(g) = chosen.dh {
            let ke = ke_of(p);
            let Some((_, kex)) = ke.filter(|(gg, _)| *gg == g.id()) else {
                self.respond(
                    exchange::CREATE_CHILD_SA,
                    h.msg_id,
                    &[Payload::notify(
                        notify::INVALID_KE_PAYLOAD,
                        g.id().to_be_bytes().to_vec(),
                    )],
                    out,
                );
                return;
            };
            let (dh, public) = DhPrivate::generate(g);
            match dh.shared(kex) {
                Ok(s) => g_ir = Some(s),
                Err(_) => {
                    self.refuse_child(h.msg_id, notify::INVALID_SYNTAX, Vec::new(), out);
                    return;
                }
            }
            ke_out = Some((g, public));
        }
        let spi_in = rand_spi();
        if self.cfg.children[idx].mode == dataplane::sa::Mode::Transport {
            resp.push(Payload::notify(notify::USE_TRANSPORT_MODE, Vec::new()));
        }
        if res.0 && old.is_none() {
            let id = res
                .1
                .map_or_else(Vec::new, |w| u32::from(w).to_be_bytes().to_vec());
            resp.push(Payload::notify(notify::SA_RESOURCE_INFO, id));
        }
        resp.push(Payload::Sa(vec![chosen.as_set().to_proposal(
            chosen.num,
            proto::ESP,
            spi_in.to_be_bytes().to_vec(),
        )]));
        resp.push(Payload::Nonce(nr.clone()));
        if let Some((g, public)) = ke_out {
            resp.push(Payload::Ke {
                group: g.id(),
                data: public,
            });
        }
        resp.push(Payload::Ts {
            responder: false,
            selectors: tsi.clone(),
        });
        resp.push(Payload::Ts {
            responder: true,
            selectors: tsr.clone(),
        });
        self.respond(exchange::CREATE_CHILD_SA, h.msg_id, &resp, out);
        let replaces = old.map(|i| {
            self.children[i].rekeyed = true;
            let ours_in_flight = self
                .pending
                .as_ref()
                .is_some_and(|p| matches!(&p.req, Req::RekeyChild { old, .. } if *old == self.children[i].spi_in));
            if ours_in_flight {
                self.children[i].collision = Some((ni.clone(), nr.clone(), spi_in));
            }
            self.children[i].spi_in
        });
        self.install_child(
            now,
            idx,
            chosen,
            spi_in,
            spi_out,
            tsr,
            tsi,
            false,
            &ni,
            &nr,
            g_ir.as_ref().map(|v| v.as_slice()),
            replaces,
            res,
            out,
        );
    }

    /// The worker a per-resource CHILD_SA the peer makes for child `cfg` gets (RFC 9611):
    /// None for the first of the group (the fallback), or when every worker has one (or
    /// there is one worker): one more of the peer's. TS_MAX_QUEUE past [`PER_RESOURCE_MAX`].
    fn resource_for_peer(&self, cfg: usize) -> Result<Option<u16>, u16> {
        let live: Vec<&Child> = self
            .children
            .iter()
            .filter(|c| c.cfg == cfg && !c.rekeyed)
            .collect();
        if live.iter().filter(|c| c.per_resource).count() >= PER_RESOURCE_MAX {
            return Err(notify::TS_MAX_QUEUE);
        }
        if live.is_empty() || self.resources < 2 {
            return Ok(None);
        }
        // Our own request for a worker, in flight, keeps it.
        let asked = match self.pending.as_ref().map(|p| &p.req) {
            Some(Req::CreateChild {
                cfg: c, worker: w, ..
            }) if *c == cfg => *w,
            _ => None,
        };
        Ok((0..self.resources)
            .find(|w| Some(*w) != asked && !live.iter().any(|c| c.worker == Some(*w))))
    }

    fn responder_rekey_ike(
        &mut self,
        now: Instant,
        h: Header,
        p: &[Payload],
        out: &mut Vec<Action>,
    ) {
        let fail = |s: &mut IkeSa, n: u16, data: Vec<u8>, out: &mut Vec<Action>| {
            s.respond(
                exchange::CREATE_CHILD_SA,
                h.msg_id,
                &[Payload::notify(n, data)],
                out,
            );
        };
        if self.pending.as_ref().is_some_and(|q| {
            matches!(
                q.req,
                Req::RekeyChild { .. } | Req::CreateChild { .. } | Req::DeleteChild { .. }
            )
        }) {
            // A CHILD_SA exchange of ours is under way: moving the children now would leave
            // its answer without its child (and the peer with a pair we forgot, or one it
            // deleted). The peer tries again later (as strongSwan answers).
            tracing::info!(tunnel = %self.cfg.name, "IKE SA rekey while our CHILD_SA exchange is under way: TEMPORARY_FAILURE");
            return fail(self, notify::TEMPORARY_FAILURE, Vec::new(), out);
        }
        let Some(props) = sa_of(p) else {
            return fail(self, notify::INVALID_SYNTAX, Vec::new(), out);
        };
        let Some(chosen) = proposal::select(&self.cfg.ike_proposals, props, proto::IKE) else {
            return fail(self, notify::NO_PROPOSAL_CHOSEN, Vec::new(), out);
        };
        let Some(new_spi_i) = props
            .iter()
            .find(|x| x.num == chosen.num && x.protocol == proto::IKE)
            .and_then(|x| <[u8; 8]>::try_from(x.spi.as_slice()).ok())
            .map(u64::from_be_bytes)
        else {
            return fail(self, notify::INVALID_SYNTAX, Vec::new(), out);
        };
        let Some(group) = chosen.dh else {
            return fail(self, notify::NO_PROPOSAL_CHOSEN, Vec::new(), out);
        };
        let ke = ke_of(p);
        let Some((_, kex)) = ke.filter(|(g, _)| *g == group.id()) else {
            return fail(
                self,
                notify::INVALID_KE_PAYLOAD,
                group.id().to_be_bytes().to_vec(),
                out,
            );
        };
        let Some(ni) = nonce_of(p) else {
            return fail(self, notify::INVALID_SYNTAX, Vec::new(), out);
        };
        let (dh, public) = DhPrivate::generate(group);
        let Ok(g_ir) = dh.shared(kex) else {
            return fail(self, notify::INVALID_SYNTAX, Vec::new(), out);
        };
        let nr = crypto::random_bytes(32);
        let new_spi_r = rand_u64();
        let resp = vec![
            Payload::Sa(vec![chosen.as_set().to_proposal(
                chosen.num,
                proto::IKE,
                new_spi_r.to_be_bytes().to_vec(),
            )]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: group.id(),
                data: public,
            },
        ];
        self.respond(exchange::CREATE_CHILD_SA, h.msg_id, &resp, out);
        let Some(old_keys) = self.keys.as_ref() else {
            return;
        };
        let prf = chosen.prf.unwrap_or(proposal::Prf::HmacSha256);
        let seed = old_keys.rekey_skeyseed(prf, &g_ir, &ni, &nr);
        // The new IKE SA: the peer initiated the rekey, so it is the new SA's initiator (§2.18).
        let mut new = IkeSa::new(self.cfg.clone(), false, self.local, self.remote, now);
        new.rtt = self.rtt;
        new.peer_id = self.peer_id.clone();
        new.spi_i = new_spi_i;
        new.spi_r = new_spi_r;
        new.ni = ni;
        new.nr = nr;
        new.nat = self.nat;
        new.behind_nat = self.behind_nat;
        new.frag = self.frag.inherit();
        new.keys = Some(IkeKeys::derive(
            prf,
            chosen.encr,
            chosen.integ,
            &seed,
            &new.ni,
            &new.nr,
            new_spi_i,
            new_spi_r,
        ));
        new.chosen = Some(chosen);
        new.state = State::Established;
        new.established_at = Some(now);
        new.rekeyed_from(self, now);
        new.lineage = self.lineage;
        if self
            .pending
            .as_ref()
            .is_some_and(|p| matches!(p.req, Req::RekeyIke { .. }))
        {
            // Our own rekey is in flight: who keeps the children is decided when it completes.
            self.collision = Some((new.ni.clone(), new.nr.clone(), new_spi_r));
        } else {
            new.children = std::mem::take(&mut self.children);
            self.hand_over_creation(&mut new);
            self.superseded = true;
            self.superseded_at = Some(now);
        }
        tracing::info!(tunnel = %self.cfg.name, algorithms = %new.algorithms(), "IKE SA rekeyed (responder)");
        out.push(Action::Spawn(Box::new(new)));
    }

    /// Timers: retransmissions, DPD, CHILD_SA rekeying.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Dead {
            return;
        }
        if self.delete_by.is_some_and(|t| now >= t)
            && !self
                .pending
                .as_ref()
                .is_some_and(|p| matches!(p.req, Req::DeleteIke))
        {
            tracing::info!(tunnel = %self.cfg.name, "terminated: the request ahead of our delete went unanswered; ended without a word");
            let restart = self.restarts_when_expired();
            self.close("terminated".into(), restart, out);
            return;
        }
        if self.state == State::Established
            && !self.superseded
            && !self.expired
            && self.past_hard_lifetime(now)
        {
            // swanctl's over_time: neither a rekey nor a reauthentication got through (a
            // peer that refuses them), and keys are not used for ever. The tunnel starts
            // again once this IKE SA is gone, if it is one that starts by itself.
            self.expired = true;
            tracing::warn!(tunnel = %self.cfg.name,
                "the IKE SA reached its hard lifetime (over_time) without a rekey or reauthentication: deleting it");
            // On to the request that may be out: its retransmission, or its end.
            self.delete(now, out);
        }
        if let Some((code, at)) = self.init_refused {
            if self.state == State::InitSent && now.saturating_duration_since(at) >= INIT_ERROR_WAIT
            {
                self.fail(
                    format!(
                        "IKE_SA_INIT refused: notify {code} (no other answer in {}s)",
                        INIT_ERROR_WAIT.as_secs()
                    ),
                    out,
                );
                return;
            }
        }
        if let Some(p) = &mut self.pending {
            if now >= p.next {
                // A DPD check stays unanswered for the configured timeout before the peer is
                // declared dead (sent again meanwhile, the waits growing); other requests for
                // the default schedule's ~45 s.
                let mut budget = match p.req {
                    Req::Dpd if !self.cfg.dpd.timeout.is_zero() => self.cfg.dpd.timeout,
                    _ => retx_budget(),
                };
                if self.resumed {
                    budget = budget.min(RESUME_BUDGET);
                }
                if now.duration_since(p.first) >= budget {
                    let (action, reason) = if matches!(p.req, Req::DeleteIke) {
                        // It was ending anyway: not a dead peer to restart for (before, a
                        // terminate of a tunnel whose peer had gone restarted it), unless it
                        // expired.
                        let action = if self.restarts_when_expired() {
                            DpdAction::Restart
                        } else {
                            DpdAction::Clear
                        };
                        (action, "no answer to our delete".to_string())
                    } else if self.resumed {
                        (
                            self.cfg.dpd.action,
                            "the peer does not answer the IKE SA carried on from the other gateway"
                                .to_string(),
                        )
                    } else if self.state == State::Established {
                        (self.cfg.dpd.action, "peer not responding (DPD)".to_string())
                    } else {
                        (
                            DpdAction::Restart,
                            "no answer to IKE_SA_INIT/IKE_AUTH".to_string(),
                        )
                    };
                    tracing::warn!(tunnel = %self.cfg.name, "{reason}");
                    let restart = action == DpdAction::Restart;
                    self.close(reason, restart, out);
                    return;
                }
                p.tries += 1;
                // The last wait ends when the budget does.
                p.next = (now + retx_delay(p.rto, p.tries)).min(p.first + budget);
                tracing::info!(tunnel = %self.cfg.name, message_id = p.id, attempt = p.tries, "retransmitting a request that got no answer");
                // Every fragment again (RFC 7383 §2.6.1: the peer cannot ask for some), cut
                // smaller if copies of this size keep going unanswered (§2.5.2).
                let data = std::mem::take(&mut p.data);
                let mut recut = p.recut.take();
                let first = p.first;
                let data = self.recut(now, first, data, &mut recut);
                self.send_all(&data, out);
                if let Some(p) = &mut self.pending {
                    p.data = data;
                    p.recut = recut;
                }
                self.stats.0 += 1;
            }
            return;
        }
        if self.state == State::InitDone
            && self.parked.is_none()
            && now.saturating_duration_since(self.created) >= HALF_OPEN_TIMEOUT
        {
            // Half-open: the initiator never authenticated (or never came back). Its keys and
            // messages are not held forever (RFC 7296 §2.6); nothing is said to it.
            self.close("half-open: no IKE_AUTH came".into(), false, out);
            return;
        }
        if self.superseded
            && self.pending.is_none()
            && self
                .superseded_at
                .is_some_and(|t| now.saturating_duration_since(t) >= SUPERSEDED_WAIT)
        {
            // The peer rekeyed it (or won the collision) but never deleted it.
            tracing::info!(tunnel = %self.cfg.name, "a rekeyed IKE SA the peer did not delete: deleting it");
            self.superseded_at = None;
            self.request(now, Req::DeleteIke, out);
            return;
        }
        if self.state != State::Established || self.superseded {
            return;
        }
        // Requests queued with none in flight (a synced IKE SA's deletes).
        if let Some(req) = self.queue.pop_front() {
            self.request(now, req, out);
            return;
        }
        if self.behind_nat && now.duration_since(self.last_keepalive) >= NAT_KEEPALIVE {
            // A single 0xFF byte on the NAT-T port (RFC 3948 §2.3); the I/O layer sends it
            // without the non-ESP marker.
            self.last_keepalive = now;
            out.push(Action::Send {
                local: self.local,
                remote: self.remote,
                data: vec![0xff],
            });
        }
        // A CHILD_SA that reached its hard time limit without a rekey (the peer kept refusing
        // them) is deleted and made anew (never while our rekey of it is out: nothing is
        // started here while a request is). A per-resource one (RFC 9611) too: the fallback
        // at once, a worker's after the usual wait (its traffic takes the fallback meanwhile).
        let expired = self.children.iter().position(|c| {
            !c.rekeyed
                && now.saturating_duration_since(c.installed) >= self.cfg.children[c.cfg].life_time
        });
        if let Some(pos) = expired {
            let c = self.remove_and_remake(now, pos, out);
            tracing::warn!(tunnel = %self.cfg.name, child = %self.cfg.children[c.cfg].name,
                spi_in = %format_args!("{:08x}", c.spi_in),
                "a CHILD_SA reached its life_time without a rekey: deleted, made anew");
            self.request(now, Req::DeleteChild { spi_in: c.spi_in }, out);
            return;
        }
        if self.reauth_at.is_some_and(|t| now >= t) {
            // Again later if the new IKE SA does not come up; the daemon deletes this one
            // once it has.
            self.reauth_at = Some(now + REAUTH_RETRY);
            self.reauth_tried.get_or_insert(now);
            tracing::info!(tunnel = %self.cfg.name, "reauthenticating: a new IKE SA beside this one");
            out.push(Action::Reauthenticate {
                spi: self.our_spi(),
            });
            return;
        }
        if self.ike_rekey_at.is_some_and(|t| now >= t) {
            self.ike_rekey_at = Some(now + Duration::from_secs(3600));
            self.rekey_tried.get_or_insert(now);
            let group = self.chosen.and_then(|c| c.dh).unwrap_or(Group::Modp2048);
            let (dh, public) = DhPrivate::generate(group);
            let req = Req::RekeyIke {
                spi: rand_u64(),
                ni: crypto::random_bytes(32),
                dh,
                public,
                group,
            };
            self.request(now, req, out);
            return;
        }
        if !self.cfg.dpd.delay.is_zero()
            && now.duration_since(self.last_heard) >= self.cfg.dpd.delay
        {
            self.request(now, Req::Dpd, out);
            return;
        }
        let due = self
            .children
            .iter()
            .position(|c| !c.rekeyed && now >= c.rekey_at);
        if let Some(idx) = due {
            let spi_in = rand_spi();
            let ni = crypto::random_bytes(32);
            let (dh, public) = self.child_pfs_keys(self.children[idx].cfg);
            self.children[idx].rekey_at = now + Duration::from_secs(3600);
            let old = self.children[idx].spi_in;
            self.request(
                now,
                Req::RekeyChild {
                    old,
                    spi_in,
                    ni,
                    dh,
                    public,
                },
                out,
            );
            return;
        }
        if let Some(req) = self.next_create(now) {
            self.request(now, req, out);
        }
    }

    /// Our rekey of the CHILD_SA with inbound SPI `old` was refused (its DH group `sent`):
    /// again in 10 s; at once with the group the peer names in INVALID_KE_PAYLOAD (§1.3);
    /// and one the peer does not know (CHILD_SA_NOT_FOUND: it lost it) is removed and made
    /// anew (§2.25), not rekeyed again and again.
    fn rekey_child_failed(
        &mut self,
        now: Instant,
        payloads: &[Payload],
        old: u32,
        sent: Option<Group>,
        out: &mut Vec<Action>,
    ) {
        let Some(pos) = self.children.iter().position(|c| c.spi_in == old) else {
            return;
        };
        let cfg = self.children[pos].cfg;
        let errors: Vec<&Notify> = notifies(payloads)
            .filter(|n| n.ntype < notify::FIRST_STATUS)
            .collect();
        if errors.iter().any(|n| n.ntype == notify::CHILD_SA_NOT_FOUND) {
            tracing::info!(tunnel = %self.cfg.name, child = %self.cfg.children[cfg].name,
                spi_in = %format_args!("{old:08x}"),
                "the peer does not know the CHILD_SA we rekeyed: removed, made anew");
            self.remove_and_remake(now, pos, out);
            return;
        }
        let asked = errors
            .iter()
            .find(|n| n.ntype == notify::INVALID_KE_PAYLOAD)
            .and_then(|n| self.asked_group(n, cfg, sent));
        let wait = if let Some(g) = asked {
            tracing::info!(tunnel = %self.cfg.name, group = g.name(), "the peer asks for another DH group for the rekey");
            // At once the first time; a peer that keeps changing its mind waits 10 s a turn.
            let again = self.ke_groups.iter().any(|x| x.0 == cfg);
            self.ke_groups.retain(|x| x.0 != cfg);
            self.ke_groups.push((cfg, g));
            if again {
                Duration::from_secs(10)
            } else {
                Duration::ZERO
            }
        } else {
            Duration::from_secs(10)
        };
        self.children[pos].rekey_at = now + wait;
    }

    /// Removes the CHILD_SA at `pos` from the data plane and queues a new one in its place
    /// (a per-resource one after the usual wait). Returns it.
    fn remove_and_remake(&mut self, now: Instant, pos: usize, out: &mut Vec<Action>) -> Child {
        let c = self.children.remove(pos);
        out.push(self.removal(&c));
        let cfg = c.cfg;
        let others = self
            .children
            .iter()
            .any(|x| x.cfg == cfg && !x.rekeyed && x.worker == c.worker);
        if c.worker.is_some() {
            self.create_failed(now, cfg, c.worker);
        } else if !others && !self.to_create.contains(&cfg) {
            self.to_create.push_back(cfg);
        }
        c
    }

    /// A DH key pair for a CREATE_CHILD_SA of child `cfg`: of the group the peer last asked
    /// for with INVALID_KE_PAYLOAD, else of the child's first PFS group (none without PFS).
    fn child_pfs_keys(&self, cfg: usize) -> (Option<DhPrivate>, Vec<u8>) {
        match self.ke_groups.iter().find(|x| x.0 == cfg) {
            Some(&(_, g)) => {
                let (d, public) = DhPrivate::generate(g);
                (Some(d), public)
            }
            None => pfs_keys(&self.cfg.children[cfg]),
        }
    }

    /// The group an INVALID_KE_PAYLOAD notify names, if child `cfg` offers it and it is not
    /// the one we `sent` (RFC 7296 §1.3: try again with it; not the same one: no loop).
    fn asked_group(&self, n: &Notify, cfg: usize, sent: Option<Group>) -> Option<Group> {
        <[u8; 2]>::try_from(n.data.as_slice())
            .ok()
            .map(u16::from_be_bytes)
            .and_then(Group::from_id)
            .filter(|g| {
                self.cfg.children[cfg]
                    .esp_proposals
                    .iter()
                    .any(|a| a.dh.contains(g))
            })
            .filter(|g| Some(*g) != sent)
    }

    /// The answer to our CREATE_CHILD_SA for a new CHILD_SA of child `cfg`.
    #[allow(clippy::too_many_arguments)]
    fn complete_create_child(
        &mut self,
        now: Instant,
        p: &[Payload],
        cfg: usize,
        worker: Option<u16>,
        spi_in: u32,
        ni: &[u8],
        dh: Option<DhPrivate>,
        out: &mut Vec<Action>,
    ) -> Result<(), (String, bool)> {
        if let Some(n) = notifies(p).find(|n| n.ntype < notify::FIRST_STATUS) {
            if n.ntype == notify::INVALID_KE_PAYLOAD {
                // Its PFS group next time, if the child offers it (RFC 7296 §1.3).
                if let Some(g) = self.asked_group(n, cfg, dh.as_ref().map(|d| d.group())) {
                    // At once with the group the peer named (one we offer, not the one we
                    // sent: no loop).
                    self.ke_groups.retain(|x| x.0 != cfg);
                    self.ke_groups.push((cfg, g));
                    return Err((format!("the peer asks for DH group {}", g.name()), true));
                }
                return Err((
                    "the peer asks for a DH group the child does not offer".into(),
                    false,
                ));
            }
            if n.ntype == notify::TS_MAX_QUEUE && worker.is_some() {
                // RFC 9611 §4: the peer wants no more of them; the fallback carries the rest.
                tracing::info!(tunnel = %self.cfg.name, child = %self.cfg.children[cfg].name,
                    "the peer takes no more per-resource CHILD_SAs (TS_MAX_QUEUE)");
                self.no_more.push(cfg);
                return Ok(());
            }
            return Err((format!("peer refused with notify {}", n.ntype), false));
        }
        let (nr, g_ir) = nonce_and_shared(p, dh).map_err(|e| (e, false))?;
        let confirmed = self.cfg.children[cfg].per_cpu_sas
            && notifies(p).any(|n| n.ntype == notify::SA_RESOURCE_INFO);
        if worker.is_some() && !confirmed {
            // It made an ordinary CHILD_SA: ask for no more.
            tracing::warn!(tunnel = %self.cfg.name, child = %self.cfg.children[cfg].name,
                "the peer answered a per-resource CHILD_SA without SA_RESOURCE_INFO: no more asked for");
            self.no_more.push(cfg);
        }
        let res = (confirmed, worker.filter(|_| confirmed));
        self.adopt_child(
            now,
            p,
            cfg,
            spi_in,
            Some((ni.to_vec(), nr, g_ir)),
            None,
            res,
            out,
        )
        .map_err(|e| (e, false))
    }

    /// Hands what new CHILD_SAs are still to be made to the IKE SA that takes this one's
    /// children over (an IKE SA rekey): the configured children not made yet (with one in
    /// flight here, whose late answer only makes a CHILD_SA that goes with this IKE SA), the
    /// peer's refusals and the back-offs.
    fn hand_over_creation(&mut self, new: &mut IkeSa) {
        let c = self.take_creation();
        new.merge_creation(c);
    }

    /// This IKE SA's [`Creation`], taken (its children go to another IKE SA).
    fn take_creation(&mut self) -> Creation {
        let mut to_create = std::mem::take(&mut self.to_create);
        if let Some(Req::CreateChild {
            cfg, worker: None, ..
        }) = self.pending.as_ref().map(|p| &p.req)
        {
            if !to_create.contains(cfg) {
                to_create.push_back(*cfg);
            }
        }
        Creation {
            to_create,
            no_more: std::mem::take(&mut self.no_more),
            create_after: std::mem::take(&mut self.create_after),
            ke_groups: std::mem::take(&mut self.ke_groups),
        }
    }

    /// Takes over another IKE SA's [`Creation`] along with its children.
    pub fn merge_creation(&mut self, c: Creation) {
        for x in c.to_create {
            if !self.to_create.contains(&x) {
                self.to_create.push_back(x);
            }
        }
        for x in c.no_more {
            if !self.no_more.contains(&x) {
                self.no_more.push(x);
            }
        }
        for x in c.create_after {
            if !self.create_after.iter().any(|y| (y.0, y.1) == (x.0, x.1)) {
                self.create_after.push(x);
            }
        }
        for x in c.ke_groups {
            if !self.ke_groups.iter().any(|y| y.0 == x.0) {
                self.ke_groups.push(x);
            }
        }
    }

    /// Records a failed new CHILD_SA (or a per-resource one the peer deleted): it waits
    /// [`CREATE_RETRY`], doubled for each failure before, up to [`CREATE_RETRY_MAX`].
    /// Returns the wait.
    fn create_failed(&mut self, now: Instant, cfg: usize, worker: Option<u16>) -> Duration {
        let tries = match self
            .create_after
            .iter()
            .position(|x| (x.0, x.1) == (cfg, worker))
        {
            Some(i) => self.create_after.swap_remove(i).3 + 1,
            None => 0,
        };
        let wait = CREATE_RETRY
            .saturating_mul(1 << tries.min(10))
            .min(CREATE_RETRY_MAX);
        self.create_after.push((cfg, worker, now + wait, tries));
        wait
    }

    /// The next new CHILD_SA to ask for: a configured child after the first not made yet,
    /// else a per-resource CHILD_SA (RFC 9611) of a worker that has none, for a child whose
    /// fallback the peer made one of a group (it answered SA_RESOURCE_INFO).
    fn next_create(&mut self, now: Instant) -> Option<Req> {
        let waits = |c: usize, w: Option<u16>, after: &[(usize, Option<u16>, Instant, u32)]| {
            after.iter().any(|x| (x.0, x.1) == (c, w) && now < x.2)
        };
        // Configured children that came up meanwhile (the peer made them) are done; a
        // per-resource group's workers' CHILD_SAs do not stand for its fallback.
        let children = &self.children;
        self.to_create
            .retain(|c| !children.iter().any(|x| x.cfg == *c && x.worker.is_none()));
        let mut pick = self
            .to_create
            .iter()
            .position(|c| !waits(*c, None, &self.create_after))
            .and_then(|i| self.to_create.remove(i))
            .map(|c| (c, None));
        if pick.is_none() && self.resources >= 2 {
            'children: for (c, ccfg) in self.cfg.children.iter().enumerate() {
                if !ccfg.per_cpu_sas || self.no_more.contains(&c) {
                    continue;
                }
                let live = |x: &&Child| x.cfg == c && !x.rekeyed;
                if !self.children.iter().filter(live).any(|x| x.per_resource) {
                    continue;
                }
                for w in 0..self.resources {
                    let has = self
                        .children
                        .iter()
                        .filter(live)
                        .any(|x| x.worker == Some(w));
                    if !has && !waits(c, Some(w), &self.create_after) {
                        pick = Some((c, Some(w)));
                        break 'children;
                    }
                }
            }
        }
        let (cfg, worker) = pick?;
        let (dh, public) = self.child_pfs_keys(cfg);
        Some(Req::CreateChild {
            cfg,
            worker,
            spi_in: rand_spi(),
            ni: crypto::random_bytes(32),
            dh,
            public,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn complete_rekey_child(
        &mut self,
        now: Instant,
        p: &[Payload],
        old_spi: u32,
        spi_in: u32,
        ni: &[u8],
        dh: Option<DhPrivate>,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        if let Some(n) = notifies(p).find(|n| n.ntype < notify::FIRST_STATUS) {
            return Err(format!("peer refused with notify {}", n.ntype));
        }
        let old = self
            .children
            .iter()
            .find(|c| c.spi_in == old_spi)
            .ok_or("child gone")?
            .clone();
        let (nr, g_ir) = nonce_and_shared(p, dh)?;
        self.adopt_child(
            now,
            p,
            old.cfg,
            spi_in,
            Some((ni.to_vec(), nr, g_ir)),
            Some(old.spi_in),
            (old.per_resource, old.worker),
            out,
        )?;
        if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == old.spi_in) {
            c.rekeyed = true;
        }
        if let Some((their_ni, our_nr, theirs)) = &old.collision {
            // §2.8.1: the SA made with the lowest of the four nonces is redundant; its
            // exchange's initiator deletes it.
            let peer_nr = nr_of(p);
            let lowest = [
                ni,
                peer_nr.as_slice(),
                their_ni.as_slice(),
                our_nr.as_slice(),
            ]
            .into_iter()
            .min()
            .unwrap_or_default();
            if lowest == ni || lowest == peer_nr.as_slice() {
                tracing::info!(tunnel = %self.cfg.name, "CHILD_SA rekey collision: ours is redundant");
                if let Some(t) = self.children.iter().find(|c| c.spi_in == *theirs) {
                    out.push(Action::Activate {
                        tunnel: self.cfg.name.clone(),
                        spi_in: t.spi_in,
                        spi_out: t.spi_out,
                    });
                }
                if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
                    c.rekeyed = true;
                }
                self.request(now, Req::DeleteChild { spi_in }, out);
            }
        }
        // Make-before-break: the new pair is in and used outbound; the old inbound SA stays
        // until the peer confirms the delete (it may still have packets in flight).
        self.request(now, Req::DeleteChild { spi_in: old.spi_in }, out);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn complete_rekey_ike(
        &mut self,
        now: Instant,
        p: &[Payload],
        our_spi: u64,
        ni: &[u8],
        dh: DhPrivate,
        group: Group,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        if let Some(n) = notifies(p).find(|n| n.ntype < notify::FIRST_STATUS) {
            return Err(format!("peer refused with notify {}", n.ntype));
        }
        let sa = sa_of(p).ok_or("no SA payload")?;
        let chosen = proposal::check_answer(&self.cfg.ike_proposals, sa, proto::IKE)
            .ok_or("the responder chose a proposal we did not offer")?;
        if chosen.dh != Some(group) {
            return Err("the responder chose another DH group".into());
        }
        let their_spi = <[u8; 8]>::try_from(sa[0].spi.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| "IKE SPI is not 8 bytes")?;
        let nr = nonce_of(p).ok_or("no nonce")?;
        let kex = ke_of(p)
            .filter(|(g, _)| *g == group.id())
            .map(|(_, d)| d)
            .ok_or("no KE of our group")?;
        let g_ir = dh.shared(kex).map_err(|e| e.to_string())?;
        let old_keys = self.keys.as_ref().ok_or("no keys")?;
        let prf = chosen.prf.unwrap_or(proposal::Prf::HmacSha256);
        let seed = old_keys.rekey_skeyseed(prf, &g_ir, ni, &nr);
        // We initiated the rekey: we are the new IKE SA's original initiator (§2.18).
        let mut new = IkeSa::new(self.cfg.clone(), true, self.local, self.remote, now);
        new.rtt = self.rtt;
        new.peer_id = self.peer_id.clone();
        new.spi_i = our_spi;
        new.spi_r = their_spi;
        new.ni = ni.to_vec();
        new.nr = nr;
        new.nat = self.nat;
        new.behind_nat = self.behind_nat;
        new.frag = self.frag.inherit();
        new.keys = Some(IkeKeys::derive(
            prf,
            chosen.encr,
            chosen.integ,
            &seed,
            &new.ni,
            &new.nr,
            our_spi,
            their_spi,
        ));
        new.chosen = Some(chosen);
        new.state = State::Established;
        new.established_at = Some(now);
        new.rekeyed_from(self, now);
        new.lineage = self.lineage;
        let mut ours_redundant = false;
        if let Some((their_ni, our_nr, theirs)) = self.collision.take() {
            // §2.8.2: the new SA made with the lowest of the four nonces is redundant, and
            // the initiator of that exchange deletes it.
            let lowest = [&new.ni, &new.nr, &their_ni, &our_nr]
                .into_iter()
                .min()
                .cloned()
                .unwrap_or_default();
            ours_redundant = lowest == new.ni || lowest == new.nr;
            tracing::info!(tunnel = %self.cfg.name, ours_redundant, "IKE SA rekey collision");
            if ours_redundant {
                new.delete_now = true;
                out.push(Action::MoveChildren {
                    to: theirs,
                    children: std::mem::take(&mut self.children),
                    creation: Box::new(self.take_creation()),
                });
            }
        }
        if !ours_redundant {
            new.children = std::mem::take(&mut self.children);
            self.hand_over_creation(&mut new);
        }
        tracing::info!(tunnel = %self.cfg.name, algorithms = %new.algorithms(), "IKE SA rekeyed (initiator)");
        out.push(Action::Spawn(Box::new(new)));
        self.superseded = true;
        if ours_redundant {
            // §2.8.2: the initiator of the surviving SA (the peer) deletes the old one. Had we
            // deleted it too, a peer whose rekey's answer was lost would take our delete for
            // the end of the collision and move its children to our redundant SA.
            self.superseded_at = Some(now);
        } else {
            self.request(now, Req::DeleteIke, out);
        }
        Ok(())
    }

    /// A data-plane lifetime of the CHILD_SA with inbound SPI `spi_in` ran out (`hard`: the
    /// hard limit, and the data plane now refuses its traffic): rekey it at the next tick. If
    /// its rekey is already waiting for an answer when the hard limit comes, the request goes
    /// out again at the next tick rather than when its timeout ends: the answer is late, and
    /// every moment without it is traffic refused. Returns whether it is one of ours.
    pub fn child_expired(&mut self, spi_in: u32, hard: bool, now: Instant) -> bool {
        let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi_in) else {
            return false;
        };
        if !c.rekeyed {
            c.rekey_at = now;
        }
        if let Some(p) = &mut self.pending {
            let rekeys_it = matches!(&p.req, Req::RekeyChild { old, .. } if *old == spi_in);
            if hard && rekeys_it && !p.hurried {
                p.hurried = true;
                p.next = p.next.min(now);
            }
        }
        true
    }

    /// Makes every CHILD_SA due for rekeying at the next tick.
    pub fn rekey_children_now(&mut self, now: Instant) {
        for c in &mut self.children {
            if !c.rekeyed {
                c.rekey_at = now;
            }
        }
    }

    /// Whether the tunnel starts again once this IKE SA is gone: it expired (`over_time`), it
    /// was the tunnel's last word (not one a rekey replaced), and the tunnel starts by itself.
    fn restarts_when_expired(&self) -> bool {
        self.expired && !self.superseded && self.cfg.start == crate::config::StartAction::Start
    }

    /// Whether our delete of this IKE SA is out or waiting to go.
    fn deleting_ike(&self) -> bool {
        let del = |r: &Req| matches!(r, Req::DeleteIke);
        self.pending.as_ref().is_some_and(|p| del(&p.req)) || self.queue.iter().any(del)
    }

    /// Deletes the IKE SA (and its children) politely. With a request of ours still out, the
    /// delete goes once it is answered (a window of one, RFC 7296 §2.3: sent at once, with the
    /// next message ID, it was dropped by a peer that had not received the one before), or
    /// the SA ends without a word after [`DELETE_BEHIND`]. Other queued requests are dropped.
    pub fn delete(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Established {
            self.close("terminated".into(), false, out);
            return;
        }
        if self.deleting_ike() {
            return;
        }
        self.queue.clear();
        if self.pending.is_some() {
            self.queue.push_back(Req::DeleteIke);
            self.delete_by = Some(now + DELETE_BEHIND);
        } else {
            self.request(now, Req::DeleteIke, out);
        }
    }
}

fn esp_proposals(sets: &[AlgSet], spi: u32, strip_dh: bool) -> Vec<wire::Proposal> {
    sets.iter()
        .enumerate()
        .map(|(i, a)| {
            let mut a = a.clone();
            if strip_dh {
                a.dh.clear();
            }
            a.to_proposal(i as u8 + 1, proto::ESP, spi.to_be_bytes().to_vec())
        })
        .collect()
}

/// The data plane's byte/packet lifetimes of a child: soft at the configured rekey limits,
/// hard at the configured (or default: 10% later) life limits.
fn child_lifetime(c: &ChildConfig) -> dataplane::sa::Lifetime {
    dataplane::sa::Lifetime {
        soft_bytes: c.rekey_bytes,
        hard_bytes: c.life_bytes,
        soft_packets: c.rekey_packets,
        hard_packets: c.life_packets,
    }
}

/// A CREATE_CHILD_SA request's payloads: `lead` (notifies), the child's proposals with our
/// SPI, our nonce, our KE (PFS: its group and value), USE_TRANSPORT_MODE, and the selectors
/// (TSi, TSr).
fn child_request(
    ccfg: &ChildConfig,
    lead: Vec<Payload>,
    spi_in: u32,
    ni: &[u8],
    ke: Option<(Group, &[u8])>,
    (tsi, tsr): (Vec<TrafficSelector>, Vec<TrafficSelector>),
) -> Vec<Payload> {
    let mut p = lead;
    p.push(Payload::Sa(esp_proposals(
        &ccfg.esp_proposals,
        spi_in,
        false,
    )));
    p.push(Payload::Nonce(ni.to_vec()));
    if let Some((g, public)) = ke {
        p.push(Payload::Ke {
            group: g.id(),
            data: public.to_vec(),
        });
    }
    if ccfg.mode == dataplane::sa::Mode::Transport {
        p.push(Payload::notify(notify::USE_TRANSPORT_MODE, Vec::new()));
    }
    p.push(Payload::Ts {
        responder: false,
        selectors: tsi,
    });
    p.push(Payload::Ts {
        responder: true,
        selectors: tsr,
    });
    p
}

/// A DH key pair of the child's PFS group (none without one), for a CREATE_CHILD_SA.
fn pfs_keys(c: &ChildConfig) -> (Option<DhPrivate>, Vec<u8>) {
    match pfs_group(c) {
        Some(g) => {
            let (d, public) = DhPrivate::generate(g);
            (Some(d), public)
        }
        None => (None, Vec::new()),
    }
}

/// The responder's nonce of a CREATE_CHILD_SA answer and, with our DH value, the shared
/// secret of its KE.
fn nonce_and_shared(
    p: &[Payload],
    dh: Option<DhPrivate>,
) -> Result<(Vec<u8>, Option<Secret>), String> {
    let nr = nonce_of(p).ok_or("no nonce")?;
    let g_ir = match dh {
        Some(d) => {
            let kex = ke_of(p).map(|(_, d)| d).ok_or("no KE")?;
            Some(d.shared(kex).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    Ok((nr, g_ir))
}

/// The PFS group a child's rekeys use: the first group of its first proposal.
fn pfs_group(c: &ChildConfig) -> Option<Group> {
    c.esp_proposals.first().and_then(|a| a.dh.first().copied())
}

fn sa_of(p: &[Payload]) -> Option<&Vec<wire::Proposal>> {
    p.iter().find_map(|x| {
        if let Payload::Sa(s) = x {
            Some(s)
        } else {
            None
        }
    })
}

fn nonce_of(p: &[Payload]) -> Option<Vec<u8>> {
    p.iter().find_map(|x| {
        if let Payload::Nonce(n) = x {
            Some(n.clone())
        } else {
            None
        }
    })
}

fn ke_of(p: &[Payload]) -> Option<(u16, &Vec<u8>)> {
    p.iter().find_map(|x| {
        if let Payload::Ke { group, data } = x {
            Some((*group, data))
        } else {
            None
        }
    })
}

fn nr_of(p: &[Payload]) -> Vec<u8> {
    nonce_of(p).unwrap_or_default()
}

fn notifies(p: &[Payload]) -> impl Iterator<Item = &Notify> {
    p.iter().filter_map(|x| {
        if let Payload::Notify(n) = x {
            Some(n)
        } else {
            None
        }
    })
}

/// Whether an IKE_AUTH message carries INITIAL_CONTACT.
fn initial_contact(p: &[Payload]) -> bool {
    notifies(p).any(|n| n.ntype == notify::INITIAL_CONTACT)
}

/// The peer sent IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT (RFC 7383 §2.3).
fn announces_fragmentation(p: &[Payload]) -> bool {
    notifies(p).any(|n| n.ntype == notify::IKEV2_FRAGMENTATION_SUPPORTED)
}

fn auth_payload(p: &[Payload]) -> Option<(u8, &Vec<u8>)> {
    p.iter().find_map(|x| {
        if let Payload::Auth { method, data } = x {
            Some((*method, data))
        } else {
            None
        }
    })
}

fn ts_payload(p: &[Payload], responder: bool) -> Option<Vec<TrafficSelector>> {
    p.iter().find_map(|x| match x {
        Payload::Ts {
            responder: r,
            selectors,
        } if *r == responder => Some(selectors.clone()),
        _ => None,
    })
}

fn sig_hashes(p: &[Payload]) -> Vec<u16> {
    notifies(p)
        .find(|n| n.ntype == notify::SIGNATURE_HASH_ALGORITHMS)
        .map(|n| pki::parse_hashes(&n.data))
        .unwrap_or_default()
}

/// CERT payloads: our certificate, then the intermediates.
fn push_certs(p: &mut Vec<Payload>, cred: &pki::Credential) {
    for c in std::iter::once(&cred.cert).chain(&cred.chain) {
        p.push(Payload::Cert {
            encoding: pki::CERT_X509_SIGNATURE,
            data: c.clone(),
        });
    }
}

/// Where the SK payload of `data` starts: it is last (the parser checked), `body` its body.
fn sk_offset(data: &[u8], body: &[u8]) -> usize {
    data.len() - wire::GENERIC_LEN - body.len()
}

/// An identity for logs and `fgctl`.
fn id_display(id_type: u8, data: &[u8]) -> String {
    match (
        id_type,
        <[u8; 4]>::try_from(data),
        <[u8; 16]>::try_from(data),
    ) {
        (1, Ok(a), _) => std::net::Ipv4Addr::from(a).to_string(),
        (5, _, Ok(a)) => std::net::Ipv6Addr::from(a).to_string(),
        (9, _, _) => pki::dn_der_to_string(data).unwrap_or_else(|| "(malformed DN)".into()),
        _ => String::from_utf8_lossy(data).into_owned(),
    }
}

fn id_body(id_type: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![id_type, 0, 0, 0];
    v.extend_from_slice(data);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_retransmission_timeout_follows_rfc_6298() {
        let mut r = RttEstimate::default();
        assert_eq!(r.rto(), RETX_FIRST, "nothing measured yet");
        // First sample: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR.
        r.sample(ms(50));
        assert_eq!(r.rto(), ms(150));
        // Then RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| = 43.75, SRTT = 7/8 SRTT + 1/8 R = 62.5.
        r.sample(ms(150));
        assert_eq!(r.rto(), Duration::from_micros(62_500 + 4 * 43_750));
        // Steady 1 ms round trips: the variance decays, the floor holds.
        for _ in 0..100 {
            r.sample(ms(1));
        }
        assert_eq!(r.rto(), RTO_MIN);
        // A path slower than the default: never more than the default first timeout.
        let mut slow = RttEstimate::default();
        slow.sample(Duration::from_secs(5));
        assert_eq!(slow.rto(), RETX_FIRST);
    }

    #[test]
    fn a_certificate_auth_is_checked_before_its_chain() {
        let d = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pki");
        let cert = std::path::PathBuf::from(format!("{d}/gw-a.pem"));
        let key = std::path::PathBuf::from(format!("{d}/gw-a.key"));
        let cred = pki::Credential::load(&cert, &key).unwrap();
        let leaf = pki::load_certs(&cert).unwrap().remove(0);
        let pk = crate::config::PubkeyAuth {
            cred: pki::Credential::load(&cert, &key).unwrap(),
            cas: pki::TrustAnchors::load(&[std::path::Path::new(&format!("{d}/ca-rsa.pem"))])
                .unwrap(),
        };
        let octets = b"the octets IKE_AUTH signs";
        let (method, good) = cred.sign(octets, &[2]).unwrap();
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let subject = pk.cred.subject_der.clone();
        let checks = || pki::CHAIN_CHECKS.with(|c| c.get());
        let check = |id_type: u8, id: &[u8], sig: &[u8]| {
            let before = checks();
            let r = check_cert_auth(&pk, &leaf, &[], id_type, id, method, sig, octets, None);
            let r = match r {
                Ok(ca) => Ok(ca),
                Err(CertAuth::Fail(e)) => Err(e),
                Err(CertAuth::Fetch) => Err("fetch".into()),
            };
            (r, checks() - before)
        };
        // A good AUTH: then the chain is checked (once).
        let (r, chains) = check(9, &subject, &good);
        assert!(r.as_ref().is_ok_and(|ca| ca.contains("RSA CA")), "{r:?}");
        assert_eq!(chains, 1);
        // Someone's public certificate with an AUTH its sender could not sign: refused for the
        // AUTH, without the chain (nor its revocation) being looked at.
        let (r, chains) = check(9, &subject, &bad);
        assert!(
            r.as_ref().is_err_and(|e| e.contains("AUTH signature")),
            "{r:?}"
        );
        assert_eq!(chains, 0);
        // Nor for an identity the certificate does not hold.
        let (r, chains) = check(2, b"gw-x.example", &good);
        assert!(
            r.as_ref()
                .is_err_and(|e| e.contains("not in its certificate")),
            "{r:?}"
        );
        assert_eq!(chains, 0);
        // A verdict from the fetch thread is taken as it is.
        let before = checks();
        let r = check_cert_auth(
            &pk,
            &leaf,
            &[],
            9,
            &subject,
            method,
            &good,
            octets,
            Some(Err(pki::PkiError::Untrusted("revoked meanwhile".into()))),
        );
        assert!(matches!(r, Err(CertAuth::Fail(e)) if e.contains("revoked meanwhile")));
        assert_eq!(checks(), before);
    }

    #[test]
    fn the_give_up_budget_is_the_default_schedule() {
        // 2 + 3.6 + 6.48 + 11.664 + 20.9952 s.
        let b = retx_budget().as_secs_f64();
        assert!((b - 44.7392).abs() < 1e-6, "{b}");
    }
}
