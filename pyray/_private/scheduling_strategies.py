"""Scheduling strategies, as in Ray.  On one node every strategy places work
on that node; across nodes (pyray.cluster_utils) the raylets honour them.

Defined here, below the public API, because the submit path
(pyray._private.remote_function, pyray._private.placement_group) needs them;
users import them from pyray.util.scheduling_strategies, which re-exports
these classes."""
from __future__ import annotations


class NodeAffinitySchedulingStrategy:
    def __init__(self, node_id, soft: bool, _spill_on_unavailable=False,
                 _fail_on_unavailable=False):
        if isinstance(node_id, bytes):
            node_id = node_id.hex()
        if not isinstance(node_id, str):
            raise ValueError(f"node_id must be a hex string, got {node_id!r}")
        self.node_id = node_id
        self.soft = bool(soft)
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def _key(self):
        return ("node", self.node_id, self.soft)

    def __repr__(self):
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Places a task or actor in bundle ``placement_group_bundle_index`` of
    a placement group (-1: any of its bundles).  With
    ``placement_group_capture_child_tasks=True`` the tasks and actors it
    starts without a strategy of their own join the same group.  Checked
    (index range, fit in the bundle) when the options are set."""

    def __init__(self, placement_group, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks=None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def _key(self):
        pg_id = getattr(self.placement_group, "id", None)
        return ("pg", bytes(pg_id) if pg_id is not None else None,
                self.placement_group_bundle_index)

    def __repr__(self):
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index}, "
                "placement_group_capture_child_tasks="
                f"{self.placement_group_capture_child_tasks})")


__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
