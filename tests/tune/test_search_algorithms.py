"""Search algorithms driven without processes: a user's own Searcher through
the controller's adapter, ConcurrencyLimiter, Repeater, OptunaSearch."""

import math

import numpy as np
import pytest

from pyray import tune
from pyray.tune.search import (
    BasicVariantGenerator, ConcurrencyLimiter, Repeater, SearchGenerator, Searcher,
    resolve_search_algorithm,
)
from pyray.tune.search.optuna import OptunaSearch

optuna = pytest.importorskip("optuna")


class CountingSearcher(Searcher):
    """A user's searcher: proposes x = 0, 1, 2, ... and records what it hears."""

    def __init__(self, metric=None, mode=None, limit=None):
        super().__init__(metric=metric, mode=mode)
        self.next_x = 0
        self.completed = {}
        self.results = []
        self.limit = limit
        self.space = None

    def set_search_properties(self, metric, mode, config, **spec):
        self._metric, self._mode, self.space = metric or self._metric, mode or self._mode, config
        return True

    def suggest(self, trial_id):
        if self.limit is not None and self.next_x >= self.limit:
            return Searcher.FINISHED
        x = self.next_x
        self.next_x += 1
        return {"x": x}

    def on_trial_result(self, trial_id, result):
        self.results.append((trial_id, result))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed[trial_id] = (result, error)


def drive(alg, objective, n_max=500, metric="loss"):
    """Run trials one at a time; returns the configs in order."""
    configs = []
    for i in range(n_max):
        config = alg.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            return configs
        assert config is not None
        configs.append(config)
        alg.on_trial_complete(f"t{i}", {metric: objective(config), "training_iteration": 1})
    raise AssertionError("search did not finish")


# ------------------------------------------------------------ user searcher
def test_user_searcher_plugs_in_and_num_samples_bounds_it():
    searcher = CountingSearcher()
    alg = resolve_search_algorithm(searcher, {"const": 5, "nested": {"k": 1}}, num_samples=4,
                                   metric="loss", mode="min")
    assert isinstance(alg, SearchGenerator)
    assert (searcher.metric, searcher.mode) == ("loss", "min")
    configs = drive(alg, lambda c: c["x"])
    assert configs == [{"const": 5, "nested": {"k": 1}, "x": i} for i in range(4)]
    assert searcher.completed["t2"] == ({"loss": 2, "training_iteration": 1}, False)
    assert alg.evaluated_params("t1") == {"x": 1}
    assert alg.experiment_tag("t1").startswith("2_")
    alg.on_trial_result("t0", {"loss": 0})
    assert searcher.results == [("t0", {"loss": 0})]


def test_user_searcher_finished_ends_the_search():
    alg = resolve_search_algorithm(CountingSearcher(limit=2), {}, num_samples=10, metric="m", mode="max")
    assert len(drive(alg, lambda c: 0, metric="m")) == 2


def test_searcher_with_its_own_space_rejects_a_param_space_with_samplers():
    class Fixed(CountingSearcher):
        def set_search_properties(self, metric, mode, config, **spec):
            return False

    with pytest.raises(ValueError, match="already instantiated with a search space"):
        resolve_search_algorithm(Fixed(metric="m", mode="min"), {"a": tune.uniform(0, 1)}, 2)
    # constants are fine
    alg = resolve_search_algorithm(Fixed(metric="m", mode="min"), {"a": 1}, 2)
    assert alg.suggest("t0") == {"a": 1, "x": 0}


def test_unknown_search_alg_type():
    with pytest.raises(TypeError, match="Searcher"):
        resolve_search_algorithm(object(), {}, 1)


# -------------------------------------------------------- ConcurrencyLimiter
def test_concurrency_limiter_never_exceeds_its_limit():
    inner = CountingSearcher(metric="m", mode="max")
    limiter = ConcurrencyLimiter(inner, max_concurrent=3)
    rng = np.random.default_rng(0)
    live, max_live, n = set(), 0, 0
    for step in range(200):
        if rng.random() < 0.6:
            config = limiter.suggest(f"t{n}")
            if config is not None:
                live.add(f"t{n}")
                n += 1
            else:
                assert len(live) == 3
        elif live:
            done = sorted(live)[int(rng.integers(len(live)))]
            live.discard(done)
            limiter.on_trial_complete(done, {"m": 1})
        max_live = max(max_live, len(live))
        assert len(limiter.live_trials) == len(live) <= 3
    assert max_live == 3 and n > 20
    assert set(inner.completed) == {f"t{i}" for i in range(n)} - live


def test_concurrency_limiter_batch_reports_when_the_batch_is_done():
    inner = CountingSearcher(metric="m", mode="max")
    limiter = ConcurrencyLimiter(inner, max_concurrent=2, batch=True)
    assert limiter.suggest("a") and limiter.suggest("b")
    assert limiter.suggest("c") is None
    limiter.on_trial_complete("a", {"m": 1})
    assert inner.completed == {} and limiter.suggest("c") is None  # batch not done
    limiter.on_trial_complete("b", {"m": 2})
    assert set(inner.completed) == {"a", "b"}
    assert limiter.suggest("c") is not None


def test_concurrency_limiter_bad_arguments():
    with pytest.raises(ValueError, match="max_concurrent"):
        ConcurrencyLimiter(CountingSearcher(), max_concurrent=0)
    with pytest.raises(RuntimeError, match="only works with `Searcher`"):
        ConcurrencyLimiter(object(), max_concurrent=1)


def test_basic_variant_generator_cannot_be_wrapped_in_a_limiter_search():
    # the BasicVariantGenerator limits itself (max_concurrent)
    gen = BasicVariantGenerator(max_concurrent=1)
    alg = resolve_search_algorithm(gen, {"a": tune.uniform(0, 1)}, 3)
    assert alg.suggest("t0") is not None and alg.suggest("t1") is None


# ------------------------------------------------------------------ Repeater
def test_repeater_groups_and_reports_the_mean():
    inner = CountingSearcher(metric="m", mode="max")
    rep = Repeater(inner, repeat=3)
    configs = [rep.suggest(f"t{i}") for i in range(6)]
    assert [c["x"] for c in configs] == [0, 0, 0, 1, 1, 1]
    assert [c["__trial_index__"] for c in configs] == [0, 1, 2, 0, 1, 2]
    rep.on_trial_complete("t0", {"m": 1.0})
    rep.on_trial_complete("t1", {"m": 2.0})
    assert inner.completed == {}
    rep.on_trial_complete("t2", {"m": 6.0})
    assert inner.completed == {"t0": ({"m": 3.0}, False)}
    rep.on_trial_complete("t3", {"m": 1.0})
    rep.on_trial_complete("t4", {})             # no metric: ignored in the mean
    rep.on_trial_complete("t5", {"m": 3.0})
    assert inner.completed["t3"] == ({"m": 2.0}, False)
    assert "__trial_index__" not in Repeater(CountingSearcher(), repeat=2, set_index=False).suggest("a")


# ----------------------------------------------------------------- Optuna
def quadratic(c):
    return (c["x"] - 3.0) ** 2 + (c["y"] + 2.0) ** 2


def test_optuna_finds_the_optimum_region_of_a_quadratic_deterministically():
    space = {"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10), "fixed": "keep"}

    def run():
        alg = resolve_search_algorithm(OptunaSearch(seed=7), space, num_samples=60,
                                       metric="loss", mode="min")
        return drive(alg, quadratic)

    configs = run()
    assert len(configs) == 60 and all(c["fixed"] == "keep" for c in configs)
    losses = [quadratic(c) for c in configs]
    assert min(losses) < 0.5
    # TPE concentrates on the optimum: the last 20 are much better than the first 10 (random)
    assert np.median(losses[-20:]) < np.median(losses[:10]) / 4
    assert configs == run()  # seeded: same suggestions


def test_optuna_beats_random_search_on_the_same_budget():
    space = {"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10)}
    opt = drive(resolve_search_algorithm(OptunaSearch(seed=3), space, 50, "loss", "min"), quadratic)
    rnd = drive(resolve_search_algorithm(None, space, 50, "loss", "min", seed=3), quadratic)
    assert sorted(map(quadratic, opt))[5] < sorted(map(quadratic, rnd))[5]


def test_optuna_with_its_own_distributions_and_maximize():
    from optuna.distributions import FloatDistribution, IntDistribution
    alg = resolve_search_algorithm(
        OptunaSearch({"x": FloatDistribution(0, 1), "n": {"k": IntDistribution(1, 4)}},
                     metric="score", mode="max", seed=0), {}, 30)
    configs = drive(alg, lambda c: c["x"] + c["n"]["k"], metric="score")
    assert all(0 <= c["x"] <= 1 and 1 <= c["n"]["k"] <= 4 for c in configs)
    assert max(c["x"] + c["n"]["k"] for c in configs) > 4.7


def test_optuna_define_by_run_and_conditional_parameters():
    def space(trial):
        kind = trial.suggest_categorical("kind", ["a", "b"])
        if kind == "a":
            trial.suggest_float("x", 0, 1)
        return {"const": 1}

    alg = resolve_search_algorithm(OptunaSearch(space, metric="m", mode="min", seed=0), {}, 20)
    configs = drive(alg, lambda c: c.get("x", 0.5), metric="m")
    assert {c["kind"] for c in configs} == {"a", "b"}
    assert all(("x" in c) == (c["kind"] == "a") and c["const"] == 1 for c in configs)


def test_optuna_points_to_evaluate_and_evaluated_rewards():
    space = {"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10)}
    alg = resolve_search_algorithm(
        OptunaSearch(points_to_evaluate=[{"x": 3.0, "y": -2.0}, {"x": 0.0, "y": 0.0}], seed=0),
        space, 5, "loss", "min")
    configs = drive(alg, quadratic)
    assert configs[0] == {"x": 3.0, "y": -2.0} and configs[1] == {"x": 0.0, "y": 0.0}
    # known results are told to optuna, not run
    searcher = OptunaSearch(space=OptunaSearch.convert_search_space(space), metric="loss",
                            mode="min", points_to_evaluate=[{"x": 3.0, "y": -2.0}],
                            evaluated_rewards=[0.0], seed=0)
    assert len(searcher._ot_study.trials) == 1 and searcher._ot_study.best_value == 0.0
    with pytest.raises(ValueError, match="evaluated_rewards"):
        OptunaSearch(space=OptunaSearch.convert_search_space(space), metric="loss", mode="min",
                     points_to_evaluate=[{"x": 1.0, "y": 1.0}], evaluated_rewards=[1.0, 2.0])


def test_optuna_multi_objective():
    space = {"x": tune.uniform(0, 1)}
    alg = resolve_search_algorithm(OptunaSearch(metric=["a", "b"], mode=["min", "max"], seed=0),
                                   space, 10)
    for i in range(10):
        c = alg.suggest(f"t{i}")
        alg.on_trial_complete(f"t{i}", {"a": c["x"], "b": c["x"] ** 2})
    study = alg.searcher._ot_study
    assert len(study.best_trials) >= 1 and len(study.directions) == 2


def test_optuna_space_conversion():
    from optuna.distributions import (
        CategoricalDistribution, FloatDistribution, IntDistribution,
    )
    converted = OptunaSearch.convert_search_space({
        "a": tune.uniform(0, 1), "b": tune.loguniform(1e-3, 1), "c": tune.quniform(0, 1, 0.25),
        "d": tune.randint(0, 10), "e": tune.qrandint(0, 10, 2), "f": tune.choice(["p", "q"]),
        "n": {"g": tune.lograndint(1, 100)}, "const": 3})
    assert converted == {
        "a": FloatDistribution(0, 1), "b": FloatDistribution(1e-3, 1, log=True),
        "c": FloatDistribution(0, 1, step=0.25), "d": IntDistribution(0, 9),
        "e": IntDistribution(0, 10, step=2), "f": CategoricalDistribution(["p", "q"]),
        "n/g": IntDistribution(1, 99, log=True)}


def test_optuna_bad_input():
    with pytest.raises(ValueError, match="Grid search"):
        resolve_search_algorithm(OptunaSearch(), {"a": tune.grid_search([1, 2])}, 2, "m", "min")
    with pytest.raises(ValueError, match="does not support"):
        resolve_search_algorithm(OptunaSearch(), {"a": tune.randn()}, 2, "m", "min")
    with pytest.raises(RuntimeError, match="no search space"):
        resolve_search_algorithm(OptunaSearch(), {"a": 1}, 2, "m", "min").suggest("t0")
    with pytest.raises(RuntimeError, match="`metric`"):
        resolve_search_algorithm(OptunaSearch(), {"a": tune.uniform(0, 1)}, 2).suggest("t0")
    with pytest.raises(ValueError, match="'min' or 'max'"):
        OptunaSearch(metric="m", mode="minimize")
    with pytest.raises(TypeError, match="optuna distribution"):
        OptunaSearch({"x": 3}, metric="m", mode="min")
    with pytest.raises(ValueError, match="sampler"):
        OptunaSearch(sampler="tpe")
    # a failed trial is told to optuna as failed; the search goes on
    alg = resolve_search_algorithm(OptunaSearch(seed=0), {"a": tune.uniform(0, 1)}, 3, "m", "min")
    alg.suggest("t0")
    alg.on_trial_complete("t0", None, error=True)
    assert alg.searcher._ot_study.trials[0].state == optuna.trial.TrialState.FAIL
    assert isinstance(alg.suggest("t1"), dict)


def test_optuna_save_restore(tmp_path):
    space = {"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10)}
    alg = resolve_search_algorithm(OptunaSearch(seed=1), space, 10, "loss", "min")
    drive_part = [alg.suggest(f"t{i}") for i in range(3)]
    for i, c in enumerate(drive_part):
        alg.on_trial_complete(f"t{i}", {"loss": quadratic(c)})
    path = str(tmp_path / "searcher.pkl")
    alg.save(path)
    again = SearchGenerator(OptunaSearch())
    again.restore(path)
    assert len(again.searcher._ot_study.trials) == 3
    assert again.suggest("t3") is not None
    assert math.isfinite(again.searcher._ot_study.best_value)


def test_add_evaluated_trials_feeds_optuna():
    from tune_fakes import FakeTrial
    space = OptunaSearch.convert_search_space({"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10)})
    searcher = OptunaSearch(space, metric="loss", mode="min", seed=0)
    done = [FakeTrial(config={"x": float(x), "y": 0.0}, status="TERMINATED",
                      last_result={"loss": quadratic({"x": x, "y": 0.0})}) for x in range(3)]
    searcher.add_evaluated_trials(done, "loss")
    assert len(searcher._ot_study.trials) == 3 and searcher._ot_study.best_value == 5.0
    with pytest.raises(ValueError, match="No trial reported the metric `acc`"):
        searcher.add_evaluated_trials(done, "acc")


def test_max_concurrent_trials_wraps_a_searcher_in_a_concurrency_limiter():
    alg = resolve_search_algorithm(CountingSearcher(), {}, 10, "m", "max", max_concurrent_trials=2)
    assert isinstance(alg.searcher, ConcurrencyLimiter) and alg.searcher.max_concurrent == 2
    assert alg.suggest("a") and alg.suggest("b") and alg.suggest("c") is None
    alg.on_trial_complete("a", {"m": 1})
    assert alg.suggest("c") == {"x": 2}
    same = ConcurrencyLimiter(CountingSearcher(), 2)
    assert resolve_search_algorithm(same, {}, 3, max_concurrent_trials=2).searcher is same
    with pytest.raises(ValueError, match="already a `ConcurrencyLimiter`"):
        resolve_search_algorithm(ConcurrencyLimiter(CountingSearcher(), 3), {}, 3,
                                 max_concurrent_trials=2)
