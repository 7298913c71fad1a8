"""``graphc inspect`` and ``graphc diff``: what a model file holds, and how two files differ.

Both work on opened models (every loader check passed), so what they show is what ``gc.load``
would run. Diffs match nodes by name (names are stable across saves) and compare op, inputs,
attributes and output types; variables and constant values by max abs and relative difference.
"""

from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np

from ..ir.types import fmt_shape
from ..runtime import Function
from ..serialize.format import tensor_ref
from .common import Model, fmt_bytes, output_names


# -- inspect -----------------------------------------------------------------------------------
def _t(t) -> dict:
    return {"shape": list(t.shape), "dtype": t.dtype.name}


def summary(model: Model) -> dict:
    """Everything ``graphc inspect`` shows, as a JSON-ready dict."""
    meta = model.metadata
    d = {
        "file": model.path,
        "kind": model.kind,
        "format_version": model.doc["version"],
        "graphc_version": meta.get("graphc_version"),
        "opt_level": meta.get("opt_level"),
        "passes": meta.get("passes"),
        "graph": model.doc.get("graph", {}).get("name"),
    }
    fn = model.obj if isinstance(model.obj, Function) else None
    if fn is not None:
        declared = [t.node.name for t in fn.inputs]
        d["inputs"] = [{"name": n, **_t(t), "positional": n in declared} for n, t in fn._placeholders]
        d["output_structure"] = fn.structure.kind
        d["outputs"] = [{"name": name, "tensor": tensor_ref(t), **_t(t.type)}
                        for name, t in zip(output_names(fn), fn.program.outputs)]  # fmt: skip
        d["updates"] = [{"variable": name, "value": tensor_ref(t), **_t(t.type)} for name, t in fn.program.updates]
    elif model.kind == "graph":
        d["inputs"] = [{"name": n.name, **_t(n.types[0])} for n in model.nodes if n.op == "placeholder"]
    nodes = model.nodes
    d["nodes"] = len(nodes)
    d["ops"] = dict(sorted(Counter(n.op for n in nodes).items(), key=lambda kv: (-kv[1], kv[0])))
    trainable = {n.name: n.attrs.get("trainable", True) for n in nodes if n.op == "variable"}
    variables = [{"name": name, "shape": list(v.shape), "dtype": v.dtype.name, "size": int(v.size),
                  "nbytes": int(v.nbytes), "trainable": trainable.get(name, True)}
                 for name, v in model.variables.items()]  # fmt: skip
    d["variables"] = variables
    d["parameters"] = sum(v["size"] for v in variables)
    d["parameter_bytes"] = sum(v["nbytes"] for v in variables)
    d["trainable_parameters"] = sum(v["size"] for v in variables if v["trainable"])
    consts = [n.attrs["value"] for n in nodes if n.op == "constant"]
    d["constants"] = {"count": len(consts), "bytes": int(sum(c.nbytes for c in consts))}
    sidecar = model.doc.get("sidecar")
    d["storage"] = {"json_bytes": os.path.getsize(model.path),
                    "sidecar": {"file": sidecar["file"], "nbytes": sidecar["nbytes"]} if sidecar else None}  # fmt: skip
    return d


def format_summary(d: dict) -> str:
    what = (
        f"graph '{d['graph']}'"
        if d["kind"] == "graph"
        else d["kind"] + (f" of graph '{d['graph']}'" if d["graph"] else "")
    )
    names = [e["name"] for key in ("inputs", "outputs", "variables") for e in d.get(key, ())]
    w = max([16, *(len(n) for n in names), *(len(u["variable"]) for u in d.get("updates", ()))])  # name column
    shapes = [fmt_shape(tuple(v["shape"])) for v in d["variables"]]
    ws = max([16, *(len(x) for x in shapes)])
    out = [f"{d['file']}: {what}"
           + f" (format version {d['format_version']}, saved by graphc {d['graphc_version'] or '?'})"]  # fmt: skip
    if "inputs" in d:
        out.append("inputs:")
        for i in d["inputs"]:
            pos = "  (positional)" if i.get("positional") else ""
            out.append(f"  {i['name']:{w}s} {i['dtype']:8s} {fmt_shape(tuple(i['shape']))}{pos}")
        if not d["inputs"]:
            out.append("  (none)")
    if "outputs" in d:
        out.append(f"outputs ({d['output_structure']}):")
        for o in d["outputs"]:
            tensor = f"  = {o['tensor']}" if o["tensor"] != o["name"] else ""
            out.append(f"  {o['name']:{w}s} {o['dtype']:8s} {fmt_shape(tuple(o['shape']))}{tensor}")
        if not d["outputs"]:
            out.append("  (none)")
        out.append("updates:" if d["updates"] else "updates: none")
        for u in d["updates"]:
            out.append(f"  {u['variable']:{w}s} <- {u['value']}  {u['dtype']} {fmt_shape(tuple(u['shape']))}")
    n_vars = len(d["variables"])
    params = f"{d['parameters']:,} parameters, {fmt_bytes(d['parameter_bytes'])}"
    if d["trainable_parameters"] != d["parameters"]:
        params += f", {d['trainable_parameters']:,} trainable"
    out.append(f"variables: {n_vars} ({params})")
    for v, shape in zip(d["variables"], shapes):
        frozen = "" if v["trainable"] else "  (not trainable)"
        out.append(f"  {v['name']:{w}s} {v['dtype']:8s} {shape:{ws}s} {v['size']:>12,}{frozen}")
    if d["kind"] != "checkpoint":
        c = d["constants"]
        out.append(f"constants: {c['count']} ({fmt_bytes(c['bytes'])})")
        out.append(f"ops: {d['nodes']} nodes")
        width = max((len(op) for op in d["ops"]), default=0)
        out.extend(f"  {op:{width}s} {count:5d}" for op, count in d["ops"].items())
    if d["passes"] is not None:
        out.append(f"passes applied (opt_level {d['opt_level']}): {', '.join(d['passes']) or 'none'}")
    s = d["storage"]
    side = f", sidecar {s['sidecar']['file']} ({fmt_bytes(s['sidecar']['nbytes'])})" if s["sidecar"] else ""
    out.append(f"storage: JSON {fmt_bytes(s['json_bytes'])}{side}")
    return "\n".join(out) + "\n"


# -- diff --------------------------------------------------------------------------------------
def array_diff(a: np.ndarray, b: np.ndarray) -> str | None:
    """None when equal (NaN equals NaN); else a description of how b differs from a."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"{a.dtype.name} {fmt_shape(a.shape)} -> {b.dtype.name} {fmt_shape(b.shape)}"
    if a.dtype.kind in "fc":
        same = (a == b) | (np.isnan(a) & np.isnan(b))
    else:
        same = a == b
    n = int(a.size - np.count_nonzero(same))
    if n == 0:
        return None
    with np.errstate(all="ignore"):
        x, y = a.astype(np.float64), b.astype(np.float64)
        delta = np.abs(x - y)
        max_abs = float(np.nanmax(delta)) if not np.all(np.isnan(delta)) else math.nan
        scale = float(np.nanmax(np.abs(x))) if a.size and not np.all(np.isnan(x)) else 0.0
    rel = f"{max_abs / scale:.3g}" if scale > 0 else "inf"
    return f"{n:,} of {a.size:,} elements differ, max abs diff {max_abs:.3g}, relative {rel} (max|a-b| / max|a|)"


def _body_text(body) -> str:
    """A control-flow body (a Subgraph attribute) as text, to compare bodies of two files."""
    from ..ir.printer import format_node

    outputs = ", ".join(t.name for t in body.outputs)
    return "\n".join(format_node(n) for n in body.nodes) + f"\n-> {outputs}"


def _attr_diff(a, b) -> str | None:
    if all(hasattr(v, "params") and hasattr(v, "nodes") for v in (a, b)):  # bodies: compare their text
        return None if _body_text(a) == _body_text(b) else f"body changed ({len(a.nodes)} -> {len(b.nodes)} nodes)"
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return f"{_short(a)} -> {_short(b)}"
        return array_diff(a, b)
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return None if all(_attr_diff(x, y) is None for x, y in zip(a, b)) else f"{_short(a)} -> {_short(b)}"
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return None
    if type(a) is not type(b) or a != b:
        return f"{_short(a)} -> {_short(b)}"
    return None


def _short(v) -> str:
    if isinstance(v, np.ndarray):
        return (
            np.array2string(v, threshold=4, edgeitems=2, separator=",").replace("\n", "")
            if v.size <= 4
            else (f"<{v.dtype.name} array {list(v.shape)}>")
        )
    if isinstance(v, list):  # metadata: the passes applied
        return "[" + ", ".join(map(str, v)) + "]"
    text = str(v) if isinstance(v, np.dtype) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _types(node) -> str:
    return ", ".join(str(t) for t in node.types)


def _node_changes(a, b) -> list[str]:
    changes = []
    if a.op != b.op:
        changes.append(f"op {a.op} -> {b.op}")
    ia, ib = [tensor_ref(t) for t in a.inputs], [tensor_ref(t) for t in b.inputs]
    if ia != ib:
        changes.append(f"inputs ({', '.join(ia)}) -> ({', '.join(ib)})")
    for key in sorted(set(a.attrs) | set(b.attrs)):
        if key not in a.attrs:
            changes.append(f"attr {key} added: {_short(b.attrs[key])}")
        elif key not in b.attrs:
            changes.append(f"attr {key} removed (was {_short(a.attrs[key])})")
        else:
            d = _attr_diff(a.attrs[key], b.attrs[key])
            if d is not None:
                changes.append(f"attr {key}: {d}")
    if a.types != b.types:
        changes.append(f"type {_types(a)} -> {_types(b)}")
    return changes


def _signature(model: Model) -> dict:
    fn = model.obj if isinstance(model.obj, Function) else None
    if fn is None:
        return {}
    return {
        "inputs": ", ".join(f"{n} {t}" for n, t in fn._placeholders) or "none",
        "positional inputs": ", ".join(t.node.name for t in fn.inputs) or "none",
        "outputs": f"{fn.structure.kind}: " + (", ".join(f"{n}={tensor_ref(t)} {t.type}" for n, t in
                                                        zip(output_names(fn), fn.program.outputs)) or "none"),
        "updates": ", ".join(f"{n} <- {tensor_ref(t)}" for n, t in fn.program.updates) or "none",
    }  # fmt: skip


def diff(a: Model, b: Model) -> tuple[str, bool]:
    """The readable difference of two models and whether there is any."""
    out = [f"--- {a.path}", f"+++ {b.path}"]
    n_diff = 0
    if a.kind != b.kind:
        out.append(f"kind: {a.kind} -> {b.kind}")
        n_diff += 1
    for key in sorted(set(a.metadata) | set(b.metadata)):
        va, vb = a.metadata.get(key), b.metadata.get(key)
        if va != vb:
            out.append(
                f"metadata {key}: {_short(va) if key in a.metadata else '(none)'} -> "
                f"{_short(vb) if key in b.metadata else '(none)'}"
            )
            n_diff += 1
    sa, sb = _signature(a), _signature(b)
    for key in dict.fromkeys([*sa, *sb]):
        if sa.get(key) != sb.get(key):
            out.append(f"signature {key}:\n  - {sa.get(key, '(none)')}\n  + {sb.get(key, '(none)')}")
            n_diff += 1
    na = {n.name: n for n in a.nodes}
    nb = {n.name: n for n in b.nodes}
    added = [n for name, n in nb.items() if name not in na]
    removed = [n for name, n in na.items() if name not in nb]
    changed, moved = [], 0
    for name, node in na.items():
        if name in nb:
            c = _node_changes(node, nb[name])
            if c:
                changed.append((name, c))
            elif node.source != nb[name].source:
                moved += 1
    same = len(na) - len(removed) - len(changed)
    if added or removed or changed:
        out.append(f"nodes: {len(added)} added, {len(removed)} removed, {len(changed)} changed, {same} unchanged")
        for n in removed:
            out.append(f"  - {n.name}: {n.op}({', '.join(tensor_ref(t) for t in n.inputs)}) -> {_types(n)}")
        for n in added:
            out.append(f"  + {n.name}: {n.op}({', '.join(tensor_ref(t) for t in n.inputs)}) -> {_types(n)}")
        for name, c in changed:
            out.append(f"  ~ {name}: " + "; ".join(c))
        n_diff += len(added) + len(removed) + len(changed)
    va, vb = a.variables, b.variables
    var_lines = []
    for name in sorted(set(va) | set(vb)):
        if name not in va:
            var_lines.append(f"  + {name}: {vb[name].dtype.name} {fmt_shape(vb[name].shape)}")
        elif name not in vb:
            var_lines.append(f"  - {name}: {va[name].dtype.name} {fmt_shape(va[name].shape)}")
        else:
            x, y = va[name], vb[name]
            d = array_diff(x, y)
            if d is not None:
                what = (
                    f"{name}"
                    if x.shape != y.shape or x.dtype != y.dtype
                    else f"{name} {x.dtype.name} {fmt_shape(x.shape)}"
                )
                var_lines.append(f"  ~ {what}: {d}")
    if var_lines:
        out.append(f"variables: {len(var_lines)} differ of {len(set(va) | set(vb))}")
        out.extend(var_lines)
        n_diff += len(var_lines)
    if n_diff == 0:
        out = [f"no differences between {a.path} and {b.path}"]
    if moved:
        out.append(f"({moved} nodes differ only in their source line, which is not compared)")
    return "\n".join(out) + "\n", n_diff > 0
