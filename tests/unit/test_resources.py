"""The shared resource vocabulary (pyray._private.resources) without
processes: one tolerance for every fit, the placement-group state names in
one place."""
import ast
from pathlib import Path

import pytest

import pyray
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

