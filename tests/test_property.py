"""Properties of random graphs: opt_level=2 computes the same values and gradients as opt_level=0,
and the gradient builder the same gradients as a plain one.

Hypothesis builds depth-limited expression trees over three float64 placeholders whose shapes
broadcast against each other, mixing elementwise ops, reductions, matmuls, shape ops, softmax,
and the patterns that simplify and stabilize rewrite (``x * 1``, ``log(1 + x)``,
``log(softmax(x))`` ...). Every op's domain is kept safe (denominators ``1 + y*y``, logs of
``1 + x*x``), so the unoptimized form is itself accurate and the two must agree to 1e-9.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.ops import apply, registry

F64 = "float64"
SHAPES = {"a": (3, 4), "b": (4,), "c": (3, 1)}
FULL = (3, 4)


@pytest.fixture(autouse=True)
def verify_ir(monkeypatch):
    """The pass manager checks the IR after every pass of every function these tests compile."""
    monkeypatch.setenv("GRAPHC_VERIFY", "1")


def _full(x):
    """x broadcast to (3, 4) (every shape these graphs make broadcasts to it)."""
    return x if x.shape == FULL else gc.broadcast_to(x, FULL)


UNARY = {
    "tanh": gc.tanh,
    "sigmoid": gc.sigmoid,
    "softplus": gc.softplus,
    "relu": gc.relu,
    "square": gc.square,
    "negative": gc.negative,
    "exp(tanh)": lambda x: gc.exp(gc.tanh(x)),
    "sqrt(1+x*x)": lambda x: gc.sqrt(1.0 + x * x),
    "log(1+x*x)": lambda x: gc.log(1.0 + x * x),
    # patterns that simplify and stabilize rewrite
    "x*1": lambda x: x * 1.0,
    "1*x": lambda x: 1.0 * x,
    "x+0": lambda x: x + 0.0,
    "x-0": lambda x: x - 0.0,
    "0-x": lambda x: 0.0 - x,
    "-(-x)": lambda x: gc.negative(-x),
    "x/1": lambda x: x / 1.0,
    "x/3": lambda x: x / 3.0,
    "x**2": lambda x: x**2,
    "identity": gc.identity,
    "exp(log(1+x*x))": lambda x: gc.exp(gc.log(1.0 + x * x)),
    "log(exp(tanh))": lambda x: gc.log(gc.exp(gc.tanh(x))),
    "log(sigmoid)": lambda x: apply("log", gc.sigmoid(x)),  # apply: the public log rewrites it itself
    "exp(tanh)-1": lambda x: gc.exp(gc.tanh(x)) - 1.0,
    "x-x+x": lambda x: (x - x) + x,
    "x+zeros_like": lambda x: x + gc.zeros_like(x),
    "x*ones_like": lambda x: x * gc.ones_like(x),
}
BINARY = {
    "add": gc.add,
    "subtract": gc.subtract,
    "multiply": gc.multiply,
    "divide": lambda x, y: x / (1.0 + y * y),
    "maximum": gc.maximum,
}
REDUCE = {"sum": gc.sum, "mean": gc.mean, "max": gc.max, "logsumexp": gc.logsumexp}


def _axis_options(x) -> list:
    """(axis, keepdims) pairs whose result still broadcasts against (3, 4)."""
    if x.ndim == 0:
        return [(None, False)]
    opts = [(None, False), (None, True), (0, True)]
    opts.append((0, False))  # (3, k) -> (k,); (k,) -> ()
    if x.ndim == 2:
        opts.append((1, True))  # (3, 1): keepdims, since (3,) would not broadcast against (3, 4)
    return opts


def _expr(draw, ph: dict, depth: int):
    if depth <= 0 or draw(st.integers(0, 4)) == 0:
        return _leaf(draw, ph)
    kind = draw(st.sampled_from(["unary", "unary", "binary", "binary", "where", "reduce", "softmax",
                                 "matmul", "reshape", "transpose2", "sum_of_broadcast", "log_sum_exp"]))  # fmt: skip
    sub = lambda: _expr(draw, ph, depth - 1)  # noqa: E731
    if kind == "unary":
        return UNARY[draw(st.sampled_from(sorted(UNARY)))](sub())
    if kind == "binary":
        return BINARY[draw(st.sampled_from(sorted(BINARY)))](sub(), sub())
    if kind == "where":
        return gc.where(sub() > 0.0, sub(), sub())
    if kind == "reduce":
        x = sub()
        axis, keepdims = draw(st.sampled_from(_axis_options(x)))
        return REDUCE[draw(st.sampled_from(sorted(REDUCE)))](x, axis=axis, keepdims=keepdims)
    if kind == "softmax":
        x = _full(sub())
        axis = draw(st.sampled_from([0, 1, -1]))
        variant = draw(st.sampled_from(["softmax", "log_softmax", "log(softmax)"]))
        if variant == "log(softmax)":
            return apply("log", gc.softmax(x, axis=axis))
        return getattr(gc, variant)(x, axis=axis)
    if kind == "log_sum_exp":  # stabilize: log(sum(exp(x))) -> logsumexp(x)
        x = sub()
        axis, keepdims = draw(st.sampled_from(_axis_options(x)))
        return gc.log(gc.sum(gc.exp(gc.tanh(x)), axis=axis, keepdims=keepdims))
    if kind == "matmul":  # (3,4) @ (4,3) @ (3,4), scaled to keep magnitudes moderate
        x, y, z = _full(sub()), _full(sub()), _full(sub())
        return (x @ gc.transpose(y)) @ z * 0.1
    if kind == "reshape":
        x = _full(sub())
        if draw(st.booleans()):
            return gc.transpose(gc.reshape(x, (4, 3)))  # a real permutation of the data
        return gc.reshape(gc.reshape(x, (12,)), (3, 4))  # a chain simplify collapses
    if kind == "transpose2":
        return gc.transpose(gc.transpose(_full(sub())))
    # sum of a broadcast over the axis it added
    x = sub()
    if x.shape in ((4,), (1, 4)):
        return gc.sum(gc.broadcast_to(x, FULL), axis=0, keepdims=x.ndim == 2)
    return gc.sum(_full(x), axis=0)


def _leaf(draw, ph: dict):
    choice = draw(st.sampled_from(["a", "b", "c", "a", "const"]))
    if choice == "const":
        return gc.constant(draw(st.sampled_from([-1.5, -0.5, 0.25, 2.0])))
    return ph[choice]


@st.composite
def random_graphs(draw, max_depth: int = 4):
    graph = gc.Graph("random")
    unknown = draw(st.booleans())  # the leading dim of a and c known only when fed: specialized per call
    with graph:
        ph = {name: gc.placeholder((None, *shape[1:]) if unknown and len(shape) == 2 else shape, F64, name=name)
              for name, shape in SHAPES.items()}  # fmt: skip
        out = _expr(draw, ph, max_depth)
        if out.node.op == "constant":
            out = out + ph["a"]
    seed = draw(st.integers(0, 2**32 - 1))
    return graph, ph, out, seed


def _compare(got, want, what: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=what)


def _check(graph, ph, out, seed) -> None:
    rng = np.random.default_rng(seed)
    with graph:
        weights = gc.constant(rng.uniform(0.5, 1.5, tuple(3 if d is None else d for d in out.shape)))
        loss = gc.sum(out * weights)
        grads = gc.grad(loss, [ph["a"], ph["b"], ph["c"]])
    note(str(graph))
    feeds = {name: rng.normal(size=shape) for name, shape in SHAPES.items()}
    ref = gc.compile([out, *grads], opt_level=0)(**feeds)
    fn = gc.compile([out, *grads], opt_level=2)
    got = fn(**feeds)
    assert all(np.all(np.isfinite(v)) for v in ref), "the unoptimized graph must be accurate here"
    for name, g, w in zip(["value", "d/da", "d/db", "d/dc"], got, ref):
        _compare(g, w, name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_optimized_equals_unoptimized_values_and_gradients(case):
    graph, ph, out, seed = case
    _check(graph, ph, out, seed)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(max_depth=3))
def test_optimizing_twice_changes_nothing(case):
    """The compile-time pipeline reaches a fixed point: running it on its own output is a no-op."""
    from graphc.ir.printer import format_graph
    from graphc.passes import Program, optimize
    from graphc.passes.specialize import isolate

    graph, ph, out, _seed = case
    with graph:
        grads = gc.grad(gc.sum(out), [ph["a"], ph["b"], ph["c"]])
    note(str(graph))
    program = isolate(Program(tuple(graph.nodes), (out, *grads), ()))
    once, _ = optimize(program, 2, verify=True)
    twice, _ = optimize(once, 2, verify=True)
    assert format_graph(None, twice.nodes) == format_graph(None, once.nodes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_the_gradient_builder_changes_no_gradient(case):
    """gc.grad folds, merges and reads implied broadcasts at their source as it builds: the same
    gradients as built plainly (each compiled without optimization)."""
    graph, ph, out, seed = case
    rng = np.random.default_rng(seed)
    with graph:
        weights = gc.constant(rng.uniform(0.5, 1.5, tuple(3 if d is None else d for d in out.shape)))
        loss = gc.mean(gc.sum(out * weights, axis=0, keepdims=False) if out.ndim else out * weights)
        built = gc.grad(loss, [ph["a"], ph["b"], ph["c"]])
        with mock.patch.object(registry, "gradient_builder", contextlib.nullcontext):
            plain = gc.grad(loss, [ph["a"], ph["b"], ph["c"]])
    note(str(graph))
    feeds = {name: rng.normal(size=shape) for name, shape in SHAPES.items()}
    want = gc.compile(plain, opt_level=0)(**feeds)
    got = gc.compile(built, opt_level=0)(**feeds)
    for name, g, w in zip(["d/da", "d/db", "d/dc"], got, want):
        _compare(g, w, name)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_native_kernels_compute_what_the_numpy_kernels_compute(case):
    """The C tier (fused bodies, reductions, softmax ... as generated C) against the NumPy kernels
    it replaces, values and gradients, on the same optimized program."""
    graph, ph, out, seed = case
    rng = np.random.default_rng(seed)
    with graph:
        grads = gc.grad(gc.sum(out * gc.constant(rng.uniform(0.5, 1.5, (3, 4)))), [ph["a"], ph["b"], ph["c"]])
    note(str(graph))
    feeds = {name: rng.normal(size=shape) for name, shape in SHAPES.items()}
    native = gc.compile([out, *grads], native=True)
    got = native(**feeds)
    want = gc.compile([out, *grads], native=False)(**feeds)
    assert all(np.all(np.isfinite(v)) for v in want)
    for name, g, w in zip(["value", "d/da", "d/db", "d/dc"], got, want):
        _compare(g, w, name)
