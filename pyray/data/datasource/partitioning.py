"""Partitioned folders: values encoded in directory names.

``hive``: ``.../year=2024/month=1/part.parquet`` gives ``{"year": "2024",
"month": "1"}``.  ``dir``: ``base_dir/2024/1/part.parquet`` with
``field_names=["year", "month"]`` gives the same.  Values are strings unless
``field_types`` maps a field to ``int``, ``float`` or ``bool``, as in Ray.
"""
from __future__ import annotations

import posixpath
from typing import Callable, Dict, List, Optional
from urllib.parse import unquote

import pyarrow as pa

_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
STYLES = ("hive", "dir")


class Partitioning:
    """How partition values are read from paths (Ray's ``Partitioning``)."""

    def __init__(self, style: str = "hive", base_dir: Optional[str] = None,
                 field_names: Optional[List[str]] = None,
                 field_types: Optional[Dict[str, type]] = None, filesystem=None):
        if style not in STYLES:
            raise ValueError(f"partitioning style must be one of {STYLES}, not {style!r}")
        if style == "dir" and not field_names:
            raise ValueError('Partitioning("dir") needs field_names: the name of each '
                             "directory level below base_dir")
        for name, t in (field_types or {}).items():
            if t not in _TYPES:
                raise ValueError(f"field_types[{name!r}] must be one of str, int, float, bool, "
                                 f"not {t!r}")
        self.style = style
        self.base_dir = base_dir.rstrip("/") if base_dir else base_dir
        self.field_names = list(field_names) if field_names else None
        self.field_types = dict(field_types or {})
        self.filesystem = filesystem

    def __repr__(self):
        return (f"Partitioning(style={self.style!r}, base_dir={self.base_dir!r}, "
                f"field_names={self.field_names!r})")

    def __eq__(self, other):
        return (isinstance(other, Partitioning) and
                (self.style, self.base_dir, self.field_names, self.field_types) ==
                (other.style, other.base_dir, other.field_names, other.field_types))

    def arrow_type(self, field: str) -> pa.DataType:
        return _TYPES[self.field_types.get(field, str)]


class PathPartitionParser:
    """Calling it with a file path gives that file's partition values (strings)."""

    def __init__(self, partitioning: Partitioning):
        self.partitioning = partitioning

    @classmethod
    def of(cls, style="hive", base_dir=None, field_names=None, field_types=None,
           filesystem=None) -> "PathPartitionParser":
        return cls(Partitioning(style, base_dir, field_names, field_types, filesystem))

    def __call__(self, path: str) -> Dict[str, str]:
        part = self.partitioning
        dirname = posixpath.dirname(path)
        if part.base_dir:
            base = part.base_dir
            if not (dirname == base or dirname.startswith(base + "/")):
                raise ValueError(f"{path!r} is not under the partitioning base_dir {base!r}")
            dirname = dirname[len(base):]
        segments = [s for s in dirname.split("/") if s]
        if part.style == "hive":
            values = {}
            for seg in segments:
                if "=" in seg:
                    k, v = seg.split("=", 1)
                    values[unquote(k)] = unquote(v)
            if part.field_names:
                missing = [f for f in part.field_names if f not in values]
                if missing:
                    raise ValueError(f"{path!r} has no hive partition directory for "
                                     f"{missing} (expected name=value folders)")
                values = {f: values[f] for f in part.field_names}
            return values
        names = part.field_names
        if len(segments) < len(names):
            raise ValueError(f"{path!r} has {len(segments)} directory levels below "
                             f"{part.base_dir!r}, fewer than field_names {names}")
        return dict(zip(names, segments[-len(names):] if part.base_dir is None
                        else segments[:len(names)]))

    def typed(self, values: Dict[str, str]) -> Dict[str, object]:
        out = {}
        for k, v in values.items():
            t = self.partitioning.field_types.get(k, str)
            if t is bool:
                out[k] = v.lower() in ("true", "1")
            else:
                try:
                    out[k] = t(v)
                except ValueError:
                    raise ValueError(f"partition value {k}={v!r} is not a valid "
                                     f"{t.__name__}") from None
        return out


class PathPartitionFilter:
    """Keeps the files whose partition values pass ``filter_fn(dict) -> bool``."""

    def __init__(self, parser: PathPartitionParser, filter_fn: Callable[[Dict[str, str]], bool]):
        if not callable(filter_fn):
            raise TypeError("filter_fn must be a callable taking a dict of partition values")
        self.parser = parser
        self.filter_fn = filter_fn

    @classmethod
    def of(cls, filter_fn, style="hive", base_dir=None, field_names=None, field_types=None,
           filesystem=None) -> "PathPartitionFilter":
        return cls(PathPartitionParser.of(style, base_dir, field_names, field_types),
                   filter_fn)

    def __call__(self, paths: List[str]) -> List[str]:
        kept = []
        for p in paths:
            values = self.parser(p)
            if values and self.filter_fn(self.parser.typed(values)):
                kept.append(p)
            elif not values:
                kept.append(p)
        return kept
