"""Task failures as the driver sees them: RayTaskError that is also the
user's exception type, timeouts, crashed workers and retries, cancellation."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import pyray
from tasklib import identity, wait_for_file
from pyray import exceptions
from pyray.exceptions import (GetTimeoutError, RayTaskError, TaskCancelledError,
                              WorkerCrashedError)

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20}


class CustomError(Exception):
    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


@pyray.remote
def raise_value_error(msg):
    raise ValueError(msg)


@pyray.remote
def raise_custom(msg, code):
    raise CustomError(msg, code=code)


@pyray.remote
def mark_and_wait(started, release, timeout=30):
    open(started, "w").close()
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.01)
    return "finished"


def _attempts(path):
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


@pyray.remote
def crash(counter_path):
    with open(counter_path, "a") as f:
        f.write("attempt\n")
    os.kill(os.getpid(), signal.SIGKILL)


@pyray.remote
def flaky(counter_path, failures, exc_type=ValueError):
    with open(counter_path, "a") as f:
        f.write("attempt\n")
    if _attempts(counter_path) <= failures:
        raise exc_type(f"failure {_attempts(counter_path)}")
    return "ok"


# ---------------------------------------------------------------------------
# exceptions raised by tasks
# ---------------------------------------------------------------------------
def test_task_exception_is_ray_task_error_and_user_type(ray_start):
    ref = raise_value_error.remote("bad-value-1234")
    with pytest.raises(ValueError) as info:
        pyray.get(ref)
    err = info.value
    assert isinstance(err, RayTaskError)
    assert isinstance(err, ValueError)
    text = str(err)
    assert "bad-value-1234" in text
    assert "Traceback" in text
    assert "raise_value_error" in text
    assert "raise ValueError(msg)" in text        # the remote source line


def test_except_clause_with_user_type(ray_start):
    try:
        pyray.get(raise_value_error.remote("caught"))
    except ValueError as e:
        assert "caught" in str(e)
    else:
        pytest.fail("no exception raised")

    try:
        pyray.get(raise_value_error.remote("caught-again"))
    except RayTaskError as e:
        assert "caught-again" in str(e)


def test_custom_exception_type_and_attributes(ray_start):
    with pytest.raises(CustomError) as info:
        pyray.get(raise_custom.remote("custom-msg", 17))
    assert isinstance(info.value, RayTaskError)
    assert info.value.code == 17
    assert "custom-msg" in str(info.value)


def test_exception_raised_again_on_every_get(ray_start):
    ref = raise_value_error.remote("twice")
    for _ in range(2):
        with pytest.raises(ValueError):
            pyray.get(ref)


def test_exception_in_list_get(ray_start):
    refs = [identity.remote(1), raise_value_error.remote("in-list"), identity.remote(3)]
    with pytest.raises(ValueError, match="in-list"):
        pyray.get(refs)
    assert pyray.get(refs[0]) == 1 and pyray.get(refs[2]) == 3


def test_failed_dependency_propagates(ray_start):
    bad = raise_value_error.remote("upstream-failure")
    downstream = identity.remote(bad)
    with pytest.raises(ValueError, match="upstream-failure"):
        pyray.get(downstream)


def test_nested_task_failure_propagates(ray_start):
    @pyray.remote
    def outer():
        return pyray.get(raise_value_error.remote("inner-failure"))

    with pytest.raises(ValueError, match="inner-failure"):
        pyray.get(outer.remote())


def test_unpicklable_return_value_is_an_error(ray_start):
    @pyray.remote
    def returns_lock():
        return threading.Lock()

    with pytest.raises(exceptions.RayError):
        pyray.get(returns_lock.remote(), timeout=30)
    assert pyray.get(identity.remote(5)) == 5


def test_one_failure_among_a_hundred_tasks_loses_nothing(ray_start):
    refs = [identity.remote(i) for i in range(50)]
    bad = raise_value_error.remote("one-bad-apple")
    refs += [identity.remote(i) for i in range(50, 100)]
    with pytest.raises(ValueError, match="one-bad-apple"):
        pyray.get(bad)
    assert pyray.get(refs, timeout=30) == list(range(100))


def test_exception_names_importable():
    for name in ("RayError", "RayTaskError", "RayActorError", "GetTimeoutError",
                 "WorkerCrashedError", "TaskCancelledError", "ObjectLostError",
                 "ObjectStoreFullError", "RaySystemError"):
        cls = getattr(exceptions, name)
        assert issubclass(cls, exceptions.RayError), name
    assert issubclass(GetTimeoutError, TimeoutError)
    assert issubclass(exceptions.ObjectStoreFullError, MemoryError)


# ---------------------------------------------------------------------------
# timeouts
# ---------------------------------------------------------------------------
def test_get_timeout_error(ray_start, release):
    flag = release
    ref = wait_for_file.remote(str(flag), "eventually")
    with pytest.raises(GetTimeoutError) as info:
        pyray.get(ref, timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, exceptions.RayError)
    flag.touch()
    assert pyray.get(ref, timeout=30) == "eventually"


# ---------------------------------------------------------------------------
# crashed workers and retries
# ---------------------------------------------------------------------------
def test_worker_crash_retried_then_worker_crashed_error(ray_start, tmp_path):
    counter = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError):
        pyray.get(crash.options(max_retries=2).remote(str(counter)), timeout=45)
    assert _attempts(counter) == 3          # the first run and two retries
    assert pyray.get(identity.remote("still-works")) == "still-works"


def test_worker_crash_not_retried_with_max_retries_zero(ray_start, tmp_path):
    counter = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError):
        pyray.get(crash.options(max_retries=0).remote(str(counter)), timeout=45)
    assert _attempts(counter) == 1


def test_worker_crash_default_retries(ray_start, tmp_path):
    counter = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError):
        pyray.get(crash.remote(str(counter)), timeout=45)
    assert _attempts(counter) == 4          # Ray's default max_retries is 3


def test_application_errors_not_retried_by_default(ray_start, tmp_path):
    counter = tmp_path / "attempts"
    with pytest.raises(ValueError):
        pyray.get(flaky.options(max_retries=3).remote(str(counter), 1))
    assert _attempts(counter) == 1


def test_retry_exceptions_true(ray_start, tmp_path):
    counter = tmp_path / "attempts"
    ref = flaky.options(max_retries=3, retry_exceptions=True).remote(str(counter), 2)
    assert pyray.get(ref, timeout=30) == "ok"
    assert _attempts(counter) == 3


def test_retry_exceptions_list(ray_start, tmp_path):
    counter = tmp_path / "retried"
    ref = flaky.options(max_retries=3, retry_exceptions=[KeyError]).remote(
        str(counter), 1, KeyError)
    assert pyray.get(ref, timeout=30) == "ok"
    assert _attempts(counter) == 2

    counter = tmp_path / "not-retried"
    ref = flaky.options(max_retries=3, retry_exceptions=[KeyError]).remote(
        str(counter), 1, ValueError)
    with pytest.raises(ValueError):
        pyray.get(ref, timeout=30)
    assert _attempts(counter) == 1


def test_retry_exceptions_exhausted(ray_start, tmp_path):
    counter = tmp_path / "attempts"
    ref = flaky.options(max_retries=1, retry_exceptions=True).remote(str(counter), 5)
    with pytest.raises(ValueError, match="failure 2"):
        pyray.get(ref, timeout=30)
    assert _attempts(counter) == 2


# ---------------------------------------------------------------------------
# cancel
# ---------------------------------------------------------------------------
def test_cancel_running_task(ray_start, tmp_path, wait_for, release):
    started = tmp_path / "started"
    ref = mark_and_wait.remote(str(started), str(release))
    wait_for(started.exists, timeout=30, what="the task to start")
    pyray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        pyray.get(ref, timeout=30)
    assert pyray.get(identity.remote(1)) == 1


def test_cancel_pending_task(ray_start, tmp_path, wait_for, release):
    started = tmp_path / "started"
    blocker = mark_and_wait.remote(str(started), str(release))
    wait_for(started.exists, timeout=30, what="the blocker to start")
    # needs both CPUs: waits for the blocker
    queued = identity.options(num_cpus=2).remote("never")
    pyray.cancel(queued)
    with pytest.raises(TaskCancelledError):
        pyray.get(queued, timeout=30)
    release.touch()
    assert pyray.get(blocker, timeout=30) == "finished"


def test_force_cancel_kills_the_worker(ray_start, tmp_path, wait_for, release):
    started = tmp_path / "started"
    ref = mark_and_wait.options(max_retries=3).remote(str(started), str(release))
    wait_for(started.exists, timeout=30, what="the task to start")
    pyray.cancel(ref, force=True)
    with pytest.raises((TaskCancelledError, WorkerCrashedError)):
        pyray.get(ref, timeout=30)
    assert pyray.get(identity.remote(2)) == 2


def test_cancel_finished_task_is_a_noop(ray_start):
    ref = identity.remote("done")
    assert pyray.get(ref) == "done"
    pyray.cancel(ref)
    assert pyray.get(ref) == "done"


def test_cancel_rejects_non_ref(ray_start):
    with pytest.raises(TypeError):
        pyray.cancel("not a ref")
