//! The YAML files the data plane reads, end to end: the examples load, and `fgpcap` applies the
//! gateway's checks to its SA files and says when an SA has anti-replay off.

use std::path::{Path, PathBuf};
use std::process::Command;

use dataplane::config::load_sa_file;
use dataplane::gateway_config::GatewayConfig;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(name)
}

/// Every example loads with the checks of today.
#[test]
fn the_examples_load() {
    let sas = load_sa_file(&example("sas.yaml")).unwrap();
    assert_eq!(sas.len(), 2);
    let g = GatewayConfig::load(&example("site-a.yaml")).unwrap();
    assert_eq!(g.sas.len(), 2);
}

/// An empty Ethernet capture (the classic pcap header alone).
const EMPTY_PCAP: [u8; 24] = [
    0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
];

/// Runs `fgpcap decrypt` with an SA file of one inbound SA with these extra lines; returns
/// whether it succeeded and its stderr.
fn fgpcap_decrypt(dir: &Path, more: &str) -> (bool, String) {
    let sa = dir.join("sa.yaml");
    std::fs::write(
        &sa,
        format!(
            "sas:\n  - name: b-in\n    spi: 0x1001\n    direction: in\n    mode: transport\n    cipher: aes-gcm-128\n    enc_key: \"0x000102030405060708090a0b0c0d0e0f10111213\"\n{more}"
        ),
    )
    .unwrap();
    let input = dir.join("in.pcap");
    std::fs::write(&input, EMPTY_PCAP).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fgpcap"))
        .arg("decrypt")
        .arg("--sa")
        .arg(&sa)
        .arg("--in")
        .arg(&input)
        .arg("--out")
        .arg(dir.join("out.pcap"))
        .arg("--json")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// fgpcap refuses what the gateway refuses (a replay window that is no power of two) and
/// warns, on stderr, of an inbound SA with anti-replay off.
#[test]
fn fgpcap_checks_sa_files_as_the_gateway_does() {
    let dir = std::env::temp_dir().join(format!("fgpcap-sa-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ok, err) = fgpcap_decrypt(&dir, "    replay_window: 100\n");
    assert!(
        !ok && err.contains("SA #0 (b-in): ") && err.contains("replay window 100"),
        "{err}"
    );
    let (ok, err) = fgpcap_decrypt(&dir, "    replay_window: 0\n");
    assert!(
        ok && err.contains("warning: ")
            && err.contains("SA #0 (b-in): replay_window 0 turns anti-replay off"),
        "{err}"
    );
    let (ok, err) = fgpcap_decrypt(&dir, "    replay_window: 64\n");
    assert!(ok && err.is_empty(), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The reference scenario's VRRP pair as shipped (`deploy/examples/ha/`): both gateways of
/// site A load and share their virtual addresses, VRIDs and group, each with addresses of its
/// own and the first with the higher priority; site B talks to A's shared address.
#[test]
fn the_ha_examples_are_a_vrrp_pair() {
    let gw = |n: u8| GatewayConfig::load(&example(&format!("ha/site-a-gw{n}.yaml"))).unwrap();
    let (a1, a2) = (gw(1), gw(2));
    let routers = |g: &GatewayConfig| -> Vec<_> {
        g.vrrp
            .iter()
            .map(|r| {
                let c = &r.config;
                (
                    g.interfaces[r.interface].name.clone(),
                    c.vrid,
                    c.vips.clone(),
                    r.group.clone(),
                )
            })
            .collect()
    };
    assert_eq!(routers(&a1), routers(&a2));
    assert_eq!(routers(&a1).len(), 2);
    let vips: Vec<String> = routers(&a1)
        .iter()
        .flat_map(|r| r.2.iter().map(|a| a.to_string()))
        .collect();
    assert_eq!(vips, ["203.0.113.1", "192.168.10.1"]);
    let prio = |g: &GatewayConfig| g.vrrp.iter().map(|r| r.config.priority).collect::<Vec<_>>();
    assert_eq!((prio(&a1), prio(&a2)), (vec![200, 200], vec![100, 100]));
    let own = |g: &GatewayConfig| {
        g.interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| format!("{a:?}")))
            .collect::<Vec<_>>()
    };
    assert!(own(&a1).iter().all(|a| !own(&a2).contains(a)));
    let b = GatewayConfig::load(&example("ha/site-b.yaml")).unwrap();
    assert!(b.vrrp.is_empty());
    let via: Vec<String> = b.routes.iter().map(|r| format!("{r:?}")).collect();
    assert!(via.iter().any(|r| r.contains("203.0.113.1")), "{via:?}");
}
