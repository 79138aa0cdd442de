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
//!     integrity: none           # none, hmac-sha256, hmac-sha384, hmac-sha512
//!     enc_key: "0x00112233..."  # hex (salt last for AEADs), or enc_key_file: path
//!     auth_key: "0x..."         # hex, or auth_key_file: path
//!     local: 10.1.0.1           # tunnel: our outer address
//!     remote: 10.2.0.1          # tunnel: the peer's outer address
//!     udp_encap: { local_port: 4500, remote_port: 4500 }
//!     natt_oa: { remote: 10.0.0.5, local: 198.51.100.1 }  # inbound transport + udp_encap:
//!                               # original addresses (RFC 3948 §3.1.2); either may be left out
//!     esn: false
//!     replay_window: 64
//!     initial_seq: 0
//!     local_ts: [192.168.10.0/24]
//!     remote_ts: [192.168.20.0/24]
//! ```
//!
//! Unknown keys are errors, and every error names the file, line and column.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::crypto::{Backend, Cipher, Integrity};
use crate::net::IpPrefix;
use crate::sa::{
    DfMode, Direction, EcnMode, Endpoints, Lifetime, Mode, NatOa, Protocol, SaParams, UdpEncap,
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
    #[serde(default = "default_cipher")]
    cipher: Cipher,
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
    #[serde(default)]
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
        if self.name.is_empty() {
            format!("spi {:#x}", self.spi)
        } else {
            self.name.clone()
        }
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
fn default_cipher() -> Cipher {
    Cipher::Null
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
/// VRRP `advert_interval`): `30s`, `500ms`, `1h`, `8h`, `10m`, `2d` or a plain number of
/// seconds, up to [`MAX_DURATION`].
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

/// Parses SA YAML text; `path` is used for messages and to resolve key files.
pub fn parse_sa_yaml(text: &str, path: &Path) -> Result<Vec<SaParams>, ConfigError> {
    let file: SaFile = serde_yaml::from_str(text).map_err(|e| syntax_error(e, path))?;
    let base = path.parent().unwrap_or(Path::new("."));
    file.sas
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let name = if e.name.is_empty() {
                format!("spi {:#x}", e.spi)
            } else {
                e.name.clone()
            };
            e.into_params(base).map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                kind: "SA",
                index,
                name,
                message,
            })
        })
        .collect()
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
    pub(crate) fn into_params(self, base: &Path) -> Result<SaParams, String> {
        let enc_key = key(self.enc_key, self.enc_key_file, base, "enc_key")?;
        let auth_key = key(self.auth_key, self.auth_key_file, base, "auth_key")?;
        if enc_key.len() != self.cipher.key_len() {
            return Err(format!(
                "{:?} needs a {}-byte enc_key (salt included), got {}",
                self.cipher,
                self.cipher.key_len(),
                enc_key.len()
            ));
        }
        if auth_key.len() != self.integrity.key_len() {
            return Err(format!(
                "{:?} needs a {}-byte auth_key, got {}",
                self.integrity,
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
        let mut p = SaParams::new(self.spi, self.direction, self.cipher, self.integrity);
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
        let y = "sas:\n  - spi: 1\n    direction: out\n    mode: transport\n    cipher: aes-gcm-128\n    enc_key: \"0x0011\"\n";
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
                "sas:\n  - spi: 1\n    direction: {dir}\n    mode: {mode}\n    cipher: aes-gcm-128\n    enc_key: \"0x000102030405060708090a0b0c0d0e0f10111213\"\n{udp}{oa}"
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
        // Not without UDP encapsulation, not outbound; unknown keys are refused.
        let v = parse_sa_yaml(&entry("in", "transport", "", both), Path::new("x")).unwrap();
        assert!(InboundSa::new(&v[0]).is_err());
        let v = parse_sa_yaml(&entry("out", "transport", udp, both), Path::new("x")).unwrap();
        assert!(OutboundSa::new(&v[0]).is_err());
        let bad = "    natt_oa: { peer: 10.0.0.5 }\n";
        assert!(parse_sa_yaml(&entry("in", "transport", udp, bad), Path::new("x")).is_err());
    }
}
