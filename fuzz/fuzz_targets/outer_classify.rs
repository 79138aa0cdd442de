//! Outer classification (ESP, AH, ESP-in-UDP, IKE, keepalive, clear) on arbitrary bytes: no
//! panic, and every offset it reports lies inside the packet.
#![no_main]

use dataplane::outer::{classify, Arrival};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Arrival::Ipsec(o)) = classify(data, |p| p == 4500) {
        assert!(o.sec_off < o.ip_len && o.ip_len <= data.len());
        assert!(o.nh_pos < o.ip_hdr_len.max(10));
    }
});
