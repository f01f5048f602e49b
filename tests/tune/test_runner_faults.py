"""Fault tolerance of pyray.tune's runner: a trial whose process is killed is
retried from its last checkpoint, and an experiment whose driver is killed
with SIGKILL resumes with Tuner.restore (finished trials are not run again)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import pyray
from pyray import tune
from pyray.exceptions import RayActorError
from pyray.train import Checkpoint


@pytest.fixture(scope="module", autouse=True)
def cluster():
    pyray.init(num_cpus=2)
    yield
    pyray.shutdown()


def _save(i):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "i.json"), "w") as f:
        json.dump({"i": i}, f)
    return Checkpoint.from_directory(d)


def _start_from_checkpoint():
    ck = tune.get_checkpoint()
    if ck is None:
        return 0
    with ck.as_directory() as d:
        return json.load(open(os.path.join(d, "i.json")))["i"] + 1


def killed_once(config):
    start = _start_from_checkpoint()
    with open(os.path.join(config["dir"], "starts"), "a") as f:
        f.write(f"{start}\n")
    for i in range(start, 6):
        if i == 3 and not os.path.exists(os.path.join(config["dir"], "killed")):
            open(os.path.join(config["dir"], "killed"), "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        tune.report({"i": i}, checkpoint=_save(i))


def test_killed_trial_resumes_from_its_last_checkpoint(tmp_path):
    grid = tune.Tuner(
        killed_once, param_space={"dir": str(tmp_path)},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="kill", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1))).fit()
    r = grid[0]
    assert r.error is None and r.metrics["i"] == 5
    # started at 0, killed before reporting i=3, resumed at 3 (not at 0)
    assert open(tmp_path / "starts").read().split() == ["0", "3"]
    lines = [json.loads(x) for x in open(os.path.join(r.path, "result.json"))]
    assert [x["i"] for x in lines] == [0, 1, 2, 3, 4, 5]
    assert [x["training_iteration"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert "Failure # 1" in open(os.path.join(r.path, "error.txt")).read()

    (tmp_path / "killed").unlink()
    (tmp_path / "starts").unlink()
    grid = tune.Tuner(
        killed_once, param_space={"dir": str(tmp_path)},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="kill0", verbose=0)).fit()
    assert grid.num_errors == 1 and isinstance(grid[0].error, RayActorError)
    assert grid[0].metrics["i"] == 2


def always_fails(config):
    with open(os.path.join(config["dir"], f"try_{config['x']}"), "a") as f:
        f.write("x\n")
    raise RuntimeError("always")


def test_failing_trial_is_retried_max_failures_times(tmp_path):
    grid = tune.Tuner(
        always_fails, param_space={"dir": str(tmp_path), "x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="f", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=2))).fit()
    assert grid.num_errors == 2
    for x in (1, 2):
        assert len(open(tmp_path / f"try_{x}").read().split()) == 3


def resumable(config):
    d = config["dir"]
    start = _start_from_checkpoint()
    with open(os.path.join(d, f"start_{config['x']}_{start}"), "w"):
        pass
    for i in range(start, 4):
        if config["x"] == 3 and i == 2:
            open(os.path.join(d, "blocked"), "w").close()
            while not os.path.exists(os.path.join(d, "go")):
                time.sleep(0.05)
        tune.report({"score": config["x"] * 10 + i}, checkpoint=_save(i))


_DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {testdir!r})
    import pyray
    from pyray import tune
    from test_runner_faults import resumable
    pyray.init(num_cpus=2)
    tune.Tuner(resumable, param_space={{"dir": sys.argv[1], "x": tune.grid_search([0, 1, 2, 3])}},
               tune_config=tune.TuneConfig(metric="score", mode="max"),
               run_config=tune.RunConfig(storage_path=sys.argv[1], name="exp",
                                         verbose=0)).fit()
""")


def test_restore_after_driver_sigkill(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER.format(testdir=os.path.dirname(__file__)))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    path = str(tmp_path / "exp")
    try:
        deadline = time.monotonic() + 60
        while True:       # until the snapshot has 3 finished trials and x=3 checkpointed
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the driver never reached the blocked trial"
            if (tmp_path / "blocked").exists() and tune.Tuner.can_restore(path):
                grid = tune.Tuner.restore(path, trainable=resumable).get_results()
                if grid.num_terminated == 3 and any(r.checkpoint for r in grid
                                                    if r.config["x"] == 3):
                    break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    (tmp_path / "go").touch()
    assert tune.Tuner.can_restore(path)
    grid = tune.Tuner.restore(path, trainable=resumable).fit()
    assert len(grid) == 4 and grid.num_errors == 0 and grid.num_terminated == 4
    assert sorted(r.metrics["score"] for r in grid) == [3, 13, 23, 33]
    starts = sorted(p for p in os.listdir(tmp_path) if p.startswith("start_"))
    # finished trials ran once; x=3 ran from 0, then resumed after its last checkpoint (i=1)
    assert starts == ["start_0_0", "start_1_0", "start_2_0", "start_3_0", "start_3_2"]
    assert grid.get_best_result().config["x"] == 3
    r3 = [r for r in grid if r.config["x"] == 3][0]
    lines = [json.loads(x) for x in open(os.path.join(r3.path, "result.json"))]
    assert [x["training_iteration"] for x in lines] == [1, 2, 3, 4]


def pbt_member(config):
    ck = tune.get_checkpoint()
    v, it = 0.0, 0
    if ck:
        with ck.as_directory() as d:
            st = json.load(open(os.path.join(d, "s.json")))
        v, it = st["v"], st["it"]
        me = tune.get_context().get_trial_id()
        if st["owner"] != me:       # a checkpoint handed over from another trial
            with open(os.path.join(config["dir"], f"clone_{me}_from_{st['owner']}"), "w"):
                pass
    me = tune.get_context().get_trial_id()
    open(os.path.join(config["dir"], f"up_{me}"), "w").close()
    deadline = time.monotonic() + 30
    while len([p for p in os.listdir(config["dir"]) if p.startswith("up_")]) < 4 \
            and time.monotonic() < deadline:
        time.sleep(0.01)        # all four in step, however slowly their processes start
    while True:     # at least one report after a restore, even from a finished trial's state
        it += 1
        v += config["lr"]
        time.sleep(0.03)
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "s.json"), "w") as f:
            json.dump({"v": v, "it": it, "owner": tune.get_context().get_trial_id()}, f)
        tune.report({"score": v, "it": it}, checkpoint=Checkpoint.from_directory(d))
        if it >= 12:
            return


def test_pbt_restarts_the_lower_trial_from_the_better_trials_checkpoint(tmp_path):
    from pyray.tune.schedulers import PopulationBasedTraining
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=3,
                                  quantile_fraction=0.5,
                                  hyperparam_mutations={"lr": tune.uniform(0.0, 1.0)})
    grid = tune.Tuner(
        tune.with_resources(pbt_member, {"cpu": 0.5}),     # all four at once
        param_space={"dir": str(tmp_path), "lr": tune.grid_search([0.01, 0.02, 1.0, 1.01])},
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="pbt", verbose=0)).fit()
    assert grid.num_errors == 0
    for r in grid:  # training_iteration continues from the checkpoint a trial restarts from
        lines = [json.loads(x) for x in open(os.path.join(r.path, "result.json"))]
        assert all(x["training_iteration"] == x["it"] for x in lines), lines
    clones = [p.split("_") for p in os.listdir(tmp_path) if p.startswith("clone_")]
    assert clones, "no trial was restarted from another trial's checkpoint"
    # trial ids end in the grid index: 0 and 1 started weak (lr 0.01, 0.02),
    # 2 and 3 strong; the weak ones received the strong ones' state
    weak = {c[2] for c in clones if c[2] in ("00000", "00001")}   # clone_<me>_from_<owner>
    assert weak, clones
    for r in grid:   # with the cloned state, every trial ends far above 12 * 0.02
        assert r.metrics["score"] > 3, (r.config, r.metrics["score"])
