//! Runs N SPD lookups, 32 keys a call, for instruction counting under callgrind: the SPD
//! bench's rows (`benches/spd.rs`) as repeatable counts on a noisy machine.
//!
//! `spdcount out|in burst|cached RULES N`: `burst` is `Spd::lookup_ids` (below 64 rules, one
//! key at a time), `cached` the same keys through a pipeline's `FlowCache`, warmed first with
//! every key of the sample. The keys are the bench's 4096-key sample of uniformly random
//! rules. Instructions per lookup = (Ir(N2) - Ir(N1)) / (N2 - N1); for example
//!
//! ```text
//! valgrind --tool=callgrind target/release/spdcount out cached 100000 40960
//! ```

use std::hint::black_box;
use std::process::ExitCode;

use dataplane::flowcache::FlowCache;
use dataplane::spd::{FlowKey, Spd, LANES};
use perf::spdshape::{ruleset, Rng};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: spdcount out|in burst|cached RULES N";
    let parsed = match args.iter().skip(1).map(String::as_str).collect::<Vec<_>>()[..] {
        [dir @ ("out" | "in"), how @ ("burst" | "cached"), rules, n] => {
            match (rules.parse::<usize>(), n.parse::<usize>()) {
                (Ok(rules), Ok(n)) => Some((dir == "in", how == "cached", rules, n)),
                _ => None,
            }
        }
        _ => None,
    };
    let Some((inbound, cached, rules, n)) = parsed else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (rules, keys) = ruleset(rules.max(4), inbound, &mut rng);
    let spd = match Spd::build(rules) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let mut r = Rng(7);
    let sample: Vec<Option<FlowKey>> = (0..4096)
        .map(|_| Some(keys[r.below(keys.len() as u64) as usize]))
        .collect();
    let mut cache = FlowCache::new(FlowCache::DEFAULT_SETS);
    let mut found = 0usize;
    let run = |at: usize, cache: &mut FlowCache| {
        let mut out = [None; LANES];
        let keys = &sample[at..at + LANES];
        if cached {
            cache.lookup_ids(&spd, keys, &mut out);
        } else {
            spd.lookup_ids(keys, &mut out);
        }
        black_box(&out);
        out.iter().filter(|o| o.is_some()).count()
    };
    for at in (0..sample.len()).step_by(LANES) {
        run(at, &mut cache);
    }
    for i in 0..n.div_ceil(LANES) {
        found += run((i * LANES) % sample.len(), &mut cache);
    }
    // Every key of the sample is some rule's: all must be found.
    if found != n.div_ceil(LANES) * LANES {
        eprintln!("{found} found");
        return ExitCode::from(1);
    }
    println!("{found}");
    ExitCode::SUCCESS
}
