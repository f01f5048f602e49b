"""serve.status() and its parts, in Ray Serve's shape."""
from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Dict, Optional


class ApplicationStatus(str, Enum):
    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"
    DELETING = "DELETING"


class DeploymentStatus(str, Enum):
    UPDATING = "UPDATING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    UPSCALING = "UPSCALING"
    DOWNSCALING = "DOWNSCALING"


class DeploymentStatusTrigger(str, Enum):
    UNSPECIFIED = "UNSPECIFIED"
    CONFIG_UPDATE_STARTED = "CONFIG_UPDATE_STARTED"
    CONFIG_UPDATE_COMPLETED = "CONFIG_UPDATE_COMPLETED"
    UPSCALE_COMPLETED = "UPSCALE_COMPLETED"
    DOWNSCALE_COMPLETED = "DOWNSCALE_COMPLETED"
    AUTOSCALING = "AUTOSCALING"
    REPLICA_STARTUP_FAILED = "REPLICA_STARTUP_FAILED"
    HEALTH_CHECK_FAILED = "HEALTH_CHECK_FAILED"
    DELETING = "DELETING"


class ReplicaState(str, Enum):
    STARTING = "STARTING"
    UPDATING = "UPDATING"
    RECOVERING = "RECOVERING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    PENDING_MIGRATION = "PENDING_MIGRATION"


class ProxyStatus(str, Enum):
    STARTING = "STARTING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DRAINING = "DRAINING"
    DRAINED = "DRAINED"


@dataclasses.dataclass
class DeploymentStatusOverview:
    status: DeploymentStatus
    status_trigger: DeploymentStatusTrigger
    replica_states: Dict[ReplicaState, int]
    message: str


@dataclasses.dataclass
class ApplicationStatusOverview:
    status: ApplicationStatus
    message: str
    last_deployed_time_s: float
    deployments: Dict[str, DeploymentStatusOverview]


@dataclasses.dataclass
class ServeStatus:
    proxies: Dict[str, ProxyStatus] = dataclasses.field(default_factory=dict)
    applications: Dict[str, ApplicationStatusOverview] = dataclasses.field(
        default_factory=dict)
    target_capacity: Optional[float] = None


def status_from_dict(d: dict) -> ServeStatus:
    """The controller's plain-dict status as ServeStatus."""
    apps = {}
    for name, a in d["applications"].items():
        deps = {dn: DeploymentStatusOverview(
                    status=DeploymentStatus(x["status"]),
                    status_trigger=DeploymentStatusTrigger(x["status_trigger"]),
                    replica_states={ReplicaState(k): v for k, v in x["replica_states"].items()},
                    message=x["message"])
                for dn, x in a["deployments"].items()}
        apps[name] = ApplicationStatusOverview(
            status=ApplicationStatus(a["status"]), message=a["message"],
            last_deployed_time_s=a["last_deployed_time_s"], deployments=deps)
    proxies = {k: ProxyStatus(v) for k, v in d["proxies"].items()}
    return ServeStatus(proxies=proxies, applications=apps)
