"""Progress of a running pipeline, on stderr.

On a terminal: one line per operator (rows and bytes done, throughput, tasks
running), redrawn in place at most ten times a second.  Elsewhere (logs, CI):
one summary line when a pipeline that ran for a second or more ends.
``DataContext.enable_progress_bars = False`` turns both off;
``enable_operator_progress_bars = False`` keeps only the pipeline's line.
"""
from __future__ import annotations

import sys
import time
from typing import List

REFRESH_S = 0.1
BAR_WIDTH = 20
# pipelines shorter than this print no summary line (take(5) stays quiet)
SUMMARY_MIN_S = 1.0


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def _fmt_rate(rows: float) -> str:
    if rows >= 1e6:
        return f"{rows / 1e6:.1f}M"
    if rows >= 1e3:
        return f"{rows / 1e3:.1f}k"
    return f"{rows:.0f}"


class ProgressReporter:
    def __init__(self, title: str, ops: List, enabled: bool, stream=None,
                 per_operator: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.title = title
        self.ops = ops
        self.per_operator = per_operator
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._drawn = 0

    def _line(self, op, now) -> str:
        st = op.stats
        el = max(1e-9, now - (st.start or self.t0))
        running = len(getattr(op, "running", ()) or ())
        extra = f", {running} running" if running else ""
        total = getattr(op, "total_tasks", None)
        bar = ""
        if total:
            filled = int(BAR_WIDTH * min(st.tasks, total) / total)
            bar = f" |{'#' * filled}{' ' * (BAR_WIDTH - filled)}| {st.tasks}/{total} tasks"
        return (f"- {op.name}:{bar} {st.rows} rows, {_fmt_bytes(st.bytes)}, "
                f"{_fmt_rate(st.rows / el)} rows/s{extra}")

    def update(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if not force and now - self._last < REFRESH_S:
            return
        self._last = now
        lines = [f"Running {self.title}: {now - self.t0:.1f}s, "
                 f"{self.ops[-1].stats.rows if self.ops else 0} rows out"]
        if self.per_operator:
            lines += [self._line(op, now) for op in self.ops]
        out = ""
        if self._drawn:
            out += f"\x1b[{self._drawn}F"
        out += "".join(f"\x1b[2K{ln}\n" for ln in lines)
        self._drawn = len(lines)
        try:
            self.stream.write(out)
            self.stream.flush()
        except (OSError, ValueError):
            self.tty = False

    def close(self, ok: bool) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.update(force=True)
            return
        if not ok:
            return
        el = time.perf_counter() - self.t0
        if el < SUMMARY_MIN_S:
            return
        sink = self.ops[-1].stats if self.ops else None
        rows = sink.rows if sink else 0
        names = " -> ".join(op.name for op in self.ops)
        try:
            self.stream.write(f"pyray.data: {names}: {rows} rows in {el:.2f}s\n")
        except (OSError, ValueError):
            pass
