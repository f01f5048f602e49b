"""serve.start / run / status / delete / shutdown / get_app_handle /
get_deployment_handle: the driver's side of the controller."""
from __future__ import annotations

import logging
import os
import re
import time
from typing import Optional

import pyray
from pyray.exceptions import GetTimeoutError
from pyray.serve import _client
from pyray.serve.config import HTTPOptions
from pyray.serve.deployment import Application, build_app
from pyray.serve.exceptions import RayServeException
from pyray.serve.handle import DeploymentHandle
from pyray.serve.schema import ApplicationStatus, ServeStatus, status_from_dict

log = logging.getLogger("pyray.serve")

DEFAULT_APP_NAME = "default"
CALL_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = float(os.environ.get("PYRAY_SERVE_RUN_TIMEOUT_S", "600"))


def _ensure_init():
    if not pyray.is_initialized():
        pyray.init()


def _controller_or_none():
    if not pyray.is_initialized():
        return None
    return _client.get_controller()


def start(http_options=None, proxy_location=None, detached: bool = True, **unsupported):
    """Starts Serve on the cluster (the controller and the HTTP proxy); a
    no-op when it is already running."""
    if unsupported:
        raise TypeError(f"serve.start() got unsupported arguments {sorted(unsupported)}; "
                        "pyray.serve takes http_options and proxy_location.")
    if proxy_location not in (None, "HeadOnly", "EveryNode", "Disabled"):
        raise ValueError(f"proxy_location must be 'HeadOnly', 'EveryNode' or 'Disabled', "
                         f"got {proxy_location!r}")
    opts = HTTPOptions.parse(http_options)
    _ensure_init()
    ctrl = _client.get_controller()
    if ctrl is not None:
        if http_options is not None:
            running = pyray.get(ctrl.http_config.remote(), timeout=CALL_TIMEOUT_S)
            if running is not None and running != opts:
                log.warning("Serve is already running with http_options %s; the new ones "
                            "(%s) are ignored until serve.shutdown().", running, opts)
        return
    from pyray.serve._controller import ServeController
    from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    head = pyray.get_runtime_context().get_node_id()
    ctrl = pyray.remote(ServeController).options(
        name=_client.CONTROLLER_NAME, namespace=_client.SERVE_NAMESPACE, lifetime="detached",
        get_if_exists=True, num_cpus=0, max_concurrency=100000, max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote(head)
    try:
        pyray.get(ctrl.start.remote(None if proxy_location == "Disabled" else opts),
                  timeout=CALL_TIMEOUT_S)
    except BaseException:
        pyray.kill(ctrl)
        raise
    if proxy_location == "EveryNode" and len([n for n in pyray.nodes() if n.get("Alive")]) > 1:
        log.warning("pyray.serve runs one HTTP proxy, on the head node "
                    "(proxy_location='EveryNode' is served as 'HeadOnly').")


def _check_route_prefix(route_prefix):
    if route_prefix is None:
        return
    if not isinstance(route_prefix, str) or not route_prefix.startswith("/"):
        raise ValueError(f"route_prefix must start with '/', got {route_prefix!r}")
    if route_prefix != "/" and route_prefix.endswith("/"):
        raise ValueError(f"route_prefix must not end with '/' unless it is '/', got "
                         f"{route_prefix!r}")
    if re.search(r"[{}]", route_prefix):
        raise ValueError(f"route_prefix may not contain wildcards, got {route_prefix!r}")


def run(target: Application, blocking: bool = False, name: str = DEFAULT_APP_NAME,
        route_prefix: Optional[str] = "/", logging_config=None,
        _local_testing_mode: bool = False, **unsupported) -> DeploymentHandle:
    """Deploys an application (replacing one of the same name) and waits until
    it runs; returns a handle to its ingress deployment."""
    if unsupported:
        raise TypeError(f"serve.run() got unsupported arguments {sorted(unsupported)}")
    if logging_config is not None:
        raise NotImplementedError("serve.run(logging_config=...) is not supported by "
                                  "pyray.serve.")
    if _local_testing_mode:
        raise NotImplementedError("serve.run(_local_testing_mode=True) is not supported by "
                                  "pyray.serve.")
    if not isinstance(name, str) or not name:
        raise ValueError(f"An application's name must be a non-empty string, got {name!r}")
    _check_route_prefix(route_prefix)
    ingress, specs = build_app(target, name)
    _ensure_init()
    start()
    ctrl = _client.client().controller
    pyray.get(ctrl.deploy_application.remote(name, route_prefix, ingress, specs),
              timeout=CALL_TIMEOUT_S)
    _wait_running(ctrl, name)
    handle = DeploymentHandle(ingress, name)
    if blocking:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            log.info("Got KeyboardInterrupt, exiting...")
    return handle


def _wait_running(ctrl, name):
    deadline = time.monotonic() + RUN_TIMEOUT_S
    delay = 0.01
    while True:
        st = pyray.get(ctrl.status.remote(), timeout=CALL_TIMEOUT_S)["applications"].get(name)
        if st is not None:
            if st["status"] == ApplicationStatus.RUNNING.value:
                return
            if st["status"] == ApplicationStatus.DEPLOY_FAILED.value:
                raise RuntimeError(f"Deploying application {name} failed: {st['message']}")
        if time.monotonic() > deadline:
            raise GetTimeoutError(f"Application {name!r} did not reach RUNNING within "
                                  f"{RUN_TIMEOUT_S:.0f} s (PYRAY_SERVE_RUN_TIMEOUT_S); its "
                                  f"status: {st}")
        time.sleep(delay)
        delay = min(0.1, delay * 2)


def status() -> ServeStatus:
    ctrl = _controller_or_none()
    if ctrl is None:
        return ServeStatus()
    return status_from_dict(pyray.get(ctrl.status.remote(), timeout=CALL_TIMEOUT_S))


def delete(name: str, _blocking: bool = True):
    """Deletes an application (its replicas stop gracefully)."""
    ctrl = _controller_or_none()
    if ctrl is None:
        raise RayServeException("There is no Serve instance running on this cluster.")
    pyray.get(ctrl.delete_application.remote(name), timeout=CALL_TIMEOUT_S)
    if _blocking:
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while name in pyray.get(ctrl.list_applications.remote(), timeout=CALL_TIMEOUT_S):
            if time.monotonic() > deadline:
                raise GetTimeoutError(f"Application {name!r} was not deleted within "
                                      f"{CALL_TIMEOUT_S:.0f} s.")
            time.sleep(0.05)


def shutdown():
    """Deletes every application and stops Serve's actors (controller, proxy,
    replicas)."""
    ctrl = _controller_or_none()
    if ctrl is None:
        _client.reset_client()
        return
    try:
        pyray.get(ctrl.graceful_shutdown.remote(), timeout=CALL_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - the controller is killed below anyway
        log.warning("serve.shutdown: graceful shutdown failed: %s", e)
    _client.reset_client()
    pyray.kill(ctrl)
    deadline = time.monotonic() + CALL_TIMEOUT_S
    while _client.get_controller() is not None and time.monotonic() < deadline:
        time.sleep(0.02)


def _apps():
    ctrl = _controller_or_none()
    if ctrl is None:
        raise RayServeException("There is no Serve instance running on this cluster.")
    return pyray.get(ctrl.list_applications.remote(), timeout=CALL_TIMEOUT_S)


def get_app_handle(name: str) -> DeploymentHandle:
    apps = _apps()
    if name not in apps:
        raise RayServeException(f"Application '{name}' does not exist.")
    return DeploymentHandle(apps[name][1], name)


def get_deployment_handle(deployment_name: str, app_name: Optional[str] = None,
                          _check_exists: bool = True) -> DeploymentHandle:
    if app_name is None:
        from pyray.serve import context
        if context._replica_context is not None:
            app_name = context._replica_context.app_name
        else:
            app_name = DEFAULT_APP_NAME
    if _check_exists:
        apps = _apps()
        if app_name not in apps:
            raise RayServeException(f"Application '{app_name}' does not exist.")
    return DeploymentHandle(deployment_name, app_name)
