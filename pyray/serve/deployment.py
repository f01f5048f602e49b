"""@serve.deployment, Deployment.options/.bind, Application, @serve.ingress,
and building an application into the specs the controller deploys."""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import inspect
import io
from typing import Any, Callable, Dict, List, Optional

from pyray import cloudpickle
from pyray.serve.config import (UNSUPPORTED_DEPLOYMENT_OPTIONS, DeploymentConfig,
                                make_deployment_config)

_DEPLOYMENT_OPTIONS = ("name", "version", "num_replicas", "ray_actor_options", "user_config",
                       "max_ongoing_requests", "max_queued_requests", "autoscaling_config",
                       "graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s",
                       "health_check_period_s", "health_check_timeout_s",
                       "max_constructor_retry_count")

# what a replica actor may be given (Ray Serve's list)
_ACTOR_OPTIONS = {"num_cpus", "num_gpus", "memory", "object_store_memory", "resources",
                  "accelerator_type", "runtime_env", "label_selector"}


def _check_options(options: dict):
    for k in options:
        if k in UNSUPPORTED_DEPLOYMENT_OPTIONS:
            raise NotImplementedError(f"The deployment option {k!r} is not supported by "
                                      "pyray.serve (see docs/serve.md).")
        if k not in _DEPLOYMENT_OPTIONS:
            raise TypeError(f"@serve.deployment got an unexpected option {k!r}; valid "
                            f"options: {', '.join(_DEPLOYMENT_OPTIONS)}")
    rao = options.get("ray_actor_options")
    if rao is not None and not isinstance(rao, dict):
        raise TypeError(f"ray_actor_options must be a dict, got {type(rao).__name__}")
    bad = sorted(set(rao or {}) - _ACTOR_OPTIONS)
    if bad:
        raise ValueError(f"ray_actor_options {bad} are not allowed for a deployment; allowed: "
                         f"{sorted(_ACTOR_OPTIONS)}")
    name = options.get("name")
    if name is not None and (not isinstance(name, str) or not name or "#" in name):
        raise ValueError(f"A deployment's name must be a non-empty string without '#', got "
                         f"{name!r}")
    make_deployment_config(options)  # validates the values


class Deployment:
    """A class or function made into a deployment by @serve.deployment."""

    def __init__(self, func_or_class, options: dict):
        _check_options(options)
        self.func_or_class = func_or_class
        self._options = dict(options)

    @property
    def name(self) -> str:
        return self._options.get("name") or self.func_or_class.__name__

    @property
    def version(self) -> Optional[str]:
        return self._options.get("version")

    @property
    def num_replicas(self):
        return self._options.get("num_replicas", 1)

    @property
    def user_config(self):
        return self._options.get("user_config")

    @property
    def max_ongoing_requests(self) -> int:
        return self.config().max_ongoing_requests

    @property
    def max_queued_requests(self) -> int:
        return self.config().max_queued_requests

    @property
    def ray_actor_options(self) -> Optional[dict]:
        return self._options.get("ray_actor_options")

    def config(self) -> DeploymentConfig:
        return make_deployment_config(self._options)

    def options(self, **options) -> "Deployment":
        merged = dict(self._options)
        if "num_replicas" in options and "autoscaling_config" not in options:
            merged.pop("autoscaling_config", None)
        if "autoscaling_config" in options and "num_replicas" not in options:
            merged.pop("num_replicas", None)
        if "func_or_class" in options:
            return Deployment(options.pop("func_or_class"), {**merged, **options})
        merged.update(options)
        return Deployment(self.func_or_class, merged)

    def bind(self, *args, **kwargs) -> "Application":
        return Application(self, args, kwargs)

    def __call__(self, *args, **kwargs):
        raise RuntimeError("Deployments cannot be constructed directly. Use "
                           f"`{self.name}.bind()` and serve.run() instead.")

    def __repr__(self):
        return f"Deployment(name={self.name})"


class Application:
    """A deployment bound to its constructor's arguments (which may hold other
    applications: they become DeploymentHandles in the replica)."""

    def __init__(self, deployment: Deployment, args, kwargs):
        self._bound_deployment = deployment
        self._args = args
        self._kwargs = kwargs

    def __repr__(self):
        return f"Application({self._bound_deployment.name})"


def deployment(_func_or_class: Optional[Callable] = None, **options):
    """@serve.deployment or @serve.deployment(name=..., num_replicas=..., ...)."""
    _check_options(options)

    def wrap(target):
        if not (inspect.isclass(target) or inspect.isfunction(target)):
            raise TypeError("@serve.deployment must decorate a class or a function, got "
                            f"{type(target).__name__}")
        return Deployment(target, options)

    if _func_or_class is not None:
        return wrap(_func_or_class)
    return wrap


def ingress(app):
    """@serve.ingress(fastapi_app) on a deployment class: the replica serves
    the app, with the class's methods as its route handlers."""
    def wrap(cls):
        if not inspect.isclass(cls):
            raise TypeError("@serve.ingress must decorate a class (before @serve.deployment)")
        cls.__pyray_serve_asgi_app__ = app
        return cls
    return wrap


@dataclasses.dataclass
class DeploymentSpec:
    """What the controller needs to run one deployment of an application."""
    name: str
    app_name: str
    serialized: bytes          # cloudpickle of (func_or_class, init_args, init_kwargs)
    config: DeploymentConfig
    ray_actor_options: dict
    code_version: str          # replicas restart when this changes
    is_ingress: bool = False


def _reduce_state(state):
    return (type(state), (dict(state._state),))


def _dumps(obj) -> bytes:
    """cloudpickle, plus starlette's State (a FastAPI app's .state), which
    plain pickling sends into endless __getattr__ recursion on load."""
    try:
        from starlette.datastructures import State
    except ImportError:
        return cloudpickle.dumps(obj)

    class _Pickler(cloudpickle.CloudPickler):
        dispatch_table = collections.ChainMap({State: _reduce_state},
                                              cloudpickle.CloudPickler.dispatch_table)
    buf = io.BytesIO()
    _Pickler(buf, protocol=5).dump(obj)
    return buf.getvalue()


def build_app(app: Application, app_name: str) -> tuple:
    """-> (ingress deployment name, [DeploymentSpec]) for an application."""
    if not isinstance(app, Application):
        raise TypeError("serve.run() takes an Application: call .bind() on the deployment "
                        f"(`{getattr(app, 'name', app)}.bind()`), got {type(app).__name__}")
    from pyray.serve.handle import DeploymentHandle

    names: Dict[int, str] = {}
    specs: Dict[str, DeploymentSpec] = {}
    order: List[str] = []

    def name_for(a: Application) -> str:
        key = id(a)
        if key in names:
            return names[key]
        base = a._bound_deployment.name
        name, i = base, 1
        while name in names.values():
            name, i = f"{base}_{i}", i + 1
        names[key] = name
        return name

    def replace(v: Any) -> Any:
        if isinstance(v, Application):
            visit(v)
            return DeploymentHandle(names[id(v)], app_name)
        if isinstance(v, list):
            return [replace(x) for x in v]
        if isinstance(v, tuple):
            return tuple(replace(x) for x in v)
        if isinstance(v, dict):
            return {k: replace(x) for k, x in v.items()}
        if isinstance(v, Deployment):
            raise TypeError(f"A Deployment ({v.name}) was passed where a bound application is "
                            f"expected: use `{v.name}.bind()`.")
        return v

    def visit(a: Application):
        if id(a) in names:
            return
        name = name_for(a)
        d = a._bound_deployment
        args = replace(list(a._args))
        kwargs = replace(dict(a._kwargs))
        payload = _dumps((d.func_or_class, tuple(args), kwargs))
        rao = dict(d.ray_actor_options or {})
        version = d.version or hashlib.sha1(
            payload + repr(sorted(rao.items())).encode()).hexdigest()[:16]
        specs[name] = DeploymentSpec(name=name, app_name=app_name, serialized=payload,
                                     config=d.config(), ray_actor_options=rao,
                                     code_version=version)
        order.append(name)

    visit(app)
    ingress_name = names[id(app)]
    specs[ingress_name].is_ingress = True
    return ingress_name, [specs[n] for n in order]
