//! `ferrogate-ike`: the IKEv2 daemon.
//!
//! ```text
//! ferrogate-ike --config ike.yaml [--export-dir DIR] [--log info]
//! ```
//!
//! Today it speaks IKE over plain UDP sockets on ports 500 and 4500 of every tunnel's local
//! address (the mode the design keeps for protocol tests without DPDK). Each event is printed
//! as one JSON line on stdout (IKE SA up/down, CHILD_SA installed/removed). With
//! `--export-dir`, the keys of the CHILD_SAs that are up are kept in `DIR/<tunnel>.yaml` in the
//! data plane's SA syntax, which `fgpcap` reads (mode 0600).
//!
//! SIGTERM/SIGINT delete the IKE SAs politely (INFORMATIONAL Delete) before exiting.

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::config::Config;
use controlplane::export;
use controlplane::ike::daemon::Daemon;
use controlplane::ike::sa::{Action, ChildSaInstall, IKE_PORT, NATT_PORT};

struct Args {
    config: PathBuf,
    export_dir: Option<PathBuf>,
    log: String,
}

fn usage() -> ! {
    eprintln!("usage: ferrogate-ike --config FILE [--export-dir DIR] [--log LEVEL]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        config: PathBuf::new(),
        export_dir: None,
        log: "info".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--config" => a.config = it.next().map(PathBuf::from).unwrap_or_else(|| usage()),
            "--export-dir" => {
                a.export_dir = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage()))
            }
            "--log" => a.log = it.next().unwrap_or_else(|| usage()),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("ferrogate-ike: unknown argument `{other}`");
                usage()
            }
        }
    }
    if a.config.as_os_str().is_empty() {
        usage()
    }
    a
}

struct Io {
    sockets: HashMap<SocketAddr, UdpSocket>,
}

impl Io {
    fn bind(config: &Config) -> Result<Io, String> {
        let mut sockets = HashMap::new();
        for t in &config.tunnels {
            for port in [IKE_PORT, NATT_PORT] {
                let addr = SocketAddr::new(t.local, port);
                if sockets.contains_key(&addr) {
                    continue;
                }
                let s = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                sockets.insert(addr, s);
            }
        }
        Ok(Io { sockets })
    }

    fn send(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let Some(s) = self.sockets.get(&local) else {
            tracing::warn!(%local, "no socket to send from");
            return;
        };
        let r = if local.port() == IKE_PORT {
            s.send_to(data, remote)
        } else {
            // RFC 3948 §2.2: IKE on the NAT-T port starts with the 4-byte non-ESP marker.
            let mut v = Vec::with_capacity(data.len() + 4);
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(data);
            s.send_to(&v, remote)
        };
        if let Err(e) = r {
            tracing::warn!(%remote, "send: {e}");
        }
    }

    /// Drains every socket; returns (local, remote, IKE message) triples.
    fn recv(&self, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        let mut buf = [0u8; 65536];
        for (local, s) in &self.sockets {
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, remote)) => {
                        let d = &buf[..n];
                        if local.port() == NATT_PORT {
                            if n == 1 && d[0] == 0xff {
                                continue; // NAT keepalive (RFC 3948 §2.3)
                            }
                            if n < 4 || d[..4] != [0; 4] {
                                continue; // ESP: the data plane's business
                            }
                            out.push((*local, remote, d[4..].to_vec()));
                        } else {
                            out.push((*local, remote, d.to_vec()));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::debug!("recv: {e}");
                        break;
                    }
                }
            }
        }
    }
}

struct Exporter {
    dir: Option<PathBuf>,
    /// tunnel -> (spi_in -> YAML entries)
    children: BTreeMap<String, BTreeMap<u32, String>>,
}

impl Exporter {
    fn write(&self, tunnel: &str) {
        let Some(dir) = &self.dir else { return };
        let mut text = String::from(
            "# CHILD_SAs negotiated by ferrogate-ike (keys!): for fgpcap and debugging\nsas:\n",
        );
        if let Some(m) = self.children.get(tunnel) {
            for y in m.values() {
                text.push_str(y);
            }
        }
        if self.children.get(tunnel).is_none_or(BTreeMap::is_empty) {
            text = text.replace("sas:\n", "sas: []\n");
        }
        let path = dir.join(format!("{tunnel}.yaml"));
        let tmp = dir.join(format!(".{tunnel}.yaml.tmp"));
        let r = (|| -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = r {
            tracing::warn!("export {}: {e}", path.display());
        }
    }
    fn install(&mut self, c: &ChildSaInstall) {
        self.children
            .entry(c.tunnel.clone())
            .or_default()
            .insert(c.spi_in, export::sa_yaml(c));
        self.write(&c.tunnel);
    }
    fn remove(&mut self, tunnel: &str, spi_in: u32) {
        if let Some(m) = self.children.get_mut(tunnel) {
            m.remove(&spi_in);
        }
        self.write(tunnel);
    }
}

fn event(v: serde_json::Value) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{v}");
    let _ = o.flush();
}

fn carry_out(actions: Vec<Action>, io: &Io, ex: &mut Exporter) {
    for a in actions {
        match a {
            Action::Send {
                local,
                remote,
                data,
            } => io.send(local, remote, &data),
            Action::Install(c) => {
                ex.install(&c);
                event(serde_json::json!({
                    "event": "child-up", "tunnel": c.tunnel, "child": c.child,
                    "spi_in": format!("{:08x}", c.spi_in), "spi_out": format!("{:08x}", c.spi_out),
                    "encr": c.encr.name(), "integ": c.integ.map(|i| i.name()), "udp_encap": c.udp_encap,
                    "replaces": c.replaces.map(|s| format!("{s:08x}")),
                }));
            }
            Action::Remove {
                tunnel,
                child,
                spi_in,
                spi_out,
            } => {
                ex.remove(&tunnel, spi_in);
                event(serde_json::json!({
                    "event": "child-down", "tunnel": tunnel, "child": child,
                    "spi_in": format!("{spi_in:08x}"), "spi_out": format!("{spi_out:08x}"),
                }));
            }
            Action::Established {
                tunnel,
                algorithms,
                nat,
            } => {
                event(
                    serde_json::json!({"event": "ike-up", "tunnel": tunnel, "algorithms": algorithms, "nat": nat}),
                );
            }
            Action::Closed {
                tunnel,
                reason,
                restart,
            } => {
                event(
                    serde_json::json!({"event": "ike-down", "tunnel": tunnel, "reason": reason, "restart": restart}),
                );
            }
            Action::Activate {
                tunnel,
                spi_in,
                spi_out,
            } => {
                event(serde_json::json!({
                    "event": "child-outbound", "tunnel": tunnel,
                    "spi_in": format!("{spi_in:08x}"), "spi_out": format!("{spi_out:08x}"),
                }));
            }
            Action::Spawn(_) => {}
        }
    }
}

fn main() -> ExitCode {
    let args = parse_args();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrogate-ike: {e}");
            return ExitCode::from(1);
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if let Some(d) = &args.export_dir {
        if let Err(e) = std::fs::create_dir_all(d) {
            eprintln!("ferrogate-ike: {}: {e}", d.display());
            return ExitCode::from(1);
        }
    }
    let io = match Io::bind(&config) {
        Ok(io) => io,
        Err(e) => {
            eprintln!("ferrogate-ike: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("ferrogate-ike: signal handler: {e}");
            return ExitCode::from(1);
        }
    }
    let mut ex = Exporter {
        dir: args.export_dir.clone(),
        children: BTreeMap::new(),
    };
    let mut daemon = Daemon::new(&config);
    carry_out(daemon.start(Instant::now()), &io, &mut ex);
    let mut inbox = Vec::new();
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        io.recv(&mut inbox);
        let now = Instant::now();
        let busy = !inbox.is_empty();
        for (local, remote, data) in inbox.drain(..) {
            let acts = daemon.handle(now, local, remote, &data);
            carry_out(acts, &io, &mut ex);
        }
        if now.duration_since(last_tick) >= Duration::from_millis(100) {
            last_tick = now;
            carry_out(daemon.tick(now), &io, &mut ex);
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Polite shutdown: send the deletes and give the peers a moment to answer.
    let now = Instant::now();
    carry_out(daemon.shutdown(now), &io, &mut ex);
    let until = now + Duration::from_millis(500);
    while Instant::now() < until {
        io.recv(&mut inbox);
        for (local, remote, data) in inbox.drain(..) {
            let acts = daemon.handle(Instant::now(), local, remote, &data);
            carry_out(acts, &io, &mut ex);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ExitCode::SUCCESS
}
