"""Remote functions and helpers shared by the runtime tests.

A module of its own (not conftest) because workers import the module a
remote function was defined in, by name, from the driver's sys.path.
"""
from __future__ import annotations

import os
import time

import pyray


@pyray.remote
def identity(x):
    return x


@pyray.remote
def interval(hold=0.3):
    """(start, end) of its run; it holds its resources for `hold` seconds."""
    start = time.time()
    time.sleep(hold)
    return start, time.time()


@pyray.remote
def barrier(dirpath, name, n, value=None, timeout=10):
    """Returns `value` (default: its pid) once n tasks have reached the
    barrier in dirpath, so they ran at the same time; raises if they did not
    within `timeout`."""
    _meet(dirpath, name, n, timeout)
    return os.getpid() if value is None else value


@pyray.remote
def node_at_barrier(dirpath, name, n, timeout=20):
    """barrier() that returns the id of the node it ran on."""
    _meet(dirpath, name, n, timeout)
    return pyray.get_runtime_context().get_node_id()


def _meet(dirpath, name, n, timeout):
    open(os.path.join(dirpath, name), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(dirpath)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(dirpath))} of {n} tasks ran together")
        time.sleep(0.01)


@pyray.remote
def wait_for_file(path, value=True, timeout=30):
    """Returns `value` once `path` exists (a test's release signal)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return value


def max_overlap(intervals):
    """The most (start, end) intervals that overlap at any instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda ev: (ev[0], ev[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


@pyray.remote
def node_id(_arg=None):
    """The id (hex) of the node it ran on; an argument only to place it by
    locality."""
    return pyray.get_runtime_context().get_node_id()


@pyray.remote
def filled(nbytes, fill):
    """A uint8 array of nbytes, every byte `fill` (large: it goes to the store)."""
    import numpy as np
    a = np.empty(nbytes, dtype=np.uint8)
    a.fill(fill)
    return a


@pyray.remote
def summary(arr):
    """(node id, length, sum, first, last) of an array argument."""
    import numpy as np
    return (pyray.get_runtime_context().get_node_id(), len(arr),
            int(np.asarray(arr, dtype=np.uint64).sum()), int(arr[0]), int(arr[-1]))


@pyray.remote
def square_where(i, hold=0.002):
    """(i * i, the node it ran on), after `hold` seconds."""
    time.sleep(hold)
    return i * i, pyray.get_runtime_context().get_node_id()


@pyray.remote
def add_one(arr):
    return arr + 1


@pyray.remote
def own_put(nbytes):
    """[a ref to a value this worker put]: the worker owns it."""
    import numpy as np
    return [pyray.put(np.ones(nbytes, dtype=np.uint8))]
