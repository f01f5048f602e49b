"""Resource accounting for one node (the raylet's): pure logic, no I/O
(unit-tested alone).

The vocabulary (shapes, ``fits`` and its tolerance, placement-group resource
names) is pyray._private.resources.  CPU and custom resources are plain
quantities; GPUs are also given ids (whole GPUs get whole devices, a
fraction shares one device with other fractions)."""
from __future__ import annotations

from pyray._private.resources import (EPS, bundle_resources, fits, group_resource,
                                      pg_of_shape, take)

__all__ = ["NodeResources", "Bundle"]


class NodeResources:
    def __init__(self, total: dict):
        self.total = {k: float(v) for k, v in total.items() if v > 0}
        self.available = dict(self.total)
        n_gpus = int(self.total.get("GPU", 0))
        self.gpu_free = {i: 1.0 for i in range(n_gpus)}
        self.bundles = {}        # placement group hex -> {bundle index: Bundle}
        self.pg_gpus = {}        # placement group hex -> {gpu id: free fraction}

    def feasible(self, shape) -> bool:
        return fits(self.total, shape)

    def fits(self, shape) -> bool:
        if not fits(self.available, shape):
            return False
        g = shape.get("GPU", 0)
        if 0 < g < 1:
            return any(f + EPS >= g for f in self.gpu_free.values())
        if g >= 1:
            return sum(1 for f in self.gpu_free.values() if f >= 1 - EPS) >= int(g)
        return True

    def acquire(self, shape):
        """Takes the shape's resources; returns the GPU ids given (a list)."""
        take(self.available, shape)
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
            best = min((i for i, f in self.gpu_free.items() if f + EPS >= g),
                       key=lambda i: (self.gpu_free[i], i))
            self.gpu_free[best] -= g
            return [best]
        ids = [i for i, f in sorted(self.gpu_free.items()) if f >= 1 - EPS][:int(g)]
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
            fitting = [i for i in ids if pool[i] + EPS >= g]
            if not fitting:
                return []
            best = min(fitting, key=lambda i: (pool[i], i))
            pool[best] -= g
            return [best]
        got = [i for i in sorted(ids) if pool[i] >= 1 - EPS][:int(g)]
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
