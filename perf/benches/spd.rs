//! SPD lookup cost from 10 to 100,000 rules, shaped like a VPN concentrator, as ns/lookup and
//! as a ratio to the 10-rule set, measured interleaved in one run.
//!
//!     cargo bench -p perf --bench spd
//!
//! Outbound shape: a few local subnets towards many remote site prefixes (/16 to /32), 5% of
//! the rules port-specific, a few wide bypass rules and a final discard. Inbound shape: the
//! same with source and destination swapped (the destination cannot tell rules apart).
//! Keys hit uniformly random rules (so the larger sets do not fit in L1/L2), or miss; the
//! `-burst` rows classify the same keys 32 at a time with `Spd::lookup_ids`, and the `-cached`
//! rows 32 at a time through a pipeline's `FlowCache` (see the comments where they are added).
//! The `hit` rows replay 4096 keys of random rules; `all-burst` and `all-cached` go through
//! every rule's key in turn, which at 100,000 rules touches far more of the tables.
//!
//! `SPD_BENCH_SIZES=10,100000` runs only those sizes (the first is the yardstick).

use std::hint::black_box;

use dataplane::flowcache::FlowCache;
use dataplane::spd::{FlowKey, Spd};
use perf::spdshape::{ruleset, v4, Rng};
use perf::Interleaved;

/// Keys per `lookup_ids` call in the burst rows (a DPDK burst).
const BURST: usize = dataplane::spd::LANES;

fn main() {
    let sizes: Vec<usize> = match std::env::var("SPD_BENCH_SIZES") {
        // For quick comparisons: SPD_BENCH_SIZES=10,100000 (the first is the yardstick).
        Ok(v) => v.split(',').filter_map(|x| x.parse().ok()).collect(),
        Err(_) => vec![10, 100, 1_000, 10_000, 100_000],
    };
    for inbound in [false, true] {
        let shape = if inbound { "inbound" } else { "outbound" };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut spds = Vec::new();
        for &n in &sizes {
            let t = std::time::Instant::now();
            let (rules, keys) = ruleset(n, inbound, &mut rng);
            let spd = Spd::build(rules).unwrap();
            let build_ms = t.elapsed().as_secs_f64() * 1000.0;
            // Check the keys really hit their rules before timing anything.
            let hits = keys.iter().filter(|k| spd.lookup(k).is_some()).count();
            assert_eq!(hits, keys.len());
            println!(
                "{shape:<8} {n:>7} rules: built in {build_ms:>8.1} ms, {:>7.1} MiB, depth {}",
                spd.memory_bytes() as f64 / 1048576.0,
                spd.max_depth()
            );
            spds.push((n, spd, keys));
        }
        let misses: Vec<FlowKey> = (0..4096u32)
            .map(|i| FlowKey {
                src: v4(0x0b00_0000 | (i * 977)),
                dst: v4(0x0c00_0000 | (i * 131)),
                proto: 17,
                src_port: 1,
                dst_port: 2,
            })
            .collect();
        let mut bench = Interleaved::new();
        for (n, spd, keys) in &spds {
            // 4096 keys of uniformly random rules, read in sequence: the keys themselves stay
            // in L1/L2, so what grows with the rule count is the SPD's own memory traffic.
            let mut r = Rng(7);
            let sample: Vec<FlowKey> = (0..4096)
                .map(|_| keys[r.below(keys.len() as u64) as usize])
                .collect();
            let sample_b: Vec<Option<FlowKey>> = sample.iter().copied().map(Some).collect();
            let sample_c = sample_b.clone();
            bench.add(
                format!("{shape} {n} hit"),
                Box::new(move |i| {
                    black_box(spd.lookup(&sample[i % sample.len()]));
                }),
            );
            // Traffic with a hot set (64 flows of random rules, as when a few tunnels carry
            // most packets): the walk's own cost, without the cache misses that a uniformly
            // random rule costs once the tables outgrow L2.
            let hot: Vec<FlowKey> = (0..64)
                .map(|_| keys[r.below(keys.len() as u64) as usize])
                .collect();
            let hot_b: Vec<Option<FlowKey>> = hot.iter().copied().map(Some).collect();
            bench.add(
                format!("{shape} {n} hot"),
                Box::new(move |i| {
                    black_box(spd.lookup(&hot[i % hot.len()]));
                }),
            );
            // The same keys classified a burst at a time (`Spd::lookup_ids`, as the gateway's
            // outbound pipeline does): 32 keys walk the trie level by level together.
            let all_b: Vec<Option<FlowKey>> = {
                let mut v: Vec<Option<FlowKey>> = keys.iter().copied().map(Some).collect();
                for i in (1..v.len()).rev() {
                    v.swap(i, r.below(i as u64 + 1) as usize);
                }
                while v.len() < BURST {
                    v.extend_from_within(..);
                }
                v
            };
            // `all-burst`: every rule's flow in turn (the hit rows' 4096-key sample touches
            // at most 4096 rules' paths, which partly stay in cache).
            for (kind, set) in [
                ("hit-burst", sample_b),
                ("hot-burst", hot_b.clone()),
                ("all-burst", all_b.clone()),
            ] {
                bench.add(
                    format!("{shape} {n} {kind}"),
                    Box::new(move |i| {
                        let at = (i * BURST) % (set.len() - BURST + 1);
                        let mut out = [None; BURST];
                        spd.lookup_ids(&set[at..at + BURST], &mut out);
                        black_box(out);
                    }),
                );
            }
            // The same bursts through a pipeline's flow cache (`FlowCache`, as the gateway's
            // inside ports classify): `hit-cached` and `miss-cached` replay 4096 flows, which
            // the cache holds after the warm-up; `hot-cached` the 64 hot flows, whose lines
            // stay in L1 (what a hit costs without waiting for L2); `all-cached` walks every rule's flow in
            // turn, n flows, more than the cache holds at 100,000 (so mostly misses: the
            // first packets of flows). Below 64 rules the cache is not used.
            let miss_c: Vec<Option<FlowKey>> = misses.iter().copied().map(Some).collect();
            for (kind, set) in [
                ("hit-cached", sample_c),
                ("miss-cached", miss_c),
                ("hot-cached", hot_b),
                ("all-cached", all_b),
            ] {
                let mut cache = FlowCache::new(FlowCache::DEFAULT_SETS);
                bench.add(
                    format!("{shape} {n} {kind}"),
                    Box::new(move |i| {
                        let at = (i * BURST) % (set.len() - BURST + 1);
                        let mut out = [None; BURST];
                        cache.lookup_ids(spd, &set[at..at + BURST], &mut out);
                        black_box(out);
                    }),
                );
            }
            let mi = &misses;
            bench.add(
                format!("{shape} {n} miss"),
                Box::new(move |i| {
                    black_box(spd.lookup(&mi[i % mi.len()]));
                }),
            );
        }
        let res = bench.run(15, 50_000);
        // Each kind of key against the 10-rule set's figure for the same kind.
        let base_of = |suffix: &str| {
            res.iter()
                .find(|(n, _)| n.ends_with(suffix))
                .map_or(1.0, |(_, t)| *t)
        };
        for (name, ns) in &res {
            let kind = name.rsplit(' ').next().unwrap_or("");
            let base = base_of(kind);
            // A burst row's call classifies BURST keys.
            let per_key = if kind.ends_with("burst") || kind.ends_with("cached") {
                BURST as f64
            } else {
                1.0
            };
            println!(
                "{name:<30} {:>8.1} ns/lookup {:>6.2}x of 10 rules",
                ns / per_key,
                ns / base
            );
        }
    }
}
