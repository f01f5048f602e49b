"""The client's side of a client connection (docs/client.md).

`ClientWorker` stands where a driver's CoreWorker stands (ctx.core_worker,
object_ref._cw): the public API (RemoteFunction.remote, actor classes and
handles, get/put/wait, ObjectRef counting) calls the same methods, and
this class forwards them over one DEALER socket to the client server, whose
own driver does the work.  Refs made here carry the server driver's address
as their owner: it owns what the client submits and puts.

Counting: ObjectRefs count here as in a core worker; the first count of an
oid the server did not pin by itself (a submit's returns, a put) is sent as
a pin, the last drop as a release, batched in one CLIENT_REFS message ahead
of the next message sent.
"""
from __future__ import annotations

import collections
import itertools
import os
import threading
import time

import zmq

from pyray import exceptions as exc
from pyray._private import errors, ids, serialization
from pyray._private.client import wire
from pyray._private.generators import ObjectRefGenerator
from pyray._private.ids import TASK_ID_SIZE
from pyray._private.io_loop import print_log_lines
from pyray._private.object_ref import ObjectRef
from pyray._private.protocol import (CLIENT_ACTOR_KILLED, CLIENT_BYE, CLIENT_CANCEL, CLIENT_GCS,
                                     CLIENT_GEN, CLIENT_GET, CLIENT_HELLO, CLIENT_LOG, CLIENT_PING,
                                     CLIENT_PUT, CLIENT_REFS, CLIENT_REPLY, CLIENT_SUBMIT,
                                     CLIENT_WAIT, ERROR, Op)

CONNECT_TIMEOUT_S = float(os.environ.get("PYRAY_CLIENT_CONNECT_TIMEOUT_S", "10"))
# the server answers the client's pings (every second): a server silent this
# long is gone, and a call waiting for it fails with ConnectionError
SERVER_SILENT_S = float(os.environ.get("PYRAY_CLIENT_SERVER_SILENT_S", "30"))


class ClientWorker:
    is_driver = True
    plasma = None
    raylet_addr = None
    om_addr = None
    current_task = None
    pg_capture = False

    def __init__(self, address, token, config, namespace=None):
        self.address = address
        host, port = wire.parse_address(address)
        self.endpoint = f"tcp://{host}:{port}"
        self.link = wire.Link(token.encode())
        self.config = config
        self.lock = threading.RLock()
        self.cv = threading.Condition(self.lock)
        self.slock = threading.Lock()          # the socket
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(self.endpoint)
        self.worker_id = ids.random_id()
        self.decref_q = collections.deque()
        self.local_refs = {}
        self._pins = {}          # oid -> wire ref, to send
        self._expect = set()     # oids the server pins by itself
        self._handles = {}       # actor id -> pending count change
        self._escaped = []
        self._gens_dropped = []  # task ids of generators let go, to send
        self._actor_counts = {}
        self._kept = {}          # actor id -> refs in its constructor's arguments
        self._sent_fns = set()
        self._req = itertools.count(1)
        self._replies = {}
        self._receiving = False
        self.closed = False
        self.broken = None
        self.last_heard = time.monotonic()
        self._last_call = 0.0
        nonce = wire.new_nonce()
        info, _ = self._hello(namespace, {"log_to_driver": bool(config.log_to_driver),
                                          "nonce": nonce})
        # the rest of the connection is signed with its own key (wire.py)
        self.link.key = wire.session_key(self.link.key, nonce, info["nonce"])
        self.addr = info["addr"]
        self.driver_addr = info["addr"]
        self.gcs_addr = info["gcs_addr"]
        self.job_id = info["job_id"]
        self.job_config = info["job_config"]
        self.node = info["node"]
        self.node_id = info["node_id"]
        self.server_pid = info["pid"]
        self.server_namespace = info["namespace"]
        config.max_inline_bytes = info["max_inline_bytes"]
        config.task_max_retries = info["task_max_retries"]
        self._pinger = threading.Thread(target=self._ping, name="pyray-client-ping",
                                        daemon=True)
        self._pinger.start()

    def _ping(self):
        """Tells the server every second that this client lives (and sends
        the ref changes of an idle client); while no call waits for an
        answer, reads what the server sends by itself (workers' output)."""
        while not self.closed:
            end = time.monotonic() + 1.0
            while not self.closed and time.monotonic() < end:
                self._read_idle()
                time.sleep(0.05)
            try:
                self._send(CLIENT_PING.make())
            except Exception:  # noqa: BLE001 - closed meanwhile
                return

    def _read_idle(self):
        """Reads what has come if no caller is reading (never waits: the
        socket's lock is what senders take too)."""
        if time.monotonic() - self._last_call < 0.1:
            return          # calls are being made: they read what comes
        with self.cv:
            if self._receiving or self.closed:
                return
            self._receiving = True
        try:
            while True:
                with self.slock:
                    frames = (self.sock.recv_multipart(copy=False)
                              if not self.closed and self.sock.poll(0) else None)
                if frames is None:
                    break
                self._on_reply(frames)
        except zmq.ZMQError:
            pass            # closed meanwhile
        finally:
            with self.cv:
                self._receiving = False
                self.cv.notify_all()

    # ------------------------------------------------------------ wire
    def _hello(self, namespace, options):
        req = next(self._req)
        self._send(CLIENT_HELLO.make(req, wire.CLIENT_PROTOCOL_VERSION, namespace, options))
        try:
            return self._wait_reply(req, CONNECT_TIMEOUT_S)
        except TimeoutError:
            self.close(bye=False)
            raise ConnectionError(
                f"no pyray client server answered at {self.endpoint} within "
                f"{CONNECT_TIMEOUT_S:.0f} s: is the head started with `pyray start --head "
                f"--ray-client-server-port PORT`, and is the port reachable from here?") from None
        except BaseException:
            self.close(bye=False)
            raise

    def _send(self, msg, frames=(), raw=()):
        if self.closed:
            raise exc.RaySystemError("the client connection is closed: call pyray.init() again")
        with self.lock:
            refs = self._take_ref_changes()
        link = self.link
        with self.slock:        # messages are numbered in the order they are sent
            if refs is None:
                self.sock.send_multipart(link.sign(msg, frames, raw), copy=False)
            else:               # the ref changes ride ahead of it in the same zmq message
                self.sock.send_multipart([wire.REFS_AHEAD, *link.sign(refs),
                                          *link.sign(msg, frames, raw)], copy=False)

    def _request(self, msg_fn, frames=(), timeout=None, raw=()):
        req = next(self._req)
        self._send(msg_fn(req), frames, raw)
        return self._wait_reply(req, timeout)

    def _wait_reply(self, req, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.cv:
                while True:
                    got = self._replies.pop(req, None)
                    if got is not None:
                        return self._result(got)
                    if self.broken is not None:
                        raise self.broken
                    if not self._receiving:
                        self._receiving = True
                        break
                    self._check_deadline(deadline)
                    self.cv.wait(0.05)
            try:
                while req not in self._replies and self.broken is None:
                    self._check_deadline(deadline)
                    if time.monotonic() - self.last_heard > SERVER_SILENT_S:
                        with self.cv:
                            self.broken = ConnectionError(
                                f"the pyray client server at {self.endpoint} has not answered "
                                f"for {SERVER_SILENT_S:.0f} s: the connection is lost")
                        break
                    with self.slock:
                        frames = (self.sock.recv_multipart(copy=False)
                                  if self.sock.poll(50) else None)
                    if frames is not None:
                        self._on_reply(frames)
            finally:
                self._last_call = time.monotonic()
                with self.cv:
                    self._receiving = False
                    self.cv.notify_all()

    @staticmethod
    def _check_deadline(deadline):
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError

    def _on_reply(self, frames):
        bufs = [f.buffer for f in frames]
        if len(bufs) == 1 and bytes(bufs[0]) == wire.BAD_TOKEN:
            with self.cv:
                self.broken = ConnectionError(
                    f"the pyray client server at {self.endpoint} refused this connection: "
                    "the cluster token is wrong (pass pyray.init(address, _token=...) or set "
                    "PYRAY_TOKEN to the token `pyray start --head` printed)")
                self.cv.notify_all()
            return
        got = self.link.unsign(bufs)      # one reader at a time
        if got is None:
            return
        if got[0][0] == Op.CLIENT_LOG:
            print_log_lines(*CLIENT_LOG.parse(got[0])[1:])
            return
        if got[0][0] != Op.CLIENT_REPLY:
            return
        m = CLIENT_REPLY.parse(got[0])
        self.last_heard = time.monotonic()
        if m.req_id == 0:
            return                  # the answer to a ping
        with self.cv:
            self._replies[m.req_id] = (m.ok, m.payload, got[1])
            self.cv.notify_all()

    @staticmethod
    def _result(got):
        ok, payload, frames = got
        if not ok:
            raise errors.decode(payload)
        return payload, frames

    # ------------------------------------------------------------ counting
    def add_local_ref(self, oid, owner):
        with self.lock:
            n = self.local_refs.get(oid, 0)
            self.local_refs[oid] = n + 1
            if n == 0:
                if oid in self._expect:
                    self._expect.discard(oid)
                else:
                    self._pins[oid] = (oid, owner, None)

    def drain_decrefs(self):
        q = self.decref_q
        local = self.local_refs
        releases = []
        while q:
            oid = q.popleft()
            if type(oid) is tuple:
                aid = oid[0]
                if aid is None:
                    self._gens_dropped.append(oid[1])   # an ObjectRefGenerator
                    continue
                self._handles[aid] = self._handles.get(aid, 0) - 1
                n = self._actor_counts.get(aid, 0) - 1
                if n > 0:
                    self._actor_counts[aid] = n
                else:
                    self._actor_counts.pop(aid, None)
                    self._kept.pop(aid, None)
                continue
            n = local.get(oid, 0) - 1
            if n > 0:
                local[oid] = n
                continue
            local.pop(oid, None)
            if self._pins.pop(oid, None) is None:
                releases.append(oid)
        return releases

    def _take_ref_changes(self):
        """The CLIENT_REFS message of what changed since the last one, or
        None (lock held)."""
        releases = self.drain_decrefs() if self.decref_q else []
        if not (releases or self._pins or self._handles or self._escaped or
                self._gens_dropped):
            return None
        handles = [(a, d) for a, d in self._handles.items() if d]
        msg = CLIENT_REFS.make(list(self._pins.values()), releases, handles, self._escaped,
                               self._gens_dropped)
        self._pins = {}
        self._handles = {}
        self._escaped = []
        self._gens_dropped = []
        return msg

    def keep_alive(self, actor_id, refs):
        if refs:
            with self.lock:
                self._kept[actor_id] = refs

    def add_actor_handle(self, actor_id):
        with self.lock:
            self._handles[actor_id] = self._handles.get(actor_id, 0) + 1
            self._actor_counts[actor_id] = self._actor_counts.get(actor_id, 0) + 1

    def actor_handle_escaped(self, actor_id):
        with self.lock:
            self._escaped.append(actor_id)

    def actor_killed(self, actor_id):
        self._send(CLIENT_ACTOR_KILLED.make(actor_id))

    # ------------------------------------------------------------ tasks
    def submit(self, spec, stream=None):
        fn = spec.fn
        if fn.fn_id is None:
            fnw = None
        elif fn.fn_id in self._sent_fns:
            fnw = (fn.fn_id, fn.name, fn.module, None)
        else:
            self._sent_fns.add(fn.fn_id)
            fnw = (fn.fn_id, fn.name, fn.module, fn.data)
        data, bufs = spec.args_payload
        with self.lock:
            for oid in spec.return_ids:
                if self._pins.pop(oid, None) is None and oid not in self.local_refs:
                    self._expect.add(oid)
        task = (spec.task_id, spec.name, data, len(bufs),
                [wire.wire_ref(r) for r in spec.arg_refs],
                [wire.wire_ref(r) for r in spec.deps] if spec.deps else None,
                spec.return_ids, spec.key, spec.shape, spec.retries_left,
                spec.retry_exceptions, spec.actor, stream)
        self._send(CLIENT_SUBMIT.make(task, fnw), bufs, wire.raw_frames(bufs) if bufs else ())

    def submit_actor_task(self, spec):
        self.submit(spec)

    def submit_generator(self, spec, completion_ref, mode, backpressure, actor):
        """generators.submit for a client: the server runs the task's stream
        and hands its items out one `next` request at a time."""
        self.submit(spec, (mode, backpressure))
        if mode == "dynamic":
            return completion_ref
        return ClientObjectRefGenerator(completion_ref, self)

    def _adopt(self, oid):
        """A ref for `oid`, which the server already pinned for this client."""
        with self.lock:
            if oid not in self.local_refs:
                self._expect.add(oid)
        return ObjectRef(oid, self.addr)

    def gen_next(self, task_id, timeout):
        """(refs, ended) of a generator task: the next item's ref and those
        of the items already there after it; ended: none follows."""
        (oids, ended), _ = self._request(
            lambda req: CLIENT_GEN.make(req, task_id, "next", timeout))
        return [self._adopt(oid) for oid in oids], ended

    def gen_finished(self, task_id):
        return self._request(lambda req: CLIENT_GEN.make(req, task_id, "finished", None))[0]

    def cancel(self, ref, force, recursive=True):
        self._send(CLIENT_CANCEL.make(wire.wire_ref(ref), bool(force), bool(recursive)))

    def rpc(self, addr, op, *args, timeout=None):
        payload, _ = self._request(lambda req: CLIENT_GCS.make(req, op, args))
        return payload

    # ------------------------------------------------------------ objects
    def put(self, value, _oid=None):
        if isinstance(value, ObjectRef):
            raise TypeError("Calling 'put' on an ObjectRef is not allowed. If you really "
                            "want to do this, wrap it in a list: put([ref]).")
        ser = serialization.serialize(value)
        oid = ids.new_put_id()
        contained = [wire.wire_ref(r) for r in ser.refs]
        frames = [ser.data, *ser.buffers]
        self._request(lambda req: CLIENT_PUT.make(req, oid, contained, len(ser.buffers)),
                      frames, raw=wire.raw_frames(frames, 1))
        with self.lock:
            if oid not in self.local_refs:
                self._expect.add(oid)
        return ObjectRef(oid, self.addr)

    def get(self, refs, timeout=None):
        single = False
        if isinstance(refs, ObjectRef):
            refs = [refs]
            single = True
        elif not isinstance(refs, (list, tuple)):
            raise TypeError(f"get() expects an ObjectRef or a list of ObjectRefs, got "
                            f"{type(refs).__name__}: {refs!r:.100}")
        for ref in refs:
            if type(ref) is not ObjectRef:
                raise TypeError(f"get() expects ObjectRefs, got a {type(ref).__name__} in the "
                                f"list: {ref!r:.100}")
        if not refs:
            return []
        payload, frames = self._request(
            lambda req: CLIENT_GET.make(req, [wire.wire_ref(r) for r in refs], timeout))
        values = []
        i = 0
        for ref, (kind, n) in zip(refs, payload):
            parts = frames[i:i + n]
            i += n
            if kind == ERROR:
                err = errors.decode((parts[0], parts[1:]))
                if isinstance(err, exc.RayTaskError):
                    raise err.as_instanceof_cause()
                raise err
            values.append(serialization.loads_inline((parts[0], list(parts[1:])), ref))
        return values[0] if single else values

    def wait(self, refs, num_returns=1, timeout=None, fetch_local=True):
        if isinstance(refs, ObjectRef):
            raise TypeError("wait() expects a list of ObjectRefs, got a single ObjectRef; "
                            "pass [ref].")
        if not isinstance(refs, (list, tuple)):
            raise TypeError(f"wait() expects a list of ObjectRefs, got {type(refs).__name__}")
        for r in refs:
            if type(r) is not ObjectRef and type(r) is not ClientObjectRefGenerator:
                raise TypeError(f"wait() expects ObjectRefs, got a {type(r).__name__} in the list")
        if len(set(refs)) != len(refs):
            raise ValueError("wait() expects unique ObjectRefs; the list has duplicates")
        if num_returns < 0 or (num_returns == 0 and refs):
            raise ValueError(f"Invalid number of objects to return {num_returns}.")
        if num_returns > len(refs):
            raise ValueError(f"num_returns ({num_returns}) cannot be greater than the number "
                             f"of ObjectRefs provided ({len(refs)}).")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
        if not refs:
            return [], []
        # a generator holding items (or at its end) is ready without asking
        here = [i for i, r in enumerate(refs)
                if type(r) is ClientObjectRefGenerator and r._here()]
        idx = here[:num_returns]
        if len(idx) < num_returns:
            rest = [i for i in range(len(refs)) if i not in set(here)]
            got, _ = self._request(lambda req: CLIENT_WAIT.make(
                req, [(refs[i]._task_id,) if type(refs[i]) is ClientObjectRefGenerator
                      else wire.wire_ref(refs[i]) for i in rest],
                num_returns - len(idx), timeout, bool(fetch_local)))
            idx = sorted(idx + [rest[j] for j in got])
        s = set(idx)
        return [refs[i] for i in idx], [r for i, r in enumerate(refs) if i not in s]

    def is_ready(self, ref):
        return bool(self.wait([ref], 1, 0)[0])

    def on_ready(self, ref, cb):
        def run():
            try:
                self.wait([ref], 1, None)
            except Exception:  # noqa: BLE001 - the callback's get reports it
                pass
            cb(lambda: self.get(ref))
        threading.Thread(target=run, name="pyray-client-future", daemon=True).start()

    # ------------------------------------------------------------ the end
    def close(self, bye=True):
        if self.closed:
            return
        if bye:
            try:
                self._send(CLIENT_BYE.make())
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self.closed = True
        with self.slock:
            self.sock.close(200 if bye else 0)
        self.zctx.term()


class ClientObjectRefGenerator(ObjectRefGenerator):
    """The ObjectRefGenerator of a generator task submitted through the
    client: the server holds the task's stream; `next` asks it for the next
    item, and gets the refs of the items already there after it too (kept
    here, handed out by the next `next` calls); the server pins each for
    this client."""

    def __init__(self, completion_ref, cw):
        self._ref = completion_ref
        self._cw = cw
        self._st = None
        self._task_id = completion_ref._id[:TASK_ID_SIZE]
        self._ended = False          # the server has no item after those in _buf
        self._buf = collections.deque()

    def _next_sync(self, timeout_s=None):
        if not self._buf:
            if self._ended:
                raise StopIteration
            refs, self._ended = self._cw.gen_next(self._task_id, timeout_s)
            self._buf.extend(refs)
            if not self._buf:
                raise StopIteration
        return self._buf.popleft()

    def _here(self):
        """next() would not ask the server."""
        return bool(self._buf) or self._ended

    def _next_or_none(self):
        try:
            return self._next_sync(None)
        except StopIteration:
            return None

    async def __anext__(self):
        import asyncio
        ref = await asyncio.get_running_loop().run_in_executor(None, self._next_or_none)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def is_finished(self):
        if self._buf:
            return False
        return self._ended or bool(self._cw.gen_finished(self._task_id))

    def _ready(self):
        raise TypeError("an ObjectRefGenerator of the client is waited on by the client")

    def __del__(self):
        cw = self._cw
        if cw is not None:
            cw.decref_q.append((None, self._task_id))


def find_token(token):
    if token:
        return token
    env = os.environ.get("PYRAY_TOKEN")
    if env:
        return env
    try:
        from pyray._private import bootstrap
        rec = bootstrap.current_cluster()
    except Exception:  # noqa: BLE001 - no record
        rec = None
    if rec and rec[1]:
        return rec[1]
    raise ConnectionError("connecting to a pyray client server needs the cluster token: "
                          "pass pyray.init(address, _token=...) or set PYRAY_TOKEN (`pyray "
                          "start --head` prints it)")


def connect(address, config, namespace=None, token=None, job_env=None):
    """init() for a pyray:// address: returns the address info.  job_env:
    init(runtime_env=...) validated; it is resolved here (a local
    working_dir is uploaded through the connection) and becomes the parent
    env of the client's tasks and actors, as a driver's job env does."""
    from pyray._private import object_ref
    from pyray._private import runtime_env as rte
    from pyray._private.context import ctx
    cw = ClientWorker(address, find_token(token), config, namespace)
    if job_env:
        try:
            cw.job_config = dict(cw.job_config, runtime_env=rte.set_job_env(job_env, cw))
        except BaseException:
            cw.close()
            raise
    object_ref._set_core_worker(cw)
    ctx.core_worker = cw
    ctx.mode = "client"
    ctx.node = cw.node
    ctx.config = config
    ctx.job_id = cw.job_id
    ctx.namespace = namespace or cw.server_namespace
    ctx.session_dir = None
    return {"node_ip_address": cw.node.get("node_ip") or "127.0.0.1",
            "address": address, "gcs_address": cw.gcs_addr, "session_dir": None,
            "node_id": cw.node_id.hex(), "client_server": address}


def disconnect():
    from pyray._private import object_ref
    from pyray._private.context import ctx
    cw = ctx.core_worker
    object_ref._set_core_worker(None)
    ctx.reset()
    if cw is not None:
        cw.close()

