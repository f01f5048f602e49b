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
