"""pyray: a fast distributed runtime for Python with Ray's programming model.

    import pyray as ray
    ray.init()

    @ray.remote
    def f(x):
        return x * 2

    ray.get([f.remote(i) for i in range(4)])   # [0, 2, 4, 6]
"""
from pyray._version import __version__
from pyray import exceptions
from pyray._private.object_ref import ObjectRef
from pyray._private.worker import (available_resources, cancel, cluster_resources, get,
                                   get_gpu_ids, init, is_initialized, nodes, put, shutdown,
                                   wait)
from pyray._private.runtime_context import get_runtime_context
from pyray._private.api import method, remote

__all__ = ["__version__", "ObjectRef", "available_resources", "cancel", "cluster_resources",
           "exceptions", "get", "get_gpu_ids", "get_runtime_context", "init",
           "is_initialized", "method", "nodes", "put", "remote", "shutdown", "wait"]

from pyray.actor import get_actor, kill  # noqa: E402
from pyray import actor, util  # noqa: E402

__all__ += ["get_actor", "kill", "actor", "util"]
