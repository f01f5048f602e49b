"""The object store shared by real processes: concurrency, crashes, spilling,
cleanup. Children are plain interpreters running WORKER below; every wait on
them is a handshake with a deadline."""
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import plasma

MiB = 1 << 20

WORKER = r'''
import hashlib, json, os, random, sys
import numpy as np
import plasma

role, cfg = sys.argv[1], json.loads(sys.argv[2])

def say(*words):
    print(*words, flush=True)

def content(oid, size):
    d = hashlib.blake2b(oid, digest_size=64).digest()
    return (d * (size // 64 + 1))[:size]

def oid_of(w, k):
    return b"W" + bytes([w]) + k.to_bytes(4, "little") + b"\0" * 14

if role == "hammer":
    c = plasma.connect(cfg["name"])
    rng = random.Random(cfg["seed"])
    w, n, keep, nworkers = cfg["w"], cfg["n"], cfg["keep"], cfg["nworkers"]
    say("ready")
    sys.stdin.readline()
    mine, verified = [], 0
    for k in range(n):
        oid = oid_of(w, k)
        size = rng.choice([0, 1, 100, 4096, 65536, 300000])
        data = content(oid, size)
        if k % 2:
            c.put(oid, data, metadata=oid[:6])
        else:
            view = c.create(oid, size, metadata=oid[:6])
            view[:] = data
            c.seal(oid)
        mine.append(oid)
        other = oid_of(rng.randrange(nworkers), rng.randrange(k + 1))
        try:
            buf = c.get(other, timeout=0)
        except (plasma.ObjectNotFoundError, plasma.GetTimeoutError):
            buf = None
        if buf is not None:
            assert bytes(buf) == content(other, len(buf)) and buf.metadata == other[:6], other
            verified += 1
            del buf
        if len(mine) > keep:
            c.delete(mine.pop(rng.randrange(len(mine) - keep // 2)))
    c.close()
    say("done", json.dumps({"verified": verified, "kept": [o.hex() for o in mine]}))

elif role == "pinner":
    c = plasma.connect(cfg["name"])
    held = []
    for k in range(cfg["n"]):
        oid = oid_of(200, k)
        c.put(oid, content(oid, cfg["size"]), secondary=cfg["secondary"])
        held.append(c.get(oid))
    view = c.create(oid_of(201, 0), cfg["unsealed"])
    say("ready", c.stats()["pinned_bytes"])
    sys.stdin.readline()

elif role == "locker":
    c = plasma.connect(cfg["name"])
    say("connected")
    c._debug_lock_and_sleep(120, cfg["fd"])

elif role == "blocked_put":
    c = plasma.connect(cfg["name"])
    say("connected")
    sys.stdin.readline()
    oid = oid_of(202, 0)
    c.put(oid, content(oid, 1000))
    say("done")

elif role == "spill_writer":
    c = plasma.connect(cfg["name"])
    say("ready")
    sys.stdin.readline()
    for k in range(cfg["n"]):
        oid = oid_of(cfg["w"], k)
        c.put(oid, content(oid, cfg["size"]))
    say("done")

elif role == "spill_reader":
    c = plasma.connect(cfg["name"])
    n = 0
    for w in cfg["writers"]:
        for k in range(cfg["n"]):
            oid = oid_of(w, k)
            buf = c.get(oid, timeout=30)
            assert bytes(buf) == content(oid, cfg["size"]), oid
            del buf
            n += 1
    say("done", n)

elif role == "creator":
    store = plasma.Store.create(capacity=cfg["capacity"], spill_dir=cfg.get("spill_dir"))
    say("name", store.name)
    sys.stdin.readline()
    store.close()
    say("closed")

elif role == "sealer":
    c = plasma.connect(cfg["name"])
    say("ready")
    sys.stdin.readline()
    oid = bytes.fromhex(cfg["oid"])
    view = c.create(oid, 6)
    view[:] = b"sealed"
    c.seal(oid)
    say("done")
'''


def content(oid, size):
    d = hashlib.blake2b(oid, digest_size=64).digest()
    return (d * (size // 64 + 1))[:size]


def oid_of(w, k):
    return b"W" + bytes([w]) + k.to_bytes(4, "little") + b"\0" * 14


class Proc:
    """A child interpreter running one WORKER role, driven line by line."""

    def __init__(self, role, cfg, pass_fds=()):
        self.errfile = tempfile.TemporaryFile()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(plasma.__file__))
        self.p = subprocess.Popen(
            [sys.executable, "-c", WORKER, role, json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errfile,
            pass_fds=pass_fds, env=env, cwd=tempfile.gettempdir())

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace")

    def expect(self, word, timeout=60):
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline().decode() if ready else ""
        if not line.startswith(word):
            self.kill()
            pytest.fail(f"expected {word!r} from child, got {line!r}; stderr:\n{self.stderr()}")
        return line[len(word):].strip()

    def send(self, line="go"):
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def kill(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def finish(self, timeout=60):
        rc = self.p.wait(timeout)
        assert rc == 0, self.stderr()


@pytest.fixture
def spawn():
    procs = []

    def make(role, cfg, pass_fds=()):
        procs.append(Proc(role, cfg, pass_fds))
        return procs[-1]
    yield make
    for p in procs:
        p.kill()
        p.errfile.close()


@pytest.mark.timeout(120)
def test_concurrent_processes_hammer_one_store(spawn, shm_clean):
    nworkers, n, keep = 4, 1500, 100
    with plasma.Store.create(capacity=256 * MiB) as store:
        workers = [spawn("hammer", {"name": store.name, "seed": w, "w": w, "n": n,
                                    "keep": keep, "nworkers": nworkers})
                   for w in range(nworkers)]
        for p in workers:
            p.expect("ready")
        for p in workers:
            p.send()
        results = [json.loads(p.expect("done", timeout=100)) for p in workers]
        for p in workers:
            p.finish()
        assert sum(r["verified"] for r in results) > 0
        kept = [bytes.fromhex(h) for r in results for h in r["kept"]]
        stats = store.stats()
        assert stats["num_objects"] == len(kept) == nworkers * keep
        assert stats["pinned_bytes"] == 0
        with store.connect() as c:
            assert set(c.list()) == set(kept)
            for oid in kept:
                buf = c.get(oid, timeout=0)
                assert bytes(buf) == content(oid, len(buf)) and buf.metadata == oid[:6]
                del buf
                c.delete(oid)
        assert store.stats()["used"] == 0


@pytest.mark.timeout(60)
def test_sigkill_client_holding_pins(spawn, shm_clean):
    with plasma.Store.create(capacity=64 * MiB) as store:
        child = spawn("pinner", {"name": store.name, "n": 10, "size": MiB,
                                 "secondary": False, "unsealed": 8 * MiB})
        pinned = int(child.expect("ready"))
        assert pinned >= 10 * MiB
        assert store.stats()["pinned_bytes"] == pinned
        child.kill()
        assert store.reap() == 1
        stats = store.stats()
        assert stats["pinned_bytes"] == 0 and stats["reaped_clients"] == 1
        with store.connect() as c:
            listing = c.list()
            assert oid_of(201, 0) not in listing  # its unsealed object is gone
            for k in range(10):  # its sealed objects live on
                assert bytes(c.get(oid_of(200, k))) == content(oid_of(200, k), MiB)
                c.delete(oid_of(200, k))
        assert store.stats()["used"] == 0
        assert store.reap() == 0


@pytest.mark.timeout(60)
def test_dead_clients_are_reaped_when_memory_runs_out(spawn, shm_clean):
    with plasma.Store.create(capacity=32 * MiB) as store:
        child = spawn("pinner", {"name": store.name, "n": 12, "size": MiB,
                                 "secondary": True, "unsealed": 16 * MiB})
        child.expect("ready")
        child.kill()
        with store.connect() as c:
            c.put(b"b" * 20, np.ones(24 * MiB, np.uint8))  # fits only after the reap
            assert store.stats()["reaped_clients"] == 1
            assert np.frombuffer(c.get(b"b" * 20), np.uint8).sum() == 24 * MiB


@pytest.mark.timeout(60)
def test_sigkill_client_holding_the_lock(spawn, shm_clean):
    with plasma.Store.create(capacity=64 * MiB) as store, store.connect() as c:
        c.put(b"k" * 20, b"before the crash")
        held = c.get(b"k" * 20)
        rfd, wfd = os.pipe()
        try:
            waiter = spawn("blocked_put", {"name": store.name})
            waiter.expect("connected")  # connecting takes the lock: do it first
            locker = spawn("locker", {"name": store.name, "fd": wfd}, pass_fds=(wfd,))
            locker.expect("connected")
            ready, _, _ = select.select([rfd], [], [], 30)
            assert ready and os.read(rfd, 1) == b"L", locker.stderr()
        finally:
            os.close(rfd)
            os.close(wfd)
        waiter.send()  # it now blocks on the lock the locker holds
        locker.kill()
        waiter.expect("done", timeout=30)
        waiter.finish()
        assert bytes(c.get(oid_of(202, 0))) == content(oid_of(202, 0), 1000)
        c.put(b"a" * 20, b"after the crash")
        assert bytes(c.get(b"a" * 20)) == b"after the crash"
        assert bytes(held) == b"before the crash"
        store.reap()  # the locker may still have been exiting at recovery time
        stats = store.stats()
        assert stats["recoveries"] == 1 and stats["reaped_clients"] == 1
        assert stats["num_objects"] == 3 and stats["num_clients"] == 2


@pytest.mark.timeout(120)
def test_spill_and_restore_four_times_capacity(spawn, tmp_path, shm_clean):
    spill_dir = tmp_path / "spill"
    capacity, size, per_writer = 16 * MiB, MiB, 32  # 2 x 32 MiB = 4 x capacity
    with plasma.Store.create(capacity=capacity, spill_dir=spill_dir) as store:
        writers = [spawn("spill_writer", {"name": store.name, "w": w, "n": per_writer,
                                          "size": size}) for w in (1, 2)]
        for p in writers:
            p.expect("ready")
        for p in writers:
            p.send()
        for p in writers:
            p.expect("done")
            p.finish()
        stats = store.stats()
        assert stats["num_objects"] == 2 * per_writer
        assert stats["spilled_objects"] >= per_writer
        assert list(spill_dir.iterdir())
        reader = spawn("spill_reader", {"name": store.name, "writers": [1, 2],
                                        "n": per_writer, "size": size})
        assert int(reader.expect("done", timeout=100)) == 2 * per_writer
        reader.finish()
        with store.connect() as c:  # and once more from here, every byte
            for w in (1, 2):
                for k in range(per_writer):
                    oid = oid_of(w, k)
                    assert bytes(c.get(oid)) == content(oid, size)
        stats = store.stats()
        assert stats["restored_objects"] >= per_writer
        assert stats["pinned_bytes"] == 0
    assert list(spill_dir.iterdir()) == []


@pytest.mark.timeout(60)
def test_get_wakes_when_another_process_seals(spawn, shm_clean):
    oid = os.urandom(20)
    with plasma.Store.create(capacity=8 * MiB) as store, store.connect() as c:
        sealer = spawn("sealer", {"name": store.name, "oid": oid.hex()})
        sealer.expect("ready")
        sealer.send()
        assert bytes(c.get(oid, timeout=30, wait_create=True)) == b"sealed"
        sealer.expect("done")
        sealer.finish()


@pytest.mark.timeout(60)
def test_no_residue_after_close_or_creator_crash(spawn, tmp_path, shm_clean):
    creator = spawn("creator", {"capacity": 16 * MiB, "spill_dir": str(tmp_path)})
    name = creator.expect("name")
    c = plasma.connect(name)
    c.put(b"r" * 20, b"outlives its creator's close")
    buf = c.get(b"r" * 20)
    creator.send()
    creator.expect("closed")
    creator.finish()
    with pytest.raises(plasma.StoreNotFoundError):
        plasma.connect(name)
    assert bytes(buf) == b"outlives its creator's close"
    del buf
    c.close()

    crasher = spawn("creator", {"capacity": 16 * MiB})
    name = crasher.expect("name")
    with plasma.connect(name) as c2:
        c2.put(b"s" * 20, b"x")
    crasher.kill()
    with pytest.raises(plasma.StoreNotFoundError):
        plasma.connect(name)
    assert os.listdir(tmp_path) == []
