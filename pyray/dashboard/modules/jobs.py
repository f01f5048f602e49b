"""Job submission's REST API, with Ray 2.x's paths and JSON (docs/jobs.md):

    POST   /api/jobs/                      submit: {"entrypoint", "submission_id", ...}
    GET    /api/jobs/                      every job's JobDetails
    GET    /api/jobs/{id}                  one job's JobDetails
    GET    /api/jobs/{id}/logs             {"logs": "..."}
    GET    /api/jobs/{id}/logs/tail        the log as it grows, until the job ends
    POST   /api/jobs/{id}/stop             {"stopped": bool}
    DELETE /api/jobs/{id}                  {"deleted": bool}
    GET    /api/packages/{protocol}/{name} 200 if the package is uploaded, else 404
    PUT    /api/packages/{protocol}/{name} upload a working_dir / py_modules zip

None of these is open without the cluster token.
"""
from __future__ import annotations

import asyncio
import codecs
import hashlib
import json
import os
import re

from pyray.job_submission.common import JobStatus

TAIL_POLL_S = 0.2
_PACKAGE_RE = re.compile(r"^_ray_pkg_[0-9a-f]{32}\.zip$")
MAX_PACKAGE_BYTES = int(os.environ.get("PYRAY_RUNTIME_ENV_MAX_PACKAGE_BYTES", 500 << 20))


def routes(dashboard):
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from pyray.dashboard.job_manager import JobManager
    jobs = JobManager(dashboard)

    def error(status, detail):
        return JSONResponse({"detail": detail}, status_code=status)

    async def call(fn, *args):
        """fn's result, or the HTTP error its exception means."""
        try:
            return await dashboard.call(fn, *args)
        except KeyError as err:
            return error(404, f"Job {err.args[0]} does not exist.")
        except FileExistsError as err:
            return error(400, str(err))
        except ValueError as err:
            return error(400, str(err))

    async def submit(request):
        try:
            req = json.loads(await request.body())
            assert isinstance(req, dict)
        except (ValueError, AssertionError):
            return error(400, "The request body must be a JSON object with an 'entrypoint'.")
        sid = await call(jobs.submit, req)
        if isinstance(sid, Response):
            return sid
        return JSONResponse({"job_id": sid, "submission_id": sid})

    async def list_jobs(request):
        return JSONResponse(await call(jobs.list))

    async def get_job(request):
        rec = await call(jobs.get, request.path_params["job_id"])
        return rec if isinstance(rec, Response) else JSONResponse(rec)

    async def stop_job(request):
        out = await call(jobs.stop, request.path_params["job_id"])
        return out if isinstance(out, Response) else JSONResponse({"stopped": out})

    async def delete_job(request):
        out = await call(jobs.delete, request.path_params["job_id"])
        return out if isinstance(out, Response) else JSONResponse({"deleted": out})

    async def logs(request):
        out = await call(jobs.logs, request.path_params["job_id"], 0)
        if isinstance(out, Response):
            return out
        return JSONResponse({"logs": out[0].decode(errors="replace")})

    async def tail(request):
        sid = request.path_params["job_id"]
        first = await call(jobs.get, sid)
        if isinstance(first, Response):
            return first

        async def stream():
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            offset, done = 0, False
            while True:
                data, offset = await dashboard.run_blocking(jobs.logs, sid, offset)
                if data:
                    yield decoder.decode(data)
                elif done:
                    return
                else:
                    try:
                        rec = await dashboard.call(jobs.get, sid)
                    except KeyError:
                        return
                    # once it has ended, one more read takes what is left
                    done = JobStatus(rec["status"]).is_terminal()
                    if not done:
                        await asyncio.sleep(TAIL_POLL_S)
        return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")

    def package_path(request):
        name = request.path_params["name"]
        if request.path_params["protocol"] != "gcs" or not _PACKAGE_RE.match(name):
            return None
        return jobs.package_path(name)

    async def package_exists(request):
        path = package_path(request)
        if path is None:
            return error(400, "packages are named gcs/_ray_pkg_<32 hex digits>.zip")
        if await dashboard.run_blocking(os.path.isfile, path):
            return JSONResponse({"exists": True})
        return error(404, "Package not found.")

    async def upload_package(request):
        path = package_path(request)
        if path is None:
            return error(400, "packages are named gcs/_ray_pkg_<32 hex digits>.zip")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_PACKAGE_BYTES:
                return error(413, f"The package is larger than {MAX_PACKAGE_BYTES} bytes "
                                  "(PYRAY_RUNTIME_ENV_MAX_PACKAGE_BYTES); leave large files "
                                  "out with runtime_env['excludes'].")
        name = request.path_params["name"]
        if hashlib.sha256(data).hexdigest()[:32] != name[len("_ray_pkg_"):-len(".zip")]:
            return error(400, f"The package's bytes do not match its name {name} (the name "
                              "carries the first 32 hex digits of their SHA-256).")
        await dashboard.run_blocking(_store, path, bytes(data))
        return JSONResponse({"uploaded": True})

    return [Route("/api/jobs/", submit, methods=["POST"]),
            Route("/api/jobs/", list_jobs, methods=["GET"]),
            Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
            Route("/api/jobs/{job_id}", delete_job, methods=["DELETE"]),
            Route("/api/jobs/{job_id}/stop", stop_job, methods=["POST"]),
            Route("/api/jobs/{job_id}/logs", logs, methods=["GET"]),
            Route("/api/jobs/{job_id}/logs/tail", tail, methods=["GET"]),
            Route("/api/packages/{protocol}/{name}", package_exists, methods=["GET"]),
            Route("/api/packages/{protocol}/{name}", upload_package, methods=["PUT"])]


def _store(path, data):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
