"""Constant folding: subgraphs whose inputs are all constants are evaluated at compile time."""

from __future__ import annotations

import numpy as np

from ..ops.registry import REGISTRY, STATEFUL
from ..ops.state import constant
from .program import Program
from .rewrite import Rewriter

FOLD_MAX_ELEMENTS = 1 << 16  # a folded result larger than this and than its inputs stays a node


def fold_constants(program: Program, max_elements: int = FOLD_MAX_ELEMENTS):
    """Evaluate nodes whose inputs are all constants and replace them by constants.

    A result bigger than ``max_elements`` that is also bigger than its inputs (``broadcast_to`` of
    a scalar, ``ones_like``) is not folded, so folding never bloats a saved file; explain says so.
    """

    def visit(rw: Rewriter, node):
        inputs = rw.inputs_of(node)
        opdef = REGISTRY[node.op]
        # (control flow is not run at compile time: a loop over constants may be long; its bodies
        # are folded inside, and a cond on a constant predicate is inlined by inline_cond)
        if opdef.kind == STATEFUL or opdef.body_types is not None or any(t.node.op != "constant" for t in inputs):
            return rw.copy(node, inputs)
        values = [t.node.attrs["value"] for t in inputs]
        with np.errstate(all="ignore"):
            result = opdef.kernel(np, *values, **node.attrs)
        results = result if isinstance(result, tuple) else (result,)
        size = sum(np.size(r) for r in results)
        if size > max_elements and size > sum(v.size for v in values):
            rw.note("keep", "not folded: size cap", [node], f"{size} elements > {max_elements}")
            return rw.copy(node, inputs)
        rw.note("fold", "constant inputs", [node])
        return tuple(
            rw.build(node, lambda r=r, t=t: constant(np.asarray(r, dtype=t.dtype)))
            for r, t in zip(results, node.types)
        )

    return Rewriter(program, "fold").run(visit)
