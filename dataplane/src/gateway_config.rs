//! The gateway's YAML: interfaces, routes, neighbours, cores, static SAs and policies.
//!
//! ```yaml
//! interfaces:
//!   - name: inside
//!     device: "net_af_packet0,iface=veth-a-in"   # a DPDK vdev string or a PCI address
//!     role: inside                               # inside | outside
//!     addresses: [192.168.10.1/24, "2001:db8:10::1/64"]
//!     mtu: 1500
//!     link_delay: { down: 200ms, up: 5s }        # optional: a link change counts (for VRRP
//!                                                # link tracking) once it has held that long
//!     router_advertisements: { interval: 30s }   # optional: IPv6 router advertisements
//!                                                # (RFC 4861; from the VRRP master only)
//! routes:
//!   - { dst: 192.168.20.0/24, interface: outside, via: 203.0.113.2 }
//! neighbours:
//!   - { ip: 203.0.113.2, mac: "02:00:00:00:00:02", interface: outside }
//! cores: { main: 0, workers: [1] }
//! sas: [ ... the entries of crate::config ... ]
//! policies:
//!   - { direction: out, src: 192.168.10.0/24, dst: 192.168.20.0/24, action: protect, sa: a-to-b }
//!   - { direction: in, src: 192.168.20.0/24, dst: 192.168.10.0/24, action: protect }
//! mss_clamp: auto        # auto (from MTU and SA overhead) | off | a number
//! vrrp:                  # virtual addresses shared with another gateway (RFC 5798 VRRPv3)
//!   - { interface: outside, vrid: 51, priority: 150, advert_interval: 1s, vips: [203.0.113.1], group: site }
//!     # its own link is tracked (down: fault, the addresses go); `track: [inside]` adds others;
//!     # `preempt_delay: 5s`: no preemption for that long after a start or a fault
//!     # `track_ike: false`: with --control, a control plane (ferrogate-ike) that stopped saying
//!     # it is alive (3 s) lowers the router's priority to 1, unless this says false (default
//!     # true)
//!     # `vmac: true`: the master answers for the addresses from 00:00:5e:00:01:{vrid}
//!     # (IPv6: 00:00:5e:00:02:{vrid}; RFC 5798 §7.3), so the link's hosts keep one MAC for
//!     # them over a takeover
//!   - { interface: outside, vrid: 51, priority: 150, vips: ["2001:db8:113::1"], group: site }
//!     # IPv6 (its own line; the same vrid may serve both families): advertised to ff02::12
//!     # from the port's link-local address (a configured fe80:: one, else from its MAC),
//!     # announced by unsolicited neighbor advertisements, virtual MAC 00:00:5e:00:02:{vrid}
//! ```
//!
//! Unknown keys are errors; YAML errors name the file, line and column (and the key, and the
//! value refused); references between sections (an SA named by a policy, an interface named by
//! a route) are checked, and those errors name the entry. Booleans (`preempt`, `vmac`, `esn`...)
//! are `true`/`false` or `yes`/`no`, as in `ferrogate-ike`'s file.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use crate::config::{number_or_word, syntax_error, yes_no, ConfigError, SaEntry};
use crate::net::IpPrefix;
use crate::sa::{Direction, SaParams};
use crate::spd::{Action, PortRange, Rule, Selector};

/// An interface address with its prefix length (host bits allowed: `192.168.10.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// The on-link prefix length.
    pub len: u8,
}

impl IfAddr {
    /// The on-link prefix.
    pub fn network(&self) -> IpPrefix {
        IpPrefix::containing(self.addr, self.len)
    }
}

impl FromStr for IfAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not ADDRESS/LENGTH"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IP address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("`{l}` is not a prefix length"))?;
        if len > if addr.is_ipv4() { 32 } else { 128 } {
            return Err(format!("prefix length {len} is too long for {addr}"));
        }
        Ok(Self { addr, len })
    }
}

/// A MAC address written `02:00:00:00:00:01`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut m = [0u8; 6];
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!(
                "`{s}` is not a MAC address (six hex bytes separated by ':')"
            ));
        }
        for (b, p) in m.iter_mut().zip(parts) {
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("`{s}` is not a MAC address"))?;
        }
        Ok(Mac(m))
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(IfAddr);
string_serde!(Mac);

/// Which side of the gateway an interface faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The protected site.
    Inside,
    /// The network the tunnels cross.
    Outside,
}

/// One interface.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Name used by routes and neighbours.
    pub name: String,
    /// DPDK device: a vdev string (`net_af_packet0,iface=eth1`, `net_tap0`...) or a PCI address.
    pub device: String,
    /// Inside or outside.
    pub role: Role,
    /// Addresses with their prefix lengths.
    #[serde(default)]
    pub addresses: Vec<IfAddr>,
    /// MTU of the link.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// MAC to use instead of the device's.
    #[serde(default)]
    pub mac: Option<Mac>,
    /// How long a change of the link must hold before link tracking acts on it.
    #[serde(default)]
    pub link_delay: LinkDelay,
    /// IPv6 router advertisements on this link (resolved into [`GatewayConfig::ra`]).
    #[serde(default)]
    pub router_advertisements: Option<RaEntry>,
}

/// `router_advertisements:` as written (RFC 4861 §6.2.1's variables).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaEntry {
    /// MaxRtrAdvInterval (4s-1800s).
    #[serde(default = "default_ra_interval")]
    interval: String,
    /// MinRtrAdvInterval (3 s to 0.75 × interval; default 0.33 × interval, at least 3 s).
    #[serde(default)]
    min_interval: Option<String>,
    /// Router lifetime (0: not a default router; else interval to 9000s; default 3 × interval).
    #[serde(default)]
    lifetime: Option<String>,
    /// Cur Hop Limit given to the hosts (0: unspecified).
    #[serde(default = "default_ra_hop_limit")]
    hop_limit: u8,
    /// M flag.
    #[serde(default, deserialize_with = "yes_no")]
    managed: bool,
    /// O flag.
    #[serde(default, deserialize_with = "yes_no")]
    other: bool,
    /// MTU option with the interface's MTU.
    #[serde(default = "default_true", deserialize_with = "yes_no")]
    mtu: bool,
    /// Prefix information (default: the networks of the interface's global IPv6 addresses).
    #[serde(default)]
    prefixes: Option<Vec<IpPrefix>>,
    /// A flag of the prefixes (SLAAC).
    #[serde(default = "default_true", deserialize_with = "yes_no")]
    autonomous: bool,
    /// Valid lifetime of the prefixes (default 30 days).
    #[serde(default)]
    valid_lifetime: Option<String>,
    /// Preferred lifetime of the prefixes (default 7 days).
    #[serde(default)]
    preferred_lifetime: Option<String>,
    /// Route information (RFC 4191): prefixes reached through this gateway.
    #[serde(default)]
    routes: Vec<IpPrefix>,
    /// Recursive DNS servers (RFC 8106).
    #[serde(default)]
    dns: Vec<std::net::Ipv6Addr>,
    /// DNS search list (RFC 8106).
    #[serde(default)]
    search: Vec<String>,
}

fn default_ra_interval() -> String {
    "600s".into()
}

fn default_ra_hop_limit() -> u8 {
    64
}

/// A link whose hosts get router advertisements.
#[derive(Debug, Clone)]
pub struct RaLink {
    /// Index of its interface in [`GatewayConfig::interfaces`].
    pub interface: usize,
    /// What the advertisements say.
    pub config: crate::ra::Config,
    /// The IPv6 VRRP router (index in [`GatewayConfig::vrrp`]) whose master advertises,
    /// from `source`, its link-local virtual address; `None`: the gateway always advertises,
    /// from the port's link-local address.
    pub vrrp: Option<(usize, std::net::Ipv6Addr)>,
}

impl RaEntry {
    /// The advertisements of interface `iface`, whose IPv6 VRRP routers are `routers`
    /// (index, virtual addresses).
    fn resolve(
        &self,
        iface: &Interface,
        routers: &[(usize, &[IpAddr])],
    ) -> Result<(crate::ra::Config, Option<(usize, std::net::Ipv6Addr)>), String> {
        let secs = |what: &str, d: &str, lo: u64, hi: u64| {
            crate::config::parse_duration(d)
                .map(|d| d.as_millis() as u64)
                .filter(|ms| (lo..=hi).contains(ms))
                .ok_or_else(|| {
                    format!(
                        "router_advertisements: {what} `{d}` is not {}-{} s",
                        lo / 1000,
                        hi / 1000
                    )
                })
        };
        let max = secs("interval", &self.interval, 4_000, 1_800_000)?;
        // The default router lifetime, and the lifetime of routes and DNS entries (RFC 8106
        // §5.1 asks at least the maximum interval): three intervals, s.
        let three_intervals_s = max * 3 / 1000;
        let min = match &self.min_interval {
            Some(d) => secs("min_interval", d, 3_000, max * 3 / 4)?,
            None => (max / 3).max(3_000),
        };
        let lifetime_s = match &self.lifetime {
            Some(d) => {
                let ms = crate::config::parse_duration(d)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(u64::MAX);
                // Whole seconds on the wire: 4.5 s is not at least a 4.5 s interval.
                if ms != 0 && !(max..=9_000_000).contains(&(ms / 1000 * 1000)) {
                    return Err(format!(
                        "router_advertisements: lifetime `{d}` is not 0 or interval-9000 s"
                    ));
                }
                (ms / 1000) as u16
            }
            None => three_intervals_s.min(9000) as u16,
        };
        let days = |what: &str, d: &Option<String>, default: u32| match d {
            None => Ok(default),
            Some(d) => crate::config::parse_duration(d)
                .and_then(|d| u32::try_from(d.as_secs()).ok())
                .ok_or_else(|| format!("router_advertisements: {what} `{d}` is not a duration")),
        };
        let valid_s = days(
            "valid_lifetime",
            &self.valid_lifetime,
            crate::ra::DEFAULT_VALID_S,
        )?;
        let preferred_s = days(
            "preferred_lifetime",
            &self.preferred_lifetime,
            crate::ra::DEFAULT_PREFERRED_S,
        )?;
        if preferred_s > valid_s {
            return Err("router_advertisements: preferred_lifetime exceeds valid_lifetime".into());
        }
        let nets: Vec<IpPrefix> = match &self.prefixes {
            Some(p) => p.clone(),
            None => iface
                .addresses
                .iter()
                .filter(|a| matches!(a.addr, IpAddr::V6(v) if !v.is_unicast_link_local()))
                .map(|a| a.network())
                .collect(),
        };
        let mut prefixes = Vec::new();
        for n in nets {
            let IpAddr::V6(prefix) = n.addr() else {
                return Err(format!("router_advertisements: prefix {n} is not IPv6"));
            };
            if prefix.is_unicast_link_local() || prefix.is_multicast() {
                return Err(format!(
                    "router_advertisements: prefix {n} is link-local or multicast"
                ));
            }
            if prefixes
                .iter()
                .any(|p: &crate::ra::Prefix| p.prefix == prefix && p.len == n.len())
            {
                continue;
            }
            prefixes.push(crate::ra::Prefix {
                prefix,
                len: n.len(),
                on_link: true,
                // Hosts form addresses from /64s only (RFC 4862 §5.5.3 d with the interface
                // identifiers of RFC 4291): others are advertised on-link alone.
                autonomous: self.autonomous && n.len() == 64,
                valid_s,
                preferred_s,
            });
        }
        // Routes live as long as the router would (3 x interval if it is no default router).
        let route_s = if lifetime_s == 0 {
            three_intervals_s as u32
        } else {
            u32::from(lifetime_s)
        };
        let mut routes = Vec::new();
        for r in &self.routes {
            let IpAddr::V6(prefix) = r.addr() else {
                return Err(format!("router_advertisements: route {r} is not IPv6"));
            };
            routes.push(crate::ra::RouteInfo {
                prefix,
                len: r.len(),
                lifetime_s: route_s,
            });
        }
        if let Some(a) = self
            .dns
            .iter()
            .find(|a| a.is_multicast() || a.is_unspecified())
        {
            return Err(format!(
                "router_advertisements: dns {a} is not a unicast address"
            ));
        }
        if let Some(n) = self
            .search
            .iter()
            .find(|n| crate::ra::encode_domain(n).is_none())
        {
            return Err(format!(
                "router_advertisements: search `{n}` is not a domain name (labels of 1-63 \
                 letters, digits and hyphens)"
            ));
        }
        let has_v6 = iface.addresses.iter().any(|a| a.addr.is_ipv6()) || !routers.is_empty();
        if iface.mtu < 1280 {
            return Err(format!(
                "router_advertisements on `{}`, whose MTU {} is below IPv6's 1280",
                iface.name, iface.mtu
            ));
        }
        if !has_v6 {
            return Err(format!(
                "router_advertisements on `{}`, which has no IPv6 address or IPv6 VRRP router",
                iface.name
            ));
        }
        // With VRRP the master speaks from the router's link-local virtual address: the
        // hosts' routes name it, and it moves with the master.
        let vrrp = if routers.is_empty() {
            None
        } else {
            let found = routers.iter().find_map(|(i, vips)| match vips.first() {
                Some(IpAddr::V6(a)) if a.is_unicast_link_local() => Some((*i, *a)),
                _ => None,
            });
            Some(found.ok_or_else(|| {
                format!(
                    "router_advertisements on `{}`: its IPv6 VRRP router has no link-local \
                     virtual address (first in `vips`, e.g. \"fe80::1\"); advertised from \
                     this gateway's own address, the hosts' routes would not follow a takeover",
                    iface.name
                )
            })?)
        };
        let config = crate::ra::Config {
            max_interval_ms: max,
            min_interval_ms: min,
            lifetime_s,
            hop_limit: self.hop_limit,
            managed: self.managed,
            other: self.other,
            mtu: self.mtu.then_some(u32::from(iface.mtu)),
            prefixes,
            routes,
            dns: self.dns.clone(),
            search: self.search.clone(),
            dns_lifetime_s: three_intervals_s as u32,
        };
        // One advertisement, one datagram on the link.
        let ip_len = config.frame_len() - 14;
        if ip_len > usize::from(iface.mtu) || config.frame_len() > crate::ra::MAX_FRAME_LEN {
            return Err(format!(
                "router_advertisements: {ip_len} bytes do not fit one advertisement on MTU {} \
                 (fewer prefixes, routes or DNS entries)",
                iface.mtu
            ));
        }
        Ok((config, vrrp))
    }
}

/// `link_delay: { down: 200ms, up: 5s }`: a lost link counts once it has been down `down`,
/// a returned one once it has been up `up` (routers' carrier-delay; each 0-600 s, default 0).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDelay {
    #[serde(default)]
    down: Option<String>,
    #[serde(default)]
    up: Option<String>,
}

impl LinkDelay {
    /// (down, up) in milliseconds.
    pub fn ms(&self) -> Result<(u64, u64), String> {
        let one = |d: &Option<String>| match d {
            None => Ok(0),
            Some(d) => crate::config::parse_duration(d)
                .filter(|d| d.as_secs() <= 600)
                .map(|d| d.as_millis() as u64)
                .ok_or_else(|| format!("link_delay `{d}` is not 0-600 s (`200ms`, `5s`)")),
        };
        Ok((one(&self.down)?, one(&self.up)?))
    }
}

fn default_mtu() -> u16 {
    1500
}

impl Interface {
    /// The kernel interface under an af_packet device (`net_af_packet0,iface=eth1` → `eth1`).
    /// Its link state is the kernel's: the af_packet driver reports its link up whatever the
    /// interface does, so the gateway reads the carrier there.
    pub fn kernel_iface(&self) -> Option<&str> {
        let mut args = self.device.split(',');
        let driver = args.next()?;
        if !(driver.starts_with("net_af_packet") || driver.starts_with("eth_af_packet")) {
            return None;
        }
        args.find_map(|a| a.trim().strip_prefix("iface="))
            .filter(|n| !n.is_empty())
    }
}

/// A static route.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination prefix.
    pub dst: IpPrefix,
    /// Out of this interface.
    pub interface: String,
    /// Next hop (on-link if absent).
    #[serde(default)]
    pub via: Option<IpAddr>,
}

/// A static neighbour (ARP/ND entry).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbour {
    /// IP address.
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: Mac,
    /// On this interface.
    pub interface: String,
}

/// Which lcores do what.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cores {
    /// The main lcore (the control-plane channel, table publication, stats).
    pub main: u32,
    /// Worker lcores, one pipeline each with a receive queue on every port (RSS spreads
    /// the traffic) and a transmit queue on every port. Empty: the main lcore runs the one
    /// pipeline.
    pub workers: Vec<u32>,
}

/// TCP MSS clamping on SYNs entering a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MssClamp {
    /// Derived from the egress MTU and the SA's overhead.
    #[default]
    Auto,
    /// Never.
    Off,
    /// This value.
    Fixed(u16),
}

impl<'de> serde::Deserialize<'de> for MssClamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_word(
            d,
            "auto, off or an MSS from 536 (what every host must accept) to 65535",
            |n| {
                u16::try_from(n)
                    .ok()
                    .filter(|n| *n >= 536)
                    .map(MssClamp::Fixed)
            },
            |s| match s {
                "auto" => Some(MssClamp::Auto),
                "off" => Some(MssClamp::Off),
                _ => None,
            },
        )
    }
}

/// A VRRP virtual router as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VrrpEntry {
    interface: String,
    vrid: u8,
    #[serde(default = "default_vrrp_priority")]
    priority: u8,
    #[serde(default = "default_advert_interval")]
    advert_interval: String,
    #[serde(default = "default_true", deserialize_with = "yes_no")]
    preempt: bool,
    #[serde(default)]
    preempt_delay: Option<String>,
    vips: Vec<IpAddr>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    track: Vec<String>,
    #[serde(default = "default_true", deserialize_with = "yes_no")]
    track_ike: bool,
    #[serde(default, deserialize_with = "yes_no")]
    vmac: bool,
}

fn default_vrrp_priority() -> u8 {
    100
}

fn default_advert_interval() -> String {
    "1s".into()
}

fn default_true() -> bool {
    true
}

/// A VRRP interval (`1s`, `100ms`, `2.5s`) in centiseconds, 1 to 4095 (RFC 5798's 12 bits).
fn advert_interval_cs(s: &str) -> Result<u16, String> {
    let bad =
        || format!("advert_interval `{s}` is not 10ms-40.95s in steps of 10 ms (`1s`, `100ms`)");
    // A unit is required: a bare number is not taken for seconds here (the wire counts
    // centiseconds, and keepalived's `advert_int 1` is seconds: either could be meant).
    let n = s.trim();
    if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "advert_interval `{n}` has no unit: write `{n}s` or `{n}ms` (10ms-40.95s in steps \
             of 10 ms)"
        ));
    }
    if !n.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad());
    }
    let d = crate::config::parse_duration(s).ok_or_else(bad)?;
    let cs = d.as_secs_f64() * 100.0;
    if !(1.0..=4095.0).contains(&cs.round()) || (cs - cs.round()).abs() > 1e-6 {
        return Err(bad());
    }
    Ok(cs.round() as u16)
}

/// A VRRP virtual router of the gateway.
#[derive(Debug, Clone)]
pub struct VrrpInstance {
    /// Index of its interface in [`GatewayConfig::interfaces`].
    pub interface: usize,
    /// The router's settings (its primary address is the interface's first IPv4 address).
    pub config: crate::vrrp::Config,
    /// Its sync group: the routers of a group are master together or backup together.
    pub group: Option<String>,
    /// The interfaces (indices) whose links it tracks: its own first, then those of
    /// `track:`. While any is down the router is in fault, and so is its sync group.
    pub track: Vec<usize>,
    /// `track_ike` (default true): with a control channel, the router competes with priority 1
    /// while the control plane, once it said it was alive, has been silent for
    /// [`crate::ctl::ALIVE_LOST`] ([`crate::vrrp::Router::set_lowered`]): a master whose
    /// ferrogate-ike died hands the addresses, and with them the tunnels, to a backup whose
    /// control plane lives.
    pub track_ike: bool,
    /// `vmac: true`: as master it speaks for the addresses from the virtual router MAC
    /// ([`crate::vrrp::virtual_mac`]): advertisements, gratuitous ARPs and ARP answers for the
    /// virtual addresses, and it takes frames sent to that MAC (a backup drops them).
    pub vmac: bool,
}

/// A policy as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyEntry {
    direction: Direction,
    #[serde(default = "default_priority")]
    priority: u32,
    src: IpPrefix,
    dst: IpPrefix,
    #[serde(default)]
    proto: Option<Proto>,
    #[serde(default)]
    src_ports: Option<Ports>,
    #[serde(default)]
    dst_ports: Option<Ports>,
    action: PolicyAction,
    #[serde(default)]
    sa: Option<String>,
}

fn default_priority() -> u32 {
    100
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PolicyAction {
    Protect,
    Bypass,
    Discard,
}

/// A protocol by name or number.
#[derive(Debug, Clone, Copy)]
struct Proto(u8);

impl<'de> serde::Deserialize<'de> for Proto {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::wire::ip_proto;
        number_or_word(
            d,
            "a protocol: tcp, udp, icmp, icmpv6, esp, sctp or a number from 0 to 255",
            |n| u8::try_from(n).ok().map(Proto),
            |s| match s {
                "tcp" => Some(Proto(ip_proto::TCP)),
                "udp" => Some(Proto(ip_proto::UDP)),
                "icmp" => Some(Proto(ip_proto::ICMP)),
                "ipv6-icmp" | "icmpv6" => Some(Proto(ip_proto::ICMPV6)),
                "esp" => Some(Proto(ip_proto::ESP)),
                "sctp" => Some(Proto(132)),
                _ => None,
            },
        )
    }
}

/// A port or `LO-HI` range.
#[derive(Debug, Clone, Copy)]
struct Ports(PortRange);

impl<'de> serde::Deserialize<'de> for Ports {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        number_or_word(
            d,
            "a port from 0 to 65535 or a LO-HI range of them",
            |n| u16::try_from(n).ok().map(|n| Ports(PortRange::single(n))),
            |s| {
                let (lo, hi) = s.split_once('-').unwrap_or((s, s));
                let lo: u16 = lo.trim().parse().ok()?;
                let hi: u16 = hi.trim().parse().ok()?;
                (lo <= hi).then_some(Ports(PortRange { lo, hi }))
            },
        )
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    interfaces: Vec<Interface>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    neighbours: Vec<Neighbour>,
    cores: Cores,
    #[serde(default)]
    sas: Vec<SaEntry>,
    #[serde(default)]
    policies: Vec<PolicyEntry>,
    #[serde(default)]
    mss_clamp: MssClamp,
    #[serde(default)]
    vrrp: Vec<VrrpEntry>,
}

/// A validated gateway configuration.
#[derive(Debug)]
pub struct GatewayConfig {
    /// Interfaces, in the order given.
    pub interfaces: Vec<Interface>,
    /// Static routes.
    pub routes: Vec<Route>,
    /// Static neighbours.
    pub neighbours: Vec<Neighbour>,
    /// Core assignment.
    pub cores: Cores,
    /// Static SAs.
    pub sas: Vec<SaParams>,
    /// SPD-out: PROTECT rules carry the index of their SA in `sas`.
    pub spd_out: Vec<Rule<usize>>,
    /// SPD-in: PROTECT means "must arrive through IPsec".
    pub spd_in: Vec<Rule<()>>,
    /// MSS clamping.
    pub mss_clamp: MssClamp,
    /// VRRP virtual routers.
    pub vrrp: Vec<VrrpInstance>,
    /// Links with IPv6 router advertisements.
    pub ra: Vec<RaLink>,
}

impl GatewayConfig {
    /// Reads and validates a gateway file; key files resolve relative to it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses gateway YAML; `path` names the file in errors and anchors key files.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let f: File = serde_yaml::from_str(text).map_err(|e| syntax_error(e, path))?;
        let invalid =
            |what: &str, index: usize, name: String, message: String| ConfigError::Invalid {
                path: path.to_owned(),
                kind: match what {
                    "interfaces" => "interface",
                    "routes" => "route",
                    "neighbours" => "neighbour",
                    "cores" => "cores",
                    "vrrp" => "VRRP group",
                    "sas" => "SA",
                    _ => "policy",
                },
                index,
                name,
                message,
            };
        if f.interfaces.is_empty() {
            return Err(invalid(
                "interfaces",
                0,
                String::new(),
                "at least one interface is needed".into(),
            ));
        }
        for (i, a) in f.interfaces.iter().enumerate() {
            if f.interfaces[..i].iter().any(|b| b.name == a.name) {
                return Err(invalid(
                    "interfaces",
                    i,
                    a.name.clone(),
                    "interface names must be unique".into(),
                ));
            }
            if a.mtu < 576 {
                return Err(invalid(
                    "interfaces",
                    i,
                    a.name.clone(),
                    format!("MTU {} is below 576", a.mtu),
                ));
            }
            a.link_delay
                .ms()
                .map_err(|m| invalid("interfaces", i, a.name.clone(), m))?;
        }
        let index = |n: &str| f.interfaces.iter().position(|i| i.name == n);
        for (i, r) in f.routes.iter().enumerate() {
            if index(&r.interface).is_none() {
                return Err(invalid(
                    "routes",
                    i,
                    r.dst.to_string(),
                    format!("no interface named `{}`", r.interface),
                ));
            }
        }
        for (i, n) in f.neighbours.iter().enumerate() {
            if index(&n.interface).is_none() {
                return Err(invalid(
                    "neighbours",
                    i,
                    n.ip.to_string(),
                    format!("no interface named `{}`", n.interface),
                ));
            }
        }
        let mut seen = f.cores.workers.clone();
        seen.sort_unstable();
        seen.dedup();
        if f.cores.workers.contains(&f.cores.main) || seen.len() != f.cores.workers.len() {
            return Err(invalid(
                "cores",
                0,
                String::new(),
                "worker lcores must differ from the main one and from each other ([] runs \
                 the pipeline on the main lcore)"
                    .into(),
            ));
        }
        let mut vrrp: Vec<VrrpInstance> = Vec::new();
        for (i, v) in f.vrrp.iter().enumerate() {
            let label = format!("vrid {}", v.vrid);
            let bad = |m: String| invalid("vrrp", i, label.clone(), m);
            let k = index(&v.interface)
                .ok_or_else(|| bad(format!("no interface named `{}`", v.interface)))?;
            let iface = &f.interfaces[k];
            let v6 = v.vips.first().is_some_and(|a| a.is_ipv6());
            if v.vips.iter().any(|a| a.is_ipv6() != v6) {
                return Err(bad(
                    "vips mixes IPv4 and IPv6: a router is of one family (RFC 5798); give the \
                     other family a line of its own (it may use the same vrid)"
                        .into(),
                ));
            }
            // IPv4: the port's first IPv4 address. IPv6: its first link-local address, or
            // (unspecified here) the one the gateway derives from the port's MAC.
            let primary = if v6 {
                iface
                    .addresses
                    .iter()
                    .find(|a| matches!(a.addr, IpAddr::V6(x) if x.is_unicast_link_local()))
                    .map_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), |a| a.addr)
            } else {
                iface
                    .addresses
                    .iter()
                    .find(|a| a.addr.is_ipv4())
                    .map(|a| a.addr)
                    .ok_or_else(|| {
                        bad(format!(
                            "interface `{}` has no IPv4 address to advertise from",
                            v.interface
                        ))
                    })?
            };
            if v.vrid == 0 {
                return Err(bad("vrid is 1-255".into()));
            }
            if !(1..=254).contains(&v.priority) {
                return Err(bad(
                    "priority is 1-254 (255 is for the owner of the addresses)".into(),
                ));
            }
            if v.vips.is_empty() {
                return Err(bad("vips lists at least one address".into()));
            }
            // Every address goes in each advertisement: one IP datagram on the link.
            let (ip_len, alen) = if v6 { (40, 16) } else { (20, 4) };
            let fit = ((usize::from(iface.mtu) - ip_len - 8) / alen).min(255);
            if v.vips.len() > fit {
                return Err(bad(format!(
                    "{} vips do not fit one advertisement: at most {fit} with MTU {}",
                    v.vips.len(),
                    iface.mtu
                )));
            }
            if let Some(a) = v
                .vips
                .iter()
                .find(|a| iface.addresses.iter().any(|x| x.addr == **a))
            {
                return Err(bad(format!(
                    "{a} is an address of `{}` itself: a virtual address is not in `addresses`",
                    v.interface
                )));
            }
            if let Some(p) = v
                .vips
                .iter()
                .skip(1)
                .position(|a| matches!(a, IpAddr::V6(x) if x.is_unicast_link_local()))
            {
                return Err(bad(format!(
                    "{} is link-local: it goes first in `vips` (RFC 5798 §5.2.9)",
                    v.vips[p + 1]
                )));
            }
            if vrrp.iter().any(|o| {
                o.interface == k && o.config.vrid == v.vrid && o.config.primary.is_ipv6() == v6
            }) {
                return Err(bad(format!(
                    "vrid {} is used twice on `{}` for {}",
                    v.vrid,
                    v.interface,
                    if v6 { "IPv6" } else { "IPv4" }
                )));
            }
            let interval_cs = advert_interval_cs(&v.advert_interval).map_err(bad)?;
            let preempt_delay_ms = match &v.preempt_delay {
                None => 0,
                Some(d) => crate::config::parse_duration(d)
                    .filter(|d| d.as_secs() <= 1000)
                    .ok_or_else(|| bad(format!("preempt_delay `{d}` is not 0-1000 s (`5s`)")))?
                    .as_millis() as u64,
            };
            let mut track = vec![k];
            for t in &v.track {
                let j = index(t).ok_or_else(|| bad(format!("track: no interface named `{t}`")))?;
                if !track.contains(&j) {
                    track.push(j);
                }
            }
            vrrp.push(VrrpInstance {
                interface: k,
                config: crate::vrrp::Config {
                    vrid: v.vrid,
                    priority: v.priority,
                    interval_cs,
                    preempt: v.preempt,
                    preempt_delay_ms,
                    primary,
                    vips: v.vips.clone(),
                },
                group: v.group.clone(),
                track,
                track_ike: v.track_ike,
                vmac: v.vmac,
            });
        }
        let mut ra = Vec::new();
        for (k, iface) in f.interfaces.iter().enumerate() {
            let Some(e) = &iface.router_advertisements else {
                continue;
            };
            let routers: Vec<(usize, &[IpAddr])> = vrrp
                .iter()
                .enumerate()
                .filter(|(_, v)| v.interface == k && v.config.primary.is_ipv6())
                .map(|(i, v)| (i, v.config.vips.as_slice()))
                .collect();
            let (config, by) = e
                .resolve(iface, &routers)
                .map_err(|m| invalid("interfaces", k, iface.name.clone(), m))?;
            ra.push(RaLink {
                interface: k,
                config,
                vrrp: by,
            });
        }
        // Each SA is checked as it would be installed (mixed address families, a replay window
        // out of range, a cipher on AH...), by name, before EAL and the ports are up; so are
        // duplicate names and inbound SPIs.
        let sas = crate::config::build_sas(f.sas, path, true)?;
        let names: Vec<String> = sas
            .iter()
            .map(|p| crate::config::sa_label(&p.name, p.spi))
            .collect();
        let mut spd_out = Vec::new();
        let mut spd_in = Vec::new();
        for (i, p) in f.policies.into_iter().enumerate() {
            let label = format!("{} -> {}", p.src, p.dst);
            if p.src.is_ipv4() != p.dst.is_ipv4() {
                return Err(invalid(
                    "policies",
                    i,
                    label,
                    "src and dst are of different address families".into(),
                ));
            }
            let selector = Selector {
                src: p.src,
                dst: p.dst,
                proto: p.proto.map(|x| x.0),
                src_ports: p.src_ports.map_or(PortRange::ANY, |x| x.0),
                dst_ports: p.dst_ports.map_or(PortRange::ANY, |x| x.0),
            };
            match (p.direction, p.action) {
                (Direction::Out, PolicyAction::Protect) => {
                    let name = p.sa.ok_or_else(|| {
                        invalid(
                            "policies",
                            i,
                            label.clone(),
                            "an outbound protect policy names its `sa`".into(),
                        )
                    })?;
                    let k = names.iter().position(|n| *n == name).ok_or_else(|| {
                        invalid(
                            "policies",
                            i,
                            label.clone(),
                            format!("no SA named `{name}`"),
                        )
                    })?;
                    if sas[k].direction != Direction::Out {
                        return Err(invalid(
                            "policies",
                            i,
                            label,
                            format!("SA `{name}` is not an outbound SA"),
                        ));
                    }
                    spd_out.push(Rule {
                        priority: p.priority,
                        selector,
                        action: Action::Protect(k),
                    });
                }
                (Direction::Out, a) => spd_out.push(Rule {
                    priority: p.priority,
                    selector,
                    action: simple(a),
                }),
                (Direction::In, a) => {
                    if p.sa.is_some() {
                        return Err(invalid("policies", i, label, "inbound policies name no SA: the SA that carried a packet is checked against its own selectors".into()));
                    }
                    let action = match a {
                        PolicyAction::Protect => Action::Protect(()),
                        other => simple(other),
                    };
                    spd_in.push(Rule {
                        priority: p.priority,
                        selector,
                        action,
                    });
                }
            }
        }
        Ok(Self {
            interfaces: f.interfaces,
            routes: f.routes,
            neighbours: f.neighbours,
            cores: f.cores,
            sas,
            spd_out,
            spd_in,
            mss_clamp: f.mss_clamp,
            vrrp,
            ra,
        })
    }
}

fn simple<T>(a: PolicyAction) -> Action<T> {
    match a {
        PolicyAction::Bypass => Action::Bypass,
        _ => Action::Discard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/examples/site-a.yaml"
        ))
        .unwrap()
    }

    #[test]
    fn the_example_site_parses() {
        let c = GatewayConfig::parse(&example(), Path::new("site-a.yaml")).unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(
            c.interfaces[0].addresses[0],
            "192.168.10.1/24".parse().unwrap()
        );
        assert_eq!(c.cores.workers, vec![1]);
        assert_eq!(c.sas.len(), 2);
        assert_eq!(c.spd_out.len(), 2);
        assert!(matches!(c.spd_out[0].action, Action::Bypass));
        assert!(matches!(c.spd_out[1].action, Action::Protect(0)));
        assert_eq!(c.spd_in.len(), 2);
        assert_eq!(c.mss_clamp, MssClamp::Auto);
        // The rules compile into classifiers.
        crate::spd::Spd::build(c.spd_out).unwrap();
        crate::spd::Spd::build(c.spd_in).unwrap();
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = GatewayConfig::parse(
            &example().replace("mtu: 1500", "mtu: 1500\n    colour: red"),
            Path::new("g.yaml"),
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("g.yaml:") && m.contains("colour"), "{m}");
        let e = GatewayConfig::parse(
            &example().replace("sa: a-to-b", "sa: nope"),
            Path::new("g.yaml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no SA named `nope`"), "{e}");
        let e = GatewayConfig::parse(
            &example().replace("interface: outside, via", "interface: wan, via"),
            Path::new("g.yaml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no interface named `wan`"), "{e}");
        let e = GatewayConfig::parse(
            &example().replace("02:00:00:00:0b:01", "02:00:00:00:0b"),
            Path::new("g.yaml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a MAC address"), "{e}");
        let e = GatewayConfig::parse(
            &example().replace("mss_clamp: auto", "mss_clamp: 100"),
            Path::new("g.yaml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("536"), "{e}");
        let e = GatewayConfig::parse(
            &example().replace("dst_ports: 22", "dst_ports: 30-20"),
            Path::new("g.yaml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("LO-HI"), "{e}");
    }

    /// Errors name the kind of entry, its place and its name; a second SA of the same name
    /// and a second inbound SA with the same SPI and local address are refused (before, a
    /// policy took the first SA of the name, and the second inbound SA replaced the first in
    /// the SAD).
    #[test]
    fn duplicates_are_refused_and_errors_name_the_entry() {
        let err = |y: String| {
            GatewayConfig::parse(&y, Path::new("g.yaml"))
                .unwrap_err()
                .to_string()
        };
        let m = err(example().replacen("mtu: 1500", "mtu: 500", 1));
        assert_eq!(m, "g.yaml: interface #0 (inside): MTU 500 is below 576");
        // A next hop of the other family is no error: an inside subnet routed to the peer of a
        // 4in6 tunnel has the peer's IPv6 address as its next hop.
        GatewayConfig::parse(
            &example().replace("via: 203.0.113.2", "via: \"2001:db8::2\""),
            Path::new("g.yaml"),
        )
        .unwrap();
        let sas = example();
        let (head, rest) = sas.split_once("  - name: b-to-a").unwrap();
        let (b_to_a, tail) = rest.split_once("policies:").unwrap();
        let twice = |second: &str| {
            format!("{head}  - name: b-to-a{b_to_a}  - name: {second}{b_to_a}policies:{tail}")
        };
        let m = err(twice("b-to-a"));
        assert!(
            m.contains("SA #2 (b-to-a): another SA has this name"),
            "{m}"
        );
        let m = err(twice("b-to-a-2"));
        assert!(
            m.contains("SA #2 (b-to-a-2): another inbound SA has SPI 0xc0010002"),
            "{m}"
        );
        // What only building the SA finds is said when the file is read, by name.
        let m = err(example().replace("replay_window: 1024", "replay_window: 1000"));
        assert!(m.starts_with("g.yaml: SA #1 (b-to-a): "), "{m}");
        let m = err(example().replacen("local: 203.0.113.1", "local: \"2001:db8::1\"", 1));
        assert!(m.starts_with("g.yaml: SA #0 (a-to-b): "), "{m}");
        let other_spi = twice("b-to-a-2").replacen("spi: 0xc0010002", "spi: 0xc0010003", 2);
        let other_spi = other_spi.replacen("spi: 0xc0010003", "spi: 0xc0010002", 1);
        GatewayConfig::parse(&other_spi, Path::new("g.yaml")).unwrap();
    }

    #[test]
    fn af_packet_devices_name_their_kernel_interface() {
        let iface = |device: &str| Interface {
            name: "x".into(),
            device: device.into(),
            role: Role::Inside,
            addresses: Vec::new(),
            mtu: 1500,
            mac: None,
            link_delay: LinkDelay::default(),
            router_advertisements: None,
        };
        assert_eq!(
            iface("net_af_packet0,iface=veth-a").kernel_iface(),
            Some("veth-a")
        );
        assert_eq!(
            iface("eth_af_packet3,qpairs=2,iface=eth1,blocksz=4096").kernel_iface(),
            Some("eth1")
        );
        assert_eq!(iface("net_af_packet0").kernel_iface(), None);
        assert_eq!(iface("net_af_packet0,iface=").kernel_iface(), None);
        assert_eq!(iface("net_tap0,iface=tap0").kernel_iface(), None);
        assert_eq!(iface("0000:3b:00.0").kernel_iface(), None);
    }

    /// The example's commented VRRP lines parse once uncommented, as its comment says to.
    #[test]
    fn the_example_sites_vrrp_lines_parse() {
        let mut y = example()
            .replace(
                "addresses: [192.168.10.1/24]",
                "addresses: [192.168.10.2/24]",
            )
            .replace("addresses: [203.0.113.1/24]", "addresses: [203.0.113.3/24]");
        let lines: Vec<String> = y.lines().map(str::to_string).collect();
        let at = lines
            .iter()
            .position(|l| l == "# vrrp:")
            .expect("the commented block");
        for l in &lines[at..] {
            y.push_str(l.trim_start_matches("# "));
            y.push('\n');
        }
        let c = GatewayConfig::parse(&y, Path::new("site-a.yaml")).unwrap();
        assert_eq!(c.vrrp.len(), 2);
        assert!(c
            .vrrp
            .iter()
            .all(|v| v.config.preempt_delay_ms == 3000 && v.group.as_deref() == Some("site")));
    }

    #[test]
    fn vrrp_routers_are_checked() {
        let with = |v: &str| {
            GatewayConfig::parse(
                &format!("{}\nvrrp:\n  - {v}\n", example()),
                Path::new("g.yaml"),
            )
        };
        let c = with("{ interface: outside, vrid: 51, priority: 150, advert_interval: 100ms, vips: [203.0.113.10] }").unwrap();
        assert_eq!(c.vrrp.len(), 1);
        let v = &c.vrrp[0];
        assert_eq!(c.interfaces[v.interface].name, "outside");
        assert_eq!(v.config.interval_cs, 10);
        assert_eq!(v.config.priority, 150);
        assert!(v.config.preempt);
        assert_eq!(v.config.primary, "203.0.113.1".parse::<IpAddr>().unwrap());
        assert_eq!(v.group, None);
        assert_eq!(v.track, vec![v.interface]);
        assert!(
            v.track_ike,
            "the control plane is tracked unless told not to"
        );
        let n = with("{ interface: outside, vrid: 51, vips: [203.0.113.10], track_ike: false }")
            .unwrap();
        assert!(!n.vrrp[0].track_ike);
        let t = with("{ interface: outside, vrid: 9, vips: [203.0.113.10], track: [inside, outside, inside] }").unwrap();
        let names: Vec<&str> = t.vrrp[0]
            .track
            .iter()
            .map(|&k| t.interfaces[k].name.as_str())
            .collect();
        assert_eq!(names, ["outside", "inside"]);
        let d = with("{ interface: outside, vrid: 7, vips: [203.0.113.10], group: site }").unwrap();
        assert_eq!(d.vrrp[0].group.as_deref(), Some("site"));
        assert_eq!(d.vrrp[0].config.preempt_delay_ms, 0);
        let p = with("{ interface: outside, vrid: 7, vips: [203.0.113.10], preempt_delay: 2.5s }")
            .unwrap();
        assert_eq!(p.vrrp[0].config.preempt_delay_ms, 2500);
        assert!(
            !p.vrrp[0].vmac,
            "the virtual MAC is asked for, not the default"
        );
        let m = with("{ interface: outside, vrid: 7, vips: [203.0.113.10], vmac: true }").unwrap();
        assert!(m.vrrp[0].vmac);
        // IPv6 on its own line, with the same vrid: the primary is left for the gateway to
        // derive (no link-local address configured).
        let six = with("{ interface: outside, vrid: 7, vips: [203.0.113.10] }\n  - { interface: outside, vrid: 7, vips: [\"2001:db8:113::1\"] }").unwrap();
        assert_eq!(six.vrrp.len(), 2);
        assert_eq!(
            six.vrrp[1].config.primary,
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        );
        assert_eq!(
            six.vrrp[1].config.vips,
            vec!["2001:db8:113::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            (d.vrrp[0].config.priority, d.vrrp[0].config.interval_cs),
            (100, 100)
        );
        for (bad, says) in [
            ("{ interface: wan, vrid: 1, vips: [203.0.113.10] }", "no interface named `wan`"),
            ("{ interface: outside, vrid: 1, vips: [203.0.113.10], track: [dmz] }", "track: no interface named `dmz`"),
            ("{ interface: outside, vrid: 0, vips: [203.0.113.10] }", "1-255"),
            ("{ interface: outside, vrid: 1, priority: 255, vips: [203.0.113.10] }", "1-254"),
            ("{ interface: outside, vrid: 1, vips: [] }", "at least one"),
            ("{ interface: outside, vrid: 1, vips: [203.0.113.1] }", "itself"),
            ("{ interface: outside, vrid: 1, advert_interval: 5ms, vips: [203.0.113.10] }", "10ms"),
            ("{ interface: outside, vrid: 1, advert_interval: 41s, vips: [203.0.113.10] }", "10ms"),
            ("{ interface: outside, vrid: 1, advert_interval: 15ms, vips: [203.0.113.10] }", "10ms"),
            ("{ interface: outside, vrid: 1, advert_interval: 1, vips: [203.0.113.10] }", "10ms"),
            ("{ interface: outside, vrid: 1, preempt_delay: 1001s, vips: [203.0.113.10] }", "0-1000 s"),
            ("{ interface: outside, vrid: 1, preempt_delay: soon, vips: [203.0.113.10] }", "0-1000 s"),
            ("{ interface: outside, vrid: 1, vmac: yes please, vips: [203.0.113.10] }", "vmac"),
            (&format!("{{ interface: outside, vrid: 1, vips: [{}] }}", (0..256).map(|i| format!("10.9.{}.{}", i / 200, i % 200 + 1)).collect::<Vec<_>>().join(", ")), "at most 255"),
            (&format!("{{ interface: outside, vrid: 1, vips: [{}] }}", (0..91).map(|i| format!("\"2001:db8::{:x}\"", i + 1)).collect::<Vec<_>>().join(", ")), "at most 90 with MTU 1500"),
            ("{ interface: outside, vrid: 1, vips: [203.0.113.10, \"2001:db8::1\"] }", "mixes IPv4 and IPv6"),
            ("{ interface: outside, vrid: 1, vips: [\"2001:db8::1\"] }\n  - { interface: outside, vrid: 1, vips: [\"2001:db8::2\"] }", "twice on `outside` for IPv6"),
            ("{ interface: outside, vrid: 1, vips: [203.0.113.10] }\n  - { interface: outside, vrid: 1, vips: [203.0.113.11] }", "twice"),
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(
                e.contains(says) && (e.contains("VRRP group") || e.contains("vrrp[")),
                "{bad}: {e}"
            );
        }
        assert_eq!(advert_interval_cs("2.5s"), Ok(250));
        assert_eq!(advert_interval_cs("40.95s"), Ok(4095));
    }

    #[test]
    fn router_advertisements_are_read_and_checked() {
        // The inside port gets IPv6 addresses and, optionally, an IPv6 VRRP router.
        let with = |ra: &str, vrrp: &str| {
            let text = example().replacen(
                "addresses: [192.168.10.1/24]\n    mtu: 1500",
                &format!(
                    "addresses: [192.168.10.1/24, \"2001:db8:10::2/64\", \"2001:db8:10::7/64\", \"fe80::2/64\"]\n    mtu: 1400\n    router_advertisements: {ra}"
                ),
                1,
            );
            GatewayConfig::parse(&format!("{text}\nvrrp:\n{vrrp}"), Path::new("g.yaml"))
        };
        let c = with("{}", "").unwrap();
        assert_eq!(c.ra.len(), 1);
        let r = &c.ra[0];
        assert_eq!(c.interfaces[r.interface].name, "inside");
        assert_eq!(r.vrrp, None);
        let k = &r.config;
        // RFC 4861 §6.2.1's defaults; the MTU option; one prefix for the two addresses in
        // it, none for the link-local one.
        assert_eq!((k.max_interval_ms, k.min_interval_ms), (600_000, 200_000));
        assert_eq!(
            (k.lifetime_s, k.hop_limit, k.managed, k.other),
            (1800, 64, false, false)
        );
        assert_eq!(k.mtu, Some(1400));
        assert_eq!(
            k.prefixes,
            vec![crate::ra::Prefix {
                prefix: "2001:db8:10::".parse().unwrap(),
                len: 64,
                on_link: true,
                autonomous: true,
                valid_s: 2_592_000,
                preferred_s: 604_800,
            }]
        );
        let c = with(
            "{ interval: 30s, min_interval: 10s, lifetime: 0s, managed: true, other: true, mtu: false, prefixes: [\"2001:db8:99::/48\"], autonomous: false, valid_lifetime: 2h, preferred_lifetime: 1h, hop_limit: 0 }",
            "",
        )
        .unwrap();
        let k = &c.ra[0].config;
        assert_eq!(
            (k.max_interval_ms, k.min_interval_ms, k.lifetime_s),
            (30_000, 10_000, 0)
        );
        assert_eq!(
            (k.hop_limit, k.managed, k.other, k.mtu),
            (0, true, true, None)
        );
        let p = k.prefixes[0];
        assert_eq!(
            (p.len, p.autonomous, p.valid_s, p.preferred_s),
            (48, false, 7200, 3600)
        );
        assert_eq!(
            with("{ interval: 4s }", "").unwrap().ra[0]
                .config
                .min_interval_ms,
            3000
        );
        // Routes, DNS: lifetimes from the router's, or 3 x interval when it is none.
        let d = with(
            "{ interval: 30s, lifetime: 0s, routes: [\"2001:db8:20::/48\"], dns: [\"2001:db8:10::53\"], search: [site-a.example] }",
            "",
        )
        .unwrap();
        let k = &d.ra[0].config;
        assert_eq!(
            k.routes,
            vec![crate::ra::RouteInfo {
                prefix: "2001:db8:20::".parse().unwrap(),
                len: 48,
                lifetime_s: 90
            }]
        );
        assert_eq!((k.dns.len(), k.search.len(), k.dns_lifetime_s), (1, 1, 90));
        let d = with("{ interval: 30s, lifetime: 1h, routes: [\"::/0\"] }", "").unwrap();
        assert_eq!(d.ra[0].config.routes[0].lifetime_s, 3600);
        // SLAAC only from /64s.
        let wide = with("{ prefixes: [\"2001:db8:99::/48\"] }", "").unwrap();
        assert!(wide.ra[0].config.prefixes[0].on_link && !wide.ra[0].config.prefixes[0].autonomous);
        // With an IPv6 VRRP router the master advertises from its link-local address.
        let v = with(
            "{}",
            "  - { interface: inside, vrid: 5, vips: [192.168.10.9] }\n  - { interface: inside, vrid: 5, vips: [\"fe80::1\", \"2001:db8:10::1\"] }",
        )
        .unwrap();
        assert_eq!(v.ra[0].vrrp, Some((1, "fe80::1".parse().unwrap())));
        for (ra, vrrp, says) in [
            ("{ interval: 3s }", "", "interval `3s` is not 4-1800 s"),
            ("{ interval: 31m }", "", "4-1800 s"),
            (
                "{ interval: 30s, min_interval: 23s }",
                "",
                "min_interval `23s` is not 3-22 s",
            ),
            ("{ interval: 30s, lifetime: 20s }", "", "lifetime `20s`"),
            ("{ lifetime: 9001s }", "", "lifetime"),
            ("{ prefixes: [10.0.0.0/8] }", "", "not IPv6"),
            (
                "{ valid_lifetime: 1h, preferred_lifetime: 2h }",
                "",
                "exceeds",
            ),
            ("{ colour: blue }", "", "colour"),
            (
                "{}",
                "  - { interface: inside, vrid: 5, vips: [\"2001:db8:10::1\"] }",
                "no link-local virtual address",
            ),
            (
                "{}",
                "  - { interface: inside, vrid: 5, vips: [\"2001:db8:10::1\", \"fe80::1\"] }",
                "fe80::1 is link-local: it goes first",
            ),
            (
                &format!(
                    "{{ prefixes: [{}] }}",
                    (0..42)
                        .map(|i| format!("\"2001:db8:{i:x}::/64\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "",
                "1416 bytes do not fit one advertisement on MTU 1400",
            ),
            (
                "{ routes: [10.0.0.0/8] }",
                "",
                "route 10.0.0.0/8 is not IPv6",
            ),
            ("{ dns: [\"ff02::1\"] }", "", "not a unicast address"),
            (
                "{ prefixes: [\"fe80::/64\"] }",
                "",
                "link-local or multicast",
            ),
            (
                "{ interval: 4500ms, lifetime: 4999ms }",
                "",
                "lifetime `4999ms`",
            ),
            ("{ search: [\"a..b\"] }", "", "`a..b` is not a domain name"),
        ] {
            let e = with(ra, vrrp).unwrap_err().to_string();
            assert!(e.contains(says), "{ra} {vrrp}: {e}");
        }
        // An interface without IPv6.
        let e = GatewayConfig::parse(
            &example().replacen("mtu: 1500", "mtu: 1500\n    router_advertisements: {}", 1),
            Path::new("g.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no IPv6 address"), "{e}");
    }

    #[test]
    fn link_delays_are_read_and_checked() {
        let with = |d: &str| {
            GatewayConfig::parse(
                &example().replacen("mtu: 1500", &format!("mtu: 1500\n    link_delay: {d}"), 1),
                Path::new("g.yaml"),
            )
        };
        let c = with("{ down: 200ms, up: 5s }").unwrap();
        let k = c
            .interfaces
            .iter()
            .position(|i| i.link_delay.ms() != Ok((0, 0)))
            .expect("one interface has the delay");
        assert_eq!(c.interfaces[k].link_delay.ms(), Ok((200, 5000)));
        assert_eq!(
            with("{ up: 2s }").unwrap().interfaces[k].link_delay.ms(),
            Ok((0, 2000))
        );
        for (bad, says) in [
            ("{ down: 601s }", "0-600 s"),
            ("{ up: soon }", "0-600 s"),
            ("{ sideways: 1s }", "sideways"),
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn cores_take_several_workers_or_none() {
        let with = |cores: &str| {
            GatewayConfig::parse(
                &example().replace("cores: { main: 0, workers: [1] }", cores),
                Path::new("g.yaml"),
            )
        };
        let c = with("cores: { main: 0, workers: [1, 2, 3] }").unwrap();
        assert_eq!(c.cores.workers, vec![1, 2, 3]);
        assert!(with("cores: { main: 0, workers: [] }")
            .unwrap()
            .cores
            .workers
            .is_empty());
        for bad in [
            "cores: { main: 0, workers: [0, 1] }",
            "cores: { main: 0, workers: [1, 1] }",
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("cores") && e.contains("differ"), "{bad}: {e}");
        }
    }

    /// The line (1-based) of the first line of `text` that contains `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    /// A number out of range names its key, the number and what is expected, at its own
    /// line (an untagged enum said only "data did not match any variant", at another line).
    #[test]
    fn numbers_out_of_range_name_their_key_and_value() {
        for (from, to, key, says) in [
            ("mss_clamp: auto", "mss_clamp: 70000", "mss_clamp", "integer `70000`, expected auto, off or an MSS from 536"),
            ("mss_clamp: auto", "mss_clamp: 100", "mss_clamp", "integer `100`, expected auto, off or an MSS from 536"),
            ("mss_clamp: auto", "mss_clamp: -1", "mss_clamp", "integer `-1`, expected auto, off"),
            ("mss_clamp: auto", "mss_clamp: sometimes", "mss_clamp", "string \"sometimes\", expected auto, off"),
            ("dst_ports: 22", "dst_ports: 70000", "policies[0].dst_ports", "integer `70000`, expected a port from 0 to 65535"),
            ("dst_ports: 22", "dst_ports: 30-20", "policies[0].dst_ports", "string \"30-20\", expected a port from 0 to 65535 or a LO-HI range"),
            ("dst_ports: 22", "dst_ports: 22, src_ports: 1-70000", "policies[0].src_ports", "string \"1-70000\""),
            ("proto: tcp", "proto: 300", "policies[0].proto", "integer `300`, expected a protocol: tcp, udp, icmp, icmpv6, esp, sctp or a number from 0 to 255"),
            ("proto: tcp", "proto: tcpp", "policies[0].proto", "string \"tcpp\", expected a protocol"),
        ] {
            let text = example().replacen(from, to, 1);
            let e = GatewayConfig::parse(&text, Path::new("g.yaml"))
                .unwrap_err()
                .to_string();
            let at = format!("g.yaml:{}:", line_of(&text, to));
            assert!(
                e.starts_with(&at) && e.contains(&format!("{key}: invalid value: {says}")),
                "{to}: {e}"
            );
        }
        // What is in range still reads.
        for (from, to) in [
            ("mss_clamp: auto", "mss_clamp: 1360"),
            ("mss_clamp: auto", "mss_clamp: off"),
            ("dst_ports: 22", "dst_ports: 65535"),
            ("dst_ports: 22", "dst_ports: 20-22"),
            ("dst_ports: 22", "dst_ports: \"22\""),
            ("proto: tcp", "proto: 255"),
            ("proto: tcp", "proto: icmpv6"),
        ] {
            GatewayConfig::parse(&example().replacen(from, to, 1), Path::new("g.yaml"))
                .unwrap_or_else(|e| panic!("{to}: {e}"));
        }
        let c = GatewayConfig::parse(
            &example().replacen("mss_clamp: auto", "mss_clamp: 1360", 1),
            Path::new("g.yaml"),
        )
        .unwrap();
        assert_eq!(c.mss_clamp, MssClamp::Fixed(1360));
    }

    /// The gateway file's booleans take yes/no as the IKE file's do (README: "`preempt`
    /// (default yes)"), and refuse anything else by key and value.
    #[test]
    fn booleans_take_yes_and_no() {
        let text = format!(
            "{}\nvrrp:\n  - {{ interface: outside, vrid: 51, vips: [203.0.113.10], preempt: no, track_ike: no, vmac: yes }}\n",
            example().replacen("replay_window: 1024", "replay_window: 1024\n    esn: yes", 1)
        );
        let c = GatewayConfig::parse(&text, Path::new("g.yaml")).unwrap();
        let v = &c.vrrp[0];
        assert!(!v.config.preempt && !v.track_ike && v.vmac);
        assert!(c.sas[1].esn);
        let c = GatewayConfig::parse(
            &text.replace(
                "preempt: no, track_ike: no, vmac: yes",
                "preempt: \"yes\", vmac: false",
            ),
            Path::new("g.yaml"),
        )
        .unwrap();
        assert!(c.vrrp[0].config.preempt && c.vrrp[0].track_ike && !c.vrrp[0].vmac);
        let e = GatewayConfig::parse(
            &text.replace("preempt: no", "preempt: nope"),
            Path::new("g.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(&format!("g.yaml:{}:", line_of(&text, "preempt: no")))
                && e.contains("vrrp[0].preempt: invalid value: string \"nope\", expected yes, no, true or false"),
            "{e}"
        );
        // Router advertisements' flags too.
        let ra = example().replacen(
            "addresses: [192.168.10.1/24]\n    mtu: 1500",
            "addresses: [192.168.10.1/24, \"2001:db8:10::1/64\"]\n    mtu: 1500\n    router_advertisements: { managed: yes, other: yes, mtu: no, autonomous: no }",
            1,
        );
        let c = GatewayConfig::parse(&ra, Path::new("g.yaml")).unwrap();
        let k = &c.ra[0].config;
        assert!(k.managed && k.other && k.mtu.is_none() && !k.prefixes[0].autonomous);
    }

    /// `advert_interval: 1` says its unit is missing (a bare number is not taken for seconds:
    /// the wire counts centiseconds).
    #[test]
    fn an_advert_interval_without_unit_says_so() {
        for (n, says) in [
            ("1", "advert_interval `1` has no unit: write `1s` or `1ms`"),
            (
                "100",
                "advert_interval `100` has no unit: write `100s` or `100ms`",
            ),
            ("2.5", "advert_interval `2.5` has no unit"),
        ] {
            let e = advert_interval_cs(n).unwrap_err();
            assert!(e.contains(says), "{n}: {e}");
        }
        // Other mistakes keep the general message.
        let e = advert_interval_cs("1 fortnight").unwrap_err();
        assert!(
            e.contains("is not 10ms-40.95s") && !e.contains("no unit"),
            "{e}"
        );
        let e = advert_interval_cs("-1").unwrap_err();
        assert!(e.contains("is not 10ms-40.95s"), "{e}");
        assert_eq!(advert_interval_cs("1s"), Ok(100));
    }

    /// The gateway's `sas:` go through the same checks as fgpcap's SA files
    /// ([`crate::config::build_sas`]), named by place and name.
    #[test]
    fn the_gateways_sas_are_checked_like_sa_files() {
        let err = |from: &str, to: &str| {
            GatewayConfig::parse(&example().replacen(from, to, 1), Path::new("g.yaml"))
                .unwrap_err()
                .to_string()
        };
        let m = err("spi: 0xc0010002", "spi: 0");
        assert!(
            m.starts_with("g.yaml: SA #1 (b-to-a): SPI 0 is reserved"),
            "{m}"
        );
        let m = err(
            "replay_window: 1024",
            "replay_window: 1024\n    lifetime: { soft_bytes: 1000, hard_bytes: 10 }",
        );
        assert!(
            m.starts_with(
                "g.yaml: SA #1 (b-to-a): lifetime: soft_bytes 1000 is not below hard_bytes 10"
            ),
            "{m}"
        );
        let m = err("replay_window: 1024", "replay_window: 0\n    esn: true");
        assert!(
            m.starts_with("g.yaml: SA #1 (b-to-a): replay_window 0"),
            "{m}"
        );
        let m = err(
            "remote: 203.0.113.2",
            "remote: 203.0.113.2\n    initial_seq: 0x100000000",
        );
        assert!(
            m.starts_with("g.yaml: SA #0 (a-to-b): initial_seq 4294967296"),
            "{m}"
        );
        let m = err("    cipher: aes-gcm-256\n", "");
        assert!(
            m.starts_with("g.yaml: SA #0 (a-to-b): cipher null needs a 0-byte enc_key")
                && m.contains("no `cipher` given"),
            "{m}"
        );
        // Anti-replay off without ESN loads (with a warning).
        let c = GatewayConfig::parse(
            &example().replacen("replay_window: 1024", "replay_window: 0", 1),
            Path::new("g.yaml"),
        )
        .unwrap();
        assert_eq!(c.sas[1].replay_window, 0);
    }
}
