#!/usr/bin/env bash
# Command intake (publish -> QUEUED) against a real gantryd: a stream of update commands,
# then 1,000 while an update downloads and 1,000 while one is TESTING, against one fsync'd
# SQLite commit measured in the same run; idle RssAnon and wake-ups/s. A few minutes.
# GANTRY_BENCH_COMMANDS, GANTRY_BENCH_BUSY_COMMANDS, GANTRY_BENCH_IDLE_S shorten it.
set -euo pipefail
BUILD=$(cd "${1:?usage: bench.sh BUILD_DIR}" && pwd)
SOURCE=$(cd "$(dirname "$0")/../../.." && pwd)
GANTRY_BUILD_DIR=$BUILD GANTRY_SOURCE_DIR=$SOURCE "$BUILD/bench/command_bench" "${GANTRY_BENCH_COMMANDS:-10000}" \
  "${GANTRY_BENCH_BUSY_COMMANDS:-1000}" "${GANTRY_BENCH_IDLE_S:-30}"
