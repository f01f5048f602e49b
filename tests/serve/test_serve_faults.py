"""The controller reconciling: a killed replica is replaced, a redeploy rolls
over without failed requests, autoscaling follows the load (and scales to
zero and back)."""
import asyncio
import os
import signal
import threading
import time

from pyray import serve
from pyray.exceptions import RayActorError
from pyray.serve.schema import ReplicaState
from servelib import http_request, wait_for


def _running(app, dep):
    d = serve.status().applications[app].deployments[dep]
    return d.replica_states.get(ReplicaState.RUNNING, 0)


def test_sigkilled_replica_is_replaced(serve_port):
    @serve.deployment(num_replicas=2, health_check_period_s=0.5, health_check_timeout_s=2)
    class Worker:
        async def __call__(self, s):
            await asyncio.sleep(s)
            return os.getpid()

    h = serve.run(Worker.bind(), name="kill", route_prefix=None)
    pids = {h.remote(0).result(timeout_s=30) for _ in range(20)}
    assert len(pids) == 2
    victim = sorted(pids)[0]
    inflight = [h.remote(1.0) for _ in range(6)]    # spread over both replicas
    time.sleep(0.3)
    os.kill(victim, signal.SIGKILL)
    ok, failed = [], []
    for r in inflight:
        try:
            ok.append(r.result(timeout_s=30))
        except Exception as e:  # noqa: BLE001 - the killed replica's requests
            failed.append(e)
    assert failed, "the killed replica's in-flight requests fail"
    assert ok and victim not in ok, "the other replica's requests succeed"
    # new requests keep working at once (the router stops using the dead replica)
    after = [h.remote(0).result(timeout_s=30) for _ in range(10)]
    assert victim not in after
    wait_for(lambda: _running("kill", "Worker") == 2, what="a replacement replica")
    pids2 = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(
        {h.remote(0).result(timeout_s=30) for _ in range(30)}), what="two live replicas")
    assert victim not in pids2


def test_failing_health_check_replaces_replica(serve_port):
    @serve.deployment(health_check_period_s=0.2, health_check_timeout_s=5)
    class Sick:
        def __init__(self):
            self.sick = False

        def make_sick(self):
            self.sick = True

        def check_health(self):
            if self.sick:
                raise RuntimeError("unhealthy")

        def __call__(self):
            return os.getpid()

    h = serve.run(Sick.bind(), name="sick", route_prefix=None)
    pid = h.remote().result(timeout_s=30)
    h.make_sick.remote().result(timeout_s=30)

    def replaced():
        try:
            return h.remote().result(timeout_s=30) != pid
        except RayActorError:    # a call that met the old replica as it stopped
            return False
    wait_for(replaced, what="a healthy replacement")


def test_rolling_redeploy_drops_no_request(serve_port):
    def make(version):
        @serve.deployment(name="Versioned", num_replicas=2, graceful_shutdown_wait_loop_s=0.2)
        class Versioned:
            async def __call__(self, request):
                await asyncio.sleep(0.01)
                return version
        return Versioned

    serve.run(make("v1").bind(), name="roll", route_prefix="/roll")
    stop = threading.Event()
    results, errors = [], []

    def load():
        while not stop.is_set():
            try:
                s, _, b = http_request(serve_port, "GET", "/roll")
                (results if s == 200 else errors).append((s, b))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    serve.run(make("v2").bind(), name="roll", route_prefix="/roll")
    wait_for(lambda: any(b == b"v2" for _, b in results[-5:]), what="v2 answering")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []
    seen = [b for _, b in results]
    assert b"v1" in seen and b"v2" in seen
    assert seen[-1] == b"v2"


def test_autoscaling_up_and_down(serve_port):
    @serve.deployment(max_ongoing_requests=10, autoscaling_config={
        "min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
        "metrics_interval_s": 0.1, "look_back_period_s": 0.5,
        "upscale_delay_s": 0.3, "downscale_delay_s": 1.0},
        graceful_shutdown_wait_loop_s=0.1)
    class Auto:
        async def __call__(self):
            await asyncio.sleep(0.3)
            return os.getpid()

    h = serve.run(Auto.bind(), name="auto", route_prefix=None)
    assert _running("auto", "Auto") == 1
    stop = threading.Event()

    def load():
        while not stop.is_set():
            rs = [h.remote() for _ in range(6)]
            for r in rs:
                r.result(timeout_s=30)

    t = threading.Thread(target=load)
    t.start()
    try:
        wait_for(lambda: _running("auto", "Auto") >= 3, timeout=30, what="upscaling to 3")
    finally:
        stop.set()
        t.join(30)
    wait_for(lambda: _running("auto", "Auto") == 1 and
             sum(serve.status().applications["auto"].deployments["Auto"]
                 .replica_states.values()) == 1, timeout=30, what="downscaling to 1")


def test_scale_to_zero_and_back(serve_port):
    @serve.deployment(autoscaling_config={
        "min_replicas": 0, "initial_replicas": 0, "max_replicas": 1,
        "target_ongoing_requests": 1, "metrics_interval_s": 0.1, "look_back_period_s": 0.3,
        "upscale_delay_s": 0.1, "downscale_delay_s": 0.5},
        graceful_shutdown_wait_loop_s=0.1)
    def lazy(*args):
        return "awake"

    h = serve.run(lazy.bind(), name="zero", route_prefix="/zero")
    assert _running("zero", "lazy") == 0
    assert h.remote().result(timeout_s=30) == "awake", "the request waits for a replica"
    assert http_request(serve_port, "GET", "/zero")[2] == b"awake"
    wait_for(lambda: sum(serve.status().applications["zero"].deployments["lazy"]
                         .replica_states.values()) == 0, timeout=30, what="scale to zero")


def test_killed_proxy_is_restarted(serve_port):
    from pyray.util.state import list_actors

    @serve.deployment
    def pong(_):
        return "pong"

    serve.run(pong.bind(), name="pong", route_prefix="/pong")
    assert http_request(serve_port, "GET", "/pong")[2] == b"pong"
    pid = [a["pid"] for a in list_actors(filters=[("state", "=", "ALIVE")])
           if a.get("name") == "SERVE_PROXY_ACTOR"][0]
    os.kill(pid, signal.SIGKILL)

    def answers():
        try:
            return http_request(serve_port, "GET", "/pong", timeout=2)[2] == b"pong"
        except OSError:
            return False
    wait_for(answers, timeout=30, what="a new proxy answering")
