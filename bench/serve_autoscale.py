"""Autoscaling under a stepped load: the replica count of an autoscaling
deployment (target_ongoing_requests=2, 0.1 s of work per request) recorded
every --sample-s while the number of concurrent callers steps through
--steps, each held for --phase-s seconds.  Prints one line per sample
(time, callers, running replicas, requests done) and the number of
changes of the replica count (flapping shows as many changes).

    python bench/serve_autoscale.py --steps 0,4,8,16,4,0 --phase-s 6
"""
import argparse
import threading
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="0,4,8,16,4,0")
    ap.add_argument("--phase-s", type=float, default=6.0)
    ap.add_argument("--sample-s", type=float, default=0.5)
    a = ap.parse_args()
    steps = [int(x) for x in a.steps.split(",")]
    import pyray
    from pyray import serve
    from pyray.serve.schema import ReplicaState
    pyray.init(num_cpus=16)
    try:
        @serve.deployment(
            ray_actor_options={"num_cpus": 0}, max_ongoing_requests=8,
            graceful_shutdown_wait_loop_s=0.2,
            autoscaling_config={"min_replicas": 1, "max_replicas": 8,
                                "target_ongoing_requests": 2, "metrics_interval_s": 0.2,
                                "look_back_period_s": 2, "upscale_delay_s": 1,
                                "downscale_delay_s": 3})
        class Work:
            async def __call__(self):
                import asyncio
                await asyncio.sleep(0.1)
                return 1

        h = serve.run(Work.bind(), name="auto", route_prefix=None)
        callers = [0]
        done = [0]
        stop = threading.Event()

        def caller(i):
            while not stop.is_set():
                if i < callers[0]:
                    h.remote().result(timeout_s=60)
                    done[0] += 1
                else:
                    time.sleep(0.05)

        threads = [threading.Thread(target=caller, args=(i,), daemon=True)
                   for i in range(max(steps))]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        last, changes = None, 0
        print(f"{'t s':>6} {'callers':>8} {'replicas':>9} {'done':>8}")
        for n in steps:
            callers[0] = n
            end = time.monotonic() + a.phase_s
            while time.monotonic() < end:
                d = serve.status().applications["auto"].deployments["Work"]
                running = d.replica_states.get(ReplicaState.RUNNING, 0)
                if last is not None and running != last:
                    changes += 1
                last = running
                print(f"{time.monotonic() - t0:6.1f} {n:8d} {running:9d} {done[0]:8d}",
                      flush=True)
                time.sleep(a.sample_s)
        stop.set()
        print(f"replica count changes: {changes}")
    finally:
        serve.shutdown()
        pyray.shutdown()


if __name__ == "__main__":
    main()
