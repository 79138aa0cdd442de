//! The packet buffer abstraction: one contiguous run of bytes with headroom in front and
//! tailroom behind, like a single-segment DPDK mbuf.
//!
//! ESP encapsulation grows a packet at both ends (outer headers in front, padding and ICV
//! behind) and decapsulation shrinks it, so the core only ever needs these five operations.
//! The DPDK wrapper implements [`PacketBuf`] over `rte_mbuf`; [`HeapBuf`] implements it over a
//! heap allocation for tests and the pcap tool.

/// Why a buffer operation could not be done. The buffer is unchanged when one is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufError {
    /// Not enough headroom for a prepend.
    NoHeadroom,
    /// Not enough tailroom for an append.
    NoTailroom,
    /// Asked to remove more bytes than the packet holds.
    TooShort,
}

/// A packet: `data()` is the packet, with room to grow at either end.
pub trait PacketBuf {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes free in front of the packet.
    fn headroom(&self) -> usize;
    /// Bytes free behind the packet.
    fn tailroom(&self) -> usize;
    /// Grows the packet by `n` bytes at the front and returns the whole packet; the new bytes
    /// are the first `n` and their content is unspecified.
    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError>;
    /// Grows the packet by `n` bytes at the back and returns the whole packet; the new bytes
    /// are the last `n` and their content is unspecified.
    fn append(&mut self, n: usize) -> Result<&mut [u8], BufError>;
    /// Removes `n` bytes from the front.
    fn adj(&mut self, n: usize) -> Result<(), BufError>;
    /// Removes `n` bytes from the back.
    fn trim(&mut self, n: usize) -> Result<(), BufError>;

    /// Packet length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True when the packet holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A heap-backed [`PacketBuf`] for tests, tools and the control plane.
#[derive(Clone, Debug)]
pub struct HeapBuf {
    storage: Box<[u8]>,
    start: usize,
    end: usize,
}

impl HeapBuf {
    /// Default headroom, as in DPDK (`RTE_PKTMBUF_HEADROOM`).
    pub const DEFAULT_HEADROOM: usize = 128;
    /// Default tailroom: enough for ESP padding, trailer and the largest ICV.
    pub const DEFAULT_TAILROOM: usize = 128;

    /// An empty buffer with the given room at each end.
    pub fn with_room(headroom: usize, tailroom: usize) -> Self {
        Self {
            storage: vec![0; headroom + tailroom].into_boxed_slice(),
            start: headroom,
            end: headroom,
        }
    }

    /// A buffer holding a copy of `bytes`, with the default room at each end.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self::from_slice_with_room(bytes, Self::DEFAULT_HEADROOM, Self::DEFAULT_TAILROOM)
    }

    /// A buffer holding a copy of `bytes`, with the given room at each end.
    pub fn from_slice_with_room(bytes: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut storage = vec![0; headroom + bytes.len() + tailroom].into_boxed_slice();
        storage[headroom..headroom + bytes.len()].copy_from_slice(bytes);
        Self {
            storage,
            start: headroom,
            end: headroom + bytes.len(),
        }
    }

    /// Replaces the packet with a copy of `bytes`, keeping `headroom` in front if it fits.
    /// Returns false (and leaves the buffer unchanged) when the bytes do not fit.
    pub fn reset_from(&mut self, bytes: &[u8], headroom: usize) -> bool {
        if headroom + bytes.len() > self.storage.len() {
            return false;
        }
        self.start = headroom;
        self.end = headroom + bytes.len();
        self.storage[self.start..self.end].copy_from_slice(bytes);
        true
    }

    /// The packet bytes as an owned vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl PacketBuf for HeapBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }
    #[inline]
    fn headroom(&self) -> usize {
        self.start
    }
    #[inline]
    fn tailroom(&self) -> usize {
        self.storage.len() - self.end
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.start {
            return Err(BufError::NoHeadroom);
        }
        self.start -= n;
        Ok(self.data_mut())
    }
    #[inline]
    fn append(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.tailroom() {
            return Err(BufError::NoTailroom);
        }
        self.end += n;
        Ok(self.data_mut())
    }
    #[inline]
    fn adj(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.end - self.start {
            return Err(BufError::TooShort);
        }
        self.start += n;
        Ok(())
    }
    #[inline]
    fn trim(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.end - self.start {
            return Err(BufError::TooShort);
        }
        self.end -= n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_and_shrink_at_both_ends() {
        let mut b = HeapBuf::from_slice_with_room(&[1, 2, 3], 4, 2);
        assert_eq!(b.headroom(), 4);
        assert_eq!(b.tailroom(), 2);
        b.prepend(2).unwrap()[..2].copy_from_slice(&[9, 8]);
        assert_eq!(b.data(), &[9, 8, 1, 2, 3]);
        let d = b.append(2).unwrap();
        d[5] = 7;
        d[6] = 6;
        assert_eq!(b.data(), &[9, 8, 1, 2, 3, 7, 6]);
        assert_eq!(b.append(1), Err(BufError::NoTailroom));
        assert_eq!(b.prepend(3).err(), Some(BufError::NoHeadroom));
        b.adj(3).unwrap();
        b.trim(1).unwrap();
        assert_eq!(b.data(), &[2, 3, 7]);
        assert_eq!(b.adj(4), Err(BufError::TooShort));
        assert_eq!(b.trim(4), Err(BufError::TooShort));
        assert_eq!(
            b.data(),
            &[2, 3, 7],
            "failed operations leave the buffer unchanged"
        );
    }
}
