"""A fleet of real gantryd processes for system tests and benchmarks.

    broker = Mosquitto(workdir)                 # a real mosquitto on a free loopback port
    fleet = Fleet(build, workdir, 50, [broker.uri], failing=0.2)
    fleet.start_all(); fleet.wait_online()      # every agent's retained P/state is there
    env = fleet.sign("rev-2", 2)                # an empty revision signed with the fleet's key
    fleet.stop(7); fleet.start(7)               # by process id, one device at a time
    fleet.close(); broker.close()

Each device has its own id (dev-0000 …), data dir, config, log file and the groups given.
"Failing" devices trust a different key under the same kid: every update sent to them is
refused (WONTGO bad signature), which is what a device told to refuse looks like.
Processes are started and stopped by pid only.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited on start")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def stop_pid(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Mosquitto:
    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "mosquitto")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.uri = f"tcp://127.0.0.1:{self.port}"
        with open(os.path.join(self.dir, "mosquitto.conf"), "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {self.dir}/\nmax_queued_messages 100000\nmax_inflight_messages 0\n")
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "mosquitto.log"), "ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", os.path.join(self.dir, "mosquitto.conf")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, "mosquitto")

    def close(self):
        stop_pid(self.proc)


class Fleet:
    def __init__(self, build, workdir, n, brokers, group="fleet", failing=0.0, version=4,
                 commit_window_s=1, root="gantry", spread=False):
        self.build, self.workdir, self.n, self.brokers = build, workdir, n, list(brokers)
        self.group, self.root, self.version = group, root, version
        self.ids = [f"dev-{i:04d}" for i in range(n)]
        step = round(1 / failing) if failing > 0 else 0
        self.failing = {self.ids[i] for i in range(n) if step and i % step == 0}
        self.procs = {}
        keys = os.path.join(workdir, "keys")
        self.key = os.path.join(keys, "ops.key")
        trust, bad_trust = os.path.join(workdir, "trust"), os.path.join(workdir, "trust-other")
        if not os.path.exists(self.key):
            self._ctl("keygen", "--alg", "EdDSA", "--kid", "ops", "--out", keys)
            self._ctl("keygen", "--alg", "EdDSA", "--kid", "ops", "--out", os.path.join(workdir, "keys-other"))
            for d, src in ((trust, keys), (bad_trust, os.path.join(workdir, "keys-other"))):
                os.makedirs(d, exist_ok=True)
                shutil.copy(os.path.join(src, "ops.pem"), os.path.join(d, "ops.pem"))
        for k, dev in enumerate(self.ids):
            d = os.path.join(workdir, "devices", dev)
            # spread: device k lists the nodes starting at node k % len, so a cluster's nodes
            # share the fleet (each device still fails over to all of them).
            uris = self.brokers[k % len(self.brokers):] + self.brokers[:k % len(self.brokers)] if spread else self.brokers
            os.makedirs(d, exist_ok=True)
            cfg = {"device_id": dev, "groups": [group], "data_dir": os.path.join(d, "data"),
                   "plugin_dir": os.path.join(build, "plugins"),
                   "mqtt": {"uri": uris if len(uris) > 1 else uris[0],
                            "version": version, "root": root},
                   "trust": {"keys_dir": bad_trust if dev in self.failing else trust},
                   "update": {"commit_window_s": commit_window_s}}
            with open(os.path.join(d, "gantryd.json"), "w") as f:
                json.dump(cfg, f)

    def _ctl(self, *args):
        subprocess.run([os.path.join(self.build, "gantryctl"), *args], check=True,
                       stdout=subprocess.DEVNULL)

    def dir(self, dev):
        return os.path.join(self.workdir, "devices", dev)

    def start(self, dev):
        if dev in self.procs and self.procs[dev].poll() is None:
            return
        log = open(os.path.join(self.dir(dev), "gantryd.log"), "ab")
        self.procs[dev] = subprocess.Popen(
            [os.path.join(self.build, "gantryd"), "--config", os.path.join(self.dir(dev), "gantryd.json")],
            stdout=log, stderr=subprocess.STDOUT)

    def stop(self, dev, sig=signal.SIGTERM):
        p = self.procs.get(dev)
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def start_all(self):
        for dev in self.ids:
            self.start(dev)

    def close(self):
        for dev in self.ids:
            p = self.procs.get(dev)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for dev in self.ids:
            self.stop(dev)

    def log(self, dev):
        with open(os.path.join(self.dir(dev), "gantryd.log"), errors="replace") as f:
            return f.read()

    def sign(self, rev, seq):
        doc = {"rev": rev, "seq": seq, "targets": [f"group:{self.group}"],
               "state": {"#spec": "pantavisor-service-system@1"}}
        path = os.path.join(self.workdir, f"{rev}.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        out = os.path.join(self.workdir, f"{rev}.jws.json")
        self._ctl("sign", "--key", self.key, "--kid", "ops", path, "--out", out)
        return out

    def states(self, timeout=3, brokers=None):
        """The retained P/state of every device, read from each broker given (default: all).
        On a cluster whose retained store is per node the union is taken, newest ts first."""
        out = {}
        for uri in (brokers if brokers is not None else self.brokers):
            host, port = uri.split("//")[1].split(":")
            # One exact topic per device: RabbitMQ delivers no retained message to a wildcard filter.
            topics = [x for d in self.ids for x in ("-t", f"{self.root}/{d}/state")]
            r = subprocess.run(["mosquitto_sub", "-h", host, "-p", port, "-V", "mqttv311", "-v", *topics,
                                "-W", str(timeout)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for line in r.stdout.splitlines():
                topic, _, payload = line.partition(" ")
                try:
                    v = json.loads(payload)
                except ValueError:
                    continue
                dev = topic.split("/")[-2]
                if dev not in out or str(v.get("ts", "")) > str(out[dev].get("ts", "")):
                    out[dev] = v
        return out

    def wait_online(self, timeout=120, devices=None):
        want = set(devices or self.ids)
        end = time.time() + timeout
        while time.time() < end:
            if want <= set(self.states(2)):
                return
            time.sleep(1)
        raise RuntimeError(f"devices without state after {timeout} s: {sorted(want - set(self.states(2)))[:10]}")

    def publish(self, topic, payload):
        host, port = self.brokers[0].split("//")[1].split(":")
        subprocess.run(["mosquitto_pub", "-h", host, "-p", port, "-V", "mqttv311", "-q", "1",
                        "-t", topic, "-m", payload], check=True)
