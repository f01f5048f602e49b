"""The DAG API (pyray.dag): .bind() builds a graph, execute() runs it.
Each test observes what ran: values, how many times a shared node ran (an
actor counts), the state of the actor a ClassNode created, the options a
task or actor saw."""
from __future__ import annotations

import pickle
from collections import namedtuple

import pytest

import pyray
from pyray.dag import (ClassMethodNode, ClassNode, DAGNode, FunctionNode, InputAttributeNode,
                       InputNode, MultiOutputNode)

pytestmark = pytest.mark.timeout(120)

RAY_INIT_ARGS = {"num_cpus": 4, "object_store_memory": 256 << 20}

T = 30


@pyray.remote
def add(a, b):
    return a + b


@pyray.remote
def mul(a, b):
    return a * b


@pyray.remote
def counted(counter, value):
    """Counts its runs on `counter` (an actor), then returns value."""
    pyray.get(counter.inc.remote(), timeout=T)
    return value


@pyray.remote
def task_name():
    return pyray.get_runtime_context().get_task_name()


@pyray.remote
def total(items):
    """items: [ref, {"k": ref}, (ref,)]: nested refs arrive as refs."""
    first, mapping, tup = items
    return pyray.get(first) + pyray.get(mapping["k"]) + pyray.get(tup[0])


@pyray.remote
def handle_value(acc):
    return pyray.get(acc.get.remote(), timeout=T)


@pyray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def inc(self):
        self.n += 1
        return self.n

    def get(self):
        return self.n


@pyray.remote
class Acc:
    def __init__(self, start=0):
        self.v = start

    def add(self, x):
        self.v += x
        return self.v

    def get(self):
        return self.v

    def ident(self):
        ctx = pyray.get_runtime_context()
        return ctx.get_actor_id(), ctx.get_actor_name()

    def pair(self):
        return self.v, -self.v


def get(x):
    return pyray.get(x, timeout=T)


# ---------------------------------------------------------------------------
# functions and input
# ---------------------------------------------------------------------------
def test_function_dag_with_positional_and_keyword_input(ray_start):
    with InputNode() as inp:
        dag = add.bind(mul.bind(inp[0], 2), inp.y)
    assert isinstance(dag, FunctionNode)
    ref = dag.execute(3, y=4)
    assert isinstance(ref, pyray.ObjectRef)
    assert get(ref) == 10
    assert get(dag.execute(10, y=1)) == 21
    # inp["y"] is the keyword too
    with InputNode() as inp:
        dag = add.bind(inp[0], inp["y"])
    assert get(dag.execute(1, y=2)) == 3


def test_a_single_input_is_the_value_itself(ray_start):
    Point = namedtuple("Point", "x y")
    with InputNode() as inp:
        whole = add.bind(inp, 1)
        by_index = add.bind(inp[0], inp[1])
        by_key = add.bind(inp["a"], inp["b"])
        by_attr = add.bind(inp.x, inp.y)
    assert get(whole.execute(5)) == 6
    assert get(by_index.execute([2, 3])) == 5
    assert get(by_key.execute({"a": 4, "b": 5})) == 9
    assert get(by_attr.execute(Point(6, 7))) == 13
    assert isinstance(inp.x, InputAttributeNode)


def test_dag_without_input_and_constant_arguments(ray_start):
    dag = add.bind(mul.bind(2, 3), b=4)
    assert get(dag.execute()) == 10


def test_nodes_nested_in_arguments_arrive_as_refs(ray_start):
    dag = total.bind([add.bind(1, 1), {"k": mul.bind(2, 5)}, (add.bind(0, 3),)])
    assert get(dag.execute()) == 15


def test_a_shared_node_runs_once_per_execute(ray_start):
    counter = Counter.remote()
    with InputNode() as inp:
        shared = counted.bind(counter, inp)
        dag = add.bind(mul.bind(shared, 2), add.bind(shared, 1))
    assert get(dag.execute(5)) == 16          # 5*2 + 5+1
    assert get(counter.get.remote()) == 1
    assert get(dag.execute(1)) == 4
    assert get(counter.get.remote()) == 2
    outs = MultiOutputNode([shared, dag])
    assert get(outs.execute(2)) == [2, 7]
    assert get(counter.get.remote()) == 3


def test_multi_output_node_gives_a_list_of_refs(ray_start):
    with InputNode() as inp:
        dag = MultiOutputNode([add.bind(inp, 1), mul.bind(inp, 2), inp])
    refs = dag.execute(7)
    assert isinstance(refs, list) and len(refs) == 3
    assert all(isinstance(r, pyray.ObjectRef) for r in refs[:2])
    assert get(refs[:2]) == [8, 14]
    assert refs[2] == 7                      # the input itself


def test_function_options_before_bind_are_used(ray_start):
    node = task_name.options(name="named-in-dag").bind()
    assert node.get_options()["name"] == "named-in-dag"
    assert get(node.execute()) == "named-in-dag"
    assert get(task_name.bind().execute()).endswith("task_name")
    two = mul.options(num_returns=1).bind(2, 3)
    assert get(two.execute()) == 6


# ---------------------------------------------------------------------------
# actors
# ---------------------------------------------------------------------------
def test_method_calls_on_a_class_node_share_the_actor_in_bind_order(ray_start):
    acc = Acc.bind(10)
    assert isinstance(acc, ClassNode)
    acc.add.bind(1)                          # not an output: still runs, first
    with InputNode() as inp:
        acc.add.bind(inp)
        dag = MultiOutputNode([acc.get.bind(), add.bind(acc.get.bind(), 100)])
    assert isinstance(dag.get_args()[0], ClassMethodNode)
    assert get(dag.execute(5)) == [16, 116]
    # a new actor per execute(): the state starts over
    assert get(dag.execute(5)) == [16, 116]


def test_each_execute_creates_the_class_nodes_actor_once(ray_start):
    acc = Acc.bind()
    dag = MultiOutputNode([acc.ident.bind(), acc.ident.bind()])
    (id1, _), (id2, _) = get(dag.execute())
    assert id1 == id2                        # one actor for the whole execute
    (id3, _), _ = get(dag.execute())
    assert id3 != id1                        # and a new one for the next


def test_class_node_execute_gives_the_actor_handle(ray_start):
    handle = Acc.bind(3).execute()
    assert isinstance(handle, pyray.actor.ActorHandle)
    assert get(handle.add.remote(4)) == 7


def test_class_node_as_an_argument_is_its_handle(ray_start):
    acc = Acc.bind(42)
    assert get(handle_value.bind(acc).execute()) == 42


def test_actor_and_method_options_before_bind_are_used(ray_start):
    acc = Acc.options(name="dag-named-actor").bind(1)
    assert acc.get_options()["name"] == "dag-named-actor"
    assert get(acc.ident.bind().execute())[1] == "dag-named-actor"
    pair = Acc.bind(2).pair.options(num_returns=2).bind()
    refs = pair.execute()
    assert isinstance(refs, list) and get(refs) == [2, -2]


def test_method_bind_on_an_existing_actor_handle(ray_start):
    handle = Acc.remote(0)
    with InputNode() as inp:
        dag = handle.add.bind(inp)
    assert isinstance(dag, ClassMethodNode)
    assert get(dag.execute(2)) == 2
    assert get(dag.execute(3)) == 5          # the same actor, its state kept
    pair = handle.pair.options(num_returns=2).bind()
    assert get(pair.execute()) == [5, -5]


# ---------------------------------------------------------------------------
# walking the graph
# ---------------------------------------------------------------------------
def test_other_args_and_apply_recursive(ray_start):
    acc = Acc.bind()
    first = acc.add.bind(1)
    second = acc.get.bind()
    other = second.get_other_args_to_resolve()
    assert other["parent_class_node"] is acc
    assert other["prev_class_method_call"] is first
    assert first.get_other_args_to_resolve()["prev_class_method_call"] is None

    with InputNode() as inp:
        shared = add.bind(inp, 1)
        dag = add.bind(shared, mul.bind(shared, [shared, {"k": 2}]))
    seen = []

    def name(node):
        seen.append(node.get_stable_uuid())
        return type(node).__name__
    assert dag.apply_recursive(name) == "FunctionNode"
    assert len(seen) == len(set(seen)) == 4   # each node once: inp, shared, mul, dag
    visited = []
    dag.traverse_and_apply(lambda n: visited.append(n))
    assert len(visited) == 4 and visited[0] is dag and visited[-1] is inp
    replaced = dag.apply_functional([shared, {"x": (shared,)}],
                                    lambda n: isinstance(n, FunctionNode), lambda n: "R")
    assert replaced == ["R", {"x": ("R",)}]


def test_long_chain_of_method_calls(ray_start):
    acc = Acc.bind()
    for _ in range(1500):                     # deeper than Python's recursion limit
        acc.add.bind(1)
    assert get(acc.get.bind().execute()) == 1500


# ---------------------------------------------------------------------------
# misuse
# ---------------------------------------------------------------------------
def test_misuse_is_refused_clearly(ray_start):
    node = add.bind(1, 2)
    with pytest.raises(AttributeError, match=r"\.remote\(\) cannot be used on"):
        node.remote()
    with pytest.raises(AttributeError, match=r"\.bind\(\) cannot be used again"):
        Acc.bind().bind()
    with pytest.raises(AttributeError, match=r"\.remote\(\) cannot be used on ClassMethodNodes"):
        Acc.bind().get.remote()
    with pytest.raises(AttributeError, match="has no attribute .nope."):
        Acc.bind().nope.bind()
    with pytest.raises(ValueError, match="cannot be serialized"):
        pickle.dumps(node)
    with pytest.raises(TypeError, match="FunctionNode cannot be serialized"):
        add.remote(node, 1)                   # the submit path names the argument
    with pytest.raises(NotImplementedError, match="experimental_compile"):
        node.experimental_compile()
    with InputNode() as inp:
        with pytest.raises(ValueError, match="InputNode cannot be an argument of a ClassNode"):
            Acc.bind(inp)
    with pytest.raises(ValueError, match="should not take any args"):
        InputNode(input_type=int)
    with InputNode() as a, InputNode() as b:
        two = add.bind(a, b)
    with pytest.raises(AssertionError, match="only have one unique InputNode"):
        two.execute(1)
    outside = InputNode()
    with pytest.raises(AssertionError, match="not made in a context manager"):
        add.bind(outside, 1).execute(1)
    cyclic_args = []
    cyclic = total.bind(cyclic_args)
    cyclic_args.append(cyclic)
    with pytest.raises(ValueError, match="cycle"):
        cyclic.execute()


def test_errors_of_a_node_reach_the_output(ray_start):
    @pyray.remote
    def boom(x):
        raise KeyError(x)
    with InputNode() as inp:
        dag = add.bind(boom.bind(inp), 1)
    with pytest.raises(KeyError):
        get(dag.execute("k"))


def test_exported_names():
    import pyray.dag as dag
    for name in ("InputNode", "MultiOutputNode", "DAGNode", "FunctionNode", "ClassNode",
                 "ClassMethodNode", "InputAttributeNode"):
        assert name in dag.__all__ and isinstance(getattr(dag, name), type)
    assert issubclass(FunctionNode, DAGNode) and issubclass(InputNode, DAGNode)
