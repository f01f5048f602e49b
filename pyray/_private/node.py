"""Starting and stopping the processes of a local cluster (GCS + raylet).

Both are started at once as child processes; each reports readiness down a
pipe (a handshake, never a sleep).  They die with the process that started
them (PDEATHSIG), so a killed driver leaves nothing running; the raylet's
store is a memfd, so nothing is left in /dev/shm either.
"""
from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from pyray._private import transport
from pyray._private.procs import stop_processes, wait_exit

SESSION_ROOT = os.path.join(tempfile.gettempdir(), "pyray")
CURRENT_CLUSTER_FILE = os.path.join(SESSION_ROOT, "current_cluster")


def write_private(path, text):
    """Writes a file only its owner can read (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)
        f.write(text)


def new_session_dir(root=None):
    """A new session directory under `root` (default SESSION_ROOT;
    `pyray start --temp-dir` names another)."""
    root = root or SESSION_ROOT
    os.makedirs(root, exist_ok=True)
    name = time.strftime("session_%Y-%m-%d_%H-%M-%S") + f"_{os.getpid()}_{os.urandom(2).hex()}"
    path = os.path.join(root, name)
    for sub in ("sockets", "logs", "spill"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    return path


def default_object_store_memory(fraction):
    try:
        # (not psutil: importing it costs init() tens of milliseconds)
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = 8 << 30
    # /dev/shm caps what a memfd can hold on some systems
    try:
        st = os.statvfs("/dev/shm")
        total = min(total, st.f_bavail * st.f_frsize)
    except OSError:
        pass
    return int(total * fraction)


# cgroup v2, then v1: the limit, the usage, and the memory.stat line of the
# page cache the kernel can reclaim (it does not count as used)
_CGROUP_MEMORY = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current",
                   "/sys/fs/cgroup/memory.stat", b"inactive_file "),
                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                   "/sys/fs/cgroup/memory/memory.usage_in_bytes",
                   "/sys/fs/cgroup/memory/memory.stat", b"total_inactive_file "))


def available_memory():
    """Bytes of memory free for new work on this machine: what psutil calls
    available (the kernel's MemAvailable), or what this process's cgroup
    limit leaves when that is less.  Read from /proc, not psutil: importing
    psutil costs init() tens of milliseconds."""
    avail = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        import psutil
        avail = psutil.virtual_memory().available
    for limit_path, usage_path, stat_path, reclaimable in _CGROUP_MEMORY:
        try:
            with open(limit_path, "rb") as f:
                limit = f.read().strip()
            with open(usage_path, "rb") as f:
                used = int(f.read())
        except (OSError, ValueError):
            continue
        if limit.isdigit():
            try:
                with open(stat_path, "rb") as f:
                    for line in f:
                        if line.startswith(reclaimable):
                            used -= int(line.split()[1])
                            break
            except (OSError, ValueError, IndexError):
                pass
            avail = min(avail, max(0, int(limit) - max(0, used)))
        break
    return avail


def default_memory(object_store_memory):
    """A node's ``memory`` resource when none is given (as in Ray): the
    memory available now less the object store's, so about 70% of it with
    the default store size.  A store as large as the free memory still
    leaves the node a tenth of it, so that work asking for some memory can
    run there."""
    avail = available_memory()
    return int(max(avail - object_store_memory, avail // 10))


def local_ip_for(host=None):
    """This machine's address on the route to `host` (a name or an address;
    by default the route out of the machine), or 127.0.0.1 where there is
    none.  Connecting a UDP socket only picks the route: nothing is sent."""
    import socket
    try:
        infos = socket.getaddrinfo(host or "192.0.2.1", 9, socket.AF_INET, socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(infos[0][4])
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def is_local_ip(ip):
    """Whether `ip` is an address of this machine (its interfaces as this
    process's network namespace sees them)."""
    if ip.startswith("127.") or ip in ("localhost", "0.0.0.0"):
        return True
    import psutil
    return any(a.address == ip for addrs in psutil.net_if_addrs().values() for a in addrs)


DEFAULT_DASHBOARD_PORT = 8265
DASHBOARD_PORT_RETRIES = 50


def dashboard_port(host, port):
    """The port the dashboard will listen on: an explicit port as given
    (in use, the dashboard says so in its log); without one, the first of
    8265 and the 50 after it that is free on `host`, as Ray does (a second
    local cluster gets the next port)."""
    if port is not None:
        return port
    import socket as _socket
    for candidate in range(DEFAULT_DASHBOARD_PORT,
                           DEFAULT_DASHBOARD_PORT + DASHBOARD_PORT_RETRIES + 1):
        try:
            family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
            with _socket.socket(family, _socket.SOCK_STREAM) as s:
                s.bind((host, candidate))
            return candidate
        except OSError:
            continue
    return DEFAULT_DASHBOARD_PORT       # all taken: the dashboard's log says so


def dashboard_available():
    """Whether the dashboard's dependencies (starlette, uvicorn) are
    installed; looked up, not imported."""
    from importlib.util import find_spec
    try:
        return all(find_spec(m) is not None for m in ("starlette", "uvicorn"))
    except (ImportError, ValueError):        # a module set to None in sys.modules
        return False


def detect_num_gpus():
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return len([d for d in cvd.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def detect_accelerator_type():
    """The type of this machine's first NVIDIA GPU as Ray names it (the
    model after the vendor: "NVIDIA A100-SXM4-80GB" -> "A100"), or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        name = gpu_name_to_type(line)
        if name:
            return name
    return None


def gpu_name_to_type(name):
    """ "NVIDIA H100 80GB HBM3" -> "H100", "Tesla V100-SXM2-16GB" -> "V100"."""
    words = name.strip().split()
    if len(words) < 2:
        return None
    model = words[1].split("-")[0]
    return model if model and model.replace("_", "").isalnum() else None


class ProcessHandle:
    def __init__(self, name, popen, ready_r):
        self.name = name
        self.popen = popen
        self.ready_r = ready_r
        self.info = None


def _spawn(name, module, args, session_dir, env, die_with_parent, own_session=None):
    r, w = os.pipe()
    log = open(os.path.join(session_dir, "logs", f"{name}.log"), "ab")
    cmd = [sys.executable, "-m", module, "--ready-fd", str(w)] + args
    if die_with_parent:
        cmd.append("--die-with-parent")
    try:
        # cwd is the session dir: `python -m` puts the cwd first on sys.path, and
        # a source checkout there must not shadow the installed package
        p = subprocess.Popen(cmd, pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, env=env, close_fds=True,
                             cwd=session_dir,
                             start_new_session=(not die_with_parent if own_session is None
                                                else own_session))
    finally:
        os.close(w)
        log.close()
    return ProcessHandle(name, p, r)


def _wait_ready(handles, timeout, session_dir):
    deadline = time.monotonic() + timeout
    pending = {h.ready_r: h for h in handles}
    bufs = {fd: b"" for fd in pending}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            names = ", ".join(h.name for h in pending.values())
            raise TimeoutError(f"pyray: {names} did not start within {timeout}s; "
                               f"see the logs in {session_dir}/logs")
        r, _, _ = select.select(list(pending), [], [], min(remaining, 0.5))
        for fd in r:
            chunk = os.read(fd, 65536)
            h = pending[fd]
            if not chunk:
                os.close(fd)
                del pending[fd]
                code = h.popen.poll()
                log_path = os.path.join(session_dir, "logs", f"{h.name}.log")
                tail = ""
                try:
                    with open(log_path, "rb") as f:
                        tail = f.read()[-2000:].decode(errors="replace")
                except OSError:
                    pass
                raise RuntimeError(f"pyray: the {h.name} process exited during start "
                                   f"(code {code}). Its log ({log_path}) ends with:\n{tail}")
            bufs[fd] += chunk
            if b"\n" in bufs[fd]:
                h.info = json.loads(bufs[fd].split(b"\n", 1)[0])
                os.close(fd)
                del pending[fd]


class LocalCluster:
    """GCS + one raylet started by this process."""

    def __init__(self, *, num_cpus, num_gpus, resources, object_store_memory, config,
                 die_with_parent=True, head=True, gcs_address=None, session_dir=None,
                 node_ip="127.0.0.1", gcs_listen=None, raylet_name="raylet",
                 while_starting=None, token=None, tcp=False, gcs_bind=None, memory=None,
                 own_session=None, labels=None, metrics_export_port=None):
        """`while_starting`, if given, is called once the processes are
        spawned and before waiting for them (the driver imports its own
        modules meanwhile).  `token`: the cluster token (docs/cluster.md,
        "Security"); a new GCS gets a new one unless given, a node joining
        one uses the token this process knows for it.  `tcp`: the node's
        processes listen on tcp at `node_ip` (nodes on other machines reach
        them) instead of ipc sockets in the session directory.  `memory`: the
        node's ``memory`` resource in bytes (default_memory() if None).
        `own_session`: start the processes in a session of their own, so a
        terminal's Ctrl-C reaches only this process (default: when they do
        not die with it; `pyray start --block` wants both).
        `metrics_export_port`: the node serves Prometheus metrics on this
        port (0: one the system picks; None: none, docs/metrics.md)."""
        self.config = config
        self.session_dir = session_dir or new_session_dir()
        env = dict(os.environ)
        env.update(config.to_env())
        env["PYTHONUNBUFFERED"] = "1"
        self.procs = []
        self.gcs = None
        self.dashboard = None
        self.gcs_address = gcs_address or gcs_listen or f"ipc://{self.session_dir}/sockets/gcs"
        if gcs_address is None:
            token = token or secrets.token_hex(16)
            write_private(os.path.join(self.session_dir, "token"), token + "\n")
        else:
            token = token or (transport.key_for(gcs_address) or b"").decode()
        self.token = token or None
        if token:
            transport.set_token(self.gcs_address, token)
            env["PYRAY_TOKEN"] = token
        # the GCS keeps its tables here; start_gcs() starts it again on them
        self.gcs_storage = os.path.join(self.session_dir, "gcs", "state.db")
        self._gcs_start = (["--address", self.gcs_address, "--storage", self.gcs_storage]
                           + (["--listen", gcs_bind] if gcs_bind else []), env, die_with_parent)
        self._own_session = own_session
        try:
            if gcs_address is None:
                self.start_gcs(wait=False)
            args = ["--session-dir", self.session_dir, "--gcs-address", self.gcs_address,
                    "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus),
                    "--object-store-memory", str(int(object_store_memory)),
                    "--memory", str(int(default_memory(object_store_memory) if memory is None
                                        else memory)),
                    "--resources", json.dumps(resources or {}), "--node-ip", node_ip,
                    "--labels", json.dumps(labels or {})]
            if head:
                args.append("--head")
            if tcp:
                args.append("--tcp")
            if metrics_export_port is not None:
                args += ["--metrics-export-port", str(int(metrics_export_port))]
            self.raylet = _spawn(raylet_name, "pyray.raylet.raylet", args, self.session_dir, env,
                                 die_with_parent, own_session)
            self.procs.append(self.raylet)
            if while_starting is not None:
                while_starting()
            _wait_ready(self.procs, config.start_timeout_s, self.session_dir)
        except BaseException:
            self.stop(remove_session=True)
            raise
        info = self.raylet.info
        self.node = {"node_id": bytes.fromhex(info["node_id"]), "raylet_addr": info["raylet_addr"],
                     "gcs_addr": self.gcs_address, "store_name": info["store_name"],
                     "session_dir": self.session_dir, "om_addr": info.get("om_addr"),
                     "node_ip": node_ip, "tcp": tcp,
                     "metrics_export_port": info.get("metrics_export_port")}

    def start_dashboard(self, host, port):
        """Starts the dashboard process (pyray/dashboard/server.py) without
        waiting for it: it binds its port and serves on its own; a port in
        use is an error in its log (logs/dashboard.log), and the cluster
        runs on without it.  It stops with the cluster (stop()), and by
        itself when this node's raylet is gone."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.token:
            env["PYRAY_TOKEN"] = self.token
        with open(os.path.join(self.session_dir, "logs", "dashboard.log"), "ab") as log:
            self.dashboard = subprocess.Popen(
                [sys.executable, "-m", "pyray.dashboard.server", "--gcs-address",
                 self.gcs_address, "--host", host, "--port", str(int(port)), "--session-dir",
                 self.session_dir, "--watch-pid", str(self.raylet.popen.pid)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                close_fds=True, cwd=self.session_dir, start_new_session=True)
        return self.dashboard

    def start_gcs(self, wait=True):
        """Starts this node's GCS (again after kill_gcs(): it reloads its
        tables from gcs_storage and the raylets register again)."""
        args, env, die_with_parent = self._gcs_start
        old = self.gcs
        self.gcs = _spawn("gcs", "pyray.gcs.server", args, self.session_dir, env,
                          die_with_parent, self._own_session)
        self.procs = [self.gcs] + [h for h in self.procs if h is not old]
        if wait:
            _wait_ready([self.gcs], self.config.start_timeout_s, self.session_dir)

    def kill_gcs(self, sig=signal.SIGKILL):
        """Kills this node's GCS and waits until it has exited."""
        p = self.gcs.popen
        if p.poll() is None:
            p.send_signal(sig)
        p.wait(self.config.stop_timeout_s)

    def stop(self, remove_session=True, timeout=None):
        timeout = self.config.stop_timeout_s if timeout is None else timeout
        popens = [h.popen for h in self.procs]
        if self.dashboard is not None:
            self.dashboard.terminate()
            popens.append(self.dashboard)
        # a SHUTDOWN message may already be on its way: give it a moment
        wait_exit(popens, 0.5)
        stop_processes(popens, signal.SIGTERM, timeout)
        if remove_session:
            shutil.rmtree(self.session_dir, ignore_errors=True)
