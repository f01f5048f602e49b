"""Ray Client (docs/client.md): a driver outside the cluster, through the
head's client server, side by side with Ray's client.

    python bench/client_vs_ray.py                       # pyray, and Ray if found
    python bench/client_vs_ray.py --ray-python ~/.pyray-peers/bin/python

Each side starts a head with its CLI (2 CPUs) and a client server in a temp
directory, runs the client in a subprocess that knows only the address (and
pyray's token), and stops the head.  Figures:

* client_calls: synchronous task round trips per second (`get(f.remote())`);
* client_put_100mib_s: seconds per put of a 100 MiB numpy array (best of 3);
* client_get_100mib_s: seconds per get of it back;
* client_generator_items: items per second of a 3000-item generator task
  read with `for ref in gen` (Ray's client refuses streaming generators:
  no figure on its side).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

CLIENT = r"""
import json, sys, time
import numpy as np
mod = __import__(sys.argv[1])
ray = mod
kw = {"_token": sys.argv[3]} if sys.argv[3] else {}
ray.init(sys.argv[2], **kw)
seconds = float(sys.argv[4])

@ray.remote
def f():
    return 1

for _ in range(50):
    ray.get(f.remote())
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    for _ in range(20):
        ray.get(f.remote())
    n += 20
calls = n / (time.perf_counter() - t0)
arr = np.ones(100 << 20, np.uint8)
puts, gets = [], []
for _ in range(3):
    t = time.perf_counter()
    ref = ray.put(arr)
    puts.append(time.perf_counter() - t)
    t = time.perf_counter()
    back = ray.get(ref)
    gets.append(time.perf_counter() - t)
    assert back.nbytes == arr.nbytes
    del ref, back

@ray.remote
def items(n):
    for i in range(n):
        yield i

try:
    sum(1 for _ in items.remote(10))
    t = time.perf_counter()
    n = sum(1 for _ in items.remote(3000))
    gen_items = n / (time.perf_counter() - t)
except Exception:  # noqa: BLE001 - not supported by this client
    gen_items = None
print("RESULT " + json.dumps({"client_calls": calls, "client_put_100mib_s": min(puts),
                              "client_get_100mib_s": min(gets),
                              "client_generator_items": gen_items}), flush=True)
ray.shutdown()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_side(name, python, cli, seconds):
    root = tempfile.mkdtemp(prefix="cb", dir="/tmp")
    env = dict(os.environ, TMPDIR=root, RAY_TMPDIR=root)
    work = os.path.join(root, "work")     # not TMPDIR itself: its pyray/ (sessions) would
    os.makedirs(work)                     # shadow the package for `python -m`
    env.pop("PYRAY_TOKEN", None)
    env.pop("RAY_ADDRESS", None)
    port, cport = free_port(), free_port()
    start = [*cli, "start", "--head", "--port", str(port), "--num-cpus", "2"]
    if name == "ray":
        # Ray's default client server (proxy mode) needs the runtime-env agent of a
        # full install; its single-driver mode ("legacy", the same design as pyray's
        # server) is started by hand next to the head
        start += ["--temp-dir", root, "--include-dashboard", "false",
                  "--disable-usage-stats"]
    else:
        start += ["--object-store-memory", str(1 << 30), "--ray-client-server-port", str(cport)]
    server = None
    try:
        out = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120,
                             cwd=work)
        if out.returncode != 0:
            raise RuntimeError(f"{name} head failed:\n{out.stdout}\n{out.stderr}")
        token = ""
        if name == "ray":
            server = subprocess.Popen(
                [python, "-m", "ray.util.client.server", "--address", "auto", "--host",
                 "127.0.0.1", "--port", str(cport), "--mode", "legacy"], env=env, cwd=work,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(5)
        if name == "pyray":
            token = re.search(r"--token ([0-9a-f]{32})", out.stdout).group(1)
        scheme = "pyray" if name == "pyray" else "ray"
        res = subprocess.run([python, "-c", CLIENT, "pyray" if name == "pyray" else "ray",
                              f"{scheme}://127.0.0.1:{cport}", token, str(seconds)],
                             env=env, capture_output=True, text=True, timeout=300, cwd=work)
        line = [l for l in res.stdout.splitlines() if l.startswith("RESULT ")]
        if not line:
            raise RuntimeError(f"{name} client failed:\n{res.stdout}\n{res.stderr[-3000:]}")
        return json.loads(line[0][len("RESULT "):])
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
        stop = [*cli, "stop"] + (["--address", f"127.0.0.1:{port}"] if name == "pyray"
                                 else ["--force"])
        subprocess.run(stop, env=env, capture_output=True, timeout=120, cwd=work)
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--ray-python", default=os.path.expanduser("~/.pyray-peers/bin/python"))
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results = {"pyray": run_side("pyray", sys.executable,
                                 [sys.executable, "-m", "pyray.scripts.cli"], args.seconds)}
    ray_bin = os.path.join(os.path.dirname(args.ray_python), "ray")
    if not args.no_ray and os.path.exists(ray_bin):
        try:
            results["ray"] = run_side("ray", args.ray_python, [ray_bin], args.seconds)
        except RuntimeError as err:
            print(f"Ray's side failed: {str(err)[-1500:]}", file=sys.stderr)
    print(f"{'metric':<24}{'pyray':>12}{'ray':>12}{'ratio':>10}")
    for k in ("client_calls", "client_put_100mib_s", "client_get_100mib_s",
              "client_generator_items"):
        p = results["pyray"].get(k)
        r = results.get("ray", {}).get(k)
        if p is None:
            continue
        faster = k in ("client_calls", "client_generator_items")
        ratio = "" if r is None else f"{(p / r if faster else r / p):.1f}x"
        print(f"{k:<24}{p:>12.4g}{'' if r is None else f'{r:.4g}':>12}{ratio:>10}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
