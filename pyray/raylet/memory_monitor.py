"""The node's memory monitor (Ray's): when the memory in use on the node
passes a threshold, the raylet kills one leased worker so that the node
keeps running, instead of the kernel's OOM killer taking a daemon down.

The decision is a pure function (``decide``), unit-tested without
processes; the raylet samples memory on a timer (``node_memory``: two or
three small reads under /proc and /sys, never on a task's path) and carries
the decision out (pyray.raylet.raylet).  The owner of the killed worker's
tasks hears why through WORKER_DIED (``kind == OOM``) and fails them with
``pyray.exceptions.OutOfMemoryError`` once their retries are used up.

Which worker (Ray's policy): one running work that can be retried before
one that cannot, tasks before actors, and the newest lease first (it has
done the least work so far).  One worker at a time: the next is chosen only
once the last one killed has exited (or ``KILL_GRACE_S`` passed).
"""
from __future__ import annotations

from collections import namedtuple

# WORKER_DIED.kind of a worker the memory monitor killed
OOM = "oom"

# how long a killed worker may take to exit before another one is chosen
KILL_GRACE_S = 5.0

# one leased worker the monitor may kill
Candidate = namedtuple("Candidate", "worker_id pid granted_at retriable is_actor")


def pick_victim(candidates):
    """The candidate to kill, or None when there is none: retriable work
    first, then work that is not, actors last; the newest lease first
    within each."""
    best, best_key = None, None
    for c in candidates:
        key = (bool(c.is_actor), not c.retriable, -c.granted_at)
        if best_key is None or key < best_key:
            best, best_key = c, key
    return best


def over_threshold(used, total, threshold):
    """Whether `used` of `total` bytes is past the threshold (a fraction;
    1.0 or more never is)."""
    return total > 0 and threshold < 1.0 and used > threshold * total


def decide(used, total, threshold, candidates, pending, now):
    """What the monitor does after a sample: the Candidate to kill, or
    None.  `pending`: (worker id, killed at) of the last worker killed and
    not yet seen exiting, or None; `candidates`: the leased workers (only
    worker_id is looked at for those still exiting)."""
    if not over_threshold(used, total, threshold):
        return None
    if pending is not None:
        wid, killed_at = pending
        if now - killed_at < KILL_GRACE_S and any(c.worker_id == wid for c in candidates):
            return None         # the last one is still on its way out
    return pick_victim([c for c in candidates
                        if pending is None or c.worker_id != pending[0]])


def message(victim_name, used, total, threshold, node_ip, node_id_hex, worker_rss=None,
            retriable=True):
    """Why the worker was killed, as Ray words it."""
    gib = 1 << 30
    rss = f", memory used={worker_rss / gib:.2f}GB" if worker_rss else ""
    return (f"Task was killed due to the node running low on memory. Memory on the node "
            f"(IP: {node_ip}, ID: {node_id_hex}) where the task ({victim_name}{rss}) was "
            f"running was {used / gib:.2f}GB / {total / gib:.2f}GB ({used / total:.3f}), "
            f"which exceeds the memory usage threshold of {threshold}. pyray killed this "
            f"worker because it was the most recently scheduled "
            f"{'retriable task' if retriable else 'work'}. To see more "
            f"information about memory usage on this node, use `pyray status -v`. Set "
            f"max_retries to retry such tasks, lower their concurrency or give them more "
            f"`memory=`; the threshold is memory_usage_threshold "
            f"(PYRAY_memory_usage_threshold / RAY_memory_usage_threshold), and "
            f"memory_monitor_refresh_ms=0 disables the monitor.")


# cgroup v2, then v1: limit, usage, memory.stat and its line of page cache
# the kernel can reclaim (not counted as used)
_CGROUPS = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current",
             "/sys/fs/cgroup/memory.stat", b"inactive_file "),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
             "/sys/fs/cgroup/memory/memory.usage_in_bytes",
             "/sys/fs/cgroup/memory/memory.stat", b"total_inactive_file "))


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def parse_meminfo(text):
    """(used, total) bytes from /proc/meminfo's text: total less
    MemAvailable, as Ray counts it."""
    total = avail = None
    for line in text.splitlines():
        if line.startswith(b"MemTotal:"):
            total = int(line.split()[1]) * 1024
        elif line.startswith(b"MemAvailable:"):
            avail = int(line.split()[1]) * 1024
        if total is not None and avail is not None:
            break
    if total is None or avail is None:
        return None
    return total - avail, total


def node_memory():
    """(used, total) bytes of this node: the machine's (/proc/meminfo), or
    this process's cgroup when its limit is the one closer to being hit.
    None when neither can be read."""
    best = None
    try:
        best = parse_meminfo(_read("/proc/meminfo"))
    except (OSError, ValueError, IndexError):
        pass
    for limit_path, usage_path, stat_path, reclaimable in _CGROUPS:
        try:
            limit = _read(limit_path).strip()
            used = int(_read(usage_path))
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < (1 << 60):
            try:
                for line in _read(stat_path).splitlines():
                    if line.startswith(reclaimable):
                        used -= int(line.split()[1])
                        break
            except (OSError, ValueError, IndexError):
                pass
            cg = (max(0, used), int(limit))
            if best is None or cg[0] * best[1] > best[0] * cg[1]:
                best = cg
        break
    return best
