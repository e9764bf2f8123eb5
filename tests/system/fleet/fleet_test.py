#!/usr/bin/python3
"""Fleet rollouts with 50 real gantryd agents on a real mosquitto (docs/rollouts.md).

  fleet_test.py waves --build B --source S   waves advance only when the previous wave is final;
                                             an offline device ends TIMED_OUT and its retry
                                             succeeds; SIGKILLed orchestrator restarted: every
                                             device installs exactly once; summaries schema-valid
  fleet_test.py abort --build B --source S   20% failing, --abort-failed 10%: pauses inside wave 1,
                                             no device outside it gets the command; --on-abort
                                             rollback returns the updated ones
  fleet_test.py rabbitmq --build B --source S  GANTRY_FLEET_N (30 here) agents on a three-node
                                             RabbitMQ cluster (tests/tools/rabbit_cluster.py), each
                                             given all three nodes; one node SIGKILLed mid-rollout:
                                             its agents fail over, the rollout completes, every
                                             device installs once, the summary is schema-valid
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

N = int(os.environ.get("GANTRY_FLEET_N", "50"))
N_RABBIT = int(os.environ.get("GANTRY_FLEET_N", "30"))


def main():
    # ctest's time-out sends SIGTERM: stop the fleet and the broker on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["waves", "abort", "rabbitmq"])
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.source, "tests", "tools"))
    global fleetlib
    import fleet as fleetlib
    work = tempfile.mkdtemp(prefix="gantry-fleet-")
    if a.scenario == "rabbitmq":
        import rabbit_cluster
        t0 = time.time()
        broker = rabbit_cluster.RabbitCluster(work)
        print(f"[tally] fleet rabbitmq: three-node cluster formed in {time.time() - t0:.1f} s", flush=True)
        fl = fleetlib.Fleet(a.build, work, N_RABBIT, broker.uris, spread=True)
    else:
        broker = fleetlib.Mosquitto(work)
        failing = 0.2 if a.scenario == "abort" else 0.0
        fl = fleetlib.Fleet(a.build, work, N, [broker.uri], failing=failing)
    t = Tester(a, work, broker, fl)
    try:
        fl.start_all()
        fl.wait_online(180)
        {"waves": t.waves, "abort": t.abort, "rabbitmq": t.rabbitmq}[a.scenario]()
    finally:
        t.stop_sub()
        fl.close()
        broker.close()
    if t.failures:
        print("FAILED:\n  " + "\n  ".join(t.failures))
        print("work dir kept: " + work)
        sys.exit(1)
    subprocess.run(["rm", "-rf", work])
    print("PASS")


class Tester:
    def __init__(self, args, work, broker, fl):
        self.a, self.work, self.broker, self.fl = args, work, broker, fl
        self.db = os.path.join(work, "rollouts.db")
        self.failures = []
        self.sub = None

    def check(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            self.failures.append(what)

    def ctl(self, *args, timeout=300):
        r = subprocess.run([os.path.join(self.a.build, "gantryctl"), *args], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        with open(os.path.join(self.work, "gantryctl.log"), "a") as f:
            f.write(f"$ gantryctl {' '.join(args)}\n{r.stdout}\n[exit {r.returncode}]\n")
        return r

    def start(self, name, env, *extra, timeout=300):
        return self.ctl("rollout", "start", name, "--revision", env, "--group", "fleet", *self.broker_args(),
                        "--db", self.db, *extra, timeout=timeout)

    def broker_args(self):
        uris = getattr(self.broker, "uris", None) or [self.broker.uri]
        return [x for u in uris for x in ("--broker", u)]

    def summary(self, name):
        r = self.ctl("rollout", "status", name, "--db", self.db, "--json")
        return json.loads(r.stdout)

    def watch_summaries(self, name):
        self.sub_path = os.path.join(self.work, f"summaries-{name}.txt")
        self.sub = subprocess.Popen(["mosquitto_sub", "-p", str(self.broker.port), "-V", "mqttv311",
                                     "-t", f"gantry/rollouts/{name}/status"],
                                    stdout=open(self.sub_path, "w"), stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def stop_sub(self):
        if self.sub is not None and self.sub.poll() is None:
            self.sub.terminate()
            self.sub.wait()
        self.sub = None

    def check_summaries(self, name, ordered_waves):
        self.stop_sub()
        lines = [l for l in open(self.sub_path).read().splitlines() if l.strip()]
        self.check(len(lines) > 0, f"{name}: summaries published on gantry/rollouts/{name}/status")
        v = subprocess.run(["/usr/bin/python3", os.path.join(self.a.source, "tests/unit/schemas/check_schemas.py"),
                            "validate", "--source", self.a.source, "--schema", "rollout-status", "--lines",
                            self.sub_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.check(v.returncode == 0, f"{name}: every summary is schema-valid {v.stdout[-300:]}")
        if ordered_waves:
            bad = []
            for l in lines:
                s = json.loads(l)
                for k in range(1, len(s["waves"])):
                    later = s["waves"][k]
                    touched = later["succeeded"] + later["failed"] + later["timed_out"]
                    if touched and s["waves"][k - 1]["pending"]:
                        bad.append(l[:200])
            self.check(not bad, f"{name}: no wave has results while an earlier wave is pending {bad[:1]}")
        return json.loads(lines[-1]) if lines else None

    def check_matches_states(self, name, rev):
        s = self.summary(name)
        states = self.fl.states()
        wrong = [d for d, v in s["devices"].items()
                 if (v["status"] in ("SUCCEEDED", "SKIPPED")) != (states.get(d, {}).get("rev") == rev)]
        self.check(not wrong, f"{name}: SUCCEEDED/SKIPPED devices are exactly those whose P/state says {rev} {wrong[:5]}")
        return s

    def installs(self, dev, rev):
        return self.fl.log(dev).count(f"revision {rev} committed")

    # --- scenarios ---------------------------------------------------------------------------------

    def waves(self):
        env2 = self.fl.sign("rev-2", 2)
        self.watch_summaries("r-waves")
        r = self.start("r-waves", env2, "--waves", "10,50,100", "--soak", "2s", "--timeout", "60s")
        self.check(r.returncode == 0 and "r-waves: DONE" in r.stdout, f"r-waves: start exits 0 with DONE (exit {r.returncode})")
        final = self.check_summaries("r-waves", True)
        self.check(final is not None and final["state"] == "DONE", "r-waves: the last summary says DONE")
        s = self.check_matches_states("r-waves", "rev-2")
        self.check([w["size"] for w in s["waves"]] == [N * 10 // 100, N * 50 // 100 - N * 10 // 100, N - N * 50 // 100],
                   f"r-waves: wave sizes {[w['size'] for w in s['waves']]} follow 10/50/100%")
        self.check(all(v["status"] == "SUCCEEDED" for v in s["devices"].values()) and len(s["devices"]) == N,
                   f"r-waves: all {N} devices SUCCEEDED")

        # An offline device: TIMED_OUT, and its retry succeeds once it is back.
        off = self.fl.ids[-1]
        self.fl.stop(off)
        env3 = self.fl.sign("rev-3", 3)
        r = self.start("r-offline", env3, "--waves", "100", "--soak", "0s", "--timeout", "8s", "--retries", "0",
                       "--abort-failed", "50%")
        s = self.summary("r-offline")
        self.check(s["devices"][off]["status"] == "TIMED_OUT", f"r-offline: offline {off} ends TIMED_OUT ({s['devices'][off]})")
        self.check(sum(v["status"] == "SUCCEEDED" for v in s["devices"].values()) == N - 1, "r-offline: the others SUCCEEDED")
        self.fl.start(off)
        self.fl.wait_online(60, [off])
        r = self.ctl("rollout", "retry-failed", "r-offline", "--db", self.db)
        s = self.summary("r-offline")
        self.check(r.returncode == 0 and s["devices"][off]["status"] == "SUCCEEDED" and s["state"] == "DONE",
                   f"r-offline: retry-failed exits 0 and {off} SUCCEEDED ({s['devices'][off]}, exit {r.returncode})")
        self.check(self.installs(off, "rev-3") == 1, f"r-offline: {off} installed rev-3 once")
        self.check_matches_states("r-offline", "rev-3")

        # SIGKILL of the orchestrator at random points; every device installs exactly once.
        env4 = self.fl.sign("rev-4", 4)
        self.watch_summaries("r-kill")
        rnd = random.Random(int(os.environ.get("GANTRY_SEED", str(int(time.time())))))
        kills = 0
        for i in range(4):
            p = subprocess.Popen([os.path.join(self.a.build, "gantryctl"), "rollout", "start", "r-kill", "--revision",
                                  env4, "--group", "fleet", "--broker", self.broker.uri, "--db", self.db, "--waves",
                                  "10,30,60,100", "--soak", "1s", "--timeout", "60s"],
                                 stdout=open(os.path.join(self.work, "kill.log"), "a"), stderr=subprocess.STDOUT)
            time.sleep(rnd.uniform(1.0, 6.0))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait()
        print(f"[tally] fleet r-kill: {kills} SIGKILLs of the orchestrator", flush=True)
        r = self.start("r-kill", env4, "--waves", "10,30,60,100", "--soak", "1s", "--timeout", "60s")
        self.check(r.returncode == 0, f"r-kill: the restarted orchestrator finishes DONE (exit {r.returncode})")
        self.check_summaries("r-kill", True)
        twice = [d for d in self.fl.ids if self.installs(d, "rev-4") != 1]
        self.check(not twice, f"r-kill: every device installed rev-4 exactly once {twice[:5]}")
        self.check_matches_states("r-kill", "rev-4")

    def abort(self):
        env2 = self.fl.sign("rev-2", 2)
        r = self.start("r-base", env2, "--waves", "100", "--soak", "0s", "--abort-failed", "100%")
        s = self.summary("r-base")
        failed = {d for d, v in s["devices"].items() if v["status"] == "FAILED"}
        self.check(failed == self.fl.failing, f"r-base: exactly the refusing devices FAILED ({len(failed)})")

        env3 = self.fl.sign("rev-3", 3)
        self.watch_summaries("r-pause")
        r = self.start("r-pause", env3, "--waves", "10,50,100", "--soak", "1s", "--abort-failed", "10%",
                       "--min-executed", "3", "--timeout", "60s")
        self.check(r.returncode == 1 and "PAUSED" in r.stdout, f"r-pause: start exits 1 with PAUSED (exit {r.returncode})")
        self.check_summaries("r-pause", True)
        s = self.summary("r-pause")
        wave1 = {d for d, v in s["devices"].items() if v.get("wave") == 1}
        self.check(s["state"] == "PAUSED" and s["wave"] == 1, f"r-pause: PAUSED inside wave 1 ({s['state']}, wave {s['wave']})")
        outside = [d for d in self.fl.ids if d not in wave1 and "r-pause." in self.fl.log(d)]
        self.check(not outside, f"r-pause: no device outside wave 1 received the command {outside[:5]}")
        r = self.ctl("rollout", "abort", "r-pause", "--db", self.db)
        self.check(r.returncode == 0 and self.summary("r-pause")["state"] == "ABORTED", "r-pause: abort by the operator")

        before = {d: v.get("rev") for d, v in self.fl.states().items()}
        env4 = self.fl.sign("rev-4", 4)
        r = self.start("r-rollback", env4, "--waves", "20,100", "--soak", "1s", "--abort-failed", "10%",
                       "--min-executed", "3", "--timeout", "60s", "--on-abort", "rollback")
        s = self.summary("r-rollback")
        self.check(r.returncode == 1 and s["state"] == "ABORTED", f"r-rollback: ABORTED (exit {r.returncode})")
        took = [d for d, v in s["devices"].items() if v["status"] == "SUCCEEDED"]
        self.check(len(took) > 0, f"r-rollback: some devices took rev-4 before the abort ({len(took)})")
        time.sleep(2)
        after = self.fl.states()
        back = [d for d in took if after[d].get("rev") == before.get(d) and self.installs(d, "rev-4") == 1]
        self.check(len(back) == len(took), f"r-rollback: the updated devices are back on their previous revision "
                                           f"({len(back)} of {len(took)})")
        never = [d for d, v in s["devices"].items() if v.get("wave") != 1 and "r-rollback." in self.fl.log(d)]
        self.check(not never, f"r-rollback: devices outside wave 1 never got rev-4 {never[:5]}")

    def rabbitmq(self):
        n, cl = len(self.fl.ids), self.broker
        env2 = self.fl.sign("rev-2", 2)
        # The orchestrator lists node 0 first; node 1 is killed, with a third of the agents on it.
        victim = 1
        on_victim = [d for k, d in enumerate(self.fl.ids) if k % 3 == victim]
        log = open(os.path.join(self.work, "rollout-rabbit.log"), "w")
        t0 = time.time()
        p = subprocess.Popen([os.path.join(self.a.build, "gantryctl"), "rollout", "start", "r-rabbit", "--revision",
                              env2, "--group", "fleet", *self.broker_args(), "--db", self.db, "--waves", "10,50,100",
                              "--soak", "2s", "--timeout", "120s"], stdout=log, stderr=subprocess.STDOUT)
        # Kill the node once the first wave is done and the next one is under way.
        killed = False
        while p.poll() is None and time.time() - t0 < 240:
            s = self.summary("r-rabbit") if os.path.exists(self.db) else None
            done = sum(v["status"] == "SUCCEEDED" for v in (s or {}).get("devices", {}).values()) if s else 0
            if done >= max(1, n // 10):
                cl.kill(victim)
                killed = True
                print(f"[tally] fleet rabbitmq: node {cl.names[victim]} SIGKILLed with {done}/{n} devices done "
                      f"at {time.time() - t0:.1f} s", flush=True)
                break
            time.sleep(0.5)
        self.check(killed, "rabbitmq: a node was killed while the rollout ran")
        try:
            rc = p.wait(300)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        print(f"[tally] fleet rabbitmq: rollout of {n} agents on the cluster took {time.time() - t0:.1f} s "
              f"(exit {rc})", flush=True)
        self.check(rc == 0, f"rabbitmq: the rollout finishes DONE despite the lost node (exit {rc})")
        s = self.summary("r-rabbit")
        self.check(s["state"] == "DONE" and len(s["devices"]) == n and
                   all(v["status"] == "SUCCEEDED" for v in s["devices"].values()),
                   f"rabbitmq: all {n} devices SUCCEEDED ({s['state']}, "
                   f"{sorted((d, v['status']) for d, v in s['devices'].items() if v['status'] != 'SUCCEEDED')[:5]})")
        twice = [d for d in self.fl.ids if self.installs(d, "rev-2") != 1]
        self.check(not twice, f"rabbitmq: every device installed rev-2 exactly once {twice[:5]}")
        path = os.path.join(self.work, "summary-rabbit.json")
        with open(path, "w") as f:
            f.write(json.dumps(s) + "\n")
        v = subprocess.run(["/usr/bin/python3", os.path.join(self.a.source, "tests/unit/schemas/check_schemas.py"),
                            "validate", "--source", self.a.source, "--schema", "rollout-status", "--lines", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.check(v.returncode == 0, f"rabbitmq: the summary is schema-valid {v.stdout[-300:]}")
        # The agents of the dead node reconnected elsewhere and published P/state again there.
        moved = [d for d in on_victim if "connection lost" in self.fl.log(d)]
        self.check(len(moved) == len(on_victim), f"rabbitmq: the {len(on_victim)} agents of the killed node lost "
                                                 f"their connection ({len(moved)})")
        alive = [u for i, u in enumerate(cl.uris) if i != victim]
        end = time.time() + 30
        while True:
            states = self.fl.states(2, alive)
            stale = [d for d in self.fl.ids if states.get(d, {}).get("rev") != "rev-2"]
            if not stale or time.time() > end:
                break
            time.sleep(1)
        self.check(not stale, f"rabbitmq: every device's P/state on the surviving nodes says rev-2 "
                              f"(republished after fail-over) {stale[:5]}")

        # mqtt.version 5 against the 3.1.1-only cluster: a precise configuration error, exit 2.
        d = os.path.join(self.work, "v5")
        os.makedirs(d, exist_ok=True)
        cfg = {"device_id": "v5-dev", "data_dir": os.path.join(d, "data"),
               "plugin_dir": os.path.join(self.a.build, "plugins"),
               "mqtt": {"uri": alive, "version": 5}, "trust": {"keys_dir": os.path.join(self.work, "trust")}}
        with open(os.path.join(d, "gantryd.json"), "w") as f:
            json.dump(cfg, f)
        try:
            r = subprocess.run([os.path.join(self.a.build, "gantryd"), "--config", os.path.join(d, "gantryd.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
            out, rc = r.stdout, r.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = str(e.stdout), None
        want = (f"error gantryd: mqtt.version: the broker at {', '.join(alive)} refused MQTT 5 and accepts "
                "MQTT 3.1.1 (RabbitMQ's MQTT plugin speaks only 3.1.1): set mqtt.version to 4")
        self.check(rc == 2 and want in out, f"rabbitmq: mqtt.version 5 exits 2 with '{want}' (exit {rc}: {out[-400:]})")


if __name__ == "__main__":
    main()
