"""Scheduling strategies, as in Ray (``ray.util.scheduling_strategies``).

The classes live in pyray._private.scheduling_strategies, where the submit
path uses them; this is their public name.
"""
from pyray._private.scheduling_strategies import (DoesNotExist, Exists, In,
                                                  NodeAffinitySchedulingStrategy,
                                                  NodeLabelSchedulingStrategy, NotIn,
                                                  PlacementGroupSchedulingStrategy)

__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy",
           "NodeLabelSchedulingStrategy", "In", "NotIn", "Exists", "DoesNotExist"]
