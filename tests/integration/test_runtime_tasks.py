"""Tasks, ObjectRefs, get / put / wait, nesting and the edge cases of the
task API, on one shared 2-CPU cluster."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pickle
import threading
import time

import numpy as np
import pytest

import pyray
from tasklib import identity, wait_for_file
from pyray.exceptions import GetTimeoutError

pytestmark = pytest.mark.timeout(60)

# one (fake) GPU, one "foo" and 1 GiB of memory (the node's memory resource):
# tasks that ask for them can be told apart
RAY_INIT_ARGS = {"num_cpus": 2, "num_gpus": 1, "resources": {"foo": 1}, "_memory": 1 << 30,
                 "object_store_memory": 1 << 30}


@pyray.remote
def double(x):
    return 2 * x


@pyray.remote
def add(a, b=0):
    return a + b


@pyray.remote
def type_name(x):
    return type(x).__name__


@pyray.remote(num_returns=3)
def three():
    return 1, 2, 3


@pyray.remote(num_returns=0)
def touch(path):
    with open(path, "w") as f:
        f.write("ran")


# ---------------------------------------------------------------------------
# @remote, options
# ---------------------------------------------------------------------------
def test_remote_returns_object_ref(ray_start):
    ref = double.remote(21)
    assert isinstance(ref, pyray.ObjectRef)
    assert pyray.get(ref) == 42


def _inside(until_free=None, timeout=10.0):
    """Run inside a task: its name, what it was given (resources, GPUs) and
    what its node has left while it runs.  The node's free resources reach
    the GCS a moment after a lease is granted, so they are polled (bounded)
    until they equal `until_free` (on its keys, by default CPU, GPU and foo);
    the last reading is returned either way."""
    rc = pyray.get_runtime_context()
    deadline = time.monotonic() + timeout
    while True:
        avail = pyray.available_resources()
        free = {k: avail.get(k, 0) for k in (until_free or ("CPU", "GPU", "foo"))}
        if until_free is None or free == until_free or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return {"name": rc.get_task_name(), "assigned": rc.get_assigned_resources(),
            "gpu_ids": [int(g) for g in pyray.get_gpu_ids()],
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "free": free}


@pyray.remote
def inside(until_free=None):
    return _inside(until_free)


@pyray.remote
def saw(path):
    """Whether `path` existed when this task started."""
    return os.path.exists(path)


def test_remote_with_options_at_decoration(ray_start):
    @pyray.remote(num_cpus=2, num_gpus=1, resources={"foo": 1}, memory=1 << 20,
                  max_retries=2, retry_exceptions=False, scheduling_strategy="DEFAULT")
    def takes_the_node():
        return _inside(until_free={"CPU": 0, "GPU": 0, "foo": 0,
                                   "memory": (1 << 30) - (1 << 20)})

    got = pyray.get(takes_the_node.remote(), timeout=30)
    assert got["assigned"] == {"CPU": 2, "GPU": 1, "foo": 1, "memory": 1 << 20}
    assert got["gpu_ids"] == [0] and got["cuda"] == "0"
    # while it ran the node had nothing left of what it holds (and of its
    # memory, what it did not take)
    assert got["free"] == {"CPU": 0, "GPU": 0, "foo": 0, "memory": (1 << 30) - (1 << 20)}


def test_num_cpus_option_keeps_other_tasks_out(ray_start, release):
    # a task holding both CPUs: a one-CPU task starts only after it ends,
    # so it sees the file the first one was waiting for
    big = wait_for_file.options(num_cpus=2).remote(str(release))
    small = saw.remote(str(release))
    assert pyray.wait([small], timeout=2)[0] == []
    release.touch()
    assert pyray.get([big, small], timeout=30) == [True, True]


def test_custom_resource_option_keeps_other_tasks_out(ray_start, release):
    # foo: 1 on the node; the CPUs would let both run at once
    first = wait_for_file.options(resources={"foo": 1}).remote(str(release))
    second = saw.options(resources={"foo": 1}).remote(str(release))
    assert pyray.wait([second], timeout=2)[0] == []
    release.touch()
    assert pyray.get([first, second], timeout=30) == [True, True]


def test_scheduling_strategy_strings_are_accepted(ray_start):
    # what they do is checked on several nodes (test_cluster_basic.py)
    for strategy in ("DEFAULT", "SPREAD"):
        assert pyray.get(double.options(scheduling_strategy=strategy).remote(3)) == 6
    for bad in ("NEAREST", 3, object()):
        with pytest.raises(ValueError, match="scheduling_strategy"):
            double.options(scheduling_strategy=bad)


def test_node_affinity_scheduling_strategy(ray_start):
    # one node: hard affinity to it runs there, to a node that is not in the
    # cluster fails, soft affinity to it falls back to this node (more in
    # test_cluster_basic.py)
    from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    here = pyray.get_runtime_context().get_node_id()
    where = inside.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
    assert pyray.get(where.remote(), timeout=30)["name"] == "inside"
    nowhere = "ab" * 16
    hard = double.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        nowhere, soft=False)).remote(1)
    with pytest.raises(pyray.exceptions.TaskUnschedulableError):
        pyray.get(hard, timeout=30)
    soft = double.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        nowhere, soft=True)).remote(1)
    assert pyray.get(soft, timeout=30) == 2


def test_options_override_without_changing_the_original(ray_start):
    two = double.options(num_returns=2, num_cpus=0.5)
    with pytest.raises(pyray.exceptions.RayTaskError):
        # double returns one int: unpacking it into 2 returns fails at get
        pyray.get(two.remote(1))
    assert isinstance(double.remote(1), pyray.ObjectRef)

    @pyray.remote
    def pair():
        return "a", "b"

    refs = pair.options(num_returns=2).remote()
    assert isinstance(refs, list) and len(refs) == 2
    assert pyray.get(refs) == ["a", "b"]
    assert pyray.get(pair.remote()) == ("a", "b")

    half = inside.options(num_cpus=0.5, resources={"foo": 0.5})
    assert pyray.get(half.remote(), timeout=30)["assigned"] == {"CPU": 0.5, "foo": 0.5}
    assert pyray.get(inside.remote(), timeout=30)["assigned"] == {"CPU": 1}


def test_options_chained(ray_start):
    f = inside.options(num_cpus=2).options(resources={"foo": 1}).options(max_retries=0)
    f = f.options(name="renamed").options(num_cpus=1)
    got = pyray.get(f.remote(), timeout=30)
    assert got["name"] == "renamed"
    assert got["assigned"] == {"CPU": 1, "foo": 1}


@pyray.remote
class Named:
    def task_name(self):
        return pyray.get_runtime_context().get_task_name()

    async def async_task_name(self):
        return pyray.get_runtime_context().get_task_name()


@pyray.remote(max_concurrency=2)
class NamedThreaded:
    def task_name(self):
        return pyray.get_runtime_context().get_task_name()


@pyray.remote
def fails():
    raise ValueError("boom")


def test_task_name_option(ray_start):
    assert pyray.get_runtime_context().get_task_name() is None       # the driver
    assert pyray.get(inside.remote(), timeout=30)["name"] == "inside"  # the default
    assert pyray.get(inside.options(name="my-task").remote(), timeout=30)["name"] == "my-task"

    @pyray.remote
    def local_fn():
        return pyray.get_runtime_context().get_task_name()

    assert pyray.get(local_fn.remote(), timeout=30) == \
        "test_task_name_option.<locals>.local_fn"
    a = Named.remote()
    assert pyray.get(a.task_name.remote(), timeout=30) == "Named.task_name"
    assert pyray.get(a.async_task_name.remote(), timeout=30) == "Named.async_task_name"
    b = NamedThreaded.remote()
    assert pyray.get(b.task_name.remote(), timeout=30) == "NamedThreaded.task_name"
    # errors name the task
    with pytest.raises(ValueError, match="boom") as info:
        pyray.get(fails.options(name="the-failing-one").remote(), timeout=30)
    assert "the-failing-one" in str(info.value)
    with pytest.raises(ValueError):
        fails.options(name=3)


def test_kwargs_and_defaults(ray_start):
    assert pyray.get(add.remote(1)) == 1
    assert pyray.get(add.remote(1, b=2)) == 3
    assert pyray.get(add.remote(a=3, b=4)) == 7


def test_closure_and_lambda(ray_start):
    offset = 100
    f = pyray.remote(lambda x: x + offset)
    assert pyray.get(f.remote(1)) == 101


def test_async_remote_function(ray_start):
    @pyray.remote
    async def f(x):
        await asyncio.sleep(0)
        return x * 3

    assert pyray.get(f.remote(3)) == 9


# ---------------------------------------------------------------------------
# ObjectRef
# ---------------------------------------------------------------------------
def test_object_ref_hashable_and_comparable(ray_start):
    a = pyray.put(1)
    b = pyray.put(1)
    assert a == a and not (a != a)
    assert a != b and not (a == b)
    assert len({a, b, a}) == 2
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b"
    same = pickle.loads(pickle.dumps(a))
    assert same == a and hash(same) == hash(a)
    assert a != a.hex()


def test_object_ref_hex(ray_start):
    ref = double.remote(1)
    h = ref.hex()
    assert isinstance(h, str) and h
    assert bytes.fromhex(h) == ref.binary()
    assert h in repr(ref)
    assert len({double.remote(i).hex() for i in range(20)}) == 20


def test_await_object_ref(ray_start):
    async def main():
        one = await double.remote(2)
        many = await asyncio.gather(*[double.remote(i) for i in range(5)])
        return one, list(many)

    assert asyncio.run(main()) == (4, [0, 2, 4, 6, 8])


def test_await_object_ref_of_failed_task(ray_start):
    @pyray.remote
    def fail():
        raise KeyError("missing-key-7")

    async def main():
        with pytest.raises(KeyError, match="missing-key-7"):
            await fail.remote()

    asyncio.run(main())


def test_await_ref_that_becomes_ready_later(ray_start, release):
    ref = wait_for_file.remote(str(release), "late")

    async def wait_on(r):
        return await r

    async def main():
        task = asyncio.ensure_future(wait_on(ref))
        await asyncio.sleep(0)          # let it start waiting
        assert not task.done()
        release.touch()
        return await asyncio.wait_for(task, 30)

    assert asyncio.run(main()) == "late"


def test_future(ray_start, release):
    fut = double.remote(8).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=30) == 16

    flag = release
    pending = wait_for_file.remote(str(flag), "done").future()
    assert not pending.done()
    flag.touch()
    assert pending.result(timeout=30) == "done"

    futs = [double.remote(i).future() for i in range(10)]
    done, not_done = concurrent.futures.wait(futs, timeout=30)
    assert not not_done
    assert sorted(f.result() for f in done) == [2 * i for i in range(10)]


def test_future_of_failed_task(ray_start):
    @pyray.remote
    def fail():
        raise ValueError("future-fail")

    with pytest.raises(ValueError, match="future-fail"):
        fail.remote().future().result(timeout=30)


# ---------------------------------------------------------------------------
# get / put
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    None, 0, -1.5, "text", b"\x00bytes", [1, [2, [3]]], {"a": (1, 2)}, {1, 2, 3},
    np.float32(3.5), np.arange(10), list(range(100_000)),
], ids=lambda v: type(v).__name__)
def test_put_get_roundtrip(ray_start, value):
    got = pyray.get(pyray.put(value))
    if isinstance(value, np.ndarray):
        np.testing.assert_array_equal(got, value)
    else:
        assert got == value and type(got) is type(value)


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def test_custom_class_through_task(ray_start):
    assert pyray.get(identity.remote(Point(1, 2))) == Point(1, 2)


def test_get_list_preserves_order_and_a_tuple_is_refused(ray_start):
    refs = [double.remote(i) for i in range(20)]
    assert pyray.get(refs) == [2 * i for i in range(20)]
    with pytest.raises(ValueError, match="must either be an ObjectRef or a list"):
        pyray.get(tuple(refs[:3]))      # as in Ray: a list, not any sequence


def test_get_empty_list(ray_start):
    assert pyray.get([]) == []


def test_get_with_timeout_ready_value(ray_start):
    assert pyray.get(double.remote(2), timeout=30) == 4
    ref = pyray.put("x")
    assert pyray.get(ref, timeout=0) == "x"


def test_get_timeout_on_pending_task(ray_start, release):
    flag = release
    ref = wait_for_file.remote(str(flag), 1)
    with pytest.raises(GetTimeoutError):
        pyray.get(ref, timeout=0.2)
    with pytest.raises(TimeoutError):
        pyray.get([pyray.put(0), ref], timeout=0.1)
    flag.touch()
    assert pyray.get(ref, timeout=30) == 1


def test_put_copies_the_value(ray_start):
    a = np.zeros(10)
    ref = pyray.put(a)
    a[:] = 1
    np.testing.assert_array_equal(pyray.get(ref), np.zeros(10))
    lst = [1, 2]
    ref = pyray.put(lst)
    lst.append(3)
    assert pyray.get(ref) == [1, 2]


def test_put_of_object_ref_is_refused(ray_start):
    ref = pyray.put(1)
    with pytest.raises(TypeError):
        pyray.put(ref)
    assert pyray.get(pyray.get(pyray.put([ref]))[0]) == 1


# ---------------------------------------------------------------------------
# wait
# ---------------------------------------------------------------------------
def test_wait_all_ready(ray_start):
    refs = [double.remote(i) for i in range(5)]
    ready, not_ready = pyray.wait(refs, num_returns=5, timeout=30)
    assert ready == refs and not_ready == []


def test_wait_splits_ready_and_pending(ray_start, release):
    flag = release
    slow = wait_for_file.remote(str(flag), "slow")
    fast = [double.remote(i) for i in range(3)]
    refs = [slow] + fast
    ready, not_ready = pyray.wait(refs, num_returns=3, timeout=15)
    assert set(ready) == set(fast)
    assert ready == fast        # in the order of the input list
    assert not_ready == [slow]

    ready, not_ready = pyray.wait([slow], timeout=0.1)
    assert ready == [] and not_ready == [slow]

    ready, not_ready = pyray.wait(refs, num_returns=4, timeout=0)
    assert len(ready) == 3 and not_ready == [slow]

    flag.touch()
    ready, not_ready = pyray.wait([slow], timeout=30)
    assert ready == [slow] and not_ready == []


def test_wait_default_returns_one(ray_start):
    refs = [double.remote(i) for i in range(4)]
    ready, not_ready = pyray.wait(refs)
    assert len(ready) == 1 and len(not_ready) == 3
    assert set(ready) | set(not_ready) == set(refs)


def test_wait_fetch_local_false(ray_start):
    # one node: every object is local; what the option does is checked on
    # two nodes (test_cluster_objects.py::test_wait_fetch_local)
    refs = [double.remote(i) for i in range(3)]
    ready, not_ready = pyray.wait(refs, num_returns=3, fetch_local=False, timeout=30)
    assert len(ready) == 3 and not not_ready


def test_wait_num_returns_greater_than_refs(ray_start):
    refs = [pyray.put(1), pyray.put(2)]
    with pytest.raises(ValueError):
        pyray.wait(refs, num_returns=3)


def test_wait_rejects_bad_input(ray_start):
    ref = pyray.put(1)
    with pytest.raises(TypeError):
        pyray.wait(ref)
    with pytest.raises(TypeError):
        pyray.wait([ref, 5])
    with pytest.raises(ValueError):
        pyray.wait([ref, ref])


def test_wait_empty_list(ray_start):
    assert pyray.wait([], num_returns=0) == ([], [])


# ---------------------------------------------------------------------------
# refs as arguments
# ---------------------------------------------------------------------------
def test_top_level_ref_arguments_are_resolved(ray_start):
    assert pyray.get(double.remote(pyray.put(5))) == 10
    assert pyray.get(add.remote(pyray.put(1), b=pyray.put(2))) == 3
    assert pyray.get(type_name.remote(pyray.put(np.arange(3)))) == "ndarray"


def test_chained_task_results_as_arguments(ray_start):
    ref = double.remote(1)
    for _ in range(10):
        ref = double.remote(ref)
    assert pyray.get(ref) == 2 ** 11


def test_refs_nested_in_containers_stay_refs(ray_start):
    inner = pyray.put(7)

    @pyray.remote
    def inspect(container):
        kinds = {k: type(v).__name__ for k, v in container.items()}
        values = {k: pyray.get(v) for k, v in container.items()}
        return kinds, values

    kinds, values = pyray.get(inspect.remote({"put": inner, "task": double.remote(3)}))
    assert kinds == {"put": "ObjectRef", "task": "ObjectRef"}
    assert values == {"put": 7, "task": 6}
    assert pyray.get(type_name.remote([inner])) == "list"


def test_nested_refs_three_deep(ray_start):
    r1 = pyray.put("deep")
    r2 = pyray.put([r1])
    r3 = pyray.put([r2])
    del r1, r2
    level2 = pyray.get(r3)[0]
    assert isinstance(level2, pyray.ObjectRef)
    level1 = pyray.get(level2)[0]
    assert isinstance(level1, pyray.ObjectRef)
    assert pyray.get(level1) == "deep"

    @pyray.remote
    def unwrap(outer):
        return pyray.get(pyray.get(pyray.get(outer[0])[0])[0])

    assert pyray.get(unwrap.remote([r3])) == "deep"


def test_task_returning_a_ref(ray_start):
    @pyray.remote
    def put_and_return():
        return pyray.put(42)

    @pyray.remote
    def submit_and_return():
        return double.remote(50)

    inner = pyray.get(put_and_return.remote())
    assert isinstance(inner, pyray.ObjectRef)
    assert pyray.get(inner) == 42
    inner = pyray.get(submit_and_return.remote())
    assert isinstance(inner, pyray.ObjectRef)
    assert pyray.get(inner) == 100


def test_many_ref_arguments(ray_start):
    refs = [pyray.put(i) for i in range(100)]

    @pyray.remote
    def total(*xs):
        return sum(xs)

    assert pyray.get(total.remote(*refs)) == sum(range(100))


# ---------------------------------------------------------------------------
# nested tasks
# ---------------------------------------------------------------------------
def test_task_submits_tasks(ray_start):
    @pyray.remote
    def outer(n):
        return sum(pyray.get([double.remote(i) for i in range(n)]))

    assert pyray.get(outer.remote(10)) == 90


def test_put_and_get_inside_task(ray_start):
    @pyray.remote
    def inside():
        small = pyray.put({"k": 1})
        big = pyray.put(np.arange(1 << 18))          # 2 MiB: through the store
        return pyray.get(small)["k"], int(pyray.get(big).sum())

    assert pyray.get(inside.remote()) == (1, int(np.arange(1 << 18).sum()))


@pyray.remote
def factorial(n):
    if n <= 1:
        return 1
    return n * pyray.get(factorial.remote(n - 1))


@pyray.remote
def fib(n):
    if n < 2:
        return n
    a, b = pyray.get([fib.remote(n - 1), fib.remote(n - 2)])
    return a + b


def test_recursive_tasks_do_not_deadlock(ray_start):
    assert pyray.get(factorial.remote(12), timeout=50) == 479001600


def test_recursive_fan_out_does_not_deadlock(ray_start):
    assert pyray.get(fib.remote(7), timeout=50) == 13


def test_submit_and_get_from_driver_threads(ray_start):
    results = []

    def submit(i):
        results.append(pyray.get(double.remote(i)))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [2 * i for i in range(8)]


# ---------------------------------------------------------------------------
# num_returns
# ---------------------------------------------------------------------------
def test_num_returns_many(ray_start):
    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert all(isinstance(r, pyray.ObjectRef) for r in refs)
    assert pyray.get(refs) == [1, 2, 3]
    assert pyray.get(refs[2]) == 3


def test_num_returns_one(ray_start):
    @pyray.remote(num_returns=1)
    def one():
        return (1, 2)

    ref = one.remote()
    assert isinstance(ref, pyray.ObjectRef)
    assert pyray.get(ref) == (1, 2)


def test_num_returns_zero(ray_start, tmp_path, wait_for):
    path = tmp_path / "ran"
    assert touch.remote(str(path)) is None
    wait_for(lambda: path.exists() and path.read_text() == "ran", timeout=30,
             what="the num_returns=0 task to run")


def test_num_returns_mismatch_is_an_error(ray_start):
    with pytest.raises(pyray.exceptions.RayTaskError):
        pyray.get(three.options(num_returns=2).remote())


# ---------------------------------------------------------------------------
# volume
# ---------------------------------------------------------------------------
def test_ten_thousand_small_tasks(ray_start):
    refs = [double.remote(i) for i in range(10_000)]
    assert pyray.get(refs, timeout=50) == [2 * i for i in range(10_000)]


def test_get_10k_refs(ray_start):
    @pyray.remote
    def make_refs(n):
        return [pyray.put(i) for i in range(n)]

    refs = pyray.get(make_refs.remote(10_000))
    assert len(refs) == 10_000
    assert all(isinstance(r, pyray.ObjectRef) for r in refs[:10])
    assert pyray.get(refs, timeout=50) == list(range(10_000))


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_unpicklable_argument_fails_at_remote(ray_start):
    with pytest.raises(TypeError) as info:
        identity.remote(threading.Lock())
    msg = str(info.value)
    assert "lock" in msg.lower() and "argument" in msg.lower(), msg

    with pytest.raises(TypeError) as info:
        add.remote(1, b=threading.Lock())
    assert "'b'" in str(info.value) or " b " in str(info.value), str(info.value)
    # the cluster is fine afterwards
    assert pyray.get(double.remote(1)) == 2


def test_unpicklable_function_fails_at_remote(ray_start):
    lock = threading.Lock()

    @pyray.remote
    def uses_lock():
        with lock:
            return 1

    with pytest.raises(TypeError):
        uses_lock.remote()


@pytest.mark.parametrize("opts", [
    {"num_cpus": -1}, {"num_cpus": "1"}, {"num_gpus": -0.5}, {"num_gpus": "x"},
    {"resources": {"custom": -1}}, {"num_returns": -1}, {"max_retries": -2},
], ids=["neg-cpus", "str-cpus", "neg-gpus", "str-gpus", "neg-custom", "neg-returns",
        "bad-retries"])
def test_bad_options_fail_at_decoration(opts):
    with pytest.raises(ValueError):
        pyray.remote(**opts)(lambda: None)
    with pytest.raises(ValueError):
        double.options(**opts)


def test_unknown_option_fails_at_decoration():
    with pytest.raises(ValueError):
        pyray.remote(num_cpu=1)(lambda: None)


def test_calling_remote_function_directly(ray_start):
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        double(1)


@pytest.mark.parametrize("bad", [1, "ref", None, {"a": 1}], ids=lambda v: type(v).__name__)
def test_get_of_non_ref(ray_start, bad):
    with pytest.raises(ValueError) as info:     # Ray's error for what is not a list
        pyray.get(bad)
    assert type(bad).__name__ in str(info.value)


def test_get_of_list_with_non_ref(ray_start):
    with pytest.raises(TypeError) as info:
        pyray.get([pyray.put(1), 2])
    assert "int" in str(info.value)


def test_get_negative_timeout(ray_start):
    with pytest.raises(ValueError):
        pyray.get(pyray.put(1), timeout=-1)
