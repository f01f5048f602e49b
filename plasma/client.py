"""The object store's public API.

``Store`` makes (and finally removes) the shared-memory arena; ``Client`` is
any process's handle on it. Every Client call works directly on shared
memory under the store's lock: there is no server to talk to.
"""
import glob
import os
import secrets
import time
import weakref

from plasma import _store
from plasma.errors import (GetTimeoutError, ObjectNotFoundError, ObjectStoreFullError,
                           StoreClosedError)
from plasma.spill import Spiller, SpillPolicy

__all__ = ["Store", "Client", "connect"]


def _deadline(timeout):
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("timeout must be None or >= 0 seconds")
    return time.monotonic() + timeout


def _left_ns(deadline):
    if deadline is None:
        return -1
    return max(0, int((deadline - time.monotonic()) * 1e9))


class Client:
    """A process's connection to a store (see :func:`connect`).

    Not shared across fork(): connect again in the child.
    """

    def __init__(self, conn, spill_policy=None):
        self._conn = conn
        self.name = conn.name
        self._spiller = Spiller(conn, spill_policy) if conn.spill_dir else None

    # -- writing -------------------------------------------------------

    def create(self, oid, size, metadata=b"", secondary=False):
        """Allocate a new object and return a writable memoryview of `size` bytes.

        Fill it (``view[:] = ...``, ``np.copyto(np.frombuffer(view, ...), ...)``),
        then :meth:`seal`. The view is released by seal; the object stays pinned
        until then. ``secondary=True`` marks a cached copy that may be evicted.
        """
        if size < 0:
            raise ValueError("size must be >= 0")
        try:
            buf = self._conn.create(oid, size, metadata, secondary)
        except ObjectStoreFullError as e:
            buf = self._with_room(e, self._conn.create, oid, size, metadata, secondary)
        view = memoryview(buf)
        self._conn.register_writer(buf.oid, weakref.ref(view))
        return view

    def seal(self, oid):
        """Make the object immutable and visible to get(); wakes waiting readers."""
        self._conn.seal(oid)

    def abort(self, oid):
        """Drop an object that was created but not sealed."""
        self._conn.abort(oid)

    def put(self, oid, data, metadata=b"", secondary=False):
        """create + copy + seal for any bytes-like object or numpy array.

        The copy runs with the GIL released.
        """
        try:
            self._conn.put(oid, data, metadata, secondary)
        except ObjectStoreFullError as e:
            self._with_room(e, self._conn.put, oid, data, metadata, secondary)
        except (BufferError, ValueError) as e:
            try:
                view = memoryview(data)
            except TypeError:
                raise e from None
            if view.c_contiguous:
                raise
            self.put(oid, view.tobytes(), metadata, secondary)

    def _with_room(self, err, op, *args):
        """Spill until `op` fits, or re-raise the ObjectStoreFullError."""
        while True:
            if not err.retryable or self._spiller is None:
                raise err
            if self._spiller.make_room(err.need) == 0:
                return op(*args)  # last try: raises a fresh error if still full
            try:
                return op(*args)
            except ObjectStoreFullError as e:
                err = e

    # -- reading -------------------------------------------------------

    def get(self, oid, timeout=None, *, wait_create=False):
        """A read-only zero-copy buffer of a sealed object.

        Waits for an unsealed object to be sealed: ``timeout=None`` forever,
        ``0`` not at all, else that many seconds, then GetTimeoutError. An
        unknown id raises ObjectNotFoundError at once, unless ``wait_create``
        (then it is waited for like an unsealed one). A spilled object is
        restored transparently. The object stays pinned while the buffer, or
        any memoryview/numpy array made from it, is alive.
        """
        if timeout is None:
            buf = self._conn.get(oid, -1, wait_create)
        else:
            buf = self._conn.get(oid, _left_ns(_deadline(timeout)), wait_create)
        if buf is None:
            buf = self._get_spilled(oid, _deadline(timeout), wait_create)
        return buf

    def _get_spilled(self, oid, deadline, wait_create):
        while True:
            buf = self._spiller.restore(oid) if self._spiller is not None else None
            if buf is not None:
                return buf
            buf = self._conn.get(oid, _left_ns(deadline), wait_create)
            if buf is not None:
                return buf

    def get_many(self, oids, timeout=None, *, wait_create=False):
        """Buffers for several objects, sharing one deadline.

        Returns a list aligned with `oids`; an entry is None when that object
        was unknown (and not ``wait_create``) or not sealed by the deadline.
        Never raises GetTimeoutError or ObjectNotFoundError.
        """
        deadline = _deadline(timeout)
        out = []
        for oid in oids:
            try:
                buf = self._conn.get(oid, _left_ns(deadline), wait_create)
                if buf is None:
                    buf = self._get_spilled(oid, deadline, wait_create)
            except (GetTimeoutError, ObjectNotFoundError):
                buf = None
            out.append(buf)
        return out

    def contains(self, oid):
        """True if the object is sealed (in memory or spilled)."""
        return self._conn.contains(oid)

    # -- bookkeeping ---------------------------------------------------

    def delete(self, oid):
        """Remove an object. If it is pinned, its memory is freed when the last
        pin goes; it is invisible to get/contains at once."""
        self._conn.delete(oid)

    def list(self):
        """``{oid: {"state", "data_size", "metadata_size", "pins", "secondary"}}``
        for every object (state: "created", "sealed", "spilled", "restoring")."""
        return self._conn.list()

    def stats(self):
        """Same as :meth:`Store.stats`."""
        return self._conn.stats()

    def reap(self):
        """Reclaim the pins and slots of dead client processes; returns how many."""
        return self._conn.reap()

    def close(self):
        """Release this client's slot. Buffers still alive keep the mapping
        (and their pins) until they go."""
        self._conn.close()

    @property
    def closed(self):
        return self._conn.is_closed

    def _debug_lock_and_sleep(self, seconds, notify_fd=-1):
        """Test hook: hold the store lock for `seconds` (writes a byte to
        notify_fd once held)."""
        self._conn.debug_hold_lock(seconds, notify_fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<plasma.Client {self.name!r}{' closed' if self.closed else ''}>"


def connect(name, spill_policy=None):
    """Connect to the store called `name` (``Store.name``) from any process on
    this machine. StoreNotFoundError if there is none."""
    return Client(_store.Connection.connect(name), spill_policy)


class Store:
    """The shared-memory arena. Its creator owns it: ``close()`` removes the
    segment and every spill file."""

    def __init__(self, conn, spill_dir, spill_prefix):
        self._conn = conn
        self.name = conn.name
        self.spill_dir = spill_dir
        self._spill_prefix = spill_prefix

    @classmethod
    def create(cls, capacity, spill_dir=None, *, max_objects=0):
        """Make a store with room for `capacity` bytes of objects.

        spill_dir: where sealed primary objects go under memory pressure
        (created if missing); None never spills. max_objects: size of the
        object table (default: from capacity, at least 65536).
        """
        if capacity <= 0:
            raise ValueError("capacity must be a positive number of bytes")
        prefix = f"plasma-{os.getpid()}-{secrets.token_hex(4)}"
        if spill_dir is not None:
            spill_dir = os.path.abspath(os.fspath(spill_dir))
            os.makedirs(spill_dir, exist_ok=True)
        conn = _store.Connection.make(int(capacity), int(max_objects), spill_dir, prefix)
        return cls(conn, spill_dir, prefix)

    def stats(self):
        """capacity, used, num_objects, pinned_bytes, evicted_objects,
        spilled_objects, spilled_bytes, restored_objects (cumulative counts),
        plus more detail (see docs/store.md)."""
        if self._conn.is_closed:
            raise StoreClosedError("the object store is closed")
        return self._conn.stats()

    def reap(self):
        """Reclaim the pins, unsealed objects and slots of dead clients;
        returns how many clients were reaped."""
        return self._conn.reap()

    def connect(self):
        """A new Client on this store (same as plasma.connect(store.name))."""
        return connect(self.name)

    def close(self):
        """Remove the shared-memory segment and all spill files. Connected
        clients keep their mappings until they close; nobody can connect."""
        self._conn.close()
        if self.spill_dir:
            for path in glob.glob(os.path.join(self.spill_dir, self._spill_prefix + "-*.spill")):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    @property
    def closed(self):
        return self._conn.is_closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<plasma.Store {self.name!r}{' closed' if self.closed else ''}>"
