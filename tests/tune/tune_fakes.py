"""Stand-ins for the experiment controller and its trials: schedulers are
plain objects, driven here by synthetic results without processes."""

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

_ids = itertools.count()


@dataclass
class FakeTrial:
    config: Dict = field(default_factory=dict)
    trial_id: str = field(default_factory=lambda: f"trial_{next(_ids):05d}")
    status: str = "PENDING"
    last_result: Dict = field(default_factory=dict)
    evaluated_params: Dict = field(default_factory=dict)
    checkpoint: Any = None
    restore_checkpoint: Any = None
    local_path: Optional[str] = None

    @property
    def path(self):
        return self.local_path

    def __hash__(self):
        return hash(self.trial_id)

    def __eq__(self, other):
        return self is other

    def __repr__(self):
        return self.trial_id


class FakeController:
    """Records what a scheduler asks the controller to do."""

    def __init__(self, trials: Optional[List[FakeTrial]] = None, scheduler=None):
        self.scheduler = scheduler
        self.trials: List[FakeTrial] = list(trials or [])
        self.paused: List[FakeTrial] = []
        self.stopped: List[FakeTrial] = []

    def add(self, scheduler, trial):
        self.scheduler = scheduler
        self.trials.append(trial)
        scheduler.on_trial_add(self, trial)

    def get_trials(self):
        return list(self.trials)

    def get_live_trials(self):
        return [t for t in self.trials if t.status not in ("TERMINATED", "ERROR")]

    def pause_trial(self, trial, should_checkpoint: bool = True):
        trial.status = "PAUSED"
        self.paused.append(trial)

    def stop_trial(self, trial):
        """As Ray's controller: the scheduler hears of the stop (on_trial_remove
        for a waiting trial, on_trial_complete for a running one)."""
        if trial.status in ("TERMINATED", "ERROR"):
            return
        previous, trial.status = trial.status, "TERMINATED"
        self.stopped.append(trial)
        if self.scheduler is not None:
            if previous in ("PENDING", "PAUSED"):
                self.scheduler.on_trial_remove(self, trial)
            else:
                self.scheduler.on_trial_complete(self, trial, trial.last_result)
