"""Several nodes on one machine, as Ray's ``ray.cluster_utils.Cluster``.

    from pyray.cluster_utils import Cluster
    cluster = Cluster()
    cluster.add_node(num_cpus=2)                        # the head: GCS + raylet
    node = cluster.add_node(num_cpus=2, resources={"gpu_box": 1})
    cluster.wait_for_nodes()
    pyray.init(address=cluster.address)
    ...
    cluster.remove_node(node)                           # or allow_graceful=False: SIGKILL
    pyray.shutdown(); cluster.shutdown()

Every node is a real raylet process with its own object store and worker
pool, registered with the one GCS the head runs.  Each start is a handshake
(the process reports readiness down a pipe, then the GCS lists the node);
shutdown() leaves no process, socket or session directory behind.  The
processes die with the process that made the cluster.
"""
from __future__ import annotations

import atexit
import shutil
import signal
import socket
import time

from pyray._private import bootstrap
from pyray._private import node as node_mod
from pyray._private.config import Config
from pyray._private.procs import stop_processes
from pyray._private.protocol import Op

# Ray's defaults for nodes added by cluster_utils
_DEFAULTS = {"num_cpus": 1, "num_gpus": 0, "object_store_memory": 150 * 1024 * 1024}
# accepted for compatibility and ignored
_IGNORED = {"dashboard_port", "include_dashboard", "min_worker_port", "max_worker_port",
            "dashboard_agent_listen_port", "node_manager_port", "object_manager_port",
            "redis_port", "enable_object_reconstruction", "node_name", "env_vars",
            "ray_client_server_port", "runtime_env_agent_port"}


class ClusterNode:
    """A node of a Cluster: its raylet process (and, for the head, the GCS)."""

    def __init__(self, cluster, local, head, resources, object_store_memory):
        self._local = local
        self.node_id = local.node["node_id"].hex()
        self.unique_id = self.node_id
        self.is_head = head
        self.address = self.gcs_address = cluster.address
        self.node_ip_address = "127.0.0.1"
        self.raylet_socket_name = local.node["raylet_addr"]
        self.plasma_store_socket_name = local.node["store_name"]
        self.session_dir = local.session_dir
        self.resources = resources
        self.object_store_memory = object_store_memory

    @property
    def pid(self):
        """The raylet's process id."""
        return self._local.raylet.popen.pid

    def is_alive(self):
        return self._local.raylet.popen.poll() is None

    def kill_raylet(self, sig=signal.SIGKILL):
        """Kills the raylet (its workers die with it); the GCS notices the
        missed heartbeats and declares the node dead."""
        p = self._local.raylet.popen
        try:
            import psutil
            family = psutil.Process(p.pid).children(recursive=True)
        except Exception:  # noqa: BLE001 - already gone
            family = []
        if p.poll() is None:
            p.send_signal(sig)
        p.wait(10)
        # its zygote and workers follow it (parent-death signals): wait for
        # them, so that nothing of the node still answers when this returns
        if family:
            stop_processes(family, None, timeout=10)

    def kill_gcs_server(self):
        """SIGKILLs the GCS this head node runs (Ray's test utility of
        the same name).  The raylets, workers and drivers carry on."""
        if not self.is_head:
            raise ValueError(f"{self!r} runs no GCS: only the head node does")
        self._local.kill_gcs()

    def start_gcs_server(self):
        """Starts the GCS again on the same address; it reloads its tables
        and returns once it answers."""
        if not self.is_head:
            raise ValueError(f"{self!r} runs no GCS: only the head node does")
        self._local.start_gcs()

    def __repr__(self):
        return f"<ClusterNode {self.node_id[:12]}{' head' if self.is_head else ''}>"


class Cluster:
    def __init__(self, initialize_head=False, connect=False, head_node_args=None,
                 shutdown_at_exit=True):
        self.head_node = None
        self.worker_nodes = []
        self.session_dir = None
        self.address = self.gcs_address = None
        self.connected = False
        self._config = None
        self._removed = []          # ids of nodes taken out: wait_for_nodes expects them dead
        if connect and not initialize_head:
            raise ValueError("Cluster(connect=True) needs initialize_head=True.")
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()
        if shutdown_at_exit:
            atexit.register(self.shutdown)

    # ---- nodes ---------------------------------------------------------
    def add_node(self, wait=True, **node_args):
        """Starts a node (the first one is the head) and returns its handle."""
        args = _node_args(node_args, head=self.head_node is None)
        if self.head_node is None:
            self._config = Config.from_env(**(args.pop("_system_config") or {}))
            self.session_dir = node_mod.new_session_dir()
            port = _free_port()
            self.address = self.gcs_address = f"127.0.0.1:{port}"
            try:
                local = node_mod.LocalCluster(
                    config=self._config, session_dir=self.session_dir,
                    gcs_listen=f"tcp://127.0.0.1:{port}", raylet_name="raylet-head", **args)
            except BaseException:
                shutil.rmtree(self.session_dir, ignore_errors=True)
                self.session_dir = self.address = self.gcs_address = None
                raise
            node = self.head_node = ClusterNode(self, local, True, args["resources"],
                                                args["object_store_memory"])
        else:
            args.pop("_system_config", None)
            n = len(self.worker_nodes) + len(self._removed) + 1
            local = node_mod.LocalCluster(
                config=self._config, session_dir=self.session_dir, head=False,
                gcs_address=bootstrap.gcs_address_of(self.address),
                raylet_name=f"raylet-{n}", **args)
            node = ClusterNode(self, local, False, args["resources"],
                               args["object_store_memory"])
            self.worker_nodes.append(node)
        if wait:
            self._wait(lambda alive: node.node_id in alive, 30, f"node {node.node_id} to join")
        return node

    def remove_node(self, node, allow_graceful=True):
        """Stops a node: SIGTERM (the raylet leaves the cluster at once) or,
        with allow_graceful=False, SIGKILL (the GCS declares it dead when its
        heartbeats stop)."""
        if node is self.head_node:
            for other in list(self.worker_nodes):
                self.remove_node(other, allow_graceful)
            procs = self.head_node._local.procs
            self.head_node = None
        elif node in self.worker_nodes:
            self.worker_nodes.remove(node)
            procs = [node._local.raylet]
        else:
            raise ValueError(f"{node!r} is not a node of this cluster")
        self._removed.append(node.node_id)
        stop_processes([h.popen for h in procs],
                       signal.SIGTERM if allow_graceful else signal.SIGKILL,
                       self._config.stop_timeout_s)

    # ---- the GCS (docs/cluster.md, "GCS restart") ------------------------
    def kill_gcs(self):
        """SIGKILLs the GCS; the nodes, their work and the drivers carry on."""
        self._head().kill_gcs_server()

    def restart_gcs(self):
        """Starts the GCS again on the same address and storage; it
        returns once the GCS answers (the nodes register again within a
        heartbeat or two: wait_for_nodes() waits for that)."""
        self._head().start_gcs_server()

    def _head(self):
        if self.head_node is None:
            raise RuntimeError("the cluster has no head node")
        return self.head_node

    def list_all_nodes(self):
        return ([self.head_node] if self.head_node is not None else []) + list(self.worker_nodes)

    def wait_for_nodes(self, timeout=30):
        """Waits until the GCS lists exactly this cluster's live nodes as
        alive (the removed ones declared dead)."""
        want = {n.node_id for n in self.list_all_nodes()}
        self._wait(lambda alive: alive == want, timeout,
                   f"the cluster's {len(want)} node(s) to be the live ones")

    def _wait(self, done, timeout, what):
        deadline = time.monotonic() + timeout
        alive = None
        while True:
            nodes = bootstrap.request(bootstrap.gcs_address_of(self.address), Op.GET_NODES,
                                      timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            alive = {n["node_id"].hex() for n in nodes if n.get("alive")}
            if done(alive):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}; "
                                   f"the GCS lists {sorted(alive)} as alive")
            time.sleep(0.05)

    # ---- drivers -------------------------------------------------------
    def connect(self, namespace=None):
        """Connects this process to the cluster as a driver."""
        import pyray
        if self.address is None:
            raise RuntimeError("the cluster has no head node: add_node() first")
        info = pyray.init(address=self.address, namespace=namespace)
        self.connected = True
        return info

    def shutdown(self):
        """Disconnects this process if connected, then stops every node and
        removes the session directory."""
        if self.connected:
            import pyray
            if pyray.is_initialized():
                pyray.shutdown()
            self.connected = False
        procs = [h.popen for n in self.worker_nodes for h in n._local.procs]
        if self.head_node is not None:
            procs += [self.head_node._local.raylet.popen]
        if procs:
            stop_processes(procs, signal.SIGTERM, self._config.stop_timeout_s)
        if self.head_node is not None:
            stop_processes([h.popen for h in self.head_node._local.procs], signal.SIGTERM,
                           self._config.stop_timeout_s)
        self.worker_nodes = []
        self.head_node = None
        if self.session_dir:
            shutil.rmtree(self.session_dir, ignore_errors=True)
            self.session_dir = None


def _node_args(kw, head):
    unknown = set(kw) - set(_DEFAULTS) - _IGNORED - {"resources", "memory", "_system_config",
                                                    "labels",
                                                    "metrics_export_port"}
    if unknown:
        raise TypeError(f"add_node() got unexpected keyword argument(s): {sorted(unknown)}")
    if not head and kw.get("_system_config"):
        raise ValueError("_system_config is set once, on the head node")
    out = {k: (v if kw.get(k) is None else kw[k]) for k, v in _DEFAULTS.items()}
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{k} must be a non-negative number, got {v!r}")
    # the node's memory resource: by default, as for pyray.init()'s node
    out["memory"] = kw.get("memory")
    if out["memory"] is not None and (isinstance(out["memory"], bool) or
                                      not isinstance(out["memory"], (int, float)) or
                                      out["memory"] < 0):
        raise ValueError(f"memory must be a non-negative number, got {out['memory']!r}")
    if out["object_store_memory"] < 1 << 20:
        raise ValueError(f"object_store_memory must be at least 1 MiB, got "
                         f"{out['object_store_memory']}")
    res = kw.get("resources") or {}
    if not isinstance(res, dict):
        raise TypeError(f"resources must be a dict, got {type(res).__name__}")
    for name in ("CPU", "GPU", "memory"):
        if name in res:
            arg = "memory" if name == "memory" else f"num_{name.lower()}s"
            raise ValueError(f"Use the {arg} argument of add_node() instead of "
                             f"resources={{'{name}': ...}}.")
    from pyray._private.resources import validate_shape
    validate_shape(res, "node")
    out["resources"] = dict(res)
    from pyray._private.scheduling_strategies import parse_labels
    out["labels"] = parse_labels(kw.get("labels"), "add_node(labels=...)")
    out["_system_config"] = kw.get("_system_config")
    port = kw.get("metrics_export_port")
    if port is not None:
        from pyray._private.metrics import check_export_port
        check_export_port(port, None, "metrics_export_port")
    out["metrics_export_port"] = port
    return out


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


__all__ = ["Cluster", "ClusterNode"]
