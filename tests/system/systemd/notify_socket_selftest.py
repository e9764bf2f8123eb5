#!/usr/bin/python3
"""Checks notify_socket.py against the real sd_notify client (systemd-notify) and a raw
datagram, so that the gantryd READY/WATCHDOG test builds on a tool known to work."""
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify")
        listener = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "notify_socket.py"), path, "--timeout", "20",
             "--until", "WATCHDOG=1", "--pid"], stdout=subprocess.PIPE, text=True)
        try:
            end = time.monotonic() + 10
            while not os.path.exists(path):
                if time.monotonic() > end or listener.poll() is not None:
                    sys.exit("FAIL: notify_socket.py did not bind its socket")
                time.sleep(0.02)
            notify = subprocess.run(["systemd-notify", "--ready", "--status=warming up"],
                                    env=dict(os.environ, NOTIFY_SOCKET=path),
                                    capture_output=True, text=True, check=False)
            if notify.returncode != 0:
                sys.exit(f"FAIL: systemd-notify exited {notify.returncode}: {notify.stderr}")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(b"WATCHDOG=1", path)
            out, _ = listener.communicate(timeout=15)
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait()
        print(out, end="")
        # systemd-notify also sends BARRIER=1 (with a pipe fd) to wait until it was read.
        lines = [l for l in out.splitlines() if not l.endswith(" BARRIER=1")]
        failures = []
        if listener.returncode != 0:
            failures.append(f"notify_socket.py exited {listener.returncode}")
        if len(lines) != 2:
            failures.append(f"expected 2 lines, got {len(lines)}")
        elif not ("READY=1" in lines[0] and "STATUS=warming up" in lines[0]):
            failures.append(f"first line lacks READY=1 and STATUS: {lines[0]!r}")
        elif lines[1] != f"pid={os.getpid()} WATCHDOG=1":
            failures.append(f"second line should be our pid and WATCHDOG=1: {lines[1]!r}")
        if os.path.exists(path):
            failures.append("socket file left behind")
        for f in failures:
            print(f"FAIL: {f}", file=sys.stderr)
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
