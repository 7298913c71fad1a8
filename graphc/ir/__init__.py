"""IR: node and graph records, the Tensor handle, provenance, printing and verification."""

from .graph import Graph, GraphGrowthWarning, Node, get_default_graph, reset_default_graph
from .source import Source, user_source
from .subgraph import Subgraph
from .tensor import Tensor, Variable
from .types import TensorType

__all__ = [
    "Graph", "GraphGrowthWarning", "Node", "Source", "Subgraph", "Tensor", "TensorType", "Variable",
    "get_default_graph", "reset_default_graph", "user_source",
]  # fmt: skip
