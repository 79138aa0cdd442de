//! ferrogate's control plane. The IKEv2 daemon arrives with the control-plane issue; today this
//! crate only fixes the dependency direction: it uses the data-plane core without DPDK.
#![deny(unsafe_code)]

pub use dataplane;
