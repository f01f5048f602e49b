"""Wire protocol of the control plane: every message, defined once.

Every process has one inbox (a zmq PULL socket); a message is one pickled
tuple ``(op, *fields)`` (pickle protocol 5), optionally followed by raw
frames for out-of-band buffers.  The tuples stay plain on the wire (cheap to
pickle); this module names their fields:

* ``PUSH_TASK.make(task_id, fn_id, ...)`` builds the tuple (a wrong number of
  fields is a TypeError at the sender);
* ``PUSH_TASK.parse(msg)`` reads one into a named tuple (``m.task_id``); a
  tuple of the wrong length raises ProtocolError at the receiver.

A *request* expects an answer: its first two fields are the request id and
the sender's inbox address, and it is answered with ``RESPONSE(req_id, ok,
payload)``.  PROTOCOL_VERSION is checked when a worker registers.

Senders build messages only through ``make`` and receivers read them only
through ``parse`` or ``OP.fields`` (tests/unit/test_protocol.py checks that
no module builds one by hand), so a sender and a receiver cannot disagree
silently.
"""
from __future__ import annotations

from collections import namedtuple

PROTOCOL_VERSION = 1


class ProtocolError(ValueError):
    """A message does not have the fields its definition names."""


# kinds of a stored value (OBJECT_VALUE.kind, reply entries)
VALUE = 0       # payload: (pickled bytes, [buffers])
IN_STORE = 1    # payload: node id holding it in its shared-memory store
ERROR = 2       # payload: (pickled bytes, [buffers]) of an exception to raise


class Message:
    """One kind of message: its op code and its named fields, in wire order.

    Fields after the first one with a default (``"total=None"``) may be left
    out by the sender; ``parse`` fills them in.

    ``make``, ``parse`` and ``view`` are built the first time they are used:
    a process pays only for the messages it sends and reads (every process
    imports this module, and building all of them costs milliseconds).
    """

    __slots__ = ("op", "name", "fields", "request", "defaults", "make", "parse", "view", "doc")

    def __init__(self, op, name, fields, doc="", request=False):
        names, defaults = [], []
        for f in fields.split():
            n, eq, default = f.partition("=")
            names.append(n)
            if eq:
                defaults.append(eval(default, {}))   # literals only: None, True, 0
            elif defaults:
                raise ValueError(f"{name}: field {n} without a default follows one with a default")
        if request:
            names[:0] = ["req_id", "reply_to"]
        self.op = op
        self.name = name
        self.fields = tuple(names)
        self.request = request
        self.doc = doc
        self.defaults = tuple(defaults)

    def __getattr__(self, attr):
        # only reached while a slot is unset: build make, parse and view once
        if attr not in ("make", "parse", "view"):
            raise AttributeError(attr)
        names, defaults = list(self.fields), list(self.defaults)
        self.view = namedtuple(self.name.title().replace("_", ""), ("op",) + self.fields,
                               defaults=defaults or None)
        self.make = _maker(self.op, self.name, names, defaults)
        self.parse = _parser(self, len(names) - len(defaults), len(names))
        return getattr(self, attr)

    def __repr__(self):
        return f"<message {self.name}={self.op} ({', '.join(self.fields)})>"


def _maker(op, name, names, defaults):
    """A function with exactly the message's parameters that returns the
    wire tuple: as cheap as writing the tuple by hand."""
    required = names[:len(names) - len(defaults)]
    optional = names[len(names) - len(defaults):]
    params = ", ".join(required + [f"{n}=_d{i}" for i, n in enumerate(optional)])
    body = ", ".join([str(op)] + names)
    env = {f"_d{i}": d for i, d in enumerate(defaults)}
    exec(f"def make({params}):\n    return ({body},)\n", env)   # noqa: S102 - our own field names
    fn = env["make"]
    fn.__name__ = fn.__qualname__ = f"{name}.make"
    return fn


def _parser(m, least, most):
    view = m.view
    new = view._make if least == most else None

    def parse(msg):
        try:
            if new is not None:
                return new(msg)
            if not least < len(msg) <= most + 1:
                raise TypeError
            return view(*msg)
        except TypeError:
            raise ProtocolError(
                f"{m.name}: expected {_arity(least, most)} fields "
                f"({', '.join(m.fields)}), got {len(msg) - 1}: {_preview(msg)}") from None
    parse.__name__ = parse.__qualname__ = f"{m.name}.parse"
    return parse


def _arity(least, most):
    return str(most) if least == most else f"{least} to {most}"


def _preview(msg):
    text = repr(msg)
    return text if len(text) <= 200 else text[:200] + "..."


MESSAGES = {}       # op code -> Message


def _def(op, name, fields="", doc="", request=False):
    m = Message(op, name, fields, doc, request)
    if op in MESSAGES:
        raise ValueError(f"op {op} is defined twice ({MESSAGES[op].name}, {name})")
    MESSAGES[op] = m
    globals()[name] = m
    setattr(Op, name, op)
    return m


class Op:
    """Op codes by name (``Op.PUSH_TASK == PUSH_TASK.op``), for dispatch tables."""


def definition(op):
    m = MESSAGES.get(op)
    if m is None:
        raise ProtocolError(f"unknown op {op!r}")
    return m


# ---------------------------------------------------------------- answers
_def(0, "RESPONSE", "req_id ok payload", "the answer to a request; payload is the error when not ok")

# ------------------------------------------------- core worker <-> core worker
_def(10, "PUSH_TASK",
     "task_id fn_id fn_bytes name data nbuf resolved num_returns owner attempt gpu_ids "
     "job actor extra shape events",
     "owner (or the GCS for an actor's creation) -> the leased worker: run this task. "
     "fn_bytes: the pickled function the first time this lease sees fn_id, else None; "
     "data: pickled (args, kwargs) with nbuf out-of-band frames (-1: none); "
     "resolved: {oid: (kind, payload)} of arguments the owner already has; "
     "job: the job's config on a lease's first task; actor: the actor id or None; "
     "extra: actor-task details ('create', options, restarts) or per-call fields; "
     "shape: the task's resources (an actor call: its concurrency group or None); "
     "events: record the task's events (enable_task_events, pyray._private.task_events)")
_def(11, "TASK_REPLIES", "worker_id replies", "worker -> owner: results of finished tasks")
_def(12, "GET_OBJECT", "oid reply_to", "borrower -> owner: send me this object (OBJECT_VALUE)")
_def(13, "OBJECT_VALUE", "oid kind payload", "owner -> borrower: the value, where it is, or the error")
_def(14, "ADD_BORROWER", "oids borrower", "borrower -> owner: these refs are held here too")
_def(15, "REMOVE_BORROWER", "oids borrower", "borrower -> owner: no longer held here")
_def(16, "RELEASE_CONTAINED", "oids", "outer object's owner -> inner's owner: the outer objects are gone")
_def(17, "CANCEL_TASK", "task_id force recursive",
     "owner -> worker: interrupt this task (force: end the worker); recursive: cancel the "
     "tasks it submitted too")
_def(18, "LOG_LINES", "prefix is_err text", "worker -> driver: printed output")
_def(19, "WAKE", "", "to oneself: look at the send queues again")

# --------------------------------------------------------------------- raylet
_def(30, "REGISTER_WORKER", "version worker_id pid task_addr ctl_addr channel_path",
     "a started worker -> its raylet")
_def(31, "REQUEST_LEASE", "req_id owner shape job_id driver_addr key",
     "owner -> raylet: a worker for this resource shape (answered by LEASE_GRANTED, "
     "LEASE_SPILLBACK, LEASE_INFEASIBLE, LEASE_FAILED or LEASE_PG_REMOVED)")
_def(32, "LEASE_GRANTED", "req_id lease_id worker_id task_addr ctl_addr gpu_ids pid channel_path",
     "raylet -> owner")
_def(33, "RETURN_LEASE", "lease_id disconnect", "owner -> raylet; disconnect: the worker must not be reused")
_def(34, "CANCEL_LEASE_REQUEST", "req_id owner=None", "owner -> raylet")
_def(35, "WORKER_DIED", "lease_id worker_id reason kind=None",
     "raylet -> owner: the leased worker exited; kind: why, for the owner to decide on "
     "(None: it crashed; \"oom\": the memory monitor killed it, pyray.raylet.memory_monitor)")
_def(36, "LEASE_INFEASIBLE", "req_id message", "raylet -> owner: no node can ever run this shape (yet)")
_def(37, "WORKER_BLOCKED", "worker_id", "worker -> raylet: blocked in get(); its CPU is lent out")
_def(38, "WORKER_UNBLOCKED", "worker_id", "worker -> raylet")
_def(39, "KILL_WORKER", "worker_id", "GCS -> raylet")
_def(40, "RAYLET_INFO", "", "node info (store name, node id, resources)", request=True)
_def(41, "RECLAIM_LEASE", "lease_id", "raylet -> owner: give it back when idle")
_def(42, "DRIVER_EXIT", "job_id", "driver -> GCS and raylet; GCS -> raylets")
_def(43, "METRICS_REPORT", "records",
     "a worker or driver -> its raylet, one-way: user metrics (pyray.util.metrics) recorded "
     "since its last report, [(name, kind, description, tag_keys, boundaries, series)]; "
     "series: {tag values: counter delta | gauge value | (bucket counts, sum, count)}")
_def(44, "WATCH_DRIVER", "job_id pid",
     "driver -> its raylet: if this process dies without DRIVER_EXIT, end its job")

# ------------------------------------------------------------------------ GCS
_def(60, "REGISTER_NODE", "info", "raylet -> GCS", request=True)
_def(61, "NODE_RESOURCES", "node_id available total=None",
     "raylet -> GCS, one-way; total only when it changed")
_def(62, "GET_NODES", "", "the node table", request=True)
_def(63, "REGISTER_JOB", "info", "driver -> GCS: returns the job id", request=True)
_def(64, "KV_PUT", "key value overwrite=True", request=True)
_def(65, "KV_GET", "key", request=True)
_def(66, "KV_DEL", "key", request=True)
_def(67, "CLUSTER_RESOURCES", "available", "total or available resources", request=True)
_def(68, "UNREGISTER_NODE", "node_id", "raylet -> GCS when it stops")
_def(69, "KV_KEYS", "prefix", request=True)

# ------------------------------------------------------------- actors (GCS)
_def(70, "REGISTER_ACTOR", "spec", "spec dict -> {actor_id, existing, meta}", request=True)
_def(71, "GET_ACTOR_INFO", "actor_id subscriber", "one-way; answered by ACTOR_STATE")
_def(72, "ACTOR_STATE", "actor_id state address cause restarts",
     "GCS -> subscribers; address: (task_addr, ctl_addr, worker_id, pid, channel_path) "
     "while ALIVE, else None")
_def(73, "GET_NAMED_ACTOR", "name namespace", request=True)
_def(74, "LIST_NAMED_ACTORS", "all_namespaces namespace", request=True)
_def(75, "KILL_ACTOR", "actor_id no_restart", request=True)
_def(76, "ACTOR_EXITING", "actor_id", "the actor's worker -> GCS, one-way")
_def(77, "LIST_ACTORS", "", request=True)

# ------------------------------------- placement groups (docs/placement_groups.md)
_def(80, "PG_CREATE", "spec", "spec dict (pg_id, bundles, strategy, name, ...) -> True", request=True)
_def(81, "PG_REMOVE", "pg_id remover=None", "one-way")
_def(82, "PG_SUBSCRIBE", "pg_id subscriber", "one-way; answered by PG_STATE")
_def(83, "PG_STATE", "pg_id state message", "GCS -> subscribers")
_def(84, "PG_TABLE", "pg_id", "-> a row, or {hex: row} for pg_id None", request=True)
_def(85, "PG_GET_NAMED", "name namespace", "-> {pg_id, bundles} | None", request=True)
_def(86, "PG_OF_ACTOR", "actor_id", "-> (pg_id, bundle_index, capture) | None", request=True)
_def(87, "PG_RESERVE", "pg_id bundles commit",
     "GCS -> raylet: bundles [(index, bundle)] or None (all of the group's)", request=True)
_def(88, "PG_RETURN", "pg_id removed", "GCS -> raylet, one-way")
_def(89, "LEASE_PG_REMOVED", "req_id message", "raylet -> owner: the lease's group is gone")

# ---------------------------------------------------------------------- both
_def(90, "SHUTDOWN", "req_id=None reply_to=None", "answered when it carries a reply address")
_def(91, "PING", "", request=True)

# ---------------------------------------------------- several nodes (docs/cluster.md)
_def(100, "LEASE_SPILLBACK", "req_id raylet_addr node_id mode",
     "raylet -> owner: ask that raylet (raylet_addr None: ask your own raylet again)")
_def(101, "REQUEST_LEASE_SPILLED", "origin_node mode req_id owner shape job_id driver_addr key",
     "owner -> the raylet a request was spilled to")
_def(102, "LEASE_FAILED", "req_id message error=None",
     "raylet -> owner: the request can never be granted; error: an error payload "
     "(pyray._private.errors) to fail its tasks with, e.g. a RuntimeEnvSetupError")
_def(103, "CLUSTER_VIEW", "nodes", "GCS -> raylets: [node info, ...]")
_def(104, "NODE_DEAD", "node_id", "GCS -> raylets, drivers; raylet -> its workers")
_def(105, "PULL_OBJECT", "oid source", "client -> its node's object manager", request=True)
_def(106, "FETCH_CHUNKS", "oid first count reply_to chunk_bytes", "object manager -> the source's")
_def(107, "OBJECT_CHUNK", "oid index size metadata error", "source -> puller, the chunk as a frame")
_def(108, "FREE_OBJECTS", "node_id oids", "owner -> object manager (forwarded to node_id's)")
_def(109, "OBJECT_MANAGER_STATS", "", "transfer counters of one object manager", request=True)
_def(110, "OBJECT_COPY", "oid node_id", "puller -> owner: a copy now lives on node_id")
_def(111, "OWNER_DIED", "owner", "raylet -> the other raylets: a worker died; its leases go")

# ------------------------------------------------- GCS restart (docs/cluster.md)
_def(130, "NODE_HEARTBEAT", "node_id", "raylet -> GCS: answered with the GCS's incarnation", request=True)

# ----------------------------------------------- generators (docs/architecture.md)
_def(140, "GENERATOR_ITEMS", "task_id worker first items",
     "worker -> owner, on the task's reply path: items first, first+1, ... of a "
     "generator task as they are yielded; items: [(kind, payload)] as in replies; "
     "worker: the producer's inbox (for GENERATOR_ACK)")
_def(141, "GENERATOR_ACK", "task_id consumed",
     "owner -> the producing worker: this many items were consumed "
     "(_generator_backpressure_num_objects)")

# ------------------------------------------- task events and state (docs/state.md)
_def(150, "TASK_EVENTS", "source events count dropped",
     "any process -> GCS, one-way, about once a second: task state transitions "
     "(pyray._private.task_events); source: (node_id, worker_id, pid, job_id); events: "
     "the pickled list of `count` event tuples (the GCS unpickles them only when asked); "
     "dropped: events this process dropped since the last batch (its buffer was full)")
_def(151, "GET_TASK_EVENTS", "job_id limit=None exclude_driver=False where=None",
     "-> {tasks: [record], dropped: n, matched: n}: the GCS's task records (job_id None: all "
     "jobs; limit: only the first `limit` of those that match, `matched` counting them all; "
     "exclude_driver: without the drivers' records; where: [(column, '='|'!=', value)] "
     "filters applied in the GCS, on the columns of pyray.gcs.task_events.WHERE)",
     request=True)
_def(152, "LIST_WORKERS", "", "raylet -> [worker row] of its worker pool", request=True)
_def(153, "LIST_JOBS", "", "GCS -> [job row] (the job table)", request=True)
_def(154, "LIST_OWNED_OBJECTS", "",
     "a core worker -> [object row]: the objects it owns and the refs it holds", request=True)
_def(155, "TASK_COUNTS", "",
     "-> {(state, name, type): number of task records} in the GCS (the ray_tasks metric, "
     "summarize_tasks)",
     request=True)
_def(156, "TASK_SPANS", "limit=None",
     "-> {'spans': [(task_id, name, type, state, node_id, worker_id, pid, job_id, actor_id, "
     "attempt, error_type, start_s, end_s)] of the first `limit` records that ran, 'total': "
     "records}: the timeline's columns only", request=True)

# ------------------------------------------------ the client server (docs/client.md)
# A client outside the cluster (`pyray.init("pyray://host:port")`) talks to
# the client server on the head over one zmq DEALER -> ROUTER tcp connection,
# every message signed with the cluster token.  Requests carry a request id
# (no reply address: the connection is the address) and are answered with
# CLIENT_REPLY; the others are one-way and keep their order on the connection.
# A ref travels as (oid, owner, parent), parent the same for the ref it was
# read out of (or None).
_def(200, "CLIENT_HELLO", "req_id version namespace options",
     "client -> client server: opens a session (options: {\"log_to_driver\": bool}); "
     "answered with the server's driver address, job, node and config values")
_def(201, "CLIENT_SUBMIT", "task fn",
     "client -> server: a task to submit (task: the spec's fields, its argument buffers "
     "as frames); fn: (fn_id, name, module, pickled function or None once sent)")
_def(202, "CLIENT_GET", "req_id refs timeout",
     "client -> server: the values of refs, answered with [(kind, nframes)] and the "
     "values' pickles and buffers as frames")
_def(203, "CLIENT_PUT", "req_id oid contained nbuffers",
     "client -> server: a value to own (frames: its pickle then its buffers); "
     "contained: the refs nested in it")
_def(204, "CLIENT_WAIT", "req_id refs num_returns timeout fetch_local",
     "client -> server: wait(); answered with the indices of the ready refs")
_def(205, "CLIENT_REFS", "pins releases handles escaped gens_dropped",
     "client -> server: refs the client now holds [(oid, owner, parent)], oids it let go, "
     "actor handle count changes [(actor_id, delta)], actor ids whose handles were pickled, "
     "task ids of generator tasks whose ObjectRefGenerator the client let go")
_def(206, "CLIENT_GCS", "req_id gcs_op args",
     "client -> server: a request to the GCS, made by the server's driver")
_def(207, "CLIENT_ACTOR_KILLED", "actor_id",
     "client -> server: pyray.kill(no_restart=True) was accepted for this actor")
_def(208, "CLIENT_CANCEL", "ref force recursive", "client -> server: pyray.cancel()")
_def(209, "CLIENT_BYE", "", "client -> server: the session ends; all it held is released")
_def(210, "CLIENT_REPLY", "req_id ok payload",
     "server -> client: the answer to a request (ok False: payload is an error payload)")
_def(211, "CLIENT_PING", "",
     "client -> server, every second: the client is alive (a session silent for "
     "PYRAY_CLIENT_TIMEOUT_S ends and releases all it held)")
_def(212, "CLIENT_GEN", "req_id task_id what timeout",
     "client -> server: an ObjectRefGenerator of a generator task the client submitted; "
     "what \"next\": answered with (oids, ended): the next item's oid and those of the items "
     "that came after it, pinned for the client, ended True when no item follows "
     "(GetTimeoutError after timeout); \"finished\": answered with is_finished()")
_def(213, "CLIENT_LOG", "prefix is_err text",
     "server -> client: lines workers of the job printed (LOG_LINES), for a client that "
     "connected with log_to_driver=True")
