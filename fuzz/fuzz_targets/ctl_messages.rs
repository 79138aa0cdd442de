//! What the data plane reads from the control-plane channel (another process's writes):
//! commands, and IKE datagrams to inject; and the punt parser on packets from the wire. Also
//! what the control plane reads: the data plane's events, and the HA sync datagrams of the
//! other gateway (sealed: the opened snapshot's JSON is fuzzed directly too).
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
    }
});
