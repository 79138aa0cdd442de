//! The gateway's own manners, as pure in-place transforms of a received frame: answering ARP
//! for its addresses, answering ICMP echo, decrementing TTL / hop limit when forwarding, and
//! clamping the TCP MSS of SYNs that enter a tunnel. No I/O: the caller sends what they return.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::drop::DropReason;
use crate::wire::{arp, checksum, ethernet, icmpv4, icmpv6, ip_proto, ipv4, ipv6, tcp};

/// Turns an ARP request for one of `ours` into the reply, in place (Ethernet header included).
/// Returns false (frame untouched) for anything else.
pub fn arp_reply(frame: &mut [u8], ours: &[Ipv4Addr], our_mac: [u8; 6]) -> bool {
    arp_reply_if(frame, |ip| ours.contains(&ip), our_mac)
}

/// [`arp_reply`] for the addresses `is_ours` accepts (VRRP: the virtual addresses while
/// master).
pub fn arp_reply_if(
    frame: &mut [u8],
    is_ours: impl Fn(Ipv4Addr) -> bool,
    our_mac: [u8; 6],
) -> bool {
    let Ok(f) = ethernet::Frame::new_checked(&frame[..]) else {
        return false;
    };
    if f.ethertype() != ethernet::ethertype::ARP {
        return false;
    }
    let off = f.payload_offset();
    let Some(body) = frame.get(off..) else {
        return false;
    };
    let Ok(p) = arp::Packet::new_checked(body) else {
        return false;
    };
    let Ok(req) = arp::Repr::parse(&p) else {
        return false;
    };
    if req.operation != arp::Operation::Request || !is_ours(req.target_ip) {
        return false;
    }
    let reply = arp::Repr {
        operation: arp::Operation::Reply,
        source_mac: our_mac,
        source_ip: req.target_ip,
        target_mac: req.source_mac,
        target_ip: req.source_ip,
    };
    if reply.emit(&mut frame[off..]).is_err() {
        return false;
    }
    frame[..6].copy_from_slice(&req.source_mac);
    frame[6..12].copy_from_slice(&our_mac);
    true
}

/// Turns an ICMP echo request to one of `ours` (IPv4, the IP packet in `ip`) into the echo
/// reply in place (addresses swapped, TTL 64, checksums fixed). Returns false otherwise.
pub fn icmp_echo_reply(ip: &mut [u8], ours: &[Ipv4Addr]) -> bool {
    icmp_echo_reply_if(ip, |a| ours.contains(&a))
}

/// [`icmp_echo_reply`] for the addresses `is_ours` accepts.
pub fn icmp_echo_reply_if(ip: &mut [u8], is_ours: impl Fn(Ipv4Addr) -> bool) -> bool {
    let Ok(p) = ipv4::Packet::new_checked(&ip[..]) else {
        return false;
    };
    if p.next_header() != ip_proto::ICMP
        || !is_ours(p.dst_addr())
        || p.frag_offset() != 0
        || p.more_frags()
    {
        return false;
    }
    let (src, dst, hl, total) = (
        p.src_addr(),
        p.dst_addr(),
        p.header_len(),
        usize::from(p.total_len()),
    );
    let Some(icmp) = ip.get(hl..total) else {
        return false;
    };
    let Ok(m) = icmpv4::Packet::new_checked(icmp) else {
        return false;
    };
    if m.msg_type() != icmpv4::kind::ECHO_REQUEST || m.msg_code() != 0 || !m.verify_checksum() {
        return false;
    }
    let mut p = ipv4::Packet::new_unchecked(&mut ip[..]);
    p.set_src_addr(dst);
    p.set_dst_addr(src);
    p.set_hop_limit(64);
    p.fill_checksum();
    let mut m = icmpv4::Packet::new_unchecked(&mut ip[hl..total]);
    m.set_type_code(icmpv4::kind::ECHO_REPLY, 0);
    m.fill_checksum();
    true
}

/// [`icmp_echo_reply_if`] for IPv6: an ICMPv6 echo request (RFC 4443 §4.1) right after the
/// fixed header, to one of the addresses `is_ours` accepts, becomes the echo reply in place
/// (addresses swapped, hop limit 64, checksum over the new pseudo-header). Returns false
/// otherwise (another message, a bad checksum, extension headers, a short packet).
pub fn icmpv6_echo_reply_if(ip: &mut [u8], is_ours: impl Fn(Ipv6Addr) -> bool) -> bool {
    if ip.len() < 40 || ip[0] >> 4 != 6 || ip[6] != ip_proto::ICMPV6 {
        return false;
    }
    let addr = |o: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[o..o + 16]);
        Ipv6Addr::from(a)
    };
    let (src, dst) = (addr(8), addr(24));
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if !is_ours(dst) || src.is_multicast() || src.is_unspecified() {
        return false;
    }
    let Some(body) = ip.get(40..40 + plen) else {
        return false;
    };
    let Ok(m) = icmpv6::Packet::new_checked(body) else {
        return false;
    };
    if m.msg_type() != icmpv6::kind::ECHO_REQUEST || body[1] != 0 || !m.verify_checksum(&src, &dst)
    {
        return false;
    }
    ip[8..24].copy_from_slice(&dst.octets());
    ip[24..40].copy_from_slice(&src.octets());
    ip[7] = 64;
    let mut m = icmpv6::Packet::new_unchecked(&mut ip[40..40 + plen]);
    m.set_type_code(icmpv6::kind::ECHO_REPLY, 0);
    m.fill_checksum(&dst, &src);
    true
}

/// Whether the IP packet `ip` may go on: false only for an IPv4 header, whole and of a valid
/// length, whose checksum does not verify (RFC 1812 §5.2.2: a router "MUST verify the IP
/// checksum of any packet that is received"). Anything else is for later stages to judge.
pub fn ipv4_checksum_ok(ip: &[u8]) -> bool {
    if ip.first().map(|b| b >> 4) != Some(4) {
        return true;
    }
    let hl = usize::from(ip[0] & 0x0f) * 4;
    match ip.get(..hl) {
        Some(h) if hl >= 20 => checksum::data(h) == 0xffff,
        _ => true,
    }
}

/// A router's TTL / hop-limit decrement (RFC 1812 §5.3.1, RFC 8200 §3), with the IPv4 checksum
/// updated incrementally (RFC 1624). Packets that would leave with TTL 0 are refused.
pub fn decrement_ttl(ip: &mut [u8]) -> Result<(), DropReason> {
    match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => {
            let ttl = ip[8];
            if ttl <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            let old = u16::from_be_bytes([ip[8], ip[9]]);
            ip[8] = ttl - 1;
            let new = u16::from_be_bytes([ip[8], ip[9]]);
            let c = checksum::update(u16::from_be_bytes([ip[10], ip[11]]), old, new);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            Ok(())
        }
        Some(6) if ip.len() >= 40 => {
            if ip[7] <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            ip[7] -= 1;
            Ok(())
        }
        _ => Err(DropReason::NotIp),
    }
}

/// Undoes [`decrement_ttl`] on `ip`, which may be only the start of the packet (a quote): the
/// TTL / hop limit one higher and, for IPv4, the header checksum updated incrementally (RFC
/// 1624), so a header that was received with a valid checksum gets that checksum back. For the
/// ICMP errors about a forwarded packet, which quote it as it was received (RFC 1812
/// §4.3.2.3). False (nothing changed) where there is no such header, or the TTL is already 255
/// (not one [`decrement_ttl`] wrote).
pub fn undo_ttl_decrement(ip: &mut [u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 12 => {
            let Some(ttl) = ip[8].checked_add(1) else {
                return false;
            };
            let old = u16::from_be_bytes([ip[8], ip[9]]);
            ip[8] = ttl;
            let new = u16::from_be_bytes([ip[8], ip[9]]);
            let c = checksum::update(u16::from_be_bytes([ip[10], ip[11]]), old, new);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            true
        }
        Some(6) if ip.len() >= 8 => match ip[7].checked_add(1) {
            Some(hlim) => {
                ip[7] = hlim;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// Lowers the MSS option of a TCP SYN in the IP packet `ip` to `max` (RFC 879, RFC 6691: what
/// fits in the tunnel). Returns whether the packet changed.
pub fn clamp_syn_mss(ip: &mut [u8], max: u16) -> bool {
    let (proto, l4, end) = match ip.first().map(|b| b >> 4) {
        Some(4) => match ipv4::Packet::new_checked(&ip[..]) {
            Ok(p) if p.frag_offset() == 0 => {
                (p.next_header(), p.header_len(), usize::from(p.total_len()))
            }
            _ => return false,
        },
        Some(6) => match ipv6::Packet::new_checked(&ip[..]) {
            Ok(p) => match p.upper_layer() {
                Ok((proto, off, false)) => {
                    (proto, off, ipv6::HEADER_LEN + usize::from(p.payload_len()))
                }
                _ => return false,
            },
            Err(_) => return false,
        },
        _ => return false,
    };
    if proto != ip_proto::TCP {
        return false;
    }
    let Some(seg) = ip.get_mut(l4..end) else {
        return false;
    };
    match tcp::Packet::new_checked(seg) {
        Ok(mut t) if t.syn() => t.clamp_mss(max),
        _ => false,
    }
}

/// The IPv4 addresses among `addrs`.
pub fn v4_addrs(addrs: impl IntoIterator<Item = IpAddr>) -> Vec<Ipv4Addr> {
    addrs
        .into_iter()
        .filter_map(|a| match a {
            IpAddr::V4(v) => Some(v),
            IpAddr::V6(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksums_are_verified() {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[8] = 64;
        p[9] = ip_proto::UDP;
        p[12..16].copy_from_slice(&[192, 168, 10, 5]);
        p[16..20].copy_from_slice(&[192, 168, 20, 5]);
        let c = !checksum::data(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(ipv4_checksum_ok(&p));
        for i in 0..20 {
            let mut bad = p.clone();
            bad[i] ^= 0x10;
            if i == 0 {
                continue; // another header length: for later stages
            }
            assert!(!ipv4_checksum_ok(&bad), "byte {i}");
        }
        // Not IPv4, or not a whole header: not this check's to refuse.
        assert!(ipv4_checksum_ok(&[0x60; 40]));
        assert!(ipv4_checksum_ok(&p[..12]));
        assert!(ipv4_checksum_ok(&[]));
    }

    #[test]
    fn arp_request_for_us_becomes_the_reply() {
        // Who has 10.0.0.1? Tell 10.0.0.2 (02:..:02), broadcast.
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x06]);
        f.extend_from_slice(&[
            0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1,
        ]);
        let ours = [Ipv4Addr::new(10, 0, 0, 1)];
        let mac = [2, 0, 0, 0, 0, 1];
        let mut other = f.clone();
        other[41] = 9; // for 10.0.0.9
        assert!(!arp_reply(&mut other, &ours, mac));
        assert!(arp_reply(&mut f, &ours, mac));
        assert_eq!(&f[..12], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        let r = arp::Repr::parse(&arp::Packet::new_checked(&f[14..]).unwrap()).unwrap();
        assert_eq!(r.operation, arp::Operation::Reply);
        assert_eq!((r.source_mac, r.source_ip), (mac, ours[0]));
        assert_eq!(r.target_ip, Ipv4Addr::new(10, 0, 0, 2));
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn an_icmpv6_echo_request_for_us_becomes_scapy_s_reply() {
        // scapy: IPv6(src=2001:db8:113::9, dst=2001:db8:113::1, hlim=64) /
        // ICMPv6EchoRequest(id=0x1234, seq=7, data=b"ferrogate"), and its EchoReply back.
        let req = unhex("6000000000113a4020010db801130000000000000000000920010db80113000000000000000000018000012312340007666572726f67617465");
        let reply = unhex("6000000000113a4020010db801130000000000000000000120010db80113000000000000000000098100002312340007666572726f67617465");
        let us: Ipv6Addr = "2001:db8:113::1".parse().unwrap();
        let mut p = req.clone();
        assert!(!icmpv6_echo_reply_if(&mut p, |a| a != us));
        assert_eq!(p, req);
        assert!(icmpv6_echo_reply_if(&mut p, |a| a == us));
        assert_eq!(p, reply);
        // A bad checksum, a reply, or a cut packet is left alone.
        let mut bad = req.clone();
        bad[50] ^= 1;
        assert!(!icmpv6_echo_reply_if(&mut bad, |a| a == us));
        let mut r = reply.clone();
        assert!(!icmpv6_echo_reply_if(&mut r, |_| true));
        for n in 0..req.len() {
            let mut cut = req[..n].to_vec();
            assert!(!icmpv6_echo_reply_if(&mut cut, |a| a == us));
        }
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_right() {
        let r = ipv4::Repr {
            src_addr: Ipv4Addr::new(1, 2, 3, 4),
            dst_addr: Ipv4Addr::new(5, 6, 7, 8),
            next_header: 17,
            payload_len: 0,
            hop_limit: 2,
            dscp: 0,
            ecn: 0,
            dont_frag: true,
            ident: 7,
        };
        let mut b = [0u8; 20];
        r.emit(&mut b).unwrap();
        decrement_ttl(&mut b).unwrap();
        assert_eq!(b[8], 1);
        assert!(ipv4::Packet::new_checked(&b[..]).unwrap().verify_checksum());
        assert_eq!(decrement_ttl(&mut b), Err(DropReason::TtlExceeded));
    }

    /// Undoing the decrement gives back the header as received, checksum included, for every
    /// TTL a decrement can leave and a spread of header contents; IPv6 likewise.
    #[test]
    fn ttl_decrement_undone_gives_back_the_received_header() {
        for ttl in 2..=255u8 {
            for ident in [0u16, 1, 0x1234, 0xbeef, 0xffff] {
                let r = ipv4::Repr {
                    src_addr: Ipv4Addr::new(192, 168, 10, ttl),
                    dst_addr: Ipv4Addr::new(5, 6, 7, 8),
                    next_header: 17,
                    payload_len: 8,
                    hop_limit: ttl,
                    dscp: 0,
                    ecn: 0,
                    dont_frag: ident % 2 == 0,
                    ident,
                };
                let mut b = [0u8; 28];
                r.emit(&mut b).unwrap();
                let received = b;
                decrement_ttl(&mut b).unwrap();
                assert!(undo_ttl_decrement(&mut b));
                assert_eq!(b, received, "ttl {ttl} ident {ident:#x}");
                assert!(ipv4::Packet::new_checked(&b[..]).unwrap().verify_checksum());
                // A quote cut after the checksum field is enough.
                decrement_ttl(&mut b).unwrap();
                assert!(undo_ttl_decrement(&mut b[..12]));
                assert_eq!(b, received);
            }
        }
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[7] = 64;
        decrement_ttl(&mut v6).unwrap();
        assert!(undo_ttl_decrement(&mut v6));
        assert_eq!(v6[7], 64);
        // Nothing to undo: a TTL of 255, no IP header.
        let mut top = [0x45u8; 20];
        top[8] = 255;
        let want = top;
        assert!(!undo_ttl_decrement(&mut top));
        assert_eq!(top, want);
        assert!(!undo_ttl_decrement(&mut [0x45, 0, 0]));
        assert!(!undo_ttl_decrement(&mut []));
    }
}
