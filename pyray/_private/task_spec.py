"""The owner's record of a submitted task, and the scheduling key it queues under."""
from __future__ import annotations


class TaskSpec:
    __slots__ = ("task_id", "fn", "name", "args_payload", "arg_refs", "deps", "resolved",
                 "return_ids", "key", "shape", "retries_left", "retry_exceptions", "attempt",
                 "cancelled", "lease", "pending_deps", "actor", "extra")

    def __init__(self, task_id, fn, name, args_payload, arg_refs, return_ids, key, shape,
                 retries_left, retry_exceptions):
        self.task_id = task_id
        self.fn = fn                    # FunctionDescriptor
        self.name = name
        self.args_payload = args_payload  # (data, [buffers]) of (args, kwargs)
        self.arg_refs = arg_refs        # ObjectRefs kept alive while the task may run
        self.deps = ()                  # owned top-level refs that must be ready first
        self.resolved = None            # oid -> (kind, payload) for inline deps
        self.return_ids = return_ids
        self.key = key
        self.shape = shape
        self.retries_left = retries_left
        self.retry_exceptions = retry_exceptions
        self.attempt = 0
        self.cancelled = False
        self.lease = None
        self.pending_deps = 0
        self.actor = None
        self.extra = None


class FunctionDescriptor:
    """A function as shipped to workers: an id and its cloudpickled bytes,
    sent to a worker the first time it runs anything of ours."""
    __slots__ = ("fn_id", "data", "name", "module")

    def __init__(self, fn_id, data, name, module):
        self.fn_id = fn_id
        self.data = data
        self.name = name
        self.module = module
