"""Ray's state dataclasses (ray.util.state.common): ActorState, TaskState,
NodeState, WorkerState, PlacementGroupState, ObjectState, JobState."""
from pyray._private.state_schema import (DEFAULT_LIMIT, DEFAULT_RPC_TIMEOUT,  # noqa: F401
                                         ActorState, JobState, ListApiOptions, NodeState,
                                         ObjectState, PlacementGroupState, StateSchema,
                                         TaskState, WorkerState)
