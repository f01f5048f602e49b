"""get_runtime_context(): who and where the caller is.

The ``get_*_id()`` methods return hex strings; the older properties
(``job_id``, ``task_id``, ``actor_id``, ``node_id``) return id objects with
``.hex()`` and ``.binary()``, as Ray's do.
"""
from __future__ import annotations

import contextvars
import logging
import sys
import threading

from pyray._private.context import ctx

log = logging.getLogger(__name__)

# the task (its TaskContext) that a thread or coroutine of a concurrent actor
# runs; workers that run one task at a time set the core worker's
# current_task instead
running_call = contextvars.ContextVar("pyray_running_call", default=None)


def _current_task(cw):
    t = running_call.get()
    if t is None and cw is not None:
        t = cw.current_task
    return t


# ---------------------------------------------------------------------------
# id objects (what the deprecated properties return)
# ---------------------------------------------------------------------------
class BaseID:
    __slots__ = ("_id",)

    def __init__(self, id_bytes: bytes):
        if not isinstance(id_bytes, (bytes, bytearray)):
            raise TypeError(f"{type(self).__name__} needs bytes, got {type(id_bytes).__name__}")
        self._id = bytes(id_bytes)

    @classmethod
    def from_hex(cls, hex_id: str):
        return cls(bytes.fromhex(hex_id))

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def is_nil(self) -> bool:
        return not any(self._id)

    def size(self) -> int:
        return len(self._id)

    def __eq__(self, other):
        return type(other) is type(self) and other._id == self._id

    def __hash__(self):
        return hash((type(self).__name__, self._id))

    def __repr__(self):
        return f"{type(self).__name__}({self.hex()})"

    __str__ = __repr__

    def __reduce__(self):
        return (type(self), (self._id,))


class JobID(BaseID):
    __slots__ = ()


class NodeID(BaseID):
    __slots__ = ()


class TaskID(BaseID):
    __slots__ = ()


class ActorID(BaseID):
    __slots__ = ()


class WorkerID(BaseID):
    __slots__ = ()


def _worker():
    """The task executor of this process when it is a worker, else None."""
    return getattr(ctx, "worker", None) if ctx.mode == "worker" else None


def _actor():
    w = _worker()
    return getattr(w, "actor", None) if w is not None else None


def _check_connected():
    if ctx.core_worker is None:
        from pyray.exceptions import RaySystemError
        raise RaySystemError("pyray has not been started yet. You can start it with "
                             "pyray.init().")
    return ctx.core_worker


# actor names, looked up once per process (a name never changes)
_actor_names = {}
_actor_names_lock = threading.Lock()


class RuntimeContext:
    """Metadata of the current driver, task or actor."""

    def _cw(self):
        return ctx.core_worker

    # -- job ----------------------------------------------------------------
    def get_job_id(self) -> str:
        cw = self._cw()
        assert cw is not None and cw.job_id, \
            "Job ID is not available because pyray has not been initialized."
        return cw.job_id.hex()

    @property
    def job_id(self) -> JobID:
        return JobID(bytes.fromhex(self.get_job_id()))

    def get_job_config(self):
        """The JobConfig the driver passed to init() (a default one if it
        passed none); also in tasks and actors of the job."""
        from pyray.job_config import JobConfig
        cw = _check_connected()
        job = getattr(cw, "job_config", None) or {}
        return JobConfig._from_job_dict(job)

    # -- node and worker ----------------------------------------------------
    def get_node_id(self) -> str:
        cw = self._cw()
        assert cw is not None, "Node ID is not available because pyray has not been initialized."
        return cw.node_id.hex()

    @property
    def node_id(self) -> NodeID:
        return NodeID(bytes.fromhex(self.get_node_id()))

    def get_worker_id(self) -> str:
        cw = self._cw()
        assert cw is not None, \
            "Worker ID is not available because pyray has not been initialized."
        return cw.worker_id.hex()

    @property
    def gcs_address(self) -> str:
        return _check_connected().gcs_addr

    @property
    def namespace(self):
        return ctx.namespace

    # -- task ---------------------------------------------------------------
    def get_task_id(self):
        if _worker() is None:
            return None
        t = _current_task(self._cw())
        return t.task_id.hex() if t is not None else None

    @property
    def task_id(self):
        assert _worker() is not None, \
            "This property is only available when the process is a worker."
        t = _current_task(self._cw())
        return TaskID(t.task_id) if t is not None else None

    def get_task_name(self):
        if _worker() is None:
            return None
        t = _current_task(self._cw())
        return t.name if t is not None else None

    def get_task_function_name(self):
        """``module.function`` of the running task, ``module.Class.method``
        of the running actor call."""
        if _worker() is None:
            return None
        t = _current_task(self._cw())
        if t is None:
            return None
        a = _actor()
        if a is not None:
            method = (t.name or "").rsplit(".", 1)[-1]
            return f"{a.cls.__module__}.{a.cls.__qualname__}.{method}"
        fn = _task_function_frame()
        if fn is not None:
            return fn
        return t.name

    def is_canceled(self) -> bool:
        """Whether cancel() was called on the running task or actor call, so
        that it can stop early (a cancelled call's caller gets
        TaskCancelledError however it ends).  A running normal task is also
        interrupted (KeyboardInterrupt); a running sync or threaded actor
        call is not, and polls this.  RuntimeError in the driver and in an
        async actor, as in Ray."""
        w = _worker()
        t = _current_task(self._cw()) if w is not None else None
        if t is None:
            raise RuntimeError("is_canceled() is only available in a task or an actor "
                               "call, not in the driver.")
        a = w.actor
        if a is not None:
            if a.is_async:
                raise RuntimeError("is_canceled() is not supported in an async actor: "
                                   "cancel() cancels a running async call's asyncio task "
                                   "(asyncio.CancelledError is raised in it).")
            return t.task_id in a.cancelled_calls
        return w.cancel_requested == t.task_id

    def get_assigned_resources(self):
        assert _worker() is not None, \
            "get_assigned_resources() is only available when the process is a worker."
        t = _current_task(self._cw())
        if t is None:
            return {}
        shape = getattr(t, "shape", None)
        return dict(shape) if isinstance(shape, dict) else {}

    def get_accelerator_ids(self):
        _check_connected()
        from pyray._private.api import get_gpu_ids
        return {"GPU": [str(g) for g in get_gpu_ids()]}

    def get_resource_ids(self):
        return self.get_accelerator_ids()

    # -- actor --------------------------------------------------------------
    def get_actor_id(self):
        a = _actor()
        return a.actor_id.hex() if a is not None else None

    @property
    def actor_id(self):
        assert _worker() is not None, \
            "This property is only available when the process is a worker."
        a = _actor()
        return ActorID(a.actor_id) if a is not None else None

    def get_actor_name(self):
        """The name the current actor was created with ("" if it has none);
        None outside an actor."""
        a = _actor()
        if a is None:
            return None
        with _actor_names_lock:
            name = _actor_names.get(a.actor_id)
        if name is None:
            from pyray._private.protocol import Op
            cw = _check_connected()
            name = ""
            for info in cw.rpc(cw.gcs_addr, Op.LIST_ACTORS):
                if info.get("actor_id") == a.actor_id.hex():
                    name = info.get("name") or ""
                    break
            with _actor_names_lock:
                _actor_names[a.actor_id] = name
        return name

    @property
    def current_actor(self):
        _check_connected()
        a = _actor()
        if a is None:
            raise RuntimeError("This method is only available in an actor.")
        return a.handle()

    @property
    def was_current_actor_reconstructed(self):
        """Whether this actor was restarted.  A property as in Ray; the value
        can also be called (``was_current_actor_reconstructed()``), the form
        earlier pyray code used."""
        a = _actor()
        assert a is not None, "This method shouldn't be called inside tasks."
        return _CallableBool(bool(a.restarts))

    # -- all of it ----------------------------------------------------------
    def get(self):
        """A dict of the current context: job_id, node_id and namespace, and
        in a worker task_id and actor_id when there are ones (id objects)."""
        out = {"job_id": self.job_id, "node_id": self.node_id, "namespace": self.namespace}
        if _worker() is not None:
            task_id = self.task_id
            if task_id is not None:
                out["task_id"] = task_id
            actor_id = self.actor_id
            if actor_id is not None:
                out["actor_id"] = actor_id
        return out


class _CallableBool(int):
    """A bool that can also be called (returns the plain bool)."""

    def __new__(cls, value):
        return int.__new__(cls, bool(value))

    def __call__(self):
        return bool(self)

    def __repr__(self):
        return repr(bool(self))

    __str__ = __repr__

    def __reduce__(self):
        return (bool, (bool(self),))


_EXECUTORS = ("task_executor.py", "actor_executor.py")


def _task_function_frame():
    """``module.qualname`` of the function the task executor called, found on
    this thread's stack (the frame whose caller is the executor)."""
    try:
        f = sys._getframe(2)
    except ValueError:
        return None
    while f is not None:
        back = f.f_back
        if back is not None and back.f_code.co_filename.endswith(_EXECUTORS):
            code = f.f_code
            name = getattr(code, "co_qualname", code.co_name)
            module = f.f_globals.get("__name__", "")
            return f"{module}.{name}" if module else name
        f = back
    return None


_context = None
_context_lock = threading.Lock()


def get_runtime_context() -> RuntimeContext:
    global _context
    with _context_lock:
        if _context is None:
            _context = RuntimeContext()
        return _context
