"""`pyray start --head`, `pyray start --address` (a second node joins),
`pyray status` (nodes, resources, store use) and `pyray stop --address`,
each a real command in a subprocess."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

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
        status = pyray_cmd(cli_env, "status", "--address", address).stdout
        assert "2 live node(s)" in status
        blocks = status.split("\nnode ")[1:]
        head = next(b for b in blocks if "(head)" in b)
        other = next(b for b in blocks if b.startswith(joined))
        assert re.search(r"CPU\s+\S+ / 1\.0", head) and re.search(r"CPU\s+\S+ / 2\.0", other)
        assert re.search(r"b\s+\S+ / 1\.0", other)
        assert re.search(r"object store: 1\d\.\d MiB used of 64\.0 MiB, 1 objects", head)
        assert "of 96.0 MiB" in other
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
