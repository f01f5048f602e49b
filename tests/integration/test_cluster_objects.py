"""Objects across nodes: a value held by another node's store is pulled
into the local store in chunks, once per node however many ask for it,
and read zero-copy; freeing it frees the holder's copy."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import pyray
from clusterlib import make_cluster  # noqa: F401  (fixture)
from pyray._private import bootstrap
from pyray._private.protocol import Op
from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tasklib import filled, summary

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


def on(node, soft=False):
    return NodeAffinitySchedulingStrategy(node.node_id, soft=soft)


def pattern(nbytes, seed):
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)


@pyray.remote
def make_pattern(nbytes, seed):
    return pattern(nbytes, seed)


@pyray.remote
def digest(arr):
    return pyray.get_runtime_context().get_node_id(), hashlib.sha256(arr).hexdigest()


@pyray.remote
def digest_of_ref(refs):
    arr = pyray.get(refs[0])
    return pyray.get_runtime_context().get_node_id(), hashlib.sha256(arr).hexdigest()


def om_stats(node):
    om = node._local.node["om_addr"]
    return bootstrap.request(om, Op.OBJECT_MANAGER_STATS, timeout=5)


def store_stats(node):
    return bootstrap.request(node.raylet_socket_name, Op.RAYLET_INFO, timeout=5)["store"]


def test_200_mib_made_on_one_node_read_on_another(make_cluster):
    cluster = make_cluster(head={"num_cpus": 1, "object_store_memory": 300 * MiB},
                           nodes=[{"num_cpus": 1, "object_store_memory": 300 * MiB},
                                  {"num_cpus": 1, "object_store_memory": 300 * MiB}])
    _, a, b = cluster.list_all_nodes()
    expected = hashlib.sha256(pattern(200 * MiB, 7)).hexdigest()
    ref = make_pattern.options(scheduling_strategy=on(a)).remote(200 * MiB, 7)
    here, there = pyray.get([digest.options(scheduling_strategy=on(a)).remote(ref),
                             digest.options(scheduling_strategy=on(b)).remote(ref)],
                            timeout=50)
    assert here == (a.node_id, expected)
    assert there == (b.node_id, expected)
    assert om_stats(b)["pulled_bytes"] >= 200 * MiB
    assert om_stats(a)["served_bytes"] >= 200 * MiB
    # the driver (on the head) reads it too: a read-only view on the head's store
    arr = pyray.get(ref, timeout=50)
    assert arr.nbytes == 200 * MiB and not arr.flags.writeable and not arr.flags.owndata
    assert hashlib.sha256(arr).hexdigest() == expected
    assert store_stats(cluster.head_node)["used"] >= 200 * MiB


def test_concurrent_pulls_of_one_object_share_one_transfer(make_cluster):
    cluster = make_cluster(head={"num_cpus": 1},
                           nodes=[{"num_cpus": 1}, {"num_cpus": 4}])
    _, a, b = cluster.list_all_nodes()
    ref = filled.options(scheduling_strategy=on(a)).remote(60 * MiB, 5)
    pyray.wait([ref], timeout=30, fetch_local=False)
    before = om_stats(b)
    # four readers at once on b: nested in a list, so each task gets it itself
    got = pyray.get([digest_of_ref.options(scheduling_strategy=on(b)).remote([ref])
                     for _ in range(4)], timeout=40)
    expected = hashlib.sha256(np.full(60 * MiB, 5, np.uint8)).hexdigest()
    assert got == [(b.node_id, expected)] * 4
    after = om_stats(b)
    assert after["pulls"] - before["pulls"] == 1
    assert 60 * MiB <= after["pulled_bytes"] - before["pulled_bytes"] < 61 * MiB


def test_wait_fetch_local(make_cluster):
    cluster = make_cluster(nodes=[{"num_cpus": 1}])
    head, far = cluster.list_all_nodes()
    made = [filled.options(scheduling_strategy=on(far)).remote(8 * MiB, i) for i in (1, 2)]
    before = om_stats(head)
    # fetch_local=False: ready once made over there; nothing comes here
    assert pyray.wait(made, num_returns=2, timeout=30, fetch_local=False) == (made, [])
    assert om_stats(head)["pulls"] == before["pulls"]
    assert store_stats(head)["used"] < MiB
    # fetch_local=True (the default): ready once copied into this node's store
    assert pyray.wait(made[:1], timeout=30) == (made[:1], [])
    after = om_stats(head)
    assert after["pulls"] - before["pulls"] == 1                 # the one waited for
    assert after["pulled_bytes"] - before["pulled_bytes"] >= 8 * MiB
    assert 8 * MiB <= store_stats(head)["used"] < 16 * MiB
    assert pyray.get(made, timeout=30)[1][-1] == 2


def test_wait_fetch_local_on_more_objects_than_pullers(make_cluster):
    cluster = make_cluster(nodes=[{"num_cpus": 1}])
    head, far = cluster.list_all_nodes()
    made = [filled.options(scheduling_strategy=on(far)).remote(256 * 1024, i) for i in range(20)]
    assert pyray.wait(made, num_returns=20, timeout=30, fetch_local=False) == (made, [])
    before = om_stats(head)
    ready, rest = pyray.wait(made, num_returns=20, timeout=60)
    assert set(ready) == set(made) and rest == []
    after = om_stats(head)
    assert after["pulls"] - before["pulls"] == 20                # each one copied here
    assert store_stats(head)["used"] >= 20 * 256 * 1024


def test_large_task_arguments_reach_a_remote_worker(make_cluster):
    cluster = make_cluster(nodes=[{"num_cpus": 1}])
    far = cluster.worker_nodes[0]
    arr = np.arange(300_000, dtype=np.uint8)          # > 100 KiB: through the store
    node, n, total, first, last = pyray.get(
        summary.options(scheduling_strategy=on(far)).remote(arr), timeout=30)
    assert (node, n, total, first, last) == (far.node_id, arr.size,
                                             int(arr.astype(np.uint64).sum()), 0, 223)
    # and a put by the driver, passed by ref
    ref = pyray.put(np.full(3 * MiB, 9, np.uint8))
    assert pyray.get(summary.options(scheduling_strategy=on(far)).remote(ref),
                     timeout=30) == (far.node_id, 3 * MiB, 27 * MiB, 9, 9)


def test_freeing_a_remote_object_frees_every_copy(make_cluster, wait_for):
    cluster = make_cluster(nodes=[{"num_cpus": 1}, {"num_cpus": 1}])
    head, far, third = cluster.list_all_nodes()
    ref = filled.options(scheduling_strategy=on(far)).remote(20 * MiB, 1)
    assert pyray.get(ref, timeout=30)[-1] == 1                       # a copy on the head
    assert pyray.get(summary.options(scheduling_strategy=on(third)).remote(ref),
                     timeout=30)[1] == 20 * MiB                      # and one on the third
    for node in (head, far, third):
        assert store_stats(node)["used"] >= 20 * MiB
    del ref
    for node in (head, far, third):
        wait_for(lambda: store_stats(node)["used"] < MiB, timeout=10,
                 what=f"the copy on {node} to be freed")


def test_an_object_too_large_for_the_reader_store(make_cluster):
    cluster = make_cluster(head={"num_cpus": 1, "object_store_memory": 32 * MiB},
                           nodes=[{"num_cpus": 1, "object_store_memory": 128 * MiB}])
    far = cluster.worker_nodes[0]
    ref = filled.options(scheduling_strategy=on(far)).remote(64 * MiB, 2)
    pyray.wait([ref], timeout=30, fetch_local=False)
    with pytest.raises(pyray.exceptions.ObjectStoreFullError):
        pyray.get(ref, timeout=30)
    # the holder still has it
    assert pyray.get(summary.options(scheduling_strategy=on(far)).remote(ref),
                     timeout=30)[1:] == (64 * MiB, 128 * MiB, 2, 2)


def test_futures_and_await_of_objects_on_another_node(make_cluster, release):
    import asyncio

    from tasklib import wait_for_file
    cluster = make_cluster(nodes=[{"num_cpus": 2}])
    far = cluster.worker_nodes[0]
    gate = wait_for_file.options(scheduling_strategy=on(far)).remote(str(release))
    ref = add_one_later.options(scheduling_strategy=on(far)).remote(gate, 3 * MiB)
    fut = ref.future()                  # completes on the I/O thread, after a pull
    release.touch()
    assert fut.result(timeout=30)[-1] == 1

    async def read():
        return (await filled.options(scheduling_strategy=on(far)).remote(3 * MiB, 6))[-1]
    assert asyncio.run(asyncio.wait_for(read(), 30)) == 6


@pyray.remote
def add_one_later(_gate, nbytes):
    return np.zeros(nbytes, np.uint8) + 1
