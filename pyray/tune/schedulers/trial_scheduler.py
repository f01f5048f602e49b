"""TrialScheduler: decides, from each reported result, whether a trial
continues, pauses or stops, and which waiting trial runs next.

Schedulers are plain objects: the experiment controller calls the ``on_*``
hooks with itself (``tune_controller``: ``get_trials()``,
``get_live_trials()``, ``pause_trial(trial)``, ``stop_trial(trial)``) and the
trial, and carries out the decision returned.
"""

from typing import Dict, Optional

import cloudpickle

from pyray.tune.error import TuneError
from pyray.tune.search.searcher import validate_mode

DEFAULT_METRIC = "_metric"

# trial statuses (the values of Trial.status)
PENDING = "PENDING"
RUNNING = "RUNNING"
PAUSED = "PAUSED"
TERMINATED = "TERMINATED"
ERROR = "ERROR"


def _tune_error(message: str) -> Exception:
    """Ray's TuneError for scheduler failures."""
    return TuneError(message)


class TrialScheduler:
    """Base class of trial schedulers."""

    CONTINUE = "CONTINUE"  #: keep running the trial
    PAUSE = "PAUSE"  #: pause the trial (checkpoint it, free its resources)
    STOP = "STOP"  #: stop the trial
    NOOP = "NOOP"  #: the scheduler already acted on the trial (paused/stopped it)

    _metric = None
    _mode = None
    _supports_buffered_results = True

    @property
    def metric(self):
        return self._metric

    @property
    def mode(self):
        return self._mode

    @property
    def supports_buffered_results(self) -> bool:
        return self._supports_buffered_results

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec) -> bool:
        """Take TuneConfig's metric/mode; False if the scheduler was created
        with its own (the caller then raises, as Ray)."""
        validate_mode(mode)
        if self._metric and metric:
            return False
        if self._mode and mode:
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC
        return True

    def on_trial_add(self, tune_controller, trial):
        raise NotImplementedError

    def on_trial_error(self, tune_controller, trial):
        raise NotImplementedError

    def on_trial_result(self, tune_controller, trial, result: Dict) -> str:
        raise NotImplementedError

    def on_trial_complete(self, tune_controller, trial, result: Dict):
        raise NotImplementedError

    def on_trial_remove(self, tune_controller, trial):
        raise NotImplementedError

    def choose_trial_to_run(self, tune_controller):
        raise NotImplementedError

    def debug_string(self) -> str:
        raise NotImplementedError

    def save(self, checkpoint_path: str):
        """Writes the scheduler's state (cloudpickle: mutations may be lambdas)."""
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(cloudpickle.load(f))


class FIFOScheduler(TrialScheduler):
    """Runs trials in the order they were added; never pauses or stops one."""

    def on_trial_add(self, tune_controller, trial):
        pass

    def on_trial_error(self, tune_controller, trial):
        pass

    def on_trial_result(self, tune_controller, trial, result):
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        pass

    def on_trial_remove(self, tune_controller, trial):
        pass

    def choose_trial_to_run(self, tune_controller):
        return _first_with_status(tune_controller, PENDING) or _first_with_status(
            tune_controller, PAUSED)

    def debug_string(self) -> str:
        return "Using FIFO scheduling algorithm."


class _MetricModeScheduler(FIFOScheduler):
    """A FIFO scheduler that compares trials on ``metric`` in ``mode``
    (``_metric_op``: +1 to maximize, -1 to minimize)."""

    def __init__(self, metric: Optional[str] = None, mode: Optional[str] = None):
        validate_mode(mode)
        self._metric = metric
        self._mode = mode
        self._metric_op = _op_of(mode)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        if not super().set_search_properties(metric, mode, **spec):
            return False
        self._metric_op = _op_of(self._mode)
        return True

    def _require_metric_mode(self):
        if not self._metric or not self._metric_op:
            raise ValueError(
                f"{type(self).__name__} has been instantiated without a valid `metric` "
                f"({self._metric}) or `mode` ({self._mode}) parameter. Either pass these "
                "parameters when instantiating the scheduler, or pass them as parameters "
                "to `tune.TuneConfig()`")

    def on_trial_add(self, tune_controller, trial):
        self._require_metric_mode()


def _op_of(mode):
    return {"max": 1.0, "min": -1.0}.get(mode)


def _first_with_status(tune_controller, status):
    for trial in tune_controller.get_trials():
        if trial.status == status:
            return trial
    return None
