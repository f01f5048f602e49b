"""Operations that need every block at once: sort, shuffle, repartition,
group-by and global aggregations.

Each Dataset method builds a barrier operator with ``self._all_to_all(name,
fn)``; at execution ``fn(bundles, ctx)`` runs in the driver, submits pyray
tasks and returns the output bundles.  The exchanges are the classic two
stages: *map* tasks cut every input block into one piece per output
partition (each piece its own object, ``num_returns=k``), *reduce* tasks
merge the pieces of one partition into an output block.  Sort and group-by
partition by key ranges (boundaries from a sample of the keys, so partition j
holds keys before partition j+1 and the output is globally ordered); group-by
first reduces every block to one row per group (Arrow hash aggregation), so
only partial states cross the network.  Random shuffle and repartition cut
blocks by position.  Global aggregations (``Dataset.aggregate``, ``sum``,
...) run one task per block and merge the partial states in the driver.

Every wait has a deadline (``STAGE_TIMEOUT_S``); a failed task raises its
error in the driver.
"""
from __future__ import annotations

import math
import numbers
import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import pyray
from pyray.exceptions import GetTimeoutError
from pyray.data._internal.ref_bundle import BlockMetadata, RefBundle
from pyray.data.aggregate import (AggregateFn, Std, Max, Mean, Min, Sum, Unique, check_aggs,
                                  merge_partials, partial_aggregate, sort_keys_of, sort_table)
from pyray.data.block import concat_blocks

STAGE_TIMEOUT_S = 3600.0        # one exchange stage may run this long before failing
SAMPLES_PER_PARTITION = 20      # key samples per output partition (sort boundaries)
PARTIAL_SAMPLE_ROWS = 64        # keys each group-by partial reports for boundaries

Block = pa.Table
BlockRef = Tuple[Any, BlockMetadata]


# ---------------------------------------------------------------------------
# the tasks (plain functions; made remote on first use)
# ---------------------------------------------------------------------------
def _out(table: Block):
    return table, BlockMetadata.for_block(table)


def _rows(table: Block, idx) -> Block:
    """The rows at ``idx`` in new, tightly sized buffers.  Pieces that leave a
    task are always built this way: a zero-copy slice would be serialized
    with the whole buffer it points into."""
    if len(idx) == 0:
        return table.schema.empty_table()
    return table.take(pa.array(idx, pa.int64()))


def _pieces(parts: List[Block]):
    return parts[0] if len(parts) == 1 else tuple(parts)


def _sample_keys(block: Block, keys, n: int, seed: int) -> Block:
    keys_t = block.select(keys)
    if keys_t.num_rows <= n:
        return keys_t
    idx = np.sort(np.random.default_rng(seed).choice(keys_t.num_rows, n, replace=False))
    return keys_t.take(pa.array(idx))


def sort_and_split(block: Block, keys, descending, bounds: Optional[Block]) -> List[Block]:
    """``block`` sorted by keys and cut at ``bounds`` (rows of key values in
    sort order): piece j holds the rows ordered before bound j and not before
    bound j-1; a row equal to a bound goes after it."""
    if bounds is None or bounds.num_rows == 0:
        return [_rows(block, pc.sort_indices(block, sort_keys=sort_keys_of(keys, descending))
                      .to_numpy())]
    n = block.num_rows
    key_t = block.select(keys)
    try:
        b = bounds.select(keys).cast(key_t.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise TypeError(f"sort boundaries {bounds.to_pylist()[:3]}... do not match the key "
                        f"columns {key_t.schema}: {e}") from None
    both = pa.concat_tables([
        key_t.append_column("__src", pa.array(np.ones(n, np.int8))),
        b.append_column("__src", pa.array(np.zeros(b.num_rows, np.int8)))])
    idx = pc.sort_indices(both, sort_keys=sort_keys_of(keys, descending) +
                          [("__src", "ascending")]).to_numpy()
    is_bound = idx >= n
    order = idx[~is_bound]
    pos = np.nonzero(is_bound)[0]
    edges = np.concatenate([[0], pos - np.arange(len(pos)), [n]]).astype(np.int64)
    return [_rows(block, order[edges[j]:edges[j + 1]]) for j in range(len(edges) - 1)]


def _sort_map(block: Block, keys, descending, bounds):
    return _pieces(sort_and_split(block, keys, descending, bounds))


def _sort_reduce(keys, descending, *parts: Block):
    return _out(sort_table(concat_blocks(list(parts)) if parts else pa.table({}), keys, descending))


def _shuffle_map(block: Block, k: int, seed, index: int, randomize: bool):
    n = block.num_rows
    order = (np.random.default_rng([seed, 0, index]).permutation(n) if randomize
             else np.arange(n))
    edges = [(n * j) // k for j in range(k + 1)]
    return _pieces([_rows(block, order[edges[j]:edges[j + 1]]) for j in range(k)])


def _shuffle_reduce(seed, index: int, randomize: bool, *parts: Block):
    table = concat_blocks([p for p in parts if p.num_rows]) if parts else pa.table({})
    if table.num_rows == 0 and parts:
        table = parts[0].schema.empty_table()
    if randomize and table.num_rows > 1:
        table = _rows(table, np.random.default_rng([seed, 1, index]).permutation(table.num_rows))
    return _out(table)


def _concat_slices(spec, *blocks: Block):
    parts = [_rows(blocks[i], np.arange(start, end)) for i, start, end in spec]
    table = concat_blocks([p for p in parts if p.num_rows])
    if table.num_rows == 0 and parts:
        table = parts[0]
    return _out(table)


def _partial(block: Block, keys, aggs):
    return partial_aggregate(block, keys, aggs)


def _partial_with_sample(block: Block, keys, aggs, n: int):
    part = partial_aggregate(block, keys, aggs)
    m = part.num_rows
    if m > n:
        sample = part.select(keys).take(pa.array(np.linspace(0, m - 1, n).astype(np.int64)))
    else:
        sample = part.select(keys)
    return part, (m, part.nbytes, sample)


def _split_sorted(part: Block, keys, bounds):
    return _pieces(sort_and_split(part, keys, None, bounds))


def _merge(keys, aggs, *parts: Block):
    return _out(merge_partials(list(parts), keys, aggs, finalize=True))


_REMOTE: Dict[str, Any] = {}


def _task(fn, num_returns=1, **options):
    name = f"{fn.__name__}/{num_returns}"
    rf = _REMOTE.get(name)
    if rf is None:
        rf = _REMOTE[name] = pyray.remote(num_returns=num_returns)(fn)
    return rf.options(**options) if options else rf


# ---------------------------------------------------------------------------
# driver-side helpers
# ---------------------------------------------------------------------------
def _get(refs, what: str):
    try:
        return pyray.get(refs, timeout=STAGE_TIMEOUT_S)
    except GetTimeoutError:
        raise GetTimeoutError(
            f"{what}: the tasks did not finish within {STAGE_TIMEOUT_S:.0f} s "
            "(pyray.data._internal.all_to_all.STAGE_TIMEOUT_S)") from None


def _blocks_of(bundles: Sequence[RefBundle]) -> List[BlockRef]:
    return [b for bundle in bundles for b in bundle.blocks]


def _schema_of(blocks: Sequence[BlockRef], what: str):
    for ref, meta in blocks:
        if meta.schema is not None and (meta.num_rows or len(meta.schema)):
            return meta.schema
    for ref, meta in blocks:
        if meta.num_rows:
            return _get(ref, what).schema
    return blocks[0][1].schema if blocks and blocks[0][1].schema is not None else None


def check_columns(what: str, columns: Sequence[str], schema) -> None:
    if schema is None:
        return
    names = list(schema.names)
    for c in columns:
        if c not in names:
            raise ValueError(f"{what}: you specified the column {c!r}, but there's no such "
                             f"column in the dataset. The dataset has columns: {names}")


def _bundles(outs: List[Tuple[Any, BlockMetadata]], keep_empty: bool) -> List[RefBundle]:
    kept = [(r, m) for r, m in outs if keep_empty or m.num_rows]
    if not kept and outs:
        kept = [outs[0]]            # an empty result still carries the schema
    return [RefBundle(blocks=((r, m),)) for r, m in kept]


def _reduce_outputs(pairs, what: str, keep_empty=False) -> List[RefBundle]:
    """Waits for the reduce tasks ((block ref, meta ref) pairs); returns the bundles."""
    if not pairs:
        return []
    metas = _get([m for _, m in pairs], what)
    return _bundles([(b, m) for (b, _), m in zip(pairs, metas)], keep_empty)


def _as_list(refs, k):
    return [refs] if k == 1 else list(refs)


def _num_cpus() -> int:
    try:
        return max(1, int(pyray.cluster_resources().get("CPU", 1)))
    except Exception:  # noqa: BLE001 - not connected yet: one CPU is a safe guess
        return 1


def _default_partitions(nblocks: int, nbytes: int, ctx) -> int:
    target = max(1, int(getattr(ctx, "target_max_block_size", 128 << 20)))
    k = max(math.ceil(nbytes / target), min(nblocks, 2 * _num_cpus()))
    return max(1, min(k, nblocks))


def _boundaries(samples: List[Block], keys, descending, k: int) -> Optional[Block]:
    samples = [s for s in samples if s.num_rows]
    if k <= 1 or not samples:
        return None
    allk = sort_table(concat_blocks(samples), keys, descending)
    m = allk.num_rows
    idx = [min(m - 1, (m * j) // k) for j in range(1, k)]
    return allk.take(pa.array(idx, pa.int64()))


# ---------------------------------------------------------------------------
# the exchanges (fn(bundles, ctx) -> bundles)
# ---------------------------------------------------------------------------
def normalize_sort_key(key, descending) -> Tuple[List[str], List[bool]]:
    if isinstance(key, str):
        keys = [key]
    elif isinstance(key, (list, tuple)) and key and all(isinstance(k, str) for k in key):
        keys = list(key)
    else:
        raise ValueError(f"Key must be a string or a list of strings, but got {key!r}.")
    if isinstance(descending, bool):
        desc = [descending] * len(keys)
    elif isinstance(descending, (list, tuple)) and all(isinstance(d, bool) for d in descending):
        if len(descending) != len(keys):
            raise ValueError(f"Length of `descending` ({len(descending)}) does not match the "
                             f"length of the key ({len(keys)}): give one bool per key column "
                             "or a single bool.")
        desc = list(descending)
    else:
        raise ValueError(f"`descending` must be a bool or a list of bools, got {descending!r}")
    return keys, desc


def sort_exchange(keys: List[str], descending: List[bool], boundaries=None,
                  what: str = "sort", num_partitions: Optional[int] = None) -> Callable:
    def fn(bundles, ctx):
        blocks = _blocks_of(bundles)
        if not blocks:
            return []
        check_columns(what, keys, _schema_of(blocks, what))
        nonempty = [b for b in blocks if b[1].num_rows] or blocks[:1]
        if boundaries is not None:
            bounds = pa.table({keys[0]: list(boundaries)})
            k = len(boundaries) + 1
        else:
            k = num_partitions or _default_partitions(
                len(nonempty), sum(m.size_bytes for _, m in nonempty), ctx)
            bounds = None
            if k > 1:
                per = max(1, math.ceil(SAMPLES_PER_PARTITION * k / len(nonempty)))
                samples = _get([_task(_sample_keys).remote(r, keys, per, i)
                                for i, (r, _) in enumerate(nonempty)], f"{what} (sample)")
                bounds = _boundaries(samples, keys, descending, k)
                k = 1 if bounds is None else bounds.num_rows + 1
        if k == 1:
            pairs = [_task(_sort_reduce, 2).remote(keys, descending, *[r for r, _ in nonempty])]
            return _reduce_outputs(pairs, what)
        bref = pyray.put(bounds)
        maps = [_as_list(_task(_sort_map, k).remote(r, keys, descending, bref), k)
                for r, _ in nonempty]
        pairs = [_task(_sort_reduce, 2).remote(keys, descending, *[m[j] for m in maps])
                 for j in range(k)]
        del maps
        return _reduce_outputs(pairs, what, keep_empty=boundaries is not None or
                               num_partitions is not None)
    return fn


def shuffle_exchange(num_blocks: Optional[int], seed: Optional[int], randomize: bool,
                     what: str, remote_args: Optional[dict] = None) -> Callable:
    opts = dict(remote_args or {})

    def fn(bundles, ctx):
        blocks = _blocks_of(bundles)
        if not blocks:
            return []
        k = num_blocks or len(blocks)
        s = seed if seed is not None else random.SystemRandom().randrange(1 << 62)
        maps = [_as_list(_task(_shuffle_map, k, **opts).remote(r, k, s, i, randomize), k)
                for i, (r, _) in enumerate(blocks)]
        pairs = [_task(_shuffle_reduce, 2, **opts).remote(s, j, randomize, *[m[j] for m in maps])
                 for j in range(k)]
        del maps
        return _reduce_outputs(pairs, what, keep_empty=num_blocks is not None)
    return fn


def split_rows_exchange(num_blocks: Optional[int], what: str = "repartition",
                        rows_per_block: Optional[int] = None) -> Callable:
    """Output blocks of adjacent rows: ``num_blocks`` of near-equal size, or
    blocks of ``rows_per_block`` rows (the last one smaller)."""
    def fn(bundles, ctx):
        blocks = _blocks_of(bundles)
        if not blocks:
            return []
        counts = [m.num_rows for _, m in blocks]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        total = int(starts[-1])
        if rows_per_block:
            edges = list(range(0, total, rows_per_block)) + [total]
            if len(edges) == 1:
                edges = [0, 0]
        else:
            edges = [(total * j) // num_blocks for j in range(num_blocks + 1)]
        pairs = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            refs, spec = [], []
            for i, (ref, _) in enumerate(blocks):
                s, e = max(lo, int(starts[i])), min(hi, int(starts[i + 1]))
                if s < e:
                    spec.append((len(refs), s - int(starts[i]), e - int(starts[i])))
                    refs.append(ref)
            if not refs:
                spec, refs = [(0, 0, 0)], [blocks[0][0]]
            pairs.append(_task(_concat_slices, 2).remote(spec, *refs))
        return _reduce_outputs(pairs, what, keep_empty=True)
    return fn


def block_order_exchange(seed: Optional[int]) -> Callable:
    def fn(bundles, ctx):
        blocks = _blocks_of(bundles)
        random.Random(seed).shuffle(blocks)
        return [RefBundle(blocks=(b,)) for b in blocks]
    return fn


AggsSpec = Union[List[AggregateFn], Callable[[Any], List[AggregateFn]]]


def resolve_aggs(spec: AggsSpec, schema, keys: Sequence[str], what: str) -> List[AggregateFn]:
    aggs = check_aggs(spec(schema) if callable(spec) else spec, what)
    check_columns(what, [c for a in aggs for c in a._columns()], schema)
    return aggs


def groupby_exchange(keys: List[str], spec: AggsSpec, num_partitions: Optional[int],
                     what: str = "groupby") -> Callable:
    def fn(bundles, ctx):
        blocks = _blocks_of(bundles)
        if not blocks:
            return []
        schema = _schema_of(blocks, what)
        check_columns(what, keys, schema)
        aggs = resolve_aggs(spec, schema, keys, what)
        blocks = [b for b in blocks if b[1].num_rows]
        if not blocks:
            return []
        aref = pyray.put(aggs)
        firsts = [_task(_partial_with_sample, 2).remote(r, keys, aref, PARTIAL_SAMPLE_ROWS)
                  for r, _ in blocks]
        infos = _get([i for _, i in firsts], f"{what} (partial aggregation)")
        parts = [p for p, _ in firsts]
        if num_partitions:
            k = min(int(num_partitions), max(1, sum(m for m, _, _ in infos)))
        else:
            total = sum(b for _, b, _ in infos)
            k = 1 if total <= 16 << 20 else _default_partitions(len(parts), total, ctx)
        bounds = _boundaries([s for _, _, s in infos], keys, None, k) if keys else None
        if bounds is None:
            return _reduce_outputs([_task(_merge, 2).remote(keys, aref, *parts)], what)
        k = bounds.num_rows + 1
        bref = pyray.put(bounds)
        split = [_as_list(_task(_split_sorted, k).remote(p, keys, bref), k) for p in parts]
        del parts
        pairs = [_task(_merge, 2).remote(keys, aref, *[s[j] for s in split]) for j in range(k)]
        del split
        return _reduce_outputs(pairs, what)
    return fn


def global_aggregate(bundle_iter, spec: AggsSpec, what: str) -> Optional[Dict[str, Any]]:
    """Aggregates over all rows: one partial task per block, merged here.
    None for a dataset without rows (as Ray)."""
    refs, aggs, aref, rows = [], None, None, 0
    try:
        for bundle in bundle_iter:
            for ref, meta in bundle.blocks:
                if aggs is None:
                    schema = meta.schema if meta.schema is not None else _get(ref, what).schema
                    aggs = resolve_aggs(spec, schema, [], what)
                    aref = pyray.put(aggs)
                if meta.num_rows:
                    rows += meta.num_rows
                    refs.append(_task(_partial).remote(ref, [], aref))
    finally:
        close = getattr(bundle_iter, "close", None)
        if close is not None:
            close()                 # stop the pipeline's tasks when a check failed
    if not rows:
        return None
    parts = _get(refs, what)
    return merge_partials(parts, [], aggs, finalize=True).to_pylist()[0]


def columns_spec(cls, on, what: str, skip: Sequence[str] = (), **kwargs) -> Callable:
    """Aggregations of ``cls`` on ``on`` (None: every column but ``skip``)."""
    if on is not None and not isinstance(on, str) and not (
            isinstance(on, list) and all(isinstance(c, str) for c in on)):
        raise ValueError(f"{what}: `on` must be a column name or a list of column names, "
                         f"got {on!r}")
    if isinstance(on, list) and not on:
        raise ValueError(f"{what}: `on` is an empty list; name at least one column")

    def build(schema):
        cols = on
        if cols is None:
            cols = [c for c in (schema.names if schema is not None else []) if c not in skip]
            if not cols:
                raise ValueError(f"{what}: the dataset has no column to aggregate")
        elif isinstance(cols, str):
            cols = [cols]
        return [cls(c, **kwargs) for c in cols]
    return build


def _single_or_dict(result):
    if result is not None and len(result) == 1:
        return next(iter(result.values()))
    return result


class AllToAllMixin:
    """Dataset methods that exchange data between all blocks."""

    def sort(self, key: Union[str, List[str], None] = None,
             descending: Union[bool, List[bool]] = False,
             boundaries: Optional[List[Any]] = None):
        """Sort by one or more columns (``descending`` one bool or one per key;
        nulls last).  ``boundaries`` (single key) fixes the output partitions."""
        keys, desc = normalize_sort_key(key, descending)
        if boundaries is not None:
            if len(keys) != 1:
                raise ValueError("sort: `boundaries` works with a single key column only")
            boundaries = list(boundaries)
            if boundaries != sorted(boundaries):
                raise ValueError(f"sort: `boundaries` must be ascending, got {boundaries}")
            if desc[0]:
                boundaries.reverse()        # cut points in the order the rows come out
        return self._all_to_all("Sort", sort_exchange(keys, desc, boundaries))

    def random_shuffle(self, *, seed: Optional[int] = None, num_blocks: Optional[int] = None,
                       **ray_remote_args):
        """Rows in a random order (reproducible with ``seed`` for the same input blocks)."""
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)
                                 or seed < 0):
            raise ValueError(f"random_shuffle: seed must be a non-negative int, got {seed!r}")
        _check_num_blocks("random_shuffle", num_blocks, allow_none=True)
        return self._all_to_all("RandomShuffle", shuffle_exchange(
            num_blocks, None if seed is None else int(seed), True, "random_shuffle",
            ray_remote_args))

    def repartition(self, num_blocks: Optional[int] = None,
                    target_num_rows_per_block: Optional[int] = None, *, shuffle: bool = False,
                    keys: Union[str, List[str], None] = None, sort: bool = False):
        """Exactly ``num_blocks`` blocks: adjacent rows split evenly (order kept),
        with ``shuffle=True`` one slice of every input block in each, with
        ``keys`` all rows of a key in one block (blocks sorted by key); or
        blocks of ``target_num_rows_per_block`` adjacent rows."""
        if (num_blocks is None) == (target_num_rows_per_block is None):
            raise ValueError("repartition: give exactly one of num_blocks or "
                             "target_num_rows_per_block")
        if target_num_rows_per_block is not None:
            _check_num_blocks("repartition", target_num_rows_per_block, allow_none=False,
                              arg="target_num_rows_per_block")
            if shuffle or keys is not None or sort:
                raise ValueError("repartition: target_num_rows_per_block cannot be combined "
                                 "with shuffle, keys or sort")
            return self._all_to_all("Repartition", split_rows_exchange(
                None, rows_per_block=target_num_rows_per_block))
        _check_num_blocks("repartition", num_blocks, allow_none=False)
        if keys is not None:
            if shuffle:
                raise ValueError("repartition: keys and shuffle=True cannot be combined")
            key_list, desc = normalize_sort_key(keys, False)
            # range partitioning: every key in one block; blocks come out sorted
            return self._all_to_all("Repartition", sort_exchange(
                key_list, desc, what="repartition", num_partitions=num_blocks))
        if sort:
            raise ValueError("repartition: sort=True needs keys")
        if shuffle:
            return self._all_to_all("Repartition", shuffle_exchange(
                num_blocks, 0, False, "repartition"))
        return self._all_to_all("Repartition", split_rows_exchange(num_blocks))

    def randomize_block_order(self, *, seed: Optional[int] = None):
        """The same blocks in a random order."""
        return self._all_to_all("RandomizeBlockOrder", block_order_exchange(seed))

    def groupby(self, key: Union[str, List[str], None], num_partitions: Optional[int] = None):
        """Group rows by key column(s) for aggregate / map_groups."""
        from pyray.data.grouped_data import GroupedData
        return GroupedData(self, key, num_partitions=num_partitions)

    def unique(self, column: str) -> List[Any]:
        """The distinct values of a column (sorted, None last)."""
        if not isinstance(column, str):
            raise ValueError(f"unique: `column` must be a column name, got {column!r}")
        res = global_aggregate(self._iter_bundles(),
                               [Unique(column, ignore_nulls=False, alias_name="u")], "unique")
        return [] if res is None else list(res["u"])

    def aggregate(self, *aggs: AggregateFn) -> Optional[Dict[str, Any]]:
        """Aggregate all rows: ``{agg.name: value}``, or None without rows."""
        aggs = check_aggs(aggs, "aggregate")
        return global_aggregate(self._iter_bundles(), aggs, "aggregate")

    def _aggregate_on(self, cls, on, what, **kwargs):
        spec = columns_spec(cls, on, what, **kwargs)
        return _single_or_dict(global_aggregate(self._iter_bundles(), spec, what))

    def sum(self, on: Union[str, List[str], None] = None, ignore_nulls: bool = True):
        """Sum of a column (a value) or of several (a dict); None without rows."""
        return self._aggregate_on(Sum, on, "sum", ignore_nulls=ignore_nulls)

    def min(self, on: Union[str, List[str], None] = None, ignore_nulls: bool = True):
        return self._aggregate_on(Min, on, "min", ignore_nulls=ignore_nulls)

    def max(self, on: Union[str, List[str], None] = None, ignore_nulls: bool = True):
        return self._aggregate_on(Max, on, "max", ignore_nulls=ignore_nulls)

    def mean(self, on: Union[str, List[str], None] = None, ignore_nulls: bool = True):
        return self._aggregate_on(Mean, on, "mean", ignore_nulls=ignore_nulls)

    def std(self, on: Union[str, List[str], None] = None, ddof: int = 1,
            ignore_nulls: bool = True):
        """Standard deviation (``ddof=1`` as Ray; NaN when count <= ddof)."""
        return self._aggregate_on(Std, on, "std", ddof=ddof, ignore_nulls=ignore_nulls)


def _check_num_blocks(what, n, allow_none, arg="num_blocks"):
    if n is None and allow_none:
        return
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{what}: {arg} must be a positive int, got {n!r}")
