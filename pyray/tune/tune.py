"""The legacy entry point ``tune.run(...)``, as in Ray: the same experiment
as ``Tuner(...).fit()``, configured with keyword arguments, returning an
``ExperimentAnalysis``."""
from __future__ import annotations

import os

from pyray.train import CheckpointConfig, FailureConfig, RunConfig
from pyray.tune.analysis import ExperimentAnalysis
from pyray.tune.error import TuneError
from pyray.tune.trainable.util import with_resources
from pyray.tune.tuner import DEFAULT_STORAGE_PATH, TuneConfig, Tuner, run_experiment

_RESUME = {True: "unfinished", "AUTO": "auto", "LOCAL": "unfinished", "REMOTE": "unfinished",
           "PROMPT": "unfinished", "ERRORED_ONLY": "errored", "AUTO+ERRORED": "auto_errored",
           "ERRORED": "errored", "RESTART_ERRORED": "restart"}


def run(run_or_experiment, *, name=None, metric=None, mode=None, stop=None, time_budget_s=None,
        config=None, resources_per_trial=None, num_samples=1, storage_path=None,
        search_alg=None, scheduler=None, checkpoint_config=None, verbose=None,
        trial_name_creator=None, trial_dirname_creator=None, max_failures=0, fail_fast=False,
        resume=None, reuse_actors=None, raise_on_failed_trial=True, callbacks=None,
        max_concurrent_trials=None, keep_checkpoints_num=None, checkpoint_score_attr=None,
        checkpoint_freq=0, checkpoint_at_end=False, local_dir=None, restore=None,
        storage_filesystem=None, progress_reporter=None, sync_config=None,
        log_to_file=False):
    """Runs an experiment and returns its ExperimentAnalysis (``best_config``,
    ``best_result``, ``results_df``, ``trials``, ``get_best_trial``...)."""
    trainable = run_or_experiment
    if isinstance(trainable, str):
        raise ValueError(f"tune.run({trainable!r}): registered trainable names are not "
                         f"supported; pass the function or Trainable class itself.")
    if restore is not None:
        raise ValueError("tune.run(restore=...) is not supported: resume the experiment "
                         "with resume=True (or tune.Tuner.restore), or load the checkpoint "
                         "in the trainable with tune.get_checkpoint().")
    if resources_per_trial is not None:
        trainable = with_resources(trainable, resources_per_trial)
    if checkpoint_config is None:
        order = "max"
        attr = checkpoint_score_attr
        if attr and attr.startswith("min-"):
            attr, order = attr[4:], "min"
        checkpoint_config = CheckpointConfig(
            num_to_keep=keep_checkpoints_num, checkpoint_score_attribute=attr,
            checkpoint_score_order=order, checkpoint_frequency=checkpoint_freq,
            checkpoint_at_end=checkpoint_at_end or None)
    run_config = RunConfig(
        name=name, storage_path=storage_path or local_dir, storage_filesystem=storage_filesystem,
        failure_config=FailureConfig(max_failures=max_failures, fail_fast=fail_fast),
        checkpoint_config=checkpoint_config, verbose=verbose, stop=stop, callbacks=callbacks,
        progress_reporter=progress_reporter, sync_config=sync_config, log_to_file=log_to_file)
    tune_config = TuneConfig(
        metric=metric, mode=mode, search_alg=search_alg, scheduler=scheduler,
        num_samples=num_samples, max_concurrent_trials=max_concurrent_trials,
        time_budget_s=time_budget_s, reuse_actors=reuse_actors,
        trial_name_creator=trial_name_creator, trial_dirname_creator=trial_dirname_creator)
    restored = None
    if resume not in (None, False):
        how = _RESUME.get(resume.upper() if isinstance(resume, str) else resume)
        if how is None:
            raise ValueError(f"tune.run(resume={resume!r}): expected True, 'AUTO', "
                             f"'ERRORED_ONLY', 'RESTART_ERRORED' or 'AUTO+ERRORED'.")
        if not name:
            raise ValueError("tune.run(resume=...) needs the experiment's `name`.")
        base = os.path.abspath(os.path.expanduser(storage_path or local_dir or os.environ.get(
            "TUNE_RESULT_DIR") or DEFAULT_STORAGE_PATH))
        path = os.path.join(base, name)
        if Tuner.can_restore(path):
            t = Tuner.restore(path, trainable, resume_unfinished=True,
                              resume_errored=how in ("errored", "auto_errored"),
                              restart_errored=how == "restart")
            restored = t._restored
        elif not how.startswith("auto"):
            raise ValueError(f"tune.run(resume={resume!r}): nothing to resume in {path!r}.")
    trials, path, metric, mode = run_experiment(trainable, config, tune_config, run_config,
                                                restored)
    failed = [t for t in trials if t.status == "ERROR"]
    if failed and raise_on_failed_trial:
        raise TuneError(f"Trials did not complete: {failed}")
    return ExperimentAnalysis(trials, metric, mode, path)


def run_experiments(*args, **kwargs):
    raise NotImplementedError("tune.run_experiments is not supported: call tune.run(...) or "
                              "tune.Tuner(...).fit() once per experiment.")
