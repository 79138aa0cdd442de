#!/usr/bin/env bash
# The ferrogate demo: two sites in network namespaces joined by two ferrogates over an ESP
# tunnel (AES-256-GCM, static keys for now; IKEv2 arrives with the control plane). It pings and
# runs iperf3 through the tunnel while gateway A prints its counters every second, then tears
# everything down.
#
#   ./deploy/demo.sh [SECONDS]      default 15; run as root on Debian bookworm
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SECS=${1:-15}

need=(build-essential pkg-config clang libclang-dev libipsec-mb-dev libpcap-dev dpdk libdpdk-dev
      iproute2 iputils-ping ethtool tcpdump iperf3)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "demo.sh: needs a Rust toolchain (cargo)" >&2; exit 1; }
echo "== building ferrogate and fgpcap (release)"
cargo build --release -q -p dataplane --features dpdk --bin ferrogate --bin fgpcap
T="${CARGO_TARGET_DIR:-$REPO/target}/release"
exec bash "$REPO/tests/netns/site_to_site.sh" "$T/ferrogate" "$T/fgpcap" --demo "$SECS"
