"""The replica: an async actor that hosts one instance of the user's class
(or function) and runs its requests (handle calls, HTTP requests, streams),
its reconfigure(user_config), its check_health() and its graceful stop."""
from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import sys
import time

from pyray import cloudpickle
from pyray.serve import _http
from pyray.serve.context import DeploymentID, ReplicaContext, ReplicaID, _set_replica_context

log = logging.getLogger("pyray.serve.replica")


def _setup_logging(tag):
    if not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter(f"%(levelname)s serve replica {tag}: %(message)s"))
        log.addHandler(h)
        log.propagate = False
        log.setLevel(logging.INFO)


async def _call(fn, *args, **kwargs):
    out = fn(*args, **kwargs)
    if inspect.isawaitable(out):
        out = await out
    return out


class ServeReplica:
    def __init__(self, app_name, deployment_name, replica_id, serialized):
        self.deployment_id = DeploymentID(deployment_name, app_name)
        self.replica_id = ReplicaID(replica_id, self.deployment_id)
        self._serialized = serialized
        self.obj = None
        self.is_function = False
        self.asgi = None
        self.ongoing = 0
        self.streams = {}
        self.ws_in = {}        # WebSocket session key -> the client's messages
        self._stream_ids = itertools.count()
        _setup_logging(self.replica_id.to_full_id_str())

    # lifecycle (called by the controller) ------------------------------------
    async def initialize(self, has_user_config, user_config):
        target, args, kwargs = cloudpickle.loads(self._serialized)
        self._serialized = None
        if inspect.isclass(target):
            self.obj = target(*args, **kwargs)
            app = getattr(target, "__pyray_serve_asgi_app__", None)
            if app is not None:
                self.asgi = _http.bind_ingress(app, target, self.obj)
        else:
            self.is_function = True
            self.obj = target
        _set_replica_context(ReplicaContext(self.replica_id, self.obj))
        if has_user_config:
            await self.reconfigure(user_config)
        return True

    async def reconfigure(self, user_config):
        fn = getattr(self.obj, "reconfigure", None)
        if fn is None or self.is_function:
            raise ValueError(f"user_config was given for {self.deployment_id}, but its class "
                             "has no reconfigure(self, config) method to receive it.")
        await _call(fn, user_config)
        return True

    async def check_health(self):
        fn = None if self.is_function else getattr(self.obj, "check_health", None)
        if fn is not None:
            await _call(fn)
        return True

    async def num_ongoing(self):
        return self.ongoing

    async def prepare_for_shutdown(self, wait_loop_s, timeout_s):
        """Waits for in-flight requests (up to timeout_s), then runs __del__."""
        deadline = time.monotonic() + timeout_s
        wait = min(wait_loop_s, 0.5)   # routers drop this replica within ms of the change
        while True:
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = wait_loop_s
            if self.ongoing == 0 and not self.streams or time.monotonic() >= deadline:
                break
        fn = None if self.is_function else getattr(type(self.obj), "__del__", None)
        if fn is not None:
            try:
                await _call(fn, self.obj)
            except Exception:  # noqa: BLE001 - logged, the replica stops anyway
                log.exception("__del__ raised during shutdown")
        return True

    # requests ---------------------------------------------------------------
    def _method(self, name):
        if self.is_function:
            if name != "__call__":
                raise AttributeError(f"{self.deployment_id} is a function deployment: it has "
                                     f"no method {name!r}.")
            return self.obj
        try:
            return getattr(self.obj, name)
        except AttributeError:
            raise AttributeError(f"{self.deployment_id} has no method {name!r}.") from None

    async def handle_request(self, method, *args, **kwargs):
        self.ongoing += 1
        try:
            out = self._method(method)(*args, **kwargs)
            if inspect.isawaitable(out):
                out = await out
            return out
        except Exception:
            log.exception("request to %s raised", method)
            raise
        finally:
            self.ongoing -= 1

    async def handle_request_streaming(self, method, *args, **kwargs):
        self.ongoing += 1
        try:
            out = self._method(method)(*args, **kwargs)
            if inspect.isawaitable(out):
                out = await out
            if inspect.isasyncgen(out):
                async for item in out:
                    yield item
            elif inspect.isgenerator(out):
                for item in out:
                    yield item
            else:
                raise TypeError(f"{method} was called with stream=True but returned "
                                f"{type(out).__name__}, not a generator.")
        except Exception:
            log.exception("streaming request to %s raised", method)
            raise
        finally:
            self.ongoing -= 1

    async def handle_http(self, scope, body):
        """One HTTP request: ("f", status, headers, body) when the response is
        whole, or ("s", stream key, messages so far) while it streams (the
        proxy then reads the rest from stream_http)."""
        self.ongoing += 1
        try:
            if self.asgi is not None:
                return await self._run_asgi(self.asgi, scope, body)
            request = _http.make_request(scope, body)
            try:
                fn = self._method("__call__")
                result = fn(request)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.exception("HTTP request %s %s raised", scope["method"], scope["path"])
                return _http.ERROR_500
            fast = _http.whole_response(result)
            if fast is not None:
                return fast
            return await self._run_asgi(_http.as_asgi(result), scope, body)
        finally:
            self.ongoing -= 1

    async def _run_asgi(self, app, scope, body):
        q = asyncio.Queue()
        receive = _http.receiver(body)

        async def send(msg):
            q.put_nowait(msg)

        async def run():
            try:
                await app(scope, receive, send)
            except Exception:
                log.exception("HTTP request %s %s raised", scope["method"], scope["path"])
                q.put_nowait(_http.ERROR_MARK)
            finally:
                q.put_nowait(None)

        task = asyncio.get_running_loop().create_task(run())
        msgs = []
        while True:
            msg = await q.get()
            if msg is None:
                return _http.collect(msgs)
            if msg is _http.ERROR_MARK:
                if not any(m["type"] == "http.response.start" for m in msgs):
                    await task
                    return _http.ERROR_500
                continue
            msgs.append(msg)
            if msg["type"] == "http.response.body" and msg.get("more_body"):
                key = next(self._stream_ids)
                self.streams[key] = (q, task)
                return ("s", key, msgs)

    async def handle_ws(self, key, scope):
        """A WebSocket session with the ingress app: yields the app's ASGI
        messages; the proxy feeds the client's through ws_receive."""
        inq = self.ws_in[key] = asyncio.Queue()
        outq = asyncio.Queue()
        self.ongoing += 1
        try:
            if self.asgi is None:
                yield {"type": "websocket.close", "code": 1003}
                return

            async def send(msg):
                outq.put_nowait(msg)

            async def run():
                try:
                    await self.asgi(scope, inq.get, send)
                except Exception:
                    log.exception("WebSocket %s raised", scope["path"])
                    outq.put_nowait({"type": "websocket.close", "code": 1011})
                finally:
                    outq.put_nowait(None)

            task = asyncio.get_running_loop().create_task(run())
            try:
                while True:
                    msg = await outq.get()
                    if msg is None:
                        return
                    yield msg
            finally:
                if not task.done():
                    task.cancel()
        finally:
            self.ongoing -= 1
            self.ws_in.pop(key, None)

    async def ws_receive(self, key, msg):
        q = self.ws_in.get(key)
        if q is not None:
            q.put_nowait(msg)

    async def stream_http(self, key):
        """The rest of a streamed HTTP response: lists of ASGI messages."""
        q, task = self.streams.pop(key)
        self.ongoing += 1
        try:
            while True:
                msg = await q.get()
                batch = []
                while msg is not None:
                    if msg is not _http.ERROR_MARK:
                        batch.append(msg)
                    if q.empty():
                        break
                    msg = q.get_nowait()
                if batch:
                    yield batch
                if msg is None:
                    break
        finally:
            self.ongoing -= 1
            if not task.done():
                task.cancel()
