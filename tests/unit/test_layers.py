"""The layers of the tree point one way.

    plasma                      the object store; knows nothing of pyray
    pyray._private, gcs, raylet the runtime
    pyray (public modules)      the API a Ray user sees
    pyray.util, libraries       built on the public API only

Imports are read statically (ast), every one of them, including those inside
functions, so a lazy import cannot hide a wrong-way dependency.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# the libraries to come; each is checked once its package exists
LIBRARIES = ("pyray.dag", "pyray.data", "pyray.tune", "pyray.train", "pyray.serve", "pyray.rllib",
             "pyray.dashboard", "pyray.job_submission", "pyray.autoscaler")

# what code above the runtime may import from pyray: the package itself (its
# lazily loaded public names), its public modules, and the libraries
PUBLIC_MODULES = ("pyray", "pyray.actor", "pyray.exceptions", "pyray.runtime_context",
                  "pyray.experimental", "pyray.remote_function",
                  "pyray.util") + LIBRARIES

# the runtime's internals, never imported from above
INTERNAL = ("pyray._private", "pyray.gcs", "pyray.raylet", "pyray.scripts", "plasma")

# pyray.util modules that bridge the public API to the runtime, and the only
# internal modules each may import.  Nothing else in util (and nothing in a
# library) may reach below the public API.
UTIL_BRIDGES = {
    # list_named_actors() asks the GCS through the core worker
    "pyray.util": ("pyray._private.context", "pyray._private.protocol",
                   "pyray._private.remote_function"),
    # the public functions check their arguments, then call the client that
    # talks to the GCS and places work (the submit path uses that client too)
    "pyray.util.placement_group": ("pyray._private.placement_group",),
    # the strategy classes are defined where the submit path reads them;
    # this module is their public name
    "pyray.util.scheduling_strategies": ("pyray._private.scheduling_strategies",),
    # the state API: its shapes and its data are the runtime's (the CLI and
    # pyray.timeline() read them too)
    "pyray.util.state.common": ("pyray._private.state_schema",),
    "pyray.util.state.exception": ("pyray._private.state_schema",),
    "pyray.util.state.data": ("pyray._private.state",),
    # user metrics record into the process's recorder, which reports to the raylet
    "pyray.util.metrics": ("pyray._private.metrics",),
}

# runtime modules that reach up to a library, and the only ones each may
# import: a remote function's .bind() makes a node of a DAG (pyray.dag), as
# Ray's does; the library itself stays on the public API
RUNTIME_TO_LIBRARY = {
    "pyray._private.remote_function": ("pyray.dag",),
}

HEAVY = ("pandas", "torch", "tensorflow", "jax", "matplotlib", "scipy", "sklearn",
         "gymnasium", "optuna", "starlette", "uvicorn", "fastapi")


# ---------------------------------------------------------------------------
# reading imports
# ---------------------------------------------------------------------------
def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.stem == "__init__"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imports_of(source: str, module: str, package: bool = False):
    """``[(lineno, imported name)]`` of every import in ``source``.  ``from
    a import b`` gives ``a.b`` (b may be a module or a name in a); relative
    imports are made absolute; ``importlib.import_module("x")`` and
    ``__import__("x")`` with a literal name count too."""
    tree = ast.parse(source)
    here = module.split(".") if package else module.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here[:len(here) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                out.append((node.lineno, base if a.name == "*" else f"{base}.{a.name}"))
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if fname in ("import_module", "__import__"):
                out.append((node.lineno, node.args[0].value))
    return out


_CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import\s+\(?([\w ,]+)|"
                            r"c?import\s+([\w., ]+))", re.M)


def cython_imports_of(source: str):
    """The Python and C imports of a .pyx/.pxd file (not valid Python, so
    read line by line)."""
    out = []
    for m in _CYTHON_IMPORT.finditer(source):
        lineno = source.count("\n", 0, m.start()) + 1
        if m.group(1):
            out.extend((lineno, f"{m.group(1)}.{n.strip()}")
                       for n in m.group(2).split(",") if n.strip())
        else:
            out.extend((lineno, n.strip()) for n in m.group(3).split(",") if n.strip())
    return out


def tree_sources():
    """``{module name: (path, source, is package)}`` for pyray/ and plasma/."""
    found = {}
    for top in ("pyray", "plasma"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in (".py", ".pyx", ".pxd") or "__pycache__" in path.parts:
                continue
            name = module_name(path)
            if path.suffix != ".py":
                name += path.suffix      # plasma._store.pyx beside plasma._store.pyi
            found[name] = (path, path.read_text(), is_package(path))
    return found


# ---------------------------------------------------------------------------
# the rules
# ---------------------------------------------------------------------------
def _public(target: str) -> bool:
    if any(_within(target, m) for m in INTERNAL):
        return False
    if not _within(target, "pyray") or target == "pyray":
        return True                                   # stdlib, third party, pyray
    if any(_within(target, m) for m in PUBLIC_MODULES if m != "pyray"):
        return True
    # "pyray.get" (from pyray import get): one of the package's public names
    rest = target.split(".")[1:]
    return len(rest) == 1 and rest[0] in _package_names()


def _package_names():
    import pyray                  # cheap: its public names load on first use
    return set(pyray.__all__)


def violations(sources):
    """The broken rules, as readable lines.  ``sources``: ``{module name:
    (path, source, is package)}``."""
    bad = []
    matched = set()
    for module, (path, source, package) in sorted(sources.items()):
        if path.suffix in (".pyx", ".pxd"):
            found = cython_imports_of(source)
            module = module.rsplit(".", 1)[0]
        else:
            found = imports_of(source, module, package)
        where = f"{path.relative_to(ROOT) if path.is_absolute() else path}"
        for lineno, target in found:
            def report(rule):
                bad.append(f"{where}:{lineno}: {module} imports {target}: {rule}")

            if _within(module, "plasma"):
                if _within(target, "pyray"):
                    report("plasma never imports pyray")
            elif _within(module, "pyray._private"):
                if _within(target, "pyray.util") or any(_within(target, lib)
                                                        for lib in LIBRARIES):
                    if not any(_within(target, a) for a in RUNTIME_TO_LIBRARY.get(module, ())):
                        report("the runtime never imports pyray.util or a library (but "
                               "for the RUNTIME_TO_LIBRARY entries)")
            elif any(_within(module, lib) for lib in LIBRARIES):
                if not _public(target):
                    report("a library imports only the public API")
            elif _within(module, "pyray.util"):
                if _public(target):
                    continue
                allowed = UTIL_BRIDGES.get(module, ())
                if not any(_within(target, a) for a in allowed):
                    report("pyray.util imports only the public API (or is a listed "
                           "bridge, importing only its listed modules)")
    return bad, matched


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------
def test_imports_point_one_way():
    bad, _ = violations(tree_sources())
    assert not bad, "wrong-way imports:\n  " + "\n  ".join(bad)


def test_util_bridges_are_real():
    """Every listed bridge exists and still imports something internal (else
    it is an ordinary public module and leaves the list)."""
    sources = tree_sources()
    for module, allowed in UTIL_BRIDGES.items():
        assert module in sources, f"{module} is listed in UTIL_BRIDGES but does not exist"
        path, source, package = sources[module]
        internal = [t for _, t in imports_of(source, module, package)
                    if any(_within(t, a) for a in allowed)]
        assert internal, f"{module} no longer imports {allowed}: drop it from UTIL_BRIDGES"


def test_runtime_to_library_entries_are_real():
    """Every listed runtime module still imports the library it is allowed."""
    sources = tree_sources()
    for module, allowed in RUNTIME_TO_LIBRARY.items():
        assert module in sources, f"{module} is listed in RUNTIME_TO_LIBRARY but does not exist"
        path, source, package = sources[module]
        assert any(_within(t, a) for _, t in imports_of(source, module, package)
                   for a in allowed), \
            f"{module} no longer imports {allowed}: drop it from RUNTIME_TO_LIBRARY"


def test_the_tree_is_read():
    sources = tree_sources()
    for name in ("pyray", "pyray._private.core_worker", "pyray.util.placement_group",
                 "plasma", "plasma._store.pyx"):
        assert name in sources
    _, source, _ = sources["plasma._store.pyx"]
    assert any(t.startswith("plasma.errors.") for _, t in cython_imports_of(source))


# the checker itself catches each kind of wrong-way import
def _fake(module, source, package=False):
    path = Path(*module.split(".")).with_suffix(".py")
    return {module: (path, source, package)}


@pytest.mark.parametrize("module, source", [
    ("pyray._private.fake", "def f():\n    from pyray.util import placement_group\n"),
    ("pyray._private.fake", "import pyray.util.scheduling_strategies\n"),
    ("pyray._private.fake", "from pyray import util\n"),
    ("pyray._private.fake", "from ..util import placement_group\n"),
    ("pyray._private.fake", "import importlib\nimportlib.import_module('pyray.tune')\n"),
    ("pyray._private.fake", "from pyray.data import Dataset\n"),
    ("pyray._private.fake", "from pyray.dag import FunctionNode\n"),
    ("pyray._private.remote_function", "from pyray.data import Dataset\n"),
    ("pyray.dag.fake", "from pyray._private.context import ctx\n"),
    ("pyray.util.fake", "def f():\n    from pyray._private.context import ctx\n"),
    ("pyray.util.fake", "import plasma\n"),
    ("pyray.util.fake", "from pyray.raylet import resources\n"),
    ("pyray.util.fake", "from pyray import _private\n"),
    ("pyray.util.placement_group", "from pyray._private.context import ctx\n"),
    ("pyray.tune.fake", "from pyray._private.worker import get\n"),
    ("pyray.tune.fake", "from pyray.gcs import server\n"),
    ("pyray.tune.fake", "from .. import _private\n"),
    ("pyray.tune.fake", "from pyray import cluster_utils\n"),
    ("plasma.fake", "def f():\n    import pyray\n"),
    ("plasma.fake", "from pyray.exceptions import ObjectLostError\n"),
])
def test_the_checker_sees_wrong_way_imports(module, source):
    bad, _ = violations(_fake(module, source))
    assert bad, f"{module}: {source!r} should break a rule"


@pytest.mark.parametrize("module, source", [
    ("pyray._private.fake", "from pyray import exceptions\nimport plasma\n"),
    ("pyray.util.fake", "import pyray\nfrom pyray import get, remote\n"
                        "from pyray.exceptions import RayError\nfrom pyray.util import ActorPool\n"),
    ("pyray.util.placement_group",
     "from pyray._private.placement_group import PlacementGroup\n"),
    ("pyray.tune.fake", "from pyray.train import Checkpoint\nfrom pyray.actor import ActorHandle\n"
                        "import numpy\n"),
    ("plasma.fake", "from plasma import _store\nimport os\n"),
    ("pyray._private.remote_function", "from pyray.dag import FunctionNode\n"),
    ("pyray.dag.fake", "from pyray.dag.dag_node import DAGNode\nimport pyray\n"),
])
def test_the_checker_lets_right_way_imports_through(module, source):
    bad, _ = violations(_fake(module, source))
    assert not bad, bad


def test_cython_imports_are_read():
    src = ("cimport cython\nfrom libc.errno cimport errno\nimport os\n"
           "from plasma.errors import (GetTimeoutError,\n    ObjectLostError)\n"
           "from pyray.exceptions import RayError\n")
    targets = [t for _, t in cython_imports_of(src)]
    assert "pyray.exceptions.RayError" in targets
    assert "plasma.errors.GetTimeoutError" in targets
    bad, _ = violations({"plasma.fake.pyx": (Path("plasma/fake.pyx"), src, False)})
    assert bad


@pytest.mark.parametrize("module", ["pyray", "pyray.util", "pyray.exceptions", "plasma"])
def test_import_leaves_heavy_dependencies_alone(module, tmp_path):
    # run outside the checkout: the installed package, with its compiled parts
    code = (f"import sys, json, {module}\n"
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [], \
        f"import {module} loads heavy optional dependencies"
