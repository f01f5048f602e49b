"""pyray.tune: hyperparameter search, a drop-in for Ray Tune.

    import pyray as ray
    from pyray import tune

    def train_fn(config):
        for i in range(10):
            tune.report({"score": config["x"] * i})

    results = tune.Tuner(train_fn, param_space={"x": tune.uniform(0, 1)},
                         tune_config=tune.TuneConfig(metric="score", mode="max",
                                                     num_samples=20)).fit()
    print(results.get_best_result().config)

See docs/tune.md.
"""
from pyray.train import (
    Checkpoint, CheckpointConfig, FailureConfig, RunConfig, get_checkpoint, get_context, report,
)
from pyray.tune import schedulers, search
from pyray.tune.analysis import ExperimentAnalysis
from pyray.tune.callback import Callback
from pyray.tune.error import TuneError
from pyray.tune.execution.placement_groups import PlacementGroupFactory
from pyray.tune.experiment.trial import Trial
from pyray.tune.result_grid import Result, ResultGrid
from pyray.tune.search.sample import (
    choice, grid_search, lograndint, loguniform, qlograndint, qloguniform, qrandint, qrandn,
    quniform, randint, randn, sample_from, uniform,
)
from pyray.tune.stopper import Stopper
from pyray.tune.trainable.trainable import Trainable
from pyray.tune.trainable.util import with_parameters, with_resources
from pyray.tune.tune import run, run_experiments
from pyray.tune.tuner import TuneConfig, Tuner

__all__ = [
    "Tuner", "TuneConfig", "RunConfig", "CheckpointConfig", "FailureConfig", "run",
    "run_experiments", "report", "get_checkpoint", "get_context", "Trainable",
    "with_parameters", "with_resources", "Checkpoint", "ResultGrid", "Result",
    "ExperimentAnalysis", "PlacementGroupFactory", "TuneError", "Stopper", "Callback", "Trial",
    "schedulers", "search", "uniform", "quniform", "loguniform", "qloguniform", "randn",
    "qrandn", "randint", "qrandint", "lograndint", "qlograndint", "choice", "sample_from",
    "grid_search",
]
