"""Spilling and restoring in one process."""
import os

import numpy as np
import pytest

import plasma
from plasma import spill

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


def payload(i, size=MiB):
    return np.full(size, i % 251, np.uint8) + np.arange(size, dtype=np.uint8)


def spill_files(store):
    return [f for f in os.listdir(store.spill_dir) if f.endswith(".spill")]


def test_spill_then_restore_every_byte(spill_store, spill_client, make_oid):
    oids = [make_oid() for _ in range(32)]  # 32 MiB into an 8 MiB store
    for i, oid in enumerate(oids):
        spill_client.put(oid, payload(i), metadata=b"m%d" % i)
    s = spill_store.stats()
    assert s["spilled_objects"] > 0 and s["spilled_bytes"] >= s["spilled_objects"] * MiB
    assert s["evicted_objects"] == 0
    assert spill_files(spill_store)
    assert all(spill_client.contains(o) for o in oids)
    for i, oid in enumerate(oids):
        buf = spill_client.get(oid)
        assert np.array_equal(np.frombuffer(buf, np.uint8), payload(i))
        assert buf.metadata == b"m%d" % i
        del buf
    s = spill_store.stats()
    assert s["restored_objects"] > 0
    assert s["num_objects"] == 32


def test_spill_files_go_when_their_objects_go(spill_store, spill_client, make_oid):
    oids = [make_oid() for _ in range(24)]
    for i, oid in enumerate(oids):
        spill_client.put(oid, payload(i))
    assert spill_files(spill_store)
    for oid in oids:
        spill_client.delete(oid)
    s = spill_store.stats()
    assert s["num_objects"] == 0 and s["spilled_objects_now"] == 0
    assert spill_files(spill_store) == []


def test_pinned_objects_are_not_spilled(spill_store, spill_client, make_oid):
    keep = make_oid()
    spill_client.put(keep, payload(1, 2 * MiB))
    held = spill_client.get(keep)
    for i in range(20):
        spill_client.put(make_oid(), payload(i))
    info = spill_client.list()[keep]
    assert info["state"] == "sealed" and info["pins"] == 1
    assert np.array_equal(np.frombuffer(held, np.uint8), payload(1, 2 * MiB))


def test_unsealed_objects_are_not_spilled(spill_store, spill_client, make_oid):
    pending = make_oid()
    view = spill_client.create(pending, 2 * MiB)
    del view  # no pin left, but not sealed: must stay in memory
    for i in range(20):
        spill_client.put(make_oid(), payload(i))
    assert spill_client.list()[pending]["state"] == "created"


def test_full_when_everything_is_pinned(spill_store, spill_client, make_oid):
    held = []
    for i in range(7):
        oid = make_oid()
        spill_client.put(oid, payload(i))
        held.append(spill_client.get(oid))
    with pytest.raises(plasma.ObjectStoreFullError) as ei:
        spill_client.put(make_oid(), payload(9, 2 * MiB))
    assert "pinned" in str(ei.value)


def test_corrupt_spill_file_is_detected(spill_store, spill_client, make_oid):
    oids = [make_oid() for _ in range(16)]
    for i, oid in enumerate(oids):
        spill_client.put(oid, payload(i))
    victim = next(o for o in oids if spill_client.list()[o]["state"] == "spilled")
    for name in spill_files(spill_store):
        path = os.path.join(spill_store.spill_dir, name)
        data = bytearray(open(path, "rb").read())
        pos = data.find(victim)
        if pos >= 0:
            data[pos + spill.RECORD.size + 1000] ^= 0xFF
            open(path, "wb").write(data)
            break
    else:
        pytest.fail("spilled record not found")
    with pytest.raises(plasma.ObjectLostError) as ei:
        spill_client.get(victim)
    assert "checksum" in str(ei.value)
    assert spill_client.list()[victim]["state"] == "spilled"  # still there, still bad
    spill_client.delete(victim)


def test_spill_policy_batches(tmp_path, shm_clean, make_oid):
    policy = plasma.SpillPolicy(min_batch_bytes=4 * MiB, max_batch_objects=4, fsync=False)
    with plasma.Store.create(capacity=8 * MiB, spill_dir=tmp_path) as s:
        c = plasma.connect(s.name, spill_policy=policy)
        for i in range(16):
            c.put(make_oid(), payload(i))
        st = s.stats()
        assert st["spilled_objects"] >= 8
        assert st["spill_files"] <= st["spilled_objects"] / 2
        c.close()
    assert os.listdir(tmp_path) == []


def test_store_without_spill_dir_never_spills(store, client, make_oid):
    for i in range(60):
        client.put(make_oid(), payload(i))
    with pytest.raises(plasma.ObjectStoreFullError) as ei:
        for i in range(10):
            client.put(make_oid(), payload(i))
    assert "spill_dir" in str(ei.value)
    assert store.stats()["spilled_objects"] == 0
