"""A thread blocked in get() reads the direct channel its reply comes on
itself, instead of waiting for the I/O thread to wake it
(CoreWorker._read_replies).  These check what that must not break: several
threads waiting on one channel, replies that nobody waits for, timeouts, a
worker that dies while the caller reads, and replies that arrive while the
caller is between two reads."""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

import pyray
from pyray.exceptions import GetTimeoutError, RayActorError, WorkerCrashedError

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20}
GET_TIMEOUT = 30


@pyray.remote(num_cpus=0)
class Echo:
    def __init__(self):
        self.calls = 0

    def echo(self, x, delay=0.0):
        self.calls += 1
        if delay:
            time.sleep(delay)
        return x

    def pid(self):
        return os.getpid()


@pyray.remote(max_retries=0)
def echo_task(x, delay=0.0):
    if delay:
        time.sleep(delay)
    return x


@pyray.remote(max_retries=0)
def write_pid_then_sleep(path, seconds):
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    time.sleep(seconds)


def test_sync_calls_in_a_row_keep_order_and_values(ray_start):
    a = Echo.remote()
    assert [pyray.get(a.echo.remote(i), timeout=GET_TIMEOUT) for i in range(2000)] == \
        list(range(2000))
    assert [pyray.get(echo_task.remote(i), timeout=GET_TIMEOUT) for i in range(300)] == \
        list(range(300))


def test_threads_waiting_on_one_actor_all_get_their_own_result(ray_start):
    a = Echo.remote()
    errors, results = [], {}

    def caller(t):
        try:
            got = [pyray.get(a.echo.remote((t, i), 0.001 * (i % 3)), timeout=GET_TIMEOUT)
                   for i in range(150)]
            results[t] = got
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(GET_TIMEOUT)
    assert not errors
    assert results == {t: [(t, i) for i in range(150)] for t in range(6)}


def test_replies_nobody_waits_for_are_still_read(ray_start):
    a = Echo.remote()
    pyray.get(a.echo.remote(0), timeout=GET_TIMEOUT)      # the caller has read the channel
    # replies that come while no get() is running: futures, asyncio, callbacks
    fut = a.echo.remote("future", 0.05).future()
    assert fut.result(timeout=GET_TIMEOUT) == "future"

    async def main():
        return await a.echo.remote("awaited", 0.05)
    assert asyncio.run(main()) == "awaited"
    refs = [a.echo.remote(i) for i in range(50)]
    ready, _ = pyray.wait(refs, num_returns=50, timeout=GET_TIMEOUT)
    assert len(ready) == 50
    # the reply to an earlier call arrives while the caller waits for a later one
    early = a.echo.remote("early")
    assert pyray.get(a.echo.remote("late", 0.05), timeout=GET_TIMEOUT) == "late"
    assert pyray.get(early, timeout=0) == "early"


def test_a_timeout_is_kept_while_the_caller_reads(ray_start):
    a = Echo.remote()
    slow = a.echo.remote("slow", 1.5)
    start = time.monotonic()
    with pytest.raises(GetTimeoutError):
        pyray.get(slow, timeout=0.3)
    assert 0.25 < time.monotonic() - start < 1.2
    assert pyray.get(slow, timeout=GET_TIMEOUT) == "slow"
    with pytest.raises(GetTimeoutError):
        pyray.get(echo_task.remote("slow", 1.0), timeout=0.2)


def _kill_when_written(path):
    deadline = time.monotonic() + GET_TIMEOUT
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)                     # the caller is blocked in get() by now
    os.kill(int(open(path).read()), signal.SIGKILL)


def test_a_worker_killed_while_the_caller_reads_is_reported(ray_start, tmp_path):
    a = Echo.remote()
    pid = pyray.get(a.pid.remote(), timeout=GET_TIMEOUT)
    blocked = a.echo.remote("never", 30)
    killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(RayActorError):
            pyray.get(blocked, timeout=GET_TIMEOUT)
    finally:
        killer.cancel()
    path = str(tmp_path / "pid")
    doomed = write_pid_then_sleep.remote(path, 30)
    killer = threading.Thread(target=_kill_when_written, args=(path,), daemon=True)
    killer.start()
    with pytest.raises(WorkerCrashedError):
        pyray.get(doomed, timeout=GET_TIMEOUT)
    killer.join(GET_TIMEOUT)
    # new work runs on a fresh worker
    assert pyray.get(echo_task.remote("after"), timeout=GET_TIMEOUT) == "after"
