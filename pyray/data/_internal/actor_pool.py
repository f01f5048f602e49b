"""map_batches with a callable class: a pool of actors that construct it once.

``compute=ActorPoolStrategy(min_size, max_size)`` or ``concurrency=n`` /
``concurrency=(min, max)``.  The pool starts ``min_size`` actors and adds
one (up to ``max_size``, and while CPUs are free) whenever every actor has
``max_tasks_in_flight_per_actor`` calls queued and inputs are waiting.  Each
call is a streaming generator on the actor (block, metadata, ...), exactly
like a map task.  Actors restart if their process dies and their calls are
retried, so a killed worker loses nothing.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import pyray
from pyray.data._internal.backpressure import OpUsage
from pyray.data._internal.map_transform import (begin_task, block_node, run_stages,
                                                setup_stages)
from pyray.data._internal.operators import MapTaskOp, _Task
from pyray.data._internal.ref_bundle import RefBundle

DEFAULT_MAX_TASKS_IN_FLIGHT = 2


class ActorPoolStrategy:
    """How many actors run a callable class (as Ray's ``ActorPoolStrategy``)."""

    def __init__(self, min_size: Optional[int] = None, max_size: Optional[int] = None, *,
                 size: Optional[int] = None,
                 max_tasks_in_flight_per_actor: Optional[int] = None):
        for name, v in (("size", size), ("min_size", min_size), ("max_size", max_size),
                        ("max_tasks_in_flight_per_actor", max_tasks_in_flight_per_actor)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"ActorPoolStrategy: {name} must be a positive integer, "
                                 f"not {v!r}")
        if size is not None:
            if min_size is not None or max_size is not None:
                raise ValueError("ActorPoolStrategy: give either size or min_size/max_size, "
                                 "not both")
            min_size = max_size = size
        min_size = min_size or 1
        if max_size is not None and max_size < min_size:
            raise ValueError(f"ActorPoolStrategy: min_size ({min_size}) must not be larger "
                             f"than max_size ({max_size})")
        self.min_size = min_size
        self.max_size = max_size
        self.max_tasks_in_flight_per_actor = (max_tasks_in_flight_per_actor or
                                              DEFAULT_MAX_TASKS_IN_FLIGHT)

    @property
    def size(self):
        return self.min_size if self.min_size == self.max_size else None

    def __eq__(self, other):
        return isinstance(other, ActorPoolStrategy) and (
            self.min_size, self.max_size, self.max_tasks_in_flight_per_actor) == (
            other.min_size, other.max_size, other.max_tasks_in_flight_per_actor)

    def __repr__(self):
        return (f"ActorPoolStrategy(min_size={self.min_size}, max_size={self.max_size}, "
                f"max_tasks_in_flight_per_actor={self.max_tasks_in_flight_per_actor})")


def strategy_from(compute, concurrency) -> Optional[ActorPoolStrategy]:
    """The pool a map_batches call asks for (None: plain tasks)."""
    if compute is not None and concurrency is not None:
        raise ValueError("map_batches: give either compute= or concurrency=, not both")
    if compute is None or compute == "tasks":
        if concurrency is None:
            return None
        if isinstance(concurrency, int) and not isinstance(concurrency, bool):
            return ActorPoolStrategy(size=concurrency)
        if isinstance(concurrency, tuple) and len(concurrency) == 2:
            return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
        raise ValueError(f"concurrency must be an int or a (min, max) tuple, not "
                         f"{concurrency!r}")
    if compute == "actors":
        return ActorPoolStrategy()
    if isinstance(compute, ActorPoolStrategy):
        return compute
    raise ValueError(f"compute must be an ActorPoolStrategy (or \"tasks\"), not {compute!r}")


class _MapWorker:
    """The actor: builds the user's class once, then runs calls on blocks."""

    def __init__(self, stages, target_block_size: int, is_read: bool):
        self.stages = stages
        self.target = target_block_size
        self.is_read = is_read
        setup_stages(stages)

    def ready(self):
        return pyray.get_runtime_context().get_node_id()

    def run(self, task_idx, *args):
        begin_task(task_idx)
        if self.is_read:
            files = getattr(args[0].metadata, "input_files", None)
            source = args[0]()
        else:
            files, source = None, args
        for block, meta in run_stages(self.stages, source, self.target, files):
            yield block
            yield meta


class ActorMapOp(MapTaskOp):
    """Fused maps ending in a callable class, run on a pool of actors."""

    def __init__(self, name, input_op, stages, strategy: ActorPoolStrategy,
                 ray_remote_args=None, min_rows_per_bundle=None, datasource=None,
                 parallelism=-1, read_tasks=None):
        super().__init__(name, input_op, stages, ray_remote_args, None, min_rows_per_bundle,
                         datasource, parallelism, read_tasks)
        self.strategy = strategy
        self.actors: List = []
        self.inflight: Dict[int, int] = {}        # actor index -> calls queued on it
        self.task_actor: Dict = {}                # generator -> actor index
        self.starting: Dict = {}                  # ready() ref -> actor index, until it answers
        self.actor_node: Dict[int, str] = {}      # actor index -> its node
        self._cls = None

    def _remote_fn(self):
        opts = {k: v for k, v in self.remote_args.items()
                if k not in ("max_retries", "retry_exceptions", "num_returns")}
        opts.setdefault("num_cpus", 1)
        opts.setdefault("max_restarts", -1)
        opts.setdefault("max_task_retries", -1)
        # replicas of a model belong on different nodes where there are several
        opts.setdefault("scheduling_strategy", "SPREAD")
        self._cls = pyray.remote(**opts)(_MapWorker)
        return None

    def start(self, ctx):
        super().start(ctx)
        for _ in range(self.strategy.min_size):
            self._add_actor()

    def _add_actor(self):
        a = self._cls.remote(self.stages, self.ctx.target_max_block_size, self.is_read)
        self.starting[a.ready.remote()] = len(self.actors)
        self.actors.append(a)

    def waitables(self):
        return list(self.running) + list(self.starting)

    def poll(self, ready):
        did = False
        for ref in [r for r in self.starting if r in ready]:
            i = self.starting.pop(ref)
            # raises if constructing the class failed
            self.actor_node[i] = pyray.get(ref, timeout=60)
            self.inflight[i] = 0              # calls go only to actors that are up
            did = True
        return super().poll(ready) or did

    @property
    def reserved_cpu(self) -> float:
        return len(self.actors) * self.cpu

    def usage(self):
        u = super().usage()
        cap = self.strategy.max_tasks_in_flight_per_actor
        return OpUsage(running=u.running, cpu_per_task=0.0,
                       max_running=len(self.inflight) * cap,
                       expected_task_bytes=u.expected_task_bytes)

    def _pick_actor(self, ex):
        """A ready actor with room: on the next input's node if one is
        (execution_options.actor_locality_enabled), else the least busy."""
        cap = self.strategy.max_tasks_in_flight_per_actor
        free = [i for i, n in self.inflight.items() if n < cap]
        if free:
            node = self._next_input_node()
            if node is not None:
                local = [i for i in free if self.actor_node.get(i) == node]
                if local:
                    return min(local, key=self.inflight.get)
            return min(free, key=self.inflight.get)
        limit = self.strategy.max_size
        if not self.starting and (limit is None or len(self.actors) < limit) and \
                ex.may_reserve(self.cpu):
            self._add_actor()
        return None

    def _next_input_node(self):
        if not self.ctx.execution_options.actor_locality_enabled or not self.queue:
            return None
        item = self.queue[0][0]
        if not isinstance(item, RefBundle) or not item.blocks:
            return None
        return block_node(item.blocks[0][1])

    def dispatch(self, ex):
        did = False
        while self.queue and not self.aborted and ex.may_launch(self):
            i = self._pick_actor(ex)
            if i is None:
                break
            t = self._submit(self.actors[i].run.remote)
            self.task_actor[t.gen] = i
            self.inflight[i] += 1
            did = True
        if self.done() and self.actors:
            self.shutdown()
        return did

    def _finish(self, t: _Task):
        gen = t.gen
        super()._finish(t)
        i = self.task_actor.pop(gen, None)
        if i is not None:
            self.inflight[i] -= 1

    def shutdown(self):
        super().shutdown()
        actors, self.actors = self.actors, []
        self.inflight.clear()
        self.task_actor.clear()
        self.starting.clear()
        self.actor_node.clear()
        for a in actors:
            try:
                pyray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
