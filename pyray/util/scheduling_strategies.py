"""Scheduling strategies, as in Ray (``ray.util.scheduling_strategies``).

The classes live in pyray._private.scheduling_strategies, where the submit
path uses them; this is their public name.
"""
from pyray._private.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                                  PlacementGroupSchedulingStrategy)

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
