#!/usr/bin/env python3
"""ICMP errors and IPv4 fragments as scapy builds them: the reference for dataplane/src/icmp_err.rs.

Each vector is an IP packet the gateway cannot forward as it is, what the gateway is to do about
it, and the packets scapy makes for that: an ICMPv4 time exceeded (11/0) or fragmentation
needed (3/4, RFC 1191 next-hop MTU) quoting 576 - 28 bytes at most (RFC 1812 §4.3.2.3); an
ICMPv6 time exceeded (3/0) or packet too big (2/0, at least 1280) quoting up to 1280 - 48
(RFC 4443 §2.4 (c)); or the fragments of an IPv4 packet without DF (scapy's `fragment`).
The gateway's fixed choices are spelt out here too: TTL / hop limit 64, IPv4 ident 0 and no
DF, DSCP kept and ECN cleared, IPv6 flow label 0.

The Rust test dataplane/tests/icmp_vectors.rs runs our builder over every input and wants the
same bytes. Scapy also parses each expected packet back, so the checksums and fields are
checked by its dissectors rather than by the code that wrote them.

Usage:
  icmp_vectors.py --write dataplane/tests/vectors/icmp_errors.json   regenerate the vectors
  icmp_vectors.py --check dataplane/tests/vectors/icmp_errors.json   the committed file is what
                                                                      this scapy makes (run.sh)
"""
import json
import sys

from scapy.all import ICMP, IP, UDP, TCP, Raw, fragment
from scapy.layers.inet6 import IPv6, ICMPv6TimeExceeded, ICMPv6PacketTooBig, ICMPv6EchoRequest

GW4, GW6 = "192.168.10.1", "2001:db8:10::1"
SRC4, DST4 = "192.168.10.5", "192.168.20.5"
SRC6, DST6 = "2001:db8:10::5", "2001:db8:20::5"


def data(n):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def v4_error(orig, icmp):
    o = IP(orig)
    return bytes(IP(src=GW4, dst=o.src, ttl=64, id=0, flags=0, tos=o.tos & 0xFC) / icmp / orig[:548])


def v6_error(orig, icmp):
    o = IPv6(orig)
    return bytes(IPv6(src=GW6, dst=o.src, hlim=64, tc=o.tc & 0xFC, fl=0) / icmp / orig[:1232])


def vectors():
    out = []

    def add(name, kind, inp, expect, mtu=0, frm=GW4):
        out.append({"name": name, "kind": kind, "mtu": mtu, "from": frm,
                    "input": inp.hex(), "output": [e.hex() for e in expect]})

    udp = bytes(IP(src=SRC4, dst=DST4, ttl=1, id=0x1234, flags="DF") / UDP(sport=40000, dport=33434) / data(1372))
    add("v4 time exceeded, 1400-byte UDP: 548 bytes quoted", "time_exceeded", udp,
        [v4_error(udp, ICMP(type=11, code=0))])
    small = bytes(IP(src=SRC4, dst=DST4, ttl=1, id=7) / ICMP(type=8, id=9, seq=1) / data(56))
    add("v4 time exceeded, 84-byte echo: quoted whole", "time_exceeded", small,
        [v4_error(small, ICMP(type=11, code=0))])
    big_df = bytes(IP(src=SRC4, dst=DST4, ttl=63, id=0x4242, flags="DF", tos=0xB9) / ICMP(type=8, id=1, seq=2) / data(1472))
    add("v4 fragmentation needed, mtu 1446 (AES-GCM tunnel), DSCP EF kept, ECN cleared", "too_big",
        big_df, [v4_error(big_df, ICMP(type=3, code=4, nexthopmtu=1446))], mtu=1446)
    tcp = bytes(IP(src=SRC4, dst=DST4, ttl=63, id=0x99, flags="DF") / TCP(sport=5555, dport=80, flags="A", seq=1) / data(1400))
    add("v4 fragmentation needed, mtu 1438 (AES-CBC tunnel), TCP", "too_big", tcp,
        [v4_error(tcp, ICMP(type=3, code=4, nexthopmtu=1438))], mtu=1438)

    u6 = bytes(IPv6(src=SRC6, dst=DST6, hlim=1, fl=0x12345) / UDP(sport=40000, dport=33434) / data(200))
    add("v6 time exceeded, quoted whole", "time_exceeded", u6,
        [v6_error(u6, ICMPv6TimeExceeded(code=0))], frm=GW6)
    b6 = bytes(IPv6(src=SRC6, dst=DST6, hlim=63, tc=0xB9) / ICMPv6EchoRequest(id=1, seq=1, data=data(1452)))
    add("v6 packet too big, reported MTU raised to 1280, 1232 bytes quoted", "too_big", b6,
        [v6_error(b6, ICMPv6PacketTooBig(mtu=1280))], mtu=1200, frm=GW6)
    add("v6 packet too big, mtu 1426", "too_big", b6,
        [v6_error(b6, ICMPv6PacketTooBig(mtu=1426))], mtu=1426, frm=GW6)

    for mtu in (1446, 1438, 576):
        orig = IP(src=SRC4, dst=DST4, ttl=63, id=0x4243, flags=0) / ICMP(type=8, id=1, seq=3) / data(1472)
        # scapy's fragsize is the data per fragment: the MTU less the header, in eighths.
        frags = fragment(orig, fragsize=(mtu - 20) & ~7)
        add(f"v4 fragments for mtu {mtu}", "fragment", bytes(orig), [bytes(f) for f in frags], mtu=mtu)
    return out


def check_with_dissectors(vs):
    """scapy parses what it built: checksums verify and the fields read back."""
    for v in vs:
        for e in v["output"]:
            b = bytes.fromhex(e)
            if b[0] >> 4 == 4:
                p = IP(b)
                c = p.chksum
                del p.chksum
                assert IP(bytes(p)).chksum == c, v["name"]
                if v["kind"] == "fragment":
                    continue
                i = p[ICMP]
                ic = i.chksum
                del i.chksum
                assert IP(bytes(p))[ICMP].chksum == ic, v["name"]
                want = (11, 0) if v["kind"] == "time_exceeded" else (3, 4)
                assert (i.type, i.code) == want, v["name"]
                if v["kind"] == "too_big":
                    assert i.nexthopmtu == v["mtu"], v["name"]
            else:
                p = IPv6(b)
                icmp = p.payload
                c = icmp.cksum
                del icmp.cksum
                assert IPv6(bytes(p)).payload.cksum == c, v["name"]
                if v["kind"] == "too_big":
                    assert icmp.mtu == max(v["mtu"], 1280), v["name"]
                assert len(b) <= 1280


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("--write", "--check"):
        print(__doc__)
        return 2
    vs = vectors()
    check_with_dissectors(vs)
    text = json.dumps(vs, indent=1) + "\n"
    if sys.argv[1] == "--write":
        open(sys.argv[2], "w").write(text)
        print(f"wrote {len(vs)} vectors to {sys.argv[2]}")
        return 0
    if open(sys.argv[2]).read() != text:
        print(f"{sys.argv[2]} differs from what this scapy builds: regenerate it with --write")
        return 1
    print(f"{len(vs)} ICMP error / fragment vectors: the committed file is what scapy builds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
