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
#   7. Router advertisements (`router_advertisements`, the link-local virtual address fe80::61
#      first in vips): H's kernel takes a default route via fe80::61 and a SLAAC address in
#      2001:db8:113::/64 from the master's; rdisc6's solicitation is answered (interval 30 s,
#      so the answer is not a periodic one) and decoded, route information, DNS server and
#      search list included; H's kernel installs the route information option's route;
#      fe80::61 answers echo at F's MAC.
#   8. keepalived (same link-local address, its node routing) takes over: H keeps the default
#      route (no final advertisement from a VRRP master) and reaches fe80::61 at keepalived;
#      ferrogate as a backup (priority 50) neither advertises nor answers rdisc6; then at 200
#      it preempts and its neighbor advertisement moves H's entry back.
#   9. Without VRRP: the route names ferrogate's own EUI-64 link-local address, which answers
#      solicitations, and a final advertisement (lifetime 0) on SIGTERM removes it.
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
WORK=
# shellcheck source=vrrp_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/vrrp_lib.sh"
FG_PID=
# The trap comes first, before anything it undoes is made, and copes with what is not made yet.
# Processes (ferrogate, keepalived, tcpdump) by PID and start time: SIGTERM, SIGKILL after 5 s
# (vrrp_cleanup).
cleanup() {
    set +e
    vrrp_cleanup "${NS[@]}"
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "/var/run/dpdk/fg6v$ID"
    if [ -z "$WORK" ]; then :; elif [ -n "${KEEP:-}" ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fg-vrrp6.XXXXXX")
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

LLVIP=fe80::61
fg_conf() { # priority; RA=1: router advertisements and the link-local virtual address first;
    #          NOVRRP=1: no virtual router
    local vips="\"$VIP\"" ra=""
    if [ -n "${RA:-}" ]; then
        vips="\"$LLVIP\", \"$VIP\""
        ra=", router_advertisements: { interval: 30s, lifetime: 60s, routes: [\"2001:db8:20::/48\"], dns: [\"2001:db8:113::53\"], search: [site-a.example] }"
    fi
    cat <<EOY
interfaces:
  - { name: lan, device: "net_af_packet0,iface=fv0", role: outside, addresses: ["2001:db8:113::3/64"]$ra }
cores: { main: 0, workers: [] }
EOY
    [ -n "${NOVRRP:-}" ] && return
    cat <<EOY
vrrp:
  - { interface: lan, vrid: 61, priority: $1, advert_interval: 1s, vips: [$vips]${VMAC:+, vmac: true} }
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
h_entry() { # [ADDRESS]: the MAC H's neighbour entry for it (default: the virtual address) holds
    ip -n "$H" -6 neigh show "${1:-$VIP}" dev hv0 | awk '{for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1)}'
}

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

# Router advertisements. H's kernel (forwarding off: it takes advertisements, RFC 4861 §6.3.4)
# is the judge: its default route, its SLAAC address; rdisc6 (ndisc6) solicits and decodes.
h_default() { ip -n "$H" -6 route show default dev hv0 | head -1; }
wait_default() { # pattern, seconds: until H's default route matches (empty pattern: none)
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        if [ -z "$1" ]; then [ -z "$(h_default)" ] && return 0
        else grep -q -- "$1" <<< "$(h_default)" && return 0; fi
        sleep 0.1
    done
    return 1
}
step7() {
    stop_fg TERM
    ip -n "$H" -6 route flush proto ra 2>/dev/null || true
    [ -z "$(h_default)" ] || { echo "H has a default route already: $(h_default)"; return 1; }
    # Route information options up to /64 (Linux takes none by default).
    ip netns exec "$H" sysctl -qw net.ipv6.conf.hv0.accept_ra_rt_info_max_plen=64
    local t0 ms out slaac
    t0=$(now_ms)
    RA=1 start_fg 200
    wait_default "via $LLVIP proto ra" 10 || { echo "H learnt no default route via $LLVIP: '$(h_default)'"; return 1; }
    echo "H's default route ~$(($(now_ms) - t0)) ms after start: $(h_default)"
    wait_state master 2 || { echo "ferrogate is not master"; return 1; }
    for ((ms = 0; ms < 50; ms++)); do
        slaac=$(ip -n "$H" -6 addr show dev hv0 scope global dynamic | awk '/inet6 2001:db8:113:/ {print $2; exit}')
        [ -n "$slaac" ] && break
        sleep 0.1
    done
    [ -n "$slaac" ] || { echo "H formed no address from the advertised prefix"; return 1; }
    echo "H's SLAAC address: $slaac"
    local rio
    rio=$(ip -n "$H" -6 route show 2001:db8:20::/48)
    grep -q "via $LLVIP dev hv0 proto ra" <<< "$rio" || { echo "H has no route information route: '$rio'"; return 1; }
    echo "H's route from the route information option: $rio"
    # A solicitation is answered (within 0.5 s, or 3 s after the last advertisement).
    t0=$(now_ms)
    out=$(ip netns exec "$H" rdisc6 -1 -w 4000 hv0 2>&1) || { echo "rdisc6 got no answer: $out"; return 1; }
    echo "rdisc6 answered in $(($(now_ms) - t0)) ms"
    for want in "Hop limit *: *64" "Router lifetime *: *60 " "MTU *: *1500 bytes" \
        "Prefix *: *2001:db8:113::/64" "On-link *: *Yes" "Autonomous address conf.*: *Yes" \
        "Source link-layer address: *$(tr 'a-f' 'A-F' <<< "$MAC_F")" "from $LLVIP" \
        "Route *: *2001:db8:20::/48" "Recursive DNS server *: *2001:db8:113::53" \
        "DNS search list *: *site-a.example"; do
        grep -qi -- "$want" <<< "$out" || { echo "rdisc6's output lacks '$want':"; echo "$out"; return 1; }
    done
    [ "$(stat "s['ports'][0]['router_solicits']")" -ge 1 ] || { echo "no solicitation counted"; return 1; }
    ip netns exec "$H" ping -6 -c 2 -i 0.2 -W 1 -q "$LLVIP%hv0" > /dev/null || { echo "no echo from $LLVIP"; return 1; }
    local e
    e=$(h_entry "$LLVIP")
    [ "$e" = "$MAC_F" ] || { echo "H reaches $LLVIP at '$e', not $MAC_F"; return 1; }
}
check "IPv6 router advertisements: the master's give H its default route via $LLVIP, a SLAAC address, and answer rdisc6" step7

step8() {
    sed -i "s|^    $VIP/64|    $LLVIP/64\n    $VIP/64|" "$WORK/ka.conf"
    grep -q "$LLVIP" "$WORK/ka.conf" || { echo "ka.conf not changed"; return 1; }
    # keepalived's node routes (as the other gateway would): its neighbor advertisements then
    # carry the router flag. Without it H takes the address for a host's and drops the
    # default route through it (RFC 4861 §7.2.5).
    ip netns exec "$K" sysctl -qw net.ipv6.conf.all.forwarding=1
    start_ka
    sleep 3
    ka_has_vip && { echo "keepalived holds $VIP as a backup"; return 1; }
    stop_fg TERM
    wait_answer "$MAC_K" 6 > /dev/null || { echo "keepalived never took over"; return 1; }
    ip netns exec "$H" ping -6 -c 2 -i 0.2 -W 1 -q "$LLVIP%hv0" > /dev/null || { echo "no echo from $LLVIP at keepalived"; return 1; }
    local e
    e=$(h_entry "$LLVIP")
    [ "$e" = "$MAC_K" ] || { echo "H reaches $LLVIP at '$e', not keepalived's $MAC_K"; return 1; }
    # A VRRP master that stops says no final advertisement: the address is the backup's now.
    grep -q "via $LLVIP" <<< "$(h_default)" || { echo "H lost its default route over the takeover: '$(h_default)'"; return 1; }
    echo "after the takeover H keeps '$(h_default)' and reaches $LLVIP at keepalived"
    # ferrogate as a backup (50 under keepalived's 100) neither advertises nor answers a
    # solicitation (keepalived's node sends no advertisements).
    RA=1 start_fg 50
    wait_state backup 5 || { echo "ferrogate (50) did not settle as backup"; return 1; }
    local ras i rc out
    # The capture covers the whole solicitation (rdisc6 -w 2500 asks three times: 7.5 s) and
    # half a second after; an advertisement from F ends it at once (-c 1).
    ip netns exec "$H" timeout 20 tcpdump -l -nn -c 1 -i hv0 "ether src $MAC_F and icmp6 and ip6[40] == 134" \
        > "$WORK/backup-ra.txt" 2> "$WORK/backup-ra.err" &
    ras=$!
    track_pid "$ras"
    # A capture that is not running would see nothing, and pass: it must be listening (tcpdump
    # says so on stderr once its filter is in) before H solicits.
    for ((i = 0; i < 50; i++)); do
        grep -q "listening on" "$WORK/backup-ra.err" && break
        sleep 0.1
    done
    if ! grep -q "listening on" "$WORK/backup-ra.err"; then
        echo "tcpdump on H is not capturing: $(cat "$WORK/backup-ra.err")"; stop_pid "$ras"; return 1
    fi
    # rdisc6 exits 0 on an answer, 2 saying "No response." on none (what a backup must give),
    # and 1 on an error of its own, which proves nothing.
    rc=0
    out=$(ip netns exec "$H" rdisc6 -1 -w 2500 hv0 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
        echo "a router answered H's solicitation while ferrogate was backup:"; echo "$out"; stop_pid "$ras"; return 1
    fi
    if [ "$rc" != 2 ] || ! grep -q "No response" <<< "$out"; then
        echo "rdisc6 failed (exit $rc), not a solicitation left unanswered:"; echo "$out"; stop_pid "$ras"; return 1
    fi
    sleep 0.5
    stop_pid "$ras"
    if grep -q "ICMP6" "$WORK/backup-ra.txt"; then echo "ferrogate advertised as backup: $(cat "$WORK/backup-ra.txt")"; return 1; fi
    [ "$(stat "s['ports'][0]['router_solicits']")" -ge 1 ] || { echo "the backup did not see the solicitation"; return 1; }
    [ "$(stat "s['ports'][0]['router_adverts']")" -eq 0 ] || { echo "the backup counted advertisements sent"; return 1; }
    echo "ferrogate as backup: no advertisement, H's solicitation unanswered"
    stop_fg TERM
    RA=1 start_fg 200
    wait_state master 10 || { echo "ferrogate did not preempt"; return 1; }
    sleep 0.5
    e=$(h_entry "$LLVIP")
    [ "$e" = "$MAC_F" ] || { echo "H's entry for $LLVIP still '$e' after the preemption"; return 1; }
    grep -q "via $LLVIP" <<< "$(h_default)" || { echo "H's default route: '$(h_default)'"; return 1; }
    sleep 1.2
    [ "$(stat "s['ports'][0]['router_adverts']")" -ge 1 ] || { echo "the new master sent no advertisement"; return 1; }
    stop_ka
}
check "IPv6 router advertisements: over a takeover by keepalived and back H keeps its route via $LLVIP" step8

step9() {
    stop_fg TERM
    ip -n "$H" -6 route flush proto ra 2>/dev/null || true
    NOVRRP=1 RA=1 start_fg 200
    wait_default "via $LL_F proto ra" 10 || { echo "no default route via ferrogate's own $LL_F: '$(h_default)'"; return 1; }
    local got
    got=$(ip netns exec "$H" ndisc6 -1 -q -n -r 1 -w 1000 "$LL_F" hv0 2>/dev/null | tr 'A-F' 'a-f' | head -1)
    [ "$got" = "$MAC_F" ] || { echo "solicitation for $LL_F answered by '$got'"; return 1; }
    local t0
    t0=$(now_ms)
    stop_fg TERM
    wait_default "" 3 || { echo "H kept '$(h_default)' after ferrogate stopped: no final advertisement"; return 1; }
    echo "without VRRP: default route via $LL_F, gone $(($(now_ms) - t0)) ms after SIGTERM (final advertisement, lifetime 0)"
}
check "IPv6 router advertisements without VRRP: from ferrogate's own link-local address, and a final one on SIGTERM" step9

if [ "$failed" -ne 0 ]; then
    echo "== ferrogate log"; tail -30 "$WORK/fg.log"
    echo "== keepalived log"; tail -30 "$WORK/ka.log"
fi
echo "vrrp6: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
