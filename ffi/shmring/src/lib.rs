//! Shared-memory single-producer/single-consumer rings between the control-plane process
//! (`ferrogate-ike`) and the data-plane process (`ferrogate`).
//!
//! This crate holds the channel's `unsafe` code (mmap, raw pointers, atomics placed in shared
//! memory) behind a small safe API: [`Channel`] maps the file, [`Producer`] and [`Consumer`]
//! are the two ends of one ring.
//!
//! # The file
//!
//! One regular file (e.g. `/dev/shm/ferrogate-<name>`), mode 0600, owned by the user of both
//! processes. All integers are native-endian (both ends run on the same machine).
//!
//! ```text
//! offset                      size  field
//! ------                      ----  -----
//! 0                              8  magic "FGSHMRNG"
//! 8                              4  layout version (u32) = 1
//! 12                             4  ring count (u32)
//! 16                             4  slot size in bytes (u32), a multiple of 8, >= 8
//! 20                             4  slots per ring (u32), a power of two
//! 24                             4  creator PID (u32)
//! 28                             4  retired flag (atomic u32): 1 once the creator has replaced
//!                                   or removed this file; a peer still mapping it should reopen
//! 32                             8  generation (u64), new each time the creator (re)creates
//! 40                             8  total file length (u64)
//! 48                            16  reserved, zero
//! 64 = ring 0 ------------------------------------------------------------------
//!   +0                           8  head (atomic u64): messages consumed so far, written by
//!                                   the consumer only; rest of this cache line unused
//!   +64                          8  tail (atomic u64): messages published so far, written by
//!                                   the producer only; rest of this cache line unused
//!   +128                            slot 0, slot 1, ... slot (slots - 1), each `slot size`
//!                                   bytes:  [len: u32][payload: len bytes][unused]
//!   (ring stride = 128 + slots * slot_size, rounded up to 64)
//! 64 + stride = ring 1 ...
//! 64 + rings * stride = end of file
//! ```
//!
//! Message number `n` of a ring lives in slot `n % slots`; the ring holds `tail - head`
//! messages, `0 <= tail - head <= slots`. The producer writes the slot, then stores `tail`
//! with `Release`; the consumer loads `tail` with `Acquire`, reads the slot, zeroes it (key
//! material must not linger in shared memory), then stores `head` with `Release`; the
//! producer loads `head` with `Acquire` before reusing a slot.
//!
//! # Trust
//!
//! The peer process may be buggy. Values read from the mapping are never trusted: each end
//! keeps its own counter in process memory, checks the peer's counter against it, and checks
//! every length against the slot size. Inconsistencies come back as [`Corruption`] (and are
//! counted, see [`Channel::corruptions`]), never as a panic or out-of-bounds access. Two
//! things a hostile peer with write access to the file can still do and this crate cannot
//! prevent: shrink the file (accesses past the new end raise `SIGBUS`), and change payload
//! bytes while the consumer's callback is reading them (the callback must parse the slice once
//! and not rely on it being stable).
//!
//! # Restarts
//!
//! [`Channel::create`] builds the new file under a temporary name and renames it over the old
//! one, so a peer still mapping the old file never faults; it then sets the old file's retired
//! flag. The peer notices with [`Channel::is_retired`], reopens, and sees the new
//! [`Channel::generation`].

#![allow(unsafe_code)] // this crate is one of the places unsafe code lives (see above)
#![deny(missing_docs)]

use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The 8 magic bytes at the start of the file.
pub const MAGIC: [u8; 8] = *b"FGSHMRNG";
/// The layout version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Length of the file header; ring 0 starts here.
pub const HEADER_LEN: usize = 64;
/// Offset of the `head` counter inside a ring.
pub const RING_HEAD_OFFSET: usize = 0;
/// Offset of the `tail` counter inside a ring.
pub const RING_TAIL_OFFSET: usize = 64;
/// Offset of slot 0 inside a ring.
pub const RING_SLOTS_OFFSET: usize = 128;
/// Bytes at the start of each slot that hold the payload length (u32).
pub const SLOT_LEN_PREFIX: usize = 4;

/// Largest accepted ring count.
pub const MAX_RINGS: u32 = 1024;
/// Largest accepted slot size in bytes.
pub const MAX_SLOT_SIZE: u32 = 1 << 20;
/// Largest accepted slot count per ring.
pub const MAX_SLOTS: u32 = 1 << 20;
/// Largest accepted file size in bytes (16 GiB).
pub const MAX_FILE_LEN: u64 = 1 << 34;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_RINGS: usize = 12;
const OFF_SLOT_SIZE: usize = 16;
const OFF_SLOTS: usize = 20;
const OFF_PID: usize = 24;
const OFF_RETIRED: usize = 28;
const OFF_GENERATION: usize = 32;
const OFF_TOTAL_LEN: usize = 40;

/// Shape of a channel: how many rings, and how many slots of what size each ring has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Number of rings (1..=[`MAX_RINGS`]).
    pub rings: u32,
    /// Bytes per slot, including the 4-byte length prefix: a multiple of 8 in
    /// 8..=[`MAX_SLOT_SIZE`]. The largest message is `slot_size - 4` bytes.
    pub slot_size: u32,
    /// Slots per ring: a power of two in 1..=[`MAX_SLOTS`].
    pub slots: u32,
}

impl Layout {
    /// Checks the layout's limits and returns the file length it needs.
    pub fn file_len(&self) -> Result<u64, Error> {
        if self.rings == 0 || self.rings > MAX_RINGS {
            return Err(Error::BadLayout("ring count must be in 1..=1024"));
        }
        if self.slot_size < 8 || self.slot_size > MAX_SLOT_SIZE || self.slot_size % 8 != 0 {
            return Err(Error::BadLayout(
                "slot size must be a multiple of 8 in 8..=1 MiB",
            ));
        }
        if !self.slots.is_power_of_two() || self.slots > MAX_SLOTS {
            return Err(Error::BadLayout(
                "slot count must be a power of two in 1..=2^20",
            ));
        }
        // All factors are bounded above (2^10 * (2^7 + 2^40)), so u64 cannot overflow.
        let total = HEADER_LEN as u64 + u64::from(self.rings) * self.ring_stride();
        if total > MAX_FILE_LEN {
            return Err(Error::BadLayout("file would be larger than 16 GiB"));
        }
        Ok(total)
    }

    /// Largest message a slot takes.
    pub fn max_message(&self) -> usize {
        self.slot_size as usize - SLOT_LEN_PREFIX
    }

    /// Bytes from one ring's start to the next one's.
    pub fn ring_stride(&self) -> u64 {
        let raw = RING_SLOTS_OFFSET as u64 + u64::from(self.slots) * u64::from(self.slot_size);
        raw.div_ceil(64) * 64
    }

    /// File offset of ring `ring`'s start (its `head` counter).
    pub fn ring_offset(&self, ring: u32) -> u64 {
        HEADER_LEN as u64 + u64::from(ring) * self.ring_stride()
    }

    /// File offset of slot `index` (taken modulo the slot count) of ring `ring`.
    pub fn slot_offset(&self, ring: u32, index: u64) -> u64 {
        let idx = index & (u64::from(self.slots) - 1);
        self.ring_offset(ring) + RING_SLOTS_OFFSET as u64 + idx * u64::from(self.slot_size)
    }
}

/// Which end of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The writing end.
    Producer,
    /// The reading end.
    Consumer,
}

/// Something in the shared mapping that the protocol rules out: the peer is buggy (or the
/// file was tampered with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The counters say the ring holds a negative number of messages or more than it has
    /// slots. The ring stays unusable until the channel is recreated.
    Counters {
        /// Ring index.
        ring: u32,
        /// The consumer's counter as seen (or kept) by this end.
        head: u64,
        /// The producer's counter as seen (or kept) by this end.
        tail: u64,
    },
    /// A slot's length prefix is larger than the slot. The message was dropped (its slot
    /// zeroed and released), so the ring goes on with the next one.
    Length {
        /// Ring index.
        ring: u32,
        /// Message number whose slot held the bad length.
        seq: u64,
        /// The length found.
        len: u32,
        /// The largest length the slot allows.
        max: u32,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Counters { ring, head, tail } => write!(
                f,
                "ring {ring}: inconsistent counters head={head} tail={tail}"
            ),
            Corruption::Length {
                ring,
                seq,
                len,
                max,
            } => write!(
                f,
                "ring {ring}: message {seq} has length {len} > slot capacity {max} (dropped)"
            ),
        }
    }
}

impl std::error::Error for Corruption {}

/// Errors from creating or opening a channel, or taking one end of a ring.
#[derive(Debug)]
pub enum Error {
    /// An operating-system call failed.
    Io(io::Error),
    /// The path names something other than a regular file.
    NotRegularFile,
    /// The file belongs to another user.
    NotOwned {
        /// The file's owner.
        owner: u32,
        /// Our effective uid.
        uid: u32,
    },
    /// The file grants permissions to group or other (it must be 0600 or stricter).
    InsecureMode {
        /// The file's permission bits.
        mode: u32,
    },
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// The file has a layout version this crate does not know.
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
        /// Version this crate supports.
        supported: u32,
    },
    /// The file is shorter than its header says it should be.
    Truncated {
        /// Length the header calls for (or the header's own length).
        expected: u64,
        /// The file's length.
        actual: u64,
    },
    /// The file is longer than its header says, or the header's length field disagrees.
    SizeMismatch {
        /// Length the header calls for.
        expected: u64,
        /// The file's length (or the header's length field).
        actual: u64,
    },
    /// The layout (given, or read from the header) breaks a limit.
    BadLayout(&'static str),
    /// No ring with this index.
    NoSuchRing {
        /// Index asked for.
        ring: u32,
        /// Rings in the channel.
        rings: u32,
    },
    /// This process already holds that end of that ring through this channel.
    RingBusy {
        /// Ring index.
        ring: u32,
        /// Which end.
        role: Role,
    },
    /// The ring's shared state is inconsistent.
    Corrupt(Corruption),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "shared-memory channel: {e}"),
            Error::NotRegularFile => write!(f, "shared-memory channel: not a regular file"),
            Error::NotOwned { owner, uid } => write!(
                f,
                "shared-memory channel: file owned by uid {owner}, not by us (uid {uid})"
            ),
            Error::InsecureMode { mode } => write!(
                f,
                "shared-memory channel: file mode {mode:04o} grants group/other access (need 0600)"
            ),
            Error::BadMagic => write!(f, "shared-memory channel: bad magic (not a shmring file)"),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "shared-memory channel: layout version {found}, this build supports {supported}"
            ),
            Error::Truncated { expected, actual } => write!(
                f,
                "shared-memory channel: file truncated ({actual} bytes, need {expected})"
            ),
            Error::SizeMismatch { expected, actual } => write!(
                f,
                "shared-memory channel: size mismatch (header says {expected}, found {actual})"
            ),
            Error::BadLayout(why) => write!(f, "shared-memory channel: bad layout: {why}"),
            Error::NoSuchRing { ring, rings } => write!(
                f,
                "shared-memory channel: ring {ring} out of range (channel has {rings})"
            ),
            Error::RingBusy { ring, role } => write!(
                f,
                "shared-memory channel: ring {ring} {role:?} already taken in this process"
            ),
            Error::Corrupt(c) => write!(f, "shared-memory channel: {c}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Corrupt(c) => Some(c),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// Why [`Producer::push`] did not take a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Every slot holds an unread message; try again later.
    Full,
    /// The message does not fit in a slot.
    TooBig {
        /// The message's length.
        len: usize,
        /// The largest message a slot takes.
        max: usize,
    },
    /// The ring's counters are inconsistent.
    Corrupt(Corruption),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full => write!(f, "ring full"),
            PushError::TooBig { len, max } => {
                write!(f, "message of {len} bytes exceeds slot capacity {max}")
            }
            PushError::Corrupt(c) => write!(f, "{c}"),
        }
    }
}

impl std::error::Error for PushError {}

/// An `mmap`ed region, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `file` shared, read-write. `len` must be > 0.
    fn new(file: &File, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping at an address the kernel picks; no existing memory is
        // touched. The fd is valid for the duration of the call (borrowed `file`).
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Mapping { ptr, len })
    }

    /// Pointer to byte `off` (only computed here; callers check `off + access size <= len`
    /// before dereferencing it).
    fn at(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= self.len);
        self.ptr.as_ptr().wrapping_add(off)
    }

    fn read_u32(&self, off: usize) -> u32 {
        assert!(off % 4 == 0 && off + 4 <= self.len);
        // SAFETY: in bounds and aligned (asserted; the base is page-aligned). Volatile: the
        // peer may write this memory at any time.
        unsafe { ptr::read_volatile(self.at(off).cast::<u32>()) }
    }

    fn read_u64(&self, off: usize) -> u64 {
        assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: as in `read_u32`.
        unsafe { ptr::read_volatile(self.at(off).cast::<u64>()) }
    }

    fn write_u32(&self, off: usize, v: u32) {
        assert!(off % 4 == 0 && off + 4 <= self.len);
        // SAFETY: as in `read_u32`; the mapping is writable.
        unsafe { ptr::write_volatile(self.at(off).cast::<u32>(), v) }
    }

    fn write_u64(&self, off: usize, v: u64) {
        assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: as in `read_u64`; the mapping is writable.
        unsafe { ptr::write_volatile(self.at(off).cast::<u64>(), v) }
    }

    fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.len);
        // SAFETY: in bounds, 4-aligned, lives as long as `self`; all accesses by this crate
        // (in either process) to this word are atomic.
        unsafe { &*(self.at(off) as *const AtomicU32) }
    }

    fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: as in `atomic_u32`, 8-aligned.
        unsafe { &*(self.at(off) as *const AtomicU64) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and no reference into the
        // mapping outlives `self` (every borrow handed out is tied to the owning Channel).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for both ends of a channel (they share a host),
/// so that a message can say when it was written and its reader how old it is. 0 if the clock
/// cannot be read.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which is valid for it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Writes zeros over `len` bytes at `p` with volatile stores so the compiler cannot drop them
/// as dead writes (the zeroing exists so key material does not linger in shared memory).
///
/// # Safety
/// `p..p+len` must be valid for writes and `p` 8-aligned.
unsafe fn volatile_zero(p: *mut u8, len: usize) {
    let words = len / 8;
    for i in 0..words {
        // SAFETY: within `p..p+len`, 8-aligned (caller's contract).
        unsafe { ptr::write_volatile(p.cast::<u64>().add(i), 0) };
    }
    for i in words * 8..len {
        // SAFETY: within `p..p+len`.
        unsafe { ptr::write_volatile(p.add(i), 0) };
    }
    compiler_fence(Ordering::SeqCst);
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses anything but a regular file owned by us without group/other permission bits.
fn check_secure(md: &Metadata) -> Result<(), Error> {
    if !md.file_type().is_file() {
        return Err(Error::NotRegularFile);
    }
    let uid = euid();
    if md.uid() != uid {
        return Err(Error::NotOwned {
            owner: md.uid(),
            uid,
        });
    }
    if md.mode() & 0o077 != 0 {
        return Err(Error::InsecureMode {
            mode: md.mode() & 0o7777,
        });
    }
    Ok(())
}

/// A mapped shared-memory channel: a header and `rings` SPSC rings.
///
/// `Send` and `Sync`; not `Clone`. Each end of each ring can be taken once at a time per
/// `Channel` ([`Channel::producer`], [`Channel::consumer`]); both ends of one ring may live in
/// the same process (e.g. in tests). Opening the same file twice in one process gives two
/// independent `Channel`s whose claims do not see each other: don't take the same end of a
/// ring through both. Dropping the channel unmaps the file; only [`Channel::remove`] deletes
/// it.
pub struct Channel {
    map: Mapping,
    layout: Layout,
    generation: u64,
    creator_pid: u32,
    producers: Box<[AtomicBool]>,
    consumers: Box<[AtomicBool]>,
    corruptions: AtomicU64,
}

// SAFETY: the mapping is plain shared memory with no thread affinity; it is unmapped only by
// Drop, which needs ownership.
unsafe impl Send for Channel {}
// SAFETY: all shared state in the mapping is accessed through atomics or through slots whose
// ownership the ring protocol hands between exactly one producer and one consumer (the
// per-ring claim flags make each end unique per Channel). Header fields are read-only after
// creation except the atomic retired flag.
unsafe impl Sync for Channel {}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("layout", &self.layout)
            .field("generation", &self.generation)
            .field("creator_pid", &self.creator_pid)
            .field("len", &self.map.len)
            .field("corruptions", &self.corruptions.load(Ordering::Relaxed))
            .finish()
    }
}

impl Channel {
    /// Creates the channel file at `path` with `layout` and maps it.
    ///
    /// The file is built under a temporary name beside `path` (mode 0600) and renamed over
    /// `path`, so a peer that still maps an older file keeps a valid mapping; that older
    /// file's retired flag is then set (see [`Channel::is_retired`]). The generation is larger
    /// than the older file's, and never below the current time in nanoseconds since the
    /// epoch, so it changes across restarts even when the old file was removed.
    ///
    /// Refuses to replace a file at `path` that another user owns.
    pub fn create(path: &Path, layout: Layout) -> Result<Channel, Error> {
        let total = layout.file_len()?;
        let uid = euid();
        match fs::symlink_metadata(path) {
            Ok(md) if md.uid() != uid => {
                return Err(Error::NotOwned {
                    owner: md.uid(),
                    uid,
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e)),
        }
        // A valid older channel at `path`: its generation seeds ours, and it gets retired.
        let old = Channel::open(path).ok();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let old_gen = old.as_ref().map_or(0, |c| c.generation);
        let generation = now.max(old_gen.saturating_add(1)).max(1);

        let tmp = tmp_path(path);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e)),
        }
        let built = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            check_secure(&file.metadata()?)?;
            file.set_len(total)?;
            let len = usize::try_from(total)
                .map_err(|_| Error::BadLayout("file too large for this address space"))?;
            let map = Mapping::new(&file, len)?;
            // The file is fresh (all zero) and not yet visible under `path`.
            let pid = std::process::id();
            map.write_u32(OFF_VERSION, VERSION);
            map.write_u32(OFF_RINGS, layout.rings);
            map.write_u32(OFF_SLOT_SIZE, layout.slot_size);
            map.write_u32(OFF_SLOTS, layout.slots);
            map.write_u32(OFF_PID, pid);
            map.write_u64(OFF_GENERATION, generation);
            map.write_u64(OFF_TOTAL_LEN, total);
            for (i, b) in MAGIC.iter().enumerate() {
                // SAFETY: OFF_MAGIC + 8 <= HEADER_LEN <= len.
                unsafe { ptr::write_volatile(map.at(OFF_MAGIC + i), *b) };
            }
            fs::rename(&tmp, path)?;
            Ok::<_, Error>(Channel::from_parts(map, layout, generation, pid))
        })();
        if built.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        let chan = built?;
        if let Some(old) = old {
            old.retire();
        }
        Ok(chan)
    }

    /// Opens and maps an existing channel file, checking ownership, mode, magic, version,
    /// layout limits and size.
    pub fn open(path: &Path) -> Result<Channel, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let md = file.metadata()?;
        check_secure(&md)?;
        let actual = md.len();
        if actual < HEADER_LEN as u64 {
            return Err(Error::Truncated {
                expected: HEADER_LEN as u64,
                actual,
            });
        }
        if actual > MAX_FILE_LEN {
            return Err(Error::BadLayout("file larger than 16 GiB"));
        }
        let len = usize::try_from(actual)
            .map_err(|_| Error::BadLayout("file too large for this address space"))?;
        let map = Mapping::new(&file, len)?;
        let mut magic = [0u8; 8];
        for (i, b) in magic.iter_mut().enumerate() {
            // SAFETY: OFF_MAGIC + 8 <= HEADER_LEN <= len.
            *b = unsafe { ptr::read_volatile(map.at(OFF_MAGIC + i)) };
        }
        if magic != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = map.read_u32(OFF_VERSION);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let layout = Layout {
            rings: map.read_u32(OFF_RINGS),
            slot_size: map.read_u32(OFF_SLOT_SIZE),
            slots: map.read_u32(OFF_SLOTS),
        };
        let expected = layout.file_len()?;
        if actual < expected {
            return Err(Error::Truncated { expected, actual });
        }
        if actual > expected {
            return Err(Error::SizeMismatch { expected, actual });
        }
        let recorded = map.read_u64(OFF_TOTAL_LEN);
        if recorded != expected {
            return Err(Error::SizeMismatch {
                expected,
                actual: recorded,
            });
        }
        let generation = map.read_u64(OFF_GENERATION);
        let pid = map.read_u32(OFF_PID);
        Ok(Channel::from_parts(map, layout, generation, pid))
    }

    /// Marks the channel file at `path` retired (if it is a valid channel) and deletes it.
    /// Meant for the creator on shutdown. Refuses to delete a file another user owns.
    pub fn remove(path: &Path) -> Result<(), Error> {
        let md = fs::symlink_metadata(path)?;
        let uid = euid();
        if md.uid() != uid {
            return Err(Error::NotOwned {
                owner: md.uid(),
                uid,
            });
        }
        if let Ok(c) = Channel::open(path) {
            c.retire();
        }
        fs::remove_file(path)?;
        Ok(())
    }

    fn from_parts(map: Mapping, layout: Layout, generation: u64, creator_pid: u32) -> Channel {
        let flags = |n: u32| (0..n).map(|_| AtomicBool::new(false)).collect();
        Channel {
            map,
            layout,
            generation,
            creator_pid,
            producers: flags(layout.rings),
            consumers: flags(layout.rings),
            corruptions: AtomicU64::new(0),
        }
    }

    fn retire(&self) {
        self.map.atomic_u32(OFF_RETIRED).store(1, Ordering::Release);
    }

    /// The generation read from the header when this channel was created or opened.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// PID of the process that created the file.
    pub fn creator_pid(&self) -> u32 {
        self.creator_pid
    }

    /// The channel's layout (from the header, checked at open).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// True once the creator has replaced or removed this file: reopen the path to reach the
    /// new channel (its generation differs).
    pub fn is_retired(&self) -> bool {
        self.map.atomic_u32(OFF_RETIRED).load(Ordering::Acquire) != 0
    }

    /// How many corruptions this channel's producers and consumers have reported.
    pub fn corruptions(&self) -> u64 {
        self.corruptions.load(Ordering::Relaxed)
    }

    fn corrupt(&self, c: Corruption) -> Corruption {
        self.corruptions.fetch_add(1, Ordering::Relaxed);
        c
    }

    /// Raw pointers and counters of ring `ring`, after the range check.
    fn ring(&self, ring: u32) -> Result<RingRef<'_>, Error> {
        if ring >= self.layout.rings {
            return Err(Error::NoSuchRing {
                ring,
                rings: self.layout.rings,
            });
        }
        // Offsets fit: the whole layout was checked against the mapping's length.
        let base = self.layout.ring_offset(ring) as usize;
        Ok(RingRef {
            head: self.map.atomic_u64(base + RING_HEAD_OFFSET),
            tail: self.map.atomic_u64(base + RING_TAIL_OFFSET),
            slots: self.map.at(base + RING_SLOTS_OFFSET),
        })
    }

    /// Takes the producing end of ring `ring`. Fails if this channel already handed it out
    /// (until that [`Producer`] is dropped), or if the ring's counters are inconsistent.
    pub fn producer(&self, ring: u32) -> Result<Producer<'_>, Error> {
        let r = self.ring(ring)?;
        let claim = Claim::take(&self.producers[ring as usize], ring, Role::Producer)?;
        let tail = r.tail.load(Ordering::Acquire);
        let head = r.head.load(Ordering::Acquire);
        let slots = u64::from(self.layout.slots);
        if !consistent(head, tail, slots) {
            return Err(Error::Corrupt(self.corrupt(Corruption::Counters {
                ring,
                head,
                tail,
            })));
        }
        Ok(Producer {
            chan: self,
            ring,
            r,
            tail,
            _claim: claim,
        })
    }

    /// Takes the consuming end of ring `ring`. Fails if this channel already handed it out
    /// (until that [`Consumer`] is dropped), or if the ring's counters are inconsistent.
    pub fn consumer(&self, ring: u32) -> Result<Consumer<'_>, Error> {
        let r = self.ring(ring)?;
        let claim = Claim::take(&self.consumers[ring as usize], ring, Role::Consumer)?;
        let head = r.head.load(Ordering::Acquire);
        let tail = r.tail.load(Ordering::Acquire);
        let slots = u64::from(self.layout.slots);
        if !consistent(head, tail, slots) {
            return Err(Error::Corrupt(self.corrupt(Corruption::Counters {
                ring,
                head,
                tail,
            })));
        }
        Ok(Consumer {
            chan: self,
            ring,
            r,
            head,
            _claim: claim,
        })
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(s)
}

/// `0 <= tail - head <= slots`.
fn consistent(head: u64, tail: u64, slots: u64) -> bool {
    tail >= head && tail - head <= slots
}

#[derive(Clone, Copy)]
struct RingRef<'a> {
    head: &'a AtomicU64,
    tail: &'a AtomicU64,
    /// Slot 0; the ring's `slots * slot_size` bytes follow, inside the mapping.
    slots: *mut u8,
}

/// One end's claim on a ring, released on drop.
struct Claim<'a>(&'a AtomicBool);

impl<'a> Claim<'a> {
    fn take(flag: &'a AtomicBool, ring: u32, role: Role) -> Result<Claim<'a>, Error> {
        flag.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| Claim(flag))
            .map_err(|_| Error::RingBusy { ring, role })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The writing end of one ring. Keeps its own copy of `tail`; the only value it reads from
/// the peer is `head`, which it checks.
pub struct Producer<'a> {
    chan: &'a Channel,
    ring: u32,
    r: RingRef<'a>,
    tail: u64,
    _claim: Claim<'a>,
}

// SAFETY: a Producer is a claim on one ring end plus a borrow of a Sync Channel; nothing in it
// is tied to the creating thread.
unsafe impl Send for Producer<'_> {}

impl fmt::Debug for Producer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("ring", &self.ring)
            .field("tail", &self.tail)
            .finish()
    }
}

impl Producer<'_> {
    /// Ring index.
    pub fn ring(&self) -> u32 {
        self.ring
    }

    /// Largest message [`Producer::push`] takes.
    pub fn max_message(&self) -> usize {
        self.chan.layout.max_message()
    }

    fn used(&self) -> Result<u64, Corruption> {
        let head = self.r.head.load(Ordering::Acquire);
        let slots = u64::from(self.chan.layout.slots);
        if consistent(head, self.tail, slots) {
            Ok(self.tail - head)
        } else {
            Err(Corruption::Counters {
                ring: self.ring,
                head,
                tail: self.tail,
            })
        }
    }

    /// Copies `msg` into the next free slot and publishes it. No allocation.
    pub fn push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        let layout = self.chan.layout;
        let max = layout.max_message();
        if msg.len() > max {
            return Err(PushError::TooBig {
                len: msg.len(),
                max,
            });
        }
        let used = self
            .used()
            .map_err(|c| PushError::Corrupt(self.chan.corrupt(c)))?;
        if used == u64::from(layout.slots) {
            return Err(PushError::Full);
        }
        // Counters the peer set near u64::MAX (they were read from shared memory when this
        // producer was taken) must not wrap: the ring is corrupt.
        let Some(next) = self.tail.checked_add(1) else {
            let c = Corruption::Counters {
                ring: self.ring,
                head: self.r.head.load(Ordering::Acquire),
                tail: self.tail,
            };
            return Err(PushError::Corrupt(self.chan.corrupt(c)));
        };
        let idx = (self.tail & (u64::from(layout.slots) - 1)) as usize;
        let slot_size = layout.slot_size as usize;
        // SAFETY: idx < slots, so the slot lies inside this ring's slot area, inside the
        // mapping; it is 8-aligned (64-aligned ring, slot size a multiple of 8). The consumer
        // released it (head > tail - slots, read with Acquire), so no one else writes it now.
        // msg.len() <= slot_size - 4, so the payload fits.
        unsafe {
            let slot = self.r.slots.add(idx * slot_size);
            ptr::write_volatile(slot.cast::<u32>(), msg.len() as u32);
            ptr::copy_nonoverlapping(msg.as_ptr(), slot.add(SLOT_LEN_PREFIX), msg.len());
        }
        self.tail = next;
        self.r.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Slots free right now (0 if the counters are inconsistent; [`Producer::push`] then
    /// reports the corruption).
    pub fn free_slots(&self) -> usize {
        match self.used() {
            Ok(used) => (u64::from(self.chan.layout.slots) - used) as usize,
            Err(_) => 0,
        }
    }
}

/// The reading end of one ring. Keeps its own copy of `head`; the only value it reads from
/// the peer is `tail` (checked) and the slots' contents (lengths checked).
pub struct Consumer<'a> {
    chan: &'a Channel,
    ring: u32,
    r: RingRef<'a>,
    head: u64,
    _claim: Claim<'a>,
}

// SAFETY: as for Producer.
unsafe impl Send for Consumer<'_> {}

impl fmt::Debug for Consumer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("ring", &self.ring)
            .field("head", &self.head)
            .finish()
    }
}

/// Zeroes a consumed slot and releases it to the producer, also when the callback panics.
struct Release<'a> {
    slot: *mut u8,
    zero_len: usize,
    head: &'a AtomicU64,
    new_head: u64,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        // SAFETY: `slot..slot+zero_len` is one slot (zero_len <= slot_size), 8-aligned, owned
        // by the consumer until the head store below.
        unsafe { volatile_zero(self.slot, self.zero_len) };
        self.head.store(self.new_head, Ordering::Release);
    }
}

impl Consumer<'_> {
    /// Ring index.
    pub fn ring(&self) -> u32 {
        self.ring
    }

    fn available(&self) -> Result<u64, Corruption> {
        let tail = self.r.tail.load(Ordering::Acquire);
        let slots = u64::from(self.chan.layout.slots);
        if consistent(self.head, tail, slots) {
            Ok(tail - self.head)
        } else {
            Err(Corruption::Counters {
                ring: self.ring,
                head: self.head,
                tail,
            })
        }
    }

    /// Calls `f` with the payload of the oldest message, then zeroes the slot (with volatile
    /// writes: key material must not linger in shared memory) and releases it to the
    /// producer. The slot is zeroed and released even if `f` panics. No allocation.
    ///
    /// Returns `Ok(None)` when the ring is empty. A slot whose length prefix exceeds the slot
    /// is zeroed, released and reported as [`Corruption::Length`]; inconsistent counters are
    /// reported as [`Corruption::Counters`] on every call. Both are counted in
    /// [`Channel::corruptions`].
    ///
    /// The slice points into shared memory: a misbehaving peer could change it while `f`
    /// runs, so `f` should read each byte once (e.g. copy out, then parse).
    pub fn pop_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, Corruption> {
        let avail = self.available().map_err(|c| self.chan.corrupt(c))?;
        if avail == 0 {
            return Ok(None);
        }
        let layout = self.chan.layout;
        let slot_size = layout.slot_size as usize;
        let idx = (self.head & (u64::from(layout.slots) - 1)) as usize;
        let seq = self.head;
        // SAFETY: idx < slots: the slot lies inside this ring's slot area in the mapping,
        // 8-aligned.
        let slot = unsafe { self.r.slots.add(idx * slot_size) };
        // SAFETY: the slot's first 4 bytes, aligned; published by the producer (tail Acquire).
        let len = unsafe { ptr::read_volatile(slot.cast::<u32>()) };
        self.head += 1;
        let max = layout.max_message();
        if len as usize > max {
            drop(Release {
                slot,
                zero_len: slot_size,
                head: self.r.head,
                new_head: self.head,
            });
            return Err(self.chan.corrupt(Corruption::Length {
                ring: self.ring,
                seq,
                len,
                max: max as u32,
            }));
        }
        let len = len as usize;
        let _release = Release {
            slot,
            zero_len: SLOT_LEN_PREFIX + len,
            head: self.r.head,
            new_head: self.head,
        };
        // SAFETY: len <= slot_size - 4, so the payload lies inside the slot; the producer
        // does not write the slot until `_release` publishes the new head.
        let payload = unsafe { std::slice::from_raw_parts(slot.add(SLOT_LEN_PREFIX), len) };
        Ok(Some(f(payload)))
    }

    /// Messages waiting right now (0 if the counters are inconsistent;
    /// [`Consumer::pop_with`] then reports the corruption).
    pub fn len(&self) -> usize {
        self.available().unwrap_or(0) as usize
    }

    /// True when no message is waiting (or the counters are inconsistent).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
