"""@serve.batch: calls to an async method (or function) are gathered into
lists and run as one call, up to max_batch_size, waiting at most
batch_wait_timeout_s after the first call of a batch."""
from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Callable, Optional


_FUNCTION_QUEUES = {}   # a @serve.batch function (not a method) -> its queue


class _BatchQueue:
    def __init__(self, fn, max_batch_size, timeout_s):
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.pending = []
        self.full = None
        self.task = None

    async def submit(self, owner, args, kwargs):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.pending.append((args, kwargs, fut))
        if self.full is None:
            self.full = asyncio.Event()
        if len(self.pending) >= self.max_batch_size:
            self.full.set()
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run(owner))
        return await fut

    async def _run(self, owner):
        while self.pending:
            if len(self.pending) < self.max_batch_size:
                try:
                    await asyncio.wait_for(self.full.wait(), self.timeout_s)
                except asyncio.TimeoutError:
                    pass
            batch = self.pending[:self.max_batch_size]
            del self.pending[:self.max_batch_size]
            self.full.clear()
            if len(self.pending) >= self.max_batch_size:
                self.full.set()
            await self._call(owner, batch)

    async def _call(self, owner, batch):
        nargs = len(batch[0][0])
        keys = list(batch[0][1])
        try:
            args = [[b[0][i] for b in batch] for i in range(nargs)]
            kwargs = {k: [b[1][k] for b in batch] for k in keys}
        except (IndexError, KeyError):
            err = TypeError("All calls to a @serve.batch function must pass the same "
                            "arguments (positional count and keyword names).")
            for _, _, f in batch:
                if not f.done():
                    f.set_exception(err)
            return
        try:
            out = self.fn(owner, *args, **kwargs) if owner is not None else \
                self.fn(*args, **kwargs)
            if inspect.isawaitable(out):
                out = await out
            if not isinstance(out, (list, tuple)) or len(out) != len(batch):
                raise TypeError(f"A @serve.batch function must return a list of "
                                f"{len(batch)} results (one per call in the batch), got "
                                f"{type(out).__name__}"
                                + (f" of length {len(out)}" if hasattr(out, "__len__") else ""))
        except Exception as e:  # noqa: BLE001 - every caller of the batch gets it
            for _, _, f in batch:
                if not f.done():
                    f.set_exception(e)
            return
        for (_, _, f), value in zip(batch, out):
            if not f.done():
                f.set_result(value)


def batch(_func: Optional[Callable] = None, max_batch_size: int = 10,
          batch_wait_timeout_s: float = 0.01, **unsupported):
    """@serve.batch or @serve.batch(max_batch_size=, batch_wait_timeout_s=)."""
    if unsupported:
        raise TypeError(f"@serve.batch got unsupported options {sorted(unsupported)}; "
                        "pyray.serve supports max_batch_size and batch_wait_timeout_s.")
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or \
            max_batch_size < 1:
        raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
    if isinstance(batch_wait_timeout_s, bool) or not isinstance(
            batch_wait_timeout_s, (int, float)) or batch_wait_timeout_s < 0:
        raise ValueError(f"batch_wait_timeout_s must be a number >= 0, got "
                         f"{batch_wait_timeout_s!r}")

    def wrap(fn):
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("Functions decorated with @serve.batch must be 'async def'.")
        attr = f"__serve_batch_queue_{fn.__name__}"

        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            owner = None
            if args and getattr(type(args[0]), fn.__name__, None) is wrapper:
                owner, args = args[0], args[1:]
            if owner is None:
                q = _FUNCTION_QUEUES.get(wrapper)
                if q is None:
                    q = _FUNCTION_QUEUES[wrapper] = _BatchQueue(fn, max_batch_size,
                                                                batch_wait_timeout_s)
            else:
                q = owner.__dict__.get(attr)
                if q is None:
                    q = _BatchQueue(fn, max_batch_size, batch_wait_timeout_s)
                    setattr(owner, attr, q)
            return await q.submit(owner, args, kwargs)

        wrapper._serve_batch = (max_batch_size, batch_wait_timeout_s)
        return wrapper

    if _func is not None:
        return wrap(_func)
    return wrap
