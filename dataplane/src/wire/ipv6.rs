//! IPv6 header (RFC 8200) and the walk over its extension headers.

use std::net::Ipv6Addr;

use super::{ip_proto, Error};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

mod field {
    use std::ops::Range;
    pub const VER_TC_FL: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }
    /// Wraps and checks version 6 and that the payload length fits the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// The checks of [`Packet::new_checked`].
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    fn word0(&self) -> u32 {
        let b = &self.b()[field::VER_TC_FL];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }
    /// DSCP.
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }
    /// ECN.
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 3
    }
    /// Flow label.
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }
    /// Payload length (extension headers included).
    pub fn payload_len(&self) -> u16 {
        let b = &self.b()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }
    /// Next header of the fixed header.
    pub fn next_header(&self) -> u8 {
        self.b()[field::NXT_HDR]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.b()[field::HOP_LIMIT]
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b()[field::SRC]);
        a.into()
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b()[field::DST]);
        a.into()
    }
    /// Payload (extension headers included), bounded by the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension headers (hop-by-hop, routing, fragment, destination options) to
    /// the first other header: returns its protocol, its offset from the start of the IPv6
    /// header, and whether the packet is a non-first fragment (whose upper-layer header is
    /// elsewhere). Stops at ESP and AH. At most 16 extension headers are walked.
    pub fn upper_layer(&self) -> Result<(u8, usize, bool), Error> {
        let b = self.b();
        let end = HEADER_LEN + usize::from(self.payload_len());
        let mut nh = self.next_header();
        let mut off = HEADER_LEN;
        for _ in 0..16 {
            let len = match nh {
                ip_proto::HOPOPT | ip_proto::ROUTING | ip_proto::DSTOPTS => {
                    let l = *b
                        .get(off + 1)
                        .filter(|_| off + 2 <= end)
                        .ok_or(Error::Truncated)?;
                    (usize::from(l) + 1) * 8
                }
                ip_proto::FRAGMENT => {
                    if off + 8 > end {
                        return Err(Error::Truncated);
                    }
                    let fo = u16::from_be_bytes([b[off + 2], b[off + 3]]) & 0xfff8;
                    if fo != 0 {
                        // A later fragment: the rest is the middle of the datagram, not more
                        // headers (RFC 8200 §4.5: they travel in the first fragment).
                        return Ok((b[off], off + 8, true));
                    }
                    8
                }
                _ => return Ok((nh, off, false)),
            };
            if off + len > end {
                return Err(Error::Truncated);
            }
            nh = b[off];
            off += len;
        }
        Err(Error::Malformed)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = (self.word0() & 0xf00f_ffff) | (u32::from(tc) << 20);
        self.bm()[field::VER_TC_FL].copy_from_slice(&w.to_be_bytes());
    }
    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        self.bm()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the next header of the fixed header.
    pub fn set_next_header(&mut self, v: u8) {
        self.bm()[field::NXT_HDR] = v;
    }
    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.bm()[field::HOP_LIMIT] = v;
    }
    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.bm()[field::SRC].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.bm()[field::DST].copy_from_slice(&a.octets());
    }
    /// Payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.bm()[HEADER_LEN..end]
    }
}

/// The fields of a fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Reads the fixed header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        Ok(Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }
    /// Header length [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the 40-byte header into `b[..40]`.
    pub fn emit(&self, b: &mut [u8]) -> Result<(), Error> {
        if b.len() < HEADER_LEN
            || self.payload_len > usize::from(u16::MAX)
            || self.flow_label > 0xfffff
        {
            return Err(Error::Truncated);
        }
        let w = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | self.flow_label;
        b[0..4].copy_from_slice(&w.to_be_bytes());
        b[4..6].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
        b[6] = self.next_header;
        b[7] = self.hop_limit;
        b[8..24].copy_from_slice(&self.src_addr.octets());
        b[24..40].copy_from_slice(&self.dst_addr.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ICMPv6 echo request 2001:db8::1 -> 2001:db8::2 behind a hop-by-hop header (router
    /// alert) and a fragment header with offset 0.
    fn with_extensions(frag_offset: u16) -> Vec<u8> {
        let mut b = vec![0u8; 40 + 8 + 8 + 8];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&24u16.to_be_bytes());
        b[6] = ip_proto::HOPOPT;
        b[7] = 64;
        b[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        b[24..40].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        b[40] = ip_proto::FRAGMENT; // hop-by-hop: next header, length 0 (8 bytes)
        b[42..46].copy_from_slice(&[0x05, 0x02, 0x00, 0x00]); // router alert option
        b[48] = ip_proto::ICMPV6;
        b[50..52].copy_from_slice(&(frag_offset << 3).to_be_bytes());
        b[56] = 128; // echo request
        b
    }

    #[test]
    fn walks_extension_headers() {
        let b = with_extensions(0);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok((ip_proto::ICMPV6, 56, false)));
        let b = with_extensions(100);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok((ip_proto::ICMPV6, 56, true)));
        let mut b = with_extensions(0);
        b[41] = 7; // hop-by-hop claims 64 bytes
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Truncated));
        // A later fragment whose fragment header names destination options: what follows is
        // data, not that header (before, it was read as one: here a length past the end).
        let mut b = with_extensions(100);
        b[48] = ip_proto::DSTOPTS;
        b[56..64].fill(0xee);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok((ip_proto::DSTOPTS, 56, true)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut b = b;
            if let Some(x) = b.first_mut() { *x = (*x & 0x0f) | 0x60; }
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.traffic_class(), p.flow_label(), p.src_addr(), p.dst_addr(), p.payload());
                let _ = p.upper_layer();
                let _ = Repr::parse(&p);
            }
        }

        #[test]
        fn repr_round_trip(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nh in any::<u8>(),
                           len in 0usize..1500, hl in any::<u8>(), tc in any::<u8>(), fl in 0u32..0x100000) {
            let r = Repr { src_addr: src.into(), dst_addr: dst.into(), next_header: nh, payload_len: len,
                           hop_limit: hl, traffic_class: tc, flow_label: fl };
            let mut b = vec![0u8; HEADER_LEN + len];
            r.emit(&mut b).unwrap();
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p).unwrap(), r);
        }
    }
}
