//! UDP header (RFC 768).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{checksum, ip_proto, Error};

/// Header length.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }
    /// Wraps and checks: header present, length field between 8 and the buffer length.
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
        let l = usize::from(self.len());
        if l < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if l > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn u16_at(&self, i: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[i], b[i + 1]])
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(2)
    }
    /// Length field (header included).
    pub fn len(&self) -> u16 {
        self.u16_at(4)
    }
    /// True when the datagram has no payload.
    pub fn is_empty(&self) -> bool {
        self.len() as usize == HEADER_LEN
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(6)
    }
    /// Payload, bounded by the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
    fn sum(&self, ph: u16) -> u16 {
        checksum::combine(&[
            ph,
            checksum::data(&self.buffer.as_ref()[..usize::from(self.len())]),
        ])
    }
    /// Verifies over IPv4 (a zero checksum means "none", RFC 768).
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        self.checksum() == 0
            || self.sum(checksum::pseudo_header_v4(
                src,
                dst,
                ip_proto::UDP,
                u32::from(self.len()),
            )) == 0xffff
    }
    /// Verifies over IPv6 (zero is not allowed, RFC 8200 §8.1).
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.checksum() != 0
            && self.sum(checksum::pseudo_header_v6(
                src,
                dst,
                ip_proto::UDP,
                u32::from(self.len()),
            )) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16(&mut self, i: usize, v: u16) {
        self.buffer.as_mut()[i..i + 2].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16(0, v);
    }
    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16(2, v);
    }
    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        self.set_u16(4, v);
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(6, v);
    }
    fn fill(&mut self, ph: u16) {
        self.set_checksum(0);
        let c = !self.sum(ph);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
    /// Computes the checksum over IPv4.
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        let ph = checksum::pseudo_header_v4(src, dst, ip_proto::UDP, u32::from(self.len()));
        self.fill(ph);
    }
    /// Computes the checksum over IPv6.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::UDP, u32::from(self.len()));
        self.fill(ph);
    }
    /// Payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..l]
    }
}

/// The UDP header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: usize,
}

impl Repr {
    /// Reads a checked datagram.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: p.payload().len(),
        }
    }
    /// Header bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the header (checksum zero) into `b[..8]`.
    pub fn emit(&self, b: &mut [u8]) -> Result<(), Error> {
        if b.len() < HEADER_LEN || self.payload_len > usize::from(u16::MAX) - HEADER_LEN {
            return Err(Error::Truncated);
        }
        b[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        b[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        b[4..6].copy_from_slice(&((HEADER_LEN + self.payload_len) as u16).to_be_bytes());
        b[6..8].fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn checksum_of_a_known_datagram() {
        // 192.168.0.1:1024 -> 192.168.0.199:53, payload "abcd": checksum computed by hand from
        // RFC 768's definition (pseudo header + header + data, ones' complement).
        let src = Ipv4Addr::new(192, 168, 0, 1);
        let dst = Ipv4Addr::new(192, 168, 0, 199);
        let mut b = [
            0x04, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'a', b'b', b'c', b'd',
        ];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum_v4(&src, &dst);
        // Sum: c0a8+0001+c0a8+00c7+0011+000c + 0400+0035+000c+0000+6162+6364 = 0x2_4b3c -> 4b3e
        assert_eq!(p.checksum(), !0x4b3eu16);
        assert!(p.verify_checksum_v4(&src, &dst));
        p.set_checksum(0);
        assert!(
            p.verify_checksum_v4(&src, &dst),
            "zero means no checksum over IPv4"
        );
        assert!(!p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.src_port(), p.dst_port(), p.checksum(), p.payload(), Repr::parse(&p));
                let _ = p.verify_checksum_v4(&Ipv4Addr::LOCALHOST, &Ipv4Addr::LOCALHOST);
            }
        }

        #[test]
        fn round_trip(sp in any::<u16>(), dp in any::<u16>(), len in 0usize..1500) {
            let r = Repr { src_port: sp, dst_port: dp, payload_len: len };
            let mut b = vec![0u8; HEADER_LEN + len];
            r.emit(&mut b).unwrap();
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            p.fill_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED);
            prop_assert!(p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED));
            prop_assert_eq!(Repr::parse(&p), r);
        }
    }
}
