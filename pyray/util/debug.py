"""`log_once` and friends, as Ray's `ray.util.debug`: say a thing the first
time only."""
from __future__ import annotations

import threading
import time

_seen = set()
_lock = threading.Lock()
_disabled = False
_period_s = None
_last_reset = time.monotonic()


def log_once(key) -> bool:
    """True the first time it is called with `key` in this process (and, after
    `enable_periodic_logging()`, again once a minute); always False after
    `disable_log_once_globally()`."""
    global _last_reset
    if _disabled:
        return False
    with _lock:
        if _period_s is not None and time.monotonic() - _last_reset > _period_s:
            _seen.clear()
            _last_reset = time.monotonic()
        if key in _seen:
            return False
        _seen.add(key)
        return True


def disable_log_once_globally() -> None:
    global _disabled
    _disabled = True


def enable_periodic_logging(period_s: float = 60.0) -> None:
    global _period_s
    _period_s = float(period_s)


def reset_log_once(key=None) -> None:
    with _lock:
        if key is None:
            _seen.clear()
        else:
            _seen.discard(key)
