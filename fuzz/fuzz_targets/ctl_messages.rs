//! What the data plane reads from the control-plane channel (another process's writes):
//! commands, and IKE datagrams to inject; and the punt parser on packets from the wire. Also
//! what the control plane reads: the data plane's events, and the HA sync datagrams of the
//! other gateway (sealed: the opened snapshot's JSON is fuzzed directly too, and its IKE SAs
//! restored and run).
#![no_main]
use dataplane::ctl::{Command, Datagram, Event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Command::Add { sa, .. }) = Command::decode(data) {
        let _ = sa.params();
    }
    if let Some(d) = Datagram::decode(data) {
        let mut out = [0u8; 1500];
        let _ = d.to_ip(&mut out);
    }
    let _ = Datagram::from_ip(data);
    let _ = Event::decode(data);
    let _ = controlplane::ha::open(&[7u8; 32], data);
    // Parts as a receiver would put them together (after authentication, anything).
    if let Ok(p) = serde_json::from_slice::<controlplane::ha::Part>(data) {
        let fresh = controlplane::ha::Freshness::default();
        let mut a = controlplane::ha::Assembly::default();
        let _ = a.push(p.clone(), &fresh, p.sent_ms);
        let _ = a.push(p, &fresh, u64::MAX);
    }
    if let Ok(s) = serde_json::from_slice::<controlplane::ha::Snapshot>(data) {
        let _ = controlplane::ha::report_age_secs(&s, u64::MAX);
        let _ = controlplane::ha::Freshness::default().take(&s, u64::MAX);
        for sa in &s.sas {
            let _ = sa.params();
        }
        // The other gateway's IKE SAs carried on after a takeover: restored into a daemon
        // with a matching tunnel, timers run, the input itself handed to them as IKE.
        if !s.ike.is_empty() {
            let mut d = controlplane::ike::daemon::Daemon::new(tunnel());
            let now = std::time::Instant::now();
            // How old the snapshot is comes from the input too (its wall-clock fields).
            let elapsed = std::time::Duration::from_millis(s.sent_ms);
            let _ = d.restore(&s.ike, elapsed, &|_| true, now);
            let _ = d.tick(now);
            for sa in &s.ike {
                let _ = d.handle(now, sa.local, sa.remote, data);
            }
            let _ = d.export(&|_| true, now);
        }
    }
});

/// A tunnel as the seed corpus's synced IKE SAs name it.
fn tunnel() -> &'static controlplane::config::Config {
    static C: std::sync::OnceLock<controlplane::config::Config> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        controlplane::config::Config::parse(
            "tunnels:\n  - name: t\n    local: 203.0.113.1\n    remote: 203.0.113.2\n    psk: \"fuzz-psk-0123456789\"\n    ike_proposals: [aes256-sha256-modp2048]\n    children:\n      - name: net\n        local_ts: [192.168.10.0/24]\n        remote_ts: [192.168.20.0/24]\n        esp_proposals: [aes256-sha256]\n",
            std::path::Path::new("fuzz.yaml"),
        )
        .expect("the fuzz tunnel")
    })
}
