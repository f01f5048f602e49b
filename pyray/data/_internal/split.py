"""Cutting datasets by rows: slices of bundles, split / split_at_indices, and
the coordinator actor behind ``streaming_split``."""
from __future__ import annotations

import collections
import threading
from typing import List, Optional

import pyray
from pyray.data._internal.map_transform import block_node
from pyray.data._internal.ref_bundle import BlockMetadata, RefBundle

GET_TIMEOUT_S = 300.0
WAIT = "wait"


def _slice_block(ref, meta: BlockMetadata, start: int, end: int):
    if start == 0 and end >= meta.num_rows:
        return ref, meta
    t = pyray.get(ref, timeout=GET_TIMEOUT_S).slice(start, end - start)
    return pyray.put(t), BlockMetadata.for_block(t, meta.input_files)


def slice_bundle(bundle: RefBundle, start: int, end: int) -> RefBundle:
    """Rows [start, end) of a bundle (whole blocks reused, cut ones copied)."""
    out = []
    off = 0
    for ref, meta in bundle.blocks:
        n = meta.num_rows
        lo, hi = max(start - off, 0), min(end - off, n)
        if lo < hi:
            out.append(_slice_block(ref, meta, lo, hi))
        off += n
        if off >= end:
            break
    return RefBundle(tuple(out), owns_blocks=bundle.owns_blocks)


def split_at_indices(bundles: List[RefBundle], indices: List[int]) -> List[List[RefBundle]]:
    """The bundles of rows [0, i0), [i0, i1), ..., [ik, end)."""
    blocks = [b for bundle in bundles for b in bundle.blocks]
    total = sum(m.num_rows for _, m in blocks)
    bounds = [0] + [min(max(i, 0), total) for i in indices] + [total]
    parts: List[List[RefBundle]] = []
    for lo, hi in zip(bounds, bounds[1:]):
        part = []
        off = 0
        for ref, meta in blocks:
            n = meta.num_rows
            a, b = max(lo - off, 0), min(hi - off, n)
            if a < b:
                part.append(RefBundle((_slice_block(ref, meta, a, b),), owns_blocks=False))
            off += n
        parts.append(part)
    return parts


def hint_nodes(locality_hints) -> List[Optional[str]]:
    """The node of each hint: a node id (str) or an actor handle."""
    from pyray.util.state import get_actor
    nodes = []
    for h in locality_hints:
        if isinstance(h, str):
            nodes.append(h)
            continue
        actor_id = getattr(h, "_actor_id", None)
        if actor_id is None:
            raise TypeError(f"locality_hints: expected actor handles or node ids, not "
                            f"{type(h).__name__}")
        info = get_actor(actor_id.hex() if hasattr(actor_id, "hex") else str(actor_id))
        nodes.append((info or {}).get("node_id"))
    return nodes


def _pick(rows: List[int], nodes: Optional[List[Optional[str]]], node, slack: int) -> int:
    """The consumer to give a block made on `node`: the least loaded one on
    that node unless it is more than `slack` rows ahead of the least loaded."""
    low = min(range(len(rows)), key=rows.__getitem__)
    if nodes and node is not None:
        local = [i for i, n in enumerate(nodes) if n == node]
        if local:
            best = min(local, key=rows.__getitem__)
            if rows[best] - rows[low] <= slack:
                return best
    return low


def split_blocks(bundles: List[RefBundle], n: int, locality_hints=None) -> List[List[RefBundle]]:
    """Whole blocks dealt into n parts of nearly equal rows (split(equal=False)),
    each block to a part whose hint is on the block's node where that keeps
    the parts balanced."""
    blocks = [b for bundle in bundles for b in bundle.blocks]
    nodes = hint_nodes(locality_hints) if locality_hints is not None else None
    parts: List[List[RefBundle]] = [[] for _ in range(n)]
    rows = [0] * n
    order = sorted(blocks, key=lambda b: -b[1].num_rows)
    slack = max((m.num_rows for _, m in blocks), default=0)
    for ref, meta in order:
        i = _pick(rows, nodes, block_node(meta), slack)
        parts[i].append(RefBundle(((ref, meta),), owns_blocks=False))
        rows[i] += meta.num_rows
    return parts


# ============================================================ streaming split
class SplitCoordinator:
    """The actor behind streaming_split: runs the pipeline once and deals
    its output to n consumers, each asking for its next bundle.

    With ``equal=False`` a bundle goes to the consumer asking (or to one
    whose locality hint is the bundle's node, if that one is not ahead).
    With ``equal=True`` bundles go to the consumer with the fewest rows dealt
    so far (or to one on the bundle's node, if not far ahead); each keeps back at least the rows of the largest
    bundle seen until the end, when every consumer's share is cut to the
    smallest, so all see exactly the same number of rows."""

    def __init__(self, dataset, n: int, equal: bool, locality_hints=None):
        self._ds = dataset
        self._nodes = hint_nodes(locality_hints) if locality_hints is not None else None
        self._n = n
        self._equal = equal
        self._lock = threading.Lock()
        self._it = None
        self._queues: List[collections.deque] = [collections.deque() for _ in range(n)]
        self._dealt = [0] * n          # rows given to each consumer's queue
        self._served = [0] * n         # rows handed out to each consumer
        self._max_rows = 0
        self._ended = False
        self._trimmed = False
        self._epoch = 0
        self._finished = set()
        self._error: Optional[BaseException] = None

    def _pull_one(self, asker: int) -> bool:
        if self._it is None:
            self._it = self._ds._iter_bundles()
        try:
            b = next(self._it)
        except StopIteration:
            self._ended = True
            return False
        if not b.num_rows:
            return True
        self._max_rows = max(self._max_rows, b.num_rows)
        node = block_node(b.metadata[0])
        if self._equal:
            i = _pick(self._dealt, self._nodes, node, self._max_rows)
        else:
            # whoever asks gets it (a slow consumer does not pile up blocks),
            # unless the block lives by another consumer that is not ahead
            i = asker
            if self._nodes and node is not None and self._nodes[asker] != node:
                local = [j for j, n in enumerate(self._nodes) if n == node]
                j = min(local, key=self._dealt.__getitem__) if local else None
                if j is not None and self._dealt[j] <= self._dealt[asker]:
                    i = j
        self._queues[i].append(b)
        self._dealt[i] += b.num_rows
        return True

    def _trim(self):
        """At the end (equal=True): the rows still held back are shared out so
        that every consumer gets total // n; fewer than n rows are dropped."""
        if self._trimmed:
            return
        self._trimmed = True
        if not self._equal:
            return
        target = sum(self._dealt) // self._n
        pool = collections.deque(b for q in self._queues for b in q)
        for i in range(self._n):
            need = target - self._served[i]
            out = collections.deque()
            while need > 0 and pool:
                b = pool.popleft()
                if b.num_rows > need:
                    pool.appendleft(slice_bundle(b, need, b.num_rows))
                    b = slice_bundle(b, 0, need)
                out.append(b)
                need -= b.num_rows
            self._queues[i] = out

    def _deliverable(self, i: int) -> bool:
        q = self._queues[i]
        if not q:
            return False
        if self._ended or not self._equal:
            return True
        queued = sum(b.num_rows for b in q)
        return queued - q[0].num_rows >= self._max_rows

    def _new_epoch(self):
        self._epoch += 1
        self._it = None
        self._queues = [collections.deque() for _ in range(self._n)]
        self._dealt = [0] * self._n
        self._served = [0] * self._n
        self._ended = self._trimmed = False
        self._finished = set()

    def get(self, i: int):
        """The next bundle of consumer i as ([block refs], [metadata]); None at
        the end of the epoch; WAIT when consumer i, done with this epoch, asks
        for the next one while others are still reading."""
        with self._lock:
            if self._error is not None:
                raise self._error
            if i in self._finished:
                if len(self._finished) < self._n:
                    return WAIT
                self._new_epoch()
            out = self._get(i)
            if out is None:
                self._finished.add(i)
            return out

    def _get(self, i):
        try:
            while not self._deliverable(i):
                if self._ended:
                    self._trim()
                    if not self._queues[i]:
                        return None
                    break
                self._pull_one(i)
            if self._ended:
                self._trim()
                if not self._queues[i]:
                    return None
        except BaseException as e:
            self._error = e
            raise
        b = self._queues[i].popleft()
        self._served[i] += b.num_rows
        return [list(b.block_refs), b.metadata]
