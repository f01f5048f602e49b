"""Submitted jobs: their records in the cluster's key-value store, and the
supervisor actor that runs each one's entrypoint.

A job's record (JobDetails as JSON) lives in the GCS KV (internal_kv,
namespace KV_NAMESPACE), so it outlives the client that submitted it and
the dashboard process.  Its entrypoint runs under a detached actor on the
head node (JobSupervisor, holding the job's entrypoint resources), in a
session of its own with stdout and stderr in
``<session>/logs/job-driver-<id>.log``.  The supervisor writes RUNNING when
the command starts and the final state when it ends, then exits.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import string
import subprocess
import sys
import threading
import time

import pyray
import pyray.util
from pyray.experimental import internal_kv as kv
from pyray.job_submission.common import (JOB_PREFIX, KV_NAMESPACE, LOG_TAIL_CHARS, JobDetails,
                                         JobStatus)

# seconds a stopped entrypoint gets between SIGTERM and SIGKILL (Ray's
# RAY_JOB_STOP_WAIT_TIME_S)
STOP_WAIT_S = float(os.environ.get("RAY_JOB_STOP_WAIT_TIME_S", "3"))
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_PKG_RE = re.compile(r"^gcs://(_ray_pkg_[0-9a-f]{32}\.zip)$")
_PENDING_MSG = ("Job has not started yet. It may be waiting for resources (the entrypoint's "
                "CPUs, GPUs, memory or custom resources on the head node) or for its "
                "runtime environment to be set up.")


def _now_ms():
    return int(time.time() * 1000)


def supervisor_name(sid):
    return f"_job_supervisor:{sid}"


def read(sid):
    raw = kv._internal_kv_get(JOB_PREFIX + sid, namespace=KV_NAMESPACE)
    return None if raw is None else json.loads(raw)


def write(sid, rec):
    kv._internal_kv_put(JOB_PREFIX + sid, json.dumps(rec), namespace=KV_NAMESPACE)


def update(sid, **fields):
    rec = read(sid)
    if rec is None:             # deleted meanwhile
        return None
    rec.update(fields)
    write(sid, rec)
    return rec


def _kill_tree(pgid, pids, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _descendants(pid):
    import psutil
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _die_with_parent():
    # signals as a fresh process has them (a worker may ignore some, and an
    # ignored signal stays ignored across exec)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    # the entrypoint gets SIGTERM if its supervisor dies (Linux)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class JobSupervisor:
    """Runs one job's entrypoint (a detached actor; see the module doc)."""

    def __init__(self, sid, entrypoint, log_path, env):
        self.sid = sid
        self.entrypoint = entrypoint
        self.log_path = log_path
        self.env = env
        self.proc = None
        self.stopping = False
        self.lock = threading.Lock()

    def run(self):
        with self.lock:
            if self.stopping:
                return False
            env = dict(os.environ)
            env.update(self.env)
            # `python` in the entrypoint is the cluster's interpreter
            env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable)]
                                          + [p for p in env.get("PATH", "").split(os.pathsep) if p])
            os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
            with open(self.log_path, "ab") as log:
                try:
                    self.proc = subprocess.Popen(
                        self.entrypoint, shell=True, stdin=subprocess.DEVNULL, stdout=log,
                        stderr=subprocess.STDOUT, env=env, start_new_session=True,
                        preexec_fn=_die_with_parent)
                except OSError as err:
                    self._finish(JobStatus.FAILED, f"The entrypoint could not start: {err}",
                                 None, "JOB_ENTRYPOINT_COMMAND_START_ERROR")
                    return False
            update(self.sid, status=JobStatus.RUNNING.value, message="Job is currently running.",
                   driver_node_id=pyray.get_runtime_context().get_node_id(),
                   driver_info={"id": self.sid,
                                "node_ip_address": pyray.util.get_node_ip_address(),
                                "pid": str(self.proc.pid)})
        threading.Thread(target=self._wait, name="job-wait", daemon=True).start()
        return True

    def stop(self):
        """SIGTERM to the entrypoint's process tree, SIGKILL to what is left
        of it after STOP_WAIT_S.  Whether it was running."""
        with self.lock:
            self.stopping = True
            proc = self.proc
            if proc is None:
                self._finish(JobStatus.STOPPED, "Job was intentionally stopped.", None, None)
                return True
            if proc.poll() is not None:
                return False
        _kill_tree(proc.pid, [proc.pid] + _descendants(proc.pid), signal.SIGTERM)
        return True

    def _end_group(self):
        """Waits up to STOP_WAIT_S for the entrypoint's process group (a
        driver among it ends its job on SIGTERM: its tasks and actors go
        too), then kills what is left."""
        pgid = self.proc.pid
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)
        _kill_tree(pgid, [], signal.SIGKILL)

    def _wait(self):
        code = self.proc.wait()
        if not self.stopping:
            # what the entrypoint left behind in its session goes with it
            _kill_tree(self.proc.pid, [], signal.SIGTERM)
        self._end_group()
        if self.stopping:
            self._finish(JobStatus.STOPPED, "Job was intentionally stopped.", code, None)
        elif code == 0:
            self._finish(JobStatus.SUCCEEDED, "Job finished successfully.", code, None)
        else:
            tail = ""
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(max(0, os.path.getsize(self.log_path) - LOG_TAIL_CHARS))
                    tail = f.read().decode(errors="replace")
            except OSError:
                pass
            self._finish(JobStatus.FAILED,
                         f"Job entrypoint command failed with exit code {code}, last "
                         f"available logs (truncated to {LOG_TAIL_CHARS:,} chars):\n{tail}",
                         code, "JOB_ENTRYPOINT_COMMAND_ERROR")

    def _finish(self, status, message, code, error_type):
        update(self.sid, status=status.value, message=message, driver_exit_code=code,
               error_type=error_type, end_time=_now_ms())
        # the supervisor's work is done: its worker exits (a detached actor
        # is not ended by anyone else)
        threading.Thread(target=lambda: (time.sleep(0.2), os._exit(0)), daemon=True).start()


class JobManager:
    """The dashboard's side: validates submissions, keeps the records,
    starts and stops supervisors.  Its methods block (dashboard.call)."""

    def __init__(self, dashboard):
        self.dashboard = dashboard
        self.packages = os.path.join(dashboard.session_dir, "dashboard_packages")
        self._actor_cls = None

    def log_path(self, sid):
        return os.path.join(self.dashboard.session_dir, "logs", f"job-driver-{sid}.log")

    def package_path(self, name):
        return os.path.join(self.packages, name)

    def _local_uri(self, uri, what):
        m = _PKG_RE.match(uri) if isinstance(uri, str) else None
        if m is None:
            return uri          # the runtime env's own check names what is wrong
        path = self.package_path(m.group(1))
        if not os.path.isfile(path):
            raise ValueError(f"runtime_env[{what!r}]: the package {uri} was not uploaded "
                             "to this cluster (PUT /api/packages/gcs/<name>)")
        return path

    def _runtime_env(self, env):
        env = dict(env or {})
        if "working_dir" in env:
            env["working_dir"] = self._local_uri(env["working_dir"], "working_dir")
        if env.get("py_modules"):
            env["py_modules"] = [self._local_uri(m, "py_modules") for m in env["py_modules"]]
        return env

    def submit(self, req):
        entrypoint = req.get("entrypoint")
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise ValueError("entrypoint must be a non-empty shell command")
        sid = req.get("submission_id") or req.get("job_id") or "raysubmit_" + "".join(
            secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
        if not isinstance(sid, str) or not _ID_RE.match(sid):
            raise ValueError(f"submission_id {sid!r} must be 1-128 letters, digits, '_', '.' "
                             "or '-'")
        metadata = req.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata must be a dict of strings to strings")
        opts = {}
        for key, opt in (("entrypoint_num_cpus", "num_cpus"), ("entrypoint_num_gpus", "num_gpus"),
                         ("entrypoint_memory", "memory")):
            v = req.get(key)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    raise ValueError(f"{key} must be a non-negative number, got {v!r}")
                opts[opt] = v
        resources = req.get("entrypoint_resources") or {}
        if not isinstance(resources, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                and v >= 0 for k, v in resources.items()):
            raise ValueError("entrypoint_resources must be a dict of resource names to "
                             "non-negative numbers")
        for name in ("CPU", "GPU", "memory"):
            if name in resources:
                raise ValueError(f"entrypoint_resources must not contain {name!r}; use "
                                 "entrypoint_num_cpus, entrypoint_num_gpus or entrypoint_memory")
        user_env = req.get("runtime_env") or {}
        if not isinstance(user_env, dict):
            raise ValueError("runtime_env must be a dict")
        env = self._runtime_env(user_env)
        rec = JobDetails(status=JobStatus.PENDING, entrypoint=entrypoint, message=_PENDING_MSG,
                         start_time=_now_ms(), metadata=metadata, runtime_env=user_env,
                         entrypoint_num_cpus=req.get("entrypoint_num_cpus"),
                         entrypoint_num_gpus=req.get("entrypoint_num_gpus"),
                         entrypoint_memory=req.get("entrypoint_memory"),
                         entrypoint_resources=req.get("entrypoint_resources"),
                         submission_id=sid, job_id=sid).to_json()
        if kv._internal_kv_put(JOB_PREFIX + sid, json.dumps(rec), overwrite=False,
                               namespace=KV_NAMESPACE):
            raise FileExistsError(f"Job with submission_id {sid} already exists. Please use "
                                  "a different submission_id.")
        d = self.dashboard
        child_env = {"RAY_ADDRESS": d.gcs_address, "PYRAY_ADDRESS": d.gcs_address,
                     "RAY_JOB_SUBMISSION_ID": sid, "PYRAY_JOB_SUBMISSION_ID": sid,
                     "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": env,
                                                                "metadata": metadata})}
        if d.token:
            child_env["PYRAY_TOKEN"] = d.token
        from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        if self._actor_cls is None:
            self._actor_cls = pyray.remote(JobSupervisor)
        try:
            actor = self._actor_cls.options(
                name=supervisor_name(sid), lifetime="detached", max_concurrency=4,
                runtime_env=env or None, num_cpus=opts.get("num_cpus", 0),
                num_gpus=opts.get("num_gpus", 0), memory=opts.get("memory"),
                resources=resources or None,
                scheduling_strategy=NodeAffinitySchedulingStrategy(d.head_node_id, soft=False),
            ).remote(sid, entrypoint, self.log_path(sid), child_env)
            ref = actor.run.remote()
        except Exception as err:  # noqa: BLE001  (a bad runtime_env, options, ...)
            kv._internal_kv_del(JOB_PREFIX + sid, namespace=KV_NAMESPACE)
            raise ValueError(f"The job could not be started: {err}") from None
        threading.Thread(target=self._watch_start, args=(sid, ref), daemon=True).start()
        return sid

    def _watch_start(self, sid, ref):
        """Marks the job FAILED if its supervisor dies before starting it
        (a runtime env that cannot be set up, the actor killed)."""
        try:
            pyray.get(ref)
        except Exception as err:  # noqa: BLE001
            rec = read(sid)
            if rec is not None and not JobStatus(rec["status"]).is_terminal():
                kind = ("RUNTIME_ENV_SETUP_FAILURE" if "RuntimeEnv" in type(err).__name__
                        else "JOB_SUPERVISOR_ACTOR_DIED")
                update(sid, status=JobStatus.FAILED.value, error_type=kind,
                       message=f"The job's supervisor failed before the entrypoint ran: {err}",
                       end_time=_now_ms())

    def get(self, sid):
        rec = read(sid)
        if rec is None:
            raise KeyError(sid)
        return self._checked(rec)

    def _checked(self, rec):
        """A RUNNING job whose supervisor is gone (its worker or node died)
        is FAILED: nothing is left to end it or to write its end."""
        if rec["status"] != JobStatus.RUNNING.value:
            return rec
        sid = rec["submission_id"]
        try:
            pyray.get_actor(supervisor_name(sid))
            return rec
        except ValueError:
            pass
        rec = read(sid) or rec           # it may have ended just now
        if rec["status"] != JobStatus.RUNNING.value:
            return rec
        return update(sid, status=JobStatus.FAILED.value, end_time=_now_ms(),
                      error_type="JOB_SUPERVISOR_ACTOR_DIED",
                      message="The job's supervisor actor died while the job was running "
                              "(its worker or the head node's raylet was killed).") or rec

    def list(self):
        out = []
        for key in kv._internal_kv_list(JOB_PREFIX, namespace=KV_NAMESPACE):
            raw = kv._internal_kv_get(key, namespace=KV_NAMESPACE)
            if raw is not None:
                out.append(self._checked(json.loads(raw)))
        return sorted(out, key=lambda r: r.get("start_time") or 0)

    def stop(self, sid):
        rec = self.get(sid)
        if JobStatus(rec["status"]).is_terminal():
            return False
        try:
            actor = pyray.get_actor(supervisor_name(sid))
        except ValueError:
            return False
        try:
            return pyray.get(actor.stop.remote(), timeout=2.0)
        except pyray.exceptions.GetTimeoutError:
            # not created yet (waiting for resources or its runtime env)
            pyray.kill(actor)
            update(sid, status=JobStatus.STOPPED.value, message="Job was intentionally stopped.",
                   end_time=_now_ms())
            return True
        except pyray.exceptions.RayActorError:
            return False

    def delete(self, sid):
        rec = self.get(sid)
        status = JobStatus(rec["status"])
        if not status.is_terminal():
            raise ValueError(f"Attempted to delete job with status {status.value}, but only "
                             "jobs in a terminal state (STOPPED, SUCCEEDED, FAILED) can be "
                             "deleted; stop it first.")
        kv._internal_kv_del(JOB_PREFIX + sid, namespace=KV_NAMESPACE)
        try:
            os.remove(self.log_path(sid))
        except OSError:
            pass
        return True

    def logs(self, sid, offset=0):
        """The log's bytes from byte `offset`, and the offset after them."""
        self.get(sid)
        try:
            with open(self.log_path(sid), "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return b"", offset
        return data, offset + len(data)
