"""Op specs as data: for every registered op, how to build it, what NumPy says it computes, which
inputs it accepts (shapes, domains), how precisely, and which builds must fail.

``tests/test_ops.py`` turns every entry into forward, shape/dtype, gradient and bad-build tests;
a meta-test there fails when a registered op has neither a spec nor an entry in ``EXEMPT``.
A shape dim written ``N(k)`` has size k in the data but is ``None`` in the placeholder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nn_reference as nnref
import numpy as np

import graphc as gc
from graphc.ops import apply
from graphc.ops.shape import _normalize_index  # setitem_zeros stores a normalized index

# -- the data model -----------------------------------------------------------------------------


class N(int):
    """A dim of this size in the data that the placeholder declares as None (unknown until run time)."""

    def __repr__(self) -> str:
        return f"N({int(self)})"


@dataclass(frozen=True)
class Domain:
    """Where an input's values come from: ``sample(rng, shape)`` and the kind of dtype it needs."""

    name: str
    sample: Callable[[np.random.Generator, tuple], np.ndarray]
    kind: str = "f"  # "f": float (the test picks float64 or float32), "i": int64, "b": bool


@dataclass(frozen=True)
class Case:
    """One way to call an op: the input shapes and the keyword arguments of ``build`` and ``ref``."""

    shapes: tuple  # one shape per input
    params: dict = field(default_factory=dict)
    domains: tuple | None = None  # overrides the spec's domains for this case
    grad: bool = True  # False: no gradient check here (say why next to the case)
    second_order: bool = True  # False: the first gradient is not smooth here (ties)


@dataclass(frozen=True)
class Bad:
    """A build that must fail with ``error`` whose message contains every string of ``match``."""

    shapes: tuple
    error: type
    match: tuple[str, ...]
    params: dict = field(default_factory=dict)
    dtypes: tuple[str, ...] | None = None  # default: float64 / int64 / bool by the spec's domains


FD, ZERO, NONE = "finite differences", "exactly zero", "not differentiable"


@dataclass(frozen=True)
class OpSpec:
    """Everything the op tests need to know about one registered op."""

    op: str  # the registry name; every case must build at least one node of it
    build: Callable[..., Any]  # build(*input_tensors, **params) -> Tensor or tuple of Tensors
    ref: Callable[..., Any]  # ref(*arrays, **params) -> array or tuple, from NumPy/math only
    cases: tuple[Case, ...]
    domains: Domain | tuple[Domain, ...]  # one per input, or one for all inputs
    grad: str = FD  # FD: vs finite differences; ZERO: defined as 0 (stop_gradient); NONE
    second_order: bool = False
    bad: tuple[Bad, ...] = ()
    rtol: float = 1e-12
    atol: float = 1e-12
    grad_rtol: float = 1e-6
    grad_atol: float = 1e-7
    name: str | None = None  # a composite public function whose cases build ``op`` (test ids show it)

    @property
    def label(self) -> str:
        return self.name or self.op

    def domains_for(self, case: Case) -> tuple[Domain, ...]:
        d = case.domains or self.domains
        return (d,) * len(case.shapes) if isinstance(d, Domain) else tuple(d)


# Sources and stateful ops are not functions of their inputs; other test files cover them.
EXEMPT = {
    "placeholder": "a source: every spec builds its inputs from placeholders",
    "variable": "a source: its value comes from the variable store (runtime/compile tests)",
    "constant": "a source: the gradient tests' weights and every Python scalar operand are constants",
    "assign": "stateful: a variable update, tested with compile(updates=...)",
}

# -- domains ----------------------------------------------------------------------------------


def _uniform(lo, hi):
    return lambda rng, s: rng.uniform(lo, hi, s)


REAL = Domain("real", _uniform(-2.0, 2.0))
POSITIVE = Domain("positive", _uniform(0.5, 2.0))  # log, sqrt, power's base
ABOVE_MINUS_HALF = Domain("above -1/2", _uniform(-0.5, 2.0))  # log1p
NONZERO = Domain("nonzero", lambda rng, s: rng.choice((-1.0, 1.0), s) * rng.uniform(0.5, 2.0, s))
# Integers plus a fraction in [0.1, 0.4]: away from the jumps of floor/ceil (integers) and round (halves).
OFF_GRID = Domain("off grid", lambda rng, s: rng.integers(-3, 3, s) + rng.uniform(0.1, 0.4, s))
# Distinct values at least 0.25 apart: no ties for max/min/argmax, whatever the perturbation.
DISTINCT = Domain("distinct", lambda rng, s: rng.permutation(math.prod(s)).reshape(s) * 0.25 - 1.0)
GRID = Domain("grid", lambda rng, s: rng.integers(-1, 2, s) * 0.5)  # exact ties for comparisons
BOOL = Domain("bool", lambda rng, s: rng.random(s) < 0.5, "b")


def ints(lo: int, hi: int) -> Domain:
    return Domain(f"ints in [{lo}, {hi})", lambda rng, s: rng.integers(lo, hi, s), "i")


def fixed(values, kind: str = "f") -> Domain:
    """These exact values (ties, zeros, infinities): the case's shape must match them."""
    arr = np.array(values, dtype={"f": np.float64, "i": np.int64, "b": bool}[kind])
    return Domain(f"fixed {arr.tolist()}", lambda rng, s: arr.reshape(s).copy(), kind)


# -- shared shape cases -------------------------------------------------------------------------

UNARY = (Case(((2, 3),)), Case(((),)), Case(((N(3), 2),)))
BINARY = (
    Case(((2, 3), (2, 3))),
    Case(((2, 3), (3,))),  # trailing broadcast
    Case(((4, 1), (1, 3))),  # both sides broadcast
    Case(((), (2, 3))),  # scalar
    Case(((N(2), 3), (3,))),
)
REDUCE = (
    Case(((2, 3, 4),)),
    Case(((2, 3, 4),), {"axis": 1}),
    Case(((2, 3, 4),), {"axis": (0, 2)}),
    Case(((2, 3, 4),), {"axis": -1, "keepdims": True}),
    Case(((2, 3, 4),), {"axis": (0, 1), "keepdims": True}),
    Case(((N(2), 3),), {"axis": 0}),  # reduces an unknown dim: mean counts it at run time
    Case(((N(2), 3),), {"axis": 1, "keepdims": True}),
    Case(((),)),
)
COMPARE = (Case(((2, 3), (2, 3))), Case(((2, 3), (3,))), Case(((N(2), 1), (1, 3))))
SOFTMAX = (
    Case(((2, 3),)),
    Case(((2, 3),), {"axis": 0}),
    Case(((2, 3, 4),), {"axis": 1}),
    Case(((N(2), 3),)),
)


def _bad_broadcast(op: str, n_inputs: int = 2) -> Bad:
    shapes = ((2, 3), (4,), (3,))[:n_inputs]
    return Bad(shapes, gc.ShapeError, (op, "do not broadcast", "(2, 3)", "(4,)"))


def _bad_axis(op: str) -> tuple[Bad, ...]:
    return (
        Bad(((2, 3),), gc.ShapeError, (op, "axis 2 is out of range", "rank 2"), {"axis": 2}),
        Bad(((2, 3),), gc.ShapeError, (op, "repeated axis"), {"axis": (1, -1)}),
    )


def _bool_dtype(op: str, n_inputs: int) -> Bad:
    """NumPy has no kernel of this op for bools: the build must say so, not crash later."""
    return Bad(((2,),) * n_inputs, gc.DTypeError, (op, "bool"), dtypes=("bool",) * n_inputs)


# -- NumPy references that need more than one line ----------------------------------------------


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _logsumexp(x, axis=None, keepdims=False):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


def _xent(logits, labels):
    picked = np.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    return _logsumexp(logits, axis=-1) - picked


# logits and integer labels: batched, with extra leading dims, an unknown batch, a single example
XENT_CASES = (Case(((2, 3), (2,))), Case(((2, 4, 3), (2, 4))), Case(((N(2), 3), (N(2),))), Case(((3,), ())))


def _xent_grad(logits, labels):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True) - np.eye(logits.shape[-1])[labels]


def _mul_no_nan(g, d):
    with np.errstate(invalid="ignore"):
        return np.where(g == 0, 0.0, g * d)


def _unbroadcast(x, ref):
    """x summed back to ref's shape: over leading dims, and over dims where ref has size 1."""
    while x.ndim > ref.ndim:
        x = x.sum(axis=0)
    for i, d in enumerate(ref.shape):
        if d == 1 and x.shape[i] != 1:
            x = x.sum(axis=i, keepdims=True)
    return x


def _setitem_zeros(g, ref, index):
    out = np.zeros(ref.shape, g.dtype)
    out[index] = g
    return out


def _take_grad(g, idx, ref, axis):
    """Scatter-add as a product with the one-hot matrix of the (wrapped) indices."""
    n = ref.shape[axis]
    onehot = (idx.reshape(-1, 1) % n == np.arange(n)).astype(g.dtype)
    pre = math.prod(ref.shape[:axis])
    g3 = g.reshape(pre, idx.size, -1)
    return np.einsum("pkq,kn->pnq", g3, onehot).reshape(ref.shape)


def _one_hot(idx, depth, dtype="float32"):
    out = np.zeros(idx.shape + (depth,), dtype)
    for pos in np.ndindex(idx.shape):
        if 0 <= idx[pos] < depth:
            out[pos + (idx[pos],)] = 1
    return out


def _matmul(a, b, transpose_a=False, transpose_b=False):
    return np.matmul(np.swapaxes(a, -1, -2) if transpose_a else a, np.swapaxes(b, -1, -2) if transpose_b else b)


def _count(x, axes):
    return np.asarray(math.prod(x.shape[a] for a in axes), dtype=x.dtype)


# Fused bodies, as the fuser writes them: (op, argument numbers, attributes, result dtype); arguments
# below the number of inputs are inputs, the others earlier results.
def _fused_tanh_fma(x, y, z):
    dt = x.dtype.str
    body = (("multiply", (0, 1), (), dt), ("add", (3, 2), (), dt), ("tanh", (4,), (), dt))
    return apply("fused_elementwise", x, y, z, body=body)


def _fused_where_exp(x, y):
    dt = x.dtype.str
    body = (("greater", (0, 1), (), "|b1"), ("exp", (0,), (), dt), ("where", (2, 3, 1), (), dt))
    return apply("fused_elementwise", x, y, body=body)


def _fused_matmul_bias_tanh(a, b, bias):
    dt = a.dtype.str  # argument 0 is the matmul's result, then the epilogue's other inputs
    return apply("fused_matmul", a, b, bias, body=(("add", (0, 1), (), dt), ("tanh", (2,), (), dt)))


# -- the specs ------------------------------------------------------------------------------------


def _unary(op, fn, ref, domain=REAL, cases=UNARY, **kw) -> OpSpec:
    return OpSpec(op, fn, ref, cases, domain, **kw)


def _binary(op, fn, ref, domains=(REAL, REAL), cases=BINARY, bad=(), **kw) -> OpSpec:
    return OpSpec(op, fn, ref, cases, domains, bad=(_bad_broadcast(op), *bad), **kw)


def _compare(op, fn, ref, domain=GRID) -> OpSpec:
    return OpSpec(op, fn, ref, COMPARE, domain, grad=NONE, bad=(_bad_broadcast(op),))


def _reduction(op, fn, ref, domain=REAL, cases=REDUCE, **kw) -> OpSpec:
    return OpSpec(
        op,
        lambda x, axis=None, keepdims=False: fn(x, axis, keepdims=keepdims),
        lambda x, axis=None, keepdims=False: np.asarray(ref(x, axis=axis, keepdims=keepdims)),
        cases,
        domain,
        bad=_bad_axis(op),
        **kw,
    )


# Pairs of ties: central differences give each tied element 1/2, as the rule does.
TIES = fixed([[1.0, 3.0, 3.0], [2.0, -1.0, 2.0]])
TIES_BY_COLUMN = fixed([[1.0, 3.0, 2.0], [1.0, -1.0, 2.0]])
MAX_CASES = (
    *REDUCE,
    Case(((2, 3),), {"axis": 1}, (TIES,), second_order=False),
    Case(((2, 3),), {"axis": 0}, (TIES_BY_COLUMN,), second_order=False),
)
ZEROS = fixed([[0.0, 1.5, -2.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])  # one, two and three zeros per row

ELEMENTWISE = [
    _binary("add", gc.add, np.add, second_order=True),
    _binary("subtract", gc.subtract, np.subtract, bad=(_bool_dtype("subtract", 2),)),
    _binary("multiply", gc.multiply, np.multiply, second_order=True),
    _binary("divide", gc.divide, np.true_divide, (REAL, NONZERO), second_order=True),
    _binary("power", gc.power, np.power, (POSITIVE, REAL), second_order=True),
    _binary("maximum", gc.maximum, np.maximum),
    _binary("minimum", gc.minimum, np.minimum),
    _binary(
        "mul_no_nan",
        gc.ops.mul_no_nan,
        _mul_no_nan,
        second_order=True,
        cases=(
            *BINARY,
            Case(  # infinite d: the point is the exact 0; finite differences mean nothing here
                ((2, 3), (2, 3)),
                domains=(
                    fixed([[0.0, 1.0, 0.0], [2.0, 0.0, -1.0]]),
                    fixed([[np.inf, 2.0, -np.inf], [1.0, np.nan, 3.0]]),
                ),
                grad=False,
            ),
        ),
    ),
    _unary("negative", gc.negative, np.negative, bad=(_bool_dtype("negative", 1),)),
    _unary("abs", gc.abs, np.abs, NONZERO),
    _unary("sign", gc.sign, np.sign, NONZERO, bad=(_bool_dtype("sign", 1),)),
    _unary("floor", gc.floor, np.floor, OFF_GRID),
    _unary("ceil", gc.ceil, np.ceil, OFF_GRID),
    _unary("round", gc.round, np.round, OFF_GRID),
    _unary("exp", gc.exp, np.exp, second_order=True),
    _unary("log", gc.log, np.log, POSITIVE, second_order=True),
    _unary("log1p", gc.log1p, np.log1p, ABOVE_MINUS_HALF, second_order=True),
    _unary("expm1", gc.expm1, np.expm1),
    _unary("sqrt", gc.sqrt, np.sqrt, POSITIVE, second_order=True),
    _unary("square", gc.square, np.square, second_order=True),
    _unary("reciprocal", gc.reciprocal, lambda x: 1.0 / x, NONZERO, second_order=True),
    _unary("sin", gc.sin, np.sin, second_order=True),
    _unary("cos", gc.cos, np.cos, second_order=True),
    OpSpec(
        "clip",
        gc.clip,
        lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
        (
            Case(((2, 3), (), ())),
            Case(((2, 3), (3,), (2, 1))),  # bounds that broadcast, sometimes lo > hi
            Case(((N(2), 3), (), (3,))),
        ),
        REAL,
        bad=(_bad_broadcast("clip", 3),),
    ),
    _unary("tanh", gc.tanh, np.tanh, second_order=True),
    _unary("sigmoid", gc.sigmoid, _sigmoid, second_order=True),
    _binary("tanh_grad", gc.ops.tanh_grad, lambda o, g: g * (1 - o * o), second_order=True),
    _binary("sigmoid_grad", gc.ops.sigmoid_grad, lambda o, g: g * o * (1 - o), second_order=True),
    _unary("relu", gc.relu, lambda x: np.where(x > 0, x, 0.0), NONZERO),
    _unary("softplus", gc.softplus, lambda x: np.log1p(np.exp(x)), second_order=True),
    _unary("erf", gc.erf, _erf, second_order=True),
    _unary("identity", gc.identity, lambda x: x.copy()),
    _unary("stop_gradient", gc.stop_gradient, lambda x: x.copy(), grad=ZERO),
    _unary("zeros_like", gc.zeros_like, np.zeros_like),
    _unary("ones_like", gc.ones_like, np.ones_like),
    OpSpec(
        "where",
        gc.where,
        lambda c, x, y: np.where(c, x, y),
        (
            Case(((2, 3), (2, 3), (2, 3))),
            Case(((3,), (2, 3), ())),
            Case(((2, 1), (1, 3), (3,))),
            Case(((N(2), 3), (N(2), 3), (3,))),
        ),
        (BOOL, REAL, REAL),
        second_order=True,
        bad=(_bad_broadcast("where", 3),),
    ),
    OpSpec(
        "cast",
        lambda x, dtype: gc.cast(x, dtype, name="cast"),  # named: a node even for float64
        lambda x, dtype: x.astype(dtype),
        (
            Case(((2, 3),), {"dtype": "float64"}),
            Case(((N(2), 3),), {"dtype": "float32"}, grad=False),  # float32 rounding swamps eps = 1e-6
            Case(((2, 3),), {"dtype": "int32"}, (OFF_GRID,), grad=False),  # integer output
            Case(((2, 3),), {"dtype": "float64"}, (BOOL,), grad=False),  # bool input
        ),
        REAL,
        second_order=True,
        bad=(Bad(((2,),), gc.DTypeError, ("unsupported dtype", "complex128"), {"dtype": "complex128"}),),
    ),
    _compare("equal", gc.equal, np.equal),
    _compare("not_equal", gc.not_equal, np.not_equal),
    _compare("less", gc.less, np.less),
    _compare("less_equal", gc.less_equal, np.less_equal),
    _compare("greater", gc.greater, np.greater),
    _compare("greater_equal", gc.greater_equal, np.greater_equal),
    _compare("logical_and", gc.logical_and, np.logical_and, BOOL),
    _compare("logical_or", gc.logical_or, np.logical_or, BOOL),
    _compare("logical_xor", gc.logical_xor, np.logical_xor, BOOL),
    OpSpec("logical_not", gc.logical_not, np.logical_not, UNARY, BOOL, grad=NONE),
]

REDUCTIONS = [
    _reduction("sum", gc.sum, np.sum, second_order=True, cases=(*REDUCE, Case(((2, 3),), {"axis": ()}))),
    _reduction("mean", gc.mean, np.mean, second_order=True),
    _reduction("max", gc.max, np.max, DISTINCT, MAX_CASES, second_order=True),
    _reduction("min", gc.min, np.min, DISTINCT, MAX_CASES, second_order=True),
    _reduction(
        "prod",
        gc.prod,
        np.prod,
        second_order=True,
        cases=(*REDUCE, Case(((3, 3),), {"axis": 1}, (ZEROS,)), Case(((3, 3),), {"axis": 0}, (ZEROS,))),
    ),
    _reduction("logsumexp", gc.logsumexp, _logsumexp, second_order=True),
    OpSpec(
        "argmax",
        lambda x, axis=None: gc.argmax(x, axis),
        lambda x, axis=None: np.asarray(np.argmax(x, axis)),
        (
            Case(((2, 3, 4),)),
            Case(((2, 3, 4),), {"axis": 1}),
            Case(((2, 3),), {"axis": -1}),
            Case(((N(3), 2),), {"axis": 0}),
        ),
        DISTINCT,
        grad=NONE,
        bad=(
            Bad(((),), gc.ShapeError, ("argmax", "at least one dimension")),
            Bad(((2, 3),), gc.ShapeError, ("argmax", "axis 2 is out of range"), {"axis": 2}),
        ),
    ),
    OpSpec(
        "argmin",
        lambda x, axis=None: gc.argmin(x, axis),
        lambda x, axis=None: np.asarray(np.argmin(x, axis)),
        (Case(((2, 3, 4),)), Case(((2, 3),), {"axis": 0}), Case(((N(3), 2),), {"axis": -1})),
        DISTINCT,
        grad=NONE,
        bad=(Bad(((),), gc.ShapeError, ("argmin", "at least one dimension")),),
    ),
    OpSpec(
        "count",
        lambda x, axes: apply("count", x, axes=axes),
        _count,
        (Case(((N(2), 3, 4),), {"axes": (0, 2)}), Case(((2, 3),), {"axes": ()})),
        REAL,
    ),
]

SHAPE = [
    OpSpec(
        "reshape",
        lambda x, shape: gc.reshape(x, shape),
        lambda x, shape: x.reshape(shape),
        (
            Case(((2, 3, 4),), {"shape": (4, 6)}),
            Case(((2, 3, 4),), {"shape": (-1,)}),
            Case(((2, 3, 4),), {"shape": (3, -1, 2)}),
            Case(((N(2), 6),), {"shape": (-1, 3, 2)}),
            Case(((1, 3),), {"shape": (3,)}),
        ),
        REAL,
        second_order=True,
        bad=(
            Bad(((2, 3),), gc.ShapeError, ("reshape", "6 elements", "(2, 3)", "(4, 2)"), {"shape": (4, 2)}),
            Bad(((2, 3),), gc.ShapeError, ("reshape", "6 elements", "(4, -1)"), {"shape": (4, -1)}),
            Bad(((2, 3),), gc.ShapeError, ("reshape", "at most one -1"), {"shape": (-1, -1)}),
        ),
    ),
    OpSpec(
        "reshape_like",
        lambda x, ref: apply("reshape_like", x, ref),
        lambda x, ref: x.reshape(ref.shape),
        (Case(((2, 6), (N(3), 4))), Case(((2, 3), (3, 2)))),
        REAL,
    ),
    OpSpec(
        "transpose",
        lambda x, axes=None: gc.transpose(x, axes),
        lambda x, axes=None: np.transpose(x, axes),
        (
            Case(((2, 3, 4),)),
            Case(((2, 3, 4),), {"axes": (1, 0, 2)}),
            Case(((2, 3, 4),), {"axes": (2, 0, 1)}),
            Case(((2, 3, 4),), {"axes": (-1, 0, 1)}),
            Case(((N(2), 3),)),
        ),
        REAL,
        second_order=True,
        bad=(
            Bad(((2, 3, 4),), gc.ShapeError, ("transpose", "permutation", "(0, 0, 1)"), {"axes": (0, 0, 1)}),
            Bad(((2, 3, 4),), gc.ShapeError, ("transpose", "permutation"), {"axes": (0, 1)}),
            Bad(((2, 3),), gc.ShapeError, ("transpose", "permutation", "(0, 3)"), {"axes": (0, 3)}),
        ),
    ),
    OpSpec(  # the public expand_dims builds a reshape when shapes are static: use unknown dims
        "expand_dims",
        lambda x, axis: gc.expand_dims(x, axis),
        lambda x, axis: np.expand_dims(x, axis),
        (Case(((N(2), 3),), {"axis": 0}), Case(((N(2), 3),), {"axis": -1}), Case(((2, N(3)),), {"axis": (0, 3)})),
        REAL,
        second_order=True,
        bad=(Bad(((2, 3),), gc.ShapeError, ("expand_dims", "axis 3 is out of range"), {"axis": 3}),),
    ),
    OpSpec(  # likewise: squeeze of a static shape is a reshape
        "squeeze",
        lambda x, axis=None: gc.squeeze(x, axis),
        lambda x, axis=None: np.squeeze(x, axis),
        (Case(((N(2), 1, 3),), {"axis": 1}), Case(((1, N(3), 1),)), Case(((N(2), 1),), {"axis": -1})),
        REAL,
        bad=(Bad(((2, 3),), gc.ShapeError, ("squeeze", "axis 1 has size 3", "(2, 3)"), {"axis": 1}),),
    ),
    OpSpec(
        "broadcast_to",
        lambda x, shape: gc.broadcast_to(x, shape),
        lambda x, shape: np.broadcast_to(x, shape),
        (
            Case(((3,),), {"shape": (2, 3)}),
            Case(((2, 1),), {"shape": (4, 2, 3)}),
            Case(((),), {"shape": (2, 3)}),
            Case(((N(2), 1),), {"shape": (2, 3)}),
        ),
        REAL,
        bad=(
            Bad(((2, 3),), gc.ShapeError, ("broadcast_to", "cannot broadcast (2, 3) to (3, 3)"), {"shape": (3, 3)}),
            Bad(((2, 3),), gc.ShapeError, ("broadcast_to", "(2, 3) to (3,)"), {"shape": (3,)}),
        ),
    ),
    OpSpec(
        "broadcast_like",
        lambda x, ref: apply("broadcast_like", x, ref),
        lambda x, ref: np.broadcast_to(x, ref.shape),
        (Case(((3,), (N(2), 3))), Case(((1, 3), (N(2), N(3)))), Case(((2, 1), (2, 3)))),
        REAL,
        bad=(Bad(((2, 3), (N(2), 4)), gc.ShapeError, ("broadcast_like", "cannot broadcast", "(2, 3)")),),
    ),
    OpSpec(
        "sum_like",
        lambda x, ref: apply("sum_like", x, ref),
        _unbroadcast,
        (
            Case(((2, 3), (3,))),
            Case(((4, 2, 3), (2, 1))),
            Case(((2, 3), (N(1), 3))),
            Case(((2, 3), ())),
            Case(((2, 3), (2, 3))),
        ),
        REAL,
        second_order=True,
    ),
    OpSpec(
        "concatenate",
        lambda *xs, axis=0: gc.concatenate(xs, axis),
        lambda *xs, axis=0: np.concatenate(xs, axis),
        (
            Case(((2, 3), (2, 2)), {"axis": 1}),
            Case(((2, 3), (1, 3), (3, 3))),
            Case(((N(2), 3), (N(2), 1)), {"axis": -1}),
            Case(((N(2), 3), (3, 3)), {"axis": 0}),
            Case(((2, 3),), {"axis": 1}),
        ),
        REAL,
        second_order=True,
        bad=(
            Bad(((2, 3), (3, 2)), gc.ShapeError, ("concatenate", "except on axis 1", "(2, 3), (3, 2)"), {"axis": 1}),
            Bad(((2, 3), (3,)), gc.ShapeError, ("concatenate", "(2, 3), (3,)")),
            Bad(((2, 3), (2, 3)), gc.ShapeError, ("concatenate", "axis 2 is out of range"), {"axis": 2}),
        ),
    ),
    OpSpec(
        "split",
        lambda x, sections, axis=0: gc.split(x, sections, axis),
        lambda x, sections, axis=0: tuple(np.split(x, sections if isinstance(sections, int) else list(sections), axis)),
        (
            Case(((2, 6),), {"sections": 3, "axis": 1}),
            Case(((2, 6),), {"sections": (1, 4), "axis": -1}),
            Case(((4, 3),), {"sections": (-1,)}),
            Case(((4, 3),), {"sections": (2, 9)}),
            Case(((N(4), 3),), {"sections": 2}),
            Case(((N(4), 3),), {"sections": (1,), "axis": 1}),
        ),
        REAL,
        second_order=True,
        bad=(
            Bad(((2, 5),), gc.ShapeError, ("split", "size 5", "2 equal sections"), {"sections": 2, "axis": 1}),
            Bad(((2, 5),), gc.ShapeError, ("split", "must be >= 1"), {"sections": 0}),
        ),
    ),
    OpSpec(
        "split_like",
        lambda g, *refs, axis: apply("split_like", g, *refs, axis=axis),
        lambda g, *refs, axis: tuple(np.split(g, np.cumsum([r.shape[axis] for r in refs])[:-1], axis)),
        (Case(((2, 5), (2, N(3)), (2, N(2))), {"axis": 1}), Case(((4, 2), (N(1), 2), (3, 2)), {"axis": 0})),
        REAL,
    ),
    OpSpec(
        "getitem",
        lambda x, index: x[index],
        lambda x, index: x[index],
        (
            Case(((3, 4),), {"index": 1}),
            Case(((3, 4),), {"index": (slice(None), slice(None, None, -2))}),
            Case(((3, 4),), {"index": (None, Ellipsis, -1)}),
            Case(((3, 4),), {"index": (slice(1, 3), None, slice(0, 1))}),
            Case(((2, 3, 4),), {"index": (Ellipsis, 1)}),
            Case(((N(3), 4),), {"index": (slice(None), 2)}),
            Case(((N(3), 4),), {"index": (slice(1, None), slice(-3, -1))}),
        ),
        REAL,
        second_order=True,
        bad=(
            Bad(((2, 3),), gc.ShapeError, ("getitem", "too many indices (3)", "rank 2"), {"index": (0, 0, 0)}),
            Bad(((2, 3),), gc.ShapeError, ("getitem", "index 5 is out of bounds for axis 0 with size 2"), {"index": 5}),
            Bad(((2, 3),), gc.ShapeError, ("getitem", "index -4", "axis 1 with size 3"), {"index": (0, -4)}),
            Bad(((2, 3),), gc.GraphError, ("getitem", "basic indexing", "list"), {"index": [0, 1]}),
            Bad(((2, 3),), gc.GraphError, ("getitem", "single ellipsis"), {"index": (Ellipsis, Ellipsis)}),
            Bad(((2, 3),), gc.GraphError, ("getitem", "step cannot be zero"), {"index": slice(0, 2, 0)}),
        ),
    ),
    OpSpec(
        "setitem_zeros",
        lambda g, ref, index: apply("setitem_zeros", g, ref, index=_normalize_index(index, ref.ndim, "setitem_zeros")),
        _setitem_zeros,
        (
            Case(((4,), (3, 4)), {"index": 1}),
            Case(((2, 2), (3, 4)), {"index": (slice(0, 2), slice(None, None, 2))}),
            Case(((1, 4), (3, 4)), {"index": (None, 1)}),
            Case(((2,), (N(3), 4)), {"index": (0, slice(1, 3))}),
        ),
        REAL,
        second_order=True,
    ),
    OpSpec(
        "take",
        lambda a, idx, axis=None: gc.take(a, idx, axis),
        lambda a, idx, axis=None: np.take(a, idx, axis),
        (
            Case(((5, 3), (4,)), {"axis": 0}, (REAL, ints(-5, 5))),  # negative indices wrap
            Case(((2, 5), (2, 3)), {"axis": 1}, (REAL, ints(0, 5))),
            Case(((6,), ()), {"axis": 0}, (REAL, ints(0, 6))),
            Case(((2, 3), (4,)), {}, (REAL, ints(0, 6))),
            Case(((N(4), 3), (2,)), {"axis": 1}, (REAL, ints(0, 3))),
            Case(((N(4), 3), (5,)), {"axis": 0}, (REAL, fixed([0, 3, 0, 1, 3], "i"))),  # repeats add up
        ),
        (REAL, ints(0, 2)),
        second_order=True,
        bad=(
            Bad(
                ((2, 3), (2,)),
                gc.DTypeError,
                ("take", "indices must be integers", "float64"),
                dtypes=("float64", "float64"),
            ),
            Bad(((2, 3), (2,)), gc.ShapeError, ("take", "axis 2 is out of range"), {"axis": 2}),
        ),
    ),
    OpSpec(
        "take_grad",
        lambda g, idx, ref, axis: apply("take_grad", g, idx, ref, axis=axis),
        _take_grad,
        (
            Case(((4, 3), (4,), (5, 3)), {"axis": 0}, (REAL, fixed([0, 3, 0, -1], "i"), REAL)),
            Case(((3, 2, 2), (2, 2), (3, 5)), {"axis": 1}, (REAL, ints(0, 5), REAL)),
            Case(((N(3), 2), (2,), (N(3), 4)), {"axis": 1}, (REAL, ints(0, 4), REAL)),
        ),
        (REAL, ints(0, 2), REAL),
        second_order=True,
    ),
    OpSpec(
        "one_hot",
        lambda idx, depth, dtype="float32": gc.one_hot(idx, depth, dtype),
        _one_hot,
        (
            Case(((2, 3),), {"depth": 4}),
            Case(((N(3),),), {"depth": 3, "dtype": "float64"}),
            Case(((),), {"depth": 5, "dtype": "int32"}),
        ),
        ints(-1, 5),
        grad=NONE,  # -1 and 4 are out of range for some depths: all-zero rows
        bad=(
            Bad(((2,),), gc.DTypeError, ("one_hot", "integers", "float64"), {"depth": 3}, ("float64",)),
            Bad(((2,),), gc.ShapeError, ("one_hot", "depth", "-1"), {"depth": -1}),
        ),
    ),
    OpSpec(
        "pad",
        lambda x, pad_width, value=0.0: gc.pad(x, pad_width, value),
        lambda x, pad_width, value=0.0: np.pad(x, pad_width, constant_values=value),
        (
            Case(((2, 3),), {"pad_width": ((1, 0), (2, 1)), "value": 0.5}),
            Case(((2, 3),), {"pad_width": 1}),
            Case(((N(2), 3),), {"pad_width": ((0, 1), (1, 1))}),
            Case(((3,),), {"pad_width": ((0, 2),)}),
        ),
        REAL,
        second_order=True,
        bad=(
            Bad(((2, 3),), gc.ShapeError, ("pad", "pad widths must be >= 0"), {"pad_width": ((1, -1), (0, 0))}),
            Bad(((2, 3),), gc.ShapeError, ("pad", "(1, 2, 3)"), {"pad_width": ((1, 2, 3),)}),
        ),
    ),
]

FUSED = [
    OpSpec(
        "fused_elementwise",
        lambda *xs: (_fused_tanh_fma if len(xs) == 3 else _fused_where_exp)(*xs),
        lambda *xs: np.tanh(xs[0] * xs[1] + xs[2]) if len(xs) == 3 else np.where(xs[0] > xs[1], np.exp(xs[0]), xs[1]),
        (
            Case(((2, 3), (2, 3), (2, 3))),
            Case(((2, 3), (3,), ())),
            Case(((N(2), 3), (N(2), 3), (3,))),
            Case(((2, 3), (2, 3))),
            Case(((N(2), 3), (3,))),
        ),
        REAL,
        second_order=True,
    ),
    OpSpec(
        "fused_matmul",
        _fused_matmul_bias_tanh,
        lambda a, b, bias: np.tanh(a @ b + bias),
        (Case(((2, 3), (3, 4), (4,))), Case(((2, 2, 3), (3, 4), (2, 4))), Case(((N(2), 3), (3, 4), (1, 4)))),
        REAL,
        second_order=True,
    ),
]

LINALG = [
    OpSpec(
        "matmul",
        gc.matmul,
        _matmul,
        (
            Case(((2, 3), (3, 4))),
            Case(((3, 2), (3, 4)), {"transpose_a": True}),
            Case(((2, 3), (4, 3)), {"transpose_b": True}),
            Case(((2, 1, 3, 2), (3, 4, 3)), {"transpose_a": True, "transpose_b": True}),
            Case(((N(3), 2), (N(3), 4)), {"transpose_a": True}),
            Case(((2, 2, 3), (3, 4))),
            Case(((2, 1, 2, 3), (3, 3, 2))),
            Case(((3,), (3, 4))),
            Case(((2, 3), (3,))),
            Case(((3,), (3,))),
            Case(((N(2), 3), (3, N(4)))),
        ),
        REAL,
        second_order=True,
        bad=(
            Bad(((2, 3), (4, 5)), gc.ShapeError, ("matmul", "(2, 3) @ (4, 5)", "inner dimensions 3 and 4")),
            Bad(((2, 2, 3), (3, 3, 4)), gc.ShapeError, ("matmul", "batch dims", "(2, 2, 3) @ (3, 3, 4)")),
            Bad(((), (3,)), gc.ShapeError, ("matmul", "scalar operands", "() @ (3,)")),
            Bad(
                ((2, 3), (4, 5)),
                gc.ShapeError,
                ("matmul", "(2, 3) @ (5, 4) (operands read transposed: b)", "inner dimensions 3 and 5"),
                {"transpose_b": True},
            ),
            Bad(((3,), (3, 4)), gc.ShapeError, ("matmul", "transpose_a", "(3,)"), {"transpose_a": True}),
        ),
    ),
]

NN = [
    OpSpec(
        "softmax",
        lambda x, axis=-1: gc.softmax(x, axis),
        _softmax,
        SOFTMAX,
        REAL,
        second_order=True,
        bad=(
            Bad(((2, 3),), gc.DTypeError, ("softmax", "float", "int64"), dtypes=("int64",)),
            Bad(((2, 3),), gc.ShapeError, ("softmax", "axis 2 is out of range"), {"axis": 2}),
        ),
    ),
    OpSpec(
        "log_softmax",
        lambda x, axis=-1: gc.log_softmax(x, axis),
        lambda x, axis=-1: x - _logsumexp(x, axis=axis, keepdims=True),
        SOFTMAX,
        REAL,
        second_order=True,
        bad=(Bad(((2, 3),), gc.DTypeError, ("log_softmax", "float", "int64"), dtypes=("int64",)),),
    ),
    OpSpec(
        "softmax_cross_entropy",
        gc.softmax_cross_entropy,
        _xent,
        XENT_CASES,
        (REAL, ints(0, 3)),
        second_order=True,
        bad=(
            Bad(
                ((2, 3), (2,)),
                gc.DTypeError,
                ("softmax_cross_entropy", "labels", "float64"),
                dtypes=("float64", "float64"),
            ),
            Bad(((2, 3), (2,)), gc.DTypeError, ("softmax_cross_entropy", "logits", "int64"), dtypes=("int64", "int64")),
            Bad(((2, 3), (3,)), gc.ShapeError, ("softmax_cross_entropy", "logits (2, 3) and labels (3,)")),
            Bad(((2, N(3)), (2,)), gc.ShapeError, ("softmax_cross_entropy", "number of classes", "(2, None)")),
        ),
    ),
    OpSpec(
        "softmax_cross_entropy_grad",
        lambda logits, labels: gc.ops.apply("softmax_cross_entropy_grad", logits, labels),
        _xent_grad,
        XENT_CASES,
        (REAL, ints(0, 3)),
        bad=(Bad(((2, 3), (3,)), gc.ShapeError, ("softmax_cross_entropy_grad", "logits (2, 3) and labels (3,)")),),
    ),
]

# -- convolution and pooling: naive loop references in nn_reference.py ------------------------------


def _conv_attrs(stride=1, padding=0, dilation=1, groups=1, kernel=(3, 3)) -> dict:
    """The normalized attributes the public conv2d gives its gradient ops."""
    dilation = nnref.pair(dilation)
    return {"stride": nnref.pair(stride), "padding": nnref.torch_padding(padding, kernel, dilation),
            "dilation": dilation, "groups": groups}  # fmt: skip


def _pool_attrs(kernel, stride=None, padding=0) -> dict:
    kernel = nnref.pair(kernel)
    return {
        "kernel": kernel,
        "stride": kernel if stride is None else nnref.pair(stride),
        "padding": nnref.pair(padding),
    }


def _public_pool(attrs: dict) -> dict:
    return {"kernel_size": attrs["kernel"], "stride": attrs["stride"], "padding": attrs["padding"]}


CONV_CASES = (
    Case(((2, 3, 5, 6), (4, 3, 3, 2))),  # non-square image and kernel, no padding
    Case(((2, 3, 7, 6), (4, 3, 3, 3)), {"stride": 2, "padding": 1}),
    Case(((1, 4, 7, 8), (6, 2, 2, 3)), {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1), "groups": 2}),
    Case(((1, 3, 5, 5), (6, 1, 3, 3)), {"padding": 1, "groups": 3}),  # depthwise
    Case(((1, 2, 5, 6), (3, 2, 2, 4)), {"padding": "same"}),  # even kernel: the extra pixel goes last
    Case(((1, 2, 6, 7), (3, 2, 3, 3)), {"padding": "valid", "dilation": 2}),
    Case(((2, 3, 4, 5), (4, 3, 1, 1))),  # 1x1: no im2col copy
    Case(((2, 1, 5, 6), (8, 1, 3, 3)), {"padding": 1}),  # many outputs per column row: (Ho, Wo) windows
    Case(((1, 4, 6, 5), (2, 2, 2, 3)), {"padding": "same", "groups": 2}),  # fewer outputs: transposed conv
    Case(((N(2), 3, 5, 4), (2, 3, 3, 3)), {"padding": 1}),
    Case(((N(1), 2, N(6), N(5)), (3, 2, 3, 2)), {"stride": 2}),  # unknown spatial dims
)
CONV_GRAD_CASES = (  # (conv2d arguments, x, w and output shapes); case 1 never reads the last row of x
    ({"stride": 2, "padding": (0, 1)}, (2, 3, 8, 6), (4, 3, 3, 3), (2, 4, 3, 3)),
    ({"stride": (1, 2), "padding": (0, 1), "dilation": (2, 1), "groups": 2, "kernel": (2, 3)},
     (1, 4, 6, 7), (4, 2, 2, 3), (1, 4, 4, 4)),
    ({"padding": 1}, (N(2), 2, 4, 5), (3, 2, 3, 3), (N(2), 3, 4, 5)),
    ({"padding": (1, 0), "groups": 2, "kernel": (3, 2)}, (2, 4, 5, 4), (2, 2, 3, 2), (2, 2, 5, 3)),
    ({"padding": (2, 1), "dilation": (2, 1), "groups": 2}, (1, 2, 7, 6), (4, 1, 3, 3), (1, 4, 7, 6)),  # row form
    ({"padding": 1}, (2, 1, 5, 4), (6, 1, 3, 3), (2, 6, 5, 4)),  # (Ho, Wo) windows at stride 1
)  # fmt: skip


def _conv_grad_input_case(attrs, x, w, g) -> Case:
    return Case((g, w, x), _conv_attrs(**attrs))


def _conv_grad_weight_case(attrs, x, w, g) -> Case:
    return Case((x, g, w), _conv_attrs(**attrs))


POOL_CASES = (
    Case(((2, 3, 6, 5),), _pool_attrs(2)),  # the odd last column is dropped
    Case(((1, 2, 7, 6),), _pool_attrs(3, 2, 1)),  # overlapping windows, padding
    Case(((1, 2, 5, 7),), _pool_attrs((2, 3), (1, 2), (1, 1))),
    Case(((N(2), 2, 4, 6),), _pool_attrs(2)),
    Case(((N(1), 1, N(5), N(6)),), _pool_attrs(3, 1, 1)),
)
BAD_POOL = (Bad(((1, 2, 4, 4),), gc.ShapeError, ("at most half the window",), _pool_attrs(2, 1, 2)),
            Bad(((2, 4, 4),), gc.ShapeError, ("NCHW", "(2, 4, 4)"), _pool_attrs(2)),
            Bad(((1, 1, 2, 2),), gc.ShapeError, ("larger than the padded input",), _pool_attrs(3)))  # fmt: skip


def _pooled(case: Case) -> tuple:
    """The output shape of a pooling case; dims unknown in the input stay unknown."""
    shape = case.shapes[0]
    out = nnref.max_pool2d(np.zeros(tuple(int(d) for d in shape)), **_public_pool(case.params)).shape
    return tuple(N(o) if isinstance(d, N) else o for d, o in zip(shape, out))


def _with(op: str, bads) -> tuple:
    return tuple(Bad(b.shapes, b.error, (op, *b.match), b.params, b.dtypes) for b in bads)


def _conv_pool(pool: str, kernel, pool_stride=None, pool_padding=0, **conv) -> dict:
    """The attributes of a conv2d_pool node: the convolution's, normalized, and the pooling's."""
    p = _pool_attrs(kernel, pool_stride, pool_padding)
    return {**_conv_attrs(**conv), "pool": pool, "pool_kernel": p["kernel"], "pool_stride": p["stride"],
            "pool_padding": p["padding"]}  # fmt: skip


def _conv_pool_ref(x, w, pool, pool_kernel, pool_stride, pool_padding, stride, padding, dilation, groups):
    y = nnref.conv2d(x, w, stride, padding, dilation, groups)
    return getattr(nnref, f"{pool}_pool2d")(y, pool_kernel, pool_stride, pool_padding)


CONV = [
    OpSpec(
        "conv2d_pool",
        lambda x, w, **a: apply("conv2d_pool", x, w, **a),
        _conv_pool_ref,
        (
            Case(((2, 3, 6, 6), (4, 3, 3, 3)), _conv_pool("avg", 2, padding=1)),
            Case(((1, 2, 7, 8), (3, 2, 2, 3)), _conv_pool("avg", 3, 2, 1, stride=(1, 2), dilation=(2, 1))),
            Case(((N(2), 2, 6, 6), (4, 2, 3, 3)), _conv_pool("avg", 2)),
            # (max: a window's maximum can change hands under a finite-difference step)
            Case(((2, 3, 6, 7), (4, 3, 3, 2)), _conv_pool("max", 2, padding=1), grad=False),
        ),
        REAL,
    ),
    OpSpec(
        "conv2d",
        gc.conv2d,
        nnref.conv2d,
        CONV_CASES,
        REAL,
        second_order=True,
        rtol=1e-11,
        atol=1e-11,
        bad=(
            Bad(((2, 3, 5, 5), (4, 2, 3, 3)), gc.ShapeError, ("conv2d", "input has 3 channels, expected 2")),
            Bad(
                ((1, 4, 5, 5), (3, 2, 3, 3)), gc.ShapeError, ("conv2d", "3 output channels", "2 groups"), {"groups": 2}
            ),
            Bad(((2, 3, 5), (4, 3, 3, 3)), gc.ShapeError, ("conv2d", "NCHW", "(2, 3, 5)")),
            Bad(((1, 1, 2, 2), (1, 1, 3, 3)), gc.ShapeError, ("conv2d", "larger than the padded input")),
            Bad(((1, 1, 5, 5), (1, 1, 3, 3)), gc.ShapeError, ("conv2d", "stride 1"), {"padding": "same", "stride": 2}),
            Bad(((1, 1, 5, 5), (1, 1, 3, 3)), gc.ShapeError, ("conv2d", "'full'"), {"padding": "full"}),
            Bad(((1, 1, 5, 5), (1, 1, 3, 3)), gc.ShapeError, ("conv2d", "stride must be"), {"stride": 0}),
            Bad(
                ((1, 1, 5, 5), (1, 1, 3, 3)),
                gc.DTypeError,
                ("conv2d", "float32 and float64"),
                dtypes=("float32", "float64"),
            ),
        ),
    ),
    OpSpec(
        "conv2d_grad_input",
        lambda g, w, x, **a: apply("conv2d_grad_input", g, w, x, **a),
        nnref.conv2d_grad_input,
        tuple(_conv_grad_input_case(*c) for c in CONV_GRAD_CASES),
        REAL,
        second_order=True,
        rtol=1e-11,
        atol=1e-11,
    ),
    OpSpec(
        "conv2d_grad_weight",
        lambda x, g, w, **a: apply("conv2d_grad_weight", x, g, w, **a),
        nnref.conv2d_grad_weight,
        tuple(_conv_grad_weight_case(*c) for c in CONV_GRAD_CASES),
        REAL,
        second_order=True,
        rtol=1e-11,
        atol=1e-11,
    ),
    OpSpec(  # distinct values: no ties, so the routing is stable under finite differences
        "max_pool2d",
        lambda x, **a: gc.max_pool2d(x, **_public_pool(a)),
        lambda x, **a: nnref.max_pool2d(x, **_public_pool(a)),
        POOL_CASES,
        DISTINCT,
        second_order=True,
        bad=(
            *_with("max_pool2d", BAD_POOL),
            Bad(((1, 1, 4, 4),), gc.DTypeError, ("max_pool2d", "float", "int64"), _pool_attrs(2), ("int64",)),
        ),  # fmt: skip
    ),
    OpSpec(
        "max_pool2d_grad",
        lambda x, g, **a: apply("max_pool2d_grad", x, g, **a),
        lambda x, g, **a: nnref.max_pool2d_grad(x, g, **_public_pool(a)),
        tuple(Case((c.shapes[0], _pooled(c)), c.params) for c in POOL_CASES),
        (DISTINCT, REAL),
        second_order=True,
    ),
    OpSpec(
        "max_pool2d_gather",
        lambda x, v, **a: apply("max_pool2d_gather", x, v, **a),
        lambda x, v, **a: nnref.max_pool2d_gather(x, v, **_public_pool(a)),
        tuple(Case((c.shapes[0], c.shapes[0]), c.params) for c in POOL_CASES),
        (DISTINCT, REAL),
        second_order=True,
    ),
    OpSpec(
        "avg_pool2d",
        lambda x, **a: gc.avg_pool2d(x, **_public_pool(a)),
        lambda x, **a: nnref.avg_pool2d(x, **_public_pool(a)),
        POOL_CASES,
        REAL,
        second_order=True,
        bad=_with("avg_pool2d", BAD_POOL),
    ),
    OpSpec(
        "avg_pool2d_grad",
        lambda g, x, **a: apply("avg_pool2d_grad", g, x, **a),
        lambda g, x, **a: nnref.avg_pool2d_grad(g, x, **_public_pool(a)),
        tuple(Case((_pooled(c), c.shapes[0]), c.params) for c in POOL_CASES),
        REAL,
        second_order=True,
    ),
]

# -- random ops: the documented scheme, Philox keyed by (seed, stream) at counter << 128 -------------


def _philox(counter, seed, stream) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(key=seed + (stream << 64), counter=int(counter) << 128))


def _random_uniform(counter, *like, shape, dtype, seed, stream, low, high):
    u = _philox(counter, seed, stream).random(like[0].shape if like else shape, dtype=dtype)
    return np.minimum(low + (high - low) * u, np.nextafter(dtype.type(high), dtype.type(low))).astype(dtype)


def _random_normal(counter, *like, shape, dtype, seed, stream, mean, stddev):
    z = _philox(counter, seed, stream).standard_normal(like[0].shape if like else shape, dtype=dtype)
    return (mean + stddev * z).astype(dtype)


def _random_spec(op: str, ref_fn, **dist) -> OpSpec:
    f64, f32 = np.dtype("float64"), np.dtype("float32")
    common = {"seed": 7, "stream": 12345, **dist}
    return OpSpec(
        op,
        lambda counter, *like, **a: apply(op, counter, *like, **a),
        ref_fn,
        (
            Case(((),), {"shape": (2, 3), "dtype": f64, **common}),
            Case(((),), {"shape": (4,), "dtype": f32, **common, "seed": 2**64 - 1}),
            Case(((), (N(3), 2)), {"shape": None, "dtype": f64, **common}, (ints(0, 2**40), REAL)),
        ),
        ints(0, 1000),
        grad=NONE,
        bad=(
            Bad(((),), gc.DTypeError, (op, "int64 scalar"), {"shape": (2,), "dtype": f64, **common}, ("int32",)),
            Bad(((),), gc.DTypeError, (op, "float dtype"), {"shape": (2,), "dtype": np.dtype("int64"), **common}),
        ),
    )


RANDOM = [
    _random_spec("random_uniform", _random_uniform, low=-1.0, high=3.0),
    _random_spec("random_normal", _random_normal, mean=0.5, stddev=2.0),
]

# -- composites: public functions built from registered ops, listed under an op they build ----------
RM, RV = np.array([0.3, -0.2, 0.1, 0.0]), np.array([1.5, 0.5, 2.0, 1.0])  # running statistics


def _batch_norm(x, gamma, beta, training, axis=1):
    c = x.shape[axis]
    return gc.batch_norm(x, gamma, beta, gc.variable(RM[:c]), gc.variable(RV[:c]), training, axis=axis)


def _batch_norm_ref(x, gamma, beta, training, axis=1):
    c = x.shape[axis]
    return nnref.batch_norm(x, gamma, beta, RM[:c], RV[:c], training, axis=axis % x.ndim)[0]


COMPOSITES = [
    OpSpec(
        "erf",
        gc.gelu,
        nnref.gelu,
        (Case(((2, 3),)), Case(((N(3), 4),)), Case(((),))),
        Domain("wide", _uniform(-6.0, 6.0)),
        second_order=True,
        name="gelu",
        bad=(
            Bad(((2,),), gc.DTypeError, ("gelu", "float", "int64"), dtypes=("int64",)),
            Bad(((2,),), gc.GraphError, ("gelu", "'none' or 'tanh'", "'exact'"), {"approximate": "exact"}),
        ),
    ),
    OpSpec(
        "tanh",
        lambda x: gc.gelu(x, "tanh"),
        lambda x: nnref.gelu(x, "tanh"),
        (Case(((2, 3),)), Case(((N(3), 4),))),
        Domain("wide", _uniform(-6.0, 6.0)),
        second_order=True,
        name="gelu_tanh",
    ),
    OpSpec(
        "take",
        gc.embedding,
        lambda ids, table: table[ids],
        (
            Case(((4,), (5, 3))),
            Case(((2, 3), (5, 2))),
            Case(((N(3),), (5, 4))),
            Case(((5,), (4, 3)), {}, (fixed([0, 3, 0, 1, 3], "i"), REAL)),  # repeated ids add up
        ),
        (ints(0, 5), REAL),
        second_order=True,
        name="embedding",
        bad=(
            Bad(((3,), (5, 2)), gc.DTypeError, ("embedding", "ids must be integers"), dtypes=("float64", "float64")),
            Bad(((3,), (5,)), gc.ShapeError, ("embedding", "(num, dim)", "(5,)")),
        ),
    ),
    OpSpec(
        "sqrt",
        lambda x, *gb, axis=-1: gc.layer_norm(x, *gb, axis=axis),
        lambda x, *gb, axis=-1: nnref.layer_norm(x, *gb, axis=axis),
        (
            Case(((3, 5), (5,), (5,))),
            Case(((2, 3, 4), (3, 4), (3, 4)), {"axis": (1, 2)}),
            Case(((2, 3, 4), (3,), (3,)), {"axis": 1}),  # not trailing: gamma is reshaped to (3, 1)
            Case(((N(2), 4),)),  # no gamma, no beta
        ),
        REAL,
        second_order=True,
        name="layer_norm",
        bad=(Bad(((3, 5), (4,)), gc.ShapeError, ("layer_norm", "gamma must have shape (5,)", "(4,)")),),
    ),
    OpSpec(
        "sqrt",
        _batch_norm,
        _batch_norm_ref,
        (
            Case(((2, 3, 2, 3), (3,), (3,)), {"training": True}),
            Case(((2, 3, 2, 3), (3,), (3,)), {"training": False}),
            Case(((N(4), 2), (2,), (2,)), {"training": True}),  # BatchNorm1d; the count is read at run time
            Case(((N(2), 3, 4), (4,), (4,)), {"training": True, "axis": -1}),
        ),
        REAL,
        second_order=True,
        name="batch_norm",
        bad=(
            Bad(
                ((2, 3, 4, 4), (4,), (3,)),
                gc.ShapeError,
                ("batch_norm", "gamma must have shape (3,)"),
                {"training": True},
            ),
        ),
    ),
    OpSpec(
        "reshape",
        gc.flatten,
        lambda x: x.reshape(x.shape[0], -1),
        (Case(((2, 3, 4),)), Case(((N(2), 3, 2, 2),)), Case(((3,),))),
        REAL,
        name="flatten",
        bad=(Bad(((2, N(3), 4),), gc.ShapeError, ("flatten", "known other dims", "(2, None, 4)")),),
    ),
    OpSpec(
        "mean",
        gc.global_avg_pool,
        lambda x: x.mean(axis=(2, 3)),
        (Case(((2, 3, 4, 5),)), Case(((N(2), 3, 2, 2),))),
        REAL,
        name="global_avg_pool",
        bad=(Bad(((2, 3, 4),), gc.ShapeError, ("global_avg_pool", "NCHW")),),
    ),
]

# -- control flow: small bodies, with references written as plain Python loops ------------------


def _cond(p, x, y, variant=None):
    """true: x*y + x, false: sin(x) - y; ``variant`` makes the branches disagree (bad builds)."""
    false = {
        None: lambda: gc.sin(x) - y,
        "shape": lambda: x[0],
        "dtype": lambda: gc.cast(x, "float32"),
        "structure": lambda: (x, y),
    }[variant]
    return gc.cond(p, lambda: x * y + x, false)


def _cond_ref(p, x, y):
    return x * y + x if p else np.sin(x) - y


def _while(x, w, variant=None):
    """Three iterations of h = tanh(h * w + 0.5) (a counter decides; at most 5)."""
    if variant == "dtype":
        body = lambda i, h: (i + 1, gc.cast(h, "float32"))  # noqa: E731
    else:
        body = lambda i, h: (i + 1, gc.tanh(h * w + 0.5))  # noqa: E731
    cond = (lambda i, h: i < 3) if variant != "cond" else (lambda i, h: gc.sum(h))
    return gc.while_loop(cond, body, (0, x), max_iterations=5)[1]


def _while_ref(x, w):
    for _ in range(3):
        x = np.tanh(x * w + 0.5)
    return x


def _scan(xs, h0, w, reverse=False, variant=None):
    """carry h -> tanh(x_t * w + h), y_t = h * x_t (the carry before the step)."""
    if variant == "carry":
        return gc.scan(lambda h, x: (gc.expand_dims(h, 0), None), h0, xs)
    if variant == "length":
        return gc.scan(lambda h, x: (h, None), h0, (xs, xs[1:]))
    final, ys = gc.scan(lambda h, x: (gc.tanh(x * w + h), h * x), h0, xs, reverse=reverse)
    return final, ys


def _scan_ref(xs, h0, w, reverse=False):
    h, ys = h0, np.empty(xs.shape[:1] + np.broadcast_shapes(h0.shape, xs.shape[1:]))
    for t in range(len(xs) - 1, -1, -1) if reverse else range(len(xs)):
        ys[t] = h * xs[t]
        h = np.tanh(xs[t] * w + h)
    return h, ys


TRUE, FALSE = fixed(True, "b"), fixed(False, "b")

CONTROL = [
    OpSpec(
        "cond",
        _cond,
        _cond_ref,
        (
            Case(((), (2, 3), (2, 3)), domains=(TRUE, REAL, REAL)),
            Case(((), (2, 3), (2, 3)), domains=(FALSE, REAL, REAL)),
            Case(((), (N(2), 3), (3,)), domains=(TRUE, REAL, REAL)),
            Case(((), (N(2), 3), (3,)), domains=(FALSE, REAL, REAL)),
        ),
        (BOOL, REAL, REAL),
        second_order=True,
        bad=(
            Bad(((), (2, 3), (2, 3)), gc.DTypeError, ("cond", "bool scalar", "f64[]"), dtypes=("float64",) * 3),
            Bad(((), (2, 3), (2, 3)), gc.ShapeError, ("cond", "true branch returns (2, 3)", "false branch (3,)"),
                {"variant": "shape"}),
            Bad(((), (2, 3), (2, 3)), gc.DTypeError, ("cond", "true branch returns f64[2,3]", "false branch f32[2,3]"),
                {"variant": "dtype"}),
            Bad(((), (2, 3), (2, 3)), gc.ShapeError, ("cond", "different structures", "(tensor, tensor)"),
                {"variant": "structure"}),
        ),
    ),
    OpSpec(
        "while_loop",
        _while,
        _while_ref,
        (Case(((2, 3), (3,))), Case(((N(2), 3), ())), Case(((), ()))),
        REAL,
        second_order=True,
        bad=(
            Bad(((2, 3), (3,)), gc.DTypeError, ("while_loop", "loop variable 1 is f64[2,3]", "f32[2,3]"),
                {"variant": "dtype"}),
            Bad(((2, 3), (3,)), gc.DTypeError, ("while_loop", "cond_fn must return a bool scalar", "f64[]"),
                {"variant": "cond"}),
        ),
    ),
    OpSpec(
        "scan",
        _scan,
        _scan_ref,
        (
            Case(((4, 3), (3,), (3,))),
            Case(((4, 3), (2, 3), ()), {"reverse": True}),
            Case(((N(4), 3), (3,), (3,))),
            Case(((4, N(3)), (N(3),), ())),
        ),
        REAL,
        second_order=True,
        bad=(
            Bad(((4, 3), (3,), (3,)), gc.ShapeError, ("scan", "carry 0 is f64[3]", "step returns f64[1,3]"),
                {"variant": "carry"}),
            Bad(((4, 3), (3,), (3,)), gc.ShapeError, ("scan", "xs and length disagree", "(4, 3), (3, 3)"),
                {"variant": "length"}),
        ),
    ),
]  # fmt: skip

SPECS: list[OpSpec] = ELEMENTWISE + FUSED + REDUCTIONS + SHAPE + LINALG + NN + CONV + RANDOM + COMPOSITES + CONTROL
