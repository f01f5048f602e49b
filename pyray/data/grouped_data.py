"""``Dataset.groupby(key)``: aggregations per group and ``map_groups``.

Results are sorted by the key columns (nulls last), as in Ray.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import pyarrow as pa

from pyray.data.aggregate import (AggregateFn, Count, Max, Mean, Min, Std, Sum, check_aggs,
                                  group_segments, sort_table)
from pyray.data.block import BlockAccessor, batch_to_block, concat_blocks
from pyray.data._internal.all_to_all import (columns_spec, groupby_exchange,
                                             normalize_sort_key, sort_exchange)


def _keys_of(key) -> List[str]:
    if key is None:
        return []
    keys, _ = normalize_sort_key(key, False)
    return keys


def apply_to_groups(table: pa.Table, fn, keys: Sequence[str], batch_format: str,
                    fn_args: Sequence, fn_kwargs: Dict[str, Any]) -> pa.Table:
    """Calls ``fn`` on each group of a block (ordered by key first, so a
    batch holding several whole groups in any order works); the outputs
    concatenated."""
    table = sort_table(table, keys)
    outs = []
    for start, length in group_segments(table, keys):
        batch = BlockAccessor(table.slice(start, length)).to_batch_format(batch_format)
        outs.append(batch_to_block(fn(batch, *fn_args, **fn_kwargs), where="map_groups"))
    return concat_blocks(outs) if outs else table.schema.empty_table()


class _GroupFn:
    """map_batches callable for a plain function: applies it per group."""

    def __init__(self, fn, keys, batch_format, fn_args, fn_kwargs):
        self._args = (fn, keys, batch_format, fn_args, fn_kwargs)
        self.__name__ = getattr(fn, "__name__", None) or type(fn).__name__   # operator name

    def __call__(self, table):
        return apply_to_groups(table, *self._args)


class _GroupActor:
    """map_batches callable class for a callable-class ``fn`` (actor pool)."""

    def __init__(self, cls, keys, batch_format, fn_args, fn_kwargs, ctor_args, ctor_kwargs):
        self._args = (cls(*ctor_args, **ctor_kwargs), keys, batch_format, fn_args, fn_kwargs)

    def __call__(self, table):
        return apply_to_groups(table, *self._args)


class GroupedData:
    """Rows of a Dataset grouped by key column(s); from ``Dataset.groupby``."""

    def __init__(self, dataset, key: Union[str, List[str], None],
                 num_partitions: Optional[int] = None):
        if num_partitions is not None and (not isinstance(num_partitions, int)
                                           or isinstance(num_partitions, bool)
                                           or num_partitions < 1):
            raise ValueError(f"groupby: num_partitions must be a positive int, "
                             f"got {num_partitions!r}")
        self._dataset = dataset
        self._key = key
        self._keys = _keys_of(key)
        self._num_partitions = num_partitions

    def __repr__(self):
        return f"GroupedData(dataset={self._dataset}, key={self._key!r})"

    def _aggregate(self, spec, what):
        return self._dataset._all_to_all(
            "Aggregate", groupby_exchange(self._keys, spec, self._num_partitions, what))

    def aggregate(self, *aggs: AggregateFn):
        """One row per group: the keys, then one column per aggregation."""
        return self._aggregate(check_aggs(aggs, "groupby.aggregate"), "groupby.aggregate")

    def _on(self, cls, on, what, **kwargs):
        return self._aggregate(columns_spec(cls, on, what, skip=self._keys, **kwargs), what)

    def count(self):
        """Rows per group, in column ``count()``."""
        return self._aggregate([Count()], "groupby.count")

    def sum(self, on: Union[str, List[str], None] = None, ignore_nulls: bool = True):
        return self._on(Sum, on, "groupby.sum", ignore_nulls=ignore_nulls)

    def min(self, on: Union[str, List[str], None] = None, ignore_nulls: bool = True):
        return self._on(Min, on, "groupby.min", ignore_nulls=ignore_nulls)

    def max(self, on: Union[str, List[str], None] = None, ignore_nulls: bool = True):
        return self._on(Max, on, "groupby.max", ignore_nulls=ignore_nulls)

    def mean(self, on: Union[str, List[str], None] = None, ignore_nulls: bool = True):
        return self._on(Mean, on, "groupby.mean", ignore_nulls=ignore_nulls)

    def std(self, on: Union[str, List[str], None] = None, ddof: int = 1,
            ignore_nulls: bool = True):
        return self._on(Std, on, "groupby.std", ddof=ddof, ignore_nulls=ignore_nulls)

    def map_groups(self, fn: Callable, *, compute=None, batch_format: Optional[str] = "default",
                   fn_args: Optional[Sequence] = None, fn_kwargs: Optional[Dict] = None,
                   fn_constructor_args: Optional[Sequence] = None,
                   fn_constructor_kwargs: Optional[Dict] = None,
                   num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
                   concurrency=None, **ray_remote_args):
        """Calls ``fn`` once per group with the group's rows as one batch
        (``batch_format`` as in map_batches); a callable class runs on an actor
        pool (``concurrency`` / ``compute``)."""
        if not callable(fn):
            raise TypeError(f"map_groups: fn must be callable, not {type(fn).__name__}")
        if batch_format not in (None, "default", "numpy", "pandas", "pyarrow"):
            raise ValueError(f"map_groups: batch_format must be one of 'default', 'numpy', "
                             f"'pandas', 'pyarrow', not {batch_format!r}")
        fn_args, fn_kwargs = tuple(fn_args or ()), dict(fn_kwargs or {})
        if self._keys:
            grouped = self._dataset._all_to_all(
                "MapGroups(sort)", sort_exchange(self._keys, [False] * len(self._keys),
                                                 what="map_groups"))
        else:
            grouped = self._dataset.repartition(1)
        opts = dict(ray_remote_args)
        for name, value in (("compute", compute), ("num_cpus", num_cpus),
                            ("num_gpus", num_gpus), ("concurrency", concurrency)):
            if value is not None:
                opts[name] = value
        if isinstance(fn, type):
            # named after the user's class, so the operator reads MapBatches(<class>)
            actor_cls = type(fn.__name__, (_GroupActor,), {"__qualname__": fn.__name__})
            return grouped.map_batches(
                actor_cls, batch_size=None, batch_format="pyarrow",
                fn_constructor_args=(fn, self._keys, batch_format, fn_args, fn_kwargs,
                                     tuple(fn_constructor_args or ()),
                                     dict(fn_constructor_kwargs or {})), **opts)
        if fn_constructor_args is not None or fn_constructor_kwargs is not None:
            raise ValueError("map_groups: fn_constructor_args/fn_constructor_kwargs are only "
                             "for a callable class fn")
        return grouped.map_batches(
            _GroupFn(fn, self._keys, batch_format, fn_args, fn_kwargs),
            batch_size=None, batch_format="pyarrow", **opts)
