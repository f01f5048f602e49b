"""pyray: a fast distributed runtime for Python with Ray's programming model.

    import pyray as ray
    ray.init()

    @ray.remote
    def f(x):
        return x * 2

    ray.get([f.remote(i) for i in range(4)])   # [0, 2, 4, 6]

The public names are loaded on first use, so the daemons (GCS, raylet) that
import pieces of this package start without paying for the whole API.
"""
import importlib

from pyray._version import __version__

_API = {
    "ObjectRef": "pyray._private.object_ref",
    "ObjectRefGenerator": "pyray._private.generators",
    "DynamicObjectRefGenerator": "pyray._private.generators",
    "available_resources": "pyray._private.api",
    "cancel": "pyray._private.api",
    "cluster_resources": "pyray._private.api",
    "get": "pyray._private.api",
    "get_gpu_ids": "pyray._private.api",
    "init": "pyray._private.api",
    "is_initialized": "pyray._private.api",
    "nodes": "pyray._private.api",
    "timeline": "pyray._private.timeline",
    "put": "pyray._private.api",
    "shutdown": "pyray._private.api",
    "wait": "pyray._private.api",
    "get_runtime_context": "pyray._private.runtime_context",
    "method": "pyray._private.api",
    "remote": "pyray._private.api",
    "get_actor": "pyray.actor",
    "kill": "pyray.actor",
}
_SUBMODULES = {"actor", "cloudpickle", "dag", "data", "exceptions", "experimental", "job_config",
               "remote_function", "runtime_context", "runtime_env", "types", "util"}

# Ray's worker modes, for programs that compare against them
SCRIPT_MODE, WORKER_MODE, LOCAL_MODE = 0, 1, 2


def _cross_language(*args, **kwargs):
    raise NotImplementedError("pyray runs Python only: Java and C++ functions and actors "
                              "(java_function, java_actor_class, cpp_function) are not "
                              "supported.")


java_function = java_actor_class = cpp_function = _cross_language

__all__ = (["__version__", "SCRIPT_MODE", "WORKER_MODE", "LOCAL_MODE", "java_function",
            "java_actor_class", "cpp_function"] + sorted(_API) + sorted(_SUBMODULES))


def __getattr__(name):
    mod = _API.get(name)
    if mod is not None:
        value = getattr(importlib.import_module(mod), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"pyray.{name}")
    else:
        raise AttributeError(f"module 'pyray' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
