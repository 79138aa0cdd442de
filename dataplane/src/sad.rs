//! The Security Association Database lookup: inbound SPI (and destination) → SA, in O(1).
//!
//! RFC 4301 §4.1: a unicast SA is found by SPI alone or by SPI and destination; we look for an
//! exact (SPI, destination) entry first and then an SPI-only one. Open addressing with linear
//! probing over a power-of-two table, hashed by a multiplicative hash of the SPI: SPIs are
//! chosen by our own control plane, so nobody can aim collisions at the table, and a lookup
//! of an unknown SPI stops at the first empty slot. 1,000,000 SAs fit (the table stays at most
//! half full).

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    spi: u32,
    dst: Option<IpAddr>,
}

/// The SAD index.
#[derive(Debug, Clone)]
pub struct Sad<V> {
    slots: Vec<Option<(Key, V)>>,
    len: usize,
    mask: usize,
}

impl<V> Default for Sad<V> {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn hash(spi: u32) -> usize {
    // Fibonacci hashing: the top bits of spi * 2^64/phi spread sequential SPIs evenly.
    (u64::from(spi).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize
}

impl<V> Sad<V> {
    /// An empty SAD.
    pub fn new() -> Self {
        Self::with_capacity(16)
    }

    /// An empty SAD with room for `n` SAs before it grows.
    pub fn with_capacity(n: usize) -> Self {
        let size = (n.max(8) * 2).next_power_of_two();
        Self {
            slots: (0..size).map(|_| None).collect(),
            len: 0,
            mask: size - 1,
        }
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn find(&self, k: Key) -> Result<usize, usize> {
        let mut i = hash(k.spi) & self.mask;
        loop {
            match &self.slots[i] {
                None => return Err(i),
                Some((key, _)) if *key == k => return Ok(i),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    /// Adds or replaces the SA for `(spi, dst)`; `dst: None` matches any destination.
    pub fn insert(&mut self, spi: u32, dst: Option<IpAddr>, v: V) -> Option<V> {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let k = Key { spi, dst };
        match self.find(k) {
            Ok(i) => self.slots[i].replace((k, v)).map(|(_, old)| old),
            Err(i) => {
                self.slots[i] = Some((k, v));
                self.len += 1;
                None
            }
        }
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        let size = old.len() * 2;
        self.slots = (0..size).map(|_| None).collect();
        self.mask = size - 1;
        for (k, v) in old.into_iter().flatten() {
            if let Err(i) = self.find(k) {
                self.slots[i] = Some((k, v));
            }
        }
    }

    /// The SA for a packet with this SPI and destination (exact entry first, then SPI-only).
    #[inline]
    pub fn get(&self, spi: u32, dst: IpAddr) -> Option<&V> {
        // One probe sequence serves both keys: both hash by SPI.
        let mut i = hash(spi) & self.mask;
        let mut any = None;
        loop {
            match &self.slots[i] {
                None => return any,
                Some((k, v)) if k.spi == spi => {
                    match k.dst {
                        Some(d) if d == dst => return Some(v),
                        None => any = Some(v),
                        Some(_) => {}
                    }
                    i = (i + 1) & self.mask;
                }
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    /// Removes the SA for `(spi, dst)`.
    pub fn remove(&mut self, spi: u32, dst: Option<IpAddr>) -> Option<V> {
        let i = self.find(Key { spi, dst }).ok()?;
        let (_, v) = self.slots[i].take()?;
        self.len -= 1;
        // Backward-shift deletion keeps every probe sequence unbroken.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        while let Some((k, _)) = &self.slots[j] {
            let home = hash(k.spi) & self.mask;
            // Move the entry into the hole if the hole lies on its probe path.
            let dist_j = j.wrapping_sub(home) & self.mask;
            let dist_hole = hole.wrapping_sub(home) & self.mask;
            if dist_hole < dist_j {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        Some(v)
    }

    /// Every entry: (SPI, destination, SA).
    pub fn iter(&self) -> impl Iterator<Item = (u32, Option<IpAddr>, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (k.spi, k.dst, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn exact_destination_before_spi_only() {
        let mut s = Sad::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        s.insert(7, None, "any");
        s.insert(7, Some(a), "a");
        assert_eq!(s.get(7, a), Some(&"a"));
        assert_eq!(s.get(7, b), Some(&"any"));
        assert_eq!(s.get(8, a), None);
        assert_eq!(s.remove(7, None), Some("any"));
        assert_eq!(s.get(7, b), None);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_million_sas() {
        let mut s = Sad::with_capacity(1_000_000);
        let d: IpAddr = "192.0.2.1".parse().unwrap();
        for spi in 0..1_000_000u32 {
            s.insert(spi.wrapping_mul(2_654_435_761), None, spi);
        }
        assert_eq!(s.len(), 1_000_000);
        for spi in (0..1_000_000u32).step_by(9973) {
            assert_eq!(s.get(spi.wrapping_mul(2_654_435_761), d), Some(&spi));
        }
    }

    proptest! {
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((0u8..3, 0u32..64, prop::option::of(0u8..3), any::<u16>()), 0..300)) {
            let mut s = Sad::new();
            let mut m: HashMap<(u32, Option<u8>), u16> = HashMap::new();
            let addr = |d: u8| IpAddr::from([10, 0, 0, d]);
            for (op, spi, dst, v) in ops {
                match op {
                    0 => { prop_assert_eq!(s.insert(spi, dst.map(addr), v), m.insert((spi, dst), v)); }
                    1 => { prop_assert_eq!(s.remove(spi, dst.map(addr)), m.remove(&(spi, dst))); }
                    _ => {
                        let d = dst.unwrap_or(0);
                        let want = m.get(&(spi, Some(d))).or_else(|| m.get(&(spi, None)));
                        prop_assert_eq!(s.get(spi, addr(d)), want);
                    }
                }
                prop_assert_eq!(s.len(), m.len());
            }
        }
    }
}
