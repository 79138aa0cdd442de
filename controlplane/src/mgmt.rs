//! The management interface of `ferrogate-ike`, used by `fgctl`: a Unix socket (mode 0600)
//! that takes one JSON request per connection and answers with one JSON value (or, for
//! `watch`, a stream of event lines).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::ike::daemon::Daemon;
use crate::ike::wire::TrafficSelector;

/// A request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// IKE SAs and their CHILD_SAs.
    ListSas,
    /// The policies the CHILD_SAs put in the data plane.
    ListPolicies,
    /// Bring a tunnel up.
    Initiate {
        /// Tunnel name.
        tunnel: String,
    },
    /// Tear a tunnel down (delete its IKE SAs).
    Terminate {
        /// Tunnel name.
        tunnel: String,
    },
    /// Re-read the configuration; only changed tunnels are touched.
    Reload,
    /// Stream events until the client goes away.
    Watch,
    /// High availability: the VRRP addresses held and standing by, and the SA-state sync.
    Ha,
}

/// Renders the answer to [`Request::Ha`] (`fgctl ha`).
pub fn render_ha(v: &serde_json::Value) -> String {
    let list = |k: &str| -> String {
        let a: Vec<&str> = v[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        if a.is_empty() {
            "none".into()
        } else {
            a.join(", ")
        }
    };
    let mut s = format!(
        "vrrp addresses held: {}\nvrrp addresses standing by: {}\n",
        list("held"),
        list("standby")
    );
    let sync = &v["sync"];
    if sync.is_null() {
        s.push_str("sa sync: not configured\n");
        return s;
    }
    let ago = |k: &str| match sync[k].as_u64() {
        Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
        None => "never".into(),
    };
    s.push_str(&format!(
        "sa sync: {} -> {}, {} snapshots sent (last {}{}), from the other gateway: {} SA pairs, {} IKE SAs (last {})\n",
        sync["local"].as_str().unwrap_or("?"),
        sync["remote"].as_str().unwrap_or("?"),
        sync["sent"].as_u64().unwrap_or(0),
        ago("last_sent_ms_ago"),
        match sync["datagrams_per_snapshot"].as_u64() {
            Some(n) if n > 1 => format!(", {n} datagrams"),
            _ => String::new(),
        },
        sync["their_pairs"].as_u64().unwrap_or(0),
        sync["their_ike_sas"].as_u64().unwrap_or(0),
        ago("last_received_ms_ago"),
    ));
    s
}

/// One CHILD_SA as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildStatus {
    /// Child name.
    pub name: String,
    /// Inbound SPI (hex).
    pub spi_in: String,
    /// Outbound SPI (hex).
    pub spi_out: String,
    /// Algorithms, strongSwan style.
    pub algorithms: String,
    /// Seconds since installed.
    pub installed_s: u64,
    /// Seconds until rekeying (0 when rekeyed and waiting for deletion).
    pub rekey_in_s: u64,
    /// Our side.
    pub local_ts: Vec<String>,
    /// The peer's side.
    pub remote_ts: Vec<String>,
    /// Data-plane counters, when the data plane reported them.
    pub bytes_in: Option<u64>,
    /// Packets in.
    pub packets_in: Option<u64>,
    /// Bytes out.
    pub bytes_out: Option<u64>,
    /// Packets out.
    pub packets_out: Option<u64>,
    /// One of a group of per-resource CHILD_SAs (RFC 9611): the data-plane worker whose
    /// traffic it carries ("worker 1"), or "shared" (the fallback, or one more the peer made
    /// for its resources: workers without their own send on the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// One IKE SA as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IkeStatus {
    /// Tunnel name.
    pub tunnel: String,
    /// State.
    pub state: String,
    /// We are the original initiator.
    pub initiator: bool,
    /// Initiator SPI (hex).
    pub spi_i: String,
    /// Responder SPI (hex).
    pub spi_r: String,
    /// Our endpoint.
    pub local: String,
    /// The peer's endpoint.
    pub remote: String,
    /// Our identity.
    pub local_id: String,
    /// The peer's identity (authenticated, or what we expect before).
    pub remote_id: String,
    /// Authentication (`psk` or `pubkey`).
    pub auth: String,
    /// NAT detected (ESP in UDP).
    pub nat: bool,
    /// Algorithms.
    pub algorithms: String,
    /// Seconds since established.
    pub established_s: Option<u64>,
    /// Messages sent and received.
    pub messages: (u64, u64),
    /// IKE fragmentation (RFC 7383), when negotiated.
    #[serde(default)]
    pub fragmentation: Option<FragStatus>,
    /// CHILD_SAs.
    pub children: Vec<ChildStatus>,
}

/// IKE fragmentation counters of one IKE SA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FragStatus {
    /// Fragments sent (retransmissions included).
    pub sent: u64,
    /// Fragments verified and stored.
    pub received: u64,
    /// Messages reassembled.
    pub reassembled: u64,
    /// Fragments dropped (not expected, failed integrity, duplicates, stale, over the limits,
    /// malformed).
    pub dropped: u64,
    /// Requests cut into smaller datagrams after going unanswered (RFC 7383 §2.5.2).
    pub recut: u64,
    /// The datagram size messages are cut to since then.
    pub path_size: Option<usize>,
}

fn ts_text(t: &TrafficSelector) -> Vec<String> {
    let mut v: Vec<String> = crate::export::ts_prefixes(t)
        .iter()
        .map(|p| p.to_string())
        .collect();
    if t.ip_proto != 0 || t.start_port != 0 || t.end_port != 65535 {
        for s in &mut v {
            s.push_str(&format!("[{}/{}-{}]", t.ip_proto, t.start_port, t.end_port));
        }
    }
    v
}

/// Data-plane counters for an inbound SPI: (in bytes, in packets, out bytes, out packets).
pub type Counters = std::collections::HashMap<u32, (u64, u64, u64, u64)>;

/// The IKE SAs of a daemon.
pub fn status(d: &Daemon, now: Instant, counters: &Counters) -> Vec<IkeStatus> {
    let mut v: Vec<IkeStatus> = d
        .sas()
        .map(|sa| IkeStatus {
            tunnel: sa.cfg.name.clone(),
            state: format!("{:?}", sa.state).to_uppercase(),
            initiator: sa.initiator,
            spi_i: format!("{:016x}", sa.spi_i),
            spi_r: format!("{:016x}", sa.spi_r),
            local: sa.local.to_string(),
            remote: sa.remote.to_string(),
            local_id: sa.cfg.local_id.to_string(),
            remote_id: sa
                .peer_id
                .clone()
                .unwrap_or_else(|| sa.cfg.remote_id.to_string()),
            auth: match &sa.cfg.auth {
                crate::config::Auth::Psk(_) => "psk".into(),
                crate::config::Auth::Pubkey(p) => format!("pubkey ({})", p.cred.key_type()),
            },
            nat: sa.nat,
            algorithms: sa.algorithms(),
            established_s: sa.established_at.map(|t| now.duration_since(t).as_secs()),
            messages: sa.stats,
            fragmentation: {
                let (on, f) = sa.fragmentation();
                on.then(|| FragStatus {
                    sent: f.sent,
                    received: f.received,
                    reassembled: f.reassembled,
                    dropped: f.dropped_unexpected
                        + f.dropped_integrity
                        + f.dropped_duplicate
                        + f.dropped_stale_total
                        + f.dropped_limits
                        + f.dropped_malformed,
                    recut: f.recut,
                    path_size: sa.fragment_path_size(),
                })
            },
            children: sa
                .children
                .iter()
                .map(|c| {
                    let k = counters.get(&c.spi_in);
                    ChildStatus {
                        name: sa.cfg.children[c.cfg].name.clone(),
                        spi_in: format!("{:08x}", c.spi_in),
                        spi_out: format!("{:08x}", c.spi_out),
                        algorithms: c.chosen.as_set().name(),
                        installed_s: now.duration_since(c.installed).as_secs(),
                        rekey_in_s: if c.rekeyed {
                            0
                        } else {
                            c.rekey_at.saturating_duration_since(now).as_secs()
                        },
                        local_ts: c.local_ts.iter().flat_map(ts_text).collect(),
                        remote_ts: c.remote_ts.iter().flat_map(ts_text).collect(),
                        bytes_in: k.map(|k| k.0),
                        packets_in: k.map(|k| k.1),
                        bytes_out: k.map(|k| k.2),
                        packets_out: k.map(|k| k.3),
                        resource: c
                            .per_resource
                            .then(|| c.worker.map_or("shared".into(), |w| format!("worker {w}"))),
                    }
                })
                .collect(),
        })
        .collect();
    v.sort_by(|a, b| a.tunnel.cmp(&b.tunnel).then(a.spi_i.cmp(&b.spi_i)));
    v
}

fn opt(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| n.to_string())
}

/// `fgctl list-sas` text, in the spirit of `swanctl --list-sas`.
pub fn render_sas(v: &[IkeStatus]) -> String {
    let mut s = String::new();
    for i in v {
        s.push_str(&format!(
            "{}: {}, IKEv2, {}_i{} {}_r{}\n",
            i.tunnel,
            i.state,
            i.spi_i,
            if i.initiator { "*" } else { "" },
            i.spi_r,
            if i.initiator { "" } else { "*" }
        ));
        s.push_str(&format!(
            "  local  '{}' @ {}\n  remote '{}' @ {}{}\n  auth   {}\n",
            i.local_id,
            i.local,
            i.remote_id,
            i.remote,
            if i.nat { " (NAT-T)" } else { "" },
            i.auth
        ));
        s.push_str(&format!(
            "  {}, established {}s ago, {} messages out, {} in\n",
            i.algorithms,
            opt(i.established_s),
            i.messages.0,
            i.messages.1
        ));
        if let Some(f) = &i.fragmentation {
            s.push_str(&format!(
                "  IKE fragmentation: {} fragments out, {} in ({} messages reassembled), {} dropped{}\n",
                f.sent,
                f.received,
                f.reassembled,
                f.dropped,
                match (f.recut, f.path_size) {
                    (0, None) => String::new(),
                    (n, Some(size)) => format!("; messages cut smaller: {n}, now at most {size} bytes a datagram"),
                    (n, None) => format!("; messages cut smaller: {n}"),
                }
            ));
        }
        for c in &i.children {
            s.push_str(&format!(
                "  {}: INSTALLED, TUNNEL{}, ESP SPIs: {}_i {}_o{}\n",
                c.name,
                if i.nat { "-in-UDP" } else { "" },
                c.spi_in,
                c.spi_out,
                c.resource
                    .as_ref()
                    .map_or(String::new(), |r| format!(", per-resource: {r}"))
            ));
            s.push_str(&format!(
                "    {}, {} bytes_i ({} pkts), {} bytes_o ({} pkts), installed {}s ago, rekeying in {}s\n",
                c.algorithms,
                opt(c.bytes_in),
                opt(c.packets_in),
                opt(c.bytes_out),
                opt(c.packets_out),
                c.installed_s,
                c.rekey_in_s
            ));
            s.push_str(&format!(
                "    local  {}\n    remote {}\n",
                c.local_ts.join(" "),
                c.remote_ts.join(" ")
            ));
        }
    }
    if v.is_empty() {
        s.push_str("no IKE SAs\n");
    }
    s
}

fn host(endpoint: &str) -> String {
    endpoint
        .parse::<std::net::SocketAddr>()
        .map_or_else(|_| endpoint.to_string(), |a| a.ip().to_string())
}

/// `fgctl list-policies` text, in the spirit of `ip xfrm policy`.
pub fn render_policies(v: &[IkeStatus]) -> String {
    let mut s = String::new();
    for i in v {
        let (local, remote) = (host(&i.local), host(&i.remote));
        for c in &i.children {
            for l in &c.local_ts {
                for r in &c.remote_ts {
                    s.push_str(&format!(
                        "src {l} dst {r}\n\tdir out priority 500 tunnel {} child {}\n\ttmpl src {} dst {} proto esp spi 0x{} mode tunnel{}\n",
                        i.tunnel,
                        c.name,
                        local,
                        remote,
                        c.spi_out,
                        if i.nat { " encap espinudp" } else { "" }
                    ));
                    s.push_str(&format!(
                        "src {r} dst {l}\n\tdir in priority 500 tunnel {} child {}\n\ttmpl src {} dst {} proto esp spi 0x{} mode tunnel{}\n",
                        i.tunnel,
                        c.name,
                        remote,
                        local,
                        c.spi_in,
                        if i.nat { " encap espinudp" } else { "" }
                    ));
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::render_ha;

    #[test]
    fn ha_status_reads_as_text() {
        let v = serde_json::json!({"held": [], "standby": ["192.168.10.1", "203.0.113.1"],
            "sync": {"local": "10.99.0.2:4510", "remote": "10.99.0.1:4510", "sent": 0,
                "last_sent_ms_ago": null, "their_pairs": 1, "their_ike_sas": 1,
                "last_received_ms_ago": 230}});
        assert_eq!(
            render_ha(&v),
            "vrrp addresses held: none\nvrrp addresses standing by: 192.168.10.1, 203.0.113.1\n\
             sa sync: 10.99.0.2:4510 -> 10.99.0.1:4510, 0 snapshots sent (last never), from the \
             other gateway: 1 SA pairs, 1 IKE SAs (last 0.2s ago)\n"
        );
        let big = serde_json::json!({"held": ["203.0.113.1"], "standby": [],
            "sync": {"local": "10.99.0.1:4510", "remote": "10.99.0.2:4510", "sent": 12,
                "datagrams_per_snapshot": 500, "last_sent_ms_ago": 100, "their_pairs": 0,
                "last_received_ms_ago": null}});
        assert!(
            render_ha(&big).contains("12 snapshots sent (last 0.1s ago, 500 datagrams)"),
            "{}",
            render_ha(&big)
        );
        let none = serde_json::json!({"held": [], "standby": [], "sync": null});
        assert!(render_ha(&none).ends_with("sa sync: not configured\n"));
    }
}
