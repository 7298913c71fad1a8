"""Registry-driven op tests: every case of every spec in ``op_specs`` is built, compiled and checked.

forward (float64 vs NumPy), inferred vs real shapes and dtypes (float64 and float32), gradients vs
float64 central differences, second order on a subset, bad builds, and meta-tests that keep the
specs in step with ``graphc.ops.REGISTRY``.
"""

from __future__ import annotations

import numpy as np
import pytest
from op_specs import EXEMPT, FD, NONE, SPECS, ZERO, Bad, Case, N, OpSpec

import graphc as gc
from graphc.ops import REGISTRY
from graphc.ops.registry import SOURCE

EPS = 1e-6  # central differences in float64: truncation ~eps**2, rounding ~1e-16 / eps
KIND_DTYPES = {"i": "int64", "b": "bool"}  # float inputs take the dtype under test

# -- building and running one case --------------------------------------------------------------


def _static(shape) -> tuple:
    return tuple(None if isinstance(d, N) else d for d in shape)


def _real(shape) -> tuple:
    return tuple(int(d) for d in shape)


def _placeholders(shapes, dtypes) -> list:
    """One placeholder per input; N dims are None."""
    return [gc.placeholder(_static(s), dt, name=f"in{i}") for i, (s, dt) in enumerate(zip(shapes, dtypes))]


def _dtypes(spec: OpSpec, case: Case, float_dtype="float64") -> list:
    return [float_dtype if d.kind == "f" else KIND_DTYPES[d.kind] for d in spec.domains_for(case)]


def _build(spec: OpSpec, case: Case, float_dtype="float64"):
    """Placeholders for the case's inputs and the op's outputs as a tuple."""
    xs = _placeholders(case.shapes, _dtypes(spec, case, float_dtype))
    out = spec.build(*xs, **case.params)
    return xs, out if isinstance(out, tuple) else (out,)


def _sample(spec: OpSpec, case: Case, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    kinds = {"f": np.float64, "i": np.int64, "b": bool}
    domains = spec.domains_for(case)
    return [np.asarray(d.sample(rng, _real(s)), dtype=kinds[d.kind]) for d, s in zip(domains, case.shapes)]


def _reference(spec: OpSpec, case: Case, arrays) -> tuple:
    with np.errstate(all="ignore"):
        want = spec.ref(*arrays, **case.params)
    return tuple(np.asarray(w) for w in (want if isinstance(want, tuple) else (want,)))


def _feeds(xs, arrays) -> dict:
    return dict(zip(xs, arrays))


def _case_id(spec: OpSpec, case: Case) -> str:
    shapes = ",".join("x".join(f"?{int(d)}" if isinstance(d, N) else str(d) for d in s) or "()" for s in case.shapes)
    params = ",".join(f"{k}={v}" for k, v in case.params.items())
    return f"{spec.label}-{shapes}" + (f"-{params}" if params else "")


def _cases(select=lambda spec, case: True):
    pairs = [(s, c) for s in SPECS for c in s.cases if select(s, c)]
    return pytest.mark.parametrize("spec, case", pairs, ids=[_case_id(s, c) for s, c in pairs])


def _differentiable(spec: OpSpec, case: Case) -> bool:
    return spec.grad != NONE and case.grad


# -- forward values and static types -------------------------------------------------------------


@_cases()
@pytest.mark.parametrize("opt_level", [0, 2])  # 0: the op's own kernel; 2: after fusion and rewrites
def test_forward(spec: OpSpec, case: Case, opt_level):
    with gc.Graph() as graph:
        xs, outs = _build(spec, case)
        assert any(n.op == spec.op for n in graph.nodes), f"the builder made no '{spec.op}' node"
        arrays = _sample(spec, case)
        got = gc.compile(list(outs), opt_level=opt_level)(_feeds(xs, arrays))
    want = _reference(spec, case, arrays)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert g.dtype == w.dtype, f"dtype {g.dtype}, NumPy gives {w.dtype}"
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=spec.rtol, atol=spec.atol)
        else:
            np.testing.assert_array_equal(g, w)


@_cases()
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_static_type(spec: OpSpec, case: Case, dtype):
    """The inferred shape (None where unknown) and dtype match the arrays a call produces."""
    with gc.Graph():
        xs, outs = _build(spec, case, dtype)
        arrays = _sample(spec, case)
        got = gc.compile(list(outs))(_feeds(xs, arrays))
    static = not any(isinstance(d, N) for s in case.shapes for d in s)
    for t, g in zip(outs, got):
        assert t.dtype == g.dtype
        assert len(t.shape) == g.ndim and all(d is None or d == r for d, r in zip(t.shape, g.shape)), (
            f"inferred {t.shape}, got {g.shape}"
        )
        if static:
            assert t.shape == g.shape, "static inputs must give a fully known output shape"
    if dtype == "float32":  # values too: the float32 kernels may not lose more than float32 precision
        rounded = [a.astype(np.float32).astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
        for g, w in zip(got, _reference(spec, case, rounded)):
            if w.dtype.kind == "f":
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-5)
            else:
                np.testing.assert_array_equal(g, w)


# -- gradients --------------------------------------------------------------------------------


def _weighted_loss(outs, shapes, rng):
    """sum(out * w) over the float outputs, with fixed random weights w."""
    terms = [gc.sum(o * gc.constant(rng.standard_normal(s))) for o, s in zip(outs, shapes) if o.dtype.kind == "f"]
    assert terms, "a gradient case needs a float output"
    loss = terms[0]
    for t in terms[1:]:
        loss = loss + t
    return loss


def _numeric_grad(f, xs, arrays, wrt) -> list[np.ndarray]:
    """Central differences of the scalar function ``f(feeds)`` w.r.t. the inputs at ``wrt``."""
    grads = []
    for i in wrt:
        g = np.zeros_like(arrays[i])
        for idx in np.ndindex(arrays[i].shape):
            values = [a.copy() for a in arrays]
            values[i][idx] += EPS
            up = f(_feeds(xs, values))
            values[i][idx] -= 2 * EPS
            down = f(_feeds(xs, values))
            g[idx] = (up - down) / (2 * EPS)
        grads.append(g)
    return grads


def _first_order(spec, case):
    """Builds (in the current graph) the inputs, the weighted loss and its gradients."""
    xs, outs = _build(spec, case)
    arrays = _sample(spec, case)
    shapes = [o.shape for o in gc.compile(list(outs))(_feeds(xs, arrays))]
    rng = np.random.default_rng(1)
    loss = _weighted_loss(outs, shapes, rng)
    wrt = [i for i, x in enumerate(xs) if x.dtype.kind == "f"]
    assert wrt, "a gradient case needs a float input"
    grads = gc.grad(loss, [xs[i] for i in wrt])
    return xs, arrays, wrt, loss, grads


@_cases(_differentiable)
def test_gradient(spec: OpSpec, case: Case):
    with gc.Graph():
        xs, arrays, wrt, loss, grads = _first_order(spec, case)
        got = gc.compile(grads)(_feeds(xs, arrays))
        f = gc.compile(loss)
        want = _numeric_grad(f, xs, arrays, wrt)
    for i, g, w in zip(wrt, got, want):
        assert g.shape == arrays[i].shape and g.dtype == np.float64
        if spec.grad == ZERO:
            np.testing.assert_array_equal(g, 0.0)
            assert np.any(w != 0), "the forward pass depends on the input, the gradient is zero by definition"
        else:
            np.testing.assert_allclose(g, w, rtol=spec.grad_rtol, atol=spec.grad_atol, err_msg=f"input {i}")


@_cases(lambda spec, case: spec.second_order and case.second_order and _differentiable(spec, case))
def test_second_order(spec: OpSpec, case: Case):
    """grad of sum(grad * v) (a Hessian-vector product) vs central differences of sum(grad * v)."""
    with gc.Graph():
        xs, arrays, wrt, loss, grads = _first_order(spec, case)
        rng = np.random.default_rng(2)
        terms = [gc.sum(g * gc.constant(rng.standard_normal(arrays[i].shape))) for i, g in zip(wrt, grads)]
        h = terms[0]
        for t in terms[1:]:
            h = h + t
        got = gc.compile(gc.grad(h, [xs[i] for i in wrt]))(_feeds(xs, arrays))
        want = _numeric_grad(gc.compile(h), xs, arrays, wrt)
    for i, g, w in zip(wrt, got, want):
        assert g.shape == arrays[i].shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"input {i}")


@_cases(lambda spec, case: spec.grad == NONE)
def test_nondifferentiable_gradient_raises(spec: OpSpec, case: Case):
    """Asking for a gradient that can only flow through a non-differentiable op names that op."""
    with gc.Graph():
        xs, outs = _build(spec, case)
        floats = [x for x in xs if x.dtype.kind == "f"]
        loss = gc.sum(gc.cast(outs[0], "float64"))
        if not floats:
            with pytest.raises(gc.GradientError, match="exist only for float tensors"):
                gc.grad(loss, xs[0])
            return
        with pytest.raises(gc.GradientError, match=f"non-differentiable op {spec.op} "):
            gc.grad(loss, floats)


# -- bad builds ---------------------------------------------------------------------------------

BAD = [(s, b) for s in SPECS for b in s.bad]


@pytest.mark.parametrize("spec, bad", BAD, ids=[f"{s.label}-{'-'.join(b.match[1:2])}" for s, b in BAD])
def test_bad_build(spec: OpSpec, bad: Bad):
    with gc.Graph() as graph:
        xs = _placeholders(bad.shapes, bad.dtypes or _dtypes(spec, Case(bad.shapes)))
        before = len(graph.nodes)
        with pytest.raises(gc.GraphcError) as info:
            spec.build(*xs, **bad.params)
    assert type(info.value) is bad.error, f"{type(info.value).__name__}: {info.value}"
    for text in bad.match:
        assert text in str(info.value), f"{text!r} not in {str(info.value)!r}"
    assert not any(n.op == spec.op for n in graph.nodes[before:]), "a failed build left a node behind"


# -- meta-tests: the specs cover the registry ------------------------------------------------------


def test_every_registered_op_has_a_spec():
    specified = {s.op for s in SPECS}
    missing = sorted(set(REGISTRY) - specified - set(EXEMPT))
    assert not missing, f"registered ops without a spec in tests/op_specs.py (or an EXEMPT reason): {missing}"
    assert not set(EXEMPT) & specified, "an op is both specified and exempt"
    assert set(EXEMPT) <= set(REGISTRY), "EXEMPT names an op that is not registered"
    assert set(specified) <= set(REGISTRY), "a spec names an op that is not registered"


def test_every_differentiable_op_has_a_gradient_check():
    checked = {s.op for s in SPECS if s.grad in (FD, ZERO) and any(c.grad for c in s.cases)}
    needed = {n for n, d in REGISTRY.items() if d.differentiable and d.kind != SOURCE}
    missing = sorted(needed - checked - set(EXEMPT))
    assert not missing, f"differentiable ops without a gradient check: {missing}"


def test_gradient_marks_agree_with_the_registry():
    for s in SPECS:
        assert (s.grad != NONE) == REGISTRY[s.op].differentiable, f"{s.op}: spec says {s.grad!r}"


def test_every_spec_has_a_case_with_an_unknown_dim():
    for s in SPECS:
        assert any(isinstance(d, N) for c in s.cases for sh in c.shapes for d in sh), f"{s.op}: no None dim"


def test_gemm_takes_every_layout_and_out_buffer():
    """The 2-D GEMM fast path (np.dot) agrees with np.matmul for transposed views, mixed dtypes and
    an out buffer that is or is not contiguous."""
    from graphc.ops.linalg import gemm

    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7)).astype("float32")
    b = rng.standard_normal((7, 3)).astype("float32")
    for x, y in ((a, b), (a.T.copy().T, b), (a, b.T.copy().T), (a[:, ::1], b.astype("float64"))):
        want = np.matmul(x.astype("float64"), y.astype("float64"))
        out = np.empty((5, 3), np.result_type(x, y))
        assert gemm(np, x, y, out) is out
        np.testing.assert_allclose(out, want, rtol=1e-5)
        strided = np.empty((5, 6), out.dtype)[:, ::2]
        np.testing.assert_allclose(gemm(np, x, y, strided), want, rtol=1e-5)
        np.testing.assert_allclose(gemm(np, x, y), want, rtol=1e-5)
    batched = rng.standard_normal((2, 5, 7)).astype("float32")
    np.testing.assert_allclose(gemm(np, batched, b), np.matmul(batched, b), rtol=1e-6)


# -- maximum/minimum against one value run in blocks on large arrays (NumPy has no SIMD loop) -------
@pytest.mark.parametrize("name", ["maximum", "minimum"])
@pytest.mark.parametrize("dtype, one_dtype", [("float32", "float32"), ("float64", "float64"), ("float32", "float64")])
def test_extremum_against_one_value_on_large_arrays(name, dtype, one_dtype, rng):
    kernel, ufunc = REGISTRY[name].kernel, getattr(np, name)
    x = rng.normal(size=3 * (1 << 16) + 5).astype(dtype)  # several blocks and a partial one
    x[[3, 70000]] = np.nan
    for one in (np.asarray(0.25, one_dtype), np.asarray([[-0.5]], one_dtype), np.asarray(np.nan, one_dtype)):
        for args in ((x, one), (one, x)):  # the one value on either side, as NumPy orders them
            want = ufunc(*args)
            got = kernel(np, *args)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
    y = x.copy()
    kernel(np, y, np.asarray(0.1, dtype), out=y)  # in place
    np.testing.assert_array_equal(y, ufunc(x, np.asarray(0.1, dtype)))
    strided = x[::2]  # not contiguous: NumPy's own loop
    np.testing.assert_array_equal(kernel(np, strided, np.asarray(0.0, dtype)), ufunc(strided, 0.0))
