"""The experiment loop: it asks the search algorithm for configs, runs trials
on reused actors, feeds results to the scheduler and acts on its decisions,
writes the trial files and the experiment state.

The loop is event driven: one ``pyray.wait`` on the calls in flight (one per
running trial), with a timeout only for the next periodic job (snapshot,
status output, time budget); nothing polls per trial.
"""
from __future__ import annotations

import inspect
import logging
import os
import time
import traceback
import uuid

import pyray
import pyray.cloudpickle as cloudpickle
from pyray.exceptions import RayError, RayTaskError
from pyray.tune.error import TuneError
from pyray.tune.execution.trial_actor import TrialActor
from pyray.tune.execution import trial_files
from pyray.tune.experiment.trial import Trial
from pyray.tune.schedulers import FIFOScheduler, TrialScheduler
from pyray.tune.search import Searcher
from pyray.tune.trainable.trainable import Trainable
from pyray.tune.trainable.util import trial_resources

logger = logging.getLogger(__name__)

EXPERIMENT_STATE = "experiment_state.pkl"
SEARCHER_STATE = "search_gen_state.pkl"
TUNER_PKL = "tuner.pkl"
_AUTO_KEYS = frozenset((
    "done", "training_iteration", "timestamp", "date", "time_this_iter_s", "time_total_s",
    "pid", "hostname", "node_ip", "time_since_restore", "iterations_since_restore",
    "checkpoint_dir_name", "trial_id", "experiment_tag", "config", "should_checkpoint"))
_DEFAULT_METRIC = "_metric"
_SAVE_TIMEOUT_S = 600.0
_MAX_PENDING = 16           # trials drawn from the searcher ahead of free resources

_remote_actor = None


def _actor_class():
    global _remote_actor
    if _remote_actor is None:
        _remote_actor = pyray.remote(TrialActor)
    return _remote_actor


class _Slot:
    """A trial actor (and its placement group), idle or running a trial."""
    __slots__ = ("actor", "pgf", "pg", "trial", "dead")

    def __init__(self, actor, pgf, pg):
        self.actor, self.pgf, self.pg = actor, pgf, pg
        self.trial = None
        self.dead = False


class TuneController:
    def __init__(self, *, trainable, searcher, scheduler, metric, mode, experiment_path,
                 experiment_name, run_config, tune_config, stopper, reporter, trials=(),
                 exp_id=None, next_index=0):
        self.trainable = trainable
        self.trainable_name = _trainable_name(trainable)
        self.is_class = inspect.isclass(trainable) and issubclass(trainable, Trainable)
        self.searcher = searcher
        self.scheduler = scheduler
        self.metric, self.mode = metric, mode
        self.experiment_path = experiment_path
        self.experiment_name = experiment_name
        self.run_config = run_config
        self.tune_config = tune_config
        self.stopper = stopper
        self.reporter = reporter
        self.callbacks = list(run_config.callbacks or [])
        self.max_failures = run_config.failure_config.max_failures
        self.fail_fast = run_config.failure_config.fail_fast
        self.ckpt_config = run_config.checkpoint_config
        self.max_concurrent = tune_config.max_concurrent_trials or 0
        reuse = tune_config.reuse_actors
        if reuse is None:   # Ray's default: class trainables only with reset_config
            reuse = not self.is_class or trainable.reset_config is not Trainable.reset_config
        self.reuse = bool(reuse)
        self.exp_id = exp_id or uuid.uuid4().hex[:5]
        self.next_index = next_index
        self._trials = list(trials)
        self._live = {t.trial_id: t for t in self._trials if not t.is_finished()}
        self._fifo = type(scheduler) is FIFOScheduler
        self._slots = []
        self._futures = {}          # ref -> (slot, trial, op, seq)
        self._seq = 0
        self._writers = {}          # trial_id -> TrialWriter of a live trial
        self._files = trial_files.BackgroundWriter()
        self._searcher_done = False
        self._iteration = 0
        self._stop_everything = False
        self.fatal_trial_error = None
        self._dirty = True
        self._last_snapshot = 0.0
        self._snapshot_interval = 0.5
        self._deadline = None
        if tune_config.time_budget_s:
            b = tune_config.time_budget_s
            self._deadline = time.monotonic() + (b.total_seconds() if hasattr(
                b, "total_seconds") else float(b))
        self._required_metrics = self._metrics_to_check()
        self._trainable_ref = None

    # ------------------------------------------------------------------ API
    # what schedulers may call (Ray's TuneController names)
    def get_trials(self):
        return self._trials

    def get_live_trials(self):
        return list(self._live.values())

    def pause_trial(self, trial, should_checkpoint=True):
        if trial.status == Trial.RUNNING:
            self._end_running(trial, Trial.PAUSED, save=should_checkpoint)
        elif trial.status == Trial.PENDING:
            trial.status = Trial.PAUSED
        self._dirty = True

    @property
    def search_alg(self):
        return self.searcher

    def save_trial(self, trial):
        """Checkpoints a running class trainable now (PBT clones it); returns
        the Checkpoint, or None when the trial cannot save on demand (function
        trainables checkpoint when they report)."""
        slot = getattr(trial, "_slot", None)
        if not self.is_class or slot is None or getattr(trial, "_inflight", 0) \
                or trial.status != Trial.RUNNING:
            return None
        try:
            ck = pyray.get(slot.actor.save.remote(), timeout=_SAVE_TIMEOUT_S)
        except RayError as exc:
            logger.warning("Saving trial %s failed: %s", trial, exc)
            return None
        self._register_checkpoint(trial, ck, trial.last_result)
        return trial.checkpoint

    def stop_trial(self, trial):
        if trial.status == Trial.RUNNING:
            self._end_running(trial, Trial.TERMINATED, save=False)
            self._complete(trial)
        elif not trial.is_finished():
            trial.status = Trial.TERMINATED
            self._complete(trial)

    # ------------------------------------------------------------------ loop
    def run(self):
        self._total = self._cluster_total()
        self._trainable_ref = pyray.put(self.trainable)
        for t in self._live.values():
            self.scheduler.on_trial_add(self, t)
        for cb in self.callbacks:
            cb.setup(stop=self.run_config.stop, num_samples=self.tune_config.num_samples,
                     total_num_samples=getattr(self.searcher, "total_samples", None))
        self.reporter.start(self)
        try:
            while True:
                if self.callbacks:
                    for cb in self.callbacks:
                        cb.on_step_begin(iteration=self._iteration, trials=self._trials)
                if not self._stop_everything:
                    self._start_trials()
                if not self._futures:
                    if self._stop_everything or not self._start_possible():
                        break
                    continue
                self._wait_and_process()
                if self.callbacks:
                    for cb in self.callbacks:
                        cb.on_step_end(iteration=self._iteration, trials=self._trials)
                self._iteration += 1
                self._periodic()
                if self.fatal_trial_error is not None:
                    break
        finally:
            self._shutdown()
        if self.fatal_trial_error is not None:
            raise self.fatal_trial_error
        return self._trials

    def _periodic(self):
        now = time.monotonic()
        if self._deadline is not None and now >= self._deadline and not self._stop_everything:
            self.reporter.note(f"Reached the time budget of {self.tune_config.time_budget_s} s; "
                               f"stopping all trials.")
            self._stop_all()
        if self.stopper is not None and not self._stop_everything and self.stopper.stop_all():
            self._stop_all()
        if self._dirty and now - self._last_snapshot >= self._snapshot_interval:
            self.snapshot()
        self.reporter.tick(self)

    def _next_timeout(self):
        now = time.monotonic()
        t = self.reporter.next_due() - now
        if self._dirty:
            t = min(t, self._last_snapshot + self._snapshot_interval - now)
        if self._deadline is not None and not self._stop_everything:
            t = min(t, self._deadline - now)
        if self.stopper is not None:
            t = min(t, 1.0)
        return max(0.0, min(t, 5.0))

    def _wait_and_process(self):
        refs = list(self._futures)
        ready, rest = pyray.wait(refs, num_returns=1, timeout=self._next_timeout())
        if not ready:
            return
        if rest:
            more, _ = pyray.wait(rest, num_returns=len(rest), timeout=0)
            ready = ready + more
        items = sorted(((self._futures.pop(r), r) for r in ready), key=lambda x: x[0][3])
        for (slot, trial, op, _), ref in items:
            try:
                value = pyray.get(ref)
            except RayError as exc:     # the trainable raised, or its process is gone
                self._on_call_failed(slot, trial, op, exc)
                continue
            self._on_call_done(slot, trial, op, value)

    # ------------------------------------------------------------------ starting
    def _start_possible(self):
        """With nothing in flight: is there still a trial that can run?"""
        if any(t.status in (Trial.PENDING, Trial.PAUSED) for t in self._live.values()):
            # a waiting trial that cannot start while nothing runs never will
            stuck = [t for t in self._live.values() if t.status in (Trial.PENDING, Trial.PAUSED)]
            chosen = self._choose()
            if chosen is None:
                raise TuneError(
                    f"{len(stuck)} trials are waiting ({', '.join(map(str, stuck[:5]))}) but "
                    f"the scheduler {type(self.scheduler).__name__} chose none to run while "
                    f"no trial is running.")
            return True
        if self._searcher_done:
            return False
        raise TuneError(f"The search algorithm {type(self.searcher).__name__} suggested no "
                        f"new configuration (suggest() returned None) while no trial was "
                        f"running; it would wait forever. Check its max_concurrent setting.")

    def _choose(self):
        if self._fifo:
            paused = None
            for t in self._live.values():
                if getattr(t, "_slot", None) is not None:
                    continue
                if t.status == Trial.PENDING:
                    return t
                if paused is None and t.status == Trial.PAUSED:
                    paused = t
            return paused
        return self.scheduler.choose_trial_to_run(self)

    def _start_trials(self):
        while True:
            if self.max_concurrent and self._running_count() >= self.max_concurrent:
                return
            trial = self._choose()
            if trial is not None and getattr(trial, "_slot", None) is not None:
                return          # still being paused: wait for its actor
            if trial is None:
                if self._searcher_done or self._num_pending() >= _MAX_PENDING \
                        or not self._new_trial():
                    return
                continue
            if not self._start(trial):
                return

    def _num_pending(self):
        return sum(1 for t in self._live.values() if t.status == Trial.PENDING)

    def _running_count(self):
        return sum(1 for s in self._slots if s.trial is not None)

    def _new_trial(self):
        trial_id = f"{self.exp_id}_{self.next_index:05d}"
        config = self.searcher.suggest(trial_id)
        if config is None:
            return False
        if config == Searcher.FINISHED:
            self._searcher_done = True
            return False
        tag_of = getattr(self.searcher, "experiment_tag", None)
        ev_of = getattr(self.searcher, "evaluated_params", None)
        tag = tag_of(trial_id) if tag_of else str(self.next_index)
        trial = Trial(self.trainable_name, config, trial_id, tag,
                      ev_of(trial_id) if ev_of else {}, None, self.experiment_path,
                      self.next_index)
        self.next_index += 1
        trial.resources = trial_resources(self.trainable, config)
        tnc, tdc = self.tune_config.trial_name_creator, self.tune_config.trial_dirname_creator
        if tnc is not None:
            trial.custom_trial_name = str(tnc(trial))
        if tdc is not None:
            trial.custom_dirname = str(tdc(trial))
        self._trials.append(trial)
        self._live[trial_id] = trial
        self.scheduler.on_trial_add(self, trial)
        self._dirty = True
        return True

    def _start(self, trial):
        """Starts (or resumes) ``trial`` on an actor; False when no resources."""
        pgf = trial.resources
        need = pgf.required_resources
        short = {k: v for k, v in need.items() if v > self._total.get(k, 0) + 1e-9}
        if short:
            self._fail(trial, ValueError(
                f"Trial {trial} needs resources {need} but the cluster has only "
                f"{ {k: self._total.get(k, 0) for k in need} }; lower them "
                f"(tune.with_resources) or add resources to the cluster."), retry=False)
            return True
        slot = self._slot_for(pgf)
        if slot is None:
            return False
        slot.trial = trial
        trial._slot = slot
        first = trial.start_time is None
        if first:
            trial.start_time = time.time()
        restore = None
        ck = trial.restore_checkpoint
        if ck is not None:      # set by PBT: another trial's checkpoint
            path = getattr(ck, "path", ck)
            rec = self._checkpoint_record(path) or {
                "iteration": trial.last_result.get("training_iteration", 0),
                "time_total_s": trial.last_result.get("time_total_s", 0.0)}
            restore = {"path": path, "iteration": rec["iteration"],
                       "time_total_s": rec["time_total_s"]}
            trial.restore_checkpoint = None
        elif trial.checkpoints:
            c = trial.checkpoints[-1]
            restore = {"path": c["path"], "iteration": c["iteration"],
                       "time_total_s": c["time_total_s"]}
        trial_dir = trial.local_path
        if first:
            self._files.submit(trial_files.write_params, trial_dir, trial.config)
        if trial.trial_id not in self._writers:
            self._writers[trial.trial_id] = trial_files.TrialWriter(trial_dir)
        info = {"trial_id": trial.trial_id, "trial_name": str(trial), "trial_dir": trial_dir,
                "experiment_name": self.experiment_name, "resources": pgf,
                "storage_path": os.path.dirname(self.experiment_path),
                # Ray's default: the trainable runs in its trial's folder
                # (RAY_CHDIR_TO_TRIAL_DIR=0 turns it off), read on the driver
                "chdir": os.environ.get("PYRAY_CHDIR_TO_TRIAL_DIR",
                                        os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "1")) != "0"}
        trial.status = Trial.RUNNING
        self._submit(slot, trial, "start", slot.actor.start.remote(
            trial.config, info, restore, trial.next_checkpoint_index,
            self.ckpt_config.checkpoint_frequency if self.is_class else 0))
        self._dirty = True
        if self.callbacks:
            hook = "on_trial_start" if first and restore is None else "on_trial_restore"
            for cb in self.callbacks:
                getattr(cb, hook)(iteration=self._iteration, trials=self._trials, trial=trial)
        return True

    def _checkpoint_record(self, path):
        for t in self._trials:
            for c in t.checkpoints:
                if c["path"] == path:
                    return c
        return None

    def _submit(self, slot, trial, op, ref):
        self._seq += 1
        self._futures[ref] = (slot, trial, op, self._seq)
        if trial is not None:
            trial._inflight = getattr(trial, "_inflight", 0) + 1

    # ------------------------------------------------------------------ slots
    def _cluster_total(self):
        total = dict(pyray.cluster_resources())
        return total

    def _used(self):
        used = {}
        for s in self._slots:
            for k, v in s.pgf.required_resources.items():
                used[k] = used.get(k, 0) + v
        return used

    def _fits(self, pgf):
        used = self._used()
        need = pgf.required_resources
        if not need:
            cap = max(1, int(self._total.get("CPU", 1)))
            return sum(1 for s in self._slots if not s.pgf.required_resources) < cap
        return all(used.get(k, 0) + v <= self._total.get(k, 0) + 1e-9 for k, v in need.items())

    def _slot_for(self, pgf):
        idle = [s for s in self._slots if s.trial is None and not s.dead]
        if self.reuse:
            for s in idle:
                if s.pgf == pgf:
                    return s
        while not self._fits(pgf):
            if not idle:
                return None
            self._kill_slot(idle.pop(0))
        return self._new_slot(pgf)

    def _new_slot(self, pgf):
        head = pgf.head_bundle
        opts = {"num_cpus": head.get("CPU", 0), "num_gpus": head.get("GPU", 0),
                "max_restarts": 0, "max_concurrency": 1}
        custom = {k: v for k, v in head.items() if k not in ("CPU", "GPU", "memory")}
        if custom:
            opts["resources"] = custom
        if head.get("memory"):
            opts["memory"] = head["memory"]
        pg = None
        if len(pgf.bundles) > 1 or pgf.strategy != "PACK":
            from pyray.util.placement_group import placement_group
            from pyray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
            pg = placement_group(pgf.bundles, strategy=pgf.strategy)
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)
        actor = _actor_class().options(**opts).remote(self._trainable_ref)
        slot = _Slot(actor, pgf, pg)
        self._slots.append(slot)
        return slot

    def _kill_slot(self, slot):
        if slot in self._slots:
            self._slots.remove(slot)
        slot.dead = True
        try:
            pyray.kill(slot.actor)
        except Exception:
            pass
        if slot.pg is not None:
            from pyray.util.placement_group import remove_placement_group
            try:
                remove_placement_group(slot.pg)
            except Exception:
                pass

    def _release(self, slot, trial, reusable=True):
        if trial is not None and getattr(trial, "_slot", None) is slot:
            trial._slot = None
        if slot.trial is trial:
            slot.trial = None
        if not reusable or not self.reuse or slot.dead:
            self._kill_slot(slot)

    # ------------------------------------------------------------------ events
    def _on_call_done(self, slot, trial, op, value):
        trial._inflight -= 1
        if op in ("start", "next"):
            kind, result, ck = value
            after = getattr(trial, "_after", None)
            if kind == "result":
                self._on_result(slot, trial, result, ck, decide=after is None)
            else:
                self._on_finished(slot, trial)
            if after is not None and trial._inflight == 0 and getattr(trial, "_slot", None):
                trial._after = None
                self._end_running(trial, *after)
        elif op == "save":
            if value is not None:
                self._register_checkpoint(trial, value, trial.last_result)
        elif op == "stop":
            self._release(slot, trial, reusable=bool(value))

    def _on_result(self, slot, trial, result, ck, decide=True):
        if trial.is_finished():
            return          # a result that was in flight when the trial was stopped
        result["trial_id"] = trial.trial_id
        result["experiment_tag"] = trial.experiment_tag
        result["config"] = trial.config
        missing = self._missing_metric(result)
        if missing:
            m, who = missing
            self._end_running(trial, None, save=False)
            self._fail(trial, ValueError(
                f"Trial {trial} reported a result without the metric {m!r} that {who} "
                f"expects (it reported {sorted(k for k in result if k not in _AUTO_KEYS)}). "
                f"Make sure every tune.report() call includes {m!r}, or set "
                f"TUNE_DISABLE_STRICT_METRIC_CHECKING=1."), retry=False)
            return
        if ck is not None:
            self._register_checkpoint(trial, ck, result)
        trial.update_last_result(result)
        self._writers[trial.trial_id].add(result)
        self._dirty = True
        if trial.status != Trial.RUNNING:
            return
        self.searcher.on_trial_result(trial.trial_id, result)
        if self.callbacks:
            for cb in self.callbacks:
                cb.on_trial_result(iteration=self._iteration, trials=self._trials, trial=trial,
                                   result=result)
        self.reporter.on_result(trial, result)
        if not decide:
            return
        if result.get("done") or (self.stopper is not None and
                                  self.stopper(trial.trial_id, result)):
            self._end_running(trial, Trial.TERMINATED, save=bool(self.ckpt_config.checkpoint_at_end))
            self._complete(trial)
            return
        decision = self.scheduler.on_trial_result(self, trial, result)
        if decision == TrialScheduler.STOP:
            self._end_running(trial, Trial.TERMINATED, save=bool(self.ckpt_config.checkpoint_at_end))
            self._complete(trial)
        elif decision == TrialScheduler.PAUSE:
            self._end_running(trial, Trial.PAUSED, save=True)
        elif decision == TrialScheduler.CONTINUE and trial.status == Trial.RUNNING:
            if not self._stop_everything:
                self._submit(slot, trial, "next", slot.actor.next.remote())
        # NOOP / already handled through pause_trial or stop_trial: nothing to do

    def _on_finished(self, slot, trial):
        """The trainable returned (or was stopped): the trial is complete."""
        if trial.status in (Trial.RUNNING, Trial.PAUSED):
            trial.last_result = dict(trial.last_result, done=True)
            if self.ckpt_config.checkpoint_at_end and self.is_class:
                self._end_running(trial, Trial.TERMINATED, save=True)
            else:
                trial.status = Trial.TERMINATED
                self._release(slot, trial)
            self._complete(trial)
        else:
            self._release(slot, trial)

    def _end_running(self, trial, status, save):
        """Ends a running trial (status PAUSED or TERMINATED; None: an error
        follows): saves it first if asked (class trainables), then stops its run
        and frees its actor."""
        if status is not None:
            trial.status = status
        slot = getattr(trial, "_slot", None)
        if slot is None:
            return
        if getattr(trial, "_inflight", 0):
            trial._after = (status, save)       # acted on when the call returns
            return
        if save and self.is_class:
            self._submit(slot, trial, "save", slot.actor.save.remote())
        self._submit(slot, trial, "stop", slot.actor.stop.remote())

    def _complete(self, trial):
        if trial.trial_id not in self._live:
            return
        del self._live[trial.trial_id]
        trial.end_time = time.time()
        self._flush_writer(trial)
        self.scheduler.on_trial_complete(self, trial, trial.last_result)
        self.searcher.on_trial_complete(trial.trial_id, trial.last_result)
        if self.callbacks:
            for cb in self.callbacks:
                cb.on_trial_complete(iteration=self._iteration, trials=self._trials, trial=trial)
        self.reporter.on_complete(trial)
        self._dirty = True

    def _flush_writer(self, trial):
        w = self._writers.pop(trial.trial_id, None)
        if w is not None:
            w.flush_to(self._files)

    def _register_checkpoint(self, trial, ck, result):
        path, idx = ck
        rec = {"path": path, "index": idx,
               "iteration": result.get("training_iteration", 0),
               "time_total_s": result.get("time_total_s", 0.0),
               "metrics": {k: v for k, v in result.items() if k != "config"}}
        trial.checkpoints.append(rec)
        trial.next_checkpoint_index = max(trial.next_checkpoint_index, idx + 1)
        self._prune_checkpoints(trial)
        if self.callbacks:
            from pyray.train import Checkpoint
            for cb in self.callbacks:
                cb.on_checkpoint(iteration=self._iteration, trials=self._trials, trial=trial,
                                 checkpoint=Checkpoint(path))

    def _prune_checkpoints(self, trial):
        keep = self.ckpt_config.num_to_keep
        cps = trial.checkpoints
        if not keep or len(cps) <= keep:
            return
        latest = cps[-1]
        attr = self.ckpt_config.checkpoint_score_attribute
        if attr:
            sign = 1 if self.ckpt_config.checkpoint_score_order == "max" else -1

            def score(c):
                v = c["metrics"].get(attr)
                return (v is not None, sign * v if v is not None else 0, c["index"])
            ranked = sorted(cps, key=score, reverse=True)
        else:
            ranked = sorted(cps, key=lambda c: c["index"], reverse=True)
        kept = ranked[:keep]
        if latest not in kept:
            kept.append(latest)         # the one a resumed trial starts from
        for c in cps:
            if c not in kept:
                _rmtree(c["path"])
        trial.checkpoints = [c for c in cps if c in kept]

    # ------------------------------------------------------------------ failures
    def _on_call_failed(self, slot, trial, op, exc):
        trial._inflight -= 1
        died = not isinstance(exc, RayTaskError)
        if died:
            slot.dead = True
        if op == "stop":
            self._release(slot, trial, reusable=False)
            return
        if op == "save":
            logger.warning("Saving trial %s failed: %s", trial, exc)
            return
        if trial.status != Trial.RUNNING:
            # it failed while being paused or stopped: what was asked stands
            after = getattr(trial, "_after", None)
            trial._after = None
            self._release(slot, trial, reusable=not died)
            if after is not None and after[0] == Trial.TERMINATED:
                self._complete(trial)
            return
        self._release(slot, trial, reusable=not died)
        self._fail(trial, exc, retry=True)

    def _fail(self, trial, exc, retry):
        trial._after = None
        trial.num_failures += 1 if retry else 0
        text = _format_error(exc)
        trial_files.write_error(trial.local_path, f"Failure # {trial.num_failures} "
                                f"(occurred at {time.strftime('%Y-%m-%d_%H-%M-%S')})\n{text}")
        self._dirty = True
        if retry and (self.max_failures == -1 or trial.num_failures <= self.max_failures) \
                and not self.fail_fast and not self._stop_everything:
            trial.status = Trial.PENDING
            self.reporter.note(f"Trial {trial} failed ({_first_line(exc)}); retrying from "
                               f"{'its last checkpoint' if trial.checkpoints else 'the start'} "
                               f"(failure {trial.num_failures} of max {self.max_failures}).")
            if self.callbacks:
                for cb in self.callbacks:
                    cb.on_trial_recover(iteration=self._iteration, trials=self._trials,
                                        trial=trial)
            return
        trial.status = Trial.ERROR
        trial.error = exc
        trial.error_msg = text
        self._live.pop(trial.trial_id, None)
        trial.end_time = time.time()
        self._flush_writer(trial)
        self.scheduler.on_trial_error(self, trial)
        self.searcher.on_trial_complete(trial.trial_id, trial.last_result or None, error=True)
        if self.callbacks:
            for cb in self.callbacks:
                cb.on_trial_error(iteration=self._iteration, trials=self._trials, trial=trial)
        self.reporter.on_error(trial)
        if self.fail_fast:
            if self.fail_fast == "raise":
                self.fatal_trial_error = exc
            self._stop_all()

    def _stop_all(self):
        self._stop_everything = True
        for t in list(self._live.values()):
            if t.status == Trial.RUNNING:
                self._end_running(t, Trial.TERMINATED, save=bool(self.ckpt_config.checkpoint_at_end))
            else:
                t.status = Trial.TERMINATED
            self._complete(t)

    # ------------------------------------------------------------------ checks
    def _metrics_to_check(self):
        if os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING", "0") == "1":
            return []
        out = []
        if self.metric and self.metric != _DEFAULT_METRIC:
            out.append((self.metric, "TuneConfig(metric=...)"))
        for who in (self.scheduler, self.searcher):
            m = getattr(who, "metric", None)
            if isinstance(m, str) and m != _DEFAULT_METRIC and m not in [x for x, _ in out]:
                inner = getattr(who, "searcher", who)
                out.append((m, type(inner).__name__))
        return out

    def _missing_metric(self, result):
        for m, who in self._required_metrics:
            if m not in result and any(k not in _AUTO_KEYS for k in result):
                return m, who
        return None

    # ------------------------------------------------------------------ state
    def snapshot(self):
        t0 = time.monotonic()
        for w in self._writers.values():
            w.flush_to(self._files)
        self._files.drain()
        searcher_file = os.path.join(self.experiment_path, SEARCHER_STATE)
        try:
            self.searcher.save(searcher_file + ".tmp")
            os.replace(searcher_file + ".tmp", searcher_file)
        except NotImplementedError:
            pass
        state = {"version": 1, "exp_id": self.exp_id, "experiment_path": self.experiment_path, "next_index": self.next_index,
                 "trials": [t.to_state() for t in self._trials],
                 "searcher_done": self._searcher_done, "timestamp": time.time()}
        try:
            data = cloudpickle.dumps(state)
        except Exception:
            for st in state["trials"]:
                try:
                    cloudpickle.dumps(st["error"])
                except Exception:
                    st["error"] = None
            data = cloudpickle.dumps(state)
        path = os.path.join(self.experiment_path, EXPERIMENT_STATE)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        self._dirty = False
        done = time.monotonic()
        self._last_snapshot = done
        # keep the snapshot cost under ~5% of the loop's time
        self._snapshot_interval = max(0.5, 20 * (done - t0))

    def _shutdown(self):
        for t in list(self._live.values()):
            if t.status == Trial.RUNNING:
                t.status = Trial.TERMINATED if self._stop_everything else Trial.PENDING
        for slot in list(self._slots):
            try:
                slot.actor.shutdown.remote()
            except Exception:
                pass
            self._kill_slot(slot)
        for t in self._trials:
            t._slot = None
            t._inflight = 0
        self._futures.clear()
        try:
            self.snapshot()
            self._files.close()
        finally:
            for cb in self.callbacks:
                cb.on_experiment_end(trials=self._trials)
            self.reporter.end(self)


def _rmtree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def _trainable_name(trainable):
    name = getattr(trainable, "__name__", None) or type(trainable).__name__
    return name if name != "<lambda>" else "lambda"


def _first_line(exc):
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"


def _format_error(exc):
    if isinstance(exc, RayTaskError):
        return str(exc)
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
