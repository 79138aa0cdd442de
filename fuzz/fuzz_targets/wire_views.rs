//! Every wire view on arbitrary bytes: checked construction, then every accessor and, where
//! there is one, Repr parse → emit → parse. No input may panic.
#![no_main]

use dataplane::buf::PacketBuf;
use dataplane::neigh;
use dataplane::wire::{
    ah, arp, esp, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, udp_encap, vrrp,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ethernet::Frame::new_checked(data) {
        let _ = (
            f.dst_addr(),
            f.src_addr(),
            f.ethertype(),
            f.vlan(),
            f.payload(),
        );
    }
    if let Ok(p) = ipv4::Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.ident(),
            p.dont_frag(),
        );
        let _ = (
            p.more_frags(),
            p.frag_offset(),
            p.hop_limit(),
            p.next_header(),
            p.checksum(),
        );
        let _ = (
            p.src_addr(),
            p.dst_addr(),
            p.options(),
            p.payload(),
            p.verify_checksum(),
        );
        if let Ok(r) = ipv4::Repr::parse(&p) {
            let mut b = vec![0u8; r.buffer_len() + r.payload_len];
            r.emit(&mut b).unwrap();
            let q = ipv4::Packet::new_checked(&b[..]).unwrap();
            assert_eq!(ipv4::Repr::parse(&q).unwrap(), r);
        }
    }
    if let Ok(p) = ipv6::Packet::new_checked(data) {
        let _ = (
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
            p.next_header(),
        );
        let _ = (
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
            p.payload(),
            p.upper_layer(),
        );
        let r = ipv6::Repr::parse(&p).unwrap();
        let mut b = vec![0u8; r.buffer_len() + r.payload_len];
        r.emit(&mut b).unwrap();
        assert_eq!(
            ipv6::Repr::parse(&ipv6::Packet::new_checked(&b[..]).unwrap()).unwrap(),
            r
        );
    }
    if let Ok(p) = esp::Packet::new_checked(data) {
        let _ = (p.spi(), p.sequence_number(), p.payload());
    }
    if let Ok(p) = ah::Packet::new_checked(data) {
        let _ = (
            p.next_header(),
            p.spi(),
            p.sequence_number(),
            p.icv(),
            p.payload(),
        );
    }
    if let Ok(p) = arp::Packet::new_checked(data) {
        if let Ok(r) = arp::Repr::parse(&p) {
            let mut b = [0u8; arp::PACKET_LEN];
            r.emit(&mut b).unwrap();
            assert_eq!(&b[..], &data[..arp::PACKET_LEN]);
        }
    }
    if let Ok(p) = udp::Packet::new_checked(data) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.payload(),
            udp::Repr::parse(&p),
        );
    }
    let mut owned = data.to_vec();
    if let Ok(mut p) = tcp::Packet::new_checked(&mut owned[..]) {
        let _ = (
            p.seq_number(),
            p.ack_number(),
            p.syn(),
            p.options(),
            p.payload(),
            p.mss(),
        );
        p.clamp_mss(1200);
    }
    if let Ok(p) = icmpv4::Packet::new_checked(data) {
        let _ = (
            p.msg_type(),
            p.next_hop_mtu(),
            p.data(),
            p.verify_checksum(),
        );
    }
    if let Ok(p) = icmpv6::Packet::new_checked(data) {
        let _ = (p.msg_type(), p.mtu(), p.data());
    }
    if let Ok(p) = vrrp::Packet::new_checked(data) {
        let _ = (
            p.version(),
            p.kind(),
            p.vrid(),
            p.priority(),
            p.max_adver_int(),
        );
        let _ = (p.checksum(), p.addr(0), p.addr(255));
        let _ = p.verify_checksum(vrrp::GROUP_V4, vrrp::GROUP_V4);
    }
    if let Ok(p) = vrrp::Packet::new_checked_v6(data) {
        let _ = (p.addr6(0), p.addr6(255));
        let _ = p.verify_checksum_v6(vrrp::GROUP_V6, vrrp::GROUP_V6);
    }
    // The gateway's in-place answers, on a copy: an echo answered once is a reply, which is
    // never answered again.
    let mut b = data.to_vec();
    if dataplane::host::icmp_echo_reply_if(&mut b, |_| true) {
        assert!(!dataplane::host::icmp_echo_reply_if(&mut b, |_| true));
    }
    let mut b = data.to_vec();
    if dataplane::host::icmpv6_echo_reply_if(&mut b, |_| true) {
        assert!(!dataplane::host::icmpv6_echo_reply_if(&mut b, |_| true));
    }
    let mut b = data.to_vec();
    let _ = dataplane::host::arp_reply_if(&mut b, |_| true, [2, 0, 0, 0, 0, 1]);
    let _ = dataplane::host::decrement_ttl(&mut b);
    // Router solicitations (whole frames), as the workers tell them apart.
    if dataplane::ra::is_router_solicit(data) {
        assert_eq!((data[20], data[21], data[54]), (58, 255, 133));
    }
    // Advertisements as the gateway reads them (an IPv4 or IPv6 datagram), and what a router
    // of the advertisement's family makes of them.
    if let Ok(a) = dataplane::vrrp::parse_advert(data) {
        let (primary, vip): (std::net::IpAddr, std::net::IpAddr) = if a.src.is_ipv4() {
            ([10, 0, 0, 1].into(), [10, 0, 0, 9].into())
        } else {
            (
                "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().into(),
                "2001:db8::9".parse::<std::net::Ipv6Addr>().unwrap().into(),
            )
        };
        let mut r = dataplane::vrrp::Router::new(dataplane::vrrp::Config {
            vrid: a.vrid,
            priority: 100,
            interval_cs: 100,
            preempt: true,
            preempt_delay_ms: u64::from(a.priority) * 100,
            primary,
            vips: vec![vip],
        });
        r.start(0);
        let _ = r.receive(&a, 10);
        let _ = r.tick(u64::MAX / 2);
        let _ = r.receive(&a, u64::MAX / 2);
        // Link faults in between, as the input's last byte says.
        let faults = data.last().copied().unwrap_or(0);
        for bit in 0..8u64 {
            let _ = r.set_fault(faults & (1 << bit) != 0, u64::MAX / 2 + bit);
            let _ = r.receive(&a, u64::MAX / 2 + bit);
            let _ = r.tick_held(u64::MAX / 2 + bit * 1000, bit % 2 == 0);
        }
        let _ = r.took_over_on_release();
    }
    let _ = udp_encap::classify(data);
    let _ = dataplane::flow::flow_key(data);
    let _ = dataplane::host::ipv4_checksum_ok(data);
    // Neighbour discovery: what a frame teaches, the answer written over it (the buffer grown
    // or cut to the advertisement), and the table learning it.
    if let Some((ip, mac, heard)) = neigh::nd_lesson(data, |a| a.segments()[7] & 1 == 0) {
        let mut t = neigh::NeighTable::new(2);
        let _ = t.resolve(ip, 0);
        t.learn(ip, mac, 1, heard);
        let _ = t.resolve(ip, 2);
    }
    if let Some((_, src, target, _)) = neigh::parse_nd(data) {
        let mut m = dataplane::buf::HeapBuf::from_slice_with_room(data, 64, 128);
        if neigh::answer_solicit(&mut m, [2, 0, 0, 0, 0, 1], target, src, [2, 0, 0, 0, 0, 2]) {
            assert_eq!(m.len(), neigh::NA_FRAME_LEN);
        }
    }
});
