"""The core worker: the per-process runtime of the driver and of each worker.

One instance lives in every process that runs pyray code.  It is made of
parts, one module each, that share its state and its lock:

    ownership.py        Ownership       owned objects, local refs, borrowers, freeing
    task_submitter.py   TaskSubmitter   submit -> dependencies -> leases -> push -> replies
    lease_policy.py     (functions)     how many tasks per worker, how many leases to ask
    actor_submitter.py  ActorSubmitter  actor calls, actor state, handle counts, terminate
    io_loop.py          IoLoop          inbox, direct channels, the I/O thread, rpc()
    cluster_client.py   ClusterClient   other nodes: spillback, pulls, node death
    generators.py       Generators      generator tasks: items as they are yielded

What stays here: put/get/wait (values come from the in-process memory
store or the node's shared-memory store), the table of message handlers,
construction and shutdown.  The calling thread submits tasks straight to
leased workers (no hop through a scheduler); the I/O thread receives
replies, lease grants and requests from borrowers, and wakes waiters.
"""
from __future__ import annotations

import logging
import threading
import time

import zmq

from pyray import exceptions as exc
from pyray._private import task_events
from pyray._private import errors, ids, serialization
from pyray._private.actor_submitter import ActorSubmitter
from pyray._private.cluster_client import ClusterClient, addr_suffix
from pyray._private.generators import Generators
from pyray._private.io_loop import IoLoop
from pyray._private.object_ref import ObjectRef
from pyray._private.ownership import PENDING, READY, Owned, Ownership
from pyray._private.store_errors import to_pyray_error
from pyray._private.protocol import (ERROR, GET_OBJECT, IN_STORE, VALUE, WAKE, WORKER_BLOCKED,
                                     WORKER_UNBLOCKED, Op)
from pyray._private.task_submitter import TaskSubmitter
from pyray._private.transport import Outbox, bind_node_inbox

log = logging.getLogger("pyray.core_worker")

# a caller reading its own reply channel (io_loop's _read_replies) does so
# this many times in one get(); then it waits for the I/O thread (a long
# call costs no polling)
_LEAD_ROUNDS = 4


def wait_container_error(refs):
    """The TypeError pyray.wait raises for something that is not a list."""
    from pyray._private.generators import ObjectRefGenerator
    if isinstance(refs, (ObjectRef, ObjectRefGenerator)):
        raise TypeError("wait() expected a list of ObjectRef or ObjectRefGenerator, got a "
                        f"single ObjectRef or ObjectRefGenerator {refs!r:.100}")
    raise TypeError(f"wait() expected a list of ObjectRef or ObjectRefGenerator, got "
                    f"{type(refs)}")


def check_wait_counts(refs, n_unique, num_returns):
    """pyray.wait's checks of a non-empty list: no duplicates, 0 < num_returns <= len."""
    if n_unique != len(refs):
        raise ValueError("Wait requires a list of unique object refs.")
    if num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}.")
    if num_returns > len(refs):
        raise ValueError("num_returns cannot be greater than the number of objects provided "
                         "to pyray.wait.")


class CoreWorker(Ownership, TaskSubmitter, ActorSubmitter, IoLoop, Generators):
    """The runtime of one process.  Used from outside through: put, get,
    wait, submit, submit_actor_task, cancel, rpc, shutdown and the actor
    handle calls (actor.py); ClusterClient uses the interface stated in
    cluster_client.py."""

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
        self.worker_id = worker_id or ids.random_id()
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
        self.driver_addr = driver_addr or self.addr
        self.job_config = None
        self.current_task = None     # set by the task executor while a task runs
        self.pg_capture = False      # this process ran work whose children join its group
        self.closing = False

        self.lock = threading.RLock()
        self.cv = threading.Condition(self.lock)
        self._init_ownership()
        self._init_task_submission(config)
        self._init_actor_submission()
        self._init_generators()
        self._init_io()
        self.cluster = ClusterClient(self)

        self.plasma = None
        store_name = node.get("store_name")
        if store_name:
            import plasma
            self.plasma = plasma.connect(store_name)

        # who handles each message that reaches this process
        self.handlers = {
            # task_submitter.py
            Op.TASK_REPLIES: self._h_task_replies,
            Op.LEASE_GRANTED: self._h_lease_granted,
            Op.WORKER_DIED: self._h_worker_died,
            Op.LEASE_INFEASIBLE: self._h_infeasible,
            Op.RECLAIM_LEASE: self._h_reclaim,
            Op.LEASE_PG_REMOVED: self._h_lease_pg_removed,
            # ownership.py
            Op.GET_OBJECT: self._h_get_object,
            Op.OBJECT_VALUE: self._h_object_value,
            Op.ADD_BORROWER: self._h_add_borrower,
            Op.REMOVE_BORROWER: self._h_remove_borrower,
            Op.RELEASE_CONTAINED: self._h_release_contained,
            # actor_submitter.py
            Op.ACTOR_STATE: self._h_actor_state,
            # io_loop.py
            Op.RESPONSE: self._h_response,
            Op.LOG_LINES: self._h_log_lines,
            Op.WAKE: lambda msg, frames: None,
            # generators.py
            Op.GENERATOR_ITEMS: self._h_generator_items,
            # cluster_client.py
            Op.LEASE_SPILLBACK: self.cluster.h_spillback,
            Op.LEASE_FAILED: self.cluster.h_lease_failed,
            Op.NODE_DEAD: self.cluster.h_node_dead,
            Op.OBJECT_COPY: self.cluster.h_object_copy,
        }
        task_events.attach(self)
        self._start_io_thread()

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
            self.store_put(oid, ser)
            e = Owned(READY, IN_STORE, self.node_id)
        if ser.refs:
            e.contained = ser.refs
        with self.lock:
            if self.decref_q:
                self.drain_decrefs()
            self.owned[oid] = e
        return ObjectRef(oid, self.addr)

    def put_serialized(self, ser):
        """Puts an already serialized value in the store (task arguments)."""
        oid = ids.new_put_id()
        self.store_put(oid, ser)
        with self.lock:
            self.owned[oid] = Owned(READY, IN_STORE, self.node_id)
        return ObjectRef(oid, self.addr)

    def store_put(self, oid, ser):
        import plasma
        with self.lock:
            if self.decref_q:
                self.drain_decrefs()   # frees what dropped refs held before allocating
        try:
            serialization.put_in_store(self.plasma, oid, ser)
        except plasma.PlasmaError as err:
            raise to_pyray_error(err, oid.hex(), self.addr) from None

    def get(self, refs, timeout=None):
        single = False
        if isinstance(refs, ObjectRef):
            refs = [refs]
            single = True
        elif not isinstance(refs, list):
            from pyray._private.generators import ObjectRefGenerator
            if isinstance(refs, ObjectRefGenerator):
                return refs         # as in Ray: a generator is its own value
            raise ValueError(f"Invalid type of object refs, {type(refs)}, is given. "
                             "'object_refs' must either be an ObjectRef or a list of "
                             "ObjectRefs.")
        deadline = None if timeout is None else time.monotonic() + timeout
        located = []
        blocked = False
        lead = _LEAD_ROUNDS     # reads of our own channel before leaving it to the I/O thread
        try:
            with self.lock:
                if self.decref_q:
                    self.drain_decrefs()
                for ref in refs:
                    if type(ref) is not ObjectRef:
                        raise TypeError(
                            f"Attempting to call `get` on the value {ref!r:.100} (a "
                            f"{type(ref).__name__}), which is not an ObjectRef.")
                    loc = self.locate(ref)
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
                        loc = self.locate(ref)
                    located.append(loc)
        finally:
            if blocked:
                self._notify_blocked(False)
        values = []
        for ref, (kind, payload) in zip(refs, located):
            values.append(self.materialize(ref, kind, payload))
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

    def locate(self, ref):
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
            return ERROR, errors.encode(exc.ObjectLostError(
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
            self.out.send(ref._owner, GET_OBJECT.make(oid, self.addr))
        return None

    def materialize(self, ref, kind, payload):
        if kind == VALUE:
            return serialization.loads_inline(payload, ref)
        if kind == IN_STORE:
            return self.read_store(ref, payload)
        err = errors.decode(payload)
        if isinstance(err, exc.RayTaskError):
            raise err.as_instanceof_cause()
        raise err

    def read_store(self, ref, node=None):
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
        except plasma.PlasmaError as err:
            raise to_pyray_error(err, ref.hex(), ref._owner or "") from None
        kind, value = serialization.loads_store(buf, ref)
        if kind == ERROR:
            raise value
        return value

    def is_ready(self, ref):
        with self.lock:
            return self.locate(ref) is not None

    def wait(self, refs, num_returns=1, timeout=None, fetch_local=True):
        # Ray's checks, in Ray's order (generators.wait makes the same ones)
        if not isinstance(refs, list):
            wait_container_error(refs)
        if timeout is not None and timeout < 0:
            raise ValueError(f"The 'timeout' argument must be nonnegative. Received {timeout}")
        for r in refs:
            if type(r) is not ObjectRef:
                raise TypeError("wait() expected a list of ObjectRef or ObjectRefGenerator, "
                                f"got list containing {type(r)}")
        if not refs:
            return [], []
        n = len(set(refs))
        if n != len(refs) or not 0 < num_returns <= n:
            check_wait_counts(refs, n, num_returns)
        deadline = None if timeout is None else time.monotonic() + timeout
        blocked = False
        try:
            with self.lock:
                if self.decref_q:
                    self.drain_decrefs()
                while True:
                    ready_idx = []
                    for i, r in enumerate(refs):
                        loc = self.locate(r)
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
            if e is None and self.locate(ref) is None:
                self.foreign_callbacks.setdefault(oid, []).append((ref, cb))
                return
        cb(value_fn)

    def _notify_blocked(self, blocked):
        if self.is_driver or self.current_task is None:
            return
        msg = WORKER_BLOCKED if blocked else WORKER_UNBLOCKED
        self.out.send(self.raylet_addr, msg.make(self.worker_id))


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
            self.out.send(self.addr, WAKE.make())
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


