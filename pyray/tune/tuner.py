"""``Tuner`` and ``TuneConfig``, as in Ray Tune.

    tuner = tune.Tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=20),
                       run_config=tune.RunConfig(name="exp", storage_path="/data/results"))
    results = tuner.fit()
    results.get_best_result().config

An experiment lives in ``<storage_path>/<name>/``: ``tuner.pkl`` (the
configuration), ``experiment_state.pkl`` and ``search_gen_state.pkl`` (the
state snapshot ``Tuner.restore`` resumes from) and one folder per trial.
"""
from __future__ import annotations

import dataclasses
import datetime
import inspect
import os
import time
from typing import Any, Callable, Optional, Union

import pyray
import pyray.cloudpickle as cloudpickle
from pyray.train import RunConfig
from pyray.tune.error import TuneError
from pyray.tune.execution import tune_controller as tc
from pyray.tune.experiment.trial import Trial
from pyray.tune.progress import ProgressReporter
from pyray.tune.result_grid import ResultGrid
from pyray.tune.stopper import make_stopper
from pyray.tune.trainable.trainable import Trainable

DEFAULT_STORAGE_PATH = "~/ray_results"


@dataclasses.dataclass
class TuneConfig:
    """How trials are chosen and run: ``metric``/``mode`` (what "best" means),
    ``search_alg``, ``scheduler``, ``num_samples`` (repetitions of the
    param_space; -1: until stopped), ``max_concurrent_trials``,
    ``time_budget_s``, ``reuse_actors`` (run the next trial in the same
    process; default True for functions, and for classes with reset_config),
    ``trial_name_creator`` / ``trial_dirname_creator`` (functions of a Trial)."""
    metric: Optional[str] = None
    mode: Optional[str] = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: Optional[int] = None
    time_budget_s: Optional[Union[int, float, datetime.timedelta]] = None
    reuse_actors: Optional[bool] = None
    trial_name_creator: Optional[Callable] = None
    trial_dirname_creator: Optional[Callable] = None
    chdir_to_trial_dir: Any = "DEPRECATED"

    def __post_init__(self):
        if self.chdir_to_trial_dir != "DEPRECATED":
            # as Ray 2.x: the option is gone, the environment variable replaces it
            raise DeprecationWarning(
                "`chdir_to_trial_dir` is deprecated. Use the RAY_CHDIR_TO_TRIAL_DIR "
                "environment variable instead. Set it to 0 to disable the default behavior "
                "of changing the working directory.")


def _validate(trainable, param_space, tune_config, run_config):
    from pyray.tune.search.searcher import validate_mode
    if trainable is None:
        raise ValueError("Tuner needs a trainable: a function taking the config dict, or a "
                         "tune.Trainable subclass.")
    is_class = inspect.isclass(trainable)
    if is_class and not issubclass(trainable, Trainable):
        raise TypeError(f"The trainable class {trainable.__name__} must subclass "
                        f"tune.Trainable.")
    if not is_class and not callable(trainable):
        raise TypeError(f"The trainable must be a function or a tune.Trainable subclass, got "
                        f"{type(trainable).__name__}. (Registered names are not supported: "
                        f"pass the function itself.)")
    if param_space is not None and not isinstance(param_space, dict):
        raise TypeError(f"param_space must be a dict, got {type(param_space).__name__}: "
                        f"{param_space!r}")
    if tune_config.mode is not None:
        validate_mode(tune_config.mode)
    ns = tune_config.num_samples
    if not isinstance(ns, int) or isinstance(ns, bool) or (ns < 1 and ns != -1):
        raise ValueError(f"TuneConfig(num_samples={ns!r}): expected an int >= 1, or -1 to run "
                         f"until a stop condition or the time budget ends the experiment.")
    mct = tune_config.max_concurrent_trials
    if mct is not None and (not isinstance(mct, int) or mct < 0):
        raise ValueError(f"TuneConfig(max_concurrent_trials={mct!r}): expected an int >= 1.")
    tb = tune_config.time_budget_s
    if tb is not None:
        secs = tb.total_seconds() if hasattr(tb, "total_seconds") else tb
        if not isinstance(secs, (int, float)) or secs <= 0:
            raise ValueError(f"TuneConfig(time_budget_s={tb!r}): expected a positive number "
                             f"of seconds or a timedelta.")
    cc = run_config.checkpoint_config
    if not is_class and (cc.checkpoint_frequency or cc.checkpoint_at_end):
        raise ValueError(
            "CheckpointConfig(checkpoint_frequency=..., checkpoint_at_end=...) apply to class "
            "trainables only (tune.Trainable with save_checkpoint); a function trainable "
            "saves a checkpoint by passing it to tune.report(..., checkpoint=...).")
    for cb in run_config.callbacks or []:
        if not hasattr(cb, "on_trial_result"):
            raise TypeError(f"RunConfig(callbacks=...): {cb!r} is not a tune.Callback.")


def _experiment_path(trainable, run_config):
    storage = run_config.storage_path or os.environ.get("TUNE_RESULT_DIR") or \
        DEFAULT_STORAGE_PATH
    storage = os.path.abspath(os.path.expanduser(storage))
    name = run_config.name or \
        f"{tc._trainable_name(trainable)}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    path = os.path.join(storage, name)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test_{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise type(exc)(exc.errno, f"The experiment folder {path!r} cannot be written "
                        f"({exc.strerror}); pass RunConfig(storage_path=...) pointing at a "
                        f"writable folder.") from exc
    return storage, name, path


def _make_searcher(tune_config, param_space):
    from pyray.tune.search import resolve_search_algorithm
    return resolve_search_algorithm(
        tune_config.search_alg, param_space, tune_config.num_samples, tune_config.metric,
        tune_config.mode, None, tune_config.max_concurrent_trials)


def _make_scheduler(tune_config):
    from pyray.tune.schedulers import FIFOScheduler
    sched = tune_config.scheduler or FIFOScheduler()
    if not sched.set_search_properties(tune_config.metric, tune_config.mode):
        raise ValueError(
            "You passed a `metric` or `mode` argument to `tune.TuneConfig()`, but the scheduler "
            f"{type(sched).__name__} was already instantiated with its own `metric` and "
            f"`mode` parameters. Either remove the arguments from your scheduler or from "
            f"`tune.TuneConfig()`.")
    return sched


def run_experiment(trainable, param_space, tune_config, run_config, restored=None):
    """Runs (or resumes) an experiment; returns (trials, experiment_path)."""
    _validate(trainable, param_space, tune_config, run_config)
    storage, name, path = _experiment_path(trainable, run_config)
    if restored is None:
        try:
            with open(os.path.join(path, tc.TUNER_PKL), "wb") as f:
                cloudpickle.dump({"param_space": param_space, "tune_config": tune_config,
                                  "run_config": run_config,
                                  "trainable_name": tc._trainable_name(trainable)}, f)
        except Exception as exc:   # restore will not be possible; the run still is
            if run_config.verbose != 0:
                print(f"Could not save the experiment configuration ({exc}); "
                      f"Tuner.restore will not work for this run.")
    searcher = _make_searcher(tune_config, param_space)
    scheduler = _make_scheduler(tune_config)
    metric = tune_config.metric or getattr(scheduler, "metric", None)
    mode = tune_config.mode or getattr(scheduler, "mode", None)
    kwargs = {}
    if restored is not None:
        sfile = os.path.join(path, tc.SEARCHER_STATE)
        if os.path.exists(sfile):
            searcher.restore(sfile)
        kwargs = {"trials": restored["trials"], "exp_id": restored["exp_id"],
                  "next_index": restored["next_index"]}
    if not pyray.is_initialized():
        pyray.init()
    ctrl = tc.TuneController(
        trainable=trainable, searcher=searcher, scheduler=scheduler, metric=metric, mode=mode,
        experiment_path=path, experiment_name=name, run_config=run_config,
        tune_config=tune_config, stopper=make_stopper(run_config.stop),
        reporter=ProgressReporter(run_config.verbose, metric, mode), **kwargs)
    if restored is not None and restored.get("searcher_done"):
        ctrl._searcher_done = True
    try:
        trials = ctrl.run()
    except (TuneError, KeyboardInterrupt):
        raise
    except Exception as exc:
        if exc is ctrl.fatal_trial_error:
            raise           # FailureConfig(fail_fast="raise"): the trial's own error
        if isinstance(exc, (ValueError, TypeError)) and not isinstance(
                exc, pyray.exceptions.RayError):
            raise
        raise TuneError(
            f"The Tune run failed: {type(exc).__name__}: {exc}. After fixing the cause you "
            f"can continue it with tune.Tuner.restore({path!r}, trainable=...).") from exc
    return trials, path, metric, mode


def _load_state(path):
    with open(os.path.join(path, tc.EXPERIMENT_STATE), "rb") as f:
        return cloudpickle.load(f)


class Tuner:
    def __init__(self, trainable=None, *, param_space=None, tune_config=None, run_config=None,
                 _restored=None):
        self._trainable = trainable
        self._param_space = param_space
        self._tune_config = tune_config or TuneConfig()
        self._run_config = run_config or RunConfig()
        self._restored = _restored
        self._results = None
        if not isinstance(self._tune_config, TuneConfig):
            raise TypeError(f"tune_config must be a tune.TuneConfig, got "
                            f"{type(self._tune_config).__name__}")
        if not isinstance(self._run_config, RunConfig):
            raise TypeError(f"run_config must be a tune.RunConfig, got "
                            f"{type(self._run_config).__name__}")

    def fit(self) -> ResultGrid:
        """Runs the experiment (or the rest of a restored one) and returns its
        results; trial errors are in the grid (``errors``), not raised."""
        trials, path, metric, mode = run_experiment(
            self._trainable, self._param_space, self._tune_config, self._run_config,
            self._restored)
        self._restored = None
        self._results = ResultGrid(trials, metric, mode, path)
        return self._results

    def get_results(self) -> ResultGrid:
        if self._results is not None:
            return self._results
        if self._restored is not None:
            tcfg = self._tune_config
            metric = tcfg.metric or getattr(tcfg.scheduler, "metric", None)
            mode = tcfg.mode or getattr(tcfg.scheduler, "mode", None)
            return ResultGrid(self._restored["trials"], metric, mode,
                              self._restored["path"])
        raise RuntimeError("No results yet: call Tuner.fit() first (or Tuner.restore()).")

    @classmethod
    def can_restore(cls, path, storage_filesystem=None) -> bool:
        """True when ``path`` holds an experiment that Tuner.restore can resume."""
        path = os.path.expanduser(os.fspath(path))
        return (os.path.exists(os.path.join(path, tc.TUNER_PKL))
                and os.path.exists(os.path.join(path, tc.EXPERIMENT_STATE)))

    @classmethod
    def restore(cls, path, trainable, resume_unfinished=True, resume_errored=False,
                restart_errored=False, param_space=None, storage_filesystem=None,
                _resume_config=None) -> "Tuner":
        """The experiment in ``path``, ready to continue with ``fit()``: finished
        trials are kept; unfinished ones resume from their latest checkpoint
        (``resume_unfinished``); errored ones are kept, resumed from their
        checkpoint (``resume_errored``) or started over (``restart_errored``)."""
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if storage_filesystem is not None:
            raise ValueError("Tuner.restore(storage_filesystem=...): only local paths are "
                             "supported.")
        if not cls.can_restore(path):
            raise ValueError(f"Tuner.restore: {path!r} holds no experiment to restore (no "
                             f"{tc.TUNER_PKL} and {tc.EXPERIMENT_STATE}); pass the folder "
                             f"<storage_path>/<name> of an earlier Tuner.fit().")
        with open(os.path.join(path, tc.TUNER_PKL), "rb") as f:
            saved = cloudpickle.load(f)
        state = _load_state(path)
        old_path = state.get("experiment_path", path)
        trials = []
        for st in state["trials"]:
            if old_path != path:
                for c in st["checkpoints"]:
                    if c["path"].startswith(old_path + os.sep):
                        c["path"] = path + c["path"][len(old_path):]
            t = Trial.from_state(st, path)
            if t.status in (Trial.RUNNING, Trial.PENDING, Trial.PAUSED):
                t.status = Trial.PENDING if resume_unfinished else Trial.TERMINATED
            elif t.status == Trial.ERROR:
                if restart_errored:
                    t.status = Trial.PENDING
                    t.checkpoints, t.last_result = [], {}
                    t.metric_analysis, t.metric_n_steps = {}, {}
                    t.num_failures, t.error, t.error_msg = 0, None, None
                elif resume_errored:
                    t.status = Trial.PENDING
                    t.num_failures, t.error, t.error_msg = 0, None, None
            trials.append(t)
        run_config = saved["run_config"]
        run_config = dataclasses.replace(run_config, storage_path=os.path.dirname(path),
                                         name=os.path.basename(path))
        restored = {"trials": trials, "exp_id": state["exp_id"],
                    "next_index": state["next_index"], "path": path,
                    "searcher_done": state.get("searcher_done", False)}
        return cls(trainable, param_space=param_space if param_space is not None
                   else saved["param_space"], tune_config=saved["tune_config"],
                   run_config=run_config, _restored=restored)
