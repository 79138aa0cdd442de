//! Classic libpcap capture files: a reader (both byte orders, micro- and nanosecond
//! timestamps) and a writer. Format: the pcap file format as documented by the tcpdump
//! project (draft-ietf-opsawg-pcap).

use std::io::{self, Read, Write};

/// Data-link types we know by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101): raw IPv4 or IPv6.
    Raw,
    /// LINKTYPE_LINUX_SLL (113).
    LinuxSll,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// Anything else.
    Other(u32),
}

impl LinkType {
    /// From the file header's value.
    pub fn from_u32(v: u32) -> Self {
        match v {
            1 => LinkType::Ethernet,
            101 => LinkType::Raw,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            o => LinkType::Other(o),
        }
    }
    /// The file header's value.
    pub fn to_u32(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::Other(o) => o,
        }
    }
}

/// Why a capture could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcapError {
    /// I/O failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Not a pcap file (pcapng is not read).
    #[error("not a pcap file (magic {0:#010x}); convert pcapng with `editcap -F pcap`")]
    BadMagic(u32),
    /// The file ends inside a header or record.
    #[error("file truncated inside a {0}")]
    Truncated(&'static str),
    /// A record claims more bytes than any capture may hold.
    #[error("record of {0} bytes exceeds the {1}-byte limit")]
    RecordTooLong(u32, u32),
}

/// A record's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Seconds.
    pub ts_sec: u32,
    /// Microseconds, or nanoseconds when [`Reader::nanosecond`].
    pub ts_frac: u32,
    /// Length on the wire.
    pub orig_len: u32,
    /// Bytes captured.
    pub incl_len: u32,
}

/// Largest record accepted whatever the file's snapshot length says.
const MAX_RECORD: u32 = 262_144;

/// Reads a capture.
#[derive(Debug)]
pub struct Reader<R: Read> {
    r: R,
    swapped: bool,
    nano: bool,
    link: LinkType,
    snaplen: u32,
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> Reader<R> {
    /// Reads the file header.
    pub fn new(mut r: R) -> Result<Self, PcapError> {
        let mut h = [0u8; 24];
        if read_full(&mut r, &mut h)? != 24 {
            return Err(PcapError::Truncated("file header"));
        }
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (swapped, nano) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            m => return Err(PcapError::BadMagic(m)),
        };
        let rd = |b: &[u8]| {
            let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if swapped {
                v.swap_bytes()
            } else {
                v
            }
        };
        Ok(Self {
            swapped,
            nano,
            snaplen: rd(&h[16..20]),
            link: LinkType::from_u32(rd(&h[20..24]) & 0x0fff_ffff),
            r,
        })
    }

    /// The data-link type.
    pub fn link_type(&self) -> LinkType {
        self.link
    }
    /// The snapshot length.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }
    /// True when timestamps are in nanoseconds.
    pub fn nanosecond(&self) -> bool {
        self.nano
    }

    /// Reads the next record into `buf` (replacing its contents); `None` at the end.
    pub fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<RecordHeader>, PcapError> {
        let mut h = [0u8; 16];
        match read_full(&mut self.r, &mut h)? {
            0 => return Ok(None),
            16 => {}
            _ => return Err(PcapError::Truncated("record header")),
        }
        let rd = |b: &[u8]| {
            let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if self.swapped {
                v.swap_bytes()
            } else {
                v
            }
        };
        let rec = RecordHeader {
            ts_sec: rd(&h[0..4]),
            ts_frac: rd(&h[4..8]),
            incl_len: rd(&h[8..12]),
            orig_len: rd(&h[12..16]),
        };
        // The file's snapshot length is not trusted for allocation (found by fuzzing: a
        // snaplen of 4 GiB made a record allocate that much).
        if rec.incl_len > MAX_RECORD {
            return Err(PcapError::RecordTooLong(rec.incl_len, MAX_RECORD));
        }
        buf.clear();
        buf.resize(rec.incl_len as usize, 0);
        if read_full(&mut self.r, buf)? != buf.len() {
            return Err(PcapError::Truncated("record"));
        }
        Ok(Some(rec))
    }
}

/// Writes a capture (little-endian; micro- or nanosecond timestamps).
#[derive(Debug)]
pub struct Writer<W: Write> {
    w: W,
}

impl<W: Write> Writer<W> {
    /// Writes a microsecond file header.
    pub fn new(w: W, link: LinkType, snaplen: u32) -> Result<Self, PcapError> {
        Self::with_precision(w, link, snaplen, false)
    }

    /// Writes a file header with nanosecond timestamps when `nano`.
    pub fn with_precision(
        mut w: W,
        link: LinkType,
        snaplen: u32,
        nano: bool,
    ) -> Result<Self, PcapError> {
        let magic: u32 = if nano { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&link.to_u32().to_le_bytes());
        w.write_all(&h)?;
        Ok(Self { w })
    }

    /// Appends a record.
    pub fn write_record(
        &mut self,
        ts_sec: u32,
        ts_frac: u32,
        data: &[u8],
    ) -> Result<(), PcapError> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ts_sec.to_le_bytes());
        h[4..8].copy_from_slice(&ts_frac.to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)?;
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> Result<W, PcapError> {
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture assembled byte by byte from the format description (little-endian,
    /// microseconds, Ethernet, snaplen 262144, as tcpdump writes by default) holding one
    /// 42-byte ARP request. Files written by scapy are read in tests/interop.
    const TCPDUMP: &[u8] = &[
        0xd4, 0xc3, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, // file header
        0x10, 0x2a, 0x5e, 0x65, 0x40, 0xe2, 0x01, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00,
        0x00, // record header: 42 bytes
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    #[test]
    fn reads_a_tcpdump_file() {
        let mut r = Reader::new(TCPDUMP).unwrap();
        assert_eq!(r.link_type(), LinkType::Ethernet);
        assert_eq!(r.snaplen(), 262_144);
        let mut b = Vec::new();
        let h = r.next_record(&mut b).unwrap().unwrap();
        assert_eq!(
            (h.ts_sec, h.ts_frac, h.incl_len),
            (0x655e_2a10, 123_456, 42)
        );
        assert_eq!(&b[12..14], &[0x08, 0x06]);
        assert!(r.next_record(&mut b).unwrap().is_none());
    }

    #[test]
    fn round_trip_and_big_endian_and_nano() {
        let mut w = Writer::with_precision(Vec::new(), LinkType::Raw, 65535, true).unwrap();
        w.write_record(1, 999_999_999, &[0x45, 1, 2]).unwrap();
        w.write_record(2, 0, &[]).unwrap();
        let bytes = w.into_inner().unwrap();
        let mut r = Reader::new(&bytes[..]).unwrap();
        assert!(r.nanosecond());
        let mut b = Vec::new();
        assert_eq!(r.next_record(&mut b).unwrap().unwrap().ts_frac, 999_999_999);
        assert_eq!(b, [0x45, 1, 2]);
        assert_eq!(r.next_record(&mut b).unwrap().unwrap().incl_len, 0);
        // The same file in big-endian byte order.
        let mut be = bytes.clone();
        for chunk in [
            0..4,
            8..12,
            12..16,
            16..20,
            20..24,
            24..28,
            28..32,
            32..36,
            36..40,
        ] {
            be[chunk].reverse();
        }
        be[4..6].reverse();
        be[6..8].reverse();
        let mut r = Reader::new(&be[..]).unwrap();
        assert_eq!(r.link_type(), LinkType::Raw);
        assert_eq!(r.next_record(&mut b).unwrap().unwrap().incl_len, 3);
    }

    #[test]
    fn errors_instead_of_huge_or_short_reads() {
        assert!(matches!(
            Reader::new(&TCPDUMP[..10]),
            Err(PcapError::Truncated(_))
        ));
        assert!(matches!(
            Reader::new(&[0u8; 24][..]),
            Err(PcapError::BadMagic(0))
        ));
        let mut r = Reader::new(&TCPDUMP[..50]).unwrap();
        assert!(matches!(
            r.next_record(&mut Vec::new()),
            Err(PcapError::Truncated("record"))
        ));
        let mut huge = TCPDUMP[..40].to_vec();
        huge[32..36].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let mut r = Reader::new(&huge[..]).unwrap();
        assert!(matches!(
            r.next_record(&mut Vec::new()),
            Err(PcapError::RecordTooLong(..))
        ));
    }
}
