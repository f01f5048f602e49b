"""Asynchronous Successive Halving (ASHA).

Each bracket has rungs at ``grace_period * reduction_factor**(k + s)``
time units (below ``max_t``). The first time a trial reaches a rung its
score is recorded there; it is stopped if the score is below the rung's
cutoff, the ``(1 - 1/reduction_factor)`` percentile (linear interpolation,
NaNs ignored) of the scores recorded at that rung before it. Trials never
wait for each other. A trial reaching ``max_t`` is stopped
(``stop_last_trials=True``).
"""

import logging
from typing import Dict, Optional

import numpy as np

from pyray.tune.schedulers.trial_scheduler import TrialScheduler, _MetricModeScheduler
from pyray.tune.search.searcher import check_arg

logger = logging.getLogger(__name__)


class AsyncHyperBandScheduler(_MetricModeScheduler):
    """Implements the Async Successive Halving algorithm (ASHA).

    Args:
        time_attr: result key measuring progress (increases monotonically).
        metric, mode: the objective and "min"/"max".
        max_t: time units after which a trial is stopped.
        grace_period: no trial is stopped before this many time units.
        reduction_factor: halving rate (keep the top ``1/reduction_factor``).
        brackets: number of brackets (a trial joins one at random, weighted
            towards brackets with more rungs).
        stop_last_trials: stop trials once they reach ``max_t``.
    """

    def __init__(self, time_attr: str = "training_iteration", metric: Optional[str] = None,
                 mode: Optional[str] = None, max_t: float = 100, grace_period: float = 1,
                 reduction_factor: float = 4, brackets: int = 1, stop_last_trials: bool = True):
        check_arg(max_t > 0, "Max (time_attr) not valid! max_t must be > 0")
        check_arg(max_t >= grace_period, "grace_period must be <= max_t!")
        check_arg(grace_period > 0, "grace_period must be positive!")
        check_arg(reduction_factor > 1, "Reduction Factor not valid! reduction_factor must be > 1")
        check_arg(brackets > 0, "brackets must be positive!")
        super().__init__(metric, mode)
        self._reduction_factor = reduction_factor
        self._max_t = max_t
        self._grace_period = grace_period
        self._trial_info: Dict[str, "_Bracket"] = {}
        self._brackets = [_Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials)
                          for s in range(brackets)]
        self._num_stopped = 0
        self._time_attr = time_attr
        self._stop_last_trials = stop_last_trials

    def on_trial_add(self, tune_controller, trial):
        self._require_metric_mode()
        # one draw from numpy's global state per trial even with one bracket,
        # as Ray: a seeded run draws the same configurations as Ray's
        sizes = np.array([len(b.rungs) for b in self._brackets])
        probs = np.e ** (sizes - sizes.max())
        idx = np.random.choice(len(self._brackets), p=probs / probs.sum())
        self._trial_info[trial.trial_id] = self._brackets[idx]

    def on_trial_result(self, tune_controller, trial, result: Dict) -> str:
        action = TrialScheduler.CONTINUE
        if self._time_attr not in result or self._metric not in result:
            return action
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            bracket = self._trial_info[trial.trial_id]
            action = bracket.on_result(trial, result[self._time_attr],
                                       self._metric_op * result[self._metric])
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result: Dict):
        bracket = self._trial_info.pop(trial.trial_id, None)
        if bracket is None or not result:
            return
        if self._time_attr not in result or self._metric not in result:
            return
        bracket.on_result(trial, result[self._time_attr], self._metric_op * result[self._metric])

    def on_trial_remove(self, tune_controller, trial):
        self._trial_info.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller, trial):
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        out = f"Using AsyncHyperBand: num_stopped={self._num_stopped}"
        return out + "\n" + "\n".join(b.debug_str() for b in self._brackets)


class _Bracket:
    """The rungs of one ASHA bracket, highest milestone first."""

    def __init__(self, min_t, max_t, reduction_factor, s, stop_last_trials=True):
        self.rf = reduction_factor
        num_rungs = int(np.log(max_t / min_t) / np.log(self.rf) - s + 1)
        self.rungs = [(min_t * self.rf ** (k + s), {}) for k in reversed(range(num_rungs))]
        self._stop_last_trials = stop_last_trials

    def cutoff(self, recorded: Dict) -> Optional[float]:
        if not recorded:
            return None
        return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100))

    def on_result(self, trial, cur_iter, cur_rew) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter >= milestone and trial.trial_id in recorded and not self._stop_last_trials:
                # already judged at this (the highest reached) rung
                break
            if cur_iter < milestone or trial.trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and cur_rew is not None and cur_rew < cutoff:
                action = TrialScheduler.STOP
            if cur_rew is None:
                logger.warning("Reward attribute is None! Consider reporting using a different field.")
            else:
                recorded[trial.trial_id] = cur_rew
            break
        return action

    def debug_str(self) -> str:
        iters = " | ".join(f"Iter {milestone:.3f}: {self.cutoff(recorded)}"
                           for milestone, recorded in self.rungs)
        return "Bracket: " + iters


ASHAScheduler = AsyncHyperBandScheduler
