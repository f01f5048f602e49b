"""Two "machines" in one: network namespaces joined by a veth pair.

Host A (10.213.<n>.1) runs the head and the driver; host B (.2) joins over
tcp.  B also gets its own /tmp directory and /dev/shm (a private mount
namespace), so nothing of A's reaches it except through the network: no
ipc socket, no unix socket, no shared-memory segment.  Tasks, actors,
objects both ways (a 200 MiB array byte-exact), refs owned on B and read on
A, and B dying all go over tcp, with the cluster token.

Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2: skipped without.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil
import pytest

import pyray

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20


def _sh(*cmd, check=True, timeout=60, **kw):
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n"
                             f"{out.stderr}")
    return out


def _netns_usable():
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "unshare", "nsenter")):
        return False
    name = f"pyrprobe{os.getpid()}"
    try:
        ok = _sh("ip", "netns", "add", name, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    if ok:
        # and a private mount namespace with its own tmpfs inside it
        d = tempfile.mkdtemp(prefix="pnprobe", dir="/tmp")
        try:
            ok = _sh("ip", "netns", "exec", name, "unshare", "-m", "--propagation", "private",
                     "sh", "-c", f"mount -t tmpfs probe {d} && touch {d}/x", check=False,
                     timeout=20).returncode == 0 and not os.listdir(d)
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        finally:
            _sh("ip", "netns", "del", name, check=False)
            shutil.rmtree(d, ignore_errors=True)
    return ok


pytestmark = [pytestmark, pytest.mark.skipif(not _netns_usable(),
                                             reason="needs root and network namespaces")]


class Hosts:
    """Network namespaces a and b, a veth pair between them, a pyray head
    on a and a node on b (private /tmp dir and /dev/shm)."""

    def __init__(self):
        n = os.getpid() % 250 + 1
        self.ns_a, self.ns_b = f"pyra{os.getpid()}", f"pyrb{os.getpid()}"
        self.ip_a, self.ip_b = f"10.213.{n}.1", f"10.213.{n}.2"
        self.root = tempfile.mkdtemp(prefix="pn", dir="/tmp")
        self.tmp_a = os.path.join(self.root, "a")
        self.tmp_b = os.path.join(self.root, "b")      # a tmpfs inside b's mount namespace
        os.makedirs(self.tmp_a)
        os.makedirs(self.tmp_b)
        self.env = dict(os.environ)
        top = os.path.dirname(os.path.dirname(os.path.abspath(pyray.__file__)))
        self.env["PYTHONPATH"] = top + (os.pathsep + self.env["PYTHONPATH"]
                                        if self.env.get("PYTHONPATH") else "")
        for k in ("PYRAY_ADDRESS", "RAY_ADDRESS", "PYRAY_TOKEN"):
            self.env.pop(k, None)
        self.port = 6379
        veth_a, veth_b = f"pva{os.getpid()}"[:15], f"pvb{os.getpid()}"[:15]
        for cmd in (["ip", "netns", "add", self.ns_a], ["ip", "netns", "add", self.ns_b],
                    ["ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b],
                    ["ip", "link", "set", veth_a, "netns", self.ns_a],
                    ["ip", "link", "set", veth_b, "netns", self.ns_b],
                    ["ip", "-n", self.ns_a, "addr", "add", f"{self.ip_a}/24", "dev", veth_a],
                    ["ip", "-n", self.ns_b, "addr", "add", f"{self.ip_b}/24", "dev", veth_b],
                    ["ip", "-n", self.ns_a, "link", "set", veth_a, "up"],
                    ["ip", "-n", self.ns_b, "link", "set", veth_b, "up"],
                    ["ip", "-n", self.ns_a, "link", "set", "lo", "up"],
                    ["ip", "-n", self.ns_b, "link", "set", "lo", "up"]):
            _sh(*cmd)

    def on_a(self, *cmd, timeout=120, check=True):
        env = dict(self.env, TMPDIR=self.tmp_a)
        return _sh("ip", "netns", "exec", self.ns_a, *cmd, env=env, timeout=timeout,
                   check=check)

    def on_b(self, *cmd, timeout=120, check=True):
        """Runs in b's network namespace and a mount namespace of its own,
        with a fresh tmpfs on its TMPDIR and on /dev/shm."""
        script = (f"mount -t tmpfs pyrb {self.tmp_b} && mount -t tmpfs pyrbshm /dev/shm && "
                  'exec "$@"')
        env = dict(self.env, TMPDIR=self.tmp_b)
        return _sh("ip", "netns", "exec", self.ns_b, "unshare", "-m", "--propagation",
                   "private", "sh", "-c", script, "sh", *cmd, env=env, timeout=timeout,
                   check=check)

    def in_b(self, *cmd, timeout=120, check=True):
        """Runs beside b's node: in the network and mount namespaces of its
        raylet (its /tmp and /dev/shm)."""
        raylet = next(p.pid for p in self.processes()
                      if "pyray.raylet.raylet" in p.info["cmdline"] and
                      self.tmp_b in " ".join(p.info["cmdline"]))
        env = dict(self.env, TMPDIR=self.tmp_b)
        return _sh("nsenter", "-t", str(raylet), "-m", "-n", *cmd, env=env, timeout=timeout,
                   check=check)

    def pyray(self, where, *args, check=True):
        return where(sys.executable, "-m", "pyray.scripts.cli", *args, check=check)

    def processes(self):
        return [p for p in psutil.process_iter(["cmdline"])
                if self.root in " ".join(p.info["cmdline"] or ())]

    def close(self):
        # every pyray process of the cluster names its session dir, under root
        procs = self.processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        for ns in (self.ns_a, self.ns_b):
            _sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def hosts():
    h = Hosts()
    try:
        yield h
    finally:
        h.close()


DRIVER = textwrap.dedent('''
    import hashlib, os, sys, time
    import numpy as np
    import pyray

    addr, token, ip_a, ip_b, node_b = sys.argv[1:6]
    pyray.init(address=addr, _token=token)
    here = pyray.get_runtime_context().get_node_id()
    assert here != node_b
    MiB = 1 << 20

    @pyray.remote
    def where():
        from pyray._private.context import ctx
        return pyray.get_runtime_context().get_node_id(), ctx.core_worker.addr

    @pyray.remote
    def digest(a):
        return hashlib.sha256(memoryview(a)).hexdigest(), a.nbytes

    @pyray.remote
    def make(nbytes, seed):
        return np.random.default_rng(seed).integers(0, 255, nbytes, dtype=np.uint8)

    @pyray.remote
    def nested(n):
        # submitted on b, runs on a: owner on b, result read on b
        refs = [square.options(resources={"host_a": 0.01}).remote(i) for i in range(n)]
        return sum(pyray.get(refs))

    @pyray.remote
    def square(x):
        return x * x

    @pyray.remote
    class Counter:
        def __init__(self):
            self.n = 0
        def add(self, k):
            self.n += k
            return self.n
        def node(self):
            return pyray.get_runtime_context().get_node_id()

    @pyray.remote
    def call_actor(c, k):
        return pyray.get(c.add.remote(k))

    on_b = {"resources": {"host_b": 0.01}}
    on_a = {"resources": {"host_a": 0.01}}

    # a task placed on b by its resource; its worker listens on b's address
    node, waddr = pyray.get(where.options(**on_b).remote(), timeout=60)
    assert node == node_b, (node, node_b)
    assert waddr.startswith(f"tcp://{ip_b}:"), waddr
    print("task on b ok", waddr, flush=True)

    # 200 MiB made here, read on b byte for byte
    big = np.random.default_rng(1).integers(0, 255, 200 * MiB, dtype=np.uint8)
    want = hashlib.sha256(memoryview(big)).hexdigest()
    ref = pyray.put(big)
    assert pyray.get(digest.options(**on_b).remote(ref), timeout=120) == (want, big.nbytes)
    print("200 MiB a->b ok", flush=True)

    # made on b (owned here), read here, zero-copy after the pull
    ref_b = make.options(**on_b).remote(64 * MiB, 2)
    got = pyray.get(ref_b, timeout=120)
    exp = np.random.default_rng(2).integers(0, 255, 64 * MiB, dtype=np.uint8)
    assert np.array_equal(got, exp) and not got.flags.writeable
    print("64 MiB b->a ok", flush=True)

    # many small tasks spread over both hosts
    nodes = pyray.get([where.options(scheduling_strategy="SPREAD").remote()
                       for _ in range(200)], timeout=120)
    assert {n for n, _ in nodes} == {here, node_b}, {n for n, _ in nodes}
    print("spread ok", flush=True)

    # a task on b that submits tasks to a and gets their results
    assert pyray.get(nested.options(**on_b).remote(20), timeout=60) == sum(i * i for i in range(20))
    print("nested b->a ok", flush=True)

    # an actor on b: ordered calls from here and from a task on a
    c = Counter.options(**on_b).remote()
    assert pyray.get(c.node.remote(), timeout=60) == node_b
    assert pyray.get([c.add.remote(1) for _ in range(500)], timeout=60)[-1] == 500
    assert pyray.get(call_actor.options(**on_a).remote(c, 10), timeout=60) == 510
    print("actor on b ok", flush=True)
    print("ALL OK", flush=True)
    pyray.shutdown()
''')


def _start(hosts):
    out = hosts.pyray(hosts.on_a, "start", "--head", "--port", str(hosts.port),
                      "--node-ip-address", hosts.ip_a, "--num-cpus", "2",
                      "--resources", '{"host_a": 4}', "--object-store-memory",
                      str(400 * MiB)).stdout
    token = re.search(r"--token ([0-9a-f]{32})", out).group(1)
    out = hosts.pyray(hosts.on_b, "start", "--address", f"{hosts.ip_a}:{hosts.port}",
                      "--token", token, "--num-cpus", "2", "--resources", '{"host_b": 4}',
                      "--object-store-memory", str(400 * MiB)).stdout
    node_b = re.search(r"node ([0-9a-f]{32}) joined", out).group(1)
    return token, node_b


def test_a_node_on_another_host_runs_tasks_actors_and_moves_objects(hosts):
    token, node_b = _start(hosts)
    # b's node listens on b's address only, and found it without being told
    status = hosts.pyray(hosts.on_b, "status", "--address", f"{hosts.ip_a}:{hosts.port}",
                         "--token", token).stdout
    assert "2 live node(s)" in status, status
    # b's files are its own: its session directory is not seen from here
    assert os.listdir(hosts.tmp_b) == []
    script = os.path.join(hosts.root, "driver.py")
    with open(script, "w") as f:
        f.write(DRIVER)
    out = hosts.on_a(sys.executable, script, f"{hosts.ip_a}:{hosts.port}", token,
                     hosts.ip_a, hosts.ip_b, node_b, timeout=170, check=False)
    assert out.returncode == 0 and "ALL OK" in out.stdout, out.stdout + out.stderr[-4000:]
    # a driver on b finds the cluster by itself, attaches to b's node, and
    # sends work and a 50 MiB array to a
    out = hosts.in_b(sys.executable, "-c", DRIVER_ON_B, node_b, timeout=120, check=False)
    assert out.returncode == 0 and "B OK" in out.stdout, out.stdout + out.stderr[-4000:]
    # a driver where no node of the cluster runs (b's network, but a /tmp of
    # its own: b's node is not on "this machine") is told so, not attached
    out = hosts.on_b(sys.executable, "-c", NO_NODE, f"{hosts.ip_a}:{hosts.port}", token,
                     timeout=60, check=False)
    assert out.returncode == 0 and "no node on this machine" in out.stdout, \
        out.stdout + out.stderr[-3000:]
    # `pyray stop --address` from b, then a: nothing of the cluster is left
    hosts.pyray(hosts.in_b, "stop", "--address", f"{hosts.ip_a}:{hosts.port}")
    hosts.pyray(hosts.on_a, "stop", "--address", f"{hosts.ip_a}:{hosts.port}")
    left = [p for p in hosts.processes() if p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [p.info["cmdline"] for p in left]


NO_NODE = textwrap.dedent('''
    import sys, pyray
    try:
        pyray.init(address=sys.argv[1], _token=sys.argv[2])
    except ConnectionError as err:
        print(err)
    else:
        print("ATTACHED")
''')


DRIVER_ON_B = textwrap.dedent('''
    import hashlib, sys
    import numpy as np
    import pyray

    pyray.init(address="auto")
    assert pyray.get_runtime_context().get_node_id() == sys.argv[1]

    @pyray.remote(resources={"host_a": 0.01})
    def digest(a):
        return pyray.get_runtime_context().get_node_id(), hashlib.sha256(a).hexdigest()

    arr = np.arange(50 << 20, dtype=np.uint8)
    node, h = pyray.get(digest.remote(pyray.put(arr)), timeout=60)
    assert node != sys.argv[1] and h == hashlib.sha256(arr).hexdigest()
    print("B OK", flush=True)
    pyray.shutdown()
''')


FAILOVER = textwrap.dedent('''
    import os, signal, sys, time
    import numpy as np
    import pyray
    from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    addr, token, node_b, raylet_b = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    pyray.init(address=addr, _token=token)
    here = pyray.get_runtime_context().get_node_id()
    prefer_b = NodeAffinitySchedulingStrategy(node_b, soft=True)

    @pyray.remote(max_retries=3)
    def slow(i):
        time.sleep(0.02)
        return i * i

    @pyray.remote(max_retries=2)
    def make(seed):
        return np.random.default_rng(seed).integers(0, 255, 8 << 20, dtype=np.uint8)

    @pyray.remote(max_restarts=1, max_task_retries=-1)
    class Where:
        def node(self):
            return pyray.get_runtime_context().get_node_id()

    w = Where.options(scheduling_strategy=prefer_b).remote()
    assert pyray.get(w.node.remote(), timeout=60) == node_b
    lost = make.options(scheduling_strategy=prefer_b).remote(7)
    pyray.wait([lost], timeout=60, fetch_local=False)
    refs = [slow.options(scheduling_strategy="SPREAD").remote(i) for i in range(300)]
    time.sleep(0.3)
    os.kill(raylet_b, signal.SIGKILL)          # host b's node dies mid-run
    assert pyray.get(refs, timeout=120) == [i * i for i in range(300)]
    print("tasks retried ok", flush=True)
    # the object lived only on b: made again here from its lineage
    arr = pyray.get(lost, timeout=120)
    assert np.array_equal(arr, np.random.default_rng(7).integers(0, 255, 8 << 20, dtype=np.uint8))
    print("lineage ok", flush=True)
    # the actor restarts on a
    assert pyray.get(w.node.remote(), timeout=60) == here
    print("actor restarted ok", flush=True)
    alive = {n["NodeID"]: n["Alive"] for n in pyray.nodes()}
    assert alive == {here: True, node_b: False}, alive
    print("ALL OK", flush=True)
    pyray.shutdown()
''')


def test_a_host_that_dies_loses_no_result(hosts):
    token, node_b = _start(hosts)
    raylet_b = next(p.pid for p in hosts.processes()
                    if "pyray.raylet.raylet" in p.info["cmdline"] and
                    hosts.tmp_b in " ".join(p.info["cmdline"]))
    script = os.path.join(hosts.root, "failover.py")
    with open(script, "w") as f:
        f.write(FAILOVER)
    out = hosts.on_a(sys.executable, script, f"{hosts.ip_a}:{hosts.port}", token, node_b,
                     str(raylet_b), timeout=170, check=False)
    assert out.returncode == 0 and "ALL OK" in out.stdout, out.stdout + out.stderr[-4000:]


PROBE = textwrap.dedent('''
    # every route of the dashboard, every method, from another host, without
    # the cluster token: each must be refused (401)
    import json, re, sys, urllib.error, urllib.request
    from pyray.dashboard.server import Dashboard, build_app

    url, token = sys.argv[1:3]
    app = build_app(Dashboard("tcp://127.0.0.1:1", "0.0.0.0", 1, "/nonexistent", "t"))
    seen = {}
    for route in app.app.routes:         # (build_app wraps the routes in the token gate)
        path = re.sub(r"{[^}]+}", "x", getattr(route, "path", "") or "/")
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method == "HEAD":
                continue
            req = urllib.request.Request(url + path, method=method,
                                         data=b"{}" if method in ("POST", "PUT") else None)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    seen[f"{method} {path}"] = r.status
            except urllib.error.HTTPError as e:
                seen[f"{method} {path}"] = e.code
    req = urllib.request.Request(url + "/api/version",
                                 headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as r:
        seen["GET /api/version with the token"] = r.status
    print("PROBE", json.dumps(seen))
''')


def test_the_dashboard_refuses_another_host_without_the_token(hosts):
    """A dashboard bound to the head's network address: from host b, every
    route and method without the token is refused; with it, served."""
    out = hosts.pyray(hosts.on_a, "start", "--head", "--port", str(hosts.port),
                      "--node-ip-address", hosts.ip_a, "--num-cpus", "1",
                      "--object-store-memory", str(64 * MiB), "--dashboard-host", hosts.ip_a,
                      "--dashboard-port", "8265").stdout
    token = re.search(r"--token ([0-9a-f]{32})", out).group(1)
    url = f"http://{hosts.ip_a}:8265"
    probe = None
    for _ in range(40):                     # the dashboard starts without being waited for
        res = hosts.on_b(sys.executable, "-c", PROBE, url, token, check=False)
        if res.returncode == 0:
            probe = json.loads(res.stdout.split("PROBE ", 1)[1])
            break
        time.sleep(0.5)
    assert probe is not None, res.stderr
    assert probe.pop("GET /api/version with the token") == 200
    assert len(probe) >= 10, probe                  # the job API, packages, pages, login
    refused = {k for k, v in probe.items() if v == 401}
    # the login form is the one thing served without the token
    assert set(probe) - refused <= {"GET /login", "POST /login"}, probe
    assert probe.get("POST /login") in (None, 401, 303, 400), probe
