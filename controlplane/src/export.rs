//! Negotiated CHILD_SAs in the data plane's SA syntax (the YAML `fgpcap` and the gateway's
//! static keying read), so an operator can decrypt a capture of a live tunnel with the keys
//! `ferrogate-ike` negotiated, and so tests can check those keys against a real peer's traffic.

use std::fmt::Write as _;
use std::net::IpAddr;

use dataplane::net::IpPrefix;

use crate::ike::sa::ChildSaInstall;
use crate::ike::wire::TrafficSelector;

fn key(k: &[u8]) -> String {
    format!("0x{}", *dataplane::ctl::hex(k))
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The smallest list of prefixes that covers exactly the address range of a selector.
pub fn ts_prefixes(ts: &TrafficSelector) -> Vec<IpPrefix> {
    let v4 = ts.start.is_ipv4();
    let bits: u32 = if v4 { 32 } else { 128 };
    let max: u128 = if v4 { u128::from(u32::MAX) } else { u128::MAX };
    let (mut lo, hi) = (to_u128(ts.start), to_u128(ts.end));
    let mk = |a: u128, len: u32| {
        let addr = if v4 {
            IpAddr::V4((a as u32).into())
        } else {
            IpAddr::V6(a.into())
        };
        IpPrefix::new(addr, len as u8).ok()
    };
    if lo == 0 && hi == max {
        return mk(0, 0).into_iter().collect();
    }
    let mut out = Vec::new();
    while lo <= hi {
        // The largest aligned block (size < bits here) starting at lo that ends by hi.
        let mut size = lo.trailing_zeros().min(bits - 1);
        while size > 0 && lo.checked_add((1u128 << size) - 1).is_none_or(|e| e > hi) {
            size -= 1;
        }
        out.extend(mk(lo, bits - size));
        match lo.checked_add(1u128 << size) {
            Some(n) if n <= max => lo = n,
            _ => break,
        }
    }
    out
}

fn prefixes(ts: &[TrafficSelector]) -> String {
    let v: Vec<String> = ts
        .iter()
        .flat_map(ts_prefixes)
        .map(|p| p.to_string())
        .collect();
    format!("[{}]", v.join(", "))
}

/// Both directions of a CHILD_SA as entries of an SA YAML file (`sas:` list items).
pub fn sa_yaml(c: &ChildSaInstall) -> String {
    let cipher = match c.encr.esp_cipher() {
        dataplane::crypto::Cipher::AesCbc128 => "aes-cbc-128",
        dataplane::crypto::Cipher::AesCbc256 => "aes-cbc-256",
        dataplane::crypto::Cipher::AesGcm128 => "aes-gcm-128",
        dataplane::crypto::Cipher::AesGcm256 => "aes-gcm-256",
        _ => "chacha20-poly1305",
    };
    let integ = match c.integ {
        None => "none",
        Some(i) => match i.esp_integrity() {
            dataplane::crypto::Integrity::HmacSha384 => "hmac-sha384",
            dataplane::crypto::Integrity::HmacSha512 => "hmac-sha512",
            _ => "hmac-sha256",
        },
    };
    let mode = match c.mode {
        dataplane::sa::Mode::Tunnel => "tunnel",
        dataplane::sa::Mode::Transport => "transport",
    };
    let mut s = String::new();
    for (dir, spi, enc, auth) in [
        ("out", c.spi_out, &c.enc_out, &c.auth_out),
        ("in", c.spi_in, &c.enc_in, &c.auth_in),
    ] {
        let _ = writeln!(s, "  - name: {}-{}-{dir}-{spi:08x}", c.tunnel, c.child);
        let _ = writeln!(s, "    spi: {spi:#010x}");
        let _ = writeln!(s, "    direction: {dir}");
        let _ = writeln!(s, "    mode: {mode}");
        let _ = writeln!(s, "    cipher: {cipher}");
        let _ = writeln!(s, "    integrity: {integ}");
        let _ = writeln!(s, "    enc_key: \"{}\"", key(enc));
        if !auth.is_empty() {
            let _ = writeln!(s, "    auth_key: \"{}\"", key(auth));
        }
        if c.mode == dataplane::sa::Mode::Tunnel {
            let _ = writeln!(s, "    local: {}", c.local.ip());
            let _ = writeln!(s, "    remote: {}", c.remote.ip());
        }
        if c.udp_encap {
            let _ = writeln!(
                s,
                "    udp_encap: {{ local_port: {}, remote_port: {} }}",
                c.local.port(),
                c.remote.port()
            );
        }
        let _ = writeln!(s, "    esn: {}", c.esn);
        let _ = writeln!(s, "    local_ts: {}", prefixes(&c.local_ts));
        let _ = writeln!(s, "    remote_ts: {}", prefixes(&c.remote_ts));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(a: &str, b: &str) -> TrafficSelector {
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 65535,
            start: a.parse().unwrap(),
            end: b.parse().unwrap(),
        }
    }

    #[test]
    fn ranges_become_prefixes() {
        let p = |v: Vec<IpPrefix>| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(
            p(ts_prefixes(&ts("192.168.10.0", "192.168.10.255"))),
            ["192.168.10.0/24"]
        );
        assert_eq!(p(ts_prefixes(&ts("10.0.0.1", "10.0.0.1"))), ["10.0.0.1/32"]);
        assert_eq!(
            p(ts_prefixes(&ts("10.0.0.1", "10.0.0.6"))),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        assert_eq!(
            p(ts_prefixes(&ts("0.0.0.0", "255.255.255.255"))),
            ["0.0.0.0/0"]
        );
        assert_eq!(
            p(ts_prefixes(&ts(
                "::",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            ))),
            ["::/0"]
        );
        assert_eq!(
            p(ts_prefixes(&ts("2001:db8::", "2001:db8::ffff"))),
            ["2001:db8::/112"]
        );
    }
}
