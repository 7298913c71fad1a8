"""Algebraic simplification: local identities, including the ones autodiff's output is full of.

Each rule's docstring states its identity; ``RULES`` maps an op to the rules tried on its nodes.
A rule returns the replacement tensor (built with ordinary ops) or None. The engine rejects any
replacement whose dtype or shape differs from the node's, so ``x * 1`` where the 1 broadcasts x
to a larger shape is left alone.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..ir import Tensor
from ..ops.registry import apply
from .program import Program
from .rewrite import apply_rules, constant_value, producer


def scalar_of(t: Tensor):
    """The single value every element of t has, when t is a constant (or a broadcast of one)."""
    while t.node.op in ("broadcast_to", "broadcast_like"):
        t = t.node.inputs[0]
    v = constant_value(t)
    if v is None or v.size == 0:
        return None
    first = v.flat[0]
    return first if (v == first).all() else None


def _is(t: Tensor, value) -> bool:
    s = scalar_of(t)
    return s is not None and s == value


def _same(a: Tensor, b: Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape


def mul_one(rw, node, inputs):
    """x * 1 -> x"""
    x, y = inputs
    out = node.outputs[0]
    if _is(y, 1) and _same(x, out):
        return x
    if _is(x, 1) and _same(y, out):
        return y


def add_zero(rw, node, inputs):
    """x + 0 -> x"""
    x, y = inputs
    out = node.outputs[0]
    if _is(y, 0) and _same(x, out):
        return x
    if _is(x, 0) and _same(y, out):
        return y


def add_zeros_like(rw, node, inputs):
    """x + zeros_like(y) -> x"""
    x, y = inputs
    out = node.outputs[0]
    if producer(y, "zeros_like") and _same(x, out):
        return x
    if producer(x, "zeros_like") and _same(y, out):
        return y


def sub_zero(rw, node, inputs):
    """x - 0 -> x"""
    x, y = inputs
    if _is(y, 0) and _same(x, node.outputs[0]):
        return x


def zero_sub(rw, node, inputs):
    """0 - x -> -x"""
    x, y = inputs
    if _is(x, 0) and _same(y, node.outputs[0]):
        return ops.negative(y)


def sub_self(rw, node, inputs):
    """x - x -> zeros_like(x)"""
    x, y = inputs
    if x == y:
        return ops.zeros_like(x)


def double_negation(rw, node, inputs):
    """-(-x) -> x"""
    inner = producer(inputs[0], "negative")
    if inner is not None:
        return inner.inputs[0]


def div_one(rw, node, inputs):
    """x / 1 -> x"""
    x, y = inputs
    if _is(y, 1) and _same(x, node.outputs[0]):
        return x


def div_const(rw, node, inputs):
    """x / c -> x * (1/c) for a float constant c (a multiply is cheaper than a divide)"""
    x, y = inputs
    c = constant_value(y)
    if c is not None and y.dtype.kind == "f" and x.dtype == y.dtype and np.all(c != 0) and np.all(np.isfinite(c)):
        return x * ops.constant(np.asarray(1 / c, dtype=y.dtype))


def pow_const(rw, node, inputs):
    """x ** 1 -> x;  x ** 2 -> square(x);  x ** 0.5 -> sqrt(x);  x ** -1 -> reciprocal(x)"""
    x, y = inputs
    s = scalar_of(y)
    if s is None or not _same(x, node.outputs[0]):
        return None
    return {1: lambda: x, 2: lambda: ops.square(x), 0.5: lambda: ops.sqrt(x), -1: lambda: ops.reciprocal(x)}.get(
        float(s), lambda: None
    )()


def transpose_transpose(rw, node, inputs):
    """transpose(transpose(x, p), q) -> transpose(x, p[q]) (or x when that is the identity)"""
    inner = producer(inputs[0], "transpose")
    if inner is None:
        return None
    perm = tuple(inner.attrs["axes"][a] for a in node.attrs["axes"])
    x = inner.inputs[0]
    return x if perm == tuple(range(len(perm))) else ops.transpose(x, perm)


def matmul_of_transpose(rw, node, inputs):
    """matmul(transpose(a), b) -> matmul(a, b, transpose_a) (and for b) when the transpose swaps
    the last two dims: BLAS reads the operand transposed, with no transpose node"""
    flags = dict(node.attrs)
    operands = list(inputs)
    for i, key in enumerate(("transpose_a", "transpose_b")):
        t = producer(operands[i], "transpose")
        if t is not None and t.inputs[0].ndim >= 2 and t.attrs["axes"] == _last_two_swapped(t.inputs[0].ndim):
            operands[i] = t.inputs[0]
            flags[key] = not flags.get(key, False)
    if operands[0] is inputs[0] and operands[1] is inputs[1]:
        return None
    return apply("matmul", *operands, name=node.name, **{k: True for k, v in flags.items() if v})  # (errors name it)


def _last_two_swapped(n: int) -> tuple:
    return (*range(n - 2), n - 1, n - 2)


def transpose_identity(rw, node, inputs):
    """transpose(x, (0, 1, ..., n-1)) -> x"""
    if node.attrs["axes"] == tuple(range(len(node.attrs["axes"]))):
        return inputs[0]


def reshape_chain(rw, node, inputs):
    """reshape(reshape(x)) -> reshape(x);  reshape(x) to x's own static shape -> x"""
    x = inputs[0]
    out = node.outputs[0]
    while producer(x, "reshape", "reshape_like", "expand_dims", "squeeze"):
        x = x.node.inputs[0]
    if x.type.is_static and out.type.is_static:
        return x if x.shape == out.shape else (ops.reshape(x, out.shape) if x is not inputs[0] else None)
    if x is not inputs[0] and node.op == "reshape" and x.type.is_static:
        return ops.reshape(x, node.attrs["shape"])


def same_shape_noop(rw, node, inputs):
    """broadcast_to / sum_like / reshape_like to the shape x already has -> x"""
    x = inputs[0]
    out = node.outputs[0]
    if x.type == out.type and out.type.is_static:
        return x


def static_broadcast_like(rw, node, inputs):
    """broadcast_like(x, ref) -> broadcast_to(x, ref.shape) when ref's shape is static"""
    x, ref = inputs
    if ref.type.is_static:
        return ops.broadcast_to(x, ref.shape)


def static_sum_like(rw, node, inputs):
    """sum_like(x, ref) -> reshape(sum(x, broadcast axes)) when both shapes are static"""
    x, ref = inputs
    if not (x.type.is_static and ref.type.is_static) or x.shape == ref.shape:
        return None
    lead = x.ndim - ref.ndim
    axes = tuple(range(lead)) + tuple(i + lead for i, d in enumerate(ref.shape) if d == 1 and x.shape[i + lead] != 1)
    return ops.reshape(ops.sum(x, axes, keepdims=False), ref.shape) if axes else ops.reshape(x, ref.shape)


def sum_of_broadcast(rw, node, inputs):
    """sum(broadcast_to(x), axes the broadcast added) -> x * count"""
    inner = producer(inputs[0], "broadcast_to")
    out = node.outputs[0]
    if inner is None or not inputs[0].type.is_static:
        return None
    x = inner.inputs[0]
    full = inputs[0].shape
    lead = len(full) - x.ndim
    added = {i for i in range(len(full)) if i < lead or (x.shape[i - lead] == 1 and full[i] != 1)}
    axes = set(node.attrs["axes"])
    if axes != added or x.dtype.kind != "f":
        return None
    count = int(np.prod([full[a] for a in axes]))
    base = ops.reshape(x, out.shape) if x.shape != out.shape else x
    return base * count if _same(base, out) else None


def static_like(rw, node, inputs):
    """zeros_like(x) / ones_like(x) -> broadcast_to(0 or 1, x.shape) when x's shape is static"""
    x = inputs[0]
    if not x.type.is_static:
        return None
    value = 0 if node.op == "zeros_like" else 1
    c = ops.constant(np.asarray(value, dtype=x.dtype))
    return ops.broadcast_to(c, x.shape) if x.shape else c


def mul_no_nan_plain(rw, node, inputs):
    """mul_no_nan(g, d) -> g * d when d is a finite constant or g a constant without zeros"""
    g, d = inputs
    cg, cd = constant_value(g), constant_value(d)
    if (cd is not None and np.all(np.isfinite(cd))) or (cg is not None and np.all(cg != 0)):
        return g * d


def drop_noop(rw, node, inputs):
    """identity(x) -> x;  stop_gradient(x) -> x (it only matters to autodiff);  cast to x's dtype -> x"""
    x = inputs[0]
    if x.type == node.outputs[0].type:
        return x


def exp_log(rw, node, inputs):
    """exp(log(x)) -> x"""
    inner = producer(inputs[0], "log")
    if inner is not None:
        return inner.inputs[0]


def log_exp(rw, node, inputs):
    """log(exp(x)) -> x"""
    inner = producer(inputs[0], "exp")
    if inner is not None:
        return inner.inputs[0]


def where_const(rw, node, inputs):
    """where(True, a, b) -> a;  where(False, a, b) -> b (when the kept side has the output's type)"""
    c, a, b = inputs
    s = scalar_of(c)
    if s is None:
        return None
    kept = a if bool(s) else b
    if _same(kept, node.outputs[0]):
        return kept


def reduce_no_axes(rw, node, inputs):
    """sum/mean/max/min/prod over no axes -> x"""
    if not node.attrs["axes"] and _same(inputs[0], node.outputs[0]):
        return inputs[0]


def _window_step(rw, p):
    """(x, f) when node p computes f(x) for a non-decreasing elementwise f that is the same map at
    every pixel of an NCHW image (relu; adding or subtracting a per-channel or scalar b), else None."""
    out = p.outputs[0]
    if p.op == "relu":
        return p.inputs[0], ops.relu
    if p.op not in ("add", "subtract") or out.ndim != 4:
        return None
    x, b = p.inputs
    if p.op == "add" and not _same(x, out):  # b + x
        x, b = b, x
    bshape = (1,) * (4 - b.ndim) + tuple(b.shape)
    if not _same(x, out) or b.ndim > 4 or bshape[2:] != (1, 1):
        return None
    b = rw.mapping.get(b, b)
    return x, (lambda y: ops.add(y, b)) if p.op == "add" else (lambda y: ops.subtract(y, b))


def pool_before_map(rw, node, inputs):
    """max_pool2d(relu(x)) -> relu(max_pool2d(x));  max_pool2d(x + b) -> max_pool2d(x) + b (and x - b)
    for b the same at every pixel (a per-channel bias), when the pool is the map's only consumer.

    A non-decreasing map commutes with a window's maximum, exactly (float rounding is monotone
    too; a padded -inf never wins, since every window holds a pixel), and then runs on the
    kh*kw times smaller pooled tensor: conv + bias + relu + pool computes bias and relu after the pool.
    """
    t = node.inputs[0]
    if inputs[0] is not t:
        return None
    maps = []
    while rw.mapping.get(t, t) is t and len(t.node.types) == 1 and len(rw.users[t.node]) == 1:
        step = _window_step(rw, t.node)
        if step is None:
            break
        t, f = step
        maps.append(f)
    if not maps:
        return None
    y = apply("max_pool2d", rw.mapping.get(t, t), **node.attrs)
    for f in reversed(maps):
        y = f(y)
    return y


def pool_grad_mask(rw, node, inputs):
    """max_pool2d_grad(x, g) * (x > c) -> max_pool2d_grad(x, g * (max_pool2d(x) > c)), c a scalar
    (when the product is the pooling gradient's only consumer).

    The gradient lands only where x equals its window's maximum, and there x > c exactly when the
    maximum is: relu's gradient mask after a pool then costs a pass over the kh*kw times smaller
    pooled tensor (whose max_pool2d the forward pass computed already: merge shares it).

    When x = relu(z) and c >= 0, the gradient is routed through z instead: where the window's
    maximum is above c, relu(z) and z have the same first maximum, and elsewhere the masked g is 0
    wherever it lands (for a finite g). Nothing then reads relu(z) but the forward pool, which
    ``pool_before_map`` can then apply before the relu (training a CNN skips a full-size relu).
    """
    for grad, mask in (inputs, inputs[::-1]):
        pg, gt = producer(grad, "max_pool2d_grad"), producer(mask, "greater")
        if pg is None or gt is None:
            continue
        x, g = pg.inputs
        c = gt.inputs[1]
        if gt.inputs[0] != x or scalar_of(c) is None or c.ndim or not _same(grad, node.outputs[0]):
            continue
        if len(rw.users.get(pg, ())) != 1:
            continue
        relu = producer(x, "relu")
        if relu is not None and scalar_of(c) >= 0:
            x = relu.inputs[0]
        pooled = apply("max_pool2d", x, **pg.attrs)
        return apply("max_pool2d_grad", x, g * ops.greater(pooled, c), **pg.attrs)
    return None


RULES = {
    "multiply": [mul_one, pool_grad_mask],
    "add": [add_zero, add_zeros_like],
    "subtract": [sub_zero, zero_sub, sub_self],
    "negative": [double_negation],
    "divide": [div_one, div_const],
    "power": [pow_const],
    "transpose": [transpose_identity, transpose_transpose],
    "matmul": [matmul_of_transpose],
    "reshape": [reshape_chain],
    "reshape_like": [same_shape_noop, reshape_chain],
    "broadcast_to": [same_shape_noop],
    "broadcast_like": [same_shape_noop, static_broadcast_like],
    "sum_like": [same_shape_noop, static_sum_like],
    "sum": [reduce_no_axes, sum_of_broadcast],
    "mean": [reduce_no_axes],
    "max": [reduce_no_axes],
    "min": [reduce_no_axes],
    "prod": [reduce_no_axes],
    "zeros_like": [static_like],
    "ones_like": [static_like],
    "mul_no_nan": [mul_no_nan_plain],
    "identity": [drop_noop],
    "stop_gradient": [drop_noop],
    "cast": [drop_noop],
    "exp": [exp_log],
    "log": [log_exp],
    "where": [where_const],
    "max_pool2d": [pool_before_map],
}


def simplify(program: Program):
    """Apply the algebraic identities in ``RULES``."""
    return apply_rules(program, RULES, "simplify")
