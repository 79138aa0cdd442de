# Shared by vrrp.sh and vrrp6.sh (sourced after they set K, WORK and their cleanup trap):
# counted checks, keepalived in namespace $K with $WORK/ka.conf, and ferrogate's stats file.
# shellcheck shell=bash
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
}
stop_ka() {
    [ -n "$KA_PID" ] || return 1
    kill -TERM "$KA_PID"
    wait "$KA_PID" 2>/dev/null || true
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
run_fg() {
    ip netns exec "$1" "$FG" --config "$WORK/$3.yaml" \
        --eal "--no-huge -m 128 --file-prefix $2 --log-level=error" \
        --idle-sleep-us 200 --stats-file "$4" --log info >> "$WORK/$3.log" 2>&1 &
    RUN_PID=$!
}
# halt_fg SIGNAL PID FILE_PREFIX: stops a ferrogate run_fg started and removes its EAL directory.
halt_fg() {
    [ -n "$2" ] || return 1
    kill "-$1" "$2"
    wait "$2" 2>/dev/null || true
    rm -rf "/var/run/dpdk/$3"
}
