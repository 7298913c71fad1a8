"""Numerical stability: values and gradients stay finite, and right, for extreme inputs.

Each check runs unoptimized (opt_level=0, the ops' own kernels and gradient rules) and optimized
(opt_level=2), so that stability never depends on a rewrite happening to fire.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

OPT_LEVELS = pytest.mark.parametrize("opt_level", [0, 2])
DTYPES = pytest.mark.parametrize("dtype", ["float32", "float64"])

# Rows mixing +-1000 with ordinary values: exp(1000) overflows and exp(-1000) underflows in float64.
EXTREME = np.array([[-1000.0, -1.0, 0.0, 1.0, 1000.0], [1000.0, 999.0, -1000.0, 0.5, 3.0]])
LABELS = np.array([0, 2])  # both pick a logit of -1000: a loss of about 2000
WEIGHTS = np.array([[0.3, -1.2, 0.7, 2.0, -0.4], [1.1, 0.5, -0.9, 0.2, 1.5]])


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}


def _value_and_grad(fn, x_value, dtype, opt_level, weights):
    """fn(x) and the gradient of sum(fn(x) * weights) w.r.t. x, compiled and run."""
    with gc.Graph():
        x = gc.placeholder(x_value.shape, dtype, name="x")
        y = fn(x)
        loss = gc.sum(y * gc.constant(np.asarray(weights, dtype)))
        value, grad = gc.compile([y, gc.grad(loss, x)], opt_level=opt_level)(x=x_value)
    assert value.dtype == grad.dtype == np.dtype(dtype)
    return value, grad


# -- closed forms in float64, written to be exact at the extremes --------------------------------


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _log_softmax(x):
    s = x - x.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _logsumexp(x):
    m = x.max(axis=-1)
    return m + np.log(np.exp(x - m[..., None]).sum(axis=-1))


def _softmax(x):
    return np.exp(_log_softmax(x))


def _softmax_vjp(x, w):
    p = _softmax(x)
    return p * (w - (w * p).sum(axis=-1, keepdims=True))


def _log_softmax_vjp(x, w):
    return w - _softmax(x) * w.sum(axis=-1, keepdims=True)


def _xent(x):
    return -np.take_along_axis(_log_softmax(x), LABELS[:, None], axis=-1)[:, 0]


def _xent_vjp(x, w):
    return w[:, None] * (_softmax(x) - np.eye(x.shape[-1])[LABELS])


# name: (graphc function, value, vector-Jacobian product for the weights, weights' shape)
CASES = {
    "sigmoid": (gc.sigmoid, _sigmoid, lambda x, w: w * _sigmoid(x) * _sigmoid(-x), WEIGHTS),
    "softplus": (gc.softplus, lambda x: np.logaddexp(0, x), lambda x, w: w * _sigmoid(x), WEIGHTS),
    "softmax": (gc.softmax, _softmax, _softmax_vjp, WEIGHTS),
    "log_softmax": (gc.log_softmax, _log_softmax, _log_softmax_vjp, WEIGHTS),
    "logsumexp": (lambda x: gc.logsumexp(x, axis=-1), _logsumexp, lambda x, w: w[:, None] * _softmax(x), WEIGHTS[:, 0]),
    "softmax_cross_entropy": (
        lambda x: gc.softmax_cross_entropy(x, gc.constant(LABELS)),
        _xent,
        _xent_vjp,
        WEIGHTS[:, 0],
    ),
}


@OPT_LEVELS
@DTYPES
@pytest.mark.parametrize("name", list(CASES))
def test_extreme_inputs_give_finite_right_values_and_gradients(name, dtype, opt_level):
    fn, ref, vjp, weights = CASES[name]
    x = EXTREME.astype(dtype).astype(np.float64)
    w = np.asarray(weights, dtype).astype(np.float64)
    with np.errstate(over="ignore", under="ignore"):  # the closed forms are exact regardless
        value, grad = _value_and_grad(fn, x, dtype, opt_level, weights)
        want_value, want_grad = ref(x), vjp(x, w)
    assert np.isfinite(value).all(), value
    assert np.isfinite(grad).all(), grad
    np.testing.assert_allclose(value, want_value, **_tol(dtype))
    np.testing.assert_allclose(grad, want_grad, **_tol(dtype))


@OPT_LEVELS
@DTYPES
def test_logsumexp_gradient_at_800_is_softmax(dtype, opt_level):
    x = np.array([1.0, 2.0, 800.0])
    with gc.Graph():
        xt = gc.placeholder((3,), dtype, name="x")
        lse = gc.logsumexp(xt)
        value, grad, softmax = gc.compile([lse, gc.grad(lse, xt), gc.softmax(xt)], opt_level=opt_level)(x=x)
    assert np.isfinite(value) and np.isfinite(grad).all()
    np.testing.assert_allclose(value, 800.0, rtol=1e-7)
    np.testing.assert_allclose(grad, softmax, **_tol(dtype))
    np.testing.assert_allclose(grad, _softmax(x), **_tol(dtype))
    assert grad[2] == 1.0  # exp(-798) underflows: the rest is (at most) subnormal


@OPT_LEVELS
@DTYPES
@pytest.mark.parametrize("x", [[1e7, 1e7], [3e7, 3e7 - 2.0], [-1e6, -1e6 + 0.5]])
def test_logsumexp_gradient_is_exact_at_large_magnitudes(x, dtype, opt_level):
    """The output's rounding error is absolute (1 at 1e7 in float32): the gradient must not use it."""
    x = np.array(x, dtype).astype(np.float64)
    _, grad = _value_and_grad(gc.logsumexp, x, dtype, opt_level, 1.0)
    np.testing.assert_allclose(grad, _softmax(x), **_tol(dtype))


@OPT_LEVELS
@DTYPES
@pytest.mark.parametrize(
    "fn, x, want",
    [
        (lambda x: gc.where(x > 0, gc.log(x), 0), [-1.0, 0.0, 2.0], [0.0, 0.0, 0.5]),
        (lambda x: gc.where(x > 0, gc.sqrt(x), 0), [-1.0, 0.0, 2.0], [0.0, 0.0, 0.25 * 2**0.5]),
        (lambda x: gc.where(x > 0, x**0.5, 0), [-1.0, 0.0, 2.0], [0.0, 0.0, 0.25 * 2**0.5]),
        (lambda x: gc.where(gc.not_equal(x, 0), 1 / x, 0), [-1.0, 0.0, 2.0], [-1.0, 0.0, -0.25]),
        (lambda x: gc.where(x > -1, gc.log1p(x), 0), [-2.0, -1.0, 2.0], [0.0, 0.0, 1 / 3]),
    ],
    ids=["log", "sqrt", "power", "reciprocal", "log1p"],
)
def test_where_blocks_the_gradient_of_the_branch_not_taken(fn, x, want, dtype, opt_level):
    """The unselected branch is inf or NaN there; its zero upstream gradient must stay zero."""
    with np.errstate(all="ignore"):  # the forward pass of the unselected branch is inf/NaN by design
        _, grad = _value_and_grad(fn, np.array(x), dtype, opt_level, np.ones(3))
    assert np.isfinite(grad).all(), grad
    np.testing.assert_allclose(grad, want, rtol=1e-6)
