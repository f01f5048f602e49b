"""Object store benchmarks.

    pytest bench/bench_store.py --benchmark-disable-gc

Groups: ``small-ops`` (latency of single small operations), ``put-<size>``
(store put next to numpy's own copy of the same bytes, measured in the same
run: the memcpy limit), ``get-by-size`` (zero-copy get: flat across sizes),
``spill-restore`` (throughput through the spill directory).
"""
import itertools
import os

import numpy as np
import pytest

import plasma

SIZES = {"1KiB": 1 << 10, "1MiB": 1 << 20, "64MiB": 64 << 20, "800MiB": 800 << 20}
ROUNDS = {"1KiB": 2000, "1MiB": 500, "64MiB": 20, "800MiB": 6}


@pytest.fixture(scope="module")
def client():
    store = plasma.Store.create(capacity=2 << 30)
    c = plasma.connect(store.name)
    yield c
    c.close()
    store.close()


def new_ids():
    prefix = os.urandom(8)
    return (prefix + i.to_bytes(12, "little") for i in itertools.count())


@pytest.fixture(scope="module")
def arrays():
    cache = {}

    def get(label):
        if label not in cache:
            src = np.random.default_rng(0).integers(0, 255, SIZES[label], dtype=np.uint8)
            cache.clear()  # keep at most one size resident
            cache[label] = src
        return cache[label]
    return get


# -- latency of small operations ------------------------------------------------

@pytest.mark.benchmark(group="small-ops")
def test_small_put_delete(benchmark, client):
    oid, data = next(new_ids()), b"x" * 100

    def op():
        client.put(oid, data)
        client.delete(oid)
    benchmark(op)


@pytest.mark.benchmark(group="small-ops")
def test_small_put_get_delete(benchmark, client):
    oid, data = next(new_ids()), b"x" * 100

    def op():
        client.put(oid, data)
        buf = client.get(oid)
        del buf
        client.delete(oid)
    benchmark(op)


@pytest.mark.benchmark(group="small-ops")
def test_small_get_release(benchmark, client):
    oid = next(new_ids())
    client.put(oid, b"x" * 100)

    def op():
        buf = client.get(oid)
        del buf
    benchmark(op)
    client.delete(oid)


@pytest.mark.benchmark(group="small-ops")
def test_small_create_seal_delete(benchmark, client):
    oid = next(new_ids())

    def op():
        view = client.create(oid, 100)
        view[:4] = b"abcd"
        client.seal(oid)
        client.delete(oid)
    benchmark(op)


# -- put throughput by size, beside numpy's copy of the same bytes --------------

@pytest.mark.parametrize("label", list(SIZES))
def test_put(benchmark, client, arrays, label):
    benchmark.group = f"put-{label}"
    src = arrays(label)
    oid = next(new_ids())
    client.put(oid, src)  # first touch of the arena pages happens here, untimed
    client.delete(oid)

    def setup():
        if client.contains(oid):
            client.delete(oid)  # put/delete/put: the freed block is reused
    benchmark.pedantic(client.put, args=(oid, src), setup=setup, rounds=ROUNDS[label],
                       warmup_rounds=1)
    benchmark.extra_info["GB/s"] = SIZES[label] / benchmark.stats.stats.min / 1e9
    client.delete(oid)


@pytest.mark.parametrize("label", list(SIZES))
def test_numpy_copyto(benchmark, arrays, label):
    benchmark.group = f"put-{label}"
    src = arrays(label)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    benchmark.pedantic(np.copyto, args=(dst, src), rounds=ROUNDS[label], warmup_rounds=1)
    benchmark.extra_info["GB/s"] = SIZES[label] / benchmark.stats.stats.min / 1e9


# -- get by size: zero copy, so flat ------------------------------------------------

@pytest.mark.benchmark(group="get-by-size")
@pytest.mark.parametrize("label", list(SIZES))
def test_get(benchmark, client, label):
    oid = next(new_ids())
    view = client.create(oid, SIZES[label])  # content does not matter here
    del view
    client.seal(oid)

    def op():
        arr = np.frombuffer(client.get(oid), np.uint8)
        del arr
    benchmark(op)
    client.delete(oid)


# -- spill and restore ------------------------------------------------------------

@pytest.mark.benchmark(group="spill-restore")
def test_spill_restore_512MiB_through_256MiB_store(benchmark, tmp_path_factory):
    spill_dir = tmp_path_factory.mktemp("spill")
    store = plasma.Store.create(capacity=256 << 20, spill_dir=spill_dir)
    c = plasma.connect(store.name)
    chunk = np.random.default_rng(1).integers(0, 255, 8 << 20, dtype=np.uint8)
    ids = new_ids()

    def op():
        oids = [next(ids) for _ in range(64)]
        for oid in oids:
            c.put(oid, chunk)
        for oid in oids:
            buf = c.get(oid)
            del buf
        for oid in oids:
            c.delete(oid)
    try:
        benchmark.pedantic(op, rounds=3, warmup_rounds=0)
        stats = store.stats()
        benchmark.extra_info["spilled_bytes"] = stats["spilled_bytes"]
        benchmark.extra_info["restored_bytes"] = stats["restored_bytes"]
    finally:
        c.close()
        store.close()
