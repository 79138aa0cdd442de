//! Runs the outbound or inbound ESP path N times, for instruction counting under callgrind
//! (perf/callgrind.sh): instruction counts are repeatable on a noisy machine where times are not.
//!
//! `pathcount encap|decap|encap-burst SUITE SIZE N` — SUITE is one of `aes-gcm-128`,
//! `aes-gcm-256`, `aes-cbc-256-sha256`, `chacha20-poly1305`, optionally suffixed `@ipsec-mb`.
//! `encap` copies the packet into the buffer before each encapsulation; `encap-burst` runs
//! `burst::encap` on 32 buffers at a time, in place: before each burst every buffer's window
//! goes back over its inner packet and its 28-byte IPv4+UDP header is written again (N is
//! rounded up to whole bursts). `outbound-burst` is the same through `burst::outbound`, the
//! gateway's inside-port pipeline: flow keys, SPD-out (one PROTECT rule), policy counters,
//! MTU check, encapsulation. `outbound-owned-burst` is `outbound-burst` as one of several
//! workers runs it (`burst::outbound_owned` with a pipeline number): the SA's owner is checked
//! for every packet (this pipeline claims it on the first and keeps it).

use std::process::ExitCode;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::crypto::{Backend, Cipher, Integrity};
use dataplane::outer::{self, Arrival};
use dataplane::sa::{Direction, Endpoints, InboundSa, Mode, OutboundSa, SaParams};

fn suite(name: &str) -> Option<(Cipher, Integrity, Backend)> {
    let (name, backend) = match name.split_once('@') {
        Some((n, "ipsec-mb")) => (n, Backend::IpsecMb),
        Some((n, "rustcrypto")) => (n, Backend::RustCrypto),
        Some(_) => return None,
        None => (name, Backend::Auto),
    };
    let (c, i) = match name {
        "aes-gcm-128" => (Cipher::AesGcm128, Integrity::None),
        "aes-gcm-256" => (Cipher::AesGcm256, Integrity::None),
        "aes-cbc-256-sha256" => (Cipher::AesCbc256, Integrity::HmacSha256),
        "chacha20-poly1305" => (Cipher::Chacha20Poly1305, Integrity::None),
        "null-sha256" => (Cipher::Null, Integrity::HmacSha256),
        _ => return None,
    };
    Some((c, i, backend))
}

fn params(c: Cipher, i: Integrity, b: Backend, dir: Direction) -> SaParams {
    let mut p = SaParams::new(0x1234, dir, c, i);
    p.mode = Mode::Tunnel;
    p.enc_key = (0..c.key_len() as u8).collect::<Vec<_>>().into();
    p.auth_key = (0..i.key_len() as u8).collect::<Vec<_>>().into();
    p.backend = b;
    let (l, r) = ("10.1.0.1".parse().unwrap(), "10.2.0.1".parse().unwrap());
    p.tunnel = Some(match dir {
        Direction::Out => Endpoints {
            local: l,
            remote: r,
        },
        Direction::In => Endpoints {
            local: r,
            remote: l,
        },
    });
    p.replay_window = 0; // the same packet is decrypted N times
    p
}

/// Packets per call in the burst modes (a DPDK burst).
const BURST: usize = 32;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: pathcount encap|decap|encap-burst|outbound-burst|outbound-owned-burst|inbound-burst SUITE SIZE N";
    if args.len() != 5 {
        eprintln!("{usage}");
        return ExitCode::from(2);
    }
    let Some((c, i, b)) = suite(&args[2]) else {
        eprintln!("unknown suite {}\n{usage}", args[2]);
        return ExitCode::from(2);
    };
    let (Ok(size), Ok(n)) = (args[3].parse::<usize>(), args[4].parse::<u64>()) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let out = match OutboundSa::new(&params(c, i, b, Direction::Out)) {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let plain = perf::udp4(size);
    let mut buf = HeapBuf::with_room(256, 4096);
    let mut checksum = 0u64;
    // The ESP packet the decap modes replay.
    let wire = || {
        let mut b = HeapBuf::with_room(256, 4096);
        b.reset_from(&plain, 256);
        dataplane::esp::encap(&out, &mut b).expect("encap");
        b.to_vec()
    };
    match args[1].as_str() {
        "encap" => {
            for _ in 0..n {
                buf.reset_from(&plain, 256);
                if dataplane::esp::encap(&out, &mut buf).is_err() {
                    return ExitCode::from(1);
                }
                checksum = checksum.wrapping_add(u64::from(buf.data()[buf.len() - 1]));
            }
        }
        mode @ ("encap-burst" | "outbound-burst" | "outbound-owned-burst") => {
            let any = dataplane::net::IpPrefix::any_v4();
            let spd = dataplane::spd::Spd::build(vec![dataplane::spd::Rule {
                priority: 1,
                selector: dataplane::spd::Selector::between(any, any),
                action: dataplane::spd::Action::Protect(dataplane::burst::OutboundTarget {
                    policy_id: 1,
                    sa: Some(out.clone()),
                    per_worker: Vec::new(),
                }),
            }])
            .expect("SPD");
            let tables = dataplane::burst::OutboundTables {
                spd: &spd,
                mtu: 9000,
            };
            let mut hits = dataplane::spd::PolicyHits::new(1);
            let mut bufs: Vec<HeapBuf> = (0..BURST)
                .map(|_| HeapBuf::from_slice_with_room(&plain, 256, 4096))
                .collect();
            let mut drops = dataplane::drop::DropCounters::default();
            for round in 0..n.div_ceil(BURST as u64) {
                if round > 0 {
                    for b in bufs.iter_mut() {
                        b.adj(256 - b.headroom()).expect("adj");
                        b.trim(b.len() - plain.len()).expect("trim");
                        b.data_mut()[..28].copy_from_slice(&plain[..28]);
                    }
                }
                let mut v = [dataplane::burst::Verdict::Pending; BURST];
                let me = (mode == "outbound-owned-burst").then_some(0);
                let sent = if mode == "encap-burst" {
                    dataplane::burst::encap(&out, &mut bufs, &mut v, &mut drops)
                } else {
                    dataplane::burst::outbound_owned(
                        &tables, None, me, &mut bufs, &mut v, &mut drops, &mut hits,
                    )
                };
                if sent != BURST {
                    return ExitCode::from(1);
                }
                checksum = checksum.wrapping_add(u64::from(bufs[0].data()[bufs[0].len() - 1]));
            }
        }
        "decap" => {
            let inb = InboundSa::new(&params(c, i, b, Direction::In)).expect("inbound SA");
            let wire = wire();
            let Ok(Arrival::Ipsec(o)) = outer::classify(&wire, |_| false) else {
                return ExitCode::from(1);
            };
            for _ in 0..n {
                buf.reset_from(&wire, 256);
                if dataplane::esp::decap(&inb, &mut buf, &o).is_err() {
                    return ExitCode::from(1);
                }
                checksum = checksum.wrapping_add(u64::from(buf.data()[buf.len() - 1]));
            }
        }
        "inbound-burst" => {
            // burst::inbound as an outside port runs it (classify, SAD lookup, decap, selector
            // check), 32 packets a call, each copied in first (as the decap mode copies).
            let inb = InboundSa::new(&params(c, i, b, Direction::In)).expect("inbound SA");
            let spi = inb.spi;
            let mut sad = dataplane::sad::Sad::new();
            sad.insert(spi, None, std::sync::Arc::new(inb));
            let spd: dataplane::spd::Spd<()> = dataplane::spd::Spd::build(Vec::new()).expect("SPD");
            let mut hits = dataplane::spd::PolicyHits::new(0);
            let wire = wire();
            let mut bufs: Vec<HeapBuf> =
                (0..BURST).map(|_| HeapBuf::with_room(256, 4096)).collect();
            let mut drops = dataplane::drop::DropCounters::default();
            let t = dataplane::burst::InboundTables {
                sad: &sad,
                spd: &spd,
                natt_ports: &[4500],
                local: None,
            };
            for _ in 0..n.div_ceil(BURST as u64) {
                for b in bufs.iter_mut() {
                    b.reset_from(&wire, 256);
                }
                let mut v = [dataplane::burst::Verdict::Pending; BURST];
                if dataplane::burst::inbound(&t, &mut bufs, &mut v, &mut drops, &mut hits) != BURST
                {
                    return ExitCode::from(1);
                }
                checksum = checksum.wrapping_add(u64::from(bufs[0].data()[bufs[0].len() - 1]));
            }
        }
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    }
    println!("{checksum}");
    ExitCode::SUCCESS
}
