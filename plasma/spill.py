"""Spill policy: what goes to disk, when, and how it comes back.

The C store only offers the mechanism: it picks least recently used
unpinned primary objects and pins them (``spill_begin``), records where they
went (``spill_end``), and hands out memory to restore into
(``restore_begin`` / ``restore_end``). This module decides how much to spill
at once and writes the batch files.

File format: one file per batch, ``<spill_dir>/<prefix>-<n>.spill``; each
object is a 64-byte record header followed by its data and metadata, the next
record starting at a 64-byte boundary::

    magic "PLSPILL1" | oid (20) | pad (4) | data_size u64 | meta_size u32 |
    pad (4) | checksum u64 | pad (8)

The checksum (also kept in shared memory) is verified on restore.
"""
import dataclasses
import os
import struct

from plasma import _store

RECORD = struct.Struct("<8s20s4xQI4xQ8x")
MAGIC = b"PLSPILL1"
ALIGN = 64
WAIT_SLICE_NS = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class SpillPolicy:
    """Knobs of the spill policy.

    min_batch_bytes: spill at least this much at once (fewer, larger files).
    max_batch_objects: at most this many objects per file.
    fsync: flush each file to disk before its objects leave memory.
    """
    min_batch_bytes: int = 32 << 20
    max_batch_objects: int = 1024
    fsync: bool = True


def _write_all(fd, data):
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_all(fd, data, offset):
    view = memoryview(data).cast("B")
    while view:
        n = os.preadv(fd, [view], offset)
        if n == 0:
            raise OSError("spill file is shorter than its index says")
        view = view[n:]
        offset += n


class Spiller:
    """Spills and restores on behalf of one client connection."""

    def __init__(self, conn, policy=None):
        self._conn = conn
        self.policy = policy or SpillPolicy()

    def make_room(self, need):
        """Spill at least `need` bytes (one batch). Returns the bytes spilled;
        when there is nothing to spill but another client is spilling, waits
        for that and returns -1 (try again); 0 when nothing can be done."""
        policy = self.policy
        slot, path, victims = self._conn.spill_begin(max(need, policy.min_batch_bytes),
                                                     policy.max_batch_objects)
        if not victims:
            return -1 if self._conn.wait_for_spills(WAIT_SLICE_NS) else 0
        idxs = [v[0] for v in victims]
        total = sum(len(v[2]) for v in victims)
        offsets, checksums = [], []
        ok = False
        try:
            self._write_batch(path, victims, offsets, checksums)
            ok = True
        finally:
            victims = None
            self._conn.spill_end(slot, idxs, offsets, checksums, ok)
        return total

    def _write_batch(self, path, victims, offsets, checksums):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            pos = 0
            for _idx, oid, view, data_size, meta_size in victims:
                checksum = _store.checksum(view)
                _write_all(fd, RECORD.pack(MAGIC, oid, data_size, meta_size, checksum))
                _write_all(fd, view)
                offsets.append(pos)
                checksums.append(checksum)
                pos += RECORD.size + len(view)
                pad = -pos % ALIGN
                if pad:
                    _write_all(fd, bytes(pad))
                    pos += pad
            if self.policy.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def restore(self, oid):
        """Bring a spilled object back: a pinned buffer, or None when the caller
        should simply get() again (already restored, or being restored)."""
        conn = self._conn
        while True:
            code, res = conn.restore_begin(oid)
            if code == _store.RESTORE_RETRY:
                return None
            if code == _store.RESTORE_OK:
                break
            if self.make_room(res) == 0:
                raise _store.error_for(
                    _store.STATUS_NO_ROOM, oid, conn, res,
                    f"cannot restore spilled object {bytes(oid).hex()}: it needs {res} bytes")
        idx, path, offset, data_size, meta_size, checksum, view = res
        ok, reason = False, ""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                magic, f_oid, f_size, f_meta, f_sum = RECORD.unpack(
                    os.pread(fd, RECORD.size, offset))
                if (magic, f_oid, f_size, f_meta, f_sum) != (MAGIC, bytes(oid), data_size,
                                                             meta_size, checksum):
                    reason = "record header does not match"
                else:
                    _read_all(fd, view, offset + RECORD.size)
                    ok = _store.checksum(view) == checksum
                    reason = "" if ok else "checksum mismatch"
            finally:
                os.close(fd)
        except (OSError, struct.error) as e:
            reason = str(e)
        finally:
            buf = conn.restore_end(oid, idx, ok, data_size, meta_size, view)
        if not ok:
            raise _store.error_for(_store.STATUS_CORRUPT, oid, detail=(
                f"spilled object {bytes(oid).hex()} could not be restored from {path}: "
                f"{reason}"))
        return buf
