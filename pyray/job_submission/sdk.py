"""JobSubmissionClient: submits jobs to a cluster's dashboard over HTTP and
follows them, as Ray 2.x's ``ray.job_submission.JobSubmissionClient``
(standard library only: urllib)."""
from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Any, AsyncIterator, Dict, List, Optional, Union

from pyray.job_submission.common import JobDetails, JobStatus, is_loopback, read_token_file

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)       # fixed: the same files give the same package


def default_address(address: Optional[str] = None) -> str:
    """The dashboard's URL: `address`, else $RAY_API_SERVER_ADDRESS, else
    $RAY_ADDRESS / $PYRAY_ADDRESS when they name an http(s) address, else
    http://127.0.0.1:8265.  An address without a scheme gets http://."""
    if address in (None, "", "auto"):
        address = os.environ.get("RAY_API_SERVER_ADDRESS")
        if not address:
            for var in ("RAY_ADDRESS", "PYRAY_ADDRESS"):
                v = os.environ.get(var, "")
                if v.startswith(("http://", "https://")):
                    address = v
                    break
        address = address or DEFAULT_ADDRESS
    if "://" not in address:
        address = "http://" + address
    if not address.startswith(("http://", "https://")):
        raise ValueError(f"The job submission address must be the dashboard's http(s) URL "
                         f"(e.g. {DEFAULT_ADDRESS}), got {address!r}")
    return address.rstrip("/")


def _zip_folder(path, excludes, prefix=""):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for root, dirs, names in os.walk(path):
            rel_root = os.path.relpath(root, path).replace(os.sep, "/")
            rel_root = "" if rel_root == "." else rel_root + "/"
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not any(
                fnmatch.fnmatch(rel_root + d, p.strip("/")) or fnmatch.fnmatch(d, p.strip("/"))
                for p in excludes))
            for n in sorted(names):
                rel = rel_root + n
                full = os.path.join(root, n)
                if not os.path.isfile(full) or any(fnmatch.fnmatch(rel, p) or
                                                   fnmatch.fnmatch(n, p) for p in excludes):
                    continue
                info = zipfile.ZipInfo(prefix + rel, _ZIP_TIME)
                info.external_attr = (os.stat(full).st_mode & 0o777) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(full, "rb") as f:
                    z.writestr(info, f.read())
    return buf.getvalue()


class JobSubmissionClient:
    """Submits jobs to the cluster whose dashboard listens at `address` and
    follows them.  Requests carry the cluster token (docs/cluster.md,
    "Security"): an ``Authorization`` header in `headers`, else
    $PYRAY_TOKEN, else (a dashboard on this machine) the token its dashboard
    left for its owner."""

    def __init__(self, address: Optional[str] = None, create_cluster_if_needed: bool = False,
                 cookies: Optional[Dict[str, Any]] = None,
                 metadata: Optional[Dict[str, Any]] = None,
                 headers: Optional[Dict[str, Any]] = None,
                 verify: Optional[Union[str, bool]] = True,
                 timeout: float = 30.0):
        if create_cluster_if_needed:
            raise ValueError("create_cluster_if_needed=True is not supported: start the "
                             "cluster first (pyray start --head, or pyray.init()).")
        self._address = default_address(address)
        self._headers = dict(headers or {})
        self._cookies = dict(cookies or {})
        self._default_metadata = dict(metadata or {})
        self._timeout = timeout
        self._ssl = None
        if verify is False or isinstance(verify, str):
            import ssl
            self._ssl = ssl.create_default_context(cafile=verify if isinstance(verify, str)
                                                   else None)
            if verify is False:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._find_token = not any(k.lower() == "authorization" for k in self._headers)
        self._check_connection()

    def _token(self):
        token = os.environ.get("PYRAY_TOKEN")
        url = urllib.parse.urlsplit(self._address)
        if not token and is_loopback(url.hostname or ""):
            token = read_token_file(url.port or 80)
        return token

    @property
    def address(self) -> str:
        return self._address

    # ---- HTTP ---------------------------------------------------------
    def _open(self, method, path, body=None, data=None, timeout=None):
        headers = dict(self._headers)
        if self._find_token:
            token = self._token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
        if self._cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self._address + path, data=data, method=method,
                                     headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self._timeout,
                                          context=self._ssl)
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            try:
                text = json.loads(text).get("detail", text)
            except (ValueError, AttributeError):
                pass
            if err.code == 401:
                raise RuntimeError(
                    f"Request failed with status code 401: {text}. The dashboard at "
                    f"{self._address} wants the cluster token: pass headers="
                    "{'Authorization': 'Bearer <token>'} or set PYRAY_TOKEN "
                    "(docs/cluster.md, Security).") from None
            raise RuntimeError(f"Request failed with status code {err.code}: {text}.") \
                from None
        except (urllib.error.URLError, OSError) as err:
            raise ConnectionError(f"Failed to connect to Ray at address: {self._address} "
                                  f"({getattr(err, 'reason', err)}). Is the dashboard "
                                  "running? (pyray.init() or pyray start --head starts it "
                                  "when starlette and uvicorn are installed: pip install "
                                  "'pyray[dashboard]')") from None

    def _json(self, method, path, body=None, data=None):
        with self._open(method, path, body, data) as resp:
            return json.loads(resp.read() or b"null")

    def _check_connection(self):
        self._json("GET", "/api/version")

    # ---- runtime env packages -------------------------------------------
    def _upload(self, path, excludes, prefix_dir):
        full = os.path.abspath(os.path.expanduser(path))
        if os.path.isdir(full):
            prefix = os.path.basename(full.rstrip(os.sep)) + "/" if prefix_dir else ""
            data = _zip_folder(full, excludes, prefix)
        elif os.path.isfile(full) and full.endswith(".zip"):
            with open(full, "rb") as f:
                data = f.read()
        else:
            raise ValueError(f"runtime_env: the local path {path!r} (resolved to {full!r}) "
                             "must be an existing folder or .zip file")
        name = f"_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip"
        try:
            self._open("GET", f"/api/packages/gcs/{name}").close()     # 200: it is there
            have = True
        except RuntimeError as err:
            if "status code 404" not in str(err):
                raise
            have = False
        if not have:
            self._json("PUT", f"/api/packages/gcs/{name}", data=data)
        return f"gcs://{name}"

    def _upload_runtime_env(self, runtime_env):
        if not runtime_env:
            return runtime_env
        env = dict(runtime_env)
        excludes = list(env.get("excludes") or [])
        wd = env.get("working_dir")
        if isinstance(wd, (str, os.PathLike)) and "://" not in str(wd):
            env["working_dir"] = self._upload(str(wd), excludes, False)
        mods = env.get("py_modules")
        if mods:
            env["py_modules"] = [m if "://" in str(m) else self._upload(str(m), excludes, True)
                                 for m in mods]
        if "working_dir" in env or "py_modules" in env:
            env.pop("excludes", None)       # applied here
        return env

    # ---- the API --------------------------------------------------------
    def submit_job(self, *, entrypoint: str, job_id: Optional[str] = None,
                   runtime_env: Optional[Dict[str, Any]] = None,
                   metadata: Optional[Dict[str, str]] = None,
                   submission_id: Optional[str] = None,
                   entrypoint_num_cpus: Optional[Union[int, float]] = None,
                   entrypoint_num_gpus: Optional[Union[int, float]] = None,
                   entrypoint_memory: Optional[int] = None,
                   entrypoint_resources: Optional[Dict[str, float]] = None) -> str:
        """Starts `entrypoint` (a shell command) on the cluster's head node;
        returns its submission id."""
        if job_id is not None and submission_id is not None:
            raise ValueError("Provide only one of job_id (deprecated) and submission_id.")
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise ValueError(f"entrypoint must be a non-empty shell command, got {entrypoint!r}")
        body = {"entrypoint": entrypoint, "submission_id": submission_id or job_id,
                "runtime_env": self._upload_runtime_env(runtime_env) or {},
                "metadata": {**self._default_metadata, **(metadata or {})},
                "entrypoint_num_cpus": entrypoint_num_cpus,
                "entrypoint_num_gpus": entrypoint_num_gpus,
                "entrypoint_memory": entrypoint_memory,
                "entrypoint_resources": entrypoint_resources}
        return self._json("POST", "/api/jobs/", body)["submission_id"]

    def _quoted(self, job_id):
        if not isinstance(job_id, str) or not job_id:
            raise ValueError(f"job_id must be a non-empty string, got {job_id!r}")
        return urllib.parse.quote(job_id, safe="")

    def stop_job(self, job_id: str) -> bool:
        """Asks the job to stop (SIGTERM, then SIGKILL); whether it was running."""
        return self._json("POST", f"/api/jobs/{self._quoted(job_id)}/stop")["stopped"]

    def delete_job(self, job_id: str) -> bool:
        """Deletes a finished job's record and log; a running one is an error."""
        return self._json("DELETE", f"/api/jobs/{self._quoted(job_id)}")["deleted"]

    def get_job_info(self, job_id: str) -> JobDetails:
        return JobDetails.from_json(self._json("GET", f"/api/jobs/{self._quoted(job_id)}"))

    def list_jobs(self) -> List[JobDetails]:
        return [JobDetails.from_json(j) for j in self._json("GET", "/api/jobs/")]

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def get_job_logs(self, job_id: str) -> str:
        return self._json("GET", f"/api/jobs/{self._quoted(job_id)}/logs")["logs"]

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """Yields the job's log as it is written, until the job ends."""
        resp = self._open("GET", f"/api/jobs/{self._quoted(job_id)}/logs/tail",
                          timeout=365 * 86400)
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await loop.run_in_executor(None, resp.read1, 65536)
                if not chunk:
                    return
                yield chunk.decode(errors="replace")
        finally:
            resp.close()

    def get_version(self) -> str:
        return self._json("GET", "/api/version")["version"]
