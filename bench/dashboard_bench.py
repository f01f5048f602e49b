"""The dashboard's web interface with many tasks recorded: how long the tasks
view takes to load in headless chromium, what its API calls cost, and the
dashboard process's memory.

    python bench/dashboard_bench.py [--tasks 10000] [--runs 5] [--json out.json]

It starts a cluster (2 CPUs) with its dashboard, runs --tasks small tasks
(1% of them failing), waits until the state API has recorded them, then
loads http://127.0.0.1:<port>/#/tasks --runs times in a fresh page and
times it from navigation to the view's first draw (counts by state and by
function, failed tasks with their errors, the limited table), and to the
canvas timeline's draw (fetched beside them, drawn when it comes).  Needs chromium,
chromedriver and selenium.  Without the state API (/api/v0/...) the view
draws its "not available" panels and the numbers say little; the output
says which it was.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import time
import urllib.error
import urllib.request

import psutil

import pyray


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, token, timeout=60):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as err:
        body, status = err.read(), err.code
    return status, body, time.perf_counter() - t0


@pyray.remote
def bench_noop(i):
    if i % 100 == 99:
        raise ValueError(f"bench failure {i}")
    return i


def dashboard_process(port):
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "pyray.dashboard.server" in " ".join(cmd) and str(port) in cmd:
            return p
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--screenshot", default=None, help="a PNG of the tasks view, loaded")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        sys.exit("this benchmark needs chromium and chromedriver on PATH")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    port = free_port()
    info = pyray.init(num_cpus=2, dashboard_port=port)
    url = f"http://127.0.0.1:{port}"
    with open(os.path.join(info["session_dir"], "token")) as f:
        token = f.read().strip()
    out = {"tasks": args.tasks}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(url + "/api/version", token)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        proc = dashboard_process(port)
        out["dashboard_rss_mib_idle"] = round(proc.memory_info().rss / 2 ** 20, 1)
        t0 = time.perf_counter()
        refs = [bench_noop.remote(i) for i in range(args.tasks)]
        failed = 0
        for r in refs:
            try:
                pyray.get(r)
            except ValueError:
                failed += 1
        out["run_tasks_s"] = round(time.perf_counter() - t0, 2)
        status, body, _ = get(url + "/api/v0/tasks?limit=1", token)
        out["state_api"] = status == 200
        if out["state_api"]:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                body = json.loads(get(url + "/api/v0/tasks?limit=1", token)[1])
                if body["data"]["result"]["total"] >= args.tasks:
                    break
                time.sleep(0.5)
            out["tasks_recorded"] = body["data"]["result"]["total"]
        for name, path in (("summarize", "/api/v0/tasks/summarize"),
                           ("list_200", "/api/v0/tasks?limit=200&detail=true"),
                           ("failed_50", "/api/v0/tasks?limit=50&detail=true&filter_keys=state"
                                         "&filter_predicates=%3D&filter_values=FAILED"),
                           ("timeline_10000", "/api/ui/tasks_timeline?limit=10000")):
            times, size = [], 0
            for _ in range(3):
                status, body, dt = get(url + path, token)
                times.append(dt)
                size = len(body)
            out[f"api_{name}_ms"] = round(statistics.median(times) * 1000, 1)
            out[f"api_{name}_bytes"] = size
            out[f"api_{name}_status"] = status

        opts = Options()
        opts.binary_location = chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1400,1000"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(chromedriver), options=opts)
        try:
            driver.get(url + "/login")
            driver.find_element("name", "token").send_keys(token)
            driver.find_element("tag name", "button").click()
            time.sleep(0.5)
            loads, timelines = [], []

            def until(script):
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if driver.execute_script(script):
                        return
                    time.sleep(0.01)
                raise TimeoutError(script)
            for _ in range(args.runs):
                driver.get("about:blank")
                t0 = time.perf_counter()
                driver.get(url + "/#/tasks")
                # drawn: counts, by function, failed tasks, the table
                until("return document.body.dataset.view === 'tasks' && "
                      "+document.body.dataset.renders >= 1")
                loads.append(time.perf_counter() - t0)
                # and the canvas timeline (fetched beside them, drawn when it comes)
                if out["state_api"]:
                    until("return +document.body.dataset.timeline >= 1")
                    timelines.append(time.perf_counter() - t0)
            out["tasks_view_load_s_median"] = round(statistics.median(loads), 3)
            out["tasks_view_load_s_all"] = [round(x, 3) for x in loads]
            if timelines:
                out["tasks_view_with_timeline_s_median"] = round(statistics.median(timelines), 3)
            # a live page polls: its memory after a while of it
            time.sleep(6)
            if args.screenshot:
                driver.save_screenshot(args.screenshot)
            out["browser_js_heap_mib"] = round(driver.execute_script(
                "return performance.memory ? performance.memory.usedJSHeapSize : 0") / 2 ** 20, 1)
        finally:
            driver.quit()
        out["dashboard_rss_mib_with_tasks"] = round(proc.memory_info().rss / 2 ** 20, 1)
    finally:
        pyray.shutdown()
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
