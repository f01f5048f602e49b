"""The core worker's I/O: its inbox, the direct channels to workers, and
the thread that serves them.

Every process has one inbox (a zmq PULL socket) and sends through an
Outbox (transport.py).  Tasks and their replies travel over direct
channels (channel.py) when there are some: the I/O thread polls them all
through one epoll set.  It dispatches each message to the handler the
core worker registered for its op (``handlers``, built in core_worker.py;
``extra_handlers`` for parts added later: cancellation in a worker,
placement groups), answers requests made with rpc(), and runs timers
every 0.1 s (dropped refs, idle leases, actors to ask the GCS about again).

A thread blocked in get() on a task pushed over a direct channel reads
that channel itself for a short while (_read_replies): a synchronous call
then needs one thread wake-up, not two.

``IoLoop`` is one part of CoreWorker (core_worker.py).
"""
from __future__ import annotations

import logging
import select
import sys
import threading
import time

import zmq

from pyray import exceptions as exc
from pyray._private import errors, serialization
from pyray._private.channel import Channel, ChannelClosed
from pyray._private.protocol import LOG_LINES, RESPONSE, WAKE, Op, definition
from pyray._private.transport import inbox_key as _inbox_key, unsign

log = logging.getLogger("pyray.core_worker")

# plain ints: zmq's flag enums are slow to combine on the hot path
_POLLIN = int(zmq.POLLIN)
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLLIN_HUP = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
# requests to the GCS unanswered this long are sent again (the GCS may have
# restarted); those whose second copy would do something else are not
GCS_RESEND_S = 1.0
_GCS_NOT_RESENT = frozenset((Op.REGISTER_JOB, Op.KV_PUT, Op.KV_DEL))
# a caller reading its own reply channel (_read_replies) looks at the rest
# of the world at least this often (ms)
_LEAD_MS = 5


class IoLoop:
    """The inbox, the channels, the I/O thread and request/response."""

    def _init_io(self):
        self.rpc_waiters = {}
        self._req_counter = 0
        self.extra_handlers = {}
        self._pending_callbacks = []
        self.poller = zmq.Poller()
        self.poller.register(self.inbox, zmq.POLLIN)
        # the direct channels, in an epoll set the I/O thread polls as one
        # fd: a caller reading its own replies (_read_replies) takes its
        # channel out of the set at once, even while the I/O thread waits
        self.chan_ep = select.epoll()
        self.chan_ep_fd = self.chan_ep.fileno()
        self.poller.register(self.chan_ep_fd, zmq.POLLIN)
        self.chan_by_path = {}
        self.chan_by_fd = {}
        self.chan_out = set()       # channels with queued output (see _send_task)
        self.chan_polling_out = set()

    def _start_io_thread(self):
        self.io_thread = threading.Thread(target=self._io_loop, name="pyray-io", daemon=True)
        self.io_thread.start()
        self.io_ident = self.io_thread.ident

    def rpc(self, addr, op, *args, timeout=None):
        timeout = self.config.rpc_timeout_s if timeout is None else timeout
        ev = threading.Event()
        slot = [ev, None, None]
        with self.lock:
            self._req_counter += 1
            req_id = self._req_counter
            self.rpc_waiters[req_id] = slot
        msg = definition(op).make(req_id, self.addr, *args)
        self.out.send(addr, msg)
        deadline = time.monotonic() + timeout
        if addr == self.gcs_addr and op not in _GCS_NOT_RESENT:
            # a request the GCS took in just before it was killed is lost:
            # ask again (the same id) until a restarted GCS answers
            while not ev.wait(max(0.0, min(GCS_RESEND_S, deadline - time.monotonic()))) \
                    and time.monotonic() < deadline:
                self.out.send(addr, msg)
        if not ev.wait(max(0.0, deadline - time.monotonic())):
            with self.lock:
                self.rpc_waiters.pop(req_id, None)
            raise exc.RaySystemTimeoutError(
                f"no answer from {addr} to request {op} within {timeout}s; is the cluster up?")
        ok, payload = slot[1], slot[2]
        if not ok:
            raise errors.decode(payload)
        return payload

    def _h_response(self, msg, frames):
        _, req_id, ok, payload = RESPONSE.parse(msg)
        slot = self.rpc_waiters.pop(req_id, None)
        if slot is not None:
            slot[1], slot[2] = ok, payload
            slot[0].set()


    def _channel_for(self, path):
        """The direct channel to a worker (I/O thread only)."""
        if not path:
            return None
        ch = self.chan_by_path.get(path)
        if ch is not None and not ch.closed:
            return ch
        try:
            ch = Channel.connect(path)
        except OSError as err:
            log.debug("no direct channel to %s (%s); using zmq", path, err)
            return None
        self.chan_by_path[path] = ch
        self.chan_by_fd[ch.fd] = ch
        self.chan_ep.register(ch.fd, _EPOLLIN)
        return ch

    def _chan_events(self, ch):
        """What the I/O thread waits for on a channel: input unless a
        caller reads it itself, output while a send is unfinished."""
        return (0 if ch.leading else _EPOLLIN) | (
            _EPOLLOUT if ch in self.chan_polling_out else 0)

    def _on_channel(self, fd):
        ch = self.chan_by_fd.get(fd)
        if ch is None or ch.leading:
            return
        try:
            msgs = ch.recv_available()
        except ChannelClosed:
            msgs = None
        if msgs:
            for frames in msgs:
                self._dispatch_frames(frames)
        if ch.closed:
            try:
                self.chan_ep.unregister(fd)
            except OSError:
                pass
            del self.chan_by_fd[fd]
            for path in [p for p, c in self.chan_by_path.items() if c is ch]:
                del self.chan_by_path[path]
            self.chan_out.discard(ch)
            self.chan_polling_out.discard(ch)
            ch.close()

    def _watch_output(self):
        """Polls for writability exactly on the channels with queued output."""
        for ch in list(self.chan_out):
            if ch.closed or not ch.pending:
                self.chan_out.discard(ch)
        for ch in self.chan_out - self.chan_polling_out:
            self.chan_polling_out.add(ch)
            self.chan_ep.modify(ch.fd, self._chan_events(ch))
        for ch in self.chan_polling_out - self.chan_out:
            self.chan_polling_out.discard(ch)
            if not ch.closed:
                self.chan_ep.modify(ch.fd, self._chan_events(ch))

    def _send_task(self, channel, addr, msg, bufs):
        """Over the direct channel when there is one, else over zmq."""
        if channel is not None and not channel.closed:
            if channel.send_nowait(serialization.pickle.dumps(msg, protocol=5), bufs or ()):
                if channel.pending and channel not in self.chan_out:
                    # The socket is full: the I/O thread finishes the send
                    # when the worker has read enough.
                    self.chan_out.add(channel)
                    if threading.current_thread() is not self.io_thread:
                        self.out.send(self.addr, WAKE.make())
                return
        self.out.send(addr, msg, bufs)

    def _read_replies(self, ch, remaining):
        """Waits for a reply by reading `ch` in the calling thread (lock
        held on entry and exit; released while blocked).  A synchronous call
        then costs one wake-up, not two (the I/O thread's, then ours): the
        I/O thread leaves the channel alone meanwhile.  Reads for at most
        _LEAD_MS at a time, so that news coming another way (a dead worker,
        over zmq) is seen soon after the I/O thread's notify."""
        ch.leading = True
        fd = ch.fd
        self.chan_ep.modify(fd, self._chan_events(ch))
        msgs = None
        wait_ms = _LEAD_MS if remaining is None else max(0, min(_LEAD_MS, remaining * 1000))
        saved = self.lock._release_save()
        try:
            if ch.rpoll is None:
                ch.rpoll = select.poll()
                ch.rpoll.register(fd, select.POLLIN)
            if ch.rpoll.poll(wait_ms):
                try:
                    msgs = ch.recv_available()
                except ChannelClosed:
                    pass
        finally:
            self.lock._acquire_restore(saved)
            ch.leading = False
            if not ch.closed:
                self.chan_ep.modify(fd, self._chan_events(ch))
            elif fd in self.chan_by_fd:
                self._on_channel(fd)        # the I/O thread's clean-up
        if msgs:
            for frames in msgs:
                self._dispatch_frames(frames)

    def _io_loop(self):
        poller = self.poller
        next_tick = time.monotonic() + 0.1
        inbox = self.inbox
        inbox_key = _inbox_key(inbox)       # tcp inboxes: messages are signed
        ep, ep_fd = self.chan_ep, self.chan_ep_fd
        while not self.closing:
            if self.chan_out or self.chan_polling_out:
                with self.lock:
                    self._watch_output()
            try:
                events = poller.poll(100)
            except zmq.ZMQError:
                if self.closing:
                    return
                raise
            if events:
                with self.lock:
                    for src, ev in events:
                        if src is inbox:
                            n = 0
                            while n < 1000 and inbox.getsockopt(zmq.EVENTS) & _POLLIN:
                                try:
                                    frames = inbox.recv_multipart(zmq.NOBLOCK, copy=False)
                                except zmq.ZMQError:
                                    break
                                n += 1
                                if inbox_key is not None:
                                    frames = unsign(inbox_key, frames)
                                    if frames is None:
                                        continue
                                self._dispatch_frames([f.buffer for f in frames])
                        elif src == ep_fd:
                            for fd, cev in ep.poll(0):
                                if cev & _EPOLLOUT:
                                    ch = self.chan_by_fd.get(fd)
                                    if ch is not None:
                                        ch.flush()
                                if cev & _EPOLLIN_HUP:
                                    self._on_channel(fd)
                    if self.decref_q:
                        self.drain_decrefs()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + 0.1
                with self.lock:
                    if self.decref_q:
                        self.drain_decrefs()
                    self._return_idle_leases(now)
                    if self.oom_delayed:
                        self._requeue_oom_delayed(now)
                    if now >= self._actor_reask_at:
                        self._reask_actor_info(now)
            if self._pending_callbacks:
                cbs, self._pending_callbacks = self._pending_callbacks, []
                for ref, cb in cbs:
                    if self.cluster.needs_fetch(ref):
                        # the pull's answer comes through this thread: not here
                        threading.Thread(target=self._run_callback, args=(ref, cb),
                                         daemon=True).start()
                    else:
                        self._run_callback(ref, cb)

    def _run_callback(self, ref, cb):
        try:
            cb(lambda: self.get(ref))
        except Exception:  # noqa: BLE001 - a user callback must not stop I/O
            log.exception("callback for %s raised", ref)

    def _dispatch_frames(self, frames):
        try:
            msg = serialization.pickle.loads(frames[0])
            handler = self.handlers.get(msg[0]) or self.extra_handlers.get(msg[0])
        except Exception as err:  # noqa: BLE001 - bad peers must not kill the loop
            log.warning("dropped a malformed message: %s", err)
            return
        if handler is None:
            log.warning("dropped a message with unknown op %r", msg[0])
            return
        try:
            handler(msg, frames[1:])
        except Exception:  # noqa: BLE001
            log.exception("handling op %s failed", msg[0])


    def _h_log_lines(self, msg, frames):
        print_log_lines(*LOG_LINES.parse(msg)[1:])


def print_log_lines(prefix, is_err, text):
    """Lines a worker printed, on the driver's stdout/stderr, each after the
    worker's prefix (also a Ray Client driver's, client/worker.py)."""
    stream = sys.stderr if is_err else sys.stdout
    try:
        stream.write("".join(f"{prefix} {line}\n" for line in text.splitlines()))
        stream.flush()
    except (OSError, ValueError):
        pass

