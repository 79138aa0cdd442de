//! A per-pipeline SPD flow cache: the answer of [`Spd::lookup_ids`] for flows seen before.
//!
//! A large SPD outgrows the CPU caches. With 100,000 rules a trie walk for a random flow makes
//! four or five dependent reads into ~26 MiB, and costs several times a 10-rule lookup even a
//! burst at a time. But a gateway sees each flow's packets many times, so each pipeline keeps
//! the answers for the flows it has seen, keyed by the whole 5-tuple, in tables sized to stay
//! in its core's L2: a packet of a known IPv4 flow costs one hash and one cache-line read
//! whatever the rule count (three flows share a line, compared without a branch, and a run
//! of 32 lookups reads all its lines before the first compare, so that the reads overlap);
//! other flows (IPv6, mixed), and every flow of an SPD of 2^24 - 1 rules or more, cost one
//! to four line reads in a table of 64-byte entries. The first packet of a flow (a miss)
//! still walks the trie, its answer is stored, and a miss costs the probe more than the
//! walk alone. VPP's IPsec SPD
//! flow cache answers the same problem the same way.
//!
//! Exactness: an entry holds the whole key and the [`Spd::generation`] it was answered under
//! (an IPv4 set holds the generation of all its three), so a hit is the answer the SPD gives
//! for that very key, never a neighbour's, and answers of a replaced SPD are never given for
//! its successor (no flush is needed when tables change).
//! Sets are picked by a hash seeded per cache from the OS's random source, so that a sender
//! cannot aim many flows at one set; one that tries anyway only makes its own packets miss,
//! which costs them a trie walk, never a wrong answer.
//!
//! When flows do not repeat (more active flows than the cache holds, or a scan), nearly every
//! lookup misses, and a miss costs more than a walk alone: the probe and the store of a
//! line that is no longer in any CPU cache. So the cache watches itself: over each
//! [`SAMPLE`] lookups, if fewer than half hit and at least a quarter pushed out a flow stored
//! under the same SPD (the cache is full and churning, not merely filling), it stands aside
//! for the next [`REST`] lookups (they walk the SPD directly, counted as `bypassed`), then
//! samples again. Traffic that churns pays the miss cost on about 3% of its lookups; traffic
//! that repeats never stops using the cache, and a cold cache (or one whose SPD was just
//! replaced) fills without standing aside.
//!
//! SPDs smaller than [`WALK_TOGETHER_MIN`] rules stay in cache and are looked up directly,
//! as [`Spd::lookup_ids`] does: for them the probe would cost as much as the lookup.

use crate::net::addr_bits;
use crate::spd::{FlowKey, Spd, LANES, WALK_TOGETHER_MIN};

/// Ways per set: four entries, so that flows whose hashes share a set mostly stay (with two,
/// 16,384 flows in 32,768 entries missed a quarter of the time: three or more in one set
/// pushed each other out).
const WAYS: usize = 4;

/// `rule` of an entry whose answer is "no rule matches".
const NO_RULE: u32 = u32::MAX;

/// Lookups over which the cache measures its hit rate.
pub const SAMPLE: u64 = 1024;

/// Lookups the cache stands aside for after a churning sample (see the module
/// documentation).
pub const REST: u64 = 32 * 1024;

/// One cached answer: the key as compared (with the SPD generation), the rule's index. One
/// cache line, so that a probe of one way reads one line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
struct Entry {
    /// The source's and destination's 128 bits (IPv4 in the top 32) as two words each, then
    /// the generation (0: empty, generations start at 1), then `source port << 48 |
    /// destination port << 32 | protocol << 8 | families` (bit 0: source is IPv6, bit 1:
    /// destination is IPv6; mixed keys are cached too, no rule matches them). One array, so
    /// that a probe compares it in a few instructions.
    key: [u64; 6],
    rule: u32,
}

impl Entry {
    #[inline]
    fn of(k: &FlowKey, generation: u64) -> Self {
        let (src, dst) = (addr_bits(k.src), addr_bits(k.dst));
        let misc = u64::from(k.src_port) << 48
            | u64::from(k.dst_port) << 32
            | u64::from(k.proto) << 8
            | u64::from(k.src.is_ipv6())
            | u64::from(k.dst.is_ipv6()) << 1;
        Entry {
            key: [
                (src >> 64) as u64,
                src as u64,
                (dst >> 64) as u64,
                dst as u64,
                generation,
                misc,
            ],
            rule: NO_RULE,
        }
    }

    #[inline]
    fn generation(&self) -> u64 {
        self.key[4]
    }

    /// Same key under the same generation (the answer aside). Word by word into one value,
    /// so that a key just computed in registers is never stored and read back wider (a
    /// vector load over narrower stores waits for them to retire).
    #[inline]
    fn same_key(&self, o: &Entry) -> bool {
        self.key.iter().zip(&o.key).fold(0, |d, (a, b)| d | (a ^ b)) == 0
    }

    #[inline]
    fn answer(&self) -> Option<usize> {
        (self.rule != NO_RULE).then_some(self.rule as usize)
    }
}

/// IPv4 flows (both addresses IPv4: the usual case) are kept apart, three to a cache line
/// with the line's SPD generation in front, so that a probe reads one line and compares its
/// three ways without a branch. (In the 64-byte [`Entry`] table a flow in another way than
/// the first cost a second line and a mispredicted branch that waited for the first: with
/// 4096 flows over 8192 sets, ~20% of hits.)
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Set4 {
    /// The SPD generation of the set's flows (0: none stored yet). A set of an older one is
    /// empty.
    generation: u64,
    /// Bit `w`: way `w` holds a flow. Way 0 is the most recently stored.
    valid: u64,
    /// Each way: `source << 96 | destination << 64 | source port << 48 | destination port <<
    /// 32 | protocol << 24 | rule`, the rule's index in the low 24 bits ([`NO_RULE4`]: none
    /// matches).
    ways: [u128; WAYS4],
}

/// Ways of an IPv4 set.
const WAYS4: usize = 3;

/// The low 24 bits of an IPv4 way: the rule's index, or this when no rule matches. SPDs of
/// this many rules or more keep all their flows in the [`Entry`] table.
const NO_RULE4: u128 = 0xff_ffff;

/// An IPv4 flow's key as an IPv4 way holds it (rule bits zero), or `None` for other flows.
#[inline]
fn key4(k: &FlowKey) -> Option<u128> {
    match (k.src, k.dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => Some(
            u128::from(u32::from(s)) << 96
                | u128::from(u32::from(d)) << 64
                | u128::from(k.src_port) << 48
                | u128::from(k.dst_port) << 32
                | u128::from(k.proto) << 24,
        ),
        _ => None,
    }
}

/// Hits and misses of a [`FlowCache`] (lookups the cache answered, and those that walked the
/// SPD), for statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that walked the SPD (and stored their answer).
    pub misses: u64,
    /// Lookups that walked the SPD while the cache stood aside (see the module
    /// documentation).
    pub bypassed: u64,
}

/// A pipeline's cache of SPD answers (see the module documentation). Owned by one pipeline and
/// used through `&mut`: nothing is shared between cores.
#[derive(Debug)]
pub struct FlowCache {
    /// `WAYS` entries per set, one set after another; way 0 is the most recently stored.
    /// Flows that are not IPv4 to IPv4, and all flows of SPDs of [`NO_RULE4`] rules or more.
    entries: Box<[Entry]>,
    /// Sets - 1 (sets are a power of two).
    mask: usize,
    /// 64 - log2(sets) (63 for one set): the set is the hash's top bits.
    shift: u32,
    /// IPv4 flows, twice as many sets as `entries` has.
    sets4: Box<[Set4]>,
    mask4: usize,
    shift4: u32,
    seed: u64,
    stats: FlowCacheStats,
    /// Hits and lookups of the current sample.
    sample_hits: u64,
    sample_len: u64,
    /// Stores of the current sample that pushed out a flow of the same SPD.
    sample_evictions: u64,
    /// Lookups left to walk without the cache.
    resting: u64,
    /// A run's missed keys, for one `Spd::lookup_ids` call.
    miss_keys: [Option<FlowKey>; LANES],
    /// SPDs of this many rules or more keep their IPv4 flows in `entries` ([`NO_RULE4`]:
    /// rule indices must fit a way's 24 bits; tests lower it to reach that path).
    ipv4_rule_limit: usize,
}

impl FlowCache {
    /// Sets of a gateway pipeline's cache: 49,152 IPv4 flows in 1 MiB, and 32,768 others in
    /// 2 MiB (touched only by IPv6 traffic).
    pub const DEFAULT_SETS: usize = 8_192;

    /// A cache of `sets` sets (rounded up to a power of two, at least one) of four flows
    /// each, and twice as many of three IPv4 flows. Allocates `sets * 384` bytes, once.
    pub fn new(sets: usize) -> Self {
        let sets = sets.max(1).next_power_of_two();
        let sets4 = sets * 2;
        let mut seed = [0u8; 8];
        // Without the OS's random source the seed is fixed: still exact, only easier to aim
        // flows at one set.
        let _ = getrandom::getrandom(&mut seed);
        FlowCache {
            entries: vec![Entry::default(); sets * WAYS].into_boxed_slice(),
            mask: sets - 1,
            shift: 64 - sets.trailing_zeros().max(1),
            sets4: vec![Set4::default(); sets4].into_boxed_slice(),
            mask4: sets4 - 1,
            shift4: 64 - sets4.trailing_zeros().max(1),
            seed: u64::from_ne_bytes(seed) | 1,
            stats: FlowCacheStats::default(),
            sample_hits: 0,
            sample_len: 0,
            sample_evictions: 0,
            resting: 0,
            miss_keys: [None; LANES],
            ipv4_rule_limit: NO_RULE4 as usize,
        }
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> FlowCacheStats {
        self.stats
    }

    /// IPv4 flows the cache can hold (and as many again of other flows, in a table of their
    /// own: [`FlowCache::capacity_other`]).
    pub fn capacity(&self) -> usize {
        self.sets4.len() * WAYS4
    }

    /// Flows other than IPv4 to IPv4 the cache can hold.
    pub fn capacity_other(&self) -> usize {
        self.entries.len()
    }

    /// The IPv4 set of the flow whose key (rule bits zero) is `k`.
    #[inline]
    fn set4_of(&self, k: u128) -> usize {
        // As `set_of`: one multiply per part of the key (source, destination, then ports and
        // protocol), each part in the low bits of its multiplicand (a multiply carries a bit
        // only upwards), the well-mixed top half of each product carried into the next, the
        // set from the top bits of the last. With two multiplies some field's 256 values fell
        // on ~210 sets instead of ~254 (the source's first octet with both addresses in one
        // multiplicand; the source port's low byte with a folded one).
        const K1: u64 = 0x9e37_79b9_7f4a_7c15;
        const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
        let h = ((k >> 96) as u64 ^ self.seed).wrapping_mul(K1);
        let h = ((k >> 64) as u32 as u64 ^ h.rotate_left(32)).wrapping_mul(K2);
        let h = ((k as u64 >> 24) ^ h.rotate_left(32)).wrapping_mul(K1);
        (h >> self.shift4) as usize & self.mask4
    }

    /// The IPv4 probe: the answer for `k` (`Some(None)`: no rule matches) if a way of its set
    /// holds it under `generation`. Every way is compared, without a branch.
    #[inline]
    fn probe4(&self, set: usize, k: u128, generation: u64) -> Option<Option<usize>> {
        let s = &self.sets4[set];
        let live = if s.generation == generation {
            s.valid
        } else {
            0
        };
        let (mut any, mut rule) = (0u128, 0u128);
        for (w, &way) in s.ways.iter().enumerate() {
            let hit = u128::from((way ^ k) >> 24 == 0) & u128::from(live >> w & 1 == 1);
            any |= hit;
            rule |= way & NO_RULE4 & hit.wrapping_neg();
        }
        (any != 0).then_some((rule != NO_RULE4).then_some(rule as usize))
    }

    /// Stores the answer for the IPv4 flow `k` in its set as way 0, unless the set holds it
    /// already; returns whether a flow of the same generation was pushed out.
    #[inline]
    fn store4(&mut self, set: usize, k: u128, answer: Option<usize>, generation: u64) -> bool {
        let s = &mut self.sets4[set];
        if s.generation != generation {
            *s = Set4 {
                generation,
                ..Set4::default()
            };
        }
        // Rule indices are below NO_RULE4: only SPDs of fewer rules use these sets.
        let rule = answer.map_or(NO_RULE4, |r| r as u128);
        debug_assert!(rule <= NO_RULE4);
        for (w, way) in s.ways.iter().enumerate() {
            if s.valid >> w & 1 == 1 && (way ^ k) >> 24 == 0 {
                return false; // a key twice in one run missed twice: stored once
            }
        }
        let full = s.valid >> (WAYS4 - 1) & 1 == 1;
        s.ways.copy_within(0..WAYS4 - 1, 1);
        s.ways[0] = k | rule;
        s.valid = (s.valid << 1 | 1) & ((1 << WAYS4) - 1);
        full
    }

    /// The first entry of the set `e`'s key hashes to.
    #[inline]
    fn set_of(&self, e: &Entry) -> usize {
        // Three multiplies, one per part of the key, each part in the low bits of its
        // multiplicand (a multiply carries a bit only upwards), the set from the top bits of
        // the last product (which every bit of every part reaches). The low word first, so
        // that an IPv4 address (the high word's top half) lands in the low half.
        const K1: u64 = 0x9e37_79b9_7f4a_7c15;
        const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
        let k = &e.key;
        let h = (k[1] ^ k[0].rotate_left(32) ^ self.seed).wrapping_mul(K1);
        let h = (k[3] ^ k[2].rotate_left(32) ^ h.rotate_left(32)).wrapping_mul(K2);
        // Ports in the low half, protocol and families above.
        let h = (k[5].rotate_left(32) ^ h.rotate_left(32)).wrapping_mul(K1);
        ((h >> self.shift) as usize & self.mask) * WAYS
    }

    /// [`Spd::lookup_ids`]'s answers for `keys` (`None` keys get `None`; `out` as long as
    /// `keys`, extra keys left out), from the cache where it has them; the others walk the
    /// SPD together and are stored. SPDs of fewer than [`WALK_TOGETHER_MIN`] rules are looked
    /// up directly, without the cache.
    pub fn lookup_ids<T>(
        &mut self,
        spd: &Spd<T>,
        keys: &[Option<FlowKey>],
        out: &mut [Option<usize>],
    ) {
        if spd.len() < WALK_TOGETHER_MIN {
            spd.lookup_ids(keys, out);
            return;
        }
        let generation = spd.generation();
        // Rule indices fit an IPv4 way's 24 bits (SPDs of more rules use the other table).
        let small_rules = spd.len() < self.ipv4_rule_limit;
        for (keys, out) in keys.chunks(LANES).zip(out.chunks_mut(LANES)) {
            let n = keys.len().min(out.len());
            if self.resting > 0 {
                spd.lookup_ids(&keys[..n], &mut out[..n]);
                let looked = keys[..n].iter().filter(|k| k.is_some()).count() as u64;
                self.stats.bypassed += looked;
                self.resting = self.resting.saturating_sub(looked);
                continue;
            }
            // The run's misses: their keys (in `self.miss_keys`, kept between calls so that a
            // run does not clear 32 keys' worth of stack), where their answers go, their sets.
            let mut miss_at = [0u8; LANES];
            let mut miss_set = [0usize; LANES];
            let (mut m, mut looked, mut hit) = (0, 0u64, 0u64);
            // IPv4 keys first: each one's set is hashed and its line read (a word of it) before
            // any is compared, so that the run's reads from L2 overlap instead of each
            // waiting behind the compare before it (the bench's 4096 flows: 7.7-7.8 ns a hit
            // without this pass, 6.5-6.7 ns with it, in runs of an earlier hash).
            let mut v4 = 0u32; // bit i: key i is in `k4s`, its set in `sets4`
            let mut k4s = [0u128; LANES];
            let mut sets4 = [0usize; LANES];
            let mut touch = 0u64;
            if small_rules {
                for i in 0..n {
                    if let Some(k4) = keys[i].as_ref().and_then(key4) {
                        let set = self.set4_of(k4);
                        touch ^= self.sets4[set].generation;
                        k4s[i] = k4;
                        sets4[i] = set;
                        v4 |= 1 << i;
                    }
                }
            }
            std::hint::black_box(touch);
            for i in 0..n {
                let Some(k) = &keys[i] else {
                    out[i] = None;
                    continue;
                };
                looked += 1;
                // (The hit and miss steps are written out in both branches: joined after
                // them, through an `Option<Option<usize>>`, a hit took 0.4 ns more.)
                if v4 >> i & 1 == 1 {
                    let (k4, set) = (k4s[i], sets4[i]);
                    if let Some(answer) = self.probe4(set, k4, generation) {
                        out[i] = answer;
                        hit += 1;
                    } else {
                        self.miss_keys[m] = Some(*k);
                        miss_at[m] = i as u8;
                        miss_set[m] = set;
                        m += 1;
                    }
                    continue;
                }
                let e = Entry::of(k, generation);
                let set = self.set_of(&e);
                let ways = &self.entries[set..set + WAYS];
                if let Some(w) = ways.iter().find(|w| w.same_key(&e)) {
                    out[i] = w.answer();
                    hit += 1;
                } else {
                    self.miss_keys[m] = Some(*k);
                    miss_at[m] = i as u8;
                    miss_set[m] = set;
                    m += 1;
                }
            }
            self.stats.hits += hit;
            self.sample_hits += hit;
            self.sample_len += looked;
            if self.sample_len >= SAMPLE {
                if self.sample_hits * 2 < self.sample_len
                    && self.sample_evictions * 4 >= self.sample_len
                {
                    self.resting = REST;
                }
                (self.sample_hits, self.sample_len, self.sample_evictions) = (0, 0, 0);
            }
            if m == 0 {
                continue;
            }
            let mut answers = [None; LANES];
            spd.lookup_ids(&self.miss_keys[..m], &mut answers[..m]);
            for j in 0..m {
                let Some(k) = &self.miss_keys[j] else {
                    continue;
                };
                let answer = answers[j];
                out[usize::from(miss_at[j])] = answer;
                if let Some(k4) = key4(k).filter(|_| small_rules) {
                    if self.store4(miss_set[j], k4, answer, generation) {
                        self.sample_evictions += 1;
                    }
                    continue;
                }
                let mut e = Entry::of(k, generation);
                // Rule indices are below 2^31 (Spd::build refuses more).
                e.rule = answer.map_or(NO_RULE, |r| r as u32);
                let set = miss_set[j];
                let ways = &mut self.entries[set..set + WAYS];
                // A key twice in one run missed twice: store it once. Otherwise the set's
                // oldest store goes.
                if !ways[0].same_key(&e) {
                    if ways[WAYS - 1].generation() == generation {
                        self.sample_evictions += 1;
                    }
                    ways.copy_within(0..WAYS - 1, 1);
                }
                ways[0] = e;
            }
            self.stats.misses += m as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::IpPrefix;
    use crate::spd::{Action, PortRange, Rule, Selector};
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// Rules over a small address space (10.0.0.0/24 and fd00::/120 hosts), so that random
    /// keys hit, miss and overlap them.
    fn arb_rule() -> impl Strategy<Value = Rule<usize>> {
        (
            any::<bool>(),
            (0u8..=255, 24u8..=32, 0u8..=255, 24u8..=32),
            prop::option::of(prop_oneof![Just(6u8), Just(17u8), Just(1u8)]),
            prop::option::of((0u16..8, 0u16..8)),
            0u32..20,
        )
            .prop_map(|(v6, (s, sl, d, dl), proto, ports, priority)| {
                let p = |x: u8, len: u8| {
                    if v6 {
                        let a = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(x)));
                        IpPrefix::containing(a, len + 96)
                    } else {
                        IpPrefix::containing(IpAddr::V4(Ipv4Addr::new(10, 0, 0, x)), len)
                    }
                };
                let dst_ports = ports.map_or(PortRange::ANY, |(a, b)| PortRange {
                    lo: a.min(b),
                    hi: a.max(b),
                });
                Rule {
                    priority,
                    selector: Selector {
                        src: p(s, sl),
                        dst: p(d, dl),
                        proto,
                        src_ports: PortRange::ANY,
                        dst_ports,
                    },
                    action: Action::Protect(0),
                }
            })
    }

    fn arb_key() -> impl Strategy<Value = FlowKey> {
        (
            0u8..4,
            0u8..=255,
            0u8..=255,
            prop_oneof![Just(6u8), Just(17u8)],
            0u16..8,
        )
            .prop_map(|(fam, s, d, proto, dp)| {
                let v4 = |x| IpAddr::V4(Ipv4Addr::new(10, 0, 0, x));
                let v6 = |x| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(x)));
                let (src, dst) = match fam {
                    0 | 1 => (v4(s), v4(d)),
                    2 => (v6(s), v6(d)),
                    _ => (v4(s), v6(d)), // mixed: matches nothing
                };
                FlowKey {
                    src,
                    dst,
                    proto,
                    src_port: 40000,
                    dst_port: dp,
                }
            })
    }

    /// Numbered rules (the action names the rule) so that answers can be compared across two
    /// SPDs.
    fn numbered(mut rules: Vec<Rule<usize>>) -> Vec<Rule<usize>> {
        for (i, r) in rules.iter_mut().enumerate() {
            r.action = Action::Protect(i);
        }
        rules
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Every answer, hit or miss, is the SPD's own answer for that key, through evictions
        /// (a tiny cache), repeats within a run, `None` gaps, and an SPD replaced by another
        /// with other rules for the same keys.
        #[test]
        fn answers_equal_the_spds(
            rules_a in prop::collection::vec(arb_rule(), WALK_TOGETHER_MIN..140),
            rules_b in prop::collection::vec(arb_rule(), WALK_TOGETHER_MIN..140),
            keys in prop::collection::vec(prop::option::weighted(0.9, arb_key()), 1..40),
            sets in 1usize..8,
            rounds in 2usize..5,
        ) {
            let a = Spd::build(numbered(rules_a)).unwrap();
            let b = Spd::build(numbered(rules_b)).unwrap();
            prop_assert_ne!(a.generation(), b.generation());
            let mut cache = FlowCache::new(sets);
            let mut lookups = 0u64;
            for round in 0..rounds {
                // A then B then A again: B's answers must not leak into A's, nor A's into B's.
                let spd = if round % 2 == 1 { &b } else { &a };
                let mut out = vec![Some(usize::MAX); keys.len()];
                cache.lookup_ids(spd, &keys, &mut out);
                for (k, o) in keys.iter().zip(&out) {
                    let want = k.as_ref().and_then(|k| spd.lookup_id(k)).map(|(i, _)| i);
                    prop_assert_eq!(*o, want, "key {:?} round {}", k, round);
                }
                lookups += keys.iter().filter(|k| k.is_some()).count() as u64;
            }
            let s = cache.stats();
            prop_assert_eq!(s.hits + s.misses + s.bypassed, lookups);
        }
    }

    #[test]
    fn known_flows_hit_and_small_spds_bypass_the_cache() {
        let any = IpPrefix::any_v4();
        let rules: Vec<Rule<usize>> = (0..100u8)
            .map(|i| Rule {
                priority: 10,
                selector: Selector::between(
                    any,
                    IpPrefix::containing(IpAddr::V4(Ipv4Addr::new(10, 1, i, 0)), 24),
                ),
                action: Action::Protect(usize::from(i)),
            })
            .collect();
        let spd = Spd::build(rules).unwrap();
        let key = |i: u8| FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 1, i, 9)),
            proto: 17,
            src_port: 1,
            dst_port: 2,
        };
        let keys: Vec<Option<FlowKey>> = (0..40).map(|i| Some(key(i))).collect();
        let mut cache = FlowCache::new(FlowCache::DEFAULT_SETS);
        assert_eq!(cache.capacity(), WAYS4 * 2 * FlowCache::DEFAULT_SETS);
        assert_eq!(cache.capacity_other(), WAYS * FlowCache::DEFAULT_SETS);
        let mut out = [None; 40];
        cache.lookup_ids(&spd, &keys, &mut out);
        let st = |hits, misses, bypassed| FlowCacheStats {
            hits,
            misses,
            bypassed,
        };
        assert_eq!(cache.stats(), st(0, 40, 0));
        out = [None; 40];
        cache.lookup_ids(&spd, &keys, &mut out);
        assert_eq!(cache.stats(), st(40, 40, 0));
        for (i, o) in out.iter().enumerate() {
            assert_eq!(*o, Some(i));
        }
        // A 10-rule SPD: looked up directly, nothing counted.
        let small = Spd::build(spd.rules()[..10].to_vec()).unwrap();
        cache.lookup_ids(&small, &keys, &mut out);
        assert_eq!(cache.stats(), st(40, 40, 0));
        assert_eq!(out[3], Some(3));
        assert_eq!(out[20], None);
    }

    /// `n` IPv4 flows 192.168.x.y → 10.`c`.(n mod 256).1 with (protocol, source port,
    /// destination port) `p`.
    fn v4_flows(n: u32, c: u8, p: (u8, u16, u16)) -> Vec<Option<FlowKey>> {
        (0..n)
            .map(|n| {
                Some(FlowKey {
                    src: IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | n)),
                    dst: IpAddr::V4(Ipv4Addr::new(10, c, n as u8, 1)),
                    proto: p.0,
                    src_port: p.1,
                    dst_port: p.2,
                })
            })
            .collect()
    }

    /// Looks `keys` up twice through `cache`, each answer the SPD's own.
    fn look_up_twice(
        cache: &mut FlowCache,
        spd: &Spd<usize>,
        keys: &[Option<FlowKey>],
        out: &mut [Option<usize>],
    ) {
        for _ in 0..2 {
            cache.lookup_ids(spd, keys, out);
            for (k, o) in keys.iter().zip(out.iter()) {
                assert_eq!(*o, spd.lookup_id(k.as_ref().unwrap()).map(|(i, _)| i));
            }
        }
    }

    /// 256 rules: any source to A.B.i.0/24 for i in 0..=255, rule i protecting with i.
    fn spd_256(a: u8, b: u8) -> Spd<usize> {
        let rules: Vec<Rule<usize>> = (0..=255u8)
            .map(|i| Rule {
                priority: 10,
                selector: Selector::between(
                    IpPrefix::any_v4(),
                    IpPrefix::containing(IpAddr::V4(Ipv4Addr::new(a, b, i, 0)), 24),
                ),
                action: Action::Protect(usize::from(i)),
            })
            .collect();
        Spd::build(rules).unwrap()
    }

    /// Flows that never repeat make the cache stand aside after one sample, for `REST`
    /// lookups, with every answer still the SPD's; then it samples again, and a repeating
    /// working set keeps it in use.
    #[test]
    fn churn_makes_the_cache_stand_aside() {
        let spd = spd_256(10, 2);
        let key = |n: u32| FlowKey {
            src: IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | n)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 2, n as u8, 1)),
            proto: 6,
            src_port: 1,
            dst_port: 2,
        };
        let mut cache = FlowCache::new(64);
        let mut next = 0u32;
        let mut run = |cache: &mut FlowCache, distinct: bool| {
            let keys: Vec<Option<FlowKey>> = (0..32)
                .map(|j| {
                    let k = if distinct { next + j } else { j };
                    Some(key(k))
                })
                .collect();
            if distinct {
                next += 32;
            }
            let mut out = [None; 32];
            cache.lookup_ids(&spd, &keys, &mut out);
            for (k, o) in keys.iter().zip(out) {
                assert_eq!(o, spd.lookup_id(k.as_ref().unwrap()).map(|(i, _)| i));
            }
        };
        // One sample of distinct flows: all miss, and all but the first 256 (the cache's
        // capacity) push a flow out; then the cache rests.
        for _ in 0..SAMPLE / 32 {
            run(&mut cache, true);
        }
        assert_eq!(cache.stats().misses, SAMPLE);
        for _ in 0..REST / 32 {
            run(&mut cache, true);
        }
        assert_eq!(cache.stats().bypassed, REST);
        assert_eq!(cache.stats().hits, 0);
        // Back in use: 32 repeating flows miss once, then hit for the rest of the sample
        // (but for those that share a set with two others: the seed is random).
        for _ in 0..SAMPLE / 32 {
            run(&mut cache, false);
        }
        let st = cache.stats();
        assert_eq!(st.hits + st.misses, 2 * SAMPLE);
        assert!(st.hits > SAMPLE / 2, "{st:?}");
        assert_eq!(st.bypassed, REST);
        // A good sample: still in use.
        run(&mut cache, false);
        assert_eq!(cache.stats().hits + cache.stats().misses, 2 * SAMPLE + 32);
        assert_eq!(cache.stats().bypassed, REST);
    }

    /// A cold cache filling with more flows than one sample (but fewer than it holds) keeps
    /// answering: misses into empty ways are not churn.
    #[test]
    fn a_filling_cache_does_not_stand_aside() {
        let spd = spd_256(10, 3);
        let keys = v4_flows(2048, 3, (17, 7, 9));
        let mut cache = FlowCache::new(FlowCache::DEFAULT_SETS);
        let mut out = vec![None; keys.len()];
        look_up_twice(&mut cache, &spd, &keys, &mut out);
        let st = cache.stats();
        assert_eq!(st.bypassed, 0);
        assert_eq!(st.hits + st.misses, 4096);
        // Four flows in one IPv4 set of three ways miss again in the second pass: a few at
        // most.
        assert!(st.hits >= 2048 - 32, "{st:?}");
    }

    /// Flows that differ in one field only still spread over the sets, whichever field it is
    /// (every bit of every field must reach the bits the set is taken from: a first octet
    /// multiplied into the top of a word, for instance, would not).
    #[test]
    fn flows_differing_in_any_one_field_spread_over_the_sets() {
        fn v6(x: u8, at: usize) -> IpAddr {
            let mut o = [0xfdu8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            o[at] = x;
            IpAddr::V6(Ipv6Addr::from(o))
        }
        let cache = FlowCache::new(FlowCache::DEFAULT_SETS);
        let base = FlowKey {
            src: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            proto: 17,
            src_port: 4000,
            dst_port: 5000,
        };
        type Vary = fn(&mut FlowKey, u8);
        let fields: [(&str, Vary); 12] = [
            ("src first octet", |k, x| {
                k.src = IpAddr::V4(Ipv4Addr::new(x, 168, 1, 1))
            }),
            ("src last octet", |k, x| {
                k.src = IpAddr::V4(Ipv4Addr::new(192, 168, 1, x))
            }),
            ("dst first octet", |k, x| {
                k.dst = IpAddr::V4(Ipv4Addr::new(x, 1, 2, 3))
            }),
            ("dst last octet", |k, x| {
                k.dst = IpAddr::V4(Ipv4Addr::new(10, 1, 2, x))
            }),
            ("src port high", |k, x| k.src_port = u16::from(x) << 8),
            ("src port low", |k, x| k.src_port = u16::from(x)),
            ("dst port high", |k, x| k.dst_port = u16::from(x) << 8),
            ("dst port low", |k, x| k.dst_port = u16::from(x)),
            ("protocol", |k, x| k.proto = x),
            ("v6 src first octet", |k, x| {
                (k.src, k.dst) = (v6(x, 1), v6(2, 15));
            }),
            ("v6 dst middle octet", |k, x| {
                (k.src, k.dst) = (v6(1, 15), v6(x, 7));
            }),
            ("v6 dst last octet", |k, x| {
                (k.src, k.dst) = (v6(1, 15), v6(x, 15));
            }),
        ];
        for (name, vary) in fields {
            let (mut sets, mut sets4) = (HashSet::new(), HashSet::new());
            for x in 0..=255u8 {
                let mut k = base;
                vary(&mut k, x);
                sets.insert(cache.set_of(&Entry::of(&k, 1)));
                if let Some(k4) = key4(&k) {
                    sets4.insert(cache.set4_of(k4));
                }
            }
            // 256 keys thrown at random into 8192 sets land in ~252 distinct ones (~254 in
            // the 16,384 IPv4 sets).
            assert!(sets.len() >= 230, "{name}: {} sets", sets.len());
            assert!(
                sets4.is_empty() || sets4.len() >= 230,
                "{name}: {} IPv4 sets",
                sets4.len()
            );
        }
    }

    /// An IPv4 set keeps its three most recent flows, newest first, stores a flow once,
    /// counts pushing out a flow of the same SPD generation (not one of an older), and holds
    /// nothing for another generation.
    #[test]
    fn ipv4_sets_keep_three_flows_of_one_generation() {
        let mut cache = FlowCache::new(64);
        let key = |n: u32| FlowKey {
            src: IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | n)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 2, 3, 4)),
            proto: 17,
            src_port: 1000,
            dst_port: 500,
        };
        // Four flows of one set (the seed is random: look for them).
        let mut same = Vec::new();
        let mut n = 0;
        let set = cache.set4_of(key4(&key(0)).unwrap());
        while same.len() < 4 {
            let k4 = key4(&key(n)).unwrap();
            if cache.set4_of(k4) == set {
                same.push(k4);
            }
            n += 1;
        }
        for (i, &k) in same[..3].iter().enumerate() {
            assert!(!cache.store4(set, k, Some(i), 7));
        }
        assert!(!cache.store4(set, same[0], Some(0), 7)); // already held: not stored again
        for (i, &k) in same[..3].iter().enumerate() {
            assert_eq!(cache.probe4(set, k, 7), Some(Some(i)));
        }
        assert!(cache.store4(set, same[3], None, 7)); // pushes the oldest out
        assert_eq!(cache.probe4(set, same[0], 7), None);
        assert_eq!(cache.probe4(set, same[3], 7), Some(None));
        assert_eq!(cache.probe4(set, same[1], 7), Some(Some(1)));
        // Another generation: nothing held, and storing pushes out nothing of its own.
        assert_eq!(cache.probe4(set, same[1], 8), None);
        assert!(!cache.store4(set, same[1], Some(5), 8));
        assert_eq!(cache.probe4(set, same[1], 8), Some(Some(5)));
        assert_eq!(cache.probe4(set, same[2], 8), None);
    }

    /// The all-zero IPv4 key (0.0.0.0 to 0.0.0.0, protocol 0, ports 0) equals an empty way's
    /// bits: it must still miss until stored, and then get the SPD's answer.
    #[test]
    fn the_all_zero_ipv4_key_misses_an_empty_way() {
        let spd = spd_256(10, 4);
        let zero = FlowKey {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            proto: 0,
            src_port: 0,
            dst_port: 0,
        };
        let mut cache = FlowCache::new(FlowCache::DEFAULT_SETS);
        assert_eq!(cache.probe4(cache.set4_of(0), 0, spd.generation()), None);
        let mut out = [Some(1)];
        cache.lookup_ids(&spd, &[Some(zero)], &mut out);
        assert_eq!(out, [None]);
        assert_eq!(cache.stats().misses, 1);
        cache.lookup_ids(&spd, &[Some(zero)], &mut out);
        assert_eq!(out, [None]);
        assert_eq!(cache.stats().hits, 1);
    }

    /// An SPD of as many rules as an IPv4 way's 24 bits cannot name (here: a limit lowered to
    /// 100 for a 256-rule SPD) keeps its IPv4 flows in the 64-byte entries, with the same
    /// answers and hits, and the IPv4 sets stay untouched.
    #[test]
    fn ipv4_flows_of_spds_too_large_for_a_way_use_the_entries() {
        let spd = spd_256(10, 5);
        let keys = v4_flows(300, 5, (6, 3, 4));
        let mut cache = FlowCache::new(FlowCache::DEFAULT_SETS);
        cache.ipv4_rule_limit = 100;
        let mut out = vec![None; keys.len()];
        look_up_twice(&mut cache, &spd, &keys, &mut out);
        assert_eq!(cache.stats().hits, 300);
        assert!(cache
            .sets4
            .iter()
            .all(|s| s.generation == 0 && s.valid == 0));
        let stored = cache
            .entries
            .iter()
            .filter(|e| e.generation() == spd.generation());
        assert_eq!(stored.count(), 300);
    }
}
