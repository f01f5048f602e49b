"""``ExperimentAnalysis``: what the legacy ``tune.run`` returns, as in Ray."""
from __future__ import annotations

from pyray.tune.result_grid import (
    best_trial, check_metric_mode, no_best_error, result_of_trial, trials_dataframe,
)


class ExperimentAnalysis:
    def __init__(self, trials, default_metric=None, default_mode=None, experiment_path=None):
        self.trials = list(trials)
        self.default_metric = default_metric
        self.default_mode = default_mode
        self._experiment_path = experiment_path

    @property
    def experiment_path(self):
        return self._experiment_path

    def _check(self, metric, mode, who):
        return check_metric_mode(metric, mode, self.default_metric, self.default_mode, who)

    def get_best_trial(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        metric, mode = self._check(metric, mode, "get_best_trial")
        return best_trial(self.trials, metric, mode, scope, filter_nan_and_inf)

    def get_best_config(self, metric=None, mode=None, scope="last"):
        t = self.get_best_trial(metric, mode, scope)
        return t.config if t else None

    def get_best_checkpoint(self, trial, metric=None, mode=None):
        metric, mode = self._check(metric, mode, "get_best_checkpoint")
        return result_of_trial(trial).get_best_checkpoint(metric, mode) \
            if trial.checkpoints else None

    def get_last_checkpoint(self, trial=None, metric="training_iteration", mode="max"):
        trial = trial or self.best_trial
        return trial.checkpoint

    def _best(self):
        if not self.default_metric or not self.default_mode:
            raise ValueError("To fetch the best trial, pass `metric` and `mode` to tune.run() "
                             "or use get_best_trial(metric, mode).")
        t = self.get_best_trial()
        if t is None:
            raise no_best_error(self.default_metric)
        return t

    @property
    def best_trial(self):
        return self._best()

    @property
    def best_config(self):
        return self._best().config

    @property
    def best_result(self):
        return self._best().last_result

    @property
    def best_checkpoint(self):
        return self._best().checkpoint

    @property
    def best_logdir(self):
        return self._best().local_path

    best_trial_path = best_logdir

    @property
    def best_dataframe(self):
        return result_of_trial(self._best()).metrics_dataframe

    @property
    def best_result_df(self):
        import pandas as pd
        return pd.DataFrame([self.best_result])

    @property
    def results(self):
        return {t.trial_id: t.last_result for t in self.trials}

    @property
    def results_df(self):
        df = trials_dataframe(self.trials)
        if "trial_id" in df:
            df = df.set_index("trial_id", drop=True)
        return df

    def dataframe(self, metric=None, mode=None):
        return trials_dataframe(self.trials)

    @property
    def trial_dataframes(self):
        return {t.local_path: result_of_trial(t).metrics_dataframe for t in self.trials}

    def get_all_configs(self, prefix=False):
        return {t.local_path: t.config for t in self.trials}
