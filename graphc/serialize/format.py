"""The graphc file format, version 1: constants and the encoding of attribute values.

Attribute values map to JSON as: None, bools, ints and strings as themselves; finite floats as
numbers and others as ``{"float": "nan" | "inf" | "-inf"}``; tuples as arrays (every array
decodes to a tuple); dtypes as ``{"dtype": "float32"}``; NumPy arrays as ``{"array": {...}}``
(see arrays.py); nested graphs (control-flow bodies) as ``{"graph": {...}}``. docs/format.md
documents the whole document.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import FormatError
from ..ir import Subgraph

FORMAT = "graphc"
VERSION = 1
KINDS = ("function", "graph", "checkpoint")


def tensor_ref(t) -> str:
    """``name`` for a node's only output, ``name:i`` for output i of a multi-output node."""
    return t.node.name if len(t.node.types) == 1 else f"{t.node.name}:{t.index}"


def encode_attr(value, arrays, node_doc=None):
    """The JSON value of an attribute; ``node_doc(node, arrays)`` writes the nodes of a body."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isfinite(value):
            return value
        return {"float": "nan" if value != value else ("inf" if value > 0 else "-inf")}
    if isinstance(value, (tuple, list)):
        return [encode_attr(v, arrays, node_doc) for v in value]
    if isinstance(value, np.dtype):
        return {"dtype": value.name}
    if isinstance(value, np.ndarray):
        return {"array": arrays.encode(value)}
    if isinstance(value, Subgraph) and node_doc is not None:  # a control-flow body
        return {"graph": {
            "name": value.graph.name,
            "params": [p.node.name for p in value.params],
            "nodes": [node_doc(n, arrays) for n in value.nodes],
            "outputs": [tensor_ref(t) for t in value.outputs],
        }}  # fmt: skip
    raise FormatError(f"cannot serialize an attribute of type {type(value).__name__}")


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
MAX_ATTR_DEPTH = 16  # far deeper than any attribute graphc writes (index entries: 2)


def decode_attr(value, reader, what: str, depth: int = 0, body=None):
    """The attribute value for a JSON value (arrays become tuples; tagged objects decode).

    ``what`` names the attribute in errors, after the file's name (``reader.where``);
    ``body(inner, what)`` builds a control-flow body from ``{"graph": inner}`` (load.py)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        if depth >= MAX_ATTR_DEPTH:  # before Python's recursion limit: a RecursionError is no FormatError
            raise FormatError(f"{reader.where}: {what}: nested more than {MAX_ATTR_DEPTH} deep")
        return tuple(decode_attr(v, reader, what, depth + 1, body) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "float" and isinstance(inner, str) and inner in _FLOATS:
            return _FLOATS[inner]
        if tag == "dtype" and isinstance(inner, str):
            from ..dtypes import as_dtype

            try:
                return as_dtype(inner)
            except Exception:
                raise FormatError(f"{reader.where}: {what}: unsupported dtype {inner!r}") from None
        if tag == "array" and isinstance(inner, dict):
            return reader.decode(inner, what)
        if tag == "graph" and body is not None:
            return body(inner, what)
    raise FormatError(f"{reader.where}: {what}: unrecognized attribute value {str(value)[:80]}")


# What each attribute holds, as graphc's public builders normalize it (axes non-negative and
# unique, ...). Op shape rules and passes rely on that, so a file's attributes are checked against
# this before any rule sees them. Names not listed (newer ops' attributes) reach the rules as read.
MAX_RANK = 32  # the schema's longest shape
MAX_OUTPUTS = 4096  # the schema's most outputs of one node


def _int(v, lo=None, hi=None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)


def _tuple_of(v, check, max_len: int) -> bool:
    return isinstance(v, tuple) and len(v) <= max_len and all(check(x) for x in v)


def _pair(v, lo: int) -> bool:
    return _tuple_of(v, lambda a: _int(a, lo), 2) and len(v) == 2


def _padding(v) -> bool:
    """A pooling window's (height, width) padding, or a convolution's ((top, bottom), (left, right))."""
    return _pair(v, 0) or (_tuple_of(v, lambda p: _pair(p, 0), 2) and len(v) == 2)


def _index_entry(e) -> bool:
    """("i", k), ("s", start, stop, step) with step != 0, or ("n",): see ops/shape.py."""
    if not isinstance(e, tuple) or not e:
        return False
    if e[0] == "i":
        return len(e) == 2 and _int(e[1])
    if e[0] == "s":
        return len(e) == 4 and all(p is None or _int(p) for p in e[1:]) and e[3] != 0
    return e == ("n",)


ATTRIBUTES = {
    "axes": (
        lambda v: _tuple_of(v, lambda a: _int(a, 0, MAX_RANK - 1), MAX_RANK) and len(set(v)) == len(v),
        "distinct axes in [0, 32)",
    ),
    "axis": (lambda v: v is None or _int(v, 0, MAX_RANK - 1), "an axis in [0, 32) or null"),
    "keepdims": (lambda v: isinstance(v, bool), "a bool"),
    "trainable": (lambda v: isinstance(v, bool), "a bool"),
    "transpose_a": (lambda v: v is True, "true (omitted when false)"),
    "transpose_b": (lambda v: v is True, "true (omitted when false)"),
    "shape": (lambda v: _tuple_of(v, lambda d: d is None or _int(d, -1), MAX_RANK), "a list of ints or nulls"),
    "sections": (
        lambda v: _int(v, 1, MAX_OUTPUTS) or _tuple_of(v, _int, MAX_OUTPUTS - 1),
        "a number of sections or a list of split points",
    ),
    "depth": (lambda v: _int(v, 0), "an int >= 0"),
    "dtype": (lambda v: isinstance(v, np.dtype), "a dtype"),
    "pad_width": (
        lambda v: _tuple_of(v, lambda p: _tuple_of(p, lambda a: _int(a, 0), 2) and len(p) == 2, MAX_RANK),
        "a list of [before, after] pairs of ints >= 0",
    ),
    "constant_values": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "index": (lambda v: _tuple_of(v, _index_entry, 2 * MAX_RANK), "a list of index entries"),
    "value": (lambda v: isinstance(v, np.ndarray), "an array"),
    # convolution and pooling (ops/conv.py): the native tier writes these numbers into C source
    "kernel": (lambda v: _pair(v, 1), "a pair of ints >= 1"),
    "stride": (lambda v: _pair(v, 1), "a pair of ints >= 1"),
    "dilation": (lambda v: _pair(v, 1), "a pair of ints >= 1"),
    "groups": (lambda v: _int(v, 1), "an int >= 1"),
    "padding": (_padding, "a pair of ints >= 0, or two pairs of them"),
    # control flow (ops/control.py); their bodies are checked as they are built (load.py)
    "n_carry": (lambda v: _int(v, 0, MAX_OUTPUTS), "an int >= 0"),
    "n_x": (lambda v: _int(v, 0, MAX_OUTPUTS), "an int >= 0"),
    "n_vars": (lambda v: _int(v, 1, MAX_OUTPUTS), "an int >= 1"),
    "length": (lambda v: v is None or _int(v, 0), "an int >= 0 or null"),
    "max_iterations": (lambda v: v is None or _int(v, 0), "an int >= 0 or null"),
    "reverse": (lambda v: isinstance(v, bool), "a bool"),
}


def check_attr(name: str, value, what: str) -> None:
    """Raise FormatError when a known attribute holds something graphc never writes there."""
    check, expected = ATTRIBUTES.get(name, (None, ""))
    if check is not None and not check(value):
        raise FormatError(f"{what}: attribute '{name}' must be {expected}: got {repr(value)[:80]}")


def source_text(source) -> str | None:
    """A node's provenance as stored: relative to the working directory when the file is below it,
    else the file's base name, so that saved files carry no machine-specific paths."""
    if source is None:
        return None
    path = source.file
    if os.path.isabs(path):
        rel = os.path.relpath(path, os.getcwd())
        path = rel if not rel.startswith("..") else os.path.basename(path)
    return f"{path}:{source.line}"
