//! ARP for IPv4 over Ethernet (RFC 826).

use std::net::Ipv4Addr;

use super::ethernet::EthernetAddress;
use super::Error;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// Request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Who has `target_ip`?
    Request,
    /// `source_ip` is at `source_mac`.
    Reply,
}

/// A view of an ARP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checking.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }
    /// Wraps and checks length and that it is Ethernet/IPv4 ARP (htype 1, ptype 0x0800,
    /// hlen 6, plen 4).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// The checks of [`Packet::new_checked`].
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if b[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
            return Err(Error::Malformed);
        }
        Ok(())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// The operation code (1 request, 2 reply, others possible).
    pub fn oper(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[6], b[7]])
    }
    fn mac(&self, o: usize) -> EthernetAddress {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[o..o + 6]);
        m
    }
    fn ip(&self, o: usize) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3])
    }
    /// Sender hardware address.
    pub fn source_mac(&self) -> EthernetAddress {
        self.mac(8)
    }
    /// Sender protocol address.
    pub fn source_ip(&self) -> Ipv4Addr {
        self.ip(14)
    }
    /// Target hardware address.
    pub fn target_mac(&self) -> EthernetAddress {
        self.mac(18)
    }
    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip(24)
    }
}

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Request or reply.
    pub operation: Operation,
    /// Sender MAC.
    pub source_mac: EthernetAddress,
    /// Sender IP.
    pub source_ip: Ipv4Addr,
    /// Target MAC (zero in requests).
    pub target_mac: EthernetAddress,
    /// Target IP.
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// Reads a checked packet; other operation codes are `Malformed`.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        let operation = match p.oper() {
            1 => Operation::Request,
            2 => Operation::Reply,
            _ => return Err(Error::Malformed),
        };
        Ok(Self {
            operation,
            source_mac: p.source_mac(),
            source_ip: p.source_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        })
    }
    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }
    /// Writes the packet into `b[..28]`.
    pub fn emit(&self, b: &mut [u8]) -> Result<(), Error> {
        let b = b.get_mut(..PACKET_LEN).ok_or(Error::Truncated)?;
        b[0..6].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
        let op: u16 = match self.operation {
            Operation::Request => 1,
            Operation::Reply => 2,
        };
        b[6..8].copy_from_slice(&op.to_be_bytes());
        b[8..14].copy_from_slice(&self.source_mac);
        b[14..18].copy_from_slice(&self.source_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_as_on_the_wire() {
        // Who has 10.0.0.2? Tell 10.0.0.1 (02:00:00:00:00:01), as tcpdump shows it.
        let b = [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
            0x0a, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
        ];
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.operation, Operation::Request);
        assert_eq!(r.source_ip, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.target_ip, Ipv4Addr::new(10, 0, 0, 2));
        let mut out = [0u8; 28];
        r.emit(&mut out).unwrap();
        assert_eq!(out, b);
    }

    proptest! {
        #[test]
        fn round_trip(reply in any::<bool>(), sm in any::<[u8; 6]>(), si in any::<[u8; 4]>(), tm in any::<[u8; 6]>(), ti in any::<[u8; 4]>()) {
            let r = Repr { operation: if reply { Operation::Reply } else { Operation::Request },
                           source_mac: sm, source_ip: si.into(), target_mac: tm, target_ip: ti.into() };
            let mut b = [0u8; 28];
            r.emit(&mut b).unwrap();
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.oper(), p.source_mac(), p.target_mac(), Repr::parse(&p));
            }
        }
    }
}
