"""The dashboard's web interface (docs/dashboard.md, "The web interface"):
static files (HTML, JavaScript, CSS: no build step, nothing fetched from
outside the machine) at ``/`` and ``/static/<file>``, and the endpoints only
the page needs:

    GET /api/ui/metrics_history[?since=T]   the cluster's use, sampled every
                                            SAMPLE_S seconds for the last hour
    GET /api/ui/logs                        the log files of the nodes whose
                                            logs are on this machine
    GET /api/ui/logs/{name}?tail=N          a log's last N lines, or
        /api/ui/logs/{name}?offset=B        its bytes from offset B (tailing)
    GET /api/ui/tasks_timeline?limit=N      which worker ran which task when,
                                            from the state API's task rows
    GET /api/ui/process_stats?pids=1,2      memory and CPU of processes on this
                                            machine (the actors view's memory)

The page reads everything else from the REST API (/api/cluster_status,
/api/jobs/, the state API /api/v0/...); a missing endpoint is a panel saying
so, not an error.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("pyray.dashboard.ui")

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".ico": "image/x-icon"}
STATIC_FILES = sorted(f for f in (os.listdir(STATIC_DIR) if os.path.isdir(STATIC_DIR) else ())
                      if os.path.splitext(f)[1] in _TYPES)

def _sample_interval():
    raw = os.environ.get("PYRAY_DASHBOARD_SAMPLE_S", "5")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 600:
        raise ValueError(f"PYRAY_DASHBOARD_SAMPLE_S must be a number of seconds between 0.1 "
                         f"and 600 (the metrics history's sampling interval), got {raw!r}")
    return value


SAMPLE_S = _sample_interval()
WINDOW_S = 3600.0
FIRST_SAMPLE_S = 10.0
# the state API is asked again this long after it answered 404 (it may come
# with a newer dashboard module; a cluster does not change its modules)
STATE_RETRY_S = 60.0
MAX_TAIL_LINES = 20000
MAX_LOG_CHUNK = 1 << 20
MAX_TIMELINE_TASKS = 20000

# the page and the cluster's use are as open as /api/cluster_status; logs,
# the task timeline and process stats need the token like the job API
OPEN_ON_LOOPBACK = ("/", "/api/ui/metrics_history") + tuple(
    "/static/" + f for f in STATIC_FILES)


class SelfClient:
    """GETs of this dashboard's own REST API (the state API another module
    serves), from a thread of its own so that a slow answer never takes a
    thread the request it waits for needs."""

    def __init__(self, dashboard):
        self.dashboard = dashboard
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dashboard-ui")

    def base(self):
        host = self.dashboard.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.dashboard.port}"

    def get(self, path, timeout=20.0):
        """(status, parsed JSON or None)."""
        headers = {"Authorization": f"Bearer {self.dashboard.token}"} if self.dashboard.token \
            else {}
        req = urllib.request.Request(self.base() + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, None
        except (OSError, ValueError) as err:
            log.debug("GET %s: %s", path, err)
            return 0, None

    def state(self, path):
        """The state API's `result` of path (e.g. '/api/v0/tasks?limit=10'),
        or None when the API is not there or failed."""
        status, body = self.get(path)
        if status != 200 or not isinstance(body, dict) or not body.get("result", True):
            return None
        data = body.get("data", body)
        return data.get("result", data) if isinstance(data, dict) else None


def cluster_summary(result):
    """The cluster-wide part of a state API summary's `result`: Ray's shape
    is result.result.node_id_to_summary.cluster (older versions drop a
    level or two; all are read)."""
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("result"), dict):
        result = result["result"]
    result = result.get("node_id_to_summary", result)
    return result.get("cluster") if isinstance(result, dict) else None


def _counts(summary, key="state_counts"):
    """Sums a state API summary's per-name state counts."""
    out = {}
    summary = cluster_summary(summary)
    try:
        for entry in summary["summary"].values():
            for state, n in entry.get(key, {}).items():
                out[state] = out.get(state, 0) + n
    except (KeyError, TypeError, AttributeError):
        return None
    return out


class History:
    """The cluster's use every SAMPLE_S seconds, for the last WINDOW_S
    (a bounded ring: 721 samples of a few hundred bytes)."""

    def __init__(self, dashboard, client):
        import psutil
        self.psutil = psutil
        self.dashboard = dashboard
        self.client = client
        self.samples = collections.deque(maxlen=int(WINDOW_S / SAMPLE_S) + 1)
        self.lock = threading.Lock()
        self.state_missing_until = 0.0
        self.stop = threading.Event()
        self.thread = None
        psutil.cpu_percent(None)

    def start(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self.run, name="dashboard-ui-metrics",
                                           daemon=True)
            self.thread.start()

    def run(self):
        # a while after the start: a short-lived cluster is never joined
        self.stop.wait(min(FIRST_SAMPLE_S, 2 * SAMPLE_S))
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                s = self.sample()
                with self.lock:
                    self.samples.append(s)
            except Exception as err:    # the cluster may be stopping; try again later
                log.debug("metrics sample failed: %s", err)
            self.stop.wait(max(0.5, SAMPLE_S - (time.monotonic() - began)))

    def sample(self):
        import pyray
        self.dashboard.connect()
        total, avail = pyray.cluster_resources(), pyray.available_resources()
        vm = self.psutil.virtual_memory()
        s = {"t": round(time.time(), 3),
             "host_cpu_percent": self.psutil.cpu_percent(None),
             "host_memory": [vm.total - vm.available, vm.total],
             "resources": {k: [round(total[k] - avail.get(k, 0.0), 4), total[k]]
                           for k in ("CPU", "GPU", "memory", "object_store_memory")
                           if k in total},
             "tasks": None, "actors": None, "object_store_used": None}
        if time.monotonic() >= self.state_missing_until:
            s["tasks"] = _counts(self.client.state("/api/v0/tasks/summarize"))
            if s["tasks"] is None:
                self.state_missing_until = time.monotonic() + STATE_RETRY_S
            else:
                s["actors"] = _counts(self.client.state("/api/v0/actors/summarize"))
                objects = self.client.state("/api/v0/objects/summarize")
                try:
                    s["object_store_used"] = int(cluster_summary(objects)["total_size_mb"] * 2 ** 20)
                except (KeyError, TypeError):
                    pass
        return s

    def since(self, t):
        with self.lock:
            return [s for s in self.samples if s["t"] > t]


# ------------------------------------------------------------------ logs
def log_dirs(dashboard):
    """{node label: logs folder} of the nodes whose logs this machine has:
    the head's session directory's logs/."""
    return {"head": os.path.join(dashboard.session_dir, "logs")}


def list_logs(dashboard):
    out = []
    for node, d in log_dirs(dashboard).items():
        files = []
        try:
            names = sorted(os.listdir(d))
        except OSError:
            names = []
        for name in names:
            path = os.path.join(d, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if os.path.isfile(path):
                files.append({"name": name, "size": st.st_size, "mtime": st.st_mtime})
        out.append({"node": node, "dir": d, "files": files})
    return out


def resolve_log(dashboard, node, name):
    """The path of log `name` of `node`, or ValueError: only a plain file
    directly in a listed logs folder (no separators, no '..', no link that
    leads out of it)."""
    dirs = log_dirs(dashboard)
    if node not in dirs:
        raise ValueError(f"no logs of node {node!r}; /api/ui/logs lists them")
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{name!r} is not a log file name; /api/ui/logs lists them")
    base = os.path.realpath(dirs[node])
    path = os.path.realpath(os.path.join(base, name))
    if os.path.dirname(path) != base or not os.path.isfile(path):
        raise ValueError(f"no log file {name!r}; /api/ui/logs lists them")
    return path


def read_log(path, tail=None, offset=None):
    """{"size", "offset", "text"}: the last `tail` lines, or the bytes from
    `offset` (at most MAX_LOG_CHUNK; the page asks again for the rest)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if offset is not None:
            offset = min(max(0, offset), size)
            f.seek(offset)
            data = f.read(MAX_LOG_CHUNK)
            return {"size": size, "offset": offset, "next_offset": offset + len(data),
                    "text": data.decode("utf-8", "replace")}
        # the last `tail` lines: read backwards in blocks until enough
        # newlines (a large log costs what the tail costs)
        pos, chunks, newlines = size, [], 0
        while pos > 0 and newlines <= tail:
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            chunks.append(block)
            newlines += block.count(b"\n")
            if size - pos > 64 * MAX_LOG_CHUNK:
                break
        data = b"".join(reversed(chunks))
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()
        keep = lines[-tail:] if tail else []
        text = b"\n".join(keep) + (b"\n" if keep else b"")
        return {"size": size, "offset": size - len(text), "next_offset": size,
                "text": text.decode("utf-8", "replace")}


# -------------------------------------------------------------- timeline
def compact_timeline(spans, now_ms):
    """Task spans (pyray.util.state.data.task_spans: (task_id, name, type,
    state, node_id, worker_id, pid, job_id, actor_id, attempt, error_type,
    start_s, end_s)) -> {"workers": [[node_id, worker_id]], "names": [...],
    "spans": [[worker, name, start_ms, end_ms, failed, running]]} with times
    relative to t0 (the earliest start, ms): what the canvas draws, small."""
    workers, names, out = {}, {}, []
    starts = [int(sp[11] * 1000) for sp in spans if sp[11] is not None and sp[2] != "DRIVER_TASK"]
    t0 = min(starts) if starts else None
    for (_tid, name, typ, state, node, worker, _pid, _job, _actor, _attempt, _err, start,
         end) in spans:
        if start is None or typ == "DRIVER_TASK":
            continue
        running = end is None
        w = workers.setdefault((node or "?", worker or "?"), len(workers))
        n = names.setdefault(name or "?", len(names))
        out.append([w, n, int(start * 1000) - t0,
                    (now_ms if running else int(end * 1000)) - t0,
                    1 if state == "FAILED" else 0, 1 if running else 0])
    return {"t0": t0, "now": now_ms - (t0 or now_ms), "workers": [list(k) for k in workers],
            "names": list(names), "spans": out}


def routes(dashboard):
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Route

    client = SelfClient(dashboard)
    history = History(dashboard, client)
    history.start()

    def error(status, detail):
        return JSONResponse({"detail": detail}, status_code=status)

    def int_param(request, name, default, lo, hi):
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            v = int(raw)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {raw!r}") from None
        if not lo <= v <= hi:
            raise ValueError(f"{name} must be between {lo} and {hi}, got {v}")
        return v

    async def index(request):
        return FileResponse(os.path.join(STATIC_DIR, "index.html"),
                            headers={"Cache-Control": "no-cache"})

    async def static(request):
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return error(404, f"no static file {name!r}")
        return FileResponse(os.path.join(STATIC_DIR, name),
                            media_type=_TYPES[os.path.splitext(name)[1]],
                            headers={"Cache-Control": "no-cache"})

    async def metrics_history(request):
        try:
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            return error(400, "since must be a UNIX time in seconds")
        return JSONResponse({"interval_s": SAMPLE_S, "window_s": WINDOW_S,
                             "samples": history.since(since)})

    async def logs(request):
        return JSONResponse({"nodes": await dashboard.run_blocking(list_logs, dashboard)})

    async def log_file(request):
        node = request.query_params.get("node", "head")
        try:
            path = resolve_log(dashboard, node, request.path_params["name"])
            offset = int_param(request, "offset", None, 0, 1 << 62)
            tail = int_param(request, "tail", 1000, 0, MAX_TAIL_LINES)
        except ValueError as err:
            return error(404 if "no log" in str(err) else 400, str(err))
        out = await dashboard.run_blocking(read_log, path, tail, offset)
        out.update(node=node, name=request.path_params["name"])
        return JSONResponse(out)

    async def tasks_timeline(request):
        try:
            limit = int_param(request, "limit", 5000, 1, MAX_TIMELINE_TASKS)
        except ValueError as err:
            return error(400, str(err))

        from pyray.util.state import data
        try:
            spans, total = await dashboard.call(data.task_spans, limit)
        except Exception as err:  # noqa: BLE001 - the cluster may be stopping
            return error(502, f"the task records could not be read: {err}")
        out = compact_timeline(spans, int(time.time() * 1000))
        out["total"] = total
        out["num_after_truncation"] = len(out["spans"])
        return JSONResponse(out)

    async def process_stats(request):
        raw = request.query_params.get("pids", "")
        try:
            pids = [int(p) for p in raw.split(",") if p.strip()][:5000]
        except ValueError:
            return error(400, f"pids must be comma-separated integers, got {raw!r}")

        def stats():
            import psutil
            out = {}
            for pid in pids:
                try:
                    p = psutil.Process(pid)
                    with p.oneshot():
                        out[str(pid)] = {"rss": p.memory_info().rss,
                                         "name": p.name()}
                except (psutil.Error, OSError):
                    out[str(pid)] = None
            return out
        return JSONResponse({"processes": await dashboard.run_blocking(stats)})

    return [Route("/", index), Route("/static/{name}", static),
            Route("/api/ui/metrics_history", metrics_history),
            Route("/api/ui/logs", logs), Route("/api/ui/logs/{name}", log_file),
            Route("/api/ui/tasks_timeline", tasks_timeline),
            Route("/api/ui/process_stats", process_stats)]
