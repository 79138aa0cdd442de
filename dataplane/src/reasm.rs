//! Outer IP reassembly (RFC 791 §3.2, RFC 8200 §4.5, RFC 5722): fragments of an ESP, AH or
//! ESP-in-UDP packet are put back together before the ESP core sees them (the core drops a
//! fragment as `outer_fragment`).
//!
//! All memory is allocated up front: a fixed number of slots, each with room for the largest
//! datagram (64 KiB) and a bitmap of the 8-byte units received. Nothing allocates per packet.
//! Overlapping fragments discard the whole datagram (RFC 5722; for IPv4 too, since overlaps are
//! only ever an attack on a tunnel's outer packets); so do inconsistent lengths. When every slot
//! is busy, the oldest partial datagram is evicted. Every outcome is counted.

use crate::outer;
use crate::wire::ip_proto;

/// Room for the unfragmentable headers (IPv4 with options: 60; IPv6 with extensions).
const MAX_HDR: usize = 512;
/// The largest reassembled payload.
const MAX_PAYLOAD: usize = 65_535;
const UNITS: usize = MAX_PAYLOAD.div_ceil(8);

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReasmStats {
    /// Fragments taken in.
    pub fragments: u64,
    /// Datagrams put back together.
    pub reassembled: u64,
    /// Partial datagrams dropped because they grew too old.
    pub timed_out: u64,
    /// Partial datagrams evicted to make room.
    pub evicted: u64,
    /// Datagrams dropped for overlapping fragments (RFC 5722).
    pub overlaps: u64,
    /// Fragments with impossible offsets or lengths (and the datagrams they belonged to).
    pub malformed: u64,
    /// Datagrams that would exceed 65,535 bytes.
    pub too_big: u64,
}

impl ReasmStats {
    /// Adds another set (another pipeline's) into this one.
    pub fn merge(&mut self, other: &ReasmStats) {
        self.fragments += other.fragments;
        self.reassembled += other.reassembled;
        self.timed_out += other.timed_out;
        self.evicted += other.evicted;
        self.overlaps += other.overlaps;
        self.malformed += other.malformed;
        self.too_big += other.too_big;
    }
}

/// Why a fragment was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasmError {
    /// Not an IP fragment at all.
    NotFragment,
    /// Malformed header, offset or length.
    Malformed,
    /// Overlaps a fragment already received: the datagram is discarded.
    Overlap,
    /// The datagram would be larger than 65,535 bytes.
    TooBig,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Key {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
}

struct Slot {
    used: bool,
    key: Key,
    born_ms: u64,
    /// Headers of the first fragment (offset 0), once it came.
    hdr: [u8; MAX_HDR],
    hdr_len: usize,
    /// IPv6: where the byte that names the fragment header sits in `hdr`.
    nh_pos: usize,
    /// The protocol after the fragment header (IPv6) / the IPv4 protocol.
    next: u8,
    /// Payload bytes by offset.
    data: Box<[u8]>,
    have: Box<[u64]>,
    /// Payload length, once the last fragment came.
    total: Option<usize>,
    /// Bytes received.
    got: usize,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            used: false,
            key: Key::default(),
            born_ms: 0,
            hdr: [0; MAX_HDR],
            hdr_len: 0,
            nh_pos: 0,
            next: 0,
            data: vec![0; MAX_HDR + MAX_PAYLOAD].into_boxed_slice(),
            have: vec![0; UNITS.div_ceil(64)].into_boxed_slice(),
            total: None,
            got: 0,
        }
    }

    fn reset(&mut self, key: Key, now_ms: u64) {
        self.used = true;
        self.key = key;
        self.born_ms = now_ms;
        self.hdr_len = 0;
        self.total = None;
        self.got = 0;
        self.have.iter_mut().for_each(|w| *w = 0);
    }

    fn any_set(&self, from: usize, to: usize) -> bool {
        (from..to).any(|u| self.have[u / 64] & (1 << (u % 64)) != 0)
    }

    fn set(&mut self, from: usize, to: usize) {
        for u in from..to {
            self.have[u / 64] |= 1 << (u % 64);
        }
    }

    fn complete(&self) -> bool {
        match self.total {
            Some(t) => self.got == t && self.hdr_len > 0,
            None => false,
        }
    }
}

/// A fragment's parsed view.
struct Frag<'a> {
    key: Key,
    offset: usize,
    more: bool,
    payload: &'a [u8],
    /// Headers before the fragment data (for offset 0 only they are kept).
    hdr: &'a [u8],
    nh_pos: usize,
    next: u8,
}

fn parse(ip: &[u8]) -> Result<Frag<'_>, ReasmError> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            if ip.len() < 20 {
                return Err(ReasmError::Malformed);
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ihl < 20 || total < ihl || total > ip.len() {
                return Err(ReasmError::Malformed);
            }
            let f = u16::from_be_bytes([ip[6], ip[7]]);
            let more = f & 0x2000 != 0;
            let offset = usize::from(f & 0x1fff) * 8;
            if !more && offset == 0 {
                return Err(ReasmError::NotFragment);
            }
            let mut key = Key {
                v6: false,
                id: u32::from(u16::from_be_bytes([ip[4], ip[5]])),
                proto: ip[9],
                ..Key::default()
            };
            key.src[..4].copy_from_slice(&ip[12..16]);
            key.dst[..4].copy_from_slice(&ip[16..20]);
            Ok(Frag {
                key,
                offset,
                more,
                payload: &ip[ihl..total],
                hdr: &ip[..ihl],
                nh_pos: 9,
                next: ip[9],
            })
        }
        Some(6) => {
            if ip.len() < 40 {
                return Err(ReasmError::Malformed);
            }
            let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if total > ip.len() {
                return Err(ReasmError::Malformed);
            }
            let (nh, off, nh_pos, _) = outer::v6_walk(ip, total, |nh, _| nh != ip_proto::FRAGMENT)
                .map_err(|_| ReasmError::Malformed)?;
            if nh != ip_proto::FRAGMENT {
                return Err(ReasmError::NotFragment);
            }
            let fh = ip.get(off..off + 8).ok_or(ReasmError::Malformed)?;
            let f = u16::from_be_bytes([fh[2], fh[3]]);
            let more = f & 1 != 0;
            let offset = usize::from(f >> 3) * 8;
            if !more && offset == 0 {
                // An atomic fragment (RFC 6946): the core reads through its header.
                return Err(ReasmError::NotFragment);
            }
            let mut key = Key {
                v6: true,
                id: u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]),
                ..Key::default()
            };
            key.src.copy_from_slice(&ip[8..24]);
            key.dst.copy_from_slice(&ip[24..40]);
            // The fragment header must lie within the IPv6 payload length (found by fuzzing).
            let payload = ip.get(off + 8..total).ok_or(ReasmError::Malformed)?;
            Ok(Frag {
                key,
                offset,
                more,
                payload,
                hdr: &ip[..off],
                nh_pos,
                next: fh[0],
            })
        }
        _ => Err(ReasmError::Malformed),
    }
}

/// Is this IP packet a fragment (IPv4 MF or offset, or an IPv6 fragment header)?
pub fn is_fragment(ip: &[u8]) -> bool {
    outer::ip_headers(ip).is_ok_and(|h| h.7)
}

/// The reassembly table.
pub struct Reassembler {
    slots: Box<[Slot]>,
    timeout_ms: u64,
    /// Counters.
    pub stats: ReasmStats,
    /// The slot whose datagram was last handed out: freed on the next call.
    handed_out: Option<usize>,
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("slots", &self.slots.len())
            .field("timeout_ms", &self.timeout_ms)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Reassembler {
    /// `slots` datagrams in progress at once (each takes about 66 KiB), dropped after
    /// `timeout_ms` (RFC 8200 says 60 s; 30 s is plenty for a tunnel's outer packets).
    pub fn new(slots: usize, timeout_ms: u64) -> Reassembler {
        Reassembler {
            slots: (0..slots.max(1)).map(|_| Slot::new()).collect(),
            timeout_ms,
            stats: ReasmStats::default(),
            handed_out: None,
        }
    }

    /// Takes a fragment (a whole IP packet, `ip`) at time `now_ms`. Returns the reassembled
    /// datagram when this fragment completed one (valid until the next call), `Ok(None)` while
    /// fragments are missing, or why the fragment was dropped.
    pub fn push(&mut self, ip: &[u8], now_ms: u64) -> Result<Option<&[u8]>, ReasmError> {
        if let Some(i) = self.handed_out.take() {
            self.slots[i].used = false;
        }
        let f = match parse(ip) {
            Ok(f) => f,
            Err(ReasmError::NotFragment) => return Err(ReasmError::NotFragment),
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        self.stats.fragments += 1;
        let timeout = self.timeout_ms;
        for s in self.slots.iter_mut() {
            if s.used && now_ms.saturating_sub(s.born_ms) > timeout {
                s.used = false;
                self.stats.timed_out += 1;
            }
        }
        let idx = match self.slots.iter().position(|s| s.used && s.key == f.key) {
            Some(i) => i,
            None => {
                let i = match self.slots.iter().position(|s| !s.used) {
                    Some(i) => i,
                    None => {
                        let oldest = self
                            .slots
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, s)| s.born_ms)
                            .map_or(0, |(i, _)| i);
                        self.stats.evicted += 1;
                        oldest
                    }
                };
                self.slots[i].reset(f.key, now_ms);
                i
            }
        };
        let s = &mut self.slots[idx];
        let len = f.payload.len();
        let end = f.offset + len;
        let bad = len == 0 || (f.more && len % 8 != 0) || s.total.is_some_and(|t| end > t);
        let bad = bad
            || (!f.more && s.total.is_some_and(|t| t != end))
            || (!f.more && s.any_set(end.div_ceil(8), UNITS));
        if bad {
            s.used = false;
            self.stats.malformed += 1;
            return Err(ReasmError::Malformed);
        }
        if end + s.hdr_len.max(f.hdr.len()) > MAX_PAYLOAD || f.hdr.len() > MAX_HDR {
            s.used = false;
            self.stats.too_big += 1;
            return Err(ReasmError::TooBig);
        }
        let (u0, u1) = (f.offset / 8, end.div_ceil(8));
        if s.any_set(u0, u1) {
            s.used = false;
            self.stats.overlaps += 1;
            return Err(ReasmError::Overlap);
        }
        s.set(u0, u1);
        s.data[MAX_HDR + f.offset..MAX_HDR + end].copy_from_slice(f.payload);
        s.got += len;
        if !f.more {
            s.total = Some(end);
        }
        if f.offset == 0 {
            s.hdr[..f.hdr.len()].copy_from_slice(f.hdr);
            s.hdr_len = f.hdr.len();
            s.nh_pos = f.nh_pos;
            s.next = f.next;
        }
        if !s.complete() {
            return Ok(None);
        }
        // Put the first fragment's headers in front of the payload and make them describe
        // the whole datagram.
        let total = s.total.unwrap_or(0);
        let h = s.hdr_len;
        // The size checks above knew the first fragment's header only once it had come: a
        // last fragment ending near 65,535 behind a small header, then a first fragment with
        // a longer one (IPv4 options), would make a length field wrap.
        let whole = if s.key.v6 { h - 40 + total } else { h + total };
        if whole > MAX_PAYLOAD {
            s.used = false;
            self.stats.too_big += 1;
            return Err(ReasmError::TooBig);
        }
        let start = MAX_HDR - h;
        let (hdr, data) = (&s.hdr[..h], &mut s.data);
        data[start..MAX_HDR].copy_from_slice(hdr);
        let out = &mut data[start..MAX_HDR + total];
        if s.key.v6 {
            let plen = (h - 40 + total) as u16;
            out[4..6].copy_from_slice(&plen.to_be_bytes());
            out[s.nh_pos] = s.next;
        } else {
            let tl = (h + total) as u16;
            out[2..4].copy_from_slice(&tl.to_be_bytes());
            out[6] &= 0x40; // keep DF, clear MF and the offset
            out[7] = 0;
            out[10] = 0;
            out[11] = 0;
            let c = !crate::wire::checksum::data(&out[..h]);
            out[10..12].copy_from_slice(&c.to_be_bytes());
        }
        self.stats.reassembled += 1;
        self.handed_out = Some(idx);
        Ok(Some(&self.slots[idx].data[start..MAX_HDR + total]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(len: usize, id: u16) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6] = 0x00;
        p[8] = 64;
        p[9] = 50;
        p[12..16].copy_from_slice(&[198, 51, 100, 1]);
        p[16..20].copy_from_slice(&[203, 0, 113, 1]);
        for (i, b) in p[20..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let c = !crate::wire::checksum::data(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// Splits an IPv4 packet into fragments of `size` payload bytes (a multiple of 8).
    fn split4(p: &[u8], size: usize) -> Vec<Vec<u8>> {
        let body = &p[20..];
        let mut v = Vec::new();
        for (i, chunk) in body.chunks(size).enumerate() {
            let mut f = p[..20].to_vec();
            f.extend_from_slice(chunk);
            let off = (i * size / 8) as u16;
            let more = (i + 1) * size < body.len();
            f[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
            f[6..8].copy_from_slice(&(off | if more { 0x2000 } else { 0 }).to_be_bytes());
            v.push(f);
        }
        v
    }

    #[test]
    fn ipv4_out_of_order_reassembles_to_the_original() {
        let p = v4(3000, 7);
        let mut fr = split4(&p, 1000);
        fr.swap(0, 2);
        let mut r = Reassembler::new(4, 30_000);
        assert!(is_fragment(&fr[0]));
        assert_eq!(r.push(&fr[0], 0), Ok(None));
        assert_eq!(r.push(&fr[1], 0), Ok(None));
        let got = r.push(&fr[2], 0).unwrap().unwrap().to_vec();
        assert_eq!(got, p);
        assert_eq!(r.stats.reassembled, 1);
        assert_eq!(r.push(&p, 0), Err(ReasmError::NotFragment));
    }

    #[test]
    fn overlaps_bad_lengths_and_limits_discard_the_datagram() {
        let p = v4(2000, 9);
        let fr = split4(&p, 800);
        let mut r = Reassembler::new(2, 30_000);
        r.push(&fr[0], 0).unwrap();
        // The same fragment again overlaps: the datagram is gone (RFC 5722).
        assert_eq!(r.push(&fr[0], 0), Err(ReasmError::Overlap));
        assert_eq!(r.push(&fr[1], 0), Ok(None));
        assert_eq!(
            r.push(&fr[2], 0),
            Ok(None),
            "fragment 0 was discarded with the datagram"
        );
        // A non-last fragment whose length is not a multiple of 8.
        let mut odd = fr[1].clone();
        odd.pop();
        let n = odd.len() as u16;
        odd[2..4].copy_from_slice(&n.to_be_bytes());
        odd[4] = 0x77;
        assert_eq!(r.push(&odd, 0), Err(ReasmError::Malformed));
        // Beyond 65,535 bytes.
        let mut big = fr[1].clone();
        big[4] = 0x66;
        big[6..8].copy_from_slice(&(0x2000u16 | 8190).to_be_bytes());
        assert_eq!(r.push(&big, 0), Err(ReasmError::TooBig));
        // A last fragment ending at 65,512 (20-byte header: fits), then the first with 40
        // bytes of options: 65,552 bytes whole, refused when it completes, not wrapped.
        let sum = |p: &mut Vec<u8>| {
            let h = usize::from(p[0] & 0x0f) * 4;
            p[10..12].fill(0);
            let c = !crate::wire::checksum::data(&p[..h]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        };
        let mut r = Reassembler::new(2, 30_000);
        let mut last = v4(20 + 512, 0x55);
        last[6..8].copy_from_slice(&(65_000u16 / 8).to_be_bytes());
        sum(&mut last);
        assert_eq!(r.push(&last, 0), Ok(None));
        let mut first = vec![1u8; 60 + 65_000];
        first[..20].copy_from_slice(&last[..20]);
        first[0] = 0x4f; // IHL 15: 40 bytes of options (NOPs)
        first[2..4].copy_from_slice(&((60 + 65_000) as u16).to_be_bytes());
        first[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
        sum(&mut first);
        assert_eq!(r.push(&first, 0), Err(ReasmError::TooBig));
        assert_eq!(r.stats.too_big, 1);
        // A last fragment that ends before data already received.
        let mut r = Reassembler::new(2, 30_000);
        r.push(&fr[2], 0).unwrap();
        let mut short_last = fr[0].clone();
        short_last[6..8].copy_from_slice(&0u16.to_be_bytes());
        short_last[6] = 0;
        short_last[7] = 1; // offset 8, no MF: ends at 808 < 1600 already seen
        assert_eq!(r.push(&short_last, 0), Err(ReasmError::Malformed));
        // An IPv6 fragment header past the payload length (a panic the fuzzer found).
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        v6[6] = 44;
        v6[43] = 1; // M flag
        assert_eq!(r.push(&v6, 0), Err(ReasmError::Malformed));
        // Truncated or garbage input never panics.
        for junk in [&[][..], &[0x45][..], &[0x60; 39][..], &fr[0][..30]] {
            assert!(r.push(junk, 0).is_err());
        }
    }

    #[test]
    fn old_partials_time_out_and_a_full_table_evicts_the_oldest() {
        let a = split4(&v4(1600, 1), 800);
        let b = split4(&v4(1600, 2), 800);
        let c = split4(&v4(1600, 3), 800);
        let mut r = Reassembler::new(2, 1000);
        r.push(&a[0], 0).unwrap();
        r.push(&b[0], 10).unwrap();
        r.push(&c[0], 20).unwrap(); // evicts a
        assert_eq!(r.stats.evicted, 1);
        assert_eq!(r.push(&a[1], 30), Ok(None)); // a starts over (and evicts b)
        assert!(r.push(&c[1], 40).unwrap().is_some());
        // b's first half is older than the timeout by now.
        r.push(&b[1], 5000).unwrap();
        assert!(r.stats.timed_out >= 1);
    }

    #[test]
    fn ipv6_with_an_extension_header_before_the_fragment_header() {
        // IPv6 + destination options (8 bytes) + fragment header; ESP payload of 2000 bytes.
        let body: Vec<u8> = (0..2000u32).map(|i| (i * 13) as u8).collect();
        let mut whole = vec![0u8; 48];
        whole[0] = 0x60;
        whole[4..6].copy_from_slice(&((8 + body.len()) as u16).to_be_bytes());
        whole[6] = 60; // destination options
        whole[7] = 64;
        whole[8..24].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        whole[24..40].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        whole[40] = 50; // next: ESP
        whole[41] = 0;
        whole[42..48].copy_from_slice(&[1, 4, 0, 0, 0, 0]); // PadN
        whole.extend_from_slice(&body);
        let mut frags = Vec::new();
        for (i, chunk) in body.chunks(1200).enumerate() {
            let mut f = whole[..48].to_vec();
            f[40] = 44; // destination options -> fragment header
            let more = (i + 1) * 1200 < body.len();
            let off = ((i * 1200 / 8) as u16) << 3 | u16::from(more);
            f.extend_from_slice(&[50, 0]);
            f.extend_from_slice(&off.to_be_bytes());
            f.extend_from_slice(&0xdead_beefu32.to_be_bytes());
            f.extend_from_slice(chunk);
            let plen = (f.len() - 40) as u16;
            f[4..6].copy_from_slice(&plen.to_be_bytes());
            frags.push(f);
        }
        let mut r = Reassembler::new(2, 30_000);
        assert!(is_fragment(&frags[1]));
        assert_eq!(r.push(&frags[1], 0), Ok(None));
        let got = r.push(&frags[0], 0).unwrap().unwrap().to_vec();
        assert_eq!(got, whole);
    }

    /// Destination options after the fragment header (in the fragmentable part, RFC 8200
    /// §4.5): a later fragment's payload is data, not a header. Before, it was read as one
    /// (here its "length" pointed past the packet) and the fragment was not recognised, so
    /// the datagram never completed. An atomic fragment with only the reserved bits set is
    /// not a fragment.
    #[test]
    fn ipv6_headers_after_the_fragment_header_are_only_in_the_first_fragment() {
        let mut whole = vec![0u8; 48];
        whole[0] = 0x60;
        whole[6] = 60; // destination options, then ESP
        whole[7] = 64;
        whole[8..24].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        whole[24..40].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        whole[40] = 50;
        whole[42..48].copy_from_slice(&[1, 4, 0, 0, 0, 0]); // PadN
        whole.extend_from_slice(&[0xee; 2000]);
        let plen = (whole.len() - 40) as u16;
        whole[4..6].copy_from_slice(&plen.to_be_bytes());
        let fragmentable = &whole[40..];
        let mut frags = Vec::new();
        for (i, chunk) in fragmentable.chunks(1200).enumerate() {
            let mut f = whole[..40].to_vec();
            f[6] = 44;
            let more = (i + 1) * 1200 < fragmentable.len();
            let off = ((i * 1200 / 8) as u16) << 3 | u16::from(more);
            f.extend_from_slice(&[60, 0]);
            f.extend_from_slice(&off.to_be_bytes());
            f.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
            f.extend_from_slice(chunk);
            let plen = (f.len() - 40) as u16;
            f[4..6].copy_from_slice(&plen.to_be_bytes());
            frags.push(f);
        }
        assert!(is_fragment(&frags[0]) && is_fragment(&frags[1]));
        let mut r = Reassembler::new(2, 30_000);
        assert_eq!(r.push(&frags[1], 0), Ok(None));
        let got = r.push(&frags[0], 0).unwrap().unwrap().to_vec();
        assert_eq!(got, whole);
        // Atomic: offset 0, M clear, reserved bits set.
        let mut atomic = frags[0][..48].to_vec();
        atomic[42..44].copy_from_slice(&6u16.to_be_bytes());
        atomic[40] = 59; // no next header
        atomic[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(!is_fragment(&atomic));
        assert_eq!(r.push(&atomic, 0), Err(ReasmError::NotFragment));
    }
}
