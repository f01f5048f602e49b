"""Allocator, table and LRU behaviour seen through the store API."""
import numpy as np
import pytest

import plasma
from plasma import _store

pytestmark = pytest.mark.timeout(30)

MiB = 1 << 20


def addr(buf):
    return np.frombuffer(buf, np.uint8).ctypes.data


@pytest.mark.parametrize("size", [1, 7, 63, 64, 65, 1000, 4095, 4097, 100_003, 3 * MiB + 5])
def test_buffers_are_64_byte_aligned(client, make_oid, size):
    oids = [make_oid() for _ in range(3)]
    for oid in oids:
        client.put(oid, b"\1" * size, metadata=b"m" * (size % 13))
    for oid in oids:
        assert addr(client.get(oid)) % 64 == 0


def test_freed_block_is_reused(client, make_oid):
    data = np.ones(8 * MiB, np.uint8)
    oid = make_oid()
    client.put(oid, data)
    first = addr(client.get(oid))
    for _ in range(5):
        client.delete(oid)
        oid = make_oid()
        client.put(oid, data)
        assert addr(client.get(oid)) == first


def test_most_recently_freed_block_first(client, make_oid):
    a, b, c, keep = make_oid(), make_oid(), make_oid(), make_oid()
    for oid in (a, keep, b, c):
        client.put(oid, b"x" * 5000)
    where_b = addr(client.get(b))
    client.delete(a)
    client.delete(b)  # b is freed last: a same-size object goes there
    new = make_oid()
    client.put(new, b"y" * 5000)
    assert addr(client.get(new)) == where_b


def test_coalescing_gives_back_one_big_block(store, client, make_oid):
    oids = [make_oid() for _ in range(64)]
    for oid in oids:
        client.put(oid, b"z" * (MiB - 64))
    for oid in oids[::2] + oids[1::2]:
        client.delete(oid)
    assert store.stats()["used"] == 0
    big = make_oid()
    client.put(big, np.zeros(store.stats()["capacity"], np.uint8))  # fills the arena exactly
    assert len(client.get(big)) == store.stats()["capacity"]


def test_fill_to_capacity_then_full_error_message(store, client, make_oid):
    cap = store.stats()["capacity"]
    n = 0
    with pytest.raises(plasma.ObjectStoreFullError) as ei:
        while True:
            client.put(make_oid(), b"f" * (MiB - 64))
            n += 1
    assert 60 <= n <= 64
    msg = str(ei.value)
    for word in ("capacity", "used", "pinned", str(cap)):
        assert word in msg, msg


def test_primary_objects_are_never_evicted(store, client, make_oid):
    oids = [make_oid() for _ in range(8)]
    for oid in oids:
        client.put(oid, np.full(7 * MiB, 1, np.uint8))
    with pytest.raises(plasma.ObjectStoreFullError):
        client.put(make_oid(), np.zeros(16 * MiB, np.uint8))
    assert all(client.contains(o) for o in oids)
    assert store.stats()["evicted_objects"] == 0


def test_secondary_evicted_lru_first(store, client, make_oid):
    secs = [make_oid() for _ in range(6)]
    for oid in secs:
        client.put(oid, np.full(10 * MiB, 2, np.uint8), secondary=True)
    # touch the oldest so that it becomes the most recently used
    del_buf = client.get(secs[0])
    del del_buf
    client.put(make_oid(), np.zeros(10 * MiB, np.uint8))  # needs one victim
    present = [client.contains(o) for o in secs]
    assert present == [True, False, True, True, True, True]
    assert store.stats()["evicted_objects"] == 1
    client.put(make_oid(), np.zeros(20 * MiB, np.uint8))  # two more, oldest first
    assert [client.contains(o) for o in secs] == [True, False, False, False, True, True]


def test_pinned_and_unsealed_secondaries_are_not_evicted(store, client, make_oid):
    pinned, unsealed, free = make_oid(), make_oid(), make_oid()
    client.put(pinned, np.full(20 * MiB, 3, np.uint8), secondary=True)
    keep = client.get(pinned)
    client.create(unsealed, 20 * MiB, secondary=True)
    client.put(free, np.full(20 * MiB, 4, np.uint8), secondary=True)
    client.put(make_oid(), np.zeros(20 * MiB, np.uint8))
    assert client.contains(pinned) and not client.contains(free)
    assert unsealed in client.list()
    with pytest.raises(plasma.ObjectStoreFullError):
        client.put(make_oid(), np.zeros(20 * MiB, np.uint8))
    assert np.frombuffer(keep, np.uint8)[0] == 3


def test_object_table_full(shm_clean, make_oid):
    with plasma.Store.create(capacity=MiB, max_objects=16) as s, s.connect() as c:
        for _ in range(16):
            c.put(make_oid(), b"t")
        with pytest.raises(plasma.ObjectStoreFullError, match="object table"):
            c.put(make_oid(), b"t")
        # secondaries make room in the table too
        for oid in list(c.list())[:4]:
            c.delete(oid)
        for _ in range(4):
            c.put(make_oid(), b"s", secondary=True)
        c.put(make_oid(), b"p")
        assert s.stats()["evicted_objects"] == 1


def test_many_small_objects(store, client, make_oid):
    oids = [make_oid() for _ in range(20000)]
    for i, oid in enumerate(oids):
        client.put(oid, i.to_bytes(4, "little"))
    assert store.stats()["num_objects"] == 20000
    for i, oid in enumerate(oids):
        assert bytes(client.get(oid)) == i.to_bytes(4, "little")
    for oid in oids[::2]:
        client.delete(oid)
    assert len(client.list()) == 10000
    for i, oid in enumerate(oids):
        assert client.contains(oid) == bool(i % 2)


def test_copy_into_handles_every_alignment():
    rng = np.random.default_rng(1)
    src = rng.integers(0, 255, (5 << 20) + 8192, dtype=np.uint8)
    for n in (65536, 100_003, (5 << 20) + 17):
        for so in (0, 1, 48, 4000):
            for do in (0, 3, 64, 2047, 2048, 4095):
                dst = np.zeros(n + 8192, np.uint8)
                _store.copy_into(dst[do:do + n], src[so:so + n])
                assert (dst[do:do + n] == src[so:so + n]).all()
                assert not dst[:do].any() and not dst[do + n:].any()


def test_checksum_detects_changes():
    data = bytearray(np.random.default_rng(2).integers(0, 255, 10000, dtype=np.uint8))
    h = _store.checksum(data)
    assert h == _store.checksum(bytes(data))
    for pos in (0, 31, 32, 9999):
        data[pos] ^= 1
        assert _store.checksum(data) != h
        data[pos] ^= 1
    assert _store.checksum(b"") != _store.checksum(b"\0")
