"""InputNode (the DAG's input) and InputAttributeNode (one field of it)."""
from __future__ import annotations

from pyray.dag.dag_node import DAGNode

IN_CONTEXT_MANAGER = "__in_context_manager__"


class InputNode(DAGNode):
    """Stands for what ``execute()`` is given.  Used as a context manager::

        with InputNode() as inp:
            dag = f.bind(inp[0], inp.key)
        dag.execute(1, key=2)

    One positional argument and no keywords: the node is that value.
    Otherwise it is a DAGInputData of all of them: ``inp[i]`` is the i-th
    positional argument and ``inp["k"]``/``inp.k`` the keyword k.  Given one
    value, ``inp[i]``/``inp["k"]`` index it and ``inp.k`` reads its
    attribute.  A DAG has at most one InputNode."""

    def __init__(self, *args, _other_args_to_resolve=None, **kwargs):
        if args or kwargs:
            raise ValueError(
                "InputNode should not take any args or kwargs (pyray does not take "
                f"input_type either); got args={args!r} kwargs={sorted(kwargs)!r}. Give the "
                "input to execute().")
        self.input_attribute_nodes = {}
        super().__init__([], {}, {}, _other_args_to_resolve)

    def _copy_impl(self, new_args, new_kwargs, new_options, new_other_args_to_resolve):
        return InputNode(_other_args_to_resolve=new_other_args_to_resolve)

    def _execute_impl(self, *args, **kwargs):
        if not self._bound_other_args_to_resolve.get(IN_CONTEXT_MANAGER):
            raise AssertionError(
                "This InputNode was not made in a context manager: build the DAG inside "
                "`with InputNode() as inp: ...` and execute it with the input.")
        if len(args) == 1 and not kwargs:
            return args[0]
        return DAGInputData(*args, **kwargs)

    def __enter__(self):
        self._bound_other_args_to_resolve[IN_CONTEXT_MANAGER] = True
        return self

    def __exit__(self, *exc_info):
        return None

    def __getattr__(self, key):
        if key.startswith("_") or key in ("bind", "remote"):
            return super().__getattr__(key)
        return self._attribute(key, "__getattr__")

    def __getitem__(self, key):
        if not isinstance(key, (int, str)) or isinstance(key, bool):
            raise TypeError(f"A field of the DAG's input is an int index or a str key, "
                            f"got {key!r}.")
        return self._attribute(key, "__getitem__")

    def _attribute(self, key, accessor):
        node = self.input_attribute_nodes.get((key, accessor))
        if node is None:
            node = self.input_attribute_nodes[(key, accessor)] = \
                InputAttributeNode(self, key, accessor)
        return node

    def _describe(self):
        return "__InputNode__"


class InputAttributeNode(DAGNode):
    """One field of the DAG's input: ``inp[0]``, ``inp["k"]``, ``inp.k``."""

    def __init__(self, dag_input_node, key, accessor_method, input_type=None):
        self._dag_input_node = dag_input_node
        self._key = key
        self._accessor_method = accessor_method
        super().__init__([], {}, {}, {"dag_input_node": dag_input_node, "key": key,
                                      "accessor_method": accessor_method,
                                      "result_type_string": input_type})

    def _copy_impl(self, new_args, new_kwargs, new_options, new_other_args_to_resolve):
        o = new_other_args_to_resolve
        return InputAttributeNode(o["dag_input_node"], o["key"], o["accessor_method"],
                                  o.get("result_type_string"))

    def _execute_impl(self, *args, **kwargs):
        value = self._dag_input_node             # the input, resolved by now
        key = self._key
        if isinstance(value, DAGInputData):
            return value[key]
        if isinstance(key, str) and self._accessor_method == "__getattr__":
            return getattr(value, key)
        return value[key]

    def _describe(self):
        return repr(self._key)


class DAGInputData:
    """The input of execute() given several values: ``[i]`` is the i-th
    positional one, ``["k"]`` the keyword k."""

    def __init__(self, *args, **kwargs):
        self._args = list(args)
        self._kwargs = kwargs

    def __getitem__(self, key):
        if isinstance(key, int) and not isinstance(key, bool):
            return self._args[key]
        if isinstance(key, str):
            return self._kwargs[key]
        raise ValueError(f"A field of the DAG's input is an int index or a str key, "
                         f"got {key!r}.")

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._kwargs[key]
        except KeyError:
            raise AttributeError(f"the DAG's input has no keyword argument {key!r} "
                                 f"(it has {sorted(self._kwargs)})") from None
