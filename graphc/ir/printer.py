"""Printer: a graph as readable text, one node per line (``%name: f32[?,10] = op(%a, %b) attrs``).

Control-flow bodies print indented under their node, as ``attr(%params) { nodes; return %outs }``.
"""

from __future__ import annotations

import numpy as np

from .subgraph import Subgraph


def _fmt_attr(v) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 4:
            return np.array2string(v, separator=",").replace("\n", "")
        return f"<{v.dtype}{list(v.shape)}>"
    if isinstance(v, np.dtype):
        return str(v)
    if isinstance(v, Subgraph):
        return "{...}"
    return repr(v)


def format_node(node) -> str:
    outs = ", ".join(f"%{t.name}: {t.type}" for t in node.outputs)
    args = ", ".join(f"%{t.name}" for t in node.inputs)
    items = sorted(node.attrs.items(), key=lambda kv: (kv[0] != "value", kv[0]))  # a constant's value first
    attrs = "".join(f" {k}={_fmt_attr(v)}" for k, v in items)
    return f"{outs} = {node.op}({args}){attrs}"


def _lines(nodes, indent: str) -> list[str]:
    lines = []
    for n in nodes:
        lines.append(indent + format_node(n))
        for k, sub in sorted((k, v) for k, v in n.attrs.items() if isinstance(v, Subgraph)):
            params = ", ".join(f"%{p.name}: {p.type}" for p in sub.params)
            lines.append(f"{indent}  {k}({params}) {{")
            lines += _lines([m for m in sub.nodes if m.op != "placeholder"], indent + "    ")
            lines.append(f"{indent}    return {', '.join('%' + t.name for t in sub.outputs)}")
            lines.append(f"{indent}  }}")
    return lines


def format_graph(graph, nodes=None) -> str:
    """All nodes of ``graph`` (or the given subset, in graph order), one per line; bodies nested."""
    nodes = graph.nodes if nodes is None else nodes
    return "\n".join(_lines(nodes, ""))
