"""The per-process runtime: owner of the objects this process makes, and the
submitter of its tasks.

One instance lives in the driver and in each worker.  The calling thread
submits tasks straight to leased workers (no hop through a scheduler) and
reads values from the in-process memory store or the node's shared-memory
store; a background I/O thread receives replies, lease grants and requests
from borrowers, and wakes waiters.  A thread blocked in get() on a task
pushed over a direct channel reads that channel itself for a short while
(_read_replies): a synchronous call then needs one thread wake-up, not two.

Ownership: each object has one owner, the process that created the ref
(by put or by submitting the task).  The owner counts local ObjectRef
instances, borrowers (other processes that keep a ref after a task ends)
and containing objects; at zero it frees the value everywhere.
"""
from __future__ import annotations

import collections
import logging
import os
import select
import sys
import threading
import time
import traceback

import zmq

from pyray import exceptions as exc
from pyray._private import ids, serialization
from pyray._private.object_ref import ObjectRef
from pyray._private.protocol import ERROR, IN_STORE, VALUE, Op
from pyray._private.channel import Channel, ChannelClosed
from pyray._private.cluster_client import ClusterClient, addr_suffix
from pyray._private.transport import Outbox, bind_node_inbox, inbox_key as _inbox_key, unsign

log = logging.getLogger("pyray.core_worker")

# plain ints: zmq's flag enums are slow to combine on the hot path
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_EPOLLIN_HUP = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR
# requests to the GCS unanswered this long are sent again (the GCS may have
# restarted); those whose second copy would do something else are not
_GCS_RESEND_S = 1.0
_GCS_NOT_RESENT = frozenset((Op.REGISTER_JOB, Op.KV_PUT, Op.KV_DEL))
# a caller reading its own reply channel (CoreWorker._read_replies) looks
# at the rest of the world at least this often (ms), and does so this many
# times in one get(); then it waits for the I/O thread (a long call costs
# no polling)
_LEAD_MS = 5
_LEAD_ROUNDS = 4

PENDING, READY = 0, 1


class Owned:
    """An object this process owns."""
    __slots__ = ("state", "kind", "payload", "contained", "borrowers", "waiters",
                 "callbacks", "contained_at", "spec", "copies")

    def __init__(self, state=PENDING, kind=None, payload=None):
        self.state = state
        self.kind = kind
        self.payload = payload
        self.contained = None     # ObjectRefs nested in the value (kept alive)
        self.borrowers = None     # addresses of processes still holding it
        self.waiters = None       # borrower addresses waiting for the value
        self.callbacks = None
        self.contained_at = None  # address of the worker pinning refs nested in a return
        self.spec = None
        self.copies = None        # other nodes that pulled a copy (cluster_client)


class Lease:
    __slots__ = ("lease_id", "worker_id", "task_addr", "ctl_addr", "gpu_ids", "inflight",
                 "sent_fns", "idle_since", "key", "reclaim", "pid", "first", "progress", "channel",
                 "fast", "raylet", "node_id")

    def __init__(self, lease_id, worker_id, task_addr, ctl_addr, gpu_ids, key, pid, channel=None):
        self.lease_id = lease_id
        self.worker_id = worker_id
        self.task_addr = task_addr
        self.ctl_addr = ctl_addr
        self.gpu_ids = gpu_ids
        self.inflight = {}
        self.sent_fns = set()
        self.idle_since = time.monotonic()
        self.key = key
        self.reclaim = False
        self.pid = pid
        self.first = True
        self.progress = 0.0
        self.channel = channel
        self.fast = False       # its last reply came quickly: safe to pipeline
        self.raylet = None      # the raylet that granted it, and its node
        self.node_id = None


class ActorClient:
    """What a caller knows of one actor."""
    __slots__ = ("actor_id", "state", "task_addr", "ctl_addr", "worker_id", "pid", "queue",
                 "inflight", "cause", "terminate_pending", "channel")

    def __init__(self, actor_id):
        self.actor_id = actor_id
        self.state = "PENDING"
        self.task_addr = None
        self.ctl_addr = None
        self.worker_id = None
        self.pid = None
        self.queue = collections.deque()
        self.inflight = {}
        self.cause = None
        self.terminate_pending = False
        self.channel = None


class KeyState:
    """Tasks of one resource shape waiting for a leased worker."""
    __slots__ = ("queue", "leases", "pending_reqs", "shape", "infeasible_warned")

    def __init__(self, shape):
        self.queue = collections.deque()
        self.leases = {}
        self.pending_reqs = set()
        self.shape = shape
        self.infeasible_warned = False


class CoreWorker:
    def __init__(self, *, session_dir, node, job_id, config, is_driver, worker_id=None,
                 driver_addr=None):
        self.session_dir = session_dir
        self.node = node                     # dict: node_id, raylet_addr, gcs_addr, store_name
        self.node_id = node["node_id"]
        self.raylet_addr = node["raylet_addr"]
        self.gcs_addr = node["gcs_addr"]
        self.job_id = job_id
        self.config = config
        self.is_driver = is_driver
        self.worker_id = worker_id or ids.random_id(16)
        self.ctx = zmq.Context()
        # the node's id ends the address: holders of our refs learn that we
        # died with our node (cluster_client).  tcp on a node other machines
        # reach (transport.bind_node_inbox).
        suffix = addr_suffix(self.node_id)
        self.inbox, self.addr = bind_node_inbox(
            self.ctx, node, f"ipc://{session_dir}/sockets/c{self.worker_id.hex()[:16]}{suffix}",
            suffix)
        self.out = Outbox(self.ctx)
        self.om_addr = node.get("om_addr")   # the node's object manager (pulls, frees)
        self.cluster = ClusterClient(self)
        self.driver_addr = driver_addr or self.addr
        self.job_config = None

        self.lock = threading.RLock()
        self.cv = threading.Condition(self.lock)
        self.local_refs = {}
        self.decref_q = collections.deque()
        self.owned = {}
        self.foreign = {}            # borrowed oid -> owner address
        self.foreign_values = {}     # borrowed oid -> (kind, payload) once fetched
        self.requested = set()       # borrowed oids asked of their owners
        self.foreign_callbacks = {}
        self.new_foreign = set()     # borrowed refs first seen since the last task ended
        self.registered_borrows = set()
        self.escaped = {}            # return oid -> refs nested in it, pinned for its owner
        self.waiting_deps = {}       # owned oid -> [TaskSpec] waiting for it
        self.keys = {}               # scheduling key -> KeyState
        self.leases = {}             # lease id -> Lease
        self.lease_by_worker = {}    # worker id -> Lease
        self.pending_lease_reqs = {}  # req id -> key
        self.tasks_by_id = {}        # task id -> TaskSpec, while not finished
        self.rpc_waiters = {}
        self.actors = {}             # actor id -> ActorClient
        self.actor_refs = {}         # actor id -> refs in its constructor's arguments
        self.actor_handles = {}      # actor id -> live handles made by this process
        self.escaped_actors = set()  # actors whose handle was sent elsewhere
        self.current_task = None     # set by the worker loop while a task runs
        self.pg_capture = False      # this process ran work whose children join its group
        self.blocked_depth = 0
        self.closing = False
        self._req_counter = 0
        self._actor_reask_at = 0.0
        self._max_inflight = config.max_tasks_in_flight_per_worker

        self.plasma = None
        store_name = node.get("store_name")
        if store_name:
            import plasma
            self.plasma = plasma.connect(store_name)

        self.handlers = {
            Op.TASK_REPLIES: self._h_task_replies,
            Op.LEASE_GRANTED: self._h_lease_granted,
            Op.WORKER_DIED: self._h_worker_died,
            Op.LEASE_INFEASIBLE: self._h_infeasible,
            Op.RECLAIM_LEASE: self._h_reclaim,
            Op.GET_OBJECT: self._h_get_object,
            Op.OBJECT_VALUE: self._h_object_value,
            Op.ADD_BORROWER: self._h_add_borrower,
            Op.REMOVE_BORROWER: self._h_remove_borrower,
            Op.RELEASE_CONTAINED: self._h_release_contained,
            Op.RESPONSE: self._h_response,
            Op.LOG_LINES: self._h_log_lines,
            Op.WAKE: lambda msg, frames: None,
            Op.ACTOR_STATE: self._h_actor_state,
            Op.LEASE_SPILLBACK: self.cluster.h_spillback,
            Op.LEASE_FAILED: self.cluster.h_lease_failed,
            Op.NODE_DEAD: self.cluster.h_node_dead,
            Op.OBJECT_COPY: self.cluster.h_object_copy,
            Op.LEASE_PG_REMOVED: self._h_lease_pg_removed,
        }
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
        self.io_thread = threading.Thread(target=self._io_loop, name="pyray-io", daemon=True)
        self.io_thread.start()
        self.io_ident = self.io_thread.ident

    # ------------------------------------------------------------------
    # reference counting
    # ------------------------------------------------------------------
    def add_local_ref(self, oid, owner):
        with self.lock:
            n = self.local_refs.get(oid, 0)
            self.local_refs[oid] = n + 1
            if n == 0 and owner is not None and owner != self.addr:
                self.foreign[oid] = owner
                if oid not in self.registered_borrows:
                    self.new_foreign.add(oid)

    def _drain_decrefs(self):
        q = self.decref_q
        local = self.local_refs
        while q:
            oid = q.popleft()
            if type(oid) is tuple:          # an actor handle was dropped
                self._actor_handle_dropped(oid[0])
                continue
            n = local.get(oid, 0) - 1
            if n > 0:
                local[oid] = n
                continue
            local.pop(oid, None)
            e = self.owned.get(oid)
            if e is not None:
                if not e.borrowers and oid not in self.escaped:
                    self._free(oid, e)
            elif oid in self.foreign:
                self._release_foreign(oid)

    def _free(self, oid, e):
        del self.owned[oid]
        if e.kind == IN_STORE and self.plasma is not None:
            self._store_delete(oid)
            if e.payload != self.node_id:
                self.cluster.free(e.payload, oid)
        if e.contained_at is not None:
            self.out.send(e.contained_at, (Op.RELEASE_CONTAINED, [oid]))
        e.contained = None  # drops nested refs (their decrefs queue up)

    def _store_delete(self, oid):
        try:
            self.plasma.delete(oid)
        except KeyError:
            pass
        except Exception as err:  # noqa: BLE001 - freeing must not fail the caller
            log.debug("store delete of %s failed: %s", oid.hex(), err)

    def _release_foreign(self, oid):
        owner = self.foreign.pop(oid, None)
        self.foreign_values.pop(oid, None)
        self.requested.discard(oid)
        self.new_foreign.discard(oid)
        if oid in self.registered_borrows:
            self.registered_borrows.discard(oid)
            if owner is not None:
                self.out.send(owner, (Op.REMOVE_BORROWER, [oid], self.addr))

    def register_borrows(self):
        """Called when a task ends: borrowed refs still alive here are
        reported to their owners, which keep the objects until we let go."""
        with self.lock:
            if not self.new_foreign:
                return
            by_owner = {}
            for oid in self.new_foreign:
                owner = self.foreign.get(oid)
                if owner is not None and oid in self.local_refs:
                    by_owner.setdefault(owner, []).append(oid)
                    self.registered_borrows.add(oid)
            self.new_foreign.clear()
            for owner, oids in by_owner.items():
                self.out.send(owner, (Op.ADD_BORROWER, oids, self.addr))

    # ------------------------------------------------------------------
    # put / get / wait
    # ------------------------------------------------------------------
    def put(self, value, _oid=None):
        if isinstance(value, ObjectRef):
            raise TypeError("Calling 'put' on an ObjectRef is not allowed. If you really "
                            "want to do this, wrap it in a list: put([ref]).")
        ser = serialization.serialize(value)
        oid = _oid or ids.new_put_id()
        if ser.nbytes <= self.config.max_inline_bytes or self.plasma is None:
            e = Owned(READY, VALUE, serialization.inline_payload(ser))
        else:
            self._store_put(oid, ser)
            e = Owned(READY, IN_STORE, self.node_id)
        if ser.refs:
            e.contained = ser.refs
        with self.lock:
            if self.decref_q:
                self._drain_decrefs()
            self.owned[oid] = e
        return ObjectRef(oid, self.addr)

    def new_future(self):
        """An owned object made ready by an event rather than a task
        (placement group readiness): see resolve_future."""
        oid = ids.new_put_id()
        with self.lock:
            self.owned[oid] = Owned()
        return ObjectRef(oid, self.addr)

    def resolve_future(self, oid, value=None, error=None):
        """Makes a new_future() object ready with a value or an exception."""
        if error is not None:
            kind, payload = ERROR, serialization.error_payload(error)
        else:
            kind, payload = VALUE, serialization.inline_payload(serialization.serialize(value))
        with self.lock:
            e = self.owned.get(oid)
            if e is not None and e.state == PENDING:
                self._set_ready(oid, kind, payload)
                self.cv.notify_all()

    def put_serialized(self, ser):
        """Puts an already serialized value in the store (task arguments)."""
        oid = ids.new_put_id()
        self._store_put(oid, ser)
        with self.lock:
            self.owned[oid] = Owned(READY, IN_STORE, self.node_id)
        return ObjectRef(oid, self.addr)

    def _store_put(self, oid, ser):
        import plasma
        with self.lock:
            if self.decref_q:
                self._drain_decrefs()   # frees what dropped refs held before allocating
        try:
            serialization.put_in_store(self.plasma, oid, ser)
        except plasma.ObjectStoreFullError as err:
            raise exc.ObjectStoreFullError(str(err)) from None

    def get(self, refs, timeout=None):
        single = False
        if isinstance(refs, ObjectRef):
            refs = [refs]
            single = True
        elif not isinstance(refs, (list, tuple)):
            raise TypeError(f"get() expects an ObjectRef or a list of ObjectRefs, got "
                            f"{type(refs).__name__}: {refs!r:.100}")
        deadline = None if timeout is None else time.monotonic() + timeout
        located = []
        blocked = False
        lead = _LEAD_ROUNDS     # reads of our own channel before leaving it to the I/O thread
        try:
            with self.lock:
                if self.decref_q:
                    self._drain_decrefs()
                for ref in refs:
                    if type(ref) is not ObjectRef:
                        raise TypeError(
                            f"get() expects ObjectRefs, got a {type(ref).__name__} in the "
                            f"list: {ref!r:.100}")
                    loc = self._locate(ref)
                    while loc is None:
                        if not blocked:
                            blocked = True
                            self._notify_blocked(True)
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise exc.GetTimeoutError(
                                f"Get timed out: some object(s) not ready after {timeout}s "
                                f"(first pending: {ref.hex()}).")
                        ch = self._reply_channel(ref._id) if lead else None
                        if ch is not None:
                            lead -= 1
                            self._read_replies(ch, remaining)
                        else:
                            self.cv.wait(remaining if remaining is None or remaining < 1.0
                                         else 1.0)
                        loc = self._locate(ref)
                    located.append(loc)
        finally:
            if blocked:
                self._notify_blocked(False)
        values = []
        for ref, (kind, payload) in zip(refs, located):
            values.append(self._materialize(ref, kind, payload))
        return values[0] if single else values

    def _reply_channel(self, oid):
        """The direct channel the result of `oid` will arrive on, if the
        calling thread may read it itself (lock held)."""
        e = self.owned.get(oid)
        if e is None or e.spec is None or threading.get_ident() == self.io_ident:
            return None
        spec = e.spec
        if spec.actor is not None:
            ac = self.actors.get(spec.actor)
            if ac is None or spec.task_id not in ac.inflight:
                return None
            ch = ac.channel
        else:
            lease = spec.lease
            if lease is None or spec.task_id not in lease.inflight:
                return None
            ch = lease.channel
        if ch is None or ch.closed or ch.leading or ch.fd not in self.chan_by_fd:
            return None
        return ch

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

    def _locate(self, ref):
        """(kind, payload) if the value can be read now, else None (and makes
        sure someone will notify us).  Lock held."""
        oid = ref._id
        e = self.owned.get(oid)
        if e is not None:
            if e.state == READY:
                return e.kind, e.payload
            return None
        if ref._cwref is None and ref._parent is not None:
            ref._cwref = self          # first use of a nested ref: count it from now on
            self.add_local_ref(oid, ref._owner)
        v = self.foreign_values.get(oid)
        if v is not None:
            return v
        if ref._owner is None or ref._owner == self.addr:
            # ours but gone: freed, or made by an earlier session
            return ERROR, serialization.error_payload(exc.ObjectLostError(
                oid.hex(), self.addr,
                msg=f"Object {oid.hex()} is not known to its owner (this process): it was "
                    "freed or belongs to an earlier session."))
        if self.plasma is not None and oid not in self.requested:
            try:
                if self.plasma.contains(oid):
                    v = (IN_STORE, self.node_id)
                    self.foreign_values[oid] = v
                    return v
            except Exception:  # noqa: BLE001 - fall back to asking the owner
                pass
        if oid not in self.requested:
            self.requested.add(oid)
            self.foreign.setdefault(oid, ref._owner)
            if self.cluster.dead and self.cluster.owner_dead(ref._owner):
                v = self.foreign_values[oid] = self.cluster.owner_died_error(oid, ref._owner)
                return v
            self.out.send(ref._owner, (Op.GET_OBJECT, oid, self.addr))
        return None

    def _materialize(self, ref, kind, payload):
        if kind == VALUE:
            return serialization.loads_inline(payload, ref)
        if kind == IN_STORE:
            return self._read_store(ref, payload)
        err = serialization.loads_inline(payload)
        if isinstance(err, exc.RayTaskError):
            raise err.as_instanceof_cause()
        raise err

    def _read_store(self, ref, node=None):
        """The value of an object in a store: ours, or `node`'s (pulled)."""
        import plasma
        try:
            buf = self.plasma.get(ref._id, timeout=self.config.rpc_timeout_s)
        except plasma.ObjectNotFoundError:
            if node is None or node == self.node_id or self.om_addr is None:
                raise exc.ObjectLostError(ref.hex(), ref._owner or "") from None
            return self.cluster.fetch(ref, node)
        except plasma.GetTimeoutError:
            raise exc.ObjectLostError(ref.hex(), ref._owner or "") from None
        kind, value = serialization.loads_store(buf, ref)
        if kind == ERROR:
            raise value
        return value

    def is_ready(self, ref):
        with self.lock:
            return self._locate(ref) is not None

    def wait(self, refs, num_returns=1, timeout=None, fetch_local=True):
        if isinstance(refs, ObjectRef):
            raise TypeError("wait() expects a list of ObjectRefs, got a single ObjectRef; "
                            "pass [ref].")
        if not isinstance(refs, (list, tuple)):
            raise TypeError(f"wait() expects a list of ObjectRefs, got {type(refs).__name__}")
        for r in refs:
            if type(r) is not ObjectRef:
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
        deadline = None if timeout is None else time.monotonic() + timeout
        blocked = False
        try:
            with self.lock:
                if self.decref_q:
                    self._drain_decrefs()
                while True:
                    ready_idx = []
                    for i, r in enumerate(refs):
                        loc = self._locate(r)
                        if loc is not None and (not fetch_local or loc[0] != IN_STORE or
                                                loc[1] == self.node_id or
                                                self.cluster.is_local(r, loc[1])):
                            ready_idx.append(i)
                            if len(ready_idx) >= num_returns:
                                break
                    if len(ready_idx) >= num_returns:
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    if not blocked:
                        blocked = True
                        self._notify_blocked(True)
                    self.cv.wait(remaining if remaining is None or remaining < 1.0 else 1.0)
        finally:
            if blocked:
                self._notify_blocked(False)
        if len(ready_idx) == 1 and ready_idx[0] == 0:
            return [refs[0]], list(refs[1:])
        s = set(ready_idx)
        return [refs[i] for i in ready_idx], [r for i, r in enumerate(refs) if i not in s]

    def on_ready(self, ref, cb):
        """Calls cb(value_fn) once ref is ready (from the I/O thread, or at once)."""
        def value_fn():
            return self.get(ref)
        with self.lock:
            oid = ref._id
            e = self.owned.get(oid)
            if e is not None and e.state == PENDING:
                e.callbacks = (e.callbacks or []) + [(ref, cb)]
                return
            if e is None and self._locate(ref) is None:
                self.foreign_callbacks.setdefault(oid, []).append((ref, cb))
                return
        cb(value_fn)

    def _notify_blocked(self, blocked):
        if self.is_driver or self.current_task is None:
            return
        self.out.send(self.raylet_addr, (Op.WORKER_BLOCKED if blocked else Op.WORKER_UNBLOCKED,
                                         self.worker_id))

    # ------------------------------------------------------------------
    # task submission
    # ------------------------------------------------------------------
    def submit(self, spec):
        """Queues a task; it is pushed to a leased worker once its owned
        dependencies are ready.  Called from the user's thread."""
        with self.lock:
            if self.decref_q:
                self._drain_decrefs()
            for oid in spec.return_ids:
                e = Owned()
                e.spec = spec
                self.owned[oid] = e
            self.tasks_by_id[spec.task_id] = spec
            self.submit_deps(spec)

    def submit_deps(self, spec):
        """Enqueues a task now, or once its pending owned arguments are ready."""
        pending = []
        for ref in spec.deps:
            e = self.owned.get(ref._id)
            if e is None:
                continue            # borrowed: the worker asks its owner
            if e.state == PENDING:
                pending.append(ref._id)
            elif not self._resolve_dep(spec, ref._id, e):
                return
        if pending:
            spec.pending_deps = len(pending)
            for oid in pending:
                self.waiting_deps.setdefault(oid, []).append(spec)
        else:
            self._enqueue(spec)

    def _resolve_dep(self, spec, oid, e):
        """Attaches a ready dependency to the spec; a failed dependency fails
        the task without running it.  Returns False if the task failed."""
        if e.kind == ERROR:
            self._finish_error(spec, e.payload)
            return False
        if e.kind == VALUE:
            if spec.resolved is None:
                spec.resolved = {}
            spec.resolved[oid] = (VALUE, e.payload)
        elif e.payload != self.node_id and len(spec.key) == 2 and spec.key[1] in (None, "DEFAULT"):
            # a large argument lives on another node: prefer a worker there
            spec.key = spec.key + (e.payload,)
        return True

    def _dep_ready(self, oid, e):
        specs = self.waiting_deps.pop(oid, None)
        if not specs:
            return
        for spec in specs:
            if spec.cancelled:
                continue
            if not self._resolve_dep(spec, oid, e):
                spec.cancelled = True     # failed; skip later deps
                continue
            spec.pending_deps -= 1
            if spec.pending_deps == 0:
                self._enqueue(spec)

    def _key_state(self, spec):
        ks = self.keys.get(spec.key)
        if ks is None:
            shape = spec.shape
            if type(shape) is not dict and getattr(shape, "lease", None) is not None:
                shape = shape.lease      # placed in a placement group (PgShape)
            ks = self.keys[spec.key] = KeyState(shape)
        return ks

    def _enqueue(self, spec):
        ks = self._key_state(spec)
        if not ks.queue:
            for lease in ks.leases.values():
                if not lease.inflight and not lease.reclaim:
                    self._push(lease, spec)
                    return
        ks.queue.append(spec)
        self._request_leases(spec.key, ks)

    def _push(self, lease, spec):
        if not lease.inflight:
            lease.progress = time.monotonic()
        spec.lease = lease
        spec.attempt += 1
        lease.inflight[spec.task_id] = spec
        fn = spec.fn
        fn_bytes = None
        if fn.fn_id not in lease.sent_fns:
            lease.sent_fns.add(fn.fn_id)
            fn_bytes = fn.data
        job = None
        if lease.first:
            lease.first = False
            job = self.job_config
        data, bufs = spec.args_payload
        msg = (Op.PUSH_TASK, spec.task_id, fn.fn_id, fn_bytes, spec.name, data,
               -1 if bufs is None else len(bufs),
               spec.resolved, len(spec.return_ids), self.addr, spec.attempt, lease.gpu_ids,
               job, spec.actor, spec.extra, spec.shape)
        self._send_task(lease.channel, lease.task_addr, msg, bufs)

    def _send_task(self, channel, addr, msg, bufs):
        """Over the direct channel when there is one, else over zmq."""
        if channel is not None and not channel.closed:
            if channel.send_nowait(serialization.pickle.dumps(msg, protocol=5), bufs or ()):
                if channel.pending and channel not in self.chan_out:
                    # The socket is full: the I/O thread finishes the send
                    # when the worker has read enough.
                    self.chan_out.add(channel)
                    if threading.current_thread() is not self.io_thread:
                        self.out.send(self.addr, (Op.WAKE,))
                return
        self.out.send(addr, msg, bufs)

    def _request_leases(self, key, ks):
        # One request per queued task (capped): tasks run one per worker
        # unless a burst makes pipelining worthwhile, so a queue of N slow
        # tasks must be able to use N workers.
        want = min(len(ks.queue), 32)
        while len(ks.pending_reqs) < want:
            self._req_counter += 1
            req_id = self._req_counter
            ks.pending_reqs.add(req_id)
            self.pending_lease_reqs[req_id] = key
            self.out.send(self.raylet_addr, self.lease_request(req_id, key, ks))

    def lease_request(self, req_id, key, ks):
        return (Op.REQUEST_LEASE, req_id, self.addr, ks.shape, self.job_id, self.driver_addr, key)

    def _dispatch_queued(self, ks):
        """Pushes queued tasks to leased workers.  A worker gets more than
        one task in flight only during a burst (many queued tasks) and only
        while it answers quickly: a task is never queued behind one that has
        been running for a while."""
        now = time.monotonic()
        # several tasks in flight per worker only for a burst of queued work
        limit = self._max_inflight if len(ks.queue) > 4 * len(ks.leases) else 1
        while ks.queue:
            best = None
            for lease in ks.leases.values():
                n = len(lease.inflight)
                if lease.reclaim or n >= limit:
                    continue
                # Never queue a task behind one that may block or run long:
                # only a worker that has just answered quickly gets more.
                if n and (not lease.fast or now - lease.progress > 0.002):
                    continue
                if best is None or n < len(best.inflight):
                    best = lease
                    if n == 0:
                        break
            if best is None:
                return
            spec = ks.queue.popleft()
            if spec.cancelled:
                continue
            self._push(best, spec)

    def cancel(self, ref, force):
        task_id = ref._id[:16]
        with self.lock:
            spec = self.tasks_by_id.get(task_id)
            if spec is None or spec.cancelled:
                return
            spec.cancelled = True
            lease = spec.lease
            if spec.actor is not None:
                ac = self.actors.get(spec.actor)
                if ac is not None and task_id in ac.inflight:
                    self.out.send(ac.ctl_addr, (Op.CANCEL_TASK, task_id, False))
                    return
                if ac is not None:
                    try:
                        ac.queue.remove(spec)
                    except ValueError:
                        pass
                self.fail_task(spec, exc.TaskCancelledError(task_id.hex()))
                self.cv.notify_all()
            elif lease is None or task_id not in lease.inflight:
                ks = self.keys.get(spec.key)
                if ks is not None:
                    try:
                        ks.queue.remove(spec)
                    except ValueError:
                        pass
                self.fail_task(spec, exc.TaskCancelledError(task_id.hex()))
                self.cv.notify_all()
            else:
                self.out.send(lease.ctl_addr, (Op.CANCEL_TASK, task_id, bool(force)))

    # ------------------------------------------------------------------
    # actors (caller side): calls go straight to the actor's worker
    # ------------------------------------------------------------------
    def _actor_client(self, actor_id):
        ac = self.actors.get(actor_id)
        if ac is None:
            ac = self.actors[actor_id] = ActorClient(actor_id)
            self.out.send(self.gcs_addr, (Op.GET_ACTOR_INFO, actor_id, self.addr))
        return ac

    def submit_actor_task(self, spec):
        with self.lock:
            if self.decref_q:
                self._drain_decrefs()
            for oid in spec.return_ids:
                e = Owned()
                e.spec = spec
                self.owned[oid] = e
            self.tasks_by_id[spec.task_id] = spec
            for ref in spec.deps:
                e = self.owned.get(ref._id)
                if e is not None and e.state == READY and e.kind == VALUE:
                    if spec.resolved is None:
                        spec.resolved = {}
                    spec.resolved[ref._id] = (VALUE, e.payload)
            ac = self._actor_client(spec.actor)
            if ac.state == "ALIVE" and not ac.queue:
                self._push_actor(ac, spec)
            elif ac.state == "DEAD":
                self.fail_task(spec, self._actor_error(ac))
            else:
                ac.queue.append(spec)

    def _push_actor(self, ac, spec):
        ac.inflight[spec.task_id] = spec
        spec.attempt += 1
        data, bufs = spec.args_payload
        msg = (Op.PUSH_TASK, spec.task_id, spec.name, None, spec.name, data,
               -1 if bufs is None else len(bufs), spec.resolved, len(spec.return_ids),
               self.addr, spec.attempt, None, None, spec.actor, None, None)
        self._send_task(ac.channel, ac.task_addr, msg, bufs)

    def _actor_error(self, ac):
        cause = ac.cause
        if isinstance(cause, tuple):
            try:
                err = serialization.loads_inline(cause)
            except Exception as e:  # noqa: BLE001
                err = e
            if isinstance(err, exc.RayTaskError):
                # `except ValueError` on err.cause works as it does for a task
                err = err.as_instanceof_cause()
            return exc.ActorDiedError(err, (
                "The actor died because of an error raised in its creation task: "
                f"{err}"), ac.actor_id)
        return exc.ActorDiedError(None, f"The actor {ac.actor_id.hex()} is dead: {cause}",
                                  ac.actor_id)

    def _h_actor_state(self, msg, frames):
        _, actor_id, state, addr, cause, restarts = msg
        ac = self.actors.get(actor_id)
        if ac is None:
            return
        if ac.state == "DEAD" and state != "DEAD":
            return      # killed here (actor_killed) before this older news arrived
        if state == "ALIVE":
            if addr is not None and (ac.task_addr != addr[0] or ac.state != "ALIVE"):
                ac.task_addr, ac.ctl_addr, ac.worker_id, ac.pid, path = addr
                ac.channel = self._channel_for(path)
            ac.state = "ALIVE"
            while ac.queue:
                self._push_actor(ac, ac.queue.popleft())
            if ac.terminate_pending:
                self._terminate_actor(ac)
        elif state in ("RESTARTING", "DEAD"):
            ac.state = state
            ac.cause = cause
            lost = list(ac.inflight.values())
            ac.inflight.clear()
            retry = []
            for spec in lost:
                if state == "RESTARTING" and spec.retries_left != 0:
                    spec.retries_left -= 1
                    retry.append(spec)
                else:
                    self.fail_task(spec, self._actor_error(ac) if state == "DEAD" else
                                   exc.ActorDiedError(None, (
                                       f"The actor died while running {spec.name} (cause: "
                                       f"{cause}); the call was not retried "
                                       "(max_task_retries).")))
            ac.queue.extendleft(reversed(retry))
            if state == "DEAD":
                err = self._actor_error(ac)
                while ac.queue:
                    self.fail_task(ac.queue.popleft(), err)
                self.actor_refs.pop(actor_id, None)
        self.cv.notify_all()

    def actor_killed(self, actor_id):
        """pyray.kill(no_restart=True) was accepted: calls made from now on
        fail at once; those in flight fail when the GCS reports the death."""
        with self.lock:
            ac = self._actor_client(actor_id)
            if ac.state == "DEAD":
                return
            ac.state = "DEAD"
            ac.cause = "The actor was killed by pyray.kill()."
            err = self._actor_error(ac)
            while ac.queue:
                self.fail_task(ac.queue.popleft(), err)
            self.cv.notify_all()

    def keep_alive(self, actor_id, refs):
        if refs:
            with self.lock:
                self.actor_refs[actor_id] = refs

    def add_actor_handle(self, actor_id):
        with self.lock:
            self.actor_handles[actor_id] = self.actor_handles.get(actor_id, 0) + 1

    def actor_handle_escaped(self, actor_id):
        self.escaped_actors.add(actor_id)

    def _actor_handle_dropped(self, actor_id):
        n = self.actor_handles.get(actor_id, 0) - 1
        if n > 0:
            self.actor_handles[actor_id] = n
            return
        self.actor_handles.pop(actor_id, None)
        if actor_id in self.escaped_actors:
            return
        ac = self._actor_client(actor_id)
        if ac.state == "ALIVE":
            self._terminate_actor(ac)
        elif ac.state != "DEAD":
            ac.terminate_pending = True

    def _terminate_actor(self, ac):
        """Out of scope: the actor stops after the calls already sent to it."""
        ac.terminate_pending = False
        msg = (Op.PUSH_TASK, ids.new_task_id(), "__pyray_terminate__", None, "terminate", b"",
               0, None, 0, self.addr, 1, None, None, ac.actor_id, None, None)
        self._send_task(ac.channel, ac.task_addr, msg, None)

    # ------------------------------------------------------------------
    # results
    # ------------------------------------------------------------------
    def _set_ready(self, oid, kind, payload, contained_at=None):
        e = self.owned.get(oid)
        if e is None:
            # every ref to it was dropped while the task ran
            if kind == IN_STORE and self.plasma is not None:
                self._store_delete(oid)
                if payload != self.node_id:
                    self.cluster.free(payload, oid)
            if contained_at is not None:
                self.out.send(contained_at, (Op.RELEASE_CONTAINED, [oid]))
            return
        e.state = READY
        e.kind = kind
        e.payload = payload
        if kind != IN_STORE or payload == self.node_id:
            # lineage is kept only for objects on other nodes: they can be
            # lost while this process lives (cluster_client)
            e.spec = None
        e.contained_at = contained_at
        if e.waiters:
            for addr in e.waiters:
                self.out.send(addr, (Op.OBJECT_VALUE, oid, kind, payload))
            e.waiters = None
        if oid in self.waiting_deps:
            self._dep_ready(oid, e)
        if e.callbacks:
            cbs, e.callbacks = e.callbacks, None
            self._pending_callbacks.extend(cbs)
        if oid not in self.local_refs and not e.borrowers and oid not in self.escaped:
            self._free(oid, e)

    def _finish_error(self, spec, payload):
        self.tasks_by_id.pop(spec.task_id, None)
        for oid in spec.return_ids:
            self._set_ready(oid, ERROR, payload)

    def fail_task(self, spec, error):
        self._finish_error(spec, serialization.error_payload(error))

    def _h_task_replies(self, msg, frames):
        _, worker_id, replies = msg
        lease = self.lease_by_worker.get(worker_id)
        for task_id, results, contained_at, retry in replies:
            spec = lease.inflight.pop(task_id, None) if lease is not None else None
            if spec is None:
                spec = self.tasks_by_id.get(task_id)
                if spec is None:
                    continue
                if spec.actor is not None:
                    ac = self.actors.get(spec.actor)
                    if ac is not None:
                        ac.inflight.pop(task_id, None)
            if retry and spec.retries_left != 0 and not spec.cancelled and \
                    self._should_retry_exception(spec, results):
                spec.retries_left -= 1
                self._key_state(spec).queue.appendleft(spec)
                continue
            self.tasks_by_id.pop(task_id, None)
            for oid, kind, payload in results:
                self._set_ready(oid, kind, payload, contained_at)
        if lease is not None:
            now = time.monotonic()
            lease.fast = now - lease.progress < 0.002
            lease.progress = now
            ks = self.keys.get(lease.key)
            if ks is not None and ks.queue:
                self._dispatch_queued(ks)
            if not lease.inflight:
                lease.idle_since = time.monotonic()
                if lease.reclaim:
                    self._return_lease(lease)
        self.cv.notify_all()

    def _should_retry_exception(self, spec, results):
        re = spec.retry_exceptions
        if re is True:
            return True
        if not re:
            return False
        for _oid, kind, payload in results:
            if kind == ERROR:
                try:
                    err = serialization.loads_inline(payload)
                except Exception:  # noqa: BLE001
                    return False
                cause = getattr(err, "cause", err)
                return isinstance(cause, tuple(re))
        return False

    # ------------------------------------------------------------------
    # leases
    # ------------------------------------------------------------------
    def _h_lease_granted(self, msg, frames):
        _, req_id, lease_id, worker_id, task_addr, ctl_addr, gpu_ids, pid, chan_path = msg
        key = self.pending_lease_reqs.pop(req_id, None)
        ks = self.keys.get(key) if key is not None else None
        if ks is None:
            self.cluster.targets.pop(req_id, None)
            self.out.send(self.cluster.raylet_of_lease(lease_id), (Op.RETURN_LEASE, lease_id,
                                                                   False))
            return
        ks.pending_reqs.discard(req_id)
        lease = Lease(lease_id, worker_id, task_addr, ctl_addr, gpu_ids, key, pid,
                      self._channel_for(chan_path))
        lease.raylet, lease.node_id = self.cluster.lease_source(req_id)
        ks.leases[lease_id] = lease
        self.leases[lease_id] = lease
        self.lease_by_worker[worker_id] = lease
        self._dispatch_queued(ks)
        if ks.queue:
            self._request_leases(key, ks)
        elif ks.pending_reqs:
            for r in ks.pending_reqs:
                self.pending_lease_reqs.pop(r, None)
                self.cluster.cancel_request(r)
            ks.pending_reqs.clear()

    def _return_lease(self, lease, disconnect=False):
        self.leases.pop(lease.lease_id, None)
        if self.lease_by_worker.get(lease.worker_id) is lease:
            del self.lease_by_worker[lease.worker_id]
        ks = self.keys.get(lease.key)
        if ks is not None:
            ks.leases.pop(lease.lease_id, None)
        self.out.send(lease.raylet, (Op.RETURN_LEASE, lease.lease_id, disconnect))

    def _h_reclaim(self, msg, frames):
        lease = self.leases.get(msg[1])
        if lease is None:
            return
        lease.reclaim = True
        if not lease.inflight:
            self._return_lease(lease)

    def _h_worker_died(self, msg, frames):
        _, lease_id, worker_id, reason = msg
        lease = self.leases.get(lease_id)
        if lease is None:
            return
        self.leases.pop(lease_id, None)
        self.lease_by_worker.pop(worker_id, None)
        ks = self.keys.get(lease.key)
        if ks is not None:
            ks.leases.pop(lease_id, None)
        self._on_worker_lost(lease, reason)
        if ks is not None and ks.queue:
            self._request_leases(lease.key, ks)
        self.cv.notify_all()

    def _on_worker_lost(self, lease, reason):
        """Tasks that were running on a dead worker: retry or fail."""
        ks = self.keys.get(lease.key)
        for spec in list(lease.inflight.values()):
            if spec.cancelled:
                self.fail_task(spec, exc.TaskCancelledError(spec.task_id.hex()))
            elif spec.retries_left != 0 and ks is not None:
                spec.retries_left -= 1
                ks.queue.appendleft(spec)
            else:
                self.fail_task(spec, exc.WorkerCrashedError(
                    f"The worker running task {spec.name} died unexpectedly ({reason}); "
                    "it was not retried because its retries are used up (max_retries)."))
        lease.inflight.clear()

    def _h_lease_pg_removed(self, msg, frames):
        """The placement group the queued tasks of a key were placed in is
        gone: they fail (Ray's TaskPlacementGroupRemoved)."""
        _, req_id, message = msg
        key = self.pending_lease_reqs.pop(req_id, None)
        ks = self.keys.get(key) if key is not None else None
        if ks is None:
            return
        ks.pending_reqs.discard(req_id)
        from pyray.util.placement_group import TaskPlacementGroupRemoved
        err = TaskPlacementGroupRemoved(message)
        while ks.queue:
            spec = ks.queue.popleft()
            if not spec.cancelled:
                self.fail_task(spec, err)
        self.cv.notify_all()

    def _h_infeasible(self, msg, frames):
        _, req_id, message = msg
        key = self.pending_lease_reqs.get(req_id)
        ks = self.keys.get(key)
        if ks is not None and not ks.infeasible_warned:
            ks.infeasible_warned = True
            print(f"(pyray) Warning: {message}", file=sys.stderr, flush=True)
            log.warning(message)

    # ------------------------------------------------------------------
    # borrowers and owners
    # ------------------------------------------------------------------
    def _h_get_object(self, msg, frames):
        _, oid, reply_to = msg
        e = self.owned.get(oid)
        if e is None:
            err = exc.ObjectLostError(oid.hex(), self.addr, msg=(
                f"Object {oid.hex()} was already freed by its owner (pid {os.getpid()}); "
                "keep a reference to it while it is needed."))
            self.out.send(reply_to, (Op.OBJECT_VALUE, oid, ERROR,
                                     serialization.error_payload(err)))
        elif e.state == READY:
            self.out.send(reply_to, (Op.OBJECT_VALUE, oid, e.kind, e.payload))
        else:
            e.waiters = (e.waiters or []) + [reply_to]

    def _h_object_value(self, msg, frames):
        _, oid, kind, payload = msg
        if oid not in self.requested:
            return
        self.foreign_values[oid] = (kind, payload)
        cbs = self.foreign_callbacks.pop(oid, None)
        if cbs:
            self._pending_callbacks.extend(cbs)
        self.cv.notify_all()

    def _h_add_borrower(self, msg, frames):
        _, oids, addr = msg
        for oid in oids:
            e = self.owned.get(oid)
            if e is not None:
                if e.borrowers is None:
                    e.borrowers = set()
                e.borrowers.add(addr)

    def _h_remove_borrower(self, msg, frames):
        _, oids, addr = msg
        for oid in oids:
            e = self.owned.get(oid)
            if e is not None and e.borrowers:
                e.borrowers.discard(addr)
                if not e.borrowers and oid not in self.local_refs and oid not in self.escaped:
                    self._free(oid, e)

    def _h_release_contained(self, msg, frames):
        for oid in msg[1]:
            self.escaped.pop(oid, None)   # drops the pinned refs

    def _h_log_lines(self, msg, frames):
        _, prefix, is_err, text = msg
        stream = sys.stderr if is_err else sys.stdout
        try:
            stream.write("".join(f"{prefix} {line}\n" for line in text.splitlines()))
            stream.flush()
        except (OSError, ValueError):
            pass

    # ------------------------------------------------------------------
    # request / response with daemons
    # ------------------------------------------------------------------
    def rpc(self, addr, op, *args, timeout=None):
        timeout = self.config.rpc_timeout_s if timeout is None else timeout
        ev = threading.Event()
        slot = [ev, None, None]
        with self.lock:
            self._req_counter += 1
            req_id = self._req_counter
            self.rpc_waiters[req_id] = slot
        msg = (op, req_id, self.addr) + args
        self.out.send(addr, msg)
        deadline = time.monotonic() + timeout
        if addr == self.gcs_addr and op not in _GCS_NOT_RESENT:
            # a request the GCS took in just before it was killed is lost:
            # ask again (the same id) until a restarted GCS answers
            while not ev.wait(max(0.0, min(_GCS_RESEND_S, deadline - time.monotonic()))) \
                    and time.monotonic() < deadline:
                self.out.send(addr, msg)
        if not ev.wait(max(0.0, deadline - time.monotonic())):
            with self.lock:
                self.rpc_waiters.pop(req_id, None)
            raise exc.RaySystemTimeoutError(
                f"no answer from {addr} to request {op} within {timeout}s; is the cluster up?")
        ok, payload = slot[1], slot[2]
        if not ok:
            raise payload if isinstance(payload, BaseException) else exc.RaySystemError(payload)
        return payload

    def _h_response(self, msg, frames):
        _, req_id, ok, payload = msg
        slot = self.rpc_waiters.pop(req_id, None)
        if slot is not None:
            slot[1], slot[2] = ok, payload
            slot[0].set()

    # ------------------------------------------------------------------
    # the I/O thread
    # ------------------------------------------------------------------
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
                        self._drain_decrefs()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + 0.1
                with self.lock:
                    if self.decref_q:
                        self._drain_decrefs()
                    self._return_idle_leases(now)
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

    def _reask_actor_info(self, now):
        """Asks the GCS again where actors with calls waiting live: the first
        question may have been lost with a GCS that was killed."""
        self._actor_reask_at = now + _GCS_RESEND_S
        for ac in self.actors.values():
            if ac.queue and ac.state in ("PENDING", "RESTARTING"):
                self.out.send(self.gcs_addr, (Op.GET_ACTOR_INFO, ac.actor_id, self.addr))

    def _return_idle_leases(self, now):
        timeout = self.config.lease_idle_timeout_s
        for lease in list(self.leases.values()):
            if not lease.inflight and now - lease.idle_since > timeout:
                ks = self.keys.get(lease.key)
                if ks is not None and ks.queue:
                    continue
                self._return_lease(lease)

    # ------------------------------------------------------------------
    def shutdown(self, keep_store=False):
        """Stops the I/O thread and closes sockets.  The store client is
        closed in the background, or (keep_store) handed back to the caller
        to close after the node's daemons are gone: whoever unmaps the arena
        last frees its pages (~0.15 s per GB), and that should not be the
        raylet, whose exit shutdown() waits for."""
        with self.lock:
            if self.closing:
                return
            for lease in list(self.leases.values()):
                self._return_lease(lease, disconnect=False)
            self.closing = True
            self.out.send(self.addr, (Op.WAKE,))
        self.io_thread.join(timeout=2)
        # what we told our raylet and the GCS last (a driver's exit, a
        # shutdown) must reach them, not die in our queues
        self.out.close(flush=(self.raylet_addr, self.gcs_addr))
        for ch in list(self.chan_by_fd.values()):
            ch.close()
        self.chan_ep.close()
        try:
            self.inbox.close(0)
        except zmq.ZMQError:
            pass
        client, self.plasma = self.plasma, None
        self.ctx.term()
        if client is not None and not keep_store:
            close_in_background(client)
            client = None
        return client


def close_in_background(client):
    """Unmapping the arena frees every page when this process is its last
    user (~0.15 s per GB): it happens in a thread (without the GIL) rather
    than hold up shutdown()."""
    threading.Thread(target=_close_quietly, args=(client,), name="pyray-unmap",
                     daemon=True).start()


def _close_quietly(client):
    try:
        client.close()
    except Exception:  # noqa: BLE001 - nothing to report to at shutdown
        pass


def format_exception_for_task(name, err):
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return exc.RayTaskError(name, tb, err)
