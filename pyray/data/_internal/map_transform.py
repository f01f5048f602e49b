"""What runs inside a map task or a map actor: a chain of stages over blocks.

A *stage* turns an iterator of blocks (``pyarrow.Table``) into another one.
Consecutive map-like operators are fused by concatenating their stages, so a
``read -> map_batches -> filter`` pipeline runs as one task per block.  The
task body (``run_stages``) yields each output block followed by its
``BlockMetadata``, so the driver learns rows and bytes without fetching the
block.

A user function that raises, or returns the wrong type, fails the task with
a ``UserCodeException`` naming the operator (as Ray Data 2.x does); the
exception is also an instance of the original error's type, so ``except
ValueError`` written against older Ray keeps working.
"""
from __future__ import annotations

import ast
import collections.abc
import resource
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np
import pyarrow as pa

from pyray.data._internal.ref_bundle import BlockMetadata
from pyray.data.block import BlockAccessor, batch_to_block, concat_blocks, rows_to_block
from pyray.data.exceptions import user_code_error

DEFAULT_BATCH_SIZE = 1024
# the index of the task (or actor call) running in this process, set by
# begin_task; read it only from module-level code (a closure shipped to a
# worker carries a copy of the globals it names)
current_task_idx = 0


def begin_task(task_idx: int) -> None:
    global current_task_idx
    current_task_idx = task_idx


# ------------------------------------------------------------------ batching
def iter_batches_of(blocks: Iterable[pa.Table], batch_size: Optional[int]) -> Iterator[pa.Table]:
    """Tables of exactly batch_size rows (the last may be shorter), slicing
    and joining blocks; batch_size None: each non-empty block as it is."""
    if batch_size is None:
        for b in blocks:
            if b.num_rows:
                yield b
        return
    pending: List[pa.Table] = []
    have = 0
    for b in blocks:
        off, n = 0, b.num_rows
        while off < n:
            need = batch_size - have
            if not pending and n - off >= batch_size:
                yield b.slice(off, batch_size)      # the zero-copy common case
                off += batch_size
                continue
            piece = b.slice(off, min(need, n - off))
            pending.append(piece)
            have += piece.num_rows
            off += piece.num_rows
            if have == batch_size:
                yield _join(pending)
                pending, have = [], 0
    if have:
        yield _join(pending)


def _join(tables: List[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    return concat_blocks(tables).combine_chunks()


def writable(batch):
    """A numpy batch whose arrays may be written to (zero_copy_batch=False)."""
    if isinstance(batch, dict):
        return {k: (v.copy() if isinstance(v, np.ndarray) and not v.flags.writeable else v)
                for k, v in batch.items()}
    return batch


# -------------------------------------------------------------------- stages
class Stage:
    """One fused operator's work on a stream of blocks."""
    name = "Map"

    def setup(self) -> None:
        """Called once per task or actor before the first block."""

    def apply(self, blocks: Iterator[pa.Table]) -> Iterator[pa.Table]:
        raise NotImplementedError


def _call_udf(op_name, fn, arg, *args, **kwargs):
    try:
        return fn(arg, *args, **kwargs)
    except Exception as e:  # noqa: BLE001 - re-raised as the user's error, named
        raise user_code_error(op_name, e) from e


def _to_block(op_name, out, what="batch") -> pa.Table:
    try:
        return batch_to_block(out, where=op_name)
    except (TypeError, ValueError) as e:
        raise user_code_error(op_name, e) from None


class UDF:
    """A user function, or a callable class constructed once per worker."""

    def __init__(self, fn, fn_args=(), fn_kwargs=None, ctor_args=(), ctor_kwargs=None):
        self.fn = fn
        self.fn_args = tuple(fn_args or ())
        self.fn_kwargs = dict(fn_kwargs or {})
        self.ctor_args = tuple(ctor_args or ())
        self.ctor_kwargs = dict(ctor_kwargs or {})
        self.is_class = isinstance(fn, type)
        self._callable = None if self.is_class else fn

    def setup(self, op_name):
        if self._callable is None:
            try:
                self._callable = self.fn(*self.ctor_args, **self.ctor_kwargs)
            except Exception as e:  # noqa: BLE001
                raise user_code_error(op_name, e, "constructing") from e

    def __call__(self, op_name, arg):
        return _call_udf(op_name, self._callable, arg, *self.fn_args, **self.fn_kwargs)

    def __getstate__(self):
        d = dict(self.__dict__)
        if self.is_class:
            d["_callable"] = None       # each worker constructs its own
        return d


def udf_name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


class UDFStage(Stage):
    """A stage that calls a user function."""

    def __init__(self, name, udf: UDF):
        self.name = name
        self.udf = udf

    def setup(self):
        self.udf.setup(self.name)


class BatchStage(UDFStage):
    def __init__(self, name, udf: UDF, batch_size, batch_format, zero_copy_batch):
        super().__init__(name, udf)
        self.batch_size = batch_size
        self.batch_format = batch_format
        self.zero_copy = zero_copy_batch

    def apply(self, blocks):
        fmt, name, udf = self.batch_format, self.name, self.udf
        # as Ray: batches are writable copies unless zero_copy_batch, or when
        # whole blocks are the batches (batch_size=None)
        copy = not self.zero_copy and self.batch_size is not None
        for t in iter_batches_of(blocks, self.batch_size):
            batch = BlockAccessor(t).to_batch_format(fmt)
            if copy:
                batch = writable(batch)
            out = udf(name, batch)
            if isinstance(out, collections.abc.Iterator):
                for o in out:
                    yield _to_block(name, o)
            else:
                yield _to_block(name, out)


class RowStage(UDFStage):
    """map / flat_map / filter: one call per row."""

    def __init__(self, name, udf: UDF, kind: str):
        super().__init__(name, udf)
        self.kind = kind

    def apply(self, blocks):
        name, udf, kind = self.name, self.udf, self.kind
        for t in blocks:
            if not t.num_rows:
                continue
            rows = BlockAccessor(t).iter_rows()
            if kind == "filter":
                mask = []
                for r in rows:
                    keep = udf(name, r)
                    if not isinstance(keep, (bool, np.bool_)):
                        raise user_code_error(name, TypeError(
                            f"a filter function must return a bool, not {type(keep).__name__}"))
                    mask.append(bool(keep))
                yield t.filter(pa.array(mask, type=pa.bool_()))
                continue
            out: List[Any] = []
            if kind == "map":
                for r in rows:
                    o = udf(name, r)
                    if not isinstance(o, collections.abc.Mapping):
                        raise user_code_error(name, TypeError(
                            f"a map function must return a dict (one row), not "
                            f"{type(o).__name__}; use flat_map to return several rows"))
                    out.append(o)
            else:
                for r in rows:
                    o = udf(name, r)
                    if isinstance(o, (str, bytes, collections.abc.Mapping)) or \
                            not isinstance(o, collections.abc.Iterable):
                        raise user_code_error(name, TypeError(
                            f"a flat_map function must return a list of rows, not "
                            f"{type(o).__name__}"))
                    out.extend(o)
            if out:
                try:
                    yield rows_to_block(out)
                except (TypeError, ValueError) as e:
                    raise user_code_error(name, e) from None


class BlockStage(Stage):
    """A built-in transform of whole blocks (select, rename, sample, ...)."""

    def __init__(self, name, fn: Callable[[pa.Table], pa.Table]):
        self.name = name
        self.fn = fn

    def apply(self, blocks):
        for t in blocks:
            yield self.fn(t)


# ------------------------------------------------------- built-in transforms
def _require_columns(what, names, t):
    missing = [c for c in names if c not in t.column_names]
    if missing:
        raise ValueError(f"{what}: no column {missing[0]!r}; the columns are {t.column_names}")


def select_columns(cols):
    def fn(t):
        _require_columns("select_columns", cols, t)
        return t.select(cols)
    return fn


def drop_columns(cols):
    def fn(t):
        _require_columns("drop_columns", cols, t)
        return t.drop_columns(cols)
    return fn


def rename_columns(mapping: Dict[str, str]):
    def fn(t):
        _require_columns("rename_columns", mapping, t)
        return t.rename_columns([mapping.get(c, c) for c in t.column_names])
    return fn


class RandomSampleStage(Stage):
    """Keeps each row with probability `fraction`; with a seed, block k of
    task i draws from the stream (seed, i, k), wherever it runs."""

    def __init__(self, name, fraction: float, seed: Optional[int]):
        self.name = name
        self.fraction = fraction
        self.seed = seed

    def apply(self, blocks):
        for k, t in enumerate(blocks):
            rng = np.random.default_rng(None if self.seed is None else
                                        [self.seed, current_task_idx, k])
            yield t.filter(pa.array(rng.random(t.num_rows) < self.fraction))


def add_column_stage(name, col, udf: UDF, batch_format):
    def fn(t):
        batch = BlockAccessor(t).to_batch_format(batch_format)
        values = udf(name, batch)
        if hasattr(values, "to_numpy") and not isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = values.to_numpy()
        if isinstance(values, (pa.Array, pa.ChunkedArray, np.ndarray, list)):
            try:
                arr = batch_to_block({col: values}).column(0)
            except (TypeError, ValueError) as e:
                raise user_code_error(name, e) from None
            if len(arr) != t.num_rows:
                raise user_code_error(name, ValueError(
                    f"add_column: the function returned {len(arr)} values for a batch of "
                    f"{t.num_rows} rows"))
            if col in t.column_names:
                return t.set_column(t.column_names.index(col), col, arr)
            return t.append_column(col, arr)
        raise user_code_error(name, TypeError(
            f"add_column: the function must return a column (pandas Series, numpy array, "
            f"pyarrow Array or list), not {type(values).__name__}"))
    return BlockStage(name, fn)


_CMP = {ast.Eq: "equal", ast.NotEq: "not_equal", ast.Lt: "less", ast.LtE: "less_equal",
        ast.Gt: "greater", ast.GtE: "greater_equal"}


def parse_filter_expr(expr: str):
    """A pyarrow compute expression for simple predicates: ``col > 3``,
    ``a == 'x' and b <= 2.5``, ``not (c != 1)``; anything else raises
    NotImplementedError."""
    import pyarrow.compute as pc

    def conv(node):
        if isinstance(node, ast.BoolOp):
            parts = [conv(v) for v in node.values]
            out = parts[0]
            for p in parts[1:]:
                out = (out & p) if isinstance(node.op, ast.And) else (out | p)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~conv(node.operand)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
            left, right = node.left, node.comparators[0]
            fn = _CMP[type(node.ops[0])]
            return getattr(pc, fn)(operand(left), operand(right))
        raise NotImplementedError(
            f"filter(expr={expr!r}): only comparisons of columns and constants joined by "
            "and/or/not are supported; pass a function instead: filter(lambda row: ...)")

    def operand(node):
        if isinstance(node, ast.Name):
            return pc.field(node.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return pc.scalar(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
                isinstance(node.operand, ast.Constant):
            return pc.scalar(-node.operand.value)
        raise NotImplementedError(
            f"filter(expr={expr!r}): {ast.dump(node)} is neither a column name nor a "
            "constant; pass a function instead: filter(lambda row: ...)")

    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"filter(expr={expr!r}) is not a valid expression: {e}") from None
    return conv(tree.body)


def filter_expr_stage(name, expr: str):
    pred = parse_filter_expr(expr)

    def fn(t):
        try:
            return t.filter(pred)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            raise ValueError(f"{name}: {e} (the columns are {t.column_names})") from None
    return BlockStage(name, fn)


# ----------------------------------------------------------------- task body
class _Coalescer:
    """Joins small output blocks into blocks of about target bytes."""

    def __init__(self, target: int):
        self.target = target
        self.parts: List[pa.Table] = []
        self.size = 0

    def add(self, t: pa.Table):
        if t.num_rows == 0 and self.parts:
            return None
        self.parts.append(t)
        self.size += t.nbytes
        return self.flush() if self.size >= self.target else None

    def flush(self):
        if not self.parts:
            return None
        out = _join(self.parts) if len(self.parts) > 1 else self.parts[0]
        self.parts, self.size = [], 0
        return out


def run_stages(stages: List[Stage], blocks: Iterable[pa.Table], target_block_size: int,
               input_files=None):
    """The generator every map task and actor call runs: output block, then
    its metadata, for each output block."""
    t0, c0 = time.perf_counter(), time.process_time()
    stream: Iterator[pa.Table] = iter(blocks)
    for st in stages:
        stream = st.apply(stream)
    co = _Coalescer(target_block_size)

    def emit(t):
        nonlocal t0, c0
        t1, c1 = time.perf_counter(), time.process_time()
        stats = {"wall_s": t1 - t0, "cpu_s": c1 - c0,
                 "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                 "node": _node_id(),
                 "start": t0, "end": t1}
        t0, c0 = t1, c1
        return t, BlockMetadata.for_block(t, input_files, stats)

    for t in stream:
        if not isinstance(t, pa.Table):
            t = batch_to_block(t)
        out = co.add(t)
        if out is not None:
            yield emit(out)
    out = co.flush()
    if out is not None:
        yield emit(out)


_node = None


def _node_id():
    """This process's node (recorded with each block, for locality)."""
    global _node
    if _node is None:
        import pyray
        _node = pyray.get_runtime_context().get_node_id()
    return _node


def block_node(meta) -> Optional[str]:
    return (meta.exec_stats or {}).get("node")


def setup_stages(stages):
    for st in stages:
        st.setup()
