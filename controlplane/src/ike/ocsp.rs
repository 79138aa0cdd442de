//! OCSP (RFC 6960) for certificate revocation: the request for one certificate (its CertID
//! with SHA-1, as every responder answers, and a nonce) and the parts of a response that the
//! check needs. The DER here is walked by hand with a small TLV reader: a responder's answer
//! is untrusted, so anything unexpected is an error, never a panic. The signature and the
//! responder's authority are checked by `pki`.

use sha1::{Digest, Sha1};

/// id-pkix-ocsp-basic (RFC 6960 §4.2.1).
const OID_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
/// id-pkix-ocsp-nonce (§4.4.1).
const OID_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];
/// id-sha1 (the CertID hash).
const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];

/// One DER element: its tag byte, its content, and the whole encoding.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    /// The tag (low-tag-number form only).
    pub tag: u8,
    /// The content octets.
    pub content: &'a [u8],
    /// Tag, length and content.
    pub raw: &'a [u8],
}

/// Reads one DER element off the front of `b`: definite lengths of up to four octets only.
pub fn tlv(b: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = b.split_first().ok_or("truncated: no tag")?;
    if tag & 0x1f == 0x1f {
        return Err("high tag numbers are not used here".into());
    }
    let (&l0, rest) = rest.split_first().ok_or("truncated: no length")?;
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length".into());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("truncated content".into());
    }
    let head = b.len() - rest.len();
    Ok((
        Tlv {
            tag,
            content: &rest[..len],
            raw: &b[..head + len],
        },
        &rest[len..],
    ))
}

/// Reads an element with tag `tag`.
fn expect<'a>(b: &'a [u8], tag: u8, what: &str) -> Result<(Tlv<'a>, &'a [u8]), String> {
    let (t, rest) = tlv(b).map_err(|e| format!("{what}: {e}"))?;
    if t.tag != tag {
        return Err(format!("{what}: tag {:#04x}, wanted {tag:#04x}", t.tag));
    }
    Ok((t, rest))
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|&&x| x == 0).count();
        v.push(0x80 | (bytes.len() - skip) as u8);
        v.extend_from_slice(&bytes[skip..]);
    }
    v.extend_from_slice(content);
    v
}

/// The parts of a CertID (SHA-1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertId {
    /// SHA-1 of the issuer's subject name (DER).
    pub name_hash: Vec<u8>,
    /// SHA-1 of the issuer's public key (the BIT STRING's bits).
    pub key_hash: Vec<u8>,
    /// The certificate's serial number (DER INTEGER content, leading zeros dropped).
    pub serial: Vec<u8>,
}

/// An INTEGER's content without sign-padding zeros (serials are compared as numbers).
pub fn int_bytes(b: &[u8]) -> Vec<u8> {
    let skip = b
        .iter()
        .take_while(|&&x| x == 0)
        .count()
        .min(b.len().saturating_sub(1));
    b[skip..].to_vec()
}

impl CertId {
    /// The CertID of a certificate with serial `serial` (DER INTEGER content) issued by the
    /// holder of `issuer_name` (DER) and `issuer_key` (the subjectPublicKey bits).
    pub fn new(issuer_name: &[u8], issuer_key: &[u8], serial: &[u8]) -> CertId {
        CertId {
            name_hash: Sha1::digest(issuer_name).to_vec(),
            key_hash: Sha1::digest(issuer_key).to_vec(),
            serial: int_bytes(serial),
        }
    }

    fn emit(&self) -> Vec<u8> {
        let alg = der(0x30, &[der(0x06, OID_SHA1), der(0x05, &[])].concat());
        let mut serial = self.serial.clone();
        if serial.first().is_some_and(|b| b & 0x80 != 0) {
            serial.insert(0, 0);
        }
        der(
            0x30,
            &[
                alg,
                der(0x04, &self.name_hash),
                der(0x04, &self.key_hash),
                der(0x02, &serial),
            ]
            .concat(),
        )
    }

    fn parse(t: Tlv<'_>) -> Result<CertId, String> {
        let (alg, rest) = expect(t.content, 0x30, "CertID hash algorithm")?;
        let (oid, _) = expect(alg.content, 0x06, "CertID hash OID")?;
        if oid.content != OID_SHA1 {
            return Err("CertID hashed with other than SHA-1".into());
        }
        let (n, rest) = expect(rest, 0x04, "issuerNameHash")?;
        let (k, rest) = expect(rest, 0x04, "issuerKeyHash")?;
        let (s, _) = expect(rest, 0x02, "serialNumber")?;
        Ok(CertId {
            name_hash: n.content.to_vec(),
            key_hash: k.content.to_vec(),
            serial: int_bytes(s.content),
        })
    }
}

/// An OCSPRequest (RFC 6960 §4.1.1) for one certificate, with a nonce extension.
pub fn request(id: &CertId, nonce: &[u8]) -> Vec<u8> {
    let req = der(0x30, &id.emit());
    let list = der(0x30, &req);
    let nonce_ext = der(
        0x30,
        &[der(0x06, OID_NONCE), der(0x04, &der(0x04, nonce))].concat(),
    );
    let exts = der(0xa2, &der(0x30, &nonce_ext));
    der(0x30, &der(0x30, &[list, exts].concat()))
}

/// A certificate's status in one SingleResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not revoked.
    Good,
    /// Revoked (at this time, seconds since 1970).
    Revoked(i64),
    /// The responder does not know the certificate.
    Unknown,
}

/// One SingleResponse.
#[derive(Debug, Clone)]
pub struct Single {
    /// Which certificate.
    pub id: CertId,
    /// Its status.
    pub status: Status,
    /// thisUpdate (seconds since 1970).
    pub this_update: i64,
    /// nextUpdate, if given.
    pub next_update: Option<i64>,
}

/// Who signed a response (RFC 6960 §4.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponderId {
    /// By name (the DER of the Name).
    Name(Vec<u8>),
    /// By the SHA-1 of its public key.
    KeyHash(Vec<u8>),
}

/// The parts of a successful BasicOCSPResponse the check needs.
#[derive(Debug, Clone)]
pub struct Response<'a> {
    /// tbsResponseData as signed (DER).
    pub tbs: &'a [u8],
    /// The signatureAlgorithm element (DER).
    pub sig_alg: &'a [u8],
    /// The signature bits.
    pub signature: &'a [u8],
    /// Certificates the responder sent (DER), e.g. a delegated responder's.
    pub certs: Vec<&'a [u8]>,
    /// Who signed it.
    pub responder: ResponderId,
    /// The responses.
    pub singles: Vec<Single>,
    /// The nonce the responder echoed, if any.
    pub nonce: Option<Vec<u8>>,
}

/// Parses an OCSPResponse. Err for anything but a `successful` basic response.
pub fn parse_response(b: &[u8]) -> Result<Response<'_>, String> {
    let (top, _) = expect(b, 0x30, "OCSPResponse")?;
    let (status, rest) = expect(top.content, 0x0a, "responseStatus")?;
    match status.content {
        [0] => {}
        [s] => {
            return Err(format!(
                "responder said {}",
                match s {
                    1 => "malformedRequest",
                    2 => "internalError",
                    3 => "tryLater",
                    5 => "sigRequired",
                    6 => "unauthorized",
                    _ => "an unknown status",
                }
            ))
        }
        _ => return Err("bad responseStatus".into()),
    }
    let (bytes, _) = expect(rest, 0xa0, "responseBytes")?;
    let (rb, _) = expect(bytes.content, 0x30, "ResponseBytes")?;
    let (oid, rest) = expect(rb.content, 0x06, "responseType")?;
    if oid.content != OID_BASIC {
        return Err("not a basic OCSP response".into());
    }
    let (octets, _) = expect(rest, 0x04, "response")?;
    let (basic, _) = expect(octets.content, 0x30, "BasicOCSPResponse")?;
    let (tbs, rest) = expect(basic.content, 0x30, "tbsResponseData")?;
    let (alg, rest) = expect(rest, 0x30, "signatureAlgorithm")?;
    let (sig, rest) = expect(rest, 0x03, "signature")?;
    let signature = match sig.content.split_first() {
        Some((0, bits)) => bits,
        _ => return Err("signature: unused bits".into()),
    };
    let mut certs = Vec::new();
    if !rest.is_empty() {
        let (wrapped, _) = expect(rest, 0xa0, "certs")?;
        let (seq, _) = expect(wrapped.content, 0x30, "certs")?;
        let mut c = seq.content;
        while !c.is_empty() {
            let (cert, more) = expect(c, 0x30, "certificate")?;
            certs.push(cert.raw);
            c = more;
        }
    }
    // ResponseData.
    let mut r = tbs.content;
    if r.first() == Some(&0xa0) {
        let (_, more) = tlv(r)?;
        r = more;
    }
    let (rid, r) = tlv(r).map_err(|e| format!("responderID: {e}"))?;
    let responder = match rid.tag {
        0xa1 => ResponderId::Name(
            expect(rid.content, 0x30, "responderID name")?
                .0
                .raw
                .to_vec(),
        ),
        0xa2 => ResponderId::KeyHash(
            expect(rid.content, 0x04, "responderID key")?
                .0
                .content
                .to_vec(),
        ),
        t => return Err(format!("responderID: tag {t:#04x}")),
    };
    let (_, r) = expect(r, 0x18, "producedAt")?;
    let (list, r) = expect(r, 0x30, "responses")?;
    let mut singles = Vec::new();
    let mut l = list.content;
    while !l.is_empty() {
        let (one, more) = expect(l, 0x30, "SingleResponse")?;
        l = more;
        let (id, s) = expect(one.content, 0x30, "certID")?;
        let id = CertId::parse(id)?;
        let (st, s) = tlv(s).map_err(|e| format!("certStatus: {e}"))?;
        let status = match st.tag {
            0x80 => Status::Good,
            0xa1 => Status::Revoked(time(expect(st.content, 0x18, "revocationTime")?.0.content)?),
            0x82 => Status::Unknown,
            t => return Err(format!("certStatus: tag {t:#04x}")),
        };
        let (this, s) = expect(s, 0x18, "thisUpdate")?;
        let (next_update, s) = if s.first() == Some(&0xa0) {
            let (n, rest) = tlv(s)?;
            (
                Some(time(expect(n.content, 0x18, "nextUpdate")?.0.content)?),
                rest,
            )
        } else {
            (None, s)
        };
        if s.first() == Some(&0xa1) && has_critical(tlv(s)?.0.content)? {
            return Err("a critical single extension we do not know".into());
        }
        singles.push(Single {
            id,
            status,
            this_update: time(this.content)?,
            next_update,
        });
    }
    let mut nonce = None;
    if r.first() == Some(&0xa1) {
        let (exts, _) = tlv(r)?;
        let (seq, _) = expect(exts.content, 0x30, "responseExtensions")?;
        let mut e = seq.content;
        while !e.is_empty() {
            let (ext, more) = expect(e, 0x30, "Extension")?;
            e = more;
            let (oid, v) = expect(ext.content, 0x06, "extnID")?;
            // critical BOOLEAN DEFAULT FALSE may come first; one we do not know is refused
            // (RFC 6960 §4.4).
            let (critical, v) = if v.first() == Some(&0x01) {
                let (b, rest) = tlv(v)?;
                (b.content.iter().any(|&x| x != 0), rest)
            } else {
                (false, v)
            };
            if critical && oid.content != OID_NONCE {
                return Err("a critical response extension we do not know".into());
            }
            let (octets, _) = expect(v, 0x04, "extnValue")?;
            if oid.content == OID_NONCE {
                // The value is an OCTET STRING holding the nonce (some responders send the
                // nonce bare).
                nonce = Some(match expect(octets.content, 0x04, "nonce") {
                    Ok((n, [])) => n.content.to_vec(),
                    _ => octets.content.to_vec(),
                });
            }
        }
    }
    Ok(Response {
        tbs: tbs.raw,
        sig_alg: alg.raw,
        signature,
        certs,
        responder,
        singles,
        nonce,
    })
}

/// Whether an [1] EXPLICIT Extensions holds a critical one.
fn has_critical(wrapped: &[u8]) -> Result<bool, String> {
    let (seq, _) = expect(wrapped, 0x30, "singleExtensions")?;
    let mut e = seq.content;
    while !e.is_empty() {
        let (ext, more) = expect(e, 0x30, "Extension")?;
        e = more;
        let (_, v) = expect(ext.content, 0x06, "extnID")?;
        if v.first() == Some(&0x01) && tlv(v)?.0.content.iter().any(|&x| x != 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A GeneralizedTime (`YYYYMMDDHHMMSS[.fff]Z`) as seconds since 1970.
pub fn time(b: &[u8]) -> Result<i64, String> {
    let s = std::str::from_utf8(b).map_err(|_| "time: not ASCII")?;
    let s = s.strip_suffix('Z').ok_or("time: not UTC")?;
    let whole = s.split('.').next().unwrap_or_default();
    if whole.len() != 14 || !whole.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("time: {s:.20}"));
    }
    let n = |r: std::ops::Range<usize>| whole[r].parse::<i64>().unwrap_or(0);
    let (y, mo, d, h, mi, se) = (n(0..4), n(4..6), n(6..8), n(8..10), n(10..12), n(12..14));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(format!("time: {s:.20}"));
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_times() {
        assert_eq!(time(b"19700101000000Z").unwrap(), 0);
        assert_eq!(time(b"20261204102226Z").unwrap(), 1_796_379_746);
        assert_eq!(time(b"20000229235959.5Z").unwrap(), 951_868_799);
        for bad in [
            &b"2026120410222Z"[..],
            b"20261204102226",
            b"20261304102226Z",
            b"2026x204102226Z",
            b"",
        ] {
            assert!(time(bad).is_err(), "{bad:?}");
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/pki/ocsp")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn openssl_responses_parse() {
        let good = fixture("resp-good.der");
        let r = parse_response(&good).unwrap();
        assert_eq!(r.singles.len(), 1);
        let s = &r.singles[0];
        assert_eq!(
            (s.status, s.id.serial.as_slice()),
            (Status::Good, &[0x10, 0x00][..])
        );
        assert!(s.next_update.unwrap() > s.this_update + 99 * 365 * 86_400);
        assert!(matches!(r.responder, ResponderId::Name(_)));
        assert_eq!(r.nonce, None);
        assert_eq!(
            r.certs.len(),
            1,
            "openssl includes the signer's certificate"
        );
        let revoked = fixture("resp-revoked.der");
        let r = parse_response(&revoked).unwrap();
        assert!(matches!(r.singles[0].status, Status::Revoked(t) if t <= r.singles[0].this_update));
        assert_eq!(r.singles[0].id.serial, [0x10, 0x01]);
        let nonce = fixture("resp-good-nonce.der");
        assert_eq!(
            parse_response(&nonce).unwrap().nonce.map(|n| n.len()),
            Some(16)
        );
        // Every cut of a response is an error, not a panic.
        for n in 0..good.len() {
            assert!(parse_response(&good[..n]).is_err(), "{n}");
        }
        // Our request parses back with our own reader into the same CertID.
        let id = CertId::new(b"name", b"key", &[0x00, 0x80]);
        let req = request(&id, &[7; 16]);
        let (top, rest) = tlv(&req).unwrap();
        assert!(rest.is_empty());
        let (tbs, _) = tlv(top.content).unwrap();
        let (list, _) = tlv(tbs.content).unwrap();
        let (one, _) = tlv(list.content).unwrap();
        let (cid, _) = tlv(one.content).unwrap();
        assert_eq!(CertId::parse(cid).unwrap(), id);
        assert_eq!(id.serial, [0x80]);
    }

    #[test]
    fn tlv_reader_refuses_what_it_cannot_read() {
        assert!(tlv(&[]).is_err());
        assert!(tlv(&[0x30]).is_err());
        assert!(tlv(&[0x30, 0x05, 1, 2]).is_err());
        assert!(tlv(&[0x30, 0x80]).is_err(), "indefinite length");
        assert!(tlv(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_err());
        assert!(tlv(&[0x1f, 0x01, 0x00]).is_err());
        let (t, rest) = tlv(&[0x04, 0x81, 0x01, 0xaa, 0xbb]).unwrap();
        assert_eq!((t.tag, t.content, rest), (0x04, &[0xaa][..], &[0xbb][..]));
    }
}
