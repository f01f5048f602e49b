"""GCS restart: the GCS is SIGKILLed and started again on the same address
and storage; it reloads its tables, the raylets register again, and work
that was running carries on (docs/cluster.md, "GCS restart")."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import pyray
from clusterlib import FAST_FAILURE, make_cluster  # noqa: F401  (fixture)
from pyray.util.placement_group import placement_group, placement_group_table
from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tasklib import square_where

pytestmark = pytest.mark.timeout(60)

DEAD_AFTER = FAST_FAILURE["heartbeat_interval_s"] * FAST_FAILURE["num_heartbeats_timeout"]


@pyray.remote(num_cpus=0)
class Counter:
    def __init__(self, start=0):
        self.n = start

    def incr(self):
        self.n += 1
        return self.n


def alive_nodes():
    return {n["NodeID"] for n in pyray.nodes() if n["Alive"]}


def test_work_carries_on_while_the_gcs_restarts(make_cluster):
    cluster = make_cluster(head={"num_cpus": 2, "_system_config": FAST_FAILURE},
                           nodes=[{"num_cpus": 2, "resources": {"b": 3}}])
    far = cluster.worker_nodes[0]
    keeper = Counter.options(name="keeper", resources={"b": 1}).remote(10)
    assert pyray.get(keeper.incr.remote(), timeout=30) == 11
    pg = placement_group([{"b": 1}], strategy="PACK")
    assert pg.wait(timeout_seconds=30)
    refs = [square_where.remote(i, 0.005) for i in range(300)]
    ready, _ = pyray.wait(refs, num_returns=30, timeout=30)      # leases are held now
    assert len(ready) == 30

    cluster.kill_gcs()
    # while the GCS is down: actor calls, new tasks, and a GCS request that
    # waits for the GCS to come back
    during = [keeper.incr.remote() for _ in range(5)]
    refs += [square_where.remote(i) for i in range(300, 400)]
    found = {}
    asker = threading.Thread(target=lambda: found.update(h=pyray.get_actor("keeper")),
                             daemon=True)
    asker.start()
    assert pyray.get(during, timeout=30) == [12, 13, 14, 15, 16]
    assert not found, "get_actor() answered with no GCS running"
    restarted = time.monotonic()
    cluster.restart_gcs()

    results = pyray.get(refs, timeout=30)
    assert [v for v, _ in results] == [i * i for i in range(400)]
    asker.join(timeout=30)
    assert time.monotonic() - restarted < 10
    # the named actor is found and kept its state
    assert pyray.get(found["h"].incr.remote(), timeout=30) == 17
    assert pyray.get(pyray.get_actor("keeper").incr.remote(), timeout=30) == 18
    assert "keeper" in pyray.util.list_named_actors()
    # the placement group is still created, its bundle where it was
    row = placement_group_table(pg)
    assert row["state"] == "CREATED"
    assert row["bundles_to_node_id"] == {0: far.node_id}
    # new actors and placement groups, and both nodes alive after re-registering
    fresh = Counter.options(resources={"b": 1}).remote()
    assert pyray.get(fresh.incr.remote(), timeout=30) == 1
    pg2 = placement_group([{"CPU": 1}], strategy="PACK")
    assert pg2.wait(timeout_seconds=30)
    cluster.wait_for_nodes(timeout=10)
    assert alive_nodes() == {cluster.head_node.node_id, far.node_id}
    # they stay alive: the restarted GCS hears their heartbeats
    deadline = time.monotonic() + DEAD_AFTER + 0.5
    while time.monotonic() < deadline:
        assert alive_nodes() == {cluster.head_node.node_id, far.node_id}
        time.sleep(0.2)


def test_a_node_that_died_with_the_gcs_down_is_declared_dead(make_cluster, wait_for):
    cluster = make_cluster(head={"num_cpus": 1, "_system_config": FAST_FAILURE},
                           nodes=[{"num_cpus": 1, "resources": {"b": 1}}])
    far = cluster.worker_nodes[0]
    mover = Counter.options(max_restarts=1, scheduling_strategy=NodeAffinitySchedulingStrategy(
        far.node_id, soft=True)).remote()
    assert pyray.get(mover.incr.remote(), timeout=30) == 1
    cluster.kill_gcs()
    far.kill_raylet()
    cluster.restart_gcs()
    # loaded as alive, it never heartbeats: dead after the usual timeout
    restarted = time.monotonic()
    assert far.node_id in alive_nodes()
    wait_for(lambda: far.node_id not in alive_nodes(), timeout=DEAD_AFTER + 3,
             what="the node to be declared dead")
    assert time.monotonic() - restarted >= DEAD_AFTER * 0.8
    assert alive_nodes() == {cluster.head_node.node_id}
    assert pyray.cluster_resources().get("b", 0) == 0
    # its actor restarts on the head (a fresh instance) from the loaded table
    assert pyray.get(mover.incr.remote(), timeout=30) == 1


def test_a_gcs_restarted_twice_keeps_what_it_knew(make_cluster):
    cluster = make_cluster(head={"num_cpus": 1, "_system_config": FAST_FAILURE})
    Counter.options(name="twice", lifetime="detached").remote(5)
    for _ in range(2):
        cluster.kill_gcs()
        cluster.restart_gcs()
    handle = pyray.get_actor("twice")
    assert pyray.get(handle.incr.remote(), timeout=30) == 6
    cluster.wait_for_nodes(timeout=10)
    pyray.kill(handle)


@pyray.remote(num_cpus=0)
class SlowStart:
    def __init__(self, seconds):
        pyray.util.list_named_actors()      # connects this worker to the GCS
        time.sleep(seconds)
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def test_an_actor_whose_creation_reply_died_with_the_gcs_comes_up(make_cluster):
    # The GCS is frozen (SIGSTOP) while the constructor runs, so its reply
    # waits unread in the GCS's socket and dies with it (SIGKILL).  The
    # restarted GCS sends the creation task again and the worker answers
    # with the reply it kept: the constructor does not run twice.
    cluster = make_cluster(head={"num_cpus": 1, "_system_config": FAST_FAILURE})
    slow = SlowStart.options(name="slow").remote(1.0)
    time.sleep(0.4)                                 # its worker is leased, __init__ runs
    gcs = cluster.head_node._local.gcs.popen
    os.kill(gcs.pid, signal.SIGSTOP)
    try:
        time.sleep(1.2)                             # __init__ has returned and replied
    finally:
        cluster.kill_gcs()
    cluster.restart_gcs()
    assert pyray.get(slow.incr.remote(), timeout=20) == 1
    assert pyray.get(pyray.get_actor("slow").incr.remote(), timeout=20) == 2


def test_nodes_stop_when_the_gcs_never_comes_back(make_cluster, wait_for):
    """gcs_reconnect_timeout_s: a raylet whose GCS stays silent that long
    stops, with its workers (Ray's raylets do the same), instead of waiting
    for ever."""
    cfg = dict(FAST_FAILURE, gcs_reconnect_timeout_s=2.0)
    cluster = make_cluster(head={"num_cpus": 1, "_system_config": cfg},
                           nodes=[{"num_cpus": 1, "resources": {"b": 1}}], connect=False)
    far = cluster.worker_nodes[0]
    import psutil
    family = psutil.Process(far.pid).children(recursive=True)
    assert family, "the node has no zygote or workers"
    cluster.kill_gcs()
    t = time.monotonic()
    wait_for(lambda: not far.is_alive() and not cluster.head_node.is_alive(), timeout=15,
             what="both raylets to stop without their GCS")
    took = time.monotonic() - t
    assert took >= 1.5, f"the raylets stopped after {took:.1f}s, before the timeout"
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, f"the node's processes outlived it: {alive}"
    with open(os.path.join(far.session_dir, "logs", "raylet-1.log")) as f:
        log = f.read()
    assert "gcs_reconnect_timeout_s" in log, log[-2000:]
