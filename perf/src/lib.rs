//! Shared helpers for ferrogate's benchmarks: packet builders and an interleaved timer.
//!
//! This machine is noisy (perf.md: absolute figures drift 1.5x minute to minute), so the
//! benches never time alternatives one after another. [`Interleaved`] runs every alternative
//! for a short slice in turn, round after round, and reports each one's median over rounds:
//! ratios between alternatives come from the same minutes.
#![deny(unsafe_code)]

use std::hint::black_box;
use std::time::Instant;

/// An IPv4 UDP packet of `len` bytes in total (at least 28), 192.168.10.5 → 192.168.20.7.
pub fn udp4(len: usize) -> Vec<u8> {
    let len = len.max(28);
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[192, 168, 10, 5]);
    p[16..20].copy_from_slice(&[192, 168, 20, 7]);
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5001u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = !dataplane::wire::checksum::data(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// IP packet sizes of the IMIX 7:4:1 mix of 64/570/1518-byte Ethernet frames (minus the
/// 14-byte header and 4-byte FCS), in a fixed interleaved order.
pub const IMIX_IP_SIZES: [usize; 12] = [46, 552, 46, 46, 552, 46, 1500, 46, 552, 46, 46, 552];

/// One alternative under test: called with a packet index, does one packet's work.
pub type Work<'a> = Box<dyn FnMut(usize) + 'a>;

/// Runs alternatives interleaved and reports median ns per call.
pub struct Interleaved<'a> {
    names: Vec<String>,
    work: Vec<Work<'a>>,
}

impl std::fmt::Debug for Interleaved<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interleaved")
            .field("names", &self.names)
            .finish()
    }
}

impl<'a> Default for Interleaved<'a> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Interleaved<'a> {
    /// No alternatives yet.
    pub fn new() -> Self {
        Self {
            names: Vec::new(),
            work: Vec::new(),
        }
    }
    /// Adds an alternative.
    pub fn add(&mut self, name: impl Into<String>, w: Work<'a>) {
        self.names.push(name.into());
        self.work.push(w);
    }
    /// `rounds` rounds of `iters` calls to each alternative; returns (name, median ns/call).
    pub fn run(mut self, rounds: usize, iters: usize) -> Vec<(String, f64)> {
        let mut samples = vec![Vec::with_capacity(rounds); self.work.len()];
        // Warm-up: caches, branch predictors, CPU frequency.
        for w in self.work.iter_mut() {
            for i in 0..iters {
                w(black_box(i));
            }
        }
        for _ in 0..rounds {
            for (k, w) in self.work.iter_mut().enumerate() {
                let t = Instant::now();
                for i in 0..iters {
                    w(black_box(i));
                }
                samples[k].push(t.elapsed().as_nanos() as f64 / iters as f64);
            }
        }
        self.names
            .into_iter()
            .zip(samples)
            .map(|(n, mut s)| {
                s.sort_by(|a, b| a.total_cmp(b));
                (n, s[s.len() / 2])
            })
            .collect()
    }
}

/// The SPD bench's rule sets (`benches/spd.rs`), shared with `spdcount`.
pub mod spdshape {
    use std::net::{IpAddr, Ipv4Addr};

    use dataplane::net::IpPrefix;
    use dataplane::spd::{Action, FlowKey, PortRange, Rule, Selector};

    /// xorshift64*: deterministic and dependency-free.
    #[derive(Debug)]
    pub struct Rng(pub u64);
    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
    }

    pub fn v4(x: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(x))
    }

    /// `n` rules and, for each, a key that the rule matches.
    pub fn ruleset(n: usize, inbound: bool, rng: &mut Rng) -> (Vec<Rule<u32>>, Vec<FlowKey>) {
        let locals: Vec<IpPrefix> = (0..4)
            .map(|i| IpPrefix::containing(v4(0xc0a8_0000 | (i << 10)), 22))
            .collect();
        let mut rules = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let body = n.saturating_sub(3);
        for i in 0..body {
            let len = 16 + rng.below(17) as u8;
            let remote_addr = 0x0a00_0000
                | (rng.next_u64() as u32 & 0x00ff_ffff)
                | ((rng.below(200) as u32 + 20) << 24);
            let remote = IpPrefix::containing(v4(remote_addr), len);
            let local = locals[i % locals.len()];
            let port_specific = rng.below(20) == 0;
            let (proto, dports) = if port_specific {
                (Some(6u8), PortRange::single(443))
            } else {
                (None, PortRange::ANY)
            };
            let (src, dst) = if inbound {
                (remote, local)
            } else {
                (local, remote)
            };
            rules.push(Rule {
                priority: 100 + (i as u32 % 7),
                selector: Selector {
                    src,
                    dst,
                    proto,
                    src_ports: PortRange::ANY,
                    dst_ports: dports,
                },
                action: Action::Protect(i as u32),
            });
            let host = |p: IpPrefix, r: &mut Rng| {
                let IpAddr::V4(a) = p.addr() else {
                    unreachable!()
                };
                let span = if p.len() == 32 {
                    0
                } else {
                    (1u64 << (32 - p.len())) - 1
                };
                v4(u32::from(a) | (r.below(span.max(1)) as u32 & span as u32))
            };
            keys.push(FlowKey {
                src: host(src, rng),
                dst: host(dst, rng),
                proto: 6,
                src_port: 40000,
                dst_port: if port_specific { 443 } else { 80 },
            });
        }
        let any = IpPrefix::any_v4();
        let wide = |s: &str| s.parse::<IpPrefix>().unwrap();
        for (k, (s, d)) in [
            (wide("172.16.0.0/12"), any),
            (any, wide("172.16.0.0/12")),
            (any, any),
        ]
        .into_iter()
        .enumerate()
        .take(n.min(3))
        {
            rules.push(Rule {
                priority: if k == 2 { 1000 } else { 50 },
                selector: Selector {
                    src: s,
                    dst: d,
                    proto: None,
                    src_ports: PortRange::ANY,
                    dst_ports: PortRange::ANY,
                },
                action: if k == 2 {
                    Action::Discard
                } else {
                    Action::Bypass
                },
            });
        }
        (rules, keys)
    }
}
