#!/usr/bin/env python3
"""The state API and the dashboard with many tasks recorded, pyray against
Ray in one run (alternating, each in its own process).

For each implementation: a local cluster (2 CPUs) with its dashboard, N tiny
tasks run to completion, then `list_tasks(limit=100)` timed K times (p50 and
p99), `summarize_tasks()` timed, and the dashboard process's memory (RSS)
read once every record is in (the dashboard process and every process it
started: Ray runs its dashboard modules in child processes; RSS summed, and
PSS, which counts pages they share once), and the GCS's (where both keep
the task records).  Ray's figures in its own release test
(many_tasks, 10,000 tasks): list API p99 553 ms, dashboard 1.28 GB.

    python bench/state_vs_ray.py --python <venv with pyray[dashboard]>/bin/python \\
        --ray-python ~/.pyray-peers/bin/python --tasks 10000
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

WORKER = r'''
import json, os, sys, time
impl, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def _parents():
    parent = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent[pid] = f.read().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            pass
    return parent


def descendants(root, parent):
    mine, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in mine} - mine
        grew = bool(more)
        mine |= more
    return mine - {root}


def memory_of(pattern):
    """(RSS, PSS) bytes of this run's processes whose command line has
    `pattern`, with every process they started (Ray's dashboard runs its
    modules in child processes): only this run's cluster, whatever else
    runs on the machine.  PSS splits pages shared between processes."""
    parent = _parents()
    mine = descendants(str(os.getpid()), parent)
    tops = set()
    for pid in mine:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if pattern.encode() in f.read():
                    tops.add(pid)
        except OSError:
            pass
    tree = set(tops)
    for pid in tops:
        tree |= descendants(pid, parent)
    rss = pss = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss

if impl == "pyray":
    import pyray as ray
    from pyray.util.state import list_tasks, summarize_tasks
    DASH = "pyray.dashboard.server"
    GCS = "pyray.gcs.server"
else:
    import ray
    from ray.util.state import list_tasks, summarize_tasks
    DASH = "dashboard.py"
    GCS = "gcs_server"
ray.init(num_cpus=2, include_dashboard=True)
if impl == "ray":     # its state API asks this cluster, not another on the machine
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address

@ray.remote
def tiny(i):
    return i

for start in range(0, n, 1000):
    ray.get([tiny.remote(i) for i in range(start, min(n, start + 1000))])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:       # every record in the state API
    s = summarize_tasks()
    s = s.get("cluster", s) if isinstance(s, dict) else s
    done = 0
    try:
        done = sum(v.get("state_counts", {}).get("FINISHED", 0)
                   for v in s["summary"].values())
    except Exception:
        pass
    if done >= n:
        break
    time.sleep(1)
lat = []
for _ in range(k):
    t = time.perf_counter()
    rows = list_tasks(limit=100)
    lat.append(time.perf_counter() - t)
    assert len(rows) == 100
t = time.perf_counter()
summarize_tasks()
summ = time.perf_counter() - t
rss, pss = memory_of(DASH)
gcs_rss, _ = memory_of(GCS)
lat.sort()
print("RESULT", json.dumps({"p50_ms": 1e3 * lat[len(lat) // 2],
                            "p99_ms": 1e3 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
                            "summarize_ms": 1e3 * summ, "dashboard_mb": rss / 2**20,
                            "dashboard_pss_mb": pss / 2**20,
                            "gcs_mb": gcs_rss / 2**20,
                            "finished": done}))
ray.shutdown()
'''


def run(python, impl, n, k):
    # an empty folder as cwd: nothing there shadows the package under test
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run([python, "-c", WORKER, impl, str(n), str(k)], capture_output=True,
                             text=True, timeout=900, cwd=cwd)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{impl} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="python with pyray[dashboard]")
    ap.add_argument("--ray-python", default=os.path.expanduser("~/.pyray-peers/bin/python"))
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    got = {"pyray": [], "ray": []}
    for r in range(args.rounds):
        for impl, py in (("pyray", args.python), ("ray", args.ray_python)):
            print(f"round {r + 1}/{args.rounds}: {impl}", file=sys.stderr, flush=True)
            got[impl].append(run(py, impl, args.tasks, args.calls))
    print(f"{args.tasks} tasks recorded; list_tasks(limit=100) x {args.calls}")
    print(f"{'metric':16} {'pyray':>10} {'ray':>10} {'ray/pyray':>10}")
    for m in ("p50_ms", "p99_ms", "summarize_ms", "dashboard_mb", "dashboard_pss_mb", "gcs_mb"):
        a = statistics.median(x[m] for x in got["pyray"])
        b = statistics.median(x[m] for x in got["ray"])
        print(f"{m:16} {a:10.1f} {b:10.1f} {b / a if a else float('nan'):10.1f}")


if __name__ == "__main__":
    main()
