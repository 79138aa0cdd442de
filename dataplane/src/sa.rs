//! Security associations: the control record ([`SaParams`]) and the per-direction runtime
//! structs the packet path uses ([`OutboundSa`], [`InboundSa`]).
//!
//! Everything that varies between SAs (mode, outer IP version, UDP encapsulation, cipher) is
//! decided here, once, when the SA is installed: the outbound SA carries a prebuilt outer header
//! and the transform chosen for its cipher and backend. The sequence counter and the lifetime
//! counters sit on cache lines of their own because every packet writes them.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use zeroize::Zeroizing;

use crate::crypto::{self, Backend, Cipher, CryptoError, EspTransform, Integrity, Mac};
use crate::net::IpPrefix;
use crate::replay::{AtomicWindow, ReplayError};
use crate::spd::{PortRange, Selector};
use crate::wire::ip_proto;

/// ESP or AH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Encapsulating Security Payload (RFC 4303).
    Esp,
    /// Authentication Header (RFC 4302).
    Ah,
}

/// Tunnel or transport mode (RFC 4301 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A new outer IP header; the whole inner packet is protected.
    Tunnel,
    /// The packet's own IP header is kept; only its payload is protected.
    Transport,
}

/// Which way an SA carries traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// We encrypt with it.
    Out,
    /// We decrypt with it.
    In,
}

/// The outer header's DF bit in tunnel mode (RFC 4301 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DfMode {
    /// Copy DF from an inner IPv4 header; set it for inner IPv6 (which never fragments en route).
    #[default]
    Copy,
    /// Always set DF.
    Set,
    /// Always clear DF.
    Clear,
}

/// How ECN crosses the tunnel (RFC 6040).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EcnMode {
    /// RFC 6040 §4.1 normal mode: the outer ECN field is a copy of the inner one.
    #[default]
    Normal,
    /// RFC 6040 §4.1 compatibility mode: the outer ECN field is Not-ECT.
    Compat,
}

/// Soft and hard lifetimes in bytes and packets; 0 means no limit (RFC 4301 §4.4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lifetime {
    /// Raise a soft-expiry event after this many bytes.
    pub soft_bytes: u64,
    /// Stop using the SA after this many bytes.
    pub hard_bytes: u64,
    /// Raise a soft-expiry event after this many packets.
    pub soft_packets: u64,
    /// Stop using the SA after this many packets.
    pub hard_packets: u64,
}

/// Tunnel-mode outer addresses, seen from this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Our address (outbound: outer source; inbound: outer destination).
    pub local: IpAddr,
    /// The peer's address (outbound: outer destination; inbound: outer source).
    pub remote: IpAddr,
}

/// UDP encapsulation of ESP (RFC 3948).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpEncap {
    /// Our UDP port (normally 4500).
    pub local_port: u16,
    /// The peer's UDP port (4500, or what its NAT maps it to).
    pub remote_port: u16,
}

/// The original addresses of a UDP-encapsulated transport-mode SA (NAT-OA: RFC 3947 §5.2,
/// RFC 7296 §2.23), as the peer's TCP/UDP checksums saw them before a NAT rewrote the IP header.
/// An address left out is taken to be the one on the wire (not translated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatOa {
    /// The peer's own (private) address: the source its checksums cover.
    #[serde(default)]
    pub remote: Option<IpAddr>,
    /// Our address as the peer addressed us: the destination its checksums cover.
    #[serde(default)]
    pub local: Option<IpAddr>,
}

/// The control record of one SA: everything needed to build its runtime struct.
#[derive(Clone)]
pub struct SaParams {
    /// A label for logs and counters.
    pub name: String,
    /// Security parameter index.
    pub spi: u32,
    /// Which way it carries traffic.
    pub direction: Direction,
    /// ESP or AH.
    pub protocol: Protocol,
    /// Tunnel or transport.
    pub mode: Mode,
    /// ESP cipher ([`Cipher::Null`] for AH).
    pub cipher: Cipher,
    /// Separate integrity algorithm (required for AH).
    pub integrity: Integrity,
    /// Encryption key, including the salt of AEADs; wiped when dropped.
    pub enc_key: Zeroizing<Vec<u8>>,
    /// Integrity key; wiped when dropped.
    pub auth_key: Zeroizing<Vec<u8>>,
    /// Outer addresses (tunnel mode).
    pub tunnel: Option<Endpoints>,
    /// UDP encapsulation (ESP only).
    pub udp_encap: Option<UdpEncap>,
    /// Inbound transport mode with UDP encapsulation: the original addresses, when known, for
    /// the incremental checksum fix-up (RFC 3948 §3.1.2); without them the inner TCP/UDP
    /// checksum is recomputed.
    pub natt_oa: Option<NatOa>,
    /// Extended (64-bit) sequence numbers.
    pub esn: bool,
    /// Anti-replay window in packets (inbound; 0 disables anti-replay).
    pub replay_window: u32,
    /// Outbound: the last sequence number used (the first packet gets this + 1).
    /// Inbound: the highest sequence number already seen.
    pub initial_seq: u64,
    /// Inner addresses on our side (outbound: sources; inbound: destinations).
    pub local_ts: Vec<IpPrefix>,
    /// Inner addresses on the peer's side (outbound: destinations; inbound: sources).
    pub remote_ts: Vec<IpPrefix>,
    /// Byte and packet lifetimes.
    pub lifetime: Lifetime,
    /// Outer DF handling.
    pub df: DfMode,
    /// Outer DSCP: `None` copies the inner DSCP (RFC 4301 §5.1.2.1), `Some` sets it.
    pub dscp: Option<u8>,
    /// ECN handling.
    pub ecn: EcnMode,
    /// Traffic-flow-confidentiality padding: pad inner packets up to this many bytes
    /// (RFC 4303 §2.7; tunnel mode only, 0 = off).
    pub tfc_pad: u16,
    /// Crypto backend.
    pub backend: Backend,
}

impl fmt::Debug for SaParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are never printed.
        f.debug_struct("SaParams")
            .field("name", &self.name)
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("direction", &self.direction)
            .field("protocol", &self.protocol)
            .field("mode", &self.mode)
            .field("cipher", &self.cipher)
            .field("integrity", &self.integrity)
            .field("tunnel", &self.tunnel)
            .field("udp_encap", &self.udp_encap)
            .field("natt_oa", &self.natt_oa)
            .field("esn", &self.esn)
            .finish_non_exhaustive()
    }
}

impl SaParams {
    /// An SA with defaults for everything but the identity and keys: tunnel-less transport
    /// ESP, no ESN, window 64, no lifetimes, any selectors.
    pub fn new(spi: u32, direction: Direction, cipher: Cipher, integrity: Integrity) -> Self {
        Self {
            name: String::new(),
            spi,
            direction,
            protocol: Protocol::Esp,
            mode: Mode::Transport,
            cipher,
            integrity,
            enc_key: Zeroizing::new(Vec::new()),
            auth_key: Zeroizing::new(Vec::new()),
            tunnel: None,
            udp_encap: None,
            natt_oa: None,
            esn: false,
            replay_window: 64,
            initial_seq: 0,
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            lifetime: Lifetime::default(),
            df: DfMode::Copy,
            dscp: None,
            ecn: EcnMode::Normal,
            tfc_pad: 0,
            backend: Backend::Auto,
        }
    }

    /// The inner-packet selectors this SA carries, as seen on packets of its direction:
    /// outbound packets go local → remote, inbound ones remote → local. Empty lists mean any
    /// address of either family.
    pub fn selectors(&self) -> Vec<Selector> {
        let any = [IpPrefix::any_v4(), IpPrefix::any_v6()];
        let local: &[IpPrefix] = if self.local_ts.is_empty() {
            &any
        } else {
            &self.local_ts
        };
        let remote: &[IpPrefix] = if self.remote_ts.is_empty() {
            &any
        } else {
            &self.remote_ts
        };
        let mut out = Vec::new();
        for l in local {
            for r in remote {
                if l.is_ipv4() != r.is_ipv4() {
                    continue;
                }
                let (src, dst) = match self.direction {
                    Direction::Out => (*l, *r),
                    Direction::In => (*r, *l),
                };
                out.push(Selector {
                    src,
                    dst,
                    proto: None,
                    src_ports: PortRange::ANY,
                    dst_ports: PortRange::ANY,
                });
            }
        }
        out
    }
}

/// Why an SA could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaError {
    /// The crypto set-up failed (key length, combination, backend).
    #[error("SA {spi:#010x}: {source}")]
    Crypto {
        /// The SA.
        spi: u32,
        /// What the crypto layer said.
        source: CryptoError,
    },
    /// The replay window size is not 0 or a power of two in 32..=65536.
    #[error("SA {spi:#010x}: replay window {size} is not 0 or a power of two from 32 to 65536")]
    ReplayWindow {
        /// The SA.
        spi: u32,
        /// The size asked for.
        size: u32,
    },
    /// The parameters contradict each other.
    #[error("SA {spi:#010x}: {what}")]
    Invalid {
        /// The SA.
        spi: u32,
        /// What is wrong.
        what: &'static str,
    },
}

/// The crypto of one SA: an ESP transform or an AH MAC.
#[derive(Debug)]
pub enum SaCrypto {
    /// ESP with this transform.
    Esp(Box<dyn EspTransform>),
    /// AH with this MAC.
    Ah(Box<dyn Mac>),
}

impl SaCrypto {
    /// IV, ICV and alignment sizes (AH: no IV, its ICV, 4), which the SAs cache.
    fn sizes(&self) -> (u8, u8, u8) {
        match self {
            SaCrypto::Esp(t) => (t.iv_len() as u8, t.icv_len() as u8, t.block_align() as u8),
            SaCrypto::Ah(m) => (0, m.icv_len() as u8, 4),
        }
    }

    fn new(p: &SaParams) -> Result<Self, SaError> {
        let err = |source| SaError::Crypto { spi: p.spi, source };
        match p.protocol {
            Protocol::Esp => Ok(SaCrypto::Esp(
                crypto::new_esp_transform(
                    p.cipher,
                    p.integrity,
                    &p.enc_key,
                    &p.auth_key,
                    p.backend,
                )
                .map_err(err)?,
            )),
            Protocol::Ah => {
                if p.cipher != Cipher::Null || p.integrity == Integrity::None {
                    return Err(SaError::Invalid {
                        spi: p.spi,
                        what: "AH takes an integrity algorithm and no cipher",
                    });
                }
                Ok(SaCrypto::Ah(
                    crypto::new_mac(p.integrity, &p.auth_key).map_err(err)?,
                ))
            }
        }
    }
}

/// Something the control plane must hear about an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaEvent {
    /// A soft lifetime was reached: time to rekey.
    SoftExpired,
    /// A hard lifetime was reached: the SA no longer carries traffic.
    HardExpired,
    /// The outbound sequence number space is used up (RFC 4303 §3.3.3).
    SeqExhausted,
}

/// Raised whenever an SA notes a lifetime crossing or runs out of sequence numbers: whoever
/// reports SA events ([`SaCounters::poll_event`]) looks at once, instead of at its next periodic
/// scan. A byte lifetime's soft limit at line rate leaves little time before the hard one.
static EVENT_RAISED: AtomicBool = AtomicBool::new(false);

/// True (once) when an SA raised an event since the last call. A load, and a swap only when set.
pub fn take_event_hint() -> bool {
    EVENT_RAISED.load(Ordering::Relaxed) && EVENT_RAISED.swap(false, Ordering::AcqRel)
}

/// Per-SA traffic counters and the lifetime state derived from them.
#[derive(Debug, Default)]
pub struct SaCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    soft_pending: AtomicBool,
    hard_pending: AtomicBool,
    exhausted_pending: AtomicBool,
    /// The sequence space ran out and said so: refusals after the first raise nothing (each
    /// would otherwise reach the control plane, which sends a rekey again on a hard event).
    exhausted_raised: AtomicBool,
}

impl SaCounters {
    /// Packets counted so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Refuses a packet once a hard lifetime is used up (checked before the packet is processed).
    #[inline]
    fn check_hard(&self, lt: &Lifetime) -> Result<(), crate::drop::DropReason> {
        if (lt.hard_packets != 0 && self.packets.load(Ordering::Relaxed) >= lt.hard_packets)
            || (lt.hard_bytes != 0 && self.bytes.load(Ordering::Relaxed) >= lt.hard_bytes)
        {
            Err(crate::drop::DropReason::SaExpired)
        } else {
            Ok(())
        }
    }

    /// Counts one packet of `bytes` and notes lifetime crossings. Exactly one packet observes
    /// each crossing, so each event is raised once.
    #[inline]
    fn account(&self, lt: &Lifetime, bytes: u64) {
        let p = self.packets.fetch_add(1, Ordering::Relaxed);
        let b = self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.note_crossings(lt, p, p + 1, b, b + bytes);
    }

    /// Counts a run of packets of one SA (their lengths in order, as many as a burst holds)
    /// with one atomic add per counter, as if each packet in turn had been checked against
    /// the hard limits ([`Self::check_hard`]) and counted. Returns how many of the first packets
    /// fit: a packet is refused when the packets or bytes counted before it, by this run and
    /// every run reserved before it on any core, reach a hard limit. Refused packets (always
    /// the last ones) are taken back out of the counters, so the counters hold exactly the
    /// packets let through and never pass a hard packet limit, even with several cores
    /// counting at once. Soft and hard crossings are noted as [`Self::account`] notes them,
    /// once per crossing.
    #[inline]
    pub(crate) fn reserve(&self, lt: &Lifetime, lens: &[u32]) -> usize {
        let n = lens.len();
        if n == 0 {
            return 0;
        }
        let total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
        let p0 = self.packets.fetch_add(n as u64, Ordering::Relaxed);
        let b0 = self.bytes.fetch_add(total, Ordering::Relaxed);
        let (mut fit, mut fit_bytes) = (n, total);
        if lt.hard_packets != 0 || lt.hard_bytes != 0 {
            // The last packet of the run sees the most before it: if it fits, all do.
            let last = u64::from(lens[n - 1]);
            let under = |p: u64, b: u64| {
                (lt.hard_packets == 0 || p < lt.hard_packets)
                    && (lt.hard_bytes == 0 || b < lt.hard_bytes)
            };
            if !under(p0 + n as u64 - 1, b0 + total - last) {
                let mut b = b0;
                fit = lens
                    .iter()
                    .enumerate()
                    .position(|(i, &l)| {
                        let stop = !under(p0 + i as u64, b);
                        b += u64::from(l);
                        stop
                    })
                    .unwrap_or(n);
                fit_bytes = lens[..fit].iter().map(|&l| u64::from(l)).sum();
                self.packets.fetch_sub((n - fit) as u64, Ordering::Relaxed);
                self.bytes.fetch_sub(total - fit_bytes, Ordering::Relaxed);
            }
        }
        self.note_crossings(lt, p0, p0 + fit as u64, b0, b0 + fit_bytes);
        fit
    }

    /// Raises the lifetime events whose limits lie in `(p0, p1]` packets or `(b0, b1]` bytes.
    #[inline]
    fn note_crossings(&self, lt: &Lifetime, p0: u64, p1: u64, b0: u64, b1: u64) {
        let crossed =
            |limit: u64, before: u64, after: u64| limit != 0 && before < limit && after >= limit;
        if crossed(lt.soft_packets, p0, p1) || crossed(lt.soft_bytes, b0, b1) {
            self.soft_pending.store(true, Ordering::Release);
            EVENT_RAISED.store(true, Ordering::Release);
        }
        if crossed(lt.hard_packets, p0, p1) || crossed(lt.hard_bytes, b0, b1) {
            self.hard_pending.store(true, Ordering::Release);
            EVENT_RAISED.store(true, Ordering::Release);
        }
    }

    /// Takes the next pending event, if any (called off the hot path by whoever reports events).
    pub fn poll_event(&self) -> Option<SaEvent> {
        if self.hard_pending.swap(false, Ordering::AcqRel) {
            Some(SaEvent::HardExpired)
        } else if self.soft_pending.swap(false, Ordering::AcqRel) {
            Some(SaEvent::SoftExpired)
        } else if self.exhausted_pending.swap(false, Ordering::AcqRel) {
            Some(SaEvent::SeqExhausted)
        } else {
            None
        }
    }
}

/// Which families of inner packets `selectors` let through: (IPv4, IPv6); both for none.
fn families_of(selectors: &[Selector]) -> (bool, bool) {
    let v4 = selectors.iter().any(|s| s.src.is_ipv4());
    let v6 = selectors.iter().any(|s| !s.src.is_ipv4());
    if v4 || v6 {
        (v4, v6)
    } else {
        (true, true)
    }
}

/// The sequence number (without ESN) whose use raises [`SaEvent::SoftExpired`]: three
/// quarters of the 32-bit space.
pub const SEQ_SOFT: u64 = 3 << 30;

/// Longest prebuilt outer header: IPv6 (40) + UDP (8).
pub const MAX_OUTER_HEADER: usize = 48;

/// The outbound runtime SA. Shared by reference between worker cores.
#[derive(Debug)]
#[repr(align(64))]
pub struct OutboundSa {
    /// Security parameter index.
    pub spi: u32,
    pub(crate) mode: Mode,
    pub(crate) esn: bool,
    pub(crate) df: DfMode,
    pub(crate) dscp: Option<u8>,
    pub(crate) ecn: EcnMode,
    pub(crate) tfc_pad: u16,
    /// Prebuilt tunnel header (outer IP, then UDP when encapsulated); lengths and checksums
    /// are filled per packet.
    pub(crate) header: [u8; MAX_OUTER_HEADER],
    pub(crate) header_len: u8,
    pub(crate) outer_v6: bool,
    /// IPv4 tunnel header: the ones'-complement sum of its fixed words (version, TTL,
    /// protocol, addresses), to which each packet adds its TOS, length, identification and DF
    /// for the header checksum.
    pub(crate) header_sum: u32,
    /// The transform's IV, ICV and alignment sizes, cached at install time (ESP only).
    pub(crate) iv_len: u8,
    pub(crate) icv_len: u8,
    pub(crate) align: u8,
    /// The MTU of the port its packets leave by, when the gateway knows it (0: unknown, the
    /// caller's default applies). Set off the hot path ([`OutboundSa::set_egress_mtu`]).
    pub(crate) egress_mtu: AtomicU16,
    pub(crate) udp: Option<UdpEncap>,
    pub(crate) crypto: SaCrypto,
    pub(crate) lifetime: Lifetime,
    pub(crate) selectors: Vec<Selector>,
    /// Which families of inner packets the selectors let through: (IPv4, IPv6).
    families: (bool, bool),
    /// The sequence counter and traffic counters, shared with the copies of this SA that
    /// [`OutboundSa::moved`] makes.
    pub(crate) state: Arc<OutboundState>,
}

/// What stays with an outbound SA when it moves to a new peer address or port: the copies a
/// move makes share it, so cores still holding the old copy and cores on the new one draw
/// from one sequence counter (never the same number twice under one key, RFC 4303 §3.3.3 and
/// RFC 4106 §3.1) and count towards one lifetime.
#[derive(Debug, Default)]
pub(crate) struct OutboundState {
    /// Last sequence number handed out (RFC 4303 §3.3.3): its own cache line.
    pub(crate) seq: CachePadded<AtomicU64>,
    /// Traffic counters: their own cache line.
    pub(crate) counters: CachePadded<SaCounters>,
    /// The pipeline that encapsulates this SA's packets, plus one (0: none has claimed it
    /// yet); see [`OutboundSa::owner`]. Written once, then only read: its own cache line, so
    /// that the pipelines reading it for every packet do not share the counters' lines.
    pub(crate) owner: CachePadded<AtomicU32>,
}

const _: () = assert!(std::mem::align_of::<OutboundSa>() >= 64);
const _: () = assert!(std::mem::align_of::<CachePadded<AtomicU64>>() >= 64);

/// The ESP transform for [`OutboundSa::with_esp_transform`] and
/// [`InboundSa::with_esp_transform`], after checking the SA is ESP.
fn esp_crypto(p: &SaParams, t: Box<dyn EspTransform>) -> Result<SaCrypto, SaError> {
    if p.protocol != Protocol::Esp {
        return Err(SaError::Invalid {
            spi: p.spi,
            what: "an ESP transform needs an ESP SA",
        });
    }
    Ok(SaCrypto::Esp(t))
}

impl OutboundSa {
    /// Builds the runtime SA from its control record.
    pub fn new(p: &SaParams) -> Result<Self, SaError> {
        Self::build(p, SaCrypto::new(p)?)
    }

    /// Builds the runtime SA around an ESP transform made in code; `p.cipher`, `p.integrity`,
    /// the keys and the backend are not looked at. For transforms no configuration can ask
    /// for: the RFC test vectors' CBC without integrity, or a fixed IV. Configuration, the
    /// control channel and IKE install through [`OutboundSa::new`].
    pub fn with_esp_transform(p: &SaParams, t: Box<dyn EspTransform>) -> Result<Self, SaError> {
        Self::build(p, esp_crypto(p, t)?)
    }

    fn build(p: &SaParams, crypto: SaCrypto) -> Result<Self, SaError> {
        check_common(p)?;
        let mut header = [0u8; MAX_OUTER_HEADER];
        let mut header_len = 0usize;
        let mut outer_v6 = false;
        let l4 = match (p.protocol, p.udp_encap) {
            (Protocol::Ah, _) => ip_proto::AH,
            (Protocol::Esp, Some(_)) => ip_proto::UDP,
            (Protocol::Esp, None) => ip_proto::ESP,
        };
        if p.mode == Mode::Tunnel {
            let ep = p.tunnel.ok_or(SaError::Invalid {
                spi: p.spi,
                what: "tunnel mode needs local and remote outer addresses",
            })?;
            match (ep.local, ep.remote) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    header[0] = 0x45;
                    header[8] = 64; // TTL
                    header[9] = l4;
                    header[12..16].copy_from_slice(&s.octets());
                    header[16..20].copy_from_slice(&d.octets());
                    header_len = 20;
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    header[0] = 0x60;
                    header[6] = l4;
                    header[7] = 64; // hop limit
                    header[8..24].copy_from_slice(&s.octets());
                    header[24..40].copy_from_slice(&d.octets());
                    header_len = 40;
                    outer_v6 = true;
                }
                _ => {
                    return Err(SaError::Invalid {
                        spi: p.spi,
                        what: "tunnel local and remote addresses must be the same IP version",
                    })
                }
            }
        }
        let (iv_len, icv_len, align) = crypto.sizes();
        if !align.is_power_of_two() {
            return Err(SaError::Invalid {
                spi: p.spi,
                what: "transform alignment is not a power of two",
            });
        }
        let header_sum = if header_len == 20 {
            header[..20]
                .chunks_exact(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum()
        } else {
            0
        };
        let selectors = p.selectors();
        Ok(Self {
            iv_len,
            icv_len,
            align,
            header_sum,
            egress_mtu: AtomicU16::new(0),
            spi: p.spi,
            mode: p.mode,
            esn: p.esn,
            df: p.df,
            dscp: p.dscp,
            ecn: p.ecn,
            tfc_pad: p.tfc_pad,
            header,
            header_len: header_len as u8,
            outer_v6,
            udp: p.udp_encap,
            crypto,
            lifetime: p.lifetime,
            families: families_of(&selectors),
            selectors,
            state: Arc::new(OutboundState {
                seq: CachePadded::new(AtomicU64::new(p.initial_seq)),
                counters: CachePadded::new(SaCounters::default()),
                owner: CachePadded::new(AtomicU32::new(0)),
            }),
        })
    }

    /// This SA sent somewhere else: the peer's address or its NAT mapping changed (RFC 7296
    /// §2.23, RFC 3948), and `p` holds the new tunnel end points or UDP ports. The copy
    /// shares this SA's sequence counter and traffic counters, so a core that still holds
    /// this copy and one already on the new copy never hand out the same sequence number, and
    /// the lifetimes keep counting; `p.initial_seq` is not looked at. `p` must be this SA's:
    /// same SPI, mode and ESN.
    pub fn moved(&self, p: &SaParams) -> Result<Self, SaError> {
        if p.spi != self.spi || p.mode != self.mode || p.esn != self.esn {
            return Err(SaError::Invalid {
                spi: p.spi,
                what: "a moved SA keeps its SPI, mode and ESN",
            });
        }
        let mut sa = Self::new(p)?;
        sa.state = Arc::clone(&self.state);
        Ok(sa)
    }

    /// The pipeline that encapsulates this SA's packets: the first to ask claims it for good
    /// (`me`), and every later caller gets the same answer. A gateway with several pipelines
    /// hands an SA's packets to its owner, so that one pipeline takes all its sequence numbers
    /// and sends them from one transmit queue in that order; the peer's replay window then
    /// sees them in order, as RFC 4303 §3.3.3 counts them. The copies [`OutboundSa::moved`]
    /// makes share the owner with the sequence counter. Pipeline numbers are below
    /// `u16::MAX`.
    #[inline]
    pub fn owner(&self, me: u16) -> u16 {
        let o = &self.state.owner;
        let claimed = match o.load(Ordering::Relaxed) {
            0 => {
                match o.compare_exchange(0, u32::from(me) + 1, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => return me,
                    Err(other) => other,
                }
            }
            other => other,
        };
        (claimed - 1) as u16
    }

    /// The pipeline that claimed this SA ([`OutboundSa::owner`]), if one has.
    pub fn owner_now(&self) -> Option<u16> {
        match self.state.owner.load(Ordering::Relaxed) {
            0 => None,
            o => Some((o - 1) as u16),
        }
    }

    /// Records the MTU of the port this SA's packets leave by (a gateway with several outside
    /// ports of different MTUs sets it per SA from its routes); 0 forgets it.
    pub fn set_egress_mtu(&self, mtu: u16) {
        self.egress_mtu.store(mtu, Ordering::Relaxed);
    }

    /// The egress MTU set by [`OutboundSa::set_egress_mtu`], if any.
    #[inline]
    pub fn egress_mtu(&self) -> Option<u16> {
        match self.egress_mtu.load(Ordering::Relaxed) {
            0 => None,
            m => Some(m),
        }
    }

    /// The SA's crypto.
    pub fn crypto(&self) -> &SaCrypto {
        &self.crypto
    }
    /// Traffic counters and pending lifetime events.
    pub fn counters(&self) -> &SaCounters {
        &self.state.counters
    }
    /// The last sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        self.state.seq.load(Ordering::Relaxed)
    }
    /// The selectors of the traffic this SA carries.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    /// The largest inner IP packet that still fits in `mtu` bytes once this SA encapsulated it
    /// (RFC 4301 §8.2.1: the PMTU the gateway reports for the tunnel, RFC 1191's next-hop MTU).
    /// Tunnel-mode ESP adds the outer IP header, the optional UDP header (RFC 3948), the ESP
    /// header, the IV, padding of payload + 2 trailer bytes to the block alignment, and the
    /// ICV. Transport mode keeps the packet's header (taken as the 20 / 40 fixed bytes) in
    /// front of the ESP header. TFC padding is not counted: it only pads packets shorter than
    /// it. Returns 0 when nothing fits.
    pub fn max_inner_len(&self, mtu: u16) -> u16 {
        // Transport mode keeps the packet's own header, whose size depends on its family:
        // for an SA that may carry both, the smaller answer (it fits either).
        // (Asked per packet: the families were found when the SA was made.)
        let fits = match self.mode {
            Mode::Tunnel => self.max_inner_len_for(mtu, false),
            Mode::Transport => match self.families {
                (true, false) => self.max_inner_len_for(mtu, false),
                (false, true) => self.max_inner_len_for(mtu, true),
                _ => self
                    .max_inner_len_for(mtu, false)
                    .min(self.max_inner_len_for(mtu, true)),
            },
        };
        u16::try_from(fits).unwrap_or(u16::MAX)
    }

    /// Whether a tunnel's outer IPv4 header says don't-fragment, for an inner packet that
    /// does or not (`inner_df`; IPv6 packets count as DF): RFC 4301 §8.1.
    #[inline]
    pub(crate) fn outer_df(&self, inner_df: bool) -> bool {
        match self.df {
            DfMode::Copy => inner_df,
            DfMode::Set => true,
            DfMode::Clear => false,
        }
    }

    /// [`OutboundSa::max_inner_len`] for inner packets of one family (`v6`; tunnel mode does
    /// not depend on it).
    fn max_inner_len_for(&self, mtu: u16, v6: bool) -> usize {
        let mtu = usize::from(mtu);
        let udp = if self.udp.is_some() { 8 } else { 0 };
        let (front, kept, outer_v6) = match self.mode {
            Mode::Tunnel => (usize::from(self.header_len), 0, self.outer_v6),
            Mode::Transport => (0, if v6 { 40 } else { 20 }, v6),
        };
        match &self.crypto {
            SaCrypto::Ah(m) => {
                let ah = crate::ah::ah_len(m.icv_len(), outer_v6);
                mtu.saturating_sub(front + ah)
            }
            SaCrypto::Esp(_) => {
                let align = usize::from(self.align);
                let fixed = front + udp + 8 + usize::from(self.iv_len) + usize::from(self.icv_len);
                // Transport mode: only the payload after the kept header is padded.
                let room = mtu.saturating_sub(fixed + kept);
                let padded = room & !(align - 1);
                if padded < 2 {
                    0
                } else {
                    padded - 2 + kept
                }
            }
        }
    }

    /// Refuses the packet if a hard lifetime is used up.
    #[inline]
    pub(crate) fn check_hard(&self) -> Result<(), crate::drop::DropReason> {
        self.state.counters.check_hard(&self.lifetime)
    }

    /// Hands out the next sequence number, or refuses when the space is used up:
    /// without ESN the counter must not cycle past 2^32 - 1 (RFC 4303 §3.3.3).
    #[inline]
    pub(crate) fn next_seq(&self) -> Result<u64, crate::drop::DropReason> {
        match self.reserve_seqs(1) {
            (first, 1) => Ok(first),
            _ => Err(crate::drop::DropReason::SeqExhausted),
        }
    }

    /// Hands out up to `n` consecutive sequence numbers with one atomic compare-and-swap:
    /// returns the first and how many were granted, fewer than `n` (and then the
    /// [`SaEvent::SeqExhausted`] event) only when the space runs out (RFC 4303 §3.3.3: no
    /// cycling past 2^32 - 1 without ESN, 2^64 - 1 with it). The counter stops at the last
    /// number, so it never wraps back into use; each number goes to one packet, whichever core
    /// asks.
    #[inline]
    pub(crate) fn reserve_seqs(&self, n: u64) -> (u64, u64) {
        let limit = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let got = self
            .state
            .seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                (s < limit).then(|| s + n.min(limit - s))
            });
        let (first, granted) = match got {
            Ok(s) => (s + 1, n.min(limit - s)),
            Err(_) => (0, 0),
        };
        let c = &self.state.counters;
        if granted < n
            && !c.exhausted_raised.load(Ordering::Relaxed)
            && !c.exhausted_raised.swap(true, Ordering::AcqRel)
        {
            c.exhausted_pending.store(true, Ordering::Release);
            EVENT_RAISED.store(true, Ordering::Release);
        }
        // Without ESN a fast SA can use up 2^32 numbers within minutes: a soft event (the
        // control plane rekeys) once three quarters are used, so that the new SA is in place
        // before the old one must stop (RFC 4303 §3.3.3).
        if !self.esn && first != 0 && first <= SEQ_SOFT && SEQ_SOFT < first + granted {
            c.soft_pending.store(true, Ordering::Release);
            EVENT_RAISED.store(true, Ordering::Release);
        }
        (first, granted)
    }

    /// Counts a run of packets; see [`SaCounters::reserve`].
    #[inline]
    pub(crate) fn reserve_counts(&self, lens: &[u32]) -> usize {
        self.state.counters.reserve(&self.lifetime, lens)
    }

    #[inline]
    pub(crate) fn account(&self, bytes: usize) {
        self.state.counters.account(&self.lifetime, bytes as u64);
    }
}

/// The inbound runtime SA. Shared by reference between worker cores.
#[derive(Debug)]
#[repr(align(64))]
pub struct InboundSa {
    /// Security parameter index.
    pub spi: u32,
    pub(crate) mode: Mode,
    pub(crate) esn: bool,
    pub(crate) udp: Option<UdpEncap>,
    /// Transport mode in UDP: how the inner TCP/UDP checksum is repaired (RFC 3948 §3.1.2).
    pub(crate) natt_checksum: NattChecksum,
    pub(crate) crypto: SaCrypto,
    /// The transform's IV, ICV and alignment sizes, cached at install time (ESP only), so
    /// that decapsulation does not ask the transform per packet.
    pub(crate) iv_len: u8,
    pub(crate) icv_len: u8,
    pub(crate) align: u8,
    pub(crate) lifetime: Lifetime,
    pub(crate) selectors: Vec<Selector>,
    /// Every selector is addresses only (any protocol, any ports), as IKE's traffic
    /// selectors usually are: the RFC 4301 §5.2 check of an IPv4 packet then reads only its
    /// addresses, not its ports.
    pub(crate) selectors_addr_only: bool,
    /// The ESP transform wants its arrivals prepared a burst ahead
    /// ([`crate::crypto::EspTransform::opens_prepared`]), asked once here.
    pub(crate) open_ahead: bool,
    /// The anti-replay window and traffic counters, shared with the copy that
    /// [`InboundSa::replacing`] makes.
    pub(crate) state: Arc<InboundState>,
}

/// What stays with an inbound SA when it is rebuilt (its larval inbound half replaced by the
/// full pair): the anti-replay window, so that a packet accepted before is still refused as
/// a replay after, and the counters.
#[derive(Debug)]
pub(crate) struct InboundState {
    /// Anti-replay window (RFC 6479), lock-free so cores can share the SA.
    pub(crate) window: AtomicWindow,
    /// Traffic counters: their own cache line.
    pub(crate) counters: CachePadded<SaCounters>,
}

const _: () = assert!(std::mem::align_of::<InboundSa>() >= 64);

/// What transport-mode decapsulation of UDP-encapsulated ESP does to the inner TCP/UDP
/// checksum, which the peer computed over the addresses it knew, before any NAT rewrote them
/// (RFC 3948 §3.1.2). Decided when the SA is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NattChecksum {
    /// Tunnel mode, or no UDP encapsulation: the checksum is the peer's business.
    Keep,
    /// The original addresses are unknown: recompute the checksum over the packet as
    /// delivered (RFC 3948 §3.1.2 allows it for transport mode).
    Recompute,
    /// NAT-OA known: incremental update (RFC 1624) from the original addresses to those on
    /// the wire.
    Incremental(NatOa),
}

impl InboundSa {
    /// Builds the runtime SA from its control record.
    /// Whether inbound bursts open this SA's arrivals with what its transform prepared a
    /// burst ahead ([`crate::crypto::EspTransform::opens_prepared`]).
    pub fn opens_ahead(&self) -> bool {
        self.open_ahead
    }

    pub fn new(p: &SaParams) -> Result<Self, SaError> {
        Self::build(p, SaCrypto::new(p)?)
    }

    /// Builds the runtime SA around an ESP transform made in code; see
    /// [`OutboundSa::with_esp_transform`].
    pub fn with_esp_transform(p: &SaParams, t: Box<dyn EspTransform>) -> Result<Self, SaError> {
        Self::build(p, esp_crypto(p, t)?)
    }

    fn build(p: &SaParams, crypto: SaCrypto) -> Result<Self, SaError> {
        check_common(p)?;
        let window =
            AtomicWindow::with_top(p.replay_window, p.esn, p.initial_seq).map_err(|e| match e {
                ReplayError::BadWindowSize => SaError::ReplayWindow {
                    spi: p.spi,
                    size: p.replay_window,
                },
                _ => SaError::Invalid {
                    spi: p.spi,
                    what: "bad initial sequence number",
                },
            })?;
        let (iv_len, icv_len, align) = crypto.sizes();
        let selectors = p.selectors();
        let natt_checksum = match (p.mode, p.udp_encap, p.natt_oa) {
            (Mode::Transport, Some(_), Some(oa)) => NattChecksum::Incremental(oa),
            (Mode::Transport, Some(_), None) => NattChecksum::Recompute,
            _ => NattChecksum::Keep,
        };
        Ok(Self {
            spi: p.spi,
            mode: p.mode,
            esn: p.esn,
            udp: p.udp_encap,
            natt_checksum,
            iv_len,
            icv_len,
            align,
            open_ahead: matches!(&crypto, SaCrypto::Esp(t) if t.opens_prepared()),
            crypto,
            lifetime: p.lifetime,
            selectors_addr_only: selectors
                .iter()
                .all(|x| x.proto.is_none() && x.src_ports.is_any() && x.dst_ports.is_any()),
            selectors,
            state: Arc::new(InboundState {
                window,
                counters: CachePadded::new(SaCounters::default()),
            }),
        })
    }

    /// This SA rebuilt from `p` (the full pair's parameters replacing a larval inbound
    /// half), keeping this copy's anti-replay window and counters: the packets the larval
    /// half accepted stay seen. `p` must be this SA's: same SPI, ESN and window size.
    pub fn replacing(&self, p: &SaParams) -> Result<Self, SaError> {
        if p.spi != self.spi || p.esn != self.esn || p.replay_window != self.state.window.size() {
            return Err(SaError::Invalid {
                spi: p.spi,
                what: "a replacement keeps its SPI, ESN and replay window",
            });
        }
        let mut sa = Self::new(p)?;
        sa.state = Arc::clone(&self.state);
        Ok(sa)
    }

    /// The SA's crypto.
    pub fn crypto(&self) -> &SaCrypto {
        &self.crypto
    }
    /// Traffic counters and pending lifetime events.
    pub fn counters(&self) -> &SaCounters {
        &self.state.counters
    }
    /// The anti-replay window.
    pub fn window(&self) -> &AtomicWindow {
        &self.state.window
    }
    /// The selectors inner packets must match (RFC 4301 §5.2).
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }
    /// Whether the SA expects UDP-encapsulated ESP.
    pub fn udp_encap(&self) -> Option<UdpEncap> {
        self.udp
    }

    /// Refuses the packet if a hard lifetime is used up.
    #[inline]
    pub(crate) fn check_hard(&self) -> Result<(), crate::drop::DropReason> {
        self.state.counters.check_hard(&self.lifetime)
    }

    /// Counts a run of packets; see [`SaCounters::reserve`].
    #[inline]
    pub(crate) fn reserve_counts(&self, lens: &[u32]) -> usize {
        self.state.counters.reserve(&self.lifetime, lens)
    }
}

fn check_common(p: &SaParams) -> Result<(), SaError> {
    if p.protocol == Protocol::Ah && p.udp_encap.is_some() {
        return Err(SaError::Invalid {
            spi: p.spi,
            what: "AH cannot be UDP-encapsulated (RFC 3948 covers ESP only)",
        });
    }
    if p.tfc_pad != 0 && p.mode != Mode::Tunnel {
        return Err(SaError::Invalid {
            spi: p.spi,
            what: "TFC padding needs tunnel mode (the inner IP header gives the length back)",
        });
    }
    if p.natt_oa.is_some()
        && (p.direction != Direction::In || p.mode != Mode::Transport || p.udp_encap.is_none())
    {
        return Err(SaError::Invalid {
            spi: p.spi,
            what: "natt_oa belongs to inbound transport-mode SAs with udp_encap (RFC 3948 §3.1.2)",
        });
    }
    if let Some(d) = p.dscp {
        if d > 63 {
            return Err(SaError::Invalid {
                spi: p.spi,
                what: "DSCP must be 0..=63",
            });
        }
    }
    Ok(())
}
