"""BasicVariantGenerator: grid expansion and random sampling of a param_space."""

import copy
import itertools
import logging
from typing import Dict, Iterator, List, Optional, Tuple, Union

import cloudpickle
import numpy as np

from pyray.tune.search.sample import _as_rng
from pyray.tune.search.searcher import Searcher
from pyray.tune.search.variant_generator import (
    count_variants, flatten_resolved_vars, format_vars, generate_variants,
    get_preset_variants, has_unresolved_values, parse_spec_vars,
)

logger = logging.getLogger(__name__)


def _check_param_space(param_space):
    if param_space is None:
        return {}
    if not isinstance(param_space, dict):
        raise TypeError(
            f"param_space must be a dict of parameter names to values or search space "
            f"definitions (tune.uniform(...), tune.grid_search([...])...), got "
            f"{type(param_space).__name__}: {param_space!r}")
    for key in param_space:
        if not isinstance(key, str):
            raise TypeError(f"param_space keys must be strings, got {key!r} ({type(key).__name__})")
    return param_space


class BasicVariantGenerator(Searcher):
    """Random search and grid search over a ``param_space``.

    Every ``grid_search`` is expanded (the first grid variable, in sorted
    key order, varies fastest) and the whole grid is repeated ``num_samples``
    times; each repetition draws fresh values for the random parameters.

    Args:
        points_to_evaluate: configs to try first; each one uses one of the
            ``num_samples`` repetitions; missing keys are drawn as usual.
        max_concurrent: at most this many live trials (0 = no limit).
        constant_grid_search: draw the random parameters once per repetition
            and keep them for all grid points.
        random_state: an int seed, ``numpy.random.Generator`` or
            ``RandomState`` making the draws reproducible.
    """

    def __init__(self, points_to_evaluate: Optional[List[Dict]] = None,
                 max_concurrent: int = 0, constant_grid_search: bool = False,
                 random_state: Union[None, int, np.random.Generator, np.random.RandomState] = None):
        super().__init__()
        if points_to_evaluate is not None:
            if not isinstance(points_to_evaluate, (list, tuple)) or not all(
                    isinstance(p, dict) for p in points_to_evaluate):
                raise TypeError("points_to_evaluate must be a list of config dicts, got "
                                f"{points_to_evaluate!r}")
        if not isinstance(max_concurrent, int) or max_concurrent < 0:
            raise ValueError(f"max_concurrent must be an int >= 0 (0: no limit), got {max_concurrent!r}")
        self._points_to_evaluate = [copy.deepcopy(p) for p in (points_to_evaluate or [])]
        self._max_concurrent = max_concurrent
        self._constant_grid_search = constant_grid_search
        _as_rng(random_state)  # validate now
        self._random_state_arg = random_state
        self._spec: Optional[Dict] = None
        self._num_samples = 1
        self._iter: Optional[Iterator] = None
        self._emitted = 0
        self._total_samples = 0
        self._live = set()
        self._info: Dict[str, Tuple[Dict, str]] = {}
        self._finished = False

    # -- setup -------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if metric is not None:
            self._metric = metric
        if mode is not None:
            self._mode = mode
        self.add_configurations(config, spec.get("num_samples", self._num_samples))
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self._max_concurrent = max_concurrent
        return True

    def add_configurations(self, param_space: Optional[Dict], num_samples: int = 1):
        """Use ``param_space`` repeated ``num_samples`` times."""
        param_space = _check_param_space(param_space)
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or (
                num_samples < 1 and num_samples != -1):
            raise ValueError(f"num_samples must be an int >= 1 (or -1 for infinite), got {num_samples!r}")
        self._spec = {"config": copy.deepcopy(param_space), "num_samples": num_samples}
        parse_spec_vars(self._spec)  # raises on malformed grids
        self._num_samples = num_samples
        if num_samples == -1:
            self._total_samples = -1
        else:
            self._total_samples = count_variants(self._spec, self._points_to_evaluate)
        self._restart_iterator(skip=0)

    def _fresh_rng(self):
        arg = self._random_state_arg
        if isinstance(arg, (np.random.Generator, np.random.RandomState)):
            arg = copy.deepcopy(arg)
        return _as_rng(arg)

    def _variants(self, rng) -> Iterator[Tuple[Dict, Dict]]:
        points = copy.deepcopy(self._points_to_evaluate)
        left = self._num_samples
        for point in points:
            left -= 1
            yield from get_preset_variants(self._spec, point, self._constant_grid_search, rng)
        counter = itertools.count() if self._num_samples == -1 else range(max(left, 0))
        for _ in counter:
            yield from generate_variants(self._spec, self._constant_grid_search, rng)

    def _restart_iterator(self, skip: int):
        self._iter = self._variants(self._fresh_rng())
        for _ in range(skip):
            next(self._iter, None)
        self._emitted = skip
        self._finished = False

    # -- Searcher ------------------------------------------------------------------
    @property
    def total_samples(self) -> int:
        """Number of configurations this generator will produce (-1: no end)."""
        return self._total_samples

    def suggest(self, trial_id: str):
        if self._iter is None:
            self.add_configurations({}, 1)
        if self._finished:
            return Searcher.FINISHED
        if self._max_concurrent and len(self._live) >= self._max_concurrent:
            return None
        try:
            resolved_vars, spec = next(self._iter)
        except StopIteration:
            self._finished = True
            return Searcher.FINISHED
        tag = str(self._emitted)
        if resolved_vars:
            tag += "_" + format_vars(resolved_vars)
        self._emitted += 1
        self._live.add(trial_id)
        self._info[trial_id] = (flatten_resolved_vars(resolved_vars), tag)
        return spec["config"]

    def is_finished(self) -> bool:
        return self._finished

    def evaluated_params(self, trial_id: str) -> Dict:
        """The drawn / grid values of a suggested trial, ``{"a/b": value}``."""
        return self._info.get(trial_id, ({}, ""))[0]

    def experiment_tag(self, trial_id: str) -> str:
        """``<index>_<key=value,...>`` for the trial's directory name."""
        return self._info.get(trial_id, ({}, ""))[1]

    def on_trial_result(self, trial_id, result):
        pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        self._live.discard(trial_id)

    # -- state -------------------------------------------------------------------
    def get_state(self) -> Dict:
        return {
            "spec": self._spec, "num_samples": self._num_samples,
            "points_to_evaluate": self._points_to_evaluate,
            "max_concurrent": self._max_concurrent,
            "constant_grid_search": self._constant_grid_search,
            "random_state": self._random_state_arg, "emitted": self._emitted,
            "total_samples": self._total_samples, "live": set(self._live),
            "info": dict(self._info), "finished": self._finished,
            "metric": self._metric, "mode": self._mode,
        }

    def set_state(self, state: Dict):
        self._spec = state["spec"]
        self._num_samples = state["num_samples"]
        self._points_to_evaluate = state["points_to_evaluate"]
        self._max_concurrent = state["max_concurrent"]
        self._constant_grid_search = state["constant_grid_search"]
        self._random_state_arg = state["random_state"]
        self._total_samples = state["total_samples"]
        self._live = set(state["live"])
        self._info = dict(state["info"])
        self._metric, self._mode = state["metric"], state["mode"]
        if self._spec is not None:
            # the draws of the configs not suggested yet are made again: with a
            # seed they are the ones the original run would have made
            self._restart_iterator(skip=state["emitted"])
        self._finished = state["finished"]

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.set_state(cloudpickle.load(f))


__all__ = ["BasicVariantGenerator", "has_unresolved_values"]
