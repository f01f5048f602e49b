"""The autoscaling policy: a plain class fed ongoing-request metrics that
returns a replica count.  The controller carries its decisions out.

Not flapping (Ray Serve's issue #33416):
- the load is the *average* over `look_back_period_s` of the ongoing and
  queued requests the handles report (a momentary spike or gap moves it
  little);
- a change of direction must hold for `upscale_delay_s` / `downscale_delay_s`
  without a break before it is carried out (one sample back inside the band
  restarts the clock);
- the step is scaled by the up/downscaling factor and rounded away from the
  current count only when the load is past it (ceil on the way up, on the way
  down the count only drops once the load fits the smaller count).
"""
from __future__ import annotations

import collections
import math
from typing import Dict, Optional

from pyray.serve.config import AutoscalingConfig


class MetricsWindow:
    """Samples of ongoing+queued requests per reporter (a handle or replica),
    averaged over the look-back period."""

    def __init__(self, look_back_period_s: float, stale_after_s: float):
        self.look_back = look_back_period_s
        self.stale_after = stale_after_s
        self._samples: Dict[str, collections.deque] = {}
        self._last: Dict[str, tuple] = {}

    def record(self, reporter: str, now: float, value: float):
        dq = self._samples.get(reporter)
        if dq is None:
            dq = self._samples[reporter] = collections.deque()
        dq.append((now, float(value)))
        self._last[reporter] = (now, float(value))
        while dq and dq[0][0] < now - self.look_back:
            dq.popleft()

    def total(self, now: float) -> Optional[float]:
        """The sum over reporters of each one's average in the window (its
        last sample when it reported less often than the window is long);
        None when no reporter is fresh.  A reporter silent for stale_after
        seconds is dropped."""
        total, any_sample = 0.0, False
        for key in list(self._samples):
            dq = self._samples[key]
            while dq and dq[0][0] < now - self.look_back:
                dq.popleft()
            last_t, last_v = self._last[key]
            if last_t < now - self.stale_after:
                del self._samples[key], self._last[key]
                continue
            any_sample = True
            total += sum(v for _, v in dq) / len(dq) if dq else last_v
        return total if any_sample else None

    def latest(self) -> float:
        return sum(dq[-1][1] for dq in self._samples.values() if dq)


class AutoscalingPolicy:
    """decide(now, current, load) -> the replica count to run."""

    def __init__(self, config: AutoscalingConfig):
        self.config = config
        self._up_since: Optional[float] = None
        self._down_since: Optional[float] = None

    def desired(self, current: int, load: float) -> int:
        """The count the load asks for, before delays."""
        c = self.config
        raw = load / c.target_ongoing_requests
        if current == 0:
            want = math.ceil(raw * c.upscale_factor) if load > 0 else 0
        elif raw > current:
            want = math.ceil(current + (raw - current) * c.upscale_factor - 1e-9)
        elif raw < current:
            want = math.ceil(current + (raw - current) * c.downscale_factor - 1e-9)
        else:
            want = current
        if current > 0 and load == 0:
            want = 0
        return max(c.min_replicas, min(c.max_replicas, int(want)))

    def decide(self, now: float, current: int, load: Optional[float]) -> int:
        c = self.config
        if load is None:  # no metrics yet: hold (within bounds)
            self._up_since = self._down_since = None
            return max(c.min_replicas, min(c.max_replicas, current))
        want = self.desired(current, load)
        if want > current:
            self._down_since = None
            if current == 0:  # requests are waiting for a first replica: no delay
                self._up_since = None
                return want
            if self._up_since is None:
                self._up_since = now
            if now - self._up_since >= c.upscale_delay_s:
                self._up_since = None
                return want
            return current
        if want < current:
            self._up_since = None
            if self._down_since is None:
                self._down_since = now
            delay = c.downscale_delay_s
            if want == 0 and c.downscale_to_zero_delay_s is not None:
                delay = c.downscale_to_zero_delay_s
            if now - self._down_since >= delay:
                self._down_since = None
                return want
            return current
        self._up_since = self._down_since = None
        return current
