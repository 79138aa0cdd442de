//! `fgctl`: ferrogate's command line.
//!
//! ```text
//! fgctl [--socket PATH] list-sas [--json]        IKE and CHILD_SAs (like swanctl --list-sas)
//! fgctl [--socket PATH] list-policies [--json]   policies in the data plane (like ip xfrm policy)
//! fgctl [--socket PATH] initiate TUNNEL | terminate TUNNEL | reload
//! fgctl [--socket PATH] watch                    events as they happen (like ip xfrm monitor)
//! fgctl [--socket PATH] ha [--json]              VRRP addresses held / standing by, SA sync
//! fgctl stats [--file PATH] [--json]             data-plane counters (ferrogate --stats-file)
//! ```
//!
//! `--socket` defaults to /run/ferrogate/ike.sock, `--file` to /run/ferrogate/stats.json.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use controlplane::mgmt::{render_policies, render_sas, IkeStatus, Request};

const USAGE: &str = "usage: fgctl [--socket PATH] list-sas|list-policies|ha [--json] | initiate TUNNEL | terminate TUNNEL | reload | watch\n       fgctl stats [--file PATH] [--json]";

fn ask(socket: &PathBuf, req: &Request) -> Result<serde_json::Value, String> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("{}: {e} (is ferrogate-ike running?)", socket.display()))?;
    let line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    writeln!(s, "{line}").map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(&s)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&reply).map_err(|e| format!("bad reply: {e}"))
}

fn stats_text(v: &serde_json::Value) -> String {
    let mut s = format!("up {:.1}s\n", v["seconds"].as_f64().unwrap_or(0.0));
    for p in v["ports"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "port {:<10} rx {:>12} frames  tx {:>12} frames  rx missed {}{}{}{}\n",
            p["name"].as_str().unwrap_or("?"),
            p["rx_frames"],
            p["tx_frames"],
            p["rx_missed"].as_u64().unwrap_or(0),
            if p["link"] == "down" {
                "  LINK DOWN"
            } else {
                ""
            },
            match p["link_changes"].as_u64().unwrap_or(0) {
                0 => String::new(),
                n => format!("  link changed {n} times"),
            },
            match (
                p["router_adverts"].as_u64().unwrap_or(0),
                p["router_solicits"].as_u64().unwrap_or(0),
            ) {
                (0, 0) => String::new(),
                (a, s) => format!("  router adverts {a}, solicitations {s}"),
            }
        ));
    }
    for r in v["vrrp"]["routers"].as_array().into_iter().flatten() {
        let vips: Vec<&str> = r["vips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        s.push_str(&format!(
            "vrrp {} vrid {} priority {} {} for {:.1}s (master {}) vips {}{}  adverts in {} out {}{}  took over {} times{}\n",
            r["interface"].as_str().unwrap_or("?"),
            r["vrid"],
            r["priority"],
            r["state"].as_str().unwrap_or("?"),
            r["seconds_in_state"].as_f64().unwrap_or(0.0),
            r["master"].as_str().unwrap_or("unknown"),
            vips.join(","),
            match r["vmac"].as_str() {
                Some(m) => format!(" from {m}"),
                None => String::new(),
            },
            r["adverts_in"].as_u64().unwrap_or(0),
            r["adverts_out"].as_u64().unwrap_or(0),
            // Through the SA-state sync (the other gateway's masters): split brain averted.
            match (
                r["adverts_via_sync"].as_u64().unwrap_or(0),
                r["yields_via_sync"].as_u64().unwrap_or(0),
            ) {
                (0, _) => String::new(),
                (n, 0) => format!(" via sync {n}"),
                (n, y) => format!(" via sync {n} (yielded {y} times)"),
            },
            r["became_master"].as_u64().unwrap_or(0),
            match r["faults"].as_u64().unwrap_or(0) {
                0 => String::new(),
                n => format!("  faults {n}"),
            }
        ));
    }
    if let Some(m) = v["vrrp"]["refused"].as_object() {
        let bad: Vec<String> = m
            .iter()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        if !bad.is_empty() {
            s.push_str(&format!("vrrp refused: {}\n", bad.join(" ")));
        }
    }
    for w in v["workers"].as_array().into_iter().flatten() {
        // Packets of SAs another worker owns, handed to it; and taken from the others.
        let (off, took) = (
            w["handed_off"].as_u64().unwrap_or(0),
            w["handed_in"].as_u64().unwrap_or(0),
        );
        let handed = if off + took > 0 {
            format!("  handed to SA owners {off}, from others {took}")
        } else {
            String::new()
        };
        s.push_str(&format!(
            "worker lcore {:<3} rx {:>12} frames  tx {:>12} frames  drops {}{handed}\n",
            w["lcore"].as_u64().unwrap_or(0),
            w["rx_frames"].as_u64().unwrap_or(0),
            w["tx_frames"].as_u64().unwrap_or(0),
            w["drops"].as_u64().unwrap_or(0)
        ));
    }
    for sa in v["sas"].as_array().into_iter().flatten() {
        let label = match (sa["tunnel"].as_str(), sa["child"].as_str()) {
            (Some(t), Some(c)) => format!(
                " {t}/{c}{}",
                if sa["active"] == serde_json::Value::Bool(false) {
                    " (standby)"
                } else {
                    ""
                }
            ),
            _ => String::new(),
        };
        let owner = match sa["owner"].as_u64() {
            Some(l) => format!(" (sealed by lcore {l})"),
            None => String::new(),
        };
        s.push_str(&format!(
            "sa   {} {:<3} {:<6} {:>12} pkts {:>15} bytes{label}{owner}\n",
            sa["spi"].as_str().unwrap_or("?"),
            sa["direction"].as_str().unwrap_or("?"),
            sa["source"].as_str().unwrap_or("?"),
            sa["packets"].as_u64().unwrap_or(0),
            sa["bytes"].as_u64().unwrap_or(0)
        ));
    }
    for dir in ["out", "in"] {
        for p in v["policies"][dir].as_array().into_iter().flatten() {
            let mut sel = format!(
                "{} -> {}",
                p["src"].as_str().unwrap_or("?"),
                p["dst"].as_str().unwrap_or("?")
            );
            for (k, label) in [
                ("proto", "proto"),
                ("src_ports", "sport"),
                ("dst_ports", "dport"),
            ] {
                if !p[k].is_null() {
                    sel.push_str(&format!(" {label} {}", p[k].to_string().trim_matches('"')));
                }
            }
            let action = match p["sa"].as_str() {
                Some(spi) => format!("{} {spi}", p["action"].as_str().unwrap_or("?")),
                None => p["action"].as_str().unwrap_or("?").to_owned(),
            };
            s.push_str(&format!(
                "policy {dir:<3} {sel:<40} {action:<16} {:>12} pkts {:>15} bytes\n",
                p["packets"].as_u64().unwrap_or(0),
                p["bytes"].as_u64().unwrap_or(0)
            ));
        }
    }
    if let Some(n) = v["policies"]["omitted"].as_u64().filter(|n| *n > 0) {
        s.push_str(&format!("({n} more policies not listed)\n"));
    }
    // Shown once SPD-out is large enough to use it (64 rules or more).
    let c = &v["spd_flow_cache"];
    let count = |k: &str| c[k].as_u64().unwrap_or(0);
    if count("hits") + count("misses") + count("bypassed") > 0 {
        s.push_str(&format!(
            "spd flow cache: {} hits, {} misses, {} bypassed\n",
            count("hits"),
            count("misses"),
            count("bypassed")
        ));
    }
    match v["drops"].as_object() {
        Some(d) if !d.is_empty() => {
            for (k, n) in d {
                s.push_str(&format!("drop {k:<28} {n}\n"));
            }
        }
        _ => s.push_str("drops: none\n"),
    }
    if let Some(c) = v["control"].as_object() {
        s.push_str(&format!(
            "control channel: {} IKE datagrams punted, {} injected\n",
            c["punted"], c["injected"]
        ));
    }
    s
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut take = |flag: &str| -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        args.remove(i);
        (i < args.len()).then(|| args.remove(i))
    };
    let socket =
        PathBuf::from(take("--socket").unwrap_or_else(|| "/run/ferrogate/ike.sock".into()));
    let file = PathBuf::from(take("--file").unwrap_or_else(|| "/run/ferrogate/stats.json".into()));
    let json = if let Some(i) = args.iter().position(|a| a == "--json") {
        args.remove(i);
        true
    } else {
        false
    };
    let cmd: Vec<&str> = args.iter().map(String::as_str).collect();
    let result: Result<String, String> = match cmd.as_slice() {
        ["list-sas"] | ["list-policies"] => ask(&socket, &Request::ListSas).and_then(|v| {
            if json {
                return Ok(serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            let sas: Vec<IkeStatus> =
                serde_json::from_value(v.clone()).map_err(|_| format!("{v}"))?;
            Ok(if cmd[0] == "list-sas" {
                render_sas(&sas)
            } else {
                render_policies(&sas)
            })
        }),
        ["initiate", t] => ask(
            &socket,
            &Request::Initiate {
                tunnel: (*t).into(),
            },
        )
        .map(|v| v.to_string()),
        ["terminate", t] => ask(
            &socket,
            &Request::Terminate {
                tunnel: (*t).into(),
            },
        )
        .map(|v| v.to_string()),
        ["reload"] => ask(&socket, &Request::Reload).map(|v| v.to_string()),
        ["ha"] => ask(&socket, &Request::Ha).map(|v| {
            if json {
                serde_json::to_string_pretty(&v).unwrap_or_default()
            } else {
                controlplane::mgmt::render_ha(&v)
            }
        }),
        ["watch"] => {
            let r = UnixStream::connect(&socket)
                .map_err(|e| format!("{}: {e}", socket.display()))
                .and_then(|mut s| {
                    writeln!(
                        s,
                        "{}",
                        serde_json::to_string(&Request::Watch).unwrap_or_default()
                    )
                    .map_err(|e| e.to_string())?;
                    for line in BufReader::new(s).lines() {
                        let Ok(line) = line else { break };
                        println!("{line}");
                    }
                    Ok(String::new())
                });
            r
        }
        ["stats"] => std::fs::read_to_string(&file)
            .map_err(|e| {
                format!(
                    "{}: {e} (is ferrogate running with --stats-file?)",
                    file.display()
                )
            })
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()))
            .map(|v| {
                if json {
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                } else {
                    stats_text(&v)
                }
            }),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(s) => {
            if s.contains("\"error\"") && !json {
                eprintln!("fgctl: {s}");
                return ExitCode::from(1);
            }
            print!("{s}");
            if !s.ends_with('\n') && !s.is_empty() {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fgctl: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stats_text;

    #[test]
    fn stats_show_the_flow_cache_only_once_used() {
        let mut v = serde_json::json!({"seconds": 2.0, "ports": [], "sas": [], "drops": {},
            "policies": {"out": [], "in": [], "omitted": 0},
            "spd_flow_cache": {"hits": 0, "misses": 0, "bypassed": 0}});
        assert!(!stats_text(&v).contains("flow cache"));
        v["spd_flow_cache"] = serde_json::json!({"hits": 498, "misses": 2, "bypassed": 7});
        let text = stats_text(&v);
        assert!(
            text.contains("spd flow cache: 498 hits, 2 misses, 7 bypassed\n"),
            "{text}"
        );
    }

    #[test]
    fn stats_show_vrrp_routers() {
        let v = serde_json::json!({"seconds": 2.0, "ports": [], "sas": [], "drops": {},
            "vrrp": {"routers": [{"interface": "outside", "vrid": 51, "priority": 150,
                "state": "master", "master": "203.0.113.3", "vips": ["203.0.113.1"],
                "seconds_in_state": 12.5, "adverts_in": 3, "adverts_out": 12,
                "became_master": 1}],
                "refused": {"ttl": 0, "version": 4}}});
        let text = stats_text(&v);
        assert!(
            text.contains("vrrp outside vrid 51 priority 150 master for 12.5s (master 203.0.113.3) vips 203.0.113.1  adverts in 3 out 12  took over 1 times\n"),
            "{text}"
        );
        assert!(text.contains("vrrp refused: version=4\n"), "{text}");
        let split = serde_json::json!({"seconds": 2.0, "ports": [], "sas": [], "drops": {},
            "vrrp": {"routers": [{"interface": "outside", "vrid": 51, "priority": 100,
                "state": "backup", "master": "203.0.113.3", "vips": ["203.0.113.1"],
                "seconds_in_state": 4.0, "adverts_in": 3, "adverts_out": 12,
                "adverts_via_sync": 9, "yields_via_sync": 1, "became_master": 2}]}});
        let text = stats_text(&split);
        assert!(
            text.contains("adverts in 3 out 12 via sync 9 (yielded 1 times)  took over 2 times\n"),
            "{text}"
        );
        let fault = serde_json::json!({"seconds": 2.0, "sas": [], "drops": {},
            "ports": [{"name": "inside", "rx_frames": 1, "tx_frames": 2, "link": "down", "link_changes": 3},
                {"name": "outside", "rx_frames": 1, "tx_frames": 2, "link": "up"}],
            "vrrp": {"routers": [{"interface": "inside", "vrid": 52, "priority": 150,
                "state": "fault", "master": null, "vips": ["192.168.10.1"], "vmac": "00:00:5e:00:01:34",
                "seconds_in_state": 1.5, "adverts_in": 3, "adverts_out": 13,
                "became_master": 1, "faults": 2}]}});
        let text = stats_text(&fault);
        assert!(
            text.contains("port inside ") && text.contains("LINK DOWN"),
            "{text}"
        );
        assert_eq!(text.matches("LINK DOWN").count(), 1, "{text}");
        assert!(text.contains("LINK DOWN  link changed 3 times\n"), "{text}");
        assert!(
            text.contains("vrrp inside vrid 52 priority 150 fault for 1.5s (master unknown) vips 192.168.10.1 from 00:00:5e:00:01:34  adverts in 3 out 13  took over 1 times  faults 2\n"),
            "{text}"
        );
        let none = serde_json::json!({"seconds": 2.0, "ports": [], "sas": [], "drops": {}});
        assert!(!stats_text(&none).contains("vrrp"));
    }

    #[test]
    fn stats_show_hand_offs_and_owners_only_with_several_workers() {
        let w = |lcore: u64, off: u64, took: u64| {
            serde_json::json!({"lcore": lcore, "rx_frames": 10, "tx_frames": 9, "drops": 0,
                "handed_off": off, "handed_in": took})
        };
        let sa = |owner: serde_json::Value| {
            serde_json::json!({"spi": "0000a0b0", "direction": "out", "source": "static",
                "packets": 5, "bytes": 500, "owner": owner})
        };
        let one = serde_json::json!({"seconds": 1.0, "ports": [], "drops": {},
            "workers": [w(1, 0, 0)], "sas": [sa(serde_json::Value::Null)]});
        let text = stats_text(&one);
        assert!(
            !text.contains("handed") && !text.contains("sealed by"),
            "{text}"
        );
        let two = serde_json::json!({"seconds": 1.0, "ports": [], "drops": {},
            "workers": [w(1, 7, 0), w(2, 0, 7)], "sas": [sa(2.into())]});
        let text = stats_text(&two);
        assert!(
            text.contains("handed to SA owners 7, from others 0\n"),
            "{text}"
        );
        assert!(
            text.contains("handed to SA owners 0, from others 7\n"),
            "{text}"
        );
        assert!(text.contains("500 bytes (sealed by lcore 2)\n"), "{text}");
    }
}
