"""Placement groups without processes: the GCS's bundle placement policy
(checked against brute force on random clusters) and a node's bundle
accounting (group resources, all-or-none reservation, GPU ids)."""
import itertools
import pickle
import random

import pytest

from pyray.gcs.placement_groups import STRATEGIES, place_bundles
from pyray._private.resources import PgShape, bundle_resources, group_shape, pg_of_shape
from pyray.raylet.resources import NodeResources

pytestmark = pytest.mark.timeout(60)

PG = "ab" * 16


def used_per_node(nodes, bundles, placement):
    used = {n: {} for n in nodes}
    for b, n in zip(bundles, placement):
        for k, v in b.items():
            used[n][k] = used[n].get(k, 0.0) + v
    return used


def assert_valid(nodes, bundles, strategy, placement):
    assert len(placement) == len(bundles)
    assert all(n in nodes for n in placement)
    for n, used in used_per_node(nodes, bundles, placement).items():
        for k, v in used.items():
            assert v <= nodes[n].get(k, 0.0) + 1e-9, (n, k, used, nodes[n])
    if strategy == "STRICT_PACK":
        assert len(set(placement)) == 1
    if strategy == "STRICT_SPREAD":
        assert len(set(placement)) == len(placement)


def brute_force_exists(nodes, bundles, strategy):
    for placement in itertools.product(list(nodes), repeat=len(bundles)):
        if strategy == "STRICT_PACK" and len(set(placement)) != 1:
            continue
        if strategy == "STRICT_SPREAD" and len(set(placement)) != len(placement):
            continue
        ok = True
        for n, used in used_per_node(nodes, bundles, placement).items():
            if any(v > nodes[n].get(k, 0.0) + 1e-9 for k, v in used.items()):
                ok = False
                break
        if ok:
            return True
    return False


# ---------------------------------------------------------------------------
# the policy
# ---------------------------------------------------------------------------
def test_pack_uses_one_node_when_one_can_hold_everything():
    nodes = {"a": {"CPU": 2}, "b": {"CPU": 4}}
    assert place_bundles(nodes, [{"CPU": 1}] * 3, "PACK") == ["b", "b", "b"]


def test_pack_fills_used_nodes_before_new_ones():
    nodes = {"a": {"CPU": 2}, "b": {"CPU": 2}, "c": {"CPU": 2}}
    placement = place_bundles(nodes, [{"CPU": 1}] * 3, "PACK")
    assert_valid(nodes, [{"CPU": 1}] * 3, "PACK", placement)
    assert len(set(placement)) == 2


def test_strict_pack_needs_one_node_for_the_sum():
    nodes = {"a": {"CPU": 2}, "b": {"CPU": 2}}
    assert place_bundles(nodes, [{"CPU": 1}] * 2, "STRICT_PACK") in (["a", "a"], ["b", "b"])
    assert place_bundles(nodes, [{"CPU": 1}] * 3, "STRICT_PACK") is None


def test_spread_uses_distinct_nodes_while_there_are_some():
    nodes = {"a": {"CPU": 4}, "b": {"CPU": 4}, "c": {"CPU": 4}}
    assert sorted(place_bundles(nodes, [{"CPU": 1}] * 3, "SPREAD")) == ["a", "b", "c"]
    placement = place_bundles(nodes, [{"CPU": 1}] * 5, "SPREAD")
    counts = sorted(placement.count(n) for n in nodes)
    assert counts == [1, 2, 2]


def test_spread_shares_nodes_when_it_must():
    nodes = {"a": {"CPU": 4}}
    assert place_bundles(nodes, [{"CPU": 1}] * 3, "SPREAD") == ["a", "a", "a"]


def test_strict_spread_needs_a_node_per_bundle():
    nodes = {"a": {"CPU": 4}, "b": {"CPU": 4}}
    assert sorted(place_bundles(nodes, [{"CPU": 1}] * 2, "STRICT_SPREAD")) == ["a", "b"]
    # more bundles than nodes: stays pending, however much room there is
    assert place_bundles(nodes, [{"CPU": 1}] * 3, "STRICT_SPREAD") is None
    assert place_bundles({"a": {"CPU": 64}}, [{"CPU": 1}] * 2, "STRICT_SPREAD") is None


def test_strict_spread_finds_the_matching_a_greedy_choice_misses():
    # the CPU bundle fits both nodes, the GPU bundle only "gpu": the CPU
    # bundle must go to "cpu" whatever order the nodes come in
    nodes = {"gpu": {"CPU": 1, "GPU": 1}, "cpu": {"CPU": 1}}
    bundles = [{"CPU": 1}, {"GPU": 1}]
    assert place_bundles(nodes, bundles, "STRICT_SPREAD") == ["cpu", "gpu"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_resource_no_node_has_is_never_placed(strategy):
    nodes = {"a": {"CPU": 8}, "b": {"CPU": 8}}
    assert place_bundles(nodes, [{"CPU": 1}, {"TPU": 1}], strategy) is None
    assert place_bundles({}, [{"CPU": 1}], strategy) is None


def test_the_nodes_given_are_not_changed():
    nodes = {"a": {"CPU": 2, "custom": 0.5}}
    before = {n: dict(a) for n, a in nodes.items()}
    place_bundles(nodes, [{"CPU": 1, "custom": 0.25}] * 2, "PACK")
    assert nodes == before


def test_fractional_amounts_add_up():
    nodes = {"a": {"custom": 1.0}}
    assert place_bundles(nodes, [{"custom": 0.001}] * 1000, "PACK") == ["a"] * 1000
    assert place_bundles(nodes, [{"custom": 0.3}] * 4, "PACK") is None


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_random_clusters_against_brute_force(strategy):
    rng = random.Random(1234 + STRATEGIES.index(strategy))
    for _ in range(300):
        nodes = {f"n{i}": {"CPU": rng.randint(0, 4), "GPU": rng.choice([0, 0, 1, 2])}
                 for i in range(rng.randint(1, 4))}
        bundles = [{"CPU": rng.randint(0, 2), "GPU": rng.choice([0, 0, 0, 1])}
                   for _ in range(rng.randint(1, 4))]
        bundles = [b if any(b.values()) else {"CPU": 1} for b in bundles]
        placement = place_bundles(nodes, bundles, strategy)
        exists = brute_force_exists(nodes, bundles, strategy)
        if placement is not None:
            assert_valid(nodes, bundles, strategy, placement)
        if strategy.startswith("STRICT"):
            # exact for the strict strategies
            assert (placement is not None) == exists, (nodes, bundles)
        elif not exists:
            assert placement is None


# ---------------------------------------------------------------------------
# a node's bundles
# ---------------------------------------------------------------------------
def test_a_committed_bundle_becomes_group_resources():
    res = NodeResources({"CPU": 4, "custom": 10})
    assert res.reserve_bundles(PG, [(0, {"CPU": 2}), (1, {"custom": 1})], commit=True) is None
    assert res.available["CPU"] == 2 and res.available["custom"] == 9
    assert res.available[f"CPU_group_0_{PG}"] == 2
    assert res.available[f"CPU_group_{PG}"] == 2
    assert res.available[f"custom_group_1_{PG}"] == 1
    assert res.available[f"bundle_group_{PG}"] == 2000
    # work in bundle 0 fits; more than the bundle holds does not
    shape = group_shape({"CPU": 2}, PG, 0)
    assert res.feasible(shape) and res.fits(shape)
    assert not res.feasible(group_shape({"CPU": 3}, PG, 0))
    assert not res.fits(group_shape({"custom": 1}, PG, 0))
    res.acquire(shape)
    assert not res.fits(group_shape({"CPU": 1}, PG, -1))
    # plain work cannot use what the group holds
    assert not res.fits({"CPU": 3})


def test_reservation_is_all_or_none():
    res = NodeResources({"CPU": 2})
    err = res.reserve_bundles(PG, [(0, {"CPU": 1}), (1, {"CPU": 2})], commit=True)
    assert err and "bundle 1" in err
    assert res.available == {"CPU": 2.0}
    assert res.bundles == {}


def test_prepared_bundles_are_invisible_until_committed():
    res = NodeResources({"CPU": 2})
    assert res.reserve_bundles(PG, [(0, {"CPU": 1})], commit=False) is None
    assert res.available["CPU"] == 1
    assert f"CPU_group_{PG}" not in res.available
    res.commit_bundles(PG)
    assert res.available[f"CPU_group_{PG}"] == 1


def test_returning_gives_the_originals_back_and_drops_the_group():
    res = NodeResources({"CPU": 4})
    res.reserve_bundles(PG, [(0, {"CPU": 1}), (1, {"CPU": 1})], commit=True)
    lease = group_shape({"CPU": 1}, PG, 1)
    gpu_ids = res.acquire(lease)
    assert res.return_bundles(PG) == 2
    assert res.available == {"CPU": 4.0} and res.total == {"CPU": 4.0}
    # a lease that outlived its group gives back nothing that no longer exists
    res.release(lease, gpu_ids)
    assert res.available == {"CPU": 4.0}
    assert res.return_bundles(PG) == 0


def test_work_in_a_bundle_gets_that_bundles_gpus():
    res = NodeResources({"CPU": 4, "GPU": 3})
    res.reserve_bundles(PG, [(0, {"GPU": 1}), (1, {"GPU": 2})], commit=True)
    bundle1 = set(res.bundles[PG][1].gpu_ids)
    assert len(bundle1) == 2 and set(res.bundles[PG][0].gpu_ids).isdisjoint(bundle1)
    got = res.acquire(group_shape({"GPU": 1}, PG, 1))
    assert len(got) == 1 and got[0] in bundle1
    other = res.acquire(group_shape({"GPU": 1}, PG, 1))
    assert other != got and other[0] in bundle1
    res.release(group_shape({"GPU": 1}, PG, 1), got)
    assert res.acquire(group_shape({"GPU": 1}, PG, 1)) == got
    # the GPU left outside the group is the plain pool's
    assert res.acquire({"GPU": 1}) not in (got, other)


def test_blocked_work_in_a_group_lends_its_cpus():
    res = NodeResources({"CPU": 2})
    res.reserve_bundles(PG, [(0, {"CPU": 1})], commit=True)
    shape = group_shape({"CPU": 1}, PG, 0)
    res.acquire(shape)
    assert not res.fits(shape)
    res.lend(shape)
    assert res.fits(shape)
    res.unlend(shape)
    assert not res.fits(shape)


def test_group_shapes_name_their_group_and_bundle():
    assert pg_of_shape(group_shape({"CPU": 1}, PG, 3)) == (PG, 3)
    assert pg_of_shape(group_shape({}, PG, -1)) == (PG, -1)
    assert pg_of_shape({"CPU": 1}) is None
    assert set(group_shape({"CPU": 1}, PG, 0)) <= set(bundle_resources(PG, 0, {"CPU": 1}))


def test_a_placed_shape_travels_with_its_group_but_not_its_lease():
    s = PgShape({"CPU": 1.0})
    s.pg = (bytes.fromhex(PG), 0, False)
    s.lease = group_shape(s, PG, 0)
    back = pickle.loads(pickle.dumps(s, protocol=5))
    assert dict(back) == {"CPU": 1.0} and back.pg == s.pg and back.lease is None
