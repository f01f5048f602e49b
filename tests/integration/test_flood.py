"""A flood of 100,000 tasks: every daemon (GCS, raylet, dashboard) stays
within its memory bound while the task records stay within theirs, and the
cluster keeps answering (docs/state.md, "Bounds")."""
from __future__ import annotations

import json
import socket
import time
import urllib.request
import warnings

import psutil
import pytest

import pyray
from pyray.util.state import list_tasks, summarize_tasks

pytestmark = pytest.mark.timeout(240)

RECORDS = 10_000
TASKS = 100_000
# resident memory each daemon may reach in this flood (idle: ~25-40 MB)
BOUND_MB = {"pyray.gcs.server": 120, "pyray.raylet.raylet": 100, "pyray.dashboard.server": 100}


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemons():
    """{module: [rss MB]} of the daemons this driver started."""
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = p.cmdline()
            mod = cmd[cmd.index("-m") + 1] if "-m" in cmd else None
            if mod in BOUND_MB:
                out.setdefault(mod, []).append(p.memory_info().rss / 2 ** 20)
        except (psutil.Error, IndexError):
            pass
    return out


@pyray.remote
def tiny(i):
    return i


def test_a_flood_of_tasks_keeps_every_daemon_within_its_bound():
    port = _port()
    pyray.init(num_cpus=2, include_dashboard=True, dashboard_port=port,
               _system_config={"task_events_max_num_task_in_gcs": RECORDS})
    try:
        peak = {}
        done = 0
        while done < TASKS:
            got = pyray.get([tiny.remote(i) for i in range(done, done + 5000)])
            assert got[-1] == done + 4999
            done += 5000
            if done % 20_000 == 0:
                for mod, rss in _daemons().items():
                    peak[mod] = max([peak.get(mod, 0.0)] + rss)
        assert set(peak) == set(BOUND_MB), peak
        for mod, mb in peak.items():
            assert mb <= BOUND_MB[mod], f"{mod} reached {mb:.0f} MB (bound {BOUND_MB[mod]} MB)"
        # the records stayed within their bound, and what went is counted
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            rows = list_tasks(limit=TASKS)
        assert 0 < len(rows) <= RECORDS
        assert any("dropped" in str(w.message) for w in seen)
        # the workers' last events arrive within about a second of their send
        deadline = time.monotonic() + 20
        while True:
            summary = summarize_tasks()["cluster"]
            assert summary["total_tasks"] <= RECORDS
            if summary["summary"]["tiny"]["state_counts"].get("FINISHED", 0) > 0:
                break
            assert time.monotonic() < deadline, summary
            time.sleep(0.5)
        # the cluster still works and the dashboard still answers
        assert pyray.get(tiny.remote(-1)) == -1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/cluster_status",
                                    timeout=10) as r:
            assert r.status == 200 and json.loads(r.read())
    finally:
        pyray.shutdown()
