"""IR types: a tensor's static type (shape with unknown dims, dtype) and shape arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..dtypes import short

Shape = tuple  # tuple[int | None, ...]; None marks a size known only at run time


@dataclass(frozen=True)
class TensorType:
    """The static type of a tensor: a shape whose dims may be None, and a dtype."""

    shape: Shape
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @cached_property
    def is_static(self) -> bool:
        return None not in self.shape

    @cached_property
    def _text(self) -> str:
        return f"{short(self.dtype)}[{','.join('?' if d is None else str(d) for d in self.shape)}]"

    def __str__(self) -> str:
        return self._text


def fmt_shape(shape: Shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def broadcast_shapes(*shapes: Shape) -> Shape | None:
    """NumPy broadcasting over shapes with unknown dims; None when the shapes cannot broadcast.

    An unknown dim against a known size k > 1 gives k (at run time it must be k or 1); against
    1 or another unknown it stays unknown.
    """
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        dims = [s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            return None
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def compatible(a: Shape, b: Shape) -> bool:
    """Same rank and no pair of known dims that differ."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def size(shape: Shape) -> int | None:
    """Number of elements, or None when a dim is unknown."""
    if any(d is None for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64))


def normalize_axes(axis, ndim: int, what: str) -> tuple[int, ...]:
    """``axis`` (None, int or sequence) as a sorted tuple of non-negative axes; None means all."""
    from ..errors import ShapeError

    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise ShapeError(f"{what}: axis {a!r} is out of range for a tensor of rank {ndim}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"{what}: repeated axis in {axis!r}")
    return tuple(sorted(out))
