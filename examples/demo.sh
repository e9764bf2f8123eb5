#!/usr/bin/env bash
# The Gantry story in about two minutes, self-contained, on loopback:
#   a broker and a block server start; gantryd starts on a data dir under the repo;
#   revision 1 (two busybox containers, unprivileged) goes to DONE and its web server answers;
#   revision 2 changes one container and only that one is swapped;
#   a broken revision fails its health window and is rolled back automatically;
#   three simulated sensors get their firmware through the relay;
#   a fleet dashboard serves the live page beside the broker (its URL is printed);
#   the final state is printed, and everything the demo started is stopped
#   (GANTRY_DEMO_HOLD=1 keeps it running until Enter, to look at the page).
# Usage: examples/demo.sh BUILD_DIR   (./dev.sh demo builds first and calls this)
set -euo pipefail
BUILD=$(cd "${1:?usage: demo.sh BUILD_DIR}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=${GANTRY_DEMO_DIR:-$ROOT/demo-data}
CTL="$BUILD/gantryctl"
DEVICE=gw-demo
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  # Containers outlive gantryd by design; the demo stops the ones it started.
  if [ -d "$D/agent/containers" ]; then
    for c in $(lxc-ls -P "$D/agent/containers" 2>/dev/null); do lxc-stop -P "$D/agent/containers" -n "$c" -k >/dev/null 2>&1; done
  fi
  grep " $D/" /proc/self/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  for l in $(losetup -a 2>/dev/null | grep "$D/" | cut -d: -f1); do losetup -d "$l" 2>/dev/null; done
}
trap cleanup EXIT

cleanup
rm -rf "$D"
mkdir -p "$D"/{keys,trust,bundles,broker}
chmod 0700 "$D"

say "Starting a loopback MQTT broker and a block server"
MQTT_PORT=$(free_port)
cat > "$D/broker/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
CONF
mosquitto -c "$D/broker/mosquitto.conf" >"$D/broker/log" 2>&1 &
PIDS+=($!)
wait_port "$MQTT_PORT"
BLOCK_PORT=$(free_port)
/usr/bin/python3 -m http.server "$BLOCK_PORT" --bind 127.0.0.1 --directory "$D/bundles" >"$D/blocks.log" 2>&1 &
PIDS+=($!)
wait_port "$BLOCK_PORT"
BROKER="tcp://127.0.0.1:$MQTT_PORT"
echo "broker $BROKER, blocks http://127.0.0.1:$BLOCK_PORT/"

say "Starting the fleet dashboard (docs/dashboard.md)"
DASH_PORT=$(free_port)
"$CTL" dashboard --broker "$BROKER" --listen "127.0.0.1:$DASH_PORT" --db "$D/rollouts.db" \
  >"$D/dashboard.url" 2>"$D/dashboard.log" &
PIDS+=($!)
wait_port "$DASH_PORT"
for _ in $(seq 50); do [ -s "$D/dashboard.url" ] && break; sleep 0.1; done
DASH_URL=$(sed -n 's/^dashboard: //p' "$D/dashboard.url")
echo "open $DASH_URL in a browser on this machine to watch the demo live"

say "Operator key, and three revisions packed from examples/revisions"
"$CTL" keygen --alg EdDSA --kid ops --out "$D/keys" >/dev/null
cp "$D/keys/ops.pem" "$D/trust/"
seq=0
for rev in rev1 rev2 rev-broken; do
  seq=$((seq + 1))
  "$CTL" pack "$ROOT/examples/revisions/$rev" --out "$D/bundles/$rev" --rev "$rev" --seq "$seq" --target "$DEVICE" >/dev/null
  "$CTL" sign --key "$D/keys/ops.key" --kid ops "$D/bundles/$rev/revision.json" --out "$D/bundles/$rev/revision.jws"
  echo "$rev: $(ls "$D/bundles/$rev/objects" | wc -l) blocks, $(du -sh "$D/bundles/$rev/objects" | cut -f1)"
done

say "Starting gantryd (device $DEVICE, data in $D/agent)"
cat > "$D/gantryd.json" <<CONF
{ "device_id": "$DEVICE", "groups": ["demo"], "data_dir": "$D/agent", "plugin_dir": "$BUILD/plugins",
  "mqtt": { "uri": "$BROKER" }, "trust": { "keys_dir": "$D/trust" },
  "update": { "commit_window_s": 3 }, "relay": { "transports": ["mqtt"], "max_concurrent": 2 } }
CONF
"$BUILD/gantryd" --config "$D/gantryd.json" >"$D/gantryd.log" 2>&1 &
PIDS+=($!)
GANTRYD_PID=$!
for _ in $(seq 100); do grep -q "connected to" "$D/gantryd.log" && break; sleep 0.1; done

publish() {  # publish REV: send the signed revision and follow it to its final status
  "$CTL" publish --broker "$BROKER" --device "$DEVICE" --envelope "$D/bundles/$1/revision.jws" \
    --objects-base "http://127.0.0.1:$BLOCK_PORT/$1/objects/" --id "demo-$1" --watch --timeout 180
}
instance() { lxc-ls -P "$D/agent/containers" --running -1 | grep "^$1-" | head -1; }
init_pid() { lxc-info -P "$D/agent/containers" -n "$1" -p -H; }

say "Revision 1: two containers, web and collector"
publish rev1
WEB=$(instance web)
COLLECTOR=$(instance collector)
echo "running: $WEB (init pid $(init_pid "$WEB")), $COLLECTOR (init pid $(init_pid "$COLLECTOR"))"
echo "web answers: $(lxc-attach -P "$D/agent/containers" -n "$WEB" -- wget -qO- http://127.0.0.1:8080/ | head -1)"
WEB_PID=$(init_pid "$WEB")
# Unprivileged by default (docs/container-isolation.md): root inside is an unprivileged host uid.
read -r _ HOST_UID _ < "/proc/$WEB_PID/uid_map"
echo "web runs unprivileged: uid 0 inside is host uid $HOST_UID ($(lxc-attach -P "$D/agent/containers" -n "$WEB" -- cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'))"
[ "$HOST_UID" != 0 ] || { echo "web runs as host root: the demo expects unprivileged containers" >&2; exit 1; }
COLLECTOR_PID=$(init_pid "$COLLECTOR")

say "Revision 2: only collector changes"
publish rev2
WEB2=$(instance web)
COLLECTOR2=$(instance collector)
echo "web:       $WEB2 init pid $(init_pid "$WEB2") (was $WEB_PID: $([ "$(init_pid "$WEB2")" = "$WEB_PID" ] && echo untouched || echo RESTARTED))"
echo "collector: $COLLECTOR2 init pid $(init_pid "$COLLECTOR2") (was $COLLECTOR_PID: swapped)"
echo "collector log (permanent storage) ends with: $(tail -1 "$D"/agent/storage/collector/*/collected.log 2>/dev/null || true)"

say "A broken revision: web exits two seconds after start; the agent rolls back"
publish rev-broken || true
echo "running again: $(lxc-ls -P "$D/agent/containers" --running -1 | tr '\n' ' ')"

say "Relaying firmware to three simulated sensors"
mkdir -p "$D/sensors"
"$BUILD/gantry-sensor-sim" --broker "$BROKER" --device "$DEVICE" --state-dir "$D/sensors" --count 2 \
  --model th-sensor --version 1.0.0 --seq 1 --exit-when-done --quiet &
S1=$!
"$BUILD/gantry-sensor-sim" --broker "$BROKER" --device "$DEVICE" --state-dir "$D/sensors" --count 1 --first 3 \
  --model co2-sensor --version 2.0.0 --seq 1 --exit-when-done --quiet &
S2=$!
PIDS+=("$S1" "$S2")
wait "$S1" "$S2" && echo "3 sensors updated and verified their images (SHA-256)"

say "Final state"
"$CTL" status --broker "$BROKER" --device "$DEVICE"
echo
echo "dashboard: $DASH_URL"
if [ -n "${GANTRY_DEMO_HOLD:-}" ]; then
  say "GANTRY_DEMO_HOLD is set: the broker, agent and dashboard keep running; press Enter to stop"
  read -r _
fi
say "Done: stopping everything the demo started"
