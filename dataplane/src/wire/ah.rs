//! AH header (RFC 4302 §2).

use super::Error;

/// Fixed part: next header, payload length, reserved, SPI, sequence number.
pub const FIXED_LEN: usize = 12;

/// A view of an AH header followed by what it protects.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }
    /// Wraps and checks that the header, as long as its length field says, fits.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// The checks of [`Packet::new_checked`].
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < FIXED_LEN {
            return Err(Error::Truncated);
        }
        if self.header_len() < FIXED_LEN {
            return Err(Error::Malformed);
        }
        if self.header_len() > b.len() {
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
    /// Protocol after AH.
    pub fn next_header(&self) -> u8 {
        self.b()[0]
    }
    /// The payload length field (RFC 4302 §2.2: 32-bit words minus 2).
    pub fn payload_len_field(&self) -> u8 {
        self.b()[1]
    }
    /// Header length in bytes: (field + 2) × 4.
    pub fn header_len(&self) -> usize {
        (usize::from(self.payload_len_field()) + 2) * 4
    }
    /// SPI.
    pub fn spi(&self) -> u32 {
        let b = self.b();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }
    /// Sequence number.
    pub fn sequence_number(&self) -> u32 {
        let b = self.b();
        u32::from_be_bytes([b[8], b[9], b[10], b[11]])
    }
    /// ICV field, padding included.
    pub fn icv(&self) -> &[u8] {
        &self.b()[FIXED_LEN..self.header_len()]
    }
    /// What AH protects after its header.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// The ICV field, writable.
    pub fn icv_mut(&mut self) -> &mut [u8] {
        let l = self.header_len();
        &mut self.buffer.as_mut()[FIXED_LEN..l]
    }
    /// Sets the next header.
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[0] = v;
    }
    /// Sets the SPI.
    pub fn set_spi(&mut self, v: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the sequence number.
    pub fn set_sequence_number(&mut self, v: u32) {
        self.buffer.as_mut()[8..12].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hmac_sha256_128_over_ipv6_has_explicit_padding() {
        // 12 fixed + 16 ICV = 28, padded to 32 for IPv6: payload length field 6.
        let mut b = [0u8; 40];
        b[0] = 6;
        b[1] = 6;
        b[4..8].copy_from_slice(&0x1001u32.to_be_bytes());
        b[8..12].copy_from_slice(&7u32.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.header_len(), p.icv().len(), p.payload().len()),
            (32, 20, 8)
        );
        assert_eq!(
            (p.spi(), p.sequence_number(), p.next_header()),
            (0x1001, 7, 6)
        );
        b[1] = 20;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::Truncated));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.next_header(), p.spi(), p.sequence_number(), p.icv(), p.payload());
            }
        }
    }
}
