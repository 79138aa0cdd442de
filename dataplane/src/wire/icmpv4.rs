//! ICMPv4 (RFC 792), with the fragmentation-needed MTU of RFC 1191.

use super::{checksum, Error};

/// Header length (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// Message types the gateway uses.
pub mod kind {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (code 4: fragmentation needed and DF set).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Destination-unreachable code: fragmentation needed (RFC 1191).
    pub const CODE_FRAG_NEEDED: u8 = 4;
}

/// A view of an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }
    /// Wraps and checks that the header fits.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// The checks of [`Packet::new_checked`].
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn u16_at(&self, i: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[i], b[i + 1]])
    }
    /// Type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// Code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// Checksum.
    pub fn checksum(&self) -> u16 {
        self.u16_at(2)
    }
    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(4)
    }
    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(6)
    }
    /// Next-hop MTU of a fragmentation-needed message (RFC 1191 §4).
    pub fn next_hop_mtu(&self) -> u16 {
        self.u16_at(6)
    }
    /// Data after the header (for errors: the offending IP header and 8+ bytes).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
    /// Verifies the checksum over the whole message.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets type and code.
    pub fn set_type_code(&mut self, t: u8, c: u8) {
        let b = self.buffer.as_mut();
        b[0] = t;
        b[1] = c;
    }
    /// Sets the four rest-of-header bytes (echo ident/seq, or unused + MTU).
    pub fn set_rest(&mut self, hi: u16, lo: u16) {
        let b = self.buffer.as_mut();
        b[4..6].copy_from_slice(&hi.to_be_bytes());
        b[6..8].copy_from_slice(&lo.to_be_bytes());
    }
    /// Data, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
    /// Computes the checksum.
    pub fn fill_checksum(&mut self) {
        let b = self.buffer.as_mut();
        b[2] = 0;
        b[3] = 0;
        let c = !checksum::data(b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn echo_request_from_ping() {
        // An echo request: id 0x1c46, seq 1, 8 bytes of data. RFC 792: the checksum is the
        // ones' complement of the ones' complement sum of the message's 16-bit words.
        let mut b = [8, 0, 0, 0, 0x1c, 0x46, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert_eq!(
            p.checksum(),
            !(0x0800u16 + 0x1c46 + 0x0001 + 0x0001 + 0x0203 + 0x0405 + 0x0607)
        );
        assert!(p.verify_checksum());
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1c46, 1));
        p.set_type_code(kind::DEST_UNREACHABLE, kind::CODE_FRAG_NEEDED);
        p.set_rest(0, 1400);
        assert_eq!(p.next_hop_mtu(), 1400);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident(), p.next_hop_mtu(), p.data(), p.verify_checksum());
            }
        }
    }
}
