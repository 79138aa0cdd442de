//! Next-hop resolution: ARP (RFC 826) for IPv4 and Neighbor Discovery (RFC 4861 §7) for
//! IPv6, the way a router does it.
//!
//! The table has a fixed capacity chosen at start (no allocation once running). A next hop
//! without a MAC gets a request (at most one a second, three tries, then a 5 s hold-down), and
//! the packets that wanted it are dropped and counted (`neighbour_unresolved`), not queued: the
//! senders' transports retransmit. Entries learned from replies and requests stay usable for
//! [`REACHABLE_MS`]; after that the old MAC is still used while a new request goes out (stale).
//! Static entries from the configuration never expire. Frames are built into caller buffers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::checksum;

/// How long a learned MAC is trusted before it is checked again.
pub const REACHABLE_MS: u64 = 60_000;
/// Between requests for an unresolved address.
pub const RETRY_MS: u64 = 1_000;
/// Requests before giving up for [`HOLD_DOWN_MS`].
pub const MAX_TRIES: u8 = 3;
/// How long an address that did not answer is not asked again.
pub const HOLD_DOWN_MS: u64 = 5_000;

/// An ARP request frame's length (Ethernet + ARP, without padding).
pub const ARP_FRAME_LEN: usize = 14 + 28;
/// A neighbor solicitation frame's length (Ethernet + IPv6 + NS with a source link-layer
/// address option).
pub const NS_FRAME_LEN: usize = 14 + 40 + 24 + 8;
/// A neighbor advertisement frame's length (Ethernet + IPv6 + NA with a target link-layer
/// address option).
pub const NA_FRAME_LEN: usize = 14 + 40 + 24 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Static,
    Reachable { until: u64 },
    Incomplete { next_try: u64, tries: u8 },
    Failed { until: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: Option<[u8; 6]>,
    state: State,
}

/// What to do with a packet for a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Send it to this MAC.
    Mac([u8; 6]),
    /// Send it to this MAC, and send a request for the next hop too (stale entry).
    MacAndRequest([u8; 6]),
    /// Drop it and send a request for the next hop.
    Request,
    /// Drop it: a request is in flight, or the address did not answer.
    Unresolved,
    /// Drop it: the table is full.
    TableFull,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NeighStats {
    /// Requests sent (ARP requests and neighbor solicitations).
    pub requests: u64,
    /// MACs learned or refreshed.
    pub learned: u64,
    /// Addresses that did not answer [`MAX_TRIES`] requests.
    pub failed: u64,
}

/// The neighbour table.
#[derive(Debug)]
pub struct NeighTable {
    entries: HashMap<IpAddr, Entry>,
    capacity: usize,
    /// Counters.
    pub stats: NeighStats,
}

impl NeighTable {
    /// A table for up to `capacity` addresses (allocated now).
    pub fn new(capacity: usize) -> NeighTable {
        NeighTable {
            entries: HashMap::with_capacity(capacity),
            capacity,
            stats: NeighStats::default(),
        }
    }

    /// A configured neighbour: never expires, never asked for.
    pub fn add_static(&mut self, ip: IpAddr, mac: [u8; 6]) {
        self.entries.insert(
            ip,
            Entry {
                mac: Some(mac),
                state: State::Static,
            },
        );
    }

    /// Where a packet for next hop `ip` goes at time `now_ms`. A `Request` or
    /// `MacAndRequest` answer means the caller sends a request now (and it is counted).
    pub fn resolve(&mut self, ip: IpAddr, now_ms: u64) -> Resolution {
        let full = self.entries.len() >= self.capacity;
        let e = match self.entries.get_mut(&ip) {
            Some(e) => e,
            None if full => return Resolution::TableFull,
            None => {
                self.entries.insert(
                    ip,
                    Entry {
                        mac: None,
                        state: State::Incomplete {
                            next_try: now_ms + RETRY_MS,
                            tries: 1,
                        },
                    },
                );
                self.stats.requests += 1;
                return Resolution::Request;
            }
        };
        match (e.state, e.mac) {
            (State::Static, Some(m)) => Resolution::Mac(m),
            (State::Reachable { until }, Some(m)) if now_ms < until => Resolution::Mac(m),
            (State::Reachable { .. }, Some(m)) => {
                // Stale: keep using it while asking again.
                e.state = State::Incomplete {
                    next_try: now_ms + RETRY_MS,
                    tries: 1,
                };
                self.stats.requests += 1;
                Resolution::MacAndRequest(m)
            }
            (State::Incomplete { next_try, tries }, mac) => {
                if now_ms < next_try {
                    return mac.map_or(Resolution::Unresolved, Resolution::Mac);
                }
                if tries >= MAX_TRIES {
                    e.state = State::Failed {
                        until: now_ms + HOLD_DOWN_MS,
                    };
                    e.mac = None;
                    self.stats.failed += 1;
                    return Resolution::Unresolved;
                }
                e.state = State::Incomplete {
                    next_try: now_ms + RETRY_MS,
                    tries: tries + 1,
                };
                self.stats.requests += 1;
                mac.map_or(Resolution::Request, Resolution::MacAndRequest)
            }
            (State::Failed { until }, _) if now_ms < until => Resolution::Unresolved,
            (State::Failed { .. }, _) | (_, None) => {
                e.state = State::Incomplete {
                    next_try: now_ms + RETRY_MS,
                    tries: 1,
                };
                e.mac = None;
                self.stats.requests += 1;
                Resolution::Request
            }
        }
    }

    /// A MAC seen in an ARP reply/request or a neighbor advertisement/solicitation. Only
    /// addresses already in the table are updated (RFC 826's "merge" rule; RFC 4861 §7.2.3
    /// creates entries for solicitations, which we do when `create`). Static entries stay.
    pub fn learn(&mut self, ip: IpAddr, mac: [u8; 6], now_ms: u64, create: bool) {
        if mac == [0; 6] || mac[0] & 1 != 0 {
            return; // never a multicast or zero MAC
        }
        let full = self.entries.len() >= self.capacity;
        match self.entries.get_mut(&ip) {
            Some(e) if e.state == State::Static => {}
            Some(e) => {
                e.mac = Some(mac);
                e.state = State::Reachable {
                    until: now_ms + REACHABLE_MS,
                };
                self.stats.learned += 1;
            }
            None if create && !full => {
                self.entries.insert(
                    ip,
                    Entry {
                        mac: Some(mac),
                        state: State::Reachable {
                            until: now_ms + REACHABLE_MS,
                        },
                    },
                );
                self.stats.learned += 1;
            }
            None => {}
        }
    }

    /// Entries (address, MAC if known), for the stats.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Builds a broadcast ARP request for `target` from `our_ip`/`our_mac` into `out`
/// (at least [`ARP_FRAME_LEN`] bytes). Returns the frame length.
pub fn arp_request(out: &mut [u8], our_mac: [u8; 6], our_ip: Ipv4Addr, target: Ipv4Addr) -> usize {
    let f = &mut out[..ARP_FRAME_LEN];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&our_mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let a = &mut f[14..];
    a[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet, IPv4, request
    a[8..14].copy_from_slice(&our_mac);
    a[14..18].copy_from_slice(&our_ip.octets());
    a[18..24].copy_from_slice(&[0; 6]);
    a[24..28].copy_from_slice(&target.octets());
    ARP_FRAME_LEN
}

/// An ARP packet's sender (IP, MAC), from a whole Ethernet frame, if it is ARP for
/// Ethernet/IPv4.
pub fn arp_sender(frame: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    let a = frame.get(14..42)?;
    if frame[12..14] != [0x08, 0x06] || a[..6] != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&a[8..14]);
    Some((Ipv4Addr::new(a[14], a[15], a[16], a[17]), mac))
}

fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    )
}

fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, body: &[u8]) -> u16 {
    !checksum::combine(&[
        checksum::pseudo_header_v6(src, dst, 58, body.len() as u32),
        checksum::data(body),
    ])
}

/// Writes an ND message (`kind`, `flags`, `target`, one link-layer address option of type
/// `opt` carrying `our_mac`) in Ethernet + IPv6 (hop limit 255) into `out[..NS_FRAME_LEN]`.
#[allow(clippy::too_many_arguments)]
fn nd_frame(
    out: &mut [u8],
    dst_mac: [u8; 6],
    our_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    kind: u8,
    flags: u8,
    target: Ipv6Addr,
    opt: u8,
) -> usize {
    let f = &mut out[..NS_FRAME_LEN];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&our_mac);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut f[14..];
    ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = 58;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let body = &mut ip[40..72];
    body[..8].copy_from_slice(&[kind, 0, 0, 0, flags, 0, 0, 0]);
    body[8..24].copy_from_slice(&target.octets());
    body[24] = opt;
    body[25] = 1;
    body[26..32].copy_from_slice(&our_mac);
    let c = icmpv6_checksum(&src, &dst, body);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    NS_FRAME_LEN
}

/// Builds a neighbor solicitation for `target` (to its solicited-node multicast address,
/// hop limit 255, with our link-layer address option) into `out` (at least
/// [`NS_FRAME_LEN`] bytes). Returns the frame length.
pub fn neighbor_solicit(
    out: &mut [u8],
    our_mac: [u8; 6],
    our_ip: Ipv6Addr,
    target: Ipv6Addr,
) -> usize {
    let dst = solicited_node(target);
    let d = dst.octets();
    let mac = [0x33, 0x33, d[12], d[13], d[14], d[15]];
    nd_frame(out, mac, our_mac, our_ip, dst, 135, 0, target, 1)
}

/// A neighbor discovery message in a whole Ethernet frame, as RFC 4861 §6.1 and §7.1 ask
/// every one to be: IPv6 without extension headers, ICMPv6 of a type `wanted` takes, code 0,
/// hop limit 255, at least `min_len` bytes, a valid checksum. (The IPv6 source, the message.)
pub fn nd_message(
    frame: &[u8],
    wanted: impl Fn(u8) -> bool,
    min_len: usize,
) -> Option<(Ipv6Addr, &[u8])> {
    if frame.get(12..14)? != [0x86, 0xdd] {
        return None;
    }
    let ip = frame.get(14..)?;
    if ip.len() < 40 || ip[0] >> 4 != 6 || ip[6] != 58 || ip[7] != 255 {
        return None;
    }
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let body = ip.get(40..40 + plen)?;
    if body.len() < min_len.max(8) || !wanted(body[0]) || body[1] != 0 {
        return None;
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&ip[8..24]);
    let src = Ipv6Addr::from(a);
    a.copy_from_slice(&ip[24..40]);
    let dst = Ipv6Addr::from(a);
    if checksum::combine(&[
        checksum::pseudo_header_v6(&src, &dst, 58, body.len() as u32),
        checksum::data(body),
    ]) != 0xffff
    {
        return None;
    }
    Some((src, body))
}

/// A neighbor solicitation or advertisement in a whole Ethernet frame: (the message type,
/// the IPv6 source, the target, the link-layer address option's MAC if any), checked by
/// [`nd_message`].
pub fn parse_nd(frame: &[u8]) -> Option<(u8, Ipv6Addr, Ipv6Addr, Option<[u8; 6]>)> {
    let (src, body) = nd_message(frame, |t| matches!(t, 135 | 136), 24)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(&body[8..24]);
    let target = Ipv6Addr::from(a);
    // Options: type, length in 8-byte units.
    let mut opts = &body[24..];
    let mut mac = None;
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        let want = if body[0] == 135 { 1 } else { 2 };
        if opts[0] == want && len >= 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            mac = Some(m);
        }
        opts = &opts[len..];
    }
    Some((body[0], src, target, mac))
}

/// Builds the solicited neighbor advertisement answering a solicitation from `to_ip`/`to_mac`
/// for our `target` (router and solicited flags, override, our link-layer address) into `out`
/// (at least [`NA_FRAME_LEN`] bytes). Returns the frame length.
pub fn neighbor_advert(
    out: &mut [u8],
    our_mac: [u8; 6],
    target: Ipv6Addr,
    to_ip: Ipv6Addr,
    to_mac: [u8; 6],
) -> usize {
    nd_frame(out, to_mac, our_mac, target, to_ip, 136, 0xe0, target, 2)
}

/// Builds an unsolicited neighbor advertisement of `target` at `our_mac` (RFC 4861 §7.2.6:
/// from `target` to all nodes, ff02::1; router and override flags, not solicited) into `out`
/// (at least [`NA_FRAME_LEN`] bytes): a new VRRP master's announcement of an IPv6 address.
/// Returns the frame length.
pub fn unsolicited_advert(out: &mut [u8], our_mac: [u8; 6], target: Ipv6Addr) -> usize {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mac = [0x33, 0x33, 0, 0, 0, 1];
    nd_frame(out, mac, our_mac, target, all_nodes, 136, 0xa0, target, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const M: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn unresolved_hops_are_asked_for_at_most_once_a_second_then_held_down() {
        let mut t = NeighTable::new(4);
        assert_eq!(t.resolve(A, 0), Resolution::Request);
        assert_eq!(t.resolve(A, 10), Resolution::Unresolved);
        assert_eq!(t.resolve(A, 1000), Resolution::Request);
        assert_eq!(t.resolve(A, 2000), Resolution::Request);
        assert_eq!(t.resolve(A, 3000), Resolution::Unresolved); // three tries: hold down
        assert_eq!(t.stats.failed, 1);
        assert_eq!(t.resolve(A, 7000), Resolution::Unresolved);
        assert_eq!(t.resolve(A, 8001), Resolution::Request);
        assert_eq!(t.stats.requests, 4);
    }

    #[test]
    fn learned_macs_are_used_then_refreshed_while_still_used() {
        let mut t = NeighTable::new(4);
        assert_eq!(t.resolve(A, 0), Resolution::Request);
        t.learn(A, M, 5, false);
        assert_eq!(t.resolve(A, 6), Resolution::Mac(M));
        assert_eq!(t.resolve(A, 5 + REACHABLE_MS), Resolution::MacAndRequest(M));
        assert_eq!(t.resolve(A, 6 + REACHABLE_MS), Resolution::Mac(M));
        // Unsolicited replies do not create entries; solicitations do when asked to.
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        t.learn(b, M, 0, false);
        assert_eq!(t.len(), 1);
        t.learn(b, M, 0, true);
        assert_eq!(t.resolve(b, 1), Resolution::Mac(M));
        // Multicast or zero MACs are never learned; static entries are never replaced.
        let c = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        t.add_static(c, M);
        t.learn(c, [2, 0, 0, 0, 0, 9], 0, true);
        t.learn(A, [1, 0, 0, 0, 0, 9], 0, true);
        assert_eq!(t.resolve(c, REACHABLE_MS * 9), Resolution::Mac(M));
    }

    #[test]
    fn a_full_table_refuses_new_addresses() {
        let mut t = NeighTable::new(1);
        assert_eq!(t.resolve(A, 0), Resolution::Request);
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(t.resolve(b, 0), Resolution::TableFull);
    }

    fn unhex(s: &str) -> Vec<u8> {
        crate::config::parse_hex_key(s).unwrap().to_vec()
    }

    #[test]
    fn frames_are_byte_identical_to_scapys() {
        // Built with scapy 2.x: Ether()/IPv6(hlim=255)/ICMPv6ND_NS(..)/ICMPv6NDOptSrcLLAddr(..),
        // ICMPv6ND_NA(R=1, S=1, O=1)/ICMPv6NDOptDstLLAddr(..), and ARP(op=1).
        let us: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let them: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut f = [0u8; NS_FRAME_LEN];
        neighbor_solicit(&mut f, M, us, them);
        assert_eq!(f.to_vec(), unhex("3333ff00000202000000000186dd6000000000203aff20010db8000000000000000000000001ff0200000000000000000001ff00000287001c270000000020010db80000000000000000000000020101020000000001"));
        let mut g = [0u8; NA_FRAME_LEN];
        neighbor_advert(&mut g, M, us, them, [2, 0, 0, 0, 0, 2]);
        assert_eq!(g.to_vec(), unhex("02000000000202000000000186dd6000000000203aff20010db800000000000000000000000120010db800000000000000000000000288000a73e000000020010db80000000000000000000000010201020000000001"));
        let mut a = [0u8; ARP_FRAME_LEN];
        arp_request(
            &mut a,
            M,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        assert_eq!(a.to_vec(), unhex("ffffffffffff020000000001080600010800060400010200000000010a0000010000000000000a000002"));
    }

    #[test]
    fn arp_request_round_trips_through_the_sender_parser() {
        let mut f = [0u8; ARP_FRAME_LEN];
        arp_request(
            &mut f,
            M,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        assert_eq!(arp_sender(&f), Some((Ipv4Addr::new(10, 0, 0, 1), M)));
        assert_eq!(&f[38..42], &[10, 0, 0, 2]);
        assert_eq!(arp_sender(&f[..30]), None);
    }

    #[test]
    fn nd_messages_parse_back_and_bad_checksums_are_refused() {
        let us: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let them: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut f = [0u8; NS_FRAME_LEN];
        neighbor_solicit(&mut f, M, us, them);
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0, 0, 2]);
        assert_eq!(parse_nd(&f), Some((135, us, them, Some(M))));
        f[70] ^= 1;
        assert_eq!(parse_nd(&f), None);
        let mut g = [0u8; NA_FRAME_LEN];
        neighbor_advert(&mut g, M, us, them, [2, 0, 0, 0, 0, 2]);
        assert_eq!(parse_nd(&g), Some((136, us, us, Some(M))));
        for n in 0..g.len() {
            let _ = parse_nd(&g[..n]);
        }
    }

    #[test]
    fn an_unsolicited_advert_goes_to_all_nodes_with_router_and_override() {
        let vip: Ipv6Addr = "2001:db8:113::1".parse().unwrap();
        let mut g = [0u8; NA_FRAME_LEN];
        assert_eq!(unsolicited_advert(&mut g, M, vip), NA_FRAME_LEN);
        assert_eq!(&g[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(
            &g[14 + 24..14 + 40],
            &Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets()
        );
        // R and O set, S clear (RFC 4861 §4.4, §7.2.6).
        assert_eq!(g[14 + 40 + 4], 0xa0);
        assert_eq!(parse_nd(&g), Some((136, vip, vip, Some(M))));
    }
}
