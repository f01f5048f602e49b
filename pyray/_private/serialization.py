"""Values <-> bytes.

pickle protocol 5 with out-of-band buffers: a numpy array or Arrow buffer is
not copied into the pickle stream but kept as a separate buffer, which is
either sent as a raw zmq frame (small objects) or copied once into the
shared-memory store at a 64-byte aligned offset (large objects); reading it
back gives a read-only view on shared memory, no copy.

Functions and classes, and anything plain pickle refuses, go through
cloudpickle.  ObjectRefs met while pickling are collected so that the caller
can keep them alive as long as the containing object lives.
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
import threading


from pyray._private.protocol import ERROR, VALUE

_INBAND_MAX = 4096       # buffers smaller than this stay inside the pickle stream
_ALIGN = 64
_COPY_WITH_NUMPY = 1 << 16

_tls = threading.local()
_MAIN = b"__main__"       # in a pickle stream that names something of the script


class Serialized:
    __slots__ = ("data", "buffers", "refs", "nbytes")

    def __init__(self, data, buffers, refs):
        self.data = data
        self.buffers = buffers
        self.refs = refs
        self.nbytes = len(data) + sum(b.nbytes for b in buffers) if buffers else len(data)


def _buffer_cb(buf):
    raw = buf.raw()
    if raw.nbytes < _INBAND_MAX:
        return True          # in-band
    _tls.buffers.append(raw)
    return False


_arrow_reducers_installed = False


def _install_arrow_reducers():
    """An Arrow table or record batch that is a slice of a bigger one
    pickles with the whole of its parent's buffers (pyarrow's own reducer
    keeps the offsets): a 100-row slice of an 8 MB column would store 8 MB.
    Such a slice is compacted first (written as Arrow IPC, which keeps only
    the sliced rows, and read back without a copy); a table that owns its
    buffers pickles as before."""
    global _arrow_reducers_installed
    _arrow_reducers_installed = True
    import copyreg

    import pyarrow as pa

    def compact(t):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write(t)
        out = pa.ipc.open_stream(sink.getvalue())
        return out.read_all() if isinstance(t, pa.Table) else out.read_next_batch()

    def reducer(t):
        if t.get_total_buffer_size() > 2 * t.nbytes + _INBAND_MAX:
            t = compact(t)
        return t.__reduce__()

    for cls in (pa.Table, pa.RecordBatch):
        if cls not in copyreg.dispatch_table:      # a user's own registration wins
            copyreg.pickle(cls, reducer)


def serialize(value) -> Serialized:
    if not _arrow_reducers_installed and "pyarrow" in sys.modules:
        _install_arrow_reducers()
    prev_refs = getattr(_tls, "refs", None)
    prev_bufs = getattr(_tls, "buffers", None)
    _tls.refs = refs = []
    _tls.buffers = bufs = []
    try:
        try:
            data = pickle.dumps(value, protocol=5, buffer_callback=_buffer_cb)
            if _MAIN in data:
                # a function or class of the user's script, which plain pickle
                # names (__main__.f) and a worker cannot import: by value
                raise pickle.PicklingError("refers to __main__")
        except (pickle.PicklingError, AttributeError, TypeError):
            del refs[:], bufs[:]
            import cloudpickle
            data = cloudpickle.dumps(value, protocol=5, buffer_callback=_buffer_cb)
    finally:
        _tls.refs = prev_refs
        _tls.buffers = prev_bufs
    return Serialized(data, bufs, refs)


def note_ref(ref):
    """Called by ObjectRef.__reduce__: records a ref nested in the value being
    serialized (None outside a serialize() call)."""
    refs = getattr(_tls, "refs", None)
    if refs is not None:
        refs.append(ref)


def current_parent():
    return getattr(_tls, "parent", None)


def inline_payload(ser: Serialized):
    """(data, [bytes]) owned by us: a put copies, so later writes by the user
    to their array do not change the stored value."""
    return (ser.data, [bytes(b) for b in ser.buffers])


def loads_inline(payload, parent=None):
    data, buffers = payload
    if parent is None:
        return pickle.loads(data, buffers=buffers)
    prev = getattr(_tls, "parent", None)
    _tls.parent = parent
    try:
        return pickle.loads(data, buffers=buffers)
    finally:
        _tls.parent = prev


# --- the shared-memory store layout ---------------------------------------
# metadata: <B kind><I pickle length><I nbuffers> then <QQ offset,length> each
# data: pickle bytes at 0, each buffer at a 64-byte aligned offset after it

_HEAD = struct.Struct("<BII")
_PAIR = struct.Struct("<QQ")


def _align(n):
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


def store_layout(ser: Serialized, kind=VALUE):
    off = _align(len(ser.data))
    meta = [_HEAD.pack(kind, len(ser.data), len(ser.buffers))]
    for b in ser.buffers:
        meta.append(_PAIR.pack(off, b.nbytes))
        off = _align(off + b.nbytes)
    return max(off, 1), b"".join(meta)


def write_into(dst: memoryview, ser: Serialized, meta: bytes):
    n = len(ser.data)
    dst[:n] = ser.data
    pairs = meta[_HEAD.size:]
    for i, b in enumerate(ser.buffers):
        off, ln = _PAIR.unpack_from(pairs, i * _PAIR.size)
        if ln >= _COPY_WITH_NUMPY:
            import numpy as np
            from plasma import copy_into   # GIL released; copes with page-offset skew
            d = np.frombuffer(dst, np.uint8, ln, off)
            src = np.frombuffer(b, np.uint8)
            if ln >= _PARALLEL_COPY_MIN:
                _parallel_copy(d, src, copy_into)
            else:
                copy_into(d, src)
        else:
            dst[off:off + ln] = b.cast("B") if b.format != "B" else b


_PARALLEL_COPY_MIN = 16 << 20
_copy_pool = None


def _parallel_copy(dst, src, copy):
    """Large copies into shared memory run on a few threads at once: one
    core does not saturate memory bandwidth."""
    global _copy_pool
    n_threads = min(4, os.cpu_count() or 1)
    if n_threads < 2:
        copy(dst, src)
        return
    if _copy_pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _copy_pool = ThreadPoolExecutor(n_threads, thread_name_prefix="pyray-copy")
    step = -(-len(src) // n_threads)
    step = (step + 4095) & ~4095
    parts = [slice(i, min(i + step, len(src))) for i in range(0, len(src), step)]
    for f in [_copy_pool.submit(copy, dst[p], src[p]) for p in parts]:
        f.result()


def put_in_store(client, oid: bytes, ser: Serialized, kind=VALUE):
    size, meta = store_layout(ser, kind)
    dst = client.create(oid, size, metadata=meta)
    try:
        write_into(dst, ser, meta)
    finally:
        dst.release()
    client.seal(oid)


def loads_store(buf, parent=None):
    """Deserializes a value from a store buffer (client.get's result) without
    copying its out-of-band buffers.  Returns (kind, value)."""
    meta = bytes(buf.metadata)
    kind, plen, nbuf = _HEAD.unpack_from(meta, 0)
    mv = memoryview(buf)
    buffers = []
    for i in range(nbuf):
        off, ln = _PAIR.unpack_from(meta, _HEAD.size + i * _PAIR.size)
        buffers.append(mv[off:off + ln])
    return kind, loads_inline((mv[:plen], buffers), parent)


__all__ = ["serialize", "Serialized", "inline_payload", "loads_inline", "put_in_store",
           "loads_store", "ERROR", "VALUE"]
