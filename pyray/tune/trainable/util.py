"""``with_parameters`` and ``with_resources``, as in Ray."""
from __future__ import annotations

import functools
import inspect

import pyray
from pyray.tune.execution.placement_groups import PlacementGroupFactory, resources_to_pgf
from pyray.tune.trainable.trainable import Trainable

_PARAMS_ATTR = "_tune_parameter_refs"
_RESOURCES_ATTR = "_tune_resources"


class _ResolvedParameters:
    """The keyword objects of with_parameters: stored once in the object store,
    fetched in each trial's process."""

    def __init__(self, kwargs):
        self.refs = {k: pyray.put(v) for k, v in kwargs.items()}

    def get(self):
        keys = list(self.refs)
        values = pyray.get([self.refs[k] for k in keys])
        return dict(zip(keys, values))


def with_parameters(trainable, **kwargs):
    """Wraps ``trainable`` so that it receives ``kwargs`` (e.g. a large data
    set) besides its config; each object goes through the object store once,
    not once per trial."""
    if not callable(trainable):
        raise ValueError(f"with_parameters: expected a function or a Trainable class, got "
                         f"{trainable!r}.")
    params = _ResolvedParameters(kwargs)
    if inspect.isclass(trainable):
        if not issubclass(trainable, Trainable):
            raise ValueError(f"with_parameters: class {trainable.__name__} is not a "
                             f"tune.Trainable subclass.")

        class _WithParameters(trainable):
            def setup(self, config):
                return super().setup(config, **params.get())

        _WithParameters.__name__ = trainable.__name__
        _WithParameters.__qualname__ = trainable.__qualname__
        for attr in (_RESOURCES_ATTR,):
            if hasattr(trainable, attr):
                setattr(_WithParameters, attr, getattr(trainable, attr))
        return _WithParameters

    @functools.wraps(trainable)
    def _inner(config):
        return trainable(config, **params.get())

    if hasattr(trainable, _RESOURCES_ATTR):
        setattr(_inner, _RESOURCES_ATTR, getattr(trainable, _RESOURCES_ATTR))
    return _inner


def with_resources(trainable, resources):
    """Sets the resources of each trial of ``trainable``: a dict (``{"cpu": 2,
    "gpu": 1, "my_res": 1}``), a PlacementGroupFactory, or a function
    ``config -> dict | PlacementGroupFactory``."""
    if not callable(resources):
        resources = resources_to_pgf(resources)
    elif isinstance(resources, PlacementGroupFactory):
        pass
    if inspect.isclass(trainable):
        if not issubclass(trainable, Trainable):
            raise ValueError(f"with_resources: class {trainable.__name__} is not a "
                             f"tune.Trainable subclass.")

        class _WithResources(trainable):
            pass

        _WithResources.__name__ = trainable.__name__
        _WithResources.__qualname__ = trainable.__qualname__
        setattr(_WithResources, _RESOURCES_ATTR, resources)
        return _WithResources

    @functools.wraps(trainable)
    def _inner(config):
        return trainable(config)

    setattr(_inner, _RESOURCES_ATTR, resources)
    return _inner


def trial_resources(trainable, config):
    """The PlacementGroupFactory of a trial of ``trainable`` with ``config``
    (1 CPU unless with_resources or default_resource_request says otherwise)."""
    res = getattr(trainable, _RESOURCES_ATTR, None)
    if res is None and inspect.isclass(trainable) and issubclass(trainable, Trainable):
        res = trainable.default_resource_request(config)
    if res is None:
        return PlacementGroupFactory([{"CPU": 1}])
    if callable(res) and not isinstance(res, PlacementGroupFactory):
        res = res(config)
    return resources_to_pgf(res)
