"""Reductions over axes: sum mean max min prod argmax argmin logsumexp, and ``count``.

Every reduction normalizes ``axis`` to a sorted tuple at build time; gradients re-expand the
reduced axes and broadcast back with ``broadcast_like``, so unknown dims work.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from ..ir import Tensor, TensorType
from ..ir.types import normalize_axes
from . import rows_c
from .elementwise import cast, equal, exp, reciprocal, stop_gradient, where
from .registry import REDUCE, SHAPE, OpDef, apply, register
from .shape import broadcast_like, expand_dims
from .state import as_tensor


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_infer(np_fn):
    def infer(x: TensorType, axes, keepdims) -> TensorType:
        dtype = np.asarray(np_fn(np.ones((1,), dtype=x.dtype))).dtype
        return TensorType(_reduced_shape(x.shape, axes, keepdims), dtype)

    return infer


def _keep(g, axes, keepdims):
    """g with the reduced axes put back as size-1 dims."""
    return g if keepdims or not axes else expand_dims(g, axes)


def _back(g, x, axes, keepdims):
    """The gradient of a reduction spread back over x's shape."""
    return broadcast_like(_keep(g, axes, keepdims), x)


def _reduction(name, np_fn, grad, doc, kind=REDUCE, **kw):
    method = np_fn.__name__  # the array method (x.sum): it skips np.sum's Python-level dispatch

    def kernel(xp, x, axes, keepdims):
        return xp.asarray(getattr(x, method)(axis=axes, keepdims=keepdims))

    register(OpDef(name, kind, _reduce_infer(np_fn), kernel, grad, doc=doc, **kw))

    def fn(x, axis=None, keepdims=False, name=None):
        x = as_tensor(x)
        return apply(opname, x, name=name, axes=normalize_axes(axis, x.ndim, opname), keepdims=bool(keepdims))

    opname = name
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"{doc}\n\nParameters\n----------\naxis : None, int or tuple of ints\nkeepdims : bool"
    return fn


def _count(x: Tensor, axes) -> Tensor:
    """Number of elements reduced over ``axes``: a constant when known, else computed at run time."""
    dims = [x.shape[a] for a in axes]
    if all(d is not None for d in dims):
        return as_tensor(math.prod(dims), like=x)
    return apply("count", x, axes=axes)


def _inverse_count(x: Tensor, axes) -> Tensor:
    """1 / the number of elements reduced over ``axes``: a constant when known (the mean's gradient)."""
    dims = [x.shape[a] for a in axes]
    if all(d is not None for d in dims):
        return as_tensor(np.asarray(1 / math.prod(dims), x.dtype), like=x)
    return reciprocal(_count(x, axes))


register(OpDef(
    "count", SHAPE, lambda x, axes: TensorType((), x.dtype),
    lambda xp, x, axes: xp.asarray(math.prod(x.shape[a] for a in axes), dtype=x.dtype),
    lambda g, o, x, axes: (None,), nograd_inputs=(0,), doc="Number of elements over axes (shape only).",
))  # fmt: skip


def _max_grad(g, o, x, axes, keepdims):
    # The mask is piecewise constant: its gradient is zero (blocked), not undefined, so that
    # the gradient of this gradient exists.
    mask = stop_gradient(cast(equal(x, _back(o, x, axes, keepdims)), x.dtype))
    return (_back(g, x, axes, keepdims) * mask / sum(mask, axes, keepdims=True),)


def _prod_grad(g, o, x, axes, keepdims):
    """d prod / d x_i = product of the others, exact with zeros (no division by x_i = 0).

    The others of x_i are its nonzero ones (all nonzero entries / x_i) times its zero ones: all
    the zeros when x_i != 0; when x_i == 0, nothing, the other zero, or 0 for 1, 2 or more zeros.
    Each factor equals the product near x, not only at x, so second derivatives are exact too.
    """
    zero = equal(x, 0)
    nonzero = where(zero, 1, x)
    nonzero_prod = prod(nonzero, axes, keepdims=True)
    zero_prod = prod(where(zero, x, 1), axes, keepdims=True)  # 0, or 1 when there is no zero
    nzeros = sum(cast(zero, x.dtype), axes, keepdims=True)
    other_zero = sum(where(zero, x, 0), axes, keepdims=True) - x  # its value is 0; its gradient is not
    zeros_but_self = where(equal(nzeros, 1), 1, where(equal(nzeros, 2), other_zero, 0))
    others = where(zero, zeros_but_self, zero_prod) * (nonzero_prod * reciprocal(nonzero))
    return (_back(g, x, axes, keepdims) * others,)


# ``ufunc`` names the binary ufunc whose ``.reduce`` computes a reduction: fused kernels use it
# to fold a trailing reduction into the elementwise cluster that feeds it.
sum = _reduction("sum", np.sum, lambda g, o, x, axes, keepdims: (_back(g, x, axes, keepdims),),  # noqa: A001
                 "Sum of elements over the given axes.", ufunc="add", c_kernel=rows_c.reduction("add"))  # fmt: skip
mean = _reduction(
    "mean", np.mean,
    lambda g, o, x, axes, keepdims: (_back(g * _inverse_count(x, axes), x, axes, keepdims),),
    "Mean of elements over the given axes.",
)  # fmt: skip
max = _reduction("max", np.max, _max_grad, "Maximum over axes; ties share the gradient equally.",  # noqa: A001
                 ufunc="maximum", c_kernel=rows_c.reduction("maximum"))  # fmt: skip
min = _reduction("min", np.min, _max_grad, "Minimum over axes; ties share the gradient equally.",  # noqa: A001
                 ufunc="minimum", c_kernel=rows_c.reduction("minimum"))  # fmt: skip
prod = _reduction("prod", np.prod, _prod_grad, "Product of elements over the given axes.", ufunc="multiply")


def _logsumexp_kernel(xp, x, axes, keepdims):
    m = xp.max(x, axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # all -inf (or inf) rows: leave them to exp/log
    out = xp.log(xp.sum(xp.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdims else xp.asarray(xp.squeeze(out, axis=axes))


def _logsumexp_grad(g, o, x, axes, keepdims):
    """softmax(x) over axes, shifted by max(x) (exact) rather than by o: o's rounding error is
    absolute, so exp(x - o) is off by a factor e when |o| = 1e7 in float32."""
    e = exp(x - stop_gradient(max(x, axes, keepdims=True)))
    return (_back(g, x, axes, keepdims) * (e / sum(e, axes, keepdims=True)),)


register(OpDef(
    "logsumexp", REDUCE, _reduce_infer(np.sum), _logsumexp_kernel, _logsumexp_grad,
    doc="log(sum(exp(x))) over axes, computed stably.",
))  # fmt: skip


def logsumexp(x, axis=None, keepdims=False, name=None) -> Tensor:
    """``log(sum(exp(x), axis))`` without overflow; its gradient (a softmax) is stable too."""
    x = as_tensor(x)
    if x.dtype.kind != "f":
        x = cast(x, np.float64)
    return apply("logsumexp", x, name=name, axes=normalize_axes(axis, x.ndim, "logsumexp"), keepdims=bool(keepdims))


def _arg_infer(x: TensorType, axis) -> TensorType:
    shape = () if axis is None else tuple(d for i, d in enumerate(x.shape) if i != axis)
    if axis is None and x.ndim == 0:
        shape = ()
    return TensorType(shape, np.dtype(np.int64))


def _arg(name):
    register(OpDef(name, REDUCE, _arg_infer,
                   lambda xp, x, axis: xp.asarray(getattr(xp, name)(x, axis=axis)).astype(np.int64, copy=False),
                   differentiable=False,
                   doc=f"Index of the {name[3:]}imum (along axis, or of the flattened x)."))  # fmt: skip

    def fn(x, axis=None, name=None):
        x = as_tensor(x)
        if axis is not None:
            (axis,) = normalize_axes(axis, x.ndim, opname)
        if x.ndim == 0 and axis is None:
            raise ShapeError(f"{opname}: needs at least one dimension")
        return apply(opname, x, name=name, axis=axis)

    opname = name
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Index of the {name[3:]}imum, like np.{name} (not differentiable)."
    return fn


argmax = _arg("argmax")
argmin = _arg("argmin")
