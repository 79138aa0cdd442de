//! ESP encapsulation and decapsulation of one packet (RFC 4303), tunnel and transport mode,
//! optionally in UDP (RFC 3948).
//!
//! Both directions take a caller-owned [`PacketBuf`] holding an IP packet (no link header) and
//! either transform it in place or return the [`DropReason`]. On a drop the buffer may have been
//! changed; the caller frees it. No allocation, no I/O.

use crate::buf::PacketBuf;
use crate::crypto::{EspTransform, OpenPrep, SealPrep, ESP_HEADER_LEN};
use crate::drop::DropReason;
use crate::outer::{self, Outer, SecProto};
use crate::sa::{EcnMode, InboundSa, Mode, NatOa, NattChecksum, OutboundSa, SaCrypto};
use crate::wire::{checksum, ip_proto};

/// Encapsulates the IP packet in `buf` with the outbound SA (ESP or AH by the SA's protocol).
pub fn encap<B: PacketBuf + ?Sized>(sa: &OutboundSa, buf: &mut B) -> Result<(), DropReason> {
    match &sa.crypto {
        SaCrypto::Esp(t) => encap_esp(sa, t.as_ref(), buf),
        SaCrypto::Ah(m) => crate::ah::encap(sa, m.as_ref(), buf),
    }
}

/// Decapsulates the IPsec packet in `buf`, which [`outer::classify`] described as `o`, with the
/// inbound SA found for it. On success `buf` holds the inner IP packet (tunnel mode) or the
/// restored packet (transport mode), already checked against the SA's selectors.
pub fn decap<B: PacketBuf + ?Sized>(
    sa: &InboundSa,
    buf: &mut B,
    o: &Outer,
) -> Result<(), DropReason> {
    decap_uncounted(sa, buf, o, &OpenPrep::default())?;
    if sa.reserve_counts(&[buf.len() as u32]) == 0 {
        return Err(DropReason::SaExpired);
    }
    Ok(())
}

/// [`decap`] up to, not including, counting the packet against the SA's lifetime, which
/// burst pipelines do once per SA per burst ([`InboundSa::reserve_counts`]): a packet is
/// forwarded only once counted. `prep`: what [`prepare_open`] made for this packet and SA
/// (or the default, for nothing made).
#[inline]
pub(crate) fn decap_uncounted<B: PacketBuf + ?Sized>(
    sa: &InboundSa,
    buf: &mut B,
    o: &Outer,
    prep: &OpenPrep,
) -> Result<(), DropReason> {
    sa.check_hard()?;
    // Link padding after the IP packet would sit where the ICV is expected.
    let extra = buf.len().saturating_sub(o.ip_len);
    if extra > 0 {
        buf.trim(extra).map_err(|_| DropReason::Malformed)?;
    }
    match (&sa.crypto, o.proto) {
        (SaCrypto::Esp(t), SecProto::Esp) => decap_esp(sa, t.as_ref(), buf, o, prep)?,
        (SaCrypto::Ah(m), SecProto::Ah) => crate::ah::decap(sa, m.as_ref(), buf, o)?,
        _ => return Err(DropReason::NoSa),
    }
    check_selectors(sa, buf.data())
}

/// What the ESP transform of `sa` derives ahead from an arrival [`outer::classify`] described
/// as `o` ([`crate::crypto::EspTransform::prepare_open`]), for [`decap_uncounted`]; callers
/// ask only for SAs that gain from it ([`InboundSa::opens_ahead`]). Nothing for AH, or for a
/// protocol the SA does not carry (decapsulation refuses those).
#[inline]
pub(crate) fn prepare_open(sa: &InboundSa, ip: &[u8], o: &Outer, prep: &mut OpenPrep) {
    if let (SaCrypto::Esp(t), SecProto::Esp) = (&sa.crypto, o.proto) {
        if let Some(esp) = ip.get(o.sec_off..o.ip_len) {
            t.prepare_open(esp, prep);
        }
    }
}

/// RFC 4301 §5.2: the decapsulated packet must match the selectors of the SA that carried it.
pub(crate) fn check_selectors(sa: &InboundSa, ip: &[u8]) -> Result<(), DropReason> {
    if sa.selectors_addr_only && crate::flow::ip_version(ip) == Some(4) {
        // The same header check as `flow_key`, without reading the ports no selector asks
        // about. (IPv6 takes the full path: `flow_key` also walks its extension headers.)
        let p =
            crate::wire::ipv4::Packet::new_checked(ip).map_err(|_| DropReason::InnerMalformed)?;
        let (src, dst) = (
            std::net::IpAddr::V4(p.src_addr()),
            std::net::IpAddr::V4(p.dst_addr()),
        );
        return if sa
            .selectors
            .iter()
            .any(|s| s.dst.contains(dst) && s.src.contains(src))
        {
            Ok(())
        } else {
            Err(DropReason::PolicyMismatch)
        };
    }
    let key = crate::flow::flow_key(ip).map_err(|_| DropReason::InnerMalformed)?;
    if sa.selectors.iter().any(|s| s.matches(&key)) {
        Ok(())
    } else {
        Err(DropReason::PolicyMismatch)
    }
}

/// Padding (RFC 4303 §2.4): the bytes 1, 2, 3, ... up to a length that aligns
/// payload + padding + the two trailer bytes to `align`.
#[inline]
fn pad_len(payload: usize, align: usize) -> usize {
    // Alignments are powers of two (4 or 16): masks, not divisions.
    let m = align - 1;
    (align - ((payload + 2) & m)) & m
}

fn encap_esp<B: PacketBuf + ?Sized>(
    sa: &OutboundSa,
    t: &dyn EspTransform,
    buf: &mut B,
) -> Result<(), DropReason> {
    let mut plan = EspPlan::default();
    plan_esp(sa, buf, &mut plan)?;
    let (seq, granted) = sa.reserve_seqs(1);
    if granted == 0 {
        return Err(DropReason::SeqExhausted);
    }
    if sa.reserve_counts(&[plan.len]) == 0 {
        return Err(DropReason::SaExpired);
    }
    let mut prep = [SealPrep::default()];
    t.prepare(sa.spi, seq, sa.esn, &mut prep);
    seal_esp(sa, t, buf, &plan, &prep[0])
}

/// The layout of one packet's ESP encapsulation, decided before it is given a sequence
/// number ([`plan_esp`]) and applied once it has one ([`seal_esp`]). Burst pipelines plan a
/// whole burst first, so that each SA hands out its sequence numbers and counts its lifetime
/// once per burst.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EspPlan {
    /// The inner packet's IP version.
    ver: u8,
    /// Tunnel mode: the inner packet's traffic class, and (IPv4) whether it has DF set,
    /// read while its header is checked so that sealing does not parse it again.
    inner_tc: u8,
    inner_df: bool,
    /// What the trailer names.
    next_header: u8,
    /// Transport mode: the byte of the IP headers that names the protocol.
    nh_pos: u16,
    /// The payload ESP protects (tunnel: the inner packet and TFC padding).
    payload_len: u32,
    /// TFC padding bytes (RFC 4303 §2.7).
    tfc: u16,
    /// Padding bytes (RFC 4303 §2.4).
    pad: u8,
    /// Bytes added in front: outer headers, ESP header, IV.
    head: u16,
    /// Bytes added behind: TFC padding, padding, pad length, next header, ICV.
    tail: u16,
    /// The packet's length before encapsulation, which the lifetime counters count.
    pub(crate) len: u32,
}

/// Checks and measures a packet for encapsulation with `sa`: everything that can refuse it
/// before it takes a sequence number. Changes nothing but link padding after the IP packet.
/// The plan is written to `out` (where the burst keeps it) rather than returned: a returned
/// plan copied on by the caller made the CPU wait for the stores just made (store forwarding).
#[inline]
pub(crate) fn plan_esp<B: PacketBuf + ?Sized>(
    sa: &OutboundSa,
    buf: &mut B,
    out: &mut EspPlan,
) -> Result<(), DropReason> {
    sa.check_hard()?;
    let (ver, inner_tc, inner_df) = inner_ip_tc(buf)?;
    let inner_len = buf.len();
    // Sizes decided when the SA was installed, not asked of the transform per packet.
    let (iv_len, icv_len, align) = (
        usize::from(sa.iv_len),
        usize::from(sa.icv_len),
        usize::from(sa.align),
    );
    let udp_len = if sa.udp.is_some() { 8 } else { 0 };

    // Where the ESP header goes, what it protects, what the trailer names, and (transport
    // mode) which byte of the IP headers names the protocol.
    let (front, payload_len, tfc, next_header, nh_pos) = match sa.mode {
        Mode::Tunnel => {
            let tfc = usize::from(sa.tfc_pad).saturating_sub(inner_len);
            let nh = if ver == 4 {
                ip_proto::IPV4
            } else {
                ip_proto::IPV6
            };
            (
                usize::from(sa.header_len) + udp_len,
                inner_len + tfc,
                tfc,
                nh,
                0,
            )
        }
        Mode::Transport => {
            let (_, _, proto, l4_off, _, ip_len, _, fragment) = outer::ip_headers(buf.data())?;
            if fragment {
                // Transport-mode ESP applies to whole datagrams (RFC 4303 §3.3.5).
                return Err(DropReason::OuterFragment);
            }
            if ip_len != inner_len {
                buf.trim(inner_len - ip_len)
                    .map_err(|_| DropReason::Malformed)?;
            }
            let (hdr, nh_pos, nh) = if ver == 4 {
                (l4_off, 9, proto)
            } else {
                let (hdr, nh_pos) = transport_v6_split(buf.data())?;
                (hdr, nh_pos, buf.data()[nh_pos])
            };
            (udp_len, buf.len() - hdr, 0, nh, nh_pos)
        }
    };
    let pad = pad_len(payload_len, align);
    let tail = tfc + pad + 2 + icv_len;
    let head = front + ESP_HEADER_LEN + iv_len;
    if buf.headroom() < head {
        return Err(DropReason::NoHeadroom);
    }
    if buf.tailroom() < tail {
        return Err(DropReason::NoTailroom);
    }
    // IP packets are at most 65535 bytes (inner_ip checked the length field), so are their
    // parts, and TFC padding is a u16.
    *out = EspPlan {
        ver,
        inner_tc,
        inner_df,
        next_header,
        nh_pos: nh_pos as u16,
        payload_len: payload_len as u32,
        tfc: tfc as u16,
        pad: pad as u8,
        head: head as u16,
        tail: tail as u16,
        len: buf.len() as u32,
    };
    Ok(())
}

/// Padding bytes (RFC 4303 §2.4), written 16 at a time: padding is shorter than the
/// largest alignment (16), and the pad length, next header and ICV after it are written
/// over whatever lands beyond.
const PAD16: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

/// Encapsulates a packet [`plan_esp`] measured, with the sequence number reserved for it,
/// which `prep` ([`EspTransform::prepare`]) holds.
#[inline]
pub(crate) fn seal_esp<B: PacketBuf + ?Sized>(
    sa: &OutboundSa,
    t: &dyn EspTransform,
    buf: &mut B,
    plan: &EspPlan,
    prep: &SealPrep,
) -> Result<(), DropReason> {
    let seq = prep.seq();
    let udp_len = if sa.udp.is_some() { 8 } else { 0 };
    let (orig_len, tfc, pad) = (buf.len(), usize::from(plan.tfc), usize::from(plan.pad));
    let (head, tail) = (usize::from(plan.head), usize::from(plan.tail));
    let ver = plan.ver;

    // Trailer: TFC zeros, padding 1..n, pad length, next header; the ICV is written by seal().
    let data = buf.append(tail).map_err(|_| DropReason::NoTailroom)?;
    let (_, trailer) = data.split_at_mut(orig_len);
    let (tfc_bytes, trailer) = trailer.split_at_mut(tfc);
    if tfc > 0 {
        tfc_bytes.fill(0); // a memset call, which TFC-less packets skip
    }
    if let Some(p16) = trailer.get_mut(..16) {
        p16.copy_from_slice(&PAD16);
    } else {
        trailer[..pad].copy_from_slice(&PAD16[..pad]);
    }
    trailer[pad] = pad as u8;
    trailer[pad + 1] = plan.next_header;

    let data = buf.prepend(head).map_err(|_| DropReason::NoHeadroom)?;
    let total = data.len();
    let esp_off = match sa.mode {
        Mode::Tunnel => {
            let (inner_tc, inner_df) = (plan.inner_tc, plan.inner_df);
            // RFC 4301 §5.1.2.1: DSCP copied (or set); RFC 6040 §4.1: ECN copied or Not-ECT.
            let dscp = sa.dscp.map(|d| d << 2).unwrap_or(inner_tc & 0xfc);
            let ecn = match sa.ecn {
                EcnMode::Normal => inner_tc & 3,
                EcnMode::Compat => 0,
            };
            let tc = dscp | ecn;
            let hl = usize::from(sa.header_len);
            // Fixed-size copies compile to a few moves instead of a memcpy call.
            if sa.outer_v6 {
                let (h, _) = data
                    .split_first_chunk_mut::<40>()
                    .ok_or(DropReason::NoHeadroom)?;
                h.copy_from_slice(&sa.header[..40]);
                h[0] = 0x60 | (tc >> 4);
                h[1] = (h[1] & 0x0f) | (tc << 4);
                h[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            } else {
                let df = sa.outer_df(inner_df || ver == 6);
                let flags: u16 = if df { 0x4000 } else { 0 };
                // A tunnel header gets a fresh identification.
                let (len, ident) = (total as u16, seq as u16);
                // The checksum from the SA's precomputed sum and this packet's fields, not
                // read back from the bytes just written.
                let mut sum = sa.header_sum
                    + u32::from(tc)
                    + u32::from(len)
                    + u32::from(ident)
                    + u32::from(flags);
                sum = (sum & 0xffff) + (sum >> 16);
                sum = (sum & 0xffff) + (sum >> 16);
                let (h, _) = data
                    .split_first_chunk_mut::<20>()
                    .ok_or(DropReason::NoHeadroom)?;
                h.copy_from_slice(&sa.header[..20]);
                h[1] = tc;
                h[2..4].copy_from_slice(&len.to_be_bytes());
                h[4..6].copy_from_slice(&ident.to_be_bytes());
                h[6..8].copy_from_slice(&flags.to_be_bytes());
                h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            }
            if let Some(u) = sa.udp {
                data[hl..hl + 2].copy_from_slice(&u.local_port.to_be_bytes());
                data[hl + 2..hl + 4].copy_from_slice(&u.remote_port.to_be_bytes());
            }
            hl + udp_len
        }
        Mode::Transport => {
            // Move the IP header (and IPv6 extension headers before ESP) to the new front.
            let hdr_len = total - head - tail - plan.payload_len as usize;
            data.copy_within(head..head + hdr_len, 0);
            data[usize::from(plan.nh_pos)] = if sa.udp.is_some() {
                ip_proto::UDP
            } else {
                ip_proto::ESP
            };
            if let Some(u) = sa.udp {
                data[hdr_len..hdr_len + 2].copy_from_slice(&u.local_port.to_be_bytes());
                data[hdr_len + 2..hdr_len + 4].copy_from_slice(&u.remote_port.to_be_bytes());
            }
            if ver == 4 {
                // A transport header keeps its own identification.
                let ident = u16::from_be_bytes([data[4], data[5]]);
                outer::finish_v4(data, total, ident);
            } else {
                data[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
            }
            hdr_len + udp_len
        }
    };
    let esp = data.get_mut(esp_off..).ok_or(DropReason::BadLength)?;
    t.seal_prepared(esp, prep)
        .map_err(|_| DropReason::BadLength)?;
    if sa.udp.is_some() {
        let v6 = ver_of(data) == 6;
        outer::finish_udp(data, esp_off - 8, v6);
    }
    Ok(())
}

/// Checks the packet about to be protected is a whole IPv4 or IPv6 packet, drops link-layer
/// padding after it (Ethernet pads short frames), and returns its version.
pub(crate) fn inner_ip<B: PacketBuf + ?Sized>(buf: &mut B) -> Result<u8, DropReason> {
    inner_ip_tc(buf).map(|(ver, ..)| ver)
}

/// [`inner_ip`], also returning the packet's traffic class and (IPv4) whether DF is set, read
/// from the fixed header it checks: version 4 with IHL ≥ 5 and header ≤ total length ≤ buffer,
/// or version 6 with 40 + payload length ≤ buffer. These are the checks of the `wire::ipv4`
/// and `wire::ipv6` views' `new_checked`, done on fixed-size reads: through the views (and
/// their accessors) the outbound path took ~30 more instructions a packet (callgrind,
/// `pathcount encap-burst`, 46 B: 892 against 863).
#[inline]
fn inner_ip_tc<B: PacketBuf + ?Sized>(buf: &mut B) -> Result<(u8, u8, bool), DropReason> {
    let d = buf.data();
    let (ip_len, r) = match d.first().map(|b| b >> 4) {
        Some(4) => {
            let h = d.first_chunk::<20>().ok_or(DropReason::Malformed)?;
            let hl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if hl < 20 || total < hl || total > d.len() {
                return Err(DropReason::Malformed);
            }
            (total, (4, h[1], h[6] & 0x40 != 0))
        }
        Some(6) => {
            let h = d.first_chunk::<40>().ok_or(DropReason::Malformed)?;
            let total = 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
            if total > d.len() {
                return Err(DropReason::Malformed);
            }
            (total, (6, (h[0] << 4) | (h[1] >> 4), false))
        }
        _ => return Err(DropReason::NotIp),
    };
    let extra = d.len() - ip_len;
    if extra > 0 {
        buf.trim(extra).map_err(|_| DropReason::Malformed)?;
    }
    Ok(r)
}

#[inline]
fn ver_of(ip: &[u8]) -> u8 {
    ip[0] >> 4
}

/// IPv6 transport mode: ESP goes after hop-by-hop and routing headers and the destination
/// options before a routing header (RFC 4303 §3.1.1 leaves destination options on either
/// side; this is where Linux puts them). Returns the length of the part that stays in front
/// and the position of the next-header byte to patch.
fn transport_v6_split(ip: &[u8]) -> Result<(usize, usize), DropReason> {
    let total = ip.len();
    // As Linux places it (and scapy after it): past hop-by-hop, routing, and destination
    // options up to the routing header (those are for the destinations it lists, RFC 8200
    // §4.1); destination options after a routing header are for the final destination and
    // go inside ESP. Before, the walk stopped at the first destination options header, and
    // a routing header after it was encrypted.
    let routed = std::cell::Cell::new(false);
    let (_, off, nh_pos, _) = outer::v6_walk(ip, total, |nh, _| match nh {
        ip_proto::HOPOPT => true,
        ip_proto::ROUTING => {
            routed.set(true);
            true
        }
        ip_proto::DSTOPTS => !routed.get(),
        _ => false,
    })?;
    Ok((off, nh_pos))
}

fn decap_esp<B: PacketBuf + ?Sized>(
    sa: &InboundSa,
    t: &dyn EspTransform,
    buf: &mut B,
    o: &Outer,
    prep: &OpenPrep,
) -> Result<(), DropReason> {
    if sa.udp.is_some() != o.udp.is_some() {
        return Err(DropReason::BadUdpEncap);
    }
    // Sizes cached when the SA was installed, not asked of the transform per packet.
    let (iv_len, icv_len) = (usize::from(sa.iv_len), usize::from(sa.icv_len));
    let data = buf.data_mut();
    let esp = data.get_mut(o.sec_off..).ok_or(DropReason::BadLength)?;
    // RFC 4303 §2.4: payload, padding and trailer end on a 4-byte boundary (block size for CBC).
    let min = ESP_HEADER_LEN + iv_len + 2 + icv_len;
    if esp.len() < min {
        return Err(DropReason::BadLength);
    }
    let ct_len = esp.len() - ESP_HEADER_LEN - iv_len - icv_len;
    if !ct_len.is_multiple_of(usize::from(sa.align)) {
        return Err(DropReason::BadLength);
    }
    let seq_lo = u32::from_be_bytes([esp[4], esp[5], esp[6], esp[7]]);
    // RFC 4303 §3.4.3: check the window before spending cycles on the ICV...
    let seq = sa.state.window.check(seq_lo).map_err(replay_drop)?;
    let seq_hi = sa.esn.then_some((seq >> 32) as u32);
    t.open_prepared(esp, seq_hi, prep).map_err(|e| match e {
        crate::crypto::CryptoError::IcvMismatch => DropReason::IcvMismatch,
        _ => DropReason::BadLength,
    })?;
    // ...and update it only once the ICV verified.
    sa.state.window.update(seq).map_err(replay_drop)?;

    let trailer_end = esp.len() - icv_len;
    let pad = usize::from(esp[trailer_end - 2]);
    let next_header = esp[trailer_end - 1];
    let payload_start = ESP_HEADER_LEN + iv_len;
    if pad + 2 > trailer_end - payload_start {
        return Err(DropReason::BadPadding);
    }
    let pad_start = trailer_end - 2 - pad;
    // RFC 4303 §2.4: the default padding is 1, 2, 3, ... and the receiver checks it.
    if esp[pad_start..trailer_end - 2]
        .iter()
        .enumerate()
        .any(|(k, b)| usize::from(*b) != k + 1)
    {
        return Err(DropReason::BadPadding);
    }
    if next_header == ip_proto::NO_NEXT {
        return Err(DropReason::DummyPacket); // RFC 4303 §2.6: dummy packet, discard
    }
    let payload_len = pad_start - payload_start;
    let cut_back = icv_len + 2 + pad;
    match sa.mode {
        Mode::Tunnel => {
            let want = match next_header {
                ip_proto::IPV4 => 4,
                ip_proto::IPV6 => 6,
                _ => return Err(DropReason::BadNextHeader),
            };
            let front = o.sec_off + payload_start;
            buf.trim(cut_back).map_err(|_| DropReason::BadLength)?;
            buf.adj(front).map_err(|_| DropReason::BadLength)?;
            finish_tunnel_decap(buf, want, o.ecn, payload_len)
        }
        Mode::Transport => {
            let ins = o.sec_off + payload_start - o.ip_hdr_len;
            let hdr_len = o.ip_hdr_len;
            buf.trim(cut_back).map_err(|_| DropReason::BadLength)?;
            let data = buf.data_mut();
            data.copy_within(0..hdr_len, ins);
            buf.adj(ins).map_err(|_| DropReason::BadLength)?;
            restore_transport_header(buf.data_mut(), o.nh_pos, next_header)?;
            match sa.natt_checksum {
                NattChecksum::Keep => Ok(()),
                NattChecksum::Recompute => {
                    natt_transport_checksum(buf.data_mut(), hdr_len, next_header, None)
                }
                NattChecksum::Incremental(oa) => {
                    natt_transport_checksum(buf.data_mut(), hdr_len, next_header, Some(oa))
                }
            }
        }
    }
}

/// Checks the inner packet of a tunnel, drops TFC padding (RFC 4303 §2.7: the inner IP length
/// tells where the packet ends) and applies RFC 6040 ECN decapsulation.
pub(crate) fn finish_tunnel_decap<B: PacketBuf + ?Sized>(
    buf: &mut B,
    want_version: u8,
    outer_ecn: u8,
    payload_len: usize,
) -> Result<(), DropReason> {
    let data = buf.data();
    if crate::flow::ip_version(data) != Some(want_version) {
        return Err(DropReason::BadNextHeader);
    }
    let ip_len = if want_version == 4 {
        let p =
            crate::wire::ipv4::Packet::new_checked(data).map_err(|_| DropReason::InnerMalformed)?;
        usize::from(p.total_len())
    } else {
        let p =
            crate::wire::ipv6::Packet::new_checked(data).map_err(|_| DropReason::InnerMalformed)?;
        crate::wire::ipv6::HEADER_LEN + usize::from(p.payload_len())
    };
    if ip_len > payload_len {
        return Err(DropReason::InnerMalformed);
    }
    if ip_len < buf.len() {
        buf.trim(buf.len() - ip_len)
            .map_err(|_| DropReason::InnerMalformed)?;
    }
    let data = buf.data_mut();
    let tc = outer::traffic_class(data);
    let ecn = outer::ecn_decap(tc & 3, outer_ecn).ok_or(DropReason::EcnCeOnNotEct)?;
    if ecn != tc & 3 {
        outer::set_traffic_class(data, (tc & 0xfc) | ecn);
        if want_version == 4 {
            outer::refresh_v4_checksum(data);
        }
    }
    Ok(())
}

/// After transport-mode decapsulation: the IP header names the protected protocol again and
/// carries the new length.
pub(crate) fn restore_transport_header(
    ip: &mut [u8],
    nh_pos: usize,
    next_header: u8,
) -> Result<(), DropReason> {
    let len = ip.len();
    if nh_pos >= len {
        return Err(DropReason::InnerMalformed);
    }
    ip[nh_pos] = next_header;
    if ver_of(ip) == 4 {
        ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        outer::refresh_v4_checksum(ip);
    } else {
        ip[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    }
    Ok(())
}

/// RFC 3948 §3.1.2, transport mode: the peer computed the TCP/UDP checksum over the addresses
/// it knew, and a NAT between us rewrote the IP header since. With the original addresses
/// (NAT-OA) the checksum is updated incrementally (RFC 1624 eqn. 3) from them to the addresses
/// on the wire; without them it is recomputed. ICMP and other protocols have no pseudo-header
/// and are left alone. A UDP checksum of zero means "none" (RFC 768; over IPv6 only where
/// RFC 6935 allows it) and stays zero: the sender's choice is not ours to change.
/// `ip` is the restored packet and `l4_off` where its TCP/UDP header starts.
fn natt_transport_checksum(
    ip: &mut [u8],
    l4_off: usize,
    proto: u8,
    oa: Option<NatOa>,
) -> Result<(), DropReason> {
    let field = match proto {
        ip_proto::TCP => 16,
        ip_proto::UDP => 6,
        _ => return Ok(()),
    };
    let v6 = ver_of(ip) == 6;
    let (src, dst) = if v6 {
        (8..24, 24..40)
    } else {
        (12..16, 16..20)
    };
    let seg_len = ip.len().saturating_sub(l4_off);
    if seg_len < field + 2 || ip.len() < dst.end {
        return Err(DropReason::InnerMalformed);
    }
    let at = l4_off + field;
    let old = u16::from_be_bytes([ip[at], ip[at + 1]]);
    if proto == ip_proto::UDP && old == 0 {
        return Ok(());
    }
    // NAT-OA of the other IP version than the packet's cannot describe it: recompute.
    let same_family = |a: Option<std::net::IpAddr>| a.is_none_or(|a| a.is_ipv6() == v6);
    let new = match oa {
        Some(oa) if same_family(oa.remote) && same_family(oa.local) => {
            // Only the addresses that were translated take part; the others cancel out.
            let mut was = [0u16; 2];
            let mut now = [0u16; 2];
            for (i, (orig, wire)) in [(oa.remote, &src), (oa.local, &dst)]
                .into_iter()
                .enumerate()
            {
                if let Some(a) = orig {
                    was[i] = match a {
                        std::net::IpAddr::V4(a) => checksum::data(&a.octets()),
                        std::net::IpAddr::V6(a) => checksum::data(&a.octets()),
                    };
                    now[i] = checksum::data(&ip[wire.clone()]);
                }
            }
            !checksum::combine(&[!old, !was[0], !was[1], now[0], now[1]])
        }
        _ => {
            ip[at] = 0;
            ip[at + 1] = 0;
            // The pseudo-header (RFC 768 / RFC 8200 §8.1): addresses, length and protocol sum
            // the same in either version's layout.
            let sum = checksum::combine(&[
                checksum::data(&ip[src]),
                checksum::data(&ip[dst]),
                (seg_len >> 16) as u16,
                seg_len as u16,
                u16::from(proto),
                checksum::data(&ip[l4_off..]),
            ]);
            !sum
        }
    };
    // A computed UDP checksum of zero is sent as all ones (RFC 768).
    let new = if proto == ip_proto::UDP && new == 0 {
        0xffff
    } else {
        new
    };
    ip[at..at + 2].copy_from_slice(&new.to_be_bytes());
    Ok(())
}

#[inline]
pub(crate) fn replay_drop(e: crate::replay::ReplayError) -> DropReason {
    match e {
        crate::replay::ReplayError::Duplicate => DropReason::ReplayDuplicate,
        _ => DropReason::ReplayTooOld,
    }
}
