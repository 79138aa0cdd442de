//! UDP encapsulation of ESP (RFC 3948): telling ESP, IKE and NAT-keepalives apart on the
//! NAT-T port.

use super::Error;

/// The IKE port.
pub const IKE_PORT: u16 = 500;
/// The NAT-T port (IKE with non-ESP marker, and UDP-encapsulated ESP).
pub const IKE_NATT_PORT: u16 = 4500;
/// Length of the non-ESP marker in front of IKE messages on port 4500.
pub const NON_ESP_MARKER_LEN: usize = 4;

/// What a UDP payload on the NAT-T port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// UDP-encapsulated ESP (RFC 3948 §2.1).
    Esp,
    /// IKE after the four-zero-byte non-ESP marker (RFC 3948 §2.2).
    Ike,
    /// A NAT-keepalive: one byte 0xFF (RFC 3948 §2.3).
    Keepalive,
}

/// Classifies a UDP payload received on the NAT-T port (RFC 3948 §2.2): a single 0xFF byte is
/// a keepalive; a zero first word is the non-ESP marker of IKE (an SPI of 0 is reserved,
/// RFC 4303 §2.1); anything else is ESP, which needs at least SPI and sequence number.
pub fn classify(payload: &[u8]) -> Result<Classified, Error> {
    match payload {
        [0xff] => Ok(Classified::Keepalive),
        [0, 0, 0, 0, ..] => Ok(Classified::Ike),
        p if p.len() >= 8 => Ok(Classified::Esp),
        _ => Err(Error::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(&[0xff]), Ok(Classified::Keepalive));
        assert_eq!(classify(&[0, 0, 0, 0, 1, 2]), Ok(Classified::Ike));
        assert_eq!(classify(&[0, 0, 0, 1, 0, 0, 0, 1]), Ok(Classified::Esp));
        assert_eq!(classify(&[0, 0, 0, 1, 0, 0, 0]), Err(Error::Truncated));
        assert_eq!(classify(&[]), Err(Error::Truncated));
        assert_eq!(classify(&[0xfe]), Err(Error::Truncated));
    }
}
