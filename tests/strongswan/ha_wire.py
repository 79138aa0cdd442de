"""The SA-state sync check of ha_vs_swan.sh, on a capture of ESP in UDP at charon's port.

    ha_wire.py CAPTURE KILL_TIME_NS

Before KILL_TIME the master (A1) sent on some outbound SPI up to some sequence number and
charon answered on A1's inbound SPI. After it, the wire must show ESP from 203.0.113.1 (now
A2) on that same outbound SPI, numbered past A1's last number plus the 2^28 a second that a
takeover skips, and ESP from charon on the same inbound SPI: the synced pair carried traffic
both ways. And a new outbound SPI: A2's own CHILD_SA replaced it.
"""
import struct
import sys


def esp_packets(path):
    """(time, source, SPI, sequence number) of each ESP-in-UDP packet of a pcap file."""
    data = open(path, "rb").read()
    end = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    off, out = 24, []
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        ip = data[off + 16 + 14:off + 16 + incl]
        off += 16 + incl
        if len(ip) < 36 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 15) * 4:]
        if len(udp) < 16:
            continue
        spi, seq = struct.unpack(">II", udp[8:16])
        if spi == 0:  # IKE after the non-ESP marker
            continue
        out.append((sec + usec / 1e6, ".".join(map(str, ip[12:16])), spi, seq))
    return out


def main():
    esp = esp_packets(sys.argv[1])
    kill = int(sys.argv[2]) / 1e9
    ours = [e for e in esp if e[0] < kill and e[1] == "203.0.113.1"]
    theirs = [e for e in esp if e[0] < kill and e[1] == "203.0.113.2"]
    if not ours or not theirs:
        sys.exit("no ESP captured before the kill")
    spi_out, last_seq = ours[-1][2], ours[-1][3]
    spi_in = theirs[-1][2]
    after = [e for e in esp if e[0] >= kill]
    synced_out = [e for e in after if e[1] == "203.0.113.1" and e[2] == spi_out]
    # Charon's ESP on the synced inbound SPI once A2 sends (the address has moved to it).
    since = synced_out[0][0] if synced_out else float("inf")
    synced_in = [e for e in after if e[0] >= since and e[1] == "203.0.113.2" and e[2] == spi_in]
    new_out = sorted({e[2] for e in after if e[1] == "203.0.113.1" and e[2] != spi_out})
    first = synced_out[0][3] if synced_out else None
    print(f"sync on the wire: A1 sent SPI {spi_out:08x} up to #{last_seq}; after the kill A2 "
          f"sent {len(synced_out)} on it from #{first}, then charon {len(synced_in)} to SPI "
          f"{spi_in:08x}; A2's new SPIs {[f'{s:08x}' for s in new_out]}")
    if not synced_out or min(e[3] for e in synced_out) <= last_seq + (1 << 28):
        sys.exit("A2 did not send on the synced SA past A1's numbers")
    if not synced_in:
        sys.exit("charon sent nothing on the synced inbound SA after the kill")
    if not new_out:
        sys.exit("no new CHILD_SA after the takeover")


if __name__ == "__main__":
    main()
