"""Utilities: ActorPool, named-actor listing, placement groups,
inspect_serializability, custom serializers, log_once; the submodules queue
(Queue), multiprocessing (Pool), joblib (register_ray), accelerators,
annotations and metrics (Counter, Gauge, Histogram) load on first use."""
import importlib
import socket

from pyray.util.actor_pool import ActorPool
from pyray.util.check_serialize import inspect_serializability
from pyray.util.debug import disable_log_once_globally, enable_periodic_logging, log_once
from pyray.util.placement_group import (PlacementGroup, get_current_placement_group,
                                        get_placement_group, placement_group,
                                        placement_group_table, remove_placement_group)
from pyray.util.serialization import deregister_serializer, register_serializer


def list_named_actors(all_namespaces: bool = False):
    from pyray._private.context import ctx
    from pyray._private.protocol import Op
    from pyray._private.remote_function import ensure_initialized
    cw = ctx.core_worker or ensure_initialized()
    return cw.rpc(cw.gcs_addr, Op.LIST_NAMED_ACTORS, bool(all_namespaces), ctx.namespace)


def get_node_ip_address(address: str = "8.8.8.8:53") -> str:
    """The IP address of this node: the connected node's, else the address
    this machine would use to reach `address` (no packet is sent)."""
    from pyray._private.context import ctx
    node = ctx.node or {}
    if node.get("node_ip"):
        return node["node_ip"]
    host, _, port = address.rpartition(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, int(port)))
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


_SUBMODULES = ("queue", "multiprocessing", "joblib", "accelerators", "annotations", "debug",
               "serialization", "scheduling_strategies", "placement_group", "actor_pool", "metrics")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"pyray.util.{name}")
    raise AttributeError(f"module 'pyray.util' has no attribute {name!r}")


__all__ = ["ActorPool", "inspect_serializability", "list_named_actors", "PlacementGroup",
           "get_node_ip_address", "register_serializer", "deregister_serializer", "log_once",
           "disable_log_once_globally", "enable_periodic_logging",
           "placement_group", "remove_placement_group", "get_placement_group", "placement_group_table",
           "get_current_placement_group"]
