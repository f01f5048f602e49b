"""write_datasink: one write per output block, in the tasks that produce it.

The write runs as the last stage of the pipeline's final map (so
``read -> map_batches -> write`` is one task per block); each write task
returns a one-row table with the rows and bytes it wrote and what
``Datasink.write`` returned.  The driver calls ``on_write_start`` before,
``on_write_complete(WriteResult)`` after, and ``on_write_failed(error)`` when
any write fails, then raises that error.
"""
from __future__ import annotations

import pickle

import pyarrow as pa

import pyray
from pyray.data._internal import plan as lp
from pyray.data._internal import map_transform
from pyray.data._internal.map_transform import Stage
from pyray.data.datasource.datasink import TaskContext, WriteResult
from pyray.data.exceptions import user_code_error

GET_TIMEOUT_S = 600.0


class WriteStage(Stage):
    def __init__(self, name, datasink):
        self.name = name
        self.datasink = datasink

    def apply(self, blocks):
        counted = {"rows": 0, "bytes": 0}

        def counting():
            for t in blocks:
                counted["rows"] += t.num_rows
                counted["bytes"] += t.nbytes
                yield t

        ctx = TaskContext(map_transform.current_task_idx, self.name)
        try:
            ret = self.datasink.write(counting(), ctx)
        except Exception as e:  # noqa: BLE001 - surfaced with the operator's name
            raise user_code_error(self.name, e, "writing in") from e
        yield pa.table({"num_rows": [counted["rows"]], "size_bytes": [counted["bytes"]],
                        "write_return": [pickle.dumps(ret)]})


def run_write(ds, datasink, ray_remote_args=None, concurrency=None):
    from pyray.data.datasource.datasink import Datasink
    if not isinstance(datasink, Datasink):
        raise TypeError(f"write_datasink: expected a Datasink, not {type(datasink).__name__}")
    if concurrency is not None and (isinstance(concurrency, bool) or
                                    not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"write_datasink: concurrency must be a positive integer, not "
                         f"{concurrency!r}")
    args = dict(ray_remote_args or {})
    if not datasink.supports_distributed_writes:
        from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        args["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            pyray.get_runtime_context().get_node_id(), soft=False)
    name = f"Write{datasink.get_name()}"
    root = lp.MapOp(name, ds._root, [WriteStage(name, datasink)], ray_remote_args=args,
                    concurrency=concurrency, min_rows_per_bundle=datasink.min_rows_per_write,
                    strict_batch_size=datasink.min_rows_per_write is not None,
                    exact_min_rows=datasink.min_rows_per_write is not None)
    wds = ds._with(root)
    datasink.on_write_start()
    result = WriteResult()
    try:
        for b in wds._iter_bundles():
            for t in pyray.get(b.block_refs, timeout=GET_TIMEOUT_S):
                if not t.num_rows:
                    continue
                d = t.to_pydict()
                result.num_rows += sum(d["num_rows"])
                result.size_bytes += sum(d["size_bytes"])
                result.write_returns.extend(pickle.loads(r) for r in d["write_return"])
    except BaseException as e:
        ds._stats = wds._stats
        if isinstance(e, Exception):
            datasink.on_write_failed(e)
        raise
    ds._stats = wds._stats
    datasink.on_write_complete(result)
    return result
