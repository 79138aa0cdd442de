//! The Security Policy Database (RFC 4301 §4.4.1) and its classifier.
//!
//! Outbound and inbound databases are simply two [`Spd`] values. An `Spd` is immutable: the
//! main core builds a new one (off the hot path; 100,000 rules build in well under a second)
//! and publishes it, workers look up without locks or allocation.
//!
//! # The classifier
//! A per-family trie over the destination and source addresses with *set pruning*: every
//! leaf holds, in priority order, all rules whose address prefixes cover the leaf's region,
//! so the first rule in the leaf that matches the whole 5-tuple is the answer. Nodes cut 16
//! (root) or 8 bits of one address at a time; a node is only split further while its leaf
//! would hold more than [`LEAF_MAX`] rules at the root, [`LEAF_MAX_DEEP`] below it, and it
//! cuts the destination until no rule can be told apart by it, then the source (so a
//! concentrator's inbound SPD, with one local subnet and 100,000 remote ones, splits on the
//! source). Lookup is one array read per level (each slot says where and how its child
//! cuts) plus a short scan, nearly independent of the number of rules; memory is bounded by
//! the rule replication that set pruning causes, which the builder reports in
//! [`Spd::memory_bytes`]. [`Spd::lookup_ids`] classifies a burst, walking its keys down
//! together so that on large databases their cache misses overlap.
//!
//! Selector semantics: ports are matched for TCP, UDP and SCTP; for ICMP/ICMPv6 the type is in
//! the source port and the code in the destination port (RFC 4301 §4.4.1.1). Packets without
//! ports (other protocols, non-first fragments: "OPAQUE") carry ports 0 and match only rules
//! whose port ranges are ANY.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::net::{addr_bits, IpPrefix};

/// The root is split when it would hold more rules than this (smaller SPDs are one leaf).
pub const LEAF_MAX: usize = 8;

/// Below the root, leaves with more rules than this are split further when the rules allow
/// it. Larger than [`LEAF_MAX`]: a node below the root is a 256-slot (2 KiB) array read by a
/// dependent load, while a leaf's entries are read in sequence; and every leaf also holds the
/// rules that no address bit can separate (wide bypass and discard rules), which at 8 made
/// the builder split nodes that separated almost nothing. With 100,000 concentrator rules
/// (perf/benches/spd.rs), 16 instead of 8 shrinks the outbound tables from 26.6 to 5.0 MiB
/// and puts 97% of keys one level below the root instead of two (5.3 entries scanned on
/// average instead of 2.7).
pub const LEAF_MAX_DEEP: usize = 16;

/// Keys [`Spd::lookup_ids`] walks down the tries together (a burst).
pub const LANES: usize = 32;

/// From this many rules on, [`Spd::lookup_ids`] walks its keys down the tries together. Below
/// it the tables stay in cache and the one-at-a-time walk is cheaper: with one rule, walking
/// together cost 84 more instructions a packet in `burst::outbound` (callgrind).
pub const WALK_TOGETHER_MIN: usize = 64;

/// The selector fields of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol of the upper layer.
    pub proto: u8,
    /// Source port (ICMP: type).
    pub src_port: u16,
    /// Destination port (ICMP: code).
    pub dst_port: u16,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PortRange {
    /// Lowest port.
    pub lo: u16,
    /// Highest port.
    pub hi: u16,
}

impl PortRange {
    /// Every port.
    pub const ANY: PortRange = PortRange {
        lo: 0,
        hi: u16::MAX,
    };
    /// One port.
    pub const fn single(p: u16) -> Self {
        PortRange { lo: p, hi: p }
    }
    /// Whether `p` is in the range.
    #[inline]
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
    /// True for the full range.
    pub fn is_any(&self) -> bool {
        *self == Self::ANY
    }
}

/// What a policy matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Source prefix.
    pub src: IpPrefix,
    /// Destination prefix (same family as `src`).
    pub dst: IpPrefix,
    /// Upper-layer protocol, or any.
    pub proto: Option<u8>,
    /// Source ports (ICMP: types).
    pub src_ports: PortRange,
    /// Destination ports (ICMP: codes).
    pub dst_ports: PortRange,
}

impl Selector {
    /// Any traffic from `src` to `dst`: any protocol, any ports.
    pub fn between(src: IpPrefix, dst: IpPrefix) -> Self {
        Self {
            src,
            dst,
            proto: None,
            src_ports: PortRange::ANY,
            dst_ports: PortRange::ANY,
        }
    }

    /// Whether the packet matches (the RFC 4301 §5.2 inbound check uses this directly).
    #[inline]
    pub fn matches(&self, k: &FlowKey) -> bool {
        self.dst.contains(k.dst)
            && self.src.contains(k.src)
            && self.proto.is_none_or(|p| p == k.proto)
            && self.src_ports.contains(k.src_port)
            && self.dst_ports.contains(k.dst_port)
    }
}

/// What to do with matching traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<T> {
    /// Protect with IPsec (outbound: the SA to use; inbound: must have arrived protected).
    Protect(T),
    /// Pass in the clear.
    Bypass,
    /// Drop.
    Discard,
}

impl<T> Action<T> {
    /// Which action, without its target: "protect", "bypass" or "discard".
    pub fn name(&self) -> &'static str {
        match self {
            Action::Protect(_) => "protect",
            Action::Bypass => "bypass",
            Action::Discard => "discard",
        }
    }
}

/// What identifies a rule across table versions: priority, selector and kind of action.
fn rule_key<T>(r: &Rule<T>) -> (u32, Selector, &'static str) {
    (r.priority, r.selector, r.action.name())
}

/// One policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<T> {
    /// Lower values win; among equal priorities the earlier rule wins.
    pub priority: u32,
    /// What it matches.
    pub selector: Selector,
    /// What it does.
    pub action: Action<T>,
}

/// Why an SPD could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpdError {
    /// A selector mixes IPv4 and IPv6.
    #[error("rule {0}: source and destination are of different address families")]
    MixedFamilies(usize),
    /// A port range with lo > hi.
    #[error("rule {0}: empty port range")]
    EmptyPortRange(usize),
    /// More rules than the classifier indexes.
    #[error("too many rules ({0})")]
    TooMany(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    Dst,
    Src,
}

/// A reference to a trie node or leaf, as a parent slot (or the root) holds it: all a lookup
/// needs to take the next step, so that each level is one read (a separate node header and
/// leaf table made it three at 100,000 rules, each a cache miss).
///
/// - Node (`NODE_TAG` set): bits 0-31 the index of its first slot in [`Trie::slots`], bits
///   32-36 the stride, bits 40-46 the bit offset, bit 48 the dimension (1 = source).
/// - Leaf: bits 0-31 the index of its first entry in [`Trie::entries`], bits 32-62 the count.
type Slot = u64;

const NODE_TAG: Slot = 1 << 63;
const SRC_DIM: Slot = 1 << 48;

fn node_slot(base: usize, dim: Dim, offset: u8, stride: u8) -> Slot {
    NODE_TAG
        | base as Slot
        | Slot::from(stride) << 32
        | Slot::from(offset) << 40
        | if dim == Dim::Src { SRC_DIM } else { 0 }
}

fn leaf_slot(lo: usize, count: usize) -> Slot {
    lo as Slot | (count as Slot) << 32
}

/// (first slot, offset, stride, is source) of a node slot.
#[inline]
fn node_parts(w: Slot) -> (usize, u8, u8, bool) {
    (
        (w as u32) as usize,
        ((w >> 40) & 0x7f) as u8,
        ((w >> 32) & 0x1f) as u8,
        w & SRC_DIM != 0,
    )
}

/// From node `w` to the slot the addresses select in it (an empty leaf if `slots` were not
/// the node's trie).
#[inline]
fn step(slots: &[Slot], w: Slot, dst: u128, src: u128) -> Slot {
    let (base, offset, stride, is_src) = node_parts(w);
    let v = if is_src { src } else { dst };
    slots
        .get(base + slice_bits(v, offset, stride))
        .copied()
        .unwrap_or(0)
}

/// (first entry, count) of a leaf slot.
#[inline]
fn leaf_parts(w: Slot) -> (usize, usize) {
    ((w as u32) as usize, ((w >> 32) & 0x7fff_ffff) as usize)
}

/// An address word: `u32` for IPv4 tries, `u128` for IPv6 ones.
trait Word: Copy + Eq + Default + std::ops::BitAnd<Output = Self> + std::fmt::Debug {
    /// From a left-aligned 128-bit address (see [`addr_bits`]).
    fn from_bits(v: u128) -> Self;
}
impl Word for u32 {
    fn from_bits(v: u128) -> u32 {
        (v >> 96) as u32
    }
}
impl Word for u128 {
    fn from_bits(v: u128) -> u128 {
        v
    }
}

/// A rule's selector as a leaf stores it, so that checking a candidate reads only the leaf
/// (the rule record is read once, for the winner).
#[derive(Debug, Clone, Copy, Default)]
struct Entry<W> {
    dst: W,
    dst_mask: W,
    src: W,
    src_mask: W,
    dp_lo: u16,
    dp_hi: u16,
    sp_lo: u16,
    sp_hi: u16,
    /// Protocol, or `ANY_PROTO`.
    proto: u16,
    rule: u32,
}

const ANY_PROTO: u16 = 0x100;

fn mask_bits(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl<W: Word> Entry<W> {
    fn new(sel: &Selector, rule: u32) -> Self {
        Self {
            dst: W::from_bits(sel.dst.bits()),
            dst_mask: W::from_bits(mask_bits(sel.dst.len())),
            src: W::from_bits(sel.src.bits()),
            src_mask: W::from_bits(mask_bits(sel.src.len())),
            dp_lo: sel.dst_ports.lo,
            dp_hi: sel.dst_ports.hi,
            sp_lo: sel.src_ports.lo,
            sp_hi: sel.src_ports.hi,
            proto: sel.proto.map_or(ANY_PROTO, u16::from),
            rule,
        }
    }

    #[inline]
    fn matches(&self, dst: W, src: W, k: &FlowKey) -> bool {
        dst & self.dst_mask == self.dst
            && src & self.src_mask == self.src
            && (self.proto == ANY_PROTO || self.proto == u16::from(k.proto))
            && self.dp_lo <= k.dst_port
            && k.dst_port <= self.dp_hi
            && self.sp_lo <= k.src_port
            && k.src_port <= self.sp_hi
    }
}

#[derive(Debug, Default)]
struct Trie<W> {
    /// Every node's slots, one node after another (see [`Slot`]).
    slots: Vec<Slot>,
    /// Every leaf's rules, one leaf after another.
    entries: Vec<Entry<W>>,
    /// Root slot (node or leaf).
    root: Slot,
    width: u8,
}

/// A compiled, immutable SPD.
#[derive(Debug)]
pub struct Spd<T> {
    rules: Vec<Rule<T>>,
    v4: Trie<u32>,
    v6: Trie<u128>,
    /// Unique to this build in the process (see [`Spd::generation`]).
    generation: u64,
}

/// The next [`Spd::generation`].
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl<T> Spd<T> {
    /// Compiles the rules. The order of `rules` breaks priority ties.
    pub fn build(rules: Vec<Rule<T>>) -> Result<Self, SpdError> {
        if rules.len() >= (1 << 31) {
            return Err(SpdError::TooMany(rules.len()));
        }
        for (i, r) in rules.iter().enumerate() {
            if r.selector.src.is_ipv4() != r.selector.dst.is_ipv4() {
                return Err(SpdError::MixedFamilies(i));
            }
            if r.selector.src_ports.lo > r.selector.src_ports.hi
                || r.selector.dst_ports.lo > r.selector.dst_ports.hi
            {
                return Err(SpdError::EmptyPortRange(i));
            }
        }
        // Rule ids in priority order (stable: earlier rules first among equals).
        let mut order: Vec<u32> = (0..rules.len() as u32).collect();
        order.sort_by_key(|&i| (rules[i as usize].priority, i));
        let (v4, v6): (Vec<u32>, Vec<u32>) = order
            .into_iter()
            .partition(|&i| rules[i as usize].selector.dst.is_ipv4());
        let sels: Vec<Selector> = rules.iter().map(|r| r.selector).collect();
        let (v4, v6) = (Trie::build(&sels, v4, 32), Trie::build(&sels, v6, 128));
        // Slots index slots and entries with 32 bits.
        let limit = u32::MAX as usize;
        if [
            v4.slots.len(),
            v4.entries.len(),
            v6.slots.len(),
            v6.entries.len(),
        ]
        .iter()
        .any(|&n| n > limit)
        {
            return Err(SpdError::TooMany(rules.len()));
        }
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            v4,
            v6,
            rules,
            generation,
        })
    }

    /// A number no other SPD built in this process has (never 0): what a
    /// [`crate::flowcache::FlowCache`] remembers its answers under, so that answers of a
    /// replaced SPD are never given for its successor.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The highest-priority rule matching `k`, if any.
    #[inline]
    pub fn lookup(&self, k: &FlowKey) -> Option<&Rule<T>> {
        self.lookup_id(k).map(|(_, r)| r)
    }

    /// The highest-priority rule matching `k` with its index in [`Spd::rules`] (for
    /// [`PolicyHits`]).
    #[inline]
    pub fn lookup_id(&self, k: &FlowKey) -> Option<(usize, &Rule<T>)> {
        let (dst, src) = (addr_bits(k.dst), addr_bits(k.src));
        let rule = match (k.dst, k.src) {
            (IpAddr::V4(_), IpAddr::V4(_)) => self.v4.find(dst, src, k),
            (IpAddr::V6(_), IpAddr::V6(_)) => self.v6.find(dst, src, k),
            _ => None,
        }? as usize;
        self.rules.get(rule).map(|r| (rule, r))
    }

    /// [`Spd::lookup_id`]'s answer (the rule's index) for each key, in order; `None` keys get
    /// `None`. The tries are walked one level at a time for [`LANES`] keys together, so that
    /// on rule sets too large for the caches the keys' reads are in flight at once instead of
    /// one lookup's misses after another's. `out` must be as long as `keys` (extra keys are
    /// left out). Small databases (fewer than [`WALK_TOGETHER_MIN`] rules, always in cache)
    /// are looked up one key at a time, which costs fewer instructions.
    pub fn lookup_ids(&self, keys: &[Option<FlowKey>], out: &mut [Option<usize>]) {
        if self.rules.len() < WALK_TOGETHER_MIN {
            for (k, o) in keys.iter().zip(out.iter_mut()) {
                *o = k.as_ref().and_then(|k| self.lookup_id(k)).map(|(i, _)| i);
            }
            return;
        }
        for (keys, out) in keys.chunks(LANES).zip(out.chunks_mut(LANES)) {
            self.lookup_lanes(keys, out);
        }
    }

    fn lookup_lanes(&self, keys: &[Option<FlowKey>], out: &mut [Option<usize>]) {
        #[derive(Clone, Copy, PartialEq)]
        enum Fam {
            None,
            V4,
            V6,
        }
        let n = keys.len().min(out.len()).min(LANES);
        let mut fam = [Fam::None; LANES];
        let mut at = [0 as Slot; LANES];
        let mut dst = [0u128; LANES];
        let mut src = [0u128; LANES];
        for i in 0..n {
            let Some(k) = &keys[i] else { continue };
            (dst[i], src[i]) = (addr_bits(k.dst), addr_bits(k.src));
            (fam[i], at[i]) = match (k.dst, k.src) {
                (IpAddr::V4(_), IpAddr::V4(_)) => (Fam::V4, self.v4.root),
                (IpAddr::V6(_), IpAddr::V6(_)) => (Fam::V6, self.v6.root),
                _ => (Fam::None, 0),
            };
        }
        // Bounded: each level consumes at least 8 bits of one of two addresses.
        loop {
            let mut deeper = false;
            for i in 0..n {
                if at[i] & NODE_TAG == 0 {
                    continue;
                }
                let slots = if fam[i] == Fam::V4 {
                    &self.v4.slots
                } else {
                    &self.v6.slots
                };
                at[i] = step(slots, at[i], dst[i], src[i]);
                deeper |= at[i] & NODE_TAG != 0;
            }
            if !deeper {
                break;
            }
        }
        for i in 0..n {
            let rule = match (&keys[i], fam[i]) {
                (Some(k), Fam::V4) => self.v4.find_in(at[i], dst[i], src[i], k),
                (Some(k), Fam::V6) => self.v6.find_in(at[i], dst[i], src[i], k),
                _ => None,
            };
            out[i] = rule.map(|r| r as usize).filter(|&r| r < self.rules.len());
        }
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> &[Rule<T>] {
        &self.rules
    }
    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }
    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
    /// Memory held by the classifier (not the rules themselves), in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes() + self.v6.memory_bytes()
    }
    /// Depth of the deepest trie path (for benchmarks and tests).
    pub fn max_depth(&self) -> usize {
        self.v4.depth(self.v4.root).max(self.v6.depth(self.v6.root))
    }
}

#[inline]
fn slice_bits(v: u128, offset: u8, stride: u8) -> usize {
    ((v << offset) >> (128 - u32::from(stride))) as usize
}

struct Builder<'a, W> {
    sels: &'a [Selector],
    trie: Trie<W>,
    interned: HashMap<Vec<u32>, Slot>,
}

impl<W: Word> Trie<W> {
    fn build(sels: &[Selector], ids: Vec<u32>, width: u8) -> Trie<W> {
        let mut b = Builder {
            sels,
            trie: Trie {
                width,
                ..Trie::default()
            },
            interned: HashMap::new(),
        };
        let root = b.make(ids, 0, 0, 0);
        b.trie.root = root;
        b.trie
    }

    /// The highest-priority matching rule's index.
    #[inline]
    fn find(&self, dst: u128, src: u128, k: &FlowKey) -> Option<u32> {
        let mut w = self.root;
        // Bounded: each level consumes at least 8 bits of one of two addresses.
        while w & NODE_TAG != 0 {
            w = step(&self.slots, w, dst, src);
        }
        self.find_in(w, dst, src, k)
    }

    /// The highest-priority rule of leaf `w` matching `k`.
    #[inline]
    fn find_in(&self, w: Slot, dst: u128, src: u128, k: &FlowKey) -> Option<u32> {
        let (lo, n) = leaf_parts(w);
        let (d, s) = (W::from_bits(dst), W::from_bits(src));
        self.entries
            .get(lo..lo + n)?
            .iter()
            .find(|e| e.matches(d, s, k))
            .map(|e| e.rule)
    }

    fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
            + self.entries.len() * std::mem::size_of::<Entry<W>>()
    }

    fn depth(&self, w: Slot) -> usize {
        if w & NODE_TAG == 0 {
            return 0;
        }
        let (base, _, stride, _) = node_parts(w);
        let mut seen = std::collections::HashSet::new();
        1 + self.slots[base..base + (1usize << stride)]
            .iter()
            .filter(|s| seen.insert(**s))
            .map(|&s| self.depth(s))
            .max()
            .unwrap_or(0)
    }
}

impl<W: Word> Builder<'_, W> {
    fn prefix(&self, id: u32, dim: Dim) -> IpPrefix {
        let s = &self.sels[id as usize];
        match dim {
            Dim::Dst => s.dst,
            Dim::Src => s.src,
        }
    }

    /// Builds the subtree for `ids` (priority-ordered), of which the first `dst_off` bits of the
    /// destination and `src_off` bits of the source are already decided by the path.
    fn make(&mut self, ids: Vec<u32>, dst_off: u8, src_off: u8, depth: u8) -> Slot {
        let width = self.trie.width;
        let leaf_max = if depth == 0 { LEAF_MAX } else { LEAF_MAX_DEEP };
        if ids.len() > leaf_max {
            let splittable =
                |dim: Dim, off: u8| ids.iter().any(|&i| self.prefix(i, dim).len() > off);
            let dim = if dst_off < width && splittable(Dim::Dst, dst_off) {
                Some((Dim::Dst, dst_off))
            } else if src_off < width && splittable(Dim::Src, src_off) {
                Some((Dim::Src, src_off))
            } else {
                None
            };
            if let Some((dim, off)) = dim {
                let stride: u8 = if depth == 0 { 16 } else { 8 }.min(width - off);
                let nslots = 1usize << stride;
                let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); nslots];
                for &i in &ids {
                    let p = self.prefix(i, dim);
                    let first = slice_bits(p.bits(), off, stride);
                    let covered = if p.len() >= off + stride {
                        1
                    } else {
                        1usize << (off + stride - p.len().max(off))
                    };
                    // Prefixes shorter than `off` cover the whole node (and start at slot 0).
                    let first = if p.len() <= off { 0 } else { first };
                    let covered = if p.len() <= off { nslots } else { covered };
                    for b in &mut buckets[first..first + covered] {
                        b.push(i);
                    }
                }
                let (nd, ns) = match dim {
                    Dim::Dst => (off + stride, src_off),
                    Dim::Src => (dst_off, off + stride),
                };
                let mut slots = vec![0; nslots];
                let mut memo: HashMap<Vec<u32>, Slot> = HashMap::new();
                for (s, b) in buckets.into_iter().enumerate() {
                    slots[s] = match memo.get(&b) {
                        Some(&x) => x,
                        None => {
                            let x = self.make(b.clone(), nd, ns, depth + 1);
                            memo.insert(b, x);
                            x
                        }
                    };
                }
                let base = self.trie.slots.len();
                self.trie.slots.extend_from_slice(&slots);
                return node_slot(base, dim, off, stride);
            }
        }
        self.leaf_for(ids)
    }

    fn leaf_for(&mut self, ids: Vec<u32>) -> Slot {
        if let Some(&l) = self.interned.get(&ids) {
            return l;
        }
        let lo = self.trie.entries.len();
        let sels = self.sels;
        self.trie
            .entries
            .extend(ids.iter().map(|&i| Entry::new(&sels[i as usize], i)));
        let l = leaf_slot(lo, ids.len());
        self.interned.insert(ids, l);
        l
    }
}

/// Per-policy counters of one pipeline: the packets (and their IP bytes, as classified) each
/// rule of one SPD matched. Plain integers, owned by the pipeline that counts: nothing shared
/// is written per packet. Sized once per table version, off the hot path.
#[derive(Debug, Default)]
pub struct PolicyHits {
    hits: Vec<[u64; 2]>,
}

impl Clone for PolicyHits {
    fn clone(&self) -> Self {
        PolicyHits {
            hits: self.hits.clone(),
        }
    }

    /// Reuses this one's allocation when it is large enough.
    fn clone_from(&mut self, source: &Self) {
        self.hits.clone_from(&source.hits);
    }
}

/// For each rule of `new`, a table that replaces `old`, the index of the rule of `old` whose
/// counts it keeps ([`PolicyHits::carried`]), or `u32::MAX`. Computed once per new version
/// (it hashes every rule), then applied by each pipeline with [`PolicyHits::remapped`].
pub fn carry_map<T, U>(old: &Spd<T>, new: &Spd<U>) -> Vec<u32> {
    let mut before = HashMap::with_capacity(old.len());
    for (i, r) in old.rules().iter().enumerate() {
        before.entry(rule_key(r)).or_insert(i as u32);
    }
    // Each old rule's counts go to one new rule only.
    new.rules()
        .iter()
        .map(|r| before.remove(&rule_key(r)).unwrap_or(u32::MAX))
        .collect()
}

impl PolicyHits {
    /// Zeroed counters for a table of `rules` rules.
    pub fn new(rules: usize) -> Self {
        PolicyHits {
            hits: vec![[0; 2]; rules],
        }
    }

    /// Counts one packet of `bytes` bytes for rule `id` (ids outside the table are ignored).
    #[inline]
    pub fn hit(&mut self, id: usize, bytes: usize) {
        if let Some(h) = self.hits.get_mut(id) {
            h[0] += 1;
            h[1] += bytes as u64;
        }
    }

    /// (packets, bytes) of rule `id`.
    pub fn get(&self, id: usize) -> (u64, u64) {
        self.hits.get(id).map_or((0, 0), |h| (h[0], h[1]))
    }

    /// Number of rules counted.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// Adds another pipeline's counters for the same table into these.
    pub fn merge(&mut self, other: &PolicyHits) {
        for (a, b) in self.hits.iter_mut().zip(&other.hits) {
            a[0] += b[0];
            a[1] += b[1];
        }
    }

    /// Counters for `new`, a table that replaces `old` (whose counters these are): a rule of
    /// `new` with the same priority, selector and kind of action as a rule of `old` keeps that
    /// rule's counts; other rules start at zero.
    pub fn carried<T, U>(&self, old: &Spd<T>, new: &Spd<U>) -> PolicyHits {
        self.remapped(&carry_map(old, new))
    }

    /// Counters for a new table from [`carry_map`]'s answer: rule `i` takes the counts of old
    /// rule `map[i]`.
    pub fn remapped(&self, map: &[u32]) -> PolicyHits {
        PolicyHits {
            hits: map
                .iter()
                .map(|&j| self.hits.get(j as usize).copied().unwrap_or([0; 2]))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sel(s: &str, d: &str) -> Selector {
        Selector::between(s.parse().unwrap(), d.parse().unwrap())
    }

    fn key(s: &str, d: &str, proto: u8, sp: u16, dp: u16) -> FlowKey {
        FlowKey {
            src: s.parse().unwrap(),
            dst: d.parse().unwrap(),
            proto,
            src_port: sp,
            dst_port: dp,
        }
    }

    #[test]
    fn policy_hits_follow_their_rules_across_a_rebuild() {
        let rule = |p: u32, s: &str, d: &str, a: Action<()>| Rule {
            priority: p,
            selector: sel(s, d),
            action: a,
        };
        let old = Spd::build(vec![
            rule(10, "10.0.0.0/8", "10.1.0.0/16", Action::Protect(())),
            rule(20, "10.0.0.0/8", "0.0.0.0/0", Action::Bypass),
            rule(30, "0.0.0.0/0", "0.0.0.0/0", Action::Discard),
        ])
        .unwrap();
        let mut hits = PolicyHits::new(old.len());
        for (k, n) in [
            (key("10.2.0.1", "10.1.0.1", 17, 1, 2), 100),
            (key("10.2.0.1", "10.1.0.9", 6, 1, 2), 60),
            (key("10.2.0.1", "192.0.2.1", 6, 1, 2), 40),
            (key("192.0.2.1", "10.1.0.1", 6, 1, 2), 20),
        ] {
            let (id, _) = old.lookup_id(&k).unwrap();
            hits.hit(id, n);
        }
        assert_eq!(
            (hits.get(0), hits.get(1), hits.get(2)),
            ((2, 160), (1, 40), (1, 20))
        );
        // The new table drops the bypass rule, adds one in front and changes the discard
        // rule's action: only the unchanged PROTECT rule keeps its counts.
        let new = Spd::build(vec![
            rule(5, "10.9.0.0/16", "10.1.0.0/16", Action::Discard),
            rule(10, "10.0.0.0/8", "10.1.0.0/16", Action::Protect(())),
            rule(30, "0.0.0.0/0", "0.0.0.0/0", Action::Bypass),
        ])
        .unwrap();
        let carried = hits.carried(&old, &new);
        assert_eq!(carried.len(), 3);
        assert_eq!(
            (carried.get(0), carried.get(1), carried.get(2)),
            ((0, 0), (2, 160), (0, 0))
        );
        // The same through a map computed once (what the gateway's main lcore hands workers),
        // and merged counters of two pipelines add up.
        let map = carry_map(&old, &new);
        assert_eq!(map, vec![u32::MAX, 0, u32::MAX]);
        let mut merged = hits.remapped(&map);
        assert_eq!(merged.get(1), carried.get(1));
        merged.merge(&carried);
        assert_eq!(merged.get(1), (4, 320));
        let mut reused = PolicyHits::new(1);
        reused.clone_from(&merged);
        assert_eq!((reused.len(), reused.get(1)), (3, (4, 320)));
        // Out of range ids count nothing and read as zero.
        hits.hit(99, 1);
        assert_eq!(hits.get(99), (0, 0));
    }

    #[test]
    fn priorities_ports_and_families() {
        let mut ssh = sel("192.168.10.0/24", "192.168.20.0/24");
        ssh.proto = Some(6);
        ssh.dst_ports = PortRange::single(22);
        let rules = vec![
            Rule {
                priority: 50,
                selector: sel("192.168.10.0/24", "192.168.20.0/24"),
                action: Action::Protect(1),
            },
            Rule {
                priority: 10,
                selector: ssh,
                action: Action::Bypass,
            },
            Rule {
                priority: 100,
                selector: sel("0.0.0.0/0", "0.0.0.0/0"),
                action: Action::Discard,
            },
            Rule {
                priority: 50,
                selector: sel("2001:db8:10::/48", "2001:db8:20::/48"),
                action: Action::Protect(2),
            },
            Rule {
                priority: 50,
                selector: sel("192.168.10.0/24", "192.168.20.0/24"),
                action: Action::Protect(3),
            },
        ];
        let spd = Spd::build(rules).unwrap();
        let act = |k: FlowKey| spd.lookup(&k).map(|r| r.action.clone());
        assert_eq!(
            act(key("192.168.10.1", "192.168.20.2", 6, 999, 22)),
            Some(Action::Bypass)
        );
        assert_eq!(
            act(key("192.168.10.1", "192.168.20.2", 6, 999, 80)),
            Some(Action::Protect(1)),
            "tie: first rule"
        );
        assert_eq!(
            act(key("192.168.10.1", "192.168.30.2", 6, 999, 80)),
            Some(Action::Discard)
        );
        assert_eq!(
            act(key("2001:db8:10::1", "2001:db8:20::1", 17, 1, 2)),
            Some(Action::Protect(2))
        );
        assert_eq!(act(key("2001:db8:10::1", "2001:db8:99::1", 17, 1, 2)), None);
        // The burst lookup, families mixed in one batch with a mixed-family key and a gap.
        let mut mixed = key("192.168.10.1", "192.168.20.2", 6, 999, 80);
        mixed.dst = "2001:db8:20::1".parse().unwrap();
        let batch = [
            Some(key("2001:db8:10::1", "2001:db8:20::1", 17, 1, 2)),
            Some(key("192.168.10.1", "192.168.20.2", 6, 999, 22)),
            None,
            Some(mixed),
            Some(key("192.168.10.1", "192.168.20.2", 6, 999, 80)),
            Some(key("2001:db8:10::1", "2001:db8:99::1", 17, 1, 2)),
            Some(key("192.168.10.1", "192.168.30.2", 6, 999, 80)),
        ];
        let mut out = [Some(usize::MAX); 7];
        spd.lookup_ids(&batch, &mut out);
        let want: Vec<Option<usize>> = batch
            .iter()
            .map(|k| k.and_then(|k| spd.lookup_id(&k).map(|(i, _)| i)))
            .collect();
        assert_eq!(out.to_vec(), want);
        assert_eq!(want, [Some(3), Some(1), None, None, Some(0), None, Some(2)]);
        assert!(Spd::build(vec![Rule {
            priority: 1,
            selector: sel("10.0.0.0/8", "::/0"),
            action: Action::<()>::Bypass
        }])
        .is_err());
    }

    #[test]
    fn concentrator_inbound_splits_on_source() {
        // 5000 remote /24s towards one local /24: the destination cannot separate them.
        let mut rules = Vec::new();
        for i in 0..5000u32 {
            let s = format!("10.{}.{}.0/24", i / 256, i % 256);
            rules.push(Rule {
                priority: 10,
                selector: sel(&s, "192.168.10.0/24"),
                action: Action::Protect(i),
            });
        }
        let spd = Spd::build(rules).unwrap();
        assert!(spd.max_depth() <= 6, "depth {}", spd.max_depth());
        for i in (0..5000u32).step_by(97) {
            let k = key(
                &format!("10.{}.{}.9", i / 256, i % 256),
                "192.168.10.3",
                17,
                1,
                2,
            );
            assert_eq!(
                spd.lookup(&k).map(|r| r.action.clone()),
                Some(Action::Protect(i))
            );
        }
    }

    /// A VPN concentrator's outbound SPD at 100,000 rules, shaped like perf/benches/spd.rs's:
    /// four local /22s towards remote /16../32s in 50 first octets (~8 rules a /16), 5%
    /// port-specific, and two rules no address bit separates. With the deeper leaf bound the
    /// tables stay small and shallow (4.9 MiB, depth 2; with 8 as below the root: 27.3 MiB,
    /// depth 6), and every sampled rule's own key finds the rule a linear scan finds.
    #[test]
    fn concentrator_outbound_stays_small_and_shallow() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut rules = Vec::new();
        let mut keys = Vec::new();
        for i in 0..99_998u32 {
            let len = 16 + (next() % 17) as u8;
            let remote = (next() as u32 & 0x00ff_ffff) | ((next() % 50) as u32 + 20) << 24;
            let local = 0xc0a8_0000 | (i % 4) << 10;
            let port = (next() % 20 == 0).then_some(443);
            let span = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            let host = next() as u32 & span;
            rules.push(Rule {
                priority: 100 + i % 7,
                selector: Selector {
                    proto: port.map(|_| 6),
                    dst_ports: port.map_or(PortRange::ANY, PortRange::single),
                    ..Selector::between(prefix_v4(local, 22), prefix_v4(remote, len))
                },
                action: Action::Protect(i),
            });
            keys.push(FlowKey {
                src: IpAddr::V4((local | 0x155).into()),
                dst: IpAddr::V4((remote & !span | host).into()),
                proto: 6,
                src_port: 40000,
                dst_port: port.unwrap_or(80),
            });
        }
        for (s, d) in [("172.16.0.0/12", "0.0.0.0/0"), ("0.0.0.0/0", "0.0.0.0/0")] {
            rules.push(Rule {
                priority: 50,
                selector: sel(s, d),
                action: Action::Bypass,
            });
        }
        let spd = Spd::build(rules).unwrap();
        let mib = spd.memory_bytes() as f64 / (1 << 20) as f64;
        assert!(mib < 8.0, "{mib:.1} MiB");
        assert!(spd.max_depth() <= 3, "depth {}", spd.max_depth());
        for (i, k) in keys.iter().enumerate().step_by(251) {
            let want = spd
                .rules()
                .iter()
                .enumerate()
                .filter(|(_, r)| r.selector.matches(k))
                .min_by_key(|&(j, r)| (r.priority, j))
                .map(|(j, _)| j);
            assert_eq!(spd.lookup_id(k).map(|(j, _)| j), want, "rule {i}");
        }
    }

    fn prefix_v4(bits: u32, len: u8) -> IpPrefix {
        IpPrefix::containing(IpAddr::V4(bits.into()), len)
    }

    fn arb_rule() -> impl Strategy<Value = Rule<usize>> {
        // Few distinct address bits so that rules overlap and keys hit them.
        (
            0u32..8,
            0u8..=32,
            0u32..8,
            0u8..=32,
            prop::option::of(prop::sample::select(vec![1u8, 6, 17])),
            0u16..6,
            0u16..6,
            0u32..20,
            0u8..3,
        )
            .prop_map(|(s, sl, d, dl, proto, plo, plen, prio, act)| {
                let sb = 0x0a00_0000 | (s << 21) | (s << 3);
                let db = 0xc0a8_0000 | (d << 13) | d;
                let ports = if plen == 5 {
                    PortRange::ANY
                } else {
                    PortRange {
                        lo: plo * 100,
                        hi: plo * 100 + plen * 50,
                    }
                };
                Rule {
                    priority: prio,
                    selector: Selector {
                        src: prefix_v4(sb, sl),
                        dst: prefix_v4(db, dl),
                        proto,
                        src_ports: PortRange::ANY,
                        dst_ports: ports,
                    },
                    action: match act {
                        0 => Action::Bypass,
                        1 => Action::Discard,
                        _ => Action::Protect(0),
                    },
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn lookup_equals_linear_scan(mut rules in prop::collection::vec(arb_rule(), 0..120),
                                     keys in prop::collection::vec((0u32..8, 0u32..8, 0u32..64, prop::sample::select(vec![1u8, 6, 17, 50]), 0u16..800), 1..60)) {
            for (i, r) in rules.iter_mut().enumerate() {
                if let Action::Protect(x) = &mut r.action { *x = i; }
            }
            let spd = Spd::build(rules.clone()).unwrap();
            // The burst lookup gives each key the same answer (with gaps, in runs of LANES).
            let batch: Vec<Option<FlowKey>> = keys.iter().enumerate().map(|(i, &(s, d, low, proto, port))| {
                (i % 5 != 4).then(|| FlowKey {
                    src: IpAddr::V4((0x0a00_0000 | (s << 21) | (s << 3) | (low & 7)).into()),
                    dst: IpAddr::V4((0xc0a8_0000 | (d << 13) | d ^ (low >> 3)).into()),
                    proto, src_port: 7, dst_port: port,
                })
            }).collect();
            let mut out = vec![Some(usize::MAX); batch.len()];
            spd.lookup_ids(&batch, &mut out);
            for (k, got) in batch.iter().zip(&out) {
                prop_assert_eq!(*got, k.and_then(|k| spd.lookup_id(&k).map(|(i, _)| i)));
            }
            for (s, d, low, proto, port) in keys {
                let k = FlowKey {
                    src: IpAddr::V4((0x0a00_0000 | (s << 21) | (s << 3) | (low & 7)).into()),
                    dst: IpAddr::V4((0xc0a8_0000 | (d << 13) | d ^ (low >> 3)).into()),
                    proto, src_port: 7, dst_port: port,
                };
                let want = rules.iter().enumerate()
                    .filter(|(_, r)| r.selector.matches(&k))
                    .min_by_key(|(i, r)| (r.priority, *i))
                    .map(|(_, r)| r);
                prop_assert_eq!(spd.lookup(&k), want);
            }
        }

        /// IPv6 and IPv4 rules in one SPD, prefixes of any length (0 and 128 included), source
        /// and destination port ranges, ICMP type/code ranges: every answer, one key at a time
        /// and a burst at a time, equals a linear scan's.
        #[test]
        fn lookup_equals_linear_scan_v6_and_source_ports(
            rules in prop::collection::vec((arb_rule(), any::<bool>(), 0u8..=128, 0u8..=128, 0u16..4, 0u16..4), 0..120),
            keys in prop::collection::vec((0u32..8, 0u32..8, 0u32..64, prop::sample::select(vec![1u8, 6, 17, 58]), 0u16..800, 0u16..400, any::<bool>()), 1..80)) {
            // An IPv4 address of the arb_rule space as an IPv6 one: the high 32 bits, with a
            // pattern below so that long prefixes tell keys apart.
            let v6 = |a: u32, low: u32| -> IpAddr {
                IpAddr::V6((u128::from(a) << 96 | u128::from(low) << 40 | u128::from(low & 3)).into())
            };
            let rules: Vec<Rule<usize>> = rules.into_iter().enumerate().map(|(i, (mut r, six, sl, dl, splo, splen))| {
                if let Action::Protect(x) = &mut r.action { *x = i; }
                if splen != 3 {
                    r.selector.src_ports = PortRange { lo: splo * 100, hi: splo * 100 + splen * 60 };
                }
                if six {
                    let (IpAddr::V4(s), IpAddr::V4(d)) = (r.selector.src.addr(), r.selector.dst.addr()) else { unreachable!() };
                    r.selector.src = IpPrefix::containing(v6(u32::from(s), (u32::from(s) >> 3) & 7), sl);
                    r.selector.dst = IpPrefix::containing(v6(u32::from(d), u32::from(d) & 7), dl);
                }
                r
            }).collect();
            let spd = Spd::build(rules.clone()).unwrap();
            let keys: Vec<FlowKey> = keys.into_iter().map(|(s, d, low, proto, dport, sport, six)| {
                let (sa, da) = (0x0a00_0000 | (s << 21) | (s << 3) | (low & 7), 0xc0a8_0000 | (d << 13) | d ^ (low >> 3));
                let (src, dst) = if six {
                    (v6(sa, s), v6(da, d ^ (low & 1)))
                } else {
                    (IpAddr::V4(sa.into()), IpAddr::V4(da.into()))
                };
                FlowKey { src, dst, proto, src_port: sport, dst_port: dport }
            }).collect();
            let batch: Vec<Option<FlowKey>> = keys.iter().copied().map(Some).collect();
            let mut out = vec![Some(usize::MAX); batch.len()];
            spd.lookup_ids(&batch, &mut out);
            for (k, got) in keys.iter().zip(&out) {
                let want = rules.iter().enumerate()
                    .filter(|(_, r)| r.selector.matches(k))
                    .min_by_key(|(i, r)| (r.priority, *i))
                    .map(|(i, _)| i);
                prop_assert_eq!(spd.lookup_id(k).map(|(i, _)| i), want);
                prop_assert_eq!(*got, want);
            }
        }
    }
}
