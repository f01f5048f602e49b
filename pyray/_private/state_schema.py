"""The shapes the state API returns (pyray.util.state.common): Ray's
dataclasses, with Ray's field names (ray.util.state.common).  Each also reads like a dict
(``actor["state"]``) and turns into one with ``asdict()``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional



class RayStateApiException(ValueError):
    """A state API request was wrong (an unknown resource, filter column or
    predicate) or could not be answered (pyray.util.state.exception)."""

DEFAULT_LIMIT = 100
DEFAULT_RPC_TIMEOUT = 30
PREDICATES = ("=", "!=")


class StateSchema:
    """Base of the state dataclasses.  ``DETAIL`` names the fields filled
    only with ``detail=True``."""

    DETAIL: tuple = ()

    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key, default=None):
        return getattr(self, key, default)

    def __contains__(self, key):
        return key in self.columns()

    def keys(self):
        return list(self.columns())

    def items(self):
        return [(k, getattr(self, k)) for k in self.columns()]

    def asdict(self):
        return dataclasses.asdict(self)

    @classmethod
    def columns(cls):
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def base_columns(cls):
        return tuple(c for c in cls.columns() if c not in cls.DETAIL)

    @classmethod
    def from_row(cls, row, detail=True):
        keep = cls.columns() if detail else cls.base_columns()
        return cls(**{k: row.get(k) for k in keep})


@dataclass(init=True)
class ActorState(StateSchema):
    actor_id: Optional[str] = None
    class_name: Optional[str] = None
    state: Optional[str] = None
    job_id: Optional[str] = None
    name: Optional[str] = None
    node_id: Optional[str] = None
    pid: Optional[int] = None
    ray_namespace: Optional[str] = None
    serialized_runtime_env: Optional[str] = None
    required_resources: Optional[dict] = None
    death_cause: Optional[Any] = None
    is_detached: Optional[bool] = None
    placement_group_id: Optional[str] = None
    repr_name: Optional[str] = None
    num_restarts: Optional[int] = None
    num_restarts_due_to_lineage_reconstruction: Optional[int] = None
    call_site: Optional[str] = None
    labels: Optional[dict] = None

    DETAIL = ("serialized_runtime_env", "required_resources", "death_cause", "is_detached",
              "placement_group_id", "repr_name", "num_restarts",
              "num_restarts_due_to_lineage_reconstruction", "call_site", "labels")


@dataclass(init=True)
class TaskState(StateSchema):
    task_id: Optional[str] = None
    attempt_number: Optional[int] = None
    name: Optional[str] = None
    state: Optional[str] = None
    job_id: Optional[str] = None
    actor_id: Optional[str] = None
    type: Optional[str] = None
    func_or_class_name: Optional[str] = None
    parent_task_id: Optional[str] = None
    node_id: Optional[str] = None
    worker_id: Optional[str] = None
    worker_pid: Optional[int] = None
    error_type: Optional[str] = None
    language: Optional[str] = None
    required_resources: Optional[dict] = None
    runtime_env_info: Optional[dict] = None
    placement_group_id: Optional[str] = None
    events: Optional[List[dict]] = None
    profiling_data: Optional[dict] = None
    creation_time_ms: Optional[int] = None
    start_time_ms: Optional[int] = None
    end_time_ms: Optional[int] = None
    task_log_info: Optional[dict] = None
    error_message: Optional[str] = None
    is_debugger_paused: Optional[bool] = None
    call_site: Optional[str] = None
    label_selector: Optional[dict] = None

    DETAIL = ("language", "required_resources", "runtime_env_info", "placement_group_id",
              "events", "profiling_data", "creation_time_ms", "start_time_ms", "end_time_ms",
              "task_log_info", "error_message", "is_debugger_paused", "call_site",
              "label_selector")


@dataclass(init=True)
class NodeState(StateSchema):
    node_id: Optional[str] = None
    node_ip: Optional[str] = None
    is_head_node: Optional[bool] = None
    state: Optional[str] = None
    state_message: Optional[str] = None
    node_name: Optional[str] = None
    resources_total: Optional[dict] = None
    labels: Optional[dict] = None
    start_time_ms: Optional[int] = None
    end_time_ms: Optional[int] = None

    DETAIL = ("start_time_ms", "end_time_ms")


@dataclass(init=True)
class WorkerState(StateSchema):
    worker_id: Optional[str] = None
    is_alive: Optional[bool] = None
    worker_type: Optional[str] = None
    exit_type: Optional[str] = None
    node_id: Optional[str] = None
    ip: Optional[str] = None
    pid: Optional[int] = None
    exit_detail: Optional[str] = None
    worker_launch_time_ms: Optional[int] = None
    worker_launched_time_ms: Optional[int] = None
    start_time_ms: Optional[int] = None
    end_time_ms: Optional[int] = None
    debugger_port: Optional[int] = None
    num_paused_threads: Optional[int] = None

    DETAIL = ("worker_launch_time_ms", "worker_launched_time_ms", "start_time_ms",
              "end_time_ms", "debugger_port", "num_paused_threads")


@dataclass(init=True)
class PlacementGroupState(StateSchema):
    placement_group_id: Optional[str] = None
    name: Optional[str] = None
    creator_job_id: Optional[str] = None
    state: Optional[str] = None
    bundles: Optional[List[dict]] = None
    is_detached: Optional[bool] = None
    stats: Optional[dict] = None

    DETAIL = ("bundles", "is_detached", "stats")


@dataclass(init=True)
class ObjectState(StateSchema):
    object_id: Optional[str] = None
    object_size: Optional[int] = None
    task_status: Optional[str] = None
    attempt_number: Optional[int] = None
    reference_type: Optional[str] = None
    call_site: Optional[str] = None
    type: Optional[str] = None
    pid: Optional[int] = None
    ip: Optional[str] = None
    node_id: Optional[str] = None       # pyray: the node of the owner (Ray has ip only)


@dataclass(init=True)
class JobState(StateSchema):
    type: Optional[str] = None
    job_id: Optional[str] = None
    submission_id: Optional[str] = None
    driver_info: Optional[dict] = None
    status: Optional[str] = None
    entrypoint: Optional[str] = None
    message: Optional[str] = None
    error_type: Optional[str] = None
    start_time: Optional[int] = None
    end_time: Optional[int] = None
    metadata: Optional[Dict[str, str]] = None
    runtime_env: Optional[dict] = None
    driver_agent_http_address: Optional[str] = None
    driver_node_id: Optional[str] = None
    driver_exit_code: Optional[int] = None


SCHEMAS = {
    "actors": ActorState, "tasks": TaskState, "nodes": NodeState, "workers": WorkerState,
    "placement_groups": PlacementGroupState, "objects": ObjectState, "jobs": JobState,
}

# the id column of each resource (get_*)
ID_COLUMNS = {
    "actors": "actor_id", "tasks": "task_id", "nodes": "node_id", "workers": "worker_id",
    "placement_groups": "placement_group_id", "objects": "object_id", "jobs": "job_id",
}


def resource_name(resource):
    """'placement-groups' and 'placement_groups' name the same resource."""
    r = str(resource).replace("-", "_").lower()
    if r not in SCHEMAS:
        raise RayStateApiException(
            f"Unknown resource {resource!r}; the resources are: "
            f"{', '.join(sorted(k.replace('_', '-') for k in SCHEMAS))}.")
    return r


@dataclass
class ListApiOptions:
    limit: int = DEFAULT_LIMIT
    timeout: int = DEFAULT_RPC_TIMEOUT
    filters: list = field(default_factory=list)
    detail: bool = False
