"""Synchronous HyperBand.

Trials fill brackets of decreasing size; the brackets of one round ("band")
run successive halving with different starting budgets. With
``s_max_1 = round(log(max_t) / log(eta)) + 1`` brackets per band, bracket
``s`` takes ``ceil(s_max_1 / (s + 1) * eta**s)`` trials, each first run for
``int(max_t * eta**-s)`` time units. When every live trial of a bracket
reached the bracket's milestone, the best ``1/eta`` continue (paused ones are
returned by ``choose_trial_to_run`` to be resumed) and the rest are stopped;
trials that reach the milestone early are paused until the others catch up.
The next milestone is ``min(milestone * eta, max_t)``.
"""

import collections
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np

from pyray.tune.schedulers.trial_scheduler import (
    ERROR, PAUSED, PENDING, RUNNING, TERMINATED, TrialScheduler, _MetricModeScheduler, _tune_error,
)
from pyray.tune.search.searcher import check_arg

logger = logging.getLogger(__name__)


class HyperBandScheduler(_MetricModeScheduler):
    """Implements the HyperBand early stopping algorithm (synchronous: trials
    are paused at each milestone and the best ones are promoted).

    Args:
        time_attr: result key measuring progress.
        metric, mode: the objective and "min"/"max".
        max_t: time units after which a trial is stopped.
        reduction_factor: ``eta``; each halving keeps ``1/eta`` of the trials.
        stop_last_trials: stop trials when they reach ``max_t``.
    """

    _supports_buffered_results = False

    def __init__(self, time_attr: str = "training_iteration", metric: Optional[str] = None,
                 mode: Optional[str] = None, max_t: int = 81, reduction_factor: float = 3,
                 stop_last_trials: bool = True):
        check_arg(max_t > 0, "Max (time_attr) not valid! max_t must be > 0")
        check_arg(reduction_factor > 1, "reduction_factor must be > 1")
        super().__init__(metric, mode)
        self._eta = reduction_factor
        self._s_max_1 = int(np.round(np.log(max_t) / np.log(reduction_factor))) + 1
        self._max_t_attr = max_t
        self._hyperbands: List[List[Optional["_Bracket"]]] = [[]]
        self._trial_info: Dict = {}
        self._state = {"bracket": None, "band_idx": 0}
        self._num_stopped = 0
        self._time_attr = time_attr
        self._stop_last_trials = stop_last_trials

    def _get_n0(self, s: int) -> int:
        """Trials in bracket ``s``."""
        return int(np.ceil(self._s_max_1 / (s + 1) * self._eta ** s))

    def _get_r0(self, s: int) -> int:
        """First milestone of bracket ``s``."""
        return int(self._max_t_attr * self._eta ** (-s))

    def on_trial_add(self, tune_controller, trial):
        self._require_metric_mode()
        cur_bracket = self._state["bracket"]
        cur_band = self._hyperbands[self._state["band_idx"]]
        if cur_bracket is None or cur_bracket.filled():
            while True:
                if len(cur_band) == self._s_max_1:
                    cur_band = []
                    self._hyperbands.append(cur_band)
                    self._state["band_idx"] += 1
                s = self._next_bracket_s(cur_band)
                if self._get_r0(s) == 0:
                    # bracket too small to run anything: skip it
                    cur_band.append(None)
                    continue
                cur_bracket = self._create_bracket(s)
                cur_band.append(cur_bracket)
                self._state["bracket"] = cur_bracket
                break
        cur_bracket.add_trial(trial)
        self._trial_info[trial] = cur_bracket, self._state["band_idx"]

    def _next_bracket_s(self, band) -> int:
        """HyperBand fills a band from the smallest bracket (s=0) up."""
        return len(band)

    def _create_bracket(self, s: int) -> "_Bracket":
        return _Bracket(time_attr=self._time_attr, max_trials=self._get_n0(s),
                        init_t_attr=self._get_r0(s), max_t_attr=self._max_t_attr,
                        eta=self._eta, s=s, stop_last_trials=self._stop_last_trials)

    def on_trial_result(self, tune_controller, trial, result: Dict) -> str:
        bracket, _ = self._trial_info[trial]
        bracket.update_trial_stats(trial, result)
        if bracket.continue_trial(trial):
            return TrialScheduler.CONTINUE
        return self._process_bracket(tune_controller, bracket)

    def _process_bracket(self, tune_controller, bracket: "_Bracket") -> str:
        """Halve the bracket once all its live trials reached the milestone;
        until then the reporting trial is paused. At most the reporting trial
        is RUNNING here; the others are PAUSED."""
        action = TrialScheduler.PAUSE
        if not bracket.cur_iter_done():
            return action
        if bracket.finished():
            bracket.cleanup_full(tune_controller)
            return TrialScheduler.STOP
        bracket.is_being_processed = True
        good, bad = bracket.successive_halving(self._metric, self._metric_op)
        self._num_stopped += len(bad)
        for t in bad:
            if t.status == PAUSED:
                tune_controller.stop_trial(t)
            elif t.status == RUNNING:
                bracket.cleanup_trial(t)
                action = TrialScheduler.STOP
            else:
                raise _tune_error(f"Trial with unexpected bad status encountered: {t} is {t.status}")
        for t in good:
            if bracket.continue_trial(t):
                if t.status in (TERMINATED, ERROR):
                    raise _tune_error(f"Good trial {t.trial_id} is in an invalid state: {t.status}")
                if t.status == PAUSED:
                    self._unpause_trial(tune_controller, t)
                    bracket.trials_to_unpause.add(t)
                elif t.status == RUNNING:
                    action = TrialScheduler.CONTINUE
            elif bracket.finished() and bracket.stop_last_trials:
                # the bracket reached max_t: its last trials are done
                if t.status == PAUSED:
                    tune_controller.stop_trial(t)
                elif t.status == RUNNING:
                    bracket.cleanup_trial(t)
                    action = TrialScheduler.STOP
        return action

    def _unpause_trial(self, tune_controller, trial):
        """Hook called for a paused trial promoted to the next milestone
        (``choose_trial_to_run`` then returns it to be resumed)."""

    def on_trial_remove(self, tune_controller, trial):
        info = self._trial_info.get(trial)
        if info is None:
            return
        bracket, _ = info
        bracket.cleanup_trial(trial)
        if not bracket.finished() and not bracket.is_being_processed:
            self._process_bracket(tune_controller, bracket)

    def on_trial_complete(self, tune_controller, trial, result):
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial):
        self.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller):
        """Fair share within a band: the least complete bracket's pending
        trial first, then the next band's."""
        for band in self._hyperbands:
            brackets = [b for b in band if b is not None]
            for bracket in sorted(brackets, key=lambda b: b.completion_percentage()):
                for trial in bracket.current_trials():
                    if bracket.runnable(trial):
                        return trial
        return None

    def debug_string(self) -> str:
        out = "Using HyperBand: num_stopped={} total_brackets={}".format(
            self._num_stopped, sum(len(band) for band in self._hyperbands))
        for i, band in enumerate(self._hyperbands):
            out += f"\nRound #{i}:"
            for bracket in band:
                if bracket:
                    out += f"\n  {bracket}"
        return out

    def state(self) -> Dict[str, int]:
        return {"num_brackets": sum(len(band) for band in self._hyperbands),
                "num_stopped": self._num_stopped}


class _Bracket:
    """One bracket: its live trials with their latest results, the current
    size ``n`` and milestone ``r``."""

    def __init__(self, time_attr, max_trials, init_t_attr, max_t_attr, eta, s,
                 stop_last_trials=True):
        self._live_trials: Dict = {}
        self._all_trials: List = []
        self._time_attr = time_attr
        self._n = self._n0 = max_trials
        self._r = self._r0 = init_t_attr
        self._max_t_attr = max_t_attr
        self._cumul_r = self._r0
        self._eta = eta
        self._halves = s
        self._total_work = self._calculate_total_work(self._n0, self._r0, s)
        self._completed_progress = 0
        self.stop_last_trials = stop_last_trials
        self.is_being_processed = False
        self.trials_to_unpause = set()

    def runnable(self, trial) -> bool:
        """A trial waiting to start, or paused and promoted."""
        return trial.status == PENDING or (trial.status == PAUSED and trial in self.trials_to_unpause)

    def add_trial(self, trial):
        if self.filled():
            raise _tune_error("Cannot add trial to filled bracket!")
        self._live_trials[trial] = None
        self._all_trials.append(trial)

    def cur_iter_done(self) -> bool:
        return all(self._get_result_time(r) >= self._cumul_r for r in self._live_trials.values())

    def finished(self) -> bool:
        if not self.stop_last_trials:
            return False
        return self._halves == 0 and self.cur_iter_done()

    def current_trials(self) -> List:
        return list(self._live_trials)

    def continue_trial(self, trial) -> bool:
        result = self._live_trials[trial]
        if not self.stop_last_trials and self._halves == 0:
            return True
        return self._get_result_time(result) < self._cumul_r

    def filled(self) -> bool:
        return len(self._live_trials) == self._n

    def successive_halving(self, metric, metric_op) -> Tuple[List, List]:
        if self._halves == 0 and not self.stop_last_trials:
            return list(self._live_trials), []
        assert self._halves > 0
        self._halves -= 1
        self._n = int(np.ceil(self._n / self._eta))
        self._r = int(min(self._r * self._eta, self._max_t_attr))
        self._cumul_r = self._r
        ranked = sorted(self._live_trials, key=lambda t: metric_op * self._live_trials[t][metric])
        return ranked[-self._n:], ranked[:-self._n]

    def update_trial_stats(self, trial, result: Dict):
        observed = self._get_result_time(result)
        last = self._get_result_time(self._live_trials[trial])
        delta = observed - last
        if delta <= 0:
            logger.info("Restoring from a previous point in time. Previous=%s; Now=%s", last, observed)
        self._completed_progress += delta
        self._live_trials[trial] = result
        self.trials_to_unpause.discard(trial)

    def cleanup_trial(self, trial):
        self._live_trials.pop(trial, None)

    def cleanup_full(self, tune_controller):
        for trial in self.current_trials():
            if trial.status == PAUSED:
                tune_controller.stop_trial(trial)

    def completion_percentage(self) -> float:
        if self.finished():
            return 1.0
        return min(self._completed_progress / self._total_work, 1.0) if self._total_work else 0.0

    def _get_result_time(self, result) -> float:
        if result is None:
            return 0
        return result[self._time_attr]

    def _calculate_total_work(self, n, r, s):
        work = 0
        cumulative_r = r
        for _ in range(s + 1):
            work += int(n) * int(r)
            n = int(np.ceil(n / self._eta))
            r *= self._eta
            r = int(min(r, self._max_t_attr - cumulative_r))
        return work

    def __repr__(self) -> str:
        status = ", ".join([f"Max Size (n)={self._n}", f"Milestone (r)={self._cumul_r}",
                            f"completed={self.completion_percentage():.1%}"])
        counts = collections.Counter(t.status for t in self._all_trials)
        statuses = ", ".join(sorted(f"{k}: {v}" for k, v in counts.items()))
        return f"Bracket({status}): {{{statuses}}} "
