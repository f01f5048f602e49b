"""The actor living in a worker: its instance and how its calls run.

max_concurrency=1 (the default for sync actors): calls run on the worker's
main thread, one at a time, in arrival order.  max_concurrency=N: calls run
on N threads.  An actor with async methods runs them on one event loop,
at most max_concurrency at once (default 1000)."""
from __future__ import annotations

import asyncio
import inspect
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from pyray import exceptions as exc
from pyray._private.protocol import Op
from pyray.actor import ActorExit


class ActorInstance:
    def __init__(self, runtime, actor_id, cls, obj, options, restarts):
        self.runtime = runtime
        self.actor_id = actor_id
        self.cls = cls
        self.obj = obj
        self.restarts = restarts
        self.max_concurrency = options.get("max_concurrency", 1)
        self.is_async = options.get("is_async", False)
        self.concurrent = self.is_async or self.max_concurrency > 1
        self.pool = None
        self.loop = None
        self.inflight = 0                    # calls handed to threads or the loop
        self.idle = threading.Condition()
        if self.is_async:
            self.loop = asyncio.new_event_loop()
            started = threading.Event()
            t = threading.Thread(target=self._run_loop, args=(started,),
                                 name="pyray-actor-loop", daemon=True)
            t.start()
            started.wait()
        elif self.max_concurrency > 1:
            self.pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="pyray-actor")

    def _run_loop(self, started):
        asyncio.set_event_loop(self.loop)
        self.sem = asyncio.Semaphore(self.max_concurrency)
        started.set()
        self.loop.run_forever()

    def handle(self):
        from pyray.actor import ActorHandle, _method_meta
        meta = {"class_name": self.cls.__name__, "methods": _method_meta(self.cls),
                "is_async": self.is_async}
        return ActorHandle(self.actor_id, meta)

    def submit(self, call):
        rt = self.runtime
        if rt.exiting:
            # the actor is stopping: a call that arrives now never runs
            err = exc.ActorDiedError(None, (
                f"The actor {self.actor_id.hex()} exited before it could run "
                f"{call.name} (exit_actor() or out of scope)."), self.actor_id)
            rt.send_replies(call.dest, [rt._error_reply(call, err, False)])
            return
        with self.idle:
            self.inflight += 1
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(self._run_async(call), self.loop)
        else:
            self.pool.submit(self._run_threaded, call)

    def _done(self, call, result, err):
        rt = self.runtime
        rt.send_replies(call.dest, [rt._complete(call, result, err)])
        with self.idle:
            self.inflight -= 1
            self.idle.notify_all()
        if isinstance(err, ActorExit):
            self.exit_now(drain=False)

    def _run_threaded(self, call):
        try:
            result, err = call.fn(*call.args, **call.kwargs), None
        except BaseException as e:  # noqa: BLE001 - goes to the caller
            result, err = None, e
        self._done(call, result, err)

    async def _run_async(self, call):
        async with self.sem:
            try:
                result = call.fn(*call.args, **call.kwargs)
                if inspect.isawaitable(result):
                    result = await result
                err = None
            except BaseException as e:  # noqa: BLE001 - goes to the caller
                result, err = None, e
        self._done(call, result, err)

    def exit_now(self, drain=True):
        """Leaves the process after telling the GCS that this is on purpose.
        With `drain`, calls already running on threads or the event loop
        finish first (an out-of-scope actor stops after the calls sent to
        it); exit_actor() inside a call leaves at once."""
        rt = self.runtime
        if drain and self.concurrent:
            with self.idle:
                while self.inflight:
                    self.idle.wait()
        cw = rt.cw
        cw.out.send(cw.gcs_addr, (Op.ACTOR_EXITING, self.actor_id))
        rt._flush_all()
        try:
            import sys
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        # zmq hands queued messages to the kernel from its I/O thread within
        # microseconds; a short pause before _exit lets it finish
        import time
        time.sleep(0.02)
        os._exit(0)
