//! The safe wrapper over DPDK (feature `dpdk`): EAL, worker lcores, mempools, mbufs, rings,
//! ethdev ports and their queues (several per port, spread by RSS). This and `ffi/` are the
//! only places with `unsafe`; each block says why it holds.
//!
//! Ownership: an [`Mbuf`] owns one mbuf and frees it when dropped; sending one hands it to the
//! driver or a ring. Queues are `Send` but `!Sync` handles: each is moved to the one lcore that
//! polls it, so a queue is never polled by two cores.
//!
//! Lifetimes: EAL and the mempools live until the process exits (neither `rte_eal_cleanup` nor
//! `rte_mempool_free` is ever called), so no mbuf, ring, queue or lcore job can outlive the
//! memory it points into, whatever order handles are dropped in. A port is started once, and
//! stopped only when none of its queue handles is left. A single-producer / single-consumer
//! ring serves the first thread that enqueues / dequeues on it and no other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;

use dpdk_sys as sys;

use crate::buf::{BufError, PacketBuf};

/// A DPDK call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpdkError {
    /// EAL initialisation failed (bad arguments, no hugepages, permissions...).
    #[error("EAL init failed: {0} (errno {1}); with no hugepages mounted, pass --no-huge")]
    EalInit(String, i32),
    /// EAL was already initialised in this process.
    #[error("EAL is already initialised in this process")]
    AlreadyInitialised,
    /// An argument had an interior NUL byte.
    #[error("argument contains a NUL byte")]
    Nul,
    /// A mempool could not be created.
    #[error("mempool {0}: {1} (errno {2})")]
    Mempool(String, String, i32),
    /// No such port.
    #[error("no DPDK port named {0}")]
    NoPort(String),
    /// A worker lcore could not be started.
    #[error("lcore {0}: launch failed: {1} (errno {2}); is it in EAL's -l list, and idle?")]
    Launch(u32, String, i32),
    /// A ring could not be created.
    #[error("ring {0}: {1} (errno {2})")]
    Ring(String, String, i32),
    /// A port operation failed.
    #[error("port {port}: {what} failed: {msg} (errno {errno})")]
    Port {
        /// The port.
        port: u16,
        /// Which operation.
        what: &'static str,
        /// strerror text.
        msg: String,
        /// The negative errno DPDK returned.
        errno: i32,
    },
}

fn strerror(e: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(sys::rte_strerror(e)) }
        .to_string_lossy()
        .into_owned()
}

fn errno() -> i32 {
    // SAFETY: reads the calling thread's rte_errno.
    unsafe { sys::fg_rte_errno() }
}

/// The initialised Environment Abstraction Layer. It is never cleaned up: its memory (the
/// mempools', the rings') stays mapped until the process exits, so that nothing made from it
/// can outlive it.
#[derive(Debug)]
pub struct Eal {
    _not_send: PhantomData<*const ()>,
}

static EAL_STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Eal {
    /// Initialises EAL with command-line style arguments (the program name first).
    pub fn init(args: &[&str]) -> Result<Eal, DpdkError> {
        if EAL_STARTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(DpdkError::AlreadyInitialised);
        }
        // Owned, writable buffers: EAL permutes argv and writes into some arguments in place
        // (it splits `--socket-mem` at its commas).
        let mut owned: Vec<Vec<u8>> = args
            .iter()
            .map(|a| {
                CString::new(*a)
                    .map(CString::into_bytes_with_nul)
                    .map_err(|_| DpdkError::Nul)
            })
            .collect::<Result<_, _>>()?;
        let mut ptrs: Vec<*mut std::os::raw::c_char> =
            owned.iter_mut().map(|c| c.as_mut_ptr().cast()).collect();
        // SAFETY: argc/argv describe live, writable, NUL-terminated buffers that outlive the
        // call; EAL keeps no pointer to them after returning (it copies what it keeps).
        let r = unsafe { sys::rte_eal_init(ptrs.len() as i32, ptrs.as_mut_ptr()) };
        if r < 0 {
            let e = errno();
            return Err(DpdkError::EalInit(strerror(e), e));
        }
        Ok(Eal {
            _not_send: PhantomData,
        })
    }

    /// The lcore the calling thread runs on.
    pub fn lcore_id(&self) -> u32 {
        // SAFETY: EAL is initialised (we hold an Eal).
        unsafe { sys::rte_lcore_id() }
    }

    /// TSC cycles (for per-packet cycle accounting).
    pub fn rdtsc(&self) -> u64 {
        // SAFETY: reads the time-stamp counter; no memory is touched.
        unsafe { sys::rte_rdtsc() }
    }

    /// The worker lcores EAL was given (`-l`), in order, without the main one.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: EAL is initialised; rte_get_next_lcore only reads its lcore table, and
        // returns RTE_MAX_LCORE past the last one (wrap = 0).
        let mut i = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while i < sys::RTE_MAX_LCORE {
            out.push(i);
            // SAFETY: as above.
            i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
        }
        out
    }

    /// Runs `f` on worker lcore `lcore`: EAL's thread for it, pinned to its CPU. The value `f`
    /// returns (or -1 if it panicked) comes back from [`Lcore::wait`].
    pub fn launch<F>(&self, lcore: u32, f: F) -> Result<Lcore, DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        // EAL would "launch" on an lcore it never started (writing to a pipe nobody reads):
        // only its own worker lcores are accepted.
        if !self.worker_lcores().contains(&lcore) {
            return Err(DpdkError::Launch(
                lcore,
                "not one of EAL's worker lcores".into(),
                -22,
            ));
        }
        type Job = Box<dyn FnOnce() -> i32 + Send>;
        extern "C" fn trampoline(arg: *mut std::os::raw::c_void) -> std::os::raw::c_int {
            // SAFETY: `arg` is the Box<Job> leaked below, handed to exactly one launch and
            // taken back here once.
            let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
            // A panic must not unwind into EAL's C frames.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(-1)
        }
        let arg = Box::into_raw(Box::new(Box::new(f) as Job));
        // SAFETY: trampoline has the lcore_function_t signature; `arg` stays valid until the
        // trampoline takes it back.
        let r = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg.cast(), lcore) };
        if r < 0 {
            // Not launched: the job is still ours to free.
            // SAFETY: `arg` came from Box::into_raw above and was not handed over.
            drop(unsafe { Box::from_raw(arg) });
            return Err(DpdkError::Launch(lcore, strerror(-r), r));
        }
        Ok(Lcore { id: lcore })
    }
}

/// A job running on a worker lcore ([`Eal::launch`]).
#[derive(Debug)]
#[must_use = "wait for the lcore before EAL is cleaned up"]
pub struct Lcore {
    id: u32,
}

impl Lcore {
    /// The lcore's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Waits for the job to return, and gives its value.
    pub fn wait(self) -> i32 {
        // SAFETY: the lcore was launched by us; waiting only reads its state.
        unsafe { sys::rte_eal_wait_lcore(self.id) }
    }
}

/// A ring of mbufs between lcores (DPDK's lock-free `rte_ring`): any number of producers and
/// consumers unless made single-producer / single-consumer. Mbufs in it belong to the ring;
/// whatever is left when it is dropped is freed.
#[derive(Debug)]
pub struct MbufRing {
    ring: NonNull<sys::rte_ring>,
    /// For a single-producer ring: the thread that enqueues ([`thread_tag`]; 0 until the
    /// first enqueue claims it). Other threads' enqueues take nothing.
    producer: Option<AtomicU64>,
    /// The same for dequeues of a single-consumer ring.
    consumer: Option<AtomicU64>,
}

// SAFETY: rte_ring is built for concurrent use: multi-producer/multi-consumer rings take any
// number of threads. A single-producer (-consumer) one is used by one thread only: the first
// to enqueue (dequeue) claims it and every other thread's call is refused ([`claim`]).
unsafe impl Send for MbufRing {}
// SAFETY: as above.
unsafe impl Sync for MbufRing {}

/// A number for the calling thread, unique in the process and never 0.
fn thread_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TAG: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TAG.with(|t| *t)
}

/// Whether the calling thread may use the one-thread side of a ring that `owner` guards
/// (`None`: any thread may): the first thread to ask claims it for good.
#[inline]
fn claim(owner: &Option<AtomicU64>) -> bool {
    let Some(owner) = owner else {
        return true;
    };
    let me = thread_tag();
    match owner.load(Ordering::Relaxed) {
        0 => match owner.compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => true,
            Err(other) => other == me,
        },
        x => x == me,
    }
}

impl MbufRing {
    /// A ring of `count` slots (a power of two; it holds `count - 1` mbufs). `single_producer`
    /// / `single_consumer` select the faster one-thread variants: only one thread may then
    /// enqueue / dequeue, the first that does (the others' calls move nothing).
    pub fn new(
        _eal: &Eal,
        name: &str,
        count: u32,
        single_producer: bool,
        single_consumer: bool,
    ) -> Result<MbufRing, DpdkError> {
        const RING_F_SP_ENQ: u32 = 1;
        const RING_F_SC_DEQ: u32 = 2;
        let cname = CString::new(name).map_err(|_| DpdkError::Nul)?;
        let flags = if single_producer { RING_F_SP_ENQ } else { 0 }
            | if single_consumer { RING_F_SC_DEQ } else { 0 };
        // SAFETY: EAL is initialised (we were handed an Eal); reads the caller's NUMA socket.
        let socket = unsafe { sys::rte_socket_id() } as i32;
        // SAFETY: a live C string; EAL is initialised.
        let r = unsafe { sys::rte_ring_create(cname.as_ptr(), count, socket, flags) };
        let one = |single: bool| single.then(|| AtomicU64::new(0));
        match NonNull::new(r) {
            Some(ring) => Ok(MbufRing {
                ring,
                producer: one(single_producer),
                consumer: one(single_consumer),
            }),
            None => {
                let e = errno();
                Err(DpdkError::Ring(name.to_owned(), strerror(e), e))
            }
        }
    }

    /// Moves as many of the burst's mbufs as fit into the ring, in order; the rest stay in the
    /// burst. Returns how many went in (none from a thread other than a single-producer
    /// ring's own).
    pub fn enqueue(&self, burst: &mut Burst) -> usize {
        if !claim(&self.producer) {
            return 0;
        }
        let n = burst.pkts.len().min(BURST);
        let mut raw = [std::ptr::null_mut::<std::os::raw::c_void>(); BURST];
        for (slot, m) in raw.iter_mut().zip(&burst.pkts[..n]) {
            *slot = m.m.as_ptr().cast();
        }
        // SAFETY: a live ring; `raw[..n]` are mbufs the burst owns. The ring takes ownership
        // of the first `put`, which we then forget below.
        let put = unsafe {
            sys::rte_ring_enqueue_burst(
                self.ring.as_ptr(),
                raw.as_ptr(),
                n as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        for m in burst.pkts.drain(..put) {
            std::mem::forget(m);
        }
        put
    }

    /// Takes up to the burst's free room from the ring. Returns how many came out (none for a
    /// thread other than a single-consumer ring's own).
    pub fn dequeue(&self, burst: &mut Burst) -> usize {
        if !claim(&self.consumer) {
            return 0;
        }
        // SAFETY: this thread is the ring's only consumer if it has one.
        unsafe { self.dequeue_unchecked(burst) }
    }

    /// [`MbufRing::dequeue`] without the consumer check.
    ///
    /// # Safety
    /// No other thread may dequeue at the same time from a single-consumer ring.
    unsafe fn dequeue_unchecked(&self, burst: &mut Burst) -> usize {
        let room = BURST.saturating_sub(burst.pkts.len());
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        // SAFETY: a live ring; `raw` has room for `room` pointers.
        let got = unsafe {
            sys::rte_ring_dequeue_burst(
                self.ring.as_ptr(),
                raw.as_mut_ptr().cast(),
                room as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        // SAFETY: what comes out are mbufs an enqueue handed over, now ours.
        unsafe { burst.adopt(&raw[..got]) };
        got
    }
}

impl Drop for MbufRing {
    fn drop(&mut self) {
        let mut b = Burst::new();
        // SAFETY: `&mut self`: no other thread holds the ring any more.
        while unsafe { self.dequeue_unchecked(&mut b) } > 0 {
            b.pkts.clear();
        }
        // SAFETY: the ring came from rte_ring_create and is empty; nobody else holds it (we
        // are dropping the only handle).
        unsafe { sys::rte_ring_free(self.ring.as_ptr()) }
    }
}

/// A pool of packet mbufs. It is never freed (see the module's docs): its mbufs may outlive
/// the handle.
#[derive(Debug)]
pub struct Mempool {
    pool: NonNull<sys::rte_mempool>,
}

// SAFETY: DPDK mempools are thread-safe (per-lcore caches plus a lock-free ring).
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `n` mbufs with `data_room` bytes each (headroom included).
    pub fn new_pktmbuf(
        _eal: &Eal,
        name: &str,
        n: u32,
        cache: u32,
        data_room: u16,
    ) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::Nul)?;
        // SAFETY: EAL is up (we were given &Eal); the name is a live C string, copied by DPDK.
        let p = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                n,
                cache,
                0,
                data_room,
                sys::rte_socket_id() as i32,
            )
        };
        NonNull::new(p).map(|pool| Mempool { pool }).ok_or_else(|| {
            let e = errno();
            DpdkError::Mempool(name.to_owned(), strerror(e), e)
        })
    }

    /// Mbufs currently in the pool (not handed out).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive for &self.
        unsafe { sys::rte_mempool_avail_count(self.pool.as_ptr()) }
    }

    /// Takes an mbuf, or `None` when the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is alive; a non-null result is a fresh mbuf we now own.
        NonNull::new(unsafe { sys::rte_pktmbuf_alloc(self.pool.as_ptr()) }).map(|m| Mbuf { m })
    }
}

/// One owned, single-segment packet mbuf.
#[derive(Debug)]
pub struct Mbuf {
    m: NonNull<sys::rte_mbuf>,
}

// SAFETY: an Mbuf is exclusively owned; mbufs may be freed from any lcore.
unsafe impl Send for Mbuf {}

impl Mbuf {
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a live mbuf.
        unsafe { self.m.as_ref() }
    }
    /// Gives the mbuf up (to a driver).
    fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.m.as_ptr();
        std::mem::forget(self);
        p
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nobody else refers to it.
        unsafe { sys::rte_pktmbuf_free(self.m.as_ptr()) }
    }
}

impl PacketBuf for Mbuf {
    fn data(&self) -> &[u8] {
        let r = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's data room, which
        // lives as long as we own the mbuf.
        unsafe {
            std::slice::from_raw_parts(
                (r.buf_addr as *const u8).add(usize::from(r.data_off)),
                usize::from(r.data_len),
            )
        }
    }
    fn data_mut(&mut self) -> &mut [u8] {
        let r = self.raw();
        let (addr, off, len) = (r.buf_addr as *mut u8, r.data_off, r.data_len);
        // SAFETY: as in `data`, and we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(addr.add(usize::from(off)), usize::from(len)) }
    }
    fn headroom(&self) -> usize {
        // SAFETY: live mbuf.
        usize::from(unsafe { sys::rte_pktmbuf_headroom(self.m.as_ptr()) })
    }
    fn tailroom(&self) -> usize {
        // SAFETY: live mbuf.
        usize::from(unsafe { sys::rte_pktmbuf_tailroom(self.m.as_ptr()) })
    }
    fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let n = u16::try_from(n).map_err(|_| BufError::NoHeadroom)?;
        // SAFETY: live, exclusively owned mbuf; NULL means no headroom and nothing changed.
        let p = unsafe { sys::rte_pktmbuf_prepend(self.m.as_ptr(), n) };
        if p.is_null() {
            return Err(BufError::NoHeadroom);
        }
        Ok(self.data_mut())
    }
    fn append(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let n = u16::try_from(n).map_err(|_| BufError::NoTailroom)?;
        // SAFETY: as above; NULL means no tailroom and nothing changed.
        let p = unsafe { sys::rte_pktmbuf_append(self.m.as_ptr(), n) };
        if p.is_null() {
            return Err(BufError::NoTailroom);
        }
        Ok(self.data_mut())
    }
    fn adj(&mut self, n: usize) -> Result<(), BufError> {
        let n = u16::try_from(n).map_err(|_| BufError::TooShort)?;
        // SAFETY: as above; NULL means too short and nothing changed.
        let p = unsafe { sys::rte_pktmbuf_adj(self.m.as_ptr(), n) };
        if p.is_null() {
            Err(BufError::TooShort)
        } else {
            Ok(())
        }
    }
    fn trim(&mut self, n: usize) -> Result<(), BufError> {
        let n = u16::try_from(n).map_err(|_| BufError::TooShort)?;
        // SAFETY: as above; -1 means too short and nothing changed.
        if unsafe { sys::rte_pktmbuf_trim(self.m.as_ptr(), n) } < 0 {
            Err(BufError::TooShort)
        } else {
            Ok(())
        }
    }
}

/// Largest burst the queue handles take.
pub const BURST: usize = 32;

/// A burst of mbufs: capacity for [`BURST`] allocated once, then reused without allocating.
#[derive(Debug, Default)]
pub struct Burst {
    pkts: Vec<Mbuf>,
}

impl Burst {
    /// An empty burst with room for [`BURST`] mbufs (allocated once, reused).
    pub fn new() -> Self {
        Self {
            pkts: Vec::with_capacity(BURST),
        }
    }
    /// The packets.
    pub fn pkts(&mut self) -> &mut Vec<Mbuf> {
        &mut self.pkts
    }

    /// Takes ownership of mbufs a driver or a ring handed over (null pointers are skipped).
    ///
    /// # Safety
    /// Each non-null pointer must be a live mbuf that nothing else owns or will free.
    unsafe fn adopt(&mut self, raw: &[*mut sys::rte_mbuf]) {
        for p in raw {
            if let Some(m) = NonNull::new(*p) {
                self.pkts.push(Mbuf { m });
            }
        }
    }
}

/// How a port came to receive an extra MAC address ([`Port::receive_mac`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraMac {
    /// A MAC filter entry in the device.
    Filter,
    /// Promiscuous mode: every frame on the link arrives (the pipelines drop what is not
    /// theirs as `other_host`).
    Promiscuous,
}

/// An ethdev port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    id: u16,
}

/// The ports started in this process, each with a token its queue handles hold: a port is
/// started once, and stopped only when no handle of its queues is left (a stopped port's
/// queues are released, and polling one would read freed memory).
static STARTED: Mutex<Option<HashMap<u16, Arc<()>>>> = Mutex::new(None);

fn port_err(port: u16, what: &'static str, r: i32) -> DpdkError {
    DpdkError::Port {
        port,
        what,
        msg: strerror(-r),
        errno: r,
    }
}

impl Port {
    /// The port a device was probed as (`net_ring0`, `0000:03:00.0`, ...).
    pub fn by_name(_eal: &Eal, name: &str) -> Result<Port, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::Nul)?;
        let mut id = 0u16;
        // SAFETY: live C string and a valid out-pointer.
        let r = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if r < 0 {
            return Err(DpdkError::NoPort(name.to_owned()));
        }
        Ok(Port { id })
    }

    /// The port number.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Configures `rxq` receive and `txq` transmit queues of `desc` descriptors, receiving into
    /// `pool`, and starts the port (once: a second start is refused). Returns one handle per
    /// queue. With several receive queues
    /// the device spreads flows over them by RSS on the IP addresses, TCP/UDP ports and ESP
    /// SPIs (the hash types it supports of those); a device without RSS (af_packet, which spreads its
    /// `qpairs` by PACKET_FANOUT_HASH) keeps its own way.
    pub fn start(
        &self,
        rxq: u16,
        txq: u16,
        desc: u16,
        pool: &Mempool,
    ) -> Result<(Vec<RxQueue>, Vec<TxQueue>), DpdkError> {
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        let started = started.get_or_insert_with(HashMap::new);
        if started.contains_key(&self.id) {
            return Err(port_err(self.id, "start (it was started before)", -114));
        }
        let mut conf = sys::rte_eth_conf::default();
        if rxq > 1 {
            let hf = self.rss_hash_types()?;
            if hf != 0 {
                conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
            }
        }
        // SAFETY: valid port id from by_name, a zeroed (default) configuration.
        let r = unsafe { sys::rte_eth_dev_configure(self.id, rxq, txq, &conf) };
        if r < 0 {
            return Err(port_err(self.id, "configure", r));
        }
        for q in 0..rxq {
            // SAFETY: configured port; NULL rx_conf means the driver's defaults; the pool
            // outlives the port's use (caller keeps it).
            let r = unsafe {
                sys::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    desc,
                    sys::rte_socket_id(),
                    std::ptr::null(),
                    pool.pool.as_ptr(),
                )
            };
            if r < 0 {
                return Err(port_err(self.id, "rx queue setup", r));
            }
        }
        for q in 0..txq {
            // SAFETY: as above.
            let r = unsafe {
                sys::rte_eth_tx_queue_setup(
                    self.id,
                    q,
                    desc,
                    sys::rte_socket_id(),
                    std::ptr::null(),
                )
            };
            if r < 0 {
                return Err(port_err(self.id, "tx queue setup", r));
            }
        }
        // SAFETY: configured port.
        let r = unsafe { sys::rte_eth_dev_start(self.id) };
        if r < 0 {
            return Err(port_err(self.id, "start", r));
        }
        let token = Arc::new(());
        started.insert(self.id, token.clone());
        Ok((
            (0..rxq)
                .map(|q| RxQueue {
                    port: self.id,
                    queue: q,
                    _started: token.clone(),
                    _one_core: PhantomData,
                })
                .collect(),
            (0..txq)
                .map(|q| TxQueue {
                    port: self.id,
                    queue: q,
                    _started: token.clone(),
                    _one_core: PhantomData,
                })
                .collect(),
        ))
    }

    /// The RSS hash types this port will use: IPv4/IPv6 addresses and TCP/UDP ports, fragments
    /// and other protocols by address, and ESP by its SPI, as far as the device supports them
    /// (0: no RSS). With the SPI in the hash, the CHILD_SAs of one peer (per-resource ones,
    /// RFC 9611) spread over the receive queues, while each SA's packets stay on one queue, in
    /// order for its replay window.
    pub fn rss_hash_types(&self) -> Result<u64, DpdkError> {
        // RTE_ETH_RSS_IPV4 | FRAG_IPV4 | NONFRAG_IPV4_TCP | NONFRAG_IPV4_UDP |
        // NONFRAG_IPV4_OTHER, the same for IPv6 (bits 2-5, 7, 8-11, 13 of rte_ethdev.h), and
        // RTE_ETH_RSS_ESP (bit 27).
        const WANT: u64 = (1 << 27)
            | (1 << 2)
            | (1 << 3)
            | (1 << 4)
            | (1 << 5)
            | (1 << 7)
            | (1 << 8)
            | (1 << 9)
            | (1 << 10)
            | (1 << 11)
            | (1 << 13);
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: valid port id and out-pointer.
        let r = unsafe { sys::rte_eth_dev_info_get(self.id, &mut info) };
        if r < 0 {
            return Err(port_err(self.id, "dev info get", r));
        }
        Ok(info.flow_type_rss_offloads & WANT)
    }

    /// Stops the port: refused while a handle of its queues is left (drop them first).
    pub fn stop(&self) -> Result<(), DpdkError> {
        let started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = started.as_ref().and_then(|m| m.get(&self.id)) {
            if Arc::strong_count(token) > 1 {
                return Err(port_err(self.id, "stop (its queues are still in use)", -16));
            }
        }
        // SAFETY: valid port id; no queue handle is left to poll it.
        let r = unsafe { sys::rte_eth_dev_stop(self.id) };
        if r < 0 {
            return Err(port_err(self.id, "stop", r));
        }
        Ok(())
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: valid port id and out-pointer.
        let r = unsafe { sys::rte_eth_macaddr_get(self.id, &mut a) };
        if r < 0 {
            return Err(port_err(self.id, "macaddr get", r));
        }
        Ok(a.addr_bytes)
    }

    /// Makes the port receive frames sent to `mac` as well as to its own address: a filter
    /// entry (`rte_eth_dev_mac_addr_add`), or where the driver has none (af_packet, an
    /// untrusted SR-IOV VF) promiscuous mode. Returns which of the two it took.
    pub fn receive_mac(&self, mac: [u8; 6]) -> Result<ExtraMac, DpdkError> {
        let mut a = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port id and a pointer to an address that lives across the call.
        let r = unsafe { sys::rte_eth_dev_mac_addr_add(self.id, &mut a, 0) };
        if r == 0 {
            return Ok(ExtraMac::Filter);
        }
        // SAFETY: valid port id.
        let p = unsafe { sys::rte_eth_promiscuous_enable(self.id) };
        if p < 0 {
            return Err(port_err(
                self.id,
                "mac addr add, then promiscuous enable",
                p,
            ));
        }
        Ok(ExtraMac::Promiscuous)
    }

    /// Makes the port receive every multicast frame (`rte_eth_allmulticast_enable`): VRRP's
    /// advertisements and IPv6 neighbor solicitations go to groups no unicast filter passes.
    pub fn receive_multicast(&self) -> Result<(), DpdkError> {
        // SAFETY: valid port id.
        let r = unsafe { sys::rte_eth_allmulticast_enable(self.id) };
        if r < 0 {
            return Err(port_err(self.id, "allmulticast enable", r));
        }
        Ok(())
    }

    /// Whether the driver reports the link up, without waiting for it to settle
    /// (`rte_eth_link_get_nowait`). Some virtual devices (af_packet) always say up.
    pub fn link_up(&self) -> Result<bool, DpdkError> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: valid port id and out-pointer.
        let r = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut l) };
        if r < 0 {
            return Err(port_err(self.id, "link get", r));
        }
        Ok(l.link_status() != 0)
    }

    /// Packets and bytes received and sent, and receive drops (ipackets, ibytes, opackets,
    /// obytes, imissed).
    pub fn stats(&self) -> Result<[u64; 5], DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port id and out-pointer.
        let r = unsafe { sys::rte_eth_stats_get(self.id, &mut s) };
        if r < 0 {
            return Err(port_err(self.id, "stats get", r));
        }
        Ok([s.ipackets, s.ibytes, s.opackets, s.obytes, s.imissed])
    }
}

/// A receive queue, polled by one lcore.
#[derive(Debug)]
pub struct RxQueue {
    port: u16,
    queue: u16,
    /// Holds the port started ([`Port::stop`]).
    _started: Arc<()>,
    _one_core: PhantomData<std::cell::Cell<()>>,
}

impl RxQueue {
    /// Receives up to the burst's free room; returns how many arrived.
    pub fn rx(&mut self, burst: &mut Burst) -> usize {
        let room = BURST.saturating_sub(burst.pkts.len());
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        // SAFETY: the port is started and this queue is polled by this handle only; `raw`
        // has room for `room` pointers.
        let n =
            unsafe { sys::rte_eth_rx_burst(self.port, self.queue, raw.as_mut_ptr(), room as u16) };
        // SAFETY: the driver handed us these `n` mbufs.
        unsafe { burst.adopt(&raw[..usize::from(n)]) };
        usize::from(n)
    }
}

/// A transmit queue, used by one lcore.
#[derive(Debug)]
pub struct TxQueue {
    port: u16,
    queue: u16,
    /// Holds the port started ([`Port::stop`]).
    _started: Arc<()>,
    _one_core: PhantomData<std::cell::Cell<()>>,
}

impl TxQueue {
    /// Sends the burst's packets; those the driver did not take stay in the burst (the
    /// caller retries or drops them). Returns how many were sent.
    pub fn tx(&mut self, burst: &mut Burst) -> usize {
        let n = burst.pkts.len().min(BURST);
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        for (slot, m) in raw.iter_mut().zip(burst.pkts.drain(..n)) {
            *slot = m.into_raw();
        }
        // SAFETY: the port is started, this queue is used by this handle only, and `raw[..n]`
        // are mbufs we owned; the driver takes ownership of the first `sent`.
        let sent = usize::from(unsafe {
            sys::rte_eth_tx_burst(self.port, self.queue, raw.as_mut_ptr(), n as u16)
        });
        // Re-own what the driver refused, in order, in front of anything left over. The
        // vector's capacity already holds them (they were drained from it): no allocation.
        for (k, p) in raw[sent..n].iter().enumerate() {
            if let Some(m) = NonNull::new(*p) {
                burst.pkts.insert(k, Mbuf { m });
            }
        }
        sent
    }
}
