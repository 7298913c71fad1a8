"""Fusion: clusters of elementwise ops become one fused node; a matmul absorbs its epilogue.

Decisions use only an op's fusion kind and the graph's shape, never op names. A producer joins
its consumer's cluster when it is elementwise, has the cluster's output shape, and every one of
its consumers is already in the cluster; ``explain`` reports each candidate that was kept out and
why. Runs on specialized (static-shape) programs.
"""

from __future__ import annotations

import heapq

from ..ops.registry import ELEMENTWISE, MATMUL, REGISTRY
from .program import Program
from .rewrite import Rewriter


def _kind(node) -> str:
    return REGISTRY[node.op].kind


def _clusters(program: Program, users: dict, note) -> dict:
    """root node -> member nodes (topological order) for every cluster (single ops included)."""
    taken: set = set()
    clusters = {}
    for root in reversed(program.nodes):
        if _kind(root) != ELEMENTWISE or root in taken:
            continue
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


def _epilogue_matmul(members, program: Program, users: dict, note):
    """A matmul feeding the cluster whose only consumer is in it, with the cluster's shape and dtype.

    Not when the cluster computes a variable's update and reads that variable: kept elementwise,
    the update can then be written in place into the variable (the GEMM would overwrite it first).
    """
    inside = set(members)
    root = members[-1]
    updated = {t.node for _, t in program.updates}
    if root in updated:
        var = next(name for name, t in program.updates if t.node is root)
        if any(t.node.op == "variable" and t.node.name == var for n in members for t in n.inputs):
            note("keep", "not fused: in-place update", [root], f"the update of '{var}' stays elementwise "
                 f"so it can be written in place")  # fmt: skip
            return None
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
    for n in members:
        for t in n.inputs:
            if t not in inside and t not in externals:
                externals.append(t)
    pos = {t: i for i, t in enumerate(externals)}
    body = []
    for n in members:
        body.append((n.op, tuple(pos[t] for t in n.inputs), tuple(sorted(n.attrs.items())), n.types[0].dtype.str))
        pos[n.outputs[0]] = len(pos)
    return tuple(body)


def fuse(program: Program):
    """Replace each elementwise cluster by a ``fused_elementwise`` node, or a ``fused_matmul`` node
    when a matmul's result feeds only the cluster (GEMM, then the epilogue in place)."""
    rw = Rewriter(program, "fuse")
    users = program.consumers()
    clusters = _clusters(program, users, rw.note)
    epilogues = {root: _epilogue_matmul(ms, program, users, rw.note) for root, ms in clusters.items()}
    clusters = {root: ms for root, ms in clusters.items() if len(ms) > 1 or epilogues[root] is not None}
    member_of = {n: root for root, ms in clusters.items() for n in ms}

    def visit(rw: Rewriter, node):
        root = member_of.get(node)
        if root is not node:
            return rw.copy(node)  # non-members, and members (dead once the root is fused)
        members = clusters[root]
        mm = epilogues[root]
        externals: list = []
        if mm is not None:
            externals.append(mm.outputs[0])
        body = _body(members, externals)
        if mm is not None:
            inputs = (*rw.inputs_of(mm), *(rw.mapping.get(t, t) for t in externals[1:]))
            op = "fused_matmul"
            rw.note("fuse", "matmul epilogue", [mm, *members], f"{len(members)} ops applied in place after the GEMM")
        else:
            inputs = tuple(rw.mapping.get(t, t) for t in externals)
            op = "fused_elementwise"
            rw.note("fuse", "elementwise cluster", members, f"{len(members)} ops -> 1 kernel")
        return rw.append(op, inputs, {"body": body}, root.types, root.name, root.source)

    return rw.run(visit)
