"""graphc.optim against hand-written NumPy versions of PyTorch's update formulas, in float64.

The references below transcribe ``torch.optim`` (SGD, Adam, AdamW, RMSprop: single-tensor code
paths) and ``torch.nn.utils.clip_grad_norm_`` line by line; graphc must agree to rtol 1e-9 over
several steps. Also: state in variables (names, checkpoints), parameter selection, and an MLP
that learns.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

STEPS = 6


# -- NumPy references (PyTorch's formulas) -------------------------------------------------------
def clip_ref(grads: dict, max_norm: float) -> tuple[dict, float]:
    norm = float(np.sqrt(sum(np.sum(g**2) for g in grads.values())))
    coef = min(max_norm / (norm + 1e-6), 1.0)
    return {k: g * coef for k, g in grads.items()}, norm


def sgd_ref(p, g, state, t, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        buf = g.copy() if t == 1 else momentum * state["buf"] + g
        state["buf"] = buf
        g = g + momentum * buf if nesterov else buf
    return p - lr * g


def adam_ref(p, g, state, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    if weight_decay and decoupled:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    m = state.get("m", np.zeros_like(p))
    v = state.get("v", np.zeros_like(p))
    m = m + (g - m) * (1 - beta1)  # exp_avg.lerp_(grad, 1 - beta1)
    v = v * beta2 + (1 - beta2) * g * g
    state["m"], state["v"] = m, v
    step_size = lr / (1 - beta1**t)
    denom = np.sqrt(v) / np.sqrt(1 - beta2**t) + eps
    return p - step_size * m / denom


def rmsprop_ref(p, g, state, t, lr, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0):
    if weight_decay:
        g = g + weight_decay * p
    sq = state.get("sq", np.zeros_like(p)) * alpha + (1 - alpha) * g * g
    state["sq"] = sq
    if centered:
        ga = state.get("ga", np.zeros_like(p))
        ga = ga + (g - ga) * (1 - alpha)
        state["ga"] = ga
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if momentum:
        buf = state.get("buf", np.zeros_like(p)) * momentum + g / avg
        state["buf"] = buf
        return p - lr * buf
    return p - lr * g / avg


CASES = {
    "sgd": (lambda: gc.optim.SGD(0.1), lambda *a: sgd_ref(*a, lr=0.1)),
    "sgd_momentum": (lambda: gc.optim.SGD(0.05, momentum=0.9), lambda *a: sgd_ref(*a, lr=0.05, momentum=0.9)),
    "sgd_nesterov_wd": (
        lambda: gc.optim.SGD(0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
        lambda *a: sgd_ref(*a, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
    ),
    "adam": (lambda: gc.optim.Adam(0.01), lambda *a: adam_ref(*a, lr=0.01)),
    "adam_l2": (
        lambda: gc.optim.Adam(0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
        lambda *a: adam_ref(*a, lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
    ),
    "adamw": (lambda: gc.optim.AdamW(0.01), lambda *a: adam_ref(*a, lr=0.01, weight_decay=0.01, decoupled=True)),
    "adamw_strong": (
        lambda: gc.optim.AdamW(0.03, weight_decay=0.5),
        lambda *a: adam_ref(*a, lr=0.03, weight_decay=0.5, decoupled=True),
    ),
    "rmsprop": (lambda: gc.optim.RMSProp(0.01), lambda *a: rmsprop_ref(*a, lr=0.01)),
    "rmsprop_momentum_centered_wd": (
        lambda: gc.optim.RMSProp(0.005, rho=0.9, momentum=0.5, centered=True, weight_decay=0.05),
        lambda *a: rmsprop_ref(*a, lr=0.005, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.05),
    ),
}


# -- a small float64 problem with a hand-written gradient ----------------------------------------
def _problem(rng):
    x = rng.standard_normal((STEPS, 8, 3))  # a different batch every step
    y = rng.standard_normal((STEPS, 8, 4))
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    return x, y, params


def _grads_ref(p, x, y):
    """loss = mean over the batch of 0.5 * sum((tanh(x w + b) - y)^2)."""
    h = np.tanh(x @ p["w"] + p["b"])
    r = (h - y) * (1 - h**2) / len(x)
    return {"w": x.T @ r, "b": r.sum(0)}


def _build(opt, params, clip_norm=None):
    x = gc.placeholder((None, 3), "float64", name="x")
    y = gc.placeholder((None, 4), "float64", name="y")
    w = gc.variable(params["w"], name="w")
    b = gc.variable(params["b"], name="b")
    loss = gc.mean(0.5 * gc.sum((gc.tanh(x @ w + b) - y) ** 2, axis=1), name="loss")
    if clip_norm is not None:
        opt.clip_norm = clip_norm
    step = gc.compile(loss, updates=opt.minimize(loss))
    return step, {"w": w, "b": b}, opt


@pytest.mark.parametrize("clip_norm", [None, 0.05, 100.0], ids=["noclip", "clipped", "clip_inactive"])
@pytest.mark.parametrize("case", list(CASES))
def test_updates_match_pytorch_formulas(case, clip_norm, rng):
    make_opt, ref_update = CASES[case]
    xs, ys, params = _problem(rng)
    step, variables, opt = _build(make_opt(), params, clip_norm)
    ref = {k: v.copy() for k, v in params.items()}
    states = {k: {} for k in ref}
    clipped_any = False
    for t in range(1, STEPS + 1):
        step(x=xs[t - 1], y=ys[t - 1])
        grads = _grads_ref(ref, xs[t - 1], ys[t - 1])
        if clip_norm is not None:
            grads, norm = clip_ref(grads, clip_norm)
            clipped_any |= norm > clip_norm
        ref = {k: ref_update(ref[k], grads[k], states[k], t) for k in ref}
        for k, var in variables.items():
            np.testing.assert_allclose(var.value, ref[k], rtol=1e-9, atol=1e-12, err_msg=f"{case} step {t} {k}")
    assert opt.step.value == STEPS
    assert clipped_any == (clip_norm == 0.05)  # the small clip really clips; the large one never does
    moved = np.abs(variables["w"].value - params["w"]).max()
    assert moved > 1e-4, "the optimizer did not move the weights"


def test_grad_norm_is_exposed_before_clipping(rng):
    xs, ys, params = _problem(rng)
    opt = gc.optim.SGD(0.1, clip_norm=0.01)
    x = gc.placeholder((None, 3), "float64", name="x")
    y = gc.placeholder((None, 4), "float64", name="y")
    w, b = gc.variable(params["w"], name="w"), gc.variable(params["b"], name="b")
    loss = gc.mean(0.5 * gc.sum((gc.tanh(x @ w + b) - y) ** 2, axis=1))
    updates = opt.minimize(loss)
    step = gc.compile(opt.grad_norm, updates=updates)
    norm = step(x=xs[0], y=ys[0])
    _, want = clip_ref(_grads_ref(params, xs[0], ys[0]), 0.01)
    np.testing.assert_allclose(norm, want, rtol=1e-12)
    # one clipped SGD step moves the weights by exactly lr * clip_norm in global norm
    delta = np.sqrt(np.sum((w.value - params["w"]) ** 2) + np.sum((b.value - params["b"]) ** 2))
    np.testing.assert_allclose(delta, 0.1 * 0.01 * want / (want + 1e-6), rtol=1e-9)


def test_state_lives_in_named_non_trainable_variables(rng):
    _, _, params = _problem(rng)
    step, variables, opt = _build(gc.optim.Adam(), params)
    graph = variables["w"].graph
    names = {n.name for n in graph.nodes if n.op == "variable"}
    assert {"adam/step", "adam/m/w", "adam/v/w", "adam/m/b", "adam/v/b"} <= names
    assert {v.name for v in opt.variables} == {"adam/step", "adam/m/w", "adam/v/w", "adam/m/b", "adam/v/b"}
    assert all(not v.node.attrs["trainable"] for v in opt.variables)
    # a second optimizer in the same graph gets its own scope and leaves the first one's state alone
    loss2 = gc.sum(variables["w"] ** 2)
    opt2 = gc.optim.Adam()
    opt2.minimize(loss2)
    assert opt2.name == "adam_1" and opt2.step.name == "adam_1/step"
    assert [p.name for p in gc.optim.trainable_parameters(loss2)] == ["w"]


def test_checkpoint_restores_optimizer_state_and_training_continues_identically(rng, tmp_path):
    xs, ys, params = _problem(rng)

    def build():
        with gc.Graph() as g:
            x = gc.placeholder((None, 3), "float64", name="x")
            y = gc.placeholder((None, 4), "float64", name="y")
            model = gc.nn.Sequential([gc.nn.Dense(5, "tanh", seed=1), gc.nn.BatchNorm(), gc.nn.Dropout(0.3),
                                      gc.nn.Dense(4, seed=2)])  # fmt: skip
            loss = gc.nn.losses.mean_squared_error(model(x, training=True), y)
            step = gc.compile(loss, updates=gc.optim.Adam(0.05, clip_norm=1.0).minimize(loss))
        return g, step, model

    def run(step, model, batches):
        return [(float(step(x=xs[i], y=ys[i])), [v.value for v in model.variables]) for i in batches]

    graph, step, model = build()
    run(step, model, range(3))
    path = tmp_path / "ckpt.json"
    gc.save_checkpoint(graph, path)
    after = run(step, model, range(3, 6))

    gc.restore_checkpoint(graph, path)  # back to step 3 in the same graph
    again = run(step, model, range(3, 6))
    graph2, step2, model2 = build()  # and in a freshly built graph (a new process)
    gc.restore_checkpoint(graph2, path)
    fresh = run(step2, model2, range(3, 6))
    for got in (again, fresh):
        for (loss_a, vars_a), (loss_b, vars_b) in zip(after, got):
            assert loss_a == loss_b
            for a, b in zip(vars_a, vars_b):
                np.testing.assert_array_equal(a, b)
    # the weights alone are not enough: with the optimizer state reset the continuation differs
    gc.restore_checkpoint(graph2, path)
    for v in graph2.variables:
        if v.startswith("adam/"):
            graph2.variables[v] = np.zeros_like(graph2.variables[v])
    reset = run(step2, model2, range(3, 6))
    assert reset[-1][0] != after[-1][0]


def test_explicit_params_and_default_selection(rng):
    w = gc.variable(rng.standard_normal(3), name="w")
    frozen = gc.variable(rng.standard_normal(3), name="frozen", trainable=False)
    blocked = gc.variable(rng.standard_normal(3), name="blocked")
    loss = gc.sum(w * frozen) + gc.sum(gc.stop_gradient(blocked))
    assert [p.name for p in gc.optim.trainable_parameters(loss)] == ["w"]
    before = {v.name: v.value for v in (w, frozen, blocked)}
    gc.compile(loss, updates=gc.optim.SGD(0.1).minimize(loss))()
    np.testing.assert_allclose(w.value, before["w"] - 0.1 * before["frozen"], rtol=1e-6)
    np.testing.assert_array_equal(frozen.value, before["frozen"])
    np.testing.assert_array_equal(blocked.value, before["blocked"])
    # explicit params: only those move
    v = gc.variable(np.ones(2), name="v")
    u = gc.variable(np.ones(2), name="u")
    loss2 = gc.sum(v * u)
    gc.compile(loss2, updates=gc.optim.SGD(1.0).minimize(loss2, params=[u]))()
    np.testing.assert_array_equal(v.value, [1.0, 1.0])
    np.testing.assert_array_equal(u.value, [0.0, 0.0])
    with pytest.raises(gc.GraphError, match="no trainable variable"):
        gc.optim.SGD(0.1).minimize(gc.sum(frozen))


def test_learning_rate_may_be_a_variable_for_schedules():
    w = gc.variable(np.array([1.0, 2.0]), name="w")
    lr = gc.variable(np.float64(0.5), name="lr", trainable=False)
    loss = 0.5 * gc.sum(w * w)  # gradient w
    step = gc.compile(loss, updates=gc.optim.SGD(lr).minimize(loss))
    step()
    np.testing.assert_allclose(w.value, [0.5, 1.0])
    lr.value = 0.25
    step()
    np.testing.assert_allclose(w.value, [0.375, 0.75])


def test_bad_hyperparameters_raise():
    with pytest.raises(gc.GraphError, match="lr"):
        gc.optim.Adam(-1.0)
    with pytest.raises(gc.GraphError, match="nesterov"):
        gc.optim.SGD(0.1, nesterov=True)
    with pytest.raises(gc.GraphError, match="clip_norm"):
        gc.optim.SGD(0.1, clip_norm=0.0)


def test_mlp_with_adam_learns_a_separable_problem():
    rng = np.random.default_rng(3)
    n = 512
    x_all = rng.standard_normal((n, 2)).astype(np.float32)
    y_all = ((x_all[:, 0] ** 2 + x_all[:, 1] ** 2) > 1.0).astype(np.int64)  # a circle: not linearly separable
    x = gc.placeholder((None, 2), name="x")
    y = gc.placeholder((None,), "int64", name="y")
    model = gc.nn.Sequential([gc.nn.Dense(32, "relu"), gc.nn.Dense(32, "relu"), gc.nn.Dense(2)])
    logits = model(x, training=True)
    loss = gc.nn.losses.softmax_cross_entropy(logits, y)
    acc = gc.nn.metrics.accuracy(logits, y)
    step = gc.compile([loss, acc], inputs=[x, y], updates=gc.optim.Adam(0.01).minimize(loss))
    predict = gc.compile(gc.nn.metrics.accuracy(model(x, training=False), y))
    loader = gc.data.DataLoader((x_all, y_all), batch_size=64, seed=0)
    history = gc.nn.fit(step, loader, epochs=40, progress=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert predict(x=x_all, y=y_all) >= 0.95


def test_an_optimizer_subclass_without_update_says_what_it_lacks():
    class Idle(gc.optim.Optimizer):
        pass

    with gc.Graph():
        w = gc.variable(np.ones(3), name="w")
        with pytest.raises(gc.GraphError, match=r"Idle: an Optimizer subclass must define _update"):
            Idle(0.1).minimize(gc.sum(w * w))
