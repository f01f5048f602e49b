"""``PlacementGroupFactory``: the resources of one trial as bundles of a
placement group (the first bundle for the trial itself, the others for the
tasks and actors it starts), as in Ray."""
from __future__ import annotations

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def _norm_bundle(b, where):
    if not isinstance(b, dict):
        raise TypeError(f"{where}: a bundle must be a dict of resource amounts, got {b!r}")
    out = {}
    for k, v in b.items():
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{where}: resource {k!r} must be a number >= 0, got {v!r}")
        key = {"cpu": "CPU", "gpu": "GPU", "CPU": "CPU", "GPU": "GPU"}.get(k, k)
        if v:
            out[key] = out.get(key, 0) + v
    return out


class PlacementGroupFactory:
    def __init__(self, bundles, strategy="PACK", *args, **kwargs):
        if not isinstance(bundles, (list, tuple)) or not bundles:
            raise ValueError("PlacementGroupFactory(bundles): expected a non-empty list of "
                             "resource dicts, e.g. [{'CPU': 1}, {'CPU': 2}].")
        if strategy not in _STRATEGIES:
            raise ValueError(f"PlacementGroupFactory(strategy={strategy!r}): expected one of "
                             f"{list(_STRATEGIES)}.")
        if args or kwargs:
            raise TypeError(f"PlacementGroupFactory: unexpected arguments {args or kwargs!r}")
        self._bundles = [_norm_bundle(b, "PlacementGroupFactory") for b in bundles]
        if not any(self._bundles):
            raise ValueError("PlacementGroupFactory: every bundle is empty; a trial needs at "
                             "least one resource.")
        self.strategy = strategy
        self.head_bundle_is_empty = not self._bundles[0]

    @property
    def bundles(self):
        return [dict(b) for b in self._bundles]

    @property
    def head_bundle(self):
        return dict(self._bundles[0])

    @property
    def required_resources(self):
        total = {}
        for b in self._bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0) + v
        return total

    def __eq__(self, other):
        return (isinstance(other, PlacementGroupFactory) and other._bundles == self._bundles
                and other.strategy == self.strategy)

    def __hash__(self):
        return hash((repr(self._bundles), self.strategy))

    def __repr__(self):
        return f"PlacementGroupFactory({self._bundles}, strategy={self.strategy!r})"


def resources_to_pgf(resources):
    """A trial's resources (dict with cpu/gpu/memory/custom keys, or a
    factory) as a PlacementGroupFactory."""
    if isinstance(resources, PlacementGroupFactory):
        return resources
    if not isinstance(resources, dict):
        raise TypeError(f"trial resources must be a dict or a PlacementGroupFactory, got "
                        f"{type(resources).__name__}")
    r = dict(resources)
    custom = r.pop("custom_resources", None) or {}
    extra_cpu = r.pop("extra_cpu", 0) or 0
    extra_gpu = r.pop("extra_gpu", 0) or 0
    head = _norm_bundle({**r, **custom}, "with_resources")
    if extra_cpu or extra_gpu:
        return PlacementGroupFactory([head, _norm_bundle(
            {"CPU": extra_cpu, "GPU": extra_gpu}, "with_resources")])
    return PlacementGroupFactory([head])
