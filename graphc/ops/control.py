"""Control flow: cond, while_loop and scan, whose bodies are subgraphs traced once at construction.

A body is the user's Python function called once on parameter placeholders, inside a graph whose
``parent`` is the enclosing graph. Tensors of enclosing graphs that the body reads (including
variables) become *captures*: extra parameters the node feeds from extra inputs (``apply`` does
this). Nodes have several outputs: cond returns its branch's outputs; while_loop its final loop
variables, the iteration count and the per-iteration values the gradient needs; scan its final
carry, then the per-step values stacked on a new leading axis (the user's ``y_t``, then those the
gradient needs). Unread stacked outputs are dropped by the ``trim`` pass, so a forward-only
function never stores them. Kernels: ``runtime/control.py``; gradients: ``control_grad.py``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import DTypeError, GraphError, ShapeError
from ..ir import Graph, Subgraph, Tensor, TensorType, get_default_graph
from ..ir.source import source_override
from ..ir.types import compatible, fmt_shape
from .registry import OPAQUE, REGISTRY, OpDef, apply, graph_of, register
from .state import as_tensor, constant

# -- structures: a tensor, None, or (nested) tuples and lists of them ---------------------------
LEAF = "tensor"


def flatten(obj) -> tuple[list, object]:
    """The leaves of ``obj`` in order and its structure (LEAF, None, or (type, children))."""
    if obj is None:
        return [], None
    if isinstance(obj, (tuple, list)):
        leaves, children = [], []
        for o in obj:
            sub, tree = flatten(o)
            leaves += sub
            children.append(tree)
        return leaves, (type(obj), tuple(children))
    return [obj], LEAF


def unflatten(tree, leaves):
    """Rebuild a structure from its leaves (a list or an iterator)."""
    it = iter(leaves)

    def build(t):
        if t is None:
            return None
        if t == LEAF:
            return next(it)
        kind, children = t
        return kind(build(c) for c in children)

    return build(tree)


def describe(tree) -> str:
    """A structure as text for errors: ``(tensor, (tensor, None))``."""
    if tree is None or tree == LEAF:
        return str(tree)
    kind, children = tree
    inner = ", ".join(describe(c) for c in children)
    return f"[{inner}]" if kind is list else f"({inner}{',' if len(children) == 1 else ''})"


def same_structure(a, b) -> bool:
    """Equal structures; lists and tuples count as the same kind."""
    if a is None or a == LEAF or b is None or b == LEAF:
        return a == b
    return len(a[1]) == len(b[1]) and all(same_structure(x, y) for x, y in zip(a[1], b[1]))


# -- types through a body ---------------------------------------------------------------------
def propagate(sub: Subgraph, param_types) -> tuple[TensorType, ...]:
    """The body's output types when its parameters have ``param_types`` (re-inferred node by node)."""
    param_types = tuple(param_types)
    if all(p.type == t for p, t in zip(sub.params, param_types)):
        return tuple(t.type for t in sub.outputs)
    types = dict(zip(sub.params, param_types))
    for node in sub.nodes:
        if not node.inputs:
            types.update((t, t.type) for t in node.outputs if t not in types)
            continue
        try:
            out = REGISTRY[node.op].infer(*(types[t] for t in node.inputs), **node.attrs)
        except (ShapeError, DTypeError) as e:
            raise type(e)(f"in body '{sub.graph.name}', {node.op} '{node.name}': {e}") from None
        types.update(zip(node.outputs, (out,) if isinstance(out, TensorType) else out))
    return tuple(types[t] for t in sub.outputs)


def most_specific(a: tuple, b: tuple) -> tuple:
    """The most specific shape compatible with both (a known dim wins over None)."""
    return tuple(x if y is None else y for x, y in zip(a, b))


def relax(a: tuple, b: tuple) -> tuple:
    """A shape that covers both: dims that differ become None."""
    return tuple(x if x == y else None for x, y in zip(a, b))


def check_params(what: str, types, sub: Subgraph) -> None:
    """The node feeds ``sub``'s parameters with ``types``: count, dtypes and shapes must fit."""
    if len(sub.params) != len(types):
        raise ShapeError(f"the {what} takes {len(sub.params)} parameters: got {len(types)} inputs")
    for p, t in zip(sub.params, types):
        if p.dtype != t.dtype:
            raise DTypeError(f"the {what} parameter '{p.name}' is {p.type}: got an input {t}")
        if not compatible(p.shape, t.shape):
            raise ShapeError(f"the {what} parameter '{p.name}' is {p.type}: got an input {t}")


# -- tracing ----------------------------------------------------------------------------------
@dataclass
class Traced:
    """A body just traced: its graph, explicit parameters, output leaves and their structure."""

    graph: Graph
    params: list
    outputs: list
    tree: object


def trace(fn, param_types, parent: Graph, label: str, names=None, like=None) -> Traced:
    """Call ``fn(params)`` once on new parameters inside a body graph whose parent is ``parent``.

    The result's leaves become body tensors (tensors of enclosing graphs are captured, Python
    numbers become constants, of ``like[i]``'s dtype when given).
    """
    graph = Graph(label, private=True, parent=parent)
    try:
        with graph:
            params = [graph.parameter(t, names[i] if names else f"arg{i}") for i, t in enumerate(param_types)]
            result = fn(params)
            leaves, tree = flatten(result)
            outputs = []
            for i, v in enumerate(leaves):
                ref = like[i] if like is not None and i < len(like) else None
                t = as_tensor(v, like=ref if ref is not None and not isinstance(v, Tensor) else None)
                outputs.append(graph.capture(t))
    finally:
        graph.tracing = False  # closed: tensors made inside can no longer be extended from outside
    return Traced(graph, params, outputs, tree)


def unify(traced: list[Traced], outputs: list[list]) -> tuple[list, list[Subgraph]]:
    """One capture list for the bodies of one node: the enclosing tensors any of them reads, in
    order; each body gets a parameter for every one of them (unused where it reads none)."""
    captures = list(dict.fromkeys(t for tr in traced for t in tr.graph.captures))
    subs = []
    for tr, outs in zip(traced, outputs):
        extra = [tr.graph.captures.get(t) for t in captures]
        extra = [p if p is not None else tr.graph.parameter(t.type, f"unused_{t.node.name}")
                 for p, t in zip(extra, captures)]  # fmt: skip
        subs.append(Subgraph(tr.graph, tuple(tr.params) + tuple(extra), tuple(outs)))
    return captures, subs


def varying(sub: Subgraph, params) -> list[Tensor]:
    """Tensors of the body that depend on ``params`` (those parameters included), in order."""
    vary = {p.node for p in params}
    out = list(params)
    for node in sub.nodes:
        if node.inputs and any(t.node in vary for t in node.inputs):
            vary.add(node)
            out.extend(node.outputs)
    return out


def inline(sub: Subgraph, args) -> tuple[tuple, dict]:
    """Copy the body into the current graph on ``args``; returns its outputs and the mapping
    from body tensors to copies. Each copy keeps its source line."""
    mapping = dict(zip(sub.params, args))
    for node in sub.nodes:
        if node.op == "placeholder":
            continue
        with source_override(node.source):
            if node.op == "constant":
                new = constant(node.attrs["value"])
            else:
                new = apply(node.op, *(mapping[t] for t in node.inputs), **node.attrs)
        mapping.update(zip(node.outputs, new.node.outputs if isinstance(new, Tensor) else new))
    return tuple(mapping[t] for t in sub.outputs), mapping


def _count(n) -> bool:
    """An int >= 0 (not a bool)."""
    return not isinstance(n, bool) and isinstance(n, numbers.Integral) and n >= 0


def _outputs(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def _label(name, graph: Graph, op: str) -> str:
    return name or graph.unique_name(op)


# -- running bodies: the loops every backend shares ---------------------------------------------
def evaluate(xp, sub: Subgraph, arrays) -> list:
    """Run a body node by node with each op's reference kernel (constant folding, reference tests);
    compiled functions run bodies as plans instead (runtime/control.py)."""
    vals = dict(zip(sub.params, arrays))
    for node in sub.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "constant":
            vals[node.outputs[0]] = node.attrs["value"]
            continue
        r = REGISTRY[node.op].kernel(xp, *(vals[t] for t in node.inputs), **node.attrs)
        vals.update(zip(node.outputs, (r,) if len(node.outputs) == 1 else r))
    return [vals[t] for t in sub.outputs]


def _result(outs):
    return outs[0] if len(outs) == 1 else tuple(outs)


def _fresh(xp, arrays) -> list:
    """Copies of a loop's final state: it may alias the loop's inputs (feeds, variables, buffers
    the caller reuses) or a body's constants (a loop body's outputs are not copied per step)."""
    return [xp.array(a, copy=True) for a in arrays]


def _captures(xp, arrays) -> list:
    """Captures as contiguous arrays: a loop reads them every step (``W.T`` hoisted out of a loop
    is copied once instead of making every step's matmul take the slower transposed path)."""
    # (not ascontiguousarray on everything: it turns a 0-d array into a 1-d one)
    return [a if a.flags.c_contiguous else xp.ascontiguousarray(a) for a in arrays]


def run_cond(xp, run_true, run_false, pred, caps):
    """The taken branch's outputs; the other branch does not run."""
    return _result((run_true if pred else run_false)(list(caps)))


def run_while(xp, run_cond, run_body, arrays, n_vars: int, max_iterations, saved_types):
    """Loop while ``run_cond`` holds (at most max_iterations times); row i of each stacked output
    gets that value of iteration i (rows past the last iteration stay zero)."""
    args = list(arrays[:n_vars]) + _captures(xp, arrays[n_vars:])  # updated in place, as in run_scan
    bufs = list(enumerate((xp.zeros(t.shape, t.dtype) for t in saved_types), n_vars))
    i = 0
    while (max_iterations is None or i < max_iterations) and run_cond(args)[0]:
        outs = run_body(args)
        for j, b in bufs:
            b[i] = outs[j]
        args[:n_vars] = outs[:n_vars]
        i += 1
    return _result((*_fresh(xp, args[:n_vars]), xp.asarray(i, dtype=np.int64), *(b for _, b in bufs)))


def run_scan(xp, run_step, arrays, n_carry: int, n_x: int, length, reverse: bool, y_types):
    """Step over the leading axis of the xs; each y_t is written into row t of its stacked output."""
    xs = arrays[n_carry : n_carry + n_x]
    n = xs[0].shape[0] if xs else length
    ys = [xp.empty(t.shape, t.dtype) for t in y_types]
    # one argument list for every step (carry, x_t, captures), updated in place: the loop does
    # no work per step beyond slicing the xs and storing the y_t
    args = list(arrays[:n_carry]) + [None] * n_x + _captures(xp, arrays[n_carry + n_x :])
    x_in, y_out = list(enumerate(xs, n_carry)), list(enumerate(ys, n_carry))
    for t in range(n - 1, -1, -1) if reverse else range(n):
        for i, x in x_in:
            args[i] = x[t]
        outs = run_step(args)
        args[:n_carry] = outs[:n_carry]
        for i, y in y_out:
            y[t] = outs[i]
    return _result((*_fresh(xp, args[:n_carry]), *ys))


def _types(arrays) -> list[TensorType]:
    return [TensorType(tuple(a.shape), np.dtype(a.dtype)) for a in arrays]


def _cond_kernel(xp, pred, *caps, true_branch, false_branch):
    return run_cond(xp, lambda a: evaluate(xp, true_branch, a), lambda a: evaluate(xp, false_branch, a), pred, caps)


def _while_kernel(xp, *arrays, loop_cond, loop_body, n_vars, max_iterations):
    saved = _while_infer(*_types(arrays), loop_cond=loop_cond, loop_body=loop_body, n_vars=n_vars,
                         max_iterations=max_iterations)[n_vars + 1 :]  # fmt: skip
    return run_while(xp, lambda a: evaluate(xp, loop_cond, a), lambda a: evaluate(xp, loop_body, a), arrays,
                     n_vars, max_iterations, saved)  # fmt: skip


def _scan_kernel(xp, *arrays, step, n_carry, n_x, length, reverse):
    types = _scan_infer(*_types(arrays), step=step, n_carry=n_carry, n_x=n_x, length=length, reverse=reverse)
    return run_scan(xp, lambda a: evaluate(xp, step, a), arrays, n_carry, n_x, length, reverse, types[n_carry:])


# -- cond ---------------------------------------------------------------------------------------
def _cond_body_types(pred, *caps, true_branch, false_branch):
    return {"true_branch": caps, "false_branch": caps}


def _cond_infer(pred: TensorType, *caps: TensorType, true_branch: Subgraph, false_branch: Subgraph):
    if pred.dtype != np.bool_ or pred.shape != ():
        raise DTypeError(f"the predicate must be a bool scalar: got {pred}, expected b1[]")
    check_params("true branch", caps, true_branch)
    check_params("false branch", caps, false_branch)
    a, b = propagate(true_branch, caps), propagate(false_branch, caps)
    if len(a) != len(b):
        raise ShapeError(f"the true branch returns {len(a)} tensors, the false branch {len(b)}")
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x.dtype != y.dtype:
            raise DTypeError(f"output {i}: the true branch returns {x}, the false branch {y}: dtypes differ")
        if not compatible(x.shape, y.shape):
            raise ShapeError(f"output {i}: the true branch returns {fmt_shape(x.shape)}, the false branch "
                             f"{fmt_shape(y.shape)}: shapes are incompatible")  # fmt: skip
        out.append(TensorType(most_specific(x.shape, y.shape), x.dtype))
    return tuple(out)


# The gradient rules (control_grad.py) and kernels (runtime/control.py) build on this module, the
# pass pipeline and lowering, so the OpDefs reach them through these small late-binding hooks.
def _grad(name):
    def rule(*args, **kw):
        from . import control_grad

        return getattr(control_grad, name)(*args, **kw)

    return rule


def _bind(name):
    def hook(node, backend, **options):
        from ..runtime import control as runtime_control

        return getattr(runtime_control, name)(node, backend, **options)

    return hook


register(OpDef("cond", OPAQUE, _cond_infer, _cond_kernel, _grad("cond_grad"), nograd_inputs=(0,),
               bind=_bind("bind_cond"), body_types=_cond_body_types,
               doc="Run one of two traced branches, chosen by a bool scalar; only that branch runs."))  # fmt: skip


def cond(pred, true_fn, false_fn, name: str | None = None):
    """``true_fn()`` if ``pred`` else ``false_fn()``, deciding at run time; only that branch runs.

    Parameters
    ----------
    pred : bool scalar Tensor (or a Python bool)
    true_fn, false_fn : callables of no arguments
        Traced once each, at construction, into subgraphs. They may read any tensor or variable
        of the enclosing graphs, and return a tensor, None, or (nested) tuples/lists of tensors;
        both must return the same structure with equal dtypes and compatible shapes.

    Returns
    -------
    The taken branch's outputs, in the branches' structure; shapes are the most specific ones
    compatible with both branches.
    """
    pred = as_tensor(pred)
    for what, fn in (("true_fn", true_fn), ("false_fn", false_fn)):
        if not callable(fn):
            raise GraphError(f"cond: {what} must be a callable of no arguments: got {type(fn).__name__}")
    parent = graph_of((pred,), "cond")
    label = _label(name, parent, "cond")
    t = trace(lambda _: true_fn(), (), parent, f"{label}/true")
    f = trace(lambda _: false_fn(), (), parent, f"{label}/false")
    if not same_structure(t.tree, f.tree):
        raise ShapeError(f"cond '{label}': the branches return different structures: the true branch returns "
                         f"{describe(t.tree)}, the false branch {describe(f.tree)}")  # fmt: skip
    captures, (tb, fb) = unify([t, f], [t.outputs, f.outputs])
    outs = apply("cond", pred, *captures, name=name, true_branch=tb, false_branch=fb)
    return unflatten(t.tree, _outputs(outs))


# -- while_loop ---------------------------------------------------------------------------------
def _loop_var_types(vs, caps, loop_body: Subgraph, n_vars: int) -> tuple:
    """Loop-variable types that hold in every iteration: dims the body changes become None."""
    types = tuple(vs)
    for _ in range(1 + sum(len(t.shape) for t in types)):
        outs = propagate(loop_body, types + tuple(caps))[:n_vars]
        new = tuple(_join_loop_type(i, a, b) for i, (a, b) in enumerate(zip(types, outs)))
        if new == types:
            return types
        types = new
    return types


def _join_loop_type(i: int, a: TensorType, b: TensorType) -> TensorType:
    if a.dtype != b.dtype:
        raise DTypeError(f"loop variable {i} is {a} but the body returns {b}: a loop keeps its dtypes")
    if len(a.shape) != len(b.shape):
        raise ShapeError(f"loop variable {i} is {a} but the body returns {b}: a loop keeps its ranks")
    return TensorType(relax(a.shape, b.shape), a.dtype)


def _while_body_types(*inputs, loop_cond, loop_body, n_vars, max_iterations):
    vs = _loop_var_types(inputs[:n_vars], inputs[n_vars:], loop_body, n_vars)
    params = vs + tuple(inputs[n_vars:])
    return {"loop_cond": params, "loop_body": params}


def _while_infer(*inputs: TensorType, loop_cond: Subgraph, loop_body: Subgraph, n_vars: int, max_iterations):
    check_params("loop condition", inputs, loop_cond)
    check_params("loop body", inputs, loop_body)
    if len(loop_body.outputs) < n_vars:
        raise ShapeError(f"the body returns {len(loop_body.outputs)} tensors for {n_vars} loop variables")
    vs = _loop_var_types(inputs[:n_vars], inputs[n_vars:], loop_body, n_vars)
    params = vs + tuple(inputs[n_vars:])
    (c, *rest) = propagate(loop_cond, params) or (None,)
    if c is None or rest or c.dtype != np.bool_ or c.shape != ():
        raise DTypeError(f"cond_fn must return one bool scalar: got {c}")
    saved = propagate(loop_body, params)[n_vars:]
    if saved and max_iterations is None:
        raise ShapeError("per-iteration values can only be stored with max_iterations")
    stacked = tuple(TensorType((max_iterations, *t.shape), t.dtype) for t in saved)
    return (*vs, TensorType((), np.dtype(np.int64)), *stacked)


register(OpDef("while_loop", OPAQUE, _while_infer, _while_kernel, _grad("while_grad"),
               bind=_bind("bind_while"), body_types=_while_body_types,
               doc="Repeat a traced body while a traced condition holds (at most max_iterations times)."))  # fmt: skip


def while_loop(cond_fn, body_fn, loop_vars, max_iterations: int | None = None, name: str | None = None):
    """Repeat ``loop_vars = body_fn(*loop_vars)`` while ``cond_fn(*loop_vars)`` is true.

    Parameters
    ----------
    cond_fn : callable(*loop_vars) -> bool scalar Tensor
    body_fn : callable(*loop_vars) -> the new loop variables (same number, dtypes and ranks)
    loop_vars : Tensor or tuple/list of Tensors (or Python numbers)
        The initial state. A dim the body changes (a growing vector) becomes None in the result.
    max_iterations : int, optional
        Stop after this many iterations even if ``cond_fn`` still holds. **Needed to
        differentiate**: the gradient stores each iteration's values in buffers of this length
        and runs backwards over them; without it ``graphc.grad`` raises GradientError. The
        stored values must keep their shapes from one iteration to the next.

    Returns
    -------
    The final loop variables, in the structure of ``loop_vars``.
    """
    single = not isinstance(loop_vars, (tuple, list))
    vs = [as_tensor(v) for v in ([loop_vars] if single else loop_vars)]
    if not vs:
        raise GraphError("while_loop: loop_vars must hold at least one tensor")
    for what, fn in (("cond_fn", cond_fn), ("body_fn", body_fn)):
        if not callable(fn):
            raise GraphError(f"while_loop: {what} must be a callable: got {type(fn).__name__}")
    if max_iterations is not None and not _count(max_iterations):
        raise GraphError(f"while_loop: max_iterations must be an int >= 0 or None: got {max_iterations!r}")
    max_iterations = None if max_iterations is None else int(max_iterations)
    n = len(vs)
    parent = graph_of(vs, "while_loop")
    label = _label(name, parent, "while_loop")
    names = [f"var{i}" for i in range(n)]
    types = tuple(v.type for v in vs)
    for _ in range(1 + sum(len(t.shape) for t in types)):  # trace again when the body changes shapes
        body = trace(lambda ps: body_fn(*ps), types, parent, f"{label}/body", names, like=vs)
        expected = LEAF if single else (tuple, tuple(LEAF for _ in vs))
        if not (same_structure(body.tree, expected) or (not single and n == 1 and body.tree == LEAF)):
            raise ShapeError(f"while_loop '{label}': body_fn must return the loop variables' structure "
                             f"{describe(expected)}: got {describe(body.tree)}")  # fmt: skip
        try:
            relaxed = tuple(_join_loop_type(i, a, b.type) for i, (a, b) in enumerate(zip(types, body.outputs)))
        except (ShapeError, DTypeError) as e:
            raise type(e)(f"while_loop '{label}': {e}") from None
        if relaxed == types:
            break
        types = relaxed
    cnd = trace(lambda ps: cond_fn(*ps), types, parent, f"{label}/cond", names)
    if cnd.tree != LEAF or cnd.outputs[0].dtype != np.bool_ or cnd.outputs[0].shape != ():
        got = describe(cnd.tree) if cnd.tree != LEAF else str(cnd.outputs[0].type)
        raise DTypeError(f"while_loop '{label}': cond_fn must return a bool scalar: got {got}")
    outs = list(body.outputs)
    if max_iterations is not None and types == tuple(v.type for v in vs):  # what a gradient may need
        outs += varying(_sub(body), body.params)
    captures, (cs, bs) = unify([cnd, body], [cnd.outputs, outs])
    res = apply("while_loop", *vs, *captures, name=name, loop_cond=cs, loop_body=bs, n_vars=n,
                max_iterations=max_iterations)  # fmt: skip
    return res[0] if single else tuple(res[:n])


def _sub(tr: Traced) -> Subgraph:
    return Subgraph(tr.graph, tuple(tr.params), tuple(tr.outputs))


# -- scan -----------------------------------------------------------------------------------------
def scan_length(xs, length) -> int | None:
    """The number of steps: the xs' common leading dim and/or ``length``."""
    for i, x in enumerate(xs):
        if not x.shape:
            raise ShapeError(f"xs {i} has no leading axis to scan over: got {x}")
    dims = {x.shape[0] for x in xs if x.shape[0] is not None} | ({length} if length is not None else set())
    if len(dims) > 1:
        got = ", ".join(fmt_shape(x.shape) for x in xs)
        raise ShapeError(f"xs and length disagree on the number of steps: got xs {got} and length {length}")
    return next(iter(dims), None)


def _scan_body_types(*inputs, step, n_carry, n_x, length, reverse):
    init, xs, caps = inputs[:n_carry], inputs[n_carry : n_carry + n_x], inputs[n_carry + n_x :]
    return {"step": (*init, *(TensorType(x.shape[1:], x.dtype) for x in xs), *caps)}


def _scan_infer(*inputs: TensorType, step: Subgraph, n_carry: int, n_x: int, length, reverse):
    init, xs = inputs[:n_carry], inputs[n_carry : n_carry + n_x]
    n = scan_length(xs, length)
    if not xs and length is None:
        raise ShapeError("a scan without xs needs a length")
    params = _scan_body_types(*inputs, step=step, n_carry=n_carry, n_x=n_x, length=length, reverse=reverse)["step"]
    check_params("step", params, step)
    outs = propagate(step, params)
    if len(outs) < n_carry:
        raise ShapeError(f"the step returns {len(outs)} tensors for {n_carry} carries")
    carry = []
    for i, (a, b) in enumerate(zip(init, outs)):
        if a.dtype != b.dtype:
            raise DTypeError(f"carry {i} is {a} but the step returns {b}: the carry keeps its dtype")
        if not compatible(a.shape, b.shape):
            raise ShapeError(f"carry {i} is {a} but the step returns {b}: the carry keeps its shape")
        carry.append(TensorType(most_specific(a.shape, b.shape), a.dtype))
    ys = tuple(TensorType((n, *t.shape), t.dtype) for t in outs[n_carry:])
    return (*carry, *ys)


register(OpDef("scan", OPAQUE, _scan_infer, _scan_kernel, _grad("scan_grad"), bind=_bind("bind_scan"),
               body_types=_scan_body_types,
               doc="Loop a traced step over the leading axis of xs, carrying state; stacks each y_t."))  # fmt: skip


def scan_node(step: Subgraph, init, xs, caps, length=None, reverse=False, save=True, name=None):
    """Build a scan node (outputs: carries, then stacks). With ``save``, the step also outputs
    every value that depends on the carry or x_t (carries included), so a gradient can read it
    instead of recomputing it; ``trim`` drops what nothing reads."""
    nc, nx = len(init), len(xs)
    if save:
        skip = set(step.outputs[nc:]) | set(step.params[nc : nc + nx])  # already stacked, or the xs themselves
        extra = [t for t in varying(step, step.params[: nc + nx]) if t not in skip]
        step = step.with_outputs(step.outputs + tuple(dict.fromkeys(extra)))
    return apply("scan", *init, *xs, *caps, name=name, step=step, n_carry=nc, n_x=nx, length=length,
                 reverse=bool(reverse))  # fmt: skip


def scan(fn, init, xs=None, length: int | None = None, reverse: bool = False, name: str | None = None):
    """Loop ``carry, y_t = fn(carry, x_t)`` over the leading axis of ``xs``; stack the ``y_t``.

    Parameters
    ----------
    fn : callable(carry, x_t) -> (new_carry, y_t)
        Traced once. ``carry`` has the structure of ``init`` (a tensor, a tuple of tensors, ...),
        ``x_t`` that of ``xs`` with the leading axis removed (None without xs); ``new_carry``
        must match ``init`` in structure, dtypes and shapes; ``y_t`` may be None.
    init : Tensor, (nested) tuple of Tensors, or None
    xs : Tensor, (nested) tuple of Tensors, or None
        Sliced along axis 0; all must have the same length.
    length : int, optional
        The number of steps; required without xs.
    reverse : bool
        Run from the last step to the first (``ys[t]`` still belongs to ``xs[t]``).

    Returns
    -------
    (final_carry, ys)
        ``final_carry`` in the structure of ``init``; ``ys`` in the structure of ``y_t`` with a
        new leading axis of the number of steps (None when ``y_t`` is None).
    """
    if not callable(fn):
        raise GraphError(f"scan: fn must be a callable (carry, x_t) -> (new_carry, y_t): got {type(fn).__name__}")
    if length is not None and not _count(length):
        raise GraphError(f"scan: length must be an int >= 0 or None: got {length!r}")
    length = None if length is None else int(length)
    init_leaves, init_tree = flatten(init)
    x_leaves, x_tree = flatten(xs)
    init = [as_tensor(v) for v in init_leaves]
    xs = [as_tensor(v) for v in x_leaves]
    parent = graph_of(init + xs, "scan") if init + xs else get_default_graph()
    label = _label(name, parent, "scan")
    try:
        scan_length(xs, length)
    except ShapeError as e:
        raise ShapeError(f"scan '{label}': {e}") from None
    if not xs and length is None:
        raise GraphError(f"scan '{label}': without xs the number of steps must be given as length")
    nc = len(init)
    types = [t.type for t in init] + [TensorType(x.shape[1:], x.dtype) for x in xs]
    names = [f"carry{i}" for i in range(nc)] + [f"x{i}" for i in range(len(xs))]
    tree = {}

    def call(ps):
        result = fn(unflatten(init_tree, ps[:nc]), unflatten(x_tree, ps[nc:]))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise GraphError(f"scan '{label}': fn must return a pair (new_carry, y_t): got {type(result).__name__}")
        carry_leaves, carry_tree = flatten(result[0])
        if not same_structure(carry_tree, init_tree):
            raise ShapeError(f"scan '{label}': fn returns a carry of structure {describe(carry_tree)}, but init "
                             f"has structure {describe(init_tree)}")  # fmt: skip
        y_leaves, tree["y"] = flatten(result[1])
        return carry_leaves + y_leaves

    body = trace(call, types, parent, f"{label}/step", names, like=init)
    captures, (step,) = unify([body], [body.outputs])
    outs = _outputs(scan_node(step, init, xs, captures, length, reverse, name=name))
    ny = len(body.outputs) - nc
    return unflatten(init_tree, outs[:nc]), unflatten(tree["y"], outs[nc : nc + ny])


def foldl(fn, xs, init, name: str | None = None):
    """``fn(...fn(fn(init, xs[0]), xs[1])..., xs[n-1])``: a scan that keeps only the final carry."""
    return scan(lambda c, x: (fn(c, x), None), init, xs, name=name)[0]


def foldr(fn, xs, init, name: str | None = None):
    """Like ``foldl`` from the last element to the first: ``fn(...fn(init, xs[n-1])..., xs[0])``."""
    return scan(lambda c, x: (fn(c, x), None), init, xs, reverse=True, name=name)[0]


def map_fn(fn, xs, name: str | None = None):
    """``stack([fn(xs[0]), fn(xs[1]), ...])``: ``fn`` traced once and looped (a scan with no carry)."""
    return scan(lambda c, x: (c, fn(x)), None, xs, name=name)[1]
