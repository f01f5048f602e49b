#!/usr/bin/env python3
"""The dashboard's tasks view, pyray's against Ray's, in one run.

For each implementation (alternating when --rounds > 1) a child process in
that implementation's interpreter starts a local cluster (2 CPUs) with its
dashboard, runs --tasks small tasks (1% of them failing), waits until the
state API has recorded them all, and keeps the cluster up while this process
drives headless chromium (selenium + chromedriver, from this interpreter):

  pyray  http://127.0.0.1:PORT/#/tasks        (the tasks view)
  ray    http://127.0.0.1:PORT/#/jobs/JOB_ID  (Ray's job page: its task table,
                                               summary and timeline link)

Each page is loaded --runs times in a fresh navigation and counted as loaded
when its text shows the tasks' function name, FAILED and the number of failed tasks
(the same test for both).  Also read: the dashboard's memory with the tasks
recorded (its process and those it started; RSS summed, and PSS).

    python bench/dashboard_vs_ray.py --ray-python ~/.pyray-peers/bin/python --tasks 10000
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
import time

CHILD = r'''
import json, os, socket, sys, time
impl, n = sys.argv[1], int(sys.argv[2])
if impl == "pyray":
    import pyray as ray
    from pyray.util.state import summarize_tasks
else:
    import ray
    from ray.util.state import summarize_tasks
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
info = ray.init(num_cpus=2, include_dashboard=True, dashboard_port=port)
if impl == "ray":     # its state API asks this cluster, not another on the machine
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


@ray.remote(max_retries=0)
def bench_noop(i):
    if i % 100 == 99:
        raise ValueError(f"bench failure {i}")
    return i


refs = [bench_noop.remote(i) for i in range(n)]
failed = 0
for r in refs:
    try:
        ray.get(r)
    except Exception:
        failed += 1
deadline = time.monotonic() + 300
done = 0
while time.monotonic() < deadline:
    s = summarize_tasks()
    s = s.get("cluster", s) if isinstance(s, dict) else s
    try:
        c = s["summary"]["bench_noop"]["state_counts"]
        done = c.get("FINISHED", 0) + c.get("FAILED", 0)
    except (KeyError, TypeError):
        pass
    if done >= n:
        break
    time.sleep(1)
token = None
if impl == "pyray":
    with open(os.path.join(info["session_dir"], "token")) as f:
        token = f.read().strip()
job = ray.get_runtime_context().get_job_id()
path = "/#/tasks" if impl == "pyray" else f"/#/jobs/{job}"
print("READY " + json.dumps({"url": f"http://127.0.0.1:{port}", "path": path, "token": token,
                             "port": port, "recorded": done, "failed": failed}), flush=True)
sys.stdin.readline()
ray.shutdown()
'''


def dashboard_memory_mb(impl, port):
    """(RSS, PSS) in MB of the dashboard process and every process it
    started (Ray runs its dashboard modules in child processes)."""
    import psutil
    want = "pyray.dashboard.server" if impl == "pyray" else "dashboard.py"
    rss = pss = 0
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if want in cmd and str(port) in cmd:
            for q in [p] + p.children(recursive=True):
                try:
                    m = q.memory_full_info()
                    rss, pss = rss + m.rss, pss + m.pss
                except psutil.Error:
                    pass
    return rss / 2 ** 20, pss / 2 ** 20


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        sys.exit("this benchmark needs chromium and chromedriver on PATH")
    opts = Options()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(chromedriver), options=opts)


def measure(python, impl, n, runs, shots):
    with tempfile.TemporaryDirectory() as cwd:
        # Ray's token authentication off: its page then loads without a login
        # step (pyray's is logged into once, before the timed loads)
        env = dict(os.environ, RAY_AUTH_MODE="disabled")
        child = subprocess.Popen([python, "-c", CHILD, impl, str(n)], cwd=cwd, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            ready = None
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                line = child.stdout.readline()
                if not line:
                    break
                if line.startswith("READY "):
                    ready = json.loads(line[6:])
                    break
            if ready is None:
                raise RuntimeError(f"{impl}: the cluster did not come up (rc {child.poll()})")
            driver = browser()
            try:
                if ready["token"]:
                    driver.get(ready["url"] + "/login")
                    driver.find_element("name", "token").send_keys(ready["token"])
                    driver.find_element("tag name", "button").click()
                    time.sleep(0.5)
                fails = str(ready["failed"])
                loads = []
                for i in range(runs):
                    driver.get("about:blank")
                    t0 = time.perf_counter()
                    driver.get(ready["url"] + ready["path"])
                    end = time.monotonic() + 180
                    while time.monotonic() < end:
                        text = driver.execute_script("return document.body.innerText") or ""
                        if "bench_noop" in text and "FAILED" in text and fails in text:
                            break
                        time.sleep(0.02)
                    else:
                        if shots:
                            driver.save_screenshot(os.path.join(shots, f"timeout_{impl}.png"))
                        raise TimeoutError(f"{impl}: the tasks never showed in {ready['path']}:"
                                           f" the page shows {text[:300]!r}")
                    loads.append(time.perf_counter() - t0)
                if shots:
                    driver.save_screenshot(os.path.join(shots, f"tasks_view_{impl}.png"))
            finally:
                driver.quit()
            rss, pss = dashboard_memory_mb(impl, ready["port"])
            return {"load_s": statistics.median(loads), "loads": loads,
                    "dashboard_mb": rss, "dashboard_pss_mb": pss,
                    "recorded": ready["recorded"]}
        finally:
            try:
                child.stdin.write("\n")
                child.stdin.flush()
                child.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                child.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="python with pyray[dashboard]")
    ap.add_argument("--ray-python", default=os.path.expanduser("~/.pyray-peers/bin/python"))
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--screenshots", default=None, help="folder for a PNG of each view")
    ap.add_argument("--impls", default="pyray,ray")
    args = ap.parse_args()
    impls = args.impls.split(",")
    got = {"pyray": [], "ray": []}
    for r in range(args.rounds):
        for impl, py in (("pyray", args.python), ("ray", args.ray_python)):
            if impl not in impls:
                continue
            print(f"round {r + 1}/{args.rounds}: {impl}", file=sys.stderr, flush=True)
            res = measure(py, impl, args.tasks, args.runs, args.screenshots)
            print(f"  {impl}: {json.dumps(res)}", file=sys.stderr, flush=True)
            got[impl].append(res)
    print(f"{args.tasks} tasks recorded; tasks view loaded {args.runs} times per round")
    print(f"{'metric':16} {'pyray':>10} {'ray':>10} {'ray/pyray':>10}")
    for m in ("load_s", "dashboard_mb", "dashboard_pss_mb"):
        if not (got["pyray"] and got["ray"]):
            print(json.dumps(got))
            break
        a = statistics.median(x[m] for x in got["pyray"])
        b = statistics.median(x[m] for x in got["ray"])
        print(f"{m:16} {a:10.2f} {b:10.2f} {b / a if a else float('nan'):10.1f}")


if __name__ == "__main__":
    main()
