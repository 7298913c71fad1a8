"""Neural-network ops: softmax, log_softmax and softmax cross-entropy, stable in value and gradient;
gelu, embedding, layer_norm and batch_norm as composites of existing ops (gradients for free).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DTypeError, GraphError, ShapeError
from ..ir import Tensor, TensorType
from ..ir.types import fmt_shape, normalize_axes
from . import rows_c
from .elementwise import cast, erf, exp, identity, maximum, reciprocal, sqrt, stop_gradient, tanh, where
from .reduce import _count, mean, sum
from .registry import OPAQUE, OpDef, apply, register
from .shape import expand_dims, reshape, take
from .state import as_tensor


def _softmax_kernel(xp, x, axis):
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _log_softmax_kernel(xp, x, axis):
    s = x - x.max(axis=axis, keepdims=True)
    return s - xp.log(xp.exp(s).sum(axis=axis, keepdims=True))


def _float_same(x: TensorType, axis) -> TensorType:
    if x.dtype.kind != "f":
        raise DTypeError(f"needs a float input: got {x.dtype}")
    return x


def _softmax_vjp(g, o, axis):
    """The vector-Jacobian product of softmax at output o."""
    return o * (g - sum(g * o, axis, keepdims=True))


register(OpDef("softmax", OPAQUE, _float_same, _softmax_kernel,
               lambda g, o, x, axis: (_softmax_vjp(g, o, axis),), c_kernel=rows_c.softmax,
               doc="exp(x) / sum(exp(x)) along axis, computed stably."))  # fmt: skip
register(OpDef("log_softmax", OPAQUE, _float_same, _log_softmax_kernel,
               lambda g, o, x, axis: (g - exp(o) * sum(g, axis, keepdims=True),), c_kernel=rows_c.log_softmax,
               doc="x - logsumexp(x) along axis, computed stably."))  # fmt: skip


def _axis_fn(opname, doc):
    def fn(x, axis=-1, name=None):
        x = as_tensor(x)
        (ax,) = normalize_axes(axis, x.ndim, opname)
        return apply(opname, x, name=name, axis=ax)

    fn.__name__ = fn.__qualname__ = opname
    fn.__doc__ = doc
    return fn


softmax = _axis_fn("softmax", "``exp(x) / sum(exp(x), axis)``, stable for large inputs.")
log_softmax = _axis_fn("log_softmax", "``x - logsumexp(x, axis)``, stable for large inputs.")


def _xent_infer(logits: TensorType, labels: TensorType) -> TensorType:
    if logits.dtype.kind != "f":
        raise DTypeError(f"logits must be float: got {logits.dtype}")
    if labels.dtype.kind not in "iu":
        raise DTypeError(f"labels must be integer class indices: got {labels.dtype}")
    if logits.ndim != labels.ndim + 1 or any(
        a is not None and b is not None and a != b for a, b in zip(logits.shape[:-1], labels.shape)
    ):
        raise ShapeError(f"labels shape must be logits shape without the class axis: got logits "
                         f"{fmt_shape(logits.shape)} and labels {fmt_shape(labels.shape)}")  # fmt: skip
    if logits.shape[-1] is None:
        raise ShapeError(f"the number of classes (last dim of logits) must be known: got {fmt_shape(logits.shape)}")
    return TensorType(logits.shape[:-1], logits.dtype)


def _rows(xp, logits, labels):
    """(row index, label) pairs of every example, labels checked to lie in [0, classes)."""
    n = logits.shape[-1]
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n):
        raise ValueError(f"labels must lie in [0, {n}): got values from {int(labels.min())} to {int(labels.max())}")
    return xp.arange(labels.size), labels.reshape(-1).astype(np.intp, copy=False)


def _xent_kernel(xp, logits, labels):
    """log(sum(exp(x - m))) - (x[label] - m) per row, m the row's max: only the labels' entries of
    the log-softmax (1.5x faster than all of it); x[label] - m first, exact for confident logits."""
    rows, cols = _rows(xp, logits, labels)
    m = logits.max(axis=-1, keepdims=True)
    e = xp.subtract(logits, m)
    xp.exp(e, out=e)
    picked = logits.reshape(-1, logits.shape[-1])[rows, cols] - m.reshape(-1)
    return xp.subtract(xp.log(e.sum(axis=-1)).reshape(-1), picked).reshape(labels.shape)


def _xent_grad_kernel(xp, logits, labels):
    rows, cols = _rows(xp, logits, labels)
    p = _softmax_kernel(xp, logits, -1)
    p.reshape(-1, logits.shape[-1])[rows, cols] -= 1  # (softmax returns a new contiguous array)
    return p


register(OpDef(
    "softmax_cross_entropy", OPAQUE, _xent_infer, _xent_kernel,
    lambda g, o, logits, labels: (expand_dims(g, -1) * apply("softmax_cross_entropy_grad", logits, labels), None),
    nograd_inputs=(1,), c_kernel=rows_c.cross_entropy(grad=False),
    doc="Per-example -log softmax(logits)[label], computed stably.",
))  # fmt: skip
register(OpDef(
    "softmax_cross_entropy_grad", OPAQUE, lambda logits, labels: _xent_infer(logits, labels) and logits,
    _xent_grad_kernel,
    lambda g, o, logits, labels: (_softmax_vjp(g, apply("softmax", logits, axis=logits.ndim - 1), -1), None),
    nograd_inputs=(1,), c_kernel=rows_c.cross_entropy(grad=True),
    doc="softmax(logits) - one_hot(labels): the gradient of softmax_cross_entropy by its logits, one kernel.",
))  # fmt: skip


def softmax_cross_entropy(logits, labels, name=None) -> Tensor:
    """Per-example cross-entropy of integer ``labels`` under ``softmax(logits)`` (last axis).

    Returns a tensor of ``logits.shape[:-1]``; take its ``mean`` for a loss. Stable for large logits.
    """
    logits = as_tensor(logits)
    labels = as_tensor(labels)
    if labels.dtype.kind == "b":
        labels = cast(labels, np.int64)
    return apply("softmax_cross_entropy", logits, labels, name=name)


# -- activations, embeddings and normalization: composites of the ops above ----------------------
def gelu(x, approximate="none", name=None) -> Tensor:
    """Gaussian error linear unit ``x * Phi(x)``, like PyTorch's ``gelu``. A composite.

    ``approximate="none"``: ``0.5 x (1 + erf(x / sqrt(2)))``; ``"tanh"``:
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``. Both are elementwise and fuse into one kernel.
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"gelu '{name or x.name}': needs a float input: got {x.dtype}")
    if approximate == "none":
        y = x * (erf(x * (1 / math.sqrt(2))) * 0.5 + 0.5)
    elif approximate == "tanh":
        y = x * (tanh((x + x * x * x * 0.044715) * math.sqrt(2 / math.pi)) * 0.5 + 0.5)
    else:
        raise GraphError(f"gelu '{name or x.name}': approximate must be 'none' or 'tanh': got {approximate!r}")
    return y if name is None else identity(y, name=name)


def embedding(ids, table, name=None) -> Tensor:
    """Rows of ``table`` (num, dim) at integer ``ids`` (...): (..., dim). A composite: ``take``
    along axis 0, whose gradient scatter-adds into the table (repeated ids add up)."""
    ids, table = as_tensor(ids), as_tensor(table)
    if ids.dtype.kind not in "iu":
        raise DTypeError(f"embedding '{name or table.name}': ids must be integers: got {ids.dtype}")
    if table.ndim != 2:
        raise ShapeError(f"embedding '{name or table.name}': table must be (num, dim): got {fmt_shape(table.shape)}")
    return take(table, ids, axis=0, name=name)


def _normalize(x: Tensor, axes, eps: float):
    """(x - mean) / sqrt(var + eps) over axes, with the batch statistics (two passes: the
    variance of the centered values, never E[x^2] - E[x]^2, which cancels catastrophically)."""
    mu = mean(x, axes, keepdims=True)
    d = x - mu
    var = mean(d * d, axes, keepdims=True)
    return d * reciprocal(sqrt(var + eps)), mu, var


def _along(v: Tensor, x: Tensor, axes, what: str) -> Tensor:
    """Parameter v of shape x.shape[axes], reshaped to broadcast against x."""
    want = tuple(x.shape[a] for a in axes)
    if v.ndim != len(axes) or any(a is not None and b is not None and a != b for a, b in zip(v.shape, want)):
        raise ShapeError(f"{what} must have shape {fmt_shape(want)} (x {fmt_shape(x.shape)} at axes {axes}): "
                         f"got {fmt_shape(v.shape)}")  # fmt: skip
    if axes == tuple(range(x.ndim - len(axes), x.ndim)):
        return v  # trailing axes broadcast as they are
    shape = [1] * x.ndim
    for a, d in zip(axes, v.shape):
        shape[a] = d
    return reshape(v, shape)


def layer_norm(x, gamma=None, beta=None, axis=-1, eps=1e-5, name=None) -> Tensor:
    """Normalize over ``axis`` (int or tuple) to zero mean and unit variance, then scale by gamma
    and shift by beta (shape ``x.shape[axis]``; either may be None). A composite.

    ``(x - mean) / sqrt(var + eps) * gamma + beta`` with the biased variance, like PyTorch.
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"layer_norm '{name or x.name}': needs a float input: got {x.dtype}")
    label = f"layer_norm '{name or x.name}'"
    axes = normalize_axes(axis, x.ndim, label)
    with x.graph:  # parameters are checked before anything is built
        g = None if gamma is None else _along(as_tensor(gamma, like=x), x, axes, f"{label}: gamma")
        b = None if beta is None else _along(as_tensor(beta, like=x), x, axes, f"{label}: beta")
        y, _, _ = _normalize(x, axes, eps)
        y = y if g is None else y * g
        y = y if b is None else y + b
        return y if name is None else identity(y, name=name)


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5, axis=1,
               name=None) -> Tensor:  # fmt: skip
    """Batch normalization over every axis but ``axis`` (channels of NCHW, features of (N, F)).

    Training mode normalizes with the batch statistics (biased variance) and makes every function
    that computes the result also update the running statistics, like PyTorch:
    ``running_mean := (1 - momentum) running_mean + momentum mean`` and likewise ``running_var``
    with the unbiased batch variance. Inference mode normalizes with the running statistics.
    A composite; ``gamma``/``beta`` may be None.

    Parameters
    ----------
    running_mean, running_var : variables of shape (C,)
    training : bool, or a bool scalar Tensor (chosen at run time; the running statistics are then
        updated only by calls where it is true)
    """
    x = as_tensor(x)
    label = f"batch_norm '{name or x.name}'"
    if x.dtype.kind != "f":
        raise DTypeError(f"{label}: needs a float input: got {x.dtype}")
    (ax,) = normalize_axes(axis, x.ndim, label)
    axes = tuple(i for i in range(x.ndim) if i != ax)
    for v, what in ((running_mean, "running_mean"), (running_var, "running_var")):
        if not isinstance(v, Tensor) or v.node.op != "variable":
            raise GraphError(f"{label}: {what} must be a graphc variable: got {v!r}")
        if v.dtype.kind != "f":
            raise DTypeError(f"{label}: {what} must be float: got {v.dtype}")
    dynamic = isinstance(training, Tensor)
    if dynamic and (training.shape != () or training.dtype != np.bool_):
        raise DTypeError(f"{label}: training must be a Python bool or a bool scalar Tensor: got {training.type}")
    with x.graph:  # parameters are checked before anything is built
        rm = _along(cast(running_mean, x.dtype), x, (ax,), f"{label}: running_mean")
        rv = _along(cast(running_var, x.dtype), x, (ax,), f"{label}: running_var")
        g = None if gamma is None else _along(as_tensor(gamma, like=x), x, (ax,), f"{label}: gamma")
        b = None if beta is None else _along(as_tensor(beta, like=x), x, (ax,), f"{label}: beta")
        if dynamic or training:
            y, mu, var = _normalize(x, axes, eps)
        if dynamic or not training:
            y_inf = (x - rm) * reciprocal(sqrt(rv + eps))
            y = where(training, y, y_inf) if dynamic else y_inf
        y = y if g is None else y * g
        y = y if b is None else y + b
        y = y if name is None else identity(y, name=name)
        # running := (1 - momentum) running + momentum batch statistic, in every function that computes
        # the batch mean: the output and every gradient through it need it
        if dynamic or training:
            n = _count(x, axes)
            batch_mean = stop_gradient(reshape(mu, running_mean.shape))
            unbiased = stop_gradient(reshape(var, running_var.shape) * (n / maximum(n - 1, 1)))
            for running, stat in ((running_mean, batch_mean), (running_var, unbiased)):
                new = running * (1 - momentum) + cast(stat, running.dtype) * momentum
                x.graph.add_implicit_update(mu, running, where(training, new, running) if dynamic else new)
    return y
