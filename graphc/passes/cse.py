"""Merge (common subexpression elimination): identical computations are done once."""

from __future__ import annotations

import hashlib

import numpy as np

from ..ir import Graph
from ..ops.registry import REGISTRY, STATEFUL
from .program import Program
from .rewrite import Rewriter


def freeze(value):
    """A hashable, exact key for an attribute value (arrays by dtype, shape and content)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, hashlib.sha1(np.ascontiguousarray(value).tobytes()).digest())
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, np.dtype):
        return ("dtype", value.str)
    if isinstance(value, Graph):
        return ("graph", id(value))
    if isinstance(value, float) and value != value:
        return ("nan",)
    return value


def attrs_key(attrs: dict):
    """freeze(attrs), fast for the common case of small hashable attributes."""
    try:
        key = tuple(sorted(attrs.items()))
        hash(key)
        return key
    except TypeError:
        return freeze(attrs)


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
