"""The SA-state sync check of ha_vs_swan.sh, on a capture of ESP in UDP at charon's port.

    ha_wire.py CAPTURE A1_MAC A2_MAC [VIRTUAL_MAC]

Both gateways send from the shared address 203.0.113.1, each from its own port MAC, so the
Ethernet header tells them apart. A1 (the old master) sent on some outbound SPI; charon
answered on A1's inbound SPI. The wire must then show A2 sending on that same outbound SPI,
every number past A1's highest plus the 2^28 a second that a takeover skips, and charon
sending to A2's MAC on the same inbound SPI: the synced pair carried traffic both ways. And a
new outbound SPI from A2: its own CHILD_SA came after.

With VIRTUAL_MAC (the routers use VRRP's virtual MAC) charon sends to that MAC whoever holds
the address, so its frames before A2's first are taken as to A1 and those after as to A2. The
capture at charon's port cannot show where the bridge delivered those: that they reached A2 is
the data plane's word (ha_vs_swan.sh checks A2's counters of the synced pair); here they show
only that charon went on sending on the synced inbound SPI after the takeover.
"""
import ipaddress
import os
import struct
import sys

# The shared address and charon's (ha_vs_swan.sh exports them; OUTER=6 makes them IPv6).
VIP = os.environ.get("HA_VIP", "203.0.113.1")
PEER = os.environ.get("HA_PEER", "203.0.113.2")


def esp_packets(path):
    """(destination MAC, source MAC, source IP, SPI, sequence number) of each ESP-in-UDP
    packet of a pcap file, in order."""
    data = open(path, "rb").read()
    end = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    off, out = 24, []
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        ip = frame[14:]
        if len(ip) >= 36 and ip[0] >> 4 == 4 and ip[9] == 17:
            udp, src = ip[(ip[0] & 15) * 4:], str(ipaddress.IPv4Address(ip[12:16]))
        elif len(ip) >= 56 and ip[0] >> 4 == 6 and ip[6] == 17:
            udp, src = ip[40:], str(ipaddress.IPv6Address(ip[8:24]))
        else:
            continue
        if len(udp) < 16:
            continue
        spi, seq = struct.unpack(">II", udp[8:16])
        if spi == 0:  # IKE after the non-ESP marker
            continue
        out.append((frame[0:6].hex(":"), frame[6:12].hex(":"), src, spi, seq))
    return out


def main():
    esp = esp_packets(sys.argv[1])
    a1, a2 = sys.argv[2].lower(), sys.argv[3].lower()
    vmac = sys.argv[4].lower() if len(sys.argv) > 4 else None
    first_a2 = next((i for i, e in enumerate(esp) if e[1] == a2), len(esp))
    if vmac:
        # Frames to the shared MAC: to A1 while A2 had sent nothing, to A2 after.
        esp = [(a1 if i < first_a2 else a2, *e[1:]) if e[0] == vmac else e
               for i, e in enumerate(esp)]
    from_a1 = [e for e in esp if e[1] == a1 and e[2] == VIP]
    to_a1 = [e for e in esp if e[0] == a1 and e[2] == PEER]
    if not from_a1 or not to_a1:
        sys.exit("no ESP between A1 and charon captured")
    spi_out, spi_in = from_a1[-1][3], to_a1[-1][3]
    a1_top = max(e[4] for e in from_a1 if e[3] == spi_out)
    synced_out = [e[4] for e in esp if e[1] == a2 and e[3] == spi_out]
    synced_in = [e for e in esp if e[0] == a2 and e[3] == spi_in]
    new_out = sorted({e[3] for e in esp if e[1] == a2 and e[2] == VIP and e[3] != spi_out})
    to = "to the shared MAC after A2's first frame" if vmac else "to A2's MAC"
    print(f"sync on the wire: A1 sent SPI {spi_out:08x} up to #{a1_top}; A2 sent "
          f"{len(synced_out)} on it, #{min(synced_out, default=0)}-#{max(synced_out, default=0)}; "
          f"charon sent {len(synced_in)} {to} on SPI {spi_in:08x}; A2's own SPIs "
          f"{[f'{s:08x}' for s in new_out]}")
    if not synced_out:
        sys.exit("A2 sent nothing on the synced SA")
    if min(synced_out) <= a1_top + (1 << 28):
        sys.exit("A2 numbered the synced SA within reach of A1's numbers")
    if not synced_in:
        sys.exit("charon sent A2 nothing on the synced inbound SA")
    if not new_out:
        sys.exit("no CHILD_SA of A2's own after the takeover")


if __name__ == "__main__":
    main()
