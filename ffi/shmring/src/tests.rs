use super::*;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::AtomicUsize;

/// A unique path under /dev/shm (or the temp dir), removed on drop.
struct TmpPath(PathBuf);

impl TmpPath {
    fn new(tag: &str) -> TmpPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let n = N.fetch_add(1, Ordering::Relaxed);
        TmpPath(dir.join(format!("shmring-unit-{}-{tag}-{n}", std::process::id())))
    }
}

impl Drop for TmpPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let _ = fs::remove_file(tmp_path(&self.0));
    }
}

const SMALL: Layout = Layout {
    rings: 2,
    slot_size: 32,
    slots: 4,
};

fn pop_vec(c: &mut Consumer<'_>) -> Result<Option<Vec<u8>>, Corruption> {
    c.pop_with(|m| m.to_vec())
}

fn patch(path: &Path, off: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Raw bytes of the file as another mapping sees them.
fn raw(c: &Channel, off: u64, len: usize) -> Vec<u8> {
    (0..len)
        // SAFETY (test): within the mapping; volatile read of plain bytes.
        .map(|i| unsafe { ptr::read_volatile(c.map.at(off as usize + i)) })
        .collect()
}

#[test]
fn layout_sizes_and_offsets() {
    assert_eq!(SMALL.ring_stride(), 256);
    assert_eq!(SMALL.file_len().unwrap(), 64 + 2 * 256);
    assert_eq!(SMALL.ring_offset(1), 64 + 256);
    assert_eq!(SMALL.slot_offset(1, 5), 64 + 256 + 128 + 32);
    let odd = Layout {
        rings: 1,
        slot_size: 24,
        slots: 1,
    };
    assert_eq!(odd.ring_stride(), 192);
    assert_eq!(SMALL.max_message(), 28);
}

#[test]
fn bad_layouts_rejected() {
    let bad = [
        Layout { rings: 0, ..SMALL },
        Layout {
            rings: MAX_RINGS + 1,
            ..SMALL
        },
        Layout {
            slot_size: 4,
            ..SMALL
        },
        Layout {
            slot_size: 33,
            ..SMALL
        },
        Layout { slots: 3, ..SMALL },
        Layout { slots: 0, ..SMALL },
        Layout {
            rings: MAX_RINGS,
            slot_size: MAX_SLOT_SIZE,
            slots: MAX_SLOTS,
        },
    ];
    let p = TmpPath::new("badlayout");
    for l in bad {
        assert!(
            matches!(Channel::create(&p.0, l), Err(Error::BadLayout(_))),
            "{l:?}"
        );
    }
    assert!(!p.0.exists());
}

#[test]
fn round_trip() {
    let p = TmpPath::new("roundtrip");
    let ch = Channel::create(&p.0, SMALL).unwrap();
    let md = fs::metadata(&p.0).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert_eq!(md.len(), SMALL.file_len().unwrap());
    assert_eq!(ch.creator_pid(), std::process::id());
    let mut tx = ch.producer(0).unwrap();
    let mut rx = ch.consumer(0).unwrap();
    assert!(rx.is_empty());
    assert_eq!(pop_vec(&mut rx), Ok(None));
    tx.push(b"hello").unwrap();
    tx.push(b"").unwrap();
    tx.push(&[7u8; 28]).unwrap();
    assert_eq!(rx.len(), 3);
    assert_eq!(tx.free_slots(), 1);
    assert_eq!(pop_vec(&mut rx), Ok(Some(b"hello".to_vec())));
    assert_eq!(pop_vec(&mut rx), Ok(Some(vec![])));
    assert_eq!(pop_vec(&mut rx), Ok(Some(vec![7u8; 28])));
    assert_eq!(pop_vec(&mut rx), Ok(None));
    // The other ring is independent.
    let mut rx1 = ch.consumer(1).unwrap();
    assert_eq!(pop_vec(&mut rx1), Ok(None));
    assert_eq!(ch.corruptions(), 0);
}

#[test]
fn full_ring() {
    let p = TmpPath::new("full");
    let ch = Channel::create(&p.0, SMALL).unwrap();
    let mut tx = ch.producer(0).unwrap();
    let mut rx = ch.consumer(0).unwrap();
    for i in 0..4u8 {
        tx.push(&[i]).unwrap();
    }
    assert_eq!(tx.free_slots(), 0);
    assert_eq!(tx.push(b"x"), Err(PushError::Full));
    assert_eq!(pop_vec(&mut rx), Ok(Some(vec![0])));
    assert_eq!(tx.free_slots(), 1);
    tx.push(&[4]).unwrap();
    assert_eq!(tx.push(b"x"), Err(PushError::Full));
    for i in 1..5u8 {
        assert_eq!(pop_vec(&mut rx), Ok(Some(vec![i])));
    }
    assert_eq!(pop_vec(&mut rx), Ok(None));
}

#[test]
fn too_big() {
    let p = TmpPath::new("toobig");
    let ch = Channel::create(&p.0, SMALL).unwrap();
    let mut tx = ch.producer(0).unwrap();
    assert_eq!(tx.max_message(), 28);
    assert_eq!(
        tx.push(&[0u8; 29]),
        Err(PushError::TooBig { len: 29, max: 28 })
    );
    assert_eq!(tx.free_slots(), 4);
}

#[test]
fn wrap_around_many_messages() {
    let p = TmpPath::new("wrap");
    let ch = Channel::create(&p.0, SMALL).unwrap();
    let mut tx = ch.producer(1).unwrap();
    let mut rx = ch.consumer(1).unwrap();
    let mut next_out = 0u64;
    for i in 0..10_000u64 {
        let len = (i % 21) as usize;
        let mut msg = [0u8; 28];
        msg[..8].copy_from_slice(&i.to_le_bytes());
        for (j, b) in msg[8..8 + len].iter_mut().enumerate() {
            *b = (i as u8) ^ (j as u8);
        }
        loop {
            match tx.push(&msg[..8 + len]) {
                Ok(()) => break,
                Err(PushError::Full) => {
                    // Drain some when full, in varying amounts.
                    for _ in 0..(1 + i % 4) {
                        let got = rx.pop_with(|m| m.to_vec()).unwrap();
                        let Some(m) = got else { break };
                        assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), next_out);
                        next_out += 1;
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    while let Some(m) = rx.pop_with(|m| m.to_vec()).unwrap() {
        let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
        assert_eq!(seq, next_out);
        assert_eq!(m.len(), 8 + (seq % 21) as usize);
        next_out += 1;
    }
    assert_eq!(next_out, 10_000);
}

#[test]
fn slot_zeroed_after_pop_seen_through_second_mapping() {
    let p = TmpPath::new("zero");
    let a = Channel::create(&p.0, SMALL).unwrap();
    let b = Channel::open(&p.0).unwrap();
    assert_eq!(a.generation(), b.generation());
    let mut tx = a.producer(0).unwrap();
    let secret = [0xA5u8; 28];
    tx.push(&secret).unwrap();
    let off = SMALL.slot_offset(0, 0);
    let seen = raw(&b, off, 32);
    assert_eq!(&seen[..4], &28u32.to_ne_bytes());
    assert_eq!(&seen[4..], &secret);
    // Consume through the second mapping, check the first one sees zeros.
    let mut rx = b.consumer(0).unwrap();
    assert_eq!(rx.pop_with(|m| m == secret), Ok(Some(true)));
    assert_eq!(raw(&a, off, 32), vec![0u8; 32]);
    assert_eq!(raw(&b, off, 32), vec![0u8; 32]);
    // And the file itself (page cache) holds zeros too.
    let bytes = fs::read(&p.0).unwrap();
    assert!(bytes[off as usize..off as usize + 32]
        .iter()
        .all(|&x| x == 0));
}

#[test]
fn slot_zeroed_and_released_when_callback_panics() {
    let p = TmpPath::new("panic");
    let ch = Channel::create(&p.0, SMALL).unwrap();
    let mut tx = ch.producer(0).unwrap();
    let mut rx = ch.consumer(0).unwrap();
    tx.push(b"key material").unwrap();
    tx.push(b"next").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rx.pop_with(|_| panic!("callback fails"))
    }));
    assert!(r.is_err());
    assert_eq!(raw(&ch, SMALL.slot_offset(0, 0), 32), vec![0u8; 32]);
    assert_eq!(pop_vec(&mut rx), Ok(Some(b"next".to_vec())));
}

#[test]
fn ring_claims() {
    let p = TmpPath::new("claims");
    let ch = Channel::create(&p.0, SMALL).unwrap();
    let tx = ch.producer(0).unwrap();
    assert!(matches!(
        ch.producer(0),
        Err(Error::RingBusy {
            ring: 0,
            role: Role::Producer
        })
    ));
    let rx = ch.consumer(0).unwrap();
    assert!(matches!(
        ch.consumer(0),
        Err(Error::RingBusy {
            ring: 0,
            role: Role::Consumer
        })
    ));
    assert!(matches!(
        ch.producer(2),
        Err(Error::NoSuchRing { ring: 2, rings: 2 })
    ));
    drop(tx);
    drop(rx);
    ch.producer(0).unwrap();
    ch.consumer(0).unwrap();
}

#[test]
fn open_rejects_wrong_magic() {
    let p = TmpPath::new("magic");
    drop(Channel::create(&p.0, SMALL).unwrap());
    patch(&p.0, 0, b"NOTARING");
    assert!(matches!(Channel::open(&p.0), Err(Error::BadMagic)));
}

#[test]
fn open_rejects_wrong_version() {
    let p = TmpPath::new("version");
    drop(Channel::create(&p.0, SMALL).unwrap());
    patch(&p.0, 8, &2u32.to_ne_bytes());
    assert!(matches!(
        Channel::open(&p.0),
        Err(Error::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
}

#[test]
fn open_rejects_truncated_and_oversized_files() {
    let p = TmpPath::new("trunc");
    drop(Channel::create(&p.0, SMALL).unwrap());
    let full = SMALL.file_len().unwrap();
    let f = OpenOptions::new().write(true).open(&p.0).unwrap();
    f.set_len(full - 1).unwrap();
    assert!(matches!(
        Channel::open(&p.0),
        Err(Error::Truncated { expected, actual }) if expected == full && actual == full - 1
    ));
    f.set_len(10).unwrap();
    assert!(matches!(
        Channel::open(&p.0),
        Err(Error::Truncated {
            expected: 64,
            actual: 10
        })
    ));
    f.set_len(0).unwrap();
    assert!(matches!(Channel::open(&p.0), Err(Error::Truncated { .. })));
    drop(Channel::create(&p.0, SMALL).unwrap());
    let f = OpenOptions::new().write(true).open(&p.0).unwrap();
    f.set_len(full + 64).unwrap();
    assert!(matches!(
        Channel::open(&p.0),
        Err(Error::SizeMismatch { .. })
    ));
}

#[test]
fn open_rejects_bad_header_layout() {
    let p = TmpPath::new("hdrlayout");
    drop(Channel::create(&p.0, SMALL).unwrap());
    // slots = 3: not a power of two.
    patch(&p.0, 20, &3u32.to_ne_bytes());
    assert!(matches!(Channel::open(&p.0), Err(Error::BadLayout(_))));
    // slots = 2: a valid layout, but the file is larger than it needs.
    patch(&p.0, 20, &2u32.to_ne_bytes());
    assert!(matches!(
        Channel::open(&p.0),
        Err(Error::SizeMismatch { .. })
    ));
    // Right shape, wrong recorded length.
    patch(&p.0, 20, &4u32.to_ne_bytes());
    patch(&p.0, 40, &1u64.to_ne_bytes());
    assert!(matches!(
        Channel::open(&p.0),
        Err(Error::SizeMismatch { actual: 1, .. })
    ));
}

#[test]
fn open_rejects_mode_0644() {
    let p = TmpPath::new("mode");
    drop(Channel::create(&p.0, SMALL).unwrap());
    fs::set_permissions(&p.0, fs::Permissions::from_mode(0o644)).unwrap();
    let e = Channel::open(&p.0).unwrap_err();
    assert!(matches!(e, Error::InsecureMode { mode: 0o644 }), "{e:?}");
    assert!(e.to_string().contains("0644"), "{e}");
    fs::set_permissions(&p.0, fs::Permissions::from_mode(0o400)).unwrap_or(());
    fs::set_permissions(&p.0, fs::Permissions::from_mode(0o600)).unwrap();
    Channel::open(&p.0).unwrap();
}

#[test]
fn open_rejects_foreign_owner_and_non_files() {
    let p = TmpPath::new("owner");
    drop(Channel::create(&p.0, SMALL).unwrap());
    if euid() == 0 {
        // As root we can give the file away to test the owner check.
        std::os::unix::fs::chown(&p.0, Some(65534), None).unwrap();
        assert!(matches!(
            Channel::open(&p.0),
            Err(Error::NotOwned { owner: 65534, .. })
        ));
        assert!(matches!(
            Channel::create(&p.0, SMALL),
            Err(Error::NotOwned { owner: 65534, .. })
        ));
        assert!(matches!(Channel::remove(&p.0), Err(Error::NotOwned { .. })));
    }
    // A symlink is not followed.
    let link = TmpPath::new("link");
    std::os::unix::fs::symlink(&p.0, &link.0).unwrap();
    assert!(matches!(Channel::open(&link.0), Err(Error::Io(_))));
    // A directory is not a channel.
    assert!(matches!(
        Channel::open(Path::new("/")),
        Err(Error::NotRegularFile | Error::Io(_) | Error::NotOwned { .. })
    ));
}

/// Writes `v` into a ring counter through another mapping.
fn poke_counter(c: &Channel, ring: u32, which: usize, v: u64) {
    let off = c.layout.ring_offset(ring) as usize + which;
    c.map.atomic_u64(off).store(v, Ordering::Release);
}

#[test]
fn corrupt_tail_reported_to_consumer() {
    let p = TmpPath::new("ctail");
    let a = Channel::create(&p.0, SMALL).unwrap();
    let b = Channel::open(&p.0).unwrap();
    let mut rx = a.consumer(0).unwrap();
    // tail - head > slots
    poke_counter(&b, 0, RING_TAIL_OFFSET, 5);
    assert_eq!(
        pop_vec(&mut rx),
        Err(Corruption::Counters {
            ring: 0,
            head: 0,
            tail: 5
        })
    );
    assert_eq!(rx.len(), 0);
    assert_eq!(a.corruptions(), 1);
    // A new consumer refuses to start on it.
    drop(rx);
    assert!(matches!(
        a.consumer(0),
        Err(Error::Corrupt(Corruption::Counters { .. }))
    ));
    assert_eq!(a.corruptions(), 2);
    // tail far beyond head (u64 wrap-around attempt).
    poke_counter(&b, 0, RING_TAIL_OFFSET, u64::MAX);
    assert!(a.consumer(0).is_err());
}

#[test]
fn corrupt_head_reported_to_producer() {
    let p = TmpPath::new("chead");
    let a = Channel::create(&p.0, SMALL).unwrap();
    let b = Channel::open(&p.0).unwrap();
    let mut tx = a.producer(0).unwrap();
    tx.push(b"one").unwrap();
    // head > tail
    poke_counter(&b, 0, RING_HEAD_OFFSET, 7);
    assert_eq!(tx.free_slots(), 0);
    assert_eq!(
        tx.push(b"two"),
        Err(PushError::Corrupt(Corruption::Counters {
            ring: 0,
            head: 7,
            tail: 1
        }))
    );
    assert_eq!(a.corruptions(), 1);
    // Restoring the counter makes the ring usable again.
    poke_counter(&b, 0, RING_HEAD_OFFSET, 0);
    tx.push(b"two").unwrap();
}

/// Counters the peer set to u64::MAX before this end took the ring (consistent: empty) must
/// not wrap when the next message is pushed: reported as corrupt, no panic.
#[test]
fn counters_at_the_top_do_not_wrap() {
    let p = TmpPath::new("ctop");
    let a = Channel::create(&p.0, SMALL).unwrap();
    let b = Channel::open(&p.0).unwrap();
    poke_counter(&b, 0, RING_HEAD_OFFSET, u64::MAX);
    poke_counter(&b, 0, RING_TAIL_OFFSET, u64::MAX);
    let mut tx = a.producer(0).unwrap();
    assert!(matches!(
        tx.push(b"one"),
        Err(PushError::Corrupt(Corruption::Counters { .. }))
    ));
    assert_eq!(a.corruptions(), 1);
}

#[test]
fn corrupt_length_dropped_and_reported() {
    let p = TmpPath::new("clen");
    let a = Channel::create(&p.0, SMALL).unwrap();
    let b = Channel::open(&p.0).unwrap();
    let mut tx = a.producer(0).unwrap();
    let mut rx = a.consumer(0).unwrap();
    tx.push(b"first").unwrap();
    tx.push(b"second").unwrap();
    for bad in [29u32, u32::MAX] {
        let off = SMALL.slot_offset(0, rx.head) as usize;
        // SAFETY (test): in bounds and aligned; simulates a buggy peer.
        unsafe { ptr::write_volatile(b.map.at(off).cast::<u32>(), bad) };
        let seq = rx.head;
        assert_eq!(
            pop_vec(&mut rx),
            Err(Corruption::Length {
                ring: 0,
                seq,
                len: bad,
                max: 28
            })
        );
        // The bad slot was zeroed and released.
        assert_eq!(raw(&b, off as u64, 32), vec![0u8; 32]);
        assert_eq!(rx.len(), 1);
        if bad == 29 {
            tx.push(b"third").unwrap();
        }
    }
    assert_eq!(a.corruptions(), 2);
    assert_eq!(pop_vec(&mut rx), Ok(Some(b"third".to_vec())));
    assert_eq!(pop_vec(&mut rx), Ok(None));
}

#[test]
fn restart_changes_generation() {
    let p = TmpPath::new("restart");
    let c1 = Channel::create(&p.0, SMALL).unwrap();
    let g1 = c1.generation();
    let peer = Channel::open(&p.0).unwrap();
    assert_eq!(peer.generation(), g1);
    assert!(!peer.is_retired());
    // The peer holds a producer and has queued a message on the old file.
    let mut tx = peer.producer(0).unwrap();
    tx.push(b"old").unwrap();
    // Creator restarts: recreate the file.
    drop(c1);
    let c2 = Channel::create(&p.0, SMALL).unwrap();
    assert!(c2.generation() > g1);
    // The peer's old mapping stays valid (no SIGBUS) and says it is retired.
    assert!(peer.is_retired());
    tx.push(b"still mapped").unwrap();
    drop(tx);
    let peer2 = Channel::open(&p.0).unwrap();
    assert_eq!(peer2.generation(), c2.generation());
    assert!(!peer2.is_retired());
    // The new file starts empty.
    let mut rx = c2.consumer(0).unwrap();
    assert_eq!(pop_vec(&mut rx), Ok(None));
    // Creation with a different layout also works and is seen after reopening.
    drop(rx);
    let c3 = Channel::create(
        &p.0,
        Layout {
            rings: 3,
            slot_size: 64,
            slots: 8,
        },
    )
    .unwrap();
    assert!(c3.generation() > c2.generation());
    assert!(peer2.is_retired());
    let peer3 = Channel::open(&p.0).unwrap();
    assert_eq!(peer3.layout().rings, 3);
    assert_eq!(peer3.generation(), c3.generation());
    assert!(!tmp_path(&p.0).exists());
}

#[test]
fn remove_retires_and_deletes() {
    let p = TmpPath::new("remove");
    let c = Channel::create(&p.0, SMALL).unwrap();
    let peer = Channel::open(&p.0).unwrap();
    Channel::remove(&p.0).unwrap();
    assert!(!p.0.exists());
    assert!(peer.is_retired());
    assert!(c.is_retired());
    assert!(matches!(Channel::open(&p.0), Err(Error::Io(_))));
}

#[test]
fn two_threads_one_process() {
    let p = TmpPath::new("threads");
    let ch = Channel::create(
        &p.0,
        Layout {
            rings: 1,
            slot_size: 16,
            slots: 8,
        },
    )
    .unwrap();
    const N: u64 = 50_000;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut tx = ch.producer(0).unwrap();
            for i in 0..N {
                while tx.push(&i.to_le_bytes()) == Err(PushError::Full) {
                    std::thread::yield_now();
                }
            }
        });
        let mut rx = ch.consumer(0).unwrap();
        let mut next = 0;
        while next < N {
            match rx.pop_with(|m| u64::from_le_bytes(m.try_into().unwrap())) {
                Ok(Some(v)) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                Ok(None) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    });
    assert_eq!(ch.corruptions(), 0);
}
