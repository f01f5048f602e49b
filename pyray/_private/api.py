"""The public API: what `pyray.init`, `pyray.remote`, `pyray.get`, ... are
(pyray/__init__.py loads them from here).

init() starts a local cluster or finds a running one and connects this
process to it as a driver (a CoreWorker, core_worker.py).  @remote makes a
RemoteFunction (remote_function.py: .remote() builds a TaskSpec and hands
it to the core worker) or an actor class (actor.py).  get/put/wait/cancel
call the process's core worker."""
from __future__ import annotations

import atexit
import logging
import inspect
import os
import sys
import warnings

from pyray._private import node as node_mod
from pyray._private import object_ref
from pyray._private.config import Config
from pyray._private.context import ctx
from pyray._private.object_ref import ObjectRef
from pyray._private.protocol import DRIVER_EXIT, SHUTDOWN, WATCH_DRIVER, Op
from pyray._private.remote_function import RemoteFunction

log = logging.getLogger("pyray")


class RayContext(dict):
    """What init() returns: a dict of addresses, usable as a context manager."""

    def __init__(self, info):
        super().__init__(info)
        self.address_info = info
        self.dashboard_url = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        shutdown()

    def disconnect(self):
        shutdown()


def is_initialized() -> bool:
    return ctx.core_worker is not None


def init(address=None, *, num_cpus=None, num_gpus=None, resources=None,
         object_store_memory=None, namespace=None, ignore_reinit_error=False,
         local_mode=False, include_dashboard=None, log_to_driver=True, runtime_env=None,
         logging_level=logging.INFO, configure_logging=True, _system_config=None,
         _token=None, _memory=None, labels=None, **kwargs):
    with ctx.lock:
        if ctx.core_worker is not None:
            if ctx.mode == "worker":
                return RayContext(_address_info())
            if ignore_reinit_error:
                return RayContext(_address_info())
            raise RuntimeError("Maybe you called pyray.init twice by accident? This error can "
                               "be suppressed by passing in 'ignore_reinit_error=True' or by "
                               "calling 'pyray.shutdown()' prior to 'pyray.init()'.")
        unknown = set(kwargs) - {"dashboard_host", "dashboard_port", "_temp_dir",
                                 "_node_ip_address", "job_config", "_plasma_directory",
                                 "storage", "_enable_object_reconstruction", "_redis_password",
                                 "logging_format", "_metrics_export_port"}
        if unknown:
            raise TypeError(f"init() got unexpected keyword argument(s): {sorted(unknown)}")
        if namespace is not None:
            _validate_namespace(namespace)
        job_config = kwargs.get("job_config")
        if job_config is not None:
            from pyray.job_config import JobConfig
            if not isinstance(job_config, JobConfig):
                raise TypeError(f"job_config must be a pyray.job_config.JobConfig, got "
                                f"{type(job_config).__name__}")
            if namespace is None:
                namespace = job_config.ray_namespace
            if runtime_env is None:
                runtime_env = job_config.runtime_env
        if resources is not None:
            if not isinstance(resources, dict):
                raise TypeError(f"resources must be a dict, got {type(resources).__name__}")
            for name in ("CPU", "GPU"):
                if name in resources:
                    raise ValueError(f"Use the num_{name.lower()}s argument of init() instead "
                                     f"of resources={{'{name}': ...}}.")
            if "memory" in resources:
                raise ValueError("Use the _memory argument of init() instead of "
                                 "resources={'memory': ...}.")
            from pyray._private.resources import validate_shape
            validate_shape(resources, "cluster")
        for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                     ("object_store_memory", object_store_memory), ("_memory", _memory)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ValueError(f"{k} must be a non-negative number, got {v!r}")
        session_dir = _init_extras(local_mode, logging_level, configure_logging, kwargs,
                                   address)
        dashboard = _dashboard_args(include_dashboard, kwargs, address)
        if runtime_env is None and job_config is None:
            runtime_env = _submitted_job_env()
        if labels is not None:
            from pyray._private.scheduling_strategies import parse_labels
            labels = parse_labels(labels, "init(labels=...)")
        from pyray._private import runtime_env as rte
        rte.parent = None
        job_env = rte.validate(runtime_env)     # a bad key fails before anything starts
        config = Config.from_env(**(_system_config or {}))
        config.log_to_driver = bool(log_to_driver)
        if address is None:
            address = os.environ.get("PYRAY_ADDRESS") or os.environ.get("RAY_ADDRESS")
            if address in ("", "local"):
                address = None
        metrics_port = kwargs.get("_metrics_export_port")
        if metrics_port is not None:
            from pyray._private.metrics import check_export_port
            check_export_port(metrics_port, address)
        if isinstance(address, str) and address.startswith(("pyray://", "ray://")):
            # Ray Client: tasks, actors and objects through the head's client server
            from pyray._private.client.worker import connect
            info = connect(address, config, namespace, _token, job_env)
            return RayContext(info)
        if address is None:
            cluster = _start_local(num_cpus, num_gpus, resources, object_store_memory, config,
                                   _memory, labels, session_dir,
                                   kwargs.get("_node_ip_address"), metrics_port)
            node = cluster.node
        else:
            if num_cpus is not None or num_gpus is not None or resources is not None or \
                    object_store_memory is not None or _memory is not None or \
                    labels is not None:
                raise ValueError("When connecting to an existing cluster, num_cpus, num_gpus, "
                                 "resources, object_store_memory, _memory and labels must "
                                 "not be provided.")
            cluster = None
            node = _find_node(address, config, _token)
        try:
            _connect_driver(node, config, namespace, job_config)
        except BaseException:
            if cluster is not None:
                cluster.stop()
            raise
        ctx.cluster = cluster
        _on_sigterm_exit()
        if job_env:
            try:
                ctx.core_worker.job_config["runtime_env"] = rte.set_job_env(job_env,
                                                                            ctx.core_worker)
            except BaseException:
                shutdown()
                raise
        out = RayContext(_address_info())
        if cluster is not None and dashboard is not None:
            # not waited for: init() returns while it starts (docs/dashboard.md)
            cluster.start_dashboard(*dashboard)
            out.dashboard_url = f"{dashboard[0]}:{dashboard[1]}"
        return out


def _dashboard_args(include_dashboard, kwargs, address):
    """(host, port) of the dashboard init() starts with the cluster, or
    None (docs/dashboard.md)."""
    host = kwargs.get("dashboard_host")
    port = kwargs.get("dashboard_port")
    if include_dashboard not in (None, True, False):
        raise TypeError(f"include_dashboard must be None, True or False, got "
                        f"{include_dashboard!r}")
    if host is not None and not isinstance(host, str):
        raise TypeError(f"dashboard_host must be a str, got {type(host).__name__}")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):
        raise ValueError(f"dashboard_port must be a port number (1-65535), got {port!r}")
    if address is not None and address != "local":
        if include_dashboard or host is not None or port is not None:
            raise ValueError("include_dashboard, dashboard_host and dashboard_port apply "
                             "when init() starts a cluster; a running cluster has its own "
                             "dashboard (pyray start --head --dashboard-port ...).")
        return None
    if include_dashboard is False:
        return None
    if not node_mod.dashboard_available():
        if include_dashboard:
            raise ValueError("include_dashboard=True needs starlette and uvicorn: "
                             "pip install 'pyray[dashboard]'")
        log.info("pyray: the dashboard is not started: starlette and uvicorn are not "
                 "installed (pip install 'pyray[dashboard]').")
        return None
    host = host or "127.0.0.1"
    return host, node_mod.dashboard_port(host, port)


def _submitted_job_env():
    """The runtime env of a job submitted through the dashboard: its
    entrypoint's init() applies it (as Ray's RAY_JOB_CONFIG_JSON_ENV_VAR)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return None
    import json
    try:
        return json.loads(raw).get("runtime_env") or None
    except (ValueError, AttributeError):
        raise ValueError(f"RAY_JOB_CONFIG_JSON_ENV_VAR is not a JSON object: {raw[:200]!r}") \
            from None


def _on_sigterm_exit():
    """In a submitted job's entrypoint (docs/jobs.md): SIGTERM (`pyray job
    stop`) ends the driver as an exit does, so that its tasks and actors
    end with it.  A handler the program set is left alone."""
    if not os.environ.get("PYRAY_JOB_SUBMISSION_ID"):
        return
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)


def _validate_namespace(namespace):
    if not isinstance(namespace, str):
        raise TypeError("namespace must be None or a string.")
    if namespace == "":
        raise ValueError('"" is not a valid namespace. Pass None to not specify a namespace.')


_UNIX_PATH_MAX = 107      # sizeof(sockaddr_un.sun_path) - 1 on Linux


def _init_extras(local_mode, logging_level, configure_logging, kwargs, address):
    """The init() arguments that shape this process rather than the cluster:
    logging, `_temp_dir` (returns the new session directory, or None), and
    the ones pyray has no use for, each with a warning that says why."""
    if configure_logging:
        if isinstance(logging_level, str):
            logging_level = logging.getLevelName(logging_level.upper())
        if not isinstance(logging_level, int):
            raise ValueError(f"logging_level must be a logging level such as logging.INFO "
                             f"or 'info', got {kwargs.get('logging_level', logging_level)!r}")
        log.setLevel(logging_level)
        if not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(
                kwargs.get("logging_format") or "%(asctime)s %(levelname)s %(name)s: %(message)s"))
            log.addHandler(handler)
    if local_mode:
        warnings.warn("local_mode is not supported by pyray (Ray deprecates it too): tasks and "
                      "actors run in worker processes as usual; use a debugger on the worker or "
                      "pyray.util.pdb for step-by-step debugging.", UserWarning, stacklevel=3)
    if kwargs.get("_plasma_directory") is not None:
        warnings.warn("_plasma_directory is not used: pyray's object store is a memfd, which "
                      "/dev/shm's size does not limit.", UserWarning, stacklevel=3)
    if kwargs.get("storage") is not None:
        warnings.warn("storage= is not supported by pyray (Ray deprecated it); nothing is "
                      "written there.", UserWarning, stacklevel=3)
    temp_dir = kwargs.get("_temp_dir")
    if temp_dir is None:
        return None
    if not isinstance(temp_dir, str) or not os.path.isabs(temp_dir):
        raise ValueError(f"_temp_dir must be an absolute path, got {temp_dir!r}")
    if address is not None:
        return None       # as in Ray: the running cluster keeps its own directory
    # the node's unix sockets live under it: <root>/session_<~40>/sockets/<~32>
    longest = len(os.path.abspath(temp_dir)) + 1 + 40 + len("/sockets/") + 32
    if longest > _UNIX_PATH_MAX:
        raise ValueError(f"_temp_dir {temp_dir!r} is too long: the node's unix socket paths "
                         f"under it would take up to {longest} characters, and the system's "
                         f"limit is {_UNIX_PATH_MAX}. Choose a directory of at most "
                         f"{_UNIX_PATH_MAX - longest + len(os.path.abspath(temp_dir))} "
                         f"characters, such as /tmp/pyray.")
    return node_mod.new_session_dir(temp_dir)


def _start_local(num_cpus, num_gpus, resources, object_store_memory, config, memory=None,
                 labels=None, session_dir=None, node_ip=None, metrics_export_port=None):
    if num_cpus is None:
        num_cpus = os.cpu_count() or 1
    if num_gpus is None:
        num_gpus = node_mod.detect_num_gpus()
    if object_store_memory is None:
        object_store_memory = node_mod.default_object_store_memory(config.object_store_fraction)
    if object_store_memory < 1 << 20:
        raise ValueError(f"object_store_memory must be at least 1 MiB, got {object_store_memory}")
    return node_mod.LocalCluster(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                                 object_store_memory=object_store_memory, config=config,
                                 memory=memory, while_starting=_import_driver_modules,
                                 labels=labels, session_dir=session_dir,
                                 node_ip=node_ip or "127.0.0.1",
                                 metrics_export_port=metrics_export_port)


def _import_driver_modules():
    """Imported while the GCS and raylet start, instead of after."""
    import pyray._private.core_worker  # noqa: F401


def _find_node(address, config, token=None):
    """`token`: the cluster's (docs/cluster.md, "Security"); by default
    $PYRAY_TOKEN, else the one `pyray start --head` recorded on this machine."""
    from pyray._private import bootstrap
    return bootstrap.find_local_node(address, config, token)


def _connect_driver(node, config, namespace, job_config=None):
    from pyray._private.core_worker import CoreWorker
    cw = CoreWorker(session_dir=node["session_dir"], node=node, job_id=None, config=config,
                    is_driver=True)
    try:
        object_ref._set_core_worker(cw)
        job_id = cw.rpc(cw.gcs_addr, Op.REGISTER_JOB, {
            "driver_addr": cw.addr, "pid": os.getpid(), "namespace": namespace,
            "node_id": node["node_id"], "node_ip": node.get("node_ip"),
            "entrypoint": " ".join(sys.argv)[:200]})
    except BaseException:
        object_ref._set_core_worker(None)
        cw.shutdown()
        raise
    cw.job_id = job_id
    # the raylet ends the job if this process dies without saying so
    cw.out.send(cw.raylet_addr, WATCH_DRIVER.make(job_id, os.getpid()))
    namespace = namespace or f"anon-{job_id.hex()}"
    sys_path = list(sys.path)
    if job_config is not None:
        # the job's code_search_path goes first on its workers' sys.path
        sys_path = list(job_config.code_search_path) + sys_path
    cw.job_config = {"job_id": job_id, "driver_addr": cw.addr, "sys_path": sys_path,
                     "cwd": os.getcwd(), "namespace": namespace,
                     "job_config": job_config._to_dict() if job_config is not None else None}
    ctx.core_worker = cw
    ctx.mode = "driver"
    ctx.node = node
    ctx.config = config
    ctx.job_id = job_id
    ctx.namespace = namespace
    ctx.session_dir = node["session_dir"]


def _address_info():
    n = ctx.node or {}
    return {"node_ip_address": n.get("node_ip") or "127.0.0.1",
            "raylet_socket_name": n.get("raylet_addr"),
            "gcs_address": n.get("gcs_addr"), "address": n.get("gcs_addr"),
            "object_store_address": n.get("store_name"), "session_dir": n.get("session_dir"),
            "node_id": n.get("node_id", b"").hex()}


def shutdown(_exiting_interpreter=False):
    with ctx.lock:
        cw = ctx.core_worker
        if ctx.mode == "client":
            from pyray._private.client.worker import disconnect
            return disconnect()
        if cw is None or ctx.mode != "driver":
            return
        cluster = ctx.cluster
        metrics = sys.modules.get("pyray._private.metrics")
        if metrics is not None:
            metrics.flush()             # the driver's user metrics not yet reported
        cw.out.send(cw.raylet_addr, DRIVER_EXIT.make(cw.job_id))
        cw.out.send(cw.gcs_addr, DRIVER_EXIT.make(cw.job_id))
        if cluster is not None:
            # ask our own daemons to stop now: they exit while we close
            cw.out.send(cw.raylet_addr, SHUTDOWN.make())
            if cluster.gcs is not None:
                cw.out.send(cw.gcs_addr, SHUTDOWN.make())
        object_ref._set_core_worker(None)
        client = cw.shutdown(keep_store=cluster is not None)
        ctx.reset()
        if cluster is not None:
            cluster.stop()
            if client is not None:
                from pyray._private.core_worker import close_in_background
                close_in_background(client)


atexit.register(shutdown, True)


def _cw():
    cw = ctx.core_worker
    if cw is None:
        from pyray._private.remote_function import ensure_initialized
        cw = ensure_initialized()
    return cw


def get(object_refs, *, timeout=None):
    if timeout is not None and (isinstance(timeout, bool) or
                                not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"timeout must be a non-negative number or None, got {timeout!r}")
    cw = ctx.core_worker
    if cw is None:
        cw = _cw()          # as in Ray, get() starts a cluster if none is connected
    return cw.get(object_refs, timeout)


def put(value, *, _owner=None):
    return _cw().put(value)


def wait(object_refs, *, num_returns=1, timeout=None, fetch_local=True):
    cw = ctx.core_worker
    if cw is None:
        cw = _cw()          # as in Ray, wait() starts a cluster if none is connected
    try:
        return cw.wait(object_refs, num_returns, timeout, fetch_local)
    except TypeError:
        from pyray._private import generators
        if not isinstance(object_refs, list) or not any(
                isinstance(r, generators.ObjectRefGenerator) for r in object_refs):
            raise
        return generators.wait(cw, object_refs, num_returns, timeout, fetch_local)


def cancel(object_ref, *, force=False, recursive=True):
    if type(object_ref) is not ObjectRef:
        from pyray._private.generators import ObjectRefGenerator
        if isinstance(object_ref, ObjectRefGenerator):
            return _cw().cancel(object_ref.completed(), force)
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    _cw().cancel(object_ref, force, recursive)


def _gcs_call(op, *args):
    cw = _cw()
    return cw.rpc(cw.gcs_addr, op, *args)


def nodes():
    out = []
    for n in _gcs_call(Op.GET_NODES):
        out.append({
            "NodeID": n["node_id"].hex(), "Alive": n["alive"], "alive": n["alive"],
            "NodeManagerAddress": n.get("node_ip", "127.0.0.1"),
            "NodeManagerHostname": os.uname().nodename,
            "RayletSocketName": n["raylet_addr"], "ObjectStoreSocketName": n["store_name"],
            "Resources": dict(n.get("resources", {})), "IsHead": n.get("head", False),
            "Labels": dict(n.get("labels") or {}),
            "MetricsExportPort": n.get("metrics_export_port"),
        })
    return out


def cluster_resources():
    return _gcs_call(Op.CLUSTER_RESOURCES, False)


def available_resources():
    return _gcs_call(Op.CLUSTER_RESOURCES, True)


def get_gpu_ids():
    cw = ctx.core_worker
    task = cw.current_task if cw is not None else None
    if task is not None and task.gpu_ids is not None:
        return list(task.gpu_ids)
    w = getattr(ctx, "worker", None)
    if w is not None and w.gpu_ids:
        return list(w.gpu_ids)
    return []


def remote(*args, **kwargs):
    """@remote or @remote(**options) on a function (a task) or a class (an actor)."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make(args[0], {})
    if args:
        raise TypeError("@remote takes either no arguments or only keyword options, "
                        f"e.g. @remote(num_cpus=2); got positional {args!r}")

    def deco(obj):
        return _make(obj, kwargs)
    return deco


def _make(obj, options):
    if inspect.isclass(obj):
        from pyray.actor import make_actor_class
        return make_actor_class(obj, options)
    if callable(obj):
        return RemoteFunction(obj, options)
    raise TypeError(f"@remote expects a function or a class, got {type(obj).__name__}")


def method(*args, **kwargs):
    """@method(num_returns=...) on an actor method."""
    valid = {"num_returns", "concurrency_group", "max_task_retries", "retry_exceptions",
             "enable_task_events", "_generator_backpressure_num_objects"}
    bad = set(kwargs) - valid
    if bad:
        raise ValueError(f"Invalid option(s) for @method: {sorted(bad)}; valid ones are "
                         f"{sorted(valid)}")
    if args:
        raise TypeError("@method takes only keyword options, e.g. @method(num_returns=2)")

    def deco(fn):
        fn.__pyray_method_options__ = kwargs
        return fn
    return deco
