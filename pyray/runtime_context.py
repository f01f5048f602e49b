"""`pyray.runtime_context`, as Ray's `ray.runtime_context`: the
`RuntimeContext` class that `pyray.get_runtime_context()` returns."""
from pyray._private.runtime_context import RuntimeContext, get_runtime_context

__all__ = ["RuntimeContext", "get_runtime_context"]
