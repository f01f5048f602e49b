"""The ``Searcher`` interface: suggest configurations, learn from results.

A user's own search algorithm subclasses :class:`Searcher` and implements
``suggest`` (and usually ``on_trial_complete``); the experiment controller
calls them through :class:`~pyray.tune.search.search_generator.SearchGenerator`.
"""

import copy
import glob
import logging
import os
import pickle
from typing import Any, Dict, List, Optional, Union

logger = logging.getLogger(__name__)


class TuneArgumentError(ValueError, AssertionError):
    """A bad constructor argument of a searcher or scheduler. Ray checks these
    with ``assert``; this is a ValueError that is also an AssertionError, so
    code catching either keeps working."""


class TuneModeError(TuneArgumentError):
    """``mode`` is not "min" or "max"."""


def check_arg(condition: bool, message: str):
    if not condition:
        raise TuneArgumentError(message)


def validate_mode(mode, what: str = "mode"):
    if mode is None:
        return
    if isinstance(mode, (list, tuple)):
        for m in mode:
            validate_mode(m, what)
        return
    if mode not in ("min", "max"):
        raise TuneModeError(f"`{what}` must be 'min' or 'max', got {mode!r}.")


UNRESOLVED_SEARCH_SPACE = (
    "You passed a `{par}` parameter to {cls} that contained unresolved search "
    "space definitions. {cls} should however be instantiated with fully "
    "configured search spaces only. To use Ray Tune's automatic search space "
    "conversion, pass the space definition as part of the `param_space` argument "
    "to `tune.Tuner()` instead.")

UNDEFINED_SEARCH_SPACE = (
    "Trying to sample a configuration from {cls}, but no search space has been "
    "defined. Either pass the `{space}` argument when instantiating the search "
    "algorithm, or pass a `param_space` to `tune.Tuner()`.")

UNDEFINED_METRIC_MODE = (
    "Trying to sample a configuration from {cls}, but the `metric` ({metric}) or "
    "`mode` ({mode}) parameters have not been set. Either pass these arguments "
    "when instantiating the search algorithm, or pass them to `tune.TuneConfig()`.")


class Searcher:
    """Base class for search algorithms.

    Subclasses implement :meth:`suggest` (return a config dict for the given
    trial id, ``None`` for "nothing right now", or :attr:`FINISHED`) and
    :meth:`on_trial_complete`; they call ``super().__init__(metric, mode)``.
    """

    FINISHED = "FINISHED"
    CKPT_FILE_TMPL = "searcher-state-{}.pkl"

    def __init__(self, metric: Optional[str] = None, mode: Optional[str] = None):
        validate_mode(mode)
        if isinstance(mode, (list, tuple)) and metric is not None and (
                not isinstance(metric, (list, tuple)) or len(metric) != len(mode)):
            raise ValueError("When `mode` is a list, `metric` must be a list of the same length.")
        self._metric = metric
        self._mode = mode

    # -- configuration -------------------------------------------------------
    def set_search_properties(self, metric: Optional[str], mode: Optional[str],
                              config: Dict, **spec) -> bool:
        """Called by the experiment with TuneConfig's metric/mode and the
        ``param_space``; return False when this searcher already has them
        (its own space / metric) and will not take the given ones."""
        return False

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Return True if the searcher limits concurrency itself."""
        return False

    @property
    def metric(self):
        return self._metric

    @property
    def mode(self):
        return self._mode

    # -- events ----------------------------------------------------------------
    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None,
                          error: bool = False) -> None:
        raise NotImplementedError

    def suggest(self, trial_id: str) -> Optional[Union[Dict, str]]:
        raise NotImplementedError

    # -- evaluated points --------------------------------------------------------
    def add_evaluated_point(self, parameters: Dict, value: float, error: bool = False,
                            pruned: bool = False,
                            intermediate_values: Optional[List[float]] = None):
        raise NotImplementedError(
            f"{type(self).__name__} does not support adding evaluated points")

    def add_evaluated_trials(self, trials_or_analysis, metric: str):
        """Feed finished trials (objects with ``config`` / ``last_result`` /
        ``status``, or a ResultGrid) to :meth:`add_evaluated_point`."""
        trials = trials_or_analysis
        if not isinstance(trials, (list, tuple)):
            try:
                trials = list(trials)  # a ResultGrid: its Results
            except TypeError:
                trials = [trials]  # one trial
        any_added = False
        for trial in trials:
            config = getattr(trial, "config", None)
            result = getattr(trial, "last_result", None)
            if result is None:
                result = getattr(trial, "metrics", None)
            error = getattr(trial, "status", None) == "ERROR" or getattr(trial, "error", None) is not None
            if config is None or not result or metric not in result:
                continue
            self.add_evaluated_point(config, result[metric], error=error)
            any_added = True
        if not any_added:
            raise ValueError(
                f"No trial reported the metric `{metric}`: nothing to add. Check the metric name.")

    # -- state -------------------------------------------------------------------
    def save(self, checkpoint_path: str):
        raise NotImplementedError

    def restore(self, checkpoint_path: str):
        raise NotImplementedError

    def get_state(self) -> Dict:
        raise NotImplementedError

    def set_state(self, state: Dict):
        raise NotImplementedError

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default"):
        """Write the searcher's state into ``checkpoint_dir`` (atomically)."""
        tmp = os.path.join(checkpoint_dir, ".tmp_searcher_ckpt")
        try:
            self.save(tmp)
        except NotImplementedError:
            if os.path.exists(tmp):
                os.remove(tmp)
            return
        os.replace(tmp, os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format(session_str)))

    def restore_from_dir(self, checkpoint_dir: str):
        """Restore from the newest ``searcher-state-*.pkl`` in the directory."""
        pattern = self.CKPT_FILE_TMPL.format("*")
        paths = glob.glob(os.path.join(checkpoint_dir, pattern))
        if not paths:
            raise RuntimeError(
                f"Searcher unable to find checkpoint in {checkpoint_dir}: no file matching "
                f"{pattern}")
        self.restore(max(paths, key=os.path.getmtime))

    # helpers for subclasses that pickle their own __dict__
    def _save_dict(self, checkpoint_path: str, exclude=()):
        state = {k: v for k, v in self.__dict__.items() if k not in exclude}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def _restore_dict(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class _WrappingSearcher(Searcher):
    """A searcher around another (``self.searcher``): metric, mode, state and
    checkpoints are the wrapped one's."""

    searcher: Searcher

    @property
    def metric(self):
        return self.searcher.metric

    @property
    def mode(self):
        return self.searcher.mode

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def get_state(self) -> Dict:
        state = self.__dict__.copy()
        del state["searcher"]
        return copy.deepcopy(state)

    def set_state(self, state: Dict):
        self.__dict__.update(state)

    def save(self, checkpoint_path: str):
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str):
        self.searcher.restore(checkpoint_path)


def _metric_value(result: Optional[Dict], metric: str, who: str) -> Any:
    if result is None or metric not in result:
        keys = sorted(result) if result else []
        raise ValueError(
            f"{who}: the result has no `{metric}` metric (reported keys: {keys}). "
            "Make sure the trainable reports it, or fix `metric`.")
    return result[metric]
