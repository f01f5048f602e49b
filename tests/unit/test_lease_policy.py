"""The owner's dispatch and lease-request decisions (lease_policy), without
processes: leases are plain records."""
from types import SimpleNamespace

import pytest

from pyray._private.lease_policy import (BURST_FACTOR, FAST_REPLY_S, MAX_LEASE_REQUESTS,
                                         answered_fast, inflight_limit,
                                         lease_requests_to_send, pick_lease)

NOW = 100.0


def lease(inflight=0, fast=False, progress=NOW, reclaim=False, name=""):
    return SimpleNamespace(inflight=dict.fromkeys(range(inflight)), fast=fast,
                           progress=progress, reclaim=reclaim, name=name)


# ---------------------------------------------------------------- requests
@pytest.mark.parametrize("queued,pending,expected", [
    (0, 0, 0),
    (1, 0, 1),
    (5, 2, 3),
    (5, 5, 0),
    (3, 7, 0),                          # more out than needed: none taken back
    (1000, 0, MAX_LEASE_REQUESTS),      # a burst asks for at most the cap
    (1000, MAX_LEASE_REQUESTS - 1, 1),
    (1000, MAX_LEASE_REQUESTS, 0),
])
def test_one_lease_request_per_queued_task_up_to_the_cap(queued, pending, expected):
    assert lease_requests_to_send(queued, pending) == expected


# ---------------------------------------------------------------- burst
def test_one_task_per_worker_unless_a_burst():
    assert inflight_limit(queued=4, num_leases=1, max_inflight=10) == 1
    assert inflight_limit(queued=BURST_FACTOR, num_leases=1, max_inflight=10) == 1
    assert inflight_limit(queued=BURST_FACTOR + 1, num_leases=1, max_inflight=10) == 10
    assert inflight_limit(queued=2 * BURST_FACTOR, num_leases=2, max_inflight=10) == 1
    assert inflight_limit(queued=100, num_leases=2, max_inflight=7) == 7


def test_no_leases_and_a_queue_is_a_burst():
    assert inflight_limit(queued=1, num_leases=0, max_inflight=3) == 3


# ---------------------------------------------------------------- picking
def test_an_idle_worker_is_picked_first():
    busy = lease(inflight=1, fast=True)
    idle = lease(inflight=0)
    assert pick_lease([busy, idle], limit=4, now=NOW) is idle


def test_no_lease_no_pick():
    assert pick_lease([], limit=4, now=NOW) is None


def test_a_lease_being_taken_back_gets_nothing():
    assert pick_lease([lease(reclaim=True)], limit=4, now=NOW) is None


def test_a_busy_worker_gets_more_only_while_it_answers_fast():
    fast = lease(inflight=1, fast=True, progress=NOW)
    slow = lease(inflight=1, fast=False, progress=NOW)
    assert pick_lease([fast], limit=4, now=NOW) is fast
    assert pick_lease([slow], limit=4, now=NOW) is None


def test_a_fast_worker_that_has_been_quiet_too_long_gets_nothing_more():
    stale = lease(inflight=1, fast=True, progress=NOW - 2 * FAST_REPLY_S)
    assert pick_lease([stale], limit=4, now=NOW) is None
    recent = lease(inflight=1, fast=True, progress=NOW - FAST_REPLY_S / 2)
    assert pick_lease([recent], limit=4, now=NOW) is recent


def test_the_limit_caps_tasks_in_flight():
    full = lease(inflight=4, fast=True)
    assert pick_lease([full], limit=4, now=NOW) is None
    assert pick_lease([lease(inflight=3, fast=True)], limit=4, now=NOW) is not None
    # outside a burst (limit 1) a busy worker never gets a second task
    assert pick_lease([lease(inflight=1, fast=True)], limit=1, now=NOW) is None


def test_the_least_loaded_fast_worker_wins():
    a = lease(inflight=3, fast=True, name="a")
    b = lease(inflight=1, fast=True, name="b")
    c = lease(inflight=2, fast=True, name="c")
    assert pick_lease([a, b, c], limit=8, now=NOW) is b


def test_ties_go_to_the_first():
    a = lease(inflight=0, name="a")
    b = lease(inflight=0, name="b")
    assert pick_lease([a, b], limit=1, now=NOW) is a


def test_a_burst_spreads_over_workers():
    """Carrying out the decisions: tasks go round the fast workers while
    they answer quickly, never past the limit."""
    leases = [lease(fast=True, name=str(i)) for i in range(3)]
    queued = 20
    limit = inflight_limit(queued, len(leases), max_inflight=4)
    assert limit == 4
    sent = 0
    while queued:
        best = pick_lease(leases, limit, NOW)
        if best is None:
            break
        best.inflight[sent] = None
        sent += 1
        queued -= 1
    assert sent == 12
    assert [len(l.inflight) for l in leases] == [4, 4, 4]


# ---------------------------------------------------------------- fast rule
def test_a_reply_is_fast_within_the_window():
    assert answered_fast(NOW + FAST_REPLY_S / 2, NOW)
    assert not answered_fast(NOW + 2 * FAST_REPLY_S, NOW)
    assert not answered_fast(NOW + 1.0, NOW)
