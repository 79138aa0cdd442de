//! IKEv2 message codec (RFC 7296 §3): the header, the generic payload chain and every payload
//! this daemon speaks. Parsing never panics: every length is checked and malformed input becomes
//! a typed [`WireError`].
//!
//! The Encrypted payload (SK, §3.14) is parsed as an opaque body: [`super::crypto`] decrypts it
//! and [`parse_chain`] then parses the inner payloads, whose first type is the SK payload's
//! "next payload" field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IKE header length.
pub const HEADER_LEN: usize = 28;
/// Generic payload header length.
pub const GENERIC_LEN: usize = 4;

/// Exchange types (RFC 7296 §3.1).
pub mod exchange {
    /// IKE_SA_INIT.
    pub const IKE_SA_INIT: u8 = 34;
    /// IKE_AUTH.
    pub const IKE_AUTH: u8 = 35;
    /// CREATE_CHILD_SA.
    pub const CREATE_CHILD_SA: u8 = 36;
    /// INFORMATIONAL.
    pub const INFORMATIONAL: u8 = 37;
}

/// Header flags.
pub mod flags {
    /// Set by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// Higher version supported.
    pub const VERSION: u8 = 0x10;
    /// This is a response.
    pub const RESPONSE: u8 = 0x20;
}

/// Payload type numbers (RFC 7296 §3.2, RFC 7383).
pub mod ptype {
    /// No next payload.
    pub const NONE: u8 = 0;
    /// Security Association.
    pub const SA: u8 = 33;
    /// Key Exchange.
    pub const KE: u8 = 34;
    /// Identification - Initiator.
    pub const IDI: u8 = 35;
    /// Identification - Responder.
    pub const IDR: u8 = 36;
    /// Certificate.
    pub const CERT: u8 = 37;
    /// Certificate Request.
    pub const CERTREQ: u8 = 38;
    /// Authentication.
    pub const AUTH: u8 = 39;
    /// Nonce.
    pub const NONCE: u8 = 40;
    /// Notify.
    pub const NOTIFY: u8 = 41;
    /// Delete.
    pub const DELETE: u8 = 42;
    /// Vendor ID.
    pub const VENDOR: u8 = 43;
    /// Traffic Selector - Initiator.
    pub const TSI: u8 = 44;
    /// Traffic Selector - Responder.
    pub const TSR: u8 = 45;
    /// Encrypted and Authenticated.
    pub const SK: u8 = 46;
    /// Configuration.
    pub const CP: u8 = 47;
    /// EAP.
    pub const EAP: u8 = 48;
    /// Encrypted and Authenticated Fragment (RFC 7383).
    pub const SKF: u8 = 53;
}

/// Notify message types (RFC 7296 §3.10.1 and later RFCs).
pub mod notify {
    /// UNSUPPORTED_CRITICAL_PAYLOAD.
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    /// INVALID_IKE_SPI.
    pub const INVALID_IKE_SPI: u16 = 4;
    /// INVALID_MAJOR_VERSION.
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    /// INVALID_SYNTAX.
    pub const INVALID_SYNTAX: u16 = 7;
    /// INVALID_MESSAGE_ID.
    pub const INVALID_MESSAGE_ID: u16 = 9;
    /// INVALID_SPI.
    pub const INVALID_SPI: u16 = 11;
    /// NO_PROPOSAL_CHOSEN.
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    /// INVALID_KE_PAYLOAD.
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    /// AUTHENTICATION_FAILED.
    pub const AUTHENTICATION_FAILED: u16 = 24;
    /// SINGLE_PAIR_REQUIRED.
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    /// NO_ADDITIONAL_SAS.
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    /// INTERNAL_ADDRESS_FAILURE.
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    /// FAILED_CP_REQUIRED.
    pub const FAILED_CP_REQUIRED: u16 = 37;
    /// TS_UNACCEPTABLE.
    pub const TS_UNACCEPTABLE: u16 = 38;
    /// INVALID_SELECTORS.
    pub const INVALID_SELECTORS: u16 = 39;
    /// TEMPORARY_FAILURE.
    pub const TEMPORARY_FAILURE: u16 = 43;
    /// CHILD_SA_NOT_FOUND.
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    /// TS_MAX_QUEUE (RFC 9611): no more per-resource CHILD_SAs of these selectors.
    pub const TS_MAX_QUEUE: u16 = 48;
    /// Error types are below this value.
    pub const FIRST_STATUS: u16 = 16384;
    /// INITIAL_CONTACT.
    pub const INITIAL_CONTACT: u16 = 16384;
    /// SET_WINDOW_SIZE.
    pub const SET_WINDOW_SIZE: u16 = 16385;
    /// ADDITIONAL_TS_POSSIBLE.
    pub const ADDITIONAL_TS_POSSIBLE: u16 = 16386;
    /// NAT_DETECTION_SOURCE_IP.
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    /// NAT_DETECTION_DESTINATION_IP.
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    /// COOKIE.
    pub const COOKIE: u16 = 16390;
    /// USE_TRANSPORT_MODE.
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    /// REKEY_SA.
    pub const REKEY_SA: u16 = 16393;
    /// ESP_TFC_PADDING_NOT_SUPPORTED.
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    /// NON_FIRST_FRAGMENTS_ALSO.
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    /// MOBIKE_SUPPORTED.
    pub const MOBIKE_SUPPORTED: u16 = 16396;
    /// SA_RESOURCE_INFO (RFC 9611): the CHILD_SA is one of a group of per-resource SAs with
    /// the same selectors; optional data identify the resource (opaque to the peer).
    pub const SA_RESOURCE_INFO: u16 = 16444;
    /// IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383).
    pub const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;
    /// SIGNATURE_HASH_ALGORITHMS (RFC 7427).
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;
}

/// Protocol IDs in proposals, notifies and deletes.
pub mod proto {
    /// IKE.
    pub const IKE: u8 = 1;
    /// AH.
    pub const AH: u8 = 2;
    /// ESP.
    pub const ESP: u8 = 3;
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the IKE header.
    #[error("message shorter than the IKE header")]
    ShortHeader,
    /// Major version is not 2.
    #[error("IKE major version {0} is not 2")]
    Version(u8),
    /// The header's length field disagrees with the datagram.
    #[error("IKE header length {header} but datagram has {datagram} bytes")]
    Length {
        /// Header length field.
        header: u32,
        /// Datagram length.
        datagram: usize,
    },
    /// A payload header runs past the end of the message.
    #[error("payload {ptype} truncated")]
    Truncated {
        /// Payload type.
        ptype: u8,
    },
    /// A payload's length is smaller than its fixed part.
    #[error("payload {ptype} has bad length {len}")]
    BadPayloadLength {
        /// Payload type.
        ptype: u8,
        /// The length field.
        len: u16,
    },
    /// An unknown payload has the critical bit set (RFC 7296 §2.5).
    #[error("unsupported critical payload {0}")]
    UnsupportedCritical(u8),
    /// The SK payload is not the last payload.
    #[error("encrypted payload is not the last payload")]
    SkNotLast,
    /// A substructure (proposal, transform, selector) is malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Trailing bytes after the last payload.
    #[error("trailing bytes after the last payload")]
    Trailing,
}

/// The fixed IKE header (RFC 7296 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Initiator's SPI.
    pub spi_i: u64,
    /// Responder's SPI (0 in the first request).
    pub spi_r: u64,
    /// Type of the first payload.
    pub next: u8,
    /// Version byte (0x20).
    pub version: u8,
    /// Exchange type.
    pub exchange: u8,
    /// Flags.
    pub flags: u8,
    /// Message ID.
    pub msg_id: u32,
    /// Total length.
    pub length: u32,
}

impl Header {
    /// Parses and checks the header against the datagram.
    pub fn parse(b: &[u8]) -> Result<Header, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::ShortHeader);
        }
        let h = Header {
            spi_i: u64::from_be_bytes(b[0..8].try_into().unwrap_or([0; 8])),
            spi_r: u64::from_be_bytes(b[8..16].try_into().unwrap_or([0; 8])),
            next: b[16],
            version: b[17],
            exchange: b[18],
            flags: b[19],
            msg_id: u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
            length: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
        };
        if h.version >> 4 != 2 {
            return Err(WireError::Version(h.version >> 4));
        }
        if h.length as usize != b.len() {
            return Err(WireError::Length {
                header: h.length,
                datagram: b.len(),
            });
        }
        Ok(h)
    }

    /// Appends the header to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next);
        out.push(self.version);
        out.push(self.exchange);
        out.push(self.flags);
        out.extend_from_slice(&self.msg_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    /// True for responses.
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }
    /// True when sent by the original initiator.
    pub fn is_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }
}

/// The answer to a request of a higher major version than 2 (RFC 7296 §2.5: drop it and
/// send an unauthenticated INVALID_MAJOR_VERSION "containing the highest (closest) version
/// number it supports", which §3.10.1 puts in the reply's header). As §1.5 has it for
/// messages outside an IKE SA, the reply copies the request's SPIs, exchange type and
/// message ID and sets the response flag, and the initiator flag as the sender's role
/// leaves it to us. None for anything else: version 2 or lower (IKEv1 is not answered),
/// responses (never answered, so two such daemons cannot loop), datagrams shorter than a
/// header.
pub fn invalid_major_version_answer(request: &[u8]) -> Option<Vec<u8>> {
    let b = request.get(..HEADER_LEN)?;
    let (version, flags_byte) = (b[17], b[19]);
    if version >> 4 <= 2 || flags_byte & flags::RESPONSE != 0 {
        return None;
    }
    let h = Header {
        spi_i: u64::from_be_bytes(b[0..8].try_into().ok()?),
        spi_r: u64::from_be_bytes(b[8..16].try_into().ok()?),
        next: 0,
        version: 0x20,
        exchange: b[18],
        flags: flags::RESPONSE
            | if flags_byte & flags::INITIATOR == 0 {
                flags::INITIATOR
            } else {
                0
            },
        msg_id: u32::from_be_bytes(b[20..24].try_into().ok()?),
        length: 0,
    };
    Some(Message::emit(
        h,
        &[Payload::notify(notify::INVALID_MAJOR_VERSION, Vec::new())],
    ))
}

/// A transform attribute: only Key Length (type 14, TV) is defined for IKEv2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Transform type (1 ENCR, 2 PRF, 3 INTEG, 4 DH/KE, 5 ESN).
    pub ttype: u8,
    /// Transform ID.
    pub id: u16,
    /// Key length attribute in bits, if present.
    pub key_len: Option<u16>,
}

/// A proposal (RFC 7296 §3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number (1-based).
    pub num: u8,
    /// Protocol ID (IKE, AH, ESP).
    pub protocol: u8,
    /// SPI (empty for the first IKE_SA_INIT, 8 bytes for IKE rekeys, 4 for ESP/AH).
    pub spi: Vec<u8>,
    /// Transforms.
    pub transforms: Vec<Transform>,
}

/// A traffic selector (RFC 7296 §3.13.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TrafficSelector {
    /// IP protocol, 0 = any.
    pub ip_proto: u8,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
}

/// A Notify payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Protocol ID (0 when not about an SA).
    pub protocol: u8,
    /// SPI the notify is about (may be empty).
    pub spi: Vec<u8>,
    /// Notify message type.
    pub ntype: u16,
    /// Notification data.
    pub data: Vec<u8>,
}

/// One payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Security Association.
    Sa(Vec<Proposal>),
    /// Key Exchange: DH group and public value.
    Ke {
        /// Group number.
        group: u16,
        /// Public value.
        data: Vec<u8>,
    },
    /// Identification (initiator when `responder` is false).
    Id {
        /// IDr rather than IDi.
        responder: bool,
        /// ID type.
        id_type: u8,
        /// Identification data.
        data: Vec<u8>,
    },
    /// Certificate.
    Cert {
        /// Encoding.
        encoding: u8,
        /// Data.
        data: Vec<u8>,
    },
    /// Certificate request.
    CertReq {
        /// Encoding.
        encoding: u8,
        /// Data.
        data: Vec<u8>,
    },
    /// Authentication.
    Auth {
        /// Method.
        method: u8,
        /// Data.
        data: Vec<u8>,
    },
    /// Nonce.
    Nonce(Vec<u8>),
    /// Notify.
    Notify(Notify),
    /// Delete.
    Delete {
        /// Protocol ID.
        protocol: u8,
        /// SPIs (empty for the IKE SA).
        spis: Vec<Vec<u8>>,
    },
    /// Vendor ID.
    Vendor(Vec<u8>),
    /// Traffic selectors (TSr when `responder`).
    Ts {
        /// TSr rather than TSi.
        responder: bool,
        /// Selectors.
        selectors: Vec<TrafficSelector>,
    },
    /// Encrypted payload, body still encrypted; `inner` is the first inner payload type.
    Sk {
        /// Type of the first inner payload.
        inner: u8,
        /// IV | ciphertext | ICV.
        body: Vec<u8>,
    },
    /// Encrypted fragment (RFC 7383).
    Skf {
        /// Type of the first inner payload (only in fragment 1).
        inner: u8,
        /// Fragment number.
        number: u16,
        /// Total fragments.
        total: u16,
        /// IV | ciphertext | ICV.
        body: Vec<u8>,
    },
    /// Configuration (kept raw).
    Cp(Vec<u8>),
    /// A non-critical payload we do not process.
    Unknown {
        /// Payload type.
        ptype: u8,
        /// Body.
        data: Vec<u8>,
    },
}

impl Payload {
    /// The payload type number.
    pub fn ptype(&self) -> u8 {
        match self {
            Payload::Sa(_) => ptype::SA,
            Payload::Ke { .. } => ptype::KE,
            Payload::Id { responder, .. } => {
                if *responder {
                    ptype::IDR
                } else {
                    ptype::IDI
                }
            }
            Payload::Cert { .. } => ptype::CERT,
            Payload::CertReq { .. } => ptype::CERTREQ,
            Payload::Auth { .. } => ptype::AUTH,
            Payload::Nonce(_) => ptype::NONCE,
            Payload::Notify(_) => ptype::NOTIFY,
            Payload::Delete { .. } => ptype::DELETE,
            Payload::Vendor(_) => ptype::VENDOR,
            Payload::Ts { responder, .. } => {
                if *responder {
                    ptype::TSR
                } else {
                    ptype::TSI
                }
            }
            Payload::Sk { .. } => ptype::SK,
            Payload::Skf { .. } => ptype::SKF,
            Payload::Cp(_) => ptype::CP,
            Payload::Unknown { ptype, .. } => *ptype,
        }
    }

    /// A status or error notify without SPI.
    pub fn notify(ntype: u16, data: Vec<u8>) -> Payload {
        Payload::Notify(Notify {
            protocol: 0,
            spi: Vec::new(),
            ntype,
            data,
        })
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses a payload chain starting with type `first` from `b`. Returns the payloads; an SK or
/// SKF payload must be last and is returned undecrypted.
pub fn parse_chain(mut first: u8, b: &[u8]) -> Result<Vec<Payload>, WireError> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while first != ptype::NONE {
        if b.len() - off < GENERIC_LEN {
            return Err(WireError::Truncated { ptype: first });
        }
        let next = b[off];
        let critical = b[off + 1] & 0x80 != 0;
        let len = be16(b, off + 2);
        if (len as usize) < GENERIC_LEN {
            return Err(WireError::BadPayloadLength { ptype: first, len });
        }
        if off + len as usize > b.len() {
            return Err(WireError::Truncated { ptype: first });
        }
        let body = &b[off + GENERIC_LEN..off + len as usize];
        let p = parse_body(first, next, body, critical)?;
        off += len as usize;
        let is_sk = matches!(p, Payload::Sk { .. } | Payload::Skf { .. });
        out.push(p);
        if is_sk {
            if off != b.len() {
                return Err(WireError::SkNotLast);
            }
            return Ok(out);
        }
        first = next;
    }
    if off != b.len() {
        return Err(WireError::Trailing);
    }
    Ok(out)
}

fn bad(ptype: u8, body: &[u8]) -> WireError {
    WireError::BadPayloadLength {
        ptype,
        len: (body.len() + GENERIC_LEN).min(u16::MAX as usize) as u16,
    }
}

fn parse_body(t: u8, next: u8, body: &[u8], critical: bool) -> Result<Payload, WireError> {
    Ok(match t {
        ptype::SA => Payload::Sa(parse_proposals(body)?),
        ptype::KE => {
            if body.len() < 4 {
                return Err(bad(t, body));
            }
            Payload::Ke {
                group: be16(body, 0),
                data: body[4..].to_vec(),
            }
        }
        ptype::IDI | ptype::IDR => {
            if body.len() < 4 {
                return Err(bad(t, body));
            }
            Payload::Id {
                responder: t == ptype::IDR,
                id_type: body[0],
                data: body[4..].to_vec(),
            }
        }
        ptype::CERT | ptype::CERTREQ => {
            if body.is_empty() {
                return Err(bad(t, body));
            }
            let (encoding, data) = (body[0], body[1..].to_vec());
            if t == ptype::CERT {
                Payload::Cert { encoding, data }
            } else {
                Payload::CertReq { encoding, data }
            }
        }
        ptype::AUTH => {
            if body.len() < 4 {
                return Err(bad(t, body));
            }
            Payload::Auth {
                method: body[0],
                data: body[4..].to_vec(),
            }
        }
        ptype::NONCE => {
            // RFC 7296 §3.9: between 16 and 256 octets.
            if body.len() < 16 || body.len() > 256 {
                return Err(bad(t, body));
            }
            Payload::Nonce(body.to_vec())
        }
        ptype::NOTIFY => {
            if body.len() < 4 {
                return Err(bad(t, body));
            }
            let spi_len = body[1] as usize;
            if body.len() < 4 + spi_len {
                return Err(bad(t, body));
            }
            Payload::Notify(Notify {
                protocol: body[0],
                spi: body[4..4 + spi_len].to_vec(),
                ntype: be16(body, 2),
                data: body[4 + spi_len..].to_vec(),
            })
        }
        ptype::DELETE => {
            if body.len() < 4 {
                return Err(bad(t, body));
            }
            let spi_len = body[1] as usize;
            let n = be16(body, 2) as usize;
            if body.len() != 4 + spi_len * n || (spi_len == 0 && n != 0) {
                return Err(WireError::Malformed("delete payload"));
            }
            Payload::Delete {
                protocol: body[0],
                spis: body[4..]
                    .chunks(spi_len.max(1))
                    .map(<[u8]>::to_vec)
                    .collect(),
            }
        }
        ptype::VENDOR => Payload::Vendor(body.to_vec()),
        ptype::TSI | ptype::TSR => Payload::Ts {
            responder: t == ptype::TSR,
            selectors: parse_selectors(body)?,
        },
        ptype::SK => Payload::Sk {
            inner: next,
            body: body.to_vec(),
        },
        ptype::SKF => {
            if body.len() < 4 {
                return Err(bad(t, body));
            }
            let number = be16(body, 0);
            let total = be16(body, 2);
            if number == 0 || total == 0 || number > total {
                return Err(WireError::Malformed("fragment numbering"));
            }
            Payload::Skf {
                inner: next,
                number,
                total,
                body: body[4..].to_vec(),
            }
        }
        ptype::CP => Payload::Cp(body.to_vec()),
        _ if critical => return Err(WireError::UnsupportedCritical(t)),
        _ => Payload::Unknown {
            ptype: t,
            data: body.to_vec(),
        },
    })
}

fn parse_proposals(b: &[u8]) -> Result<Vec<Proposal>, WireError> {
    let mut out = Vec::new();
    let mut off = 0;
    loop {
        if b.len() - off < 8 {
            return Err(WireError::Malformed("proposal"));
        }
        let last = b[off];
        let len = be16(b, off + 2) as usize;
        if len < 8 || off + len > b.len() || (last != 0 && last != 2) {
            return Err(WireError::Malformed("proposal"));
        }
        let p = &b[off..off + len];
        let spi_len = p[6] as usize;
        let ntrans = p[7] as usize;
        if 8 + spi_len > p.len() {
            return Err(WireError::Malformed("proposal SPI"));
        }
        let mut transforms = Vec::with_capacity(ntrans);
        let mut t = 8 + spi_len;
        for i in 0..ntrans {
            if p.len() - t < 8 {
                return Err(WireError::Malformed("transform"));
            }
            let tlast = p[t];
            let tlen = be16(p, t + 2) as usize;
            if tlen < 8 || t + tlen > p.len() || (tlast != 0 && tlast != 3) {
                return Err(WireError::Malformed("transform"));
            }
            if (tlast == 0) != (i + 1 == ntrans) {
                return Err(WireError::Malformed("transform count"));
            }
            let mut key_len = None;
            let mut a = t + 8;
            while a < t + tlen {
                if t + tlen - a < 4 {
                    return Err(WireError::Malformed("transform attribute"));
                }
                let at = be16(p, a);
                if at & 0x8000 != 0 {
                    if at & 0x7fff == 14 {
                        key_len = Some(be16(p, a + 2));
                    }
                    a += 4;
                } else {
                    let alen = be16(p, a + 2) as usize;
                    if t + tlen - a - 4 < alen {
                        return Err(WireError::Malformed("transform attribute"));
                    }
                    a += 4 + alen;
                }
            }
            transforms.push(Transform {
                ttype: p[t + 4],
                id: be16(p, t + 6),
                key_len,
            });
            t += tlen;
        }
        if t != p.len() {
            return Err(WireError::Malformed("proposal length"));
        }
        out.push(Proposal {
            num: p[4],
            protocol: p[5],
            spi: p[8..8 + spi_len].to_vec(),
            transforms,
        });
        off += len;
        if last == 0 {
            break;
        }
    }
    if off != b.len() {
        return Err(WireError::Malformed("SA payload length"));
    }
    Ok(out)
}

fn parse_selectors(b: &[u8]) -> Result<Vec<TrafficSelector>, WireError> {
    if b.len() < 4 {
        return Err(WireError::Malformed("traffic selector payload"));
    }
    let n = b[0] as usize;
    let mut off = 4;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if b.len() - off < 8 {
            return Err(WireError::Malformed("traffic selector"));
        }
        let ts_type = b[off];
        let len = be16(b, off + 2) as usize;
        let alen = match ts_type {
            7 => 4,
            8 => 16,
            _ => return Err(WireError::Malformed("traffic selector type")),
        };
        if len != 8 + 2 * alen || off + len > b.len() {
            return Err(WireError::Malformed("traffic selector length"));
        }
        let s = &b[off..off + len];
        let addr = |a: &[u8]| -> IpAddr {
            if alen == 4 {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            } else {
                let mut x = [0u8; 16];
                x.copy_from_slice(a);
                IpAddr::V6(Ipv6Addr::from(x))
            }
        };
        out.push(TrafficSelector {
            ip_proto: s[1],
            start_port: be16(s, 4),
            end_port: be16(s, 6),
            start: addr(&s[8..8 + alen]),
            end: addr(&s[8 + alen..]),
        });
        off += len;
    }
    if off != b.len() {
        return Err(WireError::Malformed("traffic selector payload length"));
    }
    Ok(out)
}

/// Appends the body of `p` (without the generic header).
fn emit_body(p: &Payload, out: &mut Vec<u8>) {
    match p {
        Payload::Sa(props) => {
            for (i, pr) in props.iter().enumerate() {
                let start = out.len();
                out.push(if i + 1 == props.len() { 0 } else { 2 });
                out.push(0);
                out.extend_from_slice(&[0, 0]);
                out.push(pr.num);
                out.push(pr.protocol);
                out.push(pr.spi.len() as u8);
                out.push(pr.transforms.len() as u8);
                out.extend_from_slice(&pr.spi);
                for (j, t) in pr.transforms.iter().enumerate() {
                    out.push(if j + 1 == pr.transforms.len() { 0 } else { 3 });
                    out.push(0);
                    let tlen: u16 = if t.key_len.is_some() { 12 } else { 8 };
                    out.extend_from_slice(&tlen.to_be_bytes());
                    out.push(t.ttype);
                    out.push(0);
                    out.extend_from_slice(&t.id.to_be_bytes());
                    if let Some(k) = t.key_len {
                        out.extend_from_slice(&0x800eu16.to_be_bytes());
                        out.extend_from_slice(&k.to_be_bytes());
                    }
                }
                let len = (out.len() - start) as u16;
                out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
        Payload::Ke { group, data } => {
            out.extend_from_slice(&group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Id { id_type, data, .. } => {
            out.extend_from_slice(&[*id_type, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
            out.push(*encoding);
            out.extend_from_slice(data);
        }
        Payload::Auth { method, data } => {
            out.extend_from_slice(&[*method, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Nonce(d) | Payload::Vendor(d) | Payload::Cp(d) => out.extend_from_slice(d),
        Payload::Notify(n) => {
            out.push(n.protocol);
            out.push(n.spi.len() as u8);
            out.extend_from_slice(&n.ntype.to_be_bytes());
            out.extend_from_slice(&n.spi);
            out.extend_from_slice(&n.data);
        }
        Payload::Delete { protocol, spis } => {
            out.push(*protocol);
            out.push(spis.first().map_or(0, Vec::len) as u8);
            out.extend_from_slice(&(spis.len() as u16).to_be_bytes());
            for s in spis {
                out.extend_from_slice(s);
            }
        }
        Payload::Ts { selectors, .. } => {
            out.extend_from_slice(&[selectors.len() as u8, 0, 0, 0]);
            for s in selectors {
                let v6 = s.start.is_ipv6();
                out.push(if v6 { 8 } else { 7 });
                out.push(s.ip_proto);
                out.extend_from_slice(&(if v6 { 40u16 } else { 16 }).to_be_bytes());
                out.extend_from_slice(&s.start_port.to_be_bytes());
                out.extend_from_slice(&s.end_port.to_be_bytes());
                for a in [s.start, s.end] {
                    match a {
                        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                    }
                }
            }
        }
        Payload::Sk { body, .. } => out.extend_from_slice(body),
        Payload::Skf {
            number,
            total,
            body,
            ..
        } => {
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(body);
        }
        Payload::Unknown { data, .. } => out.extend_from_slice(data),
    }
}

/// Emits a payload chain (no SK inside). Returns the bytes; the first payload's type is
/// `payloads[0].ptype()`.
pub fn emit_chain(payloads: &[Payload]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Sk { inner, .. } | Payload::Skf { inner, .. } => *inner,
            _ => payloads.get(i + 1).map_or(ptype::NONE, Payload::ptype),
        };
        let start = out.len();
        out.extend_from_slice(&[next, 0, 0, 0]);
        emit_body(p, &mut out);
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    out
}

/// First payload type of a chain.
pub fn first_type(payloads: &[Payload]) -> u8 {
    payloads.first().map_or(ptype::NONE, Payload::ptype)
}

/// A parsed message: header plus its (outer) payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Header.
    pub header: Header,
    /// Payloads (an SK payload, if any, is last and still encrypted).
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a whole datagram (without the non-ESP marker).
    pub fn parse(b: &[u8]) -> Result<Message, WireError> {
        let header = Header::parse(b)?;
        let payloads = parse_chain(header.next, &b[HEADER_LEN..])?;
        Ok(Message { header, payloads })
    }

    /// Emits an unencrypted message; the header's `next` and `length` are filled in.
    pub fn emit(mut header: Header, payloads: &[Payload]) -> Vec<u8> {
        let body = emit_chain(payloads);
        header.next = first_type(payloads);
        header.length = (HEADER_LEN + body.len()) as u32;
        let mut out = Vec::with_capacity(header.length as usize);
        header.emit(&mut out);
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_ts() -> impl Strategy<Value = TrafficSelector> {
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
        )
            .prop_map(|(p, s, e, v6, a, b)| {
                let (start, end) = if v6 {
                    (IpAddr::V6(a.into()), IpAddr::V6(b.into()))
                } else {
                    (
                        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
                    )
                };
                TrafficSelector {
                    ip_proto: p,
                    start_port: s,
                    end_port: e,
                    start,
                    end,
                }
            })
    }

    fn arb_payload() -> impl Strategy<Value = Payload> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
        let transform = (1u8..6, any::<u16>(), proptest::option::of(any::<u16>()))
            .prop_map(|(ttype, id, key_len)| Transform { ttype, id, key_len });
        let proposal = (
            1u8..10,
            1u8..4,
            proptest::collection::vec(any::<u8>(), 0..9),
            proptest::collection::vec(transform, 1..6),
        )
            .prop_map(|(num, protocol, spi, transforms)| Proposal {
                num,
                protocol,
                spi,
                transforms,
            });
        prop_oneof![
            proptest::collection::vec(proposal, 1..4).prop_map(Payload::Sa),
            (any::<u16>(), bytes()).prop_map(|(group, data)| Payload::Ke { group, data }),
            (any::<bool>(), any::<u8>(), bytes()).prop_map(|(responder, id_type, data)| {
                Payload::Id {
                    responder,
                    id_type,
                    data,
                }
            }),
            (any::<u8>(), bytes()).prop_map(|(method, data)| Payload::Auth { method, data }),
            proptest::collection::vec(any::<u8>(), 16..64).prop_map(Payload::Nonce),
            (
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 0..9),
                any::<u16>(),
                bytes()
            )
                .prop_map(|(protocol, spi, ntype, data)| Payload::Notify(Notify {
                    protocol,
                    spi,
                    ntype,
                    data
                })),
            (
                1u8..4,
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 4), 0..4)
            )
                .prop_map(|(protocol, spis)| Payload::Delete { protocol, spis }),
            bytes().prop_map(Payload::Vendor),
            (any::<bool>(), proptest::collection::vec(arb_ts(), 0..4)).prop_map(
                |(responder, selectors)| Payload::Ts {
                    responder,
                    selectors
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn chain_round_trips(ps in proptest::collection::vec(arb_payload(), 1..6)) {
            let b = emit_chain(&ps);
            let back = parse_chain(first_type(&ps), &b).unwrap();
            prop_assert_eq!(back, ps);
        }

        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::parse(&b);
            if !b.is_empty() {
                let _ = parse_chain(b[0], &b[1..]);
            }
        }
    }

    #[test]
    fn rejects_unknown_critical_and_accepts_unknown_noncritical() {
        let mut b = vec![0u8, 0x80, 0, 6, 1, 2];
        assert_eq!(
            parse_chain(200, &b),
            Err(WireError::UnsupportedCritical(200))
        );
        b[1] = 0;
        assert_eq!(
            parse_chain(200, &b).unwrap(),
            vec![Payload::Unknown {
                ptype: 200,
                data: vec![1, 2]
            }]
        );
    }

    #[test]
    fn header_checks() {
        let h = Header {
            spi_i: 1,
            spi_r: 0,
            next: 0,
            version: 0x20,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::INITIATOR,
            msg_id: 0,
            length: 0,
        };
        let m = Message::emit(h, &[]);
        assert_eq!(m.len(), HEADER_LEN);
        assert!(Message::parse(&m).is_ok());
        let mut v1 = m.clone();
        v1[17] = 0x10;
        assert_eq!(Message::parse(&v1), Err(WireError::Version(1)));
        let mut long = m.clone();
        long.push(0);
        assert!(matches!(
            Message::parse(&long),
            Err(WireError::Length { .. })
        ));
        assert_eq!(Message::parse(&m[..20]), Err(WireError::ShortHeader));
    }

    /// A request of version 3.1 from an original initiator gets INVALID_MAJOR_VERSION in a
    /// 2.0 header with the request's SPIs, exchange and message ID; the other role gets the
    /// initiator flag. Version 2 and 1, responses and short datagrams get nothing.
    #[test]
    fn higher_major_versions_are_answered_with_invalid_major_version() {
        let mut req = vec![0u8; 40];
        req[..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        req[8..16].copy_from_slice(&0x99aa_bbcc_ddee_ff00u64.to_be_bytes());
        req[16] = 0xdd; // whatever a version 3 puts there
        req[17] = 0x31;
        req[18] = 77;
        req[19] = flags::INITIATOR;
        req[20..24].copy_from_slice(&5u32.to_be_bytes());
        let a = invalid_major_version_answer(&req).expect("answered");
        let m = Message::parse(&a).expect("a valid IKEv2 message");
        assert_eq!(m.header.spi_i, 0x1122_3344_5566_7788);
        assert_eq!(m.header.spi_r, 0x99aa_bbcc_ddee_ff00);
        assert_eq!(m.header.version, 0x20);
        assert_eq!((m.header.exchange, m.header.msg_id), (77, 5));
        assert_eq!(m.header.flags, flags::RESPONSE);
        assert_eq!(
            m.payloads,
            vec![Payload::notify(notify::INVALID_MAJOR_VERSION, Vec::new())]
        );
        req[19] = 0;
        let a = invalid_major_version_answer(&req).unwrap();
        let m = Message::parse(&a).unwrap();
        assert_eq!(m.header.flags, flags::RESPONSE | flags::INITIATOR);
        for (version, fl, len) in [
            (0x20, 0, 40),
            (0x10, 0, 40),
            (0x31, flags::RESPONSE, 40),
            (0x31, 0, HEADER_LEN - 1),
        ] {
            let mut r = req.clone();
            r[17] = version;
            r[19] = fl;
            r.truncate(len);
            assert_eq!(
                invalid_major_version_answer(&r),
                None,
                "{version:#x} {fl:#x} {len}"
            );
        }
    }
}
