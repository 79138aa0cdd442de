//! IP prefixes, as used by selectors, routes and configuration.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a prefix was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// Not `ADDRESS` or `ADDRESS/LENGTH`.
    #[error("`{0}` is not an address or address/length")]
    Syntax(String),
    /// Longer than the address.
    #[error("prefix length {0} is longer than the address")]
    Length(u8),
    /// Bits set after the prefix length (`10.0.0.1/8`): almost always a typo.
    #[error("`{0}` has host bits set; did you mean `{1}`?")]
    HostBits(String, String),
}

/// An IPv4 or IPv6 prefix in canonical form (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// A prefix; fails if `len` is too long or `addr` has host bits set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(PrefixError::Length(len));
        }
        let p = Self { addr, len };
        let canon = Self::truncate(addr, len);
        if canon != addr {
            return Err(PrefixError::HostBits(
                format!("{addr}/{len}"),
                format!("{canon}/{len}"),
            ));
        }
        Ok(p)
    }

    /// The prefix of length `len` containing `addr` (host bits cleared).
    pub fn containing(addr: IpAddr, len: u8) -> Self {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.min(max);
        Self {
            addr: Self::truncate(addr, len),
            len,
        }
    }

    fn truncate(addr: IpAddr, len: u8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let m = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(len))
                };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
            }
            IpAddr::V6(a) => {
                let m = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(len))
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
            }
        }
    }

    /// Every IPv4 address.
    pub fn any_v4() -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            len: 0,
        }
    }
    /// Every IPv6 address.
    pub fn any_v6() -> Self {
        Self {
            addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            len: 0,
        }
    }
    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
    /// The prefix length.
    #[allow(clippy::len_without_is_empty)] // a prefix length, not a collection
    pub fn len(&self) -> u8 {
        self.len
    }
    /// True for an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
    /// Whether `a` lies in the prefix (never for the other address family).
    #[inline]
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                self.len == 0 || (u32::from(p) ^ u32::from(a)) >> (32 - u32::from(self.len)) == 0
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                self.len == 0 || (u128::from(p) ^ u128::from(a)) >> (128 - u32::from(self.len)) == 0
            }
            _ => false,
        }
    }
    /// The address as a left-aligned 128-bit number (IPv4 in the top 32 bits).
    pub(crate) fn bits(&self) -> u128 {
        addr_bits(self.addr)
    }
}

/// An address as a left-aligned 128-bit number (IPv4 in the top 32 bits).
#[inline]
pub(crate) fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) => u128::from(a),
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpPrefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| PrefixError::Syntax(s.into()))?;
        let len = match l {
            Some(l) => l
                .trim()
                .parse()
                .map_err(|_| PrefixError::Syntax(s.into()))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, len)
    }
}

impl serde::Serialize for IpPrefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_contains_display() {
        let p: IpPrefix = "192.168.10.0/24".parse().unwrap();
        assert!(p.contains("192.168.10.77".parse().unwrap()));
        assert!(!p.contains("192.168.11.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        assert_eq!(p.to_string(), "192.168.10.0/24");
        let h: IpPrefix = "10.0.0.1".parse().unwrap();
        assert_eq!(h.len(), 32);
        let v6: IpPrefix = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(IpPrefix::any_v4().contains("1.2.3.4".parse().unwrap()));
        assert!(
            matches!("10.0.0.1/8".parse::<IpPrefix>(), Err(PrefixError::HostBits(_, s)) if s == "10.0.0.0/8")
        );
        assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
        assert!("banana/3".parse::<IpPrefix>().is_err());
    }
}
