"""Load: a graphc file back into a callable Function (or a Graph, or variable values).

The file is data, never code: it is size-checked, parsed, checked against the JSON Schema,
checked against resource limits, and every node is rebuilt through the op registry (only
registered ops; shape inference re-runs and must agree with the recorded types). Every problem
raises FormatError naming the file and the node; nothing else escapes.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from ..dtypes import SUPPORTED, as_dtype
from ..errors import ExecutionError, FormatError, GraphcError
from ..ir import Graph, Source, Subgraph, TensorType
from ..ir.types import compatible, fmt_shape
from ..ops.registry import FUSED, REGISTRY, SOURCE
from ..runtime import Function
from .arrays import ArrayReader, LoadLimits
from .format import FORMAT, VERSION, check_attr, decode_attr
from .schema import validate


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def read_document(path, limits: LoadLimits) -> dict:
    """Parse and schema-check a file (no limits beyond size and nesting are applied here)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > limits.max_file_bytes:
            raise FormatError(f"{path}: {size} bytes exceed max_file_bytes={limits.max_file_bytes}")
        with open(path, "rb") as f:
            raw = f.read(limits.max_file_bytes + 1)
    except OSError as e:
        raise FormatError(f"{path}: cannot read the file: {e.strerror}") from None
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not UTF-8 text, so not a graphc JSON file") from None
    except RecursionError:
        raise FormatError(f"{path}: JSON nested too deeply") from None
    except ValueError as e:
        raise FormatError(f"{path}: malformed or truncated JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise FormatError(f"{path}: not a graphc file: format is {got!r}, expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise FormatError(
            f"{path}: unsupported format version {doc.get('version')!r}: this graphc reads version {VERSION}"
        )
    validate(doc, path)
    return doc


def _ref(ref: str, tensors: dict, where: str):
    name, _, index = ref.partition(":")
    node = tensors.get(name)
    if node is None:
        raise FormatError(f"{where}: refers to '{name}', which is not defined before it (dangling reference or cycle)")
    i = int(index) if index else 0
    if i >= len(node.types):
        raise FormatError(f"{where}: refers to output {i} of '{name}', which has {len(node.types)} outputs")
    return node.outputs[i]


def _recorded_types(nd: dict, where: str) -> tuple:
    types = []
    for out in nd["outputs"]:
        if out["dtype"] not in SUPPORTED:
            raise FormatError(f"{where}: unsupported dtype {out['dtype']!r}")
        types.append(TensorType(tuple(out["shape"]), np.dtype(out["dtype"])))
    return tuple(types)


def _check_size(t: TensorType, limits: LoadLimits, where: str) -> None:
    known = [d for d in t.shape if d is not None]
    nbytes = math.prod(known) * t.dtype.itemsize
    if any(d > limits.max_tensor_bytes for d in known):  # absurd even when another dim is 0
        raise FormatError(f"{where}: a tensor of shape {fmt_shape(t.shape)} has an absurd dimension, "
                          f"more than max_tensor_bytes={limits.max_tensor_bytes}")  # fmt: skip
    if nbytes > limits.max_tensor_bytes:
        raise FormatError(f"{where}: a tensor of shape {fmt_shape(t.shape)} {t.dtype} needs {nbytes} bytes, "
                          f"more than max_tensor_bytes={limits.max_tensor_bytes}")  # fmt: skip


def _source(text):
    if text is None:
        return None
    file, _, line = text.rpartition(":")
    return Source(file, int(line)) if file and line.isdigit() else Source(text, 0)


def _build_graph(doc: dict, path: str, limits: LoadLimits, reader: ArrayReader, private: bool,
                 depth: int = 0, scope: str = "", count: list | None = None) -> Graph:  # fmt: skip
    """The graph of ``doc["graph"]``; control-flow bodies in attributes are built the same way,
    ``depth`` levels down (``scope`` names them in errors; ``count`` sums nodes over all levels)."""
    gdoc = doc["graph"]
    nodes = gdoc["nodes"]
    count = [0] if count is None else count
    count[0] += len(nodes)
    if count[0] > limits.max_nodes:
        raise FormatError(f"{path}: {count[0]} nodes exceed max_nodes={limits.max_nodes}")
    graph = Graph(gdoc.get("name", "loaded"), private=private)
    tensors: dict = {}
    variables = doc.get("variables", {})
    for i, nd in enumerate(nodes):
        name, op = nd["name"], nd["op"]
        node_what = f"{scope}node {i} '{name}' ({op})"
        where = f"{path}: {node_what}"

        def body(inner, what):
            return _body(inner, path, limits, reader, depth + 1, what, count)

        if name in tensors:
            raise FormatError(f"{where}: duplicate node name")
        opdef = REGISTRY.get(op)
        if opdef is None:
            raise FormatError(f"{where}: unknown op {op!r}")
        if opdef.kind == FUSED:  # their bodies are programs of their own, made only while a plan is built
            raise FormatError(f"{where}: fused ops are made when a plan is specialized and never stored")
        inputs = tuple(_ref(r, tensors, where) for r in nd["inputs"])
        attrs = {k: decode_attr(v, reader, f"{node_what}: attribute '{k}'", body=body)
                 for k, v in nd["attrs"].items()}  # fmt: skip
        if depth and op in ("variable", "assign"):
            raise FormatError(f"{where}: a control-flow body cannot hold a {op}")
        for k, v in attrs.items():
            check_attr(k, v, where)
        recorded = _recorded_types(nd, where)
        if opdef.kind == SOURCE:
            types = _source_types(op, attrs, recorded, inputs, variables, reader, graph, name, where)
        else:
            try:
                inferred = opdef.infer(*(t.type for t in inputs), **attrs)
            except GraphcError as e:
                raise FormatError(f"{where}: {e}") from None
            except Exception as e:  # malformed attributes reach the shape rule as wrong types or names
                problem = f"{type(e).__name__}: {e}"
                raise FormatError(f"{where}: bad attributes {sorted(attrs)} for its inputs: {problem}") from None
            types = (inferred,) if isinstance(inferred, TensorType) else tuple(inferred)
            if len(types) != len(recorded) or any(
                a.dtype != b.dtype or not compatible(a.shape, b.shape) for a, b in zip(types, recorded)
            ):
                got = ", ".join(str(t) for t in recorded)
                raise FormatError(f"{where}: recorded output types {got} disagree with shape inference: "
                                  f"{', '.join(str(t) for t in types)}")  # fmt: skip
        for t in types:
            _check_size(t, limits, where)
        node = graph.append(op, inputs, attrs, types, name, _source(nd.get("source")))
        tensors[name] = node
    return graph


def _body(inner, path: str, limits: LoadLimits, reader: ArrayReader, depth: int, scope: str, count: list):
    """A control-flow body ``{"graph": inner}`` (the attribute ``scope``), checked like a graph;
    its params are exactly its placeholders."""
    where = f"{path}: {scope}"
    if depth > limits.max_depth:
        raise FormatError(f"{where}: control-flow bodies nested {depth} deep, more than max_depth={limits.max_depth}")
    validate(inner, where, "body", "$")
    graph = _build_graph({"graph": inner}, path, limits, reader, True, depth, f"{scope}: ", count)
    by_name = {n.name: n for n in graph.nodes}
    params = []
    for name in inner["params"]:
        node = by_name.get(name)
        if node is None or node.op != "placeholder" or node.outputs[0] in params:
            raise FormatError(f"{where}: parameter '{name}' is not a placeholder of the body, or is listed twice")
        params.append(node.outputs[0])
    if {p.node for p in params} != {n for n in graph.nodes if n.op == "placeholder"}:
        raise FormatError(f"{where}: every placeholder of a body must be one of its params")
    outputs = tuple(_ref(r, by_name, where) for r in inner["outputs"])
    return Subgraph(graph, tuple(params), outputs)


def _source_types(op, attrs, recorded, inputs, variables, reader, graph, name, where) -> tuple:
    """Check a placeholder, variable or constant node (their types come from attributes)."""
    if inputs:
        raise FormatError(f"{where}: a {op} takes no inputs")
    if op == "constant":
        if set(attrs) != {"value"} or not isinstance(attrs["value"], np.ndarray):
            raise FormatError(f"{where}: a constant needs exactly one attribute 'value' holding an array")
        t = TensorType(attrs["value"].shape, attrs["value"].dtype)
    else:
        expected = {"shape", "dtype"} | ({"trainable"} if op == "variable" else set())
        if set(attrs) != expected:
            raise FormatError(f"{where}: attributes must be {sorted(expected)}: got {sorted(attrs)}")
        shape, dtype = attrs["shape"], attrs["dtype"]
        if not isinstance(shape, tuple) or any(
            d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 0) for d in shape
        ):
            raise FormatError(f"{where}: shape must hold non-negative ints or null: got {shape!r}")
        if not isinstance(dtype, np.dtype):
            raise FormatError(f"{where}: dtype must be a dtype: got {dtype!r}")
        as_dtype(dtype)
        t = TensorType(shape, dtype)
        if op == "variable":
            if not isinstance(attrs["trainable"], bool) or any(d is None for d in shape):
                raise FormatError(f"{where}: a variable needs a static shape and a bool 'trainable'")
            if name not in variables:
                raise FormatError(f"{where}: the file holds no value for this variable")
            value = reader.decode(variables[name], f"variable '{name}'")
            if value.shape != shape or value.dtype != dtype:
                raise FormatError(f"{where}: stored value {fmt_shape(value.shape)} {value.dtype} does not match "
                                  f"{fmt_shape(shape)} {dtype}")  # fmt: skip
            graph.variables[name] = value
    if recorded != (t,):
        raise FormatError(f"{where}: recorded type {', '.join(map(str, recorded))} disagrees with its attributes: {t}")
    return (t,)


def load(path, device: str = "cpu", limits: LoadLimits | None = None, native: bool | None = None):
    """Load a saved function (a callable behaving like the one saved) or graph.

    Parameters
    ----------
    path : str or os.PathLike
    device : str
        "cpu" (or "cuda" once that backend exists).
    limits : LoadLimits, optional
        Resource limits checked before anything is allocated (node count, nesting depth,
        bytes of stored arrays, largest tensor a plan may allocate).
    native : bool, optional
        As in ``graphc.compile``: the kernels of a loaded function run as C where a compiler
        exists (by default for plans that do enough work). Nothing from the file becomes C but
        numbers; the C comes from graphc's own op templates.

    Returns
    -------
    graphc.Function for a saved function, graphc.Graph for a saved graph.
    """
    limits = limits or LoadLimits()
    path = os.fspath(path)
    doc = read_document(path, limits)
    folder = os.path.dirname(os.path.abspath(path))
    reader = ArrayReader(folder, doc.get("sidecar"), path, limits)
    kind = doc["kind"]
    if kind == "checkpoint":
        raise FormatError(f"{path}: a checkpoint holds only variable values: use graphc.restore_checkpoint")
    if "graph" not in doc:
        raise FormatError(f"{path}: a {kind} file needs a 'graph'")
    graph = _build_graph(doc, path, limits, reader, private=(kind == "function"))
    if kind == "graph":
        _implicit_updates(doc["graph"].get("implicit_updates", ()), graph, path)
        return graph
    if "implicit_updates" in doc["graph"]:
        raise FormatError(f"{path}: a function file keeps its implicit updates among its signature's updates")
    if "signature" not in doc:
        raise FormatError(f"{path}: a function file needs a 'signature'")
    return _function(doc, graph, path, device, limits, native)


def _implicit_updates(entries, graph: Graph, path: str) -> None:
    """Re-register a saved graph's implicit updates (RNG counters, running statistics)."""
    tensors = {n.name: n for n in graph.nodes}
    for i, u in enumerate(entries):
        where = f"{path}: graph implicit update {i}"
        var = tensors.get(u["variable"])
        if var is None or var.op != "variable":
            raise FormatError(f"{where}: '{u['variable']}' is not a variable of the graph")
        trigger, value = _ref(u["trigger"], tensors, where), _ref(u["value"], tensors, where)
        if value.type.dtype != var.types[0].dtype or not compatible(value.shape, var.types[0].shape):
            raise FormatError(f"{where}: update of '{var.name}' {var.types[0]} with a value of type {value.type}")
        graph.add_implicit_update(trigger, var.outputs[0], value)


def _function(doc, graph, path, device, limits, native):
    from ..backends import get_backend
    from ..passes import Program
    from ..runtime.executor import Structure

    sig = doc["signature"]
    tensors = {n.name: n for n in graph.nodes}
    where = f"{path}: signature"
    inputs = []
    for name in sig["inputs"]:
        node = tensors.get(name)
        if node is None or node.op != "placeholder":
            raise FormatError(f"{where}: input '{name}' is not a placeholder of the graph")
        if node.outputs[0] in inputs:
            raise FormatError(f"{where}: input '{name}' is listed twice")
        inputs.append(node.outputs[0])
    out = sig["outputs"]
    outputs = tuple(_ref(r, tensors, where) for r in out["tensors"])
    keys = tuple(out.get("keys", ()))
    structure = out["structure"]
    if (structure == "tensor" and len(outputs) != 1) or (structure == "dict" and len(keys) != len(outputs)) or (
        structure == "none" and outputs
    ):
        raise FormatError(f"{where}: output structure {structure!r} does not fit {len(outputs)} outputs")
    updates = []
    for u in sig["updates"]:
        var = tensors.get(u["variable"])
        value = _ref(u["value"], tensors, where)
        if var is None or var.op != "variable":
            raise FormatError(f"{where}: update of '{u['variable']}', which is not a variable")
        if any(name == var.name for name, _ in updates):
            raise FormatError(f"{where}: variable '{var.name}' is updated twice")
        if value.type.dtype != var.types[0].dtype or not compatible(value.shape, var.types[0].shape):
            raise FormatError(f"{where}: update of '{var.name}' {var.types[0]} with a value of type {value.type}")
        updates.append((var.name, value))
    meta = doc.get("metadata", {})
    program = Program(tuple(graph.nodes), outputs, tuple(updates))
    from ..passes import prune

    fn = LoadedFunction(path, graph, prune(program), [], get_backend(device), Structure(structure, keys), inputs,
                        meta.get("opt_level", 2), False, os.environ.get("GRAPHC_VERIFY") == "1", limits,
                        native=native)  # fmt: skip
    fn.metadata = meta
    return fn


class LoadedFunction(Function):
    """A Function rebuilt from a file. The loader checked every node, yet a crafted file can still
    hold a program that no graphc builder makes; whatever then fails while the program is
    specialized for a call's shapes, or while it runs, is a GraphcError naming the file."""

    def __init__(self, path: str, *args, **kwargs):
        self.path = path
        super().__init__(*args, **kwargs)  # specializes at once when every input shape is static

    def _specialize(self, signature: tuple):
        try:
            return super()._specialize(signature)
        except (GraphcError, MemoryError):  # out of memory is the machine's state, not the file's fault
            raise
        except Exception as e:
            shapes = ", ".join(fmt_shape(s) for s in signature)
            raise FormatError(f"{self.path}: the stored program cannot be compiled for inputs of shapes "
                              f"{shapes}: {type(e).__name__}: {e}") from e  # fmt: skip

    def _failure(self, plan, e: Exception) -> GraphcError | None:
        error = super()._failure(plan, e)
        if error is None and not isinstance(e, MemoryError):
            error = ExecutionError(f"{self.path}: the stored program failed: {type(e).__name__}: {e}")
        return error


def restore_checkpoint(obj, path, limits: LoadLimits | None = None) -> None:
    """Set the variables of a graph or function from a checkpoint (or a saved function/graph file).

    Every variable of the graph must be in the file with the same shape and dtype; nothing is
    changed unless all of them are (the restore is all or nothing).
    """
    from .save import _graph_of

    graph = _graph_of(obj)
    limits = limits or LoadLimits()
    path = os.fspath(path)
    doc = read_document(path, limits)
    reader = ArrayReader(os.path.dirname(os.path.abspath(path)), doc.get("sidecar"), path, limits)
    stored = doc.get("variables", {})
    values = {}
    for node in graph.nodes:
        if node.op != "variable":
            continue
        if node.name not in stored:
            raise FormatError(f"{path}: no value for variable '{node.name}' {node.types[0]}")
        value = reader.decode(stored[node.name], f"variable '{node.name}'")
        t = node.types[0]
        if value.shape != t.shape or value.dtype != t.dtype:
            raise FormatError(f"{path}: variable '{node.name}': stored {fmt_shape(value.shape)} {value.dtype}, "
                              f"expected {fmt_shape(t.shape)} {t.dtype}")  # fmt: skip
        values[node.name] = value
    with graph.lock:
        graph.variables.update(values)  # plans read the store at every call
        graph.variables_version += 1
