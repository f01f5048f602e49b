"""The HTTP proxy over loopback: starlette requests, return-value
conversion, FastAPI ingress, streaming, routing and the error codes."""
import asyncio
import http.client
import json
import time

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse

from pyray import serve
from servelib import http_request, wait_for


@serve.deployment
class Echo:
    async def __call__(self, request: Request):
        body = await request.body()
        data = await request.json() if body else None
        return {"method": request.method, "path": request.url.path,
                "query": dict(request.query_params), "x": request.headers.get("x-test"),
                "json": data}


def test_starlette_request_and_json_reply(serve_port):
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    status, headers, body = http_request(serve_port, "POST", "/echo/sub?a=1&b=two",
                                         body={"k": [1, 2]}, headers={"x-test": "yes"})
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"method": "POST", "path": "/echo/sub",
                                "query": {"a": "1", "b": "two"}, "x": "yes",
                                "json": {"k": [1, 2]}}


def test_return_values_become_responses(serve_port):
    @serve.deployment
    class Kinds:
        def __call__(self, request: Request):
            kind = request.query_params["kind"]
            if kind == "str":
                return "héllo"
            if kind == "bytes":
                return b"\x00\x01"
            if kind == "none":
                return None
            if kind == "resp":
                return PlainTextResponse("teapot", status_code=418, headers={"x-a": "b"})
            return [1, "two"]

    serve.run(Kinds.bind(), name="kinds", route_prefix="/kinds")
    s, h, b = http_request(serve_port, "GET", "/kinds?kind=str")
    assert (s, h["content-type"], b) == (200, "text/plain; charset=utf-8", "héllo".encode())
    s, h, b = http_request(serve_port, "GET", "/kinds?kind=bytes")
    assert (s, b) == (200, b"\x00\x01")
    s, h, b = http_request(serve_port, "GET", "/kinds?kind=none")
    assert (s, b) == (200, b"")
    s, h, b = http_request(serve_port, "GET", "/kinds?kind=resp")
    assert (s, h["x-a"], b) == (418, "b", b"teapot")
    s, h, b = http_request(serve_port, "GET", "/kinds?kind=list")
    assert (s, json.loads(b)) == (200, [1, "two"])


api = FastAPI()


class Item(BaseModel):
    name: str
    price: float


@serve.deployment
@serve.ingress(api)
class Shop:
    def __init__(self, tax):
        self.tax = tax

    @api.get("/items/{item_id}")
    def get_item(self, item_id: int, q: str = "none"):
        return {"id": item_id, "q": q}

    @api.post("/items")
    async def create(self, item: Item):
        return {"name": item.name, "total": round(item.price * (1 + self.tax), 2)}

    @api.get("/stream")
    def stream(self):
        def gen():
            for i in range(3):
                yield f"chunk{i};"
        return StreamingResponse(gen(), media_type="text/plain")


wsapi = FastAPI()


@serve.deployment
@serve.ingress(wsapi)
class Shouter:
    def __init__(self):
        self.mark = "!"

    @wsapi.websocket("/ws")
    async def shout(self, websocket: WebSocket):
        await websocket.accept()
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close()
                return
            await websocket.send_text(text.upper() + self.mark)


def test_fastapi_websocket(serve_port):
    import websocket  # websocket-client
    serve.run(Shouter.bind(), name="ws", route_prefix="/chat")
    ws = websocket.create_connection(f"ws://127.0.0.1:{serve_port}/chat/ws", timeout=30)
    try:
        ws.send("hello")
        assert ws.recv() == "HELLO!"
        ws.send("again")
        assert ws.recv() == "AGAIN!"
        ws.send("bye")
    finally:
        ws.close()


def test_fastapi_ingress(serve_port):
    serve.run(Shop.bind(0.5), name="shop", route_prefix="/shop")
    s, _, b = http_request(serve_port, "GET", "/shop/items/7?q=x")
    assert (s, json.loads(b)) == (200, {"id": 7, "q": "x"})
    s, _, b = http_request(serve_port, "POST", "/shop/items", body={"name": "a", "price": 2})
    assert (s, json.loads(b)) == (200, {"name": "a", "total": 3.0})
    s, _, b = http_request(serve_port, "POST", "/shop/items", body={"name": "a"})
    assert s == 422, "pydantic validation error"
    s, _, b = http_request(serve_port, "GET", "/shop/items/notanint")
    assert s == 422
    s, _, b = http_request(serve_port, "GET", "/shop/nothing")
    assert s == 404
    s, _, b = http_request(serve_port, "GET", "/shop/stream")
    assert (s, b) == (200, b"chunk0;chunk1;chunk2;")


def test_streaming_arrives_in_pieces(serve_port):
    @serve.deployment
    class Ticker:
        async def __call__(self, request):
            async def gen():
                for i in range(3):
                    yield f"{i}\n"
                    await asyncio.sleep(0.3)
            return StreamingResponse(gen(), media_type="text/plain")

    serve.run(Ticker.bind(), name="ticker", route_prefix="/tick")
    c = http.client.HTTPConnection("127.0.0.1", serve_port, timeout=30)
    c.request("GET", "/tick")
    r = c.getresponse()
    assert r.status == 200
    t0 = time.monotonic()
    first = r.read1(100)
    t_first = time.monotonic() - t0
    rest = r.read()
    assert (first + rest) == b"0\n1\n2\n"
    assert t_first < 0.5, f"the first chunk waited for the whole stream ({t_first:.2f}s)"
    c.close()


def test_routes_404_500_and_health(serve_port, capfd):
    @serve.deployment
    class Flaky:
        def __call__(self, request):
            if request.query_params.get("fail"):
                raise RuntimeError("boom in the replica")
            return "fine"

    @serve.deployment
    def other(request):
        return "other"

    serve.run(Flaky.bind(), name="flaky", route_prefix="/api")
    serve.run(other.bind(), name="other", route_prefix="/api/v2")
    assert http_request(serve_port, "GET", "/api")[2] == b"fine"
    assert http_request(serve_port, "GET", "/api/v2/x")[2] == b"other", "longest prefix"
    assert http_request(serve_port, "GET", "/api/v23")[2] == b"fine"
    s, _, b = http_request(serve_port, "GET", "/nowhere")
    assert s == 404 and b"/nowhere" in b
    s, _, b = http_request(serve_port, "GET", "/api?fail=1")
    assert s == 500
    seen = []

    def traceback_logged():   # the replica's log lines reach the driver
        seen.append(capfd.readouterr().err)
        text = "".join(seen)
        return "Traceback" in text and "RuntimeError: boom in the replica" in text
    wait_for(traceback_logged, timeout=10, what="the traceback in the replica's log")
    assert http_request(serve_port, "GET", "/api")[2] == b"fine", "others unaffected"
    s, _, b = http_request(serve_port, "GET", "/-/routes")
    assert json.loads(b) == {"/api": "flaky", "/api/v2": "other"}
    assert http_request(serve_port, "GET", "/-/healthz")[:3:2] == (200, b"success")


def test_past_max_queued_requests_is_503(serve_port):
    @serve.deployment(max_ongoing_requests=1, max_queued_requests=1)
    class Slow:
        async def __call__(self, request):
            await asyncio.sleep(1.0)
            return "done"

    serve.run(Slow.bind(), name="slow503", route_prefix="/slow")
    assert http_request(serve_port, "GET", "/slow")[2] == b"done"
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        futs = [ex.submit(http_request, serve_port, "GET", "/slow") for _ in range(4)]
        statuses = sorted(f.result()[0] for f in futs)
    assert statuses.count(200) == 2 and statuses.count(503) == 2, statuses
