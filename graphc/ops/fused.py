"""Fused ops: a cluster of elementwise ops (optionally after a matmul) kept as a small expression.

The ``body`` attribute is a tuple of instructions ``(op, args, attrs, dtype)``; an arg ``i``
below the number of inputs names input ``i``, above it names an earlier instruction's result.
The last instruction is the output, optionally reduced by ``reduce = (ufunc, axes, keepdims)``
(a trailing ``sum``/``max``/``min``/``prod`` folded into the kernel). Every backend generates
its own single kernel from the body: NumPy runs it as ufuncs over cache-sized blocks
(backends/numpy_backend.py); native C and CUDA backends emit a loop from each op's ``expr``.
The kernels here are the reference.
"""

from __future__ import annotations

import numpy as np

from ..ir import TensorType
from ..ir.types import broadcast_shapes
from .linalg import gemm
from .registry import FUSED, OpDef, register


def body_text(body, n_inputs: int, names=None) -> str:
    """The body as an expression, for explain: ``tanh(add(multiply(%0, %1), %2))``."""
    names = names or [f"%{i}" for i in range(n_inputs)]
    exprs = list(names)
    for op, args, attrs, _dtype in body:
        extra = "".join(f", {k}={v}" for k, v in attrs)
        exprs.append(f"{op}({', '.join(exprs[a] for a in args)}{extra})")
    return exprs[-1]


def run_body(xp, body, inputs, out=None):
    """Evaluate a body on whole arrays (the reference every backend must match)."""
    from .registry import REGISTRY

    vals = list(inputs)
    last = len(body) - 1
    for i, (op, args, attrs, _dtype) in enumerate(body):
        vals.append(REGISTRY[op].kernel(xp, *(vals[a] for a in args), out=out if i == last else None, **dict(attrs)))
    return vals[-1]


def reduced_shape(shape, reduce):
    """The shape after a fused trailing reduction ``(ufunc, axes, keepdims)`` (None: no reduction)."""
    if reduce is None:
        return shape
    _ufunc, axes, keepdims = reduce
    return tuple(1 if i in axes else d for i, d in enumerate(shape) if keepdims or i not in axes)


def _fused_infer(*types: TensorType, body, reduce=None) -> TensorType:
    shape = broadcast_shapes(*(t.shape for t in types))
    return TensorType(reduced_shape(shape, reduce), np.dtype(body[-1][3]))


def _fused_kernel(xp, *inputs, body, reduce=None, out=None):
    if reduce is None:
        return run_body(xp, body, inputs, out)
    ufunc, axes, keepdims = reduce
    return getattr(xp, ufunc).reduce(run_body(xp, body, inputs), axis=axes, keepdims=keepdims, out=out)


def _inline(inputs, body):
    """Rebuild the body as ordinary ops on ``inputs`` (so a fused node can be differentiated)."""
    from .registry import apply

    vals = list(inputs)
    for op, args, attrs, _dtype in body:
        vals.append(apply(op, *(vals[a] for a in args), **dict(attrs)))
    return vals[-1]


def _fused_grad(g, out, *inputs, body, reduce=None):
    from ..autodiff import grad
    from .registry import REGISTRY, apply

    y = _inline(inputs, body)
    if reduce is not None:  # the reduce op whose ufunc this is: sum, max, min or prod
        ufunc, axes, keepdims = reduce
        op = next(name for name, d in REGISTRY.items() if d.kind == "reduce" and d.ufunc == ufunc)
        y = apply(op, y, axes=axes, keepdims=keepdims)
    return tuple(grad(y, list(inputs), grad_ys=g))


register(OpDef("fused_elementwise", FUSED, _fused_infer, _fused_kernel, _fused_grad, inplace=True,
               doc="A fused cluster of elementwise ops, one kernel."))  # fmt: skip


def _matmul_infer(a: TensorType, b: TensorType, *rest: TensorType, body, transpose_a=False, transpose_b=False,
                  **_) -> TensorType:  # fmt: skip
    from .linalg import _matmul_infer as mm

    return TensorType(mm(a, b, transpose_a, transpose_b).shape, np.dtype(body[-1][3]))


def product_out(out, rest):
    """Where a fused matmul's GEMM writes: ``out`` (the planned buffer: the epilogue then runs in
    place), or None, a new array, when ``out`` is one of the epilogue inputs ``rest`` (a variable
    updated in place: OpDef.elementwise_from), which the GEMM must not overwrite first."""
    return None if any(out is r for r in rest) else out


def _matmul_kernel(xp, a, b, *rest, body, transpose_a=False, transpose_b=False, out=None):
    mm = gemm(xp, a, b, product_out(out, rest), transpose_a, transpose_b)
    return run_body(xp, body, (mm, *rest), out=mm if out is None else out)


def _matmul_grad(g, out, a, b, *rest, body, transpose_a=False, transpose_b=False):
    from ..autodiff import grad
    from .linalg import mm

    inputs = [a, b, *rest]
    return tuple(grad(_inline([mm(a, b, transpose_a, transpose_b), *rest], body), inputs, grad_ys=g))


register(OpDef("fused_matmul", FUSED, _matmul_infer, _matmul_kernel, _matmul_grad, elementwise_from=2,
               doc="matmul (with its transpose_a/transpose_b flags) followed by an elementwise epilogue "
                   "(bias, activation) applied in place."))  # fmt: skip
