"""User metrics, as Ray's ``ray.util.metrics``: Counter, Gauge, Histogram.

Usable in the driver, tasks and actors.  A value is recorded in the
process (no message per call); the process reports to its node's raylet
every PYRAY_METRICS_REPORT_INTERVAL_MS (default 1 s) and when it leaves,
and the node exports the metric as ``ray_<name>`` on its metrics export
port (docs/metrics.md).
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Dict, List, Optional, Tuple, Union

from pyray._private.metrics import COUNTER, GAUGE, HISTOGRAM, recorder

__all__ = ["Counter", "Histogram", "Gauge"]

# Prometheus's metric name syntax
_VALID_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class Metric:
    """What Counter, Gauge and Histogram share: name, description, tag keys
    and default tags."""

    _kind = None

    def __init__(self, name: str, description: str = "",
                 tag_keys: Optional[Tuple[str, ...]] = None):
        if not isinstance(name, str) or len(name) == 0:
            raise ValueError("Empty name is not allowed. Please provide a metric name.")
        # as in Ray, a name Prometheus cannot take is a warning, and the
        # metric records nothing
        self._discard_metric = not _VALID_NAME.match(name)
        if self._discard_metric:
            warnings.warn(f"Invalid metric name: {name}. Metric will be discarded and data "
                          "will not be collected or published. Metric names can only contain "
                          "letters, numbers, _, and :. Metric names cannot start with numbers.",
                          UserWarning, stacklevel=3)
        self._name = name
        self._description = description
        self._default_tags = {}
        self._tag_keys = tag_keys or tuple()
        if not isinstance(self._tag_keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(self._tag_keys)}")
        for key in self._tag_keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")
        self._defn = None

    def _definition(self, boundaries=()):
        # what identifies the metric in a report (pyray._private.metrics)
        return (self._name, self._kind, self._description, self._tag_keys, tuple(boundaries))

    def set_default_tags(self, default_tags: Dict[str, str]):
        """Sets tags used by every record call that does not give them;
        returns the metric itself."""
        for key, val in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(val, str):
                raise TypeError(f"Tag values must be str, got {type(val)}.")
        self._default_tags = default_tags
        return self

    def _tag_values(self, tags):
        """The tag values of one record, in tag_keys order."""
        if tags:
            for val in tags.values():
                if not isinstance(val, str):
                    raise TypeError(f"Tag values must be str, got {type(val)}.")
            final = {**self._default_tags, **tags}
        else:
            final = self._default_tags
        missing = [k for k in self._tag_keys if k not in final]
        if missing:
            raise ValueError(f"Missing value for tag key(s): {','.join(missing)}.")
        return tuple(final[k] for k in self._tag_keys)

    @staticmethod
    def _check_value(value):
        if not isinstance(value, (int, float)):
            raise TypeError(f"value must be int or float, got {type(value)}.")

    @property
    def info(self) -> Dict[str, Any]:
        return {"name": self._name, "description": self._description,
                "tag_keys": self._tag_keys, "default_tags": self._default_tags}


class Counter(Metric):
    """A cumulative metric that only goes up (a Prometheus counter,
    exported as ``ray_<name>_total``)."""

    _kind = COUNTER

    def __init__(self, name: str, description: str = "",
                 tag_keys: Optional[Tuple[str, ...]] = None):
        super().__init__(name, description, tag_keys)
        self._defn = self._definition()

    def __reduce__(self):
        return self.__class__, (self._name, self._description, self._tag_keys)

    def inc(self, value: Union[int, float] = 1.0, tags: Dict[str, str] = None):
        """Adds `value` (> 0, default 1); `tags` override the default tags."""
        self._check_value(value)
        if value <= 0:
            raise ValueError(f"value must be >0, got {value}")
        if not self._discard_metric:
            recorder.counter(self._defn, self._tag_values(tags), float(value))


class Gauge(Metric):
    """The last value set (a Prometheus gauge)."""

    _kind = GAUGE

    def __init__(self, name: str, description: str = "",
                 tag_keys: Optional[Tuple[str, ...]] = None):
        super().__init__(name, description, tag_keys)
        self._defn = self._definition()

    def __reduce__(self):
        return Gauge, (self._name, self._description, self._tag_keys)

    def set(self, value: Optional[Union[int, float]], tags: Dict[str, str] = None):
        """Sets the gauge to `value` (None: does nothing)."""
        if value is None:
            return
        self._check_value(value)
        if not self._discard_metric:
            recorder.gauge(self._defn, self._tag_values(tags), float(value))


class Histogram(Metric):
    """Counts observed values in buckets bounded by `boundaries` (a
    Prometheus histogram)."""

    _kind = HISTOGRAM

    def __init__(self, name: str, description: str = "", boundaries: List[float] = None,
                 tag_keys: Optional[Tuple[str, ...]] = None):
        super().__init__(name, description, tag_keys)
        if boundaries is None or len(boundaries) == 0:
            raise ValueError("boundaries argument should be provided when using the Histogram "
                             "class. e.g., Histogram(\"name\", boundaries=[1.0, 2.0])")
        for i, boundary in enumerate(boundaries):
            if boundary <= 0:
                raise ValueError(f"Invalid `boundaries` argument at index {i}, {boundaries}. "
                                 "Use positive values for the arguments.")
        self.boundaries = boundaries
        self._defn = self._definition(sorted(float(b) for b in set(boundaries)))

    def __reduce__(self):
        return Histogram, (self._name, self._description, self.boundaries, self._tag_keys)

    def observe(self, value: Union[int, float], tags: Dict[str, str] = None):
        """Counts `value` in its bucket."""
        self._check_value(value)
        if not self._discard_metric:
            recorder.histogram(self._defn, self._tag_values(tags), float(value))

    @property
    def info(self):
        info = super().info
        info.update({"boundaries": self.boundaries})
        return info
