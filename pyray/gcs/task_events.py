"""The GCS's task records, built from the TASK_EVENTS batches every process
sends (pyray._private.task_events).  Bounded: past
``task_events_max_num_task_in_gcs`` tasks the oldest record goes, and is
counted as dropped (the state API reports the count, as Ray's
``num_status_task_events_dropped``)."""
from __future__ import annotations

import collections
import time

from pyray._private.protocol import TASK_EVENTS
from pyray._private.task_events import (ACTOR_CREATION_TASK, DRIVER_TASK, FAILED, FINISHED,
                                        PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, RUNNING,
                                        SUBMITTED_TO_WORKER)

# a record's state is the furthest one reached (events of one task come from
# its owner and from its worker, in either order)
_RANK = {PENDING_ARGS_AVAIL: 0, PENDING_NODE_ASSIGNMENT: 1, SUBMITTED_TO_WORKER: 2,
         RUNNING: 3, FINISHED: 4, FAILED: 4}


def _hex(b):
    return b.hex() if isinstance(b, (bytes, bytearray)) else b


class TaskEventStore:
    def __init__(self, limit):
        self.limit = max(1, int(limit))
        self.tasks = collections.OrderedDict()      # task id -> record (dict), oldest first
        self.dropped_gcs = 0        # records evicted by the bound
        self.dropped_workers = 0    # events processes dropped before sending them

    def h_task_events(self, msg, frames=None):
        m = TASK_EVENTS.parse(msg)
        node_id, worker_id, pid, job_id = m.source
        self.dropped_workers += m.dropped or 0
        for ev in m.events:
            self.add(ev, node_id, worker_id, pid, job_id)

    def _record(self, task_id, job_id):
        rec = self.tasks.get(task_id)
        if rec is None:
            if len(self.tasks) >= self.limit:
                self.tasks.popitem(last=False)
                self.dropped_gcs += 1
            rec = self.tasks[task_id] = {
                "task_id": _hex(task_id), "attempt_number": 0, "name": None, "state": None,
                "job_id": _hex(job_id), "actor_id": None, "type": None,
                "func_or_class_name": None, "language": "PYTHON", "node_id": None,
                "worker_id": None, "worker_pid": None, "error_type": None,
                "error_message": None, "events": [], "creation_time_ms": None,
                "start_time_ms": None, "end_time_ms": None, "is_debugger_paused": None}
        return rec

    def add(self, ev, node_id=None, worker_id=None, pid=None, job_id=None):
        task_id, state, ts = ev[0], ev[1], ev[2]
        rec = self._record(task_id, job_id)
        ms = int(ts * 1000)
        if len(ev) > 3 and state != FAILED:
            name, ttype, actor_id, attempt = ev[3], ev[4], ev[5], ev[6]
            rec["name"] = name
            rec["func_or_class_name"] = name
            rec["type"] = ttype
            if actor_id is not None:
                rec["actor_id"] = _hex(actor_id)
            if state == RUNNING:
                attempt = max(0, attempt - 1)     # the wire counts from 1, Ray from 0
                if attempt > rec["attempt_number"]:
                    # a retry: the record follows the newest attempt
                    rec["state"] = None
                    rec["error_type"] = rec["error_message"] = rec["end_time_ms"] = None
                    rec["attempt_number"] = attempt
                rec["node_id"], rec["worker_id"], rec["worker_pid"] = \
                    _hex(node_id), _hex(worker_id), pid
                rec["start_time_ms"] = ms
                rec["_start_us"] = ts * 1e6
                if job_id is not None:
                    rec["job_id"] = _hex(job_id)
            elif rec["creation_time_ms"] is None or ms < rec["creation_time_ms"]:
                rec["creation_time_ms"] = ms
        elif state == FAILED:
            if len(ev) > 5 and rec["name"] is None:     # the owner's: who the task was
                rec["name"] = rec["func_or_class_name"] = ev[5]
                rec["type"] = ev[6]
                if ev[7] is not None:
                    rec["actor_id"] = _hex(ev[7])
            if rec["error_type"] is not None and len(ev) > 5:
                return      # the worker's own report of the failure says more
            rec["error_type"], rec["error_message"] = ev[3], ev[4]
            rec["end_time_ms"] = ms
            rec["_end_us"] = ts * 1e6
        elif state == FINISHED:
            rec["end_time_ms"] = ms
            rec["_end_us"] = ts * 1e6
        rec["events"].append({"state": state, "created_ms": ms})
        if rec["state"] is None or _RANK.get(state, 0) >= _RANK.get(rec["state"], 0):
            rec["state"] = state

    # ---- records the GCS makes itself -------------------------------------
    def actor_registered(self, spec):
        """An actor's creation task is pending (the GCS schedules it)."""
        tid = spec.get("creation_task_id")
        if tid is None or spec.get("options", {}).get("enable_task_events") is False:
            return
        name = spec["meta"].get("class_name", "?") + ".__init__"
        self.add((tid, PENDING_NODE_ASSIGNMENT, time.time(), name, ACTOR_CREATION_TASK,
                  spec["actor_id"], 0), job_id=spec.get("job_id"))

    def driver_started(self, job_id, info):
        """Ray lists each job's driver as a DRIVER_TASK."""
        tid = b"driver:" + job_id
        self.add((tid, RUNNING, time.time(), "driver", DRIVER_TASK, None, 0),
                 info.get("node_id"), None, info.get("pid"), job_id)
        self.tasks[tid]["task_id"] = (b"\xff" * 12 + job_id).hex()

    def driver_finished(self, job_id):
        tid = b"driver:" + job_id
        if tid in self.tasks:
            self.add((tid, FINISHED, time.time()))

    def query(self, job_id=None):
        if job_id is None:
            tasks = list(self.tasks.values())
        else:
            jid = _hex(job_id)
            tasks = [r for r in self.tasks.values() if r["job_id"] == jid]
        return {"tasks": [dict(r, events=list(r["events"])) for r in tasks],
                "num_status_task_events_dropped": self.dropped_workers,
                "num_profile_task_events_dropped": 0,
                "num_tasks_dropped_gcs": self.dropped_gcs,
                "total": len(tasks) + self.dropped_gcs}
