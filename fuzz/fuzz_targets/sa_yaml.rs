//! The SA, gateway and tunnel YAML loaders on arbitrary text: a clear error or a valid configuration,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(sas) = dataplane::config::parse_sa_yaml(text, std::path::Path::new("fuzz.yaml")) {
            for p in &sas {
                let _ = dataplane::sa::OutboundSa::new(p);
                let _ = dataplane::sa::InboundSa::new(p);
            }
        }
        let path = std::path::Path::new("fuzz.yaml");
        if let Ok(g) = dataplane::gateway_config::GatewayConfig::parse(text, path) {
            let _ = dataplane::spd::Spd::build(g.spd_out);
            let _ = dataplane::spd::Spd::build(g.spd_in);
        }
        // The IKE daemon's tunnels (not with keys that name files: an input could name one
        // that never ends, such as /dev/zero).
        if !["_file", "cert", "key", "crls"].iter().any(|k| text.contains(k)) {
            let _ = controlplane::config::Config::parse(text, path);
        }
    }
});
