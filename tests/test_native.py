"""Native C kernels (backends/native.py): fused nodes compiled to C.

They must compute what the NumPy kernels compute: bit for bit where both round once per op
(arithmetic, comparisons, selects), within a few ulps where the math libraries differ (exp, tanh);
on every loop shape (flat, rows, broadcasts, in place, threads). They fall back to NumPy for
arrays they do not take, and are built once per machine (the disk cache).
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from conftest import run_in_threads
from op_specs import ELEMENTWISE

import graphc as gc
from graphc.backends import native
from graphc.backends.numpy_backend import BACKEND
from graphc.ops import apply
from graphc.ops.registry import REGISTRY

pytestmark = pytest.mark.skipif(
    BACKEND.toolchain().unavailable is not None, reason=f"no native toolchain: {BACKEND.toolchain().unavailable}"
)

# ops whose NumPy loop and C expression round the same way (one IEEE operation, or none)
EXACT = {"abs", "add", "subtract", "multiply", "divide", "negative", "square", "reciprocal", "sqrt", "floor",
         "ceil", "round", "sign", "maximum", "minimum", "relu", "clip", "where", "cast", "identity",
         "stop_gradient", "zeros_like", "ones_like", "mul_no_nan", "tanh_grad", "sigmoid_grad", "equal",
         "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or",
         "logical_xor", "logical_not"}  # fmt: skip
ULPS = {"float32": 1e-6, "float64": 1e-14}  # relative tolerance where the math libraries differ
SHAPE = (64, 72)


def steps(fn) -> list:
    return [s for s in fn.plan.steps if s.node.op.startswith("fused_")]


def native_kernel(fn) -> native.NativeKernel:
    (step,) = steps(fn)
    assert isinstance(step.kernel, native.NativeKernel), fn.explain()
    return step.kernel


def both(y, **kw):
    """The function compiled with C kernels and without."""
    return gc.compile(y, native=True, **kw), gc.compile(y, native=False, **kw)


def _spec_params(spec):
    """The first case's attributes with a float result (an integer cast is not for C)."""
    for case in spec.cases:
        if case.params.get("dtype", "float64").startswith("float"):
            return case, {k: np.dtype(v) if k == "dtype" else v for k, v in case.params.items()}
    return None, None


ELEMENTWISE_C = [s for s in ELEMENTWISE if REGISTRY[s.op].expr is not None]


def test_every_elementwise_op_with_an_expression_has_a_case_here():
    with_expr = {n for n, d in REGISTRY.items() if d.kind == "elementwise" and d.expr is not None}
    assert with_expr <= {s.op for s in ELEMENTWISE_C}, with_expr - {s.op for s in ELEMENTWISE_C}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec", ELEMENTWISE_C, ids=[s.op for s in ELEMENTWISE_C])
def test_each_op_in_c_matches_numpy(spec, dtype):
    """One fused node per op, run by its C expression and by NumPy, on the spec's domains."""
    case, params = _spec_params(spec)
    domains = spec.domains_for(case)
    rng = np.random.default_rng(0)
    kinds = {"f": dtype, "b": "bool", "i": "int64"}
    arrays = [np.asarray(d.sample(rng, SHAPE), dtype=kinds[d.kind]) for d in domains]
    with gc.Graph():
        xs = [gc.placeholder(SHAPE, a.dtype, name=f"x{i}") for i, a in enumerate(arrays)]
        node = apply(spec.op, *xs, **params).node
        body = ((spec.op, tuple(range(len(xs))), tuple(sorted(node.attrs.items())), node.types[0].dtype.str),)
        y = apply("fused_elementwise", *xs, body=body)
        fc, fnp = both(y)
    feeds = {f"x{i}": a for i, a in enumerate(arrays)}
    got, want = fc(feeds), fnp(feeds)
    if any(a.dtype.kind == "i" for a in arrays):  # integers stay NumPy
        assert not isinstance(steps(fc)[0].kernel, native.NativeKernel)
        return
    kernel = native_kernel(fc)
    assert kernel.numpy is None  # the C function ran: no NumPy fallback
    assert got.dtype == want.dtype
    if spec.op in EXACT:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=ULPS[dtype], atol=ULPS[dtype])
    if dtype == "float64" and want.dtype.kind == "f":  # and the float64 reference of the op's spec
        with np.errstate(all="ignore"):
            ref = spec.ref(*arrays, **params)
        np.testing.assert_allclose(got, ref, rtol=max(spec.rtol, 1e-14), atol=max(spec.atol, 1e-14))


SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 1.0, -1.0, 100.0, -100.0, 3e38, -3e38, 0.5])


SPECIAL_OPS = ["maximum", "minimum", "relu", "sign", "clip", "mul_no_nan", "divide", "where", "sigmoid", "softplus",
               "tanh", "exp", "log", "sqrt", "greater", "logical_and"]  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", SPECIAL_OPS)
def test_special_values_as_numpy_treats_them(op, dtype):
    """NaN, infinities, signed zeros, subnormals and overflow: NumPy's maximum and minimum
    propagate NaN (C's fmax does not), 1 / (1 + exp(-x)) reaches exactly 0, mul_no_nan(0, inf) is 0."""
    a = np.repeat(SPECIAL, len(SPECIAL))  # every pair of special values
    b = np.tile(SPECIAL, len(SPECIAL))
    arrays = [a.astype(dtype), b.astype(dtype)]
    n = arrays[0].size
    with gc.Graph():
        x, y = (gc.placeholder((n,), dtype, name=k) for k in "xy")
        args = {"relu": (x,), "sign": (x,), "sigmoid": (x,), "softplus": (x,), "tanh": (x,), "exp": (x,),
                "log": (x,), "sqrt": (x,), "clip": (x, y, gc.constant(np.asarray(1.0, dtype))),
                "where": (x > y, x, y)}.get(op, (x, y))  # fmt: skip
        first = apply(op, *args)
        y_out = apply("add", first, first) if first.dtype.kind == "f" else apply("logical_not", first)
        fc, fnp = both(y_out)
    kernel = native_kernel(fc)
    with np.errstate(all="ignore"):
        got, want = fc(x=arrays[0], y=arrays[1]), fnp(x=arrays[0], y=arrays[1])
    assert kernel.numpy is None
    if op in EXACT:
        np.testing.assert_array_equal(got, want)  # (NaN where NumPy has NaN, signs of zeros aside)
    else:
        np.testing.assert_allclose(got, want, rtol=ULPS[dtype], atol=0)  # (inf, NaN and 0 exactly)


def _exact_body(x, y, z):
    """maximum((x * y + z) / (z * z + z), y): rounding identical in C and NumPy."""
    dt = x.dtype.str
    body = (("multiply", (0, 1), (), dt), ("add", (3, 2), (), dt), ("multiply", (2, 2), (), dt),
            ("add", (5, 2), (), dt), ("divide", (4, 6), (), dt), ("maximum", (7, 1), (), dt))  # fmt: skip
    return apply("fused_elementwise", x, y, z, body=body)


LOOPS = {
    "flat": ((96, 80), (96, 80), (96, 80)),
    "scalar": ((96, 80), (), (96, 80)),
    "row": ((96, 80), (80,), (96, 80)),
    "column": ((96, 80), (96, 1), (80,)),
    "both sides": ((96, 1), (1, 80), (96, 80)),
    "middle": ((6, 16, 80), (6, 1, 80), (16, 1)),
    "ones": ((1, 96, 1, 80), (96, 1, 80), (1, 80)),
    "3-D flat tail": ((4, 24, 80), (4, 24, 80), (24, 80)),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("loop", list(LOOPS))
def test_loop_nests_with_broadcasting(loop, threads, monkeypatch):
    """Every broadcast pattern, merged into the fewest loops, bit for bit NumPy's result; big
    enough arrays split their rows over the threads."""
    monkeypatch.setenv("GRAPHC_NUM_THREADS", str(threads))
    monkeypatch.setattr(native, "NATIVE_PARALLEL_MIN", 1 << 14)  # (these arrays split over the threads)
    shapes = LOOPS[loop]
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    with gc.Graph():
        xs = [gc.placeholder(s, "float32", name=f"x{i}") for i, s in enumerate(shapes)]
        fc, fnp = both(_exact_body(*xs))
    feeds = {f"x{i}": a for i, a in enumerate(arrays)}
    kernel = native_kernel(fc)
    assert len(kernel.ranges) == threads
    got = fc(feeds)
    np.testing.assert_array_equal(got, fnp(feeds))
    x, y, z = arrays
    np.testing.assert_array_equal(got, np.maximum((x * y + z) / (z * z + z), y))
    assert kernel.numpy is None


def test_loop_nest_merges_contiguous_dims():
    """A bias over (N, C) stays two loops; equal shapes become one; size-1 dims vanish."""
    assert native.csource.loop_nest([(8, 5), (5,)], (8, 5)).dims == (8, 5)
    assert native.csource.loop_nest([(8, 5), (8, 5)], (8, 5)).dims == (40,)
    loop = native.csource.loop_nest([(1, 8, 1, 5), (8, 1, 5), (1, 5)], (1, 8, 1, 5))
    assert loop.dims == (8, 5) and loop.strides == ((5, 1), (5, 1), (0, 1), (5, 1))
    assert native.csource.loop_nest([(4, 3, 5), (3, 1)], (4, 3, 5)).strides[1] == (0, 1, 0)


def test_epilogue_of_a_matmul_in_c():
    """GEMM + bias + relu with a transposed operand: one C function (the GEMM is BLAS's, called
    from C where backends/blas.py found it), the same bits as NumPy's kernel."""
    rng = np.random.default_rng(2)
    av, bv, cv = (rng.standard_normal(s).astype(np.float32) for s in ((128, 96), (64, 96), (64,)))
    with gc.Graph():
        a = gc.placeholder((128, 96), "float32", name="a")
        b = gc.placeholder((64, 96), "float32", name="b")
        c = gc.placeholder((64,), "float32", name="c")
        fc, fnp = both(gc.relu(gc.matmul(a, b, transpose_b=True) + c))
    assert steps(fc)[0].node.op == "fused_matmul"
    native_kernel(fc)
    got = fc(a=av, b=bv, c=cv)
    np.testing.assert_array_equal(got, fnp(a=av, b=bv, c=cv))
    np.testing.assert_allclose(got, np.maximum(av @ bv.T + cv, 0), rtol=1e-5, atol=1e-5)


CONVS = {  # x shape, w shape, conv2d keyword arguments
    "W4 layer 1": ((4, 1, 28, 28), (8, 1, 3, 3), {}),
    "W4 layer 2": ((4, 8, 13, 13), (16, 8, 3, 3), {}),
    "stride, padding, dilation": (
        (2, 3, 9, 11),
        (4, 3, 3, 2),
        {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1)},
    ),
    "groups, same": ((2, 4, 7, 7), (6, 2, 3, 3), {"padding": "same", "groups": 2}),
    "even kernel, same (uneven padding)": ((2, 3, 6, 9), (5, 3, 2, 4), {"padding": "same"}),
    "1x1": ((3, 5, 4, 6), (7, 5, 1, 1), {}),
    "stride 3, wide padding": ((2, 2, 10, 10), (3, 2, 5, 5), {"stride": 3, "padding": 2}),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geometry", list(CONVS))
def test_conv2d_in_c(geometry, dtype):
    """Direct convolution in C against the im2col + BLAS kernel: every tap order and bounds check."""
    xs, ws, kw = CONVS[geometry]
    rng = np.random.default_rng(7)
    xv, wv = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    with gc.Graph():
        x, w = gc.placeholder(xs, dtype, name="x"), gc.placeholder(ws, dtype, name="w")
        fc, fnp = both(gc.conv2d(x, w, **kw))
    (step,) = fc.plan.steps
    assert isinstance(step.kernel, native.NativeKernel), fc.explain()
    got, want = fc(x=xv, w=wv), fnp(x=xv, w=wv)
    assert step.kernel.numpy is None
    tol = {"float32": 2e-5, "float64": 1e-13}[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


GRAD_INPUTS = {  # x shape, w shape, conv2d keyword arguments: the forward convolution
    "W4T layer 2": ((4, 8, 13, 13), (16, 8, 3, 3), {}),
    "padding, dilation": ((2, 3, 9, 11), (4, 3, 3, 2), {"padding": (1, 1), "dilation": (2, 1)}),
    "even kernel, same (uneven padding)": ((2, 3, 6, 9), (5, 3, 2, 4), {"padding": "same"}),
}


def _check_conv_gradient(op: str, geometry: tuple, seed: int, tol: float) -> None:
    """The gradient op ``op`` of the convolution ``geometry`` (x shape, w shape, conv2d keywords)
    in C against its NumPy kernel, in float64; the C function takes every call."""
    xs, ws, kw = geometry
    rng = np.random.default_rng(seed)
    xv, wv = rng.standard_normal(xs), rng.standard_normal(ws)
    with gc.Graph():
        x, w = gc.placeholder(xs, "float64", name="x"), gc.placeholder(ws, "float64", name="w")
        y = gc.conv2d(x, w, **kw)
        g = gc.placeholder(y.shape, "float64", name="g")
        args = (g, w, x) if op == "conv2d_grad_input" else (x, g, w)
        fc, fnp = both(apply(op, *args, **y.node.attrs))
    (step,) = fc.plan.steps
    assert isinstance(step.kernel, native.NativeKernel), fc.explain()
    gv = rng.standard_normal(y.shape)
    np.testing.assert_allclose(fc(g=gv, w=wv, x=xv), fnp(g=gv, w=wv, x=xv), rtol=tol, atol=tol)
    assert step.kernel.numpy is None


@pytest.mark.parametrize("geometry", list(GRAD_INPUTS))
def test_conv2d_input_gradient_in_c(geometry):
    """At stride 1 the input gradient is a direct convolution of g with flipped, channel-swapped
    weights: against the col2im kernel."""
    _check_conv_gradient("conv2d_grad_input", GRAD_INPUTS[geometry], 14, 1e-12)


GRAD_WEIGHTS = {  # x shape, w shape, conv2d keyword arguments: the forward convolution
    "W4T layer 1": ((4, 1, 28, 28), (8, 1, 3, 3), {}),
    "W4T layer 2": ((4, 8, 13, 13), (16, 8, 3, 3), {}),
    "stride, padding, dilation": (
        (2, 3, 9, 11),
        (5, 3, 3, 2),
        {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1)},
    ),
    "even kernel, same": ((2, 3, 6, 9), (5, 3, 2, 4), {"padding": "same"}),
}


@pytest.mark.parametrize("geometry", list(GRAD_WEIGHTS))
def test_conv2d_weight_gradient_in_c(geometry):
    """Taps in blocks of four against the im2col + GEMM kernel; a last partial block (9 or 18
    taps) and out-of-image taps included."""
    _check_conv_gradient("conv2d_grad_weight", GRAD_WEIGHTS[geometry], 15, 1e-11)


def test_a_strided_conv2d_input_gradient_stays_col2im():
    with gc.Graph():
        x, w = gc.placeholder((2, 3, 9, 9), name="x"), gc.placeholder((4, 3, 3, 3), name="w")
        y = gc.conv2d(x, w, stride=2)
        fn = gc.compile(apply("conv2d_grad_input", gc.placeholder(y.shape, name="g"), w, x, **y.node.attrs))
    assert "[NumPy: a stride or groups (col2im + BLAS)]" in fn.explain()


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_a_pooling_absorbs_the_convolution_before_it(pool):
    """conv2d then pooling is one node whose C kernel pools a few images' convolution at a time
    (13 images: scratch blocks of 6, 6 and 1); it computes what the two C kernels compute apart."""
    rng = np.random.default_rng(16)
    xv, wv = rng.standard_normal((13, 1, 28, 28)).astype(np.float32), rng.standard_normal((8, 1, 3, 3))
    with gc.Graph():
        x = gc.placeholder((13, 1, 28, 28), "float32", name="x")
        w = gc.constant(wv.astype(np.float32))
        conv = gc.conv2d(x, w, padding=1)
        y = (gc.max_pool2d if pool == "max" else gc.avg_pool2d)(conv, 2)
        fused, numpy_tier = both(y)
        apart = gc.compile([y, conv])  # the convolution is an output too: nothing to absorb
    (step,) = [s for s in fused.plan.steps if s.node.op == "conv2d_pool"]
    assert isinstance(step.kernel, native.NativeKernel), fused.explain()
    assert "producer absorbed: conv2d" in fused.explain()
    assert [s.node.op for s in apart.plan.steps if s.node.op.startswith(("conv", "max", "avg"))] == [
        "conv2d", f"{pool}_pool2d"]  # fmt: skip
    got = fused(x=xv)
    np.testing.assert_array_equal(got, apart(x=xv)[0])
    np.testing.assert_allclose(got, numpy_tier(x=xv), rtol=2e-5, atol=2e-5)
    assert step.kernel.numpy is None


def test_a_large_conv2d_stays_im2col_and_blas():
    with gc.Graph():
        x, w = gc.placeholder((1, 128, 8, 8), name="x"), gc.placeholder((128, 128, 3, 3), name="w")
        fn = gc.compile(gc.conv2d(x, w))
    assert "[NumPy: a large layer (im2col + BLAS is faster)]" in fn.explain()


POOLS = {  # x shape, kernel_size, stride, padding
    "W4": ((4, 8, 26, 26), 2, 2, 0),
    "odd, overlapping": ((2, 3, 11, 9), 3, 2, 1),
    "non-square": ((2, 3, 7, 10), (3, 2), (1, 2), (1, 1)),
    "one tap": ((2, 2, 5, 5), 1, 1, 0),
}


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("geometry", list(POOLS))
def test_pooling_in_c_matches_numpy_bit_for_bit(geometry, kind):
    """Taps in NumPy's order, padding as -inf (max) or 0 (avg), NaN propagated by max."""
    xs, k, stride, pad = POOLS[geometry]
    xv = np.random.default_rng(8).standard_normal(xs).astype(np.float32)
    xv.reshape(-1)[::17] = np.nan
    with gc.Graph():
        x = gc.placeholder(xs, "float32", name="x")
        fc, fnp = both((gc.max_pool2d if kind == "max" else gc.avg_pool2d)(x, k, stride, pad))
    (step,) = fc.plan.steps
    assert isinstance(step.kernel, native.NativeKernel), fc.explain()
    np.testing.assert_array_equal(fc(x=xv), fnp(x=xv))
    assert step.kernel.numpy is None


REDUCTIONS = {  # shape, axis
    "rows into a vector (a bias gradient)": ((128, 256), 0),
    "along memory": ((64, 300), 1),
    "everything": ((40, 30), None),
    "middle axes": ((3, 4, 5, 6), (1, 2)),
    "size-1 dims between": ((6, 1, 7), (0, 1)),
    "around a kept block (a bias gradient)": ((4, 5, 6, 7), (0, 2, 3)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", ["sum", "max", "min"])
@pytest.mark.parametrize("case", list(REDUCTIONS))
def test_reductions_in_c(case, op, dtype):
    """Rows added into the output are NumPy's result bit for bit; sums along memory accumulate in
    double for float32 (at least as accurate as NumPy's pairwise sum)."""
    shape, axis = REDUCTIONS[case]
    xv = np.random.default_rng(9).standard_normal(shape).astype(dtype)
    with gc.Graph():
        x = gc.placeholder(shape, dtype, name="x")
        fc, fnp = both(getattr(gc, op)(x, axis=axis, keepdims=True))
    (step,) = fc.plan.steps
    assert isinstance(step.kernel, native.NativeKernel), fc.explain()
    got, want = fc(x=xv), fnp(x=xv)
    if op != "sum" or case.startswith("rows"):  # (max and min are exact in any order)
        np.testing.assert_array_equal(got, want)
    else:
        exact = getattr(np, op)(xv.astype(np.float64), axis=axis, keepdims=True)
        assert np.abs(got - exact).max() <= np.abs(want - exact).max() + 4 * np.finfo(dtype).eps * np.abs(exact).max()


def test_reductions_c_does_not_take():
    with gc.Graph():
        x = gc.placeholder((3, 4, 5, 6), "float32", name="x")
        i = gc.placeholder((3, 4), "int64", name="i")
        fn = gc.compile([gc.sum(x, axis=(1, 3)), gc.max(i, axis=0)])
    text = fn.explain()
    assert "[NumPy: reduced axes that are neither adjacent nor around one kept block]" in text
    assert "[NumPy: dtype int64]" in text
    got = fn(x=np.ones((3, 4, 5, 6), np.float32), i=np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(got[0], np.full((3, 5), 24.0))
    np.testing.assert_array_equal(got[1], [8, 9, 10, 11])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_family_in_c(dtype):
    rng = np.random.default_rng(10)
    logits = (rng.standard_normal((64, 10)) * 5).astype(dtype)
    logits[3, 4] = 1e4 if dtype == "float64" else 80.0  # a confident row: no overflow
    labels = rng.integers(0, 10, 64)
    with gc.Graph():
        z = gc.placeholder((64, 10), dtype, name="z")
        t = gc.placeholder((64,), "int64", name="t")
        outs = [gc.softmax(z), gc.log_softmax(z), gc.softmax_cross_entropy(z, t),
                apply("softmax_cross_entropy_grad", z, t)]  # fmt: skip
        fc, fnp = both(outs)
    assert all(isinstance(s.kernel, native.NativeKernel) for s in fc.plan.steps), fc.explain()
    tol = {"float32": 2e-6, "float64": 1e-14}[dtype]
    for got, want in zip(fc(z=logits, t=labels), fnp(z=logits, t=labels)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert all(s.kernel.numpy is None for s in fc.plan.steps)


def test_a_label_out_of_range_is_the_numpy_kernels_error():
    """The C kernel declines (before writing) and NumPy's kernel names the problem."""
    with gc.Graph():
        z = gc.placeholder((4, 3), "float32", name="z")
        t = gc.placeholder((4,), "int64", name="t")
        fn = gc.compile(gc.softmax_cross_entropy(z, t, name="xent"), native=True)
    assert isinstance(fn.plan.steps[0].kernel, native.NativeKernel)
    with pytest.raises(gc.GraphcError, match=r"xent.*labels must lie in \[0, 3\)"):
        fn(z=np.zeros((4, 3), np.float32), t=np.array([0, 1, 3, 2]))
    np.testing.assert_allclose(fn(z=np.zeros((4, 3), np.float32), t=np.array([0, 1, 2, 2])), np.log(3), rtol=1e-6)


SMALL_GEMMS = {  # a shape, b shape, transpose_a, transpose_b, epilogue
    "batch 1, bias, relu": ((1, 83), (83, 40), False, False, lambda z, c: gc.relu(z + c)),
    "3 rows, transposed b": ((3, 30), (17, 30), False, True, lambda z, c: gc.tanh(z) * c),
    "transposed a": ((21, 5), (21, 9), True, False, lambda z, c: z - c),
    "both transposed, a column": ((6, 8), (11, 6), True, True, lambda z, c: z * gc.reshape(c[:8], (8, 1))),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(SMALL_GEMMS))
def test_a_product_of_few_rows_is_computed_in_c(case, dtype):
    """Batch-1 inference: the GEMM of a fused matmul with at most SMALL_GEMM_ROWS rows runs in C
    with its epilogue (no NumPy call); either operand may be transposed, K need not divide by 4."""
    ash, bsh, ta, tb, epilogue = SMALL_GEMMS[case]
    rng = np.random.default_rng(11)
    av, bv = rng.standard_normal(ash).astype(dtype), rng.standard_normal(bsh).astype(dtype)
    n = bsh[0] if tb else bsh[1]
    cv = rng.standard_normal(n).astype(dtype)  # (the column case reads its first 8)
    with gc.Graph():
        a, b = gc.placeholder(ash, dtype, name="a"), gc.placeholder(bsh, dtype, name="b")
        c = gc.placeholder(cv.shape, dtype, name="c")
        fc, fnp = both(epilogue(gc.matmul(a, b, transpose_a=ta, transpose_b=tb), c))
    (step,) = [s for s in fc.plan.steps if s.node.op == "fused_matmul"]
    assert isinstance(step.kernel, native.NativeKernel) and not step.kernel.matmul, fc.explain()
    got, want = fc(a=av, b=bv, c=cv), fnp(a=av, b=bv, c=cv)
    tol = {"float32": 1e-5, "float64": 1e-13}[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert step.kernel.numpy is None


FUSED_REDUCTIONS = {  # x shape, y shape (broadcast into x), axis: reductions the fuser folds in
    "along memory": ((20, 300), (20, 1), 1),
    "the trailing axes": ((4, 5, 6, 7), (5, 1, 7), (2, 3)),
    "everything": ((40, 30), (), None),
}


@pytest.mark.parametrize("op", ["sum", "max", "min"])
@pytest.mark.parametrize("case", list(FUSED_REDUCTIONS))
def test_fused_reductions_in_c(case, op):
    """An elementwise body with a trailing reduction: the body, then the reduction's C kernel."""
    xs, ys, axis = FUSED_REDUCTIONS[case]
    rng = np.random.default_rng(13)
    xv, yv = rng.standard_normal(xs), rng.standard_normal(ys)
    with gc.Graph():
        x, y = gc.placeholder(xs, "float64", name="x"), gc.placeholder(ys, "float64", name="y")
        fc, fnp = both(getattr(gc, op)(gc.tanh(x) * y + x * x, axis=axis))
    (step,) = [s for s in fc.plan.steps if s.node.op == "fused_elementwise"]
    assert step.node.attrs.get("reduce") is not None, fc.explain()
    assert isinstance(step.kernel, native.NativeKernel), fc.explain()
    np.testing.assert_allclose(fc(x=xv, y=yv), fnp(x=xv, y=yv), rtol=1e-13, atol=1e-13)
    assert step.kernel.numpy is None


MAX_POOL_GRADS = {  # x shape, kernel_size, stride, padding
    "W4 layer 1 (tiling)": ((4, 8, 26, 26), 2, 2, 0),
    "overlapping, padded": ((2, 3, 9, 8), 3, 2, 1),
    "non-square": ((2, 3, 7, 10), (3, 2), (1, 2), (1, 1)),
}


@pytest.mark.parametrize("geometry", list(MAX_POOL_GRADS))
def test_max_pool_gradient_in_c(geometry):
    """The gradient goes to each window's first maximum (values on a grid: many ties), padding
    taps included (then it is lost); a window holding NaN routes nowhere; overlapping windows add up."""
    xs, k, stride, pad = MAX_POOL_GRADS[geometry]
    rng = np.random.default_rng(12)
    xv = (rng.integers(-2, 3, xs) * 0.5).astype(np.float32)
    xv.reshape(-1)[::23] = np.nan
    xv[:, :, :3, :3] = -np.inf  # corner windows of -inf: a padded tap (-inf too) may come first
    with gc.Graph():
        x = gc.placeholder(xs, "float32", name="x")
        y = gc.max_pool2d(x, k, stride, pad)
        g = gc.placeholder(y.shape, "float32", name="g")
        fc, fnp = both(apply("max_pool2d_grad", x, g, kernel=y.node.attrs["kernel"], stride=y.node.attrs["stride"],
                             padding=y.node.attrs["padding"]))  # fmt: skip
    (step,) = fc.plan.steps
    assert isinstance(step.kernel, native.NativeKernel), fc.explain()
    gv = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(fc(x=xv, g=gv), fnp(x=xv, g=gv), rtol=1e-6, atol=1e-6)
    assert step.kernel.numpy is None


def test_in_place_into_an_input_buffer():
    """The memory plan lets the C kernel write over a buffer it reads element for element."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((80, 80)) * 0.1
    with gc.Graph():
        x = gc.placeholder((96, 80), "float64", name="x")
        h = x @ gc.constant(w)  # a planned buffer, read by two consumers, that dies at the fused kernel
        y = (gc.tanh(h - gc.max(h, axis=1, keepdims=True)) * 2.0) @ gc.constant(w)  # (planned: not an output)
        fc, fnp = both(y)
    native_kernel(fc)
    assert fc.plan.memory.inplace, fc.explain()
    for _ in range(2):  # the buffers are reused across calls
        xv = rng.standard_normal((96, 80))
        h = xv @ w
        want = (np.tanh(h - h.max(axis=1, keepdims=True)) * 2) @ w
        np.testing.assert_allclose(fc(x=xv), want, rtol=1e-12, atol=1e-13)


VIEWS = {
    "transpose": (lambda h: gc.transpose(h), lambda h: h.T),
    "reversed": (lambda h: h[::-1], lambda h: h[::-1]),
    "value and its transpose": (lambda h: h + gc.transpose(h), lambda h: h + h.T),
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_an_input_read_through_a_view(view):
    """An input read through a non-contiguous view makes the C function decline the call; the
    NumPy kernel runs it, and a buffer is never overwritten before it is read."""
    rng = np.random.default_rng(4)
    n = 96
    w = rng.standard_normal((n, n)) * 0.05
    bias = np.linspace(1.0, 2.0, n)
    build, ref = VIEWS[view]
    with gc.Graph():
        x = gc.placeholder((n, n), "float64", name="x")
        h = x @ gc.constant(w)
        y = (gc.exp(build(h)) * gc.constant(bias) + 1.0) @ gc.constant(w)
        fn = gc.compile(y, native=True)
    xv = rng.standard_normal((n, n))
    np.testing.assert_allclose(fn(x=xv), (np.exp(ref(xv @ w)) * bias + 1.0) @ w, rtol=1e-12)


def test_a_non_contiguous_feed_runs_in_numpy():
    rng = np.random.default_rng(5)
    with gc.Graph():
        x = gc.placeholder((96, 80), "float32", name="x")
        fc, _ = both(gc.tanh(x) * x + 1.0)
    kernel = native_kernel(fc)
    xt = rng.standard_normal((80, 96)).astype(np.float32).T  # a (96, 80) view, not C-contiguous
    np.testing.assert_allclose(fc(x=xt), np.tanh(xt) * xt + 1, rtol=1e-6)
    assert kernel.numpy is not None  # the C function declined, NumPy ran it
    xc = np.ascontiguousarray(xt)
    np.testing.assert_allclose(fc(x=xc), np.tanh(xc) * xc + 1, rtol=1e-6)


def test_the_c_function_checks_its_arguments():
    """Wrong sizes, formats, byte order or alignment: declined (NotImplemented); bad row ranges: an
    error, no write. NumPy arrays are read through NumPy's C API, other objects as buffers."""
    with gc.Graph():
        x = gc.placeholder((96, 80), "float32", name="x")
        fc, _ = both(gc.exp(x) * 2.0)
    kernel = native_kernel(fc)
    ok = np.ones((96, 80), np.float32)
    two = np.float32(2.0)
    out = np.zeros((96, 80), np.float32)
    assert kernel.fn(ok, two, out, 0, 96) is None and out[0, 0] == np.float32(np.exp(np.float32(1)) * 2)
    assert kernel.fn(ok.astype(np.float64), two, out, 0, 96) is NotImplemented
    assert kernel.fn(ok[:95], two, out, 0, 96) is NotImplemented
    assert kernel.fn(ok, two, out[:, ::2].copy(), 0, 48) is NotImplemented
    assert kernel.fn(ok, 2.0, out, 0, 96) is NotImplemented  # a Python float has no buffer
    frozen = np.zeros((96, 80), np.float32)
    frozen.flags.writeable = False
    assert kernel.fn(ok, two, frozen, 0, 96) is NotImplemented and not frozen.any()
    assert kernel.fn(ok.astype(">f4"), two, out, 0, 96) is NotImplemented  # (not the CPU's byte order)
    raw = np.zeros(96 * 80 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(96, 80)  # misaligned
    raw[...] = 1
    assert not raw.flags.aligned and kernel.fn(raw, two, out, 0, 96) is NotImplemented
    out[...] = 0  # any other object that exports a C-contiguous buffer of the right format works
    assert kernel.fn(memoryview(ok), memoryview(np.array(two)), memoryview(out), 0, 96 * 80) is None
    assert out[95, 79] == np.float32(np.exp(np.float32(1)) * 2)
    with pytest.raises(ValueError, match="rows out of range"):
        kernel.fn(ok, two, out, 0, 96 * 80 + 1)  # (one flat loop: its rows are the elements)
    with pytest.raises(TypeError, match="expected 2 inputs"):
        kernel.fn(ok, out, 0, 96)


def test_the_plan_calls_the_c_entry_point_directly():
    """A one-thread kernel is called by the generated code as a C function taking out= (allocating
    when none is planned), which hands calls it does not take to the NumPy kernel."""
    with gc.Graph():
        x = gc.placeholder((96, 80), "float32", name="x")
        fc, _ = both(gc.exp(x) * 2.0)
    kernel = native_kernel(fc)
    assert kernel.direct is not None and kernel.direct.__name__ == "kernel"
    whole, two = kernel.direct, np.float32(2.0)
    ok = np.linspace(-1, 1, 96 * 80, dtype=np.float32).reshape(96, 80)
    want = np.exp(ok) * 2
    got = whole(ok, two)  # allocates
    assert got.shape == (96, 80) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)
    out = np.zeros((96, 80), np.float32)
    assert whole(ok, two, out=out) is out
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert kernel.numpy is None
    view = np.asfortranarray(ok)  # not C-contiguous: the NumPy kernel runs it
    np.testing.assert_allclose(whole(view, two, out=out), want, rtol=1e-6)
    assert kernel.numpy is not None
    with pytest.raises(TypeError, match="expected 2 inputs and out="):
        whole(ok, two, output=out)
    with pytest.raises(TypeError, match="expected 2 inputs and out="):
        whole(ok)


def test_calls_from_many_threads_at_once(monkeypatch):
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    monkeypatch.setattr(native, "NATIVE_PARALLEL_MIN", 1 << 16)
    with gc.Graph():
        x = gc.placeholder((1024, 600), "float32", name="x")
        fc, _ = both(gc.sigmoid(x) * x - 0.5)
    assert len(native_kernel(fc).ranges) == 2
    rng = np.random.default_rng(6)
    inputs = [rng.standard_normal((1024, 600)).astype(np.float32) for _ in range(4)]
    wants = [1 / (1 + np.exp(-v.astype(np.float64))) * v - 0.5 for v in inputs]

    def work(i):
        for _ in range(5):
            np.testing.assert_allclose(fc(x=inputs[i]), wants[i], rtol=1e-5, atol=1e-6)

    assert run_in_threads(work) == []


def test_explain_says_which_kernels_are_c_and_why_the_others_are_not():
    with gc.Graph():
        x = gc.placeholder((96, 80), "float32", name="x")
        i = gc.placeholder((4, 5), "int64", name="i")
        fc = gc.compile([gc.tanh(x) * 2.0 + 1.0, gc.prod(gc.tanh(x) * 0.5, axis=1), (i + 1) * 3])
    fc(x=np.ones((96, 80), np.float32), i=np.ones((4, 5), np.int64))
    kernels = {k["node"]: k for k in fc.explain(format="json")["plans"][0]["kernels"] if "expression" in k}
    assert sorted(k["runs"] for k in kernels.values()) == ["C", "NumPy", "NumPy"]
    reasons = sorted(k.get("why_not_c", "") for k in kernels.values())
    assert reasons[1] == "a fused reduction: a multiply reduction" and reasons[2] == "input dtype int64", reasons
    text = fc.explain()
    assert "[C]" in text and "[NumPy: input dtype int64]" in text
    off = gc.compile(gc.tanh(x) * 2.0 + 1.0, native=False)
    assert "[NumPy: native=False or GRAPHC_NATIVE=0]" in off.explain()


@pytest.mark.parametrize("shape", [(0, 5), (3, 0)])
def test_empty_tensors(shape):
    """Kernels over zero elements (an empty batch; a product over K = 0) run and give NumPy's results."""
    xv = np.zeros(shape, np.float32)
    with gc.Graph():
        x = gc.placeholder(shape, "float32", name="x")
        outs = [gc.tanh(x) * 2.0 + 1.0, gc.sum(x * x, axis=0),
                gc.relu(x @ gc.constant(np.ones((shape[1], 4), np.float32)) + 1.0)]  # fmt: skip
        if shape[1]:  # (a softmax over an empty axis raises, in NumPy and so in graphc)
            outs.append(gc.softmax(x))
        fc, fnp = both(outs)
    assert all(isinstance(s.kernel, native.NativeKernel) for s in fc.plan.steps), fc.explain()
    for got, want in zip(fc(x=xv), fnp(x=xv)):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_a_loaded_function_runs_c_unless_told_not_to(tmp_path):
    with gc.Graph():
        x = gc.placeholder((96, 80), "float32", name="x")
        path = gc.save(gc.compile(gc.tanh(x) * 2.0 + 1.0, native=False), tmp_path / "f.json")
    xv = np.linspace(-2, 2, 96 * 80, dtype=np.float32).reshape(96, 80)
    loaded, off = gc.load(path), gc.load(path, native=False)
    native_kernel(loaded)
    assert "[NumPy: native=False or GRAPHC_NATIVE=0]" in off.explain()
    np.testing.assert_allclose(loaded(x=xv), off(x=xv), rtol=1e-6, atol=1e-6)


def test_a_small_plan_stays_numpy_unless_asked(monkeypatch):
    """By default a plan whose C work is under NATIVE_MIN_WORK is not worth a compile; native=True
    or GRAPHC_NATIVE=1 compiles it anyway."""
    with gc.Graph():
        x = gc.placeholder((4, 5), "float32", name="x")
        y = gc.tanh(x) * 2.0 + 1.0
        auto, forced = gc.compile(y), gc.compile(y, native=True)
        monkeypatch.setenv("GRAPHC_NATIVE", "1")
        by_env = gc.compile(y)
    assert "[NumPy: a small plan" in auto.explain()
    assert not isinstance(steps(auto)[0].kernel, native.NativeKernel)
    native_kernel(forced)
    native_kernel(by_env)
    xv = np.ones((4, 5), np.float32)
    np.testing.assert_allclose(auto(x=xv), forced(x=xv), rtol=1e-6)


def test_a_loop_body_is_compiled_however_small():
    """A control-flow body runs once per iteration, so the default compiles it."""
    with gc.Graph():
        h0 = gc.placeholder((2, 3), "float32", name="h0")
        xs = gc.placeholder((5, 2, 3), "float32", name="xs")
        final, _ = gc.scan(lambda h, x: (gc.tanh(h * 0.5 + x),) * 2, h0, xs)
        fn = gc.compile(final)
    (scan,) = [s for s in fn.plan.steps if s.node.op == "scan"]
    body_plan = scan.kernel.__closure__  # (the Body the scan kernel runs)
    bodies = [c.cell_contents for c in body_plan if type(c.cell_contents).__name__ == "Body"]
    assert bodies and any(isinstance(st.kernel, native.NativeKernel) for st in bodies[0].plan.steps)
    h, x = np.zeros((2, 3), np.float32), np.ones((5, 2, 3), np.float32)
    want = h
    for t in range(5):
        want = np.tanh(want * 0.5 + x[t])
    np.testing.assert_allclose(fn(h0=h, xs=x), want, rtol=1e-6)


def test_a_bad_native_setting_is_a_compile_error(monkeypatch):
    with gc.Graph():
        x = gc.placeholder((4, 5), "float32", name="x")
        with pytest.raises(gc.CompileError, match=r"native must be True, False or None: got 'yes'"):
            gc.compile(gc.tanh(x), native="yes")
        monkeypatch.setenv("GRAPHC_NATIVE", "on")
        with pytest.raises(gc.CompileError, match=r"GRAPHC_NATIVE must be 0 or 1 \(or unset\): got 'on'"):
            gc.compile(gc.tanh(x))


def test_graphc_native_0_turns_the_default_off(monkeypatch):
    monkeypatch.setenv("GRAPHC_NATIVE", "0")
    with gc.Graph():
        x = gc.placeholder((96, 80), "float32", name="x")
        fn = gc.compile(gc.tanh(x) * 2.0 + 1.0)
        on = gc.compile(gc.tanh(x) * 2.0 + 1.0, native=True)
    assert not isinstance(steps(fn)[0].kernel, native.NativeKernel)
    native_kernel(on)


# -- the toolchain: building, the disk cache, and what happens without a compiler -------------


def _specs():
    with gc.Graph():
        x = gc.placeholder((96, 80), "float32", name="x")
        node = apply("fused_elementwise", x, body=(("exp", (0,), (), "<f4"), ("negative", (1,), (), "<f4"))).node
    return [native.Spec(node, "k0")]


def test_kernels_are_built_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    first = native.Toolchain()
    assert first.unavailable is None
    ((k, _),) = first.kernels(_specs(), [native.NumpyFallback(None)])
    x, out = np.linspace(-1, 1, 96 * 80, dtype=np.float32).reshape(96, 80), np.empty((96, 80), np.float32)
    assert k(x, out, 0, 96 * 80) is None
    np.testing.assert_allclose(out, -np.exp(x), rtol=1e-6)
    built = sorted(p.name for p in (tmp_path / "cache").iterdir())
    # the glue module and the plan's library, each beside its source; no temporary files
    assert len(built) == 4 and [p.endswith(".c") for p in built] == [True, False, True, False], built
    assert os.stat(tmp_path / "cache").st_mode & 0o777 == 0o700

    second = native.Toolchain()  # a new process, as far as the cache is concerned

    def no_compiler(*args, **kw):
        raise AssertionError("the compiler ran although the module was cached")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    ((k, _),) = second.kernels(_specs(), [native.NumpyFallback(None)])
    out[...] = 0
    assert k(x, out, 0, 96 * 80) is None
    np.testing.assert_allclose(out, -np.exp(x), rtol=1e-6)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == built


def test_a_damaged_cache_entry_is_built_again(tmp_path, monkeypatch):
    """A library in the cache that does not load (a disk error, a half-copied cache) is built
    again. (Damaged in a second cache directory: this process must not have it mapped.)"""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "first"))
    native.Toolchain().kernels(_specs(), [native.NumpyFallback(None)])
    (library,) = [p for p in (tmp_path / "first").iterdir() if p.suffix == ".so" and p.name.count(".") == 1]
    damaged = tmp_path / "second"
    damaged.mkdir(mode=0o700)
    (damaged / library.name).write_bytes(b"\x7fELF but not really")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(damaged))
    ((k, _),) = native.Toolchain().kernels(_specs(), [native.NumpyFallback(None)])
    x, out = np.ones((96, 80), np.float32), np.empty((96, 80), np.float32)
    assert k(x, out, 0, 96 * 80) is None
    np.testing.assert_allclose(out, -np.exp(x), rtol=1e-6)
    assert (damaged / library.name).read_bytes()[:4] == b"\x7fELF" and (damaged / library.name).stat().st_size > 1000


def test_a_cache_directory_others_can_write_is_not_used(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(shared))
    assert "not private" in native.Toolchain().unavailable


def test_without_a_compiler_fused_kernels_stay_numpy(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    toolchain = native.Toolchain()
    assert "does not run" in toolchain.unavailable
    monkeypatch.setattr(BACKEND, "_toolchain", toolchain)
    with gc.Graph():
        x = gc.placeholder((96, 80), "float32", name="x")
        fn = gc.compile(gc.tanh(x) * 2.0 + 1.0)
    xv = np.ones((96, 80), np.float32)
    np.testing.assert_allclose(fn(x=xv), np.tanh(xv) * 2 + 1, rtol=1e-6)
    assert "does not run" in fn.explain()


def test_a_failing_compiler_warns_once_and_numpy_takes_over(tmp_path, monkeypatch):
    fake = tmp_path / "fake-cc"
    fake.write_text("#!/bin/sh\necho 'fake-cc 1.0'\n[ \"$1\" = --version ] && exit 0\necho 'error: no' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(fake))
    toolchain = native.Toolchain()
    assert toolchain.unavailable is None
    monkeypatch.setattr(BACKEND, "_toolchain", toolchain)
    with gc.Graph():
        x = gc.placeholder((96, 80), "float32", name="x")
        with pytest.warns(gc.NativeWarning, match="error: no"):
            fn = gc.compile(gc.tanh(x) * 2.0 + 1.0)
    assert toolchain.failed.startswith("the C compiler failed")
    xv = np.ones((96, 80), np.float32)
    np.testing.assert_allclose(fn(x=xv), np.tanh(xv) * 2 + 1, rtol=1e-6)
    assert "[NumPy: the C compiler failed" in fn.explain()
    assert not list((tmp_path / "cache").glob(".build-*"))  # nothing half-written is left


def _spec_of(op: str):
    with gc.Graph():
        x = gc.placeholder((8, 80), "float32", name="x")
        node = apply("fused_elementwise", x, body=((op, (0,), (), "<f4"), ("negative", (1,), (), "<f4"))).node
    return [native.Spec(node, "k0")]


def test_the_cache_is_kept_under_its_size(tmp_path, monkeypatch):
    """A build that takes the cache past GRAPHC_CACHE_MAX_MB deletes the entries used longest
    ago, never one the process has loaded; loading an entry counts as using it; a deleted entry
    is built again when needed."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(cache))

    def entries() -> set:
        return {p.name.split(".")[0] for p in cache.iterdir() if p.suffix == ".so"} if cache.exists() else set()

    def build(op: str, toolchain=None) -> str:
        """The entry the build of ``op``'s kernel added, by a new process unless given one."""
        before = entries()
        (toolchain or native.Toolchain()).kernels(_spec_of(op), [native.NumpyFallback(None)])
        new = entries() - before
        return new.pop() if len(new) == 1 else new

    glue_and_exp = build("exp")  # (the first build also adds the glue module)
    tanh, sin = build("tanh"), build("sin")
    for p in cache.iterdir():  # everything used an hour ago, tanh two
        age = 7200 if p.name.startswith(tanh) else 3600
        os.utime(p, (p.stat().st_atime - age, p.stat().st_mtime - age))
    monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", str(3.5 * (cache / f"{sin}.so").stat().st_size / (1 << 20)))
    process = native.Toolchain()
    process.kernels(_spec_of("sin"), [native.NumpyFallback(None)])  # loads sin and the glue: uses them
    cos = build("cos", process)  # over the limit: tanh goes first, then exp; sin, the glue and cos stay
    (glue,) = glue_and_exp & entries()  # (exp went second: the glue was used just now)
    assert entries() == {glue, sin, cos}, entries()
    assert tanh not in entries() and not any(p.name.startswith(tanh) for p in cache.iterdir())  # (its source too)
    ((k, _),) = native.Toolchain().kernels(_spec_of("tanh"), [native.NumpyFallback(None)])  # needed again: rebuilt
    x, out = np.ones((8, 80), np.float32), np.empty((8, 80), np.float32)
    assert k(x, out, 0, 8 * 80) is None and np.allclose(out, -np.tanh(1))
    for bad in ("lots", "inf", "-5", "nan"):  # (inf would overflow the byte count)
        monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", bad)
        with pytest.warns(gc.NativeWarning, match="GRAPHC_CACHE_MAX_MB must be a number"):
            assert native.cache_max_bytes() == native.CACHE_MAX_MB << 20
