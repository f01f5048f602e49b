"""Direct owner <-> worker channels: a Unix stream socket per pair.

Task pushes and their replies are the hot path.  Over zmq each message
crosses two extra I/O threads (one per side); a plain Unix socket goes from
the sender's thread to the receiver's poll directly, which cuts a round trip
several-fold on a small machine.  The control plane (leases, actors,
borrowers) stays on zmq.

A message on the wire: <I nframes> then <Q length> per frame, then the
frames.  The first frame is a pickled op tuple, as on zmq.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
import threading

_N = struct.Struct("<I")
_L = struct.Struct("<Q")
_ONE = struct.Struct("<IQ")         # the header of a one-frame message
_ONE_HEAD = _ONE.size
# a one-frame message this small is copied behind its header and goes out in
# one send(); larger ones go as a scatter list
_SMALL = 64 << 10
_MAX_FRAMES = 1 << 16
_MAX_FRAME = 1 << 40
# Reads go through a per-thread scratch buffer: recv(n) would allocate (and,
# at this size, mmap and fault in) a fresh n-byte object on every call.
_CHUNK = 1 << 20
_local = threading.local()


def _scratch():
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = memoryview(bytearray(_CHUNK))
    return buf


class ChannelClosed(ConnectionError):
    pass


class Channel:
    """One end of a connected stream socket.  send() may be called from any
    thread; receive with feed() from one thread only."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.fd = sock.fileno()
        self.lock = threading.Lock()
        self.buf = bytearray()
        self.closed = False
        self.pending = []           # unsent views (non-blocking senders only)
        self.leading = False        # a caller thread reads it (CoreWorker._read_replies)
        self.rpoll = None           # that caller's select.poll object
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
            except OSError:
                pass

    @classmethod
    def connect(cls, path: str, timeout: float = 5.0) -> "Channel":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError:
            s.close()
            raise
        s.settimeout(None)
        return cls(s)

    def send(self, data: bytes, frames=()) -> bool:
        """Sends one message; False if the peer is gone."""
        if not frames and len(data) <= _SMALL:
            msg = _ONE.pack(1, len(data)) + data
            with self.lock:
                if self.closed:
                    return False
                try:
                    self.sock.sendall(msg)
                    return True
                except OSError:
                    self.closed = True
                    return False
        header = [_N.pack(1 + len(frames)), _L.pack(len(data))]
        for f in frames:
            header.append(_L.pack(memoryview(f).nbytes))
        parts = [b"".join(header), data]
        parts.extend(frames)
        with self.lock:
            if self.closed:
                return False
            try:
                _sendall(self.sock, parts)
                return True
            except OSError:
                self.closed = True
                return False

    def send_nowait(self, data: bytes, frames=()) -> bool:
        """Sends one message without ever blocking: what the socket does not
        take now is queued in self.pending, to go out with flush() when the
        socket is writable.  Owners use this, so that an owner and a worker
        both writing to a full socket cannot wait on each other.  Returns
        False if the peer is gone."""
        if not frames and len(data) <= _SMALL:
            msg = _ONE.pack(1, len(data)) + data
            with self.lock:
                if self.closed:
                    return False
                if self.pending:
                    self.pending.append(memoryview(msg))
                    return True
                try:
                    n = self.sock.send(msg, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self.closed = True
                    return False
                if n < len(msg):
                    self.pending = [memoryview(msg)[n:]]
                return True
        header = [_N.pack(1 + len(frames)), _L.pack(len(data))]
        for f in frames:
            header.append(_L.pack(memoryview(f).nbytes))
        views = [memoryview(b"".join(header)), memoryview(data)]
        views.extend(memoryview(f).cast("B") for f in frames)
        with self.lock:
            if self.closed:
                return False
            if self.pending:
                self.pending.extend(views)
                return True
            self.pending = views
            return self._flush_locked()

    def flush(self) -> bool:
        with self.lock:
            if self.closed:
                return False
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        views = self.pending
        try:
            while views:
                sent = self.sock.sendmsg(views[:512], [], socket.MSG_DONTWAIT)
                _advance(views, sent)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.closed = True
            self.pending = []
            return False
        return True

    def recv_available(self):
        """Reads what the socket has without blocking; returns the complete
        messages (each a list of frames).  Raises ChannelClosed at EOF."""
        scratch = _scratch()
        try:
            while True:
                n = self.sock.recv_into(scratch, _CHUNK, socket.MSG_DONTWAIT)
                if not n:
                    self.closed = True
                    break
                self.buf += scratch[:n]
                if n < _CHUNK:
                    break
        except BlockingIOError:
            pass
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.closed = True
        msgs = self._parse()
        if self.closed and not msgs:
            raise ChannelClosed("peer closed the channel")
        return msgs

    def recv_blocking(self):
        """Blocks until at least one whole message arrives."""
        while True:
            msgs = self._parse()
            if msgs:
                return msgs
            scratch = _scratch()
            n = self.sock.recv_into(scratch, _CHUNK)
            if not n:
                self.closed = True
                raise ChannelClosed("peer closed the channel")
            self.buf += scratch[:n]

    def _parse(self):
        out = []
        buf = self.buf
        pos = 0
        n_buf = len(buf)
        while n_buf - pos >= 4:
            (n,) = _N.unpack_from(buf, pos)
            if n == 1 and n_buf - pos >= _ONE_HEAD:
                ln = _ONE.unpack_from(buf, pos)[1]
                end = pos + _ONE_HEAD + ln
                if ln > _MAX_FRAME:
                    self.closed = True
                    raise ChannelClosed("malformed message header (frame too large)")
                if end > n_buf:
                    break
                out.append([bytes(buf[pos + _ONE_HEAD:end])])
                pos = end
                continue
            if n == 0 or n > _MAX_FRAMES:
                self.closed = True
                raise ChannelClosed(f"malformed message header ({n} frames)")
            head = 4 + 8 * n
            if n_buf - pos < head:
                break
            lens = [_L.unpack_from(buf, pos + 4 + 8 * i)[0] for i in range(n)]
            if any(ln > _MAX_FRAME for ln in lens):
                self.closed = True
                raise ChannelClosed("malformed message header (frame too large)")
            total = head + sum(lens)
            if n_buf - pos < total:
                break
            frames = []
            off = pos + head
            for ln in lens:
                frames.append(bytes(buf[off:off + ln]))
                off += ln
            out.append(frames)
            pos += total
        if pos:
            del buf[:pos]
        return out

    def close(self):
        with self.lock:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


def _advance(views, sent):
    """Drops `sent` bytes from the front of a list of byte views, in place."""
    i = 0
    while i < len(views) and sent >= views[i].nbytes:
        sent -= views[i].nbytes
        i += 1
    del views[:i]
    if sent:
        views[0] = views[0][sent:]


def _sendall(sock, parts):
    views = [v for v in (memoryview(p).cast("B") for p in parts) if v.nbytes]
    while views:
        _advance(views, sock.sendmsg(views[:512]))


class Listener:
    """The worker's listening socket for owners' channels."""

    def __init__(self, path: str):
        self.path = path
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()

    def accept(self):
        out = []
        while True:
            try:
                s, _ = self.sock.accept()
            except BlockingIOError:
                return out
            s.setblocking(True)
            out.append(Channel(s))

    def close(self):
        try:
            self.sock.close()
        finally:
            try:
                os.unlink(self.path)
            except OSError:
                pass
