"""Ownership and reference counting: the objects this process owns and the
refs it borrows.

Each object has one owner, the process that created the ref (by put or by
submitting the task).  The owner counts local ObjectRef instances (their
drops queue up in ``decref_q`` and are applied under the lock), borrowers
(other processes that keep a ref after a task ends) and containing objects;
at zero it frees the value everywhere (its memory, the store, the copy on
another node).  Borrowed refs: asked of their owner once (GET_OBJECT ->
OBJECT_VALUE), reported to it as borrowed when a task ends with them alive
(ADD_BORROWER), released when dropped (REMOVE_BORROWER).

``Ownership`` is one part of CoreWorker (core_worker.py); its methods run
with the core worker's lock held unless they take it themselves.
"""
from __future__ import annotations

import collections
import logging
import os

from pyray import exceptions as exc
from pyray._private import errors, ids, serialization, task_events
from pyray._private.object_ref import ObjectRef
from pyray._private.protocol import (ADD_BORROWER, ERROR, GET_OBJECT, IN_STORE, OBJECT_VALUE,
                                     RELEASE_CONTAINED, REMOVE_BORROWER, VALUE)

log = logging.getLogger("pyray.core_worker")

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



class Ownership:
    """Owned objects (``owned``: oid -> Owned) and borrowed refs
    (``foreign``: oid -> owner address, ``foreign_values`` once fetched)."""

    def _init_ownership(self):
        self.local_refs = {}         # oid -> live ObjectRef instances in this process
        self.decref_q = collections.deque()   # oids of dropped refs, applied under the lock
        self.owned = {}              # oid -> Owned
        self.foreign = {}            # borrowed oid -> owner address
        self.foreign_values = {}     # borrowed oid -> (kind, payload) once fetched
        self.requested = set()       # borrowed oids asked of their owners
        self.foreign_callbacks = {}
        self.new_foreign = set()     # borrowed refs first seen since the last task ended
        self.registered_borrows = set()
        self.escaped = {}            # return oid -> refs nested in it, pinned for its owner

    def add_local_ref(self, oid, owner):
        with self.lock:
            n = self.local_refs.get(oid, 0)
            self.local_refs[oid] = n + 1
            if n == 0 and owner is not None and owner != self.addr:
                self.foreign[oid] = owner
                if oid not in self.registered_borrows:
                    self.new_foreign.add(oid)

    def drain_decrefs(self):
        q = self.decref_q
        local = self.local_refs
        while q:
            oid = q.popleft()
            if type(oid) is tuple:          # an actor handle was dropped
                if len(oid) == 2:           # (None, task id): a generator (generators.py)
                    self._generator_dropped(oid[1])
                    continue
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
            self.out.send(e.contained_at, RELEASE_CONTAINED.make([oid]))
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
                self.out.send(owner, REMOVE_BORROWER.make([oid], self.addr))

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
                self.out.send(owner, ADD_BORROWER.make(oids, self.addr))


    def own_returns(self, spec):
        """Registers a submitted task: this process owns its return values
        (pending until the task replies).  Lock held."""
        if self.decref_q:
            self.drain_decrefs()
        for oid in spec.return_ids:
            e = Owned()
            e.spec = spec
            self.owned[oid] = e
        self.tasks_by_id[spec.task_id] = spec

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
            kind, payload = ERROR, errors.encode(error)
        else:
            kind, payload = VALUE, serialization.inline_payload(serialization.serialize(value))
        with self.lock:
            e = self.owned.get(oid)
            if e is not None and e.state == PENDING:
                self.set_ready(oid, kind, payload)
                self.cv.notify_all()

    def set_ready(self, oid, kind, payload, contained_at=None):
        e = self.owned.get(oid)
        if e is None:
            # every ref to it was dropped while the task ran
            if kind == IN_STORE and self.plasma is not None:
                self._store_delete(oid)
                if payload != self.node_id:
                    self.cluster.free(payload, oid)
            if contained_at is not None:
                self.out.send(contained_at, RELEASE_CONTAINED.make([oid]))
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
                self.out.send(addr, OBJECT_VALUE.make(oid, kind, payload))
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
        if spec.stream is not None:
            self._generator_failed(spec, payload)
        for oid in spec.return_ids:
            self.set_ready(oid, ERROR, payload)

    def fail_task(self, spec, error):
        task_events.failed(spec.task_id, error, spec.name, spec.actor)
        self._finish_error(spec, errors.encode(error))

    def _h_get_object(self, msg, frames):
        _, oid, reply_to = GET_OBJECT.parse(msg)
        e = self.owned.get(oid)
        if e is None:
            err = exc.ObjectLostError(oid.hex(), self.addr, msg=(
                f"Object {oid.hex()} was already freed by its owner (pid {os.getpid()}); "
                "keep a reference to it while it is needed."))
            self.out.send(reply_to, OBJECT_VALUE.make(oid, ERROR,
                                                      errors.encode(err)))
        elif e.state == READY:
            self.out.send(reply_to, OBJECT_VALUE.make(oid, e.kind, e.payload))
        else:
            e.waiters = (e.waiters or []) + [reply_to]

    def _h_object_value(self, msg, frames):
        _, oid, kind, payload = OBJECT_VALUE.parse(msg)
        if oid not in self.requested:
            return
        self.foreign_values[oid] = (kind, payload)
        cbs = self.foreign_callbacks.pop(oid, None)
        if cbs:
            self._pending_callbacks.extend(cbs)
        self.cv.notify_all()

    def _h_add_borrower(self, msg, frames):
        _, oids, addr = ADD_BORROWER.parse(msg)
        for oid in oids:
            e = self.owned.get(oid)
            if e is not None:
                if e.borrowers is None:
                    e.borrowers = set()
                e.borrowers.add(addr)

    def _h_remove_borrower(self, msg, frames):
        _, oids, addr = REMOVE_BORROWER.parse(msg)
        for oid in oids:
            e = self.owned.get(oid)
            if e is not None and e.borrowers:
                e.borrowers.discard(addr)
                if not e.borrowers and oid not in self.local_refs and oid not in self.escaped:
                    self._free(oid, e)

    def _h_release_contained(self, msg, frames):
        for oid in RELEASE_CONTAINED.parse(msg).oids:
            self.escaped.pop(oid, None)   # drops the pinned refs

    def pin_nested(self, oid, refs):
        """Keeps the refs nested in a returned value alive until the
        value's owner releases it (RELEASE_CONTAINED)."""
        with self.lock:
            self.escaped[oid] = refs

    def forget_value(self, oid):
        """Forgets what a borrowed object's owner said about it, so that
        the next locate() asks it again."""
        self.foreign_values.pop(oid, None)
        self.requested.discard(oid)

    def borrowed_node_died(self, node_id, owner_suffix, owner_died_error):
        """A node died: borrowed refs whose owner lived there become errors
        (owner_died_error(oid, owner)); values read as held there are
        asked of their owners again."""
        for oid, owner in list(self.foreign.items()):
            v = self.foreign_values.get(oid)
            if owner is not None and owner.endswith(owner_suffix) and \
                    (v is None or v[0] == IN_STORE):
                self.foreign_values[oid] = owner_died_error(oid, owner)
                self.requested.add(oid)
                cbs = self.foreign_callbacks.pop(oid, None)
                if cbs:
                    self._pending_callbacks.extend(cbs)
            elif v is not None and v[0] == IN_STORE and v[1] == node_id:
                del self.foreign_values[oid]
                self.requested.discard(oid)
