"""Merge (common subexpression elimination): identical computations are done once."""

from __future__ import annotations

from ..ir.keys import attrs_key, freeze
from ..ops.registry import REGISTRY, STATEFUL
from .program import Program
from .rewrite import Rewriter


def merge(program: Program):
    """Replace each node by an earlier identical one: same op, same inputs, same attributes.

    Constants merge by value. Placeholders, variables and stateful ops never merge.
    """
    rw = Rewriter(program, "merge")
    seen: dict = {}
    for node in program.nodes:
        if node.op == "constant":
            key = ("constant", (), freeze(node.attrs))
            if key in seen:
                rw.replace(node.outputs[0], seen[key][1][0])
                rw.note("merge", "identical constant", [node, seen[key][0]])
            else:
                seen[key] = (node, node.outputs)

    def visit(rw: Rewriter, node):
        inputs = rw.inputs_of(node)
        kind = REGISTRY[node.op].kind
        if kind == STATEFUL:
            return rw.copy(node, inputs)
        key = (node.op, tuple((id(t.node), t.index) for t in inputs), attrs_key(node.attrs))
        if key in seen:
            first, outs = seen[key]
            rw.note("merge", "identical to an earlier node", [node, first])
            return outs
        outs = rw.copy(node, inputs)
        seen[key] = (node, outs)
        return outs

    return rw.run(visit)
