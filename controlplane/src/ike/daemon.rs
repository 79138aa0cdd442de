//! All IKE SAs of one daemon: dispatch of datagrams by SPI, responders created for new
//! IKE_SA_INIT requests, start actions, restarts and timers. Still free of I/O.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sa::{Action, FetchVerdict, IkeSa, IkeSaState, RevocationFetch, State};
use super::wire::{exchange, Header};
use crate::config::{Config, StartAction, TunnelConfig};

/// Delay before a failed or dead tunnel is initiated again.
const RESTART_DELAY: Duration = Duration::from_secs(2);

/// The daemon's protocol state.
#[derive(Debug)]
pub struct Daemon {
    tunnels: Vec<Arc<TunnelConfig>>,
    sas: HashMap<u64, IkeSa>,
    /// Half-open responder SAs by (initiator SPI, peer address): catches IKE_SA_INIT retransmits.
    half_open: HashMap<(u64, SocketAddr), u64>,
    /// Tunnels waiting to be (re)initiated at a time, with attempts so far.
    restarts: Vec<(usize, Instant, u32)>,
    attempts: HashMap<usize, u32>,
    /// Tunnels whose next initiation leaves out INITIAL_CONTACT (the data plane still holds
    /// their SAs from before a control-plane restart).
    quiet_start: std::collections::HashSet<String>,
    /// Half-open SAs at which new IKE_SA_INIT requests must return a cookie (RFC 7296 §2.6).
    cookie_threshold: usize,
    /// The secrets cookies are made with: the current one and the one before it (RFC 7296
    /// §2.6: "change the value of <secret> frequently"), the current one's number (a
    /// cookie's first byte) and when it was made.
    cookie_secrets: [[u8; 32]; 2],
    cookie_gen: u8,
    cookie_since: Option<Instant>,
    /// How many SAs of `half_open` are still waiting for IKE_AUTH, when known: counted
    /// again only after one of them moved on or went, not for every IKE_SA_INIT.
    half_open_count: Option<usize>,
    /// INVALID_MAJOR_VERSION answers sent in the second that began at the instant.
    version_answers: (Option<Instant>, u32),
    /// Local addresses the other gateway of a VRRP pair holds: tunnels from them are neither
    /// initiated nor answered here until this gateway takes the address over.
    standby: std::collections::HashSet<std::net::IpAddr>,
    /// Datagram sizes that IKE SAs which have ended learnt for their path (RFC 7383 §2.5.2),
    /// by (local, remote) address, with when they were learnt: a new IKE SA between the same
    /// addresses starts from it instead of probing down from `fragment_size` again.
    path_sizes: HashMap<(IpAddr, IpAddr), (usize, Instant)>,
    /// Revocation fetches running for parked IKE_AUTHs, by our SPI of the IKE SA.
    fetches: Vec<(u64, std::thread::JoinHandle<FetchVerdict>)>,
    /// Fetches waiting for a thread.
    fetch_queue: std::collections::VecDeque<(u64, Arc<RevocationFetch>)>,
    /// Fetches done on the daemon's thread (no thread could be started), not yet resumed.
    fetched: Vec<(u64, FetchVerdict)>,
    /// The data plane's workers: children with `per_cpu_sas` get a CHILD_SA for each.
    resources: u16,
    /// Reauthentications under way (RFC 7296 §2.8.3, make-before-break): (the lineage of the
    /// IKE SA being replaced, which a rekey meanwhile keeps; our SPI of the new one; when the
    /// new one was initiated).
    reauths: Vec<(u64, u64, Instant)>,
}

/// How long a reauthentication's new IKE SA may take to make its CHILD_SAs after it is up
/// before the old IKE SA is deleted all the same.
const REAUTH_SETTLE: Duration = Duration::from_secs(30);

/// How long a cookie secret is the current one. A cookie is accepted while its secret is
/// current or the one before: for one to two of these.
const COOKIE_SECRET_LIFE: Duration = Duration::from_secs(30);

/// INVALID_MAJOR_VERSION answers (unauthenticated, for anyone who asks) sent a second at most.
const VERSION_ANSWERS_PER_SEC: u32 = 10;

/// Revocation fetches run at once, each on a thread of its own; more wait for one to end.
const FETCH_THREADS: usize = 8;

/// How long a learnt path size is used for new IKE SAs (as Linux keeps a learnt path MTU,
/// `net.ipv4.route.mtu_expires`): after that the path is probed from `fragment_size` again.
const PATH_SIZE_KEPT: Duration = Duration::from_secs(600);
/// Peers whose learnt path sizes are kept.
const PATH_SIZES_MAX: usize = 4096;

impl Daemon {
    /// A daemon for `config`; [`Daemon::start`] initiates the `start: start` tunnels.
    pub fn new(config: &Config) -> Daemon {
        Daemon {
            tunnels: config.tunnels.iter().cloned().map(Arc::new).collect(),
            sas: HashMap::new(),
            half_open: HashMap::new(),
            restarts: Vec::new(),
            attempts: HashMap::new(),
            quiet_start: Default::default(),
            cookie_threshold: 30,
            standby: Default::default(),
            path_sizes: HashMap::new(),
            fetches: Vec::new(),
            fetch_queue: Default::default(),
            fetched: Vec::new(),
            resources: 0,
            reauths: Vec::new(),
            cookie_secrets: [cookie_secret(), cookie_secret()],
            cookie_gen: 0,
            cookie_since: None,
            half_open_count: None,
            version_answers: (None, 0),
        }
    }

    /// The data plane's worker count (it says in its hello and reports): per-resource
    /// CHILD_SAs (RFC 9611) are made for each worker when there are two or more.
    pub fn set_resources(&mut self, n: u16) {
        if n != self.resources {
            tracing::info!(workers = n, "data plane workers (per-resource CHILD_SAs)");
        }
        self.resources = n;
    }

    /// Half-open IKE SAs at which responders demand cookies (default 30, like strongSwan).
    pub fn set_cookie_threshold(&mut self, n: usize) {
        self.cookie_threshold = n;
    }

    /// The cookie for a first request made with secret number `generation` (the current one
    /// or the one before; None for any other): that number, then
    /// SHA-256(secret | Ni | IPi | SPIi) (RFC 7296 §2.6's construction).
    fn cookie(
        &self,
        generation: u8,
        ni: &[u8],
        ip: std::net::IpAddr,
        spi_i: u64,
    ) -> Option<Vec<u8>> {
        use sha2::Digest;
        let secret = if generation == self.cookie_gen {
            &self.cookie_secrets[0]
        } else if generation == self.cookie_gen.wrapping_sub(1) {
            &self.cookie_secrets[1]
        } else {
            return None;
        };
        let mut h = sha2::Sha256::new();
        h.update(secret);
        h.update(ni);
        match ip {
            std::net::IpAddr::V4(a) => h.update(a.octets()),
            std::net::IpAddr::V6(a) => h.update(a.octets()),
        }
        h.update(spi_i.to_be_bytes());
        let mut c = vec![generation];
        c.extend_from_slice(&h.finalize()[..16]);
        Some(c)
    }

    /// Makes a new current cookie secret once the current one is [`COOKIE_SECRET_LIFE`] old;
    /// after twice that both are new, and no cookie given out before is taken.
    fn rotate_cookie_secret(&mut self, now: Instant) {
        let since = *self.cookie_since.get_or_insert(now);
        let age = now.saturating_duration_since(since);
        if age < COOKIE_SECRET_LIFE {
            return;
        }
        self.cookie_secrets[1] = if age < 2 * COOKIE_SECRET_LIFE {
            self.cookie_secrets[0]
        } else {
            cookie_secret()
        };
        self.cookie_secrets[0] = cookie_secret();
        self.cookie_gen = self.cookie_gen.wrapping_add(1);
        self.cookie_since = Some(now);
    }

    /// Whether another INVALID_MAJOR_VERSION answer may go out now.
    fn version_answer_allowed(&mut self, now: Instant) -> bool {
        let (start, sent) = &mut self.version_answers;
        if start.is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1)) {
            *start = Some(now);
            *sent = 0;
        }
        *sent += 1;
        *sent <= VERSION_ANSWERS_PER_SEC
    }

    /// How many responder SAs still wait for their IKE_AUTH.
    fn half_open_waiting(&mut self) -> usize {
        if let Some(n) = self.half_open_count {
            return n;
        }
        let n = self
            .half_open
            .values()
            .filter(|spi| {
                self.sas
                    .get(spi)
                    .is_some_and(|s| s.state == State::InitDone)
            })
            .count();
        self.half_open_count = Some(n);
        n
    }

    /// The first initiation of `tunnel` leaves out INITIAL_CONTACT, so the peer keeps the old
    /// SAs (still in the data plane) until the new ones replace them.
    pub fn without_initial_contact(&mut self, tunnel: &str) {
        self.quiet_start.insert(tunnel.to_string());
    }

    /// The data plane says a CHILD_SA's byte/packet lifetime ran out: rekey it.
    pub fn child_expired(&mut self, spi_in: u32, hard: bool, now: Instant) -> Vec<Action> {
        for sa in self.sas.values_mut() {
            if sa.child_expired(spi_in, hard, now) {
                break;
            }
        }
        self.tick(now)
    }

    /// Rekeys every CHILD_SA now (after a data-plane restart lost the sequence numbers).
    pub fn rekey_all_children(&mut self, now: Instant) -> Vec<Action> {
        for sa in self.sas.values_mut() {
            sa.rekey_children_now(now);
        }
        self.tick(now)
    }

    /// The VRRP addresses this gateway does not hold now. A tunnel whose local address joins
    /// them is dropped without a word (the other gateway takes its peer over); one whose
    /// address leaves them is initiated if it is `start: start`, with INITIAL_CONTACT, so that
    /// the peer drops what it had with the other gateway.
    pub fn set_standby(
        &mut self,
        standby: std::collections::HashSet<std::net::IpAddr>,
        now: Instant,
    ) -> Vec<Action> {
        let mut acts = Vec::new();
        for sa in self.sas.values_mut() {
            if standby.contains(&sa.cfg.local) && !self.standby.contains(&sa.cfg.local) {
                sa.abandon(
                    format!("{} is now the other VRRP gateway's", sa.cfg.local),
                    &mut acts,
                );
            }
        }
        let taken: Vec<usize> = (0..self.tunnels.len())
            .filter(|&i| {
                let a = self.tunnels[i].local;
                self.standby.contains(&a) && !standby.contains(&a)
            })
            .collect();
        self.standby = standby;
        let mut out = Vec::new();
        self.collect(acts, now, &mut out);
        let standby = &self.standby;
        let tunnels = &self.tunnels;
        self.restarts
            .retain(|r| !standby.contains(&tunnels[r.0].local));
        for i in taken {
            tracing::info!(tunnel = %self.tunnels[i].name, local = %self.tunnels[i].local, "VRRP: this gateway holds the local address now");
            // Not one whose IKE SA was carried on from the other gateway.
            let carried_on = self.tunnel_live(&self.tunnels[i].name);
            if self.tunnels[i].start == StartAction::Start && !carried_on {
                self.quiet_start.remove(&self.tunnels[i].name);
                self.initiate(i, now, &mut out);
            }
        }
        out
    }

    /// The established IKE SAs of tunnels whose local address `ours` says this gateway holds,
    /// as the other gateway of a VRRP pair needs them (`ha:`).
    pub fn export(&self, ours: &dyn Fn(std::net::IpAddr) -> bool, now: Instant) -> Vec<IkeSaState> {
        let mut v: Vec<IkeSaState> = self
            .sas
            .values()
            .filter(|sa| ours(sa.cfg.local))
            .filter_map(|sa| sa.export(now))
            .collect();
        v.sort_by_key(|s| (s.spi_i, s.spi_r));
        v
    }

    /// What [`Daemon::export`] would say, as a number that changes when it does in a way the
    /// other gateway must hear of at once (SAs, message IDs, CHILD_SAs); timers aside.
    pub fn export_digest(&self, ours: &dyn Fn(std::net::IpAddr) -> bool) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        type Marks = ((u64, u64, u32, u32, bool), Vec<(u32, bool)>);
        let mut v: Vec<Marks> = self
            .sas
            .values()
            .filter(|sa| ours(sa.cfg.local))
            .filter_map(|sa| {
                let marks = sa.sync_marks()?;
                Some((
                    marks,
                    sa.children.iter().map(|c| (c.spi_in, c.rekeyed)).collect(),
                ))
            })
            .collect();
        v.sort();
        v.hash(&mut h);
        h.finish()
    }

    /// Carries on the other gateway's IKE SAs after a VRRP takeover (`ha:`): each whose tunnel
    /// is configured here and has no IKE SA here yet. `elapsed`: how old the states are;
    /// `installed`: whether a CHILD_SA's pair (by inbound SPI) is in the data plane. Returns
    /// the tunnels carried on.
    pub fn restore(
        &mut self,
        states: &[IkeSaState],
        elapsed: Duration,
        installed: &dyn Fn(u32) -> bool,
        now: Instant,
    ) -> Vec<String> {
        let mut done = Vec::new();
        for s in states {
            let Some(i) = self.tunnels.iter().position(|t| t.name == s.tunnel) else {
                tracing::warn!(tunnel = %s.tunnel, "synced IKE SA of a tunnel not configured here: left out");
                continue;
            };
            if self.tunnel_live(&s.tunnel) {
                continue;
            }
            match IkeSa::restore(self.tunnels[i].clone(), s, elapsed, installed, now) {
                Ok(sa) if !self.sas.contains_key(&sa.our_spi()) => {
                    self.restarts.retain(|r| r.0 != i);
                    self.attempts.insert(i, 0);
                    self.quiet_start.remove(&s.tunnel);
                    self.sas.insert(sa.our_spi(), sa);
                    done.push(s.tunnel.clone());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(tunnel = %s.tunnel, "synced IKE SA left out: {e}"),
            }
        }
        done
    }

    /// Whether tunnel `name` has an IKE SA up or being set up.
    fn tunnel_live(&self, name: &str) -> bool {
        self.sas
            .values()
            .any(|s| s.cfg.name == name && s.state != State::Dead)
    }

    /// Whether child `child` of tunnel `tunnel` is configured here with local address
    /// `local` (an SA pair synced from the other gateway of a VRRP pair must be one of ours:
    /// two gateways whose configurations drifted apart must not install each other's). The
    /// peer's address is not compared: behind a NAT it may have moved.
    pub fn knows_child(&self, tunnel: &str, child: &str, local: std::net::IpAddr) -> bool {
        self.tunnels.iter().any(|t| {
            t.name == tunnel && t.local == local && t.children.iter().any(|c| c.name == child)
        })
    }

    /// The VRRP addresses this gateway does not hold, as last set.
    pub fn standby(&self) -> &std::collections::HashSet<std::net::IpAddr> {
        &self.standby
    }

    /// Whether tunnel `i`'s local address is the other VRRP gateway's now.
    fn standing_by(&self, i: usize) -> bool {
        self.standby.contains(&self.tunnels[i].local)
    }

    /// Initiates every tunnel configured with `start: start`.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for i in 0..self.tunnels.len() {
            if self.tunnels[i].start == StartAction::Start {
                self.initiate(i, now, &mut out);
            }
        }
        out
    }

    /// Initiates tunnel `name` now (`fgctl initiate`).
    pub fn initiate_by_name(&mut self, name: &str, now: Instant) -> Option<Vec<Action>> {
        let i = self.tunnels.iter().position(|t| t.name == name)?;
        let mut out = Vec::new();
        self.initiate(i, now, &mut out);
        Some(out)
    }

    fn initiate(&mut self, i: usize, now: Instant, out: &mut Vec<Action>) {
        if self.standing_by(i) {
            tracing::debug!(tunnel = %self.tunnels[i].name, "not initiated: the other VRRP gateway holds its local address");
            return;
        }
        // INITIAL_CONTACT says this is the only IKE SA between us (RFC 7296 §2.4): not while
        // another of the tunnel is up (`fgctl initiate` on a live tunnel), or the peer would
        // drop that one while we keep it.
        let name = self.tunnels[i].name.clone();
        let ic = !self.quiet_start.remove(&name)
            && !self
                .sas
                .values()
                .any(|s| s.cfg.name == name && s.state == State::Established);
        let (mut sa, actions) = IkeSa::initiate(self.tunnels[i].clone(), now, ic);
        self.start_from_learnt_size(&mut sa, now);
        *self.attempts.entry(i).or_default() += 1;
        self.sas.insert(sa.our_spi(), sa);
        self.collect(actions, now, out);
    }

    /// Moves the reauthentications under way on: once a new IKE SA is up with its CHILD_SAs
    /// (or has been up [`REAUTH_SETTLE`]), the IKE SA it replaces is deleted, its CHILD_SAs
    /// with it (the new ones already carry the traffic). A new IKE SA that failed leaves the
    /// old one as it was, to try again later.
    fn reauth_progress(&mut self, now: Instant, acts: &mut Vec<Action>) {
        let mut i = 0;
        while i < self.reauths.len() {
            let (lineage, new, started) = self.reauths[i];
            let Some(fresh) = self.sas.get(&new) else {
                tracing::warn!(
                    ?started,
                    "reauthentication: the new IKE SA did not come up; the old one stays"
                );
                self.reauths.swap_remove(i);
                continue;
            };
            // The old IKE SA, or the one that rekeyed it meanwhile.
            let old: Vec<u64> = self
                .sas
                .iter()
                .filter(|(spi, sa)| {
                    **spi != new && sa.lineage == lineage && sa.state != State::Dead
                })
                .map(|(spi, _)| *spi)
                .collect();
            let done = fresh.state == State::Established
                && (fresh.children_settled()
                    || fresh
                        .established_at
                        .is_some_and(|t| now.saturating_duration_since(t) >= REAUTH_SETTLE));
            if !done && !old.is_empty() {
                i += 1;
                continue;
            }
            self.reauths.swap_remove(i);
            for spi in old {
                if let Some(sa) = self.sas.get_mut(&spi) {
                    tracing::info!(tunnel = %sa.cfg.name, old = %format_args!("{spi:016x}"),
                        new = %format_args!("{new:016x}"), "reauthenticated: the old IKE SA is deleted");
                    sa.delete(now, acts);
                }
            }
        }
    }

    /// Traffic hit tunnel `name`'s on-demand policy: initiate it unless an IKE SA of it is up
    /// or being set up.
    pub fn acquire(&mut self, name: &str, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.tunnel_live(name) {
            return out;
        }
        if let Some(i) = self.tunnels.iter().position(|t| t.name == name) {
            self.initiate(i, now, &mut out);
        }
        out
    }

    /// Deletes the IKE SAs of tunnel `name` (`fgctl terminate`). None if there is no such tunnel.
    pub fn terminate_by_name(&mut self, name: &str, now: Instant) -> Option<Vec<Action>> {
        if !self.tunnels.iter().any(|t| t.name == name) {
            return None;
        }
        let mut acts = Vec::new();
        for sa in self.sas.values_mut().filter(|s| s.cfg.name == name) {
            sa.delete(now, &mut acts);
        }
        self.restarts
            .retain(|r| self.tunnels.get(r.0).is_some_and(|t| t.name != name));
        let mut out = Vec::new();
        self.collect(acts, now, &mut out);
        Some(out)
    }

    /// Takes a new configuration: tunnels that are unchanged keep their SAs; changed and removed
    /// ones are deleted; changed and added ones with `start: start` are initiated. Returns the
    /// actions and the names of the tunnels that changed.
    pub fn reload(&mut self, config: &Config, now: Instant) -> (Vec<Action>, Vec<String>) {
        fn fingerprint(t: &TunnelConfig) -> String {
            format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}|{}",
                t.local,
                t.remote,
                t.local_id,
                t.remote_id,
                t.ike_proposals,
                t.ike_lifetime,
                t.reauth_time,
                t.over_time,
                t.rand_time,
                t.dpd,
                t.start,
                t.keyingtries,
                t.children,
                t.auth.fingerprint()
            )
        }
        let mut acts = Vec::new();
        let mut changed = Vec::new();
        let old: Vec<Arc<TunnelConfig>> = std::mem::take(&mut self.tunnels);
        let mut to_start = Vec::new();
        for t in &config.tunnels {
            match old.iter().find(|o| o.name == t.name) {
                Some(o)
                    if fingerprint(o) == fingerprint(t)
                        && (o.fragmentation, o.fragment_size)
                            == (t.fragmentation, t.fragment_size) =>
                {
                    self.tunnels.push(o.clone())
                }
                found => {
                    if found.is_some() {
                        for sa in self.sas.values_mut().filter(|s| s.cfg.name == t.name) {
                            sa.delete(now, &mut acts);
                        }
                    }
                    changed.push(t.name.clone());
                    self.tunnels.push(Arc::new(t.clone()));
                    if t.start == StartAction::Start {
                        to_start.push(self.tunnels.len() - 1);
                    }
                }
            }
        }
        for o in &old {
            if !config.tunnels.iter().any(|t| t.name == o.name) {
                changed.push(o.name.clone());
                for sa in self.sas.values_mut().filter(|s| s.cfg.name == o.name) {
                    sa.delete(now, &mut acts);
                }
            }
        }
        // Pending restarts and attempt counts follow their tunnels by name.
        let names: Vec<String> = old.iter().map(|t| t.name.clone()).collect();
        let remap = |i: usize| {
            names
                .get(i)
                .and_then(|n| self.tunnels.iter().position(|t| &t.name == n))
        };
        self.restarts = self
            .restarts
            .iter()
            .filter_map(|r| {
                remap(r.0)
                    .filter(|&k| !changed.contains(&self.tunnels[k].name))
                    .map(|k| (k, r.1, r.2))
            })
            .collect();
        self.attempts = self
            .attempts
            .iter()
            .filter_map(|(i, n)| remap(*i).map(|k| (k, *n)))
            .collect();
        let mut out = Vec::new();
        self.collect(acts, now, &mut out);
        for i in to_start {
            self.initiate(i, now, &mut out);
        }
        (out, changed)
    }

    /// The IKE SAs (for status output).
    pub fn sas(&self) -> impl Iterator<Item = &IkeSa> {
        self.sas.values()
    }

    /// Handles one IKE datagram (without non-ESP marker).
    pub fn handle(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let h = match Header::parse(data) {
            Ok(h) => h,
            Err(super::wire::WireError::Version(v)) if v > 2 => {
                let answer = super::wire::invalid_major_version_answer(data);
                if let Some(answer) = answer.filter(|_| !self.standby.contains(&local.ip())) {
                    if self.version_answer_allowed(now) {
                        tracing::info!(peer = %remote, version = v, "IKE major version we do not speak: INVALID_MAJOR_VERSION");
                        out.push(Action::Send {
                            local,
                            remote,
                            data: answer,
                        });
                    }
                }
                return out;
            }
            Err(_) => return out,
        };
        // The sender's role tells us which SPI is ours.
        let ours = if h.is_initiator() { h.spi_r } else { h.spi_i };
        if h.is_initiator()
            && !h.is_response()
            && h.exchange == exchange::IKE_SA_INIT
            && h.spi_r == 0
        {
            if let Some(spi) = self.half_open.get(&(h.spi_i, remote)).copied() {
                if let Some(sa) = self.sas.get_mut(&spi) {
                    let mut acts = Vec::new();
                    let before = sa.state;
                    sa.handle(now, local, remote, data, &mut acts);
                    if before == State::InitDone && sa.state != State::InitDone {
                        self.half_open_count = None;
                    }
                    // A retransmitted IKE_SA_INIT: resend the cached response.
                    if acts.is_empty() {
                        if let Some(a) = resend_init(sa) {
                            out.push(a);
                        }
                    }
                    self.collect(acts, now, &mut out);
                }
                return out;
            }
            // Only SAs still waiting for IKE_AUTH count (the map keeps established ones, to
            // catch a late retransmitted IKE_SA_INIT).
            if self.half_open_waiting() >= self.cookie_threshold {
                // Under load: state only for initiators that prove their address (§2.6).
                let Ok(m) = super::wire::Message::parse(data) else {
                    return out;
                };
                let ni = m.payloads.iter().find_map(|p| {
                    if let super::wire::Payload::Nonce(n) = p {
                        Some(n.clone())
                    } else {
                        None
                    }
                });
                let Some(ni) = ni else { return out };
                self.rotate_cookie_secret(now);
                let got = match m.payloads.first() {
                    Some(super::wire::Payload::Notify(n))
                        if n.ntype == super::wire::notify::COOKIE =>
                    {
                        Some(n.data.clone())
                    }
                    _ => None,
                };
                let valid = got.as_deref().is_some_and(|c| {
                    c.first()
                        .and_then(|&g| self.cookie(g, &ni, remote.ip(), h.spi_i))
                        .is_some_and(|want| want == c)
                });
                if !valid {
                    let want = self
                        .cookie(self.cookie_gen, &ni, remote.ip(), h.spi_i)
                        .unwrap_or_default();
                    let mut rh = h;
                    rh.flags = super::wire::flags::RESPONSE;
                    rh.spi_r = 0;
                    out.push(Action::Send {
                        local,
                        remote,
                        data: super::wire::Message::emit(
                            rh,
                            &[super::wire::Payload::notify(
                                super::wire::notify::COOKIE,
                                want,
                            )],
                        ),
                    });
                    return out;
                }
            }
            let Some(cfg) = self
                .tunnels
                .iter()
                .find(|t| t.remote == remote.ip() && t.local == local.ip())
                .filter(|t| !self.standby.contains(&t.local))
                .cloned()
            else {
                tracing::info!(peer = %remote, "IKE_SA_INIT from a peer we have no tunnel for: ignored");
                return out;
            };
            let mut acts = Vec::new();
            if let Some(mut sa) = IkeSa::respond_init(cfg, now, local, remote, data, &mut acts) {
                sa.set_resources(self.resources);
                self.start_from_learnt_size(&mut sa, now);
                self.half_open.insert((h.spi_i, remote), sa.our_spi());
                if let Some(n) = &mut self.half_open_count {
                    *n += usize::from(sa.state == State::InitDone);
                }
                self.sas.insert(sa.our_spi(), sa);
            }
            self.collect(acts, now, &mut out);
            return out;
        }
        let Some(sa) = self.sas.get_mut(&ours) else {
            tracing::debug!(spi = %format_args!("{ours:016x}"), "IKE message for an unknown SA");
            return out;
        };
        let mut acts = Vec::new();
        sa.set_resources(self.resources);
        let before = sa.state;
        sa.handle(now, local, remote, data, &mut acts);
        if before == State::InitDone && sa.state != State::InitDone {
            self.half_open_count = None;
        }
        self.collect(acts, now, &mut out);
        out
    }

    /// Timers. Call every 20 ms or so: a retransmission timeout follows the measured round
    /// trip and can be as short as 100 ms.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        // Timers move SAs on (parked IKE_AUTHs resume, half-open ones expire): count again.
        self.half_open_count = None;
        let mut acts = Vec::new();
        for sa in self.sas.values_mut() {
            sa.set_resources(self.resources);
            sa.tick(now, &mut acts);
        }
        self.reauth_progress(now, &mut acts);
        // Parked IKE_AUTHs whose revocation fetch is done.
        let mut done = std::mem::take(&mut self.fetched);
        let mut i = 0;
        while i < self.fetches.len() {
            if self.fetches[i].1.is_finished() {
                let (spi, h) = self.fetches.swap_remove(i);
                let verdict = h.join().unwrap_or_else(|_| {
                    tracing::warn!("a revocation fetch thread panicked");
                    Err(crate::ike::pki::PkiError::Untrusted(
                        "the revocation check failed".into(),
                    ))
                });
                done.push((spi, verdict));
            } else {
                i += 1;
            }
        }
        self.start_fetches();
        for (spi, verdict) in done {
            if let Some(sa) = self.sas.get_mut(&spi) {
                sa.resume_after_fetch(now, verdict, &mut acts);
            }
        }
        self.collect(acts, now, &mut out);
        let due: Vec<usize> = self
            .restarts
            .iter()
            .filter(|r| r.1 <= now)
            .map(|r| r.0)
            .collect();
        self.restarts.retain(|r| r.1 > now);
        for i in due {
            self.initiate(i, now, &mut out);
        }
        out
    }

    /// Deletes every IKE SA (shutdown).
    pub fn shutdown(&mut self, now: Instant) -> Vec<Action> {
        let mut acts = Vec::new();
        for sa in self.sas.values_mut() {
            sa.delete(now, &mut acts);
        }
        let mut out = Vec::new();
        self.restarts.clear();
        self.collect(acts, now, &mut out);
        out
    }

    /// Post-processes actions: adopts spawned SAs, forgets dead ones, schedules restarts, and
    /// on a peer's INITIAL_CONTACT drops the IKE SAs it no longer holds.
    fn collect(&mut self, actions: Vec<Action>, now: Instant, out: &mut Vec<Action>) {
        for a in actions {
            match a {
                Action::Spawn(sa) => {
                    let mut sa = *sa;
                    sa.set_resources(self.resources);
                    if sa.delete_now {
                        let mut acts = Vec::new();
                        sa.delete(now, &mut acts);
                        out.extend(acts);
                    }
                    self.sas.insert(sa.our_spi(), sa);
                }
                Action::Reauthenticate { spi } => {
                    let Some(old) = self.sas.get(&spi) else {
                        continue;
                    };
                    let lineage = old.lineage;
                    // Where the old one talks: a peer that moved (behind a NAT) is there,
                    // and with a NAT both sides use port 4500 already (§2.23).
                    let (local, remote) = if old.nat {
                        (old.local, old.remote)
                    } else {
                        (
                            std::net::SocketAddr::new(old.local.ip(), crate::ike::sa::IKE_PORT),
                            std::net::SocketAddr::new(old.remote.ip(), crate::ike::sa::IKE_PORT),
                        )
                    };
                    let i = self.tunnels.iter().position(|t| t.name == old.cfg.name);
                    let busy = self.reauths.iter().any(|r| r.0 == lineage);
                    if let (Some(i), false) = (i, busy) {
                        if !self.standing_by(i) {
                            // Not counted against keyingtries: the tunnel is up.
                            let (mut sa, actions) = IkeSa::initiate_between(
                                self.tunnels[i].clone(),
                                now,
                                false,
                                local,
                                remote,
                            );
                            self.start_from_learnt_size(&mut sa, now);
                            let new = sa.our_spi();
                            self.sas.insert(new, sa);
                            self.reauths.push((lineage, new, now));
                            self.collect(actions, now, out);
                        }
                    }
                }
                Action::FetchRevocation { spi, job } => {
                    self.fetch_queue.push_back((spi, Arc::new(job)));
                    self.start_fetches();
                }
                Action::MoveChildren {
                    to,
                    children,
                    creation,
                } => {
                    if let Some(sa) = self.sas.get_mut(&to) {
                        sa.children.extend(children);
                        sa.merge_creation(*creation);
                    }
                }
                Action::Closed {
                    ref tunnel,
                    restart,
                    ..
                } => {
                    if restart {
                        if let Some(i) = self.tunnels.iter().position(|t| &t.name == tunnel) {
                            let tries = self.tunnels[i].keyingtries;
                            let n = self.attempts.get(&i).copied().unwrap_or(0);
                            if (tries == 0 || n < tries)
                                && !self.tunnel_live(tunnel)
                                && !self.restarts.iter().any(|r| r.0 == i)
                            {
                                self.restarts.push((i, now + RESTART_DELAY, n));
                            }
                        }
                    }
                    out.push(a);
                }
                Action::Established {
                    ref tunnel,
                    ref peer_id,
                    initial_contact,
                    ..
                } => {
                    if let Some(i) = self.tunnels.iter().position(|t| &t.name == tunnel) {
                        self.attempts.insert(i, 0);
                        self.restarts.retain(|r| r.0 != i);
                    }
                    // An IKE SA of the tunnel is up: ours still in IKE_SA_INIT (a request
                    // the path lost, sent again) will not claim to be the only one.
                    for sa in self.sas.values_mut() {
                        if &sa.cfg.name == tunnel && sa.state == State::InitSent {
                            sa.initial_contact = false;
                        }
                    }
                    // The peer lost every other IKE SA it had with us (it restarted, or gave
                    // up on them): ours with the same identity go without a word (RFC 7296
                    // §2.4), their CHILD_SAs with them, so the new pair sends at once. Only
                    // those established before this one began: when both sides initiate at
                    // once, each with INITIAL_CONTACT, neither drops the other's.
                    let mut gone = Vec::new();
                    let began =
                        initial_contact.and_then(|new| Some((new, self.sas.get(&new)?.created)));
                    if let Some((new, began)) = began {
                        for sa in self.sas.values_mut() {
                            if sa.our_spi() != new
                                && &sa.cfg.name == tunnel
                                && sa.peer_id.as_ref() == Some(peer_id)
                                && sa.state != State::Dead
                                && sa.established_at.is_some_and(|t| t <= began)
                            {
                                tracing::info!(tunnel = %tunnel, "the peer's INITIAL_CONTACT: dropping an IKE SA it no longer holds");
                                sa.abandon("the peer's INITIAL_CONTACT".into(), &mut gone);
                            }
                        }
                    }
                    out.push(a);
                    out.extend(gone);
                }
                other => out.push(other),
            }
        }
        // Sweeping the dead needs a look at every SA; most calls have none.
        if !self.sas.values().any(|s| s.state == State::Dead) {
            return;
        }
        self.half_open_count = None;
        let learnt: Vec<((IpAddr, IpAddr), usize, Instant)> = self
            .sas
            .values()
            .filter(|s| s.state == State::Dead)
            .filter_map(|s| {
                let (size, at) = s.fragment_path_learnt()?;
                Some(((s.local.ip(), s.remote.ip()), size, at))
            })
            .collect();
        self.sas.retain(|_, s| s.state != State::Dead);
        for (key, size, at) in learnt {
            self.learnt_path_size(key, size, at, now);
        }
        let sas = &self.sas;
        self.half_open.retain(|_, spi| sas.contains_key(spi));
    }
}

/// A new random cookie secret.
fn cookie_secret() -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&super::crypto::random_bytes(32));
    k
}

impl Daemon {
    /// Starts queued revocation fetches while fewer than [`FETCH_THREADS`] run. One whose
    /// thread cannot be started runs here (as before there were threads).
    fn start_fetches(&mut self) {
        while self.fetches.len() < FETCH_THREADS {
            let Some((spi, job)) = self.fetch_queue.pop_front() else {
                return;
            };
            if !self.sas.contains_key(&spi) {
                continue; // the IKE SA is gone
            }
            let j = job.clone();
            match std::thread::Builder::new()
                .name("revocation".into())
                .spawn(move || j.run())
            {
                Ok(h) => self.fetches.push((spi, h)),
                Err(e) => {
                    tracing::warn!("cannot start a revocation fetch thread ({e}): fetching here");
                    self.fetched.push((spi, job.run()));
                }
            }
        }
    }

    /// Keeps a path size an ended IKE SA had (unless one learnt later is kept, or it is too
    /// old), and passes it to the live IKE SAs between the same addresses that have none, or
    /// one learnt earlier (the one that replaced it in an IKE SA rekey whose response was cut
    /// smaller, say).
    fn learnt_path_size(&mut self, key: (IpAddr, IpAddr), size: usize, at: Instant, now: Instant) {
        if !fresh(at, now) || self.path_sizes.get(&key).is_some_and(|&(_, t)| t >= at) {
            return;
        }
        if self.path_sizes.len() >= PATH_SIZES_MAX && !self.path_sizes.contains_key(&key) {
            self.path_sizes.retain(|_, (_, t)| fresh(*t, now));
        }
        if self.path_sizes.len() < PATH_SIZES_MAX || self.path_sizes.contains_key(&key) {
            self.path_sizes.insert(key, (size, at));
        }
        for sa in self.sas.values_mut() {
            if (sa.local.ip(), sa.remote.ip()) == key
                && sa.fragment_path_learnt().is_none_or(|(_, t)| t < at)
            {
                sa.start_from_path_size(size, at);
            }
        }
    }

    /// A new IKE SA between addresses that an ended one learnt a path size for (within
    /// [`PATH_SIZE_KEPT`]) starts from that size.
    fn start_from_learnt_size(&self, sa: &mut IkeSa, now: Instant) {
        let key = (sa.local.ip(), sa.remote.ip());
        if let Some(&(size, at)) = self.path_sizes.get(&key).filter(|e| fresh(e.1, now)) {
            sa.start_from_path_size(size, at);
        }
    }
}

/// Whether a path size learnt `at` is still used for new IKE SAs.
fn fresh(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) < PATH_SIZE_KEPT
}

fn resend_init(sa: &IkeSa) -> Option<Action> {
    if sa.state != State::InitDone {
        return None;
    }
    sa.cached_response().map(|d| Action::Send {
        local: sa.local,
        remote: sa.remote,
        data: d,
    })
}
