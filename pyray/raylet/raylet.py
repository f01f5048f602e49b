"""The raylet: one per node.  Owns the node's object store, its worker pool
and its resources; grants worker leases to owners.

Run as ``python -m pyray.raylet.raylet --session-dir ... --gcs-address ...``.
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import select
import time

from pyray._private import daemon, errors, ids  # noqa: F401  (imports before the zygote fork)
from pyray._private.config import Config
from pyray._private.protocol import (CANCEL_LEASE_REQUEST, CLUSTER_VIEW, DRIVER_EXIT, GET_NODES,
                                     KILL_WORKER, LEASE_FAILED, LEASE_GRANTED, LEASE_INFEASIBLE,
                                     LEASE_PG_REMOVED, LEASE_SPILLBACK, NODE_DEAD, NODE_HEARTBEAT,
                                     NODE_RESOURCES, OWNER_DIED, PG_RESERVE, PG_RETURN, PING,
                                     PROTOCOL_VERSION, RAYLET_INFO, RECLAIM_LEASE, REGISTER_NODE,
                                     REGISTER_WORKER, REQUEST_LEASE, REQUEST_LEASE_SPILLED,
                                     RESPONSE, RETURN_LEASE, SHUTDOWN, UNREGISTER_NODE,
                                     WATCH_DRIVER, WORKER_BLOCKED, WORKER_DIED, WORKER_UNBLOCKED,
                                     Op)
from pyray._private.node import detect_accelerator_type
from pyray._private.resources import (ACCEL_PREFIX, BUNDLE_MARKER, group_resource,
                                      validate_shape)
from pyray._private.scheduling_strategies import ACCELERATOR_LABEL, NODE_ID_LABEL
from pyray._private.runtime_env import env_of_key
from pyray._private.server import Server
from pyray.raylet import cluster_view as cv
from pyray.raylet import memory_monitor as mm
from pyray.raylet import scheduler as sched
from pyray.raylet.resources import NodeResources
from pyray.raylet.scheduler import Request, check_request
from pyray.raylet.worker_pool import WorkerPool
from pyray.raylet.zygote import Zygote

log = logging.getLogger("pyray.raylet")


class LeaseInfo:
    __slots__ = ("lease_id", "worker_id", "owner", "shape", "gpu_ids", "blocked", "reclaim_sent",
                 "job_id", "origin", "key")

    def __init__(self, lease_id, worker_id, owner, shape, gpu_ids, job_id):
        self.lease_id = lease_id
        self.worker_id = worker_id
        self.owner = owner
        self.shape = shape
        self.gpu_ids = gpu_ids
        self.blocked = False
        self.reclaim_sent = False
        self.job_id = job_id
        self.origin = None          # the owner's node, when it is another one
        self.key = None             # the scheduling key it was granted for


class Raylet(Server):
    poll_ms = 50

    def __init__(self, args, config):
        import plasma
        super().__init__()
        self.config = config
        self.session_dir = args.session_dir
        self.node_id = bytes.fromhex(args.node_id) if args.node_id else ids.random_id()
        total = {"CPU": args.num_cpus, "GPU": args.num_gpus,
                 "memory": args.memory, "object_store_memory": args.object_store_memory}
        total.update(json.loads(args.resources or "{}"))
        labels = json.loads(args.labels or "{}")
        if args.num_gpus and not any(k.startswith(ACCEL_PREFIX) for k in total):
            accel = detect_accelerator_type()
            if accel:
                total[ACCEL_PREFIX + accel] = 1.0
        # as Ray: every node is labelled with its id, and with its
        # accelerator type where it has one (docs/cluster.md, "Labels")
        labels.setdefault(NODE_ID_LABEL, self.node_id.hex())
        accel = [k[len(ACCEL_PREFIX):] for k in total if k.startswith(ACCEL_PREFIX)]
        if accel:
            labels.setdefault(ACCELERATOR_LABEL, accel[0])
        self.labels = labels
        total[f"node:{args.node_ip}"] = 1.0
        if args.head:
            total["node:__internal_head__"] = 1.0
        self.res = NodeResources(total)
        spill_dir = os.path.join(config.object_spilling_directory or
                                 os.path.join(self.session_dir, "spill"),
                                 self.node_id.hex()[:12])
        self.spill_dir = spill_dir
        os.makedirs(spill_dir, exist_ok=True)
        self.store = plasma.Store.create(capacity=args.object_store_memory, spill_dir=spill_dir)
        self.addr = f"ipc://{self.session_dir}/sockets/raylet-{self.node_id.hex()[:12]}"
        self.node = {
            "node_id": self.node_id, "raylet_addr": self.addr, "gcs_addr": args.gcs_address,
            "store_name": self.store.name, "session_dir": self.session_dir,
            "node_ip": args.node_ip, "resources": dict(self.res.total), "pid": os.getpid(),
            "head": bool(args.head), "tcp": bool(args.tcp), "labels": labels,
            "om_addr": f"ipc://{self.session_dir}/sockets/om-{self.node_id.hex()[:12]}",
        }
        # fork the zygote before any thread or zmq context exists
        zygote = Zygote((self.node, config, self.session_dir))
        self.pool = WorkerPool(zygote, args.num_cpus, config.idle_worker_timeout_s)
        import zmq
        from pyray._private.transport import Outbox, bind_node_inbox
        self.ctx = zmq.Context()
        self.ctx.setsockopt(zmq.RECONNECT_IVL, 10)     # the GCS may bind just after us
        # a node other machines reach listens on tcp (node["tcp"]): the
        # addresses are known once bound, and the zygote learns them
        self.inbox, self.addr = bind_node_inbox(self.ctx, self.node, self.addr)
        self.node["raylet_addr"] = self.addr
        self.out = Outbox(self.ctx)
        from pyray.raylet.object_manager import ObjectManager
        self.objects = ObjectManager(self.ctx, self.node, self.store.name,
                                     self.node_id, lambda: self.view.peers, self.config)
        self.node["om_addr"] = self.objects.addr
        if self.node["tcp"]:
            zygote.update_node({"raylet_addr": self.addr, "om_addr": self.objects.addr})
        self.leases = {}
        self.requests = collections.OrderedDict()
        # lease ids start from a node prefix: unique across the cluster
        self.lease_counter = cv.lease_id_base(self.node_id)
        self.view = cv.ClusterView(self.node_id, labels)
        self.view_refresh = None    # (req id, sent at) of a node-table request in flight
        self.registration = None    # (request id, ready fd, sent at) until the GCS answers
        self.gcs_incarnation = None  # the run of the GCS we are registered with
        self.gcs_answered = time.monotonic()   # its last answer to a heartbeat
        self.gcs_silent = False     # it stopped answering (logged once)
        self.hb_counter = 0
        self.last_total_sent = dict(self.res.total)
        self.res_dirty = True
        self.last_res_sent = 0.0
        self.removed_pgs = collections.OrderedDict()   # hex ids of removed placement groups
        # runtime envs (docs/runtime_env.md): set up off this loop, once per node
        from pyray._private.runtime_env.node_setup import EnvManager
        self.envs = EnvManager(self.ctx, self.session_dir, args.gcs_address, self.addr)
        self.env_markers = {}       # env hash -> the marker it came with
        self.handlers = {
            Op.REGISTER_WORKER: self.h_register_worker,
            Op.REQUEST_LEASE: self.h_request_lease,
            Op.RETURN_LEASE: self.h_return_lease,
            Op.CANCEL_LEASE_REQUEST: self.h_cancel_request,
            Op.WORKER_BLOCKED: self.h_blocked,
            Op.WORKER_UNBLOCKED: self.h_unblocked,
            Op.KILL_WORKER: self.h_kill_worker,
            Op.RAYLET_INFO: self.h_info,
            Op.LIST_WORKERS: self.request(self._list_workers),
            Op.DRIVER_EXIT: self.h_driver_exit,
            Op.SHUTDOWN: self.h_shutdown,
            Op.PING: self.h_ping,
            Op.PG_RESERVE: self.h_pg_reserve,
            Op.PG_RETURN: self.h_pg_return,
            Op.RESPONSE: self.h_response,
            Op.REQUEST_LEASE_SPILLED: self.h_request_spilled,
            Op.CLUSTER_VIEW: self.h_cluster_view,
            Op.NODE_DEAD: self.h_node_dead,
            Op.OWNER_DIED: self.h_owner_died,
            Op.WATCH_DRIVER: self.h_watch_driver,
            Op.METRICS_REPORT: self.h_metrics_report,
        }
        self.ended_jobs = set()     # jobs whose driver exited: their requests are dropped
        self.drivers = {}           # job id -> pidfd of its driver, on this node
        self.every(0.5, self.check_drivers)
        self.watch(self.pool.fd, self.on_zygote_events)
        self.watch(self.envs.wake_r, self.on_env_setup)
        self.every(config.heartbeat_interval_s, self.tick, first=0.0)
        self.oom_killed = {}        # worker id -> why the memory monitor killed it
        self.oom_pending = None     # (worker id, when) of the last one, until it exits
        self.oom_idle_warned = 0.0
        if config.memory_monitor_refresh_ms > 0 and config.memory_usage_threshold < 1.0:
            self.every(config.memory_monitor_refresh_ms / 1000.0, self.check_memory)
        self.metrics = None             # the node's Prometheus endpoint (docs/metrics.md)
        if args.metrics_export_port is not None:
            from pyray.raylet.metrics_agent import GCS_POLL_S, MetricsAgent
            self.metrics = MetricsAgent(self, args.metrics_export_port, args.node_ip)
            self.node["metrics_export_port"] = self.metrics.port
            if args.head:
                self.every(GCS_POLL_S, self.metrics.poll_gcs, first=0.0)
        self.pool.fill()

    # ------------------------------------------------------------------

    def respond(self, addr, req_id, payload, ok=True):
        self.out.send(addr, RESPONSE.make(req_id, ok, payload))

    def h_ping(self, msg, frames):
        _, req_id, reply_to = PING.parse(msg)
        self.respond(reply_to, req_id, "pong")

    def h_info(self, msg, frames):
        _, req_id, reply_to = RAYLET_INFO.parse(msg)
        self.respond(reply_to, req_id, {"node": self.node, "total": dict(self.res.total),
                                        "available": self.res.snapshot(),
                                        "store": self.store.stats(),
                                        "num_workers": len(self.pool),
                                        "memory_usage": mm.node_memory(),
                                        "memory_usage_threshold":
                                            self.config.memory_usage_threshold})

    def _list_workers(self):
        """The worker pool, for the state API (pyray.util.state.list_workers)."""
        return {"node_id": self.node["node_id"], "node_ip": self.node.get("node_ip"),
                "workers": self.pool.rows()}

    def h_register_worker(self, msg, frames):
        _, version, wid, pid, task_addr, ctl_addr, chan_path = REGISTER_WORKER.parse(msg)
        if version != PROTOCOL_VERSION or self.pool.get(wid) is None:
            log.warning("refused worker %s (protocol %s)", wid.hex(), version)
            return
        w = self.pool.register(wid, pid, task_addr, ctl_addr, chan_path)
        if w is not None and w.env is not None:
            self.envs.worker_started(w.env)
        self.schedule()

    def h_request_lease(self, msg, frames):
        _, req_id, owner, shape, job_id, driver_addr, key = REQUEST_LEASE.parse(msg)
        check_request(owner, shape, key)
        if job_id in self.ended_jobs:
            return
        req = Request(req_id, owner, shape, job_id, driver_addr, key)
        env = env_of_key(key)
        if env is not None:
            req.env = env[1]
            self.env_markers[env[1]] = env
        route = cv.parse_key(key)
        if route is not None:
            req.route = route
            req.view_seq = self.view.seq
        self.requests[(owner, req_id)] = req
        self.schedule()

    def h_request_spilled(self, msg, frames):
        """A lease request another raylet sent here (spillback)."""
        _, origin, mode, req_id, owner, shape, job_id, driver_addr, key = \
            REQUEST_LEASE_SPILLED.parse(msg)
        check_request(owner, shape, key)
        if job_id in self.ended_jobs:
            return
        req = Request(req_id, owner, shape, job_id, driver_addr, key)
        env = env_of_key(key)
        if env is not None:
            req.env = env[1]
            self.env_markers[env[1]] = env
        req.route = cv.parse_key(key) or (None, None)
        req.mode = mode if mode in (cv.QUEUE, cv.GRANT_OR_REJECT) else cv.GRANT_OR_REJECT
        req.origin = origin if origin != self.node_id else None
        req.view_seq = self.view.seq
        self.requests[(owner, req_id)] = req
        self.schedule()

    def h_cancel_request(self, msg, frames):
        _, req_id, owner = CANCEL_LEASE_REQUEST.parse(msg)
        if owner is not None:
            self.requests.pop((owner, req_id), None)
            return
        for k in [k for k in self.requests if k[1] == req_id]:
            del self.requests[k]

    def h_return_lease(self, msg, frames):
        _, lease_id, disconnect = RETURN_LEASE.parse(msg)
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return
        self._release(lease)
        w = self.pool.get(lease.worker_id)
        if w is not None:
            w.lease_id = None
            if disconnect:
                self.pool.kill(w)
            else:
                self.pool.make_idle(w)
        self.schedule()

    def _release(self, lease):
        if lease.blocked:
            self.res.unlend(lease.shape)
        self.res.release(lease.shape, lease.gpu_ids)
        self.res_dirty = True

    def h_blocked(self, msg, frames):
        w = self.pool.get(WORKER_BLOCKED.parse(msg).worker_id)
        lease = self.leases.get(w.lease_id) if w is not None else None
        if lease is not None and not lease.blocked:
            lease.blocked = True
            self.res.lend(lease.shape)
            self.schedule()

    def h_unblocked(self, msg, frames):
        w = self.pool.get(WORKER_UNBLOCKED.parse(msg).worker_id)
        lease = self.leases.get(w.lease_id) if w is not None else None
        if lease is not None and lease.blocked:
            lease.blocked = False
            self.res.unlend(lease.shape)

    def h_kill_worker(self, msg, frames):
        w = self.pool.get(KILL_WORKER.parse(msg).worker_id)
        if w is not None:
            self.pool.kill(w)

    def h_metrics_report(self, msg, frames):
        """User metrics of a process on this node (dropped when the node
        exports none: it was started without a metrics export port)."""
        if self.metrics is not None:
            self.metrics.h_report(msg, frames)

    def h_driver_exit(self, msg, frames):
        self._job_ended(DRIVER_EXIT.parse(msg).job_id)

    def _job_ended(self, job_id):
        """A job's driver exited: its workers stop, and the lease requests
        of the job (still queued here, or arriving later) are dropped, so
        that none is granted to an owner that is gone."""
        self.ended_jobs.add(job_id)
        fd = self.drivers.pop(job_id, None)
        if fd is not None:
            os.close(fd)
        self.pool.kill_job(job_id)
        self._take_back([], [k for k, r in self.requests.items() if r.job_id == job_id])
        self.schedule()

    def h_watch_driver(self, msg, frames):
        m = WATCH_DRIVER.parse(msg)
        if m.job_id in self.ended_jobs or m.job_id in self.drivers:
            return
        try:
            self.drivers[m.job_id] = os.pidfd_open(m.pid)
        except (OSError, AttributeError):
            return                  # already gone, or no pidfd: DRIVER_EXIT only

    def check_drivers(self, now):
        """A timer: a driver that died without DRIVER_EXIT (SIGKILL, a
        crash) ends its job as if it had exited: here, and through the GCS
        (its non-detached actors and placement groups, the other nodes)."""
        if not self.drivers:
            return
        gone, _, _ = select.select(list(self.drivers.values()), [], [], 0)
        if not gone:
            return
        for job_id in [j for j, fd in self.drivers.items() if fd in gone]:
            self._job_ended(job_id)
            self.out.send(self.node["gcs_addr"], DRIVER_EXIT.make(job_id))

    def h_shutdown(self, msg, frames):
        self.stopping = True
        m = SHUTDOWN.parse(msg)
        if isinstance(m.reply_to, str):
            self.respond(m.reply_to, m.req_id, True)

    # ---- placement groups (docs/placement_groups.md) ----------------------
    def h_pg_reserve(self, msg, frames):
        """Takes bundles out of the free pool for a group (bundles None:
        commits the ones taken earlier)."""
        _, req_id, reply_to, pg_id, bundles, commit = PG_RESERVE.parse(msg)
        pg_hex = pg_id.hex()
        if bundles is None:
            err = None
            self.res.commit_bundles(pg_hex)
        else:
            bundles = [(int(i), dict(b)) for i, b in bundles]
            for _i, b in bundles:
                validate_shape(b, "bundle")
            err = self.res.reserve_bundles(pg_hex, bundles, commit)
        self.res_dirty = True
        if err is None:
            self.respond(reply_to, req_id, {"ok": True})
            if commit:
                self.schedule()
            return
        self.respond(reply_to, req_id, {"ok": False, "message": err,
                                        "available": self.res.snapshot()})
        # idle leases kept by owners hold resources: ask for them back
        for lease in self.leases.values():
            if not lease.reclaim_sent:
                lease.reclaim_sent = True
                self.out.send(lease.owner, RECLAIM_LEASE.make(lease.lease_id))

    def h_pg_return(self, msg, frames):
        """A group's bundles go back to the free pool.  If the group was
        removed, the work running in it is killed and requests for it fail."""
        _, pg_id, removed = PG_RETURN.parse(msg)
        pg_hex = pg_id.hex()
        self.res.return_bundles(pg_hex)
        self.res_dirty = True
        if removed:
            self.removed_pgs[pg_hex] = None
            while len(self.removed_pgs) > 10000:
                self.removed_pgs.popitem(last=False)
            marker = group_resource(BUNDLE_MARKER, pg_hex)
            for lease in self.leases.values():
                w = self.pool.get(lease.worker_id)
                if marker in lease.shape and w is not None:
                    self.pool.kill(w)
        # requests placed in a removed group fail in the pass (PG_REMOVED)
        self.schedule()

    # ------------------------------------------------------------------
    def schedule(self):
        """Carries out the planner's decisions (pyray.raylet.scheduler)."""
        if not self.requests:
            return
        requests = self.requests
        env_need = {}
        actions, spawn, blocked = sched.plan(requests, self.res, self.view, self.pool.take_idle,
                                             self.pool.starting, self.removed_pgs, env_need)
        send = self.out.send
        for code, key, req, arg, extra in actions:
            if code == sched.GRANT:
                del requests[key]
                self._grant(req, arg, extra)
            elif code == sched.SPILL:
                del requests[key]
                send(req.owner, LEASE_SPILLBACK.make(req.req_id, arg.raylet_addr, arg.node_id,
                                                     extra))
            elif code == sched.REJECT:
                del requests[key]
                send(req.owner, LEASE_SPILLBACK.make(req.req_id, None, None, None))
            elif code == sched.FAIL:
                del requests[key]
                send(req.owner, LEASE_FAILED.make(req.req_id, arg))
            elif code == sched.PG_REMOVED:
                del requests[key]
                send(req.owner, LEASE_PG_REMOVED.make(
                    req.req_id, f"The placement group {arg} of this task was removed."))
            elif code == sched.INFEASIBLE:
                send(req.owner, LEASE_INFEASIBLE.make(
                    req.req_id, arg or sched.infeasible_message(req.shape, self.res.total)))
            elif code == sched.REFRESH:
                self._refresh_view()
        if spawn:
            self.pool.spawn_more(spawn)
        if env_need:
            self._env_workers(env_need)
        if blocked:
            for lease in sched.reclaim(blocked, self.leases.values()):
                send(lease.owner, RECLAIM_LEASE.make(lease.lease_id))

    # ---- runtime envs (docs/runtime_env.md) ---------------------------------
    def _env_workers(self, env_need):
        """Requests of runtime envs wait for workers: start them once the
        env is set up on this node; fail them if it cannot be."""
        from pyray._private.runtime_env.node_setup import FAILED, READY
        for h, n in env_need.items():
            st = self.envs.state(self.env_markers[h])
            if st.status == READY:
                for _ in range(n - self.pool.starting_env.get(h, 0)):
                    self.pool.spawn_env(h, st.context)
            elif st.status == FAILED:
                payload = errors.encode(st.error)
                for k in [k for k, r in self.requests.items() if r.env == h]:
                    req = self.requests.pop(k)
                    self.out.send(req.owner, LEASE_FAILED.make(req.req_id, str(st.error),
                                                               payload))

    def on_env_setup(self):
        """A runtime env's setup ended (ready or failed)."""
        self.envs.drain_wakeups()
        self.schedule()

    def _grant(self, req, w, gpu_ids):
        self.lease_counter += 1
        lid = self.lease_counter
        self.res_dirty = True
        lease = LeaseInfo(lid, w.worker_id, req.owner, req.shape, gpu_ids, req.job_id)
        lease.origin = req.origin
        lease.key = req.key
        self.leases[lid] = lease
        self.pool.lease(w, lid, req.job_id)
        self.out.send(req.owner, LEASE_GRANTED.make(req.req_id, lid, w.worker_id, w.task_addr,
                                                    w.ctl_addr, gpu_ids, w.pid, w.chan_path))

    def _refresh_view(self):
        if self.view_refresh is None:
            self.lease_counter += 1      # a request id no other request uses
            self.view_refresh = (self.lease_counter, time.monotonic())
            self.out.send(self.node["gcs_addr"], GET_NODES.make(self.lease_counter, self.addr))

    # ---- the GCS: registration and heartbeats (docs/cluster.md) ----------
    def _register(self, ready_fd=None):
        """Registers with the GCS (again after it restarted: the same node
        id, the current totals)."""
        self.lease_counter += 1
        self.registration = (self.lease_counter, ready_fd, time.monotonic())
        info = dict(self.node, resources=dict(self.res.total))
        self.out.send(self.node["gcs_addr"], REGISTER_NODE.make(self.lease_counter, self.addr,
                                                                info))
        self.report_resources(time.monotonic(), force=True)

    def _gcs_tick(self, now):
        """Once a heartbeat: a heartbeat request (its answer names the run
        of the GCS), or the registration again if it went unanswered.
        While the GCS does not answer, everything else carries on."""
        hb = self.config.heartbeat_interval_s
        if self.registration is not None:
            if now - self.registration[2] > 2 * hb:
                self._register(self.registration[1])
        else:
            self.hb_counter += 1
            self.out.send(self.node["gcs_addr"], NODE_HEARTBEAT.make(("hb", self.hb_counter),
                                                                     self.addr, self.node_id))
        silent = now - self.gcs_answered
        if not self.gcs_silent and silent > 3 * hb + 0.5:
            self.gcs_silent = True
            log.warning("the GCS has not answered for %.1fs; work on this node carries on, "
                        "and the node registers again when it is back (within %ss)", silent,
                        self.config.gcs_reconnect_timeout_s or "no limit")
        limit = self.config.gcs_reconnect_timeout_s
        if limit > 0 and silent > limit:
            log.error("the GCS at %s has not answered for %.0fs "
                      "(gcs_reconnect_timeout_s): stopping this node", self.node["gcs_addr"],
                      silent)
            self.stopping = True

    def _gcs_answered(self, incarnation):
        self.gcs_answered = time.monotonic()
        if self.gcs_silent:
            self.gcs_silent = False
            log.info("the GCS answers again")
        if incarnation != self.gcs_incarnation and self.registration is None:
            log.info("the GCS restarted; registering again")
            self._register()

    def h_response(self, msg, frames):
        _, req_id, ok, payload = RESPONSE.parse(msg)
        if isinstance(req_id, tuple) and req_id[:1] == ("hb",):
            if ok:
                self._gcs_answered(payload)
            return
        if isinstance(req_id, tuple) and req_id[:1] == ("met",):
            if self.metrics is not None:
                self.metrics.on_gcs_response(req_id, ok, payload)
            return
        if isinstance(req_id, tuple) and req_id[:1] == ("rte",):
            self.envs.on_response(req_id, ok, payload)
            return
        if self.registration is not None and req_id == self.registration[0]:
            ready_fd, self.registration = self.registration[1], None
            if not ok:
                log.error("the GCS refused this node's registration: %s", errors.decode(payload))
                return
            if isinstance(payload, dict):
                self.gcs_incarnation = payload.get("incarnation")
            self.gcs_answered = time.monotonic()
            if ready_fd is not None:
                os.write(ready_fd, (json.dumps({"raylet_addr": self.addr,
                                                "om_addr": self.node["om_addr"],
                                                "node_id": self.node_id.hex(),
                                                "store_name": self.store.name,
                                                "metrics_export_port":
                                                    self.node.get("metrics_export_port")})
                                     + "\n").encode())
                os.close(ready_fd)
        elif self.view_refresh is not None and req_id == self.view_refresh[0]:
            self.view_refresh = None
            if ok and isinstance(payload, list):
                self._update_view(payload)
            else:
                self.view.seq += 1
            self.schedule()

    def h_cluster_view(self, msg, frames):
        nodes = CLUSTER_VIEW.parse(msg).nodes
        if isinstance(nodes, list):
            self._update_view(nodes)
            self.schedule()

    def _update_view(self, nodes):
        for node_id in self.view.update(nodes):
            if node_id == self.node_id:
                self._declared_dead()
            else:
                self._on_node_dead(node_id)

    def h_node_dead(self, msg, frames):
        node_id = NODE_DEAD.parse(msg).node_id
        if node_id == self.node_id:
            self._declared_dead()
        elif node_id not in self.view.dead:
            self.view.mark_dead(node_id)
            self._on_node_dead(node_id)
            self.schedule()

    def _declared_dead(self):
        if not self.stopping:
            log.error("the GCS declared this node dead (it missed its heartbeats); stopping")
            self.stopping = True

    def _on_node_dead(self, node_id):
        """Another node died: our workers (owners) hear of it, leases and
        requests of owners that lived there are dropped."""
        msg = NODE_DEAD.make(node_id)
        self.out.send(self.objects.addr, msg)
        for w in self.pool.values():
            if w.ctl_addr is not None:
                self.out.send(w.ctl_addr, msg)
        self._take_back([l for l in self.leases.values() if l.origin == node_id],
                        [k for k, r in self.requests.items() if r.origin == node_id])

    # ------------------------------------------------------------------
    def on_zygote_events(self):
        exited, eof = self.pool.poll_events()
        for w, reason in exited:
            self._worker_exited(w, reason)
        if eof and not self.stopping:
            log.error("the worker zygote exited; stopping the raylet")
            self.stopping = True

    def _worker_exited(self, w, reason):
        """A worker is gone: the lease it held goes back (its owner hears
        why), and so do the leases it held as an owner."""
        wid = w.worker_id
        oom = self.oom_killed.pop(wid, None)
        if self.oom_pending is not None and self.oom_pending[0] == wid:
            self.oom_pending = None
        if w.env is not None and w.state == "starting":
            self.envs.worker_start_failed(w.env, wid.hex()[:12])
        if w.lease_id is not None:
            lease = self.leases.pop(w.lease_id, None)
            if lease is not None:
                self._release(lease)
                self.out.send(lease.owner, WORKER_DIED.make(
                    lease.lease_id, wid, oom or reason, None if oom is None else mm.OOM))
        # leases this worker held as an owner are given back, here and on
        # the other nodes (tasks it pushed there die with it, as in Ray)
        if w.ctl_addr is not None:
            self._owner_gone(w.ctl_addr)
            for peer in self.view.peers.values():
                self.out.send(peer.raylet_addr, OWNER_DIED.make(w.ctl_addr))
        self.schedule()

    def _owner_gone(self, owner):
        """A dead owner's leases and waiting requests go."""
        self._take_back([l for l in self.leases.values() if l.owner == owner],
                        [k for k in self.requests if k[0] == owner])

    def _take_back(self, leases, request_keys):
        """Releases leases whose owner is gone (their workers are stopped:
        the tasks they run have nobody to answer to) and drops requests."""
        for lease in leases:
            self.leases.pop(lease.lease_id, None)
            self._release(lease)
            held = self.pool.get(lease.worker_id)
            if held is not None:
                held.lease_id = None
                self.pool.kill(held)
        for k in request_keys:
            del self.requests[k]

    def h_owner_died(self, msg, frames):
        owner = OWNER_DIED.parse(msg).owner
        if isinstance(owner, str):
            self._owner_gone(owner)
            self.schedule()

    def report_resources(self, now, force=False):
        if (self.res_dirty and now - self.last_res_sent > 0.05) or force:
            self.res_dirty = False
            self.last_res_sent = now
            total = None
            if self.res.total != self.last_total_sent:
                # placement-group bundles add and remove resources
                total = self.last_total_sent = dict(self.res.total)
            self.out.send(self.node["gcs_addr"],
                          NODE_RESOURCES.make(self.node_id, self.res.snapshot(), total))

    # ---- the memory monitor (pyray.raylet.memory_monitor) ---------------
    def check_memory(self, now):
        """A timer: samples the node's memory and, past the threshold,
        kills the worker the monitor's policy picks."""
        sample = mm.node_memory()
        threshold = self.config.memory_usage_threshold
        if sample is None or not mm.over_threshold(sample[0], sample[1], threshold):
            return
        used, total = sample
        candidates = []
        for lease in self.leases.values():
            w = self.pool.get(lease.worker_id)
            if w is None or w.pid is None:
                continue
            key = lease.key
            is_actor = isinstance(key, tuple) and key[:1] == ("actor",)
            # lease ids grow: the largest is the newest.  The raylet does not
            # see a task's max_retries, so task leases count as retriable
            candidates.append(mm.Candidate(w.worker_id, w.pid, lease.lease_id, not is_actor,
                                           is_actor))
        victim = mm.decide(used, total, threshold, candidates, self.oom_pending, now)
        if victim is None:
            if not candidates and now - self.oom_idle_warned > 10.0:
                self.oom_idle_warned = now
                log.warning("memory use on this node is %.1f%%, above memory_usage_threshold "
                            "(%s), but no worker here runs work to stop", 100 * used / total,
                            threshold)
            return
        why = mm.message(f"worker ID: {victim.worker_id.hex()}, pid={victim.pid}", used, total,
                         threshold, self.node["node_ip"], self.node_id.hex(),
                         _rss(victim.pid), victim.retriable)
        log.warning("%s", why)
        self.oom_killed[victim.worker_id] = why
        self.oom_pending = (victim.worker_id, now)
        self.pool.kill(self.pool.get(victim.worker_id))

    # ------------------------------------------------------------------
    def tick(self, now):
        """Once a heartbeat (pyray._private.server runs it)."""
        self.report_resources(now, force=True)
        self._gcs_tick(now)
        self.pool.maintain(now)
        if self.envs.envs and self.requests:
            self.schedule()      # a runtime env's setup past its deadline fails its requests
        if self.view_refresh is not None and now - self.view_refresh[1] > 2.0:
            self.view_refresh = None     # the GCS did not answer: decide anyway
            self.view.seq += 1
            self.schedule()

    def after_batch(self, now):
        self.report_resources(now)

    def run(self, ready_fd):
        self.objects.start()
        # ready once the GCS has us in its table (a handshake): a driver that
        # connects next finds this node there
        self._register(ready_fd)
        self.serve()

    def close(self):
        if self.metrics is not None:
            self.metrics.close()
        self.pool.stop()
        self.envs.close()
        self.objects.stop()
        if self.config.object_spilling_directory:
            import shutil
            shutil.rmtree(self.spill_dir, ignore_errors=True)
        try:
            self.out.send(self.node["gcs_addr"], UNREGISTER_NODE.make(self.node_id))
        except Exception:  # noqa: BLE001
            pass
        self.close_sockets(self.ctx)
        self.store.close()


def _rss(pid):
    """A process's resident memory in bytes, or None."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pyray-raylet")
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--gcs-address", required=True)
    ap.add_argument("--node-id", default="")
    ap.add_argument("--node-ip", default="127.0.0.1")
    ap.add_argument("--num-cpus", type=float, required=True)
    ap.add_argument("--num-gpus", type=float, default=0)
    ap.add_argument("--memory", type=float, default=0)
    ap.add_argument("--object-store-memory", type=int, required=True)
    ap.add_argument("--resources", default="{}")
    ap.add_argument("--labels", default="{}", help="the node's labels, a JSON object")
    ap.add_argument("--ready-fd", type=int, default=None)
    ap.add_argument("--head", action="store_true")
    ap.add_argument("--tcp", action="store_true",
                    help="listen on tcp at --node-ip (other machines join), not ipc")
    ap.add_argument("--metrics-export-port", type=int, default=None,
                    help="serve Prometheus metrics on this port (0: one the system picks)")
    ap.add_argument("--die-with-parent", action="store_true")
    args = ap.parse_args(argv)
    parent = os.getppid()
    daemon.start(args.die_with_parent)
    raylet = Raylet(args, Config.from_env())
    try:
        raylet.run(args.ready_fd)
    finally:
        if args.die_with_parent and os.getppid() != parent:
            # the driver that started this embedded cluster is gone without
            # cleaning up: remove its session directory (sockets, logs, spill)
            import shutil
            shutil.rmtree(args.session_dir, ignore_errors=True)
    daemon.exit_now()


if __name__ == "__main__":
    main()

