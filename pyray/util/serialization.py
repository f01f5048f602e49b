"""Custom serializers for types pickle cannot handle, as Ray's
`ray.util.register_serializer`.

    pyray.util.register_serializer(Conn, serializer=lambda c: c.url,
                                   deserializer=Conn)

From then on every instance of exactly that type that this process sends
(a task argument, a return value, a `put`) is stored as
``serializer(obj)`` and rebuilt with ``deserializer(...)`` wherever it is
read; the deserializer travels with the value, so the reading process needs
no registration.  As in Ray the registration holds in the process that made
it: register in a task or an actor for values that it returns.
"""
from __future__ import annotations

import copyreg

_registered = {}


def _rebuild(deserializer, state):
    return deserializer(state)


def register_serializer(cls: type, *, serializer, deserializer) -> None:
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer() needs a class, got {cls!r}")
    if not callable(serializer) or not callable(deserializer):
        raise TypeError("serializer and deserializer must both be callables")

    def reduce(obj):
        return _rebuild, (deserializer, serializer(obj))

    _registered[cls] = copyreg.dispatch_table.get(cls)
    copyreg.pickle(cls, reduce)


def deregister_serializer(cls: type) -> None:
    if cls not in _registered:
        raise ValueError(f"no serializer is registered for {cls.__qualname__}")
    previous = _registered.pop(cls)
    if previous is None:
        copyreg.dispatch_table.pop(cls, None)
    else:
        copyreg.dispatch_table[cls] = previous
