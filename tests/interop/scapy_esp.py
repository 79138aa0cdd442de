#!/usr/bin/env python3
"""ESP/AH interop between fgpcap and scapy, the independent byte-level reference.

Usage:
    .venv/bin/python tests/interop/scapy_esp.py PATH/TO/fgpcap     # against the real tool
    .venv/bin/python tests/interop/scapy_esp.py --selftest         # scapy side only (see below)
    SEED=1234 ...                                                   # reproduce a run
    ... --only gcm                                                  # combinations whose name
                                                                    #   contains this substring

For every cipher/integrity suite x mode (tunnel 4in4, 6in6, 4in6, 6in4; transport v4, v6) x ESN
(off; on with the 64-bit counter crossing 2^32 during the run) x NAT-T (off; on where the outer
header is IPv4, RFC 3948 is ESP only), with random keys, SPIs and ~8 random packets:
  (a) encrypt: the packets go into an Ethernet pcap (plus one packet outside the SA's selectors),
      `fgpcap encrypt` runs with an out SA, and every output packet is checked on the wire (outer
      header, SPI, sequence number, NAT-T ports, padding, unique AEAD IVs) and decrypted with
      scapy's SecurityAssociation; the inner packet must equal the original byte for byte.
  (b) decrypt: scapy encrypts the same packets for an in SA (plus one plain packet that is not
      IPsec), `fgpcap decrypt` runs, and its output must equal the originals byte for byte.
Then a few link-type cases (raw IP 101, IPv4 228, IPv6 229) check that the output keeps the
input's link type.

--selftest replaces fgpcap by an emulation built on scapy itself, so the packet generation, pcap
files, expected sequence numbers and every check above are validated without the real tool.
"""

import ipaddress
import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW, ethernet, ethertype_for,
    hexkey, ip_version, ipv4_header_checksum_ok, nonzero_drops, random_addr, read_pcap,
    run_cases, run_fgpcap, sa_yaml, tool_from_args, udp4_checksum_ok, write_pcap)

import logging  # noqa: E402

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import ICMP, IP, TCP, UDP, ICMPv6EchoRequest, IPv6, Raw, raw  # noqa: E402
from scapy.layers.ipsec import AH, AUTH_ALGOS, CRYPT_ALGOS, ESP, SecurityAssociation  # noqa: E402

N_PACKETS = 8

# name -> (protocol, scapy crypt algo, scapy auth algo, yaml cipher, yaml integrity,
#          enc key bytes incl. salt, auth key bytes)
# Key sizes: HMAC-SHA2 keys are the hash output size (RFC 4868 §2.1.1); GCM/GMAC/ChaCha20
# keys carry the 4-byte salt at the end (RFC 4106 §8.1, RFC 4543 §3.2, RFC 7634 §4).
SUITES = [
    ("null+hmac-sha256", "esp", None, "SHA2-256-128", "null", "hmac-sha256", 0, 32),
    ("aes-cbc-128+hmac-sha256", "esp", "AES-CBC", "SHA2-256-128", "aes-cbc-128", "hmac-sha256", 16, 32),
    ("aes-cbc-128+hmac-sha384", "esp", "AES-CBC", "SHA2-384-192", "aes-cbc-128", "hmac-sha384", 16, 48),
    ("aes-cbc-128+hmac-sha512", "esp", "AES-CBC", "SHA2-512-256", "aes-cbc-128", "hmac-sha512", 16, 64),
    ("aes-cbc-256+hmac-sha256", "esp", "AES-CBC", "SHA2-256-128", "aes-cbc-256", "hmac-sha256", 32, 32),
    ("aes-cbc-256+hmac-sha384", "esp", "AES-CBC", "SHA2-384-192", "aes-cbc-256", "hmac-sha384", 32, 48),
    ("aes-cbc-256+hmac-sha512", "esp", "AES-CBC", "SHA2-512-256", "aes-cbc-256", "hmac-sha512", 32, 64),
    ("aes-gcm-128", "esp", "AES-GCM", None, "aes-gcm-128", "none", 20, 0),
    ("aes-gcm-256", "esp", "AES-GCM", None, "aes-gcm-256", "none", 36, 0),
    ("chacha20-poly1305", "esp", "CHACHA20-POLY1305", None, "chacha20-poly1305", "none", 36, 0),
    ("aes-gmac-128", "esp", "AES-NULL-GMAC", None, "aes-gmac-128", "none", 20, 0),
    ("aes-gmac-256", "esp", "AES-NULL-GMAC", None, "aes-gmac-256", "none", 36, 0),
    ("ah-hmac-sha256", "ah", None, "SHA2-256-128", None, "hmac-sha256", 0, 32),
]

# (mode, inner version, outer version); in transport mode the packet is its own "outer".
MODES = [
    ("tunnel", 4, 4), ("tunnel", 6, 6), ("tunnel", 4, 6), ("tunnel", 6, 4),
    ("transport", 4, 4), ("transport", 6, 6),
]

# Inner selectors: the "left" site sends from LEFT to RIGHT.
LEFT = {4: "192.168.10.0/24", 6: "fd00:10::/64"}
RIGHT = {4: "192.168.20.0/24", 6: "fd00:20::/64"}
OUTSIDE = {4: "192.168.99.0/24", 6: "fd00:99::/64"}
# Tunnel endpoints (documentation ranges).
GW_LEFT = {4: "10.1.0.1", 6: "2001:db8:1::1"}
GW_RIGHT = {4: "10.2.0.1", 6: "2001:db8:2::1"}

NATT_PORT = 4500  # RFC 3948 §2.1 (ours); the peer's port is random, as after a NAT.


class Combo:
    def __init__(self, suite, mode, inner_v, outer_v, esn, natt, linktype=LINKTYPE_ETHERNET):
        (self.suite, self.proto, self.s_crypt, self.s_auth, self.y_cipher, self.y_integ,
         self.enc_len, self.auth_len) = suite
        self.mode, self.inner_v, self.outer_v = mode, inner_v, outer_v
        self.esn, self.natt, self.linktype = esn, natt, linktype

    @property
    def name(self):
        if self.mode == "tunnel":
            m = "tunnel %din%d" % (self.inner_v, self.outer_v)
        else:
            m = "transport v%d" % self.inner_v
        lt = "" if self.linktype == LINKTYPE_ETHERNET else " linktype %d" % self.linktype
        return "%s %s esn=%s natt=%s%s" % (self.suite, m, "on" if self.esn else "off",
                                          "on" if self.natt else "off", lt)


class Sa:
    """One SA as both the YAML fgpcap reads and the scapy SecurityAssociation that mirrors it."""

    def __init__(self, combo, rng, direction):
        self.c = combo
        self.direction = direction
        self.spi = rng.randrange(0x100, 0xFFFFFFFF)
        self.enc_key = rng.randbytes(combo.enc_len)
        self.auth_key = rng.randbytes(combo.auth_len)
        # ESN: start 4 below 2^32 so the 64-bit counter crosses into the high half mid-run.
        self.initial_seq = (1 << 32) - N_PACKETS // 2 if combo.esn else rng.randrange(0, 1000)
        self.peer_port = rng.randrange(1024, 65536)
        # The out SA is the left gateway's; the in SA is the right gateway's view of the same
        # traffic (packets LEFT -> RIGHT), so local/remote and the selectors swap.
        if direction == "out":
            self.local_gw, self.remote_gw = GW_LEFT[combo.outer_v], GW_RIGHT[combo.outer_v]
            self.local_ts, self.remote_ts = LEFT[combo.inner_v], RIGHT[combo.inner_v]
        else:
            self.local_gw, self.remote_gw = GW_RIGHT[combo.outer_v], GW_LEFT[combo.outer_v]
            self.local_ts, self.remote_ts = RIGHT[combo.inner_v], LEFT[combo.inner_v]

    def yaml(self):
        c = self.c
        d = {
            "name": "%s-%s" % (self.direction, c.suite),
            "spi": "0x%x" % self.spi,
            "direction": self.direction,
            "protocol": c.proto,
            "mode": c.mode,
        }
        if c.proto == "esp":
            d["cipher"] = c.y_cipher  # "null" is written bare, as in the contract
        d["integrity"] = c.y_integ
        if c.enc_len:
            d["enc_key"] = hexkey(self.enc_key)
        if c.auth_len:
            d["auth_key"] = hexkey(self.auth_key)
        if c.mode == "tunnel":
            d["local"] = self.local_gw
            d["remote"] = self.remote_gw
        if c.natt:
            d["udp_encap"] = {"local_port": NATT_PORT, "remote_port": self.peer_port}
        d["esn"] = c.esn
        if self.direction == "in":
            d["replay_window"] = 64
        d["initial_seq"] = self.initial_seq
        d["local_ts"] = [self.local_ts]
        d["remote_ts"] = [self.remote_ts]
        return sa_yaml([d])

    def nth_seq(self, i):
        """The 64-bit sequence number of the i-th packet (0-based) sent on this SA."""
        return self.initial_seq + 1 + i

    def scapy(self, seq64):
        """A scapy SA for the packet with this 64-bit sequence number. The SA as the sender
        builds it: outer src = the sending gateway."""
        c = self.c
        if self.direction == "out":
            src, dst, sport, dport = self.local_gw, self.remote_gw, NATT_PORT, self.peer_port
        else:
            src, dst, sport, dport = self.remote_gw, self.local_gw, self.peer_port, NATT_PORT
        tunnel = None
        if c.mode == "tunnel":
            tunnel = IP(src=src, dst=dst, ttl=64) if c.outer_v == 4 else IPv6(src=src, dst=dst, hlim=64)
        kw = {}
        if c.proto == "esp":
            kw["crypt_algo"] = c.s_crypt or "NULL"
            kw["crypt_key"] = self.enc_key or None
        if c.s_auth:
            kw["auth_algo"] = c.s_auth
            kw["auth_key"] = self.auth_key
        sa = SecurityAssociation(
            ESP if c.proto == "esp" else AH, spi=self.spi, seq_num=seq64 & 0xFFFFFFFF,
            tunnel_header=tunnel, nat_t_header=UDP(sport=sport, dport=dport) if c.natt else None,
            esn_en=c.esn, esn=(seq64 >> 32) if c.esn else 0, **kw)
        return sa


# ---------------------------------------------------------------------------------------------
# Packets

def make_packet(rng, v, src, dst):
    payload = rng.randbytes(rng.randrange(0, 1401))
    kind = rng.choice(["tcp", "udp", "icmp"])
    if v == 4:
        ip = IP(src=src, dst=dst, ttl=rng.randrange(2, 256), id=rng.randrange(65536),
                tos=rng.randrange(64) << 2, flags=rng.choice([0, 2]))
        if kind == "icmp":
            l4 = ICMP(type=8, id=rng.randrange(65536), seq=rng.randrange(65536))
    else:
        ip = IPv6(src=src, dst=dst, hlim=rng.randrange(2, 256), fl=rng.randrange(1 << 20),
                  tc=rng.randrange(64) << 2)
        if kind == "icmp":
            l4 = ICMPv6EchoRequest(id=rng.randrange(65536), seq=rng.randrange(65536), data=payload)
            payload = b""
    if kind == "tcp":
        l4 = TCP(sport=rng.randrange(1024, 65536), dport=rng.choice([22, 80, 443, 5201]),
                 seq=rng.randrange(1 << 32), ack=rng.randrange(1 << 32), flags="PA")
    elif kind == "udp":
        l4 = UDP(sport=rng.randrange(1024, 65536), dport=rng.choice([53, 123, 4789, 5201]))
    pkt = ip / l4
    if payload:
        pkt = pkt / Raw(payload)
    return raw(pkt)


def rand_mac(rng):
    return bytes([rng.randrange(256) & 0xFE | 0x02]) + rng.randbytes(5)


def encode_frame(linktype, macs, ip_bytes):
    if linktype == LINKTYPE_ETHERNET:
        return ethernet(macs[0], macs[1], ethertype_for(ip_bytes), ip_bytes)
    return ip_bytes


def decode_frame(linktype, frame, macs, what):
    """Strips the link header, checking that the MACs were kept and the ethertype follows the
    IP version. Returns the IP packet."""
    if linktype != LINKTYPE_ETHERNET:
        return frame
    if len(frame) < 14:
        raise AssertionError("%s: %d-byte Ethernet frame" % (what, len(frame)))
    if frame[:12] != macs[0] + macs[1]:
        raise AssertionError("%s: MAC addresses changed: %s -> %s" % (what, (macs[0] + macs[1]).hex(), frame[:12].hex()))
    ip = frame[14:]
    want = ethertype_for(ip)
    got = struct.unpack("!H", frame[12:14])[0]
    if got != want:
        raise AssertionError("%s: ethertype 0x%04x for an IPv%d packet" % (what, got, ip_version(ip)))
    return ip


def parse_ip(b):
    return IP(b) if ip_version(b) == 4 else IPv6(b)


def in_net(addr, net):
    return ipaddress.ip_address(addr) in ipaddress.ip_network(net)


# ---------------------------------------------------------------------------------------------
# The tool: fgpcap, or an emulation of its contract on scapy (--selftest).

class RealTool:
    def __init__(self, path):
        self.path = path

    def run(self, verb, sa, sa_path, in_path, out_path):
        return run_fgpcap(self.path, verb, sa_path, in_path, out_path)


class ScapyTool:
    """fgpcap's contract, emulated with scapy, for one SA (the one the test wrote)."""

    def run(self, verb, sa, sa_path, in_path, out_path):
        linktype, frames = read_pcap(in_path)
        out, drops, n = [], {}, 0
        for frame in frames:
            if linktype == LINKTYPE_ETHERNET:
                hdr, ip = frame[:12], frame[14:]
            else:
                hdr, ip = None, frame
            pkt = parse_ip(ip)
            if verb == "encrypt":
                if not (in_net(pkt.src, sa.local_ts) and in_net(pkt.dst, sa.remote_ts)):
                    drops["no_sa_for_policy"] = drops.get("no_sa_for_policy", 0) + 1
                    continue
                s = sa.scapy(sa.nth_seq(n))
                res = raw(s.encrypt(pkt))
                n += 1
            else:
                layer = ESP if sa.c.proto == "esp" else AH
                if not pkt.haslayer(layer) or pkt[layer].spi != sa.spi:
                    drops["not_ipsec"] = drops.get("not_ipsec", 0) + 1
                    continue
                seq32 = pkt[layer].seq
                # ESN: the high half is inferred from the window (RFC 4303 App. A); this test's
                # packets arrive in order, so wrapping below the initial value means +1.
                hi = 0
                if sa.c.esn:
                    hi = (sa.initial_seq >> 32) + (1 if seq32 < (sa.initial_seq & 0xFFFFFFFF) else 0)
                s = sa.scapy((hi << 32) | seq32)
                res = raw(s.decrypt(pkt))
            out.append(res if hdr is None else hdr + struct.pack("!H", ethertype_for(res)) + res)
        write_pcap(out_path, linktype, out)
        return {"packets_in": len(frames), "packets_out": len(out), "drops": drops}


# ---------------------------------------------------------------------------------------------
# Checks

def check_outer(c, sa, orig, ip, i):
    """Wire checks of one encrypted packet against RFC 4303/4302/3948 and the SA."""
    what = "packet %d" % i
    proto = 50 if c.proto == "esp" else 51
    want_proto = 17 if c.natt else proto
    if ip_version(ip) != c.outer_v:
        raise AssertionError("%s: outer IPv%d, want IPv%d" % (what, ip_version(ip), c.outer_v))
    if c.outer_v == 4:
        if ip[0] != 0x45:
            raise AssertionError("%s: first byte 0x%02x, want 0x45 (no options)" % (what, ip[0]))
        if not ipv4_header_checksum_ok(ip):
            raise AssertionError("%s: bad IPv4 header checksum" % what)
        if struct.unpack("!H", ip[2:4])[0] != len(ip):
            raise AssertionError("%s: total length %d, packet is %d" % (what, struct.unpack("!H", ip[2:4])[0], len(ip)))
        if ip[9] != want_proto:
            raise AssertionError("%s: protocol %d, want %d" % (what, ip[9], want_proto))
        hl = 20
        if c.mode == "tunnel":
            if ip[8] != 64:
                raise AssertionError("%s: outer TTL %d, want 64" % (what, ip[8]))
            if (str(ipaddress.ip_address(ip[12:16])), str(ipaddress.ip_address(ip[16:20]))) != (sa.local_gw, sa.remote_gw):
                raise AssertionError("%s: outer addresses wrong" % what)
        else:
            # Transport: only protocol, total length and checksum may change (RFC 4303 §3.1.1).
            if ip[0:2] != orig[0:2] or ip[4:9] != orig[4:9] or ip[12:20] != orig[12:20]:
                raise AssertionError("%s: transport-mode IPv4 header changed beyond proto/len/csum: %s vs %s" % (what, ip[:20].hex(), orig[:20].hex()))
    else:
        if struct.unpack("!H", ip[4:6])[0] != len(ip) - 40:
            raise AssertionError("%s: IPv6 payload length %d, want %d" % (what, struct.unpack("!H", ip[4:6])[0], len(ip) - 40))
        if ip[6] != want_proto:
            raise AssertionError("%s: next header %d, want %d" % (what, ip[6], want_proto))
        hl = 40
        if c.mode == "tunnel":
            if ip[7] != 64:
                raise AssertionError("%s: outer hop limit %d, want 64" % (what, ip[7]))
            if (str(ipaddress.ip_address(ip[8:24])), str(ipaddress.ip_address(ip[24:40]))) != (sa.local_gw, sa.remote_gw):
                raise AssertionError("%s: outer addresses wrong" % what)
        else:
            if ip[0:4] != orig[0:4] or ip[7:40] != orig[7:40]:
                raise AssertionError("%s: transport-mode IPv6 header changed beyond nh/plen" % what)
    if c.natt:
        sport, dport, ulen, csum = struct.unpack("!HHHH", ip[hl:hl + 8])
        if (sport, dport) != (NATT_PORT, sa.peer_port):
            raise AssertionError("%s: UDP ports %d->%d, want %d->%d" % (what, sport, dport, NATT_PORT, sa.peer_port))
        if ulen != len(ip) - hl:
            raise AssertionError("%s: UDP length %d, want %d" % (what, ulen, len(ip) - hl))
        if csum != 0:
            # RFC 3948 §2.1: the checksum SHOULD be zero for IPv4; a non-zero one must be right.
            if not udp4_checksum_ok(ip):
                raise AssertionError("%s: non-zero, wrong UDP checksum 0x%04x" % (what, csum))
        hl += 8
    spi, seq = struct.unpack("!II", ip[hl:hl + 8] if c.proto == "esp" else ip[hl + 4:hl + 12])
    want_seq = sa.nth_seq(i)
    if spi != sa.spi:
        raise AssertionError("%s: SPI 0x%08x, want 0x%08x" % (what, spi, sa.spi))
    if seq != want_seq & 0xFFFFFFFF:
        raise AssertionError("%s: sequence number 0x%08x, want 0x%08x (64-bit 0x%x)" % (what, seq, want_seq & 0xFFFFFFFF, want_seq))
    return hl


def check_esp_plaintext(c, s, pkt, what):
    """Decrypts again without decapsulating, to see the trailer: padding must be 1, 2, 3...
    (RFC 4303 §2.4) and the encrypted part must end on a 4-byte (and cipher block) boundary."""
    esp = pkt[ESP]
    icv = s.crypt_icv_size or s.crypt_algo.icv_size or s.auth_algo.icv_size
    plain = s.crypt_algo.decrypt(s, esp, s.crypt_key, icv, esn_en=s.esn_en, esn=s.esn)
    if plain.padding != bytes(range(1, plain.padlen + 1)):
        raise AssertionError("%s: padding %s is not 1,2,3..." % (what, plain.padding.hex()))
    ct_len = len(esp.data) - s.crypt_algo.iv_size - icv
    block = s.crypt_algo.block_size
    if ct_len % block or (s.crypt_algo.iv_size + ct_len) % 4:
        raise AssertionError("%s: ciphertext length %d not aligned (block %d, 4)" % (what, ct_len, block))
    if plain.padlen >= max(block, 4):
        raise AssertionError("%s: %d padding bytes, more than alignment needs" % (what, plain.padlen))
    return plain.iv


def run_combo(tool, tmp, rng, c):
    """Runs (a) and (b) for one combination; raises AssertionError/ToolError on a mismatch."""
    n = N_PACKETS
    macs = (rand_mac(rng), rand_mac(rng))

    # ---- (a) fgpcap encrypts, scapy decrypts.
    sa = Sa(c, rng, "out")
    originals = [make_packet(rng, c.inner_v, random_addr(rng, sa.local_ts), random_addr(rng, sa.remote_ts))
                 for _ in range(n)]
    stray = make_packet(rng, c.inner_v, random_addr(rng, OUTSIDE[c.inner_v]), random_addr(rng, sa.remote_ts))
    stray_at = rng.randrange(n + 1)
    frames = [encode_frame(c.linktype, macs, p) for p in originals]
    frames.insert(stray_at, encode_frame(c.linktype, macs, stray))
    sa_path, in_path, out_path = (os.path.join(tmp, f) for f in ("out.yaml", "plain.pcap", "esp.pcap"))
    with open(sa_path, "w") as f:
        f.write(sa.yaml())
    write_pcap(in_path, c.linktype, frames)
    stats = tool.run("encrypt", sa, sa_path, in_path, out_path)
    want = {"packets_in": n + 1, "packets_out": n, "drops": {"no_sa_for_policy": 1}}
    got = {"packets_in": stats["packets_in"], "packets_out": stats["packets_out"], "drops": nonzero_drops(stats)}
    if got != want:
        raise AssertionError("encrypt stats %r, want %r" % (got, want))
    linktype, out = read_pcap(out_path)
    if linktype != c.linktype:
        raise AssertionError("encrypt output link type %d, want %d" % (linktype, c.linktype))
    if len(out) != n:
        raise AssertionError("encrypt wrote %d packets, want %d" % (len(out), n))
    ivs = set()
    for i, (orig, frame) in enumerate(zip(originals, out)):
        ip = decode_frame(c.linktype, frame, macs, "encrypt packet %d" % i)
        check_outer(c, sa, orig, ip, i)
        s = sa.scapy(sa.nth_seq(i))
        try:
            dec = raw(s.decrypt(parse_ip(ip)))  # decrypt() mutates its argument: fresh parse
        except Exception as e:
            raise AssertionError("encrypt packet %d: scapy cannot decrypt/verify it: %s: %s" % (i, type(e).__name__, e))
        if dec != orig:
            raise AssertionError("encrypt packet %d: decrypted inner differs from the original:\n  got  %s\n  want %s" % (i, dec.hex(), orig.hex()))
        if c.proto == "esp":
            iv = check_esp_plaintext(c, s, parse_ip(ip), "encrypt packet %d" % i)
            if s.crypt_algo.iv_size:
                # RFC 4106 §3.1 / RFC 7634 §2: a counter-mode IV must never repeat under a key.
                if iv in ivs:
                    raise AssertionError("encrypt packet %d: IV %s reused" % (i, iv.hex()))
                ivs.add(iv)

    # ---- (b) scapy encrypts, fgpcap decrypts.
    sa = Sa(c, rng, "in")
    originals = [make_packet(rng, c.inner_v, random_addr(rng, sa.remote_ts), random_addr(rng, sa.local_ts))
                 for _ in range(n)]
    enc = [raw(sa.scapy(sa.nth_seq(i)).encrypt(parse_ip(p))) for i, p in enumerate(originals)]
    plain_at = rng.randrange(n + 1)
    frames = [encode_frame(c.linktype, macs, e) for e in enc]
    frames.insert(plain_at, encode_frame(c.linktype, macs, originals[0]))
    sa_path, in_path, out_path = (os.path.join(tmp, f) for f in ("in.yaml", "esp-in.pcap", "plain-out.pcap"))
    with open(sa_path, "w") as f:
        f.write(sa.yaml())
    write_pcap(in_path, c.linktype, frames)
    stats = tool.run("decrypt", sa, sa_path, in_path, out_path)
    want = {"packets_in": n + 1, "packets_out": n, "drops": {"not_ipsec": 1}}
    got = {"packets_in": stats["packets_in"], "packets_out": stats["packets_out"], "drops": nonzero_drops(stats)}
    if got != want:
        raise AssertionError("decrypt stats %r, want %r" % (got, want))
    linktype, out = read_pcap(out_path)
    if linktype != c.linktype:
        raise AssertionError("decrypt output link type %d, want %d" % (linktype, c.linktype))
    if len(out) != n:
        raise AssertionError("decrypt wrote %d packets, want %d" % (len(out), n))
    for i, (orig, frame) in enumerate(zip(originals, out)):
        ip = decode_frame(c.linktype, frame, macs, "decrypt packet %d" % i)
        if ip != orig:
            raise AssertionError("decrypt packet %d differs from the original:\n  got  %s\n  want %s" % (i, ip.hex(), orig.hex()))


def combos():
    for suite in SUITES:
        for mode, inner_v, outer_v in MODES:
            for esn in (False, True):
                for natt in ((False, True) if outer_v == 4 and suite[1] == "esp" else (False,)):
                    yield Combo(suite, mode, inner_v, outer_v, esn, natt)
    gcm = SUITES[7]
    yield Combo(gcm, "tunnel", 4, 6, False, False, LINKTYPE_RAW)
    yield Combo(gcm, "transport", 6, 6, True, False, LINKTYPE_RAW)
    yield Combo(gcm, "tunnel", 4, 4, False, True, LINKTYPE_IPV4)
    yield Combo(gcm, "transport", 4, 4, False, False, LINKTYPE_IPV4)
    yield Combo(gcm, "tunnel", 6, 6, True, False, LINKTYPE_IPV6)


def main():
    args = sys.argv[1:]
    only = None
    if "--only" in args:
        k = args.index("--only")
        only = args[k + 1]
        del args[k:k + 2]
    picked = tool_from_args(args, __doc__, RealTool, ScapyTool)
    if picked is None:
        return 2
    tool, label = picked

    def skip(c):
        missing = [a for a in (c.s_crypt, c.s_auth) if a and a not in CRYPT_ALGOS and a not in AUTH_ALGOS]
        return "this scapy has no %s" % ", ".join(missing) if missing else None

    cases = [c for c in combos() if not only or only in c.name]
    return run_cases("scapy_esp", label, cases, lambda tmp, rng, c: run_combo(tool, tmp, rng, c), skip)


if __name__ == "__main__":
    sys.exit(main())
