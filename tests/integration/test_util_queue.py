"""pyray.util.queue.Queue: an actor-backed FIFO shared by driver, tasks and
actors."""
from __future__ import annotations

import asyncio
import os
import queue as stdlib_queue
import time

import pytest

import pyray
from pyray.exceptions import RayActorError
from pyray.util.queue import Empty, Full, Queue


@pyray.remote
def produce(q, n):
    for i in range(n):
        q.put((os.getpid(), i), timeout=10)
    return os.getpid()


@pyray.remote
def consume(q, n):
    return os.getpid(), [q.get(timeout=10) for _ in range(n)]


@pyray.remote
class Relay:
    """Moves items from one queue to another, inside an actor."""

    def move(self, src, dst, n):
        for _ in range(n):
            dst.put(src.get(timeout=10) * 10, timeout=10)
        return os.getpid()


def test_exceptions_are_the_stdlib_ones():
    assert issubclass(Empty, stdlib_queue.Empty)
    assert issubclass(Full, stdlib_queue.Full)


def test_fifo_and_sizes(ray_start):
    q = Queue()
    assert q.empty() and q.qsize() == 0 and len(q) == 0 and not q.full()
    for i in range(5):
        q.put(i)
    assert q.size() == 5 and not q.empty()
    assert [q.get(timeout=5) for _ in range(5)] == [0, 1, 2, 3, 4]
    q.shutdown()


def test_items_cross_processes(ray_start):
    q = Queue()
    ref = produce.remote(q, 5)
    got = [q.get(timeout=10) for _ in range(5)]
    pid = pyray.get(ref, timeout=10)
    assert pid != os.getpid()
    assert got == [(pid, i) for i in range(5)]
    # and the other way: the driver puts, a task takes
    for i in range(3):
        q.put(("driver", i))
    cpid, items = pyray.get(consume.remote(q, 3), timeout=10)
    assert cpid != os.getpid()
    assert items == [("driver", 0), ("driver", 1), ("driver", 2)]
    q.shutdown()


def test_usable_inside_an_actor(ray_start):
    src, dst = Queue(), Queue()
    relay = Relay.remote()
    for i in range(3):
        src.put(i)
    pid = pyray.get(relay.move.remote(src, dst, 3), timeout=10)
    assert pid != os.getpid()
    assert [dst.get(timeout=5) for _ in range(3)] == [0, 10, 20]
    pyray.kill(relay)
    src.shutdown()
    dst.shutdown()


def test_bounded_put_times_out_with_full(ray_start):
    q = Queue(maxsize=2)
    q.put(1)
    q.put(2)
    assert q.full()
    t0 = time.monotonic()
    with pytest.raises(Full):
        q.put(3, timeout=0.5)
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 5, elapsed
    with pytest.raises(Full):
        q.put_nowait(3)
    with pytest.raises(Full):
        q.put(3, block=False)
    assert q.qsize() == 2           # the refused items are not in it
    q.shutdown()


def test_get_times_out_with_empty(ray_start):
    q = Queue()
    t0 = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.5)
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 5, elapsed
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(stdlib_queue.Empty):       # caught as the stdlib's too
        q.get(timeout=0)
    q.shutdown()


def test_blocked_get_wakes_on_put(ray_start):
    q = Queue()
    ref = consume.remote(q, 1)
    time.sleep(0.3)                  # the task is (most likely) waiting in get
    q.put("late")
    _, items = pyray.get(ref, timeout=10)
    assert items == ["late"]
    q.shutdown()


def test_blocked_put_wakes_on_get(ray_start):
    q = Queue(maxsize=1)
    q.put("first")
    ref = produce.remote(q, 1)        # blocks: the queue is full
    ready, _ = pyray.wait([ref], timeout=0.3)
    assert not ready
    assert q.get(timeout=5) == "first"
    pid = pyray.get(ref, timeout=10)
    assert q.get(timeout=5) == (pid, 0)
    q.shutdown()


def test_batches(ray_start):
    q = Queue(maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        q.put_nowait_batch([3, 4])            # all or nothing
    assert q.qsize() == 2
    with pytest.raises(Empty):
        q.get_nowait_batch(3)
    assert q.qsize() == 2
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(0) == []
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)
    with pytest.raises(TypeError):
        q.get_nowait_batch("2")
    with pytest.raises(ValueError):
        q.get_nowait_batch(-1)
    q.shutdown()


def test_async_put_and_get(ray_start):
    q = Queue(maxsize=1)

    async def main():
        await q.put_async("a")
        with pytest.raises(Full):
            await q.put_async("b", timeout=0.2)
        with pytest.raises(Full):
            await q.put_async("b", block=False)
        first = await q.get_async(timeout=5)
        with pytest.raises(Empty):
            await q.get_async(timeout=0.2)
        with pytest.raises(Empty):
            await q.get_async(block=False)
        return first

    assert asyncio.run(asyncio.wait_for(main(), 20)) == "a"
    q.shutdown()


def test_bad_input(ray_start):
    q = Queue()
    with pytest.raises(ValueError):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError):
        q.get(timeout=-0.5)
    with pytest.raises(TypeError):
        Queue(maxsize="3")
    with pytest.raises(TypeError):
        Queue(actor_options=[("num_cpus", 1)])
    q.shutdown()


def test_shutdown_stops_the_actor(ray_start):
    q = Queue()
    q.put(1)
    handle = q.actor
    q.shutdown()
    assert q.actor is None
    with pytest.raises(RuntimeError, match="shut down"):
        q.put(2)
    with pytest.raises(RuntimeError, match="shut down"):
        q.get(timeout=1)
    q.shutdown()                      # a second time does nothing
    with pytest.raises(RayActorError):
        pyray.get(handle.qsize.remote(), timeout=10)


def test_forced_shutdown_with_a_blocked_caller(ray_start):
    q = Queue()
    handle = q.actor
    ref = handle.get.remote(None)      # waits forever for an item
    t0 = time.monotonic()
    q.shutdown(force=True)
    assert time.monotonic() - t0 < 5
    with pytest.raises(RayActorError):
        pyray.get(ref, timeout=10)


def test_graceful_shutdown_kills_after_grace_period(ray_start):
    q = Queue()
    ref = q.actor.get.remote(None)     # keeps the actor from finishing
    t0 = time.monotonic()
    q.shutdown(grace_period_s=0.5)
    assert time.monotonic() - t0 < 5
    with pytest.raises(RayActorError):
        pyray.get(ref, timeout=10)


def test_named_queue_actor(ray_start):
    q = Queue(actor_options={"name": "util-queue-test"})
    other = pyray.get_actor("util-queue-test")
    pyray.get(other.put.remote("x", None), timeout=10)
    assert q.get(timeout=5) == "x"
    q.shutdown()
