"""The state API on a two-node cluster, and the GCS's bound on task
records (docs/state.md)."""
from __future__ import annotations

import os
import time
import warnings

import pytest

import pyray
from clusterlib import make_cluster  # noqa: F401  (fixture)
from pyray.util.state import data, get_task, list_nodes, list_tasks, list_workers

pytestmark = pytest.mark.timeout(60)


@pyray.remote
def on_node(hold=0.05):
    time.sleep(hold)
    return pyray.get_runtime_context().get_node_id(), os.getpid()


@pyray.remote
def tiny():
    return None


def test_records_name_the_node_and_worker_each_task_ran_on(make_cluster, wait_for):
    cluster = make_cluster(head={"num_cpus": 1},
                           nodes=[{"num_cpus": 1, "resources": {"far": 1}}])
    head = pyray.get_runtime_context().get_node_id()
    near, far = on_node.remote(), on_node.options(resources={"far": 1}).remote()
    (n1, p1), (n2, p2) = pyray.get([near, far])
    assert n1 == head and n2 != head
    nodes = {n.node_id: n for n in list_nodes()}
    assert set(nodes) == {n1, n2} and nodes[n1].is_head_node and not nodes[n2].is_head_node
    workers = list_workers()
    assert {(w.node_id, w.pid) for w in workers} >= {(n1, p1), (n2, p2)}

    def both_done():
        ts = [get_task(r.task_id().hex()) for r in (near, far)]
        return all(t is not None and t.state == "FINISHED" for t in ts)
    wait_for(both_done, timeout=10)
    t1, t2 = get_task(near.task_id().hex()), get_task(far.task_id().hex())
    assert (t1.node_id, t1.worker_pid) == (n1, p1)
    assert (t2.node_id, t2.worker_pid) == (n2, p2)
    events = {e["args"]["task_id"]: e for e in pyray.timeline()}
    assert events[t2.task_id]["pid"] == "Node " + n2
    # another process (not connected) sees the same cluster
    cluster_addr = cluster.address
    rows = data.query("nodes", address=cluster_addr, source=None)["result"]
    assert {r["node_id"] for r in rows} == {n1, n2}


def test_the_gcs_keeps_a_bounded_number_of_tasks(make_cluster, wait_for):
    make_cluster(head={"num_cpus": 2,
                       "_system_config": {"task_events_max_num_task_in_gcs": 50}})
    pyray.get([tiny.remote() for _ in range(2000)])
    last = tiny.remote()
    pyray.get(last)
    wait_for(lambda: get_task(last.task_id().hex()) is not None, timeout=15)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        tasks = list_tasks(limit=10_000)
    assert len(tasks) <= 50
    assert any("dropped" in str(w.message) for w in seen)
    reply = data.query("tasks", limit=10_000)
    assert reply["num_after_truncation"] <= 50
    # what did not fit was counted: records pushed out, events dropped unread
    assert reply["total"] - len(tasks) + reply["num_status_task_events_dropped"] >= 1500
