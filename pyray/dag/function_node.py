"""FunctionNode: ``remote_function.bind(*args, **kwargs)``."""
from __future__ import annotations

from pyray.dag.dag_node import DAGNode


class FunctionNode(DAGNode):
    """A call of a remote function in a DAG; executing it submits the task
    and gives its ObjectRef (a list of them with num_returns > 1)."""

    def __init__(self, func_body, func_args, func_kwargs, func_options,
                 other_args_to_resolve=None):
        # func_body: the remote function bound, with the options it had then
        self._body = func_body
        super().__init__(func_args, func_kwargs, func_options, other_args_to_resolve)

    def _copy_impl(self, new_args, new_kwargs, new_options, new_other_args_to_resolve):
        return FunctionNode(self._body, new_args, new_kwargs, new_options,
                            new_other_args_to_resolve)

    def _execute_impl(self, *args, **kwargs):
        return _with_options(self._body, self._bound_options).remote(
            *self._bound_args, **self._bound_kwargs)

    def _describe(self):
        return getattr(self._body, "__name__", "")


def _with_options(body, options):
    """`body` (a remote function or actor class) with `options`: itself when
    they are the options it has, else a copy with them."""
    if options == body._options:
        return body
    return body.options(**options)
