"""The shared resource vocabulary (pyray._private.resources) without
processes: one tolerance for every fit, the placement-group state names in
one place, and the default `memory` resource of a node."""
import ast
from pathlib import Path

import pytest

import pyray
from pyray._private import node as node_mod
from pyray._private import placement_group as client_pg
from pyray._private import resources as vocab
from pyray.raylet import resources as node_resources

pytestmark = pytest.mark.timeout(60)

ROOT = Path(pyray.__file__).resolve().parent.parent
VOCABULARY = {"EPS", "validate_shape", "fits", "take", "PgShape", "make_pg_shape",
              "group_shape", "bundle_resources", "pg_of_shape", "group_resource",
              "captures_children", "BUNDLE_MARKER", "BUNDLE_MARKER_TOTAL",
              "BUNDLE_MARKER_REQUEST", "PENDING", "CREATED", "REMOVED", "RESCHEDULING"}


def _imports_from(module):
    """(file, names) of every `from <module> import names` in the tree."""
    for path in list((ROOT / "pyray").rglob("*.py")) + list((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == module:
                yield path.relative_to(ROOT), {a.name for a in node.names}


def test_the_vocabulary_is_imported_from_one_place():
    wrong = [(str(p), sorted(names & VOCABULARY))
             for p, names in _imports_from("pyray.raylet.resources") if names & VOCABULARY]
    assert not wrong, wrong
    # and the raylet's accounting no longer hands it out
    assert set(node_resources.__all__) == {"NodeResources", "Bundle"}
    for name in ("validate_shape", "PgShape", "group_shape", "BUNDLE_MARKER"):
        assert not hasattr(node_resources, name), name


def test_state_names_are_the_vocabulary_s():
    from pyray.gcs import placement_groups as gcs_pg
    for name in ("PENDING", "CREATED", "REMOVED", "RESCHEDULING"):
        assert getattr(client_pg, name) is getattr(vocab, name)
        assert getattr(gcs_pg, name) is getattr(vocab, name)


def test_fits_tolerates_float_sums():
    assert vocab.fits({"CPU": 0.3}, {"CPU": 0.1 + 0.2})
    assert not vocab.fits({"CPU": 0.3}, {"CPU": 0.3 + 10 * vocab.EPS})
    assert vocab.fits({}, {"CPU": 0})


class _Group:
    """A stand-in placement group whose bundles are known."""

    def __init__(self, bundles):
        self.id = client_pg.PlacementGroupID(b"\x01" * 18)
        self.bundle_cache = bundles


def test_a_shape_fits_a_bundle_with_the_shared_tolerance():
    # 0.1 + 0.2 > 0.3 in floating point: the bundle check uses fits()' EPS
    pg = _Group([{"CPU": 0.3}])
    shape = client_pg.place(pg, 0, False, {"CPU": 0.1 + 0.2}, "task")
    assert shape.pg == (bytes(pg.id), 0, False)
    with pytest.raises(ValueError, match="cannot fit"):
        client_pg.place(pg, -1, False, {"CPU": 0.31}, "task")


# ---------------------------------------------------------------------------
# a node's memory resource
# ---------------------------------------------------------------------------
def test_available_memory_is_what_psutil_reports():
    psutil = pytest.importorskip("psutil")
    got = node_mod.available_memory()
    want = psutil.virtual_memory().available
    assert got > 0
    # MemAvailable moves while the test runs; a cgroup limit can only lower it
    assert got <= want * 1.1 + (64 << 20)


def test_default_memory_is_the_available_memory_less_the_store(monkeypatch):
    monkeypatch.setattr(node_mod, "available_memory", lambda: 10 << 30)
    assert node_mod.default_memory(3 << 30) == 7 << 30
    # a store as large as the free memory still leaves the node some
    assert node_mod.default_memory(20 << 30) == (10 << 30) // 10


def test_a_cgroup_limit_lowers_the_available_memory(monkeypatch, tmp_path):
    limit, usage, stat = tmp_path / "memory.max", tmp_path / "memory.current", \
        tmp_path / "memory.stat"
    limit.write_text(f"{2 << 30}\n")
    usage.write_text(f"{1 << 30}\n")
    stat.write_text(f"anon 1\ninactive_file {256 << 20}\nactive_file 5\n")
    monkeypatch.setattr(node_mod, "_CGROUP_MEMORY",
                        ((str(limit), str(usage), str(stat), b"inactive_file "),))
    # the limit less what is used, the reclaimable page cache not counted
    assert node_mod.available_memory() == min((2 << 30) - (1 << 30) + (256 << 20),
                                               _meminfo_available())
    limit.write_text("max\n")
    assert node_mod.available_memory() == pytest.approx(_meminfo_available(), rel=0.1)


def _meminfo_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")
