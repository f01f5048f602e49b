"""Ray's `ray.experimental` names that programs and libraries use:
`internal_kv` (the cluster's key-value store) and `tqdm_ray`."""
import importlib

_SUBMODULES = ("internal_kv", "tqdm_ray")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"pyray.experimental.{name}")
    raise AttributeError(f"module 'pyray.experimental' has no attribute {name!r}")
