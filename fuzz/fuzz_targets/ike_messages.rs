//! IKEv2 messages from the wire: the codec, a responder receiving first messages, and an
//! established IKE SA receiving anything with its SPIs (the SK decrypt and payload paths; SKF
//! fragments reach the reassembler, which checks their integrity first). The reassembly
//! buffer itself is driven with fragments as if they had verified: numbers, totals, message
//! IDs and sizes from the input (RFC 7383 §2.6 rules, limits).
#![no_main]
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use controlplane::config::Config;
use controlplane::ike::daemon::Daemon;
use controlplane::ike::frag::{Frag, MAX_REASSEMBLED};
use controlplane::ike::sa::Action;
use controlplane::ike::wire::{parse_chain, Message};
use libfuzzer_sys::fuzz_target;

fn cfg(local: &str, remote: &str, start: &str) -> Config {
    let y = format!("tunnels:\n  - name: t\n    local: {local}\n    remote: {remote}\n    psk: \"0123456789abcdef\"\n    ike_proposals: [aes256-sha256-modp2048, aes128gcm16-prfsha256-curve25519]\n    start: {start}\n    children:\n      - {{ name: c, local_ts: [10.1.0.0/16], remote_ts: [10.2.0.0/16], esp_proposals: [aes256gcm16] }}\n");
    Config::parse(&y, Path::new("f.yaml")).unwrap()
}

struct World {
    responder: Daemon,
    /// An established pair: messages are delivered to B.
    b: Daemon,
    spis: (u64, u64),
}

fn setup() -> World {
    let a_addr: SocketAddr = "192.0.2.1:500".parse().unwrap();
    let b_addr: SocketAddr = "192.0.2.2:500".parse().unwrap();
    let mut a = Daemon::new(&cfg("192.0.2.1", "192.0.2.2", "start"));
    let mut b = Daemon::new(&cfg("192.0.2.2", "192.0.2.1", "none"));
    let now = Instant::now();
    let mut to_b = a.start(now);
    for _ in 0..10 {
        let mut to_a = Vec::new();
        for act in to_b.drain(..) {
            if let Action::Send { data, .. } = act {
                to_a.extend(b.handle(now, b_addr, a_addr, &data));
            }
        }
        for act in to_a {
            if let Action::Send { data, .. } = act {
                to_b.extend(a.handle(now, a_addr, b_addr, &data));
            }
        }
    }
    let sa = b.sas().next().expect("pair established");
    let spis = (sa.spi_i, sa.spi_r);
    World {
        responder: Daemon::new(&cfg("192.0.2.2", "192.0.2.1", "none")),
        b,
        spis,
    }
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// Each 6 input bytes are one verified fragment: flags (bit 0: response, bits 1-2: message
/// ID), inner type, number, total (one byte each, so that they collide often), and a length
/// in 64-byte units.
fn reassemble(data: &[u8]) {
    let mut f = Frag::new();
    f.negotiated = true;
    for op in data.chunks_exact(6) {
        let len = usize::from(u16::from_be_bytes([op[4], op[5]]) % 1100) * 64;
        let done = f.store(
            op[0] & 1 != 0,
            u32::from(op[0] >> 1 & 3),
            op[1],
            u16::from(op[2]),
            u16::from(op[3]),
            vec![0x5a; len],
        );
        if let Ok(Some((_, plain))) = done {
            assert!(plain.len() <= MAX_REASSEMBLED);
        }
        assert!(f.buffered() <= 2 * MAX_REASSEMBLED);
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = Message::parse(data);
    reassemble(data);
    if data.len() > 1 {
        let _ = parse_chain(data[0], &data[1..]);
    }
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        let w = w.get_or_insert_with(setup);
        let now = Instant::now();
        let a_addr: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let b_addr: SocketAddr = "192.0.2.2:500".parse().unwrap();
        let _ = w.responder.handle(now, b_addr, a_addr, data);
        if data.len() >= 28 {
            let mut m = data.to_vec();
            m[..8].copy_from_slice(&w.spis.0.to_be_bytes());
            m[8..16].copy_from_slice(&w.spis.1.to_be_bytes());
            m[17] = 0x20;
            let len = (m.len() as u32).to_be_bytes();
            m[24..28].copy_from_slice(&len);
            let _ = w.b.handle(now, b_addr, a_addr, &m);
        }
    });
});
