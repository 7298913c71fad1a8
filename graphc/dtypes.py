"""Dtypes: the small set graphc supports, their names, and NumPy's promotion rules."""

from __future__ import annotations

import numpy as np

from .errors import DTypeError

SUPPORTED = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)  # fmt: skip
_SUPPORTED = frozenset(np.dtype(n) for n in SUPPORTED)


def as_dtype(value) -> np.dtype:
    """Turn a name, NumPy dtype or scalar type into a supported ``np.dtype`` or raise DTypeError."""
    try:
        dt = np.dtype(value)
    except TypeError as e:
        raise DTypeError(f"unknown dtype: got {value!r}, expected one of {', '.join(SUPPORTED)}") from e
    if dt not in _SUPPORTED:
        raise DTypeError(f"unsupported dtype: got {dt}, expected one of {', '.join(SUPPORTED)}")
    return dt


def is_float(dt: np.dtype) -> bool:
    return dt.kind == "f"


def short(dt: np.dtype) -> str:
    """Compact name used by the printer: f32, i64, b1 ..."""
    return "b1" if dt.kind == "b" else f"{dt.kind}{dt.itemsize * 8}"


def can_feed(src: np.dtype, dst: np.dtype) -> bool:
    """A feed of ``src`` data may be converted to a ``dst`` placeholder: same kind or safe."""
    return bool(np.can_cast(src, dst, casting="same_kind"))
