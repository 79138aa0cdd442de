//! ferrogate's control plane: the IKEv2 daemon `ferrogate-ike` (protocol code free of I/O in
//! [`ike`], configuration in [`config`]) and its link to the data plane.
#![deny(unsafe_code)]

pub mod config;
pub mod export;
pub mod ha;
pub mod ike;
pub mod mgmt;

pub use dataplane;
