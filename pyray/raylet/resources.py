"""Resource accounting for one node: pure logic, no I/O (unit-tested alone).

A shape is a dict {resource name: amount}.  CPU and custom resources are
plain quantities; GPUs are also given ids (whole GPUs get whole devices, a
fraction shares one device with other fractions)."""
from __future__ import annotations

_EPS = 1e-9


def validate_shape(shape: dict, what="task"):
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


class NodeResources:
    def __init__(self, total: dict):
        self.total = {k: float(v) for k, v in total.items() if v > 0}
        self.available = dict(self.total)
        n_gpus = int(self.total.get("GPU", 0))
        self.gpu_free = {i: 1.0 for i in range(n_gpus)}
        self.bundles = {}        # placement group hex -> {bundle index: Bundle}
        self.pg_gpus = {}        # placement group hex -> {gpu id: free fraction}

    def feasible(self, shape) -> bool:
        return all(self.total.get(k, 0.0) + _EPS >= v for k, v in shape.items() if v > 0)

    def fits(self, shape) -> bool:
        avail = self.available
        for k, v in shape.items():
            if v > 0 and avail.get(k, 0.0) + _EPS < v:
                return False
        g = shape.get("GPU", 0)
        if 0 < g < 1:
            return any(f + _EPS >= g for f in self.gpu_free.values())
        if g >= 1:
            return sum(1 for f in self.gpu_free.values() if f >= 1 - _EPS) >= int(g)
        return True

    def acquire(self, shape):
        """Takes the shape's resources; returns the GPU ids given (a list)."""
        for k, v in shape.items():
            if v > 0:
                self.available[k] = self.available.get(k, 0.0) - v
        if self.pg_gpus and "GPU" not in shape:
            return self._take_bundle_gpus(shape)
        return self._take_gpus(shape.get("GPU", 0))

    def release(self, shape, gpu_ids):
        for k, v in shape.items():
            if v > 0:
                t = self.total.get(k)
                if t is not None:       # a returned bundle's resources are gone
                    self.available[k] = min(t, self.available.get(k, 0.0) + v)
        g = shape.get("GPU", 0)
        if gpu_ids and self.pg_gpus and "GPU" not in shape:
            self._give_back_bundle_gpus(shape, gpu_ids)
        elif gpu_ids:
            per = g if g < 1 else 1.0
            for i in gpu_ids:
                self.gpu_free[i] = min(1.0, self.gpu_free[i] + per)

    def _take_gpus(self, g):
        if g <= 0:
            return []
        if g < 1:
            # the fullest device that still fits: keeps whole devices free
            best = min((i for i, f in self.gpu_free.items() if f + _EPS >= g),
                       key=lambda i: (self.gpu_free[i], i))
            self.gpu_free[best] -= g
            return [best]
        ids = [i for i, f in sorted(self.gpu_free.items()) if f >= 1 - _EPS][:int(g)]
        for i in ids:
            self.gpu_free[i] = 0.0
        return ids

    # a worker blocked in get() gives back its CPUs while it waits
    def lend(self, shape):
        for k, v in shape.items():
            if v > 0 and (k == "CPU" or k.startswith("CPU_group_")) and k in self.total:
                self.available[k] = self.available.get(k, 0.0) + v

    def unlend(self, shape):
        for k, v in shape.items():
            if v > 0 and (k == "CPU" or k.startswith("CPU_group_")) and k in self.total:
                self.available[k] = self.available.get(k, 0.0) - v

    def snapshot(self):
        return {k: max(0.0, v) for k, v in self.available.items()}

    # ---- placement-group bundles ----------------------------------------
    def reserve_bundles(self, pg_hex, bundles, commit):
        """Takes each ``(index, shape)`` bundle out of the free pool, all or
        none.  Committed bundles show up as group resources that only work
        placed in the group can use.  Returns None, or why it failed."""
        held = self.bundles.setdefault(pg_hex, {})
        taken = []
        for index, shape in bundles:
            if index in held:
                continue                    # a repeated request: already held
            if not self.fits(shape):
                for i in taken:
                    b = held.pop(i)
                    self.release(b.shape, b.gpu_ids)
                if not held:
                    del self.bundles[pg_hex]
                return (f"bundle {index} {shape} does not fit in the free resources "
                        f"{self.snapshot()}")
            held[index] = Bundle(shape, self.acquire(shape))
            taken.append(index)
        if commit:
            self.commit_bundles(pg_hex)
        return None

    def commit_bundles(self, pg_hex):
        for index, b in self.bundles.get(pg_hex, {}).items():
            if b.committed:
                continue
            b.committed = True
            for k, v in bundle_resources(pg_hex, index, b.shape).items():
                self.total[k] = self.total.get(k, 0.0) + v
                self.available[k] = self.available.get(k, 0.0) + v
            if b.gpu_ids:
                g = b.shape.get("GPU", 0)
                pool = self.pg_gpus.setdefault(pg_hex, {})
                for i in b.gpu_ids:
                    pool[i] = pool.get(i, 0.0) + (g if g < 1 else 1.0)

    def return_bundles(self, pg_hex):
        """Gives a group's bundles back to the free pool; their group
        resources disappear.  Returns how many bundles were held."""
        held = self.bundles.pop(pg_hex, None)
        if not held:
            return 0
        self.pg_gpus.pop(pg_hex, None)
        for index, b in held.items():
            if b.committed:
                for k in bundle_resources(pg_hex, index, b.shape):
                    self.total.pop(k, None)
                    self.available.pop(k, None)
            self.release(b.shape, b.gpu_ids)
        return len(held)

    def _bundle_gpu_pool(self, shape):
        found = pg_of_shape(shape)
        if found is None:
            return None, None, 0.0
        pg_hex, index = found
        pool = self.pg_gpus.get(pg_hex)
        if pool is None:
            return None, None, 0.0
        g = shape.get(group_resource("GPU", pg_hex, index), 0.0)
        if index >= 0:
            b = self.bundles.get(pg_hex, {}).get(index)
            ids = set(b.gpu_ids) if b is not None else set()
        else:
            ids = set(pool)
        return pool, ids, g

    def _take_bundle_gpus(self, shape):
        pool, ids, g = self._bundle_gpu_pool(shape)
        if not g:
            return []
        if g < 1:
            fitting = [i for i in ids if pool[i] + _EPS >= g]
            if not fitting:
                return []
            best = min(fitting, key=lambda i: (pool[i], i))
            pool[best] -= g
            return [best]
        got = [i for i in sorted(ids) if pool[i] >= 1 - _EPS][:int(g)]
        for i in got:
            pool[i] = 0.0
        return got

    def _give_back_bundle_gpus(self, shape, gpu_ids):
        pool, _ids, g = self._bundle_gpu_pool(shape)
        if pool is None:
            return                          # the group was returned meanwhile
        for i in gpu_ids:
            if i in pool:
                pool[i] = min(1.0, pool[i] + (g if g < 1 else 1.0))


class Bundle:
    """A bundle a node holds for a placement group."""
    __slots__ = ("shape", "gpu_ids", "committed")

    def __init__(self, shape, gpu_ids):
        self.shape = shape
        self.gpu_ids = gpu_ids
        self.committed = False


# ---------------------------------------------------------------------------
# placement-group resource names
#
# A committed bundle i of group G (hex id) holding {"CPU": 2} gives its node
# the resources CPU_group_i_G = 2 and CPU_group_G += 2, plus the markers
# bundle_group_i_G = 1000 and bundle_group_G += 1000.  Work placed in the
# group asks for these names instead of CPU, so the ordinary lease machinery
# puts it where the bundle is and nowhere else.
# ---------------------------------------------------------------------------
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
    group shape its lease asks for."""
    __slots__ = ("pg", "lease")

    def __reduce__(self):
        return _rebuild_pg_shape, (dict(self), self.pg)


def _rebuild_pg_shape(items, pg):
    s = PgShape(items)
    s.pg = pg
    s.lease = None
    if pg[2]:
        # work in this process may now submit children into the group
        from pyray._private.context import ctx
        if ctx.core_worker is not None:
            ctx.core_worker.pg_capture = True
    return s
