"""One local cluster and one Serve instance per serve test module (per test
would dominate the run; per module, the cluster is gone before the next
package's tests start their own)."""
import socket

import pytest

import pyray


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def serve_cluster():
    from pyray import serve
    pyray.init(num_cpus=16)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    pyray.shutdown()


@pytest.fixture
def serve_port(serve_cluster):
    """The proxy's port; the applications a test made are deleted after it."""
    from pyray import serve
    yield serve_cluster
    for name in list(serve.status().applications):
        serve.delete(name)
