"""Wire protocol of the control plane.

Every process has one inbox (a zmq PULL socket); a message is one pickled
tuple ``(op, *fields)`` (pickle protocol 5), optionally followed by raw frames
for out-of-band buffers.  Requests that expect an answer carry the sender's
inbox address and a request id; the answer is ``(Op.RESPONSE, req_id, ok,
payload)``.  PROTOCOL_VERSION is checked when a process registers.
"""
from __future__ import annotations

PROTOCOL_VERSION = 1


class Op:
    RESPONSE = 0
    # core worker <-> core worker
    PUSH_TASK = 10          # (op, spec)                           owner -> worker task inbox
    TASK_REPLIES = 11       # (op, worker_id, [reply, ...])        worker -> owner
    GET_OBJECT = 12         # (op, oid, reply_to)                  borrower -> owner
    OBJECT_VALUE = 13       # (op, oid, kind, payload)             owner -> borrower
    ADD_BORROWER = 14       # (op, [oid...], borrower_addr)
    REMOVE_BORROWER = 15    # (op, [oid...], borrower_addr)
    RELEASE_CONTAINED = 16  # (op, [outer_oid...])                 outer's owner -> inner's owner
    CANCEL_TASK = 17        # (op, task_id, force)                 owner -> worker
    LOG_LINES = 18          # (op, prefix, is_err, text)           worker -> driver
    WAKE = 19               # internal
    # raylet
    REGISTER_WORKER = 30    # (op, version, worker_id, pid, task_addr, ctl_addr, channel_path)
    REQUEST_LEASE = 31      # (op, req_id, owner_addr, shape, job_id, driver_addr, info)
    LEASE_GRANTED = 32      # (op, req_id, lease_id, worker_id, task_addr, ctl_addr, gpu_ids, pid, channel_path)
    RETURN_LEASE = 33       # (op, lease_id, disconnect)
    CANCEL_LEASE_REQUEST = 34  # (op, req_id[, owner_addr])
    WORKER_DIED = 35        # (op, lease_id, worker_id, reason)   raylet -> owner
    LEASE_INFEASIBLE = 36   # (op, req_id, message)                 raylet -> owner
    WORKER_BLOCKED = 37     # (op, worker_id)
    WORKER_UNBLOCKED = 38   # (op, worker_id)
    KILL_WORKER = 39        # (op, worker_id)
    RAYLET_INFO = 40        # request: node info (store name, node id, resources)
    RECLAIM_LEASE = 41      # (op, lease_id)                       raylet -> owner: give it back when idle
    DRIVER_EXIT = 42        # (op, job_id)
    # gcs
    REGISTER_NODE = 60
    NODE_RESOURCES = 61     # (op, node_id, available[, total when it changed])  one-way
    GET_NODES = 62
    REGISTER_JOB = 63
    KV_PUT = 64
    KV_GET = 65
    KV_DEL = 66
    CLUSTER_RESOURCES = 67
    UNREGISTER_NODE = 68
    KV_KEYS = 69
    # actors (gcs)
    REGISTER_ACTOR = 70     # request: spec dict -> {"actor_id", "existing", "meta"}
    GET_ACTOR_INFO = 71     # (op, actor_id, subscriber_addr) one-way; answered by ACTOR_STATE
    ACTOR_STATE = 72        # (op, actor_id, state, (task_addr, ctl_addr, worker_id, pid, channel_path)|None, cause, restarts)
    GET_NAMED_ACTOR = 73    # request: (name, namespace)
    LIST_NAMED_ACTORS = 74  # request: (all_namespaces, namespace)
    KILL_ACTOR = 75         # request: (actor_id, no_restart)
    ACTOR_EXITING = 76      # (op, actor_id) one-way, from the actor's worker
    LIST_ACTORS = 77        # request
    # placement groups (docs/placement_groups.md)
    PG_CREATE = 80          # request: spec dict (pg_id, bundles, strategy, name, ...) -> True
    PG_REMOVE = 81          # (op, pg_id, remover_addr) one-way
    PG_SUBSCRIBE = 82       # (op, pg_id, subscriber_addr) one-way; answered by PG_STATE
    PG_STATE = 83           # (op, pg_id, state, message|None)    gcs -> subscribers
    PG_TABLE = 84           # request: (pg_id|None) -> row | {hex: row}
    PG_GET_NAMED = 85       # request: (name, namespace) -> {"pg_id", "bundles"} | None
    PG_OF_ACTOR = 86        # request: (actor_id) -> (pg_id, bundle_index, capture) | None
    PG_RESERVE = 87         # request gcs -> raylet: (pg_id, [(index, bundle)]|None, commit)
    PG_RETURN = 88          # (op, pg_id, removed) one-way gcs -> raylet
    LEASE_PG_REMOVED = 89   # (op, req_id, message)   raylet -> owner: the lease's group is gone
    # both
    SHUTDOWN = 90
    PING = 91
    # several nodes (docs/cluster.md)
    LEASE_SPILLBACK = 100   # (op, req_id, raylet_addr|None, node_id|None, mode)  raylet -> owner: ask there (None: ask your own raylet again)
    REQUEST_LEASE_SPILLED = 101  # (op, origin_node, mode, req_id, owner_addr, shape, job_id, driver_addr, key)  owner -> the raylet it was sent to
    LEASE_FAILED = 102      # (op, req_id, message)                 raylet -> owner: the request can never be granted
    CLUSTER_VIEW = 103      # (op, [node info...])                  gcs -> raylets
    NODE_DEAD = 104         # (op, node_id)                         gcs -> raylets, drivers; raylet -> its workers
    PULL_OBJECT = 105       # request: (oid, source node_id)        client -> its node's object manager
    FETCH_CHUNKS = 106      # (op, oid, first, count, reply_to, chunk_bytes)  object manager -> the source's
    OBJECT_CHUNK = 107      # (op, oid, index, size, metadata, error) + [data]   source -> puller
    FREE_OBJECTS = 108      # (op, node_id, [oid...])               owner -> object manager (forwarded to node_id's)
    OBJECT_MANAGER_STATS = 109  # request: transfer counters of one object manager
    OWNER_DIED = 111        # (op, owner_addr)                      raylet -> the other raylets: a worker died; its leases go
    OBJECT_COPY = 110       # (op, oid, node_id)                    puller -> owner: a copy now lives on node_id
    # GCS restart (docs/cluster.md)
    NODE_HEARTBEAT = 130    # request raylet -> gcs: (node_id) -> the GCS's incarnation (register again when it changes)


# kinds of a stored value
VALUE = 0       # payload: (pickled bytes, [buffers])
IN_STORE = 1    # payload: node id holding it in its shared-memory store
ERROR = 2       # payload: (pickled bytes, [buffers]) of an exception to raise
