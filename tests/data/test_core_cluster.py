"""pyray.data core on a two-node Cluster: blocks made on both nodes, streamed
to the driver, actor pools and streaming_split across nodes."""
import os
import time

import numpy as np
import pytest

import pyray
import pyray.data as rd
from pyray.cluster_utils import Cluster


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 1, "object_store_memory": 256 << 20})
    cluster.add_node(num_cpus=1, object_store_memory=256 << 20)
    cluster.wait_for_nodes()
    rd.DataContext.get_current().enable_progress_bars = False
    yield cluster
    cluster.shutdown()


def node_of(batch):
    node = pyray.get_runtime_context().get_node_id()
    return {"id": batch["id"], "node": np.array([node] * len(batch["id"]))}


def test_pipeline_spans_both_nodes(two_nodes):
    nodes = {n.node_id for n in two_nodes.list_all_nodes()}
    ds = rd.range(20000, override_num_blocks=20).map_batches(
        lambda b: (__import__("time").sleep(0.05), b)[1]).map_batches(node_of)
    rows = ds.take_all()
    assert sorted(r["id"] for r in rows) == list(range(20000))
    assert {r["node"] for r in rows} == nodes
    # batches of blocks held on the other node reach this driver intact
    got = np.concatenate([b["id"] for b in ds.iter_batches(batch_size=1000)])
    assert sorted(got.tolist()) == list(range(20000))


class Where:
    """Waits (bounded) until both pool actors are up, so both get work."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        open(os.path.join(out_dir, str(os.getpid())), "w").close()

    def __call__(self, batch):
        deadline = time.monotonic() + 30
        while len(os.listdir(self.out_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        return node_of(batch)


def wait_for_free_cpus(n, timeout=20):
    deadline = time.monotonic() + timeout
    while pyray.available_resources().get("CPU", 0) < n:
        assert time.monotonic() < deadline, pyray.available_resources()
        time.sleep(0.05)


def test_actor_pool_and_streaming_split_across_nodes(two_nodes, tmp_path):
    nodes = {n.node_id for n in two_nodes.list_all_nodes()}
    # one actor per node needs both CPUs free (the last test's workers give
    # theirs back a moment after their tasks end)
    wait_for_free_cpus(2)
    rows = rd.range(400, override_num_blocks=8).map_batches(
        Where, fn_constructor_args=(str(tmp_path),), concurrency=2, num_cpus=1).take_all()
    assert sorted(r["id"] for r in rows) == list(range(400))
    assert {r["node"] for r in rows} == nodes

    @pyray.remote(num_cpus=0)
    def consume(it):
        return sorted(int(x) for b in it.iter_batches(batch_size=None) for x in b["id"])
    its = rd.range(1000, override_num_blocks=10).streaming_split(2)
    a, b = pyray.get([consume.remote(it) for it in its], timeout=60)
    assert sorted(a + b) == list(range(1000)) and a and b


@pyray.remote(num_cpus=0)
class Holder:
    def ping(self):
        return pyray.get_runtime_context().get_node_id()


def test_split_follows_locality_hints(two_nodes):
    wait_for_free_cpus(2)
    ds = rd.range(20000, override_num_blocks=10).map_batches(
        lambda b: (time.sleep(0.05), b)[1]).materialize()
    nodes = [n.node_id for n in two_nodes.list_all_nodes()]
    holders = [Holder.options(scheduling_strategy=pyray.util.scheduling_strategies.
                              NodeAffinitySchedulingStrategy(n, soft=False)).remote()
               for n in nodes]
    assert pyray.get([h.ping.remote() for h in holders], timeout=30) == nodes
    made_on = [m.exec_stats["node"] for b in ds._bundles for m in b.metadata]
    parts = ds.split(2, locality_hints=holders)
    assert sum(p.count() for p in parts) == 20000
    for part, node in zip(parts, nodes):
        on = [m.exec_stats["node"] for b in part._bundles for m in b.metadata]
        local = sum(1 for x in on if x == node)
        # every block goes local unless that would unbalance the parts
        assert local >= min(len(on), made_on.count(node)) - 1, (on, node)

