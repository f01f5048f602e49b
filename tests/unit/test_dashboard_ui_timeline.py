"""The task timeline the dashboard's web interface draws: the GCS's task
spans compacted to workers, names and spans."""
from pyray.dashboard.modules.ui import cluster_summary, compact_timeline


def row(name, node, worker, start_ms, end_ms, state="FINISHED", type_="NORMAL_TASK"):
    sec = (lambda ms: None if ms is None else ms / 1000)
    return ("t" + name, name, type_, state, node, worker, 1, "j", None, 0, None, sec(start_ms),
            sec(end_ms))


def test_spans_are_relative_to_the_first_start_and_grouped_by_worker():
    rows = [row("f", "n1", "w1", 1000, 1500), row("g", "n1", "w2", 1200, 1300, "FAILED"),
            row("f", "n2", "w3", 1400, None, "RUNNING"),
            row("driver", "n1", "d", 900, None, "RUNNING", "DRIVER_TASK"),
            row("h", "n1", "w1", None, None, "PENDING_NODE_ASSIGNMENT")]
    out = compact_timeline(rows, now_ms=2000)
    assert out["t0"] == 1000 and out["now"] == 1000
    assert out["workers"] == [["n1", "w1"], ["n1", "w2"], ["n2", "w3"]]
    assert out["names"] == ["f", "g"]
    # [worker, name, start, end, failed, running]; a running task ends now
    assert out["spans"] == [[0, 0, 0, 500, 0, 0], [1, 1, 200, 300, 1, 0], [2, 0, 400, 1000, 0, 1]]


def test_no_task_ran_yet():
    out = compact_timeline([row("h", "n1", "w1", None, None, "PENDING_NODE_ASSIGNMENT")], 5)
    assert out["spans"] == [] and out["t0"] is None and out["workers"] == []


def test_summaries_are_read_in_rays_shape_and_the_flat_one():
    inner = {"summary": {"f": {"state_counts": {"FINISHED": 2}}}}
    ray_shape = {"total": 2, "result": {"node_id_to_summary": {"cluster": inner}}}
    assert cluster_summary(ray_shape) is inner
    assert cluster_summary({"node_id_to_summary": {"cluster": inner}}) is inner
    assert cluster_summary({"cluster": inner}) is inner
    assert cluster_summary(None) is None
