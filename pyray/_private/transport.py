"""zmq plumbing: one PULL inbox per process and cached PUSH sockets to peers.

Sends may come from any thread; they share one lock so each peer sees one
ordered stream from us.  Nothing here blocks forever: sends are non-blocking
with a large high-water mark, and receives are polled with timeouts.

Messages to a tcp:// endpoint are authenticated with the cluster token
(docs/cluster.md, "Security"): the sender puts HMAC-SHA256(token, frames)
before the frames, and a tcp inbox checks it before it unpickles anything.
ipc:// endpoints live in the 0700 session directory and carry no MAC.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import struct
import threading
import time

import zmq

log = logging.getLogger("pyray.transport")

_HWM = 1_000_000

# the token for a tcp address, set by whoever learnt it (init(_token=...),
# `pyray start`); any other tcp address uses the cluster's (the last token
# set), else $PYRAY_TOKEN
_tokens: dict[str, bytes] = {}
_default = {"key": None}
# tcp inboxes and the key their messages must be signed with
_inbox_keys: dict = {}
_dropped = {"count": 0, "logged": 0.0}


def set_token(addr: str, token: str | None):
    """The token of the cluster whose GCS is at `addr`; it also signs what
    goes to that cluster's other tcp peers (raylets, workers on other nodes)."""
    if token:
        _tokens[addr] = _default["key"] = token.encode()
    else:
        if _tokens.pop(addr, None) == _default["key"]:
            _default["key"] = None


def key_for(addr: str) -> bytes | None:
    """The MAC key for messages to `addr`: None for ipc://, and for a tcp
    address whose token nobody gave."""
    if not addr.startswith("tcp://"):
        return None
    key = _tokens.get(addr) or _default["key"]
    if key is None:
        env = os.environ.get("PYRAY_TOKEN")
        key = env.encode() if env else None
    return key


def host_port(addr: str) -> tuple[str, str]:
    """(host, port) of a tcp:// address (without a node suffix)."""
    host, _, port = endpoint(addr)[len("tcp://"):].rpartition(":")
    return host.strip("[]"), port


def endpoint(addr: str) -> str:
    """What zmq connects to for a process address.  A core worker's tcp
    address ends with its node's id after the port ("tcp://10.0.0.2:41234.
    ab12..."), as its ipc path does, so holders of its refs know its node."""
    if addr.startswith("tcp://"):
        head, _, port = addr.rpartition(":")
        if "." in port:
            return f"{head}:{port.split('.', 1)[0]}"
    return addr


def mac(key: bytes, frames) -> bytes:
    """HMAC-SHA256 over the frame count, their lengths and their bytes (so
    frames cannot be re-split under the same MAC)."""
    lens = [memoryview(f).nbytes for f in frames]
    h = hmac.new(key, struct.pack(f"<{len(lens) + 1}Q", len(lens), *lens), hashlib.sha256)
    for f in frames:
        h.update(f)
    return h.digest()


def _note_dropped(why, frames):
    """Logs dropped unauthenticated messages, at most once every 5 s."""
    _dropped["count"] += 1
    now = time.monotonic()
    if now - _dropped["logged"] < 5.0:
        return
    try:
        peer = frames[0].get("Peer-Address")
    except (zmq.ZMQError, AttributeError, TypeError, UnicodeDecodeError):
        peer = None
    log.warning("dropped %d unauthenticated message(s) (latest: %s, from %s): the sender "
                "does not hold this cluster's token", _dropped["count"], why,
                peer or "an unknown peer")
    _dropped["count"] = 0
    _dropped["logged"] = now


def dumps(msg) -> bytes:
    return pickle.dumps(msg, protocol=5)


def loads(data):
    return pickle.loads(data)


class Outbox:
    """PUSH sockets to peers, created on first use, guarded by one lock."""

    def __init__(self, ctx: zmq.Context):
        self.ctx = ctx
        self.lock = threading.Lock()
        self.socks: dict[str, zmq.Socket] = {}
        self.keys: dict[str, bytes] = {}    # tcp peers: the MAC key
        self.closed = False

    def _sock(self, addr):
        s = self.socks.get(addr)
        if s is None:
            s = self.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, _HWM)
            s.connect(endpoint(addr))
            self.socks[addr] = s
            key = key_for(addr)
            if key is not None:
                self.keys[addr] = key
            elif addr.startswith("tcp://"):
                log.warning("no cluster token for %s (set PYRAY_TOKEN): it will drop "
                            "our messages", addr)
        return s

    def send(self, addr: str, msg, frames=None) -> bool:
        """Sends a message tuple (plus raw frames).  Returns False if the peer's
        queue is full or we are closed: the caller decides what that means."""
        data = pickle.dumps(msg, protocol=5)
        with self.lock:
            if self.closed:
                return False
            s = self._sock(addr)
            try:
                key = self.keys.get(addr) if self.keys else None
                if key is not None:
                    s.send(mac(key, [data, *(frames or ())]), zmq.NOBLOCK | zmq.SNDMORE)
                if frames:
                    s.send(data, zmq.NOBLOCK | zmq.SNDMORE)
                    for i, f in enumerate(frames):
                        s.send(f, zmq.NOBLOCK | (zmq.SNDMORE if i < len(frames) - 1 else 0),
                               copy=False)
                else:
                    s.send(data, zmq.NOBLOCK)
                return True
            except zmq.Again:
                log.warning("peer %s is not draining its inbox; message dropped", addr)
                return False
            except zmq.ZMQError as exc:
                log.warning("send to %s failed: %s", addr, exc)
                return False

    def send_raw(self, addr: str, data: bytes) -> bool:
        with self.lock:
            if self.closed:
                return False
            try:
                s = self._sock(addr)
                key = self.keys.get(addr) if self.keys else None
                if key is not None:
                    s.send(mac(key, [data]), zmq.NOBLOCK | zmq.SNDMORE)
                s.send(data, zmq.NOBLOCK)
                return True
            except zmq.ZMQError as exc:
                log.warning("send to %s failed: %s", addr, exc)
                return False

    def forget(self, addr: str):
        with self.lock:
            s = self.socks.pop(addr, None)
            self.keys.pop(addr, None)
            if s is not None:
                s.close(0)

    def close(self, flush=(), linger_ms=500):
        """Closes every socket.  Messages still queued for the addresses in
        `flush` get up to `linger_ms` to go out (the context's term() waits
        for them); the rest are dropped."""
        with self.lock:
            self.closed = True
            for addr, s in self.socks.items():
                s.close(linger_ms if addr in flush else 0)
            self.socks.clear()
            self.keys.clear()


def bind_inbox(ctx: zmq.Context, addr: str) -> zmq.Socket:
    """A PULL inbox.  One on tcp:// needs the cluster token: recv_msg then
    drops every message not signed with it."""
    key = key_for(addr)
    if addr.startswith("tcp://") and key is None:
        raise ValueError(f"listening on {addr} needs the cluster token (PYRAY_TOKEN)")
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, _HWM)
    s.bind(addr)
    if key is not None:
        _inbox_keys[s] = key
    return s


def bind_node_inbox(ctx: zmq.Context, node: dict, ipc_addr: str, suffix: str = ""):
    """A process's inbox on its node: `ipc_addr` on a node of a one-machine
    cluster, tcp on the node's address (a port the kernel picks, `suffix`
    after it) on a node other machines reach (node["tcp"]).  Returns
    (socket, the address peers send to)."""
    if not node.get("tcp"):
        return bind_inbox(ctx, ipc_addr), ipc_addr
    s = bind_inbox(ctx, f"tcp://{node.get('node_ip') or '127.0.0.1'}:*")
    return s, s.getsockopt(zmq.LAST_ENDPOINT).decode() + suffix


def forget_inbox(sock):
    """Drops what is kept about an inbox that is being closed."""
    _inbox_keys.pop(sock, None)


def inbox_key(sock: zmq.Socket) -> bytes | None:
    """The key messages to this inbox are signed with (None: ipc, unsigned)."""
    return _inbox_keys.get(sock)


def unsign(key: bytes, frames):
    """The frames of a signed message without its MAC, or None (logged) when
    the MAC is missing or wrong.  Checked before anything is unpickled: a
    bad peer's pickle could run code."""
    if len(frames) < 2 or not hmac.compare_digest(
            frames[0].bytes, mac(key, [f.buffer for f in frames[1:]])):
        _note_dropped("no valid MAC", frames)
        return None
    return frames[1:]


def recv_msg(sock: zmq.Socket):
    """Receives one message: (tuple, extra frames).  A malformed message is
    logged and returns (None, None); it never raises to the caller's loop."""
    frames = sock.recv_multipart(copy=False)
    if _inbox_keys:
        key = _inbox_keys.get(sock)
        if key is not None:
            frames = unsign(key, frames)
            if frames is None:
                return None, None
    try:
        msg = pickle.loads(frames[0].buffer)
        if not isinstance(msg, tuple) or not msg or not isinstance(msg[0], int):
            raise ValueError("not an op tuple")
    except Exception as exc:  # noqa: BLE001 - a bad peer must not kill the loop
        log.warning("dropped a malformed message (%d bytes): %s", len(frames[0].bytes), exc)
        return None, None
    return msg, frames[1:]
