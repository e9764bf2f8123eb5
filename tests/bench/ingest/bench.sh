#!/usr/bin/env bash
# Block ingest: 1 GiB in 16 blocks from a local HTTP server (tests/tools/block_server.py).
#   cache:    gantryctl cache fetch (download + hash while streaming + fsync + rename + SQLite)
#   baseline: curl writing each block to a file, then sha256sum over them (no fsync)
# Both in the same run against the same server. Prints MB/s, the ratio and the cache's peak
# RSS. Targets: ratio >= 1.0, peak RSS < 32 MiB. The data lives in a temp dir, removed after.
set -euo pipefail
BUILD=${1:?usage: bench.sh BUILD_DIR}
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
CTL="$BUILD/gantryctl"
BLOCKS=${GANTRY_BENCH_BLOCKS:-16}
BLOCK_MIB=${GANTRY_BENCH_BLOCK_MIB:-64}
PARALLEL=${GANTRY_BENCH_PARALLEL:-4}
[ -x "$CTL" ] || { echo "ingest: $CTL is not built" >&2; exit 1; }
command -v curl >/dev/null || { echo "ingest: curl is missing" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gantry-bench-ingest-XXXXXX")
SERVER_PID=
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

mkdir -p "$WORK/root/objects" "$WORK/baseline"
specs=()
ids=()
for i in $(seq 1 "$BLOCKS"); do
  head -c "$((BLOCK_MIB << 20))" /dev/urandom >"$WORK/block"
  id=$(sha256sum "$WORK/block" | cut -c1-64)
  mv "$WORK/block" "$WORK/root/objects/$id"
  specs+=("$id:$((BLOCK_MIB << 20))")
  ids+=("$id")
done
TOTAL=$((BLOCKS * (BLOCK_MIB << 20)))

/usr/bin/python3 "$SRC/tests/tools/block_server.py" --root "$WORK/root" --port 0 \
  --port-file "$WORK/port" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
PORT=$(cat "$WORK/port")
BASE="http://127.0.0.1:$PORT/objects/"

now() { date +%s.%N; }
mbps() { python3 -c "print(f'{$TOTAL / 1e6 / ($2 - $1):.1f}')"; }

# Baseline: one curl (one connection, blocks in turn), then sha256sum, checked against the ids.
args=()
for id in "${ids[@]}"; do args+=(-o "$WORK/baseline/$id" "$BASE$id"); done
t0=$(now)
curl -sf "${args[@]}"
(cd "$WORK/baseline" && sha256sum -- *) >"$WORK/baseline.sums"
t1=$(now)
while read -r sum name; do
  [ "$sum" = "$name" ] || { echo "ingest: baseline hash mismatch for $name" >&2; exit 1; }
done <"$WORK/baseline.sums"
rm -rf "$WORK/baseline"
BASE_MBPS=$(mbps "$t0" "$t1")

# Cache: gantryctl cache fetch, peak RSS from getrusage of the child.
t0=$(now)
RSS_KB=$(python3 - "$CTL" "$WORK/data" "$BASE" "$PARALLEL" "${specs[@]}" <<'PY'
import resource, subprocess, sys
ctl, data, base, parallel, *specs = sys.argv[1:]
r = subprocess.run([ctl, "cache", "fetch", "--data-dir", data, "--base", base,
                    "--parallel", parallel, *specs], stdout=subprocess.DEVNULL)
if r.returncode != 0:
    sys.exit("ingest: gantryctl cache fetch exited %d" % r.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
t1=$(now)
CACHE_MBPS=$(mbps "$t0" "$t1")
"$CTL" cache verify --data-dir "$WORK/data" >/dev/null

python3 - "$BASE_MBPS" "$CACHE_MBPS" "$RSS_KB" "$BLOCKS" "$BLOCK_MIB" "$PARALLEL" <<'PY'
import sys
base, cache, rss_kb, blocks, mib, par = sys.argv[1:]
base, cache, rss = float(base), float(cache), int(rss_kb) / 1024
ratio = cache / base
print(f"ingest: {blocks} x {mib} MiB over HTTP (loopback), cache --parallel {par}")
print(f"  baseline (curl + sha256sum):            {base:8.1f} MB/s")
print(f"  cache (fetch+hash+fsync+rename+sqlite): {cache:8.1f} MB/s")
print(f"  ratio cache/baseline:                   {ratio:8.2f}  (target >= 1.00: {'met' if ratio >= 1 else 'MISSED'})")
print(f"  cache peak RSS:                         {rss:8.1f} MiB (target < 32: {'met' if rss < 32 else 'MISSED'})")
PY
