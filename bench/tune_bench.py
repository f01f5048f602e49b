#!/usr/bin/env python3
"""pyray.tune's per-trial cost against the floor a user compares with.

  trials       100 trivial one-report trials (x ~ uniform(0, 1), report x):
               pyray.tune's Tuner on a local cluster, against Optuna's own
               in-process study (study.optimize of the same objective, no
               processes at all: the floor), and Ray Tune when --peer-python
               has it.  Trials per second, each in a fresh process, alternating.
  bookkeeping  Ray's 10,000-trial release test scaled to this machine:
               --trials trials that each sleep 0.1 s and report once, as
               many at a time as there are CPUs; what is measured is the
               total time minus the ideal (trials * 0.1 s / CPUs), i.e.
               what the experiment's bookkeeping added.

    python bench/tune_bench.py [--rounds 3] [--trials 1000] [--peer-python ~/.pyray-peers/bin/python]
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
import json, sys, tempfile, time
what, impl, n, cpus = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
scratch = tempfile.mkdtemp()
if impl == "optuna":
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    t0 = time.perf_counter()
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=n)
    dt = time.perf_counter() - t0
    print("RESULT " + json.dumps({"per_s": n / dt, "s": dt}))
    sys.exit(0)
ray = __import__(impl)
tune = __import__(impl + ".tune", fromlist=["tune"])
ray.init(num_cpus=cpus, include_dashboard=False)


def trivial(config):
    tune.report({"score": config["x"]})


def sleeper(config):
    time.sleep(0.1)
    tune.report({"score": config["x"]})


fn = trivial if what == "trials" else sleeper
tuner = tune.Tuner(fn, param_space={"x": tune.uniform(0, 1)},
                   tune_config=tune.TuneConfig(num_samples=n, metric="score", mode="max"),
                   run_config=tune.RunConfig(storage_path=scratch, name=what, verbose=0))
t0 = time.perf_counter()
grid = tuner.fit()
dt = time.perf_counter() - t0
assert len(grid) == n and grid.num_errors == 0, (len(grid), grid.num_errors)
print("RESULT " + json.dumps({"per_s": n / dt, "s": dt}))
ray.shutdown()
'''


def run(python, what, impl, n, cpus):
    with tempfile.TemporaryDirectory() as cwd:
        p = subprocess.run([python, "-c", CHILD, what, impl, str(n), str(cpus)], cwd=cwd,
                           capture_output=True, text=True, timeout=3600)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{what} {impl} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="python with pyray[tune]")
    ap.add_argument("--peer-python", default=None, help="python with ray[tune] (optional)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--trials", type=int, default=1000, help="bookkeeping: trials of 0.1 s")
    ap.add_argument("--only", default="trials,bookkeeping")
    args = ap.parse_args()
    only = args.only.split(",")
    impls = [("pyray", args.python), ("optuna", args.python)]
    if args.peer_python:
        impls.append(("ray", args.peer_python))
    if "trials" in only:
        got = {i: [] for i, _ in impls}
        for r in range(args.rounds):
            for impl, py in impls:
                print(f"round {r + 1}/{args.rounds}: trials {impl}", file=sys.stderr, flush=True)
                got[impl].append(run(py, "trials", impl, 100, args.num_cpus)["per_s"])
        base = statistics.median(got["pyray"])
        print("100 trivial trials (trials/s; medians of alternating rounds)")
        for impl, _ in impls:
            m = statistics.median(got[impl])
            print(f"  {impl:8} {m:10.1f}   pyray/{impl}: {base / m:6.2f}x")
    if "bookkeeping" in only:
        ideal = args.trials * 0.1 / args.num_cpus
        print(f"{args.trials} trials of 0.1 s on {args.num_cpus} CPUs (ideal {ideal:.1f} s)")
        for impl, py in impls:
            if impl == "optuna":
                continue
            s = run(py, "bookkeeping", impl, args.trials, args.num_cpus)["s"]
            print(f"  {impl:8} total {s:8.1f} s   bookkeeping {s - ideal:8.1f} s "
                  f"({(s - ideal) / args.trials * 1e3:.1f} ms per trial)")


if __name__ == "__main__":
    main()
