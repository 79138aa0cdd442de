//! Burst-level accounting: the burst pipelines take sequence numbers and count lifetimes once
//! per SA per burst. Each packet must still get what it would get processed alone: the same
//! bytes, sequence numbers in order, refusal exactly past a hard limit (packets or bytes, in
//! the middle of a burst), each lifetime event once, and no sequence number twice even with
//! several threads sharing the SA.

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::burst::{self, InboundTables, OutboundTables, OutboundTarget, Verdict};
use dataplane::crypto::{Backend, Cipher, Integrity};
use dataplane::drop::{DropCounters, DropReason};
use dataplane::esp;
use dataplane::flowcache::FlowCache;
use dataplane::outer::{self, Arrival};
use dataplane::sa::{
    Direction, Endpoints, InboundSa, Lifetime, Mode, OutboundSa, SaEvent, SaParams, UdpEncap,
};
use dataplane::sad::Sad;
use dataplane::spd::{Action, PolicyHits, Rule, Selector, Spd};

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An IPv4 UDP packet 192.168.10.5 → 192.168.20.`dst` with `len` payload bytes.
fn udp4(dst: u8, len: usize) -> Vec<u8> {
    common::udp4([192, 168, 10, 5], [192, 168, 20, dst], len, 0x2a)
}

/// An outbound/inbound pair of AES-GCM-128 tunnel SAs; `f` adjusts the outbound parameters
/// before the inbound copy is made.
fn pair(spi: u32, f: impl FnOnce(&mut SaParams)) -> (SaParams, SaParams) {
    let c = Cipher::AesGcm128;
    let mut o = SaParams::new(spi, Direction::Out, c, Integrity::None);
    o.mode = Mode::Tunnel;
    o.enc_key = (0..c.key_len() as u8)
        .map(|x| x.wrapping_mul(29).wrapping_add(spi as u8))
        .collect::<Vec<_>>()
        .into();
    o.tunnel = Some(Endpoints {
        local: v4("10.1.0.1"),
        remote: v4("10.2.0.1"),
    });
    f(&mut o);
    let mut i = o.clone();
    i.direction = Direction::In;
    i.tunnel = o.tunnel.map(|t| Endpoints {
        local: t.remote,
        remote: t.local,
    });
    (o, i)
}

fn esp_seq(pkt: &[u8]) -> u32 {
    match outer::classify(pkt, |p| p == 4500).unwrap() {
        Arrival::Ipsec(o) => {
            u32::from_be_bytes(pkt[o.sec_off + 4..o.sec_off + 8].try_into().unwrap())
        }
        other => panic!("not ESP: {other:?}"),
    }
}

fn events(c: &dataplane::sa::SaCounters) -> Vec<SaEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// A buffer with room for TFC padding.
fn buf(p: &[u8]) -> HeapBuf {
    HeapBuf::from_slice_with_room(p, 128, 512)
}

fn bufs(pkts: &[Vec<u8>]) -> Vec<HeapBuf> {
    pkts.iter().map(|p| buf(p)).collect()
}

fn sel(s: &str, d: &str) -> Selector {
    Selector::between(s.parse().unwrap(), d.parse().unwrap())
}

/// A change to an SA's parameters.
type Variant = dyn Fn(&mut SaParams);

/// The framings the burst paths stage: IPv4 and IPv6 outer headers, NAT-T (to
/// `remote_port`), transport mode, TFC padding, CBC's 16-byte alignment, ChaCha20-Poly1305,
/// ESN across the 32-bit boundary.
fn framings(remote_port: u16) -> Vec<Box<Variant>> {
    vec![
        Box::new(|_| {}),
        Box::new(|p| {
            p.tunnel = Some(Endpoints {
                local: "2001:db8::1".parse().unwrap(),
                remote: "2001:db8::2".parse().unwrap(),
            })
        }),
        Box::new(move |p| {
            p.udp_encap = Some(UdpEncap {
                local_port: 4500,
                remote_port,
            })
        }),
        Box::new(|p| {
            p.mode = Mode::Transport;
            p.tunnel = None;
        }),
        Box::new(|p| p.tfc_pad = 300),
        Box::new(|p| {
            p.cipher = Cipher::AesCbc256;
            p.integrity = Integrity::HmacSha256;
            p.enc_key = vec![3u8; 32].into();
            p.auth_key = vec![4u8; 32].into();
        }),
        Box::new(|p| {
            p.cipher = Cipher::Chacha20Poly1305;
            p.enc_key = vec![5u8; 36].into();
        }),
        Box::new(|p| {
            p.esn = true;
            p.initial_seq = 0xffff_fff0;
        }),
    ]
}

/// Bursts give every packet the bytes and the outcome one-by-one encapsulation gives it, for
/// every framing the burst path stages ([`framings`]), over more packets than one stage
/// holds.
#[test]
fn bursts_equal_packet_by_packet() {
    let variants = framings(4501);
    for (n, v) in variants.iter().enumerate() {
        let (o, i) = pair(0x100 + n as u32, v);
        let one = OutboundSa::new(&o).unwrap();
        let many = OutboundSa::new(&o).unwrap();
        let inb = InboundSa::new(&i).unwrap();
        // CBC IVs are random: compare what the receiver gets back instead of the bytes.
        let random_iv = o.cipher == Cipher::AesCbc256;
        let plain: Vec<Vec<u8>> = (0..70).map(|k| udp4(7, (k * 37) % 1400)).collect();
        let mut want = Vec::new();
        for p in &plain {
            let mut b = buf(p);
            esp::encap(&one, &mut b).unwrap();
            want.push(b.to_vec());
        }
        let mut pkts = bufs(&plain);
        let mut verdicts = vec![Verdict::Pending; pkts.len()];
        let mut drops = DropCounters::default();
        let fwd = burst::encap(&many, &mut pkts, &mut verdicts, &mut drops);
        assert_eq!(fwd, plain.len(), "variant {n}");
        assert!(verdicts.iter().all(|v| *v == Verdict::Forward));
        for (k, (got, want)) in pkts.iter().zip(&want).enumerate() {
            if random_iv {
                assert_eq!(got.len(), want.len(), "variant {n} packet {k}");
                let mut b = got.clone();
                let Ok(Arrival::Ipsec(ob)) = outer::classify(b.data(), |p| p == 4500) else {
                    panic!("not ESP")
                };
                esp::decap(&inb, &mut b, &ob).unwrap();
                assert_eq!(b.data(), &plain[k][..], "variant {n} packet {k}");
            } else {
                assert_eq!(got.data(), &want[..], "variant {n} packet {k}");
            }
        }
        assert_eq!(one.last_seq(), many.last_seq());
        assert_eq!(one.counters().packets(), many.counters().packets());
        assert_eq!(one.counters().bytes(), many.counters().bytes());
    }
}

/// Runs `arrivals` through `burst::inbound` with `sad` (no SPD-in rules) and checks each
/// arrival's verdict and bytes against `want` (one-by-one decapsulation's outcome).
fn inbound_burst_gives(
    sad: &Sad<Arc<InboundSa>>,
    arrivals: &[Vec<u8>],
    want: &[Result<Vec<u8>, DropReason>],
    case: &str,
) {
    let spd_in: Spd<()> = Spd::build(Vec::new()).unwrap();
    let t = InboundTables {
        sad,
        spd: &spd_in,
        natt_ports: &[4500],
        local: None,
    };
    let mut pkts = bufs(arrivals);
    let mut verdicts = vec![Verdict::Pending; pkts.len()];
    let mut drops = DropCounters::default();
    let mut hits = PolicyHits::new(0);
    let fwd = burst::inbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
    assert_eq!(fwd, want.iter().filter(|w| w.is_ok()).count(), "{case}");
    for (k, (w, (v, p))) in want.iter().zip(verdicts.iter().zip(&pkts)).enumerate() {
        match w {
            Ok(bytes) => {
                assert_eq!(*v, Verdict::Forward, "{case} arrival {k}");
                assert_eq!(p.data(), &bytes[..], "{case} arrival {k}");
            }
            Err(r) => assert_eq!(*v, Verdict::Drop(*r), "{case} arrival {k}"),
        }
    }
}

/// Inbound bursts give every arrival the outcome and bytes one-by-one decapsulation gives it,
/// for every framing and backend, with valid packets mixed among tampered ones (IV, ESP
/// header, ciphertext and ICV bytes), replays, unknown SPIs and Ethernet padding, over more
/// packets than one stage holds. The burst builds AEAD nonces for all its arrivals before
/// opening the first (`EspTransform::prepare_open`); a tampered IV must fail there exactly as
/// it does one by one.
#[test]
fn inbound_bursts_equal_packet_by_packet() {
    let variants = framings(4500);
    let mut backends = vec![Backend::RustCrypto];
    if cfg!(feature = "ipsec-mb") {
        backends.push(Backend::IpsecMb);
    }
    let mut cases = 0;
    for backend in backends {
        for (n, v) in variants.iter().enumerate() {
            let spi = 0x700 + n as u32;
            let (mut o, mut i) = pair(spi, v);
            o.backend = backend;
            i.backend = backend;
            let Ok(out) = OutboundSa::new(&o) else {
                // ipsec-mb does AES-GCM only here; the others stay on RustCrypto.
                assert_eq!(backend, Backend::IpsecMb);
                assert_ne!(o.cipher, Cipher::AesGcm128);
                continue;
            };
            cases += 1;
            let transport = o.mode == Mode::Transport;
            let plain: Vec<Vec<u8>> = (0..70).map(|k| udp4(7, (k * 37) % 1400)).collect();
            let mut sent = Vec::new();
            for p in &plain {
                let mut b = buf(p);
                esp::encap(&out, &mut b).unwrap();
                sent.push(b.to_vec());
            }
            // Arrivals: every packet, some changed; a few replayed later.
            let mut arrivals: Vec<Vec<u8>> = Vec::new();
            for (k, p) in sent.iter().enumerate() {
                let mut a = p.clone();
                let Ok(Arrival::Ipsec(ob)) = outer::classify(&a, |port| port == 4500) else {
                    panic!("not ESP")
                };
                let esp_len = ob.ip_len - ob.sec_off;
                match k % 9 {
                    1 => a[ob.sec_off + 8 + k % 8] ^= 0x01, // the IV (CBC: first block)
                    2 => a[ob.sec_off + 4 + k % 4] ^= 0x80, // the sequence number
                    3 => a[ob.sec_off + 16 + (k * 13) % (esp_len - 32)] ^= 0x10, // ciphertext
                    4 => a[ob.ip_len - 1 - k % 16] ^= 0x02, // the ICV
                    5 => a[ob.sec_off] ^= 0x40,             // the SPI: no SA
                    6 if !transport => a.extend_from_slice(&[0; 6]), // Ethernet padding
                    _ => {}
                }
                arrivals.push(a);
                if k % 10 == 7 {
                    arrivals.push(sent[k - 3].clone()); // a replay
                }
            }
            // One by one, with the SAD lookup the burst does.
            let one = InboundSa::new(&i).unwrap();
            let mut want = Vec::new();
            for a in &arrivals {
                let mut b = buf(a);
                let Ok(Arrival::Ipsec(ob)) = outer::classify(b.data(), |port| port == 4500) else {
                    panic!("not ESP")
                };
                let r = if ob.spi != spi {
                    Err(DropReason::NoSa)
                } else {
                    esp::decap(&one, &mut b, &ob)
                };
                want.push(r.map(|()| b.to_vec()));
            }
            assert!(want.iter().filter(|w| w.is_ok()).count() >= 30);
            // As bursts.
            let many = Arc::new(InboundSa::new(&i).unwrap());
            let mut sad = Sad::new();
            sad.insert(
                spi,
                Some(i.tunnel.map_or(v4("192.168.20.7"), |t| t.local)),
                many.clone(),
            );
            inbound_burst_gives(&sad, &arrivals, &want, &format!("{backend:?} variant {n}"));
            assert_eq!(one.counters().packets(), many.counters().packets());
            assert_eq!(one.counters().bytes(), many.counters().bytes());
        }
    }
    assert!(cases >= 8);
}

/// One inbound burst mixing arrivals of an SA opened with nonces built ahead (ipsec-mb's
/// AES-GCM, decapsulated in the burst's second loop) and of one opened as before (RustCrypto
/// AES-CBC, in the first loop), interleaved, with tampered packets and replays of both: every
/// arrival gets the verdict and bytes one-by-one decapsulation gives it, so each SA's replay
/// window sees its own packets in order whichever loop opens them.
#[cfg(feature = "ipsec-mb")]
#[test]
fn inbound_bursts_mixing_prepared_and_plain_sas() {
    let (mut o1, mut i1) = pair(0x801, |_| {});
    (o1.backend, i1.backend) = (Backend::IpsecMb, Backend::IpsecMb);
    let (o2, i2) = pair(0x802, |p| {
        p.cipher = Cipher::AesCbc256;
        p.integrity = Integrity::HmacSha256;
        p.enc_key = vec![3u8; 32].into();
        p.auth_key = vec![4u8; 32].into();
        p.backend = Backend::RustCrypto;
    });
    let sealed = |o: &SaParams| -> Vec<Vec<u8>> {
        let sa = OutboundSa::new(o).unwrap();
        (0..40)
            .map(|k| {
                let mut b = buf(&udp4(9, (k * 53) % 1300));
                esp::encap(&sa, &mut b).unwrap();
                b.to_vec()
            })
            .collect()
    };
    let (s1, s2) = (sealed(&o1), sealed(&o2));
    let mut arrivals = Vec::new();
    for k in 0..40 {
        for (n, s) in [s1[k].clone(), s2[k].clone()].into_iter().enumerate() {
            let mut a = s;
            if (k + n) % 5 == 2 {
                let at = 20 + 8 + (k * 7) % 8; // the IV (CBC: its first block)
                a[at] ^= 0x04;
            }
            arrivals.push(a);
        }
        if k % 6 == 5 {
            arrivals.push(s1[k - 2].clone());
            arrivals.push(s2[k - 4].clone());
        }
    }
    let (one1, one2) = (InboundSa::new(&i1).unwrap(), InboundSa::new(&i2).unwrap());
    assert!(one1.opens_ahead() && !one2.opens_ahead());
    let want: Vec<_> = arrivals
        .iter()
        .map(|a| {
            let mut b = buf(a);
            let Ok(Arrival::Ipsec(ob)) = outer::classify(b.data(), |p| p == 4500) else {
                panic!("not ESP")
            };
            let sa = if ob.spi == 0x801 { &one1 } else { &one2 };
            esp::decap(sa, &mut b, &ob).map(|()| b.to_vec())
        })
        .collect();
    let ok = want.iter().filter(|w| w.is_ok()).count();
    assert!(
        ok >= 60 && ok < arrivals.len() - 20,
        "{ok} of {}",
        arrivals.len()
    );
    let mut sad = Sad::new();
    let (many1, many2) = (
        Arc::new(InboundSa::new(&i1).unwrap()),
        Arc::new(InboundSa::new(&i2).unwrap()),
    );
    sad.insert(0x801, Some(v4("10.2.0.1")), many1.clone());
    sad.insert(0x802, Some(v4("10.2.0.1")), many2.clone());
    inbound_burst_gives(&sad, &arrivals, &want, "mixed");
    assert_eq!(one1.counters().packets(), many1.counters().packets());
    assert_eq!(one2.counters().packets(), many2.counters().packets());
}

/// A burst through SPD-out that crosses the hard packet limit in its middle: the packets up to
/// the limit leave with sequence numbers 1, 2, ... in order, the rest are refused as expired;
/// soft and hard events are raised once, and the counters hold exactly what was sent.
#[test]
fn outbound_burst_crossing_the_hard_packet_limit() {
    let (mut o, _) = pair(0x200, |_| {});
    o.lifetime = Lifetime {
        soft_packets: 3,
        hard_packets: 5,
        ..Lifetime::default()
    };
    let sa = Arc::new(OutboundSa::new(&o).unwrap());
    let spd = Spd::build(vec![Rule {
        priority: 10,
        selector: sel("192.168.10.0/24", "192.168.20.0/24"),
        action: Action::Protect(OutboundTarget {
            policy_id: 1,
            sa: Some(sa.clone()),
            per_worker: Vec::new(),
        }),
    }])
    .unwrap();
    let t = OutboundTables {
        spd: &spd,
        mtu: 1500,
    };
    let plain: Vec<Vec<u8>> = (0..8).map(|k| udp4(7, 10 + k)).collect();
    let mut pkts = bufs(&plain);
    let mut verdicts = [Verdict::Pending; 8];
    let mut drops = DropCounters::default();
    let mut hits = PolicyHits::new(spd.len());
    let n = burst::outbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
    assert_eq!(n, 5);
    let expired = Verdict::Drop(DropReason::SaExpired);
    assert_eq!(verdicts[..5], [Verdict::Forward; 5]);
    assert_eq!(verdicts[5..], [expired; 3]);
    let seqs: Vec<u32> = pkts[..5].iter().map(|p| esp_seq(p.data())).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    // Refused packets are left as they came.
    for (p, want) in pkts[5..].iter().zip(&plain[5..]) {
        assert_eq!(p.data(), &want[..]);
    }
    assert_eq!(drops.get(DropReason::SaExpired), 3);
    assert_eq!(sa.counters().packets(), 5);
    let sent: u64 = plain[..5].iter().map(|p| p.len() as u64).sum();
    assert_eq!(sa.counters().bytes(), sent);
    assert_eq!(
        events(sa.counters()),
        vec![SaEvent::HardExpired, SaEvent::SoftExpired]
    );

    // The next burst is refused whole, and nothing more is counted or raised.
    let mut pkts = bufs(&plain[..3]);
    let mut verdicts = [Verdict::Pending; 3];
    let n = burst::outbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
    assert_eq!(n, 0);
    assert_eq!(verdicts, [expired; 3]);
    assert_eq!(sa.counters().packets(), 5);
    assert_eq!(events(sa.counters()), vec![]);
}

/// Byte limits inside a burst, as packet by packet: a packet is refused once the bytes before it
/// reach the hard limit (so the packet that crosses it still goes), and "exactly at the limit"
/// refuses the next one. The soft byte limit raises its event once.
#[test]
fn byte_limits_inside_a_burst() {
    let plain: Vec<Vec<u8>> = (0..6).map(|_| udp4(7, 72)).collect(); // 100 bytes each
    for (hard, passed) in [(250u64, 3usize), (300, 3), (301, 4), (100, 1), (1, 1)] {
        let (mut o, _) = pair(0x300, |_| {});
        o.lifetime = Lifetime {
            soft_bytes: 150,
            hard_bytes: hard,
            ..Lifetime::default()
        };
        // Burst and one by one must agree.
        let alone = OutboundSa::new(&o).unwrap();
        let one_by_one: Vec<bool> = plain
            .iter()
            .map(|p| esp::encap(&alone, &mut HeapBuf::from_slice(p)).is_ok())
            .collect();
        let sa = OutboundSa::new(&o).unwrap();
        let mut pkts = bufs(&plain);
        let mut verdicts = [Verdict::Pending; 6];
        let mut drops = DropCounters::default();
        let n = burst::encap(&sa, &mut pkts, &mut verdicts, &mut drops);
        assert_eq!(n, passed, "hard_bytes {hard}");
        let in_burst: Vec<bool> = verdicts.iter().map(|v| *v == Verdict::Forward).collect();
        assert_eq!(in_burst, one_by_one, "hard_bytes {hard}");
        assert!(verdicts[passed..]
            .iter()
            .all(|v| *v == Verdict::Drop(DropReason::SaExpired)));
        assert_eq!(sa.counters().bytes(), 100 * passed as u64);
        assert_eq!(alone.counters().bytes(), 100 * passed as u64);
        let ev = events(sa.counters());
        assert_eq!(
            ev.contains(&SaEvent::SoftExpired),
            passed >= 2,
            "{hard}: {ev:?}"
        );
        assert!(ev.contains(&SaEvent::HardExpired), "{hard}: {ev:?}");
        assert_eq!(events(sa.counters()), vec![]);
    }
}

/// The sequence space running out in the middle of a burst (no ESN): the last numbers go to
/// the first packets, the rest are refused as exhausted, once evented, and not counted.
#[test]
fn sequence_space_running_out_inside_a_burst() {
    let (mut o, _) = pair(0x400, |_| {});
    o.initial_seq = u64::from(u32::MAX) - 2;
    let sa = OutboundSa::new(&o).unwrap();
    let plain: Vec<Vec<u8>> = (0..5).map(|k| udp4(7, 20 + k)).collect();
    let mut pkts = bufs(&plain);
    let mut verdicts = [Verdict::Pending; 5];
    let mut drops = DropCounters::default();
    assert_eq!(burst::encap(&sa, &mut pkts, &mut verdicts, &mut drops), 2);
    let gone = Verdict::Drop(DropReason::SeqExhausted);
    assert_eq!(
        verdicts,
        [Verdict::Forward, Verdict::Forward, gone, gone, gone]
    );
    assert_eq!(esp_seq(pkts[0].data()), u32::MAX - 1);
    assert_eq!(esp_seq(pkts[1].data()), u32::MAX);
    assert_eq!(sa.counters().packets(), 2);
    assert_eq!(sa.last_seq(), u64::from(u32::MAX));
    assert_eq!(events(sa.counters()), vec![SaEvent::SeqExhausted]);
    // And it stays used up.
    let mut pkts = bufs(&plain[..1]);
    let mut verdicts = [Verdict::Pending; 1];
    assert_eq!(burst::encap(&sa, &mut pkts, &mut verdicts, &mut drops), 0);
    assert_eq!(verdicts, [gone]);
    assert_eq!(sa.last_seq(), u64::from(u32::MAX));
    // Said once: later refusals raise nothing (each would reach the control plane).
    assert_eq!(events(sa.counters()), vec![]);
}

/// Without ESN, the packet numbered `SEQ_SOFT` (three quarters of 2^32) raises a soft event
/// once, so that the control plane rekeys before the numbers run out; with ESN it does not.
#[test]
fn three_quarters_of_the_sequence_space_raise_a_soft_event() {
    for esn in [false, true] {
        let (mut o, _) = pair(0x401, |p| p.esn = esn);
        o.initial_seq = dataplane::sa::SEQ_SOFT - 3;
        let sa = OutboundSa::new(&o).unwrap();
        let plain: Vec<Vec<u8>> = (0..5).map(|k| udp4(7, 20 + k)).collect();
        let mut drops = DropCounters::default();
        let mut pkts = bufs(&plain[..2]);
        let mut verdicts = [Verdict::Pending; 2];
        assert_eq!(burst::encap(&sa, &mut pkts, &mut verdicts, &mut drops), 2);
        assert_eq!(events(sa.counters()), vec![], "up to SEQ_SOFT - 1");
        let mut pkts = bufs(&plain);
        let mut verdicts = [Verdict::Pending; 5];
        assert_eq!(burst::encap(&sa, &mut pkts, &mut verdicts, &mut drops), 5);
        let want = if esn {
            vec![]
        } else {
            vec![SaEvent::SoftExpired]
        };
        assert_eq!(events(sa.counters()), want, "esn {esn}");
        let mut pkts = bufs(&plain);
        let mut verdicts = [Verdict::Pending; 5];
        assert_eq!(burst::encap(&sa, &mut pkts, &mut verdicts, &mut drops), 5);
        assert_eq!(events(sa.counters()), vec![], "once");
    }
}

/// Two SAs interleaved in one burst: each numbers its own packets 1, 2, ... in burst order and
/// counts only its own; packets decided before the call are left alone and not counted again.
#[test]
fn interleaved_sas_number_and_count_their_own_packets() {
    let (o1, _) = pair(0x501, |_| {});
    let (o2, _) = pair(0x502, |_| {});
    let (s1, s2) = (
        Arc::new(OutboundSa::new(&o1).unwrap()),
        Arc::new(OutboundSa::new(&o2).unwrap()),
    );
    let rule = |prio, d: &str, sa: &Arc<OutboundSa>| Rule {
        priority: prio,
        selector: sel("192.168.10.0/24", d),
        action: Action::Protect(OutboundTarget {
            policy_id: prio,
            sa: Some(sa.clone()),
            per_worker: Vec::new(),
        }),
    };
    let spd = Spd::build(vec![
        rule(10, "192.168.20.1/32", &s1),
        rule(20, "192.168.20.2/32", &s2),
    ])
    .unwrap();
    let dsts = [1u8, 2, 2, 1, 1, 2, 1, 3, 1, 2];
    let plain: Vec<Vec<u8>> = dsts.iter().map(|&d| udp4(d, 30)).collect();
    let mut pkts = bufs(&plain);
    let mut verdicts = [Verdict::Pending; 10];
    verdicts[4] = Verdict::Drop(DropReason::TtlExceeded); // decided by the caller
    let mut drops = DropCounters::default();
    let mut hits = PolicyHits::new(spd.len());
    let t = OutboundTables {
        spd: &spd,
        mtu: 1500,
    };
    let n = burst::outbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
    assert_eq!(n, 8);
    assert_eq!(verdicts[4], Verdict::Drop(DropReason::TtlExceeded));
    assert_eq!(verdicts[7], Verdict::Drop(DropReason::PolicyDiscard));
    assert_eq!(drops.total(), 1, "only the discard is this call's drop");
    let seqs = |d: u8| -> Vec<u32> {
        (0..10)
            .filter(|&k| dsts[k] == d && verdicts[k] == Verdict::Forward)
            .map(|k| esp_seq(pkts[k].data()))
            .collect()
    };
    assert_eq!(seqs(1), vec![1, 2, 3, 4]);
    assert_eq!(seqs(2), vec![1, 2, 3, 4]);
    assert_eq!((s1.counters().packets(), s2.counters().packets()), (4, 4));
    assert_eq!(s1.last_seq(), 4);
}

/// Inbound: a burst of valid packets that crosses the SA's hard limit is decrypted, but only
/// the packets within the limit are forwarded; the rest are dropped as expired.
#[test]
fn inbound_burst_crossing_the_hard_packet_limit() {
    let (o, mut i) = pair(0x600, |_| {});
    i.lifetime = Lifetime {
        soft_packets: 2,
        hard_packets: 3,
        ..Lifetime::default()
    };
    let out = OutboundSa::new(&o).unwrap();
    let inb = Arc::new(InboundSa::new(&i).unwrap());
    let plain: Vec<Vec<u8>> = (0..5).map(|k| udp4(7, 40 + k)).collect();
    let mut pkts = bufs(&plain);
    let mut verdicts = [Verdict::Pending; 5];
    let mut drops = DropCounters::default();
    assert_eq!(burst::encap(&out, &mut pkts, &mut verdicts, &mut drops), 5);
    let mut sad = Sad::new();
    sad.insert(0x600, Some(v4("10.2.0.1")), inb.clone());
    let spd_in: Spd<()> = Spd::build(Vec::new()).unwrap();
    let t = InboundTables {
        sad: &sad,
        spd: &spd_in,
        natt_ports: &[4500],
        local: None,
    };
    let mut verdicts = [Verdict::Pending; 5];
    let mut hits = PolicyHits::new(0);
    let n = burst::inbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
    assert_eq!(n, 3);
    let expired = Verdict::Drop(DropReason::SaExpired);
    assert_eq!(
        verdicts,
        [
            Verdict::Forward,
            Verdict::Forward,
            Verdict::Forward,
            expired,
            expired
        ]
    );
    for (p, want) in pkts[..3].iter().zip(&plain) {
        assert_eq!(p.data(), &want[..]);
    }
    assert_eq!(inb.counters().packets(), 3);
    let sent: u64 = plain[..3].iter().map(|p| p.len() as u64).sum();
    assert_eq!(inb.counters().bytes(), sent);
    assert_eq!(drops.get(DropReason::SaExpired), 2);
    assert_eq!(
        events(inb.counters()),
        vec![SaEvent::HardExpired, SaEvent::SoftExpired]
    );
}

/// Several threads encapsulating bursts with one SA: no sequence number is handed out twice,
/// and the hard packet limit lets through exactly that many packets, no more.
#[test]
fn threads_sharing_an_sa_never_pass_the_hard_limit_or_repeat_a_number() {
    const HARD: u64 = 1000;
    let (mut o, _) = pair(0x700, |_| {});
    o.lifetime.hard_packets = HARD;
    let sa = Arc::new(OutboundSa::new(&o).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let sa = sa.clone();
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                let mut drops = DropCounters::default();
                for round in 0..20 {
                    let plain: Vec<Vec<u8>> = (0..32)
                        .map(|k| udp4(7, (t * 13 + round + k) % 90))
                        .collect();
                    let mut pkts = bufs(&plain);
                    let mut verdicts = [Verdict::Pending; 32];
                    burst::encap(&sa, &mut pkts, &mut verdicts, &mut drops);
                    for (p, v) in pkts.iter().zip(&verdicts) {
                        match v {
                            Verdict::Forward => seqs.push(esp_seq(p.data())),
                            Verdict::Drop(DropReason::SaExpired) => {}
                            other => panic!("{other:?}"),
                        }
                    }
                }
                seqs
            })
        })
        .collect();
    let mut all: Vec<u32> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    // 4 x 20 x 32 = 2560 packets offered.
    assert_eq!(all.len() as u64, HARD);
    assert_eq!(sa.counters().packets(), HARD);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, HARD, "a sequence number was used twice");
    assert_eq!(events(sa.counters()), vec![SaEvent::HardExpired]);
}

/// The peer's NAT mapping changes while traffic flows: the gateway makes a moved copy of the
/// outbound SA (new UDP port) and its cores pick it up one by one, some of them sealing a few
/// more bursts with the old copy first. Every sequence number is a nonce under the SA's one
/// key, so none may be handed out twice, across both copies; and the lifetime keeps counting
/// across the move.
#[test]
fn a_moved_sa_never_repeats_a_number_while_cores_still_hold_the_old_copy() {
    use std::sync::RwLock;
    const MOVES: u16 = 6;
    let (mut o, _) = pair(0x800, |p| {
        p.udp_encap = Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        });
    });
    let first = Arc::new(OutboundSa::new(&o).unwrap());

    // Made in order first: a core's late burst on the old copy after the move, then the new
    // copy's first burst. The old way (read the old copy's counter, start the new copy after
    // it) repeats numbers here.
    let seal = |sa: &OutboundSa, n: usize| -> Vec<(u32, u16)> {
        let mut pkts = bufs(&(0..n).map(|k| udp4(9, k * 7)).collect::<Vec<_>>());
        let mut verdicts = [Verdict::Pending; 32];
        let mut drops = DropCounters::default();
        burst::encap(sa, &mut pkts, &mut verdicts[..n], &mut drops);
        pkts.iter()
            .zip(&verdicts)
            .map(|(p, v)| {
                assert_eq!(*v, Verdict::Forward);
                let d = p.data();
                let port = u16::from_be_bytes([d[22], d[23]]);
                let Ok(Arrival::Ipsec(outer)) = outer::classify(d, |p| p == port) else {
                    panic!("not ESP in UDP");
                };
                let at = outer.sec_off + 4;
                (u32::from_be_bytes(d[at..at + 4].try_into().unwrap()), port)
            })
            .collect()
    };
    let before = seal(&first, 8);
    let last_before_move = first.last_seq();
    o.udp_encap.as_mut().unwrap().remote_port = 20780;
    let second = Arc::new(first.moved(&o).unwrap());
    let late = seal(&first, 8);
    let after = seal(&second, 8);
    assert_eq!(last_before_move, 8);
    assert!(before.iter().chain(&late).all(|&(_, port)| port == 4500));
    assert!(after.iter().all(|&(_, port)| port == 20780));
    let ordered: Vec<u32> = [&before, &late, &after]
        .iter()
        .flat_map(|v| v.iter().map(|&(s, _)| s))
        .collect();
    assert_eq!(ordered, (1..=24).collect::<Vec<u32>>());
    assert_eq!(second.counters().packets(), 24);
    assert_eq!(first.counters().packets(), 24);

    // A move needs the same SA.
    let mut other = o.clone();
    other.spi = 0x801;
    assert!(second.moved(&other).is_err());

    // Under load: four cores take up the current copy at different paces while the main
    // thread moves the SA six more times.
    let current = Arc::new(RwLock::new(second));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4usize)
        .map(|t| {
            let current = current.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut mine = current.read().unwrap().clone();
                let mut seen = Vec::new();
                let mut round = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || round < 50 {
                    // Core t picks up new tables every t + 1 bursts.
                    if round.is_multiple_of(t + 1) {
                        mine = current.read().unwrap().clone();
                    }
                    seen.extend(seal(&mine, 1 + (round + t) % 32));
                    round += 1;
                }
                // Every core ends on the last copy.
                seen.extend(seal(&current.read().unwrap(), 32));
                seen
            })
        })
        .collect();
    for m in 1..=MOVES {
        std::thread::sleep(std::time::Duration::from_millis(5));
        o.udp_encap.as_mut().unwrap().remote_port = 20780 + m;
        let next = current.read().unwrap().moved(&o).unwrap();
        *current.write().unwrap() = Arc::new(next);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all: Vec<(u32, u16)> = workers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let n = all.len();
    let ports: std::collections::BTreeSet<u16> = all.iter().map(|&(_, p)| p).collect();
    let expected: std::collections::BTreeSet<u16> = (0..=MOVES).map(|m| 20780 + m).collect();
    assert!(ports.is_subset(&expected), "ports seen: {ports:?}");
    assert!(ports.contains(&(20780 + MOVES)), "ports seen: {ports:?}");
    assert!(ports.len() >= 2, "ports seen: {ports:?}");
    let total = current.read().unwrap().counters().packets();
    assert_eq!(total, 24 + n as u64);
    all.sort_unstable_by_key(|&(s, _)| s);
    all.dedup_by_key(|&mut (s, _)| s);
    assert_eq!(all.len(), n, "a sequence number was handed out twice");
    // Every number from 25 on went to exactly one packet.
    assert_eq!(all.first().map(|&(s, _)| s), Some(25));
    assert_eq!(all.last().map(|&(s, _)| s), Some(24 + n as u32));
}

/// `filler` discard rules that no test packet matches, so that the SPD is big enough for the
/// flow cache's walk.
fn add_filler<T>(rules: &mut Vec<Rule<T>>, filler: u32) {
    for k in 0..filler {
        rules.push(Rule {
            priority: 100 + k,
            selector: sel("10.99.0.0/16", &format!("172.16.{}.0/24", k)),
            action: Action::Discard,
        });
    }
}

/// One pipeline's own state in [`pipelines_hand_an_sa_to_its_owner`].
struct Pipe {
    cache: FlowCache,
    hits: PolicyHits,
    drops: DropCounters,
}

impl Pipe {
    fn new(rules: usize) -> Self {
        Self {
            cache: FlowCache::new(FlowCache::DEFAULT_SETS),
            hits: PolicyHits::new(rules),
            drops: DropCounters::default(),
        }
    }

    /// An outbound burst through this pipeline (number `me`, flow cache on); returns how
    /// many packets are to be sent.
    fn run(
        &mut self,
        t: &OutboundTables,
        me: u16,
        pkts: &mut [HeapBuf],
        verdicts: &mut [Verdict],
    ) -> usize {
        burst::outbound_owned(
            t,
            Some(&mut self.cache),
            Some(me),
            pkts,
            verdicts,
            &mut self.drops,
            &mut self.hits,
        )
    }
}

/// Several pipelines sharing SAs: the first pipeline to encapsulate with an SA owns it, and
/// another that classifies one of its packets leaves it untouched and uncounted, with a
/// hand-off verdict naming the owner; the owner, given the packet, seals it with the next
/// number. Checked with the per-packet walk (small SPD) and the burst walk through the flow
/// cache (64 rules or more).
#[test]
fn pipelines_hand_an_sa_to_its_owner() {
    for filler in [0u32, 100] {
        let (o1, _) = pair(0x901, |_| {});
        let (o2, _) = pair(0x902, |_| {});
        let (s1, s2) = (
            Arc::new(OutboundSa::new(&o1).unwrap()),
            Arc::new(OutboundSa::new(&o2).unwrap()),
        );
        let protect = |prio, d: &str, sa: &Arc<OutboundSa>| Rule {
            priority: prio,
            selector: sel("192.168.10.0/24", d),
            action: Action::Protect(OutboundTarget {
                policy_id: prio,
                sa: Some(sa.clone()),
                per_worker: Vec::new(),
            }),
        };
        let mut rules = vec![
            protect(10, "192.168.20.1/32", &s1),
            protect(20, "192.168.20.2/32", &s2),
            Rule {
                priority: 30,
                selector: sel("192.168.10.0/24", "192.168.20.3/32"),
                action: Action::Bypass,
            },
        ];
        add_filler(&mut rules, filler);
        let spd = Spd::build(rules).unwrap();
        let rule_of = |policy: u32| {
            spd.rules()
                .iter()
                .position(|r| r.priority == policy)
                .unwrap()
        };
        let t = OutboundTables {
            spd: &spd,
            mtu: 1500,
        };
        let mut pipes = [Pipe::new(spd.len()), Pipe::new(spd.len())];
        let mut run = |me: u16, pkts: &mut [HeapBuf], verdicts: &mut [Verdict]| {
            let p = &mut pipes[usize::from(me)];
            let n = p.run(&t, me, pkts, verdicts);
            (n, p.hits.clone(), p.drops.total())
        };
        assert_eq!((s1.owner_now(), s2.owner_now()), (None, None));

        // Pipeline 0 sends the first packet of SA 1, and so owns it.
        let mut first = bufs(&[udp4(1, 40)]);
        assert_eq!(run(0, &mut first, &mut [Verdict::Pending]).0, 1);
        assert_eq!((s1.owner_now(), s2.owner_now()), (Some(0), None));
        assert_eq!(esp_seq(first[0].data()), 1);

        // Pipeline 1: SA 1's packets are handed off, untouched; SA 2 becomes its own.
        let dsts = [1u8, 2, 3, 1, 2, 4];
        let plain: Vec<Vec<u8>> = dsts.iter().map(|&d| udp4(d, 50 + usize::from(d))).collect();
        let mut pkts = bufs(&plain);
        let mut verdicts = [Verdict::Pending; 6];
        let (n, hits1, drops1) = run(1, &mut pkts, &mut verdicts);
        assert_eq!(n, 3, "SA 2's two and the bypass");
        assert_eq!(
            verdicts,
            [
                Verdict::Handoff(0),
                Verdict::Forward,
                Verdict::Forward,
                Verdict::Handoff(0),
                Verdict::Forward,
                Verdict::Drop(DropReason::PolicyDiscard),
            ]
        );
        assert_eq!(pkts[0].data(), &plain[0][..]);
        assert_eq!(pkts[3].data(), &plain[3][..]);
        assert_eq!((esp_seq(pkts[1].data()), esp_seq(pkts[4].data())), (1, 2));
        assert_eq!(pkts[2].data(), &plain[2][..], "bypassed as it came");
        assert_eq!(s2.owner_now(), Some(1));
        assert_eq!(s1.last_seq(), 1, "no number taken for a handed-off packet");
        assert_eq!(
            hits1.get(rule_of(10)),
            (0, 0),
            "counted by the owner, not here"
        );
        assert_eq!(hits1.get(rule_of(20)).0, 2);
        assert_eq!(drops1, 1, "only the discard");

        // The owner takes them, in the order they came.
        let mut handed = vec![pkts[0].clone(), pkts[3].clone()];
        let mut v2 = [Verdict::Pending; 2];
        let (n, hits0, _) = run(0, &mut handed, &mut v2);
        assert_eq!(n, 2);
        assert_eq!(v2, [Verdict::Forward; 2]);
        assert_eq!(
            (esp_seq(handed[0].data()), esp_seq(handed[1].data())),
            (2, 3)
        );
        assert_eq!(hits0.get(rule_of(10)).0, 3);
        assert_eq!(s1.counters().packets(), 3);

        // A packet handed to a pipeline that does not own the SA goes on to the owner.
        let mut stray = bufs(&[udp4(2, 10)]);
        let mut v3 = [Verdict::Pending];
        assert_eq!(run(0, &mut stray, &mut v3).0, 0);
        assert_eq!(v3, [Verdict::Handoff(1)]);
        assert_eq!(s2.last_seq(), 2);

        // Without an owner check (one pipeline), nothing is handed off.
        let mut solo = bufs(&[udp4(2, 10)]);
        let mut v4s = [Verdict::Pending];
        burst::outbound(
            &t,
            &mut solo,
            &mut v4s,
            &mut DropCounters::default(),
            &mut PolicyHits::new(spd.len()),
        );
        assert_eq!((v4s[0], esp_seq(solo[0].data())), (Verdict::Forward, 3));
    }
}

/// The owner is claimed once, whoever asks at the same moment, and a moved copy of the SA
/// keeps it with the sequence counter.
#[test]
fn an_sa_has_one_owner_under_contention_and_after_a_move() {
    for round in 0..50u32 {
        let (o, _) = pair(0xa00 + round, |_| {});
        let sa = Arc::new(OutboundSa::new(&o).unwrap());
        let gate = Arc::new(std::sync::Barrier::new(4));
        let answers: Vec<u16> = (0..4u16)
            .map(|me| {
                let (sa, gate) = (sa.clone(), gate.clone());
                std::thread::spawn(move || {
                    gate.wait();
                    sa.owner(me)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let owner = answers[0];
        assert!(owner < 4);
        assert!(answers.iter().all(|&a| a == owner), "{answers:?}");
        assert_eq!(sa.owner_now(), Some(owner));
        let moved = sa.moved(&o).unwrap();
        assert_eq!(moved.owner((owner + 1) % 4), owner);
    }
}

fn esp_spi(pkt: &[u8]) -> u32 {
    match outer::classify(pkt, |p| p == 4500).unwrap() {
        Arrival::Ipsec(o) => o.spi,
        _ => panic!("not ESP"),
    }
}

/// Per-resource SAs (RFC 9611): a pipeline with an SA of its own in the policy's
/// `per_worker` seals the policy's packets with it, taking its own sequence numbers and
/// handing nothing off; one without seals with the fallback if it owns it, or hands the
/// packet to the fallback's owner. Per-packet walk and flow-cache walk.
#[test]
fn per_resource_sas_let_each_pipeline_seal_with_its_own() {
    for filler in [0u32, 100] {
        let (of, _) = pair(0x911, |_| {});
        let (o1, _) = pair(0x912, |_| {});
        let fallback = Arc::new(OutboundSa::new(&of).unwrap());
        let own1 = Arc::new(OutboundSa::new(&o1).unwrap());
        fallback.owner(0);
        own1.owner(1);
        let mut rules = vec![Rule {
            priority: 10,
            selector: sel("192.168.10.0/24", "192.168.20.0/24"),
            action: Action::Protect(OutboundTarget {
                policy_id: 10,
                sa: Some(fallback.clone()),
                per_worker: vec![None, Some(own1.clone())],
            }),
        }];
        add_filler(&mut rules, filler);
        let spd = Spd::build(rules).unwrap();
        let t = OutboundTables {
            spd: &spd,
            mtu: 1500,
        };
        let mut pipes = [
            Pipe::new(spd.len()),
            Pipe::new(spd.len()),
            Pipe::new(spd.len()),
        ];
        let mut run = |me: u16, pkts: &mut [HeapBuf], verdicts: &mut [Verdict]| {
            pipes[usize::from(me)].run(&t, me, pkts, verdicts)
        };
        let plain: Vec<Vec<u8>> = (1..=4).map(|d| udp4(d, 60)).collect();
        for (me, spi) in [(1u16, 0x912u32), (0, 0x911)] {
            let mut pkts = bufs(&plain);
            let mut v = [Verdict::Pending; 4];
            assert_eq!(run(me, &mut pkts, &mut v), 4, "pipeline {me}");
            assert_eq!(v, [Verdict::Forward; 4]);
            for (k, p) in pkts.iter().enumerate() {
                assert_eq!(esp_spi(p.data()), spi, "pipeline {me} packet {k}");
                assert_eq!(esp_seq(p.data()), k as u32 + 1);
            }
        }
        assert_eq!((fallback.last_seq(), own1.last_seq()), (4, 4));
        // Pipeline 2 has no SA of its own: the fallback's owner (0) gets its packets.
        let mut pkts = bufs(&plain[..2]);
        let mut v = [Verdict::Pending; 2];
        assert_eq!(run(2, &mut pkts, &mut v), 0);
        assert_eq!(v, [Verdict::Handoff(0); 2]);
        assert_eq!(pkts[0].data(), &plain[0][..]);
        assert_eq!((fallback.last_seq(), own1.last_seq()), (4, 4));
    }
}

/// Only IPsec addressed to this device is processed as such (RFC 4301 §5.2). With the
/// gateway's addresses given (`InboundTables::local`): ESP to an inside host that runs IPsec
/// itself, IKE and NAT-T ESP to it pass through SPD-in like any plain packet (BYPASS forwards
/// them untouched and counts them under the rule; no rule discards them), while ESP with an
/// unknown SPI to our own address is `NoSa` and IKE to it goes to the control plane. An SA's
/// packets are still taken whatever their destination. Without the addresses (`fgpcap`)
/// every ESP packet is looked up and every IKE datagram is the control plane's.
#[test]
fn ipsec_to_other_addresses_passes_through_spd_in() {
    // Our SA: 10.1.0.1 -> us (10.2.0.1). The inside host 192.168.20.9 has SAs of its own
    // with 198.51.100.7, which the gateway knows nothing of.
    let (o, i) = pair(0x5001, |_| {});
    let (out, inb) = (OutboundSa::new(&o).unwrap(), InboundSa::new(&i).unwrap());
    let (transit_o, _) = pair(0x5002, |p| {
        p.tunnel = Some(Endpoints {
            local: v4("198.51.100.7"),
            remote: v4("192.168.20.9"),
        })
    });
    let (transit_natt, _) = pair(0x5003, |p| {
        p.tunnel = Some(Endpoints {
            local: v4("198.51.100.7"),
            remote: v4("192.168.20.9"),
        });
        p.udp_encap = Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        });
    });
    let mut sad = Sad::new();
    sad.insert(0x5001, Some(v4("10.2.0.1")), Arc::new(inb));
    let seal = |sa: &OutboundSa| {
        let mut b = buf(&udp4(7, 100));
        esp::encap(sa, &mut b).unwrap();
        b.to_vec()
    };
    let ours = seal(&out);
    let (transit_sa, transit_natt_sa) = (
        OutboundSa::new(&transit_o).unwrap(),
        OutboundSa::new(&transit_natt).unwrap(),
    );
    let transit_esp = seal(&transit_sa);
    let transit_natt_esp = seal(&transit_natt_sa);
    let mut unknown_spi = seal(&out);
    unknown_spi[20] ^= 0x40;
    let ike = |dst: [u8; 4]| {
        let mut p = common::udp4([198, 51, 100, 7], dst, 40, 0);
        p[20..22].copy_from_slice(&500u16.to_be_bytes());
        p[22..24].copy_from_slice(&500u16.to_be_bytes());
        p
    };
    let (ike_us, ike_transit) = (ike([10, 2, 0, 1]), ike([192, 168, 20, 9]));
    let mut transit_ah = transit_esp.clone();
    transit_ah[9] = 51;
    transit_ah[10..12].fill(0);
    let c = !dataplane::wire::checksum::data(&transit_ah[..20]);
    transit_ah[10..12].copy_from_slice(&c.to_be_bytes());
    let arrivals = vec![
        ours.clone(),
        unknown_spi,
        transit_esp.clone(),
        ike_us,
        ike_transit.clone(),
        transit_natt_esp.clone(),
        transit_ah,
    ];
    // SPD-in: ESP and UDP (IKE, NAT-T) to the inside host are let through; nothing else.
    let mut bypass_esp = sel("198.51.100.7/32", "192.168.20.9/32");
    bypass_esp.proto = Some(50);
    let mut bypass_udp = bypass_esp;
    bypass_udp.proto = Some(17);
    let spd_in: Spd<()> = Spd::build(vec![
        Rule {
            priority: 1,
            selector: bypass_esp,
            action: Action::Bypass,
        },
        Rule {
            priority: 2,
            selector: bypass_udp,
            action: Action::Bypass,
        },
    ])
    .unwrap();
    let locals = [v4("10.2.0.1"), v4("203.0.113.1")];
    let run = |local: Option<&[IpAddr]>| {
        let t = InboundTables {
            sad: &sad,
            spd: &spd_in,
            natt_ports: &[4500],
            local,
        };
        let mut pkts = bufs(&arrivals);
        let mut verdicts = vec![Verdict::Pending; pkts.len()];
        let mut drops = DropCounters::default();
        let mut hits = PolicyHits::new(spd_in.len());
        burst::inbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
        (pkts, verdicts, drops, hits)
    };
    let (pkts, verdicts, drops, hits) = run(Some(&locals));
    assert_eq!(
        verdicts,
        vec![
            Verdict::Forward,
            Verdict::Drop(DropReason::NoSa),
            Verdict::Forward,
            Verdict::ToControlPlane,
            Verdict::Forward,
            Verdict::Forward,
            Verdict::Drop(DropReason::PolicyDiscard),
        ]
    );
    // Ours decapsulated; the passing ones untouched.
    assert_eq!(pkts[0].data(), &udp4(7, 100)[..]);
    assert_eq!(pkts[2].data(), &transit_esp[..]);
    assert_eq!(pkts[4].data(), &ike_transit[..]);
    assert_eq!(pkts[5].data(), &transit_natt_esp[..]);
    assert_eq!(
        hits.get(0).0,
        1,
        "ESP to the inside host counted under its rule"
    );
    assert_eq!(hits.get(1).0, 2, "IKE and NAT-T ESP to it under theirs");
    assert_eq!(drops.get(DropReason::NoSa), 1);
    assert_eq!(drops.get(DropReason::PolicyDiscard), 1);
    // Without the addresses: everything IPsec-shaped is the gateway's, as before (our packet
    // is a replay by now).
    let (_, verdicts, drops, _) = run(None);
    assert_eq!(
        verdicts,
        vec![
            Verdict::Drop(DropReason::ReplayDuplicate),
            Verdict::Drop(DropReason::NoSa),
            Verdict::Drop(DropReason::NoSa),
            Verdict::ToControlPlane,
            Verdict::ToControlPlane,
            Verdict::Drop(DropReason::NoSa),
            Verdict::Drop(DropReason::NoSa),
        ]
    );
    assert_eq!(drops.get(DropReason::NoSa), 4);
}
