#!/usr/bin/env bash
# Builds the Debian package from the build tree (cpack -G DEB into a temporary directory) and
# checks what dpkg-deb sees in it: binaries, plugins, unit, configuration (as a conffile),
# schemas and the runtime dependencies.
# Usage: deb_test.sh BUILD_DIR
set -euo pipefail
BUILD=$1
command -v cpack >/dev/null || { echo "FAIL: cpack missing (cmake)"; exit 1; }
command -v dpkg-deb >/dev/null || { echo "FAIL: dpkg-deb missing"; exit 1; }
[ -f "$BUILD/CPackConfig.cmake" ] || { echo "FAIL: $BUILD/CPackConfig.cmake missing (is cmake/Packaging.cmake included?)"; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
if ! (cd "$OUT" && cpack --config "$BUILD/CPackConfig.cmake" -G DEB -B "$OUT" >"$OUT/cpack.log" 2>&1); then
  echo "FAIL: cpack failed:"; cat "$OUT/cpack.log"; exit 1
fi
shopt -s nullglob
debs=("$OUT"/gantry_*.deb)
[ ${#debs[@]} -eq 1 ] || { echo "FAIL: expected one gantry_*.deb, got: ${debs[*]:-none}"; cat "$OUT/cpack.log"; exit 1; }
DEB=${debs[0]}
dpkg-deb -c "$DEB" | awk '{print $6}' >"$OUT/files"
fail=0
for want in ./usr/bin/gantryd ./usr/bin/gantryctl \
            ./usr/lib/gantry/plugins/gantry-runtime-lxc.so ./usr/lib/gantry/plugins/gantry-relay-mqtt.so \
            ./usr/lib/gantry/plugins/gantry-relay-coap.so ./lib/systemd/system/gantryd.service \
            ./etc/gantry/gantryd.json ./etc/gantry/keys/ ./usr/share/gantry/schemas/ \
            ./usr/share/man/man1/gantryctl.1.gz ./usr/share/man/man8/gantryd.8.gz \
            ./usr/share/doc/gantry/README.md ./usr/share/doc/gantry/protocol.md \
            ./usr/share/doc/gantry/operator-guide.md ./usr/share/doc/gantry/security.md \
            ./usr/share/doc/gantry/revision-format.md ./usr/share/doc/gantry/architecture.md \
            ./usr/share/gantry/dashboard/index.html ./usr/share/gantry/dashboard/app.js; do
  grep -qxF "$want" "$OUT/files" || { echo "FAIL: $want not in the package"; fail=1; }
done
[ "$(dpkg-deb -f "$DEB" Package)" = gantry ] || { echo "FAIL: package name is not gantry"; fail=1; }
[ -n "$(dpkg-deb -f "$DEB" Maintainer)" ] || { echo "FAIL: no Maintainer"; fail=1; }
depends=$(dpkg-deb -f "$DEB" Depends)
for dep in libpaho-mqttpp3-1 liblxc1 libcurl4 libsqlite3-0 libssl3 libsystemd0 libcoap3 lxc squashfs-tools; do
  echo "$depends" | tr ',' '\n' | sed 's/^ *//' | grep -qx "$dep" || { echo "FAIL: Depends lacks $dep: $depends"; fail=1; }
done
dpkg-deb -e "$DEB" "$OUT/control"
grep -qx /etc/gantry/gantryd.json "$OUT/control/conffiles" || { echo "FAIL: gantryd.json is not a conffile"; fail=1; }
# The packaged configuration must name the packaged plugin folder.
dpkg-deb -x "$DEB" "$OUT/root"
grep -q '"plugin_dir": "/usr/lib/gantry/plugins"' "$OUT/root/etc/gantry/gantryd.json" || { echo "FAIL: config plugin_dir"; fail=1; }
# `man gantryctl` and `man 8 gantryd` find and render the packaged pages (as after dpkg -i).
for page in "gantryctl" "8 gantryd"; do
  # shellcheck disable=SC2086
  if ! out=$(MANPATH="$OUT/root/usr/share/man" MANWIDTH=80 man $page 2>&1 </dev/null) ||
     ! grep -q "SYNOPSIS" <<<"$out"; then
    echo "FAIL: man $page does not render from the package: $out" | head -5; fail=1
  fi
done
[ $fail -eq 0 ] || { echo "package contents:"; cat "$OUT/files"; exit 1; }
echo "deb ok: $(basename "$DEB"), $(wc -l <"$OUT/files") entries"
