"""joblib backend, cloudpickle/types/job_config modules,
inspect_serializability, and the runtime context."""
from __future__ import annotations

import io
import os
import threading

import pytest

import pyray
from pyray.exceptions import RaySystemError
from pyray.job_config import JobConfig

from poollib import fail_on_three, square_pid


# ---------------------------------------------------------------------------
# no cluster needed
# ---------------------------------------------------------------------------
def test_cloudpickle_module():
    import cloudpickle
    fn = pyray.cloudpickle.loads(pyray.cloudpickle.dumps(lambda x: x + 1))
    assert fn(1) == 2
    assert pyray.cloudpickle.CloudPickler is cloudpickle.CloudPickler


def test_types_object_ref():
    from pyray.types import ObjectRef
    assert ObjectRef[int] is not None          # usable in annotations
    assert not isinstance(5, ObjectRef)
    with pytest.raises(TypeError):
        ObjectRef()


def test_inspect_serializability_finds_the_culprit():
    lock = threading.Lock()

    def uses_lock():
        return lock

    out = io.StringIO()
    ok, failures = pyray.util.inspect_serializability(uses_lock, name="uses_lock",
                                                      print_file=out)
    assert ok is False
    assert [f.name for f in failures] == ["lock"]
    assert next(iter(failures)).obj is lock
    assert "lock" in out.getvalue()

    class Holder:
        def __init__(self):
            self.fine = 1
            self.bad = threading.Lock()
    ok, failures = pyray.util.inspect_serializability(Holder(), print_file=io.StringIO())
    assert not ok and {f.name for f in failures} == {"bad"}
    assert pyray.util.inspect_serializability([1, "a"], print_file=io.StringIO()) == \
        (True, set())


def test_job_config_validation():
    cfg = JobConfig(metadata={"team": "x"}, code_search_path=["/tmp"])
    cfg.set_metadata("k", "v")
    assert cfg.metadata == {"team": "x", "k": "v"}
    assert JobConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="not supported"):
        JobConfig(jvm_options=["-Xmx1g"])
    with pytest.raises(ValueError, match="not supported"):
        JobConfig(default_actor_lifetime="detached")
    with pytest.raises(ValueError):
        JobConfig(default_actor_lifetime="forever")
    with pytest.raises(TypeError):
        JobConfig(metadata={"k": 1})
    with pytest.raises(TypeError):
        JobConfig(code_search_path="/tmp")


def test_runtime_context_before_init():
    assert not pyray.is_initialized()
    rc = pyray.get_runtime_context()
    with pytest.raises(AssertionError):
        rc.get_job_id()
    with pytest.raises(RaySystemError):
        rc.gcs_address
    assert rc.get_task_id() is None and rc.get_actor_id() is None


def test_joblib_missing_names_pip(monkeypatch):
    import sys
    from pyray.util.joblib import register_ray
    monkeypatch.setitem(sys.modules, "joblib", None)
    monkeypatch.setitem(sys.modules, "joblib.parallel", None)
    with pytest.raises(ImportError, match="pip install joblib"):
        register_ray()


# ---------------------------------------------------------------------------
# clusters of their own (before the module's shared one starts)
# ---------------------------------------------------------------------------
def test_job_config_reaches_workers(ray_init, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "jc_extra_module.py").write_text("VALUE = 41\n")
    cfg = JobConfig(metadata={"owner": "tests"}, code_search_path=[str(code)],
                    ray_namespace="jc-ns")
    ray_init(num_cpus=1, object_store_memory=128 << 20, job_config=cfg)
    rc = pyray.get_runtime_context()
    assert rc.namespace == "jc-ns"
    assert rc.get_job_config().metadata == {"owner": "tests"}

    @pyray.remote
    def from_worker():
        import jc_extra_module
        rc = pyray.get_runtime_context()
        return (jc_extra_module.VALUE + 1, rc.get_job_config().metadata, rc.namespace,
                os.getpid())

    value, metadata, ns, pid = pyray.get(from_worker.remote(), timeout=30)
    assert (value, metadata, ns) == (42, {"owner": "tests"}, "jc-ns")
    assert pid != os.getpid()
    pyray.shutdown()


def test_init_rejects_a_non_job_config(ray_init):
    with pytest.raises(TypeError, match="JobConfig"):
        ray_init(num_cpus=1, job_config={"metadata": {}})


# ---------------------------------------------------------------------------
# on a cluster
# ---------------------------------------------------------------------------
def test_types_isinstance_of_real_refs(ray_start):
    from pyray.types import ObjectRef
    assert isinstance(pyray.put(1), ObjectRef)


def test_joblib_backend_runs_on_the_cluster(ray_start):
    joblib = pytest.importorskip("joblib")
    from pyray.util.joblib import register_ray
    register_ray()
    with joblib.parallel_backend("ray"):
        out = joblib.Parallel(n_jobs=-1)(joblib.delayed(square_pid)(i) for i in range(12))
    assert [v for v, _ in out] == [i * i for i in range(12)]
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    with joblib.parallel_backend("ray", n_jobs=2):
        with pytest.raises(KeyError):
            joblib.Parallel()(joblib.delayed(fail_on_three)(i) for i in range(6))


@pyray.remote
def task_context():
    rc = pyray.get_runtime_context()
    return {"job": rc.get_job_id(), "task": rc.get_task_id(), "actor": rc.get_actor_id(),
            "node": rc.get_node_id(), "worker": rc.get_worker_id(),
            "name": rc.get_task_name(), "fn": rc.get_task_function_name(),
            "task_obj": rc.task_id.hex(), "get": rc.get(),
            "metadata": rc.get_job_config().metadata,
            "accel": rc.get_accelerator_ids(), "resources": rc.get_assigned_resources()}


@pyray.remote
class Ctx:
    def info(self):
        rc = pyray.get_runtime_context()
        return {"actor": rc.get_actor_id(), "actor_obj": rc.actor_id.hex(),
                "name": rc.get_actor_name(), "task_name": rc.get_task_name(),
                "fn": rc.get_task_function_name(),
                "reconstructed": rc.was_current_actor_reconstructed,
                "get": rc.get(), "worker": rc.get_worker_id()}

    def me(self):
        return pyray.get_runtime_context().current_actor


def test_runtime_context_in_driver(ray_start):
    rc = pyray.get_runtime_context()
    assert rc is pyray.get_runtime_context()
    assert rc.job_id.hex() == rc.get_job_id()
    assert rc.node_id.hex() == rc.get_node_id()
    assert isinstance(rc.get_worker_id(), str) and rc.get_worker_id()
    assert rc.get_task_id() is None and rc.get_actor_id() is None
    assert rc.get_task_name() is None and rc.get_actor_name() is None
    d = rc.get()
    assert d["job_id"] == rc.job_id and d["namespace"] == rc.namespace
    assert "task_id" not in d and "actor_id" not in d
    assert rc.gcs_address == ray_start["gcs_address"]
    assert rc.get_accelerator_ids() == {"GPU": []}
    with pytest.raises(RuntimeError):
        rc.current_actor
    with pytest.raises(AssertionError):
        rc.get_assigned_resources()


def test_runtime_context_in_task(ray_start):
    rc = pyray.get_runtime_context()
    info = pyray.get(task_context.remote(), timeout=30)
    assert info["job"] == rc.get_job_id() and info["node"] == rc.get_node_id()
    assert info["worker"] != rc.get_worker_id()
    assert info["task"] and info["task"] == info["task_obj"] == info["get"]["task_id"].hex()
    assert info["actor"] is None and "actor_id" not in info["get"]
    assert info["name"] == "task_context"
    assert info["fn"] == f"{__name__}.task_context"
    assert info["accel"] == {"GPU": []}
    assert info["resources"] == {"CPU": 1}
    named = pyray.get(task_context.options(name="custom").remote(), timeout=30)
    assert named["name"] == "custom" and named["fn"] == f"{__name__}.task_context"


def test_runtime_context_in_actor(ray_start):
    a = Ctx.options(name="ctx-actor").remote()
    info = pyray.get(a.info.remote(), timeout=30)
    assert info["actor"] == info["actor_obj"] == a._actor_id.hex()
    assert info["get"]["actor_id"].hex() == info["actor"]
    assert info["name"] == "ctx-actor"
    assert info["task_name"] == "Ctx.info"
    assert info["fn"] == f"{__name__}.Ctx.info"
    assert info["reconstructed"] is False          # a plain bool once returned
    me = pyray.get(a.me.remote(), timeout=30)
    assert me._actor_id == a._actor_id
    b = Ctx.remote()
    assert pyray.get(b.info.remote(), timeout=30)["name"] == ""
    pyray.kill(a)
    pyray.kill(b)
