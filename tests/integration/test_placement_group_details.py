"""Placement group details as Ray 2.x has them: argument checks, the
DeprecationWarning for the older placement_group* options, the conflict
between those and scheduling_strategy, ready() in get and wait, wait()'s
bool, the table's fields, the current group inside a task, removing twice."""
import warnings

import pytest

import pyray
from pyray.util import (get_current_placement_group, placement_group, placement_group_table,
                        remove_placement_group)
from pyray.util.placement_group import PlacementGroup
from pyray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20}


@pyray.remote(num_cpus=0)
def current():
    pg = get_current_placement_group()
    return pg.id.hex() if pg is not None else None


@pyray.remote(num_cpus=0)
class Where:
    def current(self):
        pg = get_current_placement_group()
        return pg.id.hex() if pg is not None else None


@pytest.fixture
def pg(ray_start):
    group = placement_group([{"CPU": 1}], strategy="PACK", name="details")
    assert group.wait(10)
    yield group
    remove_placement_group(group)


@pytest.mark.parametrize("bundles", [({"CPU": 1},), [{"CPU": 0, "GPU": 0}], [{1: 1}],
                                     [{"CPU": 1}, {}], "CPU"])
def test_bundles_are_a_non_empty_list_of_non_empty_dicts(ray_start, bundles):
    with pytest.raises(ValueError):
        placement_group(bundles)


def test_strategy_lifetime_and_name_are_checked(ray_start):
    with pytest.raises(ValueError, match="Invalid placement group strategy"):
        placement_group([{"CPU": 1}], strategy="pack")
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="non_detached")
    with pytest.raises(TypeError):
        placement_group([{"CPU": 1}], name=3)


def test_ready_is_an_object_ref_for_get_and_wait(pg):
    ref = pg.ready()
    assert isinstance(ref, pyray.ObjectRef)
    assert pyray.get(ref, timeout=10) == pg
    ready, not_ready = pyray.wait([pg.ready()], timeout=10)
    assert len(ready) == 1 and not not_ready
    assert pg.wait(10) is True
    pending = placement_group([{"CPU": 64}])
    try:
        assert pending.wait(0.2) is False
        ready, not_ready = pyray.wait([pending.ready()], timeout=0.2)
        assert ready == [] and len(not_ready) == 1
    finally:
        remove_placement_group(pending)


def test_table_fields(pg):
    row = placement_group_table(pg)
    for key in ("placement_group_id", "name", "bundles", "strategy", "state", "stats"):
        assert key in row, key
    assert row["placement_group_id"] == pg.id.hex() and row["name"] == "details"
    assert row["bundles"] == {0: {"CPU": 1.0}} and row["strategy"] == "PACK"
    assert row["state"] == "CREATED"


def test_current_group_inside_a_task_and_an_actor(pg):
    strategy = PlacementGroupSchedulingStrategy(pg, 0)
    assert pyray.get(current.options(scheduling_strategy=strategy).remote()) == pg.id.hex()
    assert pyray.get(current.remote()) is None
    a = Where.options(scheduling_strategy=strategy).remote()
    assert pyray.get(a.current.remote()) == pg.id.hex()
    assert get_current_placement_group() is None


def test_removing_twice_or_an_unknown_group_is_fine(ray_start, wait_for):
    group = placement_group([{"CPU": 1}])
    assert group.wait(10)
    for _ in range(3):
        remove_placement_group(group)
    wait_for(lambda: placement_group_table(group)["state"] == "REMOVED", what="REMOVED")
    unknown = PlacementGroup(b"\x07" * 16)
    for _ in range(3):
        remove_placement_group(unknown)
    assert pyray.get(current.remote()) is None         # the cluster still works


def test_bundle_index_out_of_range(pg):
    with pytest.raises(ValueError, match="bundle index 1 is invalid"):
        current.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 1)).remote()
    with pytest.raises(ValueError, match="bundle index 5 is invalid"):
        Where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 5)).remote()
    with pytest.raises(ValueError, match="bundle index -2 is invalid"):
        current.options(placement_group=pg, placement_group_bundle_index=-2).remote()
    # an index without a group
    with pytest.raises(ValueError, match="bundle index must be -1"):
        current.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            PlacementGroup.empty(), 0)).remote()


def test_older_options_warn_as_ray_does(pg):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ref = current.options(placement_group=pg, placement_group_bundle_index=0).remote()
    messages = [str(x.message) for x in w if x.category is DeprecationWarning]
    assert any("placement_group parameter is deprecated" in m for m in messages), messages
    assert any("placement_group_bundle_index parameter is deprecated" in m
               for m in messages), messages
    assert all(x.filename == __file__ for x in w if x.category is DeprecationWarning)
    assert pyray.get(ref) == pg.id.hex()

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = Where.options(placement_group=pg, placement_group_bundle_index=0).remote()
    assert any("placement_group parameter is deprecated" in str(x.message) for x in w)
    assert all(x.filename == __file__ for x in w if x.category is DeprecationWarning)
    assert pyray.get(a.current.remote()) == pg.id.hex()
    pyray.kill(a)

    # the version in the link follows pyray.__version__, as Ray's follows ray.__version__
    version = pyray.__version__
    try:
        pyray.__version__ = "1.13.0"
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            current.options(placement_group=pg)
        assert any("docs.ray.io/en/releases-1.13.0" in str(x.message) for x in w)
    finally:
        pyray.__version__ = version

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        strategy = PlacementGroupSchedulingStrategy(pg, 0)
        pyray.get(current.options(scheduling_strategy=strategy).remote())
        b = Where.options(scheduling_strategy=strategy).remote()
        pyray.get(b.current.remote())
    assert not w, [str(x.message) for x in w]


def test_older_option_and_a_strategy_conflict(pg):
    for strategy in ("DEFAULT", "SPREAD", PlacementGroupSchedulingStrategy(pg)):
        with pytest.raises(ValueError, match="should be specified via the scheduling_strategy"):
            current.options(placement_group=pg, scheduling_strategy=strategy).remote()
    # placement_group=None next to a strategy is allowed (Ray's own libraries do it)
    with pytest.warns(DeprecationWarning, match="placement_group parameter is deprecated"):
        spread = current.options(placement_group=None, scheduling_strategy="SPREAD")
    assert pyray.get(spread.remote()) is None
