"""Shared helpers for the scapy interop suites: pcap files, SA YAML, running fgpcap, counting.

The pcap reader/writer is written here (not scapy's) so that the link type and every byte of each
record are exactly what the test meant, independent of scapy's dissectors.
"""

import ipaddress
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD


# ---------------------------------------------------------------------------------------------
# pcap (classic libpcap format, https://www.tcpdump.org/manpages/pcap-savefile.5.html)

def write_pcap(path, linktype, frames):
    """Writes `frames` (bytes) as a microsecond pcap, little endian, one record per frame,
    1 ms apart (one second apart, a capture of 32 fragments outlasted fgpcap's 30 s
    reassembly timeout)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for i, frame in enumerate(frames):
            frame = bytes(frame)
            ts_sec, ts_usec = 1_700_000_000 + i // 1000, (i % 1000) * 1000
            f.write(struct.pack("<IIII", ts_sec, ts_usec, len(frame), len(frame)))
            f.write(frame)


def read_pcap(path):
    """Returns (linktype, [frame bytes]). Accepts both byte orders and the nanosecond magic."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError("%s: %d bytes, too short for a pcap header" % (path, len(data)))
    magic_le = struct.unpack("<I", data[:4])[0]
    if magic_le in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic_le in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise ValueError("%s: not a classic pcap file (magic %08x)" % (path, magic_le))
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    frames = []
    off = 24
    while off < len(data):
        if off + 16 > len(data):
            raise ValueError("%s: truncated record header at offset %d" % (path, off))
        _, _, incl, orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            raise ValueError("%s: truncated record at offset %d" % (path, off))
        if incl != orig:
            raise ValueError("%s: record at %d captured %d of %d bytes" % (path, off, incl, orig))
        frames.append(data[off:off + incl])
        off += incl
    return linktype, frames


def ethernet(dst_mac, src_mac, ethertype, payload):
    return dst_mac + src_mac + struct.pack("!H", ethertype) + bytes(payload)


def ip_version(pkt):
    return pkt[0] >> 4 if pkt else 0


def ethertype_for(ip_bytes):
    return ETH_P_IP if ip_version(ip_bytes) == 4 else ETH_P_IPV6


def ipv4_header_checksum_ok(ip_bytes):
    ihl = (ip_bytes[0] & 0x0F) * 4
    s = 0
    for i in range(0, ihl, 2):
        s += (ip_bytes[i] << 8) | ip_bytes[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def ipv4_fix(ip_bytes, total_length=None):
    """Rewrites total length (to the packet's size unless given) and header checksum of an
    IPv4 packet (bytes -> bytes)."""
    b = bytearray(ip_bytes)
    ihl = (b[0] & 0x0F) * 4
    b[2:4] = struct.pack("!H", len(b) if total_length is None else total_length)
    b[10:12] = b"\x00\x00"
    s = sum(struct.unpack("!%dH" % (ihl // 2), bytes(b[:ihl])))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    b[10:12] = struct.pack("!H", (~s) & 0xFFFF)
    return bytes(b)


# ---------------------------------------------------------------------------------------------
# SA YAML (the contract of `fgpcap --sa`, see tests/interop/README.md)

def hexkey(b):
    return '"0x%s"' % b.hex()


def sa_yaml(sas):
    """Renders a list of dicts as the SA file. Values are pre-rendered YAML scalars or lists."""
    lines = ["sas:"]
    for sa in sas:
        first = True
        for k, v in sa.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, list):
                v = "[" + ", ".join(str(x) for x in v) + "]"
            elif isinstance(v, dict):
                v = "{ " + ", ".join("%s: %s" % kv for kv in v.items()) + " }"
            lines.append(("  - " if first else "    ") + "%s: %s" % (k, v))
            first = False
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Running fgpcap

class ToolError(Exception):
    pass


def check_tool(path):
    """Exits with a clear message when the fgpcap binary is missing."""
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        sys.stderr.write(
            "error: fgpcap binary not found or not executable: %r\n"
            "       build it with `cargo build --release -p dataplane --bin fgpcap` and pass\n"
            "       its path (target/release/fgpcap), or use --selftest to check only the\n"
            "       scapy side of this suite.\n" % (path,))
        sys.exit(2)


def run_fgpcap(tool, verb, sa_path, in_path, out_path):
    """Runs `fgpcap VERB --sa .. --in .. --out .. --json`; returns the parsed JSON stats."""
    cmd = [tool, verb, "--sa", sa_path, "--in", in_path, "--out", out_path, "--json"]
    p = subprocess.run(cmd, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise ToolError("%s exited %d: %s" % (" ".join(cmd), p.returncode,
                                              p.stderr.decode(errors="replace").strip()))
    try:
        stats = json.loads(p.stdout.decode())
    except ValueError as e:
        raise ToolError("%s: stdout is not one JSON object (%s): %r" % (verb, e, p.stdout[:300]))
    for key in ("packets_in", "packets_out", "drops"):
        if key not in stats:
            raise ToolError("%s: JSON lacks %r: %r" % (verb, key, stats))
    return stats


class FgpcapDecrypt:
    """The real tool for the decrypt-only suites: `decrypt(case, sa, in, out, keys)` runs
    `fgpcap decrypt` (the case and keys are for the scapy stand-in's use)."""

    def __init__(self, path):
        self.path = path

    def decrypt(self, c, sa_path, in_path, out_path, keys):
        return run_fgpcap(self.path, "decrypt", sa_path, in_path, out_path)


def tool_from_args(args, usage, real, selftest):
    """`PATH/TO/fgpcap` or `--selftest` -> (tool, label), where `real(path)` and `selftest()`
    make the tool; None (after printing `usage`) for anything else."""
    if args == ["--selftest"]:
        return selftest(), "selftest: fgpcap emulated with scapy"
    if len(args) == 1 and not args[0].startswith("-"):
        check_tool(args[0])
        return real(os.path.abspath(args[0])), "fgpcap %s" % args[0]
    sys.stderr.write(usage)
    return None


def run_cases(suite, label, cases, run_case, skip=lambda case: None):
    """Runs `run_case(tmp, rng, case)` for each case (each has a `.name`) that `skip(case)` gives
    no reason to skip, one generator per case derived from SEED and its name so that a failure
    reproduces alone; prints one line per case and the closing count, and returns the exit
    status."""
    seed = seed_from_env()
    print("%s: %s, SEED=%d (set SEED to reproduce)" % (suite, label, seed), flush=True)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix=suite + ".") as tmp:
        for c in cases:
            why = skip(c)
            if why:
                tally.skip(c.name, why)
                continue
            rng = random.Random("%d/%s" % (seed, c.name))
            try:
                run_case(tmp, rng, c)
            except (AssertionError, ToolError, ValueError) as e:
                tally.fail(c.name, e)
            except Exception as e:  # a scapy error on odd bytes is a failure, not a crash
                tally.fail(c.name, "%s: %s" % (type(e).__name__, e))
            else:
                tally.ok(c.name)
    return tally.finish()


def nonzero_drops(stats):
    return {k: v for k, v in stats["drops"].items() if v}


# ---------------------------------------------------------------------------------------------
# Results

class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def ok(self, name, detail=""):
        self.passed += 1
        print("PASS %s%s" % (name, (" " + detail) if detail else ""), flush=True)

    def fail(self, name, why):
        self.failed += 1
        print("FAIL %s: %s" % (name, why), flush=True)

    def skip(self, name, why):
        self.skipped += 1
        print("SKIP %s: %s" % (name, why), flush=True)

    def finish(self):
        if self.skipped:
            print("(%d skipped)" % self.skipped)
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        return 1 if self.failed or not self.passed else 0


def random_addr(rng, net):
    net = ipaddress.ip_network(net)
    # Avoid the network and broadcast addresses so nothing special-cases them.
    return str(net.network_address + rng.randrange(1, net.num_addresses - 1))


def seed_from_env():
    s = os.environ.get("SEED")
    if s:
        return int(s, 0)
    return int.from_bytes(os.urandom(4), "big")


def udp4_checksum_ok(ip_bytes):
    """Verifies the UDP checksum of an option-less IPv4/UDP packet (RFC 768 pseudo header)."""
    udp = ip_bytes[20:]
    data = ip_bytes[12:20] + struct.pack("!BBH", 0, 17, len(udp)) + udp
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF
