//! fgpcap: apply static SAs written in YAML to pcap captures.
//!
//! ```text
//! fgpcap encrypt --sa SAS.yaml --in PLAIN.pcap --out ESP.pcap [--json]
//! fgpcap decrypt --sa SAS.yaml --in ESP.pcap --out PLAIN.pcap [--json]
//! ```
//!
//! Operators use it to decrypt a capture of a tunnel while debugging it (the keys come from
//! `fgctl` or strongSwan's logs); the tests use it to check our ESP against scapy's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use dataplane::buf::{HeapBuf, PacketBuf};
use dataplane::config::{load_sa_file, sa_warnings};
use dataplane::drop::{DropCounters, DropReason};
use dataplane::outer::{self, Arrival};
use dataplane::pcap::{LinkType, Reader, Writer};
use dataplane::sa::{Direction, InboundSa, OutboundSa};
use dataplane::sad::Sad;
use dataplane::wire::ethernet;

const USAGE: &str =
    "usage: fgpcap encrypt|decrypt --sa SAS.yaml --in IN.pcap --out OUT.pcap [--json]";

struct Args {
    encrypt: bool,
    sa: PathBuf,
    input: PathBuf,
    output: PathBuf,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let encrypt = match it.next().as_deref() {
        Some("encrypt") => true,
        Some("decrypt") => false,
        Some("-h" | "--help") | None => return Err(USAGE.into()),
        Some(other) => return Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    let (mut sa, mut input, mut output, mut json) = (None, None, None, false);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--sa" => sa = Some(PathBuf::from(value()?)),
            "--in" => input = Some(PathBuf::from(value()?)),
            "--out" => output = Some(PathBuf::from(value()?)),
            "--json" => json = true,
            _ => return Err(format!("unknown argument `{a}`\n{USAGE}")),
        }
    }
    Ok(Args {
        encrypt,
        sa: sa.ok_or(format!("--sa is required\n{USAGE}"))?,
        input: input.ok_or(format!("--in is required\n{USAGE}"))?,
        output: output.ok_or(format!("--out is required\n{USAGE}"))?,
        json,
    })
}

/// Where the IP packet starts in a frame of this link type, or None when it holds no IP.
fn ip_offset(link: LinkType, frame: &[u8]) -> Option<usize> {
    match link {
        LinkType::Ethernet => {
            let f = ethernet::Frame::new_checked(frame).ok()?;
            match f.ethertype() {
                ethernet::ethertype::IPV4 | ethernet::ethertype::IPV6 => Some(f.payload_offset()),
                _ => None,
            }
        }
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => Some(0),
        _ => None,
    }
}

#[derive(Default)]
struct Summary {
    packets_in: u64,
    packets_out: u64,
    drops: DropCounters,
    not_ipsec: u64,
    reasm: dataplane::reasm::ReasmStats,
}

fn run(args: &Args) -> Result<Summary, String> {
    let sas = load_sa_file(&args.sa).map_err(|e| e.to_string())?;
    // The loader logs these through `tracing`, which this tool does not set up: say them here.
    for w in sa_warnings(&sas) {
        eprintln!("fgpcap: warning: {}: {w}", args.sa.display());
    }
    let want = if args.encrypt {
        Direction::Out
    } else {
        Direction::In
    };
    let mut outbound = Vec::new();
    let mut sad = Sad::new();
    let mut natt_ports = Vec::new();
    for p in sas.iter().filter(|p| p.direction == want) {
        if args.encrypt {
            outbound.push(OutboundSa::new(p).map_err(|e| e.to_string())?);
        } else {
            let sa = InboundSa::new(p).map_err(|e| e.to_string())?;
            if let Some(u) = p.udp_encap {
                natt_ports.push(u.local_port);
            }
            let dst = p.tunnel.map(|t| t.local);
            sad.insert(p.spi, dst, Arc::new(sa));
        }
    }
    if outbound.is_empty() && sad.is_empty() {
        return Err(format!(
            "{}: no `direction: {}` SA to {} with",
            args.sa.display(),
            if args.encrypt { "out" } else { "in" },
            if args.encrypt { "encrypt" } else { "decrypt" }
        ));
    }
    let input = File::open(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let mut reader =
        Reader::new(BufReader::new(input)).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let link = reader.link_type();
    let output =
        File::create(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let mut writer = Writer::new(BufWriter::new(output), link, 262_144)
        .map_err(|e| format!("{}: {e}", args.output.display()))?;

    let mut s = Summary::default();
    let mut frame = Vec::new();
    let mut buf = HeapBuf::with_room(256, 65_536 + 1024);
    let mut out = Vec::with_capacity(65_536 + 1024);
    // Fragmented ESP (the peer's MTU was smaller than its packets) is put back together first.
    let mut reasm = dataplane::reasm::Reassembler::new(64, 30_000);
    while let Some(rec) = reader
        .next_record(&mut frame)
        .map_err(|e| format!("{}: {e}", args.input.display()))?
    {
        s.packets_in += 1;
        let Some(off) = ip_offset(link, &frame) else {
            s.not_ipsec += 1;
            continue;
        };
        if !buf.reset_from(&frame[off..], 256) {
            s.drops.inc(DropReason::Malformed);
            continue;
        }
        if !args.encrypt && dataplane::reasm::is_fragment(buf.data()) {
            let now_ms = u64::from(rec.ts_sec) * 1000;
            match reasm.push(buf.data(), now_ms) {
                Ok(Some(whole)) => {
                    if !buf.reset_from(whole, 256) {
                        s.drops.inc(DropReason::Malformed);
                        continue;
                    }
                }
                Ok(None) => continue,
                Err(_) => {
                    s.drops.inc(DropReason::Reassembly);
                    continue;
                }
            }
        }
        let result = if args.encrypt {
            encrypt_one(&outbound, &mut buf)
        } else {
            match decrypt_one(&sad, &natt_ports, &mut buf) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    s.not_ipsec += 1;
                    continue;
                }
                Err(r) => Err(r),
            }
        };
        if let Err(r) = result {
            s.drops.inc(r);
            continue;
        }
        out.clear();
        out.extend_from_slice(&frame[..off]);
        if link == LinkType::Ethernet && off >= 2 {
            // The ethertype in front of the IP packet follows its (new) version.
            let et = if buf.data()[0] >> 4 == 6 {
                ethernet::ethertype::IPV6
            } else {
                ethernet::ethertype::IPV4
            };
            out[off - 2..off].copy_from_slice(&et.to_be_bytes());
        }
        out.extend_from_slice(buf.data());
        writer
            .write_record(rec.ts_sec, rec.ts_frac, &out)
            .map_err(|e| format!("{}: {e}", args.output.display()))?;
        s.packets_out += 1;
    }
    writer
        .into_inner()
        .map_err(|e| format!("{}: {e}", args.output.display()))?;
    s.reasm = reasm.stats;
    Ok(s)
}

fn encrypt_one(sas: &[OutboundSa], buf: &mut HeapBuf) -> Result<(), DropReason> {
    let key = dataplane::flow::flow_key(buf.data())?;
    let sa = sas
        .iter()
        .find(|sa| sa.selectors().iter().any(|sel| sel.matches(&key)))
        .ok_or(DropReason::NoSaForPolicy)?;
    dataplane::esp::encap(sa, buf)
}

/// Ok(false) when the packet is not IPsec.
fn decrypt_one(
    sad: &Sad<Arc<InboundSa>>,
    natt_ports: &[u16],
    buf: &mut HeapBuf,
) -> Result<bool, DropReason> {
    match outer::classify(buf.data(), |p| natt_ports.contains(&p))? {
        Arrival::Ipsec(o) => {
            let sa = sad.get(o.spi, o.dst).ok_or(DropReason::NoSa)?;
            dataplane::esp::decap(sa, buf, &o)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(m) => {
            eprintln!("fgpcap: {m}");
            return ExitCode::from(2);
        }
    };
    let s = match run(&args) {
        Ok(s) => s,
        Err(m) => {
            eprintln!("fgpcap: {m}");
            return ExitCode::from(1);
        }
    };
    let mut drops: BTreeMap<&str, u64> = s.drops.nonzero().map(|(r, n)| (r.as_str(), n)).collect();
    if s.not_ipsec > 0 {
        drops.insert("not_ipsec", s.not_ipsec);
    }
    // Partial datagrams the reassembler gave up on: their fragments were taken in, so they
    // are drops too (the other reassembly failures are counted as `reassembly` above).
    for (name, n) in [
        ("reassembly_timed_out", s.reasm.timed_out),
        ("reassembly_evicted", s.reasm.evicted),
    ] {
        if n > 0 {
            drops.insert(name, n);
        }
    }
    if args.json {
        let v = serde_json::json!({
            "packets_in": s.packets_in,
            "packets_out": s.packets_out,
            "drops": drops,
            "fragments": s.reasm.fragments,
            "reassembled": s.reasm.reassembled,
        });
        println!("{v}");
    } else {
        println!("{} packets in, {} out", s.packets_in, s.packets_out);
        if s.reasm.fragments > 0 {
            println!(
                "  {} outer fragments reassembled into {} packets",
                s.reasm.fragments, s.reasm.reassembled
            );
        }
        for (r, n) in &drops {
            println!("  dropped {n:>8}  {r}");
        }
    }
    ExitCode::SUCCESS
}
