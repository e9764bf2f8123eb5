#!/usr/bin/env bash
# Gantry's one entry point for developers and CI.
#   ./dev.sh demo    install what is missing, build, run the demo
#   ./dev.sh test    install what is missing, build, run every test (non-zero on any failure);
#                    --long runs the reliability tests with long counts (300+ kills)
#   ./dev.sh bench   install what is missing, build, run the benchmarks
#   ./dev.sh build   install what is missing, build
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
BUILD=${GANTRY_BUILD_DIR:-$ROOT/build}
JOBS=$(nproc)

# Debian 12 packages: build deps, then what the tests run for real (broker, HTTP server,
# LXC, squashfs, busybox, coap-client, an independent JSON Schema validator, clang for fuzzing).
PACKAGES=(
  cmake g++ make pkg-config
  libpaho-mqttpp-dev libpaho-mqtt-dev lxc lxc-dev nlohmann-json3-dev libsqlite3-dev sqlite3
  libssl-dev openssl libcurl4-openssl-dev curl libgtest-dev libgmock-dev libbenchmark-dev
  libcoap3-dev libcoap3-bin libsystemd-dev libexpected-dev libcli11-dev
  mosquitto mosquitto-clients squashfs-tools busybox-static python3 python3-jsonschema
  clang libclang-rt-14-dev systemd file procps iproute2 util-linux ccache
  casync rabbitmq-server chromium chromium-driver python3-selenium libcpp-httplib-dev man-db xxd
)

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "dev.sh: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
      echo "dev.sh: missing packages and not root; run as root or install: ${missing[*]}" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  # The broker is started by the tests themselves on free ports; the packaged one is not needed.
  systemctl disable --now mosquitto >/dev/null 2>&1 || true
  # Likewise RabbitMQ: the fleet tests start their own three-node cluster on free ports.
  systemctl disable --now rabbitmq-server epmd.socket epmd.service >/dev/null 2>&1 || true
}

build() {
  install_missing
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$BUILD" -j"$JOBS"
}

cmd=${1:-}
shift || true
case "$cmd" in
  build) build "$@" ;;
  test)
    timeout=900
    if [ "${1:-}" = "--long" ]; then
      shift
      export GANTRY_LONG=1
      timeout=14400
    fi
    build
    cd "$BUILD"
    rc=0
    # A test that fails is run once more: the system tests share two cores with real brokers,
    # LXC and fsync-heavy SQLite, and a timing slip must not hide the rest of the run. Every
    # failed first run stays visible in the output (and in Testing/Temporary/LastTest.log).
    ctest --output-on-failure --timeout "$timeout" -j1 --repeat until-pass:2 "$@" || rc=$?
    # The reliability tests' counts (tests/tools/tally.hpp), as the run's last lines.
    grep -h '^\[tally\]' Testing/Temporary/LastTest.log 2>/dev/null || true
    exit "$rc"
    ;;
  demo)
    build
    exec "$ROOT/examples/demo.sh" "$BUILD" "$@"
    ;;
  bench)
    build
    exec "$ROOT/tests/bench/run.sh" "$BUILD" "$@"
    ;;
  *)
    echo "usage: $0 demo|test|bench|build" >&2
    exit 2
    ;;
esac
