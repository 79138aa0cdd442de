#!/usr/bin/env python3
"""Transport-mode ESP in UDP through NATs: fgpcap's inner TCP/UDP checksum fix-up, judged by
scapy (RFC 3948 §3.1.2).

Usage:
    .venv/bin/python tests/interop/scapy_natt_transport.py PATH/TO/fgpcap
    .venv/bin/python tests/interop/scapy_natt_transport.py --selftest   # scapy side only
    SEED=1234 ...                                                        # reproduce a run

A peer host with a private address (10.0.0.5) sends transport-mode ESP in UDP to us. It builds
its TCP/UDP packets, checksums included, over the addresses it knows: its own private address
and the address it sends to. scapy builds and encrypts those packets; then the test plays the
NAT(s) on the way, rewriting the IP header the way a NAPT does (the peer's NAT: source address
and UDP source port; in some cases a NAT in front of us too: destination address). The inner
checksum, hidden under ESP, still covers the old addresses.

`fgpcap decrypt` must then hand out packets whose TCP/UDP checksum is valid by scapy's own
computation over the addresses on the wire (scapy's `in4_chksum`), with everything else the
peer sent unchanged. Cases: the SA knows the original addresses (`natt_oa`, incremental
update), knows only the peer's, or knows none (recomputation); TCP, UDP, UDP with checksum 0
(must stay 0, RFC 768) and ICMP (no pseudo-header: must be untouched). Each case first checks
that its packets really arrive with a stale checksum, so that it tests the fix-up at all.

--selftest replaces fgpcap by scapy decryption plus scapy's own checksum recomputation, which
validates the packet building, the NAT emulation and the checks without the real tool.
"""

import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    FgpcapDecrypt as RealTool,
    LINKTYPE_RAW, hexkey, nonzero_drops, read_pcap, run_cases, sa_yaml,
    tool_from_args, write_pcap)

import logging  # noqa: E402

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import ICMP, IP, TCP, UDP, Raw, raw  # noqa: E402
from scapy.layers.inet import in4_chksum  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402

N_PACKETS = 6
NATT_PORT = 4500

PEER_PRIVATE = "10.0.0.5"        # the peer host, behind its NAT
PEER_PUBLIC = "198.51.100.7"     # its NAT's public address
US_PUBLIC = "203.0.113.1"        # the address the peer sends to
US_PRIVATE = "192.168.1.1"       # our address behind a NAT in front of us (when there is one)

# (name, yaml cipher, scapy crypt, yaml integrity, scapy auth, enc key bytes, auth key bytes)
SUITES = [
    ("aes-gcm-128", "aes-gcm-128", "AES-GCM", "none", None, 20, 0),
    ("aes-cbc-128+hmac-sha256", "aes-cbc-128", "AES-CBC", "hmac-sha256", "SHA2-256-128", 16, 32),
]

# (name, our side behind a NAT too, what natt_oa the SA is given)
NATS = [
    ("peer NAT, natt_oa remote+local", False, ("remote", "local")),
    ("peer NAT, natt_oa remote", False, ("remote",)),
    ("peer NAT, no natt_oa", False, ()),
    ("both NATed, natt_oa remote+local", True, ("remote", "local")),
    ("both NATed, no natt_oa", True, ()),
]

KINDS = ("tcp", "udp", "udp-zero", "icmp")


class Case:
    def __init__(self, suite, nat, kind):
        self.suite, self.nat, self.kind = suite, nat, kind
        (_, self.y_cipher, self.s_crypt, self.y_integ, self.s_auth, self.enc_len,
         self.auth_len) = suite
        self.both_nated, self.oa = nat[1], nat[2]
        self.name = "%s %s %s" % (suite[0], kind, nat[0])

    @property
    def wire_dst(self):
        return US_PRIVATE if self.both_nated else US_PUBLIC


def make_packet(rng, kind):
    """One packet as the peer builds it, checksums over the addresses it knows."""
    payload = rng.randbytes(rng.randrange(0, 1201))  # odd lengths too
    ip = IP(src=PEER_PRIVATE, dst=US_PUBLIC, ttl=rng.randrange(2, 256), id=rng.randrange(65536),
            flags=rng.choice([0, 2]))
    if kind == "tcp":
        l4 = TCP(sport=rng.randrange(1024, 65536), dport=rng.choice([22, 80, 443]),
                 seq=rng.randrange(1 << 32), ack=rng.randrange(1 << 32), flags="PA")
    elif kind == "udp":
        l4 = UDP(sport=rng.randrange(1024, 65536), dport=rng.choice([53, 123, 5201]))
    elif kind == "udp-zero":
        l4 = UDP(sport=rng.randrange(1024, 65536), dport=rng.choice([53, 123, 5201]), chksum=0)
    else:
        l4 = ICMP(type=8, id=rng.randrange(65536), seq=rng.randrange(65536))
    return raw(ip / l4 / Raw(payload)) if payload else raw(ip / l4)


def nat(c, pkt_bytes, nat_port):
    """What the NATs on the way do to the encrypted packet: rewrite the outer (here: the only)
    IP header and the UDP source port, fixing the IP checksum; the UDP checksum of ESP-in-UDP
    is zero (RFC 3948 §2.1)."""
    p = IP(pkt_bytes)
    p.src = PEER_PUBLIC
    p.dst = c.wire_dst
    p[UDP].sport = nat_port
    p[UDP].chksum = 0
    del p.chksum
    return raw(p)


def l4_checksum_valid(ip_bytes):
    """scapy's verdict on the TCP/UDP checksum of an IPv4 packet: in4_chksum over the pseudo
    header and the segment as received is zero when the checksum is right."""
    p = IP(ip_bytes)
    seg = bytes(p.payload)
    return in4_chksum(p.proto, p, seg) == 0


def l4_checksum(ip_bytes):
    p = IP(ip_bytes)
    off = {6: 16, 17: 6}[p.proto]
    seg = bytes(p.payload)
    return struct.unpack("!H", seg[off:off + 2])[0]


def sa_entry(c, spi, enc_key, auth_key, nat_port):
    d = {
        "name": "in-natt-transport",
        "spi": "0x%x" % spi,
        "direction": "in",
        "protocol": "esp",
        "mode": "transport",
        "cipher": c.y_cipher,
        "integrity": c.y_integ,
        "enc_key": hexkey(enc_key),
        "auth_key": hexkey(auth_key) if c.auth_len else None,
        "udp_encap": {"local_port": NATT_PORT, "remote_port": nat_port},
        "replay_window": 64,
    }
    oa = {}
    if "remote" in c.oa:
        oa["remote"] = PEER_PRIVATE
    if "local" in c.oa:
        oa["local"] = US_PUBLIC
    if oa:
        d["natt_oa"] = oa
    return d


def scapy_sa(c, spi, enc_key, auth_key, seq):
    kw = {"crypt_algo": c.s_crypt, "crypt_key": enc_key}
    if c.s_auth:
        kw["auth_algo"] = c.s_auth
        kw["auth_key"] = auth_key
    return SecurityAssociation(ESP, spi=spi, seq_num=seq,
                               nat_t_header=UDP(sport=NATT_PORT, dport=NATT_PORT), **kw)


class ScapyTool:
    """Decryption by scapy, then scapy's own checksum recomputation: the behaviour asked of
    fgpcap, built from the reference, to validate this suite."""

    def decrypt(self, c, sa_path, in_path, out_path, keys):
        spi, enc_key, auth_key = keys
        _, frames = read_pcap(in_path)
        out = []
        for f in frames:
            p = IP(f)
            d = scapy_sa(c, spi, enc_key, auth_key, p[ESP].seq).decrypt(p)
            d = IP(raw(d))
            if d.proto == 6:
                del d[TCP].chksum
            elif d.proto == 17 and d[UDP].chksum != 0:
                del d[UDP].chksum
            out.append(raw(d))
        write_pcap(out_path, LINKTYPE_RAW, out)
        return {"packets_in": len(frames), "packets_out": len(out), "drops": {}}


def run_case(tool, tmp, rng, c):
    spi = rng.randrange(0x100, 0xFFFFFFFF)
    enc_key = rng.randbytes(c.enc_len)
    auth_key = rng.randbytes(c.auth_len)
    nat_port = rng.randrange(1024, 65536)
    originals = [make_packet(rng, c.kind) for _ in range(N_PACKETS)]
    wire = []
    for i, orig in enumerate(originals):
        e = raw(scapy_sa(c, spi, enc_key, auth_key, i + 1).encrypt(IP(orig)))
        wire.append(nat(c, e, nat_port))

    # The case is only worth running if the packets arrive with stale checksums: decrypted by
    # scapy as they are on the wire, the TCP/UDP checksum must not verify.
    if c.kind in ("tcp", "udp"):
        for i, w in enumerate(wire):
            naive = raw(scapy_sa(c, spi, enc_key, auth_key, i + 1).decrypt(IP(w)))
            if l4_checksum_valid(naive):
                raise AssertionError("packet %d: the NAT left a valid checksum; nothing to fix" % i)

    sa_path, in_path, out_path = (os.path.join(tmp, f) for f in ("in.yaml", "esp.pcap", "out.pcap"))
    with open(sa_path, "w") as f:
        f.write(sa_yaml([sa_entry(c, spi, enc_key, auth_key, nat_port)]))
    write_pcap(in_path, LINKTYPE_RAW, wire)
    stats = tool.decrypt(c, sa_path, in_path, out_path, (spi, enc_key, auth_key))
    got = {"packets_in": stats["packets_in"], "packets_out": stats["packets_out"],
           "drops": nonzero_drops(stats)}
    want = {"packets_in": N_PACKETS, "packets_out": N_PACKETS, "drops": {}}
    if got != want:
        raise AssertionError("decrypt stats %r, want %r" % (got, want))
    _, out = read_pcap(out_path)
    for i, (orig, ip) in enumerate(zip(originals, out)):
        what = "packet %d" % i
        o, p = IP(orig), IP(ip)
        # The IP header is the one on the wire, with the protected protocol and length back.
        if (p.src, p.dst) != (PEER_PUBLIC, c.wire_dst):
            raise AssertionError("%s: addresses %s -> %s" % (what, p.src, p.dst))
        if (p.proto, p.len, p.ttl, p.id, p.flags) != (o.proto, o.len, o.ttl, o.id, o.flags):
            raise AssertionError("%s: IP header %r, want proto/len/ttl/id/flags of %r" % (what, p, o))
        chk = p.chksum
        del p.chksum
        if IP(raw(p)).chksum != chk:
            raise AssertionError("%s: bad IPv4 header checksum" % what)
        seg, oseg = ip[20:], orig[20:]
        if c.kind == "icmp":
            if seg != oseg:
                raise AssertionError("%s: ICMP changed" % what)
            continue
        off = 16 if c.kind == "tcp" else 6
        if seg[:off] + seg[off + 2:] != oseg[:off] + oseg[off + 2:]:
            raise AssertionError("%s: TCP/UDP bytes beyond the checksum changed" % what)
        if c.kind == "udp-zero":
            if l4_checksum(ip) != 0:
                raise AssertionError("%s: a zero UDP checksum became %#06x" % (what, l4_checksum(ip)))
            continue
        if not l4_checksum_valid(ip):
            raise AssertionError("%s: %s checksum %#06x does not verify over %s -> %s (scapy)"
                                 % (what, c.kind.upper(), l4_checksum(ip), p.src, p.dst))


def cases():
    for suite in SUITES:
        for n in NATS:
            for kind in KINDS:
                yield Case(suite, n, kind)


def main():
    picked = tool_from_args(sys.argv[1:], __doc__, RealTool, ScapyTool)
    if picked is None:
        return 2
    tool, label = picked
    return run_cases("scapy_natt_transport", label, cases(),
                     lambda tmp, rng, c: run_case(tool, tmp, rng, c))


if __name__ == "__main__":
    sys.exit(main())
