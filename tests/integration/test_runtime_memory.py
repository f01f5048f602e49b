"""The memory monitor (docs/memory.md): a task that pushes the node's
memory use past memory_usage_threshold has its worker killed and fails with
OutOfMemoryError (or is retried, max_retries); the raylet carries on.

The threshold is computed from the memory in use when the test starts (plus
a margin), and the task allocates until the node is past it whatever other
processes on the machine do, so the test never needs the kernel's OOM
killer nor a quiet machine."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import pyray
from pyray.raylet import memory_monitor as mm

pytestmark = pytest.mark.timeout(120)

MiB, GiB = 1 << 20, 1 << 30
MARGIN = 1 * GiB        # above the memory in use now: what the other processes may add
OVERSHOOT = 256 * MiB   # how far past the threshold a hog goes
CAP = 4 * GiB           # the most a hog ever allocates


def threshold_or_skip():
    used, total = mm.node_memory()
    threshold = (used + MARGIN) / total
    if threshold > 0.9 or total - used < MARGIN + CAP:
        pytest.skip(f"too little free memory for the test ({(total - used) / GiB:.1f} GiB)")
    return round(threshold, 4)


@pyray.remote
def hog(threshold, marker=None):
    """Allocates until the node's memory use is OVERSHOOT past the
    threshold, then holds it (the monitor kills it).  With `marker`: only
    when the file does not exist yet (it creates it), so a retry returns."""
    if marker is not None:
        if os.path.exists(marker):
            return "retried"
        open(marker, "w").close()
    return hog_inline(threshold)


@pyray.remote
def small(x):
    return x + 1


def test_a_task_past_the_threshold_fails_with_out_of_memory_error(ray_init, tmp_path):
    threshold = threshold_or_skip()
    ray_init(num_cpus=1, object_store_memory=64 * MiB,
             _system_config={"memory_usage_threshold": threshold,
                             "memory_monitor_refresh_ms": 100})
    start = time.monotonic()
    with pytest.raises(pyray.exceptions.OutOfMemoryError) as info:
        pyray.get(hog.options(max_retries=0).remote(threshold), timeout=60)
    assert time.monotonic() - start < 45
    assert isinstance(info.value, MemoryError)
    text = str(info.value)
    assert "running low on memory" in text and f"{threshold}" in text and "hog" in text
    # the raylet survived: the next tasks run (on a new worker)
    assert pyray.get([small.remote(i) for i in range(10)], timeout=30) == list(range(1, 11))
    # a retriable task is retried (max_retries), and its retry completes
    marker = str(tmp_path / "attempted")
    assert pyray.get(hog.options(max_retries=1).remote(threshold, marker),
                     timeout=60) == "retried"


def test_kills_for_memory_have_their_own_retry_count(ray_init, tmp_path):
    """As in Ray: a kill by the memory monitor is retried on task_oom_retries,
    not on max_retries, after a growing delay; once those are used up the
    task fails with OutOfMemoryError."""
    threshold = threshold_or_skip()
    ray_init(num_cpus=1, object_store_memory=64 * MiB,
             _system_config={"memory_usage_threshold": threshold,
                             "memory_monitor_refresh_ms": 100, "task_oom_retries": 2,
                             "task_oom_retry_delay_base_ms": 100})
    attempts = tmp_path / "attempts"

    @pyray.remote(max_retries=1)
    def always_hogs(threshold, path):
        with open(path, "a") as f:
            f.write("x")
        return hog_inline(threshold)

    with pytest.raises(pyray.exceptions.OutOfMemoryError) as info:
        pyray.get(always_hogs.remote(threshold, str(attempts)), timeout=90)
    assert attempts.read_text() == "xxx"            # 1 + 2 retries, max_retries=1 untouched
    assert "task_oom_retries" in str(info.value)


def hog_inline(threshold):
    """The allocation loop of hog(), in the calling task."""
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        used, total = mm.node_memory()
        if used < threshold * total + OVERSHOOT and len(chunks) * 64 * MiB < CAP:
            chunks.append(np.ones(64 * MiB, np.uint8))    # touched: resident
        else:
            time.sleep(0.02)
    return "survived"


def test_a_threshold_of_one_or_refresh_zero_disables_the_monitor(ray_init):
    threshold_or_skip()
    # the node is already past 0.01, but nothing is killed when disabled
    ray_init(num_cpus=1, object_store_memory=64 * MiB,
             _system_config={"memory_usage_threshold": 0.01, "memory_monitor_refresh_ms": 0})

    @pyray.remote(max_retries=0)
    def nap():
        time.sleep(1.0)
        return os.getpid()

    assert pyray.get(nap.remote(), timeout=30) > 0
