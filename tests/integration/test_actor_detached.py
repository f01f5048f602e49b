"""Detached actors across drivers, namespaces between jobs, and what a
cluster leaves behind after actors of every kind.

The cross-driver test starts a cluster with `pyray start --head` (the
command-line entry point, as a user would), runs driver scripts against it
with ``pyray.init(address="auto", namespace=...)``, and stops it at the end.
The cluster gets a private temporary directory (TMPDIR) and a free port, so
its session files and the "current cluster" record never meet any other
cluster on this machine. It is stopped the way `pyray stop` stops one
(SIGTERM to its GCS and raylet, then its session directory removed), but
only its own processes: `pyray stop` itself stops every pyray cluster of
this user on the machine, which would take down clusters that other test
runs have going at the same time.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import psutil
import pytest

import pyray
from pyray._private.procs import stop_processes

from actorlib import Counter, process_gone

pytestmark = pytest.mark.timeout(90)

START_TIMEOUT = 60
GET_TIMEOUT = 30


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(args, env, timeout=START_TIMEOUT):
    return subprocess.run([sys.executable, "-m", "pyray.scripts.cli"] + args, env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=env["TMPDIR"])


class HeadCluster:
    """A cluster started by `pyray start --head` in a private TMPDIR."""

    def __init__(self, leaks):
        self.leaks = leaks
        # short: the session's Unix socket paths must fit in 108 bytes
        self.tmpdir = tempfile.mkdtemp(prefix="pr-", dir="/tmp")
        self.env = dict(os.environ, TMPDIR=self.tmpdir, PYTHONUNBUFFERED="1")
        root = os.path.dirname(os.path.dirname(os.path.abspath(pyray.__file__)))
        self.env["PYTHONPATH"] = root + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.pop("PYRAY_ADDRESS", None)
        self.env.pop("RAY_ADDRESS", None)
        self.shm_before = leaks.shm_snapshot()
        self.session_dir = None
        self.daemons = []
        port = _free_port()
        try:
            out = _cli(["start", "--head", "--port", str(port), "--num-cpus", "1",
                        "--node-ip-address", "127.0.0.1", "--num-gpus", "0", "--object-store-memory", str(128 << 20),
                        "--include-dashboard", "false"],    # only the GCS and the raylet
                       self.env)
            assert out.returncode == 0, f"pyray start failed:\n{out.stdout}\n{out.stderr}"
            assert f"tcp://127.0.0.1:{port}" in out.stdout, out.stdout
            sessions = os.listdir(os.path.join(self.tmpdir, "pyray"))
            self.session_dir = os.path.join(self.tmpdir, "pyray",
                                            next(s for s in sessions if s.startswith("session_")))
            # the GCS and the raylet: the processes of the cluster that no
            # other process of it started (the raylet's zygote and workers
            # are its descendants)
            members = self._members()
            pids = {p.pid for p in members}
            self.daemons = [p for p in members if p.ppid() not in pids]
            names = sorted(" ".join(p.cmdline()[:3]) for p in self.daemons)
            assert len(self.daemons) == 2 and "gcs.server" in names[0] and \
                "raylet.raylet" in names[1], names
        except BaseException:
            self._kill_members()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise

    def _members(self):
        """Every process started for this cluster: the daemons run in its
        session directory (their cwd), their forks inherit it or name it."""
        out = []
        for p in psutil.process_iter(["cmdline", "cwd"]):
            if p.pid == os.getpid():
                continue
            cwd = p.info["cwd"] or ""
            cmd = " ".join(p.info["cmdline"] or ())
            if cwd.startswith(self.tmpdir + os.sep) or self.tmpdir + os.sep in cmd:
                if "pyray" in cmd:
                    out.append(p)
        return out

    def _kill_members(self):
        for p in self._members():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass

    def stop(self):
        procs = list(self.daemons)
        for d in self.daemons:
            try:
                procs += d.children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        fp = self.leaks.Footprint(self.session_dir, procs, self.shm_before)
        stop_processes(self.daemons, signal.SIGTERM, timeout=10)
        shutil.rmtree(os.path.join(self.tmpdir, "pyray"), ignore_errors=True)
        try:
            fp.assert_clean()
        finally:
            self._kill_members()      # never leave a process behind, even on failure
            shutil.rmtree(self.tmpdir, ignore_errors=True)


@pytest.fixture
def head_cluster(leaks, monkeypatch):
    cluster = HeadCluster(leaks)
    # driver subprocesses inherit this environment, and with it the cluster
    monkeypatch.setenv("TMPDIR", cluster.tmpdir)
    try:
        yield cluster
    finally:
        cluster.stop()


DRIVER_ONE = """
import os
import pyray
from pyray._private.procs import stop_processes

pyray.init(address="auto", namespace="x")

@pyray.remote(num_cpus=0)
class Store:
    def __init__(self):
        self.data = {}

    def put(self, k, v):
        self.data[k] = v
        return len(self.data)

    def get(self, k):
        return self.data.get(k)

    def pid(self):
        return os.getpid()

keeper = Store.options(name="keeper", lifetime="detached").remote()
ephemeral = Store.options(name="ephemeral").remote()
pyray.get(keeper.put.remote("answer", 42))
pids = pyray.get([keeper.pid.remote(), ephemeral.pid.remote()])
print("READY", *pids, flush=True)
"""

DRIVER_TWO = """
import pyray
from pyray._private.procs import stop_processes

pyray.init(address="auto", namespace="y")

def lookup(name, namespace=None):
    try:
        return pyray.get_actor(name, namespace=namespace)
    except ValueError as err:
        return "missing: " + str(err).replace("\\n", " ")

# another job's detached actor, found by its namespace
keeper = lookup("keeper", namespace="x")
print("ANSWER", pyray.get(keeper.get.remote("answer"), timeout=30), flush=True)
print("PUT", pyray.get(keeper.put.remote("from-two", 2), timeout=30), flush=True)
# names belong to their namespace: not visible from this job's own
print("OWN-NS", lookup("keeper"), flush=True)
# so this job may use the same name for an actor of its own

@pyray.remote(num_cpus=0)
class Other:
    def where(self):
        return pyray.get_runtime_context().namespace

other = Other.options(name="keeper").remote()
print("SAME-NAME", pyray.get(other.where.remote(), timeout=30),
      pyray.get(lookup("keeper").where.remote(), timeout=30), flush=True)
print("LIST-Y", sorted(pyray.util.list_named_actors()), flush=True)
print("LIST-ALL", sorted((d["namespace"], d["name"])
                         for d in pyray.util.list_named_actors(all_namespaces=True)),
      flush=True)
# the first job's non-detached actor died with its driver
print("EPHEMERAL", lookup("ephemeral", namespace="x"), flush=True)
pyray.kill(keeper)
print("KILLED", flush=True)
"""

DRIVER_THREE = """
import pyray
from pyray._private.procs import stop_processes

pyray.init(address="auto", namespace="x")
try:
    pyray.get_actor("keeper")
    print("STILL-THERE", flush=True)
except ValueError as err:
    print("GONE", err, flush=True)
"""


def _run(driver, source, timeout=GET_TIMEOUT):
    d = driver(source)
    rc = d.wait(timeout)
    assert rc == 0, f"driver failed ({rc}):\n{d.text('stdout')}\n{d.text('stderr')}"
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] if " " in line else ""
            for line in d.text().splitlines()}


def test_detached_actor_outlives_its_driver_and_is_found_from_another(head_cluster, driver,
                                                                      wait_for):
    first = _run(driver, DRIVER_ONE)
    keeper_pid, ephemeral_pid = (int(p) for p in first["READY"].split())
    # the first driver has exited: its detached actor lives on, the other one stops
    wait_for(lambda: process_gone(ephemeral_pid), what="the non-detached actor to stop")
    assert not process_gone(keeper_pid)

    second = _run(driver, DRIVER_TWO)
    assert second["ANSWER"] == "42"
    assert second["PUT"] == "2"
    assert second["OWN-NS"].startswith("missing:") and "'keeper'" in second["OWN-NS"]
    assert second["SAME-NAME"] == "y y"
    assert second["LIST-Y"] == "['keeper']"
    assert second["LIST-ALL"] == "[('x', 'keeper'), ('y', 'keeper')]"
    assert second["EPHEMERAL"].startswith("missing:")
    assert "KILLED" in second
    wait_for(lambda: process_gone(keeper_pid), what="the killed detached actor to stop")

    third = _run(driver, DRIVER_THREE)
    assert "GONE" in third and "keeper" in third["GONE"]


@pyray.remote(num_cpus=0)
class AsyncPid:
    async def pid(self):
        return os.getpid()


def test_shutdown_leaves_no_actor_process_behind(ray_init, leaks, release, tmp_path):
    info = ray_init(num_cpus=1, object_store_memory=128 << 20)
    fp_before = leaks.shm_snapshot()
    actors = [Counter.remote(), Counter.options(max_concurrency=4).remote(), AsyncPid.remote(),
              Counter.options(name="leak-detached", lifetime="detached").remote(),
              Counter.options(max_restarts=-1).remote(), Counter.options(num_cpus=1).remote()]
    pids = pyray.get([a.pid.remote() for a in actors], timeout=GET_TIMEOUT)
    # one of them is busy in a call that never ends on its own
    actors[0].hold.remote(str(tmp_path / "started"), str(release))
    fp = leaks.Footprint.of_children(leaks.session_dir_of(info), fp_before)
    assert set(pids) <= fp.pids
    pyray.shutdown()
    fp.assert_clean()
    assert all(process_gone(p) for p in pids)


KILLED_DRIVER = """
import os, time
import pyray

pyray.init(address="auto")

@pyray.remote(num_cpus=1)
class Holder:
    def pid(self):
        return os.getpid()

@pyray.remote(num_cpus=0)
def busy():
    time.sleep(300)

h = Holder.remote()
refs = [busy.remote() for _ in range(2)]
print("READY", pyray.get(h.pid.remote()), flush=True)
time.sleep(300)
"""

CPU_FREE = """
import pyray
pyray.init(address="auto")
print("CPU", pyray.available_resources().get("CPU", 0.0), flush=True)
"""

FOUR_TASKS = """
import pyray
pyray.init(address="auto")

@pyray.remote
def square(x):
    return x * x

print("SQUARES", pyray.get([square.remote(i) for i in range(4)]), flush=True)
"""


def _cpu_free(driver):
    return float(_run(driver, CPU_FREE)["CPU"])


def test_a_killed_driver_ends_its_job(head_cluster, driver, wait_for):
    """A driver SIGKILLed on a `pyray start` cluster (no DRIVER_EXIT sent):
    its raylet notices, and the job's actor and tasks stop, their CPU
    given back."""
    d = driver(KILLED_DRIVER)
    actor_pid = int(d.wait_for_line(lambda line: line.startswith("READY")).split()[1])
    assert _cpu_free(driver) == 0.0                     # the actor holds the one CPU
    d.kill(signal.SIGKILL)
    wait_for(lambda: process_gone(actor_pid), timeout=20, what="the dead driver's actor to stop")
    wait_for(lambda: _cpu_free(driver) == 1.0, timeout=20, what="its CPU to be given back")


def test_drivers_one_after_another_leave_no_lease_held(head_cluster, driver, wait_for):
    """Each driver exits while lease requests it no longer needs may still
    be queued at the raylet: none of them is granted to the gone driver."""
    for _ in range(4):
        assert _run(driver, FOUR_TASKS)["SQUARES"] == "[0, 1, 4, 9]"
        wait_for(lambda: _cpu_free(driver) == 1.0, timeout=10,
                 what="the exited driver's leases to be given back")
