"""Task events: the state transitions of every task and actor call, recorded
off the hot path and sent to the GCS in batches (docs/state.md).

Recording appends one small tuple to this process's buffer (a deque: its
append is atomic under the GIL, no lock, no formatting).  A daemon thread,
started with the process's core worker (attach), sends what the buffer
holds to the GCS about once a second (``task_events_report_interval_ms``)
as one TASK_EVENTS message: the events marshalled once (plain tuples of
bytes, str, float, int and None: marshal is what Python's own .pyc files
use, and about twice as fast as pickle on them), with the process's node,
worker id, pid and job.  A full buffer drops new events and counts them;
the count travels with the next batch.

A worker's RUNNING event waits in ``_running`` (by task id) instead of the
buffer: a task that finishes before the next send becomes one event,
RUNNING with its end time; the sender moves the tasks still running into
its batch as plain RUNNING events (whichever side pops a task's entry
first, under the GIL, sends it).

Event tuples (the GCS reads them in pyray.gcs.task_events):
  (task_id, state, time, name, type, actor_id, attempt)  PENDING_*/RUNNING
  (task_id, RUNNING, time, name, type, actor_id, attempt, end_time)
                                                        ran and finished
  (task_id, FINISHED, time)
  (task_id, FAILED, time, error_type, error_message)    a worker's
  (task_id, FAILED, time, error_type, error_message, name, type, actor_id)
                                                        an owner's

A task submitted with ``enable_task_events=False`` is named in ``_off``
(by the owner when it submits it, by the worker when it receives it): no
event of it is recorded.
"""
from __future__ import annotations

import collections
import os
import marshal
import threading
import time

from pyray._private.protocol import LIST_OWNED_OBJECTS, RESPONSE, TASK_EVENTS, Op

# Ray's TaskStatus names
PENDING_ARGS_AVAIL = "PENDING_ARGS_AVAIL"
PENDING_NODE_ASSIGNMENT = "PENDING_NODE_ASSIGNMENT"
SUBMITTED_TO_WORKER = "SUBMITTED_TO_WORKER"
RUNNING = "RUNNING"
FINISHED = "FINISHED"
FAILED = "FAILED"

# Ray's TaskType names
NORMAL_TASK = "NORMAL_TASK"
ACTOR_CREATION_TASK = "ACTOR_CREATION_TASK"
ACTOR_TASK = "ACTOR_TASK"
DRIVER_TASK = "DRIVER_TASK"

_MAX_ERROR_CHARS = 2000
_MAX_OFF = 100_000

_buf = collections.deque()
_running = {}           # task id -> its RUNNING event, not sent yet
_limit = 100_000
_enabled = True
_dropped = [0]
_off = set()            # task ids recorded with enable_task_events=False
_thread = None
_lock = threading.Lock()    # starting the sender thread only
_now = time.time
_interval_ms = 1000


def configure(config):
    """Reads the bounds from the config (once per process, at startup)."""
    global _limit, _enabled
    _limit = max(1, int(config.task_events_max_num_status_events_buffer_on_worker))
    _enabled = int(config.task_events_report_interval_ms) > 0


def _add(event):
    if len(_buf) < _limit:
        _buf.append(event)
    else:
        _dropped[0] += 1


def skip(task_id):
    """enable_task_events=False for this task: record none of its events."""
    if len(_off) >= _MAX_OFF:
        _off.clear()        # the flags of tasks long done; bounded
    _off.add(task_id)


def enabled(task_id):
    return task_id not in _off


# The three calls on the task path append inline (no further call).

def submitted(task_id, name, task_type, actor_id=None, waits_for_args=False):
    """The owner submitted a task (it waits for its arguments, or for a worker)."""
    if _enabled and task_id not in _off:
        if len(_buf) < _limit:
            _buf.append((task_id, PENDING_ARGS_AVAIL if waits_for_args else
                         PENDING_NODE_ASSIGNMENT, _now(), name, task_type, actor_id, 0))
        else:
            _dropped[0] += 1


def started(task_id, name, actor_id, extra, attempt, events):
    """A worker is about to run a task it received (PUSH_TASK's fields)."""
    global _enabled
    if extra is None or extra[0] != "create":
        task_type = NORMAL_TASK if actor_id is None else ACTOR_TASK
    else:
        task_type = ACTOR_CREATION_TASK
        if extra[1].get("enable_task_events") is False:
            _enabled = False        # the actor's option: none of its calls either
    if not events:
        _off.add(task_id)
    elif _enabled:
        _running[task_id] = (task_id, RUNNING, _now(), name, task_type, actor_id, attempt)


def finished(task_id, err=None):
    """A worker finished running a task: err is the exception it raised, or None."""
    if task_id in _off:
        _off.discard(task_id)
        return
    if not _enabled:
        return
    ev = _running.pop(task_id, None)
    if err is None:
        if len(_buf) < _limit:
            _buf.append((task_id, FINISHED, _now()) if ev is None else ev + (_now(),))
        else:
            _dropped[0] += 1
    else:
        if ev is not None:
            _add(ev)
        _add((task_id, FAILED, _now(), error_type(err), _message(err)))


def failed(task_id, err, name=None, actor_id=None):
    """The owner failed a task without a worker reporting (its worker died,
    it was cancelled before it ran, its actor died, ...)."""
    if _enabled and task_id not in _off:
        _add((task_id, FAILED, _now(), error_type(err), _message(err), name,
              NORMAL_TASK if actor_id is None else ACTOR_TASK, actor_id))


def error_type(err):
    """Ray's ErrorType name for an exception."""
    from pyray import exceptions as exc
    if isinstance(err, (exc.TaskCancelledError, KeyboardInterrupt)):
        return "TASK_CANCELLED"
    if isinstance(err, exc.OutOfMemoryError):
        return "OUT_OF_MEMORY"
    if isinstance(err, exc.RayActorError):
        return "ACTOR_DIED"
    if isinstance(err, exc.WorkerCrashedError):
        return "WORKER_DIED"
    if isinstance(err, exc.RuntimeEnvSetupError):
        return "RUNTIME_ENV_SETUP_FAILED"
    return "TASK_EXECUTION_EXCEPTION"


def _message(err):
    try:
        text = str(err) or type(err).__name__
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the event
        text = type(err).__name__
    return text[:_MAX_ERROR_CHARS]


# ---------------------------------------------------------------- sending
def _start():
    global _thread
    with _lock:
        if _thread is not None:
            return
        _thread = threading.Thread(target=_sender, name="pyray-task-events", daemon=True,
                                   args=(max(0.01, _interval_ms / 1000.0),))
        _thread.start()


def _sender(interval):
    while True:
        time.sleep(interval)
        try:
            flush()
        except Exception:  # noqa: BLE001 - a stopping process; the next round tries again
            pass


def _after_fork():
    """A forked child has no sender thread and not its parent's events."""
    global _thread
    _thread = None
    _buf.clear()
    _running.clear()
    _dropped[0] = 0


os.register_at_fork(after_in_child=_after_fork)


def flush():
    """Sends what the buffer holds to the GCS now (the state API calls this
    in the caller's process before it asks the GCS)."""
    from pyray._private import context
    cw = context.ctx.core_worker
    if cw is None or getattr(cw, "closing", False) or getattr(cw, "out", None) is None:
        return False        # none, stopping, or a Ray Client's (its server's driver records)
    for task_id in list(_running):        # still running: RUNNING goes now
        ev = _running.pop(task_id, None)
        if ev is not None:
            _add(ev)
    n = len(_buf)
    dropped, _dropped[0] = _dropped[0], 0
    if not n and not dropped:
        return True
    pop = _buf.popleft
    events = [pop() for _ in range(n)]
    source = (cw.node_id, cw.worker_id, os.getpid(), cw.job_id)
    try:
        blob = marshal.dumps(events)
    except ValueError:      # a value marshal does not take (a str subclass as a name)
        blob = marshal.dumps([tuple(_plain(v) for v in ev) for ev in events])
    cw.out.send(cw.gcs_addr, TASK_EVENTS.make(source, blob, n, dropped))
    return True


_PLAIN = (bytes, str, float, int, bool, type(None))


def _plain(v):
    return v if type(v) in _PLAIN else (str(v) if isinstance(v, str) else repr(v))


# ------------------------------------------------------ the state API's objects
def attach(cw):
    """Called once by each core worker: reads the config, starts the sender
    thread (recording on), answers the state API's LIST_OWNED_OBJECTS
    (pyray.util.state.list_objects)."""
    global _interval_ms
    configure(cw.config)
    _buf.clear()            # an earlier cluster's (init() after shutdown())
    _running.clear()
    _dropped[0] = 0
    _interval_ms = int(cw.config.task_events_report_interval_ms)
    if _enabled:
        _start()
    cw.extra_handlers[Op.LIST_OWNED_OBJECTS] = lambda msg, frames: _h_list_objects(cw, msg)


def _h_list_objects(cw, msg):
    _, req_id, reply_to = LIST_OWNED_OBJECTS.parse(msg)
    try:
        rows, ok = owned_objects(cw), True
    except Exception as err:  # noqa: BLE001 - the caller gets the error
        from pyray._private import errors
        rows, ok = errors.encode(err), False
    cw.out.send(reply_to, RESPONSE.make(req_id, ok, rows))


def owned_objects(cw):
    """Rows (Ray's ObjectState fields) of the objects this process owns and
    of the refs it borrows; runs on the I/O thread (the core worker's lock
    is held)."""
    from pyray._private.protocol import ERROR, IN_STORE, VALUE
    store = None
    rows = []
    local = cw.local_refs
    for oid, o in list(cw.owned.items()):
        size = None
        if o.kind in (VALUE, ERROR) and o.payload is not None:
            size = _payload_size(o.payload)
        elif o.kind == IN_STORE and cw.plasma is not None:
            if store is None:
                store = cw.plasma.list()
            info = store.get(oid)
            if info is not None:
                size = info["data_size"] + info["metadata_size"]
        if o.state == 1:        # ready
            status = "FAILED" if o.kind == ERROR else "FINISHED"
        elif o.spec is not None:
            status = "SUBMITTED_TO_WORKER" if o.spec.lease is not None else \
                "PENDING_NODE_ASSIGNMENT"
        else:
            status = "NIL"
        if local.get(oid):
            ref = "LOCAL_REFERENCE"
        elif o.spec is not None and o.state != 1:
            ref = "USED_BY_PENDING_TASK"
        elif o.borrowers:
            ref = "BORROWED"
        elif o.contained:
            ref = "CAPTURED_IN_OBJECT"
        else:
            ref = "PINNED_IN_MEMORY"
        rows.append({"object_id": oid, "object_size": size, "task_status": status,
                     "attempt_number": getattr(o.spec, "attempt", 1) - 1 if o.spec else 0,
                     "reference_type": ref})
    for oid, owner in list(cw.foreign.items()):
        if not local.get(oid):
            continue
        v = cw.foreign_values.get(oid)
        rows.append({"object_id": oid, "object_size": _payload_size(v[1]) if v and v[0] != IN_STORE
                     else None, "task_status": "FINISHED" if v else "NIL", "attempt_number": 0,
                     "reference_type": "LOCAL_REFERENCE"})
    return rows


def _payload_size(payload):
    try:
        data, bufs = payload
        return len(data) + sum(memoryview(b).nbytes for b in bufs or ())
    except (TypeError, ValueError):
        return None
