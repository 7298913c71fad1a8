"""Numerical stabilization: rewrite unstable formulas into the stable ops that compute them."""

from __future__ import annotations

from .. import ops
from .program import Program
from .rewrite import apply_rules, producer
from .simplify import _is


def log_softmax_rule(rw, node, inputs):
    """log(softmax(x)) -> log_softmax(x)"""
    inner = producer(inputs[0], "softmax")
    if inner is not None:
        return ops.log_softmax(inner.inputs[0], inner.attrs["axis"])


def log1p_rule(rw, node, inputs):
    """log(1 + x) -> log1p(x)"""
    inner = producer(inputs[0], "add")
    if inner is None:
        return None
    a, b = inner.inputs
    x = b if _is(a, 1) else a if _is(b, 1) else None
    if x is not None and x.type == inputs[0].type:
        return ops.log1p(x)


def softplus_rule(rw, node, inputs):
    """log1p(exp(x)) -> softplus(x)"""
    e = producer(inputs[0], "exp")
    if e is not None:
        return ops.softplus(e.inputs[0])


def log_sigmoid_rule(rw, node, inputs):
    """log(sigmoid(x)) -> -softplus(-x)"""
    inner = producer(inputs[0], "sigmoid")
    if inner is not None:
        return ops.negative(ops.softplus(ops.negative(inner.inputs[0])))


def logsumexp_rule(rw, node, inputs):
    """log(sum(exp(x))) -> logsumexp(x)"""
    s = producer(inputs[0], "sum")
    e = producer(s.inputs[0], "exp") if s is not None else None
    if e is not None:
        return ops.logsumexp(e.inputs[0], s.attrs["axes"], keepdims=s.attrs["keepdims"])


def expm1_rule(rw, node, inputs):
    """exp(x) - 1 -> expm1(x)"""
    a, b = inputs
    e = producer(a, "exp")
    if e is not None and _is(b, 1) and a.type == node.outputs[0].type:
        return ops.expm1(e.inputs[0])


def cross_entropy_rule(rw, node, inputs):
    """sum(one_hot(labels) * log_softmax(x), last axis) -> -softmax_cross_entropy(x, labels)"""
    m = producer(inputs[0], "multiply")
    x = inputs[0]
    if m is None or node.attrs["axes"] != (x.ndim - 1,) or node.attrs["keepdims"]:
        return None
    a, b = m.inputs
    oh, ls = (producer(a, "one_hot"), producer(b, "log_softmax"))
    if oh is None or ls is None:
        oh, ls = (producer(b, "one_hot"), producer(a, "log_softmax"))
    if oh is None or ls is None or ls.attrs["axis"] != x.ndim - 1 or a.shape != b.shape:
        return None
    logits, labels = ls.inputs[0], oh.inputs[0]
    if oh.attrs["depth"] != logits.shape[-1] or oh.attrs["dtype"] != logits.dtype:
        return None
    return ops.negative(ops.softmax_cross_entropy(logits, labels))


RULES = {
    "log": [log_softmax_rule, log1p_rule, log_sigmoid_rule, logsumexp_rule],
    "log1p": [softplus_rule],
    "subtract": [expm1_rule],
    "sum": [cross_entropy_rule],
}


def stabilize(program: Program):
    """Apply the stabilizing rewrites in ``RULES``."""
    return apply_rules(program, RULES, "stabilize")
