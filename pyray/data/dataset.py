"""Dataset: a lazy plan over Arrow blocks, run by the streaming executor.

Transforms return a new Dataset holding a longer plan and run nothing;
consumers (iteration, take, count, write, materialize, ...) execute it.
"""
from __future__ import annotations

import html
import itertools
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import pyarrow as pa

import pyray
from pyray.data._internal import plan as lp
from pyray.data._internal.actor_pool import ActorPoolStrategy, strategy_from
from pyray.data._internal.all_to_all import AllToAllMixin
from pyray.data._internal.executor import StreamingExecutor
from pyray.data._internal.io_api import WriteMixin
from pyray.data._internal.map_transform import (DEFAULT_BATCH_SIZE, UDF, BatchStage,
                                                BlockStage, RowStage, Stage,
                                                add_column_stage, drop_columns,
                                                filter_expr_stage, RandomSampleStage,
                                                rename_columns, select_columns, udf_name)
from pyray.data._internal.ref_bundle import BlockMetadata, RefBundle
from pyray.data._internal.split import (SplitCoordinator, split_at_indices, split_blocks)
from pyray.data._internal.stats import DatasetStats
from pyray.data.block import BATCH_FORMATS, BlockAccessor, concat_blocks, require_pandas
from pyray.data.context import DataContext
from pyray.data.iterator import DataIterator, DatasetIterator, SplitIterator

GET_TIMEOUT_S = 600.0


class Schema:
    """Column names and types of a dataset (``ray.data.Schema``)."""

    def __init__(self, base_schema: pa.Schema):
        self.base_schema = base_schema

    @property
    def names(self) -> List[str]:
        return list(self.base_schema.names)

    @property
    def types(self) -> list:
        return list(self.base_schema.types)

    def __eq__(self, other):
        if isinstance(other, Schema):
            return self.base_schema == other.base_schema
        return self.base_schema == other

    def __len__(self):
        return len(self.base_schema)

    def __repr__(self):
        names = self.names or ["(no columns)"]
        types = [str(t) for t in self.types] or [""]
        w = max(len("Column"), *(len(n) for n in names))
        lines = [f"{'Column':<{w}}  Type", f"{'-' * len('Column'):<{w}}  ----"]
        lines += [f"{n:<{w}}  {t}" for n, t in zip(names, types)]
        return "\n".join(lines)


def _schema_dict(schema) -> str:
    if schema is None:
        return "Unknown schema"
    return "{" + ", ".join(f"{n}: {t}" for n, t in zip(schema.names, schema.types)) + "}"


def _check_fn_args(fn, fn_constructor_args, fn_constructor_kwargs, what):
    if not callable(fn):
        raise TypeError(f"{what}: fn must be a function or a callable class, not "
                        f"{type(fn).__name__}")
    if not isinstance(fn, type) and (fn_constructor_args or fn_constructor_kwargs):
        raise ValueError(f"{what}: fn_constructor_args and fn_constructor_kwargs can only be "
                         "given when fn is a callable class")


class Dataset(AllToAllMixin, WriteMixin):
    """A distributed collection of rows, held as Arrow blocks (``ray.data.Dataset``)."""

    def __init__(self, root: lp.LogicalOp, context: Optional[DataContext] = None):
        self._root = root
        self._context = context if context is not None else DataContext.get_current().copy()
        self._stats = DatasetStats()

    # ------------------------------------------------------------ internal
    def _ctx(self) -> DataContext:
        return self._context

    def _with(self, root: lp.LogicalOp) -> "Dataset":
        return Dataset(root, self._context)

    def _iter_bundles(self, ordered: bool = False) -> Iterator[RefBundle]:
        """Executes the plan and streams its output bundles (in order when
        `ordered`, or when the context's preserve_order is set)."""
        self._stats = DatasetStats()
        ops = lp.build(self._root, self._context, ordered)
        return StreamingExecutor(ops, self._context, self._stats,
                                 title=ops[-1].name).run()

    def _all_to_all(self, name: str, fn: Callable) -> "Dataset":
        """A barrier: fn(bundles, ctx) -> bundles runs in the driver once every
        upstream bundle exists."""
        return self._with(lp.AllToAll(name, [self._root], fn))

    def _map(self, name, stages: List[Stage], *, compute=None, remote_args=None,
             concurrency=None, min_rows=None, row_preserving=False,
             strict_batch_size=False) -> "Dataset":
        return self._with(lp.MapOp(name, self._root, stages, compute=compute,
                                   ray_remote_args=remote_args, concurrency=concurrency,
                                   min_rows_per_bundle=min_rows,
                                   row_preserving=row_preserving,
                                   strict_batch_size=strict_batch_size))

    @staticmethod
    def _remote_args(what, num_cpus=None, num_gpus=None, memory=None, ray_remote_args=None,
                     **extra):
        args = dict(ray_remote_args or {})
        for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus), ("memory", memory)):
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    raise ValueError(f"{what}: {k} must be a non-negative number, not {v!r}")
                args[k] = v
        for k in extra:
            raise TypeError(f"{what}() got an unexpected keyword argument {k!r}")
        return args

    # ---------------------------------------------------------- transforms
    def map(self, fn, *, compute=None, fn_args=None, fn_kwargs=None,
            fn_constructor_args=None, fn_constructor_kwargs=None, num_cpus=None,
            num_gpus=None, memory=None, concurrency=None, ray_remote_args_fn=None,
            **ray_remote_args) -> "Dataset":
        """Applies fn to each row (a dict); fn returns one row (a dict)."""
        return self._row_op("Map", "map", fn, compute, fn_args, fn_kwargs, fn_constructor_args,
                            fn_constructor_kwargs, num_cpus, num_gpus, memory, concurrency,
                            ray_remote_args_fn, ray_remote_args)

    def flat_map(self, fn, *, compute=None, fn_args=None, fn_kwargs=None,
                 fn_constructor_args=None, fn_constructor_kwargs=None, num_cpus=None,
                 num_gpus=None, memory=None, concurrency=None, ray_remote_args_fn=None,
                 **ray_remote_args) -> "Dataset":
        """Applies fn to each row; fn returns a list of rows."""
        return self._row_op("FlatMap", "flat_map", fn, compute, fn_args, fn_kwargs,
                            fn_constructor_args, fn_constructor_kwargs, num_cpus, num_gpus,
                            memory, concurrency, ray_remote_args_fn, ray_remote_args)

    def filter(self, fn=None, expr: Optional[str] = None, *, compute=None, fn_args=None,
               fn_kwargs=None, fn_constructor_args=None, fn_constructor_kwargs=None,
               num_cpus=None, num_gpus=None, memory=None, concurrency=None,
               ray_remote_args_fn=None, **ray_remote_args) -> "Dataset":
        """Keeps the rows for which fn(row) is True (or which match ``expr``)."""
        if (fn is None) == (expr is None):
            raise ValueError("filter: give exactly one of fn or expr")
        if expr is not None:
            if not isinstance(expr, str):
                raise TypeError(f"filter: expr must be a string, not {type(expr).__name__}")
            name = f"Filter({expr})"
            args = self._remote_args("filter", num_cpus, num_gpus, memory, ray_remote_args)
            return self._map(name, [filter_expr_stage(name, expr)], remote_args=args,
                             concurrency=concurrency)
        return self._row_op("Filter", "filter", fn, compute, fn_args, fn_kwargs,
                            fn_constructor_args, fn_constructor_kwargs, num_cpus, num_gpus,
                            memory, concurrency, ray_remote_args_fn, ray_remote_args)

    def _row_op(self, label, kind, fn, compute, fn_args, fn_kwargs, ctor_args, ctor_kwargs,
                num_cpus, num_gpus, memory, concurrency, ray_remote_args_fn, ray_remote_args):
        _check_fn_args(fn, ctor_args, ctor_kwargs, kind)
        if ray_remote_args_fn is not None:
            raise NotImplementedError(f"{kind}: ray_remote_args_fn is not supported; pass "
                                      "ray_remote_args instead")
        args = self._remote_args(kind, num_cpus, num_gpus, memory, ray_remote_args)
        name = f"{label}({udf_name(fn)})"
        strategy, task_conc = self._compute(kind, fn, compute, concurrency)
        stage = RowStage(name, UDF(fn, fn_args, fn_kwargs, ctor_args, ctor_kwargs), kind)
        return self._map(name, [stage], compute=strategy, remote_args=args,
                         concurrency=task_conc, row_preserving=(kind == "map"))

    @staticmethod
    def _compute(what, fn, compute, concurrency) -> Tuple[Optional[ActorPoolStrategy],
                                                           Optional[int]]:
        if isinstance(fn, type):
            strategy = strategy_from(compute, concurrency)
            if strategy is None:
                raise ValueError(f"{what}: a callable class runs on a pool of actors: give "
                                 "concurrency=n (or (min, max)) or "
                                 "compute=ActorPoolStrategy(...)")
            return strategy, None
        if compute is not None and compute != "tasks":
            raise ValueError(f"{what}: compute={compute!r} needs a callable class; a function "
                             "runs as tasks (limit them with concurrency=n)")
        if concurrency is not None:
            if isinstance(concurrency, bool) or not isinstance(concurrency, int) or \
                    concurrency < 1:
                raise ValueError(f"{what}: concurrency for a function must be a positive "
                                 f"integer (tasks at once), not {concurrency!r}")
        return None, concurrency

    def map_batches(self, fn, *, batch_size: Union[int, None, str] = "default",
                    compute=None, batch_format: Optional[str] = "default",
                    zero_copy_batch: bool = False, fn_args=None, fn_kwargs=None,
                    fn_constructor_args=None, fn_constructor_kwargs=None, num_cpus=None,
                    num_gpus=None, memory=None, concurrency=None, ray_remote_args_fn=None,
                    **ray_remote_args) -> "Dataset":
        """Applies fn to batches of rows (dict of numpy arrays, DataFrame or Table)."""
        _check_fn_args(fn, fn_constructor_args, fn_constructor_kwargs, "map_batches")
        if ray_remote_args_fn is not None:
            raise NotImplementedError("map_batches: ray_remote_args_fn is not supported; pass "
                                      "ray_remote_args instead")
        if batch_format not in BATCH_FORMATS and batch_format not in (None, "arrow"):
            raise ValueError(f"map_batches: batch_format must be one of {BATCH_FORMATS}, not "
                             f"{batch_format!r}")
        strict = batch_size != "default"
        if batch_size == "default":
            batch_size = DEFAULT_BATCH_SIZE
        if batch_size is not None and (isinstance(batch_size, bool) or
                                       not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"map_batches: batch_size must be a positive integer, None or "
                             f"\"default\", not {batch_size!r}")
        args = self._remote_args("map_batches", num_cpus, num_gpus, memory, ray_remote_args)
        strategy, task_conc = self._compute("map_batches", fn, compute, concurrency)
        name = f"MapBatches({udf_name(fn)})"
        stage = BatchStage(name, UDF(fn, fn_args, fn_kwargs, fn_constructor_args,
                                     fn_constructor_kwargs),
                           batch_size, batch_format, zero_copy_batch)
        return self._map(name, [stage], compute=strategy, remote_args=args,
                         concurrency=task_conc, min_rows=batch_size, strict_batch_size=strict)

    def add_column(self, col: str, fn: Callable, *, batch_format: Optional[str] = "pandas",
                   compute=None, concurrency=None, **ray_remote_args) -> "Dataset":
        """Adds (or replaces) column `col` with fn(batch) -> column values."""
        if not isinstance(col, str):
            raise TypeError(f"add_column: col must be a string, not {type(col).__name__}")
        if not callable(fn):
            raise TypeError(f"add_column: fn must be callable, not {type(fn).__name__}")
        if batch_format not in BATCH_FORMATS and batch_format not in (None, "arrow"):
            raise ValueError(f"add_column: batch_format must be one of {BATCH_FORMATS}")
        name = "MapBatches(add_column)"
        args = self._remote_args("add_column", ray_remote_args=ray_remote_args)
        return self._map(name, [add_column_stage(name, col, UDF(fn), batch_format)],
                         remote_args=args, concurrency=concurrency, row_preserving=True)

    def drop_columns(self, cols: List[str], *, compute=None, concurrency=None,
                     **ray_remote_args) -> "Dataset":
        cols = self._col_list("drop_columns", cols)
        return self._map("MapBatches(drop_columns)",
                         [BlockStage("MapBatches(drop_columns)", drop_columns(cols))],
                         remote_args=ray_remote_args, concurrency=concurrency,
                         row_preserving=True)

    def select_columns(self, cols: List[str], *, compute=None, concurrency=None,
                       **ray_remote_args) -> "Dataset":
        cols = self._col_list("select_columns", cols)
        return self._map("MapBatches(select_columns)",
                         [BlockStage("MapBatches(select_columns)", select_columns(cols))],
                         remote_args=ray_remote_args, concurrency=concurrency,
                         row_preserving=True)

    def rename_columns(self, names: Dict[str, str], *, concurrency=None,
                       **ray_remote_args) -> "Dataset":
        if isinstance(names, list):
            # Ray also accepts the full list of new names
            sch = self.schema()
            if sch is None or len(names) != len(sch.names):
                raise ValueError("rename_columns: a list of names must name every column")
            names = dict(zip(sch.names, names))
        if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in names.items()):
            raise TypeError("rename_columns: names must be a dict of old name -> new name")
        return self._map("MapBatches(rename_columns)",
                         [BlockStage("MapBatches(rename_columns)", rename_columns(names))],
                         remote_args=ray_remote_args, concurrency=concurrency,
                         row_preserving=True)

    @staticmethod
    def _col_list(what, cols) -> List[str]:
        if isinstance(cols, str):
            cols = [cols]
        if not isinstance(cols, (list, tuple)) or not all(isinstance(c, str) for c in cols):
            raise TypeError(f"{what}: cols must be a list of column names")
        if len(set(cols)) != len(cols):
            raise ValueError(f"{what}: column names repeat in {list(cols)}")
        return list(cols)

    def random_sample(self, fraction: float, *, seed: Optional[int] = None) -> "Dataset":
        """Keeps each row with probability `fraction`."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or \
                not 0 <= fraction <= 1:
            raise ValueError(f"random_sample: fraction must be between 0 and 1, not "
                             f"{fraction!r}")
        name = "MapBatches(random_sample)"
        return self._map(name, [RandomSampleStage(name, float(fraction), seed)])

    def limit(self, limit: int) -> "Dataset":
        """The first `limit` rows."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, not {limit!r}")
        return self._with(lp.Limit(self._root, limit))

    def union(self, *other: "Dataset") -> "Dataset":
        """The rows of this dataset then those of the others."""
        for o in other:
            if not isinstance(o, Dataset):
                raise TypeError(f"union: expected Datasets, got {type(o).__name__}")
        return self._with(lp.Union([self._root] + [o._root for o in other]))

    def zip(self, other: "Dataset") -> "Dataset":
        """Row i of the result has the columns of row i of both datasets
        (a column name in both gets the suffix ``_1`` on the right)."""
        if not isinstance(other, Dataset):
            raise TypeError(f"zip: expected a Dataset, got {type(other).__name__}")
        return self._with(lp.AllToAll("Zip", [self._root, other._root], _zip_bundles))

    # -------------------------------------------------------------- splits
    def split(self, n: int, *, equal: bool = False,
              locality_hints: Optional[List[Any]] = None) -> List["MaterializedDataset"]:
        """n materialized datasets; with equal=True each has the same number of rows."""
        _check_n("split", n)
        if locality_hints is not None and len(locality_hints) != n:
            raise ValueError(f"split: locality_hints has {len(locality_hints)} entries for "
                             f"n={n} splits")
        bundles = self._materialize(True)._bundles
        if equal and locality_hints is not None:
            raise NotImplementedError("split: equal=True with locality_hints is not supported; "
                                      "use one of them")
        if equal:
            total = sum(b.num_rows for b in bundles)
            per = total // n
            parts = split_at_indices(bundles, [per * (i + 1) for i in range(n)])[:n]
        else:
            parts = split_blocks(bundles, n, locality_hints)
        return [MaterializedDataset.from_bundles(p, "Split", self._context) for p in parts]

    def split_at_indices(self, indices: List[int]) -> List["MaterializedDataset"]:
        if not indices:
            raise ValueError("split_at_indices: indices must not be empty")
        if any(not isinstance(i, int) or i < 0 for i in indices):
            raise ValueError(f"split_at_indices: indices must be non-negative integers, "
                             f"not {indices}")
        if sorted(indices) != list(indices):
            raise ValueError(f"split_at_indices: indices must be sorted, not {indices}")
        bundles = self._materialize(True)._bundles
        return [MaterializedDataset.from_bundles(p, "Split", self._context)
                for p in split_at_indices(bundles, list(indices))]

    def split_proportionately(self, proportions: List[float]) -> List["MaterializedDataset"]:
        if not proportions or any(p <= 0 for p in proportions) or sum(proportions) >= 1:
            raise ValueError("split_proportionately: proportions must be positive and sum to "
                             f"less than 1, not {proportions}")
        total = self.count()
        idx, acc = [], 0.0
        for p in proportions:
            acc += p
            idx.append(int(total * acc))
        return self.split_at_indices(idx)

    def train_test_split(self, test_size: Union[int, float], *, shuffle: bool = False,
                         seed: Optional[int] = None, stratify=None
                         ) -> Tuple["MaterializedDataset", "MaterializedDataset"]:
        if stratify is not None:
            raise NotImplementedError("train_test_split: stratify is not supported")
        ds = self.random_shuffle(seed=seed) if shuffle else self
        if isinstance(test_size, float):
            if not 0 < test_size < 1:
                raise ValueError(f"train_test_split: a float test_size must be between 0 and "
                                 f"1, not {test_size}")
            total = ds.count()
            cut = total - int(total * test_size)
        elif isinstance(test_size, int) and not isinstance(test_size, bool):
            total = ds.count()
            if not 0 < test_size < total:
                raise ValueError(f"train_test_split: test_size={test_size} must be between 0 "
                                 f"and the number of rows ({total})")
            cut = total - test_size
        else:
            raise TypeError(f"train_test_split: test_size must be an int or a float, not "
                            f"{type(test_size).__name__}")
        train, test = ds.split_at_indices([cut])
        return train, test

    def streaming_split(self, n: int, *, equal: bool = False,
                        locality_hints: Optional[List[Any]] = None) -> List[DataIterator]:
        """n iterators over disjoint parts of this dataset, to be read at the
        same time (by n actors, say); the pipeline runs once for all of them."""
        _check_n("streaming_split", n)
        if locality_hints is not None and len(locality_hints) != n:
            raise ValueError(f"streaming_split: locality_hints has {len(locality_hints)} "
                             f"entries for n={n} splits")
        node = pyray.get_runtime_context().get_node_id()
        from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        coord_cls = pyray.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=True))(SplitCoordinator)
        coord = coord_cls.remote(self, n, equal, locality_hints)
        return [SplitIterator(coord, i, n) for i in range(n)]

    # ----------------------------------------------------------- consumers
    def iterator(self) -> DataIterator:
        return DatasetIterator(self)

    def iter_batches(self, *, prefetch_batches: int = 1, batch_size: Optional[int] = 256,
                     batch_format: Optional[str] = "default", drop_last: bool = False,
                     local_shuffle_buffer_size: Optional[int] = None,
                     local_shuffle_seed: Optional[int] = None,
                     _collate_fn=None) -> Iterator[Any]:
        return self.iterator().iter_batches(
            prefetch_batches=prefetch_batches, batch_size=batch_size,
            batch_format=batch_format, drop_last=drop_last,
            local_shuffle_buffer_size=local_shuffle_buffer_size,
            local_shuffle_seed=local_shuffle_seed, _collate_fn=_collate_fn)

    def iter_rows(self, *, prefetch_batches: int = 1) -> Iterator[Dict[str, Any]]:
        return self.iterator().iter_rows(prefetch_batches=prefetch_batches)

    def iter_torch_batches(self, **kwargs):
        return self.iterator().iter_torch_batches(**kwargs)

    def _tables(self, limit: Optional[int] = None) -> List[pa.Table]:
        ds = self.limit(limit) if limit is not None else self
        out = []
        for b in ds._iter_bundles():
            out.extend(pyray.get(b.block_refs, timeout=GET_TIMEOUT_S) if b.blocks else [])
        if ds is not self:
            self._stats = ds._stats
        return out

    def take(self, limit: int = 20) -> List[Dict[str, Any]]:
        """The first `limit` rows, as dicts."""
        rows = []
        for t in self._tables(limit):
            rows.extend(BlockAccessor(t).iter_rows())
        return rows[:limit]

    def take_all(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        rows = []
        for t in self._tables(None if limit is None else limit + 1):
            rows.extend(BlockAccessor(t).iter_rows())
        if limit is not None and len(rows) > limit:
            raise ValueError(f"The dataset has more than the given limit of {limit} rows.")
        return rows

    def take_batch(self, batch_size: int = 20, *, batch_format: Optional[str] = "default"):
        tables = [t for t in self._tables(batch_size) if t.num_rows or t.num_columns]
        t = concat_blocks(tables) if tables else pa.table({})
        return BlockAccessor(t.slice(0, batch_size)).to_batch_format(batch_format)

    def show(self, limit: int = 20) -> None:
        for row in self.take(limit):
            print(row)

    def count(self) -> int:
        """Rows in the dataset (from metadata: no block is fetched, and no map
        runs when the plan alone tells the count)."""
        n = lp.known_num_rows(self._root)
        if n is not None:
            return n
        return sum(b.num_rows for b in self._iter_bundles())

    def schema(self, fetch_if_missing: bool = True) -> Optional[Schema]:
        s = lp.source_schema(self._root) if isinstance(self._root, (lp.InputData, lp.Read)) \
            else None
        if s is None and fetch_if_missing:
            first = None
            for b in self.limit(1)._iter_bundles() if not isinstance(self._root, lp.InputData) \
                    else self._iter_bundles():
                for m in b.metadata:
                    if m.schema is not None:
                        first = m.schema
                        break
                if first is not None:
                    break
            s = first
        if s is None or (len(s) == 0):
            return None
        return Schema(s)

    def columns(self, fetch_if_missing: bool = True) -> Optional[List[str]]:
        s = self.schema(fetch_if_missing)
        return s.names if s is not None else None

    def num_blocks(self) -> int:
        """Blocks of the source (as Ray's, the count before transforms run)."""
        return lp.initial_num_blocks(self._root)

    def size_bytes(self) -> int:
        if isinstance(self._root, lp.InputData):
            return sum(b.size_bytes for b in self._root.bundles)
        return sum(b.size_bytes for b in self._iter_bundles())

    def input_files(self) -> List[str]:
        files: Dict[str, None] = {}
        for b in self._iter_bundles():
            for m in b.metadata:
                for f in m.input_files or ():
                    files.setdefault(f, None)
        return list(files)

    def to_pandas(self, limit: Optional[int] = None):
        pd = require_pandas("to_pandas")
        tables = self._tables(None if limit is None else limit + 1)
        total = sum(t.num_rows for t in tables)
        if limit is not None and total > limit:
            raise ValueError(f"the dataset has more than the given limit of {limit} rows; "
                             "raise limit or use iter_batches(batch_format=\"pandas\")")
        tables = [t for t in tables if t.num_rows or t.num_columns]
        if not tables:
            return pd.DataFrame()
        return BlockAccessor(concat_blocks(tables)).to_pandas()

    def to_arrow_refs(self) -> List[Any]:
        return [r for b in self.materialize()._bundles for r in b.block_refs]

    def to_pandas_refs(self) -> List[Any]:
        conv = pyray.remote(_block_to_pandas)
        return [conv.remote(r) for r in self.to_arrow_refs()]

    def to_numpy_refs(self, *, column: Optional[str] = None) -> List[Any]:
        conv = pyray.remote(_block_to_numpy)
        return [conv.remote(r, column) for r in self.to_arrow_refs()]

    def materialize(self) -> "MaterializedDataset":
        """Runs the plan and keeps its blocks in the object store."""
        return self._materialize(False)

    def _materialize(self, ordered: bool) -> "MaterializedDataset":
        if isinstance(self, MaterializedDataset):
            return self
        bundles = [b for b in self._iter_bundles(ordered)]
        out = MaterializedDataset.from_bundles(bundles, "FromBlocks", self._context)
        out._stats = self._stats
        return out

    def write_datasink(self, datasink, *, ray_remote_args: Optional[Dict] = None,
                       concurrency: Optional[int] = None) -> None:
        """Writes every block through datasink.write, in tasks (streaming)."""
        from pyray.data._internal.write import run_write
        run_write(self, datasink, ray_remote_args, concurrency)

    def stats(self) -> str:
        return self._stats.to_string()

    def _get_stats_dict(self) -> List[Dict]:
        return [op.as_dict() for op in self._stats.ops]

    def get_internal_block_refs(self) -> List[Any]:
        return self.to_arrow_refs()

    def copy(self) -> "Dataset":
        return self._with(self._root)

    def context(self) -> DataContext:
        return self._context

    # ---------------------------------------------------------------- repr
    def _source_repr(self, node) -> str:
        n = lp.known_num_rows(node)
        s = lp.source_schema(node)
        return f"Dataset(num_rows={n if n is not None else '?'}, schema={_schema_dict(s)})"

    def __repr__(self):
        lines = []

        def walk(node, depth):
            pad = "   " * (depth - 1) + "+- " if depth else ""
            if isinstance(node, (lp.InputData, lp.Read)):
                lines.append(pad + self._source_repr(node))
                return
            lines.append(pad + node.name)
            for i in node.inputs:
                walk(i, depth + 1)

        walk(self._root, 0)
        return "\n".join(lines)

    def _repr_html_(self):
        return f"<pre>{html.escape(repr(self))}</pre>"

    def __iter__(self):
        raise TypeError("`Dataset` objects are not iterable; use iter_rows() or "
                        "iter_batches()")


class MaterializedDataset(Dataset):
    """A dataset whose blocks exist in the object store."""

    @classmethod
    def from_bundles(cls, bundles: List[RefBundle], name: str = "FromBlocks",
                     context: Optional[DataContext] = None) -> "MaterializedDataset":
        shared = [RefBundle(b.blocks, owns_blocks=False) for b in bundles]
        return cls(lp.InputData(name, shared), context)

    @property
    def _bundles(self) -> List[RefBundle]:
        return self._root.bundles

    def __repr__(self):
        n = lp.known_num_rows(self._root)
        s = lp.source_schema(self._root)
        return (f"MaterializedDataset(num_blocks={self.num_blocks()}, num_rows={n}, "
                f"schema={_schema_dict(s)})")


def _check_n(what, n):
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what}: n must be a positive integer, not {n!r}")


def _block_to_pandas(t):
    return BlockAccessor(t).to_pandas()


def _block_to_numpy(t, column):
    d = BlockAccessor(t).to_numpy([column] if column else None)
    if column is not None:
        return d[column]
    return d if len(d) != 1 else next(iter(d.values()))


# ------------------------------------------------------------------------ zip
def _zip_task(left, rcount, *rights_and_bounds):
    rights = rights_and_bounds[:rcount]
    lo, hi = rights_and_bounds[rcount:]
    right = concat_blocks(list(rights)).slice(lo, hi - lo)
    out = left
    for name, col in zip(right.column_names, right.columns):
        new = name
        while new in out.column_names:
            new = new + "_1"
        out = out.append_column(new, col.combine_chunks() if col.num_chunks > 1 else col)
    return out, BlockMetadata.for_block(out)


def _zip_bundles(left: List[RefBundle], right: List[RefBundle], ctx) -> List[RefBundle]:
    lblocks = [b for x in left for b in x.blocks]
    rblocks = [b for x in right for b in x.blocks]
    ln = sum(m.num_rows for _, m in lblocks)
    rn = sum(m.num_rows for _, m in rblocks)
    if ln != rn:
        raise ValueError(f"zip: the datasets have different numbers of rows ({ln} and {rn}); "
                         "zip needs equal counts")
    task = pyray.remote(num_returns=2)(_zip_task)
    starts = list(itertools.accumulate([m.num_rows for _, m in rblocks], initial=0))
    pending = []
    off = 0
    for ref, meta in lblocks:
        lo, hi = off, off + meta.num_rows
        off = hi
        idx = [i for i in range(len(rblocks)) if starts[i] < hi and starts[i + 1] > lo]
        if not idx and meta.num_rows:
            raise ValueError("zip: internal row alignment failed")
        base = starts[idx[0]] if idx else 0
        refs = [rblocks[i][0] for i in idx]
        pending.append(task.remote(ref, len(refs), *refs, lo - base, hi - base))
    metas = pyray.get([m for _, m in pending], timeout=GET_TIMEOUT_S)
    return [RefBundle(((b, m),)) for (b, _), m in zip(pending, metas)]
