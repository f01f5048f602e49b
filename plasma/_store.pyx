# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin binding over the C store in csrc/.

Argument conversion, one status converter, zero-copy buffers that hold a
pin for as long as they (or any view of them) live. No policy here: what to
spill and when is plasma/spill.py's business.
"""

cimport cython
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_FillInfo,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

import os

from plasma.errors import (GetTimeoutError, ObjectExistsError, ObjectLostError,
                           ObjectNotFoundError, ObjectSealedError, ObjectStoreFullError,
                           PlasmaError, StoreClosedError, StoreNotFoundError,
                           TooManyClientsError)

OID_SIZE = 20
STATE_NAMES = {1: "created", 2: "sealed", 3: "spilled", 4: "restoring", 5: "deleted"}

# restore_begin() outcomes
RESTORE_OK = 0
RESTORE_NEED_SPACE = 1
RESTORE_RETRY = 2

cdef enum:
    FLAG_SECONDARY = 0x01

# Connections made before a fork() are not usable in the child: their pins
# and client slot belong to the parent.
cdef int _fork_gen = 0


def _after_fork_in_child():
    global _fork_gen
    _fork_gen += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


cdef bytes as_oid(object oid):
    """The 20-byte id as bytes, or ValueError."""
    if type(oid) is bytes and PyBytes_GET_SIZE(oid) == OID_SIZE:
        return <bytes>oid
    if hasattr(oid, "binary"):
        oid = oid.binary()
    if isinstance(oid, (bytes, bytearray, memoryview)):
        b = bytes(oid)
        if len(b) == OID_SIZE:
            return b
        raise ValueError(f"object id must be {OID_SIZE} bytes, got {len(b)}")
    raise ValueError(f"object id must be {OID_SIZE} bytes, got {type(oid).__name__}")


# The statuses Python code of this package reports through the converter
# (status_error): a restore with no room, a spilled copy that is corrupt.
STATUS_NO_ROOM = PR_ENOMEM
STATUS_CORRUPT = PR_ECORRUPT


cdef str full_message(Connection conn, uint64_t need, bytes oid, pr_status_t st, str head):
    cdef pr_stats_t s
    what = f"object {oid.hex()}" if oid is not None else "an object"
    if head is None:
        head = f"object store is full: cannot allocate {need} bytes for {what}"
    if conn is None or not conn.connected or pr_store_stats(&conn.c, &s) != PR_OK:
        return head
    if st == PR_ETOOBIG:
        return (f"{what} needs {need} bytes, more than the object store's capacity of "
                f"{s.capacity} bytes; create the store with a larger capacity")
    if st == PR_ETABLEFULL:
        head = f"object table is full ({s.max_objects} objects) when creating {what}"
    elif st == PR_ENOPINS:
        head = f"too many pinned buffers when pinning {what}"
    return (f"{head}; capacity {s.capacity} bytes, used {s.used} bytes, pinned "
            f"{s.pinned_bytes} bytes in {s.pinned_objects} objects, spillable "
            f"{s.spillable_bytes} bytes, largest free block {s.largest_free} bytes. "
            f"Drop references to buffers and arrays returned by get() that are no longer "
            f"needed, delete unneeded objects, give the store a spill_dir so sealed "
            f"objects can be spilled to disk, or create it with a larger capacity.")


cdef object status_error(pr_status_t st, bytes oid, Connection conn, uint64_t need,
                         object store, int64_t timeout_ns, str detail):
    """The one converter from a C status to a Python exception (returned,
    not raised).  Every store call reaches it through check_status; the
    rest of the package through error_for.

    oid: the object the call was about.  conn, need: for a full store, to
    say how full.  store: the store name a connect asked for.  timeout_ns:
    how long a get waited (>= 0), for a timeout.  detail: a message that
    says more than the status's own."""
    cdef int err = errno        # before anything else can change it
    msg = pr_strerror(st).decode()
    what = f": object {oid.hex()}" if oid is not None else ""
    if st in (PR_ENOMEM, PR_ETOOBIG, PR_ETABLEFULL, PR_ENOPINS):
        return ObjectStoreFullError(full_message(conn, need, oid, st, detail), need,
                                    st != PR_ETOOBIG)
    if detail is not None:
        msg, what = detail, ""
    if st == PR_ENOTFOUND:
        return ObjectNotFoundError(f"{msg}{what}")
    if st == PR_EEXIST:
        return ObjectExistsError(f"{msg}{what}")
    if st == PR_ESEALED:
        return ObjectSealedError(f"{msg}{what}")
    if st == PR_ETIMEDOUT or st == PR_ENOTSEALED:
        if st == PR_ETIMEDOUT and timeout_ns >= 0 and oid is not None and detail is None:
            return GetTimeoutError(
                f"object {oid.hex()} was not sealed within {timeout_ns / 1e9:g} s")
        return GetTimeoutError(f"{msg}{what}")
    if st == PR_ENOSTORE and store is not None and detail is None:
        return StoreNotFoundError(
            f"no object store named {store!r}: it was closed, or the process that "
            f"created it has exited")
    if st == PR_EBADSTORE and store is not None and detail is None:
        return StoreNotFoundError(f"{store!r} is not an object store of this version")
    if st == PR_ENOSTORE or st == PR_EBADSTORE:
        return StoreNotFoundError(msg)
    if st == PR_ECLIENTS:
        return TooManyClientsError(f"{msg}; close unused clients")
    if st == PR_ECORRUPT:
        return ObjectLostError(f"{msg}{what}")
    if st == PR_ESYS:
        return OSError(err, f"{msg}: {os.strerror(err)}")
    if st == PR_EINVAL:
        return ValueError(f"{msg}{what}")
    return PlasmaError(f"{msg}{what}")


cdef inline int check_status(pr_status_t st, bytes oid=None, Connection conn=None,
                             uint64_t need=0, object store=None,
                             int64_t timeout_ns=-1) except -1:
    """Raises the converter's exception for a failed status; on success it
    costs one comparison."""
    if st == PR_OK:
        return 0
    raise status_error(st, oid, conn, need, store, timeout_ns, None)


def error_for(int status, oid=None, Connection conn=None, uint64_t need=0, str detail=None):
    """The exception the converter makes for ``status`` (STATUS_NO_ROOM,
    STATUS_CORRUPT), for failures the package's Python code detects."""
    return status_error(<pr_status_t>status, as_oid(oid) if oid is not None else None,
                        conn, need, None, -1, detail)


@cython.no_gc
@cython.freelist(64)
cdef class PlasmaBuffer:
    """Zero-copy view of one object in shared memory.

    Holds a pin: the object is neither freed, evicted nor spilled while this
    buffer (or any memoryview / numpy array made from it) is alive. Read-only
    once sealed.
    """
    cdef Connection conn
    cdef bytes _oid
    cdef uint8_t *ptr
    cdef Py_ssize_t size
    cdef uint32_t meta_size
    cdef uint32_t idx
    cdef bint writable
    cdef bint pinned
    cdef Py_ssize_t exports
    cdef object __weakref__

    def __getbuffer__(self, Py_buffer *view, int flags):
        if not self.pinned:
            raise ValueError("operation on a released plasma buffer")
        PyBuffer_FillInfo(view, self, self.ptr, self.size, not self.writable, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1

    def __len__(self):
        return self.size

    @property
    def nbytes(self):
        return self.size

    @property
    def oid(self):
        return self._oid

    @property
    def metadata(self):
        if not self.pinned:
            raise ValueError("operation on a released plasma buffer")
        return PyBytes_FromStringAndSize(<char *>self.ptr + self.size, self.meta_size)

    @property
    def readonly(self):
        return not self.writable

    def release(self):
        """Drop the pin now. BufferError while views of this buffer exist."""
        if self.exports:
            raise BufferError(f"cannot release: {self.exports} views of this buffer are alive")
        self._unpin()

    def __repr__(self):
        state = "released" if not self.pinned else ("writable" if self.writable else "sealed")
        return f"<PlasmaBuffer {self._oid.hex()} {self.size} bytes {state}>"

    cdef void _unpin(self):
        if not self.pinned:
            return
        self.pinned = False
        cdef Connection conn = self.conn
        if conn.connected and conn.fork_gen == _fork_gen:
            pr_store_release(&conn.c, self.idx)
        conn.nbufs -= 1
        if conn.closed:
            conn._disconnect_if_unused()

    def __dealloc__(self):
        if self.conn is not None:
            self._unpin()


cdef PlasmaBuffer make_buffer(Connection conn, pr_object_info_t *info, bint writable,
                              bytes oid):
    cdef PlasmaBuffer b = PlasmaBuffer.__new__(PlasmaBuffer)
    b.conn = conn
    b._oid = oid
    b.ptr = info.data
    b.size = <Py_ssize_t>info.data_size
    b.meta_size = info.meta_size
    b.idx = info.idx
    b.writable = writable
    b.pinned = True
    conn.nbufs += 1
    return b


@cython.no_gc
cdef class RawView:
    """A view of store memory that the caller has pinned by other means
    (spill and restore). Keeps the mapping alive, holds no pin."""
    cdef Connection conn
    cdef uint8_t *ptr
    cdef Py_ssize_t size
    cdef bint writable

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, self.ptr, self.size, not self.writable, flags)

    def __len__(self):
        return self.size

    def __dealloc__(self):
        if self.conn is not None:
            self.conn.nbufs -= 1
            if self.conn.closed:
                self.conn._disconnect_if_unused()


cdef RawView make_raw(Connection conn, uint8_t *ptr, Py_ssize_t size, bint writable):
    cdef RawView v = RawView.__new__(RawView)
    v.conn = conn
    v.ptr = ptr
    v.size = size
    v.writable = writable
    conn.nbufs += 1
    return v


cdef class Connection:
    """One process's attachment to a store: the mapping plus a client slot."""
    cdef pr_conn_t c
    cdef bint connected   # mapping valid
    cdef bint closed      # closed by the user: no new operations
    cdef bint owner       # made the segment; closing destroys it
    cdef int fork_gen
    cdef Py_ssize_t nbufs  # live buffers keeping the mapping
    cdef readonly str name
    cdef dict _writers    # oid -> weakref of the memoryview create() handed out
    cdef object __weakref__

    def __cinit__(self):
        self.connected = False
        self.closed = False
        self.owner = False
        self.nbufs = 0
        self.fork_gen = _fork_gen
        self._writers = {}

    @staticmethod
    def make(uint64_t capacity, uint32_t max_objects=0, spill_dir=None,
             str spill_prefix="plasma"):
        cdef Connection self = Connection.__new__(Connection)
        cdef pr_store_params_t p
        cdef bytes bdir = os.fsencode(spill_dir) if spill_dir else b""
        cdef bytes bprefix = spill_prefix.encode()
        if capacity == 0:
            raise ValueError("capacity must be positive")
        p.capacity = capacity
        p.max_objects = max_objects
        p.spill_dir = bdir
        p.spill_prefix = bprefix
        check_status(pr_store_make(&self.c, &p))
        self.connected = True
        self.owner = True
        self.name = self.c.arena.name.decode()
        return self

    @staticmethod
    def connect(name):
        cdef Connection self = Connection.__new__(Connection)
        cdef bytes bname = os.fsencode(name)
        check_status(pr_store_connect(&self.c, bname), None, None, 0, name)
        self.connected = True
        self.name = str(name)
        return self

    cdef inline int _check(self) except -1:
        if self.closed or not self.connected:
            raise StoreClosedError("the object store client is closed")
        if self.fork_gen != _fork_gen:
            raise StoreClosedError(
                "this client was inherited over fork(); call plasma.connect() in the child")
        return 0

    cdef void _disconnect_if_unused(self):
        if not self.connected or self.nbufs > 0:
            return
        self.connected = False
        if self.fork_gen == _fork_gen:
            # unmapping an arena whose pages we touched takes a while (the
            # kernel frees them if we were the last user): not under the GIL
            with nogil:
                pr_store_disconnect(&self.c)
        else:
            pr_arena_close(&self.c.arena)

    @property
    def is_closed(self):
        return self.closed

    @property
    def pid(self):
        return self.c.pid

    @property
    def spill_dir(self):
        self._check()
        d = pr_store_spill_dir(&self.c)
        return os.fsdecode(<bytes>d) if d[0] else None

    def close(self):
        """Stop using this connection. The mapping goes once the last buffer
        is gone. The creator's close also removes the segment and spill files."""
        if self.closed:
            return
        self.closed = True
        if self.owner and self.connected and self.fork_gen == _fork_gen:
            pr_store_destroy(&self.c)
        self._writers.clear()
        self._disconnect_if_unused()

    def __dealloc__(self):
        if not self.connected:
            return
        if self.fork_gen != _fork_gen:
            pr_arena_close(&self.c.arena)
            return
        if self.owner and not self.closed:
            pr_store_destroy(&self.c)
        pr_store_disconnect(&self.c)

    # -- objects -------------------------------------------------------

    def create(self, oid, uint64_t size, metadata=b"", bint secondary=False):
        """A writable PlasmaBuffer for a new object (pinned until it dies)."""
        cdef bytes o = as_oid(oid)
        cdef const uint8_t[::1] meta = metadata if metadata else b""
        cdef pr_object_info_t info
        cdef uint64_t need = 0
        self._check()
        cdef pr_status_t st = pr_store_create(&self.c, <const uint8_t *>PyBytes_AS_STRING(o),
                                              size, <uint32_t>meta.shape[0], secondary,
                                              &info, &need)
        check_status(st, o, self, need)
        if meta.shape[0]:
            memcpy(info.data + size, &meta[0], meta.shape[0])
        return make_buffer(self, &info, True, o)

    def register_writer(self, bytes oid, object view_ref):
        """Remember the memoryview create() handed out, to release it at seal."""
        self._writers[oid] = view_ref

    def seal(self, oid):
        cdef bytes o = as_oid(oid)
        self._check()
        check_status(pr_store_seal(&self.c, <const uint8_t *>PyBytes_AS_STRING(o)), o)
        if self._writers:
            self._release_writer(o)

    cdef void _release_writer(self, bytes o):
        ref = self._writers.pop(o, None)
        if ref is None:
            return
        mv = ref()
        if mv is None:
            return
        try:
            (<PlasmaBuffer>mv.obj).writable = False
            mv.release()
        except (BufferError, ValueError):
            pass  # views made from it are still alive; they keep the pin

    def abort(self, oid):
        """Delete an object that was created but not sealed."""
        cdef bytes o = as_oid(oid)
        self._check()
        check_status(pr_store_abort(&self.c, <const uint8_t *>PyBytes_AS_STRING(o)), o)
        if self._writers:
            self._release_writer(o)

    def put(self, oid, data, metadata=b"", bint secondary=False):
        """create + copy (GIL released) + seal. `data`: a C-contiguous buffer."""
        cdef bytes o = as_oid(oid)
        cdef const uint8_t[::1] meta = metadata if metadata else b""
        cdef Py_buffer src
        cdef pr_object_info_t info
        cdef uint64_t need = 0
        cdef pr_status_t st
        self._check()
        PyObject_GetBuffer(data, &src, PyBUF_C_CONTIGUOUS)
        try:
            st = pr_store_create(&self.c, <const uint8_t *>PyBytes_AS_STRING(o),
                                 <uint64_t>src.len, <uint32_t>meta.shape[0], secondary,
                                 &info, &need)
            check_status(st, o, self, need)
            if src.len >= 65536:
                with nogil:
                    pr_copy_bulk(info.data, src.buf, <size_t>src.len)
            else:
                memcpy(info.data, src.buf, src.len)
            if meta.shape[0]:
                memcpy(info.data + src.len, &meta[0], meta.shape[0])
            check_status(pr_store_seal_release(&self.c, info.idx), o)
        finally:
            PyBuffer_Release(&src)

    def get(self, oid, int64_t timeout_ns=-1, bint wait_create=False):
        """A sealed object's PlasmaBuffer; None if it is spilled (restore it).

        timeout_ns < 0 waits forever, 0 answers at once. Unknown ids raise
        ObjectNotFoundError unless wait_create.
        """
        cdef bytes o = as_oid(oid)
        cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(o)
        cdef pr_object_info_t info
        cdef int64_t deadline = 0, left = -1
        cdef int wc = wait_create
        self._check()
        cdef pr_status_t st = pr_store_get(&self.c, p, 0, wc, &info)
        if (st == PR_ETIMEDOUT or (st == PR_ENOTFOUND and wc)) and timeout_ns != 0:
            if timeout_ns > 0:
                deadline = pr_lock_now_ns() + timeout_ns
            while True:
                if timeout_ns > 0:
                    left = deadline - pr_lock_now_ns()
                    if left < 0:
                        left = 0
                with nogil:
                    st = pr_store_get(&self.c, p, left, wc, &info)
                if st != PR_EINTR:
                    break
                PyErr_CheckSignals()
        if st == PR_OK:
            return make_buffer(self, &info, False, o)
        if st == PR_ESPILLED:
            return None
        if st == PR_ENOTFOUND and wc:
            st = PR_ETIMEDOUT       # waited for it to be created: a timeout
        check_status(st, o, None, 0, None, timeout_ns)

    def delete(self, oid):
        cdef bytes o = as_oid(oid)
        self._check()
        check_status(pr_store_delete(&self.c, <const uint8_t *>PyBytes_AS_STRING(o)), o)
        if self._writers:
            self._release_writer(o)

    def contains(self, oid):
        cdef bytes o = as_oid(oid)
        cdef int present = 0
        self._check()
        check_status(pr_store_contains(&self.c, <const uint8_t *>PyBytes_AS_STRING(o),
                                       &present), o)
        return bool(present)

    def list(self):
        """{oid: info dict} of every visible object."""
        cdef uint32_t n = 0, total = 0, cap = 1024
        cdef pr_object_info_t *infos = NULL
        self._check()
        while True:
            infos = <pr_object_info_t *>malloc(cap * sizeof(pr_object_info_t))
            if infos == NULL:
                raise MemoryError()
            try:
                check_status(pr_store_list(&self.c, infos, cap, &n, &total))
                if total <= cap:
                    out = {}
                    for i in range(n):
                        out[PyBytes_FromStringAndSize(<char *>infos[i].oid, 20)] = {
                            "state": STATE_NAMES.get(infos[i].state, "unknown"),
                            "data_size": infos[i].data_size,
                            "metadata_size": infos[i].meta_size,
                            "pins": infos[i].pins,
                            "secondary": bool(infos[i].flags & FLAG_SECONDARY),
                        }
                    return out
            finally:
                free(infos)
            cap = total + 1024

    def stats(self):
        cdef pr_stats_t s
        self._check()
        check_status(pr_store_stats(&self.c, &s))
        return {
            "capacity": s.capacity,
            "used": s.used,
            "num_objects": s.num_objects,
            "num_in_memory": s.num_in_memory,
            "pinned_bytes": s.pinned_bytes,
            "pinned_objects": s.pinned_objects,
            "evictable_bytes": s.evictable_bytes,
            "spillable_bytes": s.spillable_bytes,
            "largest_free": s.largest_free,
            "evicted_objects": s.evicted_objects,
            "evicted_bytes": s.evicted_bytes,
            "spilled_objects": s.spilled_objects,
            "spilled_bytes": s.spilled_bytes,
            "restored_objects": s.restored_objects,
            "restored_bytes": s.restored_bytes,
            "spilled_objects_now": s.spilled_objects_now,
            "spilled_bytes_now": s.spilled_bytes_now,
            "spill_files": s.spill_files,
            "spilling_bytes": s.spilling_bytes,
            "num_clients": s.num_clients,
            "max_objects": s.max_objects,
            "reaped_clients": s.reaped_clients,
            "recoveries": s.recoveries,
        }

    def reap(self):
        """Reclaim the pins and slots of dead client processes; returns how many."""
        cdef uint32_t n = 0
        self._check()
        check_status(pr_store_reap(&self.c, &n))
        return n

    # -- spill mechanism (policy: plasma/spill.py) ------------------------

    def spill_begin(self, uint64_t min_bytes, uint32_t max_objects):
        """Pick and pin least recently used unpinned primary objects.

        Returns (file_slot, path, [(idx, oid, RawView, data_size, meta_size)]).
        """
        cdef pr_object_info_t *infos
        cdef uint32_t n = 0, slot = 0
        cdef pr_status_t st
        self._check()
        if max_objects == 0:
            return None, None, []
        infos = <pr_object_info_t *>malloc(max_objects * sizeof(pr_object_info_t))
        if infos == NULL:
            raise MemoryError()
        try:
            st = pr_store_spill_begin(&self.c, min_bytes, max_objects, infos, &n, &slot)
            check_status(st)
            victims = []
            for i in range(n):
                victims.append((infos[i].idx,
                                PyBytes_FromStringAndSize(<char *>infos[i].oid, 20),
                                make_raw(self, infos[i].data,
                                         <Py_ssize_t>(infos[i].data_size + infos[i].meta_size),
                                         False),
                                infos[i].data_size, infos[i].meta_size))
        finally:
            free(infos)
        if n == 0:
            return None, None, []
        return slot, self.spill_path(slot), victims

    def spill_end(self, file_slot, idxs, offsets, checksums, bint ok):
        cdef uint32_t n = len(idxs), i
        cdef uint32_t slot = 0xFFFFFFFF if file_slot is None else file_slot
        cdef uint32_t *ci = <uint32_t *>malloc(max(n, 1) * sizeof(uint32_t))
        cdef uint64_t *co = <uint64_t *>malloc(max(n, 1) * sizeof(uint64_t))
        cdef uint64_t *cs = <uint64_t *>malloc(max(n, 1) * sizeof(uint64_t))
        try:
            if ci == NULL or co == NULL or cs == NULL:
                raise MemoryError()
            for i in range(n):
                ci[i] = idxs[i]
                co[i] = offsets[i] if ok else 0
                cs[i] = checksums[i] if ok else 0
            check_status(pr_store_spill_end(&self.c, slot, n, ci, co, cs, ok))
        finally:
            free(ci)
            free(co)
            free(cs)

    def wait_for_spills(self, int64_t timeout_ns):
        """If other clients are spilling, sleep until one finishes (or the
        timeout). Returns whether there was a spill to wait for."""
        cdef int waited = 0
        cdef pr_status_t st
        self._check()
        with nogil:
            st = pr_store_wait_spills(&self.c, timeout_ns, &waited)
        PyErr_CheckSignals()
        if st != PR_ETIMEDOUT and st != PR_EINTR:   # waits that end early are fine
            check_status(st)
        return bool(waited)

    def spill_path(self, uint32_t file_slot):
        cdef char buf[1024]
        check_status(pr_store_spill_path(&self.c, file_slot, buf, sizeof(buf)))
        return os.fsdecode(<bytes>buf)

    def restore_begin(self, oid):
        """(RESTORE_OK, (idx, path, offset, data_size, meta_size, checksum, RawView)),
        (RESTORE_NEED_SPACE, need) or (RESTORE_RETRY, None)."""
        cdef bytes o = as_oid(oid)
        cdef pr_object_info_t info
        cdef uint64_t need = 0
        self._check()
        cdef pr_status_t st = pr_store_restore_begin(
            &self.c, <const uint8_t *>PyBytes_AS_STRING(o), &info, &need)
        if st == PR_ENOMEM:
            return RESTORE_NEED_SPACE, need
        if st == PR_ESEALED or st == PR_ENOTSEALED:
            return RESTORE_RETRY, None
        check_status(st, o, self, need)
        view = make_raw(self, info.data, <Py_ssize_t>(info.data_size + info.meta_size), True)
        return RESTORE_OK, (info.idx, self.spill_path(info.spill_file), info.spill_off,
                            info.data_size, info.meta_size, info.checksum, view)

    def restore_end(self, oid, uint32_t idx, bint ok, uint64_t data_size, uint32_t meta_size,
                    RawView view):
        """Finish a restore: a pinned read-only PlasmaBuffer if ok, else None."""
        cdef bytes o = as_oid(oid)
        cdef pr_object_info_t info
        cdef pr_status_t st = pr_store_restore_end(&self.c, idx, ok)
        check_status(st, o)
        if not ok:
            return None
        info.data = view.ptr
        info.data_size = data_size
        info.meta_size = meta_size
        info.idx = idx
        return make_buffer(self, &info, False, o)

    def debug_hold_lock(self, double seconds, int notify_fd=-1):
        """Test hook: hold the store lock for `seconds`."""
        cdef int64_t ns = <int64_t>(seconds * 1e9)
        cdef pr_status_t st
        self._check()
        with nogil:
            st = pr_store_debug_hold_lock(&self.c, ns, notify_fd)
        check_status(st)


def copy_into(dst, src):
    """Copy the bytes of `src` into the writable buffer `dst` (same size) with
    the GIL released, at memory bandwidth."""
    cdef Py_buffer d, s
    PyObject_GetBuffer(dst, &d, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
    try:
        PyObject_GetBuffer(src, &s, PyBUF_C_CONTIGUOUS)
        try:
            if d.len != s.len:
                raise ValueError(f"size mismatch: destination {d.len} bytes, source {s.len}")
            with nogil:
                pr_copy_bulk(d.buf, s.buf, <size_t>s.len)
        finally:
            PyBuffer_Release(&s)
    finally:
        PyBuffer_Release(&d)


def checksum(data):
    """The 64-bit checksum spill files use, computed with the GIL released."""
    cdef Py_buffer view
    cdef uint64_t h
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        with nogil:
            h = pr_checksum_compute(view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return h


def now_ns():
    return pr_lock_now_ns()
