#!/usr/bin/env python3
"""The ferrogate binary end to end on DPDK pcap ports, checked with scapy.

Gateway A (deploy/examples/site-a.yaml's shape) gets two net_pcap ports. The inside port
replays plain frames from site A; the outside port replays ESP that scapy encrypted as gateway
B would. ferrogate runs until its ports fall idle. Then scapy checks:
  - every frame for site B left the outside port as ESP that decrypts to the original packet,
    to B's MAC;
  - the bypass flow (SSH to 192.168.20.10) left in the clear, and traffic matching no policy
    was dropped (policy_discard);
  - every ESP packet from B came out of the inside port decrypted, byte for byte (TTL one
    lower: the gateway is a hop), to the host's MAC; a replayed one and a tampered one were
    dropped and counted;
  - the gateway answered ARP and ping for its inside address, and clamped the MSS of a TCP
    SYN entering the tunnel (MTU 1500 - 160 = 1340);
  - ESP from B that scapy fragmented (400-byte fragments, shuffled) was reassembled by the
    gateway and came out decrypted like the rest;
  - Fragmentation Needed / Packet Too Big about a forwarded packet (too big for the outside
    port, for the inside port once decapsulated, for a tunnel) quotes it as it was received
    (RFC 1812 §4.3.2.3, as Linux does): TTL / hop limit not decremented, IPv4 header checksum
    valid.
A second run gives the outside port an MTU of 1280 and tunnels IPv6 in IPv4 (ESP, ESP in UDP,
AH) and in IPv6, so
the tunnels' inner MTU is below IPv6's minimum: a 1280-byte IPv6 packet must still go through
(RFC 8200 §5), in outer fragments that scapy reassembles and decrypts to it; a bigger one gets
Packet Too Big (mtu 1280); and a 1248-byte Time Exceeded the gateway sends to B's site goes
back through the IPv6 tunnel the same way.

Usage: gateway_pcap.py FERROGATE
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import random

from scapy.all import ARP, IP, TCP, UDP, ICMP, Ether, Raw, checksum, defragment, fragment, rdpcap, wrpcap
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, ICMPv6PacketTooBig, ICMPv6TimeExceeded, defragment6
from scapy.layers.ipsec import AH, ESP, SecurityAssociation

K_OUT = bytes(range(36))          # a-to-b: AES-256 key + salt
K_IN = bytes(range(100, 136))     # b-to-a
K_AH = bytes(range(200, 232))     # the AH tunnel's HMAC-SHA-256 key
SPI_OUT, SPI_IN = 0xC0010001, 0xC0010002
MAC_B, MAC_H1 = "02:00:00:00:0b:01", "02:00:00:00:0a:05"
MAC_A_IN, MAC_A_OUT = "02:00:00:00:aa:01", "02:00:00:00:aa:02"


def config(d):
    def p(n):
        return os.path.join(d, n)
    return f"""
interfaces:
  - name: inside
    device: "net_pcap0,rx_pcap={p('in_rx.pcap')},tx_pcap={p('in_tx.pcap')}"
    role: inside
    addresses: [192.168.10.1/24]
    mac: "{MAC_A_IN}"
    mtu: 9000
  - name: outside
    device: "net_pcap1,rx_pcap={p('out_rx.pcap')},tx_pcap={p('out_tx.pcap')}"
    role: outside
    addresses: [203.0.113.1/24]
    mac: "{MAC_A_OUT}"
routes:
  - {{ dst: 192.168.20.0/24, interface: outside, via: 203.0.113.2 }}
neighbours:
  - {{ ip: 203.0.113.2, mac: "{MAC_B}", interface: outside }}
  - {{ ip: 192.168.10.5, mac: "{MAC_H1}", interface: inside }}
cores: {{ main: 0, workers: [1] }}
sas:
  - {{ name: a-to-b, spi: {SPI_OUT}, direction: out, mode: tunnel, cipher: aes-gcm-256,
      enc_key: "0x{K_OUT.hex()}", local: 203.0.113.1, remote: 203.0.113.2,
      local_ts: [192.168.10.0/24], remote_ts: [192.168.20.0/24] }}
  - {{ name: b-to-a, spi: {SPI_IN}, direction: in, mode: tunnel, cipher: aes-gcm-256,
      enc_key: "0x{K_IN.hex()}", local: 203.0.113.1, remote: 203.0.113.2, replay_window: 64,
      local_ts: [192.168.10.0/24], remote_ts: [192.168.20.0/24] }}
policies:
  - {{ direction: out, priority: 10, src: 192.168.10.0/24, dst: 192.168.20.10/32, proto: tcp, dst_ports: 22, action: bypass }}
  - {{ direction: out, src: 192.168.10.0/24, dst: 192.168.20.0/24, action: protect, sa: a-to-b }}
  - {{ direction: in, src: 192.168.20.0/24, dst: 192.168.10.0/24, action: protect }}
"""


def config6(d):
    """Gateway A for IPv6 sites through a narrow outside port: 2001:db8:20::/64 in IPv4 (6in4),
    2001:db8:30::/64 in IPv6 (6in6)."""
    def p(n):
        return os.path.join(d, n)
    return f"""
interfaces:
  - name: inside
    device: "net_pcap0,rx_pcap={p('in6_rx.pcap')},tx_pcap={p('in6_tx.pcap')}"
    role: inside
    addresses: ["2001:db8:10::1/64"]
    mac: "{MAC_A_IN}"
    mtu: 9000
  - name: outside
    device: "net_pcap1,rx_pcap={p('out6_rx.pcap')},tx_pcap={p('out6_tx.pcap')}"
    role: outside
    addresses: [203.0.113.1/24, "2001:db8:113::1/64"]
    mac: "{MAC_A_OUT}"
    mtu: 1280
routes:
  - {{ dst: "2001:db8:20::/64", interface: outside, via: 203.0.113.2 }}
  - {{ dst: "2001:db8:30::/64", interface: outside, via: "2001:db8:113::2" }}
  - {{ dst: "2001:db8:40::/64", interface: outside, via: 203.0.113.2 }}
  - {{ dst: "2001:db8:50::/64", interface: outside, via: 203.0.113.2 }}
neighbours:
  - {{ ip: 203.0.113.2, mac: "{MAC_B}", interface: outside }}
  - {{ ip: "2001:db8:113::2", mac: "{MAC_B}", interface: outside }}
  - {{ ip: "2001:db8:10::5", mac: "{MAC_H1}", interface: inside }}
cores: {{ main: 0, workers: [1] }}
sas:
  - {{ name: six-in-four, spi: {SPI_OUT}, direction: out, mode: tunnel, cipher: aes-gcm-256,
      enc_key: "0x{K_OUT.hex()}", local: 203.0.113.1, remote: 203.0.113.2,
      local_ts: ["2001:db8:10::/64"], remote_ts: ["2001:db8:20::/64"] }}
  - {{ name: six-in-six, spi: {SPI_OUT + 8}, direction: out, mode: tunnel, cipher: aes-gcm-256,
      enc_key: "0x{K_IN.hex()}", local: "2001:db8:113::1", remote: "2001:db8:113::2",
      local_ts: ["2001:db8:10::/64"], remote_ts: ["2001:db8:30::/64"] }}
  - {{ name: six-in-four-ah, spi: {SPI_OUT + 16}, direction: out, protocol: ah, mode: tunnel,
      integrity: hmac-sha256, auth_key: "0x{K_AH.hex()}", local: 203.0.113.1, remote: 203.0.113.2,
      local_ts: ["2001:db8:10::/64"], remote_ts: ["2001:db8:40::/64"] }}
  - {{ name: six-in-four-natt, spi: {SPI_OUT + 24}, direction: out, mode: tunnel, cipher: aes-gcm-256,
      enc_key: "0x{K_OUT.hex()}", local: 203.0.113.1, remote: 203.0.113.2,
      udp_encap: {{ local_port: 4500, remote_port: 4500 }},
      local_ts: ["2001:db8:10::/64"], remote_ts: ["2001:db8:50::/64"] }}
  - {{ name: six-in-six-in, spi: {SPI_IN}, direction: in, mode: tunnel, cipher: aes-gcm-256,
      enc_key: "0x{K_OUT.hex()}", local: "2001:db8:113::1", remote: "2001:db8:113::2",
      local_ts: ["2001:db8:10::/64"], remote_ts: ["2001:db8:30::/64"] }}
policies:
  - {{ direction: out, src: "2001:db8:10::/64", dst: "2001:db8:20::/64", action: protect, sa: six-in-four }}
  - {{ direction: out, src: "2001:db8:10::/64", dst: "2001:db8:30::/64", action: protect, sa: six-in-six }}
  - {{ direction: out, src: "2001:db8:10::/64", dst: "2001:db8:40::/64", action: protect, sa: six-in-four-ah }}
  - {{ direction: out, src: "2001:db8:10::/64", dst: "2001:db8:50::/64", action: protect, sa: six-in-four-natt }}
  - {{ direction: in, src: "2001:db8:30::/64", dst: "2001:db8:10::/64", action: protect }}
"""


def run_gateway(tool, d, cfg_text, stats_name):
    """Runs ferrogate on `cfg_text` until its ports fall idle; returns (process, stats)."""
    cfg = os.path.join(d, stats_name + ".yaml")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    stats_file = os.path.join(d, stats_name + ".json")
    eal = f"--no-huge -m 512 --file-prefix fgtest{os.getpid()} --log-level=error"
    try:
        r = subprocess.run([tool, "--config", cfg, "--eal", eal, "--idle-exit-ms", "1500", "--stats-json", stats_file],
                           capture_output=True, text=True, timeout=120)
    finally:
        # EAL's runtime directory for our prefix (hugepage-less, but it still leaves one).
        shutil.rmtree(f"/var/run/dpdk/fgtest{os.getpid()}", ignore_errors=True)
    stats = json.load(open(stats_file)) if r.returncode == 0 else None
    return r, stats


def ipv6_below_1280(tool, d, check):
    """The second run (see the module's docstring)."""
    def udp6(dst, size, port):
        return IPv6(src="2001:db8:10::5", dst=dst, hlim=64) / UDP(sport=port, dport=5001) / Raw((bytes(range(256)) * 6)[:size - 48])
    whole4 = udp6("2001:db8:20::7", 1280, 4100)
    whole6 = udp6("2001:db8:30::7", 1280, 4101)
    small6 = udp6("2001:db8:30::8", 200, 4102)
    too_big = udp6("2001:db8:30::9", 1281, 4103)
    whole_ah = udp6("2001:db8:40::7", 1280, 4105)
    whole_natt = udp6("2001:db8:50::7", 1280, 4106)
    wrpcap(os.path.join(d, "in6_rx.pcap"), [Ether(src=MAC_H1, dst=MAC_A_IN) / p for p in (whole4, whole6, small6, too_big, whole_ah, whole_natt)])
    # From B's site, hop limit 1: the gateway's Time Exceeded quotes 1200 of it (1248 bytes in
    # all) and must go back through the 6in6 tunnel, in fragments too.
    expiring = IPv6(src="2001:db8:30::7", dst="2001:db8:10::5", hlim=1) / UDP(sport=5001, dport=4104) / Raw(b"e" * 1152)
    sa_in = SecurityAssociation(ESP, spi=SPI_IN, crypt_algo="AES-GCM", crypt_key=K_OUT,
                                tunnel_header=IPv6(src="2001:db8:113::2", dst="2001:db8:113::1"))
    wrpcap(os.path.join(d, "out6_rx.pcap"), [Ether(src=MAC_B, dst=MAC_A_OUT) / sa_in.encrypt(expiring)])
    r, stats = run_gateway(tool, d, config6(d), "stats6")
    check("ferrogate ran (IPv6 sites, outside MTU 1280)", r.returncode == 0, r.stderr[-2000:])
    if r.returncode != 0:
        return
    print("stats6:", json.dumps({k: stats[k] for k in ("icmp", "drops")}))

    def hop6(p):
        q = IPv6(bytes(p))
        q.hlim -= 1
        return bytes(q)
    out = rdpcap(os.path.join(d, "out6_tx.pcap"))
    v4 = [f[IP] for f in out if IP in f]
    v6 = [f[IPv6] for f in out if IPv6 in f]
    check("every frame on the outside port fits its 1280 MTU",
          all(len(f[Ether].payload) <= 1280 for f in out) and len(out) == 11, [len(f[Ether].payload) for f in out])
    sa4 = SecurityAssociation(ESP, spi=SPI_OUT, crypt_algo="AES-GCM", crypt_key=K_OUT,
                              tunnel_header=IP(src="203.0.113.1", dst="203.0.113.2"))
    sa6 = SecurityAssociation(ESP, spi=SPI_OUT + 8, crypt_algo="AES-GCM", crypt_key=K_IN,
                              tunnel_header=IPv6(src="2001:db8:113::1", dst="2001:db8:113::2"))
    esp4 = [f for f in v4 if f.proto == 50]
    ok4 = len(esp4) == 2 and all(f.flags.MF == (f.frag == 0) for f in esp4)
    whole = defragment([IP(bytes(f)) for f in esp4]) if ok4 else []
    got4 = bytes(sa4.decrypt(IP(bytes(whole[0])))) if len(whole) == 1 and ESP in whole[0] else b""
    check("6in4: the 1280-byte IPv6 packet left as two IPv4 fragments (DF clear) that scapy reassembles and decrypts to it",
          ok4 and not any(f.flags.DF for f in esp4) and got4 == hop6(whole4), [f.summary() for f in esp4])
    # AH (RFC 4302) covers the outer identification: the fragments must keep the one AH
    # signed, or the peer's ICV check fails. scapy verifies the ICV on the reassembled packet.
    ah4 = [f for f in v4 if f.proto == 51]
    sa_ah = SecurityAssociation(AH, spi=SPI_OUT + 16, auth_algo="SHA2-256-128", auth_key=K_AH,
                                tunnel_header=IP(src="203.0.113.1", dst="203.0.113.2"))
    got_ah = b""
    if len(ah4) == 2 and len({f.id for f in ah4}) == 1 and not any(f.flags.DF for f in ah4):
        whole = defragment([IP(bytes(f)) for f in ah4])
        if len(whole) == 1 and AH in whole[0]:
            try:
                got_ah = bytes(sa_ah.decrypt(IP(bytes(whole[0]))))
            except Exception as e:  # scapy raises on a bad ICV
                print("AH:", e)
    check("6in4 AH: the 1280-byte IPv6 packet left as two IPv4 fragments whose reassembly scapy authenticates (ICV) to it",
          got_ah == hop6(whole_ah), [f.summary() for f in ah4])
    # ESP in UDP (RFC 3948): the outer packet, UDP header included, is what is fragmented.
    udp4 = [f for f in v4 if f.proto == 17]
    sa_natt = SecurityAssociation(ESP, spi=SPI_OUT + 24, crypt_algo="AES-GCM", crypt_key=K_OUT,
                                  tunnel_header=IP(src="203.0.113.1", dst="203.0.113.2"),
                                  nat_t_header=UDP(sport=4500, dport=4500))
    got_natt = b""
    if len(udp4) == 2 and len({f.id for f in udp4}) == 1 and not any(f.flags.DF for f in udp4):
        whole = defragment([IP(bytes(f)) for f in udp4])
        if len(whole) == 1 and UDP in whole[0] and whole[0][UDP].dport == 4500:
            got_natt = bytes(sa_natt.decrypt(IP(bytes(whole[0]))))
    check("6in4 ESP in UDP 4500: the 1280-byte IPv6 packet left as two IPv4 fragments that scapy reassembles and decrypts to it",
          got_natt == hop6(whole_natt), [f.summary() for f in udp4])
    frags6 = [f for f in v6 if IPv6ExtHdrFragment in f]
    plain6 = [f for f in v6 if IPv6ExtHdrFragment not in f]
    ids = sorted({f[IPv6ExtHdrFragment].id for f in frags6})
    rebuilt = []
    for i in ids:
        w = IPv6(bytes(defragment6([IPv6(bytes(f)) for f in frags6 if f[IPv6ExtHdrFragment].id == i])))
        rebuilt.append(IPv6(bytes(sa6.decrypt(w))) if ESP in w else w)
    got6 = [bytes(w) for w in rebuilt if UDP in w and w[UDP].sport == 4101]
    check("6in6: the 1280-byte IPv6 packet left as two IPv6 fragments that scapy reassembles and decrypts to it",
          len(frags6) == 4 and len(ids) == 2 and got6 == [hop6(whole6)], [f.summary() for f in frags6])
    te = [w for w in rebuilt if ICMPv6TimeExceeded in w]
    check("the Time Exceeded for B's site (1248 bytes) went back through the 6in6 tunnel in fragments, quoting the packet",
          len(te) == 1 and len(te[0]) == 1248 and te[0].src == "2001:db8:10::1" and te[0].dst == "2001:db8:30::7"
          and bytes(te[0])[48:] == bytes(expiring), [w.summary() for w in rebuilt])
    got_small = [bytes(sa6.decrypt(IPv6(bytes(f)))) for f in plain6 if ESP in f]
    check("6in6: a packet that fits left whole", got_small == [hop6(small6)], [f.summary() for f in plain6])
    inside = rdpcap(os.path.join(d, "in6_tx.pcap"))
    ptb = [f for f in inside if ICMPv6PacketTooBig in f]
    quoted = bytes(ptb[0][IPv6])[48:] if ptb else b""
    check("the 1281-byte packet got Packet Too Big (mtu 1280) from our inside address, and nothing else came back",
          len(ptb) == 1 and len(inside) == 1 and ptb[0][ICMPv6PacketTooBig].mtu == 1280
          and ptb[0][IPv6].src == "2001:db8:10::1" and ptb[0][IPv6].dst == "2001:db8:10::5",
          [f.summary() for f in inside])
    check("the Packet Too Big quotes the packet as it was received: hop limit 64, not 63 (1232 bytes of it)",
          len(quoted) == 1232 and quoted[7] == too_big.hlim == 64 and quoted == bytes(too_big)[:1232],
          quoted[:48].hex())
    icmp = stats["icmp"]
    check("the counters: five outer packets fragmented into ten, one too big",
          icmp.get("outer_fragmented") == 5 and icmp.get("outer_fragments") == 10
          and stats["drops"].get("too_big") == 1, (icmp, stats["drops"]))


def hop(p):
    """The packet as a router forwards it: TTL one lower, checksum recomputed."""
    q = IP(bytes(p))
    q.ttl -= 1
    del q.chksum
    return bytes(IP(bytes(q)))


def clamped(raw, mss):
    """`raw` with its TCP MSS option lowered to `mss` and the TCP checksum recomputed."""
    q = IP(raw)
    q[TCP].options = [("MSS", mss) if k == "MSS" else (k, v) for k, v in q[TCP].options]
    del q[TCP].chksum
    return bytes(IP(bytes(q)))


def main():
    if len(sys.argv) != 2 or not os.path.exists(sys.argv[1]):
        sys.exit("usage: gateway_pcap.py FERROGATE (a built ferrogate binary)")
    tool = sys.argv[1]
    passed = failed = 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        print(("PASS " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
        passed += bool(ok)
        failed += not ok

    with tempfile.TemporaryDirectory() as d:
        to_b = [IP(src="192.168.10.5", dst=f"192.168.20.{7 + i}") / UDP(sport=4000 + i, dport=5001) / Raw(bytes(range(i * 37 % 200)))
                for i in range(12)]
        to_b += [IP(src="192.168.10.5", dst="192.168.20.9") / ICMP(id=7, seq=i) / Raw(b"ping" * 10) for i in range(3)]
        to_b.append(IP(src="192.168.10.5", dst="192.168.20.7") / TCP(sport=40001, dport=443, flags="S", options=[("MSS", 1460)]))
        bypass = IP(src="192.168.10.5", dst="192.168.20.10") / TCP(sport=40000, dport=22, flags="S")
        nowhere = IP(src="192.168.10.5", dst="10.9.9.9") / UDP(sport=1, dport=2)
        # Bypassed packets bigger than the outside port's 1500 (the inside port takes 9000):
        # with DF refused with Fragmentation Needed (mtu 1500), without it fragmented.
        bypass_df = IP(src="192.168.10.5", dst="192.168.20.10", flags="DF") / TCP(sport=40002, dport=22, flags="A") / Raw(b"x" * 1660)
        bypass_big = IP(src="192.168.10.5", dst="192.168.20.10", flags=0) / TCP(sport=40003, dport=22, flags="A") / Raw(b"y" * 1660)
        inside = [Ether(src=MAC_H1, dst=MAC_A_IN) / p for p in to_b + [bypass, nowhere, bypass_df, bypass_big]]
        # A protected flow's packet sent to another station's MAC (a bridge flooding it): the
        # gateway must leave it alone and count it.
        stray = IP(src="192.168.10.5", dst="192.168.20.8") / UDP(sport=4999, dport=5001) / Raw(b"for another router")
        inside.append(Ether(src=MAC_H1, dst="02:00:00:00:99:99") / stray)
        # A protected flow's packet whose IPv4 header checksum is wrong: dropped and counted
        # (RFC 1812 §5.2.2), not sealed.
        corrupt = IP(src="192.168.10.5", dst="192.168.20.8", chksum=0x1234) / UDP(sport=4998, dport=5001) / Raw(b"bad sum")
        inside.append(Ether(src=MAC_H1, dst=MAC_A_IN) / corrupt)
        # TTL 1: Time Exceeded back to the host, unless the frame went to the link's broadcast
        # address (RFC 1812 §4.3.2.7: no ICMP error about a link-layer broadcast).
        expiring = IP(src="192.168.10.5", dst="192.168.20.7", ttl=1) / UDP(sport=4997, dport=5001) / Raw(b"last hop")
        inside.append(Ether(src=MAC_H1, dst=MAC_A_IN) / expiring)
        inside.append(Ether(src=MAC_H1, dst="ff:ff:ff:ff:ff:ff") / expiring)
        inside.append(Ether(src=MAC_H1, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC_H1, psrc="192.168.10.5", pdst="192.168.10.1"))
        inside.append(Ether(src=MAC_H1, dst=MAC_A_IN) / IP(src="192.168.10.5", dst="192.168.10.1") / ICMP(id=99, seq=1) / Raw(b"are you there"))
        wrpcap(os.path.join(d, "in_rx.pcap"), inside)

        sa_b = SecurityAssociation(ESP, spi=SPI_IN, crypt_algo="AES-GCM", crypt_key=K_IN,
                                   tunnel_header=IP(src="203.0.113.2", dst="203.0.113.1"))
        from_b = [IP(src=f"192.168.20.{7 + i}", dst="192.168.10.5") / UDP(sport=5001, dport=4000 + i) / Raw(b"x" * (i * 53 % 300))
                  for i in range(10)]
        esp_in = [sa_b.encrypt(p) for p in from_b]
        replay = esp_in[3].copy()
        tampered = IP(bytes(sa_b.encrypt(IP(src="192.168.20.7", dst="192.168.10.5") / UDP())))
        raw = bytearray(bytes(tampered))
        raw[-20] ^= 1
        # Valid ESP whose outer IPv4 header checksum is wrong: dropped before the SAD.
        bad_outer = IP(bytes(sa_b.encrypt(IP(src="192.168.20.7", dst="192.168.10.5") / UDP(sport=5003, dport=4200) / Raw(b"bad outer sum"))))
        bad_outer.chksum ^= 0x0101
        outside = [Ether(src=MAC_B, dst=MAC_A_OUT) / p for p in esp_in + [replay]] + [Ether(src=MAC_B, dst=MAC_A_OUT) / IP(bytes(raw))]
        outside.append(Ether(src=MAC_B, dst=MAC_A_OUT) / bad_outer)
        # Bigger packets whose ESP scapy fragments (a path MTU of 400 between B and us).
        big = [IP(src="192.168.20.7", dst="192.168.10.5") / UDP(sport=5002, dport=4100 + i) / Raw(bytes([i]) * (900 + 150 * i))
               for i in range(3)]
        frags = []
        for i, p in enumerate(big):
            e = IP(bytes(sa_b.encrypt(p)))
            e.id = 0x4400 + i
            fr = fragment(e, fragsize=400)
            random.Random(i).shuffle(fr)
            frags.append([Ether(src=MAC_B, dst=MAC_A_OUT) / f for f in fr])
        # Interleave the first two packets' fragments; the third arrives in one run.
        mixed = [f for pair in zip(frags[0], frags[1]) for f in pair]
        mixed += frags[0][len(frags[1]):] + frags[1][len(frags[0]):]
        outside += mixed + frags[2]
        # A packet from B with DF that is bigger than the inside port's 9000 bytes once
        # decapsulated (ESP in 1400-byte fragments): Fragmentation Needed (mtu 9000) back to its
        # source through the tunnel, quoting it as it came out of the tunnel (TTL 64).
        jumbo = IP(src="192.168.20.7", dst="192.168.10.5", flags="DF", ttl=64) / UDP(sport=5004, dport=4300) / Raw(b"j" * 9000)
        e = IP(bytes(sa_b.encrypt(jumbo)))
        e.id = 0x4500
        jumbo_frags = [Ether(src=MAC_B, dst=MAC_A_OUT) / f for f in fragment(e, fragsize=1400)]
        outside += jumbo_frags
        n_big_frags = sum(len(f) for f in frags)
        n_frags = n_big_frags + len(jumbo_frags)
        wrpcap(os.path.join(d, "out_rx.pcap"), outside)

        r, stats = run_gateway(tool, d, config(d), "stats")
        check("ferrogate ran", r.returncode == 0, r.stderr[-2000:])
        if r.returncode != 0:
            print(f"{passed} passed, {failed} failed")
            sys.exit(1)
        print("stats:", json.dumps(stats))

        sa_a = SecurityAssociation(ESP, spi=SPI_OUT, crypt_algo="AES-GCM", crypt_key=K_OUT,
                                   tunnel_header=IP(src="203.0.113.1", dst="203.0.113.2"))
        out_tx = rdpcap(os.path.join(d, "out_tx.pcap"))
        esp_out = [f for f in out_tx if ESP in f]
        clear_out = [f for f in out_tx if ESP not in f]
        check("outside: one ESP frame per protected packet, and one for the Fragmentation Needed to B's site",
              len(esp_out) == len(to_b) + 1, f"{len(esp_out)} of {len(to_b) + 1}")
        ok = all(f[Ether].dst == MAC_B and f[Ether].src == MAC_A_OUT for f in out_tx)
        check("outside frames go to B's MAC from ours", ok)
        got = []
        for f in esp_out:
            got.append(bytes(sa_a.decrypt(IP(bytes(f[IP])))))
        to_site_b = [IP(g) for g in got if IP(g).proto == 1 and IP(g)[ICMP].type == 3]
        got = [g for g in got if not (IP(g).proto == 1 and IP(g)[ICMP].type == 3)]
        # The quote, from the raw bytes (scapy's dissection of it may not give them back as they
        # were): after our 20-byte IPv4 header and the 8 of ICMP.
        quoted = bytes(to_site_b[0])[28:] if to_site_b else b""
        check("the decapsulated 9028-byte packet with DF: Fragmentation Needed (mtu 9000) back through the tunnel,"
              " quoting it as it came out of the tunnel (TTL 64, not 63; header checksum valid)",
              len(to_site_b) == 1 and to_site_b[0][ICMP].code == 4 and to_site_b[0][ICMP].nexthopmtu == 9000
              and to_site_b[0].src == "192.168.10.1" and to_site_b[0].dst == "192.168.20.7"
              and len(quoted) == 548 and quoted[8] == jumbo.ttl == 64 and checksum(quoted[:20]) == 0
              and quoted == bytes(jumbo)[:548], [g.summary() for g in to_site_b] + [quoted[:28].hex(), len(quoted)])
        want = [hop(p) for p in to_b]
        want[-1] = clamped(want[-1], 1340)
        check("scapy decrypts every ESP frame to the original packet, TTL one lower", got == want,
              [IP(g).summary() for g in got if g not in want])
        syn = IP(got[-1]) if got else None
        check("the SYN entering the tunnel has its MSS clamped to 1340, checksum valid",
              syn is not None and dict(syn[TCP].options).get("MSS") == 1340
              and TCP(bytes(syn[TCP])).chksum == IP(bytes(clamped(hop(to_b[-1]), 1340)))[TCP].chksum)
        check("the bypass flow left in the clear", clear_out and bytes(clear_out[0][IP]) == hop(bypass))
        pieces = [f[IP] for f in clear_out[1:]]
        whole = defragment([IP(bytes(f)) for f in pieces])
        check("the 1700-byte bypassed packet without DF left in fragments that fit 1500 and reassemble to it",
              len(pieces) == 2 and all(len(f) <= 1500 for f in pieces) and len(whole) == 1
              and whole[0][Raw].load == b"y" * 1660 and whole[0].ttl == 63 and whole[0][TCP].sport == 40003,
              [len(f) for f in pieces])
        check("traffic matching no policy was dropped, and nothing else on the way out",
              stats["drops"].get("policy_discard") == 1 and "not_ip" not in stats["drops"], stats["drops"])

        in_all = rdpcap(os.path.join(d, "in_tx.pcap"))
        arp = [f for f in in_all if ARP in f]
        echo = [f for f in in_all if ICMP in f and f[IP].src == "192.168.10.1" and f[ICMP].type == 0]
        expired = [f for f in in_all if ICMP in f and f[IP].src == "192.168.10.1" and f[ICMP].type == 11]
        needed = [f for f in in_all if ICMP in f and f[IP].src == "192.168.10.1" and f[ICMP].type == 3]
        in_tx = [f for f in in_all if f not in arp and f not in echo and f not in expired and f not in needed]
        quoted = bytes(needed[0][IP])[28:] if needed else b""
        check("the 1700-byte bypassed packet with DF: Fragmentation Needed, mtu 1500, quoting it",
              len(needed) == 1 and needed[0][ICMP].code == 4 and needed[0][ICMP].nexthopmtu == 1500
              and needed[0][IP].dst == "192.168.10.5" and stats["drops"].get("too_big") == 2,
              f"{len(needed)} {stats['drops']}")
        check("the Fragmentation Needed quotes the packet as it was received: TTL 64, not 63, header checksum as sent",
              len(quoted) == 548 and quoted[8] == IP(bytes(bypass_df)).ttl == 64 and checksum(quoted[:20]) == 0
              and quoted == bytes(bypass_df)[:548], (len(quoted), quoted[:28].hex()))
        check("TTL 1: one Time Exceeded, for the unicast frame only (none about a link broadcast)",
              len(expired) == 1 and expired[0][IP].dst == "192.168.10.5"
              and bytes(expired[0][ICMP].payload)[:20] == bytes(expiring)[:20]
              and stats["drops"].get("ttl_exceeded") == 2, f"{len(expired)} {stats['drops']}")
        check("the gateway answered ARP for its inside address",
              len(arp) == 1 and arp[0][ARP].op == 2 and arp[0][ARP].hwsrc == MAC_A_IN and arp[0][ARP].psrc == "192.168.10.1"
              and arp[0][Ether].dst == MAC_H1)
        check("the gateway answered ping",
              len(echo) == 1 and echo[0][ICMP].type == 0 and echo[0][ICMP].id == 99 and echo[0][Raw].load == b"are you there"
              and echo[0][IP].dst == "192.168.10.5" and IP(bytes(echo[0][IP])).chksum == echo[0][IP].chksum)
        check("inside: every packet from B decrypted, byte for byte (TTL one lower)",
              [bytes(f[IP]) for f in in_tx[:len(from_b)]] == [hop(p) for p in from_b], f"{len(in_tx)} frames")
        got_big = sorted((bytes(f[IP]) for f in in_tx[len(from_b):]), key=len)
        check(f"fragmented ESP from B ({n_big_frags} fragments of {len(big)} packets, shuffled) reassembled and decrypted, byte for byte",
              got_big == [hop(p) for p in big], f"{len(got_big)} of {len(big)}")
        r = stats.get("reassembly", {})
        check("the reassembly counters say so (the 9028-byte packet's fragments too)", r.get("fragments") == n_frags and r.get("reassembled") == len(big) + 1, r)
        check("inside frames go to the host's MAC", all(f[Ether].dst == MAC_H1 and f[Ether].src == MAC_A_IN for f in in_tx))
        check("the frame sent to another MAC was counted, not forwarded",
              stats["drops"].get("other_host") == 1 and hop(stray) not in got, stats["drops"])
        check("an IPv4 header checksum that fails, one each way, was counted and nothing of it forwarded",
              stats["drops"].get("bad_ip_checksum") == 2
              and not any(b"bad sum" in g for g in got)
              and not any(b"bad outer sum" in bytes(f) for f in in_all), stats["drops"])
        check("the replay and the tampered packet were counted",
              stats["drops"].get("replay_duplicate") == 1 and stats["drops"].get("icv_mismatch") == 1, stats["drops"])
        ipv6_below_1280(tool, d, check)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
