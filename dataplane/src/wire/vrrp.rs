//! VRRP version 3 advertisements for IPv4 and IPv6 (RFC 5798 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                       IPvX Address(es)                        |
//! ```
//!
//! The checksum covers the message and, in version 3, the IPv4 or IPv6 pseudo-header (RFC 5798
//! §5.2.8), as keepalived and VPP compute it. The addresses are all of the datagram's family:
//! 4 bytes each over IPv4, 16 over IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
/// Destination of every IPv6 advertisement (RFC 5798 §5.1.2.2).
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Ethernet destination of [`GROUP_V6`] (RFC 2464 §7).
pub const GROUP_V6_MAC: [u8; 6] = [0x33, 0x33, 0x00, 0x00, 0x00, 0x12];
/// The TTL (IPv6: hop limit) every advertisement is sent with and must arrive with (RFC 5798 §5.1.1.3).
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
        Self::checked(buffer, 4)
    }
    /// Wraps and checks that the fixed part and the `count` IPv6 addresses fit.
    pub fn new_checked_v6(buffer: T) -> Result<Self, Error> {
        Self::checked(buffer, 16)
    }
    fn checked(buffer: T, alen: usize) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN || b.len() < HEADER_LEN + alen * usize::from(b[3]) {
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
    /// IPv6 address `i` of [`Packet::count`] (`None` past the last, or past the buffer).
    pub fn addr6(&self, i: usize) -> Option<Ipv6Addr> {
        if i >= usize::from(self.count()) {
            return None;
        }
        let o = HEADER_LEN + 16 * i;
        let a: [u8; 16] = self.buffer.as_ref().get(o..o + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(a))
    }
    /// Whether the checksum verifies over the whole buffer and the pseudo-header of an IPv4
    /// datagram from `src` to `dst`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v4(&src, &dst, PROTO, b.len() as u32);
        checksum::combine(&[ph, checksum::data(b)]) == 0xffff
    }
    /// The same for an IPv6 datagram (the upper-layer pseudo-header of RFC 8200 §8.1).
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(&src, &dst, PROTO, b.len() as u32);
        checksum::combine(&[ph, checksum::data(b)]) == 0xffff
    }
}

fn addr_len(a: &IpAddr) -> usize {
    if a.is_ipv4() {
        4
    } else {
        16
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
    /// The virtual addresses, all of the datagram's family.
    pub addrs: &'a [IpAddr],
}

impl Repr<'_> {
    /// Bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.addrs.iter().map(addr_len).sum::<usize>()
    }
    /// Writes the message into `b[..buffer_len()]` with its checksum for a datagram from
    /// `src` to `dst`. More than 255 addresses, an address of another family than `src`'s,
    /// or an interval over 12 bits, are `Malformed`.
    pub fn emit(&self, b: &mut [u8], src: IpAddr, dst: IpAddr) -> Result<(), Error> {
        let count = u8::try_from(self.addrs.len()).map_err(|_| Error::Malformed)?;
        if self.max_adver_int > MAX_INTERVAL_CS
            || dst.is_ipv4() != src.is_ipv4()
            || self.addrs.iter().any(|a| a.is_ipv4() != src.is_ipv4())
        {
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
        let mut o = HEADER_LEN;
        for a in self.addrs {
            match a {
                IpAddr::V4(a) => b[o..o + 4].copy_from_slice(&a.octets()),
                IpAddr::V6(a) => b[o..o + 16].copy_from_slice(&a.octets()),
            }
            o += addr_len(a);
        }
        let ph = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_header_v4(&s, &d, PROTO, n as u32),
            (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_header_v6(&s, &d, PROTO, n as u32),
            _ => return Err(Error::Malformed),
        };
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
        let addrs = [IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1))];
        let r = Repr {
            vrid: 51,
            priority: 100,
            max_adver_int: 100,
            addrs: &addrs,
        };
        let mut b = [0u8; 12];
        r.emit(
            &mut b,
            Ipv4Addr::new(203, 0, 113, 3).into(),
            GROUP_V4.into(),
        )
        .unwrap();
        assert_eq!(b, KEEPALIVED);
    }

    /// An IPv6 advertisement as keepalived 2.2.7 sent it (`vrrp_version 3`, VRID 61, priority
    /// 100, 1 s, one address 2001:db8:113::1), from fe80::e804:1eff:fe3c:2d00 to ff02::12,
    /// captured with tcpdump -xx.
    const KEEPALIVED_V6: [u8; 24] = [
        0x31, 0x3d, 0x64, 0x01, 0x00, 0x64, 0x0b, 0x31, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x13, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0x01,
    ];
    const KEEPALIVED_V6_SRC: Ipv6Addr =
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0xe804, 0x1eff, 0xfe3c, 0x2d00);

    #[test]
    fn reads_and_writes_a_keepalived_ipv6_advertisement() {
        let p = Packet::new_checked_v6(&KEEPALIVED_V6[..]).unwrap();
        assert_eq!((p.version(), p.kind()), (3, 1));
        assert_eq!((p.vrid(), p.priority(), p.count()), (61, 100, 1));
        assert_eq!(p.max_adver_int(), 100);
        let vip: Ipv6Addr = "2001:db8:113::1".parse().unwrap();
        assert_eq!(p.addr6(0), Some(vip));
        assert_eq!(p.addr6(1), None);
        assert!(p.verify_checksum_v6(KEEPALIVED_V6_SRC, GROUP_V6));
        assert!(!p.verify_checksum_v6("fe80::1".parse().unwrap(), GROUP_V6));
        // Read as IPv4, the 16-byte address would be four: the family decides the length.
        assert!(Packet::new_checked_v6(&KEEPALIVED_V6[..23]).is_err());
        let addrs = [IpAddr::V6(vip)];
        let r = Repr {
            vrid: 61,
            priority: 100,
            max_adver_int: 100,
            addrs: &addrs,
        };
        assert_eq!(r.buffer_len(), 24);
        let mut b = [0u8; 24];
        r.emit(&mut b, KEEPALIVED_V6_SRC.into(), GROUP_V6.into())
            .unwrap();
        assert_eq!(b, KEEPALIVED_V6);
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
        let g = IpAddr::V4(GROUP_V4);
        assert_eq!(r.emit(&mut [0u8; 8], g, g), Err(Error::Malformed));
        let r = Repr {
            max_adver_int: 100,
            ..r
        };
        assert_eq!(r.emit(&mut [0u8; 7], g, g), Err(Error::Truncated));
        // One family per message.
        let mixed = [IpAddr::V6(GROUP_V6)];
        let r = Repr { addrs: &mixed, ..r };
        assert_eq!(r.emit(&mut [0u8; 24], g, g), Err(Error::Malformed));
        let r = Repr { addrs: &[], ..r };
        assert_eq!(
            r.emit(&mut [0u8; 8], g, IpAddr::V6(GROUP_V6)),
            Err(Error::Malformed)
        );
    }

    proptest! {
        #[test]
        fn emit_then_parse(vrid: u8, priority: u8, int in 0u16..=MAX_INTERVAL_CS,
                           addrs in proptest::collection::vec(any::<u32>(), 0..8),
                           src: u32) {
            let addrs: Vec<Ipv4Addr> = addrs.into_iter().map(Ipv4Addr::from).collect();
            let ips: Vec<IpAddr> = addrs.iter().map(|&a| a.into()).collect();
            let r = Repr { vrid, priority, max_adver_int: int, addrs: &ips };
            let mut b = vec![0u8; r.buffer_len()];
            let src = Ipv4Addr::from(src);
            r.emit(&mut b, src.into(), GROUP_V4.into()).unwrap();
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum(src, GROUP_V4));
            prop_assert_eq!((p.version(), p.kind(), p.vrid(), p.priority()), (3, 1, vrid, priority));
            prop_assert_eq!(p.max_adver_int(), int);
            let back: Vec<Ipv4Addr> = (0..addrs.len()).filter_map(|i| p.addr(i)).collect();
            prop_assert_eq!(back, addrs);
        }

        #[test]
        fn emit_then_parse_v6(vrid: u8, priority: u8, int in 0u16..=MAX_INTERVAL_CS,
                              addrs in proptest::collection::vec(any::<u128>(), 0..5),
                              src: u128) {
            let addrs: Vec<Ipv6Addr> = addrs.into_iter().map(Ipv6Addr::from).collect();
            let ips: Vec<IpAddr> = addrs.iter().map(|&a| a.into()).collect();
            let r = Repr { vrid, priority, max_adver_int: int, addrs: &ips };
            prop_assert_eq!(r.buffer_len(), HEADER_LEN + 16 * addrs.len());
            let mut b = vec![0u8; r.buffer_len()];
            let src = Ipv6Addr::from(src);
            r.emit(&mut b, src.into(), GROUP_V6.into()).unwrap();
            let p = Packet::new_checked_v6(&b[..]).unwrap();
            prop_assert!(p.verify_checksum_v6(src, GROUP_V6));
            prop_assert_eq!((p.vrid(), p.priority(), p.max_adver_int()), (vrid, priority, int));
            let back: Vec<Ipv6Addr> = (0..addrs.len()).filter_map(|i| p.addr6(i)).collect();
            prop_assert_eq!(back, addrs);
            if !b.is_empty() && p.count() > 0 {
                prop_assert!(Packet::new_checked_v6(&b[..b.len() - 1]).is_err());
            }
        }

        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.version(), p.kind(), p.vrid(), p.priority(), p.max_adver_int());
                let _ = (p.checksum(), p.addr(0), p.addr(300));
                let _ = p.verify_checksum(GROUP_V4, GROUP_V4);
            }
            if let Ok(p) = Packet::new_checked_v6(&b[..]) {
                let _ = (p.addr6(0), p.addr6(300), p.verify_checksum_v6(GROUP_V6, GROUP_V6));
            }
        }
    }
}
