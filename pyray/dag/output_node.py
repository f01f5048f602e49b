"""MultiOutputNode: several outputs of one DAG."""
from __future__ import annotations

from pyray.dag.dag_node import DAGNode


class MultiOutputNode(DAGNode):
    """``MultiOutputNode([a, b])``: executing it gives the list of what a and
    b give (ObjectRefs, for function and method nodes)."""

    def __init__(self, args, other_args_to_resolve=None):
        if isinstance(args, tuple):
            args = list(args)
        if not isinstance(args, list):
            raise ValueError(f"MultiOutputNode takes a list of nodes, got {args!r}")
        super().__init__(args, {}, {}, other_args_to_resolve)

    def _copy_impl(self, new_args, new_kwargs, new_options, new_other_args_to_resolve):
        return MultiOutputNode(new_args, new_other_args_to_resolve)

    def _execute_impl(self, *args, **kwargs):
        return list(self._bound_args)

    def _describe(self):
        return f"{len(self._bound_args)} outputs"
