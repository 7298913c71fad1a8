"""Viz layout: positions for the boxes of a viz View, computed by graphc itself (no Graphviz).

A layered (Sugiyama-style) layout, top to bottom, in named steps: rank items by depth; draw a
placeholder, variable or constant again next to a far consumer instead of a long edge; put a
dummy point in every layer a long edge crosses; order each layer by barycenters; choose x by
least squares under spacing constraints; route edges through their dummy points. A fused group
is one tall item whose body's boxes are laid out in rows inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .viz import VCluster, View, VNode

CHAR_W, LINE_H, PAD_X, PAD_Y = 7.2, 15.0, 10.0, 6.0  # 12px monospace text
GAP_X, DUMMY_GAP, GAP_Y = 22.0, 8.0, 40.0
C_PAD, C_TITLE, C_GAP_Y = 10.0, 20.0, 22.0
MARGIN, TITLE_H = 20.0, 34.0
SOURCES = ("placeholder", "variable", "constant")
COPY_SPAN = 3  # a source more than this many layers above a consumer is drawn again next to it
WORK = 200_000  # about this many node visits for ordering and placement, however big the graph


@dataclass
class Box:
    x: float  # left
    y: float  # top
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@dataclass
class Layout:
    width: float
    height: float
    nodes: dict  # id -> VNode drawn: the view's nodes and copies of far sources
    boxes: dict  # node or cluster id -> Box (absolute)
    paths: list  # (points, label, dashed) per edge


def _size(vn: VNode) -> tuple[float, float]:
    return max(max(len(s) for s in vn.lines) * CHAR_W + 2 * PAD_X, 44.0), len(vn.lines) * LINE_H + 2 * PAD_Y


def _cluster_layout(v: View, c: VCluster, sources: dict) -> tuple[float, float, dict]:
    """Size of a cluster and its members' boxes relative to its top-left corner (rows by inner depth)."""
    members = set(c.members)
    depth: dict = {}
    for m in c.members:  # members are in body order, which is topological
        depth[m] = 1 + max((depth[p] for p in sources.get(m, ()) if p in members), default=-1)
    rows: dict = {}
    for m in c.members:
        rows.setdefault(depth[m], []).append(m)
    sizes = {m: _size(v.nodes[m]) for m in c.members}
    width = max([len(c.title) * CHAR_W] + [sum(sizes[m][0] for m in r) + GAP_X * (len(r) - 1) for r in rows.values()])
    width += 2 * C_PAD
    boxes, y = {}, C_TITLE + C_PAD
    for d in sorted(rows):
        row = rows[d]
        row_w = sum(sizes[m][0] for m in row) + GAP_X * (len(row) - 1)
        row_h = max(sizes[m][1] for m in row)
        x = (width - row_w) / 2
        for m in row:
            w, h = sizes[m]
            boxes[m] = Box(x, y + (row_h - h) / 2, w, h)
            x += w + GAP_X
        y += row_h + C_GAP_Y
    return width, y - C_GAP_Y + C_PAD, boxes


def _pav(targets: list[float], seps: list[float]) -> list[float]:
    """x minimizing sum (x_i - t_i)^2 subject to x_{i+1} - x_i >= seps[i] (pool adjacent violators)."""
    offsets = [0.0]
    for s in seps:
        offsets.append(offsets[-1] + s)
    blocks: list = []  # [sum of shifted targets, count]
    for t, o in zip(targets, offsets):
        blocks.append([t - o, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
    out = []
    for s, n in blocks:
        out.extend([s / n] * n)
    return [y + o for y, o in zip(out, offsets)]


class _Graph:
    """The layered graph being laid out: items (boxes and groups), their layers and edges."""

    def __init__(self, v: View):
        self.nodes = dict(v.nodes)
        self.item_of = {vid: (vn.cluster or vid) for vid, vn in v.nodes.items()}
        self.items = list(dict.fromkeys(self.item_of[vid] for vid in v.nodes))  # topological order
        self.rank = {it: float(i) for i, it in enumerate(self.items)}
        self.edges = list(v.edges)
        self.sizes: dict = {}
        self.inner: dict = {}
        sources: dict = {}
        for a, b, _ in v.edges:
            sources.setdefault(b, []).append(a)
        for it in self.items:
            if it in v.clusters:
                w, h, boxes = _cluster_layout(v, v.clusters[it], sources)
                self.sizes[it], self.inner[it] = (w, h), boxes
            else:
                self.sizes[it] = _size(v.nodes[it])
        self.layer: dict = {}

    def item_edges(self) -> list:
        return list(dict.fromkeys((self.item_of[a], self.item_of[b]) for a, b, _ in self.edges
                                  if self.item_of[a] != self.item_of[b]))  # fmt: skip

    def kind(self, item) -> str:
        return self.nodes[item].kind if item in self.nodes else "cluster"


def _rank(g: _Graph) -> None:
    """Layer = longest path from a source; variables and constants move down to just above their
    first consumer; placeholders stay on top, where a reader looks for the inputs, unless even
    their first consumer is far below."""
    preds: dict = {it: [] for it in g.items}
    succs: dict = {it: [] for it in g.items}
    for a, b in g.item_edges():
        preds[b].append(a)
        succs[a].append(b)
    for it in g.items:
        g.layer[it] = 1 + max((g.layer[p] for p in preds[it]), default=-1)
    for it in g.items:
        first = min((g.layer[s] for s in succs[it]), default=0)
        if g.kind(it) in ("variable", "constant") or (g.kind(it) == "placeholder" and first > COPY_SPAN):
            g.layer[it] = max(first - 1, g.layer[it])


def _copy_far_sources(g: _Graph) -> None:
    """An edge from a source to a far consumer becomes an edge from a copy of the source drawn
    just above that consumer (as TensorBoard does): fewer long edges crossing the picture."""
    edges = []
    for a, b, label in g.edges:
        ib = g.item_of[b]
        span = g.layer[ib] - g.layer[a] if a in g.layer else 0
        if g.kind(a) not in SOURCES or span <= COPY_SPAN:
            edges.append((a, b, label))
            continue
        copy = f"{a}@{g.layer[ib] - 1}"
        if copy not in g.nodes:
            original = g.nodes[a]
            g.nodes[copy] = replace(original, id=copy, tooltip=original.tooltip + "\n(drawn again near this use)")
            g.item_of[copy] = copy
            g.items.append(copy)
            g.rank[copy] = g.rank[ib] - 0.5
            g.sizes[copy] = g.sizes[a]
            g.layer[copy] = g.layer[ib] - 1
        edges.append((copy, b, label))
    g.edges = edges


def _add_dummies(g: _Graph) -> tuple[dict, dict, dict]:
    """Dummy points in every layer a long edge crosses, so that every edge spans one layer.

    Returns (chains: item edge -> its dummies, up: node -> neighbours above, down: ... below).
    """
    chains: dict = {}
    up: dict = {it: [] for it in g.items}
    down: dict = {it: [] for it in g.items}
    for a, b in g.item_edges():
        chain, prev = [], a
        for k in range(g.layer[a] + 1, g.layer[b]):
            d = ("dummy", a, b, k)
            g.layer[d], up[d], down[d], g.sizes[d] = k, [], [], (0.0, 0.0)
            g.rank[d] = g.rank[a] + 0.25
            chain.append(d)
            down[prev].append(d)
            up[d].append(prev)
            prev = d
        down[prev].append(b)
        up[b].append(prev)
        chains[(a, b)] = chain
    return chains, up, down


def _order(layers: list, up: dict, down: dict, sweeps: int) -> None:
    """Reorder each layer by the mean position of its neighbours above (down sweeps) or below."""
    pos = {n: i for row in layers for i, n in enumerate(row)}
    for sweep in range(sweeps):
        downward = sweep % 2 == 0
        nbrs = up if downward else down
        for i in range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1):
            row = layers[i]
            key = {}
            for n in row:
                ns = nbrs[n]
                key[n] = (sum(pos[m] for m in ns) / len(ns) if ns else pos[n], pos[n])
            row.sort(key=key.__getitem__)
            for j, n in enumerate(row):
                pos[n] = j


def _place(layers: list, up: dict, down: dict, sizes: dict, sweeps: int) -> dict:
    """x of every node: pulled towards its neighbours, keeping each layer's order and spacing."""
    seps = [[(sizes[a][0] + sizes[b][0]) / 2 + (DUMMY_GAP if isinstance(a, tuple) or isinstance(b, tuple) else GAP_X)
             for a, b in zip(row, row[1:])] for row in layers]  # fmt: skip
    x: dict = {}
    for row, s in zip(layers, seps):
        acc = 0.0
        for n, gap in zip(row, [0.0, *s]):
            acc += gap
            x[n] = acc
    for sweep in range(sweeps):
        downward = sweep % 2 == 0
        last = sweep >= sweeps - 2  # the last two sweeps balance both sides
        for i in range(len(layers)) if downward else range(len(layers) - 1, -1, -1):
            targets = []
            for n in layers[i]:
                ns = [] if last else (up[n] if downward else down[n])
                ns = ns or up[n] + down[n]
                targets.append(sum(x[m] for m in ns) / len(ns) if ns else x[n])
            for n, value in zip(layers[i], _pav(targets, seps[i])):
                x[n] = value
    return x


def layout(v: View) -> Layout:
    """Positions of every box and the route of every edge (top to bottom)."""
    g = _Graph(v)
    _rank(g)
    _copy_far_sources(g)
    chains, up, down = _add_dummies(g)
    layers: list = [[] for _ in range(1 + max(g.layer.values(), default=0))]
    for node in sorted(g.layer, key=g.rank.__getitem__):
        layers[g.layer[node]].append(node)
    effort = max(2, min(12, WORK // max(len(g.layer), 1)))  # big graphs get fewer sweeps
    _order(layers, up, down, min(effort, 8))
    x = _place(layers, up, down, g.sizes, effort + effort % 2)

    left = min((x[n] - g.sizes[n][0] / 2 for n in x), default=0.0) - MARGIN
    heights = [max((g.sizes[n][1] for n in row), default=0.0) for row in layers]
    tops, y = [], TITLE_H + MARGIN
    for h in heights:
        tops.append(y)
        y += h + GAP_Y
    boxes: dict = {}
    for it in g.items:
        w, h = g.sizes[it]
        box = Box(x[it] - w / 2 - left, tops[g.layer[it]] + (heights[g.layer[it]] - h) / 2, w, h)
        boxes[it] = box
        for m, b in g.inner.get(it, {}).items():
            boxes[m] = Box(box.x + b.x, box.y + b.y, b.w, b.h)
    dummy_points = {d: [(x[d] - left, tops[g.layer[d]]), (x[d] - left, tops[g.layer[d]] + heights[g.layer[d]])]
                    for chain in chains.values() for d in chain}  # fmt: skip
    paths = _route(g, chains, dummy_points, boxes)
    width = max((bx.x + bx.w for bx in boxes.values()), default=0.0) + MARGIN
    width = max(width, len(v.title) * 8.5 + 2 * MARGIN)
    return Layout(width, y - GAP_Y + MARGIN, g.nodes, boxes, paths)


def _route(g: _Graph, chains: dict, dummy_points: dict, boxes: dict) -> list:
    """Each edge's points: out of the bottom of its source, through its dummies, into the top of
    its target; edges sharing a box side leave or enter it side by side, ordered by direction."""
    routes, out_ports, in_ports = [], {}, {}
    for a, b, label in g.edges:
        ia, ib = g.item_of[a], g.item_of[b]
        mids = [p for d in chains.get((ia, ib), ()) for p in dummy_points[d]] if ia != ib else []
        group = boxes.get(g.nodes[b].cluster) if ia != ib else None
        if group is not None and boxes[b].y > group.y + C_TITLE + C_PAD + 1:
            # into an inner box below the group's first row: down the group's side gutter, so the
            # edge does not cross the boxes above its target
            gx = group.x + C_PAD / 2 if boxes[b].cx < group.cx else group.x + group.w - C_PAD / 2
            mids += [(gx, group.y), (gx, boxes[b].y - 14)]
        r = len(routes)
        routes.append((a, b, label, mids))
        out_ports.setdefault(a, []).append((mids[0][0] if mids else boxes[b].cx, r))
        in_ports.setdefault(b, []).append((mids[-1][0] if mids else boxes[a].cx, r))

    def spread(ports: dict) -> dict:
        at = {}
        for vid, lst in ports.items():
            lst.sort()
            step = min(12.0, boxes[vid].w * 0.7 / len(lst))
            for k, (_, r) in enumerate(lst):
                at[r] = boxes[vid].cx + (k - (len(lst) - 1) / 2) * step
        return at

    start_x, end_x = spread(out_ports), spread(in_ports)
    return [([(start_x[r], boxes[a].y + boxes[a].h), *mids, (end_x[r], boxes[b].y)], label,
             g.nodes[b].kind == "update") for r, (a, b, label, mids) in enumerate(routes)]  # fmt: skip
