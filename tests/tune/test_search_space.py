"""Search spaces: the samplers' distributions, grid expansion and its order,
num_samples, points_to_evaluate, conditional spaces, seeds, bad input."""

import math

import numpy as np
import pytest

from pyray import tune
from pyray.tune.search import BasicVariantGenerator, Searcher, resolve_search_algorithm
from pyray.tune.search.variant_generator import TuneSpaceError


def draws(domain, n=2000, seed=0):
    return domain.sample(size=n, random_state=seed)


def all_configs(gen, limit=10_000):
    out = []
    for i in range(limit):
        config = gen.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            return out
        assert config is not None
        out.append(config)
    raise AssertionError("generator did not finish")


# ----------------------------------------------------------------- samplers
def test_uniform_bounds_and_spread():
    xs = np.array(draws(tune.uniform(-2.0, 3.0)))
    assert xs.min() >= -2.0 and xs.max() < 3.0
    assert abs(xs.mean() - 0.5) < 0.15
    assert all(isinstance(x, float) for x in xs.tolist())


def test_quniform_values_are_multiples_of_q_within_bounds():
    xs = draws(tune.quniform(0.0, 1.0, 0.25))
    assert set(np.round(np.array(xs), 9)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert {0.0, 1.0} <= set(xs)  # quantization makes the upper bound reachable


def test_loguniform_is_uniform_in_log_space():
    xs = np.array(draws(tune.loguniform(1e-4, 1e-0), n=4000))
    assert xs.min() >= 1e-4 and xs.max() < 1.0
    logs = np.log10(xs)
    # each decade holds about a quarter of the draws
    for lo in (-4, -3, -2, -1):
        frac = np.mean((logs >= lo) & (logs < lo + 1))
        assert 0.2 < frac < 0.3, (lo, frac)
    # the base does not change the distribution: same seed, same values
    assert np.allclose(draws(tune.loguniform(1e-4, 1.0, base=2), n=50),
                       draws(tune.loguniform(1e-4, 1.0), n=50))


def test_qloguniform():
    xs = np.array(draws(tune.qloguniform(5, 1000, 5)))
    assert np.allclose(xs / 5, np.round(xs / 5))
    assert xs.min() >= 5 and xs.max() <= 1000
    assert np.mean(xs < 50) > 0.3  # log scale


def test_randn_and_qrandn():
    xs = np.array(draws(tune.randn(5.0, 2.0), n=4000))
    assert abs(xs.mean() - 5.0) < 0.15 and abs(xs.std() - 2.0) < 0.15
    qs = np.array(draws(tune.qrandn(0.0, 1.0, 0.5)))
    assert np.allclose(qs / 0.5, np.round(qs / 0.5))


def test_randint_upper_exclusive():
    xs = draws(tune.randint(0, 4))
    assert set(xs) == {0, 1, 2, 3}
    assert all(type(x) is int for x in xs)


def test_qrandint_upper_inclusive_and_quantized():
    xs = draws(tune.qrandint(0, 10, 5))
    assert set(xs) == {0, 5, 10}
    assert set(draws(tune.qrandint(0, 12, 4))) == {0, 4, 8, 12}
    # q=1 is not rounded: the upper bound is not drawn (Ray 2.x's values)
    assert set(draws(tune.qrandint(0, 3))) == {0, 1, 2}


def test_lograndint():
    xs = np.array(draws(tune.lograndint(1, 1000), n=4000))
    assert xs.min() >= 1 and xs.max() < 1000
    assert np.mean(xs < 10) > 0.25  # log scale: a third of the draws below 10
    assert all(type(x) is int for x in xs.tolist())


def test_choice_keeps_types():
    xs = draws(tune.choice([1, "a", None, (2, 3)]), n=400)
    assert set(map(repr, xs)) == {"1", "'a'", "None", "(2, 3)"}


def test_same_seed_same_draws_different_seed_different():
    space = {"a": tune.uniform(0, 1), "b": tune.randint(0, 1_000_000), "c": tune.choice(list(range(100)))}

    def run(seed):
        return all_configs(resolve_search_algorithm(None, space, num_samples=5, seed=seed))

    assert run(1) == run(1)
    assert run(1) != run(2)
    gen = np.random.default_rng(7)
    a = all_configs(resolve_search_algorithm(BasicVariantGenerator(random_state=gen), space, 3))
    b = all_configs(resolve_search_algorithm(BasicVariantGenerator(random_state=np.random.default_rng(7)), space, 3))
    assert a == b


def test_global_numpy_seed_makes_unseeded_runs_reproducible():
    space = {"a": tune.uniform(0, 1)}
    np.random.seed(3)
    a = all_configs(resolve_search_algorithm(None, space, num_samples=3))
    np.random.seed(3)
    b = all_configs(resolve_search_algorithm(None, space, num_samples=3))
    assert a == b


# ----------------------------------------------------------- grid and order
def test_grid_times_num_samples_count_and_order():
    space = {"b": tune.grid_search(["x", "y", "z"]), "a": tune.grid_search([1, 2]),
             "c": tune.uniform(0, 1), "const": 7}
    gen = resolve_search_algorithm(None, space, num_samples=2, seed=0)
    assert gen.total_samples == 12
    configs = all_configs(gen)
    assert len(configs) == 12
    # grid variables sorted by name; the first one ("a") turns fastest; the
    # whole grid once per sample
    expected = [(a, b) for b in "xyz" for a in (1, 2)] * 2
    assert [(c["a"], c["b"]) for c in configs] == expected
    assert all(c["const"] == 7 and 0 <= c["c"] < 1 for c in configs)
    assert len({c["c"] for c in configs}) == 12  # drawn afresh per trial
    assert gen.experiment_tag("t0").startswith("0_a=1,b=x,c=")
    assert gen.evaluated_params("t3")["a"] == 2 and gen.evaluated_params("t3")["b"] == "y"


def test_constant_grid_search_keeps_random_values_across_the_grid():
    space = {"a": tune.grid_search([1, 2, 3]), "c": tune.uniform(0, 1)}
    gen = resolve_search_algorithm(BasicVariantGenerator(constant_grid_search=True, random_state=0),
                                   space, num_samples=2)
    configs = all_configs(gen)
    assert len({c["c"] for c in configs[:3]}) == 1
    assert len({c["c"] for c in configs[3:]}) == 1
    assert configs[0]["c"] != configs[3]["c"]


def test_nested_dicts_and_lists():
    space = {"model": {"layers": [tune.choice([16, 32]), {"act": tune.grid_search(["relu", "tanh"])}],
                       "lr": tune.loguniform(1e-3, 1e-1)}, "seed": 1}
    configs = all_configs(resolve_search_algorithm(None, space, num_samples=1, seed=0))
    assert [c["model"]["layers"][1]["act"] for c in configs] == ["relu", "tanh"]
    for c in configs:
        assert c["model"]["layers"][0] in (16, 32)
        assert 1e-3 <= c["model"]["lr"] < 1e-1
        assert c["seed"] == 1


def test_conditional_space_with_sample_from():
    space = {
        "a": tune.randint(5, 10),
        "b": tune.sample_from(lambda spec: np.random.randint(0, spec.config.a)),
        "c": tune.sample_from(lambda spec: spec.config.b * 2),  # depends on b (resolved later)
        "d": tune.sample_from(lambda config: config["a"] + 100),  # config-style function
        "e": tune.sample_from(lambda: "constant"),
    }
    for c in all_configs(resolve_search_algorithm(None, space, num_samples=20, seed=0)):
        assert 0 <= c["b"] < c["a"] and c["c"] == 2 * c["b"]
        assert c["d"] == c["a"] + 100 and c["e"] == "constant"


def test_points_to_evaluate_come_first_and_use_up_samples():
    space = {"a": tune.uniform(0, 1), "b": tune.choice(["x", "y"]), "g": tune.grid_search([1, 2])}
    gen = resolve_search_algorithm(
        BasicVariantGenerator(points_to_evaluate=[{"a": 0.5, "b": "x"}, {"a": 0.25}], random_state=0),
        space, num_samples=3)
    assert gen.total_samples == 6
    configs = all_configs(gen)
    assert len(configs) == 6
    assert [(c["a"], c["b"], c["g"]) for c in configs[:2]] == [(0.5, "x", 1), (0.5, "x", 2)]
    assert [c["a"] for c in configs[2:4]] == [0.25, 0.25]
    assert all(c["a"] not in (0.5, 0.25) for c in configs[4:])


def test_points_to_evaluate_with_unknown_key_is_an_error():
    gen = resolve_search_algorithm(BasicVariantGenerator(points_to_evaluate=[{"nope": {"x": 1}}]),
                                   {"a": tune.uniform(0, 1)}, num_samples=2)
    with pytest.raises(ValueError, match="nope"):
        gen.suggest("t0")


def test_max_concurrent_holds_suggestions_until_a_trial_completes():
    gen = resolve_search_algorithm(BasicVariantGenerator(max_concurrent=2), {"a": tune.uniform(0, 1)}, 5)
    assert gen.suggest("t0") is not None and gen.suggest("t1") is not None
    assert gen.suggest("t2") is None
    gen.on_trial_complete("t0", {"x": 1})
    assert isinstance(gen.suggest("t2"), dict)


def test_empty_param_space_runs_num_samples_trials():
    assert all_configs(resolve_search_algorithm(None, {}, num_samples=3)) == [{}, {}, {}]
    assert all_configs(resolve_search_algorithm(None, None, num_samples=1)) == [{}]


def test_save_restore_continues_the_sequence(tmp_path):
    space = {"a": tune.uniform(0, 1), "g": tune.grid_search([1, 2])}
    full = all_configs(resolve_search_algorithm(None, space, num_samples=3, seed=11))
    gen = resolve_search_algorithm(None, space, num_samples=3, seed=11)
    first = [gen.suggest(f"t{i}") for i in range(2)]
    gen.save(str(tmp_path / "s.pkl"))
    again = BasicVariantGenerator()
    again.restore(str(tmp_path / "s.pkl"))
    rest = all_configs(again)
    assert first + rest == full


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, exc, words", [
    (lambda: tune.choice([]), ValueError, "empty"),
    (lambda: tune.choice("abc"), TypeError, "list"),
    (lambda: tune.uniform("a", 1), TypeError, "lower"),
    (lambda: tune.uniform(2, 1), ValueError, "greater"),
    (lambda: tune.randint(3, 3), ValueError, "exclusive"),
    (lambda: tune.loguniform(0, 1), ValueError, "greater than 0"),
    (lambda: tune.quniform(0.1, 1, 0.25), ValueError, "divisible"),
    (lambda: tune.randn(0, -1), ValueError, "standard deviation"),
    (lambda: tune.grid_search(5), TypeError, "list"),
    (lambda: tune.sample_from(3), TypeError, "callable"),
    (lambda: tune.sample_from(lambda a, b: 1), ValueError, "arguments"),
])
def test_bad_samplers(make, exc, words):
    with pytest.raises(exc, match=words):
        make()


def test_bad_spaces():
    with pytest.raises(ValueError, match="empty"):
        resolve_search_algorithm(None, {"a": tune.grid_search([])}, 1)
    with pytest.raises(TypeError, match="param_space must be a dict"):
        resolve_search_algorithm(None, [1, 2], 1)
    with pytest.raises(ValueError, match="num_samples"):
        resolve_search_algorithm(None, {}, 0)
    with pytest.raises(ValueError, match="'min' or 'max'"):
        resolve_search_algorithm(None, {}, 1, metric="x", mode="maximize")
    cyclic = {"a": tune.sample_from(lambda spec: spec.config.b), "b": tune.sample_from(lambda spec: spec.config.a)}
    with pytest.raises(TuneSpaceError, match="depends"):
        resolve_search_algorithm(None, cyclic, 1).suggest("t0")
    failing = {"a": tune.sample_from(lambda spec: 1 / 0)}
    with pytest.raises(TuneSpaceError, match="ZeroDivisionError"):
        resolve_search_algorithm(None, failing, 1).suggest("t0")
    with pytest.raises(ValueError, match="Unknown search algorithm"):
        resolve_search_algorithm("hyperopt-ish", {}, 1)


def test_log_scale_draws_cover_orders_of_magnitude():
    xs = draws(tune.loguniform(1e-6, 1e-2), n=500, seed=3)
    assert min(xs) < 1e-5 and max(xs) > 1e-3
    assert all(math.isfinite(x) for x in xs)
