//! DPDK wrapper smoke test (feature `dpdk`, needs root): EAL without hugepages, a mempool, a
//! net_ring port that loops its TX back to RX, mbufs used through `PacketBuf`, an ESP round
//! trip through real mbufs, a worker lcore fed through an mbuf ring, and a two-queue port with
//! RSS whose second queue is polled from the worker lcore. EAL can start once per process, so
//! this is one test.
#![cfg(feature = "dpdk")]

use dataplane::buf::{BufError, PacketBuf};
use dataplane::crypto::{Cipher, Integrity};
use dataplane::dpdk::{Burst, Eal, MbufRing, Mempool, Port};
use dataplane::outer::{self, Arrival};
use dataplane::sa::{Direction, Endpoints, InboundSa, Mode, OutboundSa, SaParams};

fn udp4(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[192, 168, 10, 5]);
    p[16..20].copy_from_slice(&[192, 168, 20, 7]);
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    let c = !dataplane::wire::checksum::data(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn eal_mempool_mbuf_ring_port_and_esp() {
    // A prefix of our own; its runtime directory is removed at the end (and by tests/run.sh
    // if the test dies first).
    let prefix = format!("fgtest{}", std::process::id());
    let eal = Eal::init(&[
        "dpdk_smoke",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--vdev=net_ring0",
        "--vdev=net_null0",
        "-l",
        "0,1",
        "--log-level=error",
        "--file-prefix",
        &prefix,
    ])
    .expect("EAL init (needs root)");
    assert!(matches!(
        Eal::init(&["again"]),
        Err(dataplane::dpdk::DpdkError::AlreadyInitialised)
    ));
    let pool = Mempool::new_pktmbuf(&eal, "fgtest", 1023, 0, 2048 + 128).unwrap();
    let total = pool.available();

    // PacketBuf on a real mbuf.
    let mut m = pool.alloc().unwrap();
    assert_eq!(m.len(), 0);
    assert_eq!(m.headroom(), 128, "RTE_PKTMBUF_HEADROOM");
    m.append(4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
    m.prepend(2).unwrap()[..2].copy_from_slice(&[9, 8]);
    assert_eq!(m.data(), &[9, 8, 1, 2, 3, 4]);
    m.adj(1).unwrap();
    m.trim(2).unwrap();
    assert_eq!(m.data(), &[8, 1, 2]);
    assert_eq!(m.adj(10), Err(BufError::TooShort));
    assert_eq!(m.prepend(4096).err(), Some(BufError::NoHeadroom));
    drop(m);
    assert_eq!(pool.available(), total, "dropping an Mbuf returns it");

    // ESP through mbufs: encap, loop through the ring port, decap.
    let mut o = SaParams::new(0x77, Direction::Out, Cipher::AesGcm128, Integrity::None);
    o.mode = Mode::Tunnel;
    o.enc_key = vec![5u8; 20].into();
    o.tunnel = Some(Endpoints {
        local: "10.1.0.1".parse().unwrap(),
        remote: "10.2.0.1".parse().unwrap(),
    });
    let mut i = o.clone();
    i.direction = Direction::In;
    i.tunnel = Some(Endpoints {
        local: "10.2.0.1".parse().unwrap(),
        remote: "10.1.0.1".parse().unwrap(),
    });
    let out = OutboundSa::new(&o).unwrap();
    let inb = InboundSa::new(&i).unwrap();

    let port = Port::by_name(&eal, "net_ring0").unwrap();
    let (mut rx, mut tx) = port.start(1, 1, 512, &pool).unwrap();
    let plain: Vec<Vec<u8>> = (0..20).map(|k| udp4(40 + k * 50)).collect();
    let mut burst = Burst::new();
    for p in &plain {
        let mut m = pool.alloc().unwrap();
        m.append(p.len()).unwrap().copy_from_slice(p);
        dataplane::esp::encap(&out, &mut m).unwrap();
        burst.pkts().push(m);
    }
    assert_eq!(tx[0].tx(&mut burst), plain.len());
    assert!(burst.pkts().is_empty());
    let mut got = Burst::new();
    let mut tries = 0;
    while got.pkts().len() < plain.len() && tries < 1000 {
        rx[0].rx(&mut got);
        tries += 1;
    }
    assert_eq!(
        got.pkts().len(),
        plain.len(),
        "net_ring loops TX back to RX"
    );
    for (m, p) in got.pkts().iter_mut().zip(&plain) {
        let Ok(Arrival::Ipsec(o)) = outer::classify(m.data(), |_| false) else {
            panic!("not ESP")
        };
        dataplane::esp::decap(&inb, m, &o).unwrap();
        assert_eq!(m.data(), &p[..]);
    }
    let stats = port.stats().unwrap();
    assert_eq!(stats[2], plain.len() as u64, "opackets");
    drop(got);
    // A port is started once, and stops only when no handle of its queues is left.
    assert!(port.start(1, 1, 512, &pool).is_err(), "started twice");
    assert!(port.stop().is_err(), "stopped under its queues");
    drop(rx);
    assert!(port.stop().is_err(), "the transmit queue is still held");
    drop(tx);
    port.stop().unwrap();
    assert_eq!(pool.available(), total, "no mbuf leaked");

    // A worker lcore: EAL's thread on CPU 1, fed mbufs through a multi-producer ring.
    assert_eq!(eal.worker_lcores(), vec![1]);
    let ring = std::sync::Arc::new(MbufRing::new(&eal, "fgtest-ring", 64, false, false).unwrap());
    let mut b = Burst::new();
    for k in 0..40u8 {
        let mut m = pool.alloc().unwrap();
        m.append(2).unwrap().copy_from_slice(&[k, 0xa5]);
        b.pkts().push(m);
        if b.pkts().len() == 16 {
            assert_eq!(ring.enqueue(&mut b), 16);
        }
    }
    assert_eq!(ring.enqueue(&mut b), 8);
    let r2 = ring.clone();
    let worker = eal
        .launch(1, move || {
            // In order, each once; the sum of the first bytes comes back as the lcore's value.
            let (mut b, mut seen, mut sum) = (Burst::new(), 0u8, 0i32);
            while seen < 40 {
                r2.dequeue(&mut b);
                for m in b.pkts().drain(..) {
                    if m.data() != [seen, 0xa5] {
                        return -2;
                    }
                    sum += i32::from(seen);
                    seen += 1;
                }
            }
            sum
        })
        .unwrap();
    assert_eq!(
        worker.wait(),
        (0..40).sum::<i32>(),
        "the worker saw all 40, in order"
    );
    // An lcore EAL did not start (or the main one) is refused.
    assert!(matches!(
        eal.launch(77, || 0),
        Err(dataplane::dpdk::DpdkError::Launch(77, ..))
    ));
    assert!(eal.launch(0, || 0).is_err());
    // A single-producer / single-consumer ring serves the first thread that uses each side:
    // the worker lcore's enqueue and dequeue on this one take nothing.
    let one = std::sync::Arc::new(MbufRing::new(&eal, "fgtest-one", 64, true, true).unwrap());
    b.pkts().push(pool.alloc().unwrap());
    b.pkts().push(pool.alloc().unwrap());
    assert_eq!(
        one.enqueue(&mut b),
        2,
        "this thread claims the producer side"
    );
    let mut got = Burst::new();
    assert_eq!(one.dequeue(&mut got), 2, "and the consumer side");
    b.pkts().push(got.pkts().pop().unwrap());
    assert_eq!(one.enqueue(&mut b), 1);
    drop(got);
    let o2 = one.clone();
    let mut spare = Burst::new();
    spare.pkts().push(pool.alloc().unwrap());
    let other = eal
        .launch(1, move || {
            let mut b = Burst::new();
            let took = o2.dequeue(&mut b) as i32;
            took * 10 + o2.enqueue(&mut spare) as i32
        })
        .unwrap();
    assert_eq!(other.wait(), 0, "neither side served the second thread");
    assert_eq!(
        one.dequeue(&mut b),
        1,
        "this thread claims the consumer side"
    );
    b.pkts().clear();
    drop(one);
    // What is left in a ring is freed with it.
    for _ in 0..5 {
        b.pkts().push(pool.alloc().unwrap());
    }
    assert_eq!(ring.enqueue(&mut b), 5);
    drop(ring);
    assert_eq!(pool.available(), total, "the ring freed its leftovers");

    // Two receive queues with RSS (net_null: every hash type we ask for); queue 1 is polled
    // from the worker lcore, queue 0 from here.
    let null = Port::by_name(&eal, "net_null0").unwrap();
    assert_ne!(null.rss_hash_types().unwrap(), 0, "net_null offers RSS");
    let (mut rxq, txq) = null.start(2, 2, 256, &pool).unwrap();
    assert_eq!((rxq.len(), txq.len()), (2, 2));
    let mut q1 = rxq.pop().unwrap();
    let worker = eal
        .launch(1, move || {
            let mut b = Burst::new();
            let n = q1.rx(&mut b);
            n as i32
        })
        .unwrap();
    let mut b0 = Burst::new();
    let n0 = rxq[0].rx(&mut b0);
    assert!(n0 > 0, "queue 0 delivers");
    assert!(worker.wait() > 0, "queue 1 delivers on the worker lcore");
    drop(b0);
    drop((rxq, txq));
    null.stop().unwrap();
    assert_eq!(pool.available(), total, "no mbuf leaked");
    // EAL and the pool stay until the process exits (nothing made from them can outlive them).
    let _ = (pool, eal);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}
