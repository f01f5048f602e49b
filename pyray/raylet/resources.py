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
        return self._take_gpus(shape.get("GPU", 0))

    def release(self, shape, gpu_ids):
        for k, v in shape.items():
            if v > 0:
                self.available[k] = min(self.total.get(k, 0.0), self.available.get(k, 0.0) + v)
        g = shape.get("GPU", 0)
        if gpu_ids:
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
            if v > 0 and k == "CPU":
                self.available[k] = self.available.get(k, 0.0) + v

    def unlend(self, shape):
        for k, v in shape.items():
            if v > 0 and k == "CPU":
                self.available[k] = self.available.get(k, 0.0) - v

    def snapshot(self):
        return {k: max(0.0, v) for k, v in self.available.items()}
