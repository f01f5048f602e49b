"""The worker process: receives tasks pushed by the owners that lease it,
runs them, and replies with their results.

worker_entry() is where a worker forked by the raylet's zygote starts.
TaskExecutor.run() is its main loop: a task (PUSH_TASK, over the task inbox
or a direct channel) is decoded (_begin: the function from its bytes, the
arguments), run (_execute), and its results go back to the owner in a
TASK_REPLIES message (_complete, send_replies): inline up to 100 KiB,
else written to the node's store.  An actor creation task makes this
worker host the actor (actor_executor.py).

Started by the raylet's zygote (a fork of a process that has already
imported pyray and numpy), so it is ready in milliseconds.  The main thread
executes tasks from the task inbox in arrival order; the core worker's I/O
thread serves everything else (replies to tasks this worker submitted,
borrowers asking for objects it owns, cancellation).
"""
from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import signal
import sys
import threading
import traceback

import zmq

from pyray import exceptions as exc
from pyray._private import task_events
from pyray._private import errors, object_ref, serialization
from pyray._private.context import ctx
from pyray._private.channel import Channel, ChannelClosed, Listener
from pyray._private.core_worker import CoreWorker
from pyray._private.ids import object_id
from pyray._private.object_ref import ObjectRef
from pyray._private.resources import captures_children
from pyray._private.store_errors import to_pyray_error
from pyray._private.protocol import (CANCEL_TASK, ERROR, IN_STORE, LOG_LINES, PROTOCOL_VERSION,
                                     PUSH_TASK, REGISTER_WORKER, TASK_REPLIES, VALUE, Op)
from pyray._private.task_spec import TERMINATE, load_function
from pyray._private.transport import bind_node_inbox, inbox_key, unsign
from pyray.actor import ActorExit as ActorExitSignal

log = logging.getLogger("pyray.worker")

# set: tasks leave CUDA_VISIBLE_DEVICES as the worker found it (Ray's switch)
_NOSET_CUDA = bool(os.environ.get("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES") or
                   os.environ.get("PYRAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"))

# plain ints: zmq's flag enums are slow to combine on the hot path
_POLLIN = int(zmq.POLLIN)
_push_task = PUSH_TASK.parse
# a PUSH_TASK of the right length is unpacked as it is (parse would build a
# named tuple of the same fields); any other length goes through parse
_PUSH_TASK_LEN = len(PUSH_TASK.fields) + 1


class TaskContext:
    __slots__ = ("task_id", "name", "gpu_ids", "owner", "shape")

    def __init__(self, task_id, name, gpu_ids, owner, shape):
        self.task_id = task_id
        self.name = name
        self.gpu_ids = gpu_ids
        self.owner = owner
        self.shape = shape


class Call:
    """A task between arrival and reply."""
    __slots__ = ("task_id", "name", "owner", "return_ids", "extra", "ctx", "fn", "args",
                 "kwargs", "reply", "dest", "group", "stream", "task")

    def __init__(self, task_id, name, owner, return_ids, extra, ctx):
        self.task_id = task_id
        self.name = name
        self.owner = owner
        self.return_ids = return_ids
        self.extra = extra
        self.ctx = ctx
        self.fn = None
        self.args = ()
        self.kwargs = {}
        self.reply = None
        self.dest = owner
        self.group = None       # an actor call's concurrency group
        self.stream = None      # a generator call: (mode, backpressure) (generators.py)
        self.task = None        # an async actor call's asyncio task, once started


class _DriverStream(io.TextIOBase):
    """sys.stdout/stderr of a worker: lines go to the job's driver, which
    prints them with a prefix naming the task and pid."""

    def __init__(self, runtime, is_err, fallback):
        self.runtime = runtime
        self.is_err = is_err
        self.fallback = fallback
        self.buf = []
        self.lock = threading.Lock()

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        with self.lock:
            self.buf.append(s)
            if "\n" in s:
                self._flush_locked(complete_lines_only=True)
        return len(s)

    def flush(self):
        with self.lock:
            self._flush_locked(False)

    def _flush_locked(self, complete_lines_only):
        text = "".join(self.buf)
        self.buf = []
        if complete_lines_only:
            cut = text.rfind("\n") + 1
            text, rest = text[:cut], text[cut:]
            if rest:
                self.buf.append(rest)
        if not text:
            return
        rt = self.runtime
        if rt.driver_addr is None:
            self.fallback.write(text)
            self.fallback.flush()
            return
        task = rt.cw.current_task
        name = task.name if task is not None else "worker"
        rt.cw.out.send(rt.driver_addr, LOG_LINES.make(f"({name} pid={os.getpid()})",
                                                      self.is_err, text))

    def isatty(self):
        return False

    def fileno(self):
        return self.fallback.fileno()


class TaskExecutor:
    """The main thread of a worker process (ctx.worker)."""

    def __init__(self, worker_id, node, config, session_dir):
        self.worker_id = worker_id
        self.node = node
        self.config = config
        self.cw = CoreWorker(session_dir=session_dir, node=node, job_id=None, config=config,
                             is_driver=False, worker_id=worker_id)
        self.cw.extra_handlers[Op.CANCEL_TASK] = self._h_cancel
        self.task_sock, self.task_addr = bind_node_inbox(
            self.cw.ctx, node, f"ipc://{session_dir}/sockets/t{worker_id.hex()[:16]}")
        self.task_key = inbox_key(self.task_sock)    # tcp: tasks come signed
        self.listener = Listener(f"{session_dir}/sockets/u{worker_id.hex()[:16]}")
        self.channels = {}
        self.poller = None
        self.fns = {}
        self.driver_addr = None
        self.job_id = None
        self.queue = collections.deque()
        self.cancelled = set()
        self.replies = {}
        self.running_task_id = None
        self.cancel_pending = None      # the running task's id once cancel() asked to interrupt it
        self.cancel_requested = None    # the same, kept for get_runtime_context().is_canceled()
        self.gpu_ids = None
        self.actor = None           # an ActorInstance (actor_executor.py) once this worker hosts an actor
        # (task id, reply) of the actor creation task this worker ran: a GCS
        # that restarted before the reply reached it sends the task again
        self.created = None
        self.exiting = False
        self.main_thread_id = threading.get_ident()
        # cancel() interrupts the running task with SIGINT sent to the main
        # thread (it also ends a blocking call such as sleep); workers ignore
        # SIGINT otherwise
        signal.signal(signal.SIGINT, self._on_cancel_signal)
        ctx.core_worker = self.cw
        ctx.mode = "worker"
        ctx.node = node
        ctx.config = config
        ctx.session_dir = session_dir
        ctx.worker = self
        object_ref._set_core_worker(self.cw)

    # ------------------------------------------------------------------
    def run(self):
        cw = self.cw
        cw.out.send(cw.raylet_addr, REGISTER_WORKER.make(
            PROTOCOL_VERSION, self.worker_id, os.getpid(), self.task_addr, cw.addr,
            self.listener.path))
        sock = self.task_sock
        poller = self.poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self.listener.fd, zmq.POLLIN)
        ppid = os.getppid()
        max_batch = self.config.max_reply_batch
        while True:
            if not self.queue:
                events = poller.poll(1000)
                if not events:
                    if os.getppid() != ppid:
                        return      # the raylet is gone
                    continue
                self._take(events)
            while self.queue:
                frames, chan = self.queue.popleft()
                dest, reply = self._execute(frames, chan)
                if self.exiting:
                    if reply is not None:
                        self.replies.setdefault(dest, []).append(reply)
                    self.flush_all()
                    # a sync actor leaves now; a concurrent one once its
                    # running calls are done, refusing new ones meanwhile
                    self.actor.exit_now()
                    continue
                if reply is None:
                    continue
                batch = self.replies.get(dest)
                if batch is None:
                    batch = self.replies[dest] = []
                batch.append(reply)
                if len(batch) >= max_batch:
                    self._flush(dest)
                if not self.queue:
                    # more work behind this call?  (batches the replies of a
                    # burst; one non-blocking read is cheaper than a poll)
                    if chan is not None:
                        self._read_more(chan)
                    else:
                        self._take(poller.poll(0))
                    if not self.queue:
                        self.flush_all()

    def _take(self, events):
        """Moves what arrived (zmq inbox, new channels, channel data) to the queue."""
        q = self.queue
        for src, _ in events:
            if src is self.task_sock:
                sock = self.task_sock
                while sock.getsockopt(zmq.EVENTS) & _POLLIN:
                    frames = sock.recv_multipart(copy=False)
                    if self.task_key is not None:
                        frames = unsign(self.task_key, frames)
                        if frames is None:
                            continue
                    q.append(([f.buffer for f in frames], None))
            elif src == self.listener.fd:
                for ch in self.listener.accept():
                    self.channels[ch.fd] = ch
                    self.poller.register(ch.fd, zmq.POLLIN)
            else:
                ch = self.channels.get(src)
                if ch is None:
                    continue
                try:
                    for frames in ch.recv_available():
                        q.append((frames, ch))
                except ChannelClosed:
                    self.poller.unregister(src)
                    del self.channels[src]
                    ch.close()

    def _read_more(self, chan):
        try:
            for frames in chan.recv_available():
                self.queue.append((frames, chan))
        except ChannelClosed:
            pass        # the poll loop sees the closed socket and drops it

    def _flush(self, dest):
        batch = self.replies.pop(dest, None)
        if batch:
            self.send_replies(dest, batch)

    def send_replies(self, dest, batch):
        msg = TASK_REPLIES.make(self.worker_id, batch)
        if isinstance(dest, Channel):
            dest.send(pickle.dumps(msg, protocol=5))
        else:
            self.cw.out.send(dest, msg)

    def flush_all(self):
        for owner in list(self.replies):
            self._flush(owner)

    # ------------------------------------------------------------------
    def _apply_job(self, job):
        self.job_id = job["job_id"]
        self.driver_addr = job["driver_addr"]
        self.cw.job_id = self.job_id
        self.cw.driver_addr = self.driver_addr
        self.cw.job_config = job
        ctx.namespace = job.get("namespace")
        for p in reversed(job.get("sys_path", ())):
            if p not in sys.path:
                sys.path.insert(0, p)
        cwd = job.get("cwd")
        if cwd and os.path.isdir(cwd):
            try:
                os.chdir(cwd)
            except OSError:
                pass
        env = sys.modules.get("pyray._private.runtime_env.worker")
        if env is not None:
            env.after_job(job)       # a runtime env's folder and paths come first
        if self.config.log_to_driver:
            sys.stdout = _DriverStream(self, False, sys.__stdout__)
            sys.stderr = _DriverStream(self, True, sys.__stderr__)

    def _load_fn(self, fn_id, fn_bytes):
        fn = self.fns.get(fn_id)
        if fn is None:
            if fn_bytes is None:
                raise exc.RaySystemError(f"worker has no function {fn_id.hex()} and none was sent")
            fn = load_function(fn_bytes)
            self.fns[fn_id] = fn
        return fn

    def _execute(self, frames, chan=None):
        """Runs one task inline; returns (reply destination, reply) or
        (None, None).  The destination is the channel the task came on, or
        the owner's inbox address for tasks that came over zmq."""
        call = self._begin(frames)
        if call is None:
            return None, None
        if chan is not None:
            call.dest = chan
        if call.reply is not None:
            return call.dest, call.reply
        if self.actor is not None and self.actor.concurrent and call.extra is None:
            self.actor.submit(call)
            return None, None
        self._enter(call)
        try:
            result = call.fn(*call.args, **call.kwargs)
            if call.stream is not None:
                result = _generators().run_items(self, call, result)
            err = None
        except BaseException as e:  # noqa: BLE001 - the user's error goes to the owner
            result, err = None, e
        finally:
            self._leave()
        reply = self.complete(call, result, err)
        task_events.finished(call.task_id, err)
        if call.extra is not None and call.extra[0] == "create":
            self.created = (call.task_id, reply)
        return call.dest, reply

    def _begin(self, frames):
        try:
            msg = pickle.loads(frames[0])
            if len(msg) != _PUSH_TASK_LEN:
                msg = _push_task(msg)       # raises ProtocolError naming the fields
            (_, task_id, fn_id, fn_bytes, name, data, nbuf, resolved, num_returns, owner, attempt,
             gpu_ids, job, actor, extra, shape, events) = msg
        except Exception as err:  # noqa: BLE001
            log.warning("dropped a malformed task message: %s", err)
            return None
        if job is not None and self.job_id is None:
            self._apply_job(job)
        group = None
        if actor is not None and extra is None:
            group, shape = shape, None      # an actor call carries its concurrency group
        if shape is not None and type(shape) is not dict and captures_children(shape):
            # its tasks and actors join its placement group from now on
            self.cw.pg_capture = True
        if gpu_ids is not None and gpu_ids != self.gpu_ids:
            self.gpu_ids = gpu_ids
            # as Ray: the task's GPUs, and "" (no GPU visible) for a task
            # that asked for none, unless RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES
            if not _NOSET_CUDA:
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)
        if actor is not None and extra is None and self.actor is not None and name == fn_id:
            name = f"{self.actor.cls.__name__}.{name}"     # an actor call: Class.method
        stream = None
        if type(num_returns) is not int:    # a generator: (mode, backpressure)
            stream, num_returns = num_returns, 1
        call = Call(task_id, name, owner, [object_id(task_id, i + 1) for i in range(num_returns)],
                    extra, TaskContext(task_id, name, gpu_ids or self.gpu_ids, owner, shape))
        call.stream = stream
        if extra is not None and self.created is not None and self.created[0] == task_id:
            call.reply = self.created[1]
            return call
        if task_id in self.cancelled:
            self.cancelled.discard(task_id)
            call.reply = self.error_reply(call, exc.TaskCancelledError(task_id.hex()), False)
            return call
        try:
            if actor is not None and extra is None:
                if fn_id == TERMINATE:
                    self.exiting = True
                    return None
                call.fn = getattr(self.actor.obj, fn_id)
                call.group = group or self.actor.method_groups.get(fn_id)
            else:
                call.fn = self._load_fn(fn_id, fn_bytes)
                if extra is not None and extra[0] == "create":
                    call.fn = self._actor_creator(call.fn, actor, extra)
            if nbuf < 0:     # large arguments travel through the store
                args, kwargs = self._stored_args(data, owner)
            else:
                args, kwargs = pickle.loads(data, buffers=frames[1:1 + nbuf])
            if args or kwargs:
                args, kwargs = self._resolve_args(args, kwargs, resolved)
            call.args, call.kwargs = args, kwargs
        except BaseException as err:  # noqa: BLE001 - reported to the owner
            call.reply = self.error_reply(call, _task_error(name, err), True)
            return call
        task_events.started(task_id, name, actor, extra, attempt, events)
        return call

    def _stored_args(self, oid, owner):
        """A task's arguments put in the store by its owner: in this node's
        store, or (the owner is on another node) fetched through the owner."""
        import plasma
        try:
            buf = self.cw.plasma.get(oid, timeout=self.config.rpc_timeout_s)
        except plasma.ObjectNotFoundError:
            return self.cw.get(ObjectRef(oid, owner))
        except plasma.PlasmaError as err:
            raise to_pyray_error(err, oid.hex(), owner) from None
        return serialization.loads_store(buf)[1]

    def _enter(self, call):
        self.cw.current_task = call.ctx
        self.running_task_id = call.task_id

    def _leave(self):
        self.running_task_id = None
        self.cw.current_task = None

    def error_reply(self, call, err, retry):
        payload = errors.encode(err)
        return (call.task_id, [(oid, ERROR, payload) for oid in call.return_ids], None, retry)

    def complete(self, call, result, err):
        """Builds the reply of a finished call (result or exception)."""
        call.args = call.kwargs = None
        if self.actor is not None and self.actor.cancelled_calls and \
                call.task_id in self.actor.cancelled_calls:
            self.actor.cancelled_calls.discard(call.task_id)
            result, err = None, exc.TaskCancelledError(call.task_id.hex())
        if err is None:
            try:
                results, contained_at = self._store_returns(call.task_id, call.name, result,
                                                            call.return_ids)
                reply = (call.task_id, results, contained_at, False)
            except BaseException as e:  # noqa: BLE001
                err = e
        if err is not None:
            if isinstance(err, ActorExitSignal):
                reply = self.error_reply(call, exc.RayActorError(
                    error_msg="The actor exited intentionally (exit_actor())."), False)
                self.exiting = True
            elif isinstance(err, (KeyboardInterrupt, exc.TaskCancelledError)):
                reply = self.error_reply(call, exc.TaskCancelledError(call.task_id.hex()), False)
            else:
                reply = self.error_reply(call, _task_error(call.name, err), True)
        del result
        for stream in (sys.stdout, sys.stderr):
            if type(stream) is _DriverStream and stream.buf:
                stream.flush()          # a partial line the task printed
        cw = self.cw
        if cw.decref_q:
            with cw.lock:
                if cw.decref_q:
                    cw.drain_decrefs()
        if cw.new_foreign:
            cw.register_borrows()
        return reply

    def _actor_creator(self, cls, actor_id, extra):
        _, options, restarts = extra

        def create(*args, **kwargs):
            from pyray._private.actor_executor import ActorInstance, add_builtin_methods
            add_builtin_methods(cls)
            obj = cls(*args, **kwargs)
            self.actor = ActorInstance(self, actor_id, cls, obj, options, restarts)
            return None
        return create

    def _resolve_args(self, args, kwargs, resolved):
        """Top-level ObjectRef arguments are replaced by their values."""
        def value(ref):
            if resolved is not None:
                r = resolved.get(ref._id)
                if r is not None:
                    return serialization.loads_inline(r[1], ref)
            return self.cw.get(ref)
        if any(type(a) is ObjectRef for a in args):
            args = tuple(value(a) if type(a) is ObjectRef else a for a in args)
        if kwargs and any(type(v) is ObjectRef for v in kwargs.values()):
            kwargs = {k: (value(v) if type(v) is ObjectRef else v) for k, v in kwargs.items()}
        return args, kwargs

    def _store_returns(self, task_id, name, result, return_ids):
        n = len(return_ids)
        if n == 0:
            return [], None
        if n == 1:
            values = (result,)
        else:
            try:
                values = tuple(result)
            except TypeError:
                raise ValueError(f"Task {name} has num_returns={n} but returned a "
                                 f"non-iterable {type(result).__name__}") from None
            if len(values) != n:
                raise ValueError(f"Task {name} has num_returns={n} but returned "
                                 f"{len(values)} values")
        cw = self.cw
        out = []
        contained_at = None
        limit = self.config.max_inline_bytes
        for oid, v in zip(return_ids, values):
            ser = serialization.serialize(v)
            if ser.nbytes <= limit or cw.plasma is None:
                out.append((oid, VALUE, serialization.inline_payload(ser)))
            else:
                cw.store_put(oid, ser)
                out.append((oid, IN_STORE, cw.node_id))
            if ser.refs:
                cw.pin_nested(oid, ser.refs)
                contained_at = cw.addr
        return out, contained_at

    # ------------------------------------------------------------------
    def _h_cancel(self, msg, frames):
        _, task_id, force, recursive = CANCEL_TASK.parse(msg)
        if recursive and self.actor is None and self.running_task_id == task_id:
            self._cancel_children(task_id)
        actor = self.actor
        if actor is not None and actor.cancel(task_id):
            return      # an actor call: not interrupted (async: its asyncio task is)
        if self.running_task_id == task_id:
            if force:
                os._exit(1)
            self.cancel_pending = self.cancel_requested = task_id
            signal.pthread_kill(self.main_thread_id, signal.SIGINT)
        else:
            self.cancelled.add(task_id)

    def _on_cancel_signal(self, signum, frame):
        task_id = self.cancel_pending
        if task_id is not None and task_id == self.running_task_id:
            self.cancel_pending = None
            raise KeyboardInterrupt(f"task {task_id.hex()} was cancelled")

    def _cancel_children(self, task_id):
        """recursive=True: the tasks this worker submitted and still waits
        on are cancelled too (a worker runs one task at a time, so they are
        the cancelled task's, or those of tasks before it that were left
        behind)."""
        cw = self.cw
        with cw.lock:
            children = [t for t, spec in cw.tasks_by_id.items() if not spec.cancelled]
        for child in children:
            try:
                cw.cancel_task(child, False, True)
            except Exception as err:  # noqa: BLE001 - the parent's cancel goes on
                log.warning("could not cancel child task %s: %s", child.hex(), err)


def _generators():
    from pyray._private import generators
    return generators


def _task_error(name, err):
    """The exception a failed task's caller gets: the user's, with the
    traceback from the worker."""
    if isinstance(err, exc.RayTaskError):
        return err
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return exc.RayTaskError(name, tb, err)


def redirect_output(log_path):
    """Points this process's stdout and stderr (fds 1 and 2) at its log file."""
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    except OSError:
        pass


def flush_std():
    """Flushes stdout and stderr, and user metrics not yet reported, before
    the process leaves with os._exit."""
    metrics = sys.modules.get("pyray._private.metrics")
    if metrics is not None:
        metrics.flush()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - leaving anyway
        pass


def worker_entry(worker_id, node, config, session_dir, log_path):
    """Entry point in the forked child."""
    redirect_output(log_path)
    logging.basicConfig(level=logging.WARNING, stream=sys.__stderr__,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rt = TaskExecutor(worker_id, node, config, session_dir)
    try:
        rt.run()
    finally:
        flush_std()
        os._exit(0)

