"""Memory of pyray.serve's proxy and replica under a long run: their RSS
after a warm-up and after --requests more HTTP requests (keep-alive,
8 client threads) to a no-op deployment; growth should stay under 5%.

    python bench/serve_memory.py --requests 200000
"""
import argparse
import http.client
import socket
import threading
import time

import psutil

THREADS = 8


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def load(port, total):
    per = total // THREADS
    errors = []

    def client():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for _ in range(per):
                c.request("GET", "/?q=x", headers={"x-pad": "y" * 100})
                r = c.getresponse()
                if r.read() != b"ok":
                    raise RuntimeError(f"HTTP {r.status}")
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=client) for _ in range(THREADS)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return per * THREADS / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--warmup", type=int, default=20_000)
    a = ap.parse_args()
    import pyray
    from pyray import serve
    from pyray.util.state import list_actors
    port = free_port()
    pyray.init(num_cpus=2)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})

        @serve.deployment
        class Noop:
            def __call__(self, request):
                return "ok"

        serve.run(Noop.bind(), route_prefix="/")
        pids = {}
        for act in list_actors(filters=[("state", "=", "ALIVE")]):
            name = act.get("name") or ""
            if name == "SERVE_PROXY_ACTOR":
                pids["proxy"] = act["pid"]
            elif name.startswith("SERVE_REPLICA::"):
                pids["replica"] = act["pid"]
        load(port, a.warmup)
        before = {k: psutil.Process(p).memory_info().rss for k, p in pids.items()}
        rps = load(port, a.requests)
        after = {k: psutil.Process(p).memory_info().rss for k, p in pids.items()}
        print(f"{a.requests} requests at {rps:.0f} req/s (after {a.warmup} warm-up)")
        for k in sorted(pids):
            growth = (after[k] - before[k]) / before[k] * 100
            print(f"{k:8} RSS {before[k] / 2**20:7.1f} MiB -> {after[k] / 2**20:7.1f} MiB "
                  f"({growth:+.2f}%)")
    finally:
        serve.shutdown()
        pyray.shutdown()


if __name__ == "__main__":
    main()
