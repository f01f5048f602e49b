"""How many tasks run at once: every CPU is used, and never more than the
node has.  Each test starts its own cluster (the CPU count matters)."""
from __future__ import annotations


import pytest

import pyray
from tasklib import barrier, interval, max_overlap as _max_overlap

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


@pyray.remote
def factorial(n):
    if n <= 1:
        return 1
    return n * pyray.get(factorial.remote(n - 1))


def test_one_cpu_tasks_use_every_cpu(ray_init, tmp_path):
    ray_init(num_cpus=4, object_store_memory=128 * MiB)
    pids = pyray.get([barrier.remote(str(tmp_path), f"t{i}", 4) for i in range(4)], timeout=30)
    assert len(set(pids)) == 4


def test_fractional_cpu_tasks_fill_the_node(ray_init, tmp_path):
    ray_init(num_cpus=2, object_store_memory=128 * MiB)
    refs = [barrier.options(num_cpus=0.25).remote(str(tmp_path), f"t{i}", 8) for i in range(8)]
    assert len(set(pyray.get(refs, timeout=30))) == 8


def test_never_more_tasks_than_cpus(ray_init):
    ray_init(num_cpus=3, object_store_memory=128 * MiB)
    runs = pyray.get([interval.remote() for _ in range(9)], timeout=30)
    assert _max_overlap(runs) <= 3, runs


def test_blocked_get_with_one_cpu_does_not_deadlock(ray_init):
    ray_init(num_cpus=1, object_store_memory=128 * MiB)
    assert pyray.get(factorial.remote(8), timeout=45) == 40320
