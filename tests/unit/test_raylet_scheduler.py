"""The raylet's scheduling decisions (pyray.raylet.scheduler), without
processes: requests, a node's resources, a cluster view and an idle queue go
in, decisions come out."""
import collections

import pytest

from pyray._private.resources import group_shape
from pyray.raylet import cluster_view as cv
from pyray.raylet import scheduler as sched
from pyray.raylet.resources import NodeResources
from pyray.raylet.scheduler import Request

ME, A = b"\x01" * 16, b"\x02" * 16
PG = "ab" * 14


class Worker:
    def __init__(self, name, job_id=None):
        self.name = name
        self.job_id = job_id


class Idle:
    """An idle queue as the worker pool keeps it (take_idle)."""

    def __init__(self, *workers):
        self.q = collections.deque(workers)

    def __call__(self, job_id):
        for _ in range(len(self.q)):
            w = self.q.popleft()
            if w.job_id is None or w.job_id == job_id:
                return w
            self.q.append(w)
        return None


class Lease:
    def __init__(self, owner, key):
        self.owner = owner
        self.key = key
        self.reclaim_sent = False


def queue(*reqs):
    return collections.OrderedDict(((r.owner, r.req_id), r) for r in reqs)


def req(i, shape=None, owner="ipc://o", job=b"j", key="k", route=None):
    r = Request(i, owner, shape or {"CPU": 1.0}, job, None, key)
    r.route = route
    return r


def peer_view(a_avail):
    v = cv.ClusterView(ME)
    v.update([{"node_id": ME, "alive": True, "raylet_addr": "me", "om_addr": "om-me",
               "resources": {"CPU": 1.0}, "available": {"CPU": 1.0}},
              {"node_id": A, "alive": True, "raylet_addr": "ra", "om_addr": "om-a",
               "resources": {"CPU": 4.0}, "available": a_avail}])
    return v


def plan(requests, res, idle=None, view=None, starting=0, removed=()):
    return sched.plan(requests, res, view or cv.ClusterView(ME), idle or Idle(), starting,
                      set(removed))


def codes(actions):
    return [(a[0], a[2].req_id) for a in actions]


def test_grants_in_arrival_order_while_resources_and_workers_last():
    res = NodeResources({"CPU": 2.0})
    w1, w2, w3 = Worker("w1"), Worker("w2"), Worker("w3")
    actions, spawn, blocked = plan(queue(req(1), req(2), req(3)), res, Idle(w1, w2, w3))
    assert codes(actions) == [(sched.GRANT, 1), (sched.GRANT, 2)]
    assert [a[3] for a in actions] == [w1, w2]
    assert res.available["CPU"] == 0.0          # taken for the grants
    assert spawn == 0 and [r.req_id for r in blocked] == [3]


def test_no_idle_worker_asks_for_more_beyond_those_starting():
    res = NodeResources({"CPU": 4.0})
    requests = queue(req(1), req(2), req(3))
    actions, spawn, blocked = plan(requests, res, Idle(Worker("w1")), starting=1)
    assert codes(actions) == [(sched.GRANT, 1)]
    assert spawn == 1 and not blocked           # two wait for workers, one is starting
    assert res.available["CPU"] == 3.0


def test_a_worker_that_ran_another_jobs_work_is_not_given_out():
    res = NodeResources({"CPU": 2.0})
    other = Worker("other", job_id=b"x")
    idle = Idle(other)
    actions, spawn, _ = plan(queue(req(1, job=b"j")), res, idle)
    assert actions == [] and spawn == 1
    assert list(idle.q) == [other]              # it stays idle for its own job


def test_gpu_ids_come_with_the_grant():
    res = NodeResources({"CPU": 2.0, "GPU": 2.0})
    actions, _, _ = plan(queue(req(1, {"GPU": 1.0}), req(2, {"GPU": 0.5})), res,
                         Idle(Worker("a"), Worker("b")))
    assert [a[4] for a in actions] == [[0], [1]]


def test_infeasible_is_told_once_and_stays_queued():
    res = NodeResources({"CPU": 1.0})
    r = req(1, {"CPU": 8.0})
    requests = queue(r)
    actions, _, _ = plan(requests, res, Idle(Worker("w")))
    assert codes(actions) == [(sched.INFEASIBLE, 1)]
    actions, _, _ = plan(requests, res, Idle(Worker("w")))
    assert actions == []
    assert "no node in the cluster" in sched.infeasible_message(r.shape, res.total)


def test_work_for_a_group_this_node_lacks_waits_quietly_unless_it_was_removed():
    res = NodeResources({"CPU": 1.0})
    requests = queue(req(1, group_shape({"CPU": 1.0}, PG, 0)))
    actions, spawn, blocked = plan(requests, res, Idle(Worker("w")))
    assert actions == [] and spawn == 0 and not blocked
    actions, _, _ = plan(requests, res, Idle(Worker("w")), removed={PG})
    assert [(a[0], a[3]) for a in actions] == [(sched.PG_REMOVED, PG)]


def test_work_in_a_held_group_is_granted_from_its_bundle():
    res = NodeResources({"CPU": 2.0})
    assert res.reserve_bundles(PG, [(0, {"CPU": 1.0})], commit=True) is None
    actions, _, _ = plan(queue(req(1, group_shape({"CPU": 1.0}, PG, 0)),
                               req(2, group_shape({"CPU": 1.0}, PG, 0))), res,
                         Idle(Worker("a"), Worker("b")))
    assert codes(actions) == [(sched.GRANT, 1)]


def test_a_busy_node_spills_to_a_peer_with_room_and_counts_it_there():
    res = NodeResources({"CPU": 1.0})
    res.acquire({"CPU": 1.0})
    view = peer_view({"CPU": 1.0})
    r1, r2 = req(1, route=(None, None)), req(2, route=(None, None))
    actions, _, blocked = plan(queue(r1, r2), res, Idle(Worker("w")), view=view)
    spilled = [a for a in actions if a[0] == sched.SPILL]
    assert [a[2] for a in spilled] == [r1]
    assert spilled[0][3].node_id == A and spilled[0][4] == cv.GRANT_OR_REJECT
    assert view.peers[A].available["CPU"] == 0.0    # debited: r2 does not go there too
    assert blocked == [r2]


def test_hard_affinity_to_an_unknown_node_refreshes_then_fails():
    res = NodeResources({"CPU": 1.0})
    view = cv.ClusterView(ME)
    r = req(1, route=(("node", "cd" * 16, False), None))
    requests = queue(r)
    actions, _, _ = plan(requests, res, Idle(Worker("w")), view=view)
    assert codes(actions) == [(sched.REFRESH, 1)]
    view.update([])                 # a fresh table without that node
    actions, _, _ = plan(requests, res, Idle(Worker("w")), view=view)
    assert codes(actions) == [(sched.FAIL, 1)] and "does not exist" in actions[0][3]


def test_a_request_sent_here_that_does_not_fit_is_rejected():
    res = NodeResources({"CPU": 1.0})
    res.acquire({"CPU": 1.0})
    r = req(1, route=(None, None))
    r.mode = cv.GRANT_OR_REJECT
    actions, _, _ = plan(queue(r), res, Idle(Worker("w")))
    assert codes(actions) == [(sched.REJECT, 1)]


def test_spread_stays_here_when_it_is_this_nodes_turn():
    res = NodeResources({"CPU": 1.0})
    r = req(1, route=("SPREAD", None))
    actions, _, _ = plan(queue(r), res, Idle(Worker("w")))
    assert codes(actions) == [(sched.GRANT, 1)]
    assert r.route == (None, None)


def test_reclaim_asks_other_keys_leases_back_once():
    blocked = [req(1, owner="ipc://o", key="k1")]
    mine_same_key = Lease("ipc://o", "k1")
    mine_other_key = Lease("ipc://o", "k2")
    theirs = Lease("ipc://p", "k1")
    leases = [mine_same_key, mine_other_key, theirs]
    assert sched.reclaim(blocked, leases) == [mine_other_key, theirs]
    assert sched.reclaim(blocked, leases) == []          # asked once


@pytest.mark.parametrize("owner,shape,key", [
    ("not-an-address", {"CPU": 1}, "k"),
    ("ipc://o", [("CPU", 1)], "k"),
    ("ipc://o", {"CPU": -1}, "k"),
    ("ipc://o", {"CPU": 1}, ["unhashable"]),
])
def test_malformed_requests_are_refused(owner, shape, key):
    with pytest.raises(ValueError):
        sched.check_request(owner, shape, key)
