"""The receive-and-dispatch loop of the daemons (the GCS, the raylet, the
object manager).

A server has one inbox and one table ``handlers``: op -> handler, every
handler called as ``handler(msg, frames)`` (the message tuple and its raw
frames).  The loop polls the inbox (and any other fds it ``watch``es),
reads up to ``BATCH`` messages at a time, and after each wake-up runs
``after_batch(now)`` and the timers that are due.  A malformed message
(transport.recv_msg), an unknown op, or a handler that raises is logged and
dropped: the loop never dies of a message.  ``stopping`` (or, for a server
that ``obeys_signals``, a SIGTERM: pyray._private.daemon) ends the loop,
then ``close()`` runs.

Requests, ``(op, req_id, reply_to, *fields)``, are answered
``RESPONSE(req_id, ok, payload)``; ``request(fn)`` turns a function of the
request's fields (called by their names in pyray._private.protocol) that
returns the payload into such a handler.
"""
from __future__ import annotations

import logging
import time

import zmq

from pyray._private import daemon, errors
from pyray._private.protocol import RESPONSE, ProtocolError, definition
from pyray._private.transport import recv_msg

log = logging.getLogger("pyray.server")

BATCH = 1000        # messages handled per wake-up before timers get their turn


class Timer:
    __slots__ = ("due", "period", "fn")

    def __init__(self, due, period, fn):
        self.due = due
        self.period = period
        self.fn = fn


class Server:
    """Subclasses set ``self.inbox`` and fill ``self.handlers``."""

    poll_ms = 100               # the poll timeout (poll_timeout() may vary it)
    obeys_signals = True        # a SIGTERM to the process ends this loop

    def __init__(self):
        self.inbox = None
        self.handlers = {}
        self.stopping = False
        self._watched = {}          # fd -> callback() when it is readable
        self._timers = []

    # ---- what a server adds ---------------------------------------------
    def watch(self, fd, callback):
        """Calls callback() whenever `fd` (a file descriptor) is readable."""
        self._watched[fd] = callback

    def every(self, period, fn, first=None):
        """Calls fn(now) every `period` seconds, the first time `first`
        seconds from the start of the loop (default: one period)."""
        self._timers.append(Timer(period if first is None else first, period, fn))

    def poll_timeout(self):
        return self.poll_ms

    def after_batch(self, now):
        """Runs after every wake-up of the loop (messages or not)."""

    def close(self):
        """Runs once the loop has ended."""

    def close_sockets(self, ctx=None):
        """Closes the outbox and the inbox, then `ctx` (the zmq context) when
        the server owns one."""
        self.out.close()
        self.inbox.close(0)
        if ctx is not None:
            ctx.term()

    def request(self, fn):
        """A handler for a request: parses it with its definition, calls
        ``fn(**fields)`` (the fields after req_id and reply_to) and answers
        with its result, or with the error it raised.  A request with the
        wrong fields is refused (logged, and answered as an error)."""
        out = self.out

        def handle(msg, frames):
            if len(msg) < 3 or not isinstance(msg[2], str):
                log.warning("dropped a request without a reply address (op %r)", msg[0])
                return
            try:
                try:
                    fields = definition(msg[0]).parse(msg)._asdict()
                except ProtocolError as err:
                    log.warning("refused a request: %s", err)
                    raise
                del fields["op"], fields["req_id"], fields["reply_to"]
                payload, ok = fn(**fields), True
            except Exception as err:  # noqa: BLE001 - reported to the caller
                payload, ok = errors.request_failed(err), False
            out.send(msg[2], RESPONSE.make(msg[1], ok, payload))
        handle.fn = fn             # for the check that fn takes the request's fields
        return handle

    # ---- the loop ---------------------------------------------------------
    def handle(self, msg, frames=()):
        """Dispatches one message as the loop does (errors propagate)."""
        h = self.handlers.get(msg[0])
        if h is None:
            log.warning("dropped a message with unknown op %r", msg[0])
            return
        h(msg, frames)

    def drain(self):
        """Handles the messages waiting in the inbox (at most BATCH)."""
        inbox = self.inbox
        handlers = self.handlers
        for _ in range(BATCH):
            try:
                if not inbox.poll(0):
                    return
                msg, frames = recv_msg(inbox)
            except zmq.ZMQError:
                return
            if msg is None:
                continue                    # malformed: recv_msg logged it
            h = handlers.get(msg[0])
            if h is None:
                log.warning("dropped a message with unknown op %r", msg[0])
                continue
            try:
                h(msg, frames)
            except Exception:  # noqa: BLE001 - a bad message must not kill us
                log.exception("handling op %s failed", msg[0])

    def serve(self):
        """Runs the loop until stopped, then close()."""
        poller = zmq.Poller()
        inbox = self.inbox
        poller.register(inbox, zmq.POLLIN)
        for fd in self._watched:
            poller.register(fd, zmq.POLLIN)
        watched = self._watched
        start = time.monotonic()
        for t in self._timers:
            t.due += start
        timers = self._timers
        signals = self.obeys_signals
        try:
            while not self.stopping and not (signals and daemon.term_requested()):
                for sock, _ in poller.poll(self.poll_timeout()):
                    if sock is inbox:
                        self.drain()
                    else:
                        watched[sock]()
                now = time.monotonic()
                for t in timers:
                    if now >= t.due:
                        t.due = now + t.period
                        t.fn(now)
                self.after_batch(now)
        finally:
            self.close()
