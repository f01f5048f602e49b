"""The state commands of the command line (docs/state.md): `pyray list`,
`pyray get`, `pyray summary`, `pyray logs`, `pyray memory`.  Registered in
pyray/scripts/cli.py."""
from __future__ import annotations

import json
import sys
import time

RESOURCES = ("actors", "tasks", "nodes", "objects", "placement-groups", "workers", "jobs")
FORMATS = ("default", "json", "yaml", "table")


def register(sub):
    """Adds the state subcommands to the `pyray` parser's subparsers."""
    ls = sub.add_parser("list", help="list the cluster's actors, tasks, nodes, objects, "
                                     "placement groups, workers or jobs")
    ls.add_argument("resource", choices=RESOURCES)
    ls.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                    help='keep rows whose KEY equals VALUE ("key=value") or differs '
                         '("key!=value"); repeat for several')
    ls.add_argument("--limit", type=int, default=100, help="at most this many rows (100)")
    ls.add_argument("--detail", action="store_true", help="every column (default format: yaml)")
    _common(ls)
    ls.set_defaults(fn=cmd_list)
    g = sub.add_parser("get", help="one actor, task, node, object, placement group, worker "
                                   "or job by id")
    g.add_argument("resource", choices=RESOURCES)
    g.add_argument("id")
    _common(g, formats=("default", "json", "yaml"))
    g.set_defaults(fn=cmd_get)
    sm = sub.add_parser("summary", help="counts of tasks, actors or objects")
    sm.add_argument("resource", choices=("tasks", "actors", "objects"))
    _common(sm, formats=("default", "json", "yaml"))
    sm.set_defaults(fn=cmd_summary)
    lg = sub.add_parser("logs", help="list the nodes' log files, or print one")
    lg.add_argument("glob", nargs="?", default=None,
                    help="a file name (prints it) or a glob pattern (lists the matches)")
    lg.add_argument("--node-id", default=None, help="only this node's files")
    lg.add_argument("--node-ip", default=None, help="only the files of the node at this address")
    lg.add_argument("--tail", type=int, default=1000, help="print the last N lines (1000)")
    lg.add_argument("--follow", action="store_true",
                    help="keep printing new lines as they are written (Ctrl-C stops)")
    _common(lg, formats=None)
    lg.set_defaults(fn=cmd_logs)
    mem = sub.add_parser("memory", help="the objects in the cluster, by node or owner, "
                                        "with their sizes")
    mem.add_argument("--group-by", default="NODE_ADDRESS", choices=("NODE_ADDRESS", "OWNER"),
                     help="group the objects by node (default) or owner process")
    mem.add_argument("--sort-by", default="OBJECT_SIZE",
                     choices=("PID", "OBJECT_SIZE", "REFERENCE_TYPE"))
    mem.add_argument("--units", default="B", choices=("B", "KB", "MB", "GB"))
    mem.add_argument("--stats-only", action="store_true", help="only the totals")
    mem.add_argument("--num-entries", "--n", type=int, default=None,
                     help="at most this many objects per group")
    _common(mem, formats=None)
    mem.set_defaults(fn=cmd_memory)


def _common(p, formats=FORMATS):
    p.add_argument("--address", default=None,
                   help="the cluster (host:port of its head; default: the one this machine "
                        "runs, or $RAY_ADDRESS)")
    p.add_argument("--timeout", type=float, default=30, help="seconds to wait for answers (30)")
    if formats:
        p.add_argument("--format", default="default", choices=formats)


def _fail(cmd, err):
    sys.exit(f"pyray {cmd}: {err}")


def _resource(r):
    return r.replace("-", "_")


def parse_filter(text):
    for pred in ("!=", "="):
        key, sep, value = text.partition(pred)
        if sep:
            key, value = key.strip(), value.strip()
            if not key:
                break
            return key, pred, value
    raise ValueError(f"bad filter {text!r}: write key=value or key!=value")


# ------------------------------------------------------------- commands
def cmd_list(args):
    from pyray._private import state as data
    from pyray._private.state_schema import RayStateApiException
    try:
        filters = [parse_filter(f) for f in args.filter]
        reply = data.query(_resource(args.resource), filters=filters, limit=args.limit,
                           detail=args.detail, timeout=args.timeout, address=args.address)
    except (RayStateApiException, ValueError, ConnectionError) as err:
        _fail("list", err)
    rows = reply["result"]
    fmt = args.format
    if fmt == "default":
        fmt = "yaml" if args.detail else "table"
    print(render(rows, fmt, title=f"{args.resource.upper().replace('-', ' ')}"))
    for w in reply.get("warnings") or ():
        print(f"warning: {w}", file=sys.stderr)
    if reply["num_filtered"] > reply["num_after_truncation"]:
        print(f"warning: {reply['num_after_truncation']} of {reply['num_filtered']} "
              f"{args.resource} shown; pass --limit to see more", file=sys.stderr)
    return 0


def cmd_get(args):
    from pyray._private import state as data
    from pyray._private.state_schema import RayStateApiException
    try:
        rows = data.get_row(_resource(args.resource), args.id, timeout=args.timeout,
                            address=args.address)
    except (RayStateApiException, ValueError, ConnectionError) as err:
        _fail("get", err)
    if not rows:
        _fail("get", f"no {args.resource[:-1].replace('-', ' ')} with id {args.id} in the "
                     f"cluster (`pyray list {args.resource}` lists them)")
    value = rows if _resource(args.resource) == "objects" else rows[0]
    print(render(value, "yaml" if args.format == "default" else args.format))
    return 0


def cmd_summary(args):
    from pyray._private import state as data
    from pyray._private.state_schema import RayStateApiException
    try:
        s = data.summarize(args.resource, timeout=args.timeout, address=args.address)
    except (RayStateApiException, ValueError, ConnectionError) as err:
        _fail("summary", err)
    if args.format != "default":
        print(render(s, args.format))
        return 0
    c = s["cluster"]
    rule = "-" * 40
    if args.resource == "tasks":
        print(f"======== Tasks Summary: {time.strftime('%Y-%m-%d %H:%M:%S')} ========\n"
              f"Stats:\n{rule}\ntotal_actor_scheduled: {c['total_actor_scheduled']}\n"
              f"total_actor_tasks: {c['total_actor_tasks']}\ntotal_tasks: {c['total_tasks']}\n\n"
              f"Table (group by func_name):\n{rule}")
        rows = [{"FUNC_OR_CLASS_NAME": k, "STATE_COUNTS": _counts(v["state_counts"]),
                 "TYPE": v["type"]} for k, v in c["summary"].items()]
    elif args.resource == "actors":
        print(f"======== Actors Summary: {time.strftime('%Y-%m-%d %H:%M:%S')} ========\n"
              f"Stats:\n{rule}\ntotal_actors: {c['total_actors']}\n\n"
              f"Table (group by class):\n{rule}")
        rows = [{"CLASS_NAME": k, "STATE_COUNTS": _counts(v["state_counts"])}
                for k, v in c["summary"].items()]
    else:
        print(f"======== Object Summary: {time.strftime('%Y-%m-%d %H:%M:%S')} ========\n"
              f"Stats:\n{rule}\ntotal_objects: {c['total_objects']}\n"
              f"total_size_mb: {c['total_size_mb']:.3f}\n\nTable (group by callsite):\n{rule}")
        rows = [{"CALLSITE": k, "TOTAL_OBJECTS": v["total_objects"],
                 "TOTAL_SIZE_MB": f"{v['total_size_mb']:.3f}",
                 "TASK_STATE_COUNTS": _counts(v["task_state_counts"]),
                 "REFERENCE_TYPE_COUNTS": _counts(v["ref_type_counts"])}
                for k, v in c["summary"].items()]
    print(render(rows, "table"))
    return 0


def _counts(d):
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: str(kv[0])))


def cmd_logs(args):
    import fnmatch
    from pyray._private import state as data
    from pyray._private.state_schema import RayStateApiException
    try:
        files = data.log_files(args.node_id, address=args.address, timeout=args.timeout,
                             node_ip=args.node_ip)
    except (RayStateApiException, ValueError, ConnectionError) as err:
        _fail("logs", err)
    pattern = args.glob or "*"
    matches = {n: [f for f in fs if fnmatch.fnmatch(f, pattern)] for n, fs in files.items()}
    exact = [(n, args.glob) for n, fs in files.items() if args.glob in fs] if args.glob else []
    if len(exact) > 1 and args.node_id is None:
        _fail("logs", f"{args.glob} is on several nodes ({', '.join(n for n, _ in exact)}); "
                      f"pass --node-id")
    if not exact:
        if args.glob and not any(matches.values()):
            _fail("logs", f"no log file matches {args.glob!r} (`pyray logs` lists them)")
        for n, fs in matches.items():
            if fs:
                print(f"======== node {n} ========")
                for f in fs:
                    print(f"  {f}")
        return 0
    node_id = exact[0][0]
    path = data.log_path(args.glob, node_id, address=args.address, timeout=args.timeout)
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
        for line in lines[-args.tail:] if args.tail > 0 else []:
            print(line)
        sys.stdout.flush()
        if not args.follow:
            return 0
        try:
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return 0


_UNITS = {"B": 1, "KB": 2 ** 10, "MB": 2 ** 20, "GB": 2 ** 30}


def cmd_memory(args):
    from pyray._private import state as data
    from pyray._private.state_schema import RayStateApiException
    try:
        rows = data.query("objects", limit=10 ** 9, detail=True, timeout=args.timeout,
                          address=args.address)["result"]
    except (RayStateApiException, ValueError, ConnectionError) as err:
        _fail("memory", err)
    unit = _UNITS[args.units]
    total = sum(r["object_size"] or 0 for r in rows)
    groups = {}
    for r in rows:
        key = (f"node {r['node_id']} ({r['ip']})" if args.group_by == "NODE_ADDRESS"
               else f"owner pid {r['pid']} ({r['type'].lower()}) on node {r['node_id']}")
        groups.setdefault(key, []).append(r)
    sort_key = {"PID": lambda r: r["pid"] or 0,
                "OBJECT_SIZE": lambda r: -(r["object_size"] or 0),
                "REFERENCE_TYPE": lambda r: r["reference_type"]}[args.sort_by]
    print(f"======== Object references status: {time.strftime('%Y-%m-%d %H:%M:%S')} ========")
    for key, rs in groups.items():
        size = sum(r["object_size"] or 0 for r in rs)
        print(f"Grouping by {args.group_by}: {key}\n  {len(rs)} objects, "
              f"{size / unit:.2f} {args.units}")
        if args.stats_only:
            continue
        rs = sorted(rs, key=sort_key)[:args.num_entries]
        print(render([{"IP_ADDRESS": r["ip"], "PID": r["pid"], "TYPE": r["type"],
                       "OBJECT_REF": r["object_id"],
                       "SIZE": "?" if r["object_size"] is None
                       else f"{r['object_size'] / unit:.2f} {args.units}",
                       "REFERENCE_TYPE": r["reference_type"], "TASK_STATUS": r["task_status"]}
                      for r in rs], "table"))
    print(f"--- Aggregate object store stats across all nodes ---\n"
          f"{len(rows)} objects, {total / unit:.2f} {args.units} in total")
    return 0


# ------------------------------------------------------------- output
def render(value, fmt, title=None):
    if fmt == "json":
        return json.dumps(value, indent=2, default=str)
    if fmt == "yaml":
        return to_yaml(value).rstrip("\n")
    rows = value if isinstance(value, list) else [value]
    if not rows:
        return f"{title + ': ' if title else ''}no rows"
    cols = list(rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(str(c)), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = []
    if title:
        lines.append(f"======== List: {title} ({len(rows)}) ========")
    lines.append("  ".join(str(c).upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def to_yaml(value, indent=0):
    """A small YAML writer for the state rows (dicts, lists, scalars)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{_scalar(k)}:\n{to_yaml(v, indent + 1)}")
            else:
                out.append(f"{pad}{_scalar(k)}: {_scalar(v)}\n")
        return "".join(out)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = []
        for v in value:
            if isinstance(v, (dict, list)) and v:
                body = to_yaml(v, indent + 1)
                out.append(f"{pad}- {body.lstrip()}")
            else:
                out.append(f"{pad}- {_scalar(v)}\n")
        return "".join(out)
    return pad + _scalar(value) + "\n"


def _scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    s = str(v)
    if s == "" or any(ch in s for ch in ":#{}[],&*!|>'\"%@`\n") or s.strip() != s or \
            s.lower() in ("null", "true", "false", "yes", "no", "~"):
        return json.dumps(s)
    return s
