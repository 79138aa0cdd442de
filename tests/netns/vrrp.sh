#!/usr/bin/env bash
# ferrogate's VRRP (RFC 5798 version 3) against keepalived, on one Ethernet segment:
#
#   [F: ferrogate, 203.0.113.3] --+
#   [K: keepalived, 203.0.113.4] -+-- bridge (namespace S) --+-- [H: host, 203.0.113.9]
#
# Both hold the virtual address 203.0.113.1 in virtual router 51 (1 s advertisements). H asks
# who has 203.0.113.1 (arping) and pings it; the answer tells which router holds it. Each
# check is a claim about the other implementation as much as ours:
#   1. ferrogate (priority 200) becomes master; keepalived (100), started next, stays backup:
#      it accepts our advertisements (version, checksum with the pseudo-header, TTL, address
#      list, interval). Only ferrogate answers ARP for the address, and echo.
#   2. ferrogate stopped with SIGTERM says priority 0: keepalived takes over within its skew
#      (~0.6 s), not after three intervals.
#   3. ferrogate started again (priority 200, preempt): it hears keepalived (100) as master,
#      ignores it as lower, takes over after Master_Down_Interval; keepalived yields to its
#      advertisements.
#   4. ferrogate killed (SIGKILL, no last word): keepalived takes over after ~3.6 s.
#   5. ferrogate at priority 50 stays backup under keepalived's advertisements (it reads them:
#      counted, none refused) and does not answer ARP for the address.
#   6. keepalived stopped (it sends priority 0): ferrogate (50) takes over within its skew
#      (~0.8 s) and answers ARP and echo.
#   7. Link tracking: ferrogate (200, master over keepalived) tracks a second port, `wan`. Its
#      link fails (the far end of its veth goes down, taking the carrier): ferrogate goes to
#      fault and says priority 0, and keepalived takes over within its skew. The link comes
#      back: ferrogate waits a Master_Down_Interval as a backup, then preempts.
#   7b. `link_delay` on the tracked port: a short flap is ridden out, a lasting loss and the
#      return are held back by their delays.
#   7c. The control plane (`track_ike`, the default with --control; needs FERROGATE_IKE):
#      ferrogate (200) with a ferrogate-ike attached is master over keepalived (100).
#      ferrogate-ike killed: 3 s later ferrogate advertises priority 1, keepalived (which
#      preempts) takes over after its Master_Down_Interval, ferrogate yields; ferrogate-ike
#      back: priority 200 again, ferrogate preempts.
#   8. The virtual MAC (`vmac: true`, RFC 5798 §7.3), between two ferrogates (keepalived's
#      use_vmac needs macvlan, which this kernel may lack): F (200) and a second one, G (100,
#      203.0.113.5). H pins 203.0.113.1 to 00:00:5e:00:01:33 (a permanent neighbour entry: it
#      never asks again, like a router that ignores gratuitous ARP). tcpdump must see F's
#      advertisements come from that MAC, ARP answers must carry it, and the bridge must
#      have learnt it on F's port. F is killed: G takes over and H's pings reach it with
#      the same entry (the bridge learnt the MAC on G's port from G's first frames). F
#      back: it preempts, and the MAC moves back.
# Takeover times are measured from the stop to H's first ARP answer from the new master.
#
#   vrrp.sh FERROGATE [FERROGATE_IKE]   (needs keepalived and arping; tests/run.sh installs
#                                them); without FERROGATE_IKE check 7c is skipped
#   KEEP=1 vrrp.sh ...           keep the work directory (logs, stats) and say where
#
# Cleans up its namespaces, processes (by PID) and EAL runtime directory on any exit.
set -euo pipefail
FG=$1
IKE=${2:-}
ID=$$
NS=(fgv$ID-S fgv$ID-F fgv$ID-K fgv$ID-H fgv$ID-G)
S=${NS[0]} F=${NS[1]} K=${NS[2]} H=${NS[3]} G=${NS[4]}
WORK=
# shellcheck source=vrrp_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/vrrp_lib.sh"
FG_PID=
# The trap comes first, before anything it undoes is made, and copes with what is not made yet.
# Processes (ferrogates, keepalived) by PID and start time: SIGTERM, SIGKILL after 5 s
# (vrrp_cleanup).
cleanup() {
    set +e
    vrrp_cleanup "${NS[@]}"
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "/var/run/dpdk/fgv$ID" "/var/run/dpdk/fgw$ID"
    if [ -z "$WORK" ]; then :; elif [ -n "${KEEP:-}" ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fg-vrrp.XXXXXX")
command -v keepalived > /dev/null || { echo "FAIL keepalived is not installed"; exit 1; }
command -v arping > /dev/null || { echo "FAIL arping is not installed"; exit 1; }

VIP=203.0.113.1
for n in "${NS[@]}"; do ip netns add "$n"; done
ip -n "$S" link add br0 type bridge mcast_snooping 0
ip -n "$S" link set br0 up
# ferrogate's second port (check 7): a veth whose far end sits in S, on no bridge.
ip link add fw0 netns "$F" type veth peer name s-fw0 netns "$S"
ip -n "$S" link set s-fw0 up
for pair in "$F:fv0" "$K:kv0" "$H:hv0" "$G:gv0"; do
    IFS=: read -r n dev <<< "$pair"
    ip link add "$dev" netns "$n" type veth peer name "s-$dev" netns "$S"
    ip -n "$S" link set "s-$dev" master br0 up
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$n" link set "$dev" up
    ip -n "$n" link set lo up
done
ip -n "$K" addr add 203.0.113.4/24 dev kv0
ip -n "$H" addr add 203.0.113.9/24 dev hv0
MAC_F=$(ip netns exec "$F" cat /sys/class/net/fv0/address)
MAC_K=$(ip netns exec "$K" cat /sys/class/net/kv0/address)
echo "ferrogate $MAC_F, keepalived $MAC_K"

fg_conf() { # priority [device address] (TRACK=1: a second port, wan, which the router
            # tracks; VMAC=1: the virtual MAC)
    local wan="" track="" dev=${2:-net_af_packet0,iface=fv0} addr=${3:-203.0.113.3}
    [ -n "${VMAC:-}" ] && track=", vmac: true"
    if [ -n "${TRACK:-}" ]; then
        ip -n "$F" link set fw0 up
        wan="  - { name: wan, device: \"net_af_packet1,iface=fw0\", role: inside, addresses: [10.77.0.1/24]${LINK_DELAY:+, link_delay: $LINK_DELAY} }"
        track="$track, track: [wan]"
    fi
    cat <<EOY
interfaces:
  - { name: lan, device: "$dev", role: outside, addresses: [$addr/24] }
$wan
cores: { main: 0, workers: [] }
vrrp:
  - { interface: lan, vrid: 51, priority: $1, advert_interval: 1s, vips: [$VIP]$track }
EOY
}
start_fg() { # priority
    fg_conf "$1" > "$WORK/fg.yaml"
    run_fg "$F" "fgv$ID" fg "$WORK/stats.json"
    FG_PID=$RUN_PID
}
start_fg2() { # priority: the second ferrogate, in G
    fg_conf "$1" net_af_packet0,iface=gv0 203.0.113.5 > "$WORK/fg2.yaml"
    # (It runs until the end: run_fg tracked it for the cleanup.)
    run_fg "$G" "fgw$ID" fg2 "$WORK/stats2.json"
}
stop_fg() { # signal
    halt_fg "$1" "$FG_PID" "fgv$ID" || return 1
    FG_PID=
}
cat > "$WORK/ka.conf" <<EOF
global_defs {
  vrrp_version 3
  router_id fgv-keepalived
}
vrrp_instance VI_51 {
  state BACKUP
  interface kv0
  virtual_router_id 51
  priority 100
  advert_int 1
  virtual_ipaddress {
    $VIP/24
  }
}
EOF

# The MAC that answers ARP for the virtual address now (empty: nobody within 0.4 s).
who_answers() {
    ip netns exec "$H" timeout 0.4 arping -c 1 -I hv0 "$VIP" 2>/dev/null |
        grep -oiE '\[([0-9a-f]{2}:){5}[0-9a-f]{2}\]' | tr -d '[]' | tr 'A-F' 'a-f' | head -1
}
# Every MAC that answers three requests (a split brain shows two).
all_answers() {
    ip netns exec "$H" arping -c 3 -w 3 -I hv0 "$VIP" 2>/dev/null |
        grep -oiE '\[([0-9a-f]{2}:){5}[0-9a-f]{2}\]' | tr -d '[]' | tr 'A-F' 'a-f' | sort -u | paste -sd' '
}
wait_answer() { # MAC, seconds: polls until that MAC answers; prints the time taken (ms)
    local t0 i
    t0=$(now_ms)
    for ((i = 0; i < $2 * 4; i++)); do
        if [ "$(who_answers)" = "$1" ]; then echo $(($(now_ms) - t0)); return 0; fi
        sleep 0.05
    done
    return 1
}
# takeover STOP_COMMAND NEW_MAC WAIT_S WHAT: runs the stop, then prints (as TAKEOVER_MS) how long
# until NEW_MAC answers ARP for the virtual address.
TAKEOVER_MS=
takeover() {
    local t0
    t0=$(now_ms)
    $1
    wait_answer "$2" "$3" > /dev/null || { echo "$4 never took over"; return 1; }
    TAKEOVER_MS=$(($(now_ms) - t0))
}
ka_has_vip() { ip -n "$K" addr show dev kv0 | grep -q "inet $VIP/"; }
stat2() { # the same over the second ferrogate's stats
    python3 -c "import json,sys; s=json.load(open('$WORK/stats2.json')); print($1)"
}
ping_vip() { ip netns exec "$H" ping -c 2 -i 0.2 -W 1 -q "$VIP" > /dev/null; }

# 1. ferrogate first, then keepalived as a backup.
start_fg 200
t_start=$(now_ms)
step1() {
    local ms
    ms=$(wait_answer "$MAC_F" 8) || { echo "ferrogate never answered for $VIP"; return 1; }
    echo "ferrogate master ${ms} ms after start (Master_Down_Interval at priority 200: 3.22 s)"
    [ $(($(now_ms) - t_start)) -ge 3000 ] || { echo "master before three intervals of silence"; return 1; }
    start_ka
    sleep 5
    wait_state master 2 || { echo "ferrogate's stats do not say master"; return 1; }
    ka_has_vip && { echo "keepalived holds $VIP too"; return 1; }
    [ "$(ka_said 'Entering MASTER STATE')" -eq 0 ] || { echo "keepalived went master:"; cat "$WORK/ka.log"; return 1; }
    [ "$(ka_said 'Entering BACKUP STATE')" -ge 1 ] || { echo "keepalived never said backup"; return 1; }
    grep -iE "mismatch|invalid|bad|wrong" "$WORK/ka.log" && { echo "keepalived complained about our advertisements"; return 1; }
    local who
    who=$(all_answers)
    [ "$who" = "$MAC_F" ] || { echo "ARP for $VIP answered by: $who"; return 1; }
    ping_vip || { echo "no echo from $VIP"; return 1; }
}
check "ferrogate (200) master, keepalived (100) accepts its advertisements and stays backup" step1

step2() {
    takeover "stop_fg TERM" "$MAC_K" 6 keepalived || return 1
    echo "keepalived answers for $VIP ${TAKEOVER_MS} ms after ferrogate's SIGTERM (skew at priority 100: 0.61 s)"
    [ "$TAKEOVER_MS" -lt 2500 ] || { echo "takeover took three intervals: no priority-0 advertisement heard"; return 1; }
    grep -q "VRRP state.*state=\"*init" "$WORK/fg.log" || grep -q "state=init" "$WORK/fg.log" || { echo "ferrogate did not stop its router"; return 1; }
}
check "ferrogate stopped (SIGTERM) sends priority 0: keepalived takes over within its skew" step2

step3() {
    local ms
    start_fg 200
    ms=$(wait_answer "$MAC_F" 10) || { echo "ferrogate did not preempt keepalived"; return 1; }
    echo "ferrogate (200) preempts keepalived (100) ${ms} ms after its start"
    sleep 2
    ka_has_vip && { echo "keepalived kept $VIP"; return 1; }
    local who
    who=$(all_answers)
    [ "$who" = "$MAC_F" ] || { echo "ARP for $VIP answered by: $who"; return 1; }
    [ "$(stat "s['vrrp']['routers'][0]['adverts_in']")" -ge 1 ] || { echo "ferrogate heard no advertisement from keepalived"; return 1; }
}
check "ferrogate (200) restarted preempts keepalived (100), which yields" step3

step4() {
    takeover "stop_fg KILL" "$MAC_K" 8 keepalived || return 1
    echo "keepalived answers for $VIP ${TAKEOVER_MS} ms after ferrogate's SIGKILL (Master_Down_Interval: 3.61 s)"
    [ "$TAKEOVER_MS" -ge 2500 ] || { echo "keepalived took over before three intervals passed"; return 1; }
}
check "ferrogate killed: keepalived takes over after Master_Down_Interval" step4

step5() {
    start_fg 50
    sleep 6
    wait_state backup 2 || { echo "ferrogate (50) is not backup: $(stat "s['vrrp']")"; return 1; }
    local who n refused
    who=$(all_answers)
    [ "$who" = "$MAC_K" ] || { echo "ARP for $VIP answered by: $who"; return 1; }
    n=$(stat "s['vrrp']['routers'][0]['adverts_in']")
    refused=$(stat "sum(s['vrrp']['refused'].values())")
    echo "ferrogate (50) backup: $n advertisements from keepalived read, $refused refused"
    [ "$n" -ge 4 ] && [ "$refused" -eq 0 ] || return 1
    [ "$(stat "s['vrrp']['routers'][0]['master']")" = 203.0.113.4 ] || { echo "master not known as keepalived"; return 1; }
}
check "ferrogate (50) stays backup under keepalived (100) and leaves ARP to it" step5

step6() {
    takeover stop_ka "$MAC_F" 6 ferrogate || return 1
    echo "ferrogate answers for $VIP ${TAKEOVER_MS} ms after keepalived's SIGTERM (skew at priority 50: 0.80 s)"
    [ "$TAKEOVER_MS" -lt 2500 ] || { echo "took three intervals: keepalived's priority 0 not heard"; return 1; }
    sleep 1.2
    [ "$(stat "s['vrrp']['routers'][0]['priority_zero_in']")" -ge 1 ] || { echo "no priority 0 counted"; return 1; }
    ping_vip || { echo "no echo from $VIP"; return 1; }
}
check "keepalived stopped (priority 0): ferrogate (50) takes over within its skew" step6

wan_down() { ip -n "$S" link set s-fw0 down; }
# wan_back SECONDS: the tracked link comes back; BACK_MS is the time until ferrogate answers
# ARP for the address again (it preempts).
BACK_MS=
wan_back() {
    local t0
    t0=$(now_ms)
    ip -n "$S" link set s-fw0 up
    wait_answer "$MAC_F" "$1" > /dev/null || { echo "ferrogate did not preempt after its link came back"; return 1; }
    BACK_MS=$(($(now_ms) - t0))
}
step7() {
    stop_fg TERM
    start_ka
    TRACK=1 start_fg 200
    wait_answer "$MAC_F" 10 > /dev/null || { echo "ferrogate (200, tracking wan) did not take over"; return 1; }
    sleep 1.5
    [ "$(stat "[p['link'] for p in s['ports']]")" = "['up', 'up']" ] || { echo "links: $(stat "s['ports']")"; return 1; }
    takeover wan_down "$MAC_K" 6 keepalived || return 1
    echo "keepalived answers for $VIP ${TAKEOVER_MS} ms after ferrogate's tracked link failed (skew at priority 100: 0.61 s)"
    [ "$TAKEOVER_MS" -lt 2500 ] || { echo "took three intervals: no priority 0 on the fault"; return 1; }
    wait_state fault 2 || { echo "ferrogate's stats do not say fault: $(stat "s['vrrp']['routers'][0]")"; return 1; }
    [ "$(stat "[p['link'] for p in s['ports']]")" = "['up', 'down']" ] || { echo "links: $(stat "s['ports']")"; return 1; }
    [ "$(stat "s['vrrp']['routers'][0]['faults']")" = 1 ] || { echo "faults counted: $(stat "s['vrrp']['routers'][0]['faults']")"; return 1; }
    local who
    who=$(all_answers)
    [ "$who" = "$MAC_K" ] || { echo "ARP for $VIP answered by: $who"; return 1; }
    # Back up: a backup first, master after a Master_Down_Interval (3.22 s at 200).
    wan_back 10 || return 1
    echo "ferrogate answers again ${BACK_MS} ms after its link came back (Master_Down_Interval: 3.22 s)"
    [ "$BACK_MS" -ge 2500 ] || { echo "master again before a Master_Down_Interval"; return 1; }
    sleep 1.5
    ka_has_vip && { echo "keepalived kept $VIP"; return 1; }
    wait_state master 2
}
check "ferrogate's tracked link fails: fault, priority 0, keepalived takes over; back: ferrogate preempts" step7

# 7b. The tracked link with `link_delay: { down: 1s, up: 2s }`: a 0.4 s flap is ridden out
# (no fault, keepalived never master); a loss that lasts faults after 1 s; the link back, the
# fault holds 2 s more before the Master_Down_Interval as a backup.
step7b() {
    stop_fg TERM
    rm -f "$WORK/stats.json"
    TRACK=1 LINK_DELAY="{ down: 1s, up: 2s }" start_fg 200
    wait_answer "$MAC_F" 10 > /dev/null || { echo "ferrogate (200, tracking wan) did not take over"; return 1; }
    sleep 1.5
    local masters t0 ms
    masters=$(ka_said 'Entering MASTER STATE')
    ip -n "$S" link set s-fw0 down; sleep 0.4; ip -n "$S" link set s-fw0 up
    sleep 2.5
    [ "$(ka_said 'Entering MASTER STATE')" = "$masters" ] || { echo "keepalived took over on a 0.4 s flap"; return 1; }
    [ "$(stat "s['vrrp']['routers'][0]['faults']")" = 0 ] || { echo "the flap faulted: $(stat "s['vrrp']['routers'][0]")"; return 1; }
    [ "$(stat "s['ports'][1]['link_changes']")" -ge 2 ] || { echo "the flap was not seen: $(stat "s['ports']")"; return 1; }
    echo "a 0.4 s flap of the tracked link: seen ($(stat "s['ports'][1]['link_changes']") changes), ridden out"
    t0=$(now_ms)
    wan_down
    wait_answer "$MAC_K" 6 > /dev/null || { echo "keepalived did not take over"; return 1; }
    ms=$(($(now_ms) - t0))
    echo "keepalived answers ${ms} ms after the tracked link failed (link_delay down 1 s, then the skew: 1.61 s)"
    [ "$ms" -ge 1000 ] && [ "$ms" -lt 3000 ] || return 1
    wan_back 12 || return 1
    echo "ferrogate answers again ${BACK_MS} ms after its link came back (link_delay up 2 s, then Master_Down_Interval 3.22 s)"
    [ "$BACK_MS" -ge 5000 ] || { echo "master again before the up delay and a Master_Down_Interval"; return 1; }
}
check "link_delay: a short flap of the tracked link is ridden out; a lasting loss faults after the down delay" step7b

# 7c. The control plane tracked (see the top).
IKE_PID=
start_ike() {
    ip netns exec "$F" "$IKE" --config "$WORK/ike.yaml" --dataplane "$WORK/ctl" \
        --socket "$WORK/ike.sock" --log info >> "$WORK/ike.log" 2>&1 &
    IKE_PID=$!
    track_pid "$IKE_PID"
}
step7c() {
    local t0 ms prio
    stop_fg TERM
    rm -f "$WORK/stats.json"
    printf 'tunnels: []\n' > "$WORK/ike.yaml"
    FG_CONTROL="$WORK/ctl" start_fg 200
    sleep 1
    start_ike
    wait_answer "$MAC_F" 10 > /dev/null || { echo "ferrogate (200) did not take over"; return 1; }
    sleep 2
    prio=$(stat "s['vrrp']['routers'][0]['priority']")
    [ "$prio" = 200 ] || { echo "priority $prio with ferrogate-ike attached"; return 1; }
    t0=$(now_ms)
    stop_pid "$IKE_PID" KILL
    wait_answer "$MAC_K" 12 > /dev/null || { echo "keepalived did not take over from a ferrogate without its control plane"; return 1; }
    ms=$(($(now_ms) - t0))
    echo "keepalived answers for $VIP ${ms} ms after ferrogate-ike was killed (3 s unheard, then keepalived's Master_Down_Interval 3.61 s)"
    [ "$ms" -ge 3000 ] && [ "$ms" -lt 9500 ] || return 1
    wait_state backup 3 || { echo "ferrogate's stats do not say backup: $(stat "s['vrrp']['routers'][0]")"; return 1; }
    prio=$(stat "s['vrrp']['routers'][0]['priority']")
    [ "$prio" = 1 ] || { echo "priority $prio without ferrogate-ike"; return 1; }
    grep -q "control plane (ferrogate-ike) silent" "$WORK/fg.log" || { echo "not logged"; return 1; }
    # Back: priority 200, and ferrogate preempts after its Master_Down_Interval (3.22 s).
    t0=$(now_ms)
    start_ike
    wait_answer "$MAC_F" 12 > /dev/null || { echo "ferrogate did not preempt with its control plane back"; return 1; }
    echo "ferrogate answers again $(($(now_ms) - t0)) ms after ferrogate-ike was started again"
    wait_state master 3 || return 1
    prio=$(stat "s['vrrp']['routers'][0]['priority']")
    [ "$prio" = 200 ] || { echo "priority $prio with ferrogate-ike back"; return 1; }
}
if [ -n "$IKE" ]; then
    check "ferrogate-ike killed: ferrogate's priority drops to 1, keepalived takes over; back: ferrogate preempts" step7c
else
    echo "SKIP 7c: no ferrogate-ike given"
fi

VMAC_ADDR=00:00:5e:00:01:33
fdb_port() { # the bridge port that has learnt the virtual MAC
    ip netns exec "$S" bridge fdb show br br0 | awk -v m="$VMAC_ADDR" '$1 == m && $0 !~ /permanent/ {print $3; exit}'
}
ping_once() { ip netns exec "$H" ping -c 1 -W 0.3 -q "$VIP" > /dev/null 2>&1; }
step8() {
    stop_fg TERM
    stop_ka || true
    sleep 1
    rm -f "$WORK/stats.json"
    VMAC=1 start_fg 200
    VMAC=1 start_fg2 100
    ip -n "$H" neigh replace "$VIP" lladdr "$VMAC_ADDR" nud permanent dev hv0
    wait_state master 10 || { echo "F did not become master"; return 1; }
    wait_state backup 5 stat2 || { echo "G is not backup: $(stat2 "s['vrrp']")"; return 1; }
    [ "$(stat "s['vrrp']['routers'][0]['vmac']")" = "$VMAC_ADDR" ] || { echo "stats: $(stat "s['vrrp']")"; return 1; }
    local seen
    seen=$(ip netns exec "$H" timeout 4 tcpdump -e -nn -c 1 -i hv0 \
        "ether src $VMAC_ADDR and ip proto 112 and src host 203.0.113.3" 2>/dev/null || true)
    echo "advertisement seen by tcpdump: ${seen:0:110}"
    [ -n "$seen" ] || { echo "no advertisement from F with source MAC $VMAC_ADDR"; return 1; }
    local who
    who=$(all_answers)
    [ "$who" = "$VMAC_ADDR" ] || { echo "ARP for $VIP answered by: $who"; return 1; }
    ping_vip || { echo "no echo from $VIP"; return 1; }
    [ "$(fdb_port)" = s-fv0 ] || { echo "bridge has $VMAC_ADDR on '$(fdb_port)', not F's port"; return 1; }
    [ "$(stat2 "s['vrrp']['routers'][0]['adverts_in']")" -ge 1 ] || { echo "G heard no advertisement"; return 1; }
    # F dies. H keeps its entry; the echo must reach G once G is master.
    local t0 ms i
    t0=$(now_ms)
    stop_fg KILL
    for ((i = 0; i < 40; i++)); do ping_once && break; sleep 0.05; done
    ms=$(($(now_ms) - t0))
    ping_once || { echo "H's pings (pinned to $VMAC_ADDR) never reached G"; return 1; }
    echo "H's pings to $VIP (neighbour entry pinned to $VMAC_ADDR) answered again ${ms} ms after F's SIGKILL (Master_Down_Interval at 100: 3.61 s)"
    wait_state master 2 stat2 || { echo "G is not master: $(stat2 "s['vrrp']")"; return 1; }
    [ "$(fdb_port)" = s-gv0 ] || { echo "bridge has $VMAC_ADDR on '$(fdb_port)', not G's port"; return 1; }
    [ "$(ip -n "$H" neigh show "$VIP" dev hv0 | awk '{print $3}')" = "$VMAC_ADDR" ] || { echo "H's entry changed"; return 1; }
    # F back: a Master_Down_Interval as backup, then it preempts; the MAC moves back.
    rm -f "$WORK/stats.json"
    VMAC=1 start_fg 200
    wait_state master 10 || { echo "F did not preempt G"; return 1; }
    wait_state backup 3 stat2 || { echo "G did not yield: $(stat2 "s['vrrp']")"; return 1; }
    for ((i = 0; i < 20; i++)); do [ "$(fdb_port)" = s-fv0 ] && break; sleep 0.1; done
    [ "$(fdb_port)" = s-fv0 ] || { echo "bridge has $VMAC_ADDR on '$(fdb_port)' after the preemption"; return 1; }
    ping_vip || { echo "no echo from $VIP after the preemption"; return 1; }
}
check "virtual MAC: advertisements and ARP from 00:00:5e:00:01:33; a host pinned to it follows F -> G -> F" step8

if [ "$failed" -ne 0 ]; then
    echo "== ferrogate log"; tail -30 "$WORK/fg.log"
    echo "== keepalived log"; tail -30 "$WORK/ka.log"
    [ -f "$WORK/fg2.log" ] && { echo "== second ferrogate log"; tail -30 "$WORK/fg2.log"; }
fi
echo "vrrp: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
