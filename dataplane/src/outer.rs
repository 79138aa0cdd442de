//! The outer side of IPsec: recognising ESP/AH packets (plain or UDP-encapsulated) and filling
//! in outer headers. Shared by [`crate::esp`] and [`crate::ah`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::drop::DropReason;
use crate::wire::{checksum, ip_proto, udp_encap};

/// ESP or AH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecProto {
    /// RFC 4303.
    Esp,
    /// RFC 4302.
    Ah,
}

/// Where the security header sits in an IPsec packet, as found by [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// ESP or AH.
    pub proto: SecProto,
    /// The SPI on the wire.
    pub spi: u32,
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address (the SAD key with the SPI).
    pub dst: IpAddr,
    /// Offset of the ESP or AH header in the IP packet.
    pub sec_off: usize,
    /// Offset of the byte naming the protocol after the IP headers (IPv4: 9; IPv6: the last
    /// extension header's next-header byte, or 6).
    pub nh_pos: usize,
    /// Length of the IP header and the extension headers before the security header (or
    /// before the UDP header when encapsulated).
    pub ip_hdr_len: usize,
    /// The IP packet's length by its own header; bytes after it are link padding.
    pub ip_len: usize,
    /// UDP source and destination ports when ESP is UDP-encapsulated (RFC 3948).
    pub udp: Option<(u16, u16)>,
    /// The outer ECN field (RFC 6040 decapsulation needs it).
    pub ecn: u8,
}

/// What an arriving packet on the outside is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// ESP or AH for the SAD.
    Ipsec(Outer),
    /// IKE on UDP 500, or on the NAT-T port after the non-ESP marker (RFC 3948 §2.2): for the
    /// control plane.
    Ike,
    /// A NAT-keepalive (RFC 3948 §2.3): consumed.
    NatKeepalive,
    /// Anything else: plain traffic for the inbound SPD.
    Clear,
}

/// Classifies an IP packet arriving from the outside. `natt_port(p)` says whether UDP
/// destination port `p` carries UDP-encapsulated ESP (normally only 4500).
pub fn classify(ip: &[u8], natt_port: impl Fn(u16) -> bool) -> Result<Arrival, DropReason> {
    let (src, dst, proto, l4_off, nh_pos, ip_len, ecn, fragment) = ip_headers(ip)?;
    let (proto, sec_off, udp) = match proto {
        ip_proto::ESP => (SecProto::Esp, l4_off, None),
        ip_proto::AH => (SecProto::Ah, l4_off, None),
        ip_proto::UDP => {
            let u = ip.get(l4_off..ip_len).ok_or(DropReason::Malformed)?;
            if u.len() < 8 {
                return if fragment {
                    Err(DropReason::OuterFragment)
                } else {
                    Err(DropReason::Malformed)
                };
            }
            let sport = u16::from_be_bytes([u[0], u[1]]);
            let dport = u16::from_be_bytes([u[2], u[3]]);
            if dport == udp_encap::IKE_PORT {
                return Ok(Arrival::Ike);
            }
            if !natt_port(dport) {
                return Ok(Arrival::Clear);
            }
            match udp_encap::classify(&u[8..]).map_err(|_| DropReason::BadUdpEncap)? {
                udp_encap::Classified::Ike => return Ok(Arrival::Ike),
                udp_encap::Classified::Keepalive => return Ok(Arrival::NatKeepalive),
                udp_encap::Classified::Esp => (SecProto::Esp, l4_off + 8, Some((sport, dport))),
            }
        }
        _ => return Ok(Arrival::Clear),
    };
    if fragment {
        return Err(DropReason::OuterFragment);
    }
    let sec = ip.get(sec_off..ip_len).ok_or(DropReason::Malformed)?;
    let spi = match proto {
        SecProto::Esp if sec.len() >= 8 => u32::from_be_bytes([sec[0], sec[1], sec[2], sec[3]]),
        SecProto::Ah if sec.len() >= 12 => u32::from_be_bytes([sec[4], sec[5], sec[6], sec[7]]),
        _ => return Err(DropReason::BadLength),
    };
    Ok(Arrival::Ipsec(Outer {
        proto,
        spi,
        src,
        dst,
        sec_off,
        nh_pos,
        ip_hdr_len: l4_off,
        ip_len,
        udp,
        ecn,
    }))
}

type Headers = (IpAddr, IpAddr, u8, usize, usize, usize, u8, bool);

/// Walks the IP header (and IPv6 extension headers) up to the first header that is not an
/// IP extension: returns addresses, that protocol, its offset, the position of the byte that
/// names it, the IP length, the ECN field and whether the packet is a fragment.
#[inline(always)]
pub(crate) fn ip_headers(ip: &[u8]) -> Result<Headers, DropReason> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            if ip.len() < 20 {
                return Err(DropReason::Malformed);
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ihl < 20 || total < ihl || total > ip.len() {
                return Err(DropReason::Malformed);
            }
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            let fragment = frag & 0x3fff != 0; // MF or a non-zero offset
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            Ok((
                src.into(),
                dst.into(),
                ip[9],
                ihl,
                9,
                total,
                ip[1] & 3,
                fragment,
            ))
        }
        Some(6) => {
            if ip.len() < 40 {
                return Err(DropReason::Malformed);
            }
            let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if total > ip.len() {
                return Err(DropReason::Malformed);
            }
            let ecn = (ip[1] >> 4) & 3;
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            let src = Ipv6Addr::from(a);
            a.copy_from_slice(&ip[24..40]);
            let dst = Ipv6Addr::from(a);
            let (proto, off, nh_pos, fragment) = v6_walk(ip, total, |_, _| true)?;
            Ok((
                src.into(),
                dst.into(),
                proto,
                off,
                nh_pos,
                total,
                ecn,
                fragment,
            ))
        }
        _ => Err(DropReason::NotIp),
    }
}

/// Walks IPv6 extension headers while `go_on(next_header, its offset)` says so and the
/// header is an extension (hop-by-hop, routing, fragment, destination options). Bounded: at
/// most 8 headers.
pub(crate) fn v6_walk(
    ip: &[u8],
    total: usize,
    go_on: impl Fn(u8, usize) -> bool,
) -> Result<(u8, usize, usize, bool), DropReason> {
    let mut nh = *ip.get(6).ok_or(DropReason::Malformed)?;
    let mut nh_pos = 6;
    let mut off = 40;
    let mut fragment = false;
    for _ in 0..8 {
        let len = match nh {
            ip_proto::HOPOPT | ip_proto::ROUTING | ip_proto::DSTOPTS if go_on(nh, off) => {
                let l = *ip.get(off + 1).ok_or(DropReason::Malformed)?;
                (usize::from(l) + 1) * 8
            }
            ip_proto::FRAGMENT if go_on(nh, off) => {
                let b = ip.get(off..off + 8).ok_or(DropReason::Malformed)?;
                let f = u16::from_be_bytes([b[2], b[3]]);
                // Offset or M flag set; the two reserved bits are "ignored on reception"
                // (RFC 8200 §4.5), so with only those set it is an atomic fragment.
                if f & 0xfff9 != 0 {
                    fragment = true;
                }
                if f & 0xfff8 != 0 {
                    // A later fragment: what follows its header is the middle of the
                    // datagram, not more headers (they are in the first fragment).
                    if off + 8 > total {
                        return Err(DropReason::Malformed);
                    }
                    return Ok((b[0], off + 8, off, true));
                }
                8
            }
            _ => return Ok((nh, off, nh_pos, fragment)),
        };
        if off + len > total {
            return Err(DropReason::Malformed);
        }
        nh_pos = off;
        nh = ip[off];
        off += len;
    }
    Err(DropReason::Malformed)
}

/// Fills the length and checksum of an outer IPv4 header at `ip[..20]` (total length `len`).
#[inline]
pub(crate) fn finish_v4(ip: &mut [u8], len: usize, ident: u16) {
    ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&ident.to_be_bytes());
    refresh_v4_checksum(ip);
}

/// Recomputes an IPv4 header checksum in place.
#[inline]
pub(crate) fn refresh_v4_checksum(ip: &mut [u8]) {
    ip[10] = 0;
    ip[11] = 0;
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let c = if hl == 20 {
        // The common option-less header: five 32-bit words, summed without a loop.
        let w = |i: usize| u64::from(u32::from_be_bytes([ip[i], ip[i + 1], ip[i + 2], ip[i + 3]]));
        let mut sum = w(0) + w(4) + w(8) + w(12) + w(16);
        sum = (sum & 0xffff_ffff) + (sum >> 32);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        !(sum as u16)
    } else {
        !checksum::data(&ip[..hl])
    };
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Fills a UDP header at `ip[off..off+8]` for encapsulated ESP. IPv4 uses a zero checksum
/// (RFC 3948 §2.1); IPv6 must have a real one (RFC 8200 §8.1).
pub(crate) fn finish_udp(ip: &mut [u8], off: usize, v6: bool) {
    let ulen = ip.len() - off;
    ip[off + 4..off + 6].copy_from_slice(&(ulen as u16).to_be_bytes());
    ip[off + 6] = 0;
    ip[off + 7] = 0;
    if v6 {
        let mut s = [0u8; 16];
        s.copy_from_slice(&ip[8..24]);
        let mut d = [0u8; 16];
        d.copy_from_slice(&ip[24..40]);
        let ph = checksum::pseudo_header_v6(
            &Ipv6Addr::from(s),
            &Ipv6Addr::from(d),
            ip_proto::UDP,
            ulen as u32,
        );
        let mut c = !checksum::combine(&[ph, checksum::data(&ip[off..])]);
        if c == 0 {
            c = 0xffff;
        }
        ip[off + 6..off + 8].copy_from_slice(&c.to_be_bytes());
    }
}

/// Traffic class (DSCP << 2 | ECN) of an IPv4 or IPv6 header.
#[inline]
pub(crate) fn traffic_class(ip: &[u8]) -> u8 {
    if ip[0] >> 4 == 4 {
        ip[1]
    } else {
        (ip[0] << 4) | (ip[1] >> 4)
    }
}

/// Sets the traffic class of an IPv4 (checksum not updated) or IPv6 header.
#[inline]
pub(crate) fn set_traffic_class(ip: &mut [u8], tc: u8) {
    if ip[0] >> 4 == 4 {
        ip[1] = tc;
    } else {
        ip[0] = (ip[0] & 0xf0) | (tc >> 4);
        ip[1] = (ip[1] & 0x0f) | (tc << 4);
    }
}

/// RFC 6040 §4.2 decapsulation: the inner ECN field after leaving a tunnel whose outer
/// field was `outer`, or `None` when the packet must be dropped.
#[inline]
pub(crate) fn ecn_decap(inner: u8, outer: u8) -> Option<u8> {
    const NOT_ECT: u8 = 0;
    const ECT1: u8 = 1;
    const ECT0: u8 = 2;
    const CE: u8 = 3;
    match (inner, outer) {
        (NOT_ECT, CE) => None,
        (NOT_ECT, _) => Some(NOT_ECT),
        (_, CE) => Some(CE),
        (ECT0, ECT1) => Some(ECT1),
        (i, _) => Some(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6040_decap_table() {
        // RFC 6040 Figure 4: rows are inner, columns outer Not-ECT, ECT(0), ECT(1), CE.
        let table: [(u8, [Option<u8>; 4]); 4] = [
            (0, [Some(0), Some(0), Some(0), None]),
            (2, [Some(2), Some(2), Some(1), Some(3)]),
            (1, [Some(1), Some(1), Some(1), Some(3)]),
            (3, [Some(3), Some(3), Some(3), Some(3)]),
        ];
        let outers = [0u8, 2, 1, 3];
        for (inner, row) in table {
            for (o, want) in outers.iter().zip(row) {
                assert_eq!(ecn_decap(inner, *o), want, "inner {inner} outer {o}");
            }
        }
    }

    #[test]
    fn classify_never_panics_on_short_input() {
        for n in 0..80 {
            let mut b = vec![0u8; n];
            if n > 0 {
                b[0] = 0x45;
            }
            let _ = classify(&b, |p| p == 4500);
            if n > 0 {
                b[0] = 0x60;
            }
            let _ = classify(&b, |p| p == 4500);
        }
    }
}
