"""Elementwise ops: arithmetic, math functions, activations, comparisons, logic, casts.

Shapes broadcast like NumPy; the output dtype is whatever NumPy's own kernel gives for the input
dtypes (one rule for every op). Gradient rules whose local derivative can be infinite use
``mul_no_nan`` so that an exact zero upstream gradient stays zero: the gradient of
``where(x > 0, log(x), 0)`` is finite at x <= 0 (see README, "Gradients of where").
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..errors import ShapeError
from ..ir import Tensor, TensorType
from ..ir.types import broadcast_shapes, fmt_shape
from .registry import ELEMENTWISE, OpDef, apply, kernel_dtype, register
from .state import as_tensor


def _infer(kernel):
    def infer(*types: TensorType, **attrs) -> TensorType:
        shape = broadcast_shapes(*(t.shape for t in types))
        if shape is None:
            got = " and ".join(fmt_shape(t.shape) for t in types)
            raise ShapeError(f"operand shapes do not broadcast: got {got}")
        return TensorType(shape, kernel_dtype(kernel, [t.dtype for t in types], **attrs))

    return infer


def _widest(tensors):
    """The tensor whose dtype the others promote to: Python scalars take its dtype, as in NumPy."""
    if not tensors:
        return None
    target = np.result_type(*(t.dtype for t in tensors))
    return next((t for t in tensors if t.dtype == target), tensors[0])


def _ufunc_kernel(ufunc: str):
    """The kernel of an op that is exactly one ufunc of the array module (np.add, cupy.add ...)."""

    def kernel(xp, *args, out=None):
        return getattr(xp, ufunc)(*args, out=out)

    kernel.__name__ = ufunc
    return kernel


def _op(name, kernel, grad=None, expr=None, doc="", **kw):
    """Register an elementwise op and return its public function (unary or n-ary by arity).

    ``kernel`` is a ufunc name when the op is exactly that ufunc (backends may then call the ufunc
    directly), else a function ``kernel(xp, *arrays, out=None)``.
    """
    ufunc = kernel if isinstance(kernel, str) else None
    if ufunc is not None:
        kernel = _ufunc_kernel(ufunc)
        arity = getattr(np, ufunc).nin
    else:
        arity = kernel.__code__.co_argcount - 2  # xp and out
    register(OpDef(name, ELEMENTWISE, _infer(kernel), kernel, grad, expr=expr, doc=doc, ufunc=ufunc, **kw))

    if arity == 1:
        def fn(x, name=None):
            return apply(opname, as_tensor(x), name=name)
    else:
        def fn(*args, name=None):
            tensors = [a for a in args if isinstance(a, Tensor)]
            like = _widest(tensors)
            return apply(opname, *(as_tensor(a, like=like) for a in args), name=name)

    opname = name
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"{doc}\n\nElementwise, broadcasting like NumPy."
    return fn


# -- gradient-only helper -------------------------------------------------------------------
def _into(out, value):
    """Return ``value``, written into ``out`` when a buffer was planned for it."""
    if out is None:
        return value
    out[...] = value
    return out


def _mul_no_nan_kernel(xp, g, d, out=None):
    with np.errstate(invalid="ignore"):  # 0 * inf is nan before the where replaces it: expected
        return _into(out, xp.where(g == 0, 0, g * d))


mul_no_nan = _op(
    "mul_no_nan", _mul_no_nan_kernel,
    grad=lambda G, out, g, d: (mul_no_nan(G, d), G * g),
    expr="(({0}) == 0 ? 0 : ({0}) * ({1}))", doc="g * d, but exactly 0 where g == 0 (even if d is inf).",
)  # fmt: skip

# -- arithmetic -----------------------------------------------------------------------------
add = _op("add", "add", lambda g, o, x, y: (g, g), "({0} + {1})", "x + y")
subtract = _op("subtract", "subtract", lambda g, o, x, y: (g, -g),
               "({0} - {1})", "x - y")  # fmt: skip
multiply = _op("multiply", "multiply", lambda g, o, x, y: (g * y, g * x),
               "({0} * {1})", "x * y")  # fmt: skip
divide = _op(
    "divide", "true_divide",
    lambda g, o, x, y: (mul_no_nan(g, reciprocal(y)), mul_no_nan(g, negative(o) / y)),
    "({0} / {1})", "x / y (true division)",
)  # fmt: skip
power = _op(
    "power", "power",
    lambda g, o, x, y: (mul_no_nan(g, y * power(x, y - 1)), mul_no_nan(g, o * log(x))),
    "pow({0}, {1})", "x ** y",
)  # fmt: skip
negative = _op("negative", "negative", lambda g, o, x: (-g,), "(-{0})", "-x")
_FILLED = threading.local()  # .blocks: (dtype, value bytes) -> a block-sized buffer holding value
_FILL_BLOCK = 1 << 16  # (the NumPy backend's block size: ops cannot import the backend)


def _filled(dtype, value) -> np.ndarray:
    """A block-sized buffer of ``dtype`` holding ``value`` everywhere, kept per thread."""
    blocks = getattr(_FILLED, "blocks", None)
    if blocks is None:
        blocks = _FILLED.blocks = {}
    key = (dtype, value.tobytes())
    buf = blocks.get(key)
    if buf is None:
        if len(blocks) >= 16:
            blocks.clear()
        buf = blocks[key] = np.full(_FILL_BLOCK, value, dtype)
    return buf


def _extremum(name: str):
    """maximum/minimum: NumPy 2.4 has no SIMD loop for a one-element operand (3.5x slower than
    against an array), so against a large contiguous array the one value is spread over a
    block-sized buffer and the ufunc runs block by block (the operands keep their order)."""

    def kernel(xp, x, y, out=None):
        ufunc = getattr(xp, name)
        if xp is not np or (np.size(x) != 1) == (np.size(y) != 1):
            return ufunc(x, y, out=out)
        big, one = (x, y) if np.size(y) == 1 else (y, x)
        dtype = np.result_type(x, y)
        if (big.size < 4096 or not big.flags.c_contiguous or np.ndim(one) > big.ndim
                or (out is not None and (not out.flags.c_contiguous or out.dtype != dtype))):  # fmt: skip
            return ufunc(x, y, out=out)
        out = np.empty(big.shape, dtype) if out is None else out
        flat, target = big.reshape(-1), out.reshape(-1)
        filled = _filled(dtype, np.asarray(one, dtype).reshape(()))
        n = flat.size
        for lo in range(0, n, _FILL_BLOCK):
            hi = min(n, lo + _FILL_BLOCK)
            f = filled[: hi - lo]
            ufunc(*((flat[lo:hi], f) if big is x else (f, flat[lo:hi])), out=target[lo:hi])
        return out

    kernel.__name__ = name
    return kernel


maximum = _op(
    "maximum", _extremum("maximum"),
    lambda g, o, x, y: (where(x >= y, g, 0), where(x >= y, 0, g)), "max({0}, {1})",
    "Elementwise maximum; at ties the gradient goes to x.",
)  # fmt: skip
minimum = _op(
    "minimum", _extremum("minimum"),
    lambda g, o, x, y: (where(x <= y, g, 0), where(x <= y, 0, g)), "min({0}, {1})",
    "Elementwise minimum; at ties the gradient goes to x.",
)  # fmt: skip

# -- math functions -------------------------------------------------------------------------
abs = _op("abs", "abs", lambda g, o, x: (g * sign(x),), "fabs({0})", "|x|")  # noqa: A001
_zero_grad = lambda g, o, x: (zeros_like(x),)  # noqa: E731  (piecewise constant: zero a.e.)
sign = _op("sign", "sign", _zero_grad, "sign({0})", "-1, 0 or 1 by the sign of x")
floor = _op("floor", "floor", _zero_grad, "floor({0})", "Round down.")
ceil = _op("ceil", "ceil", _zero_grad, "ceil({0})", "Round up.")
round = _op("round", "rint", _zero_grad, "rint({0})",  # noqa: A001
            "Round half to even, like np.round.")  # fmt: skip
exp = _op("exp", "exp", lambda g, o, x: (mul_no_nan(g, o),), "exp({0})", "e ** x")
_log = _op("log", "log", lambda g, o, x: (mul_no_nan(g, reciprocal(x)),),
           "log({0})", "Natural logarithm.")  # fmt: skip


def log(x, name=None) -> Tensor:
    """Natural logarithm, elementwise.

    Stable by construction: ``log(softmax(z))`` is built as ``log_softmax(z)`` and
    ``log(sigmoid(z))`` as ``-softplus(-z)``, so that their gradients are stable too.
    """
    x = as_tensor(x)
    if x.node.op == "softmax" and name is None:
        from .nn import log_softmax

        return log_softmax(x.node.inputs[0], x.node.attrs["axis"])
    if x.node.op == "sigmoid" and name is None:
        return negative(softplus(negative(x.node.inputs[0])))
    return _log(x, name=name)
log1p = _op("log1p", "log1p", lambda g, o, x: (mul_no_nan(g, reciprocal(x + 1)),),
            "log1p({0})", "log(1 + x), accurate for small x.")  # fmt: skip
expm1 = _op("expm1", "expm1", lambda g, o, x: (mul_no_nan(g, o + 1),),
            "expm1({0})", "exp(x) - 1, accurate for small x.")  # fmt: skip
sqrt = _op("sqrt", "sqrt", lambda g, o, x: (mul_no_nan(g, 0.5 / o),),
           "sqrt({0})", "Square root.")  # fmt: skip
square = _op("square", "square", lambda g, o, x: (g * (x * 2),), "({0} * {0})", "x * x")
reciprocal = _op("reciprocal", "reciprocal",
                 lambda g, o, x: (mul_no_nan(g, negative(square(o))),), "(1 / {0})", "1 / x")  # fmt: skip
sin = _op("sin", "sin", lambda g, o, x: (g * cos(x),), "sin({0})", "Sine.")
cos = _op("cos", "cos", lambda g, o, x: (negative(g * sin(x)),), "cos({0})", "Cosine.")


# -- activation gradients as one op each (TensorFlow's TanhGrad, SigmoidGrad): a deep net's
# gradient graph then has one node per activation instead of three, which is a third less work
# for every pass and for lowering; they fuse like any elementwise op. Inputs: the activation's
# output o and the upstream gradient g.
def _tanh_grad_kernel(xp, o, g, out=None):
    t = xp.multiply(o, o, out=xp.empty_like(o))  # (a temporary: out may alias o or g)
    xp.subtract(1, t, out=t)
    return xp.multiply(g, t, out=out)


def _sigmoid_grad_kernel(xp, o, g, out=None):
    t = xp.subtract(1, o, out=xp.empty_like(o))  # (a temporary: out may alias o or g)
    xp.multiply(t, o, out=t)
    return xp.multiply(g, t, out=out)


tanh_grad = _op("tanh_grad", _tanh_grad_kernel,
                lambda gg, _, o, g: (gg * g * (-2 * o), tanh_grad(o, gg)),
                "({1} * (1 - {0} * {0}))", "g * (1 - o * o): tanh's gradient from its output o.")  # fmt: skip
sigmoid_grad = _op("sigmoid_grad", _sigmoid_grad_kernel,
                   lambda gg, _, o, g: (gg * g * (1 - 2 * o), sigmoid_grad(o, gg)),
                   "({1} * ((1 - {0}) * {0}))", "g * o * (1 - o): sigmoid's gradient from its output o.")  # fmt: skip
tanh = _op("tanh", "tanh", lambda g, o, x: (tanh_grad(o, g),), "tanh({0})", "Hyperbolic tangent.")


def _sigmoid_kernel(xp, x, out=None):
    # 1 / (1 + exp(-x)): for x << 0, exp(-x) overflows to inf and the result is the exact limit 0.
    # (Fused kernels run with overflow warnings off; standalone NumPy would warn, never be wrong.)
    # (divide(1, .) rather than reciprocal: NumPy's float32 reciprocal loop is 1.4x slower)
    e = xp.exp(xp.negative(x, out=out), out=out)
    return xp.divide(1, xp.add(e, 1, out=out), out=out)


sigmoid = _op("sigmoid", _sigmoid_kernel, lambda g, o, x: (sigmoid_grad(o, g),),
              "(1 / (1 + exp(-{0})))", "1 / (1 + exp(-x)), stable for large |x|.")  # fmt: skip
_ZEROS: dict = {}  # dtype -> a read-only zeros vector, grown on demand (see _zeros)


def _zeros(xp, x):
    """0, or for a large NumPy array an array of zeros shaped like it: NumPy's maximum(x, 0) has no
    SIMD loop for a scalar operand and runs 3x slower than maximum(x, zeros). A big np.zeros maps
    the kernel's shared zero page, so the cached vector costs neither memory nor cache space."""
    if xp is not np or x.size < 4096:
        return 0
    zeros = _ZEROS.get(x.dtype)
    if zeros is None or zeros.size < x.size:
        zeros = np.zeros(max(x.size, 1 << 20), x.dtype)
        zeros.flags.writeable = False
        _ZEROS[x.dtype] = zeros
    return zeros[: x.size].reshape(x.shape)


# The gradient reads the output (o > 0 exactly where x > 0), so that the pre-activation has no
# other consumer and fuses into the matmul epilogue (GEMM + bias + relu as one kernel). It is
# g * (o > 0), as in TensorFlow's ReluGrad: a multiply runs 4x faster than np.where.
relu = _op("relu", lambda xp, x, out=None: xp.maximum(x, _zeros(xp, x), out=out), lambda g, o, x: (g * (o > 0),),
           "max({0}, 0)", "max(x, 0)")  # fmt: skip
softplus = _op("softplus", lambda xp, x, out=None: xp.logaddexp(0, x, out=out), lambda g, o, x: (g * sigmoid(x),),
               "(max({0}, 0) + log1p(exp(-fabs({0}))))", "log(1 + exp(x)), stable for large |x|.")  # fmt: skip


# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969),
# 631-637: the coefficients of netlib SPECFUN's CALERF (also SciPy/Cephes lineage). Max error
# against math.erf about 2e-16 absolute, 5e-16 relative (tests/test_nn_ops.py checks it).
_ERF_A = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
          3.77485237685302021e02, 3.20937758913846947e03)  # fmt: skip
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_ERF_C = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03,
          1.23033935479799725e03)  # fmt: skip
_ERF_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
          3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4)  # fmt: skip
_ERF_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
          2.33520497626869185e-3)  # fmt: skip


def _rational(t, num, den):
    """num(t) / den(t), coefficients highest power first; den is monic (its leading 1 implied)."""
    p = num[0] * t
    for c in num[1:-1]:
        p += c
        p *= t
    p += num[-1]
    q = t + den[0]
    for c in den[1:]:
        q *= t
        q += c
    p /= q
    return p


def _erf_cody(xp, x, out):
    """erf by Cody's three ranges; each element is computed in its own range only (masks), which
    is twice as fast as evaluating all three everywhere. Floats below 32 bits compute in float32."""
    x = x.astype(np.promote_types(x.dtype, np.float32), copy=False)
    y = xp.abs(x)
    small = y <= 0.46875  # erf(x) = x A(x^2) / B(x^2)
    xs = x[small]
    out[small] = xs * _rational(xs * xs, _ERF_A, _ERF_B)
    mid = y <= 4.0  # erfc(|x|) = exp(-x^2) C(|x|) / D(|x|)
    mid &= ~small
    ym = y[mid]
    erfc = _rational(ym, _ERF_C, _ERF_D)
    erfc *= xp.exp(-ym * ym)
    out[mid] = xp.copysign(1.0 - erfc, x[mid])
    big = ~(y <= 4.0)  # and NaN; erfc(|x|) = exp(-x^2) / |x| (1/sqrt(pi) - P(1/x^2) / (x^2 Q(1/x^2)))
    if big.any():
        yb = xp.minimum(y[big], 6.0)  # erfc(6) = 2e-17: erf rounds to 1 beyond
        r = 1.0 / (yb * yb)
        erfc = (0.5641895835477562869 - r * _rational(r, _ERF_P, _ERF_Q)) / yb * xp.exp(-yb * yb)
        out[big] = xp.copysign(1.0 - erfc, x[big])
    return out


def _erf_kernel(xp, x, out=None):
    out_dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    if out is None:
        out = xp.empty(x.shape, out_dtype)
    if xp is np:
        return _erf_cody(xp, x, out)
    from cupyx.scipy.special import erf as cupy_erf  # noqa: PLC0415  (CuPy is optional)

    return _into(out, cupy_erf(x).astype(out_dtype, copy=False))


erf = _op("erf", _erf_kernel, lambda g, o, x: (g * (exp(negative(square(x))) * (2 / math.sqrt(math.pi))),),
          "erf({0})", "The error function.")  # fmt: skip

# -- selection, casts, gradient control -----------------------------------------------------
where = _op(
    "where", lambda xp, c, x, y, out=None: _into(out, xp.where(c, x, y)),
    lambda g, o, c, x, y: (None, where(c, g, 0), where(c, 0, g)), "({0} ? {1} : {2})",
    "x where cond is true, else y. The unselected side gets an exact zero gradient.",
    nograd_inputs=(0,),
)  # fmt: skip
register(OpDef("cast", ELEMENTWISE, lambda x, dtype: TensorType(x.shape, dtype),
               lambda xp, x, dtype, out=None: _into(out, x.astype(dtype)), lambda g, o, x, dtype: (cast(g, x.dtype),),
               expr="(({dtype}){0})", doc="Convert to another dtype."))  # fmt: skip


def cast(x, dtype, name=None) -> Tensor:
    """``x`` converted to ``dtype``; differentiable between float dtypes only."""
    from ..dtypes import as_dtype

    x, dtype = as_tensor(x), as_dtype(dtype)
    return x if x.dtype == dtype and name is None else apply("cast", x, name=name, dtype=dtype)


identity = _op("identity", lambda xp, x, out=None: _into(out, x), lambda g, o, x: (g,), "{0}",
               "x itself (a named handle).", may_alias=True)  # fmt: skip
stop_gradient = _op("stop_gradient", lambda xp, x, out=None: _into(out, x), lambda g, o, x: (None,), "{0}",
                    "x in the forward pass; blocks gradients flowing back.",
                    nograd_inputs=(0,), may_alias=True)  # fmt: skip
zeros_like = _op("zeros_like", lambda xp, x, out=None: _into(out, xp.zeros_like(x)), lambda g, o, x: (None,), "0",
                 "Zeros of the shape and dtype of x.", nograd_inputs=(0,))  # fmt: skip
ones_like = _op("ones_like", lambda xp, x, out=None: _into(out, xp.ones_like(x)), lambda g, o, x: (None,), "1",
                "Ones of the shape and dtype of x.", nograd_inputs=(0,))  # fmt: skip

# -- comparisons and logic: not differentiable ----------------------------------------------
def _nondiff(name, kernel, expr, doc):
    return _op(name, kernel, expr=expr, doc=doc, differentiable=False)


equal = _nondiff("equal", "equal", "({0} == {1})", "x == y")
not_equal = _nondiff("not_equal", "not_equal", "({0} != {1})", "x != y")
less = _nondiff("less", "less", "({0} < {1})", "x < y")
less_equal = _nondiff("less_equal", "less_equal", "({0} <= {1})", "x <= y")
greater = _nondiff("greater", "greater", "({0} > {1})", "x > y")
greater_equal = _nondiff("greater_equal", "greater_equal", "({0} >= {1})", "x >= y")
logical_and = _nondiff("logical_and", "logical_and", "({0} && {1})", "x and y")
logical_or = _nondiff("logical_or", "logical_or", "({0} || {1})", "x or y")
logical_xor = _nondiff("logical_xor", "logical_xor", "({0} != {1})", "x xor y")
logical_not = _nondiff("logical_not", "logical_not", "(!{0})", "not x")


def _clip_grad(g, o, x, lo, hi):
    """The gradient of minimum(maximum(x, lo), hi), ties going to x as in maximum and minimum."""
    kept = maximum(x, lo) <= hi  # minimum passes g to its first operand
    above = x >= lo  # maximum passes g to x
    return where(logical_and(kept, above), g, 0), where(logical_and(kept, logical_not(above)), g, 0), where(kept, 0, g)


# np.clip with both bounds has a SIMD loop of its own (3x faster than maximum then minimum)
_clip = _op("clip", lambda xp, x, lo, hi, out=None: xp.clip(x, lo, hi, out=out), _clip_grad,
            "min(max({0}, {1}), {2})", "min(max(x, lo), hi), like np.clip with both bounds.")  # fmt: skip


def clip(a, a_min, a_max, name=None) -> Tensor:
    """``a`` limited to [a_min, a_max] (either may be None), like ``np.clip``."""
    a = as_tensor(a)
    if a_min is not None and a_max is not None:
        return _clip(a, a_min, a_max, name=name)
    if a_min is not None:
        a = maximum(a, a_min)
    if a_max is not None:
        a = minimum(a, a_max)
    return identity(a, name=name) if name else a
