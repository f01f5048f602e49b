"""The client server: a driver of the cluster that runs on the head node and
does what remote clients ask (docs/client.md).

    python -m pyray._private.client.server --address GCS --port 10001

(`pyray start --head --ray-client-server-port PORT` starts it.)  It listens
on a zmq ROUTER socket on tcp://0.0.0.0:PORT.  Each connection is a session:
what the client holds (refs, actor handles) is pinned here by server-side
ObjectRefs and handle counts until the client lets go, says goodbye, or its
connection drops (ROUTER_NOTIFY, tcp keepalive): then everything is let go.

The loop thread reads messages and does the quick ones in order (submit,
put, refcounts); requests that may block (get, wait, GCS calls) run on a
small pool and their answers go back through the loop thread.
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import zmq

from pyray import exceptions as exc
from pyray._private import errors, generators, serialization
from pyray._private.client import wire
from pyray._private.object_ref import ObjectRef
from pyray._private.procs import running
from pyray._private.io_loop import print_log_lines
from pyray._private.protocol import (CLIENT_ACTOR_KILLED, CLIENT_CANCEL, CLIENT_GCS, CLIENT_GEN,
                                     CLIENT_GET, CLIENT_HELLO, CLIENT_LOG, CLIENT_PUT, CLIENT_REFS,
                                     CLIENT_REPLY, CLIENT_SUBMIT, CLIENT_WAIT, ERROR, IN_STORE,
                                     LOG_LINES, VALUE, Op)
from pyray._private.task_spec import FunctionDescriptor, TaskSpec

log = logging.getLogger("pyray.client_server")

_new = object.__new__

# a session whose client sent nothing (not even its pings, every second) for
# this long has ended: everything it held is released
CLIENT_TIMEOUT_S = float(os.environ.get("PYRAY_CLIENT_TIMEOUT_S", "10"))


# the most items of a generator one `next` request hands to the client
GEN_BATCH = 256

# the messages answered with CLIENT_REPLY (besides CLIENT_HELLO)
_REQUESTS = frozenset((Op.CLIENT_GET, Op.CLIENT_PUT, Op.CLIENT_WAIT, Op.CLIENT_GCS,
                       Op.CLIENT_GEN))


class Session:
    """One client connection: what it pinned, its actor handles, its
    functions, the streams of its generator tasks."""

    def __init__(self, ident, token_key, log_to_driver):
        self.ident = ident
        # signing: the hello (message 0 each way) is signed with the token,
        # the rest with the session key (wire.py)
        self.link = wire.Link(token_key, received=1)
        self.pins = {}          # oid -> server-side ObjectRef
        self.handles = {}       # actor id -> count
        self.functions = {}     # fn id -> FunctionDescriptor
        self.gens = {}          # task id -> ObjectRefGenerator (held for the client)
        self.log_to_driver = log_to_driver
        self.last_seen = time.monotonic()


class ClientServer:
    def __init__(self, cw, port, key, host="0.0.0.0"):
        self.cw = cw
        self.key = key
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        try:
            self.sock.setsockopt(zmq.ROUTER_NOTIFY, zmq.NOTIFY_DISCONNECT)
        except (zmq.ZMQError, AttributeError):
            pass     # a draft option in most builds: the clients' pings tell instead
        # a client machine that vanishes without closing: noticed within ~30 s
        self.sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        self.sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 10)
        self.sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 5)
        self.sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 4)
        self.sock.bind(f"tcp://{host}:{port}")
        self.sessions = {}
        self.ended = collections.OrderedDict()   # ident -> a session that ended
        self.pool = ThreadPoolExecutor(64, thread_name_prefix="pyray-client")
        self.replies = collections.deque()
        self.logs = collections.deque()     # workers' output, for the clients that want it
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.stopping = False
        self.handlers = {
            Op.CLIENT_HELLO: self._h_hello,
            Op.CLIENT_SUBMIT: self._h_submit,
            Op.CLIENT_GET: self._h_get,
            Op.CLIENT_PUT: self._h_put,
            Op.CLIENT_WAIT: self._h_wait,
            Op.CLIENT_REFS: self._h_refs,
            Op.CLIENT_GCS: self._h_gcs,
            Op.CLIENT_ACTOR_KILLED: self._h_actor_killed,
            Op.CLIENT_CANCEL: self._h_cancel,
            Op.CLIENT_BYE: self._h_bye,
            Op.CLIENT_PING: self._h_ping,
            Op.CLIENT_GEN: self._h_gen,
        }
        # the job's workers print to this driver: their lines go to the clients
        cw.handlers[Op.LOG_LINES] = self._on_log_lines

    # ------------------------------------------------------------ the loop
    def serve(self, watch_pid=None):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_check = 0.0
        while not self.stopping:
            events = dict(poller.poll(500))
            if self.sock in events:
                for _ in range(256):
                    try:
                        frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._on_frames(frames)
            if self._wake_r.fileno() in events:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            while self.replies:
                self._send(*self.replies.popleft())
            if self.logs:
                self._send_logs()
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 0.5
                for sess in list(self.sessions.values()):
                    if now - sess.last_seen > CLIENT_TIMEOUT_S:
                        log.info("a client was silent for %.0f s: ending its session",
                                 now - sess.last_seen)
                        self._end(sess.ident)
                if watch_pid and not running(watch_pid):
                    log.info("the node's raylet (pid %d) is gone: stopping", watch_pid)
                    break
        for ident in list(self.sessions):
            self._end(ident)

    def _on_frames(self, frames):
        ident = frames[0].bytes
        rest = [f.buffer for f in frames[1:]]
        if len(rest) == 1 and rest[0].nbytes == 0:
            self._end(ident)               # ROUTER_NOTIFY: the peer disconnected
            return
        if len(rest) >= 5 and rest[0].nbytes == 1 and bytes(rest[0]) == wire.REFS_AHEAD:
            self._on_message(ident, rest[1:3])       # the client's ref changes, then
            rest = rest[3:]                          # the message they go ahead of
        self._on_message(ident, rest)

    def _on_message(self, ident, rest):
        sess = self.sessions.get(ident)
        # a session's messages are checked by its link, a new one's hello with
        # the token, a message of a session that ended by that session's link
        old = None if sess is not None else self.ended.get(ident)
        link = sess.link if sess is not None else old.link if old is not None else None
        try:
            got = wire.unsign(self.key, rest) if link is None else link.unsign(rest)
        except Exception as err:  # noqa: BLE001 - a bad peer must not stop the loop
            log.warning("dropped a malformed client message: %s", err)
            got = None
        if got is None:
            self.sock.send_multipart([ident, wire.BAD_TOKEN])
            return
        msg, extra = got
        handler = self.handlers.get(msg[0])
        if handler is None:
            log.warning("dropped a client message with unknown op %r", msg[0])
            return
        if sess is not None:
            sess.last_seen = time.monotonic()
        elif msg[0] != Op.CLIENT_HELLO:
            if msg[0] in _REQUESTS:
                self._send(ident, msg[1], False, errors.encode(ConnectionError(
                    "this client's session with the client server has ended (its "
                    "connection dropped); call pyray.shutdown() and pyray.init() again")))
            return
        try:
            handler(sess or ident, msg, extra)
        except Exception as err:  # noqa: BLE001 - answered to the client or logged
            if msg[0] in _REQUESTS or msg[0] == Op.CLIENT_HELLO:
                self._send(ident, msg[1], False, errors.request_failed(err))
            else:
                log.warning("client message %r failed: %s", msg[0], err, exc_info=True)

    def _send(self, ident, req_id, ok, payload, frames=(), raw=()):
        sess = self.sessions.get(ident)
        if sess is None and ok:
            return        # the session ended meanwhile
        if sess is None:
            sess = self.ended.get(ident)
        msg = CLIENT_REPLY.make(req_id, ok, payload)
        try:
            parts = (wire.sign(self.key, msg, frames, raw) if sess is None      # a failed hello
                     else sess.link.sign(msg, frames, raw))
            self.sock.send_multipart([ident, *parts], copy=False)
        except zmq.ZMQError as err:
            log.warning("reply to a client failed: %s", err)

    def _reply_later(self, ident, req_id, ok, payload, frames=(), raw=()):
        """From a pool thread: the loop thread sends it."""
        self.replies.append((ident, req_id, ok, payload, frames, raw))
        self._wake()

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    def _on_log_lines(self, msg, frames):
        """LOG_LINES from a worker (the driver's I/O thread): the loop thread
        sends them to every client that connected with log_to_driver."""
        self.logs.append(LOG_LINES.parse(msg)[1:])
        self._wake()

    def _send_logs(self):
        sessions = [s for s in self.sessions.values() if s.log_to_driver]
        while self.logs:
            prefix, is_err, text = self.logs.popleft()
            if not sessions:
                print_log_lines(prefix, is_err, text)    # into the server's log
                continue
            msg = CLIENT_LOG.make(prefix, is_err, text)
            for s in sessions:
                try:
                    self.sock.send_multipart([s.ident, *s.link.sign(msg)], copy=False)
                except zmq.ZMQError as err:
                    log.warning("sending output to a client failed: %s", err)

    def _in_pool(self, sess, req_id, fn, *args):
        ident = sess.ident

        def run():
            try:
                self._reply_later(ident, req_id, True, *fn(*args))
            except BaseException as err:  # noqa: BLE001 - answered to the client
                if isinstance(err, (exc.RayError, ValueError, TypeError, KeyError,
                                    TimeoutError)):
                    payload = errors.encode(err)
                else:
                    payload = errors.request_failed(err)
                self._reply_later(ident, req_id, False, payload)
        self.pool.submit(run)

    def _end(self, ident):
        """The session is over: everything it held is let go."""
        sess = self.sessions.pop(ident, None)
        if sess is None:
            return
        self.ended[ident] = sess        # to answer its late requests
        while len(self.ended) > 1024:
            self.ended.popitem(last=False)
        cw = self.cw
        pins, sess.pins = sess.pins, {}
        for aid, n in sess.handles.items():
            for _ in range(n):
                cw.decref_q.append((aid,))
        sess.handles = {}
        gens, sess.gens = sess.gens, {}
        del pins, gens
        with cw.lock:
            cw.drain_decrefs()
        log.info("client session ended (%d open)", len(self.sessions))

    # ------------------------------------------------------------ refs
    def _resolve(self, sess, w):
        """The server-side ref for a client's (oid, owner, parent)."""
        oid, owner, parent = w
        ref = sess.pins.get(oid)
        if ref is not None:
            return ref
        p = self._resolve(sess, parent) if parent is not None else None
        if p is None:
            return ObjectRef(oid, owner)
        ref = _new(ObjectRef)           # kept alive by its parent, as a nested ref is
        ref._id, ref._owner, ref._parent, ref._cwref = oid, owner, p, None
        return ref

    def _pin(self, sess, oid):
        if oid not in sess.pins:
            sess.pins[oid] = ObjectRef(oid, self.cw.addr)

    # ------------------------------------------------------------ handlers
    def _h_hello(self, ident, msg, frames):
        m = CLIENT_HELLO.parse(msg)
        if m.version != wire.CLIENT_PROTOCOL_VERSION:
            raise ValueError(f"client protocol {m.version}, server {wire.CLIENT_PROTOCOL_VERSION}: "
                             "use the same pyray version on both sides")
        if isinstance(ident, Session):
            ident = ident.ident
        opts = m.options or {}
        nonce = wire.new_nonce()
        key = wire.session_key(self.key, opts.get("nonce") or b"", nonce)
        sess = self.sessions[ident] = Session(ident, self.key,
                                              bool(opts.get("log_to_driver", True)))
        cw = self.cw
        from pyray._private.context import ctx
        info = {"addr": cw.addr, "job_id": cw.job_id, "job_config": cw.job_config,
                "node": dict(cw.node), "namespace": ctx.namespace,
                "gcs_addr": cw.gcs_addr, "node_id": cw.node_id,
                "max_inline_bytes": cw.config.max_inline_bytes,
                "task_max_retries": cw.config.task_max_retries, "pid": os.getpid(),
                "nonce": nonce}
        log.info("client session opened (%d open)", len(self.sessions))
        self._send(ident, m.req_id, True, info)     # with the token: the client has no key yet
        sess.link.key = key

    def _h_submit(self, sess, msg, frames):
        m = CLIENT_SUBMIT.parse(msg)
        (task_id, name, data, nbuf, arg_refs, deps, return_ids, key, shape, retries,
         retry_exc, actor, stream) = m.task
        cw = self.cw
        if m.fn is None:
            from pyray.actor import _METHOD_DESC
            desc = _METHOD_DESC
        else:
            fn_id, fn_name, module, fn_data = m.fn
            desc = sess.functions.get(fn_id)
            if desc is None:
                desc = sess.functions[fn_id] = FunctionDescriptor(fn_id, fn_data, fn_name, module)
        arg_refs = [self._resolve(sess, w) for w in arg_refs]
        buffers = [bytes(f) for f in frames[:nbuf]]
        ser_bytes = len(data) + sum(len(b) for b in buffers)
        if ser_bytes > cw.config.max_inline_bytes and cw.plasma is not None:
            holder = cw.put_serialized(serialization.Serialized(data, buffers, []))
            arg_refs.append(holder)
            payload = (holder._id, None)
        else:
            payload = (bytes(data), buffers)
        spec = TaskSpec(task_id, desc, name, payload, arg_refs, return_ids, key, shape,
                        retries, retry_exc)
        if deps:
            spec.deps = [self._resolve(sess, w) for w in deps]
        for oid in return_ids:
            self._pin(sess, oid)
        if actor is not None:
            spec.shape = shape
            spec.actor = actor
        if stream is not None:
            # a generator task: its stream lives here, the client asks for items
            gen = generators.submit(cw, spec, sess.pins[return_ids[0]], stream[0], stream[1],
                                    actor=actor is not None)
            if isinstance(gen, generators.ObjectRefGenerator):
                sess.gens[task_id] = gen
        elif actor is not None:
            cw.submit_actor_task(spec)
        else:
            cw.submit(spec)

    def _h_put(self, sess, msg, frames):
        m = CLIENT_PUT.parse(msg)
        from pyray._private.ownership import READY, Owned
        cw = self.cw
        data, buffers = frames[0], list(frames[1:1 + m.nbuffers])
        contained = [self._resolve(sess, w) for w in m.contained]
        ser = serialization.Serialized(data, buffers, contained)
        if ser.nbytes <= cw.config.max_inline_bytes or cw.plasma is None:
            e = Owned(READY, VALUE, (bytes(data), [bytes(b) for b in buffers]))
        else:
            cw.store_put(m.oid, ser)
            e = Owned(READY, IN_STORE, cw.node_id)
        if contained:
            e.contained = contained
        with cw.lock:
            cw.owned[m.oid] = e
        self._pin(sess, m.oid)
        self._send(sess.ident, m.req_id, True, None)

    def _h_get(self, sess, msg, frames):
        m = CLIENT_GET.parse(msg)
        refs = [self._resolve(sess, w) for w in m.refs]
        self._in_pool(sess, m.req_id, self._get_values, sess.ident, refs, m.timeout)

    def _wait_refs(self, ident, refs, num_returns, timeout, fetch_local):
        """cw.wait in slices of a second, so that a wait whose client has
        gone does not hold a pool thread for ever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cw = self.cw
        if any(type(r) is not ObjectRef for r in refs):
            def wait(*args):
                return generators.wait(cw, *args)       # some are generators
        else:
            wait = cw.wait
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = wait(list(refs), num_returns, 1.0 if left is None else min(left, 1.0),
                            fetch_local)
            if len(ready) >= num_returns or (left is not None and left <= 1.0):
                return ready
            if ident not in self.sessions or self.stopping:
                raise ConnectionError("the client's session ended")

    def _get_values(self, ident, refs, timeout):
        cw = self.cw
        unique = list({r._id: r for r in refs}.values())
        ready = self._wait_refs(ident, unique, len(unique), timeout, True)
        if len(ready) < len(unique):
            pending = [r for r in unique if r not in set(ready)]
            raise exc.GetTimeoutError(
                f"Get timed out: some object(s) not ready after {timeout}s "
                f"(first pending: {pending[0].hex()}).")
        out, frames, raw = [], [], []
        for ref in refs:
            with cw.lock:
                loc = cw.locate(ref)
            kind, payload = loc
            if kind == IN_STORE:
                kind, parts = self._read_store(ref)
            else:
                parts = [payload[0], *payload[1]]
            out.append((kind, len(parts)))
            # a value's pickle is signed in full, its large buffers by length
            raw.extend(len(frames) + i for i in wire.raw_frames(parts, 1))
            frames.extend(parts)
        return out, frames, raw

    def _read_store(self, ref):
        import plasma
        cw = self.cw
        try:
            buf = cw.plasma.get(ref._id, timeout=cw.config.rpc_timeout_s)
        except plasma.PlasmaError:
            return ERROR, list(_err_parts(exc.ObjectLostError(ref.hex(), ref._owner or "")))
        meta = bytes(buf.metadata)
        kind, plen, nbuf = serialization._HEAD.unpack_from(meta, 0)
        mv = memoryview(buf)
        parts = [mv[:plen]]
        for i in range(nbuf):
            off, ln = serialization._PAIR.unpack_from(
                meta, serialization._HEAD.size + i * serialization._PAIR.size)
            parts.append(mv[off:off + ln])
        return kind, parts

    def _h_wait(self, sess, msg, frames):
        m = CLIENT_WAIT.parse(msg)
        refs = [self._gen(sess, w[0]) if len(w) == 1 else self._resolve(sess, w)
                for w in m.refs]

        def run():
            ready = self._wait_refs(sess.ident, refs, m.num_returns, m.timeout, m.fetch_local)
            s = set(id(r) for r in ready)
            return [i for i, r in enumerate(refs) if id(r) in s], ()
        self._in_pool(sess, m.req_id, run)

    @staticmethod
    def _gen(sess, task_id):
        gen = sess.gens.get(task_id)
        if gen is None:
            raise ValueError(f"no generator task {task_id.hex()} of this client is streaming")
        return gen

    def _h_gen(self, sess, msg, frames):
        m = CLIENT_GEN.parse(msg)
        gen = self._gen(sess, m.task_id)
        if m.what == "finished":
            self._send(sess.ident, m.req_id, True, gen.is_finished())
            return
        if m.what != "next":
            raise ValueError(f"unknown generator request {m.what!r}")

        def run():
            deadline = None if m.timeout is None else time.monotonic() + m.timeout
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    ref = gen._next_sync(1.0 if left is None else min(left, 1.0))
                except StopIteration:
                    return ([], True), ()
                except exc.GetTimeoutError:
                    if left is not None and left <= 1.0:
                        raise
                    if sess.ident not in self.sessions or self.stopping:
                        raise ConnectionError("the client's session ended") from None
                    continue
                break
            sess.pins[ref._id] = ref
            oids = [ref._id]
            # the items already there go along (not under backpressure: there
            # an item counts as consumed only when the client's caller takes it)
            while gen._st.backpressure <= 0 and len(oids) < GEN_BATCH:
                try:
                    ref = gen._next_sync(0)
                except StopIteration:
                    return (oids, True), ()
                except exc.GetTimeoutError:
                    break
                sess.pins[ref._id] = ref
                oids.append(ref._id)
            return (oids, False), ()
        self._in_pool(sess, m.req_id, run)

    def _h_refs(self, sess, msg, frames):
        m = CLIENT_REFS.parse(msg)
        cw = self.cw
        for w in m.pins:
            if w[0] not in sess.pins:
                sess.pins[w[0]] = self._resolve(sess, w)
        for oid in m.releases:
            sess.pins.pop(oid, None)
        for aid, delta in m.handles:
            n = sess.handles.get(aid, 0)
            if delta > 0:
                for _ in range(delta):
                    cw.add_actor_handle(aid)
            else:
                for _ in range(min(n, -delta)):
                    cw.decref_q.append((aid,))
            n += delta
            if n > 0:
                sess.handles[aid] = n
            else:
                sess.handles.pop(aid, None)
        for aid in m.escaped:
            cw.actor_handle_escaped(aid)
        for task_id in m.gens_dropped:
            sess.gens.pop(task_id, None)
        if m.releases or m.handles or m.gens_dropped:
            with cw.lock:
                cw.drain_decrefs()

    def _h_gcs(self, sess, msg, frames):
        m = CLIENT_GCS.parse(msg)
        cw = self.cw

        def run():
            return cw.rpc(cw.gcs_addr, m.gcs_op, *m.args), ()
        self._in_pool(sess, m.req_id, run)

    def _h_actor_killed(self, sess, msg, frames):
        self.cw.actor_killed(CLIENT_ACTOR_KILLED.parse(msg).actor_id)

    def _h_cancel(self, sess, msg, frames):
        m = CLIENT_CANCEL.parse(msg)
        self.cw.cancel(self._resolve(sess, m.ref), m.force, m.recursive)

    def _h_ping(self, sess, msg, frames):
        self._send(sess.ident, 0, True, None)     # request 0: the server lives

    def _h_bye(self, sess, msg, frames):
        self._end(sess.ident)


def _err_parts(err):
    data, bufs = errors.encode(err)
    return [data, *bufs]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pyray._private.client.server")
    ap.add_argument("--address", required=True, help="the cluster's GCS address")
    ap.add_argument("--port", type=int, default=wire.DEFAULT_PORT)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--watch-pid", type=int, default=None,
                    help="stop when this process (the head's raylet) is gone")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = os.environ.get("PYRAY_TOKEN")
    if not token:
        sys.exit("the client server needs the cluster token in PYRAY_TOKEN")
    import signal
    import pyray
    from pyray._private.context import ctx
    pyray.init(address=args.address, _token=token, log_to_driver=False)
    server = ClientServer(ctx.core_worker, args.port, token.encode(), args.host)

    def on_term(signum, frame):
        server.stopping = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"pyray client server listening on {args.host}:{args.port}", flush=True)
    try:
        server.serve(args.watch_pid)
    finally:
        pyray.shutdown()
        logging.shutdown()
        # pool threads may still wait on a dead cluster: do not join them
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
