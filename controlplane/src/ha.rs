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
//! On the wire: one UDP datagram per snapshot, `nonce (12) || AES-256-GCM(JSON)` with the
//! associated data [`AAD`]. The key comes from the shared secret (`config::HaConfig`). A
//! receiver takes a snapshot only if it is newer than the last one from the same sender
//! incarnation (`boot`, `seq`), and from a new incarnation only if it was sent within
//! [`MAX_AGE_MS`] by the wall clock.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use dataplane::ctl::{ChildSa, SaReport};

/// Associated data of every sync message (version and purpose).
pub const AAD: &[u8] = b"ferrogate HA sync v1";
/// Oldest snapshot of a new sender incarnation taken (wall-clock milliseconds).
pub const MAX_AGE_MS: u64 = 30_000;
/// Largest datagram sent (a snapshot past it is not sent, and says so in the log).
pub const MAX_DATAGRAM: usize = 65_000;

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
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("boot", &self.boot)
            .field("seq", &self.seq)
            .field("sas", &self.sas.len())
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seals a snapshot for the wire.
pub fn seal(key: &[u8; 32], snap: &Snapshot) -> Vec<u8> {
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(snap).unwrap_or_default());
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

/// Opens a datagram: the snapshot, or why not.
pub fn open(key: &[u8; 32], b: &[u8]) -> Result<Snapshot, String> {
    if b.len() < 12 + 16 {
        return Err("sync datagram too short".into());
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
        .map_err(|_| "sync datagram does not authenticate (another secret?)".to_string())?;
    let plain = zeroize::Zeroizing::new(plain);
    serde_json::from_slice(&plain).map_err(|e| format!("sync snapshot: {e}"))
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
        let recent = s.sent_ms.saturating_add(MAX_AGE_MS) >= now_ms
            && s.sent_ms <= now_ms.saturating_add(MAX_AGE_MS);
        let fresh = match self.last {
            Some((boot, seq, _)) if boot == s.boot => s.seq > seq,
            Some((_, _, sent)) => recent && s.sent_ms > sent,
            None => recent,
        };
        if fresh {
            self.last = Some((s.boot, s.seq, s.sent_ms));
        }
        fresh
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
        }
    }

    #[test]
    fn sealed_snapshots_open_only_with_the_key() {
        let key = [7u8; 32];
        let b = seal(&key, &snap(1, 2, 3));
        let s = open(&key, &b).unwrap();
        assert_eq!((s.boot, s.seq, s.sent_ms, s.report_age_ms), (1, 2, 3, 120));
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
