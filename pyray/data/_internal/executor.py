"""The streaming executor: runs a physical plan and yields its output bundles.

It is pulled: each ``next()`` on ``run()`` collects finished work, hands
outputs to the next operator, starts the tasks the backpressure policy
allows (the operators nearest the output first, so memory is freed before
more is produced), and waits (with a timeout, on the running tasks'
generators) only when no output is ready.  The consumer holding an output
bundle decides when its blocks are freed: nothing else keeps a reference.

Stopping the iteration early (a limit reached, a consumer that breaks out)
cancels the running tasks and kills the actor pools.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Iterator, List

import pyray
from pyray.data._internal.backpressure import BackpressurePolicy, Usage
from pyray.data._internal.operators import LimitOp, PhysicalOp
from pyray.data._internal.progress import ProgressReporter
from pyray.data._internal.ref_bundle import RefBundle

WAIT_S = 1.0
# a pipeline whose tasks have produced nothing for this long says so, once
STALL_WARN_S = 60.0
log = logging.getLogger("pyray.data")


def cluster_limits(ctx):
    """(CPU slots, bytes of blocks in flight) for a pipeline under ctx."""
    res = pyray.cluster_resources()
    lim = ctx.execution_options.resource_limits
    excl = ctx.execution_options.exclude_resources
    cpu = lim.cpu if lim.cpu is not None else res.get("CPU", 1.0)
    cpu = max(cpu - (excl.cpu or 0), 0.0) or 1.0
    if lim.object_store_memory is not None:
        mem = lim.object_store_memory
    else:
        store = res.get("object_store_memory", 2 << 30)
        mem = int(store * ctx.object_store_memory_fraction)
    mem = max(int(mem - (excl.object_store_memory or 0)), 1 << 20)
    return cpu, mem, res


def _check_resources(op, res):
    args = getattr(op, "remote_args", None) or {}
    for key, name in (("num_gpus", "GPU"), ("num_cpus", "CPU")):
        want = args.get(key) or 0
        if want and want > res.get(name, 0):
            raise ValueError(f"{op.name} asks for {key}={want} per worker but the cluster has "
                             f"{res.get(name, 0):g} {name}; lower it or add nodes")
    for name, want in (args.get("resources") or {}).items():
        if want > res.get(name, 0):
            raise ValueError(f"{op.name} asks for resources={{{name!r}: {want}}} but the "
                             f"cluster has {res.get(name, 0):g}")


class StreamingExecutor:
    def __init__(self, ops: List[PhysicalOp], ctx, stats, title: str = "Dataset"):
        self.ops = ops                      # sources first, the output operator last
        self.sink = ops[-1]
        self.ctx = ctx
        self.stats = stats
        self.title = title
        self.policy = None
        self._reported = set()
        self.out: collections.deque = collections.deque()

    # ------------------------------------------------------- policy glue
    def usage(self) -> Usage:
        u = Usage()
        for op in self.ops:
            n = len(getattr(op, "running", ()) or ())
            u.running += n
            reserved = getattr(op, "reserved_cpu", None)
            u.running_cpu += reserved if reserved is not None else n * getattr(op, "cpu", 0)
            u.held_bytes += op.out_bytes + op.queued_input_bytes + op.running_input_bytes()
            u.inflight_bytes += op.inflight_bytes()
        u.held_bytes += sum(b.size_bytes for b in self.out if b.owns_blocks)
        return u

    def may_launch(self, op) -> bool:
        mine = op.usage()
        mine.output_bytes = op.out_bytes
        if op.consumer is not None:
            mine.output_bytes += op.consumer[0].queued_input_bytes
        total = self.usage()
        if total.held_bytes > self.stats.peak_held_bytes:
            self.stats.peak_held_bytes = total.held_bytes
        return self.policy.can_launch(mine, total)

    def may_reserve(self, cpu: float) -> bool:
        return self.policy.can_reserve(cpu, self.usage())

    def _stall_message(self, idle: float) -> str:
        busy = [f"{op.name} ({len(op.running)} running, {len(op.queue)} queued)"
                for op in self.ops if getattr(op, "running", None) is not None]
        held = sum(getattr(op, "reserved_cpu", 0) for op in self.ops)
        return (f"pyray.data: no task of this pipeline has produced output for {idle:.0f}s: "
                f"{', '.join(busy)}. Actor pools hold {held:g} of {self.policy.cpu_limit:g} "
                "CPUs; if the tasks wait for CPUs the pools hold, lower the pools' "
                "num_cpus or concurrency, or add CPUs.")

    # -------------------------------------------------------------- loop
    def _route(self) -> bool:
        moved = False
        for op in self.ops:
            while op.has_output():
                b = op.take_output()
                moved = True
                if op.consumer is None:
                    self.out.append(b)
                else:
                    nxt, idx = op.consumer
                    nxt.add_input(b, idx)
            if op not in self._reported and op.done() and not op.has_output():
                self._reported.add(op)
                op.stats.finished()
                if op.consumer is not None:
                    op.consumer[0].input_done(op.consumer[1])
                moved = True
            if isinstance(op, LimitOp) and op.reached():
                self._abort_upstream(op)
        return moved

    def _abort_upstream(self, op):
        for up in op.inputs:
            if up not in self._reported:
                self._reported.add(up)
                up.abort()
                up.stats.finished()
                if up.consumer is not None:
                    up.consumer[0].input_done(up.consumer[1])
            self._abort_upstream(up)

    def _waitables(self) -> list:
        return [w for op in self.ops for w in op.waitables()]

    def _step(self) -> bool:
        progressed = self._route()
        ws = self._waitables()
        if ws:
            ready, _ = pyray.wait(ws, num_returns=len(ws), timeout=0)
            if ready:
                ready = set(ready)
                for op in self.ops:
                    if op.poll(ready):
                        progressed = True
                progressed |= self._route()
        for op in reversed(self.ops):
            if op not in self._reported and op.dispatch(self):
                progressed = True
        return progressed

    def run(self) -> Iterator[RefBundle]:
        ctx = self.ctx
        if not pyray.is_initialized():
            pyray.init()            # as Ray Data does on first use
        cpu, mem, res = cluster_limits(ctx)
        self.policy = BackpressurePolicy(cpu, mem, len(self.ops))
        for op in self.ops:
            _check_resources(op, res)
        progress = ProgressReporter(self.title, self.ops, ctx.enable_progress_bars,
                                    per_operator=ctx.enable_operator_progress_bars)
        t0 = time.perf_counter()
        self.stats.ops = [op.stats for op in self.ops]
        ok = False
        idle, warned = 0.0, False
        try:
            for op in self.ops:
                op.start(ctx)
            while True:
                while self._step():
                    if self.out:
                        break
                progress.update()
                if self.out:
                    yield self.out.popleft()
                    continue
                if self.sink in self._reported:
                    break
                ws = self._waitables()
                if not ws:
                    stuck = [op.name for op in self.ops if op not in self._reported]
                    raise RuntimeError(f"the pipeline cannot make progress: {stuck} wait for "
                                       "input that will not come (this is a bug in "
                                       "pyray.data; please report it)")
                ready, _ = pyray.wait(ws, num_returns=1, timeout=WAIT_S)
                idle = 0.0 if ready else idle + WAIT_S
                if idle >= STALL_WARN_S and not warned:
                    warned = True
                    log.warning(self._stall_message(idle))
            ok = True
        finally:
            self.stats.total_s = time.perf_counter() - t0
            for op in self.ops:
                try:
                    op.shutdown()
                finally:
                    op.stats.finished()
            self.out.clear()
            progress.close(ok)
