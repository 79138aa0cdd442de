//! Router advertisements (RFC 4861 §4.2, §6.2): how the hosts of an inside link learn that the
//! gateway is their router, and their prefixes, without configuration.
//!
//! With an IPv6 VRRP router on the link, the master advertises from the router's link-local
//! virtual address (RFC 5798 §5.2.9, §8.2.2): the hosts' default route names that address,
//! which moves with the master, so a takeover leaves their routes alone. A backup is silent.
//!
//! This module builds the advertisement, tells a valid router solicitation (§6.1.1) apart,
//! and keeps the schedule of §6.2.4-§6.2.6; the gateway's main lcore sends.

use std::net::Ipv6Addr;

use crate::wire::checksum;

/// What a link's advertisements say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// MaxRtrAdvInterval, ms (4 s to 1800 s).
    pub max_interval_ms: u64,
    /// MinRtrAdvInterval, ms (3 s to 0.75 × the maximum).
    pub min_interval_ms: u64,
    /// Router lifetime, s (0: not a default router; else the maximum interval to 9000 s).
    pub lifetime_s: u16,
    /// Cur Hop Limit for the hosts (0: unspecified).
    pub hop_limit: u8,
    /// M flag: addresses from DHCPv6.
    pub managed: bool,
    /// O flag: other settings from DHCPv6.
    pub other: bool,
    /// MTU option (the link's MTU), if any.
    pub mtu: Option<u32>,
    /// Prefix information options.
    pub prefixes: Vec<Prefix>,
    /// Route information options (RFC 4191 §2.3): more-specific routes through this router,
    /// e.g. the remote sites' prefixes when it is not the hosts' default router.
    pub routes: Vec<RouteInfo>,
    /// Recursive DNS servers (RFC 8106 §5.1) and their lifetime, s.
    pub dns: Vec<Ipv6Addr>,
    /// DNS search list (RFC 8106 §5.2), as domain names.
    pub search: Vec<String>,
    /// Lifetime of the DNS servers and search list, s.
    pub dns_lifetime_s: u32,
}

/// A route information option (RFC 4191 §2.3), at medium preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    /// The prefix (host bits zero).
    pub prefix: Ipv6Addr,
    /// Its length.
    pub len: u8,
    /// Route lifetime, s.
    pub lifetime_s: u32,
}

impl RouteInfo {
    /// The option's length in 8-byte units (the prefix is cut to what its length needs).
    fn units(&self) -> usize {
        match self.len {
            0 => 1,
            1..=64 => 2,
            _ => 3,
        }
    }
}

/// A domain name in DNS wire form (labels, then the root), as RFC 8106 §5.2 carries it; `None`
/// if a label is empty, longer than 63 bytes, or not letters, digits and hyphens, or the name
/// longer than 253 bytes.
pub fn encode_domain(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'-';
        if label.is_empty() || label.len() > 63 || !label.bytes().all(ok) {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Some(out)
}

impl Config {
    /// The DNSSL option's length in bytes (0 without a search list).
    fn dnssl_len(&self) -> usize {
        if self.search.is_empty() {
            return 0;
        }
        let names: usize = self
            .search
            .iter()
            .map(|n| encode_domain(n).map_or(0, |e| e.len()))
            .sum();
        (8 + names).div_ceil(8) * 8
    }
}

/// A prefix information option (§4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The prefix (host bits zero).
    pub prefix: Ipv6Addr,
    /// Its length.
    pub len: u8,
    /// L flag: on-link.
    pub on_link: bool,
    /// A flag: hosts may form addresses from it (SLAAC, RFC 4862).
    pub autonomous: bool,
    /// Valid lifetime, s.
    pub valid_s: u32,
    /// Preferred lifetime, s.
    pub preferred_s: u32,
}

/// RFC 4861 §10: AdvValidLifetime's default (30 days).
pub const DEFAULT_VALID_S: u32 = 2_592_000;
/// RFC 4861 §10: AdvPreferredLifetime's default (7 days).
pub const DEFAULT_PREFERRED_S: u32 = 604_800;
/// MAX_INITIAL_RTR_ADVERTISEMENTS (§10).
const INITIAL_ADVERTS: u8 = 3;
/// MAX_INITIAL_RTR_ADVERT_INTERVAL (§10), ms.
const INITIAL_INTERVAL_MS: u64 = 16_000;
/// MIN_DELAY_BETWEEN_RAS (§10), ms.
const MIN_DELAY_MS: u64 = 3_000;
/// MAX_RA_DELAY_TIME (§10), ms.
const MAX_DELAY_MS: u64 = 500;

/// The longest advertisement the gateway sends: what one of its buffers holds.
pub const MAX_FRAME_LEN: usize = 2048;

/// The all-nodes group, where advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

impl Config {
    /// The length of the whole Ethernet frame.
    pub fn frame_len(&self) -> usize {
        14 + 40
            + 16
            + 8
            + if self.mtu.is_some() { 8 } else { 0 }
            + 32 * self.prefixes.len()
            + 8 * self.routes.iter().map(RouteInfo::units).sum::<usize>()
            + if self.dns.is_empty() {
                0
            } else {
                8 + 16 * self.dns.len()
            }
            + self.dnssl_len()
    }
}

/// Builds an advertisement from `src` (a link-local address) at `mac` to all nodes into
/// `out`, with router lifetime `lifetime_s` (the configured one, or 0 in a final
/// advertisement, §6.2.5). Returns the frame length, or `None` if `out` is too short or `src`
/// is not link-local (§4.2: hosts discard others).
pub fn advert_frame(
    out: &mut [u8],
    cfg: &Config,
    mac: [u8; 6],
    src: Ipv6Addr,
    lifetime_s: u16,
) -> Option<usize> {
    let len = cfg.frame_len();
    if !src.is_unicast_link_local() || len - 54 > usize::from(u16::MAX) {
        return None;
    }
    let f = out.get_mut(..len)?;
    f.fill(0);
    f[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let (ip, body) = f[14..].split_at_mut(40);
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    ip[6] = 58;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&ALL_NODES.octets());
    body[0] = 134;
    body[4] = cfg.hop_limit;
    body[5] = u8::from(cfg.managed) << 7 | u8::from(cfg.other) << 6;
    body[6..8].copy_from_slice(&lifetime_s.to_be_bytes());
    // Reachable Time and Retrans Timer stay 0: unspecified, the hosts keep their own.
    let mut o = 16;
    body[o..o + 8].copy_from_slice(&[1, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    o += 8;
    if let Some(mtu) = cfg.mtu {
        body[o] = 5;
        body[o + 1] = 1;
        body[o + 4..o + 8].copy_from_slice(&mtu.to_be_bytes());
        o += 8;
    }
    for p in &cfg.prefixes {
        let b = &mut body[o..o + 32];
        b[0] = 3;
        b[1] = 4;
        b[2] = p.len;
        b[3] = u8::from(p.on_link) << 7 | u8::from(p.autonomous) << 6;
        b[4..8].copy_from_slice(&p.valid_s.to_be_bytes());
        b[8..12].copy_from_slice(&p.preferred_s.to_be_bytes());
        b[16..32].copy_from_slice(&p.prefix.octets());
        o += 32;
    }
    for r in &cfg.routes {
        let n = r.units() * 8;
        let b = &mut body[o..o + n];
        b[0] = 24;
        b[1] = r.units() as u8;
        b[2] = r.len;
        // Prf 00: medium.
        b[4..8].copy_from_slice(&r.lifetime_s.to_be_bytes());
        b[8..].copy_from_slice(&r.prefix.octets()[..n - 8]);
        o += n;
    }
    if !cfg.dns.is_empty() {
        let n = 8 + 16 * cfg.dns.len();
        let b = &mut body[o..o + n];
        b[0] = 25;
        b[1] = (n / 8) as u8;
        b[4..8].copy_from_slice(&cfg.dns_lifetime_s.to_be_bytes());
        for (k, a) in cfg.dns.iter().enumerate() {
            b[8 + 16 * k..24 + 16 * k].copy_from_slice(&a.octets());
        }
        o += n;
    }
    let n = cfg.dnssl_len();
    if n > 0 {
        let b = &mut body[o..o + n];
        b[0] = 31;
        b[1] = (n / 8) as u8;
        b[4..8].copy_from_slice(&cfg.dns_lifetime_s.to_be_bytes());
        let mut at = 8;
        for name in &cfg.search {
            let e = encode_domain(name)?;
            b[at..at + e.len()].copy_from_slice(&e);
            at += e.len();
        }
        o += n;
    }
    debug_assert_eq!(o, body.len());
    let c = !checksum::combine(&[
        checksum::pseudo_header_v6(&src, &ALL_NODES, 58, body.len() as u32),
        checksum::data(body),
    ]);
    body[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// Whether a whole Ethernet frame is a valid router solicitation (§6.1.1): IPv6 without
/// extension headers, ICMPv6 type 133 code 0, hop limit 255, a valid checksum, at least 8
/// bytes, no option of length 0, and no source link-layer address option if the source is
/// unspecified.
pub fn is_router_solicit(frame: &[u8]) -> bool {
    let Some((src, body)) = crate::neigh::nd_message(frame, |t| t == 133, 8) else {
        return false;
    };
    let mut opts = &body[8..];
    while !opts.is_empty() {
        let &[kind, units, ..] = opts else {
            return false;
        };
        let n = usize::from(units) * 8;
        if n == 0 || n > opts.len() || (kind == 1 && src.is_unspecified()) {
            return false;
        }
        opts = &opts[n..];
    }
    true
}

/// When a link's advertisements go out (§6.2.4-§6.2.6), in ms on the caller's clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When the next one is due; `None` while the link is not advertised.
    next_ms: Option<u64>,
    /// How many of the first advertisements are left, which go out at most 16 s apart.
    initial_left: u8,
    /// When the last one went out.
    last_ms: Option<u64>,
    /// xorshift state for the random intervals and delays.
    rng: u64,
}

impl Schedule {
    /// A schedule that advertises nothing until [`Schedule::start`]; `seed` makes the random
    /// intervals (any value; 0 is replaced).
    pub fn new(seed: u64) -> Self {
        Self {
            next_ms: None,
            initial_left: 0,
            last_ms: None,
            rng: seed | 1,
        }
    }

    fn random(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        lo + self.rng % (hi - lo + 1)
    }

    /// Whether the link is advertised now.
    pub fn running(&self) -> bool {
        self.next_ms.is_some()
    }

    /// The link becomes an advertising interface (at start, or as a new VRRP master): one
    /// advertisement at once (but not within 3 s of the last, §6.2.4: a link or a master that
    /// flaps does not send them back to back), then the initial ones (§6.2.2), unless it
    /// already runs.
    pub fn start(&mut self, now: u64) {
        if self.next_ms.is_none() {
            let at = self
                .last_ms
                .map_or(now, |last| now.max(last + MIN_DELAY_MS));
            self.next_ms = Some(at);
            self.initial_left = INITIAL_ADVERTS;
        }
    }

    /// The link stops advertising (a VRRP backup, a link down).
    pub fn stop(&mut self) {
        self.next_ms = None;
    }

    /// A valid solicitation arrived (§6.2.6): the answer, to all nodes, goes out after a
    /// random delay of up to 0.5 s, or, within 3 s of the last advertisement, that delay
    /// after those 3 s (so that routers on the link do not answer in step); an advertisement
    /// already due sooner answers it.
    pub fn solicited(&mut self, now: u64) {
        let Some(next) = self.next_ms else {
            return;
        };
        let delay = self.random(0, MAX_DELAY_MS);
        let at = match self.last_ms {
            Some(last) if now < last + MIN_DELAY_MS => last + MIN_DELAY_MS + delay,
            _ => now + delay,
        };
        self.next_ms = Some(next.min(at));
    }

    /// Whether an advertisement is due at `now`; if so it counts as sent and the next one is
    /// set a random interval between the minimum and the maximum ahead (at most 16 s for the
    /// first three).
    pub fn due(&mut self, now: u64, cfg: &Config) -> bool {
        match self.next_ms {
            Some(t) if now >= t => {}
            _ => return false,
        }
        let mut gap = self.random(cfg.min_interval_ms, cfg.max_interval_ms);
        if self.initial_left > 0 {
            self.initial_left -= 1;
            gap = gap.min(INITIAL_INTERVAL_MS);
        }
        self.last_ms = Some(now);
        self.next_ms = Some(now + gap);
        true
    }

    /// When the next advertisement is due, if the link is advertised.
    pub fn next_ms(&self) -> Option<u64> {
        self.next_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            max_interval_ms: 30_000,
            min_interval_ms: 10_000,
            lifetime_s: 90,
            hop_limit: 64,
            managed: false,
            other: true,
            mtu: Some(1500),
            prefixes: vec![Prefix {
                prefix: "2001:db8:10::".parse().unwrap(),
                len: 64,
                on_link: true,
                autonomous: true,
                valid_s: DEFAULT_VALID_S,
                preferred_s: DEFAULT_PREFERRED_S,
            }],
            routes: Vec::new(),
            dns: Vec::new(),
            search: Vec::new(),
            dns_lifetime_s: 0,
        }
    }

    #[test]
    fn routes_dns_servers_and_search_lists_are_encoded_as_rfcs_4191_and_8106_say() {
        let mut c = cfg();
        c.prefixes.clear();
        c.mtu = None;
        c.routes = vec![
            RouteInfo {
                prefix: "2001:db8:20::".parse().unwrap(),
                len: 48,
                lifetime_s: 90,
            },
            RouteInfo {
                prefix: Ipv6Addr::UNSPECIFIED,
                len: 0,
                lifetime_s: 90,
            },
            RouteInfo {
                prefix: "2001:db8:20:1:8000::".parse().unwrap(),
                len: 65,
                lifetime_s: 7,
            },
        ];
        c.dns = vec!["2001:db8::53".parse().unwrap()];
        c.search = vec!["site-a.example.".into(), "b.example".into()];
        c.dns_lifetime_s = 1200;
        let mut f = [0u8; 300];
        let n = advert_frame(&mut f, &c, MAC, "fe80::61".parse().unwrap(), 90).unwrap();
        let o = &f[14 + 40 + 16 + 8..n];
        // Routes: /48 in 16 bytes, ::/0 in 8, /65 in 24; preference medium.
        assert_eq!(
            &o[..16],
            &[24, 2, 48, 0, 0, 0, 0, 90, 0x20, 1, 0x0d, 0xb8, 0, 0x20, 0, 0]
        );
        assert_eq!(&o[16..24], &[24, 1, 0, 0, 0, 0, 0, 90]);
        assert_eq!(&o[24..32], &[24, 3, 65, 0, 0, 0, 0, 7]);
        assert_eq!(o[32 + 8], 0x80);
        // RDNSS: 3 units.
        assert_eq!(&o[48..56], &[25, 3, 0, 0, 0, 0, 0x04, 0xb0]);
        assert_eq!(
            &o[56..72],
            &"2001:db8::53".parse::<Ipv6Addr>().unwrap().octets()
        );
        // DNSSL: 8 + 16 + 11 = 35 bytes, padded to 40.
        assert_eq!(&o[72..80], &[31, 5, 0, 0, 0, 0, 0x04, 0xb0]);
        assert_eq!(&o[80..96], b"\x06site-a\x07example\x00");
        assert_eq!(&o[96..107], b"\x01b\x07example\x00");
        assert_eq!(&o[107..112], &[0; 5]);
        assert_eq!(o.len(), 112);
        assert_eq!(encode_domain("a..b"), None);
        assert_eq!(encode_domain(&"x".repeat(64)), None);
        assert_eq!(encode_domain("under_score.example"), None);
        assert_eq!(encode_domain("."), None);
    }

    const MAC: [u8; 6] = [0, 0, 0x5e, 0, 2, 61];

    #[test]
    fn an_advertisement_carries_what_the_link_says() {
        let c = cfg();
        let mut f = [0xaau8; 200];
        let src: Ipv6Addr = "fe80::61".parse().unwrap();
        let n = advert_frame(&mut f, &c, MAC, src, c.lifetime_s).unwrap();
        assert_eq!(n, 14 + 40 + 16 + 8 + 8 + 32);
        let ip = &f[14..n];
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!((ip[6], ip[7]), (58, 255));
        assert_eq!(&ip[24..40], &ALL_NODES.octets());
        let b = &ip[40..];
        assert_eq!(usize::from(u16::from_be_bytes([ip[4], ip[5]])), b.len());
        assert_eq!((b[0], b[1], b[4], b[5]), (134, 0, 64, 0x40));
        assert_eq!(u16::from_be_bytes([b[6], b[7]]), 90);
        assert_eq!(&b[16..24], &[1, 1, 0, 0, 0x5e, 0, 2, 61]);
        assert_eq!(&b[24..32], &[5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
        assert_eq!(&b[32..36], &[3, 4, 64, 0xc0]);
        assert_eq!(&b[48..56], &[0x20, 0x01, 0x0d, 0xb8, 0, 0x10, 0, 0]);
        assert_eq!(
            checksum::combine(&[
                checksum::pseudo_header_v6(&src, &ALL_NODES, 58, b.len() as u32),
                checksum::data(b),
            ]),
            0xffff
        );
        // Not from a global address; not into a short buffer.
        assert!(advert_frame(&mut f, &c, MAC, "2001:db8::1".parse().unwrap(), 90).is_none());
        assert!(advert_frame(&mut f[..100], &c, MAC, src, 90).is_none());
    }

    /// A solicitation from `src` with the given options, as a host sends it.
    fn solicit(src: Ipv6Addr, opts: &[u8], hop: u8) -> Vec<u8> {
        let dst: Ipv6Addr = "ff02::2".parse().unwrap();
        let mut f = vec![0x33, 0x33, 0, 0, 0, 2, 2, 0, 0, 0, 0, 9, 0x86, 0xdd];
        let mut body = vec![133, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(opts);
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(body.len() as u16).to_be_bytes());
        f.extend_from_slice(&[58, hop]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        let c = !checksum::combine(&[
            checksum::pseudo_header_v6(&src, &dst, 58, body.len() as u32),
            checksum::data(&body),
        ]);
        body[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn solicitations_are_checked_as_rfc_4861_asks() {
        let ll: Ipv6Addr = "fe80::9".parse().unwrap();
        let slla = [1, 1, 2, 0, 0, 0, 0, 9];
        assert!(is_router_solicit(&solicit(ll, &slla, 255)));
        assert!(is_router_solicit(&solicit(ll, &[], 255)));
        assert!(is_router_solicit(&solicit(Ipv6Addr::UNSPECIFIED, &[], 255)));
        // Hop limit below 255: it crossed a router.
        assert!(!is_router_solicit(&solicit(ll, &slla, 64)));
        // From :: with a link-layer address option.
        assert!(!is_router_solicit(&solicit(
            Ipv6Addr::UNSPECIFIED,
            &slla,
            255
        )));
        // An option of length 0, a truncated one.
        assert!(!is_router_solicit(&solicit(
            ll,
            &[1, 0, 2, 0, 0, 0, 0, 9],
            255
        )));
        assert!(!is_router_solicit(&solicit(
            ll,
            &[1, 2, 2, 0, 0, 0, 0, 9],
            255
        )));
        // A bad checksum, code 1, and every truncation.
        let good = solicit(ll, &slla, 255);
        let mut bad = good.clone();
        bad[60] ^= 1;
        assert!(!is_router_solicit(&bad));
        let mut bad = good.clone();
        bad[55] = 1;
        assert!(!is_router_solicit(&bad));
        for n in 0..good.len() {
            assert!(!is_router_solicit(&good[..n]));
        }
        // One built by scapy (Ether()/IPv6(hlim=255)/ICMPv6ND_RS()/ICMPv6NDOptSrcLLAddr()).
        let scapy = "33330000000202000000000986dd6000000000103afffe80000000000000000000000000\
                     0009ff02000000000000000000000000000285007a1c000000000101020000000009";
        let scapy: Vec<u8> = (0..scapy.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&scapy[i..i + 2], 16).unwrap())
            .collect();
        assert!(is_router_solicit(&scapy));
        // An advertisement is not a solicitation.
        let mut f = [0u8; 200];
        let n = advert_frame(&mut f, &cfg(), MAC, "fe80::61".parse().unwrap(), 90).unwrap();
        assert!(!is_router_solicit(&f[..n]));
    }

    #[test]
    fn the_schedule_follows_rfc_4861() {
        let c = cfg();
        let mut s = Schedule::new(7);
        assert!(!s.due(0, &c), "nothing before start");
        s.solicited(0);
        assert!(!s.due(1, &c), "a stopped link answers no solicitation");
        s.start(1000);
        assert!(s.due(1000, &c), "at once on start");
        // The first three at most 16 s apart, then 10-30 s.
        let mut t = 1000;
        for k in 0..6 {
            let next = s.next_ms().unwrap();
            let gap = next - t;
            if k < 3 {
                assert!((10_000..=16_000).contains(&gap), "initial gap {gap}");
            } else {
                assert!((10_000..=30_000).contains(&gap), "gap {gap}");
            }
            assert!(!s.due(next - 1, &c));
            assert!(s.due(next, &c));
            t = next;
        }
        // A solicitation within 3 s of the last advertisement waits for those 3 s; a later
        // one is answered within 0.5 s.
        s.solicited(t + 100);
        let at = s.next_ms().unwrap();
        assert!((t + 3000..=t + 3500).contains(&at), "{at}");
        assert!(s.due(at, &c));
        s.solicited(at + 5000);
        let a2 = s.next_ms().unwrap();
        assert!((at + 5000..=at + 5500).contains(&a2), "{a2}");
        // A start while running changes nothing; a stop silences it.
        s.start(a2 - 1);
        assert_eq!(s.next_ms(), Some(a2));
        assert!(s.due(a2, &c));
        s.stop();
        assert!(!s.running() && !s.due(a2 + 100_000, &c));
        // Started again at once (a flapping master): not within 3 s of the last.
        s.start(a2 + 500);
        assert_eq!(s.next_ms(), Some(a2 + 3000));
        s.stop();
        s.start(a2 + 9000);
        assert_eq!(s.next_ms(), Some(a2 + 9000));
    }
}
