#!/usr/bin/env python3
"""Inbound attack suite for `fgpcap decrypt`: replay, tampering, truncation, wrong SPI, bad
padding and selector violations, with exact drop counts and byte-identical survivors.

Usage:
    .venv/bin/python tests/interop/scapy_attacks.py PATH/TO/fgpcap
    .venv/bin/python tests/interop/scapy_attacks.py --selftest
    SEED=1234 ...                                   # reproduce a run

For each of two in SAs (AES-GCM-128, and AES-CBC-128 + HMAC-SHA-256-128; tunnel mode, IPv4, replay
window 64, no ESN) one Ethernet capture is built from scapy-made ESP packets plus hand-crafted
ones, in this order (sequence numbers in brackets):

   1. valid [1..5]                              -> written
   2. exact copy of [3]                         -> replay_duplicate
   3. valid [100]                               -> written (window now covers 37..100)
   4. valid [36] = top - 64                     -> replay_too_old      (left of the window)
      valid [37] = top - 63                     -> written             (inside, new)
   5. copies of [100] and [37]                  -> replay_duplicate
   6. valid crypto, unknown SPI [101]           -> no_sa
   7. [150] with its sequence field rewritten to 4 / 37 / 60 / 151
                                                -> replay_too_old / replay_duplicate /
                                                   icv_mismatch / icv_mismatch
   8. [240], one copy per byte of the ESP part (SPI to ICV) with that byte XORed with 0xff:
        SPI bytes      -> no_sa
        sequence bytes -> whatever the replay window says about the new number, else
                          icv_mismatch (computed below by a model of the window)
        IV, ciphertext, ICV bytes -> icv_mismatch
   9. [240] untouched                           -> written (the tampered copies did not move
                                                   the window)
  10. [241] cut to every ESP length L below the SA's minimum, IP length/checksum fixed up:
        L < 8                                   -> bad_length  (no complete SPI + sequence
                                                   number, RFC 4303 §2; `malformed` is kept for
                                                   frame/IP-level defects, see SHORT_ESP_HEADER)
        8 <= L < 8 + IV + ICV + M               -> bad_length  (the SA is known, but the packet
                                                   cannot hold IV, the smallest ciphertext and
                                                   ICV; M = 2 (pad length + next header) for
                                                   GCM, one 16-byte block for CBC; it is a
                                                   length error whatever its ICV, so it is
                                                   reported before the ICV is checked)
      Lengths from the minimum up are structurally possible and would fail the ICV; they are
      covered by item 8, not here (and 4-byte alignment of GCM ciphertext is not asserted).
  11. [241] untouched                           -> written
  12. [242] with IP total length > frame        -> malformed
      [242] untouched                           -> written
  13. a plain UDP packet                        -> not_ipsec
  14. [300] padding bytes not 1,2,3... (ICV valid; crafted with `cryptography` using the
      RFC 4106 §4/§5 nonce and AAD, or RFC 4303 §2 + HMAC for CBC) -> bad_padding
      [301] pad length larger than the plaintext (ICV valid)           -> bad_padding
  15. [302] inner dst outside local_ts, [303] inner src outside remote_ts
                                                -> policy_mismatch (RFC 4301 §5.2 step 4)
  16. valid [304]                               -> written

Receive order assumed (RFC 4303 §3.4): IP header -> ESP header (8 bytes) -> SA by SPI
-> length -> anti-replay (§3.4.3, before the ICV) -> ICV -> padding -> inner selectors. Items
10's truncated copies carry an unseen sequence number, so length-before-replay or
replay-before-length gives the same answer. Whether a packet failing after the ICV (items 14,
15) updates the window is left open by the RFCs; those packets carry sequence numbers above
everything before them and below everything after, so either choice gives the same counts.

The assertion is on `fgpcap decrypt --json`'s counts (exactly these reasons, nothing else
non-zero), packets_in/out, and the written packets: byte-identical inner packets, in order.

--selftest runs an independent receiver written here on `cryptography` (not scapy) over the same
capture and checks its per-packet verdicts against the expectations, and checks that the
crafted bad-padding packets decrypt to the intended plaintext and pass scapy's ICV check.
"""

import collections
import hashlib
import hmac
import ipaddress
import os
import random
import struct
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    ETH_P_IP, LINKTYPE_ETHERNET, Tally, ToolError, check_tool, ethernet, hexkey, ipv4_fix,
    nonzero_drops, random_addr, read_pcap, run_fgpcap, sa_yaml, seed_from_env, write_pcap)

import logging  # noqa: E402

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from scapy.all import IP, UDP, Raw, raw  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402

WINDOW = 64
LOCAL_GW, REMOTE_GW = "10.2.0.1", "10.1.0.1"          # in SA: outer dst, outer src
LOCAL_TS, REMOTE_TS = "192.168.20.0/24", "192.168.10.0/24"  # in SA: inner dst, inner src
OUTSIDE = "192.168.99.0/24"
ESP_OFF = 20  # the outer IPv4 header has no options
# Verdict for an ESP part shorter than its own 8-byte header (SPI + sequence number). The
# project's drop taxonomy (dataplane/src/drop.rs) keeps `malformed` for frame/IP-level defects
# and gives every ESP length defect to `bad_length` ("shorter than IV + ICV"), so a too-short
# ESP header is `bad_length` too, even though no SA can be looked up for it.
SHORT_ESP_HEADER = "bad_length"


class SaSpec:
    def __init__(self, kind, rng):
        self.kind = kind
        if kind == "gcm":
            self.spi = 0x2001
            self.enc_key = rng.randbytes(20)  # 16-byte key + 4-byte salt (RFC 4106 §8.1)
            self.auth_key = b""
            self.iv_len, self.icv_len, self.min_ct = 8, 16, 2
        else:
            self.spi = 0x3001
            self.enc_key = rng.randbytes(16)
            self.auth_key = rng.randbytes(32)  # RFC 4868 §2.1.1: key = hash output size
            self.iv_len, self.icv_len, self.min_ct = 16, 16, 16
        self.min_len = 8 + self.iv_len + self.icv_len + self.min_ct

    @property
    def name(self):
        return "aes-gcm-128" if self.kind == "gcm" else "aes-cbc-128+hmac-sha256"

    def yaml(self):
        d = {"name": "attack-" + self.kind, "spi": "0x%x" % self.spi, "direction": "in",
             "protocol": "esp", "mode": "tunnel"}
        if self.kind == "gcm":
            d.update(cipher="aes-gcm-128", integrity="none", enc_key=hexkey(self.enc_key))
        else:
            d.update(cipher="aes-cbc-128", integrity="hmac-sha256", enc_key=hexkey(self.enc_key),
                     auth_key=hexkey(self.auth_key))
        d.update(local=LOCAL_GW, remote=REMOTE_GW, esn=False, replay_window=WINDOW,
                 initial_seq=0, local_ts=[LOCAL_TS], remote_ts=[REMOTE_TS])
        return sa_yaml([d])

    def scapy(self, spi=None):
        kw = dict(crypt_algo="AES-GCM", crypt_key=self.enc_key) if self.kind == "gcm" else \
            dict(crypt_algo="AES-CBC", crypt_key=self.enc_key, auth_algo="SHA2-256-128",
                 auth_key=self.auth_key)
        return SecurityAssociation(ESP, spi=self.spi if spi is None else spi,
                                   tunnel_header=IP(src=REMOTE_GW, dst=LOCAL_GW), **kw)


class Window:
    """Anti-replay as RFC 4303 §3.4.3 specifies it (no ESN): the window covers
    [top - W + 1, top]; left of it is too old, a marked number inside is a duplicate."""

    def __init__(self, size):
        self.size, self.top, self.seen = size, 0, set()

    def check(self, seq):
        assert seq != 0, "the suite never sends sequence number 0"
        if seq > self.top:
            return None
        if seq <= self.top - self.size:
            return "replay_too_old"
        if seq in self.seen:
            return "replay_duplicate"
        return None

    def accept(self, seq):
        self.seen.add(seq)
        self.top = max(self.top, seq)


class Capture:
    """The capture under construction, the expected verdict of every packet, and the model of
    the receiver's replay window that the expectations are computed with."""

    def __init__(self, sa, rng):
        self.sa, self.rng = sa, rng
        self.macs = (bytes.fromhex("020000000002"), bytes.fromhex("020000000001"))
        self.frames, self.expected, self.labels = [], [], []
        self.win = Window(WINDOW)
        self.ambiguous_above = 0  # see the docstring: post-ICV failures may or may not mark

    def inner(self, src_net=REMOTE_TS, dst_net=LOCAL_TS):
        rng = self.rng
        p = IP(src=random_addr(rng, src_net), dst=random_addr(rng, dst_net), ttl=rng.randrange(2, 256),
               id=rng.randrange(65536)) / UDP(sport=rng.randrange(1024, 65536), dport=5201) / \
            Raw(rng.randbytes(rng.randrange(0, 300)))
        return raw(p)

    def esp(self, seq, inner=None, spi=None):
        """A scapy-made valid ESP packet (outer IPv4) with this sequence number."""
        inner = inner or self.inner()
        sa = self.sa.scapy(spi)
        iv = self.rng.randbytes(sa.crypt_algo.iv_size)  # seeded, so a run reproduces exactly
        return raw(sa.encrypt(IP(inner), seq_num=seq, iv=iv)), inner

    def add(self, label, ip_bytes, pre=None, seq=None, post=None, inner=None):
        """pre: a defect found before the replay check; post: one found after it (ICV and
        later). Without either, and when the window agrees, the packet is valid and written."""
        if seq is not None and seq <= self.ambiguous_above:
            raise RuntimeError("suite bug: %s reuses the range of a post-ICV failure" % label)
        reason = pre
        if reason is None and seq is not None:
            reason = self.win.check(seq)
        if reason is None:
            reason = post
        if reason is None:
            self.win.accept(seq)
            self.expected.append(("ok", inner))
        else:
            if post is not None and reason == post and post != "icv_mismatch":
                self.ambiguous_above = max(self.ambiguous_above, seq)
            self.expected.append((reason, None))
        self.labels.append(label)
        self.frames.append(ethernet(self.macs[0], self.macs[1], ETH_P_IP, ip_bytes))


def xor_at(b, i, mask=0xFF):
    b = bytearray(b)
    b[i] ^= mask
    return bytes(b)


# ---------------------------------------------------------------------------------------------
# Hand-crafted packets with a valid ICV (the `cryptography` library, no scapy)

def craft_esp(sa, seq, plaintext, rng):
    """ESP with this exact plaintext (payload + padding + pad length + next header), so the
    trailer can be wrong while the ICV is right."""
    spi_seq = struct.pack("!II", sa.spi, seq)
    if sa.kind == "gcm":
        # RFC 4106 §4: nonce = salt (last 4 bytes of the key material) || 8-byte IV;
        # §5: AAD = SPI || 32-bit sequence number (no ESN). The tag follows the ciphertext.
        key, salt = sa.enc_key[:16], sa.enc_key[16:]
        iv = rng.randbytes(8)
        ct_tag = AESGCM(key).encrypt(salt + iv, plaintext, spi_seq)
        esp = spi_seq + iv + ct_tag
    else:
        # RFC 3602: random 16-byte IV, CBC over the padded plaintext; RFC 4868: ICV = first 16
        # bytes of HMAC-SHA-256 over SPI || seq || IV || ciphertext (RFC 4303 §2.8).
        assert len(plaintext) % 16 == 0
        iv = rng.randbytes(16)
        enc = Cipher(algorithms.AES(sa.enc_key), modes.CBC(iv)).encryptor()
        ct = enc.update(plaintext) + enc.finalize()
        body = spi_seq + iv + ct
        esp = body + hmac.new(sa.auth_key, body, hashlib.sha256).digest()[:16]
    hdr = IP(src=REMOTE_GW, dst=LOCAL_GW, proto=50, ttl=64, id=rng.randrange(65536))
    return raw(hdr / Raw(esp))


def bad_padding_plaintext(sa, inner):
    """inner || padding || pad length || next header (4), padding 1,2,3... except one byte."""
    align = 4 if sa.kind == "gcm" else 16
    padlen = (-(len(inner) + 2)) % align
    if padlen < 3:
        padlen += align
    pad = bytearray(range(1, padlen + 1))
    pad[padlen // 2] = 0xEE  # RFC 4303 §2.4: must be 1, 2, 3...; this one is not
    return inner + bytes(pad) + bytes([padlen, 4]), bytes(pad)


def impossible_padlen_plaintext(sa):
    """A pad length larger than everything before it: no inner packet can fit."""
    size = 4 if sa.kind == "gcm" else 16
    body = bytes(range(1, size - 1))
    return body + bytes([size + 10, 4])


# ---------------------------------------------------------------------------------------------

def build(sa, rng):
    cap = Capture(sa, rng)
    pk = {}
    for s in range(1, 6):
        pk[s] = cap.esp(s)
        cap.add("valid [%d]" % s, pk[s][0], seq=s, inner=pk[s][1])
    cap.add("duplicate of [3]", pk[3][0], seq=3)
    pk[100] = cap.esp(100)
    cap.add("valid [100]", pk[100][0], seq=100, inner=pk[100][1])
    b, i = cap.esp(100 - WINDOW)
    cap.add("valid [36] left of window", b, seq=100 - WINDOW, inner=i)
    pk[37] = cap.esp(100 - WINDOW + 1)
    cap.add("valid [37] left edge of window", pk[37][0], seq=37, inner=pk[37][1])
    cap.add("duplicate of [100]", pk[100][0], seq=100)
    cap.add("duplicate of [37]", pk[37][0], seq=37)
    wrong_spi = sa.spi ^ 0x5A5A0000
    b, _ = cap.esp(101, spi=wrong_spi)
    cap.add("unknown SPI 0x%x" % wrong_spi, b, pre="no_sa", seq=101)

    b150, _ = cap.esp(150)
    for new in (4, 37, 60, 151):
        t = b150[:ESP_OFF + 4] + struct.pack("!I", new) + b150[ESP_OFF + 8:]
        cap.add("[150] seq rewritten to %d" % new, t, seq=new, post="icv_mismatch")

    base, base_inner = cap.esp(240)
    esp_len = len(base) - ESP_OFF
    for pos in range(esp_len):
        t = xor_at(base, ESP_OFF + pos)
        label = "[240] byte %d of %d flipped" % (pos, esp_len)
        if pos < 4:
            cap.add(label + " (SPI)", t, pre="no_sa", seq=240)
        elif pos < 8:
            new = struct.unpack("!I", t[ESP_OFF + 4:ESP_OFF + 8])[0]
            cap.add(label + " (seq -> %d)" % new, t, seq=new, post="icv_mismatch")
        else:
            cap.add(label, t, seq=240, post="icv_mismatch")
    cap.add("valid [240] after its tampered copies", base, seq=240, inner=base_inner)

    base, base_inner = cap.esp(241)
    for L in range(sa.min_len):
        t = ipv4_fix(base[:ESP_OFF + L])
        if L < 8:
            cap.add("[241] ESP cut to %d bytes" % L, t, pre=SHORT_ESP_HEADER)
        else:
            cap.add("[241] ESP cut to %d bytes (min %d)" % (L, sa.min_len), t, pre="bad_length", seq=241)
    cap.add("valid [241] after its truncated copies", base, seq=241, inner=base_inner)

    base, base_inner = cap.esp(242)
    longer = ipv4_fix(base, total_length=len(base) + 20)
    cap.add("[242] IP total length 20 bytes beyond the frame", longer, pre="malformed")
    cap.add("valid [242]", base, seq=242, inner=base_inner)

    plain = raw(IP(src=REMOTE_GW, dst=LOCAL_GW) / UDP(sport=5000, dport=5001) / Raw(b"not esp"))
    cap.add("plain UDP", plain, pre="not_ipsec")

    pt, _ = bad_padding_plaintext(sa, cap.inner())
    cap.add("[300] padding bytes not 1,2,3...", craft_esp(sa, 300, pt, rng), seq=300, post="bad_padding")
    pt = impossible_padlen_plaintext(sa)
    cap.add("[301] pad length beyond the plaintext", craft_esp(sa, 301, pt, rng), seq=301, post="bad_padding")

    b, _ = cap.esp(302, inner=cap.inner(dst_net=OUTSIDE))
    cap.add("[302] inner dst outside local_ts", b, seq=302, post="policy_mismatch")
    b, _ = cap.esp(303, inner=cap.inner(src_net=OUTSIDE))
    cap.add("[303] inner src outside remote_ts", b, seq=303, post="policy_mismatch")

    b, i = cap.esp(304)
    cap.add("valid [304]", b, seq=304, inner=i)
    return cap


# ---------------------------------------------------------------------------------------------
# Independent receiver for --selftest (cryptography + the rules in the docstring).

def reference_receive(sa, frames):
    win = Window(WINDOW)
    verdicts = []
    for f in frames:
        verdicts.append(_ref_one(sa, win, f[14:]))
    return verdicts


def _ref_one(sa, win, ip):
    if len(ip) < 20 or ip[0] >> 4 != 4 or (ip[0] & 15) < 5:
        return ("malformed", None)
    ihl = (ip[0] & 15) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if total > len(ip) or total < ihl:
        return ("malformed", None)
    if ip[9] != 50:
        return ("not_ipsec", None)
    esp = ip[ihl:total]
    if len(esp) < 8:
        return (SHORT_ESP_HEADER, None)
    spi, seq = struct.unpack("!II", esp[:8])
    if spi != sa.spi:
        return ("no_sa", None)
    ct_len = len(esp) - 8 - sa.iv_len - sa.icv_len
    if ct_len < sa.min_ct or (sa.kind == "cbc" and ct_len % 16):
        return ("bad_length", None)
    r = win.check(seq) if seq else "replay_too_old"
    if r:
        return (r, None)
    iv, ct, icv = esp[8:8 + sa.iv_len], esp[8 + sa.iv_len:len(esp) - sa.icv_len], esp[len(esp) - sa.icv_len:]
    if sa.kind == "gcm":
        try:
            pt = AESGCM(sa.enc_key[:16]).decrypt(sa.enc_key[16:] + iv, ct + icv, esp[:8])
        except Exception:
            return ("icv_mismatch", None)
    else:
        want = hmac.new(sa.auth_key, esp[:len(esp) - 16], hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(want, icv):
            return ("icv_mismatch", None)
        dec = Cipher(algorithms.AES(sa.enc_key), modes.CBC(iv)).decryptor()
        pt = dec.update(ct) + dec.finalize()
    padlen, nh = pt[-2], pt[-1]
    if padlen > len(pt) - 2 or pt[len(pt) - 2 - padlen:len(pt) - 2] != bytes(range(1, padlen + 1)):
        return ("bad_padding", None)
    if nh != 4:
        return ("bad_next_header", None)
    inner = pt[:len(pt) - 2 - padlen]
    src, dst = ipaddress.ip_address(inner[12:16]), ipaddress.ip_address(inner[16:20])
    if dst not in ipaddress.ip_network(LOCAL_TS) or src not in ipaddress.ip_network(REMOTE_TS):
        return ("policy_mismatch", None)
    win.accept(seq)
    return ("ok", inner)


def selftest_crafting(sa, rng):
    """The crafted bad-padding packet decrypts to exactly the intended plaintext, its padding is
    what we meant, and scapy's own ICV check accepts it (so only the padding is wrong)."""
    inner = raw(IP(src="192.168.10.5", dst="192.168.20.6") / UDP() / Raw(b"x" * 21))
    pt, pad = bad_padding_plaintext(sa, inner)
    pkt = craft_esp(sa, 300, pt, rng)
    esp = pkt[ESP_OFF:]
    iv = esp[8:8 + sa.iv_len]
    if sa.kind == "gcm":
        got = AESGCM(sa.enc_key[:16]).decrypt(sa.enc_key[16:] + iv, esp[8 + sa.iv_len:], esp[:8])
    else:
        ct = esp[8 + sa.iv_len:-16]
        d = Cipher(algorithms.AES(sa.enc_key), modes.CBC(iv)).decryptor()
        got = d.update(ct) + d.finalize()
    assert got == pt, "crafted plaintext does not round-trip"
    padlen = got[-2]
    assert got[-1] == 4 and got[len(got) - 2 - padlen:-2] == pad and pad != bytes(range(1, padlen + 1))
    dec = sa.scapy().decrypt(IP(pkt))  # raises on a bad ICV
    assert raw(dec) == inner, "scapy decrypts the crafted packet to something else"


# ---------------------------------------------------------------------------------------------

def run_one(tool_path, tmp, sa, rng, tally, selftest):
    cap = build(sa, rng)
    want_counts = collections.Counter(r for r, _ in cap.expected if r != "ok")
    want_out = [i for r, i in cap.expected if r == "ok"]
    name = "%s (%d packets: %d valid, %s)" % (sa.name, len(cap.frames), len(want_out),
                                            ", ".join("%s=%d" % kv for kv in sorted(want_counts.items())))
    if selftest:
        try:
            selftest_crafting(sa, rng)
        except AssertionError as e:
            tally.fail(sa.name + " crafted bad padding", e or "assertion failed")
        else:
            tally.ok(sa.name + " crafted bad padding decrypts as intended, ICV valid")
        got = reference_receive(sa, cap.frames)
        bad = [(lab, g[0], w[0]) for lab, g, w in zip(cap.labels, got, cap.expected) if g != w]
        if bad:
            tally.fail(name, "reference receiver disagrees on %d packets: %s" % (len(bad), bad[:5]))
        else:
            tally.ok(name, "(reference receiver agrees packet by packet)")
        return
    d = os.path.join(tmp, sa.kind)
    os.makedirs(d, exist_ok=True)
    sa_path, in_path, out_path = (os.path.join(d, f) for f in ("in.yaml", "attack.pcap", "out.pcap"))
    with open(sa_path, "w") as f:
        f.write(sa.yaml())
    write_pcap(in_path, LINKTYPE_ETHERNET, cap.frames)
    try:
        stats = run_fgpcap(tool_path, "decrypt", sa_path, in_path, out_path)
        problems = []
        got_counts = nonzero_drops(stats)
        if got_counts != dict(want_counts):
            keys = sorted(set(got_counts) | set(want_counts))
            problems.append("drop counts differ: " + ", ".join(
                "%s got %d want %d" % (k, got_counts.get(k, 0), want_counts.get(k, 0))
                for k in keys if got_counts.get(k, 0) != want_counts.get(k, 0)))
        if stats["packets_in"] != len(cap.frames):
            problems.append("packets_in %d, want %d" % (stats["packets_in"], len(cap.frames)))
        if stats["packets_out"] != len(want_out):
            problems.append("packets_out %d, want %d" % (stats["packets_out"], len(want_out)))
        linktype, out = read_pcap(out_path)
        if linktype != LINKTYPE_ETHERNET:
            problems.append("output link type %d" % linktype)
        want_frames = [ethernet(cap.macs[0], cap.macs[1], ETH_P_IP, i) for i in want_out]
        if out != want_frames:
            problems.append("written packets differ: %d written, %d wanted; first difference at #%s" % (
                len(out), len(want_frames),
                next((k for k, (a, b) in enumerate(zip(out, want_frames)) if a != b), min(len(out), len(want_frames)))))
        if problems:
            tally.fail(name, "; ".join(problems) + " (KEEP_CAPTURES=DIR keeps the capture)")
        else:
            tally.ok(name)
    except (ToolError, ValueError) as e:
        tally.fail(name, e)


def main():
    args = sys.argv[1:]
    if args == ["--selftest"]:
        selftest, tool = True, None
        label = "selftest: independent reference receiver"
    elif len(args) == 1 and not args[0].startswith("-"):
        check_tool(args[0])
        selftest, tool = False, os.path.abspath(args[0])
        label = "fgpcap %s" % args[0]
    else:
        sys.stderr.write(__doc__)
        return 2
    seed = seed_from_env()
    print("scapy_attacks: %s, SEED=%d (set SEED to reproduce)" % (label, seed), flush=True)
    tally = Tally()
    keep = os.environ.get("KEEP_CAPTURES")
    tmp = keep or tempfile.mkdtemp(prefix="scapy-attacks.")
    for kind in ("gcm", "cbc"):
        rng = random.Random("%d/%s" % (seed, kind))
        run_one(tool, tmp, SaSpec(kind, rng), rng, tally, selftest)
    if not keep:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
