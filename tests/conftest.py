"""Shared fixtures.

Object store: ``store`` / ``client`` (64 MiB, no spilling), ``spill_store``
(small, spills into a temp dir), ``make_oid`` (fresh 20-byte ids), and
``shm_clean`` (asserts a test leaves nothing in /dev/shm).
"""
import itertools
import os

import pytest

import plasma

STORE_CAPACITY = 64 << 20


def _shm_names():
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


@pytest.fixture
def shm_clean():
    """Fails the test if it leaves new entries in /dev/shm."""
    before = _shm_names()
    yield
    left = {n for n in _shm_names() - before if n.startswith("plasma")}
    assert not left, f"shared-memory residue: {sorted(left)}"


@pytest.fixture
def make_oid():
    """make_oid() -> a new 20-byte object id, unique within the test."""
    counter = itertools.count(1)
    salt = os.urandom(8)
    return lambda: salt + next(counter).to_bytes(12, "little")


@pytest.fixture
def store(shm_clean):
    s = plasma.Store.create(capacity=STORE_CAPACITY)
    yield s
    s.close()


@pytest.fixture
def client(store):
    c = plasma.connect(store.name)
    yield c
    c.close()


@pytest.fixture
def spill_store(tmp_path, shm_clean):
    spill_dir = tmp_path / "spill"
    s = plasma.Store.create(capacity=8 << 20, spill_dir=spill_dir)
    yield s
    s.close()
    assert not list(spill_dir.iterdir()), "spill files left after close()"


@pytest.fixture
def spill_client(spill_store):
    c = plasma.connect(spill_store.name)
    yield c
    c.close()
