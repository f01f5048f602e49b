"""The metrics options (docs/metrics.md): no endpoint and no exporter
unless a node is given a metrics export port; bad ports refused before
anything starts, with the reason."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request

import pytest

import pyray
from pyray.cluster_utils import Cluster

pytest.importorskip("prometheus_client", reason="the metrics tests need prometheus-client "
                    "(pip install 'pyray[metrics]')")


def test_no_endpoint_unless_asked(driver):
    """A node started without a metrics port serves nothing and loads no
    exporter, in the driver or the raylet."""
    d = driver("""
        import sys, psutil, pyray
        pyray.init(num_cpus=1)
        from pyray.util.metrics import Counter
        Counter("unused").inc()
        from pyray._private.context import ctx
        raylet = psutil.Process(ctx.cluster.raylet.popen.pid)
        conns = getattr(raylet, "net_connections", None) or raylet.connections
        listening = [c for c in conns(kind="inet") if c.status == "LISTEN"]
        print("PORT", pyray.nodes()[0]["MetricsExportPort"])
        print("LISTEN", len(listening))
        print("LOADED", "prometheus_client" in sys.modules)
        pyray.shutdown()
    """)
    assert d.wait(timeout=60) == 0, d.text("stderr")
    out = d.text()
    assert "PORT None" in out and "LISTEN 0" in out and "LOADED False" in out, out


def test_bad_ports_are_refused(ray_init):
    for bad in (-1, 70000, "8080", 1.5):
        with pytest.raises(ValueError, match="_metrics_export_port"):
            pyray.init(_metrics_export_port=bad)
    # connecting to a running cluster, it is not used (as in Ray): a warning says so
    from pyray._private.metrics import check_export_port
    with pytest.warns(UserWarning, match="not used when connecting to a running cluster"):
        check_export_port(8080, "127.0.0.1:6379")
    # a port already in use: the node does not start, and says why
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(RuntimeError, match="cannot serve metrics on 127.0.0.1:"):
            ray_init(num_cpus=1, _metrics_export_port=s.getsockname()[1])
    assert not pyray.is_initialized()


def test_cli_refuses_a_bad_port():
    r = subprocess.run([sys.executable, "-m", "pyray.scripts.cli", "start", "--head",
                        "--metrics-export-port", "70000"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "--metrics-export-port must be a port number" in r.stderr


def _samples(port, name):
    """{labels (sorted tuple): value} of `name` in one scrape of a node."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {tuple(sorted(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == name}


@pyray.remote(resources={"second": 1})
class Recorder:
    def record_and_leave(self, n):
        from pyray.util.metrics import Counter
        c = Counter("per_node", tag_keys=("where",))
        for _ in range(n):
            c.inc(tags={"where": "second"})
        pyray.actor.exit_actor()


def test_metrics_are_exported_by_the_node_that_recorded_them(wait_for):
    """Each node serves its own endpoint; a user metric shows on the node of
    the process that recorded it; a process that leaves reports what it
    recorded even when its next periodic report is far away; the cluster's
    actor counts come from the head only."""
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "metrics_export_port": 0,
        "_system_config": {"metrics_report_interval_ms": 600000}})
    try:
        cluster.add_node(num_cpus=1, resources={"second": 1}, metrics_export_port=0)
        pyray.init(address=cluster.address)
        ports = {n["NodeID"]: n["MetricsExportPort"] for n in pyray.nodes()}
        head = ports.pop(cluster.head_node.node_id)
        (second,) = ports.values()
        assert head != second and head > 0 and second > 0
        r = Recorder.remote()
        with pytest.raises(pyray.exceptions.RayActorError):
            pyray.get(r.record_and_leave.remote(3), timeout=30)
        wait_for(lambda: _samples(second, "ray_per_node_total"), timeout=15,
                 what="the second node to export the counter its actor recorded")
        (labels, value), = _samples(second, "ray_per_node_total").items()
        assert value == 3.0 and dict(labels)["where"] == "second"
        assert _samples(head, "ray_per_node_total") == {}
        wait_for(lambda: _samples(head, "ray_actors"), timeout=15,
                 what="the head to export actor counts")
        assert _samples(second, "ray_actors") == {}
        assert os.path.basename(cluster.session_dir) == \
            dict(next(iter(_samples(second, "ray_resources"))))["SessionName"]
    finally:
        pyray.shutdown()
        cluster.shutdown()
