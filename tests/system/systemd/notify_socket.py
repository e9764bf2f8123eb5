#!/usr/bin/python3
"""Stands in for systemd's notification socket (sd_notify(3)) so a test can watch what
gantryd reports.

  notify_socket.py PATH [--timeout S] [--until TEXT] [--count N] [--pid]

Binds a unix datagram socket at PATH (a leading "@" means an abstract socket, as in
NOTIFY_SOCKET), then prints every datagram it receives as one line on stdout, flushed at
once; the newlines that separate assignments inside a datagram are printed as "\\n"
(e.g. "READY=1\\nSTATUS=connected"). With --pid each line starts with "pid=<sender pid> "
(from SCM_CREDENTIALS), which is what NotifyAccess=main checks.

Start it, wait until PATH exists (it is created by the bind), then start gantryd with
NOTIFY_SOCKET=PATH (and WATCHDOG_USEC=... to ask for keep-alives).

Exits 0 after --timeout seconds (default 30), or as soon as a datagram contains --until, or
after --count datagrams; exits 1 if --until or --count was given and not met in time.
PATH is removed on exit.
"""
import argparse
import os
import select
import socket
import struct
import sys
import time


def main():
    ap = argparse.ArgumentParser(description="sd_notify socket stand-in")
    ap.add_argument("path")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--until", help="exit 0 once a datagram contains this text")
    ap.add_argument("--count", type=int, help="exit 0 after this many datagrams")
    ap.add_argument("--pid", action="store_true", help="prefix lines with the sender's pid")
    args = ap.parse_args()

    address = "\0" + args.path[1:] if args.path.startswith("@") else args.path
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    if not args.path.startswith("@") and os.path.exists(args.path):
        os.unlink(args.path)
    sock.bind(address)
    deadline = time.monotonic() + args.timeout
    received = 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return 1 if (args.until or args.count) else 0
            if not select.select([sock], [], [], left)[0]:
                continue
            data, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(12))
            text = data.decode("utf-8", "backslashreplace").rstrip("\n")
            prefix = ""
            if args.pid:
                pid = 0
                for level, kind, payload in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                        pid = struct.unpack("iII", payload[:12])[0]
                prefix = f"pid={pid} "
            print(prefix + text.replace("\n", "\\n"), flush=True)
            received += 1
            if args.until and args.until in text:
                return 0
            if args.count and received >= args.count:
                return 0
    finally:
        sock.close()
        if not args.path.startswith("@"):
            try:
                os.unlink(args.path)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    sys.exit(main())
