"""Printer: a graph as readable text, one node per line (``%name: f32[?,10] = op(%a, %b) attrs``)."""

from __future__ import annotations

import numpy as np


def _fmt_attr(v) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 4:
            return np.array2string(v, separator=",").replace("\n", "")
        return f"<{v.dtype}{list(v.shape)}>"
    if isinstance(v, np.dtype):
        return str(v)
    return repr(v)


def format_node(node) -> str:
    outs = ", ".join(f"%{t.name}: {t.type}" for t in node.outputs)
    args = ", ".join(f"%{t.name}" for t in node.inputs)
    items = sorted(node.attrs.items(), key=lambda kv: (kv[0] != "value", kv[0]))  # a constant's value first
    attrs = "".join(f" {k}={_fmt_attr(v)}" for k, v in items)
    return f"{outs} = {node.op}({args}){attrs}"


def format_graph(graph, nodes=None) -> str:
    """All nodes of ``graph`` (or the given subset, in graph order), one per line."""
    nodes = graph.nodes if nodes is None else nodes
    return "\n".join(format_node(n) for n in nodes)
