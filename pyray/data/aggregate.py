"""Aggregations for ``Dataset.aggregate`` and ``Dataset.groupby(...).aggregate``.

``AggregateFn`` is Ray's accumulator-style interface (``init``, ``merge``,
``accumulate_row`` or ``accumulate_block``, ``finalize``, ``name``).  The
built-ins (``Count``, ``Sum``, ``Min``, ``Max``, ``Mean``, ``Std``, ``AbsMax``,
``Quantile``, ``Unique``) are computed a whole block at a time with Arrow's
hash aggregation: each block becomes a small *partial* table (one row per
group, a few state columns per aggregation), partials are merged with Arrow
again, and only the last step turns states into results.  Mean keeps
(sum, count); Std keeps (count, mean, M2) and merges them with the parallel
form of Welford's update, so it stays accurate for large or shifted values.

Null handling follows Ray: with ``ignore_nulls=True`` (the default) nulls
are skipped and a group without any value gives None; with
``ignore_nulls=False`` any null makes the result None.
"""
from __future__ import annotations

import math
import pickle
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyray.data.block import BlockAccessor, concat_blocks

__all__ = ["AggregateFn", "AggregateFnV2", "Count", "Sum", "Min", "Max", "Mean", "Std", "AbsMax",
           "Quantile", "Unique"]

_COUNT_ALL = "__count_all"


def _skip():
    return pc.ScalarAggregateOptions(skip_nulls=True, min_count=1)


def _count(mode):
    return pc.CountOptions(mode=mode)


class AggregateFn:
    """A custom aggregation, defined accumulator-style as in Ray.

    ``init(key)`` makes the empty accumulator of a group, ``accumulate_row(acc,
    row)`` (or ``accumulate_block(acc, block)`` for a whole ``pyarrow.Table``;
    give exactly one) folds data in, ``merge(a, b)`` combines two accumulators
    and ``finalize(acc)`` gives the result stored under ``name``.
    """

    _vectorized = False

    def __init__(self, init: Callable[[Any], Any], merge: Callable[[Any, Any], Any],
                 name: str, accumulate_row: Optional[Callable[[Any, Any], Any]] = None,
                 accumulate_block: Optional[Callable[[Any, Any], Any]] = None,
                 finalize: Optional[Callable[[Any], Any]] = None):
        if (accumulate_row is None) == (accumulate_block is None):
            raise ValueError("Exactly one of accumulate_row or accumulate_block must be provided.")
        if not isinstance(name, str):
            raise TypeError("`name` must be provided.")
        if accumulate_block is None:
            row_fn = accumulate_row

            def accumulate_block(acc, block):
                for row in BlockAccessor.for_block(block).iter_rows():
                    acc = row_fn(acc, row)
                return acc
        self.name = name
        self.init = init
        self.merge = merge
        self.accumulate_block = accumulate_block
        self.finalize = finalize if finalize is not None else (lambda a: a)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"

    # -- what the shuffle kernels use -------------------------------------
    def _columns(self) -> List[str]:
        """Columns this aggregation reads (checked against the schema)."""
        return []

    def _state_tags(self) -> List[str]:
        return ["acc"]

    def _custom_partial(self, table: pa.Table, starts, lengths, keys) -> Dict[str, pa.Array]:
        states = []
        key_cols = [table.column(k) for k in keys]
        for s, n in zip(starts, lengths):
            if key_cols:
                vals = tuple(c[int(s)].as_py() for c in key_cols)
                key = vals[0] if len(vals) == 1 else vals
            else:
                key = None
            acc = self.accumulate_block(self.init(key), table.slice(int(s), int(n)))
            states.append(_dump_state(self, acc))
        return {"acc": pa.array(states, type=pa.binary())}

    def _custom_merge(self, col: pa.ChunkedArray, starts, lengths) -> Dict[str, pa.Array]:
        out = []
        for s, n in zip(starts, lengths):
            acc = None
            for i, raw in enumerate(col.slice(int(s), int(n)).to_pylist()):
                st = pickle.loads(raw)
                acc = st if i == 0 else self.merge(acc, st)
            out.append(_dump_state(self, acc))
        return {"acc": pa.array(out, type=pa.binary())}

    def _custom_finalize(self, state: Dict[str, pa.Array]):
        values = [self.finalize(pickle.loads(raw)) for raw in state["acc"].to_pylist()]
        return _to_arrow_values(self.name, values)


def _is_null(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


class AggregateFnV2(AggregateFn):
    """Ray's newer base for custom aggregations: subclass it and define
    ``aggregate_block(block) -> partial``, ``combine(a, b)`` and optionally
    ``_finalize(acc)``.  Null partials (None/NaN) are skipped with
    ``ignore_nulls=True`` and make the result None otherwise, as in Ray."""

    def __init__(self, name: str, zero_factory: Callable[[], Any], *, on: Optional[str],
                 ignore_nulls: bool):
        if not name:
            raise ValueError(f"Non-empty string has to be provided as name (got {name})")
        self._target_col_name = on
        self._ignore_nulls = ignore_nulls

        def init(_key):
            return None if ignore_nulls else zero_factory()

        def merge(cur, new):
            if ignore_nulls:
                return new if _is_null(cur) else cur if _is_null(new) else self.combine(cur, new)
            return None if _is_null(cur) or _is_null(new) else self.combine(cur, new)

        super().__init__(init=init, merge=merge, name=name,
                         accumulate_block=lambda acc, block: merge(acc, self.aggregate_block(block)),
                         finalize=lambda acc: acc if _is_null(acc) else self._finalize(acc))

    def get_target_column(self) -> Optional[str]:
        return self._target_col_name

    def _columns(self):
        return [self._target_col_name] if self._target_col_name else []

    def combine(self, current_accumulator, new):
        raise NotImplementedError(f"{type(self).__name__} must define combine()")

    def aggregate_block(self, block):
        raise NotImplementedError(f"{type(self).__name__} must define aggregate_block()")

    def _finalize(self, accumulator):
        return accumulator


def _dump_state(agg, acc) -> bytes:
    try:
        return pickle.dumps(acc, protocol=5)
    except Exception as e:  # noqa: BLE001 - any pickling failure is reported the same way
        raise TypeError(f"aggregation {agg.name!r}: its accumulator ({type(acc).__name__}) "
                        f"cannot be pickled to move between tasks: {e}") from None


def _to_arrow_values(name, values):
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise TypeError(f"aggregation {name!r} returned values Arrow cannot store "
                        f"({type(values[0]).__name__ if values else '?'}): {e}") from None


class _Builtin(AggregateFn):
    """A built-in aggregation on one column, computed with Arrow kernels.

    A state is a few Arrow columns (tags); ``_raw_specs`` say how to get them
    from rows, ``_merge_specs`` how to merge them, ``_finalize_state`` how to
    turn them into the result column.
    """

    _vectorized = True
    _kind = ""

    def __init__(self, on: Optional[str], ignore_nulls: bool, alias_name: Optional[str],
                 need_on: bool = True):
        if need_on and (on is None or not isinstance(on, str)):
            raise ValueError(f"{type(self).__name__}: the column to aggregate on has to be "
                             f"given as a string (got {on!r})")
        if on is not None and not isinstance(on, str):
            raise ValueError(f"{type(self).__name__}: `on` must be a column name, not {on!r}")
        self._on = on
        self._ignore_nulls = bool(ignore_nulls)
        self.name = alias_name if alias_name else self._default_name()
        # the accumulator-style view of a built-in: the state is a one-row
        # partial table, so user code calling init/merge/finalize still works
        self.init = lambda key: None
        self.accumulate_block = self._acc_block
        self.merge = self._merge_two
        self.finalize = self._finalize_one

    def _default_name(self):
        return f"{self._kind}({self._on})"

    def get_target_column(self) -> Optional[str]:
        return self._on

    def _columns(self):
        return [self._on] if self._on is not None else []

    # accumulator-style API over one-row partial tables
    def _acc_block(self, acc, block):
        part = partial_aggregate(BlockAccessor.for_block(block).to_arrow(), [], [self])
        return part if acc is None else self._merge_two(acc, part)

    def _merge_two(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        return merge_partials([a, b], [], [self], finalize=False)

    def _finalize_one(self, acc):
        if acc is None:
            return None
        return merge_partials([acc], [], [self], finalize=True).column(0)[0].as_py()

    # to be provided by each built-in
    def _raw_specs(self):
        """[(tag, column or None, arrow function, options)] on the rows."""
        raise NotImplementedError

    def _raw_to_state(self, cols: Dict[str, Any]) -> Dict[str, Any]:
        return cols

    def _merge_specs(self):
        """[(tag, arrow function, options)] merging state columns; the
        tags not listed are merged by ``_merge_extra``."""
        raise NotImplementedError

    def _merge_extra(self, table, merged, starts, lengths, prefix):
        return {}

    def _finalize_state(self, st: Dict[str, Any]) -> pa.Array:
        raise NotImplementedError

    # helpers
    def _null_mask(self, st, value_valid):
        """True where the result is null: no value, or nulls not ignored."""
        mask = ~value_valid
        if not self._ignore_nulls:
            mask |= _np(st["z"]) > 0
        return mask


def _np(arr, fill=0):
    """A column as numpy, nulls replaced by ``fill``."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if arr.null_count:
        arr = pc.fill_null(arr, fill)
    return arr.to_numpy(zero_copy_only=False)


def _valid(arr):
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return _np(pc.is_valid(arr)).astype(bool)


def _with_nulls(values: pa.Array, mask: np.ndarray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not mask.any():
        return values
    return pc.if_else(pa.array(mask), pa.nulls(len(values), values.type), values)


class Count(_Builtin):
    """Counts rows (``on=None``) or the values of a column (nulls counted
    unless ``ignore_nulls=True``); result column ``count()`` / ``count(col)``."""

    _kind = "count"

    def __init__(self, on: Optional[str] = None, ignore_nulls: bool = False,
                 alias_name: Optional[str] = None):
        super().__init__(on, ignore_nulls, alias_name, need_on=False)

    def _default_name(self):
        return f"count({self._on or ''})"

    def _raw_specs(self):
        if self._on is None:
            return [("n", None, "count_all", None)]
        return [("n", self._on, "count", _count("only_valid" if self._ignore_nulls else "all"))]

    def _merge_specs(self):
        return [("n", "sum", None)]

    def _finalize_state(self, st):
        return pc.fill_null(st["n"], 0)


class _SumLike(_Builtin):
    _func = "sum"

    def __init__(self, on: Optional[str] = None, ignore_nulls: bool = True,
                 alias_name: Optional[str] = None):
        super().__init__(on, ignore_nulls, alias_name)

    def _raw_specs(self):
        return [("v", self._on, self._func, _skip()), ("z", self._on, "count", _count("only_null"))]

    def _merge_specs(self):
        return [("v", self._func, _skip()), ("z", "sum", None)]

    def _finalize_state(self, st):
        return _with_nulls(st["v"], self._null_mask(st, _valid(st["v"])))


class Sum(_SumLike):
    """Sum of a column; result column ``sum(col)``."""
    _kind = "sum"
    _func = "sum"


class Min(_SumLike):
    """Minimum of a column; result column ``min(col)``."""
    _kind = "min"
    _func = "min"


class Max(_SumLike):
    """Maximum of a column; result column ``max(col)``."""
    _kind = "max"
    _func = "max"


class Mean(_Builtin):
    """Mean of a column (from a merged sum and count); ``mean(col)``."""

    _kind = "mean"

    def __init__(self, on: Optional[str] = None, ignore_nulls: bool = True,
                 alias_name: Optional[str] = None):
        super().__init__(on, ignore_nulls, alias_name)

    def _raw_specs(self):
        return [("s", self._on, "sum", _skip()), ("n", self._on, "count", _count("only_valid")),
                ("z", self._on, "count", _count("only_null"))]

    def _raw_to_state(self, cols):
        cols["s"] = pc.cast(cols["s"], pa.float64())
        return cols

    def _merge_specs(self):
        return [("s", "sum", _skip()), ("n", "sum", None), ("z", "sum", None)]

    def _finalize_state(self, st):
        n = _np(st["n"])
        s = _np(st["s"], 0.0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / np.where(n > 0, n, 1)
        return _with_nulls(pa.array(mean, pa.float64()), self._null_mask(st, n > 0))


class Std(_Builtin):
    """Standard deviation with ``ddof`` (default 1, as Ray); ``std(col)``.

    Blocks keep (count, mean, M2); merging uses the parallel update
    M2 = M2_a + M2_b + delta^2 * n_a * n_b / n, applied to all partial states
    of a group at once.  A group with ``count - ddof <= 0`` gives NaN.
    """

    _kind = "std"

    def __init__(self, on: Optional[str] = None, ddof: int = 1, ignore_nulls: bool = True,
                 alias_name: Optional[str] = None):
        super().__init__(on, ignore_nulls, alias_name)
        self._ddof = ddof

    def _raw_specs(self):
        return [("n", self._on, "count", _count("only_valid")),
                ("mu", self._on, "mean", _skip()),
                ("m2", self._on, "variance", pc.VarianceOptions(ddof=0, min_count=1)),
                ("z", self._on, "count", _count("only_null"))]

    def _raw_to_state(self, cols):
        n = _np(cols["n"]).astype(np.float64)
        cols["mu"] = pa.array(_np(cols["mu"], 0.0).astype(np.float64))
        cols["m2"] = pa.array(_np(cols["m2"], 0.0).astype(np.float64) * n)
        return cols

    def _merge_specs(self):
        return [("n", "sum", None), ("z", "sum", None)]

    def _merge_extra(self, table, merged, starts, lengths, prefix):
        n_i = _np(table.column(prefix + "n")).astype(np.float64)
        mu_i = _np(table.column(prefix + "mu"), 0.0)
        m2_i = _np(table.column(prefix + "m2"), 0.0)
        if len(starts) == 0:
            return {"mu": pa.array([], pa.float64()), "m2": pa.array([], pa.float64())}
        n = np.add.reduceat(n_i, starts)
        # the group mean as (first partial's mean) + weighted mean of the
        # offsets from it: no large sums of large values
        ref = np.repeat(mu_i[starts], lengths)
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = np.add.reduceat(n_i * (mu_i - ref), starts) / np.where(n > 0, n, 1)
        mu = mu_i[starts] + shift
        dev = (mu_i - ref) - np.repeat(shift, lengths)
        m2 = np.add.reduceat(m2_i, starts) + np.add.reduceat(n_i * dev * dev, starts)
        return {"mu": pa.array(mu), "m2": pa.array(m2)}

    def _finalize_state(self, st):
        n = _np(st["n"]).astype(np.float64)
        m2 = _np(st["m2"], 0.0)
        denom = n - self._ddof
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.where(denom > 0, np.sqrt(np.maximum(m2, 0.0) / np.where(denom > 0, denom, 1)),
                           np.nan)
        return _with_nulls(pa.array(std, pa.float64()), self._null_mask(st, n > 0))


class AbsMax(_Builtin):
    """Largest absolute value of a column; ``abs_max(col)``."""

    _kind = "abs_max"

    def __init__(self, on: Optional[str] = None, ignore_nulls: bool = True,
                 alias_name: Optional[str] = None):
        super().__init__(on, ignore_nulls, alias_name)

    def _raw_specs(self):
        return [("lo", self._on, "min", _skip()), ("hi", self._on, "max", _skip()),
                ("z", self._on, "count", _count("only_null"))]

    def _merge_specs(self):
        return [("lo", "min", _skip()), ("hi", "max", _skip()), ("z", "sum", None)]

    def _finalize_state(self, st):
        lo, hi = st["lo"], st["hi"]
        if isinstance(lo, pa.ChunkedArray):
            lo, hi = lo.combine_chunks(), hi.combine_chunks()
        out = pc.max_element_wise(pc.abs(lo), pc.abs(hi))
        return _with_nulls(out, self._null_mask(st, _valid(hi)))


class _ListState(_Builtin):
    """States that are the group's values as a list (Quantile, Unique)."""

    _list_func = "list"

    def _raw_specs(self):
        return [("l", self._on, self._list_func, self._list_options())]

    def _list_options(self):
        return None

    def _merge_specs(self):
        return []

    def _merge_extra(self, table, merged, starts, lengths, prefix):
        col = table.column(prefix + "l")
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        per_row = _np(pc.list_value_length(col))
        if len(starts) == 0:
            return {"l": pa.array([], col.type)}
        per_group = np.add.reduceat(per_row, starts)
        offsets = np.concatenate([[0], np.cumsum(per_group)]).astype(np.int32)
        return {"l": pa.ListArray.from_arrays(pa.array(offsets), pc.list_flatten(col))}

    def _group_values(self, st):
        col = st["l"]
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        offsets = _np(col.offsets)
        flat = col.values
        for j in range(len(col)):
            yield flat.slice(int(offsets[j]), int(offsets[j + 1] - offsets[j]))


class Quantile(_ListState):
    """The ``q`` quantile (linear interpolation, as Ray); ``quantile(col)``."""

    _kind = "quantile"

    def __init__(self, on: Optional[str] = None, q: float = 0.5, ignore_nulls: bool = True,
                 alias_name: Optional[str] = None):
        if not 0 <= q <= 1:
            raise ValueError(f"Quantile: q must be between 0 and 1, got {q!r}")
        super().__init__(on, ignore_nulls, alias_name)
        self._q = q

    def _finalize_state(self, st):
        out = []
        for vals in self._group_values(st):
            if vals.null_count and not self._ignore_nulls:
                out.append(None)
                continue
            vals = vals.drop_null() if vals.null_count else vals
            if len(vals) == 0:
                out.append(None)
                continue
            ordered = pc.take(vals, pc.sort_indices(vals)).to_pylist()
            k = (len(ordered) - 1) * self._q
            f, c = math.floor(k), math.ceil(k)
            if f == c:
                out.append(ordered[int(k)])
            else:
                out.append(round(ordered[f] * (c - k) + ordered[c] * (k - f), 5))
        return _to_arrow_values(self.name, out)


class Unique(_ListState):
    """The distinct values of a column, as a sorted list; ``unique(col)``."""

    _kind = "unique"
    _list_func = "distinct"

    def __init__(self, on: Optional[str] = None, ignore_nulls: bool = True,
                 alias_name: Optional[str] = None):
        super().__init__(on, ignore_nulls, alias_name)

    def _list_options(self):
        return _count("only_valid" if self._ignore_nulls else "all")

    def _finalize_state(self, st):
        out = []
        for vals in self._group_values(st):
            u = pc.unique(vals)
            try:
                u = pc.take(u, pc.sort_indices(u))
            except pa.ArrowNotImplementedError:
                pass                    # values Arrow cannot order keep first-seen order
            out.append(u.to_pylist())
        return pa.array(out)


# ---------------------------------------------------------------------------
# block-level kernels: rows -> partial states -> merged states -> results
# ---------------------------------------------------------------------------
def sort_keys_of(keys: Sequence[str], descending=None):
    desc = descending or [False] * len(keys)
    return [(k, "descending" if d else "ascending") for k, d in zip(keys, desc)]


def sort_table(table: pa.Table, keys: Sequence[str], descending=None) -> pa.Table:
    """The table ordered by keys (nulls last), stable."""
    if not keys or table.num_rows <= 1:
        return table
    idx = pc.sort_indices(table, sort_keys=sort_keys_of(keys, descending))
    if any(c.num_chunks > 1 for c in table.columns):
        table = table.combine_chunks()          # take over many chunks is several times slower
    return table.take(idx)


def _group_by(table, keys, specs):
    """Arrow hash aggregation in first-seen group order; returns (key columns
    table, [one column per spec])."""
    aggs = [([] if col is None else col, func, opts) if opts is not None
            else ([] if col is None else col, func) for col, func, opts in specs]
    if not keys:
        # one group: a constant key keeps the hash kernels (list, distinct)
        # usable and gives no row at all for an empty table
        table = table.append_column("__all", pa.array(np.zeros(table.num_rows, np.int8)))
        res = table.group_by(["__all"], use_threads=False).aggregate(aggs)
        res = res.drop_columns(["__all"])
        return res.select([]), res.columns
    res = table.group_by(list(keys), use_threads=False).aggregate(aggs)
    names = res.column_names
    if names[:len(keys)] == list(keys):
        key_part, vals = res.select(list(keys)), res.columns[len(keys):]
    else:
        key_part, vals = res.select(list(keys)), res.columns[:len(specs)]
    return key_part, vals


def _segments(lengths):
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) \
        if len(lengths) else np.zeros(0, np.int64)
    return starts, lengths


def partial_aggregate(table: pa.Table, keys: Sequence[str], aggs: Sequence[AggregateFn]) -> pa.Table:
    """One row per group of ``table``: the key columns, then each
    aggregation's state columns (named ``"<i>:<tag>"``), sorted by keys."""
    keys = list(keys)
    custom = [a for a in aggs if not a._vectorized]
    if custom:
        table = sort_table(table, keys)
    specs, where = [(None, "count_all", None)], {}
    slots = []
    for agg in aggs:
        if not agg._vectorized:
            slots.append(None)
            continue
        mine = {}
        for tag, col, func, opts in agg._raw_specs():
            sig = (col, func, _opts_sig(opts))
            if sig not in where:
                where[sig] = len(specs)
                specs.append((col, func, opts))
            mine[tag] = where[sig]
        slots.append(mine)
    try:
        key_part, vals = _group_by(table, keys, specs)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        _explain_type_error(table, keys, aggs)
        raise
    cols = {k: key_part.column(k) for k in keys}
    starts, lengths = _segments(_np(vals[0]))
    for i, (agg, mine) in enumerate(zip(aggs, slots)):
        if mine is None:
            st = agg._custom_partial(table, starts, lengths, keys)
        else:
            st = agg._raw_to_state({tag: vals[pos] for tag, pos in mine.items()})
        for tag in agg._state_tags() if mine is None else _tags(agg):
            cols[f"{i}:{tag}"] = st[tag]
    out = pa.table(cols) if cols else pa.table({})
    if not custom:
        out = sort_table(out, keys)
    return out


def _explain_type_error(table, keys, aggs):
    """Names the aggregation whose column type Arrow cannot aggregate."""
    empty = table.slice(0, 0)
    for agg in aggs:
        if not agg._vectorized:
            continue
        try:
            _group_by(empty, keys, [(c, f, o) for _t, c, f, o in agg._raw_specs()])
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
            col = agg.get_target_column()
            raise TypeError(f"aggregation {agg.name!r}: column {col!r} has type "
                            f"{table.schema.field(col).type}, which {type(agg).__name__} "
                            "cannot aggregate") from None


def _tags(agg):
    return [tag for tag, _c, _f, _o in agg._raw_specs()]


def _opts_sig(opts):
    return None if opts is None else (type(opts).__name__, repr(opts))


def merge_partials(partials: Sequence[pa.Table], keys: Sequence[str],
                   aggs: Sequence[AggregateFn], finalize: bool) -> pa.Table:
    """Merge partial tables (from ``partial_aggregate`` or earlier merges):
    one row per group, sorted by keys; with ``finalize`` the columns are the
    keys then one result column per aggregation, named by ``agg.name``."""
    keys = list(keys)
    table = concat_blocks([p for p in partials if p.num_rows]) if partials else None
    if table is None or table.num_columns == 0:
        table = partials[0] if partials else pa.table({})
    table = sort_table(table, keys)
    specs = [(None, "count_all", None)]
    slots = []
    for i, agg in enumerate(aggs):
        if not agg._vectorized:
            slots.append(None)
            continue
        mine = {}
        for tag, func, opts in agg._merge_specs():
            mine[tag] = len(specs)
            specs.append((f"{i}:{tag}", func, opts))
        slots.append(mine)
    key_part, vals = _group_by(table, keys, specs)
    starts, lengths = _segments(_np(vals[0]))
    cols = {k: key_part.column(k) for k in keys}
    for i, (agg, mine) in enumerate(zip(aggs, slots)):
        if mine is None:
            st = agg._custom_merge(table.column(f"{i}:acc"), starts, lengths)
            cols_i = agg._custom_finalize(st) if finalize else st["acc"]
            tags = ["acc"]
        else:
            st = {tag: vals[pos] for tag, pos in mine.items()}
            st.update(agg._merge_extra(table, st, starts, lengths, f"{i}:"))
            cols_i = agg._finalize_state(st) if finalize else None
            tags = _tags(agg)
        if finalize:
            cols[agg.name] = cols_i
        else:
            for tag in tags:
                cols[f"{i}:{tag}"] = st[tag]
    if not cols:
        return pa.table({})
    return pa.table(cols)


def check_aggs(aggs, what: str) -> List[AggregateFn]:
    """The aggregations of one call, checked: AggregateFn instances with
    distinct names."""
    aggs = list(aggs)
    if not aggs:
        raise ValueError(f"{what}: at least one aggregation is required")
    seen = set()
    for a in aggs:
        if not isinstance(a, AggregateFn):
            raise TypeError(f"{what}: expected AggregateFn objects (e.g. pyray.data.aggregate.Sum"
                            f"(\"col\")), got {type(a).__name__}: {a!r}")
        if a.name in seen:
            raise ValueError(f"{what}: two aggregations are named {a.name!r}; "
                             "give one an alias_name")
        seen.add(a.name)
    return aggs


def group_segments(table: pa.Table, keys: Sequence[str]):
    """(start, length) of each group of a table sorted by ``keys``."""
    if table.num_rows == 0:
        return []
    if not keys:
        return [(0, table.num_rows)]
    _, vals = _group_by(table, list(keys), [(None, "count_all", None)])
    starts, lengths = _segments(_np(vals[0]))
    return [(int(s), int(n)) for s, n in zip(starts, lengths)]
