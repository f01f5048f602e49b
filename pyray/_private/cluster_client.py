"""An owner's side of a cluster of several nodes (docs/cluster.md).

The core worker keeps its single-node hot paths; what only matters once
there are other nodes lives here:

* lease requests another raylet was sent to (spillback) and leases granted
  by other nodes' raylets;
* reading an object held by another node: the node's object manager pulls
  it into the local store;
* a node's death: tasks that ran there retry elsewhere, objects this process
  owns that lived only there are made again from their task (lineage) or
  fail with ObjectLostError, and refs owned by processes that lived there
  raise OwnerDiedError.

Handlers (``h_*``) run on the core worker's I/O thread with its lock held.

What this module uses of the core worker (``cw``), and nothing else:

    addr, node_id, raylet_addr, om_addr  this process's, its raylet's and its
                                         object manager's addresses
    config, out, plasma                  settings, the outbox, the store client
    lock, cv                             the core worker's lock; notify cv when
                                         something a caller waits for changed
    rpc(addr, op, *args, timeout=)       a request and its answer
    owned                                oid -> Owned (ownership.py): read, and
                                         the location of IN_STORE entries updated
    locate(ref) / materialize(ref, kind, payload) / read_store(ref, node)
                                         where a value is, and reading it
    set_ready(oid, kind, payload)        an owned object's final value (or error)
    forget_value(oid)                    ask a borrowed object's owner again
    borrowed_node_died(node_id, suffix, error_fn)
                                         borrowed refs affected by a node's death
    leases                               lease id -> Lease (task_submitter.py): read
    worker_died(lease_id, worker_id, reason)
                                         a leased worker is gone
    lease_request_for(req_id)            REQUEST_LEASE of a request still wanted
    fail_lease_request(req_id, err)      its queued tasks fail
    resubmit(spec)                       run a task again (lineage)

and what the core worker uses of this one: the ``h_*`` handlers, fetch,
needs_fetch, free, dead, owner_dead, owner_died_error, lease_source,
raylet_of_lease, cancel_request, forget_request.
"""
from __future__ import annotations

import collections
import threading
import time

from pyray import exceptions as exc
from pyray._private import errors
from pyray._private.ownership import PENDING
from pyray._private.protocol import (CANCEL_LEASE_REQUEST, ERROR, FREE_OBJECTS, IN_STORE,
                                     LEASE_FAILED, LEASE_SPILLBACK, NODE_DEAD, OBJECT_COPY,
                                     PULL_OBJECT, REQUEST_LEASE, REQUEST_LEASE_SPILLED)
from pyray.raylet.cluster_view import lease_id_base

# a pull reports back on its own (done, failed, or stalled); this only
# bounds the wait if the local raylet itself is gone
_PULL_TIMEOUT_S = 600.0
_FETCH_ATTEMPTS = 20
_WAIT_PULLERS = 8        # threads pulling for wait(fetch_local=True) at once


def addr_suffix(node_id):
    """Core worker addresses end with this: a process learns from a ref's
    owner address which node the owner lived on."""
    return "." + node_id.hex()[:12]


class ClusterClient:
    def __init__(self, cw):
        self.cw = cw
        self.targets = {}            # lease request id -> (raylet addr, node id) it was sent to
        self.raylet_of_prefix = {}   # lease id >> 32 -> that node's raylet address
        self.dead = set()            # node ids we were told died
        self.pulls_for_wait = {}
        self.wait_pull_queue = collections.deque()   # (ref, node) for the pullers below
        self.wait_pullers = 0     # oid -> a pull wait() started: False running, True failed

    # ------------------------------------------------------------------
    # leases
    # ------------------------------------------------------------------
    def h_spillback(self, msg, frames):
        """A raylet sends a lease request on to another node (or back to
        this process's own raylet when addr is None)."""
        _, req_id, addr, node_id, mode = LEASE_SPILLBACK.parse(msg)
        cw = self.cw
        request = cw.lease_request_for(req_id)
        if request is None:
            self.targets.pop(req_id, None)
            return                      # cancelled meanwhile
        if addr is None or node_id in self.dead or node_id == cw.node_id:
            self.targets.pop(req_id, None)
            cw.out.send(cw.raylet_addr, request)
            return
        self.targets[req_id] = (addr, node_id)
        self.raylet_of_prefix[lease_id_base(node_id) >> 32] = addr
        cw.out.send(addr, REQUEST_LEASE_SPILLED.make(cw.node_id, mode,
                                                     *REQUEST_LEASE.parse(request)[1:]))

    def lease_source(self, req_id):
        """(raylet address, node id) that granted the lease asked by req_id."""
        t = self.targets.pop(req_id, None)
        return t if t is not None else (self.cw.raylet_addr, self.cw.node_id)

    def forget_request(self, req_id):
        """A lease request was answered or dropped: where it went no longer matters."""
        self.targets.pop(req_id, None)

    def raylet_of_lease(self, lease_id):
        return self.raylet_of_prefix.get(lease_id >> 32, self.cw.raylet_addr)

    def cancel_request(self, req_id):
        t = self.targets.pop(req_id, None)
        addr = t[0] if t is not None else self.cw.raylet_addr
        self.cw.out.send(addr, CANCEL_LEASE_REQUEST.make(req_id, self.cw.addr))

    def h_lease_failed(self, msg, frames):
        """No node will ever grant the request: its queued tasks fail."""
        _, req_id, message, error = LEASE_FAILED.parse(msg)
        self.targets.pop(req_id, None)
        err = exc.TaskUnschedulableError(message) if error is None else errors.decode(error)
        self.cw.fail_lease_request(req_id, err)

    # ------------------------------------------------------------------
    # objects held by other nodes
    # ------------------------------------------------------------------
    def fetch(self, ref, node):
        """The value of `ref`, held by `node`: pulled into the local store,
        then read zero-copy.  Follows the object when its node dies (it is
        made again, or the error that it is lost is raised)."""
        cw = self.cw
        for _ in range(_FETCH_ATTEMPTS):
            try:
                cw.rpc(cw.om_addr, PULL_OBJECT.op, ref._id, node, timeout=_PULL_TIMEOUT_S)
            except exc.RaySystemTimeoutError:
                raise exc.ObjectFetchTimedOutError(ref.hex(), ref._owner or "", msg=(
                    f"Fetching object {ref.hex()} from node {node.hex()} timed out "
                    f"after {_PULL_TIMEOUT_S:.0f}s.")) from None
            except exc.RayError as err:     # the pull failed: NodeDiedError, ObjectLostError, ...
                kind, payload = self._relocate(ref, node, err)
                if kind != IN_STORE:
                    return cw.materialize(ref, kind, payload)
                node = payload
                if node == cw.node_id:
                    return cw.read_store(ref, node)
                continue
            try:
                value = cw.read_store(ref, cw.node_id)
            except exc.ObjectLostError:
                continue                # our copy was evicted already: pull again
            self._tell_copy(ref)
            return value
        raise exc.ObjectLostError(ref.hex(), ref._owner or "", msg=(
            f"Object {ref.hex()} could not be fetched from node {node.hex()} after "
            f"{_FETCH_ATTEMPTS} attempts."))

    def _tell_copy(self, ref):
        """Tells the owner that this node now holds a copy: if the node
        that made the object dies, a copy elsewhere still serves it."""
        cw = self.cw
        oid = ref._id
        with cw.lock:
            e = cw.owned.get(oid)
            if e is not None:
                self.h_object_copy(OBJECT_COPY.make(oid, cw.node_id), ())
                return
        if ref._owner is not None and ref._owner != cw.addr:
            cw.out.send(ref._owner, OBJECT_COPY.make(oid, cw.node_id))

    def h_object_copy(self, msg, frames):
        _, oid, node_id = OBJECT_COPY.parse(msg)
        e = self.cw.owned.get(oid)
        if e is not None and e.kind == IN_STORE and node_id != e.payload and \
                node_id not in self.dead:
            if e.copies is None:
                e.copies = set()
            e.copies.add(node_id)

    def _relocate(self, ref, node, why):
        """Where the object is now, after a pull from `node` failed with the
        error `why` (from the object manager)."""
        cw = self.cw
        detail = str(why)
        if isinstance(why, exc.ObjectStoreFullError):
            raise exc.ObjectStoreFullError(
                f"Object {ref.hex()} does not fit in this node's store: {detail}")
        node_gone = isinstance(why, exc.NodeDiedError)
        limit = cw.config.heartbeat_interval_s * cw.config.num_heartbeats_timeout
        deadline = time.monotonic() + 3 * limit + 10.0
        oid = ref._id
        with cw.lock:
            e = cw.owned.get(oid)
            if e is not None:
                # ours: the node's death makes it again (or marks it lost)
                while e.kind == IN_STORE and e.payload == node and node not in self.dead:
                    if not node_gone or time.monotonic() > deadline:
                        raise exc.ObjectLostError(ref.hex(), cw.addr, msg=(
                            f"Object {ref.hex()} is lost: {detail}."))
                    cw.cv.wait(0.2)
                    e = cw.owned.get(oid)
                    if e is None:
                        break
            while True:
                if e is None:           # borrowed: ask its owner again
                    cw.forget_value(oid)
                loc = cw.locate(ref)
                while loc is None:
                    if time.monotonic() > deadline:
                        raise exc.ObjectLostError(ref.hex(), ref._owner or "", msg=(
                            f"Object {ref.hex()} is lost: {detail}; its owner did not say "
                            "where it is now."))
                    cw.cv.wait(0.2)
                    loc = cw.locate(ref)
                if e is None and loc == (IN_STORE, node) and node not in self.dead:
                    # the owner has not heard of the death yet
                    if not node_gone or time.monotonic() > deadline:
                        raise exc.ObjectLostError(ref.hex(), ref._owner or "", msg=(
                            f"Object {ref.hex()} is lost: {detail}."))
                    cw.cv.wait(0.05)
                    continue
                return loc

    def needs_fetch(self, ref):
        """True if reading ref now means pulling it from another node."""
        cw = self.cw
        with cw.lock:
            loc = cw.locate(ref)
        if loc is None or loc[0] != IN_STORE or loc[1] == cw.node_id or cw.plasma is None:
            return False
        try:
            return not cw.plasma.contains(ref._id)
        except Exception:  # noqa: BLE001 - let the pull decide
            return True

    def is_local(self, ref, node):
        """wait(fetch_local=True): whether `ref`, held by `node`, is in this
        node's store yet; if not, one pull of it runs in the background and
        wakes the waiters when it ends.  A pull that failed counts as done
        once (get() then says why).  Lock held."""
        cw = self.cw
        if node is None or node == cw.node_id or cw.plasma is None or cw.om_addr is None:
            return True
        oid = ref._id
        done = self.pulls_for_wait.get(oid)
        if done:
            del self.pulls_for_wait[oid]
            return True
        if done is None:
            try:
                if cw.plasma.contains(oid):
                    return True
            except Exception:  # noqa: BLE001 - get() will find out
                return True
            self.pulls_for_wait[oid] = False
            self.wait_pull_queue.append((ref, node))
            if self.wait_pullers < _WAIT_PULLERS:
                self.wait_pullers += 1
                threading.Thread(target=self._wait_puller, name="pyray-wait-pull",
                                 daemon=True).start()
        return False

    def _wait_puller(self):
        """Runs the pulls wait() asked for, a few at a time."""
        cw = self.cw
        while True:
            with cw.lock:
                if not self.wait_pull_queue:
                    self.wait_pullers -= 1
                    return
                ref, node = self.wait_pull_queue.popleft()
            self._pull_for_wait(ref, node)

    def _pull_for_wait(self, ref, node):
        cw = self.cw
        try:
            cw.rpc(cw.om_addr, PULL_OBJECT.op, ref._id, node, timeout=_PULL_TIMEOUT_S)
            ok = True
        except Exception:  # noqa: BLE001 - moved, lost, too large: get() sorts it out
            ok = False
        with cw.lock:
            if ok:
                self.pulls_for_wait.pop(ref._id, None)   # the store says it is here now
            else:
                self.pulls_for_wait[ref._id] = True
            cw.cv.notify_all()
        if ok:
            self._tell_copy(ref)

    def free(self, node_id, oid):
        """Frees the primary copy of an object another node holds."""
        cw = self.cw
        if cw.om_addr is not None:
            cw.out.send(cw.om_addr, FREE_OBJECTS.make(node_id, [oid]))

    # ------------------------------------------------------------------
    # node death
    # ------------------------------------------------------------------
    def owner_dead(self, owner):
        return owner is not None and any(owner.endswith(addr_suffix(n)) for n in self.dead)

    def owner_died_error(self, oid, owner):
        return (ERROR, errors.encode(exc.OwnerDiedError(oid.hex(), owner, msg=(
            f"Object {oid.hex()} is lost: its owner ({owner}) lived on a node that died."))))

    def h_node_dead(self, msg, frames):
        node_id = NODE_DEAD.parse(msg).node_id
        cw = self.cw
        if node_id in self.dead or node_id == cw.node_id:
            return
        self.dead.add(node_id)
        why = f"its node {node_id.hex()} died"
        # tasks that ran there retry elsewhere (max_retries)
        for lease in [l for l in cw.leases.values() if l.node_id == node_id]:
            cw.worker_died(lease.lease_id, lease.worker_id, why)
        # lease requests waiting there are asked at home again
        for req_id, (_addr, nid) in list(self.targets.items()):
            if nid != node_id:
                continue
            del self.targets[req_id]
            request = cw.lease_request_for(req_id)
            if request is not None:
                cw.out.send(cw.raylet_addr, request)
        self._recover_owned(node_id)
        # borrowed objects: owners that died, values that lived there
        cw.borrowed_node_died(node_id, addr_suffix(node_id), self.owner_died_error)
        cw.cv.notify_all()

    def _recover_owned(self, node_id):
        """Objects we own whose only copy was on the dead node: their tasks
        run again (lineage), or they become errors."""
        import plasma

        cw = self.cw
        rerun = {}
        for oid, e in list(cw.owned.items()):
            if e.kind != IN_STORE or e.payload != node_id:
                continue
            spec = e.spec
            if spec is not None and spec.actor is None and not spec.cancelled and \
                    spec.retries_left != 0:
                e.state, e.kind, e.payload = PENDING, None, None
                rerun[spec.task_id] = spec
                continue
            try:
                local = cw.plasma is not None and cw.plasma.contains(oid)
            except plasma.PlasmaError:
                local = False
            if local:
                e.payload = cw.node_id      # we pulled a copy before: it is the one now
                continue
            copies = [n for n in (e.copies or ()) if n not in self.dead]
            if copies:
                # another node pulled a copy: it serves the object now (if
                # the store evicted it meanwhile, the pull says it is lost)
                e.payload = copies[0]
                e.copies.discard(copies[0])
                continue
            if spec is not None and spec.retries_left == 0:
                err = exc.ObjectReconstructionFailedMaxAttemptsExceededError(
                    oid.hex(), cw.addr, msg=(
                        f"Object {oid.hex()} is lost: node {node_id.hex()} that held it died, "
                        f"and the task that made it ({spec.name}) has no retries left "
                        "(max_retries)."))
            else:
                err = exc.ObjectLostError(oid.hex(), cw.addr, msg=(
                    f"Object {oid.hex()} is lost: node {node_id.hex()} that held its only "
                    "copy died, and it cannot be made again (objects from put() and actor "
                    "calls have no lineage)."))
            cw.set_ready(oid, ERROR, errors.encode(err))
        for spec in rerun.values():
            if spec.retries_left > 0:
                spec.retries_left -= 1
            if len(spec.key) == 3:
                spec.key = spec.key[:2]     # its arguments' node may be the dead one
            spec.lease = None
            cw.resubmit(spec)
