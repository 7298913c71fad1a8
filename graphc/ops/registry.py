"""Op registry: one OpDef record per op holds everything the system asks of it.

``apply`` is the only way nodes are built: it checks the inputs, runs the op's shape/dtype rule
(prefixing errors with the op, the node name and the user's source line) and appends the node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DTypeError, GraphError, ShapeError, where
from ..ir import Graph, Tensor, TensorType, get_default_graph, user_source
from ..ir.keys import attrs_key

# Fusion kinds: the compiler decides from these, never from op names.
ELEMENTWISE, REDUCE, MATMUL, SHAPE, OPAQUE, STATEFUL, SOURCE, FUSED = (
    "elementwise", "reduce", "matmul", "shape", "opaque", "stateful", "source", "fused",
)  # fmt: skip


@dataclass(frozen=True)
class OpDef:
    """The whole contract of an op.

    infer(*input_types, **attrs) -> TensorType, or a tuple of them for several outputs
    kernel(xp, *arrays, **attrs) -> array (or tuple), written against an array module xp;
        elementwise and fused kernels also take ``out=`` (a buffer the memory planner chose)
    grad(g, out, *inputs, **attrs) -> one Tensor or None per input, built with graphc ops; g and
        out are tuples for ops with several outputs. Broadcasting is undone by autodiff, not here.
    differentiable: False for ops whose gradient is undefined (comparisons, argmax): asking for a
        gradient that can only flow through them is an error.
    nograd_inputs: inputs that structurally receive no gradient (the condition of ``where``, the
        shape reference of ``sum_like``); they are skipped silently, like ``stop_gradient``.
    expr: a scalar C-like template for elementwise ops (``"({0} + {1})"``), for fused kernels.
    may_alias: the kernel may return an input (or a view of one): identity, assign.
    bind(node, backend, **options) -> kernel: builds the kernel itself (control flow compiles its
        bodies once per bound node); backends call it instead of binding ``kernel`` to attributes.
    body_types(*input_types, **attrs) -> {attribute: parameter types} for ops holding Subgraphs,
        so that specialization can give each body the static types its node feeds it.
    c_kernel(name, in_types, out_type, **attrs) -> ops.ckernel.CFunction, or a str saying why
        there is none for these types: the op as C, for the native CPU tier.
    absorbs(producer, **attrs) -> (op, attrs) or None: the fused op computing this op together
        with the node producing its first input (whose only consumer it is), for the fuse pass: a
        pooling absorbs the convolution before it, so the convolution's output never reaches memory.
    """

    name: str
    kind: str
    infer: Callable[..., Any]
    kernel: Callable[..., Any]
    grad: Callable[..., Any] | None = None
    differentiable: bool = True
    nograd_inputs: tuple[int, ...] = ()
    expr: str | None = None
    doc: str = ""
    may_alias: bool = False  # the kernel may return (a view of) an input; shape ops always may
    inplace: bool | None = None  # out= may be an input buffer (elementwise ops: yes by default)
    # inputs from this index on are read element by element, each after the kernel's other
    # inputs and before its output element is written (a fused matmul's epilogue inputs): out=
    # may be one of them (a variable updated in place), which the kernel must allow for
    elementwise_from: int | None = None
    ufunc: str | None = None  # the array module's ufunc that is exactly this op (np.add), if any
    bind: Callable[..., Any] | None = None
    body_types: Callable[..., dict] | None = None
    takes_out: bool = False  # an opaque kernel that also accepts out= (conv2d, pooling)
    c_kernel: Callable[..., Any] | None = None
    absorbs: Callable[..., Any] | None = None

    @property
    def writes_inplace(self) -> bool:
        """Each output element is written after the input elements it reads, so out= may alias an input."""
        return self.kind == ELEMENTWISE if self.inplace is None else self.inplace

    @property
    def aliases(self) -> bool:
        return self.may_alias or self.kind == SHAPE

    @property
    def writes_out(self) -> bool:
        """The kernel accepts ``out=``, so the memory planner may give it a buffer."""
        return self.kind in (ELEMENTWISE, FUSED, MATMUL) or self.takes_out


REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in REGISTRY:
        raise ValueError(f"op {opdef.name!r} is registered twice")
    if opdef.differentiable and opdef.grad is None and opdef.kind != SOURCE:
        raise ValueError(f"op {opdef.name!r}: a differentiable op needs a gradient rule")
    REGISTRY[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise GraphError(f"unknown op {name!r}") from None


def _depth(graph: Graph) -> int:
    n = 0
    while graph.parent is not None:
        graph, n = graph.parent, n + 1
    return n


def graph_of(inputs, op: str) -> Graph:
    """The graph a node on these inputs belongs to: the inputs' graph, or the default graph when
    there are none. While a control-flow body is traced it is the default graph, and ops on
    tensors of enclosing graphs are built in it (their inputs become captures, see ``apply``)."""
    graphs = {id(t.node.graph): t.node.graph for t in inputs}
    current = get_default_graph()
    if current.tracing or not graphs:
        graphs.setdefault(id(current), current)
    if len(graphs) == 1:
        graph = next(iter(graphs.values()))
    else:  # the innermost one, if every other graph encloses it
        graph = max(graphs.values(), key=_depth)
        chain, g = set(), graph
        while g is not None:
            chain.add(id(g))
            g = g.parent
        if not chain.issuperset(graphs):
            names = ", ".join(f"'{t.name}' in graph '{t.node.graph.name}'" for t in inputs)
            raise GraphError(f"{op}: inputs come from different graphs: {names}")
    if not graph.is_open:
        what = next((f"input '{t.name}' was computed" for t in inputs if t.graph is graph), "building")
        raise GraphError(f"{op}: {what} inside the control-flow body '{graph.name}', which is closed "
                         f"once traced: return the tensor from the body instead")  # fmt: skip
    return graph


def apply(op: str, *inputs: Tensor, name: str | None = None, **attrs):
    """Build one node of ``op``; returns its Tensor (or a tuple for ops with several outputs)."""
    opdef = REGISTRY[op]
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise GraphError(f"{op}: input {i} is {type(t).__name__}, expected a graphc Tensor")
    graph = graph_of(inputs, op)
    if graph.parent is not None:  # a body being traced: enclosing tensors become its parameters
        if opdef.kind in (STATEFUL, SOURCE) and op != "constant":
            raise GraphError(
                f"{op}: cannot build a {op} inside the control-flow body '{graph.name}': bodies are "
                f"pure functions of their inputs; create variables and placeholders outside, read them "
                f"inside, and assign what the control-flow op returns"
            )
        inputs = tuple(graph.capture(t) for t in inputs)
    source = user_source()
    try:
        types = opdef.infer(*(t.type for t in inputs), **attrs)
    except (ShapeError, DTypeError) as e:
        label = name or graph.unique_name(op)
        raise type(e)(f"{op} '{label}': {e}{where(source)}") from None
    single = isinstance(types, TensorType)
    types = (types,) if single else tuple(types)
    built = getattr(_building, "memo", None)
    if built is not None and name is None and foldable(opdef):
        outs = _build_in_gradient(built, graph, opdef, inputs, attrs, types, source)
    else:
        outs = graph.append(op, tuple(inputs), attrs, types, name, source).outputs
    return outs[0] if single else outs  # (a variable's output is a Variable)


def _build_in_gradient(built: dict, graph, opdef: OpDef, inputs, attrs: dict, types: tuple, source) -> tuple:
    """The outputs of a node built while autodiff builds a gradient (see ``gradient_builder``)."""
    if opdef.kind == ELEMENTWISE and len(inputs) > 1:
        inputs = _without_implied_broadcasts(inputs, types[0].shape)
    key = (graph, opdef.name, tuple(inputs), attrs_key(attrs))  # (objects, not ids: they stay alive)
    outs = built.get(key)
    if outs is None:
        values = [t.node.attrs["value"] for t in inputs if t.node.op == "constant"]
        folded = evaluate(opdef, values, attrs) if inputs and len(values) == len(inputs) else None
        if isinstance(folded, tuple):
            outs = tuple(graph.append("constant", (), {"value": np.asarray(r, dtype=t.dtype)}, (t,), None,
                                      source).outputs[0] for r, t in zip(folded, types))  # fmt: skip
        else:
            outs = graph.append(opdef.name, tuple(inputs), attrs, types, None, source).outputs
        built[key] = outs
    return outs


def _without_implied_broadcasts(inputs: tuple, shape: tuple) -> tuple:
    """An elementwise op broadcasts its inputs itself: a ``broadcast_to`` input whose source,
    broadcast with the other inputs, gives the same (static) output shape is read at its source."""
    if None in shape:
        return inputs
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if t.node.op == "broadcast_to":
            src = t.node.inputs[0]
            shapes = [src.shape if j == i else u.shape for j, u in enumerate(inputs)]
            if all(None not in s for s in shapes) and tuple(np.broadcast_shapes(*shapes)) == tuple(shape):
                inputs[i] = src
    return tuple(inputs)


# Folding never grows data: a result larger than its constant inputs (and than this) stays a node,
# so a saved graph never holds the expansion of a scalar that broadcast_to describes in one
# number, and at run time the broadcast is a view. It also keeps the passes from replacing the
# broadcast seed of a gradient, which would copy the whole backward pass.
FOLD_MAX_ELEMENTS = 0


def foldable(opdef: OpDef) -> bool:
    """Whether a node of this op on constant inputs may be evaluated at compile time: not a
    stateful op, nor control flow (a loop over constants may be long; its bodies fold inside)."""
    return opdef.kind not in (STATEFUL, SOURCE) and opdef.body_types is None and opdef.bind is None


@dataclass(frozen=True)
class NotFolded:
    """Why a node on constant inputs stays a node (``explain`` shows it)."""

    rule: str
    detail: str


def evaluate(opdef: OpDef, values: list, attrs: dict, max_elements: int = FOLD_MAX_ELEMENTS) -> tuple | NotFolded:
    """The op's results (a tuple) on constant input ``values``, or why they are not folded: they
    would be larger than ``max_elements`` and than the inputs (``broadcast_to`` of a scalar), or the
    kernel fails (an index out of range), which is left to run time, where the error names the node."""
    try:
        with np.errstate(all="ignore"):
            result = opdef.kernel(np, *values, **attrs)
    except Exception as e:
        return NotFolded("not folded: fails", f"evaluating it raises {type(e).__name__}: {e}")
    results = result if isinstance(result, tuple) else (result,)
    size = sum(np.size(r) for r in results)
    limit = max(max_elements, sum(np.size(v) for v in values))
    if size > limit:
        return NotFolded("not folded: size cap", f"{size} elements > {limit}, its inputs' or the cap")
    return results


_building = threading.local()  # .memo while autodiff builds a gradient (see ``gradient_builder``)


@contextmanager
def gradient_builder():
    """While autodiff builds one gradient, an elementwise op reads a ``broadcast_to`` input at its
    source when its own broadcasting implies it, an op whose inputs are all constants becomes a
    constant at once (unless it grows: see FOLD_MAX_ELEMENTS), and an op identical to one built
    earlier in the same gradient (same op, inputs and attributes) is that node. Gradient graphs
    come out folded and merged (``1/n`` of a mean, ``g*x`` twice for ``x*x``) instead of leaving
    it to passes, whose every change next to the seed copies the whole backward pass. Named ops
    (the user's) are built as asked."""
    previous = getattr(_building, "memo", None)
    _building.memo = {}
    try:
        yield
    finally:
        _building.memo = previous


def kernel_dtype(opdef_kernel, dtypes, **attrs) -> np.dtype:
    """The dtype NumPy itself produces for an elementwise kernel on inputs of these dtypes."""
    with np.errstate(all="ignore"):
        dummies = [np.ones((), dtype=d) for d in dtypes]
        try:
            return np.asarray(opdef_kernel(np, *dummies, **attrs)).dtype
        except TypeError:  # NumPy has no loop for these dtypes (e.g. -x for bool x)
            got = ", ".join(str(d) for d in dtypes)
            raise DTypeError(f"no kernel for operand dtypes: got {got}") from None
