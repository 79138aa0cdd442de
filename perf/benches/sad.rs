//! SAD lookup cost at 10 to 1,000,000 SAs (hits and misses), interleaved in one run.
//!
//!     cargo bench -p perf --bench sad

use std::hint::black_box;
use std::net::IpAddr;

use dataplane::sad::Sad;
use perf::Interleaved;

fn main() {
    let dst: IpAddr = "192.0.2.1".parse().unwrap();
    let sizes = [10u32, 1_000, 100_000, 1_000_000];
    let tables: Vec<(u32, Sad<u32>, Vec<u32>)> = sizes
        .iter()
        .map(|&n| {
            let mut s = Sad::with_capacity(n as usize);
            // SPIs as a control plane hands them out: random-looking 32-bit values.
            let spis: Vec<u32> = (0..n)
                .map(|i| i.wrapping_mul(2_654_435_761) | 0x100)
                .collect();
            for (i, spi) in spis.iter().enumerate() {
                s.insert(*spi, Some(dst), i as u32);
            }
            let mut order = spis.clone();
            let mut x = 88172645463325252u64;
            for i in (1..order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            (n, s, order)
        })
        .collect();
    let mut bench = Interleaved::new();
    for (n, s, order) in &tables {
        let m = order.len();
        bench.add(
            format!("{n} SAs hit"),
            Box::new(move |i| {
                black_box(s.get(order[i % m], dst));
            }),
        );
        bench.add(
            format!("{n} SAs miss"),
            Box::new(move |i| {
                black_box(s.get((i as u32).wrapping_mul(7919) & 0xff, dst));
            }),
        );
    }
    for (name, ns) in bench.run(15, 200_000) {
        println!("{name:<22} {ns:>8.1} ns/lookup");
    }
}
