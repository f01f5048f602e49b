"""What both ends of a client connection share: signing, framing, refs.

A message is [TAG, pickled op tuple, *raw frames].  TAG is a MAC (HMAC-
SHA256) followed by the indexes of the frames it covers by length only.

* The connection is authenticated once: CLIENT_HELLO and its answer are
  signed with the cluster token and carry a nonce from each side; every
  later message of the connection, both ways, is signed with the session
  key derived from the token and both nonces (`session_key`), so a message
  recorded from one connection is refused on any other, and a peer without
  the token never gets a message unpickled.  Each direction numbers its
  messages (`Link`) and the number is under the MAC: a message replayed,
  dropped or reordered within the connection is refused too.
* A MAC covers the message, the count and lengths of all frames and the
  bytes of every frame that will be unpickled or is small; the large
  out-of-band buffers of values (`RAW_MIN` and up: a numpy array's data)
  are covered by their length only: hashing them was most of the cost of a
  large put or get, and they are never unpickled.

A peer whose message fails the check is answered with BAD_TOKEN alone
(unsigned, never unpickled by the client), so that it can say why it was
refused.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import struct

CLIENT_PROTOCOL_VERSION = 2
BAD_TOKEN = b"PYRAY_CLIENT_BAD_TOKEN"
DEFAULT_PORT = 10001
RAW_MIN = 1 << 16
# the first frame of a zmq message that holds two client messages: a
# CLIENT_REFS (its two frames) and then the message it goes ahead of
REFS_AHEAD = b"R"
_MAC_LEN = 32


def new_nonce() -> bytes:
    return os.urandom(16)


def session_key(token_key: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """The key of one connection, from the token and both sides' nonces."""
    if len(client_nonce) != 16 or len(server_nonce) != 16:
        raise ValueError("a client session nonce must be 16 bytes")
    return hmac.new(token_key, b"pyray-client-session" + client_nonce + server_nonce,
                    hashlib.sha256).digest()


def raw_frames(frames, skip=0):
    """Indexes of the frames, after the first `skip`, large enough to be
    covered by length only (out-of-band value buffers)."""
    return [i for i in range(skip, len(frames)) if memoryview(frames[i]).nbytes >= RAW_MIN]


def _mac(key, head, frames, raw, seq):
    lens = [memoryview(f).nbytes for f in frames]
    h = hmac.new(key, struct.pack(f"<{len(lens) + 3}Q", seq, len(lens), len(head), *lens),
                 hashlib.sha256)
    h.update(head)
    skip = set(raw)
    for i, f in enumerate(frames):
        if i not in skip:
            h.update(f)
    return h.digest()


def sign(key: bytes, msg, frames=(), raw=(), seq=0):
    """The frames of a signed message, number `seq` of its direction; raw:
    indexes into `frames` covered by their length only (value buffers,
    never unpickled)."""
    head = dumps_fallback(msg)
    rawb = struct.pack(f"<{len(raw)}I", *raw)
    return [_mac(key, head, frames, raw, seq) + rawb, head, *frames]


class Link:
    """The signing state of one connection at one end: the key (the token
    until the hello is done, then the session key) and each direction's
    message count.  Used by one thread at a time per direction."""
    __slots__ = ("key", "sent", "received")

    def __init__(self, key, sent=0, received=0):
        self.key = key
        self.sent = sent
        self.received = received

    def sign(self, msg, frames=(), raw=()):
        parts = sign(self.key, msg, frames, raw, self.sent)
        self.sent += 1
        return parts

    def unsign(self, frames):
        got = unsign(self.key, frames, self.received)
        if got is not None:
            self.received += 1
        return got


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


def unsign(key: bytes, frames, seq=0):
    """(msg, extra frames) of signed message number `seq`, or None when the
    MAC is missing or wrong (nothing was unpickled)."""
    if len(frames) < 2:
        return None
    tag = bytes(frames[0])
    if len(tag) < _MAC_LEN or (len(tag) - _MAC_LEN) % 4:
        return None
    rest = frames[2:]
    raw = struct.unpack(f"<{(len(tag) - _MAC_LEN) // 4}I", tag[_MAC_LEN:])
    if any(i >= len(rest) for i in raw):
        return None
    if not hmac.compare_digest(tag[:_MAC_LEN], _mac(key, frames[1], rest, raw, seq)):
        return None
    msg = pickle.loads(frames[1])
    if not isinstance(msg, tuple) or not msg or not isinstance(msg[0], int):
        return None
    return msg, rest


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
