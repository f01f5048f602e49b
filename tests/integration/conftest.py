"""Runtime fixtures for the integration tests: local clusters started with
``pyray.init()`` in this process, driver scripts run in a subprocess, and the
checks that a stopped cluster left nothing behind.

Fixtures
  ray_start    module-scoped cluster shared by a file's fast tests.  A test
               module can set ``RAY_INIT_ARGS = {...}`` to change its init
               arguments (default: 2 CPUs, 1 GiB store).
  ray_init     function-scoped factory, ``ray_init(**init_kwargs)``, for
               tests that need their own init arguments; it shuts the
               cluster down (if the test did not) and checks for leftovers.
  driver       factory for a driver script run in a subprocess
               (``driver(source)`` -> DriverProcess).
  wait_for     bounded poll, ``wait_for(predicate, timeout=10, what=...)``.
  release      a path (in tmp_path) that tasks wait for; the fixture creates
               it at teardown so a failed test leaves no task blocked on it.
  leaks        the leftover checks: ``leaks.shm_snapshot()``,
               ``leaks.Footprint(...)``, ``leaks.session_dir_of(info)``.

Test modules take helpers from fixtures, never ``from conftest import``:
remote functions defined in a test module make workers import that module.

Readiness is always a handshake (a line printed by the driver, a value
returned by a task); polling is only used, with a deadline, for state that is
eventually consistent (resource reports, process exit after shutdown).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

import pyray

MiB = 1 << 20
GiB = 1 << 30

DEFAULT_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 1 * GiB}
CLEANUP_TIMEOUT_S = 20.0
SHM_DIR = "/dev/shm"
SESSION_ROOT_NAME = "pyray"


# ---------------------------------------------------------------------------
# polling
# ---------------------------------------------------------------------------
def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls predicate() until it returns a truthy value (returned) or the
    deadline passes (AssertionError naming `what` and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                 f"(last value: {last!r})")
        time.sleep(interval)


@pytest.fixture
def wait_for():
    return wait_until


@pytest.fixture
def release(tmp_path):
    path = tmp_path / "release"
    yield path
    path.touch()


# ---------------------------------------------------------------------------
# what a cluster leaves behind
# ---------------------------------------------------------------------------
def shm_snapshot():
    try:
        return set(os.listdir(SHM_DIR))
    except OSError:
        return set()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _procs_mentioning(text):
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or ())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if text in cmd and p.pid != os.getpid() and _alive(p):
            out.append(p)
    return out


_PID_IN_NAME = re.compile(r"(?<![0-9a-f])(\d{2,8})(?![0-9a-f])")


def _foreign_shm(name, our_pids):
    """True if an /dev/shm name carries the pid of a live process that is not
    part of the cluster under test (e.g. another store's tests running at the
    same time), so it is not ours to account for."""
    for m in _PID_IN_NAME.finditer(name):
        pid = int(m.group(1))
        if pid in our_pids or pid == os.getpid():
            return False
        if psutil.pid_exists(pid):
            return True
    return False


class Footprint:
    """The processes, session directory and shared-memory entries of one
    running cluster, captured before it is stopped."""

    def __init__(self, session_dir, procs, shm_before):
        self.session_dir = session_dir
        self.procs = list(procs)
        self.pids = {p.pid for p in self.procs}
        self.shm_before = set(shm_before)

    @classmethod
    def of_children(cls, session_dir, shm_before, root_pid=None):
        """Every descendant of root_pid (this process by default)."""
        root = psutil.Process(root_pid or os.getpid())
        procs = root.children(recursive=True)
        procs += _procs_mentioning(session_dir) if session_dir else []
        return cls(session_dir, procs, shm_before)

    def leftovers(self):
        left = []
        for p in self.procs:
            if _alive(p):
                try:
                    cmd = " ".join(p.cmdline())[:200]
                except psutil.Error:
                    cmd = "?"
                left.append(f"process {p.pid} still running: {cmd}")
        if self.session_dir:
            for p in _procs_mentioning(self.session_dir):
                if p.pid not in self.pids:
                    left.append(f"process {p.pid} mentions the session dir: "
                                f"{' '.join(p.cmdline())[:200]}")
            if os.path.exists(self.session_dir):
                sockets = []
                for dirpath, _dirs, files in os.walk(self.session_dir):
                    sockets += [os.path.join(dirpath, f) for f in files]
                left.append(f"session dir {self.session_dir} still exists "
                            f"({len(sockets)} files, e.g. {sockets[:3]})")
        new_shm = sorted(n for n in shm_snapshot() - self.shm_before
                         if not _foreign_shm(n, self.pids))
        if new_shm:
            left.append(f"/dev/shm entries left behind: {new_shm}")
        return left

    def assert_clean(self, timeout=CLEANUP_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            left = self.leftovers()
            if not left:
                return
            if time.monotonic() >= deadline:
                raise AssertionError("the cluster left things behind after "
                                     f"{timeout}s:\n  " + "\n  ".join(left))
            time.sleep(0.05)


def session_dir_of(info):
    """The session directory from what init() returned."""
    addr = getattr(info, "address_info", info)
    return addr["session_dir"]


class _Leaks:
    Footprint = Footprint
    shm_snapshot = staticmethod(shm_snapshot)
    session_dir_of = staticmethod(session_dir_of)


@pytest.fixture
def leaks():
    return _Leaks


# ---------------------------------------------------------------------------
# in-process clusters
# ---------------------------------------------------------------------------
def _require_no_cluster():
    if pyray.is_initialized():
        pyray.shutdown()
        raise AssertionError("a pyray cluster from an earlier test was still running; "
                             "it was shut down now")


def _stop_and_check(info, shm_before):
    fp = Footprint.of_children(session_dir_of(info), shm_before)
    pyray.shutdown()
    assert not pyray.is_initialized(), "is_initialized() is True after shutdown()"
    fp.assert_clean()


@pytest.fixture(scope="module")
def ray_start(request):
    """A cluster shared by the tests of one module; yields init()'s result."""
    _require_no_cluster()
    args = dict(getattr(request.module, "RAY_INIT_ARGS", DEFAULT_INIT_ARGS))
    shm_before = shm_snapshot()
    info = pyray.init(**args)
    try:
        yield info
    finally:
        if pyray.is_initialized():
            _stop_and_check(info, shm_before)


@pytest.fixture
def ray_init():
    """``ray_init(**kwargs)`` starts a cluster for this test only."""
    _require_no_cluster()
    started = []

    def start(**kwargs):
        shm_before = shm_snapshot()
        info = pyray.init(**kwargs)
        started.append((info, shm_before))
        return info

    yield start
    if pyray.is_initialized() and started:
        info, shm_before = started[-1]
        _stop_and_check(info, shm_before)
    elif pyray.is_initialized():   # started by a remote() call without init()
        pyray.shutdown()


# ---------------------------------------------------------------------------
# drivers in a subprocess
# ---------------------------------------------------------------------------
def subprocess_env():
    """The environment for a driver subprocess: imports this same pyray
    whatever its working directory."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(pyray.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYRAY_ADDRESS", None)
    env.pop("RAY_ADDRESS", None)
    return env


class DriverProcess:
    """A Python driver script in a subprocess, with its stdout and stderr
    read line by line in the background."""

    def __init__(self, source, workdir):
        path = os.path.join(workdir, "driver.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(source))
        self.proc = subprocess.Popen(
            [sys.executable, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=workdir, env=subprocess_env(), text=True,
            start_new_session=True)
        self.pid = self.proc.pid
        self.lines = {"stdout": [], "stderr": []}
        self.cv = threading.Condition()
        self.threads = [threading.Thread(target=self._read, args=(name, stream), daemon=True)
                        for name, stream in (("stdout", self.proc.stdout),
                                             ("stderr", self.proc.stderr))]
        for t in self.threads:
            t.start()

    def _read(self, name, stream):
        for line in stream:
            with self.cv:
                self.lines[name].append(line.rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.lines[name].append(None)   # EOF
            self.cv.notify_all()

    def text(self, name="stdout"):
        with self.cv:
            return "\n".join(l for l in self.lines[name] if l is not None)

    def wait_for_line(self, predicate, stream="stdout", timeout=30.0):
        """The first line of `stream` for which predicate(line) is true."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cv:
            while True:
                lines = self.lines[stream]
                while seen < len(lines):
                    line = lines[seen]
                    seen += 1
                    if line is None:
                        raise AssertionError(
                            f"the driver's {stream} ended without the expected line "
                            f"(exit code {self.proc.poll()}).\nstdout:\n{self.text('stdout')}"
                            f"\nstderr:\n{self.text('stderr')}")
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no expected line on the driver's {stream} within {timeout}s."
                        f"\nstdout:\n{self.text('stdout')}\nstderr:\n{self.text('stderr')}")
                self.cv.wait(left)

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout=30.0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the driver did not exit within {timeout}s.\nstdout:\n"
                                 f"{self.text('stdout')}\nstderr:\n{self.text('stderr')}")
        for t in self.threads:
            t.join(5)
        return rc

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def driver(tmp_path):
    """``driver(source)`` runs `source` as a driver script in a subprocess.
    Whatever is still running at the end of the test is killed."""
    started = []

    def start(source):
        workdir = tmp_path / f"driver{len(started)}"
        workdir.mkdir()
        d = DriverProcess(source, str(workdir))
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            try:
                descendants = psutil.Process(d.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                descendants = []
            d.kill()
            for p in descendants:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
        for stream in (d.proc.stdin, d.proc.stdout, d.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
