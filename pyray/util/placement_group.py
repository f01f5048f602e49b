"""Placement groups, as in Ray: reserve bundles of resources across the
cluster, then place tasks and actors in them.

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
    pyray.get(pg.ready())
    f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    remove_placement_group(pg)

This module is the public API: it checks arguments and calls the client in
pyray._private.placement_group, which talks to the GCS and places work.  See
docs/placement_groups.md.
"""
from __future__ import annotations

import math

from pyray._private import placement_group as _pg
from pyray._private.placement_group import PlacementGroup
from pyray.exceptions import TaskPlacementGroupRemoved

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def placement_group(bundles, strategy="PACK", name="", lifetime=None,
                    _soft_target_node_id=None, bundle_label_selector=None):
    """Reserves ``bundles`` (a list of resource dicts) on the cluster's
    nodes by ``strategy``; returns at once.  ``pg.ready()`` / ``pg.wait()``
    tell when the reservation is done."""
    bundles = validate_bundles(bundles)
    if strategy is None:
        strategy = "PACK"
    if strategy not in STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy!r}. Supported "
                         f"strategies are: {list(STRATEGIES)}.")
    if lifetime not in (None, "detached"):
        raise ValueError("Placement group `lifetime` argument must be either `None` or "
                         f"'detached'. Got {lifetime!r}.")
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise TypeError(f"The placement group name must be a string, got {name!r}")
    return _pg.create(bundles, strategy, name, lifetime == "detached", bundle_label_selector)


def remove_placement_group(placement_group):
    """Removes the group: its bundles are given back, and the actors and
    tasks running in it are killed."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError("remove_placement_group() expects a PlacementGroup, got "
                        f"{type(placement_group).__name__}")
    _pg.remove(placement_group)


def get_placement_group(placement_group_name):
    """The live placement group with this name (in the current namespace)."""
    if not placement_group_name or not isinstance(placement_group_name, str):
        raise ValueError("Please supply a non-empty value to get_placement_group")
    found = _pg.named(placement_group_name)
    if found is None:
        raise ValueError(f"Failed to look up placement group with name: "
                         f"{placement_group_name}")
    return found


def placement_group_table(placement_group=None):
    """The GCS's record of one group (``{}`` if unknown), or of all groups
    keyed by hex id."""
    if placement_group is not None and not isinstance(placement_group, PlacementGroup):
        raise TypeError("placement_group_table() expects a PlacementGroup or None, got "
                        f"{type(placement_group).__name__}")
    return _pg.table(bytes(placement_group.id) if placement_group is not None else None)


def get_current_placement_group():
    """The placement group the calling task or actor runs in, else None
    (always None in a driver)."""
    return _pg.current()


# ---------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------
def validate_bundles(bundles):
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if not bundles:
        raise ValueError('Bundles must be a non-empty list of resource dictionaries. For '
                         'example: `[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.')
    out = []
    for i, b in enumerate(bundles):
        if not isinstance(b, dict) or not all(isinstance(k, str) and k for k in b) or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                        math.isfinite(v) for v in b.values()):
            raise ValueError('Bundles must be a non-empty list of resource dictionaries. '
                             f'For example: `[{{"CPU": 1.0}}, {{"GPU": 1.0}}]`. Bundle {i} '
                             f'is {b!r}.')
        bad = {k: v for k, v in b.items() if v < 0}
        if bad:
            raise ValueError(f"Bundle {i} asks for negative resources {bad}: amounts must "
                             "be >= 0.")
        if all(v == 0 for v in b.values()):
            raise ValueError("Bundles cannot be an empty dictionary or resources with only "
                             f"0 values. Bundles: {list(bundles)}")
        for k, v in b.items():
            if v > 1 and v != int(v):
                raise ValueError(f"Bundle {i}: resource {k!r} must be a whole number when "
                                 f"greater than 1, got {v}.")
            if "_group_" in k:
                raise ValueError(f"Bundle {i}: {k!r} names a placement group resource; "
                                 "bundles ask for plain resources.")
        out.append({k: float(v) for k, v in b.items() if v > 0})
    return out


__all__ = ["PlacementGroup", "placement_group", "remove_placement_group",
           "get_placement_group", "placement_group_table", "get_current_placement_group",
           "TaskPlacementGroupRemoved"]
