#!/usr/bin/env bash
# ferrogate test spine: everything CI runs, in one script.
#
# Usage (as root, from any directory, on a fresh Debian bookworm machine):
#   tests/run.sh                 # full run: install deps, fmt, clippy, tests, fgpcap, python suites,
#                                # fuzz smoke (20 s per fuzz target)
#   tests/run.sh --long          # same, but fuzz each target for 600 s
#   FUZZ_SECONDS=600 tests/run.sh   # the same as --long (any number of seconds works)
#   SEED=1234 tests/run.sh       # fixed seed for the randomised scapy suites (printed otherwise)
#   tests/run.sh --help
#
# CI runs `bash .ci/run` (which execs this script) with CI=true.
#
# Every step runs even when an earlier one failed; each prints PASS/FAIL/SKIP with its duration,
# and the run ends with a summary and a closing line `N passed, N failed` (steps counted). The
# exit status is non-zero when any step failed.
#
# Later suites (netns topologies, strongSwan, ipsec-secgw) register their cleanup with
# `on_exit "command"` / `track_pid PID` / `make_tmpdir` so the EXIT trap undoes them.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
for arg in "$@"; do
    case "$arg" in
        --long) FUZZ_SECONDS=600 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done
export FUZZ_SECONDS

# ---------------------------------------------------------------------------------------------
# Cleanup: background PIDs, temp dirs and arbitrary hooks (namespaces later), run once on EXIT.
BG_PIDS=()
TMP_DIRS=()
EXIT_HOOKS=()
track_pid() { BG_PIDS+=("$1"); }
on_exit() { EXIT_HOOKS+=("$1"); }
make_tmpdir() {
    # Usage: make_tmpdir VAR  -> creates a temp dir, stores its path in VAR, removes it on exit.
    local d
    d="$(mktemp -d "${TMPDIR:-/tmp}/ferrogate-tests.XXXXXX")"
    TMP_DIRS+=("$d")
    printf -v "$1" '%s' "$d"
}
cleanup() {
    local rc=$?
    set +e
    local i
    # Hooks run in reverse order of registration (last set up, first torn down).
    for ((i = ${#EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${EXIT_HOOKS[$i]}" >/dev/null 2>&1
    done
    for pid in "${BG_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    for d in "${TMP_DIRS[@]}"; do
        rm -rf -- "$d"
    done
    exit "$rc"
}
trap cleanup EXIT
# A signal to run.sh (Ctrl-C, CI's TERM at its time limit) is passed on to the running step's
# processes: the tests run under `timeout`, which puts itself and the test in a process group
# of their own that such a signal never reaches. Their own traps then clean up (namespaces,
# processes, hugepages) before run.sh's does.
trap 'stop_step; exit 130' INT
trap 'stop_step; exit 143' TERM

make_tmpdir WORK

STEP_PID=
# Every process below PID, deepest last.
descendants() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2> /dev/null); do
        echo "$c"
        descendants "$c"
    done
}
# TERM to the running step: to its tests' `timeout`s, each of which passes it on to its test's
# process group (and kills that 30 s later if it still runs), or to all its processes when it
# runs none; the step's own shell is stopped at once so it starts nothing more. Its processes
# are waited for by PID, up to 60 s (their cleanup traps run meanwhile), then killed, so that
# run.sh's own cleanup (it removes $WORK, the tests' TMPDIR) comes after theirs.
stop_step() {
    [ -n "$STEP_PID" ] || return 0
    local pids p i alive tmos=()
    pids=$(descendants "$STEP_PID")
    for p in $pids; do
        [ "$(ps -o comm= -p "$p" 2> /dev/null)" = timeout ] && tmos+=("$p")
    done
    kill -TERM "$STEP_PID" 2> /dev/null
    if [ "${#tmos[@]}" -gt 0 ]; then
        kill -TERM "${tmos[@]}" 2> /dev/null
    else
        # shellcheck disable=SC2086
        kill -TERM $pids 2> /dev/null
    fi
    for i in $(seq 600); do
        alive=
        for p in $pids; do
            if kill -0 "$p" 2> /dev/null; then
                alive=1
                break
            fi
        done
        [ -n "$alive" ] || break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2> /dev/null
    wait "$STEP_PID" 2> /dev/null
    STEP_PID=
}

# ---------------------------------------------------------------------------------------------
# Step runner. A step is a command (usually a shell function); `set -e` applies inside it, its
# failure is recorded and the script goes on.
RESULTS=()
PASSED=0
FAILED=0
SKIPPED=0
FAIL_DETAILS=()

step() {
    local name="$1"
    shift
    echo
    echo "==> [$name] $*"
    local start end rc
    start=$(date +%s)
    local log="$WORK/step-$((PASSED + FAILED + 1)).log"
    local tee_pid i
    # The output goes to the terminal and to $log. tee is not waited for as a pipeline would
    # be: a process a step failed to stop would keep the pipe open and hang the run.
    mkfifo "$log.fifo"
    tee "$log" < "$log.fifo" &
    tee_pid=$!
    set +e
    # In the background, waited for: a signal to run.sh interrupts the wait (a foreground
    # step would hold the trap back until it ended) and stop_step passes it on.
    (set -e; "$@") > "$log.fifo" 2>&1 &
    STEP_PID=$!
    wait "$STEP_PID"
    rc=$?
    STEP_PID=
    set -e
    rm -f "$log.fifo"
    for i in $(seq 50); do kill -0 "$tee_pid" 2> /dev/null || break; sleep 0.1; done
    end=$(date +%s)
    if [ "$rc" -eq 0 ]; then
        PASSED=$((PASSED + 1))
        RESULTS+=("PASS  $(printf '%5ss' $((end - start)))  $name")
        echo "PASS [$name] ($((end - start))s)"
    else
        FAILED=$((FAILED + 1))
        RESULTS+=("FAIL  $(printf '%5ss' $((end - start)))  $name (exit $rc)")
        echo "FAIL [$name] (exit $rc, $((end - start))s)"
        # What failed, for the summary: each FAIL/error line with the lines that led to it.
        FAIL_DETAILS+=("  --- $name")
        local line
        while IFS= read -r line; do FAIL_DETAILS+=("    ${line:0:200}"); done < <(
            grep -a -E -B12 '^(FAIL |not ok)|FAILED|panicked at|^error(\[|:)|[Ee]rror:|[Tt]imed out' "$log" | tail -40
            grep -q -a -E '^(FAIL |not ok)|FAILED|panicked at|^error(\[|:)|[Ee]rror:|[Tt]imed out' "$log" || tail -10 "$log")
    fi
}

skip() {
    local name="$1" reason="$2"
    SKIPPED=$((SKIPPED + 1))
    RESULTS+=("SKIP         $name: $reason")
    echo
    echo "SKIP [$name]: $reason"
}

# ---------------------------------------------------------------------------------------------
# Dependencies.
APT_PACKAGES=(
    build-essential pkg-config clang libclang-dev libipsec-mb-dev libpcap-dev
    dpdk libdpdk-dev dpdk-dev dpdk-doc iproute2 iputils-ping ethtool tcpdump iperf3 python3-venv
    procps openssl debootstrap
    strongswan-charon strongswan-swanctl libcharon-extra-plugins
    libstrongswan-standard-plugins libstrongswan-extra-plugins strongswan-pki nftables conntrack
    keepalived iputils-arping ndisc6
)

install_apt_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all ${#APT_PACKAGES[@]} Debian packages present"
        return 0
    fi
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "run.sh must run as root to install packages" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
}

VENV="$REPO/.venv"
VENV_PY="$VENV/bin/python"
REQUIREMENTS="$REPO/tests/interop/requirements.txt"

install_venv() {
    local stamp="$VENV/.ferrogate-requirements"
    if [ -x "$VENV_PY" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$REQUIREMENTS" &&
        "$VENV_PY" -c 'import scapy, cryptography' 2>/dev/null; then
        echo "venv present: $("$VENV_PY" -c 'import scapy, cryptography; print("scapy", scapy.__version__, "cryptography", cryptography.__version__)')"
        return 0
    fi
    # Debian's python3 (python3-venv) is the one a fresh machine has; fall back to PATH's.
    local py=/usr/bin/python3
    [ -x "$py" ] || py="$(command -v python3)"
    [ -x "$VENV_PY" ] || "$py" -m venv "$VENV"
    "$VENV_PY" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$stamp"
    "$VENV_PY" -c 'import scapy, cryptography; print("scapy", scapy.__version__, "cryptography", cryptography.__version__)'
}

# ---------------------------------------------------------------------------------------------
# Cargo steps.
FGPCAP="${CARGO_TARGET_DIR:-$REPO/target}/release/fgpcap"

# `dpdk` implies `ipsec-mb`: clippy and the tests cover the DPDK wrapper (its smoke test runs
# EAL with --no-huge on a net_ring vdev, as root) and the ipsec-mb backend.
FEATURE_ARGS=(--features dataplane/dpdk)
# The DPDK smoke test removes its EAL runtime directory itself; this catches a test that died.
# Only the directories of test processes that are gone (fgtest<PID>): another run's live one
# stays.
on_exit 'for d in /var/run/dpdk/fgtest*; do [ -d "$d" ] && ! kill -0 "${d##*fgtest}" 2> /dev/null && rm -rf "$d"; done'
resolve_features() {
    # `cargo tree` resolves features without compiling anything, so it tells whether the feature
    # exists before clippy/test spend minutes on it.
    if cargo tree --workspace "${FEATURE_ARGS[@]}" --depth 0 >/dev/null 2>"$WORK/feature.err"; then
        echo "using ${FEATURE_ARGS[*]}"
    else
        echo "NOTE: '${FEATURE_ARGS[*]}' does not resolve; clippy and tests run without it:"
        sed 's/^/    /' "$WORK/feature.err"
        FEATURE_ARGS=()
    fi
}

cargo_fmt() { cargo fmt --all -- --check; }
cargo_clippy() { cargo clippy --workspace --all-targets "${FEATURE_ARGS[@]}" -- -D warnings; }
cargo_test() { cargo test --workspace "${FEATURE_ARGS[@]}"; }
build_fgpcap() {
    rm -f "$WORK/fgpcap.built"
    cargo build --release -p dataplane --bin fgpcap
    test -x "$FGPCAP"
    echo "built $FGPCAP"
    touch "$WORK/fgpcap.built"
}
need_fgpcap() {
    # A target dir shared between checkouts may hold an fgpcap from other sources: only the one
    # this run just built counts.
    if [ ! -e "$WORK/fgpcap.built" ]; then
        echo "fgpcap was not built by this run (see the build step); not testing a stale binary" >&2
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Python suites (scapy is the independent reference; see shared/docs/interop.md).
SEED="${SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
export SEED

py_selftest() {
    # Validates the suites' scapy/cryptography side without fgpcap (reference round trips).
    TMPDIR="$WORK" "$VENV_PY" tests/interop/scapy_esp.py --selftest
    TMPDIR="$WORK" "$VENV_PY" tests/interop/scapy_attacks.py --selftest
    TMPDIR="$WORK" "$VENV_PY" tests/interop/scapy_natt_transport.py --selftest
    TMPDIR="$WORK" "$VENV_PY" tests/interop/scapy_fragments.py --selftest
    # The committed ICMP error / fragment vectors are still what scapy builds (the Rust test
    # dataplane/tests/icmp_vectors.rs compares our builder with them).
    "$VENV_PY" tests/interop/icmp_vectors.py --check dataplane/tests/vectors/icmp_errors.json
}
py_esp() {
    need_fgpcap
    TMPDIR="$WORK" timeout -k 30 1200 "$VENV_PY" tests/interop/scapy_esp.py "$FGPCAP"
}
py_attacks() {
    need_fgpcap
    TMPDIR="$WORK" timeout -k 30 600 "$VENV_PY" tests/interop/scapy_attacks.py "$FGPCAP"
}
build_ferrogate() {
    rm -f "$WORK/ferrogate.built"
    cargo build -p dataplane --features dpdk --bin ferrogate
    touch "$WORK/ferrogate.built"
}
py_gateway_pcap() {
    # The DPDK gateway binary end to end on net_pcap ports (EAL --no-huge, as root).
    [ -e "$WORK/ferrogate.built" ] || { echo "ferrogate was not built by this run" >&2; return 1; }
    TMPDIR="$WORK" timeout -k 30 300 "$VENV_PY" tests/interop/gateway_pcap.py "${CARGO_TARGET_DIR:-$REPO/target}/debug/ferrogate"
}
netns_site_to_site() {
    # Two ferrogates on af_packet in network namespaces: ping, iperf3, wire decrypted; IPv4 and
    # IPv6 inside the tunnel; counters checked against a known number of echoes.
    need_fgpcap
    [ -e "$WORK/ferrogate.built" ] || { echo "ferrogate was not built by this run" >&2; return 1; }
    local fg="${CARGO_TARGET_DIR:-$REPO/target}/debug/ferrogate"
    TMPDIR="$WORK" timeout -k 30 300 bash tests/netns/site_to_site.sh "$fg" "$FGPCAP" || return 1
    echo "== again with two workers per gateway, AES-256-CBC + HMAC-SHA-256-128, next hops resolved by ARP and ND (no static neighbours), on hugepages"
    WORKERS=2 HUGE=1 NEIGH=arp CIPHER=cbc TMPDIR="$WORK" timeout -k 30 300 bash tests/netns/site_to_site.sh "$fg" "$FGPCAP" || return 1
    echo "== the same topology without IPsec (bypass policies): the baseline for the figures above"
    BASELINE=1 TMPDIR="$WORK" timeout -k 30 300 bash tests/netns/site_to_site.sh "$fg" "$FGPCAP"
}
interop_secgw() {
    # ferrogate against DPDK's ipsec-secgw (built now from dpdk-doc's example source) with the
    # same static SAs: ping and iperf3 both ways, the wire decrypted in both directions.
    need_fgpcap
    [ -e "$WORK/ferrogate.built" ] || { echo "ferrogate was not built by this run" >&2; return 1; }
    local fg="${CARGO_TARGET_DIR:-$REPO/target}/debug/ferrogate"
    SUITE=gcm TMPDIR="$WORK" timeout -k 30 300 bash tests/interop/secgw.sh "$fg" "$FGPCAP" || return 1
    echo "== again with AES-256-CBC + HMAC-SHA-256-128"
    SUITE=cbc TMPDIR="$WORK" timeout -k 30 300 bash tests/interop/secgw.sh "$fg" "$FGPCAP"
}
netns_icmp() {
    # The same two sites, ICMP manners: time exceeded from either gateway (B's through the
    # tunnel), pre-fragmentation, fragmentation needed with the SA's inner MTU and with B's
    # narrower inside MTU, counters. About 10 s per suite.
    [ -e "$WORK/ferrogate.built" ] || { echo "ferrogate was not built by this run" >&2; return 1; }
    local fg="${CARGO_TARGET_DIR:-$REPO/target}/debug/ferrogate"
    ICMP=1 TMPDIR="$WORK" timeout -k 30 120 bash tests/netns/site_to_site.sh "$fg" "$FGPCAP"
    echo "== again with AES-256-CBC + HMAC-SHA-256-128"
    CIPHER=cbc ICMP=1 TMPDIR="$WORK" timeout -k 30 120 bash tests/netns/site_to_site.sh "$fg" "$FGPCAP"
}
netns_vrrp() {
    # ferrogate's VRRP against keepalived on one bridge: who holds the virtual address, who
    # answers ARP for it, takeovers after SIGTERM (priority 0), SIGKILL and preemption, link
    # tracking, the control plane tracked (ferrogate-ike killed and back), the virtual MAC
    # between two ferrogates; then the same over IPv6 (neighbor solicitations, unsolicited
    # advertisements). ~2.5 min.
    [ -e "$WORK/ferrogate.built" ] && [ -e "$WORK/ike.built" ] || { echo "ferrogate or ferrogate-ike was not built by this run" >&2; return 1; }
    local fg="${CARGO_TARGET_DIR:-$REPO/target}/debug/ferrogate"
    TMPDIR="$WORK" timeout -k 30 200 bash tests/netns/vrrp.sh "$fg" "$(dirname "$fg")/ferrogate-ike" || return 1
    echo "== VRRP over IPv6"
    TMPDIR="$WORK" timeout -k 30 120 bash tests/netns/vrrp6.sh "$fg"
}

netns_site_to_site_ike() {
    # The same two sites with keys negotiated by ferrogate-ike on both gateways (plain ESP,
    # through the shared-memory channels), plus fgctl.
    need_fgpcap
    [ -e "$WORK/ike.built" ] && [ -e "$WORK/ferrogate.built" ] || { echo "binaries not built by this run" >&2; return 1; }
    local t="${CARGO_TARGET_DIR:-$REPO/target}/debug"
    echo "== reference scenario: IKE aes256-sha256-modp1024, ESP aes256-sha256"
    CIPHER=cbc IKE="$t/ferrogate-ike" TMPDIR="$WORK" timeout -k 30 300 bash tests/netns/site_to_site.sh "$t/ferrogate" "$FGPCAP" || return 1
    echo "== IKE aes256gcm16-prfsha256-curve25519, ESP aes256gcm16, two workers per gateway"
    WORKERS=2 IKE="$t/ferrogate-ike" TMPDIR="$WORK" timeout -k 30 300 bash tests/netns/site_to_site.sh "$t/ferrogate" "$FGPCAP"
}
strongswan_vs_strongswan() {
    # Two strongSwan charons (kernel-libipsec) in network namespaces: the harness ferrogate-ike
    # will be tested in (tests/strongswan/README.md).
    SWAN_PYTHON="$VENV_PY" TMPDIR="$WORK" timeout -k 30 120 bash tests/strongswan/swan_vs_swan.sh
    echo "== again with AES-256-GCM (IKE aes256gcm16-prfsha256-curve25519)"
    SWAN_PYTHON="$VENV_PY" SUITE=gcm TMPDIR="$WORK" timeout -k 30 120 bash tests/strongswan/swan_vs_swan.sh
}
build_ferrogate_ike() {
    rm -f "$WORK/ike.built"
    cargo build -p controlplane --bin ferrogate-ike --bin fgctl
    touch "$WORK/ike.built"
}
ike_vs_strongswan() {
    # ferrogate-ike against strongSwan 5.9.8 in network namespaces, both roles, both suites:
    # keys compared with charon's, ESP both ways, CHILD_SA rekey, DPD restart, delete; then
    # once more with IKE fragmentation (RFC 7383) both ways.
    need_fgpcap
    [ -e "$WORK/ike.built" ] || { echo "ferrogate-ike was not built by this run" >&2; return 1; }
    local ike="${CARGO_TARGET_DIR:-$REPO/target}/debug/ferrogate-ike" suite role children
    for suite in cbc gcm; do
        for role in initiator responder; do
            # With AES-GCM a second child (PFS) comes up in a CREATE_CHILD_SA of its own,
            # made by whoever initiated; its keys are compared with charon's too.
            children=1
            [ "$suite" = cbc ] || children=2
            echo "== SUITE=$suite ROLE=$role CHILDREN=$children"
            CHILDREN=$children SUITE=$suite ROLE=$role TMPDIR="$WORK" timeout -k 30 180 bash tests/strongswan/ike_vs_swan.sh "$ike" "$FGPCAP" "$VENV_PY" || return 1
        done
    done
    # X.509 certificates that strongSwan's pki issues: RSA with DN identities (we initiate; IKE
    # fragmentation both ways, fragment_size 400 on both sides), ECDSA with subjectAltName FQDNs
    # (strongSwan initiates, unfragmented at first) and RSA with RSASSA-PSS everywhere
    # (certificates, CRL, both AUTH signatures), each over a path that drops our datagrams
    # above 700 / 1000 bytes (fragment_size 1500: our IKE_AUTH response / request cut smaller
    # after 3+ sends over 2 s, RFC 7383 §2.5.2); revocation: strict
    # with the CA's CRL (pki --signcrl) as a file for the first, fetched over HTTP from the
    # distribution point the certificates name for ECDSA, and for the RSA-PSS run no CRL but
    # OpenSSL's OCSP responder that the certificates name. Then strongSwan's certificate
    # revoked, by a delta CRL fetched from where the fetched CRL points, by the CRL file, or
    # by the OCSP responder: no tunnel.
    local combo auth frag pss pmtu fetch ocsp limit
    for combo in "rsa initiator cbc 1 - - - - 1000" "ecdsa responder gcm - - 1 1 - 700" "rsa initiator gcm - 1 1 - 1 1000"; do
        read -r auth role suite frag pss pmtu fetch ocsp limit <<< "$combo"
        [ "$frag" = - ] && frag=
        [ "$pss" = - ] && pss=
        [ "$pmtu" = - ] && pmtu=
        [ "$fetch" = - ] && fetch=
        [ "$ocsp" = - ] && ocsp=
        echo "== AUTH=$auth ROLE=$role SUITE=$suite FRAG=$frag RSA_PSS=$pss PMTU=$pmtu ($limit) CRL_FETCH=$fetch OCSP=$ocsp"
        PMTU_LIMIT=$limit OCSP=$ocsp CRL_FETCH=$fetch PMTU=$pmtu RSA_PSS=$pss FRAG=$frag AUTH=$auth SUITE=$suite ROLE=$role TMPDIR="$WORK" timeout -k 30 180 bash tests/strongswan/ike_vs_swan.sh "$ike" "$FGPCAP" "$VENV_PY" || return 1
    done
    for combo in "ecdsa initiator 1 - delta" "rsa responder - - 1" "rsa initiator - 1 1"; do
        read -r auth role fetch ocsp revoked <<< "$combo"
        [ "$fetch" = - ] && fetch=
        [ "$ocsp" = - ] && ocsp=
        echo "== REVOKED=$revoked AUTH=$auth ROLE=$role CRL_FETCH=$fetch OCSP=$ocsp"
        OCSP=$ocsp CRL_FETCH=$fetch REVOKED=$revoked AUTH=$auth ROLE=$role TMPDIR="$WORK" timeout -k 30 120 bash tests/strongswan/ike_vs_swan.sh "$ike" "$FGPCAP" "$VENV_PY" || return 1
    done
}
gateway_vs_strongswan() {
    # The product against strongSwan: ferrogate (DPDK, af_packet) + ferrogate-ike through the
    # shared-memory channel. The reference scenario with 60 CHILD_SA rekeys under load, then
    # AES-GCM with a few over an IPv6 outside link; kills of either process under traffic; two workers sending on one SA;
    # charon's make-before-break reauthentications, and ferrogate-ike's own; then strongSwan 6.0
    # (plain ESP), and 6.1 with per-CPU CHILD_SAs (RFC 9611).
    [ -e "$WORK/ike.built" ] && [ -e "$WORK/ferrogate.built" ] || { echo "binaries not built by this run" >&2; return 1; }
    local t="${CARGO_TARGET_DIR:-$REPO/target}/debug"
    SUITE=cbc REKEYS="${REKEYS:-60}" TMPDIR="$WORK" timeout -k 30 900 bash tests/strongswan/gateway_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== again over an IPv6 outside link (4in6: IKE and ESP over IPv6, charon found by neighbor"
    echo "   discovery), with AES-256-GCM and RSA certificates (IKE_AUTH fragmented through the rings)"
    OUTER=6 AUTH=rsa SUITE=gcm REKEYS=5 TMPDIR="$WORK" timeout -k 30 300 bash tests/strongswan/gateway_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== on demand (start: trap) with ECDSA certificates"
    AUTH=ecdsa START=trap SUITE=gcm TMPDIR="$WORK" timeout -k 30 120 bash tests/strongswan/gateway_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== two ferrogate workers, 4 TCP streams on one SA: strongSwan's replay window refuses nothing"
    WORKERS=2 SUITE=gcm TMPDIR="$WORK" timeout -k 30 180 bash tests/strongswan/gateway_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== charon reauthenticates every 4-8 s, make-before-break (strongSwan 6's default): no echo lost"
    REAUTH=mbb TMPDIR="$WORK" timeout -k 30 180 bash tests/strongswan/gateway_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== ferrogate-ike reauthenticates every ~6 s itself (reauth_time), make-before-break: no echo lost"
    REAUTH=ours REAUTH_S=6 TMPDIR="$WORK" timeout -k 30 180 bash tests/strongswan/gateway_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== strongSwan 6.0 (Debian trixie chroot, raw ESP: plain IP protocol 50)"
    SWAN6=1 REKEYS=5 TMPDIR="$WORK" timeout -k 30 600 bash tests/strongswan/gateway_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== per-resource CHILD_SAs (RFC 9611) against strongSwan 6.1 (Debian sid chroot): one per"
    echo "   ferrogate worker beside the fallback, each worker sealing with its own; rekeys keep them"
    PERCPU=1 SUITE=gcm TMPDIR="$WORK" timeout -k 30 300 bash tests/strongswan/gateway_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike"
}
ha_vs_strongswan() {
    # The reference scenario's VRRP pair: two ferrogate + ferrogate-ike gateways sharing the
    # tunnel and site addresses against charon; one dies, the other takes over (installing the
    # synced CHILD_SAs, seen on the wire, and carrying the synced IKE SA on: charon keeps it)
    # and brings the tunnel back; the first returns and
    # preempts; the first's inside link fails (fault, the other takes both addresses) and comes
    # back. Outages measured under a 50/s ping. Again with 100 ms VRRP advertisements over an
    # IPv6 outside link with the virtual MAC (the neighbours never re-resolve), and without the
    # sync link over IPv6 without it (neighbor discovery finds the new master). ~3.5 min.
    [ -e "$WORK/ike.built" ] && [ -e "$WORK/ferrogate.built" ] || { echo "binaries not built by this run" >&2; return 1; }
    local t="${CARGO_TARGET_DIR:-$REPO/target}/debug"
    TMPDIR="$WORK" timeout -k 30 300 bash tests/strongswan/ha_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== VRRP advertisements every 100 ms, and charon deaf to IKE for 3 s from the failure: the synced"
    echo "   CHILD_SAs must carry the traffic meanwhile (outage under 1.5 s; ~0.33 s measured, 5.9 s without the sync);"
    echo "   the outside link is IPv6 (the tunnel's shared address an IPv6 VRRP router's), the routers use"
    echo "   the virtual MAC, and charon and hA hold the shared addresses as permanent neighbours"
    OUTER=6 VMAC=1 ADVERT=100ms BLOCK_IKE_S=3 MAX_OUTAGE_MS=1500 TMPDIR="$WORK" timeout -k 30 300 bash tests/strongswan/ha_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== again without SA-state sync, over the IPv6 outside link without the virtual MAC (the new master"
    echo "   negotiates before traffic flows; charon finds it by neighbor discovery; the failover only)"
    OUTER=6 SYNC=0 STEPS=12 TMPDIR="$WORK" timeout -k 30 300 bash tests/strongswan/ha_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike"
}
nat_vs_strongswan() {
    # strongSwan behind a NAT (nftables SNAT) whose mapping changes under a 100 pps ping stream:
    # ferrogate-ike follows the peer's authenticated DPD from the new address and port, and the
    # data plane moves its outbound ESP there (RFC 7296 §2.23). Both address and port change,
    # then (GCM) only the port.
    [ -e "$WORK/ike.built" ] && [ -e "$WORK/ferrogate.built" ] || { echo "binaries not built by this run" >&2; return 1; }
    local t="${CARGO_TARGET_DIR:-$REPO/target}/debug"
    TMPDIR="$WORK" timeout -k 30 120 bash tests/strongswan/nat_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike" || return 1
    echo "== again with AES-256-GCM, only the NAT's port changing"
    SUITE=gcm NAT_MOVE=port TMPDIR="$WORK" timeout -k 30 120 bash tests/strongswan/nat_vs_swan.sh "$t/ferrogate" "$t/ferrogate-ike"
}
py_natt_transport() {
    # Transport-mode ESP in UDP from behind NATs: the inner TCP/UDP checksum fix-up
    # (RFC 3948 §3.1.2), judged by scapy's checksum over the addresses on the wire.
    need_fgpcap
    TMPDIR="$WORK" timeout -k 30 300 "$VENV_PY" tests/interop/scapy_natt_transport.py "$FGPCAP"
}
py_fragments() {
    # ESP that scapy encrypted and then fragmented (IPv4, IPv6, ESP in UDP): fgpcap reassembles
    # and decrypts it; an overlapping duplicate fragment costs its datagram only.
    need_fgpcap
    TMPDIR="$WORK" timeout -k 30 300 "$VENV_PY" tests/interop/scapy_fragments.py "$FGPCAP"
}
py_ah_options() {
    need_fgpcap
    TMPDIR="$WORK" timeout -k 30 300 "$VENV_PY" tests/interop/scapy_ah_options.py "$FGPCAP"
}

# ---------------------------------------------------------------------------------------------
# Fuzz smoke.
ensure_cargo_fuzz() {
    if cargo +nightly fuzz --version >/dev/null 2>&1; then
        cargo +nightly fuzz --version
        return 0
    fi
    # Pinned: the newest release may need a newer rustc than the machine's toolchains.
    cargo install cargo-fuzz --locked --version 0.13.2
}

fuzz_target() { cargo +nightly fuzz run "$1" -- -max_total_time="$FUZZ_SECONDS"; }

run_fuzz() {
    if [ ! -d "$REPO/fuzz" ]; then
        skip "fuzz" "no fuzz/ directory yet"
        return 0
    fi
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        skip "fuzz" "no nightly toolchain on this machine (cargo-fuzz needs nightly for -Zsanitizer); none can be fetched here"
        return 0
    fi
    step "install cargo-fuzz" ensure_cargo_fuzz
    local targets
    if ! targets="$(cargo +nightly fuzz list 2>"$WORK/fuzz-list.err")"; then
        step "fuzz list" sh -c "cat '$WORK/fuzz-list.err' >&2; exit 1"
        return 0
    fi
    if [ -z "$targets" ]; then
        skip "fuzz" "fuzz/ has no targets"
        return 0
    fi
    local t
    for t in $targets; do
        step "fuzz $t (${FUZZ_SECONDS}s)" fuzz_target "$t"
    done
}

# ---------------------------------------------------------------------------------------------
echo "ferrogate tests: repo $REPO, CI=${CI:-false}, SEED=$SEED, FUZZ_SECONDS=$FUZZ_SECONDS"

step "apt packages" install_apt_packages
step "python venv (scapy, cryptography)" install_venv
resolve_features
step "cargo fmt --check" cargo_fmt
step "cargo clippy -D warnings" cargo_clippy
step "cargo test" cargo_test
step "build fgpcap (release)" build_fgpcap
step "scapy suites self-test" py_selftest
step "scapy ESP/AH interop vs fgpcap" py_esp
step "scapy attacks vs fgpcap" py_attacks
step "scapy AH (mutable IP options, padded ICV) and IPv6 transport ESP placement vs fgpcap" py_ah_options
step "scapy NAT-T transport checksum fix-up vs fgpcap" py_natt_transport
step "scapy fragmented ESP (outer reassembly) vs fgpcap" py_fragments
step "build ferrogate (DPDK gateway)" build_ferrogate
step "ferrogate on DPDK pcap ports vs scapy" py_gateway_pcap
step "two ferrogates in network namespaces (IPv4+IPv6 inside, ping, iperf3, counters, wire, 1 and 2 workers, hugepages)" netns_site_to_site
step "ferrogate vs DPDK ipsec-secgw (ping, iperf3, wire)" interop_secgw
step "two ferrogates: ICMP time exceeded, too big, pre-fragmentation" netns_icmp
step "strongSwan vs strongSwan in network namespaces (lib.sh harness)" strongswan_vs_strongswan
step "build ferrogate-ike" build_ferrogate_ike
step "ferrogate VRRP vs keepalived, IPv4 and IPv6 (virtual address, ARP/ND, takeovers, control plane tracked)" netns_vrrp
step "ferrogate-ike vs strongSwan (IKEv2, PSK, NAT-T, rekey, DPD, fragmentation)" ike_vs_strongswan
step "ferrogate + ferrogate-ike vs strongSwan (shm channel, 60 rekeys, kills, reauthentications)" gateway_vs_strongswan
step "ferrogate + ferrogate-ike vs strongSwan behind a NAT whose mapping changes" nat_vs_strongswan
step "two ferrogate gateways sharing VIPs by VRRP vs strongSwan (SA-state sync, failover, preemption)" ha_vs_strongswan
step "two ferrogates with IKEv2 (ferrogate-ike on both) and fgctl" netns_site_to_site_ike
run_fuzz

echo
echo "================================ summary ================================"
for r in "${RESULTS[@]}"; do
    echo "  $r"
done
[ "$SKIPPED" -eq 0 ] || echo "($SKIPPED skipped)"
if [ "$FAILED" -ne 0 ]; then
    echo "what the failed steps printed around their failures:"
    for r in "${FAIL_DETAILS[@]}"; do echo "$r"; done
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
