//! Outer IP reassembly: any sequence of packets (each record: a length byte pair, then the
//! bytes) into a small table, with the clock moving. No panics, and what comes out is a
//! well-formed IP packet no longer than 65,535 + headers.
#![no_main]
use dataplane::reasm::Reassembler;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new(3, 50);
    let mut rest = data;
    let mut now = 0u64;
    while rest.len() >= 3 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 3);
        now += u64::from(rest[2] & 0x3f);
        let pkt = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let _ = dataplane::reasm::is_fragment(pkt);
        if let Ok(Some(whole)) = r.push(pkt, now) {
            assert!(matches!(whole[0] >> 4, 4 | 6));
            assert!(whole.len() <= 65_535 + 512);
        }
    }
});
