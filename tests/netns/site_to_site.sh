#!/usr/bin/env bash
# Two sites joined by two ferrogates over an ESP tunnel, in network namespaces:
#
#   hA (192.168.10.5) --veth-- [gA: ferrogate A] --veth "wire"-- [gB: ferrogate B] --veth-- hB (192.168.20.5)
#      inside 192.168.10.1 / outside 203.0.113.1            outside 203.0.113.2 / inside 192.168.20.1
#
# The gateways attach to their veths with DPDK's af_packet PMD (EAL --no-huge) and use static
# AES-256-GCM keys. Checks: ping both ways through the tunnel, a TCP transfer with iperf3, and
# that what crosses the wire is ESP which fgpcap decrypts back to the hosts' packets. The static
# runs (not BASELINE, ICMP or IKE) carry IPv6 inside the same IPv4 tunnel as well (fd00:10::/64 <->
# fd00:20::/64: the hosts find their gateway by neighbour discovery), and count: a known number of
# echoes must show up exactly in the per-SA and per-port counters of both gateways. With static
# keys their SPD-out has 100 more discard policies (over 64 rules: classified through the
# workers' flow caches, whose hits the count check requires too).
#
#   site_to_site.sh FERROGATE FGPCAP              run the checks (tests/run.sh)
#   site_to_site.sh FERROGATE FGPCAP --demo SECS  run traffic for SECS seconds, showing counters
#   CIPHER=cbc site_to_site.sh ...                AES-256-CBC with HMAC-SHA-256-128 instead
#   BASELINE=1 site_to_site.sh ...                the same topology without IPsec (bypass policies
#       both ways, no SAs): the iperf3 figures to compare the tunnel with; the wire must carry
#       no ESP
#   NEIGH=arp site_to_site.sh ...                 no static neighbours: the gateways find the hosts'
#       and each other's MACs by ARP (the first packets towards an unknown hop are dropped and
#       counted while the request is out; a warm-up ping goes first)
#   ICMP=1 site_to_site.sh ...                   the gateways' ICMP manners instead of the bulk
#       traffic: time exceeded from A (ping -t 1) and from B through the tunnel (ping -t 2),
#       pre-fragmentation (ping -M dont -s 1472, ESP on the wire within the 1500 MTU),
#       fragmentation needed with the SA's inner MTU (ping -M do -s 1472), and from B, whose
#       inside port has MTU 1400, fragmentation needed through the tunnel (ping -M do -s 1410);
#       a Fragmentation Needed (mtu 1300) about A's ESP, injected onto the outside link, lowers
#       A's SA MTU (ping -M do -s 1372 gets the smaller inner MTU) and 1280-byte IPv6 still
#       goes through, in outer fragments (ping -6 -s 1232); a burst of 200 expiring
#       pings meets the rate limit; and the ICMPv6 counterparts (time exceeded from A and from
#       B, packet too big from A and from B through the tunnel)
#   WORKERS=N site_to_site.sh ...               N worker lcores per gateway instead of one (af_packet
#       qpairs=N: N receive and transmit queues per port, PACKET_FANOUT_HASH spreading flows over
#       them; the lcores share the 2 CPUs through EAL --lcores): every check above, plus 4
#       parallel TCP streams that every worker of both gateways must have received some of
#   KEEP=1 site_to_site.sh ...                   keep the work directory (logs, captures, stats) and say where
#   HUGE=1 site_to_site.sh ...                   the gateways' EAL on 2 MB hugepages (a private
#       hugetlbfs mount and a reservation the script makes and gives back) instead of --no-huge
#   IKE=path/to/ferrogate-ike site_to_site.sh ... keys negotiated by IKEv2 (PSK) instead of static:
#       each gateway gets a ferrogate-ike over its shared-memory channel; A initiates the
#       reference scenario (CIPHER=cbc: aes256-sha256-modp1024 / aes256-sha256; gcm:
#       aes256gcm16-prfsha256-curve25519 / aes256gcm16) with IPv4 and IPv6 traffic selectors in
#       one CHILD_SA, and the wire is decrypted with the keys each ferrogate-ike exported; A's
#       40 MB byte lifetime (hard limit 400 MB) must rekey without one packet refused at the hard limit
#
# Cleans up its namespaces, processes (by PID) and EAL runtime directories on any exit.
set -euo pipefail
FG=$1 FGPCAP=$2
DEMO=0
if [ "${3:-}" = "--demo" ]; then DEMO=${4:-20}; fi
ID=$$
NS=(fg$ID-hA fg$ID-gA fg$ID-gB fg$ID-hB)
HA=${NS[0]} GA=${NS[1]} GB=${NS[2]} HB=${NS[3]}
WORK=
# shellcheck source=../hugepages.sh
. "$(dirname "$0")/../hugepages.sh"
# shellcheck source=pids.sh
. "$(dirname "$0")/pids.sh"
# The trap comes first, before anything it undoes is made, and copes with what is not made yet.
# Processes by PID and start time (pids.sh): TERM, up to 2 s, then KILL.
cleanup() {
    set +e
    stop_tracked 2
    kill_netns_leftovers "${NS[@]}"
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null; done
    [ -z "$WORK" ] || huge_release "$WORK/huge"
    rm -rf "/var/run/dpdk/fgA$ID" "/var/run/dpdk/fgB$ID"
    if [ -z "$WORK" ]; then :; elif [ -n "${KEEP:-}" ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fg-netns.XXXXXX")

passed=0 failed=0
check() { # name, then a command
    local name=$1; shift
    if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

for n in "${NS[@]}"; do ip netns add "$n"; done
ip link add hA0 netns "$HA" type veth peer name gAi netns "$GA"
ip link add gAo netns "$GA" type veth peer name gBo netns "$GB"
ip link add gBi netns "$GB" type veth peer name hB0 netns "$HB"
INNER6=
[ -z "${BASELINE:-}" ] && INNER6=1
for g in "${NS[@]}"; do
    # The outside link carries IPv4 only, and the gateways' kernels keep off their veths.
    ip netns exec "$g" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$HA" link set lo up; ip -n "$HB" link set lo up
ip -n "$HA" link set hA0 up; ip -n "$HA" addr add 192.168.10.5/24 dev hA0; ip -n "$HA" route add default via 192.168.10.1
ip -n "$HB" link set hB0 up; ip -n "$HB" addr add 192.168.20.5/24 dev hB0; ip -n "$HB" route add default via 192.168.20.1
if [ -n "$INNER6" ]; then
    # The hosts speak IPv6 too; each finds its gateway's MAC by neighbour discovery.
    for h in "$HA:hA0:10" "$HB:hB0:20"; do
        IFS=: read -r n dev net <<< "$h"
        ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
            "net.ipv6.conf.$dev.disable_ipv6=0" "net.ipv6.conf.$dev.accept_dad=0"
        ip -n "$n" -6 addr add "fd00:$net::5/64" dev "$dev" nodad
        ip -n "$n" -6 route add default via "fd00:$net::1" dev "$dev"
    done
fi
# The hosts' veths would hand TCP/UDP to the gateways with checksums left to "hardware"
# (CHECKSUM_PARTIAL), which a kernel-bypass gateway never completes; real NICs deliver whole
# checksums. Have the hosts compute them.
ip netns exec "$HA" ethtool -K hA0 tx off >/dev/null
ip netns exec "$HB" ethtool -K hB0 tx off >/dev/null
for l in gAi gAo; do ip -n "$GA" link set "$l" up; done
for l in gBo gBi; do ip -n "$GB" link set "$l" up; done
mac() { ip netns exec "$1" cat "/sys/class/net/$2/address"; }
MAC_HA=$(mac "$HA" hA0) MAC_HB=$(mac "$HB" hB0) MAC_GAO=$(mac "$GA" gAo) MAC_GBO=$(mac "$GB" gBo)

K_AB=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fa0a1a2a3
K_BA=202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3fb0b1b2b3
SUITE="cipher: aes-gcm-256"
if [ "${CIPHER:-gcm}" = cbc ]; then
    K_AB=${K_AB:0:64} K_BA=${K_BA:0:64}
    SUITE="cipher: aes-cbc-256, integrity: hmac-sha256, auth_key: \"0x$(printf '5a%.0s' {1..32})\""
fi
# gateway SIDE LOCAL_NET REMOTE_NET OUT_SA IN_SA OUT_KEY IN_KEY LOCAL_OUTER REMOTE_OUTER PEER_MAC HOST HOST_MAC MAIN WORKER
gateway() {
    # IPv6 inside: 192.168.10 -> fd00:10.
    local v6l=fd00:${3##*.} v6r=fd00:${4##*.} a6="" ts_l="$3.0/24" ts_r="$4.0/24"
    if [ -n "$INNER6" ]; then
        a6=", $v6l::1/64" ts_l="$3.0/24, $v6l::/64" ts_r="$4.0/24, $v6r::/64"
    fi
    cat <<EOY
interfaces:
  - { name: inside, device: "net_af_packet0,iface=$2i$QPAIRS", role: inside, addresses: [$3.1/24$a6], mtu: $INSIDE_MTU }
  - { name: outside, device: "net_af_packet1,iface=$2o$QPAIRS", role: outside, addresses: [${10}/24] }
routes:
  - { dst: $4.0/24, interface: outside, via: ${11} }
cores: { main: ${15}, workers: [${16}] }
EOY
    [ "${NEIGH:-static}" = arp ] || cat <<EOY
neighbours:
  - { ip: ${11}, mac: "${12}", interface: outside }
  - { ip: ${13}, mac: "${14}", interface: inside }
EOY
    [ "${NEIGH:-static}" = arp ] || [ -z "$INNER6" ] || echo "  - { ip: \"$v6l::5\", mac: \"${14}\", interface: inside }"
    [ -n "${IKE:-}" ] && return 0
    if [ -n "${BASELINE:-}" ]; then
        cat <<EOY
policies:
  - { direction: out, src: $3.0/24, dst: $4.0/24, action: bypass }
  - { direction: in, src: $4.0/24, dst: $3.0/24, action: bypass }
EOY
        return 0
    fi
    cat <<EOY
sas:
  - { name: out, spi: $5, direction: out, mode: tunnel, $SUITE, enc_key: "0x$7",
      local: ${10}, remote: ${11}, local_ts: [$ts_l], remote_ts: [$ts_r] }
  - { name: in, spi: $6, direction: in, mode: tunnel, $SUITE, enc_key: "0x$8",
      local: ${10}, remote: ${11}, replay_window: 1024, local_ts: [$ts_l], remote_ts: [$ts_r] }
policies:
  - { direction: out, src: $3.0/24, dst: $4.0/24, action: protect, sa: out }
  - { direction: in, src: $4.0/24, dst: $3.0/24, action: protect }
EOY
    [ -z "$INNER6" ] || cat <<EOY
  - { direction: out, src: "$v6l::/64", dst: "$v6r::/64", action: protect, sa: out }
  - { direction: in, src: "$v6r::/64", dst: "$v6l::/64", action: protect }
EOY
    # 100 discard policies towards other networks, which no test packet matches: SPD-out then
    # has over 64 rules, so the workers classify through their flow caches (counted in the
    # stats' spd_flow_cache, which the counters check below requires).
    for k in $(seq 0 99); do
        echo "  - { direction: out, src: $3.0/24, dst: 10.77.$k.0/24, action: discard }"
    done
}
# With ICMP=1, B's inside port is narrower than the tunnel: decapsulated packets may not fit.
INSIDE_MTU=1500
# One worker lcore per gateway on the CPU its main lcore does not use; with WORKERS=N, lcores
# 1..N alternate between the two CPUs (EAL --lcores LCORE@CPU).
WORKERS=${WORKERS:-1}
QPAIRS="" LCORES_A="" LCORES_B="" WL_A=1 WL_B=0 MAIN_B=1
if [ "$WORKERS" -gt 1 ]; then
    # af_packet's fanout (DPDK 22.11: hash with rollover) gives a flow's frames to another
    # worker's socket while its own is full, which reorders an SA's arrivals across workers.
    # 4096 frames a socket instead of 512 leave room for a worker the busy CPUs held up: in
    # one run, the receiving gateways refused 128 and 1017 packets as too old for their
    # windows with 512; with 4096, none in five runs.
    QPAIRS=",qpairs=$WORKERS,framecnt=4096" LCORES_A="--lcores 0@0" LCORES_B="--lcores 0@1"
    WL_A=$(seq -s ', ' 1 "$WORKERS") WL_B=$(seq -s ', ' 1 "$WORKERS") MAIN_B=0
    for w in $(seq 1 "$WORKERS"); do LCORES_A+=",$w@$((w % 2))" LCORES_B+=",$w@$(((w + 1) % 2))"; done
fi
gateway A gA 192.168.10 192.168.20 0xa0b0 0xb0a0 $K_AB $K_BA _ 203.0.113.1 203.0.113.2 "$MAC_GBO" 192.168.10.5 "$MAC_HA" 0 "$WL_A" > "$WORK/a.yaml"
[ -n "${ICMP:-}" ] && INSIDE_MTU=1400
gateway B gB 192.168.20 192.168.10 0xb0a0 0xa0b0 $K_BA $K_AB _ 203.0.113.2 203.0.113.1 "$MAC_GAO" 192.168.20.5 "$MAC_HB" "$MAIN_B" "$WL_B" > "$WORK/b.yaml"

EVERY=$([ "$DEMO" -gt 0 ] && echo 1000 || echo 60000)
CTL_A=() CTL_B=()
if [ -n "${IKE:-}" ]; then CTL_A=(--control "$WORK/ctl-a") CTL_B=(--control "$WORK/ctl-b"); fi
MEM="--no-huge -m 256"
if [ -n "${HUGE:-}" ]; then
    # 192 pages of 2 MB (384 MB) for both gateways; EAL takes what it needs from them.
    huge_reserve "$WORK/huge" 192 || exit 1
    MEM="--huge-dir $WORK/huge"
fi
ip netns exec "$GA" "$FG" --config "$WORK/a.yaml" --eal "$MEM $LCORES_A --file-prefix fgA$ID --log-level=error" \
    --idle-sleep-us 50 --stats-every-ms "$EVERY" --stats-file "$WORK/stats-a.json" "${CTL_A[@]}" > "$WORK/a.log" 2>&1 &
track_pid $!
ip netns exec "$GB" "$FG" --config "$WORK/b.yaml" --eal "$MEM $LCORES_B --file-prefix fgB$ID --log-level=error" \
    --idle-sleep-us 50 --stats-every-ms "$EVERY" --stats-file "$WORK/stats-b.json" "${CTL_B[@]}" > "$WORK/b.log" 2>&1 &
track_pid $!
sleep 3
if [ -n "${IKE:-}" ]; then
    # ike SIDE LOCAL REMOTE LOCAL_NET REMOTE_NET START REKEY_BYTES [EXTRA_CHILD_YAML]
    ike_conf() {
        local ikep espp
        if [ "${CIPHER:-gcm}" = cbc ]; then ikep=aes256-sha256-modp1024 espp=aes256-sha256; else ikep=aes256gcm16-prfsha256-curve25519 espp=aes256gcm16; fi
        cat <<EOY
tunnels:
  - name: site-to-site
    local: $2
    remote: $3
    psk: "ferrogate demo pre-shared key, 32+ bytes long"
    ike_proposals: [$ikep]
    ike_lifetime: 1h
    dpd: { delay: 30s, timeout: 120s, action: restart }
    start: $6
    keyingtries: 0
    children:
      - { name: net, local_ts: [$4.0/24, "fd00:${4##*.}::/64"], remote_ts: [$5.0/24, "fd00:${5##*.}::/64"], esp_proposals: [$espp], lifetime: 8h, rekey_bytes: $7${8:-} }
EOY
    }
    # A rekeys every 40 MB (its data plane reports the byte lifetime): the 100 MB transfer
    # below crosses several rekeys. B has no byte limit. The hard limit is 400 MB rather than
    # the default 44 MB. This wire carries up to ~1 Gbit/s (~120 MB/s), and on this 2-CPU
    # machine the gateways' lcores, both ferrogate-ikes and the traffic share the CPUs: an IKE
    # datagram now and then takes 100 ms or more through a data plane, and a CREATE_CHILD_SA
    # request then goes out again (after the measured round trip, 100 ms at least, then 1.8
    # times longer each time). A CI run saw 4 retransmissions in one rekey: with an 80 MB hard
    # limit (~0.35 s) A refused 648 packets. 360 MB (~3 s) covers five tries.
    ike_conf A 203.0.113.1 203.0.113.2 192.168.10 192.168.20 start 40000000 ", life_bytes: 400000000" > "$WORK/ike-a.yaml"
    ike_conf B 203.0.113.2 203.0.113.1 192.168.20 192.168.10 none 0 > "$WORK/ike-b.yaml"
    ip netns exec "$GB" "$IKE" --config "$WORK/ike-b.yaml" --dataplane "$WORK/ctl-b" --export-dir "$WORK/keys-b" \
        --socket "$WORK/ike-b.sock" > "$WORK/ike-b.events" 2> "$WORK/ike-b.log" &
    track_pid $!
    ip netns exec "$GA" "$IKE" --config "$WORK/ike-a.yaml" --dataplane "$WORK/ctl-a" --export-dir "$WORK/keys-a" \
        --socket "$WORK/ike-a.sock" > "$WORK/ike-a.events" 2> "$WORK/ike-a.log" &
    track_pid $!
    tunnel_up() {
        local i
        for ((i = 0; i < 150; i++)); do
            grep -q '"event":"child-up"' "$WORK/ike-a.events" && grep -q '"event":"child-up"' "$WORK/ike-b.events" && return 0
            sleep 0.1
        done
        cat "$WORK"/ike-*.log
        return 1
    }
    check "IKEv2 through both data planes: CHILD_SA up on A and B ($(grep -o 'ike_proposals: \[.*\]' "$WORK/ike-a.yaml"))" tunnel_up
fi
for p in "${!TRACKED_PIDS[@]}"; do
    pid_alive "$p" || { echo "a gateway exited:"; cat "$WORK"/*.log; exit 1; }
done
if [ -n "${HUGE:-}" ]; then
    on_hugepages() {
        # EAL backs its memory with files on the hugetlbfs mount, named after each file prefix.
        local a b
        a=$(find "$WORK/huge" -name "fgA$ID*" | wc -l) b=$(find "$WORK/huge" -name "fgB$ID*" | wc -l)
        echo "hugepage files: gateway A $a, gateway B $b; $(grep -E 'HugePages_(Total|Free)' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"
        [ "$a" -gt 0 ] && [ "$b" -gt 0 ]
    }
    check "both gateways run on 2 MB hugepages (private hugetlbfs mount)" on_hugepages
fi

# iperf3_server: a one-shot iperf3 server on hB, listening when this returns. The one before is
# gone first (it exits after its client; one whose client never came is stopped here): it
# would still hold the port, and the new one could not bind it.
#
# `timeout --foreground` for the clients: a plain timeout makes a process group of its own,
# which a SIGTERM to this run's group (tests/run.sh's timeout) misses: the client would wait out
# its timeout for a server already gone, and this script's EXIT trap with it.
IPERF_S=
iperf3_server() {
    stop_pid "$IPERF_S"
    ip netns exec "$HB" iperf3 -s -1 >/dev/null 2>&1 &
    IPERF_S=$!
    track_pid "$IPERF_S"
    wait_tcp_listen "$HB" 5201 5 || true
}

# af_packet transmits bypass the kernel's taps, so each side captures what it receives: A's
# outside veth sees B -> A, B's sees A -> B.
ip netns exec "$GA" tcpdump -q -U -i gAo -w "$WORK/wire-a.pcap" esp 2>/dev/null &
TCPDUMP_A=$!
track_pid "$TCPDUMP_A"
ip netns exec "$GB" tcpdump -q -U -i gBo -w "$WORK/wire-b.pcap" esp 2>/dev/null &
TCPDUMP_B=$!
track_pid "$TCPDUMP_B"
sleep 1

if [ "$DEMO" -gt 0 ]; then
    if [ -n "${IKE:-}" ]; then
        echo "== fgctl list-sas on gateway A (IKEv2, negotiated with gateway B's ferrogate-ike) =="
        "$(dirname "$IKE")/fgctl" --socket "$WORK/ike-a.sock" list-sas
    fi
    echo "== ping and iperf3 through the tunnel for $DEMO s; gateway A's counters every second =="
    tail -f "$WORK/a.log" &
    track_pid $!
    iperf3_server
    ip netns exec "$HA" ping -c "$DEMO" -i 1 -W 2 192.168.20.5 > "$WORK/ping.txt" &
    PING_PID=$!
    track_pid "$PING_PID"
    ip netns exec "$HA" iperf3 -c 192.168.20.5 -t $((DEMO - 2)) > "$WORK/iperf.txt" 2>&1 || true
    # The ping's summary (sent, received) once it has ended.
    wait "$PING_PID" 2> /dev/null || true
    echo "== ping =="; tail -3 "$WORK/ping.txt"
    echo "== iperf3 (TCP through the tunnel) =="; grep -E "sender|receiver" "$WORK/iperf.txt" || cat "$WORK/iperf.txt"
    if [ -n "${IKE:-}" ]; then
        sleep 1.2
        echo "== fgctl list-sas on gateway A, after the traffic =="
        "$(dirname "$IKE")/fgctl" --socket "$WORK/ike-a.sock" list-sas
        echo "== fgctl stats on gateway A =="
        "$(dirname "$IKE")/fgctl" stats --file "$WORK/stats-a.json"
    fi
    exit 0
fi

WHAT=$([ -n "${BASELINE:-}" ] && echo "without IPsec (baseline)" || echo "through the tunnel")
ping_all() { # namespace, destination: 5 echo requests, 5 replies
    ip netns exec "$1" ping -c 5 -i 0.2 -W 2 "$2" | tee "$WORK/ping.txt" | tail -2
    grep -q " 0% packet loss" "$WORK/ping.txt"
}
if [ "${NEIGH:-static}" = arp ]; then
    # Each gateway resolves its host and its peer on first use (drop and count meanwhile).
    ip netns exec "$HA" ping -c 4 -i 0.3 -W 1 192.168.20.5 > /dev/null 2>&1 || true
    ip netns exec "$HB" ping -c 4 -i 0.3 -W 1 192.168.10.5 > /dev/null 2>&1 || true
    # and, for IPv6, its host by neighbour discovery.
    if [ -n "$INNER6" ]; then
        ip netns exec "$HA" ping -c 4 -i 0.3 -W 1 fd00:20::5 > /dev/null 2>&1 || true
        ip netns exec "$HB" ping -c 4 -i 0.3 -W 1 fd00:10::5 > /dev/null 2>&1 || true
    fi
    sleep 1.2
    resolved() {
        local f want=$((INNER6 ? 3 : 2))
        for f in a b; do
            python3 -c "import json,sys; d=json.load(open('$WORK/stats-$f.json')); n=d['neighbours']; print('gateway $f: neighbours', n, 'unresolved drops', d['drops'].get('neighbour_unresolved', 0)); sys.exit(0 if n['learned'] >= $want and n['requests'] >= 1 and n['failed'] == 0 else 1)" || return 1
        done
    }
    check "no static neighbours: each gateway resolved its host and its peer by ARP$([ -n "$INNER6" ] && echo ", and its host's IPv6 address by ND")" resolved
fi
check "ping site A -> site B through the tunnel, no loss" ping_all "$HA" 192.168.20.5
check "ping site B -> site A through the tunnel, no loss" ping_all "$HB" 192.168.10.5
if [ -n "$INNER6" ]; then
    check "ping IPv6 site A -> site B (inside the IPv4 tunnel; hA found its gateway by ND), no loss" ping_all "$HA" fd00:20::5
    check "ping IPv6 site B -> site A (inside the IPv4 tunnel), no loss" ping_all "$HB" fd00:10::5
    # Counters against what was sent: 300 IPv4 and 200 IPv6 echoes of 56 bytes (IP packets of
    # 84 and 104 bytes) while nothing else crosses the tunnel. The stats files are rewritten
    # every second, from counters the workers publish every 50 ms and (IKE datagrams handed
    # to and from ferrogate-ike) the main lcore's own: a file written while a frame was on its
    # way counts it in one and not yet in the other. So a snapshot is taken only once two
    # consecutive writes of both files agree on every port, SA and control counter: nothing
    # was on its way at the first.
    settle() { # N: copy stats-{a,b}.json to count-{a,b}N.json once settled
        local try
        for try in 1 2 3 4 5 6 7 8; do
            cp "$WORK/stats-a.json" "$WORK/settle-a.json"; cp "$WORK/stats-b.json" "$WORK/settle-b.json"
            sleep 1.1
            if python3 - "$WORK" <<'EOP'
import json, sys
w = sys.argv[1]
def view(d):
    return (d["ports"], d.get("control"),
            sorted((s["spi"], s["direction"], s["packets"], s["bytes"]) for s in d["sas"]))
ok = True
for g in "ab":
    old, new = (json.load(open(f"{w}/{n}-{g}.json")) for n in ("settle", "stats"))
    ok &= new["seconds"] > old["seconds"] and view(new) == view(old)
sys.exit(0 if ok else 1)
EOP
            then
                cp "$WORK/settle-a.json" "$WORK/count-a$1.json"; cp "$WORK/settle-b.json" "$WORK/count-b$1.json"
                return 0
            fi
        done
        echo "the stats files never held still for a second" >&2
        return 1
    }
    sleep 1.2
    settle 0 || true
    ip netns exec "$HA" ping -q -c 300 -i 0.005 -W 1 192.168.20.5 > "$WORK/count4.txt" 2>&1 || true
    ip netns exec "$HA" ping -q -c 200 -i 0.005 -W 1 fd00:20::5 > "$WORK/count6.txt" 2>&1 || true
    sleep 1.2
    settle 1 || true
    counts_match() {
        grep -h "packets transmitted" "$WORK/count4.txt" "$WORK/count6.txt"
        python3 - "$WORK" "${NEIGH:-static}" "$([ -n "${IKE:-}" ] && echo ike || echo static)" <<'EOP'
import json, sys
w, neigh, keys = sys.argv[1], sys.argv[2], sys.argv[3]
snap = {k: json.load(open(f"{w}/count-{k}.json")) for k in ("a0", "a1", "b0", "b1")}
def sa(k, d):  # all SAs of a direction (static: one; IKE: the current pair, maybe a standby one)
    es = [s for s in snap[k]["sas"] if s["direction"] == d]
    return sum(e["packets"] for e in es), sum(e["bytes"] for e in es)
def port(k, name):
    (e,) = [p for p in snap[k]["ports"] if p["name"] == name]
    return e["rx_frames"], e["tx_frames"]
want = (500, 300 * 84 + 200 * 104)
ok = True
# Requests A -> B, replies B -> A: each counted once on each side (out on one, in on the other).
for gw, d in (("a", "out"), ("b", "in"), ("b", "out"), ("a", "in")):
    p0, b0 = sa(gw + "0", d)
    p1, b1 = sa(gw + "1", d)
    got = (p1 - p0, b1 - b0)
    print(f"gateway {gw.upper()} SAs {d}: +{got[0]} packets, +{got[1]} bytes (want +{want[0]}, +{want[1]})")
    ok &= got == want
# Per policy: SPD-out classified each request on A and each reply on B, IPv4 and IPv6 apart.
# (Protected arrivals are checked against their SA's selectors, not SPD-in: counted per SA.)
def pol(k, d, src):
    es = [p for p in snap[k]["policies"][d] if p["src"] == src]
    return sum(e["packets"] for e in es), sum(e["bytes"] for e in es)
for gw, src, n, size in (("a", "192.168.10.0/24", 300, 84), ("a", "fd00:10::/64", 200, 104),
                         ("b", "192.168.20.0/24", 300, 84), ("b", "fd00:20::/64", 200, 104)):
    p0, b0 = pol(gw + "0", "out", src)
    p1, b1 = pol(gw + "1", "out", src)
    print(f"gateway {gw.upper()} policy out from {src}: +{p1 - p0} packets, +{b1 - b0} bytes (want +{n}, +{n * size})")
    ok &= (p1 - p0, b1 - b0) == (n, n * size)
# Static keys: SPD-out (over 64 rules) answered from each gateway's flow cache, the requests on
# A and the replies on B, 500 lookups at least, each ping's first packet a miss, the rest hits.
# (With IKE the SPD holds only what ferrogate-ike installs, under 64 rules: no cache.)
for gw in ("ab" if keys == "static" else ""):
    c0, c1 = snap[gw + "0"]["spd_flow_cache"], snap[gw + "1"]["spd_flow_cache"]
    hits, misses = c1["hits"] - c0["hits"], c1["misses"] - c0["misses"]
    print(f"gateway {gw.upper()} SPD-out flow cache: +{hits} hits, +{misses} misses (want +500 lookups or more, of which 490 hits)")
    ok &= hits + misses >= 500 and hits >= 490
# The wire carries nothing but this ESP (static neighbours: no ARP on it either) and, with
# IKE, the IKE datagrams the gateway punted to ferrogate-ike and sent for it (a DPD exchange
# or a retransmission may fall into the window): those are counted apart and taken off
# (the snapshots were settled, see above, so both counts hold the same frames).
def ike(k):
    c = snap[k].get("control") or {"punted": 0, "injected": 0}
    return c["punted"], c["injected"]
if neigh == "static":
    for gw in "ab":
        r0, t0 = port(gw + "0", "outside")
        r1, t1 = port(gw + "1", "outside")
        (p0, i0), (p1, i1) = ike(gw + "0"), ike(gw + "1")
        print(f"gateway {gw.upper()} outside port: +{r1 - r0} frames in, +{t1 - t0} out, of which IKE +{p1 - p0} punted, +{i1 - i0} sent (want +500, +500 besides IKE)")
        ok &= (r1 - r0 - (p1 - p0), t1 - t0 - (i1 - i0)) == (500, 500)
sys.exit(0 if ok else 1)
EOP
    }
    check "counters match what was sent: 500 echoes through the tunnel, per SA (packets and inner bytes), per policy and per port, on both gateways$([ -z "${IKE:-}" ] && echo "; SPD-out answered from the flow cache")" counts_match
fi
if [ -n "${ICMP:-}" ]; then
    # The largest inner packet that fits the 1500-byte outside MTU once encapsulated: outer
    # IPv4 20 + ESP 8 + IV + padding of (inner + 2) to the block + ICV.
    if [ "${CIPHER:-gcm}" = cbc ]; then IV=16 ICV=16 BLK=16; else IV=8 ICV=16 BLK=4; fi
    ROOM=$((1500 - 20 - 8 - IV - ICV))
    SA_MTU=$((ROOM / BLK * BLK - 2))
    echo "inner MTU of the ${CIPHER:-gcm} SA: 1500 - 20 - 8 - $IV - $ICV = $ROOM, aligned to $BLK, less 2 = $SA_MTU"
    ping_says() { # expected text, then the ping arguments (from host A; to PING_DST)
        local want=$1; shift
        ip netns exec "$HA" ping -n -c 1 -W 2 "$@" "${PING_DST:-192.168.20.5}" > "$WORK/icmp.txt" 2>&1 || true
        grep -E "From|mtu|received" "$WORK/icmp.txt" | head -3
        grep -q -- "$want" "$WORK/icmp.txt"
    }
    check "ping -t 1: time exceeded from gateway A's inside address" \
        ping_says "From 192.168.10.1 icmp_seq=1 Time to live exceeded" -t 1
    check "ping -t 2: time exceeded from gateway B's inside address, back through the tunnel" \
        ping_says "From 192.168.20.1 icmp_seq=1 Time to live exceeded" -t 2
    # Before any frag-needed: host A would otherwise fragment to the learnt PMTU itself.
    frag_ok() {
        ip netns exec "$HA" ping -n -c 3 -i 0.2 -W 2 -M dont -s 1472 192.168.20.5 | tee "$WORK/ping.txt" | tail -2
        grep -q " 0% packet loss" "$WORK/ping.txt"
    }
    check "ping -M dont -s 1472 (1500 bytes, no DF): fragmented before encapsulation, echoed whole" frag_ok
    check "ping -M do -s 1472: fragmentation needed, mtu = $SA_MTU (the SA's inner MTU)" \
        ping_says "mtu = $SA_MTU" -M do -s 1472
    check "ping -M do -s 1410 (1438 bytes, fits the tunnel): B's inside MTU 1400 comes back through the tunnel" \
        ping_says "mtu = 1400" -M do -s 1410
    # The same over IPv6 (ICMPv6, RFC 4443; routers never fragment IPv6: too big it is).
    ping6_says() { local want=$1; shift; PING_DST=fd00:20::5 ping_says "$want" -6 "$@"; }
    check "ping -6 -t 1: ICMPv6 time exceeded (hop limit) from gateway A's inside address" \
        ping6_says "From fd00:10::1 icmp_seq=1 Time exceeded: Hop limit" -t 1
    check "ping -6 -t 2: ICMPv6 time exceeded from gateway B's inside address, back through the tunnel" \
        ping6_says "From fd00:20::1 icmp_seq=1 Time exceeded: Hop limit" -t 2
    check "ping -6 -M do -s 1452 (1500 bytes): ICMPv6 packet too big from gateway A, mtu = $SA_MTU" \
        ping6_says "From fd00:10::1 icmp_seq=1 Packet too big: mtu=$SA_MTU" -M do -s 1452
    check "ping -6 -M do -s 1390 (1438 bytes, fits the tunnel): B's inside MTU 1400 as packet too big through the tunnel" \
        ping6_says "From fd00:20::1 icmp_seq=1 Packet too big: mtu=1400" -M do -s 1390
    # A router between the gateways says A's ESP does not fit a 1300-byte link: a
    # Fragmentation Needed (RFC 1191) to A quoting one of A's ESP packets, sent onto the outside
    # link from B's side. A lowers its SA's MTU towards B (RFC 4301 §8.2.1), and host A's next
    # packet that fitted before is refused with the smaller inner MTU.
    ROOM13=$((1300 - 20 - 8 - IV - ICV))
    SA_MTU13=$((ROOM13 / BLK * BLK - 2))
    ip netns exec "$GB" python3 - "$MAC_GAO" "$MAC_GBO" <<'EOP'
import socket, struct, sys
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def ipv4(src, dst, proto, payload, length=None):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, length or 20 + len(payload), 0, 0x4000, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:]
# The head of an ESP packet A sent B (SPI 0xa0b0, as a router quotes it: header and 8 bytes).
quoted = ipv4("203.0.113.1", "203.0.113.2", 50, b"", length=1500) + struct.pack("!II", 0xa0b0, 7)
icmp = struct.pack("!BBHHH", 3, 4, 0, 0, 1300) + quoted
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
frame = bytes.fromhex(sys.argv[1].replace(":", "")) + bytes.fromhex(sys.argv[2].replace(":", "")) + b"\x08\x00"
frame += ipv4("203.0.113.2", "203.0.113.1", 1, icmp) + icmp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("gBo", 0))
s.send(frame)
EOP
    sleep 0.5
    check "ping -M do -s 1372 after a router's Fragmentation Needed (mtu 1300) about A's ESP: mtu = $SA_MTU13" \
        ping_says "mtu = $SA_MTU13" -M do -s 1372
    # IPv6 of 1280 bytes (IPv6's minimum MTU, which its source cannot go below) is now above
    # that inner MTU: A must still carry it, the outer packet in fragments of at most 1300
    # bytes that B reassembles (RFC 8200 §5). Before, A answered Packet Too Big (mtu 1280)
    # and every such packet was lost.
    ping6_through() {
        ip netns exec "$HA" ping -6 -n -c 3 -i 0.2 -W 2 -s 1232 fd00:20::5 | tee "$WORK/ping.txt" | tail -2
        grep -q " 0% packet loss" "$WORK/ping.txt"
    }
    check "ping -6 -s 1232 (1280 bytes, above the tunnel's inner MTU $SA_MTU13 now): through, in outer fragments" \
        ping6_through
    # 200 expiring probes in about 0.4 s against a bucket of 100 a second (burst 100): the
    # gateway answers some, suppresses the rest and counts them (rate_limited, below).
    ip netns exec "$HA" ping -n -q -c 200 -i 0.002 -W 1 -t 1 192.168.20.5 > /dev/null 2>&1 || true
    sleep 1.5 # the stats files are rewritten every second
    stop_pid "$TCPDUMP_A"
    stop_pid "$TCPDUMP_B"
    wire_fits() {
        python3 - "$WORK/wire-b.pcap" "$WORK/wire-a.pcap" <<'EOP'
import struct, sys
# ESP frames from A to B (B's capture) and back: none over the 1500-byte MTU, and the
# pre-fragmented echoes made some near it.
for f in sys.argv[1:]:
    b = open(f, "rb").read()
    le = b[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    i, sizes = 24, []
    while i + 16 <= len(b):
        incl, orig = struct.unpack("<II" if le else ">II", b[i + 8:i + 16])
        sizes.append(orig - 14)
        i += 16 + incl
    print(f"{f.rsplit('/', 1)[-1]}: {len(sizes)} ESP packets, largest {max(sizes)} bytes of IP")
    if not sizes or max(sizes) > 1500 or max(sizes) < 1400:
        sys.exit(1)
EOP
    }
    check "ESP on the wire both ways stays within the 1500-byte MTU" wire_fits
    counters() {
        python3 - "$WORK/stats-a.json" "$WORK/stats-b.json" <<'EOP'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
for side, s in (("A", a), ("B", b)):
    print(f"gateway {side}: icmp {json.dumps(s['icmp'])} drops {json.dumps(s['drops'])}")
ia, ib = a["icmp"], b["icmp"]
ok = (ia["time_exceeded_sent"] >= 1 and ia["too_big_sent"] >= 1 and ia["fragmented"] >= 3
      and ia["fragments"] >= 6 and ib["time_exceeded_sent"] >= 1 and ib["too_big_sent"] >= 1
      and ib["fragmented"] >= 3 and a["drops"].get("too_big", 0) >= 1
      and ia["outer_fragmented"] >= 3 and ia["outer_fragments"] >= 6
      and ia["rate_limited"] >= 1 and ia["time_exceeded_sent"] < 200)
sys.exit(0 if ok else 1)
EOP
    }
    check "--stats-file counts the errors sent, those the rate limit suppressed, and the fragments made" counters
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi
iperf3_server
check "iperf3 TCP A -> B for 3 s" ip netns exec "$HA" timeout --foreground 20 iperf3 -c 192.168.20.5 -t 3 -J --logfile "$WORK/iperf.json"
python3 -c "import json,sys; d=json.load(open('$WORK/iperf.json')); print('iperf3 A -> B $WHAT: %.1f Mbit/s' % (d['end']['sum_received']['bits_per_second']/1e6))" || true
iperf3_server
check "iperf3 TCP B -> A for 3 s" ip netns exec "$HA" timeout --foreground 20 iperf3 -c 192.168.20.5 -t 3 -R -J --logfile "$WORK/iperf-r.json"
python3 -c "import json,sys; d=json.load(open('$WORK/iperf-r.json')); print('iperf3 B -> A $WHAT: %.1f Mbit/s' % (d['end']['sum_received']['bits_per_second']/1e6))" || true
if [ -n "$INNER6" ]; then
    iperf3_server
    check "iperf3 TCP over IPv6 A -> B for 3 s" ip netns exec "$HA" timeout --foreground 20 iperf3 -6 -c fd00:20::5 -t 3 -J --logfile "$WORK/iperf6.json"
    python3 -c "import json,sys; d=json.load(open('$WORK/iperf6.json')); print('iperf3 IPv6 A -> B $WHAT: %.1f Mbit/s' % (d['end']['sum_received']['bits_per_second']/1e6))" || true
fi
if [ "$WORKERS" -gt 1 ]; then
    # Four TCP flows: PACKET_FANOUT_HASH spreads them over the inside ports' queues, so every
    # worker must take part (A's receive the data, B's the acknowledgements).
    iperf3_server
    check "iperf3 4 TCP streams A -> B for 3 s" ip netns exec "$HA" timeout --foreground 20 iperf3 -c 192.168.20.5 -t 3 -P 4 -J --logfile "$WORK/iperf-p4.json"
    python3 -c "import json,sys; d=json.load(open('$WORK/iperf-p4.json')); print('iperf3 4 streams A -> B $WHAT: %.1f Mbit/s' % (d['end']['sum_received']['bits_per_second']/1e6))" || true
    sleep 1.5 # a fresh --stats-file
    spread() {
        local f
        for f in a b; do
            python3 - "$WORK/stats-$f.json" "$f" "$WORKERS" <<'EOP' || return 1
import json, sys
d = json.load(open(sys.argv[1]))
inside = [p['name'] for p in d['ports']].index('inside')
rx = [w['rx_by_port'][inside] for w in d['workers']]
print(f"gateway {sys.argv[2]}: inside-port frames received per worker lcore",
      {w['lcore']: n for w, n in zip(d['workers'], rx)})
sys.exit(0 if len(rx) == int(sys.argv[3]) and min(rx) > 0 else 1)
EOP
        done
    }
    check "$WORKERS workers on each gateway, each received part of the inside traffic" spread
fi

# 100 MB across the tunnel over TCP, checked byte for byte.
head -c 100000000 /dev/urandom > "$WORK/blob"
ip netns exec "$HB" timeout --foreground 60 python3 -c "
import socket, sys
s = socket.create_server(('192.168.20.5', 9000)); c, _ = s.accept()
with open(sys.argv[1], 'wb') as f:
    while (b := c.recv(1 << 16)):
        f.write(b)
" "$WORK/blob.recv" &
RECV=$!
track_pid "$RECV"
wait_tcp_listen "$HB" 9000 5 || true
send_blob() {
    ip netns exec "$HA" timeout --foreground 60 python3 -c "
import socket, sys, time
# The receiver may still be starting on a busy machine: try for up to 10 s.
for i in range(100):
    try:
        c = socket.create_connection(('192.168.20.5', 9000))
        break
    except ConnectionRefusedError:
        if i == 99:
            raise
        time.sleep(0.1)
with open(sys.argv[1], 'rb') as f:
    c.sendfile(f)
c.close()
" "$WORK/blob" && wait_pid "$RECV" && cmp -s "$WORK/blob" "$WORK/blob.recv"
}
check "100 MB over TCP through the tunnel arrives byte-identical" send_blob
if [ -n "${IKE:-}" ]; then
    byte_rekeys() {
        local n expired
        n=$(grep -c '"replaces":"' "$WORK/ike-a.events" || true)
        echo "CHILD_SA rekeys started by A's 40 MB byte lifetime so far: $n"
        sleep 1.2 # the stats file is rewritten every second
        expired=$(python3 -c "import json; print(json.load(open('$WORK/stats-a.json'))['drops'].get('sa_expired', 0))")
        echo "packets gateway A refused at an SA's hard byte limit (sa_expired): $expired"
        echo "IKE requests retransmitted: A $(grep -c 'retransmitting a request' "$WORK/ike-a.log" || true), B $(grep -c 'retransmitting a request' "$WORK/ike-b.log" || true)"
        if grep -q "lifetime (bytes/packets) reached" "$WORK/ike-a.log" && [ "$n" -ge 2 ] && [ "$expired" = 0 ]; then
            return 0
        fi
        # What a failure needs explained: the retransmissions and where frames were lost.
        grep -h 'retransmitting a request\|lifetime (bytes/packets) reached' "$WORK/ike-a.log" "$WORK/ike-b.log" | tail -20 || true
        python3 - "$WORK/stats-a.json" "$WORK/stats-b.json" <<'EOP' || true
import json, sys
for f in sys.argv[1:]:
    d = json.load(open(f))
    print(f.rsplit('/', 1)[1], "ports:", [(p["name"], p["rx_missed"]) for p in d["ports"]],
          "control:", d.get("control"), "drops:", d["drops"])
EOP
        return 1
    }
    check "byte lifetimes: A's data plane reports them, ferrogate-ike rekeys before the hard limit (make-before-break: nothing refused, the transfer intact)" byte_rekeys
fi
sleep 1
# The captures are complete once tcpdump has exited (it writes what it holds on SIGTERM).
stop_pid "$TCPDUMP_A"
stop_pid "$TCPDUMP_B"

if [ "$WORKERS" -gt 1 ]; then
    # Each outbound SA is encapsulated by one worker, its owner; the others hand it its
    # packets. So every SA's sequence numbers reach the wire in the order they were taken:
    # checked on the captures (read here, not by fgpcap), with what the hand-offs cost.
    in_order() {
        python3 - "$WORK/wire-a.pcap" "$WORK/wire-b.pcap" "$WORK/stats-a.json" "$WORK/stats-b.json" <<'EOP'
import json, struct, sys

def esp(path):
    """(SPI, sequence number) of each ESP packet (plain or in UDP 4500) in a pcap."""
    with open(path, "rb") as f:
        head = f.read(24)
        e = "<" if struct.unpack("<I", head[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        link = struct.unpack(e + "I", head[20:24])[0]
        l2 = {1: 14, 113: 16}[link]
        while len(rec := f.read(16)) == 16:
            frame = f.read(struct.unpack(e + "IIII", rec)[2])
            ip = frame[l2:]
            if not ip:
                continue
            if ip[0] >> 4 == 4:
                proto, l4 = ip[9], ip[(ip[0] & 15) * 4:]
            else:
                proto, l4 = ip[6], ip[40:]
            if proto == 17 and len(l4) >= 16 and l4[8:12] != bytes(4):
                proto, l4 = 50, l4[8:]
            if proto == 50 and len(l4) >= 8:
                yield struct.unpack(">II", l4[:8])

ok = True
for side, pcap in zip("ab", sys.argv[1:3]):
    top, n, late, worst = {}, 0, 0, 0
    for spi, seq in esp(pcap):
        n += 1
        if seq <= top.get(spi, 0):
            late += 1
            worst = max(worst, top[spi] - seq)
        top[spi] = max(seq, top.get(spi, 0))
    print(f"wire into {side}: {n} ESP packets of {len(top)} SAs, {late} not above their SA's "
          f"highest number so far (at most {worst} below)")
    ok &= n > 0 and late == 0
handed = 0
for side, f in zip("AB", sys.argv[3:]):
    d = json.load(open(f))
    off = sum(w["handed_off"] for w in d["workers"])
    took = sum(w["handed_in"] for w in d["workers"])
    full = d["drops"].get("handoff_full", 0)
    owners = {s["spi"]: s.get("owner") for s in d["sas"] if s["direction"] == "out"}
    print(f"gateway {side}: {off} packets handed to the SA's owner, {took} taken, {full} "
          f"dropped on a full ring; owner lcores of the outbound SAs now: {owners}")
    # Not a check: the receiving side's af_packet fanout (hash with rollover) lets another
    # worker's socket take an SA's arrivals while its own is full, which reorders them.
    print(f"gateway {side} refused as older than its replay window: "
          f"{d['drops'].get('replay_too_old', 0)} (replayed: {d['drops'].get('replay_duplicate', 0)})")
    handed += off
    ok &= took + full == off
sys.exit(0 if ok and handed > 0 else 1)
EOP
    }
    check "$WORKERS workers: each SA's sequence numbers reach the wire in order (one worker owns each outbound SA; the others hand it their packets)" in_order
fi

# Decrypt the wire capture with the SAs as the receiving side sees them.
if [ -n "${IKE:-}" ]; then
    # ferrogate-ike writes its key exports on a thread of its own, in order: once each side's
    # history holds the CHILD_SAs that side has now, it holds every older one too.
    exported() {
        "$(dirname "$IKE")/fgctl" --socket "$WORK/ike-$1.sock" list-sas --json |
            python3 -c "
import json, sys
def spis(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == 'spi_in' and isinstance(x, str):
                yield x
            else:
                yield from spis(x)
    elif isinstance(v, list):
        for x in v:
            yield from spis(x)
have = open(sys.argv[1]).read()
want = list(spis(json.load(sys.stdin)))
sys.exit(0 if want and all('-in-' + s in have for s in want) else 1)
" "$WORK/keys-$1/site-to-site-history.yaml"
    }
    for side in a b; do
        for _ in $(seq 100); do exported "$side" 2>/dev/null && break; sleep 0.1; done
    done
fi
cat > "$WORK/wire-sas.yaml" <<EOY
sas:
  - { spi: 0xa0b0, direction: in, mode: tunnel, $SUITE, enc_key: "0x$K_AB", local: 203.0.113.2, remote: 203.0.113.1, replay_window: 0 }
  - { spi: 0xb0a0, direction: in, mode: tunnel, $SUITE, enc_key: "0x$K_BA", local: 203.0.113.1, remote: 203.0.113.2, replay_window: 0 }
EOY
for side in a b; do
    sas="$WORK/wire-sas.yaml"
    # With IKE, each side's negotiated keys as its ferrogate-ike exported them.
    [ -n "${IKE:-}" ] && sas="$WORK/keys-$side/site-to-site-history.yaml"
    "$FGPCAP" decrypt --sa "$sas" --in "$WORK/wire-$side.pcap" --out "$WORK/clear-$side.pcap" --json \
        > "$WORK/decrypt-$side.json" || true
    echo "wire into $side: $(cat "$WORK/decrypt-$side.json")"
done
wire_ok() {
    python3 - "$WORK/decrypt-a.json" "$WORK/decrypt-b.json" <<'EOP'
import json, sys
# Every ESP packet on the wire, each way, decrypts; and the transfer made plenty of them.
for f in sys.argv[1:]:
    d = json.load(open(f))
    if d["packets_in"] < 20 or d["packets_out"] != d["packets_in"] or d["drops"]:
        sys.exit(1)
EOP
}
if [ -n "${BASELINE:-}" ]; then
    no_esp() { [ "$(jq_in a)" = 0 ] && [ "$(jq_in b)" = 0 ]; }
    jq_in() { python3 -c "import json; print(json.load(open('$WORK/decrypt-$1.json'))['packets_in'])"; }
    check "baseline: no ESP on the wire (bypass both ways)" no_esp
else
    check "everything on the wire is ESP that decrypts with the SAs' keys" wire_ok
fi
if [ -n "$INNER6" ]; then
    inner_v6() {
        python3 - "$WORK/clear-a.pcap" "$WORK/clear-b.pcap" <<'EOP'
import struct, sys
# What fgpcap decrypted, each way: IPv6 packets among the IPv4 ones.
ok = True
for f in sys.argv[1:]:
    b = open(f, "rb").read()
    le = b[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    link = struct.unpack("<I" if le else ">I", b[20:24])[0] & 0xFFFF
    off = 14 if link == 1 else 0
    i, v = 24, {4: 0, 6: 0}
    while i + 16 <= len(b):
        incl = struct.unpack("<I" if le else ">I", b[i + 8:i + 12])[0]
        if incl > off:
            v[b[i + 16 + off] >> 4] = v.get(b[i + 16 + off] >> 4, 0) + 1
        i += 16 + incl
    print(f"{f.rsplit('/', 1)[-1]}: {v[4]} IPv4 and {v[6]} IPv6 inner packets")
    ok &= v[4] > 0 and v[6] > 0
sys.exit(0 if ok else 1)
EOP
    }
    check "the wire's ESP carries IPv6 as well as IPv4 inner packets (decrypted by fgpcap)" inner_v6
fi

if [ -n "${IKE:-}" ]; then
    FGCTL="$(dirname "$IKE")/fgctl"
    # Traffic on the CHILD_SA that is current now (byte lifetimes rekeyed it during the transfer);
    # the data plane reports counters to ferrogate-ike every second.
    ip netns exec "$HA" ping -c 3 -i 0.2 192.168.20.5 > /dev/null || true
    sleep 1.2
    list_sas() {
        "$FGCTL" --socket "$WORK/ike-a.sock" list-sas | tee "$WORK/list-a.txt"
        grep -q "ESTABLISHED" "$WORK/list-a.txt" && grep -q "net: INSTALLED" "$WORK/list-a.txt" &&
            ! grep -q -- "- bytes_i" "$WORK/list-a.txt" && ! grep -q " 0 bytes_i" "$WORK/list-a.txt"
    }
    check "fgctl list-sas: the IKE SA, the CHILD_SA and its data-plane byte counters" list_sas
    stats() {
        "$FGCTL" stats --file "$WORK/stats-a.json" | tee "$WORK/stats-a.txt"
        grep -E "^sa .* out +ike +[1-9][0-9]* pkts" "$WORK/stats-a.txt" | grep -q site-to-site/net
    }
    check "fgctl stats: the data plane's counters, per port, per SA and per drop reason" stats
    policies() { "$FGCTL" --socket "$WORK/ike-a.sock" list-policies | tee "$WORK/pol.txt"; grep -q "dir out" "$WORK/pol.txt" && grep -q "dir in" "$WORK/pol.txt"; }
    check "fgctl list-policies" policies
    reload_unchanged() {
        local before after
        before=$(grep -c child-up "$WORK/ike-a.events")
        "$FGCTL" --socket "$WORK/ike-a.sock" reload | tee "$WORK/reload.txt"
        sleep 0.5
        after=$(grep -c child-up "$WORK/ike-a.events")
        grep -q '"changed":\[\]' "$WORK/reload.txt" && [ "$before" = "$after" ]
    }
    check "fgctl reload with an unchanged configuration touches no tunnel" reload_unchanged
    term_init() {
        "$FGCTL" --socket "$WORK/ike-a.sock" terminate site-to-site || return 1
        local i
        for ((i = 0; i < 50; i++)); do grep -q '"event":"ike-down"' "$WORK/ike-b.events" && break; sleep 0.1; done
        grep -q '"event":"ike-down"' "$WORK/ike-b.events" || return 1
        local ups
        ups=$(grep -c child-up "$WORK/ike-b.events")
        "$FGCTL" --socket "$WORK/ike-a.sock" initiate site-to-site || return 1
        for ((i = 0; i < 50; i++)); do [ "$(grep -c child-up "$WORK/ike-b.events")" -gt "$ups" ] && break; sleep 0.1; done
        [ "$(grep -c child-up "$WORK/ike-b.events")" -gt "$ups" ] || return 1
        sleep 0.2 # A installs its pair once it has B's IKE_AUTH response
        ping_all "$HA" 192.168.20.5
    }
    check "fgctl terminate takes the tunnel down on both sides; fgctl initiate brings it back" term_init
    on_demand() {
        # A now waits for traffic (start: trap): the reload deletes the tunnel, and the first
        # packets that hit the trap policy bring it up again.
        local downs ups
        sed -i 's/start: start/start: trap/' "$WORK/ike-a.yaml"
        downs=$(grep -c '"event":"ike-down"' "$WORK/ike-b.events")
        "$FGCTL" --socket "$WORK/ike-a.sock" reload || return 1
        for ((i = 0; i < 50; i++)); do [ "$(grep -c '"event":"ike-down"' "$WORK/ike-b.events")" -gt "$downs" ] && break; sleep 0.1; done
        sleep 0.5
        ups=$(grep -c '"event":"child-up"' "$WORK/ike-b.events")
        "$FGCTL" --socket "$WORK/ike-a.sock" list-sas
        ip netns exec "$HA" ping -c 10 -i 0.3 -W 1 192.168.20.5 > "$WORK/ping-od.txt" || true
        tail -2 "$WORK/ping-od.txt" | head -1
        grep -q "acquire: traffic for an on-demand tunnel" "$WORK/ike-a.log" &&
            [ "$(grep -c '"event":"child-up"' "$WORK/ike-b.events")" -gt "$ups" ] &&
            ! grep -q " 0 received" "$WORK/ping-od.txt" && ping_all "$HA" 192.168.20.5
    }
    check "on demand (start: trap after fgctl reload): traffic brings the tunnel up" on_demand
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
