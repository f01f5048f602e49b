"""A first-in first-out queue shared by the driver, tasks and actors.

    from pyray.util.queue import Queue, Empty

    q = Queue(maxsize=100)

    @pyray.remote
    def producer(q):
        for i in range(10):
            q.put(i)

    producer.remote(q)
    q.get(timeout=5)            # 0

The items live in an actor (an asyncio queue); a Queue object is a handle to
it and can be passed to tasks and actors like any argument.  Blocking calls
wait inside the actor, so many callers may block at once.
"""
from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from collections.abc import Iterable

import pyray
from pyray.actor import exit_actor


class Empty(_stdlib_queue.Empty):
    """get() found no item (within its timeout)."""


class Full(_stdlib_queue.Full):
    """put() found no room (within its timeout)."""


def _check_timeout(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"'timeout' must be a number or None, got {type(timeout).__name__}")
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return float(timeout)


class Queue:
    """A queue backed by an actor.

    ``maxsize`` <= 0 means unbounded.  ``actor_options`` are passed to
    ``.options()`` of the actor that holds the items (e.g. ``{"name": ...,
    "lifetime": "detached"}``); it takes no CPU unless asked to.
    """

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, got {type(maxsize).__name__}")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(f"actor_options must be a dict, got {type(actor_options).__name__}")
        self.maxsize = maxsize
        options = {"num_cpus": 0}
        options.update(actor_options or {})
        self.actor = _remote_queue_actor().options(**options).remote(maxsize)

    def _handle(self):
        if self.actor is None:
            raise RuntimeError("This Queue has been shut down.")
        return self.actor

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return pyray.get(self._handle().qsize.remote())

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        return pyray.get(self._handle().empty.remote())

    def full(self) -> bool:
        return pyray.get(self._handle().full.remote())

    # -- put ----------------------------------------------------------------
    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        """Adds an item.  With ``block`` (the default) waits for room, at most
        ``timeout`` seconds (forever if None), then raises Full; without it
        raises Full at once when the queue is full."""
        actor = self._handle()
        if not block:
            ok = pyray.get(actor.put_nowait.remote(item))
        else:
            timeout = _check_timeout(timeout)
            ok = pyray.get(actor.put.remote(item, timeout))
        if not ok:
            raise Full

    async def put_async(self, item, block: bool = True, timeout: float | None = None) -> None:
        """put() for asyncio code: awaits instead of blocking the thread."""
        actor = self._handle()
        if not block:
            ok = await actor.put_nowait.remote(item)
        else:
            timeout = _check_timeout(timeout)
            ok = await actor.put.remote(item, timeout)
        if not ok:
            raise Full

    def put_nowait(self, item) -> None:
        """put(item, block=False)."""
        self.put(item, block=False)

    def put_nowait_batch(self, items) -> None:
        """Adds all of ``items`` or, when they do not all fit, none of them
        (raises Full)."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        items = list(items)
        err = pyray.get(self._handle().put_nowait_batch.remote(items))
        if err is not None:
            raise Full(err)

    # -- get ----------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None):
        """Removes and returns the oldest item.  With ``block`` (the default)
        waits for one, at most ``timeout`` seconds (forever if None), then
        raises Empty; without it raises Empty at once when there is none."""
        actor = self._handle()
        if not block:
            ok, item = pyray.get(actor.get_nowait.remote())
        else:
            timeout = _check_timeout(timeout)
            ok, item = pyray.get(actor.get.remote(timeout))
        if not ok:
            raise Empty
        return item

    async def get_async(self, block: bool = True, timeout: float | None = None):
        """get() for asyncio code: awaits instead of blocking the thread."""
        actor = self._handle()
        if not block:
            ok, item = await actor.get_nowait.remote()
        else:
            timeout = _check_timeout(timeout)
            ok, item = await actor.get.remote(timeout)
        if not ok:
            raise Empty
        return item

    def get_nowait(self):
        """get(block=False)."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list:
        """Removes and returns ``num_items`` items, or none (raises Empty) when
        the queue holds fewer."""
        if isinstance(num_items, bool) or not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        ok, items = pyray.get(self._handle().get_nowait_batch.remote(num_items))
        if not ok:
            raise Empty(items)
        return items

    # -- end ----------------------------------------------------------------
    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Stops the actor holding the items (they are lost).  Without
        ``force`` the actor finishes the calls it has first, for at most
        ``grace_period_s`` seconds, before it is killed.  The Queue cannot be
        used afterwards."""
        actor = self.actor
        if actor is None:
            return
        self.actor = None
        if force:
            pyray.kill(actor, no_restart=True)
            return
        grace = max(0.0, float(grace_period_s))
        # the actor waits (at most the grace period) for its blocked callers,
        # then leaves; one that does not answer in time is killed
        done = actor.stop.remote(grace)
        ready, _ = pyray.wait([done], timeout=grace + 1.0)
        drained = False
        if ready:
            try:
                drained = pyray.get(done) is not False
            except Exception:  # noqa: BLE001 - it left: that is the answer
                drained = True
        if not drained:
            pyray.kill(actor, no_restart=True)


_remote_class = None


def _remote_queue_actor():
    global _remote_class
    if _remote_class is None:
        _remote_class = pyray.remote(_QueueActor)
    return _remote_class


class _QueueActor:
    """Holds the items.  Every method is a coroutine: a put or get that waits
    leaves the actor free for the other callers."""

    def __init__(self, maxsize):
        self.maxsize = maxsize
        self._queue = None
        self.waiting = 0            # puts and gets blocked in the queue

    @property
    def queue(self):
        # made on the actor's event loop, where it is used
        if self._queue is None:
            self._queue = asyncio.Queue(self.maxsize)
        return self._queue

    async def qsize(self):
        return self.queue.qsize()

    async def empty(self):
        return self.queue.empty()

    async def full(self):
        return self.queue.full()

    async def put(self, item, timeout=None):
        q = self.queue
        if timeout is None:
            self.waiting += 1
            try:
                await q.put(item)
            finally:
                self.waiting -= 1
            return True
        if not q.full():
            q.put_nowait(item)
            return True
        if timeout == 0:
            return False
        self.waiting += 1
        try:
            await asyncio.wait_for(q.put(item), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self.waiting -= 1

    async def put_nowait(self, item):
        try:
            self.queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            return False

    async def put_nowait_batch(self, items):
        q = self.queue
        if self.maxsize > 0 and len(items) + q.qsize() > self.maxsize:
            return (f"Cannot add {len(items)} items to queue of size {q.qsize()} and "
                    f"maxsize {self.maxsize}.")
        for item in items:
            q.put_nowait(item)
        return None

    async def get(self, timeout=None):
        q = self.queue
        if timeout is None:
            self.waiting += 1
            try:
                return True, await q.get()
            finally:
                self.waiting -= 1
        if not q.empty():
            return True, q.get_nowait()
        if timeout == 0:
            return False, None
        self.waiting += 1
        try:
            return True, await asyncio.wait_for(q.get(), timeout)
        except asyncio.TimeoutError:
            return False, None
        finally:
            self.waiting -= 1

    async def get_nowait(self):
        try:
            return True, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return False, None

    async def get_nowait_batch(self, num_items):
        q = self.queue
        if num_items > q.qsize():
            return False, f"Cannot get {num_items} items from queue of size {q.qsize()}."
        return True, [q.get_nowait() for _ in range(num_items)]

    async def stop(self, grace_period_s=0.0):
        """Leaves once no caller is blocked in put or get; False when some
        still are after ``grace_period_s`` (the caller then kills it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_period_s
        while self.waiting and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self.waiting:
            return False
        exit_actor()


__all__ = ["Queue", "Empty", "Full"]
