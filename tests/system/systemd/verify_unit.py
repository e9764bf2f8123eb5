#!/usr/bin/python3
"""Checks systemd/gantryd.service: `systemd-analyze verify` must accept it without a single
warning (verify exits 0 on unknown keys and unparsable values, so any output fails), with
ExecStart pointing at the gantryd that was built, and the settings docs/operator-guide.md relies on must be
there. Fails, never skips, when gantryd is not built or systemd-analyze is missing."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.environ.get("GANTRY_SOURCE_DIR") or sys.exit("FAIL: GANTRY_SOURCE_DIR is not set")
BUILD = os.environ.get("GANTRY_BUILD_DIR") or sys.exit("FAIL: GANTRY_BUILD_DIR is not set")
UNIT = os.path.join(SOURCE, "systemd/gantryd.service")
GANTRYD = os.path.join(BUILD, "gantryd")
INSTALLED_EXEC = "/usr/bin/gantryd"

# setting → required value (a unit may set a key more than once; every value is collected).
REQUIRED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "30",
    "Restart": "always",
    "RestartSec": "2",
    "ExecStart": INSTALLED_EXEC + " --config /etc/gantry/gantryd.json",
    "Wants": "network-online.target",
    "After": "network-online.target",
    "StateDirectory": "gantry",
    "StateDirectoryMode": "0700",
    "KillMode": "process",
    "StartLimitIntervalSec": "0",
}
# Each would give gantryd a private mount namespace (container mounts hidden from the host
# and from the next gantryd) or be inherited by every container; see the unit's comment.
FORBIDDEN = [
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
    "ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset", "ReadWritePaths",
    "ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "MountFlags",
    "NoNewPrivileges", "SystemCallFilter", "SystemCallArchitectures", "RestrictNamespaces",
    "RestrictAddressFamilies", "MemoryDenyWriteExecute", "LockPersonality", "RestrictSUIDSGID",
    "RestrictRealtime", "PrivateUsers", "PrivateNetwork", "Requires", "BindsTo", "Requisite",
]


def settings(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z]+)\s*=\s*(.*?)\s*$", line)
        if m and not line.lstrip().startswith(("#", ";")):
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def main():
    failures = []
    if not os.path.isfile(UNIT):
        sys.exit(f"FAIL: {UNIT} is missing")
    if not (os.path.isfile(GANTRYD) and os.access(GANTRYD, os.X_OK)):
        sys.exit(f"FAIL: {GANTRYD} is not built: build the gantryd target first "
                 "(the unit's ExecStart must resolve to a real binary for verify to mean anything)")
    analyze = shutil.which("systemd-analyze") or sys.exit("FAIL: systemd-analyze not found "
                                                          "(Debian package systemd)")
    with open(UNIT, encoding="utf-8") as f:
        text = f.read()
    found = settings(text)
    for key, value in REQUIRED.items():
        if value not in found.get(key, []):
            failures.append(f"{key}={value} missing (has {found.get(key)})")
    for key in FORBIDDEN:
        if key in found:
            failures.append(f"{key}= must not be set (see the unit's comment)")
    if text.count(INSTALLED_EXEC) != 1:
        failures.append(f"{INSTALLED_EXEC} must appear exactly once (in ExecStart)")

    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "gantryd.service")
        with open(copy, "w", encoding="utf-8") as f:
            f.write(text.replace(INSTALLED_EXEC, os.path.abspath(GANTRYD)))
        r = subprocess.run([analyze, "verify", "--man=no", copy], capture_output=True, text=True,
                           check=False, env=dict(os.environ, SYSTEMD_LOG_COLOR="0"))
        output = (r.stdout + r.stderr).strip()
        print(f"systemd-analyze verify: exit {r.returncode}" + (f"\n{output}" if output else ""))
        if r.returncode != 0:
            failures.append(f"systemd-analyze verify exited {r.returncode}")
        if output:
            failures.append("systemd-analyze verify printed warnings (it exits 0 on unknown keys)")

    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    print("gantryd.service: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
