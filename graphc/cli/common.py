"""CLI helpers shared by the commands: the user-error type, opening model files, shapes, formatting.

Every command opens a model through ``open_model`` (the loader's checks, then a summary of what
the file holds) and reports problems as ``CLIError`` or another ``GraphcError``, which ``main``
prints as one line on stderr with exit status 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import GraphcError
from ..ir import Graph
from ..ir.types import fmt_shape
from ..runtime import Function
from ..serialize.arrays import ArrayReader, LoadLimits, read_sidecar
from ..serialize.format import tensor_ref
from ..serialize.load import load, read_document


class CLIError(GraphcError):
    """A user mistake found by the command-line tool (a bad argument value, an unreadable input)."""


@dataclass
class Model:
    """A model file opened by the CLI: its path, its parsed document and what it loads to.

    ``obj`` is a Function (kind "function"), a Graph (kind "graph") or a dict of variable values
    (kind "checkpoint").
    """

    path: str
    doc: dict
    obj: object

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def metadata(self) -> dict:
        return self.doc.get("metadata", {})

    @property
    def nodes(self) -> tuple:
        if isinstance(self.obj, Function):
            return self.obj.program.nodes
        return tuple(self.obj.nodes) if isinstance(self.obj, Graph) else ()

    @property
    def variables(self) -> dict:
        """Variable name -> value, for the variables the file holds."""
        if isinstance(self.obj, dict):
            return self.obj
        graph = self.obj.graph if isinstance(self.obj, Function) else self.obj
        return {n.name: graph.variables[n.name] for n in self.nodes if n.op == "variable"}


def open_model(path, limits: LoadLimits | None = None, device: str = "cpu", verify_sidecar: bool = False) -> Model:
    """Load ``path`` with every check of ``graphc.load`` (checkpoints: every array decoded).

    ``verify_sidecar`` also checks the sidecar's size and hash when no array needed to read it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a directory, expected a graphc .json file")
    limits = limits or LoadLimits()
    doc = read_document(path, limits)
    folder = os.path.dirname(os.path.abspath(path))
    if doc["kind"] == "checkpoint":
        reader = ArrayReader(folder, doc.get("sidecar"), path, limits)
        obj = {
            name: reader.decode(entry, f"variable '{name}'") for name, entry in sorted(doc.get("variables", {}).items())
        }
    else:
        obj = load(path, device=device, limits=limits)
    if verify_sidecar and doc.get("sidecar") is not None:
        read_sidecar(folder, doc["sidecar"], path, limits.max_file_bytes)
    return Model(path, doc, obj)


def check_output(path: str, option: str = "-o") -> None:
    """Fail early, and clearly, when an output file cannot be written where it is asked for."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CLIError(f"{option} {path}: is a directory")
    if not os.path.isdir(folder):
        raise CLIError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"{option} {path}: the folder {folder} is not writable")


def require_function(model: Model, command: str) -> Function:
    if not isinstance(model.obj, Function):
        hint = (
            ("compile it first: graphc compile " + model.path + " -o model.json")
            if model.kind == "graph"
            else ("it holds only variable values")
        )
        raise CLIError(f"{command}: {model.path} is a {model.kind} file, not a function: {hint}")
    return model.obj


# -- output names and shapes ---------------------------------------------------------------------
def output_names(fn: Function) -> list[str]:
    """The names a function's outputs are shown and saved under: the tensor's name for a single
    output, the keys of a dict, ``output_0``, ``output_1`` ... for a list."""
    kind = fn.structure.kind
    if kind == "tensor":
        return [tensor_ref(fn.program.outputs[0])]
    if kind == "dict":
        return list(fn.structure.keys)
    return [f"output_{i}" for i in range(len(fn.program.outputs))]


def parse_shape_option(text: str, option: str = "--shape") -> tuple[str, tuple]:
    """``x=64,1000`` -> ("x", (64, 1000)); ``s=`` is a scalar."""
    name, sep, dims = text.partition("=")
    if not sep or not name:
        raise CLIError(f"{option} {text!r}: expected NAME=D0,D1,... (for example x=64,784)")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip()) if dims.strip() else ()
    except ValueError:
        raise CLIError(f"{option} {text!r}: dims must be integers: got {dims!r}") from None
    if any(d < 0 for d in shape):
        raise CLIError(f"{option} {text!r}: dims must be non-negative")
    return name, shape


def resolve_signature(fn: Function, shape_options, batch: int = 1) -> tuple:
    """The shape of every placeholder of ``fn`` (in its feed order) with unknown dims filled in:
    from ``--shape NAME=...``, else a leading unknown dim becomes ``batch``; any other unknown
    dim is an error naming the placeholder."""
    given = dict(parse_shape_option(s) for s in shape_options or ())
    placeholders = dict(fn._placeholders)
    unknown = sorted(set(given) - set(placeholders))
    if unknown:
        names = ", ".join(placeholders) or "none"
        raise CLIError(f"--shape {unknown[0]}=...: the model has no input {unknown[0]!r}: its inputs are {names}")
    signature = []
    for name, t in fn._placeholders:
        if name in given:
            shape = given[name]
            if len(shape) != len(t.shape) or any(d is not None and d != g for d, g in zip(t.shape, shape)):
                raise CLIError(f"--shape {name}={','.join(map(str, shape))}: does not fit input '{name}' {t}: "
                               f"expected a shape like {fmt_shape(t.shape)}")  # fmt: skip
        else:
            shape = []
            for i, d in enumerate(t.shape):
                if d is None and i > 0:
                    raise CLIError(f"input '{name}' {t} has an unknown dim {i}: give its shape with --shape {name}=...")
                shape.append(batch if d is None else d)
            shape = tuple(shape)
        signature.append(shape)
    return tuple(signature)


def batch_size(fn: Function, signature: tuple) -> int | None:
    """The batch size when every input with a leading unknown dim got the same size, else None."""
    sizes = {shape[0] for (_, t), shape in zip(fn._placeholders, signature) if t.shape and t.shape[0] is None}
    return sizes.pop() if len(sizes) == 1 else None


# -- limits ------------------------------------------------------------------------------------
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``4096``, ``64K``, ``1.5M``, ``2G`` (binary units; a trailing ``B``/``iB`` is allowed)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1] if t and t[-1] in _UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise CLIError(f"bad size {text!r}: expected a number of bytes such as 4096, 64K, 512M or 2G") from None
    if value < 0 or value != value:
        raise CLIError(f"bad size {text!r}: must be non-negative")
    return int(value * _UNITS[unit])


def limits_from(args) -> LoadLimits:
    """LoadLimits with the defaults replaced by any ``--max-*`` options given."""
    fields = {}
    for name in ("max_file_bytes", "max_constant_bytes", "max_tensor_bytes"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = parse_size(value)
    for name in ("max_nodes", "max_depth"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    return LoadLimits(**fields)


# -- formatting --------------------------------------------------------------------------------
def fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def fmt_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_type(shape, dtype) -> str:
    return f"{np.dtype(dtype).name} {fmt_shape(tuple(shape))}"
