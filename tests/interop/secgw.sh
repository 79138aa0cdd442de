#!/usr/bin/env bash
# ferrogate against DPDK's own ESP gateway, ipsec-secgw, with the same static SAs.
#
#   hA (192.168.10.5) --veth-- [gA: ferrogate] --veth "wire"-- [gB: ipsec-secgw] --veth-- hB (192.168.20.5)
#      inside 192.168.10.1 / outside 203.0.113.1                  203.0.113.2 (port 0: "unprotected", the ESP side)
#
# ipsec-secgw is built at test time from the source Debian's dpdk-doc installs
# (/usr/share/dpdk/examples/ipsec-secgw), copied to a temp dir: its default RX checksum offload
# is switched off there (af_packet has none); nothing of it is kept. It runs on af_packet ports
# with the ipsec-mb crypto PMD, one lcore, 2 MB hugepages mounted privately for the run (256 of
# them, the pool size restored afterwards). It answers no ARP, so both sides have static
# neighbours for it.
#
# Checks (SUITE=gcm: AES-256-GCM; SUITE=cbc: AES-256-CBC + HMAC-SHA-256-128): ping both ways,
# iperf3 TCP both ways (Mbit/s printed), and the ESP on the wire decrypts with fgpcap in both
# directions (ferrogate's and secgw's packets).
#
#   secgw.sh FERROGATE FGPCAP        as root; SUITE=gcm|cbc
#
# Cleans up namespaces, processes (by PID), the hugepage mount, EAL runtime dirs and its temp
# dir on any exit.
set -euo pipefail
FG=$1 FGPCAP=$2
SUITE=${SUITE:-gcm}
[ "$(id -u)" -eq 0 ] || { echo "secgw.sh: run as root" >&2; exit 2; }
[ -d /usr/share/dpdk/examples/ipsec-secgw ] || { echo "secgw.sh: dpdk-doc's ipsec-secgw source is missing (apt install dpdk-doc)" >&2; exit 2; }
ID=$$
NS=(sg$ID-hA sg$ID-gA sg$ID-gB sg$ID-hB)
HA=${NS[0]} GA=${NS[1]} GB=${NS[2]} HB=${NS[3]}
WORK=
HUGE=
# shellcheck source=../hugepages.sh
. "$(dirname "$0")/../hugepages.sh"
# shellcheck source=../netns/pids.sh
. "$(dirname "$0")/../netns/pids.sh"
# Processes by PID and start time (pids.sh: a PID that exited and was given to another process
# is never signalled): TERM, up to 4 s for them all, then KILL.
cleanup() {
    set +e
    stop_tracked 4
    kill_netns_leftovers "${NS[@]}"
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
    [ -z "$HUGE" ] || huge_release "$HUGE"
    [ -z "$WORK" ] || [ -n "${SECGW_KEEP:-}" ] || rm -rf "$WORK"
    rm -rf "/var/run/dpdk/fgsg$ID" "/var/run/dpdk/sg$ID"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fg-secgw.XXXXXX")
HUGE=$WORK/huge

passed=0 failed=0
check() { # name, then a command
    local name=$1; shift
    if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

# Build ipsec-secgw from the installed example source.
cp -r /usr/share/dpdk/examples/ipsec-secgw "$WORK/src"
sed -i 's/\.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,/.offloads = 0,/' "$WORK/src/ipsec-secgw.c"
grep -q '\.offloads = 0,' "$WORK/src/ipsec-secgw.c" || { echo "secgw.sh: could not turn off the RX checksum offload" >&2; exit 1; }
make -C "$WORK/src" -j2 > "$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log"; exit 1; }
SECGW=$WORK/src/build/ipsec-secgw

# Hugepages: ipsec-secgw's LPM tables want 256 x 2 MB.
huge_reserve "$HUGE" 256 || exit 1

for n in "${NS[@]}"; do ip netns add "$n"; done
ip link add hA0 netns "$HA" type veth peer name gAi netns "$GA"
ip link add gAo netns "$GA" type veth peer name gBo netns "$GB"
ip link add gBi netns "$GB" type veth peer name hB0 netns "$HB"
for n in "${NS[@]}"; do
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$n" link set lo up
done
for l in gAi gAo; do ip -n "$GA" link set "$l" up; done
for l in gBo gBi; do ip -n "$GB" link set "$l" up; done
ip -n "$HA" link set hA0 up; ip -n "$HA" addr add 192.168.10.5/24 dev hA0; ip -n "$HA" route add default via 192.168.10.1
ip -n "$HB" link set hB0 up; ip -n "$HB" addr add 192.168.20.5/24 dev hB0; ip -n "$HB" route add default via 192.168.20.1
# Kernel-bypass gateways never complete CHECKSUM_PARTIAL: have the hosts compute checksums.
ip netns exec "$HA" ethtool -K hA0 tx off > /dev/null
ip netns exec "$HB" ethtool -K hB0 tx off > /dev/null
mac() { ip netns exec "$1" cat "/sys/class/net/$2/address"; }
MAC_HB=$(mac "$HB" hB0) MAC_GAO=$(mac "$GA" gAo) MAC_GBO=$(mac "$GB" gBo) MAC_GBI=$(mac "$GB" gBi)
ip -n "$HB" neigh add 192.168.20.1 lladdr "$MAC_GBI" dev hB0

SPI_AB=41136 SPI_BA=45216 # 0xa0b0, 0xb0a0
K_AB=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fa0a1a2a3
K_BA=202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3fb0b1b2b3
A_AB=5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a
A_BA=a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5
colons() { echo "$1" | sed 's/../&:/g; s/:$//'; }
case $SUITE in
gcm)
    OURS_AB="cipher: aes-gcm-256, enc_key: \"0x$K_AB\""
    OURS_BA="cipher: aes-gcm-256, enc_key: \"0x$K_BA\""
    SG_AB="aead_algo aes-256-gcm aead_key $(colons "$K_AB")"
    SG_BA="aead_algo aes-256-gcm aead_key $(colons "$K_BA")"
    ;;
cbc)
    K_AB=${K_AB:0:64} K_BA=${K_BA:0:64}
    OURS_AB="cipher: aes-cbc-256, enc_key: \"0x$K_AB\", integrity: hmac-sha256, auth_key: \"0x$A_AB\""
    OURS_BA="cipher: aes-cbc-256, enc_key: \"0x$K_BA\", integrity: hmac-sha256, auth_key: \"0x$A_BA\""
    SG_AB="cipher_algo aes-256-cbc cipher_key $(colons "$K_AB") auth_algo sha256-hmac auth_key $(colons "$A_AB")"
    SG_BA="cipher_algo aes-256-cbc cipher_key $(colons "$K_BA") auth_algo sha256-hmac auth_key $(colons "$A_BA")"
    ;;
*) echo "unknown SUITE $SUITE" >&2; exit 2 ;;
esac

cat > "$WORK/a.yaml" <<EOF
interfaces:
  - { name: inside, device: "net_af_packet0,iface=gAi", role: inside, addresses: [192.168.10.1/24] }
  - { name: outside, device: "net_af_packet1,iface=gAo", role: outside, addresses: [203.0.113.1/24] }
routes:
  - { dst: 192.168.20.0/24, interface: outside, via: 203.0.113.2 }
neighbours:
  - { ip: 203.0.113.2, mac: "$MAC_GBO", interface: outside }
# ipsec-secgw polls on lcore 1 (CPU 1): ferrogate's worker takes CPU 0, its main lcore (the
# control plane, idle here) shares CPU 1.
cores: { main: 1, workers: [0] }
mss_clamp: auto   # TCP through both gateways fits the 1500-byte wire (secgw cannot take more on af_packet)
sas:
  - { name: out, spi: $SPI_AB, direction: out, mode: tunnel, $OURS_AB,
      local: 203.0.113.1, remote: 203.0.113.2, local_ts: [192.168.10.0/24], remote_ts: [192.168.20.0/24] }
  - { name: in, spi: $SPI_BA, direction: in, mode: tunnel, $OURS_BA,
      local: 203.0.113.1, remote: 203.0.113.2, replay_window: 1024,
      local_ts: [192.168.10.0/24], remote_ts: [192.168.20.0/24] }
policies:
  - { direction: out, src: 192.168.10.0/24, dst: 192.168.20.0/24, action: protect, sa: out }
  - { direction: in, src: 192.168.20.0/24, dst: 192.168.10.0/24, action: protect }
EOF
cat > "$WORK/secgw.cfg" <<EOF
sp ipv4 in esp protect $SPI_AB pri 1 dst 192.168.20.0/24 sport 0:65535 dport 0:65535
sp ipv4 out esp protect $SPI_BA pri 1 dst 192.168.10.0/24 sport 0:65535 dport 0:65535
sa in $SPI_AB $SG_AB mode ipv4-tunnel src 203.0.113.1 dst 203.0.113.2
sa out $SPI_BA $SG_BA mode ipv4-tunnel src 203.0.113.2 dst 203.0.113.1
rt ipv4 dst 203.0.113.1/32 port 0
rt ipv4 dst 192.168.20.0/24 port 1
neigh port 0 $MAC_GAO
neigh port 1 $MAC_HB
EOF
# The same keys for fgpcap, to read the wire from both directions.
cat > "$WORK/wire-sa.yaml" <<EOF
sas:
  - { name: a-to-b, spi: $SPI_AB, direction: in, mode: tunnel, $OURS_AB,
      local: 203.0.113.2, remote: 203.0.113.1, replay_window: 0, local_ts: [192.168.20.0/24], remote_ts: [192.168.10.0/24] }
  - { name: b-to-a, spi: $SPI_BA, direction: in, mode: tunnel, $OURS_BA,
      local: 203.0.113.1, remote: 203.0.113.2, replay_window: 0, local_ts: [192.168.10.0/24], remote_ts: [192.168.20.0/24] }
EOF

ip netns exec "$GB" stdbuf -o0 -e0 "$SECGW" -l 1 -n 1 --no-pci --huge-dir "$HUGE" --file-prefix "sg$ID" ${SECGW_LOG:---log-level=error} \
    --vdev "net_af_packet0,iface=gBo" --vdev "net_af_packet1,iface=gBi" --vdev crypto_aesni_mb0 \
    -- -p 0x3 -P -u 0x1 --config "(0,0,1),(1,0,1)" -f "$WORK/secgw.cfg" > "$WORK/secgw.log" 2>&1 &
SG_PID=$!
track_pid "$SG_PID"
ip netns exec "$GA" "$FG" --config "$WORK/a.yaml" --eal "--no-huge -m 256 --file-prefix fgsg$ID --log-level=error" \
    --idle-sleep-us 50 --stats-every-ms 60000 --stats-file "$WORK/stats.json" > "$WORK/fg.log" 2>&1 &
FG_PID=$!
track_pid "$FG_PID"
# ipsec-secgw checks link status for a few seconds before it enters its main loop.
for _ in $(seq 1 150); do
    grep -q "Port 1 Link up" "$WORK/secgw.log" 2>/dev/null && break
    pid_alive "$SG_PID" || break
    sleep 0.1
done
sleep 1
started() {
    pid_alive "$SG_PID" && pid_alive "$FG_PID" &&
        grep -q "Port 1 Link up" "$WORK/secgw.log"
}
if ! started; then
    echo "== ipsec-secgw log"; tail -30 "$WORK/secgw.log"
    echo "== ferrogate log"; tail -10 "$WORK/fg.log"
    exit 1
fi

# Each af_packet gateway's own transmissions are invisible to a capture on its side of the
# wire, so capture at both ends: what reaches ipsec-secgw, and what reaches ferrogate.
ip netns exec "$GB" tcpdump -q -n -U -i gBo -w "$WORK/wire-to-secgw.pcap" esp 2>/dev/null &
TCPDUMP=$!
track_pid "$TCPDUMP"
ip netns exec "$GA" tcpdump -q -n -U -i gAo -w "$WORK/wire-to-ferrogate.pcap" esp 2>/dev/null &
TCPDUMP2=$!
track_pid "$TCPDUMP2"
sleep 0.5

ping_all() { # namespace, destination
    ip netns exec "$1" ping -c 5 -i 0.2 -W 2 "$2" > "$WORK/ping.txt" || true
    tail -2 "$WORK/ping.txt" | head -1
    grep -q " 0% packet loss" "$WORK/ping.txt"
}
check "ping hA -> hB through ferrogate and ipsec-secgw ($SUITE)" ping_all "$HA" 192.168.20.5
check "ping hB -> hA through ipsec-secgw and ferrogate ($SUITE)" ping_all "$HB" 192.168.10.5
# One iperf3 server for both clients below, a child of this shell (not -D: a daemon leaves the
# process group and this run's tracking, and serves on after it); its port is polled.
ip netns exec "$HB" iperf3 -s > /dev/null 2>&1 &
track_pid $!
wait_tcp_listen "$HB" 5201 || true
# `timeout --foreground` for the clients: a plain timeout makes a process group of its own,
# which a SIGTERM to this run's group (tests/run.sh's timeout) misses: the client would wait out
# its timeout for a server already gone, and this script's EXIT trap with it.
iperf() { # extra iperf3 args, label
    rm -f "$WORK/iperf.json" # --logfile appends
    ip netns exec "$HA" timeout --foreground 30 iperf3 -c 192.168.20.5 -t 3 $1 -J --logfile "$WORK/iperf.json" &&
        python3 -c "import json; d=json.load(open('$WORK/iperf.json')); print('iperf3 $2, ferrogate <-> ipsec-secgw ($SUITE): %.1f Mbit/s' % (d['end']['sum_received']['bits_per_second']/1e6))"
}
check "iperf3 TCP hA -> hB for 3 s" iperf "" "hA -> hB"
check "iperf3 TCP hB -> hA for 3 s" iperf "-R" "hB -> hA"
sleep 0.5
stop_pid "$TCPDUMP"
stop_pid "$TCPDUMP2"
wire_both_ways() {
    local w
    for w in to-secgw to-ferrogate; do
        "$FGPCAP" decrypt --sa "$WORK/wire-sa.yaml" --in "$WORK/wire-$w.pcap" --out "$WORK/clear-$w.pcap" --json > "$WORK/decrypt-$w.json"
    done
    python3 - "$WORK" <<'EOP'
import json, sys
w = sys.argv[1]
ok = True
for name, who in (("to-secgw", "ferrogate"), ("to-ferrogate", "ipsec-secgw")):
    d = json.load(open("%s/decrypt-%s.json" % (w, name)))
    drops = {k: v for k, v in d["drops"].items() if v}
    print("wire: %d ESP packets from %s; fgpcap decrypted %d, drops %s"
          % (d["packets_in"], who, d["packets_out"], drops))
    ok = ok and d["packets_in"] > 100 and d["packets_out"] == d["packets_in"] and not drops
sys.exit(0 if ok else 1)
EOP
}
check "the wire: every ESP packet, from either gateway, decrypts with fgpcap" wire_both_ways

if [ "$failed" -ne 0 ]; then
    echo "== ipsec-secgw log (tail)"; tail -20 "$WORK/secgw.log"
    echo "== ferrogate stats"; cat "$WORK/stats.json" 2>/dev/null || true
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
