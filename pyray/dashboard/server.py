"""The dashboard process: ``python -m pyray.dashboard.server --gcs-address
ADDR --host H --port P --session-dir DIR [--watch-pid PID]``.

It binds its socket first (a port in use is one clear line in its log and
exit code 1; the cluster runs on without it), then serves.  It connects to
the cluster as a driver, in the namespace NAMESPACE, on the first request
that needs the cluster, so that starting it costs the cluster next to
nothing.  It exits on SIGTERM/SIGINT, and by itself when the process
--watch-pid names (the head's raylet) is gone.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import importlib
import logging
import os
import pkgutil
import signal
import socket
import sys
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from pyray.job_submission.common import is_loopback

log = logging.getLogger("pyray.dashboard")

# the namespace the dashboard's driver (and the job supervisors it starts)
# live in; users' named actors and namespaces never see it
NAMESPACE = "_pyray_dashboard"
COOKIE = "pyray_dashboard_session"


class Dashboard:
    """What route modules get: the cluster's address and token, the session
    directory, and `call()`, which runs a blocking pyray call (connecting
    to the cluster first if need be) off the event loop."""

    def __init__(self, gcs_address, host, port, session_dir, token):
        self.gcs_address = gcs_address
        self.host = host
        self.port = port
        self.session_dir = session_dir
        self.token = token
        self.loopback = is_loopback(host)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dashboard")
        self._lock = threading.Lock()
        self._connected = False
        self.head_node_id = None

    def connect(self):
        """Connects this process to the cluster as a driver (once)."""
        with self._lock:
            if self._connected:
                return
            import pyray
            pyray.init(address=self.gcs_address, namespace=NAMESPACE, _token=self.token or None,
                       log_to_driver=False, logging_level=logging.WARNING)
            self.head_node_id = pyray.get_runtime_context().get_node_id()
            self._connected = True

    async def call(self, fn, *args):
        def run():
            self.connect()
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    async def run_blocking(self, fn, *args):
        """A blocking call that does not need the cluster (file reads)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def session_value(self):
        """The login cookie's value: derived from the token, not the token."""
        return hmac.new(self.token.encode(), b"pyray-dashboard-session", "sha256").hexdigest()


RECORD_KEY = "dashboard:"         # + host:port, in the GCS's key-value store (NAMESPACE)


def record_in_cluster(dashboard):
    """Tells the cluster where its dashboard is (`pyray status` reads it and
    says whether it answers)."""
    import json

    from pyray.experimental.internal_kv import _internal_kv_put
    _internal_kv_put(f"{RECORD_KEY}{dashboard.host}:{dashboard.port}", json.dumps({
        "host": dashboard.host, "port": dashboard.port, "pid": os.getpid(),
        "node_id": dashboard.head_node_id}), namespace=NAMESPACE)


def load_modules():
    """The route modules: every pyray.dashboard.modules.<name> (not
    starting with _), in name order.  Each has ``routes(dashboard)`` giving
    starlette routes, and may have ``OPEN_ON_LOOPBACK``: the paths served
    without the token when the dashboard listens on a loopback address."""
    from pyray.dashboard import modules
    found = []
    for info in sorted(pkgutil.iter_modules(modules.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            found.append(importlib.import_module(f"pyray.dashboard.modules.{info.name}"))
    return found


class TokenGate:
    """ASGI middleware: a request passes with the cluster token (header
    ``Authorization: Bearer <token>`` or the login cookie), or when its path
    is open: /login always, a module's OPEN_ON_LOOPBACK paths when the
    dashboard listens on loopback only.  Everything else gets 401."""

    def __init__(self, app, dashboard, open_paths):
        self.app = app
        self.dashboard = dashboard
        self.open_paths = set(open_paths) if dashboard.loopback else set()
        self.open_paths.add("/login")

    def authorized(self, scope):
        token = self.dashboard.token
        if not token:
            return False
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                                       token.encode()):
                    return True
            elif name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    k, _, v = part.strip().partition("=")
                    if k == COOKIE and hmac.compare_digest(
                            v.encode(), self.dashboard.session_value().encode()):
                        return True
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.open_paths or \
                self.authorized(scope):
            return await self.app(scope, receive, send)
        body = (b'{"detail": "Unauthorized: this request needs the cluster token '
                b'(Authorization: Bearer <token>, or log in at /login); see docs/cluster.md, '
                b'Security"}')
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


_LOGIN_PAGE = """<!doctype html><html><head><title>pyray dashboard: log in</title></head>
<body><form method="post" action="/login"><p>Cluster token:
<input type="password" name="token" autofocus> <button>Log in</button></p>
<p>{note}</p></form></body></html>"""


def login_routes(dashboard):
    from starlette.responses import HTMLResponse, RedirectResponse
    from starlette.routing import Route

    async def login_page(request):
        return HTMLResponse(_LOGIN_PAGE.format(note="The token `pyray start --head` printed."))

    async def login(request):
        body = (await request.body()).decode(errors="replace")
        given = urllib.parse.parse_qs(body).get("token", [""])[0]
        if not dashboard.token or not hmac.compare_digest(given.encode(),
                                                          dashboard.token.encode()):
            return HTMLResponse(_LOGIN_PAGE.format(note="Wrong token."), status_code=401)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, dashboard.session_value(), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return resp
    return [Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"])]


def build_app(dashboard, modules=None):
    from starlette.applications import Starlette
    routes, open_paths = login_routes(dashboard), set()
    for mod in load_modules() if modules is None else modules:
        routes.extend(mod.routes(dashboard))
        open_paths.update(getattr(mod, "OPEN_ON_LOOPBACK", ()))
    app = Starlette(routes=routes)
    return TokenGate(app, dashboard, open_paths)


def _bind(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def _alive(pid):
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _watch(pid, server):
    while not server.should_exit:
        if not _alive(pid):
            log.warning("the head's raylet (pid %d) is gone; the dashboard stops", pid)
            server.should_exit = True
            return
        await asyncio.sleep(0.5)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pyray.dashboard.server")
    ap.add_argument("--gcs-address", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8265)
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--watch-pid", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(OSError):
        os.nice(5)              # it serves people; the cluster's work comes first
    token = os.environ.get("PYRAY_TOKEN", "")
    try:
        sock = _bind(args.host, args.port)
    except OSError as err:
        log.error("the dashboard cannot listen on %s:%d: %s. The cluster runs without a "
                  "dashboard; free the port or choose another (pyray.init(dashboard_port=...) "
                  "or pyray start --dashboard-port).", args.host, args.port,
                  err.strerror or err)
        return 1
    import uvicorn

    from pyray.job_submission.common import write_token_file
    port = sock.getsockname()[1]
    dashboard = Dashboard(args.gcs_address, args.host, port, args.session_dir, token)
    app = build_app(dashboard)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):      # ours: the process then exits normally
            yield

    server = Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                   timeout_graceful_shutdown=1, access_log=False))
    token_path = write_token_file(port, token) if token else None

    def remove_token_file():
        if token_path:
            with contextlib.suppress(OSError):
                with open(token_path) as f:
                    mine = f.read().split("\n")[:2] == [token, str(os.getpid())]
                if mine:
                    os.remove(token_path)

    def on_signal():
        # the cluster is stopping: nothing here needs a graceful end (the
        # job records are in the GCS, the jobs run under their supervisors)
        remove_token_file()
        os._exit(0)

    async def serve():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        if args.watch_pid:
            loop.create_task(_watch(args.watch_pid, server))
        loop.create_task(dashboard.call(record_in_cluster, dashboard))
        log.info("pyray dashboard listening on http://%s:%d (%s)", args.host, port,
                 "loopback: the job API needs the cluster token" if dashboard.loopback
                 else "every request needs the cluster token")
        await server.serve(sockets=[sock])
    try:
        asyncio.run(serve())
    finally:
        remove_token_file()
    # not a normal exit: a worker thread may still wait on the cluster that is
    # gone (its calls time out only later), and the interpreter would join it
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
