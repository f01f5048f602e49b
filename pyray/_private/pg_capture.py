"""The one side effect of receiving placed work: a worker that gets a task
or actor whose shape captures child tasks (``PgShape.pg[2]``) submits its
own tasks and actors into that placement group from then on.

It runs while the task message is unpickled (``PgShape.__reduce__`` names
``rebuild_pg_shape``).  Its place is the worker's task receive path
(worker_main: ``if captures_children(shape): core_worker.pg_capture = True``
once the message is unpacked); it lives here until that path takes it, so
that pyray._private.resources stays free of process state.
"""
from __future__ import annotations

from pyray._private.resources import captures_children, make_pg_shape


def rebuild_pg_shape(items, pg):
    s = make_pg_shape(items, pg)
    if captures_children(s):
        from pyray._private.context import ctx
        if ctx.core_worker is not None:
            ctx.core_worker.pg_capture = True
    return s
