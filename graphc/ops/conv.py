"""Convolution and pooling over NCHW images, with PyTorch's semantics: conv2d (cross-correlation,
OIHW weights, groups), max_pool2d and avg_pool2d, and the ops their gradients are made of.

Kernels are im2col + GEMM on strided views: ``_windows`` is a view of every (kh, kw) window, one
copy makes it the (N, C*kh*kw, Ho*Wo) column matrix, and one batched matmul multiplies it by the
weights straight into NCHW order. The gradients are ops too (col2im for the input, or at stride 1
a transposed convolution; a GEMM over the batch for the weights), each with its own gradient
rule, so second derivatives work. Pooling runs one vectorized pass per window tap.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir import Tensor, TensorType
from ..ir.types import compatible, fmt_shape
from . import conv_c
from .elementwise import identity
from .reduce import mean
from .registry import FUSED, OPAQUE, OpDef, apply, register
from .shape import reshape
from .state import as_tensor


# -- window geometry ---------------------------------------------------------------------------
def _pair(value, what: str, low: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low for v in pair):
        raise ShapeError(f"{what} must be an int >= {low} or a pair of them: got {value!r}")
    return int(pair[0]), int(pair[1])


def _out_dim(size, k, stride, pad, dilation):
    """Output length of a window sliding over ``size`` (+ ``pad`` in total); None when unknown."""
    return None if size is None else (size + pad - dilation * (k - 1) - 1) // stride + 1


def _out_hw(h, w, kernel, stride, padding, dilation):
    (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = kernel, stride, padding, dilation
    return _out_dim(h, kh, sh, pt + pb, dh), _out_dim(w, kw, sw, pl + pr, dw)


def _check_out(x: TensorType, out_hw, kernel, padding, dilation) -> None:
    if any(d is not None and d < 1 for d in out_hw):
        raise ShapeError(f"the window {kernel[0]}x{kernel[1]} (dilation {dilation}) is larger than the padded "
                         f"input: got {fmt_shape(x.shape)} with padding {padding}")  # fmt: skip


def _pad(xp, x, padding, value):
    """x with its two spatial dims padded by ((top, bottom), (left, right)) ``value``; x itself if none."""
    (pt, pb), (pl, pr) = padding
    if not (pt or pb or pl or pr):
        return x
    n, c, h, w = x.shape
    out = xp.empty((n, c, h + pt + pb, w + pl + pr), x.dtype)
    out[:, :, :pt] = value
    out[:, :, h + pt :] = value
    out[:, :, pt : h + pt, :pl] = value
    out[:, :, pt : h + pt, w + pl :] = value
    out[:, :, pt : h + pt, pl : w + pl] = x
    return out


def _windows(xp, xpad, kernel, stride, dilation, out_hw):
    """A (N, C, kh, kw, Ho, Wo) view: [n, c, r, q, i, j] is xpad[n, c, i*sh + r*dh, j*sw + q*dw].

    Windows overlap, so the view must only be read (it is copied at once). as_strided exists in
    NumPy and CuPy alike; sliding_window_view would cost 15 us of argument checks per call.
    """
    sn, sc, s_h, s_w = xpad.strides
    shape = (*xpad.shape[:2], *kernel, *out_hw)
    strides = (sn, sc, s_h * dilation[0], s_w * dilation[1], s_h * stride[0], s_w * stride[1])
    return xp.lib.stride_tricks.as_strided(xpad, shape, strides)


def _tap(a, r, q, stride, dilation, out_hw):
    """The strided slice of a padded image that kernel tap (r, q) reads for every output pixel."""
    top, left = r * dilation[0], q * dilation[1]
    return a[:, :, top : top + stride[0] * (out_hw[0] - 1) + 1 : stride[0],
             left : left + stride[1] * (out_hw[1] - 1) + 1 : stride[1]]  # fmt: skip


def _padded_zeros(xp, shape, padding, dtype, out):
    """Zeros of an image shape plus padding: ``out`` itself when there is no padding."""
    (pt, pb), (pl, pr) = padding
    if out is not None and not (pt or pb or pl or pr):
        out[...] = 0
        return out
    return xp.zeros((*shape[:2], shape[2] + pt + pb, shape[3] + pl + pr), dtype)


def _crop(xp, a, padding, shape, out):
    """The unpadded region of a padded image, in ``out`` (or compact) when there was padding."""
    (pt, _), (pl, _) = padding
    if a is out or a.shape == tuple(shape) and out is None:
        return a
    region = a[:, :, pt : pt + shape[2], pl : pl + shape[3]]
    if out is None:
        return xp.ascontiguousarray(region)
    out[...] = region
    return out


# -- convolution ---------------------------------------------------------------------------------
def _conv_infer(x: TensorType, w: TensorType, stride, padding, dilation, groups) -> TensorType:
    if x.ndim != 4 or w.ndim != 4:
        raise ShapeError(
            f"input must be NCHW and weight OIHW (rank 4): got {fmt_shape(x.shape)} and {fmt_shape(w.shape)}"
        )
    if x.dtype.kind != "f" or x.dtype != w.dtype:
        raise DTypeError(f"input and weight must have the same float dtype: got {x.dtype} and {w.dtype}")
    o, cg, kh, kw = w.shape
    if None in (cg, kh, kw):
        raise ShapeError(f"the weight's channel and kernel dims must be known: got {fmt_shape(w.shape)}")
    if o is not None and o % groups:
        raise ShapeError(f"{o} output channels do not split into {groups} groups")
    if x.shape[1] is not None and x.shape[1] != cg * groups:
        raise ShapeError(f"input has {x.shape[1]} channels, expected {cg * groups} (weight {fmt_shape(w.shape)}, "
                         f"groups={groups}): got input {fmt_shape(x.shape)}")  # fmt: skip
    out_hw = _out_hw(x.shape[2], x.shape[3], (kh, kw), stride, padding, dilation)
    _check_out(x, out_hw, (kh, kw), padding, dilation)
    return TensorType((x.shape[0], o, *out_hw), x.dtype)


def _columns(xp, x, kernel, stride, padding, dilation, groups, batch_inner: bool = False):
    """im2col: the (N, groups, C/groups * kh * kw, Ho * Wo) column matrix of x (one compact copy);
    ``batch_inner`` (groups 1): the (C * kh * kw, N * Ho * Wo) matrix, for one GEMM over the batch."""
    n, c = x.shape[:2]
    xpad = _pad(xp, x, padding, 0)
    out_hw = _out_hw(x.shape[2], x.shape[3], kernel, stride, padding, dilation)
    windows = _windows(xp, xpad, kernel, stride, dilation, out_hw)  # (N, C, kh, kw, Ho, Wo)
    if batch_inner:
        cols = xp.empty((c, *kernel, n, *out_hw), x.dtype)
        cols[...] = windows.transpose(1, 2, 3, 0, 4, 5)
        return cols.reshape(c * kernel[0] * kernel[1], -1), out_hw
    if kernel == (1, 1) and stride == (1, 1):  # 1x1 convolution: the image is its own column matrix
        return xpad.reshape(n, groups, c // groups, -1), out_hw
    cols = xp.empty((n, c, *kernel, *out_hw), x.dtype)
    cols[...] = windows
    return cols.reshape(n, groups, -1, out_hw[0] * out_hw[1]), out_hw


# Stride-1 "row form": seen over whole rows of the padded width Wp, window tap (r, q) of every
# output pixel of an (n, c) image is one contiguous run of the flat padded image (from offset
# r*dh*Wp + q*dw). Outputs are then Ho x Wp: the last Wp - Wo columns of each row are windows that
# wrap into the next image row, computed and dropped (or zero in a gradient). im2col and col2im
# become copies and adds of long runs, which NumPy moves 3-5x faster than (Ho, Wo) windows of
# short rows; the price is cropping or padding the output side (and Wp/Wo more GEMM work), so
# the row form pays when the column matrix has many more rows than the output has channels.
def _row_form_pays(channels: int, out_channels: int, kernel, stride) -> bool:
    return stride == (1, 1) and kernel != (1, 1) and channels * kernel[0] * kernel[1] >= 2 * out_channels


def _row_columns(xp, x, kernel, padding, dilation, groups, batch_inner: bool = False):
    """Row-form im2col: (N, groups, C/groups * kh * kw, Ho * Wp), one copy of long runs, with
    cols[n, c, r, q, i * Wp + j] = xpad[n, c, i + r*dh, j + q*dw] for every j < Wp;
    ``batch_inner`` (groups 1): (C * kh * kw, N * Ho * Wp), for one GEMM over the batch."""
    xpad = xp.ascontiguousarray(_pad(xp, x, padding, 0))  # a tap is a run of row-major images
    n, c, hp, wp = xpad.shape
    (kh, kw), (dh, dw) = kernel, dilation
    ho, wo = hp - dh * (kh - 1), wp - dw * (kw - 1)
    run = (ho - 1) * wp + wo  # past the last output pixel a run would leave the image
    sn, sc, sh, sw = xpad.strides
    shape, strides = (n, c, kh, kw, run), (sn, sc, sh * dh, sw * dw, sw)
    if batch_inner:  # the batch axis moved in front of the runs
        shape, strides = shape[1:4] + shape[:1] + shape[4:], strides[1:4] + strides[:1] + strides[4:]
    cols = xp.empty((*shape[:4], ho * wp), x.dtype)
    cols[..., :run] = xp.lib.stride_tricks.as_strided(xpad, shape, strides)
    cols[..., run:] = 0  # (dropped outputs, but kept finite)
    if batch_inner:
        return cols.reshape(c * kh * kw, -1), (ho, wo), wp
    return cols.reshape(n, groups, -1, ho * wp), (ho, wo), wp


def _to_rows(xp, g, wp: int, batch_inner: bool = False):
    """An output-shaped g (N, O, Ho, Wo) in row form (N, O, Ho * Wp), zero in the dropped columns;
    ``batch_inner``: (O, N * Ho * Wp)."""
    n, o, ho, wo = g.shape
    if batch_inner:
        rows = xp.zeros((o, n, ho, wp), g.dtype)
        rows[..., :wo] = xp.swapaxes(g, 0, 1)
        return rows.reshape(o, -1)
    rows = xp.zeros((n, o, ho, wp), g.dtype)
    rows[..., :wo] = g
    return rows.reshape(n, o, ho * wp)


def _conv_kernel(xp, x, w, stride, padding, dilation, groups, out=None):
    n, o = x.shape[0], w.shape[0]
    wg = w.reshape(groups, o // groups, -1)
    if _row_form_pays(x.shape[1], o, w.shape[2:], stride):
        cols, (ho, wo), wp = _row_columns(xp, x, w.shape[2:], padding, dilation, groups)
        if out is None:
            out = xp.empty((n, o, ho, wo), x.dtype)
        out[...] = xp.matmul(wg, cols).reshape(n, o, ho, wp)[..., :wo]
        return out
    cols, (ho, wo) = _columns(xp, x, w.shape[2:], stride, padding, dilation, groups)
    if out is None:
        out = xp.empty((n, o, ho, wo), x.dtype)
    # (groups, O/g, K) @ (N, groups, K, P): one matmul call, written in NCHW order
    xp.matmul(wg, cols, out=out.reshape(n, groups, o // groups, ho * wo))
    return out


def _check_output_grad(g: TensorType, want: TensorType) -> None:
    """A convolution gradient's incoming g must have the type of the convolution's output."""
    if g.dtype != want.dtype or not compatible(want.shape, g.shape):
        raise ShapeError(f"gradient {TensorType(g.shape, g.dtype)} does not match the convolution's output {want}")


def _conv_grad_input_infer(g: TensorType, w: TensorType, ref: TensorType, **attrs) -> TensorType:
    _check_output_grad(g, _conv_infer(ref, w, **attrs))
    return TensorType(ref.shape, g.dtype)


def _conv_grad_input_kernel(xp, g, w, ref, stride, padding, dilation, groups, out=None):
    """col2im: scatter-add the columns W^T g into the padded image, one strided add per tap (in row
    form when that pays); with stride 1 and no more output than input channels, the cheaper
    transposed convolution instead."""
    n, o, ho, wo = g.shape
    kh, kw = w.shape[2:]
    full = tuple((d * (k - 1) - a, d * (k - 1) - b) for k, d, (a, b) in zip((kh, kw), dilation, padding))
    if stride == (1, 1) and o <= ref.shape[1] and min(min(p) for p in full) >= 0:
        # a full correlation of g with the flipped weights, input and output channels swapped per group
        wg = w.reshape(groups, o // groups, -1, kh, kw)
        wt = xp.ascontiguousarray(xp.swapaxes(wg, 1, 2)[..., ::-1, ::-1]).reshape(ref.shape[1], o // groups, kh, kw)
        return _conv_kernel(xp, g, wt, stride, full, dilation, groups, out)
    wt = xp.ascontiguousarray(xp.swapaxes(w.reshape(groups, o // groups, -1), 1, 2))  # (groups, K, O/g)
    c = ref.shape[1]
    if _row_form_pays(c, o, (kh, kw), stride):  # one add of long runs per tap into the flat image
        (pt, pb), (pl, pr) = padding
        hp, wp = ref.shape[2] + pt + pb, ref.shape[3] + pl + pr
        if groups == 1:  # one GEMM over the whole batch: 64 small ones run at a third of BLAS speed
            rows = _to_rows(xp, g, wp, batch_inner=True)
            cols = xp.swapaxes(xp.dot(wt[0], rows).reshape(c, kh * kw, n, ho * wp), 0, 2)
        else:
            cols = xp.matmul(wt, _to_rows(xp, g, wp).reshape(n, groups, o // groups, -1)).reshape(n, c, kh * kw, -1)
            cols = xp.swapaxes(cols, 1, 2)  # (N, taps, C, Ho * Wp), as the one-GEMM form
        dx = _padded_zeros(xp, ref.shape, padding, g.dtype, out if out is None or out.flags.c_contiguous else None)
        flat = dx.reshape(n, c, hp * wp)
        run = (ho - 1) * wp + wo
        for t in range(kh * kw):
            start = t // kw * dilation[0] * wp + t % kw * dilation[1]
            flat[:, :, start : start + run] += cols[:, t, :, :run]
        return _crop(xp, dx, padding, ref.shape, out)
    cols = xp.matmul(wt, g.reshape(n, groups, o // groups, ho * wo))  # (N, groups, K, P)
    cols = cols.reshape(n, c, kh, kw, ho, wo)
    dx = _padded_zeros(xp, ref.shape, padding, g.dtype, out)
    for r in range(kh):
        for q in range(kw):
            _tap(dx, r, q, stride, dilation, (ho, wo))[...] += cols[:, :, r, q]
    return _crop(xp, dx, padding, ref.shape, out)


def _conv_grad_weight_infer(x: TensorType, g: TensorType, ref: TensorType, **attrs) -> TensorType:
    _check_output_grad(g, _conv_infer(x, ref, **attrs))
    return TensorType(ref.shape, x.dtype)


def _conv_grad_weight_kernel(xp, x, g, ref, stride, padding, dilation, groups, out=None):
    """sum over the batch of (cols_n (K, P) @ g_n^T (P, O))^T: one batched matmul, then a sum
    (this orientation of the small GEMMs runs up to 1.6x faster than g_n @ cols_n^T)."""
    n, o = g.shape[:2]
    if groups == 1:  # one GEMM whose inner dimension runs over every pixel of every image
        return _grad_weight_one_gemm(xp, x, g, ref, stride, padding, dilation, out)
    if _row_form_pays(x.shape[1], o, ref.shape[2:], stride):  # g zero in the dropped columns
        cols, _, wp = _row_columns(xp, x, ref.shape[2:], padding, dilation, groups)
        g = _to_rows(xp, g, wp)
    else:
        cols, _ = _columns(xp, x, ref.shape[2:], stride, padding, dilation, groups)
    per_example = xp.matmul(cols, xp.swapaxes(g.reshape(n, groups, o // groups, -1), 2, 3))  # (N, groups, K, O/g)
    total = xp.ascontiguousarray(xp.swapaxes(per_example.sum(axis=0), 1, 2)).reshape(ref.shape)
    if out is None:
        return total
    out[...] = total
    return out


def _grad_weight_one_gemm(xp, x, g, ref, stride, padding, dilation, out):
    """dW (O, K) = g (O, N*P) @ cols (K, N*P)^T: im2col writes its columns batch-inner, g is
    transposed once, and one GEMM sums over the images (2x faster than a GEMM per image and a sum)."""
    o, kernel = g.shape[1], ref.shape[2:]
    if _row_form_pays(x.shape[1], o, kernel, stride):  # g zero in the dropped columns
        cols, _, wp = _row_columns(xp, x, kernel, padding, dilation, 1, batch_inner=True)
        gt = _to_rows(xp, g, wp, batch_inner=True)
    else:
        cols, _ = _columns(xp, x, kernel, stride, padding, dilation, 1, batch_inner=True)
        gt = xp.ascontiguousarray(xp.swapaxes(g, 0, 1)).reshape(o, -1)
    total = xp.dot(gt, cols.T).reshape(ref.shape)
    if out is None:
        return total
    out[...] = total
    return out


# <g, conv(x, w)> is bilinear in (x, w): grad_input(g, w) = J_x^T g and grad_weight(x, g) = J_w^T g.
# Their own derivatives follow from <grad_input(g, w), G> = <g, conv(G, w)> and
# <grad_weight(x, g), G> = <g, conv(x, G)>.
register(OpDef(
    "conv2d", OPAQUE, _conv_infer, _conv_kernel,
    lambda g, o, x, w, **a: (apply("conv2d_grad_input", g, w, x, **a), apply("conv2d_grad_weight", x, g, w, **a)),
    takes_out=True, c_kernel=conv_c.conv2d,
    doc="2-D cross-correlation of NCHW images with OIHW weights (im2col + one batched GEMM).",
))  # fmt: skip
register(OpDef(
    "conv2d_grad_input", OPAQUE, _conv_grad_input_infer, _conv_grad_input_kernel,
    lambda G, o, g, w, ref, **a: (apply("conv2d", G, w, **a), apply("conv2d_grad_weight", G, g, w, **a), None),
    takes_out=True, nograd_inputs=(2,), c_kernel=conv_c.conv2d_grad_input,
    doc="The gradient of conv2d w.r.t. its input (col2im of W^T g); ref gives the shape.",
))  # fmt: skip
register(OpDef(
    "conv2d_grad_weight", OPAQUE, _conv_grad_weight_infer, _conv_grad_weight_kernel,
    lambda G, o, x, g, ref, **a: (apply("conv2d_grad_input", g, G, x, **a), apply("conv2d", x, G, **a), None),
    takes_out=True, nograd_inputs=(2,), c_kernel=conv_c.conv2d_grad_weight,
    doc="The gradient of conv2d w.r.t. its weight; ref gives the shape.",
))  # fmt: skip


def _conv_padding(padding, kernel, stride, dilation) -> tuple:
    """PyTorch's padding argument as ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise ShapeError(f"padding must be an int, a pair, 'same' or 'valid': got {padding!r}")
        if stride != (1, 1):
            raise ShapeError(f"padding='same' needs stride 1: got stride {stride}")
        if None in kernel:
            raise ShapeError(f"padding='same' needs known kernel dims: got {kernel}")
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]  # the extra pixel goes bottom/right
        return tuple((t // 2, t - t // 2) for t in total)
    ph, pw = _pair(padding, "padding", 0)
    return ((ph, ph), (pw, pw))


def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1, name=None) -> Tensor:
    """2-D convolution (cross-correlation) with PyTorch's ``conv2d`` semantics.

    Parameters
    ----------
    x : Tensor (N, C, H, W)
        The batch and spatial dims may be unknown (None).
    w : Tensor (O, C / groups, kh, kw)
    stride, dilation : int or (int, int)
    padding : int, (int, int), "same" or "valid"
        Zero padding on both sides of each spatial dim; "same" keeps H and W (stride 1 only; an
        odd total puts the extra pixel at the bottom/right, like PyTorch).
    groups : int
        Channels are split into this many independent groups.

    Returns
    -------
    Tensor (N, O, Ho, Wo), ``Ho = (H + pad_h - dilation*(kh-1) - 1) // stride + 1``.
    """
    x, w = as_tensor(x), as_tensor(w)
    label = f"conv2d '{name or x.name}'"
    try:
        stride, dilation = _pair(stride, "stride", 1), _pair(dilation, "dilation", 1)
        if not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ShapeError(f"groups must be an int >= 1: got {groups!r}")
        kernel = tuple(w.shape[2:]) if w.ndim == 4 else (1, 1)
        pads = _conv_padding(padding, kernel, stride, dilation)
    except ShapeError as e:
        raise ShapeError(f"{label}: {e}") from None
    return apply("conv2d", x, w, name=name, stride=stride, padding=pads, dilation=dilation, groups=int(groups))


# -- pooling -------------------------------------------------------------------------------------
def _pool_infer(x: TensorType, kernel, stride, padding) -> TensorType:
    if x.ndim != 4:
        raise ShapeError(f"input must be NCHW (rank 4): got {fmt_shape(x.shape)}")
    if x.dtype.kind != "f":
        raise DTypeError(f"needs a float input: got {x.dtype}")
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ShapeError(f"padding {padding} must be at most half the window {kernel}")
    pads = tuple((p, p) for p in padding)
    out_hw = _out_hw(x.shape[2], x.shape[3], kernel, stride, pads, (1, 1))
    _check_out(x, out_hw, kernel, padding, (1, 1))
    return TensorType((*x.shape[:2], *out_hw), x.dtype)


def _pool_geometry(x_shape, kernel, stride, padding):
    pads = tuple((p, p) for p in padding)
    return pads, _out_hw(x_shape[2], x_shape[3], kernel, stride, pads, (1, 1))


def _max_pool_kernel(xp, x, kernel, stride, padding, out=None):
    pads, out_hw = _pool_geometry(x.shape, kernel, stride, padding)
    xpad = _pad(xp, x, pads, -np.inf)
    out = xp.empty((*x.shape[:2], *out_hw), x.dtype) if out is None else out
    taps = [_tap(xpad, *divmod(t, kernel[1]), stride, (1, 1), out_hw) for t in range(kernel[0] * kernel[1])]
    if len(taps) == 1:
        out[...] = taps[0]
    else:  # one vectorized maximum per tap
        xp.maximum(taps[0], taps[1], out=out)
    for tap in taps[2:]:
        xp.maximum(out, tap, out=out)
    return out


def _first_max_routes(xp, x, kernel, stride, padding):
    """Yield (tap slice of a padded image, mask of the windows whose first maximum is that tap).

    Each tap of x is copied once into a compact plane (the only strided reads), so the window
    maximum and the branch-free per-tap tests run on contiguous arrays (NumPy's masked copies are
    10x slower): equal to the window maximum and not taken by an earlier tap. A window holding NaN
    routes nowhere. The mask buffer is reused: consume it before the next step.
    """
    pads, out_hw = _pool_geometry(x.shape, kernel, stride, padding)
    xpad = _pad(xp, x, pads, -np.inf)
    taps = [(lambda a, r=r, q=q: _tap(a, r, q, stride, (1, 1), out_hw)) for r, q in np.ndindex(*kernel)]
    planes = [xp.ascontiguousarray(tap(xpad)) for tap in taps]
    best = planes[0].copy()
    for p in planes[1:]:
        xp.maximum(best, p, out=best)
    mask = xp.empty(best.shape, bool)
    taken = xp.empty(best.shape, bool)
    for t, (tap, p) in enumerate(zip(taps, planes)):
        xp.equal(p, best, out=mask)
        if t:
            xp.greater(mask, taken, out=mask)  # and not taken
        if t == 0:
            xp.copyto(taken, mask)
        elif t < len(taps) - 1:
            xp.logical_or(taken, mask, out=taken)
        yield tap, mask


def _max_pool_grad_kernel(xp, x, g, kernel, stride, padding, out=None):
    """Each window's gradient goes to its first maximum: one masked product per tap."""
    pads, out_hw = _pool_geometry(x.shape, kernel, stride, padding)
    disjoint = stride[0] >= kernel[0] and stride[1] >= kernel[1]  # each pixel in at most one window
    tiled = disjoint and stride == kernel and not any(padding)  # windows tile x but its last rows/columns
    if tiled and out is not None:
        dx = out  # every tiled pixel is written: zero only the pixels past the last window
        dx[:, :, out_hw[0] * kernel[0] :] = 0
        dx[:, :, : out_hw[0] * kernel[0], out_hw[1] * kernel[1] :] = 0
    else:
        dx = _padded_zeros(xp, x.shape, pads, g.dtype, out)
    part = None if disjoint else xp.empty(g.shape, g.dtype)
    for tap, mask in _first_max_routes(xp, x, kernel, stride, padding):
        if disjoint:
            xp.multiply(g, mask, out=tap(dx))
        else:
            tap(dx)[...] += xp.multiply(g, mask, out=part)
    return _crop(xp, dx, pads, x.shape, out)


def _max_pool_gather_kernel(xp, x, v, kernel, stride, padding, out=None):
    """v at each window's first maximum of x: the linear map max_pool2d_grad is the transpose of."""
    pads, out_hw = _pool_geometry(x.shape, kernel, stride, padding)
    vpad = _pad(xp, v, pads, 0)
    out = xp.zeros((*x.shape[:2], *out_hw), v.dtype) if out is None else out
    out[...] = 0
    part = xp.empty(out.shape, v.dtype)
    for tap, mask in _first_max_routes(xp, x, kernel, stride, padding):
        out += xp.multiply(tap(vpad), mask, out=part)
    return out


def _avg_pool_kernel(xp, x, kernel, stride, padding, out=None):
    pads, out_hw = _pool_geometry(x.shape, kernel, stride, padding)
    xpad = _pad(xp, x, pads, 0)
    out = xp.empty((*x.shape[:2], *out_hw), x.dtype) if out is None else out
    out[...] = _tap(xpad, 0, 0, stride, (1, 1), out_hw)
    for t in range(1, kernel[0] * kernel[1]):
        xp.add(out, _tap(xpad, *divmod(t, kernel[1]), stride, (1, 1), out_hw), out=out)
    out *= out.dtype.type(1 / (kernel[0] * kernel[1]))
    return out


def _avg_pool_grad_kernel(xp, g, ref, kernel, stride, padding, out=None):
    """Each window's gradient spread evenly over its kh*kw taps (padding included, then cropped)."""
    pads, out_hw = _pool_geometry(ref.shape, kernel, stride, padding)
    dx = _padded_zeros(xp, ref.shape, pads, g.dtype, out)
    share = g * g.dtype.type(1 / (kernel[0] * kernel[1]))
    for t in range(kernel[0] * kernel[1]):
        _tap(dx, *divmod(t, kernel[1]), stride, (1, 1), out_hw)[...] += share
    return _crop(xp, dx, pads, ref.shape, out)


def _pool_grad_infer(x: TensorType, g: TensorType, kernel, stride, padding) -> TensorType:
    want = _pool_infer(x, kernel, stride, padding)
    if g.dtype.kind != "f" or not compatible(want.shape, g.shape):
        raise ShapeError(f"gradient {TensorType(g.shape, g.dtype)} does not match the pooling output {want}")
    return TensorType(x.shape, g.dtype)


def _absorb_conv(pool: str):
    """The pooling op's ``absorbs`` hook: a conv2d producing its input becomes one conv2d_pool."""

    def absorbs(producer, kernel, stride, padding):
        if producer.op != "conv2d":
            return None
        pooling = {"pool": pool, "pool_kernel": kernel, "pool_stride": stride, "pool_padding": padding}
        return "conv2d_pool", {**producer.attrs, **pooling}

    return absorbs


register(OpDef("max_pool2d", OPAQUE, _pool_infer, _max_pool_kernel,
               lambda g, o, x, **a: (apply("max_pool2d_grad", x, g, **a),), takes_out=True,
               c_kernel=conv_c.pool2d("max"), absorbs=_absorb_conv("max"),
               doc="Maximum over each window (padding counts as -inf)."))  # fmt: skip
register(OpDef(
    "max_pool2d_grad", OPAQUE, _pool_grad_infer, _max_pool_grad_kernel,
    lambda G, o, x, g, **a: (None, apply("max_pool2d_gather", x, G, **a)), nograd_inputs=(0,),
    takes_out=True, c_kernel=conv_c.max_pool2d_grad,
    doc="g routed to the argmax of each window of x (ties: the first); zero elsewhere.",
))  # fmt: skip


def _gather_infer(x: TensorType, v: TensorType, **attrs) -> TensorType:
    if v.dtype.kind != "f" or not compatible(x.shape, v.shape):
        raise ShapeError(f"values {TensorType(v.shape, v.dtype)} must have the shape of the input {x}")
    return TensorType(_pool_infer(x, **attrs).shape, v.dtype)


register(OpDef(
    "max_pool2d_gather", OPAQUE, _gather_infer,
    _max_pool_gather_kernel, lambda G, o, x, v, **a: (None, apply("max_pool2d_grad", x, G, **a)),
    takes_out=True, nograd_inputs=(0,), doc="v at the argmax of each window of x: the transpose of max_pool2d_grad.",
))  # fmt: skip
register(OpDef("avg_pool2d", OPAQUE, _pool_infer, _avg_pool_kernel,
               lambda g, o, x, **a: (apply("avg_pool2d_grad", g, x, **a),), takes_out=True,
               c_kernel=conv_c.pool2d("avg"), absorbs=_absorb_conv("avg"),
               doc="Mean over each window (zero padding counts: count_include_pad=True)."))  # fmt: skip
register(OpDef(
    "avg_pool2d_grad", OPAQUE, lambda g, ref, **a: _pool_grad_infer(ref, g, **a), _avg_pool_grad_kernel,
    lambda G, o, g, ref, **a: (apply("avg_pool2d", G, **a), None), nograd_inputs=(1,),
    takes_out=True, doc="g spread evenly over each window; ref gives the input shape.",
))  # fmt: skip


# -- a convolution and the pooling after it, as one node (the fuse pass builds it) -----------------
_POOLS = {"max": ("max_pool2d", _max_pool_kernel), "avg": ("avg_pool2d", _avg_pool_kernel)}


def _split_attrs(a: dict) -> tuple[dict, str, dict]:
    conv = {k: a[k] for k in ("stride", "padding", "dilation", "groups")}
    pool = {"kernel": a["pool_kernel"], "stride": a["pool_stride"], "padding": a["pool_padding"]}
    return conv, a["pool"], pool


def _conv_pool_infer(x: TensorType, w: TensorType, **a) -> TensorType:
    conv, _, pool = _split_attrs(a)
    return _pool_infer(_conv_infer(x, w, **conv), **pool)


def _conv_pool_kernel(xp, x, w, out=None, **a):
    conv, kind, pool = _split_attrs(a)
    return _POOLS[kind][1](xp, _conv_kernel(xp, x, w, **conv), **pool, out=out)


def _conv_pool_grad(g, out, x, w, **a):
    from ..autodiff import grad

    conv, kind, pool = _split_attrs(a)
    y = apply(_POOLS[kind][0], apply("conv2d", x, w, **conv), **pool)
    return tuple(grad(y, [x, w], grad_ys=g))


register(OpDef(
    "conv2d_pool", FUSED, _conv_pool_infer, _conv_pool_kernel, _conv_pool_grad, takes_out=True,
    c_kernel=conv_c.conv2d_pool,
    doc="conv2d, then max_pool2d or avg_pool2d (``pool``) of its output, as one kernel: the fuse pass "
        "builds it when the pooling is the convolution's only consumer.",
))  # fmt: skip


def _pool(op: str, x, kernel_size, stride, padding, name):
    x = as_tensor(x)
    try:
        kernel = _pair(kernel_size, "kernel_size", 1)
        stride = kernel if stride is None else _pair(stride, "stride", 1)
        padding = _pair(padding, "padding", 0)
    except ShapeError as e:
        raise ShapeError(f"{op} '{name or x.name}': {e}") from None
    return apply(op, x, name=name, kernel=kernel, stride=stride, padding=padding)


def max_pool2d(x, kernel_size, stride=None, padding=0, name=None) -> Tensor:
    """Maximum over (kh, kw) windows of NCHW images, like PyTorch's ``max_pool2d``.

    ``stride`` defaults to ``kernel_size``; ``padding`` (at most half the window) pads with -inf.
    The gradient goes to the first maximum of each window.
    """
    return _pool("max_pool2d", x, kernel_size, stride, padding, name)


def avg_pool2d(x, kernel_size, stride=None, padding=0, name=None) -> Tensor:
    """Mean over (kh, kw) windows of NCHW images, like PyTorch's ``avg_pool2d``.

    ``stride`` defaults to ``kernel_size``; zero padding counts in the mean (count_include_pad).
    """
    return _pool("avg_pool2d", x, kernel_size, stride, padding, name)


def global_avg_pool(x, name=None) -> Tensor:
    """Mean over the spatial dims of NCHW images: (N, C, H, W) -> (N, C). A composite: ``mean``."""
    x = as_tensor(x)
    if x.ndim != 4:
        raise ShapeError(f"global_avg_pool '{name or x.name}': input must be NCHW (rank 4): got {fmt_shape(x.shape)}")
    out = mean(x, axis=(2, 3))
    return out if name is None else identity(out, name=name)


def flatten(x, name=None) -> Tensor:
    """Keep dim 0 and flatten the rest: (N, ...) -> (N, prod(...)). A composite: ``reshape``.

    The batch dim may be unknown; the other dims must be known.
    """
    x = as_tensor(x)
    if x.ndim == 0 or any(d is None for d in x.shape[1:]):
        raise ShapeError(
            f"flatten '{name or x.name}': needs a batch dim and known other dims: got {fmt_shape(x.shape)}"
        )
    features = math.prod(x.shape[1:])
    return reshape(x, (-1 if x.shape[0] is None else x.shape[0], features), name=name)
