"""What both ends of a client connection share: signing, framing, refs.

A message is [MAC, pickled op tuple, *raw frames]; the MAC is transport.mac
keyed by the cluster token, checked before anything is unpickled.  A peer
whose message fails the check is answered with BAD_TOKEN alone (unsigned,
never unpickled by the client), so that it can say why it was refused.
"""
from __future__ import annotations

import hmac
import pickle

from pyray._private.transport import mac

CLIENT_PROTOCOL_VERSION = 1
BAD_TOKEN = b"PYRAY_CLIENT_BAD_TOKEN"
DEFAULT_PORT = 10001


def sign(key: bytes, msg, frames=()):
    parts = [dumps_fallback(msg), *frames]
    return [mac(key, parts), *parts]


def dumps_fallback(obj) -> bytes:
    """Pickles with plain pickle, else cloudpickle (classes of the user's
    script in retry_exceptions, placement shapes)."""
    try:
        data = pickle.dumps(obj, protocol=5)
        if b"__main__" not in data:
            return data
    except Exception:  # noqa: BLE001 - cloudpickle copes with more
        pass
    import cloudpickle
    return cloudpickle.dumps(obj, protocol=5)


def unsign(key: bytes, frames):
    """(msg, extra frames) of a signed message, or None when the MAC is
    missing or wrong (nothing was unpickled)."""
    if len(frames) < 2:
        return None
    if not hmac.compare_digest(bytes(frames[0]), mac(key, frames[1:])):
        return None
    msg = pickle.loads(frames[1])
    if not isinstance(msg, tuple) or not msg or not isinstance(msg[0], int):
        return None
    return msg, frames[2:]


def wire_ref(ref):
    """(oid, owner, parent) of an ObjectRef: parent is the same for the ref
    it was read out of, whose pin keeps it alive."""
    p = ref._parent
    return (ref._id, ref._owner, None if p is None else wire_ref(p))


def parse_address(address: str):
    """(host, port) of "pyray://host:port" / "ray://host:port"."""
    rest = address.split("://", 1)[1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, str(DEFAULT_PORT)
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"bad client address {address!r}: expected pyray://HOST:PORT") from None
