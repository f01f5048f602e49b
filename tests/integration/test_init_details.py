"""pyray.init() details as Ray 2.x has them: reinit, namespace checks,
address="auto" without a cluster, what init returns, starting on first use
(and RAY_ENABLE_AUTO_CONNECT=0 turning that off), log_to_driver=False."""
import time

import pytest

import pyray

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
SMALL = {"num_cpus": 1, "object_store_memory": 128 * MiB}


@pyray.remote
def echo(x):
    return x


def test_reinit(ray_init):
    info = ray_init(**SMALL)
    again = pyray.init(ignore_reinit_error=True)
    assert again["gcs_address"] == info["gcs_address"]
    with pytest.raises(RuntimeError, match="ray.init twice by accident"):
        pyray.init()
    assert pyray.is_initialized()


def test_what_init_returns(ray_init):
    info = ray_init(**SMALL)
    assert info.address_info is not None and info.address_info["node_id"]
    for key in ("node_ip_address", "gcs_address", "address", "session_dir", "node_id"):
        assert key in info.address_info, key
        assert info[key] == info.address_info[key]
    # the dashboard starts with the cluster when starlette and uvicorn are installed
    from pyray._private.node import dashboard_available
    if dashboard_available():
        host, port = info.dashboard_url.rsplit(":", 1)
        assert host == "127.0.0.1" and 8265 <= int(port) <= 8315
    else:
        assert info.dashboard_url is None
    assert pyray.is_initialized()


@pytest.mark.parametrize("namespace, error", [(3, TypeError), (b"ns", TypeError),
                                              ("", ValueError)])
def test_namespace_must_be_a_non_empty_string(ray_init, namespace, error):
    with pytest.raises(error):
        pyray.init(namespace=namespace, **SMALL)
    assert not pyray.is_initialized()


def test_address_auto_without_a_cluster(ray_init, monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("PYRAY_ADDRESS", raising=False)
    from pyray._private import node
    # no record of a cluster started by `pyray start --head` on this machine
    monkeypatch.setattr(node, "CURRENT_CLUSTER_FILE", str(tmp_path / "no-cluster"))
    with pytest.raises(ConnectionError):
        pyray.init(address="auto")
    assert not pyray.is_initialized()


def test_put_and_remote_start_a_cluster(ray_init):
    assert not pyray.is_initialized()
    ref = pyray.put(41)
    assert pyray.is_initialized()
    assert pyray.get(echo.remote(ref)) == 41


def test_wait_and_get_start_a_cluster(ray_init):
    assert not pyray.is_initialized()
    assert pyray.wait([]) == ([], [])
    assert pyray.is_initialized()
    assert pyray.get([]) == []


def test_auto_connect_can_be_turned_off(ray_init, monkeypatch):
    monkeypatch.setenv("RAY_ENABLE_AUTO_CONNECT", "0")
    with pytest.raises(pyray.exceptions.RaySystemError):
        echo.remote(1)
    with pytest.raises(pyray.exceptions.RaySystemError):
        pyray.put(1)
    with pytest.raises(pyray.exceptions.RaySystemError):
        pyray.wait([])
    assert not pyray.is_initialized()


LOG_DRIVER = """
    import sys
    import pyray
    pyray.init(num_cpus=1, object_store_memory=128 << 20, log_to_driver={flag})

    @pyray.remote
    def speak():
        print("out-from-the-worker", flush=True)
        print("err-from-the-worker", file=sys.stderr, flush=True)
        return 1

    assert pyray.get(speak.remote()) == 1
    import time
    time.sleep(1.0)     # time for output to be forwarded, if it is
    pyray.shutdown()
    print("DRIVER-DONE", flush=True)
"""


@pytest.mark.parametrize("flag", [True, False])
def test_log_to_driver(driver, flag):
    d = driver(LOG_DRIVER.format(flag=flag))
    d.wait_for_line(lambda line: line == "DRIVER-DONE")
    assert d.wait() == 0, d.text("stderr")
    out, err = d.text("stdout"), d.text("stderr")
    assert ("out-from-the-worker" in out) is flag, out
    assert ("err-from-the-worker" in err) is flag, err


def test_a_taken_default_dashboard_port_moves_the_dashboard_to_the_next(ray_init):
    """As Ray: without dashboard_port the dashboard takes the first free
    port from 8265 on; the URL init() returns is where it answers."""
    import socket
    import urllib.request
    from pyray._private.node import dashboard_available, dashboard_port
    if not dashboard_available():
        pytest.skip("the dashboard's dependencies are not installed")
    taken = socket.socket()
    taken.bind(("127.0.0.1", dashboard_port("127.0.0.1", None)))
    taken.listen()
    try:
        info = ray_init(**SMALL)
        port = int(info.dashboard_url.rsplit(":", 1)[1])
        assert port != taken.getsockname()[1] and 8265 <= port <= 8315
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version",
                                            timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        taken.close()
