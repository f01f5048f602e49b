"""Serve's exceptions, under Ray's names (`ray.serve.exceptions`)."""
from __future__ import annotations

from typing import Optional

from pyray.exceptions import TaskCancelledError


class RayServeException(Exception):
    pass


class BackPressureError(RayServeException):
    """Raised when max_queued_requests is exceeded on a DeploymentHandle."""

    def __init__(self, num_queued_requests: int, max_queued_requests: int,
                 status_code: int = 503, retry_after_s: Optional[float] = None):
        super().__init__(num_queued_requests, max_queued_requests, status_code, retry_after_s)
        self._message = (f"Request dropped due to backpressure (num_queued_requests="
                         f"{num_queued_requests}, max_queued_requests={max_queued_requests}).")
        self._status_code = status_code
        self._retry_after_s = retry_after_s

    def __str__(self):
        return self._message

    @property
    def message(self) -> str:
        return self._message

    @property
    def status_code(self) -> int:
        return self._status_code

    @property
    def retry_after_s(self) -> Optional[float]:
        return self._retry_after_s


class RequestCancelledError(RayServeException, TaskCancelledError):
    def __init__(self, request_id: Optional[str] = None):
        super().__init__(request_id)
        self._request_id = request_id

    def __str__(self):
        return f"Request {self._request_id} was cancelled."


class DeploymentUnavailableError(RayServeException):
    """A handle's deployment is unhealthy (DEPLOY_FAILED) or was deleted."""

    def __init__(self, deployment_id):
        super().__init__(deployment_id)
        self.deployment_id = deployment_id

    def __str__(self):
        return (f"{self.deployment_id} is unavailable: it failed to deploy or was deleted. "
                "See serve.status() for its message.")
