//! SA-state sync between the two gateways of a VRRP pair (`ha:` in the configuration).
//!
//! The master's `ferrogate-ike` sends the other gateway, twice a second and whenever its SAs
//! change, a [`Snapshot`]: every CHILD_SA pair it installed in its data plane (keys included)
//! and the data plane's last report of their sequence numbers. The backup keeps the newest.
//! When VRRP makes it master, it installs those pairs at once, numbering outbound past what
//! was reported used (the bound `ChildSa::continue_after` applies, as after a data-plane
//! restart), so traffic flows again as soon as the addresses move, before any IKE exchange;
//! then it negotiates a new IKE SA (INITIAL_CONTACT) whose CHILD_SAs replace the synced ones.
//!
//! On the wire: a snapshot is cut into [`Part`]s, each one UDP datagram `nonce (12) ||
//! AES-256-GCM(JSON)` with the associated data [`AAD`], small enough for a 1500-byte MTU
//! ([`PART_BYTES`]: one or two SA pairs each), so that no snapshot depends on IP
//! fragmentation and none is too large to send. The key comes from the shared secret
//! (`config::HaConfig`). A receiver puts the parts together ([`Assembly`]) and takes a
//! snapshot only once every part of it is in, and only if it is newer than the last one from
//! the same sender incarnation (`boot`, `seq`), and from a new incarnation only if it was
//! sent within [`MAX_AGE_MS`] by the wall clock. A part lost means that snapshot is not taken;
//! the next one follows within half a second.

use crate::ike::sa::IkeSaState;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use dataplane::ctl::{ChildSa, SaReport, VrrpMaster, SYNC_ADVERTS_MAX};

/// Associated data of every sync message (version and purpose). Version 2: snapshots in
/// parts (version 1 sent one datagram per snapshot, at most ~80 pairs).
pub const AAD: &[u8] = b"ferrogate HA sync v2";
/// Oldest snapshot of a new sender incarnation taken (wall-clock milliseconds).
pub const MAX_AGE_MS: u64 = 30_000;
/// Plaintext budget of one part: with the nonce, the tag and IPv6 and UDP headers its
/// datagram stays under 1500 bytes. A pair or an IKE SA whose JSON is larger (long keys, many
/// traffic selectors; an IKE SA's state is ~1.3 KB, more with a request in flight) travels
/// alone, and its datagram may then be fragmented (on the gateways' own link).
pub const PART_BYTES: usize = 1_300;
/// Largest datagram [`open`] reads (a part holds one pair at the least, far below this);
/// what an authenticated peer can make a receiver hold is bounded by it and [`MAX_PARTS`].
pub const MAX_DATAGRAM: usize = 16_384;
/// Largest IKE SA state (JSON) a snapshot carries: with its part's other fields, the nonce and
/// the tag, its datagram stays within [`MAX_DATAGRAM`] (`IkeSa::export` leaves larger ones out).
pub const IKE_STATE_MAX: usize = 15_000;
/// Most parts of one snapshot (what a receiver holds while it assembles one is bounded by
/// it): 4096 parts carry 4096 pairs at the least.
pub const MAX_PARTS: usize = 4_096;

/// What the master holds, as the backup needs it to take over.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The sender's incarnation (random at start).
    pub boot: u64,
    /// Counts up per snapshot of one incarnation.
    pub seq: u64,
    /// When it was sent: milliseconds since the Unix epoch.
    pub sent_ms: u64,
    /// The CHILD_SA pairs installed in the sender's data plane.
    pub sas: Vec<ChildSa>,
    /// The data plane's last report of them (sequence numbers used and seen).
    pub report: Vec<SaReport>,
    /// How old that report was when the snapshot was sent, ms.
    pub report_age_ms: u64,
    /// The sender's established IKE SAs of those tunnels (none from a version before them).
    #[serde(default)]
    pub ike: Vec<IkeSaState>,
    /// The VRRP routers the sender's data plane is master of (none from a version before
    /// them): the receiver's data plane takes each as an advertisement of that router, a
    /// second path for when the wire loses them (split brain). At most
    /// [`SYNC_ADVERTS_MAX`]: a part with more is refused.
    #[serde(default)]
    pub vrrp: Vec<VrrpMaster>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("boot", &self.boot)
            .field("seq", &self.seq)
            .field("sas", &self.sas.len())
            .field("ike", &self.ike.len())
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One datagram's share of a snapshot: its SA pairs `part` of `parts`, with their entries of
/// the report, and the snapshot's own fields (each part is authenticated on its own).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// [`Snapshot::boot`].
    pub boot: u64,
    /// [`Snapshot::seq`].
    pub seq: u64,
    /// [`Snapshot::sent_ms`].
    pub sent_ms: u64,
    /// [`Snapshot::report_age_ms`].
    pub report_age_ms: u64,
    /// This part's index, from 0.
    pub part: u32,
    /// How many parts the snapshot has (1 to [`MAX_PARTS`]).
    pub parts: u32,
    /// Its SA pairs.
    pub sas: Vec<ChildSa>,
    /// The report's entries of those pairs.
    pub report: Vec<SaReport>,
    /// Its IKE SAs.
    #[serde(default)]
    pub ike: Vec<IkeSaState>,
    /// [`Snapshot::vrrp`], in the first part only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vrrp: Vec<VrrpMaster>,
}

/// Cuts a snapshot into parts of about [`PART_BYTES`] of JSON (an empty snapshot is one part
/// with no pairs) and seals each for the wire. Refused past [`MAX_PARTS`].
pub fn seal(key: &[u8; 32], snap: &Snapshot) -> Result<Vec<Vec<u8>>, String> {
    let mut by_spi: std::collections::HashMap<u32, Vec<&SaReport>> = Default::default();
    for r in &snap.report {
        by_spi.entry(r.spi_in).or_default().push(r);
    }
    if snap.vrrp.len() > SYNC_ADVERTS_MAX {
        return Err(format!(
            "{} VRRP masters, more than {SYNC_ADVERTS_MAX}",
            snap.vrrp.len()
        ));
    }
    let mut shares = vec![Share::default()];
    // The VRRP masters travel in the first part.
    let mut used = FRAME + json_len(&snap.vrrp);
    for sa in &snap.sas {
        let report: Vec<SaReport> = by_spi
            .get(&sa.spi_in)
            .into_iter()
            .flatten()
            .map(|&r| r.clone())
            .collect();
        let cost = json_len(sa) + report.iter().map(|r| json_len(r) + 1).sum::<usize>() + 1;
        let share = share_for(&mut shares, &mut used, cost);
        share.sas.push(sa.clone());
        share.report.extend(report);
    }
    for ike in &snap.ike {
        share_for(&mut shares, &mut used, json_len(ike) + 1)
            .ike
            .push(ike.clone());
    }
    if shares.len() > MAX_PARTS {
        return Err(format!(
            "{} SA pairs and {} IKE SAs need {} parts, more than {MAX_PARTS}",
            snap.sas.len(),
            snap.ike.len(),
            shares.len()
        ));
    }
    let parts = shares.len() as u32;
    Ok(shares
        .into_iter()
        .enumerate()
        .map(|(i, Share { sas, report, ike })| {
            seal_part(
                key,
                &Part {
                    boot: snap.boot,
                    seq: snap.seq,
                    sent_ms: snap.sent_ms,
                    report_age_ms: snap.report_age_ms,
                    part: i as u32,
                    parts,
                    sas,
                    report,
                    ike,
                    vrrp: if i == 0 {
                        snap.vrrp.clone()
                    } else {
                        Vec::new()
                    },
                },
            )
        })
        .collect())
}

/// The snapshot's fields and a part's framing in its JSON, with room for large numbers.
const FRAME: usize = 220;

/// One part's share of a snapshot while it is cut.
#[derive(Default)]
struct Share {
    sas: Vec<ChildSa>,
    report: Vec<SaReport>,
    ike: Vec<IkeSaState>,
}

/// The share an item of `cost` bytes of JSON goes into (`used`: the last share's bytes so
/// far): the last one, or a new one if the item would take it past [`PART_BYTES`]. An item
/// larger than that takes a share of its own.
fn share_for<'a>(shares: &'a mut Vec<Share>, used: &mut usize, cost: usize) -> &'a mut Share {
    let last_empty = shares
        .last()
        .is_none_or(|s| s.sas.is_empty() && s.ike.is_empty());
    if *used + cost > PART_BYTES && !last_empty {
        shares.push(Share::default());
        *used = FRAME;
    }
    *used += cost;
    shares.last_mut().expect("one share at least")
}

/// Bytes of `v` as JSON (the buffer, which may hold keys, is wiped).
fn json_len<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(0, |b| zeroize::Zeroizing::new(b).len())
}

fn seal_part(key: &[u8; 32], part: &Part) -> Vec<u8> {
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(part).unwrap_or_default());
    let nonce = crate::ike::crypto::random_bytes(12);
    let cipher = Aes256Gcm::new(key.into());
    let sealed = cipher
        .encrypt(
            nonce.as_slice().into(),
            Payload {
                msg: &plain,
                aad: AAD,
            },
        )
        .unwrap_or_default();
    let mut out = nonce;
    out.extend_from_slice(&sealed);
    out
}

/// Opens a datagram: the part of a snapshot, or why not.
pub fn open(key: &[u8; 32], b: &[u8]) -> Result<Part, String> {
    if b.len() < 12 + 16 {
        return Err("sync datagram too short".into());
    }
    if b.len() > MAX_DATAGRAM {
        return Err(format!("sync datagram of {} bytes: too long", b.len()));
    }
    let cipher = Aes256Gcm::new(key.into());
    let plain = cipher
        .decrypt(
            b[..12].into(),
            Payload {
                msg: &b[12..],
                aad: AAD,
            },
        )
        .map_err(|_| {
            "sync datagram does not authenticate (another secret, or another version of the \
             sync?)"
                .to_string()
        })?;
    let plain = zeroize::Zeroizing::new(plain);
    let p: Part = serde_json::from_slice(&plain).map_err(|e| format!("sync snapshot: {e}"))?;
    if !p.numbered_right() {
        return Err(format!("sync snapshot: part {} of {}", p.part, p.parts));
    }
    if p.vrrp.len() > SYNC_ADVERTS_MAX || (p.part != 0 && !p.vrrp.is_empty()) {
        return Err(format!(
            "sync snapshot: {} VRRP masters in part {}",
            p.vrrp.len(),
            p.part
        ));
    }
    Ok(p)
}

impl Part {
    /// Whether `part` is one of `parts`, and `parts` 1 to [`MAX_PARTS`].
    pub fn numbered_right(&self) -> bool {
        self.parts != 0 && self.parts as usize <= MAX_PARTS && self.part < self.parts
    }
}

/// Puts the parts of the newest snapshot together: parts of an older snapshot than the one in
/// progress, or of one [`Freshness`] would refuse, are dropped; a newer one's first part
/// starts over (what was gathered of the older is let go).
#[derive(Debug, Default)]
pub struct Assembly {
    /// (boot, seq, sent_ms, report_age_ms) of the snapshot in progress.
    of: Option<(u64, u64, u64, u64)>,
    got: Vec<Option<Part>>,
    missing: usize,
}

impl Assembly {
    /// Takes a part; the whole snapshot once its last part is in (not yet taken by
    /// `fresh`: the caller decides).
    pub fn push(&mut self, p: Part, fresh: &Freshness, now_ms: u64) -> Option<Snapshot> {
        if !p.numbered_right() {
            return None;
        }
        let id = (p.boot, p.seq, p.sent_ms, p.report_age_ms);
        if self.of != Some(id) {
            if !fresh.would_take(p.boot, p.seq, p.sent_ms, now_ms)
                || self.of.is_some_and(|(b, q, _, _)| b == p.boot && q > p.seq)
            {
                return None;
            }
            self.of = Some(id);
            self.got = vec![None; p.parts as usize];
            self.missing = p.parts as usize;
        }
        if self.got.len() != p.parts as usize {
            return None;
        }
        let slot = self.got.get_mut(p.part as usize)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(p);
        self.missing -= 1;
        if self.missing > 0 {
            return None;
        }
        let (boot, seq, sent_ms, report_age_ms) = self.of.take()?;
        let mut snap = Snapshot {
            boot,
            seq,
            sent_ms,
            sas: Vec::new(),
            report: Vec::new(),
            report_age_ms,
            ike: Vec::new(),
            vrrp: Vec::new(),
        };
        for p in std::mem::take(&mut self.got).into_iter().flatten() {
            snap.sas.extend(p.sas);
            snap.report.extend(p.report);
            snap.ike.extend(p.ike);
            if p.part == 0 {
                snap.vrrp = p.vrrp;
                snap.vrrp.truncate(SYNC_ADVERTS_MAX);
            }
        }
        Some(snap)
    }
}

/// The receiving side's memory of the sender: which snapshots are new.
#[derive(Debug, Default)]
pub struct Freshness {
    /// (boot, seq, sent_ms) of the last snapshot taken.
    last: Option<(u64, u64, u64)>,
}

impl Freshness {
    /// Whether `s` is newer than everything taken so far (and takes note of it): a later
    /// `seq` of the same incarnation, or a snapshot of another incarnation sent (by its wall
    /// clock) after the last one taken and within [`MAX_AGE_MS`] of now. A replayed datagram
    /// carries its old `seq` and `sent_ms` (they are authenticated), so it is refused.
    pub fn take(&mut self, s: &Snapshot, now_ms: u64) -> bool {
        let fresh = self.would_take(s.boot, s.seq, s.sent_ms, now_ms);
        if fresh {
            self.last = Some((s.boot, s.seq, s.sent_ms));
        }
        fresh
    }

    /// Whether [`Freshness::take`] would take a snapshot of these fields now.
    pub fn would_take(&self, boot: u64, seq: u64, sent_ms: u64, now_ms: u64) -> bool {
        let recent = sent_ms.saturating_add(MAX_AGE_MS) >= now_ms
            && sent_ms <= now_ms.saturating_add(MAX_AGE_MS);
        match self.last {
            Some((b, q, _)) if b == boot => seq > q,
            Some((_, _, sent)) => recent && sent_ms > sent,
            None => recent,
        }
    }
}

/// Whole seconds (rounded up) since the data plane behind snapshot `s` took its report, by the
/// wall clock: what [`ChildSa::continue_after`] must cover. Counted from `sent_ms`, which is
/// authenticated, so that a snapshot that reached us late (or was held back) covers the time
/// it spent on the way.
pub fn report_age_secs(s: &Snapshot, now_ms: u64) -> u64 {
    let ms = now_ms
        .saturating_sub(s.sent_ms)
        .saturating_add(s.report_age_ms);
    ms.div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(boot: u64, seq: u64, sent_ms: u64) -> Snapshot {
        Snapshot {
            boot,
            seq,
            sent_ms,
            sas: vec![ChildSa::example()],
            report: Vec::new(),
            report_age_ms: 120,
            ike: Vec::new(),
            vrrp: Vec::new(),
        }
    }

    #[test]
    fn sealed_snapshots_open_only_with_the_key() {
        let key = [7u8; 32];
        let parts = seal(&key, &snap(1, 2, 3)).unwrap();
        assert_eq!(parts.len(), 1);
        let b = parts[0].clone();
        let s = open(&key, &b).unwrap();
        assert_eq!((s.boot, s.seq, s.sent_ms, s.report_age_ms), (1, 2, 3, 120));
        assert_eq!((s.part, s.parts), (0, 1));
        assert_eq!(s.sas.len(), 1);
        assert_eq!(s.sas[0].enc_in, ChildSa::example().enc_in);
        // The keys do not travel in the clear.
        let hex_key = ChildSa::example().enc_in;
        assert!(!String::from_utf8_lossy(&b).contains(&*hex_key));
        assert!(open(&[8u8; 32], &b).is_err());
        for i in [0, 12, b.len() - 1] {
            let mut t = b.clone();
            t[i] ^= 1;
            assert!(open(&key, &t).is_err(), "byte {i}");
        }
        assert!(open(&key, &b[..27]).is_err());
    }

    /// A snapshot of `n` pairs (distinct SPIs), each with a report entry.
    fn big(boot: u64, seq: u64, sent_ms: u64, n: u32) -> Snapshot {
        let mut s = snap(boot, seq, sent_ms);
        s.sas = (0..n)
            .map(|i| ChildSa {
                spi_in: 0x1000_0000 + i,
                spi_out: 0x2000_0000 + i,
                tunnel: format!("tunnel-{i}"),
                ..ChildSa::example()
            })
            .collect();
        s.report = s
            .sas
            .iter()
            .map(|sa| SaReport {
                tunnel: sa.tunnel.clone(),
                child: sa.child.clone(),
                spi_in: sa.spi_in,
                spi_out: sa.spi_out,
                active: true,
                out_packets: 1,
                out_bytes: 100,
                in_packets: 2,
                in_bytes: 200,
                out_seq: Some(u64::from(sa.spi_in)),
                in_seq: None,
                worker: None,
            })
            .collect();
        s
    }

    #[test]
    fn large_snapshots_travel_in_parts_that_fit_a_1500_byte_mtu() {
        let key = [9u8; 32];
        let now = 5_000_000;
        // 1000 pairs: v1 sent one datagram and gave up past ~80.
        let s = big(3, 7, now - 10, 1000);
        let parts = seal(&key, &s).unwrap();
        assert!(parts.len() >= 500, "{} parts", parts.len());
        // IPv6 (40) and UDP (8) headers included, every datagram fits an Ethernet MTU.
        assert!(
            parts.iter().all(|p| p.len() + 48 <= 1500),
            "{:?}",
            parts.iter().map(Vec::len).max()
        );
        // Out of order, with a duplicate and a part of an older snapshot mixed in: the
        // snapshot comes out whole, pairs with their reports, only when the last part is in.
        let old = seal(&key, &big(3, 6, now - 600, 1000)).unwrap();
        let fresh = Freshness::default();
        let mut a = Assembly::default();
        let mut order: Vec<usize> = (0..parts.len()).rev().collect();
        order.swap(3, 17);
        let mut out = None;
        for (k, &i) in order.iter().enumerate() {
            assert!(out.is_none(), "whole before its last part");
            out = a.push(open(&key, &parts[i]).unwrap(), &fresh, now);
            if k == 5 {
                assert!(a
                    .push(open(&key, &parts[i]).unwrap(), &fresh, now)
                    .is_none());
                assert!(a.push(open(&key, &old[0]).unwrap(), &fresh, now).is_none());
            }
        }
        let got = out.expect("assembled");
        assert_eq!(
            (got.boot, got.seq, got.sent_ms, got.report_age_ms),
            (3, 7, now - 10, 120)
        );
        let spis = |v: &Snapshot| v.sas.iter().map(|x| x.spi_in).collect::<Vec<_>>();
        assert_eq!(spis(&got), spis(&s));
        assert_eq!(got.report.len(), 1000);
        assert!(got
            .report
            .iter()
            .zip(&got.sas)
            .all(|(r, sa)| r.spi_in == sa.spi_in));
        assert_eq!(got.sas[999].enc_out, s.sas[999].enc_out);
        // A part lost: that snapshot never completes; the next one does, and replaces it.
        let next = seal(&key, &big(3, 8, now, 1000)).unwrap();
        let mut a = Assembly::default();
        for p in &parts[1..] {
            assert!(a.push(open(&key, p).unwrap(), &fresh, now).is_none());
        }
        let mut out = None;
        for p in &next {
            out = a.push(open(&key, p).unwrap(), &fresh, now);
        }
        assert_eq!(out.expect("the next snapshot").seq, 8);
        // A snapshot Freshness would refuse is not even gathered.
        let mut f = Freshness::default();
        assert!(f.take(&big(3, 9, now, 0), now));
        let mut a = Assembly::default();
        assert!(next
            .iter()
            .all(|p| a.push(open(&key, p).unwrap(), &f, now).is_none()));
        // An empty snapshot is one part, and assembles.
        let e = seal(&key, &big(4, 1, now, 0)).unwrap();
        assert_eq!(e.len(), 1);
        let got = Assembly::default()
            .push(open(&key, &e[0]).unwrap(), &fresh, now)
            .unwrap();
        assert!(got.sas.is_empty());
    }

    /// An established IKE SA's state, as `IkeSa::export` gives it, with a child per pair.
    fn ike_state(i: u32) -> IkeSaState {
        use crate::ike::proposal::{Chosen, Encr, Group, Integ, Prf};
        let chosen = Chosen {
            num: 1,
            encr: Encr::AesCbc256,
            prf: Some(Prf::HmacSha256),
            integ: Some(Integ::HmacSha256),
            dh: Some(Group::Modp1024),
            esn: false,
        };
        let k = |b: u8| dataplane::ctl::hex(&[b.wrapping_add(i as u8); 32]);
        IkeSaState {
            tunnel: format!("tunnel-{i}"),
            initiator: true,
            spi_i: 0x1111_0000_0000_0000 + u64::from(i),
            spi_r: 0x2222_0000_0000_0000 + u64::from(i),
            local: "203.0.113.1:4500".parse().unwrap(),
            remote: "198.51.100.7:4500".parse().unwrap(),
            nat: true,
            behind_nat: false,
            chosen,
            keys: [k(1), k(2), k(3), k(4), k(5), k(6), k(7)],
            next_req_id: 7 + i,
            peer_next_id: 3,
            last_resp: Some((2, vec!["ab".repeat(80)])),
            frag: true,
            frag_path_size: Some(640),
            peer_hashes: vec![2, 3, 4],
            peer_id: Some("gw-b.example.test".into()),
            age_s: 100,
            rekey_in_s: Some(3000),
            reauth_in_s: None,
            children: vec![crate::ike::sa::ChildState {
                child: "net".into(),
                spi_in: 0x1000_0000 + i,
                spi_out: 0x2000_0000 + i,
                chosen: Chosen {
                    prf: None,
                    dh: None,
                    ..chosen
                },
                local_ts: Vec::new(),
                remote_ts: Vec::new(),
                age_s: 50,
                rekeyed: false,
                replaces: None,
                per_resource: false,
                worker: None,
            }],
            pending: None,
            to_create: Vec::new(),
            no_more: Vec::new(),
        }
    }

    /// An IKE SA's state of the largest size `IkeSa::export` lets through
    /// ([`IKE_STATE_MAX`] bytes of JSON, here mostly a cached response) still fits one
    /// datagram the receiver takes, and opens.
    #[test]
    fn the_largest_synced_ike_sa_fits_a_datagram() {
        let key = [5u8; 32];
        let mut ike = ike_state(1);
        for _ in 0..3 {
            ike.children.push(ike.children[0].clone());
        }
        ike.last_resp = Some((9, vec![String::new()]));
        let base = json_len(&ike);
        assert!(base < IKE_STATE_MAX);
        let fill = (IKE_STATE_MAX - base) / 2 * 2;
        ike.last_resp = Some((9, vec!["ab".repeat(fill / 2)]));
        assert!(json_len(&ike) <= IKE_STATE_MAX && json_len(&ike) + 2 > IKE_STATE_MAX);
        let mut s = big(6, 1, 7_000_000, 1);
        s.ike = vec![ike];
        let parts = seal(&key, &s).unwrap();
        for p in &parts {
            assert!(p.len() <= MAX_DATAGRAM, "{}", p.len());
            open(&key, p).unwrap();
        }
    }

    #[test]
    fn ike_sas_travel_with_their_pairs_in_parts_under_the_mtu() {
        let key = [5u8; 32];
        let now = 7_000_000;
        let mut s = big(6, 1, now, 300);
        s.ike = (0..300).map(ike_state).collect();
        let parts = seal(&key, &s).unwrap();
        // Pairs travel in datagrams under a 1500-byte MTU (IPv6 and UDP headers included); an
        // IKE SA's state (~1.3 KB of JSON here, over the part budget) travels alone, in at
        // most two IP fragments.
        assert!(json_len(&s.ike[0]) > PART_BYTES);
        for p in &parts {
            let o = open(&key, p).unwrap();
            if o.ike.is_empty() {
                assert!(p.len() + 48 <= 1500, "{}", p.len());
            } else {
                assert!(o.ike.len() == 1 && o.sas.is_empty() && p.len() + 48 <= 3000);
            }
        }
        // IKE SA keys do not travel in the clear.
        let sk = ike_state(0).keys[3].to_string();
        assert!(parts
            .iter()
            .all(|p| !String::from_utf8_lossy(p).contains(&sk)));
        let mut a = Assembly::default();
        let fresh = Freshness::default();
        let mut out = None;
        for p in parts.iter().rev() {
            out = a.push(open(&key, p).unwrap(), &fresh, now);
        }
        let got = out.expect("assembled");
        assert_eq!(got.sas.len(), 300);
        assert_eq!(got.ike.len(), 300);
        for (g, w) in got.ike.iter().zip(&s.ike) {
            assert_eq!(
                (g.spi_i, g.spi_r, g.next_req_id),
                (w.spi_i, w.spi_r, w.next_req_id)
            );
            assert_eq!(
                g.keys.each_ref().map(|k| k.to_string()),
                w.keys.each_ref().map(|k| k.to_string())
            );
            assert_eq!(g.last_resp, w.last_resp);
            assert_eq!(g.children[0].spi_in, w.children[0].spi_in);
        }
        // A snapshot of a sender without IKE SAs in its parts (version 2 before them) still
        // opens: `ike` is empty.
        let legacy = serde_json::json!({"boot": 1, "seq": 1, "sent_ms": now, "report_age_ms": 0,
            "part": 0, "parts": 1, "sas": [], "report": []});
        let p: Part = serde_json::from_value(legacy).unwrap();
        assert!(p.ike.is_empty());
    }

    #[test]
    fn parts_with_absurd_numbering_are_refused() {
        let key = [1u8; 32];
        let p = |part: u32, parts: u32| {
            seal_part(
                &key,
                &Part {
                    boot: 1,
                    seq: 1,
                    sent_ms: 1,
                    report_age_ms: 0,
                    part,
                    parts,
                    sas: Vec::new(),
                    report: Vec::new(),
                    ike: Vec::new(),
                    vrrp: Vec::new(),
                },
            )
        };
        assert!(open(&key, &p(0, 0)).is_err());
        assert!(open(&key, &p(2, 2)).is_err());
        assert!(open(&key, &p(0, MAX_PARTS as u32 + 1)).is_err());
        assert!(open(&key, &p(4095, MAX_PARTS as u32)).is_ok());
        // Numbering is checked on the way in too (what open refuses, push refuses).
        let bad = Part {
            parts: u32::MAX,
            ..open(&key, &p(0, 1)).unwrap()
        };
        assert!(Assembly::default()
            .push(bad, &Freshness::default(), 1)
            .is_none());
        assert!(open(&key, &vec![0u8; MAX_DATAGRAM + 1]).is_err());
        // The same snapshot announced with another part count is not mixed in.
        let mut a = Assembly::default();
        let fresh = Freshness::default();
        assert!(a.push(open(&key, &p(0, 2)).unwrap(), &fresh, 1).is_none());
        assert!(a.push(open(&key, &p(1, 3)).unwrap(), &fresh, 1).is_none());
    }

    fn masters() -> Vec<VrrpMaster> {
        vec![
            VrrpMaster {
                interface: "outside".into(),
                vrid: 51,
                priority: 200,
                primary: "203.0.113.2".parse().unwrap(),
                interval_cs: 100,
                hears: false,
            },
            VrrpMaster {
                interface: "outside".into(),
                vrid: 51,
                priority: 200,
                primary: "fe80::2".parse().unwrap(),
                interval_cs: 10,
                hears: true,
            },
        ]
    }

    #[test]
    fn the_vrrp_masters_travel_in_the_first_part() {
        let key = [3u8; 32];
        let now = 2_000_000;
        let mut s = big(1, 1, now, 40);
        s.vrrp = masters();
        let parts = seal(&key, &s).unwrap();
        assert!(parts.len() > 2);
        for b in &parts {
            assert!(b.len() < 1500 - 48, "{} bytes", b.len());
        }
        let opened: Vec<Part> = parts.iter().map(|b| open(&key, b).unwrap()).collect();
        assert_eq!(opened[0].vrrp, masters());
        assert!(opened[1..].iter().all(|p| p.vrrp.is_empty()));
        // Put together in any order, the snapshot has them.
        let (mut a, fresh) = (Assembly::default(), Freshness::default());
        let mut out = None;
        for p in opened.into_iter().rev() {
            out = a.push(p, &fresh, now);
        }
        assert_eq!(out.expect("assembled").vrrp, masters());
        // Without them (a sender of before) a part and a snapshot still open: none.
        let legacy = serde_json::json!({"boot": 1, "seq": 1, "sent_ms": now, "report_age_ms": 0,
            "part": 0, "parts": 1, "sas": [], "report": []});
        let p: Part = serde_json::from_value(legacy).unwrap();
        assert!(p.vrrp.is_empty());
        let old = serde_json::json!({"boot": 1, "seq": 1, "sent_ms": now, "report_age_ms": 0,
            "sas": [], "report": []});
        let o: Snapshot = serde_json::from_value(old).unwrap();
        assert!(o.vrrp.is_empty());
        // An empty list is not written at all (what an older receiver reads is unchanged).
        let plain = serde_json::to_string(&Part {
            vrrp: Vec::new(),
            ..p
        })
        .unwrap();
        assert!(!plain.contains("vrrp"), "{plain}");
    }

    #[test]
    fn too_many_vrrp_masters_are_refused() {
        let key = [4u8; 32];
        let mut s = snap(1, 1, 5);
        s.vrrp = vec![masters()[0].clone(); SYNC_ADVERTS_MAX + 1];
        assert!(seal(&key, &s).is_err());
        // A peer with the key that sends them anyway, or in a later part, is refused.
        let part = |i: u32, n: usize| Part {
            boot: 1,
            seq: 1,
            sent_ms: 5,
            report_age_ms: 0,
            part: i,
            parts: 2,
            sas: Vec::new(),
            report: Vec::new(),
            ike: Vec::new(),
            vrrp: vec![masters()[0].clone(); n],
        };
        assert!(open(&key, &seal_part(&key, &part(0, SYNC_ADVERTS_MAX))).is_ok());
        assert!(open(&key, &seal_part(&key, &part(0, SYNC_ADVERTS_MAX + 1))).is_err());
        assert!(open(&key, &seal_part(&key, &part(1, 1))).is_err());
        // The assembly keeps the bound on a part that did not come through `open`.
        let (mut a, fresh) = (Assembly::default(), Freshness::default());
        a.push(
            Part {
                parts: 1,
                ..part(0, SYNC_ADVERTS_MAX + 10)
            },
            &fresh,
            5,
        )
        .map(|s| assert_eq!(s.vrrp.len(), SYNC_ADVERTS_MAX))
        .expect("assembled");
    }

    #[test]
    fn only_newer_snapshots_are_taken() {
        let now = 1_000_000;
        let mut f = Freshness::default();
        assert!(f.take(&snap(1, 5, now - 1000), now));
        assert!(!f.take(&snap(1, 5, now - 1000), now), "the same one again");
        assert!(!f.take(&snap(1, 4, now - 1100), now), "an older one");
        assert!(f.take(&snap(1, 6, now - 500), now));
        // A restarted sender: taken if recent by the clock, not a replay from long ago.
        assert!(!f.take(&snap(2, 1, now - MAX_AGE_MS - 1), now));
        assert!(f.take(&snap(2, 1, now - 100), now));
        // A datagram of the old incarnation replayed (its sent_ms is before the new one's).
        assert!(!f.take(&snap(1, 99, now - 200), now));
        assert!(f.take(&snap(2, 2, now), now));
    }

    #[test]
    fn the_report_age_counts_the_way() {
        let s = snap(1, 1, 10_000);
        // 120 ms old when sent, 2.5 s on the way: 2.62 s -> 3 s.
        assert_eq!(report_age_secs(&s, 12_500), 3);
        assert_eq!(report_age_secs(&s, 10_000), 1);
        // A sender clock ahead of ours does not make it younger than its own age.
        assert_eq!(report_age_secs(&s, 9_000), 1);
        // Absurd fields from a peer with the key: no overflow.
        let odd = Snapshot {
            sent_ms: u64::MAX,
            report_age_ms: u64::MAX,
            ..snap(1, 1, 0)
        };
        assert_eq!(report_age_secs(&odd, u64::MAX), u64::MAX.div_ceil(1000));
        assert!(!Freshness::default().take(&odd, 5));
    }
}
