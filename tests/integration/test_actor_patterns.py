"""Actor patterns: ActorPool, a parameter server fed numpy gradients by
worker tasks, 100 actors alive at once, and the runtime context inside
actors."""
from __future__ import annotations

import os

import numpy as np
import pytest

import pyray
from pyray.util import ActorPool

from actorlib import Counter, process_gone

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 512 << 20}

GET_TIMEOUT = 30


@pyray.remote(num_cpus=0)
class Doubler:
    def __init__(self):
        self.calls = 0

    def double(self, x):
        self.calls += 1
        return 2 * x

    def calls_and_pid(self):
        return self.calls, os.getpid()


# ---------------------------------------------------------------------------
# ActorPool
# ---------------------------------------------------------------------------
def _double(actor, v):
    return actor.double.remote(v)


def test_actor_pool_map_keeps_order_and_uses_every_actor(ray_start):
    actors = [Doubler.remote() for _ in range(3)]
    pool = ActorPool(actors)
    assert list(pool.map(_double, range(30))) == [2 * v for v in range(30)]
    stats = pyray.get([a.calls_and_pid.remote() for a in actors], timeout=GET_TIMEOUT)
    assert sum(calls for calls, _ in stats) == 30
    assert all(calls > 0 for calls, _ in stats)
    assert len({pid for _, pid in stats}) == 3
    # a pool can be mapped again
    assert list(pool.map(_double, [5, 6])) == [10, 12]


def test_actor_pool_map_unordered(ray_start):
    pool = ActorPool([Doubler.remote() for _ in range(2)])
    out = list(pool.map_unordered(_double, range(20)))
    assert sorted(out) == [2 * v for v in range(20)]


def test_actor_pool_submit_get_next_and_has_next(ray_start):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert not pool.has_next()
    for v in range(5):          # more values than actors: the rest wait in the pool
        pool.submit(_double, v)
    assert pool.has_next()
    assert [pool.get_next(timeout=GET_TIMEOUT) for _ in range(5)] == [0, 2, 4, 6, 8]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    for v in (10, 20, 30):
        pool.submit(_double, v)
    got = {pool.get_next_unordered(timeout=GET_TIMEOUT) for _ in range(3)}
    assert got == {20, 40, 60}
    assert not pool.has_next()


def test_actor_pool_push_and_pop_idle(ray_start):
    a, b = Doubler.remote(), Doubler.remote()
    pool = ActorPool([a])
    assert pool.has_free()
    popped = pool.pop_idle()
    assert popped == a
    assert pool.pop_idle() is None and not pool.has_free()
    pool.push(b)
    with pytest.raises(ValueError):
        pool.push(b)            # already in the pool
    pool.submit(_double, 4)
    assert pool.pop_idle() is None         # b is busy
    assert pool.get_next(timeout=GET_TIMEOUT) == 8
    assert pool.pop_idle() == b
    assert pyray.get(b.calls_and_pid.remote(), timeout=GET_TIMEOUT)[0] == 1


def test_actor_pool_get_next_timeout(ray_start, tmp_path):
    pool = ActorPool([Counter.remote()])
    release = tmp_path / "release"
    pool.submit(lambda a, v: a.hold.remote(str(tmp_path / "started"), str(release)), None)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05)
    assert pool.get_next_unordered(timeout=0.05, ignore_if_timedout=True) is None
    release.touch()
    pid, value = pool.get_next(timeout=GET_TIMEOUT)
    assert value == 0 and pid > 0


# ---------------------------------------------------------------------------
# parameter server
# ---------------------------------------------------------------------------
def _store_backed(arr):
    """True if the array's memory is the object store's (a PlasmaBuffer at
    the end of its chain of bases), not a copy."""
    base = arr.base
    for _ in range(8):
        if type(base).__name__ == "PlasmaBuffer":
            return True
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
        if base is None:
            return False
    return False


@pyray.remote(num_cpus=0)
class ParameterServer:
    def __init__(self, size):
        self.weights = np.zeros(size, dtype=np.float64)
        self.pushes = 0
        self.views = []

    def push(self, grad):
        # the gradient arrives as a read-only view on shared memory, not a copy
        self.views.append((grad.flags.writeable, grad.flags.owndata, _store_backed(grad)))
        self.weights += grad
        self.pushes += 1
        return self.pushes

    def pull(self):
        return self.weights

    def received(self):
        return self.pushes, self.views


@pyray.remote
def worker_task(ps, worker, steps, size):
    for step in range(steps):
        weights = pyray.get(ps.pull.remote())
        assert not weights.flags.writeable and _store_backed(weights)   # pulled: the same
        grad = np.full(size, float(worker * 1000 + step), dtype=np.float64)
        pyray.get(ps.push.remote(grad))
    return worker


def test_parameter_server(ray_start):
    size = 256 * 1024            # 2 MiB of float64 per push: through the store
    workers, steps = 4, 3
    ps = ParameterServer.remote(size)
    done = pyray.get([worker_task.remote(ps, w, steps, size) for w in range(workers)],
                     timeout=GET_TIMEOUT)
    assert sorted(done) == list(range(workers))
    pushes, views = pyray.get(ps.received.remote(), timeout=GET_TIMEOUT)
    assert pushes == workers * steps
    assert views == [(False, False, True)] * pushes
    weights = pyray.get(ps.pull.remote(), timeout=GET_TIMEOUT)
    expected = float(sum(w * 1000 + s for w in range(workers) for s in range(steps)))
    assert weights.shape == (size,)
    assert (weights == expected).all()        # exact: small integers in float64
    assert not weights.flags.writeable and _store_backed(weights)


# ---------------------------------------------------------------------------
# many actors
# ---------------------------------------------------------------------------
def test_one_hundred_actors_alive_at_once(ray_start, wait_for):
    actors = [Counter.remote(i) for i in range(100)]
    pids = pyray.get([a.pid.remote() for a in actors], timeout=GET_TIMEOUT)
    assert len(set(pids)) == 100           # one process each, all alive together
    assert pyray.get([a.incr.remote() for a in actors], timeout=GET_TIMEOUT) == \
        [i + 1 for i in range(100)]
    del actors          # out of scope: every one of them stops
    for pid in pids:
        wait_for(lambda: process_gone(pid), what=f"actor process {pid} to exit")


# ---------------------------------------------------------------------------
# runtime context
# ---------------------------------------------------------------------------
@pyray.remote(num_cpus=0)
class Introspect:
    def context(self):
        rc = pyray.get_runtime_context()
        return {"actor_id": rc.get_actor_id(), "prop": rc.actor_id.hex(),
                "job_id": rc.get_job_id(), "namespace": rc.namespace,
                "reconstructed": rc.was_current_actor_reconstructed}

    def me(self):
        return pyray.get_runtime_context().current_actor

    async def async_context(self):
        return pyray.get_runtime_context().get_actor_id()


@pyray.remote
def task_actor_id():
    return pyray.get_runtime_context().get_actor_id()


def test_runtime_context_in_actors(ray_start):
    a = Introspect.remote()
    got = pyray.get(a.context.remote(), timeout=GET_TIMEOUT)
    rc = pyray.get_runtime_context()
    assert got == {"actor_id": a._actor_id.hex(), "prop": a._actor_id.hex(),
                   "job_id": rc.get_job_id(), "namespace": rc.namespace,
                   "reconstructed": False}
    assert pyray.get(a.async_context.remote(), timeout=GET_TIMEOUT) == a._actor_id.hex()
    me = pyray.get(a.me.remote(), timeout=GET_TIMEOUT)
    assert me == a
    assert pyray.get(me.context.remote(), timeout=GET_TIMEOUT)["actor_id"] == a._actor_id.hex()
    # a task and the driver are not actors
    assert pyray.get(task_actor_id.remote(), timeout=GET_TIMEOUT) is None
    assert rc.get_actor_id() is None
    with pytest.raises(RuntimeError):
        rc.current_actor
