"""Old home of the public API's functions, kept for imports of
pyray._private.worker: they live in api.py."""
from pyray._private.api import *  # noqa: F401,F403
from pyray._private.api import _gcs_call  # noqa: F401
