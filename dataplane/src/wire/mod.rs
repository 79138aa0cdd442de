//! Wire views over byte buffers, one file per header.
//!
//! Each view is a `Packet<T: AsRef<[u8]>>` (or `Frame`) over the bytes with a private
//! `mod field` of byte ranges. Panic rule for this whole module: `new_checked` calls
//! `check_len`, and once it has passed no accessor can panic on any input.

pub mod ah;
pub mod arp;
pub mod checksum;
pub mod esp;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod udp_encap;
pub mod vrrp;

/// Why a wire view rejected its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field says).
    Truncated,
    /// A field holds a value the header cannot have.
    Malformed,
    /// A checksum does not verify.
    Checksum,
}

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
pub mod ip_proto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPT: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulation (IP-in-IP; ESP tunnel-mode next header).
    pub const IPV4: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation.
    pub const IPV6: u8 = 41;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// ESP (RFC 4303).
    pub const ESP: u8 = 50;
    /// AH (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// No next header (ESP dummy packets, RFC 4303 §2.6).
    pub const NO_NEXT: u8 = 59;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
}
