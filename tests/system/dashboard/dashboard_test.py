#!/usr/bin/python3
"""The fleet dashboard in headless Chromium, against a real mosquitto, real gantryd processes
and the real block server (tests/tools/block_server.py).

Steps, in order (one browser for all of them; any failure exits 1 with the logs):
  security     non-loopback --listen without --token-file is refused; actions need the
               token; a foreign Host header is refused; with --token-file the stream needs it
  devices      the page lists every running gantryd, online, with its revision
  progress     a signed update sent to one agent: its progress events appear on the page
               (latency from the MQTT event, seen by the test's own subscriber, to the page)
  rollout      gantryctl rollout start over the three agents: its waves advance on the page,
               Pause from the page pauses it, Abort from the page aborts it
  escaping     a device id and a message holding markup are shown as text, nothing runs
  fleet-1000   1,000 simulated device states published retained by the test render, and
               an update of all of them renders (figures printed)
  console      the browser console holds no error
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

SOURCE = os.environ.get("GANTRY_SOURCE_DIR") or sys.exit("FAIL: GANTRY_SOURCE_DIR is not set")
BUILD = os.environ.get("GANTRY_BUILD_DIR") or sys.exit("FAIL: GANTRY_BUILD_DIR is not set")
CTL = os.path.join(BUILD, "gantryctl")
AGENTS = ["gw-a", "gw-b", "gw-c"]
SIM = 1000

TMP = tempfile.mkdtemp(prefix="gantry-dashboard-test-")
procs = []  # (name, Popen, log path)


def fail(msg):
    print("FAIL: " + msg)
    for name, p, log in procs:
        if log and os.path.exists(log):
            with open(log, errors="replace") as f:
                tail = f.read()[-3000:]
            print(f"--- {name} log (tail) ---\n{tail}")
    raise SystemExit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, what, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    fail(f"{what} did not listen on {port}")


def start(name, argv, stdout=None, **kw):
    log = os.path.join(TMP, name + ".log")
    if stdout is None:
        p = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, **kw)
    else:
        p = subprocess.Popen(argv, stdout=stdout, stderr=open(log, "w"), **kw)
    procs.append((name, p, log))
    return p


def stop_all():
    for name, p, _ in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for name, p, _ in reversed(procs):
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_until(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    fail(f"timed out after {timeout} s waiting for {what}")


def run(argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(argv)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


def start_dashboard(name, broker, *extra):
    out = os.path.join(TMP, name + ".out")
    p = start(name, [CTL, "dashboard", "--broker", broker, *extra], stdout=open(out, "w"))
    line = wait_until(lambda: open(out).readline().strip(), 10, f"{name} to print its URL")
    m = re.match(r"dashboard: (http://[^/]+/)(?:#token=(\w+))?$", line)
    if not m:
        fail(f"{name} printed {line!r}")
    return p, m.group(1), m.group(2)


def http(method, url, headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Subscriber:
    """mosquitto_sub on progress topics: every event with the time the test saw it."""

    def __init__(self, port):
        self.events = []
        self.lock = threading.Lock()
        self.p = start("mosquitto_sub", ["mosquitto_sub", "-p", str(port), "-v", "-t", "gantry/+/progress"],
                       stdout=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.p.stdout:
            t = time.time()
            topic, _, payload = line.rstrip("\n").partition(" ")
            try:
                body = json.loads(payload)
            except ValueError:
                continue
            with self.lock:
                self.events.append((t, topic.split("/")[1], body))

    def of(self, device, cmd_id):
        with self.lock:
            return [(t, b) for t, d, b in self.events if d == device and b.get("id") == cmd_id]


def main():
    # ---- broker, block server, keys, agents ----------------------------------------------
    mport = free_port()
    with open(os.path.join(TMP, "mosquitto.conf"), "w") as f:
        f.write(f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 100000\nuser root\n")
    start("mosquitto", ["mosquitto", "-c", os.path.join(TMP, "mosquitto.conf")])
    wait_port(mport, "mosquitto")
    broker = f"tcp://127.0.0.1:{mport}"

    objects = os.path.join(TMP, "www", "objects")
    os.makedirs(objects)
    portfile = os.path.join(TMP, "blocks.port")
    start("block_server", ["/usr/bin/python3", os.path.join(SOURCE, "tests/tools/block_server.py"),
                           "--root", os.path.join(TMP, "www"), "--port", "0", "--port-file", portfile])
    bport = int(wait_until(lambda: os.path.exists(portfile) and open(portfile).read().strip(), 10, "block server"))

    run([CTL, "keygen", "--alg", "EdDSA", "--kid", "ops", "--out", os.path.join(TMP, "keys")])
    os.makedirs(os.path.join(TMP, "trust"))
    shutil.copy(os.path.join(TMP, "keys", "ops.pem"), os.path.join(TMP, "trust"))

    for dev in AGENTS:
        cfg = {"device_id": dev, "groups": ["lab", "north" if dev != "gw-c" else "south"],
               "data_dir": os.path.join(TMP, dev), "plugin_dir": os.path.join(BUILD, "plugins"),
               "mqtt": {"uri": broker}, "trust": {"keys_dir": os.path.join(TMP, "trust")},
               "update": {"commit_window_s": 1}}
        path = os.path.join(TMP, dev + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        start(dev, [os.path.join(BUILD, "gantryd"), "--config", path])

    sub = Subscriber(mport)
    dash, url, token = start_dashboard("dashboard", broker, "--listen", "127.0.0.1:0",
                                       "--db", os.path.join(TMP, "rollouts.db"))
    if not token:
        fail("the loopback dashboard printed no token in its URL")

    # ---- security (plain HTTP) ---------------------------------------------------------------
    r = subprocess.run([CTL, "dashboard", "--broker", broker, "--listen", "0.0.0.0:0"], capture_output=True, text=True)
    if r.returncode != 2 or "--token-file" not in r.stderr:
        fail(f"non-loopback without --token-file: exit {r.returncode}, {r.stderr!r}")
    st, _ = http("POST", url + "api/rollouts/r1/pause")
    if st != 401:
        fail(f"an action without the token answered {st}, not 401")
    st, _ = http("POST", url + "api/rollouts/r1/pause", {"Authorization": "Bearer wrong"})
    if st != 401:
        fail(f"an action with a wrong token answered {st}, not 401")
    st, _ = http("GET", url + "api/info", {"Host": "attacker.example:80"})
    if st != 403:
        fail(f"a foreign Host header answered {st}, not 403")
    tokfile = os.path.join(TMP, "token")
    with open(tokfile, "w") as f:
        f.write("correct-horse-battery-staple\n")
    _, url2, tok2 = start_dashboard("dashboard-token", broker, "--listen", "127.0.0.1:0", "--token-file", tokfile)
    if tok2:
        fail("with --token-file the URL must not carry the token")
    st, _ = http("GET", url2 + "api/events")
    if st != 401:
        fail(f"with --token-file the stream without the token answered {st}, not 401")
    st, _ = http("GET", url2 + "api/devices/gw-a", {"Authorization": "Bearer correct-horse-battery-staple"})
    if st not in (200, 404):
        fail(f"with the token the device endpoint answered {st}")
    print("PASS security: non-loopback needs --token-file (exit 2); actions without/with a wrong token: 401; "
          "foreign Host: 403; token-file dashboard stream without token: 401")

    # ---- browser -----------------------------------------------------------------------------
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--user-data-dir=" + os.path.join(TMP, "chromium")]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver", log_path=os.path.join(TMP, "chromedriver.log")),
                           options=opts)
    try:
        browser_steps(drv, url, token, sub, bport, mport)
    finally:
        drv.quit()


def rollout_step(drv, bport, mport, sha, size):
    doc = {"rev": "r2", "seq": 2, "targets": AGENTS, "objects_base": f"http://127.0.0.1:{bport}/objects/",
           "objects": {sha: {"size": size}},
           "state": {"#spec": "pantavisor-service-system@1", "_sensors/m1/firmware.bin": sha,
                     "_sensors/m1/sensor.json": {"version": "2.0.0", "seq": 2, "targets": ["*"]}}}
    with open(os.path.join(TMP, "r2.json"), "w") as f:
        json.dump(doc, f)
    run([CTL, "sign", "--key", os.path.join(TMP, "keys", "ops.key"), "--kid", "ops", os.path.join(TMP, "r2.json"),
         "--out", os.path.join(TMP, "r2.jws")])
    db = os.path.join(TMP, "rollouts.db")
    orch = start("rollout", [CTL, "rollout", "start", "r2", "--revision", os.path.join(TMP, "r2.jws"),
                             "--group", "lab", "--waves", "33,66,100", "--soak", "3s", "--min-executed", "1",
                             "--broker", f"tcp://127.0.0.1:{mport}", "--db", db])
    drv.find_element(By.ID, "tab-rollouts").click()
    wait_until(lambda: drv.find_elements(By.CSS_SELECTOR, '#rollouts tbody tr[data-rollout="r2"]'), 20,
               "rollout r2 on the page")
    drv.find_element(By.CSS_SELECTOR, '#rollouts tbody tr[data-rollout="r2"] td').click()
    waves_seen = []

    def wave_text():
        t = drv.find_element(By.ID, "rollout-facts").text
        m = re.search(r"Wave\s+(\d+) of (\d+)", t)
        if m and (not waves_seen or waves_seen[-1] != m.group(1)):
            waves_seen.append(m.group(1))
        return m and int(m.group(1)) >= 2 and "1/1 final: 1 succeeded" in drv.find_element(By.ID, "waves").text
    wait_until(wave_text, 60, "wave 1 final and wave 2 started on the page")
    drv.find_element(By.CSS_SELECTOR, '#rollout-view button[data-action="pause"]').click()
    wait_until(lambda: drv.find_element(By.ID, "rollout-state").text == "PAUSED", 20, "PAUSED on the page")
    res = drv.find_element(By.ID, "action-result").text
    # Abort from the page (it asks for confirmation first).
    drv.find_element(By.CSS_SELECTOR, '#rollout-view button[data-action="abort"]').click()
    drv.switch_to.alert.accept()
    wait_until(lambda: "abort requested" in drv.find_element(By.ID, "action-result").text, 10, "abort accepted")
    status = json.loads(run([CTL, "rollout", "status", "r2", "--db", db, "--json"]))
    if status.get("state") != "ABORTED":
        fail(f"after Abort on the page the rollout db says {status.get('state')}")
    try:
        rc = orch.wait(30)
    except subprocess.TimeoutExpired:
        fail("the orchestrator did not stop after the page paused and aborted its rollout")
    if rc != 1:
        fail(f"the orchestrator exited {rc}, not 1 (PAUSED/ABORTED)")
    wait_until(lambda: drv.find_element(By.ID, "rollout-state").text in ("PAUSED", "ABORTED"), 5, "final state")
    print(f"PASS rollout: waves seen on the page {' → '.join(waves_seen)}; Pause from the page → PAUSED "
          f"({res!r}); Abort from the page → rollout db ABORTED, page shows "
          f"{drv.find_element(By.ID, 'rollout-state').text}; orchestrator exited {rc}")
    drv.find_element(By.ID, "tab-devices").click()


def cell(drv, device, cls):
    return drv.execute_script(
        "const r = Array.from(document.querySelectorAll('#devices tbody tr'))"
        ".find(tr => tr.dataset.device === arguments[0]);"
        "return r ? r.querySelector('td.' + arguments[1]).textContent : null;", device, cls)


def shown(drv):
    return drv.find_element(By.ID, "dev-shown").text


def browser_steps(drv, url, token, sub, bport, mport):
    drv.get(url + "#token=" + token)
    # Every status cell change, timestamped by the browser as it lands in the DOM.
    drv.execute_script("""
      window.__seen = [];
      new MutationObserver(ms => { const t = Date.now();
        for (const m of ms) { const td = m.target.closest ? m.target.closest('td') : m.target.parentElement;
          if (td && td.classList.contains('status'))
            window.__seen.push([t, td.parentElement.dataset.device, td.textContent]); }
      }).observe(document.querySelector('#devices tbody'), {subtree: true, childList: true, characterData: true});""")

    # ---- every device, online ----------------------------------------------------------------
    wait_until(lambda: all(cell(drv, d, "online") == "online" for d in AGENTS), 30, "every agent online on the page")
    for d in AGENTS:
        if cell(drv, d, "rev") != "–" or cell(drv, d, "seq") != "0":
            fail(f"{d}: fresh agent shows rev {cell(drv, d, 'rev')!r} seq {cell(drv, d, 'seq')!r}")
    print(f"PASS devices: the page lists {', '.join(AGENTS)}, online, rev – seq 0")

    # ---- a real update's progress ----------------------------------------------------------
    fw = os.urandom(3 << 20)
    import hashlib
    sha = hashlib.sha256(fw).hexdigest()
    with open(os.path.join(TMP, "www", "objects", sha), "wb") as f:
        f.write(fw)
    doc = {"rev": "r1", "seq": 1, "targets": ["gw-a"], "objects_base": f"http://127.0.0.1:{bport}/objects/",
           "objects": {sha: {"size": len(fw)}},
           "state": {"#spec": "pantavisor-service-system@1", "_sensors/m1/firmware.bin": sha,
                     "_sensors/m1/sensor.json": {"version": "1.0.0", "seq": 1, "targets": ["*"]}}}
    with open(os.path.join(TMP, "r1.json"), "w") as f:
        json.dump(doc, f)
    run([CTL, "sign", "--key", os.path.join(TMP, "keys", "ops.key"), "--kid", "ops", os.path.join(TMP, "r1.json"),
         "--out", os.path.join(TMP, "r1.jws")])
    run([CTL, "publish", "--broker", f"tcp://127.0.0.1:{mport}", "--device", "gw-a", "--envelope",
         os.path.join(TMP, "r1.jws"), "--id", "u1", "--watch", "--timeout", "90"])
    wait_until(lambda: cell(drv, "gw-a", "rev") == "r1", 10, "gw-a's new revision on the page")
    time.sleep(0.5)  # the last batch
    events = sub.of("gw-a", "u1")
    seen = drv.execute_script("return window.__seen")
    lat = []
    for t, body in events:
        st = body["status"]
        text = st if st in ("DONE", "ERROR", "WONTGO", "CANCELLED") else f"{st} {body.get('progress', 0)}%"
        hits = [s for s in seen if s[1] == "gw-a" and s[2] == text and s[0] / 1000 >= t - 0.05]
        if hits:
            lat.append((text, hits[0][0] / 1000 - t))
    statuses = [b["status"] for _, b in events]
    if "DONE" not in statuses or not any(x[0] == "DONE" for x in lat):
        fail(f"DONE not seen on the page; mqtt {statuses}, page {seen}")
    ms = sorted(int(l * 1000) for _, l in lat)
    print(f"PASS progress: {len(events)} MQTT progress events ({' '.join(statuses)}); {len(lat)} shown on the page "
          f"(the rest coalesced by batching); latency MQTT→page ms: min {ms[0]} median {ms[len(ms) // 2]} max {ms[-1]}; "
          f"DONE after {int(dict(lat)['DONE'] * 1000)} ms")

    rollout_step(drv, bport, mport, sha, len(fw))

    # ---- markup stays text -----------------------------------------------------------------
    evil = '<script>window.__pwned=1<\\script><b>x<\\b>'  # one topic level: no '/', no space
    msg = '</td></tr><script>window.__pwned=3</script><b>bold</b>'
    pub = subprocess.Popen([os.path.join(BUILD, "tests", "dashboard_mqtt_pub"), f"tcp://127.0.0.1:{mport}"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    procs.append(("dashboard_mqtt_pub", pub, None))

    def publish(lines):
        for l in lines:
            pub.stdin.write(l + "\n")
        pub.stdin.write("SYNC\n")
        pub.stdin.flush()
        out = pub.stdout.readline().split()
        if not out or out[0] != "SYNCED":
            fail(f"publisher: {out}")
        return int(out[2]) / 1000

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    state = {"rev": "x<i>1</i>", "seq": 7, "status": "DONE", "ts": now, "groups": ["<b>grp</b>"],
             "containers": [], "sensors": [], "cache": {}, "agent": {}}
    publish([f"P 1 gantry/{evil}/state {json.dumps(state)}",
             f"P 0 gantry/{evil}/progress " + json.dumps({"id": "e1", "rev": "x", "seq": 8, "status": "ERROR",
                                                         "progress": 0, "msg": msg, "ts": now})])
    wait_until(lambda: cell(drv, evil, "last") is not None and msg in cell(drv, evil, "last"), 10,
               "the markup device on the page")
    injected = drv.execute_script(
        "return [window.__pwned, document.querySelectorAll('#devices tbody script, #devices tbody img, "
        "#devices tbody b, #devices tbody i').length, Array.from(document.querySelectorAll('#devices tbody tr'))"
        ".find(tr => tr.dataset.device === arguments[0]).cells[0].textContent]", evil)
    if injected[0] is not None or injected[1] != 0 or injected[2] != evil:
        fail(f"markup from MQTT was not kept as text: {injected}")
    # The device view renders the same values, also as text.
    drv.execute_script("Array.from(document.querySelectorAll('#devices tbody tr'))"
                       ".find(tr => tr.dataset.device === arguments[0]).cells[0].click()", evil)
    wait_until(lambda: drv.find_element(By.ID, "device-title").text == evil, 5, "the device view")
    wait_until(lambda: msg in drv.find_element(By.ID, "device-events").text, 5, "the event in the device view")
    if drv.execute_script("return [window.__pwned, document.querySelectorAll('main script, main img, main b').length]") != [None, 0]:
        fail("markup ran or rendered in the device view")
    drv.find_element(By.ID, "device-back").click()
    print("PASS escaping: a device id, revision, group and message holding <script>, <b>, <i> show as "
          "text in the table and the device view; nothing ran")

    # ---- 1,000 simulated devices ----------------------------------------------------------
    def sim_state(i, status, seq):
        return json.dumps({"rev": f"s{seq}", "seq": seq, "status": status, "ts": now,
                           "groups": ["sim", f"zone-{i % 10}"],
                           "containers": [{"name": "app", "group": "root", "state": "RUNNING", "rev": f"s{seq}",
                                           "restarts": 0}],
                           "sensors": [], "cache": {"bytes": 0, "blocks": 0, "quota_bytes": 0},
                           "agent": {"version": "sim", "started_at": now}})
    total = SIM + len(AGENTS) + 1
    t0 = publish([f"P 1 gantry/sim-{i:04d}/online {{\"online\": true, \"ts\": \"{now}\"}}" for i in range(SIM)] +
                 [f"P 1 gantry/sim-{i:04d}/state {sim_state(i, 'DONE', 1)}" for i in range(SIM)])
    wait_until(lambda: shown(drv) == f"{total} of {total} devices", 30, f"{total} devices on the page")
    t_all = time.time() - t0
    rows = len(drv.find_elements(By.CSS_SELECTOR, "#devices tbody tr"))
    if rows != 100:
        fail(f"the first page holds {rows} rows, not 100")
    sel = drv.find_element(By.ID, "f-group")
    drv.execute_script("arguments[0].value = 'zone-3'; arguments[0].dispatchEvent(new Event('input'))", sel)
    wait_until(lambda: shown(drv) == f"100 of {total} devices", 5, "the zone-3 filter")
    drv.execute_script("arguments[0].value = ''; arguments[0].dispatchEvent(new Event('input'))", sel)
    # Every simulated device moves on: progress events for all 1,000.
    t1 = publish([f"P 0 gantry/sim-{i:04d}/progress " + json.dumps(
        {"id": "sim-u2", "rev": "s2", "seq": 2, "status": "DOWNLOADING", "progress": 40, "msg": "", "ts": now})
        for i in range(SIM)])
    st = drv.find_element(By.ID, "f-status")
    wait_until(lambda: "DOWNLOADING" in [o.get_attribute("value") for o in st.find_elements(By.TAG_NAME, "option")],
               10, "DOWNLOADING among the status filter's options")
    drv.execute_script("arguments[0].value = 'DOWNLOADING'; arguments[0].dispatchEvent(new Event('input'))", st)
    wait_until(lambda: shown(drv) == f"{SIM} of {total} devices", 30, "1,000 devices DOWNLOADING")
    t_upd = time.time() - t1
    first = cell(drv, "sim-0000", "status")
    if first != "DOWNLOADING 40%":
        fail(f"sim-0000 shows {first!r}")
    drv.execute_script("arguments[0].value = ''; arguments[0].dispatchEvent(new Event('input'))", st)
    print(f"PASS fleet-1000: {SIM} retained states+online rendered {t_all * 1000:.0f} ms after the broker acked "
          f"them; {SIM} progress events shown {t_upd * 1000:.0f} ms after the broker acked them "
          f"(100 rows a page, group and status filters)")

    # ---- console ---------------------------------------------------------------------------
    logs = drv.get_log("browser")
    errors = [l for l in logs if l["level"] == "SEVERE"]
    if errors:
        fail(f"browser console errors: {errors}")
    print(f"PASS console: {len(logs)} console entries, no error")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
        shutil.rmtree(TMP, ignore_errors=True)
    print("dashboard browser test: all steps passed")
