"""The BLAS GEMM called from C (backends/blas.py, csource.blas_gemm): found and checked once, used
by plain and fused matmuls, accumulating into a variable updated in place; and what runs where
there is no BLAS to call."""

from __future__ import annotations

import platform

import numpy as np
import pytest
from conftest import run_in_threads

import graphc as gc
from graphc.backends import blas, csource, native

TOL = {"float32": 2e-5, "float64": 1e-12}


def _product_step(fn):
    (step,) = [s for s in fn.plan.steps if csource.is_gemm(s.node)]
    return step


def _calls_blas(step) -> bool:
    """The step runs one C function that calls the GEMM (no NumPy product before it)."""
    kernel = step.kernel
    if not isinstance(kernel, native.NativeKernel) or kernel.matmul:
        return False
    return "gemm(101," in csource.function(step.node, "k", blas=True)[1].source


def test_the_blas_numpy_loaded_is_found_and_agrees_with_numpy():
    found = blas.gemm()
    if (platform.system(), platform.machine()) not in blas.ABIS:
        assert found.sgemm is None and platform.system() in found.reason
        return
    assert found.sgemm and found.dgemm, found.reason
    assert "blas" in found.library.lower() or "mkl" in found.library.lower()
    assert blas._agrees(found.sgemm, np.float32) and blas._agrees(found.dgemm, np.float64)


def test_without_a_blas_the_probe_says_why(monkeypatch):
    blas.gemm.cache_clear()
    try:
        monkeypatch.setattr(blas, "_mapped_libraries", lambda: [])
        assert blas.gemm().sgemm is None and "no CBLAS GEMM" in blas.gemm().reason
        blas.gemm.cache_clear()
        if (platform.system(), platform.machine()) in blas.ABIS:
            monkeypatch.undo()
            monkeypatch.setattr(blas, "_agrees", lambda address, dtype: False)
            assert blas.gemm().sgemm is None and "disagrees with np.matmul" in blas.gemm().reason
    finally:
        monkeypatch.undo()
        blas.gemm.cache_clear()
    assert blas.gemm().sgemm is not None or (platform.system(), platform.machine()) not in blas.ABIS


# epilogues of p = op(a) @ op(b): c is (m, n), bias (n,), lr a scalar
EPILOGUES = {
    "plain": (lambda p, c, bias, lr: p, lambda p, c, bias, lr: p),
    "scaled": (lambda p, c, bias, lr: 2.0 * p, lambda p, c, bias, lr: 2.0 * p),
    "sgd": (lambda p, c, bias, lr: c - lr * p, lambda p, c, bias, lr: c - lr * p),
    "momentum": (lambda p, c, bias, lr: -(lr * c) + p / lr, lambda p, c, bias, lr: -(lr * c) + p / lr),
    "bias relu": (lambda p, c, bias, lr: gc.relu(p + bias), lambda p, c, bias, lr: np.maximum(p + bias, 0)),
    "tanh times c": (lambda p, c, bias, lr: gc.tanh(p) * c, lambda p, c, bias, lr: np.tanh(p) * c),
}
AFFINE = {"plain", "scaled", "sgd", "momentum"}  # BLAS's alpha * product + beta * c


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flags", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("epilogue", list(EPILOGUES))
def test_products_call_blas_from_c(epilogue, flags, dtype):
    """Every transpose flag, plain and fused products, both forms of the kernel; against float64."""
    if blas.gemm().sgemm is None:
        pytest.skip(f"no BLAS to call from C here: {blas.gemm().reason}")
    ta, tb = flags
    m, n, k = 37, 29, 23
    build, ref = EPILOGUES[epilogue]
    rng = np.random.default_rng(7)
    av = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    bv = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    cv, biasv = rng.standard_normal((m, n)).astype(dtype), rng.standard_normal(n).astype(dtype)
    with gc.Graph():
        a, b = gc.placeholder(av.shape, dtype, name="a"), gc.placeholder(bv.shape, dtype, name="b")
        c, bias = gc.placeholder((m, n), dtype, name="c"), gc.placeholder((n,), dtype, name="bias")
        lr = gc.placeholder((), dtype, name="lr")
        fn = gc.compile(build(gc.matmul(a, b, transpose_a=ta, transpose_b=tb), c, bias, lr), native=True)
    step = _product_step(fn)
    assert _calls_blas(step), fn.explain()
    source = csource.function(step.node, "k", blas=True)[1].source
    assert ("_epilogue(" in source) == (epilogue not in AFFINE)
    p = (av.T if ta else av).astype(np.float64) @ (bv.T if tb else bv)
    for lrv in (0.25, -3.0):
        got = fn(a=av, b=bv, c=cv, bias=biasv, lr=np.asarray(lrv, dtype))
        want = ref(p, cv.astype(np.float64), biasv, lrv)
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * np.abs(want).max())
    assert step.kernel.numpy is None  # (no call went to NumPy)


def test_a_coefficient_of_zero_at_run_time_goes_to_numpy():
    """BLAS skips C when beta is 0 (and the product when alpha is): NumPy's 0 * NaN is NaN."""
    if blas.gemm().sgemm is None:
        pytest.skip(f"no BLAS to call from C here: {blas.gemm().reason}")
    rng = np.random.default_rng(8)
    av, bv = rng.standard_normal((40, 30)), rng.standard_normal((30, 20))
    cv = rng.standard_normal((40, 20))
    cv[3, 4] = np.nan
    with gc.Graph():
        a, b = gc.placeholder((40, 30), "float64", name="a"), gc.placeholder((30, 20), "float64", name="b")
        c, mu = gc.placeholder((40, 20), "float64", name="c"), gc.placeholder((), "float64", name="mu")
        fn = gc.compile(mu * c + gc.matmul(a, b), native=True)
    step = _product_step(fn)
    assert _calls_blas(step)
    got = fn(a=av, b=bv, c=cv, mu=np.float64(0.5))
    assert step.kernel.numpy is None and np.isnan(got[3, 4])
    got = fn(a=av, b=bv, c=cv, mu=np.float64(0.0))
    assert step.kernel.numpy is not None  # declined: NumPy ran it
    assert np.isnan(got[3, 4]) and np.isnan(got).sum() == 1
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(av @ bv + 0 * cv), rtol=1e-13)


def test_an_output_that_shares_an_operand_is_declined():
    """Called with its output over an operand of the GEMM (a plan never does this), the C function
    declines before writing anything."""
    if blas.gemm().sgemm is None:
        pytest.skip(f"no BLAS to call from C here: {blas.gemm().reason}")
    with gc.Graph():
        a, b = gc.placeholder((16, 16), "float32", name="a"), gc.placeholder((16, 16), "float32", name="b")
        fn = gc.compile(gc.matmul(a, b), native=True)
    kernel = _product_step(fn).kernel
    assert isinstance(kernel, native.NativeKernel)
    av = np.arange(256, dtype=np.float32).reshape(16, 16) / 256
    bv = np.eye(16, dtype=np.float32) * 2
    before = av.copy()
    assert kernel.fn(av, bv, av, 0, 1) is NotImplemented
    np.testing.assert_array_equal(av, before)
    np.testing.assert_allclose(kernel(av, bv, out=av), before * 2)  # (NumPy's kernel copes)


def _train(native_on: bool, update, steps: int = 3, shape=(30, 20)):
    """A two-layer net trained by ``update(w, g, lr)`` for each weight; the weights after ``steps``."""
    rng = np.random.default_rng(9)
    w0 = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    v0 = (rng.standard_normal((shape[1], 5)) * 0.1).astype(np.float32)
    xb = (rng.standard_normal((64, shape[0])) * 5 / np.sqrt(shape[0])).astype(np.float32)
    yb = rng.standard_normal((64, 5)).astype(np.float32)
    with gc.Graph():
        x, y = gc.placeholder(xb.shape, "float32", name="x"), gc.placeholder(yb.shape, "float32", name="y")
        w, v = gc.variable(w0.copy(), name="w"), gc.variable(v0.copy(), name="v")
        h = gc.relu(x @ w)
        loss = gc.mean(gc.sum((h @ v - y) ** 2, axis=1))
        gw, gv = gc.grad(loss, [w, v])
        step = gc.compile(loss, updates=[(w, update(w, gw, 0.05)), (v, update(v, gv, 0.05))], native=native_on)
        for _ in range(steps):
            step(x=xb, y=yb)
        in_place = [s for s in step.plan.steps if s.out_variable is not None]
        return w.value, v.value, in_place, (w0, v0, xb, yb)


def _reference(update, w0, v0, xb, yb, steps: int = 3):
    w, v, x = w0.astype(np.float64), v0.astype(np.float64), xb.astype(np.float64)
    for _ in range(steps):
        h = np.maximum(x @ w, 0)
        e = 2 * (h @ v - yb) / len(xb)
        gv, gw = h.T @ e, x.T @ ((e @ v.T) * (h > 0))
        w, v = update(w, gw, 0.05), update(v, gv, 0.05)
    return w, v


UPDATES = {  # graphc, NumPy
    "sgd": (lambda w, g, lr: w - lr * g, lambda w, g, lr: w - lr * g),
    "clipped": (lambda w, g, lr: gc.clip(w - lr * g, -0.15, 0.15), lambda w, g, lr: np.clip(w - lr * g, -0.15, 0.15)),
}


@pytest.mark.parametrize("native_on", [True, False])
@pytest.mark.parametrize("update", list(UPDATES))
@pytest.mark.parametrize("shape", [(30, 20), (480, 300)], ids=["small", "blocked"])
def test_a_weight_gradient_updates_its_variable_in_place(update, native_on, shape):
    """``w - lr * x.T @ g`` is one fused matmul writing into w itself: with BLAS, a GEMM that
    accumulates into w; else the product goes to scratch first (w is read by the epilogue)."""
    w, v, in_place, data = _train(native_on, UPDATES[update][0], shape=shape)
    assert {s.node.op for s in in_place} == {"fused_matmul"} and len(in_place) == 2
    if native_on and blas.gemm().sgemm is not None:
        assert all(_calls_blas(s) for s in in_place)
        assert all(s.kernel.numpy is None for s in in_place)
    want_w, want_v = _reference(UPDATES[update][1], *data)
    np.testing.assert_allclose(w, want_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(v, want_v, rtol=1e-4, atol=1e-6)


def test_without_blas_products_run_as_before(monkeypatch):
    """No BLAS to call: a fused matmul is NumPy's GEMM then the C epilogue (into scratch when it
    reads the variable it updates); a plain matmul stays NumPy's and explain says why."""
    monkeypatch.setattr(native.blas, "gemm", lambda: blas.Gemm(reason="none in this test"))
    w, v, in_place, data = _train(True, UPDATES["sgd"][0])
    assert all(isinstance(s.kernel, native.NativeKernel) and s.kernel.matmul for s in in_place)
    want_w, want_v = _reference(UPDATES["sgd"][1], *data)
    np.testing.assert_allclose(w, want_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(v, want_v, rtol=1e-4, atol=1e-6)
    with gc.Graph():
        a, b = gc.placeholder((40, 30), "float32", name="a"), gc.placeholder((30, 20), "float32", name="b")
        fn = gc.compile(gc.matmul(a, b), native=True)
    step = _product_step(fn)
    assert not isinstance(step.kernel, native.NativeKernel)
    assert "no BLAS to call from C" in fn.explain()


def test_a_variable_read_by_the_gemm_is_not_updated_in_place():
    """``w - lr * w @ x``: the GEMM reads w, so the update cannot be written into w while it runs."""
    rng = np.random.default_rng(10)
    w0, xv = rng.standard_normal((24, 24)), rng.standard_normal((24, 24))
    for native_on in (True, False):
        with gc.Graph():
            w = gc.variable(w0.copy(), name="w")
            x = gc.placeholder((24, 24), "float64", name="x")
            step = gc.compile(gc.sum(w), updates=[(w, w - 0.1 * gc.matmul(w, x))], native=native_on)
            step(x=xv)
            assert not any(s.out_variable is not None for s in step.plan.steps)
            np.testing.assert_allclose(w.value, w0 - 0.1 * w0 @ xv, rtol=1e-12)


def test_products_from_many_threads_at_once():
    """BLAS is called from C with the GIL released: calls from several threads at once, each with
    its own arena, give each its own result."""
    rng = np.random.default_rng(12)
    wv, bv = rng.standard_normal((96, 80)).astype(np.float32), rng.standard_normal(80).astype(np.float32)
    with gc.Graph():
        x = gc.placeholder((128, 96), "float32", name="x")
        fn = gc.compile(gc.relu(x @ gc.variable(wv, name="w") + gc.variable(bv, name="b")), native=True)
    if blas.gemm().sgemm is not None:
        assert _calls_blas(_product_step(fn))
    inputs = [rng.standard_normal((128, 96)).astype(np.float32) for _ in range(4)]
    wants = [np.maximum(v.astype(np.float64) @ wv + bv, 0) for v in inputs]

    def work(i):
        for _ in range(20):
            np.testing.assert_allclose(fn(x=inputs[i]), wants[i], rtol=1e-4, atol=1e-4)

    assert run_in_threads(work) == []


def test_a_declined_in_place_update_is_done_by_numpy():
    """A learning rate of 0 at run time: the GEMM kernel declines before writing (BLAS would skip
    the product), and NumPy's kernel updates the variable in place instead, reading it first."""
    rng = np.random.default_rng(13)
    w0, xv, gv = rng.standard_normal((40, 24)), rng.standard_normal((64, 40)), rng.standard_normal((64, 24))
    with gc.Graph():
        w = gc.variable(w0.copy(), name="w")
        x, g = gc.placeholder((64, 40), "float64", name="x"), gc.placeholder((64, 24), "float64", name="g")
        lr = gc.placeholder((), "float64", name="lr")
        step = gc.compile(gc.sum(w), updates=[(w, w - lr * gc.matmul(x, g, transpose_a=True))], native=True)
    (update,) = [s for s in step.plan.steps if s.out_variable is not None]
    step(x=xv, g=gv, lr=np.float64(0.5))
    np.testing.assert_allclose(w.value, w0 - 0.5 * xv.T @ gv, rtol=1e-12)
    if blas.gemm().sgemm is not None:
        assert _calls_blas(update) and update.kernel.numpy is None
    step(x=xv, g=gv, lr=np.float64(0.0))
    np.testing.assert_allclose(w.value, w0 - 0.5 * xv.T @ gv, rtol=1e-12)  # unchanged
    step(x=xv, g=gv, lr=np.float64(-0.5))
    np.testing.assert_allclose(w.value, w0, rtol=1e-12, atol=1e-12)
    if blas.gemm().sgemm is not None:
        assert update.kernel.numpy is not None  # (the lr=0 call went to NumPy)


def test_explain_says_how_a_product_runs():
    """explain names the kind of C kernel of each product, so that a user sees the SGD update go
    into its GEMM."""
    if blas.gemm().sgemm is None:
        pytest.skip(f"no BLAS to call from C here: {blas.gemm().reason}")
    with gc.Graph():
        x, g = gc.placeholder((64, 40), "float32", name="x"), gc.placeholder((64, 24), "float32", name="g")
        w = gc.variable(np.zeros((40, 24), np.float32), name="w")
        one = gc.placeholder((1, 40), "float32", name="one")
        update = w - 0.1 * gc.matmul(x, g, transpose_a=True)
        step = gc.compile([gc.relu(x @ w), gc.matmul(one, w, name="row")], updates=[(w, update)], native=True)
    kernels = {k["node"]: k for k in step.explain(format="json")["plans"][0]["kernels"]}
    assert kernels["relu"]["c_kernel"] == "BLAS GEMM, then the epilogue"
    assert kernels["row"]["c_kernel"] == "product in C (few rows)"
    (sgd,) = [k for k in kernels.values() if k.get("writes_variable") == "w"]
    assert sgd["c_kernel"] == "BLAS GEMM accumulating into the output"
    assert "[C: BLAS GEMM accumulating into the output]" in step.explain()
