//! Two processes over one channel file: this test binary re-executes itself with
//! `SHMRING_PEER_ROLE` set, and the `peer_entry` test plays the other process.

use shmring::{Channel, Consumer, Layout, Producer, PushError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE_VAR: &str = "SHMRING_PEER_ROLE";
const PATH_VAR: &str = "SHMRING_PEER_PATH";
const GEN_VAR: &str = "SHMRING_PEER_GENERATION";
const N: u64 = 100_000;
const LAYOUT: Layout = Layout {
    rings: 2,
    slot_size: 64,
    slots: 64,
};
const DEADLINE: Duration = Duration::from_secs(120);

/// Message `seq`: its number, then `seq % 40` bytes derived from it.
fn message(seq: u64, buf: &mut [u8; 60]) -> &[u8] {
    let extra = (seq % 40) as usize;
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (j, b) in buf[8..8 + extra].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_mul(31) ^ j as u8;
    }
    &buf[..8 + extra]
}

/// Checks that `m` is message `expect`.
fn check(m: &[u8], expect: u64) -> Result<(), String> {
    let mut buf = [0u8; 60];
    let want = message(expect, &mut buf);
    if m == want {
        Ok(())
    } else {
        let got = m
            .get(..8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap()));
        Err(format!(
            "expected message {expect} ({} bytes), got seq {got:?} ({} bytes)",
            want.len(),
            m.len()
        ))
    }
}

fn push_all(tx: &mut Producer<'_>, mut alive: impl FnMut()) {
    let start = Instant::now();
    let mut buf = [0u8; 60];
    for seq in 0..N {
        let msg = message(seq, &mut buf);
        loop {
            match tx.push(msg) {
                Ok(()) => break,
                Err(PushError::Full) => {
                    assert!(start.elapsed() < DEADLINE, "push timed out at {seq}");
                    alive();
                    std::thread::yield_now();
                }
                Err(e) => panic!("push {seq}: {e}"),
            }
        }
    }
}

fn pop_all(rx: &mut Consumer<'_>, mut alive: impl FnMut()) {
    let start = Instant::now();
    let mut next = 0u64;
    while next < N {
        match rx.pop_with(|m| check(m, next)) {
            Ok(Some(Ok(()))) => next += 1,
            Ok(Some(Err(e))) => panic!("{e}"),
            Ok(None) => {
                assert!(start.elapsed() < DEADLINE, "pop timed out at {next}");
                alive();
                std::thread::yield_now();
            }
            Err(e) => panic!("pop {next}: {e}"),
        }
    }
    assert_eq!(rx.pop_with(|_| ()), Ok(None), "more than {N} messages");
}

/// The other process. Does nothing in an ordinary test run.
#[test]
fn peer_entry() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    let path = PathBuf::from(std::env::var(PATH_VAR).unwrap());
    let ch = Channel::open(&path).unwrap();
    let want_gen: u64 = std::env::var(GEN_VAR).unwrap().parse().unwrap();
    assert_eq!(ch.generation(), want_gen);
    match role.as_str() {
        "produce" => push_all(&mut ch.producer(0).unwrap(), || {}),
        "consume" => pop_all(&mut ch.consumer(1).unwrap(), || {}),
        "echo" => {
            let mut rx = ch.consumer(1).unwrap();
            let mut tx = ch.producer(0).unwrap();
            let start = Instant::now();
            let mut buf = [0u8; 60];
            let mut done = 0;
            while done < N {
                assert!(start.elapsed() < DEADLINE, "echo timed out at {done}");
                if tx.free_slots() == 0 {
                    std::thread::yield_now();
                    continue;
                }
                let got = rx
                    .pop_with(|m| {
                        buf[..m.len()].copy_from_slice(m);
                        m.len()
                    })
                    .unwrap();
                match got {
                    Some(len) => {
                        tx.push(&buf[..len]).unwrap();
                        done += 1;
                    }
                    None => std::thread::yield_now(),
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

struct Peer {
    child: Child,
}

impl Peer {
    fn spawn(role: &str, path: &Path, generation: u64) -> Peer {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "peer_entry", "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, role)
            .env(PATH_VAR, path)
            .env(GEN_VAR, generation.to_string())
            // The harness's own lines would look like this run's summary; panics still
            // reach stderr.
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Peer { child }
    }

    /// Panics if the peer already exited with a failure.
    fn check_alive(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            assert!(st.success(), "peer failed: {st}");
        }
    }

    fn finish(mut self) {
        let st = self.child.wait().unwrap();
        assert!(st.success(), "peer failed: {st}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Only reached with a live child when the test is already failing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TmpPath(PathBuf);

impl TmpPath {
    fn new(tag: &str) -> TmpPath {
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        TmpPath(dir.join(format!("shmring-xproc-{}-{tag}", std::process::id())))
    }
}

impl Drop for TmpPath {
    fn drop(&mut self) {
        let _ = Channel::remove(&self.0);
    }
}

#[test]
fn cross_process_child_produces() {
    let p = TmpPath::new("child-produces");
    let ch = Channel::create(&p.0, LAYOUT).unwrap();
    let mut peer = Peer::spawn("produce", &p.0, ch.generation());
    let mut n = 0u32;
    pop_all(&mut ch.consumer(0).unwrap(), || {
        n = n.wrapping_add(1);
        if n % 1024 == 0 {
            peer.check_alive();
        }
    });
    peer.finish();
    assert_eq!(ch.corruptions(), 0);
}

#[test]
fn cross_process_parent_produces() {
    let p = TmpPath::new("parent-produces");
    let ch = Channel::create(&p.0, LAYOUT).unwrap();
    let mut peer = Peer::spawn("consume", &p.0, ch.generation());
    let mut n = 0u32;
    push_all(&mut ch.producer(1).unwrap(), || {
        n = n.wrapping_add(1);
        if n % 1024 == 0 {
            peer.check_alive();
        }
    });
    peer.finish();
    // Everything was consumed and every slot zeroed behind the consumer.
    let rx = ch.consumer(1).unwrap();
    assert_eq!(rx.len(), 0);
    drop(rx);
    let bytes = std::fs::read(&p.0).unwrap();
    let start = LAYOUT.slot_offset(1, 0) as usize;
    let end = start + (LAYOUT.slots * LAYOUT.slot_size) as usize;
    assert!(bytes[start..end].iter().all(|&b| b == 0));
}

#[test]
fn cross_process_echo_both_directions() {
    let p = TmpPath::new("echo");
    let ch = Channel::create(&p.0, LAYOUT).unwrap();
    let mut peer = Peer::spawn("echo", &p.0, ch.generation());
    let mut tx = ch.producer(1).unwrap();
    let mut rx = ch.consumer(0).unwrap();
    let start = Instant::now();
    let (mut sent, mut got) = (0u64, 0u64);
    let mut buf = [0u8; 60];
    let mut spins = 0u32;
    while got < N {
        assert!(
            start.elapsed() < DEADLINE,
            "echo timed out: sent {sent} got {got}"
        );
        let mut progress = false;
        if sent < N && tx.push(message(sent, &mut buf)).is_ok() {
            sent += 1;
            progress = true;
        }
        match rx.pop_with(|m| check(m, got)) {
            Ok(Some(Ok(()))) => {
                got += 1;
                progress = true;
            }
            Ok(Some(Err(e))) => panic!("{e}"),
            Ok(None) => {}
            Err(e) => panic!("{e}"),
        }
        if !progress {
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 {
                peer.check_alive();
            }
            std::thread::yield_now();
        }
    }
    peer.finish();
}
