"""The raylet's side of runtime envs: sets an env up once per node, off the
raylet's loop (a small thread pool), and says what its workers need.

An env's state goes PENDING -> READY (with the *worker context*: variables,
folder, sys.path entries, the python to run) or FAILED (with a
RuntimeEnvSetupError carrying the setup log's tail).  The raylet's loop is
woken through a pipe when a setup ends.  Packages come from the GCS's
key-value store through the raylet's inbox (requests with ids
``("rte", n)``, answered to the raylet and handed over by on_response).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

from pyray import exceptions as exc
from pyray._private.runtime_env import DEFAULT_SETUP_TIMEOUT_S
from pyray._private.runtime_env.packaging import fetch_and_unpack

log = logging.getLogger("pyray.raylet")

PENDING, READY, FAILED = "pending", "ready", "failed"
LOG_TAIL = 4000
# an env whose workers die this many times before they register is failed
MAX_START_FAILURES = 3


class EnvState:
    __slots__ = ("hash", "definition", "status", "context", "error", "started",
                 "start_failures", "log_path")

    def __init__(self, h, definition, log_path):
        self.hash = h
        self.definition = definition
        self.status = PENDING
        self.context = None
        self.error = None
        self.started = time.monotonic()
        self.start_failures = 0
        self.log_path = log_path


class EnvManager:
    def __init__(self, ctx, session_dir, gcs_addr, reply_to):
        self.ctx = ctx
        self.root = os.path.join(session_dir, "runtime_resources")
        self.log_dir = os.path.join(session_dir, "logs")
        self.gcs_addr = gcs_addr
        self.reply_to = reply_to
        self.envs = {}                  # hash -> EnvState
        self.pool = None
        self.local = threading.local()
        self.lock = threading.Lock()
        self.waiting = {}               # request id -> [event, ok, payload]
        self.counter = 0
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.procs = set()              # setup commands running

    # ---- the raylet's loop ----------------------------------------------
    def state(self, marker):
        """The state of the env a marker names; its setup starts on first
        sight."""
        h = marker[1]
        st = self.envs.get(h)
        if st is None:
            st = self.envs[h] = EnvState(h, json.loads(marker[2]),
                                         os.path.join(self.log_dir, f"runtime_env-{h}.log"))
            if self.pool is None:
                from concurrent.futures import ThreadPoolExecutor
                self.pool = ThreadPoolExecutor(4, thread_name_prefix="runtime-env")
            self.pool.submit(self._setup, st)
        elif st.status == PENDING:
            limit = self._timeout(st.definition)
            if limit > 0 and time.monotonic() - st.started > limit + 5:
                self._fail(st, f"setup did not finish within {limit}s (setup_timeout_seconds)")
        return st

    def drain_wakeups(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def on_response(self, req_id, ok, payload):
        with self.lock:
            slot = self.waiting.pop(req_id, None)
        if slot is not None:
            slot[1], slot[2] = ok, payload
            slot[0].set()

    def worker_start_failed(self, h, wid_hex):
        """A worker of env h exited before it registered."""
        st = self.envs.get(h)
        if st is None or st.status != READY:
            return
        st.start_failures += 1
        if st.start_failures >= MAX_START_FAILURES:
            tail = _tail(os.path.join(self.log_dir, f"worker-{wid_hex}.log"))
            self._fail(st, "its workers exited before they started "
                           f"({st.start_failures} times); the last worker's log:\n{tail}",
                       with_log=False)

    def worker_started(self, h):
        st = self.envs.get(h)
        if st is not None:
            st.start_failures = 0

    def close(self):
        import signal
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            _kill_group(proc, signal.SIGKILL)
        with self.lock:
            waiting, self.waiting = list(self.waiting.values()), {}
        from pyray._private import errors
        for slot in waiting:            # setups waiting for the GCS stop now
            slot[1], slot[2] = False, errors.encode(exc.RaySystemError("the raylet stopped"))
            slot[0].set()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # ---- setup threads --------------------------------------------------
    def _wake(self):
        try:
            os.write(self.wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _fail(self, st, why, with_log=True):
        if st.status == FAILED:
            return
        text = f"Failed to set up the runtime environment {st.hash}: {why}"
        if with_log:
            tail = _tail(st.log_path)
            if tail:
                text += f"\nThe setup log's tail ({st.log_path}):\n{tail}"
        st.error = exc.RuntimeEnvSetupError(text)
        st.status = FAILED
        log.warning("%s", text)

    @staticmethod
    def _timeout(d):
        return (d.get("config") or {}).get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_S)

    def _setup(self, st):
        import subprocess
        try:
            os.makedirs(self.log_dir, exist_ok=True)
            self.local.out = None
            with open(st.log_path, "a") as logf:
                ctx = self._build(st.definition, logf, self._timeout(st.definition))
            if st.status == PENDING:      # not failed meanwhile (its deadline passed)
                st.context = ctx
                st.status = READY
        except subprocess.TimeoutExpired as err:
            self._fail(st, f"setup timed out after {err.timeout:.0f}s (setup_timeout_seconds)")
        except exc.RuntimeEnvSetupError as err:
            self._fail(st, str(err))
        except Exception as err:  # noqa: BLE001 - reported to the task's owner
            self._fail(st, f"{type(err).__name__}: {err}")
        finally:
            out, self.local.out = getattr(self.local, "out", None), None
            if out is not None:
                out.close(linger_ms=0)  # this thread's sockets: none left at ctx.term()
            self._wake()

    def _kv_get(self, key, timeout=30.0):
        out = getattr(self.local, "out", None)
        if out is None:
            from pyray._private.transport import Outbox
            out = self.local.out = Outbox(self.ctx)
        from pyray._private.protocol import KV_GET
        ev = threading.Event()
        slot = [ev, None, None]
        with self.lock:
            self.counter += 1
            rid = ("rte", self.counter)
            self.waiting[rid] = slot
        out.send(self.gcs_addr, KV_GET.make(rid, self.reply_to, key))
        if not ev.wait(timeout):
            with self.lock:
                self.waiting.pop(rid, None)
            raise exc.RuntimeEnvSetupError(f"the GCS did not answer for {key} within "
                                           f"{timeout}s")
        if not slot[1]:
            from pyray._private import errors
            raise exc.RuntimeEnvSetupError(f"reading {key}: {errors.decode(slot[2])}")
        return slot[2]

    def _build(self, d, logf, timeout):
        """Prepares an env on this node; returns the worker context."""
        deadline = time.monotonic() + timeout if timeout > 0 else None
        logf.write(f"setting up {json.dumps(d, sort_keys=True)}\n")
        logf.flush()
        ctx = {"env_vars": dict(d.get("env_vars") or {}), "cwd": None, "paths": [],
               "python": None, "definition": d}
        pkgs = os.path.join(self.root, "pkgs")
        wd = d.get("working_dir")
        if wd:
            ctx["cwd"] = fetch_and_unpack(wd, pkgs, self._kv_get)
            ctx["paths"].append(ctx["cwd"])
            logf.write(f"working_dir {wd} at {ctx['cwd']}\n")
        for uri in d.get("py_modules") or ():
            ctx["paths"].append(fetch_and_unpack(uri, pkgs, self._kv_get))
            logf.write(f"py_module {uri} at {ctx['paths'][-1]}\n")
        for tool in ("pip", "uv"):
            reqs = d.get(tool)
            if reqs:
                ctx["python"] = self._venv(tool, reqs, logf, deadline)
        return ctx

    def _venv(self, tool, reqs, logf, deadline):
        """A virtual environment with `reqs` installed, built once per node
        (per requirement set) and kept: <session>/runtime_resources/<tool>/<hash>."""
        import fcntl
        import hashlib
        import shutil
        h = hashlib.sha1(json.dumps([tool, sorted(reqs)]).encode()).hexdigest()[:16]
        root = os.path.join(self.root, tool)
        final = os.path.join(root, h)
        python = os.path.join(final, "bin", "python")
        if os.path.exists(python):
            return python
        uv = None
        if tool == "uv":
            uv = shutil.which("uv")
            if uv is None:
                raise exc.RuntimeEnvSetupError(
                    "runtime_env['uv'] needs the uv tool, which is not installed on this "
                    "node (not on PATH); install uv or use runtime_env['pip'].")
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, f".{h}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.path.exists(python):
                return python
            tmp = final + ".building"
            shutil.rmtree(tmp, ignore_errors=True)
            if uv:
                self._run([uv, "venv", "--system-site-packages", "--python", sys.executable,
                           tmp], logf, deadline)
            else:
                # no pip inside: this interpreter's pip installs into it
                self._run([sys.executable, "-m", "venv", "--system-site-packages",
                           "--without-pip", tmp], logf, deadline)
            _link_parent_site(tmp)
            tmp_python = os.path.join(tmp, "bin", "python")
            if uv:
                self._run([uv, "pip", "install", "--python", tmp_python, *reqs], logf,
                          deadline)
            else:
                self._run([sys.executable, "-m", "pip", "--python", tmp_python, "install",
                           "--disable-pip-version-check", *reqs], logf, deadline)
            # the venv's scripts name their folder: build under tmp, then
            # rename and fix the interpreter's prefix files
            os.rename(tmp, final)
            _fix_paths(final, tmp)
        return python

    def _run(self, cmd, logf, deadline):
        """Runs a setup command in a process group of its own (pip starts
        children), killed whole at the deadline or when the raylet stops."""
        import signal
        import subprocess
        left = None if deadline is None else max(1.0, deadline - time.monotonic())
        logf.write("$ " + " ".join(cmd) + "\n")
        logf.flush()
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_parent)
        with self.lock:
            self.procs.add(proc)
        try:
            code = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            with self.lock:
                self.procs.discard(proc)
            _kill_group(proc, signal.SIGKILL)     # what it left running
        logf.flush()
        if code != 0:
            raise exc.RuntimeEnvSetupError(f"`{' '.join(cmd[:4])} ...` exited with code {code}")


def _die_with_parent():
    import signal
    from pyray._private.daemon import set_pdeathsig
    set_pdeathsig(signal.SIGKILL)


def _kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _link_parent_site(venv):
    """Makes the packages of this interpreter (pyray, numpy, ...)
    importable in the venv, after its own: a .pth file that adds our
    site-packages folders (processing their own .pth files)."""
    import glob
    import site
    dirs = [p for p in site.getsitepackages() if os.path.isdir(p)]
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user and os.path.isdir(user):
        dirs.append(user)
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in dirs)
    for sp in glob.glob(os.path.join(venv, "lib", "python*", "site-packages")):
        with open(os.path.join(sp, "_pyray_parent_site.pth"), "w") as f:
            f.write(lines)


def _fix_paths(final, old):
    """Rewrites the build folder's path in the venv's config and scripts."""
    cfg = os.path.join(final, "pyvenv.cfg")
    for path in [cfg] + [os.path.join(final, "bin", n)
                         for n in os.listdir(os.path.join(final, "bin"))]:
        try:
            if os.path.islink(path) or os.path.getsize(path) > 1 << 20:
                continue
            with open(path, "rb") as f:
                data = f.read()
            if old.encode() in data:
                with open(path, "wb") as f:
                    f.write(data.replace(old.encode(), final.encode()))
        except OSError:
            pass


def _tail(path, n=LOG_TAIL):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""
