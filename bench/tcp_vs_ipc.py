"""Tasks and actor calls on one node: a node of `pyray.init()` (ipc) against
a node started by `pyray start` (tcp, every message signed with the cluster
token), three alternating rounds, medians:

    python bench/tcp_vs_ipc.py
"""
import os, re, subprocess, sys, tempfile, time
import pyray

@pyray.remote
def f():
    return 1

@pyray.remote
class A:
    def m(self):
        return 1

def rate(fn, n, secs=1.5):
    c = 0; t = time.perf_counter()
    while time.perf_counter() - t < secs:
        fn(); c += n
    return c / (time.perf_counter() - t)

def measure():
    pyray.get(f.remote())
    a = A.remote(); pyray.get(a.m.remote())
    return {"tasks_sync": rate(lambda: pyray.get(f.remote()), 1),
            "tasks_async": rate(lambda: pyray.get([f.remote() for _ in range(1000)]), 1000),
            "actor_sync": rate(lambda: pyray.get(a.m.remote()), 1),
            "actor_async": rate(lambda: pyray.get([a.m.remote() for _ in range(1000)]), 1000)}

tmp = tempfile.mkdtemp(prefix="ptl", dir="/tmp")
env = dict(os.environ, TMPDIR=tmp)
def cli(*a):
    return subprocess.run([sys.executable, "-m", "pyray.scripts.cli", *a], env=env,
                          capture_output=True, text=True, check=True).stdout
res = {"ipc": [], "tcp": []}
port = 47000 + os.getpid() % 1000
for rnd in range(3):
    pyray.init(num_cpus=2)
    res["ipc"].append(measure()); pyray.shutdown()
    out = cli("start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--num-cpus", "2")
    tok = re.search(r"--token ([0-9a-f]{32})", out).group(1)
    pyray.init(address=f"127.0.0.1:{port}", _token=tok)
    res["tcp"].append(measure()); pyray.shutdown()
    cli("stop", "--address", f"127.0.0.1:{port}")
import statistics
for k in res["ipc"][0]:
    i = statistics.median(r[k] for r in res["ipc"]); t = statistics.median(r[k] for r in res["tcp"])
    print(f"{k:12s} ipc {i:9.0f}/s  tcp {t:9.0f}/s  tcp/ipc {t/i:.2f}")
import shutil
shutil.rmtree(tmp, ignore_errors=True)
