"""pyray.data core benchmarks (pytest-benchmark), for regression runs.

    pytest bench/bench_data_core.py --benchmark-disable-gc

Groups: ``data-first-batch`` (a 200-block dataset: plan to first batch),
``data-iter`` (iter_batches over 400 MiB already in the store, zero-copy, and
numpy's copy of the same bytes as the limit), ``data-pipeline``
(range_tensor -> map_batches -> iter_batches, 400 MiB streamed),
``data-tasks`` (200 tiny blocks through one fused map: per-task overhead).
"""
import numpy as np
import pytest

import pyray
import pyray.data as rd

ROWS, WIDTH = 51200, 1024          # 51,200 rows of 8 KiB = 400 MiB
NBYTES = ROWS * WIDTH * 8


@pytest.fixture(scope="module")
def cluster():
    pyray.init(num_cpus=2, object_store_memory=2 << 30)
    rd.DataContext.get_current().enable_progress_bars = False
    rd.range(100).map_batches(lambda b: b).take_all()        # workers up
    yield
    pyray.shutdown()


@pytest.mark.benchmark(group="data-first-batch")
def test_time_to_first_batch(benchmark, cluster):
    def first():
        it = iter(rd.range_tensor(ROWS, shape=(WIDTH,), override_num_blocks=200)
                  .map_batches(lambda b: b).iter_batches(batch_size=256))
        next(it)
        it.close()
    benchmark(first)


@pytest.mark.benchmark(group="data-iter")
def test_iter_batches_materialized(benchmark, cluster):
    ds = rd.range_tensor(ROWS, shape=(WIDTH,), override_num_blocks=50).materialize()

    def consume():
        return sum(len(b["data"]) for b in ds.iter_batches(batch_size=4096))
    assert benchmark(consume) == ROWS
    benchmark.extra_info["GB/s"] = NBYTES / benchmark.stats["mean"] / 1e9


@pytest.mark.benchmark(group="data-iter")
def test_numpy_copy_same_bytes(benchmark):
    a = np.ones(ROWS * WIDTH)
    benchmark(a.copy)
    benchmark.extra_info["GB/s"] = NBYTES / benchmark.stats["mean"] / 1e9


@pytest.mark.benchmark(group="data-pipeline")
def test_map_batches_streamed(benchmark, cluster):
    def run():
        ds = rd.range_tensor(ROWS, shape=(WIDTH,), override_num_blocks=50).map_batches(
            lambda b: {"data": b["data"] * 2}, batch_size=None)
        return sum(len(b["data"]) for b in ds.iter_batches(batch_size=None))
    assert benchmark.pedantic(run, rounds=3) == ROWS
    benchmark.extra_info["GB/s"] = NBYTES / benchmark.stats["mean"] / 1e9


@pytest.mark.benchmark(group="data-tasks")
def test_small_blocks_fused_map(benchmark, cluster):
    def run():
        return rd.range(20000, override_num_blocks=200).map_batches(lambda b: b).count()
    assert benchmark.pedantic(run, rounds=5) == 20000
