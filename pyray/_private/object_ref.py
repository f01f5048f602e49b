"""ObjectRef: an object id plus its owner's address.

Creating one counts a local reference in this process's core worker;
dropping the last one lets the owner free the object.  A ref that was
unpickled from inside another object keeps that outer object's ref alive
(`_parent`), so refs nested in a value stay valid while they are in use.
"""
from __future__ import annotations

from pyray._private import serialization
from pyray._private.ids import OBJECT_ID_SIZE, TASK_ID_SIZE

# the process's core worker, set by connect(); ObjectRef reads it directly
_cw = None


def _set_core_worker(cw):
    global _cw
    _cw = cw


class ObjectRef:
    __slots__ = ("_id", "_owner", "_parent", "_cwref", "__weakref__")

    def __init__(self, oid: bytes, owner: str | None = None, _parent=None):
        if type(oid) is not bytes or len(oid) != OBJECT_ID_SIZE:
            raise ValueError(f"ObjectRef needs a {OBJECT_ID_SIZE}-byte id, got {oid!r}")
        self._id = oid
        self._owner = owner
        self._parent = _parent
        cw = _cw
        self._cwref = cw
        if cw is not None:
            cw.add_local_ref(oid, owner)

    def __del__(self):
        cw = self._cwref
        if cw is not None:
            cw.decref_q.append(self._id)

    # identity -------------------------------------------------------------
    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self):
        """The id of the task (or put) that made this object."""
        return TaskID(self._id[:TASK_ID_SIZE])

    def is_nil(self) -> bool:
        return self._id == _NIL

    @classmethod
    def nil(cls):
        return cls(_NIL)

    @classmethod
    def from_binary(cls, binary: bytes):
        """A ref to the object with this id (its owner unknown: use it for
        objects this process owns, or as an id)."""
        return cls(bytes(binary))

    @classmethod
    def from_hex(cls, hex_id: str):
        return cls(bytes.fromhex(hex_id))

    @classmethod
    def from_random(cls):
        import os
        return cls(os.urandom(OBJECT_ID_SIZE))

    @classmethod
    def size(cls):
        """The size of an object id in bytes."""
        return OBJECT_ID_SIZE

    def owner_address(self):
        return self._owner

    def __hash__(self):
        return hash(self._id)

    def __eq__(self, other):
        return type(other) is type(self) and other._id == self._id

    def __ne__(self, other):
        return not self.__eq__(other)

    def __lt__(self, other):
        return self._id < other._id

    def __repr__(self):
        return f"ObjectRef({self._id.hex()})"

    def __bool__(self):
        return True

    # pickling: nested refs are noted so their owner keeps them alive --------
    def __reduce__(self):
        serialization.note_ref(self)
        return (_rebuild, (self._id, self._owner))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    # futures ----------------------------------------------------------------
    def future(self):
        import concurrent.futures
        fut = concurrent.futures.Future()
        _require_cw().on_ready(self, _resolve_cf(fut))
        return fut

    def as_future(self):
        import asyncio
        return asyncio.wrap_future(self.future())

    def __await__(self):
        return self.as_future().__await__()

    def _on_completed(self, callback):
        _require_cw().on_ready(self, lambda value_fn: callback(value_fn()))


_NIL = b"\xff" * OBJECT_ID_SIZE


class TaskID:
    """A task's id, as ObjectRef.task_id() returns it."""
    __slots__ = ("_id",)

    def __init__(self, binary: bytes):
        self._id = binary

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def is_nil(self) -> bool:
        return self._id == b"\xff" * TASK_ID_SIZE

    def __eq__(self, other):
        return type(other) is TaskID and other._id == self._id

    def __hash__(self):
        return hash(self._id)

    def __repr__(self):
        return f"TaskID({self._id.hex()})"


def _resolve_cf(fut):
    def done(value_fn):
        if fut.done():
            return
        try:
            fut.set_result(value_fn())
        except BaseException as exc:  # noqa: BLE001 - delivered to the future
            fut.set_exception(exc)
    return done


def _require_cw():
    if _cw is None:
        from pyray.exceptions import RaySystemError
        raise RaySystemError("pyray is not initialized: call pyray.init() first")
    return _cw


def _rebuild(oid, owner):
    parent = serialization.current_parent()
    if parent is None:
        return ObjectRef(oid, owner)
    # A ref read out of another object: that object's ref (`parent`) keeps
    # it alive, so it is not counted until it is used on its own (get, wait,
    # passing it to a task): unpacking 10k nested refs costs almost nothing.
    ref = _new(ObjectRef)
    ref._id = oid
    ref._owner = owner
    ref._parent = parent
    ref._cwref = None
    return ref


_new = object.__new__
