#!/bin/bash
# Builds the libFuzzer targets with clang in BUILD_DIR/fuzz-build (a second build of only the
# libraries they need, instrumented with -fsanitize=fuzzer-no-link,address,undefined) and runs
# each for SECONDS on a copy of its seed corpus in tests/fuzz/corpus/<target>/.
# Fails if any target crashes; the crashing input is left in BUILD_DIR/fuzz-build/artifacts/.
# Usage: tests/fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET=15]   (180 when GANTRY_LONG=1)
# FUZZ_TARGETS="relay hostile_sensors" runs only those targets.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 BUILD_DIR [SECONDS_PER_TARGET]" >&2
  exit 2
fi
build_dir=$(realpath -m "$1")
seconds=${2:-15}
# ./dev.sh test --long: a longer run of every target.
if [[ ${GANTRY_LONG:-} == 1 ]]; then seconds=180; fi
src=$(cd "$(dirname "$0")/../.." && pwd)
out=$build_dir/fuzz-build
targets=(${FUZZ_TARGETS:-command jws revision relay lxc_config hostile_sensors})

for tool in clang clang++; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found (dev.sh installs it)" >&2; exit 1; }
done

# No build type: the flags below are all there is (-O1 for speed, asserts kept on).
flags="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
cmake -S "$src" -B "$out" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DGANTRY_FUZZ=ON -DGANTRY_TESTS=OFF -DGANTRY_BENCH=OFF >"$out.configure.log" 2>&1 \
  || { cat "$out.configure.log" >&2; echo "fuzz: configuring the clang build failed" >&2; exit 1; }
cmake --build "$out" -j2 --target "${targets[@]/#/fuzz_}"

rm -rf "$out/work" "$out/artifacts"
mkdir -p "$out/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
total=0
crashes=0
for t in "${targets[@]}"; do
  work=$out/work/$t
  mkdir -p "$work"
  cp "$src/tests/fuzz/corpus/$t/"* "$work/"
  log=$out/work/$t.log
  status=0
  "$out/fuzz_$t" "$work" -max_len=65536 -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" \
    >"$log" 2>&1 || status=$?
  units=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  total=$((total + ${units:-0}))
  if [[ $status -ne 0 ]]; then
    crashes=$((crashes + 1))
    echo "fuzz: $t FAILED (exit $status); the last lines of $log:" >&2
    tail -n 60 "$log" >&2
    ls "$out/artifacts/$t-"* 2>/dev/null >&2 || true
  else
    echo "fuzz: $t ok, ${units:-0} inputs in ${seconds}s"
  fi
done
echo "fuzz: ${#targets[@]} targets, $total inputs tried, $crashes crashes"
# tests/tools/tally.hpp's form, collected by ./dev.sh test.
echo "[tally] fuzz: kills survived 0, faults injected 0, inputs tried $total, data lost or corrupted $crashes; ${#targets[@]} targets, ${seconds} s each"
[[ $crashes -eq 0 ]]
