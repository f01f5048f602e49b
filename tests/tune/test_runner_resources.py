"""Trial resources and shared objects in pyray.tune's runner: with_resources
(and PlacementGroupFactory) bound how many trials run at once,
max_concurrent_trials too, and with_parameters stores an object once."""
import os
import time

import pytest

import pyray
from pyray import tune
from pyray.tune import PlacementGroupFactory


@pytest.fixture(scope="module", autouse=True)
def cluster():
    pyray.init(num_cpus=2, resources={"token": 1})
    yield
    pyray.shutdown()


def timed(config):
    t0 = time.time()
    if config.get("barrier"):   # wait (bounded) for a second trial to be running too
        d = config["barrier"]
        open(os.path.join(d, f"up_{config['i']}"), "w").close()
        deadline = time.monotonic() + 20
        while len(os.listdir(d)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(0.25)
    tune.report({"t0": t0, "t1": time.time()})


def _max_overlap(grid):
    spans = [(r.metrics["t0"], r.metrics["t1"]) for r in grid]
    return max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)


def _run(tmp_path, trainable, name, n=4, barrier=None, **tc):
    space = {"i": tune.grid_search(list(range(n))), "barrier": barrier}
    grid = tune.Tuner(trainable, param_space=space,
                      tune_config=tune.TuneConfig(**tc),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name=name,
                                                verbose=0)).fit()
    assert grid.num_errors == 0, grid.errors
    return grid


def test_resources_per_trial_bound_concurrency(tmp_path):
    (tmp_path / "b").mkdir()
    assert _max_overlap(_run(tmp_path, timed, "one_cpu", n=2, barrier=str(tmp_path / "b"))) == 2
    assert _max_overlap(_run(tmp_path, tune.with_resources(timed, {"cpu": 2}), "two")) == 1
    assert _max_overlap(_run(tmp_path, tune.with_resources(timed, {"token": 1}), "tok")) == 1
    assert _max_overlap(_run(tmp_path, timed, "mct", max_concurrent_trials=1)) == 1


def pg_trial(config):
    @pyray.remote(num_cpus=1)
    def child():
        from pyray.util import get_current_placement_group
        return get_current_placement_group()

    pg_id = pyray.get(child.remote())
    t0 = time.time()
    time.sleep(0.3)
    tune.report({"t0": t0, "t1": time.time(), "child_in_pg": pg_id is not None,
                 "resources": str(tune.get_context().get_trial_resources())})


def test_placement_group_factory_reserves_bundles_for_children(tmp_path):
    pgf = PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}])
    grid = _run(tmp_path, tune.with_resources(pg_trial, pgf), "pg", n=2)
    assert _max_overlap(grid) == 1
    assert all(r.metrics["child_in_pg"] for r in grid)


def test_trial_needing_more_than_the_cluster_errors_clearly(tmp_path):
    grid = tune.Tuner(tune.with_resources(timed, {"cpu": 3}),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="big",
                                                verbose=0)).fit()
    assert grid.num_errors == 1
    msg = str(grid.errors[0])
    assert "needs resources" in msg and "'CPU': 3" in msg and "timed_" in msg


PICKLED = []


class Big:
    def __init__(self, n):
        self.data = list(range(n))

    def __reduce__(self):
        PICKLED.append(1)       # counts serializations in this (the driver's) process
        return (Big, (len(self.data),))


def uses_big(config, big=None):
    tune.report({"n": len(big.data) + config["i"]})


def test_with_parameters_stores_the_object_once(tmp_path):
    PICKLED.clear()
    trainable = tune.with_parameters(uses_big, big=Big(1000))
    grid = _run(tmp_path, trainable, "wp", n=6)
    assert sorted(r.metrics["n"] for r in grid) == [1000 + i for i in range(6)]
    assert len(PICKLED) == 1
