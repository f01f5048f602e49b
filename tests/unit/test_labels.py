"""Node labels without processes: label selectors and strategies as the
submit path reads them, the raylet's planner and cluster view, and
placement group bundles with label selectors."""
import collections

import pytest

from pyray._private.scheduling_strategies import (DoesNotExist, Exists, In,
                                                  NodeLabelSchedulingStrategy, NotIn,
                                                  labels_match, parse_label_selector,
                                                  parse_labels, selector_key)
from pyray.gcs.placement_groups import bundle_nodes_allowed, place_bundles
from pyray.raylet import cluster_view as cv
from pyray.raylet import scheduler as sched
from pyray.raylet.resources import NodeResources
from pyray.raylet.scheduler import Request

ME, A, B = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16
CPU1 = {"CPU": 1.0}


def test_label_selector_values_as_ray_writes_them():
    sel = parse_label_selector({"zone": "a", "tier": "!gold", "gpu": "in(a100, h100)",
                                "os": "!in(win)"})
    assert dict((k, (op, v)) for k, op, v in sel) == {
        "zone": ("in", ("a",)), "tier": ("!in", ("gold",)), "gpu": ("in", ("a100", "h100")),
        "os": ("!in", ("win",))}
    labels = {"zone": "a", "gpu": "h100"}
    assert labels_match(labels, sel)
    assert not labels_match({"zone": "a", "gpu": "v100"}, sel)
    assert not labels_match({"zone": "a", "gpu": "h100", "tier": "gold"}, sel)
    for bad in ({"z": "in(a,"}, {"z": ""}, {"z": 1}, {"": "a"}, {"z": "in(a,,b)"}):
        with pytest.raises(ValueError):
            parse_label_selector(bad)


def test_node_label_strategy_operators():
    s = NodeLabelSchedulingStrategy({"a": In("1", "2"), "b": NotIn("x"), "c": Exists(),
                                     "d": DoesNotExist()})
    hard = s._key()[1]
    assert labels_match({"a": "2", "c": ""}, hard)
    assert not labels_match({"a": "2", "c": "", "d": "y"}, hard)
    assert not labels_match({"a": "3", "c": ""}, hard)
    assert not labels_match({"a": "1"}, hard)
    with pytest.raises(ValueError):
        NodeLabelSchedulingStrategy({})
    with pytest.raises(ValueError):
        NodeLabelSchedulingStrategy({"a": "1"})
    with pytest.raises(ValueError):
        In()


def test_a_selector_joins_a_label_strategy_and_refuses_other_strategies():
    key = selector_key(None, {"zone": "a"})
    assert key == ("labels", (("zone", "in", ("a",)),), ())
    both = selector_key(NodeLabelSchedulingStrategy({"x": Exists()})._key(), {"zone": "a"})
    assert both[0] == "labels" and len(both[1]) == 2
    with pytest.raises(ValueError, match="label_selector"):
        selector_key("SPREAD", {"zone": "a"})


def test_node_labels_from_a_dict_json_or_pairs():
    assert parse_labels("a=1, b=2") == {"a": "1", "b": "2"}
    assert parse_labels('{"a": "1"}') == {"a": "1"}
    assert parse_labels(None) == {}
    for bad in ("a", '{"a": 1}', {"a": 1}, {"ray.io/custom": "x"}, "{bad json"):
        with pytest.raises(ValueError):
            parse_labels(bad)


def view(my_labels=None, a_labels=None, b_labels=None, a_avail=None):
    v = cv.ClusterView(ME, my_labels)
    v.update([{"node_id": ME, "alive": True, "raylet_addr": "me", "resources": CPU1,
               "available": CPU1, "labels": my_labels},
              {"node_id": A, "alive": True, "raylet_addr": "ra", "resources": {"CPU": 2.0},
               "available": a_avail or {"CPU": 2.0}, "labels": a_labels},
              {"node_id": B, "alive": True, "raylet_addr": "rb", "resources": {"CPU": 2.0},
               "available": {"CPU": 2.0}, "labels": b_labels}])
    return v


def strategy(**sel):
    return selector_key(None, sel)


def test_the_view_sends_labelled_work_to_matching_nodes_only():
    v = view({"zone": "me"}, {"zone": "a"}, {"zone": "b"})
    free = NodeResources(CPU1)
    assert v.decide(strategy(zone="me"), None, CPU1, free, None, True)[0] == cv.LOCAL
    code, peer, _ = v.decide(strategy(zone="b"), None, CPU1, free, None, True)
    assert (code, peer.node_id) == (cv.SPILL, B)
    code, peer, _ = v.decide(strategy(zone="!in(me,a)"), None, CPU1, free, None, True)
    assert (code, peer.node_id) == (cv.SPILL, B)
    assert v.decide(strategy(zone="c"), None, CPU1, free, None, False)[0] == cv.REFRESH
    assert v.decide(strategy(zone="c"), None, CPU1, free, None, True)[0] == cv.INFEASIBLE
    # sent here by another raylet: kept only if the labels match here too
    assert v.decide(strategy(zone="a"), None, CPU1, free, cv.QUEUE, True)[0] == cv.REJECT
    # soft: the matching node is preferred, another one taken when it is full
    soft = NodeLabelSchedulingStrategy({}, soft={"zone": In("a")})._key()
    assert v.decide(soft, None, CPU1, free, None, True)[1].node_id == A
    full = view({"zone": "me"}, {"zone": "a"}, {"zone": "b"}, a_avail={"CPU": 0.0})
    assert full.decide(soft, None, CPU1, free, None, True)[0] == cv.LOCAL


def test_the_planner_never_grants_unmatched_work_here_and_warns_once():
    v = view({"zone": "me"})
    r = Request(1, "ipc://o", CPU1, b"j", None, "k")
    r.route = (strategy(zone="elsewhere"), None)
    r.view_seq = v.seq - 1          # decided after a fresh node table
    requests = collections.OrderedDict([(("ipc://o", 1), r)])
    res = NodeResources(CPU1)
    acts, spawn, _ = sched.plan(requests, res, v, lambda job: object(), 0, set())
    assert [a[0] for a in acts] == [sched.INFEASIBLE] and "labels" in acts[0][3]
    acts, _, _ = sched.plan(requests, res, v, lambda job: object(), 0, set())
    assert acts == [] and res.fits(CPU1)        # still queued, nothing taken
    # a key with max_calls routes as the strategy it wraps
    key = ((("CPU", 1.0),), ("calls", 2, strategy(zone="a")))
    assert cv.parse_key(key) == (strategy(zone="a"), None)


def test_bundles_with_label_selectors_go_to_matching_nodes():
    nodes = {"a": {"CPU": 4.0}, "b": {"CPU": 4.0}, "c": {"CPU": 4.0}}
    labels = {"a": {"zone": "x"}, "b": {"zone": "y"}, "c": {"zone": "y"}}
    sels = [parse_label_selector({"zone": "y"}), ()]
    allowed = bundle_nodes_allowed(sels, labels)
    assert allowed == [{"b", "c"}, None]
    assert place_bundles(nodes, [CPU1, CPU1], "PACK", allowed) in (["b", "b"], ["c", "c"])
    placed = place_bundles(nodes, [CPU1, CPU1], "STRICT_SPREAD", allowed)
    assert placed[0] in ("b", "c") and placed[1] != placed[0]
    only_x = bundle_nodes_allowed([parse_label_selector({"zone": "x"})] * 2, labels)
    assert place_bundles(nodes, [CPU1, CPU1], "STRICT_SPREAD", only_x) is None
    assert bundle_nodes_allowed([(), ()], labels) is None


def test_gpu_names_become_ray_accelerator_types():
    from pyray._private.node import gpu_name_to_type
    assert gpu_name_to_type("NVIDIA H200") == "H200"
    assert gpu_name_to_type("NVIDIA A100-SXM4-80GB") == "A100"
    assert gpu_name_to_type("Tesla V100-SXM2-16GB\n") == "V100"
    assert gpu_name_to_type("weird") is None
