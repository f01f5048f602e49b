"""Ray's DAG API: calls bound with ``.bind()`` into a graph, run with
``execute()``.  See docs/dag.md.

    with InputNode() as inp:
        dag = combine.bind(f.bind(inp[0]), g.bind(inp.x))
    pyray.get(dag.execute(1, x=2))
"""
from pyray.dag.class_node import ClassMethodNode, ClassNode
from pyray.dag.dag_node import PARENT_CLASS_NODE_KEY, PREV_CLASS_METHOD_CALL_KEY, DAGNode
from pyray.dag.function_node import FunctionNode
from pyray.dag.input_node import DAGInputData, InputAttributeNode, InputNode
from pyray.dag.output_node import MultiOutputNode

__all__ = [
    "ClassMethodNode", "ClassNode", "DAGInputData", "DAGNode", "FunctionNode",
    "InputAttributeNode", "InputNode", "MultiOutputNode", "PARENT_CLASS_NODE_KEY",
    "PREV_CLASS_METHOD_CALL_KEY",
]
