"""DAGNode: a call bound with ``.bind()`` but not yet run.

A node holds its arguments, keyword arguments, options and the other
values it needs (``other_args_to_resolve``: the actor of a method call, the
call before it on the same actor, the input node of an input attribute).
Any of these may be other nodes, at the top level or nested in lists,
tuples, dicts and sets.  ``execute()`` walks the graph bottom-up and runs
each node once: a node's children are replaced by what they produced
(ObjectRefs, actor handles, the input values), then the node runs.

This module uses the public API only (docs/dag.md).
"""
from __future__ import annotations

import uuid

# keys of other_args_to_resolve, named as Ray names them
PARENT_CLASS_NODE_KEY = "parent_class_node"
PREV_CLASS_METHOD_CALL_KEY = "prev_class_method_call"


class DAGNode:
    """A node of a task graph: a function call, an actor creation, an actor
    method call, the DAG's input (or one of its fields), or its outputs."""

    def __init__(self, args, kwargs, options, other_args_to_resolve):
        self._bound_args = list(args or ())
        self._bound_kwargs = dict(kwargs or {})
        self._bound_options = dict(options or {})
        self._bound_other_args_to_resolve = dict(other_args_to_resolve or {})
        # the same in every copy of this node (apply_recursive works on copies)
        self._stable_uuid = uuid.uuid4().hex
        self.cache_from_last_execute = {}

    # -- what was bound ----------------------------------------------------
    def get_args(self):
        """The node's positional arguments, as bound."""
        return self._bound_args

    def get_kwargs(self):
        return dict(self._bound_kwargs)

    def get_options(self):
        """The options of the call (``.options(...)`` before ``.bind``)."""
        return dict(self._bound_options)

    def get_other_args_to_resolve(self):
        return dict(self._bound_other_args_to_resolve)

    def get_stable_uuid(self):
        """An id made once per node, kept by its copies."""
        return self._stable_uuid

    # -- running -----------------------------------------------------------
    def execute(self, *args, _ray_cache_refs=False, **kwargs):
        """Runs the DAG this node is the output of and returns what the node
        gives: an ObjectRef (function and method nodes), an actor handle (a
        class node), a list of those (MultiOutputNode).  ``args`` and
        ``kwargs`` are the DAG's input (InputNode).  Every node runs once per
        execute(); a class node creates a new actor each time."""
        def run(node):
            return node._execute_impl(*args, **kwargs)
        cache = {}
        result = self._apply(run, cache)
        if _ray_cache_refs:
            self.cache_from_last_execute = cache
        return result

    async def get_object_refs_from_last_execute(self):
        """node uuid -> what that node gave in the last
        ``execute(_ray_cache_refs=True)``."""
        return dict(self.cache_from_last_execute)

    def clear_cache(self):
        self.cache_from_last_execute = {}

    def experimental_compile(self, *args, **kwargs):
        raise NotImplementedError(
            "experimental_compile() (Ray's compiled graphs) is not provided by pyray: run "
            "the DAG with execute(), which submits its tasks and actor calls as ordinary "
            "ones (docs/dag.md).")

    def _execute_impl(self, *args, **kwargs):
        """Runs this node, its children already replaced by their results."""
        raise NotImplementedError(f"{type(self).__name__} cannot be executed")

    # -- walking the graph -------------------------------------------------
    def _bound(self):
        return (self._bound_args, self._bound_kwargs, self._bound_other_args_to_resolve)

    def _get_toplevel_child_nodes(self):
        """The nodes given directly as arguments or other args (not nested)."""
        out = []
        for v in (*self._bound_args, *self._bound_kwargs.values(),
                  *self._bound_other_args_to_resolve.values()):
            if isinstance(v, DAGNode) and not any(v is o for o in out):
                out.append(v)
        return out

    def _get_all_child_nodes(self):
        """The nodes among the arguments and other args, nested ones too, in
        the order they appear, each once."""
        return _find_nodes(self._bound())

    def _apply_and_replace_all_child_nodes(self, fn):
        """A copy of this node whose child nodes are replaced by fn(child)
        (fn called once per child)."""
        table = {}
        for child in _find_nodes(self._bound()):
            table[id(child)] = fn(child)
        args, kwargs, other = _replace(self._bound(), table)
        return self._copy(args, kwargs, self.get_options(), other)

    def apply_recursive(self, fn):
        """Applies fn to every node of the DAG, bottom-up: each node is first
        copied with its children replaced by fn's results for them, then fn
        gets that copy.  fn runs once per node; returns fn's result for this
        node."""
        return self._apply(fn, {})

    def _apply(self, fn, cache):
        """apply_recursive without recursion (deep chains of calls on one
        actor would overflow Python's stack): the nodes in dependency order,
        each applied once; `cache` maps a node's uuid to fn's result."""
        input_uuid = None
        for node in _topological(self):
            key = node._stable_uuid
            if key in cache:
                continue
            if type(node).__name__ == "InputNode":
                if input_uuid is not None and input_uuid != key:
                    raise AssertionError("Each DAG should only have one unique InputNode.")
                input_uuid = key
            children = _find_nodes(node._bound())
            if children:
                table = {id(c): cache[c._stable_uuid] for c in children}
                args, kwargs, other = _replace(node._bound(), table)
                node = node._copy(args, kwargs, node.get_options(), other)
            cache[key] = fn(node)
        return cache[self._stable_uuid]

    def apply_functional(self, source_input_list, predictate_fn, apply_fn):
        """``source_input_list`` with every node in it that passes
        ``predictate_fn`` replaced by ``apply_fn(node)``; no node is copied
        or changed."""
        table = {}
        for node in _find_nodes(source_input_list):
            if predictate_fn(node):
                table[id(node)] = apply_fn(node)
        return _replace(source_input_list, table)

    def traverse_and_apply(self, fn):
        """Calls fn once on every node reachable from this one (this node,
        then its children, breadth first)."""
        seen = set()
        queue = [self]
        while queue:
            node = queue.pop(0)
            if id(node) in seen:
                continue
            seen.add(id(node))
            fn(node)
            queue.extend(node._get_all_child_nodes())

    # -- copies ------------------------------------------------------------
    def _copy_impl(self, new_args, new_kwargs, new_options, new_other_args_to_resolve):
        raise NotImplementedError

    def _copy(self, new_args, new_kwargs, new_options, new_other_args_to_resolve):
        node = self._copy_impl(new_args, new_kwargs, new_options, new_other_args_to_resolve)
        node._stable_uuid = self._stable_uuid
        return node

    # -- misuse ------------------------------------------------------------
    def __getattr__(self, attr):
        if attr == "bind":
            raise AttributeError(f".bind() cannot be used again on {type(self).__name__}")
        if attr == "remote":
            raise AttributeError(
                f".remote() cannot be used on {type(self).__name__}. To execute the task "
                "graph for this node, use .execute().")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute {attr!r}")

    def __reduce__(self):
        raise ValueError(
            f"A {type(self).__name__} cannot be serialized: a DAG node is not a value. "
            "Pass it to .bind() of another node, or execute() the DAG and pass the "
            "ObjectRef it returns.")

    def __repr__(self):
        return f"{type(self).__name__}({self._describe()})"

    def _describe(self):
        return ""


# ---------------------------------------------------------------------------
# nodes nested in arguments
# ---------------------------------------------------------------------------
_CONTAINERS = (list, tuple, dict, set, frozenset)


def _find_nodes(value):
    """The DAGNodes in `value` (itself, or nested in lists, tuples, dicts and
    sets, keys and values), in order, each once."""
    out, seen = [], set()
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, DAGNode):
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        elif type(v) in _CONTAINERS or isinstance(v, tuple):
            items = [x for kv in v.items() for x in kv] if type(v) is dict else list(v)
            stack.extend(reversed(items))
    return out


def _replace(value, table):
    """`value` with each node in it replaced by table[id(node)]; containers
    without nodes are returned as they are."""
    if isinstance(value, DAGNode):
        return table.get(id(value), value)
    t = type(value)
    if t is dict:
        if not _find_nodes(value):
            return value
        return {_replace(k, table): _replace(v, table) for k, v in value.items()}
    if t in (list, set, frozenset) or isinstance(value, tuple):
        if not _find_nodes(value):
            return value
        items = [_replace(v, table) for v in value]
        if t is list:
            return items
        if hasattr(value, "_fields"):            # a namedtuple
            return t(*items)
        return t(items)
    return value


def _topological(root):
    """The nodes root depends on, dependencies first, root last."""
    order, done, open_ = [], set(), set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if expanded:
            open_.discard(id(node))
            done.add(id(node))
            order.append(node)
            continue
        if id(node) in open_:
            raise ValueError(f"The DAG has a cycle through {node!r}: a node's arguments "
                             "(a list or dict given to .bind() and changed later) lead "
                             "back to it.")
        open_.add(id(node))
        stack.append((node, True))
        for child in reversed(_find_nodes(node._bound())):
            if id(child) not in done:
                stack.append((child, False))
    return order
