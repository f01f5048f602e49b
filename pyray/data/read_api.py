"""Creating datasets: range, in-memory data, object refs, and any Datasource."""
from __future__ import annotations

import builtins
from typing import Any, Dict, List, Optional, Union

import numpy as np
import pyarrow as pa

import pyray
from pyray.data._internal import plan as lp
from pyray.data._internal.ref_bundle import BlockMetadata, RefBundle
from pyray.data.block import BlockAccessor, batch_to_block, rows_to_block
from pyray.data.context import DataContext
from pyray.data.dataset import Dataset, MaterializedDataset
from pyray.data.datasource.datasource import Datasource, ReadTask

GET_TIMEOUT_S = 600.0


def _check_parallelism(what, parallelism, override_num_blocks):
    for name, v in (("parallelism", parallelism), ("override_num_blocks", override_num_blocks)):
        if v is None or (name == "parallelism" and v == -1):
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{what}: {name} must be a positive integer, not {v!r}")
    if override_num_blocks is not None:
        return override_num_blocks
    return parallelism if parallelism not in (None, -1) else None


def _auto_parallelism(est_bytes: Optional[int], ctx: DataContext) -> int:
    """Ray's rule: enough blocks to keep every CPU busy twice over, at least
    read_op_min_num_blocks when blocks stay above target_min_block_size, and
    never blocks above target_max_block_size."""
    try:
        cpus = int(pyray.cluster_resources().get("CPU", 1))
    except Exception:  # noqa: BLE001 - not connected yet: init below does it
        cpus = 1
    size = est_bytes or 0
    min_safe = max(1, size // ctx.target_max_block_size)
    max_reasonable = max(1, size // ctx.target_min_block_size)
    return int(max(min(ctx.read_op_min_num_blocks, max_reasonable), min_safe, cpus * 2))


def _put_blocks(name: str, tables: List[pa.Table]) -> MaterializedDataset:
    bundles = [RefBundle(((pyray.put(t), BlockMetadata.for_block(t)),), owns_blocks=False)
               for t in tables]
    return MaterializedDataset(lp.InputData(name, bundles))


def _chunks(n: int, k: int):
    k = max(1, min(k, n)) if n else 1
    base, extra = divmod(n, k)
    start = 0
    for i in builtins.range(k):
        end = start + base + (1 if i < extra else 0)
        yield start, end
        start = end


# ---------------------------------------------------------------------- range
class _RangeDatasource(Datasource):
    def __init__(self, n: int, tensor_shape=None):
        self._n = n
        self._shape = tensor_shape

    def get_name(self):
        return "Range" if self._shape is None else "RangeTensor"

    def _row_bytes(self):
        return 8 * (int(np.prod(self._shape)) if self._shape is not None else 1)

    def estimate_inmemory_data_size(self):
        return self._n * self._row_bytes()

    def get_read_tasks(self, parallelism):
        ctx = DataContext.get_current()
        per_block = max(1, ctx.target_max_block_size // self._row_bytes())
        tasks = []
        shape = self._shape
        for start, end in _chunks(self._n, parallelism):
            def read(start=start, end=end):
                for s in builtins.range(start, end, per_block):
                    ids = np.arange(s, min(end, s + per_block), dtype=np.int64)
                    if shape is None:
                        yield pa.table({"id": ids})
                    else:
                        data = np.ones((len(ids),) + shape, dtype=np.int64) * \
                            ids.reshape((-1,) + (1,) * len(shape))
                        yield batch_to_block({"data": data})
            schema = (pa.schema([("id", pa.int64())]) if shape is None else
                      pa.schema([("data", pa.fixed_shape_tensor(pa.int64(), list(shape)))]))
            meta = BlockMetadata(num_rows=end - start, size_bytes=(end - start) *
                                 self._row_bytes(), schema=schema)
            tasks.append(ReadTask(read, meta))
        return tasks


def range(n: int, *, parallelism: int = -1,
          override_num_blocks: Optional[int] = None) -> Dataset:  # noqa: A001 - Ray's name
    """Rows {"id": 0} ... {"id": n - 1}."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"range: n must be a non-negative integer, not {n!r}")
    return read_datasource(_RangeDatasource(int(n)), parallelism=parallelism,
                           override_num_blocks=override_num_blocks)


def range_tensor(n: int, *, shape=(1,), parallelism: int = -1,
                 override_num_blocks: Optional[int] = None) -> Dataset:
    """Rows {"data": array of `shape` filled with i}."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"range_tensor: n must be a non-negative integer, not {n!r}")
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"range_tensor: shape must be a tuple of positive integers, not "
                         f"{shape!r}")
    return read_datasource(_RangeDatasource(int(n), shape), parallelism=parallelism,
                           override_num_blocks=override_num_blocks)


# ------------------------------------------------------------ any datasource
def read_datasource(datasource: Datasource, *, parallelism: int = -1,
                    override_num_blocks: Optional[int] = None,
                    ray_remote_args: Optional[Dict[str, Any]] = None,
                    concurrency: Optional[int] = None, **read_args) -> Dataset:
    """A dataset read by the datasource's ReadTasks (run when consumed)."""
    if not isinstance(datasource, Datasource):
        raise TypeError(f"read_datasource: expected a Datasource, not "
                        f"{type(datasource).__name__}")
    if read_args:
        raise TypeError(f"read_datasource: unexpected arguments {sorted(read_args)}; pass "
                        "them to the Datasource's constructor")
    if concurrency is not None and (isinstance(concurrency, bool) or
                                    not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"read_datasource: concurrency must be a positive integer, not "
                         f"{concurrency!r}")
    ctx = DataContext.get_current()
    p = _check_parallelism("read_datasource", parallelism, override_num_blocks)
    if p is None:
        p = _auto_parallelism(datasource.estimate_inmemory_data_size(), ctx)
    return Dataset(lp.Read(datasource, p, ray_remote_args, concurrency))


# ------------------------------------------------------------------ in memory
def from_items(items: List[Any], *, parallelism: int = -1,
               override_num_blocks: Optional[int] = None) -> MaterializedDataset:
    """Rows from a list: dicts become rows, anything else the column "item"."""
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"from_items: expected a list, not {type(items).__name__}")
    p = _check_parallelism("from_items", parallelism, override_num_blocks)
    if p is None:
        p = min(200, max(1, len(items)))
    return _put_blocks("FromItems", [rows_to_block(list(items[s:e]))
                                     for s, e in _chunks(len(items), p)])


def from_numpy(ndarrays: Union[np.ndarray, List[np.ndarray]]) -> MaterializedDataset:
    """One block per array, in the column "data"."""
    arrs = ndarrays if isinstance(ndarrays, list) else [ndarrays]
    for a in arrs:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"from_numpy: expected numpy arrays, not {type(a).__name__}")
        if a.ndim == 0:
            raise ValueError("from_numpy: a 0-d array has no rows")
    return _put_blocks("FromNumpy", [batch_to_block({"data": a}) for a in arrs])


def from_pandas(dfs) -> MaterializedDataset:
    from pyray.data.block import require_pandas
    pd = require_pandas("from_pandas")
    dfs = dfs if isinstance(dfs, list) else [dfs]
    for d in dfs:
        if not isinstance(d, pd.DataFrame):
            raise TypeError(f"from_pandas: expected pandas DataFrames, not {type(d).__name__}")
    return _put_blocks("FromPandas", [batch_to_block(d) for d in dfs])


def from_arrow(tables) -> MaterializedDataset:
    tables = tables if isinstance(tables, list) else [tables]
    for t in tables:
        if not isinstance(t, pa.Table):
            raise TypeError(f"from_arrow: expected pyarrow Tables, not {type(t).__name__}")
    return _put_blocks("FromArrow", tables)


# ----------------------------------------------------------- object refs
def _to_block_task(kind: str, value):
    if kind == "numpy":
        if not isinstance(value, np.ndarray):
            raise TypeError(f"from_numpy_refs: a ref holds {type(value).__name__}, not an "
                            "ndarray")
        t = batch_to_block({"data": value})
    elif kind == "pandas":
        t = batch_to_block(value)
    else:
        if not isinstance(value, pa.Table):
            raise TypeError(f"from_arrow_refs: a ref holds {type(value).__name__}, not a "
                            "pyarrow Table")
        t = value
    return t, BlockMetadata.for_block(t)


def _from_refs(name, kind, refs) -> MaterializedDataset:
    refs = refs if isinstance(refs, list) else [refs]
    if not all(isinstance(r, pyray.ObjectRef) for r in refs):
        raise TypeError(f"{name}: expected ObjectRefs")
    conv = pyray.remote(num_returns=2)(_to_block_task)
    outs = [conv.remote(kind, r) for r in refs]
    metas = pyray.get([m for _, m in outs], timeout=GET_TIMEOUT_S)
    if kind == "arrow":
        # the tables are already blocks: keep the caller's objects
        pairs = list(zip(refs, metas))
    else:
        pairs = [(b, m) for (b, _), m in zip(outs, metas)]
    bundles = [RefBundle((p,), owns_blocks=False) for p in pairs]
    return MaterializedDataset(lp.InputData(name, bundles))


def from_numpy_refs(ndarrays) -> MaterializedDataset:
    return _from_refs("FromNumpyRefs", "numpy", ndarrays)


def from_pandas_refs(dfs) -> MaterializedDataset:
    return _from_refs("FromPandasRefs", "pandas", dfs)


def from_arrow_refs(tables) -> MaterializedDataset:
    return _from_refs("FromArrowRefs", "arrow", tables)


def from_blocks(blocks: List[pa.Table]) -> MaterializedDataset:
    return _put_blocks("FromBlocks", [BlockAccessor.for_block(b).to_arrow() for b in blocks])
