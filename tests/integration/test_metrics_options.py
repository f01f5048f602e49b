"""The metrics options (docs/metrics.md): no endpoint and no exporter
unless a node is given a metrics export port; bad ports refused before
anything starts, with the reason."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

import pyray

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
        listening = [c for c in raylet.connections(kind="inet") if c.status == "LISTEN"]
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
    with pytest.raises(ValueError, match="running cluster"):
        pyray.init(address="127.0.0.1:1", _metrics_export_port=0)
    assert not pyray.is_initialized()
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
