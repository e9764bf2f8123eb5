#!/usr/bin/env bash
# Relay benchmark (docs/relay.md): simulated sensors pull an image each over the MQTT relay,
# chunk 1024, window 4, in two scenarios: 200 sensors x 256 KiB and 1,000 sensors x 64 KiB.
# Prints per scenario: total time, payload throughput, the relay's CPU seconds per MiB
# delivered and peak RSS, and, as a baseline in the same run on the same broker,
# mosquitto_pub -> mosquitto_sub carrying as many messages of the same sizes as the relay
# exchanged (its gets plus its data frames); the ratio is relay throughput / baseline.
#   tests/bench/relay/bench.sh BUILD_DIR
# Tunables: RELAY_BENCH_SCENARIOS ("SENSORSxKIB ..."; default "200x256 1000x64"),
# RELAY_BENCH_MAX_CONCURRENT (default: all sensors at once), RELAY_BENCH_TIMEOUT_S (default 600:
# a scenario whose sensors are not all updated by then fails the benchmark).
set -euo pipefail
BUILD=$(realpath "${1:?usage: $0 BUILD_DIR}")
SCENARIOS=${RELAY_BENCH_SCENARIOS:-200x256 1000x64}
CHUNK=1024
WINDOW=4

for bin in gantry-relay-bench-host gantry-sensor-sim; do
  [ -x "$BUILD/$bin" ] || { echo "relay bench: $BUILD/$bin is not built" >&2; exit 1; }
done
for tool in mosquitto mosquitto_pub mosquitto_sub; do
  command -v "$tool" >/dev/null || { echo "relay bench: $tool is not installed" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 1000000
persistence false
log_dest none
CONF
[ "$(id -u)" -eq 0 ] && echo "user root" >>"$WORK/mosquitto.conf"
mosquitto -c "$WORK/mosquitto.conf" &
MOSQ=$!
PIDS+=($MOSQ)
# CPU seconds a process used so far (utime + stime from /proc/PID/stat).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "/proc/$1/stat"; }
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
BROKER="tcp://127.0.0.1:$PORT"

run_scenario() {
SENSORS=$1
SIZE=$(($2 * 1024))
MAX_CONCURRENT=${RELAY_BENCH_MAX_CONCURRENT:-$SENSORS}
TOTAL=$((SENSORS * SIZE))
rm -rf "$WORK/data" "$WORK/sims"
head -c "$SIZE" /dev/urandom >"$WORK/image.bin"
mkdir -p "$WORK/data"

# --- the relay -----------------------------------------------------------------------------
${RELAY_BENCH_WRAP:-} env GANTRY_BUILD_DIR="$BUILD" "$BUILD/gantry-relay-bench-host" --broker "$BROKER" \
  --data-dir "$WORK/data" --image "$WORK/image.bin" --count "$SENSORS" \
  --max-concurrent "$MAX_CONCURRENT" --timeout-s "${RELAY_BENCH_TIMEOUT_S:-600}" >"$WORK/host.out" 2>"$WORK/host.err" &
HOST=$!
PIDS+=($HOST)
for _ in $(seq 300); do grep -q '^ready' "$WORK/host.out" && break; sleep 0.1; done
grep -q '^ready' "$WORK/host.out" || { echo "relay bench: host did not start:" >&2; cat "$WORK/host.err" >&2; exit 1; }
MOSQ_CPU0=$(cpu_s "$MOSQ")
"$BUILD/gantry-sensor-sim" --broker "$BROKER" --count "$SENSORS" --model bench-sensor --seq 1 \
  --slot $((1 << 20)) --max-chunk "$CHUNK" --window "$WINDOW" --state-dir "$WORK/sims" \
  --exit-when-done --quiet >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM=$!
PIDS+=($SIM)
if ! wait "$HOST"; then
  echo "relay bench: the relay did not finish:" >&2
  tail -n 5 "$WORK/host.err" "$WORK/sim.err" >&2
  cat "$WORK/host.out" >&2
  exit 1
fi
RESULT=$(tail -1 "$WORK/host.out")
MOSQ_CPU=$(awk -v a="$MOSQ_CPU0" -v b="$(cpu_s "$MOSQ")" 'BEGIN {printf "%.2f", b - a}')
wait "$SIM" 2>/dev/null || true
SIM_CPU=$(python3 -c 'import json,sys; print("%.2f" % json.loads(sys.stdin.read().strip().splitlines()[-1])["cpu_s"])' <"$WORK/sim.out" 2>/dev/null || echo "?")

# --- baseline: the same bytes through the same broker, mosquitto_pub → mosquitto_sub -------
# As many messages as the relay exchanged: per get one short request line, then its frames.
python3 - "$RESULT" "$CHUNK" >"$WORK/lines" <<'PY'
import json, os, sys
r = json.loads(sys.argv[1])
chunk = int(sys.argv[2])
gets, frames = r["gets"], r["frames"]
get_line = '{"job":1,"off":0,"len":1024,"n":4}'
frame_line = os.urandom(chunk // 2).hex()  # chunk printable bytes
per_get = frames // max(gets, 1)
out, sent = [], 0
for i in range(gets):
    out.append(get_line)
    k = per_get if i < gets - 1 else frames - sent
    out.extend([frame_line] * k)
    sent += k
sys.stdout.write("\n".join(out) + "\n")
PY
MESSAGES=$(wc -l <"$WORK/lines")
mosquitto_sub -p "$PORT" -t bench/baseline -C "$MESSAGES" -W 600 >/dev/null &
SUB=$!
PIDS+=($SUB)
sleep 1  # mosquitto_sub has no readiness signal; its subscription is in well before this
B_START=$(date +%s.%N)
mosquitto_pub -p "$PORT" -t bench/baseline -q 0 -l <"$WORK/lines"
wait "$SUB" || { echo "relay bench: baseline subscriber timed out (messages lost?)" >&2; exit 1; }
B_END=$(date +%s.%N)

python3 - "$RESULT" "$B_START" "$B_END" "$SENSORS" "$SIZE" "$CHUNK" "$WINDOW" "$MAX_CONCURRENT" "$MESSAGES" "$SIM_CPU" "$MOSQ_CPU" "$(nproc)" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
b_start, b_end = float(sys.argv[2]), float(sys.argv[3])
sensors, size, chunk, window, conc, messages = map(int, sys.argv[4:10])
sim_cpu, mosq_cpu, cores = sys.argv[10], sys.argv[11], sys.argv[12]
total = sensors * size
mib = 1024 * 1024
relay_s = r["elapsed_s"]
base_s = b_end - b_start
print(f"relay bench: {sensors} sensors x {size // 1024} KiB, chunk {chunk}, window {window}, "
      f"max_concurrent {conc}")
print(f"  relay:    {r['succeeded']} updated, {relay_s:.2f} s, payload {r['payload_bytes'] / mib:.1f} MiB "
      f"({r['payload_bytes'] - total} B resent), {r['payload_bytes'] / mib / relay_s:.2f} MiB/s, "
      f"{r['frames']} frames, {r['errors']} err replies, {r['coalesced']} repeated gets coalesced")
cpu = r['cpu_user_s'] + r['cpu_sys_s']
print(f"  relay process: CPU {cpu:.2f} s (user {r['cpu_user_s']:.2f}, sys {r['cpu_sys_s']:.2f}), "
      f"{cpu / (r['payload_bytes'] / mib):.3f} CPU s per MiB delivered, peak RSS {r['max_rss_kib'] / 1024:.1f} MiB "
      f"(target < 24 MiB at 1,000 sensors)")
print(f"  CPU s of the whole run on {cores} cores: relay {cpu:.2f}, sensor simulator {sim_cpu}, "
      f"mosquitto {mosq_cpu} (all three share the machine)")
print(f"  baseline: mosquitto_pub -> mosquitto_sub, {messages} messages ({r['gets']} gets + {r['frames']} frames "
      f"of {chunk} B), {base_s:.2f} s, {total / mib / base_s:.2f} MiB/s")
print(f"  relay throughput / baseline: {(total / relay_s) / (total / base_s):.2f} (target >= 0.5)")
PY
}

for s in $SCENARIOS; do
  run_scenario "${s%x*}" "${s#*x}"
done
