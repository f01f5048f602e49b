"""The state API (pyray.util.state), task events, pyray.timeline() and the
state CLI against real clusters (docs/state.md)."""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

import pyray
from pyray.util.state import (RayStateApiException, get_actor, get_node, get_task, get_worker,
                              list_actors, list_jobs, list_nodes, list_objects,
                              list_placement_groups, list_tasks, list_workers, summarize_actors,
                              summarize_objects, summarize_tasks)

pytestmark = pytest.mark.timeout(60)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DASHBOARD_PORT = _free_port()
RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 1 << 30, "dashboard_port": DASHBOARD_PORT}


@pyray.remote
def where(hold=0.0):
    time.sleep(hold)
    ctx = pyray.get_runtime_context()
    return {"pid": os.getpid(), "node_id": ctx.get_node_id(), "worker_id": ctx.get_worker_id(),
            "task_id": ctx.get_task_id()}


@pyray.remote
def fails():
    raise KeyError("no such key: missing-thing")


@pyray.remote(max_retries=0)
def crashes():
    os._exit(1)


@pyray.remote
def quiet():
    return 1


@pyray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return os.getpid()


def _task(task_id, wait_for, state=None, detail=True):
    """The record of a task once it reached `state` (records arrive within
    about a second)."""
    found = {}

    def ready():
        t = get_task(task_id)
        if t is not None and (state is None or t.state == state):
            found["t"] = t
            return True
        return False
    wait_for(ready, timeout=10, what=f"task {task_id} in state {state}")
    return found["t"]


def test_a_task_record_shows_where_it_ran_running_then_finished(ray_start, wait_for):
    info = pyray.get(where.remote(0.05))
    t = _task(info["task_id"], wait_for, "FINISHED")
    assert t.name == "where" and t.type == "NORMAL_TASK" and t.func_or_class_name == "where"
    assert (t.node_id, t.worker_id, t.worker_pid) == (info["node_id"], info["worker_id"],
                                                     info["pid"])
    states = [e["state"] for e in t.events]
    assert states.index("RUNNING") < states.index("FINISHED")
    assert states[0] in ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT")
    assert t.job_id == pyray.get_runtime_context().get_job_id()
    assert t.end_time_ms - t.start_time_ms >= 50 and t.error_type is None
    # dict-like access, as Ray's dataclasses
    assert t["state"] == "FINISHED" and t.asdict()["worker_pid"] == info["pid"]


def test_a_failing_task_is_failed_with_its_error(ray_start, wait_for):
    ref = fails.remote()
    with pytest.raises(KeyError):
        pyray.get(ref)
    t = _task(ref.task_id().hex(), wait_for, "FAILED")
    assert t.error_type == "TASK_EXECUTION_EXCEPTION"
    assert "missing-thing" in t.error_message
    failed = list_tasks(filters=[("state", "=", "FAILED"), ("name", "=", "fails")])
    assert [x.task_id for x in failed] == [t.task_id]


def test_a_task_whose_worker_died_is_failed_by_its_owner(ray_start, wait_for):
    ref = crashes.remote()
    with pytest.raises(pyray.exceptions.WorkerCrashedError):
        pyray.get(ref)
    t = _task(ref.task_id().hex(), wait_for, "FAILED")
    assert t.error_type == "WORKER_DIED" and t.name == "crashes"


def test_actors_are_listed_with_class_state_pid_and_node(ray_start, wait_for):
    c = Counter.options(name="state-counter").remote()
    pid = pyray.get(c.incr.remote())
    aid = c._actor_id.hex()
    a = get_actor(aid)
    assert (a.class_name, a.state, a.pid, a.name) == ("Counter", "ALIVE", pid, "state-counter")
    assert a.node_id == pyray.get_runtime_context().get_node_id()
    assert a.job_id == pyray.get_runtime_context().get_job_id()
    alive = list_actors(filters=[("class_name", "=", "Counter"), ("state", "=", "ALIVE")])
    assert aid in [x.actor_id for x in alive]
    # its calls and its creation are task records of the right types
    wait_for(lambda: {"ACTOR_CREATION_TASK", "ACTOR_TASK"} <= {
        t.type for t in list_tasks(filters=[("actor_id", "=", aid)], detail=True)})
    pyray.kill(c)
    wait_for(lambda: get_actor(aid).state == "DEAD")
    assert "kill" in get_actor(aid).death_cause
    assert get_actor("ab" * 16) is None


def test_filters_limit_and_detail(ray_start, wait_for):
    refs = [quiet.remote() for _ in range(5)]
    pyray.get(refs)
    want = {r.task_id().hex() for r in refs}
    wait_for(lambda: want <= {t.task_id for t in list_tasks(
        filters=[("name", "=", "quiet"), ("state", "=", "FINISHED")], limit=1000)})
    # filters compare as Ray's do: case-insensitively, = and !=
    assert len(list_tasks(filters=[("name", "=", "quiet"), ("state", "=", "finished")],
                          limit=1000)) >= 5
    assert all(t.name != "quiet" for t in list_tasks(filters=[("name", "!=", "quiet")],
                                                     limit=1000))
    with pytest.warns(UserWarning, match="limit"):
        assert len(list_tasks(filters=[("name", "=", "quiet")], limit=2)) == 2
    plain = list_tasks(filters=[("task_id", "=", refs[0].task_id().hex())])[0]
    assert plain.events is None and plain.state == "FINISHED"
    full = list_tasks(filters=[("task_id", "=", refs[0].task_id().hex())], detail=True)[0]
    assert [e["state"] for e in full.events][-1] == "FINISHED"
    with pytest.raises(RayStateApiException, match="Supported filter columns: .*task_id"):
        list_tasks(filters=[("colour", "=", "red")])
    with pytest.raises(ValueError, match="predicate"):
        list_actors(filters=[("state", "~", "ALIVE")])
    # nodes, workers, jobs, objects, placement groups
    me = pyray.get_runtime_context()
    node = get_node(me.get_node_id())
    assert node.state == "ALIVE" and node.is_head_node and node.resources_total["CPU"] == 2
    info = pyray.get(where.remote())
    w = get_worker(info["worker_id"])
    assert (w.pid, w.node_id, w.worker_type) == (info["pid"], info["node_id"], "WORKER")
    assert any(x.worker_type == "DRIVER" and x.pid == os.getpid() for x in list_workers())
    jobs = {j.job_id: j for j in list_jobs()}
    assert jobs[me.get_job_id()].status == "RUNNING"
    assert int(jobs[me.get_job_id()].driver_info["pid"]) == os.getpid()
    held = pyray.put(b"x" * (2 << 20))
    objs = {o.object_id: o for o in list_objects(limit=10_000)}
    o = objs[held.hex()]
    assert o.object_size >= 2 << 20 and o.reference_type == "LOCAL_REFERENCE"
    assert o.pid == os.getpid() and o.node_id == me.get_node_id()
    pg = pyray.util.placement_group([{"CPU": 1}])
    pyray.get(pg.ready())
    pgs = list_placement_groups(detail=True)
    assert [p.state for p in pgs if p.placement_group_id == pg.id.hex()] == ["CREATED"]
    pyray.util.remove_placement_group(pg)


def test_a_limited_list_counts_every_record(ray_start, wait_for):
    """list_tasks(limit=) without other filters: the GCS builds only the rows
    returned and counts the rest (total, num_filtered), as a full listing
    would."""
    from pyray._private import state
    pyray.get([quiet.remote() for _ in range(6)])
    wait_for(lambda: state.query("tasks", filters=[("name", "=", "quiet")],
                                 limit=100)["num_filtered"] >= 6,
             timeout=10, what="the six quiet tasks in the records")
    full = state.query("tasks", limit=10_000)
    short = state.query("tasks", limit=2)
    assert short["num_after_truncation"] == 2 and len(short["result"]) == 2
    assert short["total"] == full["total"] and short["num_filtered"] == full["num_filtered"]
    assert [r["task_id"] for r in short["result"]] == [r["task_id"] for r in full["result"][:2]]
    assert all(r["type"] != "DRIVER_TASK" for r in full["result"])
    job = pyray.get_runtime_context().get_job_id()
    by_job = state.query("tasks", filters=[("job_id", "=", job)], limit=3)
    assert by_job["num_after_truncation"] == 3
    assert by_job["num_filtered"] == sum(1 for r in full["result"] if r["job_id"] == job)


def test_summaries_count(ray_start, wait_for):
    refs = [quiet.remote() for _ in range(3)] + [fails.remote()]
    pyray.wait(refs, num_returns=4, timeout=20)

    def counted():
        s = summarize_tasks()["cluster"]["summary"]
        return s.get("quiet", {}).get("state_counts", {}).get("FINISHED", 0) >= 3 and \
            s.get("fails", {}).get("state_counts", {}).get("FAILED", 0) >= 1
    wait_for(counted)
    a = summarize_actors()["cluster"]
    assert a["total_actors"] == sum(sum(v["state_counts"].values())
                                    for v in a["summary"].values())
    held = pyray.put(b"y" * 1000)  # noqa: F841 - listed while held
    o = summarize_objects()["cluster"]
    assert o["total_objects"] >= 1 and o["total_size_mb"] > 0


def test_timeline_has_one_event_per_task(ray_start, wait_for, tmp_path):
    refs = [where.remote(0.1) for _ in range(3)]
    infos = pyray.get(refs)
    ids = {r.task_id().hex() for r in refs}
    for r in refs:
        _task(r.task_id().hex(), wait_for, "FINISHED")
    events = [e for e in pyray.timeline() if e["args"]["task_id"] in ids]
    assert len(events) == 3
    for e in events:
        assert e["ph"] == "X" and e["name"] == "where" and e["cat"] == "task::where"
        assert 100_000 <= e["dur"] < 5_000_000       # microseconds: it slept 0.1 s
    assert {e["tid"] for e in events} == {"Worker " + i["worker_id"] for i in infos}
    path = tmp_path / "trace.json"
    assert pyray.timeline(str(path)) is None
    assert len([e for e in json.loads(path.read_text()) if e["args"]["task_id"] in ids]) == 3


def test_enable_task_events_false_records_nothing(ray_start, wait_for):
    off = quiet.options(enable_task_events=False).remote()
    on = quiet.remote()
    pyray.get([off, on])
    _task(on.task_id().hex(), wait_for, "FINISHED")
    time.sleep(1.2)     # a batch later: still nothing of the other
    assert get_task(off.task_id().hex()) is None
    c = Counter.remote()
    quiet_call = c.incr.options(enable_task_events=False).remote()
    loud_call = c.incr.remote()
    pyray.get([quiet_call, loud_call])
    _task(loud_call.task_id().hex(), wait_for, "FINISHED")
    assert get_task(quiet_call.task_id().hex()) is None
    # an actor's option: neither its creation nor its calls
    hushed = Counter.options(enable_task_events=False).remote()
    hushed_call = hushed.incr.remote()
    pyray.get(hushed_call)
    marker = quiet.remote()
    pyray.get(marker)
    _task(marker.task_id().hex(), wait_for, "FINISHED")
    time.sleep(1.2)
    aid = hushed._actor_id.hex()
    assert list_tasks(filters=[("actor_id", "=", aid)]) == []
    assert get_task(hushed_call.task_id().hex()) is None


def _cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "pyray.scripts.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_the_cli_lists_gets_and_summarizes_from_another_process(ray_start, wait_for):
    from pyray._private.context import ctx
    gcs = ctx.core_worker.gcs_addr
    c = Counter.options(name="cli-counter").remote()
    pid = pyray.get(c.incr.remote())
    aid = c._actor_id.hex()
    out = _cli("list", "actors", "--filter", "name=cli-counter", "--format", "json",
               "--address", gcs)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["actor_id"], r["pid"], r["state"]) for r in rows] == [(aid, pid, "ALIVE")]
    table = _cli("list", "actors", "--address", gcs)
    assert table.returncode == 0 and "CLASS_NAME" in table.stdout and aid in table.stdout
    got = _cli("get", "actors", aid, "--address", gcs)
    assert got.returncode == 0 and f"pid: {pid}" in got.stdout
    missing = _cli("get", "actors", "cd" * 16, "--address", gcs)
    assert missing.returncode != 0 and "no actor with id" in missing.stderr
    bad = _cli("list", "tasks", "--filter", "colour=red", "--address", gcs)
    assert bad.returncode != 0 and "Supported filter columns" in bad.stderr
    pyray.get(quiet.remote())
    wait_for(lambda: any(t.name == "quiet" for t in list_tasks(limit=10_000)))
    s = _cli("summary", "tasks", "--address", gcs)
    assert s.returncode == 0 and "quiet" in s.stdout and "FINISHED" in s.stdout
    logs = _cli("logs", "--address", gcs)
    assert logs.returncode == 0 and "raylet.log" in logs.stdout
    tail = _cli("logs", "raylet.log", "--tail", "3", "--address", gcs)
    assert tail.returncode == 0 and len(tail.stdout.splitlines()) <= 3
    held = pyray.put(b"z" * (1 << 20))  # noqa: F841 - listed while held
    mem = _cli("memory", "--address", gcs)
    assert mem.returncode == 0 and held.hex() in mem.stdout
    pyray.kill(c)


def test_the_http_routes_answer_in_rays_shape(ray_start, wait_for):
    from pyray.util.state import data
    c = Counter.options(name="http-counter").remote()
    pyray.get(c.incr.remote())
    status, body = data.http_get("/api/v0/actors", {
        "filter_keys": ["name"], "filter_predicates": ["="], "filter_values": ["http-counter"],
        "detail": ["true"], "limit": ["10"]})
    assert status == 200 and body["result"] is True
    res = body["data"]["result"]
    assert res["num_after_truncation"] == 1 and res["result"][0]["actor_id"] == c._actor_id.hex()
    assert res["result"][0]["is_detached"] is False          # a detail column
    status, body = data.http_get("/api/v0/tasks", {"filter_keys": ["colour"],
                                                   "filter_predicates": ["="],
                                                   "filter_values": ["red"]})
    assert status == 400 and body["result"] is False and "Supported filter columns" in body["msg"]
    # the driver's own record only when asked for
    tasks = data.query("tasks", limit=10_000)["result"]
    assert all(t["type"] != "DRIVER_TASK" for t in tasks)
    drivers = data.query("tasks", [("type", "=", "DRIVER_TASK")])["result"]
    # (the dashboard is a driver too)
    assert pyray.get_runtime_context().get_job_id() in \
        [t["job_id"] for t in drivers if t["state"] == "RUNNING"]
    status, summary = data.http_get("/api/v0/actors/summarize")
    assert status == 200 and "Counter" in \
        summary["data"]["result"]["node_id_to_summary"]["cluster"]["summary"]
    pyray.kill(c)


@pytest.mark.skipif(importlib.util.find_spec("starlette") is None or
                    importlib.util.find_spec("uvicorn") is None,
                    reason="the dashboard needs starlette and uvicorn")
def test_the_dashboard_serves_the_state_routes(ray_start, wait_for):
    url = f"http://127.0.0.1:{DASHBOARD_PORT}"

    def get(path):
        try:
            with urllib.request.urlopen(url + path, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def up():
        try:
            return get("/api/version")[0] == 200
        except OSError:
            return False
    wait_for(up, timeout=20, what="the dashboard")
    c = Counter.options(name="dash-counter").remote()
    pyray.get(c.incr.remote())
    status, body = get("/api/v0/actors?filter_keys=name&filter_predicates=%3D"
                       "&filter_values=dash-counter&detail=true")
    assert status == 200 and body["result"] is True
    rows = body["data"]["result"]["result"]
    assert [(r["actor_id"], r["class_name"]) for r in rows] == [(c._actor_id.hex(), "Counter")]
    status, body = get("/api/v0/nodes")
    assert status == 200 and body["data"]["result"]["result"][0]["state"] == "ALIVE"
    status, body = get("/api/v0/tasks?filter_keys=colour&filter_predicates=%3D&filter_values=red")
    assert status == 400 and "Supported filter columns" in body["msg"]
    ref = quiet.remote()
    pyray.get(ref)
    _task(ref.task_id().hex(), wait_for, "FINISHED")
    status, trace = get("/api/v0/tasks/timeline")
    assert status == 200 and ref.task_id().hex() in {e["args"]["task_id"] for e in trace}
    pyray.kill(c)
