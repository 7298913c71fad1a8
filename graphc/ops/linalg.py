"""Linear algebra: matmul with NumPy's batching and broadcasting rules."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import Tensor, TensorType
from ..ir.types import broadcast_shapes, fmt_shape
from .registry import MATMUL, OpDef, apply, register
from .shape import expand_dims, squeeze
from .state import as_tensor


def _t(shape: tuple, flag: bool) -> tuple:
    """``shape`` with its last two dims swapped when ``flag``."""
    return (*shape[:-2], shape[-1], shape[-2]) if flag else shape


def _matmul_infer(a: TensorType, b: TensorType, transpose_a: bool = False, transpose_b: bool = False) -> TensorType:
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"operands need at least 2 dims: got {fmt_shape(a.shape)} @ {fmt_shape(b.shape)}")
    sa, sb = _t(a.shape, transpose_a), _t(b.shape, transpose_b)
    what = f"{fmt_shape(sa)} @ {fmt_shape(sb)}"
    if transpose_a or transpose_b:
        which = " and ".join(n for n, flag in (("a", transpose_a), ("b", transpose_b)) if flag)
        what += f" (operands read transposed: {which})"
    k1, k2 = sa[-1], sb[-2]
    if k1 is not None and k2 is not None and k1 != k2:
        raise ShapeError(f"{what}: inner dimensions {k1} and {k2} differ")
    batch = broadcast_shapes(sa[:-2], sb[:-2])
    if batch is None:
        raise ShapeError(f"batch dims do not broadcast: got {what}")
    return TensorType(batch + (sa[-2], sb[-1]), np.result_type(a.dtype, b.dtype))


def gemm(xp, a, b, out=None, transpose_a=False, transpose_b=False):
    """``xp.matmul(op(a), op(b), out=out)``, op transposing the last two dims when its flag is set
    (a view: BLAS reads it transposed). NumPy's 2-D case goes through ``np.dot``, which reaches BLAS
    with less dispatch (1.6-1.8x faster for batch-1 and narrow products, the same for large ones)."""
    if transpose_a:
        a = xp.swapaxes(a, -1, -2)
    if transpose_b:
        b = xp.swapaxes(b, -1, -2)
    if xp is np and a.ndim == 2 and b.ndim == 2 and (out is None or out.flags.c_contiguous):
        return np.dot(a, b, out=out)
    return xp.matmul(a, b, out=out)


def _kernel(xp, a, b, out=None, transpose_a=False, transpose_b=False):
    return gemm(xp, a, b, out, transpose_a, transpose_b)


def _flags(transpose_a: bool, transpose_b: bool) -> dict:
    """A flag is an attribute only when set, so that equal products have equal attributes."""
    return {k: True for k, v in (("transpose_a", transpose_a), ("transpose_b", transpose_b)) if v}


def mm(a: Tensor, b: Tensor, transpose_a: bool = False, transpose_b: bool = False) -> Tensor:
    """The ``matmul`` node of ``op(a) @ op(b)`` for operands of 2 or more dims."""
    return apply("matmul", a, b, **_flags(transpose_a, transpose_b))


def _grad(g, out, a, b, transpose_a=False, transpose_b=False):
    """C = op(A) op(B): each gradient is one product of g and the other operand, with flags
    instead of transpose nodes (TensorFlow's MatMul gradient)."""
    if not transpose_a and not transpose_b:
        return mm(g, b, transpose_b=True), mm(a, g, transpose_a=True)
    if not transpose_a:  # C = A Bᵀ
        return mm(g, b), mm(g, a, transpose_a=True)
    if not transpose_b:  # C = Aᵀ B
        return mm(b, g, transpose_b=True), mm(a, g)
    return mm(b, g, True, True), mm(g, a, True, True)  # C = Aᵀ Bᵀ


register(OpDef(
    "matmul", MATMUL, _matmul_infer, _kernel, _grad,
    doc="Matrix product of the last two dims, batched over the leading dims (broadcasting); "
        "transpose_a/transpose_b transpose an operand's last two dims first.",
))  # fmt: skip


def matmul(a, b, name=None, *, transpose_a: bool = False, transpose_b: bool = False) -> Tensor:
    """Matrix product like ``np.matmul``: 1-D operands are promoted and the added dim removed.

    ``transpose_a``/``transpose_b`` (as in ``tf.matmul``) transpose an operand's last two dims
    first, without a transpose node: BLAS reads the operand transposed.
    """
    a = as_tensor(a)
    b = as_tensor(b, like=a)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: scalar operands are not allowed: got {fmt_shape(a.shape)} @ {fmt_shape(b.shape)}")
    for flag, t, which in ((transpose_a, a, "a"), (transpose_b, b, "b")):
        if flag and t.ndim < 2:
            raise ShapeError(f"matmul: transpose_{which} needs an operand of 2 or more dims: got {fmt_shape(t.shape)}")
    a2 = expand_dims(a, 0) if a.ndim == 1 else a
    b2 = expand_dims(b, -1) if b.ndim == 1 else b
    out = apply("matmul", a2, b2, name=None if a.ndim == 1 or b.ndim == 1 else name, **_flags(transpose_a, transpose_b))
    drop = ([-1] if b.ndim == 1 else []) + ([-2] if a.ndim == 1 else [])
    return squeeze(out, tuple(drop), name=name) if drop else out
