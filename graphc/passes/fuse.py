"""Fusion: clusters of elementwise ops become one fused node; a matmul absorbs its epilogue.

Decisions use only an op's fusion kind and the graph's shape, never op names. A producer joins
its consumer's cluster when it is elementwise, has the cluster's output shape, and every one of
its consumers is already in the cluster; ``explain`` reports each candidate that was kept out and
why. Runs on specialized (static-shape) programs.
"""

from __future__ import annotations

import heapq

from ..ops.registry import ELEMENTWISE, MATMUL, REDUCE, REGISTRY
from .program import Program
from .rewrite import Rewriter


def _kind(node) -> str:
    return REGISTRY[node.op].kind


def _clusters(program: Program, users: dict, note) -> dict:
    """root node -> member nodes (topological order) for every cluster (single ops included)."""
    taken: set = set()
    clusters = {}
    for root in reversed(program.nodes):
        if _kind(root) != ELEMENTWISE or root in taken or not root.types[0].is_static:
            continue  # (a dim known only at run time: after a loop whose variables change shape)
        members = {root}
        heap = [(-t.node.id, id(t.node), t.node) for t in root.inputs]
        heapq.heapify(heap)
        seen = set()
        while heap:
            _, _, p = heapq.heappop(heap)
            if p in seen or p in members:
                continue
            seen.add(p)
            if _kind(p) != ELEMENTWISE or p in taken or len(p.types) != 1:
                continue
            if p.types[0].shape != root.types[0].shape:
                note("keep", "not fused: broadcast input", [p, root],
                     f"{p.types[0]} is broadcast to {root.types[0]}; it stays a separate kernel")  # fmt: skip
                continue
            outside = [u for u, _ in users[p] if u not in members]
            if outside:
                who = "an output of the function" if outside[0] is None else f"{outside[0].op} '{outside[0].name}'"
                note("keep", "not fused: second consumer", [p, root], f"{p.name} is also used by {who}")
                continue
            members.add(p)
            for t in p.inputs:
                heapq.heappush(heap, (-t.node.id, id(t.node), t.node))
        clusters[root] = sorted(members, key=lambda n: n.id)
        taken.update(members)
    return clusters


def _epilogue_matmul(members, users: dict):
    """A matmul feeding the cluster whose only consumer is in it, with the cluster's shape and dtype.
    (A variable's update may be one: ``w - lr * x.T @ g`` is then written into ``w`` in place, by
    a GEMM that accumulates into it where the backend has one.)"""
    inside = set(members)
    root = members[-1]
    for n in members:
        for t in n.inputs:
            p = t.node
            if (_kind(p) == MATMUL and p.types[0] == root.types[0]
                    and all(u in inside for u, _ in users[p])):  # fmt: skip
                return p
    return None


def _body(members, externals: list) -> tuple:
    """The members as fused-body instructions. Inputs not computed inside are appended to
    ``externals`` (in order of first use) and numbered 0..; instruction j is len(externals)+j."""
    inside = {n.outputs[0] for n in members}
    pos = {t: i for i, t in enumerate(externals)}  # (a dict: Tensor == goes through Python)
    for n in members:
        for t in n.inputs:
            if t not in inside and t not in pos:
                pos[t] = len(externals)
                externals.append(t)
    body = []
    for n in members:
        body.append((n.op, tuple(pos[t] for t in n.inputs), tuple(sorted(n.attrs.items())), n.types[0].dtype.str))
        pos[n.outputs[0]] = len(pos)
    return tuple(body)


def _trailing_reduction(root, users: dict, note):
    """The reduce node that alone consumes ``root``, when its kernel can fold it in: a float ufunc
    reduction (sum, max, min, prod; a static mean is simplified to a sum) over all axes or over
    trailing axes (blocks then run over the leading ones)."""
    consumers = users[root]
    if len(consumers) != 1 or consumers[0][0] is None:
        return None
    q = consumers[0][0]
    opdef = REGISTRY[q.op]
    if opdef.kind != REDUCE or opdef.ufunc is None:
        return None
    shape, axes = root.types[0].shape, q.attrs["axes"]
    if root.types[0].dtype.kind != "f" or q.types[0].dtype != root.types[0].dtype:
        note("keep", "not fused: reduction dtype", [q, root], f"{q.op} changes the dtype of {root.types[0]}")
        return None
    trailing = axes and axes[0] > 0 and axes == tuple(range(axes[0], len(shape)))
    if not axes or (axes != tuple(range(len(shape))) and not trailing):
        note("keep", "not fused: reduction axes", [q, root],
             f"{q.op} over axes {axes} of {root.types[0]}: only all or trailing axes fold into a kernel")  # fmt: skip
        return None
    return q


def _absorbed(program: Program, users: dict) -> dict:
    """node -> (producer, fused op, attrs) for each node whose op absorbs the node producing its
    first input (OpDef.absorbs: a pooling its convolution), when it is that node's only consumer."""
    out = {}
    for node in program.nodes:
        hook = REGISTRY[node.op].absorbs
        if hook is None or not node.inputs or not node.types[0].is_static:
            continue
        producer = node.inputs[0].node
        consumers = users[producer]
        if len(consumers) != 1 or consumers[0][0] is not node or len(producer.types) != 1:
            continue
        made = hook(producer, **node.attrs)
        if made is not None:
            out[node] = (producer, *made)
    return out


def fuse(program: Program):
    """Replace each elementwise cluster by a ``fused_elementwise`` node, or a ``fused_matmul`` node
    when a matmul's result feeds only the cluster (GEMM, then the epilogue in place); a reduction
    that alone consumes a cluster folds into it; an op that absorbs its producer (a pooling, the
    convolution before it) becomes the fused op it names."""
    rw = Rewriter(program, "fuse")
    users = program.consumers()
    absorbed = _absorbed(program, users)
    clusters = _clusters(program, users, rw.note)
    epilogues = {root: _epilogue_matmul(ms, users) for root, ms in clusters.items()}
    reductions = {r: None if epilogues[r] else _trailing_reduction(r, users, rw.note) for r in clusters}
    clusters = {root: ms for root, ms in clusters.items()
                if len(ms) > 1 or epilogues[root] is not None or reductions[root] is not None}  # fmt: skip
    emit_at = {reductions[root] or root: root for root in clusters}  # the node each fused node replaces

    def visit(rw: Rewriter, node):
        if node in absorbed:  # (the producer is copied, and dead once this node replaces it)
            producer, op, attrs = absorbed[node]
            rw.note("fuse", "producer absorbed", [producer, node], f"{producer.op} and {node.op} -> 1 kernel ({op})")
            return rw.append(op, rw.inputs_of(producer), attrs, node.types, node.name, node.source)
        root = emit_at.get(node)
        if root is None:
            return rw.copy(node)  # non-members, and members (dead once the fused node exists)
        members = clusters[root]
        mm = epilogues[root]
        q = reductions[root]
        externals: list = []
        if mm is not None:
            externals.append(mm.outputs[0])
        body = _body(members, externals)
        attrs = {"body": body}
        if mm is not None:
            inputs = (*rw.inputs_of(mm), *(rw.mapping.get(t, t) for t in externals[1:]))
            attrs.update(mm.attrs)  # the GEMM's transpose flags
            op = "fused_matmul"
            rw.note("fuse", "matmul epilogue", [mm, *members], f"{len(members)} ops applied in place after the GEMM")
        else:
            inputs = tuple(rw.mapping.get(t, t) for t in externals)
            op = "fused_elementwise"
            if q is not None:
                attrs["reduce"] = (REGISTRY[q.op].ufunc, q.attrs["axes"], q.attrs["keepdims"])
                rw.note("fuse", "elementwise cluster + reduction", [*members, q],
                        f"{len(members)} ops and a {q.op} -> 1 kernel")  # fmt: skip
            else:
                rw.note("fuse", "elementwise cluster", members, f"{len(members)} ops -> 1 kernel")
        last = q if q is not None else root
        return rw.append(op, inputs, attrs, last.types, last.name, last.source)

    return rw.run(visit)
