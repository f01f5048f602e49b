"""A node's Prometheus endpoint (docs/metrics.md): ``/metrics`` on the
node's metrics export port, in Prometheus's text exposition format.

The raylet creates a MetricsAgent only when the node was started with a
metrics export port (``pyray start --metrics-export-port``,
``pyray.init(_metrics_export_port=...)``): only then is prometheus_client
imported and its HTTP thread started, so a node without one pays nothing.

What a scrape shows is read at the time of the scrape, on the HTTP server's
thread:

* the node's logical resources, leases and lease requests (the raylet's
  accounting; dict copies and len() are atomic under the GIL);
* the object store's usage (its stats call takes the store's own lock);
* the machine's CPU and memory (psutil);
* actors and placement groups by state: the head node asks the GCS for its
  tables every ``GCS_POLL_S`` on the raylet's loop (``poll_gcs``) while it
  is being scraped, and exports the last answer, so summing over nodes
  gives the cluster's count;
* user metrics (pyray.util.metrics) that the node's workers and drivers
  reported (METRICS_REPORT, ``h_report`` on the raylet's loop): counters
  and histograms add up over processes, a gauge keeps the last value set.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time

from pyray._private.protocol import LIST_ACTORS, METRICS_REPORT, PG_TABLE, TASK_COUNTS

log = logging.getLogger("pyray.raylet.metrics")

GCS_POLL_S = 2.0            # how often the head refreshes actor / group counts ...
SCRAPED_RECENTLY_S = 60.0   # ... while someone scraped it this recently
USER_PREFIX = "ray_"        # user metrics are exported as ray_<name>, as in Ray
COMPONENT = "core_worker"   # the Component label of user metrics, as in Ray

# user metric kinds on the wire (pyray._private.metrics)
COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

PG_STATES = ("PENDING", "CREATED", "REMOVED", "RESCHEDULING")
# a placement group's own resources (pyray._private.resources.group_resource):
# its bundles count as USED in the node's resources they were taken from
_GROUP_RESOURCE = re.compile(r"_group_(\d+_)?[0-9a-f]{16,}$")


class UserMetric:
    """One user metric as this node knows it: its definition and, per tuple
    of tag values, its value (counter, gauge) or ``[bucket counts, sum,
    count]`` (histogram, buckets not cumulative)."""

    __slots__ = ("kind", "description", "tag_keys", "boundaries", "series")

    def __init__(self, kind, description, tag_keys, boundaries):
        self.kind = kind
        self.description = description
        self.tag_keys = tuple(tag_keys)
        self.boundaries = tuple(boundaries or ())
        self.series = {}

    def same_definition(self, kind, tag_keys, boundaries):
        return (kind == self.kind and tuple(tag_keys) == self.tag_keys
                and tuple(boundaries or ()) == self.boundaries)

    def merge(self, series):
        """Adds one report's series: {tag values: delta or value}."""
        own = self.series
        if self.kind == COUNTER:
            for key, delta in series.items():
                own[key] = own.get(key, 0.0) + delta
        elif self.kind == GAUGE:
            own.update(series)
        else:
            n = len(self.boundaries) + 1
            for key, (counts, total, count) in series.items():
                cur = own.get(key)
                if cur is None:
                    cur = own[key] = [[0] * n, 0.0, 0]
                if len(counts) != n:
                    continue
                cur[0] = [a + b for a, b in zip(cur[0], counts)]
                cur[1] += total
                cur[2] += count


class MetricsAgent:
    def __init__(self, raylet, port, node_ip):
        import psutil
        from prometheus_client.core import CollectorRegistry
        from prometheus_client.exposition import start_http_server
        self.raylet = raylet
        self.psutil = psutil
        node = raylet.node
        self.session_name = os.path.basename(os.path.normpath(raylet.session_dir))
        self.node_ip = node["node_ip"]
        self.common = {"SessionName": self.session_name, "NodeAddress": self.node_ip}
        self.lock = threading.Lock()        # guards user, actors, pgs, closed
        self.user = {}                      # name -> UserMetric
        self.refused = set()                # names reported with a conflicting definition
        self.actors = None                  # {(state, class name): count} from the GCS
        self.pgs = None                     # {state: count} from the GCS
        self.task_counts = None             # see set_task_counts_source
        self.gcs_tasks = {}                 # {(state, name): n} from the GCS (head)
        self.closed = False                 # the raylet is closing the store
        self.gcs_req = 0
        self.last_scrape = None             # monotonic time of the last scrape
        psutil.cpu_percent(interval=None)   # starts the CPU measurement
        # as Ray: on every interface, but only loopback for a node on loopback
        host = "127.0.0.1" if node_ip.startswith("127.") or node_ip == "localhost" else "0.0.0.0"
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            self.server, self.thread = start_http_server(port, addr=host, registry=registry)
        except OSError as err:
            raise RuntimeError(f"cannot serve metrics on {host}:{port}: {err}; choose another "
                               f"metrics export port (0 lets the system pick a free one)") \
                from None
        self.port = self.server.server_port

    # ---- the raylet's loop ---------------------------------------------
    def h_report(self, msg, frames):
        """A process's user metrics since its last report (pyray._private.metrics)."""
        records = METRICS_REPORT.parse(msg).records
        with self.lock:
            for name, kind, description, tag_keys, boundaries, series in records:
                m = self.user.get(name)
                if m is None:
                    m = self.user[name] = UserMetric(kind, description, tag_keys, boundaries)
                elif not m.same_definition(kind, tag_keys, boundaries):
                    if name not in self.refused:
                        self.refused.add(name)
                        log.warning("user metric %r was reported as a %s with tag keys %s and "
                                    "boundaries %s, but it is already a %s with tag keys %s and "
                                    "boundaries %s here: the new one's values are dropped", name,
                                    kind, tuple(tag_keys), boundaries, m.kind, m.tag_keys,
                                    list(m.boundaries))
                    continue
                m.merge(series)

    def poll_gcs(self, now):
        """A timer on the head: asks the GCS for its actor and placement
        group tables (answered through on_gcs_response), once at the start
        and then while the endpoint is being scraped."""
        last = self.last_scrape
        if self.gcs_req and (last is None or now - last > SCRAPED_RECENTLY_S):
            return          # nobody looks: the GCS's tables are not sent for nothing
        raylet = self.raylet
        gcs = raylet.node["gcs_addr"]
        self.gcs_req += 1
        raylet.out.send(gcs, LIST_ACTORS.make(("met", "actors", self.gcs_req), raylet.addr))
        raylet.out.send(gcs, PG_TABLE.make(("met", "pgs", self.gcs_req), raylet.addr, None))
        raylet.out.send(gcs, TASK_COUNTS.make(("met", "tasks", self.gcs_req), raylet.addr))

    def on_gcs_response(self, req_id, ok, payload):
        if not ok:
            return
        if req_id[1] == "actors" and isinstance(payload, list):
            counts = {}
            for row in payload:
                key = (row.get("state") or "", row.get("class_name") or "")
                counts[key] = counts.get(key, 0) + 1
            with self.lock:
                self.actors = counts
        elif req_id[1] == "tasks" and isinstance(payload, dict):
            # the GCS's task records (task events): ray_tasks, on the head
            if self.task_counts is None:
                self.task_counts = self._gcs_task_counts
            counts = {}
            for (state, name, _type), n in payload.items():
                counts[(state, name)] = counts.get((state, name), 0) + n
            with self.lock:
                self.gcs_tasks = counts
        elif req_id[1] == "pgs" and isinstance(payload, dict):
            counts = {}
            for row in payload.values():
                st = row.get("state") or ""
                counts[st] = counts.get(st, 0) + 1
            with self.lock:
                self.pgs = counts

    def _gcs_task_counts(self):
        with self.lock:
            return dict(self.gcs_tasks)

    def set_task_counts_source(self, fn):
        """Where ray_tasks comes from: ``fn()`` -> {(state, name): count} of
        this node's tasks.  Until a source is set (task events record task
        states), ray_tasks is not exported; the raylet's own view of work is
        exported as ray_raylet_leases."""
        self.task_counts = fn

    def close(self):
        """Before the raylet closes the store: scrapes stop reading it.  The
        HTTP thread ends with the process (a daemon thread)."""
        with self.lock:
            self.closed = True

    # ---- a scrape (the HTTP server's thread) ---------------------------
    def collect(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)
        self.last_scrape = time.monotonic()
        common_keys = list(self.common)
        common_vals = list(self.common.values())

        def gauge(name, doc, labels=(), rows=()):
            fam = GaugeMetricFamily(name, doc, labels=common_keys + list(labels))
            for vals, value in rows:
                fam.add_metric(common_vals + list(vals), float(value))
            return fam

        yield from self._node_metrics(gauge)
        yield from self._raylet_metrics(gauge)
        with self.lock:
            actors = dict(self.actors) if self.actors is not None else None
            pgs = dict(self.pgs) if self.pgs is not None else None
            user = [(name, m.kind, m.description, m.tag_keys, m.boundaries, dict(m.series))
                    for name, m in self.user.items()]
        if actors is not None:
            yield gauge("ray_actors", "Current number of actors in a particular state.",
                        ("State", "Name"),
                        [((st, cls), n) for (st, cls), n in sorted(actors.items())])
        if pgs is not None:
            yield gauge("ray_placement_groups",
                        "Current number of placement groups by state.", ("State",),
                        [((st,), pgs.get(st, 0)) for st in sorted(set(PG_STATES) | set(pgs))])
        source = self.task_counts
        if source is not None:
            try:
                counts = source()
            except Exception:  # noqa: BLE001 - a scrape must not fail
                log.exception("the task counts source failed")
                counts = {}
            yield gauge("ray_tasks", "Current number of tasks by state.", ("State", "Name"),
                        [((st, name), n) for (st, name), n in sorted(counts.items())])
        for name, kind, description, tag_keys, boundaries, series in user:
            yield self._user_family(name, kind, description, tag_keys, boundaries, series,
                                    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily)

    def _node_metrics(self, gauge):
        ps = self.psutil
        mem = ps.virtual_memory()
        values = (
            ("ray_node_cpu_utilization", "Total CPU usage on a node as a percentage.",
             ps.cpu_percent(interval=None)),
            ("ray_node_cpu_count", "Total CPUs available on a node.", ps.cpu_count() or 0),
            ("ray_node_mem_used", "Memory usage on a node in bytes.", mem.total - mem.available),
            ("ray_node_mem_available", "Memory available on a node in bytes.", mem.available),
            ("ray_node_mem_total", "Total memory on a node in bytes.", mem.total),
        )
        for name, doc, value in values:
            yield gauge(name, doc, ("ip",), [((self.node_ip,), value)])

    def _raylet_metrics(self, gauge):
        raylet = self.raylet
        total = dict(raylet.res.total)
        available = dict(raylet.res.available)
        rows = []
        for name in sorted(total):
            if name.startswith("node:") or _GROUP_RESOURCE.search(name):
                continue
            t = total[name]
            avail = min(t, max(0.0, available.get(name, 0.0)))
            rows.append(((name, "USED"), t - avail))
            rows.append(((name, "AVAILABLE"), avail))
        yield gauge("ray_resources", "Logical resource usage for each node of the cluster.",
                    ("Name", "State"), rows)
        yield gauge("ray_raylet_leases",
                    "Worker leases on this node: GRANTED (a worker runs tasks of one owner) "
                    "and PENDING (requests waiting for resources or a worker).", ("State",),
                    [(("GRANTED",), len(raylet.leases)), (("PENDING",), len(raylet.requests))])
        with self.lock:
            if self.closed:
                return
            st = raylet.store.stats()
        yield gauge("ray_object_store_memory",
                    "Object store memory usage in bytes by location.", ("Location",),
                    [(("MMAP_SHM",), st["used"]), (("SPILLED",), st["spilled_bytes_now"])])
        yield gauge("ray_object_store_used_memory", "Object store memory in use in bytes.", (),
                    [((), st["used"])])
        yield gauge("ray_object_store_available_memory",
                    "Object store memory available in bytes.", (),
                    [((), max(0, st["capacity"] - st["used"]))])
        yield gauge("ray_object_store_num_local_objects",
                    "Number of objects in this node's object store.", (),
                    [((), st["num_objects"])])

    def _user_family(self, name, kind, description, tag_keys, boundaries, series,
                     counter_cls, gauge_cls, histogram_cls):
        from prometheus_client.utils import floatToGoString
        # a user tag named like one of ours wins
        extra = {"Component": COMPONENT, **self.common}
        extra = {k: v for k, v in extra.items() if k not in tag_keys}
        labels = list(tag_keys) + list(extra)
        extra_vals = list(extra.values())
        full = USER_PREFIX + name
        if kind == COUNTER:
            fam = counter_cls(full, description, labels=labels)
            for key, value in series.items():
                fam.add_metric(list(key) + extra_vals, value)
        elif kind == GAUGE:
            fam = gauge_cls(full, description, labels=labels)
            for key, value in series.items():
                fam.add_metric(list(key) + extra_vals, value)
        else:
            fam = histogram_cls(full, description, labels=labels)
            for key, (counts, total, count) in series.items():
                buckets, acc = [], 0
                for bound, n in zip(list(boundaries) + [float("inf")], counts):
                    acc += n
                    buckets.append((floatToGoString(bound), acc))
                fam.add_metric(list(key) + extra_vals, buckets, total)
        return fam
