"""Large objects through the shared-memory store: zero-copy read-only numpy
views, large task arguments and returns, and objects kept alive by views."""
from __future__ import annotations

import numpy as np
import pytest

import pyray

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 1 << 30}


@pyray.remote
def describe(a):
    return {"shape": a.shape, "dtype": str(a.dtype), "sum": float(a.sum()),
            "first": a.flat[0].item(), "last": a.flat[-1].item(),
            "writeable": bool(a.flags.writeable)}


@pyray.remote
def make_array(n, fill):
    return np.full(n, fill, dtype=np.int64)


@pyray.remote
def field_sums(s):
    return int(s["x"].sum()), float(s["y"].sum())


@pyray.remote
def describe_nested(d):
    return {k: float(v.sum()) for k, v in d.items()}


def _big(mib=16, dtype=np.float64):
    return np.arange(mib * MiB // np.dtype(dtype).itemsize, dtype=dtype)


def test_get_large_array_is_read_only_view(ray_start):
    a = _big()
    ref = pyray.put(a)
    b = pyray.get(ref)
    np.testing.assert_array_equal(a, b)
    assert b.dtype == a.dtype and b.shape == a.shape
    assert b.flags.writeable is False
    with pytest.raises(ValueError):
        b[0] = 1.0


def test_get_large_array_is_zero_copy(ray_start):
    ref = pyray.put(_big())
    b1 = pyray.get(ref)
    b2 = pyray.get(ref)
    # both reads are views on the same shared memory, not copies
    assert np.shares_memory(b1, b2)
    assert b1.ctypes.data % 64 == 0, "store buffers are 64-byte aligned"


def test_large_array_argument(ray_start):
    a = _big(20)
    d = pyray.get(describe.remote(a))
    assert d["shape"] == a.shape and d["dtype"] == "float64"
    assert d["sum"] == float(a.sum())
    assert d["first"] == a[0] and d["last"] == a[-1]
    assert d["writeable"] is False


def test_large_array_argument_by_ref(ray_start):
    a = _big(20, np.int32)
    ref = pyray.put(a)
    d = pyray.get([describe.remote(ref) for _ in range(4)])
    assert all(x["sum"] == float(a.sum()) and x["last"] == a[-1] for x in d)


def test_large_array_return(ray_start):
    ref = make_array.remote(4 * MiB, 7)          # 32 MiB
    b = pyray.get(ref)
    assert b.shape == (4 * MiB,) and b.dtype == np.int64
    assert b[0] == 7 and b[-1] == 7 and int(b.sum()) == 7 * 4 * MiB
    assert b.flags.writeable is False


def test_large_return_passed_on_to_another_task(ray_start):
    ref = make_array.remote(2 * MiB, 3)
    assert pyray.get(describe.remote(ref))["sum"] == 3.0 * 2 * MiB


def test_arrays_nested_in_containers(ray_start):
    d = {"a": _big(2), "b": _big(3, np.float32), "small": np.arange(10.0)}
    got = pyray.get(pyray.put(d))
    for k in d:
        np.testing.assert_array_equal(got[k], d[k])
    assert pyray.get(describe_nested.remote(d)) == {k: float(v.sum()) for k, v in d.items()}


def test_many_arrays_in_one_object(ray_start):
    arrays = [np.full(256 * 1024, i, dtype=np.uint8) for i in range(40)]   # 10 MiB
    got = pyray.get(pyray.put(arrays))
    assert [int(g[0]) for g in got] == list(range(40))
    assert all(g.flags.writeable is False for g in got)


def test_non_contiguous_and_structured_arrays(ray_start):
    a = _big(8).reshape(-1, 4)[:, ::2]             # non-contiguous
    np.testing.assert_array_equal(pyray.get(pyray.put(a)), a)
    f = np.asfortranarray(_big(4).reshape(256, -1))
    np.testing.assert_array_equal(pyray.get(pyray.put(f)), f)
    s = np.zeros(200_000, dtype=[("x", "i4"), ("y", "f8")])
    s["x"] = np.arange(200_000)
    s["y"] = 0.5
    got = pyray.get(pyray.put(s))
    assert got.dtype == s.dtype
    np.testing.assert_array_equal(got, s)
    assert pyray.get(field_sums.remote(s)) == (int(s["x"].sum()), float(s["y"].sum()))


def test_large_bytes_value(ray_start):
    data = bytes(range(256)) * (8 * 4096)           # 8 MiB
    assert pyray.get(pyray.put(data)) == data
    assert pyray.get(pyray.put(bytearray(data))) == bytearray(data)


def test_view_outlives_its_ref(ray_start):
    view = pyray.get(pyray.put(np.full(8 * MiB // 8, 5, dtype=np.int64)))
    # the ref is gone; other large objects come and go
    for i in range(10):
        pyray.get(pyray.put(np.full(8 * MiB // 8, i, dtype=np.int64)))
    assert int(view[0]) == 5 and int(view[-1]) == 5
    assert int(view.sum()) == 5 * (8 * MiB // 8)


def test_large_value_inside_task_put_and_returned_ref(ray_start):
    @pyray.remote
    def producer():
        return pyray.put(np.full(2 * MiB, 9, dtype=np.uint8))

    inner = pyray.get(producer.remote())
    arr = pyray.get(inner)
    assert arr.shape == (2 * MiB,) and int(arr[-1]) == 9
