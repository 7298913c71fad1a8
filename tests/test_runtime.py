"""Compiled functions at run time: updates, shared variables, feed/run errors, provenance, threads."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from conftest import next_line, run_in_threads

import graphc as gc

HERE = os.path.basename(__file__)

# -- updates ------------------------------------------------------------------------------------------


def test_updates_see_pre_call_values_swap():
    a = gc.variable(np.array([1.0, 2.0]), name="a")
    b = gc.variable(np.array([3.0, 4.0]), name="b")
    swap = gc.compile(None, updates=[gc.assign(a, b), gc.assign(b, a)])
    assert swap() is None
    np.testing.assert_array_equal(a.value, [3.0, 4.0])
    np.testing.assert_array_equal(b.value, [1.0, 2.0])
    swap()
    np.testing.assert_array_equal(a.value, [1.0, 2.0])
    np.testing.assert_array_equal(b.value, [3.0, 4.0])


def test_updates_read_pre_call_values_through_expressions():
    a = gc.variable(np.float64(1.0), name="a")
    b = gc.variable(np.float64(10.0), name="b")
    f = gc.compile(None, updates=[(a, a + b), (b, a * b)])  # b's update must see the old a
    f()
    assert a.value == 11.0 and b.value == 10.0
    f()
    assert a.value == 21.0 and b.value == 110.0


def test_updates_are_applied_after_outputs():
    w = gc.variable(np.float64(2.0), name="w")
    f = gc.compile([w * 10, w], updates=[gc.assign(w, w + 1)])
    out = f()
    assert out[0] == 20.0 and out[1] == 2.0  # computed from the old value
    assert w.value == 3.0
    assert f()[0] == 30.0


def test_assign_assign_add_assign_sub_and_pairs():
    v = gc.variable(np.zeros(2, np.float32), name="v")
    d = gc.placeholder((2,), "float32", name="d")
    add = gc.compile(None, updates=[gc.assign_add(v, d)])
    sub = gc.compile(None, updates=[v.assign_sub(1.0)])
    set_ = gc.compile(None, updates=[(v, np.array([7.0, 8.0], np.float32))])
    set_feed = gc.compile(None, updates=[v.assign(d)])
    add(d=[1.0, 2.0])
    add(d=[1.0, 2.0])
    np.testing.assert_array_equal(v.value, [2.0, 4.0])
    sub()
    np.testing.assert_array_equal(v.value, [1.0, 3.0])
    set_()
    np.testing.assert_array_equal(v.value, [7.0, 8.0])
    set_feed(d=[5.0, 6.0])
    np.testing.assert_array_equal(v.value, [5.0, 6.0])
    assert v.value.dtype == np.float32


def test_assign_casts_within_kind_and_checks_shape_and_dtype():
    v = gc.variable(np.zeros(2, np.float32), name="v")
    x64 = gc.placeholder((2,), "float64", name="x64")
    f = gc.compile(None, updates=[(v, x64 * 2)])
    f(x64=[1.0, 2.0])
    assert v.value.dtype == np.float32
    np.testing.assert_array_equal(v.value, [2.0, 4.0])
    with pytest.raises(gc.ShapeError, match=r"\(3,\).*\(2,\)"):
        gc.assign(v, gc.placeholder((3,), "float32"))
    n = gc.variable(np.zeros(2, np.int32), name="n")
    with pytest.raises(gc.DTypeError, match=r"float32.*int32"):
        gc.assign(n, v)  # cross-kind: floats into an integer variable
    with pytest.raises(gc.GraphError, match="variable"):
        gc.assign(x64, x64)


def test_updating_the_same_variable_twice_raises():
    w = gc.variable(np.zeros(2), name="w")
    with pytest.raises(gc.CompileError, match="'w'.*twice"):
        gc.compile(None, updates=[gc.assign(w, w + 1), (w, w - 1)])
    up = gc.assign(w, w + 1)
    gc.compile(None, updates=[up, up])()  # the same update listed twice is one update
    np.testing.assert_array_equal(w.value, [1.0, 1.0])


def test_bad_updates_raise_compile_error():
    w = gc.variable(np.zeros(2), name="w")
    with pytest.raises(gc.CompileError, match="update"):
        gc.compile(None, updates=[w + 1])
    with pytest.raises(gc.CompileError, match="update"):
        gc.compile(None, updates=[(w, w, w)])


def _inference_with_variable_work():
    """y = x * reshape(w) + sqrt(v): the reshape and the sqrt depend on variables alone."""
    x = gc.placeholder((2, 3), "float64", name="x")
    w = gc.variable(np.arange(3.0), name="w")
    v = gc.variable(np.full((2, 1), 4.0), name="v")
    y = x * gc.reshape(w, (1, 3)) + gc.sqrt(v)
    return x, w, v, y


def test_work_on_variables_alone_runs_once_per_variable_version():
    x, w, v, y = _inference_with_variable_work()
    fn = gc.compile([y, gc.sqrt(v)])
    plan = fn.plan
    assert plan.prepare is not None
    run_body, prepare_body = plan.source.split("def prepare")
    run_body = run_body.split(") = C")[-1]  # (after the unpacking, whose comments name prepared values)
    assert "sqrt" not in run_body and "reshape" not in run_body
    assert "sqrt" in prepare_body and "reshape" in prepare_body
    assert "(by prepare: once per version of the variables)" in fn.explain()
    assert sum(k.get("prepared", False) for k in fn.explain(format="json")["plans"][0]["kernels"]) == 2
    xv = np.ones((2, 3))
    out, root = fn(x=xv)
    np.testing.assert_array_equal(out, xv * np.arange(3.0) + 2.0)
    root[:] = -1.0  # an output that is a prepared value is a copy: the next call is unaffected
    calls = []
    real = plan.prepare
    object.__setattr__(plan, "prepare", lambda V, C: calls.append(1) or real(V, C))
    fn(x=xv)
    assert calls == []  # cached: the variables did not change
    np.testing.assert_array_equal(fn(x=xv)[1], np.full((2, 1), 2.0))
    w.value = np.array([1.0, 1.0, 1.0])  # a new value: prepared again
    np.testing.assert_array_equal(fn(x=xv)[0], xv + 2.0)
    assert calls == [1]


def test_prepared_values_follow_updates_of_other_functions_and_restores(tmp_path):
    x, w, v, y = _inference_with_variable_work()
    infer = gc.compile(y)
    train = gc.compile(None, updates=[(w, w + 1.0), (v, v * 4.0)])  # written in place into the variables
    xv = np.ones((2, 3))
    gc.save_checkpoint(infer, tmp_path / "ckpt.json")
    before = infer(x=xv)
    train()
    np.testing.assert_array_equal(infer(x=xv), xv * (np.arange(3.0) + 1.0) + 4.0)
    gc.restore_checkpoint(infer, tmp_path / "ckpt.json")
    np.testing.assert_array_equal(infer(x=xv), before)


def test_two_functions_share_variables():
    x = gc.placeholder((None, 2), "float64", name="x")
    w = gc.variable(np.ones((2, 1)), name="w")
    predict = gc.compile(x @ w)
    train = gc.compile(None, updates=[(w, w * 2)])
    X = np.array([[1.0, 2.0]])
    assert predict(x=X)[0, 0] == 3.0
    train()
    assert predict(x=X)[0, 0] == 6.0
    w.value = np.zeros((2, 1))  # setting .value is seen by every function too
    assert predict(x=X)[0, 0] == 0.0
    train()
    np.testing.assert_array_equal(w.value, np.zeros((2, 1)))


# -- feed errors -----------------------------------------------------------------------------------------


@pytest.fixture
def fx():
    x = gc.placeholder((None, 3), "float32", name="x")
    n = gc.placeholder((2,), "int32", name="n")
    return gc.compile([x.sum(), n + 1])


def _ok_feeds():
    return dict(x=np.ones((2, 3), np.float32), n=np.array([1, 2], np.int32))


def test_valid_feeds_run(fx):
    out = fx(**_ok_feeds())
    assert out[0] == 6.0
    np.testing.assert_array_equal(out[1], [2, 3])


def test_unknown_feed_name(fx):
    with pytest.raises(gc.FeedError, match=r"'y'.*expected.*n, x"):
        fx(y=np.ones(3), **_ok_feeds())


def test_missing_placeholder(fx):
    with pytest.raises(gc.FeedError, match=r"missing.*'n'.*i32\[2\]") as info:
        fx(x=np.ones((2, 3)))
    assert HERE in str(info.value)  # and where the placeholder was defined


def test_wrong_rank(fx):
    feeds = _ok_feeds() | dict(x=np.ones(3))
    with pytest.raises(gc.FeedError, match=r"'x'.*got \(3,\), expected \(None, 3\)"):
        fx(**feeds)


def test_wrong_size(fx):
    feeds = _ok_feeds() | dict(x=np.ones((2, 4)))
    with pytest.raises(gc.FeedError, match=r"'x'.*got \(2, 4\), expected \(None, 3\)"):
        fx(**feeds)
    feeds = _ok_feeds() | dict(n=np.array([1, 2, 3]))
    with pytest.raises(gc.FeedError, match=r"'n'.*got \(3,\), expected \(2,\)"):
        fx(**feeds)


def test_cross_kind_dtype(fx):
    feeds = _ok_feeds() | dict(n=np.array([1.0, 2.0]))
    with pytest.raises(gc.FeedError, match=r"'n'.*got dtype float64, expected int32"):
        fx(**feeds)


def test_non_placeholder_and_foreign_feed_keys(fx):
    with gc.Graph("other"):
        foreign = gc.placeholder((None, 3), name="x")
    with pytest.raises(gc.FeedError, match="not a placeholder"):
        fx({foreign: np.ones((1, 3))})
    with pytest.raises(gc.FeedError, match="keys"):
        fx({3: np.ones((1, 3))})


# -- errors at run time cite the user's line ------------------------------------------------------------------


def test_kernel_failure_raises_execution_error_citing_node_and_line():
    p = gc.placeholder((None, 3), name="p")
    q = gc.placeholder((None, 4), name="q")
    line = next_line()
    prod = gc.matmul(gc.transpose(p), q, name="pq")  # (3, None) @ (None, 4): checked only at run time
    assert prod.shape == (3, 4)
    f = gc.compile(prod)
    assert f(p=np.ones((2, 3)), q=np.ones((2, 4))).shape == (3, 4)
    with pytest.raises(gc.ExecutionError) as info:
        f(p=np.ones((2, 3)), q=np.ones((5, 4)))
    msg = str(info.value)
    assert "matmul 'pq'" in msg
    assert f"{__file__}:{line}" in msg
    assert "(3, 2)" in msg and "(5, 4)" in msg


def test_kernel_failure_in_a_gradient_cites_the_forward_line():
    p = gc.placeholder((None, 3), "float64", name="p")
    q = gc.placeholder((None, 4), "float64", name="q")
    line = next_line()
    prod = gc.matmul(gc.transpose(p), q, name="pq")
    g = gc.grad(gc.sum(prod), q)
    f = gc.compile(g)
    with pytest.raises(gc.ExecutionError) as info:
        f(p=np.ones((2, 3)), q=np.ones((5, 4)))
    assert f"{__file__}:{line}" in str(info.value)


def test_check_numerics_names_the_node_producing_nan():
    x = gc.placeholder((None,), "float64", name="x")
    h = x * 2
    line = next_line()
    bad = gc.log(h, name="log_h")
    out = gc.sum(bad) + 1
    f = gc.compile(out, check_numerics=True)
    np.testing.assert_allclose(f(x=[1.0, 2.0]), 1 + np.log(2.0) + np.log(4.0))
    with np.errstate(invalid="ignore"), pytest.raises(gc.NumericsError) as info:
        f(x=[1.0, -2.0])
    msg = str(info.value)
    assert "log_h" in msg and "NaN" in msg and f"{__file__}:{line}" in msg
    assert isinstance(info.value, gc.ExecutionError)
    with np.errstate(invalid="ignore"):
        assert np.isnan(gc.compile(out)(x=[1.0, -2.0]))  # without the check NaN flows through


def test_check_numerics_reports_inf():
    x = gc.placeholder((), "float64", name="x")
    f = gc.compile(gc.exp(x, name="big") * 2.0, check_numerics=True)
    with np.errstate(over="ignore"), pytest.raises(gc.NumericsError, match="big.*Inf|Inf.*big"):
        f(x=1000.0)


# -- provenance ---------------------------------------------------------------------------------------------------


def test_nodes_record_the_users_file_and_line():
    line = next_line()
    x = gc.placeholder((None, 3), name="x")
    y = gc.relu(x @ np.ones((3, 2), np.float32)) + 1
    assert x.node.source.file == __file__ and x.node.source.line == line
    assert y.node.source.file == __file__ and y.node.source.line == line + 1
    assert str(x.node.source) == f"{__file__}:{line}"
    # every node built on the user's behalf (constants, matmul, gradient nodes) cites user code
    gc.grad(gc.mean(y), x)
    for node in gc.get_default_graph().nodes:
        assert node.source is not None and node.source.file == __file__, node


def test_construction_shape_error_names_op_node_shapes_and_line():
    x = gc.placeholder((None, 784), name="images")
    w = gc.variable(np.zeros((100, 10), np.float32), name="w")
    with pytest.raises(gc.ShapeError) as info:
        line = next_line()
        gc.matmul(x, w, name="logits")
    msg = str(info.value)
    assert "matmul" in msg and "'logits'" in msg
    assert "(None, 784)" in msg and "(100, 10)" in msg
    assert "784" in msg and "100" in msg
    assert HERE in msg and f"{__file__}:{line}" in msg


def test_construction_shape_error_via_operator_names_a_node():
    x = gc.placeholder((None, 784), name="images")
    w = gc.variable(np.zeros((100, 10), np.float32), name="w")
    with pytest.raises(gc.ShapeError, match=r"matmul 'matmul.*'.*\(None, 784\).*\(100, 10\)") as info:
        x @ w
    assert HERE in str(info.value)


def test_construction_broadcast_error_names_shapes_and_line():
    a = gc.placeholder((None, 3), name="a")
    b = gc.placeholder((4,), name="b")
    with pytest.raises(gc.ShapeError, match=r"add 'sum_ab'.*\(None, 3\).*\(4,\)") as info:
        gc.add(a, b, name="sum_ab")
    assert HERE in str(info.value)


# -- threads -----------------------------------------------------------------------------------------------


def test_concurrent_calls_of_one_function_are_correct():
    x = gc.placeholder((None, 8), "float64", name="x")
    w = gc.variable(np.random.default_rng(0).standard_normal((8, 8)), name="w")
    out = gc.tanh(x @ w) @ w + gc.sum(x, axis=1, keepdims=True)
    f = gc.compile(out)
    W = w.value

    def work(i: int):
        rng = np.random.default_rng(100 + i)
        for _ in range(100):
            X = rng.standard_normal((i + 1, 8))
            want = np.tanh(X @ W) @ W + X.sum(axis=1, keepdims=True)
            np.testing.assert_allclose(f(x=X), want, rtol=1e-12)

    assert run_in_threads(work) == []


def test_concurrent_training_steps_lose_no_update():
    x = gc.placeholder((None, 2), "float64", name="x")
    w = gc.variable(np.zeros(2), name="w")
    total = gc.variable(np.float64(0.0), name="total")
    step = gc.compile(gc.sum(w), updates=[(w, w + gc.sum(x, axis=0)), gc.assign_add(total, 1.0)])
    barrier = threading.Barrier(4)
    seen: list = []

    def work(i: int):
        barrier.wait()
        for _ in range(50):
            seen.append(float(step(x=np.ones((i + 1, 2)))))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert total.value == 200.0
    np.testing.assert_array_equal(w.value, [50.0 * (1 + 2 + 3 + 4)] * 2)
    assert len(set(seen)) == 200  # every call saw a distinct pre-call state: updates were serialized


def test_an_update_may_not_change_its_variables_shape():
    with gc.Graph():
        x = gc.placeholder((None, 3), name="x")
        w = gc.variable(np.zeros((4, 3), "float32"), name="w")
        f = gc.compile(gc.sum(w), updates=[(w, x * 2.0)])
        f(x=np.ones((4, 3)))
        np.testing.assert_array_equal(w.value, np.full((4, 3), 2.0, "float32"))
        with pytest.raises(gc.FeedError, match=r"update of variable 'w' \(4, 3\) would change its shape to "
                                                r"\(5, 3\) for feeds of shapes x=\(5, 3\)"):  # fmt: skip
            f(x=np.ones((5, 3)))
        np.testing.assert_array_equal(w.value, np.full((4, 3), 2.0, "float32"))  # nothing applied


def test_an_update_whose_shape_is_known_only_at_run_time_is_checked_before_any_is_applied():
    with gc.Graph():
        n = gc.placeholder((), "int64", name="n")
        v = gc.variable(np.zeros(3, "float32"), name="v")
        c = gc.variable(np.float32(0), name="c")
        _, grown = gc.while_loop(lambda i, a: i < n, lambda i, a: (i + 1, gc.concatenate([a, a[:1]])),
                                 (gc.constant(np.int64(0)), gc.constant(np.zeros(1, "float32"))))  # fmt: skip
        assert grown.shape == (None,)
        f = gc.compile(gc.sum(grown), updates=[(c, c + 1.0), (v, grown + 1.0)])
        f(n=2)
        np.testing.assert_array_equal(v.value, np.ones(3, "float32"))
        with pytest.raises(gc.FeedError, match=r"update of variable 'v' \(3,\) would change its shape to \(5,\)"):
            f(n=4)
        assert c.value == 1.0 and v.value.shape == (3,)


def test_the_fast_call_path_behaves_as_the_general_one():
    """An inference call with feeds by name, as arrays of a signature seen before, runs generated
    straight-line code; anything else (another dtype, a wrong shape, a missing or extra feed, a
    graph that grew) takes the general path, with its conversions, errors and warnings."""
    import warnings

    rng = np.random.default_rng(0)
    wv = rng.standard_normal((3, 4)).astype(np.float32)
    x = gc.placeholder((None, 3), "float32", name="x")
    i = gc.placeholder((2,), "int64", name="i")
    y = gc.tanh(x @ gc.variable(wv, name="w"))
    fn = gc.compile([y, gc.take(gc.reshape(y, (-1,)), i)])
    ok = np.array([0, 1])
    for n in (2, 5, 2, 5):  # two signatures, each with its own fast path
        xv = rng.standard_normal((n, 3)).astype(np.float32)
        want = np.tanh(xv.astype(np.float64) @ wv)
        got, taken = fn(x=xv, i=ok)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        np.testing.assert_array_equal(taken, got.reshape(-1)[:2])
        slow, _ = fn({x: xv, "i": ok})  # (a feed dict: the general path)
        np.testing.assert_array_equal(slow, got)
    assert fn._fast is not None and len(fn._fasts) == 2
    np.testing.assert_allclose(fn(x=xv.astype(np.float64), i=ok)[0], got, rtol=1e-6)  # converted
    with pytest.raises(gc.FeedError, match="'x'"):
        fn(x=np.ones((5, 4), np.float32), i=ok)
    with pytest.raises(gc.FeedError, match="missing feed for placeholder 'i'"):
        fn(x=xv)
    with pytest.raises(gc.FeedError, match="unknown feed name 'z'"):
        fn(x=xv, i=ok, z=xv)
    with pytest.raises(gc.ExecutionError, match="take 'take'.*out of bounds"):
        fn(x=xv, i=np.array([0, 99]))  # (the fast path's call: run-time errors name the node)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x * 2  # the graph grows: the next call warns, as every call path must
        np.testing.assert_array_equal(fn(x=xv, i=ok)[0], got)
    assert [w.category for w in caught] == [gc.GraphGrowthWarning]
