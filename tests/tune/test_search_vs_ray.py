"""pyray.tune's search spaces, BasicVariantGenerator, schedulers and
OptunaSearch decide as Ray Tune's on the same inputs.

Both run search_vs_ray_harness.py (seeded draws, configs in order with their
tags, every scheduler decision of simulated experiments, PBT's clones and
perturbations, Optuna's suggestions) and must print the same JSON. Needs a
Python with Ray Tune and optuna: $PYRAY_PEERS_VENV or ~/.pyray-peers
(../shared/bench/setup_peers.sh --libs); skipped without one.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("search_vs_ray_harness.py")
ROOT = Path(__file__).resolve().parents[2]


def _ray_python():
    venv = os.environ.get("PYRAY_PEERS_VENV", os.path.expanduser("~/.pyray-peers"))
    python = os.path.join(venv, "bin", "python")
    if not os.access(python, os.X_OK):
        return None
    probe = subprocess.run([python, "-c", "import ray.tune, optuna"], capture_output=True, timeout=120)
    return python if probe.returncode == 0 else None


def _run(python, which, tmp_path):
    env = dict(os.environ)
    if which == "pyray":
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([python, str(HARNESS), which], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def _first_difference(a, b, path=""):
    if type(a) is not type(b):
        return path, a, b
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}", a.get(k), b.get(k)
            d = _first_difference(a[k], b[k], f"{path}/{k}")
            if d:
                return d
    elif isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        if len(a) != len(b):
            return f"{path} (length)", len(a), len(b)
    elif a != b:
        return path, a, b
    return None


@pytest.mark.timeout(600)
def test_same_decisions_as_ray(tmp_path):
    ray_python = _ray_python()
    if ray_python is None:
        pytest.skip("no Python with Ray Tune and optuna ($PYRAY_PEERS_VENV or ~/.pyray-peers)")
    ours = _run(sys.executable, "pyray", tmp_path)
    theirs = _run(ray_python, "ray", tmp_path)
    if ours["optuna"]["optuna"] != theirs["optuna"]["optuna"]:
        # Optuna's samplers differ between versions: compare only the rest
        ours.pop("optuna"), theirs.pop("optuna")
    # the harness did produce decisions worth comparing
    assert len(ours["variants"]) == 36
    assert sum(len(c["log"]) for c in ours["schedulers"].values()) > 1000
    assert any(e[0] == "restore" for c in ours["pbt"].values() for e in c["log"])
    diff = _first_difference(theirs, ours)
    assert diff is None, f"first difference at {diff[0]}: Ray {diff[1]!r}, pyray {diff[2]!r}"
