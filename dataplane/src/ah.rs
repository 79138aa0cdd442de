//! AH (RFC 4302) encapsulation and decapsulation, tunnel and transport mode.
//!
//! The ICV covers the IP header with its mutable fields zeroed (§3.3.3.1), the AH header with
//! the ICV field zeroed, the payload, and with ESN the high half of the sequence number
//! appended (§3.3.3.2.1 / RFC 4303 §2.2.1 by reference). IPv4 options and IPv6 extension
//! headers in front of AH are covered with their mutable parts zeroed (RFC 4302 App. A; RFC 8200
//! §4.2 for IPv6 options). IPv6 routing headers are covered as they arrive (type 0, whose
//! addresses the sender would reorder, is deprecated by RFC 5095).

use crate::buf::PacketBuf;
use crate::crypto::Mac;
use crate::drop::DropReason;
use crate::esp::{finish_tunnel_decap, replay_drop, restore_transport_header};
use crate::outer::{self, Outer};
use crate::sa::{InboundSa, Mode, OutboundSa};
use crate::wire::ip_proto;

const AH_FIXED: usize = 12;
static ZEROS: [u8; 64] = [0; 64];

/// AH header length for an ICV of `icv_len` bytes: 32-bit aligned for IPv4 and 64-bit aligned
/// for IPv6 (RFC 4302 §3.3.3.2.1), the difference being explicit padding in the ICV field.
#[inline]
pub(crate) fn ah_len(icv_len: usize, v6: bool) -> usize {
    let align = if v6 { 8 } else { 4 };
    (AH_FIXED + icv_len).div_ceil(align) * align
}

/// Copies the fixed IP header with its mutable fields zeroed into `out` and returns its length.
fn zeroed_ip_header(ip: &[u8], hdr_len: usize, out: &mut [u8; 60]) -> usize {
    if ip[0] >> 4 == 4 {
        out[..hdr_len].copy_from_slice(&ip[..hdr_len]);
        out[1] = 0; // TOS
        out[6] = 0; // flags + fragment offset
        out[7] = 0;
        out[8] = 0; // TTL
        out[10] = 0; // checksum
        out[11] = 0;
        zero_mutable_v4_options(&mut out[20..hdr_len]);
        hdr_len
    } else {
        out[..40].copy_from_slice(&ip[..40]);
        out[0] = 0x60; // traffic class and flow label are mutable
        out[1] = 0;
        out[2] = 0;
        out[3] = 0;
        out[7] = 0; // hop limit
        40
    }
}

/// RFC 4302 Appendix A.1: IPv4 options that routers may change are zeroed whole; the
/// immutable ones (end of list, no-op, the security options, router alert, SDMDD) are kept.
/// A malformed option list is left as it is (the ICV then fails, as it should).
fn zero_mutable_v4_options(opts: &mut [u8]) {
    const IMMUTABLE: [u8; 6] = [130, 133, 134, 148, 149, 1];
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return,
            1 => i += 1,
            t => {
                let Some(&len) = opts.get(i + 1) else { return };
                let len = usize::from(len);
                if len < 2 || i + len > opts.len() {
                    return;
                }
                if !IMMUTABLE.contains(&t) {
                    opts[i..i + len].fill(0);
                }
                i += len;
            }
        }
    }
}

/// RFC 8200 §4.2: in hop-by-hop and destination options, the data of an option whose type has
/// the "may change en route" bit (0x20) counts as zeros for AH; type and length are kept.
/// Walks the IPv6 extension headers in `ext` (which begins with the header that the fixed
/// header's next-header byte names).
fn zero_mutable_v6_options(first: u8, ext: &mut [u8]) {
    use crate::wire::ip_proto;
    let mut nh = first;
    let mut off = 0;
    while off + 2 <= ext.len() {
        let len = (usize::from(ext[off + 1]) + 1) * 8;
        if off + len > ext.len() {
            return;
        }
        if nh == ip_proto::HOPOPT || nh == ip_proto::DSTOPTS {
            let opts = &mut ext[off + 2..off + len];
            let mut i = 0;
            while i < opts.len() {
                if opts[i] == 0 {
                    i += 1; // Pad1
                    continue;
                }
                let Some(&olen) = opts.get(i + 1) else { return };
                let end = i + 2 + usize::from(olen);
                if end > opts.len() {
                    return;
                }
                if opts[i] & 0x20 != 0 {
                    opts[i + 2..end].fill(0);
                }
                i = end;
            }
        }
        nh = ext[off];
        off += len;
    }
}

/// Extension headers in front of AH longer than this are refused (they do not occur in
/// practice; the bound keeps the ICV input on the stack).
const MAX_EXT: usize = 512;

/// Computes (or verifies) the ICV of the AH packet `ip` whose AH header is at `ah_off`.
fn icv(
    mac: &dyn Mac,
    ip: &[u8],
    ah_off: usize,
    ah_total: usize,
    seq_hi: Option<u32>,
    expect: Option<&[u8]>,
    out: &mut [u8],
) -> bool {
    let v4 = ip[0] >> 4 == 4;
    let fixed = if v4 { ah_off } else { 40 };
    let mut hdr = [0u8; 60];
    let n = zeroed_ip_header(ip, fixed, &mut hdr);
    // IPv6 extension headers in front of AH, with mutable option data zeroed.
    let mut ext_buf = [0u8; MAX_EXT];
    let ext_len = ah_off - n;
    if ext_len > MAX_EXT {
        return false;
    }
    ext_buf[..ext_len].copy_from_slice(&ip[n..ah_off]);
    if !v4 {
        zero_mutable_v6_options(ip[6], &mut ext_buf[..ext_len]);
    }
    let ext = &ext_buf[..ext_len];
    let ah_hdr = &ip[ah_off..ah_off + AH_FIXED];
    // The ICV is zeroed; explicit padding after it is covered as it is on the wire
    // (RFC 4302 §3.3.3.2.1), which is zeros from us.
    let icv_len = mac.icv_len();
    let zero_icv = &ZEROS[..icv_len];
    let padding = &ip[ah_off + AH_FIXED + icv_len..ah_off + ah_total];
    let payload = &ip[ah_off + ah_total..];
    let hi = seq_hi.map(u32::to_be_bytes).unwrap_or_default();
    let hi: &[u8] = if seq_hi.is_some() { &hi } else { &[] };
    let chunks: [&[u8]; 7] = [&hdr[..n], ext, ah_hdr, zero_icv, padding, payload, hi];
    match expect {
        Some(icv) => mac.verify(&chunks, icv),
        None => {
            mac.compute(&chunks, out);
            true
        }
    }
}

pub(crate) fn encap<B: PacketBuf + ?Sized>(
    sa: &OutboundSa,
    mac: &dyn Mac,
    buf: &mut B,
) -> Result<(), DropReason> {
    sa.check_hard()?;
    let ver = crate::esp::inner_ip(buf)?;
    let icv_len = mac.icv_len();
    // Where AH goes and what it names as the next header.
    let (outer_v6, hdr_len, nh_pos, next_header) = match sa.mode {
        Mode::Tunnel => {
            let nh = if ver == 4 {
                ip_proto::IPV4
            } else {
                ip_proto::IPV6
            };
            (sa.outer_v6, usize::from(sa.header_len), 0, nh)
        }
        Mode::Transport => {
            let (_, _, proto, l4_off, nh_pos, _, _, fragment) = outer::ip_headers(buf.data())?;
            if fragment {
                return Err(DropReason::OuterFragment);
            }
            (ver == 6, l4_off, nh_pos, proto)
        }
    };
    let ah_total = ah_len(icv_len, outer_v6);
    let head = match sa.mode {
        Mode::Tunnel => hdr_len + ah_total,
        Mode::Transport => ah_total,
    };
    if buf.headroom() < head {
        return Err(DropReason::NoHeadroom);
    }
    let seq = sa.next_seq()?;
    let seq_hi = sa.esn.then_some((seq >> 32) as u32);
    sa.account(buf.len());
    let data = buf.prepend(head).map_err(|_| DropReason::NoHeadroom)?;
    match sa.mode {
        Mode::Tunnel => {
            let tc = outer::traffic_class(&data[head..]);
            // The inner packet's DF (an IPv6 one is never fragmented on the way: as DF).
            let inner_df = ver == 6 || data.get(head + 6).is_some_and(|b| b & 0x40 != 0);
            data[..hdr_len].copy_from_slice(&sa.header[..hdr_len]);
            let dscp = sa.dscp.map(|d| d << 2).unwrap_or(tc & 0xfc);
            let ecn = match sa.ecn {
                crate::sa::EcnMode::Normal => tc & 3,
                crate::sa::EcnMode::Compat => 0,
            };
            outer::set_traffic_class(data, dscp | ecn);
            if !sa.outer_v6 {
                // RFC 4301 §8.1, as for ESP (the ICV leaves the flags out: mutable).
                data[6] = if sa.outer_df(inner_df) { 0x40 } else { 0 };
                data[7] = 0;
            }
        }
        Mode::Transport => {
            data.copy_within(head..head + hdr_len, 0);
            data[nh_pos] = ip_proto::AH;
        }
    }
    let total = data.len();
    if data[0] >> 4 == 4 {
        data[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        if sa.mode == Mode::Tunnel {
            data[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
        }
    } else {
        data[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    }
    let ah = &mut data[hdr_len..hdr_len + ah_total];
    ah[0] = next_header;
    ah[1] = (ah_total / 4 - 2) as u8; // RFC 4302 §2.2: length in 32-bit words, minus 2
    ah[2] = 0;
    ah[3] = 0;
    ah[4..8].copy_from_slice(&sa.spi.to_be_bytes());
    ah[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
    ah[AH_FIXED..].fill(0);
    let mut out = [0u8; 64];
    if !icv(mac, data, hdr_len, ah_total, seq_hi, None, &mut out) {
        return Err(DropReason::Malformed);
    }
    data[hdr_len + AH_FIXED..hdr_len + AH_FIXED + icv_len].copy_from_slice(&out[..icv_len]);
    if data[0] >> 4 == 4 {
        outer::refresh_v4_checksum(data);
    }
    Ok(())
}

pub(crate) fn decap<B: PacketBuf + ?Sized>(
    sa: &InboundSa,
    mac: &dyn Mac,
    buf: &mut B,
    o: &Outer,
) -> Result<(), DropReason> {
    let icv_len = mac.icv_len();
    let data = buf.data();
    let v6 = data[0] >> 4 == 6;
    let ah = data.get(o.sec_off..).ok_or(DropReason::BadLength)?;
    if ah.len() < AH_FIXED {
        return Err(DropReason::BadLength);
    }
    let ah_total = (usize::from(ah[1]) + 2) * 4;
    // The ICV field may carry explicit padding (RFC 4302 §2.6), covered by the ICV: Linux
    // pads IPv4 AH to 8 bytes unless the SA says align4 (32 bytes with HMAC-SHA-256-128,
    // where we send 28). Any length from ours up, in whole units of the family's alignment.
    let unit = if v6 { 8 } else { 4 };
    if ah_total < ah_len(icv_len, v6) || ah_total % unit != 0 || ah_total > ah.len() {
        return Err(DropReason::BadLength);
    }
    let next_header = ah[0];
    let seq_lo = u32::from_be_bytes([ah[8], ah[9], ah[10], ah[11]]);
    let seq = sa.state.window.check(seq_lo).map_err(replay_drop)?;
    let seq_hi = sa.esn.then_some((seq >> 32) as u32);
    let received = &ah[AH_FIXED..AH_FIXED + icv_len];
    if !icv(
        mac,
        data,
        o.sec_off,
        ah_total,
        seq_hi,
        Some(received),
        &mut [],
    ) {
        return Err(DropReason::IcvMismatch);
    }
    sa.state.window.update(seq).map_err(replay_drop)?;
    if next_header == ip_proto::NO_NEXT {
        return Err(DropReason::DummyPacket);
    }
    match sa.mode {
        Mode::Tunnel => {
            let want = match next_header {
                ip_proto::IPV4 => 4,
                ip_proto::IPV6 => 6,
                _ => return Err(DropReason::BadNextHeader),
            };
            let front = o.sec_off + ah_total;
            let payload_len = buf.len() - front;
            buf.adj(front).map_err(|_| DropReason::BadLength)?;
            finish_tunnel_decap(buf, want, o.ecn, payload_len)
        }
        Mode::Transport => {
            let hdr_len = o.sec_off;
            buf.data_mut().copy_within(0..hdr_len, ah_total);
            buf.adj(ah_total).map_err(|_| DropReason::BadLength)?;
            restore_transport_header(buf.data_mut(), o.nh_pos, next_header)
        }
    }
}
