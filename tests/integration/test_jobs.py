"""The dashboard process and job submission, against real processes over
real HTTP on loopback: a head started by `pyray start --head` (its dashboard
with it), jobs submitted through JobSubmissionClient and `pyray job`, and
clusters started by pyray.init() with their dashboard."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request

import psutil
import pytest

import pyray
from pyray._private import node as node_mod
from pyray.job_submission import JobStatus, JobSubmissionClient

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not node_mod.dashboard_available(),
                                 reason="the dashboard needs starlette and uvicorn "
                                        "(pip install 'pyray[dashboard]')")]


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
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http(url, method="GET", headers=None, data=None):
    """(status, headers, body) of one request."""
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def serving(url):
    try:
        return http(url + "/api/version")[0] == 200
    except OSError:
        return False


def pyray_cmd(env, *args, check=True, timeout=60):
    out = subprocess.run([sys.executable, "-m", "pyray.scripts.cli", *args], env=env,
                         capture_output=True, text=True, timeout=timeout, cwd=env["TMPDIR"])
    if check:
        assert out.returncode == 0, f"pyray {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def head():
    """A head started by `pyray start --head` with its dashboard on a free
    port; `pyray stop --address` at the end must leave none of its
    processes (the dashboard included) and free the port."""
    root = tempfile.mkdtemp(prefix="pj", dir="/tmp")
    env = dict(os.environ)
    top = os.path.dirname(os.path.dirname(os.path.abspath(pyray.__file__)))
    env["PYTHONPATH"] = top + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["TMPDIR"] = root
    for var in ("PYRAY_ADDRESS", "RAY_ADDRESS", "PYRAY_TOKEN"):
        env.pop(var, None)
    port, dport = free_port(), free_port()
    # 16 logical CPUs: a driver that exits can leave a lease behind for a while
    # (seen on `pyray start` clusters); the jobs here must not wait for it
    out = pyray_cmd(env, "start", "--head", "--port", str(port), "--num-cpus", "16",
                    "--object-store-memory", str(64 << 20), "--dashboard-port", str(dport))
    token = re.search(r"--token (\w+)", out.stdout).group(1)
    url = f"http://127.0.0.1:{dport}"
    assert f"Dashboard: {url}" in out.stdout, out.stdout
    try:
        wait_until(lambda: serving(url), what="the dashboard")
        yield {"env": env, "url": url, "token": token, "port": port, "root": root,
               "auth": {"Authorization": f"Bearer {token}"}}
    finally:
        pyray_cmd(env, "stop", "--address", f"127.0.0.1:{port}")
        left = [p for p in psutil.process_iter(["cmdline"])
                if root in " ".join(p.info["cmdline"] or ())]
        for p in left:
            p.kill()
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes left running after pyray stop: {[p.info for p in left]}"
    assert not serving(url), "the dashboard still answers after pyray stop"


@pytest.fixture
def client(head):
    return JobSubmissionClient(head["url"], headers=head["auth"])


def wait_status(client, sid, timeout=40.0):
    return wait_until(lambda: (lambda s: s if s.is_terminal() else None)(
        client.get_job_status(sid)), timeout, f"job {sid} to end")


DRIVER = textwrap.dedent("""
    import os, pyray
    pyray.init()
    @pyray.remote
    def square(x):
        return x * x
    print("squares", pyray.get([square.remote(i) for i in range(4)]), flush=True)
    print("submission", os.environ["RAY_JOB_SUBMISSION_ID"])
""")


def test_a_job_through_the_sdk_runs_on_the_cluster_is_followed_and_deleted(head, client,
                                                                           tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    sid = client.submit_job(entrypoint=f"python {script}", submission_id="sdk-job-1",
                            metadata={"owner": "me"}, entrypoint_num_cpus=1)
    assert sid == "sdk-job-1"

    async def follow():
        return "".join([chunk async for chunk in client.tail_job_logs(sid)])
    followed = asyncio.run(asyncio.wait_for(follow(), 60))
    assert "squares [0, 1, 4, 9]" in followed and "submission sdk-job-1" in followed
    assert wait_status(client, sid) == JobStatus.SUCCEEDED
    info = client.get_job_info(sid)
    assert (info.submission_id, info.metadata, info.entrypoint_num_cpus, info.driver_exit_code,
            info.type.value) == (sid, {"owner": "me"}, 1, 0, "SUBMISSION")
    assert info.start_time <= info.end_time
    assert "squares [0, 1, 4, 9]" in client.get_job_logs(sid)
    assert sid in [j.submission_id for j in client.list_jobs()]
    with pytest.raises(RuntimeError, match="already exists"):
        client.submit_job(entrypoint="true", submission_id=sid)
    assert client.delete_job(sid) is True
    with pytest.raises(RuntimeError, match="status code 404"):
        client.get_job_info(sid)


def test_a_working_dir_reaches_the_entrypoint_and_its_tasks(client, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "helper_mod_for_jobs.py").write_text("VALUE = 'from-the-working-dir'\n")
    (wd / "main.py").write_text(textwrap.dedent("""
        import pyray, helper_mod_for_jobs
        pyray.init()
        @pyray.remote
        def imported():
            import helper_mod_for_jobs, os
            return helper_mod_for_jobs.VALUE, os.path.basename(os.getcwd()) != "wd"
        print("driver", helper_mod_for_jobs.VALUE)
        print("task", pyray.get(imported.remote()))
    """))
    sid = client.submit_job(entrypoint="python main.py", runtime_env={"working_dir": str(wd)})
    assert sid.startswith("raysubmit_")
    assert wait_status(client, sid) == JobStatus.SUCCEEDED, client.get_job_logs(sid)
    logs = client.get_job_logs(sid)
    assert "driver from-the-working-dir" in logs
    assert "task ('from-the-working-dir', True)" in logs
    # the job's record keeps the env as given (the package's URI)
    assert client.get_job_info(sid).runtime_env["working_dir"].startswith("gcs://_ray_pkg_")


def test_a_failing_entrypoint_is_failed_with_its_exit_code_and_log_tail(client):
    sid = client.submit_job(
        entrypoint="python -c \"print('before-the-failure'); import sys; sys.exit(3)\"")
    assert wait_status(client, sid) == JobStatus.FAILED
    info = client.get_job_info(sid)
    assert info.driver_exit_code == 3
    assert "exit code 3" in info.message and "before-the-failure" in info.message
    assert info.error_type == "JOB_ENTRYPOINT_COMMAND_ERROR"


def test_stop_ends_the_process_tree_and_the_jobs_actors(client, tmp_path):
    pids = tmp_path / "pids"
    (tmp_path / "stopme.py").write_text(textwrap.dedent(f"""
        import os, subprocess, time, pyray
        pyray.init()
        @pyray.remote
        class Holder:
            def pid(self):
                return os.getpid()
        h = Holder.remote()
        child = subprocess.Popen(["sleep", "1000"])
        with open({str(pids)!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}} {{pyray.get(h.pid.remote())}}")
        print("ready", flush=True)
        time.sleep(1000)
    """))
    sid = client.submit_job(entrypoint=f"python {tmp_path / 'stopme.py'}")
    wait_until(lambda: "ready" in client.get_job_logs(sid), 40, "the job to start")
    assert client.get_job_status(sid) == JobStatus.RUNNING
    procs = [int(p) for p in pids.read_text().split()]
    assert all(not gone(p) for p in procs)
    assert client.stop_job(sid) is True
    assert wait_status(client, sid) == JobStatus.STOPPED
    # the entrypoint, its child and its actor's worker are all gone
    wait_until(lambda: all(gone(p) for p in procs), 15,
               f"the job's processes to exit ({procs}: entrypoint, its child, its actor); "
               f"left: {[p for p in procs if not gone(p)]}")
    assert client.stop_job(sid) is False          # already ended
    with pytest.raises(RuntimeError, match="status code 404"):
        client.stop_job("no-such-job")


def test_a_job_whose_supervisor_dies_is_failed_and_its_entrypoint_ends(client):
    sid = client.submit_job(entrypoint="sleep 300")
    wait_until(lambda: client.get_job_status(sid) == JobStatus.RUNNING, 30, "RUNNING")
    entrypoint = psutil.Process(int(client.get_job_info(sid).driver_info.pid))
    entrypoint.parent().kill()                # the supervisor's worker
    assert wait_status(client, sid) == JobStatus.FAILED
    info = client.get_job_info(sid)
    assert info.error_type == "JOB_SUPERVISOR_ACTOR_DIED" and "supervisor" in info.message
    wait_until(lambda: gone(entrypoint.pid), 10, "the entrypoint to end with its supervisor")


def test_the_job_api_needs_the_token_even_on_loopback(head):
    anonymous = JobSubmissionClient(head["url"], headers={"X-Nothing": "1"})
    with pytest.raises(RuntimeError, match="status code 401"):
        anonymous.submit_job(entrypoint="touch /tmp/should-not-exist")
    for method, path in (("GET", "/api/jobs/"), ("GET", "/api/jobs/x/logs"),
                         ("POST", "/api/jobs/x/stop"), ("DELETE", "/api/jobs/x"),
                         ("PUT", "/api/packages/gcs/_ray_pkg_" + "0" * 32 + ".zip")):
        assert http(head["url"] + path, method, data=b"" if method != "GET" else None)[0] \
            == 401, path
    # what loopback leaves open: the version, the cluster's status, the page
    status, _, body = http(head["url"] + "/api/cluster_status")
    data = json.loads(body)["data"]
    assert status == 200 and data["cluster_resources"]["CPU"] == 16.0
    assert len(data["nodes"]) == 1 and data["nodes"][0]["Alive"]
    assert http(head["url"] + "/")[0] == 200


def test_the_cli_submits_follows_and_manages_jobs(head, tmp_path):
    # the commands find the token the local dashboard left for its owner
    env, url = head["env"], head["url"]
    wd = tmp_path / "cliwd"
    wd.mkdir()
    (wd / "climod.py").write_text("print('cli-module-imported')\n")
    out = pyray_cmd(env, "job", "submit", "--address", url, "--submission-id", "cli-job",
                    "--working-dir", str(wd), "--entrypoint-num-cpus", "0.5", "--",
                    "python", "-c", "import climod")
    assert "Job 'cli-job' submitted successfully" in out.stdout
    assert "cli-module-imported" in out.stdout
    assert "Job 'cli-job' succeeded" in out.stdout
    out = pyray_cmd(env, "job", "status", "--address", url, "cli-job")
    assert "Status for job 'cli-job': SUCCEEDED" in out.stdout
    assert "cli-module-imported" in pyray_cmd(env, "job", "logs", "--address", url,
                                              "cli-job").stdout
    assert "cli-job" in pyray_cmd(env, "job", "list", "--address", url).stdout
    out = pyray_cmd(env, "job", "submit", "--address", url, "--no-wait", "--submission-id",
                    "cli-fail", "--", "python", "-c", "import sys; sys.exit(5)")
    assert "Tailing logs" not in out.stdout
    out = pyray_cmd(env, "job", "logs", "--address", url, "--follow", "cli-fail")
    out = pyray_cmd(env, "job", "status", "--address", url, "cli-fail")
    assert "FAILED" in out.stdout and "exit code 5" in out.stdout
    out = pyray_cmd(env, "job", "delete", "--address", url, "cli-job")
    assert "Job 'cli-job' deleted successfully" in out.stdout
    out = pyray_cmd(env, "job", "status", "--address", url, "cli-job", check=False)
    assert out.returncode != 0 and "404" in out.stderr
    # a job that is still running cannot be deleted; stop it, then it can
    pyray_cmd(env, "job", "submit", "--address", url, "--no-wait", "--submission-id",
              "cli-sleep", "--", "sleep", "300")
    out = pyray_cmd(env, "job", "delete", "--address", url, "cli-sleep", check=False)
    assert out.returncode != 0 and "terminal" in out.stderr
    out = pyray_cmd(env, "job", "stop", "--address", url, "cli-sleep")
    assert "Job 'cli-sleep' was stopped" in out.stdout


def _non_loopback_ip():
    ip = node_mod.local_ip_for()
    return None if ip.startswith("127.") else ip


def test_bound_beyond_loopback_every_request_needs_the_token(head):
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no address other than loopback to bind to")
    port = free_port()
    session = next(os.path.join(head["root"], "pyray", d)
                   for d in os.listdir(os.path.join(head["root"], "pyray"))
                   if d.startswith("session_"))
    env = dict(head["env"], PYRAY_TOKEN=head["token"])
    cmd = [sys.executable, "-m", "pyray.dashboard.server", "--gcs-address",
           f"tcp://{ip}:{head['port']}", "--host", ip, "--port", str(port),
           "--session-dir", session]
    # cwd: not the checkout, whose pyray (without its compiled store in CI)
    # `python -m` would import first
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=head["root"])
    url = f"http://{ip}:{port}"
    try:
        wait_until(lambda: http(url + "/api/version")[0] == 401 if _up(url) else False,
                   what="the dashboard on " + ip)
        for path in ("/", "/api/cluster_status", "/api/jobs/"):
            assert http(url + path)[0] == 401, path
        assert http(url + "/api/version", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert http(url + "/api/jobs/", headers=head["auth"])[0] == 200
        # a login with the token sets a cookie that lets the browser in
        assert http(url + "/login", "POST", data=b"token=wrong")[0] == 401
        req = urllib.request.Request(url + "/login", method="POST",
                                     data=f"token={head['token']}".encode())
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            opener.open(req, timeout=10)
        except urllib.error.HTTPError as err:
            assert err.code == 303
            cookie = err.headers["set-cookie"].split(";")[0]
        assert head["token"] not in cookie
        assert http(url + "/api/jobs/", headers={"Cookie": cookie})[0] == 200
        # the same port again: one clear error, exit code 1
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 1
        assert f"cannot listen on {ip}:{port}" in again.stdout
    finally:
        proc.terminate()
        proc.wait(10)


def _up(url):
    try:
        http(url + "/api/version")
        return True
    except OSError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def test_init_starts_the_dashboard_without_waiting_and_shutdown_stops_it(ray_init):
    port = free_port()
    info = ray_init(num_cpus=1, dashboard_port=port)
    from pyray._private.context import ctx
    dash = ctx.cluster.dashboard
    # init() returned before the dashboard was serving: it was not waited for
    assert not _up(f"http://127.0.0.1:{port}")
    assert info.dashboard_url == f"127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: serving(url), what="the dashboard")
    # the SDK finds the local dashboard's token by itself
    client = JobSubmissionClient(url)
    sid = client.submit_job(entrypoint="python -c \"import pyray; pyray.init(); "
                                       "print('cpus', pyray.cluster_resources()['CPU'])\"")
    assert wait_status(client, sid) == JobStatus.SUCCEEDED
    assert "cpus 1.0" in client.get_job_logs(sid)
    pyray.shutdown()
    assert gone(dash.pid) and not _up(url)


def test_a_port_in_use_fails_the_dashboard_not_init(ray_init):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        info = ray_init(num_cpus=1, dashboard_port=port)
        from pyray._private.context import ctx
        assert ctx.cluster.dashboard.wait(30) == 1
        assert pyray.get(pyray.put(7)) == 7            # the cluster runs on
        with open(os.path.join(info["session_dir"], "logs", "dashboard.log")) as f:
            log = f.read()
        assert f"the dashboard cannot listen on 127.0.0.1:{port}" in log


def test_init_does_no_work_for_the_dashboard():
    """init() only spawns the dashboard (that it does not wait for it is
    checked above): the driver's own CPU time for init() is the same with
    and without it.  CPU time, not wall time: the machine may be loaded."""
    def cpu_of_init(**kw):
        t = time.process_time()
        pyray.init(num_cpus=1, object_store_memory=64 << 20, **kw)
        took = time.process_time() - t
        pyray.shutdown()
        return took
    without, with_ = [], []
    for _ in range(3):
        without.append(cpu_of_init(include_dashboard=False))
        with_.append(cpu_of_init(include_dashboard=True, dashboard_port=free_port()))
    assert min(with_) < min(without) + 0.05, (with_, without)


def test_a_token_file_not_of_a_running_dashboard_is_not_used():
    # a file left by a dashboard that is gone must not hand the token to
    # whatever listens on that port now
    from pyray.job_submission.common import read_token_file, token_file, write_token_file
    port = free_port()
    path = write_token_file(port, "secret-token")       # this process is no dashboard
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert read_token_file(port) is None
    finally:
        os.remove(path)


def test_without_starlette_the_dashboard_is_skipped_or_a_clear_error(tmp_path):
    code = textwrap.dedent("""
        import sys, logging
        sys.modules["starlette"] = None          # as if not installed
        import pyray
        try:
            pyray.init(num_cpus=1, include_dashboard=True)
        except ValueError as err:
            print("ERROR", err)
        info = pyray.init(num_cpus=1, object_store_memory=64 << 20)
        print("URL", info.dashboard_url)
        pyray.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert "ERROR include_dashboard=True needs starlette and uvicorn" in out.stdout, out
    assert "URL None" in out.stdout, out
    assert out.stderr.count("the dashboard is not started") == 1, out.stderr


def test_a_killed_dashboard_is_reported_and_the_cluster_runs_on(head):
    """Kept last: it SIGKILLs the module's dashboard.  `pyray status` says the
    dashboard does not answer, and tasks still run."""
    env = dict(head["env"], PYRAY_TOKEN=head["token"])
    address = f"127.0.0.1:{head['port']}"

    def status():
        return pyray_cmd(env, "status", "--address", address).stdout

    try:
        wait_until(lambda: f"Dashboard: {head['url']} (answering)" in status(),
                   what="the dashboard to record itself")
    except AssertionError:
        raise AssertionError(status())
    (dash,) = [p for p in psutil.process_iter(["cmdline"])
               if "pyray.dashboard.server" in " ".join(p.info["cmdline"] or ())
               and head["root"] in " ".join(p.info["cmdline"] or ())]
    dash.kill()
    wait_until(lambda: gone(dash.pid), what="the dashboard to die")
    assert f"Dashboard: {head['url']} (NOT answering" in status()
    out = subprocess.run(
        [sys.executable, "-c",
         "import pyray\n"
         f"pyray.init(address='{address}')\n"
         "@pyray.remote\n"
         "def f(x):\n"
         "    return x * 2\n"
         "print('RESULT', pyray.get(f.remote(21)))\n"],
        env=env, capture_output=True, text=True, timeout=60, cwd=env["TMPDIR"])
    assert "RESULT 42" in out.stdout, out.stderr
