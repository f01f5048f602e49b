"""The metrics endpoint (docs/metrics.md): a node's /metrics with Ray's system
metrics, user metrics (pyray.util.metrics) recorded in the driver, tasks and
actors, and a real Prometheus server scraping it."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import pyray
from pyray.util.metrics import Counter, Gauge, Histogram

pytest.importorskip("prometheus_client", reason="the metrics tests need prometheus-client "
                    "(pip install 'pyray[metrics]')")

MiB = 1 << 20
RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 * MiB, "_metrics_export_port": 0,
                 "_system_config": {"metrics_report_interval_ms": 200}}


def _port():
    port = pyray.nodes()[0]["MetricsExportPort"]
    assert isinstance(port, int) and port > 0, port
    return port


def scrape(port):
    """{(sample name, ((label, value), ...)): value} of one scrape."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels):
    """The sum of the samples of `name` whose labels include `labels`, or
    None when there is none."""
    found = [v for (n, ls), v in samples.items()
             if n == name and all(dict(ls).get(k) == want for k, want in labels.items())]
    return sum(found) if found else None


@pyray.remote(num_cpus=1)
def hold_cpu(path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.getpid()


@pyray.remote
def count_in_task(n):
    c = Counter("test_requests", description="requests served", tag_keys=("route",))
    for _ in range(n):
        c.inc(2, tags={"route": "a"})
    h = Histogram("test_latency", description="latency", boundaries=[1, 10],
                  tag_keys=("route",)).set_default_tags({"route": "a"})
    h.observe(0.5)
    h.observe(5)
    h.observe(50)
    return os.getpid()


@pyray.remote
class Meter:
    def __init__(self):
        self.g = Gauge("test_level", tag_keys=("who",)).set_default_tags({"who": "meter"})
        self.c = Counter("test_requests", tag_keys=("route",))

    def work(self, level):
        self.g.set(level)
        self.c.inc(tags={"route": "a"})
        return os.getpid()


@pyray.remote
class Idle:
    def ping(self):
        return os.getpid()


def test_node_records_its_port(ray_start):
    node = pyray.nodes()[0]
    assert node["MetricsExportPort"] == _port()
    assert "ray_node_mem_total" in {n for n, _ in scrape(_port())}


def test_system_metrics_are_the_nodes(ray_start, release, wait_for):
    import psutil
    port = _port()
    s = scrape(port)
    assert value(s, "ray_resources", Name="CPU", State="USED") == 0.0
    assert value(s, "ray_resources", Name="CPU", State="AVAILABLE") == 2.0
    assert value(s, "ray_node_mem_total") == psutil.virtual_memory().total
    assert value(s, "ray_node_cpu_count") == psutil.cpu_count()
    assert 0 < value(s, "ray_node_mem_available") <= value(s, "ray_node_mem_total")
    labels = dict(next(ls for (n, ls) in s if n == "ray_resources"))
    assert labels["NodeAddress"] == "127.0.0.1" and labels["SessionName"].startswith("session_")
    # a task holding a CPU shows as used while it runs
    ref = hold_cpu.remote(str(release))
    wait_for(lambda: value(scrape(port), "ray_resources", Name="CPU", State="USED") == 1.0,
             what="ray_resources CPU USED == 1 while a task holds it")
    assert value(scrape(port), "ray_raylet_leases", State="GRANTED") >= 1
    release.touch()
    pyray.get(ref, timeout=30)
    # the store's usage: an object put in it
    before = value(scrape(port), "ray_object_store_used_memory")
    big = pyray.put(b"x" * (8 * MiB))
    s = scrape(port)
    assert value(s, "ray_object_store_used_memory") >= before + 8 * MiB
    assert value(s, "ray_object_store_memory", Location="MMAP_SHM") >= 8 * MiB
    assert value(s, "ray_object_store_available_memory") <= 256 * MiB - 8 * MiB
    del big
    # actors and placement groups, from the GCS's tables
    m = Idle.remote()
    pyray.get(m.ping.remote())
    pg = pyray.util.placement_group([{"CPU": 0.5}])
    pyray.get(pg.ready(), timeout=30)
    wait_for(lambda: value(scrape(port), "ray_actors", State="ALIVE", Name="Idle") == 1
             and value(scrape(port), "ray_placement_groups", State="CREATED") == 1,
             what="ray_actors / ray_placement_groups to count the new actor and group")
    pyray.util.remove_placement_group(pg)
    pyray.kill(m)
    wait_for(lambda: value(scrape(port), "ray_actors", State="DEAD", Name="Idle") == 1,
             what="the killed actor to count as DEAD")


@pyray.remote
def counted_task(fail):
    if fail:
        raise ValueError("counted failure")
    return 1


def test_ray_tasks_counts_the_task_records(ray_start, wait_for):
    """ray_tasks{State,Name} on the head: the GCS's task records by state."""
    port = _port()
    assert pyray.get([counted_task.remote(False) for _ in range(3)]) == [1, 1, 1]
    with pytest.raises(ValueError):
        pyray.get(counted_task.remote(True))
    wait_for(lambda: value(scrape(port), "ray_tasks", State="FINISHED", Name="counted_task") == 3
             and value(scrape(port), "ray_tasks", State="FAILED", Name="counted_task") == 1,
             timeout=20, what="ray_tasks to count 3 finished and 1 failed counted_task")


def test_user_metrics_add_up_over_processes(ray_start, wait_for):
    port = _port()
    driver_counter = Counter("test_requests", tag_keys=("route",))
    driver_counter.inc(1, tags={"route": "a"})
    pids = set(pyray.get([count_in_task.remote(3) for _ in range(2)]))
    m = Meter.remote()
    pids.add(pyray.get(m.work.remote(7)))
    assert len(pids) >= 2          # recorded in more than one worker process
    # driver 1 + tasks 2 * 3 * 2 + actor 1
    wait_for(lambda: value(scrape(port), "ray_test_requests_total", route="a") == 14.0,
             what="ray_test_requests_total to reach 14")
    s = scrape(port)
    labels = dict(next(ls for (n, ls) in s if n == "ray_test_requests_total"))
    assert labels["Component"] == "core_worker" and labels["NodeAddress"] == "127.0.0.1"
    assert value(s, "ray_test_latency_bucket", route="a", le="1.0") == 2.0
    assert value(s, "ray_test_latency_bucket", route="a", le="10.0") == 4.0
    assert value(s, "ray_test_latency_bucket", route="a", le="+Inf") == 6.0
    assert value(s, "ray_test_latency_count", route="a") == 6.0
    assert value(s, "ray_test_latency_sum", route="a") == 2 * (0.5 + 5 + 50)
    assert value(s, "ray_test_level", who="meter") == 7.0
    pyray.get(m.work.remote(3))
    wait_for(lambda: value(scrape(port), "ray_test_level", who="meter") == 3.0,
             what="the gauge to keep the last value set")
    pyray.kill(m)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prometheus_scrapes_user_counter(ray_start, tmp_path, wait_for):
    prom = shutil.which("prometheus")
    if prom is None:
        pytest.skip("the prometheus server is not installed (`apt-get install prometheus`; "
                    ".ci/run installs it where apt-get is available)")
    port = _port()
    web = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: pyray\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    p = subprocess.Popen([prom, f"--config.file={config}",
                          f"--storage.tsdb.path={tmp_path / 'data'}",
                          f"--web.listen-address=127.0.0.1:{web}"],
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        @pyray.remote
        def count(n):
            c = Counter("prom_checked", description="seen by Prometheus", tag_keys=("kind",))
            for _ in range(n):
                c.inc(tags={"kind": "task"})
            return n
        assert pyray.get(count.remote(5)) == 5

        def query():
            if p.poll() is not None:
                raise AssertionError("prometheus exited: "
                                     + (tmp_path / "prometheus.log").read_text()[-2000:])
            q = urllib.parse.quote('sum(ray_prom_checked_total{kind="task"})')
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/query?query={q}",
                                            timeout=2) as r:
                    body = json.loads(r.read())
            except OSError:
                return None
            result = body.get("data", {}).get("result", [])
            return float(result[0]["value"][1]) if result else None

        assert wait_for(lambda: query() == 5.0, timeout=30, interval=0.3,
                        what="Prometheus to report ray_prom_checked_total == 5")
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
