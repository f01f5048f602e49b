"""The HTTP ceiling for pyray.serve, measured in one run.

1. bare: a uvicorn + starlette app answering GET / with "ok", in one
   process (the proxy and the "replica" are the same code path);
2. serve: pyray.serve's no-op deployment (the workload of
   the libraries' side-by-side harness, serve_http), the proxy and the replica
   in two processes.

Both under the same client: 8 keep-alive http.client threads for
--seconds (req/s), then 500 sequential requests (p50/p99 ms), the two
servers measured alternately (--rounds); prints the medians and serve/bare.

    python bench/serve_ceiling.py --seconds 4 --rounds 3
"""
import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

THREADS = 8
LATENCY_REQUESTS = 500

BARE_SERVER = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def ok(request):
    return PlainTextResponse("ok")

app = Starlette(routes=[Route("/", ok)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(conn):
    conn.request("GET", "/")
    r = conn.getresponse()
    body = r.read()
    if r.status != 200 or body != b"ok":
        raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")


def wait_up(port, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            get(http.client.HTTPConnection("127.0.0.1", port, timeout=5))
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def measure(port, seconds):
    counts, errors = [0] * THREADS, []
    end = time.perf_counter() + seconds

    def client(i):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while time.perf_counter() < end:
                get(conn)
                counts[i] += 1
            conn.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    rps = sum(counts) / (time.perf_counter() - t0)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(20):
        get(conn)
    lat = []
    for _ in range(LATENCY_REQUESTS):
        t = time.perf_counter()
        get(conn)
        lat.append(time.perf_counter() - t)
    conn.close()
    q = statistics.quantiles(lat, n=100)
    return {"rps": rps, "p50_ms": statistics.median(lat) * 1e3, "p99_ms": q[98] * 1e3}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating bare/serve measurements; medians are printed")
    ap.add_argument("--num-cpus", type=int, default=2)
    a = ap.parse_args()
    import pyray
    from pyray import serve
    bare_port, serve_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
    pyray.init(num_cpus=a.num_cpus)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})

        @serve.deployment
        class Noop:
            def __call__(self, *args):
                return "ok"

        serve.run(Noop.bind(), route_prefix="/")
        runs = {"bare": [], "serve": []}
        for port in (bare_port, serve_port):
            wait_up(port)
            measure(port, min(1.0, a.seconds / 4))
        for _ in range(a.rounds):
            runs["bare"].append(measure(bare_port, a.seconds))
            runs["serve"].append(measure(serve_port, a.seconds))
    finally:
        proc.terminate()
        proc.wait(10)
        serve.shutdown()
        pyray.shutdown()
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50_ms", "p99_ms")}
           for k, v in runs.items()}
    b, s = med["bare"], med["serve"]
    print(f"{'':8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}   (medians of {a.rounds} rounds)")
    for name, r in (("bare", b), ("serve", s)):
        print(f"{name:8}{r['rps']:10.0f}{r['p50_ms']:10.3f}{r['p99_ms']:10.3f}")
    print(f"serve/bare: rps {s['rps'] / b['rps']:.2f}, p50 {s['p50_ms'] / b['p50_ms']:.2f}x, "
          f"p99 {s['p99_ms'] / b['p99_ms']:.2f}x  (cpus: {os.cpu_count()})")


if __name__ == "__main__":
    main()
