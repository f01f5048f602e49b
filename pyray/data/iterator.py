"""DataIterator: batches and rows out of a stream of blocks.

``Dataset.iter_batches`` and friends, ``Dataset.iterator()`` and each of
``streaming_split``'s iterators are DataIterators.  Blocks are fetched
(``pyray.get``, zero-copy from shared memory on the same node) by a
background thread ``prefetch_batches`` blocks ahead of the consumer; a batch
that lies inside one block is a zero-copy slice of it.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import pyarrow as pa

import pyray
from pyray.data._internal.map_transform import iter_batches_of
from pyray.data._internal.ref_bundle import RefBundle
from pyray.data._internal.stats import DatasetStats
from pyray.data.block import BATCH_FORMATS, BlockAccessor, concat_blocks

GET_TIMEOUT_S = 600.0
_END = object()


class _Failure:
    def __init__(self, err):
        self.err = err


def _fetch(bundle: RefBundle) -> List[pa.Table]:
    refs = bundle.block_refs
    return pyray.get(refs, timeout=GET_TIMEOUT_S) if refs else []


def _tables(bundles: Iterator[RefBundle], prefetch: int, stats: Optional[DatasetStats]):
    """The blocks of `bundles`, fetched by a thread `prefetch` bundles ahead
    (in this thread when prefetch is 0)."""
    if prefetch <= 0:
        for b in bundles:
            for t in _fetch(b):
                yield t
        return
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run():
        try:
            for b in bundles:
                if not put(_fetch(b)):
                    break
            put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(_Failure(e))
        finally:
            close = getattr(bundles, "close", None)
            if close is not None:
                close()

    th = threading.Thread(target=run, name="pyray-data-prefetch", daemon=True)
    th.start()
    try:
        while True:
            t0 = time.perf_counter()
            item = q.get()
            if stats is not None:
                stats.iter_wait_s += time.perf_counter() - t0
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.err.with_traceback(None)
            for t in item:
                yield t
            del item
    finally:
        stop.set()
        th.join(timeout=30)


def _shuffled(tables, batch_size: int, buffer_size: int, seed):
    rng = np.random.default_rng(seed)
    buf: Optional[pa.Table] = None
    for t in tables:
        if not t.num_rows:
            continue
        buf = t if buf is None else concat_blocks([buf, t])
        while buf.num_rows >= buffer_size + batch_size:
            pick = rng.choice(buf.num_rows, batch_size, replace=False)
            keep = np.ones(buf.num_rows, dtype=bool)
            keep[pick] = False
            yield buf.take(pa.array(pick))
            buf = buf.filter(pa.array(keep))
    if buf is not None and buf.num_rows:
        yield buf.take(pa.array(rng.permutation(buf.num_rows)))


def batch_tables(tables, batch_size, drop_last=False, shuffle_buffer=None, seed=None):
    if batch_size is not None and (isinstance(batch_size, bool) or
                                   not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, not {batch_size!r}")
    if shuffle_buffer is not None:
        if shuffle_buffer < 1:
            raise ValueError(f"local_shuffle_buffer_size must be positive, not {shuffle_buffer}")
        tables = _shuffled(tables, batch_size or 256, shuffle_buffer, seed)
    for t in iter_batches_of(tables, batch_size):
        if drop_last and batch_size is not None and t.num_rows < batch_size:
            return
        yield t


class DataIterator:
    """An iterable source of batches (``ray.data.DataIterator``)."""

    def _bundles(self) -> Iterator[RefBundle]:
        raise NotImplementedError

    def _stats(self) -> Optional[DatasetStats]:
        return None

    # ------------------------------------------------------------ batches
    def iter_batches(self, *, prefetch_batches: int = 1, batch_size: Optional[int] = 256,
                     batch_format: Optional[str] = "default", drop_last: bool = False,
                     local_shuffle_buffer_size: Optional[int] = None,
                     local_shuffle_seed: Optional[int] = None,
                     _collate_fn: Optional[Callable] = None) -> Iterator[Any]:
        if batch_format not in BATCH_FORMATS and batch_format not in (None, "arrow"):
            raise ValueError(f"batch_format must be one of {BATCH_FORMATS}, not "
                             f"{batch_format!r}")
        if isinstance(prefetch_batches, bool) or not isinstance(prefetch_batches, int) or \
                prefetch_batches < 0:
            raise ValueError(f"prefetch_batches must be a non-negative integer, not "
                             f"{prefetch_batches!r}")
        return self._iter(prefetch_batches, batch_size, batch_format, drop_last,
                          local_shuffle_buffer_size, local_shuffle_seed, _collate_fn)

    def _iter(self, prefetch, batch_size, fmt, drop_last, shuffle_buffer, seed, collate):
        batch_tables(iter(()), batch_size)          # validates before running anything
        stats = self._stats()
        tables = _tables(self._bundles(), prefetch, stats)
        gen = batch_tables(tables, batch_size, drop_last, shuffle_buffer, seed)
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    t = next(gen)
                except StopIteration:
                    return
                batch = BlockAccessor(t).to_batch_format(fmt)
                if collate is not None:
                    batch = collate(batch)
                t1 = time.perf_counter()
                if stats is not None:
                    stats.iter_format_s += t1 - t0
                    stats.iter_batches += 1
                yield batch
                if stats is not None:
                    stats.iter_user_s += time.perf_counter() - t1
        finally:
            gen.close()
            tables.close()

    def iter_rows(self, *, prefetch_batches: int = 1) -> Iterator[Dict[str, Any]]:
        tables = _tables(self._bundles(), prefetch_batches, self._stats())
        try:
            for t in tables:
                yield from BlockAccessor(t).iter_rows()
        finally:
            tables.close()

    def iter_torch_batches(self, *, prefetch_batches: int = 1,
                           batch_size: Optional[int] = 256, dtypes=None, device: str = "auto",
                           collate_fn: Optional[Callable] = None, drop_last: bool = False,
                           local_shuffle_buffer_size: Optional[int] = None,
                           local_shuffle_seed: Optional[int] = None):
        try:
            import torch
        except ImportError:
            raise ImportError("iter_torch_batches needs PyTorch: pip install torch") from None
        dev = torch.device("cpu" if device == "auto" else device)

        def to_torch(batch):
            out = {}
            for k, v in batch.items():
                dt = dtypes.get(k) if isinstance(dtypes, dict) else dtypes
                if v.dtype == object:
                    raise TypeError(f"iter_torch_batches: column {k!r} holds Python objects "
                                    f"({type(v[0]).__name__ if len(v) else 'empty'}); "
                                    "pass collate_fn to convert it")
                out[k] = torch.as_tensor(v, dtype=dt, device=dev)
            return out

        if collate_fn is not None:
            return self._iter(prefetch_batches, batch_size, "numpy", drop_last,
                              local_shuffle_buffer_size, local_shuffle_seed, collate_fn)
        return self._iter(prefetch_batches, batch_size, "numpy", drop_last,
                          local_shuffle_buffer_size, local_shuffle_seed, to_torch)

    def to_tf(self, *args, **kwargs):
        raise NotImplementedError("pyray.data does not convert to TensorFlow datasets; use "
                                  "iter_batches(batch_format=\"numpy\") and tf.convert_to_tensor")

    def materialize(self):
        from pyray.data.dataset import MaterializedDataset
        return MaterializedDataset.from_bundles(list(self._bundles()), "FromIterator")

    def stats(self) -> str:
        st = self._stats()
        return st.to_string() if st is not None else ""


class DatasetIterator(DataIterator):
    """Iterates one dataset (``Dataset.iterator()``)."""

    def __init__(self, dataset):
        self._ds = dataset

    def _bundles(self):
        return self._ds._iter_bundles()

    def _stats(self):
        return self._ds._stats

    def schema(self):
        return self._ds.schema()

    def __repr__(self):
        return f"DataIterator({self._ds!r})"


class SplitIterator(DataIterator):
    """One of streaming_split's n iterators; picklable, so it can be handed
    to an actor or a task that reads its share."""

    def __init__(self, coordinator, index: int, n: int):
        self._coord = coordinator
        self._index = index
        self._n = n

    def _bundles(self):
        from pyray.data._internal.split import WAIT
        deadline = time.monotonic() + GET_TIMEOUT_S
        while True:
            out = pyray.get(self._coord.get.remote(self._index), timeout=GET_TIMEOUT_S)
            if out is None:
                return
            if isinstance(out, str) and out == WAIT:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streaming_split iterator {self._index}: the other "
                                       f"iterators did not finish their epoch within "
                                       f"{GET_TIMEOUT_S:.0f}s")
                time.sleep(0.01)
                continue
            refs, metas = out
            yield RefBundle(tuple(zip(refs, metas)), owns_blocks=True)

    def __repr__(self):
        return f"DataIterator(streaming_split {self._index} of {self._n})"
