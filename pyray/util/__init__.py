"""Utilities: ActorPool, named-actor listing, placement groups,
inspect_serializability; the submodules queue (Queue), multiprocessing
(Pool) and joblib (register_ray) load on first use."""
import importlib

from pyray.util.actor_pool import ActorPool
from pyray.util.check_serialize import inspect_serializability
from pyray.util.placement_group import (PlacementGroup, get_current_placement_group,
                                        get_placement_group, placement_group,
                                        placement_group_table, remove_placement_group)


def list_named_actors(all_namespaces: bool = False):
    from pyray._private.context import ctx
    from pyray._private.protocol import Op
    from pyray._private.remote_function import ensure_initialized
    cw = ctx.core_worker or ensure_initialized()
    return cw.rpc(cw.gcs_addr, Op.LIST_NAMED_ACTORS, bool(all_namespaces), ctx.namespace)


_SUBMODULES = ("queue", "multiprocessing", "joblib")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"pyray.util.{name}")
    raise AttributeError(f"module 'pyray.util' has no attribute {name!r}")


__all__ = ["ActorPool", "inspect_serializability", "list_named_actors", "PlacementGroup",
           "placement_group", "remove_placement_group", "get_placement_group", "placement_group_table",
           "get_current_placement_group"]
