# shellcheck shell=bash
# 2 MB hugepages for one test run, given back afterwards. Sourced by the tests whose DPDK
# programs run on hugepages (tests/interop/secgw.sh, tests/netns/site_to_site.sh with HUGE=1).
#
#   huge_reserve DIR PAGES   reserve PAGES more 2 MB pages and mount a private hugetlbfs on DIR
#   huge_release DIR         unmount DIR and give the pages back (safe to call more than once,
#                            and when huge_reserve failed half-way: call it from the EXIT trap)
HUGE_BEFORE=

huge_reserve() {
    local dir=$1 pages=$2 want
    HUGE_BEFORE=$(cat /proc/sys/vm/nr_hugepages)
    want=$((HUGE_BEFORE + pages))
    echo "$want" > /proc/sys/vm/nr_hugepages
    if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt "$want" ]; then
        echo "could not reserve $pages hugepages of 2 MB (the kernel gave $(($(cat /proc/sys/vm/nr_hugepages) - HUGE_BEFORE)))" >&2
        return 1
    fi
    mkdir -p "$dir"
    mount -t hugetlbfs -o pagesize=2M nodev "$dir"
}

huge_release() {
    local dir=$1
    if mountpoint -q "$dir" 2> /dev/null; then umount "$dir"; fi
    if [ -n "$HUGE_BEFORE" ]; then
        echo "$HUGE_BEFORE" > /proc/sys/vm/nr_hugepages
        HUGE_BEFORE=
    fi
}
