#!/usr/bin/env bash
# Fleet rollout benchmark: GANTRY_FLEET_N real agents (default 1000) on one mosquitto; a
# rollout with waves 1/10/50/100 and no soak against one plain group command (the baseline,
# same run). Prints wall times, broker messages per device, orchestrator CPU and RSS.
set -euo pipefail
BUILD=$(cd "${1:?usage: bench.sh BUILD_DIR}" && pwd)
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$BUILD" "$(cd "$(dirname "$0")/../../.." && pwd)"
