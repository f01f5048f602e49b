"""`pyray start --head`, `pyray start --address` (a second node joins),
`pyray status` (nodes, resources, store use) and `pyray stop --address`,
each a real command in a subprocess."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import psutil
import pytest

import pyray
from tasklib import node_id

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


@pytest.fixture
def cli_env():
    """The environment for `pyray` commands: their session directories and
    current-cluster file go in a private (short: socket paths) temp dir."""
    root = tempfile.mkdtemp(prefix="pr", dir="/tmp")
    env = dict(os.environ)
    top = os.path.dirname(os.path.dirname(os.path.abspath(pyray.__file__)))
    env["PYTHONPATH"] = top + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["TMPDIR"] = root
    env.pop("PYRAY_ADDRESS", None)
    yield env
    left = [p for p in psutil.process_iter(["cmdline"])
            if root in " ".join(p.info["cmdline"] or ())]
    for p in left:
        p.kill()
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes left running: {[p.pid for p in left]}"


def pyray_cmd(env, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "pyray.scripts.cli", *args], env=env,
                         capture_output=True, text=True, timeout=40, cwd=env["TMPDIR"])
    if check:
        assert out.returncode == 0, f"pyray {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_a_head_add_a_node_status_and_stop(cli_env):
    port = free_port()
    address = f"127.0.0.1:{port}"
    out = pyray_cmd(cli_env, "start", "--head", "--port", str(port), "--num-cpus", "1",
                    "--object-store-memory", str(64 * MiB)).stdout
    # the head's own address (on the route out of the machine) is printed; the
    # GCS listens on every interface, so 127.0.0.1 reaches it too
    printed = re.search(r"GCS address: tcp://(\S+)", out).group(1)
    assert printed.endswith(f":{port}") and f"--address {printed} --token" in out
    token = re.search(r"--token ([0-9a-f]{32})", out).group(1)
    out = pyray_cmd(cli_env, "start", "--address", address, "--num-cpus", "2",
                    "--resources", '{"b": 1}', "--object-store-memory", str(96 * MiB),
                    "--memory", str(3 << 30)).stdout
    joined = re.search(r"node ([0-9a-f]{32}) joined", out).group(1)
    try:
        # this process's TMPDIR holds no record of the cluster: it needs the token
        pyray.init(address=address, _token=token)
        assert pyray.get(node_id.options(resources={"b": 1}).remote(), timeout=30) == joined
        memory = {n["NodeID"]: n["Resources"].get("memory") for n in pyray.nodes()}
        assert memory.pop(joined) == 3 << 30          # --memory
        assert list(memory.values())[0] > 0           # the head's default
        held = pyray.put(np.ones(10 * MiB, np.uint8))          # in the head's store
        status = pyray_cmd(cli_env, "status", "-v", "--address", address).stdout
        assert "2 live node(s)" in status
        blocks = status.split("\nnode ")[1:]
        head = next(b for b in blocks if "(head)" in b)
        other = next(b for b in blocks if b.startswith(joined))
        assert re.search(r"CPU\s+\S+ / 1\.0", head) and re.search(r"CPU\s+\S+ / 2\.0", other)
        assert re.search(r"b\s+\S+ / 1\.0", other)
        assert re.search(r"object store: 1\d\.\d MiB used of 64\.0 MiB, 1 objects", head)
        assert "of 96.0 MiB" in other
        # without -v: the cluster's totals and one line per node
        summary = pyray_cmd(cli_env, "status", "--address", address).stdout
        assert re.search(r"\S+/3\.0 CPU", summary) and "\nnode " not in summary
        assert summary.count(" node ") == 2 and "(head)" in summary
        del held
    finally:
        pyray.shutdown()
    out = pyray_cmd(cli_env, "stop", "--address", address).stdout
    assert "Stopped" in out
    root = os.path.join(cli_env["TMPDIR"], "pyray")
    assert not [d for d in os.listdir(root) if d.startswith("session_")]
    assert not os.path.exists(os.path.join(root, "current_cluster"))
    out = pyray_cmd(cli_env, "status", "--address", address, check=False)
    assert out.returncode != 0 and "No pyray cluster answered" in out.stderr


def test_start_needs_head_or_address_and_valid_resources(cli_env):
    out = pyray_cmd(cli_env, "start", check=False)
    assert out.returncode != 0 and "--address" in out.stderr
    out = pyray_cmd(cli_env, "start", "--address", "127.0.0.1:1", "--resources", "[1]",
                    check=False)
    assert out.returncode != 0 and "JSON object" in out.stderr


def test_a_node_address_not_of_this_machine_is_refused(cli_env):
    out = pyray_cmd(cli_env, "start", "--head", "--port", str(free_port()),
                    "--node-ip-address", "203.0.113.9", check=False)
    assert out.returncode != 0 and "203.0.113.9 is not an address of this machine" in out.stderr
    root = os.path.join(cli_env["TMPDIR"], "pyray")
    assert not os.path.isdir(root) or not [d for d in os.listdir(root) if d.startswith("session_")]


def start_blocking(env, *args):
    """`pyray start --block ...` in the background, once it printed that
    the node is up: (Popen, the lines it printed)."""
    p = subprocess.Popen([sys.executable, "-m", "pyray.scripts.cli", "start", "--block", *args],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=env["TMPDIR"])
    lines = []
    for line in p.stdout:
        lines.append(line)
        if "--block:" in line:
            break
    assert p.poll() is None, f"pyray start --block exited: {''.join(lines)}{p.stderr.read()}"
    return p, lines


def sessions_in(path):
    return [d for d in os.listdir(path) if d.startswith("session_")] if os.path.isdir(path) \
        else []


def test_start_block_runs_until_sigterm_then_stops_its_node(cli_env):
    temp = os.path.join(cli_env["TMPDIR"], "t")
    p, _ = start_blocking(cli_env, "--head", "--port", str(free_port()), "--num-cpus", "1",
                          "--object-store-memory", str(64 * MiB), "--temp-dir", temp)
    try:
        # GCS, raylet, the raylet's zygote and its worker: all below the command
        procs = psutil.Process(p.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in procs)
        assert "pyray.gcs.server" in names and "pyray.raylet.raylet" in names
        assert len(procs) >= 3
        assert len(sessions_in(temp)) == 1                      # --temp-dir
        time.sleep(1.0)
        assert p.poll() is None                                 # still in the foreground
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    gone, alive = psutil.wait_procs(procs, timeout=5)
    assert not alive, f"left running: {[q.pid for q in alive]}"
    assert sessions_in(temp) == []
    assert not os.path.exists(os.path.join(cli_env["TMPDIR"], "pyray", "current_cluster"))
    assert "SIGTERM received" in p.stdout.read()


def test_stop_force_kills_at_once_and_a_blocking_start_notices(cli_env):
    port = free_port()
    address = f"127.0.0.1:{port}"
    p, _ = start_blocking(cli_env, "--head", "--port", str(port), "--num-cpus", "1",
                          "--object-store-memory", str(64 * MiB))
    try:
        procs = psutil.Process(p.pid).children(recursive=True)
        raylet = next(q for q in procs if "pyray.raylet.raylet" in q.cmdline())
        # a stopped raylet cannot act on SIGTERM: only SIGKILL ends it, so
        # without --force this stop would wait out its grace period
        raylet.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        out = pyray_cmd(cli_env, "stop", "--force", "--grace-period", "60", "--address", address)
        assert time.monotonic() - start < 20 and "Stopped" in out.stdout
        gone, alive = psutil.wait_procs(procs, timeout=5)
        assert not alive, f"left running: {[q.pid for q in alive]}"
        # --block saw its processes exit by themselves: it says so, exit code 1
        assert p.wait(30) == 1
        assert "exited" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    assert sessions_in(os.path.join(cli_env["TMPDIR"], "pyray")) == []


def test_ray_flags_pyray_lacks_give_one_clear_line_and_exit_code_2(cli_env):
    for flag, value in (("--plasma-directory", "/tmp"), ("--node-manager-port", "6380"),
                        ("--min-worker-port", "10002"), ("--storage", "/tmp/s"),
                        ("--system-config", '{"no_such_key": 1}')):
        out = pyray_cmd(cli_env, "start", "--head", "--port", str(free_port()),
                        f"{flag}={value}", check=False)
        err = out.stderr.strip()
        assert out.returncode == 2 and "\n" not in err and "usage:" not in err, (flag, err)
        assert err.startswith("pyray start: pyray does not support ") and flag in err, err
    assert sessions_in(os.path.join(cli_env["TMPDIR"], "pyray")) == []
    out = pyray_cmd(cli_env, "--version")
    assert out.stdout.strip() == f"pyray, version {pyray.__version__}"


def test_ray_start_flags_are_accepted_with_their_effect(cli_env):
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp = os.path.join(cli_env["TMPDIR"], "t")
    spill = os.path.join(cli_env["TMPDIR"], "spill")
    metrics_port = free_port()
    out = pyray_cmd(cli_env, "start", "--head", "--port", str(port), "--num-cpus", "1",
                    "--object-store-memory", str(64 * MiB), "--temp-dir", temp,
                    "--object-spilling-directory", spill, "--dashboard-host=0.0.0.0",
                    "--dashboard-port", "8265", "--include-dashboard=false",
                    "--disable-usage-stats", "--ray-client-server-port", "10001",
                    "--metrics-export-port", str(metrics_port), "--runtime-env-agent-port", "9000",
                    "--log-style", "record", "--log-color", "false", "--verbose",
                    "--labels", "zone=us,tier=gold",
                    "--system-config", '{"memory_usage_threshold": 0.9, '
                                       '"memory_monitor_refresh_ms": "500"}')
    try:
        assert "note: --dashboard-host is ignored: --include-dashboard is false" in out.stderr
        # --metrics-export-port: the node serves Prometheus metrics there
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            assert b"ray_node_cpu_count{" in r.read()
        assert len(sessions_in(temp)) == 1                          # --temp-dir
        assert len(os.listdir(spill)) == 1                          # the node's spill dir
        raylet = next(p for p in psutil.process_iter(["cmdline"])
                      if "pyray.raylet.raylet" in (p.info["cmdline"] or ())
                      and temp in " ".join(p.info["cmdline"]))
        cmd = raylet.cmdline()                                      # --labels
        assert json.loads(cmd[cmd.index("--labels") + 1]) == {"zone": "us", "tier": "gold"}
        env = raylet.environ()                                      # --system-config
        assert env["PYRAY_MEMORY_USAGE_THRESHOLD"] == "0.9"
        assert env["PYRAY_MEMORY_MONITOR_REFRESH_MS"] == "500"
        status = pyray_cmd(cli_env, "status", "--verbose", "--address", address).stdout
        assert "the memory monitor acts above 0.9" in status and temp in status
    finally:
        pyray_cmd(cli_env, "stop", "--address", address)
    assert sessions_in(temp) == [] and os.listdir(spill) == []
