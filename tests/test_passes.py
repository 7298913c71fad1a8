"""Passes, one at a time: every simplify and stabilize rule fires on its pattern and keeps the
values; rules never change a type; merge, fold and prune; idempotence; text goldens; verifier."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import next_line

import graphc as gc
from graphc.ir import Graph
from graphc.ir.graph import Node
from graphc.ir.printer import format_graph
from graphc.ir.types import TensorType
from graphc.ir.verify import VerifyError, verify_nodes
from graphc.ops import apply, mul_no_nan
from graphc.passes import Program, decompose, fold_constants, merge, optimize, prune, simplify, stabilize
from graphc.passes.fold import FOLD_MAX_ELEMENTS
from graphc.passes.pipeline import optimize_specialized
from graphc.passes.rewrite import _identity
from graphc.passes.specialize import isolate, specialize

F64 = "float64"


@pytest.fixture(autouse=True)
def verify_ir(monkeypatch):
    """The pass manager checks the IR after every pass of every function these tests compile."""
    monkeypatch.setenv("GRAPHC_VERIFY", "1")


def program_of(*outputs, updates=()) -> Program:
    """The program computing ``outputs``, copied into a private graph (as ``compile`` does)."""
    graph = outputs[0].graph
    return isolate(prune(Program(tuple(graph.nodes), tuple(outputs), tuple(updates))))


def text(program: Program) -> str:
    return format_graph(None, program.nodes)


def compute_ops(program: Program) -> list[str]:
    return [n.op for n in program.nodes if n.inputs]


def rewrites(events) -> list[str]:
    return [e.rule for e in events if e.kind == "rewrite"]


def check_pass(program: Program, result) -> tuple[Program, list]:
    """A pass's output is a valid program; returns (program, events)."""
    new, events = result
    verify_nodes(new.nodes, new.targets, where="test")
    return new, list(events)


# -- every rule fires on its pattern, and the optimized function computes the same values ----------
def _placeholders() -> SimpleNamespace:
    return SimpleNamespace(
        x=gc.placeholder((3, 4), F64, name="x"),
        y=gc.placeholder((3, 4), F64, name="y"),
        v=gc.placeholder((4,), F64, name="v"),
        u=gc.placeholder((None, 4), F64, name="u"),  # an unknown dim: rules that need one
        w=gc.placeholder((2, 3, 4), F64, name="w"),
        k=gc.placeholder((3,), "int64", name="k"),
        img=gc.placeholder((2, 3, 4, 6), F64, name="img"),  # NCHW images, for the pooling rules
    )


def _feeds(rng) -> dict:
    pos = lambda *s: rng.uniform(0.5, 2.0, s)  # noqa: E731  (log, sqrt and exp(log x) need x > 0)
    return {"x": pos(3, 4), "y": pos(3, 4), "v": pos(4), "u": pos(3, 4), "w": pos(2, 3, 4),
            "k": np.array([0, 3, 1]), "img": pos(2, 3, 4, 6)}  # fmt: skip


POOL = {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)}
BIAS = np.array([-1.5, 0.0, 0.3]).reshape(3, 1, 1)  # per channel: some windows end up all below zero


def _relu_pool_grad(p, mask_of=None, c=0.0):
    """max_pool2d_grad(h, g) * (mask_of > c) for h = relu(img - 1.25), as relu's gradient after a pool."""
    h = gc.relu(p.img - 1.25)
    g = gc.max_pool2d(p.img, 2) * 3.0
    return apply("max_pool2d_grad", h, g, **POOL) * gc.greater(h if mask_of is None else mask_of(h), c)


# the modules (graphc.passes re-exports functions of the same names)
S = importlib.import_module("graphc.passes.simplify")
Z = importlib.import_module("graphc.passes.stabilize")
D = importlib.import_module("graphc.passes.decompose")
# (rule, build(p) -> output, compute ops left after the pass, in program order)
RULE_CASES = [
    (S.mul_one, lambda p: gc.exp(p.x * 1.0), ["exp"]),
    (S.mul_one, lambda p: gc.exp(1.0 * p.x), ["exp"]),
    (S.mul_one, lambda p: gc.exp(p.x * gc.broadcast_to(gc.constant(1.0), (3, 4))), ["exp"]),
    (S.add_zero, lambda p: gc.exp(0.0 + p.x), ["exp"]),
    (S.add_zero, lambda p: gc.exp(p.x + 0.0), ["exp"]),
    (S.add_zeros_like, lambda p: gc.exp(p.u + gc.zeros_like(p.u)), ["exp"]),
    (S.sub_zero, lambda p: gc.exp(p.x - 0.0), ["exp"]),
    (S.zero_sub, lambda p: 0.0 - p.x, ["negative"]),
    (S.sub_self, lambda p: (lambda e: e - e)(gc.exp(p.x)), ["exp", "zeros_like"]),
    (S.double_negation, lambda p: gc.exp(gc.negative(-p.x)), ["exp"]),
    (S.div_one, lambda p: gc.exp(p.x / 1.0), ["exp"]),
    (S.div_const, lambda p: p.x / 4.0, ["multiply"]),
    (S.pow_const, lambda p: gc.exp(p.x**1.0), ["exp"]),
    (S.pow_const, lambda p: p.x**2, ["square"]),
    (S.pow_const, lambda p: p.x**0.5, ["sqrt"]),
    (S.pow_const, lambda p: p.x**-1, ["reciprocal"]),
    (S.transpose_identity, lambda p: gc.exp(gc.transpose(p.x, (0, 1))), ["exp"]),
    (S.transpose_transpose, lambda p: gc.exp(gc.transpose(gc.transpose(p.x))), ["exp"]),
    (S.transpose_transpose, lambda p: gc.transpose(gc.transpose(p.w, (1, 2, 0)), (1, 2, 0)), ["transpose"]),
    (S.matmul_of_transpose, lambda p: gc.transpose(p.x) @ p.y, ["matmul"]),
    (S.matmul_of_transpose, lambda p: p.x @ gc.transpose(p.y), ["matmul"]),
    (S.matmul_of_transpose, lambda p: gc.transpose(p.w, (0, 2, 1)) @ p.w, ["matmul"]),
    (  # a transpose read transposed is the operand itself
        S.matmul_of_transpose,
        lambda p: gc.matmul(gc.transpose(p.x), gc.transpose(p.y), transpose_a=True),
        ["matmul"],
    ),
    (S.reshape_chain, lambda p: gc.reshape(gc.reshape(p.x, (12,)), (4, 3)), ["reshape"]),
    (S.reshape_chain, lambda p: gc.exp(gc.reshape(gc.reshape(p.x, (12,)), (3, 4))), ["exp"]),
    (S.same_shape_noop, lambda p: gc.exp(gc.broadcast_to(p.x, (3, 4))), ["exp"]),
    (S.static_broadcast_like, lambda p: gc.exp(apply("broadcast_like", p.v, p.x)), ["broadcast_to", "exp"]),
    (S.static_sum_like, lambda p: apply("sum_like", p.x, p.v), ["sum"]),
    (S.sum_of_broadcast, lambda p: gc.sum(gc.broadcast_to(p.v, (3, 4)), axis=0), ["multiply"]),
    (S.static_like, lambda p: gc.ones_like(p.x), ["broadcast_to"]),
    (S.mul_no_nan_plain, lambda p: mul_no_nan(p.x, gc.constant(2.0)), ["multiply"]),
    (S.drop_noop, lambda p: gc.exp(gc.identity(p.x)), ["exp"]),
    (S.drop_noop, lambda p: gc.exp(gc.stop_gradient(p.x)), ["exp"]),
    (S.drop_noop, lambda p: gc.exp(gc.cast(p.x, F64, name="same_dtype")), ["exp"]),
    (S.exp_log, lambda p: gc.sqrt(gc.exp(gc.log(p.x))), ["sqrt"]),
    (S.log_exp, lambda p: gc.sqrt(gc.log(gc.exp(p.x))), ["sqrt"]),
    (S.where_const, lambda p: gc.exp(gc.where(True, p.x, p.y)), ["exp"]),
    (S.where_const, lambda p: gc.exp(gc.where(False, p.x, p.y)), ["exp"]),
    (D.static_mean, lambda p: gc.mean(p.x, axis=1), ["sum", "multiply"]),
    (S.reduce_no_axes, lambda p: gc.exp(gc.sum(p.x, axis=())), ["exp"]),
    (S.pool_before_map, lambda p: gc.max_pool2d(gc.relu(p.img + BIAS), 2), ["max_pool2d", "add", "relu"]),
    (
        S.pool_before_map,
        lambda p: gc.max_pool2d(gc.relu(BIAS + (p.img - 1.0)), 2, padding=1),
        ["max_pool2d", "subtract", "add", "relu"],
    ),  # (b + x; padded windows; x - 1 commutes too)
    (S.pool_before_map, lambda p: gc.max_pool2d(p.img - 1.0, 3, stride=1), ["max_pool2d", "subtract"]),
    (  # relu's own mask (c = 0): routed through relu's input, so the relu itself is no longer needed
        S.pool_grad_mask,
        _relu_pool_grad,
        ["subtract", "max_pool2d", "multiply", "max_pool2d", "greater", "multiply", "max_pool2d_grad"],
    ),
    (  # a mask below 0 is not relu's: routed through relu(z) as before
        S.pool_grad_mask,
        lambda p: _relu_pool_grad(p, c=-0.5),
        ["subtract", "relu", "max_pool2d", "multiply", "max_pool2d", "greater", "multiply", "max_pool2d_grad"],
    ),
    (Z.log_softmax_rule, lambda p: gc.log(gc.softmax(p.x), name="l"), ["log_softmax"]),
    (Z.log1p_rule, lambda p: gc.log(1.0 + p.x), ["log1p"]),
    (Z.log1p_rule, lambda p: gc.log(p.x + 1.0), ["log1p"]),
    (Z.softplus_rule, lambda p: gc.log1p(gc.exp(p.x)), ["softplus"]),
    (Z.log_sigmoid_rule, lambda p: gc.log(gc.sigmoid(p.x), name="l"), ["negative", "softplus", "negative"]),
    (Z.logsumexp_rule, lambda p: gc.log(gc.sum(gc.exp(p.x), axis=1)), ["logsumexp"]),
    (Z.expm1_rule, lambda p: gc.exp(p.x) - 1.0, ["expm1"]),
    (
        Z.cross_entropy_rule,
        lambda p: gc.sum(gc.one_hot(p.k, 4, F64) * gc.log_softmax(p.x), axis=-1),
        ["softmax_cross_entropy", "negative"],
    ),
]


def _pass_of(rule):
    return {S.__name__: (simplify, S.RULES), Z.__name__: (stabilize, Z.RULES), D.__name__: (decompose, D.RULES)}[
        rule.__module__
    ]


@pytest.mark.parametrize(
    "rule, build, left", RULE_CASES, ids=[f"{r.__name__}-{i}" for i, (r, _, _) in enumerate(RULE_CASES)]
)
def test_rule_fires_and_keeps_values(rule, build, left, rng):
    p = _placeholders()
    out = build(p)
    run_pass, _ = _pass_of(rule)
    new, events = check_pass(None, run_pass(program_of(out)))
    assert _identity(rule) in rewrites(events), text(new)
    assert compute_ops(new) == left, text(new)
    assert new.outputs[0].type == out.type
    feeds = _feeds(rng)
    expected = gc.compile(out, opt_level=0)(**feeds)
    got = gc.compile(out, opt_level=2)(**feeds)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_every_rule_has_a_case():
    covered = {r for r, _, _ in RULE_CASES}
    for table in (S.RULES, Z.RULES, D.RULES):
        for op, rules in table.items():
            for rule in rules:
                assert rule in covered, f"rule {rule.__name__} (on {op}) has no case in RULE_CASES"


def test_every_rule_states_its_identity():
    for table in (S.RULES, Z.RULES, D.RULES):
        for rules in table.values():
            for rule in rules:
                assert "->" in _identity(rule), f"{rule.__name__}: docstring must state 'pattern -> result'"


# -- rules do not fire where they would change the type ---------------------------------------------
ONES, ZEROS = np.ones((3, 4)), np.zeros((3, 4))
NO_FIRE_CASES = [
    (S.mul_one, lambda p: p.v * gc.constant(ONES)),  # the 1 broadcasts v to (3, 4)
    (S.mul_one, lambda p: gc.constant(ONES) * p.v),
    (S.mul_one, lambda p: p.v * gc.broadcast_to(gc.constant(1.0), (3, 4))),
    (S.mul_one, lambda p: gc.cast(p.x, "float32") * gc.constant(np.float64(1.0))),  # dtype widens
    (S.add_zero, lambda p: p.v + gc.constant(ZEROS)),
    (S.add_zero, lambda p: gc.constant(ZEROS) + p.v),
    (S.sub_zero, lambda p: p.v - gc.constant(ZEROS)),
    (S.zero_sub, lambda p: gc.constant(ZEROS) - p.v),
    (S.div_one, lambda p: p.v / gc.constant(ONES)),
    (S.div_const, lambda p: gc.cast(p.x, "float32") / gc.constant(np.float64(4.0))),
    (S.pow_const, lambda p: p.v ** gc.constant(2 * ONES)),
    (S.where_const, lambda p: gc.where(True, p.v, p.x)),
    (S.where_const, lambda p: gc.where(gc.constant(np.ones((3, 4), bool)), p.v, p.v)),
    (S.sum_of_broadcast, lambda p: gc.sum(gc.broadcast_to(p.v, (3, 4)), axis=(0, 1))),  # not just added axes
    (S.pool_before_map, lambda p: (lambda r: gc.max_pool2d(r, 2) * gc.max_pool2d(r * 2.0, 2))(gc.relu(p.img - 1.25))),
    (S.pool_before_map, lambda p: gc.max_pool2d(p.img + np.arange(6.0), 2)),  # b varies across a window
    (S.pool_before_map, lambda p: gc.max_pool2d(1.0 - p.img, 2)),  # decreasing in x
    (S.pool_grad_mask, lambda p: _relu_pool_grad(p, mask_of=lambda h: h * 2.0)),  # the mask reads another tensor
    (S.pool_grad_mask, lambda p: _relu_pool_grad(p, c=gc.constant(np.full((2, 3, 4, 6), 0.5)))),  # c not a scalar
    (S.matmul_of_transpose, lambda p: gc.transpose(p.w, (1, 0, 2)) @ gc.constant(np.ones((4, 2)))),  # not the last two
    (Z.log1p_rule, lambda p: gc.log(gc.constant(ONES) + p.v)),
    (Z.expm1_rule, lambda p: gc.exp(p.v) - gc.constant(ONES)),
]


@pytest.mark.parametrize(
    "rule, build", NO_FIRE_CASES, ids=[f"{r.__name__}-{i}" for i, (r, _) in enumerate(NO_FIRE_CASES)]
)
def test_rule_does_not_fire_where_it_would_change_the_type(rule, build, rng):
    p = _placeholders()
    out = build(p)
    run_pass, _ = _pass_of(rule)
    new, events = check_pass(None, run_pass(program_of(out)))
    assert _identity(rule) not in rewrites(events), text(new)
    assert new.outputs[0].type == out.type
    _, events = optimize(program_of(out), 2, verify=True)
    feeds = _feeds(rng)
    expected = gc.compile(out, opt_level=0)(**feeds)
    got = gc.compile(out, opt_level=2)(**feeds)
    assert got.shape == expected.shape == out.shape and got.dtype == expected.dtype == out.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-6 if out.dtype == np.float32 else 1e-12)


def test_rewrite_engine_rejects_a_rule_that_changes_the_type():
    """The engine's own guard: a buggy rule that returns a tensor of another shape is an error."""
    x = gc.placeholder((3, 4), F64, name="x")
    out = gc.exp(x)

    def bad(rw, node, inputs):
        """exp(x) -> sum(x) (wrong)"""
        return gc.sum(inputs[0], axis=0)

    from graphc.passes.rewrite import apply_rules

    with pytest.raises(AssertionError, match="changed its type"):
        apply_rules(program_of(out), {"exp": [bad]}, "bad")


def test_rule_events_name_the_node_and_the_users_line():
    x = gc.placeholder((3, 4), F64, name="x")
    line = next_line()
    out = gc.exp(x * 1.0)
    _, events = simplify(program_of(out))
    (e,) = [e for e in events if e.kind == "rewrite"]
    assert e.rule == "x * 1 -> x" and e.nodes == ("multiply",)
    assert e.source.endswith(f"test_passes.py:{line}")


# -- merge ----------------------------------------------------------------------------------------
def test_merge_computes_identical_subexpressions_once(rng):
    x = gc.placeholder((3, 4), F64, name="x")
    a = gc.tanh(x * 2.0 + 1.0)
    b = gc.tanh(x * 2.0 + 1.0)
    out = a * b
    new, events = check_pass(None, merge(program_of(out)))
    assert compute_ops(new) == ["multiply", "add", "tanh", "multiply"], text(new)
    assert sum(e.kind == "merge" for e in events) == 3  # multiply, add, tanh
    last = new.nodes[-1]
    assert last.inputs[0] is last.inputs[1]  # tanh(...) * tanh(...) reads one tanh
    xv = rng.normal(size=(3, 4))
    np.testing.assert_allclose(gc.compile(out)(x=xv), np.tanh(2 * xv + 1) ** 2, rtol=1e-12)


def test_merge_merges_equal_constants_but_not_other_dtypes_or_signed_zeros():
    g = Graph("private", private=True)  # isolate would already merge equal constants itself
    with g:
        x = gc.placeholder((3,), F64, name="x")
        c1, c2 = gc.constant(2.0), gc.constant(2.0)
        f32 = gc.constant(np.float32(2.0))
        pz, nz = gc.constant(0.0), gc.constant(-0.0)
        out = [x * c1, x * c2, gc.cast(x, "float32") * f32, x + pz, x + nz]
    new, events = check_pass(None, merge(Program(tuple(g.nodes), tuple(out), ())))
    consts = [n for n in new.nodes if n.op == "constant"]
    assert len(consts) == 4, text(new)  # 2.0 (once), float32 2.0, 0.0, -0.0
    assert [e.rule for e in events if e.kind == "merge"].count("identical constant") == 1
    assert new.outputs[0].node is new.outputs[1].node  # x * c1 and x * c2 are now one node
    f = gc.compile(out[3:], opt_level=1)  # merge and fold only (simplify drops x + 0 altogether)
    # 1 / (x + 0.0) and 1 / (x + -0.0) differ at x = -0.0: the constants must stay apart
    with np.errstate(divide="ignore"):
        r = [1 / a for a in f(x=np.array([-0.0, 1.0, 2.0]))]
    assert r[0][0] == np.inf and r[1][0] == -np.inf


def test_merge_never_merges_placeholders_or_variables(rng):
    a = gc.placeholder((3,), F64, name="a")
    b = gc.placeholder((3,), F64, name="b")  # same shape and dtype: equal attributes but the name
    va = gc.variable(np.ones(3), name="va")
    vb = gc.variable(np.ones(3), name="vb")  # equal initial values
    out = gc.exp(a) + gc.exp(b) + gc.exp(va) * gc.exp(vb)
    new, events = check_pass(None, merge(program_of(out)))
    assert not [e for e in events if e.kind == "merge"], [str(e) for e in events]
    assert compute_ops(new).count("exp") == 4
    f = gc.compile(out, updates=[(va, va * 2.0)])
    av, bv = rng.normal(size=3), rng.normal(size=3)
    np.testing.assert_allclose(f(a=av, b=bv), np.exp(av) + np.exp(bv) + np.e * np.e, rtol=1e-12)
    np.testing.assert_allclose(f(a=av, b=bv), np.exp(av) + np.exp(bv) + np.exp(2.0) * np.e, rtol=1e-12)
    np.testing.assert_array_equal(vb.value, np.ones(3))


def test_merge_keeps_nodes_that_differ_in_attributes():
    x = gc.placeholder((3, 4), F64, name="x")
    out = gc.sum(x, axis=0) + gc.sum(x, axis=1, keepdims=True)[:, 0].reshape(3)[:1]
    new, events = merge(program_of(out))
    assert compute_ops(new).count("sum") == 2
    assert not [e for e in events if e.kind == "merge"]


# -- fold -----------------------------------------------------------------------------------------
def test_fold_evaluates_constant_subgraphs(rng):
    x = gc.placeholder((3,), F64, name="x")
    c = gc.exp(gc.constant(np.array([0.0, 1.0, 2.0]))) * 2.0 + 1.0
    out = x * c
    new, events = check_pass(None, fold_constants(program_of(out)))
    assert compute_ops(new) == ["multiply"], text(new)
    assert [e.kind for e in events].count("fold") == 3  # exp, multiply, add
    folded = new.nodes[-1].inputs[1].node
    assert folded.op == "constant"
    np.testing.assert_allclose(folded.attrs["value"], np.exp([0.0, 1.0, 2.0]) * 2 + 1, rtol=1e-15)
    assert folded.attrs["value"].dtype == np.float64
    xv = rng.normal(size=3)
    np.testing.assert_allclose(gc.compile(out)(x=xv), xv * (np.exp([0.0, 1.0, 2.0]) * 2 + 1), rtol=1e-12)


def test_fold_never_grows_data_and_says_why():
    x = gc.placeholder((300, 300), F64, name="x")
    big = gc.broadcast_to(gc.constant(1.5), (300, 300))  # 1 element -> 90,000: stays a view
    small = gc.exp(gc.constant(np.zeros((3, 300))))  # as large as its input: folded
    assert FOLD_MAX_ELEMENTS == 0
    out = x * big + gc.sum(small)
    new, events = check_pass(None, fold_constants(program_of(out)))
    keeps = [e for e in events if e.kind == "keep"]
    assert len(keeps) == 1 and keeps[0].rule == "not folded: size cap", [str(e) for e in events]
    assert keeps[0].nodes == (big.node.name,)
    assert "90000 elements > 1" in keeps[0].detail
    assert "broadcast_to" in compute_ops(new)  # the big one stays a (cheap, view) node
    assert all(n.attrs["value"].size <= 900 for n in new.nodes if n.op == "constant")
    assert any(e.kind == "fold" and e.nodes == (small.node.name,) for e in events)
    # the keep shows up in explain too
    f = gc.compile(out)
    assert "not folded: size cap" in f.explain()
    np.testing.assert_allclose(f(x=np.ones((300, 300))), np.full((300, 300), 1.5 + 900.0))


def test_fold_does_not_cap_results_no_bigger_than_their_inputs():
    out = gc.exp(gc.constant(np.zeros(FOLD_MAX_ELEMENTS + 10)))
    new, events = fold_constants(program_of(out))
    assert compute_ops(new) == [] and not [e for e in events if e.kind == "keep"]
    np.testing.assert_array_equal(new.outputs[0].node.attrs["value"], np.ones(FOLD_MAX_ELEMENTS + 10))


def test_plans_fold_constant_broadcasts_the_compile_time_program_keeps():
    x = gc.placeholder((8, 3), F64, name="x")
    w = gc.variable(np.ones((3, 2)), name="w")
    loss = gc.mean(gc.sum(gc.tanh(x @ w), axis=1))  # its gradient starts from a broadcast seed
    fn = gc.compile(gc.grad(loss, w))
    consts = {n for n in fn.program.nodes if n.op == "constant"}
    grows = [n for n in fn.program.nodes if n.inputs and all(t.node in consts for t in n.inputs)]
    assert grows and all(n.op in ("broadcast_to", "multiply", "reshape") for n in grows), [n.op for n in grows]
    assert not [s for s in fn.plan.steps if all(t.node.op == "constant" for t in s.node.inputs)]
    xv = np.linspace(-1, 1, 24).reshape(8, 3)
    want = xv.T @ ((1 - np.tanh(xv @ np.ones((3, 2))) ** 2) / 8)
    np.testing.assert_allclose(fn(x=xv), want, rtol=1e-12, atol=1e-15)  # (its middle row sums to 0)


def test_a_constant_computation_that_fails_is_left_to_run_time():
    out = gc.take(gc.constant(np.array([1.0, 2.0, 3.0])), gc.constant(np.array([5])))  # out of range
    new, events = fold_constants(program_of(out))
    (keep,) = [e for e in events if e.kind == "keep"]
    assert keep.rule == "not folded: fails" and "IndexError" in keep.detail
    fn = gc.compile(out)  # compiles; the call then names the node
    with pytest.raises(gc.ExecutionError, match="take 'take'.*out of bounds"):
        fn()


def test_fold_max_elements_argument():
    out = gc.broadcast_to(gc.constant(1.0), (4, 4))
    new, events = fold_constants(program_of(out), max_elements=8)
    assert [e.kind for e in events] == ["keep"] and compute_ops(new) == ["broadcast_to"]
    new, events = fold_constants(program_of(out), max_elements=16)
    assert [e.kind for e in events] == ["fold"] and compute_ops(new) == []


def test_fold_leaves_stateful_and_fed_nodes_alone():
    v = gc.variable(np.ones(3), name="v")
    out = v * gc.exp(gc.constant(1.0))
    new, events = fold_constants(program_of(out, updates=(("v", v + 1.0),)))
    assert sorted(compute_ops(new)) == ["add", "multiply"]
    assert [e.nodes for e in events if e.kind == "fold"] == [("exp",)]


# -- prune ----------------------------------------------------------------------------------------
def test_prune_drops_what_outputs_and_updates_do_not_need():
    x = gc.placeholder((3,), F64, name="x")
    unused = gc.placeholder((3,), F64, name="unused")
    v = gc.variable(np.zeros(3), name="v")
    keep = gc.exp(x)
    dead = gc.log(x) + unused  # noqa: F841
    upd = v + gc.sin(x)
    dead2 = gc.cos(upd)  # noqa: F841
    graph = x.graph
    p = prune(Program(tuple(graph.nodes), (keep,), (("v", upd),)))
    assert [n.name for n in p.nodes] == ["x", "v", "exp", "sin", upd.node.name]
    assert [n.op for n in p.nodes] == ["placeholder", "variable", "exp", "sin", "add"]
    verify_nodes(p.nodes, p.targets)
    assert prune(p) is p  # nothing more to drop: the same program


def test_prune_keeps_topological_order():
    x = gc.placeholder((3,), F64, name="x")
    a = gc.exp(x)
    b = gc.sin(a)
    gc.cos(a)  # dead
    c = b + a
    p = prune(Program(tuple(x.graph.nodes), (c,), ()))
    ids = [n.id for n in p.nodes]
    assert ids == sorted(ids) and compute_ops(p) == ["exp", "sin", "add"]


def test_compile_prunes_unused_feeds_and_branches():
    x = gc.placeholder((3,), F64, name="x")
    gc.log(x) * 2.0  # dead
    f = gc.compile(gc.exp(x), opt_level=0)
    assert [n.op for n in f.program.nodes] == ["placeholder", "exp"]


# -- idempotence ----------------------------------------------------------------------------------
def _mlp():
    x = gc.placeholder((None, 5), F64, name="x")
    labels = gc.placeholder((None,), "int64", name="labels")
    w1 = gc.variable(np.full((5, 6), 0.1), name="w1")
    b1 = gc.variable(np.zeros(6), name="b1")
    w2 = gc.variable(np.full((6, 3), 0.1), name="w2")
    h = gc.relu(x @ w1 + b1)
    logits = h @ w2
    loss = gc.mean(gc.sum(gc.one_hot(labels, 3, F64) * gc.log(gc.softmax(logits, axis=-1), name="lp"), axis=-1))
    grads = gc.grad(-loss, [w1, b1, w2])
    return loss, grads, (w1, b1, w2)


def _programs():
    loss, grads, _ = _mlp()
    yield "mlp+grad", program_of(loss, *grads)
    gc.reset_default_graph()
    x = gc.placeholder((3, 4), F64, name="x")
    y = gc.log(1.0 + gc.exp(gc.transpose(gc.transpose(x)) * 1.0)) - 0.0
    yield "chain", program_of(y, gc.grad(gc.sum(y), x))
    gc.reset_default_graph()
    x = gc.placeholder((3, 4), F64, name="x")
    y = gc.placeholder((3, 4), F64, name="y")
    # folding makes two equal constants (3.0); x / 4 and y / 4 become multiplies by two new 0.25s
    yield "constants", program_of(x * (gc.constant(2.0) + 1.0) + y * (1.0 + gc.constant(2.0)), x / 4.0 + y / 4.0)
    gc.reset_default_graph()
    x = gc.placeholder((3, 4), F64, name="x")
    y = gc.placeholder((3, 4), F64, name="y")
    yield "unused feed", program_of(gc.exp(x) + (y - y))  # y is not needed once y - y is zeros


@pytest.mark.parametrize("level", [1, 2])
def test_pipeline_is_idempotent(level):
    for name, program in _programs():
        once, _ = optimize(program, level, verify=True)
        twice, reports = optimize(once, level, verify=True)
        assert text(twice) == text(once), name
        assert all(r.nodes_before == r.nodes_after for r in reports), name
        assert not [e for r in reports for e in r.events if e.kind != "keep"], name


def test_optimizing_never_changes_the_feeds_of_a_function(rng):
    x = gc.placeholder((3, 4), F64, name="x")
    y = gc.placeholder((3, 4), F64, name="y")
    out = gc.exp(x) + (y - y)
    program, _ = optimize(program_of(out), 2, verify=True)
    assert "subtract" not in compute_ops(program)
    assert [n.name for n in program.placeholders()] == ["x", "y"]
    again, _ = optimize(program, 2, verify=True)
    assert [n.name for n in again.placeholders()] == ["x", "y"]
    for level in (0, 2):
        fn = gc.compile(out, opt_level=level)
        with pytest.raises(gc.FeedError, match="missing feed for placeholder 'y'"):
            fn(x=np.ones((3, 4)))


def test_specialized_pipeline_is_idempotent():
    loss, grads, _ = _mlp()
    program, _ = optimize(program_of(loss, *grads), 2, verify=True)
    static = specialize(program, {"x": (4, 5), "labels": (4,)})
    once, _ = optimize_specialized(static, 2, verify=True)
    assert "fused_" in text(once)
    twice, reports = optimize_specialized(once, 2, verify=True)
    assert text(twice) == text(once)
    assert all(r.nodes_before == r.nodes_after for r in reports)


def test_autodiff_plumbing_simplifies_away_once_shapes_are_static():
    loss, grads, _ = _mlp()
    program, _ = optimize(program_of(loss, *grads), 2, verify=True)
    static = specialize(program, {"x": (4, 5), "labels": (4,)})
    once, _ = optimize_specialized(static, 2, verify=True)
    leftover = {"broadcast_like", "sum_like", "zeros_like", "ones_like", "reshape_like", "identity"}
    assert not leftover & set(compute_ops(once)), text(once)
    assert "softmax_cross_entropy" in compute_ops(program)  # the stabilized loss


# -- goldens: the program before and after, written out by hand -----------------------------------
def test_golden_simplify_then_stabilize():
    x = gc.placeholder((3, 4), F64, name="x")
    y = gc.log(1.0 + gc.exp(x * 1.0)) - 0.0
    before = program_of(y)
    want = """\
%x: f64[3,4] = placeholder() dtype=float64 shape=(3, 4)
%constant: f64[] = constant() value=1.
%multiply: f64[3,4] = multiply(%x, %constant)
%exp: f64[3,4] = exp(%multiply)
%add: f64[3,4] = add(%constant, %exp)
%log: f64[3,4] = log(%add)
%constant_2: f64[] = constant() value=0.
%subtract: f64[3,4] = subtract(%log, %constant_2)"""
    assert text(before) == want
    after, reports = optimize(before, 2, verify=True)
    want = """\
%x: f64[3,4] = placeholder() dtype=float64 shape=(3, 4)
%softplus: f64[3,4] = softplus(%x)"""
    assert text(after) == want
    names = [r.name for r in reports]
    assert names[:5] == ["prune", "fold_constants", "merge", "simplify", "stabilize"]
    first = {r.name: (r.nodes_before, r.nodes_after) for r in reversed(reports)}
    assert first["fold_constants"] == first["merge"] == (8, 8)
    assert first["simplify"] == (8, 5) and first["stabilize"] == (5, 3)
    # a second round turns log1p(exp(x)) into softplus; a third finds nothing more to do
    stabilize_runs = [r for r in reports if r.name == "stabilize"]
    assert [(r.nodes_before, r.nodes_after) for r in stabilize_runs] == [(5, 3), (3, 2), (2, 2)]
    assert all(r.nodes_before == r.nodes_after == 2 for r in reports[names.index("stabilize", 5) + 1 :])
    assert [e.rule for r in reports for e in r.events] == [
        "x * 1 -> x", "x - 0 -> x", "log(1 + x) -> log1p(x)", "log1p(exp(x)) -> softplus(x)"]  # fmt: skip


def test_golden_shape_plumbing():
    x = gc.placeholder((3, 4), F64, name="x")
    v = gc.placeholder((4,), F64, name="v")
    s = gc.sum(gc.broadcast_to(v, (3, 4)), axis=0)
    r = gc.reshape(gc.reshape(gc.transpose(gc.transpose(x, (1, 0)), (1, 0)), (12,)), (4, 3))
    before = program_of(s, r)
    want = """\
%x: f64[3,4] = placeholder() dtype=float64 shape=(3, 4)
%v: f64[4] = placeholder() dtype=float64 shape=(4,)
%broadcast_to: f64[3,4] = broadcast_to(%v) shape=(3, 4)
%sum: f64[4] = sum(%broadcast_to) axes=(0,) keepdims=False
%transpose: f64[4,3] = transpose(%x) axes=(1, 0)
%transpose_1: f64[3,4] = transpose(%transpose) axes=(1, 0)
%reshape: f64[12] = reshape(%transpose_1) shape=(12,)
%reshape_1: f64[4,3] = reshape(%reshape) shape=(4, 3)"""
    assert text(before) == want
    after, _ = simplify(before)
    # sum of a broadcast over the added axis is v * 3; transpose twice is x; reshape twice is one
    # reshape of x (a new node: the names of replacements are fresh, never reused)
    want = """\
%x: f64[3,4] = placeholder() dtype=float64 shape=(3, 4)
%v: f64[4] = placeholder() dtype=float64 shape=(4,)
%constant: f64[] = constant() value=3.
%multiply: f64[4] = multiply(%v, %constant)
%reshape_2: f64[4,3] = reshape(%x) shape=(4, 3)"""
    assert text(after) == want


# -- the verifier ---------------------------------------------------------------------------------
@pytest.mark.parametrize("level", [0, 1, 2])
def test_verifier_accepts_every_pass_output(level):
    for _, program in _programs():
        result, reports = optimize(program, level, verify=False)
        verify_nodes(result.nodes, result.targets)
        for p in (merge, fold_constants, simplify, stabilize):
            out, _ = p(program)
            verify_nodes(out.nodes, out.targets, where=p.__name__)


def _node(graph, op, inputs, attrs, types, name):
    return Node(len(graph.nodes), op, tuple(inputs), attrs, tuple(types), name, None, graph)


def test_verifier_rejects_broken_programs():
    x = gc.placeholder((3, 4), F64, name="x")
    a = gc.exp(x)
    b = gc.tanh(a)
    nodes = tuple(x.graph.nodes)
    verify_nodes(nodes, (b,))
    with pytest.raises(VerifyError, match="reads 'exp' before it is computed"):
        verify_nodes((nodes[0], nodes[2], nodes[1]), (b,))
    with pytest.raises(VerifyError, match="not computed"):
        verify_nodes(nodes[:2], (b,))
    g = Graph("broken", private=True)
    wrong = _node(g, "exp", [x], {}, [TensorType((4, 3), np.dtype(F64))], "wrong")
    with pytest.raises(VerifyError, match="recorded type"):
        verify_nodes((*nodes, wrong), ())
    wrong_dtype = _node(g, "exp", [x], {}, [TensorType((3, 4), np.dtype("float32"))], "wd")
    with pytest.raises(VerifyError, match="recorded type"):
        verify_nodes((*nodes, wrong_dtype), ())
    dup = _node(g, "tanh", [a], {}, [b.type], "exp")
    with pytest.raises(VerifyError, match="duplicate node name 'exp'"):
        verify_nodes((*nodes, dup), ())
    unknown = _node(g, "no_such_op", [a], {}, [b.type], "u")
    with pytest.raises(VerifyError, match="unknown op"):
        verify_nodes((*nodes, unknown), ())


def test_pass_manager_names_the_pass_that_broke_the_ir(monkeypatch):
    """With verify=True a broken pass is reported by name."""
    from graphc.passes import pipeline

    def broken(program):
        """Drops the first compute node but keeps its consumers: the IR is then invalid."""
        first = next(i for i, n in enumerate(program.nodes) if n.inputs)
        return Program(program.nodes[:first] + program.nodes[first + 1 :], program.outputs, program.updates), []

    x = gc.placeholder((3,), F64, name="x")
    monkeypatch.setitem(pipeline.PIPELINES, 2, (broken,))
    with pytest.raises(VerifyError, match="after pass broken"):
        optimize(program_of(gc.tanh(gc.exp(x))), 2, verify=True)
