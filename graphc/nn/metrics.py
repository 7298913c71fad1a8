"""Metrics: graph ops from (predictions, targets) Tensors to a scalar Tensor, not differentiable."""

from __future__ import annotations

from .. import ops
from ..errors import ShapeError
from ..ir import Tensor
from ..ir.types import fmt_shape


def accuracy(logits_or_probs, labels) -> Tensor:
    """Fraction of rows whose largest score is at the label (ties: the first largest), as float32.

    ``labels`` are integer class indices of shape (N,) or one-hot / probability rows (N, C).
    """
    scores = ops.as_tensor(logits_or_probs)
    labels = ops.as_tensor(labels)
    if labels.ndim == scores.ndim:
        labels = ops.argmax(labels, axis=-1)
    elif labels.ndim != scores.ndim - 1 or labels.dtype.kind not in "iub":
        raise ShapeError(f"accuracy: labels must be class indices of shape scores.shape[:-1] or rows of "
                         f"shape scores.shape: got scores {fmt_shape(scores.shape)} and labels "
                         f"{fmt_shape(labels.shape)} {labels.dtype}")  # fmt: skip
    hits = ops.equal(ops.argmax(scores, axis=-1), ops.cast(labels, "int64"))
    return ops.mean(ops.cast(hits, "float32"))
