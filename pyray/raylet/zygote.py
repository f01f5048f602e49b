"""The zygote: the process that forks the raylet's workers.

The zygote is forked from the raylet right after the raylet has imported
pyray, numpy and cloudpickle, and before it made any thread or zmq socket.
To start a worker, the raylet writes a command down a pipe and the zygote
forks: a worker is ready in milliseconds instead of a fresh interpreter's
hundreds.  The zygote reports each child's pid and exit back up a pipe.
Workers die with the zygote, and the zygote with the raylet (PDEATHSIG and a
closed pipe), so a killed raylet leaves no worker behind.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import struct

from pyray._private.daemon import PR_SET_CHILD_SUBREAPER, prctl, set_pdeathsig

_LEN = struct.Struct("<I")


def write_msg(fd, obj):
    data = pickle.dumps(obj, protocol=5)
    buf = _LEN.pack(len(data)) + data
    while buf:
        n = os.write(fd, buf)
        buf = buf[n:]


class MsgReader:
    """Reads length-prefixed pickled messages from a non-blocking fd."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""
        os.set_blocking(fd, False)

    def read(self):
        """Returns (messages, eof)."""
        eof = False
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            self.buf += chunk
        out = []
        while len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) < 4 + n:
                break
            out.append(pickle.loads(self.buf[4:4 + n]))
            self.buf = self.buf[4 + n:]
        return out, eof


class Zygote:
    """Raylet-side handle of the zygote process."""

    def __init__(self, entry_args):
        """entry_args: (node, config, session_dir) passed to every worker.
        The zygote imports the worker's modules (numpy...) itself, after the
        fork, while the raylet goes on starting."""
        cmd_r, cmd_w = os.pipe()
        ev_r, ev_w = os.pipe()
        # workers orphaned by the zygote's death come to us, to be reaped
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        pid = os.fork()
        if pid == 0:
            os.close(cmd_w)
            os.close(ev_r)
            code = 0
            try:
                _zygote_main(cmd_r, ev_w, entry_args)
            except BaseException:  # noqa: BLE001 - reported in the raylet's log
                import traceback
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(cmd_r)
        os.close(ev_w)
        self.pid = pid
        self.entry_config = entry_args[1]
        self.cmd_w = cmd_w
        self.reader = MsgReader(ev_r)
        self.fd = ev_r

    def spawn(self, worker_id, env=None):
        """env: the worker context of a runtime env (runtime_env/node_setup.py)."""
        if env is None:
            write_msg(self.cmd_w, ("spawn", worker_id))
        else:
            write_msg(self.cmd_w, ("spawn", worker_id, env))

    def update_node(self, fields):
        """Node facts learnt after the fork (tcp addresses), for later workers."""
        write_msg(self.cmd_w, ("node", fields))

    def kill(self, pid, sig=signal.SIGKILL):
        write_msg(self.cmd_w, ("kill", pid, int(sig)))

    def events(self):
        return self.reader.read()

    def stop(self, timeout=2.0, worker_pids=()):
        """Kills the zygote and, with it, its workers (and, by their process
        groups, what they started); reaps them all."""
        if getattr(self.entry_config, "kill_child_processes_on_worker_exit", True):
            for pid in worker_pids:
                kill_group(pid)
        try:
            os.close(self.cmd_w)
        except OSError:
            pass
        # The zygote may be busy (importing numpy for later workers, ~0.1 s):
        # waiting for it to see the EOF would hold up shutdown().  Its
        # workers die with it (PR_SET_PDEATHSIG = SIGKILL) and, orphaned,
        # become this process's children (a subreaper, see __init__).
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break                   # no child left
            if not pid:
                time.sleep(0.002)
        try:
            os.close(self.fd)
        except OSError:
            pass


def kill_group(pid):
    """Kills a worker's process group: the worker (if it is still there) and
    every process it started that stayed in its group (Ray's
    kill_child_processes_on_worker_exit)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _zygote_main(cmd_r, ev_w, entry_args):
    set_pdeathsig(signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    reader = MsgReader(cmd_r)
    children = {}
    node, config, session_dir = entry_args
    # each worker leads a process group: what it starts goes with it
    own_group = getattr(config, "kill_child_processes_on_worker_exit", True)
    from pyray._private.task_executor import worker_entry
    warm = False
    while True:
        try:
            select.select([cmd_r, wake_r], [], [], 1.0)
        except InterruptedError:
            pass
        try:
            while os.read(wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        except OSError:
            pass
        # reap
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            wid = children.pop(pid, None)
            if wid is None:
                continue
            if own_group:
                kill_group(pid)
            write_msg(ev_w, ("exited", wid, pid, status))
        msgs, eof = reader.read() if _readable(cmd_r) else ([], False)
        for m in msgs:
            if m[0] == "node":
                node.update(m[1])
            elif m[0] == "spawn":
                wid = m[1]
                log_path = os.path.join(session_dir, "logs", f"worker-{wid.hex()[:12]}.log")
                me = os.getpid()
                pid = os.fork()
                if pid == 0:
                    os.close(cmd_r)
                    os.close(ev_w)
                    os.close(wake_r)
                    os.close(wake_w)
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    set_pdeathsig(signal.SIGKILL)
                    if own_group:
                        os.setpgid(0, 0)
                    if os.getppid() != me:
                        os._exit(0)     # the zygote died before the line above
                    if len(m) > 2:
                        from pyray._private.runtime_env.worker import enter
                        enter(m[2], (wid, node, config, session_dir, log_path))
                    worker_entry(wid, node, config, session_dir, log_path)
                    os._exit(0)
                children[pid] = wid
                write_msg(ev_w, ("started", wid, pid))
            elif m[0] == "kill":
                if m[1] in children:
                    try:
                        os.kill(m[1], m[2])
                    except ProcessLookupError:
                        pass
        if not warm and children and not _readable(cmd_r):
            # the first workers are out: now load what later workers need, so
            # that they start with numpy and cloudpickle already imported
            warm = True
            import cloudpickle  # noqa: F401
            import numpy  # noqa: F401
        if eof:
            for pid in list(children):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                if own_group:
                    kill_group(pid)
            for pid in list(children):
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            return


def _readable(fd):
    r, _, _ = select.select([fd], [], [], 0)
    return bool(r)
