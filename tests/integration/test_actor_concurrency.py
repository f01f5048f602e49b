"""Concurrent actors: max_concurrency=N runs up to N calls at once on
threads; async actors run their calls on one event loop (up to 1000 at once
by default); sync callers get their results and async callers await them."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

import pyray
from pyray.exceptions import RayActorError, RayTaskError

from actorlib import Counter, process_gone, wait_path

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20}

GET_TIMEOUT = 30


@pyray.remote(num_cpus=0)
class Threaded:
    """Each call waits at a barrier of `parties` calls, so a group only
    passes when that many run at the same time; it records the most calls
    that were ever running at once."""

    def __init__(self, parties):
        self.barrier = threading.Barrier(parties, timeout=GET_TIMEOUT)
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0
        self.threads = set()

    def meet(self, i):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            self.threads.add(threading.get_ident())
        try:
            self.barrier.wait()
            time.sleep(0.01)    # a call that ran beyond the limit would overlap here
        finally:
            with self.lock:
                self.active -= 1
        return i

    def stats(self):
        return self.most, len(self.threads)

    def fail(self):
        raise ValueError("threaded failure")

    def pid(self):
        return os.getpid()

    def actor_id(self):
        return pyray.get_runtime_context().get_actor_id()

    def exit(self):
        pyray.actor.exit_actor()


@pyray.remote(num_cpus=0)
class AsyncGroup:
    """Async methods: `gather(n)` returns only once n calls are in it
    together, which on one event loop means they ran concurrently."""

    def __init__(self):
        self.arrived = 0
        self.active = 0
        self.most = 0
        self.event = None
        self.threads = set()

    async def gather(self, n, i):
        if self.event is None:
            self.event = asyncio.Event()
        self.threads.add(threading.get_ident())
        self.arrived += 1
        self.active += 1
        self.most = max(self.most, self.active)
        if self.arrived >= n:
            self.event.set()
        try:
            await asyncio.wait_for(self.event.wait(), GET_TIMEOUT)
        finally:
            self.active -= 1
        return i

    async def pause(self, seconds):
        self.active += 1
        self.most = max(self.most, self.active)
        await asyncio.sleep(seconds)
        self.active -= 1
        return seconds

    def sync_method(self, x):
        # a plain method on an async actor runs on the same loop thread
        self.threads.add(threading.get_ident())
        return x * 2

    async def stats(self):
        return self.most, len(self.threads)

    async def fail(self):
        await asyncio.sleep(0)
        raise KeyError("async failure")

    async def call_other(self, other, n):
        # an async actor awaits another actor's results
        refs = [other.incr.remote() for _ in range(n)]
        return await asyncio.gather(*refs)

    async def actor_id(self):
        return pyray.get_runtime_context().get_actor_id()

    async def hold(self, started, release):
        open(started, "w").close()
        deadline = time.monotonic() + GET_TIMEOUT
        while not os.path.exists(release) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return os.getpid()

    async def exit(self):
        pyray.actor.exit_actor()


# ---------------------------------------------------------------------------
# threaded actors
# ---------------------------------------------------------------------------
def test_max_concurrency_runs_n_calls_at_once_and_no_more(ray_start):
    n = 4
    a = Threaded.options(max_concurrency=n).remote(n)
    # 3 groups of n: each group passes its barrier only if n calls run together
    assert pyray.get([a.meet.remote(i) for i in range(3 * n)], timeout=GET_TIMEOUT) == \
        list(range(3 * n))
    most, threads = pyray.get(a.stats.remote(), timeout=GET_TIMEOUT)
    assert most == n
    assert threads == n


def test_default_sync_actor_runs_one_call_at_a_time(ray_start):
    a = Threaded.remote(1)        # a barrier of 1 never waits
    pyray.get([a.meet.remote(i) for i in range(20)], timeout=GET_TIMEOUT)
    assert pyray.get(a.stats.remote(), timeout=GET_TIMEOUT) == (1, 1)


def test_threaded_actor_errors_context_and_exit(ray_start):
    a = Threaded.options(max_concurrency=3).remote(1)
    with pytest.raises(ValueError, match="threaded failure") as info:
        pyray.get(a.fail.remote(), timeout=GET_TIMEOUT)
    assert isinstance(info.value, RayTaskError)
    assert pyray.get(a.actor_id.remote(), timeout=GET_TIMEOUT) == a._actor_id.hex()
    pid = pyray.get(a.pid.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(RayActorError):
        pyray.get(a.exit.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(RayActorError):
        pyray.get(a.pid.remote(), timeout=GET_TIMEOUT)
    assert pid > 0


# ---------------------------------------------------------------------------
# async actors
# ---------------------------------------------------------------------------
def test_async_actor_runs_calls_concurrently_on_one_loop(ray_start):
    a = AsyncGroup.remote()
    n = 300        # more than fit on 2 CPUs in threads: the default limit is 1000
    refs = [a.gather.remote(n, i) for i in range(n)]
    assert pyray.get(refs, timeout=GET_TIMEOUT) == list(range(n))
    assert pyray.get(a.sync_method.remote(21), timeout=GET_TIMEOUT) == 42
    most, threads = pyray.get(a.stats.remote(), timeout=GET_TIMEOUT)
    assert most == n
    assert threads == 1


def test_async_actor_max_concurrency_limits_calls(ray_start):
    a = AsyncGroup.options(max_concurrency=2).remote()
    pyray.get([a.pause.remote(0.02) for _ in range(10)], timeout=GET_TIMEOUT)
    most, _ = pyray.get(a.stats.remote(), timeout=GET_TIMEOUT)
    assert most == 2


def test_async_actor_errors_context_and_exit(ray_start):
    a = AsyncGroup.remote()
    with pytest.raises(KeyError, match="async failure") as info:
        pyray.get(a.fail.remote(), timeout=GET_TIMEOUT)
    assert isinstance(info.value, RayTaskError)
    # the actor lives on
    assert pyray.get(a.actor_id.remote(), timeout=GET_TIMEOUT) == a._actor_id.hex()
    with pytest.raises(RayActorError):
        pyray.get(a.exit.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(RayActorError):
        pyray.get(a.actor_id.remote(), timeout=GET_TIMEOUT)


def test_async_caller_awaits_actor_results(ray_start):
    a = AsyncGroup.remote()
    c = Counter.remote()

    async def main():
        one = await c.incr.remote()
        many = await asyncio.wait_for(
            asyncio.gather(*[a.gather.remote(50, i) for i in range(50)]), GET_TIMEOUT)
        fut = c.incr.remote().future()          # a concurrent.futures.Future
        with pytest.raises(KeyError):
            await a.fail.remote()
        return one, many, await asyncio.wrap_future(fut)

    one, many, two = asyncio.run(main())
    assert one == 1 and two == 2
    assert many == list(range(50))


def test_async_actor_awaits_another_actor(ray_start):
    a = AsyncGroup.remote()
    c = Counter.remote(100)
    assert pyray.get(a.call_other.remote(c, 10), timeout=GET_TIMEOUT) == list(range(101, 111))


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_exit_actor_lets_running_calls_finish(ray_start, tmp_path, wait_for, kind):
    if kind == "threaded":
        a = Counter.options(max_concurrency=2).remote()
    else:
        a = AsyncGroup.remote()
    started, release = tmp_path / "started", tmp_path / "release"
    held = a.hold.remote(str(started), str(release))
    wait_path(started, timeout=GET_TIMEOUT)
    with pytest.raises(RayActorError):
        pyray.get(a.exit.remote(), timeout=GET_TIMEOUT)
    # calls made after the exit are refused, while the running one goes on
    with pytest.raises(RayActorError):
        pyray.get(a.actor_id.remote() if kind == "async" else a.get.remote(),
                  timeout=GET_TIMEOUT)
    assert not held.future().done()
    release.touch()
    result = pyray.get(held, timeout=GET_TIMEOUT)
    pid = result[0] if kind == "threaded" else result
    wait_for(lambda: process_gone(pid), what="the exited actor's process to exit")


@pytest.mark.parametrize("kind", ["threaded", "async"])
def test_out_of_scope_concurrent_actor_finishes_its_calls_first(ray_start, wait_for, kind):
    if kind == "threaded":
        a = Threaded.options(max_concurrency=4).remote(1)
        pid = pyray.get(a.pid.remote(), timeout=GET_TIMEOUT)
        refs, expected = [a.meet.remote(i) for i in range(40)], list(range(40))
    else:
        a = AsyncGroup.remote()
        pid = pyray.get(a.hold.remote(os.devnull, "/"), timeout=GET_TIMEOUT)
        delays = [0.01 * (i % 5) for i in range(40)]
        refs, expected = [a.pause.remote(d) for d in delays], delays
    del a       # the terminate message goes behind the 40 calls
    assert pyray.get(refs, timeout=GET_TIMEOUT) == expected
    wait_for(lambda: process_gone(pid), what="the out-of-scope actor's process to exit")


@pyray.remote(num_cpus=0)
class ThreadName:
    def name(self, hold=0.0):
        time.sleep(hold)
        return threading.current_thread().name


def test_threaded_actor_starts_threads_only_as_calls_overlap(ray_start):
    a = ThreadName.options(max_concurrency=8).remote()
    # one call at a time: not a thread per call (two at most: a reply can
    # reach the caller just before its thread counts itself free)
    names = {pyray.get(a.name.remote(), timeout=GET_TIMEOUT) for _ in range(20)}
    assert len(names) <= 2, names
    # four at once: four threads, never more than max_concurrency
    names = set(pyray.get([a.name.remote(0.3) for _ in range(4)], timeout=GET_TIMEOUT))
    assert len(names) == 4, names
    names = set(pyray.get([a.name.remote(0.05) for _ in range(40)], timeout=GET_TIMEOUT))
    assert 1 < len(names) <= 8, names
