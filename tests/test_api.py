"""The public API contract of issue 2: graphs, sources, Tensor handles, feeds, outputs, growth."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import assert_no_alias

import graphc as gc

# -- graphs -----------------------------------------------------------------------------------


def test_default_graph_exists_and_collects_nodes():
    g = gc.get_default_graph()
    assert isinstance(g, gc.Graph)
    x = gc.placeholder((2,), name="x")
    assert x.graph is g
    assert "x" in g and len(g) == 1


def test_reset_default_graph_gives_an_empty_graph():
    gc.placeholder((2,), name="x")
    new = gc.reset_default_graph()
    assert gc.get_default_graph() is new and len(new) == 0
    gc.placeholder((2,), name="x")  # the name is free again


def test_graph_context_manager_nests_and_restores_default():
    outer_default = gc.get_default_graph()
    with gc.Graph("a") as a:
        assert gc.get_default_graph() is a
        xa = gc.placeholder((), name="x")
        with gc.Graph("b") as b:
            assert gc.get_default_graph() is b
            xb = gc.placeholder((), name="x")  # same name, different graph: fine
        assert gc.get_default_graph() is a
    assert gc.get_default_graph() is outer_default
    assert xa.graph is a and xb.graph is b
    assert len(outer_default) == 0


def test_graph_context_restores_default_after_an_exception():
    default = gc.get_default_graph()
    with pytest.raises(RuntimeError), gc.Graph("broken"):
        raise RuntimeError("boom")
    assert gc.get_default_graph() is default


def test_mixing_graphs_raises_graph_error():
    x = gc.placeholder((2,), name="x")
    with gc.Graph("other"):
        y = gc.placeholder((2,), name="y")
    with pytest.raises(gc.GraphError, match="different graphs"):
        x + y
    with pytest.raises(gc.CompileError):
        gc.compile([x, y])


def test_duplicate_node_name_raises_graph_error():
    gc.placeholder((2,), name="x")
    with pytest.raises(gc.GraphError, match="'x'"):
        gc.placeholder((3,), name="x")


def test_error_hierarchy():
    for cls in (gc.GraphError, gc.ShapeError, gc.DTypeError, gc.GradientError, gc.CompileError,
                gc.FeedError, gc.ExecutionError, gc.NumericsError, gc.FormatError):  # fmt: skip
        assert issubclass(cls, gc.GraphcError)
    assert issubclass(gc.NumericsError, gc.ExecutionError)


# -- placeholder, constant, variable ----------------------------------------------------------


def test_placeholder_defaults_and_dtype():
    x = gc.placeholder((None, 3), name="x")
    assert x.shape == (None, 3) and x.dtype == np.float32 and x.op == "placeholder"
    i = gc.placeholder([4], "int32", name="i")
    assert i.shape == (4,) and i.dtype == np.dtype("int32")
    s = gc.placeholder((), "float64")
    assert s.shape == () and s.ndim == 0


def test_placeholder_bad_shape_or_dtype():
    with pytest.raises(gc.ShapeError):
        gc.placeholder((2, -3))
    with pytest.raises(gc.ShapeError):
        gc.placeholder((2, 1.5))
    with pytest.raises(gc.DTypeError, match="complex64"):
        gc.placeholder((2,), "complex64")
    with pytest.raises(gc.DTypeError):
        gc.placeholder((2,), "no-such-dtype")


def test_constant_value_and_dtype():
    c = gc.constant([1, 2, 3], name="c")
    assert c.shape == (3,) and c.dtype == np.int64 and c.name == "c"
    d = gc.constant([1, 2, 3], dtype="float32")
    assert d.dtype == np.float32
    out = gc.compile([c, d, gc.constant(2.5)])()
    np.testing.assert_array_equal(out[0], [1, 2, 3])
    assert out[1].dtype == np.float32 and out[2] == 2.5


def test_constant_copies_its_value():
    src = np.arange(3.0)
    c = gc.constant(src)
    src[0] = 100.0
    np.testing.assert_array_equal(gc.compile(c)(), [0.0, 1.0, 2.0])


def test_variable_initial_value_shape_dtype_and_trainable():
    init = np.arange(6, dtype=np.float32).reshape(2, 3)
    w = gc.variable(init, name="w")
    b = gc.variable(np.zeros(3), name="b", trainable=False)
    assert isinstance(w, gc.Variable) and w.shape == (2, 3) and w.dtype == np.float32
    assert w.node.attrs["trainable"] is True and b.node.attrs["trainable"] is False
    init[0, 0] = 100.0  # the variable holds its own copy
    np.testing.assert_array_equal(w.value, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_variable_value_is_a_copy():
    w = gc.variable(np.zeros(3), name="w")
    v = w.value
    v[:] = 7.0
    np.testing.assert_array_equal(w.value, np.zeros(3))
    assert_no_alias(w.value, w.graph.variables["w"])


def test_variable_value_setter_copies_and_converts_same_kind():
    w = gc.variable(np.zeros(3, dtype=np.float32), name="w")
    src = np.array([1.0, 2.0, 3.0])  # float64 into a float32 variable
    w.value = src
    src[0] = 100.0
    assert w.value.dtype == np.float32
    np.testing.assert_array_equal(w.value, [1.0, 2.0, 3.0])
    w.value = [4, 5, 6]  # ints into a float variable, from a list
    np.testing.assert_array_equal(w.value, [4.0, 5.0, 6.0])
    assert w.value.dtype == np.float32
    # the new value is what compiled functions see
    np.testing.assert_array_equal(gc.compile(w * 2)(), [8.0, 10.0, 12.0])


def test_variable_value_setter_checks_shape_and_kind():
    w = gc.variable(np.zeros((2, 3)), name="w")
    with pytest.raises(gc.GraphcError, match=r"'w'.*\(3, 2\).*\(2, 3\)"):
        w.value = np.zeros((3, 2))
    with pytest.raises(gc.GraphcError, match="'w'"):
        w.value = np.zeros(6)
    n = gc.variable(np.zeros(2, dtype=np.int32), name="n")
    with pytest.raises(gc.GraphcError, match=r"'n'.*float64.*int32"):
        n.value = np.array([1.5, 2.5])
    np.testing.assert_array_equal(n.value, [0, 0])  # unchanged after the failed set
    n.value = np.array([1, 2], dtype=np.int64)  # same kind: converted
    assert n.value.dtype == np.int32


# -- Tensor properties and methods -------------------------------------------------------------


def test_tensor_static_properties():
    x = gc.placeholder((None, 3, 4), name="x")
    assert x.shape == (None, 3, 4)
    assert x.dtype == np.dtype("float32") and isinstance(x.dtype, np.dtype)
    assert x.ndim == 3
    assert x.T.shape == (4, 3, None)
    assert x.transpose(1, 0, 2).shape == (3, None, 4)
    assert x.transpose((2, 0, 1)).shape == (4, None, 3)
    assert x.transpose().shape == (4, 3, None)
    assert x.reshape(-1, 12).shape == (None, 12)
    assert x.reshape((-1, 2, 6)).shape == (None, 2, 6)
    assert x.sum().shape == () and x.sum(axis=1).shape == (None, 4)
    assert x.mean(axis=(0, 2), keepdims=True).shape == (1, 3, 1)
    assert x.max(axis=-1).shape == (None, 3) and x.min(axis=0).shape == (3, 4)
    assert x.astype("int32").dtype == np.int32 and x.astype(np.float64).shape == (None, 3, 4)


def test_tensor_repr_is_readable():
    x = gc.placeholder((None, 3), name="images")
    r = repr(x)
    assert "images" in r and "f32[?,3]" in r and "placeholder" in r
    w = gc.variable(np.zeros((3, 2)), name="w")
    assert "w" in repr(w) and "f64[3,2]" in repr(w) and "Variable" in repr(w)


def test_tensor_methods_compute_like_numpy(rng):
    x = gc.placeholder((None, 3, 4), "float64", name="x")
    outs = {
        "T": x.T, "reshape": x.reshape(-1, 6), "transpose": x.transpose(1, 2, 0),
        "sum": x.sum(axis=1), "mean": x.mean(keepdims=True), "max": x.max(axis=(0, 2)),
        "min": x.min(), "astype": x.astype("int32"),
    }  # fmt: skip
    X = rng.standard_normal((2, 3, 4)) * 5
    got = gc.compile(outs)(x=X)
    want = {
        "T": X.T, "reshape": X.reshape(-1, 6), "transpose": X.transpose(1, 2, 0),
        "sum": X.sum(axis=1), "mean": X.mean(keepdims=True), "max": X.max(axis=(0, 2)),
        "min": X.min(), "astype": X.astype("int32"),
    }  # fmt: skip
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, err_msg=k)


def test_tensor_has_no_truth_value_and_no_array_conversion():
    x = gc.placeholder((2,), name="x")
    with pytest.raises(gc.GraphcError, match="where"):
        bool(x)
    with pytest.raises(gc.GraphcError, match="compile"):
        np.asarray(x)


# -- operators ---------------------------------------------------------------------------------


def test_arithmetic_operators_match_numpy():
    x = gc.placeholder((2, 3), name="x")
    y = gc.placeholder((3,), name="y")
    X = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    Y = np.array([0.5, 2.0, -1.0], dtype=np.float32)
    cases = {
        "add": (x + y, X + Y), "sub": (x - y, X - Y), "mul": (x * y, X * Y), "div": (x / y, X / Y),
        "pow": (x ** 2, X ** 2), "matmul": (x @ gc.transpose(x), X @ X.T), "neg": (-x, -X),
        "abs": (abs(y), np.abs(Y)), "pos": (+x, X),
    }  # fmt: skip
    got = gc.compile({k: t for k, (t, _) in cases.items()})(x=X, y=Y)
    for k, (t, want) in cases.items():
        assert got[k].dtype == want.dtype == t.dtype, k
        np.testing.assert_allclose(got[k], want, rtol=1e-6, err_msg=k)


@pytest.mark.parametrize("scalar", [2, 2.0, np.float32(2), np.array(2.0, dtype=np.float32)], ids=repr)
def test_reflected_operators_with_python_and_numpy_scalars(scalar):
    x = gc.placeholder((3,), name="x")
    X = np.array([1.0, 2.0, 4.0], dtype=np.float32)
    exprs = [scalar + x, scalar - x, scalar * x, scalar / x, scalar**x, x + scalar, x * scalar, x / scalar]
    for t in exprs:
        assert isinstance(t, gc.Tensor)
        assert t.dtype == np.float32  # weak Python scalars and float32 NumPy scalars keep float32
    got = gc.compile(exprs)(x=X)
    s = np.float32(2)
    want = [s + X, s - X, s * X, s / X, s**X, X + s, X * s, X / s]
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-6)


def test_numpy_scalar_times_tensor_is_a_tensor():
    x = gc.placeholder((2,), name="x")
    t = np.float32(2) * x
    assert isinstance(t, gc.Tensor) and t.dtype == np.float32
    t64 = np.float64(2) * x  # NumPy 2 promotion: a float64 scalar is not weak
    assert isinstance(t64, gc.Tensor) and t64.dtype == np.float64
    np.testing.assert_array_equal(gc.compile(t)(x=[1.0, 3.0]), [2.0, 6.0])


def test_reflected_matmul_and_array_operands():
    x = gc.placeholder((2, 3), name="x")
    A = np.arange(8, dtype=np.float32).reshape(4, 2)
    X = np.arange(6, dtype=np.float32).reshape(2, 3)
    left = A @ x
    B = np.arange(6, dtype=np.float32).reshape(3, 2)
    right = x @ B
    row = np.ones(3, np.float32) + x
    assert isinstance(left, gc.Tensor) and left.shape == (4, 3)
    got = gc.compile([left, right, row])(x=X)
    np.testing.assert_allclose(got[0], A @ X)
    np.testing.assert_allclose(got[1], X @ B)
    np.testing.assert_allclose(got[2], 1 + X)


def test_comparison_operators_match_numpy():
    x = gc.placeholder((4,), name="x")
    X = np.array([-1.0, 0.0, 1.0, 2.0], dtype=np.float32)
    cases = {
        "lt": (x < 1, X < 1), "le": (x <= 1, X <= 1), "gt": (x > 0, X > 0), "ge": (x >= 0, X >= 0),
        "rlt": (1 < x, 1 < X), "rge": (np.float32(0) >= x, np.float32(0) >= X),
        "eq": (gc.equal(x, 1), X == 1), "ne": (gc.not_equal(x, 1), X != 1),
    }  # fmt: skip
    got = gc.compile({k: t for k, (t, _) in cases.items()})(x=X)
    for k, (t, want) in cases.items():
        assert t.dtype == np.bool_ and got[k].dtype == np.bool_, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)


def test_double_equals_is_identity_so_tensors_key_dicts():
    x = gc.placeholder((2,), name="x")
    y = gc.placeholder((2,), name="y")
    assert (x == x) is True and (x == y) is False and (x != y) is True
    assert (x == 1) is False
    assert gc.Tensor(x.node, 0) == x and hash(gc.Tensor(x.node, 0)) == hash(x)
    d = {x: "x", y: "y"}
    assert d[x] == "x" and d[gc.Tensor(y.node, 0)] == "y"
    assert len({x, y, gc.Tensor(x.node, 0)}) == 2
    import copy

    assert copy.copy(x) is x and copy.deepcopy({"x": [x]})["x"][0] is x  # a handle, copied as itself


# -- slicing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "index",
    [1, -1, (slice(None), 2), (slice(1, None), slice(None, None, 2)), (slice(None, None, -1),),
     (Ellipsis, 0), (None, slice(None), -2), (slice(0, 2), None, slice(1, 3))],
    ids=repr,
)  # fmt: skip
def test_basic_slicing_matches_numpy(index, rng):
    x = gc.placeholder((None, 4, 5), "float64", name="x")
    X = rng.standard_normal((3, 4, 5))
    t = x[index]
    want = X[index]
    assert t.ndim == want.ndim
    assert all(d is None or d == w for d, w in zip(t.shape, want.shape))
    np.testing.assert_array_equal(gc.compile(t)(x=X), want)


def test_slicing_static_shapes_keep_unknown_dims():
    x = gc.placeholder((None, 5), name="x")
    assert x[:, 1:3].shape == (None, 2)
    assert x[0].shape == (5,)
    assert x[..., None].shape == (None, 5, 1)


def test_slicing_errors():
    x = gc.placeholder((None, 5), name="x")
    with pytest.raises(gc.ShapeError, match="out of bounds"):
        x[:, 5]
    with pytest.raises(gc.ShapeError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(gc.GraphError, match="take"):
        x[gc.constant([0, 1])]


# -- feeds ----------------------------------------------------------------------------------------


def _two_inputs():
    x = gc.placeholder((None, 2), name="x")
    y = gc.placeholder((2,), name="y")
    return x, y, x * y


def test_feed_by_keyword_name():
    x, y, out = _two_inputs()
    f = gc.compile(out)
    np.testing.assert_array_equal(f(x=[[1.0, 2.0]], y=[3.0, 4.0]), [[3.0, 8.0]])


def test_feed_dict_keyed_by_tensor_or_by_name():
    x, y, out = _two_inputs()
    f = gc.compile(out)
    X, Y = np.array([[1.0, 2.0]], np.float32), np.array([3.0, 4.0], np.float32)
    np.testing.assert_array_equal(f({x: X, y: Y}), [[3.0, 8.0]])
    np.testing.assert_array_equal(f({"x": X, "y": Y}), [[3.0, 8.0]])
    np.testing.assert_array_equal(f({x: X, "y": Y}), [[3.0, 8.0]])
    np.testing.assert_array_equal(f({x: X}, y=Y), [[3.0, 8.0]])


def test_feed_positionally_with_inputs():
    x, y, out = _two_inputs()
    f = gc.compile(out, inputs=[y, x])
    np.testing.assert_array_equal(f([3.0, 4.0], [[1.0, 2.0]]), [[3.0, 8.0]])
    np.testing.assert_array_equal(f([3.0, 4.0], x=[[1.0, 2.0]]), [[3.0, 8.0]])
    with pytest.raises(gc.FeedError, match="2 inputs"):
        f([3.0, 4.0], [[1.0, 2.0]], [0.0])


def test_positional_feed_without_inputs_raises():
    x, y, out = _two_inputs()
    with pytest.raises(gc.FeedError, match="inputs"):
        gc.compile(out)([[1.0, 2.0]], [3.0, 4.0])


def test_feeding_a_placeholder_twice_raises():
    x, y, out = _two_inputs()
    f = gc.compile(out, inputs=[x, y])
    with pytest.raises(gc.FeedError, match="'x'.*twice"):
        f([[1.0, 2.0]], [3.0, 4.0], x=[[1.0, 2.0]])


def test_inputs_must_be_placeholders():
    x, y, out = _two_inputs()
    with pytest.raises(gc.CompileError, match="placeholder"):
        gc.compile(out, inputs=[out])
    with pytest.raises(gc.CompileError, match="placeholder.*str"):
        gc.compile(None, inputs=["x"])
    with pytest.raises(gc.CompileError, match="placeholder.*int"):
        gc.compile(out, inputs=[x, 3])


def test_a_single_placeholder_as_inputs():
    x, y, out = _two_inputs()
    f = gc.compile(x * 2, inputs=x)
    np.testing.assert_array_equal(f([[1.0, 2.0]]), [[2.0, 4.0]])


def test_feed_conversions_within_kind():
    x = gc.placeholder((2,), "float32", name="x")
    s = gc.placeholder((), "float32", name="s")
    i = gc.placeholder((2,), "int32", name="i")
    f = gc.compile([x * s, i + 1])
    for feed_x, feed_s in [
        (np.array([1.0, 2.0], np.float64), 3.0),  # float64 into float32, Python float scalar
        (np.array([1, 2], np.int64), np.float64(3)),  # ints into float
        ([1, 2], 3),  # Python list of ints and Python int
        ([1.0, 2.0], np.array(3.0)),  # list of floats and a 0-d array
    ]:
        a, b = f(x=feed_x, s=feed_s, i=np.array([1, 2], np.int64))  # int64 into int32 (same kind)
        assert a.dtype == np.float32 and b.dtype == np.int32
        np.testing.assert_array_equal(a, [3.0, 6.0])
        np.testing.assert_array_equal(b, [2, 3])


def test_cross_kind_feed_raises_feed_error():
    i = gc.placeholder((2,), "int32", name="idx")
    f = gc.compile(i + 1)
    with pytest.raises(gc.FeedError, match=r"'idx'.*float64.*int32"):
        f(idx=np.array([1.0, 2.0]))
    with pytest.raises(gc.FeedError, match="'idx'"):
        f(idx=[1.5, 2.5])
    with pytest.raises(gc.FeedError, match="'idx'"):
        f(idx=["a", "b"])


# -- output structure ---------------------------------------------------------------------------------


def test_output_structure():
    x = gc.placeholder((2,), name="x")
    X = np.array([1.0, 2.0], np.float32)
    single = gc.compile(x * 2)(x=X)
    assert isinstance(single, np.ndarray)
    as_list = gc.compile([x * 2, x + 1])(x=X)
    as_tuple = gc.compile((x * 2, x + 1))(x=X)
    for out in (as_list, as_tuple):
        assert isinstance(out, list) and len(out) == 2
        np.testing.assert_array_equal(out[0], [2.0, 4.0])
        np.testing.assert_array_equal(out[1], [2.0, 3.0])
    as_dict = gc.compile({"double": x * 2, "sum": x.sum()})(x=X)
    assert isinstance(as_dict, dict) and list(as_dict) == ["double", "sum"]
    np.testing.assert_array_equal(as_dict["double"], [2.0, 4.0])
    assert isinstance(as_dict["sum"], np.ndarray) and as_dict["sum"].shape == () and as_dict["sum"] == 3.0


def test_scalar_outputs_are_arrays():
    s = gc.placeholder((), "float64", name="s")
    out = gc.compile(s * s + 1)(s=2.0)
    assert isinstance(out, np.ndarray) and out.shape == () and out == 5.0


def test_compile_rejects_non_tensor_outputs_and_empty_functions():
    with pytest.raises(gc.CompileError):
        gc.compile([np.zeros(2)])
    with pytest.raises(gc.CompileError):
        gc.compile("x")
    with pytest.raises(gc.CompileError, match="nothing"):
        gc.compile()


# -- outputs never alias ------------------------------------------------------------------------------


def test_mutating_a_returned_array_changes_nothing():
    w = gc.variable(np.arange(3.0), name="w")
    f = gc.compile(w * 2)
    out = f()
    out[:] = -1.0
    np.testing.assert_array_equal(f(), [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(w.value, [0.0, 1.0, 2.0])


def test_identity_of_variable_does_not_alias_the_variable():
    w = gc.variable(np.arange(3.0), name="w")
    f = gc.compile([gc.identity(w), w, w.reshape(3, 1), w.T, w[1:]])
    outs = f()
    for o in outs:
        assert_no_alias(o, w.graph.variables["w"])
        o[...] = 99.0
    np.testing.assert_array_equal(w.value, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(f()[0], [0.0, 1.0, 2.0])


def test_outputs_do_not_alias_feeds_constants_or_each_other():
    x = gc.placeholder((2, 2), "float64", name="x")
    c = gc.constant(np.ones((2, 2)), name="c")
    t = x + 1
    f = gc.compile([gc.identity(x), x, x.T, c, t, t])
    X = np.zeros((2, 2))
    outs = f(x=X)
    assert_no_alias(outs[0], X)
    assert_no_alias(outs[1], X)
    assert_no_alias(outs[2], X)
    assert_no_alias(outs[4], outs[5])
    for o in outs:
        o[...] = 42.0
    np.testing.assert_array_equal(X, np.zeros((2, 2)))
    again = f(x=X)
    np.testing.assert_array_equal(again[3], np.ones((2, 2)))
    np.testing.assert_array_equal(again[4], np.ones((2, 2)))


def test_output_that_is_also_an_update_does_not_alias_the_variable():
    w = gc.variable(np.ones(3), name="w")
    new = w * 2
    f = gc.compile(new, updates=[(w, new)])
    out = f()
    out[:] = -5.0
    np.testing.assert_array_equal(w.value, [2.0, 2.0, 2.0])


def test_held_outputs_survive_later_calls():
    x = gc.placeholder((None, 4), "float64", name="x")
    w = gc.variable(np.ones((4, 4)), name="w")
    h = gc.tanh(x @ w) * 2 + 1
    f = gc.compile([h, gc.sum(h * h, axis=1), x * 3], updates=[(w, w * 0.5)])
    first = f(x=np.ones((2, 4)))
    kept = [o.copy() for o in first]
    second = f(x=np.full((2, 4), -1.0))  # same shapes: the same plan and buffers run again
    for a, k, b in zip(first, kept, second):
        np.testing.assert_array_equal(a, k)
        assert_no_alias(a, b)


def test_outputs_reading_a_variable_keep_the_pre_update_value():
    w = gc.variable(np.ones(3), name="w")
    f = gc.compile([w, gc.identity(w), w.T, w + 0], updates=[(w, w * 3)])
    first = f()
    second = f()
    for o in first:
        np.testing.assert_array_equal(o, [1.0, 1.0, 1.0])
    for o in second:
        np.testing.assert_array_equal(o, [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(w.value, [9.0, 9.0, 9.0])


def test_constant_and_fed_update_values_are_not_corrupted_by_later_updates():
    v = gc.variable(np.zeros(2), name="v")
    d = gc.placeholder((2,), "float64", name="d")
    reset = gc.compile(None, updates=[(v, np.array([7.0, 8.0]))])
    set_from_feed = gc.compile(None, updates=[(v, d)])
    add = gc.compile(None, updates=[gc.assign_add(v, d)])
    scale = gc.compile(None, updates=[(v, v * 2)])
    reset()
    add(d=[1.0, 1.0])
    scale()
    np.testing.assert_array_equal(v.value, [16.0, 18.0])
    reset()  # the constant it stores must not have been updated in place
    np.testing.assert_array_equal(v.value, [7.0, 8.0])
    D = np.array([1.0, 2.0])
    set_from_feed(d=D)
    scale()
    add(d=[1.0, 1.0])
    np.testing.assert_array_equal(D, [1.0, 2.0])  # nor the user's fed array
    np.testing.assert_array_equal(v.value, [3.0, 5.0])


def test_update_from_a_feed_copies_the_feed():
    x = gc.placeholder((3,), "float64", name="x")
    w = gc.variable(np.zeros(3), name="w")
    f = gc.compile(None, updates=[(w, x)])
    X = np.array([1.0, 2.0, 3.0])
    f(x=X)
    X[:] = 0.0
    np.testing.assert_array_equal(w.value, [1.0, 2.0, 3.0])


# -- finalize and the growth warning -------------------------------------------------------------------


def test_finalize_makes_building_raise():
    x = gc.placeholder((2,), name="x")
    y = x * 2
    f = gc.compile(y)
    g = gc.get_default_graph()
    assert g.finalize() is g
    n = len(g)
    with pytest.raises(gc.GraphError, match="finalized"):
        x + 1
    with pytest.raises(gc.GraphError, match="finalized"):
        gc.placeholder((2,), name="z")
    with pytest.raises(gc.GraphError, match="finalized"):
        gc.relu(x)
    assert len(g) == n
    # running and compiling already-built tensors still works
    np.testing.assert_array_equal(f(x=[1.0, 2.0]), [2.0, 4.0])
    np.testing.assert_array_equal(gc.compile([y, x])(x=[1.0, 2.0])[0], [2.0, 4.0])


def test_growth_between_calls_warns_once():
    x = gc.placeholder((2,), name="x")
    f = gc.compile(x * 2)
    f(x=[1.0, 2.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            x + 1  # the classic footgun: building ops inside the loop
            f(x=[1.0, 2.0])
    growth = [w for w in caught if issubclass(w.category, gc.GraphGrowthWarning)]
    assert len(growth) == 1
    msg = str(growth[0].message)
    assert "grew" in msg and "finalize" in msg
    assert growth[0].filename == __file__  # points at the user's call, not graphc


def test_no_growth_warning_when_a_second_function_is_compiled_before_the_loop():
    x = gc.placeholder((None, 2), name="x")
    w = gc.variable(np.ones((2, 1), np.float32), name="w")
    loss = gc.mean((x @ w) ** 2)
    step = gc.compile(loss, updates=[(w, w - 0.01 * gc.grad(loss, w))])
    predict = gc.compile(gc.relu(x @ w))  # builds ops after step was compiled, before any call
    with warnings.catch_warnings():
        warnings.simplefilter("error", gc.GraphGrowthWarning)
        for _ in range(3):
            step(x=np.ones((4, 2)))
            predict(x=np.ones((4, 2)))


def test_no_growth_warning_without_growth():
    x = gc.placeholder((2,), name="x")
    f = gc.compile(x * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", gc.GraphGrowthWarning)
        for _ in range(3):
            f(x=[1.0, 2.0])
        gc.compile(x)  # compiling existing tensors does not grow the graph
        f(x=[1.0, 2.0])
