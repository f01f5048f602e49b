"""Trial schedulers (``pyray.tune.schedulers``), as in Ray Tune."""

from pyray.tune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from pyray.tune.schedulers.hb_bohb import HyperBandForBOHB
from pyray.tune.schedulers.hyperband import HyperBandScheduler
from pyray.tune.schedulers.median_stopping_rule import MedianStoppingRule
from pyray.tune.schedulers.pbt import PopulationBasedTraining, PopulationBasedTrainingReplay
from pyray.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

_BY_NAME = {
    "fifo": FIFOScheduler,
    "async_hyperband": AsyncHyperBandScheduler,
    "asynchyperband": AsyncHyperBandScheduler,
    "median_stopping_rule": MedianStoppingRule,
    "medianstopping": MedianStoppingRule,
    "hyperband": HyperBandScheduler,
    "hb_bohb": HyperBandForBOHB,
    "pbt": PopulationBasedTraining,
}


def create_scheduler(scheduler: str, **kwargs) -> TrialScheduler:
    """A scheduler by name (``"fifo"``, ``"async_hyperband"``, ``"hyperband"``,
    ``"median_stopping_rule"``, ``"hb_bohb"``, ``"pbt"``), as Ray's."""
    key = scheduler.lower()
    if key not in _BY_NAME:
        raise ValueError(f"The `scheduler` argument must be one of {sorted(_BY_NAME)}. "
                         f"Got: {scheduler}")
    return _BY_NAME[key](**kwargs)


__all__ = [
    "TrialScheduler", "FIFOScheduler", "AsyncHyperBandScheduler", "ASHAScheduler",
    "HyperBandScheduler", "MedianStoppingRule", "PopulationBasedTraining",
    "PopulationBasedTrainingReplay", "HyperBandForBOHB",
    "create_scheduler",
]
