"""Error conversion at the two store boundaries: C status -> plasma exception
(plasma._store's one converter) and plasma exception -> pyray exception
(pyray._private.store_errors)."""
import os
import pickle

import numpy as np
import pytest

import plasma
import pyray.exceptions as rex
from plasma import _store, spill
from pyray._private.store_errors import to_pyray_error

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


# ---------------------------------------------------------------------------
# C status -> plasma exception
# ---------------------------------------------------------------------------
def test_connect_to_a_missing_store_names_it():
    name = "/proc/999999999/fd/3"
    with pytest.raises(plasma.StoreNotFoundError, match="no object store named") as ei:
        plasma.connect(name)
    assert repr(name) in str(ei.value)
    assert "it was closed, or the process that created it has exited" in str(ei.value)
    assert isinstance(ei.value, FileNotFoundError)


def test_connect_to_a_file_that_is_not_a_store(tmp_path):
    bogus = tmp_path / "not-a-store"
    bogus.write_bytes(b"\0" * 8192)
    with pytest.raises(plasma.StoreNotFoundError,
                       match="is not an object store of this version") as ei:
        plasma.connect(str(bogus))
    assert repr(str(bogus)) in str(ei.value)


def test_connect_by_path_object_names_it():
    """The name may be any path-like; the message still names it."""
    with pytest.raises(plasma.StoreNotFoundError, match="no object store named"):
        _store.Connection.connect(b"/proc/999999999/fd/3")


def test_get_timeout_says_how_long_it_waited(client, make_oid):
    oid = make_oid()
    client.create(oid, 8)
    with pytest.raises(plasma.GetTimeoutError,
                       match=f"object {oid.hex()} was not sealed within 0 s"):
        client.get(oid, timeout=0)
    with pytest.raises(plasma.GetTimeoutError, match=r"was not sealed within 0\.0\d* s"):
        client.get(oid, timeout=0.05)
    client.abort(oid)


def test_get_wait_create_timeout_is_a_timeout(client, make_oid):
    oid = make_oid()
    with pytest.raises(plasma.GetTimeoutError, match=f"object {oid.hex()} was not sealed"):
        client.get(oid, timeout=0, wait_create=True)
    with pytest.raises(plasma.ObjectNotFoundError, match=oid.hex()):
        client.get(oid, timeout=0)


def test_error_for_a_corrupt_copy(make_oid):
    oid = make_oid()
    err = _store.error_for(_store.STATUS_CORRUPT, oid, detail="spilled copy is bad")
    assert type(err) is plasma.ObjectLostError
    assert str(err) == "spilled copy is bad"
    err = _store.error_for(_store.STATUS_CORRUPT, oid)
    assert oid.hex() in str(err)


def test_error_for_no_room_describes_the_store(store, client, make_oid):
    oid = make_oid()
    err = _store.error_for(_store.STATUS_NO_ROOM, oid, client._conn, 5 * MiB,
                           f"cannot restore spilled object {oid.hex()}")
    assert type(err) is plasma.ObjectStoreFullError
    assert err.need == 5 * MiB and err.retryable
    text = str(err)
    assert text.startswith(f"cannot restore spilled object {oid.hex()}; capacity ")
    assert "pinned" in text and "largest free block" in text


def test_error_for_no_room_without_a_connection(make_oid):
    err = _store.error_for(_store.STATUS_NO_ROOM, make_oid(), None, 10)
    assert isinstance(err, plasma.ObjectStoreFullError)
    assert "cannot allocate 10 bytes" in str(err)


def _payload(i, size=MiB):
    return np.full(size, i % 251, np.uint8)


def test_restore_without_room_raises_the_converters_error(spill_store, spill_client,
                                                          make_oid):
    oids = [make_oid() for _ in range(16)]
    for i, oid in enumerate(oids):
        spill_client.put(oid, _payload(i))
    listing = spill_client.list()
    spilled = [o for o in oids if listing[o]["state"] == "spilled"]
    assert spilled
    # pin everything in memory, then fill what is left: nothing can be spilled
    held = [spill_client.get(o) for o in oids if listing[o]["state"] == "sealed"]
    for i in range(64):
        oid = make_oid()
        try:
            spill_client.put(oid, _payload(i, MiB // 4))
        except plasma.ObjectStoreFullError:
            break
        held.append(spill_client.get(oid))
    else:
        pytest.fail("the store never filled up")
    with pytest.raises(plasma.ObjectStoreFullError) as ei:
        spill_client.get(spilled[0])
    text = str(ei.value)
    assert f"cannot restore spilled object {spilled[0].hex()}: it needs" in text
    assert "capacity" in text and "pinned" in text
    assert ei.value.retryable and ei.value.need > 0
    # once buffers go, the restore succeeds
    held.clear()
    assert bytes(spill_client.get(spilled[0])) == _payload(oids.index(spilled[0])).tobytes()


def _corrupt_one(store, client, oids):
    victim = next(o for o in oids if client.list()[o]["state"] == "spilled")
    for name in os.listdir(store.spill_dir):
        path = os.path.join(store.spill_dir, name)
        data = bytearray(open(path, "rb").read())
        pos = data.find(victim)
        if pos >= 0:
            data[pos + spill.RECORD.size + 100] ^= 0xFF
            open(path, "wb").write(data)
            return victim
    pytest.fail("spilled record not found")


def test_corrupt_spill_reaches_pyray_as_object_lost(spill_store, spill_client, make_oid):
    oids = [make_oid() for _ in range(16)]
    for i, oid in enumerate(oids):
        spill_client.put(oid, _payload(i))
    victim = _corrupt_one(spill_store, spill_client, oids)
    with pytest.raises(plasma.ObjectLostError) as ei:
        spill_client.get(victim)
    assert f"spilled object {victim.hex()} could not be restored" in str(ei.value)
    assert "checksum mismatch" in str(ei.value)
    # plasma's ObjectLostError is not pyray's ...
    assert not isinstance(ei.value, rex.ObjectLostError)
    # ... until it crosses the boundary
    err = to_pyray_error(ei.value, victim.hex(), "owner-addr")
    assert isinstance(err, rex.ObjectLostError)
    assert err.object_ref_hex == victim.hex() and err.owner_address == "owner-addr"
    assert "checksum mismatch" in str(err)
    spill_client.delete(victim)


# ---------------------------------------------------------------------------
# plasma exception -> pyray exception
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("plasma_error, pyray_type", [
    (plasma.ObjectLostError("spilled copy is corrupt"), rex.ObjectLostError),
    (plasma.ObjectNotFoundError("object not found"), rex.ObjectLostError),
    (plasma.ObjectStoreFullError("object store is full", 100, True), rex.ObjectStoreFullError),
    (plasma.GetTimeoutError("was not sealed within 1 s"), rex.GetTimeoutError),
    (plasma.StoreNotFoundError("no object store named 'x'"), rex.RaySystemError),
    (plasma.StoreClosedError("the object store client is closed"), rex.RaySystemError),
    (plasma.TooManyClientsError("too many clients"), rex.RaySystemError),
    (plasma.ObjectExistsError("object exists"), rex.RaySystemError),
    (plasma.ObjectSealedError("already sealed"), rex.RaySystemError),
    (plasma.PlasmaError("something else"), rex.RaySystemError),
])
def test_each_plasma_error_has_its_pyray_type(plasma_error, pyray_type):
    err = to_pyray_error(plasma_error, "ab" * 20, "tcp://owner")
    assert type(err) is pyray_type
    assert isinstance(err, rex.RayError)
    assert not isinstance(err, plasma.PlasmaError)
    text = str(plasma_error.args[0])
    assert text in str(err)


def test_ray_style_except_clauses_catch_the_converted_errors():
    for raised, caught in [(plasma.ObjectLostError("x"), rex.ObjectLostError),
                           (plasma.ObjectStoreFullError("x"), rex.ObjectStoreFullError),
                           (plasma.ObjectStoreFullError("x"), MemoryError),
                           (plasma.GetTimeoutError("x"), rex.GetTimeoutError),
                           (plasma.GetTimeoutError("x"), TimeoutError)]:
        with pytest.raises(caught):
            try:
                raise raised
            except plasma.PlasmaError as e:
                raise to_pyray_error(e, "cd" * 20) from None


def test_lost_object_names_the_object():
    err = to_pyray_error(plasma.ObjectLostError("checksum mismatch"), "ef" * 20, "tcp://o")
    assert str(err) == f"Object {'ef' * 20} is lost: checksum mismatch"
    err = to_pyray_error(plasma.ObjectLostError("checksum mismatch"))
    assert str(err) == "An object is lost: checksum mismatch"


def test_subclasses_convert_like_their_base():
    class Custom(plasma.ObjectStoreFullError):
        pass
    assert type(to_pyray_error(Custom("full"))) is rex.ObjectStoreFullError


def test_other_errors_pass_through_unchanged():
    for e in (ValueError("bad id"), OSError(5, "io"), KeyboardInterrupt()):
        assert to_pyray_error(e, "00" * 20) is e


def test_converted_errors_pickle():
    """They travel to the owner as task errors."""
    for e in (plasma.ObjectLostError("gone"), plasma.ObjectStoreFullError("full"),
              plasma.GetTimeoutError("late"), plasma.StoreClosedError("closed")):
        err = to_pyray_error(e, "12" * 20, "tcp://o")
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
