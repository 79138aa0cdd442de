//! The pcap reader on arbitrary files: errors, never panics or huge allocations.
#![no_main]

use dataplane::pcap::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = Reader::new(data) {
        let mut buf = Vec::new();
        for _ in 0..64 {
            match r.next_record(&mut buf) {
                Ok(Some(h)) => assert_eq!(buf.len(), h.incl_len as usize),
                _ => break,
            }
        }
    }
});
