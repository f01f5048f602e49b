"""The GCS's task records, built from the TASK_EVENTS batches every process
sends (pyray._private.task_events).

A batch arrives as one marshalled blob and waits, unread, in ``pending`` (the
GCS's own events too: actor creations, drivers): the GCS spends nothing on
task events while nobody asks.  A query first folds the pending batches
into the records.

Bounded twice (``task_events_max_num_task_in_gcs`` = N): at most N records
(the oldest goes first, counted in ``num_tasks_dropped_gcs``), and at most
4 N events waiting unread (and the newest batch, whatever its size: a
process sends at most task_events_max_num_status_events_buffer_on_worker
at a time): past that the records and then the oldest batches go unread, their events counted in
``num_status_task_events_dropped`` (a task has three or four events, so 4 N
newer events are about N newer tasks, which would have pushed the older
records out anyway).
"""
from __future__ import annotations

import collections
import marshal
import time

from pyray._private.protocol import TASK_EVENTS
from pyray._private.task_events import (ACTOR_CREATION_TASK, DRIVER_TASK, FAILED, FINISHED,
                                        PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, RUNNING,
                                        SUBMITTED_TO_WORKER)

# a record's state is the furthest one reached (events of one task come from
# its owner and from its worker, in either order)
_RANK = {PENDING_ARGS_AVAIL: 0, PENDING_NODE_ASSIGNMENT: 1, SUBMITTED_TO_WORKER: 2,
         RUNNING: 3, FINISHED: 4, FAILED: 4}

# a record is a list (cheap to update); query() turns it into Ray's fields
(_JOB, _NAME, _TYPE, _ACTOR, _ATTEMPT, _NODE, _WORKER, _PID, _STATE, _ERR_TYPE, _ERR_MSG,
 _CREATED, _START, _END, _EVENTS) = range(15)


def _hex(b):
    return b.hex() if isinstance(b, (bytes, bytearray)) else b


def _ms(t):
    return None if t is None else int(t * 1000)


def _norm(v):
    return str(v).lower() if v is not None else ""


# the columns a list's filters can be applied to in the GCS (before a row is built)
WHERE = {
    "task_id": lambda tid, r: tid.hex(), "state": lambda tid, r: r[_STATE],
    "name": lambda tid, r: r[_NAME], "func_or_class_name": lambda tid, r: r[_NAME],
    "type": lambda tid, r: r[_TYPE], "job_id": lambda tid, r: _hex(r[_JOB]),
    "node_id": lambda tid, r: _hex(r[_NODE]), "worker_id": lambda tid, r: _hex(r[_WORKER]),
    "actor_id": lambda tid, r: _hex(r[_ACTOR]), "error_type": lambda tid, r: r[_ERR_TYPE],
    "worker_pid": lambda tid, r: r[_PID], "attempt_number": lambda tid, r: r[_ATTEMPT],
}


class TaskEventStore:
    def __init__(self, limit):
        self.limit = max(1, int(limit))
        self.max_pending = 4 * self.limit
        self.tasks = collections.OrderedDict()      # task id -> record (list), oldest first
        self.pending = collections.deque()          # (source, blob, count), unread
        self.pending_events = 0
        self.dropped_gcs = 0        # records evicted by the bound
        self.dropped_events = 0     # events dropped unread (here, or by their process)

    def h_task_events(self, msg, frames=None):
        m = TASK_EVENTS.parse(msg)
        self.dropped_events += m.dropped or 0
        if m.count:
            self._queue(m.source, m.events, m.count)

    def _queue(self, source, events, count):
        self.pending.append((source, events, count))
        self.pending_events += count
        if self.pending_events - self.pending[0][2] >= self.max_pending:
            # newer events than the records can hold: the records go first,
            # then the oldest batches (whole: the newest always stays)
            self.dropped_gcs += len(self.tasks)
            self.tasks.clear()
            while self.pending_events - self.pending[0][2] >= self.max_pending:
                _, _, n = self.pending.popleft()
                self.pending_events -= n
                self.dropped_events += n

    def fold(self):
        """Reads the pending batches into the records."""
        pending, self.pending = self.pending, collections.deque()
        self.pending_events = 0
        add = self.add
        for (node_id, worker_id, pid, job_id), events, _ in pending:
            if type(events) is bytes:
                events = marshal.loads(events)
            for ev in events:
                add(ev, node_id, worker_id, pid, job_id)

    def add(self, ev, node_id=None, worker_id=None, pid=None, job_id=None):
        task_id, state, ts = ev[0], ev[1], ev[2]
        rec = self.tasks.get(task_id)
        if rec is None:
            if len(self.tasks) >= self.limit:
                self.tasks.popitem(last=False)
                self.dropped_gcs += 1
            rec = self.tasks[task_id] = [job_id, None, None, None, 0, None, None, None, None,
                                         None, None, None, None, None, []]
        rec[_EVENTS].append((state, ts))
        if state == RUNNING:
            rec[_NAME], rec[_TYPE] = ev[3], ev[4]
            if ev[5] is not None:
                rec[_ACTOR] = ev[5]
            attempt = max(0, ev[6] - 1)     # the wire counts from 1, Ray from 0
            if attempt > rec[_ATTEMPT]:
                # a retry: the record follows the newest attempt
                rec[_ATTEMPT] = attempt
                rec[_STATE] = rec[_ERR_TYPE] = rec[_ERR_MSG] = rec[_END] = None
            rec[_NODE], rec[_WORKER], rec[_PID] = node_id, worker_id, pid
            rec[_START] = ts
            if job_id is not None:
                rec[_JOB] = job_id
            if len(ev) > 7:                 # ran and finished before its process sent
                rec[_END] = ev[7]
                rec[_EVENTS].append((FINISHED, ev[7]))
                state = FINISHED
        elif state == FINISHED:
            rec[_END] = ts
        elif state == FAILED:
            if len(ev) > 5:                 # the owner's report: who the task was
                if rec[_NAME] is None:
                    rec[_NAME], rec[_TYPE] = ev[5], ev[6]
                    if ev[7] is not None:
                        rec[_ACTOR] = ev[7]
                if rec[_ERR_TYPE] is not None:
                    return                  # the worker's own report says more
            rec[_ERR_TYPE], rec[_ERR_MSG] = ev[3], ev[4]
            rec[_END] = ts
        else:                               # pending: the owner's
            if rec[_NAME] is None:
                rec[_NAME], rec[_TYPE] = ev[3], ev[4]
                if ev[5] is not None:
                    rec[_ACTOR] = ev[5]
            if rec[_CREATED] is None or ts < rec[_CREATED]:
                rec[_CREATED] = ts
            if rec[_JOB] is None:
                rec[_JOB] = job_id
        cur = rec[_STATE]
        if cur is None or _RANK.get(state, 0) >= _RANK.get(cur, 0):
            rec[_STATE] = state

    # ---- records the GCS makes itself -------------------------------------
    def actor_registered(self, spec):
        """An actor's creation task is pending (the GCS schedules it)."""
        tid = spec.get("creation_task_id")
        if tid is None or spec.get("options", {}).get("enable_task_events") is False:
            return
        name = spec["meta"].get("class_name", "?") + ".__init__"
        self._queue((None, None, None, spec.get("job_id")), [
            (tid, PENDING_NODE_ASSIGNMENT, time.time(), name, ACTOR_CREATION_TASK,
             spec["actor_id"], 0)], 1)

    def driver_started(self, job_id, info):
        """Ray lists each job's driver as a DRIVER_TASK."""
        self._queue((info.get("node_id"), None, info.get("pid"), job_id), [
            (b"\xff" * 12 + job_id, RUNNING, time.time(), "driver", DRIVER_TASK, None, 1)], 1)

    def driver_finished(self, job_id):
        self._queue((None, None, None, job_id), [(b"\xff" * 12 + job_id, FINISHED, time.time())],
                    1)

    def counts(self):
        """{(state, name, type): records}: what the head's metrics endpoint
        exports as ray_tasks and what summarize_tasks shows; a few tuples
        however many records there are."""
        self.fold()
        out = {}
        for r in self.tasks.values():
            key = (r[_STATE], r[_NAME], r[_TYPE])
            out[key] = out.get(key, 0) + 1
        return out

    def spans(self, limit=None):
        """The timeline's columns of the records that ran (the first `limit`
        of them): a tuple per task, not a row dict with every field."""
        self.fold()
        out = []
        for tid, r in self.tasks.items():
            if r[_START] is None or r[_TYPE] == DRIVER_TASK:
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append((tid.hex(), r[_NAME], r[_TYPE], r[_STATE], _hex(r[_NODE]),
                        _hex(r[_WORKER]), r[_PID], _hex(r[_JOB]), _hex(r[_ACTOR]),
                        r[_ATTEMPT], r[_ERR_TYPE], r[_START], r[_END]))
        return {"spans": out, "total": len(self.tasks) + self.dropped_gcs}

    def query(self, job_id=None, limit=None, exclude_driver=False, where=None):
        """Ray's task rows of the records (of one job; without the drivers';
        matching `where`: [(column, "=" or "!=", value)] on the columns of
        WHERE, compared as the state API does, case-insensitive), the first
        `limit` of them only when a limit is given: a list call pays for the
        rows it returns, not for every record held."""
        self.fold()
        out = []
        matched = 0
        tests = [(WHERE[k], pred == "=", _norm(v)) for k, pred, v in (where or ())]
        for tid, r in self.tasks.items():
            if job_id is not None and r[_JOB] != job_id:
                continue
            if exclude_driver and r[_TYPE] == DRIVER_TASK:
                continue
            if tests and not all((_norm(get(tid, r)) == v) == eq for get, eq, v in tests):
                continue
            matched += 1
            if limit is not None and len(out) >= limit:
                continue
            out.append({
                "task_id": tid.hex(), "attempt_number": r[_ATTEMPT], "name": r[_NAME],
                "state": r[_STATE], "job_id": _hex(r[_JOB]), "actor_id": _hex(r[_ACTOR]),
                "type": r[_TYPE], "func_or_class_name": r[_NAME], "language": "PYTHON",
                "node_id": _hex(r[_NODE]), "worker_id": _hex(r[_WORKER]), "worker_pid": r[_PID],
                "error_type": r[_ERR_TYPE], "error_message": r[_ERR_MSG],
                "events": [{"state": s, "created_ms": _ms(t)} for s, t in
                           sorted(r[_EVENTS], key=lambda e: e[1])],
                "creation_time_ms": _ms(r[_CREATED]), "start_time_ms": _ms(r[_START]),
                "end_time_ms": _ms(r[_END]), "is_debugger_paused": False,
                "required_resources": {}, "runtime_env_info": {}, "parent_task_id": None,
                "placement_group_id": None, "profiling_data": {}, "task_log_info": None,
                "call_site": None, "label_selector": {}})
        return {"tasks": out,
                "num_status_task_events_dropped": self.dropped_events,
                "num_profile_task_events_dropped": 0,
                "num_tasks_dropped_gcs": self.dropped_gcs,
                "matched": matched,
                "total": matched + self.dropped_gcs}
