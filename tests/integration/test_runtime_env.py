"""Runtime environments (docs/runtime_env.md), with real processes: each test
checks what the worker sees (its variables, folder, imports, interpreter)."""
from __future__ import annotations

import os
import sys
import zipfile

import pytest

import pyray
from pyray.exceptions import RuntimeEnvSetupError
from pyray.runtime_env import RuntimeEnv, RuntimeEnvConfig


@pyray.remote
def getenv(*names):
    return {n: os.environ.get(n) for n in names}


@pyray.remote
def where(module):
    import importlib
    m = importlib.import_module(module)
    return getattr(m, "VALUE", None), os.getcwd(), sys.path[0], sorted(os.listdir("."))


@pyray.remote
class EnvActor:
    def get(self, name):
        return os.environ.get(name)

    def value(self, module):
        import importlib
        return importlib.import_module(module).VALUE


def _module_dir(root, name, value, extra=None):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, f"{name}.py"), "w") as f:
        f.write(f"VALUE = {value!r}\n")
    for rel, text in (extra or {}).items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
    return root


def test_env_vars_job_and_task_level_merge(ray_init):
    ray_init(num_cpus=2, runtime_env=RuntimeEnv(env_vars={"JOB": "j", "BOTH": "job"}))
    assert "JOB" not in os.environ                      # the driver is left alone
    assert pyray.get(getenv.remote("JOB", "BOTH")) == {"JOB": "j", "BOTH": "job"}
    got = pyray.get(getenv.options(runtime_env={"env_vars": {"BOTH": "task", "T": "t"}})
                    .remote("JOB", "BOTH", "T"))
    assert got == {"JOB": "j", "BOTH": "task", "T": "t"}
    # an actor: the job's variables and its own
    a = EnvActor.options(runtime_env={"env_vars": {"ACTOR": "a"}}).remote()
    assert pyray.get([a.get.remote("ACTOR"), a.get.remote("JOB")]) == ["a", "j"]


def test_env_vars_task_level_and_default_workers_untouched(ray_init):
    ray_init(num_cpus=2)
    f = getenv.options(runtime_env={"env_vars": {"RTE_X": "1"}})
    assert pyray.get([f.remote("RTE_X") for _ in range(5)]) == [{"RTE_X": "1"}] * 5
    # tasks without an env never run in a worker set up for one
    assert pyray.get([getenv.remote("RTE_X") for _ in range(5)]) == [{"RTE_X": None}] * 5

    @pyray.remote(runtime_env={"env_vars": {"DECO": "d"}})
    def decorated():
        return os.environ.get("DECO")
    assert pyray.get(decorated.remote()) == "d"
    a = EnvActor.options(runtime_env={"env_vars": {"RTE_X": "actor"}}).remote()
    assert pyray.get(a.get.remote("RTE_X")) == "actor"


    @pyray.remote
    def nested():
        # a child task inherits its parent's env, and merges its own into it
        return pyray.get([getenv.remote("RTE_X", "N"),
                          getenv.options(runtime_env={"env_vars": {"N": "n"}})
                          .remote("RTE_X", "N")])
    assert pyray.get(nested.options(runtime_env={"env_vars": {"RTE_X": "p"}}).remote()) == [
        {"RTE_X": "p", "N": None}, {"RTE_X": "p", "N": "n"}]


def test_working_dir_import_cwd_and_excludes(ray_init, tmp_path):
    wd = _module_dir(str(tmp_path / "wd"), "rte_wd_mod", "from-wd",
                     {"skip.txt": "x", "data/keep.txt": "k", "data/big.bin": "b",
                      "cache/x.txt": "c"})
    ray_init(num_cpus=2)
    env = {"working_dir": wd, "excludes": ["skip.txt", "*.bin", "cache/"]}
    value, cwd, first, listing = pyray.get(where.options(runtime_env=env).remote("rte_wd_mod"))
    assert value == "from-wd"
    assert cwd == first and cwd != wd           # its own unpacked copy, first on sys.path
    assert listing == ["data", "rte_wd_mod.py"]

    @pyray.remote
    def walk():
        return sorted(os.path.relpath(os.path.join(r, n)) for r, _, ns in os.walk(".")
                      for n in ns)
    assert pyray.get(walk.options(runtime_env=env).remote()) == ["data/keep.txt",
                                                                 "rte_wd_mod.py"]
    # an actor in the same folder
    a = EnvActor.options(runtime_env={"working_dir": wd}).remote()
    assert pyray.get(a.value.remote("rte_wd_mod")) == "from-wd"


def test_working_dir_zip_and_job_level(ray_init, tmp_path):
    z = tmp_path / "pkg.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("rte_zip_mod.py", "VALUE = 'from-zip'\n")
    ray_init(num_cpus=1, runtime_env={"working_dir": str(z)})
    value, cwd, _first, listing = pyray.get(where.remote("rte_zip_mod"))
    assert value == "from-zip" and listing == ["rte_zip_mod.py"]
    # a task's own env_vars keep the job's working_dir
    value2, cwd2, _, _ = pyray.get(where.options(runtime_env={"env_vars": {"A": "1"}})
                                   .remote("rte_zip_mod"))
    assert (value2, cwd2) == ("from-zip", cwd)


def test_py_modules(ray_init, tmp_path):
    pkg = tmp_path / "mods" / "rte_pkg"
    _module_dir(str(pkg), "__init__", "pkg-init", {"sub.py": "VALUE = 'pkg-sub'\n"})
    ray_init(num_cpus=1)

    @pyray.remote
    def use():
        import rte_pkg
        import rte_pkg.sub
        return rte_pkg.VALUE, rte_pkg.sub.VALUE, os.path.basename(os.getcwd())
    env = {"py_modules": [str(pkg)]}
    value, sub, _cwd = pyray.get(use.options(runtime_env=env).remote())
    assert (value, sub) == ("pkg-init", "pkg-sub")
    with pytest.raises(ImportError):
        import rte_pkg  # noqa: F401  (not on the driver's path)


def test_working_dir_on_a_second_node(tmp_path):
    from pyray.cluster_utils import Cluster
    wd = _module_dir(str(tmp_path / "wd2"), "rte_node_mod", "on-node-2")
    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 1})
    try:
        node2 = cluster.add_node(num_cpus=1, resources={"second": 1})
        cluster.wait_for_nodes()

        @pyray.remote(resources={"second": 1}, runtime_env={"working_dir": wd})
        def on_second():
            import rte_node_mod
            return rte_node_mod.VALUE, pyray.get_runtime_context().get_node_id()
        value, node = pyray.get(on_second.remote(), timeout=60)
        assert value == "on-node-2"
        assert node == node2.node_id
    finally:
        cluster.shutdown()


def _tiny_wheel(folder, name="rte_tiny", version="0.1", value="from-wheel"):
    """A pure-Python wheel built by hand: installs offline from its path."""
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"VALUE = {value!r}\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
        z.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n")
    return path


def test_pip_env_from_a_local_wheel(ray_init, tmp_path):
    wheel = _tiny_wheel(str(tmp_path))
    ray_init(num_cpus=1)

    @pyray.remote
    def probe():
        import numpy  # noqa: F401  (the runtime's packages stay importable)
        import rte_tiny
        return rte_tiny.VALUE, sys.prefix, os.environ.get("PIPENV_VAR")
    env = {"pip": [wheel], "env_vars": {"PIPENV_VAR": "v"}}
    value, prefix, var = pyray.get(probe.options(runtime_env=env).remote(), timeout=300)
    assert value == "from-wheel" and var == "v"
    assert prefix != sys.prefix                      # runs in the env's own venv
    # the same requirements reuse the venv (and the idle worker) at once
    assert pyray.get(probe.options(runtime_env=env).remote(), timeout=30)[1] == prefix
    a = EnvActor.options(runtime_env={"pip": [wheel]}).remote()
    assert pyray.get(a.value.remote("rte_tiny"), timeout=60) == "from-wheel"
    with pytest.raises(ImportError):
        import rte_tiny  # noqa: F401


def test_pip_package_that_does_not_exist(ray_init):
    ray_init(num_cpus=1)
    bad = {"pip": ["--no-index", "pyray-no-such-package-xyz"],
           "config": RuntimeEnvConfig(setup_timeout_seconds=120)}
    with pytest.raises(RuntimeEnvSetupError, match="pyray-no-such-package-xyz"):
        pyray.get(getenv.options(runtime_env=bad).remote("A"), timeout=120)
    a = EnvActor.options(runtime_env=bad).remote()
    with pytest.raises(RuntimeEnvSetupError, match="pyray-no-such-package-xyz"):
        pyray.get(a.get.remote("A"), timeout=120)
    # the node keeps serving other work
    assert pyray.get(getenv.remote("A"), timeout=30) == {"A": None}


def test_bad_envs_fail_with_the_reason(ray_init, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="'conda_typo'"):
        getenv.options(runtime_env={"conda_typo": 1})
    with pytest.raises(ValueError, match="'bogus'"):
        RuntimeEnv(bogus=1)
    with pytest.raises(ValueError, match="'nope'"):
        pyray.init(num_cpus=1, runtime_env={"nope": 1})
    assert not pyray.is_initialized()
    with pytest.raises(TypeError, match="env_vars"):
        getenv.options(runtime_env={"env_vars": {"A": 1}})
    ray_init(num_cpus=1)
    missing = str(tmp_path / "no-such-dir")
    with pytest.raises(RuntimeEnvSetupError, match="no-such-dir"):
        pyray.get(getenv.options(runtime_env={"working_dir": missing}).remote())
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob.bin").write_bytes(os.urandom(5000))
    from pyray._private.runtime_env import packaging
    monkeypatch.setattr(packaging, "MAX_PACKAGE_BYTES", 4096)
    with pytest.raises(RuntimeError, match=r"more than the limit of 0\.00 MiB"):
        pyray.get(getenv.options(runtime_env={"working_dir": str(big)}).remote())
    # excluding the large file makes it fit
    ok = {"working_dir": str(big), "excludes": ["*.bin"], "env_vars": {"OK": "1"}}
    assert pyray.get(getenv.options(runtime_env=ok).remote("OK")) == {"OK": "1"}


def test_setup_timeout(ray_init, tmp_path):
    # a requirement pip can never finish reading: a named pipe with no writer
    fifo = str(tmp_path / "stuck-0.1-py3-none-any.whl")
    os.mkfifo(fifo)
    ray_init(num_cpus=1)
    env = {"pip": [fifo], "config": RuntimeEnvConfig(setup_timeout_seconds=3)}
    with pytest.raises(RuntimeEnvSetupError, match="setup_timeout_seconds"):
        pyray.get(getenv.options(runtime_env=env).remote("A"), timeout=60)
    assert pyray.get(getenv.remote("A"), timeout=30) == {"A": None}


@pytest.mark.skipif(__import__("shutil").which("uv") is not None, reason="uv is installed")
def test_uv_without_uv_installed(ray_init):
    ray_init(num_cpus=1)
    with pytest.raises(RuntimeEnvSetupError, match="uv tool, which is not installed"):
        pyray.get(getenv.options(runtime_env={"uv": ["six"]}).remote("A"), timeout=60)
