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
import signal
import sys
import time

import zmq

from pyray._private.config import Config
from pyray._private.daemon import exit_now
from pyray._private.protocol import Op
from pyray._private.transport import Outbox, bind_inbox, recv_msg

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

    def register_node(self, info):
        self.nodes[info["node_id"]] = NodeEntry(info)
        return True

    def node_resources(self, node_id, available):
        n = self.nodes.get(node_id)
        if n is not None:
            n.available = available
            n.last_seen = time.monotonic()
            n.alive = True

    def unregister_node(self, node_id):
        n = self.nodes.get(node_id)
        if n is not None:
            n.alive = False

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
        return job_id

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
        now = time.monotonic()
        for n in self.nodes.values():
            if n.alive and now - n.last_seen > timeout:
                log.warning("node %s missed heartbeats for %.1fs: marked dead",
                            n.info["node_id"].hex(), now - n.last_seen)
                n.alive = False


class GcsServer:
    def __init__(self, address, config):
        self.config = config
        self.state = GcsState()
        self.ctx = zmq.Context()
        self.inbox = bind_inbox(self.ctx, address)
        self.address = address
        if address.endswith(":0"):
            self.address = self.inbox.getsockopt_string(zmq.LAST_ENDPOINT)
        self.out = Outbox(self.ctx)
        self.stopping = False
        s = self.state
        self.requests = {
            Op.REGISTER_NODE: self._register_node,
            Op.GET_NODES: lambda: s.get_nodes(),
            Op.REGISTER_JOB: lambda info: s.register_job(info),
            Op.KV_PUT: self._kv_put,
            Op.KV_GET: lambda key: s.kv.get(key),
            Op.KV_DEL: lambda key: s.kv.pop(key, None) is not None,
            Op.KV_KEYS: lambda prefix: [k for k in s.kv if k.startswith(prefix)],
            Op.CLUSTER_RESOURCES: lambda available: s.cluster_resources(available),
            Op.PING: lambda: "pong",
        }
        from pyray.gcs.actor_manager import ActorManager
        self.actors = am = ActorManager(self)
        self.requests.update({
            Op.REGISTER_ACTOR: am.register,
            Op.GET_NAMED_ACTOR: am.get_named,
            Op.LIST_NAMED_ACTORS: am.list_named,
            Op.KILL_ACTOR: am.kill,
            Op.LIST_ACTORS: am.list_actors,
        })
        self.oneway = {
            Op.GET_ACTOR_INFO: self._actor_info,
            Op.ACTOR_EXITING: am.exiting,
            Op.LEASE_GRANTED: lambda *a: am.on_lease_granted((Op.LEASE_GRANTED,) + a),
            Op.TASK_REPLIES: lambda *a: am.on_task_replies((Op.TASK_REPLIES,) + a),
            Op.WORKER_DIED: lambda *a: am.on_worker_died((Op.WORKER_DIED,) + a),
            Op.LEASE_INFEASIBLE: lambda req_id, message: log.warning("actor: %s", message),
            Op.RESPONSE: lambda *a: None,
            Op.NODE_RESOURCES: lambda node_id, available: s.node_resources(node_id, available),
            Op.UNREGISTER_NODE: lambda node_id: s.unregister_node(node_id),
            Op.SHUTDOWN: lambda *a: self._shutdown(),
            Op.DRIVER_EXIT: lambda job_id: self.on_driver_exit(job_id),
        }

    def _register_node(self, info):
        self.state.register_node(info)
        self.actors.reschedule_pending()
        return True

    def _actor_info(self, actor_id, subscriber):
        from pyray.gcs.actor_manager import DEAD
        msg = self.actors.info(actor_id, subscriber)
        if msg is None:
            msg = (Op.ACTOR_STATE, actor_id, DEAD, None,
                   f"Actor {actor_id.hex()} is not known to the cluster.", 0)
        self.out.send(subscriber, msg)

    def pick_node(self, shape):
        for n in self.state.nodes.values():
            if not n.alive:
                continue
            total = n.info.get("resources", {})
            if all(total.get(k, 0.0) + 1e-9 >= v for k, v in shape.items() if v > 0):
                return n.info
        return None

    def any_raylet(self):
        for n in self.state.nodes.values():
            if n.alive:
                return n.info["raylet_addr"]
        return None

    def _kv_put(self, key, value, overwrite=True):
        if not overwrite and key in self.state.kv:
            return False
        self.state.kv[key] = value
        return True

    def _shutdown(self):
        self.stopping = True
        return True

    def on_driver_exit(self, job_id):
        self.actors.driver_exit(job_id)
        job = self.state.jobs.get(job_id)
        if job is not None:
            job["end_time"] = job.get("end_time") or __import__("time").time()

    def handle(self, msg):
        op = msg[0]
        fn = self.oneway.get(op)
        if fn is not None:
            fn(*msg[1:])
            return
        fn = self.requests.get(op)
        if fn is None:
            log.warning("dropped a message with unknown op %r", op)
            return
        if len(msg) < 3 or not isinstance(msg[2], str):
            log.warning("dropped a request without a reply address (op %r)", op)
            return
        req_id, reply_to = msg[1], msg[2]
        try:
            payload, ok = fn(*msg[3:]), True
        except Exception as err:  # noqa: BLE001 - reported to the caller
            # Plain user errors (a taken name, an unknown actor) travel as
            # themselves so the caller raises the type Ray raises.
            if type(err) in (ValueError, TypeError, KeyError):
                payload = err
            else:
                payload = f"{type(err).__name__}: {err}"
            ok = False
        self.out.send(reply_to, (Op.RESPONSE, req_id, ok, payload))

    def run(self, ready_fd=None):
        if ready_fd is not None:
            os.write(ready_fd, (json.dumps({"gcs_address": self.address}) + "\n").encode())
            os.close(ready_fd)
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        dead_after = self.config.heartbeat_interval_s * self.config.num_heartbeats_timeout
        next_check = time.monotonic() + 1.0
        while not self.stopping and not _stop_requested:
            if poller.poll(100):
                for _ in range(1000):
                    if not self.inbox.poll(0):
                        break
                    msg, _frames = recv_msg(self.inbox)
                    if msg is None:
                        continue
                    try:
                        self.handle(msg)
                    except Exception:  # noqa: BLE001 - a bad message must not kill us
                        log.exception("handling op %s failed", msg[0])
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 1.0
                self.state.check_liveness(dead_after)
        self.out.close()
        self.inbox.close(0)
        self.ctx.term()


_stop_requested = False


def _on_term(signum, frame):
    global _stop_requested
    _stop_requested = True


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pyray-gcs")
    ap.add_argument("--address", default="tcp://127.0.0.1:0")
    ap.add_argument("--ready-fd", type=int, default=None)
    ap.add_argument("--die-with-parent", action="store_true")
    args = ap.parse_args(argv)
    if args.die_with_parent:
        from pyray.raylet.worker_pool import set_pdeathsig
        set_pdeathsig(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    GcsServer(args.address, Config.from_env()).run(args.ready_fd)
    exit_now()


if __name__ == "__main__":
    main()
