"""The `pyray` command line."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time


def _timeit(name, fn, multiplier=1, seconds=1.0):
    # warm up, then count calls for `seconds`
    end = time.perf_counter() + min(0.2, seconds / 4)
    while time.perf_counter() < end:
        fn()
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        el = time.perf_counter() - start
        if el >= seconds:
            break
    rate = calls * multiplier / el
    print(f"{name:<45} {rate:>12.1f} per second", flush=True)
    return rate


def microbenchmark(args):
    """The metrics of Ray's `ray microbenchmark`, for what pyray has."""
    import numpy as np

    import pyray as ray

    ray.init(num_cpus=args.num_cpus)
    s = args.seconds

    @ray.remote
    def small_value():
        return b"ok"

    @ray.remote
    def make_refs(n):
        return [ray.put(1) for _ in range(n)]

    @ray.remote(num_cpus=0)
    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_batch(self, n):
            ray.get([small_value.remote() for _ in range(n)])

    @ray.remote(num_cpus=0)
    class AsyncActor:
        async def small_value(self):
            return b"ok"

    @ray.remote(num_cpus=0)
    class Client:
        def __init__(self, servers):
            self.servers = servers if isinstance(servers, list) else [servers]

        def call(self, n):
            ray.get([s.small_value.remote() for s in self.servers for _ in range(n)])

    value = ray.put(0)
    _timeit("single client get calls", lambda: ray.get(value), seconds=s)
    _timeit("single client put calls", lambda: ray.put(0), seconds=s)
    arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)
    _timeit("single client put gigabytes", lambda: ray.put(arr), 8 * 0.1, seconds=s)
    del arr
    holder = make_refs.remote(10000)
    ray.get(holder)
    _timeit("single client get object containing 10k refs", lambda: ray.get(holder), seconds=s)

    def wait_1k():
        pending = [small_value.remote() for _ in range(1000)]
        while pending:
            _, pending = ray.wait(pending)
    _timeit("single client wait 1k refs", wait_1k, seconds=s)
    _timeit("single client tasks sync", lambda: ray.get(small_value.remote()), seconds=s)
    _timeit("single client tasks async",
            lambda: ray.get([small_value.remote() for _ in range(1000)]), 1000, seconds=s)
    a = Actor.remote()
    _timeit("1:1 actor calls sync", lambda: ray.get(a.small_value.remote()), seconds=s)
    _timeit("1:1 actor calls async",
            lambda: ray.get([a.small_value.remote() for _ in range(1000)]), 1000, seconds=s)
    a = Actor.options(max_concurrency=16).remote()
    _timeit("1:1 actor calls concurrent",
            lambda: ray.get([a.small_value.remote() for _ in range(1000)]), 1000, seconds=s)
    n = args.num_cpus
    servers = [Actor.remote() for _ in range(n)]
    _timeit("1:n actor calls async",
            lambda: ray.get([s_.small_value.remote() for s_ in servers for _ in range(500)]),
            500 * n, seconds=s)
    clients = [Client.remote(Actor.remote()) for _ in range(n)]
    _timeit("n:n actor calls async", lambda: ray.get([c.call.remote(500) for c in clients]),
            500 * n, seconds=s)
    aa = AsyncActor.remote()
    _timeit("1:1 async-actor calls async",
            lambda: ray.get([aa.small_value.remote() for _ in range(1000)]), 1000, seconds=s)
    ray.shutdown()


def start(args):
    from pyray._private import node as node_mod
    config = _start_config(args)
    if not args.head and not args.address:
        sys.exit("pyray start: pass --head to start a cluster, or --address HOST:PORT "
                 "to add a node to one.")
    args.dashboard = _dashboard_choice(args)
    if not args.head:
        if args.ray_client_server_port is not None:
            print("pyray start: note: --ray-client-server-port is ignored: only the head "
                  "runs the client server.", file=sys.stderr)
        return _join(args, config)
    from pyray._private import bootstrap
    if os.path.exists(node_mod.CURRENT_CLUSTER_FILE):
        try:
            addr = bootstrap.gcs_address_of("auto")
            bootstrap.use_token(addr)
            bootstrap.request(addr, 62, timeout=1.0)
            sys.exit(f"pyray start: a cluster is already running here at {addr}; "
                     "stop it first with `pyray stop`.")
        except ConnectionError:
            pass
    options = _node_options(args, config)
    ip = options["node_ip"]
    # the GCS listens on every interface; the node's other processes on its address
    cluster = node_mod.LocalCluster(**options, config=config, die_with_parent=args.block,
                                    own_session=True, gcs_listen=f"tcp://{ip}:{args.port}",
                                    tcp=True, gcs_bind=f"tcp://0.0.0.0:{args.port}",
                                    session_dir=_session_dir(args))
    os.makedirs(os.path.dirname(node_mod.CURRENT_CLUSTER_FILE), exist_ok=True)  # --temp-dir
    bootstrap.record_current_cluster(cluster.gcs_address, cluster.token)
    address = f"{ip}:{args.port}"
    print(f"pyray runtime started (session {cluster.session_dir}).\n"
          f"  GCS address: {cluster.gcs_address}\n"
          f"  Only peers holding the cluster token may join (docs/cluster.md, Security).\n"
          f"  To add a node: pyray start --address {address} --token {cluster.token}\n"
          f"  To connect from Python: pyray.init(address='{address}', "
          f"_token='{cluster.token}')\n"
          f"    (or set PYRAY_TOKEN; on this machine pyray.init(address='auto') needs neither)\n"
          f"  To stop it: pyray stop --address {address}"
          + ("\n  --block: this command runs until the node's processes exit, or until "
             "Ctrl-C / SIGTERM stops them." if args.block else ""), flush=True)
    if args.ray_client_server_port is not None:
        _start_client_server(cluster, args.ray_client_server_port, ip)
    _start_dashboard(args, cluster)
    if args.block:
        return _block(cluster, cluster.gcs_address)


def _dashboard_choice(args):
    """--include-dashboard / --dashboard-host / --dashboard-port: (host,
    port) of the dashboard to start, or None (docs/dashboard.md)."""
    from pyray._private import node as node_mod
    flag = args.include_dashboard
    if flag is not None and flag.strip().lower() not in ("true", "1", "yes", "on", "false",
                                                         "0", "no", "off"):
        sys.exit(f"pyray start: --include-dashboard takes true or false, got {flag!r}")
    wanted = None if flag is None else flag.strip().lower() in ("true", "1", "yes", "on")
    if not args.head:
        if wanted or args.dashboard_host or args.dashboard_port:
            sys.exit("pyray start: the dashboard runs on the head node; --include-dashboard, "
                     "--dashboard-host and --dashboard-port go with --head")
        return None
    if wanted is False:
        for flag in ("--dashboard-host", "--dashboard-port"):
            if getattr(args, _flag_dest(flag)) is not None:
                print(f"pyray start: note: {flag} is ignored: --include-dashboard is false.",
                      file=sys.stderr)
        return None
    if not node_mod.dashboard_available():
        if wanted:
            sys.exit("pyray start: --include-dashboard true needs starlette and uvicorn: "
                     "pip install 'pyray[dashboard]'")
        print("pyray start: note: the dashboard is not started: starlette and uvicorn are "
              "not installed (pip install 'pyray[dashboard]').", file=sys.stderr)
        return None
    port = args.dashboard_port
    if port is not None and not 0 < port < 65536:
        sys.exit(f"pyray start: --dashboard-port must be 1-65535, got {port}")
    host = args.dashboard_host or "127.0.0.1"
    return host, node_mod.dashboard_port(host, port)


def _start_dashboard(args, cluster):
    choice = args.dashboard
    if choice is None:
        return
    cluster.start_dashboard(*choice)
    host, port = choice
    print(f"  Dashboard: http://{host}:{port} (log: {cluster.session_dir}/logs/dashboard.log)"
          f"\n  To submit a job: pyray job submit --address http://{host}:{port} -- python "
          "script.py", flush=True)


def _start_client_server(cluster, port, ip):
    """--ray-client-server-port: the client server (docs/client.md), a driver
    of this cluster that remote clients reach at pyray://HOST:PORT.  It stops
    by itself when the head's raylet is gone (`pyray stop`)."""
    import subprocess
    logs = os.path.join(cluster.session_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    log_path = os.path.join(logs, "client_server.log")
    env = dict(os.environ, PYRAY_TOKEN=cluster.token)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyray._private.client.server", "--address",
             cluster.gcs_address, "--port", str(port), "--watch-pid",
             str(cluster.raylet.popen.pid)],
            env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            if b"pyray client server listening" in f.read():
                print(f"  Ray Client: pyray.init('pyray://{ip}:{port}', "
                      f"_token='{cluster.token}') from any machine (or ray://)", flush=True)
                return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    with open(log_path, "rb") as f:
        tail = f.read()[-2000:].decode(errors="replace")
    cluster.stop(remove_session=True)
    sys.exit(f"pyray start: the client server on port {port} did not start:\n{tail}")


def _session_dir(args):
    """The node's session directory: under --temp-dir if given."""
    from pyray._private import node as node_mod
    if not args.temp_dir:
        return None
    try:
        return node_mod.new_session_dir(os.path.abspath(args.temp_dir))
    except OSError as err:
        sys.exit(f"pyray start: --temp-dir {args.temp_dir}: {err}")


def _block(cluster, gcs):
    """pyray start --block: stays in the foreground until one of the node's
    processes exits (the others are then stopped: exit code 1) or SIGINT /
    SIGTERM arrives (all are stopped: exit code 0), as `ray start --block`."""
    import signal

    from pyray._private import bootstrap
    from pyray._private import node as node_mod
    got = []

    def on_signal(signum, _frame):
        got.append(signum)
    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        dead = []
        while not got and not dead:
            time.sleep(0.1)
            dead = [h for h in cluster.procs if h.popen.poll() is not None]
        if got:
            print(f"pyray: {signal.Signals(got[0]).name} received; stopping this node.",
                  flush=True)
        for h in dead:
            print(f"pyray: the {h.name} process exited (code {h.popen.returncode}); "
                  "stopping the others.", file=sys.stderr, flush=True)
        cluster.stop(remove_session=True)
        rec = bootstrap.current_cluster()
        if rec and bootstrap.same_gcs(rec[0], gcs):
            try:
                os.remove(node_mod.CURRENT_CLUSTER_FILE)
            except OSError:
                pass
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 1 if dead and not got else 0


# Ray's `ray start` flags pyray has no counterpart for, and why: each gives
# one clear line and exit code 2 (never a usage dump)
_UNSUPPORTED = {
    "--plasma-directory": "the object store is an anonymous memory file (memfd), never a "
                          "file in a directory; size it with --object-store-memory",
    "--storage": "there is no cluster storage URI; write results to a path or a bucket "
                 "from the tasks themselves",
    "--node-manager-port": "a node's raylet listens on a port the kernel picks "
                           "(docs/cluster.md); only the GCS port (--port) is fixed",
    "--object-manager-port": "a node's object manager listens on a port the kernel picks "
                             "(docs/cluster.md); only the GCS port (--port) is fixed",
    "--min-worker-port": "workers listen on ports the kernel picks (docs/cluster.md); "
                         "only the GCS port (--port) is fixed",
    "--max-worker-port": "workers listen on ports the kernel picks (docs/cluster.md); "
                         "only the GCS port (--port) is fixed",
    "--worker-port-list": "workers listen on ports the kernel picks (docs/cluster.md); "
                          "only the GCS port (--port) is fixed",
}

# Ray's flags for processes pyray does not run: accepted, a note says so
_IGNORED = {
    "--dashboard-agent-listen-port": "pyray has no dashboard agent",
    "--dashboard-agent-grpc-port": "pyray has no dashboard agent",
    "--runtime-env-agent-port": "pyray runs no runtime-env agent process",
}


def _flag_dest(flag):
    return flag.lstrip("-").replace("-", "_")


def _unsupported(flag, why):
    print(f"pyray start: pyray does not support {flag}: {why}.", file=sys.stderr)
    sys.exit(2)


def _start_config(args):
    """The node's Config: the environment (PYRAY_*, and Ray's RAY_* names
    where they mean the same), then --system-config, then the flags.  Ray's
    flags pyray has no counterpart for stop here (exit code 2)."""
    import json

    from pyray._private.config import Config
    for flag, why in _UNSUPPORTED.items():
        if getattr(args, _flag_dest(flag)) is not None:
            _unsupported(flag, why)
    for flag, why in _IGNORED.items():
        if getattr(args, _flag_dest(flag)) is not None:
            print(f"pyray start: note: {flag} is ignored: {why}.", file=sys.stderr)
    overrides = {}
    if args.system_config:
        try:
            system = json.loads(args.system_config)
        except ValueError as err:
            sys.exit(f"pyray start: --system-config must be a JSON object: {err}")
        if not isinstance(system, dict):
            sys.exit("pyray start: --system-config must be a JSON object, e.g. "
                     "'{\"memory_usage_threshold\": 0.9}'")
        known = {f for f in Config.__dataclass_fields__}
        for key, value in system.items():
            if key == "object_spilling_config":
                overrides["object_spilling_directory"] = _spill_dir_of(value)
            elif key in known:
                overrides[key] = _system_value(Config, key, value)
            else:
                _unsupported(f"--system-config key {key!r}", "the keys pyray has are "
                             + ", ".join(sorted(known)) + " (and object_spilling_config of "
                             "type filesystem)")
    if args.object_spilling_directory:
        overrides["object_spilling_directory"] = os.path.abspath(args.object_spilling_directory)
    try:
        config = Config.from_env(**overrides)
    except (TypeError, ValueError) as err:
        sys.exit(f"pyray start: {err}")
    if not 0.0 <= float(config.memory_usage_threshold) <= 1.0:
        sys.exit(f"pyray start: memory_usage_threshold must be between 0 and 1, got "
                 f"{config.memory_usage_threshold}")
    if config.object_spilling_directory:
        try:
            os.makedirs(config.object_spilling_directory, exist_ok=True)
        except OSError as err:
            sys.exit(f"pyray start: the spill directory: {err}")
    if args.verbose:
        print(f"pyray start: config {config}", file=sys.stderr)
    return config


def _system_value(config_cls, key, value):
    """A --system-config value as the field's type (JSON may give "0.9")."""
    from pyray._private.config import _parse
    if isinstance(value, str):
        try:
            return _parse(config_cls.__dataclass_fields__[key].type, value, key)
        except ValueError as err:
            sys.exit(f"pyray start: --system-config {key}: {err}")
    return value


def _spill_dir_of(value):
    """The directory of Ray's object_spilling_config (a JSON string or an
    object) when its type is filesystem."""
    import json
    try:
        spec = json.loads(value) if isinstance(value, str) else value
        params = spec.get("params", {}) if spec.get("type") == "filesystem" else None
        path = params.get("directory_path") if params is not None else None
    except (ValueError, AttributeError):
        path = None
    if isinstance(path, list) and path:
        path = path[0]
    if not isinstance(path, str) or not path:
        _unsupported("this object_spilling_config", "objects spill to a local directory only: "
                     "'{\"type\": \"filesystem\", \"params\": {\"directory_path\": "
                     "\"/path\"}}' or --object-spilling-directory")
    return os.path.abspath(path)


def _node_options(args, config):
    import json

    from pyray._private import node as node_mod
    try:
        resources = json.loads(args.resources) if args.resources else {}
    except ValueError as err:
        sys.exit(f"pyray start: --resources must be a JSON object: {err}")
    if not isinstance(resources, dict):
        sys.exit("pyray start: --resources must be a JSON object, e.g. '{\"custom\": 4}'")
    num_cpus = args.num_cpus if args.num_cpus is not None else (os.cpu_count() or 1)
    num_gpus = args.num_gpus if args.num_gpus is not None else node_mod.detect_num_gpus()
    osm = args.object_store_memory or node_mod.default_object_store_memory(
        config.object_store_fraction)
    ip = args.node_ip_address
    if not ip:
        # the address other nodes reach this one at: on the route to the head
        # (a node joining) or the route out of the machine (the head)
        host = (args.address.split("://")[-1].rpartition(":")[0].strip("[]")
                if args.address and not args.head else None)
        if host == "auto":
            host = None
        ip = node_mod.local_ip_for(host)
    elif not node_mod.is_local_ip(ip):
        sys.exit(f"pyray start: --node-ip-address {ip} is not an address of this machine.")
    if "memory" in resources:
        sys.exit("pyray start: use --memory, not --resources '{\"memory\": ...}'")
    if args.memory is not None and args.memory < 0:
        sys.exit(f"pyray start: --memory must be >= 0, got {args.memory}")
    from pyray._private.scheduling_strategies import parse_labels
    try:
        labels = parse_labels(args.labels, "--labels")
        if args.labels_file:
            labels = {**_labels_file(args.labels_file), **labels}
    except ValueError as err:
        sys.exit(f"pyray start: {err}")
    return {"num_cpus": num_cpus, "num_gpus": num_gpus, "resources": resources,
            "object_store_memory": osm, "node_ip": ip, "memory": args.memory,
            "labels": labels,
            "metrics_export_port": _metrics_port(args.metrics_export_port)}


def _labels_file(path):
    """--labels-file: a YAML mapping of label -> value, one `key: value` a
    line (the flat form Ray documents)."""
    from pyray._private.scheduling_strategies import parse_labels
    try:
        with open(path) as f:
            text = f.read()
    except OSError as err:
        raise ValueError(f"--labels-file: cannot read {path}: {err}") from None
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        k, sep, v = line.partition(":")
        if not sep:
            raise ValueError(f"--labels-file {path} line {n}: expected `key: value`")
        out[k.strip().strip("'\"")] = v.strip().strip("'\"")
    return parse_labels(out, f"--labels-file {path}")


def _metrics_port(port):
    """--metrics-export-port, checked before anything starts."""
    if port is None:
        return None
    if not 0 <= port <= 65535:
        sys.exit(f"pyray start: --metrics-export-port must be a port number (0-65535), "
                 f"got {port}")
    from pyray._private.metrics import require_exporter
    try:
        require_exporter()
    except ImportError as err:
        sys.exit(f"pyray start: {err}")
    return port


def _join(args, config):
    """pyray start --address: a raylet on this machine joins a running GCS."""
    from pyray._private import bootstrap
    from pyray._private import node as node_mod
    from pyray._private.protocol import Op
    options = _node_options(args, config)
    try:
        gcs = bootstrap.gcs_address_of(args.address)
        bootstrap.use_token(gcs, args.token)
        bootstrap.request(gcs, Op.GET_NODES, timeout=5.0)
    except (ConnectionError, ValueError) as err:
        sys.exit(f"pyray start: {err}")
    node = node_mod.LocalCluster(**options, config=config, die_with_parent=args.block,
                                 own_session=True, head=False, gcs_address=gcs, tcp=True,
                                 session_dir=_session_dir(args))
    # pyray.init(address="auto") on this machine finds the cluster, as on the head
    os.makedirs(os.path.dirname(node_mod.CURRENT_CLUSTER_FILE), exist_ok=True)  # --temp-dir
    bootstrap.record_current_cluster(gcs, node.token or "")
    print(f"pyray node {node.node['node_id'].hex()} joined the cluster at {gcs} "
          f"(session {node.session_dir}).\n"
          f"  To see the cluster: pyray status --address {args.address}\n"
          f"  To connect from Python on this machine: pyray.init(address='auto')\n"
          f"  To stop this machine's pyray processes: pyray stop", flush=True)
    if args.block:
        return _block(node, gcs)


def _stop_cluster(args):
    """pyray stop --address: only the GCS and raylets of that cluster."""
    import shutil

    import psutil

    from pyray._private import bootstrap
    from pyray._private import node as node_mod
    try:
        gcs = bootstrap.gcs_address_of(args.address)
    except ValueError as err:
        sys.exit(f"pyray stop: {err}")
    procs, sessions = [], set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if ("pyray.gcs.server" in cmd or "pyray.raylet.raylet" in cmd
                or "pyray.dashboard.server" in cmd) and \
                any(bootstrap.same_gcs(a, gcs) for a in cmd):
            procs.append(p)
            if "--session-dir" in cmd:
                sessions.add(cmd[cmd.index("--session-dir") + 1])
    _stop_them(procs, args)
    for path in sessions:
        if os.path.basename(path).startswith("session_"):
            shutil.rmtree(path, ignore_errors=True)
    rec = bootstrap.current_cluster()
    if rec and bootstrap.same_gcs(rec[0], gcs):
        try:
            os.remove(node_mod.CURRENT_CLUSTER_FILE)
        except OSError:
            pass
    print(f"Stopped {len(procs)} pyray process(es) of the cluster at {gcs}.")


def stop(args):
    import shutil

    import psutil

    from pyray._private import node as node_mod
    if args.address:
        return _stop_cluster(args)
    mine, sessions = [], set()
    for p in psutil.process_iter(["pid", "cmdline", "uids"]):
        argv = p.info.get("cmdline") or []
        cmd = " ".join(argv)
        if ("pyray.raylet.raylet" in cmd or "pyray.gcs.server" in cmd
                or "pyray.dashboard.server" in cmd) and \
                p.info["uids"] and p.info["uids"].real == os.getuid() and p.pid != os.getpid():
            mine.append(p)
            # a node started with --temp-dir keeps its session elsewhere
            if "--session-dir" in argv[:-1]:
                sessions.add(argv[argv.index("--session-dir") + 1])
    _stop_them(mine, args)
    try:
        os.remove(node_mod.CURRENT_CLUSTER_FILE)
    except OSError:
        pass
    root = node_mod.SESSION_ROOT
    if os.path.isdir(root):
        sessions.update(os.path.join(root, name) for name in os.listdir(root))
    for path in sessions:
        if os.path.basename(path).startswith("session_"):
            shutil.rmtree(path, ignore_errors=True)
    print(f"Stopped {len(mine)} pyray process(es).")


def _stop_them(procs, args):
    """SIGTERM, then SIGKILL after the grace period; --force: SIGKILL."""
    import signal

    from pyray._private.procs import stop_processes
    if args.verbose:
        for p in procs:
            try:
                print(f"  stopping {p.pid}: {' '.join(p.cmdline()[:4])}")
            except Exception:  # noqa: BLE001  (it may be gone already)
                pass
    if args.force:
        stop_processes(procs, signal.SIGKILL, timeout=5.0)
    else:
        stop_processes(procs, signal.SIGTERM, timeout=max(0.0, args.grace))


def status(args):
    from pyray._private import bootstrap
    from pyray._private.protocol import Op
    try:
        gcs = bootstrap.gcs_address_of(args.address)
        bootstrap.use_token(gcs, args.token)
        nodes = bootstrap.request(gcs, Op.GET_NODES, timeout=3.0)
    except (ConnectionError, ValueError) as err:
        sys.exit(f"pyray status: {err}")
    alive = [n for n in nodes if n.get("alive")]
    print(f"Cluster at {gcs}: {len(alive)} live node(s)")
    rule = "-" * 60
    print(f"\nNode status\n{rule}\nActive:")
    for n in alive:
        print(f" node {n['node_id'].hex()}{' (head)' if n.get('head') else ''} "
              f"{n.get('node_ip', '')}")
    dead = [n for n in nodes if not n.get("alive")]
    if dead:
        print("Dead:")
        for n in dead:
            print(f" node {n['node_id'].hex()} {n.get('node_ip', '')}")
    print(f"\nResources\n{rule}\nUsage:")
    totals, used = {}, {}
    for n in alive:
        total, avail = n.get("resources", {}), n.get("available", {})
        for k, v in total.items():
            if not k.startswith("node:"):
                totals[k] = totals.get(k, 0.0) + v
                used[k] = used.get(k, 0.0) + v - avail.get(k, 0.0)
    for k in sorted(totals):
        print(" " + _usage(k, used[k], totals[k]).strip())
    _dashboard_status(gcs)
    if args.verbose:
        print(f"\nNode details\n{rule}")
        for n in nodes:
            _node_detail(n)


def _dashboard_status(gcs):
    """pyray status: where the dashboard is, and whether it answers (it is
    not restarted if it dies; the cluster runs on without it)."""
    import json
    import urllib.error
    import urllib.request

    from pyray._private import bootstrap
    from pyray._private.protocol import Op
    from pyray.dashboard.server import NAMESPACE, RECORD_KEY
    from pyray.experimental.internal_kv import _key
    try:
        keys = bootstrap.request(gcs, Op.KV_KEYS, _key(RECORD_KEY, NAMESPACE), timeout=3.0)
        records = [bootstrap.request(gcs, Op.KV_GET, k, timeout=3.0) for k in sorted(keys)]
    except (ConnectionError, ValueError):
        return
    if not records:
        print("\nDashboard: not running (not started, or still starting)")
    for raw in records:
        if raw is None:
            continue
        rec = json.loads(raw)
        url = f"http://{rec['host']}:{rec['port']}"
        try:
            with urllib.request.urlopen(url + "/api/version", timeout=2.0) as r:
                up = r.status == 200
        except urllib.error.HTTPError:
            up = True           # it answers (with 401 where it wants the token)
        except OSError:
            up = False
        print(f"\nDashboard: {url} " + ("(answering)" if up else
              f"(NOT answering: its process {rec['pid']} is gone or stuck; see "
              "logs/dashboard.log in the head's session directory. The cluster runs on "
              "without it.)"))


def _usage(k, used, total):
    if k in ("memory", "object_store_memory"):
        return f"{used / 2**30:8.2f}/{total / 2**30:.2f} GiB {k}"
    return f"{used:8.1f}/{total:.1f} {k}"


def _node_detail(n):
    """pyray status -v: one node's resources, memory, store and workers."""
    from pyray._private import bootstrap
    from pyray._private.protocol import Op
    state = "ALIVE" if n.get("alive") else "DEAD"
    print(f"\nnode {n['node_id'].hex()} {state}{' (head)' if n.get('head') else ''}")
    print(f"  address {n.get('node_ip', '?')}, raylet {n.get('raylet_addr', '?')}")
    total, avail = n.get("resources", {}), n.get("available", {})
    for k in sorted(total):
        if k.startswith("node:"):
            continue
        used = total[k] - avail.get(k, 0.0)
        if k in ("memory", "object_store_memory"):
            print(f"  {k:<22} {used / 2**30:8.2f} / {total[k] / 2**30:.2f} GiB")
        else:
            print(f"  {k:<22} {used:8.1f} / {total[k]:.1f}")
    if not n.get("alive"):
        return
    try:
        info = bootstrap.request(n["raylet_addr"], Op.RAYLET_INFO, timeout=3.0)
    except ConnectionError:
        print("  (raylet did not answer)")
        return
    st = info["store"]
    print(f"  object store: {st.get('used', 0) / 2**20:.1f} MiB used of "
          f"{st.get('capacity', 0) / 2**20:.1f} MiB, {st.get('num_objects', 0)} "
          f"objects, {st.get('spilled_objects', 0)} spilled; "
          f"{info['num_workers']} workers")
    mem, threshold = info.get("memory_usage"), info.get("memory_usage_threshold")
    if mem:
        print(f"  host memory: {mem[0] / 2**30:.2f} / {mem[1] / 2**30:.2f} GiB in use "
              f"({mem[0] / mem[1]:.1%}); the memory monitor acts above "
              f"{threshold if threshold is not None else '?'}")
    session = info.get("node", {}).get("session_dir")
    if session:
        print(f"  session directory: {session}")


def _add_ray_start_flags(st):
    """The other flags of Ray's `ray start` that scripts pass."""
    st.add_argument("--block", action="store_true",
                    help="stay in the foreground until the node's processes exit, or until "
                         "Ctrl-C / SIGTERM, which stops them (exit code 1 when one exited "
                         "by itself)")
    st.add_argument("--temp-dir", default=None,
                    help="the root of the node's session directory (sockets, logs, spill "
                         "files); default $TMPDIR/pyray")
    st.add_argument("--object-spilling-directory", default=None,
                    help="where the node's store spills objects (default: the session "
                         "directory)")
    st.add_argument("--system-config", default=None,
                    help="JSON object of pyray config values (pyray/_private/config.py), "
                         "e.g. '{\"memory_usage_threshold\": 0.9}'; Ray's "
                         "object_spilling_config of type filesystem sets the spill directory")
    st.add_argument("--include-dashboard", default=None, metavar="BOOL",
                    help="on the head: start the dashboard (default: when starlette and "
                         "uvicorn are installed; true without them is an error)")
    st.add_argument("--dashboard-host", default=None,
                    help="the address the dashboard listens on (default 127.0.0.1; any "
                         "other address makes every request need the cluster token)")
    st.add_argument("--dashboard-port", type=int, default=None,
                    help="the dashboard's port (default 8265)")
    st.add_argument("--disable-usage-stats", action="store_true",
                    help="accepted; does nothing: pyray collects no usage statistics")
    st.add_argument("--verbose", action="store_true",
                    help="print the node's configuration")
    st.add_argument("--log-style", default=None, choices=("auto", "record", "pretty"),
                    help="accepted; pyray's output is plain text whatever the style")
    st.add_argument("--log-color", default=None, choices=("auto", "false", "true"),
                    help="accepted; pyray's output has no colours")
    st.add_argument("--ray-client-server-port", type=int, default=None, metavar="PORT",
                    help="on the head: start the client server on this port (clients "
                         "connect with pyray.init('pyray://HOST:PORT'); docs/client.md); "
                         "not started without it")
    st.add_argument("--metrics-export-port", type=int, default=None, metavar="PORT",
                    help="serve this node's Prometheus metrics at http://NODE_IP:PORT/metrics "
                         "(0: a port the system picks; docs/metrics.md); none without it. "
                         "Needs the prometheus-client package (pyray[metrics])")
    for flag, why in _IGNORED.items():
        st.add_argument(flag, default=None, metavar="VALUE", help=f"accepted and ignored: {why}")
    for flag, why in _UNSUPPORTED.items():
        st.add_argument(flag, default=None, metavar="VALUE",
                        help=f"Ray's flag; not supported (an error): {why}")


_TOKEN_HELP = ("the cluster token `pyray start --head` printed (default: the one it recorded "
               "on this machine for that address, else $PYRAY_TOKEN)")


def main(argv=None):
    from pyray._version import __version__
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:   # its own parser (pyray/serve/scripts.py), loaded only here
        return importlib.import_module("pyray.serve.scripts").main(argv[1:])
    ap = argparse.ArgumentParser(prog="pyray", description="pyray command line")
    ap.add_argument("--version", action="version", version=f"pyray, version {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start", help="start a cluster (--head) or add a node to one "
                                      "(--address HOST:PORT)")
    st.add_argument("--head", action="store_true")
    st.add_argument("--address", default=None)
    st.add_argument("--port", type=int, default=6379)
    st.add_argument("--node-ip-address", default=None,
                    help="the address other nodes reach this one at (default: this "
                         "machine's address on the route to the head, or out of the machine)")
    st.add_argument("--num-cpus", type=float, default=None)
    st.add_argument("--num-gpus", type=float, default=None)
    st.add_argument("--resources", default=None, help="JSON, e.g. '{\"custom\": 4}'")
    st.add_argument("--labels", default=None,
                    help="node labels: 'k1=v1,k2=v2' or a JSON object (docs/cluster.md)")
    st.add_argument("--labels-file", default=None,
                    help="a YAML file of `label: value` lines")
    st.add_argument("--object-store-memory", type=int, default=None)
    st.add_argument("--memory", type=int, default=None,
                    help="the node's memory resource in bytes (default: the memory "
                         "available less the object store's)")
    st.add_argument("--token", default=None, help=_TOKEN_HELP)
    _add_ray_start_flags(st)
    st.set_defaults(fn=start)
    sp = sub.add_parser("stop", help="stop this machine's pyray processes")
    sp.add_argument("--grace-period", "--grace", dest="grace", type=float, default=5.0,
                    help="seconds the processes get to stop after SIGTERM before they are "
                         "killed (SIGKILL); default 5")
    sp.add_argument("-f", "--force", action="store_true",
                    help="kill the processes at once (SIGKILL)")
    sp.add_argument("--address", default=None,
                    help="only the processes of the cluster at this address")
    sp.add_argument("-v", "--verbose", action="store_true", help="name each process stopped")
    sp.set_defaults(fn=stop)
    ss = sub.add_parser("status", help="nodes, resources and store usage")
    ss.add_argument("--address", default="auto")
    ss.add_argument("--token", default=None, help=_TOKEN_HELP)
    ss.add_argument("-v", "--verbose", action="store_true",
                    help="each node's resources, object store and workers")
    ss.set_defaults(fn=status)
    from pyray.job_submission.cli import add_parser as add_job_parser
    add_job_parser(sub)
    sub.add_parser("serve", help="run and manage Serve applications (run, deploy, status, "
                                 "shutdown; docs/serve.md)")
    mb = sub.add_parser("microbenchmark", help="run the core microbenchmarks")
    mb.add_argument("--num-cpus", type=int, default=2)
    mb.add_argument("--seconds", type=float, default=1.0)
    mb.set_defaults(fn=microbenchmark)
    from pyray.scripts import state_cli
    state_cli.register(sub)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
