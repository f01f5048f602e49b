"""The dashboard's version and the cluster's nodes and resources (the
front page is the web interface's: modules/ui.py)."""
from __future__ import annotations

OPEN_ON_LOOPBACK = ("/api/version", "/api/cluster_status")

# the REST API's version, as Ray's /api/version reports it
API_VERSION = "2"


def _status():
    import pyray
    nodes = pyray.nodes()
    return {"nodes": nodes, "cluster_resources": pyray.cluster_resources(),
            "available_resources": pyray.available_resources(),
            "num_alive_nodes": sum(1 for n in nodes if n["Alive"])}


def routes(dashboard):
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    import pyray

    async def version(request):
        return JSONResponse({"version": API_VERSION, "ray_version": pyray.__version__,
                             "pyray_version": pyray.__version__, "ray_commit": "",
                             "session_name": dashboard.session_dir.rstrip("/").rsplit("/", 1)[-1]})

    async def cluster_status(request):
        return JSONResponse({"result": True, "msg": "", "data": await dashboard.call(_status)})

    return [Route("/api/version", version),
            Route("/api/cluster_status", cluster_status)]
