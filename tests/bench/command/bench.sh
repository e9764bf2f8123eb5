#!/usr/bin/env bash
# Command-to-QUEUED latency and gantryd's idle RSS (issue: MQTT command channel).
set -euo pipefail
BUILD=${1:?usage: bench.sh BUILD_DIR}
GANTRY_BUILD_DIR=$BUILD "$BUILD/bench/command_bench" "${GANTRY_BENCH_COMMANDS:-1000}"
