#!/usr/bin/env python3
"""AH over packets with IP options, against scapy (RFC 4302 §3.3.3.1 and Appendix A).

A router may change some IP options en route (IPv4 Record Route; IPv6 options whose type has
the 0x20 "may change" bit), so AH covers them as zeros. This suite sends transport-mode AH
packets carrying such options both ways between scapy and fgpcap, with the mutable parts
changed "in transit", and checks that:
  - fgpcap accepts scapy's packets after the mutable parts changed, and rejects them
    (icv_mismatch) after an immutable option changed;
  - scapy verifies the packets fgpcap produces.
Also: IPv4 AH padded to 8 bytes in its ICV field (as Linux sends it), signed by scapy, is
accepted; and transport-mode ESP over IPv6 with extension headers goes where scapy (after
Linux) puts it, both ways.

Usage: scapy_ah_options.py FGPCAP
"""
import json
import os
import subprocess
import sys
import tempfile

from scapy.all import IP, UDP, Ether, Raw, IPOption_RR, IPOption_Router_Alert, rdpcap, wrpcap
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                                HBHOptUnknown)
from scapy.layers.ipsec import AH, ESP, SecurityAssociation, split_for_transport

SPI = 0x2002
KEY = bytes(range(32))


def packets():
    v4 = (IP(src="192.168.10.5", dst="192.168.20.7",
             options=[IPOption_RR(routers=["1.2.3.4"]), IPOption_Router_Alert()])
          / UDP(sport=1000, dport=2000) / Raw(b"hello, options"))
    v6 = (IPv6(src="2001:db8:10::5", dst="2001:db8:20::7")
          / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x3e, optdata=b"\xaa\xaa"),
                                       HBHOptUnknown(otype=0x1e, optdata=b"\xbb\xbb")])
          / UDP(sport=1000, dport=2000) / Raw(b"hello, v6 options"))
    return [v4, v6]


def change(pkt, mutable):
    """What a router could (mutable) or could not (immutable) do to the packet's options."""
    if IPv6ExtHdrDestOpt in pkt:
        i = 0 if mutable else 1
        pkt[IPv6ExtHdrDestOpt].options[i].optdata = b"\x55\x55"
    elif mutable:
        pkt[IP].options[0].routers = ["9.9.9.9"]
        del pkt[IP].chksum
    else:
        pkt[IP].options[1].alert = 1
        del pkt[IP].chksum
    return pkt.__class__(bytes(pkt))


def fgpcap(tool, cmd, sa, src, dst):
    r = subprocess.run([tool, cmd, "--sa", sa, "--in", src, "--out", dst, "--json"],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main():
    if len(sys.argv) != 2 or not os.path.exists(sys.argv[1]):
        sys.exit("usage: scapy_ah_options.py FGPCAP (an fgpcap binary that exists)")
    tool = sys.argv[1]
    passed = failed = 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        print(("PASS " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
        passed += ok
        failed += not ok

    with tempfile.TemporaryDirectory() as d:
        sa_file = os.path.join(d, "sa.yaml")
        with open(sa_file, "w") as f:
            for direction in ("out", "in"):
                f.write(f"- {{spi: {SPI}, direction: {direction}, protocol: ah, mode: transport, "
                        f"integrity: hmac-sha256, auth_key: \"0x{KEY.hex()}\"}}\n")
        with open(sa_file) as f:
            body = f.read()
        with open(sa_file, "w") as f:
            f.write("sas:\n" + "".join("  " + line + "\n" for line in body.splitlines()))
        sa = SecurityAssociation(AH, spi=SPI, auth_algo="SHA2-256-128", auth_key=KEY)
        plain = packets()

        for mutable in (True, False):
            kind = "mutable" if mutable else "immutable"
            sent = [Ether() / change(sa.encrypt(p), mutable) for p in plain]
            src, dst = os.path.join(d, "in.pcap"), os.path.join(d, "out.pcap")
            wrpcap(src, sent)
            s = fgpcap(tool, "decrypt", sa_file, src, dst)
            if mutable:
                got = [bytes(p.payload) for p in rdpcap(dst)] if s["packets_out"] else []
                check(f"scapy AH, {kind} options changed en route: fgpcap accepts and restores",
                      s["packets_out"] == 2 and s["drops"] == {}, s)
                # The restored packets equal the originals apart from what the router changed.
                want = [bytes(change(p.copy(), True)) for p in plain]
                check("restored packets are the sent ones, byte for byte", got == want,
                      [g.hex() for g in got])
            else:
                check(f"scapy AH, {kind} option changed en route: fgpcap refuses",
                      s["packets_out"] == 0 and s["drops"].get("icv_mismatch") == 2, s)

        # AH over IPv4 padded to 8 bytes, as Linux sends it unless the SA says align4 (RFC
        # 4302 §2.6 allows explicit padding in the ICV field; §3.3.3.2.1): 12 fixed bytes,
        # the 16-byte ICV, 4 bytes of padding the ICV covers. Signed by scapy.
        clear = IP(src="192.168.10.5", dst="192.168.20.7") / UDP(sport=1000, dport=2000) / Raw(
            b"hello, padded AH")
        clear = IP(bytes(clear))

        def padded_ah(seq):
            ah = AH(nh=17, spi=SPI, seq=seq, icv=b"\0" * 16, padding=b"\0" * 4)
            ah.payloadlen = len(ah) // 4 - 2
            pkt = IP(src=clear.src, dst=clear.dst, proto=51) / ah / Raw(bytes(clear.payload))
            return bytes(sa.auth_algo.sign(pkt, sa.auth_key))

        wire = padded_ah(7)
        check("scapy built a 32-byte AH header (payload length 6)", wire[20 + 1] == 6, wire.hex())
        tampered = bytearray(padded_ah(8))
        tampered[20 + 12 + 16] ^= 1  # a padding byte: covered by the ICV
        src, dst = os.path.join(d, "padded.pcap"), os.path.join(d, "padded-out.pcap")
        wrpcap(src, [Ether() / IP(wire), Ether() / IP(bytes(tampered))])
        s = fgpcap(tool, "decrypt", sa_file, src, dst)
        want = bytes(clear)
        got = [bytes(p.payload) for p in rdpcap(dst)] if s["packets_out"] else []
        check("fgpcap takes IPv4 AH padded to 8 bytes and restores the packet",
              s["packets_out"] == 1 and got == [want], (s, [g.hex() for g in got], want.hex()))
        check("a changed padding byte fails the ICV", s["drops"] == {"icv_mismatch": 1}, s)

        src, dst = os.path.join(d, "plain.pcap"), os.path.join(d, "ah.pcap")
        wrpcap(src, [Ether() / p for p in plain])
        s = fgpcap(tool, "encrypt", sa_file, src, dst)
        check("fgpcap encrypts both", s["packets_out"] == 2, s)
        for p in rdpcap(dst):
            ip = change(p.payload.copy(), True)
            try:
                sa.decrypt(ip)
                check(f"scapy verifies fgpcap's AH over {ip.__class__.__name__} with options", True)
            except Exception as e:  # scapy raises IPSecIntegrityError on a bad ICV
                check(f"scapy verifies fgpcap's AH over {ip.__class__.__name__} with options", False, e)

        # Transport-mode ESP over IPv6 with extension headers: ESP goes where scapy (after
        # Linux) puts it, past hop-by-hop, the destination options before the routing
        # header, and the routing header; the destination options after it are encrypted.
        esp_file = os.path.join(d, "esp.yaml")
        ekey = bytes(range(100, 120))
        with open(esp_file, "w") as f:
            f.write("sas:\n")
            for direction in ("out", "in"):
                f.write(f"  - {{spi: 0x3003, direction: {direction}, protocol: esp, mode: transport, "
                        f"cipher: aes-gcm-128, integrity: none, enc_key: \"0x{ekey.hex()}\"}}\n")
        esa = SecurityAssociation(ESP, spi=0x3003, crypt_algo="AES-GCM", crypt_key=ekey)
        ext = IPv6(bytes(
            IPv6(src="2001:db8:10::5", dst="2001:db8:20::7")
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x3e, optdata=b"\x01\x02")])
            / IPv6ExtHdrRouting(addresses=["2001:db8:30::1"], segleft=0)
            / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x3e, optdata=b"\x03\x04")])
            / UDP(sport=1000, dport=2000) / Raw(b"hello, extension headers")))
        front = bytes(split_for_transport(ext, 50)[0])
        src, dst = os.path.join(d, "ext.pcap"), os.path.join(d, "ext-esp.pcap")
        wrpcap(src, [Ether() / ext])
        s = fgpcap(tool, "encrypt", esp_file, src, dst)
        out = [bytes(p.payload) for p in rdpcap(dst)]
        ok = s["packets_out"] == 1 and len(out) == 1
        # Equal apart from the payload length and the next-header byte patched to 50.
        same = ok and len(out[0]) > len(front) and out[0][:4] + out[0][6:len(front)] == \
            front[:4] + front[6:]
        check("fgpcap puts ESP after the extension headers where scapy (Linux) does", same,
              (s, out[0][:len(front) + 8].hex() if ok else None, front.hex()))
        if ok:
            try:
                back = esa.decrypt(IPv6(out[0]))
                check("scapy decrypts it to the original", bytes(back) == bytes(ext),
                      bytes(back).hex())
            except Exception as e:
                check("scapy decrypts it to the original", False, e)
        wrpcap(src, [Ether() / esa.encrypt(ext)])
        s = fgpcap(tool, "decrypt", esp_file, src, dst)
        got = [bytes(p.payload) for p in rdpcap(dst)] if s["packets_out"] else []
        check("fgpcap decrypts scapy's to the original", got == [bytes(ext)], s)

    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
