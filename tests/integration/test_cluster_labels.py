"""Node labels and accelerator types on several nodes: label_selector,
NodeLabelSchedulingStrategy and accelerator_type send tasks and actors to
the nodes that have them; a selector no node satisfies waits like an
infeasible resource request."""
from __future__ import annotations

import pytest

import pyray
from clusterlib import make_cluster  # noqa: F401  (fixture)
from pyray.util.scheduling_strategies import (DoesNotExist, Exists, In,
                                              NodeLabelSchedulingStrategy, NotIn)
from tasklib import node_id

pytestmark = pytest.mark.timeout(90)


@pyray.remote(num_cpus=0)
class Where:
    def node(self):
        return pyray.get_runtime_context().get_node_id()


def test_tasks_and_actors_go_to_the_labelled_nodes(make_cluster):
    cluster = make_cluster(head={"num_cpus": 2},
                           nodes=[{"num_cpus": 2, "labels": {"zone": "a", "disk": "ssd"}},
                                  {"num_cpus": 2, "labels": "zone=b"}])
    head, a, b = (n.node_id for n in cluster.list_all_nodes())
    listed = {n["NodeID"]: n["Labels"] for n in pyray.nodes()}
    assert listed[a]["zone"] == "a" and listed[a]["disk"] == "ssd"
    assert listed[b]["zone"] == "b"
    # Ray's default label: every node is labelled with its id
    assert all(listed[n]["ray.io/node-id"] == n for n in (head, a, b))

    def ran_on(**opts):
        return set(pyray.get([node_id.options(**opts).remote() for _ in range(6)],
                             timeout=60))

    assert ran_on(label_selector={"zone": "a"}) == {a}
    assert ran_on(label_selector={"zone": "in(b,c)"}) == {b}
    assert ran_on(label_selector={"zone": "!a", "ray.io/node-id": f"!{head}"}) == {b}
    assert ran_on(label_selector={"zone": "!in(a,b)"}) == {head}
    assert ran_on(scheduling_strategy=NodeLabelSchedulingStrategy(
        {"disk": Exists()})) == {a}
    assert ran_on(scheduling_strategy=NodeLabelSchedulingStrategy(
        {"zone": Exists(), "disk": DoesNotExist()})) == {b}
    assert ran_on(scheduling_strategy=NodeLabelSchedulingStrategy(
        {"zone": NotIn("a")}, soft={"zone": In("b")})) == {b}
    # soft only: preferred when possible
    assert ran_on(scheduling_strategy=NodeLabelSchedulingStrategy(
        {}, soft={"disk": In("ssd")})) == {a}
    w = Where.options(label_selector={"zone": "b"}).remote()
    assert pyray.get(w.node.remote(), timeout=60) == b
    w2 = Where.options(scheduling_strategy=NodeLabelSchedulingStrategy(
        {"zone": In("a")})).remote()
    assert pyray.get(w2.node.remote(), timeout=60) == a


def test_a_selector_no_node_satisfies_waits_until_a_node_has_the_label(make_cluster, capfd):
    cluster = make_cluster(head={"num_cpus": 1})
    ref = node_id.options(label_selector={"gpu": "h100"}).remote()
    ready, _ = pyray.wait([ref], timeout=3)
    assert ready == []
    assert "labels matching" in capfd.readouterr().err     # warned, as infeasible is
    new = cluster.add_node(num_cpus=1, labels={"gpu": "h100"})
    assert pyray.get(ref, timeout=60) == new.node_id


def test_accelerator_type_is_a_resource_of_the_nodes_that_have_it(make_cluster):
    cluster = make_cluster(head={"num_cpus": 1},
                           nodes=[{"num_cpus": 1, "resources": {"accelerator_type:A100": 1}}])
    a100 = cluster.list_all_nodes()[1].node_id
    listed = {n["NodeID"]: n for n in pyray.nodes()}
    assert listed[a100]["Resources"]["accelerator_type:A100"] == 1
    # as Ray: the node is labelled with its accelerator type too
    assert listed[a100]["Labels"]["ray.io/accelerator-type"] == "A100"
    got = pyray.get([node_id.options(accelerator_type="A100").remote() for _ in range(4)],
                    timeout=60)
    assert set(got) == {a100}
    w = Where.options(accelerator_type="A100").remote()
    assert pyray.get(w.node.remote(), timeout=60) == a100
    ready, _ = pyray.wait([node_id.options(accelerator_type="H100").remote()], timeout=2)
    assert ready == []      # no node has one: it waits, as in Ray


def test_placement_group_bundles_follow_their_label_selectors(make_cluster):
    from pyray.util.placement_group import placement_group, placement_group_table
    cluster = make_cluster(head={"num_cpus": 2},
                           nodes=[{"num_cpus": 2, "labels": {"zone": "a"}},
                                  {"num_cpus": 2, "labels": {"zone": "b"}}])
    _, a, b = (n.node_id for n in cluster.list_all_nodes())
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD",
                         bundle_label_selector=[{"zone": "b"}, {"zone": "a"}])
    assert pyray.get(pg.ready(), timeout=60)
    assert placement_group_table(pg)["bundles_to_node_id"] == {0: b, 1: a}
    stuck = placement_group([{"CPU": 1}], bundle_label_selector=[{"zone": "c"}])
    ready, _ = pyray.wait([stuck.ready()], timeout=2)
    assert ready == []
    with pytest.raises(ValueError, match="one label selector"):
        placement_group([{"CPU": 1}], bundle_label_selector=[{}, {}])


def test_init_labels_its_node(ray_init):
    ray_init(num_cpus=1, labels={"team": "ml"})
    (node,) = pyray.nodes()
    assert node["Labels"]["team"] == "ml"
    assert node["Labels"]["ray.io/node-id"] == node["NodeID"]
    assert pyray.get(node_id.options(label_selector={"team": "ml"}).remote(),
                     timeout=30) == node["NodeID"]
    ready, _ = pyray.wait([node_id.options(label_selector={"team": "!ml"}).remote()],
                          timeout=1)
    assert ready == []
    with pytest.raises(ValueError, match="labels"):
        pyray.shutdown()
        pyray.init(labels={"team": 1})
