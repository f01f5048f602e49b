"""The logical plan of a Dataset and its translation into physical operators.

A Dataset is a tree of logical operators; nothing runs until it is consumed.
``build`` turns the tree into the executor's list of physical operators,
fusing each run of consecutive map-like operators (and the read before them)
whose resource requests agree into one operator: one task per block.
"""
from __future__ import annotations

from typing import Callable, List, Optional

from pyray.data._internal.actor_pool import ActorMapOp, ActorPoolStrategy
from pyray.data._internal.operators import (BarrierOp, InputDataOp, LimitOp, MapTaskOp,
                                             PhysicalOp, UnionOp)
from pyray.data._internal.ref_bundle import RefBundle


class LogicalOp:
    def __init__(self, name: str, inputs: List["LogicalOp"]):
        self.name = name
        self.inputs = inputs


class InputData(LogicalOp):
    def __init__(self, name: str, bundles: List[RefBundle]):
        super().__init__(name, [])
        self.bundles = bundles


class Read(LogicalOp):
    def __init__(self, datasource, parallelism: int, ray_remote_args=None, concurrency=None):
        super().__init__(f"Read{datasource.get_name()}", [])
        self.datasource = datasource
        self.parallelism = parallelism
        self.remote_args = dict(ray_remote_args or {})
        self.concurrency = concurrency
        self._read_tasks = None

    def read_tasks(self):
        """The datasource's ReadTasks (asked once per Read)."""
        if self._read_tasks is None:
            self._read_tasks = list(self.datasource.get_read_tasks(self.parallelism))
        return self._read_tasks


class MapOp(LogicalOp):
    """A map-like operator: its stages run on each block."""

    def __init__(self, name, input_op, stages, *, compute: Optional[ActorPoolStrategy] = None,
                 ray_remote_args=None, concurrency: Optional[int] = None,
                 min_rows_per_bundle: Optional[int] = None, row_preserving: bool = False,
                 strict_batch_size: bool = False, exact_min_rows: bool = False):
        super().__init__(name, [input_op])
        self.stages = stages
        self.compute = compute
        self.remote_args = dict(ray_remote_args or {})
        self.concurrency = concurrency
        self.min_rows = min_rows_per_bundle
        self.row_preserving = row_preserving
        self.strict_batch_size = strict_batch_size
        # min_rows_per_bundle must hold even after a read whose task rows are unknown
        self.exact_min_rows = exact_min_rows


class Limit(LogicalOp):
    def __init__(self, input_op, n: int):
        super().__init__(f"Limit[limit={n}]", [input_op])
        self.n = n


class AllToAll(LogicalOp):
    """A barrier: fn(bundles, ctx) -> bundles, in the driver (or fn(a, b, ctx)
    for two inputs, as zip)."""

    def __init__(self, name, inputs, fn: Callable):
        super().__init__(name, inputs)
        self.fn = fn


class Union(LogicalOp):
    def __init__(self, inputs):
        super().__init__("Union", inputs)


# ------------------------------------------------------------------- fusion
def _plain(op) -> bool:
    """Asks for nothing special: may run inside another operator's workers."""
    return not op.remote_args and op.concurrency is None


def _fusable(up: LogicalOp, chain: List[MapOp]) -> bool:
    """May `up` run in the same task (or actor) as the maps in `chain`?

    Task maps with equal resource requests fuse; a callable class's pool
    also runs the plain maps (and read) before it and the plain maps after
    it, so ``read -> map_batches(Model) -> write`` is one actor call per
    block and the pool never waits on tasks that need its CPUs."""
    pool = next((m for m in chain if m.compute is not None), None)
    first = chain[0]
    if isinstance(up, MapOp):
        if up.compute is not None:
            return pool is None and all(_plain(m) for m in chain)
        if pool is not None:
            return _plain(up)
        return up.remote_args == first.remote_args and up.concurrency == first.concurrency
    if isinstance(up, Read):
        strict = max((m.min_rows for m in chain if m.min_rows and m.strict_batch_size),
                     default=None)
        if strict:
            # a read task's blocks cannot be bundled: fuse only when each read
            # gives at least a batch (so a batch_size or min_rows_per_write
            # the user gave is honoured)
            rows = [rt.metadata.num_rows if rt.metadata is not None else None
                    for rt in up.read_tasks()]
            if any(r is not None and r < strict for r in rows):
                return False
        if first.min_rows and first.exact_min_rows:
            if any(rt.metadata is None or rt.metadata.num_rows is None
                   or rt.metadata.num_rows < first.min_rows for rt in up.read_tasks()):
                return False
        if pool is not None:
            return _plain(up)
        return up.remote_args == first.remote_args and (
            up.concurrency == first.concurrency or first.concurrency is None)
    return False


def build(root: LogicalOp, ctx, ordered: bool = False) -> List[PhysicalOp]:
    """Physical operators in execution order (sources first, output last);
    `ordered`: the output keeps the input's order whatever preserve_order says."""
    ops: List[PhysicalOp] = []
    preserve = bool(ctx.execution_options.preserve_order)

    def visit(node: LogicalOp, ordered: bool) -> PhysicalOp:
        if isinstance(node, MapOp):
            chain = [node]
            up = node.inputs[0]
            while isinstance(up, MapOp) and _fusable(up, chain):
                chain.insert(0, up)
                up = up.inputs[0]
            read = up if isinstance(up, Read) and _fusable(up, chain) else None
            stages = [s for m in chain for s in m.stages]
            name = "->".join(([read.name] if read else []) + [m.name for m in chain])
            mins = [m.min_rows for m in chain if m.min_rows]
            min_rows = None if read is not None or not mins else max(mins)
            head = None if read else visit(up, ordered)
            kw = {}
            if read is not None:
                kw = {"read_tasks": read.read_tasks(), "parallelism": read.parallelism}
            pool = next((m for m in chain if m.compute is not None), None)
            if pool is not None:
                op = ActorMapOp(name, head, stages, pool.compute, pool.remote_args, min_rows,
                                **kw)
            else:
                lead = chain[0]
                concurrency = lead.concurrency if lead.concurrency is not None else (
                    read.concurrency if read is not None else None)
                op = MapTaskOp(name, head, stages, lead.remote_args, concurrency, min_rows,
                               **kw)
        elif isinstance(node, Read):
            op = MapTaskOp(node.name, None, [], node.remote_args, node.concurrency,
                           read_tasks=node.read_tasks(), parallelism=node.parallelism)
        elif isinstance(node, InputData):
            op = InputDataOp(node.name, node.bundles)
        elif isinstance(node, Limit):
            op = LimitOp(visit(node.inputs[0], True), node.n)
        elif isinstance(node, Union):
            op = UnionOp([visit(i, ordered) for i in node.inputs])
        elif isinstance(node, AllToAll):
            op = BarrierOp(node.name, [visit(i, True) for i in node.inputs], node.fn)
        else:
            raise TypeError(f"unknown logical operator {type(node).__name__}")
        op.ordered = ordered or preserve
        for i, src in enumerate(op.inputs):
            src.consumer = (op, i)
        ops.append(op)
        return op

    visit(root, preserve or ordered)
    return ops


# ----------------------------------------------------- questions about a plan
def known_num_rows(node: LogicalOp) -> Optional[int]:
    """Rows the plan produces, when known without running it."""
    if isinstance(node, InputData):
        return sum(b.num_rows for b in node.bundles)
    if isinstance(node, Read):
        rows = [rt.metadata.num_rows if rt.metadata is not None else None
                for rt in node.read_tasks()]
        return None if any(r is None for r in rows) else sum(rows)
    if isinstance(node, MapOp) and node.row_preserving:
        return known_num_rows(node.inputs[0])
    if isinstance(node, Limit):
        n = known_num_rows(node.inputs[0])
        return None if n is None else min(n, node.n)
    if isinstance(node, Union):
        rows = [known_num_rows(i) for i in node.inputs]
        return None if any(r is None for r in rows) else sum(rows)
    return None


def source_schema(node: LogicalOp):
    """The schema of a plan that is only a source (None otherwise or unknown)."""
    if isinstance(node, InputData):
        for b in node.bundles:
            for m in b.metadata:
                if m.schema is not None and (m.num_rows or len(m.schema)):
                    return m.schema
        return None
    if isinstance(node, Read):
        for rt in node.read_tasks():
            if rt.metadata is not None and rt.metadata.schema is not None:
                return rt.metadata.schema
    return None


def initial_num_blocks(node: LogicalOp) -> int:
    """Blocks of the plan's sources (what Ray's num_blocks() reports)."""
    if isinstance(node, InputData):
        return sum(len(b.blocks) for b in node.bundles)
    if isinstance(node, Read):
        return len(node.read_tasks())
    if isinstance(node, AllToAll) and len(node.inputs) > 1:
        return initial_num_blocks(node.inputs[0])
    return sum(initial_num_blocks(i) for i in node.inputs)
