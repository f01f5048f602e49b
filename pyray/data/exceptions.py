"""Errors of pyray.data, named as in Ray Data.

A user function that fails inside a pipeline surfaces as a
``UserCodeException`` (``pyray.exceptions``) whose message names the
operator, chained to the original error.  The raised object is also an
instance of the original error's class, so both ``except UserCodeException``
(Ray Data 2.x) and ``except ValueError`` (older Ray) catch it.
"""
from __future__ import annotations

from pyray.exceptions import UserCodeException


class RayDataUserCodeException(UserCodeException):
    """An exception raised by a function given to a pyray.data operator."""


class SystemException(Exception):
    """An error inside pyray.data itself, not in user code."""


_classes: dict = {}


def _class_for(cause_cls):
    cls = _classes.get(cause_cls)
    if cls is None:
        try:
            cls = type(f"UserCodeException({cause_cls.__name__})",
                       (RayDataUserCodeException, cause_cls),
                       {"__module__": __name__, "__reduce__": _reduce})
        except TypeError:           # a layout Python cannot combine
            cls = RayDataUserCodeException
        _classes[cause_cls] = cls
    return cls


def _reduce(self):
    return (_rebuild, (self._cause_cls, self.args))


def _make(cls, cause_cls, args):
    try:
        err = cls.__new__(cls)
    except Exception:  # noqa: BLE001 - a __new__ that needs arguments
        cls, cause_cls = RayDataUserCodeException, None
        err = cls.__new__(cls)
    err.args = args
    err._cause_cls = cause_cls if cls is not RayDataUserCodeException else None
    return err


def _rebuild(cause_cls, args):
    cls = _class_for(cause_cls) if cause_cls is not None else RayDataUserCodeException
    return _make(cls, cause_cls, args)


def user_code_error(op_name: str, cause: BaseException, doing: str = "processing a batch in"):
    """The exception to raise (``from cause``) for a failure of user code."""
    cause_cls = type(cause)
    if not isinstance(cause, Exception) or isinstance(cause, UserCodeException):
        return cause
    msg = f"Failed {doing} operator {op_name}: {cause_cls.__name__}: {cause}"
    return _make(_class_for(cause_cls), cause_cls, (msg,))


__all__ = ["UserCodeException", "RayDataUserCodeException", "SystemException"]
