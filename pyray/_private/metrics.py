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

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

# PYRAY_METRICS_REPORT_INTERVAL_MS: how often a process sends what it
# recorded (Ray's metrics_report_interval_ms is 10 s; pyray's default is
# shorter since a report is one small message to the local raylet)
_DEFAULT_INTERVAL_MS = 1000


def report_interval_s():
    raw = os.environ.get("PYRAY_METRICS_REPORT_INTERVAL_MS") or \
        os.environ.get("RAY_metrics_report_interval_ms")
    try:
        ms = float(raw) if raw else _DEFAULT_INTERVAL_MS
    except ValueError:
        ms = _DEFAULT_INTERVAL_MS
    return max(ms, 10.0) / 1000.0


def require_exporter():
    """Raises ImportError naming the package a node needs to export metrics."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ImportError("exporting metrics needs the prometheus-client package: "
                          "pip install 'pyray[metrics]' (or pip install prometheus-client)") \
            from None


def check_export_port(port, address):
    """init(_metrics_export_port=...): a port for the node init() starts."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"_metrics_export_port must be a port number (0-65535; 0 lets the "
                         f"system pick one), got {port!r}")
    if address is not None:
        raise ValueError("_metrics_export_port applies to the node init() starts; a running "
                         "cluster's nodes export metrics on the port each was started with "
                         "(pyray start --metrics-export-port), see pyray.nodes()"
                         "[i]['MetricsExportPort']")
    require_exporter()


class _Recorder:
    """What this process recorded since its last report."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pending = {}       # definition -> {tag values: value}
        self.thread = None
        self.pid = None
        self.wake = threading.Event()

    def _ensure_thread(self):
        if self.thread is not None and self.pid == os.getpid():
            return
        with self.lock:
            if self.thread is not None and self.pid == os.getpid():
                return
            if self.pid is not None:
                self.pending = {}       # a forked child: the parent reports its own
                self.lock = threading.Lock()
            else:
                atexit.register(self.flush)
            self.pid = os.getpid()
            self.wake = threading.Event()
            self.thread = threading.Thread(target=self._loop, name="pyray-metrics", daemon=True)
            self.thread.start()

    def counter(self, defn, key, value):
        if self.pid != os.getpid():
            self._ensure_thread()
        with self.lock:
            series = self.pending.get(defn)
            if series is None:
                series = self.pending[defn] = {}
            series[key] = series.get(key, 0.0) + value

    def gauge(self, defn, key, value):
        if self.pid != os.getpid():
            self._ensure_thread()
        with self.lock:
            series = self.pending.get(defn)
            if series is None:
                series = self.pending[defn] = {}
            series[key] = value

    def histogram(self, defn, key, value):
        if self.pid != os.getpid():
            self._ensure_thread()
        boundaries = defn[4]
        i = bisect.bisect_left(boundaries, value)
        with self.lock:
            series = self.pending.get(defn)
            if series is None:
                series = self.pending[defn] = {}
            cur = series.get(key)
            if cur is None:
                cur = series[key] = [[0] * (len(boundaries) + 1), 0.0, 0]
            cur[0][i] += 1
            cur[1] += value
            cur[2] += 1

    def _loop(self):
        interval = report_interval_s()
        while True:
            self.wake.wait(interval)
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


def flush():
    """Sends this process's pending metrics now (before it leaves)."""
    if recorder.pid == os.getpid():
        recorder.flush()
