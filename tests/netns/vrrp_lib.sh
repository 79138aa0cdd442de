# Shared by vrrp.sh and vrrp6.sh (sourced before their cleanup trap, which vrrp_cleanup does;
# K and WORK are set before the functions are used): counted checks, keepalived in namespace
# $K with $WORK/ka.conf, and ferrogate's stats file. Processes are tracked by PID and start
# time (pids.sh): a PID that exited and was given to another process is never signalled.
# shellcheck shell=bash
# shellcheck source=pids.sh
. "$(dirname "${BASH_SOURCE[0]}")/pids.sh"
passed=0 failed=0
check() { # name, then a command
    local name=$1; shift
    if "$@"; then echo "PASS $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}
KA_PID=
start_ka() {
    ip netns exec "$K" keepalived -n -l -D --vrrp -f "$WORK/ka.conf" -p "$WORK/ka.pid" \
        -r "$WORK/ka-vrrp.pid" --no-syslog >> "$WORK/ka.log" 2>&1 &
    KA_PID=$!
    track_pid "$KA_PID"
}
# keepalived stops its VRRP child itself on SIGTERM (which says priority 0 first): it is given
# 5 s for that before SIGKILL.
stop_ka() {
    [ -n "$KA_PID" ] || return 1
    stop_pid "$KA_PID" TERM 5
    KA_PID=
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
ka_said() { grep -c "$1" "$WORK/ka.log" || true; }
stat() { # python expression over the stats file as `s`
    python3 -c "import json,sys; s=json.load(open('$WORK/stats.json')); print($1)"
}
wait_state() { # state, seconds [stat function]: until the first router is in that state
    local i get=${3:-stat}
    for ((i = 0; i < $2 * 10; i++)); do
        [ "$($get "s['vrrp']['routers'][0]['state']" 2>/dev/null)" = "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
# run_fg NAMESPACE FILE_PREFIX NAME STATS: ferrogate ($FG) in NAMESPACE, configured by
# $WORK/NAME.yaml, logging to $WORK/NAME.log, writing STATS. Sets RUN_PID.
RUN_PID=
# With FG_CONTROL set, the control channel is opened there (--control).
run_fg() {
    local control=()
    [ -z "${FG_CONTROL:-}" ] || control=(--control "$FG_CONTROL")
    ip netns exec "$1" "$FG" --config "$WORK/$3.yaml" "${control[@]}" \
        --eal "--no-huge -m 128 --file-prefix $2 --log-level=error" \
        --idle-sleep-us 200 --stats-file "$4" --log info >> "$WORK/$3.log" 2>&1 &
    RUN_PID=$!
    track_pid "$RUN_PID"
}
# halt_fg SIGNAL PID FILE_PREFIX: stops a ferrogate run_fg started (SIGNAL, SIGKILL after 5 s)
# and removes its EAL directory.
halt_fg() {
    [ -n "$2" ] || return 1
    stop_pid "$2" "$1" 5
    rm -rf "/var/run/dpdk/$3"
}
# vrrp_cleanup NAMESPACES...: for the EXIT trap. Every tracked process gets SIGTERM and 5 s in
# all (keepalived stops its VRRP child, ferrogate says priority 0), then SIGKILL; whatever is
# still in the namespaces then (keepalived's child after its parent was killed) is killed
# there: by namespace, which is this run's, not by a PID file that may be stale.
vrrp_cleanup() {
    stop_tracked 5
    kill_netns_leftovers "$@"
}
