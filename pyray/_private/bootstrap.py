"""Finding a running cluster: init(address="auto" | "host:port")."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile

import zmq

from pyray._private import errors
from pyray._private import node as node_mod
from pyray._private import transport
from pyray._private.protocol import RESPONSE, Op, definition
from pyray._private.transport import bind_inbox, dumps, loads

_NEEDS_TOKEN = ("pass the token `pyray start --head` printed: `--token`, "
                "pyray.init(_token=...) or the environment variable PYRAY_TOKEN")


def current_cluster():
    """(GCS address, token) of the cluster `pyray start --head` started on
    this machine, or None."""
    try:
        with open(node_mod.CURRENT_CLUSTER_FILE) as f:
            lines = f.read().split("\n")
    except OSError:
        return None
    return lines[0].strip(), (lines[1].strip() if len(lines) > 1 else "")


def record_current_cluster(gcs_addr, token):
    node_mod.write_private(node_mod.CURRENT_CLUSTER_FILE, f"{gcs_addr}\n{token}\n")


def same_gcs(a, b):
    """Whether two addresses name the same GCS: equal, or the same port on
    addresses of this machine (127.0.0.1 and the machine's own address both
    reach a head started here: it listens on every interface)."""
    if a == b:
        return True
    if not (a.startswith("tcp://") and b.startswith("tcp://")):
        return False
    (h1, p1), (h2, p2) = transport.host_port(a), transport.host_port(b)
    return p1 == p2 and node_mod.is_local_ip(h1) and node_mod.is_local_ip(h2)


def use_token(gcs_addr, token=None):
    """Decides the token for talking to `gcs_addr`: the one given, else the
    one `pyray start --head` recorded for that address on this machine, else
    $PYRAY_TOKEN (transport's default)."""
    if not token:
        rec = current_cluster()
        if rec and same_gcs(rec[0], gcs_addr):
            token = rec[1]
    if token:
        transport.set_token(gcs_addr, token)


def gcs_address_of(address: str) -> str:
    if address == "auto":
        rec = current_cluster()
        if rec is None:
            raise ConnectionError("Could not find a running pyray cluster on this machine "
                                  "(address='auto'). Start one with `pyray start --head`, or "
                                  "call pyray.init() without an address to start a local "
                                  "cluster.")
        return rec[0]
    if address.startswith(("tcp://", "ipc://")):
        return address
    if ":" in address:
        host, port = address.rsplit(":", 1)
        if port.isdigit():
            return f"tcp://{host}:{port}"
    raise ValueError(f"Invalid cluster address {address!r}: expected 'auto' or 'host:port'.")


def _listening(tcp_addr, timeout):
    """Whether something accepts connections at a tcp:// address."""
    host, port = transport.host_port(tcp_addr)
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout, 2.0)).close()
        return True
    except (OSError, ValueError):
        return False


def request(gcs_addr, op, *args, timeout=5.0):
    """One request/response with the GCS without a core worker."""
    tmp = tempfile.mkdtemp(prefix="pyray-boot-")
    ctx = zmq.Context()
    inbox = None
    try:
        tcp = gcs_addr.startswith("tcp://")
        key = transport.key_for(gcs_addr)
        if tcp and key is None:
            if not _listening(gcs_addr, timeout):
                raise ConnectionError(f"No pyray cluster answered at {gcs_addr}. Is it running "
                                      "(`pyray status`)?")
            raise ConnectionError(f"The pyray cluster at {gcs_addr} only accepts peers that "
                                  f"hold its token: {_NEEDS_TOKEN}.")
        if tcp:
            # the answer may come from another machine: listen where it can reach
            host = transport.host_port(gcs_addr)[0]
            inbox, reply_to = transport.bind_node_inbox(
                ctx, {"tcp": True, "node_ip": node_mod.local_ip_for(host)}, "")
        else:
            reply_to = f"ipc://{tmp}/inbox"
            inbox = bind_inbox(ctx, reply_to)
        out = ctx.socket(zmq.PUSH)
        out.setsockopt(zmq.LINGER, 0)
        out.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))   # no peer: no blocking forever
        # tells apart a cluster that drops our messages (a wrong token) from none
        monitor = out.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED) if tcp else None
        out.connect(transport.endpoint(gcs_addr))
        data = dumps(definition(op).make(1, reply_to, *args))
        try:
            out.send_multipart([transport.mac(key, [data]), data] if key else [data])
        except zmq.Again:
            pass                        # reported below, as no answer
        if not inbox.poll(int(timeout * 1000)):
            if monitor is not None and monitor.poll(0):
                raise ConnectionError(f"The pyray cluster at {gcs_addr} accepted the connection "
                                      f"but did not answer within {timeout}s: it drops messages "
                                      f"not signed with its token, so the token used is "
                                      f"probably wrong; {_NEEDS_TOKEN}.")
            raise ConnectionError(f"No pyray cluster answered at {gcs_addr} within {timeout}s. "
                                  "Is it running (`pyray status`)?")
        frames = inbox.recv_multipart(copy=False)
        if tcp:
            frames = transport.unsign(key, frames)
            if frames is None:
                raise ConnectionError(f"the answer from {gcs_addr} was not signed with the "
                                      f"cluster token")
        msg = loads(frames[0].buffer)
        _, _, ok, payload = RESPONSE.parse(msg)
        if not ok:
            raise ConnectionError(f"the cluster at {gcs_addr} refused the request: "
                                  f"{errors.decode(payload)}")
        return payload
    finally:
        transport.forget_inbox(inbox)
        ctx.destroy(linger=0)           # closes the sockets, even after an error
        shutil.rmtree(tmp, ignore_errors=True)


def find_local_node(address, config, token=None):
    gcs_addr = gcs_address_of(address)
    use_token(gcs_addr, token)
    nodes = request(gcs_addr, Op.GET_NODES)
    alive = [n for n in nodes if n.get("alive")]
    if not alive:
        raise ConnectionError(f"The cluster at {gcs_addr} has no live node.")
    mine = [n for n in alive if node_mod.is_local_ip(n.get("node_ip") or "127.0.0.1")
            and os.path.isdir(n.get("session_dir", ""))]
    if not mine:
        raise ConnectionError(
            f"The cluster at {gcs_addr} has no node on this machine: a driver runs on a node. "
            f"Add one here with `pyray start --address {gcs_addr[len('tcp://'):]}`, then "
            f"connect with pyray.init(address='auto').")
    # on a machine running several nodes (cluster_utils), the driver joins the head
    n = sorted(mine, key=lambda n: not n.get("head"))[0]
    return {"node_id": n["node_id"], "raylet_addr": n["raylet_addr"], "gcs_addr": gcs_addr,
            "store_name": n["store_name"], "session_dir": n["session_dir"],
            "om_addr": n.get("om_addr"), "node_ip": n.get("node_ip"), "tcp": n.get("tcp", False)}
