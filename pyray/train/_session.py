"""The per-process training session: what ``report`` / ``get_checkpoint`` /
``get_context`` talk to inside a trial.  A trial's process runs one trial at
a time, so the session is one module-level value."""
from __future__ import annotations

import logging
import warnings

logger = logging.getLogger(__name__)

_session = None


def _set(session):
    global _session
    _session = session


def _get():
    return _session


class TrainContext:
    """What a trial can learn about itself (``tune.get_context()``)."""

    def __init__(self, info=None):
        self._info = info or {}

    def get_trial_name(self):
        return self._info.get("trial_name")

    def get_trial_id(self):
        return self._info.get("trial_id")

    def get_trial_dir(self):
        return self._info.get("trial_dir")

    def get_experiment_name(self):
        return self._info.get("experiment_name")

    def get_trial_resources(self):
        return self._info.get("resources")

    def get_storage(self):
        return self._info.get("storage_path")

    def get_world_size(self):
        return 1

    def get_world_rank(self):
        return 0

    def get_local_rank(self):
        return 0

    def get_local_world_size(self):
        return 1

    def get_node_rank(self):
        return 0

    def get_metadata(self):
        return {}


def _misuse(what):
    warnings.warn(f"`{what}` is meant to be called inside a function run by a Tuner "
                  f"(tune.Tuner / tune.run); outside one it does nothing.", stacklevel=3)


def report(metrics=None, *, checkpoint=None, checkpoint_dir_name=None, **kwargs):
    """Reports ``metrics`` (a dict) for this training iteration, with an
    optional ``Checkpoint``; blocks until Tune asks for the next iteration."""
    if metrics is None:
        metrics = {}
    elif not isinstance(metrics, dict):
        raise TypeError(f"report() expects a dict of metrics, got {type(metrics).__name__}: "
                        f"call report({{'score': value}}).")
    if kwargs:
        metrics = {**metrics, **kwargs}
    s = _session
    if s is None:
        _misuse("report")
        return None
    return s.report(metrics, checkpoint)


def get_checkpoint():
    """The checkpoint this trial resumes from (after a failure, a restore or a
    PBT exploit), else None."""
    s = _session
    if s is None:
        _misuse("get_checkpoint")
        return None
    return s.get_checkpoint()


def get_context():
    s = _session
    return TrainContext(s.info if s is not None else None)
