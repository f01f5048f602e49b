"""Stop criteria (``RunConfig(stop=...)``), as in Ray: a ``Stopper`` decides per
result whether a trial stops (``__call__``) and whether the whole experiment
does (``stop_all``)."""
from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


class Stopper:
    def __call__(self, trial_id, result):
        raise NotImplementedError

    def stop_all(self):
        raise NotImplementedError


class CombinedStopper(Stopper):
    def __init__(self, *stoppers):
        self._stoppers = stoppers

    def __call__(self, trial_id, result):
        return any(s(trial_id, result) for s in self._stoppers)

    def stop_all(self):
        return any(s.stop_all() for s in self._stoppers)


class NoopStopper(Stopper):
    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return False


class FunctionStopper(Stopper):
    def __init__(self, function):
        self._fn = function

    def __call__(self, trial_id, result):
        return bool(self._fn(trial_id, result))

    def stop_all(self):
        return bool(getattr(self._fn, "stop_all", lambda: False)())


class MaximumIterationStopper(Stopper):
    def __init__(self, max_iter):
        self._max_iter = max_iter

    def __call__(self, trial_id, result):
        return result.get("training_iteration", 0) >= self._max_iter

    def stop_all(self):
        return False


class TimeoutStopper(Stopper):
    """Stops every trial once ``timeout`` seconds (or a timedelta) have passed."""

    def __init__(self, timeout):
        if hasattr(timeout, "total_seconds"):
            timeout = timeout.total_seconds()
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"TimeoutStopper: timeout must be a positive number of seconds, "
                             f"got {timeout!r}")
        self._timeout = float(timeout)
        self._deadline = None

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        if self._deadline is None:
            self._deadline = time.monotonic() + self._timeout
        return time.monotonic() >= self._deadline


class DictStopper(Stopper):
    """``{"training_iteration": 10, "score": 0.9}``: a trial stops once any of
    its results reaches a threshold (``>=``)."""

    def __init__(self, criteria):
        for k, v in criteria.items():
            if isinstance(v, dict) or not isinstance(k, str):
                raise ValueError(f"stop={criteria!r}: expected a flat dict of metric name -> "
                                 f"threshold.")
        self._criteria = dict(criteria)
        self._warned = set()

    def __call__(self, trial_id, result):
        for k, v in self._criteria.items():
            if k not in result:
                if k not in self._warned:
                    self._warned.add(k)
                    logger.warning("Stopping criterion %r not found in the result of trial %s; "
                                   "keys: %s", k, trial_id, sorted(result))
                continue
            if result[k] >= v:
                return True
        return False

    def stop_all(self):
        return False


def make_stopper(stop):
    if stop is None:
        return None
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, dict):
        return DictStopper(stop)
    if callable(stop):
        return FunctionStopper(stop)
    raise ValueError(f"RunConfig(stop={stop!r}): expected a dict of thresholds, a function "
                     f"(trial_id, result) -> bool, or a tune.Stopper.")
