"""Schedulers fed synthetic results (stand-in trials and controller, no
processes): each stops, pauses and promotes exactly the trials it should."""

import json
import random
from dataclasses import dataclass

import numpy as np
import pytest
from tune_fakes import FakeController, FakeTrial

from pyray import tune
from pyray.tune.error import TuneError
from pyray.tune.schedulers import (
    ASHAScheduler, AsyncHyperBandScheduler, FIFOScheduler, HyperBandForBOHB, HyperBandScheduler,
    MedianStoppingRule, PopulationBasedTraining, TrialScheduler, create_scheduler,
)

CONTINUE, PAUSE, STOP, NOOP = (TrialScheduler.CONTINUE, TrialScheduler.PAUSE,
                               TrialScheduler.STOP, TrialScheduler.NOOP)


def started(scheduler, n, controller=None, **config):
    ctl = controller or FakeController()
    trials = []
    for i in range(n):
        t = FakeTrial(config=dict(config, i=i))
        ctl.add(scheduler, t)
        t.status = "RUNNING"
        trials.append(t)
    return ctl, trials


def res(t, value, metric="acc", time_attr="training_iteration"):
    return {time_attr: t, metric: value}


# ---------------------------------------------------------------------- ASHA
def test_asha_rungs_and_cutoffs_with_reduction_2():
    s = ASHAScheduler(metric="acc", mode="max", grace_period=1, max_t=8, reduction_factor=2)
    assert AsyncHyperBandScheduler is ASHAScheduler
    assert [m for m, _ in s._brackets[0].rungs] == [8, 4, 2, 1]
    ctl, (a, b, c, d) = started(s, 4)
    # rung 1: the cutoff is the median (50th percentile) of the scores before
    assert s.on_trial_result(ctl, a, res(1, 1.0)) == CONTINUE   # first: no cutoff
    assert s.on_trial_result(ctl, b, res(1, 2.0)) == CONTINUE   # cutoff 1.0
    assert s._brackets[0].cutoff(s._brackets[0].rungs[-1][1]) == 1.5
    assert s.on_trial_result(ctl, c, res(1, 0.5)) == STOP       # 0.5 < 1.5
    assert s.on_trial_result(ctl, d, res(1, 1.6)) == CONTINUE   # cutoff median(1, 2, .5) = 1
    assert s._brackets[0].cutoff(s._brackets[0].rungs[-1][1]) == pytest.approx(1.3)
    # between rungs nothing is decided
    assert s.on_trial_result(ctl, d, res(1.5, -100)) == CONTINUE
    # rung 2
    assert s.on_trial_result(ctl, b, res(2, 3.0)) == CONTINUE
    assert s.on_trial_result(ctl, d, res(2, 2.5)) == STOP       # 2.5 < 3
    assert s.on_trial_result(ctl, a, res(2, 2.9)) == CONTINUE   # cutoff median(3, 2.5) = 2.75
    # rung 4, then max_t stops everyone
    assert s.on_trial_result(ctl, a, res(4, 5.0)) == CONTINUE
    assert s.on_trial_result(ctl, b, res(4, 4.0)) == STOP
    assert s.on_trial_result(ctl, a, res(8, 6.0)) == STOP
    assert s._num_stopped == 4
    assert "num_stopped=4" in s.debug_string()


def test_asha_min_mode_and_percentile_for_reduction_4():
    s = ASHAScheduler(metric="loss", mode="min", grace_period=2, max_t=32, reduction_factor=4)
    assert [m for m, _ in s._brackets[0].rungs] == [32, 8, 2]
    ctl, trials = started(s, 6)
    losses = [5.0, 1.0, 3.0, 2.0, 4.0]
    for t, loss in zip(trials, losses):
        s.on_trial_result(ctl, t, res(2, loss, "loss"))
    # cutoff: 75th percentile of the negated losses (-5, -1, -3, -2, -4) = -2
    recorded = s._brackets[0].rungs[-1][1]
    assert s._brackets[0].cutoff(recorded) == pytest.approx(np.percentile([-5, -1, -3, -2, -4], 75))
    assert s.on_trial_result(ctl, trials[5], res(2, 2.5, "loss")) == STOP
    ctl2, (t2,) = started(s, 1)
    assert s.on_trial_result(ctl2, t2, res(2, 1.5, "loss")) == CONTINUE


def test_asha_finds_the_best_of_a_known_objective():
    # score = rate * step with a per-trial rate: the fastest trial must be the
    # one that reaches max_t, and every decision at a rung must follow the
    # rule (stop iff below the median of the scores recorded there before)
    s = ASHAScheduler(metric="score", mode="max", grace_period=1, max_t=16, reduction_factor=2)
    ctl, trials = started(s, 16)
    rates = [int(r) for r in np.random.default_rng(0).permutation(16) + 1]
    stopped_at, arrivals = {}, {1: [], 2: [], 4: [], 8: []}
    for step in range(1, 17):
        for i in range(16):
            if i in stopped_at:
                continue
            score = rates[i] * step
            decision = s.on_trial_result(ctl, trials[i], res(step, score, "score"))
            if step in arrivals:
                before = arrivals[step]
                expect_stop = bool(before) and score < np.percentile(before, 50)
                assert (decision == STOP) == expect_stop, (i, step, score, before)
                before.append(score)
            elif step < 16:
                assert decision == CONTINUE
            if decision == STOP:
                stopped_at[i] = step
    assert stopped_at[rates.index(16)] == 16
    assert len(stopped_at) == 16
    assert sum(1 for v in stopped_at.values() if v < 16) >= 8


def test_asha_stop_last_trials_false_lets_the_best_run_on():
    s = ASHAScheduler(metric="acc", mode="max", grace_period=1, max_t=2, reduction_factor=2,
                      stop_last_trials=False)
    ctl, (a,) = started(s, 1)
    for step in range(1, 6):
        assert s.on_trial_result(ctl, a, res(step, 1.0)) == CONTINUE


def test_asha_bad_arguments_and_missing_metric_mode():
    with pytest.raises(AssertionError, match="grace_period"):
        ASHAScheduler(grace_period=0)
    with pytest.raises(ValueError, match="Reduction Factor"):
        ASHAScheduler(reduction_factor=1)
    with pytest.raises(ValueError, match="'min' or 'max'"):
        ASHAScheduler(metric="a", mode="best")
    with pytest.raises(ValueError, match="instantiated without a valid `metric`"):
        FakeController().add(ASHAScheduler(), FakeTrial())
    s = ASHAScheduler(metric="acc", mode="max")
    assert not s.set_search_properties("loss", "min")  # already configured
    s = ASHAScheduler()
    assert s.set_search_properties("loss", "min") and s._metric_op == -1.0
    # results without the metric are not judged
    ctl, (t,) = started(s, 1)
    assert s.on_trial_result(ctl, t, {"training_iteration": 1}) == CONTINUE


# ----------------------------------------------------------------- HyperBand
def test_hyperband_bracket_sizes_and_milestones():
    s = HyperBandScheduler(metric="acc", mode="max", max_t=9, reduction_factor=3)
    assert s._s_max_1 == 3
    assert [(s._get_n0(k), s._get_r0(k)) for k in range(3)] == [(3, 9), (5, 3), (9, 1)]
    s = HyperBandScheduler(metric="acc", mode="max", max_t=81, reduction_factor=3)
    assert [(s._get_n0(k), s._get_r0(k)) for k in range(5)] == [
        (5, 81), (8, 27), (15, 9), (34, 3), (81, 1)]
    ctl, trials = started(s, 5 + 8 + 1)
    bands = s._hyperbands[0]
    assert [len(b.current_trials()) for b in bands] == [5, 8, 1]


def test_hyperband_pauses_until_the_bracket_is_done_then_promotes_the_best():
    s = HyperBandScheduler(metric="acc", mode="max", max_t=9, reduction_factor=3)
    ctl, trials = started(s, 8)
    small, big = trials[:3], trials[3:]          # brackets s=0 (3 trials), s=1 (5 trials)
    for t in small:
        t.status = "PENDING"
    scores = {big[0]: 1.0, big[1]: 5.0, big[2]: 3.0, big[3]: 4.0, big[4]: 2.0}
    for t in big[:4]:
        assert s.on_trial_result(ctl, t, res(1, scores[t])) == CONTINUE
        assert s.on_trial_result(ctl, t, res(3, scores[t])) == PAUSE
        t.status = "PAUSED"
    assert not ctl.stopped
    # the last trial of the bracket reaches the milestone: keep ceil(5/3) = 2
    assert s.on_trial_result(ctl, big[4], res(3, scores[big[4]])) == STOP
    assert set(ctl.stopped) == {big[0], big[2]}   # paused and bad: stopped by the scheduler
    # the good ones stay paused until chosen to run again
    assert big[1].status == "PAUSED" and big[3].status == "PAUSED"
    bracket = s._trial_info[big[1]][0]
    assert bracket.trials_to_unpause == {big[1], big[3]} and bracket._cumul_r == 9
    chosen = s.choose_trial_to_run(ctl)
    assert chosen in (big[1], big[3], *small)
    # promoted trials run to the next milestone min(3 * 3, max_t) = 9; then the bracket is done
    big[1].status = big[3].status = "RUNNING"
    assert s.on_trial_result(ctl, big[1], res(9, 6.0)) == PAUSE
    big[1].status = "PAUSED"
    assert s.on_trial_result(ctl, big[3], res(9, 7.0)) == STOP
    assert big[1] in ctl.stopped
    # the s=0 bracket runs its trials to max_t without halving
    for t in small:
        t.status = "RUNNING"
        assert s.on_trial_result(ctl, t, res(8, 1.0)) == CONTINUE
    for t in small[:2]:
        assert s.on_trial_result(ctl, t, res(9, 1.0)) == PAUSE
        t.status = "PAUSED"
    assert s.on_trial_result(ctl, small[2], res(9, 1.0)) == STOP
    assert set(small[:2]) <= set(ctl.stopped)


def test_hyperband_choose_trial_prefers_least_complete_bracket():
    s = HyperBandScheduler(metric="acc", mode="max", max_t=9, reduction_factor=3)
    ctl = FakeController()
    trials = [FakeTrial() for _ in range(8)]
    for t in trials:
        ctl.add(s, t)
    assert s.choose_trial_to_run(ctl) is trials[0]
    for t in trials[:3]:
        t.status = "RUNNING"
        s.on_trial_result(ctl, t, res(5, 1.0))
    # bracket 0 is more complete now: bracket 1's pending trial goes first
    assert s.choose_trial_to_run(ctl) is trials[3]


def test_hyperband_for_bohb_fills_largest_bracket_first_and_pauses_early():
    s = HyperBandForBOHB(metric="acc", mode="max", max_t=9, reduction_factor=3)
    ctl, trials = started(s, 4)
    assert s._hyperbands[0][0]._n0 == 9           # largest bracket (s=2) first
    # bracket not full: a trial at its milestone pauses
    assert s.on_trial_result(ctl, trials[0], res(1, 1.0)) == PAUSE
    trials[0].status = "PAUSED"
    # nothing running: choose_trial_to_run halves the paused bracket
    for t, score in zip(trials[1:], (2.0, 0.5, 3.0)):
        assert s.on_trial_result(ctl, t, res(1, score)) == PAUSE
        t.status = "PAUSED"
    # the bracket of 9 keeps ceil(9 / 3) = 3: the worst of the 4 is stopped
    nxt = s.choose_trial_to_run(ctl)
    assert ctl.stopped == [trials[2]]
    bracket = s._trial_info[trials[0]][0]
    assert bracket.trials_to_unpause == {trials[0], trials[1], trials[3]}
    assert nxt is trials[0]


# ------------------------------------------------------------ median stopping
def test_median_stopping_rule():
    s = MedianStoppingRule(time_attr="t", metric="loss", mode="min", grace_period=1,
                           min_samples_required=2)
    ctl, (a, b, c, d) = started(s, 4)
    for step in (1, 2, 3):
        assert s.on_trial_result(ctl, a, {"t": step, "loss": 1.0}) == CONTINUE or step == 1
        s.on_trial_result(ctl, b, {"t": step, "loss": 2.0})
    # median of the running means at t=1 (1.0, 2.0) is 1.5; c's best 5 is worse
    assert s.on_trial_result(ctl, c, {"t": 1, "loss": 5.0}) == STOP
    # d's best 1.2 beats the median of (1, 2, 5) = 2
    assert s.on_trial_result(ctl, d, {"t": 1, "loss": 1.2}) == CONTINUE
    # running means use results from grace_period up to t: at t=3, a=1, b=2 -> 1.5
    assert s.on_trial_result(ctl, d, {"t": 3, "loss": 1.6}) == CONTINUE  # best so far is 1.2
    assert "num_stopped=1" in s.debug_string()


def test_median_stopping_grace_period_min_samples_and_soft_stop():
    s = MedianStoppingRule(time_attr="t", metric="acc", mode="max", grace_period=5,
                           min_samples_required=1, hard_stop=False)
    ctl, (a, b) = started(s, 2)
    assert s.on_trial_result(ctl, a, {"t": 4, "acc": 0.0}) == CONTINUE   # grace period
    # not enough samples (nobody else reached t=5); nobody waiting: continue
    assert s.on_trial_result(ctl, a, {"t": 5, "acc": 1.0}) == CONTINUE
    assert s.on_trial_result(ctl, b, {"t": 5, "acc": 0.5}) == PAUSE      # soft stop
    assert s.on_trial_result(ctl, b, {"t": 6, "acc": 0.1}) == CONTINUE   # then FIFO


def test_median_stopping_yields_when_others_wait():
    s = MedianStoppingRule(time_attr="t", metric="acc", mode="max", grace_period=0,
                           min_samples_required=3, min_time_slice=2)
    ctl, (a, waiting) = started(s, 2)
    waiting.status = "PENDING"
    assert s.on_trial_result(ctl, a, {"t": 3, "acc": 1.0}) == PAUSE
    assert s.on_trial_result(ctl, a, {"t": 4, "acc": 1.0}) == CONTINUE  # time slice of 2
    assert s.on_trial_result(ctl, a, {"t": 6, "acc": 1.0}) == PAUSE


# ----------------------------------------------------------------------- PBT
@dataclass
class FakeCheckpoint:
    path: str


def make_pbt(**kw):
    args = dict(time_attr="training_iteration", metric="score", mode="max",
                perturbation_interval=2, quantile_fraction=0.25, resample_probability=0.0,
                hyperparam_mutations={"lr": tune.uniform(0.001, 0.1), "bs": [16, 32, 64, 128]},
                log_config=False)
    args.update(kw)
    return PopulationBasedTraining(**args)


def test_pbt_exploits_the_best_trial_checkpoint_and_perturbs_within_bounds():
    random.seed(0)
    s = make_pbt()
    ctl, trials = started(s, 4, lr=0.01, bs=32)
    for t in trials:
        t.checkpoint = FakeCheckpoint(f"{t.trial_id}/checkpoint_000001")
    worst, best = trials[3], trials[0]
    assert s.on_trial_result(ctl, best, res(1, 4.0, "score")) == CONTINUE  # before the interval
    # reports in increasing score order: each reporter is in the top quantile
    for t, score in ((worst, 1.0), (trials[2], 2.0), (trials[1], 3.0), (best, 4.0)):
        assert s.on_trial_result(ctl, t, res(2, score, "score")) == CONTINUE
    assert not ctl.paused
    # quantile size ceil(4 * .25) = 1: at its next perturbation the worst clones the best
    assert s.on_trial_result(ctl, worst, res(4, 1.0, "score")) == NOOP
    assert ctl.paused == [worst]
    assert worst.restore_checkpoint == best.checkpoint
    assert worst.restore_checkpoint is not best.checkpoint  # a copy
    assert worst.config["lr"] in (pytest.approx(0.012), pytest.approx(0.008))
    assert worst.config["bs"] in (16, 64)                   # a neighbour in the list
    assert worst.config["i"] == best.config["i"]            # the rest is copied
    assert "@perturbed[" in worst.experiment_tag
    assert s._num_perturbations == 1
    for t in trials[:3]:
        assert t.restore_checkpoint is None and t.config["lr"] == 0.01


def test_pbt_explore_resample_and_bounds():
    from pyray.tune.schedulers.pbt import explore
    random.seed(1)
    muts = {"lr": tune.uniform(0.1, 0.2), "bs": [1, 2, 3], "n": {"d": tune.choice([0.5, 0.6])},
            "k": lambda: 7}
    config = {"lr": 0.15, "bs": 3, "n": {"d": 0.5}, "k": 3, "other": "x"}
    for _ in range(50):
        new, ops = explore(config, muts, 1.0, (1.2, 0.8), None)  # always resample
        assert 0.1 <= new["lr"] < 0.2 and new["bs"] in (1, 2, 3) and new["n"]["d"] in (0.5, 0.6)
        assert new["k"] == 7 and type(new["k"]) is int and new["other"] == "x"
        assert ops["lr"] == "resample"
    for _ in range(50):
        new, ops = explore(config, muts, 0.0, (1.2, 0.8), None)  # always perturb
        assert new["bs"] in (2, 3)                               # 3 is the right end: clamped
        assert new["lr"] in (pytest.approx(0.18), pytest.approx(0.12))
        assert new["k"] in (3, 2)                                # int(3 * 1.2), int(3 * 0.8)
    new, _ = explore(config, muts, 0.0, (1.2, 0.8), lambda c: dict(c, lr=0.5))
    assert new["lr"] == 0.5


def test_pbt_fills_missing_hyperparameters_on_add():
    random.seed(0)
    s = make_pbt()
    ctl, (t,) = started(s, 1)
    assert 0.001 <= t.config["lr"] < 0.1 and t.config["bs"] in (16, 32, 64, 128)


def test_pbt_without_checkpoints_is_a_clear_error():
    s = make_pbt()
    ctl, trials = started(s, 2, lr=0.01, bs=32)
    s.on_trial_result(ctl, trials[0], res(2, 5.0, "score"))
    with pytest.raises(TuneError, match="needs checkpointing trainables"):
        s.on_trial_result(ctl, trials[1], res(2, 1.0, "score"))
    assert ctl.paused == []


def test_pbt_pauses_for_waiting_trials_and_chooses_least_trained():
    s = make_pbt()
    ctl, trials = started(s, 3, lr=0.01, bs=32)
    trials[2].status = "PENDING"
    for t in trials:
        t.checkpoint = FakeCheckpoint(t.trial_id)
    assert s.on_trial_result(ctl, trials[0], res(2, 1.0, "score")) == PAUSE
    trials[0].status = "PAUSED"
    assert s.choose_trial_to_run(ctl) is trials[2]  # never trained


def test_pbt_synch_waits_for_all_then_perturbs_together():
    random.seed(0)
    s = make_pbt(synch=True)
    ctl, trials = started(s, 4, lr=0.01, bs=32)
    for t in trials:
        t.checkpoint = FakeCheckpoint(t.trial_id)
    for t, score in zip(trials[:3], (4.0, 3.0, 2.0)):
        assert s.on_trial_result(ctl, t, res(2, score, "score")) == PAUSE
        t.status = "PAUSED"
    assert ctl.paused == []
    # the last one reaches the sync point: the worst (itself, 1.0) clones the best
    assert s.on_trial_result(ctl, trials[3], res(2, 1.0, "score")) == NOOP
    assert trials[3].restore_checkpoint == trials[0].checkpoint
    assert s._next_perturbation_sync == 4


def test_pbt_bad_arguments():
    with pytest.raises(TuneError, match="at least one of"):
        PopulationBasedTraining(metric="a", mode="max")
    with pytest.raises(ValueError, match="quantile_fraction"):
        make_pbt(quantile_fraction=0.6)
    with pytest.raises(ValueError, match="perturbation_interval"):
        make_pbt(perturbation_interval=0)
    with pytest.raises(ValueError, match="sample_from"):
        make_pbt(hyperparam_mutations={"a": tune.sample_from(lambda: 1)})
    with pytest.raises(TypeError, match="hyperparam_mutation"):
        make_pbt(hyperparam_mutations={"a": 3})
    s = make_pbt()
    ctl, (t,) = started(s, 1, lr=0.1, bs=16)
    with pytest.raises(RuntimeError, match="Cannot find metric score"):
        s.on_trial_result(ctl, t, {"training_iteration": 1, "acc": 1})


def test_create_scheduler_by_name():
    assert isinstance(create_scheduler("async_hyperband", metric="a", mode="max"), ASHAScheduler)
    assert isinstance(create_scheduler("fifo"), FIFOScheduler)
    with pytest.raises(ValueError, match="must be one of"):
        create_scheduler("nope")


def test_scheduler_save_restore(tmp_path):
    s = ASHAScheduler(metric="acc", mode="max", grace_period=1, max_t=8, reduction_factor=2)
    ctl, (a, b) = started(s, 2)
    s.on_trial_result(ctl, a, res(1, 3.0))
    s.save(str(tmp_path / "s.pkl"))
    r = ASHAScheduler()
    r.restore(str(tmp_path / "s.pkl"))
    assert r.metric == "acc" and r.on_trial_result(ctl, b, res(1, 1.0)) == STOP


def test_pbt_refuses_a_search_algorithm():
    from pyray.tune.search import Repeater, SearchGenerator, Searcher

    class OneConfig(Searcher):
        def suggest(self, trial_id):
            return {"lr": 0.1}

    ctl = FakeController()
    ctl.searcher = SearchGenerator(Repeater(OneConfig(), repeat=2))
    with pytest.raises(ValueError, match="Search algorithms cannot be used"):
        ctl.add(make_pbt(), FakeTrial(config={"lr": 0.1, "bs": 16}))


def test_pbt_logs_its_policy_and_replay_follows_it(tmp_path):
    from pyray.tune.schedulers import PopulationBasedTrainingReplay
    random.seed(0)
    s = make_pbt(log_config=True)
    ctl = FakeController()
    trials = []
    for i in range(4):
        t = FakeTrial(config={"lr": 0.01, "bs": 32}, local_path=str(tmp_path / f"t{i}"))
        t.experiment_tag = f"{i}_lr=0.01"
        t.experiment_path = str(tmp_path)
        t.checkpoint = FakeCheckpoint(f"t{i}")
        ctl.add(s, t)
        t.status = "RUNNING"
        trials.append(t)
    worst, best = trials[3], trials[0]
    for t, score in ((worst, 1.0), (trials[2], 2.0), (trials[1], 3.0), (best, 4.0)):
        t.last_result = res(2, score, "score")
        s.on_trial_result(ctl, t, t.last_result)
    worst.last_result = res(4, 1.0, "score")
    assert s.on_trial_result(ctl, worst, worst.last_result) == NOOP
    policy_file = tmp_path / f"pbt_policy_{worst.trial_id}.txt"
    assert (tmp_path / "pbt_global.txt").exists() and policy_file.exists()
    row = json.loads(policy_file.read_text().splitlines()[-1])
    assert row[:4] == ["3_lr=0.01", "0_lr=0.01", 4, 2] and row[5] == worst.config

    replay = PopulationBasedTrainingReplay(str(policy_file))
    rctl = FakeController()
    t = FakeTrial()
    rctl.add(replay, t)
    assert t.config == {"lr": 0.01, "bs": 32}  # the cloned trial's config at the exploit
    t.status = "RUNNING"
    t.checkpoint = FakeCheckpoint("own")
    assert replay.on_trial_result(rctl, t, res(1, 0.0, "score")) == CONTINUE
    assert replay.on_trial_result(rctl, t, res(2, 0.0, "score")) == NOOP
    assert t.config == worst.config and t.restore_checkpoint == FakeCheckpoint("own")
    assert rctl.paused == [t]
    with pytest.raises(ValueError, match="More than one trial"):
        rctl.add(replay, FakeTrial())


@pytest.mark.parametrize("make", [
    lambda: MedianStoppingRule(time_attr="t", metric="m", mode="max", grace_period=0, min_samples_required=1),
    lambda: make_pbt(hyperparam_mutations={"lr": lambda: random.uniform(0, 1)}),
    lambda: HyperBandScheduler(metric="m", mode="max", max_t=9),
])
def test_every_scheduler_saves_and_restores(make, tmp_path):
    s = make()
    ctl, trials = started(s, 2, lr=0.1, bs=16)
    for t in trials:
        t.checkpoint = FakeCheckpoint(t.trial_id)
        s.on_trial_result(ctl, t, {"training_iteration": 1, "t": 1, "m": 1.0, "score": 1.0})
    s.save(str(tmp_path / "s.pkl"))
    again = type(s).__new__(type(s))
    again.restore(str(tmp_path / "s.pkl"))
    assert again.debug_string().split(":")[0] == s.debug_string().split(":")[0]
