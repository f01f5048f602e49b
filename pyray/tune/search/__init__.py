"""Search spaces and search algorithms (``pyray.tune.search``), as in Ray Tune.

``pyray.tune.search.optuna.OptunaSearch`` needs optuna (``pyray[tune]``);
it is imported only when used.
"""

from pyray.tune.search.basic_variant import BasicVariantGenerator
from pyray.tune.search.concurrency_limiter import ConcurrencyLimiter
from pyray.tune.search.repeater import Repeater
from pyray.tune.search.sample import (
    Categorical, Domain, Float, Function, Integer, choice, grid_search, lograndint, loguniform,
    qlograndint, qloguniform, qrandint, qrandn, quniform, randint, randn, sample_from, uniform,
)
from pyray.tune.search.search_generator import (
    SearchGenerator, create_searcher, resolve_search_algorithm,
)
from pyray.tune.search.searcher import (
    UNDEFINED_METRIC_MODE, UNDEFINED_SEARCH_SPACE, UNRESOLVED_SEARCH_SPACE, Searcher,
)
from pyray.tune.search.variant_generator import generate_variants

__all__ = [
    "Searcher", "BasicVariantGenerator", "SearchGenerator", "ConcurrencyLimiter", "Repeater",
    "create_searcher", "resolve_search_algorithm", "generate_variants",
    "UNRESOLVED_SEARCH_SPACE", "UNDEFINED_SEARCH_SPACE", "UNDEFINED_METRIC_MODE",
    "Domain", "Float", "Integer", "Categorical", "Function",
    "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn", "randint",
    "qrandint", "lograndint", "qlograndint", "choice", "sample_from", "grid_search",
]
