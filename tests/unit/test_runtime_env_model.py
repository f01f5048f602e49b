"""Runtime envs without processes: validation, merging, the marker in the
scheduling key, packing, and the planner keeping envs' workers apart."""
import collections
import io
import zipfile

import pytest

from pyray._private import runtime_env as rte
from pyray._private.runtime_env import packaging
from pyray.raylet import cluster_view as cv
from pyray.raylet import scheduler as sched
from pyray.raylet.resources import NodeResources
from pyray.raylet.scheduler import Request


def test_validate_names_bad_keys_and_values():
    assert rte.validate(None) is None and rte.validate({}) is None
    with pytest.raises(ValueError, match="'pipx'"):
        rte.validate({"pipx": ["a"]})
    with pytest.raises(ValueError, match="'conda'.*not supported"):
        rte.validate({"conda": "env"})
    with pytest.raises(TypeError, match="env_vars"):
        rte.validate({"env_vars": {"A": 1}})
    with pytest.raises(ValueError, match="cannot both"):
        rte.validate({"pip": ["a"], "uv": ["b"]})
    with pytest.raises(ValueError, match="setup_timeout_seconds"):
        rte.validate({"config": {"setup_timeout_seconds": 0}})
    assert rte.validate({"pip": {"packages": ["six"]}}) == {"pip": ["six"]}


def test_requirements_file(tmp_path):
    f = tmp_path / "req.txt"
    f.write_text("# comment\nsix==1.16  # pinned\n\nattrs\n")
    assert rte.validate({"pip": str(f)}) == {"pip": ["six==1.16", "attrs"]}


def test_merge_task_keys_win_and_env_vars_merge():
    job = {"env_vars": {"A": "1", "B": "1"}, "working_dir": "pkg://x"}
    task = {"env_vars": {"B": "2"}, "pip": ["six"]}
    assert rte.merge(job, task) == {"env_vars": {"A": "1", "B": "2"},
                                    "working_dir": "pkg://x", "pip": ["six"]}
    assert rte.merge(None, task) == task and rte.merge(job, None) == job
    assert rte.merge({"uv": ["a"]}, {"pip": ["b"]}) == {"pip": ["b"]}


def test_marker_rides_in_the_key():
    m = packaging.make_marker({"env_vars": {"A": "1"}})
    m2 = packaging.make_marker({"env_vars": {"A": "1"},
                                "config": {"setup_timeout_seconds": 5}})
    assert m[1] == m2[1]                          # config is not part of the env's identity
    key = ((("CPU", 1.0),), None)
    k = rte.with_marker(key, m)
    assert rte.env_of_key(k) == m and rte.env_of_key(key) is None
    assert cv.parse_key(k) == (None, None)        # routing reads it as before
    assert cv.parse_key(k + (b"n" * 16,)) == (None, b"n" * 16)
    assert rte.env_of_key(("actor", b"a" * 16, m)) == m
    assert rte.env_of_key(("actor", b"a" * 16)) is None


def test_pack_dir_is_deterministic_and_honours_excludes(tmp_path):
    (tmp_path / "a.py").write_text("x")
    (tmp_path / "skip.log").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "c.py").write_text("z")
    data = packaging.pack_dir(str(tmp_path), ["*.log", "out/"])
    assert data == packaging.pack_dir(str(tmp_path), ["*.log", "out/"])
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["a.py", "sub/b.py"]
    top = packaging.pack_dir(str(tmp_path), ["sub", "out", "*.log"], prefix="pkg/")
    assert zipfile.ZipFile(io.BytesIO(top)).namelist() == ["pkg/a.py"]
    with pytest.raises(RuntimeError, match="more than the limit"):
        packaging.pack_dir(str(tmp_path), [], limit=1)


class W:
    def __init__(self, name, env=None):
        self.name = name
        self.env = env
        self.job_id = None


def test_plan_gives_env_requests_only_their_envs_workers():
    idle = {None: collections.deque([W("d")]), "e1": collections.deque([W("x", "e1")])}

    def take_idle(job_id, env=None):
        q = idle.get(env)
        return q.popleft() if q else None
    reqs = collections.OrderedDict()
    for i, env in enumerate([None, "e1", "e1", "e2", None]):
        r = Request(i, "ipc://o", {"CPU": 1.0}, b"j", None, "k")
        r.env = env
        reqs[("ipc://o", i)] = r
    res = NodeResources({"CPU": 8.0})
    need = {}
    actions, spawn, _ = sched.plan(reqs, res, cv.ClusterView(b"\x01" * 16), take_idle, 0,
                                   {}, need)
    granted = {a[2].req_id: a[3].name for a in actions if a[0] == sched.GRANT}
    assert granted == {0: "d", 1: "x"}
    assert spawn == 1                             # default-env workers only
    assert need == {"e1": 1, "e2": 1}
