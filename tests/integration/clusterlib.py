"""Helpers for the multi-node tests (test_cluster_*.py): a fixture that
makes pyray.cluster_utils clusters and checks they leave nothing behind.

Test modules import the fixture by name (``from clusterlib import
make_cluster``) so pytest finds it there.
"""
from __future__ import annotations

import pytest

import pyray
from pyray.cluster_utils import Cluster

MiB = 1 << 20

# a node is declared dead ~2 s after its heartbeats stop
FAST_FAILURE = {"heartbeat_interval_s": 0.2, "num_heartbeats_timeout": 10}


@pytest.fixture
def make_cluster(leaks):
    """``make_cluster(head={...}, nodes=[{...}, ...], connect=True)`` starts
    a head and nodes, waits for them, connects this process; at the end it
    disconnects, shuts the cluster down and checks that nothing is left."""
    made = []

    def make(head=None, nodes=(), connect=True):
        shm_before = leaks.shm_snapshot()
        cluster = Cluster()
        made.append((cluster, shm_before))
        cluster.add_node(**dict({"num_cpus": 1, "object_store_memory": 128 * MiB},
                                **(head or {})))
        for args in nodes:
            cluster.add_node(**dict({"object_store_memory": 128 * MiB}, **args))
        cluster.wait_for_nodes()
        if connect:
            cluster.connect()
        return cluster

    yield make
    for cluster, shm_before in made:
        shutdown_and_check(cluster, shm_before, leaks)


def shutdown_and_check(cluster, shm_before, leaks):
    session = cluster.session_dir
    fp = leaks.Footprint.of_children(session, shm_before)
    if pyray.is_initialized():
        pyray.shutdown()
    cluster.shutdown()
    fp.assert_clean()
