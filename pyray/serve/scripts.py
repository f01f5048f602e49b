"""`pyray serve run | deploy | status | shutdown` and config files.

A config file is Ray Serve's: optional `http_options` (host, port) and
`applications`, each with `name`, `route_prefix`, `import_path`
("module:attr", an Application or a function returning one),
`runtime_env` and `deployments` (per-deployment overrides of the
@serve.deployment options, by name).
"""
from __future__ import annotations

import importlib
import json
import os
import sys

from pyray.serve.deployment import Application, Deployment

_APP_KEYS = {"name", "route_prefix", "import_path", "runtime_env", "deployments", "args"}


def import_application(import_path: str, args=None, app_dir: str = ".") -> Application:
    """'module:attr' (or 'module.attr') -> the Application it names."""
    if ":" in import_path:
        mod_name, attr = import_path.split(":", 1)
    elif "." in import_path:
        mod_name, attr = import_path.rsplit(".", 1)
    else:
        raise ValueError(f"import_path must look like 'module:app', got {import_path!r}")
    app_dir = os.path.abspath(app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    module = importlib.import_module(mod_name)
    from pyray import cloudpickle
    if not _installed(module):
        cloudpickle.register_pickle_by_value(module)   # replicas need not import it
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{mod_name!r} has no attribute {attr!r} (import_path "
                         f"{import_path!r})") from None
    if isinstance(target, Deployment):
        target = target.bind()
    elif callable(target) and not isinstance(target, Application):
        target = target(args or {})
    if not isinstance(target, Application):
        raise TypeError(f"{import_path!r} is a {type(target).__name__}, not an Application "
                        "(a bound deployment, `Deployment.bind()`), nor a function "
                        "returning one.")
    return target


def _installed(module) -> bool:
    path = getattr(module, "__file__", None) or ""
    return "site-packages" in path or "dist-packages" in path


def apply_overrides(app: Application, overrides, runtime_env=None) -> Application:
    """A copy of the application graph with each named deployment's options
    replaced as the config says (and the application's runtime_env given to
    deployments that set none)."""
    by_name = {}
    for o in overrides or []:
        if not isinstance(o, dict) or "name" not in o:
            raise ValueError(f"each entry of `deployments` needs a `name`, got {o!r}")
        by_name[o["name"]] = {k: v for k, v in o.items() if k != "name"}
    seen, done = set(), {}

    def walk(v):
        if isinstance(v, Application):
            return visit(v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, tuple):
            return tuple(walk(x) for x in v)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    def visit(a):
        if id(a) in done:
            return done[id(a)]
        d = a._bound_deployment
        opts = dict(by_name.get(d.name, {}))
        seen.add(d.name)
        if runtime_env:
            rao = dict(opts.get("ray_actor_options") or d.ray_actor_options or {})
            rao.setdefault("runtime_env", runtime_env)
            opts["ray_actor_options"] = rao
        new = Application(d.options(**opts) if opts else d, walk(list(a._args)),
                          walk(dict(a._kwargs)))
        new._args = tuple(new._args)
        done[id(a)] = new
        return new

    out = visit(app)
    missing = sorted(set(by_name) - seen)
    if missing:
        raise ValueError(f"The config overrides deployments {missing}, which the application "
                         f"does not have (it has {sorted(seen)}).")
    return out


def deploy_config(config: dict, app_dir: str = "."):
    """Deploys every application of a Serve config (a dict, as read from YAML)."""
    from pyray import serve
    if not isinstance(config, dict):
        raise ValueError("A Serve config must be a mapping with `applications`.")
    bad = sorted(set(config) - {"http_options", "applications", "proxy_location",
                                "logging_config", "grpc_options"})
    if bad:
        raise ValueError(f"Unknown keys in the Serve config: {bad}")
    apps = config.get("applications")
    if not apps:
        raise ValueError("The Serve config has no `applications`.")
    serve.start(http_options=config.get("http_options"),
                proxy_location=config.get("proxy_location"))
    names = set()
    for i, spec in enumerate(apps):
        unknown = sorted(set(spec) - _APP_KEYS)
        if unknown:
            raise ValueError(f"applications[{i}] has unknown keys {unknown}")
        if "import_path" not in spec:
            raise ValueError(f"applications[{i}] needs an `import_path`")
        name = spec.get("name", "default")
        if name in names:
            raise ValueError(f"Two applications are named {name!r} in the config.")
        names.add(name)
        app = import_application(spec["import_path"], spec.get("args"), app_dir)
        app = apply_overrides(app, spec.get("deployments"), spec.get("runtime_env"))
        serve.run(app, name=name, route_prefix=spec.get("route_prefix", "/"))
    return sorted(names)


def _connect(address):
    import pyray
    if pyray.is_initialized():
        return
    pyray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto",
               namespace="serve", log_to_driver=False)


def _cmd_run(a):
    import pyray
    from pyray import serve
    if a.config_or_import_path.endswith((".yaml", ".yml")):
        config = _load_yaml(a.config_or_import_path)
    else:
        config = {"applications": [{"import_path": a.config_or_import_path,
                                    "route_prefix": a.route_prefix, "name": a.name}]}
    if a.host or a.port:
        config["http_options"] = {k: v for k, v in (("host", a.host), ("port", a.port)) if v}
    if a.address:
        _connect(a.address)
    elif not pyray.is_initialized():
        pyray.init()
    deploy_config(config, a.app_dir)
    print("Deployed Serve app successfully.", flush=True)
    if a.non_blocking:
        return 0
    import time
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("Got KeyboardInterrupt, shutting down...", flush=True)
        serve.shutdown()
    return 0


def _cmd_deploy(a):
    config = _load_yaml(a.config_file)
    _connect(a.address)
    names = deploy_config(config, a.app_dir)
    print(f"Sent deploy request for applications {names} successfully.", flush=True)
    return 0


def status_dict():
    from pyray import serve
    st = serve.status()
    return {"proxies": {k: v.value for k, v in st.proxies.items()},
            "applications": {
                n: {"status": a.status.value, "message": a.message,
                    "last_deployed_time_s": a.last_deployed_time_s,
                    "deployments": {dn: {"status": d.status.value,
                                         "status_trigger": d.status_trigger.value,
                                         "replica_states": {k.value: v for k, v in
                                                            d.replica_states.items()},
                                         "message": d.message}
                                    for dn, d in a.deployments.items()}}
                for n, a in st.applications.items()},
            "target_capacity": None}


def _cmd_status(a):
    _connect(a.address)
    d = status_dict()
    if a.name:
        d = d["applications"].get(a.name, {})
    try:
        import yaml
        print(yaml.safe_dump(d, sort_keys=False, default_flow_style=False), end="")
    except ImportError:
        print(json.dumps(d, indent=2))
    return 0


def _cmd_shutdown(a):
    from pyray import serve
    if not a.yes:
        ok = input("This will shut down Serve on the cluster, deleting every application. "
                   "Continue? [y/N] ")
        if ok.strip().lower() not in ("y", "yes"):
            return 1
    _connect(a.address)
    serve.shutdown()
    print("Sent shutdown request; applications will be deleted asynchronously.", flush=True)
    return 0


def _load_yaml(path):
    try:
        import yaml
    except ImportError:
        raise SystemExit('reading a Serve config needs pyyaml: pip install "pyray[serve]"')
    with open(path) as f:
        return yaml.safe_load(f)


def main(argv=None):
    """`pyray serve ...` (the `pyray` command line hands its arguments here)."""
    import argparse
    p = argparse.ArgumentParser(prog="pyray serve",
                                description="run and manage Serve applications")
    ss = p.add_subparsers(dest="serve_cmd", required=True)
    r = ss.add_parser("run", help="run an application (module:app or a config file) until "
                                  "Ctrl-C")
    r.add_argument("config_or_import_path")
    r.add_argument("--address", "-a", default=None)
    r.add_argument("--name", default="default")
    r.add_argument("--route-prefix", default="/")
    r.add_argument("--host", default=None)
    r.add_argument("--port", type=int, default=None)
    r.add_argument("--app-dir", "-d", default=".")
    r.add_argument("--non-blocking", action="store_true")
    r.set_defaults(fn=_cmd_run)
    d = ss.add_parser("deploy", help="deploy the applications of a config file to a running "
                                     "cluster")
    d.add_argument("config_file")
    d.add_argument("--address", "-a", default=None)
    d.add_argument("--app-dir", "-d", default=".")
    d.set_defaults(fn=_cmd_deploy)
    s = ss.add_parser("status", help="the status of Serve's applications (YAML)")
    s.add_argument("--address", "-a", default=None)
    s.add_argument("--name", "-n", default=None)
    s.set_defaults(fn=_cmd_status)
    x = ss.add_parser("shutdown", help="delete every application and stop Serve")
    x.add_argument("--address", "-a", default=None)
    x.add_argument("--yes", "-y", action="store_true")
    x.set_defaults(fn=_cmd_shutdown)
    a = p.parse_args(argv)
    return a.fn(a)
