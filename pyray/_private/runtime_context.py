"""get_runtime_context(): who and where the caller is."""
from __future__ import annotations

import contextvars

from pyray._private.context import ctx

# the task (its TaskContext) that a thread or coroutine of a concurrent actor
# runs; workers that run one task at a time set the core worker's
# current_task instead
running_call = contextvars.ContextVar("pyray_running_call", default=None)


def _current_task(cw):
    t = running_call.get()
    if t is None and cw is not None:
        t = cw.current_task
    return t


class RuntimeContext:
    def _cw(self):
        return ctx.core_worker

    def get_job_id(self):
        cw = self._cw()
        return cw.job_id.hex() if cw is not None and cw.job_id else None

    @property
    def job_id(self):
        return self.get_job_id()

    def get_node_id(self):
        cw = self._cw()
        return cw.node_id.hex() if cw is not None else None

    @property
    def node_id(self):
        return self.get_node_id()

    def get_worker_id(self):
        cw = self._cw()
        return cw.worker_id.hex() if cw is not None else None

    def get_task_id(self):
        t = _current_task(self._cw())
        return t.task_id.hex() if t is not None else None

    @property
    def task_id(self):
        return self.get_task_id()

    def get_task_name(self):
        t = _current_task(self._cw())
        return t.name if t is not None else None

    def get_actor_id(self):
        w = getattr(ctx, "worker", None)
        a = getattr(w, "actor", None) if w is not None else None
        return a.actor_id.hex() if a is not None else None

    @property
    def actor_id(self):
        return self.get_actor_id()

    @property
    def current_actor(self):
        w = getattr(ctx, "worker", None)
        a = getattr(w, "actor", None) if w is not None else None
        if a is None:
            raise RuntimeError("current_actor is only available inside an actor")
        return a.handle()

    @property
    def namespace(self):
        return ctx.namespace

    def get_assigned_resources(self):
        t = _current_task(self._cw())
        if t is None:
            return {}
        spec_shape = getattr(t, "shape", None) or {}
        return dict(spec_shape)

    def get_accelerator_ids(self):
        from pyray._private.api import get_gpu_ids
        return {"GPU": [str(g) for g in get_gpu_ids()]}

    def was_current_actor_reconstructed(self):
        w = getattr(ctx, "worker", None)
        a = getattr(w, "actor", None) if w is not None else None
        return bool(a is not None and a.restarts)

    def get(self):
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
                "task_id": self.get_task_id(), "actor_id": self.get_actor_id(),
                "namespace": self.namespace}


def get_runtime_context():
    return RuntimeContext()
