//! The ICMP errors a gateway owes the hosts it forwards for, and IPv4 fragmentation before
//! encapsulation. Pure functions over caller-owned buffers: the caller picks the buffer (an
//! mbuf, a stack array), sends what comes back, and counts what does not.
//!
//! - Time exceeded in transit (RFC 792; RFC 4443 §3.3) when the TTL / hop limit runs out.
//! - Fragmentation needed with the next-hop MTU (RFC 792, RFC 1191 §4) / packet too big
//!   (RFC 4443 §3.2) when a packet cannot go on whole: RFC 4301 §8.2.1 has the gateway report
//!   the tunnel's PMTU to the host that sent it.
//! - Fragmentation of inner IPv4 packets without DF before encapsulation (RFC 4301 §8.1
//!   "pre-fragmentation"; RFC 791 §3.2 for the fragments themselves).
//! - When not to send an error at all (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e)), and a token
//!   bucket (RFC 1812 §4.3.2.8, RFC 4443 §2.4 (f)) for how many to send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::drop::DropReason;
use crate::wire::{icmpv4, icmpv6, ip_proto, ipv4, ipv6};

/// RFC 1812 §4.3.2.3: an ICMPv4 error carries as much of the original datagram as fits in
/// 576 bytes.
pub const V4_ERROR_MAX: usize = 576;
/// RFC 4443 §2.4 (c): an ICMPv6 error is at most the minimum IPv6 MTU.
pub const V6_ERROR_MAX: usize = 1280;
/// RFC 8200 §5: the minimum IPv6 MTU, the least a packet-too-big may report.
pub const V6_MIN_MTU: u32 = 1280;
/// RFC 791: every IPv4 host takes 68-byte datagrams unfragmented; no smaller MTU is reported.
pub const V4_MIN_MTU: u16 = 68;

/// The least path MTU taken from a Fragmentation Needed about our IPv4 ESP: smaller reports
/// are raised to it (Linux's `min_pmtu` is 552), so that a forged one cannot make every packet
/// of a tunnel tiny.
pub const V4_MIN_PMTU: u16 = 576;

/// Which error to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// TTL / hop limit exceeded in transit (ICMPv4 11/0, ICMPv6 3/0).
    TimeExceeded,
    /// The packet does not fit: ICMPv4 3/4 with this next-hop MTU, or ICMPv6 2/0 with it
    /// (raised to 1280).
    TooBig {
        /// The largest packet that goes on whole.
        mtu: u16,
    },
}

/// What to do with a packet longer than the path allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// It fits.
    Fits,
    /// IPv4 without DF: cut it into fragments of at most this many bytes.
    Fragment(u16),
    /// IPv4 with DF, or IPv6: drop it and send [`Error::TooBig`] with this MTU.
    TooBig(u16),
}

/// Decides between forwarding, fragmenting and refusing an IP packet of `ip.len()` bytes
/// (its IP length; link padding is not counted) on a path that takes `max` bytes.
pub fn oversize(ip: &[u8], max: u16) -> Oversize {
    let len = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 4 => usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        Some(6) if ip.len() >= 6 => 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])),
        _ => return Oversize::Fits,
    };
    if len <= usize::from(max) {
        return Oversize::Fits;
    }
    let df = ip[0] >> 4 == 4 && ip.len() >= 7 && ip[6] & 0x40 != 0;
    // A path below 68 bytes cannot carry fragments with 8 bytes of data each: refuse instead.
    if ip[0] >> 4 == 4 && !df && max >= V4_MIN_MTU {
        Oversize::Fragment(max)
    } else {
        Oversize::TooBig(max)
    }
}

/// Whether `ip` is an IPv6 packet of at most IPv6's minimum MTU (1280 bytes): one every link,
/// a tunnel included, must carry, fragmenting below the IP layer if it has to (RFC 8200 §5).
#[inline]
pub fn v6_minimum(ip: &[u8]) -> bool {
    ip.len() >= 6
        && ip[0] >> 4 == 6
        && 40 + u32::from(u16::from_be_bytes([ip[4], ip[5]])) <= V6_MIN_MTU
}

/// Whether an ICMP error may be sent about the IP packet `ip`: not about ICMP errors or ICMPv6
/// redirects, about non-first fragments, about packets to multicast or broadcast addresses,
/// or about packets whose source is not one host: for IPv4 also the "invalid source
/// addresses" of RFC 1812 §5.3.7, network 0 and class E (RFC 1812 §4.3.2.7, RFC 4443
/// §2.4 (e)).
pub fn may_report(ip: &[u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(p) = ipv4::Packet::new_checked(ip) else {
                return false;
            };
            let (src, dst) = (p.src_addr(), p.dst_addr());
            let one_host = |a: Ipv4Addr| {
                let first = a.octets()[0];
                !(first == 0 || first >= 240 || a.is_multicast() || a.is_loopback())
            };
            if p.frag_offset() != 0 || !one_host(src) || dst.is_multicast() || dst.is_broadcast() {
                return false;
            }
            p.next_header() != ip_proto::ICMP
                || p.payload().first().is_some_and(|t| !is_icmpv4_error(*t))
        }
        Some(6) => {
            let Ok(p) = ipv6::Packet::new_checked(ip) else {
                return false;
            };
            let (src, dst) = (p.src_addr(), p.dst_addr());
            if src.is_unspecified() || src.is_multicast() || src.is_loopback() || dst.is_multicast()
            {
                return false;
            }
            match p.upper_layer() {
                Ok((_, _, true)) | Err(_) => false,
                // RFC 4443 §2.1: types 0 to 127 are errors; §2.4 (e.2): nor about a redirect.
                Ok((ip_proto::ICMPV6, off, false)) => {
                    ip.get(off).is_some_and(|t| *t >= 128 && *t != 137)
                }
                Ok(_) => true,
            }
        }
        _ => false,
    }
}

/// A Fragmentation Needed (ICMPv4 3/4, RFC 1191) or Packet Too Big (ICMPv6 2/0, RFC 4443
/// §3.2) sent to one of our addresses (`ours`) about an ESP packet that one of our addresses
/// sent, plain or in UDP (RFC 3948): its SPI, the peer it was going to, and the MTU the path
/// takes. RFC 4301 §8.2.1: a gateway keeps the PMTU of its SAs from these. The quoted packet
/// must name its SPI (so one cannot be forged without knowing an SA of ours). None for
/// anything else, and for an MTU field of 0 (a router from before RFC 1191); an MTU below
/// [`V4_MIN_PMTU`] (IPv4) or 1280 (IPv6) is raised to it.
pub fn esp_too_big(ip: &[u8], ours: impl Fn(IpAddr) -> bool) -> Option<(u32, IpAddr, u16)> {
    match ip.first()? >> 4 {
        4 => {
            // Every packet on an outside port asks: most are ESP, turned away by one byte.
            if *ip.get(9)? != ip_proto::ICMP {
                return None;
            }
            let p = ipv4::Packet::new_checked(ip).ok()?;
            if p.next_header() != ip_proto::ICMP
                || p.frag_offset() != 0
                || !ours(p.dst_addr().into())
            {
                return None;
            }
            let icmp = p.payload();
            if icmp.get(..2)? != [3, 4]
                || !icmpv4::Packet::new_checked(icmp).ok()?.verify_checksum()
            {
                return None;
            }
            let mtu = u16::from_be_bytes([*icmp.get(6)?, *icmp.get(7)?]);
            // The quoted header, as much of the packet as the router kept (its length field
            // says more than is here).
            let q = icmp.get(8..)?;
            let hl = usize::from(*q.first()? & 0x0f) * 4;
            if q[0] >> 4 != 4 || hl < 20 || q.len() < hl {
                return None;
            }
            let frag_offset = u16::from_be_bytes([q[6], q[7]]) & 0x1fff;
            let src = Ipv4Addr::new(q[12], q[13], q[14], q[15]);
            let dst = Ipv4Addr::new(q[16], q[17], q[18], q[19]);
            if frag_offset != 0 || !ours(src.into()) || mtu == 0 {
                return None;
            }
            let spi = quoted_spi(q[9], &q[hl..])?;
            Some((spi, dst.into(), mtu.max(V4_MIN_PMTU)))
        }
        6 => {
            let p = ipv6::Packet::new_checked(ip).ok()?;
            let (nh, off, non_first) = p.upper_layer().ok()?;
            if nh != ip_proto::ICMPV6 || non_first || !ours(p.dst_addr().into()) {
                return None;
            }
            let icmp = ip.get(off..usize::from(p.payload_len()) + 40)?;
            let sum_ok = icmpv6::Packet::new_checked(icmp)
                .ok()?
                .verify_checksum(&p.src_addr(), &p.dst_addr());
            if icmp.get(..2)? != [2, 0] || !sum_ok {
                return None;
            }
            let mtu = u32::from_be_bytes(icmp.get(4..8)?.try_into().ok()?);
            let q = icmp.get(8..)?;
            if q.len() < 40 || q[0] >> 4 != 6 || mtu == 0 {
                return None;
            }
            let addr = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default());
            let (src, dst) = (addr(&q[8..24]), addr(&q[24..40]));
            if !ours(src.into()) {
                return None;
            }
            // Its headers, as far as they were quoted; not from a fragment (ours are whole).
            let (proto, l4, _, fragment) = crate::outer::v6_walk(q, q.len(), |_, _| true).ok()?;
            if fragment {
                return None;
            }
            let spi = quoted_spi(proto, q.get(l4..)?)?;
            let mtu = mtu.clamp(V6_MIN_MTU, u32::from(u16::MAX)) as u16;
            Some((spi, dst.into(), mtu))
        }
        _ => None,
    }
}

/// The SPI at the start of a quoted ESP header, or after a quoted UDP header on port 4500 (in
/// either direction: the peer's end may be a NAT's port). Zero is no SPI (in UDP, the
/// non-ESP marker of IKE).
fn quoted_spi(proto: u8, l4: &[u8]) -> Option<u32> {
    let spi = match proto {
        ip_proto::ESP => l4.get(..4)?,
        ip_proto::UDP => {
            let natt = 4500u16.to_be_bytes();
            if l4.get(..2)? != natt && l4.get(2..4)? != natt {
                return None;
            }
            l4.get(8..12)?
        }
        _ => return None,
    };
    let spi = u32::from_be_bytes(spi.try_into().ok()?);
    (spi != 0).then_some(spi)
}

/// ICMPv4 error types (RFC 792, RFC 1812 §4.3.2.7): destination unreachable, source quench,
/// redirect, time exceeded, parameter problem.
fn is_icmpv4_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// What became of the packet an error is about before the error was built. An error quotes
/// the packet as it was received (RFC 1812 §4.3.2.3; Linux's `ip_forward` / `ip6_forward`
/// likewise): TTL / hop limit not yet decremented, and for IPv4 the header checksum as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// The packet is as it was received (a Time Exceeded's: [`crate::host::decrement_ttl`]
    /// refuses without changing it), or one this node made: quoted as it is.
    AsIs,
    /// The packet was forwarded: [`crate::host::decrement_ttl`] already took its hop (a
    /// Fragmentation Needed / Packet Too Big found after it). The quote gets the hop back
    /// ([`crate::host::undo_ttl_decrement`]: TTL / hop limit one higher, IPv4 header checksum
    /// updated to match, RFC 1624).
    Forwarded,
}

/// Writes into `out` the IP packet carrying error `e` about the IP packet `orig`, sent from
/// `from` (the gateway's address, of `orig`'s family) back to `orig`'s source, and returns its
/// length. As much of `orig` is quoted as fits in 576 bytes (IPv4) or 1280 (IPv6), and in
/// `out`, as it is ([`Quote::AsIs`]; [`build_quoting`] for a packet already forwarded). Does
/// not check [`may_report`]: the caller does, before spending a token.
pub fn build(e: Error, orig: &[u8], from: IpAddr, out: &mut [u8]) -> Result<usize, DropReason> {
    build_quoting(e, orig, Quote::AsIs, from, out)
}

/// [`build`] for `orig` in the state `quote` says: a forwarded packet, whose TTL / hop limit
/// this node decremented, is quoted as it was received.
pub fn build_quoting(
    e: Error,
    orig: &[u8],
    quote: Quote,
    from: IpAddr,
    out: &mut [u8],
) -> Result<usize, DropReason> {
    match (orig.first().map(|b| b >> 4), from) {
        (Some(4), IpAddr::V4(from)) => build_v4(e, orig, quote, from, out),
        (Some(6), IpAddr::V6(from)) => build_v6(e, orig, quote, from, out),
        _ => Err(DropReason::NoIcmpSource),
    }
}

fn build_v4(
    e: Error,
    orig: &[u8],
    how: Quote,
    from: Ipv4Addr,
    out: &mut [u8],
) -> Result<usize, DropReason> {
    let p = ipv4::Packet::new_checked(orig).map_err(|_| DropReason::Malformed)?;
    let ip_len = usize::from(p.total_len()).min(orig.len());
    let head = ipv4::HEADER_LEN + icmpv4::HEADER_LEN;
    let quote = ip_len
        .min(V4_ERROR_MAX - head)
        .min(out.len().saturating_sub(head));
    // RFC 792: at least the header and 64 bits of the data.
    if quote < (p.header_len() + 8).min(ip_len) {
        return Err(DropReason::NoTailroom);
    }
    let total = head + quote;
    ipv4::Repr {
        src_addr: from,
        dst_addr: p.src_addr(),
        next_header: ip_proto::ICMP,
        payload_len: icmpv4::HEADER_LEN + quote,
        hop_limit: 64,
        // RFC 1812 §4.3.2.5: errors may keep the precedence; the ECN bits are not echoed.
        dscp: p.dscp(),
        ecn: 0,
        dont_frag: false,
        ident: 0,
    }
    .emit(out)
    .map_err(|_| DropReason::NoTailroom)?;
    out[head..total].copy_from_slice(&orig[..quote]);
    if how == Quote::Forwarded {
        // As received: the hop taken back, the header checksum with it (the ICMP checksum,
        // filled below, covers the result).
        crate::host::undo_ttl_decrement(&mut out[head..total]);
    }
    let mut m = icmpv4::Packet::new_unchecked(&mut out[ipv4::HEADER_LEN..total]);
    match e {
        Error::TimeExceeded => {
            m.set_type_code(icmpv4::kind::TIME_EXCEEDED, 0);
            m.set_rest(0, 0);
        }
        Error::TooBig { mtu } => {
            m.set_type_code(
                icmpv4::kind::DEST_UNREACHABLE,
                icmpv4::kind::CODE_FRAG_NEEDED,
            );
            // RFC 1191 §4: the unused high half stays zero, the low half is the next-hop MTU.
            m.set_rest(0, mtu.max(V4_MIN_MTU));
        }
    }
    m.fill_checksum();
    Ok(total)
}

fn build_v6(
    e: Error,
    orig: &[u8],
    how: Quote,
    from: Ipv6Addr,
    out: &mut [u8],
) -> Result<usize, DropReason> {
    let p = ipv6::Packet::new_checked(orig).map_err(|_| DropReason::Malformed)?;
    let ip_len = (ipv6::HEADER_LEN + usize::from(p.payload_len())).min(orig.len());
    let head = ipv6::HEADER_LEN + icmpv6::HEADER_LEN;
    let quote = ip_len
        .min(V6_ERROR_MAX - head)
        .min(out.len().saturating_sub(head));
    if quote < ipv6::HEADER_LEN.min(ip_len) {
        return Err(DropReason::NoTailroom);
    }
    let total = head + quote;
    let dst = p.src_addr();
    ipv6::Repr {
        src_addr: from,
        dst_addr: dst,
        next_header: ip_proto::ICMPV6,
        payload_len: icmpv6::HEADER_LEN + quote,
        hop_limit: 64,
        traffic_class: p.traffic_class() & !3,
        flow_label: 0,
    }
    .emit(out)
    .map_err(|_| DropReason::NoTailroom)?;
    out[head..total].copy_from_slice(&orig[..quote]);
    if how == Quote::Forwarded {
        // As received: the hop limit before our decrement.
        crate::host::undo_ttl_decrement(&mut out[head..total]);
    }
    let mut m = icmpv6::Packet::new_unchecked(&mut out[ipv6::HEADER_LEN..total]);
    match e {
        Error::TimeExceeded => {
            m.set_type_code(icmpv6::kind::TIME_EXCEEDED, 0);
            m.set_rest(0);
        }
        Error::TooBig { mtu } => {
            m.set_type_code(icmpv6::kind::PACKET_TOO_BIG, 0);
            m.set_rest(u32::from(mtu).max(V6_MIN_MTU));
        }
    }
    m.fill_checksum(&from, &dst);
    Ok(total)
}

/// One IPv4 fragment of `orig` (RFC 791 §3.2), cut for a path of `max` bytes: the fragment
/// whose data starts `offset` bytes into `orig`'s data is written into `out`. Returns its
/// length and the offset of the next fragment's data (`None` after the last). The first
/// fragment keeps every option, the others those with the copied flag; `orig` may itself be a
/// fragment (offsets add up, and the last piece keeps its MF flag).
pub fn fragment_v4(
    orig: &[u8],
    max: u16,
    offset: usize,
    out: &mut [u8],
) -> Result<(usize, Option<usize>), DropReason> {
    let p = ipv4::Packet::new_checked(orig).map_err(|_| DropReason::Malformed)?;
    if p.dont_frag() {
        return Err(DropReason::TooBig);
    }
    let hl = p.header_len();
    let data = p.payload();
    if offset >= data.len() && !(offset == 0 && data.is_empty()) {
        return Err(DropReason::Malformed);
    }
    // The header: all of it for the first fragment, the copied options for the others,
    // padded with end-of-options to 32 bits.
    let mut header = [0u8; 60];
    header[..ipv4::HEADER_LEN].copy_from_slice(&orig[..ipv4::HEADER_LEN]);
    let header_len = if offset == 0 {
        header[..hl].copy_from_slice(&orig[..hl]);
        hl
    } else {
        let n = copied_options(p.options(), &mut header[ipv4::HEADER_LEN..]);
        ipv4::HEADER_LEN + n.div_ceil(4) * 4
    };
    let room = usize::from(max).saturating_sub(header_len) & !7;
    if room == 0 {
        return Err(DropReason::TooBig);
    }
    let take = room.min(data.len() - offset);
    let last = offset + take == data.len();
    let total = header_len + take;
    let out = out.get_mut(..total).ok_or(DropReason::NoTailroom)?;
    out[..header_len].copy_from_slice(&header[..header_len]);
    out[header_len..].copy_from_slice(&data[offset..offset + take]);
    let base = usize::from(p.frag_offset());
    let units = u16::try_from((base + offset) / 8).map_err(|_| DropReason::Malformed)?;
    if units > 0x1fff {
        return Err(DropReason::Malformed);
    }
    let mf = !last || p.more_frags();
    out[0] = 0x40 | (header_len / 4) as u8;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[6..8].copy_from_slice(&(units | if mf { 0x2000 } else { 0 }).to_be_bytes());
    let mut f = ipv4::Packet::new_unchecked(out);
    f.fill_checksum();
    Ok((total, (!last).then_some(offset + take)))
}

/// Makes the IPv4 packet `ip`, which this node sends itself (a tunnel's outer header), one it
/// may fragment: DF cleared, identification `ident` (`None` keeps it: AH's ICV covers it,
/// RFC 4302 §3.3.3.1.1.1), header checksum recomputed. Only a packet's source may do this;
/// routers on the way still honour DF.
pub fn own_v4_fragmentable(ip: &mut [u8], ident: Option<u16>) -> Result<(), DropReason> {
    ipv4::Packet::new_checked(&*ip).map_err(|_| DropReason::Malformed)?;
    if let Some(ident) = ident {
        ip[4..6].copy_from_slice(&ident.to_be_bytes());
    }
    ip[6] &= !0x40;
    let mut p = ipv4::Packet::new_unchecked(ip);
    p.fill_checksum();
    Ok(())
}

/// One IPv6 fragment (RFC 8200 §4.5) of the IPv6 packet `orig`, which this node sends itself
/// (only a packet's source fragments IPv6), cut for a path of `max` bytes: the fragment whose
/// data starts `offset` bytes into `orig`'s payload is written into `out`, with a fragment
/// header carrying `ident`. Returns its length and the offset of the next fragment's data
/// (`None` after the last). The unfragmentable part is the fixed header: `orig`'s next header
/// must be an upper layer (what a tunnel's encapsulation writes: ESP, AH, UDP), not an
/// extension header.
pub fn fragment_v6(
    orig: &[u8],
    max: u16,
    offset: usize,
    ident: u32,
    out: &mut [u8],
) -> Result<(usize, Option<usize>), DropReason> {
    let p = ipv6::Packet::new_checked(orig).map_err(|_| DropReason::Malformed)?;
    let next = p.next_header();
    if matches!(next, 0 | 43 | 44 | 60) {
        return Err(DropReason::Malformed);
    }
    let data = p.payload();
    if offset >= data.len() {
        return Err(DropReason::Malformed);
    }
    const HEADERS: usize = ipv6::HEADER_LEN + 8;
    let room = usize::from(max).saturating_sub(HEADERS) & !7;
    if room == 0 {
        return Err(DropReason::TooBig);
    }
    let take = room.min(data.len() - offset);
    let last = offset + take == data.len();
    let total = HEADERS + take;
    let units = u16::try_from(offset / 8)
        .ok()
        .filter(|u| *u <= 0x1fff)
        .ok_or(DropReason::Malformed)?;
    let out = out.get_mut(..total).ok_or(DropReason::NoTailroom)?;
    out[..ipv6::HEADER_LEN].copy_from_slice(&orig[..ipv6::HEADER_LEN]);
    out[4..6].copy_from_slice(&((8 + take) as u16).to_be_bytes());
    out[6] = 44;
    let frag = &mut out[ipv6::HEADER_LEN..HEADERS];
    frag[0] = next;
    frag[1] = 0;
    frag[2..4].copy_from_slice(&(units << 3 | u16::from(!last)).to_be_bytes());
    frag[4..8].copy_from_slice(&ident.to_be_bytes());
    out[HEADERS..].copy_from_slice(&data[offset..offset + take]);
    Ok((total, (!last).then_some(offset + take)))
}

/// Copies the options of `opts` whose copied flag is set (RFC 791: bit 0x80 of the type) to
/// `out`, returning how many bytes it wrote.
fn copied_options(opts: &[u8], out: &mut [u8]) -> usize {
    let (mut i, mut n) = (0, 0);
    while let Some(&t) = opts.get(i) {
        let len = match t {
            0 => break,
            1 => 1,
            _ => match opts.get(i + 1) {
                Some(&l) if l >= 2 && i + usize::from(l) <= opts.len() => usize::from(l),
                _ => break,
            },
        };
        if t & 0x80 != 0 {
            if let Some(dst) = out.get_mut(n..n + len) {
                dst.copy_from_slice(&opts[i..i + len]);
                n += len;
            }
        }
        i += len;
    }
    if let Some(pad) = out.get_mut(n..n.div_ceil(4) * 4) {
        pad.fill(0);
    }
    n
}

/// A token bucket for the gateway's ICMP errors (RFC 1812 §4.3.2.8, RFC 4443 §2.4 (f)):
/// `rate` a second on average, `burst` back to back. Time is the caller's clock in
/// nanoseconds, so the bucket does no I/O.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Tokens, in billionths (one token = 1e9), so refills need no division remainder.
    tokens: u64,
    burst: u64,
    rate: u64,
    last_ns: u64,
}

const TOKEN: u64 = 1_000_000_000;

impl RateLimit {
    /// A full bucket of `burst` tokens, refilled at `rate` a second.
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = u64::from(burst.max(1)) * TOKEN;
        Self {
            tokens: burst,
            burst,
            rate: u64::from(rate),
            last_ns: 0,
        }
    }

    /// Takes a token if there is one at time `now_ns`.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        // Tokens (in billionths) = rate * seconds * 1e9 = rate * nanoseconds.
        self.tokens = self
            .tokens
            .saturating_add(self.rate.saturating_mul(elapsed))
            .min(self.burst);
        if self.tokens >= TOKEN {
            self.tokens -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// What the gateway did about TTL expiry and oversized packets, for the stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Time-exceeded errors sent.
    pub time_exceeded_sent: u64,
    /// Fragmentation-needed / packet-too-big errors sent.
    pub too_big_sent: u64,
    /// Errors not sent because the token bucket was empty.
    pub rate_limited: u64,
    /// Errors not sent because the packet may not be reported (an ICMP error, a non-first
    /// fragment, a multicast or broadcast destination).
    pub not_reportable: u64,
    /// Errors that could not be built or sent (no address of the family, no route, no mbuf,
    /// the policy refused them).
    pub not_sent: u64,
    /// IPv4 packets fragmented (before encapsulation, or for the inside port).
    pub fragmented: u64,
    /// Fragments produced from them.
    pub fragments: u64,
    /// Outer (tunnel) packets fragmented after encapsulation: IPv6 of at most 1280 bytes on
    /// a tunnel whose inner MTU is below that (RFC 8200 §5).
    pub outer_fragmented: u64,
    /// Fragments produced from them.
    pub outer_fragments: u64,
}

impl Counters {
    /// Adds another set (another pipeline's) into this one.
    pub fn merge(&mut self, other: &Counters) {
        self.time_exceeded_sent += other.time_exceeded_sent;
        self.too_big_sent += other.too_big_sent;
        self.rate_limited += other.rate_limited;
        self.not_reportable += other.not_reportable;
        self.not_sent += other.not_sent;
        self.fragmented += other.fragmented;
        self.fragments += other.fragments;
        self.outer_fragmented += other.outer_fragmented;
        self.outer_fragments += other.outer_fragments;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(len: usize, df: bool, proto: u8, ttl: u8) -> Vec<u8> {
        let mut b = vec![0u8; len];
        ipv4::Repr {
            src_addr: Ipv4Addr::new(192, 168, 10, 5),
            dst_addr: Ipv4Addr::new(192, 168, 20, 5),
            next_header: proto,
            payload_len: len - 20,
            hop_limit: ttl,
            dscp: 0,
            ecn: 0,
            dont_frag: df,
            ident: 0x1234,
        }
        .emit(&mut b)
        .unwrap();
        for (i, x) in b[20..].iter_mut().enumerate() {
            *x = i as u8;
        }
        b
    }

    fn v6(len: usize, nh: u8) -> Vec<u8> {
        let mut b = vec![0u8; len];
        ipv6::Repr {
            src_addr: "2001:db8:10::5".parse().unwrap(),
            dst_addr: "2001:db8:20::5".parse().unwrap(),
            next_header: nh,
            payload_len: len - 40,
            hop_limit: 1,
            traffic_class: 0,
            flow_label: 7,
        }
        .emit(&mut b)
        .unwrap();
        for (i, x) in b[40..].iter_mut().enumerate() {
            *x = i as u8;
        }
        b
    }

    #[test]
    fn time_exceeded_v4_quotes_up_to_576() {
        let orig = v4(1400, true, ip_proto::UDP, 1);
        let mut out = [0u8; 1500];
        let from = IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1));
        let n = build(Error::TimeExceeded, &orig, from, &mut out).unwrap();
        assert_eq!(n, 576);
        let p = ipv4::Packet::new_checked(&out[..n]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 10, 5));
        let m = icmpv4::Packet::new_checked(p.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!((m.msg_type(), m.msg_code()), (11, 0));
        assert_eq!(m.data(), &orig[..548]);
    }

    #[test]
    fn frag_needed_carries_the_mtu() {
        let orig = v4(100, true, ip_proto::ICMP, 64);
        let mut out = [0u8; 600];
        let from = IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1));
        let n = build(Error::TooBig { mtu: 1446 }, &orig, from, &mut out).unwrap();
        assert_eq!(n, 128);
        let m = icmpv4::Packet::new_checked(&out[20..n]).unwrap();
        assert_eq!((m.msg_type(), m.msg_code(), m.next_hop_mtu()), (3, 4, 1446));
        assert!(m.verify_checksum());
        // The wrong family has no source to send from.
        let v6from = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            build(Error::TimeExceeded, &orig, v6from, &mut out),
            Err(DropReason::NoIcmpSource)
        );
    }

    #[test]
    fn packet_too_big_v6_fits_1280_and_reports_at_least_1280() {
        let orig = v6(1500, ip_proto::UDP);
        let mut out = [0u8; 1500];
        let from: Ipv6Addr = "2001:db8:10::1".parse().unwrap();
        let n = build(
            Error::TooBig { mtu: 1200 },
            &orig,
            IpAddr::V6(from),
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 1280);
        let p = ipv6::Packet::new_checked(&out[..n]).unwrap();
        let m = icmpv6::Packet::new_checked(&out[40..n]).unwrap();
        assert!(m.verify_checksum(&from, &p.dst_addr()));
        assert_eq!((m.msg_type(), m.msg_code(), m.mtu()), (2, 0, 1280));
        assert_eq!(m.data(), &orig[..1232]);
    }

    /// A Fragmentation Needed about a packet the gateway forwarded (its TTL decremented before
    /// the MTU check) quotes it as it was received: TTL 64, not 63, and the header checksum
    /// that came with it, valid. RFC 1812 §4.3.2.3; Linux's ip_forward does the same.
    #[test]
    fn frag_needed_about_a_forwarded_packet_quotes_it_as_received() {
        let received = v4(1500, true, ip_proto::UDP, 64);
        let mut forwarded = received.clone();
        crate::host::decrement_ttl(&mut forwarded).unwrap();
        let mut out = [0u8; 600];
        let from = IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1));
        let e = Error::TooBig { mtu: 1400 };
        let n = build_quoting(e, &forwarded, Quote::Forwarded, from, &mut out).unwrap();
        assert_eq!(n, 576);
        let p = ipv4::Packet::new_checked(&out[..n]).unwrap();
        assert!(p.verify_checksum());
        let m = icmpv4::Packet::new_checked(p.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!((m.msg_type(), m.msg_code(), m.next_hop_mtu()), (3, 4, 1400));
        let q = ipv4::Packet::new_unchecked(m.data());
        assert_eq!(q.hop_limit(), 64, "the TTL as received");
        assert!(q.verify_checksum(), "the quoted header's checksum");
        assert_eq!(
            m.data(),
            &received[..548],
            "the packet as received, byte for byte"
        );
        // Quoted as it is, the forwarded packet shows our hop (what the fix is about).
        let n = build(e, &forwarded, from, &mut out).unwrap();
        assert_eq!(out[28 + 8], 63);
        assert_eq!(&out[28..n], &forwarded[..548]);
    }

    /// The same for IPv6: a Packet Too Big about a forwarded packet quotes the hop limit it was
    /// received with.
    #[test]
    fn packet_too_big_about_a_forwarded_packet_quotes_the_received_hop_limit() {
        let mut received = v6(1500, ip_proto::UDP);
        received[7] = 64;
        let mut forwarded = received.clone();
        crate::host::decrement_ttl(&mut forwarded).unwrap();
        let from: Ipv6Addr = "2001:db8:10::1".parse().unwrap();
        let mut out = [0u8; 1500];
        let e = Error::TooBig { mtu: 1400 };
        let n = build_quoting(e, &forwarded, Quote::Forwarded, IpAddr::V6(from), &mut out).unwrap();
        assert_eq!(n, 1280);
        let p = ipv6::Packet::new_checked(&out[..n]).unwrap();
        let m = icmpv6::Packet::new_checked(&out[40..n]).unwrap();
        assert!(m.verify_checksum(&from, &p.dst_addr()));
        assert_eq!((m.msg_type(), m.mtu()), (2, 1400));
        assert_eq!(m.data()[7], 64, "the hop limit as received");
        assert_eq!(m.data(), &received[..1232]);
    }

    /// A Time Exceeded is built from the packet its decrement refused, unchanged: quoted as it
    /// is, TTL / hop limit 1, nothing added.
    #[test]
    fn time_exceeded_quotes_the_refused_packet_unchanged() {
        let mut ttl1 = v4(100, false, ip_proto::UDP, 1);
        assert!(crate::host::decrement_ttl(&mut ttl1).is_err());
        let mut out = [0u8; 600];
        let from = IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1));
        let n = build(Error::TimeExceeded, &ttl1, from, &mut out).unwrap();
        assert_eq!(&out[28..n], &ttl1[..], "TTL 1, checksum as received");
        let mut hl1 = v6(100, ip_proto::UDP);
        assert!(crate::host::decrement_ttl(&mut hl1).is_err());
        let from6 = IpAddr::V6("2001:db8:10::1".parse().unwrap());
        let n = build(Error::TimeExceeded, &hl1, from6, &mut out).unwrap();
        assert_eq!(&out[48..n], &hl1[..]);
    }

    /// Fragmentation Needed / Packet Too Big about ESP we sent (as a router on the path would
    /// send them: the error quoting our packet, to our address) give the SPI, the peer and
    /// the MTU; about anything else, nothing.
    #[test]
    fn too_big_errors_about_our_esp_name_the_sa() {
        let us4 = Ipv4Addr::new(203, 0, 113, 1);
        let peer4 = Ipv4Addr::new(198, 51, 100, 2);
        let router4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254));
        let ours =
            |a: IpAddr| a == IpAddr::V4(us4) || a == "2001:db8::1".parse::<IpAddr>().unwrap();
        let esp4 = |src: Ipv4Addr, proto: u8, l4: &[u8]| {
            let mut p = v4(1500, true, proto, 64);
            p[12..16].copy_from_slice(&src.octets());
            p[16..20].copy_from_slice(&peer4.octets());
            p[20..20 + l4.len()].copy_from_slice(l4);
            p
        };
        let error = |orig: &[u8], mtu: u16, from: IpAddr| {
            let mut out = [0u8; 1280];
            let n = build(Error::TooBig { mtu }, orig, from, &mut out).unwrap();
            out[..n].to_vec()
        };
        let spi = [0xc0, 0x01, 0x00, 0x01];
        let plain = esp4(us4, ip_proto::ESP, &spi);
        let want = Some((0xc001_0001, IpAddr::V4(peer4), 1300));
        assert_eq!(esp_too_big(&error(&plain, 1300, router4), ours), want);
        // In UDP (NAT-T), from our port 4500 to the NAT's.
        let natt = [
            0x11, 0x94, 0x9c, 0x41, 0x05, 0xdc, 0, 0, 0xc0, 0x01, 0x00, 0x01,
        ];
        let udp = esp4(us4, ip_proto::UDP, &natt);
        assert_eq!(esp_too_big(&error(&udp, 1300, router4), ours), want);
        // A tiny MTU is raised to the floor; 0 (before RFC 1191) is no answer.
        let tiny = esp_too_big(&error(&plain, 100, router4), ours);
        assert_eq!(tiny.map(|t| t.2), Some(V4_MIN_PMTU));
        let mut zero = error(&plain, 1300, router4);
        zero[26..28].fill(0);
        assert_eq!(
            esp_too_big(&zero, ours),
            None,
            "MTU 0 (the checksum is wrong too)"
        );
        let c = u16::from_be_bytes([zero[22], zero[23]]);
        zero[22..24].copy_from_slice(&crate::wire::checksum::update(c, 1300, 0).to_be_bytes());
        assert_eq!(esp_too_big(&zero, ours), None, "MTU 0");
        let mut bad_sum = error(&plain, 1300, router4);
        bad_sum[22] ^= 1;
        assert_eq!(esp_too_big(&bad_sum, ours), None, "ICMP checksum");
        // Not about ESP of ours: IKE in UDP 4500 (non-ESP marker), another source, other
        // UDP, another ICMP type.
        let mut ike = natt;
        ike[8..12].fill(0);
        assert_eq!(
            esp_too_big(&error(&esp4(us4, ip_proto::UDP, &ike), 1300, router4), ours),
            None
        );
        let theirs = esp4(Ipv4Addr::new(203, 0, 113, 9), ip_proto::ESP, &spi);
        assert_eq!(esp_too_big(&error(&theirs, 1300, router4), ours), None);
        let mut other_udp = natt;
        other_udp[..4].copy_from_slice(&[0, 53, 0, 53]);
        assert_eq!(
            esp_too_big(
                &error(&esp4(us4, ip_proto::UDP, &other_udp), 1300, router4),
                ours
            ),
            None
        );
        let mut out = [0u8; 1280];
        let n = build(Error::TimeExceeded, &plain, router4, &mut out).unwrap();
        assert_eq!(esp_too_big(&out[..n], ours), None);
        // IPv6: the same, below 1280 raised to it.
        let mut p6 = v6(1500, ip_proto::ESP);
        p6[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p6[24..40].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p6[40..44].copy_from_slice(&spi);
        let router6: IpAddr = "2001:db8:ff::1".parse().unwrap();
        let peer6: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(
            esp_too_big(&error(&p6, 1400, router6), ours),
            Some((0xc001_0001, peer6, 1400))
        );
        assert_eq!(
            esp_too_big(&error(&p6, 1000, router6), ours).map(|t| t.2),
            Some(1280)
        );
    }

    #[test]
    fn no_errors_about_errors_fragments_or_multicast() {
        let mut err = v4(56, false, ip_proto::ICMP, 1);
        err[20] = 11; // a time exceeded
        assert!(!may_report(&err));
        err[20] = 8; // an echo request
        assert!(may_report(&err));
        let mut frag = v4(100, false, ip_proto::UDP, 1);
        frag[7] = 1; // offset 8
        assert!(!may_report(&frag));
        let mut mc = v4(100, false, ip_proto::UDP, 1);
        mc[16] = 224;
        assert!(!may_report(&mc));
        let mut bc = v4(100, false, ip_proto::UDP, 1);
        bc[16..20].fill(255);
        assert!(!may_report(&bc));
        let mut e6 = v6(100, ip_proto::ICMPV6);
        e6[40] = 1; // destination unreachable
        assert!(!may_report(&e6));
        e6[40] = 128;
        assert!(may_report(&e6));
        e6[40] = 137; // a redirect (RFC 4443 §2.4 (e.2))
        assert!(!may_report(&e6));
        let mut m6 = v6(100, ip_proto::UDP);
        m6[24] = 0xff;
        assert!(!may_report(&m6));
        assert!(!may_report(&[0x45, 0, 0]));
        // Sources that are no one host: network 0, class E (RFC 1812 §5.3.7).
        for first in [0u8, 240, 250] {
            let mut p = v4(100, false, ip_proto::UDP, 1);
            p[12] = first;
            assert!(!may_report(&p), "source {first}.168.10.5");
        }
    }

    #[test]
    fn oversize_decides_by_df_and_family() {
        assert_eq!(oversize(&v4(1400, true, 17, 9), 1446), Oversize::Fits);
        assert_eq!(
            oversize(&v4(1500, true, 17, 9), 1446),
            Oversize::TooBig(1446)
        );
        assert_eq!(
            oversize(&v4(1500, false, 17, 9), 1446),
            Oversize::Fragment(1446)
        );
        assert_eq!(oversize(&v6(1500, 17), 1400), Oversize::TooBig(1400));
    }

    #[test]
    fn fragments_cover_the_data_in_multiples_of_8() {
        let orig = v4(1500, false, ip_proto::ICMP, 63);
        let mut out = [0u8; 2048];
        let mut got = Vec::new();
        let mut off = Some(0);
        while let Some(o) = off {
            let (n, next) = fragment_v4(&orig, 1446, o, &mut out).unwrap();
            assert!(n <= 1446);
            let p = ipv4::Packet::new_checked(&out[..n]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!(usize::from(p.frag_offset()), o);
            assert_eq!(p.more_frags(), next.is_some());
            assert_eq!(p.ident(), 0x1234);
            got.extend_from_slice(p.payload());
            off = next;
        }
        assert_eq!(got, orig[20..]);
        assert_eq!(
            fragment_v4(&v4(1500, true, 17, 9), 1446, 0, &mut out),
            Err(DropReason::TooBig)
        );
    }

    /// A tunnel's own IPv6 outer packet (ESP after the fixed header) in fragments: each fits,
    /// carries a fragment header with the identification, the original next header and its
    /// offset in 8-byte units, M on all but the last; the pieces rebuild the payload.
    #[test]
    fn ipv6_fragments_of_our_own_packet() {
        let orig = v6(1368, ip_proto::ESP);
        let mut out = [0u8; 1500];
        let (mut got, mut off, mut n_frags) = (Vec::new(), Some(0), 0);
        while let Some(o) = off {
            let (n, next) = fragment_v6(&orig, 1280, o, 0xdead_beef, &mut out).unwrap();
            let f = &out[..n];
            assert!(n <= 1280);
            assert_eq!(&f[..4], &orig[..4], "version, class, flow label");
            assert_eq!(&f[7..40], &orig[7..40], "hop limit, addresses");
            assert_eq!(usize::from(u16::from_be_bytes([f[4], f[5]])), n - 40);
            assert_eq!((f[6], f[40], f[41]), (44, ip_proto::ESP, 0));
            let field = u16::from_be_bytes([f[42], f[43]]);
            assert_eq!(usize::from(field >> 3) * 8, o);
            assert_eq!(field & 1 == 1, next.is_some());
            assert_eq!(field & 6, 0);
            assert_eq!(&f[44..48], &0xdead_beefu32.to_be_bytes());
            if next.is_some() {
                assert_eq!((n - 48) % 8, 0);
            }
            got.extend_from_slice(&f[48..]);
            off = next;
            n_frags += 1;
        }
        assert_eq!(n_frags, 2);
        assert_eq!(got, orig[40..]);
        // Not for packets with extension headers, nor for paths that take no data.
        let hop = v6(200, 0);
        assert_eq!(
            fragment_v6(&hop, 1280, 0, 1, &mut out),
            Err(DropReason::Malformed)
        );
        assert_eq!(
            fragment_v6(&orig, 55, 0, 1, &mut out),
            Err(DropReason::TooBig)
        );
    }

    #[test]
    fn our_own_ipv4_packet_may_be_fragmented_whatever_its_df() {
        let mut p = v4(1400, true, ip_proto::ESP, 64);
        let mut out = [0u8; 1500];
        assert_eq!(fragment_v4(&p, 1300, 0, &mut out), Err(DropReason::TooBig));
        let mut kept = p.clone();
        own_v4_fragmentable(&mut p, Some(0x4242)).unwrap();
        let h = ipv4::Packet::new_checked(&p[..]).unwrap();
        assert!(!h.dont_frag() && h.verify_checksum());
        assert_eq!(h.ident(), 0x4242);
        // AH's: only DF changes (mutable, out of the ICV); the identification stays.
        own_v4_fragmentable(&mut kept, None).unwrap();
        let k = ipv4::Packet::new_checked(&kept[..]).unwrap();
        assert!(!k.dont_frag() && k.verify_checksum());
        assert_eq!(
            k.ident(),
            ipv4::Packet::new_checked(&v4(1400, true, ip_proto::ESP, 64)[..])
                .unwrap()
                .ident()
        );
        let (n, next) = fragment_v4(&p, 1300, 0, &mut out).unwrap();
        assert_eq!((n, next), (1300, Some(1280)));
    }

    #[test]
    fn only_ipv6_up_to_1280_bytes_is_the_minimum() {
        assert!(v6_minimum(&v6(1280, ip_proto::UDP)));
        assert!(v6_minimum(&v6(48, ip_proto::UDP)));
        assert!(!v6_minimum(&v6(1281, ip_proto::UDP)));
        assert!(!v6_minimum(&v4(1000, false, ip_proto::UDP, 9)));
        assert!(!v6_minimum(&[0x60, 0, 0]));
    }

    #[test]
    fn later_fragments_keep_only_copied_options() {
        // 24-byte header: a copied option (0x94, router alert, 4 bytes) then nothing else;
        // and a 28-byte one with a non-copied record-route stub (7) ahead of it.
        let mut orig = vec![0u8; 228];
        orig[0] = 0x47;
        orig[2..4].copy_from_slice(&228u16.to_be_bytes());
        orig[8] = 9;
        orig[9] = 17;
        orig[20..24].copy_from_slice(&[7, 4, 4, 0]);
        orig[24..28].copy_from_slice(&[0x94, 4, 0, 0]);
        let mut out = [0u8; 256];
        let (n, next) = fragment_v4(&orig, 100, 0, &mut out).unwrap();
        assert_eq!((n, next), (28 + 72, Some(72)));
        let (n, next) = fragment_v4(&orig, 100, 72, &mut out).unwrap();
        assert_eq!(out[0], 0x46);
        assert_eq!(&out[20..24], &[0x94, 4, 0, 0]);
        assert_eq!((n, next), (24 + 72, Some(144)));
        let (n, next) = fragment_v4(&orig, 100, 144, &mut out).unwrap();
        assert_eq!((n, next), (24 + 56, None));
        assert!(!ipv4::Packet::new_checked(&out[..n]).unwrap().more_frags());
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600),
            version in 0u8..3,
            max in 0u16..2000,
            off in 0usize..1600,
            room in 0usize..1600,
        ) {
            let mut b = b;
            if let Some(x) = b.first_mut() {
                // Mostly IPv4 / IPv6 with arbitrary header lengths, sometimes anything.
                *x = match version { 0 => 0x40 | (*x & 15), 1 => 0x60, _ => *x };
            }
            let _ = (may_report(&b), oversize(&b, max), esp_too_big(&b, |_| true));
            let mut out = vec![0u8; room];
            let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
            for from in [v4, v6] {
                let _ = build(Error::TimeExceeded, &b, from, &mut out);
                let _ = build(Error::TooBig { mtu: max }, &b, from, &mut out);
                let e = Error::TooBig { mtu: max };
                if let Ok(n) = build_quoting(e, &b, Quote::Forwarded, from, &mut out) {
                    proptest::prop_assert!(n <= V6_ERROR_MAX);
                }
            }
            if let Ok((n, _)) = fragment_v4(&b, max, off, &mut out) {
                proptest::prop_assert!(n <= usize::from(max));
            }
            if let Ok((n, _)) = fragment_v6(&b, max, off, 1, &mut out) {
                proptest::prop_assert!(n <= usize::from(max));
            }
            let _ = (v6_minimum(&b), own_v4_fragmentable(&mut b.clone(), Some(1)));
        }

        #[test]
        fn fragments_reassemble(len in 21usize..1600, max in 28u16..1600) {
            let orig = v4(len, false, ip_proto::UDP, 9);
            let mut out = [0u8; 1600];
            let (mut got, mut next) = (Vec::new(), Some(0));
            while let Some(o) = next {
                let (n, after) = fragment_v4(&orig, max, o, &mut out).unwrap();
                proptest::prop_assert!(n <= usize::from(max));
                got.extend_from_slice(&out[20..n]);
                next = after;
            }
            proptest::prop_assert_eq!(&got[..], &orig[20..]);
        }
    }

    #[test]
    fn token_bucket_refills_at_its_rate() {
        let mut r = RateLimit::new(10, 3);
        assert!(r.allow(0) && r.allow(0) && r.allow(0));
        assert!(!r.allow(1));
        assert!(!r.allow(99_000_000));
        assert!(r.allow(100_000_000)); // 0.1 s at 10/s: one token
        assert!(!r.allow(100_000_001));
        assert!(r.allow(10_000_000_000) && r.allow(10_000_000_000) && r.allow(10_000_000_000));
        assert!(!r.allow(10_000_000_000)); // the burst caps the refill
    }
}
