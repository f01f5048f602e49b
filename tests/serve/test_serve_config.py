"""Config files and the `pyray serve` command line."""
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

import pyray
from pyray import serve
from pyray.serve import scripts
from pyray.serve.schema import ReplicaState
from servelib import http_request

APP_MODULE = '''
from pyray import serve

@serve.deployment
class Greeter:
    def __init__(self, suffix):
        self.suffix = suffix
        self.word = "hi"

    def reconfigure(self, cfg):
        self.word = cfg["word"]

    async def __call__(self, request):
        return f"{self.word}{await self.suffix.remote()}"

@serve.deployment
def suffix():
    return "!"

app = Greeter.bind(suffix.bind())

def build(args):
    return Greeter.bind(suffix.options(name="suffix").bind())
'''


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "cfgapp_mod.py").write_text(APP_MODULE)
    return tmp_path


def test_config_file_deploy_with_overrides(serve_port, app_dir):
    config = yaml.safe_load(textwrap.dedent("""
        applications:
          - name: greet
            route_prefix: /greet
            import_path: cfgapp_mod:app
            deployments:
              - name: Greeter
                num_replicas: 2
                user_config: {word: hello}
          - name: built
            route_prefix: /built
            import_path: cfgapp_mod:build
    """))
    assert scripts.deploy_config(config, app_dir=str(app_dir)) == ["built", "greet"]
    assert http_request(serve_port, "GET", "/greet")[2] == b"hello!"
    assert http_request(serve_port, "GET", "/built")[2] == b"hi!"
    st = scripts.status_dict()["applications"]["greet"]
    assert st["status"] == "RUNNING"
    assert st["deployments"]["Greeter"]["replica_states"] == {"RUNNING": 2}
    assert serve.status().applications["greet"].deployments["suffix"].replica_states == {
        ReplicaState.RUNNING: 1}


def test_config_errors(app_dir):
    with pytest.raises(ValueError, match="no `applications`"):
        scripts.deploy_config({"http_options": {}})
    with pytest.raises(ValueError, match="unknown keys"):
        scripts.deploy_config({"applications": [{"import_path": "x:y", "bogus": 1}]})
    app = scripts.import_application("cfgapp_mod:app", app_dir=str(app_dir))
    with pytest.raises(ValueError, match="does not have"):
        scripts.apply_overrides(app, [{"name": "Nope", "num_replicas": 2}])
    with pytest.raises(ValueError, match="module:app"):
        scripts.import_application("nocolon")


def test_cli_status_and_help(serve_port, tmp_path):
    @serve.deployment
    def tiny(_):
        return "t"

    serve.run(tiny.bind(), name="tiny", route_prefix="/tiny")
    addr = pyray.get_runtime_context().gcs_address
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "pyray.scripts.cli", "serve", "status",
                          "--address", addr], capture_output=True, text=True, timeout=60,
                         env=env, cwd=str(tmp_path))    # not the checkout: the installed pyray
    assert out.returncode == 0, out.stderr
    st = yaml.safe_load(out.stdout)
    assert st["applications"]["tiny"]["status"] == "RUNNING"
    out = subprocess.run([sys.executable, "-m", "pyray.scripts.cli", "serve", "--help"],
                         capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert "deploy" in out.stdout and "shutdown" in out.stdout
