#!/usr/bin/env bash
# The reference scenario's high-availability pair against strongSwan: site A is two ferrogate
# gateways (each with its ferrogate-ike) that share the tunnel's address 203.0.113.1 and the
# site's gateway address 192.168.10.1 through VRRP; site B is strongSwan (charon).
#
#   hA (192.168.10.5) --+-- A1 (192.168.10.2 / 203.0.113.3, priority 200) --+-- B: charon (203.0.113.2) -- hB (192.168.20.5)
#                       +-- A2 (192.168.10.3 / 203.0.113.4, priority 100) --+
#            bridge "in"    VIPs 192.168.10.1 (VRID 52), 203.0.113.1 (VRID 51)   bridge "out"
#
# Both gateways run the same tunnel (IKE aes256-sha256-modp1024, ESP aes256-sha256, PSK,
# start: start, DPD 30 s/120 s/restart, local 203.0.113.1). Only the VRRP master's
# ferrogate-ike may speak from 203.0.113.1: the data plane tells it which virtual addresses it
# holds, and a backup neither initiates nor answers there. The two ferrogate-ikes sync SA
# state over a link of their own (10.99.0.1 <-> 10.99.0.2, UDP 4510, `ha:`): the master sends
# its CHILD_SA pairs and their sequence numbers, and a backup that takes over installs them at
# once, so traffic flows before its new IKE SA is up (SYNC=0: no sync link; the new master
# negotiates first).
# Checks:
#   1. A1 becomes master of both addresses and brings the tunnel up with charon; A2 stays
#      backup, its ferrogate-ike holds no IKE SA and sent nothing from the shared address.
#   2. A1 dies (SIGKILL of ferrogate and ferrogate-ike, as a power cut): A2 takes both
#      addresses over after VRRP's Master_Down_Interval and hA's ping to hB (50 a second)
#      resumes. The outage is measured; it must stay under 6 s (~3.3 s measured: VRRP's
#      Master_Down_Interval; DPD alone would take 120 s).
#      With the sync: the wire (captured at B) must show ESP from A2 (its MAC) on A1's
#      outbound SPI, numbered past what A1 sent, and charon's ESP to A2 on the synced inbound
#      SPI: the synced pair carried traffic both ways before A2's own CHILD_SA. A2 carries
#      A1's IKE SA on (synced too): charon still holds the same IKE SA (SPIs), A2 negotiated
#      none, A2 rekeyed the synced CHILD_SA through it, and charon then rekeys the CHILD_SA
#      and the IKE SA through A2. Without the sync (SYNC=0) A2's ferrogate-ike initiates
#      with INITIAL_CONTACT and charon replaces the dead IKE SA.
#      Steps 3 and 5 check too that charon keeps its IKE SA over each takeover (sync).
#   3. A1 comes back (priority 200, preempt): it takes over, A2's ferrogate-ike drops its
#      IKE SA without a word, A1's brings a new one up, and the ping resumes (outage measured:
#      ~0.2 s, the new IKE SA's setup; it must stay under 3 s).
#   4. A2's inside port is cut from its bridge: its inside router hears A1 no more, but its
#      outside router still does, and the sync group (`group: site`) keeps A2 backup on both
#      (without the group A2 would take 192.168.10.1 while A1 holds it: two masters).
#   5. A1's inside link fails (the carrier goes: the bridge's end of its veth is set down): A1's
#      inside router sees its tracked link down and goes to fault, its outside router follows
#      (sync group) and says priority 0, and A2 takes the outside address after its skew; its
#      inside router, pulled along by that release, takes over once A1's inside advertisements
#      have missed one interval (and its skew), not three. The ping's outage is measured and
#      bounded (LINK_OUTAGE_MS, default 2500; 0.7-1.7 s expected with 1 s adverts, 3.4 s
#      without the pull). Without link tracking A1 would keep the outside address and
#      A2 its backup role (its outside router still hears A1): the site cut off for good. The
#      link comes back: A1 waits a Master_Down_Interval as a backup, then preempts.
#   6. Split brain averted (with the sync): both bridges drop VRRP (IP protocol 112) between
#      the gateways for ~13 s while the sync link works. Without a second path A2 would take
#      both addresses after Master_Down_Interval while A1 keeps them, and both ferrogate-ikes
#      would drive the one synced IKE SA. A1's snapshots carry its masters (priority 200),
#      which A2's data plane takes as advertisements: A2 stays backup (never master: its
#      `became_master` does not move), A1 master of both, charon keeps the one IKE SA and the
#      ping flows. Then VRRP gets through again. Run by default with advertisement intervals
#      of a second or more: with 100 ms ones Master_Down_Interval (0.36 s) is shorter than the
#      sync's 0.5 s, so A2 may take over before A1's next snapshot and yields to it within
#      0.5 s, but its ferrogate-ike has carried the IKE SA on by then and the check fails
#      (STEPS=6 runs it anyway).
#
#   ha_vs_swan.sh FERROGATE FERROGATE-IKE      (root; tests/run.sh)
#   SWAN_KEEP=1 ha_vs_swan.sh ...              keep the work directory
#   ADVERT=100ms ha_vs_swan.sh ...             VRRP advertisement interval (default 1s): the
#       failover outage follows it (Master_Down_Interval is 3.61 of them at priority 100)
#   MAX_OUTAGE_MS=1500 ha_vs_swan.sh ...       the longest failover outage accepted (default 6000)
#   BLOCK_IKE_S=3 ha_vs_swan.sh ...            charon's namespace drops IKE (port 500, and 4500
#       after the non-ESP marker) for that long from A1's death (a slow or lossy IKE peer):
#       without the sync the new master's traffic waits for its IKE SA (IKE_SA_INIT goes out
#       again after 2 s), with it it does not, and the carried-on IKE SA's first exchanges
#       get through once retransmitted
#   STEPS=12 ha_vs_swan.sh ...                 run only those checks (default 123456; 12345
#       with SYNC=0 or advertisement intervals in ms)
#   OUTER=6 ha_vs_swan.sh ...                  the outside link is IPv6: the tunnel's shared
#       address is 2001:db8:113::1 (an IPv6 VRRP router, VRID 51, advertising from the ports'
#       link-local addresses), charon is 2001:db8:113::2, A1/A2 are ::3/::4; IKE and ESP
#       travel over IPv6 (the inside, and the sync link between the gateways, stay IPv4)
#   VMAC=1 ha_vs_swan.sh ...                   both routers use the virtual MAC (`vmac: true`),
#       and charon's namespace and hA hold the shared addresses as permanent neighbour
#       entries for 00:00:5e:00:01:33 / :34: they never ask again, like a router that ignores
#       gratuitous ARP, so every takeover must work through the bridges learning the MACs
#   LINK_OUTAGE_MS=800 ha_vs_swan.sh ...       the longest outage accepted in step 5
#   DEMO=1 ha_vs_swan.sh ...                   (deploy/demo.sh HA=1) also prints, every second
#       of the failover and the preemption, both gateways' VRRP states and the echoes answered,
#       and the IKE SAs of each side after each step
#
# Cleans up namespaces, processes (by PID), EAL runtime dirs and its temp dir on any exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
FG=$1 IKE=$2
FGCTL=$(dirname "$IKE")/fgctl
ID=$$
on_exit() {
    swan_cleanup
    rm -rf "/var/run/dpdk/fgha1$ID" "/var/run/dpdk/fgha2$ID"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
[ "$(id -u)" -eq 0 ] || { echo "ha_vs_swan.sh: run as root" >&2; exit 2; }
swan_require_packages

SW=ha$ID-sw HA=ha$ID-hA A1=ha$ID-a1 A2=ha$ID-a2 GB=ha$ID-gB HB=ha$ID-hB
swan_mkdir WORK work
passed=0 failed=0

swan_netns_add "$SW" "$HA" "$A1" "$A2" "$GB" "$HB"
for br in in out; do
    ip -n "$SW" link add "br$br" type bridge mcast_snooping 0
    ip -n "$SW" link set "br$br" up
done
# Ports onto the bridges: NS DEV BRIDGE
attach() {
    ip link add "$2" netns "$1" type veth peer name "s$2" netns "$SW"
    ip -n "$SW" link set "s$2" master "br$3" up
    ip -n "$1" link set "$2" up
}
attach "$HA" hA0 in
attach "$A1" a1i in; attach "$A1" a1o out
attach "$A2" a2i in; attach "$A2" a2o out
attach "$GB" gBo out
SYNC=${SYNC:-1}
OUTER=${OUTER:-4}
# The outside link: the shared address, charon's, A1's and A2's own, the prefix length, and
# the virtual MAC of the outside router.
case $OUTER in
4) OUT_VIP=203.0.113.1 OUT_B=203.0.113.2 OUT_A1=203.0.113.3 OUT_A2=203.0.113.4 OUT_LEN=24 OUT_VMAC=00:00:5e:00:01:33 ;;
6) OUT_VIP=2001:db8:113::1 OUT_B=2001:db8:113::2 OUT_A1=2001:db8:113::3 OUT_A2=2001:db8:113::4 OUT_LEN=64 OUT_VMAC=00:00:5e:00:02:33 ;;
*) echo "unknown OUTER $OUTER" >&2; exit 2 ;;
esac
export HA_VIP=$OUT_VIP HA_PEER=$OUT_B
if [ "$SYNC" = 1 ]; then
    # The sync link: kernel addresses in the gateways' namespaces (the ferrogate-ikes' sockets).
    ip link add a1h netns "$A1" type veth peer name a2h netns "$A2"
    ip -n "$A1" addr add 10.99.0.1/30 dev a1h; ip -n "$A1" link set a1h up
    ip -n "$A2" addr add 10.99.0.2/30 dev a2h; ip -n "$A2" link set a2h up
fi
ip link add gBi netns "$GB" type veth peer name hB0 netns "$HB"
for n in "$SW" "$HA" "$A1" "$A2" "$GB" "$HB"; do
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$n" link set lo up
done
ip netns exec "$GB" sysctl -qw net.ipv4.ip_forward=1
ip -n "$HA" addr add 192.168.10.5/24 dev hA0; ip -n "$HA" route add default via 192.168.10.1
ip -n "$HB" link set hB0 up; ip -n "$HB" addr add 192.168.20.5/24 dev hB0; ip -n "$HB" route add default via 192.168.20.1
ip netns exec "$HA" ethtool -K hA0 tx off > /dev/null
if [ "$OUTER" = 6 ]; then
    ip netns exec "$GB" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.gBo.disable_ipv6=0 \
        net.ipv6.conf.gBo.accept_dad=0
    ip -n "$GB" addr add "$OUT_B/$OUT_LEN" dev gBo nodad
else
    ip -n "$GB" addr add "$OUT_B/$OUT_LEN" dev gBo
fi
ip -n "$GB" link set gBi up; ip -n "$GB" addr add 192.168.20.1/24 dev gBi

PSK="ferrogate-interop-psk-0123456789"
ADVERT=${ADVERT:-1s}
MAX_OUTAGE_MS=${MAX_OUTAGE_MS:-6000}
LINK_OUTAGE_MS=${LINK_OUTAGE_MS:-2500}
BLOCK_IKE_S=${BLOCK_IKE_S:-0}
# The two routers of a gateway form a sync group (GROUP=none: they do not; steps 4 and 5 then
# fail).
GROUP=${GROUP:-site}
# A gateway that comes back does not preempt for this long (its ferrogate-ike starts a second
# after its data plane, and must hear the master's sync before it takes the tunnel over:
# with 100 ms adverts it would preempt first, and its ferrogate-ike, finding the address
# already its own and no snapshot, would negotiate a new IKE SA).
PREEMPT_DELAY=${PREEMPT_DELAY:-3s}
VMAC_OPT=
if [ -n "${VMAC:-}" ]; then
    VMAC_OPT=", vmac: true"
    ip -n "$GB" neigh replace "$OUT_VIP" lladdr "$OUT_VMAC" nud permanent dev gBo
    ip -n "$HA" neigh replace 192.168.10.1 lladdr 00:00:5e:00:01:34 nud permanent dev hA0
fi
[ "$GROUP" = none ] && GROUP=null
swan_suite cbc
# gw N INSIDE_ADDR OUTSIDE_ADDR PRIORITY
gw_conf() {
    cat <<EOF
interfaces:
  - { name: inside, device: "net_af_packet0,iface=a$1i", role: inside, addresses: [$2/24] }
  - { name: outside, device: "net_af_packet1,iface=a$1o", role: outside, addresses: ["$3/$OUT_LEN"] }
routes:
  - { dst: 192.168.20.0/24, interface: outside, via: "$OUT_B" }
cores: { main: 0, workers: [] }
mss_clamp: auto
vrrp:
  - { interface: outside, vrid: 51, priority: $4, advert_interval: $ADVERT, preempt_delay: $PREEMPT_DELAY, vips: ["$OUT_VIP"], group: $GROUP$VMAC_OPT }
  - { interface: inside, vrid: 52, priority: $4, advert_interval: $ADVERT, preempt_delay: $PREEMPT_DELAY, vips: [192.168.10.1], group: $GROUP$VMAC_OPT }
EOF
}
gw_conf 1 192.168.10.2 "$OUT_A1" 200 > "$WORK/a1.yaml"
gw_conf 2 192.168.10.3 "$OUT_A2" 100 > "$WORK/a2.yaml"
ID_A=gw-a.ferrogate.test ID_B=gw-b.ferrogate.test
cat > "$WORK/ike.yaml" <<EOF
tunnels:
  - name: site
    local: "$OUT_VIP"
    remote: "$OUT_B"
    local_id: $ID_A
    remote_id: $ID_B
    psk: "$PSK"
    ike_proposals: [$IKE_PROP]
    ike_lifetime: 1h
    dpd: { delay: 30s, timeout: 120s, action: restart }
    start: start
    keyingtries: 0
    children:
      - name: net
        local_ts: [192.168.10.0/24]
        remote_ts: [192.168.20.0/24]
        esp_proposals: [$ESP_PROP]
        lifetime: 8h
EOF
for n in 1 2; do
    cp "$WORK/ike.yaml" "$WORK/ike-a$n.yaml"
    if [ "$SYNC" = 1 ]; then
        cat >> "$WORK/ike-a$n.yaml" <<EOF
ha:
  local: 10.99.0.$n:4510
  remote: 10.99.0.$((3 - n)):4510
  secret: "ferrogate HA sync secret for the test pair"
EOF
    fi
done
CONF_B=$WORK/swan-b
mkdir -p "$CONF_B"
swan_gen_swanctl --suite cbc --local "$OUT_B" --remote "$OUT_VIP" \
    --local-ts 192.168.20.0/24 --remote-ts 192.168.10.0/24 --psk "$PSK" \
    --local-id "$ID_B" --remote-id "$ID_A" --start none --mobike no > "$CONF_B/swanctl.conf"
swan_mkdir DIR_B charon-b
swan_start "$GB" b "$DIR_B"
swan_load b "$CONF_B/swanctl.conf" > /dev/null

declare -A FG_PID IKE_PID
start_gw() { # N
    local ns=ha$ID-a$1
    ip netns exec "$ns" "$FG" --config "$WORK/a$1.yaml" --control "$WORK/ctl-a$1" \
        --eal "--no-huge -m 128 --file-prefix fgha$1$ID --log-level=error" \
        --idle-sleep-us 100 --stats-file "$WORK/stats-a$1.json" --log info >> "$WORK/fg-a$1.log" 2>&1 &
    FG_PID[$1]=$!
    swan_track_pid "${FG_PID[$1]}"
    sleep 1
    ip netns exec "$ns" "$IKE" --config "$WORK/ike-a$1.yaml" --dataplane "$WORK/ctl-a$1" \
        --socket "$WORK/ike-a$1.sock" --log info >> "$WORK/events-a$1.jsonl" 2>> "$WORK/ike-a$1.log" &
    IKE_PID[$1]=$!
    swan_track_pid "${IKE_PID[$1]}"
}
kill_gw() { # N: a power cut (SIGKILL, to each only while it is still the process started)
    swan_stop_pid "${FG_PID[$1]}" KILL
    swan_stop_pid "${IKE_PID[$1]}" KILL
    rm -rf "/var/run/dpdk/fgha$1$ID"
}
states() { # N -> "master master" (outside, inside) from its stats file
    "$SWAN_PYTHON" -c "import json; s=json.load(open('$WORK/stats-a$1.json')); print(' '.join(r['state'] for r in s['vrrp']['routers']))" 2>/dev/null
}
wait_states() { # N WANT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(states "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    echo "a$1 VRRP states: $(states "$1"), wanted $2"
    return 1
}
ike_sas() { # N -> how many IKE SAs its ferrogate-ike holds (any state)
    "$FGCTL" --socket "$WORK/ike-a$1.sock" list-sas --json 2>/dev/null |
        "$SWAN_PYTHON" -c "import json,sys; print(len(json.load(sys.stdin)))"
}
swan_ike_count() { swan_list b | grep -c "ESTABLISHED" || true; }
# charon's IKE SAs: "SPI_i SPI_r" of each ESTABLISHED one (the same after a takeover with
# the sync: the peer never saw a new IKE SA).
swan_ike_spis() { swan_list b | grep -E "^gw: #[0-9]+, ESTABLISHED" | grep -oE "[0-9a-f]{16}_i\*? [0-9a-f]{16}_r\*?" | tr -d '*' || true; }
# same_ike_sa BEFORE WHAT: with the sync, charon must still hold the IKE SA it held before.
same_ike_sa() {
    [ "$SYNC" = 1 ] || return 0
    local now
    now=$(swan_ike_spis)
    echo "charon's IKE SA before $2: $1; after: $now"
    [ -n "$1" ] && [ "$now" = "$1" ] || { echo "charon's IKE SA changed over $2"; swan_list b; return 1; }
}
# A ping from hA to hB 50 times a second for SECS (each reply time-stamped); ping_gap gives
# the echoes answered and the longest time without a reply, in ms. And, for the sync check,
# UDP both ways at 500 datagrams a second (the synced pair carries traffic only until the new
# CHILD_SA is in, some tens of ms; ping slows down while echoes go unanswered, this does not).
# With DEMO, the monitor's line a second runs alongside (ping_end stops it).
PING_PID=
ping_start() { # SECS, file
    ip netns exec "$HA" ping -D -i 0.02 -c $(($1 * 50)) -W 1 192.168.20.5 > "$2" 2>&1 &
    PING_PID=$!
    swan_track_pid "$PING_PID"
    local pair
    for pair in "$HA:192.168.20.5" "$HB:192.168.10.5"; do
        ip netns exec "${pair%%:*}" "$SWAN_PYTHON" -c "
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + $1
while time.monotonic() < end:
    s.sendto(b'x' * 64, ('${pair#*:}', 9))
    time.sleep(0.002)
" > /dev/null 2>&1 &
        swan_track_pid $!
    done
    monitor "$2"
}
ping_gap() { # file -> "answered longest_gap_ms"
    "$SWAN_PYTHON" - "$1" <<'EOF'
import re, sys
t = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] .*icmp_seq=\d+ ttl", open(sys.argv[1]).read(), re.M)]
gap = max((b - a for a, b in zip(t, t[1:])), default=0.0)
print(len(t), int(gap * 1000))
EOF
}

# ping_end FILE WHAT SENT: waits for the ping (in this shell: it is our child), then sets
# GOT (echoes answered) and GAP (the longest time without a reply, ms) and says so.
GOT= GAP=
ping_end() {
    swan_wait_pid "$PING_PID" || true
    monitor_stop
    read -r GOT GAP < <(ping_gap "$1")
    echo "$2: $GOT of $3 echoes answered, longest time without a reply $GAP ms"
}
# DEMO: a line a second while a ping runs (gateway states, echoes answered so far).
MON_PID=
monitor() { # ping file
    [ -n "${DEMO:-}" ] || return 0
    (
        t0=$SECONDS
        while sleep 1; do
            line="[$((SECONDS - t0))s]"
            for n in 1 2; do
                if swan_pid_alive "${FG_PID[$n]}"; then
                    line+=" A$n: $(states "$n" | sed 's/ /\//')"
                else
                    line+=" A$n: down"
                fi
            done
            echo "$line | echoes answered: $(grep -c 'icmp_seq=' "$1" 2>/dev/null || echo 0)"
        done
    ) &
    MON_PID=$!
    swan_track_pid "$MON_PID"
}
monitor_stop() {
    [ -n "$MON_PID" ] || return 0
    swan_stop_pid "$MON_PID"
    MON_PID=
}
show_sas() {
    [ -n "${DEMO:-}" ] || return 0
    local n
    for n in 1 2; do
        swan_pid_alive "${IKE_PID[$n]}" || continue
        echo "== A$n: fgctl list-sas; fgctl ha"
        "$FGCTL" --socket "$WORK/ike-a$n.sock" list-sas || true
        "$FGCTL" --socket "$WORK/ike-a$n.sock" ha || true
    done
    echo "== strongSwan (site B): swanctl --list-sas"
    swan_list b | grep -E "ESTABLISHED|INSTALLED|remote" || true
}

start_gw 1
start_gw 2
step1() {
    wait_states 1 "master master" 10 || return 1
    wait_states 2 "backup backup" 2 || return 1
    swan_wait_established b 15 || return 1
    ip netns exec "$HA" ping -c 3 -i 0.2 -W 2 -q 192.168.20.5 > /dev/null || { echo "no ping through A1"; return 1; }
    local n
    n=$(ike_sas 2)
    [ "$n" = 0 ] || { echo "the backup's ferrogate-ike holds $n IKE SAs"; return 1; }
    n=$("$SWAN_PYTHON" -c "import json; print(json.load(open('$WORK/stats-a2.json'))['drops'].get('vrrp_backup', 0))")
    [ "$n" = 0 ] || { echo "the backup's ferrogate-ike tried to send $n IKE datagrams from the shared address"; return 1; }
    grep -q "VRRP: the data plane's virtual addresses" "$WORK/ike-a2.log" || { echo "a2's ferrogate-ike never heard of VRRP"; return 1; }
    "$FGCTL" --socket "$WORK/ike-a2.sock" ha
    if [ "$SYNC" = 1 ]; then
        # The sync flows before anything fails: A1 sends, A2 holds A1's pair.
        sleep 1
        "$FGCTL" --socket "$WORK/ike-a2.sock" ha --json > "$WORK/ha-a2.json"
        "$FGCTL" --socket "$WORK/ike-a1.sock" ha --json > "$WORK/ha-a1.json"
        "$SWAN_PYTHON" - "$WORK/ha-a1.json" "$WORK/ha-a2.json" <<'EOF' || return 1
import json, os, sys
a1, a2 = (json.load(open(f)) for f in sys.argv[1:3])
vips = ["192.168.10.1", os.environ["HA_VIP"]]
assert a1["held"] == vips and a1["standby"] == [], a1
assert a2["held"] == [] and a2["standby"] == vips, a2
assert a1["sync"]["sent"] > 0, a1
assert a2["sync"]["their_pairs"] == 1 and a2["sync"]["last_received_ms_ago"] < 2000, a2
assert a2["sync"]["their_ike_sas"] == 1, a2
assert a2["sync"]["sent"] == 0, "the backup sends no snapshot"
EOF
    fi
}
if [ "$SYNC" = 1 ] && [[ $ADVERT != *ms ]]; then
    STEPS=${STEPS:-123456}
else
    STEPS=${STEPS:-12345}
fi
check() { # name, then a command: skipped unless its step number is in STEPS
    local name=$1; shift
    [[ $STEPS == *"${1#step}"* ]] || { echo "SKIP $name"; return 0; }
    if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}
check "A1 master of both addresses, tunnel up with charon; A2 backup, silent" step1
show_sas

# ESP in UDP on B's outside port: which SPIs 203.0.113.1 and charon used when (the sync check).
ip netns exec "$GB" tcpdump -q -n -U -i gBo -w "$WORK/wire.pcap" "udp port 4500" 2>/dev/null &
swan_track_pid $!
step2() {
    local ike_before
    ike_before=$(swan_ike_spis)
    ping_start 20 "$WORK/ping-failover.txt"
    sleep 4
    [ -z "${DEMO:-}" ] || echo "== A1 loses power (SIGKILL of its ferrogate and ferrogate-ike)"
    local t0
    t0=$(date +%s%N)
    if [ "$BLOCK_IKE_S" != 0 ]; then
        ip netns exec "$GB" nft -f - <<EOF
table inet hatest {
    chain in { type filter hook input priority 0; udp dport 500 drop; udp dport 4500 @th,64,32 0 drop; }
}
EOF
        (sleep "$BLOCK_IKE_S"; ip netns exec "$GB" nft delete table inet hatest) &
        swan_track_pid $!
    fi
    kill_gw 1
    # A2's per-SA counters while the synced pair lives (it goes 5 s after the new one is in):
    # the most each (SPI, direction) reached.
    ip netns exec "$A2" "$SWAN_PYTHON" -c "
import json, time
most = {}
end = time.monotonic() + 14
while time.monotonic() < end:
    try:
        for e in json.load(open('$WORK/stats-a2.json'))['sas']:
            k = e['spi'] + ' ' + e['direction']
            most[k] = max(most.get(k, 0), e['packets'])
    except (OSError, ValueError, KeyError):
        pass
    time.sleep(0.25)
print('\n'.join(f'{k} {v}' for k, v in sorted(most.items())))
" > "$WORK/a2-sa-counts.txt" 2>&1 &
    local poll=$!
    swan_track_pid "$poll"
    wait_states 2 "master master" 8 || return 1
    echo "A2 master $((($(date +%s%N) - t0) / 1000000)) ms after A1 died, by its stats file (written every second)"
    ping_end "$WORK/ping-failover.txt" "failover" 1000
    local got=$GOT gap=$GAP
    # VRRP's Master_Down_Interval (3.61 advertisement intervals) and, without the sync, the
    # new IKE SA (~0.1 s; 2 s more if a message is lost).
    [ "$gap" -le "$MAX_OUTAGE_MS" ] || { echo "outage over $MAX_OUTAGE_MS ms"; return 1; }
    [ "$got" -ge 500 ] || return 1
    if [ "$SYNC" = 1 ]; then
        local line sin sout pin pout
        line=$(grep -m1 "HA: installing the other gateway's SA pair" "$WORK/ike-a2.log") || { echo "A2 installed no synced SA pair"; return 1; }
        sin=$(grep -oE 'spi_in=[0-9a-f]{8}' <<< "$line" | cut -d= -f2)
        sout=$(grep -oE 'spi_out=[0-9a-f]{8}' <<< "$line" | cut -d= -f2)
        swan_wait_pid "$poll" || true
        pin=$(awk -v k="$sin" '$1 == k && $2 == "in" {print $3}' "$WORK/a2-sa-counts.txt")
        pout=$(awk -v k="$sout" '$1 == k && $2 == "out" {print $3}' "$WORK/a2-sa-counts.txt")
        echo "A2's data plane on the synced pair: ${pin:-0} packets in ($sin), ${pout:-0} out ($sout)"
        [ "${pin:-0}" -gt 0 ] && [ "${pout:-0}" -gt 0 ] || { echo "the synced pair carried nothing through A2"; return 1; }
        "$SWAN_PYTHON" "$HERE/ha_wire.py" "$WORK/wire.pcap" \
            "$(ip netns exec "$A1" cat /sys/class/net/a1o/address)" \
            "$(ip netns exec "$A2" cat /sys/class/net/a2o/address)" ${VMAC:+$OUT_VMAC} || return 1
    fi
    [ "$(ike_sas 2)" = 1 ] || { echo "A2's ferrogate-ike holds $(ike_sas 2) IKE SAs"; return 1; }
    [ "$(swan_ike_count)" = 1 ] || { echo "charon holds $(swan_ike_count) IKE SAs:"; swan_list b; return 1; }
    if [ "$SYNC" = 0 ]; then
        grep -q '"event":"ike-up"' "$WORK/events-a2.jsonl" || return 1
        return 0
    fi
    # With the sync A2 carries A1's IKE SA on: charon keeps it, nobody negotiated a new one.
    grep -q '"event":"ike-synced"' "$WORK/events-a2.jsonl" || { echo "A2 did not carry A1's IKE SA on"; return 1; }
    ! grep -q '"event":"ike-up"' "$WORK/events-a2.jsonl" || { echo "A2 negotiated an IKE SA of its own"; return 1; }
    same_ike_sa "$ike_before" "the failover" || return 1
    # The carried-on IKE SA works both ways with charon: it rekeys the CHILD_SA and the IKE
    # SA itself (new SPIs, SK_d of the synced keys) through A2, and the tunnel still carries.
    swan_ctl b --rekey --child net > /dev/null || { echo "charon's CHILD_SA rekey through A2 failed"; return 1; }
    swan_ctl b --rekey --ike gw > /dev/null || { echo "charon's IKE SA rekey through A2 failed"; return 1; }
    local n after
    for n in 20 19 18 17 16 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0; do
        after=$(swan_ike_spis)
        [ -n "$after" ] && [ "$after" != "$ike_before" ] && [ "$(swan_ike_count)" = 1 ] && [ "$(ike_sas 2)" = 1 ] && break
        [ "$n" = 0 ] && { echo "after charon's rekeys: charon $(swan_ike_count) IKE SAs ($after), A2 $(ike_sas 2)"; swan_list b; return 1; }
        sleep 0.5
    done
    echo "charon rekeyed the IKE SA through A2: $ike_before -> $after"
    ip netns exec "$HA" ping -c 3 -i 0.2 -W 2 -q 192.168.20.5 > /dev/null || { echo "no ping through A2 after charon's rekeys"; return 1; }
}
check "A1 dies: A2 takes both addresses and carries A1's IKE SA on (the sync; SYNC=0: re-establishes with charon), ping resumes" step2
show_sas

step3() {
    : > "$WORK/fg-a1.log"
    [ -z "${DEMO:-}" ] || echo "== A1 comes back (priority 200 against A2's 100)"
    local ike_before
    ike_before=$(swan_ike_spis)
    start_gw 1
    ping_start 15 "$WORK/ping-preempt.txt"
    wait_states 1 "master master" 10 || return 1
    wait_states 2 "backup backup" 3 || return 1
    ping_end "$WORK/ping-preempt.txt" "preemption" 750
    local got=$GOT gap=$GAP
    [ "$gap" -le 3000 ] || { echo "outage over 3 s"; return 1; }
    sleep 1
    [ "$(ike_sas 2)" = 0 ] || { echo "A2's ferrogate-ike still holds $(ike_sas 2) IKE SAs"; return 1; }
    [ "$(ike_sas 1)" = 1 ] || { echo "A1's ferrogate-ike holds $(ike_sas 1) IKE SAs"; return 1; }
    [ "$(swan_ike_count)" = 1 ] || { echo "charon holds $(swan_ike_count) IKE SAs:"; swan_list b; return 1; }
    same_ike_sa "$ike_before" "the preemption" || return 1
    ip netns exec "$HA" ping -c 3 -i 0.2 -W 2 -q 192.168.20.5 > /dev/null || { echo "no ping through A1 again"; return 1; }
}
check "A1 back (priority 200): it preempts A2, whose ferrogate-ike stands down; ping resumes" step3
show_sas

step4() {
    ip -n "$SW" link set sa2i nomaster
    sleep 6
    local st
    st=$(states 2)
    ip -n "$SW" link set sa2i master brin
    echo "A2 with its inside link cut for 6 s: $st (outside/inside); A1: $(states 1)"
    [ "$st" = "backup backup" ] || { echo "A2 took an address A1 holds"; return 1; }
    [ "$(states 1)" = "master master" ]
}
check "A2's inside link cut: the sync group keeps it backup on both links (no split)" step4

link_of() { # N PORT -> "up" or "down", as gateway N's stats file says
    "$SWAN_PYTHON" -c "import json; print(next(p['link'] for p in json.load(open('$WORK/stats-a$1.json'))['ports'] if p['name'] == '$2'))" 2>/dev/null
}
step5() {
    wait_states 1 "master master" 5 || return 1
    local ike_before
    ike_before=$(swan_ike_spis)
    ping_start 12 "$WORK/ping-link.txt"
    sleep 3
    [ -z "${DEMO:-}" ] || echo "== A1's inside link fails (no carrier)"
    local t0
    t0=$(date +%s%N)
    ip -n "$SW" link set sa1i down
    wait_states 1 "fault fault" 3 || { ip -n "$SW" link set sa1i up; return 1; }
    wait_states 2 "master master" 6 || { ip -n "$SW" link set sa1i up; return 1; }
    echo "A1 in fault and A2 master $((($(date +%s%N) - t0) / 1000000)) ms after the link failed, by the stats files (written every second)"
    ping_end "$WORK/ping-link.txt" "link failure" 600
    local got=$GOT gap=$GAP
    local down
    down=$(link_of 1 inside)
    ip -n "$SW" link set sa1i up
    [ "$down" = down ] || { echo "A1's stats say its inside link is '$down'"; return 1; }
    [ "$gap" -le "$LINK_OUTAGE_MS" ] || { echo "outage over $LINK_OUTAGE_MS ms"; return 1; }
    [ "$got" -ge 400 ] || { echo "too few echoes answered"; return 1; }
    # The link is back: a backup for a Master_Down_Interval (too short to see in the stats
    # file with 100 ms adverts), then A1 preempts.
    [ -z "${DEMO:-}" ] || echo "== A1's inside link is back"
    wait_states 1 "master master" 12 || return 1
    wait_states 2 "backup backup" 3 || return 1
    [ "$(link_of 1 inside)" = up ] || { echo "A1's stats still say its inside link is down"; return 1; }
    local n
    for n in 20 19 18 17 16 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0; do
        [ "$(ike_sas 1)$(ike_sas 2)$(swan_ike_count)" = 101 ] && break
        [ "$n" = 0 ] && { echo "IKE SAs: A1 $(ike_sas 1), A2 $(ike_sas 2), charon $(swan_ike_count)"; return 1; }
        sleep 0.5
    done
    same_ike_sa "$ike_before" "the link failure and the preemption" || return 1
    ip netns exec "$HA" ping -c 3 -i 0.2 -W 2 -q 192.168.20.5 > /dev/null || { echo "no ping through A1 again"; return 1; }
}
check "A1's inside link fails: it goes to fault with its group, A2 takes over at once; A1 preempts when it is back" step5
show_sas

# router_stat N KEY -> KEY of each of gateway N's routers (outside, inside), from its stats file
router_stat() {
    "$SWAN_PYTHON" -c "import json; s=json.load(open('$WORK/stats-a$1.json')); print(' '.join(str(r.get('$2', 0)) for r in s['vrrp']['routers']))" 2>/dev/null
}
# The bridges drop VRRP between the gateways (both links), in the switch's namespace (which
# goes on exit, failure or not).
vrrp_block() {
    ip netns exec "$SW" nft -f - <<EOF
table bridge hasplit {
    chain filt { type filter hook forward priority 0; ether type ip ip protocol 112 drop; ether type ip6 ip6 nexthdr 112 drop; }
}
EOF
}
vrrp_unblock() { ip netns exec "$SW" nft delete table bridge hasplit 2> /dev/null || true; }
step6() {
    wait_states 1 "master master" 15 || return 1
    wait_states 2 "backup backup" 3 || return 1
    local ike_before took_before heard_before sync_before
    ike_before=$(swan_ike_spis)
    sleep 1.2
    took_before=$(router_stat 2 became_master)
    sync_before=$(router_stat 2 adverts_via_sync)
    [ -z "${DEMO:-}" ] || echo "== the bridges drop VRRP between A1 and A2 (the sync link works)"
    vrrp_block || { echo "nft could not make the bridge filter"; return 1; }
    sleep 1.2
    heard_before=$(router_stat 2 adverts_in)
    ping_start 14 "$WORK/ping-split.txt"
    local i st bad=
    for ((i = 0; i < 60; i++)); do
        st=$(states 2)
        [ "$st" = "backup backup" ] || bad="A2 $st at $((i / 5)) s"
        [ "$(states 1)" = "master master" ] || bad="A1 $(states 1) at $((i / 5)) s"
        sleep 0.2
    done
    local heard took via
    heard=$(router_stat 2 adverts_in)
    took=$(router_stat 2 became_master)
    via=$(router_stat 2 adverts_via_sync)
    echo "A2 with VRRP dropped for ~13 s: adverts heard $heard_before -> $heard, through the sync $sync_before -> $via, took over $took_before -> $took (outside inside)"
    grep "split brain" "$WORK/fg-a1.log" "$WORK/fg-a2.log" || true
    ping_end "$WORK/ping-split.txt" "split link" 700
    vrrp_unblock
    local got=$GOT gap=$GAP
    [ -z "$bad" ] || { echo "two masters: $bad"; return 1; }
    [ "$heard" = "$heard_before" ] || { echo "A2 still heard VRRP on the wire: the filter did not hold"; return 1; }
    [ "$took" = "$took_before" ] || { echo "A2 became master meanwhile"; return 1; }
    local v_out v_in s_out s_in
    read -r v_out v_in <<< "$via"
    read -r s_out s_in <<< "$sync_before"
    [ "$v_out" -gt "$s_out" ] && [ "$v_in" -gt "$s_in" ] || { echo "A2 took no advertisement through the sync"; return 1; }
    [ "$gap" -le 1000 ] && [ "$got" -ge 600 ] || { echo "the ping suffered"; return 1; }
    [ "$(ike_sas 2)" = 0 ] || { echo "A2's ferrogate-ike holds $(ike_sas 2) IKE SAs"; return 1; }
    [ "$(ike_sas 1)" = 1 ] || { echo "A1's ferrogate-ike holds $(ike_sas 1) IKE SAs"; return 1; }
    [ "$(swan_ike_count)" = 1 ] || { echo "charon holds $(swan_ike_count) IKE SAs:"; swan_list b; return 1; }
    same_ike_sa "$ike_before" "the lost VRRP advertisements" || return 1
    # VRRP gets through again: the wire decides as before.
    sleep 3
    [ "$(router_stat 2 adverts_in)" != "$heard" ] || { echo "A2 hears no VRRP again"; return 1; }
    [ "$(states 1)" = "master master" ] && [ "$(states 2)" = "backup backup" ] || { echo "after: A1 $(states 1), A2 $(states 2)"; return 1; }
    ip netns exec "$HA" ping -c 3 -i 0.2 -W 2 -q 192.168.20.5 > /dev/null || { echo "no ping through A1 after"; return 1; }
    # The IKE SA still works with charon through A1: a CHILD_SA rekey.
    swan_ctl b --rekey --child net > /dev/null || { echo "charon's CHILD_SA rekey through A1 failed"; return 1; }
    [ "$(swan_ike_count)" = 1 ] || { echo "charon holds $(swan_ike_count) IKE SAs after the rekey"; return 1; }
}
check "VRRP lost between A1 and A2, the sync link up: A2 stays backup (A1's masters through the sync), one IKE SA, ping flows" step6
vrrp_unblock
show_sas

if [ "$failed" -ne 0 ]; then
    for n in 1 2; do
        echo "== a$n ferrogate log (tail)"; tail -15 "$WORK/fg-a$n.log"
        echo "== a$n ferrogate-ike log (tail)"; tail -15 "$WORK/ike-a$n.log"
    done
    echo "== charon log (tail)"; tail -30 "$(swan_dir b)/charon.log"
fi
echo "ha_vs_swan: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
