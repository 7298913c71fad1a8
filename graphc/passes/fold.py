"""Constant folding: subgraphs whose inputs are all constants are evaluated at compile time."""

from __future__ import annotations

import numpy as np

from ..ops.registry import FOLD_MAX_ELEMENTS, REGISTRY, NotFolded, evaluate, foldable
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
        if isinstance(results, NotFolded):
            rw.note("keep", results.rule, [node], results.detail)
            return rw.copy(node, inputs)
        rw.note("fold", "constant inputs", [node])
        return tuple(
            rw.build(node, lambda r=r, t=t: constant(np.asarray(r, dtype=t.dtype)))
            for r, t in zip(results, node.types)
        )

    return Rewriter(program, "fold").run(visit)


PLAN_FOLD_MAX_ELEMENTS = 1 << 16


def fold_for_plan(program: Program):
    """fold_constants for a plan (per shape signature), whose results may grow up to 65,536
    elements: a plan is never saved, and a broadcast of a constant (a gradient's seed, scaled by
    1/n) is then computed once instead of at every call."""
    return fold_constants(program, max_elements=PLAN_FOLD_MAX_ELEMENTS)
