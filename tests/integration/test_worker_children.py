"""Processes a task or an actor starts do not outlive its worker (Ray's
kill_child_processes_on_worker_exit): killed when the worker is killed, when
it exits by itself, and at shutdown."""
from __future__ import annotations

import os
import subprocess

import pyray

from actorlib import process_gone


@pyray.remote
class Spawner:
    def spawn(self, detach=False):
        # detach: the child's parent exits at once (as `cmd &` in a shell
        # does), so the sleeper is orphaned while the actor still runs
        if detach:
            p = subprocess.Popen(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
                                 stdout=subprocess.PIPE)
            return int(p.communicate()[0]), os.getpid()
        return subprocess.Popen(["sleep", "300"]).pid, os.getpid()

    def leave(self):
        pyray.actor.exit_actor()


def test_an_actors_children_die_with_it(ray_start, wait_for):
    a = Spawner.remote()
    child, worker = pyray.get(a.spawn.remote())
    assert not process_gone(child)
    pyray.kill(a)
    wait_for(lambda: process_gone(worker), timeout=10, what="the actor's worker to exit")
    wait_for(lambda: process_gone(child), timeout=10, what="the process it started to be killed")


def test_children_of_an_actor_that_exits_by_itself(ray_start, wait_for):
    a = Spawner.remote()
    child, _ = pyray.get(a.spawn.remote())
    orphan, _ = pyray.get(a.spawn.remote(detach=True))
    assert not process_gone(child) and not process_gone(orphan)
    try:
        pyray.get(a.leave.remote())
    except pyray.exceptions.RayActorError:
        pass
    wait_for(lambda: process_gone(child) and process_gone(orphan), timeout=10,
             what="the processes the exited actor started to be killed")


def test_a_tasks_children_die_at_shutdown(driver, wait_for):
    d = driver("""
        import subprocess
        import pyray
        pyray.init(num_cpus=1)

        @pyray.remote
        def spawn_sleeper():
            return subprocess.Popen(["sleep", "300"]).pid

        print("CHILD", pyray.get(spawn_sleeper.remote()), flush=True)
        pyray.shutdown()
    """)
    child = int(d.wait_for_line(lambda line: line.startswith("CHILD")).split()[1])
    assert d.wait(timeout=60) == 0
    wait_for(lambda: process_gone(child), timeout=10, what="the task's child to be killed")
