"""Actors: @remote on a class and its options, handles and method calls,
num_returns, ordering and state, handles passed around, named actors and
namespaces (in one driver), the runtime context, and bad input -- on one
shared cluster."""
from __future__ import annotations

import os

import pytest

import pyray
from pyray.exceptions import RayTaskError

pytestmark = pytest.mark.timeout(60)

RAY_INIT_ARGS = {"num_cpus": 2, "num_gpus": 1, "object_store_memory": 256 << 20,
                 "resources": {"api_custom": 2}}


@pyray.remote
class Counter:
    def __init__(self, start=0, step=1):
        self.value = start
        self.step = step

    def incr(self, by=None):
        self.value += self.step if by is None else by
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()


@pyray.remote
class Log:
    """Records the order in which calls arrive."""

    def __init__(self):
        self.seen = []

    def append(self, i):
        self.seen.append(i)
        return i

    def seen_list(self):
        return self.seen


@pyray.remote
class Returns:
    @pyray.method(num_returns=2)
    def pair(self, a, b):
        return a, b

    @pyray.method(num_returns=3)
    def triple(self):
        return "x", "y", "z"

    def split(self, n):
        return tuple(range(n))


@pyray.remote
class Context:
    def ids(self):
        rc = pyray.get_runtime_context()
        return rc.get_actor_id(), rc.actor_id.hex()

    def me(self):
        return pyray.get_runtime_context().current_actor

    def call_self(self):
        # a handle to itself, through the runtime context
        return pyray.get_runtime_context().current_actor.echo.remote("self")

    def echo(self, x):
        return x


@pyray.remote(num_cpus=1, num_gpus=1, resources={"api_custom": 1})
class Heavy:
    def gpu_ids(self):
        return pyray.get_gpu_ids()

    def ping(self):
        return "pong"


@pyray.remote
def incr_through(handle, by):
    """A task that uses an actor handle it was passed."""
    return pyray.get(handle.incr.remote(by))


@pyray.remote
class Forwarder:
    """An actor that uses an actor handle it was passed."""

    def __init__(self, target):
        self.target = target

    def forward(self, by):
        return pyray.get(self.target.incr.remote(by))

    def make_and_use(self):
        inner = Counter.remote(100)
        return pyray.get(inner.incr.remote())


@pyray.remote
class Named:
    def __init__(self, tag="t"):
        self.tag = tag

    def tag_of(self):
        return self.tag

    def actor_id(self):
        return pyray.get_runtime_context().get_actor_id()


def _resource(name):
    return pyray.available_resources().get(name, 0.0)


# ---------------------------------------------------------------------------
# creation, options, method calls
# ---------------------------------------------------------------------------
def test_method_remote_returns_object_refs(ray_start):
    c = Counter.remote()
    ref = c.incr.remote()
    assert isinstance(ref, pyray.ObjectRef)
    assert pyray.get(ref) == 1
    assert pyray.get([c.incr.remote(), c.incr.remote(5)]) == [2, 7]


def test_constructor_args_and_kwargs(ray_start):
    c = Counter.remote(10, step=3)
    assert pyray.get(c.incr.remote()) == 13
    assert pyray.get(c.incr.remote(by=-13)) == 0


def test_constructor_takes_object_refs(ray_start):
    start = pyray.put(40)
    c = Counter.remote(start, step=pyray.put(2))
    # a top-level ref argument is resolved to its value, as for tasks
    assert pyray.get(c.incr.remote()) == 42


def test_state_persists_between_calls(ray_start):
    c = Counter.remote()
    for i in range(1, 21):
        assert pyray.get(c.incr.remote()) == i
    assert pyray.get(c.get.remote()) == 20


def test_actors_do_not_share_state(ray_start):
    a, b = Counter.remote(), Counter.remote(100)
    pyray.get([a.incr.remote() for _ in range(3)])
    assert pyray.get([a.get.remote(), b.get.remote()]) == [3, 100]
    assert pyray.get(a.pid.remote()) != pyray.get(b.pid.remote())


def test_class_options_at_decoration(ray_start):
    h = Heavy.remote()
    assert pyray.get(h.ping.remote()) == "pong"
    assert pyray.get(h.gpu_ids.remote()) == [0]
    pyray.kill(h)


def test_decorator_with_all_actor_options(ray_start):
    @pyray.remote(num_cpus=0, num_gpus=0, resources={"api_custom": 0.5}, max_concurrency=2,
                  max_restarts=1, max_task_retries=1, name="decorated-all-options",
                  namespace="api-ns-deco", lifetime=None, get_if_exists=False)
    class AllOptions:
        def where(self):
            return pyray.get_runtime_context().get_actor_id()

    a = AllOptions.remote()
    aid = pyray.get(a.where.remote())
    assert aid == a._actor_id.hex()
    assert pyray.get_actor("decorated-all-options", namespace="api-ns-deco") == a
    pyray.kill(a)


def test_options_on_class_then_remote(ray_start, wait_for):
    base = pyray.cluster_resources()["api_custom"]
    # actors killed by earlier tests give their share back asynchronously
    wait_for(lambda: _resource("api_custom") == base, what="api_custom at its total")
    c = Counter.options(num_cpus=0, resources={"api_custom": 1}).remote(5, step=2)
    assert pyray.get(c.incr.remote()) == 7
    wait_for(lambda: _resource("api_custom") == base - 1, what="api_custom held by the actor")
    pyray.kill(c)
    wait_for(lambda: _resource("api_custom") == base, what="api_custom given back")


def test_options_do_not_change_the_class(ray_start):
    Counter.options(name="options-copy-only")
    a = Counter.remote()   # no name: a second unnamed one must not clash
    b = Counter.remote()
    assert pyray.get([a.incr.remote(), b.incr.remote()]) == [1, 1]
    assert "options-copy-only" not in pyray.util.list_named_actors()


def test_num_gpus_option_assigns_a_gpu(ray_start):
    g = Counter.options(num_gpus=1).remote()
    assert pyray.get(g.incr.remote()) == 1

    @pyray.remote(num_gpus=1)
    class G:
        def ids(self):
            return pyray.get_gpu_ids()

    pyray.kill(g)
    gg = G.remote()
    assert pyray.get(gg.ids.remote()) == [0]
    pyray.kill(gg)


# ---------------------------------------------------------------------------
# num_returns
# ---------------------------------------------------------------------------
def test_method_decorator_num_returns(ray_start):
    r = Returns.remote()
    refs = r.pair.remote(1, "b")
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(x, pyray.ObjectRef) for x in refs)
    assert pyray.get(refs) == [1, "b"]
    x, y, z = r.triple.remote()
    assert pyray.get([z, y, x]) == ["z", "y", "x"]


def test_method_options_num_returns(ray_start):
    r = Returns.remote()
    refs = r.split.options(num_returns=4).remote(4)
    assert len(refs) == 4
    assert pyray.get(refs) == [0, 1, 2, 3]
    # options() returns a new method: the default is unchanged
    assert pyray.get(r.split.remote(2)) == (0, 1)
    # and it overrides @method's count
    assert pyray.get(r.pair.options(num_returns=1).remote(1, 2)) == (1, 2)


# ---------------------------------------------------------------------------
# ordering
# ---------------------------------------------------------------------------
def test_ten_thousand_calls_run_in_submission_order(ray_start):
    log = Log.remote()
    n = 10_000
    refs = [log.append.remote(i) for i in range(n)]
    assert pyray.get(refs) == list(range(n))
    assert pyray.get(log.seen_list.remote()) == list(range(n))


def test_calls_with_ref_arguments_keep_their_order(ray_start):
    log = Log.remote()
    values = [pyray.put(i) if i % 2 else i for i in range(200)]
    pyray.get([log.append.remote(v) for v in values])
    assert pyray.get(log.seen_list.remote()) == list(range(200))


# ---------------------------------------------------------------------------
# handles passed around
# ---------------------------------------------------------------------------
def test_handle_passed_to_tasks(ray_start):
    c = Counter.remote()
    results = pyray.get([incr_through.remote(c, 1) for _ in range(10)])
    assert sorted(results) == list(range(1, 11))
    assert pyray.get(c.get.remote()) == 10


def test_handle_passed_to_another_actor(ray_start):
    c = Counter.remote()
    f = Forwarder.remote(c)
    assert pyray.get(f.forward.remote(5)) == 5
    assert pyray.get(c.incr.remote()) == 6
    assert pyray.get(f.forward.remote(10)) == 16


def test_handle_inside_a_container(ray_start):
    c = Counter.remote()
    ref = pyray.put({"actor": c})

    @pyray.remote
    def use(d):
        return pyray.get(d["actor"].incr.remote(2))

    assert pyray.get(use.remote(ref)) == 2
    assert pyray.get(pyray.get(ref)["actor"].get.remote()) == 2


def test_actor_creates_and_uses_an_actor(ray_start):
    f = Forwarder.remote(None)
    assert pyray.get(f.make_and_use.remote()) == 101


def test_handle_equality_and_hash(ray_start):
    c = Counter.remote()
    d = Counter.remote()
    assert c == c and c != d
    assert len({c, d, c}) == 2
    assert "Counter" in repr(c)


# ---------------------------------------------------------------------------
# runtime context
# ---------------------------------------------------------------------------
def test_runtime_context_actor_id(ray_start):
    a = Context.remote()
    got, prop = pyray.get(a.ids.remote())
    assert got == prop == a._actor_id.hex()
    # the driver is not an actor
    assert pyray.get_runtime_context().get_actor_id() is None


def test_runtime_context_current_actor(ray_start):
    a = Context.remote()
    me = pyray.get(a.me.remote())
    assert me == a
    assert pyray.get(me.echo.remote(7)) == 7
    assert pyray.get(pyray.get(a.call_self.remote())) == "self"


def test_current_actor_outside_an_actor_raises(ray_start):
    with pytest.raises(Exception):
        pyray.get_runtime_context().current_actor


# ---------------------------------------------------------------------------
# named actors and namespaces (one driver)
# ---------------------------------------------------------------------------
def test_get_actor_by_name(ray_start):
    a = Named.options(name="api-named-1").remote("one")
    b = pyray.get_actor("api-named-1")
    assert b == a
    assert pyray.get(b.tag_of.remote()) == "one"
    assert pyray.get(b.actor_id.remote()) == a._actor_id.hex()
    pyray.kill(a)


def test_get_if_exists_returns_the_same_actor(ray_start):
    a = Named.options(name="api-gie", get_if_exists=True).remote("first")
    b = Named.options(name="api-gie", get_if_exists=True).remote("second")
    assert a == b
    # the second constructor never ran
    assert pyray.get(b.tag_of.remote()) == "first"
    assert pyray.get(a.actor_id.remote()) == pyray.get(b.actor_id.remote())
    pyray.kill(a)


def test_name_already_taken_raises_value_error_naming_it(ray_start):
    a = Named.options(name="api-taken").remote()
    pyray.get(a.tag_of.remote())
    with pytest.raises(ValueError, match="api-taken"):
        Named.options(name="api-taken").remote()
    # the original is untouched
    assert pyray.get(pyray.get_actor("api-taken").tag_of.remote()) == "t"
    pyray.kill(a)


def test_get_actor_of_an_unknown_name_raises_value_error(ray_start):
    with pytest.raises(ValueError, match="no-such-actor"):
        pyray.get_actor("no-such-actor")


def test_namespaces_isolate_names(ray_start):
    a = Named.options(name="api-ns", namespace="api-ns-a").remote("a")
    b = Named.options(name="api-ns", namespace="api-ns-b").remote("b")
    assert a != b
    assert pyray.get(pyray.get_actor("api-ns", namespace="api-ns-a").tag_of.remote()) == "a"
    assert pyray.get(pyray.get_actor("api-ns", namespace="api-ns-b").tag_of.remote()) == "b"
    with pytest.raises(ValueError):
        pyray.get_actor("api-ns")      # not in the driver's own namespace
    with pytest.raises(ValueError):
        pyray.get_actor("api-ns", namespace="api-ns-c")
    pyray.kill(a)
    pyray.kill(b)


def test_list_named_actors(ray_start, wait_for):
    a = Named.options(name="api-list-1").remote()
    b = Named.options(name="api-list-2", namespace="api-list-ns").remote()
    pyray.get([a.tag_of.remote(), b.tag_of.remote()])
    names = pyray.util.list_named_actors()
    assert "api-list-1" in names
    assert "api-list-2" not in names       # another namespace
    everything = pyray.util.list_named_actors(all_namespaces=True)
    assert {"name": "api-list-2", "namespace": "api-list-ns"} in everything
    assert {"name": "api-list-1", "namespace": pyray.get_runtime_context().namespace} \
        in everything
    pyray.kill(a)
    wait_for(lambda: "api-list-1" not in pyray.util.list_named_actors(),
             what="a killed actor's name to be released")
    pyray.kill(b)


def test_name_is_free_again_after_the_actor_dies(ray_start, wait_for):
    a = Named.options(name="api-reuse").remote("old")
    pyray.get(a.tag_of.remote())
    pyray.kill(a)

    def lookup_fails():
        try:
            pyray.get_actor("api-reuse")
        except ValueError:
            return True
        return False

    wait_for(lookup_fails, what="the killed actor's name to be released")
    b = Named.options(name="api-reuse").remote("new")
    assert pyray.get(pyray.get_actor("api-reuse").tag_of.remote()) == "new"
    pyray.kill(b)


def test_detached_actor_outlives_its_handle(ray_start):
    a = Named.options(name="api-detached", lifetime="detached").remote("d")
    aid = pyray.get(a.actor_id.remote())
    del a
    b = pyray.get_actor("api-detached")
    assert pyray.get(b.actor_id.remote()) == aid
    pyray.kill(b)


def test_named_actor_used_from_a_task(ray_start):
    # keep the handle: a non-detached actor dies with its last handle
    keep = Named.options(name="api-from-task").remote("task")  # noqa: F841

    @pyray.remote
    def lookup():
        return pyray.get(pyray.get_actor("api-from-task").tag_of.remote())

    assert pyray.get(lookup.remote()) == "task"
    pyray.kill(pyray.get_actor("api-from-task"))


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_instantiating_directly_raises_type_error(ray_start):
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        Counter()


def test_calling_a_method_without_remote_raises_type_error(ray_start):
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        c.incr()


def test_unknown_method_raises_attribute_error_at_call_site(ray_start):
    c = Counter.remote()
    with pytest.raises(AttributeError, match="Counter") as info:
        c.no_such_method.remote()
    assert "no_such_method" in str(info.value)
    # the actor is fine
    assert pyray.get(c.incr.remote()) == 1


@pytest.mark.parametrize("opts", [
    {"max_concurrency": 0},
    {"max_restarts": -2},
    {"max_task_retries": "many"},
    {"num_cpus": -1},
    {"no_such_option": 1},
    {"name": ""},
])
def test_bad_actor_options_raise_value_error(ray_start, opts):
    with pytest.raises(ValueError):
        Counter.options(**opts).remote()


def test_bad_method_options_raise_value_error(ray_start):
    c = Counter.remote()
    with pytest.raises(ValueError):
        c.incr.options(num_returns=-1)
    with pytest.raises(ValueError):
        c.incr.options(no_such_option=1)


def test_kill_of_a_non_actor_raises(ray_start):
    with pytest.raises(ValueError):
        pyray.kill(pyray.put(1))


def test_exit_actor_outside_an_actor_raises(ray_start):
    with pytest.raises(TypeError):
        pyray.actor.exit_actor()


def test_method_exception_is_a_ray_task_error_and_actor_lives_on(ray_start):
    @pyray.remote
    class Fails:
        def __init__(self):
            self.calls = 0

        def boom(self, msg):
            self.calls += 1
            raise KeyError(msg)

        def count(self):
            return self.calls

    f = Fails.remote()
    with pytest.raises(KeyError) as info:
        pyray.get(f.boom.remote("missing-key"))
    assert isinstance(info.value, RayTaskError)
    assert "missing-key" in str(info.value)
    with pytest.raises(RayTaskError):
        pyray.get(f.boom.remote("again"))
    assert pyray.get(f.count.remote()) == 2
