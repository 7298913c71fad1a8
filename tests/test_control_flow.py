"""Control flow: cond, while_loop, scan (and foldl, foldr, map_fn) built, run, differentiated,
optimized, saved and drawn; the graphs/rnn.py and graphs/recursive.py examples against NumPy.

The registry-driven checks (values, static types, gradients and second order vs finite
differences, bad builds) are the cond/while_loop/scan entries of tests/op_specs.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
import graphc.runtime.control as runtime_control
from graphc.ir.printer import format_graph

ROOT = Path(__file__).resolve().parent.parent
F64 = "float64"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"graphs_{name}", ROOT / "graphs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        g[i] = (f(up) - f(down)) / (2 * eps)
    return g


def _ops(nodes) -> list[str]:
    """The ops of these nodes and, recursively, of their bodies."""
    out = []
    for n in nodes:
        out.append(n.op)
        for v in n.attrs.values():
            if isinstance(v, gc.ir.Subgraph):
                out += _ops(v.nodes)
    return out


# -- cond ------------------------------------------------------------------------------------------


def test_cond_runs_only_the_taken_branch():
    x = gc.placeholder((3,), F64, name="x")
    p = gc.placeholder((), "bool", name="p")
    y = gc.cond(p, lambda: x * 2.0, lambda: gc.log(-gc.abs(x) - 1.0))  # NaN wherever it runs
    f = gc.compile(y, check_numerics=True)
    np.testing.assert_array_equal(f(x=[1.0, 2.0, 3.0], p=True), [2.0, 4.0, 6.0])
    where = r"log 'log': produced NaN .*, in the false branch of cond 'cond'"
    with np.errstate(invalid="ignore"), pytest.raises(gc.NumericsError, match=where):
        f(x=[1.0, 2.0, 3.0], p=False)


def test_cond_kernel_errors_only_from_the_taken_branch():
    x = gc.placeholder((3,), F64, name="x")
    i = gc.placeholder((2,), "int64", name="i")
    p = gc.placeholder((), "bool", name="p")
    f = gc.compile(gc.cond(p, lambda: gc.take(x, i), lambda: x[:2]))
    np.testing.assert_array_equal(f(x=[1.0, 2.0, 3.0], i=[7, 9], p=False), [1.0, 2.0])  # indices out of range
    with pytest.raises(gc.ExecutionError, match=r"take 'take' in the true branch of cond 'cond': IndexError"):
        f(x=[1.0, 2.0, 3.0], i=[7, 9], p=True)


def test_cond_branches_must_agree_and_errors_name_both():
    x = gc.placeholder((2, 3), F64, name="x")
    p = gc.placeholder((), "bool", name="p")
    with pytest.raises(gc.ShapeError, match=r"cond 'c': the branches return different structures: the true branch "
                                            r"returns \(tensor, tensor\), the false branch tensor"):  # fmt: skip
        gc.cond(p, lambda: (x, x), lambda: x, name="c")
    with pytest.raises(gc.ShapeError, match=r"output 0: the true branch returns \(2, 3\), the false branch \(3, 2\)"):
        gc.cond(p, lambda: x, lambda: x.T)
    with pytest.raises(gc.DTypeError, match=r"output 0: the true branch returns f64\[2,3\], the false branch i64"):
        gc.cond(p, lambda: x, lambda: gc.cast(x, "int64"))
    with pytest.raises(gc.DTypeError, match=r"predicate must be a bool scalar: got f64\[2,3\]"):
        gc.cond(x, lambda: x, lambda: x)


def test_cond_result_shape_is_the_most_specific_and_structures_come_back():
    p = gc.placeholder((), "bool", name="p")
    a = gc.placeholder((None, 3), F64, name="a")
    b = gc.placeholder((2, None), F64, name="b")
    out = gc.cond(p, lambda: {"pair": (a, 1.0)}["pair"], lambda: [b, gc.constant(2.0)])
    assert isinstance(out, tuple) and out[0].shape == (2, 3) and out[1].shape == ()
    assert gc.cond(p, lambda: None, lambda: None) is None
    f = gc.compile(list(out))
    r = f(p=False, a=np.ones((2, 3)), b=np.zeros((2, 3)))
    np.testing.assert_array_equal(r[0], np.zeros((2, 3)))
    assert r[1] == 2.0


def test_cond_gradient_is_the_taken_branchs_and_zero_for_the_other():
    p = gc.placeholder((), "bool", name="p")
    x = gc.placeholder((3,), F64, name="x")
    y = gc.placeholder((3,), F64, name="y")
    out = gc.cond(p, lambda: gc.sin(x) * 2.0, lambda: x * y)
    gx, gy = gc.grad(gc.sum(out), [x, y])
    f = gc.compile([gx, gy])
    xv, yv = np.array([0.1, 0.2, 0.3]), np.array([1.0, -2.0, 3.0])
    tx, ty = f(p=True, x=xv, y=yv)
    np.testing.assert_allclose(tx, 2 * np.cos(xv), rtol=1e-14)
    np.testing.assert_array_equal(ty, 0.0)  # y is read by the branch not taken
    fx, fy = f(p=False, x=xv, y=yv)
    np.testing.assert_array_equal(fx, yv)
    np.testing.assert_array_equal(fy, xv)


# -- while_loop ------------------------------------------------------------------------------------


def test_while_loop_does_what_a_python_loop_does():
    n = gc.placeholder((), "int64", name="n")

    def step(n, steps):  # the Collatz map
        half = (n / 2).astype("int64")
        return gc.where(gc.equal(half * 2, n), half, 3 * n + 1), steps + 1

    final, steps = gc.while_loop(lambda n, steps: n > 1, step, (n, 0))
    f = gc.compile([final, steps])
    for start in (1, 6, 27):
        k, m = start, 0
        while k > 1:
            k, m = (k // 2 if k % 2 == 0 else 3 * k + 1), m + 1
        assert [int(v) for v in f(n=start)] == [1, m]


def test_while_loop_stops_at_max_iterations_and_single_vars_stay_single():
    x = gc.placeholder((), F64, name="x")
    y = gc.while_loop(lambda v: v < 100.0, lambda v: v * 2.0, x, max_iterations=3)
    assert isinstance(y, gc.Tensor)
    f = gc.compile(y)
    assert f(x=1.0) == 8.0  # stopped by max_iterations
    assert f(x=30.0) == 120.0  # stopped by the condition
    assert f(x=500.0) == 500.0  # no iteration: the input itself, as a fresh array


def test_while_loop_state_that_changes_shape_becomes_unknown():
    v0 = gc.constant([1.0])
    out = gc.while_loop(lambda v: gc.sum(v) < 20.0, lambda v: gc.concatenate([v, v[-1:] + 1.0]), v0)
    assert out.shape == (None,)
    f = gc.compile([out, out * 2.0])
    a, b = f()
    np.testing.assert_array_equal(a, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(b, 2 * a)
    p = gc.placeholder((1,), F64, name="p")
    grown = gc.while_loop(lambda v: gc.sum(v) < 20.0, lambda v: gc.concatenate([v, v[-1:] * 2.0]), p, max_iterations=9)
    with pytest.raises(gc.GradientError, match="loop whose variables change shape"):
        gc.grad(gc.sum(grown), p)


def test_while_loop_gradient_needs_max_iterations():
    x = gc.placeholder((2,), F64, name="x")
    y = gc.while_loop(lambda v: gc.sum(v) < 10.0, lambda v: v * 1.5, x, name="grow")
    with pytest.raises(gc.GradientError, match=r"while_loop 'grow': differentiating a while_loop needs max_iterations"):
        gc.grad(gc.sum(y), x)


def test_while_loop_gradient_with_a_data_dependent_trip_count():
    x = gc.placeholder((2,), F64, name="x")
    w = gc.variable(np.array([0.7, 1.3]), name="w")
    y = gc.while_loop(lambda v: gc.sum(v) < 10.0, lambda v: v * 1.5 + w, x, max_iterations=20)
    gx, gw = gc.grad(gc.sum(y * y), [x, w])
    f = gc.compile([gc.sum(y * y), gx, gw])
    xv = np.array([0.3, 0.4])
    loss, tx, tw = f(x=xv)

    def ref(xv, wv):
        v = xv.copy()
        while v.sum() < 10.0:
            v = v * 1.5 + wv
        return np.sum(v * v)

    assert loss == pytest.approx(ref(xv, w.value), rel=1e-14)
    np.testing.assert_allclose(tx, _numeric_grad(lambda a: ref(a, w.value), xv), rtol=1e-6)
    np.testing.assert_allclose(tw, _numeric_grad(lambda a: ref(xv, a), w.value), rtol=1e-6)


# -- scan, foldl, foldr, map_fn ----------------------------------------------------------------------


def test_scan_with_tuples_none_and_reverse():
    xs = gc.placeholder((4, 2), F64, name="xs")
    ws = gc.placeholder((4,), F64, name="ws")

    def fn(carry, x):
        total, count = carry
        row, w = x
        return (total + row * w, count + 1), None

    (total, count), ys = gc.scan(fn, (gc.constant(np.zeros(2)), 0), (xs, ws))
    assert ys is None and count.dtype == np.int64
    (last,), seen = gc.scan(lambda c, x: ((x,), (c[0], x * 2.0)), (gc.constant(-1.0),), ws, reverse=True)
    f = gc.compile([total, count, last, seen[0], seen[1]])
    xv, wv = np.arange(8.0).reshape(4, 2), np.array([1.0, 2.0, 3.0, 4.0])
    t, c, lst, prev, twice = f(xs=xv, ws=wv)
    np.testing.assert_allclose(t, (xv * wv[:, None]).sum(0))
    assert c == 4 and lst == 1.0
    np.testing.assert_array_equal(prev, [2.0, 3.0, 4.0, -1.0])  # the carry each step saw, going backwards
    np.testing.assert_array_equal(twice, 2 * wv)


def test_scan_over_a_length_and_the_thin_layers():
    counts = gc.scan(lambda c, _: (c + 1, c * c), 0, length=5)[1]
    xs = gc.placeholder((None,), F64, name="xs")
    left = gc.foldl(lambda acc, x: acc * 10.0 + x, xs, 0.0)
    right = gc.foldr(lambda acc, x: acc * 10.0 + x, xs, 0.0)
    squares = gc.map_fn(lambda x: (x * x, -x), xs)
    f = gc.compile([counts, left, right, *squares])
    c, lft, rgt, sq, neg = f(xs=[1.0, 2.0, 3.0])
    np.testing.assert_array_equal(c, [0, 1, 4, 9, 16])
    assert (lft, rgt) == (123.0, 321.0)
    np.testing.assert_array_equal(sq, [1.0, 4.0, 9.0])
    np.testing.assert_array_equal(neg, [-1.0, -2.0, -3.0])
    assert gc.foldl(lambda a, x: a + x, xs, 0.0).shape == ()


def test_scan_build_errors():
    xs = gc.placeholder((4, 2), F64, name="xs")
    with pytest.raises(gc.GraphError, match=r"scan 's': fn must return a pair \(new_carry, y_t\)"):
        gc.scan(lambda c, x: c + x, gc.constant(np.zeros(2)), xs, name="s")
    with pytest.raises(gc.GraphError, match="without xs the number of steps must be given as length"):
        gc.scan(lambda c, x: (c, None), gc.constant(0.0))
    with pytest.raises(gc.ShapeError, match=r"fn returns a carry of structure \(tensor, tensor\), but init has "
                                            r"structure tensor"):  # fmt: skip
        gc.scan(lambda c, x: ((c, c), None), gc.constant(np.zeros(2)), xs)
    with pytest.raises(gc.DTypeError, match=r"carry 0 is f64\[2\] but the step returns i64\[2\]"):
        gc.scan(lambda c, x: (gc.cast(c, "int64"), None), gc.constant(np.zeros(2)), xs)


# -- closures --------------------------------------------------------------------------------------


def test_bodies_read_tensors_and_variables_of_enclosing_graphs():
    x = gc.placeholder((3,), F64, name="x")
    w = gc.variable(np.array([1.0, 2.0, 3.0]), name="w")
    scale = x * 2.0

    def step(c, i):  # the cond inside reads w and scale from two levels up
        return c + gc.cond(i > 1, lambda: w * scale, lambda: w), None

    total, _ = gc.scan(step, gc.constant(np.zeros(3)), gc.constant(np.arange(4)))
    f = gc.compile(total)
    xv = np.array([1.0, 0.5, -1.0])
    np.testing.assert_allclose(f(x=xv), 2 * w.value + 2 * w.value * 2 * xv)
    w.value = np.array([0.0, 1.0, 0.0])  # a loop reads the variable's value at every call
    np.testing.assert_allclose(f(x=xv), 2 * w.value + 2 * w.value * 2 * xv)
    scan_node = total.node
    assert w in scan_node.inputs and scale in scan_node.inputs  # captures are the node's extra inputs


def test_state_cannot_change_inside_a_body_and_body_tensors_stay_inside():
    w = gc.variable(np.zeros(2), name="w")
    with pytest.raises(gc.GraphError, match=r"cannot build a assign inside the control-flow body 'scan/step'"):
        gc.scan(lambda c, _: (c, gc.assign(w, w + 1.0)), gc.constant(0.0), length=2)
    with pytest.raises(gc.GraphError, match=r"cannot build a variable inside the control-flow body"):
        gc.scan(lambda c, _: (c + gc.variable(1.0), None), gc.constant(0.0), length=2)
    leaked = []
    gc.scan(lambda c, _: (leaked.append(c * 2.0) or c, None), gc.constant(0.0), length=2)
    with pytest.raises(gc.GraphError, match=r"exists only there|closed once traced"):
        leaked[0] + 1.0


# -- nesting ---------------------------------------------------------------------------------------


def _nested(x, w):
    """A while_loop of 3 iterations, each a scan over the rows of x whose step holds a cond."""

    def step(h, row):
        z = gc.tanh(row * w + h)
        return gc.cond(gc.sum(z) > 0.0, lambda: z * 0.5, lambda: z - 0.25), gc.sum(z)

    def body(i, h, acc):
        h2, ys = gc.scan(step, h, x)
        return i + 1, h2, acc + gc.sum(ys)

    _, h, acc = gc.while_loop(lambda i, h, acc: i < 3, body, (0, gc.zeros_like(w), gc.constant(0.0)),
                              max_iterations=4)  # fmt: skip
    return gc.sum(h * h) + acc


def _nested_ref(x, w):
    h, acc = np.zeros_like(w), 0.0
    for _ in range(3):
        for row in x:
            z = np.tanh(row * w + h)
            acc += z.sum()
            h = z * 0.5 if z.sum() > 0 else z - 0.25
    return np.sum(h * h) + acc


def test_cond_inside_scan_inside_while_loop_values_and_gradients():
    x = gc.placeholder((4, 3), F64, name="x")
    w = gc.placeholder((3,), F64, name="w")
    loss = _nested(x, w)
    gx, gw = gc.grad(loss, [x, w])
    f = gc.compile([loss, gx, gw])
    rng = np.random.default_rng(0)
    xv, wv = rng.standard_normal((4, 3)), rng.standard_normal(3)
    val, tx, tw = f(x=xv, w=wv)
    assert val == pytest.approx(_nested_ref(xv, wv), rel=1e-13)
    np.testing.assert_allclose(tx, _numeric_grad(lambda a: _nested_ref(a, wv), xv), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tw, _numeric_grad(lambda a: _nested_ref(xv, a), wv), rtol=1e-6, atol=1e-8)


def test_second_order_through_scan():
    x = gc.placeholder((3,), F64, name="x")
    xs = gc.placeholder((4, 3), F64, name="xs")
    final, ys = gc.scan(lambda h, r: (gc.sin(h * r + x), h * h), x, xs)
    loss = gc.sum(final) + gc.sum(ys * xs)
    v = np.array([0.3, -1.0, 0.5])
    hvp = gc.grad(gc.sum(gc.grad(loss, x) * v), x)  # a Hessian-vector product: a scan of a scan's VJP
    f_hvp = gc.compile(hvp)
    rng = np.random.default_rng(1)
    xv, xsv = rng.standard_normal(3), rng.standard_normal((4, 3))
    g = gc.compile(gc.sum(gc.grad(loss, x) * v))
    np.testing.assert_allclose(f_hvp(x=xv, xs=xsv), _numeric_grad(lambda a: g(x=a, xs=xsv), xv), rtol=1e-6, atol=1e-8)


# -- the compiler on bodies -------------------------------------------------------------------------


def test_a_cond_on_a_constant_predicate_becomes_its_branch():
    x = gc.placeholder((3,), F64, name="x")
    y = gc.cond(gc.constant(3.0) > 2.0, lambda: x + 1.0, lambda: x - 1.0)
    f = gc.compile(y)
    assert "cond" not in _ops(f.program.nodes)
    np.testing.assert_array_equal(f(x=[0.0, 1.0, 2.0]), [1.0, 2.0, 3.0])
    assert "cond(constant) -> its branch" in f.explain()


def test_loop_invariant_code_moves_out_of_the_loop():
    xs = gc.placeholder((5, 2, 3), F64, name="xs")
    w = gc.variable(np.arange(9.0).reshape(3, 3) / 10, name="w")
    hs = gc.scan(lambda h, x: (gc.tanh(x @ gc.exp(w).T + h), None), gc.constant(np.zeros((2, 3))), xs)[0]
    f = gc.compile(hs, opt_level=2)
    scan_node = next(n for n in f.program.nodes if n.op == "scan")
    body_ops = _ops(scan_node.attrs["step"].nodes)
    assert "exp" not in body_ops and "transpose" not in body_ops  # computed once, before the loop
    assert "exp" in [n.op for n in f.program.nodes]
    f0 = gc.compile(hs, opt_level=0)
    assert "exp" in _ops(next(n for n in f0.program.nodes if n.op == "scan").attrs["step"].nodes)
    xv = np.random.default_rng(0).standard_normal((5, 2, 3))
    np.testing.assert_allclose(f(xs=xv), f0(xs=xv), rtol=1e-14)


def test_a_forward_scan_stores_only_what_is_read_and_bodies_are_fused():
    xs = gc.placeholder((6, 4, 3), "float32", name="xs")
    w = gc.variable(np.ones((3, 3), "float32") * 0.1, name="w")
    u = gc.variable(np.eye(3, dtype="float32") * 0.5, name="u")
    h0 = gc.constant(np.zeros((4, 3), "float32"))
    final, hs = gc.scan(lambda h, x: (gc.tanh(x @ w + h @ u + 1.0), h), h0, xs)
    forward = gc.compile(final)
    node = next(n for n in forward.program.nodes if n.op == "scan")
    assert len(node.outputs) == 1  # the stored per-step values a gradient could read are gone
    assert len(final.node.outputs) > 2
    xv = np.random.default_rng(0).standard_normal((6, 4, 3)).astype("float32")
    got = forward(xs=xv)
    plan = forward.plan
    scan_step = next(s.node for s in plan.steps if s.node.op == "scan")
    # x_t @ w reads no carry: one GEMM over all steps before the loop; the step is one kernel,
    # h @ u with the elementwise rest as its epilogue
    assert [n.op for n in scan_step.attrs["step"].nodes if n.inputs] == ["fused_matmul"]
    assert "matmul" in [s.node.op for s in plan.steps]
    h = np.zeros((4, 3))
    for x in xv.astype(np.float64):
        h = np.tanh(x @ w.value + h @ u.value + 1.0)
    np.testing.assert_allclose(got, h, rtol=1e-5)
    trained = gc.compile([final, gc.grad(gc.sum(final), w)])
    stored = next(n for n in trained.program.nodes if n.op == "scan" and not n.attrs["reverse"])
    assert 1 < len(stored.outputs) < len(final.node.outputs)


@pytest.mark.parametrize("reverse", [False, True])
def test_work_without_a_carry_is_batched_over_steps_and_sums_run_after_the_loop(reverse):
    xs = gc.placeholder((5, 4, 3), F64, name="xs")
    w = gc.variable(np.random.default_rng(0).standard_normal((3, 2)), name="w")

    def step(c, x):
        h, acc, total = c
        h = gc.tanh(gc.exp(x @ w * 0.5) + h)  # x @ w and exp(...) read no carry
        return (h, acc + gc.transpose(h) @ x, total + gc.sum(h, axis=0)), h * 2.0

    init = (gc.constant(np.zeros((4, 2))), gc.constant(np.ones((2, 3))), gc.constant(np.zeros(2)))
    (h, acc, total), ys = gc.scan(step, init, xs, reverse=reverse)
    outs = [h, acc, total, ys, gc.grad(gc.sum(acc) + gc.sum(ys), w)]
    fast, plain = gc.compile(outs, opt_level=2), gc.compile(outs, opt_level=0)
    xv = np.random.default_rng(1).standard_normal((5, 4, 3))
    for a, b in zip(fast(xs=xv), plain(xs=xv)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    scans = [s.node for s in fast.plan.steps if s.node.op == "scan"]
    forward = next(n for n in scans if n.attrs["reverse"] == reverse)
    assert forward.attrs["n_carry"] == 1  # the two accumulators are computed after the loop
    assert "matmul" not in _ops(forward.attrs["step"].nodes)  # x @ w ran before it, for all steps
    assert "exp" not in _ops(forward.attrs["step"].nodes)
    assert "batched over 5 steps" in fast.explain()


def test_bodies_compile_once_per_bound_node_not_per_step(monkeypatch):
    calls = []
    lower = runtime_control.lower
    monkeypatch.setattr(runtime_control, "lower", lambda *a, **k: calls.append(1) or lower(*a, **k))
    xs = gc.placeholder((None, 3), F64, name="xs")
    final, _ = gc.scan(lambda h, x: (h * 0.5 + x, None), gc.constant(np.zeros(3)), xs)
    f = gc.compile(final)
    f(xs=np.ones((100, 3)))
    f(xs=np.ones((100, 3)))
    assert len(calls) == 1  # one body, lowered once, run 200 times
    f(xs=np.ones((7, 3)))
    assert len(calls) == 2  # a new input shape: a new plan, so the body is lowered for it


# -- serialization and drawing ----------------------------------------------------------------------


def test_nested_control_flow_and_its_gradient_round_trip_through_a_file(tmp_path):
    x = gc.placeholder((4, 3), F64, name="x")
    w = gc.variable(np.array([0.2, -0.4, 0.9]), name="w")
    loss = _nested(x, w)
    f = gc.compile([loss, gc.grad(loss, w)])
    xv = np.random.default_rng(2).standard_normal((4, 3))
    want = f(x=xv)
    gc.save(f, tmp_path / "f.json")
    loaded = gc.load(tmp_path / "f.json")
    for a, b in zip(loaded(x=xv), want):
        np.testing.assert_array_equal(a, b)
    gc.save(gc.get_default_graph(), tmp_path / "g.json")
    graph = gc.load(tmp_path / "g.json")
    assert format_graph(graph) == format_graph(gc.get_default_graph())
    with pytest.raises(gc.FormatError, match=r"control-flow bodies nested 3 deep, more than max_depth=2"):
        gc.load(tmp_path / "f.json", limits=gc.LoadLimits(max_depth=2))


def test_viz_draws_bodies_as_nested_clusters():
    from graphc.cli import viz

    x = gc.placeholder((4, 3), F64, name="x")
    loss = _nested(x, gc.constant(np.ones(3)))
    v = viz.view(gc.get_default_graph().nodes, [("loss", loss)])
    titles = {c.title: c for c in v.clusters.values()}
    loop = titles["while_loop 'while_loop' loop body"]
    step = titles["scan 'scan' step"]
    branch = titles["cond 'cond' true branch"]
    assert loop.parent is None and step.parent == loop.id and branch.parent == step.id
    dot = viz.to_dot(v)
    assert dot.index(f'subgraph "cluster_{loop.id}"') < dot.index(f'subgraph "cluster_{step.id}"')
    assert "<svg" in viz.to_svg(v)


# -- the examples -------------------------------------------------------------------------------------


def test_rnn_gradient_matches_hand_written_bptt():
    rnn = _example("rnn")
    net = rnn.build(dtype=F64)
    xs, ys = rnn.task(np.random.default_rng(3), 10, 5, 3, dtype=F64)
    loss, *grads = net["loss_and_grads"](xs=xs, ys=ys)
    ref_loss, ref = rnn.numpy_bptt({k: v.value for k, v in net["params"].items()}, xs, ys)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for k, g in zip(net["params"], grads):
        np.testing.assert_allclose(g, ref[k], rtol=0, atol=1e-9 * max(1.0, np.abs(ref[k]).max()), err_msg=k)


def test_rnn_trains():
    rnn = _example("rnn")
    net = rnn.build()
    rng = np.random.default_rng(1)
    losses = [float(net["step"](*[], **dict(zip(("xs", "ys"), rnn.task(rng, 10, 32, 3))))) for _ in range(150)]
    assert np.mean(losses[-10:]) < 0.05 * np.mean(losses[:10])


def test_recursive_example_matches_its_python_loop():
    rec = _example("recursive")
    net = rec.build()
    a = np.random.default_rng(0).uniform(-1e3, 1e3, 6)
    x, n, g = net["step"](a)
    ref, n_ref = rec.python_cube_root(a)
    assert int(n) == n_ref > 1
    np.testing.assert_allclose(x, ref, rtol=1e-15)
    np.testing.assert_allclose(g, 1 / (3 * np.cbrt(a) ** 2), rtol=1e-12)
