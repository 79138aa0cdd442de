//! Inbound processing on arbitrary bytes: classify → SAD → replay → ICV → decrypt → trailer →
//! selectors, for an SA of each kind (AEAD, CBC+HMAC, AH, NAT-T, ESN). No input may panic.
//! The first byte picks whether the rest is sealed with a valid ICV first, so the fuzzer also
//! reaches the trailer, padding and inner-packet checks behind the ICV.
#![no_main]

use std::sync::{Arc, OnceLock};

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::burst::{self, InboundTables, Verdict};
use dataplane::crypto::{Cipher, Integrity};
use dataplane::drop::DropCounters;
use dataplane::sa::{Direction, Endpoints, InboundSa, Mode, OutboundSa, Protocol, SaParams, UdpEncap};
use dataplane::sad::Sad;
use dataplane::spd::{Action, PortRange, Rule, Selector, Spd};
use libfuzzer_sys::fuzz_target;

struct World {
    sad: Sad<Arc<InboundSa>>,
    spd: Spd<()>,
    out: Vec<OutboundSa>,
}

fn params(spi: u32, c: Cipher, i: Integrity, proto: Protocol, mode: Mode, natt: bool, esn: bool, dir: Direction) -> SaParams {
    let mut p = SaParams::new(spi, dir, c, i);
    p.protocol = proto;
    p.mode = mode;
    p.enc_key = vec![7u8; c.key_len()].into();
    p.auth_key = vec![9u8; i.key_len()].into();
    if mode == Mode::Tunnel {
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        p.tunnel = Some(match dir {
            Direction::Out => Endpoints { local: a, remote: b },
            Direction::In => Endpoints { local: b, remote: a },
        });
    }
    if natt {
        p.udp_encap = Some(UdpEncap { local_port: 4500, remote_port: 4500 });
    }
    p.esn = esn;
    p
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let kinds = [
            (1, Cipher::AesGcm128, Integrity::None, Protocol::Esp, Mode::Tunnel, false, false),
            (2, Cipher::AesCbc128, Integrity::HmacSha256, Protocol::Esp, Mode::Tunnel, false, true),
            (3, Cipher::Chacha20Poly1305, Integrity::None, Protocol::Esp, Mode::Transport, true, false),
            (4, Cipher::Null, Integrity::HmacSha256, Protocol::Ah, Mode::Tunnel, false, false),
            (5, Cipher::Null, Integrity::HmacSha256, Protocol::Ah, Mode::Transport, false, true),
            (6, Cipher::AesGmac128, Integrity::None, Protocol::Esp, Mode::Tunnel, true, false),
        ];
        let mut sad = Sad::new();
        let mut out = Vec::new();
        for (spi, c, i, pr, m, n, e) in kinds {
            let inb = InboundSa::new(&params(spi, c, i, pr, m, n, e, Direction::In)).unwrap();
            sad.insert(spi, None, Arc::new(inb));
            out.push(OutboundSa::new(&params(spi, c, i, pr, m, n, e, Direction::Out)).unwrap());
        }
        let any = Selector {
            src: "0.0.0.0/0".parse().unwrap(),
            dst: "0.0.0.0/0".parse().unwrap(),
            proto: None,
            src_ports: PortRange::ANY,
            dst_ports: PortRange::ANY,
        };
        let spd = Spd::build(vec![Rule { priority: 1, selector: any, action: Action::Bypass }]).unwrap();
        World { sad, spd, out }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut pkts = [HeapBuf::from_slice(rest)];
    if mode & 0x80 != 0 {
        // Seal the arbitrary "inner packet" with one of the SAs first.
        let sa = &w.out[usize::from(mode & 0x7f) % w.out.len()];
        if dataplane::esp::encap(sa, &mut pkts[0]).is_err() {
            return;
        }
    }
    let mut verdicts = [Verdict::Pending; 1];
    let mut drops = DropCounters::default();
    // Half the inputs with the gateway's own addresses given (IPsec to others passes
    // through SPD-in), half without (every arrival is looked up).
    let locals: [std::net::IpAddr; 2] = ["10.0.0.2".parse().unwrap(), "2001:db8::2".parse().unwrap()];
    let local = (mode & 0x40 != 0).then_some(&locals[..]);
    let t = InboundTables { sad: &w.sad, spd: &w.spd, natt_ports: &[4500], local };
    let mut hits = dataplane::spd::PolicyHits::new(w.spd.len());
    burst::inbound(&t, &mut pkts, &mut verdicts, &mut drops, &mut hits);
    let _ = pkts[0].data();
});
