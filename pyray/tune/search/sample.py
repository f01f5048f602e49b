"""Search space primitives: ``tune.uniform``, ``tune.choice``, ``tune.grid_search``...

Each sampler returns a :class:`Domain` (a range or a set of values plus the
distribution used to draw from it). The variant generator
(:mod:`pyray.tune.search.variant_generator`) walks a ``param_space`` and
replaces every Domain with a drawn value; ``grid_search`` entries expand into
one configuration per value.

Draws use the random state handed in (an int seed, a
``numpy.random.Generator`` or a ``numpy.random.RandomState``); without one they
use numpy's global state, so ``np.random.seed(...)`` makes a run reproducible
as it does in Ray.
"""

import inspect
import math
from copy import copy
from numbers import Number
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

__all__ = [
    "Domain", "Float", "Integer", "Categorical", "Function", "Sampler",
    "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn",
    "randint", "qrandint", "lograndint", "qlograndint", "choice", "sample_from",
    "grid_search",
]


class _NumpyRng:
    """One interface over an int seed, a Generator, a RandomState or numpy's
    global state (``None``)."""

    def __init__(self, random_state=None):
        if isinstance(random_state, _NumpyRng):
            self._rng = random_state._rng
        elif random_state is None:
            self._rng = np.random  # the module: np.random.seed() applies
        elif isinstance(random_state, (np.random.Generator, np.random.RandomState)):
            self._rng = random_state
        elif isinstance(random_state, (int, np.integer)):
            self._rng = np.random.default_rng(int(random_state))
        else:
            raise TypeError(
                "random_state must be None, an int seed, a numpy.random.Generator "
                f"or a numpy.random.RandomState, got {type(random_state).__name__}")

    @property
    def _legacy(self) -> bool:
        return not isinstance(self._rng, np.random.Generator)

    def integers(self, low, high, size=None):
        if self._legacy:
            return self._rng.randint(low, high, size=size)
        return self._rng.integers(low, high, size=size)

    def __getattr__(self, name):
        return getattr(self._rng, name)


def _as_rng(random_state) -> _NumpyRng:
    return random_state if isinstance(random_state, _NumpyRng) else _NumpyRng(random_state)


class Sampler:
    """How values are drawn from a :class:`Domain`."""

    def sample(self, domain, config=None, size: int = 1, random_state=None):
        raise NotImplementedError


class _Uniform(Sampler):
    def __str__(self):
        return "Uniform"


class _LogUniform(Sampler):
    def __init__(self, base: float = 10):
        if base <= 0 or base == 1:
            raise ValueError(f"The log base must be > 0 and != 1, got {base}")
        self.base = base

    def __str__(self):
        return "LogUniform"


class _Normal(Sampler):
    def __init__(self, mean: float = 0.0, sd: float = 1.0):
        if sd <= 0:
            raise ValueError(f"The standard deviation of randn must be > 0, got {sd}")
        self.mean = mean
        self.sd = sd

    def __str__(self):
        return "Normal"


class _Grid(Sampler):
    """Marks a Categorical as a grid: every value is used, none is drawn."""

    def sample(self, domain, config=None, size=1, random_state=None):
        raise RuntimeError("grid_search values are expanded, not sampled")

    def __str__(self):
        return "Grid"


class _Quantized(Sampler):
    def __init__(self, sampler: Sampler, q: Union[float, int]):
        if q is None or not isinstance(q, Number) or q <= 0:
            raise ValueError(f"The quantization step q must be a number > 0, got {q!r}")
        self.sampler = sampler
        self.q = q

    def get_sampler(self):
        return self.sampler

    def _grid_index(self, bound, round_fn):
        """``bound``'s index on the grid of multiples of q, rounded inwards
        (infinite bounds, of randn, stay as they are)."""
        if not np.isfinite(bound):
            return bound
        scaled = bound / self.q
        nearest = round(scaled)
        if math.isclose(scaled, nearest):
            return nearest
        return round_fn(scaled)

    def sample(self, domain, config=None, size=1, random_state=None):
        if isinstance(domain, Integer):
            # draw a grid index, so every multiple of q is equally likely
            lower = int(self._grid_index(domain.lower, np.ceil))
            upper = int(self._grid_index(domain.upper, np.floor))
            if upper < lower:
                raise ValueError(
                    f"There is no multiple of the quantization factor q={self.q} between the "
                    f"bounds {domain.lower} and {domain.upper} of this domain, so it has no "
                    "values to sample.")
            index_domain = copy(domain)
            index_domain.lower = lower
            # samplers exclude the upper bound; quantization includes it,
            # except for q == 1 (Ray 2.x's values)
            index_domain.upper = upper + (0 if self.q == 1 else 1)
            indices = self.sampler.sample(index_domain, config, size, random_state=random_state)
            quantized = np.multiply(indices, self.q)
        else:
            inner = copy(domain)
            inner.lower = self._grid_index(domain.lower, np.ceil) * self.q
            inner.upper = self._grid_index(domain.upper, np.floor) * self.q
            values = self.sampler.sample(inner, config, size, random_state=random_state)
            quantized = np.round(np.divide(values, self.q)) * self.q
        if not isinstance(quantized, np.ndarray):
            return domain.cast(quantized)
        return [domain.cast(v) for v in quantized]

    def __str__(self):
        return f"Quantized({self.sampler}, q={self.q})"


def _with_log_sampler(domain, base):
    if not domain.lower > 0:
        raise ValueError(
            "LogUniform requires a lower bound greater than 0. "
            f"Got: {domain.lower}. Did you pass a variable that has been log-transformed? "
            "If so, pass the non-transformed value instead.")
    if not 0 < domain.upper < float("inf"):
        raise ValueError(
            "LogUniform requires an upper bound greater than 0 and finite. "
            f"Got: {domain.upper}.")
    new = copy(domain)
    new.set_sampler(domain._LogUniform(base))
    return new


def _log_draws(sampler, domain, size, random_state):
    # uniform in log space; the base of the logarithm does not change the
    # distribution (nor, here, the values: natural logs, as Ray)
    return np.exp(random_state.uniform(np.log(domain.lower), np.log(domain.upper), size=size))


def _one_or_list(domain, items):
    items = [domain.cast(v) for v in np.atleast_1d(items)]
    return items if len(items) > 1 else items[0]


class Domain:
    """A parameter's range or set of values and how to draw from it."""

    sampler: Optional[Sampler] = None
    default_sampler_cls = None

    def cast(self, value):
        return value

    def set_sampler(self, sampler: Sampler, allow_override: bool = False):
        if self.sampler and not allow_override:
            raise ValueError(
                f"You can only choose one sampler for parameter domains. Existing "
                f"sampler for parameter {type(self).__name__}: {self.sampler}. "
                f"Tried to add {sampler}")
        self.sampler = sampler

    def get_sampler(self) -> Sampler:
        sampler = self.sampler
        if not sampler:
            sampler = self.default_sampler_cls()
        return sampler

    def sample(self, config=None, size: int = 1, random_state=None):
        rng = _as_rng(random_state)
        return self.get_sampler().sample(self, config=config, size=size, random_state=rng)

    def is_grid(self) -> bool:
        return isinstance(self.sampler, _Grid)

    def is_function(self) -> bool:
        return False

    def is_valid(self, value: Any) -> bool:
        raise NotImplementedError

    @property
    def domain_str(self) -> str:
        return "(unknown)"

    def __repr__(self):
        return f"<{type(self).__name__} {self.domain_str} {self.get_sampler()}>"


class Float(Domain):
    """A real range; ``lower`` / ``upper`` may be None (unbounded, for randn)."""

    class _Uniform(_Uniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            if not (domain.lower > float("-inf") and domain.upper < float("inf")):
                raise ValueError("uniform requires finite lower and upper bounds")
            return _one_or_list(domain, random_state.uniform(domain.lower, domain.upper, size=size))

    class _LogUniform(_LogUniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            if not domain.lower > 0:
                raise ValueError("loguniform requires a lower bound > 0")
            if not domain.upper < float("inf"):
                raise ValueError("loguniform requires a finite upper bound")
            return _one_or_list(domain, _log_draws(self, domain, size, random_state))

    class _Normal(_Normal):
        def sample(self, domain, config=None, size=1, random_state=None):
            if domain.lower != float("-inf") or domain.upper != float("inf"):
                raise ValueError("randn does not take lower or upper bounds")
            return _one_or_list(domain, random_state.normal(self.mean, self.sd, size=size))

    default_sampler_cls = _Uniform

    def __init__(self, lower: Optional[float], upper: Optional[float]):
        self.lower = float("-inf") if lower is None else lower
        self.upper = float("inf") if upper is None else upper

    def cast(self, value):
        return float(value)

    def uniform(self):
        if not self.lower > float("-inf"):
            raise ValueError("Uniform requires a lower bound. Make sure to set the `lower` parameter of `Float()`.")
        if not self.upper < float("inf"):
            raise ValueError("Uniform requires an upper bound. Make sure to set the `upper` parameter of `Float()`.")
        new = copy(self)
        new.set_sampler(self._Uniform())
        return new

    def loguniform(self, base: float = 10):
        return _with_log_sampler(self, base)

    def normal(self, mean=0.0, sd=1.0):
        new = copy(self)
        new.set_sampler(self._Normal(mean, sd))
        return new

    def quantized(self, q: float):
        if self.lower > float("-inf") and not math.isclose(self.lower / q, round(self.lower / q)):
            raise ValueError(f"Your lower variable bound {self.lower} is not divisible by quantization factor {q}.")
        if self.upper < float("inf") and not math.isclose(self.upper / q, round(self.upper / q)):
            raise ValueError(f"Your upper variable bound {self.upper} is not divisible by quantization factor {q}.")
        new = copy(self)
        new.set_sampler(_Quantized(new.get_sampler(), q), allow_override=True)
        return new

    def is_valid(self, value):
        return self.lower <= value <= self.upper

    @property
    def domain_str(self):
        return f"({self.lower}, {self.upper})"


class Integer(Domain):
    """An integer range, ``upper`` exclusive (Ray's rule for randint)."""

    class _Uniform(_Uniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            return _one_or_list(domain, random_state.integers(domain.lower, domain.upper, size=size))

    class _LogUniform(_LogUniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            items = np.floor(_log_draws(self, domain, size, random_state)).astype(int)
            # the upper bound is exclusive; a draw that lands exactly on it
            # (possible after rounding) is moved inside
            items = np.minimum(items, int(domain.upper) - 1)
            return _one_or_list(domain, items)

    default_sampler_cls = _Uniform

    def __init__(self, lower: int, upper: int):
        self.lower = lower
        self.upper = upper

    def cast(self, value):
        return int(value)

    def quantized(self, q: int):
        new = copy(self)
        new.set_sampler(_Quantized(new.get_sampler(), q), allow_override=True)
        return new

    def uniform(self):
        new = copy(self)
        new.set_sampler(self._Uniform())
        return new

    def loguniform(self, base: float = 10):
        return _with_log_sampler(self, base)

    def is_valid(self, value):
        return self.lower <= value <= self.upper

    @property
    def domain_str(self):
        return f"({self.lower}, {self.upper})"


class Categorical(Domain):
    """A finite set of values; ``choice`` draws one, a grid uses every one."""

    class _Uniform(_Uniform):
        def sample(self, domain, config=None, size=1, random_state=None):
            indices = random_state.choice(np.arange(0, len(domain.categories)), size=size)
            items = [domain.categories[int(i)] for i in np.atleast_1d(indices)]
            return items if len(items) > 1 else domain.cast(items[0])

    default_sampler_cls = _Uniform

    def __init__(self, categories: Sequence):
        self.categories = list(categories)

    def uniform(self):
        new = copy(self)
        new.set_sampler(self._Uniform())
        return new

    def grid(self):
        new = copy(self)
        new.set_sampler(_Grid())
        return new

    def __len__(self):
        return len(self.categories)

    def __getitem__(self, item):
        return self.categories[item]

    def is_valid(self, value):
        return value in self.categories

    @property
    def domain_str(self):
        return f"{self.categories}"


class Function(Domain):
    """A value computed by a user function; it may read the rest of the
    configuration (``lambda spec: spec.config.a * 2``)."""

    class _CallSampler(Sampler):
        def sample(self, domain, config=None, size=1, random_state=None):
            if domain.pass_config:
                items = [domain.func(config[i] if isinstance(config, list) else config)
                         for i in range(size)]
            else:
                items = [domain.func() for _ in range(size)]
            return items if len(items) > 1 else domain.cast(items[0])

        def __str__(self):
            return "Function"

    default_sampler_cls = _CallSampler

    def __init__(self, func: Callable):
        if not callable(func):
            raise TypeError(f"sample_from expects a callable, got {type(func).__name__}: {func!r}")
        pass_config = True
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):
            sig = None
        if sig is not None:
            try:
                sig.bind({})
            except TypeError:
                pass_config = False
                try:
                    sig.bind()
                except TypeError as exc:
                    raise ValueError(
                        "The function passed to a `sample_from` must accept either no "
                        "arguments or exactly one (the spec: `lambda spec: ...`)") from exc
        self.func = func
        self.pass_config = pass_config

    def is_function(self):
        return True

    def is_valid(self, value):
        return True

    @property
    def domain_str(self):
        return f"{self.func}()"


# ------------------------------------------------------------------ samplers

def _check_number(name, **values):
    for key, value in values.items():
        if not isinstance(value, Number) or isinstance(value, bool):
            raise TypeError(f"tune.{name}: `{key}` must be a number, got {value!r}")


def _check_range(name, lower, upper):
    _check_number(name, lower=lower, upper=upper)
    if lower > upper:
        raise ValueError(f"tune.{name}: `lower` ({lower}) must not be greater than `upper` ({upper})")


def uniform(lower: float, upper: float) -> Float:
    """A float drawn uniformly between ``lower`` and ``upper``."""
    _check_range("uniform", lower, upper)
    return Float(lower, upper).uniform()


def quniform(lower: float, upper: float, q: float) -> Float:
    """A float drawn uniformly between ``lower`` and ``upper``, rounded to a
    multiple of ``q``."""
    _check_range("quniform", lower, upper)
    return Float(lower, upper).uniform().quantized(q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float drawn uniformly in log space between ``lower`` and ``upper``."""
    _check_range("loguniform", lower, upper)
    return Float(lower, upper).loguniform(base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    """loguniform, rounded to a multiple of ``q``."""
    _check_range("qloguniform", lower, upper)
    return Float(lower, upper).loguniform(base).quantized(q)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A float drawn from a normal distribution."""
    _check_number("randn", mean=mean, sd=sd)
    return Float(None, None).normal(mean, sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """randn, rounded to a multiple of ``q``."""
    _check_number("qrandn", mean=mean, sd=sd)
    return Float(None, None).normal(mean, sd).quantized(q)


def randint(lower: int, upper: int) -> Integer:
    """An integer drawn uniformly from ``[lower, upper)`` (upper exclusive)."""
    _check_range("randint", lower, upper)
    if upper <= lower:
        raise ValueError(f"tune.randint: `upper` ({upper}) must be greater than `lower` ({lower}); upper is exclusive")
    return Integer(lower, upper).uniform()


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    """An integer drawn uniformly in log space from ``[lower, upper)``."""
    _check_range("lograndint", lower, upper)
    return Integer(lower, upper).loguniform(base)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """An integer drawn uniformly from ``[lower, upper]`` (upper INCLUSIVE, as
    in Ray), rounded to a multiple of ``q``."""
    _check_range("qrandint", lower, upper)
    return Integer(lower, upper).uniform().quantized(q)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    """lograndint with ``upper`` inclusive, rounded to a multiple of ``q``."""
    _check_range("qlograndint", lower, upper)
    return Integer(lower, upper).loguniform(base).quantized(q)


def choice(categories: Sequence) -> Categorical:
    """One of ``categories``, drawn uniformly."""
    if isinstance(categories, (str, bytes, dict)) or not hasattr(categories, "__len__"):
        raise TypeError(f"tune.choice expects a list of values, got {type(categories).__name__}: {categories!r}")
    if len(categories) == 0:
        raise ValueError("tune.choice needs at least one value to choose from, got an empty list")
    return Categorical(categories).uniform()


def sample_from(func: Callable[[Dict], Any]) -> Function:
    """A value computed by ``func``; ``func(spec)`` may read other parameters
    as ``spec.config.<name>`` (conditional search spaces)."""
    return Function(func)


def grid_search(values: List) -> Dict[str, List]:
    """Try every value in ``values`` (each configuration is repeated
    ``num_samples`` times)."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise TypeError(f"tune.grid_search expects a list of values, got {type(values).__name__}: {values!r}")
    return {"grid_search": values}
