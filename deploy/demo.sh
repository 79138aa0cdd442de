#!/usr/bin/env bash
# The ferrogate demo: the reference scenario. Two sites in network namespaces
# (192.168.10.0/24 <-> 192.168.20.0/24) joined by two ferrogates (DPDK data planes on af_packet
# ports), each with its ferrogate-ike negotiating IKEv2 with PSK: IKE aes256-sha256-modp1024
# (accepted with a warning: weak group), ESP aes256-sha256, IKE lifetime 1h, CHILD_SA lifetime
# 8h, DPD 30 s / 120 s / restart, gateway A starts the tunnel at boot. It shows `fgctl list-sas`,
# pings and runs iperf3 through the tunnel while gateway A prints its counters every second, shows
# `fgctl list-sas` and `fgctl stats` again, then tears everything down.
#
#   ./deploy/demo.sh [SECONDS]          default 15; run as root on Debian bookworm
#   CIPHER=gcm ./deploy/demo.sh         IKE aes256gcm16-prfsha256-curve25519, ESP aes256gcm16
#   STATIC=1 ./deploy/demo.sh           static keys instead of IKEv2
#   HA=1 ./deploy/demo.sh               the scenario's VRRP pair: site A is two ferrogate +
#                                       ferrogate-ike gateways sharing 203.0.113.1 and
#                                       192.168.10.1, site B strongSwan; the master dies under a
#                                       ping, the backup takes over, the first comes back
#                                       (tests/strongswan/ha_vs_swan.sh with DEMO=1)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SECS=${1:-15}

need=(build-essential pkg-config clang libclang-dev libipsec-mb-dev libpcap-dev dpdk libdpdk-dev
      iproute2 iputils-ping ethtool tcpdump iperf3)
if [ -n "${HA:-}" ]; then
    need+=(strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
           libstrongswan-extra-plugins)
fi
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "demo.sh: needs a Rust toolchain (cargo)" >&2; exit 1; }
echo "== building ferrogate, fgpcap, ferrogate-ike and fgctl (release)"
cargo build --release -q -p dataplane --features dpdk --bin ferrogate --bin fgpcap
cargo build --release -q -p controlplane --bin ferrogate-ike --bin fgctl
T="${CARGO_TARGET_DIR:-$REPO/target}/release"
if [ -n "${HA:-}" ]; then
    DEMO=1 exec bash "$REPO/tests/strongswan/ha_vs_swan.sh" "$T/ferrogate" "$T/ferrogate-ike"
fi
if [ -z "${STATIC:-}" ]; then
    export IKE="$T/ferrogate-ike"
    export CIPHER="${CIPHER:-cbc}"
fi
exec bash "$REPO/tests/netns/site_to_site.sh" "$T/ferrogate" "$T/fgpcap" --demo "$SECS"
