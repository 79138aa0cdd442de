//! Published ESP packets run through our ESP path byte for byte:
//!
//! - RFC 3602 §4 (AES-CBC for ESP): cases 1–4 are raw AES-CBC; cases 5–8 are ESP packets with
//!   SPI, sequence number, IV and ciphertext, with no integrity algorithm (5 and 6 transport
//!   mode, 7 and 8 tunnel mode).
//! - RFC 7634 Appendix A (ChaCha20-Poly1305 for ESP): one tunnel-mode ESP packet with salt,
//!   IV, AAD, ciphertext and tag.
//!
//! The RFCs fix the IV; our SAs derive it from the sequence number (AEAD) or from a secret key
//! (CBC). The seam is [`FixedIv`], a test-only transform that wraps a real one and writes the
//! published IV: SAs around it are built with `with_esp_transform`, which no configuration
//! reaches. CBC without integrity is likewise refused by `new_esp_transform` (and so by every
//! configuration), so these tests build `EspCbc` without a MAC directly.
//!
//! Backends: the vectors run on every backend that implements the algorithm. Today only the
//! RustCrypto one does CBC and ChaCha20-Poly1305 (the ipsec-mb backend does AES-GCM only);
//! `backends_still_as_listed` fails when that changes, so that the new backend gets added here.

use std::net::IpAddr;

use aes::{Aes128, Aes256};
use dataplane::buf::HeapBuf;
use dataplane::crypto::cbc::{AesCbcCipher, EspCbc};
use dataplane::crypto::{
    self, Backend, Cipher, CryptoError, EspTransform, Integrity, ESP_HEADER_LEN,
};
use dataplane::esp;
use dataplane::outer::{self, Arrival};
use dataplane::sa::{Direction, Endpoints, InboundSa, Mode, OutboundSa, SaParams};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A transform that behaves as `inner` but writes a fixed IV: how an RFC's example packet,
/// whose IV was chosen by its authors, is reproduced through our encapsulation.
#[derive(Debug)]
struct FixedIv {
    inner: Box<dyn EspTransform>,
    iv: Vec<u8>,
}

impl EspTransform for FixedIv {
    fn cipher(&self) -> Cipher {
        self.inner.cipher()
    }
    fn integrity(&self) -> Integrity {
        self.inner.integrity()
    }
    fn iv_len(&self) -> usize {
        self.inner.iv_len()
    }
    fn block_align(&self) -> usize {
        self.inner.block_align()
    }
    fn icv_len(&self) -> usize {
        self.inner.icv_len()
    }
    fn write_iv(&self, _seq: u64, iv: &mut [u8]) {
        iv.copy_from_slice(&self.iv);
    }
    fn seal(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        self.inner.seal(esp, seq_hi)
    }
    fn open(&self, esp: &mut [u8], seq_hi: Option<u32>) -> Result<(), CryptoError> {
        self.inner.open(esp, seq_hi)
    }
}

// ---------------------------------------------------------------------------------------------
// Backends

/// AES-CBC without integrity, on every backend that implements AES-CBC (see the module doc).
fn cbc_backends(key: &[u8]) -> Vec<(&'static str, Box<dyn EspTransform>)> {
    fn make<C: AesCbcCipher>(c: Cipher, key: &[u8]) -> Box<dyn EspTransform> {
        Box::new(EspCbc::<C>::new(c, key, None).unwrap())
    }
    let t = match key.len() {
        16 => make::<Aes128>(Cipher::AesCbc128, key),
        32 => make::<Aes256>(Cipher::AesCbc256, key),
        n => panic!("{n}-byte AES key"),
    };
    vec![("rustcrypto", t)]
}

/// ChaCha20-Poly1305 on every backend that implements it.
fn chacha_backends(keymat: &[u8]) -> Vec<(&'static str, Box<dyn EspTransform>)> {
    let mut v = Vec::new();
    for (name, b) in [
        ("rustcrypto", Backend::RustCrypto),
        ("ipsec-mb", Backend::IpsecMb),
    ] {
        match crypto::new_esp_transform(Cipher::Chacha20Poly1305, Integrity::None, keymat, &[], b) {
            Ok(t) => v.push((name, t)),
            Err(CryptoError::Unsupported | CryptoError::BackendUnavailable) => {}
            Err(e) => panic!("{name}: {e}"),
        }
    }
    v
}

/// Which backends implement CBC and ChaCha20-Poly1305. When this fails because a backend
/// gained one of them, add it to `cbc_backends` / let `chacha_backends` pick it up, and update
/// the list.
#[test]
fn backends_still_as_listed() {
    let implements = |c: Cipher, i: Integrity, b: Backend| {
        let enc = vec![7u8; c.key_len()];
        let auth = vec![9u8; i.key_len()];
        match crypto::new_esp_transform(c, i, &enc, &auth, b) {
            Ok(_) => true,
            Err(CryptoError::Unsupported | CryptoError::BackendUnavailable) => false,
            Err(e) => panic!("{c:?}/{b:?}: {e}"),
        }
    };
    assert!(implements(
        Cipher::AesCbc128,
        Integrity::HmacSha256,
        Backend::RustCrypto
    ));
    assert!(!implements(
        Cipher::AesCbc128,
        Integrity::HmacSha256,
        Backend::IpsecMb
    ));
    assert!(implements(
        Cipher::Chacha20Poly1305,
        Integrity::None,
        Backend::RustCrypto
    ));
    assert!(!implements(
        Cipher::Chacha20Poly1305,
        Integrity::None,
        Backend::IpsecMb
    ));
    assert_eq!(chacha_backends(&[1u8; 36]).len(), 1);
}

/// Confidentiality-only CBC is not something a configuration can ask for (RFC 4303 §1 warns
/// it is open to active attacks): only code that builds `EspCbc` directly gets it.
#[test]
fn cbc_without_integrity_is_refused_for_configurations() {
    for c in [Cipher::AesCbc128, Cipher::AesCbc256] {
        for b in [Backend::Auto, Backend::RustCrypto, Backend::IpsecMb] {
            let r = crypto::new_esp_transform(c, Integrity::None, &vec![1u8; c.key_len()], &[], b);
            assert_eq!(r.err(), Some(CryptoError::Unsupported), "{c:?} {b:?}");
        }
        let mut p = SaParams::new(1, Direction::In, c, Integrity::None);
        p.enc_key = vec![1u8; c.key_len()].into();
        assert!(InboundSa::new(&p).is_err());
        p.direction = Direction::Out;
        assert!(OutboundSa::new(&p).is_err());
    }
    // An SA file with such an SA is refused when it loads (fgpcap builds each SA then).
    let yaml = "sas:\n  - spi: 0x1001\n    direction: in\n    mode: transport\n    cipher: aes-cbc-128\n    integrity: none\n    enc_key: \"0x000102030405060708090a0b0c0d0e0f\"\n";
    let e = dataplane::config::parse_sa_yaml(yaml, std::path::Path::new("t.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .contains("unsupported algorithm combination: cipher aes-cbc-128 with integrity none"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 3602 §4, cases 1–4: AES-CBC-128, key, IV, plaintext, ciphertext.

const RFC3602_RAW: &[(&str, &str, &[u8], &str)] = &[
    (
        "06a9214036b8a15b512e03d534120006",
        "3dafba429d9eb430b422da802c9fac41",
        b"Single block msg",
        "e353779c1079aeb82708942dbe77181a",
    ),
    (
        "c286696d887c9aa0611bbb3e2025a45a",
        "562e17996d093d28ddb3ba695a2e6f58",
        &[
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
            0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b,
            0x1c, 0x1d, 0x1e, 0x1f,
        ],
        "d296cd94c2cccf8a3a863028b5e1dc0a 7586602d253cfff91b8266bea6d61ab1",
    ),
    (
        "6c3ea0477630ce21a2ce334aa746c2cd",
        "c782dc4c098c66cbd9cd27d825682c81",
        b"This is a 48-byte message (exactly 3 AES blocks)",
        "d0a02b3836451753d493665d33f0e886 2dea54cdb293abc7506939276772f8d5
         021c19216bad525c8579695d83ba2684",
    ),
    (
        "56e47a38c5598974bc46903dba290349",
        "8ce82eefbea0da3c44699ed7db51b7d9",
        &[
            0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad,
            0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb,
            0xbc, 0xbd, 0xbe, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9,
            0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7,
            0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
        ],
        "c30e32ffedc0774e6aff6af0869f71aa 0f3af07a9a31a9c684db207eb0ef8e4e
         35907aa632c3ffdf868bb7b29d3d46ad 83ce9f9a102ee99d49a53e87f4c3da55",
    ),
];

/// Cases 1–4 through the ESP transform: an ESP region of SPI, sequence, the RFC's IV and the
/// plaintext encrypts to the RFC's ciphertext, and decrypts back.
#[test]
fn rfc3602_cases_1_to_4_raw_cbc() {
    for (n, (key, iv, pt, ct)) in RFC3602_RAW.iter().enumerate() {
        let (key, iv, ct) = (hex(key), hex(iv), hex(ct));
        for (backend, t) in cbc_backends(&key) {
            let what = format!("case {} on {backend}", n + 1);
            let mut esp = vec![0u8; ESP_HEADER_LEN];
            esp.extend_from_slice(&iv);
            esp.extend_from_slice(pt);
            t.seal(&mut esp, None).unwrap();
            assert_eq!(&esp[ESP_HEADER_LEN + 16..], &ct[..], "{what}: encrypt");
            t.open(&mut esp, None).unwrap();
            assert_eq!(&esp[ESP_HEADER_LEN + 16..], *pt, "{what}: decrypt");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 3602 §4, cases 5–8: ESP packets without integrity.

struct EspCase {
    name: &'static str,
    mode: Mode,
    key: &'static str,
    spi: u32,
    seq: u32,
    iv: &'static str,
    /// The IP packet before ESP (transport: the original packet; tunnel: the inner packet).
    /// `None` where only its payload is at hand (cases 6 and 8 below).
    original: Option<&'static str>,
    /// What ESP protects: the transport payload, or the whole inner packet.
    payload: &'static str,
    next_header: u8,
    pad_len: usize,
    /// The packet after ESP: its IP header, when the RFC gives it.
    esp_ip_header: Option<&'static str>,
    /// SPI, sequence number, IV and ciphertext.
    esp: &'static str,
}

const RFC3602_ESP: &[EspCase] = &[
    EspCase {
        name: "case 5 (transport, ICMP)",
        mode: Mode::Transport,
        key: "90d382b410eeba7ad938c46cec1a82bf",
        spi: 0x4321,
        seq: 1,
        iv: "e96e8c08ab465763fd098d45dd3ff893",
        original: Some("45000054 08f20000 4001f9fe c0a87b03 c0a87b64"),
        payload: "08000ebd a70a0000 8e9c083d b95b0700 08090a0b 0c0d0e0f 10111213 14151617
                  18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f 30313233 34353637",
        next_header: 1,
        pad_len: 14,
        esp_ip_header: Some("4500007c 08f20000 4032f9a5 c0a87b03 c0a87b64"),
        esp: "00004321 00000001 e96e8c08 ab465763 fd098d45 dd3ff893
              f663c25d 325c18c6 a9453e19 4e120849 a4870b66 cc6b9965 330013b4 898dc856
              a4699e52 3a55db08 0b59ec3a 8e4b7e52 775b07d1 db34ed9c 538ab50c 551b874a
              a269add0 47ad2d59 13ac19b7 cfbad4a6",
    },
    EspCase {
        name: "case 6 (transport, ICMP)",
        mode: Mode::Transport,
        key: "90d382b410eeba7ad938c46cec1a82bf",
        spi: 0x4321,
        seq: 8,
        iv: "69d08df7d203329db093fc4924e5bd80",
        original: None,
        payload: "0800b5e8 a80a0500 a69c083d 0b660e00 77777777 77777777 77777777",
        next_header: 1,
        pad_len: 2,
        esp_ip_header: None,
        esp: "00004321 00000008 69d08df7 d203329d b093fc49 24e5bd80
              f5199588 1ec4e0c4 488987ce 742e8109 689bb379 d2d750c0 d915dca3 46a89f75",
    },
    EspCase {
        name: "case 7 (tunnel, ICMP inside)",
        mode: Mode::Tunnel,
        key: "0123456789abcdef0123456789abcdef",
        spi: 0x8765,
        seq: 2,
        iv: "f4e765244f6407adf13dc1380f673f37",
        original: None,
        payload: "45000054 09040000 4001f988 c0a87b03 c0a87bc8 08009f76 a90a0100 b49c083d
                  02a20400 08090a0b 0c0d0e0f 10111213 14151617 18191a1b 1c1d1e1f 20212223
                  24252627 28292a2b 2c2d2e2f 30313233 34353637",
        next_header: 4,
        pad_len: 10,
        esp_ip_header: Some("4500008c 09050000 4032f91e c0a87b03 c0a87bc8"),
        esp: "00008765 00000002 f4e76524 4f6407ad f13dc138 0f673f37
              773b5241 a4c44922 5e4f3ce5 ed611b0c 237ca96c f74a9301 3c1b0ea1 a0cf70f8
              e4ecaec7 8ac53aad 7a0f022b 859243c6 47752e94 a859352b 8a4d4d2d ecd136e5
              c177f132 ad3fbfb2 201ac990 4c74ee0a 109e0ca1 e4dfe9d5 a100b842 f1c22f0d",
    },
    EspCase {
        name: "case 8 (tunnel, ICMP inside)",
        mode: Mode::Tunnel,
        key: "0123456789abcdef0123456789abcdef",
        spi: 0x8765,
        seq: 5,
        iv: "85d47224b5f3dd5d2101d4ea8dffab22",
        original: None,
        payload: "45000044 090c0000 4001f990 c0a87b03 c0a87bc8 0800d63c aa0a0200 c69c083d
                  a3de0300 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff
                  ffffffff",
        next_header: 4,
        pad_len: 10,
        esp_ip_header: None,
        esp: "00008765 00000005 85d47224 b5f3dd5d 2101d4ea 8dffab22
              15b92683 819596a8 047232cc 00f7048f e45318e1 1f8a0f62 ede3c3fc 61203bb5
              0f980a08 c9843fd3 a1b06d5c 07ff9639 b7eb7dfb 3512e5de 435e7207 ed971ef3
              d2726d9b 5ef6affc 6d17a0de cbb13892",
    },
];

/// Outer addresses of the RFC's examples (192.168.123.3 -> .100 in transport mode; the tunnel
/// runs 192.168.123.3 -> .200).
fn rfc3602_addrs(c: &EspCase) -> (IpAddr, IpAddr) {
    let dst = if c.mode == Mode::Tunnel {
        "192.168.123.200"
    } else {
        "192.168.123.100"
    };
    ("192.168.123.3".parse().unwrap(), dst.parse().unwrap())
}

/// An IPv4 header for a wrapper the RFC does not print (cases 6 and 8): version 4, IHL 5,
/// TTL 64, the given protocol and length, a valid checksum.
fn ipv4_header(src: IpAddr, dst: IpAddr, proto: u8, total: usize) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&s.octets());
    h[16..20].copy_from_slice(&d.octets());
    let c = !dataplane::wire::checksum::data(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// The RFC's ESP packet as it arrives: its IP header (printed or built) and the ESP bytes.
fn esp_packet(c: &EspCase) -> Vec<u8> {
    let esp = hex(c.esp);
    let mut pkt = match c.esp_ip_header {
        Some(h) => hex(h),
        None => {
            let (src, dst) = rfc3602_addrs(c);
            ipv4_header(src, dst, 50, 20 + esp.len())
        }
    };
    pkt.extend_from_slice(&esp);
    pkt
}

/// What decapsulation must give back: the original transport packet, or the inner packet.
fn decapsulated(c: &EspCase) -> Vec<u8> {
    let payload = hex(c.payload);
    match (c.mode, c.original) {
        (Mode::Tunnel, _) => payload,
        (Mode::Transport, Some(h)) => [hex(h), payload].concat(),
        (Mode::Transport, None) => {
            // The wrapper's header with the protocol and length of the original packet.
            let (src, dst) = rfc3602_addrs(c);
            [
                ipv4_header(src, dst, c.next_header, 20 + payload.len()),
                payload,
            ]
            .concat()
        }
    }
}

/// Sets up `p`, the sender's out SA or the receiver's in SA, for packets from `sender` to
/// `receiver` whose first sequence number is `seq`: tunnel endpoints as each side sees them, and
/// the sequence state (out: the first packet gets initial_seq + 1; in: nothing seen yet).
fn one_way(p: &mut SaParams, sender: IpAddr, receiver: IpAddr, seq: u32) {
    let (local, remote, initial_seq) = match p.direction {
        Direction::Out => (sender, receiver, u64::from(seq - 1)),
        Direction::In => (receiver, sender, 0),
    };
    if p.mode == Mode::Tunnel {
        p.tunnel = Some(Endpoints { local, remote });
    }
    p.initial_seq = initial_seq;
}

fn sa_params(c: &EspCase, dir: Direction, cipher: Cipher) -> SaParams {
    let mut p = SaParams::new(c.spi, dir, cipher, Integrity::None);
    p.mode = c.mode;
    let (sender, receiver) = rfc3602_addrs(c);
    one_way(&mut p, sender, receiver, c.seq);
    p
}

/// Decrypting the RFC's ESP bytes with our CBC gives the RFC's plaintext, padding 1, 2, 3, ...,
/// pad length and next header; encrypting that plaintext with the RFC's IV gives the RFC's
/// ciphertext.
#[test]
fn rfc3602_cases_5_to_8_esp_payload() {
    for c in RFC3602_ESP {
        let payload = hex(c.payload);
        for (backend, t) in cbc_backends(&hex(c.key)) {
            let what = format!("{} on {backend}", c.name);
            let mut esp = hex(c.esp);
            assert_eq!(&esp[..4], &c.spi.to_be_bytes());
            assert_eq!(&esp[4..8], &c.seq.to_be_bytes());
            assert_eq!(&esp[8..24], &hex(c.iv)[..]);
            let wire = esp.clone();
            t.open(&mut esp, None).unwrap();
            let plain = &esp[24..];
            let (pad_len, next) = (plain[plain.len() - 2], plain[plain.len() - 1]);
            assert_eq!(usize::from(pad_len), c.pad_len, "{what}: pad length");
            assert_eq!(next, c.next_header, "{what}: next header");
            assert_eq!(&plain[..payload.len()], &payload[..], "{what}: payload");
            let pad = &plain[payload.len()..plain.len() - 2];
            assert!(
                pad.iter()
                    .enumerate()
                    .all(|(i, b)| usize::from(*b) == i + 1),
                "{what}: padding {pad:02x?}"
            );
            t.seal(&mut esp, None).unwrap();
            assert_eq!(esp, wire, "{what}: encrypt");
        }
    }
}

/// The whole packets through `esp::decap` and `esp::encap` with confidentiality-only SAs built
/// in code: decapsulation gives back the original packet (transport: header restored, length
/// and checksum too) or the inner packet (tunnel); encapsulation with the RFC's IV gives the
/// RFC's ESP bytes, and in transport mode the RFC's whole packet, IP header included.
#[test]
fn rfc3602_cases_5_to_8_through_the_esp_path() {
    for c in RFC3602_ESP {
        let cipher = match hex(c.key).len() {
            16 => Cipher::AesCbc128,
            _ => Cipher::AesCbc256,
        };
        for ((backend, t_in), (_, t_out)) in cbc_backends(&hex(c.key))
            .into_iter()
            .zip(cbc_backends(&hex(c.key)))
        {
            let what = format!("{} on {backend}", c.name);

            let sa_in =
                InboundSa::with_esp_transform(&sa_params(c, Direction::In, cipher), t_in).unwrap();
            let pkt = esp_packet(c);
            let Ok(Arrival::Ipsec(o)) = outer::classify(&pkt, |_| false) else {
                panic!("{what}: not classified as ESP")
            };
            assert_eq!(o.spi, c.spi);
            let mut buf = HeapBuf::from_slice(&pkt);
            esp::decap(&sa_in, &mut buf, &o).unwrap_or_else(|e| panic!("{what}: decap {e:?}"));
            assert_eq!(buf.to_vec(), decapsulated(c), "{what}: decap");

            let fixed = FixedIv {
                inner: t_out,
                iv: hex(c.iv),
            };
            let sa_out = OutboundSa::with_esp_transform(
                &sa_params(c, Direction::Out, cipher),
                Box::new(fixed),
            )
            .unwrap();
            let mut buf = HeapBuf::from_slice_with_room(&decapsulated(c), 128, 128);
            esp::encap(&sa_out, &mut buf).unwrap_or_else(|e| panic!("{what}: encap {e:?}"));
            let got = buf.to_vec();
            assert_eq!(&got[20..], &hex(c.esp)[..], "{what}: encap ESP bytes");
            if c.mode == Mode::Transport {
                // Transport mode keeps the packet's own header: all of it must match.
                assert_eq!(got, pkt, "{what}: encap packet");
            } else {
                // A tunnel header gets our own identification; the rest is the RFC's.
                let want = &pkt[..20];
                assert_eq!(&got[..4], &want[..4], "{what}: outer header");
                assert_eq!(&got[6..10], &want[6..10], "{what}: outer header");
                assert_eq!(&got[12..20], &want[12..20], "{what}: outer header");
                assert_eq!(dataplane::wire::checksum::data(&got[..20]), 0xffff);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 7634 Appendix A: ChaCha20-Poly1305 in ESP.

const RFC7634_KEYMAT: &str = "
    80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e 8f
    90 91 92 93 94 95 96 97 98 99 9a 9b 9c 9d 9e 9f
    a0 a1 a2 a3";
const RFC7634_SPI: u32 = 0x0102_0304;
const RFC7634_SEQ: u32 = 5;
const RFC7634_IV: &str = "1011121314151617";
/// The inner IPv4 packet (ICMP echo request), 84 bytes.
const RFC7634_INNER: &str = "
    45 00 00 54 a6 f2 00 00 40 01 e7 78 c6 33 64 05
    c0 00 02 05 08 00 5b 7a 3a 08 00 00 55 3b ec 10
    00 07 36 27 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13
    14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23
    24 25 26 27 28 29 2a 2b 2c 2d 2e 2f 30 31 32 33
    34 35 36 37";
/// Padding 1, 2, pad length 2, next header 4 (IPv4).
const RFC7634_TRAILER: &str = "01020204";
const RFC7634_AAD: &str = "0102030400000005";
/// Ciphertext (88 bytes) and tag (16 bytes).
const RFC7634_CT_TAG: &str = "
    24 03 94 28 b9 7f 41 7e 3c 13 75 3a 4f 05 08 7b
    67 c3 52 e6 a7 fa b1 b9 82 d4 66 ef 40 7a e5 c6
    14 ee 80 99 d5 28 44 eb 61 aa 95 df ab 4c 02 f7
    2a a7 1e 7c 4c 4f 64 c9 be fe 2f ac c6 38 e8 f3
    cb ec 16 3f ac 46 9b 50 27 73 f6 fb 94 e6 64 da
    91 65 b8 28 29 f6 41 e0
    76 aa a8 26 6b 7f b0 f7 b1 1b 36 99 07 e1 ad 43";

/// The appendix's ESP bytes: SPI, sequence number (the AAD), IV, ciphertext and tag.
fn rfc7634_esp() -> Vec<u8> {
    let mut esp = hex(RFC7634_AAD);
    esp.extend_from_slice(&hex(RFC7634_IV));
    esp.extend_from_slice(&hex(RFC7634_CT_TAG));
    esp
}

/// The appendix's values agree with each other as the RFC frames them: AAD = SPI || seq.
#[test]
fn rfc7634_appendix_a_is_self_consistent() {
    let aad = hex(RFC7634_AAD);
    assert_eq!(&aad[..4], &RFC7634_SPI.to_be_bytes());
    assert_eq!(&aad[4..], &RFC7634_SEQ.to_be_bytes());
    assert_eq!(hex(RFC7634_INNER).len(), 84);
    assert_eq!(hex(RFC7634_CT_TAG).len(), 84 + 4 + 16);
}

/// The transform alone: sealing the padded inner packet with the appendix's IV gives its
/// ciphertext and tag; opening them gives the padded packet back.
#[test]
fn rfc7634_appendix_a_transform() {
    for (backend, t) in chacha_backends(&hex(RFC7634_KEYMAT)) {
        let mut esp = hex(RFC7634_AAD);
        esp.extend_from_slice(&hex(RFC7634_IV));
        esp.extend_from_slice(&hex(RFC7634_INNER));
        esp.extend_from_slice(&hex(RFC7634_TRAILER));
        esp.extend_from_slice(&[0u8; 16]);
        let plain = esp.clone();
        t.seal(&mut esp, None).unwrap();
        assert_eq!(esp, rfc7634_esp(), "{backend}: seal");
        t.open(&mut esp, None).unwrap();
        assert_eq!(
            &esp[..esp.len() - 16],
            &plain[..plain.len() - 16],
            "{backend}: open"
        );
        // One flipped bit anywhere in the authenticated part is refused.
        let mut bad = rfc7634_esp();
        bad[20] ^= 1;
        assert_eq!(t.open(&mut bad, None), Err(CryptoError::IcvMismatch));
    }
}

/// The appendix's tunnel-mode packet through `esp::encap` (with the appendix's IV) and
/// `esp::decap`, byte for byte. The appendix gives the ESP part; the outer IPv4 header here is
/// ours (the tunnel endpoints are this test's).
#[test]
fn rfc7634_appendix_a_through_the_esp_path() {
    let (local, remote): (IpAddr, IpAddr) = (
        "203.0.113.1".parse().unwrap(),
        "203.0.113.2".parse().unwrap(),
    );
    let params = |dir: Direction| {
        let mut p = SaParams::new(RFC7634_SPI, dir, Cipher::Chacha20Poly1305, Integrity::None);
        p.mode = Mode::Tunnel;
        p.enc_key = hex(RFC7634_KEYMAT).into();
        one_way(&mut p, local, remote, RFC7634_SEQ);
        p
    };
    let out_ts = chacha_backends(&hex(RFC7634_KEYMAT));
    let in_ts = chacha_backends(&hex(RFC7634_KEYMAT));
    assert!(!out_ts.is_empty());
    for ((backend, t_out), (_, t_in)) in out_ts.into_iter().zip(in_ts) {
        let fixed = FixedIv {
            inner: t_out,
            iv: hex(RFC7634_IV),
        };
        let sa_out =
            OutboundSa::with_esp_transform(&params(Direction::Out), Box::new(fixed)).unwrap();
        let mut buf = HeapBuf::from_slice_with_room(&hex(RFC7634_INNER), 128, 128);
        esp::encap(&sa_out, &mut buf).unwrap();
        let pkt = buf.to_vec();
        assert_eq!(&pkt[20..], &rfc7634_esp()[..], "{backend}: encap");
        assert_eq!(pkt[9], 50, "{backend}: outer protocol");

        let sa_in = InboundSa::with_esp_transform(&params(Direction::In), t_in).unwrap();
        let Ok(Arrival::Ipsec(o)) = outer::classify(&pkt, |_| false) else {
            panic!("{backend}: not ESP")
        };
        let mut buf = HeapBuf::from_slice(&pkt);
        esp::decap(&sa_in, &mut buf, &o).unwrap();
        assert_eq!(buf.to_vec(), hex(RFC7634_INNER), "{backend}: decap");
    }
    // The same packet through SAs built from configuration (sequence-derived IVs) still
    // decrypts the appendix's bytes: the IV is read from the packet, not derived.
    let sa_in = InboundSa::new(&params(Direction::In)).unwrap();
    let mut pkt = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 50, 0, 0, 203, 0, 113, 1, 203, 0, 113, 2,
    ];
    pkt.extend_from_slice(&rfc7634_esp());
    let total = pkt.len() as u16;
    pkt[2..4].copy_from_slice(&total.to_be_bytes());
    let c = !dataplane::wire::checksum::data(&pkt[..20]);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    let Ok(Arrival::Ipsec(o)) = outer::classify(&pkt, |_| false) else {
        panic!("not ESP")
    };
    let mut buf = HeapBuf::from_slice(&pkt);
    esp::decap(&sa_in, &mut buf, &o).unwrap();
    assert_eq!(buf.to_vec(), hex(RFC7634_INNER));
}
