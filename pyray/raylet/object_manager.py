"""The object manager: moves objects between the nodes' stores.

A thread of the raylet with its own inbox.  A process that needs an object
held by another node asks its node's object manager (PULL_OBJECT); the
object manager asks the holder's object manager for chunks (FETCH_CHUNKS),
``window`` chunks in flight at a time, copies each arriving chunk into a
buffer create()d in the local store, and seals it when the last one is in:
the readers then map it zero-copy like any local object.  Concurrent pulls
of one object share one transfer.  The serving side is stateless: each
FETCH_CHUNKS maps the object (restoring it if spilled) and sends slices of
the mapping as zmq frames without copying them.

At most ``MAX_ACTIVE_PULLS`` transfers run at once (each with ``window``
chunks in flight); later ones wait their turn.  Pulled copies are secondary:
the store may evict them under pressure (the primary copy stays on the node
that made the object), and the holder remembers who fetched from it, so
that freeing the object frees the copies too.  A pull fails when the source
node dies or stops sending for ``stall_timeout`` seconds; the reply says why
with an error (pyray._private.errors): NodeDiedError (the source is gone or
silent), ObjectLostError (the source does not have it, or cannot read it),
ObjectStoreFullError (no room here), RaySystemError (this node is stopping).
"""
from __future__ import annotations

import collections
import logging
import threading
import time

from pyray import exceptions as exc
from pyray._private import errors
from pyray._private.protocol import (FETCH_CHUNKS, FREE_OBJECTS, NODE_DEAD, OBJECT_CHUNK,
                                     OBJECT_MANAGER_STATS, PING, PULL_OBJECT, RESPONSE, Op)
from pyray._private.server import Server
from pyray._private.transport import Outbox, bind_node_inbox

log = logging.getLogger("pyray.object_manager")

MAX_ACTIVE_PULLS = 8
MAX_REMEMBERED_FETCHES = 100_000


class Pull:
    __slots__ = ("oid", "source", "waiters", "view", "size", "nchunks", "next_index",
                 "received", "last_progress", "started", "got")

    def __init__(self, oid, source):
        self.oid = oid
        self.source = source
        self.waiters = []
        self.view = None
        self.size = -1
        self.nchunks = 0
        self.next_index = 1
        self.received = 0
        self.got = set()            # chunk indices in
        self.started = self.last_progress = time.monotonic()


class ObjectManager(Server):
    poll_ms = 200
    obeys_signals = False       # the raylet stops it (stop())

    def __init__(self, ctx, node, store_name, node_id, get_peers, config):
        import plasma
        super().__init__()
        self.plasma = plasma
        self.ctx = ctx
        self.node_id = node_id
        self.get_peers = get_peers          # () -> {node id: Peer}, the raylet's view
        self.chunk = max(1 << 16, int(config.object_transfer_chunk_bytes))
        self.window = max(1, int(config.object_transfer_window))
        self.stall_timeout = max(10.0, 2 * config.heartbeat_interval_s *
                                 config.num_heartbeats_timeout)
        self.client = plasma.connect(store_name)
        self.inbox, self.addr = bind_node_inbox(ctx, node, node["om_addr"])
        self.out = Outbox(ctx)
        self.pulls = {}
        self.waiting = collections.deque()   # pulls beyond MAX_ACTIVE_PULLS, in order
        self.active = 0
        # oid -> object managers that fetched it (the oldest forgotten past a bound)
        self.served_to = collections.OrderedDict()
        self.stats = {"pulls": 0, "pulled_bytes": 0, "pull_failures": 0, "served_chunks": 0,
                      "served_bytes": 0, "deduplicated": 0}
        self.handlers = {
            Op.PULL_OBJECT: self.h_pull,
            Op.FETCH_CHUNKS: self.h_fetch,
            Op.OBJECT_CHUNK: self.h_chunk,
            Op.FREE_OBJECTS: self.h_free,
            Op.NODE_DEAD: self.h_node_dead,
            Op.OBJECT_MANAGER_STATS: self.h_stats,
            Op.PING: lambda msg, frames: self._respond(PING.parse(msg), True, "pong"),
            Op.RESPONSE: lambda msg, frames: None,
        }
        self.every(1.0, self._check_stalled)
        self.thread = threading.Thread(target=self.serve, name="pyray-object-manager",
                                       daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping = True
        self.out.send(self.addr, RESPONSE.make(0, True, None))     # wakes the loop
        if self.thread.ident is not None:
            self.thread.join(timeout=5)

    # ------------------------------------------------------------------
    def _respond(self, m, ok, payload):
        """Answers the request `m` (parsed)."""
        if isinstance(m.reply_to, str):
            self.out.send(m.reply_to, RESPONSE.make(m.req_id, ok, payload))

    def h_stats(self, msg, frames):
        self._respond(OBJECT_MANAGER_STATS.parse(msg), True,
                      dict(self.stats, active=len(self.pulls)))

    def h_pull(self, msg, frames):
        _, req_id, reply_to, oid, source = PULL_OBJECT.parse(msg)
        if self.client.contains(oid):
            self.out.send(reply_to, RESPONSE.make(req_id, True, None))
            return
        p = self.pulls.get(oid)
        if p is not None:
            self.stats["deduplicated"] += 1
            p.waiters.append((reply_to, req_id))
            return
        if source == self.node_id:
            why = self._missing(oid)
            self.out.send(reply_to, RESPONSE.make(req_id, False, errors.encode(why)))
            return
        p = self.pulls[oid] = Pull(oid, source)
        p.waiters.append((reply_to, req_id))
        self.stats["pulls"] += 1
        if self.active < MAX_ACTIVE_PULLS:
            self._start(p)
        else:
            self.waiting.append(p)

    def _start(self, p):
        peer = self.get_peers().get(p.source)
        if peer is None or not peer.om_addr:
            src = p.source.hex() if isinstance(p.source, bytes) else repr(p.source)
            self._fail(p, exc.NodeDiedError(f"node {src} that holds it is dead or unknown"))
            return
        self.active += 1
        p.view = False                  # started; the buffer comes with the first chunk
        p.started = p.last_progress = time.monotonic()
        self.out.send(peer.om_addr, FETCH_CHUNKS.make(p.oid, 0, 1, self.addr, self.chunk))

    def _done(self, p):
        """A pull ends (either way): its turn goes to the next one waiting."""
        self.pulls.pop(p.oid, None)
        if p.view is not None:
            self.active -= 1
        while self.waiting and self.active < MAX_ACTIVE_PULLS:
            nxt = self.waiting.popleft()
            if self.pulls.get(nxt.oid) is nxt:
                self._start(nxt)

    def h_fetch(self, msg, frames):
        """Serves chunks [first, first + count) of a local object."""
        _, oid, first, count, reply_to, chunk = FETCH_CHUNKS.parse(msg)
        if not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"bad chunk size {chunk!r}")
        plasma = self.plasma
        try:
            buf = self.client.get(oid, timeout=0)
        except (plasma.ObjectNotFoundError, plasma.GetTimeoutError):
            self.out.send(reply_to, OBJECT_CHUNK.make(oid, first, -1, None,
                                                      errors.encode(self._missing(oid))))
            return
        except plasma.PlasmaError as err:
            # a spilled copy that cannot be read back, or no room to restore it
            lost = exc.ObjectLostError(oid.hex(), msg=(
                f"node {self.node_id.hex()} cannot read it: {err}"))
            self.out.send(reply_to, OBJECT_CHUNK.make(oid, first, -1, None, errors.encode(lost)))
            return
        if first == 0:
            self.served_to.setdefault(oid, set()).add(reply_to)
            if len(self.served_to) > MAX_REMEMBERED_FETCHES:
                self.served_to.popitem(last=False)
        mv = memoryview(buf)
        size = mv.nbytes
        meta = bytes(buf.metadata) if first == 0 else None
        nchunks = max(1, -(-size // chunk))
        for i in range(first, min(first + count, nchunks)):
            piece = mv[i * chunk:(i + 1) * chunk]
            self.out.send(reply_to, OBJECT_CHUNK.make(oid, i, size, meta, None), [piece])
            meta = None
            self.stats["served_chunks"] += 1
            self.stats["served_bytes"] += piece.nbytes

    def h_chunk(self, msg, frames):
        _, oid, index, size, meta, err = OBJECT_CHUNK.parse(msg)
        p = self.pulls.get(oid)
        if p is None or p.view is None:
            return                      # a transfer that failed or finished
        if err is not None:
            self._fail(p, errors.decode(err))
            return
        if p.view is False:
            if not self._begin(p, size, meta):
                return
        if index in p.got or not 0 <= index < p.nchunks:
            return
        data = frames[0].buffer if frames else b""
        n = len(data)
        off = index * self.chunk
        if off + n > p.size:
            raise ValueError(f"chunk {index} of {p.oid.hex()} overruns the object")
        if n:
            if n >= 1 << 16:
                import numpy as np
                self.plasma.copy_into(np.frombuffer(p.view, np.uint8, n, off),
                                      np.frombuffer(data, np.uint8))
            else:
                p.view[off:off + n] = data
        p.got.add(index)
        p.received += 1
        p.last_progress = time.monotonic()
        if p.received >= p.nchunks:
            self._finish(p)
        elif p.next_index < p.nchunks:
            # keep `window` chunks in flight: one more for the one that came
            want = self.window if p.received == 1 else 1
            peer = self.get_peers().get(p.source)
            if peer is None:
                self._fail(p, exc.NodeDiedError(
                    f"node {p.source.hex()} died during the transfer"))
                return
            count = min(want, p.nchunks - p.next_index)
            self.out.send(peer.om_addr, FETCH_CHUNKS.make(oid, p.next_index, count, self.addr,
                                                          self.chunk))
            p.next_index += count

    def _begin(self, p, size, meta):
        plasma = self.plasma
        try:
            p.view = self.client.create(p.oid, size, metadata=meta or b"", secondary=True)
        except plasma.ObjectExistsError:
            # made here meanwhile (a task's return or another pull): use it
            self._finish(p, created=False)
            return False
        except plasma.ObjectStoreFullError as err:
            self._fail(p, exc.ObjectStoreFullError(str(err)))
            return False
        p.size = size
        p.nchunks = max(1, -(-size // self.chunk))
        return True

    def _finish(self, p, created=True):
        self._done(p)
        if created:
            p.view.release()
            self.client.seal(p.oid)
            self.stats["pulled_bytes"] += p.size
        p.view = None
        for reply_to, req_id in p.waiters:
            self.out.send(reply_to, RESPONSE.make(req_id, True, None))

    def _missing(self, oid):
        return exc.ObjectLostError(oid.hex(), msg=(
            f"it is not in the store of node {self.node_id.hex()}"))

    def _fail(self, p, why):
        """The pull failed: `why` (an exception) goes to everyone waiting."""
        self._done(p)
        self.stats["pull_failures"] += 1
        if p.view:
            p.view.release()
            try:
                self.client.abort(p.oid)
            except Exception as err:  # noqa: BLE001 - the failure is reported anyway
                log.debug("abort of %s failed: %s", p.oid.hex(), err)
        p.view = None
        payload = errors.encode(why)
        for reply_to, req_id in p.waiters:
            self.out.send(reply_to, RESPONSE.make(req_id, False, payload))

    def h_free(self, msg, frames):
        """Deletes objects here; the holder's copy (node_id) and the copies
        pulled from it go too."""
        _, node_id, oids = FREE_OBJECTS.parse(msg)
        if node_id != self.node_id:
            peer = self.get_peers().get(node_id)
            if peer is not None and peer.om_addr:
                self.out.send(peer.om_addr, msg)
        else:
            pulled = {}
            for oid in oids:
                for addr in self.served_to.pop(oid, ()):
                    pulled.setdefault(addr, []).append(oid)
            for addr, some in pulled.items():
                self.out.send(addr, FREE_OBJECTS.make(None, some))
        for oid in oids:
            try:
                self.client.delete(oid)
            except KeyError:
                pass
            except Exception as err:  # noqa: BLE001
                log.debug("delete of %s failed: %s", oid.hex(), err)

    def h_node_dead(self, msg, frames):
        node_id = NODE_DEAD.parse(msg).node_id
        for p in [p for p in self.pulls.values() if p.source == node_id]:
            self._fail(p, exc.NodeDiedError(f"node {node_id.hex()} that held it died"))

    def _check_stalled(self, now):
        if not self.pulls:
            return
        for p in list(self.pulls.values()):
            if p.view is not None and now - p.last_progress > self.stall_timeout:
                self._fail(p, exc.NodeDiedError(f"node {p.source.hex()} sent nothing for "
                                                f"{self.stall_timeout:.0f}s"))

    def close(self):
        for p in list(self.pulls.values()):
            self._fail(p, exc.RaySystemError("the node is shutting down"))
        self.close_sockets()
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass
