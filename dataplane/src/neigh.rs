//! Next-hop resolution: ARP (RFC 826) for IPv4 and Neighbor Discovery (RFC 4861 §7) for
//! IPv6, the way a router does it.
//!
//! The table has a fixed capacity chosen at start (no allocation once running). A next hop
//! without a MAC gets a request (at most one a second, three tries, then a 5 s hold-down), and
//! the packets that wanted it are dropped and counted (`neighbour_unresolved`), not queued: the
//! senders' transports retransmit. Entries learned from replies and requests stay usable for
//! [`REACHABLE_MS`]; after that the old MAC is still used while a new request goes out (stale).
//! When the table is full, a new next hop evicts an address that did not answer, else the
//! least recently used or confirmed one ([`NeighTable`]). Static entries from the
//! configuration never expire and are never evicted. Frames are built into caller buffers.

use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::buf::PacketBuf;
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

/// No slot: an empty index cell, or the end of the eviction list.
const NIL: u32 = u32::MAX;

/// One address's entry in the slot array, with its hash (kept so that the index can be
/// rebuilt and shifted without hashing again) and its links in the eviction list.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ip: IpAddr,
    hash: u64,
    entry: Entry,
    /// Towards the most recently used end of the eviction list (NIL: none, or static).
    prev: u32,
    /// Towards the eviction end.
    next: u32,
}

/// What kind of message taught the table a MAC ([`NeighTable::learn`]): the rules for
/// creating and replacing entries differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// An ARP request or reply from the address. `for_us`: a request for one of our addresses,
    /// which creates an entry (RFC 826's merge rule); the rest only update.
    Arp {
        /// The request asked for one of our addresses.
        for_us: bool,
    },
    /// A neighbor solicitation for one of our addresses, from the address (RFC 4861 §7.2.3):
    /// it may create an entry, but in the STALE state, since it proves nothing about the
    /// path towards the sender; a cached MAC it repeats is left as it is.
    Solicit,
    /// A neighbor advertisement of the address (RFC 4861 §7.2.5).
    Advert {
        /// It answers a solicitation one of our lcores sent (solicited, to one of our
        /// addresses): it may create an entry.
        create: bool,
        /// Its Override flag: when clear, a different MAC does not replace a cached one.
        override_flag: bool,
        /// Its Solicited flag: set, the entry is REACHABLE; clear, STALE if the MAC changed
        /// and as it was otherwise (RFC 4861 §7.2.5).
        solicited: bool,
    },
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
    /// Drop it: the table has no room for learned entries at all (capacity 0).
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
    /// Entries pushed out of a full table to make room for a new next hop.
    pub evicted: u64,
}

/// The neighbour table.
///
/// Fixed storage: a slot array (static entries, then at most `capacity` learned ones) and an
/// open-addressing index into it, at most half full, so that a lookup ends within a few cells
/// and removal shifts entries back instead of leaving tombstones (a `HashMap` that churns
/// rehashes, and may reallocate, on the packet path). The hash is keyed per table from the
/// OS's random source, so that nobody can aim addresses (a scan through a tunnel) at one run
/// of the index.
///
/// Learned entries are kept in an eviction list: used or confirmed ones move to its front,
/// ones that stopped answering ([`State::Failed`]) to its back. When the table is full, a new
/// next hop takes the slot at the back: a failed entry if there is one, else the least
/// recently used or confirmed. Without that, every next hop ever asked about (a scan of an
/// inside /64) would stay until restart and the table would refuse all new ones. Static
/// entries are never in the list, so never evicted.
pub struct NeighTable {
    slots: Vec<Slot>,
    /// Slot numbers; NIL is empty. A power of two, at least twice the slots' capacity.
    index: Box<[u32]>,
    hasher: RandomState,
    /// Learned entries at most.
    capacity: usize,
    /// Learned entries now.
    learned_len: usize,
    /// Static entries.
    statics: usize,
    /// The eviction list's most recently used end and its eviction end.
    head: u32,
    tail: u32,
    /// Counters.
    pub stats: NeighStats,
}

impl std::fmt::Debug for NeighTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeighTable")
            .field("entries", &self.slots.len())
            .field("capacity", &self.capacity)
            .field("stats", &self.stats)
            .finish()
    }
}

/// An index of at least twice `slots` cells (a power of two), so that it is never more than
/// half full.
fn index_len(slots: usize) -> usize {
    (slots.max(1) * 2).next_power_of_two()
}

impl NeighTable {
    /// A table for up to `capacity` learned addresses, plus the static ones (allocated now
    /// and by [`NeighTable::add_static`], never while resolving or learning).
    pub fn new(capacity: usize) -> NeighTable {
        NeighTable {
            slots: Vec::with_capacity(capacity),
            index: vec![NIL; index_len(capacity)].into_boxed_slice(),
            hasher: RandomState::new(),
            capacity,
            learned_len: 0,
            statics: 0,
            head: NIL,
            tail: NIL,
            stats: NeighStats::default(),
        }
    }

    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    /// The slot holding `ip`, and its index cell.
    fn find(&self, ip: IpAddr, hash: u64) -> Option<(u32, usize)> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        // The index is at most half full, so an empty cell ends the probe long before this
        // bound; it only keeps the loop finite whatever happens.
        for _ in 0..self.index.len() {
            let s = self.index[i];
            if s == NIL {
                return None;
            }
            if self.slots[s as usize].ip == ip {
                return Some((s, i));
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Puts slot `s` (whose address is not in the index) into the index.
    fn index_insert(&mut self, s: u32) {
        let mask = self.mask();
        let mut i = self.slots[s as usize].hash as usize & mask;
        for _ in 0..self.index.len() {
            if self.index[i] == NIL {
                self.index[i] = s;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Empties index cell `i`, shifting back the entries after it that would no longer be
    /// found (linear probing's deletion without tombstones).
    fn index_remove(&mut self, mut i: usize) {
        let mask = self.mask();
        self.index[i] = NIL;
        let mut j = i;
        for _ in 0..self.index.len() {
            j = (j + 1) & mask;
            let s = self.index[j];
            if s == NIL {
                return;
            }
            let home = self.slots[s as usize].hash as usize & mask;
            // The entry at j may stay if its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.index[i] = s;
                self.index[j] = NIL;
                i = j;
            }
        }
    }

    fn unlink(&mut self, s: u32) {
        let (p, n) = (self.slots[s as usize].prev, self.slots[s as usize].next);
        if p == NIL {
            if self.head == s {
                self.head = n;
            }
        } else {
            self.slots[p as usize].next = n;
        }
        if n == NIL {
            if self.tail == s {
                self.tail = p;
            }
        } else {
            self.slots[n as usize].prev = p;
        }
        self.slots[s as usize].prev = NIL;
        self.slots[s as usize].next = NIL;
    }

    /// Moves learned slot `s` to the front of the eviction list (used or confirmed now).
    fn move_to_front(&mut self, s: u32) {
        if self.head == s {
            return;
        }
        self.unlink(s);
        self.slots[s as usize].next = self.head;
        if self.head != NIL {
            self.slots[self.head as usize].prev = s;
        }
        self.head = s;
        if self.tail == NIL {
            self.tail = s;
        }
    }

    /// Moves learned slot `s` to the back of the eviction list (it failed: evicted first).
    fn move_to_back(&mut self, s: u32) {
        if self.tail == s {
            return;
        }
        self.unlink(s);
        self.slots[s as usize].prev = self.tail;
        if self.tail != NIL {
            self.slots[self.tail as usize].next = s;
        }
        self.tail = s;
        if self.head == NIL {
            self.head = s;
        }
    }

    /// A slot for a new learned entry for `ip`, in the index and at the front of the eviction
    /// list: a fresh one while there is room, else the one at the back of the list, evicted.
    /// None only when the table takes no learned entries at all. Never allocates: the slot
    /// array has room for `capacity` learned entries besides the static ones.
    fn new_learned(&mut self, ip: IpAddr, hash: u64, entry: Entry) -> Option<u32> {
        let slot = Slot {
            ip,
            hash,
            entry,
            prev: NIL,
            next: NIL,
        };
        let s = if self.learned_len < self.capacity && self.slots.len() < self.slots.capacity() {
            self.slots.push(slot);
            self.learned_len += 1;
            (self.slots.len() - 1) as u32
        } else {
            let s = self.tail;
            if s == NIL {
                return None;
            }
            self.unlink(s);
            let (old, old_hash) = (self.slots[s as usize].ip, self.slots[s as usize].hash);
            if let Some((_, cell)) = self.find(old, old_hash) {
                self.index_remove(cell);
            }
            self.slots[s as usize] = slot;
            self.stats.evicted += 1;
            s
        };
        self.index_insert(s);
        self.move_to_front(s);
        Some(s)
    }

    /// A configured neighbour: never expires, never asked for, never evicted. Called while
    /// configuring (it may allocate: static entries do not take the learned entries' room).
    pub fn add_static(&mut self, ip: IpAddr, mac: [u8; 6]) {
        let hash = self.hasher.hash_one(ip);
        let entry = Entry {
            mac: Some(mac),
            state: State::Static,
        };
        let found = self.find(ip, hash).map(|(s, _)| s);
        match found {
            Some(s) if self.slots[s as usize].entry.state == State::Static => {}
            Some(s) => {
                self.unlink(s);
                self.learned_len -= 1;
                self.statics += 1;
            }
            None => self.statics += 1,
        }
        // Room for every static entry and `capacity` learned ones, so that learning never
        // grows the slot array; the index stays at most half full.
        let want = self.capacity + self.statics;
        if self.slots.capacity() < want {
            self.slots.reserve_exact(want - self.slots.len());
        }
        let s = found.unwrap_or_else(|| {
            self.slots.push(Slot {
                ip,
                hash,
                entry,
                prev: NIL,
                next: NIL,
            });
            (self.slots.len() - 1) as u32
        });
        self.slots[s as usize].entry = entry;
        if self.index.len() < index_len(self.slots.capacity()) {
            self.index = vec![NIL; index_len(self.slots.capacity())].into_boxed_slice();
            for s in 0..self.slots.len() as u32 {
                self.index_insert(s);
            }
        } else if found.is_none() {
            self.index_insert(s);
        }
    }

    /// Where a packet for next hop `ip` goes at time `now_ms`. A `Request` or
    /// `MacAndRequest` answer means the caller sends a request now (and it is counted).
    pub fn resolve(&mut self, ip: IpAddr, now_ms: u64) -> Resolution {
        let hash = self.hasher.hash_one(ip);
        let Some((s, _)) = self.find(ip, hash) else {
            let entry = Entry {
                mac: None,
                state: State::Incomplete {
                    next_try: now_ms + RETRY_MS,
                    tries: 1,
                },
            };
            if self.new_learned(ip, hash, entry).is_none() {
                return Resolution::TableFull;
            }
            self.stats.requests += 1;
            return Resolution::Request;
        };
        let e = &mut self.slots[s as usize].entry;
        let r = match (e.state, e.mac) {
            (State::Static, Some(m)) => return Resolution::Mac(m),
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
                    mac.map_or(Resolution::Unresolved, Resolution::Mac)
                } else if tries >= MAX_TRIES {
                    e.state = State::Failed {
                        until: now_ms + HOLD_DOWN_MS,
                    };
                    e.mac = None;
                    self.stats.failed += 1;
                    // Evicted first when room is needed.
                    self.move_to_back(s);
                    return Resolution::Unresolved;
                } else {
                    e.state = State::Incomplete {
                        next_try: now_ms + RETRY_MS,
                        tries: tries + 1,
                    };
                    self.stats.requests += 1;
                    mac.map_or(Resolution::Request, Resolution::MacAndRequest)
                }
            }
            // Held down: stays at the back of the eviction list.
            (State::Failed { until }, _) if now_ms < until => return Resolution::Unresolved,
            (State::Failed { .. }, _) | (_, None) => {
                e.state = State::Incomplete {
                    next_try: now_ms + RETRY_MS,
                    tries: 1,
                };
                e.mac = None;
                self.stats.requests += 1;
                Resolution::Request
            }
        };
        self.move_to_front(s);
        r
    }

    /// A MAC seen in an ARP reply/request or a neighbor advertisement/solicitation, by the
    /// rules of the message it came in ([`Heard`]). Entries are created only while the table
    /// has room (they save a request later, nothing more; only [`NeighTable::resolve`]
    /// evicts). Static entries stay.
    pub fn learn(&mut self, ip: IpAddr, mac: [u8; 6], now_ms: u64, heard: Heard) {
        if mac == [0; 6] || mac[0] & 1 != 0 {
            return; // never a multicast or zero MAC
        }
        let fresh = State::Reachable {
            until: now_ms + REACHABLE_MS,
        };
        // RFC 4861's STALE: the MAC is used, and the first packet asks again.
        let stale = State::Reachable { until: now_ms };
        let hash = self.hasher.hash_one(ip);
        let Some((s, _)) = self.find(ip, hash) else {
            let (create, state) = match heard {
                Heard::Arp { for_us } => (for_us, fresh),
                Heard::Solicit => (true, stale),
                Heard::Advert { create, .. } => (create, fresh),
            };
            if create && self.learned_len < self.capacity {
                let entry = Entry {
                    mac: Some(mac),
                    state,
                };
                if self.new_learned(ip, hash, entry).is_some() {
                    self.stats.learned += 1;
                }
            }
            return;
        };
        let e = &mut self.slots[s as usize].entry;
        let state = match (e.state, heard) {
            (State::Static, _) => return,
            // RFC 4861 §7.2.3: a solicitation repeating the cached MAC changes nothing; a
            // new one replaces it, STALE.
            (_, Heard::Solicit) if e.mac == Some(mac) => return,
            (_, Heard::Solicit) => stale,
            // RFC 4861 §7.2.5: without the Override flag a different MAC does not replace the
            // cached one (a proxy's or anycast answer must not take over from the owner's);
            // a reachable entry becomes STALE, so that it is checked.
            (
                st,
                Heard::Advert {
                    override_flag: false,
                    ..
                },
            ) if e.mac.is_some_and(|m| m != mac) => {
                if let State::Reachable { until } = st {
                    e.state = State::Reachable {
                        until: until.min(now_ms),
                    };
                }
                return;
            }
            // §7.2.5: an advertisement that answers no solicitation of ours proves nothing
            // about the path: a new MAC is STALE (checked at its first use), the same one
            // changes nothing.
            (
                _,
                Heard::Advert {
                    solicited: false, ..
                },
            ) if e.mac == Some(mac) => return,
            (
                _,
                Heard::Advert {
                    solicited: false, ..
                },
            ) => stale,
            _ => fresh,
        };
        e.mac = Some(mac);
        e.state = state;
        self.stats.learned += 1;
        self.move_to_front(s);
    }

    /// Entries (static and learned), for the stats.
    pub fn len(&self) -> usize {
        self.learned_len + self.statics
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// What a received neighbor solicitation or advertisement (a whole Ethernet frame) teaches
/// the neighbour table: the address, its MAC and how it was heard ([`Heard`]), or None.
/// `ours`: whether an address is one the receiving interface answers for (its own, and the
/// virtual ones it holds now).
///
/// A solicitation teaches only when its target is ours: RFC 4861 §7.2.3 has every other one
/// silently discarded. Learning from all of them (the ports run allmulticast, so every
/// solicitation on the link arrives) filled the table with every host that asked for any
/// other. One from the unspecified address (duplicate address detection) has no sender to
/// learn, and a message without a link-layer address option has no MAC.
pub fn nd_lesson(
    frame: &[u8],
    ours: impl Fn(Ipv6Addr) -> bool,
) -> Option<(IpAddr, [u8; 6], Heard)> {
    let (kind, src, target, mac) = parse_nd(frame)?;
    let mac = mac?;
    if src.is_unspecified() {
        return None;
    }
    if kind == 135 {
        return ours(target).then_some((src.into(), mac, Heard::Solicit));
    }
    // `parse_nd` checked that the 24 bytes of the advertisement are there.
    let flags = *frame.get(14 + 40 + 4)?;
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(frame.get(38..54)?).ok()?);
    // Solicited advertisements sent to one of our addresses, for a unicast target not ours,
    // answer a solicitation the gateway sent (perhaps from another lcore, whose table has the
    // incomplete entry): they create entries. Others only refresh (RFC 4861 §7.2.5).
    let create = flags & 0x40 != 0 && !target.is_multicast() && !ours(target) && ours(dst);
    Some((
        target.into(),
        mac,
        Heard::Advert {
            create,
            override_flag: flags & 0x20 != 0,
            solicited: flags & 0x40 != 0,
        },
    ))
}

/// Rewrites `m`, which holds a neighbor solicitation for our `target` from `src` (Ethernet
/// source `to_mac`), into the advertisement that answers it, from `our_mac`: to all nodes
/// when `src` is unspecified (duplicate address detection, RFC 4861 §7.2.4), else to the
/// sender. The buffer is grown or cut to [`NA_FRAME_LEN`]: a solicitation without options
/// (every DAD probe without a nonce, unicast reachability probes without a source link-layer
/// address) is shorter than its answer, and RFC 4861 §7.2.4 wants it answered all the same.
/// False, with `m` unchanged, when there is no room to grow it.
pub fn answer_solicit<B: PacketBuf + ?Sized>(
    m: &mut B,
    our_mac: [u8; 6],
    target: Ipv6Addr,
    src: Ipv6Addr,
    to_mac: [u8; 6],
) -> bool {
    let len = m.len();
    let resized = if len > NA_FRAME_LEN {
        m.trim(len - NA_FRAME_LEN).is_ok()
    } else {
        m.append(NA_FRAME_LEN - len).is_ok()
    };
    if !resized {
        return false;
    }
    if src.is_unspecified() {
        unsolicited_advert(m.data_mut(), our_mac, target);
    } else {
        neighbor_advert(m.data_mut(), our_mac, target, src, to_mac);
    }
    true
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

    /// A solicited advertisement that only refreshes (an answer to another lcore's request,
    /// say), with the Override flag.
    const NA: Heard = Heard::Advert {
        create: false,
        override_flag: true,
        solicited: true,
    };
    /// An ARP request for one of our addresses.
    const ARP_FOR_US: Heard = Heard::Arp { for_us: true };

    #[test]
    fn learned_macs_are_used_then_refreshed_while_still_used() {
        let mut t = NeighTable::new(4);
        assert_eq!(t.resolve(A, 0), Resolution::Request);
        t.learn(A, M, 5, NA);
        assert_eq!(t.resolve(A, 6), Resolution::Mac(M));
        assert_eq!(t.resolve(A, 5 + REACHABLE_MS), Resolution::MacAndRequest(M));
        assert_eq!(t.resolve(A, 6 + REACHABLE_MS), Resolution::Mac(M));
        // Unsolicited replies do not create entries; solicitations do when asked to.
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        t.learn(b, M, 0, NA);
        t.learn(b, M, 0, Heard::Arp { for_us: false });
        assert_eq!(t.len(), 1);
        t.learn(b, M, 0, ARP_FOR_US);
        assert_eq!(t.resolve(b, 1), Resolution::Mac(M));
        // Multicast or zero MACs are never learned; static entries are never replaced.
        let c = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        t.add_static(c, M);
        t.learn(c, [2, 0, 0, 0, 0, 9], 0, ARP_FOR_US);
        t.learn(A, [1, 0, 0, 0, 0, 9], 0, ARP_FOR_US);
        assert_eq!(t.resolve(c, REACHABLE_MS * 9), Resolution::Mac(M));
    }

    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));

    fn has(t: &NeighTable, ip: IpAddr) -> bool {
        t.find(ip, t.hasher.hash_one(ip)).is_some()
    }

    /// The index holds every slot exactly once, each where a probe from its home finds it,
    /// and the eviction list holds exactly the learned slots.
    fn check(t: &NeighTable) {
        let cells = t.index.iter().filter(|&&s| s != NIL).count();
        assert_eq!(cells, t.slots.len());
        assert_eq!(t.slots.len(), t.len());
        for (i, sl) in t.slots.iter().enumerate() {
            assert_eq!(t.find(sl.ip, sl.hash).map(|(s, _)| s), Some(i as u32));
        }
        let (mut n, mut s, mut prev) = (0, t.head, NIL);
        while s != NIL {
            let sl = &t.slots[s as usize];
            assert_eq!(sl.prev, prev);
            assert_ne!(sl.entry.state, State::Static);
            (prev, s) = (s, sl.next);
            n += 1;
            assert!(n <= t.slots.len());
        }
        assert_eq!(prev, t.tail);
        assert_eq!(n, t.learned_len);
        assert!(t.learned_len <= t.capacity);
    }

    #[test]
    fn a_full_table_evicts_a_failed_entry_first() {
        let mut t = NeighTable::new(2);
        // C is resolved first (the least recently used), A then fails.
        assert_eq!(t.resolve(C, 0), Resolution::Request);
        assert_eq!(t.resolve(A, 0), Resolution::Request);
        assert_eq!(t.resolve(A, 1000), Resolution::Request);
        assert_eq!(t.resolve(A, 2000), Resolution::Request);
        assert_eq!(t.resolve(A, 3000), Resolution::Unresolved);
        assert_eq!(t.stats.failed, 1);
        // Full: B takes the failed entry's place, not C's.
        assert_eq!(t.resolve(B, 3001), Resolution::Request);
        assert_eq!(t.stats.evicted, 1);
        assert!(!has(&t, A) && has(&t, B) && has(&t, C));
        assert_eq!(t.len(), 2);
        check(&t);
    }

    #[test]
    fn a_full_table_without_failed_entries_evicts_the_least_recently_used() {
        let mut t = NeighTable::new(2);
        assert_eq!(t.resolve(A, 0), Resolution::Request);
        t.learn(A, M, 1, NA);
        assert_eq!(t.resolve(C, 2), Resolution::Request);
        assert_eq!(t.resolve(A, 3), Resolution::Mac(M)); // used: C is now the oldest
        assert_eq!(t.resolve(B, 4), Resolution::Request);
        assert!(has(&t, A) && has(&t, B) && !has(&t, C));
        // A confirmation counts as a use too.
        t.learn(A, M, 5, NA);
        assert_eq!(t.resolve(C, 6), Resolution::Request);
        assert!(has(&t, A) && !has(&t, B) && has(&t, C));
        // Learning creates entries only while there is room: it never evicts.
        let d = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4));
        t.learn(d, M, 7, ARP_FOR_US);
        assert!(!has(&t, d));
        assert_eq!(t.stats.evicted, 2);
        check(&t);
    }

    #[test]
    fn static_entries_are_never_evicted() {
        let s = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let mut t = NeighTable::new(1);
        t.add_static(s, M);
        for (n, ip) in [A, B, C, A, B].into_iter().enumerate() {
            assert_eq!(t.resolve(ip, n as u64), Resolution::Request);
            assert_eq!(t.resolve(s, n as u64), Resolution::Mac(M));
        }
        assert_eq!(t.stats.evicted, 4);
        assert_eq!(t.len(), 2);
        check(&t);
        // A learned entry made static leaves the eviction list.
        t.add_static(B, M);
        assert_eq!(t.resolve(A, 10), Resolution::Request);
        assert_eq!(t.resolve(C, 11), Resolution::Request);
        assert!(has(&t, s) && has(&t, B) && has(&t, C) && !has(&t, A));
        check(&t);
        // A table without room for learned entries still holds static ones.
        let mut t = NeighTable::new(0);
        t.add_static(s, M);
        assert_eq!(t.resolve(A, 0), Resolution::TableFull);
        assert_eq!(t.resolve(s, 0), Resolution::Mac(M));
        check(&t);
    }

    #[test]
    fn the_index_stays_consistent_through_churn() {
        // Capacity 8: an index of 16 cells, where probes collide and removals shift.
        let mut t = NeighTable::new(8);
        for n in 0..4u8 {
            t.add_static(IpAddr::V4(Ipv4Addr::new(10, 9, 0, n)), M);
        }
        check(&t);
        let mut x = 1u32;
        for now in 0..5_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, (x % 24) as u8));
            match x % 5 {
                0 => t.learn(ip, M, now, NA),
                1 => t.learn(ip, M, now, Heard::Solicit),
                _ => {
                    let _ = t.resolve(ip, now * 300);
                }
            }
            check(&t);
        }
        for n in 0..4u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 9, 0, n));
            assert_eq!(t.resolve(ip, 0), Resolution::Mac(M));
        }
        assert!(t.stats.evicted > 100);
    }

    #[test]
    fn solicitations_make_stale_entries_and_keep_the_state_of_a_known_mac() {
        let mut t = NeighTable::new(4);
        t.learn(A, M, 0, Heard::Solicit);
        // Usable, but asked for at once (RFC 4861 §7.2.3: STALE).
        assert_eq!(t.resolve(A, 1), Resolution::MacAndRequest(M));
        t.learn(A, M, 2, NA);
        t.learn(A, M, 3, Heard::Solicit);
        assert_eq!(t.resolve(A, 4), Resolution::Mac(M));
        let m2 = [2, 0, 0, 0, 0, 2];
        t.learn(A, m2, 5, Heard::Solicit);
        assert_eq!(t.resolve(A, 6), Resolution::MacAndRequest(m2));
    }

    /// RFC 4861 §7.2.5: an unsolicited advertisement with a new MAC (and O set) replaces the
    /// cached one, STALE: used, and checked at once (before: REACHABLE for a minute); with the
    /// same MAC it changes nothing (a stale entry stays stale).
    #[test]
    fn unsolicited_advertisements_leave_entries_stale() {
        let m2 = [2, 0, 0, 0, 0, 2];
        let unsolicited = Heard::Advert {
            create: false,
            override_flag: true,
            solicited: false,
        };
        let mut t = NeighTable::new(4);
        assert_eq!(t.resolve(A, 0), Resolution::Request);
        t.learn(A, M, 1, NA);
        assert_eq!(t.resolve(A, 2), Resolution::Mac(M));
        t.learn(A, m2, 3, unsolicited);
        assert_eq!(t.resolve(A, 4), Resolution::MacAndRequest(m2));
        // Its answer (solicited) makes it REACHABLE; an unsolicited repeat keeps the state.
        t.learn(A, m2, 5, NA);
        assert_eq!(t.resolve(A, 6), Resolution::Mac(m2));
        t.learn(A, m2, 5 + REACHABLE_MS, unsolicited);
        assert_eq!(
            t.resolve(A, 6 + REACHABLE_MS),
            Resolution::MacAndRequest(m2),
            "not refreshed by it"
        );
    }

    #[test]
    fn an_advertisement_without_override_does_not_replace_a_cached_mac() {
        let m2 = [2, 0, 0, 0, 0, 2];
        let keep = Heard::Advert {
            create: false,
            override_flag: false,
            solicited: true,
        };
        let mut t = NeighTable::new(4);
        assert_eq!(t.resolve(A, 0), Resolution::Request);
        // An incomplete entry takes the MAC whatever the flag.
        t.learn(A, M, 1, keep);
        assert_eq!(t.resolve(A, 2), Resolution::Mac(M));
        // O clear, another MAC: still M, but checked again (REACHABLE becomes STALE).
        t.learn(A, m2, 3, keep);
        assert_eq!(t.resolve(A, 4), Resolution::MacAndRequest(M));
        t.learn(A, m2, 5, keep);
        assert_eq!(t.resolve(A, 6), Resolution::Mac(M));
        // O clear, the same MAC: confirms it.
        t.learn(A, M, 7, keep);
        assert_eq!(t.resolve(A, 8 + REACHABLE_MS / 2), Resolution::Mac(M));
        // O set: replaced.
        t.learn(A, m2, 9, NA);
        assert_eq!(t.resolve(A, 10), Resolution::Mac(m2));
    }

    /// `frame` (an ND message) with the NA flags byte set to `flags`, checksum made again.
    fn with_flags(frame: &[u8], flags: u8) -> Vec<u8> {
        let mut f = frame.to_vec();
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap());
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
        f[58] = flags;
        f[56..58].copy_from_slice(&[0, 0]);
        let c = icmpv6_checksum(&src, &dst, &f[54..]);
        f[56..58].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn only_solicitations_for_our_addresses_teach_and_the_override_flag_is_read() {
        let us: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let them: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let other: Ipv6Addr = "2001:db8::3".parse().unwrap();
        let ours = |a: Ipv6Addr| a == us;
        let tm = [2, 0, 0, 0, 0, 2];
        let mut t = NeighTable::new(4);
        // Them asking for another host: RFC 4861 §7.2.3 discards it; no entry.
        let mut f = [0u8; NS_FRAME_LEN];
        neighbor_solicit(&mut f, tm, them, other);
        assert_eq!(nd_lesson(&f, ours), None);
        if let Some((ip, mac, h)) = nd_lesson(&f, ours) {
            t.learn(ip, mac, 0, h);
        }
        assert!(t.is_empty());
        // Them asking for us: an entry (stale).
        neighbor_solicit(&mut f, tm, them, us);
        let (ip, mac, h) = nd_lesson(&f, ours).unwrap();
        assert_eq!((ip, mac, h), (them.into(), tm, Heard::Solicit));
        t.learn(ip, mac, 0, h);
        assert_eq!(t.resolve(them.into(), 1), Resolution::MacAndRequest(tm));
        // Duplicate address detection (from ::) teaches nothing.
        let dad = unhex(DAD_NS);
        assert_eq!(nd_lesson(&dad, ours), None);
        // Their answer to our solicitation (R, S, O): creates; with O clear, O is read so.
        let mut g = [0u8; NA_FRAME_LEN];
        neighbor_advert(&mut g, tm, other, us, M);
        let answer = Heard::Advert {
            create: true,
            override_flag: true,
            solicited: true,
        };
        assert_eq!(nd_lesson(&g, ours), Some((other.into(), tm, answer)));
        let no_o = Heard::Advert {
            create: true,
            override_flag: false,
            solicited: true,
        };
        assert_eq!(
            nd_lesson(&with_flags(&g, 0xc0), ours),
            Some((other.into(), tm, no_o))
        );
        // Not solicited, or not to us: refreshes only.
        let unsolicited = Heard::Advert {
            create: false,
            override_flag: true,
            solicited: false,
        };
        assert_eq!(
            nd_lesson(&with_flags(&g, 0xa0), ours),
            Some((other.into(), tm, unsolicited))
        );
        neighbor_advert(&mut g, tm, other, them, M);
        assert_eq!(nd_lesson(&g, ours), Some((other.into(), tm, NA)));
    }

    /// Built with scapy: Ether(dst="33:33:ff:00:00:01", src="02:00:00:00:00:07") /
    /// IPv6(src="::", dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt="2001:db8::1"): a
    /// duplicate address detection probe, no options, 78 bytes.
    const DAD_NS: &str = "3333ff00000102000000000786dd6000000000183aff00000000000000000000000000000000ff0200000000000000000001ff00000187004ced0000000020010db8000000000000000000000001";

    #[test]
    fn solicitations_without_options_are_answered() {
        use crate::buf::HeapBuf;
        let us: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dad = unhex(DAD_NS);
        assert_eq!(dad.len(), 78);
        assert_eq!(parse_nd(&dad), Some((135, Ipv6Addr::UNSPECIFIED, us, None)));
        let mut m = HeapBuf::from_slice(&dad);
        assert!(answer_solicit(
            &mut m,
            M,
            us,
            Ipv6Addr::UNSPECIFIED,
            [2, 0, 0, 0, 0, 7]
        ));
        // scapy: Ether(dst="33:33:00:00:00:01", src="02:00:00:00:00:01") / IPv6(src=
        // "2001:db8::1", dst="ff02::1", hlim=255) / ICMPv6ND_NA(R=1, S=0, O=1,
        // tgt="2001:db8::1") / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:01").
        assert_eq!(m.to_vec(), unhex("33330000000102000000000186dd6000000000203aff20010db8000000000000000000000001ff0200000000000000000000000000018800792aa000000020010db80000000000000000000000010201020000000001"));
        // A unicast reachability probe without a source link-layer address (scapy, from
        // 2001:db8::2 at 02:00:00:00:00:02): answered to its sender, solicited.
        let them: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let tm = [2, 0, 0, 0, 0, 2];
        let nud = unhex("02000000000102000000000286dd6000000000183aff20010db800000000000000000000000220010db80000000000000000000000018700ef7d0000000020010db8000000000000000000000001");
        assert_eq!(parse_nd(&nud), Some((135, them, us, None)));
        let mut m = HeapBuf::from_slice(&nud);
        assert!(answer_solicit(&mut m, M, us, them, tm));
        let mut want = [0u8; NA_FRAME_LEN];
        neighbor_advert(&mut want, M, us, them, tm);
        assert_eq!(m.data(), &want[..]);
        // A longer one (options, padding) is cut to the answer's size.
        let mut long = [0u8; NS_FRAME_LEN + 10];
        neighbor_solicit(&mut long, tm, them, us);
        let mut m = HeapBuf::from_slice(&long);
        assert!(answer_solicit(&mut m, M, us, them, tm));
        assert_eq!(m.data(), &want[..]);
        // No room to grow: refused, the buffer as it was.
        let mut m = HeapBuf::from_slice_with_room(&dad, 0, 4);
        assert!(!answer_solicit(&mut m, M, us, them, tm));
        assert_eq!(m.to_vec(), dad);
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
