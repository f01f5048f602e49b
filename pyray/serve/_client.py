"""This process's link to the Serve controller: the controller's handle, the
routers of the deployments it calls, and one thread that long-polls the
controller for replica-set changes and reports handle metrics (autoscaling).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Dict, Optional

import pyray
from pyray.exceptions import RayActorError, RayError

CONTROLLER_NAME = "SERVE_CONTROLLER_ACTOR"
SERVE_NAMESPACE = "serve"
LISTEN_TIMEOUT_S = 5.0

log = logging.getLogger("pyray.serve")

_lock = threading.Lock()
_client: Optional["Client"] = None


def _in_event_loop():
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def get_controller():
    try:
        return pyray.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return None


def client(controller=None) -> "Client":
    """The process's Client (made on first use)."""
    global _client
    with _lock:
        if _client is None or _client.stopped:
            if controller is None:
                controller = get_controller()
            if controller is None:
                from pyray.serve.exceptions import RayServeException
                raise RayServeException("There is no Serve instance running on this cluster: "
                                        "call serve.start() or serve.run() first.")
            _client = Client(controller)
        return _client


def reset_client():
    global _client
    with _lock:
        c, _client = _client, None
    if c is not None:
        c.stop()


class Client:
    def __init__(self, controller):
        self.controller = controller
        self.routers: Dict[tuple, object] = {}
        self.versions: Dict[tuple, int] = {}
        self.lock = threading.Lock()
        self.stopped = False
        self._wake = concurrent.futures.Future()
        self._handle_id = f"{pyray.get_runtime_context().get_worker_id()}:{id(self):x}"
        self._thread = threading.Thread(target=self._run, name="serve-long-poll", daemon=True)
        self._thread.start()

    def router(self, key):
        with self.lock:
            r = self.routers.get(key)
            if r is not None:
                return r
            from pyray.serve._router import Router
            r = self.routers[key] = Router(self, key)
            self.versions[key] = -1
            wake = self._wake
        if not _in_event_loop():
            # a synchronous caller learns the replicas (and the limits) now; in an
            # event loop the long-poll thread fetches them, requests wait meanwhile
            try:
                self._apply(pyray.get(self.controller.listen_for_change.remote({key: -1}),
                                      timeout=30))
                return r
            except RayError:
                log.exception("serve: fetching the replicas of %s failed", key)
        try:
            wake.set_result(None)
        except concurrent.futures.InvalidStateError:
            pass
        return r

    def stop(self):
        self.stopped = True
        try:
            self._wake.set_result(None)
        except concurrent.futures.InvalidStateError:
            pass

    # controller notifications (fire and forget) ----------------------------
    def report_dead(self, key, rid):
        try:
            self.controller.report_replica_dead.remote(key, rid)
        except RayError:
            pass

    def report_metrics(self, router, force=False):
        now = time.monotonic()
        if not force and now - router.last_report < (router.autoscaling_interval or 1e9):
            return
        router.last_report = now
        try:
            self.controller.record_handle_metrics.remote(router.key, self._handle_id,
                                                         router.report_load(), time.time())
        except RayError:
            pass

    # the long-poll thread -----------------------------------------------------
    def _run(self):
        pending = {}          # outstanding listen_for_change calls: future -> its keys
        while not self.stopped:
            with self.lock:
                if self._wake.done():
                    self._wake = concurrent.futures.Future()
                wake = self._wake
                keys = dict(self.versions)
            covered = set().union(*pending.values()) if pending else set()
            if keys and set(keys) - covered:
                # the first poll, a new router, or a poll that answered: one that
                # covers every key (a new key's version is -1: it answers at once)
                try:
                    pending[self.controller.listen_for_change.remote(keys).future()] = \
                        set(keys)
                except RayError:
                    time.sleep(0.5)
                    continue
            concurrent.futures.wait([wake] + list(pending), timeout=0.5,
                                    return_when=concurrent.futures.FIRST_COMPLETED)
            if self.stopped:
                return
            for fut in [f for f in pending if f.done()]:
                del pending[fut]
                try:
                    updates = fut.result()
                except RayActorError:
                    self._controller_gone()
                    return
                except Exception:  # noqa: BLE001 - retried on the next round
                    log.exception("serve long poll failed")
                    time.sleep(0.2)
                    continue
                self._apply(updates)
            self._report_all()

    def _controller_gone(self):
        self.stopped = True  # serve.shutdown() (or the controller died)
        self._fail_all()

    def _apply(self, updates):
        for key, (version, info) in updates.items():
            with self.lock:
                if version <= self.versions.get(key, -1):
                    continue
                self.versions[key] = version
                r = self.routers.get(key)
            if r is not None:
                r.update(info)

    def _report_all(self):
        for r in list(self.routers.values()):
            if r.autoscaling_interval is not None:
                self.report_metrics(r)

    def _fail_all(self):
        for r in list(self.routers.values()):
            r.update({"max_ongoing": 1, "max_queued": -1, "replicas": {},
                      "unavailable": "the Serve controller is gone"})
