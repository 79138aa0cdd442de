#!/usr/bin/env bash
# Instructions per packet of the whole ESP path (encap: SA → padded, encrypted, outer header;
# decap: classify → replay → ICV → decrypt → trailer → selectors), counted by callgrind.
# Counts are repeatable on a noisy machine, so later changes can be compared against these.
# Each figure is (Ir(N2) - Ir(N1)) / (N2 - N1), which cancels start-up and SA set-up.
#
#   perf/callgrind.sh [SUITE...]      default: aes-gcm-128 aes-gcm-256 aes-cbc-256-sha256 chacha20-poly1305
#   FEATURES=ipsec-mb perf/callgrind.sh aes-gcm-128@ipsec-mb
set -euo pipefail
cd "$(dirname "$0")/.."
feat=()
[ -n "${FEATURES:-}" ] && feat=(--features "$FEATURES")
cargo build --release -q -p perf --bin pathcount "${feat[@]}"
bin=${CARGO_TARGET_DIR:-target}/release/pathcount
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(aes-gcm-128 aes-gcm-256 aes-cbc-256-sha256 chacha20-poly1305)
n1=200; n2=1200
ir() {
  local f; f=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$f" "$bin" "$@" >/dev/null 2>&1
  callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}'
  rm -f "$f"
}
printf '%-28s %-6s %6s %12s\n' suite dir size instr/pkt
for s in "${suites[@]}"; do
  for dir in encap decap; do
    for size in 46 552 1420 1500; do
      a=$(ir "$dir" "$s" "$size" $n1); b=$(ir "$dir" "$s" "$size" $n2)
      printf '%-28s %-6s %6s %12d\n' "$s" "$dir" "$size" $(( (b - a) / (n2 - n1) ))
    done
  done
done
