"""ActorPool: spread work over a fixed set of actors."""
from __future__ import annotations

import collections


def _key(ref):
    """A call that returns several refs is tracked by their tuple."""
    return tuple(ref) if isinstance(ref, list) else ref


def _first(key):
    return key[0] if isinstance(key, tuple) else key


class ActorPool:
    """Runs fn(actor, value) on whichever actor is free.

    pool = ActorPool([A.remote(), A.remote()])
    list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3]))  # [2, 4, 6]

    Calls are submitted when map()/submit() is called (as many as there are
    idle actors; the rest wait in the pool and go out as actors come back).
    A call's error (an actor that died included) surfaces from the
    get_next*() that returns it, and its actor goes back to the pool."""

    def __init__(self, actors):
        self._idle_actors = list(actors)
        self._future_to_actor = {}      # ref (tuple of refs) -> (index, actor)
        self._index_to_future = {}      # submission index -> ref (or list of refs)
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits = collections.deque()

    def map(self, fn, values):
        """fn(actor, v) for every v, results in order.  Submitted now;
        results of calls made before and not yet fetched are dropped."""
        self._drop_unfetched()
        for v in values:
            self.submit(fn, v)
        return self._results(self.get_next)

    def map_unordered(self, fn, values):
        """As map(), results in the order they finish."""
        self._drop_unfetched()
        for v in values:
            self.submit(fn, v)
        return self._results(self.get_next_unordered)

    def _drop_unfetched(self):
        while self.has_next():
            try:
                self.get_next_unordered(timeout=0)
            except TimeoutError:
                pass
            except Exception:  # noqa: BLE001 - a dropped call's error is not ours to raise
                pass

    def _results(self, get):
        while self.has_next():
            yield get()

    def submit(self, fn, value):
        """Runs fn(actor, value) on an idle actor, or once one is free."""
        if self._idle_actors:
            actor = self._idle_actors.pop()
            ref = fn(actor, value)
            self._future_to_actor[_key(ref)] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = ref
            self._next_task_index += 1
        else:
            self._pending_submits.append((fn, value))

    def has_next(self):
        """Whether a result is still to be fetched."""
        return bool(self._future_to_actor)

    def has_free(self):
        """Whether an actor is idle and nothing waits to be submitted."""
        return bool(self._idle_actors) and not self._pending_submits

    def get_next(self, timeout=None, ignore_if_timedout=False):
        """The next result in submission order.  With a timeout, a result
        not ready in time raises TimeoutError; with ignore_if_timedout=True
        that call is also dropped (its actor returns to the pool) so that
        the next get_next() moves on to the following one."""
        import pyray
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after "
                             "get_next_unordered().")
        ref = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            ready, _ = pyray.wait([_first(_key(ref))], timeout=timeout)
            if not ready:
                if not ignore_if_timedout:
                    raise TimeoutError("Timed out waiting for result")
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(ref))
        self._return_actor(actor)
        if timed_out:
            raise TimeoutError(f"Timed out waiting for result. The task {ref} has been "
                               "ignored.")
        return pyray.get(ref)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        """Whichever result is ready first (TimeoutError if none is within
        timeout; None instead with ignore_if_timedout=True: no call is
        dropped, as none is first).  After this, get_next() may not be used
        until the results fetched so far catch up."""
        import pyray
        if not self.has_next():
            raise StopIteration("No more results to get")
        firsts = {_first(k): k for k in self._future_to_actor}
        ready, _ = pyray.wait(list(firsts), num_returns=1, timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                return None
            raise TimeoutError("Timed out waiting for result")
        key = firsts[ready[0]]
        index, actor = self._future_to_actor.pop(key)
        ref = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        self._return_actor(actor)
        return pyray.get(ref)

    def _return_actor(self, actor):
        self._idle_actors.append(actor)
        if self._pending_submits:
            self.submit(*self._pending_submits.popleft())

    def push(self, actor):
        """Adds an actor to the pool (ValueError if it is in it already)."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)

    def pop_idle(self):
        """Takes an idle actor out of the pool, or None if there is none."""
        if self.has_free():
            return self._idle_actors.pop()
        return None
