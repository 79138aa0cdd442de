//! ferrogate's data-plane core.
//!
//! Everything in this crate without the `dpdk` feature is pure: it takes caller-owned buffers and
//! returns verdicts, and never does I/O. The DPDK gateway and the IKEv2 control plane build on it.
//!
//! Panic rule for the whole crate: no function reachable from packet input panics on any input.
//! Wire views check lengths once in `new_checked`; after that no accessor can panic.
#![deny(unsafe_code)]

pub mod ah;
pub mod buf;
pub mod burst;
pub mod config;
pub mod crypto;
pub mod ctl;
#[cfg(feature = "dpdk")]
#[allow(unsafe_code)] // the one DPDK wrapper module: every unsafe block there says why it is sound
pub mod dpdk;
pub mod drop;
pub mod esp;
pub mod flow;
pub mod flowcache;
pub mod gateway_config;
pub mod host;
pub mod icmp_err;
pub mod neigh;
pub mod net;
pub mod outer;
pub mod pcap;
pub mod ra;
pub mod reasm;
pub mod replay;
pub mod sa;
pub mod sad;
pub mod spd;
pub mod vrrp;
pub mod wire;
