//! Static SAs in YAML: the syntax shared by `fgpcap` and the gateway's manual keying.
//!
//! ```yaml
//! sas:
//!   - name: site-a-out
//!     spi: 0x1001
//!     direction: out            # out | in
//!     protocol: esp             # esp | ah
//!     mode: tunnel              # tunnel | transport
//!     cipher: aes-gcm-128       # null, aes-cbc-128/256, aes-gcm-128/256, chacha20-poly1305, aes-gmac-128/256
//!                               # (default null: AH SAs leave it out; ESP SAs name one)
//!     integrity: none           # none, hmac-sha256, hmac-sha384, hmac-sha512
//!     enc_key: "0x00112233..."  # hex (salt last for AEADs), or enc_key_file: path
//!     auth_key: "0x..."         # hex, or auth_key_file: path
//!     local: 10.1.0.1           # tunnel: our outer address
//!     remote: 10.2.0.1          # tunnel: the peer's outer address
//!     udp_encap: { local_port: 4500, remote_port: 4500 }
//!     natt_oa: { remote: 10.0.0.5, local: 198.51.100.1 }  # inbound transport + udp_encap:
//!                               # original addresses (RFC 3948 §3.1.2); either may be left out
//!     esn: false                # or yes/no
//!     replay_window: 64         # inbound: 0 (anti-replay off, logged as a warning; not with
//!                               # esn) or a power of two from 32 to 65536
//!     initial_seq: 0            # the last number used: the first packet has initial_seq + 1
//!     local_ts: [192.168.10.0/24]
//!     remote_ts: [192.168.20.0/24]
//!     lifetime: { soft_bytes: 0, hard_bytes: 0, soft_packets: 0, hard_packets: 0 }  # 0: none
//! ```
//!
//! Unknown keys are errors, and every error names the file, line and column. Each SA is
//! checked as the gateway would install it ([`build_sas`]), whichever program reads it: an SPI
//! of 256 or more (RFC 4303 §2.1), soft lifetimes below the hard ones, an `initial_seq` that
//! leaves a number to send, the algorithms and keys, and no two inbound SAs with one SPI and
//! local address.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::crypto::{Backend, Cipher, CryptoError, Integrity};
use crate::net::IpPrefix;
use crate::sa::{
    DfMode, Direction, EcnMode, Endpoints, InboundSa, Lifetime, Mode, NatOa, OutboundSa, Protocol,
    SaError, SaParams, UdpEncap,
};

/// A configuration error, with where it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// What was expected.
        message: String,
    },
    /// A value is well-formed YAML but not acceptable.
    #[error("{path}: {kind} #{index}{}: {message}", in_parens(.name))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the entry is: "SA", "interface", "route", ...
        kind: &'static str,
        /// 0-based index in its list.
        index: usize,
        /// The entry's name (an SA's name or SPI), if it has one.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// " (name)", or nothing for an entry without a name.
fn in_parens(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name})")
    }
}

/// The top level of an SA file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaFile {
    /// The SAs.
    pub sas: Vec<SaEntry>,
}

/// One SA as written in YAML.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaEntry {
    #[serde(default)]
    name: String,
    spi: u32,
    direction: Direction,
    #[serde(default = "default_protocol")]
    protocol: Protocol,
    #[serde(default = "default_mode")]
    mode: Mode,
    /// `None`: not given, and so [`Cipher::Null`] (what AH SAs, which have no cipher, write).
    #[serde(default, deserialize_with = "given")]
    cipher: Option<Cipher>,
    #[serde(default = "default_integrity")]
    integrity: Integrity,
    #[serde(default)]
    enc_key: Option<String>,
    #[serde(default)]
    enc_key_file: Option<PathBuf>,
    #[serde(default)]
    auth_key: Option<String>,
    #[serde(default)]
    auth_key_file: Option<PathBuf>,
    #[serde(default)]
    local: Option<IpAddr>,
    #[serde(default)]
    remote: Option<IpAddr>,
    #[serde(default)]
    udp_encap: Option<UdpEncap>,
    #[serde(default)]
    natt_oa: Option<NatOa>,
    #[serde(default, deserialize_with = "yes_no")]
    esn: bool,
    #[serde(default = "default_window")]
    replay_window: u32,
    #[serde(default)]
    initial_seq: u64,
    #[serde(default)]
    local_ts: Vec<IpPrefix>,
    #[serde(default)]
    remote_ts: Vec<IpPrefix>,
    #[serde(default)]
    lifetime: Lifetime,
    #[serde(default)]
    df: DfMode,
    #[serde(default)]
    dscp: Option<u8>,
    #[serde(default)]
    ecn: EcnMode,
    #[serde(default)]
    tfc_pad: u16,
    #[serde(default)]
    backend: Backend,
}

impl SaEntry {
    /// The name, or the SPI when it has none.
    pub fn label(&self) -> String {
        sa_label(&self.name, self.spi)
    }
}

/// What errors and policies call an SA: its name, or its SPI when it has none.
pub fn sa_label(name: &str, spi: u32) -> String {
    if name.is_empty() {
        format!("spi {spi:#x}")
    } else {
        name.to_owned()
    }
}

impl fmt::Debug for SaEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaEntry")
            .field("name", &self.name)
            .field("spi", &self.spi)
            .finish_non_exhaustive()
    }
}

fn default_protocol() -> Protocol {
    Protocol::Esp
}
fn default_mode() -> Mode {
    Mode::Tunnel
}

/// A key that is there: its value, even YAML's `null` (`cipher: null` is the NULL cipher).
fn given<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A boolean written `true`/`false` or, as strongSwan and `ferrogate-ike`'s YAML have it,
/// `yes`/`no` (YAML 1.2 reads those as strings): for `#[serde(deserialize_with = "yes_no")]`.
/// Anything else is an error that names the key, the value, the line and the column.
pub fn yes_no<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("yes, no, true or false")
        }
        fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<bool, E> {
            Ok(b)
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<bool, E> {
            match s {
                "yes" | "true" => Ok(true),
                "no" | "false" => Ok(false),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
            }
        }
    }
    d.deserialize_any(V)
}

/// Reads a scalar that is either a number (`num`) or a word (`word`), each of which says
/// whether it is acceptable; otherwise the error names the key, the value, its line and column,
/// and what is expected (`expecting`). (An untagged enum would say only that the data "did not
/// match any variant", at the line of the enclosing map.)
pub(crate) fn number_or_word<'de, D, T>(
    d: D,
    expecting: &'static str,
    num: impl FnOnce(u64) -> Option<T>,
    word: impl FnOnce(&str) -> Option<T>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V<N, W, T> {
        expecting: &'static str,
        num: N,
        word: W,
        out: std::marker::PhantomData<T>,
    }
    impl<N, W, T> serde::de::Visitor<'_> for V<N, W, T>
    where
        N: FnOnce(u64) -> Option<T>,
        W: FnOnce(&str) -> Option<T>,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<T, E> {
            let expecting = self.expecting;
            (self.num)(n)
                .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(n), &expecting))
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<T, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::invalid_value(
                    serde::de::Unexpected::Signed(n),
                    &self.expecting,
                )),
            }
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
            let expecting = self.expecting;
            (self.word)(s)
                .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(s), &expecting))
        }
    }
    d.deserialize_any(V {
        expecting,
        num,
        word,
        out: std::marker::PhantomData,
    })
}
fn default_integrity() -> Integrity {
    Integrity::None
}
fn default_window() -> u32 {
    64
}

/// The longest duration the YAML files take (ten years): anything longer is a mistake, and
/// far longer ones would overflow the clock arithmetic of timers.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Parses a duration of the YAML files (`ferrogate-ike`'s lifetimes and DPD, the gateway's
/// link delays, router advertisement intervals and VRRP timers): `30s`, `500ms`, `1h`, `8h`,
/// `10m`, `2d` or a plain number of seconds, up to [`MAX_DURATION`]. A caller may ask for more:
/// VRRP's `advert_interval` refuses a plain number (`1` is too easily meant as centiseconds,
/// the unit on the wire), and says its unit is missing.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
}

/// Parses hex key material: optional `0x`, optional `:` or space separators.
pub fn parse_hex_key(s: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let digits: Zeroizing<Vec<u8>> = Zeroizing::new(
        s.bytes()
            .filter(|b| !matches!(b, b':' | b' ' | b'\n' | b'\t'))
            .collect(),
    );
    if !digits.len().is_multiple_of(2) {
        return Err("hex key has an odd number of digits".into());
    }
    let mut out = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for pair in digits.chunks(2) {
        let hi = (pair[0] as char).to_digit(16);
        let lo = (pair[1] as char).to_digit(16);
        match (hi, lo) {
            (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
            _ => return Err("key is not hexadecimal".into()),
        }
    }
    Ok(out)
}

/// A YAML error with the line and column it names.
pub(crate) fn syntax_error(e: serde_yaml::Error, path: &Path) -> ConfigError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    ConfigError::Syntax {
        path: path.to_owned(),
        line,
        column,
        message: e.to_string(),
    }
}

/// Reads and validates an SA file. Key files are resolved relative to the SA file.
pub fn load_sa_file(path: &Path) -> Result<Vec<SaParams>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_sa_yaml(&text, path)
}

/// Parses SA YAML text; `path` is used for messages and to resolve key files. The SAs are
/// checked as the gateway checks its `sas:` ([`build_sas`]).
pub fn parse_sa_yaml(text: &str, path: &Path) -> Result<Vec<SaParams>, ConfigError> {
    let file: SaFile = serde_yaml::from_str(text).map_err(|e| syntax_error(e, path))?;
    build_sas(file.sas, path, false)
}

/// Validates the static SAs of a file (an SA file, or a gateway file's `sas:`) one by one and
/// together: each must build as the data plane would install it, with nothing left for the
/// packets to find out; no two inbound SAs have the same SPI and local address; with
/// `unique_names` (the gateway, whose policies name their SA) no two have the same
/// [`sa_label`]. The first error names the SA by its place and name. What is allowed but
/// weakens the SA is logged as a warning ([`sa_warnings`]). Key files resolve relative to
/// `path`'s folder.
pub fn build_sas(
    entries: Vec<SaEntry>,
    path: &Path,
    unique_names: bool,
) -> Result<Vec<SaParams>, ConfigError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut sas: Vec<SaParams> = Vec::with_capacity(entries.len());
    for (index, e) in entries.into_iter().enumerate() {
        let label = e.label();
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            kind: "SA",
            index,
            name: label.clone(),
            message,
        };
        let p = e.check(base).map_err(invalid)?;
        if unique_names && sas.iter().any(|q| sa_label(&q.name, q.spi) == label) {
            return Err(invalid(
                "another SA has this name (policies name their SA)".into(),
            ));
        }
        let key = |q: &SaParams| (q.spi, q.tunnel.map(|t| t.local));
        if p.direction == Direction::In
            && sas
                .iter()
                .any(|q| q.direction == Direction::In && key(q) == key(&p))
        {
            return Err(invalid(format!(
                "another inbound SA has SPI {:#x} for the same local address",
                p.spi
            )));
        }
        sas.push(p);
    }
    for w in sa_warnings(&sas) {
        tracing::warn!("{}: {w}", path.display());
    }
    Ok(sas)
}

/// What the SAs (as [`build_sas`] returned them, in the file's order) allow that weakens them,
/// one line each, naming the SA as errors do: an inbound SA with `replay_window: 0` takes
/// replayed packets (RFC 4303 §3.4.3 lets a receiver turn anti-replay off, as strongSwan's
/// `replay_window = 0` does, but it should be a decision, and a visible one).
pub fn sa_warnings(sas: &[SaParams]) -> Vec<String> {
    let mut w = Vec::new();
    for (i, p) in sas.iter().enumerate() {
        let label = sa_label(&p.name, p.spi);
        if p.direction == Direction::In && p.replay_window == 0 {
            w.push(format!(
                "SA #{i} ({label}): replay_window 0 turns anti-replay off: replayed packets are \
                 accepted (RFC 4303 §3.4.3)"
            ));
        }
        if p.spi < 256 {
            w.push(format!(
                "SA #{i} ({label}): SPI {:#x} is one of those IANA reserves (1-255, RFC 4303 \
                 §2.1)",
                p.spi
            ));
        }
    }
    w
}

/// The YAML name of an algorithm (`aes-gcm-128`), for messages.
fn yaml_name<T: serde::Serialize + fmt::Debug>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{t:?}"),
    }
}

fn key(
    inline: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("give {what} or {what}_file, not both")),
        (Some(k), None) => parse_hex_key(&k).map_err(|m| format!("{what}: {m}")),
        (None, Some(f)) => {
            let p = base.join(f);
            let text =
                Zeroizing::new(read_key_file(&p).map_err(|e| format!("{}: {e}", p.display()))?);
            parse_hex_key(&text).map_err(|m| format!("{}: {m}", p.display()))
        }
        (None, None) => Ok(Zeroizing::new(Vec::new())),
    }
}

/// Reads a key file, refusing anything larger than a key could be (a path like /dev/zero must
/// not hang the loader).
fn read_key_file(p: &Path) -> std::io::Result<String> {
    use std::io::Read;
    const MAX: u64 = 4096;
    let mut s = String::new();
    std::fs::File::open(p)?
        .take(MAX + 1)
        .read_to_string(&mut s)?;
    if s.len() as u64 > MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "key file is larger than 4 KiB",
        ));
    }
    Ok(s)
}

impl SaEntry {
    /// The SA as the data plane installs it, or why it cannot be (one line, without the SA's
    /// name: the caller adds it).
    fn check(self, base: &Path) -> Result<SaParams, String> {
        // RFC 4303 §2.1: 0 is for local use and never on the wire; 1-255 are reserved by
        // IANA, but peers use them (DPDK ipsec-secgw's sample configurations, captures to
        // decrypt): warned about ([`sa_warnings`]), not refused.
        if self.spi == 0 {
            return Err(
                "SPI 0 is reserved for local use and never goes on the wire (RFC 4303 §2.1)".into(),
            );
        }
        let lt = self.lifetime;
        for (what, soft, hard) in [
            ("bytes", lt.soft_bytes, lt.hard_bytes),
            ("packets", lt.soft_packets, lt.hard_packets),
        ] {
            if soft != 0 && hard != 0 && soft >= hard {
                return Err(format!(
                    "lifetime: soft_{what} {soft} is not below hard_{what} {hard} (the soft \
                     limit asks for a new SA before the hard one stops this one; 0 is no limit)"
                ));
            }
        }
        // Outbound, the counter starts at initial_seq and the first packet has the next number,
        // which without ESN must fit the 32 bits of the header (RFC 4303 §3.3.3); inbound, the
        // window has seen everything up to initial_seq. Either way the SA would refuse every
        // packet.
        let last = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        if self.initial_seq >= last {
            return Err(format!(
                "initial_seq {} leaves no sequence number to use: the first packet has \
                 initial_seq + 1, at most {last:#x}{}",
                self.initial_seq,
                if self.esn {
                    ""
                } else {
                    " without esn (esn: true gives 64-bit sequence numbers)"
                }
            ));
        }
        // The window is what tells which 2^32 subspace a packet's (untransmitted) high bits
        // are in (RFC 4303 Appendix A2.2): without one, a packet that arrives after a later one
        // is taken for the next subspace and fails its ICV (replay.rs reconstructs with a
        // window of 1).
        if self.direction == Direction::In && self.replay_window == 0 && self.esn {
            return Err(
                "replay_window 0 (anti-replay off) with esn: true: ESN needs the anti-replay \
                 window to infer each packet's high 32 bits (RFC 4303 Appendix A2); without \
                 it every reordered packet fails its integrity check. Give a window, or \
                 esn: false"
                    .into(),
            );
        }
        let defaulted = self.protocol == Protocol::Esp && self.cipher.is_none();
        let hint = |m: String| {
            if defaulted {
                format!("{m} (no `cipher` given: it defaults to null)")
            } else {
                m
            }
        };
        let p = self.into_params(base).map_err(hint)?;
        let built = match p.direction {
            Direction::Out => OutboundSa::new(&p).map(drop),
            Direction::In => InboundSa::new(&p).map(drop),
        };
        built.map_err(|e| match e {
            SaError::Crypto {
                source: CryptoError::Unsupported,
                ..
            } => hint(format!(
                "{e}: cipher {} with integrity {}",
                yaml_name(&p.cipher),
                yaml_name(&p.integrity)
            )),
            e => e.to_string(),
        })?;
        Ok(p)
    }

    fn into_params(self, base: &Path) -> Result<SaParams, String> {
        let cipher = self.cipher.unwrap_or(Cipher::Null);
        let enc_key = key(self.enc_key, self.enc_key_file, base, "enc_key")?;
        let auth_key = key(self.auth_key, self.auth_key_file, base, "auth_key")?;
        if enc_key.len() != cipher.key_len() {
            return Err(format!(
                "cipher {} needs a {}-byte enc_key (salt included), got {}",
                yaml_name(&cipher),
                cipher.key_len(),
                enc_key.len()
            ));
        }
        if auth_key.len() != self.integrity.key_len() {
            return Err(format!(
                "integrity {} needs a {}-byte auth_key, got {}",
                yaml_name(&self.integrity),
                self.integrity.key_len(),
                auth_key.len()
            ));
        }
        let tunnel = match (self.mode, self.local, self.remote) {
            (Mode::Tunnel, Some(local), Some(remote)) => Some(Endpoints { local, remote }),
            (Mode::Tunnel, _, _) => {
                return Err("tunnel mode needs `local` and `remote` outer addresses".into())
            }
            (Mode::Transport, None, None) => None,
            (Mode::Transport, _, _) => {
                return Err(
                    "`local`/`remote` are outer tunnel addresses; transport mode has none".into(),
                )
            }
        };
        let mut p = SaParams::new(self.spi, self.direction, cipher, self.integrity);
        p.name = self.name;
        p.protocol = self.protocol;
        p.mode = self.mode;
        p.enc_key = enc_key;
        p.auth_key = auth_key;
        p.tunnel = tunnel;
        p.udp_encap = self.udp_encap;
        p.natt_oa = self.natt_oa;
        p.esn = self.esn;
        p.replay_window = self.replay_window;
        p.initial_seq = self.initial_seq;
        p.local_ts = self.local_ts;
        p.remote_ts = self.remote_ts;
        p.lifetime = self.lifetime;
        p.df = self.df;
        p.dscp = self.dscp;
        p.ecn = self.ecn;
        p.tfc_pad = self.tfc_pad;
        p.backend = self.backend;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys() {
        assert_eq!(&*parse_hex_key("0x0aFF").unwrap(), &[0x0a, 0xff]);
        assert_eq!(&*parse_hex_key("0a:ff").unwrap(), &[0x0a, 0xff]);
        assert!(parse_hex_key("0x0af").is_err());
        assert!(parse_hex_key("zz").is_err());
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let y = "sas:\n  - spi: 1\n    direction: out\n    colour: blue\n";
        let e = parse_sa_yaml(y, Path::new("x.yaml")).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("x.yaml:4:"), "{m}");
        assert!(m.contains("colour"), "{m}");
    }

    #[test]
    fn key_length_is_checked() {
        let y = "sas:\n  - spi: 0x1001\n    direction: out\n    mode: transport\n    cipher: aes-gcm-128\n    enc_key: \"0x0011\"\n";
        let e = parse_sa_yaml(y, Path::new("x.yaml")).unwrap_err();
        assert!(e.to_string().contains("20-byte enc_key"), "{e}");
    }

    #[test]
    fn full_entry_parses() {
        let y = r#"
sas:
  - name: a
    spi: 0x1001
    direction: in
    cipher: aes-gcm-256
    enc_key: "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
    local: 10.0.0.1
    remote: 10.0.0.2
    udp_encap: { local_port: 4500, remote_port: 4501 }
    esn: true
    replay_window: 1024
    local_ts: [192.168.10.0/24]
    remote_ts: [192.168.20.0/24]
"#;
        let v = parse_sa_yaml(y, Path::new("x.yaml")).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].spi, 0x1001);
        assert_eq!(v[0].enc_key.len(), 36);
        assert!(v[0].esn);
        assert_eq!(v[0].udp_encap.unwrap().remote_port, 4501);
        assert_eq!(v[0].mode, Mode::Tunnel);
    }

    #[test]
    fn natt_oa_parses_and_belongs_to_inbound_transport_natt() {
        use crate::sa::{InboundSa, OutboundSa};
        let entry = |dir: &str, mode: &str, udp: &str, oa: &str| {
            format!(
                "sas:\n  - spi: 0x1001\n    direction: {dir}\n    mode: {mode}\n    cipher: aes-gcm-128\n    enc_key: \"0x000102030405060708090a0b0c0d0e0f10111213\"\n{udp}{oa}"
            )
        };
        let udp = "    udp_encap: { local_port: 4500, remote_port: 4500 }\n";
        let both = "    natt_oa: { remote: 10.0.0.5, local: 203.0.113.1 }\n";
        let v = parse_sa_yaml(&entry("in", "transport", udp, both), Path::new("x")).unwrap();
        let oa = v[0].natt_oa.unwrap();
        assert_eq!(oa.remote, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(oa.local, Some("203.0.113.1".parse().unwrap()));
        assert!(InboundSa::new(&v[0]).is_ok());
        let remote_only = "    natt_oa: { remote: 10.0.0.5 }\n";
        let v = parse_sa_yaml(&entry("in", "transport", udp, remote_only), Path::new("x")).unwrap();
        assert_eq!(v[0].natt_oa.unwrap().local, None);
        assert!(InboundSa::new(&v[0]).is_ok());
        // Not without UDP encapsulation, not outbound (the file is refused, as the SA would
        // be); unknown keys are refused.
        for (dir, udp) in [("in", ""), ("out", udp)] {
            let e = parse_sa_yaml(&entry(dir, "transport", udp, both), Path::new("x"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("natt_oa belongs to inbound transport-mode SAs"),
                "{e}"
            );
        }
        let v = parse_sa_yaml(&entry("out", "transport", udp, ""), Path::new("x")).unwrap();
        assert!(OutboundSa::new(&v[0]).is_ok());
        let bad = "    natt_oa: { peer: 10.0.0.5 }\n";
        assert!(parse_sa_yaml(&entry("in", "transport", udp, bad), Path::new("x")).is_err());
    }

    /// An SA file of one SA: these lines after `spi`, `direction: in`, tunnel mode with an
    /// AES-GCM-128 key.
    fn one_sa(spi: &str, dir: &str, more: &str) -> String {
        format!(
            "sas:\n  - name: s\n    spi: {spi}\n    direction: {dir}\n    cipher: aes-gcm-128\n    enc_key: \"0x000102030405060708090a0b0c0d0e0f10111213\"\n    local: 10.0.0.1\n    remote: 10.0.0.2\n{more}"
        )
    }

    fn sa_err(y: &str) -> String {
        parse_sa_yaml(y, Path::new("x.yaml"))
            .unwrap_err()
            .to_string()
    }

    /// RFC 4303 §2.1: SPIs 1-255 are reserved by IANA and 0 never goes on the wire.
    #[test]
    fn reserved_spis_are_refused() {
        let e = sa_err(&one_sa("0", "in", ""));
        assert!(
            e.starts_with("x.yaml: SA #0 (s): SPI 0 is reserved for local use"),
            "{e}"
        );
        // 1-255 (IANA's) load with a warning: peers use them.
        for spi in ["1", "255", "0xff"] {
            let sas = parse_sa_yaml(&one_sa(spi, "in", ""), Path::new("x")).unwrap();
            let w = sa_warnings(&sas);
            assert!(
                w.iter().any(|w| w.contains("IANA reserves")),
                "{spi}: {w:?}"
            );
        }
        let sas = parse_sa_yaml(&one_sa("256", "in", ""), Path::new("x")).unwrap();
        assert!(sa_warnings(&sas).iter().all(|w| !w.contains("IANA")));
        parse_sa_yaml(&one_sa("0xffffffff", "out", ""), Path::new("x")).unwrap();
    }

    /// A soft lifetime at or above its hard one would never ask for a rekey in time.
    #[test]
    fn soft_lifetimes_are_below_hard_ones() {
        for (lt, says) in [
            (
                "{ soft_bytes: 1000, hard_bytes: 10 }",
                "soft_bytes 1000 is not below hard_bytes 10",
            ),
            (
                "{ soft_bytes: 10, hard_bytes: 10 }",
                "soft_bytes 10 is not below hard_bytes 10",
            ),
            (
                "{ soft_packets: 5, hard_packets: 4 }",
                "soft_packets 5 is not below hard_packets 4",
            ),
        ] {
            for dir in ["in", "out"] {
                let e = sa_err(&one_sa("0x1001", dir, &format!("    lifetime: {lt}\n")));
                assert!(e.starts_with("x.yaml: SA #0 (s): lifetime: "), "{e}");
                assert!(e.contains(says), "{lt}: {e}");
            }
        }
        // 0 is no limit: a soft limit alone, or a hard one alone, is fine.
        for lt in [
            "{ soft_bytes: 1000 }",
            "{ hard_bytes: 10 }",
            "{ soft_bytes: 9, hard_bytes: 10, soft_packets: 1, hard_packets: 2 }",
        ] {
            parse_sa_yaml(
                &one_sa("0x1001", "out", &format!("    lifetime: {lt}\n")),
                Path::new("x"),
            )
            .unwrap();
        }
    }

    /// Without ESN the first packet's number, initial_seq + 1, must fit 32 bits: else every
    /// packet is dropped (outbound: sequence exhausted; inbound: all already seen).
    #[test]
    fn initial_seq_leaves_a_number_to_use() {
        for dir in ["in", "out"] {
            for (seq, esn) in [
                ("4294967296", "false"),
                ("4294967295", "false"),
                ("18446744073709551615", "true"),
            ] {
                let e = sa_err(&one_sa(
                    "0x1001",
                    dir,
                    &format!("    initial_seq: {seq}\n    esn: {esn}\n"),
                ));
                assert!(
                    e.contains(&format!("initial_seq {seq} leaves no sequence number")),
                    "{dir} {seq}: {e}"
                );
            }
            for (seq, esn) in [("4294967294", "false"), ("4294967296", "true")] {
                parse_sa_yaml(
                    &one_sa(
                        "0x1001",
                        dir,
                        &format!("    initial_seq: {seq}\n    esn: {esn}\n"),
                    ),
                    Path::new("x"),
                )
                .unwrap();
            }
        }
        let e = sa_err(&one_sa("0x1001", "out", "    initial_seq: 4294967296\n"));
        assert!(e.contains("without esn"), "{e}");
    }

    /// Collects the messages of the `tracing` events raised on this thread.
    #[derive(Default, Clone)]
    struct Logged(std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

    impl tracing::Subscriber for Logged {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, e: &tracing::Event<'_>) {
            struct Msg(String);
            impl tracing::field::Visit for Msg {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn fmt::Debug) {
                    if f.name() == "message" {
                        self.0 = format!("{v:?}");
                    }
                }
            }
            let mut m = Msg(String::new());
            e.record(&mut m);
            self.0.lock().unwrap().push((*e.metadata().level(), m.0));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// `replay_window: 0` turns anti-replay off (RFC 4303 §3.4.3 allows it): accepted, with a
    /// warning that names the file and the SA; refused with ESN, whose high bits the window
    /// infers; outbound SAs have no window, and are neither warned about nor refused.
    #[test]
    fn replay_window_zero_is_warned_about_and_refused_with_esn() {
        let load = |dir: &str, more: &str| {
            let logged = Logged::default();
            let r = tracing::subscriber::with_default(logged.clone(), || {
                parse_sa_yaml(&one_sa("0x1001", dir, more), Path::new("x.yaml"))
            });
            let warnings: Vec<String> = logged
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(l, _)| *l == tracing::Level::WARN)
                .map(|(_, m)| m.clone())
                .collect();
            (r, warnings)
        };
        let (r, w) = load("in", "    replay_window: 0\n");
        assert_eq!(r.unwrap()[0].replay_window, 0);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("x.yaml: SA #0 (s): replay_window 0 turns anti-replay off"),
            "{w:?}"
        );
        let (r, w) = load("in", "    replay_window: 64\n");
        assert!(r.is_ok() && w.is_empty(), "{w:?}");
        let (r, _) = load("in", "    replay_window: 0\n    esn: true\n");
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with("x.yaml: SA #0 (s): replay_window 0 (anti-replay off) with esn: true"),
            "{e}"
        );
        let (r, w) = load("out", "    replay_window: 0\n    esn: true\n");
        assert!(r.is_ok() && w.is_empty(), "{w:?}");
        assert_eq!(
            sa_warnings(&parse_sa_yaml(&one_sa("0x1001", "in", "    replay_window: 0\n"), Path::new("x")).unwrap()),
            ["SA #0 (s): replay_window 0 turns anti-replay off: replayed packets are accepted (RFC 4303 §3.4.3)"]
        );
    }

    /// fgpcap's SA files are checked as the gateway checks its `sas:`: what the SA would refuse
    /// when built, and a second inbound SA with the same SPI and local address (which would
    /// replace the first in the SAD). Unnamed SAs of both directions may share an SPI.
    #[test]
    fn sa_files_are_checked_as_the_gateway_checks_them() {
        let e = sa_err(&one_sa("0x1001", "in", "    replay_window: 100\n"));
        assert!(
            e.starts_with("x.yaml: SA #0 (s): ") && e.contains("replay window 100"),
            "{e}"
        );
        let two = format!(
            "{}{}",
            one_sa("0x1001", "in", ""),
            one_sa("0x1001", "in", "")
                .replace("sas:\n", "")
                .replace("name: s", "name: t")
        );
        let e = sa_err(&two);
        assert!(
            e.contains("SA #1 (t): another inbound SA has SPI 0x1001"),
            "{e}"
        );
        // Another local address, or another direction: fine.
        parse_sa_yaml(
            &two.replacen("local: 10.0.0.1", "local: 10.0.0.3", 1),
            Path::new("x"),
        )
        .unwrap();
        parse_sa_yaml(
            &two.replacen("direction: in", "direction: out", 1),
            Path::new("x"),
        )
        .unwrap();
        let unnamed = two
            .replace("name: s", "name: \"\"")
            .replace("name: t", "name: \"\"");
        parse_sa_yaml(
            &unnamed.replacen("direction: in", "direction: out", 1),
            Path::new("x"),
        )
        .unwrap();
    }

    /// `cipher` defaults to null (AH SAs leave it out): an ESP SA without it says so, and the
    /// pair it found.
    #[test]
    fn an_omitted_cipher_is_named_in_errors() {
        let esp = |more: &str| {
            format!("sas:\n  - name: e\n    spi: 0x2001\n    direction: out\n    mode: transport\n{more}")
        };
        let e = sa_err(&esp(""));
        assert!(
            e.contains("unsupported algorithm combination: cipher null with integrity none (no `cipher` given: it defaults to null)"),
            "{e}"
        );
        let e = sa_err(&esp(
            "    enc_key: \"0x000102030405060708090a0b0c0d0e0f10111213\"\n",
        ));
        assert!(
            e.contains("cipher null needs a 0-byte enc_key") && e.contains("no `cipher` given"),
            "{e}"
        );
        // Written out, the same pair is not said to be a default.
        let e = sa_err(&esp("    cipher: null\n"));
        assert!(
            e.contains("cipher null with integrity none") && !e.contains("not given"),
            "{e}"
        );
        let e = sa_err(&esp("    cipher: aes-gcm-128\n    integrity: hmac-sha256\n    enc_key: \"0x000102030405060708090a0b0c0d0e0f10111213\"\n    auth_key: \"0x000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f\"\n"));
        assert!(
            e.contains("cipher aes-gcm-128 with integrity hmac-sha256") && !e.contains("not given"),
            "{e}"
        );
        // ESP-NULL with an ICV, and AH without a cipher, load.
        let hmac = "    integrity: hmac-sha256\n    auth_key: \"0x000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f\"\n";
        let v = parse_sa_yaml(&esp(&format!("    cipher: null\n{hmac}")), Path::new("x")).unwrap();
        assert_eq!(v[0].cipher, Cipher::Null);
        parse_sa_yaml(&esp(&format!("    protocol: ah\n{hmac}")), Path::new("x")).unwrap();
    }

    /// `esn` is yes/no/true/false, as the IKE YAML's booleans are; anything else is named.
    #[test]
    fn esn_takes_yes_and_no() {
        for (v, esn) in [
            ("yes", true),
            ("true", true),
            ("no", false),
            ("\"false\"", false),
        ] {
            let p = parse_sa_yaml(
                &one_sa("0x1001", "in", &format!("    esn: {v}\n")),
                Path::new("x"),
            )
            .unwrap();
            assert_eq!(p[0].esn, esn, "{v}");
        }
        let e = sa_err(&one_sa("0x1001", "in", "    esn: maybe\n"));
        assert!(
            e.starts_with("x.yaml:9:")
                && e.contains("esn")
                && e.contains(
                    "sas[0].esn: invalid value: string \"maybe\", expected yes, no, true or false"
                ),
            "{e}"
        );
    }
}
