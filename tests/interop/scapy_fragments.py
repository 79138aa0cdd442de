#!/usr/bin/env python3
"""Fragmented ESP: scapy encrypts, scapy fragments the outer packets, fgpcap reassembles and
decrypts.

    .venv/bin/python tests/interop/scapy_fragments.py PATH/TO/fgpcap
    .venv/bin/python tests/interop/scapy_fragments.py --selftest

A peer whose path MTU is smaller than its ESP packets sends them as IP fragments (RFC 4459 calls
this post-fragmentation); the receiving gateway must reassemble them (RFC 791, RFC 8200 §4.5)
before the ESP core sees them. For each case, scapy builds inner packets of 1,300 to 4,000 bytes,
encrypts them in tunnel mode (IPv4 outer, IPv6 outer, and IPv4 with UDP encapsulation), splits
every outer packet with its own fragmenter (`fragment` / `fragment6`), and shuffles each packet's
fragments and interleaves the packets. fgpcap must decrypt every packet back to the original,
byte for byte, having taken in every fragment and reassembled one datagram per packet. One
more case duplicates a fragment with other contents (an overlap, RFC 5722): that datagram, and
only that one, is dropped and counted as `reassembly`.

--selftest replaces fgpcap by scapy's own defragmentation (`defragment`) and decryption, to
validate the case building.
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    FgpcapDecrypt as RealTool,
    LINKTYPE_RAW, hexkey, nonzero_drops, read_pcap, run_cases, sa_yaml,
    tool_from_args, write_pcap)

import logging  # noqa: E402

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import (  # noqa: E402
    IP, UDP, IPv6, IPv6ExtHdrFragment, Raw, defragment, fragment, fragment6, raw)
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402

N_PACKETS = 5
NATT_PORT = 4500
PEER_PORT = 4501

GW = {4: ("198.51.100.7", "203.0.113.1"), 6: ("2001:db8:1::7", "2001:db8:2::1")}
INNER = ("10.1.0.5", "10.2.0.9")


class Case:
    def __init__(self, name, outer_v, natt, crypt, y_cipher, enc_len, auth, y_integ, auth_len,
                 fragsize, overlap=False):
        self.name, self.outer_v, self.natt = name, outer_v, natt
        self.crypt, self.y_cipher, self.enc_len = crypt, y_cipher, enc_len
        self.auth, self.y_integ, self.auth_len = auth, y_integ, auth_len
        self.fragsize, self.overlap = fragsize, overlap


def cases():
    gcm = ("AES-GCM", "aes-gcm-128", 20, None, "none", 0)
    cbc = ("AES-CBC", "aes-cbc-256", 32, "SHA2-256-128", "hmac-sha256", 32)
    yield Case("ipv4 outer, aes-gcm-128, 576-byte fragments", 4, False, *gcm, 576)
    yield Case("ipv4 outer, aes-cbc-256+hmac-sha256, 1280-byte fragments", 4, False, *cbc, 1280)
    yield Case("ipv4 outer, ESP in UDP 4500, aes-gcm-128", 4, True, *gcm, 1000)
    yield Case("ipv6 outer, aes-gcm-128, 1280-byte fragments", 6, False, *gcm, 1280)
    yield Case("ipv6 outer, aes-cbc-256+hmac-sha256, 600-byte fragments", 6, False, *cbc, 600)
    yield Case("ipv4 outer, one overlapping duplicate fragment", 4, False, *gcm, 576,
               overlap=True)


def scapy_sa(c, spi, enc_key, auth_key):
    src, dst = GW[c.outer_v]
    tunnel = IP(src=src, dst=dst, ttl=64) if c.outer_v == 4 else IPv6(src=src, dst=dst, hlim=64)
    kw = {"crypt_algo": c.crypt, "crypt_key": enc_key}
    if c.auth:
        kw["auth_algo"] = c.auth
        kw["auth_key"] = auth_key
    return SecurityAssociation(
        ESP, spi=spi, tunnel_header=tunnel,
        nat_t_header=UDP(sport=PEER_PORT, dport=NATT_PORT) if c.natt else None, **kw)


def sa_file(c, spi, enc_key, auth_key):
    src, dst = GW[c.outer_v]
    d = {
        "name": "in-fragmented",
        "spi": "0x%x" % spi,
        "direction": "in",
        "protocol": "esp",
        "mode": "tunnel",
        "cipher": c.y_cipher,
        "integrity": c.y_integ,
        "enc_key": hexkey(enc_key),
        "auth_key": hexkey(auth_key) if c.auth_len else None,
        "local": dst,
        "remote": src,
        "replay_window": 64,
        "local_ts": ["10.2.0.0/16"],
        "remote_ts": ["10.1.0.0/16"],
    }
    if c.natt:
        d["udp_encap"] = {"local_port": NATT_PORT, "remote_port": PEER_PORT}
    return sa_yaml([d])


def split(c, pkt_bytes, ident):
    """scapy's fragmenter: IPv4 `fragment`, IPv6 `fragment6` (which needs a fragment header
    in the packet to say where the unfragmentable part ends)."""
    if c.outer_v == 4:
        p = IP(pkt_bytes)
        p.id = ident
        return [raw(f) for f in fragment(p, fragsize=c.fragsize)]
    p = IPv6(pkt_bytes)
    nh, rest = p.nh, raw(p.payload)
    p = IPv6(src=p.src, dst=p.dst, hlim=p.hlim) / IPv6ExtHdrFragment(id=ident, nh=nh) / Raw(rest)
    return [raw(f) for f in fragment6(p, c.fragsize)]


class ScapyTool:
    """scapy defragments and decrypts: what fgpcap must do, from the reference."""

    def decrypt(self, c, sa_path, in_path, out_path, keys):
        spi, enc_key, auth_key = keys
        _, frames = read_pcap(in_path)
        if c.outer_v == 4:
            groups = {}
            for f in frames:
                groups.setdefault(IP(f).id, []).append(IP(f))
            whole = [raw(defragment(sorted(g, key=lambda p: p.frag))[0]) for g in groups.values()]
        else:
            raise AssertionError("scapy has no IPv6 defragmenter for the selftest")
        out = []
        for w in whole:
            try:
                out.append(raw(scapy_sa(c, spi, enc_key, auth_key).decrypt(IP(w))))
            except Exception:
                pass
        write_pcap(out_path, LINKTYPE_RAW, out)
        return {"packets_in": len(frames), "packets_out": len(out), "drops": {},
                "fragments": len(frames), "reassembled": len(whole)}


def run_case(tool, tmp, rng, c):
    spi = rng.randrange(0x100, 0xFFFFFFFF)
    enc_key = rng.randbytes(c.enc_len)
    auth_key = rng.randbytes(c.auth_len)
    sa = scapy_sa(c, spi, enc_key, auth_key)
    originals, per_packet = [], []
    for i in range(N_PACKETS):
        size = rng.randrange(1300, 4000)
        inner = IP(src=INNER[0], dst=INNER[1], id=i, ttl=63) / UDP(sport=5000 + i, dport=7) / \
            Raw(rng.randbytes(size))
        originals.append(raw(inner))
        frags = split(c, raw(sa.encrypt(IP(raw(inner)))), 0x1000 + i)
        if len(frags) < 2:
            raise AssertionError("packet %d was not fragmented (fragsize %d)" % (i, c.fragsize))
        rng.shuffle(frags)
        per_packet.append(frags)
    spoiled = None
    if c.overlap:
        # Another copy of one fragment of packet 2, with different bytes at the end.
        spoiled = 2
        f = bytearray(per_packet[2][0])
        f[-1] ^= 0xFF
        per_packet[2].insert(1, bytes(f))
    # Interleave the packets' fragments, keeping each packet's (shuffled) order.
    wire, queues = [], [list(q) for q in per_packet]
    while any(queues):
        q = rng.choice([q for q in queues if q])
        wire.append(q.pop(0))
    sa_path, in_path, out_path = (os.path.join(tmp, f) for f in ("in.yaml", "frag.pcap", "out.pcap"))
    with open(sa_path, "w") as f:
        f.write(sa_file(c, spi, enc_key, auth_key))
    write_pcap(in_path, LINKTYPE_RAW, wire)
    stats = tool.decrypt(c, sa_path, in_path, out_path, (spi, enc_key, auth_key))
    want_out = N_PACKETS - (1 if spoiled is not None else 0)
    drops = nonzero_drops(stats)
    want_drops = {"reassembly": 1} if spoiled is not None else {}
    got = (stats["packets_in"], stats["packets_out"], drops, stats.get("reassembled"))
    want = (len(wire), want_out, want_drops, want_out)
    if got != want:
        raise AssertionError("in/out/drops/reassembled %r, want %r" % (got, want))
    _, out = read_pcap(out_path)
    expect = [o for i, o in enumerate(originals) if i != spoiled]
    got_sorted = sorted(out, key=lambda b: IP(b).id)
    for i, (o, g) in enumerate(zip(expect, got_sorted)):
        if o != g:
            raise AssertionError("packet %d: decrypted bytes differ from the original" % i)


def main():
    picked = tool_from_args(sys.argv[1:], __doc__, RealTool, ScapyTool)
    if picked is None:
        return 2
    tool, label = picked
    def skip(c):
        if not isinstance(tool, ScapyTool):
            return None
        if c.outer_v == 6:
            return "no IPv6 defragmenter in scapy"
        if c.overlap:
            return "scapy's defragmenter keeps overlapping data"
        return None
    return run_cases("scapy_fragments", label, list(cases()),
                     lambda tmp, rng, c: run_case(tool, tmp, rng, c), skip)


if __name__ == "__main__":
    sys.exit(main())
