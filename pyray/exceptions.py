"""Exception types, named as in Ray so that ``except`` clauses written for Ray
work unchanged.  Each one subclasses ``PyrayError`` (alias ``RayError``) and,
where one fits, the builtin it means."""
from __future__ import annotations

import os


class RayError(Exception):
    """Base of every pyray error."""


PyrayError = RayError


class RaySystemError(RayError):
    def __init__(self, client_exc, traceback_str=None):
        super().__init__(client_exc)
        self.client_exc = client_exc
        self.traceback_str = traceback_str


class RayTaskError(RayError):
    """A task or actor method raised.  ``get`` raises an instance that is also
    an instance of the user's exception type (see ``as_instanceof_cause``)."""

    def __init__(self, function_name, traceback_str, cause, proctitle=None,
                 pid=None, ip=None, actor_repr=None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.proctitle = proctitle
        self.pid = pid if pid is not None else os.getpid()
        self.ip = ip or "127.0.0.1"
        self.actor_repr = actor_repr
        super().__init__(self._message())

    def _message(self):
        where = f"{self.function_name}() (pid={self.pid}, ip={self.ip}"
        if self.actor_repr:
            where += f", actor={self.actor_repr}"
        where += ")"
        return (f"{type(self.cause).__name__ if self.cause is not None else 'Error'} "
                f"in {where}:\n{self.traceback_str}")

    def __str__(self):
        return self._message()

    def __reduce__(self):
        return (RayTaskError, (self.function_name, self.traceback_str, self.cause,
                               self.proctitle, self.pid, self.ip, self.actor_repr))

    def as_instanceof_cause(self):
        """An exception that is both a RayTaskError and an instance of the
        cause's class, so ``except ValueError`` catches a remote ValueError."""
        cause_cls = type(self.cause)
        if self.cause is None or issubclass(cause_cls, RayTaskError):
            return self
        try:
            cls = _dual_class(cause_cls)
            err = cls.__new__(cls)
            RayTaskError.__init__(err, self.function_name, self.traceback_str, self.cause,
                                  self.proctitle, self.pid, self.ip, self.actor_repr)
            err.args = getattr(self.cause, "args", ())
            # carry the cause's attributes (e.g. errno, filename, custom fields)
            try:
                err.__dict__.update({k: v for k, v in vars(self.cause).items()
                                     if k not in _OWN_FIELDS})
            except TypeError:
                pass
            return err
        except TypeError:
            return self


_OWN_FIELDS = frozenset(("function_name", "traceback_str", "cause", "proctitle", "pid", "ip",
                         "actor_repr"))
_dual_cache: dict = {}


def _dual_class(cause_cls):
    cls = _dual_cache.get(cause_cls)
    if cls is None:
        def _str(self):
            return RayTaskError._message(self)

        def _reduce(self):
            return (_rebuild_dual, (RayTaskError.__reduce__(self)[1],))
        cls = type(f"RayTaskError({cause_cls.__name__})", (RayTaskError, cause_cls),
                   {"__str__": _str, "__reduce__": _reduce, "__module__": __name__})
        _dual_cache[cause_cls] = cls
    return cls


def _rebuild_dual(args):
    return RayTaskError(*args).as_instanceof_cause()


class RayActorError(RayError):
    """The actor died (or could not be created); its calls cannot run."""

    def __init__(self, cause=None, error_msg=None, actor_id=None):
        self.cause = cause
        self.actor_id = actor_id
        self.error_msg = error_msg or (
            f"The actor died unexpectedly before finishing this task. Cause: {cause}"
            if cause is not None else "The actor died unexpectedly before finishing this task.")
        super().__init__(self.error_msg)

    def __reduce__(self):
        return (type(self), (self.cause, self.error_msg, self.actor_id))


class ActorDiedError(RayActorError):
    pass


class ActorUnavailableError(RayActorError):
    pass


class ActorUnschedulableError(RayError):
    pass


class TaskUnschedulableError(RayError):
    pass


class WorkerCrashedError(RayError):
    def __init__(self, msg="The worker died unexpectedly while executing this task."):
        super().__init__(msg)


class LocalRayletDiedError(RayError):
    pass


class NodeDiedError(RayError):
    pass


class TaskCancelledError(RayError):
    def __init__(self, task_id=None, msg=None):
        self.task_id = task_id
        super().__init__(msg or (f"Task {task_id} was cancelled." if task_id else
                                 "This task was cancelled."))

    def __reduce__(self):
        return (TaskCancelledError, (self.task_id, str(self)))


class GetTimeoutError(RayError, TimeoutError):
    pass


class ObjectLostError(RayError):
    def __init__(self, object_ref_hex="", owner_address="", call_site="", msg=None):
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site
        super().__init__(msg or (f"Object {object_ref_hex} is lost: no copy of it exists "
                                 "any more and it cannot be re-created."))

    def __reduce__(self):
        return (type(self), (self.object_ref_hex, self.owner_address, self.call_site, str(self)))


class ObjectFetchTimedOutError(ObjectLostError):
    pass


class OwnerDiedError(ObjectLostError):
    pass


class ReferenceCountingAssertionError(ObjectLostError):
    pass


class ObjectReconstructionFailedError(ObjectLostError):
    pass


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectLostError):
    pass


class ObjectReconstructionFailedLineageEvictedError(ObjectLostError):
    pass


class ObjectStoreFullError(RayError, MemoryError):
    pass


class OutOfDiskError(RayError, OSError):
    pass


class OutOfMemoryError(RayError, MemoryError):
    pass


class PendingCallsLimitExceeded(RayError):
    pass


class RuntimeEnvSetupError(RayError):
    pass


class AsyncioActorExit(RayError):
    pass


class PlasmaObjectNotAvailable(RayError):
    pass


class RaySystemTimeoutError(RayError, TimeoutError):
    pass


class TaskPlacementGroupRemoved(RayError):
    """A task's placement group was removed before or while it ran."""

    def __init__(self, message=None):
        super().__init__(message or "The placement group of this task has been removed.")


class CrossLanguageError(RayError):
    pass


class UserCodeException(RayError):
    """User code (a Ray Data function, for instance) raised; the original
    exception is this one's ``__cause__``."""


__all__ = [n for n, v in list(globals().items())
           if isinstance(v, type) and issubclass(v, BaseException)]
