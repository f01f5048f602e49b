"""Resources and scheduling: tasks wait for CPUs, custom resources and GPUs;
infeasible requests warn without hanging the driver; cluster_resources,
available_resources, nodes and the runtime context."""
from __future__ import annotations

import os
import re
import time

import pytest

import pyray
from tasklib import barrier, interval, max_overlap as _max_overlap, wait_for_file
from pyray.exceptions import GetTimeoutError

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "num_gpus": 2, "resources": {"custom": 1, "pool": 4},
                 "object_store_memory": 256 << 20}


@pyray.remote
def gpu_info():
    return os.environ.get("CUDA_VISIBLE_DEVICES"), pyray.get_gpu_ids()


@pyray.remote
def gpu_info_at_barrier(dirpath, name, n):
    open(os.path.join(dirpath, name), "w").close()
    deadline = time.monotonic() + 10
    while len(os.listdir(dirpath)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError("GPU tasks did not run together")
        time.sleep(0.01)
    return os.environ.get("CUDA_VISIBLE_DEVICES"), pyray.get_gpu_ids()


@pyray.remote
def context_info():
    rc = pyray.get_runtime_context()
    return {"job_id": rc.get_job_id(), "task_id": rc.get_task_id(),
            "node_id": rc.get_node_id(), "resources": rc.get_assigned_resources()}


def _disjoint(intervals):
    ordered = sorted(intervals)
    return all(a_end <= b_start for (_, a_end), (b_start, _) in zip(ordered, ordered[1:]))


def _cpus(ids):
    return [int(i) for i in ids]


# ---------------------------------------------------------------------------
# waiting for resources
# ---------------------------------------------------------------------------
def test_tasks_needing_all_cpus_run_one_after_another(ray_start):
    runs = pyray.get([interval.options(num_cpus=2).remote() for _ in range(2)])
    assert _disjoint(runs), runs


def test_one_cpu_tasks_run_side_by_side(ray_start, tmp_path):
    refs = [barrier.remote(str(tmp_path), f"t{i}", 2, i) for i in range(2)]
    assert pyray.get(refs, timeout=30) == [0, 1]


def test_fractional_cpus_share_a_cpu(ray_start, tmp_path):
    refs = [barrier.options(num_cpus=0.5).remote(str(tmp_path), f"t{i}", 4, i)
            for i in range(4)]
    assert pyray.get(refs, timeout=40) == [0, 1, 2, 3]


def test_custom_resource_serializes_tasks(ray_start):
    runs = pyray.get([interval.options(resources={"custom": 1}).remote() for _ in range(2)])
    assert _disjoint(runs), runs


def test_custom_resource_quantities(ray_start, tmp_path):
    # pool: 4 -> two tasks of 2 fit at once
    refs = [barrier.options(num_cpus=0, resources={"pool": 2}).remote(
        str(tmp_path), f"t{i}", 2, i) for i in range(2)]
    assert pyray.get(refs, timeout=30) == [0, 1]
    # three tasks of 2 do not: at most two overlap
    runs = pyray.get([interval.options(num_cpus=0, resources={"pool": 2}).remote(0.3)
                      for _ in range(3)])
    assert _max_overlap(runs) <= 2, runs


def test_zero_cpu_task_runs_while_cpus_are_busy(ray_start, release):
    busy = [wait_for_file.options(num_cpus=1).remote(str(release)) for _ in range(2)]
    assert pyray.get(interval.options(num_cpus=0).remote(0), timeout=30)
    release.touch()
    assert pyray.get(busy, timeout=30) == [True, True]


# ---------------------------------------------------------------------------
# GPUs
# ---------------------------------------------------------------------------
def test_gpu_task_sees_its_gpu(ray_start):
    cvd, ids = pyray.get(gpu_info.options(num_gpus=1).remote())
    assert len(ids) == 1 and int(ids[0]) in (0, 1)
    assert cvd == str(ids[0])


def test_two_gpu_task_sees_both(ray_start):
    cvd, ids = pyray.get(gpu_info.options(num_gpus=2).remote())
    assert sorted(_cpus(ids)) == [0, 1]
    assert sorted(int(x) for x in cvd.split(",")) == [0, 1]


def test_concurrent_gpu_tasks_get_different_gpus(ray_start, tmp_path):
    refs = [gpu_info_at_barrier.options(num_gpus=1).remote(str(tmp_path), f"g{i}", 2)
            for i in range(2)]
    (cvd0, ids0), (cvd1, ids1) = pyray.get(refs, timeout=30)
    assert len(ids0) == 1 and len(ids1) == 1
    assert {int(ids0[0]), int(ids1[0])} == {0, 1}
    assert cvd0 == str(ids0[0]) and cvd1 == str(ids1[0])


def test_gpu_tasks_beyond_the_gpus_wait(ray_start):
    runs = pyray.get([interval.options(num_gpus=2, num_cpus=0).remote() for _ in range(2)])
    assert _disjoint(runs), runs


def test_gpu_task_assigned_resources(ray_start):
    info = pyray.get(context_info.options(num_gpus=1, num_cpus=1).remote())
    assert info["resources"].get("GPU") == 1
    assert info["resources"].get("CPU") == 1


# ---------------------------------------------------------------------------
# infeasible
# ---------------------------------------------------------------------------
def _read_until(capfd, pattern, timeout=15.0):
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out, err = capfd.readouterr()
        seen += out + err
        if re.search(pattern, seen, re.I | re.S):
            return seen
        time.sleep(0.05)
    return seen


INFEASIBLE_WORDS = r"(cannot be scheduled|can't be scheduled|can not be scheduled|" \
                   r"infeasible|no node in the cluster can provide)"


def test_infeasible_cpu_request_warns_and_does_not_hang(ray_start, capfd):
    ref = interval.options(num_cpus=100).remote(0)
    with pytest.raises(GetTimeoutError):
        pyray.get(ref, timeout=1)
    seen = _read_until(capfd, INFEASIBLE_WORDS + r".*100|100.*" + INFEASIBLE_WORDS)
    assert re.search(INFEASIBLE_WORDS, seen, re.I), f"no warning printed: {seen!r}"
    assert "100" in seen, seen
    # the driver and the cluster go on
    assert pyray.get(interval.remote(0), timeout=30)
    pyray.cancel(ref)


def test_infeasible_memory_request(ray_start, capfd):
    # more memory than the node was given: reported as any infeasible shape
    too_much = int(pyray.cluster_resources()["memory"]) * 2
    ref = interval.options(memory=too_much).remote(0)
    with pytest.raises(GetTimeoutError):
        pyray.get(ref, timeout=1)
    seen = _read_until(capfd, INFEASIBLE_WORDS + r".*memory")
    assert re.search(INFEASIBLE_WORDS + r".*memory", seen, re.I | re.S), seen
    assert pyray.get(interval.remote(0), timeout=30)
    pyray.cancel(ref)


def test_infeasible_custom_resource(ray_start, capfd):
    ref = interval.options(resources={"no_such_thing": 1}).remote(0)
    with pytest.raises(GetTimeoutError):
        pyray.get(ref, timeout=1)
    seen = _read_until(capfd, r"no_such_thing")
    assert "no_such_thing" in seen, seen
    pyray.cancel(ref)


# ---------------------------------------------------------------------------
# cluster state
# ---------------------------------------------------------------------------
def test_cluster_resources(ray_start):
    res = pyray.cluster_resources()
    assert res["CPU"] == 2 and res["GPU"] == 2
    assert res["custom"] == 1 and res["pool"] == 4
    assert "object_store_memory" in res


def test_a_node_has_memory_by_default(ray_start):
    # as in Ray: the memory available on the machine less the object store's
    memory = pyray.cluster_resources()["memory"]
    assert memory > 0 and memory == int(memory)
    assert pyray.nodes()[0]["Resources"]["memory"] == memory


@pyray.remote
def free_memory_while_held(expected, timeout=10.0):
    """The node's free memory as this task sees it, polled until it is
    `expected` (the node's report follows the lease a moment later)."""
    deadline = time.monotonic() + timeout
    while True:
        free = pyray.available_resources().get("memory", 0)
        if free == expected or time.monotonic() > deadline:
            return free, pyray.get_runtime_context().get_assigned_resources()
        time.sleep(0.05)


def test_memory_option_holds_memory(ray_start, wait_for):
    total = pyray.cluster_resources()["memory"]
    wait_for(lambda: pyray.available_resources().get("memory") == total, what="memory free")
    free, assigned = pyray.get(
        free_memory_while_held.options(memory=1 << 30).remote(total - (1 << 30)), timeout=30)
    assert assigned == {"CPU": 1, "memory": 1 << 30}
    assert free == total - (1 << 30)
    wait_for(lambda: pyray.available_resources().get("memory") == total,
             what="the memory back after the task")


def test_available_resources_follow_running_tasks(ray_start, wait_for, release):
    wait_for(lambda: pyray.available_resources().get("CPU") == 2, what="2 CPUs free")
    ref = wait_for_file.options(num_cpus=1, resources={"custom": 1}).remote(str(release))
    wait_for(lambda: pyray.available_resources().get("CPU") == 1 and
             pyray.available_resources().get("custom", 0) == 0,
             what="1 CPU and no 'custom' available while the task runs")
    release.touch()
    assert pyray.get(ref, timeout=30)
    wait_for(lambda: pyray.available_resources().get("CPU") == 2 and
             pyray.available_resources().get("custom") == 1,
             what="the resources back after the task")


def test_nodes(ray_start):
    nodes = pyray.nodes()
    assert len(nodes) == 1
    n = nodes[0]
    assert n["Alive"] is True
    assert n["NodeID"] == pyray.get_runtime_context().get_node_id()
    assert n["Resources"]["CPU"] == 2
    assert n["Resources"]["custom"] == 1
    assert isinstance(n["NodeManagerAddress"], str)


# ---------------------------------------------------------------------------
# runtime context
# ---------------------------------------------------------------------------
def test_runtime_context_in_driver(ray_start):
    rc = pyray.get_runtime_context()
    assert isinstance(rc.get_job_id(), str) and rc.get_job_id()
    assert isinstance(rc.get_node_id(), str) and rc.get_node_id()
    assert rc.get_task_id() is None


def test_runtime_context_in_task(ray_start):
    rc = pyray.get_runtime_context()
    a, b = pyray.get([context_info.remote(), context_info.remote()])
    assert a["job_id"] == b["job_id"] == rc.get_job_id()
    assert a["node_id"] == rc.get_node_id()
    assert a["task_id"] and b["task_id"] and a["task_id"] != b["task_id"]
    assert a["resources"] == {"CPU": 1}


def test_task_id_matches_ref(ray_start):
    ref = context_info.remote()
    info = pyray.get(ref)
    assert ref.hex().startswith(info["task_id"])


def test_assigned_resources_of_options(ray_start):
    info = pyray.get(context_info.options(num_cpus=0.5, resources={"pool": 1}).remote())
    assert info["resources"] == {"CPU": 0.5, "pool": 1}
