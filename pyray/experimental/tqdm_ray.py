"""Progress bars from tasks and actors, as Ray's `ray.experimental.tqdm_ray`.

    from pyray.experimental.tqdm_ray import tqdm
    for x in tqdm(range(1000), desc="work"):
        ...

In the driver it is a plain text bar on stderr (redrawn in place on a
terminal).  In a task or an actor it prints a progress line at most once per
`flush_interval_s` (and when it closes), which reaches the driver through
the worker's output forwarding, prefixed with the worker, like any print.
"""
from __future__ import annotations

import sys
import time


def _in_worker() -> bool:
    from pyray._private.context import ctx
    return ctx.mode == "worker"


class tqdm:
    def __init__(self, iterable=None, desc=None, total=None, unit="it", position=None,
                 flush_interval_s=1.0, disable=False, **kwargs):
        self.iterable = iterable
        self.desc = desc or ""
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.total = total
        self.unit = unit
        self.position = position
        self.n = 0
        self.disable = disable
        self._interval = float(flush_interval_s)
        self._start = self._last = time.monotonic()
        self._closed = False
        self._worker = _in_worker()
        self._tty = (not self._worker) and getattr(sys.stderr, "isatty", lambda: False)()

    def __iter__(self):
        if self.iterable is None:
            raise TypeError("tqdm() was given no iterable to iterate over")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self):
        return self.total or 0

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._emit(final=False)

    def set_description(self, desc=None, refresh=True):
        self.desc = desc or ""
        if refresh:
            self.refresh()

    def set_postfix(self, *args, **kwargs):
        """Accepted for tqdm's API; the line shows count, rate and elapsed time."""

    def refresh(self):
        self._emit(final=False)

    def reset(self, total=None):
        self.n = 0
        if total is not None:
            self.total = total
        self._start = self._last = time.monotonic()

    def close(self):
        if not self._closed:
            self._closed = True
            self._emit(final=True)

    def _line(self):
        elapsed = time.monotonic() - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            pct = 100.0 * self.n / self.total
            return (f"{head}{pct:3.0f}% {self.n}/{self.total} "
                    f"[{elapsed:.1f}s, {rate:.2f}{self.unit}/s]")
        return f"{head}{self.n}{self.unit} [{elapsed:.1f}s, {rate:.2f}{self.unit}/s]"

    def _emit(self, final):
        if self.disable:
            return
        line = self._line()
        if self._tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
            sys.stderr.flush()
        elif self._worker or final:
            print(line, file=sys.stdout if self._worker else sys.stderr, flush=True)


def safe_print(*args, **kwargs):
    """print() that does not break a bar being drawn in place."""
    print(*args, **kwargs)
