//! Burst-level pipelines: a fixed array of packets in, one verdict per packet out.
//!
//! Outbound: classify (SPD-out) → encapsulate. Inbound: classify the outer packet → SAD lookup →
//! replay check → decrypt → replay update → selector check (RFC 4301 §5.2), or, for packets that
//! arrive in the clear, the inbound SPD. Nothing is allocated per packet or per burst; every drop
//! is counted under its reason.

use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::drop::{DropCounters, DropReason};
use crate::icmp_err::{self, Oversize};
use crate::outer::{self, Arrival};
use crate::sa::{InboundSa, OutboundSa};
use crate::sad::Sad;
use crate::spd::{Action, PolicyHits, Spd};

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
}

/// An outbound PROTECT policy's target: the SA to use, once the control plane installed one.
#[derive(Debug, Clone)]
pub struct OutboundTarget {
    /// The policy's identifier, reported with acquire events.
    pub policy_id: u32,
    /// The SA, or `None` while it is being negotiated.
    pub sa: Option<Arc<OutboundSa>>,
}

/// The tables an outbound burst reads.
#[derive(Debug, Clone, Copy)]
pub struct OutboundTables<'a> {
    /// SPD-out.
    pub spd: &'a Spd<OutboundTarget>,
    /// The MTU of the port encapsulated packets leave by.
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
}

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
    let mut forwarded = 0;
    for (pkt, v) in pkts.iter_mut().zip(verdicts.iter_mut()) {
        if *v != Verdict::Pending {
            continue;
        }
        *v = match outbound_one(t, pkt, hits) {
            Ok(Verdict::Forward) => {
                forwarded += 1;
                Verdict::Forward
            }
            Ok(Verdict::TooBig(mtu)) => {
                drops.inc(DropReason::TooBig);
                Verdict::TooBig(mtu)
            }
            Ok(v) => v,
            Err(r) => {
                drops.inc(r);
                Verdict::Drop(r)
            }
        };
    }
    forwarded
}

fn outbound_one<B: PacketBuf>(
    t: &OutboundTables<'_>,
    pkt: &mut B,
    hits: &mut PolicyHits,
) -> Result<Verdict, DropReason> {
    let key = crate::flow::flow_key(pkt.data())?;
    let (id, rule) = t.spd.lookup_id(&key).ok_or(DropReason::PolicyDiscard)?;
    hits.hit(id, pkt.data().len());
    match &rule.action {
        Action::Bypass => Ok(Verdict::Forward),
        Action::Discard => Err(DropReason::PolicyDiscard),
        Action::Protect(target) => {
            let sa = target.sa.as_ref().ok_or(DropReason::NoSaForPolicy)?;
            match icmp_err::oversize(pkt.data(), sa.max_inner_len(t.mtu)) {
                Oversize::Fits => crate::esp::encap(sa, pkt).map(|()| Verdict::Forward),
                Oversize::Fragment(max) => Ok(Verdict::Fragment(max)),
                Oversize::TooBig(max) => Ok(Verdict::TooBig(max)),
            }
        }
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
    for (pkt, v) in pkts.iter_mut().zip(verdicts.iter_mut()) {
        if *v != Verdict::Pending {
            continue;
        }
        *v = match inbound_one(t, pkt, hits) {
            Ok(v) => v,
            Err(r) => {
                drops.inc(r);
                Verdict::Drop(r)
            }
        };
        if *v == Verdict::Forward {
            forwarded += 1;
        }
    }
    forwarded
}

fn inbound_one<B: PacketBuf>(
    t: &InboundTables<'_>,
    pkt: &mut B,
    hits: &mut PolicyHits,
) -> Result<Verdict, DropReason> {
    let ports = t.natt_ports;
    match outer::classify(pkt.data(), |p| ports.contains(&p))? {
        Arrival::Ipsec(o) => {
            let sa = t.sad.get(o.spi, o.dst).ok_or(DropReason::NoSa)?;
            crate::esp::decap(sa, pkt, &o)?;
            Ok(Verdict::Forward)
        }
        Arrival::Ike => Ok(Verdict::ToControlPlane),
        Arrival::NatKeepalive => Err(DropReason::ControlPlane),
        Arrival::Clear => {
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
    }
}
