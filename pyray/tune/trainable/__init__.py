"""Trainables: function trainables (``tune.report``) and the ``Trainable`` class."""
from pyray.tune.trainable.trainable import Trainable
from pyray.tune.trainable.util import with_parameters, with_resources

__all__ = ["Trainable", "with_parameters", "with_resources"]
