"""JobConfig: settings of a job, passed to ``pyray.init(job_config=...)``.

What it carries and where it takes effect:

  runtime_env       the job's runtime environment, as init(runtime_env=...)
                    (init's own runtime_env argument wins when both are given)
  metadata          free-form str -> str pairs, readable in the driver and in
                    every task and actor of the job through
                    ``get_runtime_context().get_job_config().metadata``
  code_search_path  directories the job's workers put on sys.path (Python
                    code only: pyray runs no other language)
  ray_namespace     the job's namespace, as init(namespace=...)
  default_actor_lifetime
                    only "non_detached" (the default) is supported

Settings pyray has no use for (jvm_options) are refused with a ValueError
rather than ignored.
"""
from __future__ import annotations

import json
import os

_LIFETIMES = ("detached", "non_detached")


class JobConfig:
    def __init__(self, jvm_options=None, code_search_path=None, runtime_env=None,
                 _client_job=False, metadata=None, ray_namespace=None,
                 default_actor_lifetime="non_detached", _py_driver_sys_path=None):
        if jvm_options:
            raise ValueError("JobConfig(jvm_options=...) is not supported: pyray runs Python "
                             "workers only.")
        self.jvm_options = []
        self.code_search_path = []
        self.set_code_search_path(code_search_path or [])
        self.runtime_env = None
        self.set_runtime_env(runtime_env)
        self.metadata = {}
        for k, v in (metadata or {}).items():
            self.set_metadata(k, v)
        self.ray_namespace = None
        self.set_ray_namespace(ray_namespace)
        self.default_actor_lifetime = "non_detached"
        self.set_default_actor_lifetime(default_actor_lifetime)
        self._client_job = bool(_client_job)
        self._py_driver_sys_path = list(_py_driver_sys_path or [])

    # -- setters (Ray's names) ---------------------------------------------
    def set_metadata(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"job metadata keys and values are strings, got "
                            f"{type(key).__name__} -> {type(value).__name__}")
        self.metadata[key] = value

    def set_runtime_env(self, runtime_env, validate=False) -> None:
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise TypeError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
        self.runtime_env = dict(runtime_env) if runtime_env is not None else None

    def set_ray_namespace(self, ray_namespace) -> None:
        if ray_namespace is not None and (not isinstance(ray_namespace, str) or
                                          not ray_namespace):
            raise TypeError(f"ray_namespace must be a non-empty string, got "
                            f"{ray_namespace!r}")
        self.ray_namespace = ray_namespace

    def set_default_actor_lifetime(self, default_actor_lifetime) -> None:
        if default_actor_lifetime not in _LIFETIMES:
            raise ValueError(f"default_actor_lifetime must be one of {_LIFETIMES}, got "
                             f"{default_actor_lifetime!r}")
        if default_actor_lifetime == "detached":
            raise ValueError("JobConfig(default_actor_lifetime='detached') is not supported: "
                             "give each actor lifetime='detached' instead.")
        self.default_actor_lifetime = default_actor_lifetime

    def set_code_search_path(self, code_search_path) -> None:
        if isinstance(code_search_path, (str, bytes)):
            raise TypeError("code_search_path is a list of directories, not a string")
        paths = []
        for p in code_search_path:
            if not isinstance(p, (str, os.PathLike)):
                raise TypeError(f"code_search_path entries are paths, got {p!r}")
            paths.append(os.path.abspath(os.fspath(p)))
        self.code_search_path = paths

    # -- conversions ----------------------------------------------------------
    def _to_dict(self):
        return {"runtime_env": self.runtime_env, "metadata": dict(self.metadata),
                "code_search_path": list(self.code_search_path),
                "ray_namespace": self.ray_namespace,
                "default_actor_lifetime": self.default_actor_lifetime}

    def to_json(self) -> str:
        return json.dumps(self._to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, job_config_json):
        if isinstance(job_config_json, str):
            job_config_json = json.loads(job_config_json)
        return cls(**job_config_json)

    @classmethod
    def _from_job_dict(cls, job):
        """The JobConfig of a running job, from what the driver sent its
        workers (see init)."""
        given = job.get("job_config") or {}
        cfg = cls(metadata=given.get("metadata"),
                  runtime_env=given.get("runtime_env"),
                  code_search_path=given.get("code_search_path"))
        cfg.ray_namespace = job.get("namespace")
        return cfg

    def __eq__(self, other):
        return isinstance(other, JobConfig) and other._to_dict() == self._to_dict()

    def __repr__(self):
        return f"JobConfig({self._to_dict()!r})"
