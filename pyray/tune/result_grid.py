"""``ResultGrid`` and ``Result``: what ``Tuner.fit()`` returns, as in Ray."""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional

from pyray.train import Checkpoint
from pyray.tune.execution import trial_files

_SCOPES = ("all", "last", "avg", "last-5-avg", "last-10-avg")


class Result:
    """One trial's outcome: its last reported ``metrics``, ``config``, latest
    ``checkpoint``, folder ``path``, ``error`` (None if it succeeded) and the
    kept ``best_checkpoints`` as ``(Checkpoint, metrics)`` pairs."""

    def __init__(self, metrics=None, checkpoint=None, error=None, path=None,
                 best_checkpoints=None, _config=None, _trial=None):
        self.metrics = metrics
        self.checkpoint = checkpoint
        self.error = error
        self.path = path
        self.best_checkpoints = best_checkpoints or []
        self._config = _config
        self._trial = _trial
        self._df = None

    @property
    def config(self) -> Optional[Dict[str, Any]]:
        if self._config is not None:
            return self._config
        return (self.metrics or {}).get("config")

    @property
    def filesystem(self):
        import pyarrow.fs
        return pyarrow.fs.LocalFileSystem()

    @property
    def metrics_dataframe(self):
        """Every result of the trial (its progress.csv) as a pandas DataFrame."""
        if self._df is None and self.path:
            import pandas as pd
            f = os.path.join(self.path, trial_files.PROGRESS_CSV)
            if os.path.exists(f) and os.path.getsize(f):
                self._df = pd.read_csv(f)
        return self._df

    def get_best_checkpoint(self, metric, mode):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        scored = [(c, m) for c, m in self.best_checkpoints if _finite(m.get(metric))]
        if not scored:
            raise RuntimeError(f"No checkpoint of this trial reported the metric {metric!r}.")
        pick = max if mode == "max" else min
        return pick(scored, key=lambda cm: cm[1][metric])[0]

    @classmethod
    def from_path(cls, path):
        """The Result of the trial folder ``path`` (read from its files)."""
        import json
        results = []
        f = os.path.join(path, trial_files.RESULT_JSON)
        if os.path.exists(f):
            with open(f) as fh:
                results = [json.loads(line) for line in fh if line.strip()]
        cps = sorted(d for d in os.listdir(path) if d.startswith("checkpoint_"))
        err = None
        ef = os.path.join(path, trial_files.ERROR_TXT)
        if os.path.exists(ef):
            with open(ef) as fh:
                err = RuntimeError(fh.read())
        return cls(metrics=results[-1] if results else {},
                   checkpoint=Checkpoint(os.path.join(path, cps[-1])) if cps else None,
                   error=err, path=path,
                   best_checkpoints=[(Checkpoint(os.path.join(path, d)), {}) for d in cps])

    def __repr__(self):
        shown = {k: v for k, v in (self.metrics or {}).items()
                 if k not in ("config", "date", "timestamp", "pid", "hostname", "node_ip",
                              "time_since_restore", "iterations_since_restore", "experiment_tag",
                              "trial_id", "checkpoint_dir_name", "done", "time_this_iter_s")}
        parts = [f"metrics={shown}", f"path={self.path!r}", f"filesystem='local'",
                 f"checkpoint={self.checkpoint}"]
        if self.error is not None:
            parts.insert(0, f"error='{type(self.error).__name__}'")
        return "Result(\n  " + ",\n  ".join(parts) + "\n)"


def result_of_trial(trial) -> Result:
    cps = [(Checkpoint(c["path"]), c["metrics"]) for c in trial.checkpoints]
    error = trial.error
    if error is None and trial.status == "ERROR":
        from pyray.tune.error import TuneError
        error = TuneError(trial.error_msg or f"Trial {trial} failed")
    return Result(metrics=dict(trial.last_result), checkpoint=trial.checkpoint, error=error,
                  path=trial.local_path, best_checkpoints=cps, _config=trial.config,
                  _trial=trial)


def _finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_metric_mode(metric, mode, default_metric, default_mode, who):
    metric = metric or default_metric
    mode = mode or default_mode
    if not metric:
        raise ValueError(f"No metric is provided. Either pass in a `metric` arg to `{who}` or "
                         f"specify a metric in the `TuneConfig` of your `Tuner`.")
    if not mode:
        raise ValueError(f"No mode is provided. Either pass in a `mode` arg to `{who}` or "
                         f"specify a mode in the `TuneConfig` of your `Tuner`.")
    if mode not in ("min", "max"):
        raise ValueError(f"If set, `mode` has to be one of [min, max], got {mode!r}.")
    return metric, mode


def best_trial(trials, metric, mode, scope="last", filter_nan_and_inf=True):
    """The trial with the best ``metric`` in ``scope`` (Ray's rules), or None."""
    if scope not in _SCOPES:
        raise ValueError(f"ExperimentAnalysis: attempting to get best trial for metric {metric} "
                         f"for scope {scope} not in {list(_SCOPES)}. If you didn't pass a "
                         f"`metric` parameter to `tune.run()`, you have to pass one when "
                         f"fetching the best trial.")
    key = ("max" if mode == "max" else "min") if scope == "all" else scope
    best, best_v = None, None
    for t in trials:
        a = t.metric_analysis.get(metric)
        if a is None:
            continue
        v = a.get(key)
        if v is None:
            continue
        if filter_nan_and_inf and not _finite(v):
            continue
        if best is None or (v > best_v if mode == "max" else v < best_v):
            best, best_v = t, v
    return best


def no_best_error(metric):
    return RuntimeError(
        f"No best trial found for the given metric: {metric}. This means that no trial has "
        f"reported this metric, or all values reported for this metric are NaN. To not ignore "
        f"NaN values, you can set the `filter_nan_and_inf` arg to False.")


def trials_dataframe(trials):
    import pandas as pd
    rows = []
    for t in trials:
        row = trial_files.flatten({k: v for k, v in t.last_result.items() if k != "config"})
        row.update(trial_files.flatten(t.config, prefix="config/"))
        row["logdir"] = t.local_path
        rows.append(row)
    return pd.DataFrame(rows)


class ResultGrid:
    """The results of an experiment's trials: index it, iterate over it, pick
    the best with ``get_best_result``, or get one table with ``get_dataframe``."""

    def __init__(self, trials, metric=None, mode=None, experiment_path=None):
        self._trials = list(trials)
        self._metric, self._mode = metric, mode
        self._experiment_path = experiment_path
        self._results = [result_of_trial(t) for t in self._trials]

    @property
    def experiment_path(self) -> str:
        return self._experiment_path

    @property
    def filesystem(self):
        import pyarrow.fs
        return pyarrow.fs.LocalFileSystem()

    def get_best_result(self, metric=None, mode=None, scope="last",
                        filter_nan_and_inf=True) -> Result:
        if len(self._trials) == 1:
            return self._results[0]
        metric, mode = check_metric_mode(metric, mode, self._metric, self._mode,
                                         "get_best_result")
        t = best_trial(self._trials, metric, mode, scope, filter_nan_and_inf)
        if t is None:
            raise no_best_error(metric)
        return self._results[self._trials.index(t)]

    def get_dataframe(self, filter_metric=None, filter_mode=None):
        """One row per trial: its last result (or, with ``filter_metric`` and
        ``filter_mode``, its best one), flattened, with ``config/...`` columns."""
        if filter_metric is None and filter_mode is None:
            return trials_dataframe(self._trials)
        if not filter_metric or filter_mode not in ("min", "max"):
            raise ValueError("get_dataframe: pass both filter_metric and filter_mode "
                             "('min' or 'max').")
        import pandas as pd
        rows = []
        for r in self._results:
            df = r.metrics_dataframe
            if df is None or filter_metric not in df:
                continue
            idx = df[filter_metric].idxmax() if filter_mode == "max" else \
                df[filter_metric].idxmin()
            row = df.loc[idx].to_dict()
            row.update(trial_files.flatten(r.config or {}, prefix="config/"))
            row["logdir"] = r.path
            rows.append(row)
        return pd.DataFrame(rows)

    @property
    def errors(self) -> List[Exception]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return sum(1 for t in self._trials if t.status == "ERROR")

    @property
    def num_terminated(self) -> int:
        return sum(1 for t in self._trials if t.status == "TERMINATED")

    def __len__(self):
        return len(self._results)

    def __getitem__(self, i) -> Result:
        return self._results[i]

    def __iter__(self):
        return iter(self._results)

    def __repr__(self):
        body = ",\n".join("  " + repr(r).replace("\n", "\n  ") for r in self._results)
        return f"ResultGrid<[\n{body}\n]>"
