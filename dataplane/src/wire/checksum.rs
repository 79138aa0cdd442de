//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Ones-complement sum of `bytes` (not inverted), odd lengths padded with a zero byte.
pub fn data(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Add the two 32-bit halves; carries fold later.
        sum += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = rest.remainder() {
        sum += u64::from(*b) << 8;
    }
    fold(sum)
}

fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Ones-complement sum of several partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|s| u64::from(*s)).sum())
}

/// Partial sum of the IPv4 pseudo-header (RFC 768 / RFC 793).
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, proto: u8, len: u32) -> u16 {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&src.octets());
    b[4..8].copy_from_slice(&dst.octets());
    b[9] = proto;
    b[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    data(&b)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1).
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, len: u32) -> u16 {
    let mut b = [0u8; 40];
    b[..16].copy_from_slice(&src.octets());
    b[16..32].copy_from_slice(&dst.octets());
    b[32..36].copy_from_slice(&len.to_be_bytes());
    b[39] = proto;
    data(&b)
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit field changes from `old` to `new`.
pub fn update(old_csum: u16, old: u16, new: u16) -> u16 {
    !combine(&[!old_csum, !old, new])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn real_ipv4_header() {
        // A header captured from the wire (checksum 0xb861 in place), which sums to 0xffff.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(data(&h), 0xffff);
        let mut z = h;
        z[10] = 0;
        z[11] = 0;
        assert_eq!(!data(&z), 0xb861);
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        for ttl in [0u8, 1, 0x3f, 0xff] {
            let old = u16::from_be_bytes([h[8], h[9]]);
            let csum = u16::from_be_bytes([h[10], h[11]]);
            h[8] = ttl;
            let new = u16::from_be_bytes([h[8], h[9]]);
            let c = update(csum, old, new);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(data(&h), 0xffff, "ttl {ttl}");
        }
    }

    #[test]
    fn odd_lengths_and_wide_sums_agree_with_the_bytewise_definition() {
        let bytes: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 1000, 1001] {
            let mut s: u32 = 0;
            for c in bytes[..n].chunks(2) {
                let w = if c.len() == 2 {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from(c[0]) << 8
                };
                s += u32::from(w);
            }
            while s >> 16 != 0 {
                s = (s & 0xffff) + (s >> 16);
            }
            assert_eq!(data(&bytes[..n]), s as u16, "n={n}");
        }
    }
}
