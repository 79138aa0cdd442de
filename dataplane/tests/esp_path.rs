//! The whole per-packet path: SA records → encap → classify → SAD → decap, for every cipher,
//! mode, IP version pair, ESN and NAT-T; lifetimes, sequence exhaustion, ECN/DSCP, TFC; and the
//! attacks the inbound path must count. Interop with an independent implementation is in
//! tests/interop/scapy_esp.py; these tests pin our own invariants.

mod common;

use common::udp4;
use std::net::IpAddr;
use std::sync::Arc;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::burst::{self, InboundTables, OutboundTables, OutboundTarget, Verdict};
use dataplane::crypto::{Cipher, Integrity};
use dataplane::drop::{DropCounters, DropReason};
use dataplane::esp;
use dataplane::flowcache::FlowCache;
use dataplane::outer::{self, Arrival, Outer};
use dataplane::sa::{
    DfMode, Direction, EcnMode, Endpoints, InboundSa, Mode, OutboundSa, Protocol, SaEvent,
    SaParams, UdpEncap,
};
use dataplane::sad::Sad;
use dataplane::spd::{Action, PolicyHits, PortRange, Rule, Selector, Spd};

const SUITES: &[(Cipher, Integrity)] = &[
    (Cipher::Null, Integrity::HmacSha256),
    (Cipher::AesCbc128, Integrity::HmacSha256),
    (Cipher::AesCbc256, Integrity::HmacSha384),
    (Cipher::AesCbc256, Integrity::HmacSha512),
    (Cipher::AesGcm128, Integrity::None),
    (Cipher::AesGcm256, Integrity::None),
    (Cipher::Chacha20Poly1305, Integrity::None),
    (Cipher::AesGmac128, Integrity::None),
    (Cipher::AesGmac256, Integrity::None),
];

fn key(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An IPv6 UDP packet with `len` payload bytes.
fn udp6(len: usize, tc: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 8 + len];
    p[0] = 0x60 | (tc >> 4);
    p[1] = tc << 4;
    p[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(
        &"2001:db8:10::5"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p[24..40].copy_from_slice(
        &"2001:db8:20::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p[40..42].copy_from_slice(&1234u16.to_be_bytes());
    p[42..44].copy_from_slice(&53u16.to_be_bytes());
    p[44..46].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    for (i, b) in p[48..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn pair(
    cipher: Cipher,
    integ: Integrity,
    protocol: Protocol,
    mode: Mode,
    outer6: bool,
    esn: bool,
    natt: bool,
) -> (SaParams, SaParams) {
    let mut out = SaParams::new(0x1001, Direction::Out, cipher, integ);
    out.protocol = protocol;
    out.mode = mode;
    out.enc_key = key(cipher.key_len(), 1).into();
    out.auth_key = key(integ.key_len(), 2).into();
    if mode == Mode::Tunnel {
        out.tunnel = Some(if outer6 {
            Endpoints {
                local: "2001:db8::1".parse().unwrap(),
                remote: "2001:db8::2".parse().unwrap(),
            }
        } else {
            Endpoints {
                local: v4("10.1.0.1"),
                remote: v4("10.2.0.1"),
            }
        });
    }
    if natt {
        out.udp_encap = Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        });
    }
    out.esn = esn;
    if esn {
        out.initial_seq = 0xffff_fffd; // the high half changes during the test
    }
    let mut inb = out.clone();
    inb.direction = Direction::In;
    if let Some(t) = inb.tunnel {
        // Seen from the receiver, local and remote swap.
        inb.tunnel = Some(Endpoints {
            local: t.remote,
            remote: t.local,
        });
    }
    (out, inb)
}

fn classify(buf: &HeapBuf) -> Outer {
    match outer::classify(buf.data(), |p| p == 4500).unwrap() {
        Arrival::Ipsec(o) => o,
        other => panic!("not IPsec: {other:?}"),
    }
}

#[test]
fn round_trip_every_suite_mode_family_esn_natt() {
    let mut cases = 0;
    for &(cipher, integ) in SUITES {
        for protocol in [Protocol::Esp, Protocol::Ah] {
            if protocol == Protocol::Ah && (cipher != Cipher::Null) {
                continue;
            }
            for mode in [Mode::Tunnel, Mode::Transport] {
                for outer6 in [false, true] {
                    for inner6 in [false, true] {
                        if mode == Mode::Transport && outer6 != inner6 {
                            continue;
                        }
                        for esn in [false, true] {
                            for natt in [false, true] {
                                if natt && protocol == Protocol::Ah {
                                    continue;
                                }
                                let (o, i) = pair(cipher, integ, protocol, mode, outer6, esn, natt);
                                let out = OutboundSa::new(&o).unwrap();
                                let inb = InboundSa::new(&i).unwrap();
                                for len in [0usize, 1, 15, 16, 17, 100, 1400] {
                                    let pkt = if inner6 {
                                        udp6(len, 0)
                                    } else {
                                        udp4([192, 168, 10, 5], [192, 168, 20, 7], len, 0)
                                    };
                                    let mut b = HeapBuf::from_slice(&pkt);
                                    esp::encap(&out, &mut b).unwrap();
                                    assert_ne!(b.data(), &pkt[..]);
                                    let o = classify(&b);
                                    assert_eq!(o.spi, 0x1001);
                                    assert_eq!(o.udp.is_some(), natt);
                                    esp::decap(&inb, &mut b, &o).unwrap_or_else(|e| {
                                        panic!("{cipher:?}/{integ:?} {protocol:?} {mode:?} o6={outer6} i6={inner6} esn={esn} natt={natt} len={len}: {e:?}")
                                    });
                                    assert_eq!(b.data(), &pkt[..]);
                                    cases += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(cases > 500, "{cases}");
}

#[test]
fn esn_high_half_carried_through_wrap() {
    let (o, i) = pair(
        Cipher::AesGcm128,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        false,
        true,
        false,
    );
    let out = OutboundSa::new(&o).unwrap();
    let inb = InboundSa::new(&i).unwrap();
    let pkt = udp4([192, 168, 10, 5], [192, 168, 20, 7], 50, 0);
    let mut seqs = Vec::new();
    for _ in 0..6 {
        let mut b = HeapBuf::from_slice(&pkt);
        esp::encap(&out, &mut b).unwrap();
        let o = classify(&b);
        seqs.push(u32::from_be_bytes(
            b.data()[o.sec_off + 4..o.sec_off + 8].try_into().unwrap(),
        ));
        esp::decap(&inb, &mut b, &o).unwrap();
    }
    // 0xfffffffe, 0xffffffff, then the low half wraps while the high half becomes 1.
    assert_eq!(seqs, vec![0xffff_fffe, 0xffff_ffff, 0, 1, 2, 3]);
    assert_eq!(inb.window().top(), 0x1_0000_0003);
}

#[test]
fn sequence_exhaustion_without_esn() {
    let (mut o, _) = pair(
        Cipher::AesGcm128,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        false,
        false,
        false,
    );
    o.initial_seq = u64::from(u32::MAX) - 1;
    let out = OutboundSa::new(&o).unwrap();
    let pkt = udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0);
    let mut b = HeapBuf::from_slice(&pkt);
    esp::encap(&out, &mut b).unwrap(); // seq 2^32 - 1, the last one
    for _ in 0..3 {
        let mut b = HeapBuf::from_slice(&pkt);
        assert_eq!(esp::encap(&out, &mut b), Err(DropReason::SeqExhausted));
    }
    assert_eq!(out.counters().poll_event(), Some(SaEvent::SeqExhausted));
    assert_eq!(out.counters().poll_event(), None);
}

#[test]
fn lifetimes_raise_soft_then_hard_once() {
    let (mut o, _) = pair(
        Cipher::AesGcm128,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        false,
        false,
        false,
    );
    o.lifetime.soft_packets = 3;
    o.lifetime.hard_packets = 5;
    let out = OutboundSa::new(&o).unwrap();
    let pkt = udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0);
    let mut events = Vec::new();
    let mut results = Vec::new();
    let mut hinted = Vec::new();
    for _ in 0..7 {
        let mut b = HeapBuf::from_slice(&pkt);
        results.push(esp::encap(&out, &mut b).is_ok());
        // The process-wide hint that tells the reporter to look now. (Other tests in this
        // binary may raise it too, so only the packets that cross a limit are checked.)
        hinted.push(dataplane::sa::take_event_hint());
        while let Some(e) = out.counters().poll_event() {
            events.push(e);
        }
    }
    assert_eq!(results, vec![true, true, true, true, true, false, false]);
    assert!(
        hinted[2] && hinted[4],
        "the 3rd packet crosses soft, the 5th hard: {hinted:?}"
    );
    assert_eq!(events, vec![SaEvent::SoftExpired, SaEvent::HardExpired]);
    assert_eq!(out.counters().packets(), 5);
}

#[test]
fn dscp_ecn_and_df_follow_rfc4301_and_rfc6040() {
    let (o, i) = pair(
        Cipher::AesGcm128,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        false,
        false,
        false,
    );
    let out = OutboundSa::new(&o).unwrap();
    let inb = InboundSa::new(&i).unwrap();
    // Inner DSCP 46 (EF), ECT(0), DF set.
    let pkt = udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, (46 << 2) | 2);
    let mut b = HeapBuf::from_slice(&pkt);
    esp::encap(&out, &mut b).unwrap();
    assert_eq!(
        b.data()[1],
        (46 << 2) | 2,
        "outer copies DSCP and ECN (normal mode)"
    );
    assert_eq!(b.data()[6] & 0x40, 0x40, "DF copied");
    // A router on the path marks congestion on the outer header.
    b.data_mut()[1] |= 3;
    let c = {
        let d = b.data_mut();
        d[10] = 0;
        d[11] = 0;
        !dataplane::wire::checksum::data(&d[..20])
    };
    b.data_mut()[10..12].copy_from_slice(&c.to_be_bytes());
    let o = classify(&b);
    esp::decap(&inb, &mut b, &o).unwrap();
    assert_eq!(
        b.data()[1],
        (46 << 2) | 3,
        "CE propagates to the inner header"
    );
    assert_eq!(
        dataplane::wire::checksum::data(&b.data()[..20]),
        0xffff,
        "inner checksum fixed"
    );

    // Compatibility mode: outer Not-ECT.
    let (mut o2, _) = pair(
        Cipher::AesGcm128,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        false,
        false,
        false,
    );
    o2.ecn = EcnMode::Compat;
    o2.dscp = Some(10);
    let out2 = OutboundSa::new(&o2).unwrap();
    let mut b = HeapBuf::from_slice(&pkt);
    esp::encap(&out2, &mut b).unwrap();
    assert_eq!(b.data()[1], 10 << 2);

    // Outer CE on a Not-ECT inner packet is dropped (RFC 6040 §4.2).
    let pkt = udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0);
    let mut b = HeapBuf::from_slice(&pkt);
    esp::encap(&out, &mut b).unwrap();
    b.data_mut()[1] |= 3;
    let o = classify(&b);
    assert_eq!(esp::decap(&inb, &mut b, &o), Err(DropReason::EcnCeOnNotEct));
}

/// AH tunnel mode over IPv4 sets the outer DF as the SA says (RFC 4301 §8.1), as ESP does:
/// copied from the inner packet (an IPv6 one counts as DF), always set, or always clear; the
/// flags are mutable, outside the ICV, so each packet still verifies.
#[test]
fn ah_tunnel_df_follows_the_sa() {
    let df = udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0);
    let mut no_df = df.clone();
    no_df[6] = 0;
    no_df[10..12].fill(0);
    let c = !dataplane::wire::checksum::data(&no_df[..20]);
    no_df[10..12].copy_from_slice(&c.to_be_bytes());
    for (mode, inner, want) in [
        (DfMode::Copy, &df, 0x40),
        (DfMode::Copy, &no_df, 0),
        (DfMode::Set, &no_df, 0x40),
        (DfMode::Clear, &df, 0),
    ] {
        let (mut o, i) = pair(
            Cipher::Null,
            Integrity::HmacSha256,
            Protocol::Ah,
            Mode::Tunnel,
            false,
            false,
            false,
        );
        o.df = mode;
        let (out, inb) = (OutboundSa::new(&o).unwrap(), InboundSa::new(&i).unwrap());
        let mut b = HeapBuf::from_slice(inner);
        esp::encap(&out, &mut b).unwrap();
        assert_eq!(b.data()[6], want, "{mode:?}");
        assert_eq!(b.data()[9], 51, "AH");
        assert_eq!(dataplane::wire::checksum::data(&b.data()[..20]), 0xffff);
        let o = classify(&b);
        esp::decap(&inb, &mut b, &o).unwrap();
        assert_eq!(b.data(), &inner[..], "{mode:?}");
    }
}

#[test]
fn tfc_padding_is_removed_by_the_receiver() {
    let (mut o, mut i) = pair(
        Cipher::AesGcm256,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        false,
        false,
        false,
    );
    o.tfc_pad = 1000;
    i.tfc_pad = 0;
    let out = OutboundSa::new(&o).unwrap();
    let inb = InboundSa::new(&i).unwrap();
    let pkt = udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0);
    let mut b = HeapBuf::from_slice_with_room(&pkt, 128, 2048);
    esp::encap(&out, &mut b).unwrap();
    assert!(b.len() > 1000, "padded to hide the length: {}", b.len());
    let o = classify(&b);
    esp::decap(&inb, &mut b, &o).unwrap();
    assert_eq!(b.data(), &pkt[..]);
}

#[test]
fn attacks_are_dropped_and_named() {
    for &(cipher, integ) in &[
        (Cipher::AesGcm128, Integrity::None),
        (Cipher::AesCbc128, Integrity::HmacSha256),
    ] {
        let (o, i) = pair(
            cipher,
            integ,
            Protocol::Esp,
            Mode::Tunnel,
            false,
            false,
            false,
        );
        let out = OutboundSa::new(&o).unwrap();
        let inb = InboundSa::new(&i).unwrap();
        let pkt = udp4([192, 168, 10, 5], [192, 168, 20, 7], 40, 0);
        let mut good = HeapBuf::from_slice(&pkt);
        esp::encap(&out, &mut good).unwrap();
        let wire = good.to_vec();
        let o1 = classify(&good);

        // Every single-byte change of the ESP part fails the ICV (changing the SPI would find
        // no SA in a real SAD; decap with this SA still fails the ICV).
        for pos in o1.sec_off..wire.len() {
            let mut t = wire.clone();
            t[pos] ^= 0x01;
            let mut b = HeapBuf::from_slice(&t);
            let r = esp::decap(&inb, &mut b, &o1);
            // Turning sequence number 1 into 0 is caught earlier: 0 is never sent without ESN.
            let seq = u32::from_be_bytes(t[o1.sec_off + 4..o1.sec_off + 8].try_into().unwrap());
            let want = if seq == 0 {
                DropReason::ReplayTooOld
            } else {
                DropReason::IcvMismatch
            };
            assert_eq!(r, Err(want), "{cipher:?} byte {pos}");
        }
        // Truncations: every length down to the IP header.
        for cut in 1..(wire.len() - o1.sec_off) {
            let mut t = wire[..wire.len() - cut].to_vec();
            let l = t.len() as u16;
            t[2..4].copy_from_slice(&l.to_be_bytes());
            let b0 = HeapBuf::from_slice(&t);
            match outer::classify(b0.data(), |_| false) {
                Ok(Arrival::Ipsec(o)) => {
                    let mut b = b0.clone();
                    let r = esp::decap(&inb, &mut b, &o);
                    assert!(
                        matches!(r, Err(DropReason::BadLength) | Err(DropReason::IcvMismatch)),
                        "{cipher:?} cut {cut}: {r:?}"
                    );
                }
                Err(r) => assert_eq!(r, DropReason::BadLength),
                Ok(other) => panic!("{other:?}"),
            }
        }
        // The genuine packet passes once, then is a duplicate.
        let mut b = HeapBuf::from_slice(&wire);
        esp::decap(&inb, &mut b, &o1).unwrap();
        let mut b = HeapBuf::from_slice(&wire);
        assert_eq!(
            esp::decap(&inb, &mut b, &o1),
            Err(DropReason::ReplayDuplicate)
        );
        // 100 packets later the first one is too old for a 64-packet window.
        for _ in 0..100 {
            let mut b = HeapBuf::from_slice(&pkt);
            esp::encap(&out, &mut b).unwrap();
            let o = classify(&b);
            esp::decap(&inb, &mut b, &o).unwrap();
        }
        let mut b = HeapBuf::from_slice(&wire);
        assert_eq!(esp::decap(&inb, &mut b, &o1), Err(DropReason::ReplayTooOld));
    }
}

#[test]
fn inner_packet_outside_the_selectors_is_dropped() {
    let (mut o, mut i) = pair(
        Cipher::AesGcm128,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        false,
        false,
        false,
    );
    // The sender's SA carries anything; the receiver's only 192.168.10.0/24 -> 192.168.20.0/24.
    o.local_ts.clear();
    o.remote_ts.clear();
    i.local_ts = vec!["192.168.20.0/24".parse().unwrap()];
    i.remote_ts = vec!["192.168.10.0/24".parse().unwrap()];
    let out = OutboundSa::new(&o).unwrap();
    let inb = InboundSa::new(&i).unwrap();
    let ok = udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0);
    let bad = udp4([192, 168, 10, 5], [192, 168, 99, 7], 10, 0);
    let mut b = HeapBuf::from_slice(&ok);
    esp::encap(&out, &mut b).unwrap();
    let o1 = classify(&b);
    esp::decap(&inb, &mut b, &o1).unwrap();
    let mut b = HeapBuf::from_slice(&bad);
    esp::encap(&out, &mut b).unwrap();
    let o2 = classify(&b);
    assert_eq!(
        esp::decap(&inb, &mut b, &o2),
        Err(DropReason::PolicyMismatch)
    );
}

/// A tunnel-mode AES-GCM SA pair between 192.168.10.0/24 and 192.168.20.0/24 (the outbound
/// SA's parameters first).
fn site_pair() -> (SaParams, SaParams) {
    let (mut o, mut i) = pair(
        Cipher::AesGcm128,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        false,
        false,
        false,
    );
    o.local_ts = vec!["192.168.10.0/24".parse().unwrap()];
    o.remote_ts = vec!["192.168.20.0/24".parse().unwrap()];
    i.local_ts = o.remote_ts.clone();
    i.remote_ts = o.local_ts.clone();
    (o, i)
}

/// A selector on addresses alone.
fn any_ports(s: &str, d: &str) -> Selector {
    Selector {
        src: s.parse().unwrap(),
        dst: d.parse().unwrap(),
        proto: None,
        src_ports: PortRange::ANY,
        dst_ports: PortRange::ANY,
    }
}

/// SPD-out of site 192.168.10.0/24: PROTECT towards 192.168.20.0/24 with `out`, PROTECT
/// towards 192.168.30.0/24 with no SA yet, BYPASS towards 10.0.0.0/8, DISCARD the rest.
fn site_policies(out: &Arc<OutboundSa>) -> Vec<Rule<OutboundTarget>> {
    let sel = any_ports;
    vec![
        Rule {
            priority: 10,
            selector: sel("192.168.10.0/24", "192.168.20.0/24"),
            action: Action::Protect(OutboundTarget {
                policy_id: 1,
                sa: Some(out.clone()),
                per_worker: Vec::new(),
            }),
        },
        Rule {
            priority: 20,
            selector: sel("192.168.10.0/24", "192.168.30.0/24"),
            action: Action::Protect(OutboundTarget {
                policy_id: 2,
                sa: None,
                per_worker: Vec::new(),
            }),
        },
        Rule {
            priority: 30,
            selector: sel("192.168.10.0/24", "10.0.0.0/8"),
            action: Action::Bypass,
        },
        Rule {
            priority: 100,
            selector: sel("0.0.0.0/0", "0.0.0.0/0"),
            action: Action::Discard,
        },
    ]
}

/// `burst::outbound` classifies a run of packets with one `Spd::lookup_ids` call once the SPD
/// is large (`WALK_TOGETHER_MIN` rules or more) and one packet at a time below that; both must
/// reach the same verdicts, policy counts and drop counts, over more than one run of packets
/// and with packets already decided left alone.
#[test]
fn large_and_small_spds_classify_bursts_alike() {
    let (o, _) = site_pair();
    let out = Arc::new(OutboundSa::new(&o).unwrap());
    let rules = |fillers: usize| {
        let mut r = site_policies(&out);
        // Rules for other sites, some of them more specific inside 10.0.0.0/8.
        for k in 0..fillers {
            let dst = format!("10.{}.{}.0/24", 100 + k / 200, k % 200);
            r.push(Rule {
                priority: 5,
                selector: any_ports("172.31.0.0/16", &dst),
                action: Action::Protect(OutboundTarget {
                    policy_id: 100 + k as u32,
                    sa: None,
                    per_worker: Vec::new(),
                }),
            });
        }
        Spd::build(r).unwrap()
    };
    let small = rules(0);
    let large = rules(300);
    assert!(small.len() < dataplane::spd::WALK_TOGETHER_MIN);
    assert!(large.len() >= dataplane::spd::WALK_TOGETHER_MIN);
    let kinds = [
        udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0),
        udp4([192, 168, 10, 5], [192, 168, 30, 7], 10, 0),
        udp4([192, 168, 10, 5], [10, 100, 3, 9], 10, 0),
        udp4([172, 16, 0, 1], [192, 168, 20, 7], 10, 0),
        vec![0x45, 0, 0],
        udp4([172, 31, 2, 2], [10, 100, 7, 1], 10, 0),
    ];
    let run = |spd: &Spd<OutboundTarget>, cache: Option<&mut FlowCache>| {
        let mut pkts: Vec<HeapBuf> = (0..45)
            .map(|k| HeapBuf::from_slice(&kinds[k % kinds.len()]))
            .collect();
        let mut verdicts = vec![Verdict::Pending; pkts.len()];
        // Decided before the pipeline: left as they are, and not counted.
        verdicts[7] = Verdict::Drop(DropReason::TooBig);
        verdicts[40] = Verdict::Forward;
        let mut drops = DropCounters::default();
        let mut hits = PolicyHits::new(spd.len());
        let t = OutboundTables { spd, mtu: 1500 };
        let n = match cache {
            Some(c) => {
                burst::outbound_cached(&t, c, &mut pkts, &mut verdicts, &mut drops, &mut hits)
            }
            None => burst::outbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits),
        };
        let counts: Vec<(u64, u64)> = (0..spd.len()).map(|i| hits.get(i)).collect();
        (n, verdicts, counts, drops.total())
    };
    let (n, verdicts, counts, dropped) = run(&small, None);
    let (ln, lverdicts, lcounts, ldropped) = run(&large, None);
    // Through a pipeline's flow cache: the same verdicts and counts when the cache is empty
    // and when it answers. The first run of 32 packets misses (its keys are probed before any
    // is stored): 26 keys (7 is decided, 4, 10, 16, 22, 28 do not parse); the 11 keys of the
    // second run, and all 37 of the second pass, hit.
    let mut cache = FlowCache::new(FlowCache::DEFAULT_SETS);
    for pass in 0..2 {
        let got = run(&large, Some(&mut cache));
        assert_eq!(
            got,
            (ln, lverdicts.clone(), lcounts.clone(), ldropped),
            "pass {pass}"
        );
    }
    let st = cache.stats();
    assert_eq!((st.misses, st.hits, st.bypassed), (26, 48, 0));
    // A small SPD does not use the cache.
    assert_eq!(
        run(&small, Some(&mut cache)),
        (n, verdicts.clone(), counts.clone(), dropped)
    );
    assert_eq!(cache.stats(), st);
    assert_eq!((ln, ldropped), (n, dropped));
    // The sixth kind (172.31.2.2 -> 10.100.7.1) is the only one a filler rule (id 4 + 7, no
    // SA yet) catches; the small SPD discards it.
    for (k, (a, b)) in verdicts.iter().zip(&lverdicts).enumerate() {
        if k % kinds.len() == 5 && k != 7 && k != 40 {
            assert_eq!(*a, Verdict::Drop(DropReason::PolicyDiscard), "{k}");
            assert_eq!(*b, Verdict::Drop(DropReason::NoSaForPolicy), "{k}");
        } else {
            assert_eq!(a, b, "{k}");
        }
    }
    let sixth = (0..45).filter(|k| k % 6 == 5).count() as u64;
    assert_eq!(lcounts[..3], counts[..3]);
    assert_eq!(lcounts[3].0 + sixth, counts[3].0);
    assert_eq!(lcounts[4 + 7].0, sixth);
    assert_eq!(
        lcounts.iter().map(|c| c.0).sum::<u64>(),
        counts.iter().map(|c| c.0).sum::<u64>()
    );
    // And what that is: 45 packets of 6 kinds, two of them decided beforehand.
    assert_eq!(verdicts[0], Verdict::Forward);
    assert_eq!(verdicts[1], Verdict::Drop(DropReason::NoSaForPolicy));
    assert_eq!(verdicts[2], Verdict::Forward);
    assert_eq!(verdicts[3], Verdict::Drop(DropReason::PolicyDiscard));
    assert_eq!(verdicts[4], Verdict::Drop(DropReason::Malformed));
    assert_eq!(verdicts[7], Verdict::Drop(DropReason::TooBig));
    assert_eq!(verdicts[40], Verdict::Forward);
    assert_eq!(n, 16);
    assert_eq!(dropped, 27);
}

#[test]
fn bursts_sort_packets_into_verdicts_and_counters() {
    let (o, i) = site_pair();
    let out = Arc::new(OutboundSa::new(&o).unwrap());
    let inb = Arc::new(InboundSa::new(&i).unwrap());
    let spd_out = Spd::build(site_policies(&out)).unwrap();
    let mut pkts = vec![
        HeapBuf::from_slice(&udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0)),
        HeapBuf::from_slice(&udp4([192, 168, 10, 5], [192, 168, 30, 7], 10, 0)),
        HeapBuf::from_slice(&udp4([192, 168, 10, 5], [10, 9, 9, 9], 10, 0)),
        HeapBuf::from_slice(&udp4([172, 16, 0, 1], [192, 168, 20, 7], 10, 0)),
        HeapBuf::from_slice(&[0x45, 0, 0]),
    ];
    let mut verdicts = [Verdict::Pending; 5];
    let mut drops = DropCounters::default();
    let lens: Vec<u64> = pkts.iter().map(|p| p.data().len() as u64).collect();
    let mut hits = PolicyHits::new(spd_out.len());
    let n = burst::outbound(
        &OutboundTables {
            spd: &spd_out,
            mtu: 1500,
        },
        &mut pkts,
        &mut verdicts,
        &mut drops,
        &mut hits,
    );
    assert_eq!(n, 2);
    // Each classified packet counted once under its policy, with its cleartext length; the
    // malformed one under none.
    assert_eq!(
        (0..4).map(|i| hits.get(i)).collect::<Vec<_>>(),
        vec![(1, lens[0]), (1, lens[1]), (1, lens[2]), (1, lens[3])]
    );
    assert_eq!(
        verdicts,
        [
            Verdict::Forward,
            Verdict::Drop(DropReason::NoSaForPolicy),
            Verdict::Forward,
            Verdict::Drop(DropReason::PolicyDiscard),
            Verdict::Drop(DropReason::Malformed),
        ]
    );
    assert_eq!(drops.total(), 3);

    // Inbound: the encrypted packet, an IKE packet, a clear packet the SPD requires protected,
    // and an unknown SPI.
    let mut sad = Sad::new();
    sad.insert(0x1001, Some(v4("10.2.0.1")), inb.clone());
    let spd_in = Spd::build(vec![
        Rule {
            priority: 10,
            selector: any_ports("192.168.10.0/24", "192.168.20.0/24"),
            action: Action::Protect(()),
        },
        Rule {
            priority: 100,
            selector: any_ports("0.0.0.0/0", "0.0.0.0/0"),
            action: Action::Bypass,
        },
    ])
    .unwrap();
    let mut ike = udp4([10, 1, 0, 1], [10, 2, 0, 1], 40, 0);
    ike[22..24].copy_from_slice(&500u16.to_be_bytes());
    let mut unknown = pkts[0].to_vec();
    let o = classify(&pkts[0]);
    unknown[o.sec_off] ^= 0xff;
    let mut inpkts = vec![
        pkts[0].clone(),
        HeapBuf::from_slice(&ike),
        HeapBuf::from_slice(&udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0)),
        HeapBuf::from_slice(&unknown),
    ];
    let mut verdicts = [Verdict::Pending; 4];
    let mut drops = DropCounters::default();
    let t = InboundTables {
        sad: &sad,
        spd: &spd_in,
        natt_ports: &[4500],
        local: None,
    };
    let mut hits = PolicyHits::new(spd_in.len());
    let n = burst::inbound(&t, &mut inpkts, &mut verdicts, &mut drops, &mut hits);
    assert_eq!(n, 1);
    // Only the packet that arrived in the clear met SPD-in (and its PROTECT policy refused it).
    assert_eq!((hits.get(0), hits.get(1)), ((1, lens[0]), (0, 0)));
    assert_eq!(
        verdicts,
        [
            Verdict::Forward,
            Verdict::ToControlPlane,
            Verdict::Drop(DropReason::UnprotectedInbound),
            Verdict::Drop(DropReason::NoSa),
        ]
    );
    assert_eq!(
        inpkts[0].data(),
        &udp4([192, 168, 10, 5], [192, 168, 20, 7], 10, 0)[..]
    );
}

/// AH covers the IP header with its mutable parts zeroed (RFC 4302 §3.3.3.1 and App. A): a
/// router changing a Record Route option (IPv4) or an IPv6 option whose type has the change bit
/// must not break the ICV; changing an immutable option must.
#[test]
fn ah_ignores_mutable_options_only() {
    // IPv4 with a Record Route option (type 7, mutable) then Router Alert (148, immutable).
    let mut v4 = udp4([192, 168, 10, 5], [192, 168, 20, 7], 16, 0);
    let opts = [7u8, 7, 4, 0, 0, 0, 0, 148, 4, 0, 0, 0];
    v4.splice(20..20, opts);
    v4[0] = 0x48; // IHL 8 (32 bytes)
    let total = v4.len() as u16;
    v4[2..4].copy_from_slice(&total.to_be_bytes());
    v4[10] = 0;
    v4[11] = 0;
    let c = !dataplane::wire::checksum::data(&v4[..32]);
    v4[10..12].copy_from_slice(&c.to_be_bytes());

    // IPv6 with a destination options header holding an option with the change bit (0x3e)
    // and one without (0x1e).
    let mut v6 = udp6(16, 0);
    let dst_opts = [17u8, 0, 0x3e, 1, 0xaa, 0x1e, 1, 0xbb];
    v6.splice(40..40, dst_opts);
    v6[6] = 60; // next header: destination options
    let plen = (v6.len() - 40) as u16;
    v6[4..6].copy_from_slice(&plen.to_be_bytes());

    for (pkt, outer6, mutable_at, immutable_at) in
        [(v4, false, 22usize, 29usize), (v6, true, 44, 47)]
    {
        let (o, i) = pair(
            Cipher::Null,
            Integrity::HmacSha256,
            Protocol::Ah,
            Mode::Transport,
            outer6,
            false,
            false,
        );
        let out = OutboundSa::new(&o).unwrap();
        let inb = InboundSa::new(&i).unwrap();
        for (pos, ok) in [(mutable_at, true), (immutable_at, false)] {
            let mut b = HeapBuf::from_slice(&pkt);
            esp::encap(&out, &mut b).unwrap();
            b.data_mut()[pos] ^= 0x55; // a router en route
            if !outer6 {
                let hl = usize::from(b.data()[0] & 0xf) * 4;
                let d = b.data_mut();
                d[10] = 0;
                d[11] = 0;
                let c = !dataplane::wire::checksum::data(&d[..hl]);
                d[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let o2 = classify(&b);
            let r = esp::decap(&inb, &mut b, &o2);
            if ok {
                r.unwrap_or_else(|e| panic!("outer6={outer6}: mutable option changed: {e:?}"));
            } else {
                assert_eq!(
                    r,
                    Err(DropReason::IcvMismatch),
                    "outer6={outer6}: immutable option changed"
                );
            }
        }
    }
}

/// `max_inner_len` is exact: the largest inner packet it names leaves at most `mtu` bytes
/// once encapsulated, and one byte more does not fit, for every suite, mode, outer family,
/// NAT-T and AH.
#[test]
fn max_inner_len_is_the_largest_that_fits() {
    let protos = [Protocol::Esp, Protocol::Ah];
    for &(cipher, integ) in SUITES {
        for proto in protos {
            for mode in [Mode::Tunnel, Mode::Transport] {
                for (outer6, natt) in [(false, false), (true, false), (false, true)] {
                    if proto == Protocol::Ah && (natt || cipher != Cipher::Null) {
                        continue;
                    }
                    let (mut o, _) = pair(cipher, integ, proto, mode, outer6, false, natt);
                    // IPv4 traffic only: transport mode keeps the packet's own header, so
                    // an SA of both families answers for the larger one (next test).
                    o.local_ts = vec!["192.168.10.0/24".parse().unwrap()];
                    o.remote_ts = vec!["192.168.20.0/24".parse().unwrap()];
                    let sa = OutboundSa::new(&o).unwrap();
                    for mtu in [1500u16, 1400, 1280] {
                        let max = usize::from(sa.max_inner_len(mtu));
                        let what = format!(
                            "{cipher:?} {proto:?} {mode:?} v6 {outer6} natt {natt} mtu {mtu}"
                        );
                        let encapped = |len: usize| {
                            let p = udp4([192, 168, 10, 5], [192, 168, 20, 7], len - 28, 0);
                            let mut b = HeapBuf::from_slice(&p);
                            esp::encap(&sa, &mut b).unwrap();
                            b.len()
                        };
                        assert!(encapped(max) <= usize::from(mtu), "{what}");
                        assert!(encapped(max + 1) > usize::from(mtu), "{what}");
                    }
                }
            }
        }
    }
}

/// A transport-mode SA keeps each packet's own header: with IPv6 selectors `max_inner_len`
/// is exact for IPv6 packets (a 40-byte header, and AH padded to 8 bytes), and an SA of both
/// families names a size that fits either (before, the first selector's family was taken, and
/// an SA whose first selector was IPv4 named IPv6 packets up to 4-15 bytes too large).
#[test]
fn max_inner_len_of_transport_sas_follows_the_family() {
    let v6_packet = |len: usize| udp6(len - 48, 0);
    let v4_packet = |len: usize| udp4([192, 168, 10, 5], [192, 168, 20, 7], len - 28, 0);
    for (cipher, integ, proto) in [
        (Cipher::AesCbc256, Integrity::HmacSha256, Protocol::Esp),
        (Cipher::AesGcm128, Integrity::None, Protocol::Esp),
        (Cipher::Null, Integrity::HmacSha256, Protocol::Ah),
    ] {
        for mtu in [1500u16, 1400, 1281] {
            let what = format!("{cipher:?} {proto:?} mtu {mtu}");
            let encapped = |sa: &OutboundSa, p: Vec<u8>| {
                let mut b = HeapBuf::from_slice(&p);
                esp::encap(sa, &mut b).unwrap();
                b.len()
            };
            let (mut o, _) = pair(cipher, integ, proto, Mode::Transport, false, false, false);
            o.local_ts = vec!["2001:db8:10::/64".parse().unwrap()];
            o.remote_ts = vec!["2001:db8:20::/64".parse().unwrap()];
            let six = OutboundSa::new(&o).unwrap();
            let max = usize::from(six.max_inner_len(mtu));
            assert!(encapped(&six, v6_packet(max)) <= usize::from(mtu), "{what}");
            assert!(
                encapped(&six, v6_packet(max + 1)) > usize::from(mtu),
                "{what}"
            );
            // Both families (no selectors): fits either, exact for one of them.
            let (o, _) = pair(cipher, integ, proto, Mode::Transport, false, false, false);
            let both = OutboundSa::new(&o).unwrap();
            let max = usize::from(both.max_inner_len(mtu));
            let (a, b) = (
                encapped(&both, v4_packet(max)),
                encapped(&both, v6_packet(max)),
            );
            assert!(
                a <= usize::from(mtu) && b <= usize::from(mtu),
                "{what}: {a} {b}"
            );
            let (a1, b1) = (
                encapped(&both, v4_packet(max + 1)),
                encapped(&both, v6_packet(max + 1)),
            );
            assert!(a1 > usize::from(mtu) || b1 > usize::from(mtu), "{what}");
        }
    }
}

/// IPv6 transport-mode ESP goes after hop-by-hop, the destination options before a routing
/// header, and the routing header; the destination options after it (for the final
/// destination) are encrypted, as Linux places it (scapy_ah_options.py checks the same
/// against scapy). The receiver restores the packet byte for byte.
#[test]
fn ipv6_transport_esp_goes_after_the_routing_header() {
    let mut p = udp6(16, 0);
    let udp = p.split_off(40);
    p[6] = 0; // hop-by-hop next
    let hbh = [60u8, 0, 1, 4, 0, 0, 0, 0]; // then destination options
    let dest1 = [43u8, 0, 1, 4, 0, 0, 0, 0]; // then routing
    let mut routing = vec![60u8, 2, 0, 0, 0, 0, 0, 0]; // type 0, segments left 0
    routing.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let dest2 = [17u8, 0, 1, 4, 0, 0, 0, 0]; // then UDP
    for h in [&hbh[..], &dest1, &routing, &dest2, &udp] {
        p.extend_from_slice(h);
    }
    let plen = (p.len() - 40) as u16;
    p[4..6].copy_from_slice(&plen.to_be_bytes());
    let (o, i) = pair(
        Cipher::AesGcm128,
        Integrity::None,
        Protocol::Esp,
        Mode::Transport,
        false,
        false,
        false,
    );
    let (out, inb) = (OutboundSa::new(&o).unwrap(), InboundSa::new(&i).unwrap());
    let mut b = HeapBuf::from_slice(&p);
    esp::encap(&out, &mut b).unwrap();
    let d = b.data();
    assert_eq!(&d[..4], &p[..4]);
    assert_eq!(
        &d[6..56],
        &p[6..56],
        "the IPv6 header (but its length), HBH, DEST kept"
    );
    assert_eq!(d[56], 50, "the routing header's next header is ESP");
    assert_eq!(&d[57..80], &p[57..80], "the routing header kept");
    assert_eq!(
        &d[80..84],
        &0x1001u32.to_be_bytes(),
        "ESP's SPI right after it"
    );
    let o = classify(&b);
    esp::decap(&inb, &mut b, &o).unwrap();
    assert_eq!(b.data(), &p[..]);
}

/// An SPD-out of one rule that takes every IPv4 packet.
fn everything(action: Action<OutboundTarget>) -> Spd<OutboundTarget> {
    everything_of("0.0.0.0/0", action)
}

/// An SPD-out of one rule that takes every packet of `all`'s family.
fn everything_of(all: &str, action: Action<OutboundTarget>) -> Spd<OutboundTarget> {
    Spd::build(vec![Rule {
        priority: 10,
        selector: Selector {
            src: all.parse().unwrap(),
            dst: all.parse().unwrap(),
            proto: None,
            src_ports: PortRange::ANY,
            dst_ports: PortRange::ANY,
        },
        action,
    }])
    .unwrap()
}

/// UDP packets to `dst` from an inside host: `big` bytes with DF, the same without DF, and
/// one of `fits` bytes.
fn too_big_and_fitting(dst: [u8; 4], big: usize, fits: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let df = udp4([192, 168, 10, 5], dst, big - 28, 0);
    let mut no_df = df.clone();
    no_df[6] = 0;
    no_df[10..12].fill(0);
    let c = !dataplane::wire::checksum::data(&no_df[..20]);
    no_df[10..12].copy_from_slice(&c.to_be_bytes());
    (df, no_df, udp4([192, 168, 10, 5], dst, fits - 28, 0))
}

/// Packets too big for the tunnel: DF or IPv6 ones are refused with the MTU to report
/// (counted as too_big), IPv4 without DF is left for the caller to fragment.
#[test]
fn oversized_packets_get_too_big_or_fragment_verdicts() {
    let (o, _) = pair(
        Cipher::AesGcm256,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        false,
        false,
        false,
    );
    let out = Arc::new(OutboundSa::new(&o).unwrap());
    assert_eq!(out.max_inner_len(1500), 1446);
    let spd = everything(Action::Protect(OutboundTarget {
        policy_id: 1,
        sa: Some(out.clone()),
        per_worker: Vec::new(),
    }));
    let (df, no_df, fits) = too_big_and_fitting([192, 168, 20, 7], 1447, 1446);
    let mut pkts = vec![
        HeapBuf::from_slice(&df),
        HeapBuf::from_slice(&no_df),
        HeapBuf::from_slice(&fits),
    ];
    let mut verdicts = [Verdict::Pending; 3];
    let mut drops = DropCounters::default();
    let t = OutboundTables {
        spd: &spd,
        mtu: 1500,
    };
    let mut hits = PolicyHits::new(spd.len());
    assert_eq!(
        burst::outbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits),
        1
    );
    assert_eq!(
        verdicts,
        [
            Verdict::TooBig(1446),
            Verdict::Fragment(1446),
            Verdict::Forward
        ]
    );
    assert_eq!(drops.get(DropReason::TooBig), 1);
    assert_eq!(drops.total(), 1);
    assert_eq!(pkts[0].data(), &df[..]);
    assert_eq!(pkts[2].len(), 1500);

    // The SA's own egress MTU (a narrower outside port) wins over the tables' default: the
    // packet that fit a 1500-byte port is now too big, with that port's inner MTU.
    out.set_egress_mtu(1400);
    assert_eq!(out.egress_mtu(), Some(1400));
    let mut pkts = vec![HeapBuf::from_slice(&fits), HeapBuf::from_slice(&no_df)];
    let mut verdicts = [Verdict::Pending; 2];
    burst::outbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
    assert_eq!(
        verdicts,
        [Verdict::TooBig(1346), Verdict::Fragment(1346)],
        "{}",
        out.max_inner_len(1400)
    );
    out.set_egress_mtu(0);
    assert_eq!(out.egress_mtu(), None);
}

/// A tunnel whose inner MTU is below IPv6's 1280 (6in6 over a 1280-byte path): IPv6 packets
/// of up to 1280 bytes go through, to be encapsulated and fragmented as outer packets of at
/// most the path MTU (RFC 8200 §5: their source may send nothing smaller); bigger ones are too
/// big with the tunnel's inner MTU (reported as 1280); a transport-mode SA, which carries the
/// packet's own header, refuses both.
#[test]
fn ipv6_up_to_1280_bytes_is_fragmented_after_encapsulation() {
    let everything6 = |sa: &Arc<OutboundSa>| {
        everything_of(
            "::/0",
            Action::Protect(OutboundTarget {
                policy_id: 1,
                sa: Some(sa.clone()),
                per_worker: Vec::new(),
            }),
        )
    };
    let packets = |max: usize| {
        [1280, 1281, max]
            .map(|len: usize| HeapBuf::from_slice(&udp6(len - 48, 0)))
            .to_vec()
    };
    let (o, _) = pair(
        Cipher::AesGcm256,
        Integrity::None,
        Protocol::Esp,
        Mode::Tunnel,
        true,
        false,
        false,
    );
    let tunnel = Arc::new(OutboundSa::new(&o).unwrap());
    let max = tunnel.max_inner_len(1280);
    assert!(max < 1280, "{max}");
    let spd = everything6(&tunnel);
    let t = OutboundTables {
        spd: &spd,
        mtu: 1280,
    };
    let mut hits = PolicyHits::new(spd.len());
    let mut drops = DropCounters::default();
    let mut pkts = packets(usize::from(max));
    let mut verdicts = [Verdict::Pending; 3];
    assert_eq!(
        burst::outbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits),
        1
    );
    assert_eq!(
        verdicts,
        [
            Verdict::FragmentOuter(1280),
            Verdict::TooBig(max),
            Verdict::Forward
        ]
    );
    assert_eq!((drops.get(DropReason::TooBig), drops.total()), (1, 1));
    assert_eq!(pkts[0].len(), 1280, "left for the caller to encapsulate");
    // The path MTU the SA learnt is the fragments' size.
    tunnel.set_egress_mtu(1300);
    let mut pkts = packets(usize::from(max));
    let mut verdicts = [Verdict::Pending; 3];
    burst::outbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
    assert_eq!(verdicts[0], Verdict::FragmentOuter(1300));

    let (mut o, _) = pair(
        Cipher::AesGcm256,
        Integrity::None,
        Protocol::Esp,
        Mode::Transport,
        false,
        false,
        false,
    );
    o.local_ts = vec!["2001:db8:10::/64".parse().unwrap()];
    o.remote_ts = vec!["2001:db8:20::/64".parse().unwrap()];
    let transport = Arc::new(OutboundSa::new(&o).unwrap());
    let max = transport.max_inner_len(1280);
    let spd = everything6(&transport);
    let t = OutboundTables {
        spd: &spd,
        mtu: 1280,
    };
    let mut pkts = packets(usize::from(max));
    let mut verdicts = [Verdict::Pending; 3];
    burst::outbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
    assert_eq!(
        verdicts,
        [Verdict::TooBig(max), Verdict::TooBig(max), Verdict::Forward]
    );
}

/// The full SA pair replaces its larval inbound half (installed before the exchange that
/// creates the SA completed): what the larval half accepted must stay seen, or a replay of
/// it would be accepted once more by the full pair.
#[test]
fn a_replacing_inbound_sa_keeps_the_replay_window_and_counters() {
    let (o, i) = site_pair();
    let out = OutboundSa::new(&o).unwrap();
    let larval = InboundSa::new(&i).unwrap();
    let wires: Vec<Vec<u8>> = (0..3)
        .map(|k| {
            let mut b = HeapBuf::from_slice(&udp4([192, 168, 10, 5], [192, 168, 20, 7], 10 + k, 0));
            esp::encap(&out, &mut b).unwrap();
            b.data().to_vec()
        })
        .collect();
    let open = |sa: &InboundSa, w: &[u8]| {
        let mut b = HeapBuf::from_slice(w);
        let o = classify(&b);
        esp::decap(sa, &mut b, &o)
    };
    // The larval half accepts sequence number 2.
    open(&larval, &wires[1]).unwrap();
    let full = larval.replacing(&i).unwrap();
    assert_eq!(open(&full, &wires[1]), Err(DropReason::ReplayDuplicate));
    open(&full, &wires[0]).unwrap();
    open(&full, &wires[2]).unwrap();
    assert_eq!(full.counters().packets(), 3);
    // Built afresh instead, the replay would pass.
    let fresh = InboundSa::new(&i).unwrap();
    assert!(open(&fresh, &wires[1]).is_ok());
    // Only the same SA can be replaced.
    let mut other = i.clone();
    other.spi ^= 1;
    assert!(full.replacing(&other).is_err());
    let mut wider = i.clone();
    wider.replay_window *= 2;
    assert!(full.replacing(&wider).is_err());
}
