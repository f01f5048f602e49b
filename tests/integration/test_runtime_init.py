"""init() / shutdown() / is_initialized(): arguments, re-init, and that a
stopped (or killed) driver leaves no process, session dir or shared memory."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import psutil
import pytest

import pyray

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


def _session_dir(info):
    return info.address_info["session_dir"]


@pyray.remote
def _double(x):
    return 2 * x


@pyray.remote
def _pid():
    return os.getpid()


@pyray.remote
def _array_sum(a):
    return float(a.sum())


def test_init_starts_cluster_and_shutdown_stops_it(ray_init, leaks):
    assert not pyray.is_initialized()
    shm_before = leaks.shm_snapshot()
    info = ray_init(num_cpus=2, object_store_memory=256 * MiB)
    assert pyray.is_initialized()
    session_dir = _session_dir(info)
    assert os.path.isdir(session_dir)
    assert os.path.basename(session_dir).startswith("session_")

    # the daemons run as children of the driver
    cmdlines = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]
    assert any("pyray.gcs" in c for c in cmdlines), cmdlines
    assert any("pyray.raylet" in c for c in cmdlines), cmdlines

    # use workers and the store so every part has been started
    assert pyray.get([_double.remote(i) for i in range(8)]) == [2 * i for i in range(8)]
    big = np.arange(2 * MiB // 8, dtype=np.int64)          # 2 MiB: goes through the store
    assert pyray.get(_array_sum.remote(pyray.put(big))) == float(big.sum())

    fp = leaks.Footprint.of_children(session_dir, shm_before)
    assert fp.pids, "no cluster processes found"
    pyray.shutdown()
    assert not pyray.is_initialized()
    fp.assert_clean()


def test_shutdown_twice_and_without_init_is_a_noop(ray_init):
    pyray.shutdown()                         # never started
    ray_init(num_cpus=1, object_store_memory=128 * MiB)
    pyray.shutdown()
    pyray.shutdown()
    assert not pyray.is_initialized()


def test_init_twice_raises_runtime_error(ray_init):
    info = ray_init(num_cpus=1, object_store_memory=128 * MiB)
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        pyray.init(num_cpus=1)
    # the first cluster is untouched
    assert pyray.is_initialized()
    assert pyray.get(_double.remote(21)) == 42
    assert _session_dir(info) and os.path.isdir(_session_dir(info))


def test_init_twice_with_ignore_reinit_error(ray_init):
    info = ray_init(num_cpus=1, object_store_memory=128 * MiB)
    again = pyray.init(num_cpus=1, ignore_reinit_error=True)
    assert pyray.is_initialized()
    assert _session_dir(again) == _session_dir(info)
    assert pyray.get(_double.remote(4)) == 8


def test_init_after_shutdown_starts_a_new_cluster(ray_init):
    first = ray_init(num_cpus=1, object_store_memory=128 * MiB)
    ref = pyray.put(1)
    del ref
    pyray.shutdown()
    assert not os.path.exists(_session_dir(first))
    second = ray_init(num_cpus=1, object_store_memory=128 * MiB)
    assert _session_dir(second) != _session_dir(first)
    assert pyray.get(_double.remote(5)) == 10


def test_init_arguments_become_cluster_resources(ray_init, wait_for):
    ray_init(num_cpus=3, num_gpus=2, resources={"custom_a": 4, "custom_b": 1},
             object_store_memory=300 * MiB)
    res = pyray.cluster_resources()
    assert res["CPU"] == 3
    assert res["GPU"] == 2
    assert res["custom_a"] == 4
    assert res["custom_b"] == 1
    assert abs(res["object_store_memory"] - 300 * MiB) <= 0.01 * 300 * MiB
    # nothing is running: everything is available (eventually consistent)
    wait_for(lambda: pyray.available_resources().get("CPU") == 3, what="3 CPUs available")
    nodes = pyray.nodes()
    assert len(nodes) == 1 and nodes[0]["Alive"]
    assert nodes[0]["Resources"]["CPU"] == 3
    assert nodes[0]["Resources"]["GPU"] == 2


def test_init_defaults_use_all_cpus(ray_init):
    ray_init()
    assert pyray.cluster_resources()["CPU"] == (os.cpu_count() or 1)
    assert pyray.get(_double.remote(1)) == 2


def test_namespace(ray_init):
    ray_init(num_cpus=1, object_store_memory=128 * MiB, namespace="ns-test-1")
    assert pyray.get_runtime_context().namespace == "ns-test-1"


def test_default_namespace_is_anonymous(ray_init):
    ray_init(num_cpus=1, object_store_memory=128 * MiB)
    ns = pyray.get_runtime_context().namespace
    assert isinstance(ns, str) and ns


@pytest.mark.parametrize("kwargs", [
    {"num_cpus": -1},
    {"num_gpus": -2},
    {"object_store_memory": -5},
    {"resources": {"CPU": 2}},
    {"resources": {"custom": -1}},
    {"_memory": -1},
    {"resources": {"memory": 1 << 30}},
], ids=["neg-cpus", "neg-gpus", "neg-store", "cpu-in-resources", "neg-custom", "neg-memory",
        "memory-in-resources"])
def test_init_rejects_bad_arguments(ray_init, kwargs):
    with pytest.raises(ValueError):
        ray_init(**kwargs)
    assert not pyray.is_initialized()


def test_init_rejects_non_numeric_cpus(ray_init):
    with pytest.raises((ValueError, TypeError)):
        ray_init(num_cpus="two")
    assert not pyray.is_initialized()


def test_init_rejects_unknown_keyword(ray_init):
    with pytest.raises(TypeError):
        ray_init(num_cpus=1, not_an_option=3)
    assert not pyray.is_initialized()


def test_init_as_context_manager(ray_init, leaks):
    shm_before = leaks.shm_snapshot()
    with pyray.init(num_cpus=1, object_store_memory=128 * MiB) as info:
        assert pyray.get(_double.remote(3)) == 6
        fp = leaks.Footprint.of_children(_session_dir(info), shm_before)
    assert not pyray.is_initialized()
    fp.assert_clean()


def test_remote_call_without_init_starts_a_cluster(ray_init):
    assert not pyray.is_initialized()
    assert pyray.get(_double.remote(7)) == 14
    assert pyray.is_initialized()


def test_get_without_init_raises(ray_init):
    ref = None
    ray_init(num_cpus=1, object_store_memory=128 * MiB)
    ref = pyray.put(5)
    pyray.shutdown()
    with pytest.raises(pyray.exceptions.RayError):
        pyray.get(ref, timeout=5)
    del ref


# ---------------------------------------------------------------------------
# subprocess drivers
# ---------------------------------------------------------------------------
KILLED_DRIVER = """
    import json, os, sys, time
    import numpy as np
    import psutil
    import pyray

    info = pyray.init(num_cpus=2, object_store_memory=256 << 20)

    @pyray.remote
    def pid():
        return os.getpid()

    @pyray.remote
    def big(n):
        return np.ones(n, dtype=np.uint8)

    @pyray.remote
    def spin(path):
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        while True:                                 # still running when we die
            time.sleep(0.05)

    worker_pids = set(pyray.get([pid.remote() for _ in range(4)]))
    keep = pyray.get(big.remote(8 << 20))          # a large object in the store
    keep2 = pyray.put(np.zeros(8 << 20, dtype=np.uint8))
    running = spin.remote(os.path.abspath("spinning"))
    deadline = time.monotonic() + 30
    while not os.path.exists("spinning") or not open("spinning").read():
        assert time.monotonic() < deadline, "the spinning task never started"
        time.sleep(0.01)
    worker_pids.add(int(open("spinning").read()))
    procs = psutil.Process().children(recursive=True)
    print("READY " + json.dumps({
        "session_dir": info.address_info["session_dir"],
        "pids": sorted({p.pid for p in procs} | worker_pids)}), flush=True)
    sys.stdin.read()        # until the test kills us
"""


def _live_processes(pids):
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return procs


def test_sigkilled_driver_leaves_nothing_behind(driver, leaks):
    shm_before = leaks.shm_snapshot()
    d = driver(KILLED_DRIVER)
    line = d.wait_for_line(lambda l: l.startswith("READY "), timeout=45)
    state = json.loads(line[len("READY "):])
    procs = _live_processes(state["pids"])
    assert procs, "the driver reported no cluster processes"
    assert os.path.isdir(state["session_dir"])
    fp = leaks.Footprint(state["session_dir"], procs, shm_before)
    d.kill(signal.SIGKILL)
    fp.assert_clean(timeout=20)


STDOUT_DRIVER = """
    import os, sys
    import pyray

    pyray.init(num_cpus=2, object_store_memory=128 << 20)

    @pyray.remote
    def chatty(tag):
        print("hello-from-task", tag)
        print("err-from-task", tag, file=sys.stderr)
        return os.getpid()

    pids = pyray.get([chatty.remote(i) for i in range(3)])
    sys.stdout.write("PIDS " + " ".join(map(str, pids)) + "\\n"); sys.stdout.flush()
    sys.stdin.read()        # stay up until the test has seen the lines
    pyray.shutdown()
    print("DRIVER-DONE", flush=True)
"""


def test_worker_stdout_streams_to_driver_with_pid_prefix(driver):
    d = driver(STDOUT_DRIVER)
    line = d.wait_for_line(lambda l: l.startswith("PIDS "))
    pids = [int(p) for p in line.split()[1:]]
    for tag, pid in enumerate(pids):
        out = d.wait_for_line(lambda l, tag=tag: l.endswith(f"hello-from-task {tag}"))
        prefix = out[:-len(f"hello-from-task {tag}")]
        assert str(pid) in prefix, f"no pid {pid} in the prefix of {out!r}"
        assert not out.startswith("hello"), f"no prefix on {out!r}"
        err = d.wait_for_line(lambda l, tag=tag: l.endswith(f"err-from-task {tag}"),
                              stream="stderr")
        assert str(pid) in err
    d.close_stdin()
    d.wait_for_line(lambda l: l == "DRIVER-DONE")
    assert d.wait() == 0, d.text("stderr")


EXITING_DRIVER = """
    import json, os
    import psutil
    import pyray

    info = pyray.init(num_cpus=1, object_store_memory=128 << 20)

    @pyray.remote
    def f():
        return os.getpid()

    wpid = pyray.get(f.remote())
    pids = [p.pid for p in psutil.Process().children(recursive=True)] + [wpid]
    print("STATE " + json.dumps({"session_dir": info.address_info["session_dir"],
                                 "pids": pids}), flush=True)
    # no shutdown(): the interpreter exits normally
"""


def test_driver_exit_without_shutdown_leaves_nothing_behind(driver, leaks):
    shm_before = leaks.shm_snapshot()
    d = driver(EXITING_DRIVER)
    state = json.loads(d.wait_for_line(lambda l: l.startswith("STATE "))[len("STATE "):])
    procs = _live_processes(state["pids"])
    assert d.wait() == 0, d.text("stderr")
    leaks.Footprint(state["session_dir"], procs, shm_before).assert_clean(timeout=20)


MAIN_OBJECTS_DRIVER = """
    import os
    import pyray

    pyray.init(num_cpus=1, object_store_memory=128 << 20)

    def plus_one(x):                 # a plain function of the script (__main__)
        return x + 1

    class Box:                       # a class of the script
        def __init__(self, v):
            self.v = v

    @pyray.remote
    def apply(fn, box, x):
        return fn(x) + box.v, os.getpid()

    @pyray.remote
    def make_box(v):
        return Box(v)

    value, pid = pyray.get(apply.remote(plus_one, Box(10), 1), timeout=60)
    back = pyray.get(make_box.remote(7), timeout=60)
    print("RESULT", value, pid != os.getpid(), type(back).__name__, back.v, flush=True)
    pyray.shutdown()
"""


def test_functions_and_classes_of_the_script_travel_by_value(driver):
    """As in Ray: a function or class defined in the driver's script is sent
    by value (a worker cannot import the script's __main__)."""
    d = driver(MAIN_OBJECTS_DRIVER)
    line = d.wait_for_line(lambda l: l.startswith("RESULT"), timeout=60)
    assert line.split()[1:] == ["12", "True", "Box", "7"], d.text("stderr")
    assert d.wait() == 0, d.text("stderr")
