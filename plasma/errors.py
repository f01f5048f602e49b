"""Exceptions of the object store.

Each one subclasses both :class:`PlasmaError` and the builtin it means, so
``except MemoryError`` or ``except KeyError`` around store calls works too.
"""


class PlasmaError(Exception):
    """Base class of every object store error."""


class ObjectStoreFullError(PlasmaError, MemoryError):
    """No room for an object, even after evicting cached copies and spilling.

    ``need`` is the number of bytes the allocation needed; ``retryable`` is
    False when the object can never fit (it is larger than the store).
    """

    def __init__(self, message, need=0, retryable=False):
        super().__init__(message)
        self.need = need
        self.retryable = retryable


class GetTimeoutError(PlasmaError, TimeoutError):
    """get() ran out of time before the object was sealed."""


class ObjectExistsError(PlasmaError, ValueError):
    """create() or put() of an id that is already in the store."""


class ObjectNotFoundError(PlasmaError, KeyError):
    """No object with this id (never created, deleted, or evicted)."""

    def __str__(self):  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ObjectSealedError(PlasmaError, ValueError):
    """seal() or abort() of an object that is already sealed."""


class ObjectLostError(PlasmaError, OSError):
    """A spilled object could not be read back intact (missing or corrupt file)."""


class StoreNotFoundError(PlasmaError, FileNotFoundError):
    """No object store with this name on this machine."""


class StoreClosedError(PlasmaError, ValueError):
    """The client or store was closed (or inherited over fork())."""


class TooManyClientsError(PlasmaError, RuntimeError):
    """Every client slot is held by a live process."""
