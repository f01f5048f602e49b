"""Object store memory: a 1 GiB round trip, and objects freed once no
reference remains (a small store never fills up with dropped objects)."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import pyray
from pyray._private.context import ctx
from pyray.exceptions import ObjectStoreFullError

MiB = 1 << 20
GiB = 1 << 30


def _store_stats():
    return ctx.core_worker.plasma.stats()


@pyray.remote
def checksum(a):
    return int(a[::4096].sum()), a.shape, str(a.dtype)


@pyray.remote
def make_array(nbytes, fill):
    return np.full(nbytes, fill, dtype=np.uint8)


@pyray.remote
def nbytes_of(a):
    return a.nbytes


@pytest.mark.timeout(120)
def test_one_gib_round_trip(ray_init):
    ray_init(num_cpus=1, object_store_memory=int(1.5 * GiB))
    a = np.arange(GiB // 8, dtype=np.int64)
    expected = (int(a[::4096].sum()), a.shape, "int64")
    ref = pyray.put(a)
    b = pyray.get(ref)
    assert b.flags.writeable is False
    assert b.shape == a.shape
    assert np.array_equal(a[::1024], b[::1024])
    assert int(b[-1]) == GiB // 8 - 1
    del a
    assert pyray.get(checksum.remote(ref)) == expected
    del b, ref


@pytest.mark.timeout(90)
def test_dropped_puts_are_freed(ray_init, wait_for):
    ray_init(num_cpus=1, object_store_memory=200 * MiB)
    for i in range(50):
        ref = pyray.put(np.full(50 * MiB, i % 256, dtype=np.uint8))
        del ref
    stats = _store_stats()
    assert stats.get("spilled_objects", 0) == 0, \
        f"dropped objects were spilled, not freed: {stats}"
    gc.collect()
    wait_for(lambda: _store_stats()["num_objects"] == 0, timeout=10,
             what="the store to be empty after every ref was dropped")


@pytest.mark.timeout(90)
def test_dropped_task_results_are_freed(ray_init, wait_for):
    ray_init(num_cpus=1, object_store_memory=200 * MiB)
    for i in range(30):
        ref = make_array.remote(50 * MiB, i % 256)
        assert int(pyray.get(ref)[-1]) == i % 256
        del ref
    for i in range(20):
        assert pyray.get(nbytes_of.remote(np.zeros(50 * MiB, dtype=np.uint8))) == 50 * MiB
    stats = _store_stats()
    assert stats.get("spilled_objects", 0) == 0, \
        f"dropped objects were spilled, not freed: {stats}"
    wait_for(lambda: _store_stats()["num_objects"] == 0, timeout=10,
             what="the store to be empty after every ref was dropped")


@pytest.mark.timeout(90)
def test_referenced_objects_are_kept(ray_init):
    ray_init(num_cpus=1, object_store_memory=200 * MiB)
    kept = [pyray.put(np.full(20 * MiB, i, dtype=np.uint8)) for i in range(3)]
    for i in range(20):
        pyray.put(np.zeros(50 * MiB, dtype=np.uint8))      # dropped at once
    assert [int(pyray.get(r)[123]) for r in kept] == [0, 1, 2]


@pytest.mark.timeout(90)
def test_store_full_of_referenced_objects_does_not_lose_them(ray_init):
    """Holding more than the store's capacity: spill or ObjectStoreFullError,
    never a silently lost object."""
    ray_init(num_cpus=1, object_store_memory=100 * MiB)
    held = []
    try:
        for i in range(6):
            held.append(pyray.put(np.full(30 * MiB, i, dtype=np.uint8)))
    except ObjectStoreFullError as err:
        assert str(err)
    for i, r in enumerate(held):
        assert int(pyray.get(r)[-1]) == i
