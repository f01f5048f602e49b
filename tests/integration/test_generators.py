"""Generator tasks and actor methods (pyray/_private/generators.py):
ObjectRefGenerator (streaming), num_returns="dynamic", errors, cancel,
backpressure, retries and freeing, against real worker processes."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import pytest

import pyray
from pyray._private.context import ctx
from pyray._private.generators import item_id
from pyray.exceptions import GetTimeoutError, TaskCancelledError

pytestmark = pytest.mark.timeout(90)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 1 << 30}
WAIT_S = 30


def wait_for_file(path, timeout):
    """In a task: returns once `path` exists (the test's signal)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


@pyray.remote
def count(n):
    for i in range(n):
        yield i


@pyray.remote
async def acount(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i * 10


@pyray.remote
def never_yields():
    return
    yield


@pyray.remote
def first_then_wait(path):
    yield "first"
    wait_for_file(path, timeout=WAIT_S)
    yield "second"


@pyray.remote
def fails_at(n):
    for i in range(n):
        yield i
    raise ValueError(f"failed after {n}")


@pyray.remote
def big_items(n, size):
    for i in range(n):
        yield np.full(size, i, dtype=np.uint8)


@pyray.remote
def records_progress(path, n):
    for i in range(n):
        with open(path, "w") as f:
            f.write(str(i))
        yield i


@pyray.remote(max_retries=1)
def dies_once(marker, never, n):
    first = not os.path.exists(marker)
    if first:
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
    for i in range(n):
        if first and i == 3:
            wait_for_file(never, timeout=WAIT_S)      # killed here
        yield i


@pyray.remote
def gated(start, end):
    wait_for_file(start, timeout=WAIT_S)
    yield "item"
    wait_for_file(end, timeout=WAIT_S)


@pyray.remote(num_returns="dynamic")
def dynamic(n):
    for i in range(n):
        yield i * i


@pyray.remote(num_returns="dynamic")
def dynamic_fails():
    yield 1
    raise KeyError("dynamic")


@pyray.remote(num_returns=2)
def two_returns():
    yield "a"
    yield "b"


@pyray.remote
class SyncActor:
    def gen(self, n):
        for i in range(n):
            yield i + 100


@pyray.remote(max_concurrency=4)
class ThreadedActor:
    def gen(self, n):
        for i in range(n):
            yield i + 200


@pyray.remote
class AsyncActor:
    async def gen(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i + 300

    async def fails(self):
        yield "ok"
        raise RuntimeError("async actor")


def _values(gen):
    return [pyray.get(ref, timeout=WAIT_S) for ref in gen]


def _cw():
    return ctx.core_worker


# ------------------------------------------------------------------ basics
def test_generator_task_streams_its_items_in_order(ray_start):
    gen = count.remote(5)
    assert isinstance(gen, pyray.ObjectRefGenerator)
    assert _values(gen) == [0, 1, 2, 3, 4]
    with pytest.raises(StopIteration):
        next(gen)
    assert pyray.get(gen.completed(), timeout=WAIT_S) is None
    assert gen.is_finished()


def test_async_generator_task(ray_start):
    assert _values(acount.remote(4)) == [0, 10, 20, 30]


def test_consumer_side_async_iteration(ray_start):
    async def consume():
        gen = count.remote(3)
        first = await gen.__anext__()
        rest = [await ref async for ref in gen]
        return [await first] + rest
    assert asyncio.run(asyncio.wait_for(consume(), WAIT_S)) == [0, 1, 2]


def test_a_generator_that_never_yields_ends_at_once(ray_start):
    gen = never_yields.remote()
    with pytest.raises(StopIteration):
        gen._next_sync(WAIT_S)
    assert list(never_yields.remote()) == []


def test_explicit_num_returns_takes_the_yields_as_returns(ray_start):
    a, b = two_returns.remote()
    assert pyray.get([a, b], timeout=WAIT_S) == ["a", "b"]


def test_large_items_travel_through_the_store(ray_start):
    arrays = _values(big_items.remote(3, 300_000))
    assert [int(a[0]) for a in arrays] == [0, 1, 2]
    assert all(a.nbytes == 300_000 for a in arrays)


def test_public_names():
    from pyray._private import generators
    assert pyray.ObjectRefGenerator is generators.ObjectRefGenerator
    assert pyray.DynamicObjectRefGenerator is generators.DynamicObjectRefGenerator


@pytest.mark.parametrize("cls, base", [(SyncActor, 100), (ThreadedActor, 200),
                                       (AsyncActor, 300)])
def test_actor_generator_methods(ray_start, cls, base):
    actor = cls.remote()
    gen = actor.gen.remote(4)
    assert isinstance(gen, pyray.ObjectRefGenerator)
    assert _values(gen) == [base, base + 1, base + 2, base + 3]
    # the actor still answers plain iteration afterwards
    assert _values(actor.gen.remote(2)) == [base, base + 1]


def test_async_actor_generator_error_mid_stream(ray_start):
    gen = AsyncActor.remote().fails.remote()
    assert pyray.get(next(gen), timeout=WAIT_S) == "ok"
    with pytest.raises(RuntimeError, match="async actor"):
        pyray.get(next(gen), timeout=WAIT_S)
    with pytest.raises(StopIteration):
        next(gen)


# ------------------------------------------------------------ as they come
def test_first_item_is_visible_while_the_generator_still_runs(ray_start, release):
    gen = first_then_wait.remote(str(release))
    first = gen._next_sync(WAIT_S)
    assert pyray.get(first, timeout=WAIT_S) == "first"
    # the generator is blocked on the release file: the task has not finished
    ready, _ = pyray.wait([gen.completed()], timeout=0)
    assert ready == []
    release.touch()
    assert pyray.get(gen._next_sync(WAIT_S), timeout=WAIT_S) == "second"
    with pytest.raises(StopIteration):
        gen._next_sync(WAIT_S)


def test_exception_mid_stream_arrives_at_its_item(ray_start):
    gen = fails_at.remote(2)
    refs = [gen._next_sync(WAIT_S) for _ in range(3)]
    with pytest.raises(StopIteration):
        gen._next_sync(WAIT_S)
    assert pyray.get(refs[:2], timeout=WAIT_S) == [0, 1]
    with pytest.raises(pyray.exceptions.RayTaskError) as info:
        pyray.get(refs[2], timeout=WAIT_S)
    assert isinstance(info.value, ValueError)
    assert "failed after 2" in str(info.value)
    # items before the error stay readable
    assert pyray.get(refs[0], timeout=WAIT_S) == 0


def test_cancel_a_running_generator(ray_start, release):
    gen = first_then_wait.remote(str(release))
    assert pyray.get(gen._next_sync(WAIT_S), timeout=WAIT_S) == "first"
    pyray.cancel(gen)
    with pytest.raises(TaskCancelledError):
        pyray.get(gen._next_sync(WAIT_S), timeout=WAIT_S)
    with pytest.raises(StopIteration):
        gen._next_sync(WAIT_S)


def test_wait_treats_a_generator_as_ready_when_its_next_item_is(ray_start, tmp_path):
    start, end = tmp_path / "start", tmp_path / "end"
    gen = gated.remote(str(start), str(end))
    plain = pyray.put(1)
    ready, pending = pyray.wait([gen], timeout=0.2)
    assert ready == [] and pending == [gen]
    ready, pending = pyray.wait([gen, plain], num_returns=1, timeout=WAIT_S)
    assert ready == [plain] and pending == [gen]
    start.touch()
    ready, _ = pyray.wait([gen], timeout=WAIT_S)
    assert ready == [gen]
    assert pyray.get(next(gen), timeout=WAIT_S) == "item"
    # the item was taken and the generator has not ended yet
    ready, _ = pyray.wait([gen], timeout=0.2)
    assert ready == []
    end.touch()
    ready, _ = pyray.wait([gen], timeout=WAIT_S)
    assert ready == [gen]
    with pytest.raises(StopIteration):
        next(gen)


# ----------------------------------------------------------- backpressure
def test_backpressure_pauses_the_producer_until_items_are_consumed(ray_start, tmp_path,
                                                                   wait_for):
    progress = tmp_path / "progress"

    def reached():
        try:
            return progress.read_text()
        except OSError:
            return None

    gen = records_progress.options(_generator_backpressure_num_objects=2).remote(
        str(progress), 8)
    # two items unconsumed: it stops before starting the third
    wait_for(lambda: reached() == "1", timeout=WAIT_S, what="the first two items")
    with pytest.raises(GetTimeoutError):
        pyray.get(gen.completed(), timeout=0.5)
    assert reached() == "1"
    assert pyray.get(gen._next_sync(WAIT_S), timeout=WAIT_S) == 0
    wait_for(lambda: reached() == "2", timeout=WAIT_S, what="one more item once one is read")
    assert [pyray.get(r, timeout=WAIT_S) for r in gen] == list(range(1, 8))


# --------------------------------------------------------------- freeing
def test_dropping_the_generator_frees_the_items_not_read(ray_start, wait_for):
    cw = _cw()
    gen = big_items.remote(5, 200_000)
    pyray.get(gen.completed(), timeout=WAIT_S)      # every item has arrived
    task_id = gen.task_id()
    oids = [item_id(task_id, i) for i in range(5)]
    assert all(cw.plasma.contains(o) for o in oids)
    kept = next(gen)
    del gen
    wait_for(lambda: not any(cw.plasma.contains(o) for o in oids[1:]), timeout=WAIT_S,
             what="the unread items freed from the store")
    wait_for(lambda: not any(o in cw.owned for o in oids[1:]), timeout=WAIT_S,
             what="the unread items no longer owned")
    wait_for(lambda: task_id not in cw.streams, timeout=WAIT_S, what="the stream forgotten")
    assert int(pyray.get(kept, timeout=WAIT_S)[0]) == 0    # what was read stays readable
    del kept
    wait_for(lambda: not cw.plasma.contains(oids[0]), timeout=WAIT_S,
             what="the read item freed once its ref is dropped")


def test_dropping_a_paused_generator_frees_what_comes_later(ray_start, tmp_path, wait_for):
    cw = _cw()
    progress = tmp_path / "progress"
    gen = records_progress.options(_generator_backpressure_num_objects=1).remote(
        str(progress), 6)
    done = gen.completed()
    task_id = gen.task_id()
    wait_for(lambda: progress.exists(), timeout=WAIT_S, what="the first item")
    del gen
    # unpaused, it runs to the end; nothing it yields stays owned
    assert pyray.get(done, timeout=WAIT_S) is None
    wait_for(lambda: not any(item_id(task_id, i) in cw.owned for i in range(6)),
             timeout=WAIT_S, what="no item owned")
    assert task_id not in cw.streams


# ---------------------------------------------------------------- retries
def test_a_retried_generator_hands_out_no_duplicates(ray_start, tmp_path, release):
    marker = tmp_path / "marker"
    gen = dies_once.remote(str(marker), str(release), 6)
    got = [pyray.get(gen._next_sync(WAIT_S), timeout=WAIT_S) for _ in range(3)]
    assert got == [0, 1, 2]
    os.kill(int(marker.read_text()), signal.SIGKILL)
    got += [pyray.get(r, timeout=WAIT_S) for r in gen]
    assert got == [0, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------- dynamic
def test_dynamic_num_returns_gives_a_ref_to_the_list_of_items(ray_start):
    ref = dynamic.remote(4)
    assert isinstance(ref, pyray.ObjectRef)
    refs = pyray.get(ref, timeout=WAIT_S)
    assert isinstance(refs, pyray.DynamicObjectRefGenerator)
    assert len(refs) == 4
    assert [pyray.get(r, timeout=WAIT_S) for r in refs] == [0, 1, 4, 9]


def test_dynamic_generator_error_fails_its_ref(ray_start):
    with pytest.raises(KeyError):
        pyray.get(dynamic_fails.remote(), timeout=WAIT_S)
