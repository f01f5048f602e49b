"""SearchGenerator: what the experiment controller talks to.

It wraps a :class:`Searcher` (a user's own, OptunaSearch, a ConcurrencyLimiter
...) so that every search algorithm looks the same to the controller:
``suggest(trial_id)`` returns a complete config (the searcher's suggestion
merged into the constant part of ``param_space``), ``None`` (nothing now) or
``Searcher.FINISHED`` once ``num_samples`` configs were handed out or the
searcher says it is done. :func:`resolve_search_algorithm` builds the right
one from TuneConfig's arguments.
"""

import copy
from typing import Dict, Optional, Union

import cloudpickle

from pyray.tune.search.basic_variant import BasicVariantGenerator, _check_param_space
from pyray.tune.search.concurrency_limiter import ConcurrencyLimiter
from pyray.tune.search.searcher import Searcher, _WrappingSearcher, validate_mode
from pyray.tune.search.variant_generator import (
    flatten_dict, format_vars, generate_variants, has_unresolved_values, merge_dicts,
    resolve_nested_dict,
)


class SearchGenerator(_WrappingSearcher):
    """Adapts a :class:`Searcher` to the controller (num_samples, merge of the
    suggestion into ``param_space``, per-trial tags)."""

    def __init__(self, searcher: Searcher):
        if not isinstance(searcher, Searcher):
            raise TypeError(
                f"search_alg must be a pyray.tune.search.Searcher (or a name such as "
                f"'optuna'), got {type(searcher).__name__}")
        super().__init__()
        self.searcher = searcher
        self._param_space: Dict = {}
        self._num_samples = 1
        self._counter = 0
        self._finished = False
        self._info: Dict[str, tuple] = {}

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def add_configurations(self, param_space: Optional[Dict], num_samples: int = 1):
        self._param_space = copy.deepcopy(_check_param_space(param_space))
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or (
                num_samples < 1 and num_samples != -1):
            raise ValueError(f"num_samples must be an int >= 1 (or -1 for infinite), got {num_samples!r}")
        self._num_samples = num_samples

    @property
    def total_samples(self) -> int:
        return self._num_samples

    def is_finished(self) -> bool:
        return self._finished

    def suggest(self, trial_id: str):
        if self._finished:
            return Searcher.FINISHED
        if self._num_samples != -1 and self._counter >= self._num_samples:
            self._finished = True
            return Searcher.FINISHED
        suggestion = self.searcher.suggest(trial_id)
        if suggestion == Searcher.FINISHED:
            self._finished = True
            return Searcher.FINISHED
        if suggestion is None:
            return None
        if not isinstance(suggestion, dict):
            raise TypeError(
                f"{type(self.searcher).__name__}.suggest() returned {suggestion!r}: it must "
                "return a config dict, None (no suggestion now) or Searcher.FINISHED")
        config = merge_dicts(self._param_space, copy.deepcopy(suggestion))
        if has_unresolved_values(config):
            # parameters the searcher does not handle are drawn at random
            _, spec = next(generate_variants({"config": config}))
            config = spec["config"]
        self._counter += 1
        tag = f"{self._counter}_{format_vars(resolve_nested_dict(config))}"
        self._info[trial_id] = (flatten_dict(suggestion), tag)
        return config

    def evaluated_params(self, trial_id: str) -> Dict:
        return self._info.get(trial_id, ({}, ""))[0]

    def experiment_tag(self, trial_id: str) -> str:
        return self._info.get(trial_id, ({}, ""))[1]

    def on_trial_result(self, trial_id, result):
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self) -> Dict:
        return {"param_space": self._param_space, "num_samples": self._num_samples,
                "counter": self._counter, "finished": self._finished, "info": self._info}

    def set_state(self, state: Dict):
        self._param_space = state["param_space"]
        self._num_samples = state["num_samples"]
        self._counter = state["counter"]
        self._finished = state["finished"]
        self._info = state["info"]

    def save(self, checkpoint_path: str):
        try:
            searcher_state = cloudpickle.dumps(self.searcher)
        except Exception:
            searcher_state = None
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump({"self": self.get_state(), "searcher": searcher_state}, f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            state = cloudpickle.load(f)
        self.set_state(state["self"])
        if state["searcher"] is not None:
            self.searcher = cloudpickle.loads(state["searcher"])


def _limited(searcher: Searcher, max_concurrent_trials: int) -> Searcher:
    if isinstance(searcher, ConcurrencyLimiter):
        if searcher.max_concurrent != max_concurrent_trials:
            raise ValueError(
                f"You have specified `max_concurrent_trials={max_concurrent_trials}`, but the "
                f"`search_alg` is already a `ConcurrencyLimiter` with "
                f"`max_concurrent={searcher.max_concurrent}`. FIX THIS by setting "
                "`max_concurrent_trials=None`.")
        return searcher
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent_trials)


_SEARCHER_NAMES = ("variant_generator", "random", "optuna")


def create_searcher(search_alg: str, **kwargs) -> Searcher:
    """A searcher by name: ``"variant_generator"`` / ``"random"``
    (BasicVariantGenerator) or ``"optuna"`` (OptunaSearch), built with
    ``kwargs``. Ray's other names need libraries pyray does not ship."""
    name = search_alg.lower() if isinstance(search_alg, str) else search_alg
    if name in ("variant_generator", "random"):
        return BasicVariantGenerator(**kwargs)
    if name == "optuna":
        from pyray.tune.search.optuna import OptunaSearch
        return OptunaSearch(**kwargs)
    raise ValueError(
        f"Unknown search algorithm {search_alg!r}: use one of {list(_SEARCHER_NAMES)} or pass a "
        "Searcher instance")


def resolve_search_algorithm(search_alg: Union[None, str, Searcher], param_space: Optional[Dict],
                             num_samples: int = 1, metric: Optional[str] = None,
                             mode: Optional[str] = None, seed=None,
                             max_concurrent_trials: Optional[int] = None) -> Searcher:
    """The search algorithm the controller drives, set up for this experiment.

    * ``None``: a :class:`BasicVariantGenerator` (seeded with ``seed``).
    * a :class:`BasicVariantGenerator`: given the ``param_space``.
    * any other :class:`Searcher`: wrapped in a :class:`SearchGenerator`;
      its ``set_search_properties`` gets metric, mode and ``param_space``.
      If it already had a search space, ``param_space`` must not contain
      search space definitions (ValueError otherwise, as Ray).

    With ``max_concurrent_trials`` a Searcher is wrapped in a
    :class:`ConcurrencyLimiter` (as Ray does); a BasicVariantGenerator limits
    itself.
    """
    validate_mode(mode)
    param_space = _check_param_space(param_space)
    if isinstance(search_alg, str):
        search_alg = create_searcher(search_alg)
    if search_alg is None:
        search_alg = BasicVariantGenerator(random_state=seed)
    if isinstance(search_alg, BasicVariantGenerator):
        search_alg.set_search_properties(metric, mode, param_space, num_samples=num_samples)
        if max_concurrent_trials:
            search_alg.set_max_concurrency(max_concurrent_trials)
        return search_alg
    if max_concurrent_trials and isinstance(search_alg, Searcher) and not isinstance(
            search_alg, SearchGenerator):
        search_alg = _limited(search_alg, max_concurrent_trials)
    if isinstance(search_alg, SearchGenerator):
        generator = search_alg
    elif isinstance(search_alg, Searcher):
        generator = SearchGenerator(search_alg)
    else:
        raise TypeError(
            "search_alg must be a pyray.tune.search.Searcher (e.g. OptunaSearch(), "
            "BasicVariantGenerator()), the name of one, or None; got "
            f"{type(search_alg).__name__}")
    accepted = generator.set_search_properties(metric, mode, param_space, num_samples=num_samples)
    if not accepted and param_space and has_unresolved_values(param_space):
        raise ValueError(
            "You passed a `param_space` parameter to `tune.Tuner()` with unresolved "
            "parameters, but the search algorithm was already instantiated with a search "
            "space. Make sure that `param_space` does not contain any more parameter "
            "definitions - include them in the search algorithm's search space if necessary.")
    if metric is not None and generator.metric is not None and generator.metric != metric and not accepted:
        raise ValueError(
            f"You passed metric={metric!r} to `tune.TuneConfig()`, but the search algorithm "
            f"was already instantiated with metric={generator.metric!r}. Set it in one place only.")
    generator.add_configurations(param_space, num_samples)
    return generator
