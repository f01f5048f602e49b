#!/usr/bin/env python3
"""What recording task events costs: the same tasks with recording on and
off (task_events_report_interval_ms=0), alternating, each in a fresh
cluster (2 CPUs) in its own process.

Two figures per mode: throughput (tasks/s and actor calls/s, submitted all
at once then waited for, as vs_ray.py's tasks_async / actor_async), and the
CPU time every process of the run used per task (the driver, the GCS, the
raylet, the workers: summed from /proc).  On a busy machine the throughput
swings with what else runs; the CPU time per task does much less, so it is
the steadier measure of what recording adds.

    python bench/task_events_cost.py [--tasks 50000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r'''
import json, os, sys, time
import psutil
import pyray
n = int(sys.argv[1])
pyray.init(num_cpus=2, include_dashboard=False)


@pyray.remote
def noop():
    return None


@pyray.remote
class A:
    def noop(self):
        return None


def cpu_of_run():
    """CPU seconds of this process and every live process it started, plus
    those that exited and were waited for."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:4])
    for p in me.children(recursive=True):
        try:
            total += sum(p.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


pyray.get([noop.remote() for _ in range(2000)])        # workers up
a = A.remote()
pyray.get([a.noop.remote() for _ in range(2000)])
out = {}
for name, submit in (("tasks_async", lambda: noop.remote()), ("actor_async", lambda: a.noop.remote())):
    c0, t0 = cpu_of_run(), time.perf_counter()
    pyray.get([submit() for _ in range(n)])
    dt = time.perf_counter() - t0
    time.sleep(1.2)                  # the next send of events (once a second) is counted too
    out[name] = n / dt
    out[name + "_cpu_us"] = (cpu_of_run() - c0) / n * 1e6
print("RESULT " + json.dumps(out), flush=True)
pyray.shutdown()
'''


def run(python, n, on):
    env = dict(os.environ)
    env.pop("PYRAY_TASK_EVENTS_REPORT_INTERVAL_MS", None)
    if not on:
        env["PYRAY_TASK_EVENTS_REPORT_INTERVAL_MS"] = "0"
    with tempfile.TemporaryDirectory() as cwd:
        p = subprocess.run([python, "-c", CHILD, str(n)], capture_output=True, text=True,
                           timeout=600, cwd=cwd, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"run failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--tasks", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    got = {True: [], False: []}
    for r in range(args.rounds):
        for on in (True, False):
            print(f"round {r + 1}/{args.rounds}: recording {'on' if on else 'off'}",
                  file=sys.stderr, flush=True)
            got[on].append(run(args.python, args.tasks, on))
    print(f"{args.tasks} tasks and actor calls per mode; medians of {args.rounds} "
          f"alternating rounds")
    print(f"{'metric':22} {'on':>12} {'off':>12} {'on/off':>8}")
    for m in ("tasks_async", "actor_async", "tasks_async_cpu_us", "actor_async_cpu_us"):
        a = statistics.median(x[m] for x in got[True])
        b = statistics.median(x[m] for x in got[False])
        print(f"{m:22} {a:12.1f} {b:12.1f} {a / b:8.3f}")
    print("(throughput: on/off >= 0.95 is the target; CPU per task: on/off is what "
          "recording adds, 1.05 = 5% more)")


if __name__ == "__main__":
    main()
