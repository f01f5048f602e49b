"""Several nodes on one machine (pyray.cluster_utils.Cluster): nodes join
and leave, and tasks and actors go where their resources and scheduling
strategies say."""
from __future__ import annotations

import os

import pytest

import pyray
from actorlib import process_gone
from clusterlib import make_cluster  # noqa: F401  (fixture)
from pyray.cluster_utils import Cluster
from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tasklib import barrier, filled, node_at_barrier, node_id

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


@pyray.remote
class Where:
    def node(self):
        return pyray.get_runtime_context().get_node_id()


def test_nodes_are_separate_raylets_with_their_own_stores(make_cluster, leaks):
    cluster = make_cluster(head={"num_cpus": 2},
                           nodes=[{"num_cpus": 1, "resources": {"b": 2}},
                                  {"num_cpus": 1, "object_store_memory": 64 * MiB,
                                   "memory": 1 << 50}])
    nodes = cluster.list_all_nodes()
    assert len({n.node_id for n in nodes}) == 3
    assert len({n.pid for n in nodes}) == 3
    assert len({n.plasma_store_socket_name for n in nodes}) == 3
    listed = {n["NodeID"]: n for n in pyray.nodes()}
    assert set(listed) == {n.node_id for n in nodes}
    assert all(n["Alive"] for n in listed.values())
    assert listed[cluster.head_node.node_id]["IsHead"]
    assert listed[nodes[1].node_id]["Resources"]["b"] == 2
    assert listed[nodes[2].node_id]["Resources"]["object_store_memory"] == 64 * MiB
    # a node is given the memory it is started with, the others a default
    assert listed[nodes[2].node_id]["Resources"]["memory"] == 1 << 50
    assert 0 < listed[nodes[1].node_id]["Resources"]["memory"] < 1 << 50
    assert pyray.get(node_id.options(memory=1 << 49).remote(), timeout=30) == nodes[2].node_id
    total = pyray.cluster_resources()
    assert total["CPU"] == 4 and total["b"] == 2
    # every node runs its own workers
    pids = {}
    for n in nodes:
        strat = NodeAffinitySchedulingStrategy(n.node_id, soft=False)
        where, pid = pyray.get(_pid_on_node.options(scheduling_strategy=strat).remote(),
                               timeout=30)
        assert where == n.node_id
        pids[n.node_id] = pid
    assert len(set(pids.values())) == 3


@pyray.remote
def _pid_on_node():
    return pyray.get_runtime_context().get_node_id(), os.getpid()


def test_remove_node_and_wait_for_nodes(make_cluster):
    cluster = make_cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1}])
    a, b = cluster.worker_nodes
    cluster.remove_node(a)                   # graceful: leaves the cluster at once
    cluster.wait_for_nodes(timeout=10)
    alive = {n["NodeID"]: n["Alive"] for n in pyray.nodes()}
    assert alive[a.node_id] is False and alive[b.node_id] is True
    assert not a.is_alive()
    assert pyray.cluster_resources()["CPU"] == 2
    with pytest.raises(ValueError):
        cluster.remove_node(a)
    c = cluster.add_node(num_cpus=3)
    cluster.wait_for_nodes(timeout=10)
    assert pyray.cluster_resources()["CPU"] == 5
    assert c.node_id in {n["NodeID"] for n in pyray.nodes() if n["Alive"]}


def test_shutdown_leaves_nothing_behind(leaks):
    shm_before = leaks.shm_snapshot()
    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    assert pyray.get(node_id.remote(), timeout=30) == cluster.head_node.node_id
    session = cluster.session_dir
    assert os.path.isdir(session)
    fp = leaks.Footprint.of_children(session, shm_before)
    assert len(fp.procs) >= 6          # gcs, 2 raylets, 2 zygotes, workers
    cluster.shutdown()                 # also disconnects this driver
    assert not pyray.is_initialized()
    fp.assert_clean()
    cluster.shutdown()                 # a second shutdown is harmless


def test_bad_node_arguments():
    cluster = Cluster(shutdown_at_exit=False)
    with pytest.raises(ValueError, match="num_cpus"):
        cluster.add_node(num_cpus=-1)
    with pytest.raises(ValueError, match="num_gpus"):
        cluster.add_node(resources={"GPU": 1})
    with pytest.raises(TypeError, match="bogus"):
        cluster.add_node(bogus=1)
    with pytest.raises(ValueError, match="memory"):
        cluster.add_node(memory=-1)
    with pytest.raises(ValueError, match="the memory argument"):
        cluster.add_node(resources={"memory": 1 << 30})
    with pytest.raises(ValueError):
        Cluster(connect=True)
    assert cluster.list_all_nodes() == [] and cluster.session_dir is None


def test_custom_resources_route_tasks_and_actors(make_cluster):
    cluster = make_cluster(nodes=[{"num_cpus": 1, "resources": {"b": 1}},
                                  {"num_cpus": 1, "resources": {"c": 1}}])
    _, nb, nc = cluster.list_all_nodes()
    got = pyray.get([node_id.options(resources={"b": 1}).remote() for _ in range(4)] +
                    [node_id.options(resources={"c": 0.5}).remote() for _ in range(4)],
                    timeout=30)
    assert got == [nb.node_id] * 4 + [nc.node_id] * 4
    actor = Where.options(resources={"c": 1}).remote()
    assert pyray.get(actor.node.remote(), timeout=30) == nc.node_id
    # the actor holds c: a task needing it waits for it
    ref = node_id.options(resources={"c": 1}).remote()
    assert pyray.wait([ref], timeout=0.5)[0] == []
    pyray.kill(actor)
    assert pyray.get(ref, timeout=30) == nc.node_id


def test_work_stays_on_the_driver_node_while_it_fits(make_cluster, tmp_path):
    cluster = make_cluster(head={"num_cpus": 2}, nodes=[{"num_cpus": 2}])
    refs = [barrier.remote(str(tmp_path), f"t{i}", 2, value=None) for i in range(2)]
    pyray.get(refs, timeout=30)
    where = pyray.get([node_id.remote() for _ in range(2)], timeout=30)
    assert set(where) == {cluster.head_node.node_id}


def test_tasks_spill_to_other_nodes_when_the_local_one_is_full(make_cluster, tmp_path):
    cluster = make_cluster(head={"num_cpus": 1},
                           nodes=[{"num_cpus": 2}, {"num_cpus": 1}])
    # four tasks that can only finish if they all run at once: 4 CPUs, 3 nodes
    got = pyray.get([node_at_barrier.remote(str(tmp_path), f"t{i}", 4) for i in range(4)],
                    timeout=40)
    assert sorted(got.count(n.node_id) for n in cluster.list_all_nodes()) == [1, 1, 2]


def test_spread_puts_tasks_on_every_node(make_cluster, tmp_path, wait_for):
    cluster = make_cluster(head={"num_cpus": 3}, nodes=[{"num_cpus": 3}, {"num_cpus": 3}])
    spread = node_at_barrier.options(scheduling_strategy="SPREAD")
    (tmp_path / "spread").mkdir()
    got = pyray.get([spread.remote(str(tmp_path / "spread"), f"t{i}", 3) for i in range(3)],
                    timeout=40)
    assert sorted(got) == sorted(n.node_id for n in cluster.list_all_nodes())
    # "DEFAULT" over a SPREAD function: on this node, which has room for all
    # three once the idle leases of the spread tasks went back
    wait_for(lambda: pyray.available_resources().get("CPU") == 9, timeout=20,
             what="every CPU free again")
    (tmp_path / "packed").mkdir()
    packed = spread.options(scheduling_strategy="DEFAULT")
    got = pyray.get([packed.remote(str(tmp_path / "packed"), f"t{i}", 3) for i in range(3)],
                    timeout=40)
    assert got == [cluster.head_node.node_id] * 3


@pyray.remote(num_cpus=1)
class OneCpu:
    def node(self):
        return pyray.get_runtime_context().get_node_id()


@pyray.remote(num_cpus=1)
def hold_cpu(seconds):
    import time
    time.sleep(seconds)
    return pyray.get_runtime_context().get_node_id()


def test_actors_queued_while_every_cpu_is_busy_start_on_whichever_node_frees(make_cluster):
    """Both nodes busy when two actors are created: the GCS queues both on
    one node; when the tasks end, the second is sent on to the other
    node's free CPU (spillback) instead of waiting there forever."""
    make_cluster(head={"num_cpus": 1}, nodes=[{"num_cpus": 1}])
    busy = [hold_cpu.remote(1.0) for _ in range(2)]
    actors = [OneCpu.remote() for _ in range(2)]
    pyray.get(busy, timeout=30)
    # one CPU each: both alive means one on each node, neither left waiting
    nodes = pyray.get([a.node.remote() for a in actors], timeout=20)
    assert len(set(nodes)) == 2


def test_node_affinity(make_cluster):
    cluster = make_cluster(head={"num_cpus": 3}, nodes=[{"num_cpus": 2}, {"num_cpus": 2}])
    head, a, b = cluster.list_all_nodes()
    for target in (a, b, head):
        for soft in (False, True):
            strat = NodeAffinitySchedulingStrategy(target.node_id, soft=soft)
            got = pyray.get([node_id.options(scheduling_strategy=strat).remote()
                             for _ in range(3)], timeout=30)
            assert got == [target.node_id] * 3
    actor = Where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        b.node_id, soft=False)).remote()
    assert pyray.get(actor.node.remote(), timeout=30) == b.node_id
    # a node that cannot run it: hard fails, soft goes elsewhere
    too_big = node_id.options(num_cpus=3, scheduling_strategy=NodeAffinitySchedulingStrategy(
        a.node_id, soft=False)).remote()
    with pytest.raises(pyray.exceptions.TaskUnschedulableError, match=a.node_id):
        pyray.get(too_big, timeout=30)
    soft = node_id.options(num_cpus=3, scheduling_strategy=NodeAffinitySchedulingStrategy(
        a.node_id, soft=True)).remote()
    assert pyray.get(soft, timeout=30) == head.node_id


def test_node_affinity_to_a_dead_node(make_cluster):
    cluster = make_cluster(nodes=[{"num_cpus": 1}])
    gone = cluster.worker_nodes[0]
    cluster.remove_node(gone)
    cluster.wait_for_nodes(timeout=10)
    hard = node_id.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        gone.node_id, soft=False)).remote()
    with pytest.raises(pyray.exceptions.TaskUnschedulableError,
                       match="does not exist any more"):
        pyray.get(hard, timeout=30)
    soft = node_id.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        gone.node_id, soft=True)).remote()
    assert pyray.get(soft, timeout=30) == cluster.head_node.node_id
    unknown = node_id.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        "ab" * 16, soft=False)).remote()
    with pytest.raises(pyray.exceptions.TaskUnschedulableError):
        pyray.get(unknown, timeout=30)


def test_infeasible_until_a_node_with_the_resource_joins(make_cluster, capfd):
    cluster = make_cluster(nodes=[{"num_cpus": 1}])
    ref = node_id.options(resources={"special": 1}).remote()
    with pytest.raises(pyray.exceptions.GetTimeoutError):
        pyray.get(ref, timeout=1.0)
    err = capfd.readouterr().err
    assert "no node in the cluster can provide" in err and "special" in err
    late = cluster.add_node(num_cpus=1, resources={"special": 1})
    assert pyray.get(ref, timeout=30) == late.node_id


def test_tasks_go_to_their_large_arguments(make_cluster):
    cluster = make_cluster(head={"num_cpus": 2}, nodes=[{"num_cpus": 2, "resources": {"b": 1}}])
    far = cluster.worker_nodes[0]
    arr = filled.options(resources={"b": 1}).remote(4 * MiB, 3)
    pyray.wait([arr], timeout=30, fetch_local=False)
    got = [pyray.get(node_id.remote(arr), timeout=30) for _ in range(3)]
    assert got == [far.node_id] * 3
    # small (inline) arguments do not pull work away from the driver's node
    small = pyray.put(b"x" * 100)
    assert pyray.get(node_id.remote(small), timeout=30) == cluster.head_node.node_id


def test_malformed_messages_do_not_break_the_daemons(make_cluster):
    import pickle

    import zmq

    from pyray._private.protocol import Op
    cluster = make_cluster(nodes=[{"num_cpus": 1}])
    far = cluster.worker_nodes[0]
    om = far._local.node["om_addr"]
    junk = [
        (far.raylet_socket_name, (Op.REQUEST_LEASE, 1, "ipc:///nowhere", "not a shape", None,
                                  None, (((("CPU", 1.0),), None)))),
        (far.raylet_socket_name, (Op.REQUEST_LEASE, 2, 42, {"CPU": 1.0}, None, None, None)),
        (far.raylet_socket_name, (Op.REQUEST_LEASE, 3, "ipc:///x", {"CPU": -1}, None, None,
                                  None)),
        (far.raylet_socket_name, (Op.REQUEST_LEASE, 4, "ipc:///x", {"CPU": 1}, None, None,
                                  [1])),
        (far.raylet_socket_name, (Op.REQUEST_LEASE_SPILLED, b"x")),
        (far.raylet_socket_name, (Op.CLUSTER_VIEW, [{"node_id": b"y", "alive": True,
                                                     "resources": 7}])),
        (far.raylet_socket_name, (Op.NODE_DEAD, [1, 2])),
        (om, (Op.FETCH_CHUNKS, b"\0" * 20, 0, 1, "ipc:///nowhere", -5)),
        (om, (Op.OBJECT_CHUNK, b"\0" * 20, 3, 10, None, None)),
        (om, (Op.PULL_OBJECT, 1)),
        (om, (Op.FREE_OBJECTS, None, [b"short"])),
        (cluster.head_node._local.node["gcs_addr"], (Op.NODE_RESOURCES, b"z", "not a dict")),
    ]
    ctx = zmq.Context()
    try:
        for addr, msg in junk:
            s = ctx.socket(zmq.PUSH)
            s.connect(addr)
            s.send(pickle.dumps(msg), zmq.NOBLOCK)
            s.send(b"\x80\x05 not a pickle", zmq.NOBLOCK)
            s.close(linger=1000)
    finally:
        ctx.term()
    strat = NodeAffinitySchedulingStrategy(far.node_id, soft=False)
    ref = filled.options(scheduling_strategy=strat).remote(2 * MiB, 8)
    assert pyray.get(node_id.options(scheduling_strategy=strat).remote(ref),
                     timeout=30) == far.node_id
    assert pyray.get(ref, timeout=30)[-1] == 8
    assert far.is_alive() and all(n["Alive"] for n in pyray.nodes())


@pyray.remote(num_cpus=0)
class Pid:
    def pid(self):
        return os.getpid()


def test_a_driver_that_leaves_a_cluster_takes_its_actors_along(make_cluster, wait_for):
    # a driver that joined a cluster (it started no daemons) and leaves with
    # shutdown(): the cluster stops the actors of its job, every time
    cluster = make_cluster(connect=False)
    for _ in range(6):
        pyray.init(address=cluster.address)
        pid = pyray.get(Pid.remote().pid.remote(), timeout=30)
        pyray.shutdown()
        wait_for(lambda: process_gone(pid), timeout=5,
                 what="the leaving driver's actor to stop")
