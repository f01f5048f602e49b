"""The memory monitor's decisions (pyray.raylet.memory_monitor), without
processes: which worker goes, when, and how memory is read."""
from __future__ import annotations

import os

from pyray._private.config import Config
from pyray.raylet import memory_monitor as mm

GiB = 1 << 30


def cand(n, granted_at, retriable=True, is_actor=False):
    return mm.Candidate(b"w%d" % n, 1000 + n, granted_at, retriable, is_actor)


def test_retriable_tasks_go_first_newest_first_actors_last():
    old, new = cand(1, 10), cand(2, 20)
    fixed = cand(3, 30, retriable=False)
    actor = cand(4, 40, retriable=False, is_actor=True)
    assert mm.pick_victim([old, fixed, new, actor]) is new
    assert mm.pick_victim([old, fixed, actor]) is old
    assert mm.pick_victim([fixed, actor]) is fixed
    assert mm.pick_victim([actor, cand(5, 5, retriable=False, is_actor=True)]) is actor
    assert mm.pick_victim([]) is None


def test_threshold():
    assert mm.over_threshold(96, 100, 0.95)
    assert not mm.over_threshold(95, 100, 0.95)
    assert not mm.over_threshold(100, 100, 1.0)       # 1.0: never
    assert not mm.over_threshold(5, 0, 0.5)


def test_decide_kills_one_at_a_time():
    a, b = cand(1, 1), cand(2, 2)
    assert mm.decide(50, 100, 0.9, [a, b], None, 0.0) is None       # below: nothing
    assert mm.decide(95, 100, 0.9, [a, b], None, 0.0) is b
    # b was killed and has not exited yet: nobody else for now
    assert mm.decide(95, 100, 0.9, [a, b], (b.worker_id, 0.0), 1.0) is None
    # b is gone and memory is still high: the next one
    assert mm.decide(95, 100, 0.9, [a], (b.worker_id, 0.0), 1.0) is a
    # b takes too long to exit: another one is picked, never b again
    assert mm.decide(95, 100, 0.9, [a, b], (b.worker_id, 0.0), mm.KILL_GRACE_S + 1) is a
    assert mm.decide(95, 100, 0.9, [], None, 0.0) is None


def test_meminfo_parsing_and_a_live_sample():
    text = b"MemTotal:       16000000 kB\nMemFree: 1 kB\nMemAvailable:    4000000 kB\n"
    assert mm.parse_meminfo(text) == (12000000 * 1024, 16000000 * 1024)
    assert mm.parse_meminfo(b"MemTotal: 5 kB\n") is None
    used, total = mm.node_memory()
    assert 0 < used < total


def test_message_names_node_and_threshold():
    text = mm.message("worker ID: ab, pid=7", 19 * GiB, 20 * GiB, 0.9, "10.0.0.1", "cd",
                      2 * GiB)
    assert "10.0.0.1" in text and "0.9" in text and "memory used=2.00GB" in text
    assert "19.00GB / 20.00GB" in text


def test_config_reads_pyray_and_ray_names(monkeypatch):
    for k in ("PYRAY_MEMORY_USAGE_THRESHOLD", "PYRAY_memory_usage_threshold",
              "RAY_memory_usage_threshold", "RAY_memory_monitor_refresh_ms",
              "PYRAY_MEMORY_MONITOR_REFRESH_MS"):
        monkeypatch.delenv(k, raising=False)
    c = Config.from_env()
    assert c.memory_usage_threshold == 0.95 and c.memory_monitor_refresh_ms == 250
    monkeypatch.setenv("RAY_memory_usage_threshold", "0.5")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    c = Config.from_env()
    assert c.memory_usage_threshold == 0.5 and c.memory_monitor_refresh_ms == 0
    monkeypatch.setenv("PYRAY_memory_usage_threshold", "0.6")
    assert Config.from_env().memory_usage_threshold == 0.6
    monkeypatch.setenv("PYRAY_MEMORY_USAGE_THRESHOLD", "0.7")
    assert Config.from_env().memory_usage_threshold == 0.7
    assert Config.from_env(memory_usage_threshold=0.8).memory_usage_threshold == 0.8
    assert os.environ["RAY_memory_usage_threshold"] == "0.5"
