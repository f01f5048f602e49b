"""The GCS's persistence layer (pyray.gcs.storage) and what a GCS started on
a stored file recovers (pyray.gcs.server.GcsServer)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from pyray._private.config import Config
from pyray._private.protocol import Op
from pyray.gcs.actor_manager import ALIVE
from pyray.gcs.server import GcsServer
from pyray.gcs.storage import GcsStorage

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_rows_round_trip_and_only_flushed_rows_are_kept(tmp_path):
    path = str(tmp_path / "gcs" / "state.db")
    s = GcsStorage(path)
    s.put("kv", "a", b"1")
    s.put("kv", b"\x00b", {"nested": [1, 2]})
    s.put("actor", b"id", {"state": "ALIVE"})
    assert s.flush() == 3
    s.delete("kv", "a")
    box = {"n": 1}
    s.mark("meta", "counter", lambda: box["n"])
    box["n"] = 7                     # the row is read at flush time
    assert s.flush() == 2
    s.put("kv", "unflushed", 1)      # never flushed: not kept
    s.db.close()
    s.db = None

    loaded = GcsStorage(path).load()
    assert loaded["kv"] == {b"\x00b": {"nested": [1, 2]}}
    assert loaded["actor"] == {b"id": {"state": "ALIVE"}}
    assert loaded["meta"] == {"counter": 7}
    assert loaded["node"] == {} and loaded["pg"] == {}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_without_a_path_nothing_is_kept():
    s = GcsStorage(None)
    s.put("kv", "a", 1)
    assert not s.enabled and s.flush() == 0
    assert s.load()["kv"] == {}


def test_a_row_that_cannot_be_read_is_skipped(tmp_path):
    path = str(tmp_path / "state.db")
    s = GcsStorage(path)
    s.put("kv", "good", 1)
    s.flush()
    s.db.execute("INSERT INTO rows (tbl, key, value) VALUES ('kv', ?, ?)",
                 (b"not a pickle", b"\x80\x05garbage"))
    s.close()
    assert GcsStorage(path).load()["kv"] == {"good": 1}


def test_a_row_that_cannot_be_stored_does_not_lose_the_others(tmp_path):
    s = GcsStorage(str(tmp_path / "state.db"))
    s.put("kv", "good", 1)
    s.put("kv", "bad", lambda: None)          # a lambda cannot be pickled
    assert s.flush() == 1
    assert s.load()["kv"] == {"good": 1}
    s.close()


def test_flushed_rows_survive_a_sigkill(tmp_path):
    path = str(tmp_path / "state.db")
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from pyray.gcs.storage import GcsStorage
        s = GcsStorage({path!r})
        for i in range(200):
            s.put("actor", i.to_bytes(4, "little"), {{"i": i}})
            if i % 10 == 9:
                s.flush()
        print("flushed", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "flushed"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    rows = GcsStorage(path).load()["actor"]
    assert len(rows) == 200
    assert rows[(199).to_bytes(4, "little")] == {"i": 199}


# ---------------------------------------------------------------------------
# a GCS started on a stored file
# ---------------------------------------------------------------------------
def _request(gcs, op, *args):
    """Handles one request the way the server's loop does; returns the
    payload it answers with."""
    gcs.handle((op, 1, "ipc:///nonexistent/reply") + args)
    addr, msg, _ = gcs.out.held[-1]
    gcs.flush()
    assert addr == "ipc:///nonexistent/reply" and msg[0] == Op.RESPONSE
    return msg[3]


@pytest.fixture
def gcs_pair(tmp_path):
    made = []

    def start():
        g = GcsServer(f"ipc://{tmp_path}/gcs-{len(made)}", Config(), str(tmp_path / "state.db"))
        made.append(g)
        return g

    yield start
    for g in made:
        g.out.close()
        g.inbox.close(0)
        g.ctx.term()
        g.storage.close()


def test_a_gcs_started_on_the_file_recovers_its_tables(gcs_pair):
    first = gcs_pair()
    node_id = b"n" * 16
    node = {"node_id": node_id, "raylet_addr": "ipc:///nonexistent/raylet",
            "resources": {"CPU": 2.0, "b": 1.0}, "session_dir": "/nonexistent"}
    assert _request(first, Op.REGISTER_NODE, node) == {"incarnation": first.incarnation}
    job = _request(first, Op.REGISTER_JOB, {"driver_addr": "ipc:///nonexistent/driver"})
    assert _request(first, Op.KV_PUT, "fn:1", b"code", True) is True
    spec = {"actor_id": b"a" * 16, "name": "keeper", "namespace": "ns", "shape": {"CPU": 1.0},
            "meta": {"class_name": "Keeper"}, "job_id": job, "driver_addr": "d",
            "options": {"max_restarts": 0}, "detached": False, "creation_task_id": b"t",
            "class_id": b"c", "class_bytes": b"", "ctor_args": (b"", []), "job_config": None}
    assert _request(first, Op.REGISTER_ACTOR, spec)["actor_id"] == b"a" * 16
    # the creation went out to the node's raylet; it answers with a worker
    # and the creation task's reply
    am = first.actors
    [rid] = am.lease_reqs
    am.on_lease_granted((Op.LEASE_GRANTED, rid, 77, b"w" * 16, "ipc:///t", "ipc:///c", [], 4242,
                         None))
    am.on_task_replies((Op.TASK_REPLIES, b"w" * 16, [(b"t", [], [], False)]))
    assert am.actors[b"a" * 16].state == ALIVE
    assert _request(first, Op.PG_CREATE, {"pg_id": b"p" * 16, "bundles": [{"b": 1.0}],
                                           "strategy": "PACK", "name": "grp",
                                           "namespace": "ns", "creator": None}) is True
    first.pgs.on_response(next(iter(first.pgs.reqs)), True, {"ok": True})
    assert first.pgs.table[b"p" * 16].state == "CREATED"
    first.flush()

    second = gcs_pair()
    assert second.incarnation != first.incarnation
    [n] = _request(second, Op.GET_NODES)
    assert n["node_id"] == node_id and n["alive"] and n["resources"]["b"] == 1.0
    assert _request(second, Op.KV_GET, "fn:1") == b"code"
    assert _request(second, Op.GET_NAMED_ACTOR, "keeper", "ns")["actor_id"] == b"a" * 16
    e = second.actors.actors[b"a" * 16]
    assert e.state == ALIVE and e.worker[3] == 4242
    assert second.actors.by_worker[b"w" * 16] == b"a" * 16     # its death would be noticed
    row = _request(second, Op.PG_TABLE, b"p" * 16)
    assert row["state"] == "CREATED" and row["bundles_to_node_id"] == {0: node_id.hex()}
    assert _request(second, Op.PG_GET_NAMED, "grp", "ns")["pg_id"] == b"p" * 16
    # a second registration of the same actor id answers the same (a resend)
    assert _request(second, Op.REGISTER_ACTOR, spec)["actor_id"] == b"a" * 16
    assert len(second.actors.actors) == 1
    # job ids go on from where they were
    assert _request(second, Op.REGISTER_JOB, {}) == (int.from_bytes(job, "little") + 1
                                                     ).to_bytes(4, "little")
    # a heartbeat is answered with the run of the GCS it reached
    assert _request(second, Op.NODE_HEARTBEAT, node_id) == second.incarnation


def test_a_node_declared_dead_is_refused_when_it_registers_again(gcs_pair):
    gcs = gcs_pair()
    node = {"node_id": b"d" * 16, "raylet_addr": "ipc:///nonexistent/raylet2",
            "resources": {"CPU": 1.0}}
    _request(gcs, Op.REGISTER_NODE, node)
    gcs.handle((Op.UNREGISTER_NODE, b"d" * 16))
    gcs.handle((Op.REGISTER_NODE, 2, "ipc:///nonexistent/reply", node))
    sent = [(addr, msg) for addr, msg, _ in gcs.out.held]
    assert ("ipc:///nonexistent/raylet2", (Op.NODE_DEAD, b"d" * 16)) in sent
    assert sent[-1][1][:3] == (Op.RESPONSE, 2, False)
    # malformed heartbeats are answered with an error, not a crash
    gcs.handle((Op.NODE_HEARTBEAT, 3, "ipc:///nonexistent/reply", ["unhashable"]))
    assert gcs.out.held[-1][1][:3] == (Op.RESPONSE, 3, False)
    gcs.flush()
