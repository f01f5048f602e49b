"""The plain-class state machines, without processes: the autoscaling
policy and its metrics window, the replica chooser, the rollout plan."""
import collections

import pytest

from pyray.serve._controller import plan_replicas
from pyray.serve._router import ReplicaChooser
from pyray.serve.autoscaling_policy import AutoscalingPolicy, MetricsWindow
from pyray.serve.config import AutoscalingConfig, make_deployment_config


def policy(**kw):
    base = dict(min_replicas=1, max_replicas=10, target_ongoing_requests=2,
                upscale_delay_s=3, downscale_delay_s=10)
    base.update(kw)
    return AutoscalingPolicy(AutoscalingConfig(**base))


def test_upscale_waits_for_the_delay_and_a_dip_restarts_it():
    p = policy()
    assert p.decide(0.0, 1, 8.0) == 1            # wants 4, must hold 3 s
    assert p.decide(2.0, 1, 8.0) == 1
    assert p.decide(2.5, 1, 2.0) == 1            # back in band: the clock restarts
    assert p.decide(3.5, 1, 8.0) == 1
    assert p.decide(6.4, 1, 8.0) == 1
    assert p.decide(6.5, 1, 8.0) == 4


def test_downscale_delay_bounds_and_smoothing():
    p = policy(downscale_delay_s=5, min_replicas=2)
    assert p.decide(0, 6, 0.0) == 6
    assert p.decide(5, 6, 0.0) == 2              # min_replicas bounds it
    p = policy(upscale_delay_s=0, max_replicas=5)
    assert p.decide(0, 1, 100.0) == 5            # max_replicas bounds it
    p = policy(upscale_delay_s=0, upscaling_factor=0.5)
    assert p.decide(0, 2, 12.0) == 4             # wants 6: half the step
    assert p.desired(4, 7.0) == 4                # 3.5 replicas' worth: no change down


def test_no_flapping_on_a_noisy_load():
    """A load that swings around the target every sample never moves the count."""
    p = policy(upscale_delay_s=1, downscale_delay_s=1)
    w = MetricsWindow(look_back_period_s=2, stale_after_s=5)
    n, changes, t = 3, 0, 0.0
    for i in range(200):
        t += 0.1
        w.record("h", t, 6 + (3 if i % 2 else -3))  # 3..9 around 6 = 3 replicas' worth
        new = p.decide(t, n, w.total(t))
        changes += new != n
        n = new
    assert changes == 0 and n == 3


def test_scale_from_zero_is_immediate_and_to_zero_after_delay():
    p = policy(min_replicas=0, downscale_delay_s=2)
    assert p.decide(0, 0, 0.5) == 1
    assert p.decide(1, 1, 0.0) == 1
    assert p.decide(3.1, 1, 0.0) == 0
    assert p.decide(4, 0, None) == 0             # no metrics: hold


def test_metrics_window_averages_and_drops_stale_reporters():
    w = MetricsWindow(look_back_period_s=1.0, stale_after_s=2.0)
    w.record("a", 0.0, 2)
    w.record("a", 0.5, 4)
    w.record("b", 0.5, 1)
    assert w.total(0.6) == pytest.approx(3 + 1)
    assert w.total(1.2) == pytest.approx(4 + 1)  # a's first sample left the window
    assert w.total(1.9) == pytest.approx(4 + 1)  # nothing in the window: last samples
    assert w.total(5.0) is None


def test_replica_chooser_power_of_two_and_limits():
    c = ReplicaChooser(max_ongoing=2)
    c.set_replicas(["a", "b", "c"])
    picks = collections.Counter()
    for _ in range(6):
        r = c.choose()
        c.started(r)
        picks[r] += 1
    assert picks == {"a": 2, "b": 2, "c": 2}
    assert c.choose() is None                    # all at max_ongoing
    c.finished("b")
    assert c.choose() == "b"
    c.mark_dead("b")
    assert c.choose() is None
    c.set_replicas(["a", "b", "c"])              # a stale set still naming b
    assert "b" not in c.ongoing
    assert ReplicaChooser(max_queued=2).queue_full(2)
    assert not ReplicaChooser(max_queued=-1).queue_full(10 ** 6)


def test_plan_replicas_rolls_over_without_losing_capacity():
    assert plan_replicas(3, 0, 0, 0) == (3, 0, 0)
    assert plan_replicas(2, 0, 0, 2) == (2, 0, 0)    # new code: start new, keep old
    assert plan_replicas(2, 1, 1, 2) == (0, 1, 0)    # one new runs: one old goes
    assert plan_replicas(2, 0, 2, 1) == (0, 1, 0)
    assert plan_replicas(1, 0, 3, 0) == (0, 0, 2)    # downscale
    assert plan_replicas(0, 1, 1, 1) == (0, 1, 2)    # delete


def test_num_replicas_auto_and_config_errors():
    cfg = make_deployment_config({"num_replicas": "auto"})
    assert cfg.autoscaling_config.max_replicas == 100
    assert cfg.autoscaling_config.target_ongoing_requests == 2
    with pytest.raises(ValueError, match="num_replicas"):
        make_deployment_config({"num_replicas": 2, "autoscaling_config": {"max_replicas": 3}})
    with pytest.raises(ValueError, match="unknown or unsupported"):
        make_deployment_config({"autoscaling_config": {"max_replica": 3}})
    with pytest.raises(ValueError, match="max_queued_requests"):
        make_deployment_config({"max_queued_requests": -5})
