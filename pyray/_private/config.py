"""Every tunable in one place.  Each field can be overridden by an environment
variable PYRAY_<FIELD_NAME_UPPER> or by an argument to ``init()``."""
from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass
class Config:
    # objects at or below this size travel inline with replies and live in the
    # owner's memory; larger ones go to the node's shared-memory store
    max_inline_bytes: int = 100 * 1024
    # tasks pushed to one leased worker before the owner waits for replies
    max_tasks_in_flight_per_worker: int = 64
    # replies a worker batches into one message while more tasks are queued
    max_reply_batch: int = 64
    # an idle lease is kept this long for the next task of the same shape
    lease_idle_timeout_s: float = 0.5
    # raylet / gcs liveness
    heartbeat_interval_s: float = 0.5
    num_heartbeats_timeout: int = 10
    # a raylet whose GCS has not answered for this long stops (its node is
    # gone from the cluster's view anyway); 0: wait for ever.  Ray: 60 s.
    gcs_reconnect_timeout_s: float = 60.0
    # how long init() waits for the local cluster processes to come up
    start_timeout_s: float = 30.0
    # how long shutdown() waits for a process before killing it
    stop_timeout_s: float = 5.0
    # default fraction of RAM for the object store
    object_store_fraction: float = 0.3
    # default max_retries for tasks (Ray's default)
    task_max_retries: int = 3
    # timeout for internal request/response calls
    rpc_timeout_s: float = 30.0
    # idle workers above num_cpus are stopped after this long
    idle_worker_timeout_s: float = 10.0
    # objects move between nodes in chunks of this size, this many in flight
    object_transfer_chunk_bytes: int = 8 * 1024 * 1024
    object_transfer_window: int = 4
    # stream worker stdout/stderr to the driver
    log_to_driver: bool = True
    # the memory monitor (docs/memory.md): when the node's memory in use
    # passes this fraction, the raylet kills the newest retriable task's
    # worker (1.0: never).  Ray's RAY_memory_usage_threshold is honoured too.
    memory_usage_threshold: float = 0.95
    # how often the raylet samples the node's memory; 0 disables the monitor
    memory_monitor_refresh_ms: int = 250
    # a task killed by the memory monitor is retried this many times (-1:
    # without limit; a task with max_retries=0 never), apart from its
    # max_retries, after a delay of base * 2**(kills - 1) ms (at most 60 s)
    task_oom_retries: int = -1
    # processes a worker started are killed when it exits (the zygote and
    # the raylet are subreapers: such processes come to them), as Ray does
    kill_child_processes_on_worker_exit: bool = True
    task_oom_retry_delay_base_ms: int = 1000
    # where a node spills objects (default: the session directory's spill/)
    object_spilling_directory: str = ""
    # how often a process sends the user metrics it recorded to its raylet
    # (pyray.util.metrics, docs/metrics.md; Ray's is 10 s)
    metrics_report_interval_ms: int = 1000
    # task events (docs/state.md): how often a process sends its recorded task
    # state transitions to the GCS (0: never; recording is off), how many it
    # buffers meanwhile (more are dropped and counted), and how many tasks the
    # GCS keeps (the oldest go first)
    task_events_report_interval_ms: int = 1000
    task_events_max_num_status_events_buffer_on_worker: int = 100_000
    task_events_max_num_task_in_gcs: int = 100_000

    @classmethod
    def from_env(cls, **overrides) -> "Config":
        cfg = cls()
        for f in dataclasses.fields(cls):
            env = os.environ.get("PYRAY_" + f.name.upper())
            if env is None:
                env = os.environ.get("PYRAY_" + f.name)
            if env is None and f.name in _RAY_ENV:
                env = os.environ.get("RAY_" + f.name)
            if env is not None:
                setattr(cfg, f.name, _parse(f.type, env, f.name))
        for k, v in overrides.items():
            if v is None:
                continue
            if not hasattr(cfg, k):
                raise TypeError(f"unknown pyray config option {k!r}")
            setattr(cfg, k, v)
        return cfg

    def to_env(self) -> dict:
        """Environment for child processes so they see the same config."""
        return {"PYRAY_" + f.name.upper(): str(getattr(self, f.name))
                for f in dataclasses.fields(self)}


# tunables Ray reads from RAY_<name> that mean the same here
_RAY_ENV = frozenset({"memory_usage_threshold", "memory_monitor_refresh_ms", "task_oom_retries",
                      "task_oom_retry_delay_base_ms", "metrics_report_interval_ms",
                      "kill_child_processes_on_worker_exit",
                      "task_events_report_interval_ms",
                      "task_events_max_num_status_events_buffer_on_worker",
                      "task_events_max_num_task_in_gcs"})


def _parse(typ, text, name):
    typ = str(typ)
    try:
        if "bool" in typ:
            return text.strip().lower() in ("1", "true", "yes", "on")
        if "int" in typ:
            return int(text)
        if "float" in typ:
            return float(text)
    except ValueError:
        raise ValueError(f"environment variable PYRAY_{name.upper()}={text!r} "
                         f"is not a valid {typ}") from None
    return text
