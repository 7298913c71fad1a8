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

FORMAT = "graphc"
VERSION = 1
KINDS = ("function", "graph", "checkpoint")


def tensor_ref(t) -> str:
    """``name`` for a node's only output, ``name:i`` for output i of a multi-output node."""
    return t.node.name if len(t.node.types) == 1 else f"{t.node.name}:{t.index}"


def encode_attr(value, arrays):
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
        return [encode_attr(v, arrays) for v in value]
    if isinstance(value, np.dtype):
        return {"dtype": value.name}
    if isinstance(value, np.ndarray):
        return {"array": arrays.encode(value)}
    raise FormatError(f"cannot serialize an attribute of type {type(value).__name__}")


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def decode_attr(value, reader, what: str):
    """The attribute value for a JSON value (arrays become tuples; tagged objects decode)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        return tuple(decode_attr(v, reader, what) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "float" and inner in _FLOATS:
            return _FLOATS[inner]
        if tag == "dtype" and isinstance(inner, str):
            from ..dtypes import as_dtype

            try:
                return as_dtype(inner)
            except Exception:
                raise FormatError(f"{what}: unsupported dtype {inner!r}") from None
        if tag == "array" and isinstance(inner, dict):
            return reader.decode(inner, what)
    raise FormatError(f"{what}: unrecognized attribute value {str(value)[:80]}")


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
