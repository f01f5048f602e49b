"""Placement groups over several nodes (pyray.cluster_utils.Cluster): the
strategies choose distinct or shared nodes, work placed in a bundle runs on
that bundle's node, and a group that needs more nodes than exist is created
when one joins."""
from __future__ import annotations

import pytest

import pyray
from clusterlib import make_cluster  # noqa: F401  (fixture)
from pyray.util import placement_group, placement_group_table, remove_placement_group
from pyray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(60)


@pyray.remote
def node_of_task():
    return pyray.get_runtime_context().get_node_id()


@pyray.remote(num_cpus=1)
class Where:
    def node(self):
        return pyray.get_runtime_context().get_node_id()


def test_bundles_spread_over_nodes_and_work_follows_them(make_cluster, wait_for):
    cluster = make_cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1}])
    nodes = {n.node_id for n in cluster.list_all_nodes()}
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert pg.wait(20)
    placed = placement_group_table(pg)["bundles_to_node_id"]
    assert set(placed.values()) == nodes
    for i in (0, 1):
        strategy = PlacementGroupSchedulingStrategy(pg, i)
        assert pyray.get(node_of_task.options(scheduling_strategy=strategy).remote(),
                         timeout=30) == placed[i]
    actor = Where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 2)).remote()
    assert pyray.get(actor.node.remote(), timeout=30) == placed[2]
    # every CPU of the cluster is in the group now: PACK over two nodes waits
    packed = placement_group([{"CPU": 1}] * 2, strategy="PACK")
    assert not packed.wait(0.5)
    remove_placement_group(pg)
    assert packed.wait(20)
    assert len(set(placement_group_table(packed)["bundles_to_node_id"].values())) == 2
    remove_placement_group(packed)
    wait_for(lambda: pyray.available_resources().get("CPU") == 3.0, timeout=10,
             what="every node's CPU back")


def test_strict_spread_waits_for_enough_nodes(make_cluster):
    cluster = make_cluster(nodes=[{"num_cpus": 1}])
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert not pg.wait(0.5)
    assert placement_group_table(pg)["state"] == "PENDING"
    joined = cluster.add_node(num_cpus=1, object_store_memory=128 << 20)
    assert pyray.get(pg.ready(), timeout=20) == pg
    assert joined.node_id in placement_group_table(pg)["bundles_to_node_id"].values()


@pyray.remote(num_cpus=1, max_restarts=1)
class Keeper:
    def __init__(self):
        self.calls = 0

    def node(self):
        self.calls += 1
        return pyray.get_runtime_context().get_node_id(), self.calls


def test_bundles_of_a_dead_node_are_placed_again_and_their_actor_follows(make_cluster,
                                                                          wait_for):
    from clusterlib import FAST_FAILURE
    cluster = make_cluster(head={"num_cpus": 0, "_system_config": FAST_FAILURE},
                           nodes=[{"num_cpus": 1}, {"num_cpus": 1}])
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert pg.wait(20)
    before = placement_group_table(pg)["bundles_to_node_id"]
    keeper = Keeper.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 1)).remote()
    assert pyray.get(keeper.node.remote(), timeout=30) == (before[1], 1)
    doomed = next(n for n in cluster.worker_nodes if n.node_id == before[1])
    cluster.remove_node(doomed, allow_graceful=False)
    # the group waits (no free node), then takes a node that joins
    wait_for(lambda: placement_group_table(pg)["state"] == "RESCHEDULING", timeout=15,
             what="the group to notice its lost bundle")
    assert placement_group_table(pg)["bundles_to_node_id"][0] == before[0]
    fresh = cluster.add_node(num_cpus=1, object_store_memory=128 << 20)
    wait_for(lambda: placement_group_table(pg)["state"] == "CREATED", timeout=20,
             what="the lost bundle to be placed again")
    assert placement_group_table(pg)["bundles_to_node_id"] == {0: before[0], 1: fresh.node_id}
    assert pg.wait(5)
    # the actor restarted in its bundle, on the new node; tasks go there too
    assert pyray.get(keeper.node.remote(), timeout=30) == (fresh.node_id, 1)
    strategy = PlacementGroupSchedulingStrategy(pg, 1)      # its CPU is the actor's
    assert pyray.get(node_of_task.options(num_cpus=0, scheduling_strategy=strategy).remote(),
                     timeout=30) == fresh.node_id
    remove_placement_group(pg)
