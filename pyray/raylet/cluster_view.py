"""A raylet's view of the other nodes, and where a lease request should go.

Pure logic, no I/O: the raylet feeds it the node table the GCS broadcasts
and asks ``decide()`` about requests its own node cannot (or should not)
take.  The answer is one of

  LOCAL       handle it here: grant when it fits, else queue here
  SPILL       send the owner to another node's raylet (``mode`` says whether
              that raylet may queue it, or must grant it now or send it back)
  REJECT      a request sent here by another raylet that does not fit now:
              the owner asks its own raylet again
  FAIL        it can never run (hard node affinity to a dead node)
  REFRESH     decide after a fresh node table (a node may have just joined)
  INFEASIBLE  no node can ever run it: warn and keep it pending

A lease request's scheduling key is ``(shape items, strategy key)``, or
``(shape items, strategy key, node id)`` when the task's large arguments
live on that node (locality).  Other keys (actor creation from the GCS) are
not routed.
"""
from __future__ import annotations

from pyray._private.resources import fits, take
from pyray._private.scheduling_strategies import label_strategy, labels_match

LOCAL, SPILL, REJECT, FAIL, REFRESH, INFEASIBLE = range(6)
QUEUE, GRANT_OR_REJECT = "queue", "grant_or_reject"


def parse_key(key):
    """(strategy, locality node id or None) of a task's scheduling key (or
    of an actor's lease key when the GCS placed it by default), or None for
    keys that are not routed between nodes."""
    if type(key) is tuple and len(key) >= 3 and key[0] == "actor" and key[2] == "DEFAULT":
        return "DEFAULT", None      # an actor the GCS placed by default: may spill
    if type(key) is tuple and len(key) >= 2 and type(key[0]) is tuple:
        strategy = key[1]
        if type(strategy) is tuple and len(strategy) == 3 and strategy[0] == "calls":
            strategy = strategy[2]      # max_calls (task_submitter) does not route
        return strategy, (key[2] if len(key) > 2 else None)
    return None


def lease_id_base(node_id):
    """Lease ids a node's raylet hands out start here: unique in the
    cluster, and an owner can tell from a lease id which node granted it."""
    return (int.from_bytes(node_id[:4], "little") | 1) << 32


class Peer:
    __slots__ = ("node_id", "raylet_addr", "om_addr", "total", "available", "labels")

    def __init__(self, node_id, raylet_addr, om_addr, total, available, labels=None):
        self.node_id = node_id
        self.raylet_addr = raylet_addr
        self.om_addr = om_addr
        self.total = total
        self.available = available
        self.labels = labels or {}


def unschedulable_message(node_hex):
    return (f"The task is not schedulable: the node specified via "
            f"NodeAffinitySchedulingStrategy ({node_hex}) does not exist any more or "
            "cannot run it, and soft=False was specified.")


def unsatisfiable_labels_message(hard):
    return (f"No node in the cluster has labels matching {list(hard)}; the task or actor "
            "stays pending until one joins. Check the label_selector / "
            "NodeLabelSchedulingStrategy and the nodes' labels (pyray.nodes()).")


class ClusterView:
    def __init__(self, node_id, labels=None):
        self.node_id = node_id
        self.labels = labels or {}   # this node's
        self.peers = {}          # live nodes other than this one: node id -> Peer
        self.known = {node_id}   # every node id ever seen, alive or dead
        self.dead = set()
        self.seq = 0             # bumped on every update (see Raylet.schedule)
        self._spread_next = 0

    # ---- updates -------------------------------------------------------
    def update(self, nodes):
        """nodes: the GCS's node table (dicts with node_id, alive,
        raylet_addr, om_addr, resources, available).  Returns the ids of
        nodes newly seen dead."""
        peers = {}
        newly_dead = []
        for n in nodes:
            nid = n.get("node_id")
            if not isinstance(nid, bytes):
                continue
            self.known.add(nid)
            if not n.get("alive"):
                if nid not in self.dead:
                    self.dead.add(nid)
                    newly_dead.append(nid)
                continue
            if nid == self.node_id or nid in self.dead:
                continue
            total = dict(n.get("resources") or {})
            avail = dict(n.get("available") or total)
            peers[nid] = Peer(nid, n.get("raylet_addr"), n.get("om_addr"), total, avail,
                              n.get("labels"))
        self.peers = peers
        self.seq += 1
        return newly_dead

    def mark_dead(self, node_id):
        self.known.add(node_id)
        self.dead.add(node_id)
        if node_id in self.peers:
            peers = dict(self.peers)
            del peers[node_id]
            self.peers = peers

    def debit(self, peer, shape):
        """What we just sent to a peer is no longer free there (until its
        next report): a burst of requests does not all go to one node."""
        take(peer.available, shape)

    # ---- decisions -----------------------------------------------------
    def decide(self, strategy, loc, shape, res, spilled_mode, refreshed):
        """Where a request goes; returns (code, peer or message or None, mode).

        res: this node's NodeResources.  spilled_mode: None for a request
        an owner sent here first; QUEUE / GRANT_OR_REJECT for one another
        raylet sent here.
        refreshed: the node table was updated after the request arrived."""
        labels = label_strategy(strategy)
        if labels is not None:
            return self._labelled(labels, shape, res, spilled_mode, refreshed)
        if spilled_mode is not None:
            if spilled_mode == QUEUE or res.fits(shape):
                return (LOCAL, None, None) if res.feasible(shape) else (REJECT, None, None)
            return REJECT, None, None
        if type(strategy) is tuple and strategy and strategy[0] == "node":
            out = self._affinity(strategy, shape, res, refreshed)
            if out is not None:
                return out
            strategy = None
        elif strategy == "SPREAD":
            return self._spread(shape, res, refreshed)
        if loc is not None and loc != self.node_id:
            peer = self.peers.get(loc)
            if peer is not None and fits(peer.available, shape):
                return SPILL, peer, GRANT_OR_REJECT
        local_ok = res.feasible(shape)
        if local_ok and res.fits(shape):
            return LOCAL, None, None
        peer = self._most_free(shape)
        if peer is not None:
            return SPILL, peer, GRANT_OR_REJECT
        if local_ok:
            return LOCAL, None, None
        peer = self._feasible_peer(shape)
        if peer is not None:
            return SPILL, peer, QUEUE
        return (INFEASIBLE if refreshed else REFRESH), None, None

    def _affinity(self, strategy, shape, res, refreshed):
        _, node_hex, soft = strategy[:3]
        try:
            target = bytes.fromhex(node_hex)
        except (TypeError, ValueError):
            return FAIL, f"invalid node id {node_hex!r} in NodeAffinitySchedulingStrategy", None
        if target == self.node_id:
            if res.feasible(shape):
                return LOCAL, None, None
        else:
            peer = self.peers.get(target)
            if peer is not None and fits(peer.total, shape):
                return SPILL, peer, QUEUE
            if peer is None and target not in self.known and not refreshed:
                return REFRESH, None, None
        if soft:
            return None                  # fall back to the default policy
        return FAIL, unschedulable_message(node_hex), None

    def _spread(self, shape, res, refreshed):
        """Round robin over the nodes, starting after the last one chosen:
        the first with room now, else the first that can run it at all."""
        ids = sorted(self.peers)
        ids.append(self.node_id)
        n = len(ids)
        start = self._spread_next % n
        order = [ids[(start + i) % n] for i in range(n)]
        for want_room in (True, False):
            for i, nid in enumerate(order):
                if nid == self.node_id:
                    ok = res.fits(shape) if want_room else res.feasible(shape)
                else:
                    p = self.peers[nid]
                    ok = fits(p.available if want_room else p.total, shape)
                if ok:
                    self._spread_next = start + i + 1
                    if nid == self.node_id:
                        return LOCAL, None, None
                    return SPILL, self.peers[nid], (GRANT_OR_REJECT if want_room else QUEUE)
        return (INFEASIBLE if refreshed else REFRESH), None, None

    def local_labels_ok(self, strategy):
        """Whether this node may run work of this strategy (its labels match
        a label strategy's hard requirements; any other strategy: True)."""
        labels = label_strategy(strategy)
        return labels is None or labels_match(self.labels, labels[0])

    def _labelled(self, labels, shape, res, spilled_mode, refreshed):
        """Node label strategy: nodes matching the hard requirements, those
        also matching the soft ones first; among them the default policy."""
        hard, soft = labels
        here = labels_match(self.labels, hard)
        if spilled_mode is not None:
            if here and (spilled_mode == QUEUE or res.fits(shape)) and res.feasible(shape):
                return LOCAL, None, None
            return REJECT, None, None
        peers = [p for p in self.peers.values() if labels_match(p.labels, hard)]
        tiers = [(here, peers)]
        if soft:
            tiers.insert(0, (here and labels_match(self.labels, soft),
                             [p for p in peers if labels_match(p.labels, soft)]))
        for local, cands in tiers:
            if local and res.fits(shape):
                return LOCAL, None, None
            peer = self._most_free(shape, cands)
            if peer is not None:
                return SPILL, peer, GRANT_OR_REJECT
        for local, cands in tiers:
            if local and res.feasible(shape):
                return LOCAL, None, None
            peer = self._feasible_peer(shape, cands)
            if peer is not None:
                return SPILL, peer, QUEUE
        return (INFEASIBLE if refreshed else REFRESH), None, None

    def _most_free(self, shape, peers=None):
        best, best_free = None, -1.0
        for p in (self.peers.values() if peers is None else peers):
            if fits(p.available, shape):
                free = p.available.get("CPU", 0.0)
                if free > best_free:
                    best, best_free = p, free
        return best

    def _feasible_peer(self, shape, peers=None):
        cands = [p for p in (self.peers.values() if peers is None else peers)
                 if fits(p.total, shape)]
        if not cands:
            return None
        self._spread_next += 1
        return cands[self._spread_next % len(cands)]

