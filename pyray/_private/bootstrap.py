"""Finding a running cluster: init(address="auto" | "host:port")."""
from __future__ import annotations

import os
import shutil
import tempfile

import zmq

from pyray._private import node as node_mod
from pyray._private.protocol import Op
from pyray._private.transport import bind_inbox, dumps, loads


def gcs_address_of(address: str) -> str:
    if address == "auto":
        try:
            with open(node_mod.CURRENT_CLUSTER_FILE) as f:
                return f.read().strip()
        except OSError:
            raise ConnectionError("Could not find a running pyray cluster on this machine "
                                  "(address='auto'). Start one with `pyray start --head`, or "
                                  "call pyray.init() without an address to start a local "
                                  "cluster.") from None
    if address.startswith(("tcp://", "ipc://")):
        return address
    if ":" in address:
        host, port = address.rsplit(":", 1)
        if port.isdigit():
            return f"tcp://{host}:{port}"
    raise ValueError(f"Invalid cluster address {address!r}: expected 'auto' or 'host:port'.")


def request(gcs_addr, op, *args, timeout=5.0):
    """One request/response with the GCS without a core worker."""
    tmp = tempfile.mkdtemp(prefix="pyray-boot-")
    ctx = zmq.Context()
    try:
        inbox = bind_inbox(ctx, f"ipc://{tmp}/inbox")
        out = ctx.socket(zmq.PUSH)
        out.setsockopt(zmq.LINGER, 0)
        out.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))   # no peer: no blocking forever
        out.connect(gcs_addr)
        try:
            out.send(dumps((op, 1, f"ipc://{tmp}/inbox") + args))
        except zmq.Again:
            pass                        # reported below, as no answer
        if not inbox.poll(int(timeout * 1000)):
            raise ConnectionError(f"No pyray cluster answered at {gcs_addr} within {timeout}s. "
                                  "Is it running (`pyray status`)?")
        msg = loads(inbox.recv())
        _, _, ok, payload = msg
        if not ok:
            raise ConnectionError(f"the cluster at {gcs_addr} refused the request: {payload}")
        return payload
    finally:
        ctx.destroy(linger=0)           # closes the sockets, even after an error
        shutil.rmtree(tmp, ignore_errors=True)


def find_local_node(address, config):
    gcs_addr = gcs_address_of(address)
    nodes = request(gcs_addr, Op.GET_NODES)
    alive = [n for n in nodes if n.get("alive")]
    if not alive:
        raise ConnectionError(f"The cluster at {gcs_addr} has no live node.")
    mine = [n for n in alive if os.path.isdir(n.get("session_dir", ""))]
    # on a machine running several nodes (cluster_utils), the driver joins the head
    n = sorted(mine or alive, key=lambda n: not n.get("head"))[0]
    return {"node_id": n["node_id"], "raylet_addr": n["raylet_addr"], "gcs_addr": gcs_addr,
            "store_name": n["store_name"], "session_dir": n["session_dir"],
            "om_addr": n.get("om_addr")}
