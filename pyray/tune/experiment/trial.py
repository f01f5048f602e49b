"""``Trial``: one configuration of an experiment and its state, as the
schedulers and searchers see it (Ray's field names)."""
from __future__ import annotations

import os
import time


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (list, tuple, dict)):
        return "_".join(_fmt(x) for x in (v.values() if isinstance(v, dict) else v))[:20]
    return str(v)[:20]


def _clean(s):
    bad = '/\\:*?"<>| \'[]{}'
    return "".join("_" if c in bad else c for c in s)


class Trial:
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    def __init__(self, trainable_name, config=None, trial_id=None, experiment_tag="",
                 evaluated_params=None, resources=None, experiment_path=None, index=0):
        self.trainable_name = trainable_name
        self.config = config if config is not None else {}
        self.trial_id = trial_id or "default"
        self.experiment_tag = experiment_tag
        self.evaluated_params = evaluated_params or {}
        self.resources = resources
        self.status = Trial.PENDING
        self.last_result = {}
        self.metric_analysis = {}       # metric -> {"max","min","avg","last"}
        self.metric_n_steps = {}        # metric -> {"5": [...], "10": [...]}
        self.checkpoints = []           # [{"path","index","iteration","time_total_s","metrics"}]
        self.next_checkpoint_index = 0
        self.restore_checkpoint = None  # set by PBT: a Checkpoint to restart from
        self.num_failures = 0
        self.error_msg = None
        self.error = None
        self.index = index
        self.custom_trial_name = None
        self.custom_dirname = None
        self.experiment_path = experiment_path
        self.start_time = None
        self.end_time = None
        self.results_written = 0

    # ---- names and folders ------------------------------------------------
    def __str__(self):
        return self.custom_trial_name or f"{self.trainable_name}_{self.trial_id}"

    __repr__ = __str__

    @property
    def trial_name(self):
        return str(self)

    @property
    def dirname(self):
        if self.custom_dirname is None:
            date = time.strftime("%Y-%m-%d_%H-%M-%S")
            self.custom_dirname = _clean(
                f"{self.trainable_name}_{self.trial_id}_{self.experiment_tag}"[:110] + "_" + date)
        return self.custom_dirname

    @property
    def local_path(self):
        return os.path.join(self.experiment_path, self.dirname)

    path = local_path
    logdir = local_path

    @property
    def storage(self):
        return None

    # ---- state ---------------------------------------------------------------
    @property
    def checkpoint(self):
        """The latest persisted checkpoint (a pyray.train.Checkpoint), or None."""
        from pyray.train import Checkpoint
        if not self.checkpoints:
            return None
        return Checkpoint(self.checkpoints[-1]["path"])

    @property
    def latest_checkpoint_result(self):
        return self.checkpoints[-1]["metrics"] if self.checkpoints else None

    def is_finished(self):
        return self.status in (Trial.TERMINATED, Trial.ERROR)

    def update_last_result(self, result):
        self.last_result = result
        for k, v in result.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            a = self.metric_analysis.get(k)
            if a is None:
                self.metric_analysis[k] = {"max": v, "min": v, "avg": v, "last": v, "_n": 1}
                self.metric_n_steps[k] = {"5": [v], "10": [v]}
                continue
            n = a["_n"] + 1
            a.update(max=max(a["max"], v), min=min(a["min"], v), last=v, _n=n,
                     avg=a["avg"] + (v - a["avg"]) / n)
            for w, vals in self.metric_n_steps[k].items():
                vals.append(v)
                if len(vals) > int(w):
                    del vals[0]
        for k, a in self.metric_analysis.items():
            for w, vals in self.metric_n_steps.get(k, {}).items():
                a[f"last-{w}-avg"] = sum(vals) / len(vals)

    def get_metric(self, metric, scope="last"):
        """The metric's value over this trial's results: scope 'last', 'avg',
        'max', 'min', 'last-5-avg', 'last-10-avg'."""
        a = self.metric_analysis.get(metric)
        if a is None:
            return None
        return a.get(scope)

    def to_state(self):
        return {
            "trial_id": self.trial_id, "trainable_name": self.trainable_name,
            "config": self.config, "experiment_tag": self.experiment_tag,
            "evaluated_params": self.evaluated_params, "resources": self.resources,
            "status": self.status, "last_result": self.last_result,
            "metric_analysis": self.metric_analysis, "metric_n_steps": self.metric_n_steps,
            "checkpoints": self.checkpoints, "next_checkpoint_index": self.next_checkpoint_index,
            "num_failures": self.num_failures, "error_msg": self.error_msg, "error": self.error,
            "index": self.index, "custom_trial_name": self.custom_trial_name,
            "dirname": self.dirname, "results_written": self.results_written,
            "restore_checkpoint": self.restore_checkpoint,
        }

    @classmethod
    def from_state(cls, st, experiment_path):
        t = cls(st["trainable_name"], st["config"], st["trial_id"], st["experiment_tag"],
                st["evaluated_params"], st["resources"], experiment_path, st["index"])
        for k in ("status", "last_result", "metric_analysis", "metric_n_steps", "checkpoints",
                  "next_checkpoint_index", "num_failures", "error_msg", "error",
                  "custom_trial_name", "results_written", "restore_checkpoint"):
            setattr(t, k, st[k])
        t.custom_dirname = st["dirname"]
        return t
