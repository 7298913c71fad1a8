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
    _unary("tanh", gc.tanh, np.tanh, second_order=True),
    _unary("sigmoid", gc.sigmoid, _sigmoid, second_order=True),
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
        np.matmul,
        (
            Case(((2, 3), (3, 4))),
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
        (Case(((2, 3), (2,))), Case(((2, 4, 3), (2, 4))), Case(((N(2), 3), (N(2),))), Case(((3,), ()))),
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
]

SPECS: list[OpSpec] = ELEMENTWISE + FUSED + REDUCTIONS + SHAPE + LINALG + NN
