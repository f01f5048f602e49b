"""HTTP between the proxy and a replica.

The proxy sends a request as one compact payload: the ASGI scope's plain
fields and the whole body.  A replica answers ("f", status, headers, body)
for a whole response (one round trip), or ("s", key, messages) for a
streaming one, whose rest the proxy reads from the replica's stream_http.
Return values become responses as in Ray Serve: None, bytes and str as
text/plain, anything else as JSON, a starlette Response as it is, a
generator as a streamed response.
"""
from __future__ import annotations

import inspect
import json

TEXT = b"text/plain"
TEXT_UTF8 = b"text/plain; charset=utf-8"
JSON = b"application/json"
ERROR_500 = ("f", 500, [(b"content-type", TEXT_UTF8)], b"Internal Server Error")
ERROR_MARK = object()

SCOPE_KEYS = ("type", "http_version", "method", "scheme", "path", "raw_path", "root_path",
              "query_string", "headers", "client", "server")


def receiver(body: bytes):
    """An ASGI receive() that gives the body once, then waits for a disconnect
    that never comes (the proxy cancels the app when the client goes)."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        import asyncio
        await asyncio.Event().wait()
    return receive


def make_request(scope, body):
    from starlette.requests import Request
    r = Request(scope, receiver(body))
    r._body = body
    return r


def _json_body(obj) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        from fastapi.encoders import jsonable_encoder
        return json.dumps(jsonable_encoder(obj), separators=(",", ":")).encode()


def whole_response(result):
    """The reply tuple for a result that needs no ASGI run, else None."""
    if result is None:
        return ("f", 200, [(b"content-type", TEXT)], b"")
    t = type(result)
    if t is str:
        return ("f", 200, [(b"content-type", TEXT_UTF8)], result.encode())
    if t is bytes:
        return ("f", 200, [(b"content-type", TEXT)], result)
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        return None
    from starlette.responses import Response, StreamingResponse
    if isinstance(result, Response):
        if isinstance(result, StreamingResponse) or result.background is not None or not \
                hasattr(result, "body"):
            return None
        return ("f", result.status_code, list(result.raw_headers), bytes(result.body))
    return ("f", 200, [(b"content-type", JSON)], _json_body(result))


def as_asgi(result):
    """A result whole_response() left: a Response, or a generator to stream."""
    from starlette.responses import StreamingResponse
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        return StreamingResponse(result)
    return result


def collect(msgs):
    status, headers, body = 500, [], []
    for m in msgs:
        if m["type"] == "http.response.start":
            status = m["status"]
            headers = [tuple(h) for h in m.get("headers", ())]
        elif m["type"] == "http.response.body":
            body.append(m.get("body", b""))
    return ("f", status, headers, b"".join(body))


def bind_ingress(app, cls, obj):
    """@serve.ingress: route handlers defined as the class's methods are bound
    to this replica's instance (FastAPI sees them without `self`)."""
    try:
        from fastapi.routing import APIRoute, APIWebSocketRoute
    except ImportError:
        return app
    funcs = {}
    for klass in reversed(cls.__mro__):
        for name, v in vars(klass).items():
            if inspect.isfunction(v):
                funcs[id(v)] = name
    routes = app.router.routes
    for i, route in enumerate(routes):
        if isinstance(route, APIRoute) and id(route.endpoint) in funcs:
            bound = getattr(obj, funcs[id(route.endpoint)])
            routes[i] = APIRoute(
                route.path, bound, response_model=route.response_model,
                status_code=route.status_code, tags=route.tags,
                dependencies=route.dependencies, summary=route.summary,
                description=route.description,
                response_description=route.response_description,
                responses=route.responses, deprecated=route.deprecated,
                methods=route.methods, operation_id=route.operation_id,
                include_in_schema=route.include_in_schema,
                response_class=route.response_class, name=route.name,
                dependency_overrides_provider=route.dependency_overrides_provider)
        elif isinstance(route, APIWebSocketRoute) and id(route.endpoint) in funcs:
            bound = getattr(obj, funcs[id(route.endpoint)])
            routes[i] = APIWebSocketRoute(
                route.path, bound, name=route.name, dependencies=route.dependencies,
                dependency_overrides_provider=getattr(route, "dependency_overrides_provider",
                                                      None))
    return app
