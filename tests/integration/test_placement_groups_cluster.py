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
