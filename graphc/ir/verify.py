"""Verifier: checks the invariants every pass must keep (order, types, names), bodies included."""

from __future__ import annotations

from ..errors import GraphcError
from .subgraph import subgraphs
from .types import compatible


class VerifyError(GraphcError, AssertionError):
    """A program broke an IR invariant (a bug in a pass, reported with the pass's name)."""


def verify_nodes(nodes, targets=(), where: str = "") -> None:
    """Inputs come before their consumers, re-inferred types agree, names are unique."""
    from ..ops.registry import REGISTRY, SOURCE

    seen, names = set(), set()
    prefix = f"{where}: " if where else ""
    for node in nodes:
        if node.name in names:
            raise VerifyError(f"{prefix}duplicate node name '{node.name}'")
        names.add(node.name)
        for t in node.inputs:
            if t.node not in seen:
                raise VerifyError(f"{prefix}{node.op} '{node.name}' reads '{t.name}' before it is computed")
        opdef = REGISTRY.get(node.op)
        if opdef is None:
            raise VerifyError(f"{prefix}{node.op} '{node.name}': unknown op")
        if opdef.kind != SOURCE:
            inferred = opdef.infer(*(t.type for t in node.inputs), **node.attrs)
            inferred = (inferred,) if not isinstance(inferred, tuple) else inferred
            for a, b in zip(inferred, node.types):
                if a.dtype != b.dtype or not compatible(a.shape, b.shape):
                    raise VerifyError(f"{prefix}{node.op} '{node.name}': recorded type {b}, inferred {a}")
        for k, sub in subgraphs(node):  # a body is a program of its own: check it the same way
            inner = f"{prefix}{node.op} '{node.name}' {k}"
            if any(p.node.op != "placeholder" or p.graph is not sub.graph for p in sub.params):
                raise VerifyError(f"{inner}: every parameter must be a placeholder of the body's graph")
            if {n for n in sub.nodes if n.op == "placeholder"} != {p.node for p in sub.params}:
                raise VerifyError(f"{inner}: the body reads a placeholder that is not one of its parameters")
            verify_nodes(sub.nodes, sub.outputs, where=inner)
        seen.add(node)
    for t in targets:
        if t.node not in seen:
            raise VerifyError(f"{prefix}output '{t.name}' is not computed by the program")
