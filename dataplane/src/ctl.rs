//! The protocol on the shared-memory channel between `ferrogate-ike` (control plane) and
//! `ferrogate` (data plane). The channel itself (one 0600 file of SPSC rings, slots wiped after
//! use) is `shmring`; this module says what travels in it. Both processes use it; it has no
//! DPDK and no unsafe code.
//!
//! ```text
//!   ring 0  commands  ike -> dp   JSON {"v":1,"op":"add"|"remove"|"activate"|"deactivate"|"dump", ...}
//!   ring 1  events    dp -> ike   JSON {"v":1,"ev":"hello"|"sas"|"counters", ...}
//!   ring 2  punt      dp -> ike   IKE datagrams from the wire      (binary, see Datagram)
//!   ring 3  inject    ike -> dp   IKE datagrams for the wire       (binary)
//! ```
//!
//! The data plane creates the file (a new generation each start); the control plane opens it,
//! and reinstalls its CHILD_SAs when it sees a new generation. Messages carry a version; a
//! message of another version is refused and counted, never half-understood.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use zeroize::Zeroizing;

use crate::crypto::{Backend, Cipher, Integrity};
use crate::net::IpPrefix;
use crate::sa::{
    DfMode, Direction, EcnMode, Endpoints, Lifetime, Mode, Protocol, SaParams, UdpEncap,
};

/// Protocol version of every message.
pub const VERSION: u32 = 1;
/// Ring numbers.
pub mod ring {
    /// Commands, control plane to data plane.
    pub const COMMANDS: u32 = 0;
    /// Events, data plane to control plane.
    pub const EVENTS: u32 = 1;
    /// IKE datagrams received by the data plane.
    pub const PUNT: u32 = 2;
    /// IKE datagrams for the data plane to send.
    pub const INJECT: u32 = 3;
    /// How many rings the channel has.
    pub const COUNT: u32 = 4;
}
/// Slot size: an IKE message up to 8 KiB (bigger ones are fragmented per RFC 7383).
pub const SLOT_SIZE: u32 = 8192 + 64;
/// Slots per ring.
pub const SLOTS: u32 = 256;

/// One CHILD_SA, both directions, as the control plane installs it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildSa {
    /// Tunnel name.
    pub tunnel: String,
    /// Child name.
    pub child: String,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Cipher.
    pub cipher: Cipher,
    /// Integrity.
    pub integrity: Integrity,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Inbound encryption key (hex).
    pub enc_in: Zeroizing<String>,
    /// Inbound integrity key (hex, may be empty).
    pub auth_in: Zeroizing<String>,
    /// Outbound encryption key (hex).
    pub enc_out: Zeroizing<String>,
    /// Outbound integrity key (hex, may be empty).
    pub auth_out: Zeroizing<String>,
    /// Our outer address.
    pub local: IpAddr,
    /// The peer's outer address.
    pub remote: IpAddr,
    /// UDP encapsulation ports, if a NAT was detected.
    pub udp_encap: Option<UdpEncap>,
    /// Tunnel or transport.
    pub mode: Mode,
    /// Our protected prefixes.
    pub local_ts: Vec<IpPrefix>,
    /// The peer's protected prefixes.
    pub remote_ts: Vec<IpPrefix>,
    /// Start using the outbound SA now (false: keep the old one until `activate`).
    pub outbound_now: bool,
    /// Anti-replay window.
    pub replay_window: u32,
    /// Byte/packet lifetimes of each direction (soft: an `expired` event; hard: traffic stops).
    #[serde(default)]
    pub lifetime: Lifetime,
    /// Inbound half only, installed before the exchange that creates the SA completes (the
    /// peer may send on it before our side has processed the response); the full pair
    /// follows with the same inbound SPI and replaces it.
    #[serde(default)]
    pub larval: bool,
    /// The last outbound sequence number already used under this SA's key: numbering goes on
    /// after it. A data plane that restarted lost its counters, and every number is a nonce
    /// under the key (RFC 4106 §3.1), so the control plane reinstalls with what the last
    /// report said plus what could have been sent since ([`ChildSa::continue_after`]).
    /// Left out when 0, so that a data plane older than these fields (which refuses unknown
    /// fields) still takes every ordinary install.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub out_seq_from: u64,
    /// The highest inbound sequence number the old data plane reported accepting: a
    /// reinstalled SA's anti-replay window starts as having seen everything up to it, so
    /// that packets from before a data plane restart are not accepted a second time (and,
    /// with ESN, the high half is inferred from the right epoch).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_seq_from: u64,
    /// A per-resource SA (RFC 9611) of this worker (its number among the workers, from 0):
    /// its outbound half carries that worker's traffic of the child only, and the child's
    /// other pairs (the fallback) carry the rest. None: an ordinary pair. Left out when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u16>,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl std::fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSa")
            .field("tunnel", &self.tunnel)
            .field("child", &self.child)
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .finish_non_exhaustive()
    }
}

/// Lower-case hex of a key.
pub fn hex(k: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(k.len() * 2));
    for b in k {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

fn unhex(s: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex key".into());
    }
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for i in (0..s.len()).step_by(2) {
        let b =
            u8::from_str_radix(s.get(i..i + 2).ok_or("bad hex")?, 16).map_err(|_| "bad hex key")?;
        out.push(b);
    }
    Ok(out)
}

/// Sequence numbers one SA could have handed out per second, for [`ChildSa::continue_after`]:
/// 2^28 (268 million) a second, above the 148.8 million minimum-size frames a second of a
/// 100 Gbit/s port.
pub const SEQ_RATE_BOUND: u64 = 1 << 28;

impl ChildSa {
    /// Where a reinstalled SA's outbound numbering may go on (for [`ChildSa::out_seq_from`]),
    /// given the last sequence number a report of the old data plane gave (`reported`), the
    /// number this SA was last reinstalled from (`out_seq_from`, when a data plane died again
    /// before it reported), and the whole seconds since that report was read, rounded up
    /// (`secs`): the larger of the two plus [`SEQ_RATE_BOUND`] for every second since, and
    /// one more. None when that leaves no room: without ESN the 32-bit space must keep 2^24
    /// numbers; with ESN the start must stay under 2^31 past the reported number (the peer
    /// received at least up to about there, and infers the high half from its window, RFC
    /// 4303 Appendix A), however many restarts came in between. Then the SA can only be
    /// reinstalled without its outbound half.
    pub fn continue_after(&self, reported: u64, secs: u64) -> Option<u64> {
        let jump = SEQ_RATE_BOUND.checked_mul(secs.checked_add(1)?)?;
        let from = reported.max(self.out_seq_from).checked_add(jump)?;
        let fits = if self.esn {
            from - reported < 1 << 31
        } else {
            from < (1 << 32) - (1 << 24)
        };
        fits.then_some(from)
    }

    /// A complete AES-GCM-128 tunnel-mode pair (203.0.113.1 <-> 203.0.113.2, NAT-T ports,
    /// 192.168.10.0/24 <-> 192.168.20.0/24), for tests of the channel's users.
    #[doc(hidden)]
    pub fn example() -> ChildSa {
        ChildSa {
            tunnel: "t".into(),
            child: "c".into(),
            spi_in: 0x1000,
            spi_out: 0x2000,
            cipher: Cipher::AesGcm128,
            integrity: Integrity::None,
            esn: false,
            enc_in: hex(&[1; 20]),
            auth_in: hex(&[]),
            enc_out: hex(&[2; 20]),
            auth_out: hex(&[]),
            local: "203.0.113.1".parse().unwrap(),
            remote: "203.0.113.2".parse().unwrap(),
            udp_encap: Some(UdpEncap {
                local_port: 4500,
                remote_port: 4500,
            }),
            mode: Mode::Tunnel,
            local_ts: vec!["192.168.10.0/24".parse().unwrap()],
            remote_ts: vec!["192.168.20.0/24".parse().unwrap()],
            outbound_now: true,
            replay_window: 1024,
            lifetime: Lifetime::default(),
            larval: false,
            out_seq_from: 0,
            in_seq_from: 0,
            worker: None,
        }
    }

    /// The outbound (none for a larval SA) and inbound SA parameters.
    pub fn params(&self) -> Result<(Option<SaParams>, SaParams), String> {
        let mk = |dir: Direction, spi: u32, enc: &str, auth: &str| -> Result<SaParams, String> {
            let enc_key = unhex(enc)?;
            let auth_key = unhex(auth)?;
            if enc_key.len() != self.cipher.key_len() || auth_key.len() != self.integrity.key_len()
            {
                return Err(format!(
                    "SPI {spi:08x}: key lengths do not fit {:?}/{:?}",
                    self.cipher, self.integrity
                ));
            }
            Ok(SaParams {
                name: format!(
                    "{}/{}-{}",
                    self.tunnel,
                    self.child,
                    if dir == Direction::Out { "out" } else { "in" }
                ),
                spi,
                direction: dir,
                protocol: Protocol::Esp,
                mode: self.mode,
                cipher: self.cipher,
                integrity: self.integrity,
                enc_key,
                auth_key,
                tunnel: (self.mode == Mode::Tunnel).then_some(Endpoints {
                    local: self.local,
                    remote: self.remote,
                }),
                udp_encap: self.udp_encap,
                // No NAT-OA from IKE yet: transport-mode NAT-T recomputes inner checksums.
                natt_oa: None,
                esn: self.esn,
                replay_window: if dir == Direction::In {
                    self.replay_window
                } else {
                    0
                },
                initial_seq: if dir == Direction::Out {
                    self.out_seq_from
                } else {
                    self.in_seq_from
                },
                local_ts: self.local_ts.clone(),
                remote_ts: self.remote_ts.clone(),
                lifetime: self.lifetime,
                df: DfMode::default(),
                dscp: None,
                ecn: EcnMode::default(),
                tfc_pad: 0,
                backend: Backend::Auto,
            })
        };
        let out = if self.larval {
            None
        } else {
            Some(mk(
                Direction::Out,
                self.spi_out,
                &self.enc_out,
                &self.auth_out,
            )?)
        };
        Ok((
            out,
            mk(Direction::In, self.spi_in, &self.enc_in, &self.auth_in)?,
        ))
    }
}

/// A command from the control plane.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// Install a CHILD_SA (inbound at once; outbound at once if `outbound_now`).
    Add {
        /// Version.
        v: u32,
        /// The SA pair.
        sa: Box<ChildSa>,
    },
    /// Start sending on an installed SA pair.
    Activate {
        /// Version.
        v: u32,
        /// Its inbound SPI.
        spi_in: u32,
    },
    /// Stop sending on an SA pair (its inbound half stays until `remove`): a per-resource
    /// pair the peer deleted with none to follow it, whose worker then uses the fallback.
    Deactivate {
        /// Version.
        v: u32,
        /// Its inbound SPI.
        spi_in: u32,
    },
    /// Remove an SA pair.
    Remove {
        /// Version.
        v: u32,
        /// Its inbound SPI.
        spi_in: u32,
    },
    /// An on-demand policy: traffic from `local_ts` to `remote_ts` while no SA pair of this
    /// (tunnel, child) is active is dropped and reported with an `acquire` event.
    Trap {
        /// Version.
        v: u32,
        /// Tunnel.
        tunnel: String,
        /// Child.
        child: String,
        /// Our side.
        local_ts: Vec<IpPrefix>,
        /// The peer's side.
        remote_ts: Vec<IpPrefix>,
    },
    /// The peer moved (NAT mapping change): the pair's outbound ESP goes to `remote`, keeping
    /// its sequence numbers.
    Move {
        /// Version.
        v: u32,
        /// Inbound SPI of the pair.
        spi_in: u32,
        /// The peer's new address.
        remote: IpAddr,
        /// The peer's new UDP port (UDP-encapsulated ESP).
        remote_port: u16,
    },
    /// Removes the on-demand policy of a (tunnel, child).
    Untrap {
        /// Version.
        v: u32,
        /// Tunnel.
        tunnel: String,
        /// Child.
        child: String,
    },
    /// Report every dynamic SA pair (an `sas` event): a restarted control plane reconciles.
    Dump {
        /// Version.
        v: u32,
    },
    /// The control plane is running: sent every [`ALIVE_EVERY`]. VRRP routers that track it
    /// (`track_ike`) lower their priority to 1 once none came for [`ALIVE_LOST`] after one did
    /// (any command counts then).
    Alive {
        /// Version.
        v: u32,
    },
    /// The other gateway's VRRP masters, from its last SA-state sync snapshot: each is taken
    /// as an advertisement of that router (`vrrp::Router::receive_sync`), a second path for
    /// when the wire's are lost. At most [`SYNC_ADVERTS_MAX`] are used.
    SyncAdverts {
        /// Version.
        v: u32,
        /// Its masters.
        masters: Vec<VrrpMaster>,
    },
}

/// Most entries of a [`Command::SyncAdverts`] (or of a snapshot) that are used.
pub const SYNC_ADVERTS_MAX: usize = 64;

/// A VRRP router a gateway is master of, as its control plane sends it to the other gateway's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VrrpMaster {
    /// Its interface (the two gateways name their ports alike).
    pub interface: String,
    /// Virtual router ID.
    pub vrid: u8,
    /// The priority it advertises.
    pub priority: u8,
    /// Its primary address (the source of its advertisements; its family is the router's).
    pub primary: IpAddr,
    /// Its advertisement interval, centiseconds.
    pub interval_cs: u16,
    /// Whether it hears advertisements of the other gateway's router on the wire: then the
    /// wire works from the other gateway to it, and the other gateway does not wait for it
    /// (it may not be able to send there). Absent from an older sender: false.
    #[serde(default)]
    pub hears: bool,
}

/// How often the control plane says [`Command::Alive`].
pub const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// How long the data plane waits for a [`Command::Alive`] before it takes the control plane
/// for dead (six missed: a busy control plane, computing a large DH group say, is not).
pub const ALIVE_LOST: std::time::Duration = std::time::Duration::from_secs(3);

impl Command {
    /// The version field.
    pub fn version(&self) -> u32 {
        match self {
            Command::Add { v, .. }
            | Command::Activate { v, .. }
            | Command::Deactivate { v, .. }
            | Command::Remove { v, .. }
            | Command::Trap { v, .. }
            | Command::Move { v, .. }
            | Command::Untrap { v, .. }
            | Command::Dump { v }
            | Command::Alive { v }
            | Command::SyncAdverts { v, .. } => *v,
        }
    }
    /// Encodes as JSON (the buffer is wiped on drop: it may hold keys).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(serde_json::to_vec(self).unwrap_or_default())
    }
    /// Decodes and checks the version.
    pub fn decode(b: &[u8]) -> Result<Command, String> {
        let c: Command = serde_json::from_slice(b).map_err(|e| format!("bad command: {e}"))?;
        if c.version() != VERSION {
            return Err(format!(
                "command version {} (we speak {VERSION})",
                c.version()
            ));
        }
        Ok(c)
    }
}

/// One installed SA pair as the data plane reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SaReport {
    /// Tunnel.
    pub tunnel: String,
    /// Child.
    pub child: String,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Outbound in use.
    pub active: bool,
    /// Packets and bytes out.
    pub out_packets: u64,
    /// Bytes out.
    pub out_bytes: u64,
    /// Packets in.
    pub in_packets: u64,
    /// Bytes in.
    pub in_bytes: u64,
    /// The last outbound sequence number handed out. None from a data plane older than this
    /// field: then nothing is known of what the SA sent (never "nothing sent").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_seq: Option<u64>,
    /// The highest inbound sequence number accepted (the top of the anti-replay window); None
    /// from an older data plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_seq: Option<u64>,
    /// The worker of a per-resource SA ([`ChildSa::worker`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u16>,
}

/// An event from the data plane.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "ev", rename_all = "kebab-case")]
pub enum Event {
    /// The data plane (re)started with this channel generation.
    Hello {
        /// Version.
        v: u32,
        /// Channel generation.
        generation: u64,
        /// Worker pipelines (1 when the main lcore runs the only one; 0: an older data plane
        /// that did not say): the resources per-resource SAs (RFC 9611) are made for.
        #[serde(default)]
        workers: u16,
    },
    /// Every dynamic SA pair (answer to `dump`, and periodically with counters).
    Sas {
        /// Version.
        v: u32,
        /// The pairs.
        sas: Vec<SaReport>,
        /// More pairs of the same report follow in the next `Sas` event (a report larger than
        /// one ring slot goes in parts; the reader takes the parts together).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
        /// Which report the part belongs to (the parts of one report share it): a reader that
        /// missed a part (a full ring) starts again with the next report instead of mixing two.
        #[serde(default)]
        report: u64,
        /// The part's place in its report, from 0.
        #[serde(default)]
        part: u32,
        /// When the data plane took the report: CLOCK_MONOTONIC in ns (`shmring::monotonic_ns`,
        /// the same clock on both ends), so that a report read late (a reader that stalled)
        /// counts from when it was taken; 0: unknown.
        #[serde(default)]
        at_ns: u64,
        /// Worker pipelines, as in `Hello` (a control plane that started after the data plane
        /// missed that).
        #[serde(default)]
        workers: u16,
    },
    /// Traffic hit an on-demand policy that has no SA (at most once a second per policy).
    Acquire {
        /// Version.
        v: u32,
        /// Tunnel.
        tunnel: String,
        /// Child.
        child: String,
        /// The packet's source.
        src: IpAddr,
        /// The packet's destination.
        dst: IpAddr,
    },
    /// An SA pair's byte or packet lifetime ran out in one direction.
    Expired {
        /// Version.
        v: u32,
        /// Inbound SPI of the pair.
        spi_in: u32,
        /// Hard (traffic stopped) rather than soft (time to rekey).
        hard: bool,
    },
    /// The VRRP virtual addresses this gateway holds (master) and those it does not (backup),
    /// sent on every change and every second: IKE from or to a standby address is not this
    /// gateway's to send or answer.
    Vrrp {
        /// Version.
        v: u32,
        /// Virtual addresses held.
        held: Vec<IpAddr>,
        /// Virtual addresses the other gateway holds.
        standby: Vec<IpAddr>,
        /// The routers this gateway is master of (none from an older data plane): they go
        /// into the SA-state sync snapshot.
        #[serde(default)]
        masters: Vec<VrrpMaster>,
    },
    /// A command was refused.
    Refused {
        /// Version.
        v: u32,
        /// Why.
        reason: String,
    },
}

impl Event {
    /// Encodes as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    /// Decodes.
    pub fn decode(b: &[u8]) -> Result<Event, String> {
        serde_json::from_slice(b).map_err(|e| format!("bad event: {e}"))
    }

    /// Report number `report` of `sas` as encoded `Sas` events of at most `max` bytes each
    /// (one ring slot), every part but the last marked `more`. A single pair too large for `max` (absurdly
    /// long names) still makes a part of its own, which the ring will refuse.
    pub fn sas_parts(
        report: u64,
        at_ns: u64,
        workers: u16,
        sas: &[SaReport],
        max: usize,
    ) -> Vec<Vec<u8>> {
        let mut parts = Vec::new();
        let (mut at, mut per) = (0, sas.len().max(1));
        loop {
            let mut n = per.min(sas.len() - at);
            let enc = loop {
                let more = at + n < sas.len();
                let enc = Event::Sas {
                    v: VERSION,
                    sas: sas[at..at + n].to_vec(),
                    more,
                    report,
                    part: parts.len() as u32,
                    at_ns,
                    workers,
                }
                .encode();
                if enc.len() <= max || n <= 1 {
                    break enc;
                }
                n = n.div_ceil(2);
            };
            parts.push(enc);
            // The next part starts from the size that fitted.
            (at, per) = (at + n, n);
            if at >= sas.len() {
                return parts;
            }
        }
    }
}

/// A punted or injected IKE datagram: our address and port, the peer's, and the IKE message
/// (without the non-ESP marker).
///
/// Encoding: `1 | family (4 or 6) | local addr (16) | local port (2) | remote addr (16) |
/// remote port (2) | message`, IPv4 addresses in the first 4 of their 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Our side.
    pub local: SocketAddr,
    /// The peer's side.
    pub remote: SocketAddr,
    /// The IKE message.
    pub message: &'a [u8],
}

/// Header length of an encoded datagram.
pub const DATAGRAM_HEADER: usize = 38;

fn put_addr(out: &mut [u8], a: IpAddr) {
    match a {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out[..16].copy_from_slice(&a.octets()),
    }
}

fn get_addr(b: &[u8], v6: bool) -> IpAddr {
    if v6 {
        let mut x = [0u8; 16];
        x.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(x))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

impl<'a> Datagram<'a> {
    /// Writes the encoding into `out` (which must hold `DATAGRAM_HEADER + message.len()`);
    /// returns the length.
    pub fn encode_into(&self, out: &mut [u8]) -> Option<usize> {
        let n = DATAGRAM_HEADER + self.message.len();
        if out.len() < n || self.local.is_ipv4() != self.remote.is_ipv4() {
            return None;
        }
        out[..DATAGRAM_HEADER].fill(0);
        out[0] = 1;
        out[1] = if self.local.is_ipv4() { 4 } else { 6 };
        put_addr(&mut out[2..18], self.local.ip());
        out[18..20].copy_from_slice(&self.local.port().to_be_bytes());
        put_addr(&mut out[20..36], self.remote.ip());
        out[36..38].copy_from_slice(&self.remote.port().to_be_bytes());
        out[DATAGRAM_HEADER..n].copy_from_slice(self.message);
        Some(n)
    }

    /// Encodes into a new vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![0u8; DATAGRAM_HEADER + self.message.len()];
        let _ = self.encode_into(&mut v);
        v
    }

    /// Decodes; None for anything malformed.
    pub fn decode(b: &'a [u8]) -> Option<Datagram<'a>> {
        if b.len() < DATAGRAM_HEADER || b[0] != 1 {
            return None;
        }
        let v6 = match b[1] {
            4 => false,
            6 => true,
            _ => return None,
        };
        Some(Datagram {
            local: SocketAddr::new(get_addr(&b[2..18], v6), u16::from_be_bytes([b[18], b[19]])),
            remote: SocketAddr::new(get_addr(&b[20..36], v6), u16::from_be_bytes([b[36], b[37]])),
            message: &b[DATAGRAM_HEADER..],
        })
    }

    /// The IKE datagram inside an IP packet that [`crate::outer::classify`] called IKE: the
    /// message after the UDP header (and the non-ESP marker on any port but 500).
    pub fn from_ip(ip: &'a [u8]) -> Option<Datagram<'a>> {
        let (src, dst, l4) = match ip.first()? >> 4 {
            4 => {
                let ihl = usize::from(ip.first()? & 15) * 4;
                if ihl < 20 || ip.len() < ihl + 8 || *ip.get(9)? != 17 {
                    return None;
                }
                (
                    IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                    IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
                    ihl,
                )
            }
            6 => {
                // Extension headers before UDP are not expected on IKE traffic.
                if ip.len() < 48 || ip[6] != 17 {
                    return None;
                }
                (get_addr(&ip[8..24], true), get_addr(&ip[24..40], true), 40)
            }
            _ => return None,
        };
        let u = &ip[l4..];
        let sport = u16::from_be_bytes([u[0], u[1]]);
        let dport = u16::from_be_bytes([u[2], u[3]]);
        let ulen = usize::from(u16::from_be_bytes([u[4], u[5]]));
        if ulen < 8 || ulen > u.len() {
            return None;
        }
        let mut msg = &u[8..ulen];
        if dport != 500 {
            if msg.len() < 4 || msg[..4] != [0; 4] {
                return None;
            }
            msg = &msg[4..];
        }
        Some(Datagram {
            local: SocketAddr::new(dst, dport),
            remote: SocketAddr::new(src, sport),
            message: msg,
        })
    }

    /// Writes the IP + UDP packet that carries this datagram (with the non-ESP marker when the
    /// local port is not 500) into `out`; returns its length. IPv4 gets a header checksum and
    /// both families a UDP checksum.
    pub fn to_ip(&self, out: &mut [u8]) -> Option<usize> {
        use crate::wire::checksum;
        // No non-ESP marker on port 500, nor on a NAT keepalive (one 0xFF byte, RFC 3948 §2.3).
        let marker = if self.local.port() == 500 || self.message == [0xff] {
            0
        } else {
            4
        };
        let ulen = 8 + marker + self.message.len();
        let (iplen, l4) = match (self.local.ip(), self.remote.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => (20 + ulen, 20),
            (IpAddr::V6(_), IpAddr::V6(_)) => (40 + ulen, 40),
            _ => return None,
        };
        if out.len() < iplen || iplen > 65535 {
            return None;
        }
        let out = &mut out[..iplen];
        out.fill(0);
        let csum_seed = match (self.local.ip(), self.remote.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                out[0] = 0x45;
                out[2..4].copy_from_slice(&(iplen as u16).to_be_bytes());
                out[6] = 0x40; // DF: IKE fragments itself (RFC 7383)
                out[8] = 64;
                out[9] = 17;
                out[12..16].copy_from_slice(&s.octets());
                out[16..20].copy_from_slice(&d.octets());
                let c = !checksum::data(&out[..20]);
                out[10..12].copy_from_slice(&c.to_be_bytes());
                checksum::pseudo_header_v4(&s, &d, 17, ulen as u32)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                out[0] = 0x60;
                out[4..6].copy_from_slice(&(ulen as u16).to_be_bytes());
                out[6] = 17;
                out[7] = 64;
                out[8..24].copy_from_slice(&s.octets());
                out[24..40].copy_from_slice(&d.octets());
                checksum::pseudo_header_v6(&s, &d, 17, ulen as u32)
            }
            _ => return None,
        };
        let u = &mut out[l4..];
        u[0..2].copy_from_slice(&self.local.port().to_be_bytes());
        u[2..4].copy_from_slice(&self.remote.port().to_be_bytes());
        u[4..6].copy_from_slice(&(ulen as u16).to_be_bytes());
        u[8 + marker..].copy_from_slice(self.message);
        let mut c = !checksum::combine(&[csum_seed, checksum::data(u)]);
        if c == 0 {
            c = 0xffff;
        }
        u[6..8].copy_from_slice(&c.to_be_bytes());
        Some(iplen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_round_trips_through_the_ring_encoding_and_ip() {
        for (l, r) in [
            ("203.0.113.1:4500", "198.51.100.7:40000"),
            ("[2001:db8::1]:500", "[2001:db8::2]:500"),
        ] {
            let d = Datagram {
                local: l.parse().unwrap(),
                remote: r.parse().unwrap(),
                message: b"an IKE message, 28 bytes or more",
            };
            let enc = d.encode();
            assert_eq!(Datagram::decode(&enc), Some(d));
            let mut ip = [0u8; 200];
            let n = d.to_ip(&mut ip).unwrap();
            // As the peer receives it: its local is our remote.
            let back = Datagram::from_ip(&ip[..n]).unwrap();
            assert_eq!(back.local, d.remote);
            assert_eq!(back.remote, d.local);
            assert_eq!(back.message, d.message);
            if l.starts_with('2') {
                assert_eq!(
                    crate::wire::checksum::data(&ip[..20]),
                    0xffff,
                    "IPv4 header checksum"
                );
            }
        }
        assert_eq!(Datagram::decode(&[1, 5]), None);
        // An IPv4 header length below 20 (found by fuzzing ctl_messages): refused, no panic.
        assert_eq!(
            Datagram::from_ip(&[0x41, 0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0]),
            None
        );
        assert_eq!(Datagram::decode(&[0; 38]), None);
    }

    /// A report of many SA pairs goes in parts that each fit a ring slot and come back whole;
    /// reports from an older data plane (no sequence numbers, no parts) still decode, as
    /// "unknown", never as 0.
    #[test]
    fn sa_reports_split_into_slot_sized_parts() {
        // What a slot takes (shmring keeps a few bytes of each for the length).
        let max = SLOT_SIZE as usize - 64;
        let sas: Vec<SaReport> = (0..500u32)
            .map(|i| SaReport {
                tunnel: format!("branch-office-{i:04}"),
                child: "net-net".into(),
                spi_in: 0xc000_0000 | i,
                spi_out: 0xd000_0000 | i,
                active: true,
                out_packets: u64::MAX - u64::from(i),
                out_bytes: u64::MAX,
                in_packets: u64::MAX,
                in_bytes: u64::MAX,
                out_seq: Some(u64::MAX - 1),
                in_seq: Some(u64::from(i)),
                worker: None,
            })
            .collect();
        // One whole report would not fit.
        let whole = Event::Sas {
            v: VERSION,
            sas: sas.clone(),
            more: false,
            report: 7,
            part: 0,
            at_ns: 1,
            workers: 2,
        };
        assert!(whole.encode().len() > max);
        let parts = Event::sas_parts(7, 123, 2, &sas, max);
        assert!(parts.len() > 1);
        let mut back = Vec::new();
        for (k, enc) in parts.iter().enumerate() {
            assert!(enc.len() <= max, "part {k}: {} bytes", enc.len());
            let Ok(Event::Sas {
                sas,
                more,
                report,
                part,
                ..
            }) = Event::decode(enc)
            else {
                panic!("part {k}")
            };
            assert_eq!((report, part as usize, more), (7, k, k + 1 < parts.len()));
            back.extend(sas);
        }
        assert_eq!(back, sas);
        // Small reports and empty ones are one part.
        assert_eq!(Event::sas_parts(8, 123, 2, &sas[..3], max).len(), 1);
        let empty = Event::sas_parts(9, 123, 2, &[], max);
        assert_eq!(empty.len(), 1);
        assert!(matches!(
            Event::decode(&empty[0]),
            Ok(Event::Sas { ref sas, more: false, .. }) if sas.is_empty()
        ));

        let older = br#"{"ev":"sas","v":1,"sas":[{"tunnel":"t","child":"c","spi_in":1,"spi_out":2,"active":true,"out_packets":5,"out_bytes":500,"in_packets":6,"in_bytes":600}]}"#;
        let Ok(Event::Sas {
            sas,
            more,
            report,
            part,
            at_ns,
            ..
        }) = Event::decode(older)
        else {
            panic!()
        };
        assert_eq!((more, report, part, at_ns), (false, 0, 0, 0));
        assert_eq!((sas[0].out_seq, sas[0].in_seq), (None, None));
    }

    #[test]
    fn commands_are_versioned_and_keys_round_trip() {
        let sa = ChildSa::example();
        // A reinstall after a data plane restart: numbering goes on after the given number,
        // outbound only; a command without the field (an older control plane) starts at 0.
        let mut later = sa.clone();
        later.out_seq_from = 0x1234_5678;
        let (o, i) = later.params().unwrap();
        assert_eq!((o.unwrap().initial_seq, i.initial_seq), (0x1234_5678, 0));
        later.in_seq_from = 77;
        let (o, i) = later.params().unwrap();
        assert_eq!((o.unwrap().initial_seq, i.initial_seq), (0x1234_5678, 77));
        later.in_seq_from = 0;
        let older = String::from_utf8(
            Command::Add {
                v: VERSION,
                sa: Box::new(later),
            }
            .encode()
            .to_vec(),
        )
        .unwrap()
        .replace(",\"out_seq_from\":305419896", "");
        assert!(!older.contains("out_seq_from"), "{older}");
        let Command::Add { sa: old, .. } = Command::decode(older.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(old.params().unwrap().0.unwrap().initial_seq, 0);

        // An ordinary install leaves both starts out, so that a data plane older than them
        // (which refuses unknown fields) takes it.
        let plain = String::from_utf8(
            Command::Add {
                v: VERSION,
                sa: Box::new(sa.clone()),
            }
            .encode()
            .to_vec(),
        )
        .unwrap();
        assert!(
            !plain.contains("out_seq_from") && !plain.contains("in_seq_from"),
            "{plain}"
        );

        // Where numbering may go on: the reported number plus 2^28 a second since the report
        // was read, plus one second; none where the space (32-bit) or the peer's inference of
        // the high half (ESN: a start under 2^31 past the report) has no room.
        assert_eq!(sa.continue_after(1000, 0), Some(1000 + (1 << 28)));
        assert_eq!(sa.continue_after(1000, 2), Some(1000 + 3 * (1 << 28)));
        assert_eq!(sa.continue_after(0, 14), Some(15 << 28));
        assert_eq!(sa.continue_after(0, 15), None);
        // 32-bit: 2^24 numbers must stay, exactly.
        let edge = (1u64 << 32) - (1 << 24) - (1 << 28);
        assert_eq!(sa.continue_after(edge - 1, 0), Some(edge - 1 + (1 << 28)));
        assert_eq!(sa.continue_after(edge, 0), None);
        assert_eq!(sa.continue_after(u64::MAX, 0), None);
        assert_eq!(sa.continue_after(0, u64::MAX), None);
        let esn = ChildSa {
            esn: true,
            ..sa.clone()
        };
        assert_eq!(esn.continue_after(5 << 32, 6), Some((5 << 32) + (7 << 28)));
        assert_eq!(esn.continue_after(5 << 32, 7), None);
        // A data plane that dies again before it reports: the next start goes on from the
        // last one, and the 2^31 bound holds against the report, not against each jump (four
        // quick restarts must not add up past it).
        let mut again = esn.clone();
        let mut starts = Vec::new();
        for secs in [1, 2, 3, 4] {
            match again.continue_after(5 << 32, secs) {
                Some(n) => {
                    assert!(n > again.out_seq_from);
                    again.out_seq_from = n;
                    starts.push(n);
                }
                None => break,
            }
        }
        assert_eq!(starts, [(5 << 32) + (2 << 28), (5 << 32) + (5 << 28)]);
        assert!(starts.iter().all(|n| n - (5 << 32) < 1 << 31));

        let c = Command::Add {
            v: VERSION,
            sa: Box::new(sa),
        };
        let enc = c.encode();
        let Command::Add { sa, .. } = Command::decode(&enc).unwrap() else {
            panic!()
        };
        let (o, i) = sa.params().unwrap();
        assert_eq!(*o.unwrap().enc_key, vec![2; 20]);
        assert_eq!(*i.enc_key, vec![1; 20]);
        assert_eq!(i.replay_window, 1024);
        let v2 = String::from_utf8(enc.to_vec())
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        assert!(Command::decode(v2.as_bytes())
            .unwrap_err()
            .contains("version"));
        assert!(Command::decode(b"{\"op\":\"dump\"}").is_err());
    }
}
