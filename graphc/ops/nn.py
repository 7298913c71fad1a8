"""Neural-network ops: softmax, log_softmax and softmax cross-entropy, stable in value and gradient."""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import Tensor, TensorType
from ..ir.types import fmt_shape, normalize_axes
from .elementwise import cast, exp
from .reduce import sum
from .registry import OPAQUE, OpDef, apply, register
from .shape import expand_dims, one_hot
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


register(OpDef("softmax", OPAQUE, _float_same, _softmax_kernel,
               lambda g, o, x, axis: (o * (g - sum(g * o, axis, keepdims=True)),),
               doc="exp(x) / sum(exp(x)) along axis, computed stably."))  # fmt: skip
register(OpDef("log_softmax", OPAQUE, _float_same, _log_softmax_kernel,
               lambda g, o, x, axis: (g - exp(o) * sum(g, axis, keepdims=True),),
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


def _xent_kernel(xp, logits, labels):
    n = logits.shape[-1]
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n):
        raise ValueError(f"labels must lie in [0, {n}): got values from {int(labels.min())} to {int(labels.max())}")
    lse = _log_softmax_kernel(xp, logits, -1)
    return -xp.take_along_axis(lse, labels[..., None].astype(np.intp, copy=False), axis=-1)[..., 0]


register(OpDef(
    "softmax_cross_entropy", OPAQUE, _xent_infer, _xent_kernel,
    lambda g, o, logits, labels: (
        expand_dims(g, -1) * (apply("softmax", logits, axis=logits.ndim - 1)
                              - one_hot(labels, logits.shape[-1], logits.dtype)), None),
    nograd_inputs=(1,), doc="Per-example -log softmax(logits)[label], computed stably.",
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
