"""See bench.sh."""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

build, source = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(source, "tests", "tools"))
import fleet as fleetlib  # noqa: E402

N = int(os.environ.get("GANTRY_FLEET_N", "1000"))
work = tempfile.mkdtemp(prefix="gantry-fleet-bench-")
broker = fleetlib.Mosquitto(work)
fl = fleetlib.Fleet(build, work, N, [broker.uri])


def count_messages(fn):
    """Runs fn while a $SYS-free observer counts every message on the fleet's topics."""
    out = os.path.join(work, "count.txt")
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(broker.port), "-V", "mqttv311", "-t", "gantry/#", "-F", "%t"],
                           stdout=open(out, "w"), stderr=subprocess.DEVNULL)
    time.sleep(1)
    before = sum(1 for _ in open(out))
    t = time.time()
    fn()
    wall = time.time() - t
    time.sleep(2)
    sub.terminate()
    sub.wait()
    return wall, sum(1 for _ in open(out)) - before


def wait_rev(rev, timeout=900):
    end = time.time() + timeout
    while time.time() < end:
        states = fl.states(3)
        n = sum(1 for s in states.values() if s.get("rev") == rev)
        if n == N:
            return
        time.sleep(1)
    raise RuntimeError(f"not every device reached {rev}")


try:
    t = time.time()
    fl.start_all()
    fl.wait_online(900)
    print(f"fleet: {N} agents online in {time.time() - t:.1f} s", flush=True)

    env2 = fl.sign("rev-2", 2)
    cmd = json.dumps({"id": "bench-group-1", "op": "update", "revision": json.load(open(env2))})
    base_wall, base_msgs = count_messages(lambda: (fl.publish("gantry/group/fleet/cmd", cmd), wait_rev("rev-2")))
    print(f"baseline group command: {base_wall:.1f} s to all on rev-2, {base_msgs / N:.1f} messages/device", flush=True)

    env3 = fl.sign("rev-3", 3)
    db = os.path.join(work, "rollouts.db")
    usage = {}

    def rollout():
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.Popen([os.path.join(build, "gantryctl"), "rollout", "start", "bench", "--revision", env3,
                              "--group", "fleet", "--broker", broker.uri, "--db", db, "--waves", "1,10,50,100",
                              "--soak", "0s", "--max-inflight", str(N), "--min-executed", str(N)],
                             stdout=open(os.path.join(work, "rollout.log"), "w"), stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        usage["cpu"] = ru.ru_utime + ru.ru_stime
        usage["rss"] = ru.ru_maxrss / 1024
        usage["rc"] = p.returncode

    wall, msgs = count_messages(rollout)
    summary = json.loads(subprocess.run([os.path.join(build, "gantryctl"), "rollout", "status", "bench", "--db", db,
                                         "--json"], stdout=subprocess.PIPE, text=True).stdout)
    ok = sum(1 for d in summary["devices"].values() if d["status"] == "SUCCEEDED")
    print(f"rollout waves 1/10/50/100, no soak: {wall:.1f} s, exit {usage['rc']}, {ok}/{N} SUCCEEDED")
    print(f"  broker messages per device: {msgs / N:.1f} (baseline {base_msgs / N:.1f}; target <= 14)")
    print(f"  wall time vs group command: {wall / base_wall:.2f}x (target <= 1.5x, the 3 s discovery settle included)")
    print(f"  orchestrator CPU {usage['cpu']:.1f} s, max RSS {usage['rss']:.1f} MiB (target < 64 MiB)")
    if ok != N:
        sys.exit(1)
finally:
    fl.close()
    broker.close()
    subprocess.run(["rm", "-rf", work])
