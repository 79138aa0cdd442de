# shellcheck shell=bash
# strongSwan (charon 5.9.8, Debian bookworm) as an IKEv2 peer inside network namespaces.
#
# Source this file, then install the cleanup trap yourself:
#
#   . tests/strongswan/lib.sh
#   trap swan_cleanup EXIT
#   swan_netns_add gwA                       # namespaces made here are deleted by swan_cleanup
#   swan_mkdir DIR_A a; swan_start gwA a "$DIR_A"   # charon in namespace gwA, instance "a"
#   swan_gen_swanctl --local 203.0.113.1 --remote 203.0.113.2 ... > f; swan_load a f
#   swan_initiate a net; swan_wait_established a 10; swan_list a; swan_child_keys a
#
# Functions (all return non-zero on failure; none calls exit):
#   swan_require_packages                       apt-get install what is missing (dpkg -s check)
#   swan_mkdir VAR NAME                         a fresh directory under the library's temp dir
#                                               (removed by swan_cleanup), its path put in VAR
#   swan_netns_add NS...                        ip netns add, deleted again by swan_cleanup
#   swan_track_pid PID                          kill PID (TERM, then KILL) in swan_cleanup; its
#                                               start time is kept, and no PID whose process
#                                               is no longer the one tracked is ever signalled
#   swan_untrack_pid PID                        forget it (done by swan_stop_pid, swan_wait_pid)
#   swan_pid_alive PID                          true while PID runs and is still the one tracked
#   swan_stop_pid PID [SIG] [SECS]              SIG (TERM) if still ours, up to SECS (2) for it
#                                               to exit, then KILL; waits for it, untracks it
#   swan_wait_pid PID                           wait for it (its exit status), untrack it
#   swan_wait_listen NS PORT [SECS]             until something in NS listens on TCP PORT (10 s)
#   swan_start NS NAME CONF_DIR [EXTRA]         start charon in NS; EXTRA is strongswan.conf text
#                                               placed inside charon { } (e.g. "dos_protection = no")
#   swan_stop NAME [SIG]                        stop that charon (SIG, default TERM; wait up to
#                                               5 s, KILL)
#   swan_uri NAME                               prints unix://CONF_DIR/charon.vici
#   swan_dir NAME                               prints CONF_DIR
#   swan_ctl NAME ARGS...                       swanctl ARGS --uri (its own instance)
#   swan_load NAME SWANCTL_CONF                 swanctl --load-all --file SWANCTL_CONF
#   swan_initiate NAME CHILD [TIMEOUT_S]        swanctl --initiate --child CHILD
#   swan_list NAME                              swanctl --list-sas
#   swan_list_grep NAME ERE                     0: --list-sas shows a line matching ERE, 1: it
#                                               does not, 2: swanctl failed (charon unreachable)
#   swan_wait_established NAME TIMEOUT_S [N]    wait until N (default 1) CHILD_SAs are INSTALLED
#   swan_sa_spis NAME                           "child{uid} in=SPI out=SPI" per installed CHILD_SA
#   swan_child_keys NAME                        CHILD_SA keys from charon.log, one line per SA:
#       child=net uid=1 dir=in spi=c0ffee01 role=initiator enc=HEX integ=HEX|- alg=...
#   swan_ike_keys NAME                          IKE_SA keys (needs ike = 4 in SWAN_LOGLEVELS), one
#       line per IKE_SA: ike=gw uid=1 spi_i=HEX spi_r=HEX sk_d=.. sk_ai=.. ... sk_pr=..
#   swan_gen_swanctl [OPTIONS]                  swanctl.conf for a site-to-site PSK tunnel (stdout)
#   swan_suite cbc|gcm                          sets IKE_PROP and ESP_PROP to the suite's proposals
#   swan_cleanup                                stop every charon and tracked PID, delete the
#                                               namespaces and the temp dir
#
# Settings (environment, read by swan_start):
#   SWAN_LOGLEVELS  filelog levels, default "default = 1, ike = 2, cfg = 2, chd = 4, knl = 1,
#                   net = 1, enc = 1". chd = 4 logs the CHILD_SA keys; ike = 4 adds the IKE_SA
#                   keys (SKEYSEED, SK_d, SK_ai/ar, SK_ei/er, SK_pi/pr, the DH shared secret);
#                   enc = 2 logs every payload parsed, net = 2 every packet as a hex dump.
#   SWAN_CHARON     the daemon, default /usr/lib/ipsec/charon (charon6.sh: strongSwan 6 in a chroot)
#   SWAN_PLUGINS    the plugin load list; SWAN_LIBIPSEC_EXTRA extra kernel-libipsec settings
#   SWAN_PYTHON     the python for the parsers and the tests' own scripts (default Debian's
#                   /usr/bin/python3; tests/run.sh may pass its venv's)
#
# Each instance gets CONF_DIR with strongswan.conf, charon.vici (vici socket), charon.log
# (filelog), charon.out (stdout/stderr) and run/ (bind-mounted on /run inside the instance's own
# mount namespace, so /var/run/charon.pid does not collide). The bind mount lives only in that
# mount namespace and disappears with charon.

SWAN_CHARON=${SWAN_CHARON:-/usr/lib/ipsec/charon}
SWAN_LOGLEVELS=${SWAN_LOGLEVELS:-"default = 1, ike = 2, cfg = 2, chd = 4, knl = 1, net = 1, enc = 1"}
SWAN_PLUGINS=${SWAN_PLUGINS:-"random nonce openssl aes sha1 sha2 hmac gcm gmp curve25519 kdf pem pkcs1 pkcs8 x509 pubkey constraints kernel-libipsec kernel-netlink socket-default vici updown"}
# Extra lines for the kernel-libipsec section (strongSwan 6: "raw_esp = yes" for plain ESP).
SWAN_LIBIPSEC_EXTRA=${SWAN_LIBIPSEC_EXTRA:-}
SWAN_PACKAGES=(strongswan-charon strongswan-swanctl libcharon-extra-plugins
    libstrongswan-standard-plugins libstrongswan-extra-plugins strongswan-pki
    iproute2 tcpdump iputils-ping iperf3 python3 util-linux nftables conntrack)
# Debian's python3 (the parser needs only the standard library).
SWAN_PYTHON=${SWAN_PYTHON:-$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)}
SWAN_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# TRACKED_PIDS (pids.sh): tracked PID -> its start time (field 22 of /proc/PID/stat); SWAN_CHARON_START:
# instance -> its charon's start time. bash reaps a background child as soon as it exits, and
# its PID is then free for the kernel to give to any process (pid_max is 32768 on the test
# machines, and other runs share them): a PID is signalled only while its start time matches.
declare -gA SWAN_DIRS=() SWAN_CHARON_PIDS=() SWAN_CHARON_START=()
declare -ga SWAN_NETNS=() SWAN6_MADE=()
SWAN_TMP=${SWAN_TMP:-}

swan_log() { echo "swan: $*" >&2; }

swan_require_packages() {
    local missing=() p
    for p in "${SWAN_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    swan_log "installing: ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || { swan_log "must be root to install packages"; return 1; }
    export DEBIAN_FRONTEND=noninteractive
    # Another apt may hold the lock (first boot); wait for it instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 update -qq &&
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
}

swan_mkdir() { # VAR NAME: a fresh directory under the library's temp dir, its path in VAR
    if [ -z "$SWAN_TMP" ]; then
        SWAN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/swan.XXXXXX") || return 1
    fi
    local d
    d=$(mktemp -d "$SWAN_TMP/$2.XXXXXX") || return 1
    printf -v "$1" '%s' "$d"
}

swan_netns_add() {
    local ns
    for ns in "$@"; do
        ip netns add "$ns" || return 1
        SWAN_NETNS+=("$ns")
    done
}

# Background processes by PID and start time: tests/netns/pids.sh's helpers (why the start
# time: see there), under this library's names.
# shellcheck source=../netns/pids.sh
. "$SWAN_LIB_DIR/../netns/pids.sh"
swan_pid_starttime() { pid_starttime "$@"; }
swan_track_pid() { track_pid "$@"; }
swan_untrack_pid() { untrack_pid "$@"; }
swan_pid_is() { # PID START: PID runs and started at START
    local t
    [ -n "${1:-}" ] && [ -n "${2:-}" ] || return 1
    t=$(pid_starttime "$1") || return 1
    [ "$t" = "$2" ]
}
swan_pid_alive() { pid_alive "$@"; }
swan_signal_pid() { signal_pid "$@"; }
swan_stop_pid() { stop_pid "$@"; }
swan_wait_pid() { wait_pid "$@"; }
swan_wait_listen() { # NS PORT [SECS]
    wait_tcp_listen "$@" 2> /dev/null && return 0
    swan_log "nothing listens on TCP port $2 in $1 after ${3:-10} s"
    return 1
}

swan_dir() { printf '%s\n' "${SWAN_DIRS[$1]:?swan: no instance named $1}"; }
swan_uri() { printf 'unix://%s/charon.vici\n' "${SWAN_DIRS[$1]:?swan: no instance named $1}"; }
swan_ctl() { local n=$1; shift; swanctl "$@" --uri "$(swan_uri "$n")"; }

swan_write_conf() { # DIR EXTRA
    local dir=$1 extra=${2:-} levels
    # strongswan.conf wants one setting per line.
    levels=$(printf '%s\n' "${SWAN_LOGLEVELS//,/$'\n'}" | sed 's/^ *//; /^$/d; s/^/            /')
    cat > "$dir/strongswan.conf" <<EOF
# generated by tests/strongswan/lib.sh
charon {
    load_modular = no
    # kernel-libipsec before kernel-netlink: ESP in user space through a TUN device, routes
    # (table 220) through kernel-netlink.
    load = $SWAN_PLUGINS
    install_routes = yes
    install_virtual_ip = no
    plugins {
        vici {
            socket = unix://$dir/charon.vici
        }
        kernel-libipsec {
            load = yes
            allow_peer_ts = no
            $SWAN_LIBIPSEC_EXTRA
        }
    }
    filelog {
        swan {
            path = $dir/charon.log
            append = no
            flush_line = yes
            ike_name = yes
            time_format = %H:%M:%S
            time_add_ms = yes
$levels
        }
    }
$extra
}
EOF
}

swan_start() { # NS NAME CONF_DIR [EXTRA]
    local ns=$1 name=$2 dir=$3 extra=${4:-} pid i
    [ -n "$ns" ] && [ -n "$name" ] && [ -n "$dir" ] || { swan_log "usage: swan_start NS NAME CONF_DIR [EXTRA]"; return 2; }
    [ -z "${SWAN_CHARON_PIDS[$name]:-}" ] || { swan_log "instance $name already running"; return 1; }
    mkdir -p "$dir/run" || return 1
    dir=$(cd "$dir" && pwd -P)
    case "$dir/" in
    /run/* | /var/run/*) swan_log "CONF_DIR must not be under /run (it is hidden by the bind mount)"; return 1 ;;
    esac
    swan_write_conf "$dir" "$extra"
    rm -f "$dir/charon.vici" "$dir/charon.log"
    SWAN_DIRS[$name]=$dir
    # ip netns exec, unshare (no --fork) and sh all exec: $! is charon's own PID.
    STRONGSWAN_CONF="$dir/strongswan.conf" ip netns exec "$ns" \
        unshare -m --propagation private \
        sh -c 'mount --bind "$1" /run && exec "$2"' swan "$dir/run" "$SWAN_CHARON" \
        > "$dir/charon.out" 2>&1 &
    pid=$!
    SWAN_CHARON_PIDS[$name]=$pid
    SWAN_CHARON_START[$name]=$(swan_pid_starttime "$pid" || echo gone)
    for ((i = 0; i < 100; i++)); do
        if swanctl --stats --uri "unix://$dir/charon.vici" > /dev/null 2>&1; then
            return 0
        fi
        if ! swan_pid_is "$pid" "${SWAN_CHARON_START[$name]}"; then
            swan_log "charon $name exited; charon.out:"; cat "$dir/charon.out" >&2
            [ -f "$dir/charon.log" ] && tail -20 "$dir/charon.log" >&2
            wait "$pid" 2> /dev/null || true
            swan6_forget_mountpoint "$dir"
            unset 'SWAN_CHARON_PIDS[$name]' 'SWAN_CHARON_START[$name]'
            return 1
        fi
        sleep 0.1
    done
    swan_log "charon $name: vici socket did not answer within 10 s"
    return 1
}

swan_stop() { # NAME [SIG]: SIG (TERM) to that charon, up to 5 s for it to exit, then KILL
    local name=$1 sig=${2:-TERM} pid start i
    pid=${SWAN_CHARON_PIDS[$name]:-}
    [ -n "$pid" ] || return 0
    start=${SWAN_CHARON_START[$name]:-}
    # Signals only while the PID is still that charon (it may have died long ago). stderr is
    # off: bash reports a child killed by a signal there when it reaps it.
    {
        if swan_pid_is "$pid" "$start"; then
            kill "-$sig" "$pid" || true
            for ((i = 0; i < 50; i++)); do
                swan_pid_is "$pid" "$start" || break
                sleep 0.1
            done
            if swan_pid_is "$pid" "$start"; then kill -KILL "$pid" || true; fi
        fi
        wait "$pid" || true
    } 2> /dev/null
    # Its mount namespace (and so charon6.sh's bind mounts) went with it.
    swan6_forget_mountpoint "${SWAN_DIRS[$name]:-}"
    unset 'SWAN_CHARON_PIDS[$name]' 'SWAN_CHARON_START[$name]'
    return 0
}

swan_load() { # NAME SWANCTL_CONF
    # swanctl also loads credentials from x509/, private/, ... next to the file and complains
    # about each directory that is missing; PSK setups have none, so drop those lines.
    local errf rc=0
    errf=$(mktemp) || return 1
    swan_ctl "$1" --load-all --file "$2" 2> "$errf" || rc=$?
    grep -v "^opening directory '.*' failed: No such file or directory$" "$errf" >&2 || true
    rm -f "$errf"
    return "$rc"
}

swan_initiate() { # NAME CHILD [TIMEOUT_S]
    swan_ctl "$1" --initiate --child "$2" --timeout "${3:-15}"
}

swan_list() { # NAME
    swan_ctl "$1" --list-sas
}

# swan_list_grep NAME ERE: swanctl's output is captured and its exit status checked before
# grep reads it. `swan_list NAME | grep -q X` is wrong twice: a grep that leaves at its first
# match can kill swanctl with SIGPIPE (under pipefail the match then reads as a failure), and
# "! ... | grep -q X" takes a swanctl that cannot reach charon for "X is gone".
swan_list_grep() {
    local out
    out=$(swan_list "$1") || { swan_log "$1: swanctl --list-sas failed"; return 2; }
    grep -qE -- "$2" <<< "$out" || return 1
    return 0
}

swan_sa_spis() { # NAME -> "net{1} in=c1234567 out=c7654321" per INSTALLED CHILD_SA
    swan_list "$1" | "$SWAN_PYTHON" "$SWAN_LIB_DIR/swanlog.py" list-sas
}

swan_wait_established() { # NAME TIMEOUT_S [COUNT]
    local name=$1 timeout=$2 want=${3:-1} n deadline
    deadline=$((SECONDS + timeout))
    while :; do
        n=$(swan_sa_spis "$name" 2>/dev/null | wc -l)
        [ "$n" -ge "$want" ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && break
        sleep 0.2
    done
    swan_log "$name: $n of $want CHILD_SAs INSTALLED after ${timeout}s"
    return 1
}

swan_child_keys() { # NAME
    "$SWAN_PYTHON" "$SWAN_LIB_DIR/swanlog.py" child-keys "$(swan_dir "$1")/charon.log"
}

swan_ike_keys() { # NAME
    swan_list "$1" | "$SWAN_PYTHON" "$SWAN_LIB_DIR/swanlog.py" ike-keys "$(swan_dir "$1")/charon.log" -
}

# swan_suite cbc|gcm: IKE_PROP and ESP_PROP set to the suite's proposals, strongSwan notation
# (ferrogate-ike's configuration takes the same strings)
swan_suite() {
    case $1 in
    cbc) IKE_PROP=aes256-sha256-modp1024 ESP_PROP=aes256-sha256 ;;
    gcm) IKE_PROP=aes256gcm16-prfsha256-curve25519 ESP_PROP=aes256gcm16 ;;
    *) swan_log "unknown suite $1 (cbc|gcm)"; return 2 ;;
    esac
}

# swan_gen_swanctl [--conn NAME] [--child NAME] --local IP --remote IP --local-ts NET[,NET]
#     --remote-ts NET[,NET] --psk SECRET --local-id ID --remote-id ID
#     [--suite cbc|gcm] [--ike PROPOSALS] [--esp PROPOSALS] [--start none|trap|start|trap|start]
#     [--dpd-delay 30s] [--dpd-action restart|clear|trap] [--ike-rekey 1h] [--ike-reauth T]
#     [--child-rekey 8h]
#     [--child-life 9h] [--encap no|yes] [--mobike yes|no] [--fragmentation yes|no|accept|force]
#     [--per-cpu-sas yes]               strongSwan 6.0.2 and later: per-CPU CHILD_SAs (RFC 9611)
#     [--auth psk|pubkey --cert FILE]   pubkey: FILE in x509/ next to the swanctl.conf, its key in
#                                       private/, CAs in x509ca/ (see swan_pki); no --psk then
# prints swanctl.conf. --suite cbc (the default) is IKE aes256-sha256-modp1024 with ESP
# aes256-sha256; --suite gcm is IKE aes256gcm16-prfsha256-curve25519 with ESP aes256gcm16.
# --ike/--esp override the suite. IDs are taken as strongSwan parses them: "gw.example" is
# ID_FQDN, "a@b" ID_RFC822_ADDR, an IP address ID_IPV4_ADDR.
swan_gen_swanctl() {
    local conn=gw child=net local= remote= lts= rts= psk= lid= rid= suite=cbc ike= esp=
    local start=none dpd_delay=30s dpd_action=restart ike_rekey=1h child_rekey=8h child_life=9h
    local ike_reauth=0s per_cpu=
    local encap=no mobike=yes frag=yes auth=psk cert=
    while [ $# -gt 0 ]; do
        case $1 in
        --conn) conn=$2 ;;
        --child) child=$2 ;;
        --local) local=$2 ;;
        --remote) remote=$2 ;;
        --local-ts) lts=$2 ;;
        --remote-ts) rts=$2 ;;
        --psk) psk=$2 ;;
        --local-id) lid=$2 ;;
        --remote-id) rid=$2 ;;
        --suite) suite=$2 ;;
        --ike) ike=$2 ;;
        --esp) esp=$2 ;;
        --start) start=$2 ;;
        --dpd-delay) dpd_delay=$2 ;;
        --dpd-action) dpd_action=$2 ;;
        --ike-rekey) ike_rekey=$2 ;;
        --ike-reauth) ike_reauth=$2 ;;
        --child-rekey) child_rekey=$2 ;;
        --child-life) child_life=$2 ;;
        --encap) encap=$2 ;;
        --mobike) mobike=$2 ;;
        --fragmentation) frag=$2 ;;
        --auth) auth=$2 ;;
        --cert) cert=$2 ;;
        --per-cpu-sas) per_cpu="per_cpu_sas = $2" ;;
        *) swan_log "swan_gen_swanctl: unknown option $1"; return 2 ;;
        esac
        shift 2 || { swan_log "swan_gen_swanctl: $1 needs a value"; return 2; }
    done
    local v
    local need="local remote lts rts lid rid psk"
    [ "$auth" = pubkey ] && need="local remote lts rts lid rid cert"
    for v in $need; do
        [ -n "${!v}" ] || { swan_log "swan_gen_swanctl: missing ${v}"; return 2; }
    done
    local lauth="auth = psk" rauth="auth = psk"
    if [ "$auth" = pubkey ]; then
        lauth="auth = pubkey
            certs = $cert"
        rauth="auth = pubkey"
    fi
    # With reauthentication, its hard limit one reauth time later (strongSwan would take
    # 10% of it, and reauthenticate and expire within a second of each other at 8 s).
    local over=""
    [ "$ike_reauth" = 0s ] || over="over_time = $ike_reauth"
    local IKE_PROP ESP_PROP
    swan_suite "$suite" || return 2
    : "${ike:=$IKE_PROP}" "${esp:=$ESP_PROP}"
    cat <<EOF
# generated by tests/strongswan/lib.sh (swan_gen_swanctl)
connections {
    $conn {
        version = 2
        local_addrs = $local
        remote_addrs = $remote
        proposals = $ike
        rekey_time = $ike_rekey
        reauth_time = $ike_reauth
        $over
        dpd_delay = $dpd_delay
        encap = $encap
        mobike = $mobike
        fragmentation = $frag
        local {
            $lauth
            id = "$lid"
        }
        remote {
            $rauth
            id = "$rid"
        }
        children {
            $child {
                mode = tunnel
                local_ts = $lts
                remote_ts = $rts
                esp_proposals = $esp
                rekey_time = $child_rekey
                life_time = $child_life
                dpd_action = $dpd_action
                start_action = $start
                $per_cpu
            }
        }
    }
}
EOF
    [ "$auth" = psk ] || return 0
    cat <<EOF
secrets {
    ike-$conn {
        id-local = $lid
        id-remote = $rid
        secret = "$psk"
    }
}
EOF
}

# swan_pki_ca DIR rsa|ecdsa                 a CA made with strongSwan's own `pki`: DIR/ca.key,
#                                           DIR/ca.pem (RSA 3072 or ECDSA P-384)
# swan_pki_cert DIR rsa|ecdsa NAME DN SAN   DIR/NAME.key (RSA 2048 / ECDSA P-256) and DIR/NAME.pem,
#                                           issued by that CA with subjectAltName SAN (and
#                                           SWAN_PKI_CDP, if set, as its CRL distribution point,
#                                           SWAN_PKI_OCSP as its OCSP responder)
# SWAN_PKI_PSS=1: RSA certificates are signed with RSASSA-PSS (pki --rsa-padding pss)
swan_pki_pad() { [ -n "${SWAN_PKI_PSS:-}" ] && [ "$1" = rsa ] && echo "--rsa-padding pss"; true; }
swan_pki_ca() {
    local dir=$1 type=$2 size=3072
    [ "$type" = ecdsa ] && size=384
    mkdir -p "$dir"
    pki --gen --type "$type" --size "$size" --outform pem > "$dir/ca.key" 2>> "$dir/pki.log"
    # shellcheck disable=SC2046
    pki --self --ca --lifetime 30 --in "$dir/ca.key" --type "$type" $(swan_pki_pad "$type") \
        --dn "C=CH, O=ferrogate interop, CN=interop $type CA" --outform pem > "$dir/ca.pem" 2>> "$dir/pki.log"
}
swan_pki_cert() {
    local dir=$1 type=$2 name=$3 dn=$4 san=$5 size=2048
    [ "$type" = ecdsa ] && size=256
    pki --gen --type "$type" --size "$size" --outform pem > "$dir/$name.key" 2>> "$dir/pki.log"
    pki --pub --in "$dir/$name.key" --type "$type" 2>> "$dir/pki.log" |
        # shellcheck disable=SC2046
        pki --issue --lifetime 30 --cacert "$dir/ca.pem" --cakey "$dir/ca.key" --dn "$dn" $(swan_pki_pad "$type") \
            --san "$san" --flag serverAuth ${SWAN_PKI_CDP:+--crl "$SWAN_PKI_CDP"} ${SWAN_PKI_OCSP:+--ocsp "$SWAN_PKI_OCSP"} --outform pem > "$dir/$name.pem" 2>> "$dir/pki.log"
}
# swan_pki_install DIR NAME CONFDIR         NAME's certificate, key and the CA where swanctl
#                                           --load-all looks (x509/, private/, x509ca/ next to
#                                           CONFDIR/swanctl.conf)
swan_pki_install() {
    local dir=$1 name=$2 conf=$3
    mkdir -p "$conf/x509" "$conf/x509ca" "$conf/private"
    cp "$dir/$name.pem" "$conf/x509/"
    cp "$dir/ca.pem" "$conf/x509ca/"
    cp "$dir/$name.key" "$conf/private/"
    chmod 600 "$conf/private/$name.key"
}

swan_cleanup() {
    # Runs from an EXIT trap, often under set -e: nothing here may stop the cleanup half way.
    local name pid i left ns pids opts=$-
    set +e
    # TERM to every charon and tracked process still running as the one started (no other
    # PID), then charons get 5 s (swan_stop) and the others 2 s in all before KILL.
    # (stderr off: see swan_stop_pid.)
    {
        for name in "${!SWAN_CHARON_PIDS[@]}"; do
            swan_pid_is "${SWAN_CHARON_PIDS[$name]}" "${SWAN_CHARON_START[$name]:-}" &&
                kill "${SWAN_CHARON_PIDS[$name]}"
        done
        for pid in "${!TRACKED_PIDS[@]}"; do
            swan_signal_pid TERM "$pid"
        done
        for name in "${!SWAN_CHARON_PIDS[@]}"; do
            swan_stop "$name"
        done
        for ((i = 0; i < 20; i++)); do
            left=
            for pid in "${!TRACKED_PIDS[@]}"; do
                swan_pid_alive "$pid" && { left=1; break; }
            done
            [ -n "$left" ] || break
            sleep 0.1
        done
        for pid in "${!TRACKED_PIDS[@]}"; do
            swan_signal_pid KILL "$pid"
            wait "$pid"
        done
    } 2> /dev/null
    TRACKED_PIDS=()
    swan6_remove_mountpoints
    swan6_abandon_build
    # The last resort: whatever still runs in this run's namespaces (their names carry the
    # test's PID: it is this run's) is named, so that a process the test forgot shows, and killed.
    for ns in "${SWAN_NETNS[@]}"; do
        pids=$(ip netns pids "$ns" 2> /dev/null | paste -sd,)
        [ -n "$pids" ] || continue
        swan_log "still running in $ns, killed: $(ps -o pid=,args= -p "$pids" | cut -c1-100 | paste -sd';')"
        # shellcheck disable=SC2086 # one PID a word
        kill -KILL ${pids//,/ } 2> /dev/null
    done
    for ((i = ${#SWAN_NETNS[@]} - 1; i >= 0; i--)); do
        ip netns del "${SWAN_NETNS[$i]}" 2>/dev/null
    done
    SWAN_NETNS=()
    if [ -n "$SWAN_TMP" ] && [ -z "${SWAN_KEEP:-}" ]; then
        rm -rf -- "$SWAN_TMP"
        SWAN_TMP=
    elif [ -n "$SWAN_TMP" ]; then
        swan_log "kept $SWAN_TMP (SWAN_KEEP is set)"
    fi
    case $opts in *e*) set -e ;; esac
    return 0
}

# swan6_root DIR [SUITE]: a Debian chroot (SUITE: trixie (strongSwan 6.0), or sid (6.1, with
# per-CPU SAs, RFC 9611)) with strongSwan 6 (charon, kernel-libipsec) in DIR, made with
# debootstrap once (about 45 s) and reused while DIR/.complete exists.
#
# Runs share the cache: one builds under DIR.lock (flock) while the others wait, and the tree is
# made in DIR.PID and renamed to DIR only once complete, so a reader never sees half of one. A
# build that died (debootstrap killed by a timeout leaves proc and sys, maybe dev, mounted in
# it) is unmounted before it is removed: rm alone would fail on it for ever after, or reach
# into the host's /dev through a bind mount.
SWAN6_BUILDING=
swan6_root() {
    local dir=$1 suite=${2:-trixie} fd rc=0 old
    [ -e "$dir/.complete" ] && return 0
    command -v debootstrap > /dev/null || {
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap > /dev/null || return 1
    }
    mkdir -p "$(dirname "$dir")" || return 1
    exec {fd}>> "$dir.lock" || return 1
    swan_log "strongSwan 6 chroot $dir: waiting for the lock (another run may be building it)"
    if ! flock -w 900 "$fd"; then
        swan_log "no lock on $dir.lock within 900 s"
        exec {fd}>&-
        return 1
    fi
    # Built by the run that held the lock before us?
    if [ -e "$dir/.complete" ]; then
        exec {fd}>&-
        return 0
    fi
    swan_log "building the strongSwan 6 chroot ($suite) in $dir with debootstrap"
    # Leftovers of builds that died: the incomplete DIR of a run before these locks, DIR.PID.
    for old in "$dir" "$dir".[0-9]*; do
        [ -d "$old" ] || continue
        if ! swan6_unmount_under "$old" || ! rm -rf --one-file-system -- "$old"; then
            swan_log "cannot remove the half-built $old"
            rc=1
        fi
    done
    if [ "$rc" = 0 ]; then
        SWAN6_BUILDING=$dir.$$
        mkdir -p "$SWAN6_BUILDING"
        if debootstrap --variant=minbase \
            --include=strongswan-charon,strongswan-swanctl,libcharon-extra-plugins,libstrongswan-standard-plugins \
            "$suite" "$SWAN6_BUILDING" http://deb.debian.org/debian > "$dir.log" 2>&1 &&
            swan6_unmount_under "$SWAN6_BUILDING" && touch "$SWAN6_BUILDING/.complete" &&
            mv -T -- "$SWAN6_BUILDING" "$dir"; then
            SWAN6_BUILDING=
        else
            tail -5 "$dir.log" >&2
            swan6_abandon_build
            rc=1
        fi
    fi
    exec {fd}>&-
    return "$rc"
}

# swan6_unmount_under DIR: every mount at or below DIR, deepest first (a lazy unmount for one
# still busy); fails if any is left.
swan6_unmount_under() {
    local d m
    d=$(realpath -m -- "$1")
    while read -r m; do
        umount -R -- "$m" 2> /dev/null || umount -R -l -- "$m" 2> /dev/null
    done < <(findmnt -rn -o TARGET | awk -v d="$d" '$0 == d || index($0, d "/") == 1' | sort -r)
    ! findmnt -rn -o TARGET | awk -v d="$d" '$0 == d || index($0, d "/") == 1 { found = 1 } END { exit !found }'
}

# swan6_abandon_build: the chroot this run was building when it was stopped (swan_cleanup),
# unmounted and removed.
swan6_abandon_build() {
    [ -n "$SWAN6_BUILDING" ] || return 0
    swan6_unmount_under "$SWAN6_BUILDING" && rm -rf --one-file-system -- "$SWAN6_BUILDING"
    SWAN6_BUILDING=
    return 0
}

# charon6.sh makes the instance directory's path inside the chroot (the target of its bind
# mount) and lists the directories it made in CONF_DIR/.charon6-made. Once that charon is gone
# (its mount namespace with it) they are empty, and removed: otherwise every run leaves its
# temp path behind in the cache. rmdir only: a directory that holds anything stays (another
# instance's mount target under the same temp path: removed with that one, or by swan_cleanup).
swan6_forget_mountpoint() { # CONF_DIR
    local line
    [ -n "${1:-}" ] && [ -f "$1/.charon6-made" ] || return 0
    while IFS= read -r line; do
        [ -n "$line" ] && SWAN6_MADE+=("$line")
    done < "$1/.charon6-made"
    rm -f "$1/.charon6-made"
    swan6_remove_mountpoints
}
swan6_remove_mountpoints() {
    local d keep=()
    [ "${#SWAN6_MADE[@]}" -gt 0 ] || return 0
    # Deepest first (longest path first).
    while IFS= read -r d; do
        [ -d "$d" ] || continue
        rmdir -- "$d" 2> /dev/null || keep+=("$d")
    done < <(printf '%s\n' "${SWAN6_MADE[@]}" | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-)
    SWAN6_MADE=("${keep[@]}")
    return 0
}
