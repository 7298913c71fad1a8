"""Constant folding: subgraphs whose inputs are all constants are evaluated at compile time."""

from __future__ import annotations

import math

import numpy as np

from ..ops.registry import FOLD_MAX_ELEMENTS, REGISTRY, evaluate, foldable
from ..ops.state import constant
from .program import Program
from .rewrite import Rewriter


def fold_constants(program: Program, max_elements: int = FOLD_MAX_ELEMENTS):
    """Evaluate nodes whose inputs are all constants and replace them by constants.

    A result bigger than its inputs (``broadcast_to`` of a scalar, ``ones_like``) and than
    ``max_elements`` (0: folding never grows data) stays a node; explain says so.
    Control flow is not run at compile time (a loop over constants may be long); its bodies are
    folded inside, and a cond on a constant predicate is inlined by inline_cond.
    """

    def visit(rw: Rewriter, node):
        inputs = rw.inputs_of(node)
        opdef = REGISTRY[node.op]
        if not foldable(opdef) or any(t.node.op != "constant" for t in inputs):
            return rw.copy(node, inputs)
        results = evaluate(opdef, [t.node.attrs["value"] for t in inputs], node.attrs, max_elements)
        if results is None:
            size = sum(math.prod(t.shape) for t in node.types)
            cap = max(max_elements, sum(math.prod(t.shape) for t in inputs))
            rw.note("keep", "not folded: size cap", [node], f"{size} elements > {cap}, its inputs' or the cap")
            return rw.copy(node, inputs)
        rw.note("fold", "constant inputs", [node])
        return tuple(
            rw.build(node, lambda r=r, t=t: constant(np.asarray(r, dtype=t.dtype)))
            for r, t in zip(results, node.types)
        )

    return Rewriter(program, "fold").run(visit)
