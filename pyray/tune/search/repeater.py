"""Repeater: evaluate every suggestion several times, report the mean."""

import copy
import logging
from typing import Dict, List, Optional

import numpy as np

from pyray.tune.search.searcher import Searcher, _WrappingSearcher, check_arg

logger = logging.getLogger(__name__)

TRIAL_INDEX = "__trial_index__"


class _TrialGroup:
    """The trials running one suggestion, and their scores."""

    def __init__(self, primary_trial_id: str, config: Dict, max_trials: int = 1):
        self.primary_trial_id = primary_trial_id
        self.config = config
        self._trials = {primary_trial_id: None}
        self.max_trials = max_trials

    def add(self, trial_id: str):
        assert len(self._trials) < self.max_trials
        self._trials.setdefault(trial_id, None)

    def full(self) -> bool:
        return len(self._trials) == self.max_trials

    def report(self, trial_id: str, score: float):
        if score is None:
            raise ValueError("Internal Error: Score cannot be None.")
        self._trials[trial_id] = score

    def finished_reporting(self) -> bool:
        return None not in self._trials.values() and len(self._trials) == self.max_trials

    def scores(self) -> List:
        return list(self._trials.values())

    def count(self) -> int:
        return len(self._trials)


class Repeater(_WrappingSearcher):
    """Repeats each suggestion of ``searcher`` ``repeat`` times (e.g. to
    average over random seeds); the searcher gets the mean of the group's
    scores, once all of them completed, under the first trial's id.

    Set ``num_samples`` to a multiple of ``repeat``. With ``set_index`` the
    configs carry ``"__trial_index__"`` (0 .. repeat-1).
    """

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True):
        if not isinstance(searcher, Searcher):
            raise TypeError(f"Repeater wraps a Searcher, got {type(searcher).__name__}")
        check_arg(type(repeat) is int and repeat > 0, f"repeat must be an int > 0, got {repeat!r}")
        self.searcher = searcher
        self.repeat = repeat
        self._set_index = set_index
        self._groups: List[_TrialGroup] = []
        self._trial_id_to_group: Dict[str, _TrialGroup] = {}
        self._current_group: Optional[_TrialGroup] = None
        super().__init__(metric=self.searcher.metric, mode=self.searcher.mode)

    def suggest(self, trial_id: str):
        if self._current_group is None or self._current_group.full():
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self._current_group = _TrialGroup(trial_id, copy.deepcopy(config), max_trials=self.repeat)
            self._groups.append(self._current_group)
            index_in_group = 0
        else:
            index_in_group = self._current_group.count()
            self._current_group.add(trial_id)
        config = self._current_group.config.copy()
        if self._set_index:
            config[TRIAL_INDEX] = index_in_group
        self._trial_id_to_group[trial_id] = self._current_group
        return config

    def on_trial_result(self, trial_id: str, result: Dict):
        pass

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, **kwargs):
        group = self._trial_id_to_group.get(trial_id)
        if group is None:
            logger.error("Trial %s not in the Repeater's groups: ignored", trial_id)
            return
        metric = self.searcher.metric
        score = np.nan if not result or metric not in result else result[metric]
        group.report(trial_id, score)
        if group.finished_reporting():
            self.searcher.on_trial_complete(group.primary_trial_id,
                                            result={metric: float(np.nanmean(group.scores()))},
                                            **kwargs)
