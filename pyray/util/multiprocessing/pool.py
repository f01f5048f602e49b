"""Pool: multiprocessing.Pool's API, with actors of the cluster as its
processes.

    from pyray.util.multiprocessing import Pool

    with Pool() as pool:                      # one process per CPU of the cluster
        pool.map(f, range(100))

Work is cut in chunks (``chunksize`` items); a chunk is one call on one of the
pool's actors, which runs the function on each of its items in turn.  An
exception raised by the function reaches the caller as itself (its type and
arguments), with the remote traceback as its ``__cause__``.
"""
from __future__ import annotations

import itertools
import math
import os
import pickle
import threading
import traceback
from multiprocessing import TimeoutError

import cloudpickle

import pyray
from pyray.actor import exit_actor
from pyray.exceptions import GetTimeoutError

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a pool process (the
    ``__cause__`` of the exception re-raised in the caller)."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


class _PoolActor:
    """One process of a pool."""

    def __init__(self, initializer=None, initargs=()):
        self._fn_bytes = None
        self._fn = None
        if initializer is not None:
            initializer, initargs = cloudpickle.loads(initializer)
            initializer(*initargs)

    def _function(self, fn_bytes):
        # the function of the last chunk is kept: a map's chunks share it
        if fn_bytes != self._fn_bytes:
            self._fn = cloudpickle.loads(fn_bytes)
            self._fn_bytes = fn_bytes
        return self._fn

    def ping(self):
        return os.getpid()

    def run_batch(self, fn_bytes, items, star):
        """Runs the function on each item; stops at the first error.  Returns
        ``(results, error)``, error being None or ``(exception, traceback)``."""
        out = []
        try:
            func = self._function(fn_bytes)
            for item in items:
                out.append(func(*item) if star else func(item))
        except Exception as e:  # noqa: BLE001 - it goes back to the caller
            tb = traceback.format_exc()
            try:
                pickle.dumps(e)
            except Exception:  # noqa: BLE001 - an exception that cannot travel
                e = RuntimeError(f"{type(e).__name__}: {e} (the exception itself could "
                                 f"not be pickled)")
            return out, (e, tb)
        return out, None

    def stop(self):
        exit_actor()


_remote_class = None


def _remote_pool_actor():
    global _remote_class
    if _remote_class is None:
        _remote_class = pyray.remote(_PoolActor)
    return _remote_class


def _raise(err):
    exc, tb = err
    raise exc from RemoteTraceback(tb)


class _Chunks:
    """The chunks of one call (map, apply, ...): their refs, in order."""

    def __init__(self, refs, single):
        self.refs = refs
        self.single = single


class AsyncResult:
    """What ``apply_async`` and ``map_async`` return."""

    def __init__(self, pool, refs, single=False, callback=None, error_callback=None):
        self._pool = pool
        self._refs = refs
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._event = threading.Event()
        self._value = None
        self._error = None          # the exception get() raises
        self._lock = threading.Lock()
        self._left = len(refs)
        if not refs:
            self._finish()
        else:
            for ref in refs:
                ref.future().add_done_callback(self._one_done)

    def _one_done(self, _fut):
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            # the values are local now; collecting them (and the user's
            # callbacks) happens on the pool's callback thread
            self._pool._callbacks.submit(self._finish)

    def _finish(self):
        try:
            value = []
            for results, err in pyray.get(self._refs):
                value.extend(results)
                if err is not None:
                    try:
                        _raise(err)
                    except Exception as e:  # noqa: BLE001
                        self._error = e
                    break
            else:
                self._value = value[0] if self._single else value
        except Exception as e:  # noqa: BLE001 - e.g. the pool's actor died
            self._error = e
        self._event.set()
        self._pool._done(self)
        try:
            if self._error is None and self._callback is not None:
                self._callback(self._value)
            elif self._error is not None and self._error_callback is not None:
                self._error_callback(self._error)
        except Exception:  # noqa: BLE001 - as multiprocessing: a callback's error is printed
            traceback.print_exc()

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        self._event.wait(timeout)

    def get(self, timeout: float | None = None):
        if not self._event.wait(timeout):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


ApplyResult = AsyncResult
MapResult = AsyncResult


class IMapIterator:
    """What ``imap`` returns: the results in order; ``next(timeout)`` waits at
    most ``timeout`` seconds (then multiprocessing.TimeoutError)."""

    def __init__(self, pool, refs):
        self._pool = pool
        self._refs = list(refs)
        self._pos = 0
        self._buffer = []
        self._failed = None
        pool._track(self)

    def __iter__(self):
        return self

    def _take(self, timeout):
        ref = self._refs[self._pos]
        try:
            results, err = pyray.get(ref, timeout=timeout)
        except GetTimeoutError:
            raise TimeoutError from None
        self._pos += 1
        return results, err

    def next(self, timeout: float | None = None):
        while not self._buffer:
            if self._failed is not None or self._pos >= len(self._refs):
                self._pool._done(self)
                raise StopIteration
            results, err = self._take(timeout)
            self._buffer.extend(results)
            if err is not None:
                self._failed = err
                self._refs = self._refs[:self._pos]     # nothing after the error
                if not self._buffer:
                    self._pool._done(self)
                    _raise(err)
                self._buffer.append(_ErrorMark(err))
        item = self._buffer.pop(0)
        if isinstance(item, _ErrorMark):
            self._pool._done(self)
            _raise(item.err)
        return item

    __next__ = next

    def _all_ready(self, timeout):
        if self._pos < len(self._refs):
            pyray.wait(self._refs[self._pos:], num_returns=len(self._refs) - self._pos,
                       timeout=timeout)


class IMapUnorderedIterator(IMapIterator):
    """What ``imap_unordered`` returns: results as their chunks finish."""

    def _take(self, timeout):
        pending = self._refs[self._pos:]
        ready, _ = pyray.wait(pending, num_returns=1, timeout=timeout)
        if not ready:
            raise TimeoutError
        i = self._pos + pending.index(ready[0])
        # the finished chunk moves to the front of the pending ones
        self._refs[self._pos], self._refs[i] = self._refs[i], self._refs[self._pos]
        self._pos += 1
        return pyray.get(ready[0])


class _ErrorMark:
    __slots__ = ("err",)

    def __init__(self, err):
        self.err = err


class _CallbackThread:
    """Runs the finishing of AsyncResults (and the user's callbacks) in
    order, on one thread of the pool, never on the runtime's own threads."""

    def __init__(self):
        self._cv = threading.Condition()
        self._jobs = []
        self._thread = None

    def submit(self, job):
        with self._cv:
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="pyray-pool-results")
                self._thread.start()
            self._cv.notify()

    def _loop(self):
        while True:
            with self._cv:
                while not self._jobs:
                    if not self._cv.wait(timeout=5.0) and not self._jobs:
                        self._thread = None      # idle: a later submit starts another
                        return
                job = self._jobs.pop(0)
            job()


class Pool:
    """A pool of processes (actors) running functions on items.

    ``processes``: how many actors (default: the cluster's CPU count).  Each
    holds 1 CPU unless ``ray_remote_args`` says otherwise.  ``initializer(
    *initargs)`` runs once in each actor as it starts.  ``maxtasksperchild``:
    an actor is replaced by a fresh one after that many chunks.
    ``ray_address``: the cluster to connect to when pyray is not initialized
    yet.
    """

    def __init__(self, processes=None, initializer=None, initargs=None,
                 maxtasksperchild=None, context=None, ray_address=None,
                 ray_remote_args=None):
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if processes is not None and (isinstance(processes, bool) or
                                      not isinstance(processes, int)):
            raise TypeError(f"processes must be an int, got {type(processes).__name__}")
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (isinstance(maxtasksperchild, bool) or
                                             not isinstance(maxtasksperchild, int) or
                                             maxtasksperchild < 1):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if not pyray.is_initialized():
            address = ray_address or os.environ.get("PYRAY_ADDRESS") or \
                os.environ.get("RAY_ADDRESS")
            pyray.init(address=address or None)
        self._remote_args = {"num_cpus": 1}
        self._remote_args.update(ray_remote_args or {})
        cpus = int(pyray.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = max(1, cpus)
        elif self._remote_args.get("num_cpus") and \
                processes * self._remote_args["num_cpus"] > cpus:
            raise ValueError(f"Tried to start a pool with {processes} processes, but the "
                             f"cluster has only {cpus} CPUs.")
        self._processes = processes
        self._init_bytes = None if initializer is None else \
            cloudpickle.dumps((initializer, tuple(initargs or ())))
        self._maxtasks = maxtasksperchild
        self._state = _RUN
        self._lock = threading.Lock()
        self._callbacks = _CallbackThread()
        self._pending = set()        # AsyncResults and iterators not yet done
        self._pending_cv = threading.Condition(self._lock)
        self._retired = []           # actors replaced after maxtasksperchild
        self._actors = [self._new_actor() for _ in range(processes)]
        self._counts = [0] * processes
        self._next = itertools.cycle(range(processes))
        # start them all before work arrives (an initializer's error shows here)
        pyray.get([a.ping.remote() for a in self._actors])

    def _new_actor(self):
        return _remote_pool_actor().options(**self._remote_args).remote(
            self._init_bytes)

    # -- bookkeeping ---------------------------------------------------------
    def _check_running(self):
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _track(self, result):
        with self._lock:
            self._pending.add(result)

    def _done(self, result):
        with self._lock:
            self._pending.discard(result)
            self._pending_cv.notify_all()

    def _submit_chunks(self, func, chunks, star):
        """One actor call per chunk, the actors taken in turn."""
        # by value (functions of __main__ too), once per call of the pool
        fn_ref = pyray.put(cloudpickle.dumps(func))
        refs = []
        with self._lock:
            for chunk in chunks:
                i = next(self._next)
                actor = self._actors[i]
                refs.append(actor.run_batch.remote(fn_ref, chunk, star))
                if self._maxtasks is not None:
                    self._counts[i] += 1
                    if self._counts[i] >= self._maxtasks:
                        # it leaves after the calls it has; a fresh one takes its place
                        actor.stop.remote()
                        self._retired.append(actor)
                        self._actors[i] = self._new_actor()
                        self._counts[i] = 0
        return refs

    @staticmethod
    def _chunks(iterable, chunksize, star):
        items = list(iterable)
        if star:
            items = [tuple(x) for x in items]
        return [items[i:i + chunksize] for i in range(0, len(items), chunksize)]

    def _default_chunksize(self, n):
        # as multiprocessing: about four chunks per process
        return max(1, math.ceil(n / (self._processes * 4))) if n else 1

    @staticmethod
    def _check_chunksize(chunksize):
        if chunksize is not None and (isinstance(chunksize, bool) or
                                      not isinstance(chunksize, int) or chunksize < 1):
            raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")

    # -- apply ----------------------------------------------------------------
    def apply(self, func, args=(), kwds=None):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        self._check_running()
        kwds = dict(kwds or {})
        call = _Call(func, tuple(args), kwds)
        refs = self._submit_chunks(call, [[()]], True)
        result = AsyncResult(self, refs, single=True, callback=callback,
                             error_callback=error_callback)
        self._track_if_pending(result)
        return result

    def _track_if_pending(self, result):
        with self._lock:
            if not result.ready():
                self._pending.add(result)

    # -- map ------------------------------------------------------------------
    def _map_async(self, func, iterable, chunksize, star, callback, error_callback):
        self._check_running()
        self._check_chunksize(chunksize)
        items = list(iterable)
        if chunksize is None:
            chunksize = self._default_chunksize(len(items))
        refs = self._submit_chunks(func, self._chunks(items, chunksize, star), star)
        result = AsyncResult(self, refs, callback=callback, error_callback=error_callback)
        self._track_if_pending(result)
        return result

    def map(self, func, iterable, chunksize=None):
        return self._map_async(func, iterable, chunksize, False, None, None).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        return self._map_async(func, iterable, chunksize, True, None, None).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None):
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func, iterable, chunksize=1):
        self._check_running()
        self._check_chunksize(chunksize)
        return IMapIterator(self, self._submit_chunks(
            func, self._chunks(iterable, chunksize, False), False))

    def imap_unordered(self, func, iterable, chunksize=1):
        self._check_running()
        self._check_chunksize(chunksize)
        return IMapUnorderedIterator(self, self._submit_chunks(
            func, self._chunks(iterable, chunksize, False), False))

    # -- lifetime ---------------------------------------------------------------
    def close(self):
        """No more work is accepted; what was submitted still runs."""
        if self._state == _RUN:
            self._state = _CLOSE

    def terminate(self):
        """Stops the pool's actors now; unfinished work is lost."""
        self._state = _TERMINATE
        with self._lock:
            actors = self._actors + self._retired
            self._actors, self._retired = [], []
        for a in actors:
            try:
                pyray.kill(a)
            except Exception:  # noqa: BLE001 - gone already
                pass

    def join(self, timeout=None):
        """Waits for the submitted work to finish (after close() or
        terminate()), then stops the actors."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        with self._lock:
            ok = self._pending_cv.wait_for(
                lambda: not any(isinstance(r, AsyncResult) for r in self._pending),
                timeout=timeout)
        its = [r for r in list(self._pending) if isinstance(r, IMapIterator)]
        for it in its:
            it._all_ready(timeout)
        if ok and self._state == _CLOSE:
            self.terminate()
            self._state = _CLOSE

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    def __reduce__(self):
        raise TypeError("pool objects cannot be passed between processes or pickled")

    def __repr__(self):
        return f"<pyray.util.multiprocessing.Pool state={self._state} " \
               f"processes={self._processes}>"


class _Call:
    """apply's function with its arguments, run as a one-item chunk."""

    def __init__(self, func, args, kwds):
        self.func = func
        self.args = args
        self.kwds = kwds

    def __call__(self):
        return self.func(*self.args, **self.kwds)
