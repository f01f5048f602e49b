"""Choosing a replica for each request, in the caller's process.

`ReplicaChooser` is the policy (a plain class, unit-tested alone): it keeps
the ongoing-request count of each replica as this process sees it, picks
by power of two choices (two random replicas, the less loaded one), never
past a replica's max_ongoing_requests, and queues the rest up to
max_queued_requests.  `Router` carries its decisions out with direct actor
calls: no controller round trip per request.
"""
from __future__ import annotations

import collections
import concurrent.futures
import random
import threading
from typing import Dict, List, Optional

from pyray.exceptions import RayActorError
from pyray.serve.exceptions import BackPressureError, DeploymentUnavailableError


class ReplicaChooser:
    """Ongoing counts per replica and the choice among them."""

    def __init__(self, max_ongoing: int = 5, max_queued: int = -1):
        self.max_ongoing = max_ongoing
        self.max_queued = max_queued
        self.ongoing: Dict[str, int] = {}
        self._ids: List[str] = []
        self.dead: set = set()

    def set_replicas(self, ids):
        old = self.ongoing
        self.ongoing = {r: old.get(r, 0) for r in ids if r not in self.dead}
        self._ids = list(self.ongoing)
        self.dead &= set(ids)

    def mark_dead(self, rid: str):
        self.dead.add(rid)
        if rid in self.ongoing:
            del self.ongoing[rid]
            self._ids = list(self.ongoing)

    def choose(self) -> Optional[str]:
        """A replica with room, or None (all full, or none)."""
        ids = self._ids
        n = len(ids)
        cap = self.max_ongoing
        ongoing = self.ongoing
        if n == 1:
            r = ids[0]
            return r if ongoing[r] < cap else None
        if n == 0:
            return None
        a, b = random.sample(ids, 2)
        if ongoing[b] < ongoing[a]:
            a, b = b, a
        if ongoing[a] < cap:
            return a
        best = min(ids, key=ongoing.__getitem__)
        return best if ongoing[best] < cap else None

    def started(self, rid: str):
        self.ongoing[rid] += 1

    def finished(self, rid: str):
        if rid in self.ongoing and self.ongoing[rid] > 0:
            self.ongoing[rid] -= 1

    def total_ongoing(self) -> int:
        return sum(self.ongoing.values())

    def queue_full(self, queued: int) -> bool:
        return self.max_queued != -1 and queued >= self.max_queued


class _Request:
    __slots__ = ("method", "args", "kwargs", "mode", "ref_fut")

    def __init__(self, method, args, kwargs, mode):
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.mode = mode
        self.ref_fut = None


class Router:
    """One deployment's replicas as this process knows them."""

    def __init__(self, client, key):
        self.client = client
        self.key = key                      # (app_name, deployment_name)
        self.chooser = ReplicaChooser()
        self.actors: Dict[str, object] = {}
        self.lock = threading.RLock()   # a generator's __del__ may release inside it
        self.queue = collections.deque()
        self.known = False                  # got a replica set from the controller
        self.unavailable: Optional[str] = None
        self.autoscaling_interval: Optional[float] = None
        self.last_report = 0.0

    # updates from the controller ----------------------------------------
    def update(self, info: dict):
        with self.lock:
            self.known = True
            self.chooser.max_ongoing = info["max_ongoing"]
            self.chooser.max_queued = info["max_queued"]
            self.autoscaling_interval = info.get("metrics_interval_s")
            self.unavailable = info.get("unavailable")
            self.actors = dict(info["replicas"])
            self.chooser.set_replicas(list(self.actors))
            if self.unavailable:
                self._fail_queue_locked()
        self._drain()
        with self.lock:   # requests queued before the limits were known
            q = self.queue
            while self.chooser.max_queued != -1 and len(q) > self.chooser.max_queued:
                q.pop().ref_fut.set_exception(
                    BackPressureError(len(q), self.chooser.max_queued))

    def _fail_queue_locked(self):
        from pyray.serve.context import DeploymentID
        err = DeploymentUnavailableError(DeploymentID(self.key[1], self.key[0]))
        while self.queue:
            req = self.queue.popleft()
            req.ref_fut.set_exception(err)

    # the request path -----------------------------------------------------
    def assign(self, method, args, kwargs, mode):
        """-> what _send returns, now, or a Future of it while the request
        waits for a replica with room."""
        with self.lock:
            if self.unavailable:
                from pyray.serve.context import DeploymentID
                raise DeploymentUnavailableError(DeploymentID(self.key[1], self.key[0]))
            rid = None
            if not self.queue and self.known:
                rid = self.chooser.choose()
            if rid is not None:
                self.chooser.started(rid)
                actor = self.actors[rid]
            else:
                if self.chooser.queue_full(len(self.queue)):
                    # as in Ray, the error comes out of the response (result/await)
                    failed = concurrent.futures.Future()
                    failed.set_exception(BackPressureError(len(self.queue),
                                                           self.chooser.max_queued))
                    return failed
                req = _Request(method, args, kwargs, mode)
                req.ref_fut = concurrent.futures.Future()
                self.queue.append(req)
                report = self.autoscaling_interval is not None and not self.actors
        if rid is None:
            if report:
                self.client.report_metrics(self, force=True)
            return req.ref_fut
        return self._send(rid, actor, method, args, kwargs, mode)

    def _send(self, rid, actor, method, args, kwargs, mode):
        """Sends one request to a replica (its slot already counted).  mode 0:
        a call (-> its ref), 1: a streaming call (-> a generator), 2: an HTTP
        request (-> the reply's future and the replica), 3: a WebSocket session
        (-> its message generator and the replica)."""
        slot = Slot(self, rid)
        try:
            if mode == 1:
                gen = actor.handle_request_streaming.remote(method, *args, **kwargs)
                return _CountedGenerator(gen, slot)
            if mode == 3:
                gen = actor.handle_ws.remote(*args)
                return _CountedGenerator(gen, slot), actor
            if mode == 2:
                fut = actor.handle_http.remote(*args).future()
                fut.add_done_callback(lambda f: slot.release(f.exception()))
                return fut, actor
            ref = actor.handle_request.remote(method, *args, **kwargs)
        except BaseException:
            slot.release()
            raise
        # the slot comes back when the reply arrives (the I/O thread's callback),
        # or earlier when the caller reads the result itself (response.result())
        ref.future().add_done_callback(lambda f: slot.release(f.exception()))
        return ref, slot

    def _drain(self):
        todo = []
        with self.lock:
            q = self.queue
            while q:
                rid = self.chooser.choose()
                if rid is None:
                    break
                self.chooser.started(rid)
                todo.append((rid, self.actors[rid], q.popleft()))
        for rid, actor, req in todo:
            try:
                out = self._send(rid, actor, req.method, req.args, req.kwargs, req.mode)
            except Exception as e:  # noqa: BLE001 - delivered to the caller
                req.ref_fut.set_exception(e)
                continue
            req.ref_fut.set_result(out)

    def _done(self, rid, err=None):
        dead = err is not None and isinstance(err, RayActorError)
        with self.lock:
            if dead:
                self.chooser.mark_dead(rid)
            else:
                self.chooser.finished(rid)
            more = bool(self.queue)
        if more:
            self._drain()
        if dead:
            self.client.report_dead(self.key, rid)

    def report_load(self) -> float:
        with self.lock:
            return len(self.queue) + self.chooser.total_ongoing()


class Slot:
    """One request's place on a replica: given back once, by whichever of
    the reply's callback and the caller's read of the result comes first."""
    __slots__ = ("router", "rid", "released")

    def __init__(self, router, rid):
        self.router = router
        self.rid = rid
        self.released = False

    def release(self, error=None):
        if self.released:
            return
        self.released = True
        self.router._done(self.rid, error)


class _CountedGenerator:
    """A streaming call's ObjectRefGenerator that gives its replica slot back
    when it ends."""

    def __init__(self, gen, slot):
        self.gen = gen
        self._slot = slot

    def release(self, error=None):
        self._slot.release(error)

    def __del__(self):
        self._slot.release()
