"""Tune's error type, as in Ray (``ray.tune.error.TuneError``)."""


class TuneError(Exception):
    """An experiment-level failure (not a trial's own exception)."""
