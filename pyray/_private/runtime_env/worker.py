"""A worker entering its runtime env, before it registers with its raylet.

The zygote's child calls ``enter`` with the env's worker context (made by
node_setup.py).  Without a python of its own (env_vars, working_dir,
py_modules) the forked child applies the env to itself and goes on; with
one (pip, uv) it execs that python, which runs ``main`` here and then the
usual worker entry.  Importing this module marks the process as an env
worker: the task executor calls ``after_job`` once the job's own paths
and folder are applied, so the env's come first.
"""
from __future__ import annotations

import os
import pickle
import sys

context = None      # the worker context of this process's env


def _apply(ctx):
    global context
    context = ctx
    os.environ.update(ctx["env_vars"])
    for p in reversed(ctx["paths"]):
        if p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)
    if ctx["cwd"]:
        os.chdir(ctx["cwd"])
    import pyray._private.runtime_env as rte
    rte.parent = ctx["definition"]


def after_job(job):
    """The job's sys.path and folder were applied: the env's go first."""
    if context is not None:
        _apply(context)


def enter(ctx, entry_args):
    """In the forked child: apply the env, or exec the env's python."""
    python = ctx.get("python")
    if not python:
        _apply(ctx)
        return
    wid, node, config, session_dir, log_path = entry_args
    spec = os.path.join(session_dir, "runtime_resources", f"spawn-{wid.hex()}.pkl")
    os.makedirs(os.path.dirname(spec), exist_ok=True)
    with open(spec, "wb") as f:
        pickle.dump((ctx, entry_args), f, protocol=5)
    from pyray._private.task_executor import redirect_output
    redirect_output(log_path)
    env = dict(os.environ)
    env.update(ctx["env_vars"])
    # pyray itself, wherever this interpreter found it
    import pyray
    root = os.path.dirname(os.path.dirname(os.path.abspath(pyray.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    os.execve(python, [python, "-m", "pyray._private.runtime_env.worker", spec], env)


def main(spec):
    with open(spec, "rb") as f:
        ctx, entry_args = pickle.load(f)
    try:
        os.unlink(spec)
    except OSError:
        pass
    _apply(ctx)
    from pyray._private.task_executor import worker_entry
    worker_entry(*entry_args)


if __name__ == "__main__":
    # run as -m: use the module under its own name (after_job looks for it)
    from pyray._private.runtime_env import worker as _self
    _self.main(sys.argv[1])
