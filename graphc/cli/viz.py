"""Viz: a graph or compiled function as a picture: Graphviz DOT, or SVG/HTML drawn by graphc itself.

``view`` turns program nodes into boxes and edges (a fused node becomes a group of its body's
ops); ``to_dot`` writes DOT for Graphviz; ``to_svg`` draws the view laid out by layout.py, with
no Graphviz needed; ``to_html`` wraps the SVG in a self-contained page with a legend.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from ..ir.subgraph import subgraphs
from ..ops.fused import body_text
from .layout import C_PAD, LINE_H, MARGIN, PAD_Y, Box, layout

# kind -> (fill, stroke, text colour, corner radius, dashed): shared by SVG, HTML legend and DOT
STYLES = {
    "placeholder": ("#dbeafe", "#2563eb", "#111827", 14, False),
    "variable": ("#dcfce7", "#16a34a", "#111827", 4, False),
    "constant": ("#f3f4f6", "#9ca3af", "#374151", 4, False),
    "op": ("#ffffff", "#374151", "#111827", 4, False),
    "inner": ("#fffbeb", "#ea580c", "#111827", 4, False),
    "output": ("#1f2937", "#1f2937", "#ffffff", 14, False),
    "update": ("#f3e8ff", "#9333ea", "#111827", 14, True),
    "cluster": ("#fff1e6", "#ea580c", "#9a3412", 8, True),
}
LEGEND = [("placeholder", "input (placeholder)"), ("variable", "variable"), ("constant", "constant"),
          ("op", "op"), ("cluster", "fused kernel (its body's ops inside)"), ("output", "output"),
          ("update", "variable update")]  # fmt: skip
FUSED_OPS = ("fused_elementwise", "fused_matmul")


@dataclass
class VNode:
    id: str
    kind: str  # a key of STYLES (never "cluster")
    lines: list[str]  # label lines; the first is drawn bold
    tooltip: str
    cluster: str | None = None
    group: str | None = None  # the innermost cluster, when that is a body nested inside ``cluster``


@dataclass
class VCluster:
    id: str
    title: str
    tooltip: str
    members: list[str] = field(default_factory=list)
    parent: str | None = None  # the enclosing cluster (a control-flow body inside another body)


@dataclass
class View:
    title: str
    nodes: dict[str, VNode] = field(default_factory=dict)
    clusters: dict[str, VCluster] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from id, to id, label)


# -- the view: what is drawn -------------------------------------------------------------------
def _short_value(v: np.ndarray) -> str:
    if v.size != 1:
        return f"<{v.size} values>"
    x = v.reshape(()).item()
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _attrs_text(attrs) -> str:
    items = attrs.items() if isinstance(attrs, dict) else attrs
    parts = []
    for k, v in items:
        if k in ("body", "value"):
            continue
        text = f"<array {list(v.shape)}>" if isinstance(v, np.ndarray) else str(v)
        parts.append(f"{k}={text if len(text) <= 40 else text[:37] + '...'}")
    return ", ".join(parts)


def _tooltip(node) -> str:
    lines = [f"{node.op} '{node.name}' -> {', '.join(str(t) for t in node.types)}"]
    if node.inputs:
        lines.append("inputs: " + ", ".join(t.name for t in node.inputs))
    attrs = _attrs_text(node.attrs)
    if attrs:
        lines.append("attrs: " + attrs)
    if "body" in node.attrs:
        names = [t.name for t in node.inputs]
        if node.op == "fused_matmul":
            names = [f"({names[0]} @ {names[1]})", *names[2:]]
        lines.append("= " + body_text(node.attrs["body"], len(names), names))
    if node.source is not None:
        lines.append(f"defined at {node.source}")
    return "\n".join(lines)


def view(nodes, outputs=(), updates=(), title: str = "graph") -> View:
    """The boxes and edges for ``nodes`` (topologically ordered), with output and update markers.

    outputs: (name, tensor) pairs; updates: (variable name, value tensor) pairs.
    """
    v = View(title)
    port: dict = {}  # tensor -> id of the box that produces it

    def add(vn: VNode):
        v.nodes[vn.id] = vn
        if vn.cluster is not None:
            v.clusters[vn.cluster].members.append(vn.id)

    def edge(t, dst: str):
        label = f":{t.index}" if len(t.node.types) > 1 else ""
        v.edges.append((port[t], dst, label))

    for node in nodes:
        types = ", ".join(str(t) for t in node.types)
        if subgraphs(node):  # control flow: each body drawn as a cluster feeding the node's box
            _control_flow(v, node, port, None)
            continue
        if node.op in FUSED_OPS and "body" in node.attrs:
            v.clusters[node.name] = VCluster(node.name, f"{node.op} '{node.name}' {types}", _tooltip(node))
            body = node.attrs["body"]
            args: list = list(node.inputs)  # body arg i: a tensor (an input) or the id of an inner box
            if node.op == "fused_matmul":  # body arg 0 is the GEMM's result: drawn as an inner matmul
                mm = f"{node.name}/matmul"
                flags = _attrs_text({k: v for k, v in node.attrs.items() if k != "reduce"})  # transpose_a/b
                add(VNode(mm, "inner", ["matmul", *([flags] if flags else [])],
                          f"matmul of {node.inputs[0].name} and {node.inputs[1].name}", node.name))  # fmt: skip
                edge(node.inputs[0], mm)
                edge(node.inputs[1], mm)
                args = [mm, *node.inputs[2:]]
            for j, (op, arg_ix, attrs, dtype) in enumerate(body):
                vid = f"{node.name}/{j}"
                extra = _attrs_text(attrs)
                lines = [op, *([extra] if extra else []), np.dtype(dtype).name]
                add(VNode(vid, "inner", lines, f"{op} in fused node '{node.name}'", node.name))
                for a in arg_ix:
                    src = args[a]
                    if isinstance(src, str):
                        v.edges.append((src, vid, ""))
                    else:
                        edge(src, vid)
                args.append(vid)
            port[node.outputs[0]] = args[-1]
            continue
        if node.op == "placeholder":
            vn = VNode(node.name, "placeholder", [node.name, "placeholder", types], _tooltip(node))
        elif node.op == "variable":
            frozen = "" if node.attrs.get("trainable", True) else " (frozen)"
            vn = VNode(node.name, "variable", [node.name, "variable" + frozen, types], _tooltip(node))
        elif node.op == "constant":
            vn = VNode(node.name, "constant", [_short_value(node.attrs["value"]), f"constant {types}"], _tooltip(node))
        else:
            lines = [node.op, *([node.name] if node.name != node.op else []), types]
            vn = VNode(node.name, "op", lines, _tooltip(node))
        add(vn)
        for t in node.inputs:
            edge(t, vn.id)
        for t in node.outputs:
            port[t] = vn.id
    for i, (name, t) in enumerate(outputs):
        vid = f"output:{i}"
        add(VNode(vid, "output", [f"output {name}", str(t.type)], f"output '{name}' = {t.name} {t.type}"))
        edge(t, vid)
    for name, t in updates:
        vid = f"update:{name}"
        add(VNode(vid, "update", [f"update {name}"], f"variable '{name}' := {t.name} after each call"))
        edge(t, vid)
    return v


def _control_flow(v: View, node, port: dict, top: str | None, group: str | None = None) -> None:
    """A cond/while_loop/scan: one cluster per body (its parameters fed by the node's inputs, its
    ops, nested control flow as clusters inside), then the node's own box, which the bodies'
    outputs feed and consumers read. Nested bodies are drawn inside the outermost body's box
    (``top``, what the SVG layout groups by); DOT nests their clusters (``group``)."""

    def add(vn: VNode, cid: str | None):
        vn.cluster, vn.group = top or cid, cid
        v.nodes[vn.id] = vn
        if cid is not None:
            v.clusters[cid].members.append(vn.id)
            if top is not None and top != cid:
                v.clusters[top].members.append(vn.id)

    def edge(src: str, dst: str, t):
        v.edges.append((src, dst, f":{t.index}" if len(t.node.types) > 1 else ""))

    types = ", ".join(str(t) for t in node.types)
    box = f"{group}/{node.name}" if group else node.name
    bodies = subgraphs(node)
    for k, sub in bodies:
        cid = f"{box}/{k}"
        what = k.replace("_", " ")
        v.clusters[cid] = VCluster(cid, f"{node.op} '{node.name}' {what}",
                                   f"the {what} of {node.op} '{node.name}', traced once", parent=group)  # fmt: skip
        inner: dict = {}  # body tensor -> its box id
        skip = len(node.inputs) - len(sub.params)  # inputs the node reads itself (a cond's predicate)
        for i, p in enumerate(sub.params):
            pid = f"{cid}/{p.node.name}"
            add(VNode(pid, "placeholder", [p.node.name, f"param {p.type}"], f"parameter {i} of the {what}"), cid)
            if node.inputs[skip + i] in port:
                edge(port[node.inputs[skip + i]], pid, node.inputs[skip + i])
            inner[p] = pid
        for n in sub.nodes:
            if n.op == "placeholder":
                continue
            if subgraphs(n):
                nested = dict(port)
                nested.update(inner)
                _control_flow(v, n, nested, top or cid, cid)
                inner.update((t, nested[t]) for t in n.outputs)
                continue
            nid = f"{cid}/{n.name}"
            if n.op == "constant":
                lines = [_short_value(n.attrs["value"]), f"constant {n.types[0]}"]
                add(VNode(nid, "constant", lines, _tooltip(n)), cid)
            else:
                add(VNode(nid, "inner", [n.op, ", ".join(str(t) for t in n.types)], _tooltip(n)), cid)
            for t in n.inputs:
                edge(inner[t], nid, t)
            inner.update((t, nid) for t in n.outputs)
        for j, t in enumerate(sub.outputs):
            v.edges.append((inner[t], box, f"{what} {j}"))
    add(VNode(box, "op", [node.op, node.name, types], _tooltip(node)), group)
    for t in node.inputs[: len(node.inputs) - len(bodies[0][1].params)]:
        if t in port:
            edge(port[t], box, t)
    for t in node.outputs:
        port[t] = box


# -- DOT ---------------------------------------------------------------------------------------
def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_node(vn: VNode, indent: str) -> str:
    fill, stroke, font, radius, dashed = STYLES[vn.kind]
    style = ["filled"] + (["rounded"] if radius else []) + (["dashed"] if dashed else [])
    shape = "box"
    return (f"{indent}{_q(vn.id)} [label={_q(chr(10).join(vn.lines))}, shape={shape}, style={_q(','.join(style))}, "
            f"fillcolor={_q(fill)}, color={_q(stroke)}, fontcolor={_q(font)}, tooltip={_q(vn.tooltip)}];")  # fmt: skip


def to_dot(v: View) -> str:
    """Graphviz DOT text (render with ``dot -Tsvg graph.dot -o graph.svg``)."""
    out = [f"digraph {_q(v.title)} {{",
           f"  graph [rankdir=TB, label={_q(v.title)}, labelloc=t, fontname=\"Helvetica\", nodesep=0.3, ranksep=0.4];",
           "  node [fontname=\"Courier\", fontsize=10, margin=\"0.15,0.05\"];",
           "  edge [arrowsize=0.6, color=\"#6b7280\", fontsize=9, fontname=\"Courier\"];"]  # fmt: skip
    for vn in v.nodes.values():
        if vn.cluster is None:
            out.append(_dot_node(vn, "  "))

    def cluster(c: VCluster, indent: str) -> None:  # control-flow bodies nest inside their parent
        fill, stroke, font, _, _ = STYLES["cluster"]
        out.append(f"{indent}subgraph {_q('cluster_' + c.id)} {{")
        out.append(f"{indent}  graph [label={_q(c.title)}, style=\"filled,rounded,dashed\", fillcolor={_q(fill)}, "
                   f"color={_q(stroke)}, fontcolor={_q(font)}, fontname=\"Courier\", fontsize=10, "
                   f"tooltip={_q(c.tooltip)}];")  # fmt: skip
        out.extend(_dot_node(v.nodes[m], indent + "  ") for m in c.members if (v.nodes[m].group or c.id) == c.id)
        for child in v.clusters.values():
            if child.parent == c.id:
                cluster(child, indent + "  ")
        out.append(f"{indent}}}")

    for c in v.clusters.values():
        if c.parent is None:
            cluster(c, "  ")
    for a, b, label in v.edges:
        dashed = ", style=dashed" if v.nodes[b].kind == "update" else ""
        out.append(f"  {_q(a)} -> {_q(b)}" + (f" [label={_q(label)}{dashed}]" if label or dashed else "") + ";")
    out.append("}")
    return "\n".join(out) + "\n"


# -- SVG and HTML ------------------------------------------------------------------------------
def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _path_d(pts) -> str:
    d = f"M{_f(pts[0][0])},{_f(pts[0][1])}"
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if abs(x0 - x1) < 0.05:
            d += f" L{_f(x1)},{_f(y1)}"
        else:
            ym = (y0 + y1) / 2
            d += f" C{_f(x0)},{_f(ym)} {_f(x1)},{_f(ym)} {_f(x1)},{_f(y1)}"
    return d


def _rect(box: Box, kind: str, extra: str = "") -> str:
    fill, stroke, _, radius, dashed = STYLES[kind]
    dash = ' stroke-dasharray="5,3"' if dashed else ""
    return (f'<rect x="{_f(box.x)}" y="{_f(box.y)}" width="{_f(box.w)}" height="{_f(box.h)}" rx="{radius}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.2"{dash}{extra}/>')  # fmt: skip


def _around(boxes: list) -> Box:
    """The box around a nested body's boxes, with room for its title."""
    x0, y0 = min(b.x for b in boxes) - C_PAD / 2, min(b.y for b in boxes) - C_PAD / 2 - 16
    x1, y1 = max(b.x + b.w for b in boxes) + C_PAD / 2, max(b.y + b.h for b in boxes) + C_PAD / 2
    return Box(x0, y0, x1 - x0, y1 - y0)


def to_svg(v: View) -> str:
    """A standalone SVG picture of the view (hover a box for its details)."""
    lay = layout(v)
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(lay.width)}" height="{_f(lay.height)}" '
           f'viewBox="0 0 {_f(lay.width)} {_f(lay.height)}" font-family="Menlo, Consolas, \'DejaVu Sans Mono\', '
           f'monospace" font-size="12">',
           f"<title>{e(v.title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>',
           f'<rect x="0" y="0" width="{_f(lay.width)}" height="{_f(lay.height)}" fill="#ffffff"/>',
           f'<text x="{_f(MARGIN)}" y="{_f(MARGIN + 6)}" font-size="14" font-weight="bold" '
           f'font-family="Helvetica, Arial, sans-serif" fill="#111827">{e(v.title)}</text>']  # fmt: skip
    out.append('<g class="clusters">')
    for c in v.clusters.values():
        box = lay.boxes.get(c.id) or _around([lay.boxes[m] for m in c.members])  # (a nested body)
        out.append(f'<g class="cluster" id="{e("cluster-" + c.id)}"><title>{e(c.tooltip)}</title>'
                   f'{_rect(box, "cluster")}'
                   f'<text x="{_f(box.x + C_PAD)}" y="{_f(box.y + 15)}" fill="{STYLES["cluster"][2]}">{e(c.title)}'
                   f"</text></g>")  # fmt: skip
    out.append("</g>")
    out.append('<g class="edges" fill="none" stroke="#6b7280" stroke-width="1.1">')
    for pts, label, dashed in lay.paths:
        dash = ' stroke-dasharray="4,3"' if dashed else ""
        out.append(f'<path d="{_path_d(pts)}" marker-end="url(#arrow)"{dash}/>')
        if label:
            out.append(f'<text x="{_f(pts[0][0] + 3)}" y="{_f(pts[0][1] + 11)}" font-size="10" fill="#6b7280" '
                       f'stroke="none">{e(label)}</text>')  # fmt: skip
    out.append("</g>")
    out.append('<g class="nodes" text-anchor="middle">')
    for vid, vn in lay.nodes.items():
        box = lay.boxes[vid]
        color = STYLES[vn.kind][2]
        texts = []
        for k, line in enumerate(vn.lines):
            weight = ' font-weight="bold"' if k == 0 else ""
            y = box.y + PAD_Y + LINE_H * k + 11.5
            texts.append(f'<text x="{_f(box.cx)}" y="{_f(y)}" fill="{color}"{weight}>{e(line)}</text>')
        out.append(f'<g class="node {vn.kind}" id="{e("node-" + vid)}"><title>{e(vn.tooltip)}</title>'
                   f"{_rect(box, vn.kind)}{''.join(texts)}</g>")  # fmt: skip
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def to_html(v: View, subtitle: str = "", facts: list | None = None) -> str:
    """A self-contained HTML page: title, facts, a legend and the SVG (no scripts, no external files)."""
    e = html.escape
    legend = []
    for kind, text in LEGEND:
        fill, stroke, _, radius, dashed = STYLES[kind]
        dash = ' stroke-dasharray="4,2"' if dashed else ""
        legend.append(f'<span class="item"><svg width="28" height="16" aria-hidden="true"><rect x="1" y="1" '
                      f'width="26" height="14" rx="{min(radius, 7)}" fill="{fill}" stroke="{stroke}"{dash}/></svg>'
                      f"{e(text)}</span>")  # fmt: skip
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(val)}</td></tr>" for k, val in facts or [])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{e(v.title)} — graphc</title>
<style>
body {{ font-family: system-ui, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5rem; color: #111827; }}
h1 {{ font-size: 1.4rem; margin: 0 0 .2rem; }}
.sub {{ color: #4b5563; margin: 0 0 1rem; }}
table {{ border-collapse: collapse; margin-bottom: 1rem; font-size: .9rem; }}
th {{ text-align: left; padding: .15rem 1rem .15rem 0; color: #4b5563; font-weight: 600; }}
td {{ font-family: Menlo, Consolas, monospace; }}
.legend {{ display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; margin-bottom: 1rem; font-size: .9rem; }}
.legend .item {{ display: inline-flex; align-items: center; gap: .35rem; }}
.graph {{ overflow: auto; border: 1px solid #e5e7eb; border-radius: 6px; max-height: 85vh; }}
.hint {{ color: #6b7280; font-size: .85rem; }}
</style>
</head>
<body>
<h1>{e(v.title)}</h1>
<p class="sub">{e(subtitle)}</p>
<table>{rows}</table>
<div class="legend">{"".join(legend)}</div>
<div class="graph">
{to_svg(v)}</div>
<p class="hint">Hover over a box for its name, type, attributes and the source line that defined it.</p>
</body>
</html>
"""
