"""Ray's state API (ray.util.state): list, get and summarize the cluster's
actors, tasks, nodes, objects, placement groups, workers and jobs
(docs/state.md).  The data comes from pyray.util.state.data."""
from __future__ import annotations

import logging
import warnings as _warnings
from typing import List, Optional, Tuple

from pyray.util.state import data
from pyray.util.state.common import (DEFAULT_LIMIT, DEFAULT_RPC_TIMEOUT, ActorState, JobState,
                                     NodeState, ObjectState, PlacementGroupState, TaskState,
                                     WorkerState)
from pyray.util.state.exception import RayStateApiException

SCHEMAS = {"actors": ActorState, "tasks": TaskState, "nodes": NodeState, "workers": WorkerState,
           "placement_groups": PlacementGroupState, "objects": ObjectState, "jobs": JobState}

log = logging.getLogger("pyray.util.state")

_ACCEPTED = ("_explain",)


def _list(resource, address, filters, limit, timeout, detail, raise_on_missing_output,
          _explain=False):
    reply = data.query(resource, filters=filters, limit=limit, detail=detail, timeout=timeout,
                       address=address)
    warned = []
    if reply["partial_failure_warning"]:
        if raise_on_missing_output:
            raise RayStateApiException(
                f"Failed to retrieve all {resource} from the cluster: "
                f"{reply['partial_failure_warning']}. Pass raise_on_missing_output=False to "
                f"get the partial result.")
        warned.append(reply["partial_failure_warning"])
    if resource == "tasks" and reply["warnings"]:
        warned.extend(reply["warnings"])
    if reply["num_filtered"] > reply["num_after_truncation"]:
        warned.append(f"{reply['num_after_truncation']} ({reply['num_filtered']} total) {resource} "
                      f"are retrieved; pass limit= to get more.")
    for w in warned:
        _warnings.warn(w, UserWarning, stacklevel=3)
    if _explain:
        for w in warned:
            print(w)
    schema = SCHEMAS[resource]
    return [schema.from_row(r, detail=detail) for r in reply["result"]]


def list_actors(address: Optional[str] = None, filters: Optional[List[Tuple]] = None,
                limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT,
                detail: bool = False, raise_on_missing_output: bool = True,
                _explain: bool = False) -> List[ActorState]:
    return _list("actors", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain)


def list_tasks(address: Optional[str] = None, filters: Optional[List[Tuple]] = None,
               limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT,
               detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> List[TaskState]:
    return _list("tasks", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain)


def list_nodes(address: Optional[str] = None, filters: Optional[List[Tuple]] = None,
               limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT,
               detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> List[NodeState]:
    return _list("nodes", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain)


def list_objects(address: Optional[str] = None, filters: Optional[List[Tuple]] = None,
                 limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT,
                 detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> List[ObjectState]:
    return _list("objects", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain)


def list_placement_groups(address: Optional[str] = None, filters: Optional[List[Tuple]] = None,
                          limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT,
                          detail: bool = False, raise_on_missing_output: bool = True,
                          _explain: bool = False) -> List[PlacementGroupState]:
    return _list("placement_groups", address, filters, limit, timeout, detail,
                 raise_on_missing_output, _explain)


def list_workers(address: Optional[str] = None, filters: Optional[List[Tuple]] = None,
                 limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT,
                 detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> List[WorkerState]:
    return _list("workers", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain)


def list_jobs(address: Optional[str] = None, filters: Optional[List[Tuple]] = None,
              limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_RPC_TIMEOUT,
              detail: bool = False, raise_on_missing_output: bool = True,
              _explain: bool = False) -> List[JobState]:
    return _list("jobs", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain)


def _get_one(resource, id, address, timeout):
    if not id or not isinstance(id, (str, bytes)):
        raise RayStateApiException(f"{resource[:-1]} id must be a hex string, got {id!r}")
    rows = data.get_row(resource, id, detail=True, timeout=timeout, address=address)
    if not rows:
        return None
    return SCHEMAS[resource].from_row(rows[0])


def get_actor(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
              _explain: bool = False) -> Optional[ActorState]:
    return _get_one("actors", id, address, timeout)


def get_task(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
             _explain: bool = False):
    """Ray returns the task's record (its latest attempt), or None."""
    return _get_one("tasks", id, address, timeout)


def get_node(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
             _explain: bool = False) -> Optional[NodeState]:
    return _get_one("nodes", id, address, timeout)


def get_placement_group(id: str, address: Optional[str] = None,
                        timeout: int = DEFAULT_RPC_TIMEOUT,
                        _explain: bool = False) -> Optional[PlacementGroupState]:
    return _get_one("placement_groups", id, address, timeout)


def get_worker(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
               _explain: bool = False) -> Optional[WorkerState]:
    return _get_one("workers", id, address, timeout)


def get_job(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
            _explain: bool = False) -> Optional[JobState]:
    return _get_one("jobs", id, address, timeout)


def get_objects(id: str, address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                _explain: bool = False) -> List[ObjectState]:
    """Every reference to the object (one per process holding it)."""
    if not id or not isinstance(id, (str, bytes)):
        raise RayStateApiException(f"object id must be a hex string, got {id!r}")
    return [ObjectState.from_row(r)
            for r in data.get_row("objects", id, timeout=timeout, address=address)]


def summarize_tasks(address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                    raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    return data.summarize("tasks", timeout=timeout, address=address)


def summarize_actors(address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                     raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    return data.summarize("actors", timeout=timeout, address=address)


def summarize_objects(address: Optional[str] = None, timeout: int = DEFAULT_RPC_TIMEOUT,
                      raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    return data.summarize("objects", timeout=timeout, address=address)


def list_logs(address: Optional[str] = None, node_id: Optional[str] = None,
              node_ip: Optional[str] = None, glob_filter: Optional[str] = None,
              timeout: int = DEFAULT_RPC_TIMEOUT) -> dict:
    """{node_id: [file name]}: Ray groups the files by kind; pyray lists
    them per node (nodes whose session directory is on this machine)."""
    import fnmatch
    files = data.log_files(node_id, address=address, timeout=timeout, node_ip=node_ip)
    if glob_filter:
        files = {n: [f for f in fs if fnmatch.fnmatch(f, glob_filter)] for n, fs in files.items()}
    return files


def get_log(address: Optional[str] = None, node_id: Optional[str] = None,
            filename: Optional[str] = None, tail: int = 1000, timeout: int = DEFAULT_RPC_TIMEOUT,
            **kwargs):
    """Yields the last `tail` lines of a log file (a generator, as Ray's)."""
    unsupported = set(kwargs) - {"node_ip", "follow", "suffix", "encoding", "errors",
                                 "submission_id", "attempt_number", "interval"}
    if unsupported:
        raise TypeError(f"get_log() got unexpected arguments {sorted(unsupported)}")
    for key in ("actor_id", "task_id", "pid"):
        if kwargs.get(key) is not None:
            raise RayStateApiException(f"get_log({key}=...) is not supported; pass filename=")
    if not filename:
        raise RayStateApiException("get_log needs filename= (`pyray logs` lists the files)")
    path = data.log_path(filename, node_id, address=address, timeout=timeout)
    with open(path, "rb") as f:
        lines = f.read().decode(kwargs.get("encoding") or "utf-8", "replace").splitlines()
    if tail is not None and tail >= 0:
        lines = lines[-tail:] if tail else []
    yield "\n".join(lines) + ("\n" if lines else "")
