"""Physical operators: what the streaming executor runs.

Each operator takes RefBundles from the operators before it (``add_input``,
``input_done``), starts work when the executor lets it (``dispatch``),
collects the outputs of its tasks (``poll``) and queues its own output
bundles (``has_output`` / ``take_output``).  Only map operators run tasks;
limit, union and barrier (all-to-all, zip) operators act in the driver.

A map task is a streaming generator that yields each output block and then
its metadata (map_transform.run_stages); the driver reads the metadata (a few
hundred bytes) and never fetches a block to count it.
"""
from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Deque, Dict, List, Optional

import pyray
from pyray.data._internal.backpressure import OpUsage
from pyray.data._internal.map_transform import begin_task, run_stages, setup_stages
from pyray.data._internal.ref_bundle import BlockMetadata, RefBundle
from pyray.data._internal.stats import OpStats

META_TIMEOUT_S = 60.0
log = logging.getLogger("pyray.data")


def owned_bytes(bundle: RefBundle) -> int:
    return bundle.size_bytes if bundle.owns_blocks else 0


class PhysicalOp:
    """Base: queues, accounting and the executor's interface."""

    is_task_op = False

    def __init__(self, name: str, inputs: List["PhysicalOp"]):
        self.name = name
        self.inputs = list(inputs)
        self.consumer = None              # (PhysicalOp, input index) or None for the sink
        self.stats = OpStats(name)
        self.inputs_done = [False] * len(self.inputs)
        self.out: Deque[RefBundle] = collections.deque()
        self.out_bytes = 0
        self.queued_input_bytes = 0       # inputs waiting here, counted for the producer
        self.ordered = False
        self.aborted = False
        self.ctx = None

    # ---------------------------------------------------------------- life
    def start(self, ctx) -> None:
        self.ctx = ctx
        self.stats.started()

    def shutdown(self) -> None:
        pass

    def abort(self) -> None:
        """No more output is wanted (a limit downstream was reached)."""
        self.aborted = True
        for b in self.out:
            self.out_bytes -= owned_bytes(b)
        self.out.clear()
        self.shutdown()

    # -------------------------------------------------------------- inputs
    def add_input(self, bundle: RefBundle, index: int) -> None:
        raise NotImplementedError

    def input_done(self, index: int) -> None:
        self.inputs_done[index] = True

    @property
    def all_inputs_done(self) -> bool:
        return all(self.inputs_done)

    # ---------------------------------------------------------------- work
    def dispatch(self, executor) -> bool:
        """Starts what it may; True if it did something."""
        return False

    def poll(self, ready) -> bool:
        """Collects outputs of tasks whose generators are in `ready`."""
        return False

    def waitables(self) -> list:
        return []

    def usage(self) -> OpUsage:
        return OpUsage(running=0, cpu_per_task=0.0)

    def running_input_bytes(self) -> int:
        return 0

    def inflight_bytes(self) -> int:
        return 0

    def done(self) -> bool:
        """No more output will come (queued output may remain)."""
        raise NotImplementedError

    # -------------------------------------------------------------- output
    def _emit(self, bundle: RefBundle) -> None:
        self.out.append(bundle)
        self.out_bytes += owned_bytes(bundle)
        for m in bundle.metadata:
            self.stats.add_output(m)

    def has_output(self) -> bool:
        return bool(self.out)

    def take_output(self) -> RefBundle:
        b = self.out.popleft()
        self.out_bytes -= owned_bytes(b)
        return b


# ====================================================================== input
class InputDataOp(PhysicalOp):
    """Blocks that already exist (from_* sources, materialized datasets)."""

    def __init__(self, name, bundles: List[RefBundle]):
        super().__init__(name, [])
        self._bundles = bundles

    def start(self, ctx):
        super().start(ctx)
        for b in self._bundles:
            self._emit(b)
        self.stats.finished()

    def done(self):
        return True


# ======================================================================== map
class _Task:
    __slots__ = ("seq", "gen", "input_bytes", "args", "block", "outputs", "finished")

    def __init__(self, seq, gen, input_bytes, args):
        self.seq = seq
        self.gen = gen
        self.input_bytes = input_bytes
        self.args = args                  # refs kept alive until the task is done
        self.block = None                 # a block ref waiting for its metadata
        self.outputs: List[RefBundle] = []
        self.finished = False


def make_task_fn(stages, target_block_size: int, is_read: bool):
    """The body of a fused map task (a generator: block, metadata, ...)."""

    def _map_task(task_idx, *args):
        begin_task(task_idx)
        setup_stages(stages)
        if is_read:
            read_task = args[0]
            files = getattr(read_task.metadata, "input_files", None)
            source = read_task()
        else:
            files, source = None, args
        for block, meta in run_stages(stages, source, target_block_size, files):
            yield block
            yield meta

    return _map_task


class MapTaskOp(PhysicalOp):
    """Fused map operators (optionally led by a read) as one task per input."""

    is_task_op = True

    def __init__(self, name, input_op: Optional[PhysicalOp], stages, ray_remote_args=None,
                 concurrency: Optional[int] = None, min_rows_per_bundle: Optional[int] = None,
                 datasource=None, parallelism: int = -1, read_tasks=None):
        super().__init__(name, [input_op] if input_op is not None else [])
        self.stages = stages
        self.remote_args = dict(ray_remote_args or {})
        self.concurrency = concurrency
        self.min_rows = min_rows_per_bundle
        self.datasource = datasource
        self.parallelism = parallelism
        self.read_tasks = read_tasks
        self.is_read = datasource is not None or read_tasks is not None
        self.queue: Deque[tuple] = collections.deque()  # (args, input_bytes, expected)
        self._acc: List[RefBundle] = []
        self._acc_rows = 0
        self.running: Dict[Any, _Task] = {}
        self.order: Deque[_Task] = collections.deque()
        self._seq = 0
        self._out_total = 0
        self._fn = None
        self.cpu = float(self.remote_args.get("num_cpus", 1))
        self.total_tasks = len(read_tasks) if read_tasks is not None else None
        self.errored = 0

    # ------------------------------------------------------------- setup
    def _remote_fn(self):
        opts = dict(self.remote_args)
        opts.setdefault("num_cpus", 1)
        if self.ctx.execution_options.locality_with_output:
            from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            opts.setdefault("scheduling_strategy", NodeAffinitySchedulingStrategy(
                pyray.get_runtime_context().get_node_id(), soft=True))
        if self.is_read:
            opts.setdefault("scheduling_strategy", "SPREAD")
        opts["num_returns"] = "streaming"
        fn = make_task_fn(self.stages, self.ctx.target_max_block_size, self.is_read)
        fn.__name__ = fn.__qualname__ = self.name
        return pyray.remote(fn).options(**opts)

    def start(self, ctx):
        super().start(ctx)
        self._fn = self._remote_fn()
        if self.is_read:
            tasks = self.read_tasks
            if tasks is None:
                tasks = self.datasource.get_read_tasks(self.parallelism)
            for rt in tasks:
                size = rt.metadata.size_bytes if rt.metadata is not None else None
                self.queue.append(((rt,), 0, size or 0))
            self.inputs_done = []           # a source: no inputs

    # ------------------------------------------------------------ inputs
    def add_input(self, bundle, index):
        if self.aborted:
            return
        self.queued_input_bytes += owned_bytes(bundle)
        if not self.min_rows:
            self.queue.append((bundle, owned_bytes(bundle), bundle.size_bytes))
            return
        self._acc.append(bundle)
        self._acc_rows += bundle.num_rows
        if self._acc_rows >= self.min_rows:
            self._flush_acc()

    def _flush_acc(self):
        if not self._acc:
            return
        blocks = tuple(x for b in self._acc for x in b.blocks)
        owns = all(b.owns_blocks for b in self._acc)
        merged = RefBundle(blocks, owns_blocks=owns)
        self.queue.append((merged, owned_bytes(merged), merged.size_bytes))
        self._acc, self._acc_rows = [], 0

    def input_done(self, index):
        super().input_done(index)
        self._flush_acc()

    # -------------------------------------------------------------- work
    def usage(self):
        est = self._out_total // self.stats.tasks if self.stats.tasks else (
            self.queue[0][2] if self.queue else 0)
        return OpUsage(running=len(self.running), cpu_per_task=self.cpu,
                       max_running=self.concurrency, expected_task_bytes=est)

    def running_input_bytes(self):
        return sum(t.input_bytes for t in self.running.values())

    def inflight_bytes(self):
        if not self.running:
            return 0
        per = self._out_total // self.stats.tasks if self.stats.tasks else 0
        return per * len(self.running)

    def dispatch(self, ex):
        did = False
        while self.queue and not self.aborted and ex.may_launch(self):
            self._submit(self._fn.remote)
            did = True
        return did

    def _submit(self, remote) -> _Task:
        """Starts the next queued input with remote(seq, *args)."""
        item, in_bytes, _ = self.queue.popleft()
        if isinstance(item, RefBundle):
            self.queued_input_bytes -= in_bytes
            args = tuple(item.block_refs)
        else:
            args = item
        seq = self._seq
        self._seq += 1
        t = _Task(seq, remote(seq, *args), in_bytes, args)
        self.running[t.gen] = t
        if self.ordered:
            self.order.append(t)
        return t

    def waitables(self):
        return list(self.running)

    def poll(self, ready):
        did = False
        for gen in [g for g in self.running if g in ready]:
            did = True
            t = self.running[gen]
            try:
                self._advance(t)
            except Exception as err:  # noqa: BLE001 - raised unless it may be skipped
                if not self._skip_error(t, err):
                    raise
        if self.ordered:
            self._release_ordered()
        return did

    def _advance(self, t: _Task) -> None:
        """Takes the next item of a task whose generator is ready."""
        try:
            ref = next(t.gen)
        except StopIteration:
            self._task_done(t)
            return
        if t.block is None:
            t.block = ref
            return
        meta = pyray.get(ref, timeout=META_TIMEOUT_S)
        if not isinstance(meta, BlockMetadata):
            raise RuntimeError(f"{self.name}: a task yielded {type(meta).__name__} where "
                               "block metadata was expected")
        bundle = RefBundle(((t.block, meta),))
        t.block = None
        self._out_total += meta.size_bytes
        if self.ordered:
            t.outputs.append(bundle)
        else:
            self._emit(bundle)

    def _skip_error(self, t: _Task, err: Exception) -> bool:
        """DataContext.max_errored_blocks: a failed task's remaining output
        is dropped and the pipeline goes on, up to that many (-1: any)."""
        limit = self.ctx.max_errored_blocks if self.ctx is not None else 0
        if limit == 0 or (limit > 0 and self.errored >= limit):
            return False
        self.errored += 1
        log.warning("%s: skipping a failed block (%d of max_errored_blocks=%s): %s",
                    self.name, self.errored, limit, str(err).splitlines()[0])
        self._finish(t)
        return True

    def _task_done(self, t: _Task):
        if t.block is not None:
            pyray.get(t.block, timeout=META_TIMEOUT_S)      # raises the task's error
            raise RuntimeError(f"{self.name}: a task ended after a block without metadata")
        self._finish(t)

    def _finish(self, t: _Task):
        self.running.pop(t.gen, None)
        t.finished = True
        t.args = t.block = None
        self.stats.tasks += 1

    def _release_ordered(self):
        while self.order:
            head = self.order[0]
            for b in head.outputs:
                self._emit(b)
            head.outputs = []
            if not head.finished:
                break
            self.order.popleft()

    def done(self):
        if self.aborted:
            return True
        return (all(self.inputs_done) and not self.queue and not self._acc
                and not self.running and not self.order)

    def shutdown(self):
        for gen in list(self.running):
            try:
                pyray.cancel(gen)
            except Exception:  # noqa: BLE001 - it may have just finished
                pass
        self.running.clear()
        self.order.clear()
        self.queue.clear()
        self._acc = []


# ====================================================================== limit
class LimitOp(PhysicalOp):
    def __init__(self, input_op, limit: int):
        super().__init__(f"limit={limit}", [input_op])
        self.remaining = limit

    def add_input(self, bundle, index):
        if self.remaining <= 0:
            return
        if bundle.num_rows <= self.remaining:
            self.remaining -= bundle.num_rows
            self._emit(bundle)
            return
        from pyray.data._internal.split import slice_bundle
        self._emit(slice_bundle(bundle, 0, self.remaining))
        self.remaining = 0

    def reached(self) -> bool:
        return self.remaining <= 0

    def done(self):
        return self.remaining <= 0 or self.all_inputs_done


# ====================================================================== union
class UnionOp(PhysicalOp):
    def __init__(self, inputs):
        super().__init__("Union", inputs)
        self.pending: List[List[RefBundle]] = [[] for _ in inputs]

    def add_input(self, bundle, index):
        if not self.ordered or all(self.inputs_done[:index]):
            self._emit(bundle)
        else:
            self.pending[index].append(bundle)
            self.queued_input_bytes += owned_bytes(bundle)

    def input_done(self, index):
        super().input_done(index)
        for i, buf in enumerate(self.pending):
            if not all(self.inputs_done[:i]):
                break
            for b in buf:
                self.queued_input_bytes -= owned_bytes(b)
                self._emit(b)
            buf.clear()

    def done(self):
        return self.all_inputs_done and not any(self.pending)


# ==================================================================== barrier
class BarrierOp(PhysicalOp):
    """Gathers every input bundle, then calls fn(list per input, ctx) in the
    driver; its result streams on.  Used for all-to-all operations and zip."""

    def __init__(self, name, inputs, fn: Callable):
        super().__init__(name, inputs)
        self.fn = fn
        self.gathered: List[List[RefBundle]] = [[] for _ in inputs]
        self.ran = False

    def add_input(self, bundle, index):
        self.gathered[index].append(bundle)
        self.queued_input_bytes += owned_bytes(bundle)

    def dispatch(self, ex):
        if self.ran or not self.all_inputs_done or self.aborted:
            return False
        self.ran = True
        gathered, self.gathered = self.gathered, []
        self.queued_input_bytes = 0
        outs = self.fn(*gathered, self.ctx) if len(gathered) > 1 else self.fn(gathered[0],
                                                                                self.ctx)
        for b in outs or ():
            if not isinstance(b, RefBundle):
                raise TypeError(f"{self.name}: the operation returned a "
                                f"{type(b).__name__}, not a RefBundle")
            self._emit(b)
        self.stats.finished()
        return True

    def done(self):
        return self.ran or self.aborted
