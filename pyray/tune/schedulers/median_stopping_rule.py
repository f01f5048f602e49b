"""Median stopping rule (Vizier): stop a trial whose best result so far is
worse than the median of the other trials' running means at the same time."""

import collections
import logging
from typing import Dict, List, Optional

import numpy as np

from pyray.tune.schedulers.trial_scheduler import (
    PAUSED, PENDING, TrialScheduler, _MetricModeScheduler,
)

logger = logging.getLogger(__name__)


class MedianStoppingRule(_MetricModeScheduler):
    """Stops a trial if its best objective value by time ``t`` is strictly
    worse than the median of the running averages (results from
    ``grace_period`` up to ``t``) of the other trials that reached ``t``.

    Args:
        time_attr: result key measuring progress.
        metric, mode: the objective and "min"/"max".
        grace_period: no trial is stopped before this time; running averages
            start here.
        min_samples_required: other trials needed to compute the median.
        min_time_slice: without enough samples, a trial that ran at least
            this long since its last pause yields (pauses) to waiting trials.
        hard_stop: stop bad trials (True) or pause them (False; they are
            resumed FIFO once the others are done).
    """

    def __init__(self, time_attr: str = "time_total_s", metric: Optional[str] = None,
                 mode: Optional[str] = None, grace_period: float = 60.0,
                 min_samples_required: int = 3, min_time_slice: int = 0,
                 hard_stop: bool = True):
        super().__init__(metric, mode)
        self._stopped_trials = set()
        self._grace_period = grace_period
        self._min_samples_required = min_samples_required
        self._min_time_slice = min_time_slice
        self._time_attr = time_attr
        self._hard_stop = hard_stop
        self._last_pause = collections.defaultdict(lambda: float("-inf"))
        self._results = collections.defaultdict(list)

    @property
    def _compare_op(self):
        return max if self._mode == "max" else min

    def on_trial_result(self, tune_controller, trial, result: Dict) -> str:
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        if trial in self._stopped_trials:
            # paused by the rule earlier (hard_stop=False): runs on, FIFO
            return TrialScheduler.CONTINUE
        time = result[self._time_attr]
        self._results[trial].append(result)
        if time < self._grace_period:
            return TrialScheduler.CONTINUE
        others = [t for t in self._trials_beyond_time(time) if t is not trial]
        if len(others) < self._min_samples_required:
            action = self._on_insufficient_samples(tune_controller, trial, time)
            if action == TrialScheduler.PAUSE:
                self._last_pause[trial] = time
            logger.debug("MedianStoppingRule: insufficient samples=%d to evaluate trial %s "
                         "at t=%s: %s", len(others), trial.trial_id, time, action)
            return action
        median_result = self._median_result(others, time)
        best_result = self._best_result(trial)
        logger.debug("Trial %s best res=%s vs median res=%s at t=%s", trial, best_result,
                     median_result, time)
        if self._compare_op(median_result, best_result) != best_result:
            self._stopped_trials.add(trial)
            return TrialScheduler.STOP if self._hard_stop else TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: Dict):
        if result and self._time_attr in result and self._metric in result:
            self._results[trial].append(result)

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={len(self._stopped_trials)}."

    def _on_insufficient_samples(self, tune_controller, trial, time) -> str:
        pause = time - self._last_pause[trial] > self._min_time_slice
        pause = pause and any(t.status in (PENDING, PAUSED)
                              for t in tune_controller.get_live_trials())
        return TrialScheduler.PAUSE if pause else TrialScheduler.CONTINUE

    def _trials_beyond_time(self, time) -> List:
        return [t for t, results in self._results.items() if results[-1][self._time_attr] >= time]

    def _median_result(self, trials, time):
        return np.median([self._running_mean(t, time) for t in trials])

    def _running_mean(self, trial, time):
        scoped = [r for r in self._results[trial]
                  if self._grace_period <= r[self._time_attr] <= time]
        return np.mean([r[self._metric] for r in scoped])

    def _best_result(self, trial):
        return self._compare_op([r[self._metric] for r in self._results[trial]])
