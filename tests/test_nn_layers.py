"""graphc.nn: layers (shapes, names, lazy variables shared by training and inference calls, values
against NumPy), initializers, losses, metrics and fit."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import nn


def _feed(out, **feeds):
    return gc.compile(out)(**feeds)


# -- Dense, naming, sharing ----------------------------------------------------------------------
def test_dense_shapes_names_and_values(rng):
    x = gc.placeholder((None, 5), "float64", name="x")
    layer = nn.Dense(3, activation="relu")
    y = layer(x)
    assert y.shape == (None, 3) and y.dtype == np.float64
    assert [v.name for v in layer.variables] == ["dense/kernel", "dense/bias"]
    assert layer.kernel.shape == (5, 3) and layer.bias.shape == (3,)
    assert layer.variables == layer.trainable_variables and layer.count_params() == 18
    xv = rng.standard_normal((7, 5))
    want = np.maximum(xv @ layer.kernel.value + layer.bias.value, 0)
    np.testing.assert_allclose(_feed(y, x=xv), want, rtol=1e-12)
    z = nn.Dense(2, use_bias=False)(gc.placeholder((4, 6, 3), "float32"))  # leading dims are kept
    assert z.shape == (4, 6, 2) and z.dtype == np.float32


def test_training_and_inference_calls_share_variables(rng):
    x = gc.placeholder((None, 4), "float64", name="x")
    y = gc.placeholder((None,), "int64", name="y")
    model = nn.Sequential([nn.Dense(8, "tanh"), nn.Dense(3)])
    train_logits = model(x, training=True)
    n_vars = sum(n.op == "variable" for n in x.graph.nodes)
    infer_logits = model(x, training=False)
    assert sum(n.op == "variable" for n in x.graph.nodes) == n_vars == 4  # the second call made none
    loss = nn.losses.softmax_cross_entropy(train_logits, y)
    step = gc.compile(loss, updates=gc.optim.SGD(0.5).minimize(loss))
    predict = gc.compile(infer_logits)
    xv, yv = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    before = predict(x=xv)
    for _ in range(3):
        step(x=xv, y=yv)
    after = predict(x=xv)
    w1, b1, w2, b2 = (v.value for v in model.variables)
    np.testing.assert_allclose(after, np.tanh(xv @ w1 + b1) @ w2 + b2, rtol=1e-12)  # sees the trained weights
    assert not np.allclose(before, after)


def test_layer_names_are_unique_and_initial_values_deterministic():
    def build():
        with gc.Graph() as g:
            x = gc.placeholder((None, 3), name="x")
            layers = [nn.Dense(4), nn.Dense(4), nn.Dense(4, seed=5)]
            for layer in layers:
                layer(x)
        return g, layers

    g1, l1 = build()
    g2, l2 = build()
    assert [layer.name for layer in l1] == ["dense", "dense_1", "dense_2"]
    for a, b in zip(l1, l2):
        np.testing.assert_array_equal(a.kernel.value, b.kernel.value)  # same code, same weights
    assert not np.array_equal(l1[0].kernel.value, l1[1].kernel.value)
    np.testing.assert_array_equal(l1[2].kernel.value, nn.init.glorot_uniform((3, 4), np.random.default_rng(5)))
    with g1:
        with pytest.raises(gc.GraphError, match="dense 'dense': a layer or optimizer of this name already exists"):
            nn.Dense(2, name="dense")(gc.placeholder((None, 3)))
        named = nn.Dense(2, name="head")
        named(gc.placeholder((None, 3)))
        assert named.kernel.name == "head/kernel"


def test_layer_errors():
    x = gc.placeholder((None, 4), name="x")
    with pytest.raises(gc.ShapeError, match=r"dense 'dense'.*feature dim.*must be known"):
        nn.Dense(2)(gc.placeholder((None, None)))
    layer = nn.Dense(2)
    layer(x)
    with pytest.raises(gc.ShapeError, match=r"does not match.*expected feature dim 4"):
        layer(gc.placeholder((None, 5)))
    with gc.Graph("other"):
        with pytest.raises(gc.GraphError, match="belongs to graph 'default'"):
            layer(gc.placeholder((None, 4)))
    with pytest.raises(gc.GraphError, match="training must be a Python bool"):
        layer(x, training=gc.placeholder((), "bool"))
    with pytest.raises(gc.DTypeError, match="must be float"):
        nn.Dense(2)(gc.placeholder((None, 4), "int32"))
    with pytest.raises(gc.GraphError, match="unknown activation"):
        nn.Dense(2, activation="swishy")
    with pytest.raises(gc.GraphError, match="unknown initializer"):
        nn.Dense(2, kernel_initializer="nope")(x)


def test_summary_lists_layers_shapes_and_params():
    model = nn.Sequential([nn.Dense(16, "relu"), nn.ReLU(), nn.Dense(10), nn.Softmax()])
    assert "not built" in model.summary()
    model(gc.placeholder((None, 8)))
    text = model.summary()
    assert 'Model: "sequential"' in text
    assert "dense (Dense)" in text and "(None, 16)" in text and "144" in text
    assert "relu (ReLU)" in text and "dense_1 (Dense)" in text and "170" in text
    assert "total params: 314 (trainable 314, non-trainable 0)" in text
    assert len(model) == 4 and model[2].name == "dense_1"


# -- initializers --------------------------------------------------------------------------------
def test_initializers_are_seeded_and_scaled():
    init = nn.init
    for name in ("glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "normal", "uniform"):
        fn = init.get(name)
        a, b = fn((40, 30), seed=3), fn((40, 30), seed=3)
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and not np.array_equal(a, fn((40, 30), seed=4))
        assert fn((2, 2), seed=0, dtype="float64").dtype == np.float64
    shape = (400, 300)
    limit = math.sqrt(6 / 700)
    g = init.glorot_uniform(shape, seed=0)
    assert g.min() >= -limit and g.max() < limit and g.max() > 0.99 * limit
    assert abs(init.glorot_normal(shape, seed=0).std() - math.sqrt(2 / 700)) < 0.02 * math.sqrt(2 / 700)
    assert abs(init.he_normal(shape, seed=0).std() - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400)
    assert abs(init.he_uniform(shape, seed=0).max() - math.sqrt(6 / 400)) < 0.01
    assert init.fans((16, 8, 3, 3)) == (72, 144)  # conv OIHW: fan_in = C * kh * kw
    np.testing.assert_array_equal(init.zeros((2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(init.ones(4, dtype="float64"), np.ones(4))
    rng = np.random.default_rng(9)
    assert not np.array_equal(init.normal(5, rng), init.normal(5, rng))  # a Generator advances
    with pytest.raises(gc.GraphError, match="unknown initializer"):
        init.get("orthogonal")


# -- losses and metrics --------------------------------------------------------------------------
def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_softmax_cross_entropy_int_onehot_and_soft_labels(rng):
    z = rng.standard_normal((6, 4)) * 3
    labels = rng.integers(0, 4, 6)
    logits = gc.placeholder((None, 4), "float64", name="z")
    ids = gc.placeholder((None,), "int64", name="ids")
    dense = gc.placeholder((None, 4), "float64", name="p")
    want = -_log_softmax(z)[np.arange(6), labels].mean()
    f = gc.compile([nn.losses.softmax_cross_entropy(logits, ids), nn.losses.softmax_cross_entropy(logits, dense),
                    nn.losses.softmax_cross_entropy(logits, ids, reduction="none")])  # fmt: skip
    got_int, got_onehot, per_example = f(z=z, ids=labels, p=np.eye(4)[labels])
    np.testing.assert_allclose([got_int, got_onehot], [want, want], rtol=1e-12)
    assert per_example.shape == (6,)
    soft = rng.dirichlet(np.ones(4), 6)
    got_soft = gc.compile(nn.losses.softmax_cross_entropy(logits, dense))(z=z, p=soft)
    np.testing.assert_allclose(got_soft, -(soft * _log_softmax(z)).sum(-1).mean(), rtol=1e-12)
    # stable for huge logits, in value and gradient
    loss = nn.losses.softmax_cross_entropy(logits, dense)
    value, grad = gc.compile([loss, gc.grad(loss, logits)])(z=np.array([[1000.0, -1000.0, 0, 0]]), p=[[0, 1, 0, 0]])
    assert np.isfinite(value) and np.isclose(value, 2000.0) and np.all(np.isfinite(grad))
    with pytest.raises(gc.ShapeError, match="labels must be"):
        nn.losses.softmax_cross_entropy(logits, gc.placeholder((None, 3), "float64"))


def test_binary_cross_entropy_with_logits_is_stable_with_the_right_gradient():
    z = np.array([-1000.0, -30.0, -1.5, 0.0, 0.7, 30.0, 1000.0])
    t = np.array([1.0, 0.0, 1.0, 0.3, 0.0, 1.0, 0.0])
    logits = gc.placeholder((None,), "float64", name="z")
    targets = gc.placeholder((None,), "float64", name="t")
    loss = nn.losses.binary_cross_entropy_with_logits(logits, targets)
    with np.errstate(over="ignore"):  # sigmoid's kernel overflows exp(1000) to inf, rightly giving 0
        value, grad = gc.compile([loss, gc.grad(loss, logits)])(z=z, t=t)
    want = np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))
    np.testing.assert_allclose(value, want, rtol=1e-12)
    sigmoid = np.exp(-np.logaddexp(0, -z))
    np.testing.assert_allclose(grad, (sigmoid - t) / len(z), rtol=1e-12, atol=1e-16)  # also 0.5 - t at z = 0


def test_mean_squared_error_and_reductions(rng):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    p = gc.placeholder((3, 4), "float64", name="p")
    q = gc.placeholder((3, 4), "float64", name="q")
    f = gc.compile([nn.losses.mean_squared_error(p, q), nn.losses.mean_squared_error(p, q, reduction="sum")])
    np.testing.assert_allclose(f(p=a, q=b), [np.mean((a - b) ** 2), np.sum((a - b) ** 2)], rtol=1e-12)
    with pytest.raises(gc.GraphError, match="reduction"):
        nn.losses.mean_squared_error(p, q, reduction="max")


def test_accuracy_with_int_and_onehot_labels():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    s = gc.placeholder((None, 2), "float64", name="s")
    ids = gc.placeholder((None,), "int32", name="ids")
    onehot = gc.placeholder((None, 2), "float32", name="onehot")
    f = gc.compile([nn.metrics.accuracy(s, ids), nn.metrics.accuracy(s, onehot)])
    assert f(s=scores, ids=labels, onehot=np.eye(2)[labels]) == [0.75, 0.75]


# -- fit -----------------------------------------------------------------------------------------
def _tiny_training(rng):
    x_all = rng.standard_normal((64, 3)).astype(np.float32)
    y_all = (x_all.sum(1) > 0).astype(np.int64)
    x = gc.placeholder((None, 3), name="x")
    y = gc.placeholder((None,), "int64", name="y")
    model = nn.Sequential([nn.Dense(2)])
    logits = model(x, training=True)
    loss = nn.losses.softmax_cross_entropy(logits, y)
    step = gc.compile({"loss": loss, "accuracy": nn.metrics.accuracy(logits, y)},
                      updates=gc.optim.SGD(0.5).minimize(loss))  # fmt: skip
    val = gc.compile([nn.losses.softmax_cross_entropy(model(x), y), nn.metrics.accuracy(model(x), y)],
                     inputs=[x, y])  # fmt: skip
    loader = gc.data.DataLoader({"x": x_all, "y": y_all}, batch_size=16)
    return step, val, loader, (x_all, y_all)


def test_fit_records_history_and_validation(rng):
    step, val, loader, (x_all, y_all) = _tiny_training(rng)
    history = nn.fit(step, loader, epochs=4, val_fn=val, val_data=(x_all, y_all), progress=False)
    assert history.epochs == 4
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] >= 0.9
    np.testing.assert_allclose(history["val_loss"][-1], val(x_all, y_all)[0], rtol=1e-6)
    with pytest.raises(gc.GraphcError, match="val_fn and val_data"):
        nn.fit(step, loader, val_fn=val)


def test_fit_progress_bar_with_and_without_tqdm(rng, capsys, monkeypatch):
    step, _, loader, _ = _tiny_training(rng)
    nn.fit(step, loader, epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "loss=" in err and "accuracy=" in err
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    history = nn.fit(step, loader, epochs=1, progress=True)
    assert capsys.readouterr().err == "" and history.epochs == 1


def test_fit_progress_bar_leaves_the_training_unchanged():
    """The bar must not iterate the loader itself: tqdm.auto's asyncio tqdm calls ``iter()`` on what
    it wraps when it is created, which started a second DataLoader epoch per epoch (another shuffle,
    and a prefetching thread running the transform on batches never used)."""
    histories = []
    for progress in (False, True):
        gc.reset_default_graph()
        step, _, loader, _ = _tiny_training(np.random.default_rng(0))
        histories.append(nn.fit(step, loader, epochs=3, progress=progress).history)
        assert loader.epoch == 3  # one pass over the loader per epoch
    assert histories[0] == histories[1]


# -- layers over the convolution / normalization / random ops ------------------------------------
def _conv_ref(x, w, stride=1, padding=0, groups=1):
    """Cross-correlation, NCHW x OIHW, by explicit loops over the kernel window (float64)."""
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, f, oh, ow))
    fg = f // groups
    for o in range(f):
        g = o // fg
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg : (g + 1) * cg, i : i + stride * oh : stride, j : j + stride * ow : stride]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    return out


def _pool_ref(x, k, reduce):
    n, c, h, w = x.shape
    return reduce(x[:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k), axis=(3, 5))


def test_conv2d_layer(rng):
    x = gc.placeholder((None, 4, 9, 8), "float64", name="x")
    conv = nn.Conv2D(6, 3, stride=2, padding=1, groups=2, activation="relu")
    y = conv(x)
    assert conv.kernel.shape == (6, 2, 3, 3) and conv.bias.shape == (6,)
    assert y.shape == (None, 6, 5, 4)
    xv = rng.standard_normal((2, 4, 9, 8))
    want = np.maximum(_conv_ref(xv, conv.kernel.value, 2, 1, 2) + conv.bias.value[:, None, None], 0)
    np.testing.assert_allclose(_feed(y, x=xv), want, rtol=1e-10, atol=1e-12)
    with pytest.raises(gc.ShapeError, match="divisible by groups"):
        nn.Conv2D(4, 3, groups=3)(x)
    with pytest.raises(gc.ShapeError, match="NCHW"):
        nn.Conv2D(4, 3)(gc.placeholder((None, 4, 9), "float64"))


def test_pooling_and_flatten_layers(rng):
    xv = rng.standard_normal((2, 3, 6, 4))
    x = gc.placeholder((None, 3, 6, 4), "float64", name="x")
    outs = [nn.MaxPool2D(2)(x), nn.AvgPool2D(2)(x), nn.GlobalAvgPool2D()(x), nn.Flatten()(x)]
    assert [o.shape for o in outs] == [(None, 3, 3, 2), (None, 3, 3, 2), (None, 3), (None, 72)]
    got = gc.compile(outs)(x=xv)
    np.testing.assert_allclose(got[0], _pool_ref(xv, 2, np.max), rtol=1e-12)
    np.testing.assert_allclose(got[1], _pool_ref(xv, 2, np.mean), rtol=1e-12)
    np.testing.assert_allclose(got[2], xv.mean((2, 3)), rtol=1e-12)
    np.testing.assert_array_equal(got[3], xv.reshape(2, 72))


def test_batch_norm_training_updates_running_stats_inference_uses_them(rng):
    x = gc.placeholder((None, 3, 2, 2), "float64", name="x")
    bn = nn.BatchNorm(momentum=0.1, eps=1e-5)
    train_out, infer_out = bn(x, training=True), bn(x, training=False)
    assert [v.name for v in bn.variables] == ["batch_norm/gamma", "batch_norm/beta", "batch_norm/running_mean",
                                              "batch_norm/running_var"]  # fmt: skip
    assert [v.name for v in bn.trainable_variables] == ["batch_norm/gamma", "batch_norm/beta"]
    bn.gamma.value, bn.beta.value = [1.0, 2.0, 0.5], [0.0, -1.0, 3.0]
    xv = rng.standard_normal((5, 3, 2, 2)) * 2 + 1
    train, infer = gc.compile(train_out), gc.compile(infer_out)
    infer(x=xv)  # inference leaves the running statistics alone
    np.testing.assert_array_equal(bn.running_mean.value, np.zeros(3))
    got = train(x=xv)
    mean, var = xv.mean((0, 2, 3)), xv.var((0, 2, 3))
    g, b = bn.gamma.value[:, None, None], bn.beta.value[:, None, None]
    np.testing.assert_allclose(got, (xv - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5) * g + b,
                               rtol=1e-10, atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(bn.running_mean.value, 0.1 * mean, rtol=1e-12)
    n = xv.size // 3
    np.testing.assert_allclose(bn.running_var.value, 0.9 + 0.1 * var * n / (n - 1), rtol=1e-12)  # unbiased
    rm, rv = bn.running_mean.value, bn.running_var.value
    np.testing.assert_allclose(infer(x=xv), (xv - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5) * g + b,
                               rtol=1e-10, atol=1e-12)  # fmt: skip
    feats = gc.placeholder((None, 4), name="feats")  # (N, F) features normalize over axis 1 too
    assert nn.BatchNorm()(feats, training=True).shape == (None, 4)


def test_layer_norm_layer(rng):
    x = gc.placeholder((None, 3, 5), "float64", name="x")
    ln = nn.LayerNorm()
    y = ln(x)
    assert [v.shape for v in ln.variables] == [(5,), (5,)]
    ln.gamma.value, ln.beta.value = np.arange(1.0, 6.0), np.full(5, 0.5)
    xv = rng.standard_normal((2, 3, 5))
    mu, var = xv.mean(-1, keepdims=True), xv.var(-1, keepdims=True)
    np.testing.assert_allclose(_feed(y, x=xv), (xv - mu) / np.sqrt(var + 1e-5) * np.arange(1.0, 6.0) + 0.5,
                               rtol=1e-10)  # fmt: skip


def test_dropout_layer_drops_in_training_only_and_advances():
    x = gc.placeholder((None, 1000), "float64", name="x")
    drop = nn.Dropout(0.25)
    train, infer = gc.compile(drop(x, training=True)), gc.compile(drop(x, training=False))
    xv = np.ones((4, 1000))
    a, b = train(x=xv), train(x=xv)
    for out in (a, b):
        kept = out != 0
        assert abs(kept.mean() - 0.75) < 0.03
        np.testing.assert_allclose(out[kept], 1 / 0.75)
    assert not np.array_equal(a, b)  # the random state advances at every call
    np.testing.assert_array_equal(infer(x=xv), xv)
    assert drop(x, training=False) is x  # inference builds nothing
    with pytest.raises(gc.GraphError, match="rate"):
        nn.Dropout(1.0)


def test_embedding_layer_looks_up_and_trains_only_used_rows(rng):
    ids = gc.placeholder((None, 3), "int64", name="ids")
    emb = nn.Embedding(10, 4, dtype="float64")
    out = emb(ids)
    assert out.shape == (None, 3, 4) and emb.table.shape == (10, 4)
    table = emb.table.value
    idv = np.array([[1, 2, 1], [7, 7, 0]])
    np.testing.assert_array_equal(_feed(out, ids=idv), table[idv])
    loss = gc.sum(out)
    gc.compile(loss, updates=gc.optim.SGD(0.1).minimize(loss))(ids=idv)
    moved = np.any(emb.table.value != table, axis=1)
    assert moved.tolist() == [i in (0, 1, 2, 7) for i in range(10)]
    with pytest.raises(gc.DTypeError, match="ids must be integers"):
        nn.Embedding(10, 4)(gc.placeholder((None,), "float32"))


def test_gelu_layer(rng):
    from math import erf

    x = gc.placeholder((None,), "float64", name="x")
    xv = rng.standard_normal(20) * 3
    want = 0.5 * xv * (1 + np.array([erf(v / math.sqrt(2)) for v in xv]))
    np.testing.assert_allclose(_feed(nn.GELU()(x), x=xv), want, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(_feed(nn.Activation("gelu")(x), x=xv), want, rtol=1e-7, atol=1e-10)


def test_small_cnn_trains_and_shares_weights_between_modes(rng):
    x = gc.placeholder((None, 1, 8, 8), name="x")
    y = gc.placeholder((None,), "int64", name="y")
    model = nn.Sequential([
        nn.Conv2D(4, 3, padding=1), nn.BatchNorm(), nn.ReLU(), nn.MaxPool2D(2),
        nn.Conv2D(8, 3, padding=1, activation="relu"), nn.AvgPool2D(2),
        nn.Flatten(), nn.Dropout(0.1), nn.Dense(3),
    ])  # fmt: skip
    logits = model(x, training=True)
    n_vars = len(x.graph.variables)
    probs = gc.softmax(model(x, training=False))
    assert len(x.graph.variables) == n_vars  # the inference call created nothing
    assert [layer.output_shape for layer in model.layers][-3:] == [(None, 32), (None, 32), (None, 3)]
    text = model.summary()
    assert "conv2d (Conv2D)" in text and "(None, 4, 8, 8)" in text and "non-trainable 8" in text
    loss = nn.losses.softmax_cross_entropy(logits, y)
    step = gc.compile(loss, updates=gc.optim.Adam(0.01).minimize(loss))
    predict = gc.compile(probs)
    xv = rng.standard_normal((24, 1, 8, 8)).astype(np.float32)
    yv = (xv[:, 0, :4].sum((1, 2)) > xv[:, 0, 4:].sum((1, 2))).astype(np.int64) + (xv[:, 0, 0, 0] > 1)
    first = predict(x=xv)
    losses = [step(x=xv, y=yv) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert not np.allclose(first, predict(x=xv))  # inference reads the trained weights
    np.testing.assert_allclose(predict(x=xv).sum(1), 1, rtol=1e-5)


def test_a_layer_subclass_without_call_says_what_it_lacks():
    class Nothing(gc.nn.Layer):
        pass

    with gc.Graph():
        x = gc.placeholder((None, 3), name="x")
        with pytest.raises(gc.GraphError, match=r"Nothing: a Layer subclass must define call\(self, x, training\)"):
            Nothing()(x)
