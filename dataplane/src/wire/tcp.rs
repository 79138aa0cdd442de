//! TCP header (RFC 9293) with the MSS option (RFC 9293 §3.7.1), which the gateway clamps on
//! SYNs entering a tunnel.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{checksum, ip_proto, Error};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }
    /// Wraps and checks that the header (with options) fits.
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
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > b.len() {
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
    fn u16_at(&self, i: usize) -> u16 {
        u16::from_be_bytes([self.b()[i], self.b()[i + 1]])
    }
    fn u32_at(&self, i: usize) -> u32 {
        let b = self.b();
        u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(2)
    }
    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.u32_at(4)
    }
    /// Acknowledgement number.
    pub fn ack_number(&self) -> u32 {
        self.u32_at(8)
    }
    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[12] >> 4) * 4
    }
    fn flags(&self) -> u8 {
        self.b()[13]
    }
    /// SYN flag.
    pub fn syn(&self) -> bool {
        self.flags() & 0x02 != 0
    }
    /// ACK flag.
    pub fn ack(&self) -> bool {
        self.flags() & 0x10 != 0
    }
    /// FIN flag.
    pub fn fin(&self) -> bool {
        self.flags() & 0x01 != 0
    }
    /// RST flag.
    pub fn rst(&self) -> bool {
        self.flags() & 0x04 != 0
    }
    /// Window.
    pub fn window_len(&self) -> u16 {
        self.u16_at(14)
    }
    /// Checksum.
    pub fn checksum(&self) -> u16 {
        self.u16_at(16)
    }
    /// Options.
    pub fn options(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.header_len()]
    }
    /// Payload (the rest of the buffer).
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
    /// Offset of the MSS option's value within the segment, if present and well-formed.
    fn mss_offset(&self) -> Option<usize> {
        let opts = self.options();
        let mut i = 0;
        // Each step advances by at least one byte: bounded by the options' length.
        while i < opts.len() {
            match opts[i] {
                OPT_END => return None,
                OPT_NOP => i += 1,
                kind => {
                    let len = usize::from(*opts.get(i + 1)?);
                    if len < 2 || i + len > opts.len() {
                        return None;
                    }
                    if kind == OPT_MSS && len == 4 {
                        return Some(HEADER_LEN + i + 2);
                    }
                    i += len;
                }
            }
        }
        None
    }
    /// The MSS option, if any.
    pub fn mss(&self) -> Option<u16> {
        self.mss_offset().map(|o| self.u16_at(o))
    }
    fn sum(&self, ph: u16) -> u16 {
        checksum::combine(&[ph, checksum::data(self.b())])
    }
    /// Verifies over IPv4 (the segment is the whole buffer).
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        self.sum(checksum::pseudo_header_v4(
            src,
            dst,
            ip_proto::TCP,
            self.b().len() as u32,
        )) == 0xffff
    }
    /// Verifies over IPv6.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.sum(checksum::pseudo_header_v6(
            src,
            dst,
            ip_proto::TCP,
            self.b().len() as u32,
        )) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16(&mut self, i: usize, v: u16) {
        self.buffer.as_mut()[i..i + 2].copy_from_slice(&v.to_be_bytes());
    }
    /// Lowers the MSS option to `max` if it is larger, fixing the checksum incrementally
    /// (RFC 1624). Returns whether the segment changed.
    pub fn clamp_mss(&mut self, max: u16) -> bool {
        let Some(o) = self.mss_offset() else {
            return false;
        };
        let old = self.u16_at(o);
        if old <= max {
            return false;
        }
        self.set_u16(o, max);
        let c = checksum::update(self.checksum(), old, max);
        self.set_u16(16, c);
        true
    }
    fn fill(&mut self, ph: u16) {
        self.set_u16(16, 0);
        let c = !self.sum(ph);
        self.set_u16(16, c);
    }
    /// Computes the checksum over IPv4.
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        let len = self.b().len() as u32;
        self.fill(checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len));
    }
    /// Computes the checksum over IPv6.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let len = self.b().len() as u32;
        self.fill(checksum::pseudo_header_v6(src, dst, ip_proto::TCP, len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A SYN with options MSS 1460, SACK-permitted, timestamps, NOP, window scale 7, as Linux
    /// sends them.
    fn syn() -> Vec<u8> {
        let mut b = vec![
            0xc3, 0x50, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 0xa0, 0x02, 0xfa, 0xf0, 0,
            0, 0, 0,
        ];
        b.extend_from_slice(&[
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ]);
        b
    }

    #[test]
    fn mss_is_found_and_clamped_with_a_correct_checksum() {
        let (s, d) = (
            Ipv4Addr::new(192, 168, 10, 5),
            Ipv4Addr::new(192, 168, 20, 7),
        );
        let mut b = syn();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert!(p.syn() && !p.ack());
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.mss(), Some(1460));
        p.fill_checksum_v4(&s, &d);
        assert!(p.clamp_mss(1360));
        assert_eq!(p.mss(), Some(1360));
        assert!(
            p.verify_checksum_v4(&s, &d),
            "incremental update matches a recompute"
        );
        assert!(!p.clamp_mss(1400), "never raised");
    }

    #[test]
    fn malformed_options_are_ignored() {
        let mut b = syn();
        b[21] = 40; // MSS option claims to run past the header
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.mss(), None);
        b[12] = 0x40; // data offset 16 bytes
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::Malformed));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80), m in any::<u16>()) {
            let mut b = b;
            if let Ok(mut p) = Packet::new_checked(&mut b[..]) {
                let _ = (p.src_port(), p.seq_number(), p.ack_number(), p.fin(), p.rst(), p.window_len());
                let _ = (p.options().len(), p.payload().len(), p.mss());
                p.clamp_mss(m);
            }
        }
    }
}
