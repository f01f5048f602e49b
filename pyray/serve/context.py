"""serve.get_replica_context(): what a replica knows of itself."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from pyray.serve.exceptions import RayServeException


@dataclasses.dataclass(frozen=True)
class DeploymentID:
    name: str
    app_name: str = "default"

    def __str__(self):
        return f"Deployment(name='{self.name}', app='{self.app_name}')"


@dataclasses.dataclass(frozen=True)
class ReplicaID:
    unique_id: str
    deployment_id: DeploymentID

    def to_full_id_str(self) -> str:
        return f"{self.deployment_id.app_name}#{self.deployment_id.name}#{self.unique_id}"


@dataclasses.dataclass
class ReplicaContext:
    replica_id: ReplicaID
    servable_object: Any

    @property
    def app_name(self) -> str:
        return self.replica_id.deployment_id.app_name

    @property
    def deployment(self) -> str:
        return self.replica_id.deployment_id.name

    @property
    def replica_tag(self) -> str:
        return self.replica_id.unique_id


_replica_context: Optional[ReplicaContext] = None


def _set_replica_context(c: Optional[ReplicaContext]):
    global _replica_context
    _replica_context = c


def get_replica_context() -> ReplicaContext:
    """The context of the replica this code runs in."""
    if _replica_context is None:
        raise RayServeException("`serve.get_replica_context()` may only be called from within "
                                "a Ray Serve deployment.")
    return _replica_context
