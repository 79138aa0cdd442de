//! Ethernet II frames (IEEE 802.3) with up to two 802.1Q/802.1ad tags.

use super::Error;

/// Length of an untagged header.
pub const HEADER_LEN: usize = 14;

/// EtherType values.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ).
    pub const QINQ: u16 = 0x88a8;
}

/// A MAC address.
pub type EthernetAddress = [u8; 6];

/// A view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }
    /// Wraps and checks that the header and any VLAN tags fit.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }
    /// The checks of [`Frame::new_checked`].
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let mut off = 12;
        for _ in 0..2 {
            let t = u16::from_be_bytes([b[off], b[off + 1]]);
            if t != ethertype::VLAN && t != ethertype::QINQ {
                return Ok(());
            }
            off += 4;
            if b.len() < off + 2 {
                return Err(Error::Truncated);
            }
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Destination MAC.
    pub fn dst_addr(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[0..6]);
        a
    }
    /// Source MAC.
    pub fn src_addr(&self) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buffer.as_ref()[6..12]);
        a
    }
    /// Offset of the final EtherType field (after up to two VLAN tags).
    fn type_offset(&self) -> usize {
        let b = self.buffer.as_ref();
        let mut off = 12;
        for _ in 0..2 {
            let t = u16::from_be_bytes([b[off], b[off + 1]]);
            if t != ethertype::VLAN && t != ethertype::QINQ {
                break;
            }
            off += 4;
        }
        off
    }
    /// The EtherType of the payload, looking through VLAN tags.
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        let o = self.type_offset();
        u16::from_be_bytes([b[o], b[o + 1]])
    }
    /// The first VLAN ID, if tagged.
    pub fn vlan(&self) -> Option<u16> {
        let b = self.buffer.as_ref();
        (self.type_offset() > 12).then(|| u16::from_be_bytes([b[14], b[15]]) & 0x0fff)
    }
    /// Where the payload starts.
    pub fn payload_offset(&self) -> usize {
        self.type_offset() + 2
    }
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_offset()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC.
    pub fn set_dst_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[0..6].copy_from_slice(&a);
    }
    /// Sets the source MAC.
    pub fn set_src_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[6..12].copy_from_slice(&a);
    }
    /// Sets the (innermost) EtherType.
    pub fn set_ethertype(&mut self, t: u16) {
        let o = self.type_offset();
        self.buffer.as_mut()[o..o + 2].copy_from_slice(&t.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn untagged_and_tagged() {
        let mut f = [0u8; 22];
        f[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
        let v = Frame::new_checked(&f[..]).unwrap();
        assert_eq!(
            (v.ethertype(), v.payload_offset(), v.vlan()),
            (ethertype::IPV6, 14, None)
        );
        f[12..14].copy_from_slice(&ethertype::VLAN.to_be_bytes());
        f[14..16].copy_from_slice(&0x2064u16.to_be_bytes());
        f[16..18].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        let v = Frame::new_checked(&f[..]).unwrap();
        assert_eq!(
            (v.ethertype(), v.payload_offset(), v.vlan()),
            (ethertype::IPV4, 18, Some(100))
        );
        assert_eq!(Frame::new_checked(&f[..15]).err(), Some(Error::Truncated));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = Frame::new_checked(&b[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.vlan(), f.payload());
            }
        }
    }
}
