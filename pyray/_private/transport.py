"""zmq plumbing: one PULL inbox per process and cached PUSH sockets to peers.

Sends may come from any thread; they share one lock so each peer sees one
ordered stream from us.  Nothing here blocks forever: sends are non-blocking
with a large high-water mark, and receives are polled with timeouts.
"""
from __future__ import annotations

import logging
import pickle
import threading

import zmq

log = logging.getLogger("pyray.transport")

_HWM = 1_000_000


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
        self.closed = False

    def _sock(self, addr):
        s = self.socks.get(addr)
        if s is None:
            s = self.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, _HWM)
            s.connect(addr)
            self.socks[addr] = s
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
                self._sock(addr).send(data, zmq.NOBLOCK)
                return True
            except zmq.ZMQError as exc:
                log.warning("send to %s failed: %s", addr, exc)
                return False

    def forget(self, addr: str):
        with self.lock:
            s = self.socks.pop(addr, None)
            if s is not None:
                s.close(0)

    def close(self):
        with self.lock:
            self.closed = True
            for s in self.socks.values():
                s.close(0)
            self.socks.clear()


def bind_inbox(ctx: zmq.Context, addr: str) -> zmq.Socket:
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, _HWM)
    s.bind(addr)
    return s


def recv_msg(sock: zmq.Socket):
    """Receives one message: (tuple, extra frames).  A malformed message is
    logged and returns (None, None); it never raises to the caller's loop."""
    frames = sock.recv_multipart(copy=False)
    try:
        msg = pickle.loads(frames[0].buffer)
        if not isinstance(msg, tuple) or not msg or not isinstance(msg[0], int):
            raise ValueError("not an op tuple")
    except Exception as exc:  # noqa: BLE001 - a bad peer must not kill the loop
        log.warning("dropped a malformed message (%d bytes): %s", len(frames[0].bytes), exc)
        return None, None
    return msg, frames[1:]
