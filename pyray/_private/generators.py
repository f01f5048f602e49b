"""Generator tasks and actor methods: items handed out as they are yielded.

A remote function or actor method that yields returns an
``ObjectRefGenerator`` (``num_returns="streaming"``, the default for
generator functions), or, with ``num_returns="dynamic"``, one ref to a
``DynamicObjectRefGenerator`` that lists the items once the task is done.

How an item travels:

* the caller (the owner) records a ``Stream`` for the task before it is
  submitted (``submit``); the task travels as any other, its
  ``num_returns`` on the wire being ``(mode, backpressure)`` instead of a
  count, and its one return object is the *completion* object, ready when
  the task has finished;
* the worker (``run_items`` / ``run_items_async``) iterates the generator
  and sends each item to the owner as it is yielded (GENERATOR_ITEMS, on
  the path its reply takes, so items always arrive before the reply): its
  value inline up to the inline limit, else written to the store first;
  an exception raised by the generator becomes the item at that index;
* the owner (``Generators._h_generator_items``) records item i as the
  owned object ``object_id(task_id, i + 2)``, skipping indexes it already
  has (a retried task sends them again); ``next(gen)`` hands out a ref to
  the next one once it is there, and StopIteration once the task's reply
  came and every item was handed out;
* with ``_generator_backpressure_num_objects=N`` the worker pauses while N
  items are unconsumed; the owner tells it how many were consumed
  (GENERATOR_ACK).

Dropping the generator frees the items not handed out (and any that arrive
later).  Nothing here runs for a task that is not a generator: the rest of
the runtime checks one attribute (``spec.stream``, ``call.stream``).
"""
from __future__ import annotations

import logging
import pickle
import threading
import time

from pyray import exceptions as exc
from pyray._private import errors, serialization
from pyray._private.channel import Channel
from pyray._private.ids import TASK_ID_SIZE, object_id
from pyray._private.object_ref import ObjectRef
from pyray._private.ownership import READY, Owned
from pyray._private.protocol import (ERROR, GENERATOR_ACK, GENERATOR_ITEMS, IN_STORE, VALUE,
                                     Op)

log = logging.getLogger("pyray.core_worker")

STREAMING = "streaming"
DYNAMIC = "dynamic"
# acknowledged to a producer whose consumer went away: never pause again
_UNLIMITED = 1 << 62


def item_id(task_id, index):
    """The object id of a generator task's item `index` (0-based); index 1
    of the task is its completion object."""
    return object_id(task_id, index + 2)


def wire_value(mode, backpressure):
    """What PUSH_TASK.num_returns carries for a generator task."""
    if mode != STREAMING or backpressure is None or backpressure <= 0:
        backpressure = -1
    return (mode, int(backpressure))


# ======================================================================= owner
class Stream:
    """The owner's record of one generator task."""
    __slots__ = ("task_id", "mode", "backpressure", "wire", "received", "consumed", "done",
                 "dropped", "worker", "waiters", "completion")

    def __init__(self, task_id, mode, backpressure):
        self.task_id = task_id
        self.mode = mode
        self.wire = wire_value(mode, backpressure)
        self.backpressure = self.wire[1]
        self.received = 0        # items 0..received-1 arrived
        self.consumed = 0        # items 0..consumed-1 handed out by next()
        self.done = False        # the task's reply came (or it failed): no more items
        self.dropped = False     # the consumer let go of the generator
        self.worker = None       # the producing worker's inbox (acks go there)
        self.waiters = None      # concurrent futures of async consumers
        self.completion = None   # the completion object's id


def submit(cw, spec, completion_ref, mode, backpressure, actor=False):
    """Submits a generator task (an actor call when `actor`); returns what
    `.remote()` gives back for it."""
    client = getattr(cw, "submit_generator", None)
    if client is not None:       # a Ray Client driver: the client server runs the stream
        return client(spec, completion_ref, mode, backpressure, actor)
    st = Stream(spec.task_id, mode, backpressure)
    st.completion = completion_ref._id
    spec.stream = st
    with cw.lock:
        cw.streams[spec.task_id] = st
    if actor:
        cw.submit_actor_task(spec)
    else:
        cw.submit(spec)
    if mode == DYNAMIC:
        return completion_ref
    return ObjectRefGenerator(completion_ref, st, cw)


class Generators:
    """The owner's side of generator tasks; one part of CoreWorker
    (core_worker.py).  Methods run with the core worker's lock held."""

    def _init_generators(self):
        self.streams = {}            # task id -> Stream, while the task runs or is read

    def _h_generator_items(self, msg, frames):
        _, task_id, worker, first, items = GENERATOR_ITEMS.parse(msg)
        st = self.streams.get(task_id)
        if st is None:
            # its consumer is gone and the task finished: free what came
            for i, item in enumerate(items, first):
                self._drop_item_value(item_id(task_id, i), item)
            return
        if worker != st.worker:
            st.worker = worker          # a retry runs elsewhere: it starts unacknowledged
            if st.backpressure > 0 and (st.consumed or st.dropped):
                self.out.send(worker, GENERATOR_ACK.make(
                    task_id, _UNLIMITED if st.dropped else st.consumed))
        owned = self.owned
        for i, item in enumerate(items, first):
            oid = item_id(task_id, i)
            if i != st.received:
                # sent again by a retried task (or out of order: never on
                # one path): the copy already recorded stays
                e = owned.get(oid)
                if item[0] == IN_STORE and (e is None or e.payload != item[1]):
                    self._drop_item_value(oid, item)
                continue
            st.received += 1
            if st.dropped:
                self._drop_item_value(oid, item)
                continue
            kind, payload, contained_at = item
            e = Owned(READY, kind, payload)
            e.contained_at = contained_at
            owned[oid] = e
        self._stream_changed(st)

    def _drop_item_value(self, oid, item):
        kind, payload, contained_at = item
        if kind == IN_STORE and self.plasma is not None:
            if payload == self.node_id:
                self._store_delete(oid)
            else:
                self.cluster.free(payload, oid)
        if contained_at is not None:
            from pyray._private.protocol import RELEASE_CONTAINED
            self.out.send(contained_at, RELEASE_CONTAINED.make([oid]))

    def _stream_changed(self, st):
        if st.waiters:
            ws, st.waiters = st.waiters, None
            for f in ws:
                if not f.done():
                    f.set_result(None)
        self.cv.notify_all()

    def _generator_finished(self, spec, results, contained_at):
        """The reply of a generator task (from _h_task_replies): every item
        came before it."""
        st = spec.stream
        oid, kind, payload = results[0]
        if kind == ERROR:
            self._generator_failed(spec, payload)
            self.set_ready(oid, kind, payload, contained_at)
            return
        self._end_stream(st)
        if st.mode != DYNAMIC:
            self.set_ready(oid, kind, payload, contained_at)
            return
        kind, payload, refs = self._dynamic_value(st)
        self.set_ready(oid, kind, payload)
        e = self.owned.get(oid)
        if e is not None and refs:
            e.contained = refs      # the items live as long as the list does
        st.consumed = st.received

    def _generator_failed(self, spec, payload):
        """The task failed as a whole (its worker died, it was cancelled, an
        argument failed): the error is the next item, and the last."""
        st = spec.stream
        if st.done:
            return
        if not st.dropped and st.mode == STREAMING:
            self.owned[item_id(st.task_id, st.received)] = Owned(READY, ERROR, payload)
            st.received += 1
        elif st.mode == DYNAMIC:
            self._free_unconsumed(st)
        self._end_stream(st)

    def _end_stream(self, st):
        st.done = True
        if st.dropped or st.mode == DYNAMIC:
            self.streams.pop(st.task_id, None)
        self._stream_changed(st)

    def _dynamic_value(self, st):
        """The value of a dynamic generator's return: the list of its items,
        or the error one of them holds (then the items are freed)."""
        for i in range(st.received):
            e = self.owned.get(item_id(st.task_id, i))
            if e is not None and e.kind == ERROR:
                self._free_unconsumed(st)
                return ERROR, e.payload, None
        addr = self.addr
        refs = [ObjectRef(item_id(st.task_id, i), addr) for i in range(st.received)]
        ser = serialization.serialize(DynamicObjectRefGenerator(refs))
        return VALUE, serialization.inline_payload(ser), refs

    def _free_unconsumed(self, st):
        owned, local = self.owned, self.local_refs
        for i in range(st.consumed, st.received):
            oid = item_id(st.task_id, i)
            e = owned.get(oid)
            if e is not None and oid not in local and not e.borrowers:
                self._free(oid, e)
        st.consumed = st.received

    def _generator_dropped(self, task_id):
        """The consumer's ObjectRefGenerator was collected (drain_decrefs)."""
        st = self.streams.get(task_id)
        if st is None:
            return
        st.dropped = True
        self._free_unconsumed(st)
        if st.done:
            self.streams.pop(task_id, None)
        elif st.backpressure > 0 and st.worker is not None:
            self.out.send(st.worker, GENERATOR_ACK.make(task_id, _UNLIMITED))

    def _take_item(self, st):
        """A ref to the next item, None if it has not come yet; StopIteration
        at the end.  Lock held."""
        if st.consumed < st.received:
            i = st.consumed
            st.consumed = i + 1
            ref = ObjectRef(item_id(st.task_id, i), self.addr)
            if st.backpressure > 0 and st.worker is not None and not st.done:
                self.out.send(st.worker, GENERATOR_ACK.make(st.task_id, st.consumed))
            return ref
        if st.done:
            raise StopIteration
        return None

    def _item_ready(self, st):
        return st.consumed < st.received or st.done


# ==================================================================== consumer
class ObjectRefGenerator:
    """The refs of a generator task's items, in order, as they are yielded.

    ``next(gen)`` blocks until the next item exists and returns its ref
    (``get`` it for the value; an exception the generator raised is raised
    by the item where it happened); StopIteration after the last.  Also
    ``async for`` / ``await gen.__anext__()``, ``completed()`` (a ref ready
    when the task has finished), ``is_finished()``, ``pyray.wait([gen])``
    and ``pyray.cancel(gen)``.  Usable in the process that called
    ``.remote()``."""

    def __init__(self, completion_ref, stream, cw):
        self._ref = completion_ref
        self._st = stream
        self._cw = cw

    # sync --------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self):
        return self._next_sync(None)

    def _next_sync(self, timeout_s=None):
        """next() with a timeout: GetTimeoutError when no item came in time."""
        cw, st = self._cw, self._st
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        blocked = False
        lead = 4
        try:
            with cw.lock:
                if cw.decref_q:
                    cw.drain_decrefs()
                while True:
                    ref = cw._take_item(st)
                    if ref is not None:
                        return ref
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise exc.GetTimeoutError(
                            f"No item of generator task {st.task_id.hex()} within {timeout_s}s.")
                    if not blocked:
                        blocked = True
                        cw._notify_blocked(True)
                    # items come on the task's reply path: read it here a few
                    # times (one thread wake-up per item, not two)
                    ch = cw._reply_channel(st.completion) if lead else None
                    if ch is not None:
                        lead -= 1
                        cw._read_replies(ch, remaining)
                    else:
                        lead = 4
                        cw.cv.wait(remaining if remaining is not None and remaining < 1.0
                                   else 1.0)
        finally:
            if blocked:
                cw._notify_blocked(False)

    # async -------------------------------------------------------------
    def __aiter__(self):
        return self

    async def __anext__(self):
        import asyncio
        import concurrent.futures
        cw, st = self._cw, self._st
        while True:
            with cw.lock:
                if cw.decref_q:
                    cw.drain_decrefs()
                try:
                    ref = cw._take_item(st)
                except StopIteration:
                    raise StopAsyncIteration from None
                if ref is not None:
                    return ref
                fut = concurrent.futures.Future()
                st.waiters = (st.waiters or []) + [fut]
            await asyncio.wrap_future(fut)

    # the rest ----------------------------------------------------------
    def completed(self):
        """A ref that is ready when the task has finished (its error, if the
        task as a whole failed)."""
        return self._ref

    def is_finished(self):
        """True once the task finished and every item was handed out."""
        st = self._st
        return st.done and st.consumed >= st.received

    def _ready(self):
        """Lock held: next() would not block."""
        return self._cw._item_ready(self._st)

    def task_id(self):
        return self._ref._id[:TASK_ID_SIZE]

    def __del__(self):
        cw = self._cw
        if cw is not None:
            cw.decref_q.append((None, self._st.task_id))

    def __reduce__(self):
        raise TypeError("An ObjectRefGenerator cannot be passed to another process; pass "
                        "the refs it yields instead.")

    def __repr__(self):
        return f"ObjectRefGenerator({self._ref.hex()})"


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` task: the refs of the items
    its generator yielded, in order."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self):
        return len(self._refs)

    def __repr__(self):
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


def wait(cw, refs, num_returns, timeout, fetch_local):
    """pyray.wait over refs and generators: a generator is ready when next()
    would not block (its next item came, or it has ended)."""
    from pyray._private.core_worker import check_wait_counts, wait_container_error
    if not isinstance(refs, list):
        wait_container_error(refs)
    if timeout is not None and timeout < 0:
        raise ValueError(f"The 'timeout' argument must be nonnegative. Received {timeout}")
    for r in refs:
        if type(r) is not ObjectRef and not isinstance(r, ObjectRefGenerator):
            raise TypeError("wait() expected a list of ObjectRef or ObjectRefGenerator, "
                            f"got list containing {type(r)}")
    if not refs:
        return [], []
    check_wait_counts(refs, len({id(r) if isinstance(r, ObjectRefGenerator) else r
                                 for r in refs}), num_returns)
    deadline = None if timeout is None else time.monotonic() + timeout
    with cw.lock:
        if cw.decref_q:
            cw.drain_decrefs()
        while True:
            ready = []
            for i, r in enumerate(refs):
                if type(r) is ObjectRef:
                    loc = cw.locate(r)
                    ok = loc is not None and (not fetch_local or loc[0] != IN_STORE or
                                              loc[1] == cw.node_id or
                                              cw.cluster.is_local(r, loc[1]))
                else:
                    ok = r._ready()
                if ok:
                    ready.append(i)
                    if len(ready) >= num_returns:
                        break
            if len(ready) >= num_returns:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            cw.cv.wait(remaining if remaining is not None and remaining < 1.0 else 1.0)
    s = set(ready)
    return [refs[i] for i in ready], [r for i, r in enumerate(refs) if i not in s]


# ====================================================================== worker
# consumption acknowledged by owners: task id -> items consumed (only for
# generator calls running here with backpressure)
_acks = {}
_ack_cv = threading.Condition()


def _h_generator_ack(msg, frames):
    _, task_id, consumed = GENERATOR_ACK.parse(msg)
    with _ack_cv:
        if task_id in _acks and consumed > _acks[task_id]:
            _acks[task_id] = consumed
            _ack_cv.notify_all()


class _Producer:
    """Sends the items of one running generator call to its owner."""
    __slots__ = ("rt", "cw", "call", "dest", "index", "backpressure", "limit")

    def __init__(self, rt, call):
        self.rt = rt
        self.cw = rt.cw
        self.call = call
        self.dest = call.dest
        self.index = 0
        self.backpressure = call.stream[1]
        self.limit = rt.config.max_inline_bytes
        if self.backpressure > 0:
            self.cw.extra_handlers[Op.GENERATOR_ACK] = _h_generator_ack
            with _ack_cv:
                _acks[call.task_id] = 0

    def send_value(self, value):
        cw = self.cw
        oid = item_id(self.call.task_id, self.index)
        ser = serialization.serialize(value)
        contained_at = None
        if ser.nbytes <= self.limit or cw.plasma is None:
            item = (VALUE, serialization.inline_payload(ser), None)
        else:
            _store_put(cw, oid, ser)
            item = (IN_STORE, cw.node_id, None)
        if ser.refs:
            cw.pin_nested(oid, ser.refs)
            contained_at = cw.addr
            item = item[:2] + (contained_at,)
        self._send(item)

    def send_error(self, err):
        from pyray._private.task_executor import _task_error
        self._send((ERROR, errors.encode(_task_error(self.call.name, err)), None))

    def _send(self, item):
        msg = GENERATOR_ITEMS.make(self.call.task_id, self.cw.addr, self.index, [item])
        self.index += 1
        dest = self.dest
        if isinstance(dest, Channel):
            dest.send(pickle.dumps(msg, protocol=5))
        else:
            self.cw.out.send(dest, msg)

    def must_pause(self):
        bp = self.backpressure
        return bp > 0 and self.index - _acks.get(self.call.task_id, 0) >= bp

    def pause(self):
        """Waits (sync) until fewer than `backpressure` items are unconsumed."""
        with _ack_cv:
            while self.must_pause():
                _ack_cv.wait(0.1)

    def close(self):
        if self.backpressure > 0:
            with _ack_cv:
                _acks.pop(self.call.task_id, None)


def _store_put(cw, oid, ser):
    import plasma
    with cw.lock:
        if cw.decref_q:
            cw.drain_decrefs()
    try:
        serialization.put_in_store(cw.plasma, oid, ser)
    except plasma.ObjectExistsError:
        pass            # written by an earlier attempt of this task: the owner has it
    except plasma.PlasmaError as err:
        from pyray._private.store_errors import to_pyray_error
        raise to_pyray_error(err, oid.hex(), cw.addr) from None


_PASS_THROUGH = (KeyboardInterrupt, exc.TaskCancelledError, SystemExit)


def run_items(rt, call, result):
    """Runs a generator call's generator to its end, sending each item to
    the owner as it is yielded (worker, sync).  Returns the task's value."""
    import inspect
    if inspect.isasyncgen(result):
        return _run_async_gen_in_new_loop(rt, call, result)
    p = _Producer(rt, call)
    try:
        try:
            it = iter(result)
        except TypeError:
            raise TypeError(f"Task {call.name} was called as a generator "
                            f"(num_returns={call.stream[0]!r}) but returned a "
                            f"{type(result).__name__}") from None
        while True:
            if p.must_pause():
                p.pause()
            try:
                value = next(it)
            except StopIteration:
                break
            p.send_value(value)
    except _PASS_THROUGH:
        raise
    except BaseException as err:  # noqa: BLE001 - the item where it happened
        p.send_error(err)
    finally:
        p.close()
    return None


def _run_async_gen_in_new_loop(rt, call, agen):
    import asyncio
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run_items_async(rt, call, agen))
    finally:
        loop.close()


async def run_items_async(rt, call, result):
    """run_items for an async generator (or a sync one) on an event loop:
    pauses without blocking the loop."""
    import asyncio
    import inspect
    if not inspect.isasyncgen(result):
        return run_items(rt, call, result)
    p = _Producer(rt, call)
    try:
        while True:
            delay = 0.0005
            while p.must_pause():
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)
            try:
                value = await result.__anext__()
            except StopAsyncIteration:
                break
            p.send_value(value)
    except _PASS_THROUGH:
        raise
    except asyncio.CancelledError:
        raise
    except BaseException as err:  # noqa: BLE001 - the item where it happened
        p.send_error(err)
    finally:
        p.close()
    return None
