"""Autodiff: reverse mode as a graph-to-graph transformation (Tensors in, gradient Tensors out).

The whole reverse pass is here: per-op rules (OpDef.grad) only state local derivatives, written
with graphc ops. This module sums fan-out, undoes broadcasting (``sum_like``), casts back to the
input dtype, gives zeros to inputs the output does not depend on, and reports undefined gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import GradientError, where
from .ir import Tensor
from .ir.source import source_override
from .ir.types import broadcast_shapes, compatible, fmt_shape
from .ops import registry
from .ops.elementwise import cast, zeros_like
from .ops.shape import broadcast_like, sum_like
from .ops.state import as_tensor, constant

DIFF, BLOCKED, NONDIFF = "diff", "blocked", "nondiff"


def edge_kind(node, i: int) -> str:
    """How a gradient may flow from ``node`` into its input ``i``.

    BLOCKED: the op says the input gets no gradient (``stop_gradient``, ``where``'s condition, a
    shape reference); silently zero. NONDIFF: the op or the dtypes make the gradient undefined
    (comparisons, argmax, integer tensors); an error if it is the only path to a requested input.
    """
    opdef = registry.REGISTRY[node.op]
    if i in opdef.nograd_inputs:
        return BLOCKED
    if not opdef.differentiable or node.inputs[i].dtype.kind != "f":
        return NONDIFF
    if all(t.dtype.kind != "f" for t in node.types):  # (a loop's int counter output does not count)
        return NONDIFF
    return DIFF


def _ancestors(y: Tensor, kinds: set[str]) -> set:
    """Nodes that ``y`` depends on through edges of the given kinds (including y's node)."""
    seen, stack = {y.node}, [y.node]
    while stack:
        node = stack.pop()
        for i, t in enumerate(node.inputs):
            if t.node not in seen and edge_kind(node, i) in kinds:
                seen.add(t.node)
                stack.append(t.node)
    return seen


def _descendants(xs: Sequence[Tensor], within: set) -> set:
    """Nodes in ``within`` reachable from the xs through differentiable edges."""
    reach = {x.node for x in xs}
    for node in sorted(within, key=lambda n: n.id):
        if node not in reach and any(
            t.node in reach and edge_kind(node, i) == DIFF for i, t in enumerate(node.inputs)
        ):
            reach.add(node)
    return reach


def _nondiff_blocker(y: Tensor, x: Tensor):
    """A non-differentiable node that lies between x and y, if y depends on x at all."""
    between = _ancestors(y, {DIFF, NONDIFF})
    if x.node not in between:
        return None
    downstream = {x.node}
    for node in sorted(between, key=lambda n: n.id):
        for i, t in enumerate(node.inputs):
            if t.node in downstream:
                if edge_kind(node, i) == NONDIFF:
                    return node
                downstream.add(node)
    return None


def _broadcasts_to(shape, target) -> bool:
    """``shape`` broadcasts to ``target`` without changing it (None dims may match anything)."""
    out = broadcast_shapes(shape, target)
    return len(shape) <= len(target) and out is not None and compatible(out, target)


def _accumulate(parts: list[Tensor]) -> Tensor:
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def grad(y, xs, grad_ys=None):
    """Gradients of ``y`` with respect to each of ``xs``, as Tensors in the same graph.

    Parameters
    ----------
    y : Tensor, or a list of Tensors
        A float scalar, or any float tensor when ``grad_ys`` is given. Several outputs (a list)
        need ``grad_ys`` (a list, ``None`` for an output that gets no gradient): the result is
        then the sum of their vector-Jacobian products.
    xs : Tensor or sequence of Tensors
        Float tensors (placeholders, variables or intermediate results).
    grad_ys : array_like or Tensor, optional
        The gradient flowing into ``y`` (a vector-Jacobian product); ones by default.

    Returns
    -------
    Tensor or list of Tensors
        One gradient per x, shaped like x. Gradients are ordinary graph nodes: they can be
        compiled, optimized, saved, and differentiated again.
    """
    single = not isinstance(xs, (list, tuple))  # an ndarray is not a list of xs: reject it below
    xs = [xs] if single else list(xs)
    if isinstance(y, (list, tuple)):
        if not isinstance(grad_ys, (list, tuple)) or len(grad_ys) != len(y):
            raise GradientError(f"grad: {len(y)} outputs need a list of as many grad_ys: got {grad_ys!r}")
        pairs = [(t, g) for t, g in zip(y, grad_ys) if g is not None]
    else:
        pairs = [(y, grad_ys)]
    if not pairs:
        return [_zeros(x) for x in xs][0] if single else [_zeros(x) for x in xs]
    y = pairs[0][0]
    for t in (*(t for t, _ in pairs), *xs):
        if not isinstance(t, Tensor):
            raise GradientError(f"grad: y and xs must be graphc Tensors: got {type(t).__name__}")
    for t, _ in pairs:
        if t.dtype.kind != "f":
            raise GradientError(f"grad: output '{t.name}' has dtype {t.dtype}; only float outputs have gradients")
        if t.graph is not y.graph:
            raise GradientError(f"grad: outputs '{y.name}' and '{t.name}' belong to different graphs")
    for x in xs:
        if x.graph is not y.graph:
            raise GradientError(f"grad: '{x.name}' and '{y.name}' belong to different graphs")
        if x.dtype.kind != "f":
            raise GradientError(
                f"grad: cannot differentiate with respect to '{x.name}' of dtype {x.dtype}; "
                f"gradients exist only for float tensors{where(x.node.source)}"
            )
    with registry.gradient_builder():  # gradient nodes come out folded and merged
        return _grad(pairs, xs, single)


def _grad(pairs, xs, single):
    contributions: dict[Tensor, list[Tensor]] = {}
    for t, g in pairs:
        contributions.setdefault(t, []).append(_seed(t, g))

    needed = set().union(*(_ancestors(t, {DIFF}) for t, _ in pairs))
    active = _descendants(xs, needed) & needed
    for x in xs:
        if x.node not in active:
            for t, _ in pairs:
                blocker = _nondiff_blocker(t, x)
                if blocker is not None:
                    raise GradientError(
                        f"grad: '{t.name}' depends on '{x.name}' only through non-differentiable op "
                        f"{blocker.op} '{blocker.name}', so the gradient is undefined{where(blocker.source)}"
                    )

    totals: dict[Tensor, Tensor] = {}

    def total(t: Tensor):
        if t not in totals and t in contributions:
            totals[t] = _accumulate(contributions[t])
        return totals.get(t)

    for node in sorted(active, key=lambda n: n.id, reverse=True):
        if not node.inputs:
            continue
        outs = node.outputs
        gs = [total(o) for o in outs]
        if all(g is None for g in gs):
            continue
        opdef = registry.REGISTRY[node.op]
        with source_override(node.source):
            if len(outs) == 1:
                in_grads = opdef.grad(gs[0], outs[0], *node.inputs, **node.attrs)
            else:
                in_grads = opdef.grad(tuple(gs), outs, *node.inputs, **node.attrs)
            for i, (inp, gi) in enumerate(zip(node.inputs, in_grads)):
                if gi is None or inp.node not in active or edge_kind(node, i) != DIFF:
                    continue
                gi = sum_like(gi, inp)
                if gi.dtype != inp.dtype:
                    gi = cast(gi, inp.dtype)
                contributions.setdefault(inp, []).append(gi)

    results = [_zeros(x) if total(x) is None else total(x) for x in xs]
    return results[0] if single else results


def _zeros(x: Tensor) -> Tensor:
    with x.graph:
        return zeros_like(x)


def _seed(y: Tensor, grad_ys) -> Tensor:
    """The gradient flowing into ``y``: ones for a scalar, else ``grad_ys`` checked and cast."""
    if grad_ys is None:
        if y.shape != ():
            raise GradientError(
                f"grad: output '{y.name}' has shape {y.shape}, expected a scalar (); reduce it "
                f"(e.g. graphc.mean) or pass grad_ys{where(y.node.source)}"
            )
        return constant(np.ones((), y.dtype))  # (a constant, not ones_like(y): nothing left to fold)
    seed = as_tensor(grad_ys, like=y)
    if seed.shape != y.shape:
        if not _broadcasts_to(seed.shape, y.shape):
            raise GradientError(
                f"grad: grad_ys for output '{y.name}' has the wrong shape: got {fmt_shape(seed.shape)}, "
                f"expected {fmt_shape(y.shape)} or a shape that broadcasts to it{where(y.node.source)}"
            )
        seed = broadcast_like(seed, y)
    if seed.dtype != y.dtype:
        seed = cast(seed, y.dtype)
    return seed
