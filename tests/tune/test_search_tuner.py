"""Schedulers and searchers through tune.Tuner on a real local cluster."""

import json
import os
import tempfile
import time

import pytest

import pyray
from pyray import tune

if not hasattr(tune, "Tuner"):  # the experiment runner is merged separately
    pytest.skip("pyray.tune.Tuner is not in this tree", allow_module_level=True)
from pyray.train import Checkpoint
from pyray.tune.schedulers import (
    ASHAScheduler, HyperBandScheduler, MedianStoppingRule, PopulationBasedTraining,
)


@pytest.fixture(scope="module", autouse=True)
def cluster():
    pyray.init(num_cpus=2)
    yield
    pyray.shutdown()


def run(trainable, tmp_path, param_space, **tune_config):
    return tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(**tune_config),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp", verbose=0)).fit()


def linear_growth(config):
    for i in range(1, 21):
        tune.report({"score": config["x"] * i})


def test_asha_stops_bad_trials_early(tmp_path):
    # trials arrive best first: every later one is below the rung cutoff
    grid = run(linear_growth, tmp_path, {"x": tune.grid_search([8, 7, 6, 5, 4, 3, 2, 1])},
               metric="score", mode="max",
               scheduler=ASHAScheduler(grace_period=1, max_t=20, reduction_factor=2))
    assert grid.num_errors == 0 and len(grid) == 8
    iters = {r.config["x"]: r.metrics["training_iteration"] for r in grid}
    assert iters[8] == 20                      # the best is never stopped
    assert grid.get_best_result().config == {"x": 8}
    early = [x for x, n in iters.items() if n < 20]
    assert len(early) >= 5, iters
    assert all(iters[x] <= 4 for x in (1, 2, 3)), iters


def counting_with_checkpoints(config):
    """value grows by lr per step; the state lives in checkpoints."""
    me = tune.get_context().get_trial_id()
    value, origin, step = 0.0, "", 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:   # resumed after a pause (own checkpoint) or cloned (another's)
        with ckpt.as_directory() as d:
            state = json.load(open(os.path.join(d, "state.json")))
        value, step = state["value"], state["step"]
        origin = state["owner"] if state["owner"] != me else state["origin"]
    while step < 10:
        step += 1
        value += config["lr"]
        with tempfile.TemporaryDirectory() as d:
            json.dump({"value": value, "owner": me, "step": step, "origin": origin},
                      open(os.path.join(d, "state.json"), "w"))
            tune.report({"value": value, "cloned_from": origin, "lr": config["lr"]},
                        checkpoint=Checkpoint.from_directory(d))


def test_pbt_clones_the_better_trials_checkpoint(tmp_path):
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=2, quantile_fraction=0.25,
        resample_probability=0.0, hyperparam_mutations={"lr": [0.1, 0.2, 0.5, 1.0, 2.0]})
    grid = run(counting_with_checkpoints, tmp_path,
               {"lr": tune.grid_search([0.1, 0.2, 1.0, 2.0])}, metric="value", mode="max",
               scheduler=pbt)
    assert grid.num_errors == 0
    cloned = [r for r in grid if r.metrics["cloned_from"]]
    assert cloned, [r.metrics for r in grid]
    ids = {r.path: os.path.basename(r.path) for r in grid}
    for r in cloned:
        # restored from another trial's checkpoint
        assert r.metrics["cloned_from"] not in os.path.basename(r.path)
        assert any(r.metrics["cloned_from"] in name for name in ids.values())
    # the worst start (lr=0.1 for 10 steps = 1.0) ended far better after exploiting
    worst = next(r for r in grid if r.config.get("lr") is not None and r.path.find("lr=0.1") >= 0)
    assert worst.metrics["value"] > 2.0
    log = tmp_path / "exp" / "pbt_global.txt"
    assert log.exists() and len(log.read_text().splitlines()) >= 1


def pbt_no_checkpoints(config):
    for i in range(10):
        time.sleep(0.05)  # the two trials overlap
        tune.report({"value": config["lr"] * i})


def test_pbt_without_checkpoints_fails_clearly(tmp_path):
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                  hyperparam_mutations={"lr": [0.1, 0.2, 0.5]})
    with pytest.raises(tune.TuneError, match="needs checkpointing trainables"):
        run(pbt_no_checkpoints, tmp_path, {"lr": tune.grid_search([0.1, 0.5])},
            metric="value", mode="max", scheduler=pbt)


def quadratic_trainable(config):
    tune.report({"loss": (config["x"] - 3.0) ** 2 + (config["y"] + 2.0) ** 2})


def test_optuna_search_through_tuner(tmp_path):
    from pyray.tune.search.optuna import OptunaSearch
    grid = run(quadratic_trainable, tmp_path,
               {"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10), "tag": "q"},
               metric="loss", mode="min", num_samples=40, max_concurrent_trials=2,
               search_alg=OptunaSearch(seed=5))
    assert len(grid) == 40 and grid.num_errors == 0
    best = grid.get_best_result()
    assert best.metrics["loss"] < 1.0 and best.config["tag"] == "q"


def stepping(config):
    ckpt = tune.get_checkpoint()
    step = 0
    if ckpt is not None:
        with ckpt.as_directory() as d:
            step = json.load(open(os.path.join(d, "s.json")))["step"]
    while step < 9:
        step += 1
        with tempfile.TemporaryDirectory() as d:
            json.dump({"step": step}, open(os.path.join(d, "s.json"), "w"))
            tune.report({"acc": config["q"] * step}, checkpoint=Checkpoint.from_directory(d))


def test_hyperband_pauses_and_promotes_through_tuner(tmp_path):
    # max_t=3, eta=3: bracket 0 takes 2 trials to 3 iterations; bracket 1
    # takes 3 trials to 1 iteration (the first two pause there), keeps the best
    # one and resumes it up to min(1 * 3, max_t) = 3
    grid = run(stepping, tmp_path, {"q": tune.grid_search([5, 4, 1, 3, 2])},
               metric="acc", mode="max",
               scheduler=HyperBandScheduler(max_t=3, reduction_factor=3))
    assert grid.num_errors == 0
    iters = {r.config["q"]: r.metrics["training_iteration"] for r in grid}
    assert iters[5] == 3 and iters[4] == 3     # bracket 0
    assert iters[3] == 3 and iters[1] == 1 and iters[2] == 1, iters


def noisy_loss(config):
    for i in range(1, 11):
        tune.report({"loss": config["level"] + 1.0 / i})


def test_median_stopping_rule_through_tuner(tmp_path):
    grid = run(noisy_loss, tmp_path, {"level": tune.grid_search([0, 1, 2, 10, 20])},
               metric="loss", mode="min", max_concurrent_trials=1,
               scheduler=MedianStoppingRule(time_attr="training_iteration", grace_period=1,
                                            min_samples_required=2))
    iters = {r.config["level"]: r.metrics["training_iteration"] for r in grid}
    assert iters[0] == 10 and iters[1] == 10
    assert iters[10] == 1 and iters[20] == 1, iters


def test_seeded_random_search_is_reproducible(tmp_path):
    from pyray.tune.search import BasicVariantGenerator

    def configs(path):
        grid = run(quadratic_trainable, path, {"x": tune.uniform(-10, 10), "y": tune.randn()},
                   metric="loss", mode="min", num_samples=4,
                   search_alg=BasicVariantGenerator(random_state=42))
        return sorted((r.config["x"], r.config["y"]) for r in grid)

    assert configs(tmp_path / "a") == configs(tmp_path / "b")


def test_scheduler_metric_conflict_and_bad_space(tmp_path):
    with pytest.raises(ValueError, match="already instantiated"):
        run(quadratic_trainable, tmp_path, {"x": 1.0, "y": 1.0}, metric="loss", mode="min",
            scheduler=ASHAScheduler(metric="loss", mode="min"))
    with pytest.raises(ValueError, match="empty"):
        run(quadratic_trainable, tmp_path, {"x": tune.grid_search([]), "y": 1.0},
            metric="loss", mode="min")


def test_scheduler_metric_the_trainable_never_reports(tmp_path):
    grid = run(quadratic_trainable, tmp_path, {"x": 1.0, "y": 1.0},
               scheduler=ASHAScheduler(metric="acc", mode="max"))
    assert grid.num_errors == 1
    assert "without the metric 'acc'" in str(grid[0].error)
