"""A three-node RabbitMQ cluster with the MQTT plugin on one machine, for system tests.

    cluster = RabbitCluster(workdir)      # starts 3 nodes, joins them, waits until formed
    cluster.uris                          # ["tcp://127.0.0.1:<mqtt port>", ...] one per node
    cluster.kill(1)                       # SIGKILL of node 1's VM
    cluster.ctl(0, "list_queues")         # rabbitmqctl against node 0
    cluster.close()                       # stops every node and the private epmd, by pid

Debian's rabbitmq-server, run as the calling user from /usr/lib/rabbitmq/bin (never the system
service): every node has its own name (gantry-N@localhost), free loopback ports for AMQP, Erlang
distribution and MQTT, its own data and log dirs under workdir, and the nodes share a private
epmd on a free port and an Erlang cookie in a private HOME. MQTT sessions' queues are quorum
queues (mqtt.durable_queue_type), so a session outlives the loss of one node. The guest user may
log in from loopback (RabbitMQ's default), which is what anonymous MQTT clients use.
"""
import os
import secrets
import signal
import socket
import subprocess
import time

RMQ_BIN = "/usr/lib/rabbitmq/bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class RabbitCluster:
    def __init__(self, workdir, nodes=3, durable_queue_type="quorum", form_timeout=240):
        self.dir = os.path.join(workdir, "rabbitmq")
        os.makedirs(self.dir, exist_ok=True)
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home, exist_ok=True)
        cookie = os.path.join(self.home, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write(secrets.token_hex(16))
        os.chmod(cookie, 0o400)
        self.epmd_port = free_port()
        # rabbitmqctl's own distribution ports (default 35672-35682, shared machine-wide).
        self.ctl_port = free_port()
        self.names = [f"gantry-{i}@localhost" for i in range(nodes)]
        self.amqp = [free_port() for _ in range(nodes)]
        self.dist = [free_port() for _ in range(nodes)]
        self.mqtt = [free_port() for _ in range(nodes)]
        self.uris = [f"tcp://127.0.0.1:{p}" for p in self.mqtt]
        self.durable_queue_type = durable_queue_type
        self.procs = [None] * nodes
        self.epmd = None
        self.logs = []
        try:
            self._start_epmd()
            for i in range(nodes):
                self._write_config(i)
                self.start(i)
            for i in range(nodes):
                self.wait_node(i, form_timeout)
            for i in range(1, nodes):
                self.ctl(i, "stop_app")
                self.ctl(i, "join_cluster", self.names[0])
                self.ctl(i, "start_app")
            self.wait_formed(form_timeout)
        except BaseException:
            self.close()
            raise

    # --- processes -------------------------------------------------------------------------------

    def env(self, i=None):
        e = dict(os.environ)
        e.update({"HOME": self.home, "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
                  "RABBITMQ_CONF_ENV_FILE": os.path.join(self.dir, "rabbitmq-env.conf"),
                  "RABBITMQ_CTL_DIST_PORT_MIN": str(self.ctl_port),
                  "RABBITMQ_CTL_DIST_PORT_MAX": str(self.ctl_port)})
        e.pop("RABBITMQ_ERLANG_COOKIE", None)
        if i is not None:
            d = os.path.join(self.dir, f"node{i}")
            e.update({"RABBITMQ_NODENAME": self.names[i], "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                      "RABBITMQ_NODE_PORT": str(self.amqp[i]), "RABBITMQ_DIST_PORT": str(self.dist[i]),
                      "RABBITMQ_CONFIG_FILE": os.path.join(d, "rabbitmq.conf"),
                      "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(d, "advanced.config"),
                      "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(d, "enabled_plugins"),
                      "RABBITMQ_MNESIA_BASE": os.path.join(d, "mnesia"),
                      "RABBITMQ_LOG_BASE": os.path.join(d, "log"),
                      "RABBITMQ_PID_FILE": os.path.join(d, "beam.pid"),
                      "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"})
        return e

    def _start_epmd(self):
        open(os.path.join(self.dir, "rabbitmq-env.conf"), "w").close()
        log = open(os.path.join(self.dir, "epmd.log"), "ab")
        self.logs.append(log)
        self.epmd = subprocess.Popen(["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env())
        end = time.time() + 20
        while not _listening(self.epmd_port):
            if self.epmd.poll() is not None or time.time() > end:
                raise RuntimeError(f"epmd did not listen on {self.epmd_port}")
            time.sleep(0.05)

    def _write_config(self, i):
        d = os.path.join(self.dir, f"node{i}")
        os.makedirs(os.path.join(d, "log"), exist_ok=True)
        with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.default = 127.0.0.1:{self.amqp[i]}\n"
                    f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt[i]}\n"
                    "mqtt.allow_anonymous = true\n"
                    f"mqtt.durable_queue_type = {self.durable_queue_type}\n"
                    # One machine, loaded by a fleet: do not block publishers on memory/disk alarms.
                    "vm_memory_high_watermark.relative = 0.9\n"
                    "disk_free_limit.absolute = 1MB\n")
        with open(os.path.join(d, "advanced.config"), "w") as f:
            f.write("[].\n")
        with open(os.path.join(d, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_mqtt].\n")

    def start(self, i):
        """Starts node i (again: it rejoins the cluster it was part of)."""
        log = open(os.path.join(self.dir, f"node{i}", "console.log"), "ab")
        self.logs.append(log)
        pidfile = os.path.join(self.dir, f"node{i}", "beam.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        # The wrapper script forwards SIGTERM to the VM as a clean shutdown; the VM's own pid
        # (for SIGKILL) is in the pid file once it runs.
        self.procs[i] = subprocess.Popen([os.path.join(RMQ_BIN, "rabbitmq-server")], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env(i),
                                         cwd=os.path.join(self.dir, f"node{i}"))

    def beam_pid(self, i):
        try:
            with open(os.path.join(self.dir, f"node{i}", "beam.pid")) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def ctl(self, i, *args, timeout=120, check=True):
        r = subprocess.run([os.path.join(RMQ_BIN, "rabbitmqctl"), "-n", self.names[i], *args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env(),
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {self.names[i]} {' '.join(args)}: exit {r.returncode}\n{r.stdout}")
        return r.stdout

    def wait_node(self, i, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if self.procs[i].poll() is not None:
                raise RuntimeError(f"{self.names[i]} exited on start (see {self.dir}/node{i})")
            r = subprocess.run([os.path.join(RMQ_BIN, "rabbitmqctl"), "-n", self.names[i], "await_startup",
                                "--timeout", "10"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=self.env(), timeout=60)
            if r.returncode == 0 and _listening(self.mqtt[i]):
                return
            time.sleep(1)
        raise RuntimeError(f"{self.names[i]} not up within {timeout} s (see {self.dir}/node{i})")

    def running_nodes(self, i=0):
        out = self.ctl(i, "eval", "rabbit_nodes:all_running().", check=False)
        return {n for n in self.names if n in out}

    def wait_formed(self, timeout, nodes=None):
        want = set(nodes if nodes is not None else self.names)
        end = time.time() + timeout
        while time.time() < end:
            if want <= self.running_nodes(self.names.index(sorted(want)[0])) and \
                    all(_listening(self.mqtt[self.names.index(n)]) for n in want):
                return
            time.sleep(1)
        raise RuntimeError(f"cluster not formed within {timeout} s: running {self.running_nodes()}")

    def kill(self, i):
        """SIGKILL of node i's VM: no clean shutdown, its clients' connections just drop."""
        pid = self.beam_pid(i)
        if pid:
            os.kill(pid, signal.SIGKILL)
        p = self.procs[i]
        if p is not None:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop(self, i):
        p = self.procs[i]
        pid = self.beam_pid(i)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)  # the VM, should the wrapper have died first
            except ProcessLookupError:
                pass

    def close(self):
        for i in range(len(self.procs)):
            try:
                self.stop(i)
            except Exception:
                pass
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.kill()
            self.epmd.wait()
        for log in self.logs:
            log.close()
