//! ferrogate: the DPDK gateway (first slice).
//!
//! ```text
//! ferrogate --config GATEWAY.yaml [--eal "EXTRA EAL ARGS"] [--idle-exit-ms MS] [--stats-json FILE]
//!           [--icmp-errors-per-s N]
//! ```
//!
//! What it does: starts EAL with the configured devices and opens every port with one receive
//! and one transmit queue per worker lcore (RSS spreads the traffic over them). Each worker runs its own pipeline over its queues
//! (`Pipeline`): frames from inside ports go through SPD-out and ESP encap,
//! frames from outside ports through the inbound path (SAD, replay, decrypt, selectors), and
//! what is forwarded leaves by the longest-prefix route with the static neighbour's MAC.
//! It answers ARP and ICMP echo for its own IPv4 addresses, decrements TTL / hop limit on
//! forwarded packets, and clamps the MSS of TCP SYNs entering a tunnel. It sends ICMP time
//! exceeded when a TTL / hop limit runs out and ICMP fragmentation needed / packet too big
//! when a packet would not fit the outside MTU once encapsulated (or the inside MTU once
//! decapsulated), and fragments IPv4 packets without DF instead (before encapsulation), and
//! IPv6 packets of up to 1280 bytes after it (their outer packet, RFC 8200 §5); errors
//! about packets that came out of the tunnel go back through it (module `icmp_err`).
//! Next hops without a static neighbour are resolved by ARP / IPv6 neighbor discovery
//! (`dataplane::neigh`; packets for an unresolved hop are dropped and counted), and outer
//! fragments of ESP are reassembled (`dataplane::reasm`) before decryption.
//! The main lcore serves the control plane: it applies what ferrogate-ike installs and
//! publishes new versions of the SPDs and the SAD, which each worker picks up between two
//! bursts (`arc_swap`: no lock on the hot path), hands the IKE datagrams the workers punt to
//! ferrogate-ike (an `rte_ring`), sends what ferrogate-ike injects through worker 0 once every
//! worker uses the tables published before it (make-before-break), and sums the workers'
//! counters for the stats. Workers learn neighbours from the ARP / ND they receive and pass
//! them to the other lcores (lock-free queues). With `workers: []` the main lcore runs the
//! only pipeline itself.
//! With `vrrp:` in the configuration the main lcore also runs the VRRP virtual routers
//! (`dataplane::vrrp`): the pipelines hand it the advertisements they receive and answer for
//! the virtual addresses only while it is master, and the control plane hears which addresses
//! it holds.
//! `--idle-exit-ms` stops after that long without traffic (tests replay pcap files).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use dataplane::buf::PacketBuf;
use dataplane::burst::{self, InboundTables, OutboundTables, OutboundTarget, Verdict};
use dataplane::ctl;
use dataplane::dpdk::{Burst, Eal, Mbuf, MbufRing, Mempool, Port, RxQueue, TxQueue, BURST};
use dataplane::drop::{DropCounters, DropReason};
use dataplane::flowcache::{FlowCache, FlowCacheStats};
use dataplane::gateway_config::{GatewayConfig, MssClamp, Role};
use dataplane::icmp_err::{self, Error as IcmpError, Oversize, Quote};
use dataplane::neigh::{self, NeighTable, Resolution};
use dataplane::net::IpPrefix;
use dataplane::ra;
use dataplane::sa::{Direction, InboundSa, OutboundSa};
use dataplane::sad::Sad;
use dataplane::spd::{Action, PolicyHits, Rule, Spd};
use dataplane::vrrp;
use dataplane::wire::ethernet;

struct Args {
    config: PathBuf,
    eal: Vec<String>,
    idle_exit: Option<Duration>,
    stats_json: Option<PathBuf>,
    /// Print a line of counters this often (live counters).
    stats_every: Option<Duration>,
    /// Sleep this long when a poll round found nothing (0: busy-poll, for line rate).
    idle_sleep: Duration,
    /// The control-plane channel file (shared-memory rings to ferrogate-ike).
    control: Option<PathBuf>,
    /// Counters as JSON, rewritten every second (`fgctl stats` reads it).
    stats_file: Option<PathBuf>,
    /// ICMP errors the gateway sends a second at most (the token bucket's rate and burst).
    icmp_rate: u32,
    /// The log filter (`tracing` env-filter syntax: `info`, `debug`, `dataplane=debug`...).
    log: String,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: ferrogate --config GATEWAY.yaml [--eal \"EAL ARGS\"] [--idle-exit-ms MS] [--stats-json FILE]\n                 [--stats-every-ms MS] [--idle-sleep-us US] [--control CHANNEL] [--stats-file FILE]\n                 [--icmp-errors-per-s N] [--log FILTER]";
    let mut it = std::env::args().skip(1);
    let (mut config, mut eal, mut idle_exit, mut stats_json) = (None, Vec::new(), None, None);
    let (mut stats_every, mut idle_sleep, mut control, mut stats_file) =
        (None, Duration::ZERO, None, None);
    let mut icmp_rate = 100;
    let mut log = "info".to_owned();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value\n{usage}"));
        match a.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--eal" => eal = value()?.split_whitespace().map(str::to_owned).collect(),
            "--idle-exit-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|_| format!("--idle-exit-ms takes milliseconds\n{usage}"))?;
                idle_exit = Some(Duration::from_millis(ms));
            }
            "--stats-json" => stats_json = Some(PathBuf::from(value()?)),
            "--stats-every-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|_| format!("--stats-every-ms takes milliseconds\n{usage}"))?;
                stats_every = Some(Duration::from_millis(ms.max(1)));
            }
            "--idle-sleep-us" => {
                let us: u64 = value()?
                    .parse()
                    .map_err(|_| format!("--idle-sleep-us takes microseconds\n{usage}"))?;
                idle_sleep = Duration::from_micros(us);
            }
            "--control" => control = Some(PathBuf::from(value()?)),
            "--stats-file" => stats_file = Some(PathBuf::from(value()?)),
            "--icmp-errors-per-s" => {
                icmp_rate = value()?
                    .parse()
                    .map_err(|_| format!("--icmp-errors-per-s takes a count\n{usage}"))?;
            }
            "--log" => log = value()?,
            "-h" | "--help" => return Err(usage.into()),
            _ => return Err(format!("unknown argument `{a}`\n{usage}")),
        }
    }
    Ok(Args {
        config: config.ok_or(format!("--config is required\n{usage}"))?,
        eal,
        idle_exit,
        stats_json,
        stats_every,
        idle_sleep,
        control,
        stats_file,
        icmp_rate,
        log,
    })
}

/// One opened interface: what every lcore knows about it (fixed once the ports start, but
/// for its link state).
struct Iface {
    name: String,
    role: Role,
    port: Port,
    mac: [u8; 6],
    /// The device's own MAC (frames sent to it are ours too when `mac:` overrides it).
    hw_mac: [u8; 6],
    /// Our IPv4 addresses on it (ARP and ICMP echo answer for these).
    addrs: Vec<std::net::Ipv4Addr>,
    /// Our first IPv6 address on it (ICMPv6 errors come from it).
    addr6: Option<Ipv6Addr>,
    /// All our IPv6 addresses on it (neighbor solicitations are answered for these).
    addrs6: Vec<Ipv6Addr>,
    /// Its MTU (IP bytes).
    mtu: u16,
    /// The kernel's carrier file of the interface under an af_packet port (whose driver
    /// always reports its link up).
    carrier: Option<std::path::PathBuf>,
    /// The link as link tracking acts on it: the main lcore's last reading
    /// ([`Iface::read_link`]), held back by the port's `link_delay`.
    link_up: AtomicBool,
    /// Changes of the raw link reading (losses and returns, each one).
    link_changes: AtomicU64,
    /// The carrier file could not be found (said once in the log).
    carrier_missing: AtomicBool,
    /// Router advertisements are configured on it: valid router solicitations are counted
    /// in `solicits` (the main lcore answers them) and not passed on.
    ra: bool,
    /// Valid router solicitations received.
    solicits: AtomicU64,
    /// Router advertisements sent.
    ra_sent: AtomicU64,
}

impl Iface {
    /// Whether the link is up: the driver says so, and for an af_packet port the kernel
    /// interface has a carrier (its `carrier` file reads 1; it cannot be read while the
    /// interface is administratively down). A carrier file that does not exist (sysfs
    /// mounted for another network namespace: `nsenter --net` does not remount it, `ip netns
    /// exec` does) leaves the driver's word, and says so once. No allocation: the main lcore
    /// reads it often.
    fn read_link(&self) -> bool {
        use std::io::Read;
        if !self.port.link_up().unwrap_or(true) {
            return false;
        }
        let Some(path) = &self.carrier else {
            return true;
        };
        let mut b = [0u8; 4];
        match std::fs::File::open(path).and_then(|mut f| f.read(&mut b)) {
            Ok(n) => b[..n].starts_with(b"1"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.carrier_missing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(interface = %self.name, path = %path.display(),
                        "no carrier file for the kernel interface (is /sys mounted for this \
                         network namespace?): its link is taken as the driver says");
                }
                true
            }
            Err(_) => false,
        }
    }
}

/// One lcore's queues: a receive queue per port (none on the main lcore while workers poll)
/// and a way out per port, each used by this lcore only.
struct Queues {
    rx: Vec<Option<RxQueue>>,
    tx: Vec<TxOut>,
    /// Worker 0 only: what the main lcore hands it to send, one ring per port, and the
    /// bursts it is sent from.
    handoff_in: Vec<Arc<MbufRing>>,
    ctl: Vec<Burst>,
    /// One pending transmit burst per port.
    txb: Vec<Burst>,
    /// Frames in and out per port, for the stats.
    rx_frames: Vec<u64>,
    tx_frames: Vec<u64>,
    /// With several workers, each outbound SA is encapsulated by one of them, its owner
    /// ([`OutboundSa::owner`]), so that its sequence numbers leave in order. Per owner and
    /// inside port: the ring to it and the packets waiting to go in (empty with one worker).
    hand: Vec<Vec<(Arc<MbufRing>, Burst)>>,
    /// This pipeline's own rings, per port: the packets other workers handed it.
    inbox: Vec<Arc<MbufRing>>,
    /// Packets handed to other workers, and taken from this one's inbox.
    handed_off: u64,
    handed_in: u64,
}

impl Queues {
    /// Queues `m` for worker `owner`'s ring of port `k` (as if it came in by that port),
    /// passing on a full burst at once. False (counted as
    /// `no_route`) if `owner` is no worker's number; a ring that turns out full when the burst
    /// goes counts `handoff_full` then, as a full transmit queue counts `tx_full`.
    fn hand_off(&mut self, owner: usize, k: usize, m: Mbuf, drops: &mut DropCounters) -> bool {
        let Some((_, b)) = self.hand.get_mut(owner).and_then(|h| h.get_mut(k)) else {
            // Not a worker's number: a bug, counted rather than sent out of order.
            drops.inc(DropReason::NoRoute);
            return false;
        };
        b.pkts().push(m);
        self.handed_off += 1;
        if b.pkts().len() >= BURST {
            self.pass_on(drops);
        }
        true
    }

    /// Puts every waiting hand-off burst into its ring; what a full ring does not take is
    /// dropped and counted (its owner is behind).
    fn pass_on(&mut self, drops: &mut DropCounters) {
        for (ring, b) in self.hand.iter_mut().flatten() {
            if !b.pkts().is_empty() {
                ring.enqueue(b);
                for _ in b.pkts().drain(..) {
                    drops.inc(DropReason::HandoffFull);
                }
            }
        }
    }
}

/// Where one lcore's frames for a port go.
enum TxOut {
    /// The port's transmit queue this lcore owns.
    Queue(TxQueue),
    /// The main lcore in worker mode (the ports have a queue per worker only: af_packet's
    /// `qpairs` are receive and transmit queues alike): a ring to worker 0, which sends them.
    Handoff(Arc<MbufRing>),
}

impl TxOut {
    /// Sends (or hands over) what it can of the burst; the rest stays in it.
    fn send(&mut self, b: &mut Burst) -> usize {
        match self {
            TxOut::Queue(q) => q.tx(b),
            TxOut::Handoff(r) => r.enqueue(b),
        }
    }
}

/// Where a destination goes: interface index and next-hop MAC, resolved by ARP / ND when
/// no static neighbour names it. Each lcore has its own (no lock on the hot path); what one
/// learns it passes to the others ([`Shared::learn`]).
struct Fib {
    /// (prefix, interface, next hop), longest prefix first.
    routes: Arc<[(IpPrefix, usize, Option<IpAddr>)]>,
    neigh: NeighTable,
    /// Requests to send after this burst: (interface, next hop). Bounded by [`MAX_ASKS`].
    asks: Vec<(usize, IpAddr)>,
    /// Milliseconds since start, set once per burst.
    now_ms: u64,
}

/// Neighbour requests sent per burst at most.
const MAX_ASKS: usize = 32;

/// The largest outer datagram the gateway reassembles (bytes of IP packet).
const REASM_ROOM: u16 = 9216;

impl Fib {
    /// The interface and next hop for `dst`.
    fn route_of(&self, dst: IpAddr) -> Option<(usize, IpAddr)> {
        let (_, ifx, via) = self.routes.iter().find(|(p, _, _)| p.contains(dst))?;
        Some((*ifx, via.unwrap_or(dst)))
    }

    /// The interface and next-hop MAC for `dst`; an unknown hop is asked for.
    fn lookup(&mut self, dst: IpAddr) -> Result<(usize, [u8; 6]), DropReason> {
        let (ifx, hop) = self.route_of(dst).ok_or(DropReason::NoRoute)?;
        match self.neigh.resolve(hop, self.now_ms) {
            Resolution::Mac(m) => Ok((ifx, m)),
            Resolution::MacAndRequest(m) => {
                self.ask(ifx, hop);
                Ok((ifx, m))
            }
            Resolution::Request => {
                self.ask(ifx, hop);
                Err(DropReason::NeighbourUnresolved)
            }
            Resolution::Unresolved | Resolution::TableFull => Err(DropReason::NeighbourUnresolved),
        }
    }

    fn ask(&mut self, ifx: usize, hop: IpAddr) {
        if self.asks.len() < MAX_ASKS && !self.asks.contains(&(ifx, hop)) {
            self.asks.push((ifx, hop));
        }
    }
}

/// The tables the pipelines classify with. The main lcore builds a new version when the
/// control plane changes something and publishes it whole; each pipeline picks it up between
/// two bursts (an atomic pointer load per round, no lock).
struct Tables {
    /// Versions count up from 0.
    generation: u64,
    spd_out: Spd<OutboundTarget>,
    spd_in: Spd<()>,
    sad: Sad<Arc<InboundSa>>,
    /// Which rule of the previous version each rule keeps the counts of
    /// ([`dataplane::spd::carry_map`], computed once here rather than on every worker).
    carry_out: Vec<u32>,
    carry_in: Vec<u32>,
}

/// A neighbour one lcore learned, passed to the others: (address, MAC, what it was heard in,
/// which says whether it may create an entry or replace a MAC).
type Learned = (IpAddr, [u8; 6], neigh::Heard);

/// An on-demand policy's packet seen by a pipeline: (policy id, source, destination).
type Acquire = (u32, IpAddr, IpAddr);

/// What all lcores share. Written after start only through atomics, lock-free queues and
/// the stats slots (which a pipeline updates with `try_lock`, never waiting).
struct Shared {
    ifaces: Vec<Iface>,
    natt_ports: Vec<u16>,
    /// Every address of ours: the interfaces' and the VRRP routers' virtual ones (held or
    /// not). IKE, keepalives, and ESP/AH without an SA, to any other address pass through
    /// SPD-in as plain traffic ([`InboundTables::local`]).
    locals: Vec<IpAddr>,
    /// MSS for SYNs entering (and leaving) a tunnel.
    mss: Option<u16>,
    /// Encapsulated packets leave by an outside port: the smallest outside MTU bounds them.
    out_mtu: u16,
    /// The smallest MTU of any port: a packet no longer fits every port.
    min_mtu: u16,
    tables: ArcSwap<Tables>,
    /// Set by the main lcore: the workers return.
    stop: AtomicBool,
    /// IKE datagrams the pipelines punt, for the main lcore to hand to the control plane
    /// (multi-producer, single consumer). None without a control channel.
    punts: Option<MbufRing>,
    /// Packets of on-demand policies without an SA, for the main lcore to acquire.
    acquires: ArrayQueue<Acquire>,
    /// Fragmentation Needed / Packet Too Big about our ESP the pipelines received: (SPI,
    /// peer, MTU), for the main lcore ([`PmtuLearnt`]).
    pmtu: ArrayQueue<(u32, IpAddr, u16)>,
    /// Identifications for the outer packets the pipelines fragment ([`Tx::fragment_outer`]):
    /// one counter for all, so that no two pipelines' fragments to one peer share one.
    frag_ident: AtomicU32,
    /// The key of IPv6 fragment identifications (SipHash, random per process).
    frag_key: std::collections::hash_map::RandomState,
    /// Neighbours learned, one queue per pipeline (the main lcore's last).
    learn: Vec<ArrayQueue<Learned>>,
    /// Each polling pipeline's counters, refreshed every [`STATS_EVERY`].
    stats: Vec<Mutex<PipeStats>>,
    /// The tables' generation each polling pipeline uses (written when it picks up a new
    /// version): the main lcore sends what the control plane injects only once all have
    /// caught up, so the SAs an IKE message completes are in every worker's tables first.
    seen: Vec<CachePadded<AtomicU64>>,
    /// Cleared when a worker's job returns (or panics): the main lcore then stops.
    alive: Vec<AtomicBool>,
    /// Milliseconds since start of the last received frame (for `--idle-exit-ms`).
    last_rx_ms: CachePadded<AtomicU64>,
    started: Instant,
    idle_sleep: Duration,
    /// VRRP virtual routers (the main lcore runs them; the pipelines read who is master).
    vrrp: Vec<VrrpSlot>,
    /// Advertisements the pipelines received, for the main lcore: (port, advertisement).
    adverts: ArrayQueue<(usize, vrrp::Advert)>,
    /// Datagrams of protocol 112 refused (RFC 5798 §7.1), per [`vrrp::Refusal`], then
    /// advertisements lost to a full `adverts` queue.
    /// Advertisements refused, by [`vrrp::Refusal`], then those the queue had no room for,
    /// then those for a VRID no router of the port has.
    vrrp_refused: [AtomicU64; vrrp::Refusal::ALL.len() + 2],
}

/// A VRRP virtual router as the pipelines see it.
struct VrrpSlot {
    port: usize,
    vrid: u8,
    vips: Vec<IpAddr>,
    /// Its virtual router MAC, if it uses one (`vmac: true`).
    vmac: Option<[u8; 6]>,
    /// This gateway holds the addresses: it answers ARP for them and takes their IKE.
    master: AtomicBool,
}

impl Shared {
    /// Whether `ip` is a virtual address port `k` holds now.
    fn vip_held(&self, k: usize, ip: IpAddr) -> bool {
        self.vrrp
            .iter()
            .any(|v| v.port == k && v.master.load(Ordering::Relaxed) && v.vips.contains(&ip))
    }

    /// The MAC that speaks for `ip` on port `k`: the virtual router MAC if `ip` is a virtual
    /// address held now by a router that uses one, else `own`.
    fn mac_for(&self, k: usize, ip: IpAddr, own: [u8; 6]) -> [u8; 6] {
        self.vrrp
            .iter()
            .find(|v| v.port == k && v.master.load(Ordering::Relaxed) && v.vips.contains(&ip))
            .and_then(|v| v.vmac)
            .unwrap_or(own)
    }

    /// Whether `mac` is the virtual MAC of a router of port `k` that is master now (a backup
    /// does not take frames sent to it, RFC 5798 §6.4.2).
    fn vmac_held(&self, k: usize, mac: &[u8]) -> bool {
        self.vrrp.iter().any(|v| {
            v.port == k && v.vmac.is_some_and(|m| m == mac) && v.master.load(Ordering::Relaxed)
        })
    }

    /// Whether `ip` is a virtual address of any port that this gateway does not hold now (it
    /// is the backup): IKE to or from it is not ours to handle.
    fn vip_not_held(&self, ip: IpAddr) -> bool {
        self.vrrp
            .iter()
            .any(|v| !v.master.load(Ordering::Relaxed) && v.vips.contains(&ip))
    }
}

/// An IPv6 router's settings with its primary address filled in: the link-local address the
/// configuration gave, or else the one derived from the port's MAC.
fn with_primary(mut c: vrrp::Config, iface: &Iface) -> vrrp::Config {
    if c.primary == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        c.primary = vrrp::link_local_of(iface.mac).into();
    }
    c
}

/// `02:00:00:00:00:01`.
fn fmt_mac(m: [u8; 6]) -> String {
    format!("{:?}", dataplane::gateway_config::Mac(m))
}

/// The destination of an IP packet, if its header is there.
fn ip_dst(ip: &[u8]) -> Option<IpAddr> {
    match ip.first()? >> 4 {
        4 => {
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(d))
        }
        6 => {
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(d))
        }
        _ => None,
    }
}

/// Slots of each worker's per-port ring for the packets of the SAs it owns.
const HAND_RING: u32 = 2048;

/// How often a pipeline copies its counters to its stats slot.
const STATS_EVERY: Duration = Duration::from_millis(50);

/// One pipeline's counters, as last copied to its stats slot.
#[derive(Default)]
struct PipeStats {
    lcore: u32,
    rx_frames: Vec<u64>,
    tx_frames: Vec<u64>,
    drops: DropCounters,
    answered: u64,
    not_ip: u64,
    /// Packets handed to the workers that own their SAs, and taken from this one's rings.
    handed: (u64, u64),
    icmp: icmp_err::Counters,
    reasm: dataplane::reasm::ReasmStats,
    neigh: (dataplane::neigh::NeighStats, usize),
    /// Per-policy counters and the tables they count for.
    hits_out: PolicyHits,
    hits_in: PolicyHits,
    flow_cache: FlowCacheStats,
    tables: Option<Arc<Tables>>,
}

/// One lcore's packet pipeline: its queues, its neighbour table, its counters, its view of
/// the tables. Workers each run one; without workers the main lcore runs the only one. In
/// worker mode the main lcore keeps one too, without receive queues, to send what the
/// control plane injects and the neighbour requests those need.
struct Pipeline {
    /// Index into [`Shared::learn`] and [`Shared::stats`].
    id: usize,
    lcore: u32,
    q: Queues,
    fib: Fib,
    manners: Manners,
    /// Outer packets fragmented, and their fragments ([`Tx::fragment_outer`]).
    outer_frag: (u64, u64),
    reasm: dataplane::reasm::Reassembler,
    drops: DropCounters,
    answered: u64,
    not_ip: u64,
    hits_out: PolicyHits,
    hits_in: PolicyHits,
    /// SPD-out answers for the flows this pipeline has seen.
    flow_cache: FlowCache,
    /// This pipeline's number among the workers that share the outbound SAs (`None` with
    /// one worker, and on the main lcore in worker mode): SAs another owns are handed off.
    me: Option<u16>,
    tables: Arc<Tables>,
    rxb: Burst,
    verdicts: [Verdict; BURST],
    local: [Local; BURST],
    /// Each packet of the burst came in a link-layer broadcast or multicast frame: no ICMP
    /// error about it (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e.4)).
    l2_group: [bool; BURST],
    punt: Burst,
    pool: Arc<Mempool>,
    jumbo: Arc<Mempool>,
    last_stats: Instant,
}

fn run(args: &Args) -> Result<serde_json::Value, String> {
    let cfg = GatewayConfig::load(&args.config).map_err(|e| e.to_string())?;
    let mut eal_args = vec!["ferrogate".to_owned()];
    // `--eal "--lcores ..."` maps lcores onto CPUs itself (several lcores on one CPU, say);
    // otherwise lcore N runs on CPU N.
    if !args.eal.iter().any(|a| a.starts_with("--lcores")) {
        let mut lcores = vec![cfg.cores.main];
        lcores.extend(&cfg.cores.workers);
        eal_args.push("-l".into());
        eal_args.push(
            lcores
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    eal_args.push("--main-lcore".into());
    eal_args.push(cfg.cores.main.to_string());
    let all_vdevs = cfg.interfaces.iter().all(|i| i.device.starts_with("net_"));
    if all_vdevs {
        eal_args.push("--no-pci".into());
    }
    for i in &cfg.interfaces {
        if i.device.starts_with("net_") {
            eal_args.push(format!("--vdev={}", i.device));
        } else {
            eal_args.push("-a".into());
            eal_args.push(i.device.clone());
        }
    }
    eal_args.extend(args.eal.iter().cloned());
    let eal_refs: Vec<&str> = eal_args.iter().map(String::as_str).collect();
    // Started before EAL, so that its thread is not pinned to the main lcore's CPU: the
    // kernel's work for its writes must not take time from the main lcore.
    let mut writer =
        Writer::start(args.stats_file.clone()).map_err(|e| format!("stats writer thread: {e}"))?;
    let eal = Eal::init(&eal_refs).map_err(|e| e.to_string())?;
    let workers = cfg.cores.workers.clone();
    let have = eal.worker_lcores();
    if let Some(w) = workers.iter().find(|w| !have.contains(w)) {
        return Err(format!(
            "cores: worker lcore {w} is not one EAL started (it has {have:?}; see --lcores)"
        ));
    }
    // One receive and one transmit queue per worker on every port (RSS spreads the traffic);
    // the main lcore hands what it sends to worker 0. Without workers the main lcore polls.
    let nq = workers.len().max(1);
    let nports = cfg.interfaces.len();
    // Every descriptor of every queue may hold an mbuf, plus each lcore's bursts and the
    // hand-off rings (with several workers, each has a ring per port for the SAs it owns, and
    // a burst waiting for each other's).
    let owners = if nq > 1 { nq } else { 0 };
    let mbufs = (nports * nq * 2 * 1024
        + (nq + 1) * (nports + 2) * BURST
        + nports * 256
        + owners * nports * (HAND_RING as usize + owners * BURST)
        + 2048)
        .next_power_of_two()
        - 1;
    let pool = Arc::new(
        Mempool::new_pktmbuf(&eal, "ferrogate", mbufs as u32, 256, 2048 + 128)
            .map_err(|e| format!("mempool of {mbufs} mbufs: {e}"))?,
    );

    let mut ifaces = Vec::new();
    let mut rxqs: Vec<Vec<RxQueue>> = Vec::new();
    let mut txqs: Vec<Vec<TxQueue>> = Vec::new();
    for i in &cfg.interfaces {
        let dev = i.device.split(',').next().unwrap_or(&i.device);
        let port = Port::by_name(&eal, dev).map_err(|e| format!("interface {}: {e}", i.name))?;
        let (rx, tx) = port.start(nq as u16, nq as u16, 1024, &pool).map_err(|e| {
            let hint = if nq > 1 && dev.starts_with("net_af_packet") {
                format!(" ({nq} workers need qpairs={nq} in its device string)")
            } else {
                String::new()
            };
            format!("interface {}: {e}{hint}", i.name)
        })?;
        tracing::info!(interface = %i.name, device = %i.device, port = port.id(), role = ?i.role,
            queues = nq, mtu = i.mtu, "port started");
        rxqs.push(rx);
        txqs.push(tx);
        let hw_mac = port.mac().map_err(|e| e.to_string())?;
        let mac = i.mac.map_or(hw_mac, |m| m.0);
        // MACs this port answers to besides the device's: a `mac:` override, and the virtual
        // MAC of each of its VRRP routers that has one.
        let k = ifaces.len();
        let mut extra: Vec<[u8; 6]> = cfg
            .vrrp
            .iter()
            .filter(|v| v.interface == k && v.vmac)
            .map(|v| vrrp::virtual_mac(v.config.vrid, v.config.primary.is_ipv6()))
            .collect();
        if mac != hw_mac {
            extra.push(mac);
        }
        if cfg.vrrp.iter().any(|v| v.interface == k) || i.addresses.iter().any(|a| a.addr.is_ipv6())
        {
            // VRRP advertisements (01:00:5e:00:00:12, 33:33:00:00:00:12) and neighbor
            // solicitations for our IPv6 addresses (to their solicited-node groups).
            if let Err(e) = port.receive_multicast() {
                tracing::warn!(interface = %i.name, error = %e,
                    "cannot ask the device for multicast frames; VRRP hears only what it passes anyway");
            }
        }
        for m in extra {
            // A driver with neither (a pcap file) is no reason not to start: what arrives
            // is taken as before; the log says it.
            match port.receive_mac(m) {
                Ok(how) => {
                    tracing::info!(interface = %i.name, mac = %fmt_mac(m), how = ?how, "receives frames to")
                }
                Err(e) => {
                    tracing::warn!(interface = %i.name, mac = %fmt_mac(m), error = %e,
                        "cannot ask the device for frames to this MAC; only those it passes anyway arrive")
                }
            }
        }
        ifaces.push(Iface {
            name: i.name.clone(),
            role: i.role,
            port,
            mac,
            hw_mac,
            addrs: dataplane::host::v4_addrs(i.addresses.iter().map(|a| a.addr)),
            addr6: i.addresses.iter().find_map(|a| match a.addr {
                IpAddr::V6(v) => Some(v),
                IpAddr::V4(_) => None,
            }),
            addrs6: {
                let mut v6: Vec<Ipv6Addr> = i
                    .addresses
                    .iter()
                    .filter_map(|a| match a.addr {
                        IpAddr::V6(v) => Some(v),
                        IpAddr::V4(_) => None,
                    })
                    .collect();
                // Router advertisements come from a link-local address, which the hosts
                // then solicit: the one derived from the MAC unless one is configured.
                if i.router_advertisements.is_some()
                    && !v6.iter().any(|a| a.is_unicast_link_local())
                {
                    v6.push(vrrp::link_local_of(mac));
                }
                v6
            },
            mtu: i.mtu,
            carrier: i.kernel_iface().map(|n| {
                std::path::Path::new("/sys/class/net")
                    .join(n)
                    .join("carrier")
            }),
            link_up: AtomicBool::new(true),
            link_changes: AtomicU64::new(0),
            carrier_missing: AtomicBool::new(false),
            ra: i.router_advertisements.is_some(),
            solicits: AtomicU64::new(0),
            ra_sent: AtomicU64::new(0),
        });
    }

    // Routing: configured routes and connected networks, longest prefix first.
    let index = |name: &str| cfg.interfaces.iter().position(|i| i.name == name);
    let mut routes: Vec<(IpPrefix, usize, Option<IpAddr>)> = Vec::new();
    for r in &cfg.routes {
        if let Some(k) = index(&r.interface) {
            routes.push((r.dst, k, r.via));
        }
    }
    for (k, i) in cfg.interfaces.iter().enumerate() {
        for a in &i.addresses {
            routes.push((a.network(), k, None));
        }
    }
    routes.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.len()));
    let routes: Arc<[(IpPrefix, usize, Option<IpAddr>)]> = routes.into();
    let new_fib = || {
        let mut neigh = NeighTable::new(4096);
        for n in &cfg.neighbours {
            neigh.add_static(n.ip, n.mac.0);
        }
        Fib {
            routes: Arc::clone(&routes),
            neigh,
            asks: Vec::with_capacity(MAX_ASKS),
            now_ms: 0,
        }
    };

    // SAs and policies.
    let mut out_sas: Vec<Option<Arc<OutboundSa>>> = Vec::new();
    let mut sad = Sad::new();
    let mut natt_ports: Vec<u16> = Vec::new();
    for p in &cfg.sas {
        match p.direction {
            Direction::Out => {
                if p.cipher.is_aead() {
                    // These ciphers take the sequence number as their nonce, and a static key
                    // outlives the counter (RFC 4106 and RFC 4543 forbid manual keys for them).
                    // Kept for tests and for peers that only do static keys (ipsec-secgw).
                    tracing::warn!(sa = %p.name, cipher = ?p.cipher, initial_seq = p.initial_seq,
                        "static key with a counter-nonce cipher: every restart numbers from \
                         initial_seq again, reusing nonces under the same key, unless \
                         initial_seq is raised past what was sent; use IKE (ferrogate-ike) \
                         for these ciphers outside tests");
                }
                let sa = OutboundSa::new(p).map_err(|e| e.to_string())?;
                set_egress_mtu(&sa, p, &routes, &cfg);
                out_sas.push(Some(Arc::new(sa)));
            }
            Direction::In => {
                out_sas.push(None);
                if let Some(u) = p.udp_encap {
                    natt_ports.push(u.local_port);
                }
                sad.insert(
                    p.spi,
                    p.tunnel.map(|t| t.local),
                    Arc::new(InboundSa::new(p).map_err(|e| e.to_string())?),
                );
            }
        }
    }
    let static_out: Vec<Rule<OutboundTarget>> = cfg
        .spd_out
        .iter()
        .enumerate()
        .map(|(k, r)| Rule {
            priority: r.priority,
            selector: r.selector,
            action: match r.action {
                Action::Protect(sa) => Action::Protect(OutboundTarget {
                    policy_id: k as u32,
                    sa: out_sas[sa].clone(),
                    per_worker: Vec::new(),
                }),
                Action::Bypass => Action::Bypass,
                Action::Discard => Action::Discard,
            },
        })
        .collect();
    let static_in = cfg.spd_in.clone();
    // The control-plane channel: IKE on UDP 500 and 4500 goes to ferrogate-ike, and the
    // CHILD_SAs it negotiates are added to the tables, published to the pipelines.
    let mut control = match &args.control {
        Some(path) => {
            if !natt_ports.contains(&4500) {
                natt_ports.push(4500);
            }
            Some(Control::create(path, nq as u16)?)
        }
        None => None,
    };
    let punts = match control {
        Some(_) => Some(
            MbufRing::new(&eal, "ferrogate-punt", 1024, workers.len() <= 1, true)
                .map_err(|e| format!("punt ring: {e}"))?,
        ),
        None => None,
    };
    let mut dynamic = Dynamic {
        workers: nq as u16,
        ..Default::default()
    };
    let (spd_out, spd_in) = dynamic.build(&static_out, &static_in)?;

    // MSS for SYNs entering a tunnel: the smallest outside MTU less the worst ESP tunnel
    // overhead (outer IPv6 40 + UDP 8 + ESP 8 + IV 16 + padding 17 + ICV 32 = 121, taken as
    // 120) and the inner IPv4/TCP headers (40).
    let mss = match cfg.mss_clamp {
        MssClamp::Off => None,
        MssClamp::Fixed(n) => Some(n),
        MssClamp::Auto => cfg
            .interfaces
            .iter()
            .filter(|i| i.role == Role::Outside)
            .map(|i| i.mtu.saturating_sub(160))
            .min(),
    };
    // Encapsulated packets leave by an outside port: the smallest outside MTU bounds them.
    let out_mtu = cfg
        .interfaces
        .iter()
        .filter(|i| i.role == Role::Outside)
        .map(|i| i.mtu)
        .min()
        .unwrap_or(1500);
    // Outer fragments of ESP (a path MTU below the peer's packets) are reassembled into mbufs
    // of a pool with 9 KiB data rooms; bigger datagrams are dropped as `reassembly`.
    let jumbo = Arc::new(
        Mempool::new_pktmbuf(&eal, "ferrogate-reasm", 255, 0, REASM_ROOM + 128)
            .map_err(|e| format!("reassembly mempool: {e}"))?,
    );
    let tables = Arc::new(Tables {
        generation: 0,
        carry_out: Vec::new(),
        carry_in: Vec::new(),
        spd_out,
        spd_in,
        sad: sad.clone(),
    });
    let started = Instant::now();
    let npipes = nq + usize::from(!workers.is_empty());
    let mut locals: Vec<IpAddr> = ifaces
        .iter()
        .flat_map(|i| {
            let v4 = i.addrs.iter().map(|&a| IpAddr::V4(a));
            v4.chain(i.addrs6.iter().map(|&a| IpAddr::V6(a)))
        })
        .chain(cfg.vrrp.iter().flat_map(|v| v.config.vips.iter().copied()))
        .collect();
    locals.sort();
    locals.dedup();
    let sh = Arc::new(Shared {
        ifaces,
        natt_ports,
        locals,
        mss,
        out_mtu,
        min_mtu: cfg.interfaces.iter().map(|i| i.mtu).min().unwrap_or(1500),
        tables: ArcSwap::new(Arc::clone(&tables)),
        stop: AtomicBool::new(false),
        punts,
        acquires: ArrayQueue::new(256),
        pmtu: ArrayQueue::new(64),
        // RFC 7739: identifications another host cannot predict; they count up from there.
        frag_ident: AtomicU32::new({
            let mut seed = [0u8; 4];
            let _ = getrandom::getrandom(&mut seed);
            u32::from_ne_bytes(seed)
        }),
        frag_key: std::collections::hash_map::RandomState::new(),
        learn: (0..npipes).map(|_| ArrayQueue::new(256)).collect(),
        stats: (0..nq).map(|_| Mutex::new(PipeStats::default())).collect(),
        seen: (0..nq)
            .map(|_| CachePadded::new(AtomicU64::new(0)))
            .collect(),
        alive: (0..workers.len()).map(|_| AtomicBool::new(true)).collect(),
        last_rx_ms: CachePadded::new(AtomicU64::new(0)),
        started,
        idle_sleep: args.idle_sleep,
        vrrp: cfg
            .vrrp
            .iter()
            .map(|v| VrrpSlot {
                port: v.interface,
                vrid: v.config.vrid,
                vips: v.config.vips.clone(),
                vmac: v
                    .vmac
                    .then(|| vrrp::virtual_mac(v.config.vrid, v.config.primary.is_ipv6())),
                master: AtomicBool::new(false),
            })
            .collect(),
        adverts: ArrayQueue::new(256),
        vrrp_refused: Default::default(),
    });
    // Pipeline `w` polls receive queue `w` of every port and sends on transmit queue `w`;
    // the main lcore's (last) has no queues: it hands its frames to worker 0.
    let handoff: Vec<Arc<MbufRing>> = if workers.is_empty() {
        Vec::new()
    } else {
        (0..nports)
            .map(|k| {
                MbufRing::new(&eal, &format!("ferrogate-tx{k}"), 256, true, true)
                    .map(Arc::new)
                    .map_err(|e| format!("hand-off ring: {e}"))
            })
            .collect::<Result<_, _>>()?
    };
    // With several workers: each one's rings for the packets of the SAs it owns, one per
    // port, filled by the others (several producers with three workers or more).
    let inboxes: Vec<Vec<Arc<MbufRing>>> = (0..owners)
        .map(|w| {
            (0..nports)
                .map(|k| {
                    MbufRing::new(
                        &eal,
                        &format!("ferrogate-sa{w}-{k}"),
                        HAND_RING,
                        owners <= 2,
                        true,
                    )
                    .map(Arc::new)
                    .map_err(|e| format!("SA owner ring: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    let mut rx_of: Vec<std::vec::IntoIter<RxQueue>> =
        rxqs.into_iter().map(Vec::into_iter).collect();
    let mut tx_of: Vec<std::vec::IntoIter<TxQueue>> =
        txqs.into_iter().map(Vec::into_iter).collect();
    // The ICMP error budget is shared out among the pipelines (0 stays 0).
    let icmp_rate = match args.icmp_rate {
        0 => 0,
        r => (r / nq as u32).max(1),
    };
    let mut make = |id: usize, lcore: u32, polls: bool| Pipeline {
        id,
        lcore,
        q: Queues {
            rx: rx_of
                .iter_mut()
                .map(|q| if polls { q.next() } else { None })
                .collect(),
            tx: if id < nq {
                tx_of
                    .iter_mut()
                    .filter_map(Iterator::next)
                    .map(TxOut::Queue)
                    .collect()
            } else {
                handoff.iter().cloned().map(TxOut::Handoff).collect()
            },
            handoff_in: if id == 0 { handoff.clone() } else { Vec::new() },
            ctl: (0..if id == 0 { handoff.len() } else { 0 })
                .map(|_| Burst::new())
                .collect(),
            txb: (0..nports).map(|_| Burst::new()).collect(),
            rx_frames: vec![0; nports],
            tx_frames: vec![0; nports],
            hand: if id < owners {
                inboxes
                    .iter()
                    .map(|rings| {
                        rings
                            .iter()
                            .map(|r| (Arc::clone(r), Burst::new()))
                            .collect()
                    })
                    .collect()
            } else {
                Vec::new()
            },
            inbox: inboxes.get(id).cloned().unwrap_or_default(),
            handed_off: 0,
            handed_in: 0,
        },
        fib: new_fib(),
        manners: Manners::new(icmp_rate),
        outer_frag: (0, 0),
        reasm: dataplane::reasm::Reassembler::new(16, 30_000),
        drops: DropCounters::default(),
        answered: 0,
        not_ip: 0,
        hits_out: PolicyHits::new(tables.spd_out.len()),
        hits_in: PolicyHits::new(tables.spd_in.len()),
        flow_cache: FlowCache::new(FlowCache::DEFAULT_SETS),
        me: (id < owners).then_some(id as u16),
        tables: Arc::clone(&tables),
        rxb: Burst::new(),
        verdicts: [Verdict::Pending; BURST],
        local: [Local::No; BURST],
        l2_group: [false; BURST],
        punt: Burst::new(),
        pool: Arc::clone(&pool),
        jumbo: Arc::clone(&jumbo),
        last_stats: Instant::now(),
    };
    // Dropped before `eal` (declared after it), also when this thread unwinds: the workers
    // stop before EAL is cleaned up.
    let mut launched = Launched {
        sh: Arc::clone(&sh),
        lcores: Vec::new(),
    };
    for (w, &lcore) in workers.iter().enumerate() {
        let p = make(w, lcore, true);
        let shw = Arc::clone(&sh);
        let job = move || {
            let _alive = Alive(&shw.alive[w]);
            p.run_worker(&shw)
        };
        match eal.launch(lcore, job) {
            Ok(l) => {
                tracing::info!(lcore, worker = w, "worker pipeline started");
                launched.lcores.push(l);
            }
            Err(e) => return Err(format!("worker lcore {lcore}: {e}")),
        }
    }
    // The main lcore's own pipeline: the only one without workers.
    let mut main = make(npipes - 1, eal.lcore_id(), workers.is_empty());
    let inline = workers.is_empty();
    drop(tables);
    // Every version of the tables published, until no pipeline holds it (freed here, not on
    // a worker).
    let mut retired: Vec<Arc<Tables>> = Vec::new();
    let mut punt_buf = vec![0u8; dataplane::ctl::SLOT_SIZE as usize];
    let mut generation = 0u64;
    let mut failure = None;
    let mut punted = Burst::new();
    let mut last_report = Instant::now();
    let mut last_file = Instant::now() - Duration::from_secs(2);
    let mut last_stats = Instant::now();
    // Every counter as JSON, for --stats-file and the exit summary.
    let snap =
        |main: &mut Pipeline, dynamic: &Dynamic, control: Option<&Control>, vrrp: &[VrrpRun]| {
            if inline {
                main.publish_stats(&sh, true);
            }
            snapshot(&Snap {
                sh: &sh,
                main,
                out_sas: &out_sas,
                dynamic,
                control,
                vrrp,
            })
        };
    // VRRP: the virtual routers start as backups, and SIGTERM / SIGINT stop the gateway
    // through the end of this loop, so that a master says so (priority 0) and its backup
    // takes over at once.
    let mut routers: Vec<VrrpRun> = cfg
        .vrrp
        .iter()
        .map(|v| VrrpRun {
            router: vrrp::Router::new(with_primary(v.config.clone(), &sh.ifaces[v.interface])),
            port: v.interface,
            group: v.group.clone(),
            track: v.track.clone(),
            track_ike: v.track_ike,
            garp_again: None,
            reannounced_ms: None,
            since_ms: 0,
        })
        .collect();
    // Whether the control plane is lost (logged on a change).
    let mut ike_lost = false;
    // Router advertisements: the main lcore sends them (from the VRRP master only, where
    // a router speaks for the link) and, on SIGTERM, a final one (RFC 4861 §6.2.5).
    let mut adverts: Vec<RaRun> = cfg
        .ra
        .iter()
        .map(|l| RaRun {
            link: l.clone(),
            schedule: ra::Schedule::new({
                // Gateways on one link should not advertise in step (RFC 4861 §6.2.4).
                let mut seed = [0u8; 8];
                let _ = getrandom::getrandom(&mut seed);
                u64::from_ne_bytes(seed) ^ (l.interface as u64) << 32
            }),
            solicits: 0,
        })
        .collect();
    let term = Arc::new(AtomicBool::new(false));
    if !routers.is_empty() || !adverts.is_empty() {
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&term))
                .map_err(|e| format!("signal handler: {e}"))?;
        }
    }
    if !routers.is_empty() {
        for (i, r) in routers.iter_mut().enumerate() {
            let step = r.router.start(0);
            r.apply(&sh, i, step, 0, &mut main);
        }
    }
    // The control plane hears of every change of the VRRP states (and every second).
    let mut vrrp_told: Option<Vec<(bool, u8)>> = None;
    // Links are read every 50 ms with VRRP (a fault moves the addresses), else every 500.
    let link_every_ms = if routers.is_empty() { 500 } else { 50 };
    let mut next_link_ms = 0;
    let mut link_holds: Vec<vrrp::LinkHold> = cfg
        .interfaces
        .iter()
        .map(|i| {
            let (down, up) = i.link_delay.ms().unwrap_or((0, 0));
            vrrp::LinkHold::new(down, up)
        })
        .collect();
    let mut pmtu = PmtuLearnt::default();
    loop {
        main.fib.now_ms = started.elapsed().as_millis() as u64;
        while let Some(report) = sh.pmtu.pop() {
            let sas = outbound_sas(&dynamic, &cfg, &out_sas);
            pmtu.heard(report, main.fib.now_ms, sas, sh.out_mtu);
        }
        if pmtu.expire(main.fib.now_ms) {
            for (o, p) in outbound_sas(&dynamic, &cfg, &out_sas) {
                set_egress_mtu(o, p, &routes, &cfg);
            }
            pmtu.apply(outbound_sas(&dynamic, &cfg, &out_sas));
        }
        if main.fib.now_ms >= next_link_ms {
            let now = main.fib.now_ms;
            next_link_ms = now + link_every_ms;
            for (i, hold) in sh.ifaces.iter().zip(link_holds.iter_mut()) {
                let raw = i.read_link();
                let seen = hold.changes();
                let up = hold.update(raw, now);
                if hold.changes() != seen {
                    i.link_changes.store(hold.changes(), Ordering::Relaxed);
                    if raw != up {
                        tracing::info!(interface = %i.name, up = raw, "link (held: link_delay)");
                    }
                }
                if i.link_up.swap(up, Ordering::Relaxed) != up {
                    tracing::info!(interface = %i.name, up, "link");
                }
            }
            // Link tracking: a router with a tracked link down is in fault, and so is every
            // member of its sync group; all come back (as backups) once the links are up.
            for i in 0..routers.len() {
                let fault = VrrpRun::group_link_down(&routers, i, &sh);
                let step = routers[i].router.set_fault(fault, now);
                routers[i].apply(&sh, i, step, now, &mut main);
                if step.became == Some(vrrp::State::Master) {
                    // An address owner (priority 255) back from fault.
                    VrrpRun::group_follows(&mut routers, i, &sh, now, &mut main);
                }
            }
        }
        if !routers.is_empty() {
            let now = main.fib.now_ms;
            while let Some((k, a)) = sh.adverts.pop() {
                for i in 0..routers.len() {
                    if routers[i].port == k {
                        let before = routers[i].router.counters().addr_list_mismatch;
                        let step = routers[i].router.receive(&a, now);
                        let after = routers[i].router.counters().addr_list_mismatch;
                        // RFC 5798 §7.1: logged (the first, then every 100th).
                        if after != before && after % 100 == 1 {
                            tracing::warn!(vrid = a.vrid, from = %a.src, priority = a.priority, count = after,
                                "VRRP advertisement with other virtual addresses than ours: another cluster on the link with this VRID, or the gateways' vips differ{}",
                                if a.priority == 255 { " (followed: its sender owns them)" } else { "; not followed" });
                        }
                        routers[i].apply(&sh, i, step, now, &mut main);
                        if step.became == Some(vrrp::State::Backup) {
                            VrrpRun::group_follows(&mut routers, i, &sh, now, &mut main);
                        }
                    }
                }
            }
            for i in 0..routers.len() {
                let hold = VrrpRun::group_hears_master(&routers, i, now);
                let step = routers[i].router.tick_held(now, hold);
                routers[i].apply(&sh, i, step, now, &mut main);
                if step.became == Some(vrrp::State::Master) {
                    VrrpRun::group_follows(&mut routers, i, &sh, now, &mut main);
                }
            }
            for (i, r) in routers.iter_mut().enumerate() {
                if r.garp_again.is_some_and(|t| now >= t) {
                    r.garp_again = None;
                    r.announce(&sh, i, &mut main);
                }
            }
        }
        // SIGTERM / SIGINT (caught with VRRP or router advertisements): out through the end
        // of `run`, where masters and advertised links say their last word.
        if term.load(Ordering::Relaxed) {
            break;
        }
        let now = main.fib.now_ms;
        for r in &mut adverts {
            r.run(&sh, now, &mut main);
        }
        if !inline {
            // Neighbours the workers learned, for what the main lcore sends (its poll takes
            // them in when it is the only pipeline).
            main.take_learned(&sh);
        }
        if let Some(c) = &mut control {
            let changed = c.poll_commands(&mut dynamic, &mut sad);
            // The other gateway's masters through the SA-state sync: advertisements by a
            // second path, for when the wire loses them (split brain).
            let now = main.fib.now_ms;
            for m in std::mem::take(&mut c.sync_adverts) {
                for i in 0..routers.len() {
                    if routers[i].router.config().vrid != m.vrid
                        || sh.ifaces[routers[i].port].name != m.interface
                    {
                        continue;
                    }
                    let step = routers[i].router.receive_sync(
                        m.priority,
                        m.primary,
                        m.interval_cs,
                        m.hears,
                        now,
                    );
                    if step.became == Some(vrrp::State::Backup) {
                        tracing::warn!(
                            interface = %m.interface,
                            vrid = m.vrid,
                            their_priority = m.priority,
                            ours = routers[i].router.priority(),
                            master = %m.primary,
                            "split brain: the other gateway is VRRP master too (its advertisements do not reach us, the SA-state sync does) and outranks us: going backup"
                        );
                    }
                    routers[i].apply(&sh, i, step, now, &mut main);
                    if step.became == Some(vrrp::State::Backup) {
                        VrrpRun::group_follows(&mut routers, i, &sh, now, &mut main);
                    }
                    // We outrank the other gateway, which claims the addresses too (and
                    // announced them when it took them): announce them again, every 2 s at
                    // most, so that the neighbours come back to us once it yields (it says
                    // nothing then).
                    let r = &mut routers[i];
                    if step.became.is_none()
                        && r.router.state() == vrrp::State::Master
                        && !m.hears
                        && !r.router.hears_wire(now)
                        && r.reannounced_ms.is_none_or(|t| now >= t + 2000)
                    {
                        r.reannounced_ms = Some(now);
                        r.announce(&sh, i, &mut main);
                    }
                }
            }
            // The control plane, judged after its commands are in (a main lcore that fell
            // behind must not take it for lost): lost once it said it was alive and then went
            // silent. The routers that track it compete with priority 1 meanwhile.
            if c.lost() != ike_lost {
                ike_lost = !ike_lost;
                if ike_lost {
                    tracing::warn!("control plane (ferrogate-ike) silent for {:?}: the VRRP routers that track it lower their priority to 1", ctl::ALIVE_LOST);
                } else {
                    tracing::info!("control plane (ferrogate-ike) back: the VRRP routers that track it have their priority again");
                }
                let now = main.fib.now_ms;
                for (i, r) in routers.iter_mut().enumerate() {
                    if r.track_ike {
                        let step = r.router.set_lowered(ike_lost);
                        r.apply(&sh, i, step, now, &mut main);
                    }
                }
            }
            if changed {
                for d in dynamic.sas.values() {
                    if let (Some(o), Some(p)) = (&d.out, &d.params) {
                        set_egress_mtu(o, p, &routes, &cfg);
                    }
                }
                pmtu.apply(outbound_sas(&dynamic, &cfg, &out_sas));
                match dynamic.build(&static_out, &static_in) {
                    Ok((spd_out, spd_in)) => {
                        let old = sh.tables.load_full();
                        generation += 1;
                        let t = Arc::new(Tables {
                            generation,
                            carry_out: dataplane::spd::carry_map(&old.spd_out, &spd_out),
                            carry_in: dataplane::spd::carry_map(&old.spd_in, &spd_in),
                            spd_out,
                            spd_in,
                            sad: sad.clone(),
                        });
                        tracing::debug!(
                            generation,
                            rules_out = t.spd_out.len(),
                            rules_in = t.spd_in.len(),
                            sas_in = t.sad.len(),
                            "tables published"
                        );
                        retired.push(sh.tables.swap(t));
                        if inline {
                            main.refresh_tables(&sh);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "tables not rebuilt"),
                }
            }
            retired.retain(|t| Arc::strong_count(t) > 1);
            // IKE datagrams the pipelines received, to ferrogate-ike.
            if let Some(r) = &sh.punts {
                while r.dequeue(&mut punted) > 0 {
                    for m in punted.pkts().drain(..) {
                        c.punt(m.data(), &mut punt_buf, &mut main.drops);
                    }
                }
            }
            // On-demand policies that caught a packet.
            while let Some((policy, src, dst)) = sh.acquires.pop() {
                if let Some((t, ch)) = dynamic.trap_of(policy) {
                    c.acquire(t, ch, src, dst);
                }
            }
            // IKE datagrams from ferrogate-ike onto the wire, once every pipeline classifies
            // with the tables published so far (they wait in the ring until then).
            let caught_up = sh
                .seen
                .iter()
                .all(|s| s.load(Ordering::Acquire) >= generation);
            while let Some(Some((m, out))) = caught_up
                .then(|| {
                    c.next_inject(
                        &main.pool,
                        &mut main.fib,
                        &sh.ifaces,
                        &mut main.drops,
                        |ip| sh.vip_not_held(ip),
                    )
                })
                .flatten()
            {
                push_tx(&mut main.q, out, m, &mut main.drops);
            }
            // Every 100 ms, or at once when an SA crossed a lifetime limit (the rekey must
            // finish before the hard limit). The counters go to the control plane every second.
            let periodic = last_report.elapsed() >= Duration::from_millis(100);
            if dataplane::sa::take_event_hint() || periodic {
                // Lifetimes: soft and hard expiry of negotiated SAs go to the control plane.
                for (spi_in, d) in &dynamic.sas {
                    let outs = d.out.as_ref().map(|o| o.counters().poll_event());
                    for e in [d.inb.counters().poll_event(), outs.flatten()]
                        .into_iter()
                        .flatten()
                    {
                        let hard = match e {
                            dataplane::sa::SaEvent::SoftExpired => false,
                            dataplane::sa::SaEvent::HardExpired
                            | dataplane::sa::SaEvent::SeqExhausted => true,
                        };
                        c.event(&ctl::Event::Expired {
                            v: ctl::VERSION,
                            spi_in: *spi_in,
                            hard,
                        });
                    }
                }
                if periodic {
                    last_report = Instant::now();
                    c.reports += 1;
                    // A master says so every 100 ms: ferrogate-ike puts it into its sync
                    // snapshots only while fresh (a data plane that died must not go on
                    // holding the other gateway back through them).
                    if sh.vrrp.iter().any(|v| v.master.load(Ordering::Relaxed)) {
                        vrrp_told = None;
                    }
                    if c.reports % 10 == 0 {
                        c.report(&dynamic);
                        vrrp_told = None;
                    }
                }
            }
            if std::mem::take(&mut c.dumped) {
                vrrp_told = None;
            }
            // A change of state or of priority (the other gateway hears of our masters' through
            // the sync).
            let masters = || {
                sh.vrrp
                    .iter()
                    .zip(&routers)
                    .map(|(v, r)| (v.master.load(Ordering::Relaxed), r.router.priority()))
            };
            if vrrp_told
                .as_ref()
                .is_none_or(|told| told.iter().copied().ne(masters()))
            {
                let (mut held, mut standby) = (Vec::new(), Vec::new());
                for v in &sh.vrrp {
                    let to = if v.master.load(Ordering::Relaxed) {
                        &mut held
                    } else {
                        &mut standby
                    };
                    to.extend(v.vips.iter().copied());
                }
                standby.retain(|a| !held.contains(a));
                let ours = sh
                    .vrrp
                    .iter()
                    .zip(&routers)
                    .filter(|(v, _)| v.master.load(Ordering::Relaxed))
                    .map(|(_, r)| {
                        let c = r.router.config();
                        ctl::VrrpMaster {
                            interface: sh.ifaces[r.port].name.clone(),
                            vrid: c.vrid,
                            priority: r.router.priority(),
                            primary: c.primary,
                            interval_cs: c.interval_cs,
                            hears: r.router.hears_wire(main.fib.now_ms),
                        }
                    })
                    .collect();
                c.event(&ctl::Event::Vrrp {
                    v: ctl::VERSION,
                    held,
                    standby,
                    masters: ours,
                });
                vrrp_told = Some(masters().collect());
            }
        }
        if let Some(w) = sh.alive.iter().position(|a| !a.load(Ordering::Relaxed)) {
            failure = Some(format!("worker lcore {} stopped (it panicked)", workers[w]));
            break;
        }
        let moved = if inline { main.poll(&sh) } else { 0 };
        main.flush(&sh);
        if moved == 0 {
            if let Some(idle) = args.idle_exit {
                let last = sh.last_rx_ms.load(Ordering::Relaxed);
                if started.elapsed().as_millis() as u64 >= last + idle.as_millis() as u64 {
                    break;
                }
            }
            if !args.idle_sleep.is_zero() {
                std::thread::sleep(args.idle_sleep);
            }
        }
        if args.stats_file.is_some() && last_file.elapsed() >= Duration::from_secs(1) {
            last_file = Instant::now();
            let v = snap(&mut main, &dynamic, control.as_ref(), &routers);
            writer.send_file(v);
        }
        if let Some(every) = args.stats_every {
            if last_stats.elapsed() >= every {
                last_stats = Instant::now();
                let v = snap(&mut main, &dynamic, control.as_ref(), &routers);
                writer.send_line(live_line(&v));
            }
        }
    }
    // A master's last word (priority 0: its backups take over after their skew), sent
    // through worker 0 while it still runs.
    let now = started.elapsed().as_millis() as u64;
    let mut said = false;
    for (i, r) in routers.iter_mut().enumerate() {
        let step = r.router.shutdown();
        said |= step.advertise.is_some();
        r.apply(&sh, i, step, now, &mut main);
    }
    // A link this gateway alone advertises: its hosts drop it as their default router now
    // instead of when the lifetime runs out. (A VRRP master's link-local address moves to
    // the backup, which stays their router.)
    for r in &mut adverts {
        said |= r.last_word(&sh, &mut main);
    }
    if said {
        main.flush(&sh);
        if !inline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(launched);
    // What the writer still has goes out before the last snapshot replaces it.
    writer.finish();
    // Frames the drivers never took are dropped with the bursts here.
    for b in &mut main.q.txb {
        b.pkts().clear();
    }
    let stats = snap(&mut main, &dynamic, control.as_ref(), &routers);
    if let Some(p) = &args.stats_file {
        write_stats(p, &stats);
    }
    // The ports stop once no queue handle is left (the workers' went with their jobs).
    drop(main);
    for i in &sh.ifaces {
        if let Err(e) = i.port.stop() {
            tracing::warn!("{e}");
        }
    }
    // Its file goes with it.
    drop(control.take());
    drop(handoff);
    // The SA owners' rings (the workers' copies went with them): freed, with any mbufs still
    // in them. (The mempools and EAL stay until the process exits.)
    drop(inboxes);
    drop(punted);
    drop(retired);
    drop(sh);
    drop(jumbo);
    drop(pool);
    let _ = eal;
    match failure {
        Some(f) => Err(f),
        None => Ok(stats),
    }
}

/// Tells a tunnel-mode SA the MTU of the port its peer is routed through (several outside
/// ports may differ); the smallest outside MTU stays the default for the others.
fn set_egress_mtu(
    sa: &OutboundSa,
    p: &dataplane::sa::SaParams,
    routes: &[(IpPrefix, usize, Option<IpAddr>)],
    cfg: &GatewayConfig,
) {
    let port = p
        .tunnel
        .and_then(|t| routes.iter().find(|(pfx, _, _)| pfx.contains(t.remote)))
        .map(|(_, k, _)| *k);
    // No route of its own: the default (the smallest outside MTU).
    sa.set_egress_mtu(
        port.and_then(|k| cfg.interfaces.get(k))
            .map_or(0, |i| i.mtu),
    );
}

/// Every outbound SA (static, and those of the control plane) with its parameters.
fn outbound_sas<'a>(
    dynamic: &'a Dynamic,
    cfg: &'a GatewayConfig,
    out_sas: &'a [Option<Arc<OutboundSa>>],
) -> impl Iterator<Item = (&'a OutboundSa, &'a dataplane::sa::SaParams)> + Clone {
    let statics = cfg
        .sas
        .iter()
        .zip(out_sas)
        .filter_map(|(p, o)| Some((o.as_deref()?, p)));
    let dynamics = dynamic
        .sas
        .values()
        .filter_map(|d| Some((d.out.as_deref()?, d.params.as_ref()?)));
    statics.chain(dynamics)
}

/// How long a path MTU learned from ICMP is used (RFC 1191 §6.3: raised again after about ten
/// minutes, since the path may have grown); then the port's MTU is tried again.
const PMTU_KEPT_MS: u64 = 600_000;
/// Peers whose learned path MTU is kept.
const PMTU_PEERS_MAX: usize = 1024;

/// Path MTUs towards peers, learned from Fragmentation Needed / Packet Too Big about our ESP
/// (RFC 4301 §8.2.1). Kept per peer, as Linux keeps a path MTU per destination: every outbound
/// SA to the peer takes it, the ones a rekey makes too, until it is [`PMTU_KEPT_MS`] old. Only
/// a report about an SPI of ours to that peer counts, and only to lower the MTU.
#[derive(Default)]
struct PmtuLearnt {
    /// (peer, MTU, until when, ms).
    peers: Vec<(IpAddr, u16, u64)>,
    /// Reports that lowered a path MTU.
    lowered: u64,
}

impl PmtuLearnt {
    /// A report that our ESP with `spi` towards `peer` needs packets of at most `mtu` bytes.
    fn heard<'a>(
        &mut self,
        (spi, peer, mtu): (u32, IpAddr, u16),
        now: u64,
        sas: impl Iterator<Item = (&'a OutboundSa, &'a dataplane::sa::SaParams)> + Clone,
        default_mtu: u16,
    ) {
        let to_peer = |p: &dataplane::sa::SaParams| p.tunnel.is_some_and(|t| t.remote == peer);
        if !sas.clone().any(|(_, p)| p.spi == spi && to_peer(p)) {
            return;
        }
        let known = self.peers.iter().position(|x| x.0 == peer);
        let current = known.map_or(default_mtu, |i| self.peers[i].1);
        if mtu >= current {
            return;
        }
        match known {
            Some(i) => self.peers[i] = (peer, mtu, now + PMTU_KEPT_MS),
            None if self.peers.len() < PMTU_PEERS_MAX => {
                self.peers.push((peer, mtu, now + PMTU_KEPT_MS))
            }
            None => return,
        }
        self.lowered += 1;
        tracing::info!(%peer, mtu, "path MTU towards the peer lowered (ICMP about our ESP)");
        self.apply(sas);
    }

    /// Gives every outbound SA to a peer with a learned path MTU the smaller of it and its own.
    fn apply<'a>(&self, sas: impl Iterator<Item = (&'a OutboundSa, &'a dataplane::sa::SaParams)>) {
        for (o, p) in sas {
            let Some(peer) = p.tunnel.map(|t| t.remote) else {
                continue;
            };
            if let Some(&(_, mtu, _)) = self.peers.iter().find(|x| x.0 == peer) {
                o.set_egress_mtu(o.egress_mtu().map_or(mtu, |m| m.min(mtu)));
            }
        }
    }

    /// Forgets path MTUs older than [`PMTU_KEPT_MS`]: true if one went (the SAs' MTUs are
    /// then to be set again from their ports).
    fn expire(&mut self, now: u64) -> bool {
        let before = self.peers.len();
        self.peers.retain(|x| now < x.2);
        self.peers.len() != before
    }
}

/// The workers launched: told to stop and waited for when dropped.
struct Launched {
    sh: Arc<Shared>,
    lcores: Vec<dataplane::dpdk::Lcore>,
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.sh.stop.store(true, Ordering::Relaxed);
        for l in self.lcores.drain(..) {
            l.wait();
        }
    }
}

/// Clears a worker's `alive` flag when its job ends, by return or by panic.
struct Alive<'a>(&'a AtomicBool);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

impl Pipeline {
    /// Picks up a newer version of the tables, carrying this pipeline's per-policy counts.
    fn refresh_tables(&mut self, sh: &Shared) {
        if Arc::ptr_eq(&self.tables, &sh.tables.load()) {
            return;
        }
        let new = sh.tables.load_full();
        if new.generation == self.tables.generation + 1 {
            self.hits_out = self.hits_out.remapped(&new.carry_out);
            self.hits_in = self.hits_in.remapped(&new.carry_in);
        } else {
            // Versions skipped: matched against the one this pipeline had (rare).
            self.hits_out = self.hits_out.carried(&self.tables.spd_out, &new.spd_out);
            self.hits_in = self.hits_in.carried(&self.tables.spd_in, &new.spd_in);
        }
        // The old version is freed by the main lcore (it keeps every version it published
        // until no pipeline holds it).
        self.tables = new;
        if let Some(s) = sh.seen.get(self.id) {
            s.store(self.tables.generation, Ordering::Release);
        }
    }

    /// Takes in what the other lcores learned about neighbours.
    fn take_learned(&mut self, sh: &Shared) {
        while let Some((ip, mac, heard)) = sh.learn[self.id].pop() {
            self.fib.neigh.learn(ip, mac, self.fib.now_ms, heard);
        }
    }

    /// Learns a neighbour from a frame pipeline `id` received, and tells the other lcores.
    fn learn(fib: &mut Fib, id: usize, sh: &Shared, ip: IpAddr, mac: [u8; 6], heard: neigh::Heard) {
        fib.neigh.learn(ip, mac, fib.now_ms, heard);
        for (k, q) in sh.learn.iter().enumerate() {
            if k != id {
                // A full queue loses the news; the next request or packet brings it again.
                let _ = q.push((ip, mac, heard));
            }
        }
    }

    /// One round: a burst from each receive queue through the pipeline. Returns the frames
    /// received.
    fn poll(&mut self, sh: &Shared) -> usize {
        self.fib.now_ms = sh.started.elapsed().as_millis() as u64;
        self.refresh_tables(sh);
        self.take_learned(sh);
        let mut moved = 0;
        for k in 0..sh.ifaces.len() {
            let Some(rxq) = self.q.rx[k].as_mut() else {
                continue;
            };
            let n = rxq.rx(&mut self.rxb);
            if n == 0 {
                continue;
            }
            moved += n;
            self.q.rx_frames[k] += n as u64;
            self.burst(sh, k, false);
        }
        // What other workers handed over: packets of SAs this one owns, received on port
        // `k` and already through that worker's first pass. All of it, up to a ring's worth:
        // they were received before this round's, and a worker that was held up (preempted)
        // must catch up rather than fill its ring while the others keep handing over.
        for k in 0..self.q.inbox.len() {
            for _ in 0..HAND_RING as usize / BURST {
                let n = self.q.inbox[k].dequeue(&mut self.rxb);
                if n > 0 {
                    moved += n;
                    self.q.handed_in += n as u64;
                    self.burst(sh, k, true);
                }
                if n < BURST {
                    break;
                }
            }
        }
        if moved > 0 && sh.last_rx_ms.load(Ordering::Relaxed) != self.fib.now_ms {
            sh.last_rx_ms.store(self.fib.now_ms, Ordering::Relaxed);
        }
        if !self.punt.pkts().is_empty() {
            if let Some(r) = &sh.punts {
                r.enqueue(&mut self.punt);
            }
            // What the ring did not take (the main lcore is behind) is dropped and counted.
            for _ in self.punt.pkts().drain(..) {
                self.drops.inc(DropReason::ControlPlane);
            }
        }
        moved
    }

    /// The burst in `self.rxb`, received on port `k`; `handed`: handed over by another
    /// worker, which already did the first pass (ARP, TTL, MSS clamp) and stripped the
    /// Ethernet headers.
    fn burst(&mut self, sh: &Shared, k: usize, handed: bool) {
        let mut rxb = std::mem::take(&mut self.rxb);
        let pkts = rxb.pkts();
        let iface = &sh.ifaces[k];
        let (my_mac, role) = (iface.mac, iface.role);
        let mine = &iface.addrs;
        let (my4, my6) = (mine.first().copied(), iface.addr6);
        let has_vrrp = sh.vrrp.iter().any(|v| v.port == k);
        let ours = |ip: Ipv4Addr| mine.contains(&ip) || (has_vrrp && sh.vip_held(k, ip.into()));
        // Answer ARP and ICMP echo for our addresses; strip the Ethernet header of the rest;
        // what is not IP is counted and left out.
        for (j, m) in pkts.iter_mut().enumerate() {
            let (v, l) = (&mut self.verdicts[j], &mut self.local[j]);
            *v = Verdict::Pending;
            *l = Local::No;
            self.l2_group[j] = m.data().first().is_some_and(|b| b & 1 != 0);
            if handed {
                continue;
            }
            // A unicast frame to another MAC: a flooding bridge or a promiscuous port passed
            // it here, and its owner (the VRRP master, say) handles it.
            if m.data().get(..6).is_some_and(|d| {
                d[0] & 1 == 0
                    && *d != my_mac
                    && *d != iface.hw_mac
                    && !(has_vrrp && sh.vmac_held(k, d))
            }) {
                *v = Verdict::Drop(DropReason::OtherHost);
                self.drops.inc(DropReason::OtherHost);
                continue;
            }
            // Neighbours: learn from ARP (RFC 826: requests for us create entries, the
            // rest only refresh), answer neighbor solicitations for our IPv6 addresses and
            // learn from advertisements.
            if let Some((ip, mac)) = neigh::arp_sender(m.data()) {
                let for_us = m
                    .data()
                    .get(38..42)
                    .is_some_and(|t| ours(Ipv4Addr::new(t[0], t[1], t[2], t[3])));
                let heard = neigh::Heard::Arp { for_us };
                Self::learn(&mut self.fib, self.id, sh, ip.into(), mac, heard);
            }
            if iface.ra && ra::is_router_solicit(m.data()) {
                iface.solicits.fetch_add(1, Ordering::Relaxed);
                *l = Local::Consumed;
                *v = Verdict::ToControlPlane;
                continue;
            }
            if let Some((ty, src, target, _)) = neigh::parse_nd(m.data()) {
                // Our addresses, and the virtual ones this gateway holds.
                let ours6 = |a: Ipv6Addr| {
                    iface.addrs6.contains(&a) || (has_vrrp && sh.vip_held(k, a.into()))
                };
                // Solicitations for one of ours (only those: RFC 4861 §7.2.3) and answers to
                // ours create entries, the rest only refresh (see `neigh::nd_lesson`).
                if let Some((ip, mac, heard)) = neigh::nd_lesson(m.data(), ours6) {
                    Self::learn(&mut self.fib, self.id, sh, ip, mac, heard);
                }
                if ty == 135 && ours6(target) {
                    let to_mac = m.data()[6..12].try_into().unwrap_or([0; 6]);
                    // From the virtual MAC if the target is a virtual address of a router
                    // that has one.
                    let from = if has_vrrp && sh.vip_held(k, target.into()) {
                        sh.mac_for(k, target.into(), my_mac)
                    } else {
                        my_mac
                    };
                    // Written over the solicitation, grown to the advertisement's size
                    // (those without options are shorter). Duplicate address detection (from
                    // ::) is answered to all nodes (RFC 4861 §7.2.4): the address is taken.
                    if neigh::answer_solicit(m, from, target, src, to_mac) {
                        *l = Local::Answer;
                        *v = Verdict::ToControlPlane;
                        continue;
                    }
                }
                *v = Verdict::Drop(DropReason::NotIp);
                self.not_ip += 1;
                continue;
            }
            // ARP for a virtual address is answered from the router's MAC (looked up only
            // for ARP frames on a port with VRRP).
            let arp_mac = match m.data().get(12..42) {
                Some(f) if has_vrrp && f[..2] == [0x08, 0x06] => {
                    sh.mac_for(k, Ipv4Addr::new(f[26], f[27], f[28], f[29]).into(), my_mac)
                }
                _ => my_mac,
            };
            if dataplane::host::arp_reply_if(m.data_mut(), ours, arp_mac) {
                // Answered here: a non-pending verdict keeps the pipeline off it.
                *l = Local::Answer;
                *v = Verdict::ToControlPlane;
                continue;
            }
            let off = match ethernet::Frame::new_checked(m.data()) {
                Ok(f)
                    if matches!(
                        f.ethertype(),
                        ethernet::ethertype::IPV4 | ethernet::ethertype::IPV6
                    ) =>
                {
                    f.payload_offset()
                }
                _ => {
                    *v = Verdict::Drop(DropReason::NotIp);
                    self.not_ip += 1;
                    continue;
                }
            };
            // RFC 1812 §5.2.2: a router verifies the IPv4 header checksum of every packet it
            // receives (its fields decide everything that follows) and drops those that fail,
            // without an answer. NICs that check it in hardware would spare this.
            if !dataplane::host::ipv4_checksum_ok(&m.data()[off..]) {
                *v = Verdict::Drop(DropReason::BadIpChecksum);
                self.drops.inc(DropReason::BadIpChecksum);
                continue;
            }
            if has_vrrp && vrrp::is_vrrp(&m.data()[off..]) {
                // Advertisements go to the main lcore's routers; refused ones are counted.
                match vrrp::parse_advert(&m.data()[off..]) {
                    // Only our VRIDs' reach the queue: a flood for others must not crowd
                    // out our master's (the backups would take over).
                    Ok(a) if !sh.vrrp.iter().any(|r| r.port == k && r.vrid == a.vrid) => {
                        sh.vrrp_refused[vrrp::Refusal::ALL.len() + 1]
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(a) => {
                        if sh.adverts.push((k, a)).is_err() {
                            sh.vrrp_refused[vrrp::Refusal::ALL.len()]
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(r) => {
                        sh.vrrp_refused[r.index()].fetch_add(1, Ordering::Relaxed);
                    }
                }
                *l = Local::Consumed;
                *v = Verdict::ToControlPlane;
                continue;
            }
            let d = m.data_mut();
            let ours6 = |ip: Ipv6Addr| {
                iface.addrs6.contains(&ip) || (has_vrrp && sh.vip_held(k, ip.into()))
            };
            // The reply's source address (IPv4 at 12..16 of the IP header, IPv6 at 8..24).
            let replied = if dataplane::host::icmp_echo_reply_if(&mut d[off..], ours) {
                d.get(off + 12..off + 16)
                    .map(|a| IpAddr::from(<[u8; 4]>::try_from(a).unwrap_or_default()))
            } else if dataplane::host::icmpv6_echo_reply_if(&mut d[off..], ours6) {
                d.get(off + 8..off + 24)
                    .map(|a| IpAddr::from(<[u8; 16]>::try_from(a).unwrap_or_default()))
            } else {
                None
            };
            if let Some(from_ip) = replied {
                // Back to the sender: swap the MAC addresses (the reply's source address
                // says which MAC speaks for it).
                let mut src = [0u8; 6];
                src.copy_from_slice(&d[6..12]);
                d[..6].copy_from_slice(&src);
                let from = if has_vrrp {
                    sh.mac_for(k, from_ip, my_mac)
                } else {
                    my_mac
                };
                d[6..12].copy_from_slice(&from);
                *l = Local::Answer;
                *v = Verdict::ToControlPlane;
                continue;
            }
            // A router on the path says our ESP does not fit: for the main lcore, which lowers
            // the SAs' MTU towards that peer (RFC 4301 §8.2.1).
            if role == Role::Outside {
                let ours_any = |a: IpAddr| match a {
                    IpAddr::V4(a) => ours(a),
                    IpAddr::V6(a) => ours6(a),
                };
                if let Some(t) = icmp_err::esp_too_big(&m.data()[off..], ours_any) {
                    let _ = sh.pmtu.push(t);
                    *l = Local::Consumed;
                    *v = Verdict::ToControlPlane;
                    continue;
                }
            }
            // Sent to a link-layer broadcast or multicast address: no ICMP error about it
            // (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e.4)/(e.5)).
            let l2_group = m.data()[0] & 1 != 0;
            if m.adj(off).is_err() {
                *v = Verdict::Drop(DropReason::Malformed);
                self.drops.inc(DropReason::Malformed);
                continue;
            }
            if role == Role::Outside && dataplane::reasm::is_fragment(m.data()) {
                let r = match self.reasm.push(m.data(), self.fib.now_ms) {
                    Ok(None) => {
                        // Held until the rest arrives: not a drop.
                        *v = Verdict::Drop(DropReason::OuterFragment);
                        continue;
                    }
                    Ok(Some(whole)) => {
                        let fits = whole.len() <= usize::from(REASM_ROOM);
                        match self.jumbo.alloc().filter(|_| fits) {
                            Some(mut w) => match w.append(whole.len()) {
                                Ok(d) => {
                                    d.copy_from_slice(whole);
                                    *m = w;
                                    None
                                }
                                Err(_) => Some(DropReason::Reassembly),
                            },
                            None => Some(DropReason::Reassembly),
                        }
                    }
                    Err(_) => Some(DropReason::Reassembly),
                };
                if let Some(r) = r {
                    *v = Verdict::Drop(r);
                    self.drops.inc(r);
                    continue;
                }
            }
            if role == Role::Inside {
                // A router's hop, before the packet disappears into the tunnel.
                if let Err(r) = dataplane::host::decrement_ttl(m.data_mut()) {
                    *v = Verdict::Drop(r);
                    self.drops.inc(r);
                    // Time exceeded, from our address on this side (RFC 792), quoting the
                    // packet as it came: the decrement refused it unchanged.
                    let from = source_for(m.data(), my4, my6);
                    let e = IcmpError::TimeExceeded;
                    if r == DropReason::TtlExceeded
                        && !l2_group
                        && self.manners.build(e, Quote::AsIs, m, from)
                    {
                        *l = Local::Error(e);
                    }
                    continue;
                }
                if let Some(mss) = sh.mss {
                    dataplane::host::clamp_syn_mss(m.data_mut(), mss);
                }
            }
        }
        let n = pkts.len();
        let tables: &Tables = &self.tables;
        let out_t = OutboundTables {
            spd: &tables.spd_out,
            mtu: sh.out_mtu,
        };
        let in_t = InboundTables {
            sad: &tables.sad,
            spd: &tables.spd_in,
            natt_ports: &sh.natt_ports,
            local: Some(&sh.locals),
        };
        match role {
            Role::Inside => burst::outbound_owned(
                &out_t,
                Some(&mut self.flow_cache),
                self.me,
                &mut pkts[..],
                &mut self.verdicts[..n],
                &mut self.drops,
                &mut self.hits_out,
            ),
            Role::Outside => burst::inbound(
                &in_t,
                &mut pkts[..],
                &mut self.verdicts[..n],
                &mut self.drops,
                &mut self.hits_in,
            ),
        };
        for (j, m) in pkts.drain(..).enumerate() {
            let (v, l, l2_group) = (self.verdicts[j], self.local[j], self.l2_group[j]);
            let mut m: Mbuf = m;
            if let Verdict::Handoff(owner) = v {
                self.q.hand_off(usize::from(owner), k, m, &mut self.drops);
                continue;
            }
            let mut tx = Tx {
                fib: &mut self.fib,
                ifaces: &sh.ifaces,
                q: &mut self.q,
                drops: &mut self.drops,
                hits: &mut self.hits_out,
                me: self.me,
                pool: &self.pool,
                frag_ident: &sh.frag_ident,
                frag_key: &sh.frag_key,
                outer_frag: &mut self.outer_frag,
            };
            if let Local::Error(e) = l {
                let ok = tx.deliver(m, &out_t);
                self.manners.sent(e, ok);
                continue;
            }
            if l == Local::Consumed {
                continue;
            }
            if l == Local::Answer {
                self.answered += 1;
                tx.push(k, m);
                continue;
            }
            if v == Verdict::ToControlPlane {
                // IKE for a virtual address this gateway does not hold: the master's.
                if !sh.vrrp.is_empty() && ip_dst(m.data()).is_some_and(|d| sh.vip_not_held(d)) {
                    tx.drops.inc(DropReason::VrrpBackup);
                    continue;
                }
                if sh.punts.is_some() {
                    if self.punt.pkts().len() >= BURST {
                        tx.drops.inc(DropReason::ControlPlane);
                    } else {
                        self.punt.pkts().push(m);
                    }
                } else {
                    tx.drops.inc(DropReason::ControlPlane);
                }
                continue;
            }
            if v == Verdict::Drop(DropReason::NoSaForPolicy) {
                // An on-demand policy without an SA: the main lcore asks the control plane
                // for one.
                if let (true, Ok(key)) = (sh.punts.is_some(), dataplane::flow::flow_key(m.data())) {
                    let target = tables.spd_out.lookup(&key).and_then(|r| match &r.action {
                        Action::Protect(t) if t.sa.is_none() => Some(t.policy_id),
                        _ => None,
                    });
                    if let Some(p) = target {
                        let _ = sh.acquires.push((p, key.src, key.dst));
                    }
                }
                continue;
            }
            match v {
                Verdict::Forward => {}
                Verdict::TooBig(mtu) => {
                    // RFC 4301 §8.2.1: the tunnel's PMTU goes back to the inside host. Only
                    // SPD-out gives this verdict, to packets from an inside port whose first
                    // pass (here or in the worker that handed them over) took their hop: the
                    // error quotes them as received (RFC 1812 §4.3.2.3).
                    if !l2_group {
                        let from = source_for(m.data(), my4, my6);
                        let e = IcmpError::TooBig { mtu };
                        let q = Quote::Forwarded;
                        self.manners.answer(e, q, m, from, &mut tx, &out_t);
                    }
                    continue;
                }
                Verdict::FragmentOuter(mtu) => {
                    // RFC 8200 §5: IPv6 of at most 1280 bytes goes through, in outer
                    // fragments the peer reassembles.
                    tx.fragment_outer_by_policy(m, mtu, &tables.spd_out);
                    continue;
                }
                Verdict::Fragment(max) => {
                    // RFC 4301 §8.1: fragments of the inner packet, each encapsulated with
                    // the SA the whole packet's policy names; a bypassed packet's fragments
                    // go as they are.
                    match out_action(&tables.spd_out, m.data()) {
                        Some(Action::Bypass) => tx.fragment(&m, max, None, &mut self.manners),
                        Some(Action::Protect(t)) => match t.sa_for(self.me) {
                            Some(sa) => tx.fragment(&m, max, Some(sa), &mut self.manners),
                            None => tx.drops.inc(DropReason::NoSaForPolicy),
                        },
                        _ => tx.drops.inc(DropReason::NoSaForPolicy),
                    }
                    continue;
                }
                _ => continue, // dropped (counted)
            }
            if role == Role::Outside {
                // The decapsulated packet's hop. Errors about it go to its source across
                // the tunnel, from our inside address, if SPD-out protects them.
                if let Err(r) = dataplane::host::decrement_ttl(m.data_mut()) {
                    tx.drops.inc(r);
                    if r == DropReason::TtlExceeded {
                        // Refused unchanged: quoted as it came out of the tunnel.
                        let from = tx.inside_source(m.data());
                        let e = IcmpError::TimeExceeded;
                        self.manners
                            .answer(e, Quote::AsIs, m, from, &mut tx, &out_t);
                    }
                    continue;
                }
                // SYN-ACKs coming out of the tunnel are clamped too: a peer gateway that
                // does not clamp (strongSwan) would otherwise let our side's hosts send
                // segments that no longer fit once encapsulated.
                if let Some(mss) = sh.mss {
                    dataplane::host::clamp_syn_mss(m.data_mut(), mss);
                }
                // The inside port's MTU, below: errors go to the source across the tunnel.
            }
            // The MTU of the port the packet leaves by: fragment it, or tell its source (RFC
            // 1191, RFC 4443 §3.2). For decapsulated packets (the inside port), and for clear
            // (bypassed) ones bigger than some port, which the NIC would otherwise drop without
            // a word. (Encapsulated packets fit their port by construction.)
            let across = role == Role::Outside;
            if across || m.len() > usize::from(sh.min_mtu) {
                if let Some(mtu) = tx.egress_mtu(m.data()) {
                    match icmp_err::oversize(m.data(), mtu) {
                        Oversize::Fits => {}
                        Oversize::Fragment(max) => {
                            tx.fragment(&m, max, None, &mut self.manners);
                            continue;
                        }
                        Oversize::TooBig(mtu) => {
                            tx.drops.inc(DropReason::TooBig);
                            if !l2_group {
                                let from = if across {
                                    tx.inside_source(m.data())
                                } else {
                                    source_for(m.data(), my4, my6)
                                };
                                // Its hop is taken (the first pass for an inside port's,
                                // above for a decapsulated one): quoted as received.
                                let e = IcmpError::TooBig { mtu };
                                let q = Quote::Forwarded;
                                self.manners.answer(e, q, m, from, &mut tx, &out_t);
                            }
                            continue;
                        }
                    }
                }
            }
            tx.route(m);
        }
        self.rxb = rxb;
    }

    /// Sends the neighbour requests lookups asked for, then every port's pending burst.
    fn flush(&mut self, sh: &Shared) {
        // Packets for the SAs other workers own, first: they wait for this round's turn.
        self.q.pass_on(&mut self.drops);
        // ARP requests / neighbor solicitations for next hops that lookups asked about.
        for (ifx, hop) in self.fib.asks.drain(..) {
            let Some(mut m) = self.pool.alloc() else {
                break;
            };
            let i = &sh.ifaces[ifx];
            let built = match hop {
                IpAddr::V4(t) => i.addrs.first().and_then(|&a| {
                    let f = m.append(neigh::ARP_FRAME_LEN).ok()?;
                    Some(neigh::arp_request(f, i.mac, a, t))
                }),
                IpAddr::V6(t) => i.addrs6.first().and_then(|&a| {
                    let f = m.append(neigh::NS_FRAME_LEN).ok()?;
                    Some(neigh::neighbor_solicit(f, i.mac, a, t))
                }),
            };
            if built.is_some() {
                push_tx(&mut self.q, ifx, m, &mut self.drops);
            }
        }
        // What the main lcore handed over (IKE, neighbour requests) goes first, in bursts of
        // its own: a port whose data burst the driver keeps refusing must not hold it back.
        for (k, r) in self.q.handoff_in.iter().enumerate() {
            let b = &mut self.q.ctl[k];
            r.dequeue(b);
            if !b.pkts().is_empty() {
                self.q.tx_frames[k] += self.q.tx[k].send(b) as u64;
            }
        }
        for k in 0..self.q.txb.len() {
            if !self.q.txb[k].pkts().is_empty() {
                // What the driver does not take now is retried after the next burst.
                send_burst(&mut self.q, k, &mut self.drops, false);
            }
        }
    }

    /// Copies the counters to this pipeline's stats slot, at most every [`STATS_EVERY`]
    /// unless `now`; skipped (until the next round) while the main lcore is reading it.
    fn publish_stats(&mut self, sh: &Shared, now: bool) {
        if !now && self.last_stats.elapsed() < STATS_EVERY {
            return;
        }
        let Some(slot) = sh.stats.get(self.id) else {
            return;
        };
        let mut s = if now {
            match slot.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            }
        } else {
            match slot.try_lock() {
                Ok(s) => s,
                Err(_) => return,
            }
        };
        self.last_stats = Instant::now();
        s.lcore = self.lcore;
        s.rx_frames.clone_from(&self.q.rx_frames);
        s.tx_frames.clone_from(&self.q.tx_frames);
        s.drops.clone_from(&self.drops);
        s.answered = self.answered;
        s.not_ip = self.not_ip;
        s.handed = (self.q.handed_off, self.q.handed_in);
        s.icmp = self.manners.counters;
        (s.icmp.outer_fragmented, s.icmp.outer_fragments) = self.outer_frag;
        s.reasm = self.reasm.stats;
        s.neigh = (self.fib.neigh.stats, self.fib.neigh.len());
        s.hits_out.clone_from(&self.hits_out);
        s.hits_in.clone_from(&self.hits_in);
        s.flow_cache = self.flow_cache.stats();
        if !s
            .tables
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, &self.tables))
        {
            s.tables = Some(Arc::clone(&self.tables));
        }
    }

    /// A worker's loop: rounds until the main lcore says stop.
    fn run_worker(mut self, sh: &Shared) -> i32 {
        while !sh.stop.load(Ordering::Relaxed) {
            let n = self.poll(sh);
            self.flush(sh);
            self.publish_stats(sh, false);
            if n == 0 && !sh.idle_sleep.is_zero() {
                std::thread::sleep(sh.idle_sleep);
            }
        }
        // Frames the drivers never took are dropped with the bursts.
        for b in &mut self.q.txb {
            b.pkts().clear();
        }
        self.publish_stats(sh, true);
        0
    }
}

/// What the first pass over a burst did with a packet itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// Nothing: the pipeline decides.
    No,
    /// An ARP or echo reply, back out of the port it came in by.
    Answer,
    /// The mbuf now holds this ICMP error (an IP packet), to be routed.
    Error(IcmpError),
    /// Taken here (a VRRP advertisement): freed.
    Consumed,
}

/// The gateway's ICMP errors: when it may send one, how many, and what it did.
struct Manners {
    limit: icmp_err::RateLimit,
    clock: Instant,
    counters: icmp_err::Counters,
}

impl Manners {
    fn new(per_second: u32) -> Self {
        Self {
            limit: icmp_err::RateLimit::new(per_second, per_second),
            clock: Instant::now(),
            counters: Default::default(),
        }
    }

    /// Rewrites `m`, which holds an IP packet, into the ICMP error `e` about it, sent from
    /// `from`; `quote` says whether the packet already had its TTL / hop limit decremented
    /// ([`Quote::Forwarded`]: the error quotes it as received). False (and counted) when no
    /// error may or can be sent; `m` is then to be freed.
    fn build(&mut self, e: IcmpError, quote: Quote, m: &mut Mbuf, from: Option<IpAddr>) -> bool {
        if !icmp_err::may_report(m.data()) {
            self.counters.not_reportable += 1;
            return false;
        }
        let now = u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if !self.limit.allow(now) {
            self.counters.rate_limited += 1;
            return false;
        }
        // The error quotes the packet it replaces: build it aside, then copy it over.
        let mut buf = [0u8; icmp_err::V6_ERROR_MAX];
        let built =
            from.and_then(|f| icmp_err::build_quoting(e, m.data(), quote, f, &mut buf).ok());
        let Some(n) = built else {
            self.counters.not_sent += 1;
            return false;
        };
        let len = m.len();
        let resized = if len > n {
            m.trim(len - n).is_ok()
        } else {
            m.append(n - len).is_ok()
        };
        if !resized {
            self.counters.not_sent += 1;
            return false;
        }
        m.data_mut().copy_from_slice(&buf[..n]);
        true
    }

    /// Counts an error that was built: sent, or refused on its way out.
    fn sent(&mut self, e: IcmpError, ok: bool) {
        match (ok, e) {
            (false, _) => self.counters.not_sent += 1,
            (true, IcmpError::TimeExceeded) => self.counters.time_exceeded_sent += 1,
            (true, IcmpError::TooBig { .. }) => self.counters.too_big_sent += 1,
        }
    }

    /// Builds the error about the packet in `m` ([`Manners::build`]) and sends it.
    fn answer(
        &mut self,
        e: IcmpError,
        quote: Quote,
        mut m: Mbuf,
        from: Option<IpAddr>,
        tx: &mut Tx<'_>,
        out_t: &OutboundTables<'_>,
    ) {
        if self.build(e, quote, &mut m, from) {
            let ok = tx.deliver(m, out_t);
            self.sent(e, ok);
        }
    }
}
/// Hands port `k`'s pending burst to its transmit queue. With `full` (the burst has no room
/// for the next packet), what the driver refuses is dropped and counted as `tx_full`, so a
/// burst never grows past [`BURST`] (no allocation, no unbounded queue); otherwise it stays
/// for the next try.
fn send_burst(q: &mut Queues, k: usize, drops: &mut DropCounters, full: bool) {
    let sent = q.tx[k].send(&mut q.txb[k]);
    q.tx_frames[k] += sent as u64;
    if full {
        for _ in q.txb[k].pkts().drain(..) {
            drops.inc(DropReason::TxFull);
        }
    }
}

/// Queues `m` on port `k`, sending the port's burst first when it is full.
fn push_tx(q: &mut Queues, k: usize, m: Mbuf, drops: &mut DropCounters) {
    if q.txb[k].pkts().len() >= BURST {
        send_burst(q, k, drops, true);
    }
    q.txb[k].pkts().push(m);
}

/// Our address of the IP packet's family on the port it came in by.
fn source_for(ip: &[u8], v4: Option<std::net::Ipv4Addr>, v6: Option<Ipv6Addr>) -> Option<IpAddr> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => v4.map(IpAddr::V4),
        Some(6) => v6.map(IpAddr::V6),
        _ => None,
    }
}

/// The transmit side of a pipeline: routing, Ethernet headers, per-port bursts.
struct Tx<'a> {
    fib: &'a mut Fib,
    ifaces: &'a [Iface],
    q: &'a mut Queues,
    drops: &'a mut DropCounters,
    /// SPD-out's per-policy counters (the gateway's own ICMP errors cross SPD-out too).
    hits: &'a mut PolicyHits,
    /// The pipeline's number among the SAs' owners ([`Pipeline::me`]).
    me: Option<u16>,
    /// Where fragments come from.
    pool: &'a Mempool,
    /// Identifications for the fragmented outer packets this gateway sends ([`Shared::frag_ident`]).
    frag_ident: &'a AtomicU32,
    /// Its key for IPv6 identifications ([`Shared::frag_key`]).
    frag_key: &'a std::collections::hash_map::RandomState,
    /// Outer packets fragmented, and the fragments made ([`Tx::fragment_outer`]).
    outer_frag: &'a mut (u64, u64),
}

impl Tx<'_> {
    /// Queues `m` on port `out`, sending the port's burst first when it is full.
    fn push(&mut self, out: usize, m: Mbuf) {
        push_tx(self.q, out, m, self.drops);
    }

    /// Routes the IP packet in `m` by its destination: the Ethernet header for the next hop,
    /// then the port's burst. Unroutable packets are counted.
    fn route(&mut self, mut m: Mbuf) -> bool {
        let dst = match dataplane::flow::flow_key(m.data()) {
            Ok(key) => key.dst,
            Err(r) => {
                self.drops.inc(r);
                return false;
            }
        };
        let (out, mac) = match self.fib.lookup(dst) {
            Ok(x) => x,
            Err(r) => {
                self.drops.inc(r);
                return false;
            }
        };
        let et = if m.data()[0] >> 4 == 6 {
            ethernet::ethertype::IPV6
        } else {
            ethernet::ethertype::IPV4
        };
        let src_mac = self.ifaces[out].mac;
        match m.prepend(ethernet::HEADER_LEN) {
            Ok(d) => {
                d[..6].copy_from_slice(&mac);
                d[6..12].copy_from_slice(&src_mac);
                d[12..14].copy_from_slice(&et.to_be_bytes());
            }
            Err(_) => {
                self.drops.inc(DropReason::NoHeadroom);
                return false;
            }
        }
        self.push(out, m);
        true
    }

    /// Sends a packet the gateway made (an ICMP error): where its destination lies beyond an
    /// outside port, or no route covers it (a remote site reached only through a tunnel, as
    /// transit traffic reaches it: by policy, the outer header being routed), it goes through
    /// SPD-out first, so it enters the tunnel when the policy protects it, leaves in the clear
    /// when it bypasses, and is dropped (counted) otherwise.
    fn deliver(&mut self, mut m: Mbuf, out_t: &OutboundTables<'_>) -> bool {
        let outside = match dataplane::flow::flow_key(m.data()) {
            Ok(k) => self
                .fib
                .route_of(k.dst)
                .is_none_or(|(out, _)| self.ifaces[out].role == Role::Outside),
            Err(_) => false,
        };
        if outside {
            let mut v = [Verdict::Pending];
            burst::outbound_owned(
                out_t,
                None,
                self.me,
                std::slice::from_mut(&mut m),
                &mut v,
                self.drops,
                self.hits,
            );
            if let Verdict::Handoff(owner) = v[0] {
                // Into the tunnel of an SA another worker owns: that worker seals it, as if
                // it had come in by the (first) inside port.
                let k = self.ifaces.iter().position(|i| i.role == Role::Inside);
                return match k {
                    Some(k) => self.q.hand_off(usize::from(owner), k, m, self.drops),
                    None => {
                        self.drops.inc(DropReason::NoRoute);
                        false
                    }
                };
            }
            if let Verdict::FragmentOuter(mtu) = v[0] {
                // An ICMPv6 error (at most 1280 bytes) into a tunnel narrower than that.
                return self.fragment_outer_by_policy(m, mtu, out_t.spd);
            }
            if v[0] != Verdict::Forward {
                if let Verdict::Fragment(_) = v[0] {
                    self.drops.inc(DropReason::TooBig);
                }
                return false;
            }
        }
        self.route(m)
    }

    /// The MTU of the port the IP packet would leave by.
    fn egress_mtu(&self, ip: &[u8]) -> Option<u16> {
        let key = dataplane::flow::flow_key(ip).ok()?;
        let (out, _) = self.fib.route_of(key.dst)?;
        Some(self.ifaces[out].mtu)
    }

    /// The address errors about a packet leaving by an inside port come from: that port's
    /// address of the packet's family, else the first inside port's (it must lie in the
    /// tunnel's local selectors for the error to go back through the tunnel).
    fn inside_source(&self, ip: &[u8]) -> Option<IpAddr> {
        let by_route = dataplane::flow::flow_key(ip)
            .ok()
            .and_then(|k| self.fib.route_of(k.dst))
            .map(|(out, _)| out);
        let of = |i: &Iface| source_for(ip, i.addrs.first().copied(), i.addr6);
        by_route
            .filter(|k| self.ifaces[*k].role == Role::Inside)
            .and_then(|k| of(&self.ifaces[k]))
            .or_else(|| {
                self.ifaces
                    .iter()
                    .filter(|i| i.role == Role::Inside)
                    .find_map(of)
            })
    }

    /// Cuts the IPv4 packet in `orig` into fragments of at most `max` bytes (RFC 791 §3.2),
    /// encapsulates each with `sa` if there is one, and routes them.
    fn fragment(&mut self, orig: &Mbuf, max: u16, sa: Option<&OutboundSa>, manners: &mut Manners) {
        manners.counters.fragmented += 1;
        manners.counters.fragments += self.cut(orig, max, sa, 0);
    }

    /// [`Tx::fragment_outer`] with the SA this pipeline seals with for the policy of SPD-out
    /// `spd` that protects the packet in `m`; without one, counted as `no_sa_for_policy`.
    fn fragment_outer_by_policy(&mut self, m: Mbuf, mtu: u16, spd: &Spd<OutboundTarget>) -> bool {
        let sa = match out_action(spd, m.data()) {
            Some(Action::Protect(t)) => t.sa_for(self.me),
            _ => None,
        };
        match sa {
            Some(sa) => self.fragment_outer(m, mtu, sa),
            None => {
                self.drops.inc(DropReason::NoSaForPolicy);
                false
            }
        }
    }

    /// Encapsulates the IPv6 packet in `m` (at most 1280 bytes) with the tunnel-mode SA `sa`
    /// and sends the outer packet in fragments of at most `mtu` bytes, the SA's path MTU: a
    /// tunnel whose inner MTU is below IPv6's minimum fragments below the inner IP layer
    /// (RFC 8200 §5, [`Verdict::FragmentOuter`]). We are the outer packet's source, so it
    /// may be fragmented whatever its DF; each gets a fresh identification. The peer
    /// reassembles it before decryption (RFC 4303 §3.4.1).
    fn fragment_outer(&mut self, mut m: Mbuf, mtu: u16, sa: &OutboundSa) -> bool {
        if let Err(r) = dataplane::esp::encap(sa, &mut m) {
            self.drops.inc(r);
            return false;
        }
        let ident = self.next_ident(m.data());
        if m.data()[0] >> 4 == 4 {
            // AH's ICV covers the identification it wrote: that one stays.
            let ah = matches!(sa.crypto(), dataplane::sa::SaCrypto::Ah(_));
            let id = (!ah).then_some(ident as u16);
            if let Err(r) = icmp_err::own_v4_fragmentable(m.data_mut(), id) {
                self.drops.inc(r);
                return false;
            }
        }
        if m.len() <= usize::from(mtu) {
            return self.route(m);
        }
        self.outer_frag.0 += 1;
        let n = self.cut(&m, mtu, None, ident);
        self.outer_frag.1 += n;
        n > 0
    }

    /// An identification for a packet this gateway fragments, to the destination of `ip`:
    /// for IPv4 the next of one counter for all pipelines (16 bits: unique for 65,536
    /// packets); for IPv6 a keyed hash of that counter and the destination, which another
    /// host cannot predict from the ones it sees (RFC 7739 §5).
    fn next_ident(&self, ip: &[u8]) -> u32 {
        let n = self.frag_ident.fetch_add(1, Ordering::Relaxed);
        if ip.first().is_some_and(|b| b >> 4 == 6) && ip.len() >= 40 {
            use std::hash::{BuildHasher, Hasher};
            let mut h = self.frag_key.build_hasher();
            h.write_u32(n);
            h.write(&ip[24..40]);
            h.finish() as u32
        } else {
            n
        }
    }

    /// Cuts the IP packet in `orig` into fragments of at most `max` bytes in fresh mbufs
    /// (IPv4: RFC 791 §3.2; IPv6, which only its source may fragment: RFC 8200 §4.5, with
    /// identification `ident`), encapsulates each with `sa` if there is one, and routes them.
    /// Returns how many it made.
    fn cut(&mut self, orig: &Mbuf, max: u16, sa: Option<&OutboundSa>, ident: u32) -> u64 {
        let v6 = orig.data().first().is_some_and(|b| b >> 4 == 6);
        let mut made = 0;
        let mut next = Some(0);
        while let Some(offset) = next {
            let Some(mut f) = self.pool.alloc() else {
                self.drops.inc(DropReason::NoMbuf);
                return made;
            };
            let room = usize::from(max);
            let cut = match f.append(room) {
                Ok(buf) if v6 => icmp_err::fragment_v6(orig.data(), max, offset, ident, buf),
                Ok(buf) => icmp_err::fragment_v4(orig.data(), max, offset, buf),
                Err(_) => Err(DropReason::NoTailroom),
            };
            let n = match cut {
                Ok((n, after)) => {
                    next = after;
                    n
                }
                Err(r) => {
                    self.drops.inc(r);
                    return made;
                }
            };
            if f.trim(room - n).is_err() {
                self.drops.inc(DropReason::Malformed);
                return made;
            }
            if let Some(sa) = sa {
                if let Err(r) = dataplane::esp::encap(sa, &mut f) {
                    self.drops.inc(r);
                    continue;
                }
            }
            made += 1;
            self.route(f);
        }
        made
    }
}

/// The action of the SPD-out policy that classifies the IP packet `ip` (none for a packet
/// without a flow key, or that no policy takes).
fn out_action<'a>(spd: &'a Spd<OutboundTarget>, ip: &[u8]) -> Option<&'a Action<OutboundTarget>> {
    let key = dataplane::flow::flow_key(ip).ok()?;
    spd.lookup(&key).map(|r| &r.action)
}

struct Snap<'a> {
    sh: &'a Shared,
    /// The main lcore's pipeline (in worker mode: what it sent and dropped itself).
    main: &'a Pipeline,
    out_sas: &'a [Option<Arc<OutboundSa>>],
    dynamic: &'a Dynamic,
    control: Option<&'a Control>,
    vrrp: &'a [VrrpRun],
}

/// Policies listed per direction in the stats (the file is rewritten every second from the
/// packet loop: a table of 100,000 rules is summarised, not listed).
const POLICIES_LISTED: usize = 1024;

/// Each policy of a table with what it matched: selector, action, packets and bytes.
fn policy_counts<T>(
    spd: &Spd<T>,
    hits: &PolicyHits,
    target: impl Fn(&T) -> Option<String>,
) -> Vec<serde_json::Value> {
    spd.rules()
        .iter()
        .enumerate()
        .take(POLICIES_LISTED)
        .map(|(k, r)| {
            let (packets, bytes) = hits.get(k);
            let sel = &r.selector;
            let mut v = serde_json::json!({"priority": r.priority, "src": sel.src.to_string(),
                "dst": sel.dst.to_string(), "packets": packets, "bytes": bytes,
                "action": r.action.name()});
            if let Some(p) = sel.proto {
                v["proto"] = p.into();
            }
            if !sel.src_ports.is_any() {
                v["src_ports"] = format!("{}-{}", sel.src_ports.lo, sel.src_ports.hi).into();
            }
            if !sel.dst_ports.is_any() {
                v["dst_ports"] = format!("{}-{}", sel.dst_ports.lo, sel.dst_ports.hi).into();
            }
            if let Action::Protect(t) = &r.action {
                if let Some(spi) = target(t) {
                    v["sa"] = spi.into();
                }
            }
            v
        })
        .collect()
}

/// Every counter as JSON: ports, drops by reason, SAs (static and negotiated), policies,
/// the control-plane channel, and what each worker did. The pipelines' counters are summed.
fn snapshot(s: &Snap<'_>) -> serde_json::Value {
    let sh = s.sh;
    let current = sh.tables.load_full();
    let nports = sh.ifaces.len();
    let (mut rx, mut tx) = (vec![0u64; nports], vec![0u64; nports]);
    let mut drops = DropCounters::default();
    let (mut answered, mut not_ip) = (0u64, 0u64);
    let mut icmp = icmp_err::Counters::default();
    let mut reasm = dataplane::reasm::ReasmStats::default();
    let mut neigh = dataplane::neigh::NeighStats::default();
    let mut neigh_entries = 0;
    let mut hits_out = PolicyHits::new(current.spd_out.len());
    let mut hits_in = PolicyHits::new(current.spd_in.len());
    let mut cache = FlowCacheStats::default();
    let mut workers = Vec::new();
    for slot in &sh.stats {
        let p = match slot.lock() {
            Ok(p) => p,
            Err(e) => e.into_inner(),
        };
        for k in 0..nports {
            rx[k] += p.rx_frames.get(k).copied().unwrap_or(0);
            tx[k] += p.tx_frames.get(k).copied().unwrap_or(0);
        }
        drops.merge(&p.drops);
        answered += p.answered;
        not_ip += p.not_ip;
        cache.hits += p.flow_cache.hits;
        cache.misses += p.flow_cache.misses;
        cache.bypassed += p.flow_cache.bypassed;
        icmp.merge(&p.icmp);
        reasm.merge(&p.reasm);
        // Requests are frames each pipeline sent; every pipeline hears of every neighbour
        // learned (its own or passed on), so the busiest table's count is the total.
        neigh.requests += p.neigh.0.requests;
        neigh.learned = neigh.learned.max(p.neigh.0.learned);
        neigh.failed += p.neigh.0.failed;
        neigh.evicted += p.neigh.0.evicted;
        neigh_entries = neigh_entries.max(p.neigh.1);
        // Counts for an older version of the tables are carried to the current one.
        if let Some(t) = &p.tables {
            if Arc::ptr_eq(t, &current) {
                hits_out.merge(&p.hits_out);
                hits_in.merge(&p.hits_in);
            } else {
                hits_out.merge(&p.hits_out.carried(&t.spd_out, &current.spd_out));
                hits_in.merge(&p.hits_in.carried(&t.spd_in, &current.spd_in));
            }
        }
        workers.push(serde_json::json!({"lcore": p.lcore,
            "rx_frames": p.rx_frames.iter().sum::<u64>(), "rx_by_port": p.rx_frames,
            "tx_frames": p.tx_frames.iter().sum::<u64>(),
            "handed_off": p.handed.0, "handed_in": p.handed.1,
            "drops": p.drops.total()}));
    }
    // In worker mode the main lcore's own pipeline only sends (IKE, neighbour requests),
    // through worker 0, which counts the frames.
    let m = s.main;
    if m.id >= sh.stats.len() {
        drops.merge(&m.drops);
        neigh.requests += m.fib.neigh.stats.requests;
        neigh.failed += m.fib.neigh.stats.failed;
        neigh.evicted += m.fib.neigh.stats.evicted;
        neigh_entries = neigh_entries.max(m.fib.neigh.len());
    }
    let mut dropmap = serde_json::Map::new();
    for (r, n) in drops.nonzero() {
        dropmap.insert(r.as_str().to_owned(), n.into());
    }
    if not_ip > 0 {
        dropmap.insert("not_ip_frames".into(), not_ip.into());
    }
    let ports: Vec<serde_json::Value> = sh
        .ifaces
        .iter()
        .enumerate()
        .map(|(k, i)| {
            // What the device itself counted: frames it could not deliver for want of room
            // (a full receive ring: af_packet's socket drops, a NIC's missed packets).
            let [_, _, _, _, imissed] = i.port.stats().unwrap_or_default();
            serde_json::json!({"name": i.name, "rx_frames": rx[k], "tx_frames": tx[k],
                "rx_missed": imissed,
                "link": if i.link_up.load(Ordering::Relaxed) { "up" } else { "down" },
                "link_changes": i.link_changes.load(Ordering::Relaxed),
                "router_solicits": i.solicits.load(Ordering::Relaxed),
                "router_adverts": i.ra_sent.load(Ordering::Relaxed)})
        })
        .collect();
    // With several workers, the lcore of the one that encapsulates the SA's packets.
    let owner_lcore = |sa: &OutboundSa| -> Option<u32> {
        let w = usize::from(sa.owner_now()?);
        workers.get(w)?["lcore"].as_u64().map(|l| l as u32)
    };
    let mut sas: Vec<serde_json::Value> = s
        .out_sas
        .iter()
        .flatten()
        .map(|sa| serde_json::json!({"spi": format!("{:08x}", sa.spi), "direction": "out", "source": "static",
            "packets": sa.counters().packets(), "bytes": sa.counters().bytes(), "owner": owner_lcore(sa),
            "mtu": sa.egress_mtu()}))
        .collect();
    for (spi, _, sa) in current.sad.iter() {
        let dynamic = s.dynamic.sas.contains_key(&spi);
        sas.push(
            serde_json::json!({"spi": format!("{spi:08x}"), "direction": "in",
            "source": if dynamic { "ike" } else { "static" },
            "packets": sa.counters().packets(), "bytes": sa.counters().bytes()}),
        );
    }
    for (spi_in, d) in &s.dynamic.sas {
        if let Some(o) = &d.out {
            sas.push(serde_json::json!({"spi": format!("{:08x}", o.spi), "direction": "out", "source": "ike",
                "tunnel": d.tunnel, "child": d.child, "pair": format!("{spi_in:08x}"), "active": d.active,
                "packets": o.counters().packets(), "bytes": o.counters().bytes(), "owner": owner_lcore(o),
                "worker": d.worker, "mtu": o.egress_mtu()}));
        }
    }
    let out = policy_counts(&current.spd_out, &hits_out, |t: &OutboundTarget| {
        t.sa.as_ref().map(|sa| format!("{:08x}", sa.spi))
    });
    let inb = policy_counts(&current.spd_in, &hits_in, |_: &()| None);
    let omitted = current.spd_out.len().saturating_sub(POLICIES_LISTED)
        + current.spd_in.len().saturating_sub(POLICIES_LISTED);
    let punted = s.control.map_or(0, |c| c.punted);
    let injected = s.control.map_or(0, |c| c.injected);
    serde_json::json!({
        "seconds": sh.started.elapsed().as_secs_f64(),
        "answered_arp_and_echo": answered,
        "icmp": {
            "time_exceeded_sent": icmp.time_exceeded_sent,
            "too_big_sent": icmp.too_big_sent,
            "rate_limited": icmp.rate_limited,
            "not_reportable": icmp.not_reportable,
            "not_sent": icmp.not_sent,
            "fragmented": icmp.fragmented,
            "fragments": icmp.fragments,
            "outer_fragmented": icmp.outer_fragmented,
            "outer_fragments": icmp.outer_fragments,
        },
        "ports": ports,
        "drops": dropmap,
        "sas": sas,
        "policies": {"out": out, "in": inb, "omitted": omitted},
        "spd_flow_cache": {"hits": cache.hits, "misses": cache.misses, "bypassed": cache.bypassed},
        "control": s.control.map(|_| serde_json::json!({"punted": punted, "injected": injected})),
        "neighbours": {"entries": neigh_entries, "requests": neigh.requests,
            "learned": neigh.learned, "failed": neigh.failed, "evicted": neigh.evicted},
        "reassembly": {"fragments": reasm.fragments, "reassembled": reasm.reassembled,
            "timed_out": reasm.timed_out, "evicted": reasm.evicted,
            "overlaps": reasm.overlaps, "malformed": reasm.malformed, "too_big": reasm.too_big},
        "workers": workers,
        "vrrp": vrrp_json(sh, s.vrrp),
    })
}

/// The VRRP routers' states and counters, and the advertisements refused.
fn vrrp_json(sh: &Shared, runs: &[VrrpRun]) -> serde_json::Value {
    if runs.is_empty() {
        return serde_json::Value::Null;
    }
    let now = sh.started.elapsed().as_millis() as u64;
    let routers: Vec<serde_json::Value> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let c = r.router.config();
            let n = r.router.counters();
            serde_json::json!({
                "interface": sh.ifaces[r.port].name,
                "vrid": c.vrid,
                "priority": c.priority,
                "state": r.router.state().as_str(),
                "priority": r.router.priority(),
                "master": r.router.master_ip().map(|a| a.to_string()),
                "vips": c.vips.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "vmac": sh.vrrp[i].vmac.map(fmt_mac),
                "interval_ms": u64::from(c.interval_cs) * 10,
                "seconds_in_state": now.saturating_sub(r.since_ms) as f64 / 1000.0,
                "adverts_in": n.adverts_in,
                "adverts_out": n.adverts_out,
                "became_master": n.became_master,
                "faults": n.faults,
                "priority_zero_in": n.priority_zero_in,
                "addr_list_mismatch": n.addr_list_mismatch,
                "adverts_via_sync": n.adverts_via_sync,
                "yields_via_sync": n.yields_via_sync,
            })
        })
        .collect();
    let mut refused = serde_json::Map::new();
    for r in vrrp::Refusal::ALL {
        refused.insert(
            r.as_str().into(),
            sh.vrrp_refused[r.index()].load(Ordering::Relaxed).into(),
        );
    }
    refused.insert(
        "queue_full".into(),
        sh.vrrp_refused[vrrp::Refusal::ALL.len()]
            .load(Ordering::Relaxed)
            .into(),
    );
    refused.insert(
        "other_vrid".into(),
        sh.vrrp_refused[vrrp::Refusal::ALL.len() + 1]
            .load(Ordering::Relaxed)
            .into(),
    );
    serde_json::json!({"routers": routers, "refused": refused})
}

/// A VRRP virtual router, run by the main lcore.
struct VrrpRun {
    router: vrrp::Router,
    /// Its port.
    port: usize,
    /// Its sync group.
    group: Option<String>,
    /// The ports whose links it tracks (its own first).
    track: Vec<usize>,
    /// Whether a lost control plane puts it in fault (`track_ike`).
    track_ike: bool,
    /// When the gratuitous ARPs of a takeover go out once more (ms since start).
    garp_again: Option<u64>,
    /// When the addresses were last announced again because the other gateway claimed them
    /// through the sync (split brain; ms since start).
    reannounced_ms: Option<u64>,
    /// When the state last changed (ms since start).
    since_ms: u64,
}

impl VrrpRun {
    /// Whether a link that router `i` or a member of its sync group tracks is down.
    fn group_link_down(runs: &[VrrpRun], i: usize, sh: &Shared) -> bool {
        let g = &runs[i].group;
        runs.iter().enumerate().any(|(j, r)| {
            (j == i || (g.is_some() && r.group == *g))
                && r.track
                    .iter()
                    .any(|&k| !sh.ifaces[k].link_up.load(Ordering::Relaxed))
        })
    }

    /// Whether another router of router `i`'s sync group hears a master on its link.
    fn group_hears_master(runs: &[VrrpRun], i: usize, now: u64) -> bool {
        let Some(g) = &runs[i].group else {
            return false;
        };
        runs.iter()
            .enumerate()
            .any(|(j, r)| j != i && r.group.as_ref() == Some(g) && r.router.hears_master(now))
    }

    /// Router `i` of a sync group changed state: the others follow (to master, unless they
    /// hear a master themselves and `i` did not take over on a release; to backup).
    fn group_follows(runs: &mut [VrrpRun], i: usize, sh: &Shared, now: u64, main: &mut Pipeline) {
        let Some(g) = runs[i].group.clone() else {
            return;
        };
        let master = runs[i].router.state() == vrrp::State::Master;
        // A takeover on the master's priority 0 pulls every member along: that gateway leaves
        // all its links, and may not say so on one that failed (a member that still hears a
        // master takes over once that master missed one advertisement).
        let released = runs[i].router.took_over_on_release();
        for (j, r) in runs.iter_mut().enumerate() {
            if j == i || r.group.as_ref() != Some(&g) {
                continue;
            }
            let step = if master {
                match (r.router.hears_master(now), released) {
                    (false, _) => r.router.follow_to_master(now),
                    (true, true) => r.router.hasten(now),
                    (true, false) => continue,
                }
            } else {
                r.router.follow_to_backup(now)
            };
            r.apply(sh, j, step, now, main);
        }
    }

    /// Carries out what a step of router `i` asks: the advertisement, and on a change of state
    /// the pipelines' view of it and, for a new master, gratuitous ARPs.
    fn apply(&mut self, sh: &Shared, i: usize, step: vrrp::Step, now: u64, main: &mut Pipeline) {
        let iface = &sh.ifaces[self.port];
        if let Some(priority) = step.advertise {
            let c = self.router.config();
            let len = vrrp::advert_frame_len(c.primary, &c.vips);
            let mac = sh.vrrp[i].vmac.unwrap_or(iface.mac);
            send_frame(main, self.port, len, |f| {
                vrrp::advert_frame(f, mac, c.primary, c.vrid, priority, c.interval_cs, &c.vips)
            });
        }
        if let Some(state) = step.became {
            let master = state == vrrp::State::Master;
            sh.vrrp[i].master.store(master, Ordering::Release);
            self.since_ms = now;
            tracing::info!(
                interface = %iface.name,
                vrid = self.router.config().vrid,
                state = state.as_str(),
                master = ?self.router.master_ip(),
                "VRRP state"
            );
            if master {
                self.announce(sh, i, main);
                self.garp_again = Some(now + 2000);
            } else {
                self.garp_again = None;
            }
        }
    }

    /// Gratuitous ARP for each virtual address, so that the link's neighbours move them here
    /// (from the virtual MAC, if router `i` uses one: the switches learn where it went).
    fn announce(&self, sh: &Shared, i: usize, main: &mut Pipeline) {
        let mac = sh.vrrp[i].vmac.unwrap_or(sh.ifaces[self.port].mac);
        for &ip in &self.router.config().vips {
            send_frame(main, self.port, vrrp::ANNOUNCE_FRAME_LEN, |f| {
                vrrp::announce(f, mac, ip)
            });
        }
    }
}

/// Router advertisements on one link, sent by the main lcore.
struct RaRun {
    link: dataplane::gateway_config::RaLink,
    schedule: ra::Schedule,
    /// The port's solicitation count when last looked at.
    solicits: u64,
}

impl RaRun {
    /// Who speaks for the link now, and how: (source address, MAC), or `None` while this
    /// gateway does not advertise (its VRRP router is not master, or the link is down).
    fn speaker(&self, sh: &Shared) -> Option<(Ipv6Addr, [u8; 6])> {
        let iface = &sh.ifaces[self.link.interface];
        if !iface.link_up.load(Ordering::Relaxed) {
            return None;
        }
        match self.link.vrrp {
            Some((i, vip)) => sh.vrrp[i]
                .master
                .load(Ordering::Acquire)
                .then(|| (vip, sh.vrrp[i].vmac.unwrap_or(iface.mac))),
            None => iface
                .addrs6
                .iter()
                .find(|a| a.is_unicast_link_local())
                .map(|&a| (a, iface.mac)),
        }
    }

    /// Starts or stops with the speaker, takes note of solicitations, and sends what is due.
    fn run(&mut self, sh: &Shared, now: u64, main: &mut Pipeline) {
        let iface = &sh.ifaces[self.link.interface];
        let speaker = self.speaker(sh);
        match speaker {
            Some(_) => self.schedule.start(now),
            None => self.schedule.stop(),
        }
        let n = iface.solicits.load(Ordering::Relaxed);
        if n != self.solicits {
            self.solicits = n;
            self.schedule.solicited(now);
        }
        if let Some((src, mac)) = speaker {
            if self.schedule.due(now, &self.link.config) {
                self.send(sh, src, mac, self.link.config.lifetime_s, main);
            }
        }
    }

    fn send(&self, sh: &Shared, src: Ipv6Addr, mac: [u8; 6], lifetime_s: u16, main: &mut Pipeline) {
        let c = &self.link.config;
        if send_frame(main, self.link.interface, c.frame_len(), |f| {
            ra::advert_frame(f, c, mac, src, lifetime_s)
        }) {
            sh.ifaces[self.link.interface]
                .ra_sent
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// At shutdown: an advertisement with router lifetime 0 if this gateway alone speaks for
    /// the link (not through VRRP) and a router lifetime was given. Whether one was sent.
    fn last_word(&mut self, sh: &Shared, main: &mut Pipeline) -> bool {
        if self.link.vrrp.is_some() || self.link.config.lifetime_s == 0 {
            return false;
        }
        match self.speaker(sh) {
            Some((src, mac)) => {
                self.send(sh, src, mac, 0, main);
                true
            }
            None => false,
        }
    }
}

/// Sends a frame of at most `len` bytes that `build` writes, from the main lcore out of port
/// `k`. Whether it was built and queued (a full queue drops and counts it).
fn send_frame(
    main: &mut Pipeline,
    k: usize,
    len: usize,
    build: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> bool {
    let Some(mut m) = main.pool.alloc() else {
        main.drops.inc(DropReason::NoMbuf);
        return false;
    };
    let Some(n) = m.append(len).ok().and_then(build) else {
        main.drops.inc(DropReason::Malformed);
        return false;
    };
    if m.trim(len - n).is_ok() {
        push_tx(&mut main.q, k, m, &mut main.drops);
        return true;
    }
    false
}

/// The live counters line (`--stats-every-ms`): ports, SAs, drops.
fn live_line(v: &serde_json::Value) -> String {
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let ports: Vec<String> = list("ports")
        .iter()
        .map(|p| {
            format!(
                "{}{} rx {} tx {}",
                p["name"].as_str().unwrap_or("?"),
                if p["link"] == "down" {
                    " (link down)"
                } else {
                    ""
                },
                p["rx_frames"],
                p["tx_frames"]
            )
        })
        .collect();
    let sas: Vec<String> = list("sas")
        .iter()
        .map(|s| {
            format!(
                "spi {} {} {} pkts {} bytes{}",
                s["spi"].as_str().unwrap_or("?"),
                s["direction"].as_str().unwrap_or("?"),
                s["packets"],
                s["bytes"],
                if s["active"] == serde_json::Value::Bool(false) {
                    " (standby)"
                } else {
                    ""
                }
            )
        })
        .collect();
    let drops: Vec<String> = v["drops"]
        .as_object()
        .map(|m| m.iter().map(|(k, n)| format!("{k}={n}")).collect())
        .unwrap_or_default();
    let vrrp: String = v["vrrp"]["routers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                " | vrrp {} vrid {} {}",
                r["interface"].as_str().unwrap_or("?"),
                r["vrid"],
                r["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    format!(
        "[{:>7.1}s] {}{vrrp} | {} | drops: {}",
        v["seconds"].as_f64().unwrap_or(0.0),
        ports.join(", "),
        sas.join(", "),
        if drops.is_empty() {
            "none".into()
        } else {
            drops.join(" ")
        }
    )
}

/// Replaces the stats file atomically (write, then rename).
fn write_stats(path: &std::path::Path, v: &serde_json::Value) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, format!("{v}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// What waits for the [`Writer`]: the newest stats snapshot (a newer one replaces it; the
/// writer serializes it, off the main lcore) and the live lines not printed yet.
#[derive(Default)]
struct Pending {
    file: Option<serde_json::Value>,
    lines: std::collections::VecDeque<String>,
    done: bool,
}

/// Live lines that may wait for the writer; more are skipped.
const LINES_WAITING: usize = 8;

/// Writes the stats file and the live lines on a thread of its own. A file write can block
/// for seconds: with the tests' captures being written out, an ext4 journal commit held the
/// stats file's create-and-rename for up to 4.4 s, and the main lcore, which wrote it itself
/// then, sent no IKE datagram for that long (both gateways at once, so DPD and rekey requests
/// went unanswered and were sent again). Stdout may be a terminal or a pipe that is slow to
/// drain, or closed. A snapshot not yet written when a newer one comes is replaced by it, so
/// the file is never more than one write behind; both kinds of skip are counted.
struct Writer {
    shared: Arc<(Mutex<Pending>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    skipped: u64,
}

impl Writer {
    fn start(file: Option<PathBuf>) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(Pending::default()), std::sync::Condvar::new()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fg-stats".into())
            .spawn(move || {
                let (m, cv) = &*theirs;
                loop {
                    let (snapshot, lines, done) = {
                        let mut p = m.lock().unwrap_or_else(|e| e.into_inner());
                        while p.file.is_none() && p.lines.is_empty() && !p.done {
                            p = cv.wait(p).unwrap_or_else(|e| e.into_inner());
                        }
                        (p.file.take(), std::mem::take(&mut p.lines), p.done)
                    };
                    let t = Instant::now();
                    if !lines.is_empty() {
                        // A closed stdout loses the lines, not the thread.
                        use std::io::Write;
                        let mut o = std::io::stdout().lock();
                        for l in &lines {
                            let _ = writeln!(o, "{l}");
                        }
                        let _ = o.flush();
                    }
                    if let (Some(v), Some(p)) = (snapshot, &file) {
                        write_stats(p, &v);
                    }
                    let ms = t.elapsed().as_millis() as u64;
                    if ms >= 1000 {
                        tracing::warn!(
                            ms,
                            "writing the stats took long (a slow file system or stdout)"
                        );
                    }
                    if done {
                        break;
                    }
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
            skipped: 0,
        })
    }

    /// Hands over the stats file's next snapshot, replacing any not written yet.
    fn send_file(&mut self, v: serde_json::Value) {
        self.hand(|p| p.file.replace(v).is_some());
    }

    /// Hands over a live line; skipped when [`LINES_WAITING`] are waiting already.
    fn send_line(&mut self, line: String) {
        self.hand(|p| {
            let full = p.lines.len() >= LINES_WAITING;
            if !full {
                p.lines.push_back(line);
            }
            full
        });
    }

    /// Applies `put` (which says whether something was skipped) and wakes the thread.
    fn hand(&mut self, put: impl FnOnce(&mut Pending) -> bool) {
        let (m, cv) = &*self.shared;
        let skipped = put(&mut m.lock().unwrap_or_else(|e| e.into_inner()));
        cv.notify_one();
        if skipped {
            self.skipped += 1;
            if self.skipped.is_power_of_two() {
                tracing::warn!(
                    skipped = self.skipped,
                    "stats writer behind: snapshots or live lines skipped so far"
                );
            }
        }
    }

    /// Waits until everything handed over is written, and stops the thread.
    fn finish(&mut self) {
        let Some(t) = self.thread.take() else {
            return;
        };
        let (m, cv) = &*self.shared;
        m.lock().unwrap_or_else(|e| e.into_inner()).done = true;
        cv.notify_one();
        let _ = t.join();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// CHILD_SAs installed by the control plane, by inbound SPI.
#[derive(Default)]
struct Dynamic {
    sas: BTreeMap<u32, DynSa>,
    installed: u64,
    /// On-demand policies: (tunnel, child) -> (local_ts, remote_ts).
    traps: BTreeMap<(String, String), Trap>,
    /// The next on-demand policy id (ids stay with their trap: a worker's acquire may name
    /// one from an older version of the tables).
    next_trap: u32,
    /// Worker pipelines: a per-resource pair for a worker this data plane does not have (the
    /// other gateway of an HA pair had more) is an ordinary pair here.
    workers: u16,
}

/// An on-demand policy: (local_ts, remote_ts) and its policy id.
struct Trap {
    local_ts: Vec<IpPrefix>,
    remote_ts: Vec<IpPrefix>,
    id: u32,
}

/// Policy ids of on-demand policies start here.
const TRAP_POLICY_BASE: u32 = 20_000;

struct DynSa {
    tunnel: String,
    child: String,
    spi_out: u32,
    local: IpAddr,
    local_ts: Vec<IpPrefix>,
    remote_ts: Vec<IpPrefix>,
    /// None while larval (inbound only).
    out: Option<Arc<OutboundSa>>,
    /// The outbound SA's parameters, to rebuild it when the peer moves.
    params: Option<dataplane::sa::SaParams>,
    inb: Arc<InboundSa>,
    /// Outbound traffic of its (tunnel, child) uses this one; of a per-resource pair, that
    /// worker's outbound traffic of it.
    active: bool,
    order: u64,
    /// A per-resource SA's worker ([`ctl::ChildSa::worker`]).
    worker: Option<u16>,
}

impl DynSa {
    /// Whether `o` takes turns with this pair as the (tunnel, child)'s outbound SA (of the
    /// same worker, for per-resource pairs): one of them is active at a time.
    fn same_slot(&self, o: &DynSa) -> bool {
        self.tunnel == o.tunnel && self.child == o.child && self.worker == o.worker
    }
}

/// Priority of the policies of negotiated CHILD_SAs: after the configuration's explicit rules
/// of default priority (100), before catch-alls.
const DYNAMIC_PRIORITY: u32 = 500;

impl Dynamic {
    fn activate(&mut self, spi_in: u32) {
        let Some(d) = self.sas.get(&spi_in).filter(|d| d.out.is_some()) else {
            return;
        };
        let (t, c, w) = (d.tunnel.clone(), d.child.clone(), d.worker);
        for (k, x) in self.sas.iter_mut() {
            if x.tunnel == t && x.child == c && x.worker == w {
                x.active = *k == spi_in;
            }
        }
    }

    /// Applies a command; returns whether the tables must be rebuilt.
    fn apply(&mut self, cmd: ctl::Command, sad: &mut Sad<Arc<InboundSa>>) -> Result<bool, String> {
        match cmd {
            ctl::Command::Add { mut sa, .. } => {
                sa.worker = sa.worker.filter(|w| *w < self.workers);
                let (o, i) = sa.params()?;
                // The full pair replaces its larval inbound half, keeping the anti-replay
                // window of what that half already accepted (and its counters).
                let larval = match self.sas.get(&sa.spi_in) {
                    Some(old) if old.out.is_none() => Some(old.inb.clone()),
                    Some(_) => return Err(format!("SPI {:08x} is already installed", sa.spi_in)),
                    None => None,
                };
                let inb = match &larval {
                    Some(l) => l.replacing(&i),
                    None => InboundSa::new(&i),
                };
                let inb = Arc::new(inb.map_err(|e| e.to_string())?);
                let out = match &o {
                    Some(o) => {
                        let o = OutboundSa::new(o).map_err(|e| e.to_string())?;
                        // A per-resource SA is its worker's from the start: no other pipeline
                        // seals with it, unless it stands in as the fallback.
                        if let Some(w) = sa.worker {
                            o.owner(w);
                        }
                        Some(Arc::new(o))
                    }
                    None => None,
                };
                if larval.is_some() {
                    if let Some(old) = self.sas.remove(&sa.spi_in) {
                        sad.remove(sa.spi_in, Some(old.local));
                    }
                }
                sad.insert(sa.spi_in, Some(sa.local), inb.clone());
                let sibling_active = self.sas.values().any(|x| {
                    x.tunnel == sa.tunnel
                        && x.child == sa.child
                        && x.worker == sa.worker
                        && x.active
                });
                self.installed += 1;
                let has_out = out.is_some();
                self.sas.insert(
                    sa.spi_in,
                    DynSa {
                        tunnel: sa.tunnel.clone(),
                        child: sa.child.clone(),
                        spi_out: sa.spi_out,
                        local: sa.local,
                        local_ts: sa.local_ts.clone(),
                        remote_ts: sa.remote_ts.clone(),
                        out,
                        params: o,
                        inb,
                        active: false,
                        order: self.installed,
                        worker: sa.worker,
                    },
                );
                // A worker without a per-resource SA of its own uses the fallback meanwhile,
                // so one waits for its `activate` (or `outbound_now`) even as the first.
                let first_takes_over = !sibling_active && sa.worker.is_none();
                if has_out && (sa.outbound_now || first_takes_over) {
                    self.activate(sa.spi_in);
                }
                tracing::info!(tunnel = %sa.tunnel, child = %sa.child,
                    spi_in = format_args!("{:08x}", sa.spi_in),
                    spi_out = format_args!("{:08x}", sa.spi_out), larval = !has_out,
                    worker = ?sa.worker, "SA pair installed");
                Ok(true)
            }
            ctl::Command::Activate { spi_in, .. } => {
                self.activate(spi_in);
                Ok(true)
            }
            ctl::Command::Deactivate { spi_in, .. } => {
                let d = self.sas.get_mut(&spi_in);
                let was = d.as_ref().is_some_and(|d| d.active);
                if let Some(d) = d {
                    d.active = false;
                }
                Ok(was)
            }
            ctl::Command::Remove { spi_in, .. } => {
                let Some(d) = self.sas.remove(&spi_in) else {
                    return Ok(false);
                };
                sad.remove(spi_in, Some(d.local));
                tracing::info!(tunnel = %d.tunnel, child = %d.child,
                    spi_in = format_args!("{spi_in:08x}"), "SA pair removed");
                if d.active {
                    let next = self
                        .sas
                        .iter()
                        .filter(|(_, x)| d.same_slot(x) && x.out.is_some())
                        .max_by_key(|(_, x)| x.order)
                        .map(|(k, _)| *k);
                    if let Some(k) = next {
                        self.activate(k);
                    }
                }
                Ok(true)
            }
            ctl::Command::Trap {
                tunnel,
                child,
                local_ts,
                remote_ts,
                ..
            } => {
                let id = TRAP_POLICY_BASE + self.next_trap;
                self.next_trap = self.next_trap.wrapping_add(1) % (u32::MAX - TRAP_POLICY_BASE);
                self.traps.insert(
                    (tunnel, child),
                    Trap {
                        local_ts,
                        remote_ts,
                        id,
                    },
                );
                Ok(true)
            }
            ctl::Command::Move {
                spi_in,
                remote,
                remote_port,
                ..
            } => {
                let d = self
                    .sas
                    .get_mut(&spi_in)
                    .ok_or(format!("SPI {spi_in:08x} is not installed"))?;
                let p = d
                    .params
                    .as_mut()
                    .ok_or("a larval SA has no outbound half")?;
                if let Some(t) = &mut p.tunnel {
                    t.remote = remote;
                }
                if let Some(u) = &mut p.udp_encap {
                    u.remote_port = remote_port;
                }
                tracing::info!(spi_in = format_args!("{spi_in:08x}"), %remote, remote_port,
                    "peer moved: outbound SA follows");
                // The sequence numbers carry on: the peer's replay window has seen them, and
                // they are nonces under the same key. Workers keep sealing with the old copy
                // until they pick up the new tables, so both copies draw from one counter
                // (reading the old counter here and starting the new copy after it would
                // race with a worker's last reservation on the old one).
                let moved = match &d.out {
                    Some(o) => o.moved(p),
                    None => OutboundSa::new(p),
                };
                d.out = Some(Arc::new(moved.map_err(|e| e.to_string())?));
                Ok(true)
            }
            ctl::Command::Untrap { tunnel, child, .. } => {
                Ok(self.traps.remove(&(tunnel, child)).is_some())
            }
            ctl::Command::Dump { .. }
            | ctl::Command::Alive { .. }
            | ctl::Command::SyncAdverts { .. } => Ok(false),
        }
    }

    /// The (tunnel, child) of an on-demand policy id.
    fn trap_of(&self, policy_id: u32) -> Option<&(String, String)> {
        self.traps
            .iter()
            .find(|(_, t)| t.id == policy_id)
            .map(|(k, _)| k)
    }

    fn build(
        &self,
        static_out: &[Rule<OutboundTarget>],
        static_in: &[Rule<()>],
    ) -> Result<(Spd<OutboundTarget>, Spd<()>), String> {
        let mut out = static_out.to_vec();
        let mut inb = static_in.to_vec();
        let mut seen = Vec::new();
        let pairs_of = |d: &DynSa| -> Vec<(IpPrefix, IpPrefix)> {
            d.local_ts
                .iter()
                .flat_map(|l| d.remote_ts.iter().map(move |r| (*l, *r)))
                .filter(|(l, r)| l.is_ipv4() == r.is_ipv4())
                .collect()
        };
        // Per-resource SAs in use, by selector pair: each worker's own, for the rule of the
        // fallback with the same selectors (a rule of their own where there is none).
        type PerWorker = (
            (IpPrefix, IpPrefix),
            Vec<Option<Arc<OutboundSa>>>,
            bool,
            usize,
        );
        let mut per_worker: Vec<PerWorker> = Vec::new();
        for (n, d) in self.sas.values().enumerate().filter(|(_, d)| d.active) {
            let (Some(w), Some(o)) = (d.worker, &d.out) else {
                continue;
            };
            for lr in pairs_of(d) {
                let k = match per_worker.iter().position(|(x, ..)| *x == lr) {
                    Some(k) => k,
                    None => {
                        per_worker.push((lr, Vec::new(), false, n));
                        per_worker.len() - 1
                    }
                };
                let v = &mut per_worker[k].1;
                if v.len() <= usize::from(w) {
                    v.resize(usize::from(w) + 1, None);
                }
                v[usize::from(w)] = Some(o.clone());
            }
        }
        for (n, d) in self.sas.values().enumerate() {
            for (l, r) in pairs_of(d) {
                if let (true, None, Some(o)) = (d.active, d.worker, &d.out) {
                    let own = per_worker.iter_mut().find(|(x, ..)| *x == (l, r));
                    let workers = match own {
                        Some((_, v, used, _)) => {
                            *used = true;
                            v.clone()
                        }
                        None => Vec::new(),
                    };
                    out.push(Rule {
                        priority: DYNAMIC_PRIORITY,
                        selector: selector(l, r),
                        action: Action::Protect(OutboundTarget {
                            policy_id: 10_000 + n as u32,
                            sa: Some(o.clone()),
                            per_worker: workers,
                        }),
                    });
                }
                if !seen.contains(&(l, r)) {
                    seen.push((l, r));
                    // Traffic of a tunnel must arrive protected (RFC 4301 §5.2).
                    inb.push(Rule {
                        priority: DYNAMIC_PRIORITY,
                        selector: selector(r, l),
                        action: Action::Protect(()),
                    });
                }
            }
        }
        // Per-resource SAs without a fallback of their selectors (the peer deleted it): the
        // first stands in for the workers that have none.
        for ((l, r), v, used, n) in per_worker {
            if used {
                continue;
            }
            out.push(Rule {
                priority: DYNAMIC_PRIORITY,
                selector: selector(l, r),
                action: Action::Protect(OutboundTarget {
                    policy_id: 10_000 + n as u32,
                    sa: v.iter().flatten().next().cloned(),
                    per_worker: v,
                }),
            });
        }
        // On-demand policies sit just below the SAs' own: they only catch traffic while no
        // SA pair of their (tunnel, child) is active.
        for t in self.traps.values() {
            for l in &t.local_ts {
                for r in t.remote_ts.iter().filter(|r| r.is_ipv4() == l.is_ipv4()) {
                    out.push(Rule {
                        priority: DYNAMIC_PRIORITY + 1,
                        selector: selector(*l, *r),
                        action: Action::Protect(OutboundTarget {
                            policy_id: t.id,
                            sa: None,
                            per_worker: Vec::new(),
                        }),
                    });
                }
            }
        }
        Ok((
            Spd::build(out).map_err(|e| e.to_string())?,
            Spd::build(inb).map_err(|e| e.to_string())?,
        ))
    }

    fn report(&self) -> Vec<ctl::SaReport> {
        self.sas
            .iter()
            .map(|(spi_in, d)| ctl::SaReport {
                tunnel: d.tunnel.clone(),
                child: d.child.clone(),
                spi_in: *spi_in,
                spi_out: d.spi_out,
                active: d.active,
                out_packets: d.out.as_ref().map_or(0, |o| o.counters().packets()),
                out_bytes: d.out.as_ref().map_or(0, |o| o.counters().bytes()),
                in_packets: d.inb.counters().packets(),
                in_bytes: d.inb.counters().bytes(),
                out_seq: d.out.as_ref().map(|o| o.last_seq()),
                worker: d.worker,
                in_seq: Some(d.inb.window().top()),
            })
            .collect()
    }
}

fn selector(src: IpPrefix, dst: IpPrefix) -> dataplane::spd::Selector {
    dataplane::spd::Selector {
        src,
        dst,
        proto: None,
        src_ports: dataplane::spd::PortRange::ANY,
        dst_ports: dataplane::spd::PortRange::ANY,
    }
}

/// The data plane's end of the control-plane channel.
struct Control {
    chan: shmring::Channel,
    /// Its file, removed when the Control goes ([`Drop`]).
    path: std::path::PathBuf,
    punted: u64,
    injected: u64,
    /// Last acquire per (tunnel, child): at most one a second.
    acquired: std::collections::HashMap<(String, String), Instant>,
    /// Lifetime polls so far (every tenth sends the counters).
    reports: u64,
    /// SA reports sent so far (each report's number).
    reports_sent: u64,
    /// Injected datagrams waiting for their next hop's ARP / ND answer (ms since start when
    /// parked, the encoded datagram): the first IKE message after a start or a VRRP takeover
    /// would otherwise be lost and cost the exchange a retransmission (2 s).
    parked: std::collections::VecDeque<(u64, Vec<u8>)>,
    /// The injected datagram being sent, copied out of its slot first: the other process can
    /// write shared memory while we parse it (kept: no allocation per datagram).
    inject_copy: Vec<u8>,
    /// When the control plane last sent a command ([`ctl::Command::Alive`] every
    /// [`ctl::ALIVE_EVERY`]); None until it first sent an Alive.
    last_alive: Option<Instant>,
    /// A `dump` came: the VRRP state goes out with the report (empty without VRRP), so that a
    /// starting control plane knows which addresses are its own before it starts tunnels.
    dumped: bool,
    /// Worker pipelines (`Hello`, `Sas`): per-resource SAs are made for each.
    workers: u16,
    /// The other gateway's VRRP masters from its last sync snapshot
    /// ([`ctl::Command::SyncAdverts`]), for the routers to take (at most
    /// [`ctl::SYNC_ADVERTS_MAX`]).
    sync_adverts: Vec<ctl::VrrpMaster>,
}

impl Control {
    /// The control plane said it was alive once, and has been silent for
    /// [`ctl::ALIVE_LOST`] since.
    fn lost(&self) -> bool {
        self.last_alive
            .is_some_and(|t| t.elapsed() >= ctl::ALIVE_LOST)
    }
}

impl Drop for Control {
    /// The channel file goes with the data plane (marked retired first, so that
    /// ferrogate-ike waits for a new one), also when start-up fails after it was made. Only
    /// the file this process made (by its generation, not the PID: ferrogates in other PID
    /// namespaces may share /dev/shm): a later ferrogate may have made one anew at the path.
    fn drop(&mut self) {
        let ours = shmring::Channel::open(&self.path)
            .is_ok_and(|c| c.generation() == self.chan.generation());
        if ours {
            let _ = shmring::Channel::remove(&self.path);
        }
    }
}

/// Injected datagrams parked at most (further ones are dropped as unresolved).
const PARKED_MAX: usize = 64;
/// How long a parked datagram waits for its next hop.
const PARK_MS: u64 = 1000;

impl Control {
    fn create(path: &std::path::Path, workers: u16) -> Result<Control, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let chan = shmring::Channel::create(
            path,
            shmring::Layout {
                rings: ctl::ring::COUNT,
                slot_size: ctl::SLOT_SIZE,
                slots: ctl::SLOTS,
            },
        )
        .map_err(|e| format!("control channel {}: {e}", path.display()))?;
        let c = Control {
            chan,
            path: path.to_path_buf(),
            punted: 0,
            injected: 0,
            acquired: Default::default(),
            reports: 0,
            reports_sent: 0,
            parked: Default::default(),
            inject_copy: Vec::new(),
            last_alive: None,
            dumped: false,
            workers,
            sync_adverts: Vec::new(),
        };
        c.event(&ctl::Event::Hello {
            v: ctl::VERSION,
            generation: c.chan.generation(),
            workers,
        });
        Ok(c)
    }

    fn event(&self, e: &ctl::Event) {
        if let Ok(mut p) = self.chan.producer(ctl::ring::EVENTS) {
            // A control plane that is not reading loses events, never the data plane.
            let _ = p.push(&e.encode());
        }
    }

    /// Every SA pair with its counters and sequence numbers, in as many ring slots as it
    /// takes (a slot holds ~35 pairs).
    fn report(&mut self, d: &Dynamic) {
        let max = self.chan.layout().max_message();
        self.reports_sent += 1;
        if let Ok(mut p) = self.chan.producer(ctl::ring::EVENTS) {
            let at = shmring::monotonic_ns();
            let report = d.report();
            for part in ctl::Event::sas_parts(self.reports_sent, at, self.workers, &report, max) {
                // A control plane that is not reading loses the report, never the data plane.
                if let Err(e) = p.push(&part) {
                    tracing::debug!("SA report not sent: {e}");
                    break;
                }
            }
        }
    }

    /// Drains the command ring; true if the tables changed.
    fn poll_commands(&mut self, d: &mut Dynamic, sad: &mut Sad<Arc<InboundSa>>) -> bool {
        let Ok(mut cons) = self.chan.consumer(ctl::ring::COMMANDS) else {
            return false;
        };
        let mut changed = false;
        let mut dump = false;
        loop {
            // Copy out of shared memory once, then parse (the slot is wiped after this).
            let msg = match cons.pop_with(|b| zeroize::Zeroizing::new(b.to_vec())) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "control channel");
                    break;
                }
            };
            let r = ctl::Command::decode(&msg).and_then(|c| {
                dump |= matches!(c, ctl::Command::Dump { .. });
                // Tracking starts with the first Alive (a control plane that never sends one,
                // an older one, is not tracked); then any command says it is alive.
                if matches!(c, ctl::Command::Alive { .. }) || self.last_alive.is_some() {
                    self.last_alive = Some(Instant::now());
                }
                if let ctl::Command::SyncAdverts { mut masters, .. } = c {
                    // The newest snapshot's word replaces an older one not yet taken.
                    masters.truncate(ctl::SYNC_ADVERTS_MAX);
                    self.sync_adverts = masters;
                    return Ok(false);
                }
                d.apply(c, sad)
            });
            match r {
                Ok(c) => changed |= c,
                Err(reason) => {
                    tracing::warn!(%reason, "control command refused");
                    self.event(&ctl::Event::Refused {
                        v: ctl::VERSION,
                        reason,
                    });
                }
            }
        }
        drop(cons);
        if dump {
            self.report(d);
            self.dumped = true;
        }
        changed
    }

    fn acquire(&mut self, tunnel: &str, child: &str, src: IpAddr, dst: IpAddr) {
        let k = (tunnel.to_string(), child.to_string());
        if self
            .acquired
            .get(&k)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.acquired.insert(k, Instant::now());
        self.event(&ctl::Event::Acquire {
            v: ctl::VERSION,
            tunnel: tunnel.to_string(),
            child: child.to_string(),
            src,
            dst,
        });
    }

    /// Hands an IKE datagram (an IP packet) to the control plane.
    fn punt(&mut self, ip: &[u8], scratch: &mut [u8], drops: &mut DropCounters) {
        let Some(n) = ctl::Datagram::from_ip(ip).and_then(|d| d.encode_into(scratch)) else {
            drops.inc(DropReason::Malformed);
            return;
        };
        match self
            .chan
            .producer(ctl::ring::PUNT)
            .map(|mut p| p.push(&scratch[..n]))
        {
            Ok(Ok(())) => self.punted += 1,
            _ => drops.inc(DropReason::ControlPlane),
        }
    }

    /// The frame for an encoded injected datagram, and its port.
    fn build_inject(
        b: &[u8],
        pool: &Mempool,
        fib: &mut Fib,
        ifaces: &[Iface],
        not_ours: &impl Fn(IpAddr) -> bool,
    ) -> Result<(Mbuf, usize), DropReason> {
        let d = ctl::Datagram::decode(b).ok_or(DropReason::Malformed)?;
        // From a virtual address the other gateway holds: not to be sent.
        if not_ours(d.local.ip()) {
            return Err(DropReason::VrrpBackup);
        }
        let (out, mac) = fib.lookup(d.remote.ip())?;
        let mut m = pool.alloc().ok_or(DropReason::NoMbuf)?;
        let len = 40 + 8 + 4 + d.message.len();
        let buf = m.append(len).map_err(|_| DropReason::NoTailroom)?;
        let n = d.to_ip(buf).ok_or(DropReason::Malformed)?;
        m.trim(len - n).map_err(|_| DropReason::Malformed)?;
        let et = if d.remote.is_ipv4() {
            ethernet::ethertype::IPV4
        } else {
            ethernet::ethertype::IPV6
        };
        let h = m
            .prepend(ethernet::HEADER_LEN)
            .map_err(|_| DropReason::NoHeadroom)?;
        h[..6].copy_from_slice(&mac);
        h[6..12].copy_from_slice(&ifaces[out].mac);
        h[12..14].copy_from_slice(&et.to_be_bytes());
        Ok((m, out))
    }

    /// The next IKE datagram to send, built into an mbuf with its Ethernet header, and the
    /// interface it leaves by. `Some(None)` when one was consumed but could not be sent: it is
    /// counted in `drops` under the reason (no route or neighbour, no mbuf, malformed), or
    /// parked until its next hop answers.
    fn next_inject(
        &mut self,
        pool: &Mempool,
        fib: &mut Fib,
        ifaces: &[Iface],
        drops: &mut DropCounters,
        not_ours: impl Fn(IpAddr) -> bool,
    ) -> Option<Option<(Mbuf, usize)>> {
        // Parked datagrams first, in order: the oldest goes out once its next hop is known, or
        // is dropped after PARK_MS.
        if let Some((at, b)) = self.parked.front() {
            match Self::build_inject(b, pool, fib, ifaces, &not_ours) {
                Err(DropReason::NeighbourUnresolved) if fib.now_ms < at + PARK_MS => {}
                Ok(x) => {
                    self.parked.pop_front();
                    self.injected += 1;
                    return Some(Some(x));
                }
                Err(reason) => {
                    self.parked.pop_front();
                    drops.inc(reason);
                    return Some(None);
                }
            }
        }
        let mut cons = self.chan.consumer(ctl::ring::INJECT).ok()?;
        let copy = &mut self.inject_copy;
        let got = cons.pop_with(|b| {
            copy.clear();
            copy.extend_from_slice(b);
        });
        if !matches!(got, Ok(Some(()))) {
            return None;
        }
        match Self::build_inject(copy, pool, fib, ifaces, &not_ours) {
            Ok(x) => {
                self.injected += 1;
                Some(Some(x))
            }
            // Its next hop is being asked for (ARP / ND): parked until it answers.
            Err(DropReason::NeighbourUnresolved) if self.parked.len() < PARKED_MAX => {
                self.parked.push_back((fib.now_ms, copy.clone()));
                Some(None)
            }
            Err(reason) => {
                drops.inc(reason);
                Some(None)
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(m) => {
            eprintln!("ferrogate: {m}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(&args) {
        Ok(stats) => {
            println!("{stats}");
            if let Some(p) = &args.stats_json {
                if let Err(e) = std::fs::write(p, format!("{stats}\n")) {
                    eprintln!("ferrogate: {}: {e}", p.display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Err(m) => {
            tracing::error!("{m}");
            eprintln!("ferrogate: {m}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-resource pairs (RFC 9611) fill their workers' slots of the rule of the fallback
    /// with the same selectors; one not yet activated waits (its worker keeps using the
    /// fallback); a rekey's pair takes its worker's slot when activated; and once the
    /// fallback is gone a per-resource SA stands in for the workers without one.
    #[test]
    fn per_resource_pairs_fill_their_workers_slots() {
        let mut d = Dynamic {
            workers: 3,
            ..Default::default()
        };
        let mut sad = Sad::new();
        let add = |d: &mut Dynamic, sad: &mut Sad<Arc<InboundSa>>, spi: u32, worker, now| {
            let sa = ctl::ChildSa {
                spi_in: spi,
                spi_out: spi + 0x100,
                worker,
                outbound_now: now,
                ..ctl::ChildSa::example()
            };
            d.apply(
                ctl::Command::Add {
                    v: ctl::VERSION,
                    sa: Box::new(sa),
                },
                sad,
            )
            .unwrap();
        };
        let key = dataplane::spd::FlowKey {
            src: "192.168.10.5".parse().unwrap(),
            dst: "192.168.20.7".parse().unwrap(),
            proto: 17,
            src_port: 1000,
            dst_port: 2000,
        };
        // The SPI each pipeline seals with (None: no rule or no SA).
        let spis = |d: &Dynamic| -> Vec<Option<u32>> {
            let (out, _) = d.build(&[], &[]).unwrap();
            let rule = out.lookup(&key);
            [None, Some(0), Some(1), Some(2)]
                .into_iter()
                .map(|me| match rule.map(|r| &r.action) {
                    Some(Action::Protect(t)) => t.sa_for(me).map(|sa| sa.spi),
                    _ => None,
                })
                .collect()
        };
        add(&mut d, &mut sad, 0x10, None, true);
        assert_eq!(spis(&d), vec![Some(0x110); 4]);
        // Worker 1's pair, made by the peer: waits for its activation.
        add(&mut d, &mut sad, 0x11, Some(1), false);
        assert_eq!(spis(&d), vec![Some(0x110); 4]);
        d.apply(ctl::Command::Activate { v: 1, spi_in: 0x11 }, &mut sad)
            .unwrap();
        assert_eq!(
            spis(&d),
            vec![Some(0x110), Some(0x110), Some(0x111), Some(0x110)]
        );
        // Worker 0's, made by us: at once, and its worker owns it before any packet.
        add(&mut d, &mut sad, 0x12, Some(0), true);
        assert_eq!(
            spis(&d),
            vec![Some(0x110), Some(0x112), Some(0x111), Some(0x110)]
        );
        assert_eq!(d.sas[&0x12].out.as_ref().unwrap().owner_now(), Some(0));
        // Worker 1's rekey (as responder: not yet sending) leaves worker 0 alone.
        add(&mut d, &mut sad, 0x13, Some(1), false);
        assert_eq!(spis(&d)[2], Some(0x111));
        d.apply(ctl::Command::Activate { v: 1, spi_in: 0x13 }, &mut sad)
            .unwrap();
        assert_eq!(
            spis(&d),
            vec![Some(0x110), Some(0x112), Some(0x113), Some(0x110)]
        );
        assert!(d.sas[&0x10].active, "the fallback is still active");
        // Worker 0's, deleted by the peer with none to follow: its worker falls back at once.
        add(&mut d, &mut sad, 0x14, Some(2), true);
        assert_eq!(spis(&d)[3], Some(0x114));
        d.apply(ctl::Command::Deactivate { v: 1, spi_in: 0x14 }, &mut sad)
            .unwrap();
        assert_eq!(spis(&d)[3], Some(0x110));
        assert!(
            sad.get(0x14, "203.0.113.1".parse().unwrap()).is_some(),
            "inbound stays"
        );
        // The fallback goes: a per-resource SA stands in for the others.
        d.apply(ctl::Command::Remove { v: 1, spi_in: 0x10 }, &mut sad)
            .unwrap();
        let now = spis(&d);
        assert_eq!((now[1], now[2]), (Some(0x112), Some(0x113)));
        assert!(now[0] == Some(0x112) || now[0] == Some(0x113));
        assert_eq!(now[3], now[0]);
        // Every inbound SPI is in the SAD.
        for spi in [0x11, 0x12, 0x13] {
            assert!(sad.get(spi, "203.0.113.1".parse().unwrap()).is_some());
        }
    }

    /// A FIFO in the stats file's temporary name stands for a file system that does not
    /// answer (opening it for writing waits for a reader): the main lcore's hand-overs must
    /// not wait for it, a snapshot not written yet is replaced by the next (and counted), and
    /// once the file system answers the file holds the newest.
    #[test]
    fn the_main_lcore_never_waits_for_the_stats_file() {
        let dir = std::env::temp_dir().join(format!("fg-stats-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("stats.json");
        let fifo = file.with_extension("tmp");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let mut w = Writer::start(Some(file.clone())).unwrap();
        w.send_file(serde_json::json!(0));
        // The thread takes snapshot 0 and blocks opening the FIFO.
        let taken = || w.shared.0.lock().unwrap().file.is_none();
        for _ in 0..1000 {
            if taken() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(taken());
        let opened = Arc::new(AtomicBool::new(false));
        let reader = {
            let (fifo, opened) = (fifo.clone(), opened.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                opened.store(true, Ordering::SeqCst);
                std::fs::read_to_string(&fifo).unwrap()
            })
        };
        for n in 1..10 {
            w.send_file(serde_json::json!(n));
        }
        for _ in 0..20 {
            w.send_line("a live line".into());
        }
        assert!(
            !opened.load(Ordering::SeqCst),
            "every hand-over returned while the first write was blocked"
        );
        // Snapshots 1-8 were replaced before they were written; live lines 9-20 found 8
        // waiting.
        assert_eq!(w.skipped, 8 + 12);
        assert_eq!(reader.join().unwrap(), "0\n");
        w.finish();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "9\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
