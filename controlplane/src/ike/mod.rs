//! IKEv2 (RFC 7296): codec, algorithms and proposals, key schedule, and the per-IKE-SA state
//! machine. No I/O here: the daemon feeds datagrams and clock ticks in and carries out the
//! actions that come back.

pub mod crypto;
pub mod daemon;
pub mod fetch;
pub mod frag;
pub mod ocsp;
pub mod pki;
pub mod proposal;
pub mod sa;
pub mod wire;
