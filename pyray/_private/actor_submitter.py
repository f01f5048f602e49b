"""Actor calls, caller side: they go straight to the actor's worker.

A caller learns where an actor lives from the GCS (GET_ACTOR_INFO, answered
by ACTOR_STATE now and on every restart or death) and keeps an
``ActorClient`` per actor: calls made before the actor is alive wait in its
queue; calls in flight are retried or failed when it restarts or dies.  It
also counts the handles this process made: when the last one goes (and none
was sent elsewhere) the actor is told to stop after the calls already sent
(a terminate message behind them).

``ActorSubmitter`` is one part of CoreWorker (core_worker.py); handlers run
on its I/O thread with the lock held.
"""
from __future__ import annotations

import collections

from pyray import exceptions as exc
from pyray._private import task_events
from pyray._private import errors, ids
from pyray._private.io_loop import GCS_RESEND_S
from pyray._private.ownership import READY
from pyray._private.protocol import ACTOR_STATE, CANCEL_TASK, GET_ACTOR_INFO, PUSH_TASK, VALUE
from pyray._private.task_spec import TERMINATE


class ActorClient:
    """What a caller knows of one actor."""
    __slots__ = ("actor_id", "state", "task_addr", "ctl_addr", "worker_id", "pid", "queue",
                 "inflight", "cause", "terminate_pending", "channel", "max_pending",
                 "out_of_order", "held")

    def __init__(self, actor_id):
        self.actor_id = actor_id
        self.state = "PENDING"
        self.task_addr = None
        self.ctl_addr = None
        self.worker_id = None
        self.pid = None
        self.queue = collections.deque()
        self.inflight = {}
        self.cause = None
        self.terminate_pending = False
        self.channel = None
        self.max_pending = -1       # max_pending_calls (-1: no limit)
        self.out_of_order = False   # allow_out_of_order_execution
        self.held = []              # calls waiting for their arguments (out of order)

    def pending(self):
        """Calls made and not finished: queued, held for arguments, sent."""
        held = self.held
        if held:
            held[:] = [s for s in held if s.pending_deps > 0 and not s.cancelled]
        return len(self.queue) + len(self.inflight) + len(held)



class ActorSubmitter:
    """What this process knows of the actors it calls."""

    def _init_actor_submission(self):
        self.actors = {}             # actor id -> ActorClient
        self.actor_refs = {}         # actor id -> refs in its constructor's arguments
        self.actor_handles = {}      # actor id -> live handles made by this process
        self.escaped_actors = set()  # actors whose handle was sent elsewhere
        self._actor_reask_at = 0.0

    def _actor_client(self, actor_id):
        ac = self.actors.get(actor_id)
        if ac is None:
            ac = self.actors[actor_id] = ActorClient(actor_id)
            self.out.send(self.gcs_addr, GET_ACTOR_INFO.make(actor_id, self.addr))
        return ac

    def actor_call_policy(self, actor_id, max_pending, out_of_order):
        """A handle's max_pending_calls and allow_out_of_order_execution."""
        with self.lock:
            ac = self._actor_client(actor_id)
            ac.max_pending = max_pending
            ac.out_of_order = out_of_order

    def submit_actor_task(self, spec):
        with self.lock:
            ac = self.actors.get(spec.actor)
            if ac is not None and (ac.max_pending >= 0 or ac.out_of_order):
                self._submit_with_policy(ac, spec)
                return
            self.own_returns(spec)
            self._submit_in_order(spec)

    def _submit_in_order(self, spec):
        for ref in spec.deps:
            e = self.owned.get(ref._id)
            if e is not None and e.state == READY and e.kind == VALUE:
                if spec.resolved is None:
                    spec.resolved = {}
                spec.resolved[ref._id] = (VALUE, e.payload)
        self._dispatch_actor(spec, first=False)

    def _submit_with_policy(self, ac, spec):
        if 0 <= ac.max_pending <= ac.pending():
            raise exc.PendingCallsLimitExceeded(
                f"The task {spec.name} could not be submitted to {ac.actor_id.hex()} because "
                f"more than {ac.max_pending} tasks are queued on the actor. This limit can "
                "be adjusted with the `max_pending_calls` actor option.")
        self.own_returns(spec)
        if not ac.out_of_order:
            self._submit_in_order(spec)
            return
        # out of order: a call goes to the actor once its own arguments are
        # ready, not behind earlier calls still waiting for theirs
        self.submit_deps(spec)
        if spec.pending_deps > 0:
            ac.held.append(spec)

    def _dispatch_actor(self, spec, first):
        """Pushes a call to its actor now, fails it (a dead actor), or queues
        it until the actor is alive: last, or `first` for a retry."""
        ac = self._actor_client(spec.actor)
        if ac.state == "ALIVE" and not ac.queue:
            self._push_actor(ac, spec)
        elif ac.state == "DEAD":
            self.fail_task(spec, self._actor_error(ac))
        elif first:
            ac.queue.appendleft(spec)
        else:
            ac.queue.append(spec)

    def _push_actor(self, ac, spec):
        ac.inflight[spec.task_id] = spec
        spec.attempt += 1
        data, bufs = spec.args_payload
        msg = PUSH_TASK.make(spec.task_id, spec.name, None, spec.fn.name or spec.name, data,
                             -1 if bufs is None else len(bufs), spec.resolved,
                             len(spec.return_ids) if spec.stream is None else spec.stream.wire,
                             self.addr, spec.attempt, None, None, spec.actor, None, spec.shape,
                             task_events.enabled(spec.task_id))
        self._send_task(ac.channel, ac.task_addr, msg, bufs)

    def _retry_actor_task(self, spec):
        """An actor call that raised an exception it retries on
        (retry_exceptions): sent again to the same actor, ahead of the queue."""
        self._dispatch_actor(spec, first=True)

    def _actor_error(self, ac):
        err = errors.decode(ac.cause) if ac.cause is not None else None
        if isinstance(err, exc.RayActorError):
            return err                  # what happened to it (errors.actor_died)
        if isinstance(err, exc.RuntimeEnvSetupError):
            return err                  # its runtime env could not be set up (as Ray)
        if err is not None:             # its creation task failed
            if isinstance(err, exc.RayTaskError):
                # `except ValueError` on err.cause works as it does for a task
                err = err.as_instanceof_cause()
            return exc.ActorDiedError(err, (
                "The actor died because of an error raised in its creation task: "
                f"{err}"), ac.actor_id)
        return exc.ActorDiedError(None, f"The actor {ac.actor_id.hex()} is dead.", ac.actor_id)

    def _h_actor_state(self, msg, frames):
        _, actor_id, state, addr, cause, restarts = ACTOR_STATE.parse(msg)
        ac = self.actors.get(actor_id)
        if ac is None:
            return
        if ac.state == "DEAD" and state != "DEAD":
            return      # killed here (actor_killed) before this older news arrived
        if state == "ALIVE":
            if addr is not None and (ac.task_addr != addr[0] or ac.state != "ALIVE"):
                ac.task_addr, ac.ctl_addr, ac.worker_id, ac.pid, path = addr
                ac.channel = self._channel_for(path)
            ac.state = "ALIVE"
            while ac.queue:
                self._push_actor(ac, ac.queue.popleft())
            if ac.terminate_pending:
                self._terminate_actor(ac)
        elif state in ("RESTARTING", "DEAD"):
            ac.state = state
            ac.cause = cause
            lost = list(ac.inflight.values())
            ac.inflight.clear()
            retry = []
            for spec in lost:
                if state == "RESTARTING" and spec.retries_left != 0:
                    spec.retries_left -= 1
                    retry.append(spec)
                else:
                    self.fail_task(spec, self._actor_error(ac) if state == "DEAD" else
                                   exc.ActorDiedError(None, (
                                       f"The actor died while running {spec.name} (cause: "
                                       f"{_why(cause)}); the call was not retried "
                                       "(max_task_retries).")))
            ac.queue.extendleft(reversed(retry))
            if state == "DEAD":
                err = self._actor_error(ac)
                while ac.queue:
                    self.fail_task(ac.queue.popleft(), err)
                self.actor_refs.pop(actor_id, None)
        self.cv.notify_all()

    def actor_killed(self, actor_id):
        """pyray.kill(no_restart=True) was accepted: calls made from now on
        fail at once; those in flight fail when the GCS reports the death."""
        with self.lock:
            ac = self._actor_client(actor_id)
            if ac.state == "DEAD":
                return
            ac.state = "DEAD"
            ac.cause = errors.actor_died(actor_id, "The actor was killed by pyray.kill().")
            err = self._actor_error(ac)
            while ac.queue:
                self.fail_task(ac.queue.popleft(), err)
            self.cv.notify_all()

    def keep_alive(self, actor_id, refs):
        if refs:
            with self.lock:
                self.actor_refs[actor_id] = refs

    def add_actor_handle(self, actor_id):
        with self.lock:
            self.actor_handles[actor_id] = self.actor_handles.get(actor_id, 0) + 1

    def actor_handle_escaped(self, actor_id):
        self.escaped_actors.add(actor_id)

    def _actor_handle_dropped(self, actor_id):
        n = self.actor_handles.get(actor_id, 0) - 1
        if n > 0:
            self.actor_handles[actor_id] = n
            return
        self.actor_handles.pop(actor_id, None)
        if actor_id in self.escaped_actors:
            return
        ac = self._actor_client(actor_id)
        if ac.state == "ALIVE":
            self._terminate_actor(ac)
        elif ac.state != "DEAD":
            ac.terminate_pending = True

    def _terminate_actor(self, ac):
        """Out of scope: the actor stops after the calls already sent to it."""
        ac.terminate_pending = False
        msg = PUSH_TASK.make(ids.new_task_id(), TERMINATE, None, "terminate", b"", 0, None, 0,
                             self.addr, 1, None, None, ac.actor_id, None, None, False)
        self._send_task(ac.channel, ac.task_addr, msg, None)

    def _cancel_actor_task(self, spec, recursive=True):
        """cancel() of an actor call: asked of the actor if it runs there,
        else it fails here."""
        task_id = spec.task_id
        ac = self.actors.get(spec.actor)
        if ac is not None and task_id in ac.inflight:
            self.out.send(ac.ctl_addr, CANCEL_TASK.make(task_id, False, bool(recursive)))
            return
        if ac is not None:
            try:
                ac.queue.remove(spec)
            except ValueError:
                pass
        self.fail_task(spec, exc.TaskCancelledError(task_id.hex()))
        self.cv.notify_all()

    def _reask_actor_info(self, now):
        """Asks the GCS again where actors with calls waiting live: the first
        question may have been lost with a GCS that was killed."""
        self._actor_reask_at = now + GCS_RESEND_S
        for ac in self.actors.values():
            if ac.queue and ac.state in ("PENDING", "RESTARTING"):
                self.out.send(self.gcs_addr, GET_ACTOR_INFO.make(ac.actor_id, self.addr))


def _why(cause):
    """The text of an actor's cause of death (None while it restarts)."""
    return None if cause is None else errors.decode(cause)
