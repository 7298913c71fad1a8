"""Save: a compiled function, a graph, or variable values (a checkpoint) to a graphc file.

Writes are atomic: the sidecar (named by its content) and then the JSON go to temporary files
that are fsynced and renamed over the target, so a crash mid-save leaves the old file whole.
Saving the same thing twice gives byte-identical files.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets

from ..errors import FormatError
from ..ir import Graph
from ..runtime import Function
from .arrays import INLINE_MAX_BYTES, ArrayWriter, sidecar_name
from .format import FORMAT, VERSION, encode_attr, source_text, tensor_ref


def _node_doc(node, arrays) -> dict:
    if ":" in node.name:
        raise FormatError(f"{node.op} '{node.name}': node names in a saved file cannot contain ':'")
    d = {
        "name": node.name,
        "op": node.op,
        "inputs": [tensor_ref(t) for t in node.inputs],
        "attrs": {k: encode_attr(v, arrays, _node_doc) for k, v in sorted(node.attrs.items())},
        "outputs": [{"shape": list(t.shape), "dtype": t.dtype.name} for t in node.types],
    }
    src = source_text(node.source)
    if src is not None:
        d["source"] = src
    return d


def _metadata(opt_level, passes, created: bool) -> dict:
    from .. import __version__

    meta = {"graphc_version": __version__}
    if opt_level is not None:
        meta["opt_level"] = opt_level
    if passes is not None:
        meta["passes"] = list(passes)
    if created:
        meta["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return meta


def _passes(fn: Function) -> list | None:
    """The compile-time passes a function went through (a loaded one: those its file recorded)."""
    loaded = getattr(fn, "metadata", None)  # set by load: a loaded function ran no passes itself
    return loaded.get("passes") if loaded is not None else [r.name for r in fn.reports]


def _variables(names, store: dict, arrays) -> dict:
    return {name: arrays.encode(store[name]) for name in sorted(names)}


def document(obj, arrays: ArrayWriter, created: bool = False) -> dict:
    """The JSON document (without the sidecar entry) for a Function or a Graph."""
    if isinstance(obj, Function):
        program = obj.program
        nodes = program.nodes
        doc = {
            "format": FORMAT, "version": VERSION, "kind": "function",
            "metadata": _metadata(obj.opt_level, _passes(obj), created),
            "graph": {"name": obj.graph.name, "nodes": [_node_doc(n, arrays) for n in nodes]},
            "signature": {
                "inputs": [t.node.name for t in obj.inputs],
                "outputs": {"structure": obj.structure.kind, "keys": list(obj.structure.keys),
                            "tensors": [tensor_ref(t) for t in program.outputs]},
                "updates": [{"variable": name, "value": tensor_ref(t)} for name, t in program.updates],
            },
            "variables": _variables([n.name for n in nodes if n.op == "variable"], obj.graph.variables, arrays),
        }  # fmt: skip
    elif isinstance(obj, Graph):
        doc = {
            "format": FORMAT, "version": VERSION, "kind": "graph",
            "metadata": _metadata(None, None, created),
            "graph": {"name": obj.name, "nodes": [_node_doc(n, arrays) for n in obj.nodes]},
            "variables": _variables([n.name for n in obj.nodes if n.op == "variable"], obj.variables, arrays),
        }  # fmt: skip
        if obj.implicit_updates:  # (a function's are already among its updates)
            doc["graph"]["implicit_updates"] = [
                {"trigger": tensor_ref(trigger), "variable": var.node.name, "value": tensor_ref(value)}
                for trigger, var, value in obj.implicit_updates
            ]
    else:
        raise FormatError(f"save: expected a compiled graphc.Function or a graphc.Graph: got {type(obj).__name__}")
    return doc


def _graph_of(obj) -> Graph:
    if isinstance(obj, Function):
        return obj.graph
    if isinstance(obj, Graph):
        return obj
    raise FormatError(f"expected a compiled graphc.Function or a graphc.Graph: got {type(obj).__name__}")


def save(obj, path, *, inline_max_bytes: int = INLINE_MAX_BYTES, created: bool = False) -> str:
    """Save a compiled function (its optimized graph, signature, updates and current variable
    values) or a whole graph to ``path`` (JSON, plus ``<stem>.<hash>.bin`` for large arrays).

    Parameters
    ----------
    obj : graphc.Function or graphc.Graph
    path : str or os.PathLike
    inline_max_bytes : int
        Arrays up to this size are stored inline (base64); larger ones in the sidecar file.
    created : bool
        Record the creation time in the metadata (off by default so saves are reproducible).

    Returns
    -------
    str
        The path written.
    """
    arrays = ArrayWriter(inline_max_bytes)
    if isinstance(obj, Function):
        with obj.graph.lock:  # a consistent snapshot of variables an update may be writing
            doc = document(obj, arrays, created)
    else:
        doc = document(obj, arrays, created)
    return _write(doc, arrays, path)


def save_checkpoint(obj, path, *, inline_max_bytes: int = INLINE_MAX_BYTES) -> str:
    """Save only the variable values of a graph or function (to resume training later)."""
    graph = _graph_of(obj)
    arrays = ArrayWriter(inline_max_bytes)
    with graph.lock:
        doc = {"format": FORMAT, "version": VERSION, "kind": "checkpoint", "metadata": _metadata(None, None, False),
               "variables": _variables(graph.variables, graph.variables, arrays)}  # fmt: skip
    return _write(doc, arrays, path)


def _write(doc: dict, arrays: ArrayWriter, path) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    stem = os.path.splitext(os.path.basename(path))[0]
    keep = None
    if arrays.blob:
        blob = bytes(arrays.blob)
        keep = sidecar_name(stem, blob)
        doc["sidecar"] = {"file": keep, "nbytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
        target = os.path.join(folder, keep)
        if not os.path.exists(target):  # content-addressed: an existing file already holds these bytes
            _atomic_write(target, blob)
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    _atomic_write(path, text.encode("utf-8"))
    _remove_stale_sidecars(folder, stem, keep)
    return path


def _atomic_write(path: str, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, rename it over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    # not mkstemp: its files are private (0600), and a model is read by services running as others
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the data itself is already synced


def _remove_stale_sidecars(folder: str, stem: str, keep: str | None) -> None:
    """Sidecars of earlier saves of this file that the new JSON no longer names."""
    for name in os.listdir(folder):
        if name != keep and name.startswith(f"{stem}.") and name.endswith(".bin"):
            middle = name[len(stem) + 1 : -4]
            if len(middle) == 16 and all(c in "0123456789abcdef" for c in middle):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass
