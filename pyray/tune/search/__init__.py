"""Search spaces and search algorithms (``pyray.tune.search``), as in Ray Tune."""

from pyray.tune.search.basic_variant import BasicVariantGenerator
from pyray.tune.search.sample import (
    Categorical, Domain, Float, Function, Integer, choice, grid_search, lograndint, loguniform,
    qlograndint, qloguniform, qrandint, qrandn, quniform, randint, randn, sample_from, uniform,
)
from pyray.tune.search.search_generator import SearchGenerator, resolve_search_algorithm
from pyray.tune.search.searcher import Searcher
from pyray.tune.search.variant_generator import generate_variants

__all__ = [
    "Searcher", "BasicVariantGenerator", "SearchGenerator", "resolve_search_algorithm",
    "generate_variants", "Domain", "Float", "Integer", "Categorical", "Function",
    "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn", "randint",
    "qrandint", "lograndint", "qlograndint", "choice", "sample_from", "grid_search",
]
