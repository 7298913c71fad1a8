"""Shape ops: reshape transpose expand_dims squeeze broadcast_to concatenate stack split, basic
slicing (``x[...]``), take, one_hot, pad, and the ``*_like`` helpers autodiff uses when a shape is
only known at run time (``sum_like`` undoes broadcasting for every gradient).
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from ..dtypes import as_dtype
from ..errors import DTypeError, GraphError, ShapeError
from ..ir import Tensor, TensorType
from ..ir.types import broadcast_shapes, compatible, fmt_shape, normalize_axes, size
from .registry import SHAPE, OpDef, apply, register
from .state import as_tensor


def _reshape_to(g: Tensor, x: Tensor) -> Tensor:
    """g reshaped to x's shape: static when x's shape is known, else read at run time."""
    if x.type.is_static:
        return reshape(g, x.shape)
    return apply("reshape_like", g, x)


# -- reshape ----------------------------------------------------------------------------------
def _reshape_infer(x: TensorType, shape) -> TensorType:
    if builtins.sum(d == -1 for d in shape) > 1:
        raise ShapeError(f"at most one -1 is allowed in the new shape: got {shape}")
    known = math.prod(d for d in shape if d != -1)
    n = size(x.shape)
    if -1 not in shape:
        if n is not None and n != known:
            raise ShapeError(f"cannot reshape {n} elements {fmt_shape(x.shape)} into {fmt_shape(shape)}")
        return TensorType(shape, x.dtype)
    if n is None:
        return TensorType(tuple(None if d == -1 else d for d in shape), x.dtype)
    if known == 0 or n % known:
        raise ShapeError(f"cannot reshape {n} elements {fmt_shape(x.shape)} into {fmt_shape(shape)}")
    return TensorType(tuple(n // known if d == -1 else d for d in shape), x.dtype)


register(OpDef("reshape", SHAPE, _reshape_infer, lambda xp, x, shape: xp.reshape(x, shape),
               lambda g, o, x, shape: (_reshape_to(g, x),), doc="Same data, new shape (-1: inferred)."))  # fmt: skip
def _reshape_like_infer(x: TensorType, ref: TensorType) -> TensorType:
    n, m = size(x.shape), size(ref.shape)
    if n is not None and m is not None and n != m:
        raise ShapeError(f"cannot reshape {n} elements {fmt_shape(x.shape)} into {fmt_shape(ref.shape)}")
    return TensorType(ref.shape, x.dtype)


register(OpDef("reshape_like", SHAPE, _reshape_like_infer,
               lambda xp, x, ref: xp.reshape(x, ref.shape),
               lambda g, o, x, ref: (_reshape_to(g, x), None), nograd_inputs=(1,),
               doc="x reshaped to ref's run-time shape."))  # fmt: skip


def reshape(a, newshape, name=None) -> Tensor:
    """Same data in a new shape, like ``np.reshape``; one dim may be -1."""
    a = as_tensor(a)
    shape = (newshape,) if isinstance(newshape, (int, np.integer)) else tuple(newshape)
    if any(not isinstance(d, (int, np.integer)) or d < -1 for d in shape):
        raise ShapeError(f"reshape: new shape must hold ints >= -1: got {newshape!r}")
    shape = tuple(int(d) for d in shape)
    if shape == a.shape and name is None:
        return a
    return apply("reshape", a, name=name, shape=shape)


# -- transpose, expand_dims, squeeze ---------------------------------------------------------
def _transpose_infer(x: TensorType, axes) -> TensorType:
    return TensorType(tuple(x.shape[a] for a in axes), x.dtype)


register(OpDef("transpose", SHAPE, _transpose_infer, lambda xp, x, axes: xp.transpose(x, axes),
               lambda g, o, x, axes: (transpose(g, tuple(np.argsort(axes).tolist())),),
               doc="Permute the axes."))  # fmt: skip


def transpose(a, axes=None, name=None) -> Tensor:
    """Permute the axes, like ``np.transpose`` (reverses them when ``axes`` is None)."""
    a = as_tensor(a)
    axes = tuple(range(a.ndim))[::-1] if axes is None else tuple(int(x) for x in axes)
    perm = tuple(x + a.ndim if x < 0 else x for x in axes)  # out-of-range axes stay out of range
    if sorted(perm) != list(range(a.ndim)):
        raise ShapeError(f"transpose '{a.name}': axes must be a permutation of 0..{a.ndim - 1}: got {axes}")
    return apply("transpose", a, name=name, axes=perm)


def expand_dims(a, axis, name=None) -> Tensor:
    """Insert size-1 dims at ``axis`` (int or tuple), like ``np.expand_dims``."""
    a = as_tensor(a)
    axes = normalize_axes(axis, a.ndim + (1 if isinstance(axis, (int, np.integer)) else len(axis)), "expand_dims")
    shape, it = [], iter(a.shape)
    for i in range(a.ndim + len(axes)):
        shape.append(1 if i in axes else next(it))
    if a.type.is_static:
        return apply("reshape", a, name=name, shape=tuple(shape))
    return apply("expand_dims", a, name=name, axes=axes)


register(OpDef(
    "expand_dims", SHAPE,
    lambda x, axes: TensorType(_expanded(x.shape, axes), x.dtype),
    lambda xp, x, axes: xp.expand_dims(x, axes),
    lambda g, o, x, axes: (_reshape_to(g, x),), doc="Insert size-1 dims.",
))  # fmt: skip


def _expanded(shape, axes):
    out, it = [], iter(shape)
    for i in range(len(shape) + len(axes)):
        out.append(1 if i in axes else next(it))
    return tuple(out)


def squeeze(a, axis=None, name=None) -> Tensor:
    """Remove size-1 dims (all known size-1 dims when ``axis`` is None), like ``np.squeeze``."""
    a = as_tensor(a)
    if axis is None:
        axes = tuple(i for i, d in enumerate(a.shape) if d == 1)
    else:
        axes = normalize_axes(axis, a.ndim, "squeeze")
    for i in axes:
        if a.shape[i] not in (1, None):
            raise ShapeError(
                f"squeeze '{a.name}': axis {i} has size {a.shape[i]}, expected 1: got {fmt_shape(a.shape)}"
            )
    if a.type.is_static:
        return apply("reshape", a, name=name, shape=tuple(d for i, d in enumerate(a.shape) if i not in axes))
    return apply("squeeze", a, name=name, axes=axes)


register(OpDef(
    "squeeze", SHAPE, lambda x, axes: TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype),
    lambda xp, x, axes: xp.squeeze(x, axes), lambda g, o, x, axes: (_reshape_to(g, x),),
    doc="Remove size-1 dims.",
))  # fmt: skip


# -- broadcasting and its inverse ------------------------------------------------------------
def _broadcast_infer(x: TensorType, shape) -> TensorType:
    out = broadcast_shapes(x.shape, shape)
    if out is None or len(x.shape) > len(shape) or not compatible(out, shape):
        raise ShapeError(f"cannot broadcast {fmt_shape(x.shape)} to {fmt_shape(shape)}")
    return TensorType(tuple(shape), x.dtype)


register(OpDef("broadcast_to", SHAPE, _broadcast_infer, lambda xp, x, shape: xp.broadcast_to(x, shape),
               lambda g, o, x, shape: (g,), doc="x repeated along broadcast dims (a view)."))  # fmt: skip
register(OpDef(
    "broadcast_like", SHAPE, lambda x, ref: _broadcast_infer(x, ref.shape),
    lambda xp, x, ref: xp.broadcast_to(x, ref.shape), lambda g, o, x, ref: (g, None),
    nograd_inputs=(1,), doc="x broadcast to ref's run-time shape.",
))  # fmt: skip


def _sum_like_infer(x: TensorType, ref: TensorType) -> TensorType:
    _broadcast_infer(ref, x.shape)  # ref must broadcast to x: sum_like undoes exactly that
    return TensorType(ref.shape, x.dtype)


def _sum_like_kernel(xp, x, ref):
    lead = x.ndim - ref.ndim
    axes = tuple(range(lead)) + tuple(
        i + lead for i, d in enumerate(ref.shape) if d == 1 and x.shape[i + lead] != 1
    )
    out = xp.sum(x, axis=axes, keepdims=True) if axes else x
    return xp.reshape(out, ref.shape)


register(OpDef(
    "sum_like", SHAPE, _sum_like_infer, _sum_like_kernel,
    lambda g, o, x, ref: (broadcast_like(g, x), None), nograd_inputs=(1,),
    doc="x summed over the dims that broadcasting to it added: the inverse of broadcast_like.",
))  # fmt: skip


def broadcast_to(array, shape, name=None) -> Tensor:
    """``array`` broadcast to a static ``shape``, like ``np.broadcast_to``."""
    array = as_tensor(array)
    shape = tuple(int(d) for d in ((shape,) if isinstance(shape, (int, np.integer)) else shape))
    return apply("broadcast_to", array, name=name, shape=shape)


def broadcast_like(x: Tensor, ref: Tensor, name=None) -> Tensor:
    """x broadcast to ref's shape (read at run time when not static)."""
    if x.shape == ref.shape:
        return x
    if ref.type.is_static:
        return apply("broadcast_to", x, name=name, shape=ref.shape)
    return apply("broadcast_like", x, ref, name=name)


def sum_like(x: Tensor, ref: Tensor) -> Tensor:
    """x summed down to ref's shape (undoing broadcasting); x itself when shapes already agree."""
    if x.shape == ref.shape and ref.type.is_static:
        return x
    return apply("sum_like", x, ref)


# -- concatenate, stack, split ---------------------------------------------------------------
def _concat_infer(*xs: TensorType, axis) -> TensorType:
    first = xs[0]
    for x in xs[1:]:
        if x.ndim != first.ndim or not compatible(
            x.shape[:axis] + x.shape[axis + 1 :], first.shape[:axis] + first.shape[axis + 1 :]
        ):
            got = ", ".join(fmt_shape(t.shape) for t in xs)
            raise ShapeError(f"shapes must agree except on axis {axis}: got {got}")
    shape = list(broadcast_shapes(*(t.shape[:axis] + (1,) + t.shape[axis + 1 :] for t in xs)))
    dims = [x.shape[axis] for x in xs]
    shape[axis] = None if None in dims else builtins.sum(dims)
    return TensorType(tuple(shape), np.result_type(*(x.dtype for x in xs)))  # what np.concatenate gives


def _concat_grad(g, o, *xs, axis):
    if all(x.shape[axis] is not None for x in xs):
        bounds = tuple(np.cumsum([x.shape[axis] for x in xs])[:-1].tolist())
        parts = split(g, bounds, axis) if len(xs) > 1 else (g,)
    else:
        parts = apply("split_like", g, *xs, axis=axis)
    return tuple(parts)


register(OpDef("concatenate", SHAPE, _concat_infer, lambda xp, *xs, axis: xp.concatenate(xs, axis=axis),
               _concat_grad, doc="Join tensors along an existing axis."))  # fmt: skip


def concatenate(arrays, axis=0, name=None) -> Tensor:
    """Join tensors along an existing axis, like ``np.concatenate``."""
    arrays = [as_tensor(a) for a in arrays]
    if not arrays:
        raise ShapeError("concatenate: needs at least one tensor")
    (axis,) = normalize_axes(axis, arrays[0].ndim, "concatenate")
    return apply("concatenate", *arrays, name=name, axis=axis)


def stack(arrays, axis=0, name=None) -> Tensor:
    """Join tensors along a new axis, like ``np.stack``."""
    arrays = [as_tensor(a) for a in arrays]
    if not arrays:
        raise ShapeError("stack: needs at least one tensor")
    (axis,) = normalize_axes(axis, arrays[0].ndim + 1, "stack")
    return concatenate([expand_dims(a, axis) for a in arrays], axis, name=name)


def _split_sizes(dim, sections):
    if isinstance(sections, int):
        if dim is not None and dim % sections:
            raise ShapeError(f"axis of size {dim} does not split into {sections} equal sections")
        return [None if dim is None else dim // sections] * sections
    if dim is None:
        return [None] * (len(sections) + 1)
    bounds = [0, *sections, dim]  # np.split slices x[a:b] between consecutive points
    return [len(range(*slice(a, b).indices(dim))) for a, b in zip(bounds[:-1], bounds[1:])]


def _split_infer(x: TensorType, sections, axis):
    return tuple(TensorType(x.shape[:axis] + (n,) + x.shape[axis + 1 :], x.dtype)
                 for n in _split_sizes(x.shape[axis], sections))  # fmt: skip


def _fill(gs, outs):
    from .elementwise import zeros_like

    return [zeros_like(o) if g is None else g for g, o in zip(gs, outs)]


register(OpDef(
    "split", SHAPE, _split_infer,
    lambda xp, x, sections, axis: tuple(xp.split(x, sections if isinstance(sections, int) else list(sections), axis)),
    lambda g, o, x, sections, axis: (concatenate(_fill(g, o), axis),), doc="Split into several tensors.",
))  # fmt: skip
register(OpDef(
    "split_like", SHAPE,
    lambda g, *refs, axis: tuple(TensorType(g.shape[:axis] + (r.shape[axis],) + g.shape[axis + 1 :], g.dtype)
                                 for r in refs),
    lambda xp, g, *refs, axis: tuple(xp.split(g, np.cumsum([r.shape[axis] for r in refs])[:-1].tolist(), axis)),
    lambda G, o, g, *refs, axis: (concatenate(_fill(G, o), axis), *(None for _ in refs)),
    nograd_inputs=tuple(range(1, 256)), doc="g split into pieces as long as each ref along axis.",
))  # fmt: skip


def split(ary, indices_or_sections, axis=0, name=None) -> tuple:
    """Split into several tensors, like ``np.split`` (equal sections or split points)."""
    ary = as_tensor(ary)
    (axis,) = normalize_axes(axis, ary.ndim, "split")
    sections = indices_or_sections
    sections = int(sections) if isinstance(sections, (int, np.integer)) else tuple(int(i) for i in sections)
    if isinstance(sections, int) and sections < 1:
        raise ShapeError(f"split: number of sections must be >= 1: got {sections}")
    return tuple(apply("split", ary, name=name, sections=sections, axis=axis))


# -- basic slicing ---------------------------------------------------------------------------
def _normalize_index(index, ndim: int, what: str) -> tuple:
    """x[...] index as a tuple of ("i", k) / ("s", start, stop, step) / ("n",) entries."""
    items = index if isinstance(index, tuple) else (index,)
    if builtins.sum(i is Ellipsis for i in items) > 1:
        raise GraphError(f"{what}: an index can only have a single ellipsis")
    used = builtins.sum(1 for i in items if i is not None and i is not Ellipsis)
    if used > ndim:
        raise ShapeError(f"{what}: too many indices ({used}) for a tensor of rank {ndim}")
    out = []
    for i in items:
        if i is Ellipsis:
            out.extend([("s", None, None, None)] * (ndim - used))
        elif i is None:
            out.append(("n",))
        elif isinstance(i, (int, np.integer)) and not isinstance(i, bool):
            out.append(("i", int(i)))
        elif isinstance(i, slice):
            parts = (i.start, i.stop, i.step)
            if any(p is not None and not isinstance(p, (int, np.integer)) for p in parts):
                raise GraphError(f"{what}: slice bounds must be ints: got {i}")
            if i.step == 0:
                raise GraphError(f"{what}: slice step cannot be zero")
            out.append(("s", *(None if p is None else int(p) for p in parts)))
        else:
            raise GraphError(
                f"{what}: only basic indexing (ints, slices, None, ...) is supported: got "
                f"{type(i).__name__}; use graphc.take for integer-array indexing"
            )
    consumed = builtins.sum(1 for e in out if e[0] != "n")
    out.extend([("s", None, None, None)] * (ndim - consumed))
    return tuple(out)


def _index_tuple(index) -> tuple:
    return tuple(slice(*e[1:]) if e[0] == "s" else (None if e[0] == "n" else e[1]) for e in index)


def _getitem_infer(x: TensorType, index) -> TensorType:
    shape, dim = [], 0
    for e in index:
        if e[0] == "n":
            shape.append(1)
            continue
        d = x.shape[dim]
        dim += 1
        if e[0] == "i":
            if d is not None and not -d <= e[1] < d:
                raise ShapeError(f"index {e[1]} is out of bounds for axis {dim - 1} with size {d}")
        else:
            shape.append(None if d is None else len(range(*slice(*e[1:]).indices(d))))
    return TensorType(tuple(shape), x.dtype)


register(OpDef("getitem", SHAPE, _getitem_infer, lambda xp, x, index: x[_index_tuple(index)],
               lambda g, o, x, index: (apply("setitem_zeros", g, x, index=index), None),
               doc="Basic slicing x[...] (a view)."))  # fmt: skip


def _setitem_zeros_kernel(xp, g, ref, index):
    out = xp.zeros(ref.shape, dtype=g.dtype)
    out[_index_tuple(index)] = g
    return out


register(OpDef(
    "setitem_zeros", SHAPE, lambda g, ref, index: TensorType(ref.shape, g.dtype), _setitem_zeros_kernel,
    lambda G, o, g, ref, index: (apply("getitem", G, index=index), None), nograd_inputs=(1,),
    doc="Zeros of ref's shape with g written at index: the gradient of x[index].",
))  # fmt: skip


def getitem(x, index, name=None) -> Tensor:
    """Basic slicing ``x[index]``: ints, slices, None (new axis) and Ellipsis."""
    x = as_tensor(x)
    if isinstance(index, Tensor):
        raise GraphError(f"getitem '{x.name}': tensor indices are not basic slicing; use graphc.take")
    return apply("getitem", x, name=name, index=_normalize_index(index, x.ndim, f"getitem '{x.name}'"))


# -- take, one_hot, pad ----------------------------------------------------------------------
def _take_infer(a: TensorType, idx: TensorType, axis) -> TensorType:
    if idx.dtype.kind not in "iu":
        raise DTypeError(f"indices must be integers: got {idx.dtype}")
    return TensorType(a.shape[:axis] + idx.shape + a.shape[axis + 1 :], a.dtype)


def _take_grad_kernel(xp, g, idx, ref, axis):
    out = xp.zeros(ref.shape, dtype=g.dtype)
    moved = xp.moveaxis(out, axis, 0)
    gm = xp.moveaxis(g.reshape(g.shape[:axis] + (-1,) + g.shape[axis + idx.ndim :]), axis, 0)
    xp.add.at(moved, idx.reshape(-1), gm)
    return out


register(OpDef("take", SHAPE, _take_infer, lambda xp, a, idx, axis: xp.take(a, idx, axis=axis),
               lambda g, o, a, idx, axis: (apply("take_grad", g, idx, a, axis=axis), None),
               nograd_inputs=(1,), doc="Gather slices along axis by integer indices."))  # fmt: skip
register(OpDef(
    "take_grad", SHAPE, lambda g, idx, ref, axis: TensorType(ref.shape, g.dtype), _take_grad_kernel,
    lambda G, o, g, idx, ref, axis: (apply("take", G, idx, axis=axis), None, None), nograd_inputs=(1, 2),
    doc="Scatter-add g into zeros of ref's shape: the gradient of take.",
))  # fmt: skip


def take(a, indices, axis=None, name=None) -> Tensor:
    """Gather along ``axis`` by integer indices, like ``np.take`` (flattened when axis is None)."""
    a = as_tensor(a)
    indices = as_tensor(indices)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    (axis,) = normalize_axes(axis, a.ndim, "take")
    return apply("take", a, indices, name=name, axis=axis)


register(OpDef(
    "one_hot", SHAPE, lambda idx, depth, dtype: TensorType(idx.shape + (depth,), dtype),
    lambda xp, idx, depth, dtype: (idx[..., None] == xp.arange(depth)).astype(dtype),
    differentiable=False, doc="One-hot rows of length depth for integer indices.",
))  # fmt: skip


def one_hot(indices, depth: int, dtype="float32", name=None) -> Tensor:
    """``(..., depth)`` rows with a 1 at each index (out-of-range indices give all zeros)."""
    indices = as_tensor(indices)
    if indices.dtype.kind not in "iu":
        raise DTypeError(f"one_hot '{indices.name}': indices must be integers: got {indices.dtype}")
    if int(depth) < 0:
        raise ShapeError(f"one_hot '{indices.name}': depth must be >= 0: got {depth}")
    return apply("one_hot", indices, name=name, depth=int(depth), dtype=as_dtype(dtype))


def _pad_infer(x: TensorType, pad_width, constant_values) -> TensorType:
    return TensorType(tuple(None if d is None else d + a + b for d, (a, b) in zip(x.shape, pad_width)), x.dtype)


register(OpDef(
    "pad", SHAPE, _pad_infer,
    lambda xp, x, pad_width, constant_values: xp.pad(x, pad_width, constant_values=constant_values),
    lambda g, o, x, pad_width, constant_values: (
        getitem(g, tuple(slice(a, -b if b else None) for a, b in pad_width)),),
    doc="Pad with a constant value.",
))  # fmt: skip


def pad(array, pad_width, constant_values=0, name=None) -> Tensor:
    """Pad with a constant, like ``np.pad(array, pad_width, constant_values=...)``."""
    array = as_tensor(array)
    try:
        pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (array.ndim, 2))
    except ValueError:
        raise ShapeError(f"pad '{array.name}': pad_width must broadcast to ({array.ndim}, 2): "
                         f"got {pad_width!r}") from None  # fmt: skip
    if (pw < 0).any():
        raise ShapeError(f"pad '{array.name}': pad widths must be >= 0: got {pad_width!r}")
    pw = tuple((int(a), int(b)) for a, b in pw)
    return apply("pad", array, name=name, pad_width=pw, constant_values=float(constant_values))
