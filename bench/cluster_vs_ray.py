"""Two nodes on one machine: moving a 1 GiB object between them, and small
tasks spread over both.  Runs on pyray, or with --ray on Ray's own
cluster_utils (same script, same sizes):

    python bench/cluster_vs_ray.py
    ~/.pyray-peers/bin/python bench/cluster_vs_ray.py --ray

Each node has one CPU and a 3 GiB store; the driver runs on the head.
With --tcp (pyray only) the two nodes are started with `pyray start` instead,
so every process listens on tcp (127.0.0.1) and every message carries the
cluster token's MAC, as between machines:

    python bench/cluster_vs_ray.py --tcp
"""
from __future__ import annotations

import argparse
import time

import numpy as np

GiB = 1 << 30


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ray", action="store_true", help="run on Ray instead of pyray")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--tcp", action="store_true",
                    help="pyray: nodes started by `pyray start`, talking over tcp")
    args = ap.parse_args()
    if args.tcp and not args.ray:
        return _with_started_nodes(args)
    if args.ray:
        import ray
        from ray.cluster_utils import Cluster
    else:
        import pyray as ray
        from pyray.cluster_utils import Cluster

    cluster = Cluster()
    head = cluster.add_node(num_cpus=1, object_store_memory=3 * GiB)
    far = cluster.add_node(num_cpus=1, object_store_memory=3 * GiB, resources={"far": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    run(ray, args, "ray" if args.ray else "pyray", head.node_id, far.node_id)
    ray.shutdown()
    cluster.shutdown()


def _with_started_nodes(args):
    import os
    import re
    import subprocess
    import sys
    import tempfile

    import pyray
    tmp = tempfile.mkdtemp(prefix="pcb", dir="/tmp")
    env = dict(os.environ, TMPDIR=tmp)
    env.pop("PYRAY_TOKEN", None)

    def cli(*a):
        out = subprocess.run([sys.executable, "-m", "pyray.scripts.cli", *a], env=env,
                             capture_output=True, text=True, timeout=60, check=True)
        return out.stdout
    port = 46000 + os.getpid() % 10000
    out = cli("start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
              "--num-cpus", "1", "--object-store-memory", str(3 * GiB))
    token = re.search(r"--token ([0-9a-f]{32})", out).group(1)
    address = f"127.0.0.1:{port}"
    try:
        out = cli("start", "--address", address, "--token", token, "--num-cpus", "1",
                  "--object-store-memory", str(3 * GiB), "--resources", '{"far": 1}')
        far = re.search(r"node ([0-9a-f]{32}) joined", out).group(1)
        pyray.init(address=address, _token=token)
        head = next(n["NodeID"] for n in pyray.nodes() if n["IsHead"])
        run(pyray, args, "pyray (tcp)", head, far)
        pyray.shutdown()
    finally:
        cli("stop", "--address", address)
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def run(ray, args, name, head_id, far_id):
    @ray.remote(resources={"far": 1})
    def make(fill):
        a = np.empty(GiB, dtype=np.uint8)
        a.fill(fill)
        return a

    @ray.remote
    def small():
        return ray.get_runtime_context().get_node_id()

    # 1 GiB made on the far node, read by the driver on the head
    times = []
    for i in range(args.rounds):
        ref = make.remote(i + 1)
        ray.wait([ref], timeout=120, fetch_local=False)   # made on the far node, not moved
        t = time.perf_counter()
        arr = ray.get(ref, timeout=120)
        times.append(time.perf_counter() - t)
        assert arr[0] == i + 1 and arr[-1] == i + 1
        del arr, ref
    rates = [GiB / t / 1e9 for t in times]
    print(f"{name}: 1 GiB from the other node: " +
          ", ".join(f"{t * 1000:.0f} ms ({r:.2f} GB/s)" for t, r in zip(times, rates)) +
          f"; best {max(rates):.2f} GB/s", flush=True)

    # small tasks, SPREAD over both nodes, 1000 in flight at a time
    nodes = set(ray.get([small.options(scheduling_strategy="SPREAD").remote()
                         for _ in range(1000)]))
    assert nodes == {head_id, far_id}, nodes
    n = 0
    t = time.perf_counter()
    while time.perf_counter() - t < args.seconds:
        ray.get([small.options(scheduling_strategy="SPREAD").remote() for _ in range(1000)])
        n += 1000
    el = time.perf_counter() - t
    print(f"{name}: small tasks spread over 2 nodes: {n / el:.0f} tasks/s", flush=True)


if __name__ == "__main__":
    main()
