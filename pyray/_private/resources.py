"""The resource vocabulary the client, the raylet and the GCS share: pure
logic, no I/O, no process state (unit-tested alone).

A shape is a dict {resource name: amount}.  Amounts are compared with the
tolerance EPS (fractions such as 0.1 + 0.2 must fit in 0.3).  Placement
groups add resource names of their own (below) and a shape type that carries
its group (PgShape); the raylet's accounting of one node is
pyray.raylet.resources.NodeResources.
"""
from __future__ import annotations

EPS = 1e-9

# as Ray: a node with accelerators of type T has the resource
# "accelerator_type:T" (1); the accelerator_type option asks for 0.001 of it
ACCEL_PREFIX = "accelerator_type:"


def validate_shape(shape: dict, what="task"):
    """Raises ValueError unless every amount of `shape` is a usable one."""
    for k, v in shape.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"resource names must be non-empty strings, got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"resource {k!r} of the {what} must be a number, got {v!r}")
        if v < 0:
            raise ValueError(f"resource {k!r} of the {what} must be >= 0, got {v}")
        if v > 1 and v != int(v):
            raise ValueError(f"resource {k!r} of the {what} must be a whole number when "
                             f"greater than 1, got {v}")


def fits(avail, shape) -> bool:
    """Whether `shape` fits in the amounts `avail` (free or total)."""
    for k, v in shape.items():
        if v > 0 and avail.get(k, 0.0) + EPS < v:
            return False
    return True


def take(avail, shape):
    """Subtracts `shape` from `avail` in place (it may go negative)."""
    for k, v in shape.items():
        if v > 0:
            avail[k] = avail.get(k, 0.0) - v


# ---------------------------------------------------------------------------
# placement groups (docs/placement_groups.md)
#
# A committed bundle i of group G (hex id) holding {"CPU": 2} gives its node
# the resources CPU_group_i_G = 2 and CPU_group_G += 2, plus the markers
# bundle_group_i_G = 1000 and bundle_group_G += 1000.  Work placed in the
# group asks for these names instead of CPU, so the ordinary lease machinery
# puts it where the bundle is and nowhere else.
# ---------------------------------------------------------------------------

# the states of a group, as the GCS keeps them and its subscribers hear them:
# PENDING -> CREATED -> REMOVED (PENDING -> REMOVED if removed first); a
# created group that lost bundles with a dead node is RESCHEDULING until they
# are placed again
PENDING, CREATED, REMOVED = "PENDING", "CREATED", "REMOVED"
RESCHEDULING = "RESCHEDULING"

BUNDLE_MARKER = "bundle"
BUNDLE_MARKER_TOTAL = 1000.0
BUNDLE_MARKER_REQUEST = 0.001
_MARKER_PREFIX = BUNDLE_MARKER + "_group_"


def group_resource(name, pg_hex, index=-1):
    if index < 0:
        return f"{name}_group_{pg_hex}"
    return f"{name}_group_{index}_{pg_hex}"


def bundle_resources(pg_hex, index, bundle):
    """The resources a committed bundle adds to its node."""
    out = {}
    for k, v in bundle.items():
        if v > 0:
            out[group_resource(k, pg_hex, index)] = float(v)
            out[group_resource(k, pg_hex)] = float(v)
    out[group_resource(BUNDLE_MARKER, pg_hex, index)] = BUNDLE_MARKER_TOTAL
    out[group_resource(BUNDLE_MARKER, pg_hex)] = BUNDLE_MARKER_TOTAL
    return out


def group_shape(shape, pg_hex, index):
    """The lease shape of work placed in bundle ``index`` (-1: any bundle)."""
    out = {}
    for k, v in shape.items():
        if v > 0:
            out[group_resource(k, pg_hex)] = float(v)
            if index >= 0:
                out[group_resource(k, pg_hex, index)] = float(v)
    out[group_resource(BUNDLE_MARKER, pg_hex)] = BUNDLE_MARKER_REQUEST
    if index >= 0:
        out[group_resource(BUNDLE_MARKER, pg_hex, index)] = BUNDLE_MARKER_REQUEST
    return out


def pg_of_shape(shape):
    """``(pg_hex, bundle index or -1)`` of a group lease shape, else None."""
    found = None
    for k in shape:
        if k.startswith(_MARKER_PREFIX):
            head, sep, tail = k[len(_MARKER_PREFIX):].partition("_")
            if sep and head.isdigit():
                return tail, int(head)
            found = (head, -1)
    return found


class PgShape(dict):
    """A shape placed in a placement group.  It is the shape a task's
    worker sees (``get_assigned_resources``); ``pg`` is ``(pg id, bundle
    index, capture child tasks)``, and ``lease`` (owner side only) is the
    group shape its lease asks for, which does not travel."""
    __slots__ = ("pg", "lease")

    def __reduce__(self):
        # plain data: the receiving worker reads the capture flag itself
        # (task_executor, captures_children)
        return make_pg_shape, (dict(self), self.pg)


def make_pg_shape(items, pg):
    """A PgShape from its parts (what unpickling builds)."""
    s = PgShape(items)
    s.pg = pg
    s.lease = None
    return s


def captures_children(shape) -> bool:
    """Whether work with this shape places the tasks and actors it submits
    in its own placement group (``placement_group_capture_child_tasks``)."""
    return type(shape) is PgShape and bool(shape.pg[2])
