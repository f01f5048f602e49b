"""ClassNode (``ActorClass.bind(...)``) and ClassMethodNode
(``class_node.method.bind(...)``, ``actor_handle.method.bind(...)``)."""
from __future__ import annotations

from pyray.dag.dag_node import (PARENT_CLASS_NODE_KEY, PREV_CLASS_METHOD_CALL_KEY, DAGNode,
                                _find_nodes)
from pyray.dag.function_node import _with_options


class ClassNode(DAGNode):
    """The creation of an actor in a DAG.  Each execute() of a DAG that
    contains it creates a new actor; the methods bound on it run on that
    actor, in the order they were bound."""

    def __init__(self, cls, cls_args, cls_kwargs, cls_options, other_args_to_resolve=None):
        # cls: the actor class bound (pyray.remote(...) of a class)
        self._body = cls
        self._last_call = None
        super().__init__(cls_args, cls_kwargs, cls_options, other_args_to_resolve)
        from pyray.dag.input_node import InputNode
        if any(isinstance(n, InputNode) for n in self._get_all_child_nodes()):
            raise ValueError(
                "An InputNode cannot be an argument of a ClassNode constructor: the DAG's "
                "input is known only at execute(). Pass it to a method instead "
                "(class_node.method.bind(inp)).")

    def _copy_impl(self, new_args, new_kwargs, new_options, new_other_args_to_resolve):
        return ClassNode(self._body, new_args, new_kwargs, new_options,
                         new_other_args_to_resolve)

    def _execute_impl(self, *args, **kwargs):
        return _with_options(self._body, self._bound_options).remote(
            *self._bound_args, **self._bound_kwargs)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(f"'ClassNode' object has no attribute {name!r}")
        cls = self._body._cls
        if name == "bind" and not hasattr(cls, "bind"):
            raise AttributeError(".bind() cannot be used again on ClassNode")
        if not callable(getattr(cls, name, None)):
            raise AttributeError(f"'{cls.__name__}' has no attribute {name!r}: the actor "
                                 "class has no such method to bind")
        return _UnboundClassMethodNode(self, name, {})

    def _describe(self):
        return getattr(self._body, "__name__", "")


class _UnboundClassMethodNode:
    """``class_node.method``: ``.bind()`` or ``.options(...)`` comes next."""

    def __init__(self, actor, method_name, options):
        self._actor = actor
        self._method_name = method_name
        self._options = options

    def options(self, **options):
        return _UnboundClassMethodNode(self._actor, self._method_name,
                                       {**self._options, **options})

    def bind(self, *args, **kwargs):
        actor = self._actor
        node = ClassMethodNode(self._method_name, args, kwargs, self._options, {
            PARENT_CLASS_NODE_KEY: actor,
            PREV_CLASS_METHOD_CALL_KEY: actor._last_call,
        })
        actor._last_call = node
        return node

    def remote(self, *args, **kwargs):
        raise AttributeError(".remote() cannot be used on ClassMethodNodes: use .bind() "
                             "to add the call to the DAG, and execute() to run it.")


class ClassMethodNode(DAGNode):
    """An actor method call in a DAG; executing it submits the call and
    gives its ObjectRef (a list of them with num_returns > 1).  The actor is
    a ClassNode of the DAG or an actor handle (``handle.method.bind()``)."""

    def __init__(self, method_name, method_args, method_kwargs, method_options,
                 other_args_to_resolve):
        self._method_name = method_name
        other = dict(other_args_to_resolve or {})
        self._parent_class_node = other.get(PARENT_CLASS_NODE_KEY)
        # the call bound before this one on the same ClassNode: it is
        # submitted first, so the actor runs them in the order they were bound
        self._prev_class_method_call = other.get(PREV_CLASS_METHOD_CALL_KEY)
        super().__init__(method_args, method_kwargs, method_options, other)
        if self._parent_class_node is None:
            raise ValueError("A ClassMethodNode needs the actor it calls: "
                             f"other_args_to_resolve[{PARENT_CLASS_NODE_KEY!r}]")

    def _copy_impl(self, new_args, new_kwargs, new_options, new_other_args_to_resolve):
        return ClassMethodNode(self._method_name, new_args, new_kwargs, new_options,
                               new_other_args_to_resolve)

    def _execute_impl(self, *args, **kwargs):
        parent = self._parent_class_node       # an actor handle by now
        if _find_nodes(parent):
            raise ValueError(f"The actor of {self!r} was not resolved")
        method = self._bound_other_args_to_resolve.get(_BOUND_METHOD_KEY)
        if method is None or self._bound_options:
            method = getattr(parent, self._method_name)
            if self._bound_options:
                method = method.options(**self._bound_options)
        return method.remote(*self._bound_args, **self._bound_kwargs)

    def get_method_name(self):
        return self._method_name

    @property
    def is_class_method_call(self):
        return True

    @property
    def is_class_method_output(self):
        return False

    def _describe(self):
        return f"{self._method_name}()"


# handle.method.options(...).bind(): the configured method, called as it is
_BOUND_METHOD_KEY = "bound_actor_method"


def bind_actor_method(method, handle, name, args, kwargs):
    """``actor_handle.method.bind(...)``: a call of an existing actor."""
    return ClassMethodNode(name, args, kwargs, {}, {
        PARENT_CLASS_NODE_KEY: handle,
        PREV_CLASS_METHOD_CALL_KEY: None,
        _BOUND_METHOD_KEY: method,
    })
