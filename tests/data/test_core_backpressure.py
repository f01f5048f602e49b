"""The executor's backpressure policy, as a plain class (no processes)."""
import pytest

from pyray.data._internal.backpressure import BackpressurePolicy, OpUsage, Usage

MiB = 1 << 20


def test_nothing_running_may_always_start_one():
    p = BackpressurePolicy(cpu_limit=2, memory_budget=10 * MiB, num_ops=2)
    huge = OpUsage(expected_task_bytes=100 * MiB, output_bytes=100 * MiB)
    assert p.can_launch(huge, Usage(held_bytes=100 * MiB))


def test_cpu_slots_bound_running_tasks():
    p = BackpressurePolicy(cpu_limit=2, memory_budget=100 * MiB, num_ops=1)
    op = OpUsage(running=1, cpu_per_task=1)
    assert p.can_launch(op, Usage(running=1, running_cpu=1))
    assert not p.can_launch(op, Usage(running=2, running_cpu=2))
    half = OpUsage(running=3, cpu_per_task=0.5)
    assert p.can_launch(half, Usage(running=3, running_cpu=1.5))


def test_zero_cpu_tasks_are_capped_too():
    p = BackpressurePolicy(cpu_limit=2, memory_budget=100 * MiB, num_ops=1)
    assert p.can_launch(OpUsage(running=3, cpu_per_task=0), Usage(running=3))
    assert not p.can_launch(OpUsage(running=4, cpu_per_task=0), Usage(running=4))


def test_concurrency_cap():
    p = BackpressurePolicy(cpu_limit=8, memory_budget=100 * MiB, num_ops=1)
    assert not p.can_launch(OpUsage(running=2, max_running=2), Usage(running=2,
                                                                     running_cpu=2))
    assert p.can_launch(OpUsage(running=0, max_running=1), Usage())


def test_memory_budget_counts_held_and_expected_output():
    p = BackpressurePolicy(cpu_limit=8, memory_budget=32 * MiB, num_ops=1)
    op = OpUsage(running=1, expected_task_bytes=4 * MiB)
    assert p.can_launch(op, Usage(running=1, running_cpu=1, held_bytes=20 * MiB,
                                  inflight_bytes=4 * MiB))
    assert not p.can_launch(op, Usage(running=1, running_cpu=1, held_bytes=26 * MiB,
                                      inflight_bytes=4 * MiB))


def test_a_producer_keeps_to_its_share():
    p = BackpressurePolicy(cpu_limit=8, memory_budget=40 * MiB, num_ops=2)   # 20 MiB each
    total = Usage(running=1, running_cpu=1, held_bytes=18 * MiB)
    busy = OpUsage(running=1, output_bytes=18 * MiB, expected_task_bytes=4 * MiB)
    assert not p.can_launch(busy, total)
    # the consumer of that output (nothing of its own queued) may still start
    assert p.can_launch(OpUsage(running=0, expected_task_bytes=4 * MiB), total)


def test_actor_reservations_and_bad_limits():
    p = BackpressurePolicy(cpu_limit=2, memory_budget=MiB, num_ops=1)
    assert p.can_reserve(1, Usage(running_cpu=1))
    assert not p.can_reserve(1, Usage(running_cpu=1.5))
    with pytest.raises(ValueError, match="CPU limit"):
        BackpressurePolicy(cpu_limit=0, memory_budget=MiB, num_ops=1)
    assert "2 CPU slots" in p.describe()
