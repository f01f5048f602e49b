"""Where the state API's data comes from (pyray.util.state and its HTTP
routes read it through pyray.util.state.data) (docs/state.md): the GCS (actors,
tasks, nodes, jobs, placement groups), the raylets (workers, log files) and
the owners of objects (drivers and workers).  Rows are plain dicts with
Ray's field names; ``query`` filters and truncates them the way Ray's state
API does and returns Ray's list-response shape, so that an HTTP route
(GET /api/v0/<resource>) can return it as is.

A process connected with pyray.init() asks through its core worker; any
other process finds the cluster like `pyray status` does (``address``:
"auto" by default, or the GCS's host:port).
"""
from __future__ import annotations

import os
import socket
import time

from pyray._private.protocol import Op
from pyray._private.state_schema import (DEFAULT_LIMIT, DEFAULT_RPC_TIMEOUT, ID_COLUMNS,
                                         PREDICATES, SCHEMAS, RayStateApiException,
                                         resource_name)


class Source:
    """Requests to the cluster's processes, through this process's core
    worker when it has one, else one socket per request (bootstrap)."""

    def __init__(self, address=None, timeout=DEFAULT_RPC_TIMEOUT):
        from pyray._private.context import ctx
        self.timeout = float(timeout if timeout is not None else DEFAULT_RPC_TIMEOUT)
        if self.timeout <= 0:
            raise RayStateApiException(f"timeout must be positive, got {timeout!r}")
        cw = ctx.core_worker
        self.cw = None
        if cw is not None and not getattr(cw, "closing", False) and hasattr(cw, "rpc") and \
                (address is None or address == "auto"):
            self.cw = cw
            self.gcs_addr = cw.gcs_addr
            return
        from pyray._private import bootstrap
        if address is None:
            address = os.environ.get("PYRAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or "auto"
        if isinstance(address, str) and address.startswith(("http://", "https://")):
            raise RayStateApiException(
                f"address {address!r} is an HTTP address; the state API takes the cluster's "
                f"address (host:port of its head, or 'auto' for the cluster started on this "
                f"machine)")
        try:
            self.gcs_addr = bootstrap.gcs_address_of(address)
        except ValueError as err:
            raise RayStateApiException(str(err)) from None
        bootstrap.use_token(self.gcs_addr)

    def call(self, addr, op, *args, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        if self.cw is not None and addr != self.gcs_addr and not hasattr(self.cw, "out"):
            raise RayStateApiException(
                "a Ray Client reaches the GCS only: pass address= (the head's host:port) to "
                "list workers, objects or logs")
        if self.cw is not None:
            return self.cw.rpc(addr, op, *args, timeout=timeout)
        from pyray._private import bootstrap
        return bootstrap.request(addr, op, *args, timeout=timeout)

    def gcs(self, op, *args):
        return self.call(self.gcs_addr, op, *args)


def _hex(b):
    return b.hex() if isinstance(b, (bytes, bytearray)) else b


def _ms(t):
    return int(t * 1000) if isinstance(t, (int, float)) else None


# ------------------------------------------------------------------ rows
def actor_rows(src, warnings):
    rows = []
    for a in src.gcs(Op.LIST_ACTORS):
        rows.append(dict(a, repr_name="", num_restarts_due_to_lineage_reconstruction=0,
                         serialized_runtime_env="{}", call_site=None, labels={}))
    return rows


def task_rows(src, warnings, job_id=None, limit=None, exclude_driver=False, where=None):
    from pyray._private import task_events
    task_events.flush()         # this process's own events first
    reply = src.gcs(Op.GET_TASK_EVENTS, job_id, limit, exclude_driver, where)
    dropped = reply.get("num_status_task_events_dropped", 0) + reply.get("num_tasks_dropped_gcs", 0)
    if dropped:
        warnings.append(
            f"{dropped} task records were dropped (num_status_task_events_dropped="
            f"{reply.get('num_status_task_events_dropped', 0)}, dropped by the GCS's bound "
            f"task_events_max_num_task_in_gcs: {reply.get('num_tasks_dropped_gcs', 0)}): the "
            f"result is partial.")
    return reply["tasks"], reply


def node_rows(src, warnings):
    rows = []
    for n in src.gcs(Op.GET_NODES):
        rows.append({
            "node_id": _hex(n["node_id"]), "node_ip": n.get("node_ip") or "127.0.0.1",
            "is_head_node": bool(n.get("head")), "state": "ALIVE" if n.get("alive") else "DEAD",
            "state_message": None if n.get("alive") else "the node is dead",
            "node_name": n.get("node_ip") or socket.gethostname(),
            "resources_total": dict(n.get("resources", {})),
            "labels": dict(n.get("labels") or {}),
            "start_time_ms": _ms(n.get("start_time")), "end_time_ms": None,
            # not Ray columns: what the other resources need
            "_raylet_addr": n.get("raylet_addr"), "_session_dir": n.get("session_dir"),
            "_alive": bool(n.get("alive")),
        })
    return rows


def job_rows(src, warnings):
    rows = []
    for j in src.gcs(Op.LIST_JOBS):
        done = bool(j.get("end_time"))
        jid = _hex(j.get("job_id"))
        rows.append({
            "type": "DRIVER", "job_id": jid, "submission_id": j.get("submission_id"),
            "driver_info": {"id": jid, "node_ip_address": j.get("node_ip"),
                            "pid": str(j.get("pid"))},
            "status": "SUCCEEDED" if done else "RUNNING",
            "entrypoint": j.get("entrypoint", ""), "message": None, "error_type": None,
            "start_time": _ms(j.get("start_time")), "end_time": _ms(j.get("end_time")),
            "metadata": dict(j.get("metadata") or {}), "runtime_env": j.get("runtime_env"),
            "driver_agent_http_address": None, "driver_node_id": _hex(j.get("node_id")),
            "driver_exit_code": None, "_driver_addr": j.get("driver_addr"),
        })
    return rows


def placement_group_rows(src, warnings):
    rows = []
    for pg in src.gcs(Op.PG_TABLE, None).values():
        bundles = [{"bundle_id": {"placement_group_id": pg["placement_group_id"],
                                  "bundle_index": int(i)},
                    "node_id": pg.get("bundles_to_node_id", {}).get(i) or None,
                    "unit_resources": dict(b)}
                   for i, b in pg.get("bundles", {}).items()]
        rows.append({"placement_group_id": pg["placement_group_id"], "name": pg.get("name") or "",
                     "creator_job_id": pg.get("creator_job_id"), "state": pg.get("state"),
                     "bundles": bundles, "is_detached": pg.get("is_detached"),
                     "stats": pg.get("stats")})
    return rows


def _raylet_calls(src, nodes, op, warnings):
    """Asks each live node's raylet; a silent one is a warning."""
    out = []
    for n in nodes:
        if not n["_alive"]:
            continue
        try:
            out.append((n, src.call(n["_raylet_addr"], op, timeout=min(src.timeout, 10.0))))
        except Exception as err:  # noqa: BLE001 - reported as a partial result
            warnings.append(f"node {n['node_id']} did not answer ({type(err).__name__}: {err})")
    return out


def worker_rows(src, warnings):
    nodes = node_rows(src, warnings)
    rows = []
    for n, reply in _raylet_calls(src, nodes, Op.LIST_WORKERS, warnings):
        for w in reply["workers"]:
            rows.append({"worker_id": _hex(w["worker_id"]), "is_alive": True,
                         "worker_type": "WORKER", "exit_type": None, "node_id": n["node_id"],
                         "ip": n["node_ip"], "pid": w.get("pid"), "exit_detail": None,
                         "worker_launch_time_ms": None, "worker_launched_time_ms": None,
                         "start_time_ms": None, "end_time_ms": None, "debugger_port": None,
                         "num_paused_threads": 0,
                         "_state": w.get("state"), "_job_id": _hex(w.get("job_id")),
                         "_ctl_addr": w.get("ctl_addr")})
    for j in job_rows(src, warnings):
        if j["status"] != "RUNNING":
            continue
        rows.append({"worker_id": j["job_id"] and ("driver-" + j["job_id"]), "is_alive": True,
                     "worker_type": "DRIVER", "exit_type": None,
                     "node_id": j["driver_node_id"], "ip": j["driver_info"]["node_ip_address"],
                     "pid": int(j["driver_info"]["pid"]) if j["driver_info"]["pid"].isdigit()
                     else None, "exit_detail": None, "start_time_ms": j["start_time"],
                     "_ctl_addr": j["_driver_addr"], "_job_id": j["job_id"]})
    return rows


def object_rows(src, warnings):
    """Each owner's objects: drivers and the workers of every node."""
    nodes = {n["node_id"]: n for n in node_rows(src, warnings)}
    rows = []
    for w in worker_rows(src, warnings):
        addr = w.get("_ctl_addr")
        if not addr or w.get("_state") in ("starting", "stopping"):
            continue
        try:
            reply = src.call(addr, Op.LIST_OWNED_OBJECTS, timeout=min(src.timeout, 5.0))
        except Exception as err:  # noqa: BLE001 - an owner that exited meanwhile
            if w["worker_type"] == "DRIVER":
                warnings.append(f"driver pid {w['pid']} did not answer ({err})")
            continue
        node = nodes.get(w["node_id"]) or {}
        for o in reply:
            rows.append(dict(o, object_id=_hex(o["object_id"]), pid=w["pid"],
                             ip=node.get("node_ip"), node_id=w["node_id"], call_site="disabled",
                             type="WORKER" if w["worker_type"] == "WORKER" else "DRIVER"))
    return rows


_ROWS = {"actors": actor_rows, "nodes": node_rows, "jobs": job_rows, "workers": worker_rows,
         "placement_groups": placement_group_rows, "objects": object_rows}


# ------------------------------------------------------------- querying
def check_filters(resource, filters):
    """Ray's filter tuples (key, "=" | "!=", value); a bad one is an error
    naming what is allowed."""
    schema = SCHEMAS[resource]
    columns = schema.columns()
    out = []
    for f in filters or ():
        if not isinstance(f, (tuple, list)) or len(f) != 3:
            raise RayStateApiException(
                f"A filter is a tuple (key, predicate, value), e.g. ('state', '=', 'ALIVE'); "
                f"got {f!r}.")
        key, pred, value = f
        if key not in columns:
            raise RayStateApiException(
                f"The given filter column {key!r} is not supported for {resource}. "
                f"Supported filter columns: {', '.join(columns)}")
        if pred not in PREDICATES:
            raise RayStateApiException(
                f"Unsupported filter predicate {pred!r}: use one of {', '.join(PREDICATES)}.")
        out.append((key, pred, value))
    return out


def _norm(v):
    if isinstance(v, bool):
        return str(v).lower()
    return "" if v is None else str(v).lower()


def _matches(row, filters):
    for key, pred, value in filters:
        eq = _norm(row.get(key)) == _norm(value)
        if eq != (pred == "="):
            return False
    return True


def query(resource, filters=None, limit=DEFAULT_LIMIT, detail=False, timeout=DEFAULT_RPC_TIMEOUT,
          address=None, source=None, exclude_driver=True):
    """One list request: {"result": [row], "total", "num_after_truncation",
    "num_filtered", "partial_failure_warning", "warnings"} (Ray's
    ListApiResponse), rows as dicts of the resource's columns.  Tasks leave
    out the drivers' DRIVER_TASK records unless `exclude_driver` is False or
    a filter asks for that type (as Ray's ListApiOptions.exclude_driver)."""
    resource = resource_name(resource)
    filters = check_filters(resource, filters)
    if limit is None:
        limit = DEFAULT_LIMIT
    if not isinstance(limit, int) or limit < 0:
        raise RayStateApiException(f"limit must be a non-negative int, got {limit!r}")
    src = source or Source(address, timeout)
    warnings = []
    extra = {}
    pushed = False
    if resource == "tasks":
        job = next((v for k, p, v in filters if k == "job_id" and p == "="), None)
        job = bytes.fromhex(job) if _is_hex(job) else None
        no_driver = exclude_driver and not any(
            k == "type" and p == "=" and _norm(v) == "driver_task" for k, p, v in filters)
        # filters on the record's own columns: the GCS applies them and the
        # limit (it builds only the rows returned) and counts the rest
        from pyray.gcs.task_events import WHERE
        pushed = all(k in WHERE for k, p, v in filters)
        where = [(k, p, v) for k, p, v in filters if not (job is not None and k == "job_id"
                                                         and p == "=")] if pushed else None
        rows, extra = task_rows(src, warnings, job, limit if pushed else None, no_driver,
                                where or None)
        if no_driver and not pushed:
            rows = [r for r in rows if r["type"] != "DRIVER_TASK"]
    else:
        rows = _ROWS[resource](src, warnings)
    if pushed:
        num_filtered = extra.get("matched", len(rows))
        total = num_filtered + extra.get("num_tasks_dropped_gcs", 0)
    else:
        total = len(rows) + extra.get("num_tasks_dropped_gcs", 0)
        rows = [r for r in rows if _matches(r, filters)]
        num_filtered = len(rows)
    schema = SCHEMAS[resource]
    keep = schema.columns() if detail else schema.base_columns()
    result = [{k: r.get(k) for k in keep} for r in rows[:limit]]
    partial = None
    if warnings and resource != "tasks":
        partial = "; ".join(warnings)
    return {"result": result, "total": total, "num_after_truncation": len(result),
            "num_filtered": num_filtered, "partial_failure_warning": partial,
            "warnings": warnings or None,
            "num_status_task_events_dropped": extra.get("num_status_task_events_dropped", 0)}


def _is_hex(v):
    try:
        bytes.fromhex(v)
        return True
    except (TypeError, ValueError):
        return False


def get_row(resource, id, detail=True, timeout=DEFAULT_RPC_TIMEOUT, address=None, source=None):
    """The rows whose id column is `id` (several only for objects)."""
    resource = resource_name(resource)
    if not isinstance(id, str):
        id = _hex(id) if isinstance(id, (bytes, bytearray)) else getattr(id, "hex", lambda: id)()
    reply = query(resource, [(ID_COLUMNS[resource], "=", id)], limit=10_000, detail=detail,
                  timeout=timeout, address=address, source=source)
    return reply["result"]


# ------------------------------------------------------------- summaries
def summarize(resource, timeout=DEFAULT_RPC_TIMEOUT, address=None, source=None):
    resource = resource_name(resource)
    if resource == "tasks":
        # counted in the GCS: a few tuples cross, not a row per record
        from pyray._private import task_events
        task_events.flush()
        src = source or Source(address, timeout)
        summary, total, by_type = {}, 0, {}
        for (state, name, typ), n in src.gcs(Op.TASK_COUNTS).items():
            if typ == "DRIVER_TASK":
                continue
            key = name or "?"
            s = summary.setdefault(key, {"func_or_class_name": key, "type": typ,
                                         "state_counts": {}})
            s["state_counts"][state] = s["state_counts"].get(state, 0) + n
            total += n
            by_type[typ] = by_type.get(typ, 0) + n
        return {"cluster": {"summary": summary, "total_tasks": total,
                            "total_actor_tasks": by_type.get("ACTOR_TASK", 0),
                            "total_actor_scheduled": by_type.get("ACTOR_CREATION_TASK", 0),
                            "summary_by": "func_name"}}
    rows = query(resource, limit=10 ** 9, detail=True, timeout=timeout, address=address,
                 source=source)["result"]
    if resource == "actors":
        summary = {}
        for a in rows:
            s = summary.setdefault(a["class_name"], {"class_name": a["class_name"],
                                                     "state_counts": {}})
            s["state_counts"][a["state"]] = s["state_counts"].get(a["state"], 0) + 1
        return {"cluster": {"summary": summary, "total_actors": len(rows),
                            "summary_by": "class"}}
    if resource == "objects":
        s = {"total_objects": 0, "total_size_mb": 0.0, "total_num_workers": 0,
             "total_num_nodes": 0, "task_state_counts": {}, "ref_type_counts": {}}
        pids, nodes = set(), set()
        for o in rows:
            s["total_objects"] += 1
            s["total_size_mb"] += (o["object_size"] or 0) / 2 ** 20
            pids.add((o["node_id"], o["pid"]))
            nodes.add(o["node_id"])
            for k, col in (("task_state_counts", "task_status"),
                           ("ref_type_counts", "reference_type")):
                s[k][o[col]] = s[k].get(o[col], 0) + 1
        s["total_num_workers"], s["total_num_nodes"] = len(pids), len(nodes)
        summary = {"disabled": s} if rows else {}
        return {"cluster": {"summary": summary, "total_objects": len(rows),
                            "total_size_mb": s["total_size_mb"], "callsite_enabled": False,
                            "summary_by": "callsite"}}
    raise RayStateApiException(f"summaries are of tasks, actors or objects, not {resource!r}")


# ------------------------------------------------------------- timeline
def task_spans(limit=None, source=None, address=None, timeout=DEFAULT_RPC_TIMEOUT):
    """The timeline's columns of the task records that ran (the first
    `limit`), one tuple each (the GCS's TASK_SPANS): (task_id, name, type,
    state, node_id, worker_id, pid, job_id, actor_id, attempt, error_type,
    start_s, end_s); and the number of records, dropped ones included."""
    from pyray._private import task_events
    task_events.flush()
    src = source or Source(address, timeout)
    reply = src.gcs(Op.TASK_SPANS, limit)
    return reply["spans"], reply["total"]


def timeline_events(source=None, address=None, timeout=DEFAULT_RPC_TIMEOUT):
    """Chrome trace events ("X": complete events, microseconds) of every
    task record that ran: pid = its node, tid = its worker."""
    spans, _ = task_spans(source=source, address=address, timeout=timeout)
    now = time.time()
    events = []
    for (tid, name, typ, state, node, worker, pid, job, actor, attempt, err, start,
         end) in spans:
        start_us = start * 1e6
        end_us = (now if end is None else end) * 1e6
        events.append({
            "cat": "task::" + (name or "?"), "name": name or "?",
            "pid": "Node " + (node or "?"), "tid": "Worker " + (worker or "?"),
            "ph": "X", "ts": start_us, "dur": max(0.0, end_us - start_us),
            "cname": "generic_work" if state != "FAILED" else "terrible",
            "args": {"task_id": tid, "job_id": job, "attempt_number": attempt,
                     "state": state, "type": typ, "actor_id": actor, "worker_pid": pid,
                     "error_type": err},
        })
    events.sort(key=lambda e: e["ts"])
    return events


# ----------------------------------------------------------------- logs
def log_files(node_id=None, address=None, timeout=DEFAULT_RPC_TIMEOUT, source=None,
              node_ip=None):
    """{node_id: [file name]} of the nodes' log folders (nodes on this
    machine; the log folder is the node's session directory's logs/)."""
    src = source or Source(address, timeout)
    nodes = node_rows(src, [])
    if node_ip is not None:
        ids = [n["node_id"] for n in nodes if n["node_ip"] == node_ip]
        if not ids:
            raise RayStateApiException(f"no node of the cluster has the address {node_ip!r}")
        node_id = node_id or ids[0]
    out = {}
    for n in nodes:
        if node_id is not None and n["node_id"] != node_id:
            continue
        d = os.path.join(n["_session_dir"] or "", "logs")
        if not n["_session_dir"] or not os.path.isdir(d):
            continue
        out[n["node_id"]] = sorted(os.listdir(d))
    if node_id is not None and node_id not in out:
        raise RayStateApiException(
            f"node {node_id} is not a node of this cluster whose logs are on this machine")
    return out


def log_path(filename, node_id=None, address=None, timeout=DEFAULT_RPC_TIMEOUT, source=None):
    files = log_files(node_id, address, timeout, source)
    src = source or Source(address, timeout)
    dirs = {n["node_id"]: os.path.join(n["_session_dir"] or "", "logs")
            for n in node_rows(src, [])}
    base = os.path.basename(filename)
    for nid, names in files.items():
        if base in names:
            return os.path.join(dirs[nid], base)
    raise RayStateApiException(
        f"no log file {filename!r} on {'node ' + node_id if node_id else 'the nodes'} "
        f"(`pyray logs` lists them)")


# ------------------------------------------------------------- over HTTP
LIST_ROUTES = ("actors", "tasks", "nodes", "objects", "placement_groups", "workers", "jobs")


def http_get(path, params=None, address=None, source=None):
    """Ray's state routes (GET /api/v0/...): returns (HTTP status, JSON
    body).  `params` maps each query parameter to its list of values (as
    urllib.parse.parse_qs gives them): limit, timeout, detail,
    filter_keys / filter_predicates / filter_values (repeated, in step),
    exclude_driver.  Routes: /api/v0/<resource>, /api/v0/<tasks|actors|
    objects>/summarize, /api/v0/tasks/timeline."""
    params = params or {}

    def one(name, default=None):
        v = params.get(name)
        return v[-1] if v else default

    def flag(name, default):
        v = one(name)
        return default if v is None else str(v).lower() in ("1", "true", "yes")
    parts = [p for p in path.split("?")[0].split("/") if p]
    try:
        if parts[:2] != ["api", "v0"] or len(parts) not in (3, 4):
            return 404, _body(False, f"no route {path!r}; the state routes are /api/v0/"
                                     f"<{'|'.join(LIST_ROUTES)}>, /api/v0/<tasks|actors|objects>"
                                     f"/summarize and /api/v0/tasks/timeline")
        resource = resource_name(parts[2])
        timeout = float(one("timeout", DEFAULT_RPC_TIMEOUT))
        if len(parts) == 4:
            if parts[3] == "summarize" and resource in ("tasks", "actors", "objects"):
                return 200, _body(True, "", {"result": {"node_id_to_summary": summarize(
                    resource, timeout=timeout, address=address, source=source)}})
            if parts[3] == "timeline" and resource == "tasks":
                return 200, timeline_events(source=source, address=address, timeout=timeout)
            return 404, _body(False, f"no route {path!r}")
        keys, preds, values = (params.get(k, []) for k in
                               ("filter_keys", "filter_predicates", "filter_values"))
        if not len(keys) == len(preds) == len(values):
            raise RayStateApiException("filter_keys, filter_predicates and filter_values "
                                       "must come in step (one of each per filter)")
        reply = query(resource, list(zip(keys, preds, values)),
                      limit=int(one("limit", DEFAULT_LIMIT)), detail=flag("detail", False),
                      timeout=timeout, address=address, source=source,
                      exclude_driver=flag("exclude_driver", True))
    except (RayStateApiException, ValueError) as err:
        return 400, _body(False, str(err))
    except Exception as err:  # noqa: BLE001 - the cluster did not answer
        return 500, _body(False, f"{type(err).__name__}: {err}")
    return 200, _body(True, "", {"result": reply})


def _body(ok, msg, data=None):
    return {"result": ok, "msg": msg, "data": data or {}}
