#!/usr/bin/python3
"""A small block server for tests and benchmarks: serves a directory over HTTP/1.1 with
Range support and injectable faults. Python standard library only.

    block_server.py --root DIR --port PORT [--host 127.0.0.1] [--port-file F]
                    [--cert PEM --key PEM]

--port 0 picks a free port; --port-file F receives the bound port (written atomically once
the socket listens, so a test can wait for the file to appear). Nothing is printed except
fatal errors on stderr. With --cert and --key it speaks HTTPS instead (same interface).

Files: GET/HEAD /<relative path under DIR>. "Range: bytes=A-B" / "bytes=A-" / "bytes=-N"
(one range) gets 206 with Content-Range; a range that starts past the end gets 416 with
"Content-Range: bytes */SIZE". Missing files get 404. Connections are kept alive.

Control endpoints (GET or POST, on the same port; PATH is the URL path, e.g.
/objects/<sha256>; the leading '/' is optional; PATH '*' applies to every path that has no
active fault of its own):

  /_stats                   JSON {"total": body bytes sent, "paths": {PATH: body bytes sent},
                            "requests": {PATH: requests}, "range_requests": {PATH: requests
                            carrying a Range header}}. Bytes are those written to the socket,
                            also when a connection is cut.
  /_fault?path=PATH&...     set faults for PATH (replaces that PATH's previous faults):
      cut_after=N           send N body bytes, then close the connection (count times);
                            N1,N2,... cuts the k-th faulted request after Nk bytes (the
                            last value repeats when count is larger)
      stall_ms=M            after the headers, wait M ms before the body (count times)
      status=S              answer S with an empty body instead of the file (count times)
      count=K               how many requests cut_after / stall_ms / status apply to
                            (default 1; each request consumes one)
      ignore_range=1        answer Range requests with 200 and the whole body (until reset)
      rate_bps=R            throttle the body to about R bytes per second (until reset)
  /_reset                   clear every fault and every counter.

Every control endpoint answers 200 with a JSON body.
"""

import argparse
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 64 * 1024


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.faults = {}
        self.bytes = {}
        self.requests = {}
        self.range_requests = {}
        self.total = 0

    def take_fault(self, path):
        """Returns this request's view of the faults, consuming one use of the counted ones."""
        with self.lock:
            f = self.faults.get(path)
            if not f or not (f["count"] > 0 or f["ignore_range"] or f["rate_bps"]):
                f = self.faults.get("*")
            if not f:
                return {}
            view = {"ignore_range": f.get("ignore_range", False), "rate_bps": f.get("rate_bps", 0)}
            if f.get("count", 0) > 0:
                f["count"] -= 1
                for key in ("stall_ms", "status"):
                    if key in f:
                        view[key] = f[key]
                if "cut_after" in f:
                    cuts = f["cut_after"]
                    view["cut_after"] = cuts[min(f["taken"], len(cuts) - 1)]
                f["taken"] += 1
            return view

    def count_request(self, path, ranged):
        with self.lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            if ranged:
                self.range_requests[path] = self.range_requests.get(path, 0) + 1

    def add_bytes(self, path, n):
        with self.lock:
            self.bytes[path] = self.bytes.get(path, 0) + n
            self.total += n


def norm_path(p):
    if p == "*":
        return p
    return "/" + p.lstrip("/")


def parse_range(header, size):
    """Returns (start, end_inclusive), "bad" for a malformed header, or None for no range."""
    if not header:
        return None
    if not header.startswith("bytes=") or "," in header:
        return "bad"
    spec = header[len("bytes="):].strip()
    first, sep, last = spec.partition("-")
    if not sep:
        return "bad"
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return (max(0, size - n), size - 1) if size > 0 else "unsatisfiable"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return "bad"
    if start >= size or start < 0:
        return "unsatisfiable"
    if end < start:
        return "bad"
    return (start, min(end, size - 1))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "block_server/1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.handle_request(send_body=True)

    def do_HEAD(self):
        self.handle_request(send_body=False)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.handle_request(send_body=True)

    def reply_json(self, code, obj):
        body = json.dumps(obj, sort_keys=True).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_empty(self, code, extra=None):
        self.send_response(code)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def handle_request(self, send_body):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        state = self.server.state
        if path == "/_stats":
            with state.lock:
                obj = {"total": state.total, "paths": dict(state.bytes),
                       "requests": dict(state.requests),
                       "range_requests": dict(state.range_requests)}
            return self.reply_json(200, obj)
        if path == "/_reset":
            with state.lock:
                state.reset()
            return self.reply_json(200, {"ok": True})
        if path == "/_fault":
            return self.set_fault(query)
        self.serve_file(path, send_body)

    def set_fault(self, query):
        if "path" not in query:
            return self.reply_json(400, {"error": "path is required"})
        try:
            f = {"count": int(query.get("count", "1")), "taken": 0,
                 "ignore_range": query.get("ignore_range", "0") not in ("0", ""),
                 "rate_bps": int(query.get("rate_bps", "0"))}
            for key in ("stall_ms", "status"):
                if key in query:
                    f[key] = int(query[key])
            if "cut_after" in query:
                f["cut_after"] = [int(n) for n in query["cut_after"].split(",")]
        except ValueError as e:
            return self.reply_json(400, {"error": str(e)})
        state = self.server.state
        with state.lock:
            state.faults[norm_path(query["path"])] = f
        return self.reply_json(200, {"ok": True})

    def serve_file(self, path, send_body):
        state = self.server.state
        root = self.server.root
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if full != root and not full.startswith(root + os.sep):
            return self.reply_empty(403)
        range_header = self.headers.get("Range")
        state.count_request(path, bool(range_header))
        fault = state.take_fault(path)
        if "status" in fault:
            return self.reply_empty(fault["status"])
        if not os.path.isfile(full):
            return self.reply_empty(404)
        size = os.path.getsize(full)
        rng = None if fault.get("ignore_range") else parse_range(range_header, size)
        if rng == "bad":
            rng = None  # RFC 9110: an unparseable Range is ignored
        if rng == "unsatisfiable":
            return self.reply_empty(416, {"Content-Range": "bytes */%d" % size})
        if rng is None:
            start, length = 0, size
            self.send_response(200)
        else:
            start, length = rng[0], rng[1] - rng[0] + 1
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (rng[0], rng[1], size))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if not send_body:
            return
        self.wfile.flush()
        if "stall_ms" in fault:
            time.sleep(fault["stall_ms"] / 1000.0)
        limit = fault.get("cut_after")
        with open(full, "rb") as f:
            if limit is None and not fault.get("rate_bps"):
                self.send_fast(f, path, start, length)
            else:
                self.send_slow(f, path, start, length, limit, fault.get("rate_bps", 0))

    def send_fast(self, f, path, start, length):
        sent = 0
        try:
            while sent < length:
                n = self.connection.sendfile(f, start + sent, min(length - sent, 1 << 20))
                if not n:
                    break
                sent += n
                self.server.state.add_bytes(path, n)
        except OSError:
            self.close_connection = True

    def send_slow(self, f, path, start, length, limit, rate_bps):
        f.seek(start)
        sent = 0
        began = time.monotonic()
        todo = length if limit is None else min(length, limit)
        try:
            while sent < todo:
                chunk = f.read(min(CHUNK if not rate_bps else max(1, rate_bps // 20), todo - sent))
                if not chunk:
                    break
                self.connection.sendall(chunk)
                sent += len(chunk)
                self.server.state.add_bytes(path, len(chunk))
                if rate_bps:
                    ahead = sent / rate_bps - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            self.close_connection = True
            return
        if limit is not None and limit < length:
            # A hard close mid-body, as a dropped link looks to the client.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description="directory HTTP server with Range and faults")
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port-file")
    ap.add_argument("--cert", help="PEM certificate (chain): serve HTTPS")
    ap.add_argument("--key", help="PEM private key of --cert")
    args = ap.parse_args()

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.root = os.path.realpath(args.root)
    server.state = State()
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
