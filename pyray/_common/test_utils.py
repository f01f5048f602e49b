"""`ray._common.test_utils`: the same helpers as pyray._private.test_utils."""
from pyray._private.test_utils import (SignalActor, Semaphore,  # noqa: F401
                                       async_wait_for_condition, wait_for_condition)
