"""Edge cases of get and wait, the runtime context and GPU visibility, as
Ray 2.x behaves: argument checks (types, duplicates, counts, timeouts),
empty lists, ordering, generators in wait; the task id seen by an actor
method; CUDA_VISIBLE_DEVICES per task on a reused worker."""
import os
import time

import pytest

import pyray
from pyray.exceptions import GetTimeoutError

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "num_gpus": 2, "object_store_memory": 256 << 20}


@pyray.remote
def value(x):
    return x


@pyray.remote
def held(path):
    """Runs until `path` exists (the `release` fixture creates it at the
    latest when the test ends)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"


@pyray.remote
def count(n):
    for i in range(n):
        yield i


# ---------------------------------------------------------------------------
# wait
# ---------------------------------------------------------------------------
def test_wait_rejects_what_ray_rejects(ray_start):
    ref = pyray.put(1)
    with pytest.raises(TypeError, match="got a single ObjectRef"):
        pyray.wait(ref)
    with pytest.raises(TypeError, match="expected a list"):
        pyray.wait((ref,))
    with pytest.raises(TypeError, match="got list containing"):
        pyray.wait([ref, 1])
    with pytest.raises(ValueError, match="Wait requires a list of unique object refs"):
        pyray.wait([ref, ref])
    other = pyray.put(2)
    with pytest.raises(ValueError, match="num_returns cannot be greater"):
        pyray.wait([ref, other], num_returns=3)
    for n in (0, -1):
        with pytest.raises(ValueError, match="Invalid number of objects to return"):
            pyray.wait([ref], num_returns=n)
    with pytest.raises(ValueError, match="must be nonnegative"):
        pyray.wait([ref], timeout=-1)
    with pytest.raises(TypeError):
        pyray.wait([ref], 1)            # num_returns is keyword-only
    with pytest.raises(TypeError):
        pyray.wait([ref], num_returns=1, timeout=None, fetch_local=True, extra=1)


def test_wait_on_an_empty_list_returns_two_empty_lists(ray_start):
    assert pyray.wait([]) == ([], [])
    assert pyray.wait([], num_returns=0, timeout=0) == ([], [])


def test_wait_timeout_zero_returns_at_once_with_what_is_ready(ray_start, release):
    done = pyray.put("done")
    slow = held.remote(str(release))
    start = time.monotonic()
    ready, not_ready = pyray.wait([slow, done], num_returns=2, timeout=0)
    assert time.monotonic() - start < 1.0
    assert ready == [done] and not_ready == [slow]
    release.touch()
    assert pyray.get(slow, timeout=30) == "released"


def test_wait_keeps_the_input_order(ray_start, release):
    refs = [pyray.put(i) for i in range(6)]
    ready, not_ready = pyray.wait(refs, num_returns=3)
    assert ready == refs[:3] and not_ready == refs[3:]
    ready, not_ready = pyray.wait(refs[::-1], num_returns=6)
    assert ready == refs[::-1] and not_ready == []
    pending = [held.remote(str(release)), pyray.put("a"), held.remote(str(release)),
               pyray.put("b")]
    ready, not_ready = pyray.wait(pending, num_returns=2, timeout=5)
    assert ready == [pending[1], pending[3]] and not_ready == [pending[0], pending[2]]
    release.touch()
    assert pyray.get(not_ready, timeout=30) == ["released", "released"]


def test_wait_on_refs_and_generators(ray_start):
    gen = count.remote(2)
    ref = pyray.put(1)
    ready, not_ready = pyray.wait([gen, ref], num_returns=2, timeout=10)
    assert ready == [gen, ref] and not_ready == []
    with pytest.raises(ValueError, match="unique"):
        pyray.wait([gen, gen])
    with pytest.raises(TypeError, match="single"):
        pyray.wait(gen)
    assert [pyray.get(r) for r in gen] == [0, 1]


# ---------------------------------------------------------------------------
# get
# ---------------------------------------------------------------------------
def test_get_of_a_list_with_duplicates(ray_start):
    a, b = pyray.put("a"), value.remote("b")
    assert pyray.get([a, b, a, b, a]) == ["a", "b", "a", "b", "a"]


def test_get_timeout_zero_raises_when_not_ready(ray_start, release):
    slow = held.remote(str(release))
    start = time.monotonic()
    with pytest.raises(GetTimeoutError):
        pyray.get(slow, timeout=0)
    assert time.monotonic() - start < 1.0
    assert isinstance(GetTimeoutError(), TimeoutError)
    assert pyray.get(pyray.put(3), timeout=0) == 3
    release.touch()
    assert pyray.get(slow, timeout=30) == "released"


def test_get_rejects_what_ray_rejects(ray_start):
    ref = pyray.put(1)
    with pytest.raises(ValueError):
        pyray.get(ref, timeout=-1)
    with pytest.raises(ValueError, match="must either be an ObjectRef or a list"):
        pyray.get((ref,))
    with pytest.raises(ValueError, match="must either be an ObjectRef or a list"):
        pyray.get(1)
    with pytest.raises(TypeError, match="which is not an ObjectRef"):
        pyray.get([ref, 1])


def test_get_of_a_generator_returns_it(ray_start):
    gen = count.remote(1)
    assert pyray.get(gen) is gen
    assert [pyray.get(r) for r in gen] == [0]


# ---------------------------------------------------------------------------
# runtime context
# ---------------------------------------------------------------------------
@pyray.remote
class Ids:
    def __init__(self):
        self.creation = pyray.get_runtime_context().get_task_id()

    def ids(self):
        c = pyray.get_runtime_context()
        return self.creation, c.get_task_id(), c.get_actor_id()

    def pid(self):
        return os.getpid()

    def reconstructed(self):
        return bool(pyray.get_runtime_context().was_current_actor_reconstructed)


@pyray.remote
def task_ids():
    c = pyray.get_runtime_context()
    return c.get_task_id(), c.get_actor_id(), c.get_node_id()


def test_actor_method_sees_its_own_task_id(ray_start):
    a = Ids.remote()
    creation, first, actor_id = pyray.get(a.ids.remote())
    _, second, _ = pyray.get(a.ids.remote())
    assert creation and first and second
    assert len({creation, first, second}) == 3
    assert actor_id == a._actor_id.hex()


def test_actor_id_is_none_outside_actors_and_node_id_is_a_node(ray_start):
    ctx = pyray.get_runtime_context()
    assert ctx.get_actor_id() is None
    task_id, actor_id, node_id = pyray.get(task_ids.remote())
    assert task_id and actor_id is None
    nodes = {n["NodeID"] for n in pyray.nodes() if n["Alive"]}
    assert node_id in nodes and ctx.get_node_id() in nodes


def test_was_current_actor_reconstructed_after_a_restart(ray_start, wait_for):
    a = Ids.options(max_restarts=1).remote()
    assert pyray.get(a.reconstructed.remote()) is False
    pid = pyray.get(a.pid.remote())
    os.kill(pid, 9)

    def restarted():
        try:
            return pyray.get(a.pid.remote(), timeout=5) != pid
        except pyray.exceptions.RayActorError:
            return False
    wait_for(restarted, timeout=30, what="the actor to restart")
    assert pyray.get(a.reconstructed.remote()) is True


# ---------------------------------------------------------------------------
# GPUs: CUDA_VISIBLE_DEVICES follows each task on a reused worker
# ---------------------------------------------------------------------------
@pyray.remote(num_gpus=1, num_cpus=1)
def gpu_task():
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), pyray.get_gpu_ids()


@pyray.remote(num_cpus=1)
def cpu_task():
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), pyray.get_gpu_ids()


def test_cuda_visible_devices_is_per_task(ray_start):
    seen_gpu_pids = set()
    for _ in range(4):
        pid, visible, ids = pyray.get(gpu_task.remote())
        assert len(ids) == 1 and visible == str(ids[0])
        seen_gpu_pids.add(pid)
    for _ in range(8):
        pid, visible, ids = pyray.get(cpu_task.remote())
        assert ids == []
        # as in Ray, a task without GPUs sees none (CUDA_VISIBLE_DEVICES=""),
        # also on a worker that ran a GPU task before
        assert visible == "", (pid, visible, pid in seen_gpu_pids)
