"""The process side of user metrics (pyray.util.metrics; docs/metrics.md).

Recording a value touches only this process's memory: counters and
histograms add up and a gauge keeps its last value, per metric and tag
values.  A thread, started the first time a metric records something, sends
what was recorded to the node's raylet every ``report interval`` as one
one-way METRICS_REPORT message (nothing when nothing was recorded), and once
more when the process leaves (flush(): at exit, at pyray.shutdown(), before
a worker or actor process exits).  The raylet's metrics agent
(pyray.raylet.metrics_agent) merges the reports of its node's processes and
exports them.

Nothing here imports prometheus_client: only a node that exports metrics
does.
"""
from __future__ import annotations

import atexit
import bisect
import os
import threading
import time

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

def report_interval_s():
    """Config.metrics_report_interval_ms, in seconds (at least 10 ms)."""
    from pyray._private.context import ctx
    config = ctx.config
    if config is None:
        from pyray._private.config import Config
        config = Config.from_env()
    return max(float(config.metrics_report_interval_ms), 10.0) / 1000.0


def require_exporter():
    """Raises ImportError naming the package a node needs to export metrics."""
    import importlib.util
    if importlib.util.find_spec("prometheus_client") is None:    # found, not imported
        raise ImportError("exporting metrics needs the prometheus-client package: "
                          "pip install 'pyray[metrics]' (or pip install prometheus-client)")


def check_export_port(port, address, what="_metrics_export_port"):
    """init(_metrics_export_port=...): a port for the node init() starts
    (`what`: the argument's name, for the error); with an `address`, a
    warning that it is not used."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{what} must be a port number (0-65535; 0 lets the "
                         f"system pick one), got {port!r}")
    if address is not None:
        # Ray ignores it here; a warning says so
        import warnings
        warnings.warn(f"{what} is not used when connecting to a running cluster: its nodes "
                      "export metrics on the ports they were started with (pyray start "
                      "--metrics-export-port), see pyray.nodes()[i]['MetricsExportPort'].",
                      UserWarning, stacklevel=4)
        return
    require_exporter()


class _Recorder:
    """What this process recorded since its last report."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending = {}       # definition -> {tag values: value}
        self.thread = None          # the reporting thread, once something was recorded
        self.exit_hook = False

    def _start(self):
        with self.lock:
            if self.thread is not None:
                return
            if not self.exit_hook:
                self.exit_hook = True
                atexit.register(self.flush)
            self.thread = threading.Thread(target=self._loop, name="pyray-metrics", daemon=True)
            self.thread.start()

    def _after_fork(self):
        # a forked child reports only what it records itself
        self.lock = threading.Lock()
        self.pending = {}
        self.thread = None

    def _series(self, defn):
        """The pending values of a metric (call with the lock held)."""
        series = self.pending.get(defn)
        if series is None:
            series = self.pending[defn] = {}
        return series

    def counter(self, defn, key, value):
        if self.thread is None:
            self._start()
        with self.lock:
            series = self._series(defn)
            series[key] = series.get(key, 0.0) + value

    def gauge(self, defn, key, value):
        if self.thread is None:
            self._start()
        with self.lock:
            self._series(defn)[key] = value

    def histogram(self, defn, key, value):
        if self.thread is None:
            self._start()
        boundaries = defn[4]
        i = bisect.bisect_left(boundaries, value)
        with self.lock:
            series = self._series(defn)
            cur = series.get(key)
            if cur is None:
                cur = series[key] = [[0] * (len(boundaries) + 1), 0.0, 0]
            cur[0][i] += 1
            cur[1] += value
            cur[2] += 1

    def _loop(self):
        interval = report_interval_s()
        while True:
            time.sleep(interval)
            self.flush()

    def flush(self):
        """Sends what was recorded to this node's raylet (kept for later when
        this process is not connected to a node)."""
        from pyray._private.context import ctx
        cw = ctx.core_worker
        out = getattr(cw, "out", None)
        raylet = getattr(cw, "raylet_addr", None)
        if out is None or raylet is None or getattr(cw, "closing", False):
            return
        with self.lock:
            pending, self.pending = self.pending, {}
        if not pending:
            return
        from pyray._private.protocol import METRICS_REPORT
        records = [defn + ({k: (v if not isinstance(v, list) else (v[0], v[1], v[2]))
                            for k, v in series.items()},)
                   for defn, series in pending.items()]
        try:
            out.send(raylet, METRICS_REPORT.make(records))
        except Exception:  # noqa: BLE001 - the node is going away; so are its metrics
            pass


recorder = _Recorder()
os.register_at_fork(after_in_child=recorder._after_fork)


def flush():
    """Sends this process's pending metrics now (before it leaves)."""
    if recorder.thread is not None:
        recorder.flush()
