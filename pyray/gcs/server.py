"""The GCS: the cluster's metadata (nodes and their resources, jobs, a small
key-value store).  Run as ``python -m pyray.gcs.server``.

Requests are ``(op, req_id, reply_to, *args)`` and get ``(RESPONSE, req_id,
ok, payload)``; one-way messages (resource reports) have no reply.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

import zmq

from pyray._private import errors
from pyray._private import daemon
from pyray._private.config import Config
from pyray._private.protocol import (ACTOR_STATE, CLUSTER_VIEW, DRIVER_EXIT, GET_ACTOR_INFO,
                                     LEASE_INFEASIBLE, NODE_DEAD, NODE_RESOURCES, UNREGISTER_NODE,
                                     Op)
from pyray._private.resources import fits
from pyray._private.scheduling_strategies import label_strategy, labels_match
from pyray._private.server import Server
from pyray._private.transport import Outbox, bind_inbox
from pyray.gcs.storage import GcsStorage

log = logging.getLogger("pyray.gcs")


class NodeEntry:
    __slots__ = ("info", "available", "last_seen", "alive")

    def __init__(self, info):
        self.info = info
        self.available = dict(info.get("resources", {}))
        self.last_seen = time.monotonic()
        self.alive = True


class GcsState:
    """The tables, with no I/O: handlers take arguments and return payloads."""

    def __init__(self):
        self.nodes = {}
        self.jobs = {}
        self.kv = {}
        self.job_counter = 0
        self.view_dirty = False     # the node table changed since it was last broadcast
        self.storage = GcsStorage()     # the server gives it its own

    def save_node(self, n):
        self.storage.mark("node", n.info["node_id"], lambda: {
            "info": n.info, "alive": n.alive, "available": n.available})

    def register_node(self, info):
        n = self.nodes[info["node_id"]] = NodeEntry(info)
        self.save_node(n)
        self.view_dirty = True
        return True

    def node_resources(self, node_id, available, total=None):
        """A heartbeat with the node's free resources.  Returns False for a
        node already declared dead (it must stop)."""
        n = self.nodes.get(node_id)
        if n is None:
            return True
        if not n.alive:
            return False
        n.last_seen = time.monotonic()
        if available != n.available:
            n.available = available
            self.view_dirty = True
        if isinstance(total, dict):
            n.info["resources"] = total
            self.save_node(n)
            self.view_dirty = True
        return True

    def unregister_node(self, node_id):
        """A node leaving on purpose; True if it was alive."""
        n = self.nodes.get(node_id)
        if n is not None and n.alive:
            n.alive = False
            self.save_node(n)
            self.view_dirty = True
            return True
        return False

    def get_nodes(self):
        out = []
        for nid, n in self.nodes.items():
            info = dict(n.info)
            info["alive"] = n.alive
            info["available"] = dict(n.available)
            out.append(info)
        return out

    def register_job(self, info):
        self.job_counter += 1
        job_id = self.job_counter.to_bytes(4, "little")
        self.jobs[job_id] = dict(info, job_id=job_id, start_time=time.time())
        self.save_job(job_id)
        self.storage.put("meta", "job_counter", self.job_counter)
        return job_id

    def list_jobs(self):
        return [dict(j) for j in self.jobs.values()]

    def save_job(self, job_id):
        self.storage.mark("job", job_id, lambda: self.jobs.get(job_id))

    def cluster_resources(self, available):
        total = {}
        for n in self.nodes.values():
            if not n.alive:
                continue
            src = n.available if available else n.info.get("resources", {})
            for k, v in src.items():
                total[k] = total.get(k, 0.0) + v
        return total

    def check_liveness(self, timeout):
        """Marks nodes whose heartbeats stopped dead; returns their ids."""
        now = time.monotonic()
        dead = []
        for n in self.nodes.values():
            if n.alive and now - n.last_seen > timeout:
                log.warning("node %s missed heartbeats for %.1fs: marked dead",
                            n.info["node_id"].hex(), now - n.last_seen)
                n.alive = False
                self.save_node(n)
                dead.append(n.info["node_id"])
        if dead:
            self.view_dirty = True
        return dead

    def forgive(self):
        """After a stall of our own: heartbeats we did not read are not the
        nodes' fault."""
        now = time.monotonic()
        for n in self.nodes.values():
            n.last_seen = now


class HeldOutbox:
    """The GCS's outbox: messages wait here until the end of the batch of
    messages being handled, when the table changes that caused them have
    been written (GcsServer.flush): a peer is never told what a restarted
    GCS would not know."""

    def __init__(self, out):
        self.real = out
        self.held = []

    def send(self, addr, msg, frames=None):
        self.held.append((addr, msg, frames))
        return True

    def release(self):
        held, self.held = self.held, []
        for addr, msg, frames in held:
            try:
                self.real.send(addr, msg, frames)
            except (zmq.ZMQError, TypeError, ValueError) as err:
                log.warning("cannot send op %s to %r: %s", msg[0], addr, err)

    def close(self):
        self.release()
        self.real.close()


class GcsServer(Server):
    def __init__(self, address, config, storage=None, listen=None):
        super().__init__()
        self.config = config
        self.state = GcsState()
        # this run of the GCS: raylets register again when it changes
        self.incarnation = int.from_bytes(os.urandom(4), "little") | 1
        self.storage = self.state.storage = GcsStorage(storage)
        self.ctx = zmq.Context()
        # `listen` (e.g. every interface) may be wider than the address peers use
        self.inbox = bind_inbox(self.ctx, listen or address)
        self.address = address
        if address.endswith(":0") and not listen:
            self.address = self.inbox.getsockopt_string(zmq.LAST_ENDPOINT)
        self.out = HeldOutbox(Outbox(self.ctx))
        from pyray.gcs.actor_manager import ActorManager
        from pyray.gcs.placement_groups import PlacementGroupManager
        self.actors = am = ActorManager(self)
        self.pgs = pgs = PlacementGroupManager(self)
        from pyray.gcs.task_events import TaskEventStore
        self.task_events = te = TaskEventStore(config.task_events_max_num_task_in_gcs)
        s = self.state
        req = self.request          # requests: fn(**fields) -> RESPONSE (pyray._private.server)
        self.handlers = {
            Op.REGISTER_NODE: req(self._register_node),
            Op.GET_NODES: req(s.get_nodes),
            Op.REGISTER_JOB: req(self._register_job),
            Op.LIST_JOBS: req(s.list_jobs),
            Op.GET_TASK_EVENTS: req(te.query),
            Op.TASK_COUNTS: req(te.counts),
            Op.TASK_SPANS: req(te.spans),
            Op.KV_PUT: req(self._kv_put),
            Op.KV_GET: req(lambda key: s.kv.get(key)),
            Op.KV_DEL: req(self._kv_del),
            Op.KV_KEYS: req(lambda prefix: [k for k in s.kv if k.startswith(prefix)]),
            Op.CLUSTER_RESOURCES: req(s.cluster_resources),
            Op.PING: req(lambda: "pong"),
            Op.NODE_HEARTBEAT: req(self._heartbeat),
            Op.REGISTER_ACTOR: req(am.register),
            Op.GET_NAMED_ACTOR: req(am.get_named),
            Op.LIST_NAMED_ACTORS: req(am.list_named),
            Op.KILL_ACTOR: req(am.kill),
            Op.LIST_ACTORS: req(am.list_actors),
            Op.PG_CREATE: req(pgs.create),
            Op.PG_TABLE: req(pgs.get_table),
            Op.PG_GET_NAMED: req(pgs.get_named),
            Op.PG_OF_ACTOR: req(pgs.of_actor),
            # one-way messages
            Op.GET_ACTOR_INFO: self.h_actor_info,
            Op.ACTOR_EXITING: am.h_exiting,
            Op.LEASE_GRANTED: am.on_lease_granted,
            Op.LEASE_FAILED: am.on_lease_failed,
            Op.LEASE_SPILLBACK: am.on_spillback,
            Op.TASK_REPLIES: am.on_task_replies,
            Op.WORKER_DIED: am.h_worker_died,
            Op.LEASE_INFEASIBLE: self.h_lease_infeasible,
            Op.RESPONSE: pgs.h_response,
            Op.PG_REMOVE: pgs.h_remove,
            Op.PG_SUBSCRIBE: pgs.h_subscribe,
            Op.LEASE_PG_REMOVED: self.h_ignore,    # the group's actors are killed already
            Op.NODE_RESOURCES: self.h_node_resources,
            Op.UNREGISTER_NODE: self.h_unregister_node,
            Op.SHUTDOWN: self.h_shutdown,
            Op.DRIVER_EXIT: self.h_driver_exit,
            Op.TASK_EVENTS: te.h_task_events,
        }
        self._restore()

    # ---- persistence (pyray.gcs.storage) ---------------------------------
    def _restore(self):
        """Loads the tables a previous run of the GCS stored.  Nodes it
        loads as alive stay so until they miss heartbeats for the usual
        timeout, counted from now; they register again when they hear from
        this run."""
        rows = self.storage.load()
        st = self.state
        st.job_counter = rows["meta"].get("job_counter", 0)
        for nid, r in rows["node"].items():
            n = NodeEntry(r["info"])
            n.alive = bool(r.get("alive"))
            if isinstance(r.get("available"), dict):
                n.available = r["available"]
            st.nodes[nid] = n
        st.jobs.update(rows["job"])
        st.kv.update(rows["kv"])
        self.actors.restore(rows["actor_spec"], rows["actor"])
        self.pgs.restore(rows["pg"])
        if st.nodes or st.jobs or self.actors.actors or self.pgs.table:
            log.info("recovered from %s: %d node(s), %d job(s), %d key(s), %d actor(s), "
                     "%d placement group(s)", self.storage.path, len(st.nodes), len(st.jobs),
                     len(st.kv), len(self.actors.actors), len(self.pgs.table))
            st.view_dirty = True

    def flush(self):
        """Writes the rows changed by the last batch of messages, then lets
        the messages it produced go."""
        if self.storage.dirty:
            try:
                self.storage.flush()
            except Exception:  # noqa: BLE001 - a full disk must not stop the cluster
                log.exception("writing the GCS tables failed")
        self.out.release()

    def _register_job(self, info):
        job_id = self.state.register_job(info)
        self.task_events.driver_started(job_id, info)
        return job_id

    def _heartbeat(self, node_id):
        """A raylet's heartbeat request: the answer tells it which run of
        the GCS it talks to."""
        n = self.state.nodes.get(node_id)
        if n is not None and n.alive:
            n.last_seen = time.monotonic()
        return self.incarnation

    def _register_node(self, info):
        old = self.state.nodes.get(info.get("node_id"))
        if old is not None and not old.alive:
            # a node declared dead (e.g. while this GCS restarted) stops
            self.out.send(old.info["raylet_addr"], NODE_DEAD.make(old.info["node_id"]))
            raise ValueError(f"node {info['node_id'].hex()} was declared dead")
        self.state.register_node(info)
        self.actors.reschedule_pending()
        self.pgs.retry_pending()
        return {"incarnation": self.incarnation}

    def h_actor_info(self, msg, frames):
        _, actor_id, subscriber = GET_ACTOR_INFO.parse(msg)
        from pyray.gcs.actor_manager import DEAD
        msg = self.actors.info(actor_id, subscriber)
        if msg is None:
            msg = ACTOR_STATE.make(actor_id, DEAD, None, errors.actor_died(
                actor_id, f"Actor {actor_id.hex()} is not known to the cluster."), 0)
        self.out.send(subscriber, msg)

    def pick_node(self, shape, strategy=None):
        """The node an actor goes to: the one named by a node affinity, else
        the first (in join order) with the resources free now, else the first
        that has them at all.  An actor in a placement group goes where its
        bundle is."""
        if self.pgs.holds(shape):
            return self.pgs.pick_node(shape)
        alive = [n for n in self.state.nodes.values() if n.alive]
        labels = label_strategy(strategy)
        if labels is not None:
            # node labels: those matching the hard requirements, the ones
            # also matching the soft ones first
            hard, soft = labels
            alive = [n for n in alive if labels_match(n.info.get("labels") or {}, hard)]
            if soft:
                alive.sort(key=lambda n: not labels_match(n.info.get("labels") or {}, soft))
            strategy = None
        if type(strategy) is tuple and strategy and strategy[0] == "node":
            for n in alive:
                if n.info["node_id"].hex() == strategy[1] and fits(n.info.get("resources", {}),
                                                                   shape):
                    return n.info
            if not strategy[2]:
                return None                 # hard affinity: waits for that node
        if strategy == "SPREAD" and alive:
            self._spread_next = getattr(self, "_spread_next", -1) + 1
            alive = alive[self._spread_next % len(alive):] + alive[:self._spread_next % len(alive)]
        for n in alive:
            if fits(n.available, shape) and fits(n.info.get("resources", {}), shape):
                return n.info
        for n in alive:
            if fits(n.info.get("resources", {}), shape):
                return n.info
        return None

    def h_lease_infeasible(self, msg, frames):
        log.warning("actor: %s", LEASE_INFEASIBLE.parse(msg).message)

    def h_ignore(self, msg, frames):
        pass

    # ---- nodes ---------------------------------------------------------
    def h_node_resources(self, msg, frames):
        _, node_id, available, total = NODE_RESOURCES.parse(msg)
        if not isinstance(available, dict):
            raise ValueError(f"bad resource report {available!r}")
        if not self.state.node_resources(node_id, available, total):
            n = self.state.nodes[node_id]
            self.out.send(n.info["raylet_addr"], NODE_DEAD.make(node_id))
        elif self.pgs.pending:
            self.pgs.retry_pending()

    def h_unregister_node(self, msg, frames):
        node_id = UNREGISTER_NODE.parse(msg).node_id
        if self.state.unregister_node(node_id):
            self.on_nodes_dead([node_id])

    def on_nodes_dead(self, dead):
        """Tells every raylet and driver; the actors that lived there restart
        or die; their pending actor leases are asked again elsewhere."""
        infos = [self.state.nodes[nid].info for nid in dead]
        for nid in dead:
            msg = NODE_DEAD.make(nid)
            for n in self.state.nodes.values():
                if n.alive:
                    self.out.send(n.info["raylet_addr"], msg)
            for job in self.state.jobs.values():
                if not job.get("end_time") and job.get("driver_addr"):
                    self.out.send(job["driver_addr"], msg)
        self._broadcast_view()
        # first the groups (actors placed in a lost bundle wait for it)
        self.pgs.on_nodes_dead(dead)
        gone = {info["raylet_addr"] for info in infos}
        am = self.actors
        from pyray.gcs.actor_manager import DEAD
        for e in list(am.actors.values()):
            if e.state == DEAD:
                continue
            if e.worker is not None and e.raylet_addr in gone:
                am.worker_died(e.lease_id, e.worker[0], "its node died")
            elif e.worker is None and e.lease_req is not None and e.lease_req[0] in gone:
                am.lease_reqs.pop(e.lease_req[1], None)
                e.lease_req = None
        am.reschedule_pending()

    def _broadcast_view(self):
        """Sends the node table to every live raylet (only once there is more
        than one node: a lone raylet has no one to send work to)."""
        st = self.state
        st.view_dirty = False
        self.last_view_sent = time.monotonic()
        if len(st.nodes) < 2:
            return
        msg = CLUSTER_VIEW.make(st.get_nodes())
        for n in st.nodes.values():
            if n.alive:
                self.out.send(n.info["raylet_addr"], msg)

    def any_raylet(self):
        for n in self.state.nodes.values():
            if n.alive:
                return n.info["raylet_addr"]
        return None

    def _kv_put(self, key, value, overwrite=True):
        if not overwrite and key in self.state.kv:
            return False
        self.state.kv[key] = value
        self.storage.put("kv", key, value)
        return True

    def _kv_del(self, key):
        self.storage.delete("kv", key)
        return self.state.kv.pop(key, None) is not None

    def h_shutdown(self, msg, frames):
        self.stopping = True

    def h_driver_exit(self, msg, frames):
        self.on_driver_exit(DRIVER_EXIT.parse(msg).job_id)

    def on_driver_exit(self, job_id):
        self.actors.driver_exit(job_id)
        self.pgs.driver_exit(job_id)
        if len(self.state.nodes) > 1:
            # every node stops the job's workers (the driver told its own)
            for n in self.state.nodes.values():
                if n.alive:
                    self.out.send(n.info["raylet_addr"], DRIVER_EXIT.make(job_id))
        self.task_events.driver_finished(job_id)
        job = self.state.jobs.get(job_id)
        if job is not None:
            job["end_time"] = job.get("end_time") or __import__("time").time()
            self.state.save_job(job_id)

    def run(self, ready_fd=None):
        if ready_fd is not None:
            os.write(ready_fd, (json.dumps({"gcs_address": self.address}) + "\n").encode())
            os.close(ready_fd)
        hb = self.config.heartbeat_interval_s
        self.dead_after = hb * self.config.num_heartbeats_timeout
        self.check_every = min(1.0, hb)
        self.check_due = time.monotonic() + self.check_every
        self.last_view_sent = 0.0
        self.every(self.check_every, self.check_nodes)
        self.serve()

    def poll_timeout(self):
        return 20 if self.state.view_dirty else 100

    def check_nodes(self, now):
        """Declares dead the nodes whose heartbeats stopped."""
        if now - self.check_due > max(1.0, self.dead_after / 2):
            self.state.forgive()        # we were stalled, not the nodes
        self.check_due = now + self.check_every
        dead = self.state.check_liveness(self.dead_after)
        self.pgs.tick(now)
        if dead:
            self.on_nodes_dead(dead)

    def after_batch(self, now):
        if self.state.view_dirty and now - self.last_view_sent >= 0.05:
            self._broadcast_view()
        self.flush()

    def close(self):
        self.flush()
        self.close_sockets(self.ctx)
        self.storage.close()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pyray-gcs")
    ap.add_argument("--address", default="tcp://127.0.0.1:0")
    ap.add_argument("--listen", default=None,
                    help="the endpoint to bind (default: --address), e.g. tcp://0.0.0.0:6379")
    ap.add_argument("--ready-fd", type=int, default=None)
    ap.add_argument("--die-with-parent", action="store_true")
    ap.add_argument("--storage", default=None,
                    help="the file the GCS keeps its tables in (SQLite); a GCS restarted "
                         "with the same file recovers the cluster")
    args = ap.parse_args(argv)
    daemon.start(args.die_with_parent)
    GcsServer(args.address, Config.from_env(), args.storage, args.listen).run(args.ready_fd)
    daemon.exit_now()


if __name__ == "__main__":
    main()
