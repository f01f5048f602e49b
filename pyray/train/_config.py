"""RunConfig, CheckpointConfig and FailureConfig, as in Ray (``ray.train`` and
``ray.tune`` export the same classes)."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, List, Mapping, Optional, Union


@dataclasses.dataclass
class FailureConfig:
    """``max_failures``: how many times a failed trial is retried (from its
    last checkpoint); -1 retries without limit.  ``fail_fast``: stop the
    whole run at the first trial error (``"raise"``: re-raise it from
    ``fit()``)."""
    max_failures: int = 0
    fail_fast: Union[bool, str] = False

    def __post_init__(self):
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(f"FailureConfig(max_failures={self.max_failures!r}): expected an "
                             f"int >= 0, or -1 for no limit.")
        if self.fail_fast not in (True, False, "raise"):
            raise ValueError(f"FailureConfig(fail_fast={self.fail_fast!r}): expected True, "
                             f"False or 'raise'.")


@dataclasses.dataclass
class CheckpointConfig:
    """Which checkpoints of a trial are kept: ``num_to_keep`` (None: all) of
    them, the best by ``checkpoint_score_attribute`` in
    ``checkpoint_score_order`` ("max" or "min"), else the most recent; the
    latest one is always kept so that a trial can resume.
    ``checkpoint_frequency`` / ``checkpoint_at_end`` make class trainables
    save every N iterations / when they finish."""
    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: Optional[bool] = None

    def __post_init__(self):
        if self.num_to_keep is not None and (not isinstance(self.num_to_keep, int)
                                             or self.num_to_keep <= 0):
            raise ValueError(f"Received invalid num_to_keep: {self.num_to_keep}. "
                             f"Must be None or an integer >= 1.")
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(f"checkpoint_score_order must be either 'max' or 'min', got "
                             f"{self.checkpoint_score_order!r}.")
        if not isinstance(self.checkpoint_frequency, int) or self.checkpoint_frequency < 0:
            raise ValueError(f"checkpoint_frequency must be an int >= 0, got "
                             f"{self.checkpoint_frequency!r}.")


@dataclasses.dataclass
class RunConfig:
    """Where and how an experiment runs: ``name`` (its folder under
    ``storage_path``, default ``~/ray_results``), ``stop`` (a dict of
    metric thresholds, a function ``(trial_id, result) -> bool`` or a
    ``tune.Stopper``), ``failure_config``, ``checkpoint_config``,
    ``callbacks`` (``tune.Callback`` objects) and ``verbose`` (0 silent,
    1 status, 2 and 3 also trial results)."""
    name: Optional[str] = None
    storage_path: Optional[str] = None
    storage_filesystem: Any = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    sync_config: Any = None
    verbose: Optional[int] = None
    stop: Optional[Union[Mapping, Callable, Any]] = None
    callbacks: Optional[List[Any]] = None
    progress_reporter: Any = None
    log_to_file: Union[bool, str] = False

    def __post_init__(self):
        if self.storage_filesystem is not None:
            raise ValueError("RunConfig(storage_filesystem=...): only local storage paths "
                             "(or shared mounts) are supported; pass storage_path alone.")
        if self.storage_path is not None:
            sp = os.fspath(self.storage_path)
            if "://" in sp and not sp.startswith("file://"):
                raise ValueError(f"RunConfig(storage_path={sp!r}): only local paths (or "
                                 f"shared mounts) are supported.")
            self.storage_path = sp[len("file://"):] if sp.startswith("file://") else sp
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.verbose is not None and self.verbose not in (0, 1, 2, 3):
            raise ValueError(f"RunConfig(verbose={self.verbose!r}): expected 0, 1, 2 or 3.")
        if self.sync_config is not None:
            raise ValueError("RunConfig(sync_config=...): storage is a local path (or a "
                             "shared mount) that every trial writes to directly; there is "
                             "nothing to sync. Drop sync_config.")
        if self.progress_reporter is not None:
            raise ValueError("RunConfig(progress_reporter=...) is not supported: the "
                             "console output is chosen by `verbose` (see docs/tune.md).")
        if self.log_to_file not in (False, None):
            raise ValueError("RunConfig(log_to_file=...) is not supported: a trial's "
                             "output goes to the driver's console.")
