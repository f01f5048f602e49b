"""Runtime environments (docs/runtime_env.md): what a task or actor asks
for, on the submitting side.

A runtime env is validated where it is given (``@remote``/``.options()``/
``init``), merged with the parent's (the job's in a driver, the worker's own
in a worker: task-level keys win, ``env_vars`` merge) and *resolved* on
first use: local folders become ``pkg://<hash>`` packages uploaded once to
the GCS (packaging.py).  The resolved env travels as a *marker*
``(MARK, hash, json)`` inside the scheduling key, so tasks of different
envs never share a lease and the raylet learns the env from the lease
request itself: it sets the env up once per node (node_setup.py) and keeps
idle workers per env hash; a worker enters its env before it registers
(worker.py).

The default env (none anywhere) costs one attribute check per ``.remote()``.
This module stays light: it is imported by every process.
"""
from __future__ import annotations

import os

MARK = "__runtime_env__"

# the resolved env of this process's parent scope: the job's in a driver
# (init(runtime_env=...)), the worker's own in a worker; None: the default
parent = None

KNOWN = ("env_vars", "working_dir", "py_modules", "excludes", "pip", "uv", "config")
# keys Ray knows that pyray does not provide
UNSUPPORTED = ("conda", "container", "image_uri", "java_jars", "nsight", "mpi",
               "_ray_release")


def env_of_key(key):
    """The env marker ``(MARK, hash, json)`` a scheduling key carries, or
    None (the default env).  Task keys carry it as the last item of their
    shape tuple, an actor's lease key as its last item."""
    if type(key) is not tuple or not key:
        return None
    k0 = key[0]
    m = k0[-1] if (type(k0) is tuple and k0) else key[-1]
    if type(m) is tuple and len(m) == 3 and m[0] == MARK:
        return m
    return None


def with_marker(key, marker):
    """A task's scheduling key for an env (marker None: the key itself)."""
    if marker is None:
        return key
    return (key[0] + (marker,),) + key[1:]


def validate(env):
    """Checks a runtime_env option (a dict or RuntimeEnv) and returns it as a
    plain dict, or None when it is empty.  Raises ValueError/TypeError
    naming the offending key."""
    if env is None:
        return None
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(env).__name__}")
    out = {}
    for k, v in env.items():
        if k in UNSUPPORTED:
            raise ValueError(f"The runtime_env key {k!r} is not supported by pyray; supported "
                             f"keys are {list(KNOWN)}.")
        if k not in KNOWN:
            raise ValueError(f"Unknown runtime_env key {k!r}; supported keys are "
                             f"{list(KNOWN)}.")
        if v is None:
            continue
        if k == "env_vars":
            if not isinstance(v, dict) or not all(isinstance(a, str) and isinstance(b, str)
                                                  for a, b in v.items()):
                raise TypeError("runtime_env['env_vars'] must be of type Dict[str, str], "
                                f"got {v!r:.200}")
            v = dict(v)
        elif k == "working_dir":
            if not isinstance(v, (str, os.PathLike)):
                raise TypeError("runtime_env['working_dir'] must be a str (a local folder, "
                                f"a .zip file or a pkg:// URI), got {type(v).__name__}")
            v = str(v)
        elif k == "py_modules":
            if not isinstance(v, (list, tuple)):
                raise TypeError("runtime_env['py_modules'] must be a list of paths or "
                                f"modules, got {type(v).__name__}")
            v = list(v)
        elif k == "excludes":
            if not isinstance(v, (list, tuple)) or not all(isinstance(p, str) for p in v):
                raise TypeError("runtime_env['excludes'] must be a list of str patterns, "
                                f"got {v!r:.200}")
            v = list(v)
        elif k in ("pip", "uv"):
            v = _requirements(k, v)
        elif k == "config":
            v = _config(v)
        out[k] = v
    if "pip" in out and "uv" in out:
        raise ValueError("The 'pip' and 'uv' runtime_env keys cannot both be given.")
    return out or None


def _requirements(key, v):
    if isinstance(v, dict):
        pk = v.get("packages")
        extra = set(v) - {"packages", "pip_check", "pip_version", "pip_install_options"}
        if extra:
            raise ValueError(f"Unknown field(s) {sorted(extra)} in runtime_env[{key!r}]")
        v = pk
    if isinstance(v, (str, os.PathLike)):
        path = str(v)
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as err:
            raise ValueError(f"runtime_env[{key!r}]: cannot read the requirements file "
                             f"{path!r}: {err}") from None
        v = [ln.split("#", 1)[0].strip() for ln in lines]
        v = [ln for ln in v if ln]
    if not isinstance(v, (list, tuple)) or not all(isinstance(r, str) for r in v):
        raise TypeError(f"runtime_env[{key!r}] must be a list of requirements, a "
                        f"requirements file path or a dict with 'packages', got {v!r:.200}")
    return list(v)


def _config(v):
    if not isinstance(v, dict):
        raise TypeError(f"runtime_env['config'] must be a dict or RuntimeEnvConfig, got {v!r}")
    bad = set(v) - {"setup_timeout_seconds", "eager_install", "log_files"}
    if bad:
        raise ValueError(f"Unknown field(s) {sorted(bad)} in runtime_env['config']")
    t = v.get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_S)
    if isinstance(t, bool) or not isinstance(t, int) or not (t > 0 or t == -1):
        raise ValueError("runtime_env['config']['setup_timeout_seconds'] must be a positive "
                         f"int or -1, got {t!r}")
    return {"setup_timeout_seconds": t, "eager_install": bool(v.get("eager_install", True))}


DEFAULT_SETUP_TIMEOUT_S = 600


def merge(parent, child):
    """The env of a task: the parent's keys, overridden by the task's;
    env_vars dicts merge (the task's values win)."""
    if not parent:
        return dict(child) if child else None
    if not child:
        return dict(parent)
    out = dict(parent)
    for k, v in child.items():
        if k == "env_vars" and "env_vars" in parent:
            out[k] = {**parent["env_vars"], **v}
        else:
            out[k] = v
    if "pip" in child and "uv" in out and "uv" not in child:
        del out["uv"]
    if "uv" in child and "pip" in out and "pip" not in child:
        del out["pip"]
    return out


_markers = {}       # (id of the parent, repr of the raw env) -> marker


def marker_for(raw, cw):
    """The marker of the env `raw` (validated, not resolved) merged into the
    parent's, uploading its packages on first use.  None: the default."""
    p = parent
    ck = (id(p), repr(raw))
    hit = _markers.get(ck)
    if hit is not None and hit[0] is p:
        return hit[1]
    from pyray._private.runtime_env.packaging import resolve, make_marker
    env = merge(p, resolve(raw, cw) if raw else None)
    m = make_marker(env) if env else None
    _markers[ck] = (p, m)
    return m


def task_key(rf, cw):
    """A RemoteFunction's scheduling key in this process's env scope."""
    cache = rf._env_cache
    p = parent
    if cache is not None and cache[0] is p:
        return cache[1]
    key = with_marker(rf._key, marker_for(rf._runtime_env, cw))
    rf._env_cache = (p, key)
    return key


def set_job_env(raw, cw):
    """init(runtime_env=...): resolves the job's env; it becomes the parent
    of every task and actor the driver submits."""
    global parent
    parent = None
    raw = validate(raw)
    if not raw:
        return None
    from pyray._private.runtime_env.packaging import resolve
    parent = resolve(raw, cw)
    return parent
