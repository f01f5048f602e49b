"""Trials of an experiment."""
from pyray.tune.experiment.trial import Trial

__all__ = ["Trial"]
