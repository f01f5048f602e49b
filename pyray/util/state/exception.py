"""The state API's error (ray.util.state.exception)."""
from pyray._private.state_schema import RayStateApiException  # noqa: F401
