#!/usr/bin/env python3
"""Side-by-side microbenchmark: pyray against Ray (and plain multiprocessing).

The same workloads run against each implementation, in separate processes,
alternating A B A B ... so that a ratio holds even when the machine's speed
drifts.  The metric names follow Ray's own `ray microbenchmark` where one
exists, so figures can be compared with Ray's published numbers.

Usage (from the project root, after the README's set-up):

    bench/setup_peers.sh                      # once: a venv with Ray 2.60 in it
    python bench/vs_ray.py                    # all metrics, pyray vs ray
    python bench/vs_ray.py --only tasks_async,put_gbps --rounds 5
    python bench/vs_ray.py --impls pyray,ray,mp --json out.json
    python bench/vs_ray.py --impls pyray,before --before-python /tmp/old/bin/python

The last form compares two builds of pyray (a change against the commit
before it, say): "before" runs pyray under the interpreter given.

Each row prints the median of each implementation and the median of the
per-round ratios, oriented so that a ratio above 1.0 means pyray is better.
A metric an implementation cannot run prints "-" (mp has no actors, say).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PEER_PYTHON = os.environ.get(
    "PYRAY_PEER_PYTHON", os.path.join(os.path.expanduser("~"), ".pyray-peers", "bin", "python")
)

# name -> (unit, higher_is_better)
METRICS = {
    "init_s": ("s", False),
    "get_small": ("calls/s", True),
    "put_small": ("calls/s", True),
    "put_gbps": ("GB/s", True),
    "get_large_us": ("us/call", False),
    "tasks_sync": ("tasks/s", True),
    "tasks_async": ("tasks/s", True),
    "tasks_arg_1mb": ("tasks/s", True),
    "runtime_env_task": ("tasks/s", True),
    "runtime_env_pip_task": ("tasks/s", True),
    "actor_sync": ("calls/s", True),
    "actor_async": ("calls/s", True),
    "actor_concurrent": ("calls/s", True),
    "async_actor_async": ("calls/s", True),
    "wait_1k": ("refs/s", True),
    "get_10k_refs": ("calls/s", True),
    "generator_items": ("items/s", True),
    "generator_first_item_us": ("us", False),
    "pg_create_remove": ("pgs/s", True),
    "numpy_pipeline_gbps": ("GB/s", True),
    "shutdown_s": ("s", False),
}


# --------------------------------------------------------------------------
# worker side: runs inside one interpreter against one implementation
# --------------------------------------------------------------------------

def _rate(fn, seconds, per_call=1):
    """Calls fn for about `seconds` after a short warm-up; returns per_call*calls/s."""
    t_end = time.perf_counter() + min(0.3, seconds / 4)
    while time.perf_counter() < t_end:
        fn()
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return per_call * calls / elapsed


def _tiny_wheel():
    """A one-module pure-Python wheel, written by hand into a temp dir (no
    build step, no index needed): what a pip runtime env installs."""
    import base64
    import hashlib
    import tempfile
    import zipfile
    d = tempfile.mkdtemp(prefix="vsray-wheel-")
    path = os.path.join(d, "vsray_tiny-0.1-py3-none-any.whl")
    files = {"vsray_tiny/__init__.py": b"VALUE = 1\n",
             "vsray_tiny-0.1.dist-info/METADATA":
                 b"Metadata-Version: 2.1\nName: vsray-tiny\nVersion: 0.1\n",
             "vsray_tiny-0.1.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: vs_ray\nRoot-Is-Purelib: true\n"
                 b"Tag: py3-none-any\n"}
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("vsray_tiny-0.1.dist-info/RECORD,,")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("vsray_tiny-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def _emit(metric, value):
    print(json.dumps({"metric": metric, "value": value}), flush=True)


def run_ray_like(modname, wanted, seconds, num_cpus):
    import numpy as np

    t0 = time.perf_counter()
    ray = __import__(modname)
    ray.init(num_cpus=num_cpus, resources={"custom": 100})

    @ray.remote
    def small_value():
        return b"ok"

    @ray.remote
    def takes_array(a):
        return a.nbytes

    @ray.remote
    def slice_sum(a, lo, hi):
        return float(a[lo:hi].sum())

    @ray.remote
    def make_refs(n):
        return [ray.put(1) for _ in range(n)]

    ray.get(small_value.remote())
    if "init_s" in wanted:
        _emit("init_s", time.perf_counter() - t0)

    @ray.remote(num_cpus=0)
    class Actor:
        def small_value(self):
            return b"ok"

    @ray.remote(num_cpus=0)
    class AsyncActor:
        async def small_value(self):
            return b"ok"

    def want(m):
        return m in wanted

    if want("get_small"):
        small = ray.put(0)
        _emit("get_small", _rate(lambda: ray.get(small), seconds))
    if want("put_small"):
        _emit("put_small", _rate(lambda: ray.put(0), seconds))
    big = np.zeros(100 * 1024 * 1024, dtype=np.int64)  # 800 MiB, as Ray's own benchmark
    if want("put_gbps"):
        _emit("put_gbps", _rate(lambda: ray.put(big), seconds, big.nbytes / 1e9))
    if want("get_large_us"):
        ref = ray.put(big)
        ray.get(ref)
        rate = _rate(lambda: ray.get(ref), seconds)
        _emit("get_large_us", 1e6 / rate)
        del ref
    if want("tasks_sync"):
        _emit("tasks_sync", _rate(lambda: ray.get(small_value.remote()), seconds))
    if want("tasks_async"):
        _emit("tasks_async", _rate(
            lambda: ray.get([small_value.remote() for _ in range(1000)]), seconds, 1000))
    if want("runtime_env_task"):
        # a task in a cached runtime env (env_vars): the env's worker is warm
        env = {"env_vars": {"A": "1"}}
        ray.get(small_value.options(runtime_env=env).remote())
        _emit("runtime_env_task", _rate(
            lambda: ray.get(small_value.options(runtime_env=env).remote()), seconds))
    if want("runtime_env_pip_task"):
        # a task in a cached pip env (a small local wheel): built once on the
        # first call (not measured), then its workers are reused
        env = {"pip": [_tiny_wheel()]}
        ray.get(small_value.options(runtime_env=env).remote(), timeout=600)
        _emit("runtime_env_pip_task", _rate(
            lambda: ray.get(small_value.options(runtime_env=env).remote()), seconds))
    if want("tasks_arg_1mb"):
        mb = ray.put(np.ones(1024 * 1024 // 8))
        _emit("tasks_arg_1mb", _rate(
            lambda: ray.get([takes_array.remote(mb) for _ in range(100)]), seconds, 100))
    if want("actor_sync"):
        a = Actor.remote()
        _emit("actor_sync", _rate(lambda: ray.get(a.small_value.remote()), seconds))
    if want("actor_async"):
        a = Actor.remote()
        _emit("actor_async", _rate(
            lambda: ray.get([a.small_value.remote() for _ in range(1000)]), seconds, 1000))
    if want("actor_concurrent"):
        a = Actor.options(max_concurrency=16).remote()
        _emit("actor_concurrent", _rate(
            lambda: ray.get([a.small_value.remote() for _ in range(1000)]), seconds, 1000))
    if want("async_actor_async"):
        a = AsyncActor.remote()
        _emit("async_actor_async", _rate(
            lambda: ray.get([a.small_value.remote() for _ in range(1000)]), seconds, 1000))
    if want("wait_1k"):
        def wait_1k():
            pending = [small_value.remote() for _ in range(1000)]
            while pending:
                _, pending = ray.wait(pending)
        _emit("wait_1k", _rate(wait_1k, seconds, 1000))
    if want("get_10k_refs"):
        holder = make_refs.remote(10000)
        ray.get(holder)
        _emit("get_10k_refs", _rate(lambda: ray.get(holder), seconds))
    if want("generator_items") or want("generator_first_item_us"):
        @ray.remote
        def gen(n):
            for i in range(n):
                yield i

        def consume(n):
            for ref in gen.remote(n):
                ray.get(ref)
        if want("generator_items"):
            _emit("generator_items", _rate(lambda: consume(1000), seconds, 1000))
        if want("generator_first_item_us"):
            def first_item():
                g = gen.remote(1)
                ray.get(next(g))
                for ref in g:       # the end, so that runs do not overlap
                    ray.get(ref)
            _emit("generator_first_item_us", 1e6 / _rate(first_item, seconds))
    if want("pg_create_remove"):
        from importlib import import_module
        pgmod = import_module(modname + ".util.placement_group")

        def pgs():
            groups = [pgmod.placement_group([{"custom": 0.001}]) for _ in range(100)]
            for g in groups:
                g.wait(timeout_seconds=30)
            for g in groups:
                pgmod.remove_placement_group(g)
        _emit("pg_create_remove", _rate(pgs, seconds, 100))
    if want("numpy_pipeline_gbps"):
        data = np.random.default_rng(0).random(50 * 1024 * 1024)  # 400 MiB of float64
        expect = float(data.sum())

        def pipeline():
            ref = ray.put(data)
            n = 8
            step = len(data) // n
            parts = [slice_sum.remote(ref, i * step, (i + 1) * step if i < n - 1 else len(data))
                     for i in range(n)]
            got = sum(ray.get(parts))
            assert abs(got - expect) < 1e-6 * abs(expect), (got, expect)
        _emit("numpy_pipeline_gbps", _rate(pipeline, seconds, data.nbytes / 1e9))
    del big
    t0 = time.perf_counter()
    ray.shutdown()
    if want("shutdown_s"):
        _emit("shutdown_s", time.perf_counter() - t0)


def _mp_small():
    return b"ok"


def _mp_slice_sum(a):
    return float(a.sum())


def run_mp(wanted, seconds, num_cpus):
    """What a user would write without a framework: concurrent.futures + pickling."""
    import numpy as np
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(num_cpus)
    pool.submit(_mp_small).result()
    if "init_s" in wanted:
        _emit("init_s", time.perf_counter() - t0)
    if "tasks_sync" in wanted:
        _emit("tasks_sync", _rate(lambda: pool.submit(_mp_small).result(), seconds))
    if "tasks_async" in wanted:
        _emit("tasks_async", _rate(
            lambda: [f.result() for f in [pool.submit(_mp_small) for _ in range(1000)]],
            seconds, 1000))
    if "numpy_pipeline_gbps" in wanted:
        data = np.random.default_rng(0).random(50 * 1024 * 1024)
        expect = float(data.sum())

        def pipeline():
            parts = np.array_split(data, 8)
            got = sum(pool.map(_mp_slice_sum, parts))
            assert abs(got - expect) < 1e-6 * abs(expect)
        _emit("numpy_pipeline_gbps", _rate(pipeline, seconds, data.nbytes / 1e9))
    t0 = time.perf_counter()
    pool.shutdown()
    if "shutdown_s" in wanted:
        _emit("shutdown_s", time.perf_counter() - t0)


def worker_main(impl, wanted, seconds, num_cpus):
    if impl == "mp":
        run_mp(wanted, seconds, num_cpus)
    else:
        run_ray_like(impl, wanted, seconds, num_cpus)


# --------------------------------------------------------------------------
# orchestrator side
# --------------------------------------------------------------------------

def run_once(python, impl, wanted, seconds, num_cpus, timeout):
    module = "pyray" if impl == "before" else impl
    cmd = [python, os.path.abspath(__file__), "--worker", module,
           "--only", ",".join(wanted), "--seconds", str(seconds), "--num-cpus", str(num_cpus)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err, rc = f"timed out after {timeout}s", -1
    values = {}
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
                values[rec["metric"]] = rec["value"]
            except (ValueError, KeyError):
                pass
    if rc != 0:
        tail = "\n".join(err.strip().splitlines()[-5:])
        print(f"  [{impl}] exited {rc}: {tail}", file=sys.stderr)
    return values


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--impls", default="pyray,ray", help="comma list of pyray, ray, mp, before (first is A)")
    ap.add_argument("--only", default="", help="comma list of metrics (default: all)")
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per metric")
    ap.add_argument("--rounds", type=int, default=3, help="A B alternations")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--python", default=sys.executable, help="interpreter that imports pyray")
    ap.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON,
                    help="interpreter that imports ray (see setup_peers.sh)")
    ap.add_argument("--before-python", help="interpreter with another build of pyray (impl 'before')")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", help="write all raw figures here")
    args = ap.parse_args()

    wanted = [m for m in (args.only.split(",") if args.only else METRICS) if m]
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        ap.error(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
    if args.worker:
        worker_main(args.worker, set(wanted), args.seconds, args.num_cpus)
        return

    impls = args.impls.split(",")
    python_for = {i: (args.python if i == "pyray" else args.peer_python) for i in impls}
    if "before" in impls:
        if not args.before_python:
            ap.error("impl 'before' needs --before-python")
        python_for["before"] = args.before_python
    for impl, py in python_for.items():
        if not os.path.exists(py):
            sys.exit(f"no interpreter for {impl} at {py}: run setup_peers.sh or pass --peer-python")
    raw = {i: [] for i in impls}
    for r in range(args.rounds):
        for impl in impls:
            print(f"round {r + 1}/{args.rounds}: {impl}", file=sys.stderr, flush=True)
            raw[impl].append(run_once(python_for[impl], impl, wanted, args.seconds,
                                      args.num_cpus, args.timeout))

    a = impls[0]
    header = f"{'metric':<25}{'unit':<9}" + "".join(f"{i:>14}" for i in impls)
    header += "".join(f"{a + '/' + b:>16}" for b in impls[1:])
    print(header)
    summary = {}
    for m in wanted:
        unit, higher = METRICS[m]
        row = f"{m:<25}{unit:<9}"
        meds = {}
        for i in impls:
            vals = [rnd[m] for rnd in raw[i] if m in rnd]
            meds[i] = statistics.median(vals) if vals else None
            row += f"{meds[i]:>14.4g}" if vals else f"{'-':>14}"
        ratios = {}
        for b in impls[1:]:
            pairs = [(ra[m], rb[m]) for ra, rb in zip(raw[a], raw[b]) if m in ra and m in rb]
            if pairs:
                rs = [(x / y if higher else y / x) for x, y in pairs if x > 0 and y > 0]
                ratios[b] = statistics.median(rs) if rs else None
            else:
                ratios[b] = None
            row += f"{ratios[b]:>16.3f}" if ratios[b] is not None else f"{'-':>16}"
        summary[m] = {"unit": unit, "higher_is_better": higher, "median": meds, "ratio_vs": ratios}
        print(row)
    print(f"(ratio > 1.0: {a} better; medians of {args.rounds} alternating rounds, "
          f"{args.num_cpus} CPUs, {args.seconds}s per metric)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"raw": raw, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
