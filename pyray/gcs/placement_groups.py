"""Placement groups in the GCS: the table, where each bundle goes, and the
reservation of bundles on raylets.

``place_bundles`` is the policy (a pure function over the nodes' free
resources); ``PlacementGroupManager`` carries it out: it asks each chosen
raylet to reserve its bundles (one request per node; a group spread over
several nodes is prepared everywhere first and committed after), rolls back
when a node refuses, and tells subscribers (the creator, processes waiting in
``ready()``) when a group is created or removed.

States: PENDING -> CREATED -> REMOVED (PENDING -> REMOVED if removed first).
A created group that loses bundles with a dead node goes to RESCHEDULING:
those bundles are placed again on other nodes (the others stay where they
are), and it is CREATED again once they are reserved.
"""
from __future__ import annotations

import collections
import itertools
import logging
import time

import zmq

from pyray._private import errors
from pyray._private.protocol import (PG_REMOVE, PG_RESERVE, PG_RETURN, PG_STATE, PG_SUBSCRIBE,
                                     RESPONSE)
from pyray._private.resources import (CREATED, EPS, PENDING, REMOVED, RESCHEDULING,
                                      bundle_resources, fits, pg_of_shape, take,
                                      validate_shape)

log = logging.getLogger("pyray.gcs.placement_groups")

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")

# a group pending this long (with enough resources in the cluster, only not
# free now) is reported to its creator
PENDING_WARN_AFTER_S = 1.0
# removed groups stay visible in placement_group_table() (the latest ones)
KEEP_REMOVED = 1000
# a reservation a raylet has not answered in this long counts as refused
RESERVE_TIMEOUT_S = 30.0
# a subscription to a group the GCS has not heard of yet (its creation may
# still be on the way) is answered REMOVED after this long
UNKNOWN_GROUP_WAIT_S = 10.0

# ---------------------------------------------------------------------------
# policy
# ---------------------------------------------------------------------------
def _sum(bundles):
    total = {}
    for b in bundles:
        for k, v in b.items():
            if v > 0:
                total[k] = total.get(k, 0.0) + v
    return total


def _roominess(free, bundle):
    """How much of what the bundle asks for is free (for tie-breaks)."""
    return sum(free.get(k, 0.0) for k, v in bundle.items() if v > 0)


def place_bundles(nodes, bundles, strategy, allowed=None):
    """Chooses a node for each bundle.

    nodes: ``{node_id: {resource: free amount}}``, in order of preference;
    bundles: a list of ``{resource: amount}``; strategy: one of STRATEGIES;
    allowed: None, or for each bundle the set of nodes it may go to (None:
    any; bundle_label_selector).  Returns a list with the node of each
    bundle, or None when the bundles cannot all be placed on these nodes now.
    """
    if not bundles:
        return []
    free = {n: dict(a) for n, a in nodes.items()}
    ok = _allowed_check(allowed)
    if strategy == "STRICT_SPREAD":
        return _distinct_nodes(free, bundles, ok)
    if strategy in ("STRICT_PACK", "PACK"):
        total = _sum(bundles)
        for n, a in free.items():
            if fits(a, total) and all(ok(i, n) for i in range(len(bundles))):
                return [n] * len(bundles)
        if strategy == "STRICT_PACK":
            return None
    return _greedy(free, bundles, pack=strategy == "PACK", ok=ok)


def _allowed_check(allowed):
    """ok(bundle index, node): whether the bundle may go to the node."""
    if not allowed:
        return lambda i, n: True
    return lambda i, n: allowed[i] is None or n in allowed[i]


def bundle_nodes_allowed(selectors, node_labels):
    """For each bundle, the nodes whose labels match its selector (None: a
    bundle without one); None when no bundle has a selector.
    selectors: per bundle, a tuple of label requirements (or empty);
    node_labels: {node id: {label: value}}."""
    if not selectors or not any(selectors):
        return None
    from pyray._private.scheduling_strategies import labels_match
    return [None if not sel else {n for n, lab in node_labels.items() if labels_match(lab, sel)}
            for sel in selectors]


def _greedy(free, bundles, pack, ok=None):
    """Largest bundles first.  PACK prefers the nodes already used (most
    bundles first); SPREAD prefers the nodes used least.  Ties go to the
    node with the most room, then to node order."""
    order = sorted(range(len(bundles)), key=lambda i: -sum(bundles[i].values()))
    used = dict.fromkeys(free, 0)
    rank = {n: i for i, n in enumerate(free)}
    out = [None] * len(bundles)
    for i in order:
        b = bundles[i]
        fitting = [n for n, a in free.items() if fits(a, b) and (ok is None or ok(i, n))]
        if not fitting:
            return None
        sign = -1 if pack else 1
        best = min(fitting, key=lambda n: (sign * used[n], -_roominess(free[n], b), rank[n]))
        take(free[best], b)
        used[best] += 1
        out[i] = best
    return out


def _distinct_nodes(free, bundles, ok):
    """One node per bundle (a bipartite matching: Kuhn's augmenting paths)."""
    if len(bundles) > len(free):
        return None
    options = [[n for n, a in free.items() if fits(a, b) and ok(i, n)]
               for i, b in enumerate(bundles)]
    holder = {}                      # node -> bundle index

    def assign(i, seen):
        for n in options[i]:
            if n in seen:
                continue
            seen.add(n)
            j = holder.get(n)
            if j is None or assign(j, seen):
                holder[n] = i
                return True
        return False

    for i in sorted(range(len(bundles)), key=lambda i: len(options[i])):
        if not assign(i, set()):
            return None
    out = [None] * len(bundles)
    for n, i in holder.items():
        out[i] = n
    return out


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------
class Reservation:
    """Bundles of one group asked of one raylet, not answered yet."""
    __slots__ = ("pg_id", "node_id", "indices", "bundles", "commit", "sent")

    def __init__(self, pg_id, node_id, indices, bundles, commit, sent):
        self.pg_id = pg_id
        self.node_id = node_id
        self.indices = indices
        self.bundles = bundles
        self.commit = commit
        self.sent = sent


class GroupEntry:
    def __init__(self, spec):
        self.pg_id = spec["pg_id"]
        self.hex = self.pg_id.hex()
        self.name = spec.get("name") or ""
        self.namespace = spec.get("namespace")
        self.bundles = [{k: float(v) for k, v in b.items()} for b in spec["bundles"]]
        self.strategy = spec["strategy"]
        # bundle_label_selector: per bundle, label requirements (or ())
        self.selectors = [tuple(tuple(r[:2]) + (tuple(r[2]),) for r in sel)
                          for sel in (spec.get("selectors") or ())]
        self.detached = bool(spec.get("detached"))
        self.job_id = spec.get("job_id")
        self.state = PENDING
        self.nodes = [None] * len(self.bundles)   # node id of each reserved bundle
        self.subscribers = set()
        self.waiting = {}        # node id -> request id, reservations not answered yet
        self.prepared = {}       # node id -> [bundle index], reserved there
        self.trying = {}         # the same, for the placement on the way
        self.lost = None         # bundle indices to place again (RESCHEDULING)
        self.refused = None      # why a node refused this attempt
        self.attempts = 0
        self.since = time.monotonic()
        self.created_ms = None
        self.warned = False
        self.had_actors = False
        self.seq = 0                 # creation order

    def stored(self):
        """What pyray.gcs.storage keeps of the group."""
        return {"spec": {"pg_id": self.pg_id, "name": self.name, "namespace": self.namespace,
                         "bundles": self.bundles, "strategy": self.strategy,
                         "detached": self.detached, "job_id": self.job_id,
                         "selectors": self.selectors},
                "state": self.state, "nodes": self.nodes, "subscribers": sorted(self.subscribers),
                "created_ms": self.created_ms, "had_actors": self.had_actors, "seq": self.seq}

    def row(self):
        return {
            "placement_group_id": self.hex,
            "name": self.name,
            "namespace": self.namespace,
            "creator_job_id": self.job_id.hex() if isinstance(self.job_id, bytes) else self.job_id,
            "is_detached": bool(self.detached),
            "bundles": {i: dict(b) for i, b in enumerate(self.bundles)},
            "bundles_to_node_id": {i: (n.hex() if n is not None else "")
                                   for i, n in enumerate(self.nodes)},
            "strategy": self.strategy,
            "state": self.state,
            "stats": {
                "end_to_end_creation_latency_ms": self.created_ms or 0.0,
                "scheduling_attempt": self.attempts,
                "scheduling_state": {PENDING: "PENDING" if not self.warned else "NO_RESOURCES",
                                     CREATED: "FINISHED", REMOVED: "REMOVED",
                                     RESCHEDULING: "RESCHEDULING"}[self.state],
            },
        }


class PlacementGroupManager:
    def __init__(self, server):
        self.server = server
        self.table = {}                       # pg id -> GroupEntry
        self.names = {}                       # (namespace, name) -> pg id
        self.pending = collections.OrderedDict()   # pg id -> entry, not placed yet
        self.removed = collections.deque()    # removed pg ids, oldest first
        self.reqs = {}                        # request id -> Reservation
        self.inflight = {}                    # node id -> resources asked of it, unanswered
        self.early = {}                       # unknown pg id -> ({subscriber}, since)
        self.actor_waits = set()              # pg ids an actor waits for
        # request ids unlike an earlier run's (its answers may still arrive)
        self._ids = itertools.count((server.incarnation << 32) + 1)
        self.seq = 0

    # ---- persistence ----------------------------------------------------
    def _save(self, e):
        self.server.storage.mark("pg", e.pg_id, lambda: e.stored() if
                                 self.table.get(e.pg_id) is e else None)

    def restore(self, rows):
        """Rebuilds the table from stored rows.  Created groups keep their
        bundles (the raylets hold them); a group that was being placed is
        given back everywhere and placed again once the nodes register."""
        for pg_id, r in sorted(rows.items(), key=lambda kv: kv[1].get("seq", 0)):
            e = GroupEntry(r["spec"])
            e.state = r["state"]
            e.nodes = list(r["nodes"])
            e.subscribers = set(r.get("subscribers") or ())
            e.created_ms = r.get("created_ms")
            e.had_actors = bool(r.get("had_actors"))
            e.seq = r.get("seq", 0)
            self.seq = max(self.seq, e.seq)
            self.table[pg_id] = e
            if e.state == REMOVED:
                self.removed.append(pg_id)
                continue
            if e.name:
                self.names[(e.namespace, e.name)] = pg_id
            if e.state in (PENDING, RESCHEDULING):
                # what the interrupted placement reserved goes back; bundles
                # a rescheduled group kept stay where they are
                if e.state == PENDING:
                    e.nodes = [None] * len(e.bundles)
                kept = set(e.nodes)
                for n in self.server.state.nodes.values():
                    if n.alive and n.info["node_id"] not in kept:
                        self.out.send(n.info["raylet_addr"], PG_RETURN.make(pg_id, False))
                if e.state == RESCHEDULING:
                    e.lost = [i for i, nid in enumerate(e.nodes) if nid is None]
                    for i, nid in enumerate(e.nodes):
                        if nid is not None:
                            e.prepared.setdefault(nid, []).append(i)
                self.pending[pg_id] = e
            elif e.state == CREATED:
                for i, nid in enumerate(e.nodes):
                    e.prepared.setdefault(nid, []).append(i)

    @property
    def out(self):
        return self.server.out

    # ---- requests -------------------------------------------------------
    def create(self, spec):
        """Registers a group and tries to place it at once."""
        bundles = spec.get("bundles")
        if spec.get("strategy") not in STRATEGIES or not isinstance(bundles, list) or \
                not bundles or not isinstance(spec.get("pg_id"), bytes) or \
                not isinstance(spec.get("creator"), (str, type(None))):
            raise ValueError(f"malformed placement group spec: {spec!r:.200}")
        for b in bundles:
            if not isinstance(b, dict) or not any(v > 0 for v in b.values() if
                                                  isinstance(v, (int, float))):
                raise ValueError(f"malformed placement group bundle: {b!r:.200}")
            validate_shape(b, "bundle")
        pg_id = spec["pg_id"]
        if pg_id in self.table:
            return True
        e = GroupEntry(spec)
        if e.name:
            key = (e.namespace, e.name)
            if key in self.names:
                raise ValueError(f"Failed to create placement group {e.hex}: the name "
                                 f"{e.name!r} is already taken in namespace {e.namespace!r}. "
                                 "Remove that group or pick another name.")
            self.names[key] = pg_id
        self.table[pg_id] = e
        self.seq += 1
        e.seq = self.seq
        if spec.get("creator"):
            e.subscribers.add(spec["creator"])
        early = self.early.pop(pg_id, None)
        if early is not None:
            e.subscribers |= early[0]
        self.pending[pg_id] = e
        self._save(e)
        self._try_place(e)
        return True

    # ---- one-way messages (handler(msg, frames), pyray._private.server) ----
    def h_remove(self, msg, frames):
        _, pg_id, remover = PG_REMOVE.parse(msg)
        self.remove(pg_id, remover)

    def h_subscribe(self, msg, frames):
        _, pg_id, subscriber = PG_SUBSCRIBE.parse(msg)
        self.subscribe(pg_id, subscriber)

    def h_response(self, msg, frames):
        _, rid, ok, payload = RESPONSE.parse(msg)
        self.on_response(rid, ok, payload)

    def remove(self, pg_id, remover=None):
        e = self.table.get(pg_id)
        if e is None or e.state == REMOVED:
            return
        e.state = REMOVED
        self.pending.pop(pg_id, None)
        if e.name and self.names.get((e.namespace, e.name)) == pg_id:
            del self.names[(e.namespace, e.name)]
        for held in (e.prepared, e.trying):
            for nid, indices in held.items():
                self._view_release(nid, e, indices)
            held.clear()
        # every raylet forgets the group: the ones holding bundles give them
        # back and kill the work in them, the others fail requests waiting
        # for it
        for n in self.server.state.nodes.values():
            if n.alive:
                self.out.send(n.info["raylet_addr"], PG_RETURN.make(pg_id, True))
        if e.had_actors:
            self._kill_actors(e)
        self._publish(e, None, skip=remover)
        e.subscribers.clear()
        self.actor_waits.discard(pg_id)
        self.removed.append(pg_id)
        while len(self.removed) > KEEP_REMOVED:
            old = self.table.pop(self.removed.popleft(), None)
            if old is not None:
                self._save(old)
        self.retry_pending()

    def subscribe(self, pg_id, subscriber):
        if not isinstance(pg_id, bytes) or not isinstance(subscriber, str):
            log.warning("dropped a malformed placement group subscription")
            return
        e = self.table.get(pg_id)
        if e is None:
            subs, since = self.early.get(pg_id, (set(), time.monotonic()))
            subs.add(subscriber)
            self.early[pg_id] = (subs, since)
            return
        if e.state != REMOVED and subscriber not in e.subscribers:
            e.subscribers.add(subscriber)
            self._save(e)
        if e.state != PENDING:
            self._send(subscriber, PG_STATE.make(pg_id, e.state, None))

    def get_table(self, pg_id=None):
        if pg_id is None:
            return {e.hex: e.row() for e in self.table.values()}
        e = self.table.get(pg_id)
        return e.row() if e is not None else {}

    def get_named(self, name, namespace):
        pg_id = self.names.get((namespace, name))
        e = self.table.get(pg_id) if pg_id is not None else None
        if e is None or e.state == REMOVED:
            return None
        return {"pg_id": pg_id, "bundles": [dict(b) for b in e.bundles]}

    def of_actor(self, actor_id):
        """(pg id, bundle index, capture child tasks) of an actor, or None."""
        a = self.server.actors.actors.get(actor_id)
        return a.spec.get("placement_group") if a is not None else None

    def driver_exit(self, job_id):
        for e in list(self.table.values()):
            if e.job_id == job_id and not e.detached and e.state != REMOVED:
                self.remove(e.pg_id)

    # ---- placing --------------------------------------------------------
    def retry_pending(self):
        for e in list(self.pending.values()):
            if not e.waiting:
                self._try_place(e)

    def _free_view(self, needed):
        """Free resources per live node as the GCS sees them: the last
        report, less what reservations on the way will take."""
        view = {}
        for nid, n in self.server.state.nodes.items():
            if not n.alive:
                continue
            taken = self.inflight.get(nid)
            avail = n.available
            view[nid] = {k: avail.get(k, 0.0) - (taken.get(k, 0.0) if taken else 0.0)
                         for k in needed}
        return view

    def _try_place(self, e):
        needed = {k for b in e.bundles for k in b}
        view = self._free_view(needed)
        indices = list(range(len(e.bundles))) if e.lost is None else e.lost
        if e.lost is not None:
            # bundles placed again go to nodes that hold none of the group's
            # (STRICT_SPREAD needs it; and giving back a failed attempt's
            # bundles on a node returns all the group's bundles there)
            for nid in e.prepared:
                view.pop(nid, None)
        allowed = self._allowed(e)
        placement = place_bundles(view, [e.bundles[i] for i in indices], e.strategy,
                                  allowed and [allowed[i] for i in indices])
        e.attempts += 1
        if placement is None:
            if not e.warned and e.lost is None and self._infeasible(e):
                self._warn(e, infeasible=True)
            return False
        del self.pending[e.pg_id]
        by_node = {}
        for i, nid in zip(indices, placement):
            by_node.setdefault(nid, []).append(i)
        commit = len(by_node) == 1
        now = time.monotonic()
        for nid, indices in by_node.items():
            rid = ("pg", next(self._ids))
            e.waiting[nid] = rid
            r = self.reqs[rid] = Reservation(e.pg_id, nid, indices,
                                             [e.bundles[i] for i in indices], commit, now)
            self._inflight_add(nid, r.bundles, 1)
            raylet = self.server.state.nodes[nid].info["raylet_addr"]
            self.out.send(raylet, PG_RESERVE.make(rid, self.server.address, e.pg_id,
                                                  [(i, e.bundles[i]) for i in indices], commit))
        return True

    def _infeasible(self, e):
        """True if the group could not be placed even on an empty cluster
        (False while no node has joined yet)."""
        totals = {nid: n.info.get("resources", {})
                  for nid, n in self.server.state.nodes.items() if n.alive}
        return bool(totals) and place_bundles(totals, e.bundles, e.strategy,
                                              self._allowed(e)) is None

    def _allowed(self, e):
        """The nodes each bundle's label selector allows (None: no selector)."""
        if not e.selectors:
            return None
        return bundle_nodes_allowed(e.selectors, {
            nid: n.info.get("labels") or {}
            for nid, n in self.server.state.nodes.items() if n.alive})

    def on_response(self, rid, ok, payload):
        """A raylet's answer to a reservation."""
        r = self.reqs.pop(rid, None)
        if r is None:
            return
        nid = r.node_id
        self._inflight_add(nid, r.bundles, -1)
        e = self.table.get(r.pg_id)
        done = ok and isinstance(payload, dict) and payload.get("ok")
        node = self.server.state.nodes.get(nid)
        if not done and node is not None and isinstance(payload, dict) \
                and isinstance(payload.get("available"), dict):
            node.available = payload["available"]
        if e is None or e.state == REMOVED or e.waiting.get(nid) != rid:
            return
        del e.waiting[nid]
        if done:
            e.trying[nid] = r.indices
            self._view_take(nid, e, r.indices, r.commit)
        else:
            e.refused = (payload.get("message") if isinstance(payload, dict) else payload) \
                or "refused"
        if e.waiting:
            return
        if e.refused is not None:
            self._roll_back(e)
        else:
            self._created(e)

    def _created(self, e):
        multi = len(e.trying) > 1
        for nid, indices in e.trying.items():
            e.prepared.setdefault(nid, []).extend(indices)
            for i in indices:
                e.nodes[i] = nid
            if multi:
                raylet = self.server.state.nodes[nid].info["raylet_addr"]
                self.out.send(raylet, PG_RESERVE.make(("pg", 0), self.server.address,
                                                      e.pg_id, None, True))
                self._view_commit(nid, e, indices)
        e.trying.clear()
        if e.lost is None:
            e.created_ms = (time.monotonic() - e.since) * 1000.0
        else:
            lost = [i for i in e.lost if e.nodes[i] is None]
            if lost:                    # more died while these were placed
                e.lost = lost
                self.pending[e.pg_id] = e
                self._save(e)
                self._try_place(e)
                return
            log.info("placement group %s: its lost bundles are placed again", e.hex)
            e.lost = None
        e.state = CREATED
        self._publish(e, None)
        if e.pg_id in self.actor_waits:
            self.actor_waits.discard(e.pg_id)
            self.server.actors.reschedule_pending()

    def _roll_back(self, e):
        log.info("placement group %s: a node refused its bundles (%s); it stays pending",
                 e.hex, e.refused)
        for nid, indices in e.trying.items():
            n = self.server.state.nodes.get(nid)
            if n is not None:
                self.out.send(n.info["raylet_addr"], PG_RETURN.make(e.pg_id, False))
            self._view_release(nid, e, indices, committed=False)
        e.trying.clear()
        e.refused = None
        self.pending[e.pg_id] = e

    def on_nodes_dead(self, dead):
        """Created groups with bundles on the dead nodes place those bundles
        again (RESCHEDULING); actors in them restart once they are."""
        dead = set(dead)
        for e in list(self.table.values()):
            if e.state not in (CREATED, RESCHEDULING):
                continue
            lost = [i for i, nid in enumerate(e.nodes) if nid in dead]
            if not lost:
                continue
            for nid in dead:
                e.prepared.pop(nid, None)
            for i in lost:
                e.nodes[i] = None
            e.lost = sorted(set(e.lost or ()) | set(lost))
            e.warned = False
            e.since = time.monotonic()
            message = (f"The placement group {e.hex} lost bundle(s) {lost} with their node; "
                       "they are being placed on other nodes.")
            log.warning(message)
            if e.state == CREATED:
                e.state = RESCHEDULING
                self.pending[e.pg_id] = e
                self._publish(e, message)
                self._try_place(e)

    # ---- the GCS's view of node resources --------------------------------
    def _inflight_add(self, nid, bundles, sign):
        taken = self.inflight.setdefault(nid, {})
        for b in bundles:
            for k, v in b.items():
                taken[k] = taken.get(k, 0.0) + sign * v
        if sign < 0 and all(abs(v) < EPS for v in taken.values()):
            del self.inflight[nid]

    def _view_take(self, nid, e, indices, committed):
        """Until the raylet's next report: its free pool less the bundles
        (plus their group resources once committed)."""
        n = self.server.state.nodes.get(nid)
        if n is None:
            return
        for i in indices:
            take(n.available, e.bundles[i])
        if committed:
            self._view_commit(nid, e, indices)

    def _view_commit(self, nid, e, indices):
        n = self.server.state.nodes.get(nid)
        if n is None:
            return
        avail = n.available
        for i in indices:
            for k, v in bundle_resources(e.hex, i, e.bundles[i]).items():
                avail[k] = avail.get(k, 0.0) + v

    def _view_release(self, nid, e, indices, committed=True):
        n = self.server.state.nodes.get(nid)
        if n is None:
            return
        avail = n.available
        for i in indices:
            for k, v in e.bundles[i].items():
                if v > 0:
                    avail[k] = avail.get(k, 0.0) + v
            if committed:
                for k in bundle_resources(e.hex, i, e.bundles[i]):
                    avail.pop(k, None)

    # ---- actors in groups -------------------------------------------------
    def holds(self, shape):
        """True for the lease shape of an actor placed in a group."""
        return bool(self.table) and pg_of_shape(shape) is not None

    def pick_node(self, shape):
        """The node info for an actor's group lease shape, or None while its
        group is not created (the actor is rescheduled when it is)."""
        found = pg_of_shape(shape)
        if found is None:
            return None
        pg_hex, index = found
        try:
            e = self.table.get(bytes.fromhex(pg_hex))
        except ValueError:
            return None
        if e is None or e.state == REMOVED:
            return None
        e.had_actors = True
        if e.state != CREATED:
            self.actor_waits.add(e.pg_id)
            return None
        nodes = self.server.state.nodes
        if index >= 0:
            n = nodes.get(e.nodes[index]) if index < len(e.nodes) else None
            return n.info if n is not None and n.alive else None
        holding = [nodes.get(nid) for nid in dict.fromkeys(e.nodes)]
        holding = [n for n in holding if n is not None and n.alive]
        for n in holding:
            if fits(n.available, shape):
                return n.info
        return holding[0].info if holding else None

    def _kill_actors(self, e):
        am = self.server.actors
        why = (f"The actor's placement group {e.hex} was removed "
               "(pyray.util.remove_placement_group()).")
        for aid, a in list(am.actors.items()):
            pg = a.spec.get("placement_group")
            if pg is not None and pg[0] == e.pg_id and a.state != "DEAD":
                if a.cause is None:
                    a.cause = errors.actor_died(a.actor_id, why)
                am.kill(aid, True)

    # ---- reports ----------------------------------------------------------
    def _publish(self, e, message, skip=None):
        """Tells the subscribers of a change (and stores the group)."""
        self._save(e)
        msg = PG_STATE.make(e.pg_id, e.state, message)
        for sub in list(e.subscribers):
            if sub != skip and not self._send(sub, msg):
                e.subscribers.discard(sub)

    def _send(self, addr, msg):
        """Sends to a subscriber; an address that cannot be used is dropped
        with a log line."""
        try:
            return self.out.send(addr, msg)
        except (zmq.ZMQError, TypeError, ValueError) as err:
            log.warning("cannot send to %r: %s", addr, err)
            return False

    def _warn(self, e, infeasible):
        e.warned = True
        label = f"{e.name!r} ({e.hex})" if e.name else e.hex
        asked = {k for b in e.bundles for k in b}
        nodes = [n for n in self.server.state.nodes.values() if n.alive]
        if infeasible:
            have = [{k: n.info.get("resources", {}).get(k, 0.0) for k in sorted(asked)}
                    for n in nodes]
            what = (f"no set of nodes in the cluster can ever hold it ({len(nodes)} node(s) "
                    f"with {have}); it stays PENDING until nodes with these resources join")
        else:
            free = [{k: max(0.0, n.available.get(k, 0.0)) for k in sorted(asked)}
                    for n in nodes]
            what = (f"the cluster does not have these resources free now (free per node: "
                    f"{free}); it stays PENDING until other placement groups, actors or "
                    "tasks release them")
        message = (f"The placement group {label} with bundles {e.bundles} and strategy "
                   f"{e.strategy} cannot be created: {what}.")
        log.warning(message)
        self._publish(e, message)

    def tick(self, now):
        """Called about once a second: late warnings, lost answers,
        subscriptions to groups that never came."""
        try:
            self._tick(now)
        except Exception:  # noqa: BLE001 - the GCS's loop must go on
            log.exception("placement group housekeeping failed")

    def _tick(self, now):
        for e in list(self.pending.values()):
            if not e.warned and now - e.since >= PENDING_WARN_AFTER_S:
                self._warn(e, infeasible=self._infeasible(e))
        for rid, r in list(self.reqs.items()):
            n = self.server.state.nodes.get(r.node_id)
            if now - r.sent > RESERVE_TIMEOUT_S or n is None or not n.alive:
                self.on_response(rid, False, {"ok": False, "message": "the node did not answer"})
        for pg_id, (subs, since) in list(self.early.items()):
            if now - since > UNKNOWN_GROUP_WAIT_S:
                del self.early[pg_id]
                for sub in subs:
                    self._send(sub, PG_STATE.make(
                        pg_id, REMOVED, f"The placement group {pg_id.hex()} is not known to "
                        "the cluster (never created, or removed long ago)."))
