"""Ray's state API over HTTP (docs/state.md): GET /api/v0/<actors|tasks|
nodes|objects|placement_groups|workers|jobs>, /api/v0/<tasks|actors|
objects>/summarize and /api/v0/tasks/timeline, with Ray's query parameters
and response shape.  The answers come from pyray.util.state.data, as the
Python functions' do."""
from __future__ import annotations

_LISTS = ("actors", "tasks", "nodes", "objects", "placement_groups", "workers", "jobs")

# read-only views of the cluster, like /api/cluster_status: open on loopback
OPEN_ON_LOOPBACK = tuple(f"/api/v0/{r}" for r in _LISTS) + tuple(
    f"/api/v0/{r}/summarize" for r in ("tasks", "actors", "objects")) + (
    "/api/v0/tasks/timeline",)


def routes(dashboard):
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from pyray.util.state import data

    async def answer(request):
        params = {}
        for k, v in request.query_params.multi_items():
            params.setdefault(k, []).append(v)
        status, body = await dashboard.call(data.http_get, request.url.path, params)
        return JSONResponse(body, status_code=status)

    return [Route("/api/v0/{resource}", answer), Route("/api/v0/{resource}/{action}", answer)]
