"""Control-flow passes: every pass also runs on bodies; conds on constants inline; loop-invariant
code moves out of loops; per-step work that reads no carry is batched over all steps; outputs
nobody reads and parameters nobody uses are trimmed.

``on_bodies`` is how the pass manager runs any pass on the bodies of control-flow nodes (innermost
first). ``inline_cond``, ``hoist_invariants``, ``batch_steps`` and ``trim`` are passes of their
own, Program -> (Program, events), listed in pipeline.py like the others.
"""

from __future__ import annotations

from ..ir import Graph, Subgraph, TensorType
from ..ir.subgraph import subgraphs
from ..ops.registry import REGISTRY
from .program import Program
from .rewrite import Rewriter

# -- running a pass on bodies -------------------------------------------------------------------


def has_control_flow(nodes) -> bool:
    """Whether any node holds bodies (the ops whose OpDef has ``body_types``)."""
    body_ops = frozenset(name for name, opdef in REGISTRY.items() if opdef.body_types is not None)
    return not body_ops.isdisjoint(n.op for n in nodes)


def on_bodies(program: Program, fn) -> tuple[Program, list]:
    """Run ``fn(body Program) -> (Program, events)`` on every body of every control-flow node;
    a node whose bodies changed is rebuilt with the new ones."""
    if not has_control_flow(program.nodes):
        return program, []
    events: list = []

    def visit(rw: Rewriter, node):
        subs = subgraphs(node)
        inputs = rw.inputs_of(node)
        if not subs:
            return rw.copy(node, inputs)
        attrs = dict(node.attrs)
        for k, sub in subs:
            body = Program(sub.nodes, sub.outputs)
            new, ev = fn(body)
            events.extend(ev)
            if new is not body:
                attrs[k] = Subgraph(sub.graph, sub.params, new.outputs)
        if all(attrs[k] is sub for k, sub in subs):
            return rw.copy(node, inputs)
        return rw.append(node.op, inputs, attrs, node.types, node.name, node.source)

    program, _ = Rewriter(program, "bodies").run(visit)
    return program, events


def _rebuild(sub: Subgraph, extra_types, replace: dict, prefix: str) -> tuple[Subgraph, list]:
    """A copy of ``sub`` in a new private graph with parameters for ``extra_types`` appended
    (named ``prefix0``, ...); ``replace`` maps body tensors to the index of the new parameter
    that stands for them. Returns the Subgraph and its new parameters."""
    outputs = sub.outputs
    graph = Graph(sub.graph.name, private=True)
    taken = {n.name for n in sub.nodes}
    params = [graph.parameter(p.type, p.node.name) for p in sub.params]
    extra = []
    for i, t in enumerate(extra_types):
        name, k = f"{prefix}{i}", 0
        while name in taken or name in graph:
            k += 1
            name = f"{prefix}{i}_{k}"
        extra.append(graph.parameter(t, name))
    env = dict(zip(sub.params, params))
    env.update((t, extra[i]) for t, i in replace.items())
    live, stack = set(), [t for t in outputs if t not in env]
    while stack:
        t = stack.pop()
        if t.node not in live:
            live.add(t.node)
            stack.extend(u for u in t.node.inputs if u not in env)
    for node in sorted(live, key=lambda n: n.id):
        new = graph.append(node.op, tuple(env[t] for t in node.inputs), node.attrs, node.types, node.name, node.source)
        env.update(zip(node.outputs, new.outputs))
    return Subgraph(graph, tuple(params + extra), tuple(env[t] for t in outputs)), extra


# -- cond on a constant -------------------------------------------------------------------------


def inline_cond(program: Program):
    """``cond(constant p, t, f) -> the inlined branch p selects``."""
    from ..ops.control import inline

    def visit(rw: Rewriter, node):
        inputs = rw.inputs_of(node)
        if node.op != "cond" or inputs[0].node.op != "constant":
            return rw.copy(node, inputs)
        taken = "true_branch" if bool(inputs[0].node.attrs["value"]) else "false_branch"
        rw.note("rewrite", "cond(constant) -> its branch", [node], f"the {taken.replace('_', ' ')} is inlined")
        outs = rw.build(node, lambda: inline(node.attrs[taken], inputs[1:])[0])
        return tuple(outs)

    return Rewriter(program, "inline_cond").run(visit)


# -- loop-invariant code motion -----------------------------------------------------------------

_LOOPS = {"scan": lambda a: (("step",), a["n_carry"] + a["n_x"]),
          "while_loop": lambda a: (("loop_cond", "loop_body"), a["n_vars"])}  # fmt: skip


def hoist_invariants(program: Program):
    """``loop(body(f(captures)))`` -> ``c = f(captures); loop(body(c))``: body nodes that read only
    captures (and constants) run once, before the loop, and become new captures."""
    from ..ops.control import inline

    def visit(rw: Rewriter, node):
        inputs = rw.inputs_of(node)
        if node.op not in _LOOPS:
            return rw.copy(node, inputs)
        keys, n_vary = _LOOPS[node.op](node.attrs)
        frontier, moved = [], 0
        for k in keys:
            sub = node.attrs[k]
            caps = {p.node for p in sub.params[n_vary:]}
            inv, reads, out = set(caps), set(caps), set()  # invariant / reads a capture / moves out
            for n in sub.nodes:
                if n.inputs and all(t.node in inv or t.node.op == "constant" for t in n.inputs):
                    inv.add(n)
                    if any(t.node in reads for t in n.inputs):  # (constants alone: folding's job)
                        reads.add(n)
                        out.add(n)
            readers = [t for n in sub.nodes if n not in out for t in n.inputs] + list(sub.outputs)
            frontier += [t for t in readers if t.node in out]
            moved += len(out)
        frontier = list(dict.fromkeys(frontier))
        if not frontier:
            return rw.copy(node, inputs)

        def before_the_loop():
            env = {}
            for k in keys:
                sub = node.attrs[k]
                part = Subgraph(sub.graph, sub.params[n_vary:], tuple(t for t in frontier if t.graph is sub.graph))
                env.update(zip(part.outputs, inline(part, inputs[n_vary:])[0]))
            return [env[t] for t in frontier]

        new_caps = rw.build(node, before_the_loop)
        attrs = dict(node.attrs)
        replace = {t: i for i, t in enumerate(frontier)}
        for k in keys:
            attrs[k], _ = _rebuild(node.attrs[k], [t.type for t in frontier], replace, "hoisted")
        rw.note("rewrite", "loop-invariant code -> before the loop", [node],
                f"{moved} nodes run once instead of every iteration")  # fmt: skip
        return rw.append(node.op, (*inputs, *new_caps), attrs, node.types, node.name, node.source)

    return Rewriter(program, "hoist_invariants").run(visit)


# -- batching work over the steps of a scan ----------------------------------------------------


def batch_steps(program: Program):
    """``scan(step)`` -> (1) work of the step that reads no carry (``x_t @ W``) done for all steps
    at once before the loop, as one GEMM, and fed to the loop as a new xs; (2) a carry that only
    accumulates ``acc + u_t.T @ v_t`` or ``acc + sum(v_t, 0)`` computed after the loop from the
    stacked ``u_t``, ``v_t`` as one GEMM (one sum). Needs static shapes (specialized programs)."""

    def visit(rw: Rewriter, node):
        inputs = rw.inputs_of(node)
        if node.op != "scan" or not all(t.type.is_static for t in inputs):
            return rw.copy(node, inputs)
        step = node.attrs["step"]
        if not all(t.type.is_static for n in step.nodes for t in n.outputs):
            return rw.copy(node, inputs)
        outs = _batch_free_work(rw, node, inputs)
        current = node if outs is None else outs[0].node
        summed = _sum_after(rw, current, inputs if outs is None else current.inputs)
        outs = summed if summed is not None else outs
        return node.outputs if outs is None else outs

    return Rewriter(program, "batch_steps").run(visit)


def _kinds(step: Subgraph, nc: int, nx: int) -> dict:
    """Body tensor -> "carry" (depends on a carry), "x" (on x_t, not on a carry) or "inv"."""
    kind = {}
    for i, p in enumerate(step.params):
        kind[p] = "carry" if i < nc else "x" if i < nc + nx else "inv"
    for n in step.nodes:
        if n.op != "placeholder":
            ks = {kind[t] for t in n.inputs}
            k = "carry" if "carry" in ks else "x" if "x" in ks else "inv"
            kind.update((t, k) for t in n.outputs)
    return kind


def _batchable(n, kind: dict) -> bool:
    """Adding a leading steps axis to its per-step inputs gives the same op over all steps."""
    from ..ops.registry import ELEMENTWISE, REGISTRY

    if len(n.outputs) != 1:
        return False
    rank = n.types[0].ndim
    if REGISTRY[n.op].kind == ELEMENTWISE:
        return all(t.ndim == rank if kind[t] == "x" else t.ndim <= rank for t in n.inputs)
    if n.op == "matmul":  # rows of a stack along the steps (not when a is read transposed)
        a, b = n.inputs
        return kind[a] == "x" and a.ndim >= 1 and kind[b] == "inv" and b.ndim == 2 and "transpose_a" not in n.attrs
    return False


def _batch_free_work(rw: Rewriter, node, inputs):
    from ..ops.control import inline
    from ..ops.registry import apply

    a = node.attrs
    step, nc, nx = a["step"], a["n_carry"], a["n_x"]
    kind = _kinds(step, nc, nx)
    moved = []
    for n in step.nodes:
        if n.op == "placeholder" or kind[n.outputs[0]] != "x":
            continue
        ok = _batchable(n, kind) and all(kind[t] != "x" or t.node.op == "placeholder" or t.node in moved
                                         for t in n.inputs)  # fmt: skip
        if ok and n.op == "matmul":  # only what feeds a GEMM is worth a new stacked input
            moved.append(n)
        elif ok and any(t.node in moved for t in n.inputs):
            moved.append(n)
    moved_set = set(moved)
    readers = [t for n in step.nodes if n not in moved_set for t in n.inputs] + list(step.outputs)
    frontier = list(dict.fromkeys(t for t in readers if t.node in moved_set))
    if not frontier:
        return None
    xs, caps = inputs[nc : nc + nx], inputs[nc + nx :]
    steps = xs[0].shape[0]

    def batched():
        env = dict(zip(step.params[nc:], (*xs, *caps)))
        for n in moved:
            # (an input outside env reads only captures and constants: rebuilt here, once)
            ins = [env[t] if t in env else inline(Subgraph(step.graph, step.params[nc + nx :], (t,)), caps)[0][0]
                   for t in n.inputs]  # fmt: skip
            if n.op == "matmul" and ins[0].ndim > 2:  # all steps' rows in one GEMM
                lead, k = ins[0].shape[:-1], ins[0].shape[-1]
                flat = apply("matmul", apply("reshape", ins[0], shape=(-1, k)), ins[1], **n.attrs)
                out = apply("reshape", flat, shape=(*lead, n.types[0].shape[-1]))
            else:
                out = apply(n.op, *ins, **n.attrs)
            env[n.outputs[0]] = out
        return [env[t] for t in frontier]

    new_xs = rw.build(node, batched)
    if any(t.shape[0] != steps for t in new_xs):
        return None
    sub, _ = _rebuild(step, [t.type for t in frontier], {t: i for i, t in enumerate(frontier)}, "batched")
    k = len(step.params)
    params = sub.params[: nc + nx] + sub.params[k:] + sub.params[nc + nx : k]
    rw.note("rewrite", "scan work that reads no carry -> before the loop, over all steps", [node],
            f"{len(moved)} nodes batched over {steps} steps")  # fmt: skip
    attrs = {**a, "step": Subgraph(sub.graph, params, sub.outputs), "n_x": nx + len(frontier)}
    new_inputs = (*inputs[: nc + nx], *new_xs, *caps)
    return rw.append(node.op, new_inputs, attrs, node.types, node.name, node.source)


def _accumulator(step: Subgraph, i: int, users: dict):
    """(kind, tensors) when carry i only accumulates: out_i = p_i + g, and nothing else reads p_i
    or out_i; kind "outer" for g = u.T @ v (tensors u, v; the gradient of a matmul reads u with
    transpose_a), "sum" for g = sum(v, axis 0)."""
    p, out = step.params[i], step.outputs[i]
    add = out.node
    if add.op != "add" or p not in add.inputs or users.get(p, 0) != 1 or users.get(out, 0) != 0:
        return None
    if step.outputs.count(out) != 1:
        return None
    g = add.inputs[1] if add.inputs[0] == p else add.inputs[0]
    if g == p or g.type != out.type:
        return None
    gn = g.node
    if gn.op == "matmul":
        u, v = gn.inputs
        if not gn.attrs and u.node.op == "transpose" and u.node.attrs["axes"] == (1, 0):
            u = u.node.inputs[0]
        elif gn.attrs != {"transpose_a": True}:
            u = None
        if u is not None and u.ndim == 2 and v.ndim == 2:
            return "outer", (u, v)
    if gn.op == "sum" and gn.attrs["axes"] == (0,) and not gn.attrs["keepdims"] and gn.inputs[0].ndim == 2:
        return "sum", (gn.inputs[0],)
    return None


def _sum_after(rw: Rewriter, node, inputs):
    from ..ops.registry import apply

    a = node.attrs
    step, nc, nx = a["step"], a["n_carry"], a["n_x"]
    users: dict = {}
    for n in step.nodes:
        for t in n.inputs:
            users[t] = users.get(t, 0) + 1
    acc = {i: m for i in range(nc) if (m := _accumulator(step, i, users)) is not None}
    if not acc:
        return None
    xparams = {p: inputs[j] for j, p in enumerate(step.params) if nc <= j < nc + nx}
    stacked = list(dict.fromkeys(t for _, ts in acc.values() for t in ts if t not in xparams))
    keep = [i for i in range(nc) if i not in acc]
    params = tuple(step.params[i] for i in keep) + step.params[nc:]
    sub = Subgraph(step.graph, params, tuple(step.outputs[i] for i in keep) + step.outputs[nc:] + tuple(stacked))
    new_inputs = (*(inputs[i] for i in keep), *inputs[nc:])
    ny = len(step.outputs) - nc
    steps = node.types[nc].shape[0] if ny else _steps(inputs, nc, nx, a)
    stacks = tuple(TensorType((steps, *t.shape), t.dtype) for t in stacked)
    types = (*(node.types[i] for i in keep), *node.types[nc:], *stacks)
    attrs = {**a, "step": sub, "n_carry": len(keep)}
    new = rw.append(node.op, new_inputs, attrs, types, node.name, node.source)
    out = dict(zip(keep, new[: len(keep)]))
    whole = {t: new[len(keep) + ny + j] for j, t in enumerate(stacked)}
    whole.update(xparams)

    def after():
        res = {}
        for i, (kind, ts) in acc.items():
            stacks = [whole[t] for t in ts]
            if kind == "outer":
                u, v = (apply("reshape", s, shape=(-1, s.shape[-1])) for s in stacks)
                total = apply("matmul", u, v, transpose_a=True)
            else:
                total = apply("sum", stacks[0], axes=(0, 1), keepdims=False)
            res[i] = apply("add", inputs[i], total)
        return res

    out.update(rw.build(node, after))
    rw.note("rewrite", "scan carry that accumulates per-step products -> one GEMM after the loop", [node],
            f"{len(acc)} accumulators")  # fmt: skip
    return tuple(out[i] for i in range(nc)) + tuple(new[len(keep) : len(keep) + ny])


def _steps(inputs, nc: int, nx: int, attrs) -> int:
    return inputs[nc].shape[0] if nx else attrs["length"]


# -- trimming -----------------------------------------------------------------------------------


def _deps(sub: Subgraph) -> dict:
    """Body tensor -> the set of parameter indices it depends on."""
    index = {p: i for i, p in enumerate(sub.params)}
    deps: dict = {p: frozenset((i,)) for p, i in index.items()}
    for n in sub.nodes:
        if n.op == "placeholder":
            continue
        d = frozenset().union(*(deps[t] for t in n.inputs)) if n.inputs else frozenset()
        deps.update((t, d) for t in n.outputs)
    return deps


def _dead_state(subs: list[Subgraph], n_state: int, live: list[bool]) -> set[int]:
    """Loop state i (a scan carry, a loop variable) that can go: its final value is unread and its
    parameter feeds nothing that stays (``subs``: the bodies as they will be, the last one
    computing the next state in its first ``n_state`` outputs)."""
    deps = [_deps(s) for s in subs]
    dead = {i for i in range(n_state) if not live[i]}
    while True:
        needed = set()
        for j, (s, d) in enumerate(zip(subs, deps)):
            for o, t in enumerate(s.outputs):
                if not (j == len(subs) - 1 and o < n_state and o in dead):  # a dead state's next value
                    needed |= d[t]
        if not dead & needed:
            return dead
        dead -= needed


def _used(sub: Subgraph) -> set[int]:
    nodes = set(sub.nodes)
    used = {t for n in nodes for t in n.inputs} | set(sub.outputs)
    return {i for i, p in enumerate(sub.params) if p in used}


def _trim_node(node, inputs, live: list[bool]):
    """(inputs, attrs, kept output indices) of the trimmed node, or None when nothing goes."""
    a = dict(node.attrs)
    if node.op == "cond":
        keep = [i for i, x in enumerate(live) if x]
        subs = [a["true_branch"], a["false_branch"]]
        subs = [s.with_outputs(s.outputs[i] for i in keep) for s in subs]
        used = set().union(*(_used(s) for s in subs))
        params = sorted(used)
        if len(keep) == len(live) and len(params) == len(inputs) - 1:
            return None
        a["true_branch"], a["false_branch"] = (_params(s, params) for s in subs)
        return (inputs[0], *(inputs[1 + i] for i in params)), a, keep
    if node.op == "scan":
        nc, nx = a["n_carry"], a["n_x"]
        ys = [nc + j for j in range(len(a["step"].outputs) - nc) if live[nc + j]]
        dead = _dead_state([a["step"].with_outputs(a["step"].outputs[i] for i in [*range(nc), *ys])], nc, live)
        carries = [i for i in range(nc) if i not in dead]
        step = a["step"]
        step = step.with_outputs(step.outputs[i] for i in carries + ys)
        used = _used(step)
        xs = [i for i in range(nc, nc + nx) if i in used]
        length = a["length"]
        if not xs and nx and length is None:
            length = inputs[nc].shape[0]
            if length is None:
                xs = [nc]  # the number of steps is only known at run time, from this xs
        caps = [i for i in range(nc + nx, len(inputs)) if i in used]
        params = carries + xs + caps
        if len(params) == len(inputs) and len(carries) + len(ys) == len(live):
            return None
        a.update(step=_params(step, params), n_carry=len(carries), n_x=len(xs), length=length)
        return tuple(inputs[i] for i in params), a, carries + ys
    if node.op == "while_loop":
        n = a["n_vars"]
        cnd, body = a["loop_cond"], a["loop_body"]
        saved = [n + j for j in range(len(body.outputs) - n) if live[n + 1 + j]]
        dead = _dead_state([cnd, body.with_outputs(body.outputs[i] for i in [*range(n), *saved])], n, live)
        var = [i for i in range(n) if i not in dead]
        body = body.with_outputs(body.outputs[i] for i in var + saved)
        used = _used(cnd) | _used(body)
        caps = [i for i in range(n, len(inputs)) if i in used]
        params = var + caps
        if len(params) == len(inputs) and len(var) + len(saved) + 1 == len(live):
            return None
        a.update(loop_cond=_params(cnd, params), loop_body=_params(body, params), n_vars=len(var))
        return tuple(inputs[i] for i in params), a, var + [n] + [j + 1 for j in saved]
    return None


def _params(sub: Subgraph, keep: list[int]) -> Subgraph:
    return Subgraph(sub.graph, tuple(sub.params[i] for i in keep), sub.outputs)


def trim(program: Program):
    """Drop control-flow outputs nobody reads (the stacks a scan saves for a gradient that is not
    computed, unread ys), loop state nothing needs, and captures no body uses. Repeats until
    nothing changes: a loop that stops reading a stack lets the loop that saved it drop it."""
    events: list = []
    for _ in range(16):
        program, new = _trim_once(program)
        if not new:
            break
        events += new
    return program, events


def _trim_once(program: Program):
    read = {t for n in program.nodes for t in n.inputs} | set(program.targets)

    def visit(rw: Rewriter, node):
        inputs = rw.inputs_of(node)
        if not subgraphs(node):
            return rw.copy(node, inputs)
        trimmed = _trim_node(node, inputs, [t in read for t in node.outputs])
        if trimmed is None:
            return rw.copy(node, inputs)
        new_inputs, attrs, keep = trimmed
        types = tuple(node.types[i] for i in keep)
        dropped = len(node.outputs) - len(keep)
        rw.note("rewrite", "unread control-flow outputs and unused inputs dropped", [node],
                f"{dropped} of {len(node.outputs)} outputs, {len(inputs) - len(new_inputs)} inputs")  # fmt: skip
        new = rw.append(node.op, new_inputs, attrs, types, node.name, node.source)
        pos = {i: k for k, i in enumerate(keep)}
        return tuple(new[pos[i]] if i in pos else t for i, t in enumerate(node.outputs))

    return Rewriter(program, "trim").run(visit)
