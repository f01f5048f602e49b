"""ConcurrencyLimiter: at most ``max_concurrent`` live suggestions."""

import logging
from typing import Dict, List, Optional

from pyray.tune.search.searcher import Searcher, _WrappingSearcher, check_arg

logger = logging.getLogger(__name__)


class ConcurrencyLimiter(_WrappingSearcher):
    """Wraps a searcher so that at most ``max_concurrent`` of its
    suggestions are running; ``suggest`` returns None until one completes.

    Args:
        searcher: the searcher to limit.
        max_concurrent: the limit (an int > 0).
        batch: pass completions to the searcher only once the whole batch of
            ``max_concurrent`` trials completed (then a new batch starts).
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False):
        if not isinstance(searcher, Searcher):
            raise RuntimeError(
                f"The `ConcurrencyLimiter` only works with `Searcher` objects (got "
                f"{type(searcher)}). Please try to pass `max_concurrent` to the search "
                "generator directly.")
        check_arg(type(max_concurrent) is int and max_concurrent > 0,
                  f"max_concurrent must be an int > 0, got {max_concurrent!r}")
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = batch
        self.live_trials = set()
        self.num_unfinished_live_trials = 0
        self.cached_results: Dict = {}
        self._limit_concurrency = True
        self._set_searcher_max_concurrency()
        super().__init__(metric=self.searcher.metric, mode=self.searcher.mode)

    def _set_searcher_max_concurrency(self):
        # a searcher that limits concurrency itself is left to do so
        self._limit_concurrency = not self.searcher.set_max_concurrency(self.max_concurrent)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        self._set_searcher_max_concurrency()
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        if not self._limit_concurrency:
            return self.searcher.suggest(trial_id)
        if trial_id in self.live_trials:
            raise ValueError(f"Trial ID {trial_id} must be unique: already found in set.")
        if len(self.live_trials) >= self.max_concurrent:
            logger.debug("Not providing a suggestion for %s due to concurrency limit: %s/%s.",
                         trial_id, len(self.live_trials), self.max_concurrent)
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.live_trials.add(trial_id)
            self.num_unfinished_live_trials += 1
        return suggestion

    def on_trial_result(self, trial_id: str, result: Dict):
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False):
        if not self._limit_concurrency:
            return self.searcher.on_trial_complete(trial_id, result=result, error=error)
        if trial_id not in self.live_trials:
            return None
        if self.batch:
            self.cached_results[trial_id] = (result, error)
            self.num_unfinished_live_trials -= 1
            if self.num_unfinished_live_trials <= 0:
                # the whole batch is done: the searcher learns from all of it
                for tid, (res, err) in self.cached_results.items():
                    self.searcher.on_trial_complete(tid, result=res, error=err)
                    self.live_trials.remove(tid)
                self.cached_results = {}
                self.num_unfinished_live_trials = 0
            return None
        self.searcher.on_trial_complete(trial_id, result=result, error=error)
        self.live_trials.remove(trial_id)
        self.num_unfinished_live_trials -= 1
        return None

    def add_evaluated_point(self, parameters: Dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values: Optional[List[float]] = None):
        return self.searcher.add_evaluated_point(parameters, value, error, pruned, intermediate_values)

    def on_pause(self, trial_id: str):
        hook = getattr(self.searcher, "on_pause", None)
        if hook is not None:
            hook(trial_id)

    def on_unpause(self, trial_id: str):
        hook = getattr(self.searcher, "on_unpause", None)
        if hook is not None:
            hook(trial_id)
