"""Ray Client (docs/client.md): `pyray start --head --ray-client-server-port`
starts the client server; drivers in other processes connect to it with
pyray.init("pyray://HOST:PORT", _token=...) and nothing else: no session
directory, no store, only the one tcp connection."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

import pyray
from test_cluster_cli import free_port, pyray_cmd

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20


@pytest.fixture
def head():
    """A head started by the CLI with a client server; yields (env, port,
    token, gcs address); stopped and checked for leftovers at the end."""
    root = tempfile.mkdtemp(prefix="pc", dir="/tmp")
    env = dict(os.environ)
    top = os.path.dirname(os.path.dirname(os.path.abspath(pyray.__file__)))
    env["PYTHONPATH"] = top + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["TMPDIR"] = root
    env.pop("PYRAY_ADDRESS", None)
    env.pop("PYRAY_TOKEN", None)
    port, client_port = free_port(), free_port()
    try:
        out = pyray_cmd(env, "start", "--head", "--port", str(port), "--num-cpus", "2",
                        "--object-store-memory", str(400 * MiB),
                        "--ray-client-server-port", str(client_port)).stdout
        token = re.search(r"--token ([0-9a-f]{32})", out).group(1)
        assert f":{client_port}'" in out
        yield env, client_port, token, f"127.0.0.1:{port}"
    finally:
        pyray_cmd(env, "stop", "--address", f"127.0.0.1:{port}", check=False)
        deadline = time.monotonic() + 15
        left = []
        while time.monotonic() < deadline:
            left = [p for p in psutil.process_iter(["cmdline", "environ"])
                    if _in_root(p, root)]
            if not left:
                break
            time.sleep(0.2)
        for p in left:
            p.kill()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes left running: {[p.pid for p in left]}"


def _in_root(p, root):
    try:
        if p.status() == psutil.STATUS_ZOMBIE:
            return False        # exited; reaped by whoever adopted it
        if root in " ".join(p.info["cmdline"] or ()):
            return True
        return (p.info.get("environ") or {}).get("TMPDIR") == root
    except (psutil.Error, TypeError):
        return False


def client_env():
    """A client knows the address and the token only: its own TMPDIR, no
    record of the cluster."""
    env = dict(os.environ)
    top = os.path.dirname(os.path.dirname(os.path.abspath(pyray.__file__)))
    env["PYTHONPATH"] = top + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["TMPDIR"] = tempfile.mkdtemp(prefix="pcc", dir="/tmp")
    env.pop("PYRAY_ADDRESS", None)
    env.pop("PYRAY_TOKEN", None)
    return env


def run_client(source, timeout=90, check=True):
    env = client_env()
    try:
        out = subprocess.run([sys.executable, "-c", source], env=env, capture_output=True,
                             text=True, timeout=timeout, cwd=env["TMPDIR"])
    finally:
        shutil.rmtree(env["TMPDIR"], ignore_errors=True)
    if check:
        assert out.returncode == 0, f"client failed:\n{out.stdout}\n{out.stderr}"
    return out


def head_objects(env, address):
    out = pyray_cmd(env, "status", "-v", "--address", address).stdout
    found = re.findall(r"object store: .*?, (\d+) objects", out)
    assert found, out
    return sum(int(n) for n in found)


PRELUDE = """
import os, sys
import numpy as np
import pyray as ray
ray.init("pyray://127.0.0.1:{port}", _token="{token}")
"""


def test_tasks_actors_objects_through_the_client(head):
    env, port, token, _ = head
    out = run_client(PRELUDE.format(port=port, token=token) + """
assert ray.is_initialized()

@ray.remote
def where(x):
    import os
    return os.getpid(), ray.get_runtime_context().get_node_id(), x * 2

pid, node, v = ray.get(where.remote(21), timeout=30)
assert v == 42 and pid != os.getpid(), (pid, os.getpid())
assert node == ray.get_runtime_context().get_node_id()
print("task ok", flush=True)

# options, several returns, refs as arguments (top level and nested)
@ray.remote(num_returns=2)
def two():
    return 1, 2

a, b = two.options(num_cpus=1).remote()
assert ray.get([a, b], timeout=30) == [1, 2]

@ray.remote
def add(x, y):
    return x + y

@ray.remote
def total(refs):
    return sum(ray.get(refs))

s = add.remote(a, b)
assert ray.get(s, timeout=30) == 3
assert ray.get(total.remote([a, b, s]), timeout=30) == 6
print("refs ok", flush=True)

# actors: create, call, named get_actor, kill
@ray.remote
class Counter:
    def __init__(self, start):
        self.n = start
    def incr(self, k=1):
        self.n += k
        return self.n
    def pid(self):
        import os
        return os.getpid()

c = Counter.options(name="counter").remote(10)
assert ray.get([c.incr.remote() for _ in range(5)], timeout=30) == [11, 12, 13, 14, 15]
same = ray.get_actor("counter")
assert ray.get(same.incr.remote(5), timeout=30) == 20
assert ray.get(c.pid.remote(), timeout=30) != os.getpid()
ray.kill(c)
try:
    ray.get(c.incr.remote(), timeout=30)
    raise SystemExit("a killed actor answered")
except ray.exceptions.RayActorError:
    pass
print("actors ok", flush=True)

# put / get of a 100 MiB array, intact
arr = np.random.default_rng(0).integers(0, 255, 100 * (1 << 20), dtype=np.uint8)
ref = ray.put(arr)
back = ray.get(ref, timeout=60)
assert back.shape == arr.shape and np.array_equal(back, arr)

@ray.remote
def checksum(a):
    return int(a[::4096].sum()), a.nbytes

assert ray.get(checksum.remote(ref), timeout=60) == (int(arr[::4096].sum()), arr.nbytes)
del ref, back
print("large ok", flush=True)

# wait with timeouts
import time
@ray.remote
def sleepy(t):
    time.sleep(t)
    return t

fast, slow = sleepy.remote(0), sleepy.remote(30)
ready, rest = ray.wait([fast, slow], num_returns=1, timeout=20)
assert ready == [fast] and rest == [slow]
ready, rest = ray.wait([slow], timeout=0.2)
assert ready == [] and rest == [slow]
try:
    ray.get(slow, timeout=0.2)
    raise SystemExit("get did not time out")
except ray.exceptions.GetTimeoutError:
    pass
ray.cancel(slow, force=True)
print("wait ok", flush=True)

# exceptions keep their types
class MyError(ValueError):
    pass

@ray.remote
def fails():
    raise MyError("boom")

try:
    ray.get(fails.remote(), timeout=30)
    raise SystemExit("no error")
except MyError as err:
    assert isinstance(err, ray.exceptions.RayTaskError) and "boom" in str(err)
print("errors ok", flush=True)

res = ray.cluster_resources()
assert res.get("CPU") == 2.0, res
assert len(ray.nodes()) == 1
ray.shutdown()
assert not ray.is_initialized()
print("done", flush=True)
""")
    assert "done" in out.stdout, out.stdout + out.stderr


def test_a_wrong_token_is_refused(head):
    env, port, token, _ = head
    out = run_client(f"""
import pyray as ray
try:
    ray.init("ray://127.0.0.1:{port}", _token="0" * 32)
except ConnectionError as err:
    print("refused:", err)
else:
    raise SystemExit("connected with a wrong token")
""")
    assert "refused:" in out.stdout and "token" in out.stdout


def test_a_connection_is_authenticated_once_with_its_own_key(head):
    """After the hello, a message signed with the token itself, replayed, or
    recorded from another connection is refused: only the session key and
    the next message number are taken."""
    import zmq
    from pyray._private.client import wire
    from pyray._private.protocol import CLIENT_HELLO, CLIENT_REPLY, CLIENT_WAIT
    env, port, token, _ = head
    key = token.encode()
    zctx = zmq.Context()
    socks = []

    def ask(frames):
        s = zctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(f"tcp://127.0.0.1:{port}")
        socks.append(s)
        s.send_multipart(frames)
        assert s.poll(10000), "no answer"
        return s, s.recv_multipart()

    try:
        nonce = wire.new_nonce()
        hello = wire.sign(key, CLIENT_HELLO.make(1, wire.CLIENT_PROTOCOL_VERSION, None,
                                                 {"nonce": nonce, "log_to_driver": False}))
        s, reply = ask(hello)
        m = CLIENT_REPLY.parse(wire.unsign(key, reply)[0])
        assert m.ok, m
        skey = wire.session_key(key, nonce, m.payload["nonce"])
        # signed with the token, not the session key: refused
        s.send_multipart(wire.sign(key, CLIENT_WAIT.make(2, [], 1, 0, True), seq=1))
        assert s.poll(10000) and s.recv_multipart() == [wire.BAD_TOKEN]
        # the session key works on its connection, as message 1...
        good = wire.sign(skey, CLIENT_WAIT.make(3, [], 1, 0, True), seq=1)
        s.send_multipart(good)
        assert s.poll(10000)
        assert CLIENT_REPLY.parse(wire.unsign(skey, s.recv_multipart(), 1)[0]).req_id == 3
        # ...once: replayed on it, or on a new connection, it is refused
        s.send_multipart(good)
        assert s.poll(10000) and s.recv_multipart() == [wire.BAD_TOKEN]
        _, other = ask(good)
        assert other == [wire.BAD_TOKEN]
    finally:
        for s in socks:
            s.close(0)
        zctx.term()


def test_a_client_killed_mid_call_leaves_nothing_pinned(head):
    env, port, token, address = head
    base = head_objects(env, address)
    source = PRELUDE.format(port=port, token=token) + """
import time
refs = [ray.put(np.ones(8 << 20, np.uint8)) for _ in range(3)]

@ray.remote
def big():
    import numpy as np
    return np.zeros(8 << 20, np.uint8)

held = [big.remote() for _ in range(2)]
ray.wait(held, num_returns=2, timeout=30)

@ray.remote
def forever():
    import time
    time.sleep(600)

@ray.remote(num_cpus=0)
def stream():
    import numpy as np, time
    for i in range(2):
        yield np.zeros(8 << 20, np.uint8)
    time.sleep(600)

g = stream.remote()
first = next(g)                   # one item handed out, one not
ray.wait([g], timeout=30)
pending = forever.remote()
print("holding", flush=True)
ray.get(pending)
"""
    env_c = client_env()
    proc = subprocess.Popen([sys.executable, "-c", source], env=env_c, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=env_c["TMPDIR"])
    try:
        deadline = time.monotonic() + 60
        line = proc.stdout.readline()
        assert "holding" in line, line + proc.stderr.read()
        assert head_objects(env, address) >= base + 7
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if head_objects(env, address) == base:
                break
            time.sleep(0.5)
        assert head_objects(env, address) == base
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
        shutil.rmtree(env_c["TMPDIR"], ignore_errors=True)
    # the server still serves others
    out = run_client(PRELUDE.format(port=port, token=token) + """
@ray.remote
def f():
    return 7
assert ray.get(f.remote(), timeout=30) == 7
print("ok")
""")
    assert "ok" in out.stdout


def test_generators_through_the_client(head):
    """Functions and actor methods that yield hand their items to a client
    one at a time; num_returns="dynamic"; wait on a generator; an item's
    error is raised where it happened; a dropped generator frees its items."""
    env, port, token, gcs = head
    out = run_client(PRELUDE.format(port=port, token=token) + """
import asyncio, time
MB = 1 << 20

@ray.remote
def count(n, big=False):
    for i in range(n):
        yield np.full(MB, i, np.uint8) if big else (i, os.getpid())

@ray.remote
def fails():
    yield 1
    raise ValueError("third time")

@ray.remote(num_returns="dynamic")
def dyn(n):
    for i in range(n):
        yield i * 10

@ray.remote
class A:
    def items(self, n):
        for i in range(n):
            yield i + 100

gen = count.remote(3)
assert isinstance(gen, ray.ObjectRefGenerator), type(gen)
first = next(gen)
v, pid = ray.get(first)
assert v == 0 and pid != os.getpid(), (v, pid)
rest = [ray.get(r)[0] for r in gen]
assert rest == [1, 2], rest
ray.get(gen.completed())
assert gen.is_finished()
try:
    next(gen)
    raise AssertionError("no StopIteration")
except StopIteration:
    pass

g = fails.remote()
assert ray.get(next(g)) == 1
try:
    ray.get(next(g))
    raise AssertionError("no error")
except ValueError as err:
    assert "third time" in str(err)

ref = dyn.remote(4)
assert [ray.get(r) for r in ray.get(ref)] == [0, 10, 20, 30]

a = A.remote()
assert [ray.get(r) for r in a.items.remote(3)] == [100, 101, 102]

g = count.remote(2)
ready, _ = ray.wait([g], timeout=30)
assert ready == [g], ready
assert ray.get(next(g))[0] == 0

g = count.remote(3)
ray.get(g.completed())
assert ray.get(next(g))[0] == 0          # the others came with it
assert ray.wait([g], timeout=0)[0] == [g]
assert [ray.get(r)[0] for r in g] == [1, 2] and g.is_finished()

paced = count.options(_generator_backpressure_num_objects=1).remote(4)
assert [ray.get(r)[0] for r in paced] == [0, 1, 2, 3]

async def consume():
    return [ray.get(r)[0] async for r in count.remote(3)]
assert asyncio.run(consume()) == [0, 1, 2]

g = count.remote(5, big=True)            # items in the head's store
assert ray.get(next(g))[0] == 0
ray.get(g.completed())
del g, ref
print("ok")
time.sleep(1.5)
""")
    assert "ok" in out.stdout
    # the dropped generator's items are freed on the head
    deadline = time.monotonic() + 20
    while head_objects(env, gcs) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert head_objects(env, gcs) == 0


def test_workers_output_reaches_the_client(head):
    env, port, token, _ = head
    out = run_client(PRELUDE.format(port=port, token=token) + """
import time
@ray.remote
def talk():
    print("hello from a task")
    print("to stderr", file=sys.stderr)
    return os.getpid()

@ray.remote
class Talker:
    def say(self):
        print("hello from an actor")
        return os.getpid()

pid = ray.get(talk.remote())
apid = ray.get(Talker.remote().say.remote())
print("PIDS", pid, apid, flush=True)
time.sleep(2)          # idle: the output still comes
""")
    pid, apid = re.search(r"PIDS (\d+) (\d+)", out.stdout).groups()
    assert f"(talk pid={pid}) hello from a task" in out.stdout, out.stdout
    assert f"(talk pid={pid}) to stderr" in out.stderr, out.stderr
    assert re.search(rf"\(\S*say pid={apid}\) hello from an actor", out.stdout), out.stdout
    quiet = run_client(QUIET_PRELUDE.format(port=port, token=token) + """
@ray.remote
def talk():
    print("hello from a task")
ray.get(talk.remote())
import time; time.sleep(1.5)
""")
    assert "hello from a task" not in quiet.stdout


QUIET_PRELUDE = """
import pyray as ray
ray.init("pyray://127.0.0.1:{port}", _token="{token}", log_to_driver=False)
"""

RTE_PRELUDE = """
import os
import pyray as ray
wd = os.path.join(os.environ["TMPDIR"], "proj")
os.makedirs(wd)
with open(os.path.join(wd, "helper_mod.py"), "w") as f:
    f.write("VALUE = 'from the client machine'\\n")
ray.init("pyray://127.0.0.1:{port}", _token="{token}",
         runtime_env={{"working_dir": wd, "env_vars": {{"A": "job", "B": "job"}}}})
"""


def test_runtime_env_through_the_client(head):
    """init(runtime_env=...) on a client applies to its tasks and actors; a
    local working_dir is uploaded from the client's machine; a task's
    .options(runtime_env=...) merges over it."""
    env, port, token, _ = head
    out = run_client(RTE_PRELUDE.format(port=port, token=token) + """
@ray.remote
def probe():
    import helper_mod
    return helper_mod.VALUE, os.environ.get("A"), os.environ.get("B"), os.getcwd()

@ray.remote
class Probe:
    def look(self):
        import helper_mod
        return helper_mod.VALUE, os.environ.get("A")

value, a, b, cwd = ray.get(probe.remote())
assert value == "from the client machine" and (a, b) == ("job", "job"), (value, a, b)
assert cwd != wd, cwd                  # a copy on the cluster, not the client's folder
value, a, b, _ = ray.get(probe.options(runtime_env={"env_vars": {"A": "task"}}).remote())
assert (a, b) == ("task", "job"), (a, b)
assert ray.get(Probe.remote().look.remote()) == ("from the client machine", "job")
print("ok")
""")
    assert "ok" in out.stdout


def test_a_call_fails_with_connection_error_when_the_server_is_gone(head):
    env, port, token, _ = head
    source = PRELUDE.format(port=port, token=token) + """
@ray.remote
def forever():
    import time
    time.sleep(600)

print("waiting", flush=True)
try:
    ray.get(forever.remote())
except ConnectionError as err:
    print("lost:", err, flush=True)
"""
    env_c = client_env()
    env_c["PYRAY_CLIENT_SERVER_SILENT_S"] = "3"
    proc = subprocess.Popen([sys.executable, "-c", source], env=env_c, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=env_c["TMPDIR"])
    try:
        assert "waiting" in proc.stdout.readline()
        servers = [p for p in psutil.process_iter(["cmdline"])
                   if "pyray._private.client.server" in " ".join(p.info["cmdline"] or ())
                   and str(port) in (p.info["cmdline"] or ())]
        assert len(servers) == 1
        servers[0].kill()
        out, err = proc.communicate(timeout=30)
        assert "lost:" in out and "not answered" in out, out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        shutil.rmtree(env_c["TMPDIR"], ignore_errors=True)
