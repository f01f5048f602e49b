"""The client side of placement groups: the PlacementGroup handle, the
requests to the GCS, this process's view of the groups it waits for, and
placing tasks and actors in a group's bundles.

The public functions (``placement_group``, ``remove_placement_group``, ...)
are in pyray.util.placement_group, which checks their arguments and calls
this module.  The GCS keeps the table and picks the nodes
(pyray.gcs.placement_groups); raylets turn reserved bundles into group
resources (``CPU_group_<id>``...) that placed work asks for instead of
``CPU`` (pyray._private.resources).  See docs/placement_groups.md.
"""
from __future__ import annotations

import sys
import threading
import time

from pyray._private.protocol import PG_CREATE, PG_REMOVE, PG_STATE, PG_SUBSCRIBE, Op
from pyray.exceptions import TaskPlacementGroupRemoved
from pyray._private.resources import (CREATED, PENDING, REMOVED, RESCHEDULING, PgShape,
                                      fits, group_shape)


class PlacementGroupID(bytes):
    """The id of a placement group (bytes, with Ray's accessors)."""

    def binary(self):
        return bytes(self)

    def is_nil(self):
        return not self

    def __repr__(self):
        return f"PlacementGroupID({self.hex()})"

    def __reduce__(self):
        return PlacementGroupID, (bytes(self),)


class PlacementGroup:
    """A handle to a placement group."""

    def __init__(self, id, bundle_cache=None):
        self.id = id if isinstance(id, PlacementGroupID) else PlacementGroupID(id)
        self.bundle_cache = bundle_cache

    @staticmethod
    def empty():
        return PlacementGroup(PlacementGroupID(b""))

    @property
    def is_empty(self):
        return not self.id

    def ready(self):
        """An ObjectRef that resolves to this group once all its bundles are
        reserved (an error if the group is removed first)."""
        return _client().ready(self)

    def wait(self, timeout_seconds=30):
        """Waits until the group is created; False on timeout or removal."""
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) \
                or timeout_seconds < 0:
            raise ValueError(f"timeout_seconds must be a number >= 0, got {timeout_seconds!r}")
        return _client().wait(self, timeout_seconds)

    @property
    def bundle_specs(self):
        """The bundles, as a list of resource dicts."""
        if self.bundle_cache is None:
            row = table(bytes(self.id))
            if not row:
                raise ValueError(f"The placement group {self.id.hex()} is not known to the "
                                 "cluster.")
            self.bundle_cache = [row["bundles"][i] for i in sorted(row["bundles"])]
        return self.bundle_cache

    @property
    def bundle_count(self):
        return len(self.bundle_specs)

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"PlacementGroup({self.id.hex()})"

    def __reduce__(self):
        return PlacementGroup, (bytes(self.id), self.bundle_cache)


# ---------------------------------------------------------------------------
# the GCS requests behind the public functions (pyray.util.placement_group
# checks the arguments, then calls these)
# ---------------------------------------------------------------------------
def create(bundles, strategy, name, detached, bundle_label_selector=None):
    """Asks the GCS to reserve ``bundles`` (already checked); returns the
    group at once, tracked by this process so that ``ready()`` resolves.
    bundle_label_selector: None or one label selector (a dict) per bundle."""
    selectors = None
    if bundle_label_selector is not None:
        from pyray._private.scheduling_strategies import parse_label_selector
        if not isinstance(bundle_label_selector, list) or \
                len(bundle_label_selector) != len(bundles):
            raise ValueError("bundle_label_selector must be a list with one label selector "
                             f"(a dict) per bundle ({len(bundles)}), got "
                             f"{bundle_label_selector!r}")
        selectors = [parse_label_selector(sel or {}) for sel in bundle_label_selector]
    client = _client()
    cw = client.cw
    from pyray._private import ids
    from pyray._private.context import ctx
    pg = PlacementGroup(PlacementGroupID(ids.new_task_id()), bundles)
    spec = {"pg_id": bytes(pg.id), "bundles": bundles, "strategy": strategy, "name": name,
            "namespace": ctx.namespace, "detached": detached,
            "job_id": cw.job_id, "creator": cw.addr}
    if selectors:
        spec["selectors"] = selectors       # bundle_label_selector, parsed
    client.track(pg.id)
    if name:
        # a name can be taken: wait for the answer
        try:
            cw.rpc(cw.gcs_addr, Op.PG_CREATE, spec)
        except BaseException:
            client.forget(pg.id)
            raise
    else:
        # a fresh id cannot collide: the answer is not awaited
        cw.out.send(cw.gcs_addr, PG_CREATE.make(0, cw.addr, spec))
    return pg


def remove(pg):
    """Asks the GCS to remove the group; its ``ready()`` refs here fail."""
    client = _client()
    cw = client.cw
    cw.out.send(cw.gcs_addr, PG_REMOVE.make(bytes(pg.id), cw.addr))
    client.removed_here(pg.id)


def named(name):
    """The live group called ``name`` in the current namespace, or None."""
    from pyray._private.context import ctx
    cw = _client().cw
    found = cw.rpc(cw.gcs_addr, Op.PG_GET_NAMED, name, ctx.namespace)
    if found is None:
        return None
    return PlacementGroup(found["pg_id"], found["bundles"])


def table(pg_id=None):
    """The GCS's record of the group ``pg_id`` (``{}`` if unknown), or of
    all groups keyed by hex id when ``pg_id`` is None."""
    cw = _client().cw
    return cw.rpc(cw.gcs_addr, Op.PG_TABLE, pg_id)


def current():
    """The group the calling task or actor runs in, else None (always None
    in a driver)."""
    from pyray._private.context import ctx
    cw = ctx.core_worker
    if cw is None:
        return None
    found = current_placement(cw)
    return PlacementGroup(found[0]) if found is not None else None


# ---------------------------------------------------------------------------
# placing tasks and actors (called once per options object, not per call)
# ---------------------------------------------------------------------------
def placement_of(options):
    """``(PlacementGroup, bundle index, capture)`` the options ask for, or
    None.  Accepts Ray's PlacementGroupSchedulingStrategy and the older
    ``placement_group=`` / ``placement_group_bundle_index=`` options."""
    from pyray._private.scheduling_strategies import PlacementGroupSchedulingStrategy
    sched = options.get("scheduling_strategy")
    legacy = options.get("placement_group", "default")
    if legacy not in ("default", None) and sched is not None:
        raise ValueError(LEGACY_CONFLICT)
    if isinstance(sched, PlacementGroupSchedulingStrategy):
        pg = sched.placement_group
        index = sched.placement_group_bundle_index
        capture = sched.placement_group_capture_child_tasks
    elif legacy not in ("default", None):
        pg = legacy
        index = options.get("placement_group_bundle_index", -1)
        capture = options.get("placement_group_capture_child_tasks")
    else:
        return None
    if pg is None or (isinstance(pg, PlacementGroup) and pg.is_empty):
        if index not in (-1, None):
            raise ValueError("If placement group is not set, the value of bundle index must "
                             "be -1.")
        return None
    if not isinstance(pg, PlacementGroup):
        raise ValueError(f"placement_group must be a PlacementGroup, got {pg!r}")
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"placement_group_bundle_index must be an integer, got {index!r}")
    return pg, index, bool(capture)


LEGACY_CONFLICT = ("Placement groups should be specified via the scheduling_strategy option. "
                   "The placement_group option is deprecated.")

# the older options, each with the value that means "not given"
_LEGACY_OPTIONS = (("placement_group", "default"), ("placement_group_bundle_index", -1),
                   ("placement_group_capture_child_tasks", None))


def warn_legacy_options(options, stacklevel):
    """Ray's DeprecationWarning for each of the older placement_group*
    options given without a PlacementGroupSchedulingStrategy (called when
    options are set, not per call)."""
    from pyray._private.scheduling_strategies import PlacementGroupSchedulingStrategy
    if isinstance(options.get("scheduling_strategy"), PlacementGroupSchedulingStrategy):
        return
    import warnings
    import pyray
    version = pyray.__version__
    docs = "master" if "dev" in version else f"releases-{version}"
    for name, unset in _LEGACY_OPTIONS:
        value = options.get(name, unset)
        if (bool(value) if unset is None else value is not unset and value != unset):
            warnings.warn(f"{name} parameter is deprecated. Use scheduling_strategy="
                          "PlacementGroupSchedulingStrategy(...) instead, see the usage at "
                          f"https://docs.ray.io/en/{docs}/ray-core/package-ref.html#ray-remote.",
                          DeprecationWarning, stacklevel=stacklevel + 1)


def inherits_placement(options):
    """True if work with these options joins its parent's group when the
    parent captures child tasks (no strategy of its own)."""
    sched = options.get("scheduling_strategy")
    return (sched is None or sched == "DEFAULT") and \
        options.get("placement_group", "default") == "default"


def place(pg, index, capture, shape, what):
    """The shape of work placed in bundle ``index`` of ``pg``: a PgShape
    holding ``shape`` whose ``lease`` asks for the group's resources.
    Raises ValueError (at the call site) for a bad index or a shape that
    fits no bundle."""
    bundles = pg.bundle_cache
    if bundles is None:
        from pyray._private.context import ctx
        if ctx.core_worker is not None:
            bundles = pg.bundle_specs        # one request to the GCS
    if bundles is not None:
        if not -1 <= index < len(bundles):
            raise ValueError(f"placement group bundle index {index} is invalid. Valid "
                             f"placement group indexes: -1 (any) and 0-{len(bundles) - 1}")
        candidates = bundles if index < 0 else [bundles[index]]
        if not any(fits(b, shape) for b in candidates):
            where = "any bundle" if index < 0 else f"bundle {index}"
            raise ValueError(f"Cannot schedule {what} with the placement group because the "
                             f"resource request {shape} cannot fit into {where} of the "
                             f"placement group, {bundles}.")
    elif index < -1:
        raise ValueError(f"placement group bundle index {index} is invalid")
    out = PgShape(shape)
    out.pg = (bytes(pg.id), index, capture)
    out.lease = group_shape(shape, pg.id.hex(), index)
    return out


def place_actor(options, shape, cw, what):
    """``(lease shape, (pg id, index, capture) or None)`` for an actor.  An
    actor's creation asks the GCS for a lease with its shape, so the shape
    itself is the group shape (a PgShape that carries the placement)."""
    found = placement_of(options)
    if found is None and cw.pg_capture and inherits_placement(options):
        found = captured_placement(cw)
    if found is None:
        return shape, None
    placed = place(*found, shape, what)
    lease = PgShape(placed.lease)
    lease.pg = placed.pg
    lease.lease = None
    return lease, placed.pg


def current_placement(cw):
    """``(pg id, bundle index, capture)`` of the task or actor running in
    this process, or None."""
    task = cw.current_task
    if task is None:
        return None
    shape = task.shape
    if type(shape) is PgShape:
        return shape.pg
    if shape is not None:
        return None
    # an actor's method: ask the GCS once what the actor was placed in
    from pyray._private.context import ctx
    worker = getattr(ctx, "worker", None)
    actor = getattr(worker, "actor", None)
    if actor is None:
        return None
    cache = _actor_placements
    if actor.actor_id not in cache:
        cache[actor.actor_id] = cw.rpc(cw.gcs_addr, Op.PG_OF_ACTOR, actor.actor_id)
    return cache[actor.actor_id]


_actor_placements = {}


def captured_placement(cw):
    """The group children of the running work join (``placement_group_
    capture_child_tasks``), as ``(PlacementGroup, -1, True)``, or None."""
    found = current_placement(cw)
    if found is None or not found[2]:
        return None
    return PlacementGroup(found[0]), -1, True


# ---------------------------------------------------------------------------
# this process's view of groups: readiness, waiting, warnings
# ---------------------------------------------------------------------------
class _Tracked:
    __slots__ = ("state", "futures", "warned")

    def __init__(self):
        self.state = PENDING
        self.futures = []
        self.warned = False


class PlacementGroupClient:
    """Tracks the groups this process created or waits for.  The GCS sends
    their state changes (PG_STATE) to this process's inbox; the I/O thread
    resolves ``ready()`` refs and wakes ``wait()``."""

    def __init__(self, cw):
        self.cw = cw
        self.groups = {}              # pg id (bytes) -> _Tracked
        cw.extra_handlers[Op.PG_STATE] = self._h_state

    def track(self, pg_id):
        """A group this process creates: the GCS tells it the state."""
        with self.cw.lock:
            self.groups[bytes(pg_id)] = _Tracked()

    def forget(self, pg_id):
        with self.cw.lock:
            self.groups.pop(bytes(pg_id), None)

    def _tracked(self, pg_id):
        """Lock held."""
        t = self.groups.get(pg_id)
        if t is None:
            t = self.groups[pg_id] = _Tracked()
            cw = self.cw
            cw.out.send(cw.gcs_addr, PG_SUBSCRIBE.make(pg_id, cw.addr))
        return t

    def ready(self, pg):
        cw = self.cw
        pg_id = bytes(pg.id)
        if not pg_id:
            return cw.put(pg)
        with cw.lock:
            t = self._tracked(pg_id)
            state = t.state
            if state == PENDING:
                ref = cw.new_future()
                t.futures.append((ref._id, pg))
                return ref
        if state == CREATED:
            return cw.put(pg)
        fut = cw.new_future()
        cw.resolve_future(fut._id, error=_removed_error(pg_id))
        return fut

    def wait(self, pg, timeout):
        cw = self.cw
        pg_id = bytes(pg.id)
        if not pg_id:
            return True
        t = self.groups.get(pg_id)
        if t is not None and t.state == CREATED:
            return True
        deadline = time.monotonic() + timeout
        with cw.lock:
            t = self._tracked(pg_id)
            while t.state == PENDING:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                cw.cv.wait(min(left, 1.0))
            return t.state == CREATED

    def removed_here(self, pg_id):
        with self.cw.lock:
            t = self.groups.pop(bytes(pg_id), None)
            if t is not None:
                self._settle(bytes(pg_id), t, REMOVED)

    def _settle(self, pg_id, t, state):
        """Lock held."""
        t.state = state
        futures, t.futures = t.futures, []
        for oid, pg in futures:
            if state == CREATED:
                self.cw.resolve_future(oid, value=pg)
            else:
                self.cw.resolve_future(oid, error=_removed_error(pg_id))
        self.cw.cv.notify_all()

    def _h_state(self, msg, frames):
        """I/O thread, lock held."""
        _, pg_id, state, message = PG_STATE.parse(msg)
        t = self.groups.get(pg_id)
        if t is None:
            return
        if state == PENDING:
            if message and not t.warned:
                t.warned = True
                print(f"(pyray) Warning: {message}", file=sys.stderr, flush=True)
            return
        if state == RESCHEDULING:
            # bundles lost with a node are placed again: a group that was
            # ready stays so (as in Ray); a new waiter waits for CREATED
            return
        if state == REMOVED:
            del self.groups[pg_id]
        self._settle(pg_id, t, state)


def _removed_error(pg_id):
    return TaskPlacementGroupRemoved(f"The placement group {pg_id.hex()} was removed before "
                                     "it was ready.")


_client_lock = threading.Lock()


def _client():
    from pyray._private.context import ctx
    from pyray._private.remote_function import ensure_initialized
    cw = ctx.core_worker or ensure_initialized()
    client = getattr(cw, "pg_client", None)
    if client is None:
        with _client_lock:
            client = getattr(cw, "pg_client", None)
            if client is None:
                client = cw.pg_client = PlacementGroupClient(cw)
    return client
