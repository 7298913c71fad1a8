"""Independent NumPy references for the neural-network ops: naive loops over output pixels (no
im2col, no strided views), PyTorch's conventions written out by hand, and float64 throughout."""

from __future__ import annotations

import math

import numpy as np


def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def torch_padding(padding, kernel, dilation) -> tuple:
    """((top, bottom), (left, right)) for PyTorch's conv2d padding argument."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":  # total d*(k-1); PyTorch puts the odd pixel at the end
        return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation))
    ph, pw = pair(padding)
    return ((ph, ph), (pw, pw))


def _padded(x, pads, value=0.0):
    (pt, pb), (pl, pr) = pads
    out = np.full((*x.shape[:2], x.shape[2] + pt + pb, x.shape[3] + pl + pr), value, dtype=np.float64)
    out[:, :, pt : pt + x.shape[2], pl : pl + x.shape[3]] = x
    return out


def _geometry(in_hw, kernel, stride, pads, dilation):
    return tuple(
        (n + p0 + p1 - d * (k - 1) - 1) // s + 1 for n, k, s, (p0, p1), d in zip(in_hw, kernel, stride, pads, dilation)
    )


def _window(a, i, j, kernel, stride, dilation):
    """a[:, :, rows, cols] of output pixel (i, j): a view of its kh x kw taps."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    return a[:, :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw]


def _conv_setup(x_shape, w_shape, stride, padding, dilation):
    kernel = w_shape[2:]
    stride, dilation = pair(stride), pair(dilation)
    pads = (
        padding
        if isinstance(padding, tuple) and isinstance(padding[0], tuple)
        else torch_padding(padding, kernel, dilation)
    )
    return kernel, stride, pads, dilation, _geometry(x_shape[2:], kernel, stride, pads, dilation)


def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1):
    """out[n, o, i, j] = sum over the window of group(o) of xpad * w[o]: one einsum per pixel and group."""
    kernel, stride, pads, dilation, (ho, wo) = _conv_setup(x.shape, w.shape, stride, padding, dilation)
    xp = _padded(x, pads)
    cg, og = w.shape[1], w.shape[0] // groups
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for g in range(groups):
        wg = w[g * og : (g + 1) * og]
        xg = xp[:, g * cg : (g + 1) * cg]
        for i in range(ho):
            for j in range(wo):
                out[:, g * og : (g + 1) * og, i, j] = np.einsum(
                    "ncrq,ocrq->no", _window(xg, i, j, kernel, stride, dilation), wg
                )
    return out.astype(x.dtype)


def conv2d_grad_input(g, w, ref, stride=1, padding=0, dilation=1, groups=1):
    """The adjoint of conv2d in x: each pixel's gradient spread back over its window."""
    kernel, stride, pads, dilation, (ho, wo) = _conv_setup(ref.shape, w.shape, stride, padding, dilation)
    dx = _padded(np.zeros(ref.shape), pads)
    cg, og = w.shape[1], w.shape[0] // groups
    for grp in range(groups):
        wg = w[grp * og : (grp + 1) * og]
        dxg = dx[:, grp * cg : (grp + 1) * cg]
        for i in range(ho):
            for j in range(wo):
                _window(dxg, i, j, kernel, stride, dilation)[...] += np.einsum(
                    "no,ocrq->ncrq", g[:, grp * og : (grp + 1) * og, i, j], wg
                )
    (pt, _), (pl, _) = pads
    return dx[:, :, pt : pt + ref.shape[2], pl : pl + ref.shape[3]].astype(g.dtype)


def conv2d_grad_weight(x, g, ref, stride=1, padding=0, dilation=1, groups=1):
    """The adjoint of conv2d in w: sum over batch and pixels of g times the window."""
    kernel, stride, pads, dilation, (ho, wo) = _conv_setup(x.shape, ref.shape, stride, padding, dilation)
    xp = _padded(x, pads)
    cg, og = ref.shape[1], ref.shape[0] // groups
    dw = np.zeros(ref.shape)
    for grp in range(groups):
        xg = xp[:, grp * cg : (grp + 1) * cg]
        for i in range(ho):
            for j in range(wo):
                dw[grp * og : (grp + 1) * og] += np.einsum(
                    "no,ncrq->ocrq", g[:, grp * og : (grp + 1) * og, i, j], _window(xg, i, j, kernel, stride, dilation)
                )
    return dw.astype(x.dtype)


def _pool_setup(shape, kernel_size, stride, padding):
    kernel = pair(kernel_size)
    stride = kernel if stride is None else pair(stride)
    pads = tuple((p, p) for p in pair(padding))
    return kernel, stride, pads, _geometry(shape[2:], kernel, stride, pads, (1, 1))


def _first_argmax(win):
    """(row, col) of the first maximum of every (n, c) window: win is (N, C, kh, kw)."""
    flat = win.reshape(*win.shape[:2], -1).argmax(axis=-1)
    return np.unravel_index(flat, win.shape[2:])


def max_pool2d(x, kernel_size, stride=None, padding=0):
    kernel, stride, pads, (ho, wo) = _pool_setup(x.shape, kernel_size, stride, padding)
    xp = _padded(x, pads, -np.inf)
    out = np.zeros((*x.shape[:2], ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = _window(xp, i, j, kernel, stride, (1, 1)).max(axis=(2, 3))
    return out.astype(x.dtype)


def max_pool2d_grad(x, g, kernel_size, stride=None, padding=0):
    """g[n, c, i, j] added at the first maximum of window (i, j)."""
    kernel, stride, pads, (ho, wo) = _pool_setup(x.shape, kernel_size, stride, padding)
    xp = _padded(x, pads, -np.inf)
    dx = np.zeros(xp.shape)
    n, c = np.indices(x.shape[:2])
    for i in range(ho):
        for j in range(wo):
            r, q = _first_argmax(_window(xp, i, j, kernel, stride, (1, 1)))
            np.add.at(dx, (n, c, i * stride[0] + r, j * stride[1] + q), g[:, :, i, j])
    (pt, _), (pl, _) = pads
    return dx[:, :, pt : pt + x.shape[2], pl : pl + x.shape[3]].astype(g.dtype)


def max_pool2d_gather(x, v, kernel_size, stride=None, padding=0):
    """v at the first maximum of each window of x."""
    kernel, stride, pads, (ho, wo) = _pool_setup(x.shape, kernel_size, stride, padding)
    xp, vp = _padded(x, pads, -np.inf), _padded(v, pads)
    out = np.zeros((*x.shape[:2], ho, wo))
    n, c = np.indices(x.shape[:2])
    for i in range(ho):
        for j in range(wo):
            r, q = _first_argmax(_window(xp, i, j, kernel, stride, (1, 1)))
            out[:, :, i, j] = vp[n, c, i * stride[0] + r, j * stride[1] + q]
    return out.astype(v.dtype)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    kernel, stride, pads, (ho, wo) = _pool_setup(x.shape, kernel_size, stride, padding)
    xp = _padded(x, pads)
    out = np.zeros((*x.shape[:2], ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = _window(xp, i, j, kernel, stride, (1, 1)).sum(axis=(2, 3)) / math.prod(kernel)
    return out.astype(x.dtype)


def avg_pool2d_grad(g, ref, kernel_size, stride=None, padding=0):
    kernel, stride, pads, (ho, wo) = _pool_setup(ref.shape, kernel_size, stride, padding)
    dx = _padded(np.zeros(ref.shape), pads)
    for i in range(ho):
        for j in range(wo):
            _window(dx, i, j, kernel, stride, (1, 1))[...] += g[:, :, i, j, None, None] / math.prod(kernel)
    (pt, _), (pl, _) = pads
    return dx[:, :, pt : pt + ref.shape[2], pl : pl + ref.shape[3]].astype(g.dtype)


def gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return (0.5 * x * (1 + erf(x / math.sqrt(2)))).astype(x.dtype)


def layer_norm(x, gamma=None, beta=None, axis=-1, eps=1e-5):
    mu = x.mean(axis=axis, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axis, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    axes = tuple(int(a) % x.ndim for a in np.atleast_1d(axis))
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]  # gamma and beta along the axes
    if gamma is not None:
        y = y * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return y


def batch_norm(x, gamma, beta, running_mean, running_var, training, eps=1e-5, axis=1):
    """(y, batch mean, unbiased batch variance) with PyTorch's conventions."""
    axes = tuple(i for i in range(x.ndim) if i != axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    n = x.size // x.shape[axis]
    m, v = (mu, var) if training else (running_mean, running_var)
    y = (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)
    return y, mu, var * n / (n - 1)
