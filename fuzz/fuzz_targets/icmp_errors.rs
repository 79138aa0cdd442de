//! The gateway's ICMP errors and fragmentation (IPv4; IPv6 and DF-cleared IPv4 for a tunnel's
//! own outer packets) on arbitrary packets: no panic; errors fit 576 / 1280 bytes; fragments
//! fit the MTU and always move forward.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::icmp_err::{
    build, esp_too_big, fragment_v4, fragment_v6, may_report, own_v4_fragmentable, oversize,
    v6_minimum, Error, V4_MIN_PMTU,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&m, data)) = input.split_first() else {
        return;
    };
    let max = 68 + u16::from(m) * 6;
    let _ = (may_report(data), oversize(data, max), v6_minimum(data));
    // A too-big report about our ESP (every address ours): never below the family's floor.
    if let Some((_, peer, mtu)) = esp_too_big(data, |_| true) {
        assert!(mtu >= if peer.is_ipv4() { V4_MIN_PMTU } else { 1280 });
    }
    let mut out = [0u8; 2048];
    let from4 = IpAddr::V4(Ipv4Addr::new(192, 168, 10, 1));
    let from6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    for e in [Error::TimeExceeded, Error::TooBig { mtu: max }] {
        if let Ok(n) = build(e, data, from4, &mut out) {
            assert!(n <= 576);
        }
        if let Ok(n) = build(e, data, from6, &mut out) {
            assert!(n <= 1280);
        }
    }
    // Every fragment fits, and each starts further into the data than the last.
    let mut next = Some(0);
    while let Some(off) = next {
        let Ok((n, after)) = fragment_v4(data, max, off, &mut out) else {
            break;
        };
        assert!(n <= usize::from(max));
        assert!(after.is_none_or(|a| a > off));
        next = after;
    }
    let mut next = Some(0);
    while let Some(off) = next {
        let Ok((n, after)) = fragment_v6(data, max, off, 7, &mut out) else {
            break;
        };
        assert!(n <= usize::from(max));
        assert!(after.is_none_or(|a| a > off));
        next = after;
    }
    let mut own = data.to_vec();
    if own_v4_fragmentable(&mut own, Some(9)).is_ok() {
        assert_eq!(own[6] & 0x40, 0);
    }
});
