#!/usr/bin/env python3
"""The same read -> transform -> write job on pyray.data, Dask and Ray Data,
alternating, each in a fresh process.

The job (as libs_vs_ray.py's data_map_batches): --files Parquet files of
float64 columns (--mib MiB each), every value v -> v * 2 + 1, written back
as Parquet; GB/s of input.  One small untimed pass over one file first, so
that worker start-up is not what is measured.

  pyray  pyray.data.read_parquet(dir).map_batches(fn, batch_format="numpy")
             .write_parquet(out)           (a local cluster, --num-cpus)
  dask   dask.dataframe.read_parquet(dir).map_partitions(fn).to_parquet(out)
             (the threaded scheduler, --num-cpus workers: numpy releases the GIL)
  ray    ray.data, the same calls as pyray

    python bench/data_vs_dask.py --peer-python ~/.pyray-peers/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

COLS = 8

CHILD = r'''
import json, os, shutil, sys, tempfile, time
impl, src, first, nbytes, num_cpus, scratch = sys.argv[1:7]
nbytes, num_cpus = int(nbytes), int(num_cpus)


def fn(b):
    return {k: v * 2.0 + 1.0 for k, v in b.items()}


def rows_in(path):
    import pyarrow.parquet as pq
    return sum(pq.ParquetFile(os.path.join(d, f)).metadata.num_rows
               for d, _, fs in os.walk(path) for f in fs if f.endswith(".parquet"))


if impl in ("pyray", "ray"):
    ray = __import__(impl)
    ray.init(num_cpus=num_cpus, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False

    def job(path, out):
        ray.data.read_parquet(path).map_batches(fn, batch_format="numpy").write_parquet(out)
else:
    import dask
    import dask.dataframe as dd
    dask.config.set(scheduler="threads", num_workers=num_cpus)

    def job(path, out):
        dd.read_parquet(path).map_partitions(lambda p: p * 2.0 + 1.0).to_parquet(out)

warm = tempfile.mkdtemp(dir=scratch)
job(first, warm)
out = os.path.join(tempfile.mkdtemp(dir=scratch), "out")
t0 = time.perf_counter()
job(src, out)
dt = time.perf_counter() - t0
got = rows_in(out)
print("RESULT " + json.dumps({"gbps": nbytes / dt / 1e9, "rows": got}), flush=True)
'''


def make_data(root, files, mib):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = mib * 2 ** 20 // (8 * COLS)
    src = os.path.join(root, "input")
    os.makedirs(src, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(files):
        pq.write_table(pa.table({f"c{j}": rng.random(rows) for j in range(COLS)}),
                       os.path.join(src, f"part-{i:02d}.parquet"))
    return src, os.path.join(src, "part-00.parquet"), files * rows * COLS * 8, files * rows


def run(python, impl, src, first, nbytes, num_cpus, scratch):
    with tempfile.TemporaryDirectory(dir=scratch) as cwd:
        p = subprocess.run([python, "-c", CHILD, impl, src, first, str(nbytes), str(num_cpus),
                            cwd], capture_output=True, text=True, timeout=900, cwd=cwd)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{impl} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="python with pyray[data]")
    ap.add_argument("--peer-python", default=os.path.expanduser("~/.pyray-peers/bin/python"),
                    help="python with dask[dataframe] and ray[data]")
    ap.add_argument("--impls", default="pyray,dask,ray")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    impls = args.impls.split(",")
    scratch = tempfile.mkdtemp(prefix="data_vs_dask-")
    try:
        src, first, nbytes, rows = make_data(scratch, args.files, args.mib)
        got = {i: [] for i in impls}
        for r in range(args.rounds):
            for impl in impls:
                print(f"round {r + 1}/{args.rounds}: {impl}", file=sys.stderr, flush=True)
                py = args.python if impl == "pyray" else args.peer_python
                res = run(py, impl, src, first, nbytes, args.num_cpus, scratch)
                if res["rows"] != rows:
                    raise RuntimeError(f"{impl} wrote {res['rows']} rows, expected {rows}")
                got[impl].append(res["gbps"])
        print(f"read -> v*2+1 -> write Parquet, {nbytes / 2 ** 20:.0f} MiB in {args.files} "
              f"files, {args.num_cpus} CPUs; medians of {args.rounds} alternating rounds")
        base = statistics.median(got[impls[0]])
        for impl in impls:
            m = statistics.median(got[impl])
            print(f"{impl:8} {m:8.3f} GB/s   {impls[0]}/{impl}: {base / m:6.2f}x")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
