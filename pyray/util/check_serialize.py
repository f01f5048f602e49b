"""inspect_serializability: which part of an object cannot be pickled.

    ok, failures = inspect_serializability(fn, name="fn")

prints a tree of the pieces that failed (the closure variables and globals of
a function, the attributes of an object) and returns ``(False, {FailureTuple
(obj, name, parent), ...})``: the innermost pieces that cannot be
serialized; ``(True, set())`` when the whole object can.
"""
from __future__ import annotations

import inspect
import sys
from collections import namedtuple

FailureTuple = namedtuple("FailureTuple", ["obj", "name", "parent"])
FailureTuple.__hash__ = lambda self: hash((id(self.obj), self.name, id(self.parent)))
FailureTuple.__eq__ = lambda self, other: (
    isinstance(other, FailureTuple) and self.obj is other.obj and
    self.name == other.name and self.parent is other.parent)


class _Printer:
    def __init__(self, file):
        self.file = file or sys.stdout
        self.level = 0

    def line(self, text):
        print(("    " * self.level) + text, file=self.file)


def _serializes(obj):
    import cloudpickle
    try:
        cloudpickle.dumps(obj)
        return True, None
    except Exception as err:  # noqa: BLE001 - any failure is the answer
        return False, err


def _parts(obj):
    """``[(name, value)]``: what a value is made of, as far as pickling it
    goes."""
    if inspect.isfunction(obj):
        try:
            cv = inspect.getclosurevars(obj)
        except (TypeError, ValueError):
            return []
        return list(cv.nonlocals.items()) + list(cv.globals.items())
    if inspect.ismethod(obj):
        return [("__self__", obj.__self__), ("__func__", obj.__func__)]
    if isinstance(obj, dict):
        return [(repr(k), v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict) and not inspect.isclass(obj) and not inspect.ismodule(obj):
        return list(d.items())
    return []


def _inspect(obj, name, parent, depth, failures, printer):
    ok, err = _serializes(obj)
    if ok:
        return True
    printer.line(f"!!! FAIL serialization: {err}")
    if depth <= 0:
        failures.add(FailureTuple(obj, name, parent))
        return False
    found_inner = False
    printer.level += 1
    for part_name, value in _parts(obj):
        if _serializes(value)[0]:
            continue
        found_inner = True
        printer.line(f"Serializing '{part_name}' {value!r:.80}...")
        _inspect(value, part_name, obj, depth - 1, failures, printer)
    printer.level -= 1
    if not found_inner:
        failures.add(FailureTuple(obj, name, parent))
    return False


def inspect_serializability(base_obj, name=None, depth=3, print_file=None):
    """Whether ``base_obj`` can be serialized (pickled by value, as pyray
    sends functions, classes and arguments), and if not, the innermost pieces
    that cannot.  Prints what it finds to ``print_file`` (stdout)."""
    printer = _Printer(print_file)
    if name is None:
        name = getattr(base_obj, "__name__", None) or repr(base_obj)[:80]
    printer.line("=" * min(len(str(name)) + 40, 100))
    printer.line(f"Checking Serializability of {base_obj!r:.80}")
    printer.line("=" * min(len(str(name)) + 40, 100))
    failures = set()
    ok = _inspect(base_obj, name, None, depth, failures, printer)
    printer.line("=" * min(len(str(name)) + 40, 100))
    if ok:
        printer.line(f"{name!s:.80} is serializable.")
    else:
        printer.line("Variable: \n")
        for f in failures:
            printer.line(f"\t{f.name} [obj={f.obj!r:.60}, parent={f.parent!r:.60}]")
        printer.line("\nwas found to be non-serializable. There may be multiple other "
                     "undetected variables that were non-serializable.")
    printer.line("=" * min(len(str(name)) + 40, 100))
    return ok, failures


__all__ = ["inspect_serializability", "FailureTuple"]
