//! VRRP version 3 for IPv4 and IPv6 (RFC 5798): the virtual router's state machine, reading
//! received advertisements and writing the frames it sends. A router is of one family: its
//! primary address, its virtual addresses and its advertisements (to 224.0.0.18 from the
//! port's IPv4 address, or to ff02::12 from its link-local address). Pure: time comes in as milliseconds, and
//! the caller sends what the router asks for.
//!
//! Two gateways (or a gateway and keepalived, or any RFC 5798 router) share virtual addresses:
//! the master answers ARP for them, receives what is sent to them and advertises every
//! interval; a backup that hears no advertisement for `Master_Down_Interval` (three intervals
//! and a skew that favours higher priorities) takes over and announces the addresses with
//! gratuitous ARP (IPv6: unsolicited neighbor advertisements).
//!
//! Where this differs from the RFC, as keepalived's defaults do: unless asked for the virtual
//! MAC ([`virtual_mac`]), the virtual addresses are answered with the port's own MAC address
//! (the announcements move them on takeover), and the master accepts packets addressed to them
//! ("Accept_Mode" on: IKE and ESP end at the virtual address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::{ethernet, ipv4, vrrp};

/// Why a received datagram is not an advertisement this router may use (RFC 5798 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an IPv4 or IPv6 datagram carrying VRRP, or cut short.
    Malformed,
    /// TTL (hop limit) other than 255: it crossed a router.
    Ttl,
    /// Not a version 3 advertisement (keepalived's default is version 2: set
    /// `vrrp_version 3`).
    Version,
    /// The checksum does not verify.
    Checksum,
    /// A fragment, or sent to another destination than 224.0.0.18 (ff02::12).
    Destination,
}

impl Refusal {
    /// Every reason, in counter order.
    pub const ALL: [Refusal; 5] = [
        Refusal::Malformed,
        Refusal::Ttl,
        Refusal::Version,
        Refusal::Checksum,
        Refusal::Destination,
    ];

    /// Index of this reason's counter in [`Refusal::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A stable snake_case name for counters.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Ttl => "ttl",
            Refusal::Version => "version",
            Refusal::Checksum => "checksum",
            Refusal::Destination => "destination",
        }
    }
}

/// What a router needs of a received advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    /// The sender's primary address (the IP source: IPv4, or IPv6 link-local).
    pub src: IpAddr,
    /// Virtual router ID.
    pub vrid: u8,
    /// Sender's priority; 0 when its master stops.
    pub priority: u8,
    /// Sender's advertisement interval, centiseconds.
    pub interval_cs: u16,
    /// The virtual addresses it lists.
    pub addrs: AddrList,
}

/// A list of virtual addresses as far as RFC 5798 §7.1's check needs it: how many, and a
/// digest that does not depend on their order (a sender may list them in any). Fixed size:
/// a received advertisement allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddrList {
    count: u16,
    digest: u64,
}

impl AddrList {
    /// The list of `addrs`.
    pub fn of(addrs: &[IpAddr]) -> Self {
        let mut l = Self::default();
        for a in addrs {
            l.add(*a);
        }
        l
    }

    fn add(&mut self, a: IpAddr) {
        let bits = match a {
            IpAddr::V4(v) => u128::from(u32::from(v)),
            IpAddr::V6(v) => u128::from(v) ^ (1 << 127),
        };
        // splitmix64 of each half, summed: order does not matter, a repeat does.
        let mix = |mut z: u64| {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let h = mix(bits as u64) ^ mix((bits >> 64) as u64).rotate_left(17);
        self.digest = self.digest.wrapping_add(h);
        self.count += 1;
    }
}

/// Whether the IP datagram `ip` carries VRRP (IPv4 protocol 112, or IPv6 next header 112
/// right after the fixed header), whatever its state.
pub fn is_vrrp(ip: &[u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) => ip.len() >= 20 && ip[9] == vrrp::PROTO,
        Some(6) => ip.len() >= 40 && ip[6] == vrrp::PROTO,
        _ => false,
    }
}

/// Reads and checks an advertisement from the IP datagram `ip` (RFC 5798 §7.1: TTL or hop
/// limit 255, version 3, checksum; sent to 224.0.0.18 or ff02::12, not fragmented). Never
/// panics.
pub fn parse_advert(ip: &[u8]) -> Result<Advert, Refusal> {
    if ip.first().is_some_and(|b| b >> 4 == 6) {
        return parse_advert_v6(ip);
    }
    let p = ipv4::Packet::new_checked(ip).map_err(|_| Refusal::Malformed)?;
    if p.next_header() != vrrp::PROTO {
        return Err(Refusal::Malformed);
    }
    if p.dst_addr() != vrrp::GROUP_V4 || p.more_frags() || p.frag_offset() != 0 {
        return Err(Refusal::Destination);
    }
    if p.hop_limit() != vrrp::TTL {
        return Err(Refusal::Ttl);
    }
    let body = ip
        .get(p.header_len()..usize::from(p.total_len()))
        .ok_or(Refusal::Malformed)?;
    let v = vrrp::Packet::new_checked(body).map_err(|_| Refusal::Malformed)?;
    if v.version() != vrrp::VERSION || v.kind() != vrrp::TYPE_ADVERTISEMENT {
        return Err(Refusal::Version);
    }
    if !v.verify_checksum(p.src_addr(), p.dst_addr()) {
        return Err(Refusal::Checksum);
    }
    let mut addrs = AddrList::default();
    for i in 0..usize::from(v.count()) {
        addrs.add(v.addr(i).ok_or(Refusal::Malformed)?.into());
    }
    Ok(Advert {
        src: p.src_addr().into(),
        vrid: v.vrid(),
        priority: v.priority(),
        interval_cs: v.max_adver_int(),
        addrs,
    })
}

/// [`parse_advert`] for IPv6: the VRRP message right after the fixed header (a datagram with
/// an extension header first, a fragment header among them, is refused as `Destination`;
/// [`is_vrrp`] does not take it for VRRP in the first place).
fn parse_advert_v6(ip: &[u8]) -> Result<Advert, Refusal> {
    let h = ip.get(..40).ok_or(Refusal::Malformed)?;
    let addr = |o: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[o..o + 16]);
        Ipv6Addr::from(a)
    };
    let (src, dst) = (addr(8), addr(24));
    if h[6] != vrrp::PROTO || dst != vrrp::GROUP_V6 {
        return Err(Refusal::Destination);
    }
    if h[7] != vrrp::TTL {
        return Err(Refusal::Ttl);
    }
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let body = ip.get(40..40 + plen).ok_or(Refusal::Malformed)?;
    let v = vrrp::Packet::new_checked_v6(body).map_err(|_| Refusal::Malformed)?;
    if v.version() != vrrp::VERSION || v.kind() != vrrp::TYPE_ADVERTISEMENT {
        return Err(Refusal::Version);
    }
    if !v.verify_checksum_v6(src, dst) {
        return Err(Refusal::Checksum);
    }
    let mut addrs = AddrList::default();
    for i in 0..usize::from(v.count()) {
        addrs.add(v.addr6(i).ok_or(Refusal::Malformed)?.into());
    }
    Ok(Advert {
        src: src.into(),
        vrid: v.vrid(),
        priority: v.priority(),
        interval_cs: v.max_adver_int(),
        addrs,
    })
}

/// Largest frame [`advert_frame`] writes (the 255 IPv6 addresses a count can announce).
pub const ADVERT_FRAME_MAX: usize = 14 + 40 + vrrp::HEADER_LEN + 16 * 255;

/// Length of the frame [`advert_frame`] writes for a router of `src`'s family with `vips`.
pub fn advert_frame_len(src: IpAddr, vips: &[IpAddr]) -> usize {
    let (ip, a) = if src.is_ipv4() { (20, 4) } else { (40, 16) };
    14 + ip + vrrp::HEADER_LEN + a * vips.len()
}

/// Writes the Ethernet frame of an advertisement from `mac` / `src` into `out`; returns its
/// length, or `None` if `out` is too short or the fields do not fit (an address of the other
/// family among them).
pub fn advert_frame(
    out: &mut [u8],
    mac: [u8; 6],
    src: IpAddr,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    vips: &[IpAddr],
) -> Option<usize> {
    let r = vrrp::Repr {
        vrid,
        priority,
        max_adver_int: interval_cs,
        addrs: vips,
    };
    let src = match src {
        IpAddr::V4(s) => s,
        IpAddr::V6(s) => return advert_frame_v6(out, mac, s, &r),
    };
    let ip_len = 20 + r.buffer_len();
    let frame = out.get_mut(..14 + ip_len)?;
    frame[..6].copy_from_slice(&vrrp::GROUP_V4_MAC);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ethernet::ethertype::IPV4.to_be_bytes());
    ipv4::Repr {
        src_addr: src,
        dst_addr: vrrp::GROUP_V4,
        next_header: vrrp::PROTO,
        payload_len: r.buffer_len(),
        hop_limit: vrrp::TTL,
        // DSCP CS6 (network control), as keepalived and VPP send it.
        dscp: 48,
        ecn: 0,
        dont_frag: false,
        ident: 0,
    }
    .emit(&mut frame[14..34])
    .ok()?;
    r.emit(&mut frame[34..], src.into(), vrrp::GROUP_V4.into())
        .ok()?;
    Some(14 + ip_len)
}

fn advert_frame_v6(out: &mut [u8], mac: [u8; 6], src: Ipv6Addr, r: &vrrp::Repr) -> Option<usize> {
    let n = r.buffer_len();
    let frame = out.get_mut(..14 + 40 + n)?;
    frame[..6].copy_from_slice(&vrrp::GROUP_V6_MAC);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ethernet::ethertype::IPV6.to_be_bytes());
    // Traffic class CS6 (network control), as over IPv4; no flow label.
    let ip = &mut frame[14..54];
    ip[..4].copy_from_slice(&[0x6c, 0, 0, 0]);
    ip[4..6].copy_from_slice(&u16::try_from(n).ok()?.to_be_bytes());
    ip[6] = vrrp::PROTO;
    ip[7] = vrrp::TTL;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&vrrp::GROUP_V6.octets());
    r.emit(&mut frame[54..], src.into(), vrrp::GROUP_V6.into())
        .ok()?;
    Some(14 + 40 + n)
}

/// The virtual router MAC address (RFC 5798 §7.3): 00-00-5E-00-01-{VRID} for an IPv4 router,
/// 00-00-5E-00-02-{VRID} for an IPv6 one. A master that uses it sends its advertisements and gratuitous ARPs
/// from it and answers ARP for the virtual addresses with it, so that the link's hosts keep
/// one MAC for those addresses over a takeover and only the switches must learn where it
/// went (from the new master's first frames).
pub fn virtual_mac(vrid: u8, v6: bool) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, if v6 { 0x02 } else { 0x01 }, vrid]
}

/// Length of the largest frame [`announce`] writes.
pub const ANNOUNCE_FRAME_LEN: usize = if GARP_FRAME_LEN > crate::neigh::NA_FRAME_LEN {
    GARP_FRAME_LEN
} else {
    crate::neigh::NA_FRAME_LEN
};

/// Writes the announcement of a virtual address a new master sends (RFC 5798 §6.4.1): a
/// gratuitous ARP for an IPv4 address, an unsolicited neighbor advertisement (router and
/// override flags, to all nodes) for an IPv6 one. Returns its length, or `None` if `out` is
/// too short.
pub fn announce(out: &mut [u8], mac: [u8; 6], ip: IpAddr) -> Option<usize> {
    match ip {
        IpAddr::V4(ip) => gratuitous_arp(out, mac, ip),
        IpAddr::V6(ip) => {
            let frame = out.get_mut(..crate::neigh::NA_FRAME_LEN)?;
            Some(crate::neigh::unsolicited_advert(frame, mac, ip))
        }
    }
}

/// The link-local address (fe80::/64 and the modified EUI-64 of RFC 4291 Appendix A) of a port
/// with MAC `mac`: an IPv6 router's primary address when its port has none configured.
pub fn link_local_of(mac: [u8; 6]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a[..2].copy_from_slice(&[0xfe, 0x80]);
    a[8..11].copy_from_slice(&[mac[0] ^ 0x02, mac[1], mac[2]]);
    a[11..13].copy_from_slice(&[0xff, 0xfe]);
    a[13..].copy_from_slice(&mac[3..]);
    Ipv6Addr::from(a)
}

/// Length of a gratuitous ARP frame.
pub const GARP_FRAME_LEN: usize = crate::neigh::ARP_FRAME_LEN;

/// Writes a gratuitous ARP (a broadcast request for `ip` from `ip` at `mac`, RFC 5227 §3)
/// into `out`; returns its length, or `None` if `out` is too short.
pub fn gratuitous_arp(out: &mut [u8], mac: [u8; 6], ip: Ipv4Addr) -> Option<usize> {
    let frame = out.get_mut(..GARP_FRAME_LEN)?;
    Some(crate::neigh::arp_request(frame, mac, ip, ip))
}

/// A virtual router's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Virtual router ID (1-255).
    pub vrid: u8,
    /// Priority (1-254; 255 is for the owner of the addresses, which a gateway sharing them
    /// is not).
    pub priority: u8,
    /// Advertisement interval, centiseconds (1-4095).
    pub interval_cs: u16,
    /// Whether a higher priority takes over from a lower-priority master (RFC 5798 default).
    pub preempt: bool,
    /// For this long after each start (at boot, and when a fault clears) it does not preempt
    /// (keepalived's `preempt_delay`), ms: time for the control plane to attach and hear the
    /// master's SA-state sync, and for a link that came back to prove itself. A silent master
    /// is still taken over after Master_Down_Interval.
    pub preempt_delay_ms: u64,
    /// This router's primary address on the link (the source of its advertisements; ties
    /// between equal priorities go to the higher one): an IPv4 address, or an IPv6
    /// link-local one. Its family is the router's.
    pub primary: IpAddr,
    /// The virtual addresses, of the primary's family.
    pub vips: Vec<IpAddr>,
}

/// Where a virtual router stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started, or stopped.
    Initialize,
    /// Listening for the master.
    Backup,
    /// Holding the virtual addresses.
    Master,
    /// A tracked link is down (its own, another the configuration names, or a sync-group
    /// member's): neither master nor a candidate, until every such link is up again.
    Fault,
}

impl State {
    /// Lower-case name, for logs and counters.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "init",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

/// What a step asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// Send an advertisement with this priority.
    pub advertise: Option<u8>,
    /// The state changed to this one (on becoming master: send gratuitous ARPs for the
    /// virtual addresses, and start answering for them).
    pub became: Option<State>,
}

/// Counters of one virtual router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Advertisements received for this VRID.
    pub adverts_in: u64,
    /// Advertisements sent.
    pub adverts_out: u64,
    /// Transitions to master.
    pub became_master: u64,
    /// Advertisements with priority 0 received (a master stopping).
    pub priority_zero_in: u64,
    /// Transitions to fault.
    pub faults: u64,
    /// Advertisements for this VRID whose address list differs from ours (RFC 5798 §7.1:
    /// logged, and dropped unless the sender owns the addresses): another cluster on the link
    /// with the same VRID, or a configuration that differs between the two gateways.
    pub addr_list_mismatch: u64,
    /// Advertisements of the other gateway's master that came through the SA-state sync
    /// ([`Router::receive_sync`]) and were used: the wire was silent both ways (the second
    /// path, for when the wire loses them).
    pub adverts_via_sync: u64,
    /// Times this master yielded to one of those (split brain: both gateways were master).
    pub yields_via_sync: u64,
}

/// How long an advertisement that came through the SA-state sync holds a backup at the least,
/// ms: the sync sends one every 0.5 s, so three may be lost (a Master_Down_Interval shorter
/// than this, with short advertisement intervals, would let the backup take over between two
/// of them).
pub const SYNC_HOLD_MS: u64 = 1_600;

/// A port's link as link tracking acts on it, debounced as routers' carrier-delay is: a change
/// of the raw reading counts only once it has held for `down_ms` (a loss) or `up_ms` (a
/// return). A link that flaps for less than `down_ms` never faults its routers; one that
/// comes back must stay up `up_ms` before they leave fault. 0 acts at once (the default).
/// The first reading is taken as it is: a link already down at start is down, not up for
/// `down_ms`.
#[derive(Debug, Clone)]
pub struct LinkHold {
    down_ms: u64,
    up_ms: u64,
    state: bool,
    /// The raw state that differs from `state`, and since when it has held.
    pending: Option<(bool, u64)>,
    last_raw: bool,
    changes: u64,
    /// No reading yet.
    fresh: bool,
}

impl LinkHold {
    /// A link with these delays, up until its first reading.
    pub fn new(down_ms: u64, up_ms: u64) -> Self {
        Self {
            down_ms,
            up_ms,
            state: true,
            pending: None,
            last_raw: true,
            changes: 0,
            fresh: true,
        }
    }

    /// Takes a raw reading at `now` (ms); returns the state to act on.
    pub fn update(&mut self, raw: bool, now: u64) -> bool {
        if std::mem::take(&mut self.fresh) {
            self.state = raw;
            self.last_raw = raw;
            return raw;
        }
        if raw != self.last_raw {
            self.last_raw = raw;
            self.changes += 1;
        }
        if raw == self.state {
            self.pending = None;
            return self.state;
        }
        let since = match self.pending {
            Some((r, t)) if r == raw => t,
            _ => {
                self.pending = Some((raw, now));
                now
            }
        };
        let hold = if raw { self.up_ms } else { self.down_ms };
        if now.saturating_sub(since) >= hold {
            self.state = raw;
            self.pending = None;
        }
        self.state
    }

    /// The state to act on.
    pub fn state(&self) -> bool {
        self.state
    }

    /// Changes of the raw reading seen (each loss and each return counts one).
    pub fn changes(&self) -> u64 {
        self.changes
    }
}

/// One virtual router (RFC 5798 §6.4). Times are milliseconds on any monotonic clock.
#[derive(Debug, Clone)]
pub struct Router {
    cfg: Config,
    state: State,
    /// Master_Adver_Interval, centiseconds: the interval the master advertises.
    master_interval_cs: u16,
    /// When the master is declared down (backup).
    down_at: u64,
    /// When the next advertisement is due (master).
    advert_at: u64,
    /// The master last heard (backup) or this router (master).
    master_ip: Option<IpAddr>,
    /// Backup: the master said priority 0 (it is stopping, or in fault). A sync-group peer
    /// leaves every link together, so no group member holds this router back, and when it
    /// takes over its group follows even where a member still hears the leaving master.
    released: bool,
    /// Master: it took over on such a release.
    took_over_released: bool,
    /// Backup: no preemption before this (the start plus `preempt_delay_ms`).
    preempt_from: u64,
    counters: Counters,
    /// Our virtual addresses, as advertisements list them.
    addrs: AddrList,
    /// Something this router tracks failed in a way that should move the addresses but not
    /// take them from everyone (the control plane: [`Router::set_lowered`]): it advertises and
    /// competes with priority 1.
    lowered: bool,
    /// When an advertisement of another router of this VRID last came over the wire (an
    /// accepted one, whatever its priority): while they come, the wire decides alone and
    /// advertisements through the sync are not used.
    wire_heard_at: Option<u64>,
}

impl Router {
    /// A router in the Initialize state.
    pub fn new(cfg: Config) -> Self {
        let i = cfg.interval_cs;
        let addrs = AddrList::of(&cfg.vips);
        Self {
            addrs,
            lowered: false,
            cfg,
            state: State::Initialize,
            master_interval_cs: i,
            down_at: 0,
            advert_at: 0,
            master_ip: None,
            released: false,
            took_over_released: false,
            preempt_from: 0,
            counters: Counters::default(),
            wire_heard_at: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The master's address, if known.
    pub fn master_ip(&self) -> Option<IpAddr> {
        self.master_ip
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Whether this master took over because its master said priority 0 (then its sync
    /// group follows it even where a member still hears a master: the leaving gateway's other
    /// routers leave too, and may be unable to say so on a link that failed).
    pub fn took_over_on_release(&self) -> bool {
        self.state == State::Master && self.took_over_released
    }

    /// The priority it advertises and competes with: the configured one, or 1 while lowered.
    pub fn priority(&self) -> u8 {
        if self.lowered && self.cfg.priority != 255 {
            1
        } else {
            self.cfg.priority
        }
    }

    /// Lowers the router's priority to 1 (or restores it): keepalived's tracked weight. A
    /// lowered master keeps the addresses until a backup, which outranks it now, takes them:
    /// with preemption (RFC 5798 §6.4.2: it discards the lowered master's advertisements and
    /// takes over after Master_Down_Interval), and the master yields to the first
    /// advertisement it hears from the backup. If the other gateway is lowered too, nobody
    /// moves: the installed SAs keep carrying traffic where they are. A lowered master says so
    /// at once (a backup started since then must not see the old priority).
    pub fn set_lowered(&mut self, lowered: bool) -> Step {
        if self.lowered == lowered {
            return Step::default();
        }
        self.lowered = lowered;
        if self.state == State::Master {
            self.advertise(self.priority())
        } else {
            Step::default()
        }
    }

    /// Skew_Time, ms: `((256 - Priority) * Master_Adver_Interval) / 256` centiseconds.
    pub fn skew_ms(&self) -> u64 {
        (256 - u64::from(self.priority())) * u64::from(self.master_interval_cs) * 10 / 256
    }

    /// Master_Down_Interval, ms: three of the master's intervals and the skew.
    pub fn master_down_ms(&self) -> u64 {
        3 * u64::from(self.master_interval_cs) * 10 + self.skew_ms()
    }

    /// Starts the router (§6.4.1): backup, waiting a Master_Down_Interval for a master.
    pub fn start(&mut self, now: u64) -> Step {
        if self.cfg.priority == 255 {
            return self.become_master(now);
        }
        self.master_interval_cs = self.cfg.interval_cs;
        self.down_at = now + self.master_down_ms();
        self.preempt_from = now.saturating_add(self.cfg.preempt_delay_ms);
        self.state = State::Backup;
        self.released = false;
        Step {
            advertise: None,
            became: Some(State::Backup),
        }
    }

    /// When [`Router::tick`] next has something to do.
    pub fn deadline(&self) -> Option<u64> {
        match self.state {
            State::Initialize | State::Fault => None,
            State::Backup => Some(self.down_at),
            State::Master => Some(self.advert_at),
        }
    }

    /// Runs the timers: a backup whose master fell silent takes over; a master advertises.
    pub fn tick(&mut self, now: u64) -> Step {
        self.tick_held(now, false)
    }

    /// Whether this backup hears a master now: an advertisement re-armed its Master_Down timer
    /// within the last ~1.6 of the master's intervals (it is re-armed to 3.6 intervals ahead,
    /// so it stays over two intervals ahead while the master advertises; when the master falls
    /// silent it runs down through two intervals before it fires).
    pub fn hears_master(&self, now: u64) -> bool {
        self.state == State::Backup
            && self.down_at > now + 2 * u64::from(self.master_interval_cs) * 10
    }

    /// [`Router::tick`] for a member of a sync group: with `hold` (another member hears a
    /// master on its link), a backup whose own master fell silent stays backup and waits
    /// another Master_Down_Interval, so that the group's addresses never split between the
    /// gateways (keepalived's `vrrp_sync_group`).
    pub fn tick_held(&mut self, now: u64, hold: bool) -> Step {
        match self.state {
            State::Backup if now >= self.down_at && hold && !self.released => {
                self.down_at = now + self.master_down_ms();
                Step::default()
            }
            State::Backup if now >= self.down_at => self.become_master(now),
            State::Master if now >= self.advert_at => {
                self.advert_at = now + u64::from(self.cfg.interval_cs) * 10;
                self.advertise(self.priority())
            }
            _ => Step::default(),
        }
    }

    /// Takes a received advertisement (already checked by [`parse_advert`]); others' VRIDs,
    /// the other family's routers (the same VRID may serve both) and this router's own
    /// advertisements are ignored.
    pub fn receive(&mut self, a: &Advert, now: u64) -> Step {
        if a.vrid != self.cfg.vrid
            || a.src == self.cfg.primary
            || a.src.is_ipv4() != self.cfg.primary.is_ipv4()
        {
            return Step::default();
        }
        // RFC 5798 §7.1: another address list is a misconfiguration (or another cluster
        // using our VRID): counted, and not followed unless its sender owns the addresses.
        if a.addrs != self.addrs {
            self.counters.addr_list_mismatch += 1;
            if a.priority != 255 {
                return Step::default();
            }
        }
        self.counters.adverts_in += 1;
        self.wire_heard_at = Some(now);
        if a.priority == 0 {
            self.counters.priority_zero_in += 1;
        }
        match self.state {
            State::Initialize | State::Fault => Step::default(),
            State::Backup => {
                // Someone advertises with a priority: no release stands.
                self.released = a.priority == 0;
                if a.priority == 0 {
                    // The master is stopping: take over after the skew only.
                    self.down_at = now + self.skew_ms();
                } else if !self.cfg.preempt
                    || a.priority >= self.priority()
                    || now < self.preempt_from
                {
                    self.master_interval_cs = a.interval_cs.max(1);
                    self.down_at = now + self.master_down_ms();
                    self.master_ip = Some(a.src);
                }
                Step::default()
            }
            State::Master => {
                if a.priority == 0 {
                    // Another master stopping: tell the backups who holds the addresses.
                    self.advert_at = now + u64::from(self.cfg.interval_cs) * 10;
                    self.advertise(self.priority())
                } else if a.priority > self.priority()
                    || (a.priority == self.priority() && a.src > self.cfg.primary)
                {
                    self.master_interval_cs = a.interval_cs.max(1);
                    self.down_at = now + self.master_down_ms();
                    self.master_ip = Some(a.src);
                    self.state = State::Backup;
                    Step {
                        advertise: None,
                        became: Some(State::Backup),
                    }
                } else {
                    Step::default()
                }
            }
        }
    }

    /// Whether the wire has been silent for this router: no advertisement of another router
    /// of its VRID came for one of the master's intervals and the skew (one missed at the
    /// least), or none ever did.
    fn wire_silent(&self, now: u64) -> bool {
        self.wire_heard_at.is_none_or(|t| {
            now >= t
                .saturating_add(u64::from(self.master_interval_cs) * 10)
                .saturating_add(self.skew_ms())
        })
    }

    /// Whether advertisements of another router of this VRID have come over the wire lately
    /// (within one of its intervals and the skew): reported to the other gateway through the
    /// sync, so that it uses our word there only when the wire is silent both ways.
    pub fn hears_wire(&self, now: u64) -> bool {
        !self.wire_silent(now)
    }

    /// Takes an advertisement of the other gateway's master that came through the SA-state
    /// sync (its `priority`, primary address `src` and interval; `it_hears`: whether that
    /// master hears advertisements on the wire itself): a second path, used only while the
    /// wire is silent both ways ([`Router::wire_silent`] here, and `!it_hears`), so that a
    /// link that loses the advertisements (a switch dropping the multicast) does not make
    /// both gateways master. A master that hears ours on the wire while we hear nothing of it
    /// cannot send there (a stuck transmit path, a blocked port): then this router takes the
    /// addresses as it did before the sync carried this, rather than wait for it for good.
    /// As an advertisement would (RFC 5798 §6.4.3): a master yields to a higher priority, or
    /// to an equal one from a higher address; a backup that would not preempt it keeps
    /// waiting, at least [`SYNC_HOLD_MS`] (the sync is slower than short advertisement
    /// intervals); a lower priority is ignored (a backup then takes over as it would).
    /// Another family's, our own, and priority 0 are ignored.
    pub fn receive_sync(
        &mut self,
        priority: u8,
        src: IpAddr,
        interval_cs: u16,
        it_hears: bool,
        now: u64,
    ) -> Step {
        if src == self.cfg.primary || src.is_ipv4() != self.cfg.primary.is_ipv4() || priority == 0 {
            return Step::default();
        }
        if it_hears || !self.wire_silent(now) {
            return Step::default();
        }
        self.counters.adverts_via_sync += 1;
        let hold = |r: &Self| now.saturating_add(r.master_down_ms().max(SYNC_HOLD_MS));
        match self.state {
            State::Initialize | State::Fault => Step::default(),
            State::Backup => {
                if !self.cfg.preempt || priority >= self.priority() || now < self.preempt_from {
                    self.released = false;
                    self.master_interval_cs = interval_cs.clamp(1, 4095);
                    self.down_at = self.down_at.max(hold(self));
                    self.master_ip = Some(src);
                }
                Step::default()
            }
            State::Master => {
                if priority > self.priority()
                    || (priority == self.priority() && src > self.cfg.primary)
                {
                    self.master_interval_cs = interval_cs.clamp(1, 4095);
                    self.down_at = hold(self);
                    self.master_ip = Some(src);
                    self.state = State::Backup;
                    self.released = false;
                    self.counters.yields_via_sync += 1;
                    Step {
                        advertise: None,
                        became: Some(State::Backup),
                    }
                } else {
                    Step::default()
                }
            }
        }
    }

    /// Stops the router (§6.4.3 Shutdown): a master says so with priority 0, so that a backup
    /// takes over after its skew instead of three intervals.
    pub fn shutdown(&mut self) -> Step {
        let was = self.state;
        self.state = State::Initialize;
        self.master_ip = None;
        Step {
            advertise: (was == State::Master).then_some(0),
            became: (was != State::Initialize).then_some(State::Initialize),
        }
    }

    /// A tracked link went down (`fault`) or every tracked link is up again. Entering fault, a
    /// master says priority 0 (as on shutdown), so that a backup that still hears this router
    /// on another link takes over after its skew instead of three intervals; leaving it, the
    /// router starts again as a backup waiting a Master_Down_Interval (and preempts from
    /// there if it may). Nothing happens when the state already agrees, or before
    /// [`Router::start`].
    pub fn set_fault(&mut self, fault: bool, now: u64) -> Step {
        match (self.state, fault) {
            (State::Backup | State::Master, true) => {
                let was_master = self.state == State::Master;
                self.state = State::Fault;
                self.master_ip = None;
                self.released = false;
                self.counters.faults += 1;
                let advertise = if was_master {
                    self.advertise(0).advertise
                } else {
                    None
                };
                Step {
                    advertise,
                    became: Some(State::Fault),
                }
            }
            (State::Fault, false) => self.start(now),
            _ => Step::default(),
        }
    }

    /// A group member became master: this backup follows at once (unless it hears a master,
    /// which the caller checks).
    pub fn follow_to_master(&mut self, now: u64) -> Step {
        if self.state == State::Backup {
            self.become_master(now)
        } else {
            Step::default()
        }
    }

    /// A group member took over on its master's release ([`Router::took_over_on_release`])
    /// while this backup still hears a master: that gateway is leaving all its links, but
    /// may be unable to say so on this one. This backup takes over as soon as its own master
    /// has been silent for one of its intervals and the skew, instead of three intervals; a
    /// master still alive here advertises within that interval and holds it back as usual
    /// (so a peer whose routers do not leave together cannot make two masters).
    pub fn hasten(&mut self, now: u64) -> Step {
        if self.state != State::Backup {
            return Step::default();
        }
        let last_heard = self.down_at.saturating_sub(self.master_down_ms());
        let at = last_heard + u64::from(self.master_interval_cs) * 10 + self.skew_ms();
        if at <= now {
            return self.become_master(now);
        }
        self.down_at = self.down_at.min(at);
        // Not held back by the group when it fires: the group's master is gone.
        self.released = true;
        Step::default()
    }

    /// A group member yielded to a master: this master yields too, and waits a
    /// Master_Down_Interval (held back while the member hears that master). It says so with
    /// priority 0 (as on shutdown, §6.4.3): the other gateway's router on this link, which
    /// heard this one as master, takes over after its skew instead of Master_Down_Interval.
    pub fn follow_to_backup(&mut self, now: u64) -> Step {
        if self.state != State::Master {
            return Step::default();
        }
        self.state = State::Backup;
        self.down_at = now + self.master_down_ms();
        self.released = false;
        Step {
            became: Some(State::Backup),
            ..self.advertise(0)
        }
    }

    fn become_master(&mut self, now: u64) -> Step {
        self.state = State::Master;
        self.took_over_released = std::mem::take(&mut self.released);
        self.master_ip = Some(self.cfg.primary);
        self.counters.became_master += 1;
        self.advert_at = now + u64::from(self.cfg.interval_cs) * 10;
        Step {
            became: Some(State::Master),
            ..self.advertise(self.priority())
        }
    }

    fn advertise(&mut self, priority: u8) -> Step {
        self.counters.adverts_out += 1;
        Step {
            advertise: Some(priority),
            became: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 3));
    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 4));

    fn router(priority: u8, preempt: bool) -> Router {
        Router::new(Config {
            vrid: 51,
            priority,
            interval_cs: 100,
            preempt,
            preempt_delay_ms: 0,
            primary: ME,
            vips: vec![Ipv4Addr::new(203, 0, 113, 1).into()],
        })
    }

    fn adv(priority: u8) -> Advert {
        Advert {
            src: PEER,
            vrid: 51,
            priority,
            interval_cs: 100,
            addrs: AddrList::of(&[Ipv4Addr::new(203, 0, 113, 1).into()]),
        }
    }

    /// A router made master by a silent wire (both gateways master: split brain).
    fn master(priority: u8) -> Router {
        let mut r = router(priority, true);
        r.start(0);
        assert_eq!(r.tick(10_000).became, Some(State::Master));
        r
    }

    #[test]
    fn a_master_yields_to_a_higher_priority_through_the_sync() {
        let mut r = master(100);
        let s = r.receive_sync(200, PEER, 100, false, 11_000);
        assert_eq!(s.became, Some(State::Backup));
        assert_eq!(s.advertise, None);
        assert_eq!(r.state(), State::Backup);
        assert_eq!(r.master_ip(), Some(PEER));
        assert_eq!(r.counters().adverts_via_sync, 1);
        assert_eq!(r.counters().yields_via_sync, 1);
    }

    #[test]
    fn equal_priorities_through_the_sync_go_to_the_higher_address() {
        // PEER (.4) is above ME (.3): this master yields.
        let mut r = master(100);
        assert_eq!(
            r.receive_sync(100, PEER, 100, false, 11_000).became,
            Some(State::Backup)
        );
        // A lower address at the same priority: this master stays.
        let mut r = master(100);
        let lower: IpAddr = Ipv4Addr::new(203, 0, 113, 2).into();
        assert_eq!(
            r.receive_sync(100, lower, 100, false, 11_000),
            Step::default()
        );
        assert_eq!(r.state(), State::Master);
        assert_eq!(r.counters().yields_via_sync, 0);
    }

    #[test]
    fn a_lower_priority_through_the_sync_is_ignored() {
        let mut r = master(150);
        assert_eq!(
            r.receive_sync(100, PEER, 100, false, 11_000),
            Step::default()
        );
        assert_eq!(r.state(), State::Master);
        assert_eq!(r.counters().adverts_via_sync, 1);
        // A backup (preempting) does not wait for it: it takes over as it would.
        let mut r = router(150, true);
        r.start(0);
        for t in (500..4000).step_by(500) {
            r.receive_sync(100, PEER, 100, false, t);
        }
        assert_eq!(r.tick(3414).became, Some(State::Master));
        // Nor for another family's, its own, or priority 0.
        let mut r = master(100);
        let v6: IpAddr = "fe80::4".parse().unwrap();
        for (p, a) in [(200, v6), (200, ME), (0, PEER)] {
            assert_eq!(r.receive_sync(p, a, 100, false, 11_000), Step::default());
        }
        assert_eq!(r.state(), State::Master);
    }

    #[test]
    fn sync_adverts_hold_a_backup_while_the_wire_is_silent() {
        let mut r = router(100, true);
        r.start(0);
        // No advertisement on the wire, the master's through the sync twice a second: the
        // backup stays so, far past Master_Down_Interval (3.609 s).
        let mut t = 500;
        while t <= 20_000 {
            r.receive_sync(200, PEER, 100, false, t);
            assert_eq!(r.tick(t + 250), Step::default(), "at {t}");
            t += 500;
        }
        assert_eq!(r.state(), State::Backup);
        assert_eq!(r.master_ip(), Some(PEER));
        assert_eq!(r.counters().adverts_via_sync, 40);
        // They stop (the master is gone): master a Master_Down_Interval after the last.
        assert_eq!(r.tick(20_000 + 3608).became, None);
        assert_eq!(r.tick(20_000 + 3609).became, Some(State::Master));
    }

    #[test]
    fn sync_adverts_hold_a_fast_backup_for_at_least_the_sync_hold() {
        // 100 ms advertisements: Master_Down_Interval is 361 ms, less than the sync's 500 ms.
        let mut r = router(100, true);
        r.cfg.interval_cs = 10;
        r.start(0);
        for t in (500..5000).step_by(500) {
            r.receive_sync(200, PEER, 10, false, t);
            assert_eq!(r.tick(t + 499), Step::default(), "at {t}");
        }
        assert_eq!(r.tick(4500 + SYNC_HOLD_MS - 1).became, None);
        assert_eq!(r.tick(4500 + SYNC_HOLD_MS).became, Some(State::Master));
    }

    /// A master that hears our advertisements on the wire while we hear nothing of it cannot
    /// send there (a stuck transmit path, a blocked port): it is not waited for, and it does
    /// not make a master yield (helper-54: the fence would otherwise keep the addresses with a
    /// gateway that cannot forward, for good).
    #[test]
    fn a_master_that_hears_the_wire_itself_is_not_waited_for() {
        let mut r = router(100, true);
        r.start(0);
        for t in (500..4000).step_by(500) {
            assert_eq!(r.receive_sync(200, PEER, 100, true, t), Step::default());
        }
        assert_eq!(r.tick(3609).became, Some(State::Master));
        assert_eq!(r.receive_sync(200, PEER, 100, true, 4100), Step::default());
        assert_eq!(r.state(), State::Master);
        assert_eq!(r.counters().adverts_via_sync, 0);
        // It hears us (we are master now and advertise); we hear it not: still master.
        assert!(!r.hears_wire(4100));
        r.receive(&adv(200), 5000);
        assert!(r.hears_wire(5100));
    }

    #[test]
    fn the_wire_decides_while_it_carries_advertisements() {
        // A master that hears a lower priority on the wire keeps the addresses, whatever an
        // older word through the sync says.
        let mut r = master(150);
        r.receive(&adv(100), 11_000);
        assert_eq!(
            r.receive_sync(200, PEER, 100, false, 11_100),
            Step::default()
        );
        assert_eq!(r.state(), State::Master);
        // A backup that hears its master on the wire is timed by the wire alone: when that
        // master falls silent it takes over after Master_Down_Interval, not later.
        let mut r = router(100, true);
        r.start(0);
        r.receive(&adv(200), 1000);
        r.receive_sync(200, PEER, 100, false, 1500);
        assert_eq!(r.tick(1000 + 3609).became, Some(State::Master));
    }

    #[test]
    fn timers_follow_rfc_5798() {
        // Priority 100, 1 s: skew (256 - 100) * 100 / 256 = 60.9 cs, down after 3.609 s.
        let r = router(100, true);
        assert_eq!(r.skew_ms(), 609);
        assert_eq!(r.master_down_ms(), 3609);
        // Priority 254 takes over first: 3.007 s.
        assert_eq!(router(254, true).master_down_ms(), 3007);
    }

    #[test]
    fn a_silent_link_makes_a_backup_master() {
        let mut r = router(100, true);
        assert_eq!(r.start(0).became, Some(State::Backup));
        assert_eq!(r.tick(3608), Step::default());
        let s = r.tick(3609);
        assert_eq!(s.became, Some(State::Master));
        assert_eq!(s.advertise, Some(100));
        assert_eq!(r.master_ip(), Some(ME));
        // Then one advertisement a second.
        assert_eq!(r.tick(4608).advertise, None);
        assert_eq!(r.tick(4609).advertise, Some(100));
        assert_eq!(r.counters().adverts_out, 2);
        assert_eq!(r.counters().became_master, 1);
    }

    #[test]
    fn a_backup_stays_while_a_master_advertises() {
        let mut r = router(100, true);
        r.start(0);
        for t in (1000..20_000).step_by(1000) {
            assert_eq!(r.receive(&adv(200), t), Step::default());
            assert_eq!(r.tick(t + 500), Step::default());
        }
        assert_eq!(r.state(), State::Backup);
        assert_eq!(r.master_ip(), Some(PEER));
        // Silence: master after the peer's last advertisement + 3.609 s.
        assert_eq!(r.tick(19_000 + 3608).became, None);
        assert_eq!(r.tick(19_000 + 3609).became, Some(State::Master));
    }

    #[test]
    fn a_backup_adopts_the_masters_interval() {
        let mut r = router(100, true);
        r.start(0);
        let slow = Advert {
            interval_cs: 300,
            ..adv(200)
        };
        r.receive(&slow, 1000);
        // 3 * 3 s + (156 * 300 / 256) cs = 9 s + 1.828 s.
        assert_eq!(r.master_down_ms(), 10_828);
        assert_eq!(r.tick(1000 + 10_827).became, None);
        assert_eq!(r.tick(1000 + 10_828).became, Some(State::Master));
    }

    #[test]
    fn preemption_and_its_absence() {
        // A backup with preemption ignores a lower-priority master's advertisements (and
        // so takes over); without, it follows any master.
        let mut r = router(150, true);
        r.start(0);
        for t in (1000..6000).step_by(1000) {
            r.receive(&adv(100), t);
            r.tick(t + 1);
        }
        assert_eq!(r.state(), State::Master);
        let mut r = router(150, false);
        r.start(0);
        for t in (1000..6000).step_by(1000) {
            r.receive(&adv(100), t);
            r.tick(t + 1);
        }
        assert_eq!(r.state(), State::Backup);
    }

    #[test]
    fn preempt_delay_holds_preemption_back_after_each_start_but_not_a_takeover() {
        let delayed = |ms: u64| {
            Router::new(Config {
                preempt_delay_ms: ms,
                ..router(150, true).config().clone()
            })
        };
        // A lower-priority master advertising every second: preempted only once 5 s have
        // passed since the start (its last advertisement before then is still heard: it
        // takes over Master_Down_Interval, 3.41 s at 150, after that one).
        let mut r = delayed(5000);
        r.start(0);
        let mut master_at = None;
        for t in (1000..12000).step_by(1000) {
            r.receive(&adv(100), t);
            r.tick(t + 999);
            if r.state() == State::Master && master_at.is_none() {
                master_at = Some(t + 999);
            }
        }
        let at = master_at.expect("preempted in the end");
        assert!((6000..=9999).contains(&at), "preempted at {at} ms");
        // A silent master is taken over after Master_Down_Interval, delay or not.
        let mut r = delayed(60_000);
        r.start(0);
        r.tick(3500);
        assert_eq!(r.state(), State::Master);
        // The delay counts again from a start after a fault.
        let mut r = delayed(5000);
        r.start(0);
        r.tick(3500);
        assert_eq!(r.state(), State::Master);
        r.set_fault(true, 4000);
        r.set_fault(false, 20_000);
        assert_eq!(r.state(), State::Backup);
        for t in (21_000..26_000).step_by(1000) {
            r.receive(&adv(100), t);
            r.tick(t + 999);
            assert_eq!(r.state(), State::Backup, "at {t}");
        }
    }

    #[test]
    fn a_master_yields_to_a_higher_priority_and_ties_go_to_the_higher_address() {
        let mut r = router(100, true);
        r.start(0);
        r.tick(3609);
        assert_eq!(r.state(), State::Master);
        assert_eq!(r.receive(&adv(99), 4000), Step::default());
        assert_eq!(r.state(), State::Master);
        // Equal priority from a higher address (203.0.113.4 > .3): yield.
        assert_eq!(r.receive(&adv(100), 4100).became, Some(State::Backup));
        let mut r = Router::new(Config {
            primary: Ipv4Addr::new(203, 0, 113, 9).into(),
            ..router(100, true).config().clone()
        });
        r.start(0);
        r.tick(3609);
        assert_eq!(r.receive(&adv(100), 4000), Step::default());
        assert_eq!(r.state(), State::Master);
        assert_eq!(r.receive(&adv(101), 4100).became, Some(State::Backup));
    }

    #[test]
    fn priority_zero_shortens_the_wait_to_the_skew() {
        let mut r = router(100, true);
        r.start(0);
        r.receive(&adv(200), 1000);
        r.receive(&adv(0), 1500);
        assert_eq!(r.tick(1500 + 608).became, None);
        assert_eq!(r.tick(1500 + 609).became, Some(State::Master));
        // A master hearing priority 0 advertises at once.
        assert_eq!(r.receive(&adv(0), 3000).advertise, Some(100));
        // And shutting down says priority 0 itself.
        let s = r.shutdown();
        assert_eq!(s.advertise, Some(0));
        assert_eq!(s.became, Some(State::Initialize));
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn other_vrids_and_own_adverts_are_ignored() {
        let mut r = router(100, true);
        r.start(0);
        r.receive(
            &Advert {
                vrid: 52,
                ..adv(200)
            },
            1000,
        );
        r.receive(
            &Advert {
                src: ME,
                ..adv(200)
            },
            2000,
        );
        assert_eq!(r.counters().adverts_in, 0);
        assert_eq!(r.tick(3609).became, Some(State::Master));
    }

    #[test]
    fn a_group_member_that_hears_a_master_holds_the_others_back() {
        // Outside hears the master; inside's link to it is cut: inside must stay backup.
        let mut outside = router(100, true);
        let mut inside = router(100, true);
        outside.start(0);
        inside.start(0);
        for t in (500..30_000).step_by(1000) {
            outside.receive(&adv(200), t);
            for now in [t, t + 500] {
                assert!(outside.hears_master(now), "{now}");
                assert_eq!(
                    inside.tick_held(now, outside.hears_master(now)),
                    Step::default()
                );
            }
        }
        assert_eq!(inside.state(), State::Backup);
        // The master dies: outside stops hearing it 1.6 intervals after its last advert,
        // before either timer fires; inside then takes over, and outside follows.
        let last = 29_500;
        assert!(outside.hears_master(last + 1400));
        assert!(!outside.hears_master(last + 1609));
        let now = last + 3609;
        let s = inside.tick_held(now, outside.hears_master(now));
        assert_eq!(s.became, Some(State::Master));
        assert_eq!(outside.follow_to_master(now).became, Some(State::Master));
        assert_eq!(outside.follow_to_master(now), Step::default());
        assert!(!outside.hears_master(now));
        // A higher priority appears on the outside link only: outside yields, and inside with
        // it, and stays backup while outside hears that master.
        let t = now + 100;
        assert_eq!(outside.receive(&adv(250), t).became, Some(State::Backup));
        // It says so (priority 0): the other gateway's inside router need not wait out
        // Master_Down_Interval.
        assert_eq!(
            inside.follow_to_backup(t),
            Step {
                advertise: Some(0),
                became: Some(State::Backup)
            }
        );
        assert_eq!(inside.follow_to_backup(t), Step::default());
        for t in (t..t + 20_000).step_by(1000) {
            outside.receive(&adv(250), t);
            assert_eq!(
                inside.tick_held(t, outside.hears_master(t)),
                Step::default()
            );
        }
    }

    #[test]
    fn a_release_is_not_held_back_and_pulls_the_group_along() {
        // Both links hear the master; it then leaves (shutdown or fault) and can say so only
        // on the outside link (its inside link failed).
        let mut outside = router(100, true);
        let mut inside = router(100, true);
        outside.start(0);
        inside.start(0);
        for t in (500..10_000).step_by(1000) {
            outside.receive(&adv(200), t);
            inside.receive(&adv(200), t);
        }
        assert!(!outside.took_over_on_release());
        let t = 9_700;
        outside.receive(&adv(0), t);
        assert!(inside.hears_master(t + outside.skew_ms()));
        // Outside takes over after its skew although inside still hears the master...
        let s = outside.tick_held(t + outside.skew_ms(), true);
        assert_eq!(s.became, Some(State::Master));
        assert!(outside.took_over_on_release());
        // ...and the caller hastens inside: it takes over once its own master has been
        // silent one interval and the skew (its last advert came at 9500), not three.
        let pulled = t + outside.skew_ms();
        assert_eq!(inside.hasten(pulled), Step::default());
        assert!(!inside.hears_master(pulled));
        let due = 9_500 + 1000 + inside.skew_ms();
        assert_eq!(inside.deadline(), Some(due));
        assert_eq!(inside.tick_held(due - 1, true), Step::default());
        assert_eq!(inside.tick_held(due, true).became, Some(State::Master));
        // A master still alive on that link advertises within the interval: no takeover.
        let mut alive = router(100, true);
        alive.start(0);
        alive.receive(&adv(200), 9_500);
        assert_eq!(alive.hasten(9_900), Step::default());
        alive.receive(&adv(200), 10_500);
        assert_eq!(alive.tick_held(due, false), Step::default());
        assert_eq!(alive.state(), State::Backup);
        // Pulled after that interval and skew already passed: at once.
        let mut late = router(100, true);
        late.start(0);
        late.receive(&adv(200), 9_500);
        assert_eq!(late.hasten(due).became, Some(State::Master));
        // A later ordinary takeover is not a release; a normal advert cancels a release.
        outside.receive(&adv(250), t + 1000);
        assert_eq!(outside.state(), State::Backup);
        assert!(!outside.took_over_on_release());
        let mut r = router(100, true);
        r.start(0);
        r.receive(&adv(200), 100);
        r.receive(&adv(0), 200);
        r.receive(&adv(200), 300);
        assert_eq!(r.tick_held(300 + r.master_down_ms(), true), Step::default());
        assert_eq!(r.state(), State::Backup);
        // So does a lower priority's advert (ignored for the timer, with preempt).
        let mut r = router(100, true);
        r.start(0);
        r.receive(&adv(0), 200);
        r.receive(&adv(50), 300);
        let s = r.tick_held(200 + r.skew_ms(), true);
        assert_eq!((s, r.state()), (Step::default(), State::Backup));
    }

    #[test]
    fn a_link_fault_releases_the_addresses_and_recovery_waits_as_a_backup() {
        // A master whose link fails says priority 0 and leaves the addresses.
        let mut r = router(200, true);
        r.start(0);
        assert_eq!(r.tick(r.master_down_ms()).became, Some(State::Master));
        let s = r.set_fault(true, 5000);
        assert_eq!((s.advertise, s.became), (Some(0), Some(State::Fault)));
        assert_eq!(
            (r.state(), r.master_ip(), r.deadline()),
            (State::Fault, None, None)
        );
        assert_eq!(r.counters().faults, 1);
        // In fault: no timer, advertisements counted but not acted on, no takeover however
        // long the link is silent, and a repeated fault changes nothing.
        assert_eq!(r.receive(&adv(100), 5100), Step::default());
        assert_eq!(r.counters().adverts_in, 1);
        assert_eq!(r.tick(1_000_000), Step::default());
        assert_eq!(r.set_fault(true, 1_000_000), Step::default());
        assert_eq!(r.state(), State::Fault);
        // The link is back: a backup again, master only after a Master_Down_Interval of
        // silence (here it preempts the lower-priority master it hears).
        let s = r.set_fault(false, 2_000_000);
        assert_eq!((s.advertise, s.became), (None, Some(State::Backup)));
        assert_eq!(r.set_fault(false, 2_000_000), Step::default());
        assert_eq!(r.receive(&adv(100), 2_000_100), Step::default());
        let down = 2_000_000 + r.master_down_ms();
        assert_eq!(r.tick(down - 1), Step::default());
        assert_eq!(r.tick(down).became, Some(State::Master));
        assert_eq!(r.counters().faults, 1);
        // A backup faults without an advertisement; an unstarted router does not fault.
        let mut b = router(100, true);
        b.start(0);
        let s = b.set_fault(true, 10);
        assert_eq!((s.advertise, s.became), (None, Some(State::Fault)));
        let mut u = router(100, true);
        assert_eq!(u.set_fault(true, 0), Step::default());
        assert_eq!(u.state(), State::Initialize);
        // Shutdown from fault says nothing: the addresses are not held.
        let s = b.shutdown();
        assert_eq!((s.advertise, s.became), (None, Some(State::Initialize)));
    }

    #[test]
    fn advert_frames_parse_back() {
        let vips: [IpAddr; 2] = [
            Ipv4Addr::new(203, 0, 113, 1).into(),
            Ipv4Addr::new(192, 168, 10, 1).into(),
        ];
        let mut f = [0u8; ADVERT_FRAME_MAX];
        let n = advert_frame(&mut f, [2, 0, 0, 0, 0, 3], ME, 51, 150, 100, &vips).unwrap();
        assert_eq!(n, 14 + 20 + 8 + 8);
        assert_eq!(&f[..6], &vrrp::GROUP_V4_MAC);
        let ip = &f[14..n];
        assert!(is_vrrp(ip));
        assert!(ipv4::Packet::new_checked(ip).unwrap().verify_checksum());
        assert_eq!(
            parse_advert(ip),
            Ok(Advert {
                src: ME,
                vrid: 51,
                priority: 150,
                interval_cs: 100,
                addrs: AddrList::of(&vips),
            })
        );
        // RFC 5798 §7.1's checks.
        let mut bad = ip.to_vec();
        bad[8] = 254;
        ipv4::Packet::new_unchecked(&mut bad[..]).fill_checksum();
        assert_eq!(parse_advert(&bad), Err(Refusal::Ttl));
        let mut bad = ip.to_vec();
        bad[20] = 0x21;
        assert_eq!(parse_advert(&bad), Err(Refusal::Version));
        let mut bad = ip.to_vec();
        bad[22] ^= 1;
        assert_eq!(parse_advert(&bad), Err(Refusal::Checksum));
        let mut bad = ip.to_vec();
        bad[19] = 19;
        ipv4::Packet::new_unchecked(&mut bad[..]).fill_checksum();
        assert_eq!(parse_advert(&bad), Err(Refusal::Destination));
        assert_eq!(parse_advert(&ip[..30]), Err(Refusal::Malformed));
        assert!(advert_frame(&mut f[..40], [0; 6], ME, 1, 1, 100, &vips).is_none());
    }

    #[test]
    fn the_virtual_mac_is_the_rfc_5798_one() {
        // §7.3: 00-00-5E-00-01-{VRID}, the VRID in hex in the last octet.
        assert_eq!(virtual_mac(1, false), [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01]);
        assert_eq!(virtual_mac(51, false), [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33]);
        assert_eq!(virtual_mac(255, false)[5], 0xff);
        // IPv6: 00-00-5E-00-02-{VRID}.
        assert_eq!(virtual_mac(51, true), [0x00, 0x00, 0x5e, 0x00, 0x02, 0x33]);
        // A unicast address (the group bit clear), unlike the advertisements' destination.
        assert_eq!(virtual_mac(51, false)[0] & 1, 0);
    }

    #[test]
    fn ipv6_advert_frames_parse_back_and_keepalived_s_is_read() {
        let ll: IpAddr = "fe80::5054:ff:fe12:3456".parse().unwrap();
        let vips: [IpAddr; 1] = ["2001:db8:113::1".parse().unwrap()];
        let mut f = [0u8; ADVERT_FRAME_MAX];
        let n = advert_frame(&mut f, [2, 0, 0, 0, 0, 3], ll, 61, 150, 100, &vips).unwrap();
        assert_eq!(n, advert_frame_len(ll, &vips));
        assert_eq!(n, 14 + 40 + 8 + 16);
        assert_eq!(&f[..6], &vrrp::GROUP_V6_MAC);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let ip = &f[14..n];
        assert!(is_vrrp(ip));
        assert_eq!(
            parse_advert(ip),
            Ok(Advert {
                src: ll,
                vrid: 61,
                priority: 150,
                interval_cs: 100,
                addrs: AddrList::of(&vips),
            })
        );
        // RFC 5798 §7.1 over IPv6.
        let mut bad = ip.to_vec();
        bad[7] = 254;
        assert_eq!(parse_advert(&bad), Err(Refusal::Ttl));
        let mut bad = ip.to_vec();
        bad[39] = 0x13;
        assert_eq!(parse_advert(&bad), Err(Refusal::Destination));
        let mut bad = ip.to_vec();
        bad[40 + 6] ^= 1;
        assert_eq!(parse_advert(&bad), Err(Refusal::Checksum));
        let mut bad = ip.to_vec();
        bad[40] = 0x21;
        assert_eq!(parse_advert(&bad), Err(Refusal::Version));
        assert_eq!(parse_advert(&ip[..50]), Err(Refusal::Malformed));
        // keepalived 2.2.7's, whole (tcpdump -xx, from the IPv6 header on).
        let hex =
            "6c0279eb001870fffe80000000000000e8041efffe3c2d00ff020000000000000000000000000012\
                   313d640100640b3120010db8011300000000000000000001";
        let ka: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            parse_advert(&ka),
            Ok(Advert {
                src: "fe80::e804:1eff:fe3c:2d00".parse().unwrap(),
                vrid: 61,
                priority: 100,
                interval_cs: 100,
                addrs: AddrList::of(&vips),
            })
        );
    }

    /// A lowered router (its control plane lost) competes with priority 1: a master says so
    /// at once and yields to the backup, which outranks it now and takes over after
    /// Master_Down_Interval; lowered on both sides, nobody moves.
    #[test]
    fn a_lowered_master_hands_over_to_a_preempting_backup() {
        let mut m = router(200, true);
        m.start(0);
        assert_eq!(m.tick(3218).became, Some(State::Master));
        assert_eq!(m.set_lowered(true).advertise, Some(1));
        assert_eq!(m.set_lowered(true), Step::default(), "once");
        assert_eq!(m.priority(), 1);
        // The backup (100, preempting) discards the lowered advertisements...
        let mut b = router(100, true);
        b.start(0);
        b.receive(&adv(200), 3000);
        for t in (4000..7000).step_by(1000) {
            assert_eq!(b.receive(&adv(1), t), Step::default());
        }
        // ...and takes over Master_Down_Interval after the last one it took (3.609 s).
        assert_eq!(b.tick(3000 + 3608).became, None);
        assert_eq!(b.tick(3000 + 3609).became, Some(State::Master));
        // The lowered master yields to its advertisement.
        assert_eq!(m.receive(&adv(100), 6700).became, Some(State::Backup));
        // Lowered on both sides: the master stays, its backup follows its advertisements.
        let mut b = router(100, true);
        b.start(0);
        b.set_lowered(true);
        for t in (1000..20_000).step_by(1000) {
            b.receive(&adv(1), t);
            assert_eq!(b.tick(t + 500), Step::default());
        }
        assert_eq!(b.state(), State::Backup);
        // Restored: the configured priority again.
        m.set_lowered(false);
        assert_eq!(m.priority(), 200);
    }

    /// RFC 5798 §7.1: an advertisement listing other virtual addresses (another cluster on
    /// the link with our VRID) is counted and not followed, in any order the same list is;
    /// the addresses' owner (priority 255) is followed all the same.
    #[test]
    fn another_address_list_is_counted_and_not_followed() {
        let mut r = router(100, true);
        r.start(0);
        let other = Advert {
            addrs: AddrList::of(&[Ipv4Addr::new(203, 0, 113, 9).into()]),
            ..adv(200)
        };
        for t in (1000..6000).step_by(1000) {
            r.receive(&other, t);
        }
        assert_eq!(r.counters().addr_list_mismatch, 5);
        assert_eq!(r.counters().adverts_in, 0);
        assert_eq!(r.master_ip(), None);
        assert_eq!(
            r.tick(3609).became,
            Some(State::Master),
            "not held back by it"
        );
        // A list in another order is the same list; a repeat or one more is not.
        let a: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        let b: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
        assert_eq!(AddrList::of(&[a, b]), AddrList::of(&[b, a]));
        assert_ne!(AddrList::of(&[a, b]), AddrList::of(&[a, a]));
        assert_ne!(AddrList::of(&[a]), AddrList::of(&[a, b]));
        let v6: IpAddr = "::a00:1".parse().unwrap();
        assert_ne!(AddrList::of(&[a]), AddrList::of(&[v6]));
        // The owner's advertisement is followed even so.
        let mut r = router(100, true);
        r.start(0);
        r.receive(
            &Advert {
                priority: 255,
                ..other
            },
            1000,
        );
        assert_eq!(r.master_ip(), Some(PEER));
        assert_eq!(r.counters().addr_list_mismatch, 1);
    }

    #[test]
    fn a_router_hears_only_its_own_family() {
        let mut r = router(100, true);
        r.start(0);
        let v6 = Advert {
            src: "fe80::4".parse().unwrap(),
            ..adv(200)
        };
        // Same VRID over IPv6: another router, not this one's master.
        r.receive(&v6, 10);
        assert_eq!(r.counters().adverts_in, 0);
        assert_eq!(r.master_ip(), None);
        r.receive(&adv(200), 20);
        assert_eq!(r.master_ip(), Some(PEER));
    }

    #[test]
    fn the_link_local_address_is_the_modified_eui_64_of_the_mac() {
        // RFC 4291 Appendix A: flip the universal/local bit, put ff:fe in the middle.
        assert_eq!(
            link_local_of([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            link_local_of([0xea, 0x04, 0x1e, 0x3c, 0x2d, 0x00]),
            "fe80::e804:1eff:fe3c:2d00".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn announcements_are_gratuitous_arp_or_unsolicited_na() {
        let mut f = [0u8; ANNOUNCE_FRAME_LEN];
        let v4: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(
            announce(&mut f, [2, 0, 0, 0, 0, 3], v4),
            Some(GARP_FRAME_LEN)
        );
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        let v6: Ipv6Addr = "2001:db8:113::1".parse().unwrap();
        let n = announce(&mut f, [2, 0, 0, 0, 0, 3], v6.into()).unwrap();
        assert_eq!(
            crate::neigh::parse_nd(&f[..n]),
            Some((136, v6, v6, Some([2, 0, 0, 0, 0, 3])))
        );
        assert!(announce(&mut f[..20], [0; 6], v6.into()).is_none());
    }

    #[test]
    fn link_hold_debounces_both_ways() {
        // No delays: every reading counts at once.
        let mut l = LinkHold::new(0, 0);
        assert!(l.update(true, 0));
        assert!(!l.update(false, 0));
        assert!(l.update(true, 50));
        assert_eq!(l.changes(), 2);
        // A link down at the first reading is down at once, whatever the delays.
        let mut l = LinkHold::new(1000, 2000);
        assert!(!l.update(false, 0));
        assert!(!l.update(true, 50));
        assert!(l.update(true, 2050));
        assert_eq!(l.changes(), 1);
        // 1 s down, 2 s up, read every 50 ms.
        let mut l = LinkHold::new(1000, 2000);
        assert!(l.update(true, 0));
        // A 400 ms flap is ridden out.
        for t in (0..400).step_by(50) {
            assert!(l.update(false, t), "{t}");
        }
        assert!(l.update(true, 400));
        assert!(l.state());
        assert_eq!(l.changes(), 2);
        // A loss that lasts: down once it has held 1 s.
        assert!(l.update(false, 1000));
        assert!(l.update(false, 1950));
        assert!(!l.update(false, 2000));
        // Back: still down until it has held 2 s; a blip down restarts the wait.
        assert!(!l.update(true, 2100));
        assert!(!l.update(true, 3000));
        assert!(!l.update(false, 3050));
        assert!(!l.update(true, 3100));
        assert!(!l.update(true, 5050));
        assert!(l.update(true, 5100));
        assert_eq!(l.changes(), 6);
        // A clock that goes back never panics nor flips early.
        let mut l = LinkHold::new(1000, 1000);
        assert!(l.update(true, 4000));
        assert!(l.update(false, 5000));
        assert!(l.update(false, 10));
    }

    #[test]
    fn garp_is_a_request_for_itself() {
        let mut f = [0u8; GARP_FRAME_LEN];
        let ip = Ipv4Addr::new(203, 0, 113, 1);
        assert_eq!(gratuitous_arp(&mut f, [2, 0, 0, 0, 0, 3], ip), Some(42));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(crate::neigh::arp_sender(&f), Some((ip, [2, 0, 0, 0, 0, 3])));
        assert!(gratuitous_arp(&mut f[..41], [0; 6], ip).is_none());
    }
}
