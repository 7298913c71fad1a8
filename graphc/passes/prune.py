"""Prune (dead code elimination): keep only the nodes that the outputs and updates need."""

from __future__ import annotations

from .program import Program


def prune(program: Program) -> Program:
    """Drop every node no output or update depends on."""
    live, stack = set(), [t.node for t in program.targets]
    while stack:
        node = stack.pop()
        if node not in live:
            live.add(node)
            stack.extend(t.node for t in node.inputs)
    nodes = tuple(n for n in program.nodes if n in live)
    return program if len(nodes) == len(program.nodes) else Program(nodes, program.outputs, program.updates)
