"""IR record for control-flow bodies: Subgraph (a private graph, its parameters, its outputs).

A body is traced once into its own graph; the control-flow node that holds it as an attribute
feeds its parameters (explicit ones first, then captures of enclosing tensors) and reads its
outputs. Bodies are values: passes build new Subgraphs, never edit one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .graph import Graph
from .tensor import Tensor


@dataclass(frozen=True)
class Subgraph:
    """A body: ``params`` (placeholders, in the order the node feeds them) -> ``outputs``."""

    graph: Graph
    params: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @cached_property
    def nodes(self) -> tuple:
        """The nodes the outputs need, and every parameter, in topological (id) order."""
        live, stack = {p.node for p in self.params}, [t.node for t in self.outputs]
        while stack:
            node = stack.pop()
            if node not in live:
                live.add(node)
                stack.extend(t.node for t in node.inputs)
        return tuple(sorted(live, key=lambda n: n.id))

    def with_outputs(self, outputs) -> Subgraph:
        return Subgraph(self.graph, self.params, tuple(outputs))

    def __repr__(self) -> str:
        ins = ", ".join(f"%{p.name}" for p in self.params)
        outs = ", ".join(f"%{t.name}" for t in self.outputs)
        return f"<body '{self.graph.name}' ({ins}) -> ({outs}), {len(self.nodes)} nodes>"


def subgraphs(node) -> list[tuple[str, Subgraph]]:
    """The (attribute name, Subgraph) pairs of a node, in attribute order."""
    return [(k, v) for k, v in node.attrs.items() if isinstance(v, Subgraph)]
