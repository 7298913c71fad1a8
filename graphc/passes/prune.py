"""Prune (dead code elimination): keep only the nodes that the outputs and updates need."""

from __future__ import annotations

from .program import Program


def prune(program: Program, keep_sources: bool = False) -> Program:
    """Drop every node no output or update depends on; with ``keep_sources``, not placeholders
    and variables (as the rewrite engine: optimizing never changes which feeds a function takes)."""
    live = program.needed()
    if keep_sources:
        live.update(n for n in program.nodes if not n.inputs and n.op != "constant")
    nodes = tuple(n for n in program.nodes if n in live)
    return program if len(nodes) == len(program.nodes) else Program(nodes, program.outputs, program.updates)
