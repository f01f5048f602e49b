"""Actor failures: a SIGKILLed actor process with and without max_restarts,
max_task_retries, a constructor that raises, pyray.kill(no_restart=),
exit_actor(), and an actor going out of scope -- with the resources each
one gives back."""
from __future__ import annotations

import os
import signal

import pytest

import pyray
from pyray.exceptions import ActorDiedError, RayActorError, RayTaskError

from actorlib import Counter, process_gone, wait_path

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20,
                 "resources": {"faults_res": 1}}

GET_TIMEOUT = 30


def _res():
    return pyray.available_resources().get("faults_res", 0.0)


def _wait_res(wait_for, want, what):
    """Waits until faults_res available is `want`; says what it saw if not."""
    seen = []
    try:
        wait_for(lambda: seen.append(_res()) or seen[-1] == want, what=what)
    except AssertionError:
        raise AssertionError(f"waiting for {what}: faults_res available {seen[-5:]}, "
                             f"wanted {want}; actors {pyray.util.list_named_actors(True)}, "
                             f"state {[(a['class_name'], a['state']) for a in _actors()]}"
                             ) from None


def _all_free(wait_for):
    """Waits until every faults_res is free and returns the amount.  Not the
    amount available at the start: the GCS's view lags the raylet's, so an
    earlier test's actor may have taken faults_res and not yet given it back
    (its test saw the old value), and a later release would then look like
    this test's actor never taking it."""
    total = pyray.cluster_resources()["faults_res"]
    _wait_res(wait_for, total, "faults_res free before the test")
    return total


def _actors():
    from pyray._private.protocol import Op
    from pyray._private.api import _gcs_call
    try:
        return _gcs_call(Op.LIST_ACTORS)
    except Exception:  # noqa: BLE001 - only for the message above
        return []


def _hold(actor, tmp_path, tag="a"):
    """Starts a call that stays in flight until the test releases it."""
    started, release = tmp_path / f"started-{tag}", tmp_path / f"release-{tag}"
    ref = actor.hold.remote(str(started), str(release))
    wait_path(started, timeout=GET_TIMEOUT)
    return ref, release


def _sigkill(pid, wait_for):
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), what=f"actor process {pid} to exit")


@pyray.remote(num_cpus=0)
class BadInit:
    def __init__(self, code):
        raise ValueError(f"bad config {code}")

    def ping(self):
        return "pong"


# ---------------------------------------------------------------------------
# the actor's process dies
# ---------------------------------------------------------------------------
def test_sigkill_fails_pending_and_later_calls(ray_start, tmp_path, wait_for):
    c = Counter.remote(5)
    pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    pending, release = _hold(c, tmp_path)
    _sigkill(pid, wait_for)
    release.touch()
    with pytest.raises(RayActorError) as info:
        pyray.get(pending, timeout=GET_TIMEOUT)
    err = info.value
    assert isinstance(err, ActorDiedError)
    assert err.actor_id == c._actor_id
    assert "died" in str(err) and c._actor_id.hex() in str(err)
    # the actor is dead for good: later calls fail at once with the same cause
    with pytest.raises(RayActorError, match="died"):
        pyray.get(c.incr.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(RayActorError):
        pyray.get([c.get.remote() for _ in range(3)], timeout=GET_TIMEOUT)


def test_sigkill_with_max_restarts_reruns_the_constructor(ray_start, tmp_path, wait_for):
    c = Counter.options(max_restarts=1).remote(10)
    assert pyray.get(c.incr.remote(), timeout=GET_TIMEOUT) == 11
    assert pyray.get(c.reconstructed.remote(), timeout=GET_TIMEOUT) is False
    pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    pending, release = _hold(c, tmp_path)
    _sigkill(pid, wait_for)
    release.touch()
    # the call in flight is lost (max_task_retries=0) ...
    with pytest.raises(RayActorError):
        pyray.get(pending, timeout=GET_TIMEOUT)
    # ... but the actor comes back: a new process, its constructor re-run
    new_pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    assert new_pid != pid
    assert pyray.get(c.reconstructed.remote(), timeout=GET_TIMEOUT) is True
    assert pyray.get([c.incr.remote() for _ in range(3)], timeout=GET_TIMEOUT) == [11, 12, 13]
    # one restart only: the second death is final
    _sigkill(new_pid, wait_for)
    with pytest.raises(RayActorError):
        pyray.get(c.incr.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(RayActorError):
        pyray.get(c.incr.remote(), timeout=GET_TIMEOUT)


def test_calls_submitted_while_restarting_wait_for_the_new_process(ray_start, tmp_path,
                                                                     wait_for):
    c = Counter.options(max_restarts=-1).remote()
    for round_ in range(3):
        pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
        pending, release = _hold(c, tmp_path, tag=str(round_))
        _sigkill(pid, wait_for)
        release.touch()
        with pytest.raises(RayActorError):
            pyray.get(pending, timeout=GET_TIMEOUT)
        # submitted at once after the caller learned of the death: queued
        refs = [c.incr.remote() for _ in range(20)]
        assert pyray.get(refs, timeout=GET_TIMEOUT) == list(range(1, 21))


def test_max_task_retries_resends_calls_in_flight(ray_start, tmp_path, wait_for):
    c = Counter.options(max_restarts=1, max_task_retries=1).remote(7)
    pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    pending, release = _hold(c, tmp_path)
    later = [c.incr.remote() for _ in range(5)]    # queued behind the held call
    _sigkill(pid, wait_for)
    release.touch()
    # the held call ran again on the restarted actor, then the queued ones
    new_pid, value = pyray.get(pending, timeout=GET_TIMEOUT)
    assert new_pid != pid and value == 7
    assert pyray.get(later, timeout=GET_TIMEOUT) == [8, 9, 10, 11, 12]


def test_method_max_task_retries_option_overrides_the_actor(ray_start, tmp_path, wait_for):
    c = Counter.options(max_restarts=1).remote()
    pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    started, release = tmp_path / "started", tmp_path / "release"
    pending = c.hold.options(max_task_retries=-1).remote(str(started), str(release))
    wait_path(started, timeout=GET_TIMEOUT)
    _sigkill(pid, wait_for)
    release.touch()
    new_pid, _ = pyray.get(pending, timeout=GET_TIMEOUT)
    assert new_pid != pid


# ---------------------------------------------------------------------------
# the constructor raises
# ---------------------------------------------------------------------------
def test_constructor_error_fails_every_call_with_the_cause(ray_start, wait_for):
    before = _all_free(wait_for)
    a = BadInit.options(resources={"faults_res": 1}, max_restarts=3).remote(42)
    for ref in (a.ping.remote(), a.ping.remote()):
        with pytest.raises(RayActorError) as info:
            pyray.get(ref, timeout=GET_TIMEOUT)
        err = info.value
        assert "bad config 42" in str(err)
        assert isinstance(err.cause, ValueError)
        assert isinstance(err.cause, RayTaskError)       # with the remote traceback
        assert "bad config 42" in str(err.cause)
    # a failed constructor is not retried, and the actor's resources come back
    _wait_res(wait_for, before, "faults_res given back")
    with pytest.raises(RayActorError, match="bad config 42"):
        pyray.get(a.ping.remote(), timeout=GET_TIMEOUT)


# ---------------------------------------------------------------------------
# kill, exit_actor, out of scope
# ---------------------------------------------------------------------------
def test_kill_frees_the_process_and_resources(ray_start, wait_for):
    before = _all_free(wait_for)
    c = Counter.options(resources={"faults_res": 1}, max_restarts=2).remote()
    pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    _wait_res(wait_for, before - 1, "faults_res held by the actor")
    pyray.kill(c)                  # no_restart=True by default: max_restarts is ignored
    with pytest.raises(RayActorError):
        pyray.get(c.incr.remote(), timeout=GET_TIMEOUT)
    wait_for(lambda: process_gone(pid), what="the killed actor's process to exit")
    _wait_res(wait_for, before, "faults_res given back")
    # killing a dead actor again is harmless
    pyray.kill(c)


def test_kill_with_no_restart_false_restarts_the_actor(ray_start, wait_for):
    c = Counter.options(max_restarts=1).remote(3)
    pyray.get(c.incr.remote(), timeout=GET_TIMEOUT)
    pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    pyray.kill(c, no_restart=False)
    wait_for(lambda: process_gone(pid), what="the killed actor's process to exit")

    def restarted():
        try:
            return pyray.get(c.pid.remote(), timeout=GET_TIMEOUT) != pid
        except RayActorError:       # a call that raced with the kill
            return False
    wait_for(restarted, timeout=GET_TIMEOUT, what="the actor to restart")
    assert pyray.get(c.get.remote(), timeout=GET_TIMEOUT) == 3     # constructor re-ran
    pyray.kill(c, no_restart=True)
    with pytest.raises(RayActorError):
        pyray.get(c.get.remote(), timeout=GET_TIMEOUT)


def test_kill_before_the_actor_started(ray_start):
    @pyray.remote(num_cpus=0)
    class Slow:
        def __init__(self):
            import time
            time.sleep(0.3)

        def ping(self):
            return "pong"

    s = Slow.remote()
    ref = s.ping.remote()
    pyray.kill(s)
    with pytest.raises(RayActorError):
        pyray.get(ref, timeout=GET_TIMEOUT)


def test_exit_actor_stops_it_for_good(ray_start, wait_for):
    before = _all_free(wait_for)
    c = Counter.options(resources={"faults_res": 1}, max_restarts=2).remote()
    assert pyray.get(c.incr.remote(), timeout=GET_TIMEOUT) == 1
    pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    with pytest.raises(RayActorError, match="exit"):
        pyray.get(c.exit.remote(), timeout=GET_TIMEOUT)
    # an intentional exit is not a failure: no restart despite max_restarts
    with pytest.raises(RayActorError):
        pyray.get(c.incr.remote(), timeout=GET_TIMEOUT)
    wait_for(lambda: process_gone(pid), what="the exited actor's process to exit")
    _wait_res(wait_for, before, "faults_res given back")


def test_calls_sent_before_exit_actor_still_run(ray_start):
    c = Counter.remote()
    refs = [c.incr.remote() for _ in range(50)]
    bye = c.exit.remote()
    assert pyray.get(refs, timeout=GET_TIMEOUT) == list(range(1, 51))
    with pytest.raises(RayActorError):
        pyray.get(bye, timeout=GET_TIMEOUT)


def test_out_of_scope_actor_is_stopped_and_its_resources_freed(ray_start, wait_for):
    before = _all_free(wait_for)
    c = Counter.options(resources={"faults_res": 1}).remote()
    refs = [c.incr.remote() for _ in range(10)]
    pid = pyray.get(c.pid.remote(), timeout=GET_TIMEOUT)
    _wait_res(wait_for, before - 1, "faults_res held by the actor")
    del c
    # calls sent before the last handle went still complete
    assert pyray.get(refs, timeout=GET_TIMEOUT) == list(range(1, 11))
    wait_for(lambda: process_gone(pid), what="the out-of-scope actor's process to exit")
    _wait_res(wait_for, before, "faults_res given back")


@pyray.remote
def use_counter(counter, n):
    return pyray.get([counter.incr.remote() for _ in range(n)])[-1]


def test_handle_held_by_a_task_keeps_the_actor_alive(ray_start):
    c = Counter.remote()
    pyray.get(c.incr.remote(), timeout=GET_TIMEOUT)
    ref = use_counter.remote(c, 5)
    del c       # the task still holds a handle
    assert pyray.get(ref, timeout=GET_TIMEOUT) == 6


# ---------------------------------------------------------------------------
# the checkpoint example of docs/fault_tolerance.md
# ---------------------------------------------------------------------------
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "actor_checkpoint.py")
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "fault_tolerance.md")


def _doc_blocks(lang):
    with open(DOC) as f:
        text = f.read()
    return [b.split("```", 1)[0] for b in text.split(f"```{lang}\n")[1:]]


def test_checkpoint_example_prints_what_the_doc_says(driver):
    with open(EXAMPLE) as f:
        d = driver(f.read())
    rc = d.wait(GET_TIMEOUT)
    assert rc == 0, f"the example failed:\n{d.text()}\n{d.text('stderr')}"
    expected = _doc_blocks("text")[0].splitlines()
    assert expected == ["before the crash: balance=60 restarted=False",
                        "after the restart: balance=150 restarted=True new_process=True"]
    assert d.text().splitlines() == expected


def test_fault_tolerance_doc_shows_the_example_as_it_is():
    with open(EXAMPLE) as f:
        source = f.read()
    shown = [b for b in _doc_blocks("python") if "class Account" in b]
    assert len(shown) == 1 and shown[0] in source, \
        "docs/fault_tolerance.md shows an Account class that differs from the example's"
