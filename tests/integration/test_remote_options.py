"""Ray's task and actor options that change where and how work runs:
max_calls, max_pending_calls, allow_out_of_order_execution, an actor
method's name, object_store_memory, and the options Ray validates."""
from __future__ import annotations

import collections
import os
import time

import pytest

import pyray
from pyray.exceptions import PendingCallsLimitExceeded

pytestmark = pytest.mark.timeout(90)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20}


@pyray.remote(max_calls=2)
def pid_twice():
    return os.getpid()


@pyray.remote
def pid():
    return os.getpid()


@pyray.remote
def slow_value(path, v):
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return v


@pyray.remote(num_cpus=0)
class Box:
    def wait_for(self, path):
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "done"

    def echo(self, x):
        return x

    def task_name(self):
        return pyray.get_runtime_context().get_task_name()


def test_max_calls_retires_a_worker_after_that_many_tasks(ray_start):
    pids = [pyray.get(pid_twice.remote(), timeout=30) for _ in range(6)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5], pids
    assert len(set(pids)) == 3, pids
    # a burst too: no worker runs more than two
    burst = collections.Counter(pyray.get([pid_twice.remote() for _ in range(10)],
                                          timeout=60))
    assert max(burst.values()) <= 2 and sum(burst.values()) == 10, burst
    # the default (0): workers are reused
    assert len({pyray.get(pid.remote(), timeout=30) for _ in range(5)}) == 1
    # through .options() too
    once = [pyray.get(pid.options(max_calls=1).remote(), timeout=30) for _ in range(3)]
    assert len(set(once)) == 3


def test_a_gpu_task_defaults_to_max_calls_1_as_in_ray():
    f = pyray.remote(num_gpus=1)(lambda: 0)
    assert f._options["max_calls"] == 1
    assert pyray.remote(num_gpus=1, max_calls=5)(lambda: 0)._options["max_calls"] == 5
    assert "max_calls" not in pyray.remote(lambda: 0)._options


def test_max_pending_calls_refuses_calls_beyond_the_limit(ray_start, tmp_path):
    gate = str(tmp_path / "gate")
    b = Box.options(max_pending_calls=2).remote()
    first = b.wait_for.remote(gate)
    second = b.echo.remote(1)
    with pytest.raises(PendingCallsLimitExceeded, match="max_pending_calls"):
        b.echo.remote(2)
    open(gate, "w").close()
    assert pyray.get([first, second], timeout=30) == ["done", 1]
    # room again once they finished
    assert pyray.get(b.echo.remote(3), timeout=30) == 3
    # without the option there is no limit
    c = Box.remote()
    gate2 = str(tmp_path / "gate2")
    refs = [c.wait_for.remote(gate2)] + [c.echo.remote(i) for i in range(20)]
    open(gate2, "w").close()
    assert pyray.get(refs[1:], timeout=30) == list(range(20))


def test_out_of_order_calls_do_not_wait_for_earlier_calls_arguments(ray_start, tmp_path):
    gate = str(tmp_path / "gate")
    b = Box.options(allow_out_of_order_execution=True).remote()
    assert pyray.get(b.echo.remote(0), timeout=30) == 0
    late = b.echo.remote(slow_value.remote(gate, "late"))
    early = b.echo.remote("early")
    # the second call runs although the first one's argument is not ready
    assert pyray.get(early, timeout=10) == "early"
    ready, _ = pyray.wait([late], timeout=0.2)
    assert ready == []
    open(gate, "w").close()
    assert pyray.get(late, timeout=30) == "late"
    # in order (the default) the second call waits behind the first
    gate2 = str(tmp_path / "gate2")
    c = Box.remote()
    assert pyray.get(c.echo.remote(0), timeout=30) == 0
    late = c.echo.remote(slow_value.remote(gate2, "late"))
    early = c.echo.remote("early")
    ready, _ = pyray.wait([early], timeout=1.0)
    assert ready == []
    open(gate2, "w").close()
    assert pyray.get([late, early], timeout=30) == ["late", "early"]


def test_an_actor_calls_name_option_names_the_task(ray_start):
    b = Box.remote()
    assert pyray.get(b.task_name.remote(), timeout=30) == "Box.task_name"
    assert pyray.get(b.task_name.options(name="mine").remote(), timeout=30) == "mine"
    # the method still runs under its own name afterwards
    assert pyray.get(b.task_name.remote(), timeout=30) == "Box.task_name"


def test_object_store_memory_is_a_resource_request_for_actors(ray_start):
    total = pyray.cluster_resources()["object_store_memory"]
    ok = Box.options(object_store_memory=1 << 20).remote()
    assert pyray.get(ok.echo.remote(1), timeout=30) == 1
    too_big = Box.options(object_store_memory=int(total) * 2).remote()
    ready, _ = pyray.wait([too_big.echo.remote(1)], timeout=1.5)
    assert ready == []      # no node has that much: it waits, as in Ray
    with pytest.raises(ValueError, match="not implemented for tasks"):
        pid.options(object_store_memory=1 << 20)


def test_options_ray_validates(ray_start):
    # concurrency_groups is an actor option in Ray, not a task one
    with pytest.raises(ValueError, match="concurrency_groups"):
        pid.options(concurrency_groups={"io": 1})
    for bad in ({"max_calls": -1}, {"max_calls": "2"}, {"_metadata": [1]},
                {"enable_task_events": "yes"}, {"accelerator_type": 3},
                {"label_selector": {"zone": "in(a,"}}, {"label_selector": ["zone"]}):
        with pytest.raises(ValueError):
            pid.options(**bad)
    with pytest.raises(ValueError, match="max_pending_calls"):
        Box.options(max_pending_calls=-2)
    with pytest.raises(ValueError, match="name"):
        Box.remote().echo.options(name=3)
    # accepted as in Ray
    assert pyray.get(pid.options(_metadata={"lib": {"k": 1}}, enable_task_events=False)
                     .remote(), timeout=30) > 0
