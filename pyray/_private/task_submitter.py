"""Task submission: from a submitted TaskSpec to its results, through
leased workers.

submit() records the task's return objects as owned and pending, waits for
arguments that are this process's unfinished objects (``waiting_deps``),
then queues the task under its scheduling key (``KeyState``: resource shape
+ strategy).  Each key asks the raylet for worker leases (REQUEST_LEASE);
a grant (LEASE_GRANTED) makes a ``Lease``, and queued tasks are pushed
straight to the leased worker (PUSH_TASK, over a direct channel when there
is one).  How many tasks go to one worker at a time and how many leases
are asked for is decided by lease_policy.py.  The worker's replies
(TASK_REPLIES) make the return objects ready.  A dead worker's tasks retry
or fail; an idle lease is given back after a while, or at once when the
raylet wants it back (RECLAIM_LEASE).

``TaskSubmitter`` is one part of CoreWorker (core_worker.py); handlers
(``_h_*``) run on its I/O thread with the lock held.
"""
from __future__ import annotations

import collections
import logging
import sys
import time

from pyray import exceptions as exc
from pyray._private import task_events
from pyray._private.task_events import NORMAL_TASK
from pyray._private import errors
from pyray._private.ids import TASK_ID_SIZE
from pyray._private.lease_policy import (MAX_LEASE_REQUESTS, answered_fast, inflight_limit,
                                         lease_requests_to_send, pick_lease)
from pyray._private.ownership import PENDING
from pyray._private.protocol import (CANCEL_TASK, ERROR, LEASE_GRANTED, LEASE_INFEASIBLE,
                                     LEASE_PG_REMOVED, PUSH_TASK, RECLAIM_LEASE, REQUEST_LEASE,
                                     RETURN_LEASE, TASK_REPLIES, VALUE, WORKER_DIED)

log = logging.getLogger("pyray.core_worker")


class KeyState:
    """Tasks of one resource shape waiting for a leased worker."""
    __slots__ = ("queue", "leases", "pending_reqs", "shape", "infeasible_warned")

    def __init__(self, shape):
        self.queue = collections.deque()
        self.leases = {}
        self.pending_reqs = set()
        self.shape = shape
        self.infeasible_warned = False



class Lease:
    __slots__ = ("lease_id", "worker_id", "task_addr", "ctl_addr", "gpu_ids", "inflight",
                 "sent_fns", "idle_since", "key", "reclaim", "pid", "first", "progress", "channel",
                 "fast", "raylet", "node_id", "calls_left")

    def __init__(self, lease_id, worker_id, task_addr, ctl_addr, gpu_ids, key, pid, channel=None):
        self.lease_id = lease_id
        self.worker_id = worker_id
        self.task_addr = task_addr
        self.ctl_addr = ctl_addr
        self.gpu_ids = gpu_ids
        self.inflight = {}
        self.sent_fns = set()
        self.idle_since = time.monotonic()
        self.key = key
        self.reclaim = False
        self.pid = pid
        self.first = True
        self.progress = 0.0
        self.channel = channel
        self.fast = False       # its last reply came quickly: safe to pipeline
        self.raylet = None      # the raylet that granted it, and its node
        self.node_id = None
        # max_calls: tasks it may still be given (0: no limit, -1: none
        # left; its worker retires once they are done)
        self.calls_left = 0



def max_calls_of(key):
    """The max_calls a task's scheduling key carries (remote_function), or 0."""
    strategy = key[1] if type(key) is tuple and len(key) > 1 else None
    if type(strategy) is tuple and len(strategy) == 3 and strategy[0] == "calls":
        return strategy[1]
    return 0


# the messages of the hot path, built by protocol.py's definitions
_push_task_msg = PUSH_TASK.make
_task_replies = TASK_REPLIES.parse
# a reply of the right length is unpacked as it is (no named tuple per batch)
_TASK_REPLIES_LEN = len(TASK_REPLIES.fields) + 1


class TaskSubmitter:
    """Queued tasks per scheduling key, the leases that run them, and the
    tasks not finished yet."""

    def _init_task_submission(self, config):
        self.waiting_deps = {}       # owned oid -> [TaskSpec] waiting for it
        self.keys = {}               # scheduling key -> KeyState
        self.leases = {}             # lease id -> Lease
        self.lease_by_worker = {}    # worker id -> Lease
        self.pending_lease_reqs = {}  # req id -> key
        self.tasks_by_id = {}        # task id -> TaskSpec, while not finished
        self.oom_delayed = []        # (due, TaskSpec): retries after a kill for memory
        self._max_inflight = config.max_tasks_in_flight_per_worker

    def submit(self, spec):
        """Queues a task; it is pushed to a leased worker once its owned
        dependencies are ready.  Called from the user's thread."""
        task_events.submitted(spec.task_id, spec.name, NORMAL_TASK, None, bool(spec.deps))
        with self.lock:
            self.own_returns(spec)
            self.submit_deps(spec)

    def submit_deps(self, spec):
        """Enqueues a task now, or once its pending owned arguments are ready."""
        pending = []
        for ref in spec.deps:
            e = self.owned.get(ref._id)
            if e is None:
                continue            # borrowed: the worker asks its owner
            if e.state == PENDING:
                pending.append(ref._id)
            elif not self._resolve_dep(spec, ref._id, e):
                return
        if pending:
            spec.pending_deps = len(pending)
            for oid in pending:
                self.waiting_deps.setdefault(oid, []).append(spec)
        elif spec.actor is None:
            self._enqueue(spec)
        else:
            self._dispatch_actor(spec, False)   # an out-of-order actor call

    def _resolve_dep(self, spec, oid, e):
        """Attaches a ready dependency to the spec; a failed dependency fails
        the task without running it.  Returns False if the task failed."""
        if e.kind == ERROR:
            self._finish_error(spec, e.payload)
            return False
        if e.kind == VALUE:
            if spec.resolved is None:
                spec.resolved = {}
            spec.resolved[oid] = (VALUE, e.payload)
        elif e.payload != self.node_id and spec.actor is None and len(spec.key) == 2 and \
                spec.key[1] in (None, "DEFAULT"):
            # a large argument lives on another node: prefer a worker there
            spec.key = spec.key + (e.payload,)
        return True

    def _dep_ready(self, oid, e):
        specs = self.waiting_deps.pop(oid, None)
        if not specs:
            return
        for spec in specs:
            if spec.cancelled:
                continue
            if not self._resolve_dep(spec, oid, e):
                spec.cancelled = True     # failed; skip later deps
                continue
            spec.pending_deps -= 1
            if spec.pending_deps == 0:
                if spec.actor is None:
                    self._enqueue(spec)
                else:
                    self._dispatch_actor(spec, False)   # an out-of-order actor call

    def _key_state(self, spec):
        ks = self.keys.get(spec.key)
        if ks is None:
            shape = spec.shape
            if type(shape) is not dict and getattr(shape, "lease", None) is not None:
                shape = shape.lease      # placed in a placement group (PgShape)
            ks = self.keys[spec.key] = KeyState(shape)
        return ks

    def _enqueue(self, spec):
        ks = self._key_state(spec)
        if not ks.queue:
            lease = pick_lease(ks.leases.values(), 1, 0.0)     # an idle worker
            if lease is not None:
                self._push(lease, spec)
                return
        ks.queue.append(spec)
        pending = len(ks.pending_reqs)
        if pending < MAX_LEASE_REQUESTS and pending < len(ks.queue):
            self._request_leases(spec.key, ks)      # else: as many asked as may be

    def _push(self, lease, spec):
        if not lease.inflight:
            lease.progress = time.monotonic()
        if lease.calls_left > 0:
            self._count_call(lease)
        spec.lease = lease
        spec.attempt += 1
        lease.inflight[spec.task_id] = spec
        fn = spec.fn
        fn_bytes = None
        if fn.fn_id not in lease.sent_fns:
            lease.sent_fns.add(fn.fn_id)
            fn_bytes = fn.data
        job = None
        if lease.first:
            lease.first = False
            job = self.job_config
        data, bufs = spec.args_payload
        msg = _push_task_msg(spec.task_id, fn.fn_id, fn_bytes, spec.name, data,
                             -1 if bufs is None else len(bufs), spec.resolved,
                             len(spec.return_ids) if spec.stream is None else spec.stream.wire,
                             self.addr, spec.attempt, lease.gpu_ids, job,
                             spec.actor, spec.extra, spec.shape, task_events.enabled(spec.task_id))
        self._send_task(lease.channel, lease.task_addr, msg, bufs)

    def _count_call(self, lease):
        """max_calls: the lease's last task takes it out of use; its worker
        stops once that task is done (_retire)."""
        lease.calls_left -= 1
        if lease.calls_left == 0:
            lease.calls_left = -1
            ks = self.keys.get(lease.key)
            if ks is not None:
                ks.leases.pop(lease.lease_id, None)

    def _retire(self, lease):
        """A max_calls lease whose tasks are done: given back with its worker
        stopped (as Ray: the worker exits and another one takes over)."""
        self._return_lease(lease, disconnect=True)
        ks = self.keys.get(lease.key)
        if ks is not None and ks.queue:
            self._request_leases(lease.key, ks)

    def _request_leases(self, key, ks):
        for _ in range(lease_requests_to_send(len(ks.queue), len(ks.pending_reqs))):
            self._req_counter += 1
            req_id = self._req_counter
            ks.pending_reqs.add(req_id)
            self.pending_lease_reqs[req_id] = key
            self.out.send(self.raylet_addr, self.lease_request(req_id, key, ks))

    def lease_request(self, req_id, key, ks):
        return REQUEST_LEASE.make(req_id, self.addr, ks.shape, self.job_id, self.driver_addr, key)

    def lease_request_for(self, req_id):
        """The REQUEST_LEASE message of a lease request still wanted (to send
        it elsewhere), or None if it was granted or cancelled meanwhile."""
        key = self.pending_lease_reqs.get(req_id)
        ks = self.keys.get(key) if key is not None else None
        return None if ks is None else self.lease_request(req_id, key, ks)

    def fail_lease_request(self, req_id, err):
        """A lease request can never be granted: the tasks queued under its
        key fail with `err`."""
        key = self.pending_lease_reqs.pop(req_id, None)
        ks = self.keys.get(key) if key is not None else None
        if ks is None:
            return
        ks.pending_reqs.discard(req_id)
        while ks.queue:
            spec = ks.queue.popleft()
            if not spec.cancelled:
                self.fail_task(spec, err)
        self.cv.notify_all()

    def resubmit(self, spec):
        """Runs a task again whose results were lost (lineage); its return
        objects are pending again already."""
        self.tasks_by_id[spec.task_id] = spec
        self.submit_deps(spec)

    def _dispatch_queued(self, ks):
        """Pushes queued tasks to leased workers.  A worker gets more than
        one task in flight only during a burst (many queued tasks) and only
        while it answers quickly: a task is never queued behind one that has
        been running for a while."""
        now = time.monotonic()
        limit = inflight_limit(len(ks.queue), len(ks.leases), self._max_inflight)
        leases = ks.leases.values()
        while ks.queue:
            best = pick_lease(leases, limit, now)
            if best is None:
                return
            spec = ks.queue.popleft()
            if spec.cancelled:
                continue
            self._push(best, spec)

    def cancel(self, ref, force, recursive=True):
        self.cancel_task(ref._id[:TASK_ID_SIZE], force, recursive)

    def cancel_task(self, task_id, force, recursive=True):
        with self.lock:
            spec = self.tasks_by_id.get(task_id)
            if spec is None or spec.cancelled:
                return
            if force and spec.actor is not None:
                raise ValueError("force=True is not supported for actor tasks.")
            spec.cancelled = True
            lease = spec.lease
            if spec.actor is not None:
                self._cancel_actor_task(spec, recursive)
            elif lease is None or task_id not in lease.inflight:
                ks = self.keys.get(spec.key)
                if ks is not None:
                    try:
                        ks.queue.remove(spec)
                    except ValueError:
                        pass
                self.fail_task(spec, exc.TaskCancelledError(task_id.hex()))
                self.cv.notify_all()
            else:
                self.out.send(lease.ctl_addr, CANCEL_TASK.make(task_id, bool(force),
                                                               bool(recursive)))


    def _h_task_replies(self, msg, frames):
        if len(msg) != _TASK_REPLIES_LEN:
            msg = _task_replies(msg)    # raises ProtocolError naming the fields
        _, worker_id, replies = msg
        lease = self.lease_by_worker.get(worker_id)
        for task_id, results, contained_at, retry in replies:
            spec = lease.inflight.pop(task_id, None) if lease is not None else None
            if spec is None:
                spec = self.tasks_by_id.get(task_id)
                if spec is None:
                    continue
                if spec.actor is not None:
                    ac = self.actors.get(spec.actor)
                    if ac is not None:
                        ac.inflight.pop(task_id, None)
            if retry and spec.retries_left != 0 and not spec.cancelled and \
                    self._should_retry_exception(spec, results):
                spec.retries_left -= 1
                if spec.actor is not None:
                    self._retry_actor_task(spec)
                else:
                    self._key_state(spec).queue.appendleft(spec)
                continue
            self.tasks_by_id.pop(task_id, None)
            if spec.stream is not None:
                self._generator_finished(spec, results, contained_at)
                continue
            for oid, kind, payload in results:
                self.set_ready(oid, kind, payload, contained_at)
        if lease is not None:
            now = time.monotonic()
            lease.fast = answered_fast(now, lease.progress)
            lease.progress = now
            ks = self.keys.get(lease.key)
            if ks is not None and ks.queue:
                self._dispatch_queued(ks)
            if not lease.inflight:
                lease.idle_since = time.monotonic()
                if lease.calls_left < 0:
                    self._retire(lease)
                elif lease.reclaim:
                    self._return_lease(lease)
        self.cv.notify_all()

    def _should_retry_exception(self, spec, results):
        re = spec.retry_exceptions
        if re is True:
            return True
        if not re:
            return False
        for _oid, kind, payload in results:
            if kind == ERROR:
                try:
                    err = errors.decode(payload)
                except Exception:  # noqa: BLE001
                    return False
                cause = getattr(err, "cause", err)
                return isinstance(cause, tuple(re))
        return False

    def _h_lease_granted(self, msg, frames):
        _, req_id, lease_id, worker_id, task_addr, ctl_addr, gpu_ids, pid, chan_path = \
            LEASE_GRANTED.parse(msg)
        key = self.pending_lease_reqs.pop(req_id, None)
        ks = self.keys.get(key) if key is not None else None
        if ks is None:
            self.cluster.forget_request(req_id)
            self.out.send(self.cluster.raylet_of_lease(lease_id), RETURN_LEASE.make(lease_id,
                                                                              False))
            return
        ks.pending_reqs.discard(req_id)
        lease = Lease(lease_id, worker_id, task_addr, ctl_addr, gpu_ids, key, pid,
                      self._channel_for(chan_path))
        lease.raylet, lease.node_id = self.cluster.lease_source(req_id)
        lease.calls_left = max_calls_of(key)
        ks.leases[lease_id] = lease
        self.leases[lease_id] = lease
        self.lease_by_worker[worker_id] = lease
        self._dispatch_queued(ks)
        if ks.queue:
            self._request_leases(key, ks)
        elif ks.pending_reqs:
            for r in ks.pending_reqs:
                self.pending_lease_reqs.pop(r, None)
                self.cluster.cancel_request(r)
            ks.pending_reqs.clear()

    def _return_lease(self, lease, disconnect=False):
        if lease.calls_left and lease.sent_fns:
            disconnect = True   # max_calls counts a worker's calls: it is not reused
        self.leases.pop(lease.lease_id, None)
        if self.lease_by_worker.get(lease.worker_id) is lease:
            del self.lease_by_worker[lease.worker_id]
        ks = self.keys.get(lease.key)
        if ks is not None:
            ks.leases.pop(lease.lease_id, None)
        self.out.send(lease.raylet, RETURN_LEASE.make(lease.lease_id, disconnect))

    def _h_reclaim(self, msg, frames):
        lease = self.leases.get(RECLAIM_LEASE.parse(msg).lease_id)
        if lease is None:
            return
        lease.reclaim = True
        if not lease.inflight:
            self._return_lease(lease)

    def _h_worker_died(self, msg, frames):
        _, lease_id, worker_id, reason, kind = WORKER_DIED.parse(msg)
        self.worker_died(lease_id, worker_id, reason, kind)

    def worker_died(self, lease_id, worker_id, reason, kind=None):
        """The worker of a lease died (its raylet says so, or its node
        died): its tasks retry elsewhere or fail."""
        lease = self.leases.get(lease_id)
        if lease is None:
            return
        self.leases.pop(lease_id, None)
        self.lease_by_worker.pop(worker_id, None)
        ks = self.keys.get(lease.key)
        if ks is not None:
            ks.leases.pop(lease_id, None)
        self._on_worker_lost(lease, reason, kind)
        if ks is not None and ks.queue:
            self._request_leases(lease.key, ks)
        self.cv.notify_all()

    def _on_worker_lost(self, lease, reason, kind=None):
        """Tasks that were running on a dead worker: retry or fail (a
        worker the memory monitor killed: OutOfMemoryError, as in Ray)."""
        ks = self.keys.get(lease.key)
        for spec in list(lease.inflight.values()):
            if spec.cancelled:
                self.fail_task(spec, exc.TaskCancelledError(spec.task_id.hex()))
            elif kind == "oom":
                self._retry_after_oom(spec, reason)
            elif spec.retries_left != 0 and ks is not None:
                spec.retries_left -= 1
                ks.queue.appendleft(spec)
            else:
                self.fail_task(spec, exc.WorkerCrashedError(
                    f"The worker running task {spec.name} died unexpectedly ({reason}); "
                    "it was not retried because its retries are used up (max_retries)."))
        lease.inflight.clear()

    def _retry_after_oom(self, spec, reason):
        """A task whose worker the memory monitor killed: as in Ray, retried
        on its own count (config task_oom_retries, -1: without limit; never
        for a task with max_retries=0) after a delay that doubles each time
        (task_oom_retry_delay_base_ms, at most a minute), so that memory is
        given back first; its max_retries are kept for other failures."""
        left = spec.oom_retries_left
        if left is None:
            left = self.config.task_oom_retries
        if left == 0:
            why = ("its max_retries is 0" if spec.oom_retries_left == 0 and spec.oom_kills == 0
                   else "its retries after kills for memory (task_oom_retries) are used up")
            self.fail_task(spec, exc.OutOfMemoryError(
                f"Task {spec.name} failed: {reason} It was not retried because {why}."))
            return
        spec.oom_retries_left = left - 1 if left > 0 else left
        spec.oom_kills += 1
        delay = min(self.config.task_oom_retry_delay_base_ms / 1000.0 *
                    2 ** (spec.oom_kills - 1), 60.0)
        self.oom_delayed.append((time.monotonic() + delay, spec))

    def _requeue_oom_delayed(self, now):
        """Called on the io loop's tick: the OOM retries that are due."""
        due = [spec for t, spec in self.oom_delayed if t <= now]
        if not due:
            return
        self.oom_delayed = [(t, spec) for t, spec in self.oom_delayed if t > now]
        for spec in due:
            if spec.cancelled:
                self.fail_task(spec, exc.TaskCancelledError(spec.task_id.hex()))
                continue
            ks = self._key_state(spec)
            ks.queue.appendleft(spec)
            self._request_leases(spec.key, ks)

    def _h_lease_pg_removed(self, msg, frames):
        """The placement group the queued tasks of a key were placed in is
        gone: they fail (Ray's TaskPlacementGroupRemoved)."""
        _, req_id, message = LEASE_PG_REMOVED.parse(msg)
        self.fail_lease_request(req_id, exc.TaskPlacementGroupRemoved(message))

    def _h_infeasible(self, msg, frames):
        _, req_id, message = LEASE_INFEASIBLE.parse(msg)
        key = self.pending_lease_reqs.get(req_id)
        ks = self.keys.get(key)
        if ks is not None and not ks.infeasible_warned:
            ks.infeasible_warned = True
            print(f"(pyray) Warning: {message}", file=sys.stderr, flush=True)
            log.warning(message)

    def _return_idle_leases(self, now):
        timeout = self.config.lease_idle_timeout_s
        for lease in list(self.leases.values()):
            if not lease.inflight and now - lease.idle_since > timeout:
                ks = self.keys.get(lease.key)
                if ks is not None and ks.queue:
                    continue
                self._return_lease(lease)
