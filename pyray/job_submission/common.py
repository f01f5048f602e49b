"""What a submitted job is, as Ray 2.x's ``ray.job_submission``: its status,
its record (JobInfo / JobDetails), and the wire form both ends share."""
from __future__ import annotations

import dataclasses
import enum
import ipaddress
import os
import stat
import tempfile
from typing import Any, Dict, Optional

# the internal_kv namespace the job records live in (not a user's)
KV_NAMESPACE = b"_pyray_job_submission"
JOB_PREFIX = "job:"
# how many characters of a failed entrypoint's log its message carries (Ray's)
LOG_TAIL_CHARS = 20000


class JobStatus(str, enum.Enum):
    """The status of a submitted job."""
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def __str__(self):
        return f"{self.value}"

    def is_terminal(self) -> bool:
        return self.value in ("STOPPED", "SUCCEEDED", "FAILED")


class JobType(str, enum.Enum):
    SUBMISSION = "SUBMISSION"
    DRIVER = "DRIVER"


@dataclasses.dataclass
class JobInfo:
    """A submitted job's record (times in milliseconds since the epoch)."""
    status: JobStatus
    entrypoint: str
    message: Optional[str] = None
    error_type: Optional[str] = None
    start_time: Optional[int] = None
    end_time: Optional[int] = None
    metadata: Optional[Dict[str, str]] = None
    runtime_env: Optional[Dict[str, Any]] = None
    entrypoint_num_cpus: Optional[float] = None
    entrypoint_num_gpus: Optional[float] = None
    entrypoint_memory: Optional[int] = None
    entrypoint_resources: Optional[Dict[str, float]] = None
    driver_agent_http_address: Optional[str] = None
    driver_node_id: Optional[str] = None
    driver_exit_code: Optional[int] = None

    def __post_init__(self):
        self.status = JobStatus(self.status)
        if self.metadata is None:
            self.metadata = {}

    def to_json(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_json(cls, data: Dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass
class DriverInfo:
    id: str
    node_ip_address: str
    pid: str


@dataclasses.dataclass
class JobDetails(JobInfo):
    """What the REST API and JobSubmissionClient.get_job_info/list_jobs give."""
    type: JobType = JobType.SUBMISSION
    job_id: Optional[str] = None
    submission_id: Optional[str] = None
    driver_info: Optional[DriverInfo] = None

    def __post_init__(self):
        super().__post_init__()
        self.type = JobType(self.type)
        if isinstance(self.driver_info, dict):
            self.driver_info = DriverInfo(**self.driver_info)

    def to_json(self) -> Dict[str, Any]:
        out = super().to_json()
        out["type"] = self.type.value
        return out

    def dict(self) -> Dict[str, Any]:
        """As pydantic's .dict() on Ray's JobDetails."""
        return self.to_json()


def token_file(port) -> str:
    """Where a dashboard on this machine listening on `port` leaves the
    cluster token for its owner's clients (a file only its owner reads, in a
    folder only its owner may list)."""
    return os.path.join(tempfile.gettempdir(), f"pyray-dashboard-{os.getuid()}", str(int(port)))


def write_token_file(port, token) -> str:
    path = token_file(port)
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{folder} is not a private folder of this user; remove it")
    tmp = f"{path}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{token}\n{os.getpid()}\n")
    os.replace(tmp, path)
    return path


def _is_my_dashboard(pid):
    """Whether `pid` is a live dashboard process of this user (a file left
    by a dashboard that was killed must not send the token to whatever
    listens on its port now)."""
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.getuid():
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"pyray.dashboard.server" in f.read()
    except (OSError, ValueError):
        return False


def read_token_file(port) -> Optional[str]:
    """The token a running dashboard of this user left for `port`, or None."""
    path = token_file(port)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None
        token, _, pid = f.read().partition("\n")
    if not token.strip() or not pid.strip().isdigit() or not _is_my_dashboard(int(pid)):
        return None
    return token.strip()


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
