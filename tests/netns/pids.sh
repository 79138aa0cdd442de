# shellcheck shell=bash
# The background processes a test started, by PID and start time. Sourced by the netns tests
# (site_to_site.sh, vrrp_lib.sh) and tests/interop/secgw.sh.
#
#   track_pid PID              remember PID with its start time (field 22 of /proc/PID/stat)
#   untrack_pid PID            forget it (done by stop_pid and wait_pid)
#   pid_alive PID              true while PID runs and is still the process that was tracked
#   signal_pid SIG PID         send SIG only if pid_alive (false otherwise)
#   stop_pid PID [SIG] [SECS]  SIG (TERM) if still ours, up to SECS (2) for it to exit, then KILL;
#                              waits for it and forgets it
#   wait_pid PID               wait for it (its exit status), then forget it
#   stop_tracked [SECS]        every tracked PID: TERM to all, up to SECS (2) for them all, then
#                              KILL; waits for each (for the EXIT trap)
#   wait_tcp_listen NS PORT [SECS]  until something in namespace NS listens on TCP PORT (10 s)
#   kill_netns_leftovers NS...  the last resort before `ip netns del`: whatever still runs in
#                              the run's own namespaces is named (a process the test forgot
#                              shows) and killed
#
# Why the start time: bash reaps a background child as soon as it exits, and its PID is then
# free for the kernel to give to any process (pid_max is 32768 on the test machines, and other
# runs share them). A PID from a list, signalled without that check, may be a stranger's.
declare -gA TRACKED_PIDS=()

pid_starttime() { # PID -> its start time in clock ticks since boot; fails for a gone or dead one
    local stat f
    stat=$(cat "/proc/$1/stat" 2> /dev/null) || return 1
    # Field 2, the command name in parentheses, may hold spaces: read from after its ")".
    read -r -a f <<< "${stat##*) }"
    # f[0] is field 3 (the state; Z: exited, not reaped yet), f[19] field 22.
    [ "${f[0]:-Z}" != Z ] && [ -n "${f[19]:-}" ] || return 1
    printf '%s\n' "${f[19]}"
}

track_pid() {
    # A child that is already gone gets no start time: it is never signalled, only waited for.
    TRACKED_PIDS[$1]=$(pid_starttime "$1" || echo gone)
}

untrack_pid() { unset 'TRACKED_PIDS[$1]'; }

pid_alive() {
    local t
    [ -n "${1:-}" ] && [ -n "${TRACKED_PIDS[$1]:-}" ] || return 1
    t=$(pid_starttime "$1") || return 1
    [ "$t" = "${TRACKED_PIDS[$1]}" ]
}

signal_pid() { # SIG PID
    pid_alive "$2" || return 1
    kill "-$1" "$2" 2> /dev/null || return 1
    return 0
}

stop_pid() { # PID [SIG] [SECS]
    local pid=${1:-} sig=${2:-TERM} secs=${3:-2} i
    [ -n "$pid" ] || return 0
    # stderr off throughout: bash would report a child killed by a signal ("Killed") on it
    # when it reaps it, which may be while polling.
    {
        # (After SIGKILL nothing is left to wait for but the exit itself.)
        if signal_pid "$sig" "$pid" && [ "$sig" != KILL ] && [ "$sig" != 9 ]; then
            for ((i = 0; i < secs * 20; i++)); do
                pid_alive "$pid" || break
                sleep 0.05
            done
            signal_pid KILL "$pid" || true
        fi
        wait "$pid" || true
    } 2> /dev/null
    untrack_pid "$pid"
    return 0
}

wait_pid() { # PID: its exit status
    local rc=0
    wait "$1" || rc=$?
    untrack_pid "$1"
    return "$rc"
}

stop_tracked() { # [SECS]
    local secs=${1:-2} pid i left
    # (stderr off: see stop_pid.)
    {
        for pid in "${!TRACKED_PIDS[@]}"; do signal_pid TERM "$pid" || true; done
        for ((i = 0; i < secs * 10; i++)); do
            left=0
            for pid in "${!TRACKED_PIDS[@]}"; do
                if pid_alive "$pid"; then left=1; break; fi
            done
            [ "$left" = 1 ] || break
            sleep 0.1
        done
        for pid in "${!TRACKED_PIDS[@]}"; do
            signal_pid KILL "$pid" || true
            wait "$pid" || true
            untrack_pid "$pid"
        done
    } 2> /dev/null
    return 0
}

wait_tcp_listen() { # NS PORT [SECS]
    local i out
    for ((i = 0; i < ${3:-10} * 10; i++)); do
        # Captured, then tested: no pipe into grep -q (pipefail and SIGPIPE).
        out=$(ip netns exec "$1" ss -Hltn "sport = :$2" 2> /dev/null) || out=
        [ -z "$out" ] || return 0
        sleep 0.1
    done
    echo "nothing listens on TCP port $2 in $1 after ${3:-10} s" >&2
    return 1
}

kill_netns_leftovers() { # NS...
    local ns pids
    for ns in "$@"; do
        # The namespaces' names carry the test's PID: what runs there is this run's.
        pids=$(ip netns pids "$ns" 2> /dev/null | paste -sd,) || pids=
        [ -n "$pids" ] || continue
        echo "still running in $ns, killed: $(ps -o pid=,args= -p "$pids" | cut -c1-100 | paste -sd';')" >&2
        # shellcheck disable=SC2086 # one PID a word
        kill -KILL ${pids//,/ } 2> /dev/null
    done
    return 0
}
