"""Gradient rules of cond, while_loop and scan: each builds the control flow of its VJP as nodes.

cond: a cond over the two branches' VJPs (each branch recomputes its forward, then differentiates
it; the branch not taken contributes zeros). scan: backpropagation through time, a *reverse*
scan whose step is the VJP of the forward step, carrying the gradient of the carry and
accumulating the gradients of the captures. The VJP step reads what the forward step computed
from the stacks the forward scan saved (``scan_node`` saves every value that depends on the
carry or x_t; ``trim`` later drops those no gradient reads), so nothing is recomputed.
while_loop (with max_iterations): the same reverse scan over the saved iterations, each step a
cond that skips the iterations the loop never ran.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GradientError, where
from ..ir import Graph, Subgraph, get_default_graph
from ..ir.source import source_override
from .control import cond, inline, scan_node, trace, unify
from .elementwise import less, zeros_like
from .registry import apply, graph_of
from .state import constant


def _tup(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _float(t) -> bool:
    return t.dtype.kind == "f"


def _copy(nodes, env: dict) -> None:
    """Rebuild ``nodes`` (in order) in the current graph, reading ``env[t]`` for each input t."""
    for node in nodes:
        with source_override(node.source):
            if node.op == "constant":
                new = constant(node.attrs["value"])
            else:
                new = apply(node.op, *(env[t] for t in node.inputs), **node.attrs)
        env.update(zip(node.outputs, _tup(new) if not hasattr(new, "node") else new.node.outputs))


# -- cond ---------------------------------------------------------------------------------------
def cond_grad(g, out, pred, *caps, true_branch: Subgraph, false_branch: Subgraph):
    gs, outs = _tup(g), _tup(out)
    seeds = [i for i, (gi, o) in enumerate(zip(gs, outs)) if gi is not None and _float(o)]
    wrt = [j for j, c in enumerate(caps) if _float(c)]
    result = [None] * (1 + len(caps))
    if not seeds or not wrt:
        return tuple(result)
    from ..autodiff import grad

    def vjp(branch: Subgraph):
        def fn():
            body = get_default_graph()
            inner = [body.capture(c) for c in caps]
            y, _ = inline(branch, inner)  # the branch's forward again, then its gradient
            seed = [body.capture(gs[i]) for i in seeds]
            return tuple(grad([y[i] for i in seeds], [inner[j] for j in wrt], grad_ys=seed))

        return fn

    for j, gj in zip(wrt, cond(pred, vjp(true_branch), vjp(false_branch))):
        result[1 + j] = gj
    return tuple(result)


# -- the VJP of a loop body, split into what each step is fed ------------------------------------
@dataclass
class _Vjp:
    params: list  # scratch copies of the body's parameters
    seeds: list  # scratch parameters: the gradients flowing into the seeded outputs
    grads: list  # scratch gradients, one per differentiated parameter
    residuals: list  # forward values (scratch) the gradients read that change from step to step
    used: set  # scratch parameters the gradients read
    keep: list  # scratch nodes to rebuild in the real VJP body (gradient side, invariant forward)
    body_of: dict  # scratch tensor -> the forward body's tensor


def _vjp(body: Subgraph, n_vary: int, seeds: list[int], wrt: list[int], parent: Graph) -> _Vjp:
    """Differentiate ``body`` (its first ``n_vary`` parameters change per step) in a scratch graph
    and find what the gradients read: varying forward values are *residuals* (the forward loop
    saved them), the rest is rebuilt in the VJP body (hoisting moves the invariant part out)."""
    from ..autodiff import grad

    scratch = Graph(f"{body.graph.name}/vjp", private=True, parent=parent)
    try:
        with scratch:
            p = [scratch.parameter(t.type, t.node.name) for t in body.params]
            s = [scratch.parameter(body.outputs[i].type, f"grad_{i}") for i in seeds]
            first = len(scratch.nodes)
            outs, mapping = inline(body, p)
            forward = set(scratch.nodes[first:])
            grads = grad([outs[i] for i in seeds], [p[j] for j in wrt], grad_ys=s)
    finally:
        scratch.tracing = False
    vary = {t.node for t in p[:n_vary]}
    for node in sorted(forward, key=lambda n: n.id):
        if any(t.node in vary for t in node.inputs):
            vary.add(node)
    residuals, used, keep, seen, stack = set(), set(), set(), set(), list(grads)
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        node = t.node
        if node.op == "placeholder":
            used.add(t)
        elif node in vary and node in forward:
            residuals.add(t)
        else:
            keep.add(node)
            stack.extend(node.inputs)
    order = lambda t: (t.node.id, t.index)  # noqa: E731
    return _Vjp(p, s, list(grads), sorted(residuals, key=order), used, sorted(keep, key=lambda n: n.id),
                {v: k for k, v in mapping.items()})  # fmt: skip


def _stacks(needed: list, body: Subgraph, first: int, outs: tuple, rebuild):
    """The stacked forward outputs holding each needed body tensor (looked up among the body's
    outputs from ``first`` on, whose stacks are ``outs``); ``rebuild(extra)`` returns the stacks
    of a forward node that also saves the tensors this one did not (a fallback that runs the
    loop again: a forward built by graphc saves them all, but a trimmed one may not)."""
    index = {}
    for j, t in enumerate(body.outputs[first:]):
        index.setdefault(t, j)
    missing = [t for t in dict.fromkeys(needed) if t not in index]
    if missing:
        outs = _tup(rebuild(missing))
        for j, t in enumerate(missing):
            index.setdefault(t, len(body.outputs) - first + j)
    return [outs[index[t]] for t in needed]


def _slice_type(t):
    from ..ir import TensorType

    return TensorType(t.shape[1:], t.dtype)


# -- scan ---------------------------------------------------------------------------------------
def scan_grad(g, out, *inputs, step: Subgraph, n_carry: int, n_x: int, length, reverse: bool):
    gs, outs = _tup(g), _tup(out)
    nc, nx = n_carry, n_x
    init, xs, caps = inputs[:nc], inputs[nc : nc + nx], inputs[nc + nx :]
    fc = [i for i in range(nc) if _float(init[i])]
    fx = [i for i in range(nx) if _float(xs[i])]
    fk = [i for i in range(len(caps)) if _float(caps[i])]
    fy = [j for j in range(len(outs) - nc) if gs[nc + j] is not None and _float(outs[nc + j])]
    wrt = fc + [nc + i for i in fx] + [nc + nx + i for i in fk]
    result = [None] * len(inputs)
    if not wrt:
        return tuple(result)
    parent = graph_of(list(inputs), "scan")
    v = _vjp(step, nc + nx, fc + [nc + j for j in fy], wrt, parent)

    # per-step values the VJP reads: residuals and carries (from the forward's stacks), x_t (xs)
    carry_params = [v.params[i] for i in range(nc) if v.params[i] in v.used]
    x_params = [(i, v.params[nc + i]) for i in range(nx) if v.params[nc + i] in v.used]
    k_params = [(i, v.params[nc + nx + i]) for i in range(len(caps)) if v.params[nc + nx + i] in v.used]
    saved = v.residuals + carry_params

    def rebuild(extra):
        more = step.with_outputs(step.outputs + tuple(extra))
        return _tup(scan_node(more, init, xs, caps, length, reverse, save=False))[nc:]

    stacks = _stacks([v.body_of[t] for t in saved], step, nc, outs[nc:], rebuild)
    r_xs = [gs[nc + j] for j in fy] + [xs[i] for i, _ in x_params] + stacks
    if not r_xs and length is None:
        r_xs = [xs[0]]  # only to give the reverse scan its (run-time) number of steps
    r_init = [gs[i] if gs[i] is not None else zeros_like(outs[i]) for i in fc] + [zeros_like(caps[i]) for i in fk]
    r_caps = [caps[i] for i, _ in k_params]
    n_rc = len(r_init)
    o_x = n_rc + len(fy)  # where each group of the VJP step's parameters starts
    o_s = o_x + len(x_params)
    o_k = n_rc + len(r_xs)

    def vjp_step(ps):
        env = dict(zip(v.seeds, ps[: len(fc)] + ps[n_rc:o_x]))
        env.update((p, r) for (_, p), r in zip(x_params, ps[o_x:o_s]))
        env.update(zip(saved, ps[o_s : o_s + len(saved)]))
        env.update((p, r) for (_, p), r in zip(k_params, ps[o_k:]))
        _copy(v.keep, env)
        grads = [env[t] for t in v.grads]
        accs = [a + gk for a, gk in zip(ps[len(fc) : n_rc], grads[len(fc) + len(fx) :])]
        return grads[: len(fc)] + accs + grads[len(fc) : len(fc) + len(fx)]

    types = [t.type for t in r_init] + [_slice_type(t) for t in r_xs] + [t.type for t in r_caps]
    body = trace(vjp_step, types, parent, f"{step.graph.name}/grad")
    captures, (sub,) = unify([body], [body.outputs])
    r = _tup(scan_node(sub, r_init, r_xs, r_caps + captures, length, not reverse))
    for k, i in enumerate(fc):
        result[i] = r[k]
    for k, i in enumerate(fk):
        result[nc + nx + i] = r[len(fc) + k]
    for k, i in enumerate(fx):
        result[nc + i] = r[n_rc + k]
    return tuple(result)


# -- while_loop -----------------------------------------------------------------------------------
def while_grad(g, out, *inputs, loop_cond: Subgraph, loop_body: Subgraph, n_vars: int, max_iterations):
    gs, outs = _tup(g), _tup(out)
    n = n_vars
    node = outs[0].node
    if max_iterations is None:
        raise GradientError(
            f"while_loop '{node.name}': differentiating a while_loop needs max_iterations: the gradient "
            f"stores every iteration's values in buffers of that length{where(node.source)}"
        )
    vs, caps = inputs[:n], inputs[n:]
    if any(a.type != b.type for a, b in zip(vs, outs[:n])):
        raise GradientError(f"while_loop '{node.name}': cannot differentiate a loop whose variables change "
                            f"shape from one iteration to the next{where(node.source)}")  # fmt: skip
    fv = [i for i in range(n) if _float(vs[i])]
    fk = [i for i in range(len(caps)) if _float(caps[i])]
    # stored values receive gradients too when the gradient itself is differentiated
    fs = [j for j in range(len(outs) - n - 1) if gs[n + 1 + j] is not None and _float(outs[n + 1 + j])]
    wrt = fv + [n + i for i in fk]
    result = [None] * len(inputs)
    if not wrt:
        return tuple(result)
    parent = graph_of(list(inputs), "while_loop")
    v = _vjp(loop_body, n, fv + [n + j for j in fs], wrt, parent)
    var_params = [v.params[i] for i in range(n) if v.params[i] in v.used]
    k_params = [(i, v.params[n + i]) for i in range(len(caps)) if v.params[n + i] in v.used]
    saved = v.residuals + var_params

    def rebuild(extra):
        more = loop_body.with_outputs(loop_body.outputs + tuple(extra))
        return _tup(apply("while_loop", *inputs, loop_cond=loop_cond, loop_body=more, n_vars=n,
                          max_iterations=max_iterations))[n + 1 :]  # fmt: skip

    stacks = _stacks([v.body_of[t] for t in saved], loop_body, n, outs[n + 1 :], rebuild)
    with parent:
        steps = constant(np.arange(max_iterations, dtype=np.int64))
    active = less(steps, outs[n])  # iteration t ran: t < the iteration count
    r_init = [gs[i] if gs[i] is not None else zeros_like(outs[i]) for i in fv] + [zeros_like(caps[i]) for i in fk]
    r_caps = [caps[i] for i, _ in k_params]
    n_rc = len(r_init)

    g_stored = [gs[n + 1 + j] for j in fs]
    r_xs = [active, *g_stored, *stacks]

    def vjp_step(ps):
        carries, ran, rest = ps[:n_rc], ps[n_rc], ps[n_rc + 1 :]

        def step():
            env = dict(zip(v.seeds, list(carries[: len(fv)]) + list(rest[: len(fs)])))
            env.update(zip(saved, rest[len(fs) : len(fs) + len(saved)]))
            env.update((p, r) for (_, p), r in zip(k_params, rest[len(fs) + len(saved) :]))
            _copy(v.keep, env)
            grads = [env[t] for t in v.grads]
            return tuple(grads[: len(fv)]) + tuple(a + gk for a, gk in zip(carries[len(fv) :], grads[len(fv) :]))

        return list(cond(ran, step, lambda: tuple(carries)))

    types = [t.type for t in r_init] + [_slice_type(t) for t in r_xs] + [t.type for t in r_caps]
    body = trace(vjp_step, types, parent, f"{loop_body.graph.name}/grad")
    captures, (sub,) = unify([body], [body.outputs])
    r = _tup(scan_node(sub, r_init, r_xs, r_caps + captures, max_iterations, reverse=True))
    for k, i in enumerate(fv):
        result[i] = r[k]
    for k, i in enumerate(fk):
        result[n + i] = r[len(fv) + k]
    return tuple(result)
