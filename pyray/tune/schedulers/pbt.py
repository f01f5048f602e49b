"""Population Based Training.

Every ``perturbation_interval`` time units a trial's latest score is
compared with the population's: a trial in the bottom ``quantile_fraction``
*exploits* one from the top (it is paused, takes that trial's latest
checkpoint and config) and *explores* (the copied hyperparameters are
perturbed or resampled, see :func:`explore`). The controller then restarts it
from ``trial.restore_checkpoint`` with the new ``trial.config``.

PBT needs checkpoints: a trial can only be cloned from a checkpoint it
reported (``tune.report(..., checkpoint=...)`` / ``Trainable.save_checkpoint``).
"""

import copy
import json
import logging
import math
import os
import random
from typing import Callable, Dict, List, Optional, Tuple, Union

from pyray.tune.schedulers.trial_scheduler import (
    _tune_error,
    PAUSED, PENDING, TrialScheduler, _MetricModeScheduler,
)
from pyray.tune.search.sample import Domain, Function
from pyray.tune.search.search_generator import SearchGenerator
from pyray.tune.search.searcher import check_arg
from pyray.tune.search.variant_generator import format_vars

logger = logging.getLogger(__name__)

TRAINING_ITERATION = "training_iteration"


class _PBTTrialState:
    def __init__(self, trial):
        self.orig_tag = getattr(trial, "experiment_tag", "") or ""
        self.last_score = None
        self.last_checkpoint = None
        self.last_perturbation_time = 0
        self.last_train_time = 0
        self.last_result = None

    def __repr__(self):
        return str((self.last_score, self.last_checkpoint, self.last_train_time,
                    self.last_perturbation_time))


def explore(config: Dict, mutations: Dict, resample_probability: float,
            perturbation_factors: Tuple[float, ...],
            custom_explore_fn: Optional[Callable]) -> Tuple[Dict, Dict]:
    """A perturbed copy of ``config`` and what was done to each key.

    * list / tuple: with ``resample_probability`` (or when the current value
      is not in the list) a random element, otherwise the neighbour to the
      left or right (clamped at the ends);
    * Domain or callable: with ``resample_probability`` a fresh draw,
      otherwise the value times one of ``perturbation_factors``; ints stay
      ints;
    * dict: the same, recursively;
    * then ``custom_explore_fn(config)`` if given.
    """
    operations = {}
    new_config = copy.deepcopy(config)
    for key, distribution in mutations.items():
        if isinstance(distribution, dict):
            nested, nested_ops = explore(config[key], distribution, resample_probability,
                                         perturbation_factors, None)
            new_config[key] = nested
            operations[key] = nested_ops
        elif isinstance(distribution, (list, tuple)):
            if random.random() < resample_probability or config[key] not in distribution:
                new_config[key] = random.choice(distribution)
                operations[key] = "resample"
            else:
                shift = random.choice([-1, 1])
                old_idx = list(distribution).index(config[key])
                new_idx = min(max(old_idx + shift, 0), len(distribution) - 1)
                new_config[key] = distribution[new_idx]
                operations[key] = (f"shift {'left' if shift == -1 else 'right'}"
                                   f"{' (noop)' if old_idx == new_idx else ''}")
        elif isinstance(distribution, Domain) or callable(distribution):
            if random.random() < resample_probability:
                new_config[key] = (distribution.sample(None) if isinstance(distribution, Domain)
                                   else distribution())
                operations[key] = "resample"
            else:
                factor = random.choice(perturbation_factors)
                new_config[key] = config[key] * factor
                operations[key] = f"* {factor}"
            if isinstance(config[key], int):
                new_config[key] = int(new_config[key])
        else:
            raise ValueError(f"Unsupported hyperparameter distribution type: {type(distribution)}")
    if custom_explore_fn:
        new_config = custom_explore_fn(new_config)
        if new_config is None:
            raise ValueError("custom_explore_fn returned None: it must return the new config")
    return new_config, operations


def _fill_config(config: Dict, attr, space):
    if isinstance(space, Domain):
        config[attr] = space.sample(None)
    elif isinstance(space, (list, tuple)):
        config[attr] = random.choice(space)
    elif isinstance(space, dict):
        config[attr] = {}
        for k, v in space.items():
            _fill_config(config[attr], k, v)
    elif callable(space):
        config[attr] = space()


def _filter_mutated(config: Dict, mutations: Dict) -> Dict:
    out = {}
    for name in config:
        if name not in mutations:
            continue
        if isinstance(config[name], dict) and isinstance(mutations[name], dict):
            out[name] = _filter_mutated(config[name], mutations[name])
        else:
            out[name] = config[name]
    return out


def _make_experiment_tag(orig_tag: str, config: Dict, mutations: Dict) -> str:
    resolved = {("config", k): config[k] for k in mutations if k in config}
    return f"{orig_tag}@perturbed[{format_vars(resolved)}]"


class PopulationBasedTraining(_MetricModeScheduler):
    """Population Based Training (exploit + explore during training).

    Args:
        time_attr: result key measuring progress.
        metric, mode: the objective and "min"/"max".
        perturbation_interval: consider a trial for exploit/explore every this
            many ``time_attr`` units.
        burn_in_period: no perturbation before this time.
        hyperparam_mutations: per key a list (categorical, neighbours), a
            Domain (``tune.uniform(...)``) or a callable (continuous), or a
            dict of those; keys missing from a trial's config are drawn from
            here when the trial is added.
        quantile_fraction: fraction of the population in the top and in the
            bottom group (0 .. 0.5).
        resample_probability: chance of a fresh draw instead of a perturbation.
        perturbation_factors: factors a continuous value is multiplied by.
        custom_explore_fn: ``f(config) -> config`` applied after the built-in
            perturbations.
        log_config: write ``pbt_global.txt`` and ``pbt_policy_<trial_id>.txt``
            in the experiment directory at each exploit.
        require_attrs: a result without ``time_attr`` or ``metric`` is an error.
        synch: synchronous PBT: all trials pause at each perturbation time
            and are perturbed together.
    """

    def __init__(self, time_attr: str = "time_total_s", metric: Optional[str] = None,
                 mode: Optional[str] = None, perturbation_interval: float = 60.0,
                 burn_in_period: float = 0.0,
                 hyperparam_mutations: Optional[Dict[str, Union[dict, list, tuple, Callable, Domain]]] = None,
                 quantile_fraction: float = 0.25, resample_probability: float = 0.25,
                 perturbation_factors: Tuple[float, float] = (1.2, 0.8),
                 custom_explore_fn: Optional[Callable] = None, log_config: bool = True,
                 require_attrs: bool = True, synch: bool = False):
        hyperparam_mutations = hyperparam_mutations or {}
        self._check_mutations(hyperparam_mutations)
        if not hyperparam_mutations and not custom_explore_fn:
            raise _tune_error("You must specify at least one of `hyperparam_mutations` or "
                              "`custom_explore_fn` to use PBT.")
        if quantile_fraction > 0.5 or quantile_fraction < 0:
            raise ValueError("You must set `quantile_fraction` to a value between 0 and 0.5. "
                             f"Current value: '{quantile_fraction}'")
        if perturbation_interval <= 0:
            raise ValueError("perturbation_interval must be a positive number greater than 0. "
                             f"Current value: '{perturbation_interval}'")
        check_arg(0 <= resample_probability <= 1,
                  f"resample_probability must be between 0 and 1, got {resample_probability}")
        super().__init__(metric, mode)
        self._time_attr = time_attr
        self._perturbation_interval = perturbation_interval
        self._burn_in_period = burn_in_period
        self._hyperparam_mutations = hyperparam_mutations
        self._quantile_fraction = quantile_fraction
        self._resample_probability = resample_probability
        self._perturbation_factors = perturbation_factors
        self._trial_state: Dict = {}
        self._custom_explore_fn = custom_explore_fn
        self._log_config = log_config
        self._require_attrs = require_attrs
        self._synch = synch
        self._next_perturbation_sync = max(perturbation_interval, burn_in_period)
        self._num_checkpoints = 0
        self._num_perturbations = 0

    @staticmethod
    def _check_mutations(mutations: Dict):
        for key, value in mutations.items():
            if isinstance(value, Function):
                raise ValueError(
                    "arbitrary tune.sample_from objects are not supported for "
                    f"`hyperparam_mutation` values (key {key!r}). You must use other built in "
                    "primitives like tune.uniform, tune.loguniform, etc.")
            if isinstance(value, dict):
                PopulationBasedTraining._check_mutations(value)
            elif not isinstance(value, (list, tuple, Domain)) and not callable(value):
                raise TypeError(
                    "`hyperparam_mutation` values must be either a List, Tuple, Dict, a tune "
                    f"search space object, or a callable; got {value!r} for key {key!r}")
            elif isinstance(value, (list, tuple)) and not value:
                raise ValueError(f"`hyperparam_mutations[{key!r}]` is an empty list")

    # -- events --------------------------------------------------------------------
    def on_trial_add(self, tune_controller, trial):
        search_alg = _search_alg_of(tune_controller)
        if isinstance(search_alg, SearchGenerator):
            raise ValueError(
                f"Search algorithms cannot be used with {type(self).__name__} schedulers. "
                f"Please remove {search_alg.searcher!r}.")
        self._require_metric_mode()
        self._trial_state[trial] = _PBTTrialState(trial)
        for attr, space in self._hyperparam_mutations.items():
            if attr not in trial.config:
                _fill_config(trial.config, attr, space)
                if getattr(trial, "evaluated_params", None) is not None:
                    trial.evaluated_params[attr] = trial.config[attr]

    def on_trial_result(self, tune_controller, trial, result: Dict) -> str:
        for what, key in (("time_attr", self._time_attr), ("metric", self._metric)):
            if key not in result:
                msg = (f"Cannot find {what} {key} in trial result {result}. Make sure that this "
                       "attribute is returned in the results of your Trainable.")
                if self._require_attrs:
                    raise RuntimeError(msg + " If this error is expected, you can change this to "
                                       "a warning message by setting PBT(require_attrs=False)")
                logger.warning(msg)
        if self._metric not in result or self._time_attr not in result:
            return TrialScheduler.CONTINUE
        time = result[self._time_attr]
        state = self._trial_state[trial]
        if time < self._burn_in_period:
            return TrialScheduler.CONTINUE
        if time - state.last_perturbation_time < self._perturbation_interval:
            return TrialScheduler.CONTINUE
        self._save_trial_state(state, time, result)
        if not self._synch:
            state.last_perturbation_time = time
            lower, upper = self._quantiles()
            decision = TrialScheduler.CONTINUE
            if any(t.status in (PENDING, PAUSED) for t in tune_controller.get_trials()):
                decision = TrialScheduler.PAUSE  # give waiting trials their turn
            self._checkpoint_or_exploit(trial, tune_controller, upper, lower)
            return TrialScheduler.NOOP if trial.status == PAUSED else decision
        # synchronous: wait until every live trial reached the sync time
        if not any(self._trial_state[t].last_train_time < self._next_perturbation_sync
                   and t is not trial for t in tune_controller.get_live_trials()):
            lower, upper = self._quantiles()
            middle = [t for t in tune_controller.get_trials() if t not in lower and t not in upper]
            # top trials checkpoint before the bottom ones clone them
            for t in upper + middle + lower:
                self._trial_state[t].last_perturbation_time = time
                self._checkpoint_or_exploit(t, tune_controller, upper, lower)
            max_train_time = max(self._trial_state[t].last_train_time
                                 for t in tune_controller.get_trials())
            self._next_perturbation_sync = max(
                self._next_perturbation_sync + self._perturbation_interval, max_train_time)
        return TrialScheduler.NOOP if trial.status == PAUSED else TrialScheduler.PAUSE

    def on_trial_complete(self, tune_controller, trial, result):
        pass

    def on_trial_remove(self, tune_controller, trial):
        pass

    def on_trial_error(self, tune_controller, trial):
        pass

    # -- exploit / explore ---------------------------------------------------------------
    def _save_trial_state(self, state, time, result):
        state.last_score = self._metric_op * result[self._metric]
        state.last_train_time = time
        state.last_result = result
        return state.last_score

    @staticmethod
    def _latest_checkpoint(tune_controller, trial):
        """The checkpoint to clone: the controller's fresh save when it offers
        one (``save_trial``), else the trial's latest reported checkpoint."""
        save = getattr(tune_controller, "save_trial", None)
        if save is not None and trial.status != PAUSED:
            checkpoint = save(trial)
            if checkpoint is not None:
                return checkpoint
        return getattr(trial, "checkpoint", None)

    def _checkpoint_or_exploit(self, trial, tune_controller, upper, lower):
        state = self._trial_state[trial]
        if trial in upper:
            state.last_checkpoint = self._latest_checkpoint(tune_controller, trial)
            self._num_checkpoints += 1
        else:
            state.last_checkpoint = None
        if trial not in lower:
            return
        trial_to_clone = random.choice(upper)
        assert trial is not trial_to_clone
        clone_state = self._trial_state[trial_to_clone]
        if not clone_state.last_checkpoint:
            # it was not in the top group when it last reported: its latest
            # checkpoint is the one to copy
            clone_state.last_checkpoint = getattr(trial_to_clone, "checkpoint", None)
        if not clone_state.last_checkpoint:
            raise _tune_error(
                f"PopulationBasedTraining: trial {trial_to_clone.trial_id} (top quantile) has no "
                f"checkpoint for trial {trial.trial_id} to clone. PBT needs checkpointing "
                "trainables: report a checkpoint at least every `perturbation_interval` "
                "(`tune.report(metrics, checkpoint=Checkpoint.from_directory(...))` in a function "
                "trainable, `save_checkpoint` in a Trainable class).")
        self._exploit(tune_controller, trial, trial_to_clone)

    def _get_new_config(self, trial, trial_to_clone):
        return explore(trial_to_clone.config, self._hyperparam_mutations,
                       self._resample_probability, self._perturbation_factors,
                       self._custom_explore_fn)

    def _exploit(self, tune_controller, trial, trial_to_clone):
        trial_state = self._trial_state[trial]
        new_state = self._trial_state[trial_to_clone]
        logger.info("[PopulationBasedTraining] [Exploit] Cloning trial %s (score = %.4f) into "
                    "trial %s (score = %.4f)", trial_to_clone.trial_id, new_state.last_score,
                    trial.trial_id, trial_state.last_score)
        new_config, operations = self._get_new_config(trial, trial_to_clone)
        logger.info("[PopulationBasedTraining] [Explore] Perturbed the hyperparameter config of "
                    "trial %s:\n%s", trial.trial_id,
                    self._summarize_hyperparam_changes(
                        _filter_mutated(trial_to_clone.config, self._hyperparam_mutations),
                        _filter_mutated(new_config, self._hyperparam_mutations), operations)
                    or "No hyperparameters mutated.")
        if self._log_config:
            self._log_config_on_step(trial_state, new_state, trial, trial_to_clone, new_config)
        if trial.status == PAUSED:
            if not self._synch:
                raise _tune_error("Trials should be paused here only if in synchronous mode.")
        else:
            tune_controller.pause_trial(trial, should_checkpoint=False)
        trial.experiment_tag = _make_experiment_tag(trial_state.orig_tag, new_config,
                                                    self._hyperparam_mutations)
        trial.config = new_config
        trial.restore_checkpoint = copy.copy(new_state.last_checkpoint)
        self._num_perturbations += 1
        trial_state.last_perturbation_time = new_state.last_perturbation_time
        trial_state.last_train_time = new_state.last_train_time

    def _summarize_hyperparam_changes(self, old, new, operations=None, prefix="") -> str:
        out = ""
        operations = operations or {}
        for name, old_val in (old or {}).items():
            new_val = new[name]
            out += f"{prefix}{name} : "
            if isinstance(old_val, dict):
                out += "\n" + self._summarize_hyperparam_changes(
                    old_val, new_val, operations.get(name, {}), prefix + " " * 4)
            else:
                op = operations.get(name)
                arrow = f"--- ({op}) -->" if op else "----->"
                out += f"{old_val} {arrow} {new_val}\n"
        return out

    def _log_config_on_step(self, trial_state, new_state, trial, trial_to_clone, new_config):
        exp_dir = getattr(trial, "local_experiment_path", None) or getattr(trial, "experiment_path", None)
        if not exp_dir or not os.path.isdir(exp_dir):
            return
        policy = [trial_state.orig_tag, new_state.orig_tag,
                  (trial.last_result or {}).get(TRAINING_ITERATION, 0),
                  (trial_to_clone.last_result or {}).get(TRAINING_ITERATION, 0),
                  trial_to_clone.config, new_config]
        line = json.dumps(policy, default=repr)
        with open(os.path.join(exp_dir, "pbt_global.txt"), "a+") as f:
            print(line, file=f)
        target = os.path.join(exp_dir, f"pbt_policy_{trial.trial_id}.txt")
        source = os.path.join(exp_dir, f"pbt_policy_{trial_to_clone.trial_id}.txt")
        history = ""
        if os.path.exists(source):
            with open(source) as f:
                history = f.read()
        with open(target, "w") as f:
            f.write(history + line + "\n")

    def _quantiles(self) -> Tuple[List, List]:
        """(bottom, top) trials by last score; empty with fewer than 2 scored."""
        trials = [t for t, s in self._trial_state.items()
                  if s.last_score is not None and not _is_finished(t)]
        trials.sort(key=lambda t: self._trial_state[t].last_score)
        if len(trials) <= 1:
            return [], []
        n = int(math.ceil(len(trials) * self._quantile_fraction))
        if n > len(trials) / 2:
            n = int(math.floor(len(trials) / 2))
        if n == 0:
            return [], []
        return trials[:n], trials[-n:]

    def choose_trial_to_run(self, tune_controller):
        """The waiting trial that trained least (fair time share)."""
        candidates = []
        for trial in tune_controller.get_trials():
            if trial.status not in (PENDING, PAUSED):
                continue
            state = self._trial_state.get(trial)
            if state is None:
                candidates.append((0, trial))
            elif not self._synch or state.last_train_time < self._next_perturbation_sync:
                candidates.append((state.last_train_time, trial))
        candidates.sort(key=lambda c: c[0])
        return candidates[0][1] if candidates else None

    def debug_string(self) -> str:
        return (f"PopulationBasedTraining: {self._num_checkpoints} checkpoints, "
                f"{self._num_perturbations} perturbs")


def _search_alg_of(tune_controller):
    """The controller's search algorithm (Ray's ``search_alg``; pyray's
    controller calls it ``searcher``)."""
    alg = getattr(tune_controller, "search_alg", None)
    return alg if alg is not None else getattr(tune_controller, "searcher", None)


def _is_finished(trial) -> bool:
    return trial.status in ("TERMINATED", "ERROR")


class PopulationBasedTrainingReplay(_MetricModeScheduler):
    """Replays the hyperparameter schedule one trial followed in a PBT run,
    from its ``pbt_policy_<trial_id>.txt`` (written with ``log_config=True``).

    The single trial starts with the schedule's initial config; at each
    recorded step it is paused and restarted from its own latest checkpoint
    with the next config (so the trainable must checkpoint, as for PBT).
    """

    def __init__(self, policy_file: str):
        path = os.path.expanduser(policy_file)
        if not os.path.exists(path):
            raise ValueError(f"Policy file not found: {path}")
        super().__init__()
        self.policy_file = path
        initial_config, self._policy = self._load_policy(path)
        self.experiment_tag = f"replay_{os.path.basename(path)}"
        self.config = initial_config
        self.current_config = self.config
        self._trial = None
        self._current_step = 0
        self._num_perturbations = 0
        self._policy_iter = iter(self._policy)
        self._next_policy = next(self._policy_iter, None)

    @staticmethod
    def _load_policy(policy_file: str):
        rows = []
        with open(policy_file) as f:
            for line in f:
                try:
                    rows.append(tuple(json.loads(line)))
                except json.JSONDecodeError:
                    raise ValueError(f"Could not read PBT policy file: {policy_file}.") from None
        # walk back from the end while each step continues the tag chain
        policy, last_new_tag, last_old_conf = [], None, None
        for old_tag, new_tag, _old_step, new_step, old_conf, new_conf in reversed(rows):
            if last_new_tag and old_tag != last_new_tag:
                break
            last_new_tag, last_old_conf = new_tag, old_conf
            policy.append((new_step, new_conf))
        return last_old_conf, list(reversed(policy))

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial):
        if self._trial is not None:
            raise ValueError("More than one trial added to PBT replay run. This means the same "
                             "schedule will be trained multiple times. Do you want to set "
                             "`num_samples=1`?")
        self._trial = trial
        if trial.config and self._policy:
            logger.warning("Trial was initialized with a config, which was overwritten. Did you "
                           "start the PBT replay with a `param_space`?")
        elif trial.config and not self._policy:
            self.config = trial.config
        elif not trial.config and not self._policy:
            raise ValueError("No replay policy found and trial initialized without a valid "
                             "config. Either pass a `param_space` to `tune.Tuner()` or consider "
                             "not using PBT replay for this run.")
        trial.config = self.config

    def on_trial_result(self, tune_controller, trial, result: Dict) -> str:
        if TRAINING_ITERATION not in result or not self._next_policy:
            return TrialScheduler.CONTINUE
        step = result[TRAINING_ITERATION]
        self._current_step = step
        change_at, new_config = self._next_policy
        if step < change_at:
            return TrialScheduler.CONTINUE
        logger.info("Population Based Training replay is now at step %s. Configuration will be "
                    "changed to %s.", step, new_config)
        checkpoint = PopulationBasedTraining._latest_checkpoint(tune_controller, trial)
        if not checkpoint:
            raise _tune_error(
                f"PopulationBasedTrainingReplay: trial {trial.trial_id} has no checkpoint to "
                "restart from with the next config; the trainable must report checkpoints.")
        tune_controller.pause_trial(trial, should_checkpoint=False)
        trial.experiment_tag = _make_experiment_tag(self.experiment_tag, new_config, new_config)
        trial.config = new_config
        trial.restore_checkpoint = copy.copy(checkpoint)
        self.current_config = new_config
        self._num_perturbations += 1
        self._next_policy = next(self._policy_iter, None)
        return TrialScheduler.NOOP

    def debug_string(self) -> str:
        return (f"PopulationBasedTraining replay: Step {self._current_step}, "
                f"perturb {self._num_perturbations}")
