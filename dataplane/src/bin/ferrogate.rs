//! ferrogate: the DPDK gateway (first slice).
//!
//! ```text
//! ferrogate --config GATEWAY.yaml [--eal "EXTRA EAL ARGS"] [--idle-exit-ms MS] [--stats-json FILE]
//!           [--icmp-errors-per-s N]
//! ```
//!
//! What this slice does: starts EAL with the configured devices, opens every port, and runs
//! one pipeline on the main lcore: frames from inside ports go through SPD-out and ESP encap,
//! frames from outside ports through the inbound path (SAD, replay, decrypt, selectors), and
//! what is forwarded leaves by the longest-prefix route with the static neighbour's MAC.
//! It answers ARP and ICMP echo for its own IPv4 addresses, decrements TTL / hop limit on
//! forwarded packets, and clamps the MSS of TCP SYNs entering a tunnel. It sends ICMP time
//! exceeded when a TTL / hop limit runs out and ICMP fragmentation needed / packet too big
//! when a packet would not fit the outside MTU once encapsulated (or the inside MTU once
//! decapsulated), and fragments IPv4 packets without DF instead (before encapsulation); errors
//! about packets that came out of the tunnel go back through it (module `icmp_err`).
//! Next hops without a static neighbour are resolved by ARP / IPv6 neighbor discovery
//! (`dataplane::neigh`; packets for an unresolved hop are dropped and counted), and outer
//! fragments of ESP are reassembled (`dataplane::reasm`) before decryption.
//! Not yet: worker lcores.
//! `--idle-exit-ms` stops after that long without traffic (tests replay pcap files).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::buf::PacketBuf;
use dataplane::burst::{self, InboundTables, OutboundTables, OutboundTarget, Verdict};
use dataplane::ctl;
use dataplane::dpdk::{Burst, Eal, Mbuf, Mempool, Port, RxQueue, TxQueue, BURST};
use dataplane::drop::{DropCounters, DropReason};
use dataplane::gateway_config::{GatewayConfig, MssClamp, Role};
use dataplane::icmp_err::{self, Error as IcmpError, Oversize};
use dataplane::neigh::{self, NeighTable, Resolution};
use dataplane::net::IpPrefix;
use dataplane::sa::{Direction, InboundSa, OutboundSa};
use dataplane::sad::Sad;
use dataplane::spd::{Action, PolicyHits, Rule, Spd};
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
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: ferrogate --config GATEWAY.yaml [--eal \"EAL ARGS\"] [--idle-exit-ms MS] [--stats-json FILE]\n                 [--stats-every-ms MS] [--idle-sleep-us US] [--control CHANNEL] [--stats-file FILE]\n                 [--icmp-errors-per-s N]";
    let mut it = std::env::args().skip(1);
    let (mut config, mut eal, mut idle_exit, mut stats_json) = (None, Vec::new(), None, None);
    let (mut stats_every, mut idle_sleep, mut control, mut stats_file) =
        (None, Duration::ZERO, None, None);
    let mut icmp_rate = 100;
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
    })
}

/// One opened interface.
struct Iface {
    name: String,
    role: Role,
    port: Port,
    mac: [u8; 6],
    /// Our IPv4 addresses on it (ARP and ICMP echo answer for these).
    addrs: Vec<std::net::Ipv4Addr>,
    /// Our first IPv6 address on it (ICMPv6 errors come from it).
    addr6: Option<std::net::Ipv6Addr>,
    /// All our IPv6 addresses on it (neighbor solicitations are answered for these).
    addrs6: Vec<std::net::Ipv6Addr>,
    /// Its MTU (IP bytes).
    mtu: u16,
    rx: RxQueue,
    tx: TxQueue,
    /// Frames in and out, for the stats.
    rx_frames: u64,
    tx_frames: u64,
}

/// Where a destination goes: interface index and next-hop MAC, resolved by ARP / ND when
/// no static neighbour names it.
struct Fib {
    /// (prefix, interface, next hop), longest prefix first.
    routes: Vec<(IpPrefix, usize, Option<IpAddr>)>,
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

fn run(args: &Args) -> Result<serde_json::Value, String> {
    let cfg = GatewayConfig::load(&args.config).map_err(|e| e.to_string())?;
    let mut eal_args = vec!["ferrogate".to_owned()];
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
    let eal = Eal::init(&eal_refs).map_err(|e| e.to_string())?;
    let pool = Mempool::new_pktmbuf(&eal, "ferrogate", 8191, 256, 2048 + 128)
        .map_err(|e| e.to_string())?;

    let mut ifaces = Vec::new();
    for i in &cfg.interfaces {
        let dev = i.device.split(',').next().unwrap_or(&i.device);
        let port = Port::by_name(&eal, dev).map_err(|e| format!("interface {}: {e}", i.name))?;
        let (mut rx, mut tx) = port
            .start(1, 1, 1024, &pool)
            .map_err(|e| format!("interface {}: {e}", i.name))?;
        let mac = match i.mac {
            Some(m) => m.0,
            None => port.mac().map_err(|e| e.to_string())?,
        };
        ifaces.push(Iface {
            name: i.name.clone(),
            role: i.role,
            port,
            mac,
            addrs: dataplane::host::v4_addrs(i.addresses.iter().map(|a| a.addr)),
            addr6: i.addresses.iter().find_map(|a| match a.addr {
                IpAddr::V6(v) => Some(v),
                IpAddr::V4(_) => None,
            }),
            addrs6: i
                .addresses
                .iter()
                .filter_map(|a| match a.addr {
                    IpAddr::V6(v) => Some(v),
                    IpAddr::V4(_) => None,
                })
                .collect(),
            mtu: i.mtu,
            rx: rx.remove(0),
            tx: tx.remove(0),
            rx_frames: 0,
            tx_frames: 0,
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
    let mut neigh = NeighTable::new(4096);
    for n in &cfg.neighbours {
        neigh.add_static(n.ip, n.mac.0);
    }
    let mut fib = Fib {
        routes,
        neigh,
        asks: Vec::with_capacity(MAX_ASKS),
        now_ms: 0,
    };

    // SAs and policies.
    let mut out_sas: Vec<Option<Arc<OutboundSa>>> = Vec::new();
    let mut sad = Sad::new();
    let mut natt_ports: Vec<u16> = Vec::new();
    for p in &cfg.sas {
        match p.direction {
            Direction::Out => out_sas.push(Some(Arc::new(
                OutboundSa::new(p).map_err(|e| e.to_string())?,
            ))),
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
                }),
                Action::Bypass => Action::Bypass,
                Action::Discard => Action::Discard,
            },
        })
        .collect();
    let static_in = cfg.spd_in.clone();
    // The control-plane channel: IKE on UDP 500 and 4500 goes to ferrogate-ike, and the
    // CHILD_SAs it negotiates are added to the tables between bursts.
    let mut control = match &args.control {
        Some(path) => {
            if !natt_ports.contains(&4500) {
                natt_ports.push(4500);
            }
            Some(Control::create(path)?)
        }
        None => None,
    };
    let mut dynamic = Dynamic::default();
    let (mut spd_out, mut spd_in) = dynamic.build(&static_out, &static_in)?;
    // Per-policy counters, sized to the tables; a rebuilt table keeps the counts of the
    // policies it still has.
    let mut hits_out = PolicyHits::new(spd_out.len());
    let mut hits_in = PolicyHits::new(spd_in.len());
    let mut punt_buf = vec![0u8; dataplane::ctl::SLOT_SIZE as usize];
    let mut last_report = Instant::now();
    let mut last_file = Instant::now() - Duration::from_secs(2);

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
    let mut manners = Manners::new(args.icmp_rate);
    let mut drops = DropCounters::default();
    // Outer fragments of ESP (a path MTU below the peer's packets) are reassembled into mbufs
    // of a pool with 9 KiB data rooms; bigger datagrams are dropped as `reassembly`.
    let mut reasm = dataplane::reasm::Reassembler::new(16, 30_000);
    let jumbo = Mempool::new_pktmbuf(&eal, "ferrogate-reasm", 255, 0, REASM_ROOM + 128)
        .map_err(|e| format!("reassembly mempool: {e}"))?;
    let mut answered = 0u64;
    let mut local = [Local::No; BURST];
    let mut not_ip = 0u64;
    let mut rxb = Burst::new();
    let mut verdicts = [Verdict::Pending; BURST];
    // One pending transmit burst per interface.
    let mut txb: Vec<Burst> = ifaces.iter().map(|_| Burst::new()).collect();
    let started = Instant::now();
    let mut last_traffic = Instant::now();
    let mut last_stats = Instant::now();
    // Every counter as JSON, for --stats-file and the exit summary.
    macro_rules! snap {
        () => {
            snapshot(&Snap {
                started,
                answered,
                not_ip,
                icmp: &manners.counters,
                drops: &drops,
                ifaces: &ifaces,
                out_sas: &out_sas,
                sad: &sad,
                dynamic: &dynamic,
                control: control.as_ref(),
                policies: [
                    (
                        "out",
                        policy_counts(&spd_out, &hits_out, |t: &OutboundTarget| {
                            t.sa.as_ref().map(|sa| format!("{:08x}", sa.spi))
                        }),
                    ),
                    ("in", policy_counts(&spd_in, &hits_in, |_: &()| None)),
                ],
                omitted: spd_out.len().saturating_sub(POLICIES_LISTED)
                    + spd_in.len().saturating_sub(POLICIES_LISTED),
                reasm: reasm.stats,
                neigh: (fib.neigh.stats, fib.neigh.len()),
            })
        };
    }
    loop {
        if let Some(c) = &mut control {
            if c.poll_commands(&mut dynamic, &mut sad) {
                match dynamic.build(&static_out, &static_in) {
                    Ok((o, i)) => {
                        hits_out = hits_out.carried(&spd_out, &o);
                        hits_in = hits_in.carried(&spd_in, &i);
                        spd_out = o;
                        spd_in = i;
                    }
                    Err(e) => eprintln!("ferrogate: tables: {e}"),
                }
            }
            // IKE datagrams from ferrogate-ike onto the wire.
            fib.now_ms = started.elapsed().as_millis() as u64;
            while let Some(Some((m, out))) = c.next_inject(&pool, &mut fib, &ifaces) {
                if txb[out].pkts().len() >= BURST {
                    send_burst(&mut ifaces[out], &mut txb[out], &mut drops, true);
                }
                txb[out].pkts().push(m);
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
                    if c.reports % 10 == 0 {
                        c.report(&dynamic);
                    }
                }
            }
        }
        let out_t = OutboundTables {
            spd: &spd_out,
            mtu: out_mtu,
        };
        let in_t = InboundTables {
            sad: &sad,
            spd: &spd_in,
            natt_ports: &natt_ports,
        };
        let mut moved = 0;
        for k in 0..ifaces.len() {
            let n = ifaces[k].rx.rx(&mut rxb);
            if n == 0 {
                continue;
            }
            moved += n;
            ifaces[k].rx_frames += n as u64;
            let pkts = rxb.pkts();
            let (my_mac, role) = (ifaces[k].mac, ifaces[k].role);
            let mine = &ifaces[k].addrs;
            let (my4, my6) = (mine.first().copied(), ifaces[k].addr6);
            // Answer ARP and ICMP echo for our addresses; strip the Ethernet header of the rest;
            // what is not IP is counted and left out.
            for ((m, v), l) in pkts
                .iter_mut()
                .zip(verdicts.iter_mut())
                .zip(local.iter_mut())
            {
                *v = Verdict::Pending;
                *l = Local::No;
                // Neighbours: learn from ARP (RFC 826: requests for us create entries, the
                // rest only refresh), answer neighbor solicitations for our IPv6 addresses and
                // learn from advertisements.
                if let Some((ip, mac)) = neigh::arp_sender(m.data()) {
                    let for_us = m.data().get(38..42).is_some_and(|t| {
                        mine.contains(&std::net::Ipv4Addr::new(t[0], t[1], t[2], t[3]))
                    });
                    fib.neigh.learn(ip.into(), mac, fib.now_ms, for_us);
                }
                if let Some((ty, src, target, mac)) = neigh::parse_nd(m.data()) {
                    if let Some(mac) = mac.filter(|_| !src.is_unspecified()) {
                        let ip = if ty == 135 { src } else { target };
                        fib.neigh.learn(ip.into(), mac, fib.now_ms, ty == 135);
                    }
                    let to_mac = m.data()[6..12].try_into().unwrap_or([0; 6]);
                    if ty == 135
                        && ifaces[k].addrs6.contains(&target)
                        && !src.is_unspecified()
                        && m.len() >= neigh::NA_FRAME_LEN
                    {
                        let n = neigh::neighbor_advert(m.data_mut(), my_mac, target, src, to_mac);
                        let extra = m.len() - n;
                        if m.trim(extra).is_ok() {
                            *l = Local::Answer;
                            *v = Verdict::ToControlPlane;
                            continue;
                        }
                    }
                    *v = Verdict::Drop(DropReason::NotIp);
                    not_ip += 1;
                    continue;
                }
                if dataplane::host::arp_reply(m.data_mut(), mine, my_mac) {
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
                        not_ip += 1;
                        continue;
                    }
                };
                let d = m.data_mut();
                if dataplane::host::icmp_echo_reply(&mut d[off..], mine) {
                    // Back to the sender: swap the MAC addresses.
                    let mut src = [0u8; 6];
                    src.copy_from_slice(&d[6..12]);
                    d[..6].copy_from_slice(&src);
                    d[6..12].copy_from_slice(&my_mac);
                    *l = Local::Answer;
                    *v = Verdict::ToControlPlane;
                    continue;
                }
                if m.adj(off).is_err() {
                    *v = Verdict::Drop(DropReason::Malformed);
                    continue;
                }
                if role == Role::Outside && dataplane::reasm::is_fragment(m.data()) {
                    let now_ms = started.elapsed().as_millis() as u64;
                    let r = match reasm.push(m.data(), now_ms) {
                        Ok(None) => {
                            // Held until the rest arrives: not a drop.
                            *v = Verdict::Drop(DropReason::OuterFragment);
                            continue;
                        }
                        Ok(Some(whole)) => {
                            let fits = whole.len() <= usize::from(REASM_ROOM);
                            match jumbo.alloc().filter(|_| fits) {
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
                        drops.inc(r);
                        continue;
                    }
                }
                if role == Role::Inside {
                    // A router's hop, before the packet disappears into the tunnel.
                    if let Err(r) = dataplane::host::decrement_ttl(m.data_mut()) {
                        *v = Verdict::Drop(r);
                        drops.inc(r);
                        // Time exceeded, from our address on this side (RFC 792).
                        let from = source_for(m.data(), my4, my6);
                        let e = IcmpError::TimeExceeded;
                        if r == DropReason::TtlExceeded && manners.build(e, m, from) {
                            *l = Local::Error(e);
                        }
                        continue;
                    }
                    if let Some(mss) = mss {
                        dataplane::host::clamp_syn_mss(m.data_mut(), mss);
                    }
                }
            }
            let n = pkts.len();
            match ifaces[k].role {
                Role::Inside => burst::outbound(
                    &out_t,
                    &mut pkts[..],
                    &mut verdicts[..n],
                    &mut drops,
                    &mut hits_out,
                ),
                Role::Outside => burst::inbound(
                    &in_t,
                    &mut pkts[..],
                    &mut verdicts[..n],
                    &mut drops,
                    &mut hits_in,
                ),
            };
            for ((m, v), l) in pkts.drain(..).zip(verdicts.iter()).zip(local.iter()) {
                let mut m: Mbuf = m;
                let mut tx = Tx {
                    fib: &mut fib,
                    ifaces: &mut ifaces,
                    txb: &mut txb,
                    drops: &mut drops,
                    hits: &mut hits_out,
                };
                if let Local::Error(e) = *l {
                    let ok = tx.deliver(m, &out_t);
                    manners.sent(e, ok);
                    continue;
                }
                if *l == Local::Answer {
                    answered += 1;
                    tx.push(k, m);
                    continue;
                }
                if *v == Verdict::ToControlPlane {
                    match &mut control {
                        Some(c) => c.punt(m.data(), &mut punt_buf, tx.drops),
                        None => tx.drops.inc(DropReason::ControlPlane),
                    }
                    continue;
                }
                if *v == Verdict::Drop(DropReason::NoSaForPolicy) {
                    // An on-demand policy without an SA: ask the control plane for one.
                    if let (Some(c), Ok(key)) = (&mut control, dataplane::flow::flow_key(m.data()))
                    {
                        let target = spd_out.lookup(&key).and_then(|r| match &r.action {
                            Action::Protect(t) => Some(t.policy_id),
                            _ => None,
                        });
                        if let Some((t, ch)) = target.and_then(|p| dynamic.trap_of(p)) {
                            c.acquire(t, ch, key.src, key.dst);
                        }
                    }
                    continue;
                }
                match *v {
                    Verdict::Forward => {}
                    Verdict::TooBig(mtu) => {
                        // RFC 4301 §8.2.1: the tunnel's PMTU goes back to the inside host.
                        let from = source_for(m.data(), my4, my6);
                        manners.answer(IcmpError::TooBig { mtu }, m, from, &mut tx, &out_t);
                        continue;
                    }
                    Verdict::Fragment(max) => {
                        // RFC 4301 §8.1: fragments of the inner packet, each encapsulated with
                        // the SA the whole packet's policy names.
                        let sa = dataplane::flow::flow_key(m.data())
                            .ok()
                            .and_then(|key| spd_out.lookup(&key))
                            .and_then(|r| match &r.action {
                                Action::Protect(t) => t.sa.as_deref(),
                                _ => None,
                            });
                        match sa {
                            Some(sa) => tx.fragment(&m, max, Some(sa), &pool, &mut manners),
                            None => tx.drops.inc(DropReason::NoSaForPolicy),
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
                            let from = tx.inside_source(m.data());
                            manners.answer(IcmpError::TimeExceeded, m, from, &mut tx, &out_t);
                        }
                        continue;
                    }
                    // SYN-ACKs coming out of the tunnel are clamped too: a peer gateway that
                    // does not clamp (strongSwan) would otherwise let our side's hosts send
                    // segments that no longer fit once encapsulated.
                    if let Some(mss) = mss {
                        dataplane::host::clamp_syn_mss(m.data_mut(), mss);
                    }
                    // The inside port's MTU: fragment, or tell the source (across the tunnel).
                    if let Some(mtu) = tx.egress_mtu(m.data()) {
                        match icmp_err::oversize(m.data(), mtu) {
                            Oversize::Fits => {}
                            Oversize::Fragment(max) => {
                                tx.fragment(&m, max, None, &pool, &mut manners);
                                continue;
                            }
                            Oversize::TooBig(mtu) => {
                                tx.drops.inc(DropReason::TooBig);
                                let from = tx.inside_source(m.data());
                                let e = IcmpError::TooBig { mtu };
                                manners.answer(e, m, from, &mut tx, &out_t);
                                continue;
                            }
                        }
                    }
                }
                tx.route(m);
            }
        }
        // ARP requests / neighbor solicitations for next hops that lookups asked about.
        for (ifx, hop) in fib.asks.drain(..) {
            let Some(mut m) = pool.alloc() else { break };
            let i = &ifaces[ifx];
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
                if txb[ifx].pkts().len() >= BURST {
                    send_burst(&mut ifaces[ifx], &mut txb[ifx], &mut drops, true);
                }
                txb[ifx].pkts().push(m);
            }
        }
        for (k, b) in txb.iter_mut().enumerate() {
            if !b.pkts().is_empty() {
                // What the driver does not take now is retried after the next burst.
                send_burst(&mut ifaces[k], b, &mut drops, false);
            }
        }
        if moved > 0 {
            last_traffic = Instant::now();
        } else {
            if let Some(idle) = args.idle_exit {
                if last_traffic.elapsed() >= idle {
                    break;
                }
            }
            if !args.idle_sleep.is_zero() {
                std::thread::sleep(args.idle_sleep);
            }
        }
        if let Some(p) = &args.stats_file {
            if last_file.elapsed() >= Duration::from_secs(1) {
                last_file = Instant::now();
                let v = snap!();
                write_stats(p, &v);
            }
        }
        if let Some(every) = args.stats_every {
            if last_stats.elapsed() >= every {
                last_stats = Instant::now();
                let ports: Vec<String> = ifaces
                    .iter()
                    .map(|i| format!("{} rx {} tx {}", i.name, i.rx_frames, i.tx_frames))
                    .collect();
                let d: Vec<String> = drops
                    .nonzero()
                    .map(|(r, n)| format!("{}={n}", r.as_str()))
                    .collect();
                let sas: Vec<String> = out_sas
                    .iter()
                    .flatten()
                    .map(|sa| {
                        format!(
                            "spi {:#x} out {} pkts {} bytes",
                            sa.spi,
                            sa.counters().packets(),
                            sa.counters().bytes()
                        )
                    })
                    .chain(dynamic.sas.values().filter_map(|d| {
                        let o = d.out.as_ref()?;
                        Some(format!(
                            "spi {:#x} out {} pkts {} bytes{}",
                            o.spi,
                            o.counters().packets(),
                            o.counters().bytes(),
                            if d.active { "" } else { " (standby)" }
                        ))
                    }))
                    .chain(sad.iter().map(|(spi, _, sa)| {
                        format!(
                            "spi {spi:#x} in {} pkts {} bytes",
                            sa.counters().packets(),
                            sa.counters().bytes()
                        )
                    }))
                    .collect();
                println!(
                    "[{:>7.1}s] {} | {} | drops: {}",
                    started.elapsed().as_secs_f64(),
                    ports.join(", "),
                    sas.join(", "),
                    if d.is_empty() {
                        "none".into()
                    } else {
                        d.join(" ")
                    }
                );
            }
        }
    }
    // Frames the drivers never took are dropped with the bursts here.
    drop(txb);
    let stats = snap!();
    if let Some(p) = &args.stats_file {
        write_stats(p, &stats);
    }
    for i in &ifaces {
        let _ = i.port.stop();
    }
    if let (Some(c), Some(path)) = (control.take(), &args.control) {
        drop(c);
        let _ = shmring::Channel::remove(path);
    }
    drop(ifaces);
    drop(jumbo);
    drop(pool);
    drop(eal);
    Ok(stats)
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
    /// `from`. False (and counted) when no error may or can be sent; `m` is then to be freed.
    fn build(&mut self, e: IcmpError, m: &mut Mbuf, from: Option<IpAddr>) -> bool {
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
        let Some(n) = from.and_then(|f| icmp_err::build(e, m.data(), f, &mut buf).ok()) else {
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

    /// Builds the error about the packet in `m` and sends it.
    fn answer(
        &mut self,
        e: IcmpError,
        mut m: Mbuf,
        from: Option<IpAddr>,
        tx: &mut Tx<'_>,
        out_t: &OutboundTables<'_>,
    ) {
        if self.build(e, &mut m, from) {
            let ok = tx.deliver(m, out_t);
            self.sent(e, ok);
        }
    }
}

/// Hands port `iface`'s pending burst to its transmit queue. With `full` (the burst has no room
/// for the next packet), what the driver refuses is dropped and counted as `tx_full`, so a
/// burst never grows past [`BURST`] (no allocation, no unbounded queue); otherwise it stays
/// for the next try.
fn send_burst(iface: &mut Iface, b: &mut Burst, drops: &mut DropCounters, full: bool) {
    let sent = iface.tx.tx(b);
    iface.tx_frames += sent as u64;
    if full {
        for _ in b.pkts().drain(..) {
            drops.inc(DropReason::TxFull);
        }
    }
}

/// Our address of the IP packet's family on the port it came in by.
fn source_for(
    ip: &[u8],
    v4: Option<std::net::Ipv4Addr>,
    v6: Option<std::net::Ipv6Addr>,
) -> Option<IpAddr> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => v4.map(IpAddr::V4),
        Some(6) => v6.map(IpAddr::V6),
        _ => None,
    }
}

/// The transmit side of the burst loop: routing, Ethernet headers, per-port bursts.
struct Tx<'a> {
    fib: &'a mut Fib,
    ifaces: &'a mut [Iface],
    txb: &'a mut [Burst],
    drops: &'a mut DropCounters,
    /// SPD-out's per-policy counters (the gateway's own ICMP errors cross SPD-out too).
    hits: &'a mut PolicyHits,
}

impl Tx<'_> {
    /// Queues `m` on port `out`, sending the port's burst first when it is full.
    fn push(&mut self, out: usize, m: Mbuf) {
        if self.txb[out].pkts().len() >= BURST {
            send_burst(&mut self.ifaces[out], &mut self.txb[out], self.drops, true);
        }
        self.txb[out].pkts().push(m);
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
            burst::outbound(
                out_t,
                std::slice::from_mut(&mut m),
                &mut v,
                self.drops,
                self.hits,
            );
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

    /// Cuts the IPv4 packet in `orig` into fragments of at most `max` bytes (RFC 791 §3.2) in
    /// fresh mbufs from `pool`, encapsulates each with `sa` if there is one, and routes them.
    fn fragment(
        &mut self,
        orig: &Mbuf,
        max: u16,
        sa: Option<&OutboundSa>,
        pool: &Mempool,
        manners: &mut Manners,
    ) {
        manners.counters.fragmented += 1;
        let mut next = Some(0);
        while let Some(offset) = next {
            let Some(mut f) = pool.alloc() else {
                self.drops.inc(DropReason::NoMbuf);
                return;
            };
            let room = usize::from(max);
            let cut = match f.append(room) {
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
                    return;
                }
            };
            if f.trim(room - n).is_err() {
                self.drops.inc(DropReason::Malformed);
                return;
            }
            if let Some(sa) = sa {
                if let Err(r) = dataplane::esp::encap(sa, &mut f) {
                    self.drops.inc(r);
                    continue;
                }
            }
            manners.counters.fragments += 1;
            self.route(f);
        }
    }
}

struct Snap<'a> {
    reasm: dataplane::reasm::ReasmStats,
    neigh: (dataplane::neigh::NeighStats, usize),
    started: Instant,
    answered: u64,
    not_ip: u64,
    icmp: &'a icmp_err::Counters,
    drops: &'a DropCounters,
    ifaces: &'a [Iface],
    out_sas: &'a [Option<Arc<OutboundSa>>],
    sad: &'a Sad<Arc<InboundSa>>,
    dynamic: &'a Dynamic,
    control: Option<&'a Control>,
    policies: [(&'a str, Vec<serde_json::Value>); 2],
    /// Policies beyond [`POLICIES_LISTED`], both directions.
    omitted: usize,
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

/// Every counter as JSON: ports, drops by reason, SAs (static and negotiated), the
/// control-plane channel.
fn snapshot(s: &Snap<'_>) -> serde_json::Value {
    let mut dropmap = serde_json::Map::new();
    for (r, n) in s.drops.nonzero() {
        dropmap.insert(r.as_str().to_owned(), n.into());
    }
    if s.not_ip > 0 {
        dropmap.insert("not_ip_frames".into(), s.not_ip.into());
    }
    let ports: Vec<serde_json::Value> = s
        .ifaces
        .iter()
        .map(|i| {
            // What the device itself counted: frames it could not deliver for want of room
            // (a full receive ring: af_packet's socket drops, a NIC's missed packets).
            let [_, _, _, _, imissed] = i.port.stats().unwrap_or_default();
            serde_json::json!({"name": i.name, "rx_frames": i.rx_frames, "tx_frames": i.tx_frames,
                "rx_missed": imissed})
        })
        .collect();
    let mut sas: Vec<serde_json::Value> = s
        .out_sas
        .iter()
        .flatten()
        .map(|sa| serde_json::json!({"spi": format!("{:08x}", sa.spi), "direction": "out", "source": "static",
            "packets": sa.counters().packets(), "bytes": sa.counters().bytes()}))
        .collect();
    for (spi, _, sa) in s.sad.iter() {
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
                "packets": o.counters().packets(), "bytes": o.counters().bytes()}));
        }
    }
    serde_json::json!({
        "seconds": s.started.elapsed().as_secs_f64(),
        "answered_arp_and_echo": s.answered,
        "icmp": {
            "time_exceeded_sent": s.icmp.time_exceeded_sent,
            "too_big_sent": s.icmp.too_big_sent,
            "rate_limited": s.icmp.rate_limited,
            "not_reportable": s.icmp.not_reportable,
            "not_sent": s.icmp.not_sent,
            "fragmented": s.icmp.fragmented,
            "fragments": s.icmp.fragments,
        },
        "ports": ports,
        "drops": dropmap,
        "sas": sas,
        "policies": {s.policies[0].0: s.policies[0].1, s.policies[1].0: s.policies[1].1,
            "omitted": s.omitted},
        "control": s.control.map(|c| serde_json::json!({"punted": c.punted, "injected": c.injected})),
        "neighbours": {"entries": s.neigh.1, "requests": s.neigh.0.requests,
            "learned": s.neigh.0.learned, "failed": s.neigh.0.failed},
        "reassembly": {"fragments": s.reasm.fragments, "reassembled": s.reasm.reassembled,
            "timed_out": s.reasm.timed_out, "evicted": s.reasm.evicted,
            "overlaps": s.reasm.overlaps, "malformed": s.reasm.malformed, "too_big": s.reasm.too_big},
    })
}

/// Replaces the stats file atomically (write, then rename).
fn write_stats(path: &std::path::Path, v: &serde_json::Value) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, format!("{v}\n")).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// CHILD_SAs installed by the control plane, by inbound SPI.
#[derive(Default)]
struct Dynamic {
    sas: BTreeMap<u32, DynSa>,
    installed: u64,
    /// On-demand policies: (tunnel, child) -> (local_ts, remote_ts).
    traps: BTreeMap<(String, String), (Vec<IpPrefix>, Vec<IpPrefix>)>,
}

/// Policy ids of on-demand policies start here (index into `Dynamic::traps`).
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
    /// Outbound traffic of its (tunnel, child) uses this one.
    active: bool,
    order: u64,
}

/// Priority of the policies of negotiated CHILD_SAs: after the configuration's explicit rules
/// of default priority (100), before catch-alls.
const DYNAMIC_PRIORITY: u32 = 500;

impl Dynamic {
    fn activate(&mut self, spi_in: u32) {
        let Some(d) = self.sas.get(&spi_in).filter(|d| d.out.is_some()) else {
            return;
        };
        let (t, c) = (d.tunnel.clone(), d.child.clone());
        for (k, x) in self.sas.iter_mut() {
            if x.tunnel == t && x.child == c {
                x.active = *k == spi_in;
            }
        }
    }

    /// Applies a command; returns whether the tables must be rebuilt.
    fn apply(&mut self, cmd: ctl::Command, sad: &mut Sad<Arc<InboundSa>>) -> Result<bool, String> {
        match cmd {
            ctl::Command::Add { sa, .. } => {
                match self.sas.get(&sa.spi_in) {
                    // The full pair replaces its larval inbound half.
                    Some(old) if old.out.is_none() => {
                        sad.remove(sa.spi_in, Some(old.local));
                        self.sas.remove(&sa.spi_in);
                    }
                    Some(_) => return Err(format!("SPI {:08x} is already installed", sa.spi_in)),
                    None => {}
                }
                let (o, i) = sa.params()?;
                let out = match &o {
                    Some(o) => Some(Arc::new(OutboundSa::new(o).map_err(|e| e.to_string())?)),
                    None => None,
                };
                let inb = Arc::new(InboundSa::new(&i).map_err(|e| e.to_string())?);
                sad.insert(sa.spi_in, Some(sa.local), inb.clone());
                let sibling_active = self
                    .sas
                    .values()
                    .any(|x| x.tunnel == sa.tunnel && x.child == sa.child && x.active);
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
                    },
                );
                if has_out && (sa.outbound_now || !sibling_active) {
                    self.activate(sa.spi_in);
                }
                Ok(true)
            }
            ctl::Command::Activate { spi_in, .. } => {
                self.activate(spi_in);
                Ok(true)
            }
            ctl::Command::Remove { spi_in, .. } => {
                let Some(d) = self.sas.remove(&spi_in) else {
                    return Ok(false);
                };
                sad.remove(spi_in, Some(d.local));
                if d.active {
                    let next = self
                        .sas
                        .iter()
                        .filter(|(_, x)| {
                            x.tunnel == d.tunnel && x.child == d.child && x.out.is_some()
                        })
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
                self.traps.insert((tunnel, child), (local_ts, remote_ts));
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
                let old = d.out.as_ref().map_or(0, |o| o.last_seq());
                if let Some(t) = &mut p.tunnel {
                    t.remote = remote;
                }
                if let Some(u) = &mut p.udp_encap {
                    u.remote_port = remote_port;
                }
                // The sequence numbers carry on: the peer's replay window has seen them.
                p.initial_seq = old;
                d.out = Some(Arc::new(OutboundSa::new(p).map_err(|e| e.to_string())?));
                Ok(true)
            }
            ctl::Command::Untrap { tunnel, child, .. } => {
                Ok(self.traps.remove(&(tunnel, child)).is_some())
            }
            ctl::Command::Dump { .. } => Ok(false),
        }
    }

    /// The (tunnel, child) of an on-demand policy id.
    fn trap_of(&self, policy_id: u32) -> Option<&(String, String)> {
        let k = policy_id.checked_sub(TRAP_POLICY_BASE)? as usize;
        self.traps.keys().nth(k)
    }

    fn build(
        &self,
        static_out: &[Rule<OutboundTarget>],
        static_in: &[Rule<()>],
    ) -> Result<(Spd<OutboundTarget>, Spd<()>), String> {
        let mut out = static_out.to_vec();
        let mut inb = static_in.to_vec();
        let mut seen = Vec::new();
        for (n, d) in self.sas.values().enumerate() {
            let pairs = d
                .local_ts
                .iter()
                .flat_map(|l| d.remote_ts.iter().map(move |r| (*l, *r)))
                .filter(|(l, r)| l.is_ipv4() == r.is_ipv4());
            for (l, r) in pairs {
                if let (true, Some(o)) = (d.active, &d.out) {
                    out.push(Rule {
                        priority: DYNAMIC_PRIORITY,
                        selector: selector(l, r),
                        action: Action::Protect(OutboundTarget {
                            policy_id: 10_000 + n as u32,
                            sa: Some(o.clone()),
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
        // On-demand policies sit just below the SAs' own: they only catch traffic while no
        // SA pair of their (tunnel, child) is active.
        for (k, (_, (lts, rts))) in self.traps.iter().enumerate() {
            for l in lts {
                for r in rts.iter().filter(|r| r.is_ipv4() == l.is_ipv4()) {
                    out.push(Rule {
                        priority: DYNAMIC_PRIORITY + 1,
                        selector: selector(*l, *r),
                        action: Action::Protect(OutboundTarget {
                            policy_id: TRAP_POLICY_BASE + k as u32,
                            sa: None,
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
    punted: u64,
    injected: u64,
    /// Last acquire per (tunnel, child): at most one a second.
    acquired: std::collections::HashMap<(String, String), Instant>,
    /// Lifetime polls so far (every tenth sends the counters).
    reports: u64,
}

impl Control {
    fn create(path: &std::path::Path) -> Result<Control, String> {
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
            punted: 0,
            injected: 0,
            acquired: Default::default(),
            reports: 0,
        };
        c.event(&ctl::Event::Hello {
            v: ctl::VERSION,
            generation: c.chan.generation(),
        });
        Ok(c)
    }

    fn event(&self, e: &ctl::Event) {
        if let Ok(mut p) = self.chan.producer(ctl::ring::EVENTS) {
            // A control plane that is not reading loses events, never the data plane.
            let _ = p.push(&e.encode());
        }
    }

    fn report(&self, d: &Dynamic) {
        self.event(&ctl::Event::Sas {
            v: ctl::VERSION,
            sas: d.report(),
        });
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
                    eprintln!("ferrogate: control channel: {e}");
                    break;
                }
            };
            let r = ctl::Command::decode(&msg).and_then(|c| {
                dump |= matches!(c, ctl::Command::Dump { .. });
                d.apply(c, sad)
            });
            match r {
                Ok(c) => changed |= c,
                Err(reason) => {
                    eprintln!("ferrogate: control command refused: {reason}");
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

    /// The next IKE datagram to send, built into an mbuf with its Ethernet header, and the
    /// interface it leaves by. `Some(None)` when one was consumed but could not be sent.
    fn next_inject(
        &mut self,
        pool: &Mempool,
        fib: &mut Fib,
        ifaces: &[Iface],
    ) -> Option<Option<(Mbuf, usize)>> {
        let mut cons = self.chan.consumer(ctl::ring::INJECT).ok()?;
        let r = cons.pop_with(|b| {
            let d = ctl::Datagram::decode(b)?;
            let (out, mac) = fib.lookup(d.remote.ip()).ok()?;
            let mut m = pool.alloc()?;
            let len = 40 + 8 + 4 + d.message.len();
            let buf = m.append(len).ok()?;
            let n = d.to_ip(buf)?;
            m.trim(len - n).ok()?;
            let et = if d.remote.is_ipv4() {
                ethernet::ethertype::IPV4
            } else {
                ethernet::ethertype::IPV6
            };
            let h = m.prepend(ethernet::HEADER_LEN).ok()?;
            h[..6].copy_from_slice(&mac);
            h[6..12].copy_from_slice(&ifaces[out].mac);
            h[12..14].copy_from_slice(&et.to_be_bytes());
            Some((m, out))
        });
        match r {
            Ok(Some(x)) => {
                if x.is_some() {
                    self.injected += 1;
                }
                Some(x)
            }
            _ => None,
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
            eprintln!("ferrogate: {m}");
            ExitCode::from(1)
        }
    }
}
