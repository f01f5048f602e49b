"""get_runtime_context().is_canceled(): a running task or actor call learns
that cancel() was called on it, and stops."""
from __future__ import annotations

import os
import time

import pytest

import pyray

pytestmark = pytest.mark.timeout(90)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20}

T = 30


def _wait_file(path, timeout=T):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pyray.remote
class Poller:
    def __init__(self):
        self.stopped = None

    def poll(self, started, limit):
        """Polls is_canceled() until it is True (-> "stopped") or `limit`
        seconds pass (-> "ran out")."""
        ctx = pyray.get_runtime_context()
        seen_before = ctx.is_canceled()
        open(started, "w").close()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if ctx.is_canceled():
                self.stopped = ("stopped", seen_before)
                return "stopped"
            time.sleep(0.01)
        self.stopped = ("ran out", seen_before)
        return "ran out"

    def result(self):
        return self.stopped

    def canceled_now(self):
        return pyray.get_runtime_context().is_canceled()


@pyray.remote
class Notes:
    def __init__(self):
        self.notes = []

    def add(self, note):
        self.notes.append(note)

    def get(self):
        return self.notes


@pyray.remote
class AsyncActor:
    async def check(self):
        try:
            pyray.get_runtime_context().is_canceled()
        except RuntimeError as err:
            return f"RuntimeError: {err}"
        return "no error"


@pyray.remote
def interrupted(notes, started):
    ctx = pyray.get_runtime_context()
    before = ctx.is_canceled()
    open(started, "w").close()
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        pyray.get(notes.add.remote((before, ctx.is_canceled())), timeout=T)
        raise
    return "slept"


@pytest.mark.parametrize("options", [{}, {"max_concurrency": 2}],
                         ids=["sync", "threaded"])
def test_a_cancelled_actor_call_sees_is_canceled_and_stops(ray_start, tmp_path, options):
    actor = Poller.options(**options).remote()
    started = str(tmp_path / "started")
    ref = actor.poll.remote(started, 60)
    _wait_file(started)
    t0 = time.monotonic()
    pyray.cancel(ref)
    with pytest.raises(pyray.exceptions.TaskCancelledError):
        pyray.get(ref, timeout=T)
    assert time.monotonic() - t0 < 10
    # the call saw False before the cancel and True after it, and returned
    assert pyray.get(actor.result.remote(), timeout=T) == ("stopped", False)
    # the next call of the same actor is not cancelled
    assert pyray.get(actor.canceled_now.remote(), timeout=T) is False


def test_a_call_that_is_not_cancelled_runs_out(ray_start, tmp_path):
    actor = Poller.remote()
    assert pyray.get(actor.poll.remote(str(tmp_path / "s"), 0.3), timeout=T) == "ran out"
    assert pyray.get(actor.result.remote(), timeout=T) == ("ran out", False)


def test_an_interrupted_task_sees_is_canceled(ray_start, tmp_path):
    notes = Notes.remote()
    started = str(tmp_path / "started")
    ref = interrupted.remote(notes, started)
    _wait_file(started)
    pyray.cancel(ref)
    with pytest.raises(pyray.exceptions.TaskCancelledError):
        pyray.get(ref, timeout=T)
    # the caller's error may come before the task's handler has written its note
    deadline = time.monotonic() + T
    while not pyray.get(notes.get.remote(), timeout=T) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pyray.get(notes.get.remote(), timeout=T) == [(False, True)]


def test_is_canceled_outside_a_sync_call_is_refused(ray_start):
    with pytest.raises(RuntimeError, match="not in the driver"):
        pyray.get_runtime_context().is_canceled()
    answer = pyray.get(AsyncActor.remote().check.remote(), timeout=T)
    assert answer.startswith("RuntimeError") and "async actor" in answer
