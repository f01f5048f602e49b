"""The raylet's scheduling decisions: pure logic, no I/O (unit-tested alone).

``plan()`` goes over the queued lease requests in arrival order and says,
for each, what happens to it now:

  GRANT        it gets this idle worker (its resources are taken)
  SPILL        the owner is sent to another node (ClusterView.decide)
  REJECT       a request another raylet sent here that does not fit now:
               the owner asks its own raylet again
  FAIL         it can never run (hard node affinity to a dead node)
  PG_REMOVED   its placement group was removed
  INFEASIBLE   nothing can run it: its owner is warned once, it stays queued
  REFRESH      decided after a fresh node table; it stays queued

Requests that get none of these wait: for a worker (``spawn`` more are
started, beyond those already starting), for resources (``blocked``: idle
leases kept by owners may be asked back, ``reclaim()``), or for the
placement group this node does not hold yet.

The planner sends nothing and keeps no state of its own; it updates the
bookkeeping it is given as if its decisions were carried out (the node's
resources, the cluster view's estimate of the peers, the idle-worker queue,
the requests' own planning fields), so that later requests in the same pass
see them.  The raylet carries the decisions out.
"""
from __future__ import annotations

from pyray._private.resources import pg_of_shape, validate_shape
from pyray.raylet import cluster_view as cv

GRANT, SPILL, REJECT, FAIL, PG_REMOVED, INFEASIBLE, REFRESH = range(7)


class Request:
    """A queued lease request, and what the planner remembers about it."""
    __slots__ = ("req_id", "owner", "shape", "job_id", "driver_addr", "key", "warned",
                 "reclaimed", "route", "mode", "origin", "view_seq", "env")

    def __init__(self, req_id, owner, shape, job_id, driver_addr, key):
        self.req_id = req_id
        self.owner = owner
        self.shape = shape
        self.job_id = job_id
        self.driver_addr = driver_addr
        self.key = key
        self.warned = False         # told that it is infeasible
        self.reclaimed = False      # idle leases were asked back for it
        self.route = None           # (strategy, locality node) when it may go elsewhere
        self.mode = None            # how another raylet sent it here (cluster_view)
        self.origin = None          # the node of the raylet that sent it here
        self.view_seq = 0           # the cluster view's seq when it arrived
        self.env = None             # its runtime env's hash (None: the default env)


def plan(requests, res, view, take_idle, starting, removed_pgs, env_need=None):
    """Decides what happens now to each queued request.

    requests: {key: Request} in arrival order.  res: the node's
    NodeResources.  view: the ClusterView.  take_idle(job_id): an idle
    worker for that job, taken out of the idle queue, or None.  starting:
    workers started and not registered yet.  removed_pgs: hex ids of
    removed placement groups.  env_need: a dict filled with {runtime env
    hash: requests of that env waiting for a worker} (take_idle is then
    called as take_idle(job_id, env hash)); their workers are started by
    the raylet once the env is set up, not counted in ``spawn``.

    Returns (actions, spawn, blocked): actions are tuples ``(code, key,
    request, arg, extra)`` in order -- GRANT: (worker, gpu ids); SPILL: (peer,
    mode); FAIL: (message, None); PG_REMOVED: (group hex, None); INFEASIBLE:
    (message or None, None); the others (None, None).  spawn: how many workers to start.  blocked: the
    requests that wait for resources held by leases."""
    actions = []
    need_workers = 0
    blocked = []
    peers = view.peers
    for key, req in requests.items():
        route = req.route
        special = route is not None and (req.mode is not None or route[1] is not None or
                                          route[0] not in (None, "DEFAULT"))
        if special:
            act = _route(key, req, res, view)
            if act is not None:
                actions.append(act)
                continue
            if not view.local_labels_ok(route[0]):
                # no node has the labels it asks for: it waits like a
                # request for resources no node has
                if not req.warned:
                    req.warned = True
                    actions.append((INFEASIBLE, key, req,
                                    cv.unsatisfiable_labels_message(route[0][1]), None))
                continue
        if not res.feasible(req.shape):
            if route is not None and not special:
                act = _route(key, req, res, view)
                if act is not None:
                    actions.append(act)
                    continue
            found = pg_of_shape(req.shape)
            if found is not None:
                # placed in a group this node does not hold (yet): it waits
                # quietly, unless the group is gone
                if found[0] in removed_pgs:
                    actions.append((PG_REMOVED, key, req, found[0], None))
                continue
            if not req.warned:
                req.warned = True
                actions.append((INFEASIBLE, key, req, None, None))
            continue
        if not res.fits(req.shape):
            if peers and route is not None and not special:
                act = _route(key, req, res, view)
                if act is not None:
                    actions.append(act)
                    continue
            blocked.append(req)
            continue
        env = req.env
        w = take_idle(req.job_id) if env is None else take_idle(req.job_id, env)
        if w is None:
            if env is None:
                need_workers += 1
            elif env_need is not None:
                env_need[env] = env_need.get(env, 0) + 1
            continue
        actions.append((GRANT, key, req, w, res.acquire(req.shape)))
    return actions, max(0, need_workers - starting), blocked


def _route(key, req, res, view):
    """Whether the cluster view sends a request elsewhere: None when it is
    this node's to grant (or queue), else its action."""
    code, arg, mode = view.decide(req.route[0], req.route[1], req.shape, res, req.mode,
                                  view.seq > req.view_seq)
    if code == cv.LOCAL or code == cv.INFEASIBLE:
        if req.route[0] == "SPREAD" and req.mode is None:
            req.route = (None, None)     # this node was its turn: it stays here
        return None
    if code == cv.REFRESH:
        return REFRESH, key, req, None, None
    if code == cv.SPILL:
        if mode == cv.GRANT_OR_REJECT:
            view.debit(arg, req.shape)
        return SPILL, key, req, arg, mode
    if code == cv.REJECT:
        return REJECT, key, req, None, None
    return FAIL, key, req, arg, None


def reclaim(blocked, leases):
    """The idle leases to ask back for requests that wait for resources:
    those of other owners, or of the same owner for another scheduling key
    (an owner reuses its leases for more of the same key, not for others).
    Each request asks once, each lease is asked once."""
    waiting = {(r.owner, r.key) for r in blocked if not r.reclaimed}
    if not waiting:
        return []
    for r in blocked:
        r.reclaimed = True
    out = []
    for lease in leases:
        if not lease.reclaim_sent and (lease.owner, lease.key) not in waiting:
            lease.reclaim_sent = True
            out.append(lease)
    return out


def infeasible_message(shape, total):
    return (f"The task or actor needs {shape}, which no node in the cluster can provide "
            f"(this node has {total}). It stays pending until a node with these resources "
            "joins; lower its requirements or add resources.")


def check_request(owner, shape, key):
    """Raises ValueError for a malformed lease request: it is dropped (and
    logged) instead of being queued, where it would break every later
    scheduling pass."""
    if not isinstance(owner, str) or "://" not in owner:
        raise ValueError(f"bad owner address {owner!r}")
    if not isinstance(shape, dict):
        raise ValueError(f"bad resource shape {shape!r}")
    validate_shape(shape)
    try:
        hash(key)
    except TypeError:
        raise ValueError(f"unhashable scheduling key {key!r}") from None
