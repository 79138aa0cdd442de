#!/usr/bin/env bash
# ferrogate follows a peer whose NAT mapping changes (RFC 7296 §2.23), end to end: ferrogate (DPDK
# data plane on af_packet ports) + ferrogate-ike (through the shared-memory channel) as the public
# site A, strongSwan 5.9.8 (charon, kernel-libipsec) as site B behind a real NAT (nftables SNAT).
#
#   hA (192.168.10.5) --veth-- [gA: ferrogate + ferrogate-ike] --veth "wire"-- [nat: nftables SNAT]
#       inside 192.168.10.1 / outside 203.0.113.1           outside 203.0.113.2 (+ .3) / inside 10.99.0.1
#   --veth-- [gB: charon] --veth-- hB (192.168.20.5)
#            outside 10.99.0.2 / inside 192.168.20.1
#
# strongSwan initiates (it is behind the NAT): reference proposals (SUITE=cbc|gcm), PSK, no MOBIKE,
# dpd_delay 1s, dpd_action clear. The NAT first maps gB to 203.0.113.2 keeping the ports (500,
# 4500). Then, under a `ping -i 0.01` stream from hA to hB, the NAT changes its mapping: the SNAT
# rule is switched to 203.0.113.3:20000-20999 (NAT_MOVE=addr, the default) or to
# 203.0.113.2:20000-20999 (NAT_MOVE=port), and conntrack is flushed. ferrogate's ESP to the old
# mapping is lost; charon hears nothing, sends a DPD request after dpd_delay, and that
# authenticated message arrives from the new mapping: ferrogate-ike follows it and tells the data
# plane to move the outbound SAs there (keeping their sequence numbers).
#
# Checks: tunnel up, ferrogate-ike's ike-up has "nat":true and charon says it is behind a NAT;
# ping both ways; ferrogate-ike emits peer-moved (and logs it) with the NAT's new mapping; on the
# wire between gA and the NAT, ferrogate's ESP-in-UDP goes to the old mapping before the move and
# only to the new one after it (the one the NAT gives charon's packets), its sequence numbers
# rising across the move; the ping stream loses only the echoes whose ESP went into the forgotten
# mapping (+10 in flight), at most MAX_LOST (default 300), and its last 300 are all answered;
# ping both ways again afterwards; still one IKE SA on both sides.
#
#   nat_vs_swan.sh FERROGATE FERROGATE_IKE      as root
#   SUITE=gcm NAT_MOVE=port MAX_LOST=300 STREAM_S=12 (the stream: STREAM_S * 100 echoes) SWAN_KEEP=1
#
# Cleans up namespaces, processes (by PID), EAL runtime dirs and its temp dir on any exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
FG=$1 IKE=$2
SUITE=${SUITE:-cbc}
NAT_MOVE=${NAT_MOVE:-addr}
MAX_LOST=${MAX_LOST:-300}
ID=$$
on_exit() {
    swan_cleanup
    rm -rf "/var/run/dpdk/fgnat$ID"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
[ "$(id -u)" -eq 0 ] || { echo "nat_vs_swan.sh: run as root" >&2; exit 2; }
swan_require_packages

OLD_IP=203.0.113.2
case $NAT_MOVE in
addr) NEW_IP=203.0.113.3 ;;
port) NEW_IP=$OLD_IP ;;
*) echo "unknown NAT_MOVE $NAT_MOVE (addr|port)" >&2; exit 2 ;;
esac
NEW_PORTS=20000-20999

HA=fn$ID-hA GA=fn$ID-gA NAT=fn$ID-nat GB=fn$ID-gB HB=fn$ID-hB
swan_mkdir WORK work
passed=0 failed=0
check() { # name, then a command
    local name=$1; shift
    if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

swan_netns_add "$HA" "$GA" "$NAT" "$GB" "$HB"
ip link add hA0 netns "$HA" type veth peer name gAi netns "$GA"
ip link add gAo netns "$GA" type veth peer name nO netns "$NAT"
ip link add nI netns "$NAT" type veth peer name gBo netns "$GB"
ip link add gBi netns "$GB" type veth peer name hB0 netns "$HB"
for n in "$HA" "$GA" "$NAT" "$GB" "$HB"; do
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$n" link set lo up
done
ip netns exec "$NAT" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$GB" sysctl -qw net.ipv4.ip_forward=1
ip -n "$HA" link set hA0 up; ip -n "$HA" addr add 192.168.10.5/24 dev hA0; ip -n "$HA" route add default via 192.168.10.1
ip -n "$HB" link set hB0 up; ip -n "$HB" addr add 192.168.20.5/24 dev hB0; ip -n "$HB" route add default via 192.168.20.1
ip netns exec "$HA" ethtool -K hA0 tx off > /dev/null
# gA's veths belong to ferrogate (af_packet): no kernel addresses there.
ip -n "$GA" link set gAi up; ip -n "$GA" link set gAo up
ip -n "$NAT" link set nO up; ip -n "$NAT" addr add 203.0.113.2/24 dev nO; ip -n "$NAT" addr add 203.0.113.3/24 dev nO
ip -n "$NAT" link set nI up; ip -n "$NAT" addr add 10.99.0.1/24 dev nI
ip -n "$GB" link set gBo up; ip -n "$GB" addr add 10.99.0.2/24 dev gBo; ip -n "$GB" route add default via 10.99.0.1
ip -n "$GB" link set gBi up; ip -n "$GB" addr add 192.168.20.1/24 dev gBi
mac() { ip netns exec "$1" cat "/sys/class/net/$2/address"; }
MAC_HA=$(mac "$HA" hA0) MAC_NO=$(mac "$NAT" nO)

# The NAT: gB's packets leave as 203.0.113.2, ports kept (nftables picks the same port when free).
nat_rule() { # SNAT target
    ip netns exec "$NAT" nft -f - <<EOF
flush chain ip fgnat post
add rule ip fgnat post oifname "nO" ip saddr 10.99.0.0/24 meta l4proto udp snat to $1
EOF
}
ip netns exec "$NAT" nft -f - <<EOF
add table ip fgnat
add chain ip fgnat post { type nat hook postrouting priority srcnat; policy accept; }
EOF
nat_rule "$OLD_IP"

PSK="ferrogate-interop-psk-0123456789"
swan_suite "$SUITE" || exit 2

# Both public addresses of the NAT are neighbours of ours (static: ferrogate does no ARP).
cat > "$WORK/gw.yaml" <<EOF
interfaces:
  - { name: inside, device: "net_af_packet0,iface=gAi", role: inside, addresses: [192.168.10.1/24] }
  - { name: outside, device: "net_af_packet1,iface=gAo", role: outside, addresses: [203.0.113.1/24] }
routes:
  - { dst: 192.168.20.0/24, interface: outside, via: 203.0.113.2 }
neighbours:
  - { ip: 203.0.113.2, mac: "$MAC_NO", interface: outside }
  - { ip: 203.0.113.3, mac: "$MAC_NO", interface: outside }
  - { ip: 192.168.10.5, mac: "$MAC_HA", interface: inside }
cores: { main: 0, workers: [1] }
mss_clamp: auto
EOF
# The peer's public address as the NAT shows it; ferrogate-ike only responds (start: none).
cat > "$WORK/ike.yaml" <<EOF
tunnels:
  - name: site
    local: 203.0.113.1
    remote: $OLD_IP
    local_id: gw-a.ferrogate.test
    remote_id: gw-b.ferrogate.test
    psk: "$PSK"
    ike_proposals: [$IKE_PROP]
    ike_lifetime: 1h
    dpd: { delay: 30s, timeout: 120s, action: clear }
    start: none
    children:
      - name: net
        local_ts: [192.168.10.0/24]
        remote_ts: [192.168.20.0/24]
        esp_proposals: [$ESP_PROP]
        lifetime: 8h
EOF
# dpd_action clear: only following the peer can bring the traffic back (no new IKE SA).
swan_gen_swanctl --suite "$SUITE" --local 10.99.0.2 --remote 203.0.113.1 \
    --local-ts 192.168.20.0/24 --remote-ts 192.168.10.0/24 --psk "$PSK" \
    --local-id gw-b.ferrogate.test --remote-id gw-a.ferrogate.test --start none --mobike no \
    --dpd-delay 1s --dpd-action clear > "$WORK/b.conf"
swan_mkdir DIR_B charon-b
swan_start "$GB" b "$DIR_B"
swan_load b "$WORK/b.conf" > /dev/null

CHAN=$WORK/ctl/channel
ip netns exec "$GA" "$FG" --config "$WORK/gw.yaml" --control "$CHAN" \
    --eal "--no-huge -m 256 --file-prefix fgnat$ID --log-level=error" \
    --idle-sleep-us 50 --stats-every-ms 60000 --stats-file "$WORK/stats.json" >> "$WORK/fg.log" 2>&1 &
FG_PID=$!
swan_track_pid "$FG_PID"
sleep 2
swan_pid_alive "$FG_PID" || { echo "ferrogate exited:"; cat "$WORK/fg.log"; exit 1; }
ip netns exec "$GA" "$IKE" --config "$WORK/ike.yaml" --dataplane "$CHAN" --socket "$WORK/ike.sock" --log info \
    >> "$WORK/events.jsonl" 2>> "$WORK/ike.log" &
IKE_PID=$!
swan_track_pid "$IKE_PID"

# The wire between gA and the NAT: every IKE and ESP-in-UDP packet, both ways.
ip netns exec "$NAT" tcpdump -q -n -U -i nO -w "$WORK/wire.pcap" "udp port 500 or udp port 4500 or udp portrange $NEW_PORTS" 2>/dev/null &
WIRE=$!
swan_track_pid "$WIRE"
sleep 0.5
swan_initiate b net 10 > "$WORK/initiate.txt" 2>&1 || true

wait_event() { # pattern, seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        grep -q "$1" "$WORK/events.jsonl" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
check "strongSwan behind the NAT initiates: IKE SA up on ferrogate-ike ($IKE_PROP, \"nat\":true)" wait_event '"event":"ike-up".*"nat":true' 15
check "CHILD_SA installed in the data plane ($ESP_PROP)" wait_event '"event":"child-up"' 10
check "strongSwan: CHILD_SA INSTALLED" swan_wait_established b 10
# libipsec fakes its own NAT-D source hash, so "nat":true alone proves nothing: charon must see
# that our NAT_DETECTION_DESTINATION_IP does not match its own (private) address.
swan_behind_nat() { grep -m1 "local host is behind NAT" "$(swan_dir b)/charon.log"; }
check "strongSwan: local host is behind NAT (a real NAT, not only libipsec's fake one)" swan_behind_nat
ping_all() { # namespace, destination
    ip netns exec "$1" ping -c 5 -i 0.2 -W 2 "$2" > "$WORK/ping.txt" || true
    tail -2 "$WORK/ping.txt" | head -1
    grep -q " 0% packet loss" "$WORK/ping.txt"
}
check "ping hA -> hB through ferrogate, the NAT and strongSwan" ping_all "$HA" 192.168.20.5
check "ping hB -> hA through strongSwan, the NAT and ferrogate" ping_all "$HB" 192.168.10.5
# ferrogate as the responder carries TCP too.
ip netns exec "$HB" iperf3 -s -1 > /dev/null 2>&1 &
IPERF_S=$!
swan_track_pid "$IPERF_S"
swan_wait_listen "$HB" 5201 || true
# `timeout --foreground` for the clients: a plain timeout makes a process group of its own,
# which a SIGTERM to this run's group (tests/run.sh's timeout) misses: the client would wait out
# its timeout for a server already gone, and this script's EXIT trap with it.
iperf_ok() {
    ip netns exec "$HA" timeout --foreground 30 iperf3 -c 192.168.20.5 -t 3 -J --logfile "$WORK/iperf.json" &&
        "$SWAN_PYTHON" -c "import json; d=json.load(open('$WORK/iperf.json')); print('iperf3 hA -> hB, ferrogate (responder) <-> strongSwan behind the NAT ($SUITE): %.1f Mbit/s' % (d['end']['sum_received']['bits_per_second']/1e6))"
}
check "iperf3 TCP hA -> hB for 3 s (ferrogate responded to strongSwan's IKE_SA_INIT)" iperf_ok

# The steady stream: ping -i 0.01 (100 pps asked for; a busy 2-core machine manages about 70),
# STREAM_S * 100 echoes; the NAT mapping changes CHANGE_S seconds in.
STREAM_S=${STREAM_S:-12} CHANGE_S=3
N=$((STREAM_S * 100))
ip netns exec "$HA" ping -i 0.01 -W 1 -c "$N" 192.168.20.5 > "$WORK/stream.txt" 2>&1 &
PING=$!
swan_track_pid "$PING"
sleep "$CHANGE_S"
nat_rule "$NEW_IP:$NEW_PORTS"
ip netns exec "$NAT" conntrack -F > /dev/null 2>&1
T_CHANGE=$(date +%s.%N)
echo "NAT mapping changed at $(date -u +%T.%N | cut -c1-12): SNAT to $NEW_IP:$NEW_PORTS, conntrack flushed"
moved() {
    wait_event '"event":"peer-moved"' 10 || return 1
    local t
    t=$(date +%s.%N)
    grep -m1 '"event":"peer-moved"' "$WORK/events.jsonl" &&
        grep -m1 "NAT mapping changed: following it" "$WORK/ike.log" &&
        awk -v a="$T_CHANGE" -v b="$t" 'BEGIN { printf "peer-moved seen %.1f s after the NAT change\n", b - a }'
}
check "ferrogate-ike follows the peer: peer-moved event and log line" moved
swan_wait_pid "$PING" || true

# The mapping the NAT gives charon now: the source of its first packet on the wire after the
# change that does not come from the old mapping (echo replies still in flight may).
tcpdump -tt -n -q -r "$WORK/wire.pcap" 2>/dev/null > "$WORK/wire.txt"
NEW_MAP=$(awk -v t="$T_CHANGE" -v old="$OLD_IP.4500" \
    '$1 > t && $5 == "203.0.113.1.4500:" && $3 != old { print $3; exit }' "$WORK/wire.txt")
MOVED_TO=$(grep -m1 '"event":"peer-moved"' "$WORK/events.jsonl" | sed -n 's/.*"remote":"\([^"]*\)".*/\1/p')
echo "the NAT's new mapping for gB (first packet from the NAT after the change): ${NEW_MAP:-none}"
echo "ferrogate-ike moved the tunnel to: ${MOVED_TO:-none}"
new_mapping() {
    [ -n "$NEW_MAP" ] && [ "${NEW_MAP%.*}" = "$NEW_IP" ] && [ "${NEW_MAP##*.}" != 4500 ] &&
        [ "$MOVED_TO" = "${NEW_MAP%.*}:${NEW_MAP##*.}" ]
}
check "the move is to the NAT's new mapping of gB ($NEW_IP, a port in $NEW_PORTS)" new_mapping

# ferrogate's ESP in UDP on the wire: from 203.0.113.1.4500, a non-zero SPI where IKE has its
# non-ESP marker (a keepalive is one byte: the 4-byte load fails and BPF drops it).
tcpdump -tt -n -r "$WORK/wire.pcap" "src host 203.0.113.1 and udp src port 4500 and udp[8:4] != 0" \
    2>/dev/null > "$WORK/esp-out.txt"
N_DEAD=0
esp_moved() {
    local old=$OLD_IP.4500 new=${NEW_MAP:-none} r
    r=$("$SWAN_PYTHON" - "$WORK/esp-out.txt" "$old" "$new" "$T_CHANGE" <<'EOF'
import re, sys
# 1796143747.813357 IP 203.0.113.1.4500 > 203.0.113.3.20236: UDP-encap: ESP(spi=0xe5fc6beb,seq=0x1), length 136
pat = re.compile(r"^(\S+) IP \S+ > (\S+): UDP-encap: ESP\(spi=(0x[0-9a-f]+),seq=(0x[0-9a-f]+)\)")
rows = [(float(m[1]), m[2], m[3], int(m[4], 16)) for m in map(pat.match, open(sys.argv[1])) if m]
old, new, t_change = sys.argv[2], sys.argv[3], float(sys.argv[4])
dests = {}
for r in rows:
    dests[r[1]] = dests.get(r[1], 0) + 1
print("ferrogate's ESP-in-UDP on the wire, by destination: "
      + ", ".join("%s: %d" % kv for kv in sorted(dests.items())))
first_new = next((i for i, r in enumerate(rows) if r[1] == new), None)
if first_new is None:
    print("no ESP to the new mapping %s" % new)
    print("dead=%d" % sum(1 for r in rows if r[0] > t_change))
    sys.exit(1)
before, after = rows[:first_new], rows[first_new:]
dead = sum(1 for r in before if r[0] > t_change)
print("before the move: %d to %s (%d of them after the NAT change, into the forgotten mapping)"
      % (sum(1 for r in before if r[1] == old), old, dead))
print("after the move:  %d to %s, %d elsewhere; the move came %.3f s after the NAT change"
      % (sum(1 for r in after if r[1] == new), new, sum(1 for r in after if r[1] != new),
         after[0][0] - t_change))
ok = (all(r[1] == old for r in before) and all(r[1] == new for r in after)
      and len(before) > 0 and len(after) > 100)
# The peer's replay window has seen the old numbers: per SPI they must keep rising.
last = {}
for r in rows:
    if r[2] in last and r[3] <= last[r[2]]:
        print("ESP sequence number went back on SPI %s: %#x after %#x (to %s)" % (r[2], r[3], last[r[2]], r[1]))
        ok = False
        break
    last[r[2]] = r[3]
if before:
    print("sequence numbers across the move (SPI %s): %#x to %s, then %#x to %s"
          % (after[0][2], before[-1][3], before[-1][1], after[0][3], after[0][1]))
print("dead=%d" % dead)
sys.exit(0 if ok else 1)
EOF
) || { printf '%s\n' "$r" | grep -v '^dead='; N_DEAD=$(printf '%s\n' "$r" | sed -n 's/^dead=//p'); return 1; }
    printf '%s\n' "$r" | grep -v '^dead='
    N_DEAD=$(printf '%s\n' "$r" | sed -n 's/^dead=//p')
}
check "ferrogate's outbound ESP goes to $OLD_IP:4500 before the move and only to the new mapping after it, sequence numbers kept" esp_moved

# Nothing may be lost once the data plane moved: the echoes lost are those whose ESP went into the
# forgotten mapping (N_DEAD, counted on the wire above), give or take a few in flight at the change.
stream_ok() {
    local tx rx
    tx=$(grep -o '[0-9]* packets transmitted' "$WORK/stream.txt" | cut -d' ' -f1)
    rx=$(grep -o '[0-9]* received' "$WORK/stream.txt" | cut -d' ' -f1)
    echo "ping stream hA -> hB ($(grep -o 'time [0-9]*ms' "$WORK/stream.txt")): $tx sent, $rx received, $((tx - rx)) lost (bound $MAX_LOST; ESP into the forgotten mapping: ${N_DEAD:-?})"
    "$SWAN_PYTHON" - "$WORK/stream.txt" "$N" <<'EOF'
import re, sys
got = {int(m) for m in re.findall(r"icmp_seq=(\d+) ttl=", open(sys.argv[1]).read())}
n = int(sys.argv[2])
lost = [s for s in range(1, n + 1) if s not in got]
if lost:
    print("lost icmp_seq %d..%d (%d); the last %d echoes: %d answered"
          % (lost[0], lost[-1], len(lost), 300, sum(1 for s in range(n - 299, n + 1) if s in got)))
sys.exit(0 if all(s in got for s in range(n - 299, n + 1)) else 1)
EOF
    [ -n "$tx" ] && [ "$tx" -eq "$N" ] && [ $((tx - rx)) -le "$MAX_LOST" ] &&
        [ $((tx - rx)) -le $((${N_DEAD:-0} + 10)) ]
}
check "the stream recovers after the move: only the echoes sent into the forgotten mapping lost (+10), at most $MAX_LOST, the last 300 answered" stream_ok
check "ping hA -> hB after the move" ping_all "$HA" 192.168.20.5
check "ping hB -> hA after the move" ping_all "$HB" 192.168.10.5
# (swanctl failing leaves the list empty: the check below fails, the summary still comes.)
swan_list b > "$WORK/list-b.txt" || true
still_one() { [ "$(grep -c "ESTABLISHED" "$WORK/list-b.txt")" -eq 1 ] && [ "$(grep -c '"event":"ike-up"' "$WORK/events.jsonl")" -eq 1 ]; }
check "the same IKE SA throughout (no new one on either side)" still_one
swan_stop_pid "$WIRE"

if [ "$failed" -ne 0 ] || [ -n "${SWAN_KEEP:-}" ]; then
    echo "== ferrogate log (tail)"; tail -20 "$WORK/fg.log"
    echo "== ferrogate-ike log (tail)"; tail -30 "$WORK/ike.log"
    echo "== events"; cat "$WORK/events.jsonl"
    echo "== charon log (DPD, NAT)"; grep -E "DPD|NAT|INFORMATIONAL" "$(swan_dir b)/charon.log" | tail -20 || true
    echo "== swanctl --list-sas"; cat "$WORK/list-b.txt"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
