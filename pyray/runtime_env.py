"""Ray's ``ray.runtime_env``: RuntimeEnv and RuntimeEnvConfig (docs/runtime_env.md)."""
from __future__ import annotations

from pyray._private import runtime_env as _rte

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]


class RuntimeEnvConfig(dict):
    """Options of a runtime env's setup: ``setup_timeout_seconds`` (default
    600; -1: no limit) and ``eager_install``."""

    def __init__(self, setup_timeout_seconds=_rte.DEFAULT_SETUP_TIMEOUT_S,
                 eager_install=True, log_files=None):
        super().__init__(setup_timeout_seconds=setup_timeout_seconds,
                         eager_install=eager_install)
        _rte._config(self)


class RuntimeEnv(dict):
    """A runtime env as a dict: ``env_vars``, ``working_dir``, ``py_modules``,
    ``excludes``, ``pip``, ``uv``, ``config``.  Unknown keys raise."""

    def __init__(self, *, py_modules=None, working_dir=None, pip=None, uv=None,
                 env_vars=None, config=None, excludes=None, **kwargs):
        super().__init__()
        given = dict(py_modules=py_modules, working_dir=working_dir, pip=pip, uv=uv,
                     env_vars=env_vars, config=config, excludes=excludes, **kwargs)
        self.update({k: v for k, v in given.items() if v is not None})
        _rte.validate(self)

    def to_dict(self):
        return dict(self)

    def env_vars(self):
        return dict(self.get("env_vars") or {})

    def working_dir(self):
        return self.get("working_dir", "")

    def py_modules(self):
        return list(self.get("py_modules") or [])

    def pip_config(self):
        pip = self.get("pip")
        return {"packages": list(_rte._requirements("pip", pip))} if pip else {}

    def has_working_dir(self):
        return bool(self.get("working_dir"))

    def has_py_modules(self):
        return bool(self.get("py_modules"))
