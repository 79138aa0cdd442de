//! ESP encap and decap per packet, per backend and cipher, at 64-byte frames, IMIX and
//! 1420-byte packets, as ns/packet and as a ratio to Intel ipsec-mb's raw AES-GCM call on the
//! same bytes, all measured interleaved in one run.
//!
//!     cargo bench -p perf --features ipsec-mb --bench esp [-- --json FILE]
//!
//! Encap times include copying the plain packet into the buffer (a real gateway receives it
//! there); the `copy` row shows that cost alone. Decap runs with anti-replay off because it
//! decrypts the same packet over and over; the window check is a few ns (see pathcount).
//!
//! The `burst` rows (AES-GCM-128 suites) run the burst functions the gateway uses, 32 packets
//! a call, and report the time per packet:
//! - `burst encap ... copy`: `burst::encap` (one SA, no SPD), each packet copied in first, as
//!   in the `encap` rows;
//! - `burst encap ... in place`: the same without the copy, as in a DPDK gateway where the
//!   packet already sits in its mbuf: before each burst every buffer's window is moved back
//!   over its inner packet (`adj`/`trim` by what the last encap added: no byte moved) and its
//!   28-byte IPv4+UDP header is written again; the payload is then the last round's
//!   ciphertext, which costs AES-GCM the same as any other bytes;
//! - `burst outbound ... in place`: `burst::outbound`, the whole outbound pipeline (flow key,
//!   SPD-out lookup with one PROTECT rule, policy counters, MTU check (9000, so IMIX's
//!   1500-byte packets are encapsulated too), encap), restored in place the same way;
//! - `burst inbound ... copy`: `burst::inbound` (classify, SAD lookup, decap, selector check),
//!   each ESP packet copied in first, as in the `decap` rows.
//!
//! Yardsticks besides the raw seal (ipsec-mb builds only):
//! - `floor: bare IPv4 tunnel encap`: ESP for the bench's one SA written by hand around the
//!   raw seal (template header, trailer, nonces a burst ahead), in place like the burst rows,
//!   with no checks, choices or counters: what no encap with this library can undercut;
//! - `raw ... open, nonce just built` / `nonces a burst ahead`: the raw open on 32 buffers,
//!   its nonce built from the packet just before the call or for all 32 first (the library's
//!   load of a nonce stored just now waits for the stores; `burst::inbound` builds them
//!   ahead);
//! - `crates alone`: the `aes` and `ghash` crates' own cost for the payload, the floor of the
//!   RustCrypto backend.
//!
//! `raw ... 32 bufs` is the raw call walking 32 buffers laid out as the burst rows' (one per
//! call, in turn), so that it pays the same cache footprint; the last column is each row's
//! ratio to it. The goal's ratio stays the one to the plain raw row (one buffer, always in L1).
//!
//! Calls with an index that is not a multiple of 32 do nothing, so the time per call is the
//! time per packet.
//!
//! For quick comparisons, `ESP_BENCH_CASES=1420B` (comma-separated case names) and
//! `ESP_BENCH_SUITES=ipsec-mb` (suite names containing any of the comma-separated words) run
//! a subset; the raw rows always run.

use std::hint::black_box;
use std::sync::Arc;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::burst::{self, InboundTables, OutboundTables, OutboundTarget, Verdict};
use dataplane::crypto::{Backend, Cipher, Integrity};
use dataplane::drop::DropCounters;
use dataplane::outer::{self, Arrival, Outer};
use dataplane::sa::{Direction, Endpoints, InboundSa, Mode, OutboundSa, SaParams};
use dataplane::sad::Sad;
use dataplane::spd::{Action, PolicyHits, Rule, Selector, Spd};
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

/// Packets per burst in the burst rows (the gateway's DPDK burst).
const BURST: usize = 32;

/// Buffers for a burst encapsulated in place, again and again: each holds its inner packet at
/// first; before each burst, what the last one added in front and behind is taken off again
/// (no byte moved) and the inner IPv4+UDP header (28 bytes) written again.
struct InPlace {
    bufs: Vec<HeapBuf>,
    /// Per buffer: the plain packet it carries, and (headroom, length) before encapsulation.
    plain: Vec<(usize, usize, usize)>,
}

impl InPlace {
    fn new(plain: &[Vec<u8>]) -> Self {
        let mut bufs = Vec::new();
        let mut meta = Vec::new();
        for k in 0..BURST {
            let p = &plain[k % plain.len()];
            let mut b = HeapBuf::with_room(256, 4096);
            b.reset_from(p, 256);
            meta.push((k % plain.len(), b.headroom(), b.len()));
            bufs.push(b);
        }
        Self { bufs, plain: meta }
    }
    /// Back to the inner packets.
    fn restore(&mut self, plain: &[Vec<u8>]) {
        for (b, &(p, head, len)) in self.bufs.iter_mut().zip(&self.plain) {
            let front = head - b.headroom();
            b.adj(front).unwrap();
            b.trim(b.len() - len).unwrap();
            b.data_mut()[..28].copy_from_slice(&plain[p][..28]);
        }
    }
}

fn sel(s: &str, d: &str) -> Selector {
    Selector::between(s.parse().unwrap(), d.parse().unwrap())
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
    let only = |var: &str| -> Option<Vec<String>> {
        std::env::var(var)
            .ok()
            .map(|v| v.split(',').map(str::to_string).collect())
    };
    if let Some(words) = only("ESP_BENCH_SUITES") {
        suites.retain(|(n, ..)| words.iter().any(|w| n.contains(w.as_str())));
    }
    let mut cases = vec![
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
    if let Some(names) = only("ESP_BENCH_CASES") {
        cases.retain(|c| names.iter().any(|n| n == c.name));
    }
    let mut report = Vec::new();
    println!(
        "{:<8} {:<34} {:>10} {:>12} {:>16}",
        "size", "case", "ns/pkt", "vs raw mb", "vs raw 32 bufs"
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
            // The same call walking 32 buffers laid out as the burst rows' (HeapBuf, 256 bytes
            // in front, 4096 behind), each sealed in turn: the burst rows' cache footprint.
            let mut walk: Vec<HeapBuf> = (0..BURST)
                .map(|k| {
                    let p = &plain[k % n];
                    let mut b = HeapBuf::with_room(256, 4096);
                    b.reset_from(&vec![0u8; (p.len() + 2).next_multiple_of(4)], 256);
                    b
                })
                .collect();
            bench.add(
                "raw ipsec-mb aes-gcm-128 seal, 32 bufs",
                Box::new(move |i| {
                    let b = walk[i % BURST].data_mut();
                    black_box(raw_key.seal(&[1; 12], &[2; 8], b));
                }),
            );
        }
        #[cfg(feature = "ipsec-mb")]
        {
            // The floor of any encap with this library: IPv4-in-IPv4 tunnel ESP written by
            // hand for the bench's one SA (outer header from a template with length,
            // identification and checksum, ESP header, IV, padding and trailer, the nonce and
            // AAD built a burst ahead, the raw seal, the tag written), with none of the
            // checks, choices and counters of `burst::encap`, on the in-place buffers.
            let raw_key = &raw_key;
            let mut ip = InPlace::new(&plain);
            let plain2 = &plain;
            let tmpl: [u8; 20] = [
                0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 50, 0, 0, 10, 1, 0, 1, 10, 2, 0, 1,
            ];
            let mut tsum = 0u32;
            for c in tmpl.chunks(2) {
                tsum += u32::from(u16::from_be_bytes([c[0], c[1]]));
            }
            let mut seq = 0u64;
            let mut first = true;
            bench.add(
                "floor: bare IPv4 tunnel encap, ipsec-mb, in place",
                Box::new(move |i| {
                    if i % BURST != 0 {
                        return;
                    }
                    if !std::mem::take(&mut first) {
                        ip.restore(plain2);
                    }
                    let mut nonces = [[0u8; 12]; BURST];
                    let mut aads = [[0u8; 8]; BURST];
                    for k in 0..BURST {
                        let s = seq + 1 + k as u64;
                        nonces[k][..4].copy_from_slice(&[9, 9, 9, 9]);
                        nonces[k][4..].copy_from_slice(&s.to_be_bytes());
                        aads[k][..4].copy_from_slice(&0x1234u32.to_be_bytes());
                        aads[k][4..].copy_from_slice(&(s as u32).to_be_bytes());
                    }
                    for (k, b) in ip.bufs.iter_mut().enumerate() {
                        let s = seq + 1 + k as u64;
                        let inner = b.len();
                        let pad = (4 - ((inner + 2) & 3)) & 3;
                        let t = b.append(pad + 2 + 16).unwrap();
                        t[..pad].copy_from_slice(&[1, 2, 3][..pad]);
                        t[pad] = pad as u8;
                        t[pad + 1] = 4;
                        let total = inner + pad + 2 + 16 + 36;
                        let h = b.prepend(36).unwrap();
                        let (hh, rest) = h.split_first_chunk_mut::<36>().unwrap();
                        hh[..20].copy_from_slice(&tmpl);
                        hh[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                        hh[4..6].copy_from_slice(&(s as u16).to_be_bytes());
                        let mut sum = tsum + total as u32 + (s as u16) as u32;
                        sum = (sum & 0xffff) + (sum >> 16);
                        sum = (sum & 0xffff) + (sum >> 16);
                        hh[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
                        hh[20..28].copy_from_slice(&aads[k]);
                        hh[28..36].copy_from_slice(&s.to_be_bytes());
                        let n = rest.len() - 16;
                        let (body, icv) = rest.split_at_mut(n);
                        let tag = raw_key.seal(&nonces[k], &aads[k], body);
                        icv.copy_from_slice(&tag);
                    }
                    seq += BURST as u64;
                    black_box(ip.bufs[0].data()[0]);
                }),
            );
        }
        #[cfg(feature = "ipsec-mb")]
        {
            // The raw open on 32 buffers (ESP header and IV, then what the seal rows encrypt),
            // its nonce (salt || IV) built from the packet right before the call, as a
            // one-packet decap must, or for the whole burst before the first call, as
            // `burst::inbound` does (the library's load of a nonce just stored waits).
            let raw_key = &raw_key;
            let bufs = || -> Vec<Vec<u8>> {
                (0..BURST)
                    .map(|k| {
                        let p = &plain[k % n];
                        let mut v = vec![0u8; 16 + (p.len() + 2).next_multiple_of(4)];
                        v[8..16].copy_from_slice(&(k as u64).to_be_bytes());
                        v
                    })
                    .collect()
            };
            let mut walk = bufs();
            bench.add(
                "raw ipsec-mb aes-gcm-128 open, nonce just built",
                Box::new(move |i| {
                    let b = &mut walk[i % BURST];
                    let (h, d) = b.split_at_mut(16);
                    let mut nn = [0u8; 12];
                    nn[..4].copy_from_slice(&[9, 9, 9, 9]);
                    nn[4..].copy_from_slice(&h[8..16]);
                    black_box(raw_key.decrypt(&nn, &h[..8], d));
                }),
            );
            let mut walk = bufs();
            let mut nonces = [[0u8; 12]; BURST];
            bench.add(
                "raw ipsec-mb aes-gcm-128 open, nonces a burst ahead",
                Box::new(move |i| {
                    if i % BURST == 0 {
                        for (k, b) in walk.iter().enumerate() {
                            nonces[k][..4].copy_from_slice(&[9, 9, 9, 9]);
                            nonces[k][4..].copy_from_slice(&b[8..16]);
                        }
                    }
                    let b = &mut walk[i % BURST];
                    let (h, d) = b.split_at_mut(16);
                    black_box(raw_key.decrypt(&nonces[i % BURST], &h[..8], d));
                }),
            );
        }
        let mut copy_buf = HeapBuf::with_room(256, 4096);
        let p2 = &plain;
        {
            // The floor of any GCM composed from the `aes` and `ghash` crates: `aes` encrypting
            // as many blocks as ESP's payload has, and `ghash` hashing its bytes, with nothing
            // else (no counter blocks, no XOR, no ESP). The RustCrypto rows cannot go below it.
            use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
            use ghash::universal_hash::UniversalHash;
            let aes = aes::Aes128::new(&GenericArray::from([7u8; 16]));
            let gh = ghash::GHash::new(&ghash::Key::from([3u8; 16]));
            let lens: Vec<usize> = plain
                .iter()
                .map(|p| (p.len() + 2).next_multiple_of(4))
                .collect();
            let longest = lens.iter().copied().max().unwrap_or(0);
            let mut blocks = vec![GenericArray::from([1u8; 16]); longest.div_ceil(16)];
            let bytes = vec![5u8; longest];
            bench.add(
                "crates alone: aes-128 blocks + ghash",
                Box::new(move |i| {
                    let len = lens[i % n];
                    aes.encrypt_blocks(&mut blocks[..len.div_ceil(16)]);
                    let mut h = gh.clone();
                    h.update_padded(&bytes[..len]);
                    black_box((blocks[0][0], h.finalize()));
                }),
            );
        }
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
        // The burst rows, for the AES-GCM-128 suites.
        let burst_suites: Vec<usize> = suites
            .iter()
            .enumerate()
            .filter(|(_, (_, c, ..))| *c == Cipher::AesGcm128)
            .map(|(k, _)| k)
            .collect();
        for &k in &burst_suites {
            let (name, c, i, b) = suites[k];
            let p = params(c, i, b, Direction::Out);
            let sa = OutboundSa::new(&p).unwrap();
            let mut bufs: Vec<HeapBuf> =
                (0..BURST).map(|_| HeapBuf::with_room(256, 4096)).collect();
            let mut drops = DropCounters::default();
            bench.add(
                format!("burst encap {name}, copy"),
                Box::new(move |i| {
                    if i % BURST != 0 {
                        return;
                    }
                    for (j, buf) in bufs.iter_mut().enumerate() {
                        buf.reset_from(&p2[(i + j) % n], 256);
                    }
                    let mut v = [Verdict::Pending; BURST];
                    let fwd = burst::encap(&sa, &mut bufs, &mut v, &mut drops);
                    assert_eq!(fwd, BURST);
                    black_box(bufs[0].data()[0]);
                }),
            );
            let sa = OutboundSa::new(&p).unwrap();
            let mut ip = InPlace::new(p2);
            let mut drops = DropCounters::default();
            let mut first = true;
            bench.add(
                format!("burst encap {name}, in place"),
                Box::new(move |i| {
                    if i % BURST != 0 {
                        return;
                    }
                    if !std::mem::take(&mut first) {
                        ip.restore(p2);
                    }
                    let mut v = [Verdict::Pending; BURST];
                    let fwd = burst::encap(&sa, &mut ip.bufs, &mut v, &mut drops);
                    assert_eq!(fwd, BURST);
                    black_box(ip.bufs[0].data()[0]);
                }),
            );
            let spd = Spd::build(vec![Rule {
                priority: 10,
                selector: sel("192.168.10.0/24", "192.168.20.0/24"),
                action: Action::Protect(OutboundTarget {
                    policy_id: 1,
                    sa: Some(Arc::new(OutboundSa::new(&p).unwrap())),
                    per_worker: Vec::new(),
                }),
            }])
            .unwrap();
            let mut hits = PolicyHits::new(spd.len());
            let mut ip = InPlace::new(p2);
            let mut drops = DropCounters::default();
            let mut first = true;
            bench.add(
                format!("burst outbound {name}, in place"),
                Box::new(move |i| {
                    if i % BURST != 0 {
                        return;
                    }
                    if !std::mem::take(&mut first) {
                        ip.restore(p2);
                    }
                    let t = OutboundTables {
                        spd: &spd,
                        mtu: 9000,
                    };
                    let mut v = [Verdict::Pending; BURST];
                    let fwd = burst::outbound(&t, &mut ip.bufs, &mut v, &mut drops, &mut hits);
                    assert_eq!(fwd, BURST);
                    black_box(ip.bufs[0].data()[0]);
                }),
            );
            let mut sad = Sad::new();
            sad.insert(
                0x1234,
                Some("10.2.0.1".parse().unwrap()),
                Arc::new(InboundSa::new(&params(c, i, b, Direction::In)).unwrap()),
            );
            let spd_in: Spd<()> = Spd::build(Vec::new()).unwrap();
            let mut hits = PolicyHits::new(0);
            let w = &wires[k];
            let mut bufs: Vec<HeapBuf> =
                (0..BURST).map(|_| HeapBuf::with_room(256, 4096)).collect();
            let mut drops = DropCounters::default();
            bench.add(
                format!("burst inbound {name}, copy"),
                Box::new(move |i| {
                    if i % BURST != 0 {
                        return;
                    }
                    for (j, buf) in bufs.iter_mut().enumerate() {
                        buf.reset_from(&w[(i + j) % n].0, 256);
                    }
                    let t = InboundTables {
                        sad: &sad,
                        spd: &spd_in,
                        natt_ports: &[4500],
                        local: None,
                    };
                    let mut v = [Verdict::Pending; BURST];
                    let fwd = burst::inbound(&t, &mut bufs, &mut v, &mut drops, &mut hits);
                    assert_eq!(fwd, BURST);
                    black_box(bufs[0].data()[0]);
                }),
            );
        }
        let iters = if case.name == "1420B" { 4_000 } else { 12_000 };
        let results = bench.run(15, iters);
        let raw = results
            .iter()
            .find(|(n, _)| n == "raw ipsec-mb aes-gcm-128 seal")
            .map(|(_, t)| *t);
        let raw32 = results
            .iter()
            .find(|(n, _)| n == "raw ipsec-mb aes-gcm-128 seal, 32 bufs")
            .map(|(_, t)| *t);
        for (name, ns) in &results {
            let [ratio, ratio32] = [raw, raw32].map(|r| {
                r.map(|r| format!("{:.2}x", ns / r))
                    .unwrap_or_else(|| "-".into())
            });
            println!(
                "{:<8} {:<34} {:>10.1} {:>12} {:>16}",
                case.name, name, ns, ratio, ratio32
            );
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
