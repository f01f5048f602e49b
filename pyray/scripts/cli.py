"""The `pyray` command line."""
from __future__ import annotations

import argparse
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
    import os

    from pyray._private import node as node_mod
    from pyray._private.config import Config
    if not args.head:
        if not args.address:
            sys.exit("pyray start: pass --head to start a cluster, or --address HOST:PORT "
                     "to add a node to one.")
        return _join(args)
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
    config = Config.from_env()
    options = _node_options(args, config)
    ip = options["node_ip"]
    # the GCS listens on every interface; the node's other processes on its address
    cluster = node_mod.LocalCluster(**options, config=config, die_with_parent=False,
                                    gcs_listen=f"tcp://{ip}:{args.port}", tcp=True,
                                    gcs_bind=f"tcp://0.0.0.0:{args.port}")
    bootstrap.record_current_cluster(cluster.gcs_address, cluster.token)
    address = f"{ip}:{args.port}"
    print(f"pyray runtime started (session {cluster.session_dir}).\n"
          f"  GCS address: {cluster.gcs_address}\n"
          f"  Only peers holding the cluster token may join (docs/cluster.md, Security).\n"
          f"  To add a node: pyray start --address {address} --token {cluster.token}\n"
          f"  To connect from Python: pyray.init(address='{address}', "
          f"_token='{cluster.token}')\n"
          f"    (or set PYRAY_TOKEN; on this machine pyray.init(address='auto') needs neither)\n"
          f"  To stop it: pyray stop --address {address}")


def _node_options(args, config):
    import json
    import os

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
    return {"num_cpus": num_cpus, "num_gpus": num_gpus, "resources": resources,
            "object_store_memory": osm, "node_ip": ip, "memory": args.memory}


def _join(args):
    """pyray start --address: a raylet on this machine joins a running GCS."""
    from pyray._private import bootstrap
    from pyray._private import node as node_mod
    from pyray._private.config import Config
    from pyray._private.protocol import Op
    config = Config.from_env()
    options = _node_options(args, config)
    try:
        gcs = bootstrap.gcs_address_of(args.address)
        bootstrap.use_token(gcs, args.token)
        bootstrap.request(gcs, Op.GET_NODES, timeout=5.0)
    except (ConnectionError, ValueError) as err:
        sys.exit(f"pyray start: {err}")
    node = node_mod.LocalCluster(**options, config=config, die_with_parent=False, head=False,
                                 gcs_address=gcs, tcp=True)
    # pyray.init(address="auto") on this machine finds the cluster, as on the head
    bootstrap.record_current_cluster(gcs, node.token or "")
    print(f"pyray node {node.node['node_id'].hex()} joined the cluster at {gcs} "
          f"(session {node.session_dir}).\n"
          f"  To see the cluster: pyray status --address {args.address}\n"
          f"  To connect from Python on this machine: pyray.init(address='auto')\n"
          f"  To stop this machine's pyray processes: pyray stop")


def _stop_cluster(args):
    """pyray stop --address: only the GCS and raylets of that cluster."""
    import os
    import shutil
    import signal

    import psutil

    from pyray._private import bootstrap
    from pyray._private import node as node_mod
    from pyray._private.procs import stop_processes
    try:
        gcs = bootstrap.gcs_address_of(args.address)
    except ValueError as err:
        sys.exit(f"pyray stop: {err}")
    procs, sessions = [], set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if ("pyray.gcs.server" in cmd or "pyray.raylet.raylet" in cmd) and \
                any(bootstrap.same_gcs(a, gcs) for a in cmd):
            procs.append(p)
            if "--session-dir" in cmd:
                sessions.add(cmd[cmd.index("--session-dir") + 1])
    stop_processes(procs, signal.SIGTERM, timeout=args.grace)
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
    import os
    import shutil
    import signal

    import psutil

    from pyray._private import node as node_mod
    from pyray._private.procs import stop_processes
    if args.address:
        return _stop_cluster(args)
    mine = []
    for p in psutil.process_iter(["pid", "cmdline", "uids"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if ("pyray.raylet.raylet" in cmd or "pyray.gcs.server" in cmd) and \
                p.info["uids"] and p.info["uids"].real == os.getuid() and p.pid != os.getpid():
            mine.append(p)
    stop_processes(mine, signal.SIGTERM, timeout=args.grace)
    try:
        os.remove(node_mod.CURRENT_CLUSTER_FILE)
    except OSError:
        pass
    root = node_mod.SESSION_ROOT
    if os.path.isdir(root):
        for name in os.listdir(root):
            if name.startswith("session_"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    print(f"Stopped {len(mine)} pyray process(es).")


def status(args):
    from pyray._private import bootstrap
    from pyray._private.protocol import Op
    try:
        gcs = bootstrap.gcs_address_of(args.address)
        bootstrap.use_token(gcs, args.token)
        nodes = bootstrap.request(gcs, Op.GET_NODES, timeout=3.0)
    except (ConnectionError, ValueError) as err:
        sys.exit(f"pyray status: {err}")
    print(f"Cluster at {gcs}: {sum(1 for n in nodes if n.get('alive'))} live node(s)")
    for n in nodes:
        state = "ALIVE" if n.get("alive") else "DEAD"
        print(f"\nnode {n['node_id'].hex()} {state}{' (head)' if n.get('head') else ''}")
        total, avail = n.get("resources", {}), n.get("available", {})
        for k in sorted(total):
            if k.startswith("node:"):
                continue
            used = total[k] - avail.get(k, 0.0)
            if k in ("memory", "object_store_memory"):
                print(f"  {k:<22} {used / 2**30:8.2f} / {total[k] / 2**30:.2f} GiB")
            else:
                print(f"  {k:<22} {used:8.1f} / {total[k]:.1f}")
        if n.get("alive"):
            try:
                info = bootstrap.request(n["raylet_addr"], Op.RAYLET_INFO, timeout=3.0)
                st = info["store"]
                print(f"  object store: {st.get('used', 0) / 2**20:.1f} MiB used of "
                      f"{st.get('capacity', 0) / 2**20:.1f} MiB, {st.get('num_objects', 0)} "
                      f"objects, {st.get('spilled_objects', 0)} spilled; "
                      f"{info['num_workers']} workers")
            except ConnectionError:
                print("  (raylet did not answer)")


_TOKEN_HELP = ("the cluster token `pyray start --head` printed (default: the one it recorded "
               "on this machine for that address, else $PYRAY_TOKEN)")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pyray", description="pyray command line")
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
    st.add_argument("--object-store-memory", type=int, default=None)
    st.add_argument("--memory", type=int, default=None,
                    help="the node's memory resource in bytes (default: the memory "
                         "available less the object store's)")
    st.add_argument("--token", default=None, help=_TOKEN_HELP)
    st.set_defaults(fn=start)
    sp = sub.add_parser("stop", help="stop this machine's pyray processes")
    sp.add_argument("--grace", type=float, default=5.0)
    sp.add_argument("--address", default=None,
                    help="only the processes of the cluster at this address")
    sp.set_defaults(fn=stop)
    ss = sub.add_parser("status", help="nodes, resources and store usage")
    ss.add_argument("--address", default="auto")
    ss.add_argument("--token", default=None, help=_TOKEN_HELP)
    ss.set_defaults(fn=status)
    mb = sub.add_parser("microbenchmark", help="run the core microbenchmarks")
    mb.add_argument("--num-cpus", type=int, default=2)
    mb.add_argument("--seconds", type=float, default=1.0)
    mb.set_defaults(fn=microbenchmark)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
