#!/usr/bin/env bash
# Instructions per packet of the whole ESP path (encap: SA → padded, encrypted, outer header;
# decap: classify → replay → ICV → decrypt → trailer → selectors), counted by callgrind.
# Counts are repeatable on a noisy machine, so later changes can be compared against these.
# Each figure is (Ir(N2) - Ir(N1)) / (N2 - N1), which cancels start-up and SA set-up.
#
#   perf/callgrind.sh [SUITE...]      default: aes-gcm-128 aes-gcm-256 aes-cbc-256-sha256 chacha20-poly1305
#   FEATURES=ipsec-mb perf/callgrind.sh aes-gcm-128@ipsec-mb
#   perf/callgrind.sh spd             instructions per SPD lookup (perf/src/bin/spdcount.rs):
#                                     10 and 100,000 rules, one key at a time / through the
#                                     trie 32 at a time / through a pipeline's flow cache
set -euo pipefail
cd "$(dirname "$0")/.."
feat=()
[ -n "${FEATURES:-}" ] && feat=(--features "$FEATURES")
cargo build --release -q -p perf --bin pathcount --bin spdcount "${feat[@]}"
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
if [ "${1:-}" = spd ]; then
  bin=${CARGO_TARGET_DIR:-target}/release/spdcount
  n1=8192; n2=40960
  printf '%-4s %-7s %8s %14s\n' dir lookup rules instr/lookup
  for dir in out in; do
    for m in "burst 10" "burst 100000" "cached 100000"; do
      set -- $m
      a=$(ir "$dir" "$1" "$2" $n1); b=$(ir "$dir" "$1" "$2" $n2)
      printf '%-4s %-7s %8s %14d\n' "$dir" "$1" "$2" $(( (b - a) / (n2 - n1) ))
    done
  done
  exit 0
fi
printf '%-28s %-6s %6s %12s\n' suite dir size instr/pkt
for s in "${suites[@]}"; do
  for dir in encap decap; do
    for size in 46 552 1420 1500; do
      a=$(ir "$dir" "$s" "$size" $n1); b=$(ir "$dir" "$s" "$size" $n2)
      printf '%-28s %-6s %6s %12d\n' "$s" "$dir" "$size" $(( (b - a) / (n2 - n1) ))
    done
  done
done
