//! Wire views over byte buffers, one file per header (filled in by the wire-format work).

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
