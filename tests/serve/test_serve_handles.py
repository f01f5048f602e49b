"""Deployments, composition, handles, streaming, batching, user_config,
status and bad input, through DeploymentHandles on a real cluster."""
import asyncio
import os

import pytest

import pyray
from pyray import serve
from pyray.serve.exceptions import BackPressureError, RayServeException
from pyray.serve.schema import ApplicationStatus, DeploymentStatus, ReplicaState


@serve.deployment
class Adder:
    def __init__(self, n):
        self.n = n

    def __call__(self, x):
        return x + self.n


@serve.deployment
class Multiplier:
    def __init__(self, k):
        self.k = k

    async def mul(self, x):
        return x * self.k


@serve.deployment
class Chain:
    def __init__(self, adder, multiplier):
        self.adder = adder
        self.multiplier = multiplier

    async def __call__(self, x):
        # the adder's response goes to the multiplier unresolved
        return await self.multiplier.mul.remote(self.adder.remote(x))

    def pids(self):
        return os.getpid()


def test_three_deployment_composition(serve_port):
    h = serve.run(Chain.bind(Adder.bind(1), Multiplier.bind(10)), name="chain",
                  route_prefix="/chain")
    assert h.remote(4).result(timeout_s=30) == 50
    assert [r.result(timeout_s=30) for r in [h.remote(i) for i in range(5)]] == \
        [10, 20, 30, 40, 50]
    # a response passed unresolved from the driver into another handle call
    adder = serve.get_deployment_handle("Adder", "chain")
    mult = serve.get_deployment_handle("Multiplier", "chain")
    assert mult.mul.remote(adder.remote(2)).result(timeout_s=30) == 30
    st = serve.status().applications["chain"]
    assert st.status == ApplicationStatus.RUNNING
    assert set(st.deployments) == {"Chain", "Adder", "Multiplier"}
    for d in st.deployments.values():
        assert d.status == DeploymentStatus.HEALTHY
        assert d.replica_states == {ReplicaState.RUNNING: 1}
    # replicas are other processes
    assert h.pids.remote().result(timeout_s=30) != os.getpid()
    assert serve.get_app_handle("chain").remote(1).result(timeout_s=30) == 20


def test_function_deployment_and_replica_context(serve_port):
    @serve.deployment(name="fn", num_replicas=2)
    def whoami(x):
        ctx = serve.get_replica_context()
        return (x, ctx.app_name, ctx.deployment, ctx.replica_tag, os.getpid())

    h = serve.run(whoami.bind(), name="fnapp", route_prefix=None)
    outs = [h.remote(i).result(timeout_s=30) for i in range(20)]
    assert [o[0] for o in outs] == list(range(20))
    assert {o[1] for o in outs} == {"fnapp"} and {o[2] for o in outs} == {"fn"}
    assert len({o[4] for o in outs}) == 2, "two replicas share the calls"
    assert len({o[3] for o in outs}) == 2
    with pytest.raises(RayServeException):
        serve.get_replica_context()


def test_async_handle_and_streaming(serve_port):
    @serve.deployment
    class Streamer:
        def count(self, n):
            for i in range(n):
                yield i

        async def acount(self, n):
            for i in range(n):
                await asyncio.sleep(0)
                yield f"s{i}"

    @serve.deployment
    class Consumer:
        def __init__(self, streamer):
            self.s = streamer.options(stream=True)

        async def __call__(self, n):
            return [x async for x in self.s.acount.remote(n)]

    h = serve.run(Consumer.bind(Streamer.bind()), name="stream", route_prefix=None)
    assert h.remote(4).result(timeout_s=30) == ["s0", "s1", "s2", "s3"]
    sh = serve.get_deployment_handle("Streamer", "stream").options(method_name="count",
                                                                   stream=True)
    assert list(sh.remote(5)) == [0, 1, 2, 3, 4]

    async def drive():
        return await h.remote(2)
    assert asyncio.run(drive()) == ["s0", "s1"]


def test_batching_sizes_seen_by_replica(serve_port):
    @serve.deployment(max_ongoing_requests=100)
    class Batcher:
        def __init__(self):
            self.sizes = []

        @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.5)
        async def double(self, xs):
            self.sizes.append(len(xs))
            return [x * 2 for x in xs]

        async def __call__(self, x):
            return await self.double(x)

        def seen(self):
            return self.sizes

    h = serve.run(Batcher.bind(), name="batch", route_prefix=None)
    rs = [h.remote(i) for i in range(10)]
    assert [r.result(timeout_s=30) for r in rs] == [i * 2 for i in range(10)]
    sizes = h.seen.remote().result(timeout_s=30)
    assert sum(sizes) == 10
    assert max(sizes) == 4 and sizes[:2] == [4, 4], sizes


def test_user_config_reconfigure(serve_port):
    @serve.deployment(user_config={"greeting": "hello"})
    class Greeter:
        def reconfigure(self, cfg):
            self.greeting = cfg["greeting"]

        def __call__(self, name):
            return (f"{self.greeting} {name}", os.getpid())

    h = serve.run(Greeter.bind(), name="greet", route_prefix=None)
    text, pid = h.remote("a").result(timeout_s=30)
    assert text == "hello a"
    h = serve.run(Greeter.options(user_config={"greeting": "bye"}).bind(), name="greet",
                  route_prefix=None)

    def updated():
        return h.remote("b").result(timeout_s=30)[0] == "bye b"
    from servelib import wait_for
    wait_for(updated, what="reconfigure")
    assert h.remote("c").result(timeout_s=30)[1] == pid, "same replica, reconfigured"


def test_constructor_raising_is_deploy_failed(serve_port):
    @serve.deployment(max_constructor_retry_count=2)
    class Broken:
        def __init__(self):
            raise ValueError("no model file here")

    with pytest.raises(RuntimeError, match="no model file here"):
        serve.run(Broken.bind(), name="broken", route_prefix="/broken")
    st = serve.status().applications["broken"]
    assert st.status == ApplicationStatus.DEPLOY_FAILED
    d = st.deployments["Broken"]
    assert d.status == DeploymentStatus.DEPLOY_FAILED
    assert "no model file here" in d.message


def test_handle_backpressure(serve_port):
    @serve.deployment(max_ongoing_requests=1, max_queued_requests=1)
    class Slow:
        async def __call__(self, s):
            await asyncio.sleep(s)
            return s

    h = serve.run(Slow.bind(), name="slow", route_prefix=None)
    first = h.remote(1.0)
    second = h.remote(0.01)      # queued in the caller
    with pytest.raises(BackPressureError) as ei:
        h.remote(0.01).result(timeout_s=30)
    assert "max_queued_requests=1" in str(ei.value)
    assert first.result(timeout_s=30) == 1.0 and second.result(timeout_s=30) == 0.01


def test_bad_input():
    with pytest.raises(TypeError, match="unexpected option"):
        serve.deployment(num_replica=2)
    with pytest.raises(ValueError, match="num_replicas"):
        serve.deployment(num_replicas=-1)(lambda: None)
    with pytest.raises(NotImplementedError, match="max_replicas_per_node"):
        serve.deployment(max_replicas_per_node=2)
    with pytest.raises(ValueError, match="min_replicas"):
        serve.deployment(autoscaling_config={"min_replicas": 5, "max_replicas": 2})
    with pytest.raises(TypeError, match=r"\.bind\(\)"):
        serve.run(Adder)
    with pytest.raises(ValueError, match="route_prefix"):
        serve.run(Adder.bind(1), route_prefix="api")
    with pytest.raises(RuntimeError, match="bind"):
        Adder(1)
    with pytest.raises(ValueError, match="max_restarts"):
        serve.deployment(ray_actor_options={"max_restarts": 3})
    with pytest.raises(NotImplementedError, match="multiplex"):
        serve.multiplexed(max_num_models_per_replica=2)
    with pytest.raises(NotImplementedError, match="request_timeout_s"):
        serve.start(http_options={"request_timeout_s": 5})


def test_shutdown_leaves_nothing(serve_cluster):
    """serve.shutdown() stops the controller, proxy and replicas (their processes
    exit) and serve.start() works again after it."""
    from pyray.util.state import list_actors
    from servelib import http_request, wait_for
    port = serve_cluster

    @serve.deployment(num_replicas=2)
    def pid(_):
        return os.getpid()

    h = serve.run(pid.bind(), name="pids", route_prefix="/pids")
    pids = {h.remote(None).result(timeout_s=30) for _ in range(20)}
    assert len(pids) == 2
    serve.shutdown()

    def gone(p):
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            return True
        import psutil
        try:
            return psutil.Process(p).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    wait_for(lambda: all(gone(p) for p in pids), what="replica processes to exit")
    alive = [a for a in list_actors(filters=[("state", "=", "ALIVE")])
             if (a.get("name") or "").startswith("SERVE_")]
    assert alive == []
    with pytest.raises(ConnectionError):
        http_request(port, "GET", "/-/healthz", timeout=2)
    assert serve.status().applications == {}
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    assert http_request(port, "GET", "/-/healthz")[0] == 200


def test_sequential_calls_free_their_slot_at_once(serve_port):
    """A finished call gives its replica slot back as soon as its result is
    read: with max_ongoing_requests=1, 50 sequential calls never wait for
    one (each would wait for the core's next 0.1 s tick if the slot came
    back only from the I/O thread's round)."""
    import time

    @serve.deployment(max_ongoing_requests=1)
    def one(x):
        return x

    h = serve.run(one.bind(), name="seq", route_prefix=None)
    h.remote(0).result(timeout_s=30)
    t0 = time.monotonic()
    assert [h.remote(i).result(timeout_s=30) for i in range(50)] == list(range(50))
    assert time.monotonic() - t0 < 2.5
