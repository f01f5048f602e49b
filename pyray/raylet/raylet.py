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
import signal
import sys
import time

from pyray._private import ids  # noqa: F401  (imports before the zygote fork)
from pyray._private.config import Config
from pyray._private.daemon import exit_now
from pyray._private.protocol import PROTOCOL_VERSION, Op
from pyray.raylet import cluster_view as cv
from pyray._private.resources import BUNDLE_MARKER, group_resource, pg_of_shape, validate_shape
from pyray.raylet.resources import NodeResources
from pyray.raylet.worker_pool import Zygote, set_pdeathsig

log = logging.getLogger("pyray.raylet")

IDLE, LEASED, STARTING = "idle", "leased", "starting"


class WorkerInfo:
    __slots__ = ("worker_id", "pid", "task_addr", "ctl_addr", "state", "job_id", "lease_id",
                 "idle_since", "chan_path")

    def __init__(self, worker_id):
        self.worker_id = worker_id
        self.pid = None
        self.task_addr = None
        self.ctl_addr = None
        self.chan_path = None
        self.state = STARTING
        self.job_id = None
        self.lease_id = None
        self.idle_since = time.monotonic()


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


class Request:
    __slots__ = ("req_id", "owner", "shape", "job_id", "driver_addr", "key", "warned",
                 "reclaimed", "route", "mode", "origin", "view_seq")

    def __init__(self, req_id, owner, shape, job_id, driver_addr, key):
        self.req_id = req_id
        self.owner = owner
        self.shape = shape
        self.job_id = job_id
        self.driver_addr = driver_addr
        self.key = key
        self.warned = False
        self.reclaimed = False
        self.route = None           # (strategy, locality node) when it may go elsewhere
        self.mode = None            # how another raylet sent it here (cluster_view)
        self.origin = None
        self.view_seq = 0


class Raylet:
    def __init__(self, args, config):
        import plasma
        self.config = config
        self.session_dir = args.session_dir
        self.node_id = bytes.fromhex(args.node_id) if args.node_id else ids.random_id(16)
        self.num_cpus = args.num_cpus
        total = {"CPU": args.num_cpus, "GPU": args.num_gpus,
                 "memory": args.memory, "object_store_memory": args.object_store_memory}
        total.update(json.loads(args.resources or "{}"))
        total[f"node:{args.node_ip}"] = 1.0
        if args.head:
            total["node:__internal_head__"] = 1.0
        self.res = NodeResources(total)
        spill_dir = os.path.join(self.session_dir, "spill", self.node_id.hex()[:12])
        os.makedirs(spill_dir, exist_ok=True)
        self.store = plasma.Store.create(capacity=args.object_store_memory, spill_dir=spill_dir)
        self.addr = f"ipc://{self.session_dir}/sockets/raylet-{self.node_id.hex()[:12]}"
        self.node = {
            "node_id": self.node_id, "raylet_addr": self.addr, "gcs_addr": args.gcs_address,
            "store_name": self.store.name, "session_dir": self.session_dir,
            "node_ip": args.node_ip, "resources": dict(self.res.total), "pid": os.getpid(),
            "head": bool(args.head), "tcp": bool(args.tcp),
            "om_addr": f"ipc://{self.session_dir}/sockets/om-{self.node_id.hex()[:12]}",
        }
        # fork the zygote before any thread or zmq context exists
        self.zygote = Zygote((self.node, config, self.session_dir))
        import zmq
        from pyray._private.transport import Outbox, bind_node_inbox
        self.zmq = zmq
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
            self.zygote.update_node({"raylet_addr": self.addr, "om_addr": self.objects.addr})
        self.workers = {}
        self.by_pid = {}
        self.idle = collections.deque()
        self.leases = {}
        self.requests = collections.OrderedDict()
        # lease ids start from a node prefix: unique across the cluster
        self.lease_counter = cv.lease_id_base(self.node_id)
        self.view = cv.ClusterView(self.node_id)
        self.view_refresh = None    # (req id, sent at) of a node-table request in flight
        self.registration = None    # (request id, ready fd, sent at) until the GCS answers
        self.gcs_incarnation = None  # the run of the GCS we are registered with
        self.gcs_answered = time.monotonic()   # its last answer to a heartbeat
        self.gcs_silent = False     # it stopped answering (logged once)
        self.hb_counter = 0
        self.last_total_sent = dict(self.res.total)
        self.starting = 0
        self.stopping = False
        self.res_dirty = True
        self.last_res_sent = 0.0
        self.removed_pgs = collections.OrderedDict()   # hex ids of removed placement groups
        self.handlers = {
            Op.REGISTER_WORKER: self.h_register_worker,
            Op.REQUEST_LEASE: self.h_request_lease,
            Op.RETURN_LEASE: self.h_return_lease,
            Op.CANCEL_LEASE_REQUEST: self.h_cancel_request,
            Op.WORKER_BLOCKED: self.h_blocked,
            Op.WORKER_UNBLOCKED: self.h_unblocked,
            Op.KILL_WORKER: self.h_kill_worker,
            Op.RAYLET_INFO: self.h_info,
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
        }
        for _ in range(max(1, int(self.num_cpus))):
            self._spawn()

    # ------------------------------------------------------------------
    def _spawn(self):
        wid = ids.random_id(16)
        self.workers[wid] = WorkerInfo(wid)
        self.starting += 1
        self.zygote.spawn(wid)

    def respond(self, addr, req_id, payload, ok=True):
        self.out.send(addr, (Op.RESPONSE, req_id, ok, payload))

    def h_ping(self, msg):
        _, req_id, reply_to = msg[:3]
        self.respond(reply_to, req_id, "pong")

    def h_info(self, msg):
        _, req_id, reply_to = msg[:3]
        self.respond(reply_to, req_id, {"node": self.node, "total": dict(self.res.total),
                                        "available": self.res.snapshot(),
                                        "store": self.store.stats(),
                                        "num_workers": len(self.workers)})

    def h_register_worker(self, msg):
        _, version, wid, pid, task_addr, ctl_addr, chan_path = msg
        w = self.workers.get(wid)
        if version != PROTOCOL_VERSION or w is None:
            log.warning("refused worker %s (protocol %s)", wid.hex(), version)
            return
        w.pid = pid
        w.task_addr = task_addr
        w.ctl_addr = ctl_addr
        w.chan_path = chan_path
        if w.state == STARTING:
            self.starting -= 1
        w.state = IDLE
        w.idle_since = time.monotonic()
        self.by_pid[pid] = w
        self.idle.append(wid)
        self.schedule()

    def h_request_lease(self, msg):
        req_id, owner, shape, job_id, driver_addr, key = msg[1:7]
        _check_request(owner, shape, key)
        req = Request(req_id, owner, shape, job_id, driver_addr, key)
        route = cv.parse_key(key)
        if route is not None:
            req.route = route
            req.view_seq = self.view.seq
        self.requests[(owner, req_id)] = req
        self.schedule()

    def h_request_spilled(self, msg):
        """A lease request another raylet sent here (spillback)."""
        _, origin, mode, req_id, owner, shape, job_id, driver_addr, key = msg[:9]
        _check_request(owner, shape, key)
        req = Request(req_id, owner, shape, job_id, driver_addr, key)
        req.route = cv.parse_key(key) or (None, None)
        req.mode = mode if mode in (cv.QUEUE, cv.GRANT_OR_REJECT) else cv.GRANT_OR_REJECT
        req.origin = origin if origin != self.node_id else None
        req.view_seq = self.view.seq
        self.requests[(owner, req_id)] = req
        self.schedule()

    def h_cancel_request(self, msg):
        req_id = msg[1]
        if len(msg) > 2:
            self.requests.pop((msg[2], req_id), None)
            return
        for k in [k for k in self.requests if k[1] == req_id]:
            del self.requests[k]

    def h_return_lease(self, msg):
        _, lease_id, disconnect = msg
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            return
        self._release(lease)
        w = self.workers.get(lease.worker_id)
        if w is not None:
            w.lease_id = None
            if disconnect:
                self._kill(w)
            else:
                w.state = IDLE
                w.idle_since = time.monotonic()
                self.idle.append(w.worker_id)
        self.schedule()

    def _release(self, lease):
        if lease.blocked:
            self.res.unlend(lease.shape)
        self.res.release(lease.shape, lease.gpu_ids)
        self.res_dirty = True

    def h_blocked(self, msg):
        w = self.workers.get(msg[1])
        lease = self.leases.get(w.lease_id) if w is not None else None
        if lease is not None and not lease.blocked:
            lease.blocked = True
            self.res.lend(lease.shape)
            self.schedule()

    def h_unblocked(self, msg):
        w = self.workers.get(msg[1])
        lease = self.leases.get(w.lease_id) if w is not None else None
        if lease is not None and lease.blocked:
            lease.blocked = False
            self.res.unlend(lease.shape)

    def h_kill_worker(self, msg):
        w = self.workers.get(msg[1])
        if w is not None:
            self._kill(w)

    def h_driver_exit(self, msg):
        job_id = msg[1]
        for w in list(self.workers.values()):
            if w.job_id == job_id:
                self._kill(w)

    def h_shutdown(self, msg):
        self.stopping = True
        if len(msg) >= 3 and isinstance(msg[2], str):
            self.respond(msg[2], msg[1], True)

    # ---- placement groups (docs/placement_groups.md) ----------------------
    def h_pg_reserve(self, msg):
        """Takes bundles out of the free pool for a group (bundles None:
        commits the ones taken earlier)."""
        _, req_id, reply_to, pg_id, bundles, commit = msg
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
                self.out.send(lease.owner, (Op.RECLAIM_LEASE, lease.lease_id))

    def h_pg_return(self, msg):
        """A group's bundles go back to the free pool.  If the group was
        removed, the work running in it is killed and requests for it fail."""
        _, pg_id, removed = msg
        pg_hex = pg_id.hex()
        self.res.return_bundles(pg_hex)
        self.res_dirty = True
        if removed:
            self.removed_pgs[pg_hex] = None
            while len(self.removed_pgs) > 10000:
                self.removed_pgs.popitem(last=False)
            marker = group_resource(BUNDLE_MARKER, pg_hex)
            for lease in self.leases.values():
                w = self.workers.get(lease.worker_id)
                if marker in lease.shape and w is not None:
                    self._kill(w)
            for key, req in list(self.requests.items()):
                if marker in req.shape:
                    self._waits_for_group(key, req)
        self.schedule()

    def _waits_for_group(self, key, req):
        """A request placed in a placement group this node does not hold
        (yet) waits for it quietly; if the group was removed it fails."""
        found = pg_of_shape(req.shape)
        if found is None:
            return False
        if found[0] in self.removed_pgs:
            self.requests.pop(key, None)
            self.out.send(req.owner, (Op.LEASE_PG_REMOVED, req.req_id,
                                      f"The placement group {found[0]} of this task was "
                                      "removed."))
        return True

    def _kill(self, w):
        if w.pid is not None:
            self.zygote.kill(w.pid)

    # ------------------------------------------------------------------
    def schedule(self):
        """Grants what fits, in arrival order; starts workers as needed."""
        if not self.requests:
            return
        need_workers = 0
        blocked_by_resources = []
        peers = self.view.peers
        for key, req in list(self.requests.items()):
            route = req.route
            special = route is not None and (req.mode is not None or route[1] is not None or
                                              route[0] not in (None, "DEFAULT"))
            if special and self._route(key, req):
                continue
            if not self.res.feasible(req.shape):
                if route is not None and not special and self._route(key, req):
                    continue
                if self._waits_for_group(key, req):
                    continue
                if not req.warned:
                    req.warned = True
                    self.out.send(req.owner, (Op.LEASE_INFEASIBLE, req.req_id, _infeasible_msg(
                        req.shape, self.res.total)))
                continue
            if not self.res.fits(req.shape):
                if peers and route is not None and not special and self._route(key, req):
                    continue
                blocked_by_resources.append(req)
                continue
            w = self._idle_worker(req.job_id)
            if w is None:
                need_workers += 1
                continue
            del self.requests[key]
            self._grant(req, w)
        if need_workers > self.starting:
            for _ in range(need_workers - self.starting):
                self._spawn()
        if blocked_by_resources:
            self._reclaim_for(blocked_by_resources)

    def _idle_worker(self, job_id):
        for _ in range(len(self.idle)):
            wid = self.idle.popleft()
            w = self.workers.get(wid)
            if w is None or w.state != IDLE:
                continue
            if w.job_id is None or w.job_id == job_id:
                return w
            self.idle.append(wid)
        return None

    def _grant(self, req, w):
        self.lease_counter += 1
        lid = self.lease_counter
        gpu_ids = self.res.acquire(req.shape)
        self.res_dirty = True
        lease = LeaseInfo(lid, w.worker_id, req.owner, req.shape, gpu_ids, req.job_id)
        lease.origin = req.origin
        lease.key = req.key
        self.leases[lid] = lease
        w.state = LEASED
        w.lease_id = lid
        w.job_id = req.job_id
        self.out.send(req.owner, (Op.LEASE_GRANTED, req.req_id, lid, w.worker_id, w.task_addr,
                                  w.ctl_addr, gpu_ids, w.pid, w.chan_path))

    def _route(self, key, req):
        """Sends a request elsewhere if the cluster view says so.  Returns
        True when it is no longer ours to grant now (sent away, failed, or
        waiting for a fresh node table)."""
        code, arg, mode = self.view.decide(req.route[0], req.route[1], req.shape, self.res,
                                           req.mode, self.view.seq > req.view_seq)
        if code == cv.LOCAL or code == cv.INFEASIBLE:
            if req.route[0] == "SPREAD" and req.mode is None:
                req.route = (None, None)     # this node was its turn: it stays here
            return False
        if code == cv.REFRESH:
            self._refresh_view()
            return True
        del self.requests[key]
        if code == cv.SPILL:
            if mode == cv.GRANT_OR_REJECT:
                self.view.debit(arg, req.shape)
            self.out.send(req.owner, (Op.LEASE_SPILLBACK, req.req_id, arg.raylet_addr,
                                      arg.node_id, mode))
        elif code == cv.REJECT:
            self.out.send(req.owner, (Op.LEASE_SPILLBACK, req.req_id, None, None, None))
        else:
            self.out.send(req.owner, (Op.LEASE_FAILED, req.req_id, arg))
        return True

    def _refresh_view(self):
        if self.view_refresh is None:
            self.lease_counter += 1      # a request id no other request uses
            self.view_refresh = (self.lease_counter, time.monotonic())
            self.out.send(self.node["gcs_addr"], (Op.GET_NODES, self.lease_counter, self.addr))

    # ---- the GCS: registration and heartbeats (docs/cluster.md) ----------
    def _register(self, ready_fd=None):
        """Registers with the GCS (again after it restarted: the same node
        id, the current totals)."""
        self.lease_counter += 1
        self.registration = (self.lease_counter, ready_fd, time.monotonic())
        info = dict(self.node, resources=dict(self.res.total))
        self.out.send(self.node["gcs_addr"], (Op.REGISTER_NODE, self.lease_counter, self.addr,
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
            self.out.send(self.node["gcs_addr"], (Op.NODE_HEARTBEAT, ("hb", self.hb_counter),
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

    def h_response(self, msg):
        if isinstance(msg[1], tuple) and msg[1][:1] == ("hb",):
            if msg[2]:
                self._gcs_answered(msg[3])
            return
        if self.registration is not None and msg[1] == self.registration[0]:
            ready_fd, self.registration = self.registration[1], None
            if not msg[2]:
                log.error("the GCS refused this node's registration: %s", msg[3])
                return
            if isinstance(msg[3], dict):
                self.gcs_incarnation = msg[3].get("incarnation")
            self.gcs_answered = time.monotonic()
            if ready_fd is not None:
                os.write(ready_fd, (json.dumps({"raylet_addr": self.addr,
                                                "om_addr": self.node["om_addr"],
                                                "node_id": self.node_id.hex(),
                                                "store_name": self.store.name}) + "\n").encode())
                os.close(ready_fd)
        elif self.view_refresh is not None and msg[1] == self.view_refresh[0]:
            self.view_refresh = None
            if msg[2] and isinstance(msg[3], list):
                self._update_view(msg[3])
            else:
                self.view.seq += 1
            self.schedule()

    def h_cluster_view(self, msg):
        if isinstance(msg[1], list):
            self._update_view(msg[1])
            self.schedule()

    def _update_view(self, nodes):
        for node_id in self.view.update(nodes):
            if node_id == self.node_id:
                self._declared_dead()
            else:
                self._on_node_dead(node_id)

    def h_node_dead(self, msg):
        node_id = msg[1]
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
        msg = (Op.NODE_DEAD, node_id)
        self.out.send(self.objects.addr, msg)
        for w in self.workers.values():
            if w.ctl_addr is not None:
                self.out.send(w.ctl_addr, msg)
        self._take_back([l for l in self.leases.values() if l.origin == node_id],
                        [k for k, r in self.requests.items() if r.origin == node_id])

    def _reclaim_for(self, reqs):
        waiting = {(r.owner, r.key) for r in reqs if not r.reclaimed}
        if not waiting:
            return
        for r in reqs:
            r.reclaimed = True
        # an owner reuses its leases for more of the same key, not for others
        for lease in self.leases.values():
            if not lease.reclaim_sent and (lease.owner, lease.key) not in waiting:
                lease.reclaim_sent = True
                self.out.send(lease.owner, (Op.RECLAIM_LEASE, lease.lease_id))

    # ------------------------------------------------------------------
    def on_zygote_events(self):
        events, eof = self.zygote.events()
        for ev in events:
            if ev[0] == "started":
                w = self.workers.get(ev[1])
                if w is not None:
                    w.pid = ev[2]
                    self.by_pid[ev[2]] = w
            elif ev[0] == "exited":
                self._worker_exited(ev[1], ev[2], ev[3])
        if eof and not self.stopping:
            log.error("the worker zygote exited; stopping the raylet")
            self.stopping = True

    def _worker_exited(self, wid, pid, status):
        w = self.workers.pop(wid, None)
        self.by_pid.pop(pid, None)
        if w is None:
            return
        if w.state == STARTING:
            self.starting -= 1
        reason = _status_text(status)
        if w.lease_id is not None:
            lease = self.leases.pop(w.lease_id, None)
            if lease is not None:
                self._release(lease)
                self.out.send(lease.owner, (Op.WORKER_DIED, lease.lease_id, wid, reason))
        # leases this worker held as an owner are given back, here and on
        # the other nodes (tasks it pushed there die with it, as in Ray)
        if w.ctl_addr is not None:
            self._owner_gone(w.ctl_addr)
            for peer in self.view.peers.values():
                self.out.send(peer.raylet_addr, (Op.OWNER_DIED, w.ctl_addr))
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
            held = self.workers.get(lease.worker_id)
            if held is not None:
                held.lease_id = None
                self._kill(held)
        for k in request_keys:
            del self.requests[k]

    def h_owner_died(self, msg):
        if isinstance(msg[1], str):
            self._owner_gone(msg[1])
            self.schedule()

    def maintain_pool(self, now):
        """Stops idle workers beyond num_cpus that idled too long."""
        idle = [self.workers[w] for w in self.idle if w in self.workers
                and self.workers[w].state == IDLE]
        extra = len(self.workers) - max(1, int(self.num_cpus))
        timeout = self.config.idle_worker_timeout_s
        for w in idle:
            if extra <= 0:
                break
            if now - w.idle_since > timeout:
                w.state = "stopping"
                self._kill(w)
                extra -= 1

    def report_resources(self, now, force=False):
        if (self.res_dirty and now - self.last_res_sent > 0.05) or force:
            self.res_dirty = False
            self.last_res_sent = now
            msg = (Op.NODE_RESOURCES, self.node_id, self.res.snapshot())
            if self.res.total != self.last_total_sent:
                # placement-group bundles add and remove resources
                self.last_total_sent = dict(self.res.total)
                msg += (self.last_total_sent,)
            self.out.send(self.node["gcs_addr"], msg)

    # ------------------------------------------------------------------
    def run(self, ready_fd):
        zmq = self.zmq
        from pyray._private.transport import recv_msg
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        poller.register(self.zygote.fd, zmq.POLLIN)
        self.objects.start()
        # ready once the GCS has us in its table (a handshake): a driver that
        # connects next finds this node there
        self._register(ready_fd)
        next_tick = 0.0
        hb = self.config.heartbeat_interval_s
        while not self.stopping and not _stop_requested:
            for sock, _ in poller.poll(50):
                if sock is self.inbox:
                    for _ in range(1000):
                        try:
                            msg, _frames = recv_msg(self.inbox) if self.inbox.poll(0) else (0, 0)
                        except zmq.ZMQError:
                            break
                        if msg == 0:
                            break
                        if msg is None:
                            continue
                        h = self.handlers.get(msg[0])
                        if h is None:
                            log.warning("dropped a message with unknown op %r", msg[0])
                            continue
                        try:
                            h(msg)
                        except Exception:  # noqa: BLE001 - a bad message must not kill us
                            log.exception("handling op %s failed", msg[0])
                else:
                    self.on_zygote_events()
            now = time.monotonic()
            self.report_resources(now)
            if now >= next_tick:
                next_tick = now + hb
                self.report_resources(now, force=True)
                self._gcs_tick(now)
                self.maintain_pool(now)
                if self.view_refresh is not None and now - self.view_refresh[1] > 2.0:
                    self.view_refresh = None     # the GCS did not answer: decide anyway
                    self.view.seq += 1
                    self.schedule()
        self.stop()

    def stop(self):
        self.zygote.stop()
        self.objects.stop()
        try:
            self.out.send(self.node["gcs_addr"], (Op.UNREGISTER_NODE, self.node_id))
        except Exception:  # noqa: BLE001
            pass
        self.out.close()
        self.inbox.close(0)
        self.ctx.term()
        self.store.close()


def _check_request(owner, shape, key):
    """Raises ValueError for a malformed lease request: it is dropped (and
    logged) instead of being queued, where it would break every later
    scheduling pass."""
    if not isinstance(owner, str) or "://" not in owner:
        raise ValueError(f"bad owner address {owner!r}")
    if not isinstance(shape, dict):
        raise ValueError(f"bad resource shape {shape!r}")
    validate_shape(shape)
    try:
        hash(key)
    except TypeError:
        raise ValueError(f"unhashable scheduling key {key!r}") from None


def _status_text(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def _infeasible_msg(shape, total):
    return (f"The task or actor needs {shape}, which no node in the cluster can provide "
            f"(this node has {total}). It stays pending until a node with these resources "
            "joins; lower its requirements or add resources.")


_stop_requested = False


def _on_term(signum, frame):
    global _stop_requested
    _stop_requested = True


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
    ap.add_argument("--ready-fd", type=int, default=None)
    ap.add_argument("--head", action="store_true")
    ap.add_argument("--tcp", action="store_true",
                    help="listen on tcp at --node-ip (other machines join), not ipc")
    ap.add_argument("--die-with-parent", action="store_true")
    args = ap.parse_args(argv)
    parent = os.getppid()
    if args.die_with_parent:
        set_pdeathsig(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raylet = Raylet(args, Config.from_env())
    try:
        raylet.run(args.ready_fd)
    finally:
        if args.die_with_parent and os.getppid() != parent:
            # the driver that started this embedded cluster is gone without
            # cleaning up: remove its session directory (sockets, logs, spill)
            import shutil
            shutil.rmtree(args.session_dir, ignore_errors=True)
    exit_now()


if __name__ == "__main__":
    main()

