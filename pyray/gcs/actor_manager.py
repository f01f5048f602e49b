"""Actors in the GCS: creation, names, restarts, death.

The GCS leases a worker for each actor from a raylet, pushes the creation
task to it, and tells subscribers (processes holding a handle) where the
actor lives or why it died.  Calls never pass through here: callers push
them straight to the actor's worker.

States: PENDING -> ALIVE -> (RESTARTING -> ALIVE)* -> DEAD.
"""
from __future__ import annotations

import logging
import pickle

from pyray._private import errors
from pyray._private.protocol import (ACTOR_EXITING, ACTOR_STATE, CANCEL_LEASE_REQUEST, ERROR,
                                     KILL_WORKER, LEASE_FAILED, LEASE_GRANTED, LEASE_SPILLBACK,
                                     PUSH_TASK, REQUEST_LEASE, REQUEST_LEASE_SPILLED,
                                     RETURN_LEASE, TASK_REPLIES, WORKER_DIED)

log = logging.getLogger("pyray.gcs.actors")

PENDING, ALIVE, RESTARTING, DEAD = "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"


class ActorEntry:
    def __init__(self, spec):
        self.actor_id = spec["actor_id"]
        self.spec = spec                 # class descriptor, ctor args, options, owner, job
        self.name = spec.get("name")
        self.namespace = spec.get("namespace")
        self.state = PENDING
        self.restarts = 0
        self.worker = None               # (worker_id, task_addr, ctl_addr, pid)
        self.lease_id = None
        self.raylet_addr = None
        self.lease_req = None
        self.cause = None                # error payload (pyray._private.errors) of why it died
        self.subscribers = set()
        self.no_restart = False
        self.exiting = False
        self.creation_attempt = 0
        self.gpu_ids = None              # of the lease its worker holds
        self.seq = 0


class ActorManager:
    def __init__(self, server):
        self.server = server
        self.actors = {}
        self.names = {}                  # (namespace, name) -> actor_id
        self.lease_reqs = {}             # req id -> actor_id
        self.by_lease = {}               # (raylet, lease id) -> actor_id
        self.by_worker = {}              # worker id -> actor_id
        # lease request ids of this run of the GCS differ from an earlier
        # run's (its grants may still arrive)
        self.req_counter = server.incarnation << 32
        self.seq = 0                     # registration order (rebuilds the name index)

    @property
    def out(self):
        return self.server.out

    # ---- persistence --------------------------------------------------------
    def _save(self, e):
        self.server.storage.mark("actor", e.actor_id, lambda: {
            "state": e.state, "restarts": e.restarts, "worker": e.worker,
            "lease_id": e.lease_id, "raylet_addr": e.raylet_addr, "cause": e.cause,
            "subscribers": sorted(e.subscribers), "no_restart": e.no_restart,
            "exiting": e.exiting, "creation_attempt": e.creation_attempt, "seq": e.seq,
            "gpu_ids": e.gpu_ids})

    def restore(self, specs, rows):
        """Rebuilds the table (and the name index, the lease and worker
        maps) from stored rows.  Actors waiting for a lease ask again when
        the nodes register with this run of the GCS."""
        for aid, r in sorted(rows.items(), key=lambda kv: kv[1].get("seq", 0)):
            spec = specs.get(aid)
            if spec is None:
                continue
            e = ActorEntry(spec)
            for k in ("state", "restarts", "worker", "lease_id", "raylet_addr", "cause",
                      "no_restart", "exiting", "creation_attempt", "seq", "gpu_ids"):
                setattr(e, k, r.get(k, getattr(e, k)))
            e.subscribers = set(r.get("subscribers") or ())
            self.actors[aid] = e
            self.seq = max(self.seq, e.seq)
            if e.name:
                self.names[(e.namespace, e.name)] = aid
            if e.worker is not None:
                self.by_worker[e.worker[0]] = aid
                self.by_lease[(e.raylet_addr, e.lease_id)] = aid
                if e.state in (PENDING, RESTARTING):
                    # its creation reply may have been lost with the old
                    # GCS: the worker answers a repeat with the reply it
                    # kept, or runs the task if it never got it
                    self._push_creation(e)

    # ---- requests -------------------------------------------------------
    def register(self, spec):
        if spec.get("actor_id") in self.actors:
            # the same request again (the caller resends while the GCS restarts)
            e = self.actors[spec["actor_id"]]
            return {"actor_id": e.actor_id, "existing": False, "meta": e.spec["meta"]}
        key = (spec.get("namespace"), spec.get("name"))
        if spec.get("name"):
            existing = self.names.get(key)
            if existing is not None and self.actors[existing].state != DEAD:
                if spec.get("get_if_exists"):
                    return {"actor_id": existing, "existing": True,
                            "meta": self.actors[existing].spec["meta"]}
                raise ValueError(f"The name {spec['name']!r} (namespace={spec.get('namespace')!r})"
                                 " is already taken. Pick another name, or pass "
                                 "get_if_exists=True to get the existing actor.")
        entry = ActorEntry(spec)
        self.actors[entry.actor_id] = entry
        self.seq += 1
        entry.seq = self.seq
        self.server.storage.put("actor_spec", entry.actor_id, spec)
        self._save(entry)
        if spec.get("name"):
            self.names[key] = entry.actor_id
        self.server.task_events.actor_registered(spec)
        self._schedule(entry)
        return {"actor_id": entry.actor_id, "existing": False, "meta": spec["meta"]}

    def info(self, actor_id, subscriber=None):
        e = self.actors.get(actor_id)
        if e is None:
            return None
        if subscriber and subscriber not in e.subscribers:
            e.subscribers.add(subscriber)
            self._save(e)
        return self._state_msg(e)

    def get_named(self, name, namespace):
        aid = self.names.get((namespace, name))
        e = self.actors.get(aid) if aid is not None else None
        if e is None or e.state == DEAD:
            return None
        return {"actor_id": aid, "meta": e.spec["meta"]}

    def list_named(self, all_namespaces, namespace):
        out = []
        for (ns, name), aid in self.names.items():
            e = self.actors.get(aid)
            if e is None or e.state == DEAD:
                continue
            if all_namespaces:
                out.append({"name": name, "namespace": ns})
            elif ns == namespace:
                out.append(name)
        return out

    def list_actors(self):
        """The actor table, with the fields of Ray's ActorState
        (pyray.util.state)."""
        node_of = {n.info["raylet_addr"]: n.info["node_id"].hex()
                   for n in self.server.state.nodes.values()}
        out = []
        for e in self.actors.values():
            spec = e.spec
            w = e.worker
            pg = spec.get("placement_group")
            out.append({
                "actor_id": e.actor_id.hex(), "state": e.state, "name": e.name or "",
                "namespace": e.namespace, "ray_namespace": e.namespace,
                "class_name": spec["meta"].get("class_name"),
                "job_id": spec["job_id"].hex() if spec.get("job_id") else None,
                "pid": w[3] if w else None, "worker_id": w[0].hex() if w else None,
                "node_id": node_of.get(e.raylet_addr) if w else None,
                "restarts": e.restarts, "num_restarts": e.restarts,
                "is_detached": bool(spec.get("detached")),
                "required_resources": dict(spec["shape"]) if isinstance(spec.get("shape"), dict)
                else {},
                "placement_group_id": _pg_hex(pg),
                "death_cause": _cause_text(e.cause) if e.state == DEAD else None,
                "seq": e.seq})
        return out
    def kill(self, actor_id, no_restart):
        e = self.actors.get(actor_id)
        if e is None or e.state == DEAD:
            return False
        if no_restart:
            e.no_restart = True
            self._save(e)
        if e.worker is not None and e.state == ALIVE:
            self.out.send(e.raylet_addr, KILL_WORKER.make(e.worker[0]))
        elif e.state in (PENDING, RESTARTING):
            if no_restart or e.worker is None:
                self._cancel_lease_req(e)
                if e.worker is not None:
                    self.out.send(e.raylet_addr, KILL_WORKER.make(e.worker[0]))
                self._dead(e, "The actor was killed by pyray.kill() before it started.")
        return True

    def h_exiting(self, msg, frames):
        e = self.actors.get(ACTOR_EXITING.parse(msg).actor_id)
        if e is not None:
            e.exiting = True
            self._save(e)

    def driver_exit(self, job_id):
        for e in list(self.actors.values()):
            if e.spec.get("job_id") == job_id and not e.spec.get("detached") and e.state != DEAD:
                self.kill(e.actor_id, True)

    # ---- scheduling -----------------------------------------------------
    def _schedule(self, entry):
        node = self.server.pick_node(entry.spec["shape"], entry.spec.get("strategy"))
        if node is None:
            # no live node; retried when one registers
            entry.lease_req = None
            return
        self.req_counter += 1
        rid = self.req_counter
        entry.lease_req = (node["raylet_addr"], rid)
        self.lease_reqs[rid] = entry.actor_id
        spec = entry.spec
        # A raylet stops a job's workers when its driver exits; a detached
        # actor's worker belongs to no job so that it outlives its driver.
        job_id = None if spec.get("detached") else spec["job_id"]
        self.out.send(node["raylet_addr"], REQUEST_LEASE.make(rid, self.server.address,
                                                              spec["shape"], job_id,
                                                              spec["driver_addr"],
                                                              self._lease_key(entry)))

    @staticmethod
    def _lease_key(entry):
        key = ("actor", entry.actor_id)
        if entry.spec.get("strategy") in (None, "DEFAULT"):
            # the raylet may send it on to a node that has room (spillback)
            key += ("DEFAULT",)
        if entry.spec.get("runtime_env") is not None:
            key += (entry.spec["runtime_env"],)  # its runtime env's marker (docs/runtime_env.md)
        return key

    def reschedule_pending(self):
        for e in self.actors.values():
            if e.state in (PENDING, RESTARTING) and e.lease_req is None and e.worker is None:
                self._schedule(e)

    def on_spillback(self, msg, frames=None):
        """The raylet holding an actor's lease request hands it on: to the
        node it names (which has the resources now), or back to the GCS
        (raylet None) to pick a node again.  Without this an actor queued
        on a busy node waited there while another node stood free."""
        _, rid, addr, _node_id, mode = LEASE_SPILLBACK.parse(msg)
        aid = self.lease_reqs.get(rid)
        e = self.actors.get(aid) if aid is not None else None
        if e is None or e.state == DEAD or e.lease_req is None or e.lease_req[1] != rid:
            self.lease_reqs.pop(rid, None)
            return
        if addr is None:
            self.lease_reqs.pop(rid, None)
            e.lease_req = None
            self._schedule(e)
            return
        spec = e.spec
        e.lease_req = (addr, rid)
        self.out.send(addr, REQUEST_LEASE_SPILLED.make(
            None, mode, rid, self.server.address, spec["shape"],
            None if spec.get("detached") else spec["job_id"], spec["driver_addr"],
            self._lease_key(e)))

    def _cancel_lease_req(self, e):
        if e.lease_req is not None:
            raylet, rid = e.lease_req
            self.lease_reqs.pop(rid, None)
            self.out.send(raylet, CANCEL_LEASE_REQUEST.make(rid))
            e.lease_req = None

    def on_lease_granted(self, msg, frames=None):
        m = LEASE_GRANTED.parse(msg)
        rid, lease_id, worker_id = m.req_id, m.lease_id, m.worker_id
        aid = self.lease_reqs.pop(rid, None)
        e = self.actors.get(aid) if aid is not None else None
        raylet = None
        if e is not None and e.lease_req is not None:
            raylet = e.lease_req[0]
        if e is None or e.state == DEAD or raylet is None:
            src = raylet or self.server.any_raylet()
            if src:
                self.out.send(src, RETURN_LEASE.make(lease_id, True))
            return
        e.lease_req = None
        e.lease_id = lease_id
        e.raylet_addr = raylet
        e.worker = (worker_id, m.task_addr, m.ctl_addr, m.pid, m.channel_path)
        self.by_lease[(raylet, lease_id)] = aid
        self.by_worker[worker_id] = aid
        e.gpu_ids = m.gpu_ids
        e.creation_attempt += 1
        self._save(e)
        self._push_creation(e)

    def _push_creation(self, e):
        spec = e.spec
        data, bufs = spec["ctor_args"]
        msg = PUSH_TASK.make(spec["creation_task_id"], spec["class_id"], spec["class_bytes"],
                             spec["meta"]["class_name"] + ".__init__", data, len(bufs), None, 1,
                             self.server.address, e.creation_attempt, e.gpu_ids,
                             spec["job_config"], e.actor_id,
                             ("create", spec["options"], e.restarts), spec["shape"],
                             spec["options"].get("enable_task_events", True))
        self.out.send(e.worker[1], msg, bufs)

    def on_task_replies(self, msg, frames=None):
        _, worker_id, replies = TASK_REPLIES.parse(msg)
        aid = self.by_worker.get(worker_id)
        e = self.actors.get(aid) if aid is not None else None
        if e is None:
            return
        for _task_id, results, _contained, _retry in replies:
            failed = [r for r in results if r[1] == ERROR]
            if failed:
                e.cause = failed[0][2]
                e.no_restart = True
                self.out.send(e.raylet_addr, KILL_WORKER.make(worker_id))
                self._dead(e, None)
            elif e.state != DEAD:
                e.state = ALIVE
                self._publish(e)

    def on_lease_failed(self, msg, frames=None):
        """An actor's lease can never be granted (its runtime env cannot be
        set up): the actor dies of that error."""
        m = LEASE_FAILED.parse(msg)
        aid = self.lease_reqs.pop(m.req_id, None)
        e = self.actors.get(aid) if aid is not None else None
        if e is None or e.state == DEAD:
            return
        e.lease_req = None
        e.no_restart = True
        e.cause = m.error if m.error is not None else errors.actor_died(e.actor_id, m.message)
        self._dead(e, None)

    def h_worker_died(self, msg, frames):
        m = WORKER_DIED.parse(msg)
        self.worker_died(m.lease_id, m.worker_id, m.reason)

    def worker_died(self, lease_id, worker_id, reason):
        """An actor's worker is gone (its raylet said so, or its node died)."""
        aid = self.by_worker.pop(worker_id, None)
        e = self.actors.get(aid) if aid is not None else None
        if e is None:
            return
        self.by_lease.pop((e.raylet_addr, lease_id), None)
        e.worker = None
        self._save(e)
        if e.state == DEAD:
            return
        limit = e.spec["options"].get("max_restarts", 0)
        if e.exiting:
            self._dead(e, "The actor exited intentionally (exit_actor() or out of scope).")
        elif e.no_restart or (limit != -1 and e.restarts >= limit):
            why = "killed by pyray.kill()" if e.no_restart else reason
            self._dead(e, f"The actor's worker process died ({why}).")
        else:
            e.restarts += 1
            e.state = RESTARTING
            self._publish(e)
            self._schedule(e)

    def _dead(self, e, message):
        e.state = DEAD
        if e.cause is None:
            e.cause = errors.actor_died(e.actor_id, message)
        self._cancel_lease_req(e)
        self._publish(e)

    def _state_msg(self, e):
        w = e.worker
        return ACTOR_STATE.make(e.actor_id, e.state,
                                (w[1], w[2], w[0], w[3], w[4]) if (w and e.state == ALIVE)
                                else None,
                                e.cause, e.restarts)

    def _publish(self, e):
        """Tells the subscribers of a change of state (and stores it)."""
        self._save(e)
        msg = self._state_msg(e)
        for sub in e.subscribers:
            self.out.send(sub, msg)

    def forget_subscriber(self, addr):
        for e in self.actors.values():
            e.subscribers.discard(addr)


def _pg_hex(pg):
    if not pg:
        return None
    pid = pg[0] if isinstance(pg, (tuple, list)) else pg
    if isinstance(pid, dict):
        pid = pid.get("pg_id")
    return pid.hex() if isinstance(pid, (bytes, bytearray)) else (str(pid) if pid else None)


def _cause_text(cause):
    if cause is None:
        return None
    try:
        return str(errors.decode(cause))
    except Exception:  # noqa: BLE001 - an undecodable cause is still a death
        return "the actor died"


def dumps(obj):
    return pickle.dumps(obj, protocol=5)
