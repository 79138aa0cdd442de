//! `ferrogate-ike`: the IKEv2 daemon.
//!
//! ```text
//! ferrogate-ike --config ike.yaml [--dataplane CHANNEL] [--export-dir DIR] [--log info]
//! ```
//!
//! With `--dataplane`, IKE travels through the data plane (`ferrogate --control CHANNEL`):
//! datagrams punted from and injected into its ports through the shared-memory channel, and
//! every CHILD_SA negotiated is installed there (make-before-break on rekeys). Without it, IKE
//! runs over plain UDP sockets on ports 500 and 4500 of every tunnel's local address (protocol
//! tests without DPDK; the keys only go to `--export-dir`). Each event is printed
//! as one JSON line on stdout (IKE SA up/down, CHILD_SA installed/removed). With
//! `--export-dir`, the keys of the CHILD_SAs that are up are kept in `DIR/<tunnel>.yaml` in the
//! data plane's SA syntax, which `fgpcap` reads (mode 0600).
//!
//! With `--socket PATH` (default `/run/ferrogate/ike.sock`) it answers `fgctl`: list SAs and
//! policies, initiate, terminate, reload the configuration, watch events.
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

use controlplane::config::{Config, DpdAction, StartAction};
use controlplane::dataplane::ctl;
use controlplane::dataplane::net::IpPrefix;
use controlplane::export;
use controlplane::ike::daemon::Daemon;
use controlplane::ike::sa::{Action, ChildSaInstall, IKE_PORT, NATT_PORT};

struct Args {
    socket: Option<PathBuf>,
    config: PathBuf,
    export_dir: Option<PathBuf>,
    log: String,
    dataplane: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: ferrogate-ike --config FILE [--dataplane CHANNEL] [--export-dir DIR] [--log LEVEL]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        socket: Some(PathBuf::from("/run/ferrogate/ike.sock")),
        config: PathBuf::new(),
        export_dir: None,
        log: "info".into(),
        dataplane: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--config" => a.config = it.next().map(PathBuf::from).unwrap_or_else(|| usage()),
            "--export-dir" => {
                a.export_dir = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage()))
            }
            "--log" => a.log = it.next().unwrap_or_else(|| usage()),
            "--socket" => {
                a.socket = it
                    .next()
                    .map(PathBuf::from)
                    .filter(|p| p.as_os_str() != "none")
            }
            "--dataplane" => {
                a.dataplane = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage()))
            }
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

struct SocketIo {
    sockets: HashMap<SocketAddr, UdpSocket>,
}

impl SocketIo {
    fn bind(config: &Config) -> Result<SocketIo, String> {
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
        Ok(SocketIo { sockets })
    }

    fn send(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let Some(s) = self.sockets.get(&local) else {
            tracing::warn!(%local, "no socket to send from");
            return;
        };
        // A NAT keepalive (one 0xFF byte) goes without the non-ESP marker.
        let r = if local.port() == IKE_PORT || data == [0xff] {
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
        writer::submit(writer::Job::Replace {
            path: dir.join(format!("{tunnel}.yaml")),
            tmp: dir.join(format!(".{tunnel}.yaml.tmp")),
            text,
        });
    }
    fn install(&mut self, c: &ChildSaInstall) {
        let y = export::sa_yaml(c);
        self.children
            .entry(c.tunnel.clone())
            .or_default()
            .insert(c.spi_in, y.clone());
        self.write(&c.tunnel);
        // Every SA ever negotiated, for captures that span rekeys: <tunnel>-history.yaml.
        let Some(dir) = &self.dir else { return };
        writer::submit(writer::Job::Append {
            path: dir.join(format!("{}-history.yaml", c.tunnel)),
            header: "# every CHILD_SA ferrogate-ike negotiated (keys!)\nsas:\n",
            text: y,
        });
    }
    fn remove(&mut self, tunnel: &str, spi_in: u32) {
        if let Some(m) = self.children.get_mut(tunnel) {
            m.remove(&spi_in);
        }
        self.write(tunnel);
    }
}

/// `fgctl watch` clients.
static WATCHERS: std::sync::Mutex<Vec<std::os::unix::net::UnixStream>> =
    std::sync::Mutex::new(Vec::new());

fn event(v: serde_json::Value) {
    writer::submit(writer::Job::Event(format!("{v}\n")));
}

/// The files ferrogate-ike writes (the key exports, the events on stdout and to `fgctl watch`
/// clients), written in order by a thread of their own: an event is written after the exports
/// of the change it reports. A create-and-rename can block for seconds while the file system
/// commits: ferrogate's stats file, written the same way from its main lcore, blocked it for
/// up to 4.4 s while a test's captures were being written out. An export is written when a
/// CHILD_SA is installed, before the IKE message that completes its exchange is sent, so
/// written here it would hold that answer back and the peer would send its request again.
mod writer {
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::mpsc::{channel, Sender, SyncSender};
    use std::sync::OnceLock;

    pub enum Job {
        /// Replace `path` with `text` (mode 0600, written to `tmp`, then renamed).
        Replace {
            path: PathBuf,
            tmp: PathBuf,
            text: String,
        },
        /// Append `text` to `path` (mode 0600), starting a new file with `header`.
        Append {
            path: PathBuf,
            header: &'static str,
            text: String,
        },
        /// An event line for stdout and the `fgctl watch` clients.
        Event(String),
        /// Answered once everything before it is written.
        Flush(SyncSender<()>),
    }

    /// A writer thread and the way to it.
    pub struct Writer(Sender<Job>);

    impl Writer {
        pub fn spawn() -> std::io::Result<Writer> {
            let (tx, rx) = channel::<Job>();
            std::thread::Builder::new()
                .name("ike-writer".into())
                .spawn(move || {
                    for job in rx {
                        run(job);
                    }
                })?;
            Ok(Writer(tx))
        }

        /// Queues `job` (never waits); gives it back if the thread is gone.
        pub fn submit(&self, job: Job) -> Result<(), Job> {
            self.0.send(job).map_err(|e| e.0)
        }

        /// Waits until everything queued so far is written.
        pub fn flush(&self) {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            if self.submit(Job::Flush(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }

    static WRITER: OnceLock<Writer> = OnceLock::new();

    /// Starts the process's writer; until then (and if it cannot start) jobs are done at once.
    pub fn start() {
        match Writer::spawn() {
            Ok(w) => {
                let _ = WRITER.set(w);
            }
            Err(e) => tracing::warn!("writer thread: {e}; files are written inline"),
        }
    }

    /// Hands `job` to the process's writer.
    pub fn submit(job: Job) {
        let job = match WRITER.get() {
            Some(w) => match w.submit(job) {
                Ok(()) => return,
                Err(job) => job,
            },
            None => job,
        };
        run(job);
    }

    /// Calls [`flush`] when dropped.
    pub struct FlushOnDrop;

    impl Drop for FlushOnDrop {
        fn drop(&mut self) {
            flush();
        }
    }

    /// Waits until everything submitted to the process's writer so far is written.
    pub fn flush() {
        if let Some(w) = WRITER.get() {
            w.flush();
        }
    }

    fn run(job: Job) {
        use std::os::unix::fs::OpenOptionsExt;
        let t = std::time::Instant::now();
        let (what, r) = match job {
            Job::Replace { path, tmp, text } => {
                let r = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .and_then(|()| std::fs::rename(&tmp, &path));
                (path, r)
            }
            Job::Append { path, header, text } => {
                let fresh = !path.exists();
                let r = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(&path)
                    .and_then(|mut f| {
                        if fresh {
                            f.write_all(header.as_bytes())?;
                        }
                        f.write_all(text.as_bytes())
                    });
                (path, r)
            }
            Job::Event(line) => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(line.as_bytes());
                let _ = o.flush();
                if let Ok(mut w) = super::WATCHERS.lock() {
                    w.retain_mut(|s| s.write_all(line.as_bytes()).is_ok());
                }
                return;
            }
            Job::Flush(done) => {
                let _ = done.send(());
                return;
            }
        };
        if let Err(e) = r {
            tracing::warn!("export {}: {e}", what.display());
        }
        let ms = t.elapsed().as_millis() as u64;
        if ms >= 1000 {
            tracing::warn!(
                ms,
                "export {} took long (a slow file system)",
                what.display()
            );
        }
    }
}

/// The management socket (`fgctl`).
struct Mgmt {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

impl Mgmt {
    fn bind(path: &std::path::Path) -> Result<Mgmt, String> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        // A socket left by a killed predecessor.
        if std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
        let listener = std::os::unix::net::UnixListener::bind(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Mgmt {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves pending requests.
    fn serve(
        &self,
        daemon: &mut Daemon,
        io: &mut Io,
        ex: &mut Exporter,
        config_path: &std::path::Path,
        ha: Option<&HaSync>,
    ) {
        use controlplane::mgmt::Request;
        use std::io::{BufRead, BufReader};
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_err() {
                continue;
            }
            let now = Instant::now();
            let reply = match serde_json::from_str::<Request>(&line) {
                Err(e) => serde_json::json!({"error": format!("bad request: {e}")}),
                Ok(Request::Watch) => {
                    let _ = stream.set_nonblocking(true);
                    if let Ok(mut w) = WATCHERS.lock() {
                        w.push(stream);
                    }
                    continue;
                }
                Ok(Request::ListSas) | Ok(Request::ListPolicies) => {
                    let counters = match io {
                        Io::Channel(ch) => ch.counters(),
                        Io::Sockets(_) => Default::default(),
                    };
                    serde_json::to_value(controlplane::mgmt::status(daemon, now, &counters))
                        .unwrap_or_default()
                }
                Ok(Request::Ha) => {
                    let (held, standby) = match io {
                        Io::Channel(ch) => {
                            let mut h: Vec<String> =
                                ch.held.iter().map(|a| a.to_string()).collect();
                            let mut s: Vec<String> =
                                daemon.standby().iter().map(|a| a.to_string()).collect();
                            h.sort();
                            s.sort();
                            (h, s)
                        }
                        Io::Sockets(_) => (Vec::new(), Vec::new()),
                    };
                    serde_json::json!({"held": held, "standby": standby,
                        "sync": ha.map(HaSync::status)})
                }
                Ok(Request::Initiate { tunnel }) => match daemon.initiate_by_name(&tunnel, now) {
                    Some(acts) => {
                        carry_out(acts, io, ex);
                        serde_json::json!({"ok": format!("initiating {tunnel}")})
                    }
                    None => serde_json::json!({"error": format!("no tunnel named {tunnel}")}),
                },
                Ok(Request::Terminate { tunnel }) => match daemon.terminate_by_name(&tunnel, now) {
                    Some(acts) => {
                        carry_out(acts, io, ex);
                        serde_json::json!({"ok": format!("terminating {tunnel}")})
                    }
                    None => serde_json::json!({"error": format!("no tunnel named {tunnel}")}),
                },
                Ok(Request::Reload) => match Config::load(config_path) {
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                    Ok(c) => {
                        for w in &c.warnings {
                            tracing::warn!("{w}");
                        }
                        let (acts, changed) = daemon.reload(&c, now);
                        carry_out(acts, io, ex);
                        if let Io::Channel(ch) = io {
                            ch.set_traps(traps_of(&c));
                        }
                        event(serde_json::json!({"event": "reloaded", "changed": changed}));
                        serde_json::json!({"ok": "reloaded", "changed": changed})
                    }
                },
            };
            let mut s = &stream;
            let _ = writeln!(s, "{reply}");
        }
    }
}

impl Drop for Mgmt {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// IKE through the data plane: the shared-memory channel of `ferrogate --control`.
/// On-demand tunnels (start: trap) and those that wait for traffic after DPD (hold) keep a
/// trap policy in the data plane.
fn traps_of(config: &Config) -> Vec<(String, String, Vec<IpPrefix>, Vec<IpPrefix>)> {
    let mut v = Vec::new();
    for t in config
        .tunnels
        .iter()
        .filter(|t| t.start == StartAction::Trap || t.dpd.action == DpdAction::Hold)
    {
        for c in &t.children {
            v.push((
                t.name.clone(),
                c.name.clone(),
                c.local_ts.clone(),
                c.remote_ts.clone(),
            ));
        }
    }
    v
}

struct ChanIo {
    path: PathBuf,
    chan: Option<shmring::Channel>,
    generation: u64,
    last_try: Instant,
    /// What we installed, to reinstall into a restarted data plane.
    installed: BTreeMap<u32, ctl::ChildSa>,
    /// SA pairs the data plane held when we started (an earlier incarnation's): removed once
    /// their (tunnel, child) has a new SA pair, after a grace period.
    stale: Vec<ctl::SaReport>,
    replaced_at: HashMap<(String, String), Instant>,
    /// The data plane's last report, and when it was read.
    report: Vec<ctl::SaReport>,
    report_seen: bool,
    report_at: Instant,
    /// The parts so far of a report that comes in several (its number, the next part's
    /// place, when its first part was read, the pairs).
    partial: Option<(u64, u32, Instant, Vec<ctl::SaReport>)>,
    /// Tunnels whose on-demand policy saw traffic.
    acquires: Vec<String>,
    /// CHILD_SAs (inbound SPI) whose byte/packet lifetime ran out, and whether it was the hard
    /// limit.
    expired: Vec<(u32, bool)>,
    /// The VRRP addresses the data plane last said this gateway does not hold, when that
    /// changed (taken by the event loop).
    standby: Option<std::collections::HashSet<std::net::IpAddr>>,
    /// The standby set last handed to the event loop, and when: a master's data plane says
    /// where it stands every 100 ms (for the sync's VRRP word), and the daemon needs the set
    /// only when it changes, or once a second as before.
    standby_given: Option<(std::collections::HashSet<std::net::IpAddr>, Instant)>,
    /// Whether the data plane ever said (it runs VRRP).
    vrrp_seen: bool,
    /// The VRRP addresses the data plane last said this gateway holds.
    held: std::collections::HashSet<std::net::IpAddr>,
    /// The VRRP routers the data plane last said it is master of, and when: they go into the
    /// sync snapshot while that word is fresh ([`VRRP_MASTERS_FRESH`]; a master's data plane
    /// says so every 100 ms), so that a data plane that died does not go on holding the
    /// other gateway back through the sync.
    masters: Vec<ctl::VrrpMaster>,
    masters_at: Option<Instant>,
    /// On-demand policies to (re)install: (tunnel, child, local_ts, remote_ts).
    traps: Vec<(String, String, Vec<IpPrefix>, Vec<IpPrefix>)>,
    /// SA pairs deleted but still in the data plane until then (inbound SPI): ESP the peer
    /// sealed just before the delete may arrive after the exchange that ended it.
    lingering: Vec<(Instant, u32)>,
    /// Pairs the peer made beside one that still sends (inbound SPI, until when): their
    /// outbound half waits until the other is removed, or that time ([`DEFER`]).
    deferred: Vec<(Instant, u32)>,
    /// The data plane's worker pipelines (0 until it says).
    workers: u16,
    /// Per-resource pairs told to stop sending at their removal (none followed them).
    deactivated: u64,
    /// When we last told the data plane we are alive ([`ctl::Command::Alive`]).
    alive_at: Option<Instant>,
}

/// How long a pair the peer made beside a sending one of the same child may wait for the
/// other to go before it is used anyway: the peer has long had our answer by then, and a
/// duplicate it keeps (per-CPU SAs, a race) should carry traffic too.
const DEFER: Duration = Duration::from_secs(2);

/// How long a deleted SA pair stays in the data plane. strongSwan's libipsec, for one, sends
/// ESP from another thread than its IKE: an ESP packet it sealed under the old SA can trail the
/// DELETE response that made us drop that SA (seen: one `no_sa` drop per few hundred rekeys).
const LINGER: Duration = Duration::from_secs(1);

/// When a report was taken, as an `Instant`: `at_ns` is the data plane's CLOCK_MONOTONIC
/// stamp and `now_ns` ours. A report read late (this process stalled while the ring held it)
/// then counts from when it was taken. Without a stamp (an older data plane), or one from the
/// future (another time namespace), from now.
fn taken_at(at_ns: u64, now_ns: u64) -> Instant {
    let now = Instant::now();
    if at_ns == 0 || now_ns < at_ns {
        return now;
    }
    now.checked_sub(Duration::from_nanos(now_ns - at_ns))
        .unwrap_or(now)
}

impl ChanIo {
    fn new(path: PathBuf) -> ChanIo {
        ChanIo {
            path,
            chan: None,
            generation: 0,
            last_try: Instant::now() - Duration::from_secs(1),
            installed: BTreeMap::new(),
            stale: Vec::new(),
            replaced_at: HashMap::new(),
            lingering: Vec::new(),
            deferred: Vec::new(),
            workers: 0,
            deactivated: 0,
            alive_at: None,
            report: Vec::new(),
            report_seen: false,
            report_at: Instant::now(),
            partial: None,
            acquires: Vec::new(),
            expired: Vec::new(),
            traps: Vec::new(),
            standby: None,
            standby_given: None,
            vrrp_seen: false,
            held: Default::default(),
            masters: Vec::new(),
            masters_at: None,
        }
    }

    /// (Re)opens the channel when needed. Returns true when a data plane we had already
    /// installed SAs into has restarted (they were reinstalled; the caller rekeys them).
    fn maintain(&mut self) -> bool {
        let retired = self.chan.as_ref().is_some_and(shmring::Channel::is_retired);
        if self.chan.is_some() && !retired {
            return false;
        }
        if self.last_try.elapsed() < Duration::from_millis(200) {
            return false;
        }
        self.last_try = Instant::now();
        self.chan = None;
        match shmring::Channel::open(&self.path) {
            Ok(c) => {
                let g = c.generation();
                let restarted = self.generation != 0 && g != self.generation;
                self.generation = g;
                // Parts of a report from another data plane are not this one's.
                self.partial = None;
                self.chan = Some(c);
                tracing::info!(channel = %self.path.display(), generation = g, "data plane channel open");
                self.send_traps();
                if restarted {
                    tracing::warn!(
                        "the data plane restarted: reinstalling {} CHILD_SAs",
                        self.installed.len()
                    );
                    let all: Vec<ctl::ChildSa> = self.installed.values().cloned().collect();
                    for sa in all {
                        let sa = self.reinstalled(sa);
                        self.command(&ctl::Command::Add {
                            v: ctl::VERSION,
                            sa: Box::new(sa.clone()),
                        });
                        // A second restart before the next report goes on from here.
                        self.installed.insert(sa.spi_in, sa);
                    }
                }
                restarted
            }
            Err(e) => {
                tracing::debug!("data plane channel {}: {e}", self.path.display());
                false
            }
        }
    }

    /// One part of an SA report (a report too big for one ring slot comes in several). The
    /// report counts from when its first part was read: the older that time, the further a
    /// reinstall's numbering jumps, never the other way.
    fn report_part(
        &mut self,
        (report, part, at_ns): (u64, u32, u64),
        sas: Vec<ctl::SaReport>,
        more: bool,
    ) {
        let (at, mut all) = match self.partial.take() {
            Some((n, next, at, all)) if n == report && next == part => (at, all),
            // A report's first part (a part of the previous one went missing: start again).
            _ if part == 0 => (taken_at(at_ns, shmring::monotonic_ns()), Vec::new()),
            // The rest of a report whose start we did not read (we started meanwhile).
            _ => return,
        };
        all.extend(sas);
        if more {
            self.partial = Some((report, part + 1, at, all));
        } else {
            self.report = all;
            self.report_seen = true;
            self.report_at = at;
        }
    }

    /// `sa` as it goes into a data plane that restarted. Its keys are the same, and the new
    /// data plane's sequence counters start from nothing: sending from 1 again would repeat
    /// nonces under the key (and the peer's replay window would drop it all). So the outbound
    /// numbering goes on after the last number the old data plane reported, plus what it
    /// could have sent since ([`ctl::ChildSa::continue_after`]). Without a report of it, or
    /// without room, only the inbound half goes back (larval) until the rekey that follows
    /// brings a new pair. The inbound window starts as having seen everything up to the
    /// reported top, so that packets from before the restart are not accepted again (those
    /// accepted after the last report still could be, once, until the rekey).
    fn reinstalled(&self, sa: ctl::ChildSa) -> ctl::ChildSa {
        // Whole seconds since the report, rounded up (continue_after adds one more).
        carried_on(sa, &self.report, self.report_at.elapsed().as_secs() + 1)
    }

    /// Installs the SA pairs of `snap` (the other gateway's, synced) whose local address this
    /// gateway now holds, numbering outbound past what the other gateway's data plane
    /// reported used; they stay until the tunnel's new SA pairs are in (as those of an earlier
    /// incarnation do). Returns the tunnels they belong to.
    fn adopt(
        &mut self,
        snap: &controlplane::ha::Snapshot,
        held: &std::collections::HashSet<std::net::IpAddr>,
        known: impl Fn(&ctl::ChildSa) -> bool,
    ) -> Vec<String> {
        let secs = controlplane::ha::report_age_secs(snap, controlplane::ha::wall_ms()).max(1);
        let mut tunnels = Vec::new();
        for sa in &snap.sas {
            if !held.contains(&sa.local) || self.installed.contains_key(&sa.spi_in) {
                continue;
            }
            // A pair of a tunnel or child not configured here as there (the two gateways'
            // configurations drifted apart) is not installed: nothing here would rekey or
            // retire it.
            if !known(sa) {
                tracing::warn!(tunnel = %sa.tunnel, child = %sa.child, local = %sa.local, remote = %sa.remote,
                    "HA: the other gateway's SA pair is of a tunnel not configured so here: not installed");
                continue;
            }
            let sa = carried_on(sa.clone(), &snap.report, secs);
            // This gateway gave the pair up moments ago (it held the address before) and the
            // data plane still holds it, with its old counters, until the linger is over:
            // the Add would be refused and the pending Remove would then take the pair away.
            // Removed now, and installed afresh with the synced numbers.
            if let Some(i) = self.lingering.iter().position(|l| l.1 == sa.spi_in) {
                self.lingering.swap_remove(i);
                self.command(&ctl::Command::Remove {
                    v: ctl::VERSION,
                    spi_in: sa.spi_in,
                });
            }
            tracing::info!(tunnel = %sa.tunnel, child = %sa.child,
                spi_in = %format_args!("{:08x}", sa.spi_in), spi_out = %format_args!("{:08x}", sa.spi_out),
                out_seq_from = sa.out_seq_from, inbound_only = sa.larval,
                "HA: installing the other gateway's SA pair (synced)");
            self.command(&ctl::Command::Add {
                v: ctl::VERSION,
                sa: Box::new(sa.clone()),
            });
            // Retired once the tunnel's own new pair is in (not before: an older install
            // time of this (tunnel, child) must not count).
            self.replaced_at
                .remove(&(sa.tunnel.clone(), sa.child.clone()));
            self.stale.push(ctl::SaReport {
                tunnel: sa.tunnel.clone(),
                child: sa.child.clone(),
                spi_in: sa.spi_in,
                spi_out: sa.spi_out,
                active: !sa.larval,
                out_packets: 0,
                out_bytes: 0,
                in_packets: 0,
                in_bytes: 0,
                out_seq: None,
                in_seq: None,
                worker: sa.worker,
            });
            if !tunnels.contains(&sa.tunnel) {
                tunnels.push(sa.tunnel.clone());
            }
            // A pair the other gateway had not started sending on yet (a rekey's or a
            // reauthentication's, its exchange just done): it sends after the next removal or
            // DEFER, as it would have there.
            if !sa.larval && !sa.outbound_now {
                self.deferred.push((Instant::now() + DEFER, sa.spi_in));
            }
            self.installed.insert(sa.spi_in, sa);
        }
        tunnels
    }

    /// This gateway gave up the addresses `given` (the other VRRP gateway holds them now): the
    /// pairs installed for them that no IKE SA of ours removed (taken over from that gateway
    /// and not carried on, or left by an earlier incarnation) go too, as the IKE SAs' own
    /// did: they would otherwise go on sending from an address this gateway no longer holds,
    /// and be skipped (old counters and all) when the addresses come back.
    fn give_up(&mut self, given: &std::collections::HashSet<std::net::IpAddr>) {
        let gone: Vec<u32> = self
            .installed
            .values()
            .filter(|sa| given.contains(&sa.local))
            .map(|sa| sa.spi_in)
            .collect();
        for spi in gone {
            tracing::info!(spi_in = %format_args!("{spi:08x}"), "HA: the address went to the other gateway: SA pair removed");
            self.stale.retain(|s| s.spi_in != spi);
            self.remove(spi);
        }
    }

    /// Tells the data plane we are alive, every [`ctl::ALIVE_EVERY`]: its VRRP routers that
    /// track us go to fault when we stop (a master whose ferrogate-ike died hands its
    /// addresses, and the tunnels, to the other gateway).
    fn alive(&mut self) {
        if self.chan.is_some()
            && self
                .alive_at
                .is_none_or(|t| t.elapsed() >= ctl::ALIVE_EVERY)
        {
            self.alive_at = Some(Instant::now());
            self.command(&ctl::Command::Alive { v: ctl::VERSION });
        }
    }

    /// The VRRP routers the data plane is master of, if it said so lately (else none).
    fn fresh_masters(&self) -> Vec<ctl::VrrpMaster> {
        if self
            .masters_at
            .is_some_and(|t| t.elapsed() < VRRP_MASTERS_FRESH)
        {
            self.masters.clone()
        } else {
            Vec::new()
        }
    }

    /// Hands the data plane the other gateway's VRRP masters from its snapshot: each is taken
    /// as an advertisement of that router, a second path for when the wire loses them.
    fn sync_adverts(&self, masters: Vec<ctl::VrrpMaster>) {
        if self.chan.is_some() && !masters.is_empty() {
            self.command(&ctl::Command::SyncAdverts {
                v: ctl::VERSION,
                masters,
            });
        }
    }

    /// What the other gateway needs to take over: the pairs installed for addresses this
    /// gateway holds, and the data plane's last report of them. None while it holds none.
    fn snapshot(&self, boot: u64, seq: u64, daemon: &Daemon) -> Option<controlplane::ha::Snapshot> {
        if self.held.is_empty() {
            return None;
        }
        let sas: Vec<ctl::ChildSa> = self
            .installed
            .values()
            .filter(|sa| self.held.contains(&sa.local))
            .cloned()
            .collect();
        let report = self
            .report
            .iter()
            .filter(|r| sas.iter().any(|s| s.spi_in == r.spi_in))
            .cloned()
            .collect();
        Some(controlplane::ha::Snapshot {
            boot,
            seq,
            sent_ms: controlplane::ha::wall_ms(),
            sas,
            report,
            report_age_ms: self.report_at.elapsed().as_millis() as u64,
            ike: daemon.export(&|a| self.held.contains(&a), Instant::now()),
            vrrp: self.fresh_masters(),
        })
    }

    /// Replaces the on-demand policies (after a reload).
    fn set_traps(&mut self, new: Vec<(String, String, Vec<IpPrefix>, Vec<IpPrefix>)>) {
        for (t, c, _, _) in &self.traps {
            if !new.iter().any(|n| &n.0 == t && &n.1 == c) {
                self.command(&ctl::Command::Untrap {
                    v: ctl::VERSION,
                    tunnel: t.clone(),
                    child: c.clone(),
                });
            }
        }
        self.traps = new;
        self.send_traps();
    }

    fn send_traps(&self) {
        for (tunnel, child, l, r) in &self.traps {
            self.command(&ctl::Command::Trap {
                v: ctl::VERSION,
                tunnel: tunnel.clone(),
                child: child.clone(),
                local_ts: l.clone(),
                remote_ts: r.clone(),
            });
        }
    }

    fn command(&self, c: &ctl::Command) {
        let Some(ch) = &self.chan else {
            tracing::warn!("no data plane: command dropped");
            return;
        };
        match ch.producer(ctl::ring::COMMANDS) {
            Ok(mut p) => {
                if let Err(e) = p.push(&c.encode()) {
                    tracing::warn!("command ring: {e:?}");
                }
            }
            Err(e) => tracing::warn!("command ring: {e}"),
        }
    }

    fn send(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let Some(ch) = &self.chan else { return };
        let d = ctl::Datagram {
            local,
            remote,
            message: data,
        };
        if let Ok(mut p) = ch.producer(ctl::ring::INJECT) {
            if let Err(e) = p.push(&d.encode()) {
                tracing::warn!("inject ring: {e:?}");
            }
        }
    }

    fn recv(&mut self, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        let Some(ch) = &self.chan else { return };
        if let Ok(mut c) = ch.consumer(ctl::ring::PUNT) {
            while let Ok(Some(Some(x))) = c.pop_with(|b| {
                ctl::Datagram::decode(b).map(|d| (d.local, d.remote, d.message.to_vec()))
            }) {
                out.push(x);
            }
        }
        let mut events = Vec::new();
        if let Ok(mut c) = ch.consumer(ctl::ring::EVENTS) {
            while let Ok(Some(e)) = c.pop_with(ctl::Event::decode) {
                events.push(e);
            }
        }
        for e in events {
            match e {
                Ok(ctl::Event::Sas {
                    sas,
                    more,
                    report,
                    part,
                    at_ns,
                    workers,
                    ..
                }) => {
                    if workers > 0 {
                        self.workers = workers;
                    }
                    self.report_part((report, part, at_ns), sas, more)
                }
                Ok(ctl::Event::Acquire {
                    tunnel,
                    child,
                    src,
                    dst,
                    ..
                }) => {
                    tracing::info!(%tunnel, %child, %src, %dst, "acquire: traffic for an on-demand tunnel");
                    self.acquires.push(tunnel);
                }
                Ok(ctl::Event::Expired { spi_in, hard, .. }) => {
                    tracing::info!(spi_in = %format_args!("{spi_in:08x}"), hard, "CHILD_SA lifetime (bytes/packets) reached");
                    self.expired.push((spi_in, hard));
                }
                Ok(ctl::Event::Vrrp {
                    held,
                    standby,
                    mut masters,
                    ..
                }) => {
                    masters.truncate(ctl::SYNC_ADVERTS_MAX);
                    self.masters = masters;
                    self.masters_at = Some(Instant::now());
                    let any = !held.is_empty() || !standby.is_empty();
                    if any && !self.vrrp_seen {
                        tracing::info!(?held, ?standby, "VRRP: the data plane's virtual addresses");
                    }
                    self.vrrp_seen |= any;
                    self.held = held.into_iter().collect();
                    let standby: std::collections::HashSet<_> = standby.into_iter().collect();
                    let due = self.standby_given.as_ref().is_none_or(|(given, at)| {
                        *given != standby || at.elapsed() >= Duration::from_secs(1)
                    });
                    if due {
                        self.standby_given = Some((standby.clone(), Instant::now()));
                        self.standby = Some(standby);
                    }
                }
                Ok(ctl::Event::Refused { reason, .. }) => {
                    tracing::warn!("the data plane refused a command: {reason}")
                }
                Ok(ctl::Event::Hello {
                    generation,
                    workers,
                    ..
                }) => {
                    tracing::debug!(generation, workers, "data plane hello");
                    if workers > 0 {
                        self.workers = workers;
                    }
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }

    /// Installs a pair; returns whether its outbound half is in use now.
    fn install(&mut self, c: &ChildSaInstall) -> bool {
        // The peer made this pair, not as a rekey, while another of the same child sends:
        // a second IKE SA of its make-before-break reauthentication, whose IKE_AUTH answer
        // may not have reached it yet. The old pair keeps the outbound traffic until the
        // peer deletes it (or DEFER passes), so none reaches the peer before its new SA.
        let defer = c.outbound_now
            && !c.we_initiated
            && c.replaces.is_none()
            && !c.larval
            // A per-resource pair (RFC 9611) is no reauthentication's: its worker's slot
            // has nothing to wait for.
            && c.worker.is_none()
            && self
                .installed
                .values()
                .any(|s| self.sends_for(s, &c.tunnel, &c.child));
        let outbound_now = c.outbound_now && !defer;
        if defer {
            self.deferred.push((Instant::now() + DEFER, c.spi_in));
        }
        let sa = ctl::ChildSa {
            tunnel: c.tunnel.clone(),
            child: c.child.clone(),
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            cipher: c.encr.esp_cipher(),
            integrity: c
                .integ
                .map_or(dataplane::crypto::Integrity::None, |i| i.esp_integrity()),
            esn: c.esn,
            enc_in: ctl::hex(&c.enc_in),
            auth_in: ctl::hex(&c.auth_in),
            enc_out: ctl::hex(&c.enc_out),
            auth_out: ctl::hex(&c.auth_out),
            local: c.local.ip(),
            remote: c.remote.ip(),
            udp_encap: c.udp_encap.then_some(dataplane::sa::UdpEncap {
                local_port: c.local.port(),
                remote_port: c.remote.port(),
            }),
            mode: c.mode,
            local_ts: c.local_ts.iter().flat_map(export::ts_prefixes).collect(),
            remote_ts: c.remote_ts.iter().flat_map(export::ts_prefixes).collect(),
            outbound_now,
            replay_window: 1024,
            lifetime: c.lifetime,
            larval: c.larval,
            out_seq_from: 0,
            in_seq_from: 0,
            worker: c.worker,
        };
        self.command(&ctl::Command::Add {
            v: ctl::VERSION,
            sa: Box::new(sa.clone()),
        });
        self.installed.insert(c.spi_in, sa);
        if c.larval {
            return outbound_now;
        }
        self.replaced_at
            .entry((c.tunnel.clone(), c.child.clone()))
            .or_insert_with(Instant::now);
        outbound_now
    }

    /// Forgets the SA pair; the data plane drops it [`LINGER`] later ([`ChanIo::retire_stale`]).
    /// Pairs deferred behind it whose child no longer has another sending pair take over.
    fn remove(&mut self, spi_in: u32) -> Vec<u32> {
        let gone = self.installed.remove(&spi_in);
        // A per-resource pair with no successor in its worker's slot stops sending at once:
        // while it lingered, its worker would go on sealing with an SA the peer has deleted,
        // where the fallback can carry that worker's traffic. Its inbound half lingers.
        let orphan = gone.as_ref().is_some_and(|g| {
            g.worker.is_some()
                && !self
                    .installed
                    .values()
                    .any(|s| (&s.tunnel, &s.child, s.worker) == (&g.tunnel, &g.child, g.worker))
        });
        if orphan {
            self.command(&ctl::Command::Deactivate {
                v: ctl::VERSION,
                spi_in,
            });
            self.deactivated += 1;
        }
        self.lingering.push((Instant::now() + LINGER, spi_in));
        // Only pairs of the same child wait on this one.
        let Some(gone) = gone else {
            return Vec::new();
        };
        let free: Vec<u32> = self
            .deferred
            .iter()
            .map(|&(_, d)| d)
            .filter(|d| {
                self.installed.get(d).is_some_and(|n| {
                    n.tunnel == gone.tunnel
                        && n.child == gone.child
                        && !self
                            .installed
                            .values()
                            .any(|s| self.sends_for(s, &n.tunnel, &n.child))
                })
            })
            .collect();
        self.take_deferred(&free)
    }

    /// Whether installed pair `s` carries the outbound traffic of (`tunnel`, `child`) for an
    /// IKE SA of ours: sending, not inbound-only, and not a pair left by an earlier
    /// incarnation or taken over from the other gateway (those go when the tunnel's own new
    /// pair is in, and must not hold it back).
    fn sends_for(&self, s: &ctl::ChildSa, tunnel: &str, child: &str) -> bool {
        s.outbound_now
            && !s.larval
            // A per-resource pair serves its worker only: the child's own traffic is the
            // fallback's.
            && s.worker.is_none()
            && s.tunnel == tunnel
            && s.child == child
            && !self.stale.iter().any(|x| x.spi_in == s.spi_in)
    }

    /// Starts sending on deferred pairs (those of `spis`, and any whose time is up); returns
    /// them. Pairs no longer installed are forgotten.
    fn take_deferred(&mut self, spis: &[u32]) -> Vec<u32> {
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .filter(|(_, d)| self.installed.contains_key(d))
            .partition(|(t, d)| *t <= now || spis.contains(d));
        self.deferred = keep;
        let due: Vec<u32> = due.into_iter().map(|(_, d)| d).collect();
        for &d in &due {
            self.activate(d);
        }
        due
    }

    /// Removes from the data plane the deleted SA pairs whose time is up (all with `all`).
    fn remove_lingering(&mut self, all: bool) {
        let now = Instant::now();
        let (due, keep) = std::mem::take(&mut self.lingering)
            .into_iter()
            .partition(|(t, _)| all || *t <= now);
        self.lingering = keep;
        for (_, spi_in) in due {
            self.command(&ctl::Command::Remove {
                v: ctl::VERSION,
                spi_in,
            });
        }
    }

    fn moved(&mut self, spi_in: u32, remote: SocketAddr) {
        if let Some(sa) = self.installed.get_mut(&spi_in) {
            sa.remote = remote.ip();
            if let Some(u) = &mut sa.udp_encap {
                u.remote_port = remote.port();
            }
        }
        self.command(&ctl::Command::Move {
            v: ctl::VERSION,
            spi_in,
            remote: remote.ip(),
            remote_port: remote.port(),
        });
    }

    fn activate(&mut self, spi_in: u32) {
        if let Some(sa) = self.installed.get_mut(&spi_in) {
            sa.outbound_now = true;
        }
        self.command(&ctl::Command::Activate {
            v: ctl::VERSION,
            spi_in,
        });
    }

    /// The data plane's last counters by inbound SPI.
    fn counters(&self) -> controlplane::mgmt::Counters {
        self.report
            .iter()
            .map(|r| {
                (
                    r.spi_in,
                    (r.in_bytes, r.in_packets, r.out_bytes, r.out_packets),
                )
            })
            .collect()
    }

    /// Retires the SA pairs of an earlier incarnation 5 s after their replacement is in, and
    /// deleted ones whose linger time is over; deferred pairs whose wait is over send (an
    /// event says so).
    fn retire_stale(&mut self) {
        self.remove_lingering(false);
        for spi in self.take_deferred(&[]) {
            tracing::info!(spi_in = %format_args!("{spi:08x}"),
                "a pair the peer made beside another sends now (the other was not deleted within 2 s)");
            if let Some(s) = self.installed.get(&spi) {
                outbound_event(&s.tunnel, spi, s.spi_out, Some("timeout".into()));
            }
        }
        let due: Vec<u32> = self
            .stale
            .iter()
            .filter(|s| {
                self.replaced_at
                    .get(&(s.tunnel.clone(), s.child.clone()))
                    .is_some_and(|t| t.elapsed() >= Duration::from_secs(5))
            })
            .map(|s| s.spi_in)
            .collect();
        for spi in due {
            tracing::info!(spi_in = %format_args!("{spi:08x}"), "removing an SA pair left by an earlier ferrogate-ike");
            self.command(&ctl::Command::Remove {
                v: ctl::VERSION,
                spi_in: spi,
            });
            self.stale.retain(|s| s.spi_in != spi);
            self.installed.remove(&spi);
        }
    }
}

/// The IKE SAs of `snap` (received at `received_at`) a new master carries on for the addresses
/// it took: those of a snapshot at most [`HA_IKE_MAX_AGE`] old.
fn carried_ike(
    snap: &controlplane::ha::Snapshot,
    taken: &std::collections::HashSet<std::net::IpAddr>,
    received_at: Option<Instant>,
) -> Vec<controlplane::ike::sa::IkeSaState> {
    let recent = received_at.is_some_and(|t| t.elapsed() <= HA_IKE_MAX_AGE);
    if !recent && !snap.ike.is_empty() {
        tracing::warn!(
            "HA: the other gateway's last snapshot is over {} s old: its IKE SAs are not carried on",
            HA_IKE_MAX_AGE.as_secs()
        );
        return Vec::new();
    }
    snap.ike
        .iter()
        .filter(|s| taken.contains(&s.local.ip()))
        .cloned()
        .collect()
}

/// `sa` as it is installed again: its inbound window as having seen what `report` says was
/// seen, and its outbound numbering past what `report` says was used, `secs` seconds ago (or
/// inbound only when no safe number is known).
fn carried_on(mut sa: ctl::ChildSa, report: &[ctl::SaReport], secs: u64) -> ctl::ChildSa {
    let report = report
        .iter()
        .find(|r| r.spi_in == sa.spi_in && r.spi_out == sa.spi_out);
    // The inbound window: as having seen what the old one had (as of the report).
    if let Some(top) = report.and_then(|r| r.in_seq) {
        sa.in_seq_from = sa.in_seq_from.max(top);
    }
    if sa.larval {
        return sa;
    }
    // A report without the number (an older data plane) says nothing of what was sent.
    let from = report
        .and_then(|r| r.out_seq)
        .and_then(|reported| sa.continue_after(reported, secs));
    match from {
        Some(n) => {
            tracing::info!(spi_out = %format_args!("{:08x}", sa.spi_out), from = n,
                "reinstalled: outbound sequence numbers go on past what was used");
            sa.out_seq_from = n;
        }
        None => {
            tracing::warn!(spi_out = %format_args!("{:08x}", sa.spi_out),
                "reinstalled inbound only: no safe outbound sequence number is known");
            sa.larval = true;
        }
    }
    sa
}

/// The sync link to the other gateway of a VRRP pair (`ha:`).
struct HaSync {
    cfg: controlplane::config::HaConfig,
    sock: UdpSocket,
    /// This incarnation, and the number of its last snapshot.
    boot: u64,
    seq: u64,
    last_sent: Instant,
    /// The inbound SPIs of the last snapshot sent, and what its IKE SAs' SPIs and message
    /// IDs came to ([`Daemon::export_digest`]): a change of either goes out at once.
    sent_spis: Vec<u32>,
    sent_ike: u64,
    fresh: controlplane::ha::Freshness,
    /// The parts of the other gateway's snapshot in progress.
    assembly: controlplane::ha::Assembly,
    /// How many datagrams the last snapshot queued took.
    parts_sent: usize,
    /// Its datagrams not sent yet: [`HA_PACE`] go out each pass of the main loop (fewer if
    /// the socket's buffer is full); the next snapshot waits for them.
    queue: std::collections::VecDeque<Vec<u8>>,
    /// The other gateway's newest snapshot, and when it came.
    theirs: Option<controlplane::ha::Snapshot>,
    received_at: Option<Instant>,
    /// Snapshots queued (each goes out whole, paced, before the next is made).
    sent: u64,
    /// The VRRP masters of the other gateway's newest snapshot, for our data plane (taken by
    /// the main loop).
    their_masters: Option<Vec<ctl::VrrpMaster>>,
    /// How late the other gateway's snapshots usually come (clock offset and transit).
    lateness: Lateness,
    /// Receive buffer (one datagram).
    buf: Vec<u8>,
    /// Datagrams ignored (foreign, not opening, our own reflected) since the last warning,
    /// and when that was: one warning a second at most, however many come.
    ignored: (u64, Option<Instant>),
}

/// Sync datagrams read in one pass of the main loop at most: a flood on the sync link must
/// not hold up IKE.
const HA_RECV_MAX: usize = 64;

/// How late the other gateway's snapshots come by our clock (`now - sent_ms`: the clocks'
/// offset plus transit): the least seen, let up by 1 ms a second (clock drift), is the usual.
#[derive(Default)]
struct Lateness {
    /// The least lateness and when it was seen (our wall clock, ms).
    least: Option<(i64, u64)>,
}

/// A snapshot's VRRP word is used only when it comes at most this much later than usual.
const VRRP_WORD_LATE_MS: i64 = 1_000;

impl Lateness {
    /// Notes a snapshot sent at `sent_ms` and taken at `now` (wall clock, ms); whether it is
    /// no later than [`VRRP_WORD_LATE_MS`] past the usual.
    fn fresh(&mut self, now: u64, sent_ms: u64) -> bool {
        let late = now as i64 - sent_ms as i64;
        let usual = match self.least {
            Some((least, at)) => least.saturating_add((now.saturating_sub(at) / 1000) as i64),
            None => late,
        };
        if late <= usual {
            self.least = Some((late, now));
        }
        late - usual.min(late) <= VRRP_WORD_LATE_MS
    }
}

/// How long the data plane's word on which VRRP routers it is master of is put into the sync
/// snapshot (it says so every 100 ms while master of any).
const VRRP_MASTERS_FRESH: Duration = Duration::from_millis(300);

/// How often the master sends its snapshot when nothing changed.
const HA_EVERY: Duration = Duration::from_millis(500);
/// The oldest snapshot whose IKE SAs a new master carries on (its pairs are installed
/// whatever its age): twenty missed snapshots mean the sync link is down.
const HA_IKE_MAX_AGE: Duration = Duration::from_secs(10);
/// Most sync datagrams sent per pass of the main loop (~2 ms): the other gateway reads its
/// socket as often, and a whole large snapshot at once would overflow its receive buffer
/// (Linux's default holds ~90 such datagrams). 32 a pass: 1000 pairs in ~65 ms.
const HA_PACE: usize = 32;

impl HaSync {
    fn bind(cfg: &controlplane::config::HaConfig) -> Result<HaSync, String> {
        let sock =
            UdpSocket::bind(cfg.local).map_err(|e| format!("ha: bind {}: {e}", cfg.local))?;
        sock.set_nonblocking(true).map_err(|e| format!("ha: {e}"))?;
        let boot = u64::from_be_bytes(
            controlplane::ike::crypto::random_bytes(8)
                .try_into()
                .unwrap_or([1; 8]),
        );
        Ok(HaSync {
            cfg: cfg.clone(),
            sock,
            boot,
            seq: 0,
            last_sent: Instant::now() - HA_EVERY,
            sent_spis: Vec::new(),
            sent_ike: 0,
            fresh: Default::default(),
            assembly: Default::default(),
            parts_sent: 0,
            queue: Default::default(),
            theirs: None,
            received_at: None,
            sent: 0,
            their_masters: None,
            lateness: Lateness::default(),
            buf: vec![0u8; 65_536],
            ignored: (0, None),
        })
    }

    /// For `fgctl ha`.
    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "local": self.cfg.local.to_string(),
            "remote": self.cfg.remote.to_string(),
            "sent": self.sent,
            "datagrams_per_snapshot": self.parts_sent,
            "last_sent_ms_ago": (self.sent > 0).then(|| self.last_sent.elapsed().as_millis() as u64),
            "their_pairs": self.theirs.as_ref().map_or(0, |t| t.sas.len()),
            "their_ike_sas": self.theirs.as_ref().map_or(0, |t| t.ike.len()),
            "last_received_ms_ago": self.received_at.map(|t| t.elapsed().as_millis() as u64),
        })
    }

    /// Takes what the other gateway sent (only from its configured address).
    /// Counts an ignored datagram; warns (with how many) at most once a second.
    fn ignore(&mut self, why: std::fmt::Arguments<'_>) {
        self.ignored.0 += 1;
        if self
            .ignored
            .1
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(count = self.ignored.0, "HA: sync datagram ignored: {why}");
            self.ignored = (0, Some(Instant::now()));
        }
    }

    fn recv(&mut self) {
        for _ in 0..HA_RECV_MAX {
            let Ok((n, from)) = self.sock.recv_from(&mut self.buf) else {
                return;
            };
            if from != self.cfg.remote {
                self.ignore(format_args!("from an unknown address, {from}"));
                continue;
            }
            match controlplane::ha::open(&self.cfg.key, &self.buf[..n]) {
                Ok(part) => {
                    let now = controlplane::ha::wall_ms();
                    // Sync takes snapshots sent within 30 s by our clock: gateways whose
                    // clocks differ by more get none, which must not go unnoticed.
                    let off = part.sent_ms.abs_diff(now);
                    if off > controlplane::ha::MAX_AGE_MS {
                        let dir = if part.sent_ms > now {
                            "ahead of"
                        } else {
                            "behind"
                        };
                        self.ignore(format_args!(
                            "sent by a clock {:.1} s {dir} ours: the sync needs the gateways' clocks within {} s (NTP)",
                            off as f64 / 1000.0,
                            controlplane::ha::MAX_AGE_MS / 1000
                        ));
                        continue;
                    }
                    let Some(snap) = self.assembly.push(part, &self.fresh, now) else {
                        continue;
                    };
                    // Both gateways share the key: our own snapshot sent back to us (a
                    // reflection) would pass for the other gateway's.
                    if snap.boot == self.boot {
                        self.ignore(format_args!("our own snapshot, reflected"));
                        continue;
                    }
                    if self.fresh.take(&snap, now) {
                        let changed = self.theirs.as_ref().is_none_or(|t| {
                            t.sas
                                .iter()
                                .map(|s| s.spi_in)
                                .ne(snap.sas.iter().map(|s| s.spi_in))
                        });
                        if changed {
                            tracing::info!(
                                pairs = snap.sas.len(),
                                "HA: the other gateway's SA pairs"
                            );
                        }
                        // The VRRP word only while it is news: a snapshot that took longer
                        // than usual to come (a long one, paced; a congested link) would
                        // hold our routers back for a master that may be gone.
                        if self.lateness.fresh(now, snap.sent_ms) {
                            self.their_masters = Some(snap.vrrp.clone());
                        }
                        self.theirs = Some(snap);
                        self.received_at = Some(Instant::now());
                    }
                }
                Err(e) => self.ignore(format_args!("{e}")),
            }
        }
    }

    /// Sends up to [`HA_PACE`] queued datagrams (fewer if the socket's buffer is full).
    fn flush(&mut self) {
        for _ in 0..HA_PACE {
            let Some(b) = self.queue.front() else {
                return;
            };
            match self.sock.send_to(b, self.cfg.remote) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => tracing::debug!("HA: send: {e}"),
            }
            self.queue.pop_front();
        }
    }

    /// Sends this gateway's snapshot while it holds VRRP addresses: every [`HA_EVERY`], and at
    /// once when its SA pairs or its IKE SAs' message IDs change.
    fn send(&mut self, ch: &ChanIo, daemon: &Daemon) {
        if ch.held.is_empty() {
            // Not (or no longer) the master: nothing of ours is worth sending.
            self.queue.clear();
            return;
        }
        // A snapshot still going out is finished first (one replacing it would make the
        // other gateway start over); the newest state follows it.
        self.flush();
        if !self.queue.is_empty() {
            return;
        }
        let ike = daemon.export_digest(&|a| ch.held.contains(&a));
        if self.last_sent.elapsed() < HA_EVERY
            && ike == self.sent_ike
            && ch
                .installed
                .keys()
                .copied()
                .eq(self.sent_spis.iter().copied())
        {
            return;
        }
        let Some(snap) = ch.snapshot(self.boot, self.seq + 1, daemon) else {
            return;
        };
        match controlplane::ha::seal(&self.cfg.key, &snap) {
            Ok(parts) => {
                // Out from the next pass on, HA_PACE at a time.
                self.parts_sent = parts.len();
                self.queue = parts.into();
                self.sent += 1;
            }
            Err(e) => tracing::warn!("HA: snapshot not sent: {e}"),
        }
        self.seq += 1;
        self.last_sent = Instant::now();
        self.sent_spis = ch.installed.keys().copied().collect();
        self.sent_ike = ike;
    }
}

enum Io {
    Sockets(SocketIo),
    Channel(Box<ChanIo>),
}

impl Io {
    fn send(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        match self {
            Io::Sockets(s) => s.send(local, remote, data),
            Io::Channel(c) => c.send(local, remote, data),
        }
    }
    fn recv(&mut self, out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
        match self {
            Io::Sockets(s) => s.recv(out),
            Io::Channel(c) => c.recv(out),
        }
    }
}

/// The `child-outbound` event: the pair (`spi_in`, `spi_out`) carries the outbound traffic
/// now; `after`: what it waited for (the inbound SPI of the pair whose removal freed it, or
/// "timeout"), if it was deferred.
fn outbound_event(tunnel: &str, spi_in: u32, spi_out: u32, after: Option<String>) {
    let mut e = serde_json::json!({
        "event": "child-outbound", "tunnel": tunnel,
        "spi_in": format!("{spi_in:08x}"), "spi_out": format!("{spi_out:08x}"),
    });
    if let Some(a) = after {
        e["after"] = a.into();
    }
    event(e);
}

fn carry_out(actions: Vec<Action>, io: &mut Io, ex: &mut Exporter) {
    // New SAs go to the data plane before any datagram of the same batch: the response that
    // completes an exchange lets the peer use the new SA at once, and the data plane applies
    // the commands it has before it sends the datagrams it has. (Sent first, a responder's
    // CREATE_CHILD_SA or IKE_AUTH answer could bring ESP under an SPI not installed yet.)
    // Removals come next: a removed pair stays in the data plane a while ([`LINGER`]), and a
    // pair deferred behind it must send before our answer to the peer's delete goes out,
    // since the peer drops the old SA when that answer arrives.
    let (installs, rest): (Vec<Action>, Vec<Action>) = actions
        .into_iter()
        .partition(|a| matches!(a, Action::Install(_)));
    let (removes, rest): (Vec<Action>, Vec<Action>) = rest
        .into_iter()
        .partition(|a| matches!(a, Action::Remove { .. }));
    for a in installs.into_iter().chain(removes).chain(rest) {
        match a {
            Action::Send {
                local,
                remote,
                data,
            } => io.send(local, remote, &data),
            Action::Install(c) => {
                let mut outbound_now = c.outbound_now;
                if let Io::Channel(ch) = io {
                    outbound_now = ch.install(&c);
                }
                if c.larval {
                    continue;
                }
                ex.install(&c);
                event(serde_json::json!({
                    "event": "child-up", "tunnel": c.tunnel, "child": c.child,
                    "spi_in": format!("{:08x}", c.spi_in), "spi_out": format!("{:08x}", c.spi_out),
                    "encr": c.encr.name(), "integ": c.integ.map(|i| i.name()), "udp_encap": c.udp_encap,
                    "replaces": c.replaces.map(|s| format!("{s:08x}")), "outbound_now": outbound_now,
                    "worker": c.worker,
                }));
            }
            Action::Remove {
                tunnel,
                child,
                spi_in,
                spi_out,
            } => {
                ex.remove(&tunnel, spi_in);
                if let Io::Channel(ch) = io {
                    for n in ch.remove(spi_in) {
                        let spi_out = ch.installed.get(&n).map_or(0, |s| s.spi_out);
                        outbound_event(&tunnel, n, spi_out, Some(format!("{spi_in:08x}")));
                    }
                }
                if spi_out == 0 {
                    continue; // a larval SA whose exchange failed
                }
                event(serde_json::json!({
                    "event": "child-down", "tunnel": tunnel, "child": child,
                    "spi_in": format!("{spi_in:08x}"), "spi_out": format!("{spi_out:08x}"),
                }));
            }
            Action::Activate {
                tunnel,
                spi_in,
                spi_out,
            } => {
                if let Io::Channel(ch) = io {
                    ch.activate(spi_in);
                }
                outbound_event(&tunnel, spi_in, spi_out, None);
            }
            Action::Established {
                tunnel,
                algorithms,
                nat,
                peer_id,
                ..
            } => {
                event(
                    serde_json::json!({"event": "ike-up", "tunnel": tunnel, "algorithms": algorithms, "nat": nat, "peer_id": peer_id}),
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
            Action::PeerMoved {
                tunnel,
                spis_in,
                remote,
                ..
            } => {
                if let Io::Channel(ch) = io {
                    for spi_in in &spis_in {
                        ch.moved(*spi_in, remote);
                    }
                }
                event(
                    serde_json::json!({"event": "peer-moved", "tunnel": tunnel, "remote": remote.to_string()}),
                );
            }
            // The daemon takes these itself.
            Action::Spawn(_)
            | Action::MoveChildren { .. }
            | Action::FetchRevocation { .. }
            | Action::Reauthenticate { .. } => {}
        }
    }
}

fn main() -> ExitCode {
    let args = parse_args();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    writer::start();
    // What is queued still reaches the files when main returns (after the polite shutdown's
    // events) or panics.
    let _flush = writer::FlushOnDrop;
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
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("ferrogate-ike: signal handler: {e}");
            return ExitCode::from(1);
        }
    }
    let mut daemon = Daemon::new(&config);
    let mut io = match &args.dataplane {
        Some(path) => {
            // Wait for the data plane, then learn what it still holds from an earlier
            // ferrogate-ike: those tunnels come back without INITIAL_CONTACT (the peer keeps the
            // old SAs, which keep carrying traffic), and the old pairs are removed once the new
            // ones are in.
            let mut ch = ChanIo::new(path.clone());
            ch.traps = traps_of(&config);
            let deadline = Instant::now() + Duration::from_secs(30);
            while ch.chan.is_none() && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                ch.maintain();
                std::thread::sleep(Duration::from_millis(50));
            }
            if ch.chan.is_none() {
                eprintln!(
                    "ferrogate-ike: no data plane at {} (is ferrogate --control running?)",
                    path.display()
                );
                return ExitCode::from(1);
            }
            ch.command(&ctl::Command::Dump { v: ctl::VERSION });
            let until = Instant::now() + Duration::from_secs(2);
            let mut scratch = Vec::new();
            // The report, and with VRRP which addresses are ours (every second), before any
            // tunnel starts.
            while Instant::now() < until && !(ch.report_seen && ch.standby.is_some()) {
                ch.recv(&mut scratch);
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(s) = ch.standby.take() {
                let _ = daemon.set_standby(s, Instant::now());
            }
            ch.stale = ch.report.clone();
            for s in &ch.stale {
                tracing::info!(tunnel = %s.tunnel, spi_in = %format_args!("{:08x}", s.spi_in), "the data plane still holds an SA pair from an earlier ferrogate-ike");
                daemon.without_initial_contact(&s.tunnel);
            }
            Io::Channel(Box::new(ch))
        }
        None => match SocketIo::bind(&config) {
            Ok(io) => Io::Sockets(io),
            Err(e) => {
                eprintln!("ferrogate-ike: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let mut ha = match (&config.ha, &io) {
        (Some(h), Io::Channel(_)) => match HaSync::bind(h) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("ferrogate-ike: {e}");
                return ExitCode::from(1);
            }
        },
        (Some(_), Io::Sockets(_)) => {
            eprintln!(
                "ferrogate-ike: `ha:` needs --dataplane (the SAs it syncs are the data plane's)"
            );
            return ExitCode::from(1);
        }
        (None, _) => None,
    };
    let mut ex = Exporter {
        dir: args.export_dir.clone(),
        children: BTreeMap::new(),
    };
    let mgmt = match &args.socket {
        Some(p) => match Mgmt::bind(p) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("ferrogate-ike: management socket {e}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    carry_out(daemon.start(Instant::now()), &mut io, &mut ex);
    let mut inbox = Vec::new();
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Io::Channel(ch) = &mut io {
            if ch.maintain() {
                // The reinstalled SAs go on numbering past what was reported used (or are
                // inbound only), but their inbound replay windows start afresh and the jump
                // spends sequence space: new SAs, at once.
                let acts = daemon.rekey_all_children(Instant::now());
                carry_out(acts, &mut io, &mut ex);
            }
        }
        io.recv(&mut inbox);
        let now = Instant::now();
        if let Io::Channel(ch) = &mut io {
            ch.alive();
            daemon.set_resources(ch.workers);
            let acq = std::mem::take(&mut ch.acquires);
            let exp = std::mem::take(&mut ch.expired);
            let standby = ch.standby.take();
            for t in acq {
                let acts = daemon.acquire(&t, now);
                carry_out(acts, &mut io, &mut ex);
            }
            for (spi, hard) in exp {
                let acts = daemon.child_expired(spi, hard, now);
                carry_out(acts, &mut io, &mut ex);
            }
            if let Some(s) = standby {
                // Addresses taken over: the other gateway's synced SA pairs go in first, so
                // that traffic flows before the new IKE SA is up.
                let taken: std::collections::HashSet<std::net::IpAddr> =
                    daemon.standby().difference(&s).copied().collect();
                let mut adopted = Vec::new();
                if let (false, Some(snap), Io::Channel(ch)) = (
                    taken.is_empty(),
                    ha.as_ref().and_then(|h| h.theirs.as_ref()),
                    &mut io,
                ) {
                    adopted = ch.adopt(snap, &taken, |sa| {
                        daemon.knows_child(&sa.tunnel, &sa.child, sa.local)
                    });
                    // Their IKE SAs carry on here: the peer sees no new IKE SA, and their
                    // CHILD_SAs (the pairs just installed) are rekeyed through them. Not from a
                    // snapshot that stopped coming (the sync link is down): its message IDs
                    // and SAs are likely behind; a new IKE SA is negotiated instead.
                    let ike = carried_ike(snap, &taken, ha.as_ref().and_then(|h| h.received_at));
                    let elapsed = Duration::from_millis(
                        controlplane::ha::wall_ms().saturating_sub(snap.sent_ms),
                    );
                    let restored =
                        daemon.restore(&ike, elapsed, &|spi| ch.installed.contains_key(&spi), now);
                    let kept: std::collections::HashSet<u32> = daemon
                        .sas()
                        .filter(|sa| restored.contains(&sa.cfg.name))
                        .flat_map(|sa| sa.children.iter().map(|c| c.spi_in))
                        .collect();
                    ch.stale.retain(|s| !kept.contains(&s.spi_in));
                    for t in restored {
                        event(serde_json::json!({"event": "ike-synced", "tunnel": t}));
                    }
                }
                let given: std::collections::HashSet<std::net::IpAddr> =
                    s.difference(daemon.standby()).copied().collect();
                let acts = daemon.set_standby(s, now);
                carry_out(acts, &mut io, &mut ex);
                if let (false, Io::Channel(ch)) = (given.is_empty(), &mut io) {
                    ch.give_up(&given);
                }
                // Tunnels not started at boot still get a new IKE SA for the pairs taken over.
                for t in adopted {
                    if !daemon.sas().any(|sa| sa.cfg.name == t) {
                        if let Some(acts) = daemon.initiate_by_name(&t, now) {
                            carry_out(acts, &mut io, &mut ex);
                        }
                    }
                }
            }
        }
        if let (Some(h), Io::Channel(ch)) = (&mut ha, &io) {
            h.recv();
            if let Some(m) = h.their_masters.take() {
                ch.sync_adverts(m);
            }
            h.send(ch, &daemon);
        }
        let busy = !inbox.is_empty();
        for (local, remote, data) in inbox.drain(..) {
            let acts = daemon.handle(now, local, remote, &data);
            carry_out(acts, &mut io, &mut ex);
        }
        if let Some(m) = &mgmt {
            m.serve(&mut daemon, &mut io, &mut ex, &args.config, ha.as_ref());
        }
        // Timers every 20 ms: retransmission timeouts follow the measured round trip (from
        // 100 ms up), so they need a finer clock than rekeys and DPD do.
        if now.duration_since(last_tick) >= Duration::from_millis(20) {
            last_tick = now;
            carry_out(daemon.tick(now), &mut io, &mut ex);
            if let Io::Channel(ch) = &mut io {
                ch.retire_stale();
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // Polite shutdown: send the deletes and give the peers a moment to answer.
    let now = Instant::now();
    carry_out(daemon.shutdown(now), &mut io, &mut ex);
    let until = now + Duration::from_millis(500);
    while Instant::now() < until {
        io.recv(&mut inbox);
        for (local, remote, data) in inbox.drain(..) {
            let acts = daemon.handle(Instant::now(), local, remote, &data);
            carry_out(acts, &mut io, &mut ex);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Io::Channel(ch) = &mut io {
        ch.remove_lingering(true);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot's VRRP word counts only when it comes no later than usual (helper-54: one
    /// delayed by pacing or congestion held the other gateway's routers for a master that may
    /// be gone): the usual is the least lateness seen, let up for clock drift.
    #[test]
    fn late_snapshots_carry_no_vrrp_word() {
        let mut l = Lateness::default();
        // The clocks differ by 5 s; transit 3 ms.
        let off = 5_000;
        assert!(l.fresh(1_000_000 + off, 1_000_000 - 3));
        assert!(l.fresh(1_000_500 + off, 1_000_500 - 1));
        assert!(
            l.fresh(1_001_000 + off, 1_001_000 - 800),
            "0.8 s late: still news"
        );
        assert!(
            !l.fresh(1_001_500 + off, 1_001_500 - 1_200),
            "1.2 s late: not"
        );
        assert!(l.fresh(1_002_000 + off, 1_002_000 - 2));
        // A clock that drifts 0.5 ms a second is followed.
        let t = 1_002_000 + 600_000;
        assert!(l.fresh(t + off + 300, t));
    }

    /// A CHILD_SA of tunnel `t`, child `c`, as an IKE SA hands it over.
    fn pair(spi_in: u32, we_initiated: bool, replaces: Option<u32>) -> ChildSaInstall {
        let key = || zeroize::Zeroizing::new(vec![7u8; 36]);
        ChildSaInstall {
            tunnel: "t".into(),
            child: "c".into(),
            spi_in,
            spi_out: spi_in + 0x1000,
            encr: controlplane::ike::proposal::Encr::AesGcm256,
            integ: None,
            esn: false,
            enc_in: key(),
            auth_in: key(),
            enc_out: key(),
            auth_out: key(),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            local: "203.0.113.1:4500".parse().unwrap(),
            remote: "203.0.113.2:4500".parse().unwrap(),
            udp_encap: false,
            mode: controlplane::dataplane::sa::Mode::Tunnel,
            replaces,
            lifetime: Default::default(),
            outbound_now: we_initiated || replaces.is_none(),
            we_initiated,
            larval: false,
            worker: None,
        }
    }

    /// strongSwan's make-before-break reauthentication: a second IKE SA whose CHILD_SA the
    /// peer made beside ours. Its outbound half waits until the peer deletes the old pair
    /// (before our answer to that delete goes out), or [`DEFER`]; a pair alone, ours, or a
    /// rekey follows the IKE SA's word.
    #[test]
    fn a_pair_the_peer_makes_beside_a_sending_one_waits_for_the_old_ones_delete() {
        let mut io = ChanIo::new(PathBuf::from("/nonexistent/channel"));
        assert!(io.install(&pair(1, false, None)), "alone: sends at once");
        assert!(!io.install(&pair(2, false, None)), "beside 1: waits");
        assert!(!io.installed[&2].outbound_now);
        assert!(
            io.install(&pair(3, true, None)),
            "ours: the peer had it first"
        );
        let rekey = pair(4, false, Some(3));
        assert!(
            !io.install(&rekey),
            "a rekey's responder waits for the IKE SA's word"
        );
        assert!(io.deferred.iter().all(|&(_, s)| s == 2));
        // 3 still sends: removing 1 frees nothing.
        assert_eq!(io.remove(1), Vec::<u32>::new());
        assert!(!io.installed[&2].outbound_now);
        assert_eq!(io.remove(3), vec![2]);
        assert!(io.installed[&2].outbound_now);
        assert!(io.deferred.is_empty());
        // A duplicate the peer keeps sends after DEFER anyway.
        assert!(!io.install(&pair(5, false, None)));
        io.retire_stale();
        assert!(!io.installed[&5].outbound_now, "not before its time");
        io.deferred[0].0 = Instant::now() - Duration::from_millis(1);
        io.retire_stale();
        assert!(io.installed[&5].outbound_now && io.deferred.is_empty());
        // Only the removal of a pair of the same child frees one.
        assert!(!io.install(&pair(8, false, None)));
        let mut other = pair(7, true, None);
        other.child = "d".into();
        assert!(io.install(&other));
        assert_eq!(io.remove(7), Vec::<u32>::new());
        assert!(!io.installed[&8].outbound_now);
        assert_eq!(io.remove(2), Vec::<u32>::new(), "5 still sends");
        assert_eq!(io.remove(5), vec![8]);
        // A deferred pair removed before its turn is forgotten.
        assert!(!io.install(&pair(6, false, None)));
        assert_eq!(io.remove(6), Vec::<u32>::new());
        assert!(io.deferred.is_empty());
    }

    /// Per-resource pairs (RFC 9611): one the peer makes beside the fallback is its worker's
    /// at once (no reauthentication deferral); one deleted with no successor in its worker's
    /// slot leaves the data plane at once (its worker falls back), a rekeyed one lingers.
    #[test]
    fn per_resource_pairs_neither_wait_nor_linger_without_cause() {
        let mut io = ChanIo::new(PathBuf::from("/nonexistent/channel"));
        assert!(io.install(&pair(1, false, None)), "the fallback");
        let mut w1 = pair(2, false, None);
        w1.worker = Some(1);
        assert!(io.install(&w1), "worker 1's, made by the peer: no deferral");
        assert!(io.deferred.is_empty());
        let mut rekey = pair(3, true, Some(2));
        rekey.worker = Some(1);
        assert!(io.install(&rekey));
        io.remove(2);
        assert_eq!(
            (io.lingering.len(), io.deactivated),
            (1, 0),
            "rekeyed: lingers for ESP in flight, its successor sends"
        );
        io.remove(3);
        assert_eq!(
            (io.lingering.len(), io.deactivated),
            (2, 1),
            "the last of worker 1's: stops sending at once, its inbound half lingers"
        );
        io.remove(1);
        assert_eq!((io.lingering.len(), io.deactivated), (3, 1));
        // A per-resource pair does not hold back a pair the peer makes beside the fallback
        // (a reauthentication's): the fallback's removal frees it.
        assert!(io.install(&pair(10, false, None)));
        let mut w0 = pair(11, true, None);
        w0.worker = Some(0);
        assert!(io.install(&w0));
        assert!(!io.install(&pair(12, false, None)), "beside 10: waits");
        assert_eq!(io.remove(10), vec![12]);
    }

    /// A FIFO stands for a file system that does not answer: opening it for writing waits
    /// until a reader opens it. Jobs queued behind it must not wait, must run in order once it
    /// answers, and a flush must wait for them.
    #[test]
    fn the_writer_never_makes_the_event_loop_wait_for_the_file_system() {
        let dir = std::env::temp_dir().join(format!("fg-ike-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("stuck");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let w = writer::Writer::spawn().unwrap();
        let opened = Arc::new(AtomicBool::new(false));
        let reader = {
            let (fifo, opened) = (fifo.clone(), opened.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                opened.store(true, Ordering::SeqCst);
                std::fs::read_to_string(&fifo).unwrap()
            })
        };
        let ok = |r: Result<(), writer::Job>| assert!(r.is_ok());
        ok(w.submit(writer::Job::Append {
            path: fifo.clone(),
            header: "never: the FIFO exists\n",
            text: "first\n".into(),
        }));
        let out = dir.join("t.yaml");
        ok(w.submit(writer::Job::Replace {
            path: out.clone(),
            tmp: dir.join(".t.yaml.tmp"),
            text: "second\n".into(),
        }));
        for _ in 0..100 {
            ok(w.submit(writer::Job::Event(String::new())));
        }
        assert!(
            !opened.load(Ordering::SeqCst),
            "the jobs were queued while the first one was still blocked"
        );
        assert!(
            !out.exists(),
            "jobs run in order: the second waits for the first"
        );
        w.flush();
        assert!(opened.load(Ordering::SeqCst));
        assert_eq!(reader.join().unwrap(), "first\n");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "second\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn report(
        spi_in: u32,
        spi_out: u32,
        out_seq: Option<u64>,
        in_seq: Option<u64>,
    ) -> ctl::SaReport {
        ctl::SaReport {
            tunnel: "t".into(),
            child: "c".into(),
            spi_in,
            spi_out,
            active: true,
            out_packets: 0,
            out_bytes: 0,
            in_packets: 0,
            in_bytes: 0,
            out_seq,
            in_seq,
            worker: None,
        }
    }

    /// What a restarted data plane gets back: numbering past the report (rounded-up seconds
    /// plus one), the inbound window at the reported top; inbound only when the report has
    /// no outbound number (an older data plane) or there is no report of the pair.
    #[test]
    fn reinstalls_go_on_past_the_report_or_come_back_inbound_only() {
        let mut io = ChanIo::new(PathBuf::from("/nonexistent"));
        let sa = ctl::ChildSa::example();
        let (spi_in, spi_out) = (sa.spi_in, sa.spi_out);
        io.report_part(
            (1, 0, shmring::monotonic_ns()),
            vec![report(spi_in, spi_out, Some(5000), Some(70))],
            false,
        );
        let back = io.reinstalled(sa.clone());
        assert!(!back.larval);
        // Read just now: 0 whole seconds, rounded up to 1, plus the one continue_after adds.
        assert_eq!(back.out_seq_from, 5000 + 2 * ctl::SEQ_RATE_BOUND);
        assert_eq!(back.in_seq_from, 70);

        // An older data plane's report: nothing known of what was sent.
        io.report_part((2, 0, 0), vec![report(spi_in, spi_out, None, None)], false);
        let back = io.reinstalled(sa.clone());
        assert!(back.larval);
        assert_eq!((back.out_seq_from, back.in_seq_from), (0, 0));

        // No report of this pair (another pair's SPIs).
        io.report_part(
            (3, 0, 0),
            vec![report(spi_in + 1, spi_out, Some(1), Some(1))],
            false,
        );
        assert!(io.reinstalled(sa.clone()).larval);

        // A report the data plane took 5 s before we read it (we had stalled): it counts from
        // when it was taken, 5 s and a part ago, rounded up to 6, plus one.
        let five_ago = shmring::monotonic_ns().saturating_sub(5_000_000_000);
        io.report_part(
            (4, 0, five_ago),
            vec![report(spi_in, spi_out, Some(5000), Some(70))],
            false,
        );
        let back = io.reinstalled(sa);
        assert_eq!(back.out_seq_from, 5000 + 7 * ctl::SEQ_RATE_BOUND);
        // A stamp from the future (another clock) counts from now.
        assert!(taken_at(u64::MAX, 1).elapsed() < Duration::from_secs(1));
    }

    /// A new VRRP master takes the other gateway's synced pairs for the addresses it now holds:
    /// numbered past the synced report (its age by the sender's clock), kept as stale until
    /// the tunnel's own new pair is in; pairs of other addresses, and pairs it has, are left.
    /// The master's snapshot lists what it installed for the addresses it holds.
    #[test]
    fn a_new_master_adopts_the_synced_pairs_of_its_addresses() {
        let held_vip: std::net::IpAddr = "203.0.113.1".parse().unwrap();
        let mut a = ctl::ChildSa::example();
        a.local = held_vip;
        let mut other = ctl::ChildSa::example();
        other.spi_in += 1;
        other.spi_out += 1;
        other.local = "198.51.100.1".parse().unwrap();
        let snap = controlplane::ha::Snapshot {
            boot: 1,
            seq: 1,
            // Sent 2.5 s ago, its report 0.3 s old then: 2.8 s, rounded up to 3.
            sent_ms: controlplane::ha::wall_ms() - 2500,
            sas: vec![a.clone(), other.clone()],
            report: vec![report(a.spi_in, a.spi_out, Some(9000), Some(40))],
            report_age_ms: 300,
            ike: Vec::new(),
            vrrp: Vec::new(),
        };
        let mut io = ChanIo::new(PathBuf::from("/nonexistent"));
        io.replaced_at.insert(
            ("t".into(), "c".into()),
            Instant::now() - Duration::from_secs(60),
        );
        let held = std::collections::HashSet::from([held_vip]);
        // Not of a tunnel configured here: nothing goes in.
        assert!(io.adopt(&snap, &held, |_| false).is_empty());
        assert!(io.installed.is_empty() && io.stale.is_empty());
        assert_eq!(io.adopt(&snap, &held, |_| true), vec!["t".to_string()]);
        let got = &io.installed[&a.spi_in];
        assert!(!got.larval);
        assert_eq!(got.out_seq_from, 9000 + 4 * ctl::SEQ_RATE_BOUND);
        assert_eq!(got.in_seq_from, 40);
        assert!(!io.installed.contains_key(&other.spi_in));
        assert_eq!(io.stale.len(), 1);
        // An older install of the same child does not retire the adopted pair at once.
        io.retire_stale();
        assert_eq!(io.stale.len(), 1);
        assert!(io.installed.contains_key(&a.spi_in));
        // Taken once.
        assert!(io.adopt(&snap, &held, |_| true).is_empty());
        // Given up (the other gateway took the address back), then taken over again within
        // LINGER, while the data plane still holds it: it goes in afresh, its pending removal
        // cancelled (before, the Add was refused and the removal then took the pair away).
        io.give_up(&held);
        assert!(!io.installed.contains_key(&a.spi_in) && io.stale.is_empty());
        assert!(io.lingering.iter().any(|l| l.1 == a.spi_in));
        assert_eq!(io.adopt(&snap, &held, |_| true), vec!["t".to_string()]);
        assert!(io.installed.contains_key(&a.spi_in));
        assert!(
            !io.lingering.iter().any(|l| l.1 == a.spi_in),
            "its removal is cancelled"
        );
        assert_eq!(io.stale.len(), 1);
        // What this gateway sends as master: the pairs of the addresses it holds.
        assert!(
            io.snapshot(7, 1, &no_tunnels()).is_none(),
            "holds no address: sends nothing"
        );
        io.held = held;
        io.installed.insert(other.spi_in, other);
        let mine = io.snapshot(7, 3, &no_tunnels()).unwrap();
        assert_eq!((mine.boot, mine.seq), (7, 3));
        assert_eq!(mine.sas.len(), 1);
        assert_eq!(mine.sas[0].spi_in, a.spi_in);
        // Once the tunnel's new pair is in (5 s ago), the adopted one goes.
        io.replaced_at.insert(
            ("t".into(), "c".into()),
            Instant::now() - Duration::from_secs(6),
        );
        io.retire_stale();
        assert!(io.stale.is_empty() && !io.installed.contains_key(&a.spi_in));
    }

    /// A new master carries on the IKE SAs of the addresses it took, from a recent snapshot only.
    #[test]
    fn ike_sas_are_carried_on_from_a_recent_snapshot_of_the_addresses_taken() {
        let json = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/ctl_messages/seed-snapshot-with-ike-sa.json"
        ))
        .unwrap();
        let snap: controlplane::ha::Snapshot = serde_json::from_slice(&json).unwrap();
        let vip = snap.ike[0].local.ip();
        let other: std::net::IpAddr = "198.51.100.1".parse().unwrap();
        let taken = std::collections::HashSet::from([vip]);
        let now = Some(Instant::now());
        assert_eq!(carried_ike(&snap, &taken, now).len(), 1);
        assert!(carried_ike(&snap, &std::collections::HashSet::from([other]), now).is_empty());
        let old = Instant::now().checked_sub(HA_IKE_MAX_AGE + Duration::from_secs(1));
        assert!(old.is_some());
        assert!(carried_ike(&snap, &taken, old).is_empty());
        assert!(carried_ike(&snap, &taken, None).is_empty());
    }

    /// A daemon without tunnels (no IKE SA to sync).
    fn no_tunnels() -> Daemon {
        Daemon::new(&Config::parse("tunnels: []\n", std::path::Path::new("t.yaml")).unwrap())
    }

    /// Over a real UDP socket pair: a master with 1000 SA pairs (v1 of the sync gave up past
    /// ~80) sends its snapshot in datagrams that fit an Ethernet MTU, and the other gateway
    /// puts it together whole, with every pair's sequence report.
    #[test]
    fn a_thousand_pairs_sync_in_datagrams_under_the_mtu() {
        let free = || {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .unwrap()
        };
        let (pa, pb) = (free(), free());
        let key = zeroize::Zeroizing::new([5u8; 32]);
        let cfg = |local, remote| controlplane::config::HaConfig {
            local,
            remote,
            key: key.clone(),
        };
        let mut a = HaSync::bind(&cfg(pa, pb)).unwrap();
        let mut b = HaSync::bind(&cfg(pb, pa)).unwrap();
        let vip: std::net::IpAddr = "203.0.113.1".parse().unwrap();
        let mut io = ChanIo::new(PathBuf::from("/nonexistent"));
        io.held = std::collections::HashSet::from([vip]);
        for i in 0..1000u32 {
            let mut sa = ctl::ChildSa::example();
            sa.local = vip;
            sa.spi_in = 0x4000_0000 + i;
            sa.spi_out = 0x5000_0000 + i;
            io.report
                .push(report(sa.spi_in, sa.spi_out, Some(u64::from(i) * 10), None));
            io.installed.insert(sa.spi_in, sa);
        }
        let daemon = no_tunnels();
        a.send(&io, &daemon);
        assert!(a.parts_sent >= 500, "{} datagrams", a.parts_sent);
        let until = Instant::now() + Duration::from_secs(5);
        while b.theirs.as_ref().is_none_or(|t| t.sas.len() < 1000) && Instant::now() < until {
            a.send(&io, &daemon);
            b.recv();
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = b.theirs.as_ref().expect("a snapshot assembled");
        // The first snapshot, paced, lost nothing to the receive buffer.
        assert_eq!(got.seq, 1);
        assert_eq!(got.sas.len(), 1000);
        assert_eq!(got.report.len(), 1000);
        let r = got
            .report
            .iter()
            .find(|r| r.spi_in == 0x4000_0000 + 777)
            .unwrap();
        assert_eq!((r.spi_out, r.out_seq), (0x5000_0000 + 777, Some(7770)));
        assert_eq!(a.status()["datagrams_per_snapshot"], a.parts_sent);
        assert_eq!(b.status()["their_pairs"], 1000);
    }

    /// A report in parts is taken whole, from its first part's time; parts of a report whose
    /// start was not read, or after a missing part, are not taken for a report.
    #[test]
    fn report_parts_are_taken_only_whole() {
        let mut io = ChanIo::new(PathBuf::from("/nonexistent"));
        let r = |i| report(i, i + 1, Some(u64::from(i)), Some(0));
        io.report_part((4, 0, 0), vec![r(1), r(2)], true);
        assert!(!io.report_seen);
        io.report_part((4, 1, 0), vec![r(3)], false);
        assert!(io.report_seen);
        assert_eq!(
            io.report.iter().map(|x| x.spi_in).collect::<Vec<_>>(),
            [1, 2, 3]
        );

        // The tail of report 5 without its start: ignored.
        io.report_part((5, 1, 0), vec![r(9)], false);
        assert_eq!(io.report.len(), 3);
        // Report 6 loses its middle part; report 7 starts: 6's first part is dropped.
        io.report_part((6, 0, 0), vec![r(10)], true);
        io.report_part((7, 0, 0), vec![r(11)], true);
        io.report_part((7, 1, 0), vec![r(12)], false);
        assert_eq!(
            io.report.iter().map(|x| x.spi_in).collect::<Vec<_>>(),
            [11, 12]
        );
        // A skipped part within one report: dropped, the report is not taken.
        io.report_part((8, 0, 0), vec![r(20)], true);
        io.report_part((8, 2, 0), vec![r(22)], false);
        assert_eq!(
            io.report.iter().map(|x| x.spi_in).collect::<Vec<_>>(),
            [11, 12]
        );
    }
}
