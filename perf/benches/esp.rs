//! ESP encap and decap per packet, per backend and cipher, at 64-byte frames, IMIX and
//! 1420-byte packets, as ns/packet and as a ratio to Intel ipsec-mb's raw AES-GCM call on the
//! same bytes, all measured interleaved in one run.
//!
//!     cargo bench -p perf --features ipsec-mb --bench esp [-- --json FILE]
//!
//! Encap times include copying the plain packet into the buffer (a real gateway receives it
//! there); the `copy` row shows that cost alone. Decap runs with anti-replay off because it
//! decrypts the same packet over and over; the window check is a few ns (see pathcount).

use std::hint::black_box;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::crypto::{Backend, Cipher, Integrity};
use dataplane::outer::{self, Arrival, Outer};
use dataplane::sa::{Direction, Endpoints, InboundSa, Mode, OutboundSa, SaParams};
use perf::{udp4, Interleaved, IMIX_IP_SIZES};

fn params(c: Cipher, i: Integrity, b: Backend, dir: Direction) -> SaParams {
    let mut p = SaParams::new(0x1234, dir, c, i);
    p.mode = Mode::Tunnel;
    p.enc_key = (0..c.key_len() as u8)
        .map(|x| x.wrapping_mul(13))
        .collect::<Vec<_>>()
        .into();
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
    p.replay_window = 0;
    p
}

struct Case {
    name: &'static str,
    sizes: Vec<usize>,
}

fn main() {
    let json = std::env::args().skip_while(|a| a != "--json").nth(1);
    let mut suites: Vec<(&str, Cipher, Integrity, Backend)> = vec![
        (
            "aes-gcm-128 rustcrypto",
            Cipher::AesGcm128,
            Integrity::None,
            Backend::RustCrypto,
        ),
        (
            "aes-gcm-256 rustcrypto",
            Cipher::AesGcm256,
            Integrity::None,
            Backend::RustCrypto,
        ),
        (
            "chacha20-poly1305",
            Cipher::Chacha20Poly1305,
            Integrity::None,
            Backend::RustCrypto,
        ),
        (
            "aes-cbc-256+sha256",
            Cipher::AesCbc256,
            Integrity::HmacSha256,
            Backend::RustCrypto,
        ),
        (
            "null+sha256",
            Cipher::Null,
            Integrity::HmacSha256,
            Backend::RustCrypto,
        ),
    ];
    if cfg!(feature = "ipsec-mb") {
        suites.insert(
            0,
            (
                "aes-gcm-128 ipsec-mb",
                Cipher::AesGcm128,
                Integrity::None,
                Backend::IpsecMb,
            ),
        );
        suites.insert(
            1,
            (
                "aes-gcm-256 ipsec-mb",
                Cipher::AesGcm256,
                Integrity::None,
                Backend::IpsecMb,
            ),
        );
    }
    let cases = [
        Case {
            name: "64B",
            sizes: vec![46],
        },
        Case {
            name: "IMIX",
            sizes: IMIX_IP_SIZES.to_vec(),
        },
        Case {
            name: "1420B",
            sizes: vec![1420],
        },
    ];
    let mut report = Vec::new();
    println!(
        "{:<8} {:<34} {:>10} {:>12}",
        "size", "case", "ns/pkt", "vs raw mb"
    );
    for case in &cases {
        let plain: Vec<Vec<u8>> = case.sizes.iter().map(|&s| udp4(s)).collect();
        let outs: Vec<OutboundSa> = suites
            .iter()
            .map(|(_, c, i, b)| OutboundSa::new(&params(*c, *i, *b, Direction::Out)).unwrap())
            .collect();
        let ins: Vec<InboundSa> = suites
            .iter()
            .map(|(_, c, i, b)| InboundSa::new(&params(*c, *i, *b, Direction::In)).unwrap())
            .collect();
        // The encrypted packets each decap alternative replays.
        let wires: Vec<Vec<(Vec<u8>, Outer)>> = outs
            .iter()
            .map(|sa| {
                plain
                    .iter()
                    .map(|p| {
                        let mut b = HeapBuf::from_slice(p);
                        dataplane::esp::encap(sa, &mut b).unwrap();
                        let Ok(Arrival::Ipsec(o)) = outer::classify(b.data(), |_| false) else {
                            panic!("not ESP")
                        };
                        (b.to_vec(), o)
                    })
                    .collect()
            })
            .collect();
        let n = plain.len();
        #[cfg(feature = "ipsec-mb")]
        let raw_key = ipsec_mb::GcmKey::new(&[7u8; 16]).unwrap();
        let mut bench = Interleaved::new();
        #[cfg(feature = "ipsec-mb")]
        {
            // The raw AEAD call on what ESP encrypts: the inner packet plus its 2-byte trailer
            // (padded to 4), with the 8-byte ESP AAD.
            let mut bufs: Vec<Vec<u8>> = plain
                .iter()
                .map(|p| vec![0u8; (p.len() + 2).next_multiple_of(4)])
                .collect();
            let raw_key = &raw_key;
            bench.add(
                "raw ipsec-mb aes-gcm-128 seal",
                Box::new(move |i| {
                    let b = &mut bufs[i % n];
                    black_box(raw_key.seal(&[1; 12], &[2; 8], b));
                }),
            );
        }
        let mut copy_buf = HeapBuf::with_room(256, 4096);
        let p2 = &plain;
        bench.add(
            "copy",
            Box::new(move |i| {
                copy_buf.reset_from(&p2[i % n], 256);
                black_box(copy_buf.data()[0]);
            }),
        );
        for (k, (name, ..)) in suites.iter().enumerate() {
            let sa = &outs[k];
            let mut buf = HeapBuf::with_room(256, 4096);
            bench.add(
                format!("encap {name}"),
                Box::new(move |i| {
                    buf.reset_from(&p2[i % n], 256);
                    dataplane::esp::encap(sa, &mut buf).unwrap();
                    black_box(buf.data()[0]);
                }),
            );
            let sa = &ins[k];
            let w = &wires[k];
            let mut buf = HeapBuf::with_room(256, 4096);
            bench.add(
                format!("decap {name}"),
                Box::new(move |i| {
                    let (bytes, o) = &w[i % n];
                    buf.reset_from(bytes, 256);
                    dataplane::esp::decap(sa, &mut buf, o).unwrap();
                    black_box(buf.data()[0]);
                }),
            );
        }
        let iters = if case.name == "1420B" { 4_000 } else { 12_000 };
        let results = bench.run(15, iters);
        let raw = results
            .iter()
            .find(|(n, _)| n.starts_with("raw"))
            .map(|(_, t)| *t);
        for (name, ns) in &results {
            let ratio = raw
                .map(|r| format!("{:.2}x", ns / r))
                .unwrap_or_else(|| "-".into());
            println!("{:<8} {:<34} {:>10.1} {:>12}", case.name, name, ns, ratio);
            report.push(format!(
                "{{\"size\":\"{}\",\"case\":\"{}\",\"ns_per_pkt\":{:.1},\"ratio_to_raw_ipsec_mb\":{}}}",
                case.name,
                name,
                ns,
                raw.map(|r| format!("{:.3}", ns / r)).unwrap_or_else(|| "null".into())
            ));
        }
    }
    if let Some(path) = json {
        std::fs::write(&path, format!("[{}]\n", report.join(",\n"))).unwrap();
    }
}
