//! Flow keys: the 5-tuple an SPD looks up, pulled out of an IP packet.

use std::net::IpAddr;

use crate::drop::DropReason;
use crate::spd::FlowKey;
use crate::wire::{ip_proto, ipv4, ipv6};

/// IP version of the packet starting at `ip[0]`, if it is 4 or 6.
#[inline]
pub fn ip_version(ip: &[u8]) -> Option<u8> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => Some(4),
        Some(6) => Some(6),
        _ => None,
    }
}

/// The selector fields of an IP packet (RFC 4301 §4.4.1.1).
///
/// Ports come from TCP/UDP/SCTP headers; for ICMP and ICMPv6 the type goes in `src_port` and the
/// code in `dst_port`. Non-first fragments and packets whose transport header is cut off carry
/// ports 0 ("OPAQUE" in RFC 4301 terms), which only ANY port selectors match.
pub fn flow_key(ip: &[u8]) -> Result<FlowKey, DropReason> {
    match ip_version(ip) {
        Some(4) => {
            let p = ipv4::Packet::new_checked(ip).map_err(|_| DropReason::Malformed)?;
            let proto = p.next_header();
            let first_fragment = p.frag_offset() == 0;
            let (src_port, dst_port) = if first_fragment {
                ports(proto, p.payload())
            } else {
                (0, 0)
            };
            Ok(FlowKey {
                src: IpAddr::V4(p.src_addr()),
                dst: IpAddr::V4(p.dst_addr()),
                proto,
                src_port,
                dst_port,
            })
        }
        Some(6) => {
            let p = ipv6::Packet::new_checked(ip).map_err(|_| DropReason::Malformed)?;
            let (proto, off, non_first_frag) =
                p.upper_layer().map_err(|_| DropReason::Malformed)?;
            let (src_port, dst_port) = if non_first_frag {
                (0, 0)
            } else {
                let end = ipv6::HEADER_LEN + usize::from(p.payload_len());
                ports(proto, ip.get(off..end.min(ip.len())).unwrap_or(&[]))
            };
            Ok(FlowKey {
                src: IpAddr::V6(p.src_addr()),
                dst: IpAddr::V6(p.dst_addr()),
                proto,
                src_port,
                dst_port,
            })
        }
        _ => Err(DropReason::NotIp),
    }
}

fn ports(proto: u8, l4: &[u8]) -> (u16, u16) {
    const SCTP: u8 = 132;
    match proto {
        ip_proto::TCP | ip_proto::UDP | SCTP if l4.len() >= 4 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        ip_proto::ICMP | ip_proto::ICMPV6 if l4.len() >= 2 => (u16::from(l4[0]), u16::from(l4[1])),
        _ => (0, 0),
    }
}
