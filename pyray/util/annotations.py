"""API stability markers, as Ray's `ray.util.annotations`.  Libraries mark
their classes and functions with them; each records its stability on the
object (``_annotated``, ``_annotated_type``) and otherwise returns it
unchanged, except `Deprecated`, which warns when the object is used."""
from __future__ import annotations

import functools
import inspect
import warnings
from enum import Enum


class AnnotationType(Enum):
    PUBLIC_API = "PublicAPI"
    DEVELOPER_API = "DeveloperAPI"
    DEPRECATED = "Deprecated"
    UNKNOWN = "Unknown"


class RayDeprecationWarning(DeprecationWarning):
    """A pyray API is deprecated."""


def _mark(obj, kind: AnnotationType, stability=None):
    try:
        obj._annotated = obj.__qualname__ if hasattr(obj, "__qualname__") else True
        obj._annotated_type = kind
        if stability is not None:
            obj._annotated_stability = stability
    except (AttributeError, TypeError):
        pass
    return obj


def PublicAPI(*args, **kwargs):
    """``@PublicAPI`` or ``@PublicAPI(stability="stable"|"beta"|"alpha",
    api_group=...)``."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _mark(args[0], AnnotationType.PUBLIC_API, "stable")
    stability = kwargs.get("stability", "stable")
    if stability not in ("stable", "beta", "alpha"):
        raise ValueError(f"stability must be 'stable', 'beta' or 'alpha', got {stability!r}")
    return lambda obj: _mark(obj, AnnotationType.PUBLIC_API, stability)


def DeveloperAPI(*args, **kwargs):
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _mark(args[0], AnnotationType.DEVELOPER_API)
    return lambda obj: _mark(obj, AnnotationType.DEVELOPER_API)


def Deprecated(*args, **kwargs):
    """``@Deprecated`` or ``@Deprecated(message="use X")``: using the object
    emits a RayDeprecationWarning with the message."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return Deprecated()(args[0])
    message = kwargs.get("message", "")

    def wrap(obj):
        text = f"{getattr(obj, '__qualname__', obj)} is deprecated. {message}".strip()
        if inspect.isclass(obj):
            init = obj.__init__

            @functools.wraps(init)
            def __init__(self, *a, **kw):
                warnings.warn(text, RayDeprecationWarning, stacklevel=2)
                init(self, *a, **kw)
            obj.__init__ = __init__
            return _mark(obj, AnnotationType.DEPRECATED)

        @functools.wraps(obj)
        def call(*a, **kw):
            warnings.warn(text, RayDeprecationWarning, stacklevel=2)
            return obj(*a, **kw)
        return _mark(call, AnnotationType.DEPRECATED)
    return wrap
