"""The GCS's tables on disk, so that a restarted GCS recovers the cluster.

One embedded SQLite database (``<session>/gcs/state.db``) in WAL mode with a
single table of rows ``(table, key) -> value``; keys and values are pickled.
The GCS marks rows as changed while it handles a batch of messages
(``mark``) and writes them all in one transaction at the end of the batch
(``flush``), before any message the batch produced leaves the process: what
a peer has been told is on disk.  ``synchronous=NORMAL`` makes a commit a
write into the WAL file without an fsync: it survives the GCS being killed,
not the machine losing power.

A row that cannot be read back is skipped with a log line; a database that
cannot be opened stops the GCS (it must not silently forget the cluster).
"""
from __future__ import annotations

import logging
import os
import pickle
import sqlite3

log = logging.getLogger("pyray.gcs.storage")

# the tables the GCS keeps (docs/cluster.md, "GCS restart")
TABLES = ("meta", "node", "job", "kv", "actor_spec", "actor", "pg")

_SCHEMA = ("CREATE TABLE IF NOT EXISTS rows (tbl TEXT NOT NULL, key BLOB NOT NULL, "
           "value BLOB NOT NULL, PRIMARY KEY (tbl, key)) WITHOUT ROWID")


def _dumps(obj):
    return pickle.dumps(obj, protocol=5)


class GcsStorage:
    """Rows of the GCS's tables.  ``path=None`` keeps nothing (every call
    is a no-op and ``load`` returns empty tables)."""

    def __init__(self, path=None):
        self.path = path
        self.db = None
        self.dirty = {}                 # (table, key) -> callable giving the row (None: delete)
        self.writes = 0                 # rows written or deleted since start
        if path is None:
            return
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(_SCHEMA)

    @property
    def enabled(self):
        return self.db is not None

    def mark(self, table, key, row):
        """Notes that a row changed; ``row()`` is called at the next flush
        and returns the value to store, or None to delete the row."""
        if self.db is not None:
            self.dirty[(table, key)] = row

    def put(self, table, key, value):
        self.mark(table, key, lambda: value)

    def delete(self, table, key):
        self.mark(table, key, _none)

    def flush(self):
        """Writes every marked row in one transaction; returns how many."""
        if not self.dirty:
            return 0
        dirty, self.dirty = self.dirty, {}
        puts, dels = [], []
        for (table, key), row in dirty.items():
            try:
                value = row()
                k = _dumps(key)
                if value is None:
                    dels.append((table, k))
                else:
                    puts.append((table, k, _dumps(value)))
            except Exception:  # noqa: BLE001 - one bad row must not lose the others
                log.exception("cannot store row %s/%r", table, key)
        db = self.db
        db.execute("BEGIN")
        try:
            if puts:
                db.executemany("INSERT OR REPLACE INTO rows (tbl, key, value) VALUES (?, ?, ?)",
                               puts)
            if dels:
                db.executemany("DELETE FROM rows WHERE tbl = ? AND key = ?", dels)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.writes += len(puts) + len(dels)
        return len(puts) + len(dels)

    def load(self):
        """Every stored row: ``{table: {key: value}}`` (each table present)."""
        out = {t: {} for t in TABLES}
        if self.db is None:
            return out
        for table, k, v in self.db.execute("SELECT tbl, key, value FROM rows"):
            try:
                out.setdefault(table, {})[pickle.loads(k)] = pickle.loads(v)
            except Exception as err:  # noqa: BLE001 - skip what cannot be read
                log.warning("skipped an unreadable stored row in table %r: %s", table, err)
        return out

    def close(self):
        if self.db is not None:
            self.flush()
            self.db.close()
            self.db = None


def _none():
    return None
