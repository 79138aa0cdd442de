//! Burst-level pipelines: a fixed array of packets in, one verdict per packet out.
//!
//! Outbound: classify (SPD-out) → encapsulate. Inbound: classify the outer packet → SAD lookup →
//! replay check → decrypt → replay update → selector check (RFC 4301 §5.2), or, for packets that
//! arrive in the clear, the inbound SPD. Nothing is allocated per packet or per burst; every drop
//! is counted under its reason.
//!
//! Both directions work in two passes over each run of up to [`STAGE`] packets: first every
//! packet is classified and checked (outbound: measured for ESP; inbound: decrypted and
//! checked against its SA's selectors), then each SA among them takes its sequence numbers and
//! counts its packets and bytes against its lifetimes once for the whole run, with one atomic
//! operation per counter instead of one per packet, and the outbound packets are sealed. Each
//! packet gets the verdict, sequence number and bytes it would get processed alone, in order,
//! and the lifetime limits hold exactly (see [`crate::sa::SaCounters`]).

use std::net::IpAddr;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::crypto::{OpenPrep, SealPrep};
use crate::drop::{DropCounters, DropReason};
use crate::esp::EspPlan;
use crate::flowcache::FlowCache;
use crate::icmp_err::{self, Oversize};
use crate::outer::{self, Arrival, Outer};
use crate::sa::{InboundSa, Mode, OutboundSa, SaCrypto};
use crate::sad::Sad;
use crate::spd::{Action, FlowKey, PolicyHits, Rule, Spd};

/// What to do with one packet of a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Not processed yet.
    #[default]
    Pending,
    /// Transformed (or bypassed) and ready to route.
    Forward,
    /// An IKE datagram: hand it to the control plane.
    ToControlPlane,
    /// Drop it, counted under this reason.
    Drop(DropReason),
    /// Outbound: IPv4 without DF that would exceed the MTU once encapsulated. Not encapsulated:
    /// the caller cuts it into fragments of at most this many bytes and encapsulates each
    /// with the SA its policy names (RFC 4301 §8.1).
    Fragment(u16),
    /// Outbound: too big once encapsulated, and not to be fragmented (DF, or IPv6). Not
    /// encapsulated and counted as [`DropReason::TooBig`]: the caller sends the source an ICMP
    /// error with this MTU (RFC 4301 §8.2.1).
    TooBig(u16),
    /// Outbound, tunnel mode: an IPv6 packet of at most 1280 bytes, IPv6's minimum MTU, that
    /// does not fit once encapsulated (the tunnel's inner MTU is below 1280). Its source may
    /// not send anything smaller (RFC 8200 §5, RFC 8021), so refusing it would black-hole it:
    /// the tunnel must fragment its own outer packet instead. Not encapsulated: the caller
    /// encapsulates it with the SA its policy names and cuts the outer packet into fragments
    /// of at most this many bytes (the SA's path MTU), which the peer reassembles.
    FragmentOuter(u16),
    /// Outbound, from [`outbound_owned`] only: the SA this packet's policy names belongs to
    /// this other pipeline ([`OutboundSa::owner`]). Neither encapsulated nor counted (not in
    /// the policy's hits either): the caller hands it, as it is, to that pipeline, which runs
    /// it through [`outbound_owned`] itself.
    Handoff(u16),
}

/// An outbound PROTECT policy's target: the SA to use, once the control plane installed one.
#[derive(Debug, Clone)]
pub struct OutboundTarget {
    /// The policy's identifier, reported with acquire events.
    pub policy_id: u32,
    /// The SA, or `None` while it is being negotiated. With per-resource SAs (RFC 9611) the
    /// fallback: the SA of pipelines that have none of their own in `per_worker`.
    pub sa: Option<Arc<OutboundSa>>,
    /// Per-resource SAs (RFC 9611), by pipeline number ([`OutboundSa::owner`]'s `me`): each
    /// pipeline seals with its own SA and sequence counter, so that one tunnel's outbound
    /// traffic is not bound to one pipeline. Empty without them.
    pub per_worker: Vec<Option<Arc<OutboundSa>>>,
}

impl OutboundTarget {
    /// The SA pipeline `me` seals with: its own per-resource SA, else the fallback.
    #[inline]
    pub fn sa_for(&self, me: Option<u16>) -> Option<&Arc<OutboundSa>> {
        me.and_then(|w| self.per_worker.get(usize::from(w)))
            .and_then(Option::as_ref)
            .or(self.sa.as_ref())
    }
}

/// The tables an outbound burst reads.
#[derive(Debug, Clone, Copy)]
pub struct OutboundTables<'a> {
    /// SPD-out.
    pub spd: &'a Spd<OutboundTarget>,
    /// The MTU of the port encapsulated packets leave by, for SAs that do not know their
    /// own ([`OutboundSa::egress_mtu`]).
    pub mtu: u16,
}

/// The tables an inbound burst reads.
#[derive(Debug, Clone, Copy)]
pub struct InboundTables<'a> {
    /// SAD keyed by SPI (and destination).
    pub sad: &'a Sad<Arc<InboundSa>>,
    /// SPD-in, for packets that arrive in the clear (PROTECT means "must have come in IPsec").
    pub spd: &'a Spd<()>,
    /// UDP destination ports that carry encapsulated ESP (normally just 4500).
    pub natt_ports: &'a [u16],
    /// The gateway's own addresses (its interfaces', its VRRP routers' virtual ones). Only
    /// IPsec addressed to this device is processed as such (RFC 4301 §5.2): IKE and NAT
    /// keepalives to another address, and ESP or AH to one that no SA takes, are plain
    /// traffic passing through, for SPD-in (which may BYPASS it to a host inside that runs
    /// IPsec itself). `None`: every address is ours (`fgpcap` decrypts what it is given).
    pub local: Option<&'a [IpAddr]>,
}

impl InboundTables<'_> {
    /// Whether `a` is one of the gateway's own addresses ([`InboundTables::local`]).
    #[inline]
    pub fn is_local(&self, a: IpAddr) -> bool {
        self.local.is_none_or(|l| l.contains(&a))
    }
}

/// How many packets the pipelines stage at once: a DPDK burst. Longer slices are processed in
/// runs of this many.
pub const STAGE: usize = 32;

/// Runs SPD-out and encapsulation over `pkts`, writing one verdict per packet. Packets already
/// holding a non-`Pending` verdict are skipped. Returns how many are to be forwarded.
/// Each packet SPD-out classifies is counted in `hits` under its policy.
pub fn outbound<B: PacketBuf>(
    t: &OutboundTables<'_>,
    pkts: &mut [B],
    verdicts: &mut [Verdict],
    drops: &mut DropCounters,
    hits: &mut PolicyHits,
) -> usize {
    outbound_owned(t, None, None, pkts, verdicts, drops, hits)
}

/// [`outbound`], with SPD-out answers for known flows taken from the pipeline's flow cache
/// (see [`FlowCache`]; it is only consulted for SPDs of
/// [`crate::spd::WALK_TOGETHER_MIN`] rules or more). The verdicts are the same.
pub fn outbound_cached<B: PacketBuf>(
    t: &OutboundTables<'_>,
    cache: &mut FlowCache,
    pkts: &mut [B],
    verdicts: &mut [Verdict],
    drops: &mut DropCounters,
    hits: &mut PolicyHits,
) -> usize {
    outbound_owned(t, Some(cache), None, pkts, verdicts, drops, hits)
}

/// [`outbound`] (with the flow cache if one is given, as [`outbound_cached`]) for one of
/// several pipelines that share the SAs: pipeline `me` encapsulates only the packets of SAs
/// it owns ([`OutboundSa::owner`]; an SA no pipeline has used yet becomes `me`'s). A packet
/// whose SA another pipeline owns gets [`Verdict::Handoff`] with that pipeline's number,
/// before anything is counted for it; the owner, given the packet, classifies it again and
/// counts it then. So each SA's sequence numbers are taken by one pipeline, in the order its
/// packets leave. With `me` `None` (one pipeline) nothing is handed off.
pub fn outbound_owned<B: PacketBuf>(
    t: &OutboundTables<'_>,
    mut cache: Option<&mut FlowCache>,
    me: Option<u16>,
    pkts: &mut [B],
    verdicts: &mut [Verdict],
    drops: &mut DropCounters,
    hits: &mut PolicyHits,
) -> usize {
    if t.spd.len() < crate::spd::WALK_TOGETHER_MIN {
        // A small SPD stays in cache: classify each packet on its own.
        return encap_runs(pkts, verdicts, drops, |stage, i, pkt, v| {
            let step = crate::flow::flow_key(pkt.data())
                .and_then(|k| outbound_one(t, me, t.spd.lookup_id(&k), pkt, hits));
            stage.apply(step, i, pkt, v);
        });
    }
    let mut forwarded = 0;
    for (pkts, verdicts) in pkts.chunks_mut(STAGE).zip(verdicts.chunks_mut(STAGE)) {
        // The run's flow keys first, then one SPD lookup for all of them (their trie walks
        // overlap), then each packet on its own.
        let mut keys: [Option<FlowKey>; STAGE] = [None; STAGE];
        let mut unparsed: [Option<DropReason>; STAGE] = [None; STAGE];
        for (i, (pkt, v)) in pkts.iter().zip(verdicts.iter()).enumerate() {
            if *v == Verdict::Pending {
                match crate::flow::flow_key(pkt.data()) {
                    Ok(k) => keys[i] = Some(k),
                    Err(r) => unparsed[i] = Some(r),
                }
            }
        }
        let n = pkts.len();
        let mut rules = [None; STAGE];
        match cache.as_deref_mut() {
            Some(c) => c.lookup_ids(t.spd, &keys[..n], &mut rules[..n]),
            None => t.spd.lookup_ids(&keys[..n], &mut rules[..n]),
        }
        forwarded += encap_runs(pkts, verdicts, drops, |stage, i, pkt, v| {
            let step = match unparsed[i] {
                Some(r) => Err(r),
                None => outbound_one(
                    t,
                    me,
                    rules[i].and_then(|id| Some((id, t.spd.rules().get(id)?))),
                    pkt,
                    hits,
                ),
            };
            stage.apply(step, i, pkt, v);
        });
    }
    forwarded
}

/// Encapsulates every pending packet of `pkts` with one SA, without SPD lookup or MTU check
/// (for a caller that already chose the SA, such as the fragments of one datagram), as
/// [`outbound`] does: one verdict per packet ([`Verdict::Forward`] or [`Verdict::Drop`], the
/// drops counted in `drops`), the sequence numbers and lifetime counts taken once per run of
/// [`STAGE`] packets. Each packet gets the bytes [`crate::esp::encap`] would give it, in order.
/// Returns how many are to be forwarded.
pub fn encap<B: PacketBuf>(
    sa: &OutboundSa,
    pkts: &mut [B],
    verdicts: &mut [Verdict],
    drops: &mut DropCounters,
) -> usize {
    encap_runs(pkts, verdicts, drops, |stage, i, pkt, v| {
        stage.plan(i, sa, pkt, v)
    })
}

/// The two passes of the outbound functions over each run of [`STAGE`] packets: `first`
/// decides or stages each pending packet, then the staged ones are sealed and the run's
/// verdicts tallied. Returns how many packets are to be forwarded.
fn encap_runs<'a, B: PacketBuf>(
    pkts: &mut [B],
    verdicts: &mut [Verdict],
    drops: &mut DropCounters,
    mut first: impl FnMut(&mut EncapStage<'a>, usize, &mut B, &mut Verdict),
) -> usize {
    let mut forwarded = 0;
    for (pkts, verdicts) in pkts.chunks_mut(STAGE).zip(verdicts.chunks_mut(STAGE)) {
        let mine = pending(verdicts);
        let mut stage = EncapStage::new();
        for (i, (pkt, v)) in pkts.iter_mut().zip(verdicts.iter_mut()).enumerate() {
            if *v == Verdict::Pending {
                first(&mut stage, i, pkt, v);
            }
        }
        stage.seal(pkts, verdicts);
        forwarded += tally(verdicts, mine, drops);
    }
    forwarded
}

/// The packets of a run (at most [`STAGE`]) whose verdict is still pending, as a bit mask.
fn pending(verdicts: &[Verdict]) -> u32 {
    let mut mask = 0;
    for (i, v) in verdicts.iter().enumerate() {
        if *v == Verdict::Pending {
            mask |= 1 << i;
        }
    }
    mask
}

/// Counts the drops (and `TooBig` verdicts) among the packets of a run in `mask` (those this
/// pass decided) under their reasons; returns how many of them are to be forwarded.
fn tally(verdicts: &[Verdict], mask: u32, drops: &mut DropCounters) -> usize {
    let mut forwarded = 0;
    for (i, v) in verdicts.iter().enumerate() {
        if mask & (1 << i) == 0 {
            continue;
        }
        match *v {
            Verdict::Forward => forwarded += 1,
            Verdict::Drop(r) => drops.inc(r),
            Verdict::TooBig(_) => drops.inc(DropReason::TooBig),
            _ => {}
        }
    }
    forwarded
}

/// What the first pass decided for a packet.
enum Step<S> {
    /// Outbound: encapsulate it with this SA in the second pass. Inbound: an IPsec arrival,
    /// looked up and decapsulated in the second pass.
    Staged(S),
    /// Decided.
    Done(Verdict),
}

/// The rest of the outbound path for a packet SPD-out classified under rule `id` (`None`: no
/// rule matched), in pipeline `me` if the SAs' owners count ([`outbound_owned`]).
fn outbound_one<'a, B: PacketBuf>(
    t: &OutboundTables<'a>,
    me: Option<u16>,
    rule: Option<(usize, &'a Rule<OutboundTarget>)>,
    pkt: &mut B,
    hits: &mut PolicyHits,
) -> Result<Step<&'a OutboundSa>, DropReason> {
    let (id, rule) = rule.ok_or(DropReason::PolicyDiscard)?;
    if let (Some(me), Action::Protect(target)) = (me, &rule.action) {
        if let Some(sa) = target.sa_for(Some(me)) {
            let owner = sa.owner(me);
            if owner != me {
                return Ok(Step::Done(Verdict::Handoff(owner)));
            }
        }
    }
    hits.hit(id, pkt.data().len());
    match &rule.action {
        // Clear traffic may leave by any port (the caller's routes know which, and its MTU).
        Action::Bypass => Ok(Step::Done(Verdict::Forward)),
        Action::Discard => Err(DropReason::PolicyDiscard),
        Action::Protect(target) => {
            let sa = target
                .sa_for(me)
                .map(Arc::as_ref)
                .ok_or(DropReason::NoSaForPolicy)?;
            let mtu = sa.egress_mtu().unwrap_or(t.mtu);
            match icmp_err::oversize(pkt.data(), sa.max_inner_len(mtu)) {
                Oversize::Fits => Ok(Step::Staged(sa)),
                Oversize::Fragment(max) => Ok(Step::Done(Verdict::Fragment(max))),
                Oversize::TooBig(_)
                    if sa.mode == Mode::Tunnel && icmp_err::v6_minimum(pkt.data()) =>
                {
                    Ok(Step::Done(Verdict::FragmentOuter(mtu)))
                }
                Oversize::TooBig(max) => Ok(Step::Done(Verdict::TooBig(max))),
            }
        }
    }
}

/// Up to [`STAGE`] packets measured for ESP encapsulation, each with its SA, waiting for their
/// sequence numbers.
struct EncapStage<'a> {
    sa: [Option<&'a OutboundSa>; STAGE],
    plan: [EspPlan; STAGE],
}

impl<'a> EncapStage<'a> {
    fn new() -> Self {
        Self {
            sa: [None; STAGE],
            plan: [EspPlan::default(); STAGE],
        }
    }

    /// Stages packet `i` for its SA, or writes the verdict the first pass reached.
    #[inline]
    fn apply<B: PacketBuf>(
        &mut self,
        step: Result<Step<&'a OutboundSa>, DropReason>,
        i: usize,
        pkt: &mut B,
        v: &mut Verdict,
    ) {
        match step {
            Ok(Step::Staged(sa)) => self.plan(i, sa, pkt, v),
            Ok(Step::Done(v2)) => *v = v2,
            Err(r) => *v = Verdict::Drop(r),
        }
    }

    /// Measures packet `i` for `sa` (ESP), leaving its verdict pending, or decides it: AH
    /// packets are encapsulated at once, and refused packets get their drop verdict.
    fn plan<B: PacketBuf>(&mut self, i: usize, sa: &'a OutboundSa, pkt: &mut B, v: &mut Verdict) {
        let r = match &sa.crypto {
            SaCrypto::Esp(_) => match crate::esp::plan_esp(sa, pkt, &mut self.plan[i]) {
                Ok(()) => {
                    self.sa[i] = Some(sa);
                    return;
                }
                Err(r) => Err(r),
            },
            SaCrypto::Ah(_) => crate::esp::encap(sa, pkt),
        };
        *v = match r {
            Ok(()) => Verdict::Forward,
            Err(r) => Verdict::Drop(r),
        };
    }

    /// Gives each SA's packets their sequence numbers and counts them, once per SA, then
    /// seals them and writes their verdicts.
    fn seal<B: PacketBuf>(&self, pkts: &mut [B], verdicts: &mut [Verdict]) {
        for_each_sa(&self.sa, |sa, members| {
            let SaCrypto::Esp(t) = &sa.crypto else {
                return;
            };
            let mut lens = [0u32; STAGE];
            for (l, &i) in lens.iter_mut().zip(members) {
                *l = self.plan[usize::from(i)].len;
            }
            let (first, granted) = sa.reserve_seqs(members.len() as u64);
            let granted = granted as usize;
            let counted = sa.reserve_counts(&lens[..granted]);
            // Every packet's nonce and AAD before the first seal (see EspTransform::prepare).
            let mut preps = [SealPrep::default(); STAGE];
            t.prepare(sa.spi, first, sa.esn, &mut preps[..counted]);
            for (k, &i) in members.iter().enumerate() {
                let i = usize::from(i);
                let r = if let Some(prep) = preps[..counted].get(k) {
                    crate::esp::seal_esp(sa, t.as_ref(), &mut pkts[i], &self.plan[i], prep)
                } else if k < granted {
                    Err(DropReason::SaExpired)
                } else {
                    Err(DropReason::SeqExhausted)
                };
                verdicts[i] = match r {
                    Ok(()) => Verdict::Forward,
                    Err(r) => Verdict::Drop(r),
                };
            }
        });
    }
}

/// Calls `f` once for each distinct SA in `sas` (one slot per packet of a run, `None` for
/// packets it has no business with), with the positions of that SA's packets in order. SAs
/// are told apart by address.
fn for_each_sa<T>(sas: &[Option<&T>; STAGE], mut f: impl FnMut(&T, &[u8])) {
    let mut todo: u32 = 0;
    for (i, s) in sas.iter().enumerate() {
        if s.is_some() {
            todo |= 1 << i;
        }
    }
    let mut members = [0u8; STAGE];
    while todo != 0 {
        let first = todo.trailing_zeros() as usize;
        let Some(sa) = sas[first] else { break };
        let mut n = 0;
        let mut rest = todo;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if sas[i].is_some_and(|s| std::ptr::eq(s, sa)) {
                members[n] = i as u8;
                n += 1;
                todo &= !(1 << i);
            }
        }
        f(sa, &members[..n]);
    }
}

/// Runs the inbound pipeline over `pkts`, writing one verdict per packet. Packets already
/// holding a non-`Pending` verdict are skipped. Returns how many are to be forwarded.
/// Packets that arrive in the clear are counted in `hits` under the SPD-in policy that
/// classified them; protected packets are checked against their SA's selectors instead
/// (RFC 4301 §5.2) and counted per SA.
pub fn inbound<B: PacketBuf>(
    t: &InboundTables<'_>,
    pkts: &mut [B],
    verdicts: &mut [Verdict],
    drops: &mut DropCounters,
    hits: &mut PolicyHits,
) -> usize {
    let mut forwarded = 0;
    for (pkts, verdicts) in pkts.chunks_mut(STAGE).zip(verdicts.chunks_mut(STAGE)) {
        let mine = pending(verdicts);
        // Decapsulated packets wait here, with their SA and length, to be counted.
        let mut sas: [Option<&InboundSa>; STAGE] = [None; STAGE];
        let mut lens = [0u32; STAGE];
        // Every packet classified before the first SAD lookup: a lookup reading the outer
        // header's fields (SPI, destination) right after classify wrote them made the CPU
        // wait for those stores (the 8-byte read of the address spans a 1- and a 4-byte
        // store, which cannot be forwarded); a run later they are plain L1 reads.
        let mut outers: [Option<Outer>; STAGE] = [None; STAGE];
        for (i, (pkt, v)) in pkts.iter_mut().zip(verdicts.iter_mut()).enumerate() {
            if *v != Verdict::Pending {
                continue;
            }
            match arrival(t, pkt, hits) {
                Ok(Step::Staged(o)) => outers[i] = Some(o),
                Ok(Step::Done(v2)) => *v = v2,
                Err(r) => *v = Verdict::Drop(r),
            }
        }
        // Every arrival's SA. Transforms that gain from it (ipsec-mb's AES-GCM) derive what
        // they can ahead (the nonce) and decapsulate in a second loop, once every such arrival
        // is prepared: a nonce built just before the crypto call made the library's load of it
        // wait for the stores (~12 ns a packet). The others decapsulate at once. An SA's
        // arrivals stay in order either way.
        let mut later: [Option<&InboundSa>; STAGE] = [None; STAGE];
        let mut preps = [OpenPrep::default(); STAGE];
        for (i, (pkt, v)) in pkts.iter_mut().zip(verdicts.iter_mut()).enumerate() {
            let Some(o) = &outers[i] else { continue };
            let Some(sa) = t.sad.get(o.spi, o.dst) else {
                *v = if t.is_local(o.dst) {
                    Verdict::Drop(DropReason::NoSa)
                } else {
                    clear(t, pkt, hits).unwrap_or_else(Verdict::Drop)
                };
                continue;
            };
            if sa.open_ahead {
                crate::esp::prepare_open(sa, pkt.data(), o, &mut preps[i]);
                later[i] = Some(sa.as_ref());
                continue;
            }
            match crate::esp::decap_uncounted(sa, pkt, o, &OpenPrep::default()) {
                Ok(()) => {
                    sas[i] = Some(sa.as_ref());
                    lens[i] = pkt.len() as u32;
                }
                Err(r) => *v = Verdict::Drop(r),
            }
        }
        for (i, (pkt, v)) in pkts.iter_mut().zip(verdicts.iter_mut()).enumerate() {
            let (Some(o), Some(sa)) = (&outers[i], later[i]) else {
                continue;
            };
            match crate::esp::decap_uncounted(sa, pkt, o, &preps[i]) {
                Ok(()) => {
                    sas[i] = Some(sa);
                    lens[i] = pkt.len() as u32;
                }
                Err(r) => *v = Verdict::Drop(r),
            }
        }
        for_each_sa(&sas, |sa, members| {
            let mut run = [0u32; STAGE];
            for (l, &i) in run.iter_mut().zip(members) {
                *l = lens[usize::from(i)];
            }
            let counted = sa.reserve_counts(&run[..members.len()]);
            for (k, &i) in members.iter().enumerate() {
                verdicts[usize::from(i)] = if k < counted {
                    Verdict::Forward
                } else {
                    Verdict::Drop(DropReason::SaExpired)
                };
            }
        });
        forwarded += tally(verdicts, mine, drops);
    }
    forwarded
}

/// The first inbound step for a packet: IPsec arrivals are staged with their outer header for
/// the SAD lookup and decapsulation that follow; everything else is decided here.
#[inline]
fn arrival<B: PacketBuf>(
    t: &InboundTables<'_>,
    pkt: &mut B,
    hits: &mut PolicyHits,
) -> Result<Step<Outer>, DropReason> {
    let ports = t.natt_ports;
    let arrival = outer::classify(pkt.data(), |p| ports.contains(&p))?;
    // IKE and keepalives for another address pass through (ESP and AH to one: after the SAD).
    let ours = || {
        t.local.is_none() || outer::ip_headers(pkt.data()).is_ok_and(|(_, dst, ..)| t.is_local(dst))
    };
    match arrival {
        Arrival::Ipsec(o) => Ok(Step::Staged(o)),
        Arrival::Ike if ours() => Ok(Step::Done(Verdict::ToControlPlane)),
        Arrival::NatKeepalive if ours() => Err(DropReason::ControlPlane),
        Arrival::Ike | Arrival::NatKeepalive | Arrival::Clear => {
            clear(t, pkt, hits).map(Step::Done)
        }
    }
}

/// SPD-in's verdict for a packet that arrived in the clear (or IPsec not for this device).
#[inline]
fn clear<B: PacketBuf>(
    t: &InboundTables<'_>,
    pkt: &mut B,
    hits: &mut PolicyHits,
) -> Result<Verdict, DropReason> {
    let key = crate::flow::flow_key(pkt.data())?;
    let rule = t.spd.lookup_id(&key);
    if let Some((id, _)) = rule {
        hits.hit(id, pkt.data().len());
    }
    match rule.map(|(_, r)| &r.action) {
        Some(Action::Bypass) => Ok(Verdict::Forward),
        Some(Action::Protect(())) => Err(DropReason::UnprotectedInbound),
        Some(Action::Discard) | None => Err(DropReason::PolicyDiscard),
    }
}
