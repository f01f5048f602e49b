"""The executor's backpressure policy: may this operator start another task?

A plain class: it takes the pipeline's current usage and answers yes or no;
the executor (executor.py) carries the answer out.  Two limits:

* CPU slots: the CPUs the running tasks asked for stay within the limit
  (``execution_options.resource_limits.cpu``, else the cluster's CPUs);
* memory: the bytes of blocks the pipeline holds (outputs not yet consumed,
  inputs of running tasks) plus the expected output of running tasks stay
  within the budget (``resource_limits.object_store_memory``, else
  ``object_store_memory_fraction`` of the cluster's object store).  An
  operator also keeps its own unconsumed output within its share of the
  budget, so a fast producer cannot starve the operators after it.

Whatever the usage, a pipeline with nothing running may always start one
task, so it never stalls.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class OpUsage:
    """One operator, as the policy sees it."""
    running: int = 0                 # tasks in flight
    cpu_per_task: float = 1.0
    max_running: Optional[int] = None    # concurrency= cap, if any
    output_bytes: int = 0            # produced, not yet taken by the next operator
    expected_task_bytes: int = 0     # estimated output of one task


@dataclass
class Usage:
    """The whole pipeline."""
    running: int = 0
    running_cpu: float = 0.0
    held_bytes: int = 0              # blocks referenced by the executor
    inflight_bytes: int = 0          # estimated output of running tasks


class BackpressurePolicy:
    def __init__(self, cpu_limit: float, memory_budget: int, num_ops: int):
        if cpu_limit <= 0:
            raise ValueError(f"the CPU limit of a pipeline must be positive, not {cpu_limit}")
        self.cpu_limit = float(cpu_limit)
        self.memory_budget = int(memory_budget)
        self.op_share = max(1, self.memory_budget // max(1, num_ops))
        # tasks asking for no CPU still take a worker: cap them too
        self.max_zero_cpu_tasks = max(2, int(2 * cpu_limit))

    def can_launch(self, op: OpUsage, total: Usage) -> bool:
        if op.max_running is not None and op.running >= op.max_running:
            return False
        if total.running == 0:
            return True
        if op.cpu_per_task > 0:
            if total.running_cpu + op.cpu_per_task > self.cpu_limit + 1e-9:
                return False
        elif op.max_running is None and op.running >= self.max_zero_cpu_tasks:
            return False
        expected = total.held_bytes + total.inflight_bytes + op.expected_task_bytes
        if expected > self.memory_budget:
            return False
        if op.output_bytes + op.expected_task_bytes * (op.running + 1) > self.op_share:
            # this operator's output is piling up: let the consumers catch up,
            # but keep at least one of its tasks going
            return op.running == 0 and op.output_bytes < self.op_share
        return True

    def can_reserve(self, cpu: float, total: Usage) -> bool:
        """May a new actor holding `cpu` CPUs start?"""
        return total.running_cpu + cpu <= self.cpu_limit + 1e-9

    def describe(self) -> str:
        return (f"{self.cpu_limit:g} CPU slots, {self.memory_budget / (1 << 20):.0f} MiB "
                f"of blocks in flight")
