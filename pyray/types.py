"""Types for annotations, as ``ray.types``.

    from pyray.types import ObjectRef

    def total(refs: list[ObjectRef[int]]) -> int: ...

``ObjectRef[T]`` is accepted in annotations, and ``isinstance(x, ObjectRef)``
is true of the object refs pyray hands out.
"""
from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class _RefMeta(type):
    def __instancecheck__(cls, obj):
        from pyray._private.object_ref import ObjectRef as _Ref
        return isinstance(obj, _Ref) or type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub):
        from pyray._private.object_ref import ObjectRef as _Ref
        return (isinstance(sub, type) and issubclass(sub, _Ref)) or \
            type.__subclasscheck__(cls, sub)


class ObjectRef(Generic[T], metaclass=_RefMeta):
    """The type of a reference to a (future) value of type T.  For
    annotations and isinstance checks; refs are made by ``.remote()`` and
    ``put()``, never by calling this."""

    def __new__(cls, *args, **kwargs):
        raise TypeError("pyray.types.ObjectRef is for annotations; refs come from "
                        ".remote() and pyray.put()")


__all__ = ["ObjectRef"]
