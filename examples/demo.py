"""pyray demo: chunked statistics over a few GiB of numpy arrays.

Tasks make random chunks straight into the shared-memory object store,
other tasks read them zero-copy and reduce them to small statistics, and
the driver combines the partial results as they arrive.

    python examples/demo.py [--gib 2] [--chunk-mib 128]
"""
import argparse
import time

import numpy as np

import pyray as ray


@ray.remote
def make_chunk(seed, n):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n)


@ray.remote
def chunk_stats(chunk):
    # `chunk` is a read-only view on shared memory: no copy was made
    hist, _ = np.histogram(chunk, bins=64, range=(-4.0, 4.0))
    return {"n": chunk.size, "sum": float(chunk.sum()), "sumsq": float(np.dot(chunk, chunk)),
            "min": float(chunk.min()), "max": float(chunk.max()), "hist": hist}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.0, help="total data to process")
    ap.add_argument("--chunk-mib", type=int, default=128)
    ap.add_argument("--num-cpus", type=int, default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, object_store_memory=2 << 30)
    print(f"local cluster up in {time.perf_counter() - t0:.2f}s: {ray.cluster_resources()}")

    n = args.chunk_mib * (1 << 20) // 8
    n_chunks = max(1, int(args.gib * 1024 // args.chunk_mib))
    total_bytes = n_chunks * n * 8
    window = 2 * int(ray.cluster_resources().get("CPU", 2))

    t1 = time.perf_counter()
    pending, done, submitted = [], [], 0
    while submitted < n_chunks or pending:
        while submitted < n_chunks and len(pending) < window:
            pending.append(chunk_stats.remote(make_chunk.remote(submitted, n)))
            submitted += 1
        ready, pending = ray.wait(pending, num_returns=1)
        done.extend(ray.get(ready))
        gib = len(done) * n * 8 / (1 << 30)
        print(f"  {len(done):4d}/{n_chunks} chunks  {gib:6.2f} GiB  "
              f"{gib / (time.perf_counter() - t1):6.2f} GiB/s", flush=True)
    elapsed = time.perf_counter() - t1

    count = sum(d["n"] for d in done)
    mean = sum(d["sum"] for d in done) / count
    std = (sum(d["sumsq"] for d in done) / count - mean ** 2) ** 0.5
    hist = sum(d["hist"] for d in done)
    print(f"\n{count:,} samples ({total_bytes / (1 << 30):.2f} GiB) in {elapsed:.2f}s: "
          f"{total_bytes / elapsed / 1e9:.2f} GB/s")
    print(f"mean {mean:+.5f}  std {std:.5f}  min {min(d['min'] for d in done):+.3f}  "
          f"max {max(d['max'] for d in done):+.3f}")
    peak = hist.argmax()
    print(f"histogram peak in bin {peak} of 64 ({hist[peak] / count:.2%} of samples)")
    assert abs(mean) < 0.01 and abs(std - 1.0) < 0.01, "statistics are off"
    ray.shutdown()


if __name__ == "__main__":
    main()
