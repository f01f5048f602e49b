"""Blocks and batches.

Every block is a ``pyarrow.Table``.  A user function sees a *batch* in the
format it asked for ("numpy": dict of column name -> ndarray, "pandas":
DataFrame, "pyarrow": Table; "default" is "numpy", as in Ray) and may return
any of those; ``batch_to_block`` turns it back into a Table.

Columns holding arrays of more than one dimension (tensors) are stored as
Arrow's fixed-shape tensor extension type and come back as one ndarray of
shape ``(rows, *shape)``, without a copy where Arrow allows it.
"""
from __future__ import annotations

import collections.abc
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import pyarrow as pa

Block = pa.Table
BATCH_FORMATS = ("default", "numpy", "pandas", "pyarrow")


def _is_tensor_type(t) -> bool:
    return isinstance(t, pa.FixedShapeTensorType)


def _column_to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    if _is_tensor_type(col.type):
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if len(arr) == 0:
            return np.empty((0, *col.type.shape), dtype=col.type.value_type.to_pandas_dtype())
        return arr.to_numpy_ndarray()
    if col.num_chunks == 1:
        return col.chunk(0).to_numpy(zero_copy_only=False)
    return col.to_numpy()


def _to_arrow_column(name: str, value) -> pa.Array:
    """One column of a user batch as an Arrow array, tensors included."""
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value
    if not isinstance(value, np.ndarray):
        if isinstance(value, (str, bytes)) or not isinstance(value, collections.abc.Iterable):
            raise TypeError(
                f"column {name!r} of the returned batch is a {type(value).__name__}, "
                "not an array: return a dict of column name -> numpy array or list")
        value = list(value)
        if value and all(isinstance(v, np.ndarray) for v in value):
            value = _stack(name, value)
        else:
            try:
                return pa.array(value)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                value = np.array(value, dtype=object)
    if value.ndim == 0:
        raise TypeError(f"column {name!r} of the returned batch is a 0-d array; "
                        "each column needs one value per row")
    if value.ndim > 1:
        return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(value))
    if value.dtype == object and len(value) and isinstance(value[0], np.ndarray):
        return _to_arrow_column(name, _stack(name, list(value)))
    try:
        return pa.array(value)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # arbitrary Python objects: keep them as pickled bytes is not what
        # Ray users expect; say what went wrong instead
        raise TypeError(
            f"column {name!r} holds values Arrow cannot store "
            f"({type(value[0]).__name__ if len(value) else value.dtype}); "
            "return numbers, strings, bytes, lists, dicts or numpy arrays") from None


def _stack(name, arrays):
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        return np.stack(arrays)
    raise TypeError(f"column {name!r} holds arrays of different shapes {sorted(shapes)[:3]}; "
                    "pyray.data stores tensors of one shape per column")


def batch_to_block(batch, *, where: str = "") -> Block:
    """The Table for what a user function returned (dict of arrays, DataFrame or Table)."""
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, collections.abc.Mapping):
        if not batch:
            return pa.table({})
        cols = {str(k): _to_arrow_column(str(k), v) for k, v in batch.items()}
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{where + ': ' if where else ''}the returned batch has columns "
                             f"of different lengths {lengths}")
        return pa.table(cols)
    pd = _pandas_or_none()
    if pd is not None and isinstance(batch, pd.DataFrame):
        return _pandas_to_block(batch)
    raise TypeError(
        f"{where + ': ' if where else ''}a batch function must return a dict of "
        f"column name -> numpy array, a pandas.DataFrame or a pyarrow.Table, "
        f"not {type(batch).__name__}")


def _pandas_to_block(df) -> Block:
    cols = {}
    for name in df.columns:
        s = df[name]
        if s.dtype == object and len(s) and isinstance(s.iloc[0], np.ndarray):
            cols[str(name)] = _to_arrow_column(str(name), list(s))
        else:
            cols[str(name)] = pa.Array.from_pandas(s)
    return pa.table(cols)


def _pandas_or_none():
    try:
        import pandas
        return pandas
    except ImportError:
        return None


def require_pandas(what: str):
    pd = _pandas_or_none()
    if pd is None:
        raise ImportError(f"{what} needs pandas: pip install \"pyray[data]\"")
    return pd


def rows_to_block(rows: Sequence[Any]) -> Block:
    """from_items / map output: dict rows as columns; other items under "item"."""
    if not rows:
        return pa.table({})
    if all(isinstance(r, collections.abc.Mapping) for r in rows):
        names: Dict[str, None] = {}
        for r in rows:
            for k in r:
                names.setdefault(str(k), None)
        return batch_to_block({k: [r.get(k) for r in rows] for k in names})
    return batch_to_block({"item": list(rows)})


class BlockAccessor:
    """Read one block in the forms users ask for."""

    __slots__ = ("_t",)

    def __init__(self, table: Block):
        self._t = table

    @staticmethod
    def for_block(block) -> "BlockAccessor":
        if not isinstance(block, pa.Table):
            block = batch_to_block(block)
        return BlockAccessor(block)

    def num_rows(self) -> int:
        return self._t.num_rows

    def size_bytes(self) -> int:
        return self._t.nbytes

    def schema(self):
        return self._t.schema

    def slice(self, start: int, end: int) -> Block:
        return self._t.slice(start, max(0, end - start))

    def to_arrow(self) -> Block:
        return self._t

    def to_numpy(self, columns: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
        t = self._t
        names = columns if columns is not None else t.column_names
        return {n: _column_to_numpy(t.column(n)) for n in names}

    def to_pandas(self):
        pd = require_pandas('batch_format="pandas"')
        t = self._t
        if not any(_is_tensor_type(f.type) for f in t.schema):
            return t.to_pandas()
        data = {}
        for n in t.column_names:
            col = t.column(n)
            data[n] = list(_column_to_numpy(col)) if _is_tensor_type(col.type) else col.to_pandas()
        return pd.DataFrame(data)

    def to_batch_format(self, batch_format: Optional[str]):
        if batch_format in (None, "default", "numpy"):
            return self.to_numpy()
        if batch_format == "pandas":
            return self.to_pandas()
        if batch_format in ("pyarrow", "arrow"):
            return self._t
        raise ValueError(f"batch_format must be one of {BATCH_FORMATS}, not {batch_format!r}")

    def iter_rows(self) -> Iterator[Dict[str, Any]]:
        t = self._t
        if t.num_rows == 0:
            return
        tensor_cols = {n: _column_to_numpy(t.column(n)) for n, f in zip(t.column_names, t.schema)
                       if _is_tensor_type(f.type)}
        plain = [n for n in t.column_names if n not in tensor_cols]
        plain_lists = {n: t.column(n).to_pylist() for n in plain}
        for i in range(t.num_rows):
            row = {}
            for n in t.column_names:
                row[n] = tensor_cols[n][i] if n in tensor_cols else plain_lists[n][i]
            yield row


def concat_blocks(blocks: Sequence[Block]) -> Block:
    blocks = [b for b in blocks if b.num_columns or b.num_rows]
    if not blocks:
        return pa.table({})
    if len(blocks) == 1:
        return blocks[0]
    try:
        return pa.concat_tables(blocks, promote_options="default")
    except pa.ArrowInvalid as e:
        raise ValueError(f"blocks with different schemas cannot be combined: {e}") from None
