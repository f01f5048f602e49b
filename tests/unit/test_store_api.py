"""Object store API in one process: round trips, buffers, waits, errors."""
import gc
import threading
import time

import numpy as np
import pytest

import plasma
from plasma import _store

pytestmark = pytest.mark.timeout(30)


def test_compiled_extension_is_imported():
    assert _store.__file__.endswith(".so"), _store.__file__
    assert isinstance(plasma.PlasmaBuffer, type)


def test_put_get_bytes_and_metadata(client, make_oid):
    oid = make_oid()
    client.put(oid, b"hello world", metadata=b"meta")
    buf = client.get(oid)
    assert bytes(buf) == b"hello world"
    assert buf.metadata == b"meta"
    assert len(buf) == 11 and buf.oid == oid
    assert client.contains(oid)


def test_numpy_get_is_zero_copy_and_read_only(client, make_oid):
    oid = make_oid()
    arr = np.arange(1 << 16, dtype=np.float64)
    client.put(oid, arr)
    buf = client.get(oid)
    out = np.frombuffer(buf, dtype=np.float64)
    np.testing.assert_array_equal(out, arr)
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out.flags.writeable = True
    with pytest.raises(TypeError):
        memoryview(buf)[0] = 1
    again = np.frombuffer(client.get(oid), dtype=np.float64)
    assert again.ctypes.data == out.ctypes.data  # same shared memory, no copy


def test_empty_object(client, make_oid):
    oid = make_oid()
    client.put(oid, b"")
    assert bytes(client.get(oid)) == b""
    view = client.create(make_oid(), 0, metadata=b"m")
    assert len(view) == 0


def test_create_write_seal(client, make_oid):
    oid = make_oid()
    view = client.create(oid, 1000, metadata=b"xyz")
    assert not view.readonly
    np.copyto(np.frombuffer(view, dtype=np.uint8), (np.arange(1000) % 251).astype(np.uint8))
    assert not client.contains(oid)
    client.seal(oid)
    assert client.contains(oid)
    with pytest.raises(ValueError):  # the writable view is released by seal
        view[0] = 1
    buf = client.get(oid)
    assert buf.metadata == b"xyz"
    np.testing.assert_array_equal(np.frombuffer(buf, np.uint8), np.arange(1000) % 251)


def test_multi_part_object_with_copy_into(client, make_oid):
    parts = [np.full(100_000 + i, i, np.uint8) for i in range(3)]
    oid = make_oid()
    view = client.create(oid, sum(p.nbytes for p in parts))
    pos = 0
    for p in parts:
        plasma.copy_into(view[pos:pos + p.nbytes], p)
        pos += p.nbytes
    client.seal(oid)
    assert bytes(client.get(oid)) == b"".join(p.tobytes() for p in parts)
    with pytest.raises(ValueError):
        plasma.copy_into(bytearray(3), b"four")


def test_view_slices_keep_working_until_seal(client, make_oid):
    oid = make_oid()
    view = client.create(oid, 64)
    part = view[8:16]
    part[:] = b"abcdefgh"
    client.seal(oid)
    assert bytes(client.get(oid))[8:16] == b"abcdefgh"


def test_put_noncontiguous_array(client, make_oid):
    oid = make_oid()
    arr = np.arange(100, dtype=np.int32).reshape(10, 10)[:, ::2]
    client.put(oid, arr)
    np.testing.assert_array_equal(
        np.frombuffer(client.get(oid), np.int32).reshape(10, 5), arr)


def test_object_stays_pinned_while_a_view_lives(store, client, make_oid):
    oid = make_oid()
    client.put(oid, np.ones(1 << 20, np.uint8))
    arr = np.frombuffer(client.get(oid), np.uint8)
    gc.collect()
    assert store.stats()["pinned_bytes"] == 1 << 20
    del arr
    gc.collect()
    assert store.stats()["pinned_bytes"] == 0


def test_explicit_release(store, client, make_oid):
    oid = make_oid()
    client.put(oid, b"x" * 100)
    buf = client.get(oid)
    view = memoryview(buf)
    with pytest.raises(BufferError):
        buf.release()
    view.release()
    buf.release()
    assert store.stats()["pinned_bytes"] == 0
    with pytest.raises(ValueError):
        memoryview(buf)


# -- bad input ------------------------------------------------------------

@pytest.mark.parametrize("bad", [b"", b"short", b"x" * 21, "x" * 20, 12345, None])
def test_bad_object_id(client, bad):
    for call in (lambda: client.get(bad), lambda: client.put(bad, b"x"),
                 lambda: client.create(bad, 1), lambda: client.seal(bad),
                 lambda: client.delete(bad), lambda: client.contains(bad)):
        with pytest.raises(ValueError):
            call()


def test_create_existing(client, make_oid):
    oid = make_oid()
    client.put(oid, b"a")
    with pytest.raises(plasma.ObjectExistsError) as ei:
        client.put(oid, b"b")
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, plasma.PlasmaError)
    with pytest.raises(plasma.ObjectExistsError):
        client.create(oid, 10)
    assert bytes(client.get(oid)) == b"a"


def test_seal_twice(client, make_oid):
    oid = make_oid()
    client.create(oid, 4)
    client.seal(oid)
    with pytest.raises(plasma.ObjectSealedError):
        client.seal(oid)


def test_unknown_id(client, make_oid):
    oid = make_oid()
    for call in (lambda: client.get(oid), lambda: client.get(oid, timeout=0),
                 lambda: client.delete(oid), lambda: client.seal(oid)):
        with pytest.raises(plasma.ObjectNotFoundError) as ei:
            call()
        assert isinstance(ei.value, KeyError)
        assert oid.hex() in str(ei.value)
    assert not client.contains(oid)


def test_object_larger_than_capacity(store, client, make_oid):
    with pytest.raises(plasma.ObjectStoreFullError) as ei:
        client.create(make_oid(), store.stats()["capacity"] + 1)
    assert isinstance(ei.value, MemoryError)
    assert "capacity" in str(ei.value)
    with pytest.raises(MemoryError):
        client.put(make_oid(), np.zeros(store.stats()["capacity"] + 64, np.uint8))


def test_negative_size_and_timeout(client, make_oid):
    with pytest.raises(ValueError):
        client.create(make_oid(), -1)
    oid = make_oid()
    client.put(oid, b"x")
    with pytest.raises(ValueError):
        client.get(oid, timeout=-1)


def test_put_non_buffer(client, make_oid):
    with pytest.raises(TypeError):
        client.put(make_oid(), 12345)


def test_connect_to_missing_store(tmp_path):
    with pytest.raises(plasma.StoreNotFoundError) as ei:
        plasma.connect("/proc/999999999/fd/3")
    assert isinstance(ei.value, FileNotFoundError)
    bogus = tmp_path / "not-a-store"
    bogus.write_bytes(b"\0" * 8192)
    with pytest.raises(plasma.StoreNotFoundError):
        plasma.connect(str(bogus))


def test_closed_client_and_store(store, make_oid):
    c = plasma.connect(store.name)
    c.close()
    c.close()  # idempotent
    with pytest.raises(plasma.StoreClosedError):
        c.put(make_oid(), b"x")
    name = store.name
    store.close()
    with pytest.raises(plasma.StoreNotFoundError):
        plasma.connect(name)
    with pytest.raises(plasma.StoreClosedError):
        store.stats()


def test_buffers_outlive_client_close(store, make_oid):
    c = plasma.connect(store.name)
    oid = make_oid()
    c.put(oid, b"keep me")
    buf = c.get(oid)
    c.close()
    assert bytes(buf) == b"keep me"  # the mapping stays while buffers live
    assert store.stats()["pinned_bytes"] == 7
    del buf
    assert store.stats()["pinned_bytes"] == 0


# -- waiting for a seal ------------------------------------------------------

def _seal_later(client, oid, started):
    started.wait(10)
    client.seal(oid)


def test_get_waits_for_seal(client, make_oid):
    oid = make_oid()
    view = client.create(oid, 5)
    view[:] = b"ready"
    del view
    started = threading.Event()
    t = threading.Thread(target=_seal_later, args=(client, oid, started))
    t.start()
    started.set()
    try:
        assert bytes(client.get(oid, timeout=10)) == b"ready"
    finally:
        t.join(10)


def test_get_waits_forever_by_default(client, make_oid):
    oid = make_oid()
    client.create(oid, 3)[:] = b"abc"
    started = threading.Event()
    t = threading.Thread(target=_seal_later, args=(client, oid, started))
    t.start()
    started.set()
    try:
        assert bytes(client.get(oid)) == b"abc"
    finally:
        t.join(10)


def test_get_timeouts(client, make_oid):
    oid = make_oid()
    client.create(oid, 8)
    t0 = time.monotonic()
    with pytest.raises(plasma.GetTimeoutError) as ei:
        client.get(oid, timeout=0)
    assert time.monotonic() - t0 < 0.05
    assert isinstance(ei.value, TimeoutError)
    t0 = time.monotonic()
    with pytest.raises(plasma.GetTimeoutError):
        client.get(oid, timeout=0.2)
    assert 0.19 <= time.monotonic() - t0 < 2


def test_get_wait_create(client, make_oid):
    oid = make_oid()
    with pytest.raises(plasma.GetTimeoutError):
        client.get(oid, timeout=0.05, wait_create=True)

    def producer():
        client.put(oid, b"late")
    t = threading.Timer(0.05, producer)
    t.start()
    try:
        assert bytes(client.get(oid, timeout=10, wait_create=True)) == b"late"
    finally:
        t.join(10)


def test_delete_wakes_waiter_with_not_found(client, make_oid):
    oid = make_oid()
    client.create(oid, 8)
    t = threading.Timer(0.05, client.delete, args=(oid,))
    t.start()
    try:
        with pytest.raises(plasma.ObjectNotFoundError):
            client.get(oid, timeout=10)
    finally:
        t.join(10)


def test_get_many(client, make_oid):
    a, b, c = make_oid(), make_oid(), make_oid()
    client.put(a, b"A")
    client.create(b, 1)  # never sealed
    out = client.get_many([a, b, c], timeout=0.05)
    assert bytes(out[0]) == b"A" and out[1] is None and out[2] is None
    assert client.get_many([], timeout=0) == []


# -- bookkeeping ---------------------------------------------------------------

def test_stats_fields(store, client, make_oid):
    s = store.stats()
    for key in ("capacity", "used", "num_objects", "pinned_bytes", "evicted_objects",
                "spilled_objects", "spilled_bytes", "restored_objects"):
        assert key in s
    assert s["capacity"] == 64 << 20 and s["num_objects"] == 0 and s["used"] == 0
    oid = make_oid()
    client.put(oid, b"x" * 1000)
    s = store.stats()
    assert s["num_objects"] == 1 and s["used"] >= 1000 and s["pinned_bytes"] == 0
    buf = client.get(oid)
    assert store.stats()["pinned_bytes"] == 1000
    del buf
    client.delete(oid)
    s = store.stats()
    assert s["num_objects"] == 0 and s["used"] == 0


def test_deferred_delete(store, client, make_oid):
    oid = make_oid()
    client.put(oid, b"payload")
    buf = client.get(oid)
    used = store.stats()["used"]
    client.delete(oid)
    assert not client.contains(oid)
    assert oid not in client.list()
    with pytest.raises(plasma.ObjectNotFoundError):
        client.get(oid, timeout=0)
    assert bytes(buf) == b"payload"  # still readable: memory not freed yet
    assert store.stats()["used"] == used
    client.put(oid, b"new one")  # the id is free again
    assert bytes(client.get(oid)) == b"new one"
    del buf
    assert store.stats()["num_objects"] == 1


def test_abort(client, make_oid):
    oid = make_oid()
    client.create(oid, 10)
    client.abort(oid)
    assert oid not in client.list()
    client.put(oid, b"x")
    with pytest.raises(plasma.ObjectSealedError):
        client.abort(oid)


def test_list(client, make_oid):
    a, b = make_oid(), make_oid()
    client.put(a, b"12345", metadata=b"m")
    client.create(b, 3, secondary=True)
    listing = client.list()
    assert listing[a] == {"state": "sealed", "data_size": 5, "metadata_size": 1,
                          "pins": 0, "secondary": False}
    assert listing[b]["state"] == "created" and listing[b]["secondary"]
    assert set(listing) == {a, b}


def test_many_clients_in_one_process(store, make_oid):
    clients = [plasma.connect(store.name) for _ in range(8)]
    oid = make_oid()
    clients[0].put(oid, b"shared")
    assert all(bytes(c.get(oid)) == b"shared" for c in clients)
    assert store.stats()["num_clients"] >= 8
    for c in clients:
        c.close()
    assert store.stats()["pinned_bytes"] == 0


def test_store_context_manager(shm_clean, make_oid):
    with plasma.Store.create(capacity=1 << 20) as s:
        with s.connect() as c:
            c.put(make_oid(), b"x")
    assert s.closed
