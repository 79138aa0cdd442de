//! Typed drop reasons. Every packet the data plane does not forward leaves through exactly one of
//! these, and each maps to a counter: nothing is dropped silently, and the hot path never
//! formats a string.

macro_rules! drop_reasons {
    ($($(#[$m:meta])* $name:ident => $text:literal,)*) => {
        /// Why a packet was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[$m])* $name,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// How many reasons there are (the length of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// A stable snake_case name, used for counters in CLI and JSON output.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$name => $text,)*
                }
            }

            /// Index of this reason's counter.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    /// The packet is not a well-formed frame or IP packet (too short, bad header length...).
    Malformed => "malformed",
    /// The packet is neither IPv4 nor IPv6.
    NotIp => "not_ip",
    /// An ESP or AH packet whose SPI (and destination) matches no SA.
    NoSa => "no_sa",
    /// Anti-replay: this sequence number was already received (RFC 4303 §3.4.3).
    ReplayDuplicate => "replay_duplicate",
    /// Anti-replay: the sequence number is left of the window.
    ReplayTooOld => "replay_too_old",
    /// The integrity check value did not verify.
    IcvMismatch => "icv_mismatch",
    /// The ESP payload is not a multiple of the cipher's block size or is shorter than IV + ICV.
    BadLength => "bad_length",
    /// ESP padding bytes are not 1, 2, 3... (RFC 4303 §2.4) or the pad length is impossible.
    BadPadding => "bad_padding",
    /// The ESP trailer's next header does not fit the SA's mode.
    BadNextHeader => "bad_next_header",
    /// The decapsulated inner packet is malformed.
    InnerMalformed => "inner_malformed",
    /// A dummy packet (next header 59, RFC 4303 §2.6): consumed, not forwarded.
    DummyPacket => "dummy_packet",
    /// After decapsulation the inner packet does not match the SA's selectors (RFC 4301 §5.2).
    PolicyMismatch => "policy_mismatch",
    /// The packet arrived in the clear but the inbound SPD requires protection.
    UnprotectedInbound => "unprotected_inbound",
    /// An SPD rule says DISCARD.
    PolicyDiscard => "policy_discard",
    /// A PROTECT rule has no SA yet (an acquire is raised to the control plane).
    NoSaForPolicy => "no_sa_for_policy",
    /// The outbound sequence number would wrap without ESN (RFC 4303 §3.3.3).
    SeqExhausted => "seq_exhausted",
    /// The SA reached a hard lifetime (bytes, packets) and may no longer be used.
    SaExpired => "sa_expired",
    /// The buffer has no headroom for the outer headers.
    NoHeadroom => "no_headroom",
    /// The buffer has no tailroom for padding and ICV.
    NoTailroom => "no_tailroom",
    /// UDP-encapsulated ESP with a non-ESP marker or a bad UDP header where ESP was expected.
    BadUdpEncap => "bad_udp_encap",
    /// The packet (after encapsulation) exceeds the path MTU and cannot be fragmented.
    TooBig => "too_big",
    /// TTL or hop limit reached zero.
    TtlExceeded => "ttl_exceeded",
    /// No route for the destination.
    NoRoute => "no_route",
    /// The next hop's MAC is not known yet (an ARP request / neighbor solicitation went out)
    /// or it did not answer.
    NeighbourUnresolved => "neighbour_unresolved",
    /// An outer IP fragment of an ESP/AH packet (reassembly happens before the core).
    OuterFragment => "outer_fragment",
    /// Outer fragments that could not be reassembled (overlapping, inconsistent, too big).
    Reassembly => "reassembly",
    /// RFC 6040 §4.2: outer CE on a Not-ECT inner packet must be dropped.
    EcnCeOnNotEct => "ecn_ce_on_not_ect",
    /// The mempool had no mbuf for a fragment or an ICMP error.
    NoMbuf => "no_mbuf",
    /// An ICMP error about a packet of a family the gateway has no address of on that side.
    NoIcmpSource => "no_icmp_source",
    /// The port's transmit queue refused a full burst: the packets it did not take are dropped
    /// rather than queued without bound.
    TxFull => "tx_full",
    /// The pipeline that owns the packet's SA (see `OutboundSa::owner`) had no room left in
    /// its hand-off ring: it is behind, and the packet is dropped rather than sealed out of
    /// sequence order by another pipeline.
    HandoffFull => "handoff_full",
    /// The packet is an IKE datagram or NAT keepalive, not data: handed to the control plane.
    ControlPlane => "control_plane",
    /// IKE to or from a VRRP virtual address while this gateway is not its master.
    VrrpBackup => "vrrp_backup",
    /// A unicast frame addressed to another station's MAC (a bridge flooding what it has not
    /// learned, a port that hears everything): not this router's to forward or answer, as the
    /// Linux stack drops `PACKET_OTHERHOST` frames.
    OtherHost => "other_host",
    /// An IPv4 header whose checksum does not verify (RFC 1812 §5.2.2: a router "MUST
    /// discard" it, and sends no ICMP error about it).
    BadIpChecksum => "bad_ip_checksum",
}

/// One counter per [`DropReason`]. Plain integers: each worker owns its own set and the stats
/// reader sums them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::COUNT],
}

impl Default for DropCounters {
    fn default() -> Self {
        Self {
            counts: [0; DropReason::COUNT],
        }
    }
}

impl DropCounters {
    /// Counts one drop.
    #[inline]
    pub fn inc(&mut self, reason: DropReason) {
        self.counts[reason.index()] += 1;
    }
    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }
    /// Total drops over all reasons.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// Non-zero counters with their names, in counter order.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, c)| *c != 0)
    }
    /// Adds another set of counters into this one.
    pub fn merge(&mut self, other: &DropCounters) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indices_dense() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn counters_count() {
        let mut c = DropCounters::default();
        c.inc(DropReason::IcvMismatch);
        c.inc(DropReason::IcvMismatch);
        c.inc(DropReason::NoSa);
        assert_eq!(c.get(DropReason::IcvMismatch), 2);
        assert_eq!(c.total(), 3);
        let v: Vec<_> = c.nonzero().collect();
        assert_eq!(v, vec![(DropReason::NoSa, 1), (DropReason::IcvMismatch, 2)]);
    }
}
