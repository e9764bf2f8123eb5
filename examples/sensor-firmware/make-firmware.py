#!/usr/bin/env python3
"""Regenerates the example sensor firmware images in models/<model>/firmware.bin.

The images are stand-ins for real MCU firmware: a readable header (model, version) followed
by deterministic pseudo-random bytes (SHA-256 in counter mode over the header), so the same
script always writes the same bytes and the same block ids. Run it after changing MODELS
and commit the result; sensor.json beside each image carries the version and seq the relay
compares with what a sensor reports.
"""
import hashlib
import json
import pathlib

MODELS = {
    # model: (version, seq, size in bytes)
    "th-sensor": ("2.1.0", 2, 24 * 1024),
    "co2-sensor": ("2.2.0", 2, 40 * 1024),
}

root = pathlib.Path(__file__).resolve().parent / "models"
for model, (version, seq, size) in MODELS.items():
    header = f"GANTRY-EXAMPLE-FW model={model} version={version}\n".encode()
    body = bytearray(header)
    counter = 0
    while len(body) < size:
        body += hashlib.sha256(header + counter.to_bytes(8, "big")).digest()
        counter += 1
    d = root / model
    d.mkdir(parents=True, exist_ok=True)
    (d / "firmware.bin").write_bytes(bytes(body[:size]))
    meta = {"version": version, "seq": seq, "targets": ["*"]}
    (d / "sensor.json").write_text(json.dumps(meta, indent=2) + "\n")
