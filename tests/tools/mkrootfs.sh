#!/usr/bin/env bash
# mkrootfs.sh — build a tiny busybox-static root file system as a squashfs image.
#
# Usage: mkrootfs.sh OUT.squashfs [--init CMD] [--file SRC:DEST]... [--text DEST=CONTENT]...
#                                 [--link DEST=TARGET]... [--marker TEXT]
#   OUT.squashfs     image to write (overwritten)
#   --init CMD       written as the executable script /sbin/gantry-init ("#!/bin/sh" + CMD),
#                    so a container can use `lxc.init.cmd = /sbin/gantry-init`. As PID 1 of
#                    its namespace the script only sees the halt signal (SIGPWR) if it traps
#                    it, e.g. --init 'trap "exit 0" PWR; while :; do sleep 1; done'; otherwise
#                    a stop waits for its timeout and SIGKILLs it.
#   --file SRC:DEST  copy host file SRC to DEST inside the image (parents created)
#   --text DEST=TXT  write TXT (plus a newline) to DEST inside the image
#   --link DEST=TGT  create the symlink DEST -> TGT inside the image
#   --marker TEXT    write TEXT to /etc/gantry-marker (different content → different image)
#
# The image holds /bin/busybox plus symlinks (sh, sleep, httpd, cat, echo, ls, ...), the
# directories /dev /proc /sys /tmp /run /var /etc /root /sbin /data, /etc/passwd and /etc/group
# with root, and an /etc/inittab with nothing to run, so LXC's default init (/sbin/init =
# busybox init) idles and halts cleanly on SIGPWR. It is reproducible: same arguments → same
# bytes (-all-root, -mkfs-time 0, fixed mtimes). Needs busybox-static and squashfs-tools.
# Exit 0 on success, 1 when a tool is missing, 2 on bad usage.
set -euo pipefail

usage() { sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
OUT=$1
shift
INIT=""
MARKER=""
FILES=()
TEXTS=()
LINKS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --init) [ $# -ge 2 ] || usage; INIT=$2; shift 2 ;;
    --file) [ $# -ge 2 ] || usage; FILES+=("$2"); shift 2 ;;
    --text) [ $# -ge 2 ] || usage; TEXTS+=("$2"); shift 2 ;;
    --link) [ $# -ge 2 ] || usage; LINKS+=("$2"); shift 2 ;;
    --marker) [ $# -ge 2 ] || usage; MARKER=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "mkrootfs.sh: unknown argument $1" >&2; usage ;;
  esac
done

BUSYBOX=""
for b in /bin/busybox /usr/bin/busybox; do
  if [ -x "$b" ] && file -L "$b" 2>/dev/null | grep -q 'statically linked'; then BUSYBOX=$b; break; fi
done
if [ -z "$BUSYBOX" ]; then
  echo "mkrootfs.sh: no statically linked busybox found (apt-get install busybox-static)" >&2
  exit 1
fi
command -v mksquashfs >/dev/null || { echo "mkrootfs.sh: mksquashfs missing (squashfs-tools)" >&2; exit 1; }

ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
chmod 0755 "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,tmp,run,var,etc,root,usr/bin,usr/sbin,data}
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
for applet in sh ash sleep httpd cat echo ls ps kill mkdir rm cp mv touch test true false \
              grep sed wc head tail env id hostname mount umount date printf wget nc stat \
              readlink ln chmod sync uname tr cut seq find xargs; do
  ln -s busybox "$ROOT/bin/$applet"
done
ln -s ../bin/busybox "$ROOT/sbin/init"
ln -s ../bin/busybox "$ROOT/sbin/halt"
ln -s ../bin/busybox "$ROOT/sbin/poweroff"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"
printf 'gantry-test\n' >"$ROOT/etc/hostname"
# For images started with busybox init (/sbin/init, LXC's default init): nothing to run, and
# a clean exit on the halt signal.
printf '::sysinit:/bin/true\n::shutdown:/bin/true\n' >"$ROOT/etc/inittab"

if [ -n "$INIT" ]; then
  printf '#!/bin/sh\n%s\n' "$INIT" >"$ROOT/sbin/gantry-init"
  chmod 0755 "$ROOT/sbin/gantry-init"
fi
[ -z "$MARKER" ] || printf '%s\n' "$MARKER" >"$ROOT/etc/gantry-marker"
for f in ${FILES[@]+"${FILES[@]}"}; do
  src=${f%%:*}
  dest=${f#*:}
  mkdir -p "$ROOT/$(dirname "$dest")"
  cp "$src" "$ROOT/$dest"
done
for t in ${TEXTS[@]+"${TEXTS[@]}"}; do
  dest=${t%%=*}
  mkdir -p "$ROOT/$(dirname "$dest")"
  printf '%s\n' "${t#*=}" >"$ROOT/$dest"
done
for l in ${LINKS[@]+"${LINKS[@]}"}; do
  dest=${l%%=*}
  mkdir -p "$ROOT/$(dirname "$dest")"
  ln -sfn "${l#*=}" "$ROOT/$dest"
done

# Fixed mtimes so the image bytes depend only on the content.
find "$ROOT" -exec touch -h -d @0 {} +
rm -f "$OUT"
mksquashfs "$ROOT" "$OUT" -all-root -noappend -mkfs-time 0 -all-time 0 -no-progress -quiet >/dev/null
