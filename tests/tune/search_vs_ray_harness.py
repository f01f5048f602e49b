"""Drives Ray Tune's or pyray.tune's search spaces, BasicVariantGenerator,
schedulers and OptunaSearch through the same synthetic inputs and prints what
they decided, as JSON. Run as ``python search_vs_ray_harness.py ray|pyray``;
tests/tune/test_search_vs_ray.py compares the two outputs."""

import json
import random
import sys

import numpy as np

WHICH = sys.argv[1]
if WHICH == "ray":
    from ray import tune
    from ray.tune.experiment import Experiment
    from ray.tune.schedulers import (
        ASHAScheduler, HyperBandForBOHB, HyperBandScheduler, MedianStoppingRule,
        PopulationBasedTraining,
    )
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.search.variant_generator import generate_variants
else:
    from pyray import tune
    from pyray.tune.schedulers import (
        ASHAScheduler, HyperBandForBOHB, HyperBandScheduler, MedianStoppingRule,
        PopulationBasedTraining,
    )
    from pyray.tune.search import BasicVariantGenerator, Searcher, resolve_search_algorithm
    from pyray.tune.search.optuna import OptunaSearch
    from pyray.tune.search.variant_generator import generate_variants


# ------------------------------------------------------------ search spaces
def space():
    return {"b": tune.grid_search(["x", "y"]), "a": tune.grid_search([1, 2, 3]),
            "u": tune.uniform(0, 1), "q": tune.quniform(0, 1, 0.25), "lu": tune.loguniform(1e-4, 1),
            "qlu": tune.qloguniform(1, 100, 1), "ri": tune.randint(0, 100),
            "qri": tune.qrandint(0, 10, 2), "qri1": tune.qrandint(0, 3),
            "lri": tune.lograndint(1, 1000), "qlri": tune.qlograndint(5, 500, 5),
            "rn": tune.randn(2, 3), "qrn": tune.qrandn(0, 1, 0.5),
            "c": tune.choice(["p", 1, None, 2.5]),
            "n": {"x": tune.uniform(5, 6), "l": [tune.randint(0, 5), {"z": tune.choice([7, 8])}]},
            "f": tune.sample_from(lambda spec: spec.config.a * 10 + spec.config.n.x)}


def variants():
    out = []
    for seed in (0, 5):
        rng = np.random.default_rng(seed)
        for _ in range(2):
            out += [s["config"] for _, s in generate_variants({"config": space()}, random_state=rng)]
    np.random.seed(3)
    out += [s["config"] for _, s in generate_variants({"config": space()})]
    rng = np.random.default_rng(9)
    out += [s["config"] for _, s in generate_variants({"config": space()}, constant_grid_search=True,
                                                      random_state=rng)]
    return out


def trainable(config):
    pass


def small_space():
    return {"b": tune.grid_search(["x", "y"]), "u": tune.uniform(0, 1),
            "n": {"c": tune.choice([1, 2, 3]), "g": tune.grid_search([10, 20])}, "k": 5}


def basic_variant_generator():
    out = []
    for kwargs, n in [(dict(random_state=1), 3),
                      (dict(random_state=2, points_to_evaluate=[{"u": 0.5}, {"b": "y", "n": {"c": 2}}]), 3),
                      (dict(random_state=3, points_to_evaluate=[{"u": 0.5}] * 4), 2),
                      (dict(random_state=4, constant_grid_search=True), 2)]:
        rows = []
        if WHICH == "ray":
            bvg = BasicVariantGenerator(**kwargs)
            bvg.add_configurations([Experiment("e", run=trainable, config=small_space(), num_samples=n)])
            total = bvg.total_samples
            while not bvg.is_finished():
                t = bvg.next_trial()
                if t is not None:
                    rows.append([t.config, t.experiment_tag, t.evaluated_params])
        else:
            bvg = resolve_search_algorithm(BasicVariantGenerator(**kwargs), small_space(), n)
            total = bvg.total_samples
            for i in range(1000):
                config = bvg.suggest(f"t{i}")
                if config == Searcher.FINISHED:
                    break
                rows.append([config, bvg.experiment_tag(f"t{i}"), bvg.evaluated_params(f"t{i}")])
        out.append([total, rows])
    return out


# --------------------------------------------------------------- schedulers
LOG = []


class _NS:
    pass


class FakeTrial:
    """What Ray's and pyray's schedulers read of a trial."""

    def __init__(self, i, config=None):
        self.trial_id, self.i, self.status = f"t{i}", i, "PENDING"
        self.config = config if config is not None else {"i": i}
        self.evaluated_params, self.experiment_tag, self.last_result = {}, str(i), {}
        self.is_saving, self.iter, self.value = False, 0, 0.0
        self.checkpoint = self.restore_checkpoint = None
        self.run_metadata = _NS()
        self.run_metadata.checkpoint_manager = _NS()
        self.run_metadata.checkpoint_manager.checkpoint_config = _NS()
        self.run_metadata.checkpoint_manager.checkpoint_config.num_to_keep = None
        self.run_metadata.checkpoint_manager._latest_checkpoint_result = None
        self.temporary_state = _NS()
        self.temporary_state.saving_to = None

    def is_finished(self):
        return self.status in ("TERMINATED", "ERROR")

    def set_experiment_tag(self, tag):
        self.experiment_tag = tag

    def set_config(self, config):
        self.config = config

    def __repr__(self):
        return self.trial_id


class FakeSearcher:
    def on_pause(self, trial_id):
        LOG.append(["on_pause", trial_id])

    def on_unpause(self, trial_id):
        LOG.append(["on_unpause", trial_id])


class FakeController:
    """Ray's TuneController as schedulers see it."""

    def __init__(self, scheduler, trials):
        self.scheduler, self.trials = scheduler, trials
        self.search_alg = _NS()
        self.search_alg.searcher = FakeSearcher()

    def get_trials(self):
        return list(self.trials)

    def get_live_trials(self):
        return [t for t in self.trials if not t.is_finished()]

    def pause_trial(self, trial, should_checkpoint=True):
        LOG.append(["pause", trial.trial_id])
        trial.status = "PAUSED"

    def stop_trial(self, trial):
        if trial.is_finished():
            return
        LOG.append(["stop_trial", trial.trial_id, trial.status])
        previous, trial.status = trial.status, "TERMINATED"
        if previous in ("PENDING", "PAUSED"):
            self.scheduler.on_trial_remove(self, trial)
        else:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)

    def _schedule_trial_save(self, trial, result=None):
        return trial.checkpoint

    save_trial = _schedule_trial_save


def score(i, it, kind):
    rng = np.random.default_rng(i)
    base = rng.uniform(0, 1)
    return base * it if kind == "lin" else base + 1.0 / it + 0.05 * rng.normal()


def simulate(sched, trials, slots, max_iter, step_fn):
    """Round-robin over ``slots`` running trials, one result per turn."""
    ctl = FakeController(sched, trials)
    for t in trials:
        sched.on_trial_add(ctl, t)
    running = []
    for _ in range(5000):
        while len(running) < slots:
            t = sched.choose_trial_to_run(ctl)
            if t is None:
                break
            restored = t.restore_checkpoint
            latest = t.run_metadata.checkpoint_manager._latest_checkpoint_result
            if latest is not None:  # Ray's PBT hands over the checkpoint here
                restored = latest.checkpoint
                t.run_metadata.checkpoint_manager._latest_checkpoint_result = None
            if restored is not None:
                t.value, t.iter = restored[1], restored[2]
                LOG.append(["restore", t.trial_id, restored[0], restored[2]])
                t.restore_checkpoint = None
            t.status = "RUNNING"
            running.append(t)
            LOG.append(["start", t.trial_id, json.dumps(t.config, sort_keys=True)])
        if not running:
            break
        t = running.pop(0)
        t.iter += 1
        result = step_fn(t)
        t.last_result = result
        if t.iter >= max_iter:
            t.status = "TERMINATED"
            sched.on_trial_complete(ctl, t, result)
            LOG.append(["done", t.trial_id, t.iter])
            continue
        decision = sched.on_trial_result(ctl, t, result)
        LOG.append(["result", t.trial_id, t.iter, decision, t.experiment_tag])
        if decision == "CONTINUE" and t.status == "RUNNING":
            running.append(t)
        elif decision == "PAUSE":
            t.status = "PAUSED"
        elif decision == "STOP":
            t.status = "TERMINATED"
            sched.on_trial_complete(ctl, t, result)
        running = [r for r in running if r.status == "RUNNING"]
    return {t.trial_id: [t.status, t.iter] for t in trials}


SCHEDULER_CASES = {
    "asha": lambda: (ASHAScheduler(metric="m", mode="max", grace_period=1, max_t=27, reduction_factor=3), 20, 3, 40, "lin"),
    "asha_min": lambda: (ASHAScheduler(metric="m", mode="min", grace_period=2, max_t=16, reduction_factor=2), 16, 2, 40, "noisy"),
    "asha_brackets": lambda: (ASHAScheduler(metric="m", mode="max", grace_period=1, max_t=27, reduction_factor=3, brackets=3), 20, 3, 40, "noisy"),
    "asha_nostop": lambda: (ASHAScheduler(metric="m", mode="max", grace_period=1, max_t=8, reduction_factor=2, stop_last_trials=False), 8, 2, 12, "lin"),
    "hyperband": lambda: (HyperBandScheduler(metric="m", mode="max", max_t=9, reduction_factor=3), 20, 3, 30, "lin"),
    "hyperband81": lambda: (HyperBandScheduler(metric="m", mode="max", max_t=81, reduction_factor=3), 30, 4, 100, "noisy"),
    "hyperband_nostop": lambda: (HyperBandScheduler(metric="m", mode="min", max_t=8, reduction_factor=2, stop_last_trials=False), 12, 2, 12, "noisy"),
    "bohb": lambda: (HyperBandForBOHB(metric="m", mode="max", max_t=9, reduction_factor=3), 14, 3, 30, "lin"),
    "median": lambda: (MedianStoppingRule(time_attr="training_iteration", metric="m", mode="max", grace_period=2, min_samples_required=2), 10, 2, 10, "noisy"),
    "median_soft": lambda: (MedianStoppingRule(time_attr="training_iteration", metric="m", mode="min", grace_period=1, min_samples_required=3, min_time_slice=2, hard_stop=False), 8, 2, 8, "noisy"),
}


def schedulers():
    out = {}
    for name, make in SCHEDULER_CASES.items():
        LOG.clear()
        np.random.seed(0)
        sched, n, slots, max_iter, kind = make()

        def step(t, kind=kind):
            return {"training_iteration": t.iter, "m": score(t.i, t.iter, kind)}

        final = simulate(sched, [FakeTrial(i) for i in range(n)], slots, max_iter, step)
        out[name] = {"final": final, "log": list(LOG)}
    return out


def pbt():
    lrs = [0.01, 0.1, 0.5, 1.0, 2.0]
    out = {}
    for synch in (False, True):
        for seed in (0, 1, 2):
            LOG.clear()
            random.seed(seed)
            np.random.seed(seed)
            sched = PopulationBasedTraining(
                time_attr="training_iteration", metric="v", mode="max", perturbation_interval=2,
                burn_in_period=1, quantile_fraction=0.34, resample_probability=0.3,
                hyperparam_mutations={"lr": lrs, "m": tune.uniform(0.0, 1.0), "nest": {"k": [1, 2, 3]},
                                      "f": lambda: random.uniform(5, 6)},
                log_config=False, synch=synch)
            trials = [FakeTrial(i, {"lr": lrs[i % 5], "m": 0.5, "nest": {"k": 2}, "f": 5.5, "bs": 32})
                      for i in range(6)]

            def step(t):
                c = t.config
                t.value += c["lr"] * (1 + c["m"]) * (1.1 if c["nest"]["k"] == 3 else 1.0)
                t.checkpoint = (t.trial_id, t.value, t.iter)
                return {"training_iteration": t.iter, "v": t.value}

            final = simulate(sched, trials, 2, 12, step)
            final = {k: v + [json.dumps(t.config, sort_keys=True), round(t.value, 9)]
                     for (k, v), t in zip(final.items(), trials)}
            out[f"synch={synch},seed={seed}"] = {"final": final, "log": list(LOG)}
    return out


# ------------------------------------------------------------------- optuna
def optuna_search():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    flat = {"x": tune.uniform(-10, 10), "y": tune.loguniform(1e-3, 10), "k": tune.randint(0, 5),
            "c": tune.choice(["a", "b"]), "q": tune.quniform(0, 1, 0.1), "qi": tune.qrandint(0, 20, 5)}
    searcher = OptunaSearch(metric="loss", mode="min", seed=3, points_to_evaluate=[
        {"x": 1.0, "y": 1.0, "k": 2, "c": "a", "q": 0.5, "qi": 10}])
    searcher.set_search_properties(None, None, flat)
    rows = []
    for i in range(25):
        c = searcher.suggest(f"t{i}")
        loss = (c["x"] - 3) ** 2 + c["y"] + c["k"] + (c["c"] == "b") + c["q"] + c["qi"] / 10
        searcher.on_trial_result(f"t{i}", {"loss": loss, "training_iteration": 1})
        searcher.on_trial_complete(f"t{i}", {"loss": loss, "training_iteration": 1})
        rows.append(c)

    def define_by_run(trial):
        if trial.suggest_categorical("k", ["p", "q"]) == "p":
            trial.suggest_float("z", 0, 1)
        return {"const": 1}

    searcher = OptunaSearch(define_by_run, metric="m", mode="max", seed=0)
    dbr = []
    for i in range(10):
        c = searcher.suggest(f"d{i}")
        searcher.on_trial_complete(f"d{i}", {"m": c.get("z", 0.5)})
        dbr.append(c)
    return {"optuna": optuna.__version__, "rows": rows, "define_by_run": dbr}


if __name__ == "__main__":
    print(json.dumps({"variants": variants(), "basic_variant_generator": basic_variant_generator(),
                      "schedulers": schedulers(), "pbt": pbt(), "optuna": optuna_search()},
                     default=repr, sort_keys=True))
