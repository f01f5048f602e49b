"""The Serve controller: a detached, named async actor that reconciles the
applications it was asked to run with the replica actors that exist.

Every tick (0.1 s) each deployment: promotes replicas whose constructor
finished (or counts the failure: DEPLOY_FAILED after
max_constructor_retry_count in a row), health-checks running ones (a
failed or timed-out check_health, or a death a router reported, replaces
the replica), reconfigures on a user_config change, follows the autoscaling
policy, and starts or stops replicas toward the target as `plan_replicas`
(a plain function) says: a new code version rolls over by starting new
replicas first and stopping an old one only when a new one runs, so no
request is dropped.  A stopping replica leaves the routers' replica set
first, then drains (graceful_shutdown_*), then is killed.

Routers learn replica sets by long poll (listen_for_change); the proxy gets
the route table pushed.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import traceback
from typing import Dict, List, Optional

import pyray
from pyray.serve.autoscaling_policy import AutoscalingPolicy, MetricsWindow
from pyray.serve.schema import (ApplicationStatus, DeploymentStatus, DeploymentStatusTrigger,
                                ReplicaState)

log = logging.getLogger("pyray.serve.controller")

TICK_S = 0.1
SERVE_NAMESPACE = "serve"
PROXY_NAME = "SERVE_PROXY_ACTOR"

STARTING, RUNNING, STOPPING = "STARTING", "RUNNING", "STOPPING"


def plan_replicas(target: int, current_starting: int, current_running: int,
                  old_running: int) -> tuple:
    """-> (replicas to start, old ones to stop, current ones to stop).

    New replicas (of the current version) are started up to the target; an
    old replica is stopped only while the running ones would still number
    at least the target without it (rolling over without dropping
    capacity); extra current replicas are stopped down to the target."""
    current = current_starting + current_running
    start = max(0, target - current)
    stop_current = max(0, current - target)
    running_after = current_running + old_running
    stop_old = old_running if target == 0 else max(0, min(old_running, running_after - target))
    return start, stop_old, stop_current


class _Replica:
    __slots__ = ("rid", "actor", "version", "state", "init_fut", "health_fut", "health_at",
                 "stop_fut", "stop_deadline", "config_version", "reconf_fut", "dead")

    def __init__(self, rid, actor, version):
        self.rid = rid
        self.actor = actor
        self.version = version
        self.state = STARTING
        self.init_fut = None
        self.health_fut = None
        self.health_at = 0.0
        self.stop_fut = None
        self.stop_deadline = 0.0
        self.config_version = 0
        self.reconf_fut = None
        self.dead = False


class _Deployment:
    def __init__(self, spec):
        self.spec = spec
        self.config_version = 1
        self.replicas: List[_Replica] = []
        self.failures = 0
        self.failed = False
        self.message = ""
        self.trigger = DeploymentStatusTrigger.CONFIG_UPDATE_STARTED
        self.unhealthy_until = 0.0
        self.deleting = False
        cfg = spec.config
        self.target = cfg.initial_target()
        self.policy = None
        self.metrics = None
        if cfg.autoscaling_config is not None:
            self.policy = AutoscalingPolicy(cfg.autoscaling_config)
            ac = cfg.autoscaling_config
            self.metrics = MetricsWindow(ac.look_back_period_s,
                                         stale_after_s=max(3 * ac.metrics_interval_s, 2.0))

    def update(self, spec):
        old = self.spec
        self.spec = spec
        if old.config.user_config != spec.config.user_config:
            self.config_version += 1
        if spec.code_version != old.code_version:
            self.failures, self.failed, self.message = 0, False, ""
        self.trigger = DeploymentStatusTrigger.CONFIG_UPDATE_STARTED
        ac = spec.config.autoscaling_config
        if ac is None:
            self.policy = self.metrics = None
            self.target = spec.config.num_replicas
        elif old.config.autoscaling_config != ac or self.policy is None:
            self.policy = AutoscalingPolicy(ac)
            self.metrics = MetricsWindow(ac.look_back_period_s,
                                         stale_after_s=max(3 * ac.metrics_interval_s, 2.0))
            self.target = max(ac.min_replicas, min(ac.max_replicas, self.target or
                                                   ac.start_replicas()))

    def live(self):
        return [r for r in self.replicas if r.state != STOPPING]

    def routable(self):
        return [r for r in self.replicas if r.state == RUNNING]

    def status(self, now):
        cur = [r for r in self.replicas if r.version == self.spec.code_version]
        running = sum(1 for r in cur if r.state == RUNNING)
        old = [r for r in self.replicas if r.version != self.spec.code_version]
        if self.failed:
            return DeploymentStatus.DEPLOY_FAILED
        if now < self.unhealthy_until and running < self.target:
            return DeploymentStatus.UNHEALTHY
        if running == self.target and not old and len(cur) == running:
            return DeploymentStatus.HEALTHY
        if self.policy is not None and self.trigger == DeploymentStatusTrigger.AUTOSCALING:
            return (DeploymentStatus.UPSCALING if len(cur) < self.target
                    else DeploymentStatus.DOWNSCALING)
        return DeploymentStatus.UPDATING


class _App:
    def __init__(self, name, route_prefix, ingress):
        self.name = name
        self.route_prefix = route_prefix
        self.ingress = ingress
        self.deployments: Dict[str, _Deployment] = {}
        self.deployed_at = time.time()
        self.deleting = False


class ServeController:
    def __init__(self, head_node_id):
        self.head_node_id = head_node_id
        self.apps: Dict[str, _App] = {}
        self.versions: Dict[tuple, int] = {}
        self._counter = itertools.count(1)
        self._rid = itertools.count(1)
        self._changed = None
        self.proxy = None
        self.proxy_port = None
        self.http = None
        self._loop_task = None
        self._replica_cls = None
        self._proxy_check = None
        self._proxy_check_at = 0.0
        self._shutting_down = False

    # start-up -----------------------------------------------------------------
    async def start(self, http_options):
        if self._loop_task is None:
            self._changed = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run())
        if self.proxy is None and http_options is not None:
            self.http = http_options
            await self._start_proxy()
        return self.proxy_port

    async def _start_proxy(self):
        from pyray.serve._proxy import ServeProxy
        from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        me = pyray.get_runtime_context().current_actor
        proxy = pyray.remote(ServeProxy).options(
            name=PROXY_NAME, namespace=SERVE_NAMESPACE, lifetime="detached", num_cpus=0,
            max_concurrency=100000, max_restarts=0, enable_task_events=False,
            scheduling_strategy=NodeAffinitySchedulingStrategy(self.head_node_id,
                                                               soft=False)).remote()
        try:
            self.proxy_port = await proxy.start.remote(self.http.host, self.http.port, me,
                                                       self.http.keep_alive_timeout_s)
        except Exception:
            pyray.kill(proxy)
            raise
        self.proxy = proxy
        await self._push_routes()

    async def _check_proxy(self, now):
        """Pings the proxy every second; a dead one is started again."""
        if self.http is None or self._shutting_down:
            return
        if self.proxy is None:   # a restart that failed: again every second
            if now >= self._proxy_check_at:
                self._proxy_check_at = now + 1.0
                try:
                    await self._start_proxy()
                except Exception:  # noqa: BLE001
                    log.exception("restarting the HTTP proxy failed")
            return
        fut = self._proxy_check
        if fut is None:
            if now >= self._proxy_check_at:
                self._proxy_check_at = now + 1.0
                self._proxy_check = self.proxy.ready.remote().future()
            return
        if not fut.done():
            return
        self._proxy_check = None
        if fut.exception() is None:
            return
        log.warning("the HTTP proxy died (%s): starting a new one", fut.exception())
        self.proxy = None
        try:
            await self._start_proxy()
        except Exception:  # noqa: BLE001 - tried again a second later
            log.exception("restarting the HTTP proxy failed")
            self._proxy_check_at = now + 1.0

    async def ping(self):
        return True

    async def http_config(self):
        return self.http

    # applications ------------------------------------------------------------
    async def deploy_application(self, name, route_prefix, ingress, specs):
        for other in self.apps.values():
            if other.name != name and route_prefix is not None and \
                    other.route_prefix == route_prefix and not other.deleting:
                raise ValueError(f"Prefix {route_prefix} is being used by application "
                                 f"\"{other.name}\". Failed to deploy application \"{name}\".")
        app = self.apps.get(name)
        if app is None or app.deleting:
            app = self.apps[name] = _App(name, route_prefix, ingress)
        app.route_prefix, app.ingress, app.deployed_at = route_prefix, ingress, time.time()
        new = {s.name: s for s in specs}
        for dname, d in list(app.deployments.items()):
            if dname not in new:
                d.deleting = True
                d.target = 0
        for s in specs:
            d = app.deployments.get(s.name)
            if d is None or d.deleting:
                app.deployments[s.name] = _Deployment(s)
            else:
                d.update(s)
            self._publish((name, s.name))
        await self._push_routes()
        return True

    async def delete_application(self, name):
        app = self.apps.get(name)
        if app is None:
            return False
        app.deleting = True
        for d in app.deployments.values():
            d.deleting = True
            d.target = 0
        await self._push_routes()
        return True

    async def list_applications(self):
        return {n: (a.route_prefix, a.ingress) for n, a in self.apps.items()}

    async def graceful_shutdown(self, timeout_s=30.0):
        self._shutting_down = True
        for name in list(self.apps):
            await self.delete_application(name)
        deadline = time.monotonic() + timeout_s
        while self.apps and time.monotonic() < deadline:
            await asyncio.sleep(TICK_S)
        for app in self.apps.values():   # past the timeout: kill what is left
            for d in app.deployments.values():
                for r in d.replicas:
                    self._kill(r)
        if self.proxy is not None:
            try:
                await asyncio.wait_for(self.proxy.stop.remote(), 5)
            except Exception:  # noqa: BLE001 - killed next anyway
                pass
            pyray.kill(self.proxy)
            self.proxy = None
        return True

    # status -------------------------------------------------------------------
    async def status(self):
        now = time.monotonic()
        apps = {}
        for name, app in self.apps.items():
            deps, msgs = {}, []
            for dname, d in app.deployments.items():
                if d.deleting and not app.deleting:
                    continue
                st = d.status(now)
                counts = {}
                for r in d.replicas:
                    s = ReplicaState.STOPPING if r.state == STOPPING else (
                        ReplicaState.RUNNING if r.state == RUNNING else ReplicaState.STARTING)
                    counts[s.value] = counts.get(s.value, 0) + 1
                deps[dname] = {"status": st.value, "status_trigger": d.trigger.value,
                               "replica_states": counts, "message": d.message}
                if st == DeploymentStatus.DEPLOY_FAILED:
                    msgs.append(f"Deployment '{dname}' in application '{name}' failed: "
                                f"{d.message}")
            sts = {x["status"] for x in deps.values()}
            if app.deleting:
                ast = ApplicationStatus.DELETING
            elif DeploymentStatus.DEPLOY_FAILED.value in sts:
                ast = ApplicationStatus.DEPLOY_FAILED
            elif DeploymentStatus.UNHEALTHY.value in sts:
                ast = ApplicationStatus.UNHEALTHY
            elif sts <= {DeploymentStatus.HEALTHY.value, DeploymentStatus.UPSCALING.value,
                         DeploymentStatus.DOWNSCALING.value} and (
                    all(self._running_any(d) or d.target == 0
                        for d in app.deployments.values())):
                ast = ApplicationStatus.RUNNING
            else:
                ast = ApplicationStatus.DEPLOYING
            apps[name] = {"status": ast.value, "message": "\n".join(msgs),
                          "last_deployed_time_s": app.deployed_at, "deployments": deps}
        proxies = {self.head_node_id: "HEALTHY"} if self.proxy is not None else {}
        return {"applications": apps, "proxies": proxies}

    @staticmethod
    def _running_any(d):
        return any(r.state == RUNNING for r in d.replicas)

    # routers: long poll, reports ----------------------------------------------
    def _publish(self, key):
        self.versions[key] = next(self._counter)
        ev, self._changed = self._changed, asyncio.Event()
        if ev is not None:
            ev.set()

    def _replica_info(self, key):
        app = self.apps.get(key[0])
        d = app.deployments.get(key[1]) if app is not None else None
        if d is None or (d.deleting and not d.replicas):
            return {"replicas": {}, "max_ongoing": 1, "max_queued": -1,
                    "unavailable": f"no deployment {key[1]!r} in application {key[0]!r}"}
        cfg = d.spec.config
        routable = d.routable()
        return {"replicas": {r.rid: r.actor for r in routable},
                "max_ongoing": cfg.max_ongoing_requests,
                "max_queued": cfg.max_queued_requests,
                "metrics_interval_s": (min(cfg.autoscaling_config.metrics_interval_s, 1.0)
                                       if cfg.autoscaling_config is not None else None),
                "unavailable": d.message if d.failed and not routable else None}

    async def listen_for_change(self, keys, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        while True:
            out = {}
            for k, v in keys.items():
                cur = self.versions.get(k, 0)
                if cur != v:
                    out[k] = (cur, self._replica_info(k))
            if out:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return {}
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                return {}

    async def report_replica_dead(self, key, rid):
        d = self._deployment(key)
        if d is not None:
            for r in d.replicas:
                if r.rid == rid:
                    r.dead = True

    async def record_handle_metrics(self, key, reporter, value, _ts):
        d = self._deployment(key)
        if d is not None and d.metrics is not None:
            d.metrics.record(reporter, time.monotonic(), value)

    def _deployment(self, key):
        app = self.apps.get(key[0])
        return app.deployments.get(key[1]) if app is not None else None

    async def _push_routes(self):
        if self.proxy is None:
            return
        routes = {a.route_prefix: (a.name, a.ingress) for a in self.apps.values()
                  if a.route_prefix is not None and not a.deleting}
        try:
            await self.proxy.update_routes.remote(routes)
        except Exception:  # noqa: BLE001
            log.exception("pushing routes to the proxy failed")

    # the control loop ---------------------------------------------------------
    async def _run(self):
        while True:
            try:
                await self._tick()
            except Exception:  # noqa: BLE001 - the loop must go on
                log.exception("serve controller tick failed")
            await asyncio.sleep(TICK_S)

    async def _tick(self):
        now = time.monotonic()
        await self._check_proxy(now)
        gone = []
        for app in list(self.apps.values()):
            for dname, d in list(app.deployments.items()):
                key = (app.name, dname)
                if self._reconcile(key, d, now):
                    self._publish(key)
                if d.deleting and not d.replicas:
                    del app.deployments[dname]
                    self._publish(key)
            if app.deleting and not app.deployments:
                gone.append(app.name)
        for name in gone:
            if self.apps.get(name) is not None and self.apps[name].deleting:
                del self.apps[name]

    def _reconcile(self, key, d, now) -> bool:
        """One step toward the target; True when the routable set changed."""
        changed = False
        cfg = d.spec.config
        for r in list(d.replicas):
            if r.state == STARTING and r.init_fut is not None and r.init_fut.done():
                err = r.init_fut.exception()
                if err is None:
                    r.state, r.health_at = RUNNING, now
                    r.config_version = d.config_version
                    d.failures = 0
                    changed = True
                else:
                    d.failures += 1
                    d.message = (f"The deployment failed to start {d.failures} time(s) in a "
                                 f"row. This may be due to a problem with its constructor or "
                                 f"initial health check failing. Error:\n{_err_text(err)}")
                    d.trigger = DeploymentStatusTrigger.REPLICA_STARTUP_FAILED
                    if d.failures >= cfg.max_constructor_retry_count:
                        d.failed = True
                        changed = True
                    d.replicas.remove(r)
                    self._kill(r)
            elif r.state == RUNNING:
                bad = r.dead
                if not bad and r.health_fut is not None:
                    if r.health_fut.done():
                        bad = r.health_fut.exception() is not None
                        if bad:
                            log.warning("replica %s failed its health check: %s", r.rid,
                                        r.health_fut.exception())
                        r.health_fut = None
                    elif now - r.health_at > cfg.health_check_timeout_s:
                        log.warning("replica %s health check timed out", r.rid)
                        bad = True
                if not bad and r.health_fut is None and \
                        now - r.health_at >= cfg.health_check_period_s:
                    r.health_at = now
                    r.health_fut = r.actor.check_health.remote().future()
                if bad:
                    if r.dead:      # gone already
                        d.replicas.remove(r)
                        self._kill(r)
                    else:           # out of the routers' set first, then stopped
                        self._stop(d, r, now)
                    d.unhealthy_until = now + 1.0
                    d.trigger = DeploymentStatusTrigger.HEALTH_CHECK_FAILED
                    changed = True
                    continue
                if r.reconf_fut is not None and r.reconf_fut.done():
                    if r.reconf_fut.exception() is not None:
                        d.message = f"reconfigure failed: {_err_text(r.reconf_fut.exception())}"
                    r.reconf_fut = None
                if r.reconf_fut is None and r.config_version != d.config_version and \
                        r.version == d.spec.code_version:
                    r.config_version = d.config_version
                    r.reconf_fut = r.actor.reconfigure.remote(cfg.user_config).future()
            elif r.state == STOPPING:
                if (r.stop_fut is not None and r.stop_fut.done()) or now > r.stop_deadline:
                    d.replicas.remove(r)
                    self._kill(r)

        if d.policy is not None and not d.deleting:
            load = d.metrics.total(now)
            new_target = d.policy.decide(now, d.target, load)
            if new_target != d.target:
                log.info("autoscaling %s from %d to %d replicas (load %.2f)", key, d.target,
                         new_target, load or 0.0)
                d.target = new_target
                d.trigger = DeploymentStatusTrigger.AUTOSCALING

        ver = d.spec.code_version
        cur_starting = [r for r in d.replicas if r.version == ver and r.state == STARTING]
        cur_running = [r for r in d.replicas if r.version == ver and r.state == RUNNING]
        old_starting = [r for r in d.replicas if r.version != ver and r.state == STARTING]
        old_running = [r for r in d.replicas if r.version != ver and r.state == RUNNING]
        for r in old_starting:
            self._stop(d, r, now)
        start, stop_old, stop_cur = plan_replicas(d.target, len(cur_starting),
                                                  len(cur_running), len(old_running))
        if d.failed:
            start = 0
        for _ in range(start):
            try:
                self._start(key, d)
            except Exception as e:  # noqa: BLE001 - bad actor options: reported, not retried
                log.exception("starting a replica of %s failed", key)
                d.failed, d.message = True, f"Starting a replica failed: {_err_text(e)}"
                d.trigger = DeploymentStatusTrigger.REPLICA_STARTUP_FAILED
                changed = True
                break
        for r in old_running[:stop_old]:
            self._stop(d, r, now)
            changed = True
        victims = (cur_starting + cur_running)[::-1][:stop_cur]
        for r in victims:
            changed = changed or r.state == RUNNING
            self._stop(d, r, now)
        if d.status(now) == DeploymentStatus.HEALTHY and d.trigger in (
                DeploymentStatusTrigger.CONFIG_UPDATE_STARTED,
                DeploymentStatusTrigger.AUTOSCALING):
            d.trigger = DeploymentStatusTrigger.CONFIG_UPDATE_COMPLETED
        return changed

    def _start(self, key, d):
        from pyray.serve._replica import ServeReplica
        if self._replica_cls is None:
            self._replica_cls = pyray.remote(ServeReplica)
        spec = d.spec
        rid = f"{next(self._rid)}{os.urandom(3).hex()}"
        opts = dict(spec.ray_actor_options)
        opts.setdefault("num_cpus", 1)
        actor = self._replica_cls.options(
            name=f"SERVE_REPLICA::{key[0]}#{key[1]}#{rid}", namespace=SERVE_NAMESPACE,
            lifetime="detached", max_concurrency=100000, max_restarts=0,
            enable_task_events=False, **opts).remote(key[0], key[1], rid, spec.serialized)
        r = _Replica(rid, actor, spec.code_version)
        uc = spec.config.user_config
        r.init_fut = actor.initialize.remote(uc is not None, uc).future()
        d.replicas.append(r)

    def _stop(self, d, r, now):
        if r.state == STOPPING:
            return
        was_running = r.state == RUNNING
        r.state = STOPPING
        cfg = d.spec.config
        if was_running:
            r.stop_deadline = now + cfg.graceful_shutdown_timeout_s + \
                cfg.graceful_shutdown_wait_loop_s + 5
            r.stop_fut = r.actor.prepare_for_shutdown.remote(
                cfg.graceful_shutdown_wait_loop_s, cfg.graceful_shutdown_timeout_s).future()
        else:
            r.stop_deadline = now

    @staticmethod
    def _kill(r):
        try:
            pyray.kill(r.actor)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _err_text(err) -> str:
    text = str(err)
    if not text:
        text = "".join(traceback.format_exception_only(type(err), err))
    return text
