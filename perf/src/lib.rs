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
