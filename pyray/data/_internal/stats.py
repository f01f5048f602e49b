"""Execution statistics: what each operator did, and ``Dataset.stats()``'s text."""
from __future__ import annotations

import time
from typing import Dict, List, Optional


class OpStats:
    """Counters of one physical operator during one execution."""

    def __init__(self, name: str):
        self.name = name
        self.tasks = 0
        self.blocks = 0
        self.rows = 0
        self.bytes = 0
        self.wall: List[float] = []        # per output block, in the worker
        self.cpu: List[float] = []
        self.peak_rss = 0
        self.rows_per_block: List[int] = []
        self.bytes_per_block: List[int] = []
        self.start: Optional[float] = None
        self.end: Optional[float] = None

    def started(self):
        if self.start is None:
            self.start = time.perf_counter()

    def add_output(self, meta):
        self.blocks += 1
        self.rows += meta.num_rows
        self.bytes += meta.size_bytes
        self.rows_per_block.append(meta.num_rows)
        self.bytes_per_block.append(meta.size_bytes)
        st = meta.exec_stats
        if st:
            self.wall.append(st.get("wall_s", 0.0))
            self.cpu.append(st.get("cpu_s", 0.0))
            self.peak_rss = max(self.peak_rss, st.get("peak_rss", 0))

    def finished(self):
        if self.end is None:
            self.end = time.perf_counter()
            if self.start is None:
                self.start = self.end

    @property
    def wall_time(self) -> float:
        if self.start is None:
            return 0.0
        return (self.end or time.perf_counter()) - self.start

    def as_dict(self) -> Dict:
        return {"name": self.name, "tasks": self.tasks, "blocks": self.blocks,
                "rows": self.rows, "bytes": self.bytes, "wall_s": self.wall_time,
                "task_wall_s": sum(self.wall), "task_cpu_s": sum(self.cpu),
                "peak_rss_bytes": self.peak_rss}


def _fmt_s(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f}us"
    if s < 1:
        return f"{s * 1e3:.2f}ms"
    return f"{s:.2f}s"


def _summary(values, fmt) -> str:
    if not values:
        return "n/a"
    return (f"{fmt(min(values))} min, {fmt(max(values))} max, "
            f"{fmt(sum(values) / len(values))} mean, {fmt(sum(values))} total")


class DatasetStats:
    """The statistics of a dataset's last execution, and its consumption."""

    def __init__(self):
        self.ops: List[OpStats] = []
        self.total_s = 0.0
        self.iter_wait_s = 0.0          # the consumer waiting for blocks
        self.iter_user_s = 0.0          # time spent in the consumer's own code
        self.iter_format_s = 0.0
        self.iter_batches = 0
        self.peak_held_bytes = 0

    def to_string(self) -> str:
        if not self.ops:
            return "The dataset has not been executed yet: stats() are available after it is " \
                   "consumed (iterated, written, counted or materialized)."
        out = []
        for i, op in enumerate(self.ops, 1):
            if op.tasks or op.blocks:
                out.append(f"Operator {i} {op.name}: {op.tasks} tasks executed, {op.blocks} "
                           f"blocks produced in {_fmt_s(op.wall_time)}")
            else:
                out.append(f"Operator {i} {op.name}: {op.blocks} blocks produced in "
                           f"{_fmt_s(op.wall_time)}")
            if op.wall:
                out.append(f"* Remote wall time: {_summary(op.wall, _fmt_s)}")
                out.append(f"* Remote cpu time: {_summary(op.cpu, _fmt_s)}")
                out.append(f"* Peak heap memory usage (MiB): {op.peak_rss / (1 << 20):.2f} max")
            if op.rows_per_block:
                out.append(f"* Output num rows per block: "
                           f"{_summary(op.rows_per_block, lambda v: str(int(v)))}")
                out.append(f"* Output size bytes per block: "
                           f"{_summary(op.bytes_per_block, lambda v: str(int(v)))}")
            rate = op.rows / op.wall_time if op.wall_time > 0 else 0.0
            out.append(f"* Operator throughput: {op.rows} rows, {op.bytes} bytes, "
                       f"{rate:.1f} rows/s")
            out.append("")
        if self.iter_batches:
            out.append("Dataset iterator time breakdown:")
            out.append(f"* Total time the consumer was blocked waiting for data: "
                       f"{_fmt_s(self.iter_wait_s)}")
            out.append(f"* Total time in batch formatting: {_fmt_s(self.iter_format_s)}")
            out.append(f"* Total time in the consumer's code: {_fmt_s(self.iter_user_s)}")
            out.append(f"* Batches delivered: {self.iter_batches}")
            out.append("")
        out.append(f"Execution total time: {_fmt_s(self.total_s)}; peak bytes of blocks held "
                   f"by the pipeline: {self.peak_held_bytes}")
        return "\n".join(out)
