"""The state API's error (ray.util.state.exception)."""
from __future__ import annotations


class RayStateApiException(ValueError):
    """A state API request was wrong (an unknown resource, filter column or
    predicate) or could not be answered."""


class DataSourceUnavailable(RayStateApiException):
    """A process holding part of the answer did not reply in time."""
