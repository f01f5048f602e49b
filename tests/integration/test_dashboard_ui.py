"""The dashboard's web interface, against a real cluster: its own endpoints
(metrics history, logs, timeline) over HTTP, and every view of the page
loaded in headless chromium (selenium), which must show the cluster's real
node, actors, tasks, failed task's error and submitted job, with no
JavaScript error.  Screenshots of the views go to $PYRAY_TEST_ARTIFACTS (or
the test's tmp_path)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request

import pytest

import pyray
from pyray._private import node as node_mod
from pyray.job_submission import JobStatus, JobSubmissionClient
from pyray.util.placement_group import placement_group, remove_placement_group

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not node_mod.dashboard_available(),
                                 reason="the dashboard needs starlette and uvicorn "
                                        "(pip install 'pyray[dashboard]')")]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
VIEWS = ("overview", "jobs", "actors", "tasks", "placement-groups", "objects", "logs", "metrics")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http(url, headers=None):
    """(status, body bytes)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def serving(url):
    try:
        return http(url + "/api/version")[0] == 200
    except OSError:
        return False


@pytest.fixture
def dashboard(ray_init, monkeypatch):
    """A cluster with its dashboard sampling every second: {url, token, auth,
    info}."""
    monkeypatch.setenv("PYRAY_DASHBOARD_SAMPLE_S", "1")
    port = free_port()
    info = ray_init(num_cpus=2, dashboard_port=port, object_store_memory=256 << 20)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: serving(url), what="the dashboard")
    with open(os.path.join(info["session_dir"], "token")) as f:
        token = f.read().strip()
    return {"url": url, "token": token, "auth": {"Authorization": f"Bearer {token}"},
            "info": info}


def test_ui_endpoints_metrics_logs_and_static_files(dashboard):
    url, auth = dashboard["url"], dashboard["auth"]
    # the page and its files are open on loopback, like the cluster status
    status, body = http(url + "/")
    assert status == 200 and b'<script src="/static/app.js">' in body
    for name in ("app.js", "style.css"):
        assert http(f"{url}/static/{name}")[0] == 200
    # any other path is not open: 401 without the token, 404 with it
    assert http(url + "/static/nothing.js")[0] == 401
    assert http(url + "/static/nothing.js", auth)[0] == 404
    assert http(url + "/static/..%2Fmodules%2Fui.py", auth)[0] == 404

    # the history fills in by itself, sampled in the dashboard process
    def samples():
        s, b = http(url + "/api/ui/metrics_history")
        assert s == 200
        got = json.loads(b)["samples"]
        return got if len(got) >= 2 else None
    got = wait_until(samples, timeout=30, what="two metrics samples")
    assert got[-1]["resources"]["CPU"][1] == 2.0
    assert got[-1]["host_memory"][1] > 0
    later = json.loads(http(f"{url}/api/ui/metrics_history?since={got[-1]['t']}")[1])["samples"]
    assert all(s["t"] > got[-1]["t"] for s in later)
    assert http(url + "/api/ui/metrics_history?since=x")[0] == 400

    # logs need the token, even on loopback (they hold users' output)
    assert http(url + "/api/ui/logs")[0] == 401
    assert http(url + "/api/ui/logs/dashboard.log")[0] == 401
    status, body = http(url + "/api/ui/logs", auth)
    assert status == 200
    files = {f["name"]: f for n in json.loads(body)["nodes"] for f in n["files"]}
    assert "dashboard.log" in files and any(n.startswith("raylet") for n in files), files
    logdir = os.path.join(dashboard["info"]["session_dir"], "logs")
    with open(os.path.join(logdir, "ui-test.log"), "w") as f:
        f.write("".join(f"line {i}\n" for i in range(5000)))
    status, body = http(url + "/api/ui/logs/ui-test.log?tail=3", auth)
    out = json.loads(body)
    assert status == 200 and out["text"] == "line 4997\nline 4998\nline 4999\n"
    # tailing: the bytes after an offset
    with open(os.path.join(logdir, "ui-test.log"), "a") as f:
        f.write("appended\n")
    more = json.loads(http(f"{url}/api/ui/logs/ui-test.log?offset={out['next_offset']}", auth)[1])
    assert more["text"] == "appended\n"
    # nothing outside the logs folder, however the name is spelled
    with open(os.path.join(dashboard["info"]["session_dir"], "secret.log"), "w") as f:
        f.write("secret\n")
    os.symlink(os.path.join(dashboard["info"]["session_dir"], "secret.log"),
               os.path.join(logdir, "link.log"))
    for bad in ("..%2Fsecret.log", "%2E%2E%2Fsecret.log", "..", "link.log", "%2Fetc%2Fpasswd",
                "nope.log"):
        status, body = http(f"{url}/api/ui/logs/{bad}", auth)
        assert status in (400, 404) and b"secret" not in body, (bad, status, body)
    assert http(url + "/api/ui/logs/ui-test.log?node=elsewhere", auth)[0] == 404
    assert http(url + "/api/ui/logs/ui-test.log?tail=-1", auth)[0] == 400
    # process stats of the dashboard's machine (the actors view's memory)
    status, body = http(f"{url}/api/ui/process_stats?pids={os.getpid()}", auth)
    assert status == 200 and json.loads(body)["processes"][str(os.getpid())]["rss"] > 0


@pyray.remote
def ui_square(x):
    time.sleep(0.05)
    return x * x


@pyray.remote(max_retries=0)
def ui_explode():
    raise ValueError("ui test explosion 4711")


@pyray.remote
class UiCounterActor:
    def __init__(self):
        self.n = 0

    def inc(self):
        self.n += 1
        return self.n


def make_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="the browser test needs chromium and chromedriver "
                           "(apt-get install chromium chromium-driver)")
def test_every_view_shows_the_cluster_in_a_real_browser(dashboard, tmp_path):
    pytest.importorskip("selenium", reason="the browser test needs selenium (the test extra)")
    from selenium.webdriver.common.by import By
    url, auth = dashboard["url"], dashboard["auth"]
    artifacts = os.path.join(os.environ.get("PYRAY_TEST_ARTIFACTS") or str(tmp_path),
                             "dashboard_ui")
    os.makedirs(artifacts, exist_ok=True)

    # the cluster's work: tasks (one failing), actors, a placement group, a job
    assert pyray.get([ui_square.remote(i) for i in range(12)]) == [i * i for i in range(12)]
    with pytest.raises(ValueError):
        pyray.get(ui_explode.remote())
    counters = [UiCounterActor.remote() for _ in range(2)]
    assert pyray.get([c.inc.remote() for c in counters]) == [1, 1]
    pg = placement_group([{"CPU": 0.1}], strategy="PACK", name="ui-test-pg")
    assert pg.wait(20)
    client = JobSubmissionClient(url, headers=auth)
    sid = client.submit_job(entrypoint="echo ui-test-job-output")
    wait_until(lambda: client.get_job_status(sid) == JobStatus.SUCCEEDED, timeout=40,
               what="the job")
    held = pyray.put(b"u" * (3 << 20))      # 3 MiB the objects view shows
    node_id = pyray.get_runtime_context().get_node_id()
    has_state = http(url + "/api/v0/actors?limit=1", auth)[0] == 200
    # the timeline the tasks view draws: derived from the state API's rows
    status, body = http(url + "/api/ui/tasks_timeline?limit=1000", auth)
    if has_state:
        tl = json.loads(body)
        assert status == 200 and {"ui_square", "ui_explode"} <= set(tl["names"])
        failed = [sp for sp in tl["spans"] if sp[4]]
        assert [tl["names"][sp[1]] for sp in failed] == ["ui_explode"]
        assert all(0 <= sp[2] <= sp[3] for sp in tl["spans"])
        assert {w[0] for w in tl["workers"]} == {pyray.get_runtime_context().get_node_id()}
    else:
        assert status == 404 and b"/api/v0/tasks" in body
    assert http(url + "/api/ui/tasks_timeline?limit=0", auth)[0] == 400

    driver = make_driver()
    try:
        # log in once: the cookie lets the page read what needs the token
        driver.get(url + "/login")
        driver.find_element(By.NAME, "token").send_keys(dashboard["token"])
        driver.find_element(By.TAG_NAME, "button").click()
        wait_until(lambda: driver.current_url.rstrip("/") == url, what="the login redirect")

        def view(name, *texts, timeout=20):
            """Shows view `name` and waits until its page has every text."""
            driver.get(f"{url}/#/{name}")
            wait_until(lambda: "updated" in driver.find_element(By.ID, "updated").text,
                       timeout=timeout, what=f"the {name} view to load")
            try:
                wait_until(lambda: all(t in driver.page_source for t in texts), timeout=timeout,
                           what=f"{texts} in the {name} view")
            finally:
                driver.save_screenshot(os.path.join(artifacts, f"{name}.png"))
            return driver.page_source

        missing = "not available on this dashboard"
        view("overview", node_id, "alive nodes")
        view("jobs", sid, "SUCCEEDED")
        # a click on the job shows its log
        driver.find_element(By.CSS_SELECTOR, f'[data-job="{sid}"]').click()
        wait_until(lambda: "ui-test-job-output" in driver.page_source, what="the job's log")
        driver.save_screenshot(os.path.join(artifacts, "jobs.png"))
        if has_state:
            view("actors", "UiCounterActor", "ALIVE")
            page = view("tasks", "ui_square", "ui_explode", "ui test explosion 4711", "FAILED")
            assert "<canvas" in page
            view("placement-groups", "ui-test-pg", pg.id.hex())
            view("objects", "objects referenced", held.hex()[:10], "3.00 MiB")
        else:
            for name in ("actors", "tasks", "placement-groups", "objects"):
                view(name, missing)
        view("logs", "dashboard.log", "raylet", "worker-")
        # tailing a log: choose it, its lines appear
        driver.find_element(By.CSS_SELECTOR, '.logfiles div.f[data-name="dashboard.log"]').click()
        wait_until(lambda: "listening on" in driver.find_element(By.ID, "logtext").text,
                   what="the dashboard's log in the page")
        driver.save_screenshot(os.path.join(artifacts, "logs.png"))
        view("metrics", "Object store", "samples)")
        assert len(driver.find_elements(By.CSS_SELECTOR, "canvas")) >= 5
        # the live refresh: the views poll; "updated Xs ago" stays fresh
        time.sleep(2.5)
        assert "updated" in driver.find_element(By.ID, "updated").text
        # no JavaScript error in any view (a failed fetch is a network entry:
        # a missing endpoint is a panel, not an error)
        errors = [e for e in driver.get_log("browser")
                  if e["level"] == "SEVERE" and e.get("source") != "network"]
        assert not errors, errors
    finally:
        driver.quit()
        remove_placement_group(pg)
    for name in VIEWS:
        assert os.path.getsize(os.path.join(artifacts, f"{name}.png")) > 10000
