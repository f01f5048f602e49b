"""Trial schedulers (``pyray.tune.schedulers``), as in Ray Tune."""

from pyray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

__all__ = ["TrialScheduler", "FIFOScheduler"]
