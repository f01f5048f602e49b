"""FIFOScheduler and the TrialScheduler base's metric/mode handling."""

import pytest
from tune_fakes import FakeController, FakeTrial

from pyray.tune.schedulers import FIFOScheduler, TrialScheduler


def test_fifo_runs_pending_in_order_then_paused_and_never_stops():
    sched = FIFOScheduler()
    ctl = FakeController()
    a, b, c = FakeTrial(), FakeTrial(), FakeTrial()
    for t in (a, b, c):
        ctl.add(sched, t)
    b.status = "PAUSED"
    assert sched.choose_trial_to_run(ctl) is a
    a.status = "RUNNING"
    assert sched.choose_trial_to_run(ctl) is c
    c.status = "RUNNING"
    assert sched.choose_trial_to_run(ctl) is b
    b.status = "RUNNING"
    assert sched.choose_trial_to_run(ctl) is None
    for i in range(5):
        assert sched.on_trial_result(ctl, a, {"x": i}) == TrialScheduler.CONTINUE


def test_set_search_properties():
    s = FIFOScheduler()
    assert s.set_search_properties("loss", "min")
    assert (s.metric, s.mode) == ("loss", "min")
    assert not s.set_search_properties("acc", None)  # already has a metric
    with pytest.raises(ValueError, match="'min' or 'max'"):
        FIFOScheduler().set_search_properties("loss", "best")
    s = FIFOScheduler()
    s.set_search_properties(None, "max")
    assert s.metric == "_metric"
