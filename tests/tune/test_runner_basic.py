"""pyray.tune's runner on a real local cluster: files in Ray's layout, the
ResultGrid, class trainables, checkpoints, stop criteria, output and bad input."""
import csv
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import pyray
from pyray import tune
from pyray.train import Checkpoint


@pytest.fixture(scope="module", autouse=True)
def cluster():
    pyray.init(num_cpus=2)
    yield
    pyray.shutdown()


def three_iters(config):
    for i in range(3):
        tune.report({"score": config["x"] * (i + 1), "nested": {"a": i}})


def test_files_in_ray_layout_and_result_grid(tmp_path):
    grid = tune.Tuner(
        three_iters, param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp", verbose=0)).fit()
    exp = tmp_path / "exp"
    assert grid.experiment_path == str(exp)
    assert (exp / "tuner.pkl").exists() and tune.Tuner.can_restore(str(exp))
    assert len(grid) == 3 and grid.num_errors == 0 and grid.num_terminated == 3
    for r in grid:
        d = r.path
        assert os.path.dirname(d) == str(exp)
        assert os.path.basename(d).startswith("three_iters_")
        assert f"x={r.config['x']}" in os.path.basename(d)
        assert json.load(open(os.path.join(d, "params.json"))) == r.config
        lines = [json.loads(x) for x in open(os.path.join(d, "result.json"))]
        assert [x["training_iteration"] for x in lines] == [1, 2, 3]
        assert all(x["config"] == r.config for x in lines)
        assert lines[-1]["score"] == 3 * r.config["x"]
        rows = list(csv.DictReader(open(os.path.join(d, "progress.csv"))))
        assert len(rows) == 3 and "config" not in rows[0] and rows[2]["nested/a"] == "2"
        assert r.metrics_dataframe["score"].tolist() == [r.config["x"] * k for k in (1, 2, 3)]
        assert r.error is None and r.checkpoint is None
    best = grid.get_best_result()
    assert best.config == {"x": 3} and best.metrics["score"] == 9
    assert grid.get_best_result("score", "min").config == {"x": 1}
    assert grid.get_best_result("score", "max", scope="avg").config == {"x": 3}
    df = grid.get_dataframe()
    assert sorted(df["config/x"]) == [1, 2, 3] and "logdir" in df
    assert sorted(grid.get_dataframe("score", "min")["score"]) == [1, 2, 3]


class Counter(tune.Trainable):
    def setup(self, config):
        self.value = 0
        self.pids = os.getpid()

    def step(self):
        self.value += self.config["inc"]
        return {"value": self.value, "pid": os.getpid()}

    def save_checkpoint(self, checkpoint_dir):
        return {"value": self.value}

    def load_checkpoint(self, checkpoint):
        self.value = checkpoint["value"]

    def reset_config(self, new_config):
        self.value = 0
        return True


def test_class_trainable_with_frequency_checkpoints_and_stop(tmp_path):
    grid = tune.Tuner(
        Counter, param_space={"inc": tune.grid_search([1, 2, 3, 4])},
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="cls", verbose=0,
            stop={"training_iteration": 5},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2, num_to_keep=1,
                                                    checkpoint_at_end=True))).fit()
    assert grid.num_errors == 0
    pids = set()
    for r in grid:
        assert r.metrics["training_iteration"] == 5
        assert r.metrics["value"] == 5 * r.config["inc"]
        pids.add(r.metrics["pid"])
        # checkpoints at iterations 2, 4 and at the end (5); one kept
        assert sorted(os.listdir(r.path)) == [
            "checkpoint_000002", "params.json", "params.pkl", "progress.csv", "result.json"]
        assert r.checkpoint.path == os.path.join(r.path, "checkpoint_000002")
    # reset_config is implemented: the 4 trials ran in at most 2 reused processes
    assert len(pids) <= 2


def scored_checkpoints(config):
    for i, s in enumerate([3, 1, 5, 2, 4]):
        d = os.path.join(config["tmp"], f"ck{i}")
        os.makedirs(d)
        with open(os.path.join(d, "state.txt"), "w") as f:
            f.write(str(i))
        tune.report({"score": s}, checkpoint=Checkpoint.from_directory(d))


def test_function_checkpoints_kept_by_score(tmp_path):
    (tmp_path / "src").mkdir()
    grid = tune.Tuner(
        scored_checkpoints, param_space={"tmp": str(tmp_path / "src")},
        run_config=tune.RunConfig(
            storage_path=str(tmp_path), name="ck", verbose=0,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="score"))).fit()
    r = grid[0]
    kept = sorted(d for d in os.listdir(r.path) if d.startswith("checkpoint_"))
    # the two best scores (5 at index 2, 4 at index 4); the latest is index 4 anyway
    assert kept == ["checkpoint_000002", "checkpoint_000004"]
    assert r.checkpoint.path.endswith("checkpoint_000004")
    with r.checkpoint.as_directory() as d:
        assert open(os.path.join(d, "state.txt")).read() == "4"
    best = r.get_best_checkpoint("score", "max")
    out = best.to_directory(str(tmp_path / "copy"))
    assert open(os.path.join(out, "state.txt")).read() == "2"
    assert sorted(m["score"] for _, m in r.best_checkpoints) == [4, 5]


def fails_on_two(config):
    if config["x"] == 2:
        raise ValueError("x=2 is not allowed")
    tune.report({"score": config["x"]})


def test_trainable_errors_kept_with_successes(tmp_path):
    grid = tune.Tuner(
        fails_on_two, param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="err", verbose=0)).fit()
    assert len(grid) == 3 and grid.num_errors == 1 and grid.num_terminated == 2
    (err,) = grid.errors
    assert isinstance(err, ValueError) and "x=2 is not allowed" in str(err)
    bad = [r for r in grid if r.error is not None][0]
    assert "x=2 is not allowed" in open(os.path.join(bad.path, "error.txt")).read()
    assert grid.get_best_result().config == {"x": 3}


def reports_loss(config):
    tune.report({"loss": 1.0})


def test_metric_never_reported_names_trial_and_metric(tmp_path):
    grid = tune.Tuner(
        reports_loss, param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(metric="score", mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="m", verbose=0)).fit()
    assert grid.num_errors == 2
    for r in grid:
        assert isinstance(r.error, ValueError)
        msg = str(r.error)
        assert "'score'" in msg and os.path.basename(r.path)[:len("reports_loss_")] in msg
        assert "reports_loss_" in msg
    with pytest.raises(RuntimeError, match="No best trial found for the given metric: score"):
        grid.get_best_result()


def test_bad_input_is_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="min.*max"):
        tune.Tuner(reports_loss, tune_config=tune.TuneConfig(metric="loss", mode="maximize"),
                   run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    with pytest.raises(TypeError, match="param_space"):
        tune.Tuner(reports_loss, param_space=[1, 2],
                   run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    with pytest.raises(ValueError):
        tune.Tuner(reports_loss, param_space={"x": tune.grid_search([])},
                   run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(OSError, match="cannot be written.*storage_path"):
        tune.Tuner(reports_loss, run_config=tune.RunConfig(
            storage_path=str(afile / "sub"), verbose=0)).fit()
    with pytest.raises(ValueError, match="class trainables"):
        tune.Tuner(reports_loss, run_config=tune.RunConfig(
            storage_path=str(tmp_path), verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2))).fit()


def slow_iters(config):
    for i in range(100):
        tune.report({"score": i})


def test_stop_callable_budget_and_legacy_run(tmp_path):
    grid = tune.Tuner(
        slow_iters, param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="s", verbose=0,
                                  stop=lambda tid, r: r["score"] >= 6)).fit()
    assert [r.metrics["training_iteration"] for r in grid] == [7, 7]

    analysis = tune.run(three_iters, config={"x": tune.grid_search([1, 2, 3])},
                        metric="score", mode="min", storage_path=str(tmp_path), name="legacy",
                        verbose=0)
    assert analysis.best_config == {"x": 1}
    assert analysis.best_result["score"] == 3
    assert len(analysis.results_df) == 3 and len(analysis.trials) == 3
    assert analysis.get_best_trial("score", "max").config == {"x": 3}
    assert os.path.isdir(analysis.best_logdir)
    with pytest.raises(tune.TuneError, match="Trials did not complete"):
        tune.run(fails_on_two, config={"x": tune.grid_search([2])},
                 storage_path=str(tmp_path), verbose=0)


_DRIVER = textwrap.dedent("""
    import sys
    import pyray
    from pyray import tune
    pyray.init(num_cpus=2)
    def fn(config):
        for i in range(2):
            tune.report({"score": config["x"] + i})
    tune.Tuner(fn, param_space={"x": tune.grid_search([1, 2, 3])},
               tune_config=tune.TuneConfig(metric="score", mode="max"),
               run_config=tune.RunConfig(storage_path=sys.argv[1], name="v",
                                         verbose=int(sys.argv[2]))).fit()
    pyray.shutdown()
""")


def test_verbose_zero_prints_nothing_and_one_prints_a_table(tmp_path):
    script = tmp_path / "drv.py"
    script.write_text(_DRIVER)
    outs = {}
    for v in (0, 1):
        p = subprocess.run([sys.executable, str(script), str(tmp_path / f"r{v}"), str(v)],
                           capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
        assert p.returncode == 0, p.stderr
        outs[v] = p.stdout + p.stderr
    assert outs[0] == ""
    assert "Trial status: 3 TERMINATED" in outs[1]
    assert "best score=4" in outs[1] and "fn_" in outs[1]


def sleepy_iters(config):
    for i in range(1000):
        time.sleep(0.05)
        tune.report({"score": i, "pid": os.getpid()})


class Recorder(tune.Callback):
    def __init__(self):
        self.events = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.events.append(("start", trial.trial_id))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.events.append(("result", trial.trial_id, result["training_iteration"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.events.append(("complete", trial.trial_id))

    def on_experiment_end(self, trials, **info):
        self.events.append(("end", len(trials)))


def test_time_budget_stops_all_trials_and_callbacks_see_events(tmp_path):
    rec = Recorder()
    t0 = time.monotonic()
    grid = tune.Tuner(
        sleepy_iters, param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(time_budget_s=2.0),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="tb", verbose=0,
                                  callbacks=[rec])).fit()
    assert time.monotonic() - t0 < 10      # 1000 iterations would take 50 s
    assert grid.num_terminated == 2 and grid.num_errors == 0
    iters = [r.metrics.get("training_iteration", 0) for r in grid]
    assert all(n < 100 for n in iters), iters
    started = sorted(e[1] for e in rec.events if e[0] == "start")
    assert started == sorted(r.metrics["trial_id"] for r in grid if r.metrics)
    assert len([e for e in rec.events if e[0] == "complete"]) == 2
    assert sum(1 for e in rec.events if e[0] == "result") == sum(iters)
    assert rec.events[-1] == ("end", 2)


def one_report_pid(config):
    tune.report({"pid": os.getpid()})


def test_reuse_actors_false_runs_each_trial_in_a_new_process(tmp_path):
    def pids(reuse):
        grid = tune.Tuner(
            one_report_pid, param_space={"x": tune.grid_search(list(range(4)))},
            tune_config=tune.TuneConfig(reuse_actors=reuse, max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
        return {r.metrics["pid"] for r in grid}
    assert len(pids(True)) == 1
    assert len(pids(False)) == 4


def test_fail_fast_raise_reraises_the_trial_error(tmp_path):
    with pytest.raises(ValueError, match="x=2 is not allowed"):
        tune.Tuner(fails_on_two, param_space={"x": tune.grid_search([2, 1])},
                   run_config=tune.RunConfig(
                       storage_path=str(tmp_path), verbose=0,
                       failure_config=tune.FailureConfig(fail_fast="raise"))).fit()


class WithData(tune.Trainable):
    def setup(self, config, data=None):
        self.data = data

    def step(self):
        return {"n": len(self.data) + self.config["x"], "done": True}


def test_class_with_parameters_name_creators_and_legacy_resume(tmp_path):
    grid = tune.Tuner(
        tune.with_parameters(WithData, data=[1, 2, 3]),
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(trial_name_creator=lambda t: f"T{t.config['x']}",
                                    trial_dirname_creator=lambda t: f"dir_{t.config['x']}"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="m", verbose=0)).fit()
    assert sorted(r.metrics["n"] for r in grid) == [4, 5]
    assert sorted(os.path.basename(r.path) for r in grid) == ["dir_1", "dir_2"]
    assert all(r.metrics["training_iteration"] == 1 for r in grid)

    kw = dict(config={"x": tune.grid_search([1, 2])}, name="r", storage_path=str(tmp_path),
              verbose=0, metric="score", mode="max")
    tune.run(three_iters, **kw)
    again = tune.run(three_iters, resume=True, **kw)    # nothing left to run: same trials
    assert len(again.trials) == 2 and again.best_config == {"x": 2}
    assert all(len(open(os.path.join(t.local_path, "result.json")).readlines()) == 3
               for t in again.trials)


def report_cwd(config):
    with open("written_here.txt", "w") as f:      # a relative path: the trial folder
        f.write(str(config["x"]))
    tune.report({"cwd": os.getcwd()})


def test_a_trial_runs_in_its_own_folder_as_in_ray(tmp_path, monkeypatch):
    grid = tune.Tuner(report_cwd, param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    for r in grid:
        assert os.path.realpath(r.metrics["cwd"]) == os.path.realpath(r.path)
        with open(os.path.join(r.path, "written_here.txt")) as f:
            assert f.read() == str(r.config["x"])
    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    grid = tune.Tuner(report_cwd, param_space={"x": 3},
                      run_config=tune.RunConfig(storage_path=str(tmp_path / "b"),
                                                verbose=0)).fit()
    assert os.path.realpath(grid[0].metrics["cwd"]) != os.path.realpath(grid[0].path)
    with pytest.raises(DeprecationWarning, match="RAY_CHDIR_TO_TRIAL_DIR"):
        tune.TuneConfig(chdir_to_trial_dir=False)
