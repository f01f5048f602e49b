"""The raylet's worker pool: which workers exist, which are starting, idle or
leased, and keeping their number at the node's size.

Workers are forked by the zygote (pyray.raylet.zygote); the pool asks it for
more, tells it which to kill, and reads back their pids and exits.  What a
worker's exit means for the leases it held is the raylet's business.
"""
from __future__ import annotations

import collections
import os
import signal
import time

from pyray._private import ids

IDLE, LEASED, STARTING, STOPPING = "idle", "leased", "starting", "stopping"


class WorkerInfo:
    __slots__ = ("worker_id", "pid", "task_addr", "ctl_addr", "state", "job_id", "lease_id",
                 "idle_since", "chan_path", "env")

    def __init__(self, worker_id):
        self.worker_id = worker_id
        self.pid = None
        self.task_addr = None
        self.ctl_addr = None
        self.chan_path = None
        self.state = STARTING
        self.job_id = None
        self.lease_id = None
        self.idle_since = time.monotonic()
        self.env = None             # the hash of its runtime env (None: the default)


class WorkerPool:
    def __init__(self, zygote, num_cpus, idle_timeout_s):
        self.zygote = zygote
        self.size = max(1, int(num_cpus))    # workers kept even when idle
        self.idle_timeout_s = idle_timeout_s
        self.workers = {}                    # worker id -> WorkerInfo
        self.idle = collections.deque()      # worker ids, longest idle first
        self.starting = 0                    # spawned, not registered yet
        # workers of runtime envs (docs/runtime_env.md), by env hash: idle
        # ones, and how many are starting; the default env's are above
        self.idle_env = {}
        self.starting_env = {}

    @property
    def fd(self):
        """Readable when the zygote has news (poll_events)."""
        return self.zygote.fd

    def fill(self):
        """Starts the pool's first workers."""
        for _ in range(self.size):
            self.spawn()

    def spawn(self):
        wid = ids.random_id()
        self.workers[wid] = WorkerInfo(wid)
        self.starting += 1
        self.zygote.spawn(wid)

    def spawn_env(self, env_hash, context):
        """Starts a worker for a runtime env (context: what it enters)."""
        wid = ids.random_id()
        w = self.workers[wid] = WorkerInfo(wid)
        w.env = env_hash
        self.starting_env[env_hash] = self.starting_env.get(env_hash, 0) + 1
        self.zygote.spawn(wid, context)

    def spawn_more(self, n):
        for _ in range(n):
            self.spawn()

    def get(self, worker_id):
        return self.workers.get(worker_id)

    def __len__(self):
        return len(self.workers)

    def rows(self):
        return [{"worker_id": w.worker_id, "pid": w.pid, "state": w.state, "job_id": w.job_id,
                 "lease_id": w.lease_id, "ctl_addr": w.ctl_addr} for w in self.workers.values()]

    def values(self):
        return self.workers.values()

    def register(self, wid, pid, task_addr, ctl_addr, chan_path):
        """A worker we started says it is ready: it becomes idle.  Returns
        its WorkerInfo, or None for a worker this pool did not start."""
        w = self.workers.get(wid)
        if w is None:
            return None
        w.pid = pid
        w.task_addr = task_addr
        w.ctl_addr = ctl_addr
        w.chan_path = chan_path
        if w.state == STARTING:
            self._started(w)
        self.make_idle(w)
        return w

    def _started(self, w):
        if w.env is None:
            self.starting -= 1
        else:
            left = self.starting_env.get(w.env, 0) - 1
            if left > 0:
                self.starting_env[w.env] = left
            else:
                self.starting_env.pop(w.env, None)

    def make_idle(self, w):
        w.state = IDLE
        w.idle_since = time.monotonic()
        if w.env is None:
            self.idle.append(w.worker_id)
        else:
            self.idle_env.setdefault(w.env, collections.deque()).append(w.worker_id)

    def take_idle(self, job_id, env=None):
        """An idle worker for a lease of `job_id` (one that never ran
        another job's work) in runtime env `env` (a hash; None: the
        default), or None; it leaves the idle queue."""
        idle = self.idle if env is None else self.idle_env.get(env)
        if not idle:
            return None
        workers = self.workers
        for _ in range(len(idle)):
            wid = idle.popleft()
            w = workers.get(wid)
            if w is None or w.state != IDLE:
                continue
            if w.job_id is None or w.job_id == job_id:
                return w
            idle.append(wid)
        return None

    def lease(self, w, lease_id, job_id):
        w.state = LEASED
        w.lease_id = lease_id
        w.job_id = job_id

    def kill(self, w):
        if w.pid is not None:
            self.zygote.kill(w.pid)

    def kill_job(self, job_id):
        for w in list(self.workers.values()):
            if w.job_id == job_id:
                self.kill(w)

    def poll_events(self):
        """Reads the zygote's news.  Returns ([(WorkerInfo, why) of each
        worker that exited], eof: the zygote itself is gone)."""
        events, eof = self.zygote.events()
        exited = []
        for ev in events:
            if ev[0] == "started":
                w = self.workers.get(ev[1])
                if w is not None:
                    w.pid = ev[2]
            elif ev[0] == "exited":
                w = self._exited(ev[1])
                if w is not None:
                    exited.append((w, status_text(ev[3])))
        return exited, eof

    def _exited(self, wid):
        w = self.workers.pop(wid, None)
        if w is not None and w.state == STARTING:
            self._started(w)
        return w

    def maintain(self, now):
        """Stops idle workers beyond the pool's size that idled too long."""
        workers = self.workers
        ids_ = list(self.idle)
        for q in self.idle_env.values():
            ids_.extend(q)
        idle = [workers[w] for w in ids_ if w in workers and workers[w].state == IDLE]
        # runtime-env workers go first, then the longest idle
        idle.sort(key=lambda w: (w.env is None, w.idle_since))
        extra = len(workers) - self.size
        for w in idle:
            if extra <= 0:
                break
            if now - w.idle_since > self.idle_timeout_s:
                w.state = STOPPING
                self.kill(w)
                extra -= 1

    def stop(self):
        """Stops the zygote and with it every worker."""
        self.zygote.stop(worker_pids=[w.pid for w in self.workers.values() if w.pid])


def status_text(status):
    """How a process ended, from its wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {name}"
    return f"exited with code {os.WEXITSTATUS(status)}"
