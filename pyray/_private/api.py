"""@remote and @method."""
from __future__ import annotations

import inspect

from pyray._private.remote_function import RemoteFunction


def remote(*args, **kwargs):
    """@remote or @remote(**options) on a function (a task) or a class (an actor)."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError("@remote takes either no arguments or only keyword options, "
                        f"e.g. @remote(num_cpus=2); got positional {args!r}")

    def deco(obj):
        return _make(obj, kwargs)
    return deco


def _make(obj, options):
    if inspect.isclass(obj):
        from pyray.actor import make_actor_class
        return make_actor_class(obj, options)
    if callable(obj):
        return RemoteFunction(obj, options)
    raise TypeError(f"@remote expects a function or a class, got {type(obj).__name__}")


def method(*args, **kwargs):
    """@method(num_returns=...) on an actor method."""
    valid = {"num_returns", "concurrency_group", "max_task_retries", "retry_exceptions",
             "enable_task_events", "_generator_backpressure_num_objects"}
    bad = set(kwargs) - valid
    if bad:
        raise ValueError(f"Invalid option(s) for @method: {sorted(bad)}; valid ones are "
                         f"{sorted(valid)}")
    if args:
        raise TypeError("@method takes only keyword options, e.g. @method(num_returns=2)")

    def deco(fn):
        fn.__pyray_method_options__ = kwargs
        return fn
    return deco
