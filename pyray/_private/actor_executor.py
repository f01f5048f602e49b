"""The actor hosted by a worker process: its instance and how its calls run
(the worker's TaskExecutor, task_executor.py, hands them here).

max_concurrency=1 (the default for sync actors): calls run on the worker's
main thread, one at a time, in arrival order.  max_concurrency=N: calls run
on N threads.  An actor with async methods runs them on one event loop,
at most max_concurrency at once (default 1000).

Concurrency groups (``concurrency_groups={"io": 2}`` on the class,
``@method(concurrency_group="io")`` or ``.options(concurrency_group=)`` on a
call): each group has a thread pool of its own of that size (threaded
actors), or a semaphore of its own on the event loop (async actors); calls
of no group share the default group, of size max_concurrency.  An actor with
groups always runs its calls on threads, never on the main thread."""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import queue
import threading

from pyray import exceptions as exc
from pyray._private import task_events
from pyray._private.protocol import ACTOR_EXITING
from pyray._private.runtime_context import running_call
from pyray._private.task_executor import flush_std
from pyray.actor import ActorExit

log = logging.getLogger("pyray.worker")


class ActorInstance:
    def __init__(self, runtime, actor_id, cls, obj, options, restarts):
        self.runtime = runtime
        self.actor_id = actor_id
        self.cls = cls
        self.obj = obj
        self.restarts = restarts
        self.max_concurrency = options.get("max_concurrency", 1)
        self.is_async = options.get("is_async", False)
        self.groups = dict(options.get("concurrency_groups") or {})
        self.method_groups = _method_groups(cls)
        self.concurrent = self.is_async or self.max_concurrency > 1 or bool(self.groups)
        self.pool = None
        self.pools = {}                      # concurrency group -> its thread pool
        self.sems = {}                       # concurrency group -> its semaphore (async)
        self.loop = None
        self.inflight = 0                    # calls handed to threads or the loop
        self.calls = {}                      # task id -> its Call, for those
        self.pending = collections.deque()   # async calls not handed to the loop yet
        self.wake_scheduled = False          # the loop will run _start_pending soon
        self.cancelled_calls = set()         # calls cancel() asked about: they reply cancelled
        self.exited = False                  # exit_actor() was called: start no more calls
        self.exit_started = False
        self.idle = threading.Condition()
        if self.is_async:
            self.loop = asyncio.new_event_loop()
            started = threading.Event()
            t = threading.Thread(target=self._run_loop, args=(started,),
                                 name="pyray-actor-loop", daemon=True)
            t.start()
            started.wait()
        elif self.concurrent:
            self.pool = CallThreads(self.max_concurrency, "pyray-actor", self._run_threaded)
            for g, n in self.groups.items():
                self.pools[g] = CallThreads(n, f"pyray-actor-{g}", self._run_threaded)

    def _run_loop(self, started):
        asyncio.set_event_loop(self.loop)
        self.sem = asyncio.Semaphore(self.max_concurrency)
        for g, n in self.groups.items():
            self.sems[g] = asyncio.Semaphore(n)
        started.set()
        self.loop.run_forever()

    def handle(self):
        from pyray.actor import ActorHandle, _method_meta
        meta = {"class_name": self.cls.__name__, "methods": _method_meta(self.cls),
                "is_async": self.is_async}
        return ActorHandle(self.actor_id, meta)

    def _refuse(self, call):
        """Replies that the actor stopped before `call` could run."""
        rt = self.runtime
        err = exc.ActorDiedError(None, (
            f"The actor {self.actor_id.hex()} exited before it could run {call.name} "
            "(exit_actor() or out of scope)."), self.actor_id)
        rt.send_replies(call.dest, [rt.error_reply(call, err, False)])

    def submit(self, call):
        """Hands a call to the actor's threads or event loop (main thread).

        Per call: one lock acquisition here and one when it ends (_done);
        an async call reaches the event loop in a batch with the others
        that arrived meanwhile (one wake-up of the loop, see _start_pending)."""
        if self.runtime.exiting:
            self._refuse(call)      # arrived after exit_actor() or the terminate message
            return
        group = call.group
        if group is not None and group not in self.groups:
            rt = self.runtime
            err = ValueError(f"The actor has no concurrency group {group!r} (its groups: "
                             f"{sorted(self.groups)}).")
            rt.send_replies(call.dest, [rt.error_reply(call, _task_error(call.name, err),
                                                       False)])
            return
        with self.idle:
            self.inflight += 1
            self.calls[call.task_id] = call
            if self.loop is None:
                (self.pool if group is None else self.pools[group]).submit(call)
                return
        self.pending.append(call)
        if not self.wake_scheduled:
            self.wake_scheduled = True
            self.loop.call_soon_threadsafe(self._start_pending)

    def _start_pending(self):
        """Starts the async calls submit() queued (event loop thread)."""
        self.wake_scheduled = False     # first: a call queued from now on wakes us again
        pending = self.pending
        create = self.loop.create_task
        while pending:
            create(self._run_async(pending.popleft()))

    def cancel(self, task_id):
        """cancel() of a call of this actor that has arrived: it replies
        TaskCancelledError.  One that has not started never runs; a running
        one is not interrupted (an actor has state), except an async call,
        whose asyncio task is cancelled.  False if no such call is here."""
        rt = self.runtime
        with self.idle:
            call = self.calls.get(task_id)
            if call is None and rt.running_task_id != task_id:
                return False
            self.cancelled_calls.add(task_id)
        if call is not None and self.loop is not None:
            # one that has not started yet sees cancelled_calls when it starts
            self.loop.call_soon_threadsafe(self._cancel_async, call)
        return True

    @staticmethod
    def _cancel_async(call):
        if call.task is not None:
            call.task.cancel()

    def _done(self, call, result, err, refused=False):
        """A call ended: its reply goes out (unless it was refused, which
        replied already), and it no longer counts as in flight."""
        if not refused:
            rt = self.runtime
            rt.send_replies(call.dest, [rt.complete(call, result, err)])
            task_events.finished(call.task_id, err)
        with self.idle:
            self.calls.pop(call.task_id, None)
            self.inflight -= 1
            if self.loop is None:
                group = call.group
                (self.pool if group is None else self.pools[group]).inflight -= 1
            if self.exit_started:
                self.idle.notify_all()
        if isinstance(err, ActorExit):
            self.exit_now()

    def _run_threaded(self, call):
        if self.exited:
            self._refuse(call)
            return self._done(call, None, None, refused=True)
        if call.task_id in self.cancelled_calls:
            return self._done(call, None, exc.TaskCancelledError(call.task_id.hex()))
        token = running_call.set(call.ctx)
        try:
            result, err = call.fn(*call.args, **call.kwargs), None
            if call.stream is not None:
                from pyray._private.generators import run_items
                result = run_items(self.runtime, call, result)
        except BaseException as e:  # noqa: BLE001 - goes to the caller
            result, err = None, e
            self.exited = self.exited or isinstance(e, ActorExit)
        finally:
            running_call.reset(token)
        self._done(call, result, err)

    async def _run_async(self, call):
        group = call.group
        try:
            # from here on a CancelledError is ours to answer: cancel()
            # interrupts only a started task (one cancelled before its first
            # step would end without running this coroutine's handlers)
            call.task = asyncio.current_task()
            if call.task_id in self.cancelled_calls:
                raise asyncio.CancelledError
            async with (self.sem if group is None else self.sems[group]):
                if self.exited:
                    self._refuse(call)
                    return self._done(call, None, None, refused=True)
                running_call.set(call.ctx)      # this task's own context
                try:
                    if call.task_id in self.cancelled_calls:
                        raise exc.TaskCancelledError(call.task_id.hex())
                    result = call.fn(*call.args, **call.kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                    if call.stream is not None:
                        from pyray._private.generators import run_items_async
                        result = await run_items_async(self.runtime, call, result)
                    err = None
                except BaseException as e:  # noqa: BLE001 - goes to the caller
                    result, err = None, e
                    self.exited = self.exited or isinstance(e, ActorExit)
        except asyncio.CancelledError:      # cancel() before or while it waited for its turn
            result, err = None, exc.TaskCancelledError(call.task_id.hex())
        self._done(call, result, err)

    def exit_now(self):
        """Leaves the process after telling the GCS that this is on purpose.

        A sync actor leaves at once.  A concurrent one first lets the calls
        handed to its threads or event loop finish (an out-of-scope actor
        stops after the calls sent to it; exit_actor() lets the others that
        are running complete), on a thread of its own: this returns, so that
        neither the main thread (which refuses calls that arrive meanwhile)
        nor the event loop (which runs those calls) is blocked."""
        if self.concurrent:
            with self.idle:
                if self.exit_started:
                    return
                self.exit_started = True
            threading.Thread(target=self._leave_when_idle, name="pyray-actor-exit",
                             daemon=True).start()
            return
        self._leave()

    def _leave_when_idle(self):
        with self.idle:
            while self.inflight:
                self.idle.wait()
        self._leave()

    def _leave(self):
        rt = self.runtime
        cw = rt.cw
        cw.out.send(cw.gcs_addr, ACTOR_EXITING.make(self.actor_id))
        rt.flush_all()
        flush_std()
        # zmq hands queued messages to the kernel from its I/O thread within
        # microseconds; a short pause before _exit lets it finish
        import time
        time.sleep(0.02)
        os._exit(0)


def _ray_ready(self):
    return True


def _ray_call(self, fn, *args, **kwargs):
    return fn(self, *args, **kwargs)


def _ray_terminate(self):
    from pyray.actor import exit_actor
    exit_actor()


# the methods every Ray actor has (ActorHandle reaches them by these names)
BUILTIN_METHODS = {"__ray_ready__": _ray_ready, "__ray_call__": _ray_call,
                   "__ray_terminate__": _ray_terminate}


def add_builtin_methods(cls):
    """Gives the actor's class (in the process that hosts it) the built-in
    methods it does not define itself."""
    for name, fn in BUILTIN_METHODS.items():
        if name not in cls.__dict__ and not hasattr(cls, name):
            setattr(cls, name, fn)


class CallThreads:
    """The threads of a threaded actor's concurrency group (or of its
    default group, max_concurrency of them), taking calls from one queue.
    A thread starts when a call arrives while every thread is busy, up to
    the group's size, as a ThreadPoolExecutor would, but without a future
    and its locks per call.  submit() and the ``inflight`` count belong to
    the actor's lock (ActorInstance.idle)."""
    __slots__ = ("size", "name", "run", "queue", "threads", "inflight")

    def __init__(self, size, name, run):
        self.size = size
        self.name = name
        self.run = run                  # runs one call and decrements inflight
        self.queue = queue.SimpleQueue()
        self.threads = 0
        self.inflight = 0               # calls submitted and not finished

    def submit(self, call):
        self.inflight += 1
        self.queue.put(call)
        if self.inflight > self.threads < self.size:
            threading.Thread(target=self._serve, name=f"{self.name}_{self.threads}",
                             daemon=True).start()
            self.threads += 1

    def _serve(self):
        get, run = self.queue.get, self.run
        while True:
            call = get()
            try:
                run(call)
            except BaseException:  # noqa: BLE001 - the thread keeps serving calls
                log.exception("actor call %s failed outside the method", call.name)


def _method_groups(cls):
    """method name -> the concurrency group it was declared in (@method)."""
    out = {}
    for name, fn in inspect.getmembers(cls, predicate=callable):
        g = getattr(fn, "__pyray_method_options__", {}).get("concurrency_group")
        if g is not None:
            out[name] = g
    return out


def _task_error(name, err):
    from pyray._private.task_executor import _task_error as wrap
    return wrap(name, err)
