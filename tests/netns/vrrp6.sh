#!/usr/bin/env bash
# ferrogate's VRRP over IPv6 (RFC 5798 version 3) against keepalived, on one Ethernet segment:
#
#   [F: ferrogate, 2001:db8:113::3] --+
#   [K: keepalived, 2001:db8:113::4] -+-- bridge (namespace S) --+-- [H: host, 2001:db8:113::9]
#
# Both hold the virtual address 2001:db8:113::1 in virtual router 61 (1 s advertisements, sent
# to ff02::12 from each router's link-local address). H asks who has it with ndisc6 (a neighbor
# solicitation; the advertisement's link-layer address tells which router holds it). F's
# kernel has IPv6 off on its port: ferrogate alone speaks there. Checks:
#   1. ferrogate (200) becomes master; keepalived (100), started next, stays backup: it accepts
#      our advertisements (tcpdump must see them come from our EUI-64 link-local address to
#      ff02::12 with hop limit 255). Only ferrogate answers solicitations for the address, and
#      H's ping -6 of it (and of ferrogate's own address) is answered.
#   2. ferrogate stopped with SIGTERM says priority 0: keepalived takes over within its skew.
#   3. ferrogate started again preempts. H held the address at keepalived's MAC (it reached
#      it); ferrogate's unsolicited neighbor advertisement must move H's entry to ferrogate's
#      MAC without H asking. keepalived yields.
#   4. ferrogate at priority 50 stays backup under keepalived's advertisements (it reads them:
#      counted, none refused; it knows keepalived's link-local address as the master) and does
#      not answer solicitations for the address.
#   5. keepalived stopped (it sends priority 0): ferrogate (50) takes over within its skew.
#   6. The virtual MAC (`vmac: true`): ferrogate answers for the address, and advertises, from
#      00:00:5e:00:02:3d (RFC 5798 §7.3, IPv6).
#
#   vrrp6.sh FERROGATE            (needs keepalived, ndisc6 and tcpdump; tests/run.sh installs them)
#   KEEP=1 vrrp6.sh ...           keep the work directory (logs, stats) and say where
#
# Cleans up its namespaces, processes (by PID) and EAL runtime directory on any exit.
set -euo pipefail
FG=$1
ID=$$
NS=(fg6v$ID-S fg6v$ID-F fg6v$ID-K fg6v$ID-H)
S=${NS[0]} F=${NS[1]} K=${NS[2]} H=${NS[3]}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fg-vrrp6.XXXXXX")
FG_PID= KA_PID=
cleanup() {
    set +e
    for p in $FG_PID $KA_PID; do kill -9 "$p" 2>/dev/null; done
    for p in $FG_PID $KA_PID; do wait "$p" 2>/dev/null; done
    for f in "$WORK"/ka*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "/var/run/dpdk/fg6v$ID"
    if [ -n "${KEEP:-}" ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# shellcheck source=vrrp_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/vrrp_lib.sh"
for c in keepalived ndisc6 tcpdump; do
    command -v "$c" > /dev/null || { echo "FAIL $c is not installed"; exit 1; }
done

VIP=2001:db8:113::1
for n in "${NS[@]}"; do ip netns add "$n"; done
ip -n "$S" link add br0 type bridge mcast_snooping 0
ip -n "$S" link set br0 up
for pair in "$F:fv0" "$K:kv0" "$H:hv0"; do
    IFS=: read -r n dev <<< "$pair"
    ip link add "$dev" netns "$n" type veth peer name "s-$dev" netns "$S"
    ip -n "$S" link set "s-$dev" master br0 up
    ip netns exec "$n" sysctl -qw net.ipv6.conf.default.accept_dad=0 "net.ipv6.conf.$dev.accept_dad=0"
    ip -n "$n" link set "$dev" up
    ip -n "$n" link set lo up
done
ip netns exec "$S" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
# ferrogate's port: no kernel IPv6 there (no second link-local address, no answers of its own).
ip netns exec "$F" sysctl -qw net.ipv6.conf.fv0.disable_ipv6=1
ip -n "$K" addr add 2001:db8:113::4/64 dev kv0 nodad
ip -n "$H" addr add 2001:db8:113::9/64 dev hv0 nodad
MAC_F=$(ip netns exec "$F" cat /sys/class/net/fv0/address)
MAC_K=$(ip netns exec "$K" cat /sys/class/net/kv0/address)
LL_K=$(ip -n "$K" -6 addr show dev kv0 scope link | awk '/inet6/ {sub("/.*", "", $2); print $2; exit}')
# ferrogate's link-local address: the modified EUI-64 of its MAC (RFC 4291 Appendix A), as the
# kernel would make it; computed here independently of ferrogate's code.
LL_F=$(python3 -c "
import ipaddress, sys
m = bytes.fromhex('$MAC_F'.replace(':', ''))
print(ipaddress.IPv6Address(b'\xfe\x80' + bytes(6) + bytes([m[0] ^ 2]) + m[1:3] + b'\xff\xfe' + m[3:]))")
echo "ferrogate $MAC_F ($LL_F), keepalived $MAC_K ($LL_K)"
VMAC6=00:00:5e:00:02:3d

fg_conf() { # priority
    cat <<EOY
interfaces:
  - { name: lan, device: "net_af_packet0,iface=fv0", role: outside, addresses: ["2001:db8:113::3/64"] }
cores: { main: 0, workers: [] }
vrrp:
  - { interface: lan, vrid: 61, priority: $1, advert_interval: 1s, vips: ["$VIP"]${VMAC:+, vmac: true} }
EOY
}
start_fg() { # priority
    fg_conf "$1" > "$WORK/fg.yaml"
    rm -f "$WORK/stats.json"
    run_fg "$F" "fg6v$ID" fg "$WORK/stats.json"
    FG_PID=$RUN_PID
}
stop_fg() { # signal
    halt_fg "$1" "$FG_PID" "fg6v$ID" || return 1
    FG_PID=
}
cat > "$WORK/ka.conf" <<EOF
global_defs {
  vrrp_version 3
  router_id fg6v-keepalived
}
vrrp_instance VI_61 {
  state BACKUP
  interface kv0
  virtual_router_id 61
  priority 100
  advert_int 1
  virtual_ipaddress {
    $VIP/64
  }
}
EOF

# The MAC that answers a neighbor solicitation for the virtual address now (empty: nobody
# within 0.3 s).
who_answers() {
    ip netns exec "$H" ndisc6 -1 -q -n -r 1 -w 300 "$VIP" hv0 2>/dev/null | tr 'A-F' 'a-f' | head -1
}
# Every MAC that answers within a second (a split brain shows two).
all_answers() {
    ip netns exec "$H" ndisc6 -m -q -n -r 1 -w 1000 "$VIP" hv0 2>/dev/null | tr 'A-F' 'a-f' | sort -u | paste -sd' '
}
wait_answer() { # MAC, seconds: polls until that MAC answers; prints the time taken (ms)
    local t0 i
    t0=$(now_ms)
    for ((i = 0; i < $2 * 3; i++)); do
        if [ "$(who_answers)" = "$1" ]; then echo $(($(now_ms) - t0)); return 0; fi
        sleep 0.02
    done
    return 1
}
ka_has_vip() { ip -n "$K" -6 addr show dev kv0 | grep -q "inet6 $VIP/"; }
# ping6_at ADDRESS MAC: H's echo to ADDRESS is answered, and its neighbour entry says MAC.
ping6_at() {
    ip netns exec "$H" ping -6 -c 2 -i 0.2 -W 1 -q "$1" > /dev/null || { echo "no echo from $1"; return 1; }
    local e
    e=$(ip -n "$H" -6 neigh show "$1" dev hv0 | awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1)}')
    [ "$e" = "$2" ] || { echo "echo from $1 came by $e, not $2"; return 1; }
}
h_entry() { ip -n "$H" -6 neigh show "$VIP" dev hv0 | awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1)}'; }

step1() {
    local ms seen t0
    t0=$(now_ms)
    start_fg 200
    ms=$(wait_answer "$MAC_F" 8) || { echo "ferrogate never answered for $VIP"; return 1; }
    echo "ferrogate master ~$(($(now_ms) - t0)) ms after start (Master_Down_Interval at priority 200: 3.22 s)"
    seen=$(ip netns exec "$H" timeout 3 tcpdump -v -nn -c 1 -i hv0 "ip6 proto 112 and src host $LL_F and dst host ff02::12" 2>/dev/null || true)
    echo "advertisement seen by tcpdump: $(echo "$seen" | tr -s ' \n' ' ' | cut -c1-160)"
    [ -n "$seen" ] || { echo "no advertisement from $LL_F to ff02::12"; return 1; }
    grep -q "hlim 255" <<< "$seen" || { echo "hop limit is not 255"; return 1; }
    start_ka
    sleep 5
    wait_state master 2 || { echo "ferrogate's stats do not say master"; return 1; }
    ka_has_vip && { echo "keepalived holds $VIP too"; return 1; }
    [ "$(ka_said 'Entering MASTER STATE')" -eq 0 ] || { echo "keepalived went master:"; cat "$WORK/ka.log"; return 1; }
    [ "$(ka_said 'Entering BACKUP STATE')" -ge 1 ] || { echo "keepalived never said backup"; return 1; }
    grep -iE "mismatch|invalid|bad|wrong" "$WORK/ka.log" && { echo "keepalived complained about our advertisements"; return 1; }
    local who
    who=$(all_answers)
    [ "$who" = "$MAC_F" ] || { echo "solicitations for $VIP answered by: $who"; return 1; }
    ping6_at "$VIP" "$MAC_F" || return 1
    ping6_at 2001:db8:113::3 "$MAC_F" || return 1
}
check "IPv6: ferrogate (200) master, keepalived (100) accepts its advertisements and stays backup; echo" step1

step2() {
    local t0 ms
    t0=$(now_ms)
    stop_fg TERM
    wait_answer "$MAC_K" 6 > /dev/null || { echo "keepalived never took over"; return 1; }
    ms=$(($(now_ms) - t0))
    echo "keepalived answers for $VIP ${ms} ms after ferrogate's SIGTERM (skew at priority 100: 0.61 s)"
    [ "$ms" -lt 2500 ] || { echo "takeover took three intervals: no priority-0 advertisement heard"; return 1; }
}
check "IPv6: ferrogate stopped (SIGTERM) sends priority 0: keepalived takes over within its skew" step2

step3() {
    # H reaches the address at keepalived, so that it holds an entry for it.
    ip netns exec "$H" ping -6 -c 1 -W 1 -q "$VIP" > /dev/null || { echo "no echo from keepalived"; return 1; }
    [ "$(h_entry)" = "$MAC_K" ] || { echo "H's entry: $(h_entry)"; return 1; }
    start_fg 200
    wait_state master 10 || { echo "ferrogate did not preempt keepalived"; return 1; }
    # No solicitation from H since: only ferrogate's unsolicited advertisement moves the entry.
    [ "$(h_entry)" = "$MAC_F" ] || { echo "H's entry for $VIP still $(h_entry): the unsolicited NA did not move it"; return 1; }
    echo "H's entry for $VIP moved to ferrogate's MAC by its unsolicited neighbor advertisement"
    sleep 2
    ka_has_vip && { echo "keepalived kept $VIP"; return 1; }
    local who
    who=$(all_answers)
    [ "$who" = "$MAC_F" ] || { echo "solicitations for $VIP answered by: $who"; return 1; }
    [ "$(stat "s['vrrp']['routers'][0]['adverts_in']")" -ge 1 ] || { echo "ferrogate heard no advertisement from keepalived"; return 1; }
    ping6_at "$VIP" "$MAC_F"
}
check "IPv6: ferrogate (200) restarted preempts keepalived; its unsolicited NA moves H's entry" step3

step4() {
    stop_fg KILL
    wait_answer "$MAC_K" 8 > /dev/null || { echo "keepalived did not take over"; return 1; }
    start_fg 50
    sleep 6
    wait_state backup 2 || { echo "ferrogate (50) is not backup: $(stat "s['vrrp']")"; return 1; }
    local who n refused master
    who=$(all_answers)
    [ "$who" = "$MAC_K" ] || { echo "solicitations for $VIP answered by: $who"; return 1; }
    n=$(stat "s['vrrp']['routers'][0]['adverts_in']")
    refused=$(stat "sum(s['vrrp']['refused'].values())")
    master=$(stat "s['vrrp']['routers'][0]['master']")
    echo "ferrogate (50) backup: $n advertisements from keepalived read, $refused refused, master $master"
    [ "$n" -ge 4 ] && [ "$refused" -eq 0 ] || return 1
    [ "$master" = "$LL_K" ] || { echo "master not known as keepalived's $LL_K"; return 1; }
}
check "IPv6: ferrogate (50) stays backup under keepalived (100) and leaves the address to it" step4

step5() {
    local t0 ms
    t0=$(now_ms)
    stop_ka
    wait_answer "$MAC_F" 6 > /dev/null || { echo "ferrogate never took over"; return 1; }
    ms=$(($(now_ms) - t0))
    echo "ferrogate answers for $VIP ${ms} ms after keepalived's SIGTERM (skew at priority 50: 0.80 s)"
    [ "$ms" -lt 2500 ] || { echo "took three intervals: keepalived's priority 0 not heard"; return 1; }
    sleep 1.2
    [ "$(stat "s['vrrp']['routers'][0]['priority_zero_in']")" -ge 1 ] || { echo "no priority 0 counted"; return 1; }
}
check "IPv6: keepalived stopped (priority 0): ferrogate (50) takes over within its skew" step5

step6() {
    stop_fg TERM
    VMAC=1 start_fg 200
    wait_answer "$VMAC6" 8 > /dev/null || { echo "nobody answered for $VIP from $VMAC6: $(all_answers)"; return 1; }
    local seen
    seen=$(ip netns exec "$H" timeout 3 tcpdump -e -nn -c 1 -i hv0 "ether src $VMAC6 and ip6 proto 112" 2>/dev/null || true)
    echo "advertisement seen by tcpdump: $(echo "$seen" | cut -c1-120)"
    [ -n "$seen" ] || { echo "no advertisement from $VMAC6"; return 1; }
    [ "$(stat "s['vrrp']['routers'][0]['vmac']")" = "$VMAC6" ] || { echo "stats: $(stat "s['vrrp']")"; return 1; }
}
check "IPv6: the virtual MAC 00:00:5e:00:02:3d answers and advertises" step6

if [ "$failed" -ne 0 ]; then
    echo "== ferrogate log"; tail -30 "$WORK/fg.log"
    echo "== keepalived log"; tail -30 "$WORK/ka.log"
fi
echo "vrrp6: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
