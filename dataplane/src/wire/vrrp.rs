//! VRRP version 3 advertisements for IPv4 (RFC 5798 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                       IPvX Address(es)                        |
//! ```
//!
//! The checksum covers the message and, in version 3, the IPv4 pseudo-header (RFC 5798
//! §5.2.8), as keepalived and VPP compute it.

use std::net::Ipv4Addr;

use super::{checksum, Error};

/// Fixed part of the message.
pub const HEADER_LEN: usize = 8;
/// The version this module reads and writes.
pub const VERSION: u8 = 3;
/// The only message type (RFC 5798 §5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// IP protocol number (RFC 5798 §5.1.1.4).
pub const PROTO: u8 = 112;
/// Destination of every IPv4 advertisement (RFC 5798 §5.1.1.2).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Ethernet destination of [`GROUP_V4`] (RFC 1112 §6.4).
pub const GROUP_V4_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
/// The TTL every advertisement is sent with and must arrive with (RFC 5798 §5.1.1.3).
pub const TTL: u8 = 255;
/// Largest interval the 12-bit field holds, in centiseconds.
pub const MAX_INTERVAL_CS: u16 = 0x0fff;

/// A view of a VRRP message (the IP payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }
    /// Wraps and checks that the fixed part and the `count` IPv4 addresses fit.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN || b.len() < HEADER_LEN + 4 * usize::from(b[3]) {
            return Err(Error::Truncated);
        }
        Ok(p)
    }
    /// The version (high nibble of the first byte).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    /// The type (low nibble of the first byte).
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[0] & 0x0f
    }
    /// The virtual router ID.
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// The sender's priority (0: the master is stopping).
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[2]
    }
    /// How many addresses follow.
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[3]
    }
    /// The advertisement interval, in centiseconds (12 bits).
    pub fn max_adver_int(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[4], b[5]]) & MAX_INTERVAL_CS
    }
    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[6], b[7]])
    }
    /// Address `i` of [`Packet::count`] (`None` past the last).
    pub fn addr(&self, i: usize) -> Option<Ipv4Addr> {
        if i >= usize::from(self.count()) {
            return None;
        }
        let b = self.buffer.as_ref();
        let o = HEADER_LEN + 4 * i;
        Some(Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]))
    }
    /// Whether the checksum verifies over the whole buffer and the pseudo-header of an IPv4
    /// datagram from `src` to `dst`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v4(&src, &dst, PROTO, b.len() as u32);
        checksum::combine(&[ph, checksum::data(b)]) == 0xffff
    }
}

/// An advertisement to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Virtual router ID.
    pub vrid: u8,
    /// Priority (0 when the master stops).
    pub priority: u8,
    /// Interval in centiseconds (at most [`MAX_INTERVAL_CS`]).
    pub max_adver_int: u16,
    /// The virtual addresses.
    pub addrs: &'a [Ipv4Addr],
}

impl Repr<'_> {
    /// Bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + 4 * self.addrs.len()
    }
    /// Writes the message into `b[..buffer_len()]` with its checksum for an IPv4 datagram
    /// from `src` to `dst`. More than 255 addresses, or an interval over 12 bits, are
    /// `Malformed`.
    pub fn emit(&self, b: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<(), Error> {
        let count = u8::try_from(self.addrs.len()).map_err(|_| Error::Malformed)?;
        if self.max_adver_int > MAX_INTERVAL_CS {
            return Err(Error::Malformed);
        }
        let n = self.buffer_len();
        let b = b.get_mut(..n).ok_or(Error::Truncated)?;
        b[0] = VERSION << 4 | TYPE_ADVERTISEMENT;
        b[1] = self.vrid;
        b[2] = self.priority;
        b[3] = count;
        b[4..6].copy_from_slice(&self.max_adver_int.to_be_bytes());
        b[6..8].fill(0);
        for (c, a) in b[HEADER_LEN..].chunks_exact_mut(4).zip(self.addrs) {
            c.copy_from_slice(&a.octets());
        }
        let ph = checksum::pseudo_header_v4(&src, &dst, PROTO, n as u32);
        let sum = !checksum::combine(&[ph, checksum::data(b)]);
        b[6..8].copy_from_slice(&sum.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An advertisement as keepalived 2.2.7 sent it (`vrrp_version 3`, VRID 51, priority 100,
    /// 1 s, one address 203.0.113.1), from 203.0.113.3, captured with tcpdump -X
    /// (IP header `45c0 0020 0001 0000 ff70 9e96 cb00 7103 e000 0012`).
    const KEEPALIVED: [u8; 12] = [
        0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x11, 0xd2, 0xcb, 0x00, 0x71, 0x01,
    ];

    #[test]
    fn reads_a_keepalived_advertisement() {
        let p = Packet::new_checked(&KEEPALIVED[..]).unwrap();
        assert_eq!((p.version(), p.kind()), (3, 1));
        assert_eq!((p.vrid(), p.priority(), p.count()), (51, 100, 1));
        assert_eq!(p.max_adver_int(), 100);
        assert_eq!(p.addr(0), Some(Ipv4Addr::new(203, 0, 113, 1)));
        assert_eq!(p.addr(1), None);
        let src = Ipv4Addr::new(203, 0, 113, 3);
        assert!(p.verify_checksum(src, GROUP_V4));
        // The pseudo-header counts: another source fails.
        assert!(!p.verify_checksum(Ipv4Addr::new(203, 0, 113, 4), GROUP_V4));
    }

    #[test]
    fn writes_what_keepalived_writes() {
        let addrs = [Ipv4Addr::new(203, 0, 113, 1)];
        let r = Repr {
            vrid: 51,
            priority: 100,
            max_adver_int: 100,
            addrs: &addrs,
        };
        let mut b = [0u8; 12];
        r.emit(&mut b, Ipv4Addr::new(203, 0, 113, 3), GROUP_V4)
            .unwrap();
        assert_eq!(b, KEEPALIVED);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert_eq!(
            Packet::new_checked(&KEEPALIVED[..7]).unwrap_err(),
            Error::Truncated
        );
        // Two addresses announced, one present.
        let mut b = KEEPALIVED;
        b[3] = 2;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        let r = Repr {
            vrid: 1,
            priority: 1,
            max_adver_int: 0x1000,
            addrs: &[],
        };
        assert_eq!(
            r.emit(&mut [0u8; 8], GROUP_V4, GROUP_V4),
            Err(Error::Malformed)
        );
        let r = Repr {
            max_adver_int: 100,
            ..r
        };
        assert_eq!(
            r.emit(&mut [0u8; 7], GROUP_V4, GROUP_V4),
            Err(Error::Truncated)
        );
    }

    proptest! {
        #[test]
        fn emit_then_parse(vrid: u8, priority: u8, int in 0u16..=MAX_INTERVAL_CS,
                           addrs in proptest::collection::vec(any::<u32>(), 0..8),
                           src: u32) {
            let addrs: Vec<Ipv4Addr> = addrs.into_iter().map(Ipv4Addr::from).collect();
            let r = Repr { vrid, priority, max_adver_int: int, addrs: &addrs };
            let mut b = vec![0u8; r.buffer_len()];
            let src = Ipv4Addr::from(src);
            r.emit(&mut b, src, GROUP_V4).unwrap();
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum(src, GROUP_V4));
            prop_assert_eq!((p.version(), p.kind(), p.vrid(), p.priority()), (3, 1, vrid, priority));
            prop_assert_eq!(p.max_adver_int(), int);
            let back: Vec<Ipv4Addr> = (0..addrs.len()).filter_map(|i| p.addr(i)).collect();
            prop_assert_eq!(back, addrs);
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.version(), p.kind(), p.vrid(), p.priority(), p.max_adver_int());
                let _ = (p.checksum(), p.addr(0), p.addr(300));
                let _ = p.verify_checksum(GROUP_V4, GROUP_V4);
            }
        }
    }
}
