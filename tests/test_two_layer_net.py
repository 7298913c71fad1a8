"""The lecture's two-layer network (graphs/two_layer_net.py) against a hand-written NumPy version."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

STEPS = 50
LR = 3e-5
N, D_IN, HIDDEN, D_OUT = 64, 1000, 100, 10


def _load_example():
    path = Path(__file__).resolve().parents[1] / "graphs" / "two_layer_net.py"
    spec = importlib.util.spec_from_file_location("two_layer_net", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numpy_step(x, y, w1, w2, lr):
    """One SGD step of the same network, written by hand; returns the pre-update loss."""
    pre = x @ w1
    h = np.maximum(pre, 0)
    y_pred = h @ w2
    diff = y_pred - y
    loss = np.mean(np.sum(diff**2, axis=1))
    grad_y_pred = 2.0 * diff / x.shape[0]
    grad_w2 = h.T @ grad_y_pred
    grad_h = grad_y_pred @ w2.T
    grad_h[pre <= 0] = 0
    grad_w1 = x.T @ grad_h
    return loss, w1 - lr * grad_w1, w2 - lr * grad_w2


def _rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def run():
    """Train both versions for STEPS steps in float64 from the same start; record every step."""
    net = _load_example().build(n_in=D_IN, n_hidden=HIDDEN, n_out=D_OUT, lr=LR, dtype="float64")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, D_IN))
    y = rng.standard_normal((N, D_OUT))
    w1, w2 = net["w1"].value, net["w2"].value
    history = []
    for _ in range(STEPS):
        loss = net["step"](x=x, y=y)
        ref_loss, w1, w2 = _numpy_step(x, y, w1, w2, LR)
        history.append((loss, ref_loss, net["w1"].value, w1, net["w2"].value, w2))
    return net, history, x


def test_build_makes_a_float64_network(run):
    net, _, _ = run
    assert net["x"].dtype == np.float64 and net["x"].shape == (None, D_IN)
    assert net["w1"].shape == (D_IN, HIDDEN) and net["w2"].shape == (HIDDEN, D_OUT)
    assert net["loss"].shape == () and net["loss"].dtype == np.float64
    assert isinstance(net["graph"], gc.Graph)
    assert net["w1"].graph is net["graph"]


def test_matches_numpy_step_by_step(run):
    _, history, _ = run
    assert len(history) == STEPS
    for t, (loss, ref_loss, w1, ref_w1, w2, ref_w2) in enumerate(history):
        assert isinstance(loss, np.ndarray) and loss.dtype == np.float64
        assert abs(float(loss) - ref_loss) / abs(ref_loss) < 1e-9, f"loss at step {t}"
        assert _rel(w1, ref_w1) < 1e-9, f"w1 at step {t}"
        assert _rel(w2, ref_w2) < 1e-9, f"w2 at step {t}"


def test_loss_falls_at_least_tenfold(run):
    _, history, _ = run
    losses = [float(h[0]) for h in history]
    assert losses[0] / losses[-1] >= 10
    assert all(np.isfinite(losses))


def test_predict_shares_the_trained_weights(run):
    net, _, x = run
    pred = net["predict"](x)
    want = np.maximum(x @ net["w1"].value, 0) @ net["w2"].value
    np.testing.assert_allclose(pred, want, rtol=1e-12)
