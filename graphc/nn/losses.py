"""Losses: graph ops from (predictions, targets) Tensors to a scalar Tensor (the batch mean).

Each takes ``reduction="mean"`` (default), ``"sum"`` or ``"none"`` (per-example values).
"""

from __future__ import annotations

from .. import ops
from ..errors import GraphError, ShapeError
from ..ir import Tensor
from ..ir.types import compatible, fmt_shape


def _reduce(per_example: Tensor, reduction: str, what: str) -> Tensor:
    if reduction == "mean":
        return ops.mean(per_example)
    if reduction == "sum":
        return ops.sum(per_example)
    if reduction == "none":
        return per_example
    raise GraphError(f"{what}: reduction must be 'mean', 'sum' or 'none': got {reduction!r}")


def softmax_cross_entropy(logits, labels, reduction: str = "mean") -> Tensor:
    """Cross-entropy of ``labels`` under ``softmax(logits)`` over the last axis, computed stably.

    Parameters
    ----------
    logits : Tensor of shape (N, C)
    labels : Tensor
        Integer class indices of shape (N,), or one-hot / probability rows of shape (N, C).
    reduction : "mean", "sum" or "none"
    """
    logits, labels = ops.as_tensor(logits), ops.as_tensor(labels, like=logits)
    if labels.dtype.kind in "iub" and labels.ndim == logits.ndim - 1:
        per_example = ops.softmax_cross_entropy(logits, labels)
    elif labels.ndim == logits.ndim and compatible(labels.shape, logits.shape):
        if labels.dtype != logits.dtype:
            labels = ops.cast(labels, logits.dtype)
        per_example = -ops.sum(labels * ops.log_softmax(logits, -1), -1)
    else:
        raise ShapeError(f"softmax_cross_entropy: labels must be class indices of shape logits.shape[:-1] or "
                         f"rows of shape logits.shape: got logits {fmt_shape(logits.shape)} and labels "
                         f"{fmt_shape(labels.shape)} {labels.dtype}")  # fmt: skip
    return _reduce(per_example, reduction, "softmax_cross_entropy")


def binary_cross_entropy_with_logits(logits, targets, reduction: str = "mean") -> Tensor:
    """``-t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))`` elementwise, computed stably.

    Written as ``softplus(z) - z * t``: the same value as ``max(z, 0) - z t + log1p(exp(-|z|))``
    (softplus computes exactly that), and its gradient is ``sigmoid(z) - t`` everywhere, where the
    max/abs form would give ``-t`` at ``z = 0``.
    """
    logits = ops.as_tensor(logits)
    targets = ops.as_tensor(targets, like=logits)
    if targets.dtype != logits.dtype:
        targets = ops.cast(targets, logits.dtype)
    return _reduce(ops.softplus(logits) - logits * targets, reduction, "binary_cross_entropy_with_logits")


def mean_squared_error(pred, target, reduction: str = "mean") -> Tensor:
    """``(pred - target) ** 2``, averaged over every element (``reduction="mean"``)."""
    pred = ops.as_tensor(pred)
    target = ops.as_tensor(target, like=pred)
    if target.dtype != pred.dtype and target.dtype.kind in "iub":
        target = ops.cast(target, pred.dtype)
    return _reduce(ops.square(pred - target), reduction, "mean_squared_error")
