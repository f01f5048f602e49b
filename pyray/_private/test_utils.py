"""Helpers for tests of pyray programs, under the names Ray's own tests
import them from (`ray._private.test_utils`, `ray._common.test_utils`):
bounded polling, a signal actor and a semaphore actor to order work between
tasks, and drivers run as scripts in another process."""
from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import time
import traceback

import pyray


def wait_for_condition(condition_predictor, timeout=10, retry_interval_ms=100,
                       raise_exceptions=False, **kwargs):
    """Polls `condition_predictor(**kwargs)` until it returns true; raises
    RuntimeError after `timeout` seconds, with the last exception it raised."""
    deadline = time.monotonic() + timeout
    last_ex = None
    while time.monotonic() < deadline:
        try:
            if condition_predictor(**kwargs):
                return
        except Exception:
            if raise_exceptions:
                raise
            last_ex = traceback.format_exc()
        time.sleep(retry_interval_ms / 1000.0)
    message = f"The condition wasn't met before the timeout expired ({timeout} s)."
    if last_ex is not None:
        message += f" Last exception: {last_ex}"
    raise RuntimeError(message)


async def async_wait_for_condition(condition_predictor, timeout=10, retry_interval_ms=100,
                                   **kwargs):
    """As wait_for_condition, in an event loop; the predictor may be a
    coroutine function."""
    deadline = time.monotonic() + timeout
    last_ex = None
    while time.monotonic() < deadline:
        try:
            got = condition_predictor(**kwargs)
            if inspect.isawaitable(got):
                got = await got
            if got:
                return
        except Exception:
            last_ex = traceback.format_exc()
        await asyncio.sleep(retry_interval_ms / 1000.0)
    message = f"The condition wasn't met before the timeout expired ({timeout} s)."
    if last_ex is not None:
        message += f" Last exception: {last_ex}"
    raise RuntimeError(message)


@pyray.remote(num_cpus=0)
class SignalActor:
    """`await signal.wait.remote()` blocks until `signal.send.remote()`."""

    def __init__(self):
        self.ready_event = asyncio.Event()
        self.num_waiters = 0

    def send(self, clear=False):
        self.ready_event.set()
        if clear:
            self.ready_event.clear()

    async def wait(self, should_wait=True):
        if should_wait:
            self.num_waiters += 1
            try:
                await self.ready_event.wait()
            finally:
                self.num_waiters -= 1

    def cur_num_waiters(self):
        return self.num_waiters


@pyray.remote(num_cpus=0)
class Semaphore:
    def __init__(self, value=1):
        self._sema = asyncio.Semaphore(value=value)

    async def acquire(self):
        await self._sema.acquire()

    async def release(self):
        self._sema.release()

    async def locked(self):
        return self._sema.locked()


def _driver_env(env):
    out = dict(os.environ if env is None else env)
    out.setdefault("PYTHONUNBUFFERED", "1")
    return out


def run_string_as_driver(driver_script: str, env=None, encode="utf-8"):
    """Runs the script in a new Python process and returns its output
    (stdout and stderr); raises subprocess.CalledProcessError if it fails."""
    proc = subprocess.run([sys.executable, "-"], input=driver_script.encode(encode),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=_driver_env(env), timeout=600)
    out = proc.stdout.decode(encode, errors="replace")
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, out)
    return out


def run_string_as_driver_stdout_stderr(driver_script: str, env=None, encode="utf-8"):
    proc = subprocess.run([sys.executable, "-"], input=driver_script.encode(encode),
                          capture_output=True, env=_driver_env(env), timeout=600)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args,
                                            proc.stdout.decode(encode, errors="replace"),
                                            proc.stderr.decode(encode, errors="replace"))
    return (proc.stdout.decode(encode, errors="replace"),
            proc.stderr.decode(encode, errors="replace"))


def run_string_as_driver_nonblocking(driver_script: str, env=None):
    """Starts the script in a new Python process; returns its Popen (stdin
    closed after the script, stdout and stderr piped)."""
    proc = subprocess.Popen([sys.executable, "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_driver_env(env))
    proc.stdin.write(driver_script.encode())
    proc.stdin.close()
    return proc


def wait_for_pid_to_exit(pid: int, timeout: float = 20):
    import psutil
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.1)
    raise TimeoutError(f"Timed out while waiting for process {pid} to exit.")


def kill_actor_and_wait_for_failure(actor, timeout=10, retry_interval_ms=100):
    """Kills the actor (restarting it if it has restarts left) and waits
    until the kill has taken effect: a call on it fails or, for an actor
    that restarts, reaches the new incarnation."""
    before = pyray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=timeout)
    pyray.kill(actor, no_restart=False)

    def changed():
        try:
            return pyray.get(actor.__ray_call__.remote(lambda self: os.getpid()),
                             timeout=retry_interval_ms / 1000.0) != before
        except pyray.exceptions.GetTimeoutError:
            return False
        except pyray.exceptions.RayActorError:
            return True
    wait_for_condition(changed, timeout=timeout, retry_interval_ms=retry_interval_ms)


def client_test_enabled() -> bool:
    """Whether the tests run through the client (never, here)."""
    return os.environ.get("RAY_CLIENT_MODE") == "1"


def get_other_nodes(cluster, exclude_head=False):
    """The nodes of a pyray.cluster_utils.Cluster other than the current one
    (and other than the head with exclude_head)."""
    nodes = list(cluster.list_all_nodes())
    head = getattr(cluster, "head_node", None)
    here = pyray.get_runtime_context().get_node_id() if pyray.is_initialized() else None
    out = []
    for n in nodes:
        node_id = getattr(n, "node_id", None)
        if exclude_head and n is head:
            continue
        if here is not None and node_id == here:
            continue
        out.append(n)
    return out
