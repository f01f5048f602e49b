"""pyray.tune (search spaces, search algorithms and schedulers)."""

from pyray.tune import schedulers, search
from pyray.tune.search.sample import (
    choice, grid_search, lograndint, loguniform, qlograndint, qloguniform, qrandint, qrandn,
    quniform, randint, randn, sample_from, uniform,
)

__all__ = [
    "schedulers", "search", "uniform", "quniform", "loguniform", "qloguniform", "randn",
    "qrandn", "randint", "qrandint", "lograndint", "qlograndint", "choice", "sample_from",
    "grid_search",
]
