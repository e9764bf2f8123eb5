#!/usr/bin/env bash
# Runs every benchmark (tests/bench/*/bench.sh BUILD_DIR) in turn; non-zero if any fails.
# Benchmarks report speed; they do not fail for being slow.
set -uo pipefail
BUILD=${1:?usage: run.sh BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
failed=()
for b in "$HERE"/*/bench.sh; do
  [ -e "$b" ] || continue
  name=$(basename "$(dirname "$b")")
  echo "=== bench: $name"
  if ! bash "$b" "$BUILD"; then
    echo "=== bench: $name FAILED" >&2
    failed+=("$name")
  fi
done
if ((${#failed[@]})); then
  echo "failed benchmarks: ${failed[*]}" >&2
  exit 1
fi
echo "all benchmarks ran"
