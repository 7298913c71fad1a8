"""Program: what a compiled function computes (its nodes, outputs, updates), the unit passes rewrite."""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Tensor


@dataclass(frozen=True)
class Program:
    """A compiled function's computation.

    nodes: the nodes to run, in topological order (sources included).
    outputs: the tensors returned, flattened.
    updates: (variable name, new value) pairs, applied after the outputs are computed.
    """

    nodes: tuple
    outputs: tuple[Tensor, ...]
    updates: tuple[tuple[str, Tensor], ...]

    @property
    def targets(self) -> tuple[Tensor, ...]:
        return self.outputs + tuple(t for _, t in self.updates)

    def placeholders(self) -> tuple:
        return tuple(n for n in self.nodes if n.op == "placeholder")
