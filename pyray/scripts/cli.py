"""The `pyray` command line."""
from __future__ import annotations

import argparse
import sys
import time


def _timeit(name, fn, multiplier=1, seconds=1.0):
    # warm up, then count calls for `seconds`
    end = time.perf_counter() + min(0.2, seconds / 4)
    while time.perf_counter() < end:
        fn()
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        el = time.perf_counter() - start
        if el >= seconds:
            break
    rate = calls * multiplier / el
    print(f"{name:<45} {rate:>12.1f} per second", flush=True)
    return rate


def microbenchmark(args):
    """The metrics of Ray's `ray microbenchmark`, for what pyray has."""
    import numpy as np

    import pyray as ray

    ray.init(num_cpus=args.num_cpus)
    s = args.seconds

    @ray.remote
    def small_value():
        return b"ok"

    @ray.remote
    def make_refs(n):
        return [ray.put(1) for _ in range(n)]

    @ray.remote(num_cpus=0)
    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_batch(self, n):
            ray.get([small_value.remote() for _ in range(n)])

    @ray.remote(num_cpus=0)
    class AsyncActor:
        async def small_value(self):
            return b"ok"

    @ray.remote(num_cpus=0)
    class Client:
        def __init__(self, servers):
            self.servers = servers if isinstance(servers, list) else [servers]

        def call(self, n):
            ray.get([s.small_value.remote() for s in self.servers for _ in range(n)])

    value = ray.put(0)
    _timeit("single client get calls", lambda: ray.get(value), seconds=s)
    _timeit("single client put calls", lambda: ray.put(0), seconds=s)
    arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)
    _timeit("single client put gigabytes", lambda: ray.put(arr), 8 * 0.1, seconds=s)
    del arr
    holder = make_refs.remote(10000)
    ray.get(holder)
    _timeit("single client get object containing 10k refs", lambda: ray.get(holder), seconds=s)

    def wait_1k():
        pending = [small_value.remote() for _ in range(1000)]
        while pending:
            _, pending = ray.wait(pending)
    _timeit("single client wait 1k refs", wait_1k, seconds=s)
    _timeit("single client tasks sync", lambda: ray.get(small_value.remote()), seconds=s)
    _timeit("single client tasks async",
            lambda: ray.get([small_value.remote() for _ in range(1000)]), 1000, seconds=s)
    a = Actor.remote()
    _timeit("1:1 actor calls sync", lambda: ray.get(a.small_value.remote()), seconds=s)
    _timeit("1:1 actor calls async",
            lambda: ray.get([a.small_value.remote() for _ in range(1000)]), 1000, seconds=s)
    a = Actor.options(max_concurrency=16).remote()
    _timeit("1:1 actor calls concurrent",
            lambda: ray.get([a.small_value.remote() for _ in range(1000)]), 1000, seconds=s)
    n = args.num_cpus
    servers = [Actor.remote() for _ in range(n)]
    _timeit("1:n actor calls async",
            lambda: ray.get([s_.small_value.remote() for s_ in servers for _ in range(500)]),
            500 * n, seconds=s)
    clients = [Client.remote(Actor.remote()) for _ in range(n)]
    _timeit("n:n actor calls async", lambda: ray.get([c.call.remote(500) for c in clients]),
            500 * n, seconds=s)
    aa = AsyncActor.remote()
    _timeit("1:1 async-actor calls async",
            lambda: ray.get([aa.small_value.remote() for _ in range(1000)]), 1000, seconds=s)
    ray.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pyray", description="pyray command line")
    sub = ap.add_subparsers(dest="cmd", required=True)
    mb = sub.add_parser("microbenchmark", help="run the core microbenchmarks")
    mb.add_argument("--num-cpus", type=int, default=2)
    mb.add_argument("--seconds", type=float, default=1.0)
    mb.set_defaults(fn=microbenchmark)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
