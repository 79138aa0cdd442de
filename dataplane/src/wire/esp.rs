//! ESP header (RFC 4303 §2): SPI and sequence number; the rest is opaque until decrypted.

use super::Error;

/// SPI + sequence number.
pub const HEADER_LEN: usize = 8;

/// A view of an ESP packet.
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
    /// Security parameter index.
    pub fn spi(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Sequence number (low 32 bits with ESN).
    pub fn sequence_number(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }
    /// Everything after the header: IV, ciphertext, ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the SPI.
    pub fn set_spi(&mut self, v: u32) {
        self.buffer.as_mut()[0..4].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the sequence number.
    pub fn set_sequence_number(&mut self, v: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&v.to_be_bytes());
    }
}

/// The ESP header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// SPI.
    pub spi: u32,
    /// Sequence number.
    pub sequence_number: u32,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            spi: p.spi(),
            sequence_number: p.sequence_number(),
        }
    }
    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the header into `b[..8]`.
    pub fn emit(&self, b: &mut [u8]) -> Result<(), Error> {
        let h = b.get_mut(..HEADER_LEN).ok_or(Error::Truncated)?;
        h[..4].copy_from_slice(&self.spi.to_be_bytes());
        h[4..].copy_from_slice(&self.sequence_number.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mcgrew_gcm_test_01_case_2_header() {
        // draft-mcgrew-gcm-test-01 packet 2's ESP header: SPI 0x0000a5f8, sequence 10.
        let b = [0x00, 0x00, 0xa5, 0xf8, 0x00, 0x00, 0x00, 0x0a, 0xfa, 0xce];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Repr::parse(&p),
            Repr {
                spi: 0xa5f8,
                sequence_number: 10
            }
        );
        assert_eq!(p.payload(), &[0xfa, 0xce]);
        assert_eq!(Packet::new_checked(&b[..7]).err(), Some(Error::Truncated));
    }

    proptest! {
        #[test]
        fn round_trip(spi in any::<u32>(), seq in any::<u32>()) {
            let r = Repr { spi, sequence_number: seq };
            let mut b = [0u8; 8];
            r.emit(&mut b).unwrap();
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), r);
        }
    }
}
