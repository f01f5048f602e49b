"""The one place where object store (plasma) exceptions become pyray ones.

A Ray user catches ``ray.exceptions.ObjectLostError``,
``ObjectStoreFullError`` and ``GetTimeoutError``; plasma raises its own
classes (plasma.errors), which those ``except`` clauses do not see.  Every
call into the store that lets a plasma exception out goes through
:func:`to_pyray_error`::

    try:
        buf = cw.plasma.get(oid, timeout=...)
    except plasma.ObjectNotFoundError:
        ...                                 # a decision of the caller's
    except plasma.PlasmaError as err:
        raise to_pyray_error(err, oid.hex(), owner) from None

Success paths pay nothing: the conversion runs only once an exception is
already on its way.  Errors that are not plasma's are returned unchanged.
"""
from __future__ import annotations

from pyray import exceptions as exc


def to_pyray_error(err: BaseException, oid_hex: str = "", owner_address: str = ""):
    """The pyray exception to raise for ``err``, a plasma exception raised by
    a store call about the object ``oid_hex`` (owned by ``owner_address``).

    plasma.ObjectLostError (a spilled copy that cannot be read back) and
    plasma.ObjectNotFoundError (gone from the store: freed or evicted)
    become ObjectLostError; plasma.ObjectStoreFullError becomes
    ObjectStoreFullError; plasma.GetTimeoutError becomes GetTimeoutError;
    a store that is gone, closed or out of client slots becomes
    RaySystemError.  The store's message is kept."""
    convert = _converters().get(type(err))
    if convert is None:
        for cls in type(err).__mro__[1:]:
            convert = _converters().get(cls)
            if convert is not None:
                break
        else:
            return err
    return convert(err, oid_hex, owner_address)


def _lost(err, oid_hex, owner):
    what = f"Object {oid_hex}" if oid_hex else "An object"
    return exc.ObjectLostError(oid_hex, owner, msg=f"{what} is lost: {err}")


def _full(err, oid_hex, owner):
    return exc.ObjectStoreFullError(str(err))


def _timeout(err, oid_hex, owner):
    return exc.GetTimeoutError(str(err))


def _system(err, oid_hex, owner):
    return exc.RaySystemError(f"object store: {err}")


_table = None


def _converters():
    """plasma exception class -> converter; made on first use, so that
    importing this module does not load the store's extension."""
    global _table
    if _table is None:
        import plasma
        _table = {
            plasma.ObjectLostError: _lost,
            plasma.ObjectNotFoundError: _lost,
            plasma.ObjectStoreFullError: _full,
            plasma.GetTimeoutError: _timeout,
            plasma.StoreNotFoundError: _system,
            plasma.StoreClosedError: _system,
            plasma.TooManyClientsError: _system,
            plasma.PlasmaError: _system,     # exists, sealed: the runtime's own mistake
        }
    return _table
