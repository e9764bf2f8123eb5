#!/usr/bin/env bash
# Swap downtime on real LXC (needs root): a real gantryd swaps a busybox container stop-first
# and start-first; the containers time-stamp their own start and halt (swap_bench.cpp).
# Prints stop-first downtime against lxc-stop + lxc-start of the same instances in the same
# run (containers are unprivileged, the default), and the start-first gap. Targets: stop-first
# <= 1.2x baseline and < 100 ms; start-first
# overlaps (gap <= 0). GANTRY_BENCH_ROUNDS (default 5) sets the number of swaps per strategy.
set -euo pipefail
BUILD=${1:?usage: bench.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
BIN="$BUILD/tests/swap_bench"
[ -x "$BIN" ] || { echo "swap: $BIN is not built (target swap_bench)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "swap: needs root (LXC containers)" >&2; exit 1; }
OUT=$(mktemp "${TMPDIR:-/tmp}/gantry-bench-swap-XXXXXX")
trap 'rm -f "$OUT"' EXIT
rc=0
GANTRY_BUILD_DIR="$BUILD" GANTRY_SOURCE_DIR="$SRC" "$BIN" >"$OUT" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
  cat "$OUT" >&2
  exit "$rc"
fi
grep '^swap:' "$OUT"
