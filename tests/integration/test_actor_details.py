"""Actor behaviours Ray's own tests check: arguments checked against the
signature in the caller, retries of methods that raise (retry_exceptions,
max_task_retries), concurrency groups, names and get_if_exists, ActorPool."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

import pyray
from pyray.exceptions import RayTaskError

pytestmark = pytest.mark.timeout(90)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20}

T = 30      # seconds any get may wait


class MyError(Exception):
    pass


class OtherError(Exception):
    pass


# ---------------------------------------------------------------------------
# signatures
# ---------------------------------------------------------------------------
@pyray.remote(num_cpus=0)
class Sig:
    def __init__(self, a, b=2):
        self.a = a

    def one(self, x):
        return x

    def kw(self, x, *, y):
        return x + y

    def anything(self, *args, **kwargs):
        return len(args) + len(kwargs)

    @staticmethod
    def static(x):
        return x

    @classmethod
    def klass(cls, x):
        return x


def test_actor_constructor_arguments_checked_at_remote(ray_start):
    with pytest.raises(TypeError, match="missing a required argument: 'a'"):
        Sig.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        Sig.remote(1, 2, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        Sig.remote(1, c=3)
    a = Sig.options(name=None).remote(1, b=5)
    assert pyray.get(a.one.remote(7), timeout=T) == 7


def test_actor_method_arguments_checked_at_remote(ray_start):
    a = Sig.remote(1)
    with pytest.raises(TypeError, match="missing a required argument: 'x'"):
        a.one.remote()
    with pytest.raises(TypeError, match="too many positional arguments"):
        a.one.remote(1, 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        a.one.options(num_returns=1).remote(1, z=2)
    with pytest.raises(TypeError, match="missing a required argument: 'y'"):
        a.kw.remote(1)
    with pytest.raises(TypeError):
        a.static.remote()
    with pytest.raises(TypeError):
        a.klass.remote(1, 2)
    assert pyray.get([a.one.remote(x=3), a.kw.remote(1, y=2), a.anything.remote(1, 2, k=3),
                      a.static.remote(4), a.klass.remote(5)], timeout=T) == [3, 3, 3, 4, 5]


@pyray.remote(num_cpus=0)
class HandleUser:
    def call_bad(self, handle):
        try:
            handle.one.remote(1, 2, 3)
        except TypeError as err:
            return "TypeError: " + str(err)
        return "no error"


def test_passed_handle_checks_arguments_too(ray_start):
    a = Sig.remote(1)
    u = HandleUser.remote()
    assert pyray.get(u.call_bad.remote(a), timeout=T).startswith("TypeError: too many")


# ---------------------------------------------------------------------------
# retries of methods that raise
# ---------------------------------------------------------------------------
@pyray.remote(num_cpus=0, max_task_retries=3)
class Flaky:
    def __init__(self):
        self.calls = {}

    def _count(self, key):
        self.calls[key] = self.calls.get(key, 0) + 1
        return self.calls[key]

    @pyray.method(retry_exceptions=[MyError])
    def fails_until(self, key, ok_at, exc_name="MyError"):
        n = self._count(key)
        if n < ok_at:
            raise {"MyError": MyError, "OtherError": OtherError}[exc_name](n)
        return n

    def plain(self, key, ok_at):
        n = self._count(key)
        if n < ok_at:
            raise MyError(n)
        return n

    @pyray.method(max_task_retries=1, retry_exceptions=True)
    def once_more(self, key, ok_at):
        n = self._count(key)
        if n < ok_at:
            raise OtherError(n)
        return n

    def count(self, key):
        return self.calls.get(key, 0)


def test_actor_method_retry_exceptions_listed(ray_start):
    a = Flaky.remote()
    # fails twice, then succeeds: 3 attempts within max_task_retries=3
    assert pyray.get(a.fails_until.remote("a", 3), timeout=T) == 3
    # a type not in the list is not retried
    with pytest.raises(OtherError):
        pyray.get(a.fails_until.remote("b", 3, "OtherError"), timeout=T)
    assert pyray.get(a.count.remote("b"), timeout=T) == 1
    # more failures than retries: the last error surfaces after 1 + 3 attempts
    with pytest.raises(MyError):
        pyray.get(a.fails_until.remote("c", 10), timeout=T)
    assert pyray.get(a.count.remote("c"), timeout=T) == 4


def test_actor_method_not_retried_without_retry_exceptions(ray_start):
    a = Flaky.remote()
    with pytest.raises(MyError):
        pyray.get(a.plain.remote("p", 2), timeout=T)
    assert pyray.get(a.count.remote("p"), timeout=T) == 1


def test_actor_method_retry_options(ray_start):
    a = Flaky.remote()
    # the method's own max_task_retries=1 wins over the actor's 3
    with pytest.raises(OtherError):
        pyray.get(a.once_more.remote("o", 3), timeout=T)
    assert pyray.get(a.count.remote("o"), timeout=T) == 2
    # .options() on the call
    assert pyray.get(a.plain.options(retry_exceptions=[MyError]).remote("q", 3),
                     timeout=T) == 3
    with pytest.raises(MyError):
        pyray.get(a.plain.options(retry_exceptions=True, max_task_retries=1).remote("r", 5),
                  timeout=T)
    assert pyray.get(a.count.remote("r"), timeout=T) == 2
    with pytest.raises(ValueError):
        a.plain.options(retry_exceptions="yes")


def test_actor_level_retry_exceptions(ray_start):
    a = Flaky.options(max_task_retries=2, retry_exceptions=[MyError]).remote()
    assert pyray.get(a.plain.remote("x", 3), timeout=T) == 3
    with pytest.raises(MyError):
        pyray.get(a.plain.remote("y", 10), timeout=T)
    assert pyray.get(a.count.remote("y"), timeout=T) == 3


# ---------------------------------------------------------------------------
# concurrency groups
# ---------------------------------------------------------------------------
@pyray.remote(num_cpus=0, concurrency_groups={"io": 2, "compute": 1})
class Grouped:
    def __init__(self):
        self.lock = threading.Lock()
        self.running = {}
        self.most = {}
        self.gate = threading.Event()

    def _enter(self, g):
        with self.lock:
            self.running[g] = self.running.get(g, 0) + 1
            self.most[g] = max(self.most.get(g, 0), self.running[g])

    def _exit(self, g):
        with self.lock:
            self.running[g] -= 1

    @pyray.method(concurrency_group="io")
    def io(self, hold):
        self._enter("io")
        try:
            time.sleep(hold)
            return threading.current_thread().name
        finally:
            self._exit("io")

    @pyray.method(concurrency_group="compute")
    def block(self):
        self._enter("compute")
        try:
            return self.gate.wait(T)
        finally:
            self._exit("compute")

    def default(self):
        return threading.current_thread().name

    def open_gate(self):
        self.gate.set()

    def most_at_once(self):
        return dict(self.most)


def test_concurrency_group_size_limits_calls(ray_start):
    a = Grouped.remote()
    pyray.get(a.default.remote(), timeout=T)
    refs = [a.io.remote(0.5) for _ in range(4)]
    threads = pyray.get(refs, timeout=T)
    assert all("io" in t for t in threads), threads
    assert pyray.get(a.most_at_once.remote(), timeout=T)["io"] == 2


def test_concurrency_group_does_not_block_others(ray_start):
    a = Grouped.remote()
    blocked = a.block.remote()      # holds the only "compute" thread
    assert pyray.get(a.io.remote(0), timeout=T)
    assert pyray.get(a.default.remote(), timeout=T)
    # the same method placed in another group by .options() runs too
    assert "io" in pyray.get(a.default.options(concurrency_group="io").remote(), timeout=T)
    ready, _ = pyray.wait([blocked], timeout=0.2)
    assert not ready
    pyray.get(a.open_gate.options(concurrency_group="io").remote(), timeout=T)
    assert pyray.get(blocked, timeout=T) is True


def test_concurrency_group_unknown(ray_start):
    a = Grouped.remote()
    with pytest.raises(ValueError, match="no concurrency group 'nope'"):
        pyray.get(a.default.options(concurrency_group="nope").remote(), timeout=T)

    class Bad:
        @pyray.method(concurrency_group="io")
        def f(self):
            pass
    with pytest.raises(ValueError, match="concurrency group 'io'"):
        pyray.remote(Bad).remote()
    with pytest.raises(ValueError):
        Grouped.options(concurrency_groups={"io": 0})


@pyray.remote(num_cpus=0, concurrency_groups={"io": 2})
class AsyncGrouped:
    def __init__(self):
        self.running = 0
        self.most = 0
        self.gate = asyncio.Event()

    @pyray.method(concurrency_group="io")
    async def io(self):
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.3)
        self.running -= 1

    async def wait_gate(self):
        await asyncio.wait_for(self.gate.wait(), T)
        return True

    @pyray.method(concurrency_group="io")
    async def open_gate(self):
        self.gate.set()

    async def most_at_once(self):
        return self.most


def test_async_actor_concurrency_groups(ray_start):
    a = AsyncGrouped.remote()
    pyray.get([a.io.remote() for _ in range(5)], timeout=T)
    assert pyray.get(a.most_at_once.remote(), timeout=T) == 2
    waiting = a.wait_gate.remote()
    pyray.get(a.open_gate.remote(), timeout=T)
    assert pyray.get(waiting, timeout=T) is True


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------
@pyray.remote(num_cpus=0)
class Named:
    def __init__(self, v):
        self.v = v

    def value(self):
        return self.v


def test_actor_name_validation(ray_start):
    with pytest.raises(ValueError, match="empty"):
        Named.options(name="").remote(1)
    with pytest.raises(TypeError):
        Named.options(name=5).remote(1)
    with pytest.raises(ValueError):
        Named.options(name="x", namespace="").remote(1)
    with pytest.raises(TypeError):
        Named.options(name="x", namespace=3).remote(1)


def test_get_actor_errors(ray_start):
    with pytest.raises(ValueError):
        pyray.get_actor("")
    with pytest.raises(ValueError, match="no-such-actor"):
        pyray.get_actor("no-such-actor")
    with pytest.raises(TypeError):
        pyray.get_actor(None)
    a = Named.options(name="details-ns", namespace="other-ns").remote(5)
    assert pyray.get(a.value.remote(), timeout=T) == 5
    with pytest.raises(ValueError):
        pyray.get_actor("details-ns")
    b = pyray.get_actor("details-ns", namespace="other-ns")
    assert pyray.get(b.value.remote(), timeout=T) == 5
    with pytest.raises(ValueError):
        pyray.get_actor("details-ns", namespace="")


def test_get_if_exists(ray_start):
    a = Named.options(name="details-gie", get_if_exists=True).remote(1)
    b = Named.options(name="details-gie", get_if_exists=True).remote(2)
    assert pyray.get([a.value.remote(), b.value.remote()], timeout=T) == [1, 1]
    with pytest.raises(ValueError):
        Named.options(name="details-gie").remote(3)


# ---------------------------------------------------------------------------
# ActorPool
# ---------------------------------------------------------------------------
@pyray.remote(num_cpus=0)
class Worker:
    def __init__(self):
        self.seen = []

    def double(self, v, delay=0.0):
        self.seen.append(v)
        time.sleep(delay)
        return 2 * v

    @pyray.method(num_returns=2)
    def pair(self, v):
        return v, -v

    def seen_values(self):
        return list(self.seen)

    def die(self):
        import os
        os._exit(1)


def test_actor_pool_map_submits_eagerly(ray_start):
    from pyray.util import ActorPool
    actors = [Worker.remote(), Worker.remote()]
    pool = ActorPool(actors)
    gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3])
    # the first two went out when map() was called, before any iteration
    seen = sorted(pyray.get([a.seen_values.remote() for a in actors], timeout=T),
                  key=len)
    assert sorted(v for s in seen for v in s) == [1, 2]
    assert list(gen) == [2, 4, 6]
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), [5, 6])) == [10, 12]


def test_actor_pool_free_push_pop(ray_start):
    from pyray.util import ActorPool
    a, b = Worker.remote(), Worker.remote()
    pool = ActorPool([a])
    assert pool.has_free() and not pool.has_next()
    pool.submit(lambda w, v: w.double.remote(v), 1)
    assert not pool.has_free()
    pool.submit(lambda w, v: w.double.remote(v), 2)       # waits for an actor
    assert pool.has_next()
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a)
    pool.push(b)                     # the waiting call goes to b at once
    assert sorted([pool.get_next(), pool.get_next()]) == [2, 4]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    popped = pool.pop_idle()
    assert popped in (a, b)
    assert pool.pop_idle() not in (None, popped)
    assert pool.pop_idle() is None and not pool.has_free()


def test_actor_pool_timeouts(ray_start):
    from pyray.util import ActorPool
    pool = ActorPool([Worker.remote()])
    pool.submit(lambda w, v: w.double.remote(v, 2.0), 1)
    pool.submit(lambda w, v: w.double.remote(v), 2)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)
    # ignore_if_timedout: the slow call is dropped, the next one follows
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next(timeout=0.1, ignore_if_timedout=True)
    assert pool.get_next(timeout=T) == 4
    pool.submit(lambda w, v: w.double.remote(v, 2.0), 3)
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.1)
    assert pool.get_next_unordered(timeout=T) == 6


def test_actor_pool_unordered_then_ordered(ray_start):
    from pyray.util import ActorPool
    pool = ActorPool([Worker.remote(), Worker.remote()])
    pool.submit(lambda w, v: w.double.remote(v, 0.5), 1)
    pool.submit(lambda w, v: w.double.remote(v), 2)
    assert pool.get_next_unordered(timeout=T) == 4
    with pytest.raises(ValueError, match="get_next_unordered"):
        pool.get_next()
    assert pool.get_next_unordered(timeout=T) == 2


def test_actor_pool_several_returns(ray_start):
    from pyray.util import ActorPool
    pool = ActorPool([Worker.remote(), Worker.remote()])
    assert list(pool.map(lambda w, v: w.pair.remote(v), [1, 2, 3])) == [
        [1, -1], [2, -2], [3, -3]]
    pool.submit(lambda w, v: w.pair.remote(v), 4)
    assert pool.get_next_unordered(timeout=T) == [4, -4]


def test_actor_pool_dead_actor_error_surfaces(ray_start):
    from pyray.util import ActorPool
    dead = Worker.remote()
    pool = ActorPool([dead])
    pool.submit(lambda w, v: w.die.remote(), None)
    with pytest.raises(pyray.exceptions.RayActorError):
        pool.get_next(timeout=T)
    assert pool.has_free()
