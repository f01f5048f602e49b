"""Node failures: a raylet killed with SIGKILL is declared dead when its
heartbeats stop; its tasks run again elsewhere, objects that lived only
there are made again from their task (lineage) or raise ObjectLostError."""
from __future__ import annotations

import time

import pytest

import pyray
from clusterlib import FAST_FAILURE, make_cluster  # noqa: F401  (fixture)
from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tasklib import add_one, filled, node_id, own_put, square_where, wait_for_file

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
DEAD_AFTER = FAST_FAILURE["heartbeat_interval_s"] * FAST_FAILURE["num_heartbeats_timeout"]


def alive(node):
    return {n["NodeID"]: n["Alive"] for n in pyray.nodes()}[node.node_id]


def test_tasks_of_a_killed_node_run_again_elsewhere(make_cluster, wait_for):
    cluster = make_cluster(head={"num_cpus": 2, "_system_config": FAST_FAILURE},
                           nodes=[{"num_cpus": 2}])
    far = cluster.worker_nodes[0]
    refs = [square_where.remote(i) for i in range(1000)]
    # handshake: the far node has run some of them
    ready, _ = pyray.wait(refs, num_returns=100, timeout=30)
    assert far.node_id in {where for _, where in pyray.get(ready)}
    far.kill_raylet()
    killed = time.monotonic()
    results = pyray.get(refs, timeout=45)
    assert [v for v, _ in results] == [i * i for i in range(1000)]
    wait_for(lambda: not alive(far), timeout=DEAD_AFTER + 3, what="the node to be declared dead")
    assert time.monotonic() - killed < DEAD_AFTER + 3
    assert pyray.cluster_resources()["CPU"] == 2
    # new work goes to the live node only
    assert set(pyray.get([node_id.remote() for _ in range(10)], timeout=30)) == \
        {cluster.head_node.node_id}


def test_lost_objects_are_made_again_from_their_tasks(make_cluster):
    cluster = make_cluster(head={"num_cpus": 1, "_system_config": FAST_FAILURE},
                           nodes=[{"num_cpus": 1, "resources": {"b": 1}}])
    x = filled.options(resources={"b": 1}).remote(8 * MiB, 4)
    y = add_one.options(resources={"b": 1}).remote(x)
    assert pyray.get(y, timeout=30)[-1] == 5           # y also has a copy on the head now
    z = add_one.options(resources={"b": 1}).remote(y)
    pyray.wait([z], timeout=30, fetch_local=False)
    cluster.worker_nodes[0].kill_raylet()
    fresh = cluster.add_node(num_cpus=1, resources={"b": 1})
    # z and x are rebuilt on the new node; z's argument y is read from the head's copy
    assert pyray.get(z, timeout=40)[0] == 6
    assert pyray.get(x, timeout=40)[0] == 4
    assert pyray.get(node_id.options(resources={"b": 1}).remote(), timeout=30) == fresh.node_id


def test_what_cannot_be_made_again_is_lost(make_cluster, release):
    cluster = make_cluster(head={"num_cpus": 1, "_system_config": FAST_FAILURE},
                           nodes=[{"num_cpus": 2, "resources": {"b": 2}}])
    no_retry = filled.options(resources={"b": 1}, max_retries=0).remote(2 * MiB, 1)
    [borrowed] = pyray.get(own_put.options(resources={"b": 1}).remote(2 * MiB), timeout=30)
    running = wait_for_file.options(resources={"b": 1}, max_retries=0).remote(str(release))
    pyray.wait([no_retry], timeout=30, fetch_local=False)   # no copy here
    cluster.worker_nodes[0].kill_raylet()
    with pytest.raises(pyray.exceptions.ObjectLostError, match="max_retries"):
        pyray.get(no_retry, timeout=30)
    with pytest.raises(pyray.exceptions.OwnerDiedError):
        pyray.get(borrowed, timeout=30)
    with pytest.raises(pyray.exceptions.WorkerCrashedError, match="died"):
        pyray.get(running, timeout=30)


def test_a_copy_on_another_node_outlives_the_node_that_made_it(make_cluster, wait_for):
    """An object that cannot be made again (max_retries=0) but was pulled
    by a third node is served from that copy when its node dies."""
    from pyray._private.context import ctx
    cluster = make_cluster(head={"num_cpus": 1, "_system_config": FAST_FAILURE},
                           nodes=[{"num_cpus": 1, "resources": {"b": 1}},
                                  {"num_cpus": 1, "resources": {"c": 1}}])
    b, c = cluster.worker_nodes
    no_retry = filled.options(resources={"b": 1}, max_retries=0).remote(4 * MiB, 7)
    pyray.wait([no_retry], timeout=30, fetch_local=False)
    # a task on c reads it: c pulls a copy, and tells the owner (this driver)
    assert int(pyray.get(add_one.options(resources={"c": 1}).remote(no_retry),
                         timeout=30)[0]) == 8
    owned = ctx.core_worker.owned[no_retry._id]
    wait_for(lambda: owned.copies and bytes.fromhex(c.node_id) in owned.copies,
             what="the owner to hear of c's copy")
    b.kill_raylet()
    wait_for(lambda: not alive(b), timeout=DEAD_AFTER + 5, what="b to be declared dead")
    arr = pyray.get(no_retry, timeout=30)         # from c, not lost, not made again
    assert arr.nbytes == 4 * MiB and (arr == 7).all()
    assert owned.payload == bytes.fromhex(c.node_id)


@pyray.remote(max_restarts=1, max_task_retries=1)
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n, pyray.get_runtime_context().get_node_id()


def test_actor_on_a_killed_node_restarts_on_another(make_cluster):
    cluster = make_cluster(head={"num_cpus": 1, "_system_config": FAST_FAILURE},
                           nodes=[{"num_cpus": 1}])
    far = cluster.worker_nodes[0]
    c = Counter.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        far.node_id, soft=True)).remote()
    assert pyray.get(c.incr.remote(), timeout=30) == (1, far.node_id)
    far.kill_raylet()
    # restarted (fresh state) on the head once the node is declared dead
    assert pyray.get(c.incr.remote(), timeout=30) == (1, cluster.head_node.node_id)


@pyray.remote(num_cpus=0)
class Submitter:
    def submit(self, path):
        """Starts a task on the node with resource b that holds it until
        `path` exists; returns this process's pid."""
        import os
        self.ref = wait_for_file.options(resources={"b": 1}, max_retries=0).remote(path,
                                                                                   timeout=60)
        return os.getpid()


def test_leases_of_an_owner_that_died_are_taken_back_on_every_node(make_cluster, release,
                                                                    wait_for):
    """A worker that dies while its task runs on another node: that node
    takes the lease back and stops the task (Ray stops an owner's tasks with
    it), instead of holding the resources until the job ends."""
    import os
    import signal
    cluster = make_cluster(head={"num_cpus": 1, "_system_config": FAST_FAILURE},
                           nodes=[{"num_cpus": 1, "resources": {"b": 1}}])
    s = Submitter.remote()
    pid = pyray.get(s.submit.remote(str(release)), timeout=30)
    wait_for(lambda: pyray.available_resources().get("b", 0) == 0,
             what="the task on the other node to hold b")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pyray.available_resources().get("b", 0) == 1, timeout=15,
             what="b to be given back after its owner died")
    # and b is usable again
    assert pyray.get(node_id.options(resources={"b": 1}).remote(), timeout=30) == \
        cluster.worker_nodes[0].node_id
