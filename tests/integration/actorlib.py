"""Actor classes and helpers shared by the actor tests.

A module of its own (not conftest) because workers import the module an
actor class was defined in, by name, from the driver's sys.path.
"""
from __future__ import annotations

import os
import time

import psutil

import pyray


def wait_path(path, timeout=30.0):
    """Blocks until `path` exists; raises TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def process_gone(pid):
    """True once `pid` has exited (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pyray.remote(num_cpus=0)
class Counter:
    """State, its pid, and whether it was restarted."""

    def __init__(self, start=0):
        self.value = start

    def incr(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()

    def reconstructed(self):
        return pyray.get_runtime_context().was_current_actor_reconstructed()

    def hold(self, started, release):
        """Signals `started`, then runs until `release` exists; returns
        (pid, value): a call that is in flight for as long as a test needs."""
        open(started, "w").close()
        wait_path(release)
        return os.getpid(), self.value

    def exit(self):
        pyray.actor.exit_actor()
        return "not reached"
