"""Task behaviours Ray's own tests check: arguments checked against the
function's signature at .remote(), async def tasks, cancel, functions too
large to ship, ObjectRef's public methods."""
from __future__ import annotations

import asyncio

import pytest

import pyray

pytestmark = pytest.mark.timeout(90)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20}

T = 30


@pyray.remote
def two(a, b=1):
    return a + b


@pyray.remote
def kwonly(a, *, k):
    return a * k


@pyray.remote
def varargs(*args, **kwargs):
    return len(args), sorted(kwargs)


@pyray.remote
def some_var(a, *rest):
    return a + len(rest)


def test_task_arguments_checked_at_remote(ray_start):
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        two.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        two.remote(1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        two.remote(1, c=2)
    with pytest.raises(TypeError, match="multiple values for argument 'a'"):
        two.remote(1, a=2)
    with pytest.raises(TypeError, match="missing a required argument: 'k'"):
        kwonly.remote(1)
    with pytest.raises(TypeError):
        two.options(num_returns=1).remote()
    with pytest.raises(TypeError):
        some_var.remote()
    assert pyray.get([two.remote(1), two.remote(1, 2), two.remote(a=1, b=3),
                      kwonly.remote(2, k=3), varargs.remote(1, 2, x=3),
                      some_var.remote(1, 2, 3)], timeout=T) == [2, 3, 4, 6, (2, ["x"]), 3]


@pyray.remote
def sleeps(x):
    async def inner():
        await asyncio.sleep(0.01)
        return x
    return asyncio.run(inner())


@pyray.remote
async def coro(x):
    await asyncio.sleep(0.01)
    return x * 2


@pyray.remote
async def coro_raises():
    await asyncio.sleep(0)
    raise KeyError("from a coroutine")


def test_async_def_task(ray_start):
    assert pyray.get([coro.remote(i) for i in range(4)], timeout=T) == [0, 2, 4, 6]
    with pytest.raises(KeyError):
        pyray.get(coro_raises.remote(), timeout=T)
    assert pyray.get(sleeps.remote(3), timeout=T) == 3


# ---------------------------------------------------------------------------
# cancel
# ---------------------------------------------------------------------------
@pyray.remote
def sleep_then_touch(seconds, path=None, started=None):
    import pathlib
    import time
    if started:
        pathlib.Path(started).touch()
    time.sleep(seconds)
    if path:
        pathlib.Path(path).touch()
    return "finished"


def _wait_file(path, timeout=T):
    import os
    import time
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_cancel_running_task_interrupts_blocking_call(ray_start, tmp_path):
    import time
    started = str(tmp_path / "started")
    ref = sleep_then_touch.remote(60, None, started)
    _wait_file(started)
    t0 = time.monotonic()
    pyray.cancel(ref)
    with pytest.raises(pyray.exceptions.TaskCancelledError):
        pyray.get(ref, timeout=T)
    assert time.monotonic() - t0 < 10       # time.sleep(60) was interrupted
    # the worker survives and runs the next task
    assert pyray.get(two.remote(1), timeout=T) == 2


def test_cancel_queued_task_never_runs(ray_start, tmp_path):
    import os
    import time
    started = str(tmp_path / "blocker")
    blocker = sleep_then_touch.options(num_cpus=2).remote(1.5, None, started)
    _wait_file(started)
    ran = str(tmp_path / "ran")
    queued = sleep_then_touch.remote(0, ran)
    pyray.cancel(queued)
    with pytest.raises(pyray.exceptions.TaskCancelledError):
        pyray.get(queued, timeout=T)
    assert pyray.get(blocker, timeout=T) == "finished"
    time.sleep(0.3)
    assert not os.path.exists(ran)
    pyray.cancel(blocker)           # finished: nothing happens
    assert pyray.get(blocker, timeout=T) == "finished"


def test_cancel_force_kills_the_task(ray_start, tmp_path):
    started = str(tmp_path / "started")
    ref = sleep_then_touch.remote(60, None, started)
    _wait_file(started)
    pyray.cancel(ref, force=True)
    with pytest.raises((pyray.exceptions.TaskCancelledError,
                        pyray.exceptions.WorkerCrashedError)):
        pyray.get(ref, timeout=T)


def test_cancel_needs_an_object_ref(ray_start):
    with pytest.raises(TypeError):
        pyray.cancel("not a ref")


@pyray.remote
def parent_of(path, started, seconds):
    child = sleep_then_touch.options(num_cpus=0).remote(seconds, path)
    import pathlib
    pathlib.Path(started).touch()
    return pyray.get(child)


@pytest.mark.parametrize("recursive", [True, False])
def test_cancel_recursive(ray_start, tmp_path, recursive):
    import os
    import time
    path, started = str(tmp_path / "child-done"), str(tmp_path / "started")
    ref = parent_of.options(num_cpus=0).remote(path, started, 1.5)
    _wait_file(started)
    time.sleep(0.3)                 # the child has been submitted and runs
    pyray.cancel(ref, recursive=recursive)
    with pytest.raises(pyray.exceptions.TaskCancelledError):
        pyray.get(ref, timeout=T)
    if recursive:
        time.sleep(2.5)
        assert not os.path.exists(path), "the child ran to the end"
    else:
        _wait_file(path)            # left alone, the child finishes


@pyray.remote(num_cpus=0)
class Sleeper:
    def __init__(self):
        self.finished = []

    def nap(self, key, seconds, started=None):
        import pathlib
        import time
        if started:
            pathlib.Path(started).touch()
        time.sleep(seconds)
        self.finished.append(key)
        return key

    def done(self):
        return list(self.finished)


@pyray.remote(num_cpus=0)
class AsyncSleeper:
    def __init__(self):
        self.cancelled = 0

    async def nap(self, seconds, started=None):
        if started:
            import pathlib
            pathlib.Path(started).touch()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "slept"

    async def count(self):
        return self.cancelled


def test_cancel_actor_tasks(ray_start, tmp_path):
    a = Sleeper.remote()
    started = str(tmp_path / "started")
    running = a.nap.remote("running", 1.0, started)
    queued = a.nap.remote("queued", 0)
    _wait_file(started)
    with pytest.raises(ValueError, match="force=True is not supported for actor tasks"):
        pyray.cancel(running, force=True)
    pyray.cancel(queued)
    pyray.cancel(running)
    for ref in (queued, running):
        with pytest.raises(pyray.exceptions.TaskCancelledError):
            pyray.get(ref, timeout=T)
    # a running call of a sync actor is not interrupted; a queued one never runs
    assert pyray.get(a.done.remote(), timeout=T) == ["running"]


def test_cancel_async_actor_task(ray_start, tmp_path):
    a = AsyncSleeper.remote()
    started = str(tmp_path / "started")
    ref = a.nap.remote(60, started)
    _wait_file(started)
    pyray.cancel(ref)
    with pytest.raises(pyray.exceptions.TaskCancelledError):
        pyray.get(ref, timeout=T)
    assert pyray.get(a.count.remote(), timeout=T) == 1
    assert pyray.get(a.nap.remote(0), timeout=T) == "slept"


def test_cancel_async_actor_call_waiting_for_its_turn(ray_start, tmp_path):
    # max_concurrency=1: the second call waits for the first; cancelled
    # meanwhile, it never starts, and the first completes
    a = AsyncSleeper.options(max_concurrency=1).remote()
    started = str(tmp_path / "started")
    first = a.nap.remote(1.0, started)
    _wait_file(started)
    second = a.nap.remote(0, str(tmp_path / "second"))
    pyray.cancel(second)
    with pytest.raises(pyray.exceptions.TaskCancelledError):
        pyray.get(second, timeout=T)
    assert pyray.get(first, timeout=T) == "slept"
    assert not (tmp_path / "second").exists()
    assert pyray.get(a.count.remote(), timeout=T) == 0


# ---------------------------------------------------------------------------
# functions too large to ship
# ---------------------------------------------------------------------------
def test_function_too_large_is_rejected(ray_start):
    big = b"x" * (101 * 10 ** 6)

    @pyray.remote
    def captures():
        return len(big)

    with pytest.raises(ValueError, match="too large") as info:
        captures.remote()
    assert "MiB" in str(info.value) and "captures" in str(info.value)

    @pyray.remote
    class Captures:
        def size(self):
            return len(big)

    with pytest.raises(ValueError, match="actor 'test_function_too_large_is_rejected"):
        Captures.remote()


def test_large_function_warns(ray_start, caplog):
    medium = b"y" * (11 * 10 ** 6)

    @pyray.remote
    def captures_medium():
        return len(medium)

    import logging
    with caplog.at_level(logging.WARNING, logger="pyray"):
        assert pyray.get(captures_medium.remote(), timeout=T) == len(medium)
    assert any("is very large" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------
# ObjectRef's public methods
# ---------------------------------------------------------------------------
def test_object_ref_methods(ray_start):
    from pyray import ObjectRef
    ref = two.remote(1)
    assert len(ref.binary()) == ObjectRef.size() and ref.hex() == ref.binary().hex()
    assert not ref.is_nil() and ObjectRef.nil().is_nil()
    again = ObjectRef.from_binary(ref.binary())
    assert again == ref and ObjectRef.from_hex(ref.hex()) == ref
    assert pyray.get(again, timeout=T) == 2
    tid = ref.task_id()
    assert tid.hex() == ref.hex()[:len(tid.binary()) * 2] and tid == again.task_id()
    other = two.remote(2)
    assert other.task_id() != tid
    a, b = pyray.get(pyray.put(1)), ObjectRef.from_random()
    assert a == 1 and b != ref
    assert ref.future().result(T) == 2

    async def awaited():
        return await ref, await ref.as_future()
    assert asyncio.run(awaited()) == (2, 2)
