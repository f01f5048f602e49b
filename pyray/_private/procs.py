"""Stopping processes: one signal, one wait, a SIGKILL for what is left.

Every place that stops pyray processes (``pyray stop``, a local cluster's
shutdown, ``cluster_utils.Cluster``, test clusters) goes through
``stop_processes``.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import time


def stop_processes(procs, sig=signal.SIGTERM, timeout=10.0, kill_wait=5.0):
    """Sends `sig` (None: no signal, they are on their way out already) to
    every process still running, waits up to `timeout`
    seconds for all of them together, SIGKILLs the ones left and waits up to
    `kill_wait` for those.  `procs`: subprocess.Popen objects, psutil
    Process objects or pids (a mix is fine; a bare pid must be a child of
    this process to be waited for, else only its disappearance is seen).
    Returns the processes that were still running after the SIGKILL wait."""
    handles = [_handle(p) for p in procs]
    if sig is not None:
        for h in handles:
            if h.running():
                h.signal(sig)
    left = wait_exit(handles, timeout)
    if not left:
        return []
    for h in left:
        h.signal(signal.SIGKILL)
    return [h.proc for h in wait_exit(left, kill_wait)]


def wait_exit(procs, timeout):
    """Waits until every process has exited or `timeout` passed; returns
    the ones still running.  Uses pidfds where the kernel has them (a
    Popen.wait(timeout) polls with growing sleeps and notices an exit up to
    50 ms late)."""
    handles = [h if isinstance(h, _Proc) else _handle(h) for h in procs]
    deadline = time.monotonic() + timeout
    live = [h for h in handles if h.running()]
    fds = {}
    try:
        for h in live:
            try:
                fds[os.pidfd_open(h.pid)] = h
            except (AttributeError, OSError):
                pass
        while True:
            live = [h for h in live if h.running()]
            remaining = deadline - time.monotonic()
            if not live or remaining <= 0:
                return live
            waiting = [fd for fd, h in fds.items() if h in live]
            if len(waiting) == len(live):
                select.select(waiting, [], [], remaining)
            else:
                time.sleep(min(remaining, 0.005))
    finally:
        for fd in fds:
            os.close(fd)


class _Proc:
    """A process to stop, whatever form it was given in."""
    __slots__ = ("proc", "pid", "running", "signal")

    def __init__(self, proc, pid, running, send):
        self.proc = proc
        self.pid = pid
        self.running = running
        self.signal = send


def _handle(p):
    if isinstance(p, _Proc):
        return p
    if isinstance(p, subprocess.Popen):
        def send(sig, p=p):
            if p.poll() is None:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
        return _Proc(p, p.pid, lambda p=p: p.poll() is None, send)
    if isinstance(p, int):
        return _Proc(p, p, lambda pid=p: _pid_running(pid), lambda sig, pid=p: _kill(pid, sig))
    # a psutil.Process (not imported here: it costs tens of milliseconds)
    import psutil

    def send_ps(sig, p=p):
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass

    def running_ps(p=p):
        try:
            p.wait(0)                   # reaps it if it is our child
        except psutil.TimeoutExpired:
            return True
        except psutil.Error:
            pass
        return False
    return _Proc(p, p.pid, running_ps, send_ps)


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pid_running(pid):
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass                            # not our child: only its state tells
    return running(pid)


def running(pid):
    """Whether `pid` runs: it exists and is not a zombie (dead, not yet
    reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
