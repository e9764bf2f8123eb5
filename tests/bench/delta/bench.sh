#!/usr/bin/env bash
# Delta updates with chunked blocks (docs/chunked-blocks.md). A realistic tree: a few thousand
# files from /usr/share (about GANTRY_BENCH_DELTA_MIB MiB of files, default 180, which makes a
# squashfs image of roughly 64 MiB), packed with `gantryctl pack` (image, chunk index, chunk
# store). For three changes -- one file edited, a package's worth of files added (a copy of one
# /usr/share/doc-sized subtree), every file touched (one byte appended to each) -- it prints:
#   gantry: bytes the block server served for `gantryctl cache fetch` of the new image into a
#           cache holding the old one (index + missing chunks), and the time;
#   casync: bytes served for `casync extract --seed=<old image>` of the new image from a casync
#           store over the same loopback HTTP server, and the time;
#   full:   the new image's size.
# Target: gantry <= 1.1 x casync in every case. Then the whole-block ingest check: the ingest
# benchmark (tests/bench/ingest, now asking for a chunk index first) at 4 x 64 MiB.
set -euo pipefail
BUILD=${1:?usage: bench.sh BUILD_DIR}
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
CTL="$BUILD/gantryctl"
MIB=${GANTRY_BENCH_DELTA_MIB:-180}
[ -x "$CTL" ] || { echo "delta: $CTL is not built" >&2; exit 1; }
command -v casync >/dev/null || { echo "delta: casync is missing (apt-get install casync)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gantry-bench-delta-XXXXXX")
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

# The tree: regular files of /usr/share in path order until MIB MiB.
mkdir -p "$WORK/src/app/rootfs"
cp "$SRC/examples/revisions/rev1/collector/lxc.container.conf" "$WORK/src/app/"
printf '{"#spec": "service-manifest-run@1", "name": "app", "type": "lxc", "group": "app"}\n' \
  >"$WORK/src/app/run.json"
find /usr/share -xdev -type f -size -4M -readable -printf '%s %p\n' 2>/dev/null |
  LC_ALL=C sort -k2 | awk -v max=$((MIB << 20)) 'NF == 2 && !full { if (t + $1 > max) full = 1; else { t += $1; print $2 } }' \
  >"$WORK/files"
tar -C / -cf - --files-from=<(sed 's|^/||' "$WORK/files") | tar -C "$WORK/src/app/rootfs" -xf -
NFILES=$(wc -l <"$WORK/files")

mkdir -p "$WORK/www"
/usr/bin/python3 "$SRC/tests/tools/block_server.py" --root "$WORK/www" --port 0 \
  --port-file "$WORK/port" 2>/dev/null &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
PORT=$(cat "$WORK/port")
URL="http://127.0.0.1:$PORT"

now() { date +%s.%N; }
served() { curl -sf "$URL/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
image_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["app/root.squashfs"])' "$1/state.json"; }

pack() {  # pack NAME: the source tree into $WORK/www/<NAME>/ (objects/ shared across revisions)
  "$CTL" pack "$WORK/src" --out "$WORK/www/bundle" --rev "$1" >/dev/null
  cp "$WORK/www/bundle/state.json" "$WORK/state-$1.json"
  local id; id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["app/root.squashfs"])' "$WORK/state-$1.json")
  cp "$WORK/www/bundle/objects/$id" "$WORK/$1.img"
  casync make --store="$WORK/www/castr" "$WORK/$1.caibx" "$WORK/$1.img" >/dev/null
  echo "$id"
}

OLD=$(pack r1)
OLD_SIZE=$(stat -c %s "$WORK/r1.img")
"$CTL" cache fetch --data-dir "$WORK/seed" --base "$URL/bundle/objects/" "$OLD:$OLD_SIZE" >/dev/null 2>&1
echo "delta: $NFILES files, $((MIB)) MiB of /usr/share, image $OLD_SIZE B"
printf '%-22s %12s %8s %12s %8s %12s %7s\n' CHANGE GANTRY_B TIME_S CASYNC_B TIME_S FULL_B RATIO

run_case() {  # run_case NAME: the tree was changed; pack, then fetch with both tools
  local name=$1 id size t0 t1 t2 t3 g c
  id=$(pack "$name")
  size=$(stat -c %s "$WORK/$name.img")
  rm -rf "$WORK/data" && cp -a "$WORK/seed" "$WORK/data"
  curl -sf "$URL/_reset" >/dev/null
  t0=$(now)
  "$CTL" cache fetch --data-dir "$WORK/data" --base "$URL/bundle/objects/" "$id:$size" >/dev/null 2>&1
  t1=$(now)
  g=$(served)
  "$CTL" cache verify --data-dir "$WORK/data" >/dev/null
  curl -sf "$URL/_reset" >/dev/null
  rm -f "$WORK/out.img"
  t2=$(now)
  casync extract --store="$URL/castr" --seed="$WORK/r1.img" "$WORK/$name.caibx" "$WORK/out.img" >/dev/null 2>&1
  t3=$(now)
  c=$(served)
  cmp -s "$WORK/out.img" "$WORK/$name.img" || { echo "delta: casync extracted a wrong image" >&2; exit 1; }
  printf '%-22s %12s %8.2f %12s %8.2f %12s %7.2f\n' "$name" "$g" "$(echo "$t1 - $t0" | bc)" "$c" \
    "$(echo "$t3 - $t2" | bc)" "$size" "$(echo "scale=4; $g / $c" | bc)"
}

# 1. One file edited (a line appended to a text file in the middle of the tree).
f=$(sed -n "$((NFILES / 2))p" "$WORK/files")
echo "edited by the delta benchmark" >>"$WORK/src/app/rootfs$f"
run_case one-file-edited
# 2. A package's worth of files added: a copy of the largest /usr/share/doc/<pkg> not in the tree.
pkg=$(du -s /usr/share/doc/* 2>/dev/null | sort -n | tail -1 | cut -f2)
mkdir -p "$WORK/src/app/rootfs/opt/added"
cp -rL "$pkg" "$WORK/src/app/rootfs/opt/added/" 2>/dev/null || true
run_case package-added
# 3. Every file touched: one byte appended to each.
find "$WORK/src/app/rootfs" -type f -exec sh -c 'for f; do printf x >>"$f"; done' _ {} +
run_case every-file-touched

echo "delta: whole-block ingest (no index), tests/bench/ingest at 4 x 64 MiB:"
GANTRY_BENCH_BLOCKS=4 GANTRY_BENCH_BLOCK_MIB=64 bash "$SRC/tests/bench/ingest/bench.sh" "$BUILD"
