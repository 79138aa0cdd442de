//! IPv4 header (RFC 791).

use std::net::Ipv4Addr;

use super::{checksum, Error};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking; accessors may panic until [`Packet::check_len`] passed.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps and checks: version 4, IHL ≥ 5, header ≤ total length ≤ buffer length.
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
        if b[0] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let hl = self.header_len();
        let total = usize::from(self.total_len());
        if hl < HEADER_LEN || total < hl {
            return Err(Error::Malformed);
        }
        if total > b.len() {
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
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.b()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Version (4).
    pub fn version(&self) -> u8 {
        self.b()[field::VER_IHL] >> 4
    }
    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }
    /// Differentiated services code point.
    pub fn dscp(&self) -> u8 {
        self.b()[field::TOS] >> 2
    }
    /// Explicit congestion notification.
    pub fn ecn(&self) -> u8 {
        self.b()[field::TOS] & 3
    }
    /// Total length.
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }
    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & 0x4000 != 0
    }
    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & 0x2000 != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & 0x1fff) << 3
    }
    /// Time to live.
    pub fn hop_limit(&self) -> u8 {
        self.b()[field::TTL]
    }
    /// Protocol of the payload.
    pub fn next_header(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }
    /// Header checksum.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.b()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.b()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    /// Options (may be empty).
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }
    /// Payload, bounded by the total length (not the buffer).
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..usize::from(self.total_len())]
    }
    /// True when the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.b()[..self.header_len()]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    fn set_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.bm()[r].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the DSCP.
    pub fn set_dscp(&mut self, v: u8) {
        let t = self.b()[field::TOS];
        self.bm()[field::TOS] = (v << 2) | (t & 3);
    }
    /// Sets the ECN field.
    pub fn set_ecn(&mut self, v: u8) {
        let t = self.b()[field::TOS];
        self.bm()[field::TOS] = (t & 0xfc) | (v & 3);
    }
    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        self.set_u16(field::LENGTH, v);
    }
    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        self.set_u16(field::IDENT, v);
    }
    /// Sets or clears DF.
    pub fn set_dont_frag(&mut self, df: bool) {
        let f = self.u16_at(field::FLG_OFF) & !0x4000;
        self.set_u16(field::FLG_OFF, if df { f | 0x4000 } else { f });
    }
    /// Sets the TTL.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.bm()[field::TTL] = v;
    }
    /// Sets the protocol.
    pub fn set_next_header(&mut self, v: u8) {
        self.bm()[field::PROTOCOL] = v;
    }
    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.bm()[field::SRC].copy_from_slice(&a.octets());
    }
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.bm()[field::DST].copy_from_slice(&a.octets());
    }
    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_u16(field::CHECKSUM, 0);
        let hl = self.header_len();
        let c = !checksum::data(&self.b()[..hl]);
        self.set_u16(field::CHECKSUM, c);
    }
    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (s, e) = (self.header_len(), usize::from(self.total_len()));
        &mut self.bm()[s..e]
    }
}

/// The fields of an IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// TTL.
    pub hop_limit: u8,
    /// DSCP.
    pub dscp: u8,
    /// ECN.
    pub ecn: u8,
    /// DF.
    pub dont_frag: bool,
    /// Identification.
    pub ident: u16,
}

impl Repr {
    /// Reads the fields of a checked packet; options are ignored.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Self {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: p.payload().len(),
            hop_limit: p.hop_limit(),
            dscp: p.dscp(),
            ecn: p.ecn(),
            dont_frag: p.dont_frag(),
            ident: p.ident(),
        })
    }
    /// Header length [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes a 20-byte header with its checksum into `b[..20]`.
    pub fn emit(&self, b: &mut [u8]) -> Result<(), Error> {
        if b.len() < HEADER_LEN || self.payload_len > usize::from(u16::MAX) - HEADER_LEN {
            return Err(Error::Truncated);
        }
        b[..HEADER_LEN].fill(0);
        b[0] = 0x45;
        b[1] = (self.dscp << 2) | (self.ecn & 3);
        b[2..4].copy_from_slice(&((HEADER_LEN + self.payload_len) as u16).to_be_bytes());
        b[4..6].copy_from_slice(&self.ident.to_be_bytes());
        b[6] = if self.dont_frag { 0x40 } else { 0 };
        b[8] = self.hop_limit;
        b[9] = self.next_header;
        b[12..16].copy_from_slice(&self.src_addr.octets());
        b[16..20].copy_from_slice(&self.dst_addr.octets());
        let c = !checksum::data(&b[..HEADER_LEN]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // A UDP/IPv4 header captured from a DNS query (checksum 0xb861).
    const REAL: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn real_header_fields() {
        let mut b = REAL.to_vec();
        b.resize(0x73, 0);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag());
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x73 - 20);
        let r = Repr::parse(&p).unwrap();
        let mut out = [0u8; 20];
        r.emit(&mut out).unwrap();
        assert_eq!(out, REAL);
    }

    #[test]
    fn rejects_short_and_inconsistent() {
        assert_eq!(
            Packet::new_checked(&REAL[..19]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(Packet::new_checked(&REAL[..]).err(), Some(Error::Truncated));
        let mut b = REAL;
        b[0] = 0x44;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::Malformed));
        b[0] = 0x65;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::Malformed));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.version(), p.dscp(), p.ecn(), p.ident(), p.more_frags(), p.frag_offset());
                let _ = (p.src_addr(), p.dst_addr(), p.options(), p.payload(), p.verify_checksum());
                let _ = Repr::parse(&p);
            }
        }

        #[test]
        fn repr_round_trip(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), nh in any::<u8>(),
                           len in 0usize..1500, ttl in any::<u8>(), dscp in 0u8..64, ecn in 0u8..4,
                           df in any::<bool>(), ident in any::<u16>()) {
            let r = Repr { src_addr: src.into(), dst_addr: dst.into(), next_header: nh, payload_len: len,
                           hop_limit: ttl, dscp, ecn, dont_frag: df, ident };
            let mut b = vec![0u8; r.buffer_len() + len];
            r.emit(&mut b).unwrap();
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p).unwrap(), r);
        }
    }
}
