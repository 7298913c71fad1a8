"""Program: what a compiled function computes (its nodes, outputs, updates), the unit passes rewrite."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Tensor


@dataclass(frozen=True)
class Program:
    """A compiled function's computation.

    nodes: the nodes to run, in topological order (sources included). Passes build their nodes in a
        private graph, so optimizing never grows the user's graph.
    outputs: the tensors returned, flattened.
    updates: (variable name, new value) pairs, applied after the outputs are computed.
    stable: the passes known to leave this very program unchanged (the pass manager records them,
        so a specialization that changed nothing does not run them again).
    """

    nodes: tuple
    outputs: tuple[Tensor, ...]
    updates: tuple[tuple[str, Tensor], ...] = field(default=())
    stable: frozenset = field(default=frozenset(), compare=False)

    @property
    def targets(self) -> tuple[Tensor, ...]:
        return self.outputs + tuple(t for _, t in self.updates)

    @property
    def graph(self):
        """The private graph the program's nodes live in (passes append their new nodes to it)."""
        return self.nodes[0].graph if self.nodes else None

    def needed(self) -> set:
        """The nodes the targets depend on (walking back from them: their own node list aside)."""
        live, stack = set(), [t.node for t in self.targets]
        while stack:
            node = stack.pop()
            if node not in live:
                live.add(node)
                stack.extend(t.node for t in node.inputs)
        return live

    def placeholders(self) -> tuple:
        return tuple(n for n in self.nodes if n.op == "placeholder")

    def consumers(self) -> dict:
        """Node -> list of (consumer node, input index); program outputs count as consumers (None)."""
        users: dict = {n: [] for n in self.nodes}
        for n in self.nodes:
            for i, t in enumerate(n.inputs):
                users[t.node].append((n, i))
        for t in self.targets:
            users[t.node].append((None, -1))
        return users
