//! Anti-replay (RFC 4303 §3.4.3) with the bitmap window of RFC 6479 and ESN reconstruction
//! (RFC 4303 Appendix A2.2).
//!
//! The window is a ring of 64-bit blocks, one more than the window needs (RFC 6479 §2.3): the
//! redundant block lets the window slide by clearing whole blocks, never shifting bits. The
//! receiver checks before decrypting ([`Window::check`]) and records only after the ICV
//! verified ([`Window::update`]), so forged packets cannot move the window.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Already received.
    Duplicate,
    /// Left of the window (or 0 without ESN: the first packet is 1, RFC 4303 §3.3.3).
    TooOld,
    /// The window size is not 0 or a power of two in 32..=65536.
    BadWindowSize,
}

const BLOCK_BITS: u64 = 64;

fn blocks_for(size: u32) -> Result<usize, ReplayError> {
    match size {
        0 => Ok(0),
        32..=65536 if size.is_power_of_two() => {
            // Window bits rounded up to whole blocks, plus the redundant block.
            Ok((size as usize).div_ceil(64) + 1)
        }
        _ => Err(ReplayError::BadWindowSize),
    }
}

/// RFC 4303 Appendix A2.2: the 64-bit sequence number a packet with low half `seq_lo` most
/// likely has, given the highest one seen (`top`) and the window size `w`.
#[inline]
fn reconstruct(top: u64, seq_lo: u32, w: u32, esn: bool) -> u64 {
    if !esn {
        return u64::from(seq_lo);
    }
    let th = (top >> 32) as u32;
    let tl = top as u32;
    let w = w.max(1);
    let seq_hi = if tl >= w - 1 {
        // Case A: the window lies within one 2^32 epoch.
        if seq_lo >= tl - (w - 1) {
            th
        } else {
            th.wrapping_add(1)
        }
    } else {
        // Case B: the window spans an epoch boundary.
        if seq_lo >= tl.wrapping_sub(w - 1) {
            th.wrapping_sub(1)
        } else {
            th
        }
    };
    // Before the first packet of epoch 0 the "previous epoch" does not exist.
    if th == 0 && seq_hi == u32::MAX {
        return u64::from(seq_lo);
    }
    (u64::from(seq_hi) << 32) | u64::from(seq_lo)
}

/// Block `i` of a ring of `n` for a window that has seen everything up to `top`: the blocks
/// behind top's are full, top's own block has the bits up to top set.
fn initial_block(top: u64, i: usize, n: usize) -> u64 {
    if top == 0 {
        return 0;
    }
    if i as u64 != (top / BLOCK_BITS) % n as u64 {
        return u64::MAX;
    }
    let bit = top % BLOCK_BITS;
    if bit == 63 {
        u64::MAX
    } else {
        (1u64 << (bit + 1)) - 1
    }
}

/// A single-owner window.
#[derive(Debug, Clone)]
pub struct Window {
    size: u32,
    esn: bool,
    top: u64,
    bits: Box<[u64]>,
}

impl Window {
    /// A window of `size` packets (0 disables anti-replay; ESN is still reconstructed).
    pub fn new(size: u32, esn: bool) -> Result<Self, ReplayError> {
        Self::with_top(size, esn, 0)
    }

    /// A window that has already seen everything up to and including `top`.
    pub fn with_top(size: u32, esn: bool, top: u64) -> Result<Self, ReplayError> {
        let n = blocks_for(size)?;
        let mut w = Self {
            size,
            esn,
            top,
            bits: vec![0; n].into_boxed_slice(),
        };
        for (i, b) in w.bits.iter_mut().enumerate() {
            *b = initial_block(top, i, n);
        }
        Ok(w)
    }

    /// Window size in packets.
    pub fn size(&self) -> u32 {
        self.size
    }
    /// Whether sequence numbers are 64-bit.
    pub fn esn(&self) -> bool {
        self.esn
    }
    /// Highest sequence number recorded.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Reconstructs and checks a received sequence number, before decryption.
    pub fn check(&self, seq_lo: u32) -> Result<u64, ReplayError> {
        let seq = reconstruct(self.top, seq_lo, self.size, self.esn);
        self.check_full(seq)?;
        Ok(seq)
    }

    fn check_full(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if self.size == 0 || seq > self.top {
            return Ok(());
        }
        if self.top - seq >= u64::from(self.size) {
            return Err(ReplayError::TooOld);
        }
        let n = self.bits.len() as u64;
        let block = ((seq / BLOCK_BITS) % n) as usize;
        if self.bits[block] & (1 << (seq % BLOCK_BITS)) != 0 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `seq` once its ICV verified.
    pub fn update(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check_full(seq)?;
        if self.size == 0 {
            self.top = self.top.max(seq);
            return Ok(());
        }
        let n = self.bits.len() as u64;
        if seq > self.top {
            // Slide: clear every block between the old top's block and the new one.
            let old = self.top / BLOCK_BITS;
            let new = seq / BLOCK_BITS;
            let clear = (new - old).min(n);
            for k in 1..=clear {
                self.bits[((old + k) % n) as usize] = 0;
            }
            self.top = seq;
        }
        self.bits[((seq / BLOCK_BITS) % n) as usize] |= 1 << (seq % BLOCK_BITS);
        Ok(())
    }
}

/// A window whose updates take `&self`, so one SA can be shared by worker cores through an
/// `Arc` without locks.
///
/// Races it tolerates, and their effect: (1) two cores recording the same new sequence number
/// at once — `fetch_or` tells the second it was a duplicate; (2) a core sliding the window while
/// another records a number in a block being cleared — that bit may be lost, so a later replay
/// of that one packet could be accepted. (2) needs one SA's packets to be spread over several
/// cores at once, which the gateway avoids (RSS on outer addresses puts one tunnel on one
/// queue); with a single core per SA the behaviour is exactly [`Window`]'s.
#[derive(Debug)]
pub struct AtomicWindow {
    size: u32,
    esn: bool,
    top: AtomicU64,
    bits: Box<[AtomicU64]>,
}

impl AtomicWindow {
    /// See [`Window::new`].
    pub fn new(size: u32, esn: bool) -> Result<Self, ReplayError> {
        Self::with_top(size, esn, 0)
    }

    /// See [`Window::with_top`].
    pub fn with_top(size: u32, esn: bool, top: u64) -> Result<Self, ReplayError> {
        let n = blocks_for(size)?;
        Ok(Self {
            size,
            esn,
            top: AtomicU64::new(top),
            bits: (0..n)
                .map(|i| AtomicU64::new(initial_block(top, i, n)))
                .collect(),
        })
    }

    /// Window size in packets.
    pub fn size(&self) -> u32 {
        self.size
    }
    /// Whether sequence numbers are 64-bit.
    pub fn esn(&self) -> bool {
        self.esn
    }
    /// Highest sequence number recorded.
    pub fn top(&self) -> u64 {
        self.top.load(Ordering::Acquire)
    }

    /// See [`Window::check`].
    pub fn check(&self, seq_lo: u32) -> Result<u64, ReplayError> {
        let top = self.top();
        let seq = reconstruct(top, seq_lo, self.size, self.esn);
        self.check_against(seq, top)?;
        Ok(seq)
    }

    fn check_against(&self, seq: u64, top: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if self.size == 0 || seq > top {
            return Ok(());
        }
        if top - seq >= u64::from(self.size) {
            return Err(ReplayError::TooOld);
        }
        let n = self.bits.len() as u64;
        let b = self.bits[((seq / BLOCK_BITS) % n) as usize].load(Ordering::Acquire);
        if b & (1 << (seq % BLOCK_BITS)) != 0 {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// See [`Window::update`].
    pub fn update(&self, seq: u64) -> Result<(), ReplayError> {
        let mut top = self.top();
        self.check_against(seq, top)?;
        if self.size == 0 {
            self.top.fetch_max(seq, Ordering::AcqRel);
            return Ok(());
        }
        let n = self.bits.len() as u64;
        while seq > top {
            match self
                .top
                .compare_exchange(top, seq, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let old = top / BLOCK_BITS;
                    let clear = (seq / BLOCK_BITS - old).min(n);
                    for k in 1..=clear {
                        self.bits[((old + k) % n) as usize].store(0, Ordering::Release);
                    }
                    top = seq;
                }
                Err(now) => {
                    top = now;
                    // Another core moved the window meanwhile: is seq still acceptable?
                    if seq <= top && top - seq >= u64::from(self.size) {
                        return Err(ReplayError::TooOld);
                    }
                }
            }
        }
        let mask = 1 << (seq % BLOCK_BITS);
        let prev = self.bits[((seq / BLOCK_BITS) % n) as usize].fetch_or(mask, Ordering::AcqRel);
        if prev & mask != 0 {
            return Err(ReplayError::Duplicate);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// (window, esn, initial top, [(seq_lo on the wire, expected check, record it?)])
    type Row = (
        u32,
        bool,
        u64,
        &'static [(u32, Result<u64, ReplayError>, bool)],
    );
    use ReplayError::*;

    const TABLE: &[Row] = &[
        // In order, then a duplicate, then 0 (never valid without ESN).
        (
            64,
            false,
            0,
            &[
                (1, Ok(1), true),
                (2, Ok(2), true),
                (2, Err(Duplicate), false),
                (0, Err(TooOld), false),
            ],
        ),
        // Out of order inside the window, and the exact left edge.
        (
            64,
            false,
            0,
            &[
                (100, Ok(100), true),
                (37, Ok(37), true),
                (37, Err(Duplicate), false),
                (36, Err(TooOld), false),
                (99, Ok(99), true),
            ],
        ),
        // Jumps larger than the window and larger than the whole bitmap forget the old bits.
        (
            32,
            false,
            0,
            &[
                (5, Ok(5), true),
                (1000, Ok(1000), true),
                (5, Err(TooOld), false),
                (969, Ok(969), true),
                (968, Err(TooOld), false),
                (1_000_000, Ok(1_000_000), true),
                (999_999, Ok(999_999), true),
                (1000, Err(TooOld), false),
            ],
        ),
        // Without ESN the sequence space ends at 2^32 - 1 (the sender must rekey, §3.3.3).
        (
            64,
            false,
            0xffff_fff0,
            &[
                (0xffff_ffff, Ok(0xffff_ffff), true),
                (1, Err(TooOld), false),
            ],
        ),
        // ESN, Appendix A2.2 case A: top near the end of an epoch, a small low half is the next one.
        (
            64,
            true,
            0x0_ffff_fff0,
            &[
                (0xffff_fff5, Ok(0x0_ffff_fff5), true),
                (3, Ok(0x1_0000_0003), true),
                (0xffff_fff5, Err(Duplicate), false),
                (0xffff_fff8, Ok(0x0_ffff_fff8), true),
            ],
        ),
        // ESN case B: top just after the wrap, a large low half belongs to the previous epoch.
        // (A low half left of the window's lower bound is read as the *next* epoch.)
        (
            64,
            true,
            0x1_0000_0005,
            &[
                (0xffff_fff0, Err(Duplicate), false),
                (0xffff_ffd0, Err(Duplicate), false),
                (0xffff_ffc0, Ok(0x1_ffff_ffc0), false),
                (6, Ok(0x1_0000_0006), true),
            ],
        ),
        // ESN with the window off: only the epoch is tracked.
        (
            0,
            true,
            0x2_ffff_ffff,
            &[(5, Ok(0x3_0000_0005), true), (5, Ok(0x3_0000_0005), true)],
        ),
        // Big windows.
        (
            65536,
            false,
            0,
            &[
                (70000, Ok(70000), true),
                (4465, Ok(4465), true),
                (4464, Err(TooOld), false),
                (4465, Err(Duplicate), false),
            ],
        ),
        (
            1024,
            true,
            0,
            &[
                (1, Ok(1), true),
                (2000, Ok(2000), true),
                (977, Ok(977), true),
                (976, Ok(0x1_0000_03d0), false),
            ],
        ),
    ];

    #[test]
    fn table() {
        for (row, &(size, esn, top, steps)) in TABLE.iter().enumerate() {
            let mut w = Window::with_top(size, esn, top).unwrap();
            let a = AtomicWindow::with_top(size, esn, top).unwrap();
            for (i, &(lo, want, record)) in steps.iter().enumerate() {
                assert_eq!(w.check(lo), want, "row {row} step {i}");
                assert_eq!(a.check(lo), want, "row {row} step {i} (atomic)");
                if record {
                    let s = want.unwrap();
                    w.update(s).unwrap();
                    a.update(s).unwrap();
                    assert_eq!(
                        w.update(s).is_err(),
                        size != 0,
                        "row {row} step {i}: second update"
                    );
                }
            }
        }
    }

    #[test]
    fn sizes() {
        for s in [32, 64, 128, 1024, 65536, 0] {
            assert!(Window::new(s, false).is_ok(), "{s}");
        }
        for s in [1, 16, 33, 100, 131072] {
            assert_eq!(Window::new(s, false).err(), Some(BadWindowSize), "{s}");
        }
    }

    /// The obviously correct model: a set of everything seen and the highest.
    struct Model {
        size: u64,
        seen: BTreeSet<u64>,
        top: u64,
    }
    impl Model {
        fn check(&self, s: u64) -> bool {
            s != 0 && (s > self.top || (self.top - s < self.size && !self.seen.contains(&s)))
        }
    }

    proptest! {
        #[test]
        fn agrees_with_model_and_atomic(size in prop::sample::select(vec![32u32, 64, 128, 1024]),
                                        steps in prop::collection::vec((0u64..3000, any::<bool>()), 1..400)) {
            let mut w = Window::new(size, false).unwrap();
            let a = AtomicWindow::new(size, false).unwrap();
            let mut m = Model { size: u64::from(size), seen: BTreeSet::new(), top: 0 };
            let mut base = 0u64;
            for (delta, forward) in steps {
                // Mostly forward-moving traffic with reordering and replays.
                let s = if forward { base + delta / 30 } else { base.saturating_sub(delta % 200) };
                let s = s.min(u64::from(u32::MAX));
                let ok = m.check(s);
                prop_assert_eq!(w.check(s as u32).is_ok(), ok, "seq {}", s);
                prop_assert_eq!(a.check(s as u32).is_ok(), ok, "seq {} atomic", s);
                if ok {
                    w.update(s).unwrap();
                    a.update(s).unwrap();
                    m.seen.insert(s);
                    m.top = m.top.max(s);
                    base = base.max(s);
                }
            }
        }
    }
}
