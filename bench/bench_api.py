"""Runtime benchmarks: the metrics of bench/vs_ray.py as
pytest-benchmark cases, for regression runs.

    pytest bench/bench_api.py --benchmark-disable-gc

Groups: ``objects`` (put/get latency), ``objects-large`` (800 MiB put beside
numpy's copy of the same bytes, zero-copy get), ``tasks``, ``actors``,
``wait``, ``generators``, ``placement-groups``, ``lifecycle`` (init + first task, shutdown).
"""
import subprocess
import sys

import numpy as np
import pytest

import pyray as ray


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, object_store_memory=3 << 30)
    yield
    ray.shutdown()


@ray.remote
def small_value():
    return b"ok"


@ray.remote
def takes_array(a):
    return a.nbytes


@ray.remote
def make_refs(n):
    return [ray.put(1) for _ in range(n)]


@ray.remote
def count(n):
    for i in range(n):
        yield i


@ray.remote(num_cpus=0)
class Actor:
    def small_value(self):
        return b"ok"


@ray.remote(num_cpus=0)
class AsyncActor:
    async def small_value(self):
        return b"ok"


@ray.remote(num_cpus=0)
class Client:
    """Calls its own server actor: n of these make the n:n pattern."""
    def __init__(self, server):
        self.server = server

    def call(self, n):
        ray.get([self.server.small_value.remote() for _ in range(n)])


@pytest.mark.benchmark(group="objects")
def test_put_small(benchmark, cluster):
    benchmark(ray.put, 0)


@pytest.mark.benchmark(group="objects")
def test_get_small(benchmark, cluster):
    ref = ray.put(0)
    benchmark(ray.get, ref)


BIG = 100 * 1024 * 1024  # 800 MiB of int64, as Ray's own benchmark


@pytest.mark.benchmark(group="objects-large")
def test_put_800mib(benchmark, cluster):
    big = np.ones(BIG, dtype=np.int64)
    ray.put(big)          # first touch of the store's pages happens once
    benchmark.pedantic(ray.put, (big,), rounds=6, iterations=1)


@pytest.mark.benchmark(group="objects-large")
def test_numpy_copy_800mib(benchmark):
    """The limit put_800mib is measured against, in the same run."""
    big = np.ones(BIG, dtype=np.int64)
    dst = np.empty_like(big)
    np.copyto(dst, big)
    benchmark.pedantic(np.copyto, (dst, big), rounds=6, iterations=1)


@pytest.mark.benchmark(group="objects-large")
def test_get_800mib(benchmark, cluster):
    ref = ray.put(np.ones(BIG, dtype=np.int64))
    benchmark(ray.get, ref)


@pytest.mark.benchmark(group="tasks")
def test_task_sync(benchmark, cluster):
    benchmark(lambda: ray.get(small_value.remote()))


@pytest.mark.benchmark(group="tasks")
def test_tasks_async_1000(benchmark, cluster):
    benchmark(lambda: ray.get([small_value.remote() for _ in range(1000)]))


@pytest.mark.benchmark(group="tasks")
def test_runtime_env_task_start(benchmark, cluster):
    # a round trip of a task in a cached runtime env (its worker is warm)
    env = {"env_vars": {"A": "1"}}
    ray.get(small_value.options(runtime_env=env).remote())
    benchmark(lambda: ray.get(small_value.options(runtime_env=env).remote()))


@pytest.mark.benchmark(group="tasks")
def test_tasks_arg_1mb_100(benchmark, cluster):
    mb = ray.put(np.ones(1024 * 1024 // 8))
    benchmark(lambda: ray.get([takes_array.remote(mb) for _ in range(100)]))


@pytest.mark.benchmark(group="tasks")
def test_get_10k_refs(benchmark, cluster):
    holder = make_refs.remote(10000)
    ray.get(holder)
    benchmark(ray.get, holder)


@pytest.mark.benchmark(group="generators")
def test_generator_items_1000(benchmark, cluster):
    """vs_ray.py's generator_items: 1000 items yielded by a task, each got
    by the driver as it comes."""
    def consume():
        for ref in count.remote(1000):
            ray.get(ref)
    benchmark(consume)


@pytest.mark.benchmark(group="generators")
def test_generator_first_item(benchmark, cluster):
    """vs_ray.py's generator_first_item_us: submit, then the first item's value."""
    def first_item():
        gen = count.remote(1)
        ray.get(next(gen))
        for ref in gen:
            ray.get(ref)
    benchmark(first_item)


@pytest.mark.benchmark(group="wait")
def test_wait_1k(benchmark, cluster):
    def wait_1k():
        pending = [small_value.remote() for _ in range(1000)]
        while pending:
            _, pending = ray.wait(pending)
    benchmark(wait_1k)


@pytest.mark.benchmark(group="actors")
def test_actor_sync(benchmark, cluster):
    a = Actor.remote()
    benchmark(lambda: ray.get(a.small_value.remote()))


@pytest.mark.benchmark(group="actors")
def test_actor_async_1000(benchmark, cluster):
    a = Actor.remote()
    benchmark(lambda: ray.get([a.small_value.remote() for _ in range(1000)]))


@pytest.mark.benchmark(group="actors")
def test_actor_concurrent_1000(benchmark, cluster):
    a = Actor.options(max_concurrency=16).remote()
    benchmark(lambda: ray.get([a.small_value.remote() for _ in range(1000)]))


@pytest.mark.benchmark(group="actors")
def test_async_actor_1000(benchmark, cluster):
    a = AsyncActor.remote()
    benchmark(lambda: ray.get([a.small_value.remote() for _ in range(1000)]))


@pytest.mark.benchmark(group="actors")
def test_actor_1_to_n_async(benchmark, cluster):
    actors = [Actor.remote() for _ in range(2)]
    benchmark(lambda: ray.get([a.small_value.remote() for a in actors for _ in range(500)]))


@pytest.mark.benchmark(group="actors")
def test_actor_n_to_n_async(benchmark, cluster):
    clients = [Client.remote(Actor.remote()) for _ in range(2)]
    benchmark(lambda: ray.get([c.call.remote(500) for c in clients]))


@pytest.mark.benchmark(group="placement-groups")
def test_pg_create_remove_100(benchmark, cluster):
    """vs_ray.py's pg_create_remove: 100 groups created, waited for, removed."""
    from pyray.util.placement_group import placement_group, remove_placement_group

    def create_remove():
        groups = [placement_group([{"CPU": 0.001}]) for _ in range(100)]
        for g in groups:
            assert g.wait(timeout_seconds=30)
        for g in groups:
            remove_placement_group(g)
    benchmark(create_remove)


_LIFECYCLE = """
import time, pyray
t = time.perf_counter()
pyray.init(num_cpus=2)
@pyray.remote
def f():
    return 1
pyray.get(f.remote())
t1 = time.perf_counter()
pyray.shutdown()
print(t1 - t, time.perf_counter() - t1)
"""


@pytest.mark.benchmark(group="lifecycle")
def test_init_first_task_shutdown(benchmark):
    """A whole driver: interpreter start, init, one task, shutdown."""
    benchmark.pedantic(lambda: subprocess.run([sys.executable, "-c", _LIFECYCLE], check=True,
                                              capture_output=True), rounds=5, iterations=1)
