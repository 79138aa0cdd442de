# shellcheck shell=bash
# 2 MB hugepages for one test run, given back afterwards. Sourced by the tests whose DPDK
# programs run on hugepages (tests/interop/secgw.sh, tests/netns/site_to_site.sh with HUGE=1).
#
#   huge_reserve DIR PAGES   reserve PAGES more 2 MB pages and mount a private hugetlbfs on DIR
#   huge_release DIR         unmount DIR and give the pages back (safe to call more than once,
#                            and when huge_reserve failed half-way: call it from the EXIT trap)
#
# Runs overlap (several test runs share a machine), so the pool is only ever changed by a
# difference, under a lock: a run adds its own pages to what the pool holds then, and later
# takes off exactly what it added. Writing back an absolute size read before would undo
# another run's reservation made in between (or keep its pages after it gave them back).
HUGE_NR=/proc/sys/vm/nr_hugepages
HUGE_LOCK=${HUGE_LOCK:-/run/ferrogate-hugepages.lock}
# The pages this run added to the pool and has not given back yet.
HUGE_ADDED=0

# huge_adjust DELTA: nr_hugepages += DELTA (never below 0) under the lock; sets HUGE_CHANGE to
# how much the pool really changed (the kernel may grant less than asked).
HUGE_CHANGE=0
huge_adjust() {
    local fd before want after rc=0
    HUGE_CHANGE=0
    exec {fd}>> "$HUGE_LOCK" || return 1
    if ! flock -w 60 "$fd"; then
        echo "hugepages: no lock on $HUGE_LOCK within 60 s" >&2
        exec {fd}>&-
        return 1
    fi
    before=$(cat "$HUGE_NR")
    want=$((before + $1))
    [ "$want" -ge 0 ] || want=0
    echo "$want" > "$HUGE_NR" || rc=1
    after=$(cat "$HUGE_NR")
    HUGE_CHANGE=$((after - before))
    exec {fd}>&-
    return "$rc"
}

huge_reserve() {
    local dir=$1 pages=$2
    huge_adjust "$pages" || true
    # Whatever the kernel granted is ours to give back, even when it is not enough.
    HUGE_ADDED=$((HUGE_ADDED + HUGE_CHANGE))
    if [ "$HUGE_CHANGE" -lt "$pages" ]; then
        echo "could not reserve $pages hugepages of 2 MB (the kernel gave $HUGE_CHANGE)" >&2
        return 1
    fi
    mkdir -p "$dir"
    mount -t hugetlbfs -o pagesize=2M nodev "$dir"
}

huge_release() {
    local dir=$1
    if [ -n "$dir" ] && mountpoint -q "$dir" 2> /dev/null; then umount "$dir"; fi
    if [ "$HUGE_ADDED" -gt 0 ]; then
        # Pages still in use (another run's, or a process of ours not gone yet) stay in the pool
        # as surplus pages until freed: the kernel never takes away a page in use.
        huge_adjust "-$HUGE_ADDED" || echo "hugepages: could not give back $HUGE_ADDED pages" >&2
        HUGE_ADDED=0
    fi
    return 0
}
