//! Messages strongSwan 5.9.8 sent (captured in tests/strongswan, see its README): our codec
//! must read them field for field, and our responder must accept them.

use std::path::Path;
use std::time::Instant;

use controlplane::config::Config;
use controlplane::ike::daemon::Daemon;
use controlplane::ike::sa::Action;
use controlplane::ike::wire::{exchange, notify, Message, Payload};

const INIT: &[u8] = include_bytes!("data/strongswan-ike-sa-init.bin");

#[test]
fn strongswan_ike_sa_init_parses_field_for_field() {
    let m = Message::parse(INIT).unwrap();
    assert_eq!(m.header.exchange, exchange::IKE_SA_INIT);
    assert!(m.header.is_initiator() && !m.header.is_response());
    assert_eq!(m.header.spi_r, 0);
    assert_eq!(m.header.length as usize, INIT.len());
    let Payload::Sa(props) = &m.payloads[0] else {
        panic!("SA first")
    };
    assert_eq!(props.len(), 1);
    let t: Vec<(u8, u16, Option<u16>)> = props[0]
        .transforms
        .iter()
        .map(|t| (t.ttype, t.id, t.key_len))
        .collect();
    // ENCR AES-CBC-256, INTEG HMAC-SHA2-256-128, PRF HMAC-SHA2-256, DH modp1024.
    assert_eq!(
        t,
        vec![
            (1, 12, Some(256)),
            (3, 12, None),
            (2, 5, None),
            (4, 2, None)
        ]
    );
    let Payload::Ke { group, data } = &m.payloads[1] else {
        panic!("KE second")
    };
    assert_eq!((*group, data.len()), (2, 128));
    let Payload::Nonce(n) = &m.payloads[2] else {
        panic!("nonce third")
    };
    assert_eq!(n.len(), 32);
    let types: Vec<u16> = m.payloads[3..]
        .iter()
        .map(|p| {
            if let Payload::Notify(n) = p {
                n.ntype
            } else {
                0
            }
        })
        .collect();
    assert_eq!(
        types,
        vec![
            notify::NAT_DETECTION_SOURCE_IP,
            notify::NAT_DETECTION_DESTINATION_IP,
            notify::IKEV2_FRAGMENTATION_SUPPORTED,
            notify::SIGNATURE_HASH_ALGORITHMS,
            16406 // REDIRECT_SUPPORTED
        ]
    );
    // Our encoder writes the same bytes back.
    assert_eq!(Message::emit(m.header, &m.payloads), INIT);
}

#[test]
fn our_responder_accepts_strongswans_request_and_sees_its_fake_nat() {
    let y = "tunnels:\n  - name: t\n    local: 203.0.113.1\n    remote: 203.0.113.2\n    psk: \"0123456789abcdef\"\n    ike_proposals: [aes256-sha256-modp1024]\n    children:\n      - { name: c, local_ts: [192.168.10.0/24], remote_ts: [192.168.20.0/24], esp_proposals: [aes256-sha256] }\n";
    let cfg = Config::parse(y, Path::new("t.yaml")).unwrap();
    let mut d = Daemon::new(&cfg);
    let acts = d.handle(
        Instant::now(),
        "203.0.113.1:500".parse().unwrap(),
        "203.0.113.2:500".parse().unwrap(),
        INIT,
    );
    let Some(Action::Send { data, .. }) = acts.first() else {
        panic!("no response: {acts:?}")
    };
    let r = Message::parse(data).unwrap();
    assert!(r.header.is_response());
    assert_ne!(r.header.spi_r, 0);
    assert!(matches!(&r.payloads[0], Payload::Sa(p) if p.len() == 1 && p[0].num == 1));
    assert!(r
        .payloads
        .iter()
        .any(|p| matches!(p, Payload::Ke { group: 2, data } if data.len() == 128)));
    // libipsec hashed a random address into NAT_DETECTION_SOURCE_IP: a NAT is detected.
    assert!(d.sas().next().unwrap().nat);
}
