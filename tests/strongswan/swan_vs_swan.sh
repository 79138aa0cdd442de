#!/usr/bin/env bash
# strongSwan against strongSwan in network namespaces: proves tests/strongswan/lib.sh works
# before ferrogate-ike takes the place of one of the two charons.
#
#   hA (192.168.10.5) --veth-- [gA: charon "a"] --veth "wire"-- [gB: charon "b"] --veth-- hB (192.168.20.5)
#       inside 192.168.10.1 / outside 203.0.113.1      outside 203.0.113.2 / inside 192.168.20.1
#
# Reference scenario: site-to-site 192.168.10.0/24 <-> 192.168.20.0/24, PSK, IKE
# aes256-sha256-modp1024 and ESP aes256-sha256 (SUITE=gcm: IKE aes256gcm16-prfsha256-curve25519 and
# ESP aes256gcm16), IKE rekey 1h, CHILD rekey 8h, DPD 30 s with dpd_action = restart; gA starts the
# tunnel (start_action = start), gB only responds. ESP runs in user space (kernel-libipsec).
#
# Checks: both CHILD_SAs INSTALLED, ping both ways, iperf3 A -> B (Mbit/s printed), the wire
# carries IKE on UDP 500/4500 and ESP only inside UDP 4500 (RFC 3948; no IP protocol 50), the keys
# swan_child_keys reads from charon.log carry the SPIs that swanctl --list-sas shows, A's outbound
# keys are B's inbound keys, and every ESP packet captured on the wire authenticates (CBC: its
# HMAC-SHA-256-128 ICV, with the standard library) or decrypts (GCM: needs the cryptography
# module in SWAN_PYTHON; without it the tags go unchecked, said loudly, and with CI set that
# fails the check) under those keys.
#
#   swan_vs_swan.sh                 run the checks as root; installs missing Debian packages
#   SUITE=gcm swan_vs_swan.sh       the AES-256-GCM variant
#   SWAN_PYTHON=.venv/bin/python swan_vs_swan.sh   the python that reads the capture (default
#                                   /usr/bin/python3; the tests' venv has cryptography)
#   CI=true swan_vs_swan.sh         an ESP packet left unchecked is a failure
#   SWAN_KEEP=1 swan_vs_swan.sh     keep the temp dir (charon logs, swanctl.conf, wire.pcap)
#
# Prints PASS/FAIL per check, exits non-zero when one failed. Cleans up its namespaces, processes
# (by PID) and temp dir on any exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
trap swan_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SUITE=${SUITE:-cbc}
[ "$(id -u)" -eq 0 ] || { echo "swan_vs_swan.sh: run as root" >&2; exit 2; }
swan_require_packages

ID=$$
HA=sw$ID-hA GA=sw$ID-gA GB=sw$ID-gB HB=sw$ID-hB
swan_mkdir WORK work

passed=0 failed=0
check() { # name, then a command
    local name=$1; shift
    if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

swan_netns_add "$HA" "$GA" "$GB" "$HB"
ip link add hA0 netns "$HA" type veth peer name gAi netns "$GA"
ip link add gAo netns "$GA" type veth peer name gBo netns "$GB"
ip link add gBi netns "$GB" type veth peer name hB0 netns "$HB"
for n in "$HA" "$GA" "$GB" "$HB"; do
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$n" link set lo up
done
for n in "$GA" "$GB"; do ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1; done
ip -n "$HA" link set hA0 up; ip -n "$HA" addr add 192.168.10.5/24 dev hA0; ip -n "$HA" route add default via 192.168.10.1
ip -n "$HB" link set hB0 up; ip -n "$HB" addr add 192.168.20.5/24 dev hB0; ip -n "$HB" route add default via 192.168.20.1
ip -n "$GA" link set gAi up; ip -n "$GA" addr add 192.168.10.1/24 dev gAi
ip -n "$GA" link set gAo up; ip -n "$GA" addr add 203.0.113.1/24 dev gAo
ip -n "$GB" link set gBo up; ip -n "$GB" addr add 203.0.113.2/24 dev gBo
ip -n "$GB" link set gBi up; ip -n "$GB" addr add 192.168.20.1/24 dev gBi

PSK="ferrogate-interop-psk-0123456789"
swan_gen_swanctl --suite "$SUITE" --local 203.0.113.1 --remote 203.0.113.2 \
    --local-ts 192.168.10.0/24 --remote-ts 192.168.20.0/24 --psk "$PSK" \
    --local-id gw-a.ferrogate.test --remote-id gw-b.ferrogate.test --start start > "$WORK/a.conf"
swan_gen_swanctl --suite "$SUITE" --local 203.0.113.2 --remote 203.0.113.1 \
    --local-ts 192.168.20.0/24 --remote-ts 192.168.10.0/24 --psk "$PSK" \
    --local-id gw-b.ferrogate.test --remote-id gw-a.ferrogate.test --start none > "$WORK/b.conf"

swan_mkdir DIR_A charon-a
swan_mkdir DIR_B charon-b
swan_start "$GA" a "$DIR_A"
swan_start "$GB" b "$DIR_B"

# The wire, seen from B's side of the veth pair (both directions).
ip netns exec "$GB" tcpdump -q -n -U -i gBo -w "$WORK/wire.pcap" 2>/dev/null &
TCPDUMP=$!
swan_track_pid "$TCPDUMP"
sleep 0.5

swan_load b "$WORK/b.conf" > "$WORK/load-b.txt"
swan_load a "$WORK/a.conf" > "$WORK/load-a.txt"   # start_action = start: A initiates now
check "CHILD_SA INSTALLED on gA (initiator)" swan_wait_established a 20
check "CHILD_SA INSTALLED on gB (responder)" swan_wait_established b 10
echo "== swanctl --list-sas on gA"
swan_list a | tee "$WORK/list-a.txt"
swan_list b > "$WORK/list-b.txt"

ping_all() { # namespace, destination: 5 echo requests, 5 replies
    ip netns exec "$1" ping -c 5 -i 0.2 -W 2 "$2" > "$WORK/ping.txt" || true
    tail -2 "$WORK/ping.txt"
    grep -q " 0% packet loss" "$WORK/ping.txt"
}
check "ping hA -> hB through the tunnel, no loss" ping_all "$HA" 192.168.20.5
check "ping hB -> hA through the tunnel, no loss" ping_all "$HB" 192.168.10.5

ip netns exec "$HB" iperf3 -s -1 > /dev/null 2>&1 &
swan_track_pid $!
swan_wait_listen "$HB" 5201 || true
# `timeout --foreground` for the clients: a plain timeout makes a process group of its own,
# which a SIGTERM to this run's group (tests/run.sh's timeout) misses: the client would wait out
# its timeout for a server already gone, and this script's EXIT trap with it.
iperf_ok() {
    ip netns exec "$HA" timeout --foreground 30 iperf3 -c 192.168.20.5 -t 3 -J --logfile "$WORK/iperf.json" &&
        "$SWAN_PYTHON" -c "import json; d=json.load(open('$WORK/iperf.json')); print('iperf3 hA -> hB through strongSwan ($SUITE): %.1f Mbit/s' % (d['end']['sum_received']['bits_per_second']/1e6))"
}
check "iperf3 TCP hA -> hB for 3 s" iperf_ok

sleep 0.5
swan_stop_pid "$TCPDUMP"

# The SPIs and keys, as the logs and swanctl see them.
swan_sa_spis a > "$WORK/spis-a.txt"
swan_sa_spis b > "$WORK/spis-b.txt"
swan_child_keys a > "$WORK/keys-a.txt"
swan_child_keys b > "$WORK/keys-b.txt"
echo "== swan_child_keys a"; cat "$WORK/keys-a.txt"
echo "== swan_child_keys b"; cat "$WORK/keys-b.txt"

keys_match() {
    "$SWAN_PYTHON" - "$WORK" <<'EOP'
import sys
w = sys.argv[1]
def spis(side):
    # "net{1} in=c1.. out=c2.."
    return [dict(kv.split("=") for kv in l.split()[1:]) for l in open("%s/spis-%s.txt" % (w, side))]
def keys(side):
    return [dict(kv.split("=", 1) for kv in l.split()) for l in open("%s/keys-%s.txt" % (w, side))]
ok = True
for side, other in (("a", "b"), ("b", "a")):
    k = {(r["dir"], r["spi"]): r for r in keys(side)}
    ko = {(r["dir"], r["spi"]): r for r in keys(other)}
    for s in spis(side):
        for d in ("in", "out"):
            r = k.get((d, s[d]))
            if r is None:
                print("%s: no keys for %s SPI %s" % (side, d, s[d])); ok = False; continue
            peer = ko.get(("out" if d == "in" else "in", s[d]))
            if peer is None or (peer["enc"], peer["integ"]) != (r["enc"], r["integ"]):
                print("%s: %s SPI %s keys differ from %s's" % (side, d, s[d], other)); ok = False
            if r["enc"] == "-":
                print("%s: %s SPI %s has no encryption key" % (side, d, s[d])); ok = False
sys.exit(0 if ok else 1)
EOP
}
check "swan_child_keys SPIs match swanctl --list-sas, and A's out keys are B's in keys" keys_match

# wire: IKE_SA_INIT on 500, then everything on 4500; ESP only as UDP-encapsulated (non-zero
# marker); every ESP packet's ICV (CBC) or tag (GCM) verifies with the logged keys.
wire_ok() {
    "$SWAN_PYTHON" - "$WORK" "$SUITE" "${CI:-}" <<'EOP'
import hmac, hashlib, struct, sys
w, suite, ci = sys.argv[1], sys.argv[2], sys.argv[3]
keys = {}
for side in "ab":
    for l in open("%s/keys-%s.txt" % (w, side)):
        r = dict(kv.split("=", 1) for kv in l.split())
        if r["dir"] == "in":
            keys[r["spi"]] = r
data = open(w + "/wire.pcap", "rb").read()
magic = struct.unpack("<I", data[:4])[0]
endian = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
linktype = struct.unpack(endian + "I", data[20:24])[0]
assert linktype == 1, "expected Ethernet captures"
off = 24
n = {"ike500": 0, "ike4500": 0, "esp_udp": 0, "esp_raw": 0, "keepalive": 0, "other": 0,
     "verified": 0, "bad": 0, "unchecked": 0}
try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:
    AESGCM = None
while off + 16 <= len(data):
    _, _, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
    pkt = data[off + 16:off + 16 + caplen]
    off += 16 + caplen
    if struct.unpack("!H", pkt[12:14])[0] != 0x0800:
        continue
    ip = pkt[14:]
    ihl = (ip[0] & 15) * 4
    proto = ip[9]
    if proto == 50:
        n["esp_raw"] += 1
        continue
    if proto != 17:
        n["other"] += 1
        continue
    sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
    pl = ip[ihl + 8:struct.unpack("!H", ip[2:4])[0]]
    if 500 in (sport, dport):
        n["ike500"] += 1
    elif 4500 in (sport, dport):
        if pl == b"\xff":
            n["keepalive"] += 1
        elif pl[:4] == b"\0\0\0\0":
            n["ike4500"] += 1
        else:
            n["esp_udp"] += 1
            spi = pl[:4].hex()
            k = keys.get(spi)
            if k is None:
                n["bad"] += 1
                continue
            if suite == "cbc":
                icv = hmac.new(bytes.fromhex(k["integ"]), pl[:-16], hashlib.sha256).digest()[:16]
                n["verified" if hmac.compare_digest(icv, pl[-16:]) else "bad"] += 1
            elif AESGCM is not None:
                key = bytes.fromhex(k["enc"])
                try:
                    AESGCM(key[:-4]).decrypt(key[-4:] + pl[8:16], pl[16:], pl[:8])
                    n["verified"] += 1
                except Exception:
                    n["bad"] += 1
            else:
                n["unchecked"] += 1
    else:
        n["other"] += 1
print("wire:", " ".join("%s=%d" % kv for kv in n.items()))
ok = (n["ike500"] >= 2 and n["ike4500"] >= 2 and n["esp_udp"] >= 20 and n["esp_raw"] == 0
      and n["bad"] == 0 and n["verified"] + n["unchecked"] == n["esp_udp"])
if n["unchecked"]:
    # Unchecked is not verified: say so where nobody can miss it, and in CI (which has the
    # venv with cryptography) count it as a failure.
    msg = ("%d of %d ESP packets NOT CHECKED: %s has no cryptography module, so the AES-GCM "
           "tags were not verified (set SWAN_PYTHON to a python that has it, e.g. the tests' venv)"
           % (n["unchecked"], n["esp_udp"], sys.executable))
    print("!" * 78 + "\nWARNING wire: " + msg + "\n" + "!" * 78)
    print("WARNING wire: " + msg, file=sys.stderr)
    if ci not in ("", "0", "false"):
        print("wire: CI is set: unchecked packets fail this check")
        ok = False
sys.exit(0 if ok else 1)
EOP
}
check "wire: IKE on 500 then 4500, ESP only in UDP 4500, every ESP packet verifies with the logged keys" wire_ok

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
