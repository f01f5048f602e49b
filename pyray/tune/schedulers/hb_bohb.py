"""HyperBandForBOHB: HyperBand as BOHB runs it.

Differs from :class:`HyperBandScheduler` in two ways (as Ray's): a band is
filled from its largest bracket down, and a trial reaching its milestone is
paused even while its bracket is not full, so that new trials can join; when
nothing runs, paused brackets are halved.

The matching searcher (Ray's ``TuneBOHB``) needs ConfigSpace and hpbandster
and is not provided; use this scheduler with any searcher.
"""

import logging
from typing import Dict

from pyray.tune.schedulers.hyperband import HyperBandScheduler
from pyray.tune.schedulers.pbt import _search_alg_of
from pyray.tune.schedulers.trial_scheduler import PAUSED, RUNNING, TrialScheduler

logger = logging.getLogger(__name__)


def _call_searcher(tune_controller, name, trial_id):
    """Tell the searcher (BOHB's) that a trial paused / resumes, if it cares."""
    search_alg = _search_alg_of(tune_controller)
    searcher = getattr(search_alg, "searcher", search_alg)
    hook = getattr(searcher, name, None)
    if hook is not None:
        hook(trial_id)


class HyperBandForBOHB(HyperBandScheduler):
    """HyperBand for BOHB: largest bracket first; pauses trials at their
    milestone even when the bracket is not full. Same arguments as
    :class:`HyperBandScheduler`."""

    def _next_bracket_s(self, band) -> int:
        return self._s_max_1 - len(band) - 1

    def on_trial_result(self, tune_controller, trial, result: Dict) -> str:
        result["hyperband_info"] = {}
        bracket, _ = self._trial_info[trial]
        bracket.update_trial_stats(trial, result)
        if bracket.continue_trial(trial):
            return TrialScheduler.CONTINUE
        result["hyperband_info"]["budget"] = bracket._cumul_r
        others_not_paused = any(t.status != PAUSED for t in bracket.current_trials() if t is not trial)
        if not bracket.filled() or others_not_paused:
            _call_searcher(tune_controller, "on_pause", trial.trial_id)
            return TrialScheduler.PAUSE
        action = self._process_bracket(tune_controller, bracket)
        if action == TrialScheduler.PAUSE:
            _call_searcher(tune_controller, "on_pause", trial.trial_id)
        return action

    def _unpause_trial(self, tune_controller, trial):
        _call_searcher(tune_controller, "on_unpause", trial.trial_id)

    def choose_trial_to_run(self, tune_controller, allow_recurse: bool = True):
        for band in self._hyperbands:
            for bracket in (b for b in band if b is not None):
                for trial in bracket.current_trials():
                    if bracket.runnable(trial):
                        return trial
        if not any(t.status == RUNNING for t in tune_controller.get_trials()):
            # nothing runs: halve the brackets whose trials all wait
            for band in self._hyperbands:
                for bracket in band:
                    if bracket and any(t.status == PAUSED for t in bracket.current_trials()):
                        self._process_bracket(tune_controller, bracket)
                        if allow_recurse and any(bracket.runnable(t) for t in bracket.current_trials()):
                            return self.choose_trial_to_run(tune_controller, allow_recurse=False)
        return None
