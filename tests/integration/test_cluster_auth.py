"""The cluster token (docs/cluster.md, "Security"): a cluster started with
`pyray start --head` accepts only peers that sign their messages with its
token; anything else sent to its tcp port is dropped before it is unpickled,
and the GCS carries on.

One head for the module, started by the real command in a private TMPDIR
(its session directory and current-cluster record meet no other cluster) on
a free port, and stopped with `pyray stop --address` (a bare `pyray stop`
would stop every cluster of this user on the machine)."""
from __future__ import annotations

import hmac
import os
import pickle
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil
import pytest
import zmq

import pyray
from tasklib import node_id

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
TOP = os.path.dirname(os.path.dirname(os.path.abspath(pyray.__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmpdir, **extra):
    env = dict(os.environ, TMPDIR=tmpdir, PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = TOP + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for name in ("PYRAY_ADDRESS", "RAY_ADDRESS", "PYRAY_TOKEN"):
        if name not in extra:
            env.pop(name, None)
    return env


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "pyray.scripts.cli", *args], env=env,
                          capture_output=True, text=True, timeout=40, cwd=env["TMPDIR"])


def _members(root):
    out = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            where = " ".join(p.info["cmdline"] or ()) + " " + (p.info["cwd"] or "")
        except psutil.Error:
            continue
        if root in where and p.pid != os.getpid():
            out.append(p)
    return out


@pytest.fixture(scope="module")
def head():
    root = tempfile.mkdtemp(prefix="pa", dir="/tmp")     # short: socket paths
    other = tempfile.mkdtemp(prefix="pa-empty", dir="/tmp")   # a TMPDIR with no record
    env = _env(root)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        out = _cli(env, "start", "--head", "--port", str(port), "--num-cpus", "1",
                   "--node-ip-address", "127.0.0.1", "--object-store-memory", str(64 * MiB))
        assert out.returncode == 0, f"pyray start failed:\n{out.stdout}\n{out.stderr}"
        token = re.search(r"--token ([0-9a-f]{32})\b", out.stdout).group(1)
        sessions = [d for d in os.listdir(os.path.join(root, "pyray")) if d.startswith("session_")]
        assert len(sessions) == 1
        yield {"address": address, "gcs": f"tcp://{address}", "token": token, "env": env,
               "root": root, "other": other, "stdout": out.stdout,
               "session_dir": os.path.join(root, "pyray", sessions[0])}
    finally:
        stop = _cli(env, "stop", "--address", address)
        left = _members(root) + _members(other)
        for p in left:
            p.kill()
        sessions = os.listdir(os.path.join(root, "pyray")) if os.path.isdir(root) else []
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(other, ignore_errors=True)
    assert stop.returncode == 0, stop.stderr
    assert not left, f"processes left running: {[p.cmdline() for p in left]}"
    assert not [d for d in sessions if d.startswith("session_")], sessions


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_head_makes_a_private_token_and_says_how_to_join(head):
    token, address = head["token"], head["address"]
    assert f"pyray start --address {address} --token {token}" in head["stdout"]
    assert f"pyray.init(address='{address}', _token='{token}')" in head["stdout"]
    path = os.path.join(head["session_dir"], "token")
    assert _mode(path) == 0o600 and open(path).read().strip() == token
    record = os.path.join(head["root"], "pyray", "current_cluster")
    assert _mode(record) == 0o600
    assert open(record).read().split() == [head["gcs"], token]


def test_a_driver_with_the_token_runs_a_task(head):
    pyray.init(address=head["address"], _token=head["token"])
    try:
        assert len(pyray.get(node_id.remote(), timeout=30)) == 32
    finally:
        pyray.shutdown()


def test_wrong_or_missing_tokens_are_refused_with_a_clear_error(head):
    address, wrong = head["address"], "0" * 32
    driver = textwrap.dedent("""
        import sys, pyray
        try:
            pyray.init(address=sys.argv[1], **({"_token": sys.argv[2]} if sys.argv[2:] else {}))
        except ConnectionError as err:
            print("REFUSED", err)
        else:
            print("CONNECTED")
    """)
    runs = {
        # the node and the drivers wait at the same time: a wrong token costs a timeout
        "join": subprocess.Popen(
            [sys.executable, "-m", "pyray.scripts.cli", "start", "--address", address,
             "--token", wrong, "--num-cpus", "1", "--object-store-memory", str(64 * MiB)],
            env=head["env"], cwd=head["root"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True),
        "wrong": subprocess.Popen([sys.executable, "-c", driver, address, wrong],
                                  env=head["env"], cwd=head["root"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True),
        # no token anywhere: not given, no $PYRAY_TOKEN, no record in its TMPDIR
        "missing": subprocess.Popen([sys.executable, "-c", driver, address],
                                    env=_env(head["other"]), cwd=head["other"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    out = {}
    try:
        for name, p in runs.items():
            stdout, stderr = p.communicate(timeout=40)
            out[name] = (p.returncode, stdout, stderr)
    finally:
        for p in runs.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)
    code, stdout, stderr = out["join"]
    assert code != 0 and "joined" not in stdout, (stdout, stderr)
    assert "accepted the connection but did not answer" in stderr and "token" in stderr, stderr
    code, stdout, stderr = out["wrong"]
    assert code == 0 and stdout.startswith("REFUSED") and "token" in stdout, (stdout, stderr)
    code, stdout, stderr = out["missing"]
    assert code == 0 and "only accepts peers that hold its token" in stdout, (stdout, stderr)
    # the refused node never joined; the right token (recorded here) still works
    status = _cli(head["env"], "status", "--address", address)
    assert status.returncode == 0 and "1 live node(s)" in status.stdout, status


class _CreatesAFile:
    """Unpickling this creates a file: what an attacker's pickle could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_unsigned_garbage_and_code_are_dropped_and_the_gcs_answers(head, tmp_path):
    from pyray._private import bootstrap, transport
    from pyray._private.protocol import Op
    marker = str(tmp_path / "pwned")
    evil = pickle.dumps((Op.GET_NODES, 1, "ipc://x", _CreatesAFile(marker)), protocol=5)
    pickle.loads(evil)[3].close()       # it does create the file, when unpickled
    assert os.path.exists(marker)
    os.remove(marker)
    key = head["token"].encode()
    ctx = zmq.Context()
    try:
        inbox = transport.bind_inbox(ctx, f"ipc://{tmp_path}/inbox")
        reply_to = f"ipc://{tmp_path}/inbox"
        request = pickle.dumps((Op.PING, 7, reply_to), protocol=5)
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(head["gcs"])
        for frames in ([b"garbage"], [b"\x80\x05garbage"], [b""], [b"x" * 32, b"y", b"z"],
                       [request],                                   # well formed, no MAC
                       [b"\0" * 32, request],                       # a made-up MAC
                       [hmac.digest(b"wrong", request, "sha256"), request],
                       [transport.mac(key, [request]), request, b"extra"],  # re-framed
                       [evil], [b"\0" * 32, evil],
                       [transport.mac(b"0" * 32, [evil]), evil]):
            push.send_multipart(frames)
        assert not inbox.poll(1000), "the GCS answered a message without a valid MAC"
        # the same request with the token's MAC is answered, on the same connection
        push.send_multipart([transport.mac(key, [request]), request])
        assert inbox.poll(10_000), "the GCS no longer answers"
        assert pickle.loads(inbox.recv()) == (Op.RESPONSE, 7, True, "pong")
        # and through the library
        bootstrap.use_token(head["gcs"], head["token"])
        nodes = bootstrap.request(head["gcs"], Op.GET_NODES, timeout=10)
        assert [n["alive"] for n in nodes] == [True]
    finally:
        ctx.destroy(linger=0)
        transport.set_token(head["gcs"], None)
    assert not os.path.exists(marker), "an unauthenticated pickle was unpickled"
    with open(os.path.join(head["session_dir"], "logs", "gcs.log")) as f:
        log = f.read()
    assert "unauthenticated message" in log and "127.0.0.1" in log, log[-2000:]


def test_garbage_to_every_listening_port_is_dropped_and_the_cluster_works(head, tmp_path):
    """Every process of a `pyray start` node listens on tcp (GCS, raylet,
    object manager, each worker's two inboxes): each drops what is not
    signed with the token, stays up, and the cluster still runs work."""
    from pyray._private.protocol import Op
    marker = str(tmp_path / "pwned")
    evil = pickle.dumps((Op.PING, 1, "ipc://x", _CreatesAFile(marker)), protocol=5)
    pyray.init(address=head["address"], _token=head["token"])
    try:
        _garbage_everywhere(head, evil)
        # the driver's and its worker's connections carry on too
        assert len(pyray.get(node_id.remote(), timeout=30)) == 32
    finally:
        pyray.shutdown()
    # and a new driver
    pyray.init(address=head["address"], _token=head["token"])
    try:
        assert len(pyray.get(node_id.remote(), timeout=30)) == 32
    finally:
        pyray.shutdown()
    assert not os.path.exists(marker), "an unauthenticated pickle was unpickled"


def _garbage_everywhere(head, evil):
    from pyray._private import transport
    assert len(pyray.get(node_id.remote(), timeout=30)) == 32     # a worker is up
    procs = _members(head["root"]) + [psutil.Process()]
    family = {p.pid: p for p in procs}
    for p in procs:
        for c in p.children(recursive=True):
            family[c.pid] = c
    ports = {}
    for p in family.values():
        for c in p.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN:
                ports[c.laddr.port] = p
    # GCS + raylet + object manager + a worker's core-worker and task inboxes + ours
    assert len(ports) >= 6, ports
    ctx = zmq.Context()
    try:
        for port in ports:
            push = ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 1000)
            push.connect(f"tcp://127.0.0.1:{port}")
            for frames in ([b"garbage"], [b"\x80\x05garbage"], [b""], [b"x" * 32, b"y"],
                           [evil], [b"\0" * 32, evil],
                           [transport.mac(b"0" * 32, [evil]), evil]):
                push.send_multipart(frames)
            push.close()
        # raw bytes that are not even the zmq handshake
        for port in ports:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(os.urandom(4096))
    finally:
        ctx.destroy(linger=1000)
    time.sleep(0.5)             # for the last of it to be read (and dropped)
    for port, p in ports.items():
        assert p.is_running() and p.status() != psutil.STATUS_ZOMBIE, \
            f"the process listening on {port} died: {p}"
