"""Decompose: ops that a fused kernel cannot hold become the primitives it can, just before fusion.

Runs on specialized (static-shape) programs only, so that the compile-time program keeps the
user's ops (``explain`` shows their ``mean``) and a rewrite made for the kernels never forces
another round of the compile-time passes.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .program import Program
from .rewrite import apply_rules


def static_mean(rw, node, inputs):
    """mean(x, axes) -> sum(x, axes) * (1/n) for a float x of static shape (the sum can then fuse)"""
    x = inputs[0]
    if x.dtype.kind != "f" or not x.type.is_static or not node.attrs["axes"]:
        return None
    n = math.prod(x.shape[a] for a in node.attrs["axes"])
    if n == 0:
        return None
    return ops.sum(x, node.attrs["axes"], keepdims=node.attrs["keepdims"]) * ops.constant(np.asarray(1 / n, x.dtype))


RULES = {
    "mean": [static_mean],
}


def decompose(program: Program):
    """Apply the decompositions in ``RULES``."""
    return apply_rules(program, RULES, "decompose")
