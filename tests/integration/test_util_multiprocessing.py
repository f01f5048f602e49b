"""pyray.util.multiprocessing.Pool: multiprocessing.Pool's API on actors."""
from __future__ import annotations

import multiprocessing
import os
import time

import pytest

import pyray
from pyray.util.multiprocessing import Pool, TimeoutError

from poollib import (add, fail_on_three, get_mark, raise_unpicklable, set_mark, sleep_then,
                     square_pid, bad_initializer)

RAY_INIT_ARGS = {"num_cpus": 2, "object_store_memory": 256 << 20}


@pytest.fixture(scope="module")
def pool(ray_start, tmp_path_factory):
    path = tmp_path_factory.mktemp("init")
    # two actors (one per CPU) holding half a CPU each: the other tests'
    # one-process pools fit beside it
    p = Pool(initializer=set_mark, initargs=("ready", str(path)),
             ray_remote_args={"num_cpus": 0.5})
    p.init_dir = path
    yield p
    p.terminate()


def test_timeout_error_is_multiprocessings():
    assert TimeoutError is multiprocessing.TimeoutError


def test_map_runs_in_pool_processes(pool):
    out = pool.map(square_pid, range(20))
    assert [v for v, _ in out] == [i * i for i in range(20)]
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2          # one process per CPU by default


def test_initializer_ran_once_in_each_actor(pool):
    marks = set(pool.map(get_mark, range(16), chunksize=1))
    assert {m[0] for m in marks} == {"ready"}
    assert len(marks) == 2              # both actors, each initialized
    files = sorted(os.listdir(pool.init_dir))
    assert files == sorted(f"init-{pid}" for _, pid in marks)


def test_chunksize_and_starmap(pool):
    assert pool.map(abs, [-1, -2, -3, -4, -5], chunksize=2) == [1, 2, 3, 4, 5]
    assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.starmap_async(add, [(5, 5)]).get(timeout=10) == [10]
    assert pool.map(abs, []) == []


def test_apply(pool):
    assert pool.apply(add, (2, 3)) == 5
    assert pool.apply(add, (), {"a": 1, "b": 2}) == 3
    r = pool.apply_async(square_pid, (4,))
    value, pid = r.get(timeout=10)
    assert value == 16 and pid != os.getpid()
    assert r.ready() and r.successful()


def test_imap_and_imap_unordered(pool):
    assert list(pool.imap(abs, [-1, -2, -3])) == [1, 2, 3]
    assert list(pool.imap(abs, range(-6, 0), chunksize=4)) == [6, 5, 4, 3, 2, 1]
    assert sorted(pool.imap_unordered(abs, [-1, -2, -3], chunksize=2)) == [1, 2, 3]
    it = pool.imap(abs, [-7])
    assert it.next(timeout=10) == 7
    with pytest.raises(StopIteration):
        next(it)


def test_imap_unordered_yields_the_first_finished_first(pool):
    # two chunks on two actors: the quick one comes out first
    it = pool.imap_unordered(_star_sleep, [("slow", 0.8), ("fast", 0.0)])
    assert it.next(timeout=10) == "fast"
    assert it.next(timeout=10) == "slow"


def _star_sleep(args):
    return sleep_then(*args)


def test_error_is_reraised_with_its_type(pool):
    with pytest.raises(KeyError) as info:
        pool.map(fail_on_three, range(6))
    assert info.value.args == ("three", 3)
    assert "fail_on_three" in str(info.value.__cause__)     # the remote traceback
    with pytest.raises(KeyError):
        pool.apply(fail_on_three, (3,))
    r = pool.map_async(fail_on_three, range(6))
    r.wait(timeout=10)
    assert r.ready() and not r.successful()


def test_imap_yields_until_the_error(pool):
    got = []
    with pytest.raises(KeyError):
        for x in pool.imap(fail_on_three, range(6)):
            got.append(x)
    assert got == [0, 1, 2]


def test_unpicklable_error_still_reaches_the_caller(pool):
    with pytest.raises(RuntimeError, match="custom"):
        pool.apply(raise_unpicklable, (1,))


def test_async_result_timeout(pool):
    r = pool.apply_async(sleep_then, ("done", 0.6))
    with pytest.raises(ValueError):
        r.successful()                  # not ready yet
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        r.get(timeout=0.2)
    assert 0.15 <= time.monotonic() - t0 < 3
    assert not r.ready()
    assert r.get(timeout=10) == "done"
    it = pool.imap(_star_sleep, [("x", 0.6)])
    with pytest.raises(TimeoutError):
        it.next(timeout=0.1)
    assert it.next(timeout=10) == "x"


def test_callbacks(pool):
    import threading
    got, errors = [], []
    done = threading.Event()
    pool.map_async(abs, [-1, -2], callback=lambda v: (got.append(v), done.set()))
    assert done.wait(10)
    assert got == [[1, 2]]
    done.clear()
    pool.apply_async(fail_on_three, (3,), error_callback=lambda e: (errors.append(e),
                                                                     done.set()))
    assert done.wait(10)
    assert isinstance(errors[0], KeyError)


def test_bad_input(pool):
    with pytest.raises(ValueError):
        pool.map(abs, [1], chunksize=0)
    with pytest.raises(ValueError):
        Pool(processes=0)
    with pytest.raises(ValueError):
        Pool(processes=64)              # more than the cluster's CPUs
    with pytest.raises(TypeError):
        Pool(initializer=5)
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(pool)


def test_close_join_and_reuse(ray_start):
    p = Pool(1)
    r = p.map_async(_star_sleep, [("a", 0.3)])
    with pytest.raises(ValueError):
        p.join()                        # still running
    p.close()
    with pytest.raises(ValueError, match="not running"):
        p.map(abs, [1])
    p.join(timeout=10)
    assert r.get(timeout=1) == ["a"]


def test_context_manager_terminates(ray_start):
    with Pool(1) as p:
        pid = p.apply(square_pid, (1,))[1]
    with pytest.raises(ValueError):
        p.apply(abs, (1,))
    import psutil

    def gone():
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    deadline = time.monotonic() + 10
    while not gone():
        assert time.monotonic() < deadline, "the pool's process is still there"
        time.sleep(0.05)


def test_terminate_fails_outstanding_work(ray_start):
    p = Pool(1)
    r = p.apply_async(sleep_then, ("never", 30))
    time.sleep(0.2)
    p.terminate()
    with pytest.raises(Exception):
        r.get(timeout=10)
    p.join(timeout=10)


def test_maxtasksperchild_replaces_actors(ray_start):
    p = Pool(1, maxtasksperchild=2)
    pids = [pid for _, pid in p.map(square_pid, range(6), chunksize=1)]
    assert len(set(pids)) == 3                     # a fresh actor every 2 chunks
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    p.terminate()


def test_initializer_error_raises_at_start(ray_start):
    with pytest.raises(Exception, match="initializer failed"):
        Pool(1, initializer=bad_initializer)


def test_pool_inside_a_task(ray_start):
    @pyray.remote(num_cpus=0)
    def use_pool():
        with Pool(1) as p:
            return p.map(square_pid, [3])[0]
    value, pid = pyray.get(use_pool.remote(), timeout=60)
    assert value == 9 and pid != os.getpid()
