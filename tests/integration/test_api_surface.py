"""The smaller names of Ray's API a program reaches for: init()'s
process-level arguments, ray.experimental.internal_kv, custom serializers,
util.debug/annotations/accelerators, get_node_ip_address, the module aliases
(remote_function, runtime_context) and the worker-mode constants."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import warnings

import pytest

import pyray
from pyray.experimental import internal_kv as kv


class Conn:
    """A value plain pickle refuses (it holds a lock)."""

    def __init__(self, url):
        self.url = url
        self.lock = threading.Lock()


@pyray.remote
def conn_url(c):
    return type(c).__name__, c.url, os.getpid()


@pyray.remote
def kv_read(key, namespace=None):
    return kv._internal_kv_get(key, namespace=namespace)


@pyray.remote
def kv_write(key, value):
    return kv._internal_kv_put(key, value)


@pyray.remote
def worker_pid():
    return os.getpid()


@pyray.remote
def node_ip():
    return pyray.util.get_node_ip_address()


# ---------------------------------------------------------------------------
# no cluster needed
# ---------------------------------------------------------------------------
def test_module_aliases_and_modes():
    from pyray.remote_function import RemoteFunction
    from pyray.runtime_context import RuntimeContext, get_runtime_context
    assert isinstance(conn_url, RemoteFunction)
    assert get_runtime_context is pyray.get_runtime_context
    assert RuntimeContext.__name__ == "RuntimeContext"
    assert len({pyray.SCRIPT_MODE, pyray.WORKER_MODE, pyray.LOCAL_MODE}) == 3
    with pytest.raises(NotImplementedError, match="Java and C"):
        pyray.java_function("cls", "fn")


def test_log_once():
    from pyray.util import debug
    key = object()
    assert pyray.util.log_once(key) is True
    assert pyray.util.log_once(key) is False
    debug.reset_log_once(key)
    assert pyray.util.log_once(key) is True


def test_annotations():
    from pyray.util.annotations import (AnnotationType, Deprecated, DeveloperAPI, PublicAPI,
                                        RayDeprecationWarning)

    @PublicAPI(stability="beta")
    class A:
        pass

    @DeveloperAPI
    def f():
        return 1

    @Deprecated(message="Use g.")
    def old():
        return 2

    assert A._annotated_type is AnnotationType.PUBLIC_API and A._annotated_stability == "beta"
    assert f() == 1 and f._annotated_type is AnnotationType.DEVELOPER_API
    with pytest.warns(RayDeprecationWarning, match="Use g"):
        assert old() == 2
    with pytest.raises(ValueError, match="stability"):
        PublicAPI(stability="gold")


def test_accelerator_names():
    from pyray.util import accelerators
    assert accelerators.NVIDIA_TESLA_V100 == "V100"
    assert accelerators.NVIDIA_A100 == "A100"


# ---------------------------------------------------------------------------
# init()'s process-level arguments
# ---------------------------------------------------------------------------
def test_temp_dir_holds_the_session(ray_init):
    root = tempfile.mkdtemp(prefix="pt", dir="/tmp")     # short: unix socket paths
    try:
        info = ray_init(num_cpus=1, _temp_dir=root)
        session = info["session_dir"]
        assert os.path.dirname(session) == root
        assert os.path.isdir(os.path.join(session, "logs"))
        assert pyray.get(node_ip.remote())
        pyray.shutdown()
        assert not os.path.exists(session)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_temp_dir_checked(ray_init, tmp_path):
    with pytest.raises(ValueError, match="absolute path"):
        pyray.init(num_cpus=1, _temp_dir="relative/dir")
    with pytest.raises(ValueError, match="too long"):
        pyray.init(num_cpus=1, _temp_dir=str(tmp_path / ("x" * 60)))
    assert not pyray.is_initialized()


def test_logging_level_and_unused_arguments_warn(ray_init):
    logger = logging.getLogger("pyray")
    old = logger.level
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ray_init(num_cpus=1, logging_level="warning", local_mode=True,
                     _plasma_directory="/tmp")
        assert logger.level == logging.WARNING
        text = " ".join(str(w.message) for w in caught)
        assert "local_mode" in text and "_plasma_directory" in text
        assert pyray.get(worker_pid.remote()) != os.getpid()     # not local mode
    finally:
        logger.setLevel(old)
    with pytest.raises(ValueError, match="logging_level"):
        pyray.shutdown()
        pyray.init(num_cpus=1, logging_level="loud")


# ---------------------------------------------------------------------------
# on a shared cluster
# ---------------------------------------------------------------------------
def test_internal_kv_between_driver_and_workers(ray_start):
    assert kv._internal_kv_initialized()
    assert kv._internal_kv_put("surface/a", "1") is False           # did not exist
    assert kv._internal_kv_put("surface/a", b"2") is True           # existed: overwritten
    assert kv._internal_kv_put("surface/a", "3", overwrite=False) is True
    assert kv._internal_kv_get("surface/a") == b"2"
    assert pyray.get(kv_read.remote("surface/a")) == b"2"
    assert pyray.get(kv_write.remote("surface/b", "from-task")) is False
    assert kv._internal_kv_get(b"surface/b") == b"from-task"
    assert sorted(kv._internal_kv_list("surface/")) == [b"surface/a", b"surface/b"]


def test_internal_kv_namespaces_and_delete(ray_start):
    kv._internal_kv_put("nk", "default")
    kv._internal_kv_put("nk", "in-ns", namespace="ns1")
    assert kv._internal_kv_get("nk") == b"default"
    assert pyray.get(kv_read.remote("nk", "ns1")) == b"in-ns"
    assert kv._internal_kv_list("nk", namespace="ns1") == [b"nk"]
    assert kv._internal_kv_exists("nk", namespace="ns2") is False
    kv._internal_kv_put("nk2", "x")
    assert kv._internal_kv_del("nk", del_by_prefix=True) == 2
    assert kv._internal_kv_get("nk") is None
    assert kv._internal_kv_get("nk", namespace="ns1") == b"in-ns"
    assert kv._internal_kv_del("nk", namespace="ns1") == 1
    assert kv._internal_kv_del("nk", namespace="ns1") == 0
    with pytest.raises(TypeError, match="bytes or str"):
        kv._internal_kv_put("k", 3)


def test_register_serializer(ray_start):
    with pytest.raises(TypeError):
        pyray.put(Conn("plain"))                      # pickle refuses the lock
    pyray.util.register_serializer(Conn, serializer=lambda c: c.url.upper(),
                                   deserializer=lambda s: Conn(s + "!"))
    try:
        name, url, pid = pyray.get(conn_url.remote(Conn("db")))
        assert (name, url) == ("Conn", "DB!")          # rebuilt in the worker
        assert pid != os.getpid()
        assert pyray.get(pyray.put(Conn("q"))).url == "Q!"
    finally:
        pyray.util.deregister_serializer(Conn)
    with pytest.raises(TypeError):
        pyray.put(Conn("again"))
    with pytest.raises(ValueError, match="no serializer"):
        pyray.util.deregister_serializer(Conn)


def test_get_node_ip_address(ray_start):
    ips = {n["NodeManagerAddress"] for n in pyray.nodes() if n["Alive"]}
    assert pyray.util.get_node_ip_address() in ips
    assert pyray.get(node_ip.remote()) in ips


# ---------------------------------------------------------------------------
# tqdm_ray and the test helpers
# ---------------------------------------------------------------------------
def test_tqdm_ray_in_a_task_reaches_the_driver(driver):
    d = driver("""
        import pyray
        from pyray.experimental.tqdm_ray import tqdm
        pyray.init(num_cpus=1)

        @pyray.remote
        def work(n):
            total = 0
            for i in tqdm(range(n), desc="crunch", flush_interval_s=0):
                total += i
            return total

        print("result", pyray.get(work.remote(5)), flush=True)
        pyray.shutdown()
    """)
    d.wait(timeout=60)
    out = d.text("stdout")
    assert "result 10" in out
    assert "crunch: 100% 5/5" in out          # the worker's final line, forwarded
    assert "crunch:  20% 1/5" in out          # and one printed while it ran


def test_wait_for_condition_and_signal_actor(ray_start):
    from pyray._common.test_utils import SignalActor, wait_for_condition
    signal = SignalActor.remote()
    waiting = [signal.wait.remote() for _ in range(3)]
    wait_for_condition(lambda: pyray.get(signal.cur_num_waiters.remote()) == 3, timeout=10)
    ready, _ = pyray.wait(waiting, timeout=0.2)
    assert ready == []                                   # blocked until sent
    pyray.get(signal.send.remote())
    assert pyray.get(waiting, timeout=10) == [None] * 3
    with pytest.raises(RuntimeError, match="condition wasn't met"):
        wait_for_condition(lambda: False, timeout=0.3, retry_interval_ms=50)


def test_run_string_as_driver(monkeypatch, tmp_path):
    # the script runs as `python -`, which imports from the current directory
    # first: not the checkout (in CI its pyray has no compiled store)
    monkeypatch.chdir(tmp_path)
    from pyray._private.test_utils import run_string_as_driver
    out = run_string_as_driver(
        "import pyray\n"
        "pyray.init(num_cpus=1)\n"
        "print('sum', pyray.get(pyray.put(21)) * 2)\n"
        "pyray.shutdown()\n")
    assert "sum 42" in out
    import subprocess
    with pytest.raises(subprocess.CalledProcessError):
        run_string_as_driver("raise SystemExit(3)")


@pyray.remote
class Holder:
    def __init__(self, x):
        self.x = x

    def get(self):
        return self.x


@pyray.remote
class AsyncHolder:
    async def get(self):
        return "async"


def test_builtin_actor_methods(ray_start):
    h = Holder.remote(7)
    assert pyray.get(h.__ray_ready__.remote()) is True
    x, pid = pyray.get(h.__ray_call__.remote(lambda self, add: (self.x + add, os.getpid()), 3))
    assert x == 10 and pid != os.getpid()                  # ran on the instance, in the actor
    with pytest.raises(pyray.exceptions.RayActorError, match="exit"):
        pyray.get(h.__ray_terminate__.remote(), timeout=20)     # as exit_actor() in a call
    with pytest.raises(pyray.exceptions.RayActorError):
        pyray.get(h.get.remote(), timeout=20)
    a = AsyncHolder.remote()
    assert pyray.get(a.__ray_ready__.remote()) is True
    with pytest.raises(AttributeError):
        a.__not_a_method__


def test_kill_actor_and_wait_for_failure(ray_start):
    from pyray._private.test_utils import kill_actor_and_wait_for_failure
    h = Holder.options(max_restarts=1).remote(1)
    pid = pyray.get(h.__ray_call__.remote(lambda self: os.getpid()))
    kill_actor_and_wait_for_failure(h)
    assert pyray.get(h.__ray_call__.remote(lambda self: os.getpid())) != pid
    assert pyray.get(h.get.remote()) == 1
