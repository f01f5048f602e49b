"""What a task is, on both sides: the owner's record of a submitted task
(TaskSpec), and a function as it travels to workers (FunctionDescriptor,
made by remote_function.export_function, loaded by load_function in the
worker)."""
from __future__ import annotations

import pickle
import types

# the function id of the message that tells an actor to stop after the
# calls sent before it (actor_submitter -> task_executor)
TERMINATE = "__pyray_terminate__"


class TaskSpec:
    __slots__ = ("task_id", "fn", "name", "args_payload", "arg_refs", "deps", "resolved",
                 "return_ids", "key", "shape", "retries_left", "retry_exceptions", "attempt",
                 "cancelled", "lease", "pending_deps", "actor", "extra", "stream",
                 "oom_retries_left", "oom_kills")

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
        self.stream = None              # a generator task's Stream (generators.py)
        # kills by the memory monitor have their own count (Ray's
        # task_oom_retries), None until the first: a task with max_retries=0
        # is never retried after one
        self.oom_retries_left = None if retries_left != 0 else 0
        self.oom_kills = 0


class FunctionDescriptor:
    """A function as shipped to workers: an id and its cloudpickled bytes,
    sent to a worker the first time it runs anything of ours."""
    __slots__ = ("fn_id", "data", "name", "module")

    def __init__(self, fn_id, data, name, module):
        self.fn_id = fn_id
        self.data = data
        self.name = name
        self.module = module


_PLACEHOLDER_FILE = "<dynamic-code>"


def load_function(data):
    """The inverse of export_function's payload (in the worker)."""
    obj, filename = pickle.loads(data)
    if filename:
        if isinstance(obj, type):
            for attr in vars(obj).values():
                fn = getattr(attr, "__func__", attr)
                if getattr(fn, "__code__", None) is not None:
                    fn.__code__ = _with_filename(fn.__code__, filename)
                if isinstance(attr, property):
                    for f in (attr.fget, attr.fset, attr.fdel):
                        if f is not None and getattr(f, "__code__", None) is not None:
                            f.__code__ = _with_filename(f.__code__, filename)
        elif getattr(obj, "__code__", None) is not None:
            obj.__code__ = _with_filename(obj.__code__, filename)
    return obj


def _with_filename(code, filename):
    if code.co_filename != _PLACEHOLDER_FILE:
        return code
    consts = tuple(_with_filename(c, filename) if isinstance(c, types.CodeType) else c
                   for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)
