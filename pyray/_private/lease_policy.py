"""How an owner spreads queued tasks over its leased workers: decisions
only, no I/O.  task_submitter carries them out.

* One lease request per queued task, at most MAX_LEASE_REQUESTS at once per
  scheduling key: tasks run one per worker unless a burst makes pipelining
  worthwhile, so a queue of N slow tasks must be able to use N workers.
* A worker gets more than one task in flight only during a burst (more than
  BURST_FACTOR queued tasks per lease), and then only while it answers
  quickly: its last reply came within FAST_REPLY_S of the one before (or of
  the push that woke it), and it made progress within FAST_REPLY_S.  A task
  is never queued behind one that has been running for a while.

A lease here is anything with ``inflight`` (a sized collection), ``reclaim``,
``fast`` and ``progress`` (a time.monotonic() value).
"""
from __future__ import annotations

MAX_LEASE_REQUESTS = 32
BURST_FACTOR = 4
FAST_REPLY_S = 0.002


def lease_requests_to_send(queued, pending):
    """How many more lease requests to send for a key with `queued` tasks
    waiting and `pending` requests already out."""
    want = queued if queued < MAX_LEASE_REQUESTS else MAX_LEASE_REQUESTS
    return want - pending if want > pending else 0


def inflight_limit(queued, num_leases, max_inflight):
    """Tasks in flight allowed per worker: several only for a burst."""
    return max_inflight if queued > BURST_FACTOR * num_leases else 1


def pick_lease(leases, limit, now):
    """The lease that gets the next queued task, or None if none may take
    one now: the least loaded among those under `limit` that are not being
    taken back, where a busy one qualifies only if it answers fast."""
    best = None
    for lease in leases:
        n = len(lease.inflight)
        if lease.reclaim or n >= limit:
            continue
        if n and (not lease.fast or now - lease.progress > FAST_REPLY_S):
            continue
        if best is None or n < len(best.inflight):
            best = lease
            if n == 0:
                break
    return best


def answered_fast(now, progress):
    """Whether a reply at `now` came quickly after the lease's last progress:
    only such a worker is given more than one task at a time."""
    return now - progress < FAST_REPLY_S
