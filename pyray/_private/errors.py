"""Errors between processes: one encoding.

Every error that crosses a process boundary travels the same way, as an
*error payload* ``(pickled exception, [buffers])``:

* a task's exception, in its reply and as the value of its return objects
  (``OBJECT_VALUE`` / task replies with kind ``ERROR``);
* a request that failed (``RESPONSE`` with ``ok`` False): the GCS, a raylet
  or an object manager says what went wrong with a pyray exception;
* a pull that failed (``OBJECT_CHUNK.error``, then the pull's RESPONSE):
  ``NodeDiedError`` when the node holding the object is gone,
  ``ObjectStoreFullError`` when there is no room here, ``ObjectLostError``
  when the source does not have it (any more);
* why an actor died (``ACTOR_STATE.cause``): the creation task's error, or
  an ``ActorDiedError`` saying what happened to it.

``encode`` makes a payload, ``decode`` reads one back; the receiver decides
by the exception's type, never by parsing its text.
"""
from __future__ import annotations

import pickle

from pyray import exceptions as exc

# errors a request handler raises for bad input: they reach the caller as
# themselves, so it raises the type Ray raises (a taken name, an unknown actor)
_USER_ERRORS = (ValueError, TypeError, KeyError)


def encode(err: BaseException):
    """The error payload of an exception (unpicklable ones still report)."""
    try:
        return (pickle.dumps(err, protocol=5), [])
    except Exception:  # noqa: BLE001 - a user exception plain pickle refuses
        try:
            import cloudpickle
            return (cloudpickle.dumps(err, protocol=5), [])
        except Exception:  # noqa: BLE001
            return (pickle.dumps(exc.RaySystemError(repr(err)), protocol=5), [])


def decode(payload) -> BaseException:
    """The exception an error payload holds.  One that cannot be rebuilt here
    (its class does not import in this process) becomes a RaySystemError
    saying so."""
    data, buffers = payload
    try:
        return pickle.loads(data, buffers=buffers)
    except Exception as err:  # noqa: BLE001
        return exc.RaySystemError(f"an error from another process could not be read here: "
                                  f"{type(err).__name__}: {err}")


def request_failed(err: BaseException):
    """The payload a failed request answers with: bad input as itself, any
    other failure of the handler as a RaySystemError naming it."""
    if type(err) in _USER_ERRORS or isinstance(err, exc.RayError):
        return encode(err)
    return encode(exc.RaySystemError(f"{type(err).__name__}: {err}"))


def actor_died(actor_id: bytes, why: str):
    """The cause of an actor's death that is not its creation task's error."""
    return encode(exc.ActorDiedError(None, f"The actor {actor_id.hex()} is dead: {why}",
                                     actor_id))
