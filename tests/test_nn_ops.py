"""Behaviour of the neural-network ops that the spec table cannot express: random state that
advances per call and survives save/load, dropout statistics, batch-norm running statistics,
"same" padding, pooling ties, erf accuracy, and numerically hard inputs for the normalizations."""

from __future__ import annotations

import math

import nn_reference as nnref
import numpy as np
import pytest

import graphc as gc

# -- erf ------------------------------------------------------------------------------------------


def test_erf_matches_math_erf_to_double_precision():
    x = np.concatenate([
        np.linspace(-7.0, 7.0, 20001),  # every range of the approximation and its boundaries
        np.geomspace(1e-300, 30.0, 5000), -np.geomspace(1e-300, 30.0, 5000),
        [0.0, -0.0, 0.46875, -0.46875, 4.0, -4.0, 6.0, 1e300, -1e300],
    ])  # fmt: skip
    want = np.array([math.erf(v) for v in x])
    with gc.Graph():
        got = gc.compile(gc.erf(gc.placeholder(x.shape, "float64", name="x")))(x=x)
    assert np.max(np.abs(got - want)) <= 3e-16
    assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-300)) <= 1e-15
    assert np.all(np.sign(got) == np.sign(want)) and np.all(np.abs(got) <= 1.0)


def test_erf_special_values_and_float32():
    x = np.array([np.nan, np.inf, -np.inf, 0.3, -5.0], np.float32)
    with gc.Graph():
        got = gc.compile(gc.erf(gc.placeholder((5,), "float32", name="x")))(x=x)
    assert got.dtype == np.float32
    assert np.isnan(got[0]) and got[1] == 1.0 and got[2] == -1.0
    np.testing.assert_allclose(got[3:], [math.erf(0.3), math.erf(-5.0)], rtol=1e-7)


# -- random ops -----------------------------------------------------------------------------------


def _counter(t: gc.Tensor) -> gc.Variable:
    """The counter variable a random op reads."""
    return next(i for i in t.node.inputs if i.node.op == "variable")


def test_random_numbers_follow_seed_stream_and_counter():
    """The op's values at counter c are Philox(key=(seed, stream)) at counter c << 128."""
    u = gc.random_uniform((3, 4), low=-2.0, high=5.0, dtype="float64", seed=11)
    fn = gc.compile(u)
    first, second = fn(), fn()
    counter = _counter(u)
    assert counter.dtype == np.int64 and counter.value == 2  # one step per call
    for c, got in ((0, first), (1, second)):
        gen = np.random.Generator(np.random.Philox(key=11 + (u.node.attrs["stream"] << 64), counter=c << 128))
        np.testing.assert_array_equal(got, -2.0 + 7.0 * gen.random((3, 4)))
    assert not np.array_equal(first, second)
    counter.value = 0  # the same state gives the same numbers
    np.testing.assert_array_equal(fn(), first)


def test_random_ops_with_the_same_seed_draw_different_streams_and_are_never_merged():
    a = gc.random_normal((1000,), seed=3)
    b = gc.random_normal((1000,), seed=3)
    fn = gc.compile([a, b])  # opt_level 2 runs merge (CSE): the ops read different counters
    va, vb = fn()
    assert sum(n.op == "random_normal" for n in fn.program.nodes) == 2
    assert abs(np.corrcoef(va, vb)[0, 1]) < 0.15
    twice = gc.compile([a, a * 2.0])()  # one op used twice is computed once per call
    np.testing.assert_array_equal(twice[1], 2 * twice[0])


def test_random_statistics_and_range():
    u = gc.random_uniform((200_000,), low=1.0, high=3.0, seed=1)
    z = gc.random_normal((200_000,), mean=-1.0, stddev=0.5, dtype="float64", seed=1)
    vu, vz = gc.compile([u, z])()
    assert vu.dtype == np.float32 and vz.dtype == np.float64
    assert vu.min() >= 1.0 and vu.max() < 3.0
    assert abs(vu.mean() - 2.0) < 0.01 and abs(vu.var() - 4 / 12) < 0.01
    assert abs(vz.mean() + 1.0) < 0.01 and abs(vz.std() - 0.5) < 0.01


def test_random_shape_from_a_tensor_with_unknown_dims():
    x = gc.placeholder((None, 3), name="x")
    u = gc.random_uniform(x, seed=5)
    assert u.shape == (None, 3)
    fn = gc.compile(u)
    assert fn(x=np.zeros((2, 3), np.float32)).shape == (2, 3)
    assert fn(x=np.zeros((7, 3), np.float32)).shape == (7, 3)
    with pytest.raises(gc.ShapeError, match="unknown dims"):
        gc.random_uniform((None, 3))
    with pytest.raises(gc.GraphError, match="seed"):
        gc.random_uniform((2,), seed=-1)
    with pytest.raises(gc.GraphError, match="low <= high"):
        gc.random_uniform((2,), low=1.0, high=0.0)


def test_random_state_survives_save_and_load(tmp_path):
    u = gc.random_uniform((5,), seed=9)
    fn = gc.compile(u)
    fn()
    fn()
    path = gc.save(fn, tmp_path / "rng.json")
    expected = [fn(), fn()]  # what the original draws next
    loaded = gc.load(path)
    np.testing.assert_array_equal(loaded(), expected[0])  # the loaded function resumes at counter 2
    np.testing.assert_array_equal(loaded(), expected[1])


def test_random_state_is_restored_by_a_checkpoint(tmp_path):
    u = gc.random_normal((4,), seed=2)
    fn = gc.compile(u)
    fn()
    path = gc.save_checkpoint(fn, tmp_path / "ckpt.json")
    after = fn()
    fn()
    gc.restore_checkpoint(fn, path)
    np.testing.assert_array_equal(fn(), after)


# -- dropout --------------------------------------------------------------------------------------


def test_dropout_statistics_and_scaling():
    x = gc.placeholder((None, 1000), name="x")
    y = gc.dropout(x, 0.3, seed=4)
    out = gc.compile(y)(x=np.ones((100, 1000), np.float32))
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)  # inverted dropout
    assert abs(out.mean() - 1.0) < 0.02


def test_dropout_masks_change_per_call_and_repeat_per_state():
    x = gc.placeholder((64,), "float64", name="x")
    y = gc.dropout(x, 0.5, seed=1)
    fn = gc.compile(y)
    ones = np.ones(64)
    first, second = fn(x=ones), fn(x=ones)
    assert not np.array_equal(first, second)
    counter = gc.Variable(next(n for n in gc.get_default_graph().nodes if n.op == "variable"))
    assert counter.name.endswith("_counter") and counter.value == 2
    counter.value = 0
    np.testing.assert_array_equal(fn(x=ones), first)


def test_dropout_identity_when_not_training_or_rate_zero():
    x = gc.placeholder((2, 3), name="x")
    assert gc.dropout(x, 0.5, training=False) is x
    assert gc.dropout(x, 0.0) is x
    zero = gc.compile(gc.dropout(x, 1.0))(x=np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(zero, 0.0)
    with pytest.raises(gc.GraphError, match="rate"):
        gc.dropout(x, 1.5)


def test_dropout_with_a_training_flag_tensor():
    x = gc.placeholder((1000,), "float64", name="x")
    training = gc.placeholder((), "bool", name="training")
    fn = gc.compile(gc.dropout(x, 0.5, seed=2, training=training))
    ones = np.ones(1000)
    np.testing.assert_array_equal(fn(x=ones, training=False), ones)
    assert 0.4 < np.mean(fn(x=ones, training=True) == 0) < 0.6


def test_dropout_gradient_is_the_same_mask():
    x = gc.placeholder((50,), "float64", name="x")
    y = gc.dropout(x, 0.4, seed=3)
    value, grad = gc.compile([y, gc.grad(gc.sum(y), x)])(x=np.full(50, 2.0))
    np.testing.assert_allclose(grad, value / 2.0)  # both from the one mask of this call
    assert set(np.round(grad, 12)) <= {0.0, round(1 / 0.6, 12)}


# -- batch norm -----------------------------------------------------------------------------------


def _bn_graph(momentum=0.1, training=True, c=3, batch=None):
    x = gc.placeholder((batch, c, 4, 5), "float64", name="x")
    gamma = gc.variable(np.linspace(0.5, 1.5, c), name="gamma")
    beta = gc.variable(np.linspace(-1.0, 1.0, c), name="beta")
    rm = gc.variable(np.zeros(c), name="running_mean", trainable=False)
    rv = gc.variable(np.ones(c), name="running_var", trainable=False)
    y = gc.batch_norm(x, gamma, beta, rm, rv, training, momentum=momentum)
    return x, y, rm, rv, gamma.value, beta.value


def test_batch_norm_updates_running_statistics_per_training_call():
    x, y, rm, rv, gamma, beta = _bn_graph(momentum=0.2)
    train = gc.compile(y)
    rng = np.random.default_rng(0)
    want_m, want_v = np.zeros(3), np.ones(3)
    for n in (8, 5, 8):  # the batch size may change between calls
        batch = rng.normal(3.0, 2.0, (n, 3, 4, 5))
        got = train(x=batch)
        want, mean, unbiased = nnref.batch_norm(batch, gamma, beta, want_m, want_v, training=True)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        want_m, want_v = 0.8 * want_m + 0.2 * mean, 0.8 * want_v + 0.2 * unbiased
        np.testing.assert_allclose(rm.value, want_m, rtol=1e-12)
        np.testing.assert_allclose(rv.value, want_v, rtol=1e-12)


def test_batch_norm_updates_running_statistics_in_a_gradient_only_function():
    """A train step compiled from updates alone (no output) still updates them: the update is
    triggered by the batch mean, which the gradients need too."""
    x, y, rm, rv, gamma, beta = _bn_graph(batch=6)
    g = gc.Variable(next(n for n in gc.get_default_graph().nodes if n.name == "gamma"))
    loss = gc.sum(y * gc.constant(np.random.default_rng(3).standard_normal((1, 3, 4, 5))))
    step = gc.compile(updates=[(g, g - 0.1 * gc.grad(loss, g))])
    batch = np.random.default_rng(2).normal(1.0, 3.0, (6, 3, 4, 5))
    step(x=batch)
    _, mean, unbiased = nnref.batch_norm(batch, gamma, beta, None, None, training=True)
    np.testing.assert_allclose(rm.value, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(rv.value, 0.9 + 0.1 * unbiased, rtol=1e-12)


def test_batch_norm_inference_uses_the_running_statistics_and_leaves_them():
    x = gc.placeholder((None, 2), "float64", name="x")
    rm = gc.variable(np.array([1.0, -2.0]), trainable=False)
    rv = gc.variable(np.array([4.0, 0.25]), trainable=False)
    gamma, beta = gc.constant(np.array([2.0, 1.0])), gc.constant(np.array([0.0, 1.0]))
    predict = gc.compile(gc.batch_norm(x, gamma, beta, rm, rv, training=False))
    batch = np.array([[3.0, -1.0], [1.0, -2.0], [0.0, 0.0]])
    want = (batch - rm.value) / np.sqrt(rv.value + 1e-5) * np.array([2.0, 1.0]) + np.array([0.0, 1.0])
    np.testing.assert_allclose(predict(x=batch), want, rtol=1e-12)
    np.testing.assert_array_equal(rm.value, [1.0, -2.0])
    np.testing.assert_array_equal(rv.value, [4.0, 0.25])


def test_batch_norm_training_flag_tensor_updates_only_when_training():
    x = gc.placeholder((None, 2), "float64", name="x")
    flag = gc.placeholder((), "bool", name="training")
    rm = gc.variable(np.zeros(2), trainable=False)
    rv = gc.variable(np.ones(2), trainable=False)
    fn = gc.compile(gc.batch_norm(x, None, None, rm, rv, flag, momentum=0.5))
    batch = np.array([[1.0, 2.0], [3.0, 6.0]])
    np.testing.assert_allclose(fn(x=batch, training=False), batch / np.sqrt(1 + 1e-5))
    np.testing.assert_array_equal(rm.value, [0.0, 0.0])
    np.testing.assert_allclose(fn(x=batch, training=True), [[-1.0, -1.0], [1.0, 1.0]], rtol=1e-5)
    np.testing.assert_allclose(rm.value, [1.0, 2.0])
    np.testing.assert_allclose(rv.value, [0.5 + 0.5 * 2.0, 0.5 + 0.5 * 8.0])  # unbiased variances 2 and 8


def test_batch_norm_and_layer_norm_are_stable_for_a_large_offset():
    """Two-pass statistics: mean 1e4 and spread 1 in float32 still normalize to about float32's
    resolution of the data, 1e-3 (E[x^2] - E[x]^2 would lose every digit: ulp(1e8) = 8)."""
    rng = np.random.default_rng(1)
    batch = (1e4 + rng.standard_normal((16, 3, 2, 2))).astype(np.float32)
    x = gc.placeholder(batch.shape, "float32", name="x")
    rm, rv = gc.variable(np.zeros(3, np.float32)), gc.variable(np.ones(3, np.float32))
    bn = gc.batch_norm(x, None, None, rm, rv, training=True)
    ln = gc.layer_norm(x, axis=(1, 2, 3))
    got_bn, got_ln = gc.compile([bn, ln])(x=batch)
    b64 = batch.astype(np.float64)
    want_bn = nnref.batch_norm(b64, np.ones(3), np.zeros(3), None, None, training=True)[0]
    np.testing.assert_allclose(got_bn, want_bn, atol=5e-3)
    np.testing.assert_allclose(got_ln, nnref.layer_norm(b64, axis=(1, 2, 3)), atol=5e-3)


def test_batch_norm_rejects_a_non_variable_running_statistic():
    x = gc.placeholder((2, 3), name="x")
    with pytest.raises(gc.GraphError, match="running_mean must be a graphc variable"):
        gc.batch_norm(x, None, None, gc.constant(np.zeros(3, np.float32)), gc.variable(np.ones(3, np.float32)), True)


# -- convolution and pooling ------------------------------------------------------------------------


def test_a_small_cnn_trains_and_round_trips_through_save_and_load(tmp_path):
    """conv -> batch norm -> relu -> max pool -> dropout -> dense: one SGD step, then save the
    inference function and load it; both give the same outputs."""
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 1, 8, 8), name="x")
    labels = gc.placeholder((None,), "int64", name="labels")
    w = gc.variable((rng.standard_normal((4, 1, 3, 3)) * 0.3).astype(np.float32), name="w")
    dense = gc.variable((rng.standard_normal((4 * 4 * 4, 3)) * 0.1).astype(np.float32), name="dense")
    rm, rv = gc.variable(np.zeros(4, np.float32), name="rm"), gc.variable(np.ones(4, np.float32), name="rv")

    def net(training):
        h = gc.batch_norm(gc.conv2d(x, w, padding="same"), None, None, rm, rv, training)
        h = gc.dropout(gc.max_pool2d(gc.relu(h), 2), 0.25, seed=1, training=training)
        return gc.flatten(h) @ dense

    loss = gc.mean(gc.softmax_cross_entropy(net(True), labels))
    step = gc.compile(loss, updates=[(p, p - 0.1 * g) for p, g in zip((w, dense), gc.grad(loss, [w, dense]))])
    batch = rng.random((5, 1, 8, 8)).astype(np.float32)
    first = step(x=batch, labels=np.array([0, 1, 2, 0, 1]))
    assert np.isfinite(first) and not np.array_equal(rm.value, np.zeros(4))
    predict = gc.compile(gc.softmax(net(False)))
    loaded = gc.load(gc.save(predict, tmp_path / "cnn.json"))
    np.testing.assert_array_equal(loaded(x=batch), predict(x=batch))


@pytest.mark.parametrize("kernel, dilation", [((3, 3), 1), ((2, 4), 1), ((3, 2), (2, 3)), ((1, 5), 2)])
def test_same_padding_keeps_the_spatial_shape(kernel, dilation):
    rng = np.random.default_rng(0)
    xv, wv = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, *kernel))
    x = gc.placeholder((None, 3, 7, 6), "float64", name="x")
    y = gc.conv2d(x, gc.constant(wv), padding="same", dilation=dilation)
    assert y.shape == (None, 4, 7, 6)
    got = gc.compile(y)(x=xv)
    np.testing.assert_allclose(got, nnref.conv2d(xv, wv, padding="same", dilation=dilation), rtol=1e-12, atol=1e-12)


def test_conv_runs_for_several_batch_sizes_and_image_sizes():
    rng = np.random.default_rng(1)
    wv = rng.standard_normal((5, 2, 3, 3))
    x = gc.placeholder((None, 2, None, None), "float64", name="x")
    y = gc.conv2d(x, gc.constant(wv), stride=2, padding=1)
    assert y.shape == (None, 5, None, None)
    fn = gc.compile([y, gc.grad(gc.sum(y * y), x)])
    for shape in ((1, 2, 5, 5), (3, 2, 8, 6)):
        xv = rng.standard_normal(shape)
        out, g = fn(x=xv)
        np.testing.assert_allclose(out, nnref.conv2d(xv, wv, 2, 1), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g, nnref.conv2d_grad_input(2 * out, wv, xv, 2, 1), rtol=1e-12, atol=1e-12)


def test_max_pool_gradient_goes_to_the_first_maximum_of_ties():
    x = gc.placeholder((1, 1, 4, 4), "float64", name="x")
    g = gc.compile(gc.grad(gc.sum(gc.max_pool2d(x, 2)), x))(x=np.ones((1, 1, 4, 4)))
    want = np.zeros((4, 4))
    want[::2, ::2] = 1.0  # the top-left tap of every window
    np.testing.assert_array_equal(g[0, 0], want)


def test_overlapping_max_pool_windows_accumulate_their_gradients():
    xv = np.zeros((1, 1, 3, 3))
    xv[0, 0, 1, 1] = 5.0  # the maximum of all four 2x2 windows
    x = gc.placeholder(xv.shape, "float64", name="x")
    g = gc.compile(gc.grad(gc.sum(gc.max_pool2d(x, 2, stride=1)), x))(x=xv)
    assert g[0, 0, 1, 1] == 4.0 and g.sum() == 4.0


def test_gelu_is_finite_in_the_tails():
    x = gc.placeholder((4,), "float64", name="x")
    xv = np.array([-40.0, -8.0, 8.0, 40.0])
    for approximate in ("none", "tanh"):
        y = gc.gelu(x, approximate)
        value, grad = gc.compile([y, gc.grad(gc.sum(y), x)])(x=xv)
        np.testing.assert_allclose(value, [0.0, 0.0, 8.0, 40.0], atol=1e-12)
        np.testing.assert_allclose(grad, [0.0, 0.0, 1.0, 1.0], atol=1e-12)
