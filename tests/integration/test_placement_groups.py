"""Placement groups against a real local cluster: creation by each strategy,
tasks and actors placed in bundles, groups that cannot be placed (pending,
reported, created once resources free up), removal (resources back, work in
the group killed), names, the table, and bad input."""
import os
import time

import pytest

import pyray
from pyray.exceptions import RayActorError
from pyray.util import (get_current_placement_group, get_placement_group, placement_group,
                        placement_group_table, remove_placement_group)
from pyray.util.placement_group import PlacementGroup, TaskPlacementGroupRemoved
from pyray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "num_gpus": 2, "resources": {"custom": 4},
                 "object_store_memory": 256 << 20}


def in_pg(pg, index=-1, capture=None):
    return PlacementGroupSchedulingStrategy(pg, index, capture)


@pytest.fixture
def groups(ray_start, wait_for):
    """Creates groups for one test and removes them all afterwards; the
    next test starts with the whole node free again."""
    made = []

    def make(*args, **kwargs):
        pg = placement_group(*args, **kwargs)
        made.append(pg)
        return pg

    yield make
    for pg in made:
        remove_placement_group(pg)
    wait_for(lambda: all(pyray.available_resources().get(k) == v
                         for k, v in (("CPU", 2.0), ("GPU", 2.0), ("custom", 4.0))),
             timeout=10, what="the node's resources to come back")


@pyray.remote
def where():
    pg = get_current_placement_group()
    return (pyray.get_runtime_context().get_assigned_resources(),
            pg.id.hex() if pg is not None else None)


@pyray.remote
def child_placement():
    return pyray.get(where.remote())[1]


@pyray.remote(num_cpus=0, num_gpus=1)
def gpu_ids():
    return pyray.get_gpu_ids()


@pyray.remote
def wait_for_file(path):
    while not os.path.exists(path):
        time.sleep(0.01)
    return "released"


@pyray.remote
class Holder:
    def placement(self):
        pg = get_current_placement_group()
        return pg.id.hex() if pg is not None else None

    def ping(self):
        return "pong"


def group_resources(pg):
    hexid = pg.id.hex()
    return {k: v for k, v in pyray.available_resources().items() if k.endswith(hexid)}


# ---------------------------------------------------------------------------
def test_create_wait_ready_and_remove(groups, wait_for):
    pg = groups([{"CPU": 1}, {"custom": 2}])
    assert pyray.get(pg.ready(), timeout=10) == pg
    ready, not_ready = pyray.wait([pg.ready()], timeout=10)
    assert len(ready) == 1 and not not_ready
    assert pg.wait(timeout_seconds=10)
    assert pg.bundle_specs == [{"CPU": 1.0}, {"custom": 2.0}] and pg.bundle_count == 2
    avail = pyray.available_resources()
    assert avail["CPU"] == 1.0 and avail["custom"] == 2.0
    assert group_resources(pg)[f"CPU_group_0_{pg.id.hex()}"] == 1.0
    assert group_resources(pg)[f"custom_group_{pg.id.hex()}"] == 2.0
    remove_placement_group(pg)
    wait_for(lambda: placement_group_table(pg)["state"] == "REMOVED", what="REMOVED")
    wait_for(lambda: not group_resources(pg) and
             pyray.available_resources()["CPU"] == 2.0, what="the bundle's resources back")


def test_table_has_rays_shape(groups):
    pg = groups([{"CPU": 1}, {"custom": 1}], strategy="SPREAD", name="shaped")
    assert pg.wait(10)
    row = placement_group_table(pg)
    node = pyray.get_runtime_context().get_node_id()
    assert row["placement_group_id"] == pg.id.hex()
    assert row["name"] == "shaped" and row["strategy"] == "SPREAD"
    assert row["state"] == "CREATED"
    assert row["bundles"] == {0: {"CPU": 1.0}, 1: {"custom": 1.0}}
    assert row["bundles_to_node_id"] == {0: node, 1: node}
    assert row["stats"]["scheduling_attempt"] >= 1
    assert placement_group_table()[pg.id.hex()] == row
    assert placement_group_table(PlacementGroup(b"\x01" * 16)) == {}


@pytest.mark.parametrize("strategy", ["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"])
def test_each_strategy_places_what_one_node_can_hold(groups, strategy):
    bundles = [{"CPU": 1}] if strategy == "STRICT_SPREAD" else [{"CPU": 1}, {"custom": 1}]
    pg = groups(bundles, strategy=strategy)
    assert pg.wait(10)
    node = pyray.get_runtime_context().get_node_id()
    assert set(placement_group_table(pg)["bundles_to_node_id"].values()) == {node}


def test_strict_spread_beyond_the_nodes_stays_pending_and_is_reported(groups, capfd, wait_for):
    pg = groups([{"custom": 1}, {"custom": 1}], strategy="STRICT_SPREAD")
    assert not pg.wait(0.3)
    assert placement_group_table(pg)["state"] == "PENDING"
    err = wait_for(lambda: capfd.readouterr().err or None, timeout=5, what="a warning")
    assert pg.id.hex() in err and "STRICT_SPREAD" in err and "PENDING" in err
    assert pyray.available_resources()["custom"] == 4.0     # nothing half-reserved


def test_task_in_a_bundle_uses_the_bundle(groups):
    pg = groups([{"CPU": 1}, {"custom": 2}])
    assigned, pg_hex = pyray.get(where.options(scheduling_strategy=in_pg(pg, 0)).remote(),
                                 timeout=10)
    assert assigned == {"CPU": 1.0} and pg_hex == pg.id.hex()
    assigned, _ = pyray.get(where.options(num_cpus=0, resources={"custom": 2},
                                          scheduling_strategy=in_pg(pg, 1)).remote(), timeout=10)
    assert assigned == {"custom": 2.0}
    # the older options spell the same thing
    _, pg_hex = pyray.get(where.options(placement_group=pg, placement_group_bundle_index=0)
                          .remote(), timeout=10)
    assert pg_hex == pg.id.hex()
    # outside a group: nothing
    assert pyray.get(where.remote(), timeout=10)[1] is None
    assert get_current_placement_group() is None


def test_actor_in_a_bundle_holds_its_resources_and_dies_with_the_group(groups, wait_for):
    pg = groups([{"CPU": 1}, {"CPU": 1}])
    actor = Holder.options(num_cpus=1, scheduling_strategy=in_pg(pg, 1)).remote()
    assert pyray.get(actor.placement.remote(), timeout=10) == pg.id.hex()
    hexid = pg.id.hex()
    wait_for(lambda: group_resources(pg).get(f"CPU_group_1_{hexid}") == 0.0,
             what="the actor's CPU taken from bundle 1")
    assert group_resources(pg)[f"CPU_group_0_{hexid}"] == 1.0
    remove_placement_group(pg)
    with pytest.raises(RayActorError, match="placement group"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pyray.get(actor.ping.remote(), timeout=10)
            time.sleep(0.05)


def test_removing_a_group_kills_its_running_task(groups, release):
    pg = groups([{"CPU": 1}])
    assert pg.wait(10)
    ref = wait_for_file.options(scheduling_strategy=in_pg(pg)).remote(str(release))
    assert not pyray.wait([ref], timeout=0.3)[0]
    remove_placement_group(pg)
    with pytest.raises(TaskPlacementGroupRemoved):
        pyray.get(ref, timeout=20)
    # work sent to a removed group fails rather than waiting forever
    with pytest.raises(TaskPlacementGroupRemoved):
        pyray.get(where.options(scheduling_strategy=in_pg(pg)).remote(), timeout=20)
    with pytest.raises(TaskPlacementGroupRemoved):
        pyray.get(pg.ready(), timeout=10)
    assert not pg.wait(1)


def test_pending_group_is_created_once_another_is_removed(groups, capfd, wait_for):
    big = groups([{"CPU": 2}])
    assert big.wait(10)
    small = groups([{"CPU": 1}], name="waiting")
    ready = small.ready()
    assert not pyray.wait([ready], timeout=0.3)[0]
    assert placement_group_table(small)["state"] == "PENDING"
    err = wait_for(lambda: capfd.readouterr().err or None, timeout=5, what="a warning")
    assert "'waiting'" in err and "PENDING" in err
    remove_placement_group(big)
    assert pyray.get(ready, timeout=10) == small
    assert placement_group_table(small)["state"] == "CREATED"


def test_child_tasks_join_a_capturing_group(groups):
    # one CPU in the group, one outside it: a child that joins the group
    # runs on the CPU its blocked parent lends
    pg = groups([{"CPU": 1}])
    capturing = child_placement.options(scheduling_strategy=in_pg(pg, 0, capture=True))
    assert pyray.get(capturing.remote(), timeout=20) == pg.id.hex()
    plain = child_placement.options(scheduling_strategy=in_pg(pg, 0))
    assert pyray.get(plain.remote(), timeout=20) is None


def test_work_in_a_bundle_gets_the_bundles_gpu(groups):
    first = groups([{"GPU": 1}])
    second = groups([{"GPU": 1}])
    assert first.wait(10) and second.wait(10)
    a = pyray.get(gpu_ids.options(scheduling_strategy=in_pg(first, 0)).remote(), timeout=10)
    b = pyray.get(gpu_ids.options(scheduling_strategy=in_pg(second)).remote(), timeout=10)
    assert len(a) == 1 and len(b) == 1 and a != b
    assert pyray.get(gpu_ids.options(scheduling_strategy=in_pg(first)).remote(),
                     timeout=10) == a


def test_malformed_messages_leave_the_daemons_working(groups):
    from pyray._private.context import ctx
    from pyray._private.protocol import Op
    cw = ctx.core_worker
    for msg in [(Op.PG_CREATE, 0, cw.addr, {"garbage": True}),
                (Op.PG_CREATE, 0, cw.addr, {"pg_id": b"x" * 16, "strategy": "PACK",
                                            "bundles": [{"CPU": -5}], "creator": cw.addr}),
                (Op.PG_REMOVE, ["not", "an", "id"]), (Op.PG_SUBSCRIBE, 1, 2),
                (Op.PG_TABLE,), (Op.RESPONSE, ("pg", 10 ** 6), True, "junk"), (Op.PG_RETURN,)]:
        cw.out.send(cw.gcs_addr, msg)
    for msg in [(Op.PG_RESERVE, 1, cw.addr, b"y" * 16, [(0, {"CPU": "lots"})], True),
                (Op.PG_RESERVE, 2, cw.addr, "not bytes", None, True),
                (Op.PG_RETURN, 7, True), (Op.PG_RETURN,)]:
        cw.out.send(cw.raylet_addr, msg)
    pg = groups([{"CPU": 1}])
    assert pg.wait(10)
    assert pyray.get(where.options(scheduling_strategy=in_pg(pg)).remote(), timeout=10)[1] \
        == pg.id.hex()
    assert pyray.available_resources()["CPU"] == 1.0


def test_names(groups):
    pg = groups([{"custom": 1}], name="named")
    found = get_placement_group("named")
    assert found == pg and found.bundle_specs == [{"custom": 1.0}]
    assert found.wait(10)
    with pytest.raises(ValueError, match="already taken"):
        placement_group([{"custom": 1}], name="named")
    remove_placement_group(pg)
    with pytest.raises(ValueError, match="Failed to look up"):
        get_placement_group("named")
    again = groups([{"custom": 1}], name="named")
    assert get_placement_group("named") == again


@pytest.mark.parametrize("bundles", [[], [{}], [{"CPU": 0}], [{"CPU": -1}], {"CPU": 1},
                                     [{"CPU": "one"}], [{"CPU": 1.5}],
                                     [{"CPU": float("nan")}], ["CPU"]])
def test_bad_bundles(ray_start, bundles):
    with pytest.raises(ValueError):
        placement_group(bundles)


def test_bad_arguments(groups):
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="TIGHT")
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    with pytest.raises(TypeError):
        remove_placement_group("not a group")
    pg = groups([{"CPU": 1}])
    with pytest.raises(ValueError):
        pg.wait(-1)
    with pytest.raises(ValueError, match="index 1 is invalid"):
        where.options(scheduling_strategy=in_pg(pg, 1))
    with pytest.raises(ValueError, match="index -2 is invalid"):
        Holder.options(scheduling_strategy=in_pg(pg, -2)).remote()
    with pytest.raises(ValueError, match="cannot fit"):
        where.options(num_cpus=2, scheduling_strategy=in_pg(pg, 0))
    with pytest.raises(ValueError, match="cannot fit"):
        where.options(resources={"custom": 1}, scheduling_strategy=in_pg(pg))


def test_a_drivers_groups_end_with_it_unless_detached(ray_start, driver, wait_for):
    d = driver(f"""
        import pyray
        from pyray.util import placement_group
        pyray.init(address={ray_start['address']!r}, namespace="pgs")
        a = placement_group([{{"custom": 1}}], name="fate")
        b = placement_group([{{"custom": 1}}], name="kept", lifetime="detached")
        assert a.wait(10) and b.wait(10)
        print("ready", flush=True)
    """)
    d.wait_for_line(lambda line: line == "ready")
    assert d.wait() == 0

    def states():
        return {r["name"]: r["state"] for r in placement_group_table().values()
                if r["name"] in ("fate", "kept")}
    wait_for(lambda: states() == {"fate": "REMOVED", "kept": "CREATED"},
             what="the driver's group removed, the detached one kept")
    kept = [r for r in placement_group_table().values()
            if r["name"] == "kept" and r["state"] == "CREATED"][0]
    remove_placement_group(PlacementGroup(bytes.fromhex(kept["placement_group_id"])))
    wait_for(lambda: pyray.available_resources().get("custom") == 4.0,
             what="the detached group's resources back")
