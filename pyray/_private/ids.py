"""Identifiers.  An object id is 20 bytes: the 16-byte id of the task (or
put) that made it plus a 4-byte return index.  Ids are made from a random
per-process prefix and a counter: unique without a syscall per id."""
from __future__ import annotations

import itertools
import os

TASK_ID_SIZE = 16                       # 8 random bytes + an 8-byte counter
INDEX_SIZE = 4                          # an object's return index
OBJECT_ID_SIZE = TASK_ID_SIZE + INDEX_SIZE
UNIQUE_ID_SIZE = 16                     # random ids: nodes, workers, actors, functions

_prefix = os.urandom(8)
_counter = itertools.count(1)


def _reseed():
    global _prefix, _counter
    _prefix = os.urandom(8)
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


def new_task_id() -> bytes:
    # itertools.count's next() is atomic under the GIL
    return _prefix + next(_counter).to_bytes(8, "little")


def object_id(task_id: bytes, index: int) -> bytes:
    return task_id + index.to_bytes(INDEX_SIZE, "little")


def new_put_id() -> bytes:
    # index 0xffffffff marks a put; returns use 1..n
    return _prefix + next(_counter).to_bytes(8, "little") + b"\xff\xff\xff\xff"


def random_id(n=UNIQUE_ID_SIZE) -> bytes:
    return os.urandom(n)
