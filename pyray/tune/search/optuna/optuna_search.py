"""OptunaSearch: Optuna's samplers (TPE by default) behind the Searcher
interface, through Optuna's ask-and-tell API.

The search space is an Optuna distributions dict, a define-by-run function
``f(trial) -> Optional[dict]`` (calls ``trial.suggest_*``), or, when none is
given, converted from the Tuner's ``param_space`` (uniform, quniform,
loguniform, randint, qrandint, lograndint, choice; not grid_search).
Requires ``pip install "pyray[tune]"`` (optuna).
"""

import logging
import pickle
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Union

from pyray.tune.search.sample import (
    Categorical, Float, Integer, _LogUniform, _Quantized, _Uniform,
)
from pyray.tune.search.searcher import (
    UNDEFINED_METRIC_MODE, UNDEFINED_SEARCH_SPACE, UNRESOLVED_SEARCH_SPACE, Searcher,
)
from pyray.tune.search.variant_generator import flatten_dict, parse_spec_vars, unflatten_dict

logger = logging.getLogger(__name__)

TRAINING_ITERATION = "training_iteration"
DEFAULT_METRIC = "_metric"
DEFINE_BY_RUN_WARN_THRESHOLD_S = 1


def _import_optuna():
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(
            'OptunaSearch needs optuna: pip install "pyray[tune]" (or pip install optuna)') from exc
    return optuna


class _SuggestCaptor:
    """Passed to a define-by-run function in place of the Optuna trial:
    records every ``suggest_*`` value under its name."""

    def __init__(self, ot_trial):
        self.ot_trial = ot_trial
        self.captured_values: Dict[str, Any] = {}

    def _capture(self, method):
        def wrapper(name, *args, **kwargs):
            value = method(name, *args, **kwargs)
            self.captured_values[name] = value
            return value
        return wrapper

    def __getattr__(self, item):
        attr = getattr(self.ot_trial, item)
        if item.startswith("suggest_") and callable(attr):
            return self._capture(attr)
        return attr


class OptunaSearch(Searcher):
    """Search with Optuna.

    Args:
        space: Optuna distributions dict (``{"x": FloatDistribution(0, 1)}``,
            nested keys joined by "/"), a define-by-run function, or None to
            convert the Tuner's ``param_space``.
        metric: the metric to optimize, or a list for multi-objective search.
        mode: "min"/"max", or a list (one per metric).
        points_to_evaluate: configs to try first.
        sampler: an ``optuna.samplers.BaseSampler``; default
            ``TPESampler(seed=seed)``.
        seed: seed of the default sampler.
        evaluated_rewards: results of ``points_to_evaluate`` already known:
            they are told to Optuna instead of being run.
    """

    def __init__(self, space: Optional[Union[Dict[str, Any], Callable]] = None,
                 metric: Optional[Union[str, List[str]]] = None,
                 mode: Optional[Union[str, List[str]]] = None,
                 points_to_evaluate: Optional[List[Dict]] = None, sampler=None,
                 seed: Optional[int] = None, evaluated_rewards: Optional[List] = None):
        ot = _import_optuna()
        super().__init__(metric=metric, mode=mode)
        if isinstance(space, dict) and space:
            _, domain_vars, grid_vars = parse_spec_vars(space)
            if domain_vars or grid_vars:
                logger.warning(UNRESOLVED_SEARCH_SPACE.format(par="space", cls=type(self).__name__))
                space = self.convert_search_space(space)
            else:
                space = flatten_dict(space, "/")
                for key, dist in space.items():
                    if not isinstance(dist, ot.distributions.BaseDistribution):
                        raise TypeError(
                            f"OptunaSearch space[{key!r}] must be an optuna distribution "
                            f"(optuna.distributions.FloatDistribution(...)...) or a tune search "
                            f"space object, got {dist!r}")
        elif space is not None and not callable(space) and space != {}:
            raise TypeError(
                "OptunaSearch `space` must be a dict of optuna distributions, a define-by-run "
                f"function or None, got {type(space).__name__}")
        self._space = space or None
        if points_to_evaluate is not None and not isinstance(points_to_evaluate, (list, tuple)):
            raise TypeError(f"points_to_evaluate must be a list of dicts, got {points_to_evaluate!r}")
        self._points_to_evaluate = list(points_to_evaluate or [])
        self._evaluated_rewards = evaluated_rewards
        self._study_name = "optuna"
        if sampler is not None and seed is not None:
            logger.warning("You passed an initialized sampler to `OptunaSearch`. The `seed` "
                           "parameter has to be passed to the sampler directly and will be ignored.")
        elif sampler is not None and not isinstance(sampler, ot.samplers.BaseSampler):
            raise ValueError("You can only pass an instance of `optuna.samplers.BaseSampler` as a "
                             f"sampler to `OptunaSearch`, got {type(sampler).__name__}")
        self._sampler = sampler or ot.samplers.TPESampler(seed=seed)
        self._completed_trials = set()
        self._ot_trials: Dict[str, Any] = {}
        self._ot_study = None
        if self._space:
            self._setup_study(self._mode)

    def _setup_study(self, mode):
        ot = _import_optuna()
        if self._metric is None and self._mode:
            if isinstance(self._mode, list):
                raise ValueError("If ``mode`` is a list (multi-objective optimization case), "
                                 "``metric`` must be defined.")
            self._metric = DEFAULT_METRIC
        if isinstance(self._metric, list) != isinstance(mode, list) and mode is not None:
            raise ValueError("For multi-objective search pass both `metric` and `mode` as lists "
                             f"of the same length; got metric={self._metric!r}, mode={mode!r}")
        kwargs = dict(storage=ot.storages.InMemoryStorage(), sampler=self._sampler,
                      pruner=ot.pruners.NopPruner(), study_name=self._study_name,
                      load_if_exists=True)
        if isinstance(mode, list):
            kwargs["directions"] = ["minimize" if m == "min" else "maximize" for m in mode]
        else:
            kwargs["direction"] = "minimize" if mode == "min" else "maximize"
        self._ot_study = ot.study.create_study(**kwargs)
        if self._points_to_evaluate:
            self._validate_warmstart()
            if self._evaluated_rewards:
                for point, reward in zip(self._points_to_evaluate, self._evaluated_rewards):
                    self.add_evaluated_point(point, reward)
            else:
                for point in self._points_to_evaluate:
                    self._ot_study.enqueue_trial(flatten_dict(point, "/") if not callable(self._space) else point)

    def _validate_warmstart(self):
        for point in self._points_to_evaluate:
            if not isinstance(point, dict):
                raise TypeError(f"points_to_evaluate must contain dicts, got {point!r}")
            if isinstance(self._space, dict):
                unknown = set(flatten_dict(point, "/")) - set(self._space)
                if unknown:
                    raise ValueError(f"points_to_evaluate has keys {sorted(unknown)} that are not "
                                     f"in the search space {sorted(self._space)}")
        if self._evaluated_rewards is not None:
            if not isinstance(self._evaluated_rewards, (list, tuple)) or len(
                    self._evaluated_rewards) != len(self._points_to_evaluate):
                raise ValueError(
                    "Dim of evaluated_rewards "
                    f"{len(self._evaluated_rewards) if hasattr(self._evaluated_rewards, '__len__') else '?'}"
                    f" and points_to_evaluate {len(self._points_to_evaluate)} do not match.")

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if self._space:
            return False
        space = self.convert_search_space(config)
        self._space = space or None
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        if self._space:
            self._setup_study(self._mode)
        return True

    def _suggest_from_define_by_run_func(self, func, ot_trial) -> Dict:
        captor = _SuggestCaptor(ot_trial)
        start = time.time()
        ret = func(captor)
        if time.time() - start > DEFINE_BY_RUN_WARN_THRESHOLD_S:
            warnings.warn("Define-by-run function passed in the `space` argument took "
                          f"{time.time() - start:.1f} seconds to run. Ensure that actual "
                          "computation, training takes place inside Tune's train functions or "
                          "Trainables passed to `tune.Tuner()`.")
        if ret is not None:
            if not isinstance(ret, dict):
                raise TypeError("The return value of the define-by-run function passed in the "
                                "`space` argument should be either None or a `dict` with `str` "
                                f"keys. Got {type(ret)}.")
            if not all(isinstance(k, str) for k in ret):
                raise TypeError("At least one of the keys in the dict returned by the "
                                "define-by-run function passed in the `space` argument was not a "
                                "`str`.")
        return {**captor.captured_values, **ret} if ret else captor.captured_values

    def _require_space_and_objective(self):
        if not self._space:
            raise RuntimeError(UNDEFINED_SEARCH_SPACE.format(cls=type(self).__name__, space="space"))
        if not self._metric or not self._mode:
            raise RuntimeError(UNDEFINED_METRIC_MODE.format(cls=type(self).__name__,
                                                            metric=self._metric, mode=self._mode))

    def suggest(self, trial_id: str) -> Optional[Dict]:
        self._require_space_and_objective()
        if callable(self._space):
            if trial_id not in self._ot_trials:
                self._ot_trials[trial_id] = self._ot_study.ask()
            params = self._suggest_from_define_by_run_func(self._space, self._ot_trials[trial_id])
        else:
            if trial_id not in self._ot_trials:
                self._ot_trials[trial_id] = self._ot_study.ask(fixed_distributions=self._space)
            params = self._ot_trials[trial_id].params
        return unflatten_dict(params)

    def on_trial_result(self, trial_id: str, result: Dict):
        if isinstance(self.metric, list):
            return  # Optuna takes no intermediate values for multi-objective studies
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or self.metric not in result or TRAINING_ITERATION not in result:
            return
        ot_trial.report(result[self.metric], result[TRAINING_ITERATION])

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False):
        from optuna.trial import TrialState
        if trial_id in self._completed_trials:
            logger.warning("Received additional completion for trial %s, ignoring.", trial_id)
            return
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return
        if result:
            if isinstance(self.metric, list):
                val = [result.get(m) for m in self.metric]
                if any(v is None for v in val):
                    val = None
            else:
                val = result.get(self.metric)
        else:
            val = None
        state = TrialState.COMPLETE
        if val is None:
            state = TrialState.FAIL if error else TrialState.PRUNED
        try:
            self._ot_study.tell(ot_trial, val if state == TrialState.COMPLETE else None, state=state)
        except Exception as exc:  # e.g. a NaN result
            logger.warning("Optuna could not record trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)

    def add_evaluated_point(self, parameters: Dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values: Optional[List[float]] = None):
        ot = _import_optuna()
        from optuna.trial import TrialState
        self._require_space_and_objective()
        if callable(self._space):
            raise TypeError("Define-by-run function passed in `space` argument is not yet "
                            "supported when using `evaluated_rewards`. Please provide an "
                            "`OptunaDistribution` dict or pass a Ray Tune search space to "
                            "`tune.Tuner()`.")
        state = TrialState.COMPLETE
        if error:
            state = TrialState.FAIL
        elif pruned:
            state = TrialState.PRUNED
        intermediate = ({i: v for i, v in enumerate(intermediate_values)}
                        if intermediate_values else None)
        kwargs = {"values" if isinstance(value, (list, tuple)) else "value":
                  None if state == TrialState.FAIL else value}
        trial = ot.trial.create_trial(state=state, params=flatten_dict(parameters, "/"),
                                      distributions=self._space, intermediate_values=intermediate,
                                      **kwargs)
        self._ot_study.add_trial(trial)

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    @staticmethod
    def convert_search_space(spec: Dict) -> Dict[str, Any]:
        """A Tune search space as Optuna distributions (``"a/b"`` keys for
        nested dicts)."""
        ot = _import_optuna()
        if not spec:
            return {}
        _, domain_vars, grid_vars = parse_spec_vars(spec)
        if not domain_vars and not grid_vars:
            return {}
        if grid_vars:
            raise ValueError("Grid search parameters cannot be automatically converted to an "
                             "Optuna search space.")
        _, domain_vars, _ = parse_spec_vars(flatten_dict(spec, "/", prevent_delimiter=True))

        def resolve(path, domain):
            quantize = None
            sampler = domain.get_sampler()
            if isinstance(sampler, _Quantized):
                quantize = sampler.q
                sampler = sampler.sampler
            if isinstance(domain, Float):
                if isinstance(sampler, _LogUniform):
                    if quantize:
                        logger.warning("Optuna does not support both quantization and sampling "
                                       "from LogUniform. Dropped quantization.")
                    return ot.distributions.FloatDistribution(domain.lower, domain.upper, log=True)
                if isinstance(sampler, _Uniform):
                    if quantize:
                        return ot.distributions.FloatDistribution(domain.lower, domain.upper, step=quantize)
                    return ot.distributions.FloatDistribution(domain.lower, domain.upper)
            elif isinstance(domain, Integer):
                if isinstance(sampler, _LogUniform):
                    return ot.distributions.IntDistribution(domain.lower, domain.upper - 1,
                                                            step=quantize or 1, log=True)
                if isinstance(sampler, _Uniform):
                    # upper bound inclusive when quantized, exclusive otherwise
                    return ot.distributions.IntDistribution(
                        domain.lower, domain.upper - int(not quantize), step=quantize or 1)
            elif isinstance(domain, Categorical):
                if isinstance(sampler, _Uniform):
                    return ot.distributions.CategoricalDistribution(domain.categories)
            raise ValueError(
                f"Optuna search does not support parameters of type `{type(domain).__name__}` "
                f"with samplers of type `{type(sampler).__name__}` (parameter "
                f"`{'/'.join(map(str, path))}`)")

        return {"/".join(map(str, path)): resolve(path, domain) for path, domain in domain_vars}
