"""The store against a dict-backed reference model: the same random
operation sequences must give the same results and the same exceptions."""
import random

import pytest

import plasma

pytestmark = pytest.mark.timeout(60)


def check(oid):
    if len(oid) != 20:
        raise ValueError("object id must be 20 bytes")


class DictStore:
    """Reference semantics of Client in a few lines (no capacity limits)."""

    def __init__(self):
        self.objects = {}  # oid -> [sealed, data bytearray, metadata]

    def create(self, oid, size, metadata=b""):
        check(oid)
        if oid in self.objects:
            raise plasma.ObjectExistsError(oid)
        self.objects[oid] = [False, bytearray(size), metadata]
        return self.objects[oid][1]

    def seal(self, oid):
        check(oid)
        if oid not in self.objects:
            raise plasma.ObjectNotFoundError(oid)
        if self.objects[oid][0]:
            raise plasma.ObjectSealedError(oid)
        self.objects[oid][0] = True

    def put(self, oid, data, metadata=b""):
        self.create(oid, len(data), metadata)[:] = data
        self.objects[oid][0] = True

    def get(self, oid, timeout=None):
        check(oid)
        if oid not in self.objects:
            raise plasma.ObjectNotFoundError(oid)
        sealed, data, meta = self.objects[oid]
        if not sealed:
            raise plasma.GetTimeoutError(oid)
        return bytes(data), meta

    def delete(self, oid):
        check(oid)
        if oid not in self.objects:
            raise plasma.ObjectNotFoundError(oid)
        del self.objects[oid]

    def contains(self, oid):
        check(oid)
        return oid in self.objects and self.objects[oid][0]

    def abort(self, oid):
        check(oid)
        if oid not in self.objects:
            raise plasma.ObjectNotFoundError(oid)
        if self.objects[oid][0]:
            raise plasma.ObjectSealedError(oid)
        del self.objects[oid]

    def list(self):
        return {oid: ("sealed" if s else "created") for oid, (s, _, _) in self.objects.items()}


class RealStore:
    """Adapter giving Client the model's return conventions."""

    def __init__(self, client):
        self.c = client
        self.writers = {}

    def create(self, oid, size, metadata=b""):
        view = self.c.create(oid, size, metadata)
        self.writers[oid] = view
        return view

    def seal(self, oid):
        self.c.seal(oid)
        self.writers.pop(oid, None)

    def put(self, oid, data, metadata=b""):
        self.c.put(oid, data, metadata)

    def get(self, oid, timeout=None):
        buf = self.c.get(oid, timeout=0)
        return bytes(buf), buf.metadata

    def delete(self, oid):
        self.c.delete(oid)
        self.writers.pop(oid, None)

    def contains(self, oid):
        return self.c.contains(oid)

    def abort(self, oid):
        self.c.abort(oid)
        self.writers.pop(oid, None)

    def list(self):
        return {oid: info["state"] for oid, info in self.c.list().items()}


def short(result):
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bytes):
        data, meta = result
        return (len(data), data[:16], hash(data), meta)
    return result


def outcome(fn, *args):
    try:
        result = short(fn(*args))
    except plasma.PlasmaError as e:
        return ("raise", type(e))
    except ValueError:
        return ("raise", ValueError)
    if isinstance(result, (bytearray, memoryview)):
        return ("ok", None)
    return ("ok", result)


def run_ops(seed, model, real, n_ops=3000):
    rng = random.Random(seed)
    ids = [bytes([i]) * 20 for i in range(24)] + [b"short"]
    held = []  # buffers from get(), kept alive to exercise pins
    for step in range(n_ops):
        op = rng.choice(["create", "seal", "put", "put", "get", "get", "delete", "contains",
                         "abort", "write", "drop"])
        oid = rng.choice(ids)
        size = rng.choice([0, 1, 63, 64, 1000, 70000])
        meta = rng.choice([b"", b"meta"])
        if op == "write":
            payload = bytes([step % 256]) * 8
            for s in (model, real):
                view = s.writers.get(oid) if s is real else (
                    s.objects[oid][1] if oid in s.objects and not s.objects[oid][0] else None)
                if view is not None and len(view) >= 8:
                    view[:8] = payload
            continue
        if op == "drop":
            if held:
                held.pop(rng.randrange(len(held)))
            continue
        if op == "get" and rng.random() < 0.3:
            try:
                held.append((oid, real.c.get(oid, timeout=0), model.get(oid)))
            except (plasma.PlasmaError, ValueError):
                pass
        args = {"create": (oid, size, meta), "put": (oid, bytes([step % 256]) * size, meta),
                "seal": (oid,), "get": (oid,), "delete": (oid,), "contains": (oid,),
                "abort": (oid,)}[op]
        expected = outcome(getattr(model, op), *args)
        got = outcome(getattr(real, op), *args)
        assert got == expected, f"step {step}: {op}{args[:1]} -> {got}, model {expected}"
        if op == "create" and got[0] == "ok":  # fresh memory is not zeroed: fill it
            fill = bytes([(step * 7) % 256]) * size
            model.objects[oid][1][:] = fill
            real.writers[oid][:] = fill
        if step % 250 == 0:
            assert real.list() == model.list()
        for h_oid, buf, (data, meta_h) in held:
            assert bytes(buf) == data and buf.metadata == meta_h  # pins keep data intact


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_model(store, client, seed):
    model, real = DictStore(), RealStore(client)
    model.writers = {}
    run_ops(seed, model, real)
    assert real.list() == model.list()
    real.writers.clear()
    for oid in list(model.objects):
        real.delete(oid)
    s = store.stats()
    assert s["num_objects"] == 0 and s["used"] == 0 and s["pinned_bytes"] == 0
