"""Turns a ``param_space`` with samplers and grids into concrete configs.

A spec is walked once into *resolved* paths (plain values) and *unresolved*
ones (Domains, ``{"grid_search": [...]}``, ``{"eval": "..."}``). Grid
variables are expanded with the first one (in sorted path order) varying
fastest, then every other Domain is drawn for each grid point, as Ray does.
Paths are tuples of keys; list elements are addressed by their index.
"""

import copy
import logging
import random
import re
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy

from pyray.tune.search.sample import Categorical, Domain, Function, _as_rng

logger = logging.getLogger(__name__)

_MAX_RESOLUTION_PASSES = 20
_EVAL_GLOBALS = {"random": random, "np": numpy}


class RecursiveDependencyError(Exception):
    """A ``sample_from`` read a value that is not resolved yet."""


class TuneSpaceError(ValueError):
    """A search space that cannot be resolved (unknown structure, a function
    that fails)."""


def _try_resolve(value) -> Tuple[bool, Any]:
    if isinstance(value, Domain):
        return False, value
    if isinstance(value, dict) and len(value) == 1:
        if "eval" in value:
            expr = value["eval"]
            return False, Function(lambda spec: eval(expr, _EVAL_GLOBALS, {"spec": spec}))
        if "grid_search" in value:
            values = value["grid_search"]
            if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
                raise TuneSpaceError(
                    f"grid_search expects a list of values, got {type(values).__name__}: {values!r}")
            values = list(values)
            if not values:
                raise TuneSpaceError(
                    "grid_search got an empty list of values: there would be no trial to run; "
                    "give it at least one value")
            return False, Categorical(values).grid()
    return True, value


def _is_resolved(value) -> bool:
    return _try_resolve(value)[0]


def _split(spec: Dict) -> Tuple[Dict[Tuple, Any], Dict[Tuple, Domain]]:
    resolved: Dict[Tuple, Any] = {}
    unresolved: Dict[Tuple, Domain] = {}
    for key, value in spec.items():
        ok, value = _try_resolve(value)
        if not ok:
            unresolved[(key,)] = value
        elif isinstance(value, dict):
            sub_resolved, sub_unresolved = _split(value)
            for path, v in sub_resolved.items():
                resolved[(key,) + path] = v
            for path, v in sub_unresolved.items():
                unresolved[(key,) + path] = v
        elif isinstance(value, (list, tuple)):
            for i, elem in enumerate(value):
                sub_resolved, sub_unresolved = _split({i: elem})
                for path, v in sub_resolved.items():
                    resolved[(key,) + path] = v
                for path, v in sub_unresolved.items():
                    unresolved[(key,) + path] = v
        else:
            resolved[(key,)] = value
    return resolved, unresolved


def _path_key(path: Tuple) -> Tuple:
    # sort paths as Ray does (tuple order), tolerating int list indices next
    # to str keys
    return tuple((0, k, "") if isinstance(k, (int, float)) else (1, 0, str(k)) for k in path)


def parse_spec_vars(spec: Dict):
    """``(resolved, domain_vars, grid_vars)``: lists of ``(path, value)``;
    grid variables sorted by path."""
    resolved, unresolved = _split(spec)
    resolved_vars = list(resolved.items())
    if not unresolved:
        return resolved_vars, [], []
    grid_vars, domain_vars = [], []
    for path, domain in unresolved.items():
        (grid_vars if domain.is_grid() else domain_vars).append((path, domain))
    grid_vars.sort(key=lambda item: _path_key(item[0]))
    return resolved_vars, domain_vars, grid_vars


def has_unresolved_values(spec: Dict) -> bool:
    return bool(_split(spec)[1])


def assign_value(spec, path: Tuple, value):
    parent, parent_key = None, None
    for key in path[:-1]:
        parent, parent_key = spec, key
        spec = spec[key]
    key = path[-1]
    if isinstance(spec, tuple):
        if parent is None:
            raise TuneSpaceError("Cannot assign a value inside a top-level tuple")
        parent[parent_key] = spec[:key] + (value,) + spec[key + 1:]
    else:
        spec[key] = value


def get_value(spec, path: Tuple):
    for key in path:
        spec = spec[key]
    return spec


class _UnresolvedAccessGuard(dict):
    """The view a ``sample_from`` function gets: ``spec.config.a`` or
    ``spec["config"]["a"]``; reading a value not drawn yet defers the
    function to a later pass."""

    def __getattr__(self, item):
        try:
            return self[item]
        except KeyError:
            raise AttributeError(item) from None

    def __getitem__(self, item):
        value = dict.__getitem__(self, item)
        if not _is_resolved(value):
            raise RecursiveDependencyError(f"`{item}` recursively depends on {value}")
        if isinstance(value, dict):
            return _UnresolvedAccessGuard(value)
        return value

    def get(self, item, default=None):
        return self[item] if item in self else default


def _call_function_domain(domain: Function, spec: Dict, rng):
    guard = _UnresolvedAccessGuard(spec)
    if not domain.pass_config:
        return domain.sample(guard, random_state=rng)
    try:
        return domain.sample(guard, random_state=rng)
    except (AttributeError, KeyError):
        # the function reads the config directly (`lambda config: config["a"]`)
        if "config" not in spec or not isinstance(spec["config"], dict):
            raise
        return domain.sample(_UnresolvedAccessGuard(spec["config"]), random_state=rng)


def _resolve_domain_vars(spec, domain_vars, allow_fail=False, random_state=None):
    rng = _as_rng(random_state)
    resolved: Dict[Tuple, Any] = {}
    error: Optional[Exception] = RecursiveDependencyError("unresolved")
    passes = 0
    while error and passes < _MAX_RESOLUTION_PASSES:
        passes += 1
        error = None
        for path, domain in domain_vars:
            if path in resolved:
                continue
            try:
                if isinstance(domain, Function):
                    value = _call_function_domain(domain, spec, rng)
                else:
                    value = domain.sample(_UnresolvedAccessGuard(spec), random_state=rng)
            except RecursiveDependencyError as exc:
                error = exc
            except Exception as exc:
                raise TuneSpaceError(
                    f"Failed to evaluate expression: {'/'.join(map(str, path))}: {domain}: "
                    f"{type(exc).__name__}: {exc}") from exc
            else:
                assign_value(spec, path, value)
                resolved[path] = value
    if error:
        if allow_fail:
            return False, resolved
        raise TuneSpaceError(
            f"Could not resolve the search space: {error}. A `sample_from` function "
            "depends (maybe indirectly) on itself.") from error
    return True, resolved


def _grid_search_generator(spec: Dict, grid_vars: List) -> Iterator[Dict]:
    if not grid_vars:
        yield spec
        return
    skeleton = copy.deepcopy(spec)
    for path, _ in grid_vars:
        assign_value(skeleton, path, None)
    indices = [0] * len(grid_vars)
    while True:
        point = copy.deepcopy(skeleton)
        for i, (path, values) in enumerate(grid_vars):
            assign_value(point, path, values[indices[i]])
        yield point
        # odometer: the first grid variable turns fastest
        i = 0
        while i < len(indices):
            indices[i] += 1
            if indices[i] < len(grid_vars[i][1]):
                break
            indices[i] = 0
            i += 1
        if i == len(indices):
            return


def _generate_variants_internal(spec: Dict, constant_grid_search=False, random_state=None):
    spec = copy.deepcopy(spec)
    _, domain_vars, grid_vars = parse_spec_vars(spec)
    if not domain_vars and not grid_vars:
        yield {}, spec
        return
    to_resolve = domain_vars
    all_resolved = True
    resolved_vars: Dict[Tuple, Any] = {}
    if constant_grid_search:
        # draw the random variables once and keep them for the whole grid
        all_resolved, resolved_vars = _resolve_domain_vars(
            spec, domain_vars, allow_fail=True, random_state=random_state)
        if not all_resolved:
            to_resolve = [(p, d) for p, d in to_resolve if p not in resolved_vars]
    for point in _grid_search_generator(spec, grid_vars):
        if not constant_grid_search or not all_resolved:
            _, resolved_vars = _resolve_domain_vars(point, to_resolve, random_state=random_state)
        for inner_resolved, inner_spec in _generate_variants_internal(
                point, constant_grid_search, random_state):
            for path, _ in grid_vars:
                resolved_vars[path] = get_value(inner_spec, path)
            for k, v in inner_resolved.items():
                if k in resolved_vars and v != resolved_vars[k] and _is_resolved(resolved_vars[k]):
                    raise TuneSpaceError(
                        f"The variable `{k}` could not be unambiguously resolved to a single "
                        "value. Consider simplifying your configuration.")
                resolved_vars[k] = v
            yield dict(resolved_vars), inner_spec


def generate_variants(unresolved_spec: Dict, constant_grid_search: bool = False,
                      random_state=None) -> Iterator[Tuple[Dict, Dict]]:
    """Yields ``(resolved_vars, spec)`` for every grid point, each with its
    random variables drawn."""
    rng = _as_rng(random_state)
    yield from _generate_variants_internal(unresolved_spec, constant_grid_search, rng)


def get_preset_variants(spec: Dict, config: Dict, constant_grid_search=False, random_state=None):
    """Variants of ``spec`` with the values of ``config`` (a point to
    evaluate) fixed; the rest is drawn / expanded."""
    spec = copy.deepcopy(spec)
    resolved, _, _ = parse_spec_vars(config)
    for path, value in resolved:
        try:
            domain = get_value(spec["config"], path)
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(
                f"Pre-set config key `{'/'.join(map(str, path))}` does not correspond to a "
                "valid key in the search space definition. Please add this path to the "
                "`param_space` variable passed to `tune.Tuner()`.") from exc
        if isinstance(domain, dict):
            domain = Categorical(domain["grid_search"]) if "grid_search" in domain else None
        if domain is not None:
            if isinstance(domain, Domain):
                if not domain.is_valid(value):
                    logger.warning("Pre-set value `%s` is not within valid values of parameter "
                                   "`%s`: %s", value, "/".join(map(str, path)), domain.domain_str)
            elif domain != value:
                logger.warning("Pre-set value `%s` is not equal to the value of parameter `%s`: %s",
                               value, "/".join(map(str, path)), domain)
        assign_value(spec["config"], path, value)
    return generate_variants(spec, constant_grid_search, random_state)


def count_spec_samples(spec: Dict, num_samples: int = 1) -> int:
    _, _, grid_vars = parse_spec_vars(spec)
    count = 1
    for _, domain in grid_vars:
        count *= len(domain.categories)
    return num_samples * count


def count_variants(spec: Dict, presets: List[Dict]) -> int:
    def deep_update(d, u):
        for k, v in u.items():
            d[k] = deep_update(d.get(k, {}), v) if isinstance(v, Mapping) else v
        return d

    total = 0
    remaining = spec.get("num_samples", 1)
    for preset in presets:
        preset_spec = copy.deepcopy(spec)
        deep_update(preset_spec["config"], preset)
        total += count_spec_samples(preset_spec, 1)
        remaining -= 1
    if remaining > 0:
        total += count_spec_samples(spec, remaining)
    return total


def _clean_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", str(value)).strip("_")


def format_vars(resolved_vars: Dict) -> str:
    """``last_key=value`` pairs joined by commas, safe for directory names."""
    items = {k: v for k, v in resolved_vars.items() if k not in ("run", "env", "resources_per_trial")}
    return ",".join(f"{_clean_value(k[-1])}={_clean_value(v)}"
                    for k, v in sorted(items.items(), key=lambda kv: _path_key(kv[0])))


def flatten_resolved_vars(resolved_vars: Dict) -> Dict[str, Any]:
    """``{("config", "a", "b"): v}`` -> ``{"a/b": v}`` (a trial's evaluated_params)."""
    out = {}
    for pieces, value in resolved_vars.items():
        if pieces and pieces[0] == "config":
            pieces = pieces[1:]
        out["/".join(str(p) for p in pieces)] = value
    return out


def resolve_nested_dict(nested: Dict) -> Dict[Tuple, Any]:
    """Flattens a nested dict into ``{path_tuple: value}``."""
    out = {}
    for k, v in nested.items():
        if isinstance(v, dict) and v:
            for sub, subv in resolve_nested_dict(v).items():
                out[(k,) + sub] = subv
        else:
            out[(k,)] = v
    return out


def flatten_dict(dt: Dict, delimiter: str = "/", prevent_delimiter: bool = False) -> Dict[str, Any]:
    """``{"a": {"b": 1}, "c": 2}`` -> ``{"c": 2, "a/b": 1}``: Ray's order
    (each level of nesting appended after the keys above it; empty dicts
    disappear), which decides the order searchers see parameters in."""
    def check(key):
        if prevent_delimiter and delimiter in str(key):
            raise ValueError(f"Found delimiter `{delimiter}` in key when trying to flatten "
                             "array. Please avoid using the delimiter in your specification.")

    out = dict(dt)
    for key in out:
        check(key)
    while any(isinstance(v, dict) for v in out.values()):
        add, remove = {}, []
        for key, value in out.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    check(sub)
                    add[f"{key}{delimiter}{sub}"] = v
                remove.append(key)
        out.update(add)
        for key in remove:
            del out[key]
    return out


def unflatten_dict(dt: Dict[str, Any], delimiter: str = "/") -> Dict:
    out: Dict = {}
    for key, value in dt.items():
        parts = key.split(delimiter)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge_dicts(base: Dict, update: Dict) -> Dict:
    """Deep merge: a copy of ``base`` with ``update`` applied recursively."""
    merged = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict) and not (
                len(merged[k]) == 1 and ("grid_search" in merged[k] or "eval" in merged[k])):
            merged[k] = merge_dicts(merged[k], v)
        else:
            merged[k] = copy.deepcopy(v)
    return merged
