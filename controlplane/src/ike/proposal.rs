//! Algorithms, proposals in strongSwan notation (`aes256-sha256-modp2048`,
//! `aes256gcm16-prfsha256-curve25519`, `aes256-sha256`), and proposal selection
//! (RFC 7296 §2.7, §3.3).

use super::wire::{self, Proposal, Transform};

/// Transform types.
pub mod ttype {
    /// Encryption algorithm.
    pub const ENCR: u8 = 1;
    /// Pseudo-random function.
    pub const PRF: u8 = 2;
    /// Integrity algorithm.
    pub const INTEG: u8 = 3;
    /// Diffie-Hellman group.
    pub const DH: u8 = 4;
    /// Extended sequence numbers.
    pub const ESN: u8 = 5;
}

/// Encryption algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Encr {
    /// AES-CBC-128.
    AesCbc128,
    /// AES-CBC-256.
    AesCbc256,
    /// AES-GCM-128 with a 16-byte ICV.
    AesGcm128,
    /// AES-GCM-256 with a 16-byte ICV.
    AesGcm256,
    /// ChaCha20-Poly1305.
    Chacha20Poly1305,
}

impl Encr {
    /// Transform ID and key-length attribute.
    pub fn transform(self) -> Transform {
        let (id, kl) = match self {
            Encr::AesCbc128 => (12, Some(128)),
            Encr::AesCbc256 => (12, Some(256)),
            Encr::AesGcm128 => (20, Some(128)),
            Encr::AesGcm256 => (20, Some(256)),
            Encr::Chacha20Poly1305 => (28, None),
        };
        Transform {
            ttype: ttype::ENCR,
            id,
            key_len: kl,
        }
    }
    fn from_transform(t: &Transform) -> Option<Encr> {
        Some(match (t.id, t.key_len) {
            (12, Some(128)) => Encr::AesCbc128,
            (12, Some(256)) => Encr::AesCbc256,
            (20, Some(128)) => Encr::AesGcm128,
            (20, Some(256)) => Encr::AesGcm256,
            (28, None) => Encr::Chacha20Poly1305,
            _ => return None,
        })
    }
    /// Combined mode?
    pub fn is_aead(self) -> bool {
        !matches!(self, Encr::AesCbc128 | Encr::AesCbc256)
    }
    /// Key material length (with the 4-byte salt for AEADs, RFC 5282 §7.1 / RFC 7634 §4).
    pub fn key_material_len(self) -> usize {
        match self {
            Encr::AesCbc128 => 16,
            Encr::AesCbc256 => 32,
            Encr::AesGcm128 => 20,
            Encr::AesGcm256 | Encr::Chacha20Poly1305 => 36,
        }
    }
    /// Explicit IV length.
    pub fn iv_len(self) -> usize {
        if self.is_aead() {
            8
        } else {
            16
        }
    }
    /// Block length of the SK payload's plaintext: 16 for CBC; AEADs are stream-like and
    /// need no alignment (RFC 5282 §3: strongSwan sends unaligned GCM payloads).
    pub fn block_len(self) -> usize {
        if self.is_aead() {
            1
        } else {
            16
        }
    }
    /// The data-plane cipher for ESP.
    pub fn esp_cipher(self) -> dataplane::crypto::Cipher {
        use dataplane::crypto::Cipher;
        match self {
            Encr::AesCbc128 => Cipher::AesCbc128,
            Encr::AesCbc256 => Cipher::AesCbc256,
            Encr::AesGcm128 => Cipher::AesGcm128,
            Encr::AesGcm256 => Cipher::AesGcm256,
            Encr::Chacha20Poly1305 => Cipher::Chacha20Poly1305,
        }
    }
    /// strongSwan's name.
    pub fn name(self) -> &'static str {
        match self {
            Encr::AesCbc128 => "aes128",
            Encr::AesCbc256 => "aes256",
            Encr::AesGcm128 => "aes128gcm16",
            Encr::AesGcm256 => "aes256gcm16",
            Encr::Chacha20Poly1305 => "chacha20poly1305",
        }
    }
}

/// Pseudo-random functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Prf {
    /// PRF_HMAC_SHA2_256.
    HmacSha256,
    /// PRF_HMAC_SHA2_384.
    HmacSha384,
    /// PRF_HMAC_SHA2_512.
    HmacSha512,
}

impl Prf {
    /// Transform ID.
    pub fn id(self) -> u16 {
        match self {
            Prf::HmacSha256 => 5,
            Prf::HmacSha384 => 6,
            Prf::HmacSha512 => 7,
        }
    }
    fn from_id(id: u16) -> Option<Prf> {
        Some(match id {
            5 => Prf::HmacSha256,
            6 => Prf::HmacSha384,
            7 => Prf::HmacSha512,
            _ => return None,
        })
    }
    /// Key (and output) length.
    pub fn key_len(self) -> usize {
        match self {
            Prf::HmacSha256 => 32,
            Prf::HmacSha384 => 48,
            Prf::HmacSha512 => 64,
        }
    }
    /// strongSwan's name.
    pub fn name(self) -> &'static str {
        match self {
            Prf::HmacSha256 => "prfsha256",
            Prf::HmacSha384 => "prfsha384",
            Prf::HmacSha512 => "prfsha512",
        }
    }
}

/// Integrity algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Integ {
    /// AUTH_HMAC_SHA2_256_128.
    HmacSha256,
    /// AUTH_HMAC_SHA2_384_192.
    HmacSha384,
    /// AUTH_HMAC_SHA2_512_256.
    HmacSha512,
}

impl Integ {
    /// Transform ID.
    pub fn id(self) -> u16 {
        match self {
            Integ::HmacSha256 => 12,
            Integ::HmacSha384 => 13,
            Integ::HmacSha512 => 14,
        }
    }
    fn from_id(id: u16) -> Option<Integ> {
        Some(match id {
            12 => Integ::HmacSha256,
            13 => Integ::HmacSha384,
            14 => Integ::HmacSha512,
            _ => return None,
        })
    }
    /// Key length.
    pub fn key_len(self) -> usize {
        match self {
            Integ::HmacSha256 => 32,
            Integ::HmacSha384 => 48,
            Integ::HmacSha512 => 64,
        }
    }
    /// Truncated ICV length.
    pub fn icv_len(self) -> usize {
        self.key_len() / 2
    }
    /// The truncated MAC of `data`.
    pub fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let p = match self {
            Integ::HmacSha256 => Prf::HmacSha256,
            Integ::HmacSha384 => Prf::HmacSha384,
            Integ::HmacSha512 => Prf::HmacSha512,
        };
        let mut m = super::crypto::prf(p, key, &[data]);
        m.truncate(self.icv_len());
        m
    }
    /// The data-plane integrity algorithm.
    pub fn esp_integrity(self) -> dataplane::crypto::Integrity {
        use dataplane::crypto::Integrity;
        match self {
            Integ::HmacSha256 => Integrity::HmacSha256,
            Integ::HmacSha384 => Integrity::HmacSha384,
            Integ::HmacSha512 => Integrity::HmacSha512,
        }
    }
    /// strongSwan's name.
    pub fn name(self) -> &'static str {
        match self {
            Integ::HmacSha256 => "sha256",
            Integ::HmacSha384 => "sha384",
            Integ::HmacSha512 => "sha512",
        }
    }
}

/// Diffie-Hellman groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Group {
    /// MODP 1024 (group 2): accepted for compatibility, weak.
    Modp1024,
    /// MODP 2048 (group 14).
    Modp2048,
    /// MODP 3072 (group 15).
    Modp3072,
    /// MODP 4096 (group 16).
    Modp4096,
    /// NIST P-256 (group 19).
    Ecp256,
    /// NIST P-384 (group 20).
    Ecp384,
    /// Curve25519 (group 31).
    Curve25519,
}

impl Group {
    /// Group number.
    pub fn id(self) -> u16 {
        match self {
            Group::Modp1024 => 2,
            Group::Modp2048 => 14,
            Group::Modp3072 => 15,
            Group::Modp4096 => 16,
            Group::Ecp256 => 19,
            Group::Ecp384 => 20,
            Group::Curve25519 => 31,
        }
    }
    /// The group with this number.
    pub fn from_id(id: u16) -> Option<Group> {
        Some(match id {
            2 => Group::Modp1024,
            14 => Group::Modp2048,
            15 => Group::Modp3072,
            16 => Group::Modp4096,
            19 => Group::Ecp256,
            20 => Group::Ecp384,
            31 => Group::Curve25519,
            _ => return None,
        })
    }
    /// Length of the public value in the KE payload.
    pub fn public_len(self) -> usize {
        match self {
            Group::Modp1024 => 128,
            Group::Modp2048 => 256,
            Group::Modp3072 => 384,
            Group::Modp4096 => 512,
            Group::Ecp256 => 64,
            Group::Ecp384 => 96,
            Group::Curve25519 => 32,
        }
    }
    /// True for groups too weak for new deployments.
    pub fn is_weak(self) -> bool {
        self == Group::Modp1024
    }
    /// strongSwan's name.
    pub fn name(self) -> &'static str {
        match self {
            Group::Modp1024 => "modp1024",
            Group::Modp2048 => "modp2048",
            Group::Modp3072 => "modp3072",
            Group::Modp4096 => "modp4096",
            Group::Ecp256 => "ecp256",
            Group::Ecp384 => "ecp384",
            Group::Curve25519 => "curve25519",
        }
    }
}

/// One proposal as configured: algorithm lists, any combination acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlgSet {
    /// Encryption algorithms.
    pub encr: Vec<Encr>,
    /// PRFs (IKE only).
    pub prf: Vec<Prf>,
    /// Integrity algorithms (empty for AEAD-only proposals).
    pub integ: Vec<Integ>,
    /// DH groups (IKE: required; ESP: PFS groups, empty = no PFS).
    pub dh: Vec<Group>,
    /// ESN choices for ESP (`[false]` by default).
    pub esn: Vec<bool>,
}

/// A proposal string that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proposal `{proposal}`: {message}")]
pub struct ProposalError {
    /// The proposal string.
    pub proposal: String,
    /// What is wrong.
    pub message: String,
}

impl AlgSet {
    /// Parses strongSwan notation. `ike` selects IKE rules (PRF and DH required; the PRF
    /// defaults to the integrity algorithm's hash like strongSwan does).
    pub fn parse(s: &str, ike: bool) -> Result<AlgSet, ProposalError> {
        let err = |m: String| ProposalError {
            proposal: s.to_string(),
            message: m,
        };
        let mut a = AlgSet::default();
        for tok in s.trim().split('-') {
            match tok {
                "aes128" | "aes128cbc" => a.encr.push(Encr::AesCbc128),
                "aes256" | "aes256cbc" => a.encr.push(Encr::AesCbc256),
                "aes128gcm16" | "aes128gcm128" => a.encr.push(Encr::AesGcm128),
                "aes256gcm16" | "aes256gcm128" => a.encr.push(Encr::AesGcm256),
                "chacha20poly1305" => a.encr.push(Encr::Chacha20Poly1305),
                "sha256" | "sha2_256" => a.integ.push(Integ::HmacSha256),
                "sha384" | "sha2_384" => a.integ.push(Integ::HmacSha384),
                "sha512" | "sha2_512" => a.integ.push(Integ::HmacSha512),
                "prfsha256" => a.prf.push(Prf::HmacSha256),
                "prfsha384" => a.prf.push(Prf::HmacSha384),
                "prfsha512" => a.prf.push(Prf::HmacSha512),
                "modp1024" => a.dh.push(Group::Modp1024),
                "modp2048" => a.dh.push(Group::Modp2048),
                "modp3072" => a.dh.push(Group::Modp3072),
                "modp4096" => a.dh.push(Group::Modp4096),
                "ecp256" => a.dh.push(Group::Ecp256),
                "ecp384" => a.dh.push(Group::Ecp384),
                "curve25519" | "x25519" => a.dh.push(Group::Curve25519),
                "esn" => a.esn.push(true),
                "noesn" => a.esn.push(false),
                "" => return Err(err("empty algorithm name".into())),
                other => {
                    return Err(err(format!(
                        "unknown algorithm `{other}` (known: aes128, aes256, aes128gcm16, aes256gcm16, \
                         chacha20poly1305, sha256, sha384, sha512, prfsha256/384/512, modp1024/2048/3072/4096, \
                         ecp256, ecp384, curve25519, esn, noesn)"
                    )))
                }
            }
        }
        if a.encr.is_empty() {
            return Err(err("no encryption algorithm".into()));
        }
        let aead = a.encr.iter().any(|e| e.is_aead());
        if aead && a.encr.iter().any(|e| !e.is_aead()) {
            return Err(err(
                "AEAD and non-AEAD ciphers cannot share a proposal".into()
            ));
        }
        if aead && !a.integ.is_empty() && !ike {
            return Err(err("an AEAD cipher takes no integrity algorithm".into()));
        }
        if !aead && a.integ.is_empty() {
            return Err(err("a CBC cipher needs an integrity algorithm".into()));
        }
        if ike {
            if a.prf.is_empty() {
                // strongSwan derives the PRF from the integrity algorithms.
                a.prf = a
                    .integ
                    .iter()
                    .map(|i| match i {
                        Integ::HmacSha256 => Prf::HmacSha256,
                        Integ::HmacSha384 => Prf::HmacSha384,
                        Integ::HmacSha512 => Prf::HmacSha512,
                    })
                    .collect();
            }
            if a.prf.is_empty() {
                return Err(err(
                    "an AEAD IKE proposal needs a PRF (e.g. prfsha256)".into()
                ));
            }
            if aead {
                a.integ.clear();
            }
            if a.dh.is_empty() {
                return Err(err("an IKE proposal needs a DH group".into()));
            }
            if !a.esn.is_empty() {
                return Err(err("esn applies to ESP proposals only".into()));
            }
        } else {
            if !a.prf.is_empty() {
                return Err(err("a PRF applies to IKE proposals only".into()));
            }
            if a.esn.is_empty() {
                a.esn.push(false);
            }
        }
        Ok(a)
    }

    /// The proposal substructure for this set.
    pub fn to_proposal(&self, num: u8, protocol: u8, spi: Vec<u8>) -> Proposal {
        let mut t = Vec::new();
        t.extend(self.encr.iter().map(|e| e.transform()));
        t.extend(self.prf.iter().map(|p| Transform {
            ttype: ttype::PRF,
            id: p.id(),
            key_len: None,
        }));
        t.extend(self.integ.iter().map(|i| Transform {
            ttype: ttype::INTEG,
            id: i.id(),
            key_len: None,
        }));
        t.extend(self.dh.iter().map(|g| Transform {
            ttype: ttype::DH,
            id: g.id(),
            key_len: None,
        }));
        if protocol != wire::proto::IKE {
            t.extend(self.esn.iter().map(|&e| Transform {
                ttype: ttype::ESN,
                id: u16::from(e),
                key_len: None,
            }));
        }
        Proposal {
            num,
            protocol,
            spi,
            transforms: t,
        }
    }

    /// strongSwan-style name of a chosen single-algorithm set.
    pub fn name(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        parts.extend(self.encr.iter().map(|e| e.name()));
        parts.extend(self.integ.iter().map(|i| i.name()));
        if self.integ.is_empty() {
            parts.extend(self.prf.iter().map(|p| p.name()));
        }
        parts.extend(self.dh.iter().map(|g| g.name()));
        if self.esn.first() == Some(&true) {
            parts.push("esn");
        }
        parts.join("-")
    }
}

/// The result of negotiation: one algorithm of each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chosen {
    /// Proposal number that was accepted.
    pub num: u8,
    /// Encryption.
    pub encr: Encr,
    /// PRF (IKE only).
    pub prf: Option<Prf>,
    /// Integrity (None for AEADs).
    pub integ: Option<Integ>,
    /// DH group (IKE; ESP with PFS).
    pub dh: Option<Group>,
    /// ESN (ESP).
    pub esn: bool,
}

impl Chosen {
    /// As a single-algorithm set (for emitting the responder's SA payload and for names).
    pub fn as_set(&self) -> AlgSet {
        AlgSet {
            encr: vec![self.encr],
            prf: self.prf.into_iter().collect(),
            integ: self.integ.into_iter().collect(),
            dh: self.dh.into_iter().collect(),
            esn: vec![self.esn],
        }
    }
}

/// Chooses the first of the peer's proposals (their preference order, RFC 7296 §2.7) that our
/// configuration accepts. `protocol` is IKE or ESP. Unknown transforms are skipped.
pub fn select(ours: &[AlgSet], theirs: &[Proposal], protocol: u8) -> Option<Chosen> {
    for p in theirs {
        if p.protocol != protocol {
            continue;
        }
        for mine in ours {
            if let Some(c) = match_one(mine, p, protocol) {
                return Some(c);
            }
        }
    }
    None
}

fn match_one(mine: &AlgSet, p: &Proposal, protocol: u8) -> Option<Chosen> {
    // A transform type we do not know (RFC 9370's additional key exchanges, 6-12, say) makes
    // the whole proposal unacceptable (RFC 7296 §3.3.6), even as NONE: its sender expects
    // them understood. Other proposals still count.
    if p.transforms
        .iter()
        .any(|t| !(ttype::ENCR..=ttype::ESN).contains(&t.ttype))
    {
        return None;
    }
    let of = |tt: u8| p.transforms.iter().filter(move |t| t.ttype == tt);
    let encr = of(ttype::ENCR)
        .filter_map(Encr::from_transform)
        .find(|e| mine.encr.contains(e))?;
    let has_integ = of(ttype::INTEG).next().is_some();
    let integ = if encr.is_aead() {
        // An AEAD proposal may list NONE (0) as integrity; anything else is invalid.
        if of(ttype::INTEG).any(|t| t.id != 0) {
            return None;
        }
        None
    } else {
        if !has_integ {
            return None;
        }
        Some(
            of(ttype::INTEG)
                .filter_map(|t| Integ::from_id(t.id))
                .find(|i| mine.integ.contains(i))?,
        )
    };
    let prf = if protocol == wire::proto::IKE {
        Some(
            of(ttype::PRF)
                .filter_map(|t| Prf::from_id(t.id))
                .find(|x| mine.prf.contains(x))?,
        )
    } else {
        None
    };
    let peer_dh: Vec<u16> = of(ttype::DH).map(|t| t.id).filter(|&id| id != 0).collect();
    let dh = if mine.dh.is_empty() {
        // No PFS wanted: acceptable if the peer also offers none (or offers NONE).
        if !peer_dh.is_empty() && !of(ttype::DH).any(|t| t.id == 0) {
            return None;
        }
        None
    } else {
        Some(
            peer_dh
                .iter()
                .filter_map(|&id| Group::from_id(id))
                .find(|g| mine.dh.contains(g))?,
        )
    };
    let esn = if protocol == wire::proto::IKE {
        false
    } else {
        let peer_esn: Vec<bool> = of(ttype::ESN).map(|t| t.id == 1).collect();
        let peer_esn = if peer_esn.is_empty() {
            vec![false]
        } else {
            peer_esn
        };
        *peer_esn.iter().find(|e| mine.esn.contains(e))?
    };
    Some(Chosen {
        num: p.num,
        encr,
        prf,
        integ,
        dh,
        esn,
    })
}

/// Checks that a responder's single-transform answer is one of the sets we offered.
pub fn check_answer(ours: &[AlgSet], answer: &[Proposal], protocol: u8) -> Option<Chosen> {
    if answer.len() != 1 {
        return None;
    }
    let p = &answer[0];
    // Each type must appear at most once in an answer.
    for tt in [ttype::ENCR, ttype::PRF, ttype::INTEG, ttype::DH, ttype::ESN] {
        if p.transforms.iter().filter(|t| t.ttype == tt).count() > 1 {
            return None;
        }
    }
    select(ours, answer, protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_scenario() {
        let ike = AlgSet::parse("aes256-sha256-modp1024", true).unwrap();
        assert_eq!(ike.encr, vec![Encr::AesCbc256]);
        assert_eq!(ike.prf, vec![Prf::HmacSha256]);
        assert_eq!(ike.integ, vec![Integ::HmacSha256]);
        assert_eq!(ike.dh, vec![Group::Modp1024]);
        let esp = AlgSet::parse("aes256-sha256", false).unwrap();
        assert_eq!(esp.dh, vec![]);
        assert_eq!(esp.esn, vec![false]);
        let gcm = AlgSet::parse("aes256gcm16-prfsha256-curve25519", true).unwrap();
        assert!(gcm.integ.is_empty());
        assert!(AlgSet::parse("aes256gcm16-curve25519", true).is_err());
        assert!(AlgSet::parse("aes256-modp2048", true).is_err());
        assert!(AlgSet::parse("aes256-sha256", true).is_err());
        assert!(AlgSet::parse("des-sha1", false)
            .unwrap_err()
            .message
            .contains("unknown"));
        assert!(AlgSet::parse("aes256gcm16-sha256", false).is_err());
    }

    #[test]
    fn selects_in_peer_order_and_round_trips() {
        let ours = vec![
            AlgSet::parse("aes256-sha256-modp1024", true).unwrap(),
            AlgSet::parse("aes128gcm16-prfsha256-curve25519", true).unwrap(),
        ];
        let theirs = vec![
            AlgSet::parse("aes128gcm16-prfsha384-ecp256", true)
                .unwrap()
                .to_proposal(1, 1, vec![]),
            AlgSet::parse("aes128gcm16-prfsha256-ecp256-curve25519", true)
                .unwrap()
                .to_proposal(2, 1, vec![]),
            AlgSet::parse("aes256-sha256-modp1024", true)
                .unwrap()
                .to_proposal(3, 1, vec![]),
        ];
        let c = select(&ours, &theirs, wire::proto::IKE).unwrap();
        assert_eq!(c.num, 2);
        assert_eq!(c.encr, Encr::AesGcm128);
        assert_eq!(c.dh, Some(Group::Curve25519));
        assert_eq!(c.integ, None);
        let answer = vec![c.as_set().to_proposal(c.num, 1, vec![])];
        assert_eq!(check_answer(&ours, &answer, wire::proto::IKE), Some(c));
        // An answer with two encryption transforms is not an answer.
        assert_eq!(check_answer(&ours, &theirs[1..2], wire::proto::IKE), None);
    }

    /// A proposal with a transform type we do not know (an RFC 9370 additional key exchange,
    /// type 6) is unacceptable (RFC 7296 §3.3.6); the next one, without it, is chosen.
    #[test]
    fn proposals_with_unknown_transform_types_are_refused() {
        let ours = vec![AlgSet::parse("aes256-sha256-modp2048", true).unwrap()];
        let mut addke = ours[0].to_proposal(1, 1, vec![]);
        addke.transforms.push(wire::Transform {
            ttype: 6,
            id: 35,
            key_len: None,
        });
        let plain = ours[0].to_proposal(2, 1, vec![]);
        assert_eq!(select(&ours, &[addke.clone()], wire::proto::IKE), None);
        let c = select(&ours, &[addke, plain], wire::proto::IKE).unwrap();
        assert_eq!(c.num, 2);
    }

    #[test]
    fn esp_pfs_and_esn_rules() {
        let no_pfs = vec![AlgSet::parse("aes256-sha256", false).unwrap()];
        let pfs = AlgSet::parse("aes256-sha256-modp2048", false)
            .unwrap()
            .to_proposal(1, 3, vec![1, 2, 3, 4]);
        assert_eq!(
            select(&no_pfs, std::slice::from_ref(&pfs), wire::proto::ESP),
            None
        );
        let ours_pfs = vec![AlgSet::parse("aes256-sha256-modp2048", false).unwrap()];
        assert_eq!(
            select(&ours_pfs, &[pfs], wire::proto::ESP).unwrap().dh,
            Some(Group::Modp2048)
        );
        let esn = AlgSet::parse("aes256gcm16-esn", false)
            .unwrap()
            .to_proposal(1, 3, vec![0; 4]);
        assert_eq!(
            select(
                &[AlgSet::parse("aes256gcm16", false).unwrap()],
                std::slice::from_ref(&esn),
                3
            ),
            None
        );
        assert!(
            select(
                &[AlgSet::parse("aes256gcm16-esn-noesn", false).unwrap()],
                &[esn],
                3
            )
            .unwrap()
            .esn
        );
    }
}
