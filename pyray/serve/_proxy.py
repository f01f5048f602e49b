"""The HTTP proxy: an async actor running uvicorn with a bare ASGI app that
routes each request by the longest matching route prefix to the
application's ingress deployment (through the same router as handles)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket

from pyray.exceptions import RayActorError, RayTaskError
from pyray.serve.exceptions import BackPressureError, DeploymentUnavailableError

log = logging.getLogger("pyray.serve.proxy")

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]


async def _reply(send, status, body, headers=_TEXT):
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive):
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ServeProxy:
    def __init__(self):
        self.routes = {}          # route prefix -> (app name, ingress deployment)
        self._ordered = []
        self.server = None
        self.client = None

    async def ready(self):
        return True

    async def update_routes(self, routes):
        self.routes = dict(routes)
        self._ordered = sorted(self.routes.items(), key=lambda kv: -len(kv[0]))
        if self.client is not None:
            for target in self.routes.values():
                self.client.router(target)   # learn the replicas before the first request
        return True

    async def start(self, host, port, controller, keep_alive_timeout_s=5):
        import uvicorn
        from pyray.serve._client import Client
        self.client = Client(controller)
        # IPPROTO_TCP given: asyncio sets TCP_NODELAY only on such sockets (without
        # it a response's two writes meet the client's delayed ACK: 40 ms each)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            raise OSError(f"The Serve HTTP proxy could not listen on {host}:{port}: {e}. "
                          "Pick another port with serve.start(http_options={'port': ...}).")
        sock.listen(2048)
        sock.setblocking(False)
        config = uvicorn.Config(self.app, lifespan="off", log_level="warning", interface="asgi3",
                                proxy_headers=False,
                                access_log=False, timeout_keep_alive=keep_alive_timeout_s)
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None
        asyncio.get_running_loop().create_task(self.server.serve(sockets=[sock]))
        for _ in range(500):
            if self.server.started:
                return sock.getsockname()[1]
            await asyncio.sleep(0.01)
        raise RuntimeError("The Serve HTTP proxy did not start within 5 s.")

    async def stop(self):
        if self.server is not None:
            self.server.should_exit = True
            await asyncio.sleep(0.2)
        if self.client is not None:
            self.client.stop()
        return True

    async def _websocket(self, scope, receive, send):
        """A WebSocket session, relayed message by message to a replica's
        ingress app (handle_ws / ws_receive)."""
        prefix, target = self._match(scope["path"])
        if target is None:
            return await send({"type": "websocket.close", "code": 1000})
        sub = {k: scope.get(k) for k in ("type", "http_version", "scheme", "path", "raw_path",
                                         "query_string", "headers", "client", "server",
                                         "subprotocols")}
        sub["root_path"] = "" if prefix == "/" else prefix
        key = os.urandom(8).hex()
        try:
            out = self.client.router(target).assign(None, (key, sub), None, 3)
            if not isinstance(out, tuple):
                out = await asyncio.wrap_future(out)
        except (BackPressureError, DeploymentUnavailableError):
            return await send({"type": "websocket.close", "code": 1013})
        counted, actor = out

        async def pump_in():
            while True:
                msg = await receive()
                actor.ws_receive.remote(key, msg)
                if msg["type"] == "websocket.disconnect":
                    return

        pumping = asyncio.get_running_loop().create_task(pump_in())
        try:
            async for ref in counted.gen:
                await send(await ref)
        except (RayActorError, RayTaskError) as e:
            log.warning("WebSocket %s broke off: %s", scope["path"], e)
        finally:
            counted.release()
            pumping.cancel()

    def _match(self, path):
        for prefix, target in self._ordered:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return prefix, target
        return None, None

    async def app(self, scope, receive, send):
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send)
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path.startswith("/-/"):
            if path == "/-/healthz":
                return await _reply(send, 200, b"success")
            if path == "/-/routes":
                body = json.dumps({p: t[0] for p, t in self.routes.items()}).encode()
                return await _reply(send, 200, body, [(b"content-type", b"application/json")])
        prefix, target = self._match(path)
        if target is None:
            msg = (f"Path '{path}' not found. Ping http://.../-/routes for available routes.")
            return await _reply(send, 404, msg.encode())
        body = await _read_body(receive)
        if body is None:
            return
        sub = {"type": "http", "http_version": scope.get("http_version", "1.1"),
               "method": scope["method"], "scheme": scope.get("scheme", "http"),
               "path": path, "raw_path": scope.get("raw_path"),
               "root_path": "" if prefix == "/" else prefix,
               "query_string": scope.get("query_string", b""),
               "headers": scope.get("headers", []), "client": scope.get("client"),
               "server": scope.get("server")}
        router = self.client.router(target)
        try:
            out = router.assign(None, (sub, body), None, 2)
            if not isinstance(out, tuple):
                out = await asyncio.wrap_future(out)
            fut, actor = out
            result = await asyncio.wrap_future(fut)
        except BackPressureError as e:
            return await _reply(send, 503, str(e).encode())
        except DeploymentUnavailableError as e:
            return await _reply(send, 503, str(e).encode())
        except (RayActorError, RayTaskError) as e:
            log.warning("request %s %s failed: %s", scope["method"], path, e)
            return await _reply(send, 500, b"Internal Server Error")
        if result[0] == "f":
            await send({"type": "http.response.start", "status": result[1],
                        "headers": result[2]})
            await send({"type": "http.response.body", "body": result[3]})
            return
        _, key, msgs = result
        ended = False
        for m in msgs:
            await send(m)
        try:
            async for ref in actor.stream_http.remote(key):
                for m in await ref:
                    await send(m)
                    if m["type"] == "http.response.body" and not m.get("more_body"):
                        ended = True
        except (RayActorError, RayTaskError) as e:
            log.warning("streamed response %s %s broke off: %s", scope["method"], path, e)
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
