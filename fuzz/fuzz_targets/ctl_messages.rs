//! What the data plane reads from the control-plane channel (another process's writes):
//! commands, and IKE datagrams to inject; and the punt parser on packets from the wire.
#![no_main]
use dataplane::ctl::{Command, Datagram};
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
});
